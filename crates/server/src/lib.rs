//! The wasm-hypervisor server: runs untrusted WebAssembly behind HPKE-sealed
//! requests and results, and commits every execution to a signed, append-only
//! audit log.
//!
//! The protocol itself (wire types, sealing, receipts, proofs) is the
//! `wasm-hypervisor-protocol` crate; this crate is the service around it: the axum
//! API, the Wasmtime sandbox, the audit log. The wire contract is `PROTOCOL.md`;
//! the code map and its invariants are in `ARCHITECTURE.md`.
//!
//! # Layout
//! - [`config`]: the one configuration struct, loaded from file, environment and flags
//!   and parsed once into typed values.
//! - [`access`]: bearer tokens and per-client quotas (request rate, executions in flight).
//! - [`compile_budget`]: each client's budget of compilation time.
//! - [`usage`]: each client's usage (executions, fuel, bytes in and out) per hour,
//!   day and in total, and its quotas (protocol v1.2 §U).
//! - [`keys`]: the server's long-term ECDSA P-256 signing key and its file.
//! - [`envelope`]: HPKE open/seal of requests, sealing of results, the commitment:
//!   the server's view of the `wasm-hypervisor-protocol` crate, where the crypto
//!   and its providers (`aws-lc`, `rustcrypto`) live.
//! - [`session`]: pending per-session HPKE key pairs, single use and expiring.
//! - [`blobs`]: each client scope's store of the modules and archives it sent,
//!   named later by SHA-256 (protocol v1.1 §D).
//! - [`sandbox`]: the Wasmtime engine, limits and WASI policy; runs one guest.
//! - [`audit`]: the audit log (a file, or in cluster mode PostgreSQL) and its in-memory tree.
//! - [`execution`]: the orchestrator: open → read → resolve → prepare → run → seal →
//!   commit → log.
//! - [`answer`]: what an execution answers (its receipt), and the bound of that answer.
//! - [`async_results`]: long jobs (`Prefer: respond-async`): pending executions and
//!   the sealed answers kept for their client.
//! - [`health`]: whether the instance can execute and append now (`GET /health`).
//! - [`metrics`]: the Prometheus registry and every series, with fixed label sets.
//! - [`api`]: HTTP routes, the conversion of wire types, and the mapping of errors to HTTP.
//! - [`connections`]: the open HTTP connections and their bounds (caps, age, idle, writes).
//! - [`cluster`]: cluster mode: the PostgreSQL the replicas share (pool, migrations,
//!   the service's identity, shared sessions and async answers); the only module
//!   that knows SQL.
//! - [`server`]: builds the shared state and serves it on a listener until shutdown.

pub mod access;
pub mod answer;
pub mod api;
pub mod async_results;
pub mod audit;
pub mod blobs;
pub mod cluster;
mod compile_budget;
pub mod config;
mod connections;
pub mod envelope;
pub mod execution;
mod health;
pub mod keys;
pub mod metrics;
pub mod sandbox;
pub mod server;
mod session;
mod tlog;
mod usage;
mod witness;

/// Turns functions `fn name(provider: Provider)` into one `#[test]` per crypto
/// provider compiled in: `aws_lc::name` and `rustcrypto::name`.
#[cfg(test)]
#[macro_export]
macro_rules! tests_for_every_provider {
    ($($test:ident),* $(,)?) => {
        #[cfg(feature = "aws-lc")]
        mod aws_lc {
            $(
                #[test]
                fn $test() {
                    super::$test(wasm_hypervisor_protocol::provider::Provider::aws_lc())
                }
            )*
        }
        #[cfg(feature = "rustcrypto")]
        mod rustcrypto {
            $(
                #[test]
                fn $test() {
                    super::$test(wasm_hypervisor_protocol::provider::Provider::rustcrypto())
                }
            )*
        }
    };
}

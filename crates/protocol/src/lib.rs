//! The wasm-hypervisor protocol's cryptography, shared by the server and its
//! clients: HPKE sealing of requests, sealing of results, the commitment, and ECDSA
//! signatures, over a choice of crypto providers.
//!
//! Pure: no I/O, no clock, no async runtime, so it builds for
//! `wasm32-unknown-unknown` (with the `rustcrypto` provider) and a browser client
//! can use it as is. The wire contract is `shared/spec/protocol-v1.md`; the
//! vectors in `tests/vectors/` pin every byte, on every provider.
//!
//! # Layout
//! - [`provider`]: the crypto provider interface and the providers compiled in
//!   (`aws-lc`, `rustcrypto`).
//! - [`hpke`]: RFC 9180 base mode for the protocol's one suite, over a provider.
//! - [`envelope`]: sealing and opening requests, result keys and sealing, the
//!   commitment, the session-signature message.
//! - [`signing`]: ECDSA P-256 signing keys (PKCS#8) and public keys (SPKI, key id).

#![forbid(unsafe_code)]

pub mod envelope;
pub mod hpke;
pub mod provider;
pub mod signing;

#[cfg(test)]
mod known_answer_tests;

/// Turns functions `fn name(provider: Provider)` into one `#[test]` per compiled
/// provider: `aws_lc::name` and `rustcrypto::name`, so a failure names the provider.
#[cfg(test)]
#[macro_export]
macro_rules! tests_for_every_provider {
    ($($test:ident),* $(,)?) => {
        #[cfg(feature = "aws-lc")]
        mod aws_lc {
            $(
                #[test]
                fn $test() {
                    super::$test($crate::provider::Provider::aws_lc())
                }
            )*
        }
        #[cfg(feature = "rustcrypto")]
        mod rustcrypto {
            $(
                #[test]
                fn $test() {
                    super::$test($crate::provider::Provider::rustcrypto())
                }
            )*
        }
    };
}

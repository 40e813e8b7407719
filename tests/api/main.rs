//! Integration tests: the real server on a real port-0 socket, driven over HTTP.
//!
//! One binary, one module per feature. Every test that writes to the audit log ends
//! with [`helpers::TestApp::stop_and_verify_log`], which re-reads the whole log file
//! from scratch and checks every record against the server's key. Set `TEST_LOG=1`
//! to see the server's tracing output.

mod access;
mod answer_memory;
mod async_executions;
mod audit;
mod blobs;
mod capacity;
mod client_run;
mod cluster;
mod compilation;
mod components;
mod crash;
mod crypto_providers;
mod errors;
mod execute;
mod guest_budget;
mod guest_files;
mod health;
mod helpers;
mod http_limits;
mod key_command;
mod loadgen;
mod logs;
mod metrics;
mod monitor;
mod mounts;
mod openapi;
mod playground;
mod postgres;
mod real_programs;
mod receipts;
mod replay;
mod replay_programs;
mod restart;
mod sessions;
mod shutdown;
mod tlog;
mod usage;
mod wire;
mod witness;

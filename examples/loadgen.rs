//! A load generator for a running wasm-hypervisor: N concurrent clients, each doing
//! the whole protocol (session, seal, execute, open, commitment check) in a loop,
//! for a bounded number of requests and seconds. Prints throughput, latency
//! percentiles and the count of every status and error code.
//!
//! ```sh
//! cargo run --release -- serve &
//! cargo run --release --example loadgen -- --clients 32 --requests 2000 examples/hello.wasm
//! ```
//! Only ever point it at a server you run yourself (it defaults to 127.0.0.1).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use wasm_hypervisor::client::{Client, ClientError};
use wasm_hypervisor::payload::{ExecutionRequest, encode_base64};

#[derive(Debug, Parser)]
#[command(about = "Load generator for wasm-hypervisor")]
struct Args {
    /// The server's URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Total executions to attempt.
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    /// Stop after this many seconds even if requests remain.
    #[arg(long, default_value_t = 60)]
    max_seconds: u64,
    /// Bytes of stdin sent to each guest.
    #[arg(long, default_value_t = 64)]
    stdin_bytes: usize,
    /// Bearer token, if the server requires one.
    #[arg(long, env = "WASM_HYPERVISOR_TOKEN")]
    token: Option<String>,
    /// The module to run.
    module: std::path::PathBuf,
}

#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    outcomes: BTreeMap<String, usize>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let module = std::fs::read(&args.module)?;
    let request = ExecutionRequest {
        module: encode_base64(&module),
        stdin: Some(encode_base64(&vec![b'x'; args.stdin_bytes])),
        ..Default::default()
    };
    let plaintext = Arc::new(serde_json::to_vec(&request)?);
    let client = Client::new(&args.server, args.token.clone());
    let identity = client.identity(None).await?;
    let remaining = Arc::new(AtomicUsize::new(args.requests));
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let started = Instant::now();

    let mut workers = Vec::new();
    for _ in 0..args.clients {
        let (client, key, plaintext, remaining) = (
            client.clone(),
            identity.public_key,
            plaintext.clone(),
            remaining.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            while Instant::now() < deadline
                && remaining
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
            {
                let began = Instant::now();
                let outcome = match client.open_session(&key).await {
                    Ok(session) => match client.execute(&session, &plaintext).await {
                        Ok(execution) => execution.result.status.as_str().to_owned(),
                        Err(error) => describe(&error),
                    },
                    Err(error) => describe(&error),
                };
                tally.latencies.push(began.elapsed());
                *tally.outcomes.entry(outcome).or_default() += 1;
            }
            tally
        }));
    }
    let mut all = Tally::default();
    for worker in workers {
        let tally = worker.await?;
        all.latencies.extend(tally.latencies);
        for (outcome, count) in tally.outcomes {
            *all.outcomes.entry(outcome).or_default() += count;
        }
    }
    let elapsed = started.elapsed();
    all.latencies.sort();
    let percentile = |p: f64| {
        let index = ((all.latencies.len() as f64 - 1.0) * p).round() as usize;
        all.latencies.get(index).copied().unwrap_or_default()
    };
    println!(
        "{} executions by {} clients in {:.2} s: {:.1} executions/s",
        all.latencies.len(),
        args.clients,
        elapsed.as_secs_f64(),
        all.latencies.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency (session + execute): p50 {:?}  p90 {:?}  p99 {:?}  max {:?}",
        percentile(0.50),
        percentile(0.90),
        percentile(0.99),
        percentile(1.0)
    );
    for (outcome, count) in &all.outcomes {
        println!("  {outcome}: {count}");
    }
    Ok(())
}

fn describe(error: &ClientError) -> String {
    match error {
        ClientError::Server { status, code, .. } => format!("http {status} {code}"),
        other => format!("client error: {other}"),
    }
}

//! Load generator for a running wasm-hypervisor: `--concurrency` clients, each doing
//! the whole protocol in a loop (`POST /sessions` with its signature checked, HPKE
//! seal, `POST /execute`, result opened and commitment checked) for `--duration`
//! seconds after a `--warmup`. Reports throughput, latency p50/p90/p99/max, the count
//! of every guest status and error, and, given `--server-pid`, the server process's
//! CPU time per execution (from `/proc/<pid>/stat`: user + system, all threads;
//! and outside the threads that run guests, from `/proc/<pid>/task/*/stat`).
//! `--by-reference` sends the module (and `--dir` archives) once, then names them.
//! `--wire v1.1` (the default) sends binary bodies and CBOR plaintexts on sessions
//! from a pool filled in signed batches of `--batch` (protocol v1.1 §A–C); `--wire
//! v1` speaks protocol v1 only (JSON, a `POST /sessions` per execution).
//! `--deterministic` asks for reproducible executions (protocol v1.2 §R, the zero
//! seed). The report also gives the guest's time (the results' `wall_time_us`)
//! and how many distinct stdouts and fuel counts the executions gave: one each
//! for a deterministic guest, whatever the load.
//!
//! Several servers (replicas of a cluster, or independent servers): `--server` is
//! repeatable, and client task `i` is pinned to server `i mod n` for the whole run
//! (its own identity, session pool and, with `--by-reference`, its own first
//! upload, since blob stores are per server). `--server-pid` is repeatable too: the
//! server CPU is the sum over those processes. `--extra-pid` (repeatable) adds the
//! CPU of other process trees, such as PostgreSQL's postmaster and its backends
//! (each pid with all its descendants, live or reaped), reported apart and in a
//! total.
//!
//! ```sh
//! cargo run --release -- serve &
//! cargo run --release --bin loadgen -- --concurrency 32 --duration 10 \
//!     --server-pid $(pgrep -f 'wasm-hypervisor serve')
//! cargo run --release --bin loadgen -- -c 32 --server http://127.0.0.1:8081 \
//!     --server http://127.0.0.1:8082 --server-pid $PID1 --server-pid $PID2 \
//!     --extra-pid $(head -1 $PGDATA/postmaster.pid)
//! cargo run --release --bin loadgen -- --module target/third-party/boolector.wasm \
//!     --stdin-file benches/fixtures/bv.smt2 --arg --model-gen
//! ```
//! The default guest is `examples/tiny.wasm` (writes `hello`). Only ever point it at
//! a server you run yourself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use std::sync::Arc;

use clap::Parser;

use wasm_hypervisor_client::archive::pack_directory;
use wasm_hypervisor_client::{
    Client, ClientError, References, Retries, Run, RunError, SessionPool, Wire,
};
use wasm_hypervisor_protocol::digest::sha256;

/// `examples/tiny.wat`, assembled.
const TINY: &[u8] = include_bytes!("../../examples/tiny.wasm");

#[derive(Debug, Parser)]
#[command(about = "Load generator for wasm-hypervisor: the full protocol, real HPKE")]
struct Args {
    /// The server's URL; repeatable: client task i is pinned to server i mod n.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: Vec<String>,
    /// Clients running at once, each one request after another.
    #[arg(long, short = 'c', default_value_t = 1)]
    concurrency: usize,
    /// Seconds of measured load.
    #[arg(long, short = 'd', default_value_t = 10.0)]
    duration: f64,
    /// Seconds of unmeasured load first (fills the server's module cache and pools).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// The guest: a WASI command (core module or component). Default: the built-in
    /// tiny module, examples/tiny.wasm.
    #[arg(long)]
    module: Option<PathBuf>,
    /// An argument for the guest (repeatable); argv[0] is the module's name.
    #[arg(long = "arg", allow_hyphen_values = true)]
    args: Vec<String>,
    /// A file sent as the guest's stdin.
    #[arg(long, conflicts_with = "stdin_bytes")]
    stdin_file: Option<PathBuf>,
    /// This many bytes of `x` sent as the guest's stdin.
    #[arg(long)]
    stdin_bytes: Option<usize>,
    /// A server's process id: report the servers' CPU time per execution (the sum
    /// over every --server-pid given).
    #[arg(long)]
    server_pid: Vec<u32>,
    /// Another process whose CPU time, with all its descendants', is reported per
    /// execution apart and added to the servers' in a total (e.g. PostgreSQL's
    /// postmaster, whose children are its backends). Repeatable.
    #[arg(long)]
    extra_pid: Vec<u32>,
    /// Bearer token, if the server requires one.
    #[arg(long, env = "WASM_HYPERVISOR_TOKEN")]
    token: Option<String>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Send the module (and the `--dir` archives) once, then name them by SHA-256
    /// in every request (protocol v1.1 §D), as `run` does once it has sent them.
    #[arg(long)]
    by_reference: bool,
    /// Mount the host directory HOST read-only at GUEST (repeatable), packed as
    /// `run --dir` packs it.
    #[arg(long = "dir", value_name = "HOST::GUEST")]
    dirs: Vec<String>,
    /// An environment variable for the guest (repeatable).
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// The protocol: `v1.1` (binary bodies, CBOR plaintexts, pooled sessions
    /// opened in batches) or `v1` (JSON, one `POST /sessions` per execution).
    #[arg(long, default_value = "v1.1")]
    wire: Wire,
    /// With `--wire v1.1`: the most sessions one `POST /sessions {"count": N}`
    /// asks for (the pool starts at 4 and doubles while its batches are used up).
    #[arg(long, default_value_t = SessionPool::DEFAULT_BATCH)]
    batch: usize,
    /// Ask for deterministic executions (protocol v1.2 §R: fixed clocks, random
    /// bytes from the zero seed, the timeout as a fuel bound), on the server's
    /// deterministic engine.
    #[arg(long)]
    deterministic: bool,
}

#[derive(Default)]
struct Tally {
    /// Of executions only: refusals are fast and would flatter the percentiles.
    latencies: Vec<Duration>,
    /// Requests that got no result (HTTP errors, client errors).
    errors: u64,
    outcomes: BTreeMap<String, u64>,
    /// The guest's time of each execution (its result's `wall_time_us`).
    guest_us: Vec<u64>,
    /// The SHA-256 of each distinct stdout, and each distinct fuel count.
    stdouts: BTreeSet<[u8; 32]>,
    fuel: BTreeSet<u64>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        for (outcome, count) in other.outcomes {
            *self.outcomes.entry(outcome).or_default() += count;
        }
        self.guest_us.extend(other.guest_us);
        self.stdouts.extend(other.stdouts);
        self.fuel.extend(other.fuel);
    }

    /// The median and the mean guest time, in µs.
    fn guest_time(&self) -> (u64, f64) {
        let mut sorted = self.guest_us.clone();
        sorted.sort_unstable();
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
        let mean = sorted.iter().sum::<u64>() as f64 / sorted.len().max(1) as f64;
        (median, mean)
    }

    /// Nearest rank: the smallest latency at or above a fraction p of them
    /// (sorted).
    fn percentile(&self, p: f64) -> Duration {
        let count = self.latencies.len();
        if count == 0 {
            return Duration::ZERO;
        }
        let rank = ((p * count as f64).ceil() as usize).clamp(1, count);
        self.latencies[rank - 1]
    }
}

/// When the load runs: unmeasured until `measure_from`, measured until `stop_at`.
#[derive(Clone, Copy)]
struct Window {
    measure_from: Instant,
    stop_at: Instant,
}

/// CPU time per measured execution, in microseconds, where it was measured.
struct CpuReport {
    server: Option<f64>,
    host: Option<f64>,
    extra: Option<f64>,
    total: Option<f64>,
    loadgen: Option<f64>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let (module_name, module_bytes, run) = workload(&args)?;
    let (clients, run) = connect(&args, run).await?;
    let run = Arc::new(run);
    let measure_from = Instant::now() + Duration::from_secs_f64(args.warmup);
    let window = Window {
        measure_from,
        stop_at: measure_from + Duration::from_secs_f64(args.duration),
    };
    let workers: Vec<_> = (0..args.concurrency.max(1))
        .map(|worker| {
            let client = clients[worker % clients.len()].clone();
            tokio::spawn(load(client, run.clone(), window))
        })
        .collect();
    let cpu = measure_cpu(&args, window).await?;
    let mut all = Tally::default();
    for worker in workers {
        all.add(worker.await?);
    }
    all.latencies.sort();
    let cpu = cpu.per_execution(all.latencies.len());
    report(&args, &module_name, module_bytes, &all, &cpu);
    Ok(())
}

/// The guest's run from the flags, its name and its size.
fn workload(args: &Args) -> Result<(String, usize, Run), Box<dyn std::error::Error>> {
    let (module_name, module) = match &args.module {
        Some(path) => (path.display().to_string(), std::fs::read(path)?),
        None => ("examples/tiny.wasm (built in)".to_owned(), TINY.to_vec()),
    };
    let stdin = match (&args.stdin_file, args.stdin_bytes) {
        (Some(path), _) => std::fs::read(path)?,
        (None, Some(n)) => vec![b'x'; n],
        (None, None) => Vec::new(),
    };
    let env = args
        .env
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| format!("--env {pair}: expected K=V"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let module_bytes = module.len();
    let mut run = Run::new(module)
        .args(args.args.iter().cloned())
        .env(env)
        .stdin(&stdin);
    for mapping in &args.dirs {
        let (host, guest) = mapping
            .split_once("::")
            .ok_or_else(|| format!("--dir {mapping}: expected HOST::GUEST"))?;
        run = run.mount(guest, pack_directory(std::path::Path::new(host))?);
    }
    if args.deterministic {
        run = run.deterministic(None);
    }
    Ok((module_name, module_bytes, run))
}

/// Per server: a client (its identity, its session pool shared by its workers,
/// filled in signed batches with v1.1); with --by-reference the module and
/// archives are sent to it once with the bytes (each server keeps its own), then
/// named: the run the load repeats.
async fn connect(args: &Args, run: Run) -> Result<(Vec<Client>, Run), Box<dyn std::error::Error>> {
    let upload = run.references(References::Never);
    let mut clients = Vec::new();
    for server in &args.server {
        // A load generator counts refusals (a 429 is an outcome of the run, not
        // something to wait out): the client's retries after `Retry-After` are off.
        let client = Client::new(server, args.token.clone())
            .with_wire(args.wire)
            .with_retries(Retries::NONE)
            .with_batch(args.batch);
        client.connect().await?;
        if args.by_reference {
            client.run(&upload).await?;
        }
        clients.push(client);
    }
    let load = upload.references(if args.by_reference {
        References::Always
    } else {
        References::Never
    });
    Ok((clients, load))
}

/// One client task: runs one execution after another until the window closes.
async fn load(client: Client, run: Arc<Run>, window: Window) -> Tally {
    let mut tally = Tally::default();
    loop {
        let began = Instant::now();
        if began >= window.stop_at {
            return tally;
        }
        // An execution is a request that got a sealed result back, whatever the
        // guest's status; a refusal or failure is only counted.
        let (outcome, executed) = match client.run(&run).await {
            Ok(outcome) => {
                let result = &outcome.execution.result;
                let seen = (
                    result.wall_time_us,
                    sha256(&result.stdout.0),
                    result.fuel_consumed,
                );
                (result.status.as_str().to_owned(), Some(seen))
            }
            Err(RunError::Client(error)) => (describe(&error), None),
            Err(error) => (format!("client error: {error}"), None),
        };
        // Only requests that both start and end inside the window count.
        let ended = Instant::now();
        if began >= window.measure_from && ended <= window.stop_at {
            if let Some((guest_us, stdout, fuel)) = executed {
                tally.latencies.push(ended - began);
                tally.guest_us.push(guest_us);
                tally.stdouts.insert(stdout);
                tally.fuel.insert(fuel);
            } else {
                tally.errors += 1;
            }
            *tally.outcomes.entry(outcome).or_default() += 1;
        }
    }
}

/// CPU time spent in the window, sampled at its edges while the clients keep going.
struct CpuSpent {
    server: Option<Duration>,
    host: Option<Duration>,
    extra: Option<Duration>,
    loadgen: Duration,
}

async fn measure_cpu(args: &Args, window: Window) -> std::io::Result<CpuSpent> {
    let sample = || -> std::io::Result<_> {
        Ok((
            sum_cpu(&args.server_pid, process_cpu)?,
            sum_cpu(&args.server_pid, host_cpu)?,
            sum_cpu(&args.extra_pid, tree_cpu)?,
            own_cpu(),
        ))
    };
    tokio::time::sleep_until(window.measure_from.into()).await;
    let before = sample()?;
    tokio::time::sleep_until(window.stop_at.into()).await;
    let after = sample()?;
    let spent =
        |before: Option<Duration>, after: Option<Duration>| Some(after?.saturating_sub(before?));
    Ok(CpuSpent {
        server: spent(before.0, after.0),
        host: spent(before.1, after.1),
        extra: spent(before.2, after.2),
        loadgen: after.3.saturating_sub(before.3),
    })
}

impl CpuSpent {
    /// Per execution, in microseconds; nothing without executions.
    fn per_execution(&self, count: usize) -> CpuReport {
        let per = |spent: Option<Duration>| {
            spent
                .filter(|_| count > 0)
                .map(|spent| spent.as_secs_f64() * 1e6 / count as f64)
        };
        let (server, extra) = (per(self.server), per(self.extra));
        CpuReport {
            server,
            host: per(self.host),
            extra,
            total: server.zip(extra).map(|(server, extra)| server + extra),
            loadgen: per(Some(self.loadgen)),
        }
    }
}

/// Prints the report, as one JSON object with --json.
fn report(args: &Args, module_name: &str, module_bytes: usize, all: &Tally, cpu: &CpuReport) {
    if all
        .outcomes
        .keys()
        .any(|outcome| outcome.starts_with("http 429"))
    {
        eprintln!(
            "note: the server refused requests with 429: its per-client limits apply to this \
             load generator (lift them with WASM_HYPERVISOR_CLIENTS__REQUESTS_PER_SECOND=0, \
             WASM_HYPERVISOR_CLIENTS__MAX_CONCURRENT_EXECUTIONS=0 and \
             WASM_HYPERVISOR_SESSIONS__MAX_PENDING_PER_CLIENT=0, and past 64 clients \
             WASM_HYPERVISOR_HTTP__MAX_CONNECTIONS_PER_ADDRESS)"
        );
    }
    if args.json {
        println!("{}", json_report(args, module_name, module_bytes, all, cpu));
    } else {
        text_report(args, module_name, module_bytes, all, cpu);
    }
}

/// Executions per second of the measured load.
fn per_second(args: &Args, all: &Tally) -> f64 {
    all.latencies.len() as f64 / Duration::from_secs_f64(args.duration).as_secs_f64()
}

/// The latency percentile `p` in µs.
fn micros(all: &Tally, p: f64) -> f64 {
    all.percentile(p).as_secs_f64() * 1e6
}

/// The report as one JSON object (--json).
fn json_report(
    args: &Args,
    module_name: &str,
    module_bytes: usize,
    all: &Tally,
    cpu: &CpuReport,
) -> serde_json::Value {
    let (guest_median, guest_mean) = all.guest_time();
    serde_json::json!({
        "module": module_name,
        "module_bytes": module_bytes,
        "servers": args.server.len(),
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "executions": all.latencies.len(),
        "errors": all.errors,
        "executions_per_s": per_second(args, all),
        "latency_us": {
            "p50": micros(all, 0.50),
            "p90": micros(all, 0.90),
            "p99": micros(all, 0.99),
            "max": micros(all, 1.0),
        },
        "outcomes": all.outcomes,
        "deterministic": args.deterministic,
        "guest_us": {"p50": guest_median, "mean": guest_mean},
        "distinct_stdouts": all.stdouts.len(),
        "distinct_fuel": all.fuel.len(),
        "server_cpu_us_per_execution": cpu.server,
        "server_cpu_outside_guests_us_per_execution": cpu.host,
        "extra_cpu_us_per_execution": cpu.extra,
        "server_and_extra_cpu_us_per_execution": cpu.total,
        "loadgen_cpu_us_per_execution": cpu.loadgen,
    })
}

/// The report as lines of text.
fn text_report(args: &Args, module_name: &str, module_bytes: usize, all: &Tally, cpu: &CpuReport) {
    let (guest_median, guest_mean) = all.guest_time();
    println!(
        "{module_name} ({module_bytes} bytes), {} clients over {} server(s), {:.1} s measured after {:.1} s warm-up",
        args.concurrency,
        args.server.len(),
        args.duration,
        args.warmup
    );
    println!(
        "executions:   {} ({:.1}/s), and {} requests without a result",
        all.latencies.len(),
        per_second(args, all),
        all.errors
    );
    println!(
        "latency:      p50 {:.0} µs  p90 {:.0} µs  p99 {:.0} µs  max {:.0} µs  (session + execute)",
        micros(all, 0.50),
        micros(all, 0.90),
        micros(all, 0.99),
        micros(all, 1.0)
    );
    println!(
        "guest time:   p50 {guest_median} µs  mean {guest_mean:.0} µs  ({}; {} distinct stdouts, {} distinct fuel counts)",
        if args.deterministic {
            "deterministic"
        } else {
            "normal"
        },
        all.stdouts.len(),
        all.fuel.len()
    );
    cpu_lines(cpu);
    println!("outcomes:");
    for (outcome, count) in &all.outcomes {
        println!("  {outcome}: {count}");
    }
}

/// The CPU lines of the text report, those that were measured.
fn cpu_lines(cpu: &CpuReport) {
    if let Some(us) = cpu.server {
        println!("server CPU:   {us:.1} µs per execution (user + system, all threads)");
    }
    if let Some(us) = cpu.host {
        println!("server CPU:   {us:.1} µs per execution outside the guest threads");
    }
    if let Some(us) = cpu.extra {
        println!("extra CPU:    {us:.1} µs per execution (--extra-pid trees)");
    }
    if let Some(us) = cpu.total {
        println!("total CPU:    {us:.1} µs per execution (servers + extra)");
    }
    if let Some(us) = cpu.loadgen {
        println!("loadgen CPU:  {us:.1} µs per execution");
    }
}

fn describe(error: &ClientError) -> String {
    match error {
        ClientError::Server { status, code, .. } => format!("http {status} {code}"),
        other => format!("client error: {other}"),
    }
}

/// `measure` summed over `pids`; `None` when there are none.
fn sum_cpu(
    pids: &[u32],
    measure: fn(u32) -> std::io::Result<Duration>,
) -> std::io::Result<Option<Duration>> {
    if pids.is_empty() {
        return Ok(None);
    }
    let mut total = Duration::ZERO;
    for &pid in pids {
        total += measure(pid)?;
    }
    Ok(Some(total))
}

/// User + system CPU time of `pid` and all its descendants: for every live process
/// of the tree its own time plus that of its children it has reaped (`cutime`,
/// `cstime`), so a backend that exited still counts, in its parent.
fn tree_cpu(root: u32) -> std::io::Result<Duration> {
    // (pid, parent pid, utime + stime + cutime + cstime in ticks) of every process.
    let mut processes = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            // The process ended since the directory was read.
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // After the name: ppid is field 1, utime..cstime fields 11..=14.
        processes.push((pid, field(1) as u32, (11..=14).map(field).sum::<u64>()));
    }
    if !processes.iter().any(|&(pid, _, _)| pid == root) {
        return Err(std::io::Error::other(format!("no process {root}")));
    }
    let mut tree = vec![root];
    let mut ticks = 0u64;
    while let Some(parent) = tree.pop() {
        for &(pid, ppid, own) in &processes {
            if pid == parent {
                ticks += own;
            } else if ppid == parent {
                tree.push(pid);
            }
        }
    }
    let hz = rustix::param::clock_ticks_per_second();
    Ok(Duration::from_secs_f64(ticks as f64 / hz as f64))
}

/// User + system CPU time of a whole process (all threads), from `/proc/<pid>/stat`.
fn process_cpu(pid: u32) -> std::io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; fields after it are plain.
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the file, 12 and 13 after the name.
    let ticks = |i: usize| -> std::io::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("unexpected /proc/{pid}/stat")))
    };
    let total = ticks(11)? + ticks(12)?;
    let hz = rustix::param::clock_ticks_per_second();
    Ok(Duration::from_secs_f64(total as f64 / hz as f64))
}

/// User + system CPU time of the threads of a process that are not running
/// guests (the server names those `guest`): the server's own work, without what
/// the guest itself computes.
fn host_cpu(pid: u32) -> std::io::Result<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let stat = match std::fs::read_to_string(task?.path().join("stat")) {
            Ok(stat) => stat,
            // The thread ended since the directory was read.
            Err(_) => continue,
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let name = head.split_once('(').map_or("", |(_, name)| name);
        if name.starts_with("guest") {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        total += ticks(11) + ticks(12);
    }
    let hz = rustix::param::clock_ticks_per_second();
    Ok(Duration::from_secs_f64(total as f64 / hz as f64))
}

/// This process's own user + system CPU time.
fn own_cpu() -> Duration {
    process_cpu(std::process::id()).unwrap_or_default()
}

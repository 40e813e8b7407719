//! The memory one execution makes the server hold, measured on the real binary:
//! the documented bound per execution (README, "Sizing the host's memory";
//! PROTOCOL.md, "Host memory per guest") holds for the worst answers we can
//! build (issue 25 rows 2 and 3), on both wires.
//!
//! Each case runs in a server process of its own, with small limits so that it
//! is quick: a warm-up execution of the same module without mounts (compiled,
//! cached, the runtime's pools touched), then the peak resident memory reset
//! (`/proc/PID/clear_refs`), then the hostile execution; its growth is the peak
//! (`VmHWM`) less the resident memory before it (`VmRSS`).

use wasm_hypervisor_client::{Client, Wire};
use wasm_hypervisor_protocol::payload::{
    EffectiveLimits, ExecutionRequest, MountRequest, RequestedLimits, Status,
};
use wasm_hypervisor_protocol::plaintext::Format;
use wasm_hypervisor_server::answer::answer_bound;

use crate::helpers::{DataDir, ServerProcess, example, fixture, load_heavy_test, request};

/// What the file tree may hold per entry, besides file contents (README,
/// "Sizing the host's memory"): the node, its name (up to 255 bytes) in its
/// directory, and its name again while its archive is written.
const ENTRY_BYTES: u64 = 1024;
/// The fixed costs of an execution (README): the guest's stacks, Wasmtime's
/// state for an instance, the connection's buffers, allocator slack.
const FIXED_BYTES: u64 = 8 << 20;
/// What the measurement itself may add: pages of the (debug) binary's code
/// first run by the hostile request, and freed buffers the allocator has not
/// yet returned when the peak is reached (the growth of one case varies by
/// about 20 MiB between runs).
const MARGIN_BYTES: u64 = 8 << 20;

/// One execution's limits, set as the server's maxima.
struct Limits {
    memory_bytes: u64,
    max_output_bytes: u64,
    files_bytes: u64,
    max_mount_entries: u32,
}

impl Limits {
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "WASM_HYPERVISOR_LIMITS__MEMORY_BYTES",
                self.memory_bytes.to_string(),
            ),
            (
                "WASM_HYPERVISOR_LIMITS__MAX_OUTPUT_BYTES",
                self.max_output_bytes.to_string(),
            ),
            (
                "WASM_HYPERVISOR_LIMITS__FILES_BYTES",
                self.files_bytes.to_string(),
            ),
            (
                "WASM_HYPERVISOR_LIMITS__MAX_MOUNT_ENTRIES",
                self.max_mount_entries.to_string(),
            ),
        ]
    }

    /// The documented bound on what one execution with a writable mount makes
    /// the server hold: memory_bytes + the file tree (2 x files_bytes, for a
    /// file's buffer doubles as it grows, + 1 KiB per entry) + 2 x
    /// max_output_bytes (the pipes) + the answer (`answer_bound`) + the request
    /// (twice while it is decoded) + fixed costs.
    fn bound(&self, format: Format, request_bytes: u64) -> u64 {
        let effective = EffectiveLimits {
            fuel: u64::MAX,
            memory_bytes: self.memory_bytes,
            timeout_ms: u64::MAX,
            max_output_bytes: self.max_output_bytes,
            files_bytes: Some(self.files_bytes),
        };
        self.memory_bytes
            + 2 * self.files_bytes
            + ENTRY_BYTES * u64::from(self.max_mount_entries)
            + 2 * self.max_output_bytes
            + answer_bound(&effective, self.max_mount_entries, true, format)
            + 2 * request_bytes
            + FIXED_BYTES
    }
}

/// A field of `/proc/PID/status`, in bytes.
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|value| value.parse().ok())
        .unwrap();
    kib * 1024
}

/// Runs `warm_up` then `hostile` on a fresh server with `limits`, over `wire`,
/// and returns how far the server's resident memory rose above where it was
/// before `hostile`, with the request's plaintext size and the result.
async fn growth(
    limits: &Limits,
    wire: Wire,
    warm_up: &ExecutionRequest,
    hostile: &ExecutionRequest,
) -> (u64, u64, wasm_hypervisor_protocol::payload::ExecutionResult) {
    let data_dir = DataDir::new();
    let env = limits.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = ServerProcess::start_with(&data_dir.path, &[], &env);
    let client = Client::new(&server.base, None).with_wire(wire);
    let key = client.identity(None).await.unwrap().public_key;
    let run = |request: &ExecutionRequest| {
        let plaintext = wire.encode_request(request).unwrap();
        let client = client.clone();
        async move {
            let session = client.open_session(&key).await.unwrap();
            let execution = client.execute(&session, &plaintext).await.unwrap();
            (plaintext.len() as u64, execution.result)
        }
    };
    run(warm_up).await;
    let pid = server.pid();
    // Linux: "5" resets the peak resident set size to the current one.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    let before = status_bytes(pid, "VmRSS:");
    let (request_bytes, result) = run(hostile).await;
    let peak = status_bytes(pid, "VmHWM:");
    server.kill();
    (peak.saturating_sub(before), request_bytes, result)
}

fn writable(path: &str) -> MountRequest {
    MountRequest {
        path: path.into(),
        writable: true,
        ..Default::default()
    }
}

fn format_of(wire: Wire) -> Format {
    match wire {
        Wire::V1 => Format::Json,
        Wire::V1_1 => Format::Cbor,
    }
}

const MIB: f64 = (1 << 20) as f64;

/// Issue 25 row 2: `max_mount_entries` empty files with 4,095-byte paths,
/// whose archive would be 5.5 times its bound (before: +26 KB of memory per
/// entry, a 5.6 KB answer per entry).
#[tokio::test(flavor = "multi_thread")]
async fn long_paths_in_a_writable_mount_stay_within_the_documented_memory_bound() {
    let _heavy = load_heavy_test().await;
    let limits = Limits {
        memory_bytes: 4 << 20,
        max_output_bytes: 64 << 10,
        files_bytes: 64 << 10,
        max_mount_entries: 20_000,
    };
    let module = fixture("long_paths");
    let warm_up = request(&module);
    let hostile = ExecutionRequest {
        mounts: vec![writable("/out")],
        ..request(&module)
    };
    for wire in [Wire::V1, Wire::V1_1] {
        let (growth, request_bytes, result) = growth(&limits, wire, &warm_up, &hostile).await;
        assert_eq!(result.status, Status::Completed, "{:?}", result.error);
        assert!(result.mounts_out_truncated);
        let bound = limits.bound(format_of(wire), request_bytes);
        eprintln!(
            "long paths, {wire:?}: +{:.1} MiB, bound {:.1} MiB",
            growth as f64 / MIB,
            bound as f64 / MIB
        );
        assert!(
            growth <= bound + MARGIN_BYTES,
            "{wire:?}: +{growth} bytes, over the documented {bound} and the margin"
        );
    }
}

/// Issue 25 row 3: a guest writes `files_bytes` to a file of its writable
/// mount, in 64 KiB writes (before: 9.2 times the file in JSON, 3.2 times in
/// CBOR).
#[tokio::test(flavor = "multi_thread")]
async fn a_full_writable_mount_stays_within_the_documented_memory_bound() {
    let _heavy = load_heavy_test().await;
    let limits = Limits {
        memory_bytes: 4 << 20,
        max_output_bytes: 64 << 10,
        files_bytes: 16 << 20,
        max_mount_entries: 1000,
    };
    let module = example("files");
    let fill = |mounts| ExecutionRequest {
        args: vec!["fill".into(), "/out".into()],
        mounts,
        limits: Some(RequestedLimits::default()),
        ..request(&module)
    };
    for wire in [Wire::V1, Wire::V1_1] {
        let (growth, request_bytes, result) =
            growth(&limits, wire, &fill(vec![]), &fill(vec![writable("/out")])).await;
        assert_eq!(result.status, Status::Completed, "{:?}", result.error);
        assert_eq!(
            result.stdout_bytes(),
            format!("filled {} bytes\n", limits.files_bytes).into_bytes()
        );
        let bound = limits.bound(format_of(wire), request_bytes);
        eprintln!(
            "a full mount, {wire:?}: +{:.1} MiB, bound {:.1} MiB",
            growth as f64 / MIB,
            bound as f64 / MIB
        );
        assert!(
            growth <= bound + MARGIN_BYTES,
            "{wire:?}: +{growth} bytes, over the documented {bound} and the margin"
        );
    }
}

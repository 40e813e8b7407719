//! The service's Prometheus metrics: one registry, every series in it, and the
//! calls that observe them. Encoding is `prometheus-client`'s (the OpenMetrics text
//! format, which Prometheus scrapes natively).
//!
//! Architecture invariant: every label value comes from a fixed set the server
//! defines: route templates (`/verify/{execution_id}`, never the path a client
//! sent) or `unmatched`, an HTTP method from [`METHODS`] or `other`, an HTTP status
//! code the server produced, an execution status word. Nothing a client chooses —
//! an id, a hash, a raw path, a header — becomes a label value, so the number of
//! series stays bounded and no metric identifies an execution.
//!
//! Gauges that mirror state other modules already keep (slots in use, queue depth,
//! pending sessions, log size) are not updated as that state changes: the caller
//! of [`Metrics::render`] reads them at scrape time.
//!
//! Architecture invariant: two audiences, two registries. An execution's result
//! is sealed, but a quantity it alone adds to a series is not: the step of
//! `fuel_consumed_total` around one execution is that execution's `fuel_consumed`,
//! the step of a time histogram's sum is its guest, compile or request time, and a
//! module cache hit says someone already sent the same module. Those series are
//! for the [`Audience::Operator`] only (a scraper with a metrics token). The
//! [`Audience::Public`] gets what no single execution's content shapes: requests
//! and executions as counts by status, and the gauges.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use wasm_hypervisor_protocol::payload::Status;

/// Prefix of every series name.
pub const PREFIX: &str = "wasm_hypervisor";

/// `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// HTTP methods that get their own label value; any other is `other`.
pub const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

/// Route label of requests that matched no route (404 from the fallback).
pub const UNMATCHED_ROUTE: &str = "unmatched";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WitnessLabels {
    witness: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WitnessFailureLabels {
    witness: String,
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BodyLabels {
    /// `json` or `binary`.
    body: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PlaintextLabels {
    /// `json` or `cbor`.
    plaintext: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

/// HTTP latencies: 0.5 ms (`/health`, `/keys`) to 16 s (an `/execute` that waited
/// `queue_timeout_ms` and then ran for `timeout_ms`, at their defaults 5 s + 10 s).
fn http_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The gauges read from other modules' state at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub executions_in_flight: usize,
    pub execution_queue_depth: usize,
    pub sessions_pending: usize,
    pub audit_log_size: u64,
    /// Bytes held by the blob stores of every scope.
    pub blob_store_bytes: usize,
    /// Async executions accepted and not finished.
    pub async_executions_pending: usize,
    /// Finished async answers kept.
    pub async_results_stored: usize,
    /// Bytes reserved for pending async answers plus those of the finished
    /// answers kept.
    pub async_results_bytes: usize,
}

/// Who reads the exposition, and so how much of it they see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Anyone, where `/metrics` needs no token: counts by status and gauges only,
    /// no series a single execution's content moves by more than one.
    Public,
    /// A scraper that presented a metrics token: every series.
    Operator,
}

/// Every series of the service; cheap to clone (one `Arc`: handlers clone it per
/// request).
#[derive(Clone)]
pub struct Metrics(Arc<Series>);

/// The two registries: the same series objects (clones share their values), each
/// registered with the operator's and, if public, with the public one too.
struct Registries {
    public: Registry,
    operator: Registry,
}

impl Registries {
    fn new() -> Registries {
        Registries {
            public: Registry::with_prefix(PREFIX),
            operator: Registry::with_prefix(PREFIX),
        }
    }

    /// Registers `metric` for `audience` and gives it back. The exposition lists
    /// the series in the order they are registered.
    fn add<M: prometheus_client::registry::Metric + Clone>(
        &mut self,
        audience: Audience,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        metric: M,
    ) -> M {
        let add = |registry: &mut Registry, metric| match unit.clone() {
            Some(unit) => registry.register_with_unit(name, help, unit, metric),
            None => registry.register(name, help, metric),
        };
        if audience == Audience::Public {
            add(&mut self.public, metric.clone());
        }
        add(&mut self.operator, metric.clone());
        metric
    }

    fn counter(&mut self, audience: Audience, name: &str, help: &str) -> Counter {
        self.add(audience, name, help, None, Counter::default())
    }

    fn gauge(&mut self, audience: Audience, name: &str, help: &str) -> Gauge {
        self.add(audience, name, help, None, Gauge::default())
    }

    /// A histogram of seconds, for the operator only: its sum steps by the time
    /// of one execution, or of its request.
    fn seconds(&mut self, name: &str, help: &str, histogram: Histogram) -> Histogram {
        self.add(
            Audience::Operator,
            name,
            help,
            Some(Unit::Seconds),
            histogram,
        )
    }
}

/// A count for a gauge, saturated at `i64::MAX`.
fn saturate(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

struct Series {
    public: Registry,
    operator: Registry,
    http: HttpSeries,
    executions: ExecutionSeries,
    load: LoadGauges,
    blobs: BlobSeries,
    jobs: AsyncSeries,
    wire: WireSeries,
    witnesses: WitnessSeries,
}

/// HTTP requests: counts by route template, method and status, and latencies.
struct HttpSeries {
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
}

impl HttpSeries {
    fn register(registries: &mut Registries) -> HttpSeries {
        HttpSeries {
            requests: registries.add(
                Audience::Public,
                "http_requests",
                "HTTP requests answered, by route template, method and status code",
                None,
                Family::default(),
            ),
            // Operator only: an `/execute`'s time is mostly its guest and compile time.
            request_duration: registries.add(
                Audience::Operator,
                "http_request_duration",
                "Time from a request's arrival to its response, by route template",
                Some(Unit::Seconds),
                Family::new_with_constructor(http_buckets as fn() -> _),
            ),
        }
    }
}

/// What executions cost: their count by status, guest and compile time, the
/// module cache, fuel, and the durable append of their records.
struct ExecutionSeries {
    executions: Family<StatusLabels, Counter>,
    duration: Histogram,
    compile_duration: Histogram,
    module_cache_hits: Counter,
    module_cache_misses: Counter,
    fuel_consumed: Counter,
    audit_append_duration: Histogram,
}

impl ExecutionSeries {
    fn register(registries: &mut Registries) -> ExecutionSeries {
        use Audience::{Operator, Public};
        let series = ExecutionSeries {
            executions: registries.add(
                Public,
                "executions",
                "Executions (requests whose plaintext was opened), by result status",
                None,
                Family::default(),
            ),
            // Guest time: from 100 µs to 582 s, about the largest `limits.timeout_ms`.
            duration: registries.seconds(
                "execution_duration",
                "Time spent in the guest (the result's wall_time_us), for executions whose \
                 guest was started",
                Histogram::new(exponential_buckets(0.0001, 2.5, 18)),
            ),
            // Cranelift: a small C program compiles in a few ms, an 8 MiB module in seconds.
            compile_duration: registries.seconds(
                "compile_duration",
                "Time to compile a module, successful or not",
                Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            ),
            // Operator only: a hit says someone already sent this very module.
            module_cache_hits: registries.counter(
                Operator,
                "module_cache_hits",
                "Modules found compiled in the module cache",
            ),
            module_cache_misses: registries.counter(
                Operator,
                "module_cache_misses",
                "Modules not in the module cache, compiled anew",
            ),
            fuel_consumed: registries.counter(
                Operator,
                "fuel_consumed",
                "Wasmtime fuel units burned by guests",
            ),
            // Group commit: one write and one fdatasync, 50 µs on fast local disks to
            // around a second on a struggling one.
            // Operator only: not shaped by content, but kept with the other timings so
            // that the public set holds no histogram at all.
            audit_append_duration: registries.seconds(
                "audit_append_duration",
                "Time from handing a record to the audit writer to it being durable",
                Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
            ),
        };
        // Every status exists from the start, at 0, so that rates and alerts on a
        // status that has not happened yet see a series rather than nothing.
        for status in Status::ALL {
            let _series = series.executions.get_or_create(&StatusLabels {
                status: status.as_str(),
            });
        }
        series
    }
}

/// Gauges of the load, read from other modules' state at scrape time.
struct LoadGauges {
    executions_in_flight: Gauge,
    execution_queue_depth: Gauge,
    sessions_pending: Gauge,
    audit_log_size: Gauge,
}

impl LoadGauges {
    fn register(registries: &mut Registries) -> LoadGauges {
        let mut gauge = |name, help| registries.gauge(Audience::Public, name, help);
        LoadGauges {
            executions_in_flight: gauge(
                "executions_in_flight",
                "Guests running now (execution slots in use)",
            ),
            execution_queue_depth: gauge(
                "execution_queue_depth",
                "Executions waiting for a slot now",
            ),
            sessions_pending: gauge(
                "sessions_pending",
                "Sessions issued and neither used, expired nor evicted",
            ),
            audit_log_size: gauge("audit_log_size", "Records in the audit log"),
        }
    }

    fn set(&self, gauges: &Gauges) {
        self.executions_in_flight
            .set(saturate(gauges.executions_in_flight as u64));
        self.execution_queue_depth
            .set(saturate(gauges.execution_queue_depth as u64));
        self.sessions_pending
            .set(saturate(gauges.sessions_pending as u64));
        self.audit_log_size.set(saturate(gauges.audit_log_size));
    }
}

/// The blob stores (protocol v1.1 §D): bytes held, lookups found and not.
struct BlobSeries {
    bytes: Gauge,
    hits: Counter,
    misses: Counter,
}

impl BlobSeries {
    fn register(registries: &mut Registries) -> BlobSeries {
        use Audience::Operator;
        BlobSeries {
            // Operator only: a scope's store moves with what its clients send.
            bytes: registries.gauge(
                Operator,
                "blob_store_bytes",
                "Bytes of modules and archives held by the blob stores of every scope",
            ),
            hits: registries.counter(
                Operator,
                "blob_store_hits",
                "Blobs named by SHA-256 and found in the client's scope",
            ),
            misses: registries.counter(
                Operator,
                "blob_store_misses",
                "Blobs named by SHA-256 and not found in the client's scope (missing_blob)",
            ),
        }
    }
}

/// Long jobs (protocol v1.1 §F): accepted, pending, answers kept and their bytes.
struct AsyncSeries {
    executions: Counter,
    pending: Gauge,
    stored: Gauge,
    bytes: Gauge,
}

impl AsyncSeries {
    fn register(registries: &mut Registries) -> AsyncSeries {
        use Audience::{Operator, Public};
        AsyncSeries {
            executions: registries.counter(
                Public,
                "async_executions",
                "Executions accepted with Prefer: respond-async (answered 202)",
            ),
            pending: registries.gauge(
                Public,
                "async_executions_pending",
                "Async executions accepted and not finished",
            ),
            stored: registries.gauge(
                Public,
                "async_results_stored",
                "Finished async answers kept for their client",
            ),
            // Operator only: its step when one answer is stored is that execution's
            // sealed result size, which follows its output's size.
            bytes: registries.add(
                Operator,
                "async_results",
                "Bytes reserved for pending async answers plus those of the finished answers kept",
                Some(Unit::Bytes),
                Gauge::default(),
            ),
        }
    }

    fn set(&self, gauges: &Gauges) {
        self.pending
            .set(saturate(gauges.async_executions_pending as u64));
        self.stored
            .set(saturate(gauges.async_results_stored as u64));
        self.bytes.set(saturate(gauges.async_results_bytes as u64));
    }
}

/// The protocol versions clients use: `/execute` bodies by type, request
/// plaintexts by format.
struct WireSeries {
    execute_bodies: Family<BodyLabels, Counter>,
    request_plaintexts: Family<PlaintextLabels, Counter>,
}

impl WireSeries {
    fn register(registries: &mut Registries) -> WireSeries {
        // Operator only, like the other breakdowns of what clients send.
        let series = WireSeries {
            execute_bodies: registries.add(
                Audience::Operator,
                "execute_bodies",
                "POST /execute bodies read and decoded, by body type (json, binary)",
                None,
                Family::default(),
            ),
            request_plaintexts: registries.add(
                Audience::Operator,
                "request_plaintexts",
                "Request plaintexts opened, by format (json, cbor)",
                None,
                Family::default(),
            ),
        };
        for body in ["json", "binary"] {
            let _series = series.execute_bodies.get_or_create(&BodyLabels { body });
        }
        for plaintext in ["json", "cbor"] {
            let _series = (series.request_plaintexts).get_or_create(&PlaintextLabels { plaintext });
        }
        series
    }
}

/// Witnesses (`crate::witness`): which one lags, by how much, and why; and the
/// published checkpoint's size. Operator only.
struct WitnessSeries {
    lag_entries: Family<WitnessLabels, Gauge>,
    lag_seconds: Family<WitnessLabels, Gauge>,
    failures: Family<WitnessFailureLabels, Counter>,
    published_size: Gauge,
}

impl WitnessSeries {
    fn register(registries: &mut Registries) -> WitnessSeries {
        use Audience::Operator;
        WitnessSeries {
            lag_entries: registries.add(
                Operator,
                "witness_lag_entries",
                "Leaves in the tree that the witness has not cosigned (tree size minus its cosigned size)",
                None,
                Family::default(),
            ),
            lag_seconds: registries.add(
                Operator,
                "witness_lag",
                "Seconds since the witness's last valid cosignature (since start when it has given none)",
                Some(Unit::Seconds),
                Family::default(),
            ),
            failures: registries.add(
                Operator,
                "witness_failures",
                "Checkpoint submissions to a witness that got no valid cosignature, by witness and kind",
                None,
                Family::default(),
            ),
            published_size: registries.gauge(Operator, "tlog_published_size", "Tree size of the published checkpoint (cosigned by a quorum of witnesses)"),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every series, registered family by family: the exposition lists them in
    /// this order.
    pub fn new() -> Metrics {
        let mut registries = Registries::new();
        let http = HttpSeries::register(&mut registries);
        let executions = ExecutionSeries::register(&mut registries);
        let load = LoadGauges::register(&mut registries);
        let blobs = BlobSeries::register(&mut registries);
        let jobs = AsyncSeries::register(&mut registries);
        let wire = WireSeries::register(&mut registries);
        let witnesses = WitnessSeries::register(&mut registries);
        Metrics(Arc::new(Series {
            public: registries.public,
            operator: registries.operator,
            http,
            executions,
            load,
            blobs,
            jobs,
            wire,
            witnesses,
        }))
    }

    /// A witness's lag: leaves it has not cosigned, seconds since its last
    /// cosignature.
    pub fn set_witness_lag(&self, witness: &str, entries: u64, seconds: u64) {
        let labels = WitnessLabels {
            witness: witness.to_owned(),
        };
        let witnesses = &self.0.witnesses;
        witnesses
            .lag_entries
            .get_or_create(&labels)
            .set(saturate(entries));
        witnesses
            .lag_seconds
            .get_or_create(&labels)
            .set(saturate(seconds));
    }

    /// A submission to `witness` that failed (`kind`: a fixed word,
    /// `witness::FailureKind::as_str`).
    pub fn count_witness_failure(&self, witness: &str, kind: &'static str) {
        self.0
            .witnesses
            .failures
            .get_or_create(&WitnessFailureLabels {
                witness: witness.to_owned(),
                kind,
            })
            .inc();
    }

    /// The published checkpoint's tree size.
    pub fn set_published_size(&self, size: u64) {
        self.0.witnesses.published_size.set(saturate(size));
    }

    /// One answered HTTP request. `route` must be the matched route's template or
    /// [`UNMATCHED_ROUTE`]; `method` is reduced to [`METHODS`] or `other`.
    pub fn observe_http(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let method = METHODS
            .iter()
            .find(|known| **known == method)
            .copied()
            .unwrap_or("other");
        self.0
            .http
            .requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method,
                status,
            })
            .inc();
        self.0
            .http
            .request_duration
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// One `/execute` body read and decoded; `body` is `json` or `binary`.
    pub fn record_execute_body(&self, body: &'static str) {
        self.0
            .wire
            .execute_bodies
            .get_or_create(&BodyLabels { body })
            .inc();
    }

    /// One request plaintext opened; `plaintext` is `json` or `cbor`.
    pub fn record_request_plaintext(&self, plaintext: &'static str) {
        self.0
            .wire
            .request_plaintexts
            .get_or_create(&PlaintextLabels { plaintext })
            .inc();
    }

    /// One finished execution: its status, the fuel it burned and its guest time.
    pub fn observe_execution(&self, status: Status, fuel_consumed: u64, wall_time_us: u64) {
        let executions = &self.0.executions;
        executions
            .executions
            .get_or_create(&StatusLabels {
                status: status.as_str(),
            })
            .inc();
        executions.fuel_consumed.inc_by(fuel_consumed);
        // These never start the guest; a 0 would only drag the quantiles down.
        if !matches!(status, Status::InvalidModule | Status::InvalidRequest) {
            executions.duration.observe(wall_time_us as f64 / 1e6);
        }
    }

    /// One compilation of a module, successful or not.
    pub fn observe_compile(&self, seconds: f64) {
        self.0.executions.compile_duration.observe(seconds);
    }

    /// One module-cache lookup.
    pub fn record_module_cache(&self, hit: bool) {
        if hit {
            self.0.executions.module_cache_hits.inc();
        } else {
            self.0.executions.module_cache_misses.inc();
        }
    }

    /// Lookups of blobs a request named by SHA-256: found, and not found.
    pub fn record_blob_lookups(&self, found: u64, missing: u64) {
        self.0.blobs.hits.inc_by(found);
        self.0.blobs.misses.inc_by(missing);
    }

    /// One durable append to the audit log.
    pub fn observe_audit_append(&self, seconds: f64) {
        self.0.executions.audit_append_duration.observe(seconds);
    }

    /// One execution accepted with `Prefer: respond-async`.
    pub fn record_async_execution(&self) {
        self.0.jobs.executions.inc();
    }

    /// The exposition `audience` may see, with the gauges set to `gauges`.
    pub fn render(&self, gauges: Gauges, audience: Audience) -> String {
        self.0.load.set(&gauges);
        self.0
            .blobs
            .bytes
            .set(saturate(gauges.blob_store_bytes as u64));
        self.0.jobs.set(&gauges);
        let mut text = String::new();
        let registry = match audience {
            Audience::Public => &self.0.public,
            Audience::Operator => &self.0.operator,
        };
        prometheus_client::encoding::text::encode(&mut text, registry)
            .expect("writing to a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|value| value.parse().unwrap())
    }

    #[test]
    fn methods_outside_the_fixed_set_are_other() {
        let metrics = Metrics::new();
        metrics.observe_http("/health", "GET", 200, 0.001);
        metrics.observe_http("/health", "BREW", 405, 0.001);
        let text = metrics.render(Gauges::default(), Audience::Operator);
        assert_eq!(
            line_value(
                &text,
                r#"wasm_hypervisor_http_requests_total{route="/health",method="GET",status="200"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            line_value(
                &text,
                r#"wasm_hypervisor_http_requests_total{route="/health",method="other",status="405"}"#
            ),
            Some(1.0)
        );
        assert!(!text.contains("BREW"));
    }

    #[test]
    fn every_execution_status_has_a_series_from_the_start() {
        let text = Metrics::new().render(Gauges::default(), Audience::Operator);
        for status in Status::ALL {
            let series = format!(
                "wasm_hypervisor_executions_total{{status=\"{}\"}}",
                status.as_str()
            );
            assert_eq!(line_value(&text, &series), Some(0.0), "{series}");
        }
    }

    #[test]
    fn executions_that_never_started_a_guest_add_no_guest_time() {
        let metrics = Metrics::new();
        metrics.observe_execution(Status::Completed, 10, 2_000);
        metrics.observe_execution(Status::InvalidModule, 0, 0);
        let text = metrics.render(Gauges::default(), Audience::Operator);
        assert_eq!(
            line_value(&text, "wasm_hypervisor_execution_duration_seconds_count"),
            Some(1.0)
        );
        assert_eq!(
            line_value(&text, "wasm_hypervisor_execution_duration_seconds_sum"),
            Some(0.002)
        );
        assert_eq!(
            line_value(&text, "wasm_hypervisor_fuel_consumed_total"),
            Some(10.0)
        );
    }

    #[test]
    fn the_public_exposition_has_counts_and_gauges_and_nothing_measured_per_execution() {
        let metrics = Metrics::new();
        metrics.observe_http("/execute", "POST", 200, 0.25);
        metrics.observe_execution(Status::Completed, 55_558, 2_000);
        metrics.observe_compile(0.01);
        metrics.record_module_cache(true);
        metrics.observe_audit_append(0.001);
        let gauges = Gauges {
            executions_in_flight: 1,
            execution_queue_depth: 2,
            sessions_pending: 3,
            audit_log_size: 4,
            blob_store_bytes: 5,
            async_executions_pending: 5,
            async_results_stored: 6,
            async_results_bytes: 7_777,
        };
        metrics.record_blob_lookups(6, 7);
        let public = metrics.render(gauges, Audience::Public);
        let names: Vec<&str> = public
            .lines()
            .filter(|line| !line.starts_with('#'))
            .map(|line| line.split(['{', ' ']).next().unwrap())
            .collect();
        for name in &names {
            assert!(
                [
                    "wasm_hypervisor_http_requests_total",
                    "wasm_hypervisor_executions_total",
                    "wasm_hypervisor_executions_in_flight",
                    "wasm_hypervisor_execution_queue_depth",
                    "wasm_hypervisor_sessions_pending",
                    "wasm_hypervisor_audit_log_size",
                    "wasm_hypervisor_async_executions_total",
                    "wasm_hypervisor_async_executions_pending",
                    "wasm_hypervisor_async_results_stored",
                ]
                .contains(name),
                "{name} is public"
            );
        }
        assert_eq!(
            line_value(
                &public,
                r#"wasm_hypervisor_executions_total{status="completed"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            line_value(&public, "wasm_hypervisor_sessions_pending"),
            Some(3.0)
        );
        assert!(!public.contains("55558"));
        assert_eq!(
            line_value(&public, "wasm_hypervisor_async_results_stored"),
            Some(6.0)
        );
        assert!(!public.contains("7777"), "stored bytes are the operator's");
        // The operator sees the same series and every other.
        let operator = metrics.render(gauges, Audience::Operator);
        for line in public.lines().filter(|line| !line.starts_with('#')) {
            assert!(operator.lines().any(|l| l == line), "{line}");
        }
        assert_eq!(
            line_value(&operator, "wasm_hypervisor_fuel_consumed_total"),
            Some(55_558.0)
        );
        assert_eq!(
            line_value(&operator, "wasm_hypervisor_module_cache_hits_total"),
            Some(1.0)
        );
        for (series, value) in [
            ("wasm_hypervisor_blob_store_bytes", 5.0),
            ("wasm_hypervisor_blob_store_hits_total", 6.0),
            ("wasm_hypervisor_blob_store_misses_total", 7.0),
        ] {
            assert_eq!(line_value(&operator, series), Some(value), "{series}");
        }
        assert_eq!(
            line_value(&operator, "wasm_hypervisor_async_results_bytes"),
            Some(7_777.0)
        );
    }

    #[test]
    fn module_cache_lookups_count_hits_and_misses_apart() {
        let metrics = Metrics::new();
        metrics.record_module_cache(true);
        metrics.record_module_cache(false);
        metrics.record_module_cache(false);
        let text = metrics.render(Gauges::default(), Audience::Operator);
        assert_eq!(
            line_value(&text, "wasm_hypervisor_module_cache_hits_total"),
            Some(1.0)
        );
        assert_eq!(
            line_value(&text, "wasm_hypervisor_module_cache_misses_total"),
            Some(2.0)
        );
    }
}

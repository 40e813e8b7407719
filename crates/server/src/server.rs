//! Builds the service from a [`Config`] and serves it on a listener until a shutdown
//! signal, then drains what is in flight (up to `shutdown_grace_secs`) and closes
//! the audit log cleanly.
//!
//! Everything that can be wrong with the configuration, the data directory, the key
//! or the log fails here, before the listener accepts a connection.

mod assemble;

use self::assemble::{
    Parts, app_state, async_executions, client_usage, execution_policy, health, sandbox_settings,
    session_store, witnessing,
};

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::access::{QuotaSettings, Quotas, TokenSet};
use crate::api::{self, AppState, MetricsAccess, Shared};
use crate::async_results::{AsyncExecutions, AsyncSettings, MemoryStore};
use crate::audit::{AuditError, AuditLog};
use crate::cluster::log::Imported;
use crate::cluster::sessions::SessionLimits;
use crate::cluster::{
    self, Cluster, ClusterError, LogError, PgAsyncResults, PgLog, PgSessionStore,
};
use crate::config::Config;
use crate::connections::{Connection, ConnectionIo, ConnectionLimits, Connections, OpenConnection};
use crate::execution::{ExecutionPolicy, Executor};
use crate::health::Health;
use crate::keys::{KeyError, ServerKey};
use crate::metrics::Metrics;
use crate::sandbox::compiler::CompilerSettings;
use crate::sandbox::{Sandbox, SandboxError, SandboxSettings};
use crate::session::{MemorySessionStore, SessionStore};
use crate::usage::{Limits, Usage, UsageSettings};
use wasm_hypervisor_protocol::payload::EffectiveLimits;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data directory could not be created.
    #[error("data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The signing key could not be loaded or created.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The audit log could not be opened or is damaged.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The Wasmtime engine could not be built.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// Serving connections failed.
    #[error("serving HTTP: {0}")]
    Serve(std::io::Error),
    /// Cluster mode could not start: the database, its schema, or another key
    /// or origin than the database's.
    #[error("cluster mode: {0}")]
    Cluster(#[from] ClusterError),
    /// `Service::build` was given a configuration in cluster mode, which needs
    /// the runtime to connect: `Service::open` starts both modes.
    #[error("cluster.database_url is set: start the service with Service::open")]
    ClusterNeedsOpen,
    /// The witness configuration cannot be used.
    #[error(transparent)]
    Witnesses(#[from] crate::witness::WitnessConfigError),
    /// The HTTP client for witnesses cannot be built.
    #[error("the witnesses' HTTP client: {0}")]
    WitnessClient(String),
}

/// The session sweeper's shortest sleep: an expired key may stay in memory this
/// long (it cannot be used: `take` checks expiry itself), and a burst of sessions
/// created over a second wakes the sweeper at most ten times when they expire.
const SWEEP_INTERVAL_MIN: Duration = Duration::from_millis(100);

/// The async answers' sweeper's shortest sleep: an answer past its retention
/// may stay in memory this long (`get` refuses it already), and answers that
/// finished within a second of each other are swept together.
const ASYNC_SWEEP_INTERVAL_MIN: Duration = Duration::from_secs(1);

/// `wasm-hypervisor log import`: copies the file log of `config`'s data
/// directory (not in use by a server) into the empty log of the database at
/// `database_url`, set up (or checked) under `config`'s key and origin, like a
/// replica. The key file must exist: it signed the file log.
pub async fn import_log(config: &Config, database_url: &str) -> Result<Imported, ServerError> {
    let key_path = config.signing_key_path();
    if !key_path.exists() {
        return Err(ClusterError::Log(LogError::NoKey { path: key_path }).into());
    }
    let key = Service::key(config)?;
    let cluster = Cluster::connect(database_url, 2, &key, config.origin.as_str()).await?;
    Ok(cluster::log::import(
        &cluster,
        config.data_dir.as_path(),
        &key,
        config.origin.as_str(),
    )
    .await
    .map_err(ClusterError::from)?)
}

/// A built service: the router plus what must be shut down with it.
pub struct Service {
    pub state: AppState,
    log: AuditLog,
    /// Cluster mode's tasks (the database probe, sweepers, the async answers'
    /// writer), stopped after the drain.
    background: Vec<JoinHandle<()>>,
    /// How long a shutdown waits for requests and executions in flight.
    grace: Duration,
    connections: ConnectionSettings,
}

/// What is enforced on each connection, before a request reaches the router.
#[derive(Debug, Clone)]
struct ConnectionSettings {
    header_read_timeout: Duration,
    /// hyper's own limit on request line and headers: the router's limit
    /// (`http.max_header_bytes`, answered in the error shape) plus slack, so that
    /// hyper's bare 431 is only the last resort.
    max_header_bytes: usize,
    limits: ConnectionLimits,
}

impl Service {
    /// Opens the data directory, key and log and builds the engine. The
    /// configuration's values were checked when it was parsed; what can still fail
    /// here is the file system, the key, the log and the engine.
    /// Embedded mode only: cluster mode connects, which needs the runtime
    /// ([`Service::open`]).
    pub fn build(config: &Config) -> Result<Service, ServerError> {
        if config.cluster.database_url.is_set() {
            return Err(ServerError::ClusterNeedsOpen);
        }
        let key = Service::key(config)?;
        Service::assemble(config, key, None, None)
    }

    /// Builds the service in either mode: in cluster mode
    /// (`cluster.database_url`), first connects to the database, applies its
    /// migrations and checks that it was set up under this key and origin.
    pub async fn open(config: &Config) -> Result<Service, ServerError> {
        if !config.cluster.database_url.is_set() {
            return Service::build(config);
        }
        let key = Service::key(config)?;
        let cluster = Cluster::connect(
            config.cluster.database_url.expose(),
            config.cluster.pool_size.get_usize(),
            &key,
            config.origin.as_str(),
        )
        .await?;
        tracing::info!(
            pool_size = config.cluster.pool_size.get(),
            "cluster mode: the database is set up under this key and origin"
        );
        let (log, tasks) = PgLog::open(
            cluster.clone(),
            key.clone(),
            config.origin.as_str(),
            config.data_dir.as_path(),
        )
        .await?;
        Service::assemble(
            config,
            key,
            Some(cluster),
            Some((AuditLog::new(log), tasks)),
        )
    }

    /// Creates the data directory and loads (or creates) the signing key.
    fn key(config: &Config) -> Result<Arc<ServerKey>, ServerError> {
        let data_dir = config.data_dir.as_path();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(|source| ServerError::DataDir {
                path: data_dir.to_owned(),
                source,
            })?;
        Ok(Arc::new(ServerKey::load_or_create_at(
            config.crypto.provider,
            &config.signing_key_path(),
        )?))
    }

    /// Opens the file log (embedded mode), logging what recovery found.
    fn open_file_log(config: &Config, key: &Arc<ServerKey>) -> Result<AuditLog, ServerError> {
        let provider = config.crypto.provider;
        let (log, recovery) = AuditLog::open(
            config.data_dir.as_path(),
            config.origin.as_str(),
            key.clone(),
        )?;
        if recovery.torn_bytes > 0 {
            tracing::warn!(
                path = %config.data_dir.as_path().join(crate::audit::file::LOG_FILE).display(),
                torn_bytes = recovery.torn_bytes,
                "zeroed a torn batch at the end of the audit log (a crash during an unacknowledged append)"
            );
        }
        if recovery.converted_from_v1 {
            tracing::info!(path = %config.data_dir.as_path().join(crate::audit::file::LOG_FILE).display(), "converted the audit log from format v1 to v2");
        }
        tracing::info!(
            records = recovery.records,
            checkpoint_size = recovery.checkpoint_size,
            key_id = %key.public().key_id_hex(),
            crypto_provider = provider.name(),
            "audit log open and consistent with its signed checkpoint"
        );
        Ok(log)
    }

    /// Builds the service around its log (cluster mode's, with its tasks, or the
    /// file log, opened here): the sandbox, the stores, the executor and the
    /// handlers' shared state.
    fn assemble(
        config: &Config,
        key: Arc<ServerKey>,
        cluster: Option<Cluster>,
        cluster_log: Option<(AuditLog, Vec<JoinHandle<()>>)>,
    ) -> Result<Service, ServerError> {
        let mut background = Vec::new();
        let log = match cluster_log {
            Some((log, tasks)) => {
                background.extend(tasks);
                log
            }
            None => Service::open_file_log(config, &key)?,
        };
        let sandbox = Sandbox::new(sandbox_settings(config)?)?;
        let sessions = session_store(config, &key, cluster.as_ref(), &mut background);
        let health = health(config, &log, cluster.as_ref(), &mut background);
        let async_executions = async_executions(config, cluster.as_ref(), &mut background);
        let metrics = Metrics::new();
        let usage = client_usage(config, cluster.as_ref(), &mut background);
        let executor = Executor::new(
            sessions.clone(),
            key.clone(),
            sandbox,
            log.clone(),
            execution_policy(config),
            metrics.clone(),
            usage.clone(),
        );
        let trusted_proxies: Arc<[ipnet::IpNet]> = config.clients.trusted_proxies.as_slice().into();
        let connections = ConnectionSettings::new(config, trusted_proxies.clone());
        let note_key = Arc::new(crate::keys::load_or_create_note_key(
            &key,
            config.origin.as_str(),
            &config.note_key_path(),
        )?);
        let witnessing = witnessing(config, &log, &note_key, &key, &metrics, cluster.as_ref())?;
        let parts = Parts {
            executor,
            log: log.clone(),
            sessions,
            health,
            metrics,
            key,
            note_key,
            witnessing,
            usage,
            async_executions,
        };
        let state = app_state(config, parts, trusted_proxies);
        Ok(Service {
            connections,
            state,
            log,
            background,
            grace: config.shutdown_grace_secs.get(),
        })
    }

    /// Serves until `shutdown` completes, then drains: stops accepting connections,
    /// reports `shutting_down` on `/health`, waits up to the grace period for
    /// requests and executions in flight, and closes the audit log (which writes
    /// what is queued, syncs, persists the checkpoint and releases the file lock).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let sweeper = spawn_session_sweeper(self.state.sessions.clone());
        let async_sweeper = spawn_async_sweeper(self.state.async_executions.clone());
        // Submits checkpoints to the witnesses, beside the requests (never in one).
        let submitter = self
            .state
            .witnessing
            .clone()
            .map(|witnessing| tokio::spawn(witnessing.run()));
        let router = api::router(self.state.clone());
        let (stop_accepting, stopped) = oneshot::channel::<()>();
        let mut serving = tokio::spawn(serve_connections(
            listener,
            router,
            self.connections.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        let served = tokio::select! {
            // Serving only ends on its own if it failed.
            joined = &mut serving => joined_serve(joined),
            () = shutdown => {
                self.state.health.begin_shutdown();
                let _ = stop_accepting.send(());
                self.drain(serving).await
            }
        };
        sweeper.abort();
        async_sweeper.abort();
        if let Some(submitter) = submitter {
            submitter.abort();
        }
        for task in &self.background {
            task.abort();
        }
        self.log.close().await;
        served
    }

    /// Waits for the connections still open (axum's graceful shutdown answers their
    /// requests, then closes them) and then for execution tasks whose client went
    /// away: `/execute` runs each execution on its own task, which the connection
    /// does not wait for. Past the grace period it stops waiting: whatever is still
    /// running gets no answer, and its record is not acknowledged to anyone.
    async fn drain(&self, serving: JoinHandle<std::io::Result<()>>) -> Result<(), ServerError> {
        let executions = self.state.executions.clone();
        executions.close();
        tracing::info!(
            executions_in_flight = executions.len(),
            grace_secs = self.grace.as_secs(),
            "shutdown requested; no new connections, finishing what is in flight"
        );
        let abort_serving = serving.abort_handle();
        let drained = tokio::time::timeout(self.grace, async {
            let served = joined_serve(serving.await);
            executions.wait().await;
            served
        })
        .await;
        match drained {
            Ok(served) => served,
            Err(_elapsed) => {
                abort_serving.abort();
                tracing::warn!(
                    executions_abandoned = executions.len(),
                    grace_secs = self.grace.as_secs(),
                    "the shutdown grace period is over; closing the log with executions still running"
                );
                Ok(())
            }
        }
    }
}

impl ConnectionSettings {
    /// The bounds of `config.http`; `exempt` addresses (trusted proxies) are not
    /// counted per address.
    fn new(config: &Config, exempt: Arc<[ipnet::IpNet]>) -> ConnectionSettings {
        let http = &config.http;
        ConnectionSettings {
            header_read_timeout: http.header_read_timeout_ms.get(),
            max_header_bytes: http.max_header_bytes.get_usize() + 8192,
            limits: ConnectionLimits {
                max_connections: http.max_connections.get_usize(),
                max_per_address: http.max_connections_per_address.get_usize(),
                exempt,
                max_age: http.max_connection_age_secs.get(),
                max_requests: http.max_requests_per_connection.get(),
                write_timeout: http.response_write_timeout_ms.get(),
            },
        }
    }
}

/// Accepts connections until `stop`, serving each with hyper's HTTP/1.1 under
/// `settings`, then stops accepting, asks every connection to close (idle ones
/// at once, the others after their request in flight) and waits for them.
///
/// This is `axum::serve` plus what it does not set: a header read timeout (which
/// also ends idle keep-alive connections and slowloris clients that never finish
/// their headers), hyper's header size limit, and what `connections` bounds: open
/// connections in all and per address, each connection's age and requests, and
/// response writes that make no progress. At the cap a new connection closes the
/// oldest idle one; if none is idle it waits (the rest in the kernel's backlog)
/// until one closes or goes idle.
async fn serve_connections(
    listener: TcpListener,
    router: Router,
    settings: ConnectionSettings,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let connections = Connections::new(settings.limits.clone());
    let tasks = TaskTracker::new();
    let mut stop = pin!(stop);
    'accepting: loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // A connection that failed before it was accepted concerns that
                    // client only; anything else (out of file descriptors) is
                    // waited out briefly rather than spun on.
                    if !matches!(
                        error.kind(),
                        std::io::ErrorKind::ConnectionAborted
                            | std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::ConnectionRefused
                    ) {
                        tracing::warn!(%error, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let open = loop {
            if let Some(open) = connections.admit(peer.ip()) {
                break open;
            }
            connections.make_room();
            tokio::select! {
                () = connections.changed() => {}
                () = &mut stop => break 'accepting,
            }
        };
        serve_one(stream, peer, open, &router, &settings, &tasks);
    }
    drop(listener);
    connections.close_all();
    tasks.close();
    tasks.wait().await;
    Ok(())
}

/// Serves one accepted connection from `peer` on a task of `tasks`, holding its
/// place among the open connections (`open`) until it ends.
fn serve_one(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    open: OpenConnection,
    router: &Router,
    settings: &ConnectionSettings,
    tasks: &TaskTracker,
) {
    let connection = open.connection().clone();
    if connection.over_address_cap() {
        tracing::debug!(
            "a connection past http.max_connections_per_address; answering too_many_connections"
        );
    }
    let service = connection_service(router.clone(), peer, connection.clone());
    let io = ConnectionIo::new(stream, connection.clone(), settings.limits.write_timeout);
    let serving = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_header_size(settings.max_header_bytes)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    tasks.spawn(async move {
        let mut serving = pin!(serving);
        let ended = tokio::select! {
            ended = serving.as_mut() => ended,
            () = connection.closing() => {
                // Closes an idle connection now; one with a request in flight
                // answers it first.
                serving.as_mut().graceful_shutdown();
                serving.await
            }
        };
        // An error here is one client's broken or timed-out connection.
        if let Err(error) = ended {
            tracing::debug!(%error, "connection ended with an error");
        }
        drop(open);
    });
}

/// Destroys session keys as they expire: wakes when the oldest is due (a
/// session created meanwhile expires later), at most every
/// `SWEEP_INTERVAL_MIN`, and at least once a TTL.
fn spawn_session_sweeper(sessions: Arc<dyn SessionStore>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let now = Instant::now();
            let next = sessions
                .sweep(now)
                .await
                .unwrap_or(now + sessions.ttl())
                .max(now + SWEEP_INTERVAL_MIN);
            tokio::time::sleep_until(next.into()).await;
        }
    })
}

/// Forgets async answers past their retention, oldest first: wakes when the
/// oldest is due, at most every `ASYNC_SWEEP_INTERVAL_MIN`.
fn spawn_async_sweeper(results: AsyncExecutions) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let now = Instant::now();
            let next = results
                .sweep(now)
                .unwrap_or(now + results.retention())
                .max(now + ASYNC_SWEEP_INTERVAL_MIN);
            tokio::time::sleep_until(next.into()).await;
        }
    })
}

/// The router as one connection sees it: each request carries its peer address
/// (and, past the address's connection cap, the [`api::ExcessConnection`] mark),
/// counts as in flight until its response is ready, and the connection's last
/// response says `Connection: close`.
fn connection_service(
    router: Router,
    peer: SocketAddr,
    connection: Arc<Connection>,
) -> impl tower::Service<
    hyper::Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send,
> + Clone
+ Send
+ 'static {
    let over_address_cap = connection.over_address_cap();
    router
        .map_request(move |mut request: hyper::Request<Incoming>| {
            let extensions = request.extensions_mut();
            extensions.insert(ConnectInfo::<SocketAddr>(peer));
            if over_address_cap {
                extensions.insert(api::ExcessConnection);
            }
            request.map(axum::body::Body::new)
        })
        .map_future(move |responding| {
            let in_flight = connection.begin_request();
            async move {
                let mut response = responding.await?;
                if in_flight.is_last() {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                Ok(response)
            }
        })
}

fn joined_serve(
    joined: Result<std::io::Result<()>, tokio::task::JoinError>,
) -> Result<(), ServerError> {
    match joined {
        Ok(served) => served.map_err(ServerError::Serve),
        Err(join_error) => Err(ServerError::Serve(std::io::Error::other(join_error))),
    }
}

/// Resolves on Ctrl-C or SIGTERM. Both handlers are installed when this is
/// called, not when the future is first polled: called before the server
/// announces its address, a signal sent once the address is known always stops
/// the server gracefully rather than by the signal's default action.
///
/// # Errors
/// When a handler cannot be installed.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
    })
}

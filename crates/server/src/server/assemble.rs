//! The parts of the service made from the configuration, one function each:
//! the sandbox's settings, the session store (in memory or in PostgreSQL), the
//! execution policy, long jobs, access tokens, usage and quotas, witness
//! cosigning, and `/health`'s view; [`Service`](super::Service)'s assembly calls them
//! in order, then [`app_state`] puts them together for the handlers.

use super::*;

/// Witness cosigning, when `witnesses.policy_file` names a policy: the policy
/// read and checked, the kept state read and checked against the log.
pub(super) fn witnessing(
    config: &Config,
    log: &AuditLog,
    note_key: &Arc<wasm_hypervisor_protocol::note::NoteSigningKey>,
    key: &Arc<ServerKey>,
    metrics: &Metrics,
    cluster: Option<&Cluster>,
) -> Result<Option<crate::witness::Witnessing>, ServerError> {
    use crate::witness::{Settings, WitnessConfigError, Witnessing};
    let path = &config.witnesses.policy_file;
    if path.as_os_str().is_empty() {
        return Ok(None);
    }
    let bytes = std::fs::read(path).map_err(|source| WitnessConfigError::Read {
        path: path.clone(),
        source,
    })?;
    let policy = wasm_hypervisor_protocol::policy::Policy::parse(config.crypto.provider, &bytes)
        .map_err(|source| WitnessConfigError::Policy {
            path: path.clone(),
            source,
        })?;
    let transport =
        api::witness_client::HttpTransport::new().map_err(ServerError::WitnessClient)?;
    let witnessing = Witnessing::new(
        Settings {
            policy,
            state_path: config
                .data_dir
                .as_path()
                .join(crate::witness::state::STATE_FILE),
            timeout: config.witnesses.submit_timeout_ms.get(),
            follow_poll: config.witnesses.follow_poll_ms.get(),
            // Cluster mode: the replicas share what is published (PostgreSQL).
            shared: cluster.map(|cluster| {
                crate::cluster::witness::PgWitnessState::new(cluster.clone())
                    as Arc<dyn crate::witness::state::SharedStore>
            }),
        },
        log.clone(),
        note_key.clone(),
        *key.public(),
        Arc::new(transport),
        metrics.clone(),
    )?;
    tracing::info!(policy = %path.display(), "witnesses configured: a checkpoint is published once its cosignatures meet the quorum");
    Ok(Some(witnessing))
}

/// The sandbox's settings: the engine's bounds and the compile worker.
pub(super) fn sandbox_settings(config: &Config) -> Result<SandboxSettings, ServerError> {
    let execution = &config.execution;
    let compile_worker = match &execution.compile_worker {
        Some(program) => program.clone(),
        None => std::env::current_exe().map_err(|source| ServerError::DataDir {
            path: "/proc/self/exe".into(),
            source,
        })?,
    };
    Ok(SandboxSettings {
        max_concurrent: execution.max_concurrent.get_usize(),
        // At most 64 GiB: all of it on 64-bit targets, as much as there is on others.
        module_cache_bytes: usize::try_from(execution.module_cache_bytes.get())
            .unwrap_or(usize::MAX),
        guest_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        compiler: CompilerSettings {
            program: compile_worker,
            slots: execution.max_concurrent_compilations.get().get(),
            cpu: execution.compile_timeout_secs.get(),
            memory_bytes: execution.compile_memory_bytes.get(),
        },
    })
}

/// The pending sessions: in memory, or in cluster mode the database's (whose
/// sweeper joins `background`).
pub(super) fn session_store(
    config: &Config,
    key: &Arc<ServerKey>,
    cluster: Option<&Cluster>,
    background: &mut Vec<JoinHandle<()>>,
) -> Arc<dyn SessionStore> {
    let sessions = &config.sessions;
    let Some(cluster) = cluster else {
        return Arc::new(
            MemorySessionStore::new(
                config.crypto.provider,
                sessions.ttl_secs.get(),
                sessions.max_pending(),
            )
            .with_client_share(sessions.max_pending_per_client()),
        );
    };
    let (store, sweeper) = PgSessionStore::start(
        cluster.clone(),
        key,
        SessionLimits {
            ttl: sessions.ttl_secs.get(),
            max_pending: sessions.max_pending(),
            max_pending_per_client: sessions.max_pending_per_client(),
        },
    );
    background.push(sweeper);
    store
}

/// What the executor enforces on every request.
pub(super) fn execution_policy(config: &Config) -> ExecutionPolicy {
    let (limits, execution) = (&config.limits, &config.execution);
    ExecutionPolicy {
        maxima: EffectiveLimits {
            fuel: limits.fuel.get(),
            memory_bytes: limits.memory_bytes.get(),
            timeout_ms: limits.timeout_ms.count(),
            max_output_bytes: limits.max_output_bytes.get(),
            files_bytes: Some(limits.files_bytes.get()),
        },
        max_module_bytes: limits.max_module_bytes.get(),
        max_mount_entries: u32::try_from(limits.max_mount_entries.get()).unwrap_or(u32::MAX),
        blob_store_bytes: usize::try_from(config.blobs.store_bytes.get()).unwrap_or(usize::MAX),
        max_args: limits.max_args.get_usize(),
        max_env: limits.max_env.get_usize(),
        max_args_env_bytes: limits.max_args_env_bytes.get_usize(),
        max_concurrent: execution.max_concurrent.get_usize(),
        max_compiling: execution.max_queued_compilations.get_usize(),
        compile_seconds_per_hour: config.clients.compile_seconds_per_hour.get(),
        max_queued: execution.max_queued.get_usize(),
        queue_timeout: execution.queue_timeout_ms.get(),
    }
}

/// Long jobs' answers: in memory, or in cluster mode also in the database (whose
/// tasks join `background`).
pub(super) fn async_executions(
    config: &Config,
    cluster: Option<&Cluster>,
    background: &mut Vec<JoinHandle<()>>,
) -> AsyncExecutions {
    let execution = &config.execution;
    let settings = AsyncSettings {
        retention: execution.async_retention_secs.get(),
        max_pending: execution.max_async_pending.get_usize(),
        max_bytes: usize::try_from(execution.async_results_bytes.get()).unwrap_or(usize::MAX),
        max_bytes_per_client: usize::try_from(execution.async_results_bytes_per_client.get())
            .unwrap_or(usize::MAX),
    };
    let Some(cluster) = cluster else {
        return AsyncExecutions::in_memory(settings);
    };
    let (store, tasks) = PgAsyncResults::start(
        cluster.clone(),
        MemoryStore::new(settings, Arc::new(Instant::now)),
    );
    background.extend(tasks);
    AsyncExecutions::over(store)
}

/// The bearer tokens and who may read `/metrics`, warning of what is open.
pub(super) fn access_tokens(config: &Config) -> (TokenSet, MetricsAccess) {
    let tokens = TokenSet::from_digests(config.auth.tokens_sha256.iter().map(|d| d.bytes()));
    let metrics_tokens =
        TokenSet::from_digests(config.auth.metrics_tokens_sha256.iter().map(|d| d.bytes()));
    if tokens.is_empty() && !config.listen.ip().is_loopback() {
        // Not `listen=`: that key announces the bound address (tests read it).
        tracing::warn!(
            address = %config.listen,
            "AUTHENTICATION IS OFF and the server listens beyond loopback: anyone who can \
             reach this port can run code on this machine. Set auth.tokens_sha256 (make a \
             token with `wasm-hypervisor token`)"
        );
    }
    let metrics_access = MetricsAccess::new(&tokens, metrics_tokens);
    match metrics_access {
        MetricsAccess::Closed => tracing::warn!(
            "GET /metrics is closed (401 to everyone): authentication is on and \
             auth.metrics_tokens_sha256 is empty. Set it to scrape metrics (make a token \
             with `wasm-hypervisor token`)"
        ),
        MetricsAccess::Open => tracing::info!(
            "GET /metrics is open without a token and shows counts and gauges only; \
             set auth.metrics_tokens_sha256 for every series"
        ),
        MetricsAccess::Token(_) => {}
    }
    (tokens, metrics_access)
}

/// Each client's usage and its quotas (`quotas`): in memory, or in cluster mode
/// shared through the database by a task that joins `background`.
pub(super) fn client_usage(
    config: &Config,
    cluster: Option<&Cluster>,
    background: &mut Vec<JoinHandle<()>>,
) -> Usage {
    let limits = |quotas: &crate::config::QuotaLimits| Limits {
        executions: quotas.executions,
        fuel: quotas.fuel,
        bytes_in: quotas.bytes_in,
        bytes_out: quotas.bytes_out,
    };
    let settings = UsageSettings {
        per_hour: limits(&config.quotas.per_hour),
        per_day: limits(&config.quotas.per_day),
        max_tracked: config.clients.max_tracked.get_usize(),
    };
    let Some(cluster) = cluster else {
        return Usage::new(settings);
    };
    let usage = Usage::clustered(settings);
    background.push(cluster::usage::spawn_flusher(
        cluster.clone(),
        usage.clone(),
    ));
    usage
}

/// Each client's quotas, and `/health`'s own bucket per address: a client that
/// spends its request rate must not make its load balancer's probes fail.
pub(super) fn client_quotas(config: &Config) -> (Quotas, Quotas) {
    let clients = &config.clients;
    let quotas = Quotas::new(QuotaSettings {
        requests_per_second: clients.requests_per_second.get_u32(),
        burst: clients.burst.get_u32(),
        max_concurrent_executions: clients.max_concurrent_executions.get_u32(),
        max_tracked: clients.max_tracked.get_usize(),
    });
    // Bursts of twice the rate; a bucket holds at least one (with the rate 0, the
    // limit is off).
    let health_rate = config.http.health_requests_per_second.get_u32();
    let health_quotas = Quotas::new(QuotaSettings {
        requests_per_second: health_rate,
        burst: health_rate.saturating_mul(2).max(1),
        max_concurrent_executions: 0,
        max_tracked: clients.max_tracked.get_usize(),
    });
    (quotas, health_quotas)
}

/// What [`app_state`] puts beside the configuration's HTTP and access settings:
/// the parts made before it.
pub(super) struct Parts {
    pub(super) executor: Executor,
    pub(super) log: AuditLog,
    pub(super) sessions: Arc<dyn SessionStore>,
    pub(super) health: Health,
    pub(super) metrics: Metrics,
    pub(super) key: Arc<ServerKey>,
    pub(super) note_key: Arc<wasm_hypervisor_protocol::note::NoteSigningKey>,
    pub(super) witnessing: Option<crate::witness::Witnessing>,
    pub(super) usage: Usage,
    pub(super) async_executions: AsyncExecutions,
}

/// The handlers' shared state: `parts`, the access tokens and quotas, and the
/// HTTP bounds of `config`; `trusted_proxies` are the peers whose forwarding
/// headers are believed.
pub(super) fn app_state(
    config: &Config,
    parts: Parts,
    trusted_proxies: Arc<[ipnet::IpNet]>,
) -> AppState {
    let (tokens, metrics_access) = access_tokens(config);
    let (quotas, health_quotas) = client_quotas(config);
    let http = &config.http;
    AppState::new(Shared {
        witnessing: parts.witnessing,
        executor: parts.executor,
        tiles: crate::tlog::Tiles::new(parts.log.clone()),
        log: parts.log,
        sessions: parts.sessions,
        health: parts.health,
        metrics: parts.metrics,
        key: parts.key,
        note_key: parts.note_key,
        origin: config.origin.as_str().into(),
        started: Instant::now(),
        tokens,
        metrics_access,
        quotas,
        usage: parts.usage,
        health_quotas,
        trusted_proxies,
        body_read_timeout: http.body_read_timeout_ms.get(),
        max_header_bytes: http.max_header_bytes.get_usize(),
        executions: TaskTracker::new(),
        async_executions: parts.async_executions,
        // Unbounded above: a limit past the address space is no limit.
        max_request_bytes: usize::try_from(config.limits.max_request_bytes.get())
            .unwrap_or(usize::MAX),
        max_session_batch: config.sessions.max_batch.get_usize(),
        playground: config.playground,
    })
}

/// `/health`'s view of the log and the data directory, and in cluster mode of the
/// database, whose probe joins `background`.
pub(super) fn health(
    config: &Config,
    log: &AuditLog,
    cluster: Option<&Cluster>,
    background: &mut Vec<JoinHandle<()>>,
) -> Health {
    let health = Health::new(
        log.clone(),
        config.data_dir.as_path(),
        config.data_dir_min_free_bytes,
    );
    match cluster {
        Some(cluster) => {
            background.push(cluster.spawn_probe());
            health.with_database(cluster.reachability())
        }
        None => health,
    }
}

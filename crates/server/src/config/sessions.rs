//! The `sessions` section: pending sessions, with the one bound that spans two
//! keys (a client's share at most the pool) kept by [`SessionsConfig`].

use serde::{Deserialize, Serialize};

use super::{Bounded, Problem, Secs};

/// Pending sessions (`POST /sessions`).
///
/// `max_pending` and `max_pending_per_client` are private: the share is bounded by
/// the pool, so they are set through methods that keep it so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SessionsFields", into = "SessionsFields")]
pub struct SessionsConfig {
    /// Seconds a session key lives before it is destroyed unused. 1..=3600, default 60.
    pub ttl_secs: Secs<1, 3600>,
    /// Most sessions pending at once. When the pool is full, a client that holds
    /// fewer pending sessions than the client holding the most takes the place of
    /// that client's oldest one (which then answers `session_not_found`, like an
    /// expired session); any other client gets 503 `too_many_sessions` with
    /// `Retry-After`. 1..=1000000, default 10000.
    max_pending: Bounded<1, 1_000_000>,
    /// Most sessions one client (its token when authentication is on, else its
    /// address) may have pending, counting those being created; past it `POST
    /// /sessions` answers 429 `too_many_client_sessions` with `Retry-After`, before
    /// any key is generated. 0 turns the share off (a client may then hold the
    /// whole pool, still subject to eviction by the others). 0..=`max_pending`,
    /// default 64 (four times `clients.max_concurrent_executions`' default).
    max_pending_per_client: Bounded<0, 1_000_000>,
    /// Most sessions one `POST /sessions {"count": N}` may ask for (protocol v1.1
    /// §A, which says the maximum is at least 64); a larger N is 400
    /// `invalid_parameter`. 64..=1024, default 64.
    pub max_batch: Bounded<64, 1024>,
}

/// `sessions` as the sources give it, before the share is held to the pool.
#[derive(Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct SessionsFields {
    ttl_secs: Secs<1, 3600>,
    max_pending: Bounded<1, 1_000_000>,
    max_pending_per_client: Bounded<0, 1_000_000>,
    max_batch: Bounded<64, 1024>,
}

impl SessionsConfig {
    /// `sessions.max_pending`.
    pub fn max_pending(&self) -> usize {
        self.max_pending.get_usize()
    }

    /// `sessions.max_pending_per_client`; 0: no share.
    pub fn max_pending_per_client(&self) -> usize {
        self.max_pending_per_client.get_usize()
    }

    /// Sets `max_pending`, which must stay at least the client share.
    pub fn set_max_pending(&mut self, pool: Bounded<1, 1_000_000>) -> Result<(), Problem> {
        *self = SessionsConfig::try_from(SessionsFields {
            max_pending: pool,
            ..self.clone().into()
        })?;
        Ok(())
    }

    /// Sets `max_pending_per_client`, which must stay at most the pool.
    pub fn set_max_pending_per_client(
        &mut self,
        share: Bounded<0, 1_000_000>,
    ) -> Result<(), Problem> {
        *self = SessionsConfig::try_from(SessionsFields {
            max_pending_per_client: share,
            ..self.clone().into()
        })?;
        Ok(())
    }
}

impl TryFrom<SessionsFields> for SessionsConfig {
    type Error = Problem;

    fn try_from(fields: SessionsFields) -> Result<SessionsConfig, Problem> {
        let (share, pool) = (fields.max_pending_per_client, fields.max_pending);
        if share.get() > pool.get() {
            return Err(Problem::ShareAbovePool {
                share: share.get(),
                pool: pool.get(),
            });
        }
        Ok(SessionsConfig {
            ttl_secs: fields.ttl_secs,
            max_pending: pool,
            max_pending_per_client: share,
            max_batch: fields.max_batch,
        })
    }
}

impl From<SessionsConfig> for SessionsFields {
    fn from(config: SessionsConfig) -> SessionsFields {
        SessionsFields {
            ttl_secs: config.ttl_secs,
            max_pending: config.max_pending,
            max_pending_per_client: config.max_pending_per_client,
            max_batch: config.max_batch,
        }
    }
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig {
            ttl_secs: Secs::constant::<60>(),
            max_pending: Bounded::constant::<10_000>(),
            max_pending_per_client: Bounded::constant::<64>(),
            max_batch: Bounded::constant::<64>(),
        }
    }
}

impl Default for SessionsFields {
    fn default() -> Self {
        SessionsConfig::default().into()
    }
}

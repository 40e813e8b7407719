//! Pending sessions: the per-session HPKE key pairs between `POST /sessions` and the
//! one `POST /execute` that may use each (protocol §1).
//!
//! A session's private key lives only here, in memory. It leaves the store exactly
//! once, when an execution takes it (and is dropped, zeroized, right after the open
//! attempt), or is destroyed when it expires. The number pending is bounded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use uuid::Uuid;

use crate::envelope::{self, POINT_LEN, Provider, SessionSecret};

/// Why a session could not be created or used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    /// The bound on pending sessions is reached; one frees up within `retry_after`.
    #[error("too many pending sessions")]
    TooManyPending { retry_after: Duration },
    /// No such session: never issued, expired, or already used.
    #[error("unknown, expired or already used session")]
    Unknown,
}

/// A session as issued to a client.
#[derive(Debug, Clone)]
pub struct IssuedSession {
    pub id: Uuid,
    pub public_key: [u8; POINT_LEN],
    pub expires_at: SystemTime,
}

struct Pending {
    secret: SessionSecret,
    expires: Instant,
}

/// The pending sessions. Shared behind an `Arc`; every method holds the lock only
/// for a map operation (never across an `.await`, never while doing crypto), so a
/// `std::sync::Mutex` is the right lock.
pub struct SessionStore {
    /// Makes every session key (`crypto.provider`); the keys open requests on it.
    provider: Provider,
    pending: Mutex<HashMap<Uuid, Pending>>,
    ttl: Duration,
    max_pending: usize,
}

impl SessionStore {
    pub fn new(provider: Provider, ttl: Duration, max_pending: usize) -> SessionStore {
        SessionStore {
            provider,
            pending: Mutex::new(HashMap::new()),
            ttl,
            max_pending,
        }
    }

    /// Makes a fresh key pair and keeps its private half until use or expiry.
    pub fn create(&self) -> Result<IssuedSession, SessionError> {
        // Key generation happens before taking the lock.
        let (secret, public_key) = envelope::generate_session_key(self.provider);
        let id = Uuid::new_v4();
        let now = Instant::now();
        let expires = now + self.ttl;
        let mut pending = self.lock();
        if pending.len() >= self.max_pending {
            pending.retain(|_, session| session.expires > now);
            if pending.len() >= self.max_pending {
                let soonest = pending
                    .values()
                    .map(|session| session.expires)
                    .min()
                    .unwrap_or(expires);
                return Err(SessionError::TooManyPending {
                    retry_after: soonest.saturating_duration_since(now),
                });
            }
        }
        pending.insert(id, Pending { secret, expires });
        Ok(IssuedSession {
            id,
            public_key,
            expires_at: SystemTime::now() + self.ttl,
        })
    }

    /// The provider session keys are made on; it also checks `enc` points.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// Whether `id` names a live session, without using it.
    pub fn is_live(&self, id: &Uuid) -> bool {
        let now = Instant::now();
        self.lock()
            .get(id)
            .is_some_and(|session| session.expires > now)
    }

    /// Removes the session and hands over its key: after this, `id` is unknown
    /// whatever the caller does with the key.
    pub fn take(&self, id: &Uuid) -> Result<SessionSecret, SessionError> {
        let session = self.lock().remove(id).ok_or(SessionError::Unknown)?;
        if session.expires <= Instant::now() {
            return Err(SessionError::Unknown);
        }
        Ok(session.secret)
    }

    /// Destroys every expired session; returns how many remain.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut pending = self.lock();
        pending.retain(|_, session| session.expires > now);
        pending.len()
    }

    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Pending>> {
        // A panic while holding this lock cannot leave the map half-updated (every
        // critical section is a single map operation), so a poisoned lock is safe
        // to keep using.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_can_be_taken_once() {
        let store = SessionStore::new(Provider::default(), Duration::from_secs(60), 10);
        let session = store.create().unwrap();
        assert!(store.is_live(&session.id));
        assert!(store.take(&session.id).is_ok());
        assert!(!store.is_live(&session.id));
        assert_eq!(store.take(&session.id).err(), Some(SessionError::Unknown));
    }

    #[test]
    fn expired_sessions_cannot_be_taken() {
        let store = SessionStore::new(Provider::default(), Duration::ZERO, 10);
        let session = store.create().unwrap();
        assert!(!store.is_live(&session.id));
        assert_eq!(store.take(&session.id).err(), Some(SessionError::Unknown));
    }

    #[test]
    fn pending_sessions_are_bounded_and_expired_ones_make_room() {
        let store = SessionStore::new(Provider::default(), Duration::from_secs(60), 2);
        store.create().unwrap();
        store.create().unwrap();
        match store.create() {
            Err(SessionError::TooManyPending { retry_after }) => {
                assert!(retry_after <= Duration::from_secs(60));
            }
            other => panic!("expected TooManyPending, got {other:?}"),
        }
        let expiring = SessionStore::new(Provider::default(), Duration::ZERO, 1);
        expiring.create().unwrap();
        expiring.create().unwrap();
        assert_eq!(expiring.sweep(), 0);
    }

    #[test]
    fn unknown_ids_are_unknown() {
        let store = SessionStore::new(Provider::default(), Duration::from_secs(60), 10);
        assert_eq!(
            store.take(&Uuid::new_v4()).err(),
            Some(SessionError::Unknown)
        );
    }
}

//! The keys that wrap session seeds in the database.
//!
//! Time is cut into epochs one session TTL long. Each epoch has one random
//! AES-256 key, made by the first replica that needs it and stored in
//! `wrap_keys` wrapped (AES-256-GCM) under the key-encryption key, which every
//! replica derives from the shared signing key (`ServerKey::derive`). A session's
//! seed is wrapped under the key of the epoch it was issued in, with the session
//! id as associated data, so a wrapped seed opens only as its own session's.
//!
//! An epoch's key is deleted once every session of that epoch has expired (its
//! end, plus a TTL, plus [`CLOCK_MARGIN`]): from then on no copy of the database
//! taken later, even with the signing key, opens that epoch's sessions
//! (PROTOCOL.md, "Cluster mode and forward secrecy"). Unwrapped keys are cached
//! in memory (zeroized when dropped) and forgotten with their epoch.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use zeroize::Zeroizing;

use super::{Cluster, DbError};
use crate::envelope::Provider;
use crate::keys::ServerKey;

/// How far the replicas' clocks may disagree: an epoch key outlives its last
/// session's expiry by this much.
pub(super) const CLOCK_MARGIN: Duration = Duration::from_secs(10);

/// What the key-encryption key is derived for (`ServerKey::derive`).
const KEK_PURPOSE: &[u8] = b"wasm-hypervisor cluster session wrap-key encryption v1";

const NONCE_LEN: usize = 12;

/// The epoch keys of one replica.
pub(super) struct WrapKeys {
    cluster: Cluster,
    provider: Provider,
    kek: Zeroizing<[u8; 32]>,
    /// An epoch's length (the session TTL), at least a second.
    epoch_ms: i64,
    /// How long after its epoch ends a key is kept: a TTL plus [`CLOCK_MARGIN`].
    keep_ms: i64,
    /// Unwrapped keys by epoch. Held briefly, never across an `.await`.
    cache: Mutex<BTreeMap<i64, Zeroizing<[u8; 32]>>>,
}

impl WrapKeys {
    pub(super) fn new(cluster: Cluster, key: &ServerKey, ttl: Duration) -> WrapKeys {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 4);
        WrapKeys {
            cluster,
            provider: key.provider(),
            kek: key.derive(KEK_PURPOSE),
            epoch_ms: ttl_ms.max(1000),
            keep_ms: ttl_ms + CLOCK_MARGIN.as_millis() as i64,
            cache: Mutex::new(BTreeMap::new()),
        }
    }

    /// The epoch of the time `now_ms`.
    pub(super) fn epoch_at(&self, now_ms: i64) -> i64 {
        now_ms.div_euclid(self.epoch_ms)
    }

    /// The oldest epoch whose key is still needed at `now_ms`: epoch `e`'s last
    /// session expires at most a TTL after the epoch ends, at `(e + 1) * epoch_ms
    /// + ttl`, so its key is needed while that plus [`CLOCK_MARGIN`] is after
    /// `now_ms`, i.e. while `e >= (now_ms - keep_ms) / epoch_ms`.
    fn oldest_needed(&self, now_ms: i64) -> i64 {
        self.epoch_at(now_ms - self.keep_ms)
    }

    fn cached(&self, epoch: i64) -> Option<Zeroizing<[u8; 32]>> {
        self.lock().get(&epoch).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<i64, Zeroizing<[u8; 32]>>> {
        // Each critical section is one map operation: a poisoned map is whole.
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The key of `epoch`, made and stored if no replica has yet. `None` if the
    /// system's RNG failed or the stored key does not open (another signing key:
    /// refused at start, so a damaged row).
    pub(super) async fn for_issuing(
        &self,
        epoch: i64,
    ) -> Result<Option<Zeroizing<[u8; 32]>>, DbError> {
        if let Some(key) = self.cached(epoch) {
            return Ok(Some(key));
        }
        let Some(fresh) = self.random_key() else {
            return Ok(None);
        };
        let Some(wrapped) = self.seal(&self.kek, &epoch_aad(epoch), fresh.as_slice()) else {
            return Ok(None);
        };
        // The first replica's key wins; every replica then reads that one.
        let stored: Vec<u8> = self
            .cluster
            .run(|client| async move {
                client
                    .execute(
                        "INSERT INTO wrap_keys (epoch, wrapped) VALUES ($1, $2) \
                         ON CONFLICT (epoch) DO NOTHING",
                        &[&epoch, &wrapped],
                    )
                    .await?;
                let row = client
                    .query_one("SELECT wrapped FROM wrap_keys WHERE epoch = $1", &[&epoch])
                    .await?;
                Ok(row.get(0))
            })
            .await?;
        Ok(self.unwrap_epoch_key(epoch, &stored))
    }

    /// The key of `epoch` for opening a session of it; `None` if it was deleted
    /// (every session of that epoch has expired) or does not open.
    pub(super) async fn for_opening(
        &self,
        epoch: i64,
    ) -> Result<Option<Zeroizing<[u8; 32]>>, DbError> {
        if let Some(key) = self.cached(epoch) {
            return Ok(Some(key));
        }
        let stored: Option<Vec<u8>> = self
            .cluster
            .run(|client| async move {
                let row = client
                    .query_opt("SELECT wrapped FROM wrap_keys WHERE epoch = $1", &[&epoch])
                    .await?;
                Ok(row.map(|row| row.get(0)))
            })
            .await?;
        Ok(stored.and_then(|stored| self.unwrap_epoch_key(epoch, &stored)))
    }

    fn unwrap_epoch_key(&self, epoch: i64, stored: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
        let opened = self.open(&self.kek, &epoch_aad(epoch), stored)?;
        let key: [u8; 32] = opened.as_slice().try_into().ok()?;
        let key = Zeroizing::new(key);
        self.lock().insert(epoch, key.clone());
        Some(key)
    }

    /// Deletes the keys no session needs any more at `now_ms`, here and in the
    /// database.
    pub(super) async fn sweep(&self, now_ms: i64) -> Result<u64, DbError> {
        let oldest = self.oldest_needed(now_ms);
        {
            let mut cache = self.lock();
            let kept = cache.split_off(&oldest);
            // The old keys are zeroized as `cache`'s old map drops.
            *cache = kept;
        }
        self.cluster
            .run(|client| async move {
                client
                    .execute("DELETE FROM wrap_keys WHERE epoch < $1", &[&oldest])
                    .await
            })
            .await
    }

    fn random_key(&self) -> Option<Zeroizing<[u8; 32]>> {
        let mut key = Zeroizing::new([0u8; 32]);
        self.provider.fill_random(key.as_mut_slice()).ok()?;
        Some(key)
    }

    /// `nonce || AES-256-GCM(key, nonce, aad, plaintext)` with a random nonce.
    pub(super) fn seal(&self, key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        self.provider.fill_random(&mut nonce).ok()?;
        let mut sealed = plaintext.to_vec();
        self.provider
            .aes_256_gcm_seal(key, &nonce, aad, &mut sealed)
            .ok()?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Some(out)
    }

    /// Opens what [`WrapKeys::seal`] made; `None` if it does not open.
    pub(super) fn open(
        &self,
        key: &[u8; 32],
        aad: &[u8],
        sealed: &[u8],
    ) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        let mut buffer = Zeroizing::new(ciphertext.to_vec());
        self.provider
            .aes_256_gcm_open(key, &nonce, aad, &mut buffer)
            .ok()?;
        Some(buffer)
    }
}

/// The associated data of an epoch key's wrapping.
fn epoch_aad(epoch: i64) -> Vec<u8> {
    let mut aad = b"wasm-hypervisor epoch key ".to_vec();
    aad.extend_from_slice(&epoch.to_be_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn keys() -> WrapKeys {
        let key = ServerKey::from_scalar(Provider::default(), &[7; 32]).unwrap();
        WrapKeys::new(Cluster::unconnected(), &key, MINUTE)
    }

    #[test]
    fn a_wrapped_seed_opens_only_under_its_key_and_with_its_session_id() {
        let keys = keys();
        let epoch_key = [1u8; 32];
        let sealed = keys.seal(&epoch_key, b"session a", &[9; 32]).unwrap();
        assert_ne!(
            &sealed[NONCE_LEN..NONCE_LEN + 32],
            &[9; 32],
            "sealed, not copied"
        );
        assert_eq!(
            keys.open(&epoch_key, b"session a", &sealed)
                .unwrap()
                .as_slice(),
            &[9; 32]
        );
        assert!(keys.open(&epoch_key, b"session b", &sealed).is_none());
        assert!(keys.open(&[2u8; 32], b"session a", &sealed).is_none());
        assert!(keys.open(&epoch_key, b"session a", &sealed[..8]).is_none());
    }

    #[test]
    fn the_key_encryption_key_is_derived_from_the_signing_key() {
        let provider = Provider::default();
        let one = ServerKey::from_scalar(provider, &[7; 32]).unwrap();
        let again = ServerKey::from_scalar(provider, &[7; 32]).unwrap();
        let other = ServerKey::from_scalar(provider, &[8; 32]).unwrap();
        assert_eq!(*one.derive(KEK_PURPOSE), *again.derive(KEK_PURPOSE));
        assert_ne!(*one.derive(KEK_PURPOSE), *other.derive(KEK_PURPOSE));
        assert_ne!(*one.derive(KEK_PURPOSE), *one.derive(b"another purpose"));
    }

    #[test]
    fn an_epoch_key_is_kept_until_every_session_of_its_epoch_has_expired() {
        let keys = keys();
        let epoch_ms = MINUTE.as_millis() as i64;
        let epoch = 1_000;
        // The last session of the epoch is issued just before it ends and
        // expires a TTL later; with the clock margin, the key is needed until then.
        let last_expiry = (epoch + 1) * epoch_ms + epoch_ms;
        let margin = CLOCK_MARGIN.as_millis() as i64;
        assert_eq!(keys.epoch_at(epoch * epoch_ms), epoch);
        assert_eq!(keys.epoch_at((epoch + 1) * epoch_ms - 1), epoch);
        assert!(keys.oldest_needed(last_expiry + margin - 1) <= epoch);
        assert_eq!(keys.oldest_needed(last_expiry + margin), epoch + 1);
    }
}

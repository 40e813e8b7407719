//! What [`Client::run`](crate::Client::run) remembers about the blobs a server
//! holds (protocol v1.1 §D): the SHA-256 of every module and archive it sent by
//! bytes to a server, so that the next run can name them instead of sending them
//! again. In memory for the client's life ([`BlobCache::in_memory`], the default),
//! or on disk between invocations ([`BlobCache::on_disk`], what the `run` command
//! uses), per server key and client scope.
//!
//! The list is a hint, never trusted: a server that restarted or evicted a blob
//! answers `missing_blob`, and the run sends the bytes again. On disk it holds
//! hashes only, in `$XDG_CACHE_HOME/wasm-hypervisor/blobs/` (else
//! `~/.cache/...`), one file per server key id and scope (`<key id>-<scope>`, one
//! hex hash a line), owner-only; a hash says which modules a user ran, so it is
//! kept as private as a receipt.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Most hashes kept per file; the oldest half goes past it.
const MAX_HASHES: usize = 4096;

/// The hashes a server is believed to hold for one scope.
#[derive(Debug, Default)]
pub struct BlobCache {
    /// The file's scope (`open`, or the token's SHA-256) until the server's key
    /// id is known ([`BlobCache::bind`]); `None` in memory.
    scope: Option<String>,
    /// `None`: in memory, or no cache directory (no `HOME`); nothing is written.
    path: Option<PathBuf>,
    /// In the order they were learned, oldest first.
    known: Vec<[u8; 32]>,
    index: BTreeSet<[u8; 32]>,
}

impl BlobCache {
    /// A cache that lives as long as the client: nothing is read or written.
    pub fn in_memory() -> BlobCache {
        BlobCache::default()
    }

    /// The user's cache on disk for the scope of `token` (its SHA-256, or `open`
    /// without one); its file is chosen and read once the server's key is known
    /// ([`BlobCache::bind`], which the first run does), and written after each run.
    pub fn on_disk(token: Option<&str>) -> BlobCache {
        let scope = match token {
            Some(token) => hex::encode(wasm_hypervisor_protocol::digest::sha256(token.as_bytes())),
            None => "open".to_owned(),
        };
        BlobCache {
            scope: Some(scope),
            ..BlobCache::default()
        }
    }

    /// The on-disk cache for the server whose key id is `key_id` (hex) and the
    /// scope of `token`, read now. A missing or unreadable file is an empty cache.
    pub fn load(key_id: &str, token: Option<&str>) -> BlobCache {
        let mut cache = BlobCache::on_disk(token);
        cache.bind(key_id);
        cache
    }

    /// Chooses the file of an on-disk cache for the server whose key id is
    /// `key_id` (hex) and reads it; nothing for a cache in memory or one already
    /// bound.
    pub fn bind(&mut self, key_id: &str) {
        let Some(scope) = self.scope.take() else {
            return;
        };
        self.path = cache_dir().map(|dir| dir.join(format!("{key_id}-{scope}")));
        self.read();
    }

    /// Adds the hashes of the file, if there is one and it reads.
    fn read(&mut self) {
        let text = self
            .path
            .as_deref()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .unwrap_or_default();
        for line in text.lines() {
            if let Ok(bytes) = hex::decode(line.trim())
                && let Ok(hash) = <[u8; 32]>::try_from(bytes)
            {
                self.insert(hash);
            }
        }
    }

    /// Whether the server is believed to hold `hash`.
    pub fn contains(&self, hash: &[u8; 32]) -> bool {
        self.index.contains(hash)
    }

    /// Remembers that the server now holds `hash`.
    pub fn insert(&mut self, hash: [u8; 32]) {
        if self.index.insert(hash) {
            self.known.push(hash);
        }
        if self.known.len() > MAX_HASHES {
            let dropped: Vec<_> = self.known.drain(..MAX_HASHES / 2).collect();
            for hash in dropped {
                self.index.remove(&hash);
            }
        }
    }

    /// Forgets `hash` (the server said it does not hold it).
    pub fn remove(&mut self, hash: &[u8; 32]) {
        if self.index.remove(hash) {
            self.known.retain(|known| known != hash);
        }
    }

    /// Writes the list back, owner-only, replacing the file atomically. A cache
    /// that cannot be written is not an error of the run: it only costs a resend.
    pub fn save(&self) {
        let Some(path) = &self.path else { return };
        let _ = write_atomically(path, &self.known);
    }
}

fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))?;
    Some(base.join("wasm-hypervisor").join("blobs"))
}

fn write_atomically(path: &Path, hashes: &[[u8; 32]]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    let mut text = String::with_capacity(hashes.len() * 65);
    for hash in hashes {
        text.push_str(&hex::encode(hash));
        text.push('\n');
    }
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_survive_a_save_and_a_load_per_key_and_scope() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key-open");
        let mut cache = BlobCache {
            path: Some(path.clone()),
            ..BlobCache::default()
        };
        cache.insert([1; 32]);
        cache.insert([2; 32]);
        cache.remove(&[1; 32]);
        cache.save();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", hex::encode([2; 32])));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn an_on_disk_cache_reads_its_server_keys_file_when_bound() {
        let mut cache = BlobCache {
            scope: Some("open".to_owned()),
            ..BlobCache::default()
        };
        assert!(cache.path.is_none());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key-open");
        std::fs::write(&path, format!("{}\nnot hex\n", hex::encode([7; 32]))).unwrap();
        // What `bind` does once it has chosen the file, without the environment.
        cache.scope = None;
        cache.path = Some(path);
        cache.read();
        assert!(cache.contains(&[7; 32]));
        assert_eq!(cache.known.len(), 1);
    }

    #[test]
    fn the_oldest_half_goes_past_the_maximum() {
        let mut cache = BlobCache::in_memory();
        for n in 0..=MAX_HASHES {
            let mut hash = [0; 32];
            hash[..8].copy_from_slice(&(n as u64).to_le_bytes());
            cache.insert(hash);
        }
        assert_eq!(cache.known.len(), MAX_HASHES / 2 + 1);
        assert!(!cache.contains(&[0; 32]));
        assert_eq!(cache.index.len(), cache.known.len());
    }
}

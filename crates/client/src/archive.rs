//! Mount archives on the client's side (protocol v1.1 §E): a host directory packed
//! into the tar a read-only mount carries, and a writable mount's `mounts_out`
//! archive unpacked into a host directory.
//!
//! Packing is deterministic: entries sorted by name, owner 0, modes 0644/0755,
//! the files' own modification times, so the same tree gives the same bytes and
//! the same SHA-256 run after run (which is what lets the archive go by reference).
//! Unpacking checks every member against the rules the server applies to what
//! it receives, before anything is written: regular files and directories only,
//! relative names without `..`, nothing outside the target directory.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

/// Why a directory could not be packed or an archive unpacked.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Reading or writing a host path failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A host entry that is neither a regular file nor a directory (a symbolic
    /// link, a device, a socket): mounts hold only those two.
    #[error(
        "{} is neither a regular file nor a directory; mounts hold only those",
        .0.display()
    )]
    NotFileOrDirectory(PathBuf),
    /// A host name that is not UTF-8, which WASI paths must be.
    #[error("{} is not a UTF-8 name", .0.display())]
    NotUtf8(PathBuf),
    /// An archive member the rules refuse: a link, device, absolute name, `..`.
    #[error("archive member {index} ({name}) {reason}")]
    Member {
        index: usize,
        name: String,
        reason: &'static str,
    },
    /// The archive is not a readable tar.
    #[error("not a readable tar archive: {0}")]
    Malformed(io::Error),
    /// The directory to unpack into exists and is not empty.
    #[error("{} is not empty; choose an empty or new directory", .0.display())]
    NotEmpty(PathBuf),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Packs the tree under `root` (its contents, not `root` itself) into a tar
/// archive, deterministically. Symbolic links and special files are refused,
/// naming them, rather than followed or skipped.
pub fn pack_directory(root: &Path) -> Result<Vec<u8>, ArchiveError> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Deterministic);
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let dir = root.join(&relative);
        let mut names = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_error(&dir))? {
            let entry = entry.map_err(io_error(&dir))?;
            names.push(entry.file_name());
        }
        names.sort();
        let mut subdirectories = Vec::new();
        for name in names {
            let relative_path = relative.join(&name);
            let host_path = root.join(&relative_path);
            let Some(name_text) = relative_path.to_str() else {
                return Err(ArchiveError::NotUtf8(host_path));
            };
            let metadata = fs::symlink_metadata(&host_path).map_err(io_error(&host_path))?;
            let mtime = metadata
                .modified()
                .ok()
                .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |since| since.as_secs());
            let mut header = tar::Header::new_gnu();
            header.set_mtime(mtime);
            header.set_uid(0);
            header.set_gid(0);
            if metadata.is_dir() {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder
                    .append_data(&mut header, format!("{name_text}/"), io::empty())
                    .map_err(io_error(&host_path))?;
                subdirectories.push(relative_path);
            } else if metadata.is_file() {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(metadata.len());
                let file = fs::File::open(&host_path).map_err(io_error(&host_path))?;
                builder
                    .append_data(&mut header, name_text, file)
                    .map_err(io_error(&host_path))?;
            } else {
                return Err(ArchiveError::NotFileOrDirectory(host_path));
            }
        }
        // Depth first in name order: a directory's entries follow it at once.
        pending.extend(subdirectories.into_iter().rev());
    }
    builder.into_inner().map_err(io_error(root))
}

/// Unpacks `archive` (a writable mount's `mounts_out`) into `target`, which is
/// created if missing and must otherwise be empty. Every member is checked before
/// anything is written.
pub fn unpack_into(archive: &[u8], target: &Path) -> Result<(), ArchiveError> {
    let members = read_members(archive)?;
    match fs::read_dir(target) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(ArchiveError::NotEmpty(target.to_owned()));
            }
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(target).map_err(io_error(target))?;
        }
        Err(error) => return Err(io_error(target)(error)),
    }
    for member in members {
        let path = target.join(&member.path);
        match member.data {
            None => fs::create_dir_all(&path).map_err(io_error(&path))?,
            Some(data) => {
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent).map_err(io_error(parent))?;
                }
                fs::write(&path, data).map_err(io_error(&path))?;
            }
        }
    }
    Ok(())
}

/// One checked member: a relative path, and its bytes for a file (`None`: a
/// directory).
struct Member {
    path: PathBuf,
    data: Option<Vec<u8>>,
}

fn read_members(archive: &[u8]) -> Result<Vec<Member>, ArchiveError> {
    let mut reader = tar::Archive::new(archive);
    let mut members = Vec::new();
    for (index, entry) in reader
        .entries()
        .map_err(ArchiveError::Malformed)?
        .enumerate()
    {
        let mut entry = entry.map_err(ArchiveError::Malformed)?;
        let raw_name = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw_name).into_owned();
        let refuse = |reason| ArchiveError::Member {
            index,
            name: name.clone(),
            reason,
        };
        let kind = entry.header().entry_type();
        let is_dir = match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => false,
            tar::EntryType::Directory => true,
            tar::EntryType::XGlobalHeader => continue,
            _ => return Err(refuse("is neither a regular file nor a directory")),
        };
        let text = std::str::from_utf8(&raw_name).map_err(|_| refuse("is not UTF-8"))?;
        let path = Path::new(text);
        let mut clean = PathBuf::new();
        for component in path.components() {
            match component {
                Component::Normal(part) => clean.push(part),
                Component::CurDir => {}
                Component::ParentDir => return Err(refuse("has a `..` segment")),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(refuse("is an absolute name"));
                }
            }
        }
        if clean.as_os_str().is_empty() {
            // The archive's root directory itself.
            continue;
        }
        let data = if is_dir {
            None
        } else {
            let mut data = Vec::new();
            io::Read::read_to_end(&mut entry, &mut data).map_err(ArchiveError::Malformed)?;
            Some(data)
        };
        members.push(Member { path: clean, data });
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packed_directory_unpacks_to_the_same_tree_and_packs_to_the_same_bytes() {
        let source = tempfile::tempdir().unwrap();
        fs::create_dir_all(source.path().join("b/c")).unwrap();
        fs::write(source.path().join("a.txt"), b"alpha").unwrap();
        fs::write(source.path().join("b/c/deep.txt"), b"deep").unwrap();
        let long = "x".repeat(150);
        fs::write(source.path().join(&long), b"long name").unwrap();
        let archive = pack_directory(source.path()).unwrap();
        assert_eq!(archive, pack_directory(source.path()).unwrap());
        let target = tempfile::tempdir().unwrap();
        let out = target.path().join("out");
        unpack_into(&archive, &out).unwrap();
        assert_eq!(fs::read(out.join("a.txt")).unwrap(), b"alpha");
        assert_eq!(fs::read(out.join("b/c/deep.txt")).unwrap(), b"deep");
        assert_eq!(fs::read(out.join(&long)).unwrap(), b"long name");
        let error = unpack_into(&archive, &out).unwrap_err();
        assert!(matches!(error, ArchiveError::NotEmpty(_)), "{error}");
    }

    #[test]
    fn symbolic_links_are_refused_naming_them() {
        let source = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", source.path().join("link")).unwrap();
        let error = pack_directory(source.path()).unwrap_err();
        assert!(error.to_string().contains("link"), "{error}");
        assert!(matches!(error, ArchiveError::NotFileOrDirectory(_)));
    }

    #[test]
    fn members_escaping_the_target_are_refused_before_anything_is_written() {
        for (name, kind, expected) in [
            ("../evil", tar::EntryType::Regular, "`..`"),
            ("/etc/evil", tar::EntryType::Regular, "absolute"),
            ("link", tar::EntryType::Symlink, "neither"),
        ] {
            let mut builder = tar::Builder::new(Vec::new());
            let mut fine = tar::Header::new_ustar();
            fine.set_size(2);
            fine.set_entry_type(tar::EntryType::Regular);
            fine.set_path("fine.txt").unwrap();
            fine.set_cksum();
            builder.append(&fine, &b"ok"[..]).unwrap();
            let mut header = tar::Header::new_gnu();
            header.set_size(0);
            header.set_entry_type(kind);
            // Written raw: `set_path` refuses these names itself.
            let bytes = name.as_bytes();
            header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            header.set_cksum();
            builder.append(&header, io::empty()).unwrap();
            let archive = builder.into_inner().unwrap();
            let target = tempfile::tempdir().unwrap();
            let out = target.path().join("out");
            let error = unpack_into(&archive, &out).unwrap_err();
            assert!(error.to_string().contains(expected), "{name}: {error}");
            assert!(!out.exists(), "{name}: nothing written");
        }
    }
}

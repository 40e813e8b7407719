//! `wasi:filesystem` for components over the execution's in-memory [`Mounts`]:
//! [`MemFs`] (the linker's `HasData` marker) and [`MemFsView`], which implement
//! wasmtime-wasi's generated host traits (`types::Host`, `HostDescriptor`,
//! `HostDirectoryEntryStream`, `preopens::Host`). `sandbox::component` registers
//! them over wasmtime-wasi's own (cap-std) ones, so a component sees exactly the
//! request's mounts, as preopens in request order.
//!
//! Handles: the bindings name wasmtime-wasi's `Descriptor` and
//! `DirectoryEntryStream` types, which we cannot make. Our descriptors
//! ([`OpenNode`]) and directory streams live in the store's one `ResourceTable`
//! (which `wasi:io` streams share) under their own types, and the handle is
//! re-typed ([`retag`]): every lookup is checked against our type, so a handle of
//! another kind is `WrongType` (a trap), never a confusion.

use std::hash::{BuildHasher, RandomState};

use bytes::Bytes;
use wasmtime::component::{HasData, Resource, ResourceTable, ResourceTableError};
use wasmtime_wasi::p2::bindings::clocks::wall_clock::Datetime;
use wasmtime_wasi::p2::bindings::filesystem::preopens;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    self, Advice, DescriptorFlags, DescriptorStat, DescriptorType, DirectoryEntry, ErrorCode,
    Filesize, HostDescriptor, HostDirectoryEntryStream, MetadataHashValue, NewTimestamp, OpenFlags,
    PathFlags,
};
use wasmtime_wasi::p2::{
    DynInputStream, DynOutputStream, FsError, FsResult, InputStream, OutputStream, Pollable,
    StreamError, StreamResult,
};

use super::FsErr;
use super::tree::{Kind, Mounts, Node, OpenOpts, Timestamp};

/// Bytes one read (a `read` call or a stream read) returns at most: host work per
/// call stays bounded, since the epoch deadline cannot interrupt host code.
const MAX_READ: usize = 1 << 20;

/// What a file stream says may be written now: never 0, or a guest waiting for
/// room would wait forever on a full budget (the write itself says ENOSPC).
const WRITE_BUDGET: usize = 64 << 10;

/// The table entries a component may hold (wasmtime-wasi's default is 1,000,000,
/// each host memory outside `memory_bytes`).
pub(crate) const MAX_TABLE_ENTRIES: usize = 65_536;

/// The linker's marker for our `wasi:filesystem`.
pub(crate) struct MemFs;

impl HasData for MemFs {
    type Data<'a> = MemFsView<'a>;
}

/// What the filesystem host functions see of a component's store.
pub(crate) struct MemFsView<'a> {
    pub table: &'a mut ResourceTable,
    pub mounts: &'a mut Mounts,
    /// Per execution: `metadata-hash` values the guest cannot compute.
    pub hasher: &'a RandomState,
}

/// An open file or directory of a mount: what a descriptor handle is.
pub(crate) struct OpenNode {
    mount: u32,
    node: Node,
    read: bool,
    write: bool,
    /// A directory of a writable mount.
    mutate: bool,
}

/// A directory's entries, listed when the stream was opened.
pub(crate) struct MemReaddir {
    entries: std::vec::IntoIter<DirectoryEntry>,
}

/// The same table slot under another type tag.
fn retag<T: 'static, U: 'static>(handle: &Resource<T>) -> Resource<U> {
    if handle.owned() {
        Resource::new_own(handle.rep())
    } else {
        Resource::new_borrow(handle.rep())
    }
}

/// The `error-code` of a file-system error.
pub(crate) fn error_code(error: FsErr) -> ErrorCode {
    match error {
        FsErr::NoEntry => ErrorCode::NoEntry,
        FsErr::Exist => ErrorCode::Exist,
        FsErr::NotDirectory => ErrorCode::NotDirectory,
        FsErr::IsDirectory => ErrorCode::IsDirectory,
        FsErr::NotEmpty => ErrorCode::NotEmpty,
        FsErr::ReadOnly => ErrorCode::ReadOnly,
        FsErr::NotPermitted => ErrorCode::NotPermitted,
        FsErr::CrossDevice => ErrorCode::CrossDevice,
        FsErr::NoSpace => ErrorCode::InsufficientSpace,
        FsErr::NameTooLong => ErrorCode::NameTooLong,
        FsErr::Invalid => ErrorCode::Invalid,
        FsErr::BadDescriptor => ErrorCode::BadDescriptor,
        FsErr::Unsupported => ErrorCode::Unsupported,
        FsErr::Overflow => ErrorCode::Overflow,
        FsErr::TooManyOpen => ErrorCode::InsufficientMemory,
    }
}

impl From<FsErr> for FsError {
    fn from(error: FsErr) -> FsError {
        error_code(error).into()
    }
}

/// A table error where a guest asked for a new handle: a full table is the
/// guest's `insufficient-memory`; anything else a trap, as in wasmtime-wasi.
fn pushed<T>(result: Result<Resource<T>, ResourceTableError>) -> FsResult<Resource<T>> {
    match result {
        Ok(handle) => Ok(handle),
        Err(ResourceTableError::Full) => Err(ErrorCode::InsufficientMemory.into()),
        Err(error) => Err(error.into()),
    }
}

fn datetime(time: Timestamp) -> Datetime {
    Datetime {
        seconds: time / 1_000_000_000,
        nanoseconds: (time % 1_000_000_000) as u32,
    }
}

fn timestamp(time: NewTimestamp) -> Option<Timestamp> {
    match time {
        NewTimestamp::NoChange => None,
        NewTimestamp::Now => Some(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        ),
        NewTimestamp::Timestamp(at) => Some(
            at.seconds
                .saturating_mul(1_000_000_000)
                .saturating_add(u64::from(at.nanoseconds)),
        ),
    }
}

fn descriptor_type(kind: Kind) -> DescriptorType {
    match kind {
        Kind::Dir => DescriptorType::Directory,
        Kind::File => DescriptorType::RegularFile,
    }
}

impl MemFsView<'_> {
    fn open(&self, fd: &Resource<types::Descriptor>) -> FsResult<&OpenNode> {
        Ok(self.table.get::<OpenNode>(&retag(fd))?)
    }

    /// A directory descriptor to resolve paths from: (mount, node).
    fn dir(&self, fd: &Resource<types::Descriptor>) -> FsResult<(u32, Node)> {
        let open = self.open(fd)?;
        if !open.node.is_dir() {
            return Err(ErrorCode::NotDirectory.into());
        }
        Ok((open.mount, open.node.clone()))
    }

    /// A file descriptor (a directory is `is-directory`).
    fn file(&self, fd: &Resource<types::Descriptor>) -> FsResult<&OpenNode> {
        let open = self.open(fd)?;
        if open.node.is_dir() {
            return Err(ErrorCode::IsDirectory.into());
        }
        Ok(open)
    }

    fn push(&mut self, open: OpenNode) -> FsResult<Resource<types::Descriptor>> {
        Ok(retag(&pushed(self.table.push(open))?))
    }

    fn stat_of(&self, mount: u32, node: &Node) -> DescriptorStat {
        let stat = self.mounts.stat(mount, node);
        DescriptorStat {
            type_: descriptor_type(stat.kind),
            link_count: 1,
            size: stat.size,
            data_access_timestamp: Some(datetime(stat.atime)),
            data_modification_timestamp: Some(datetime(stat.mtime)),
            status_change_timestamp: Some(datetime(stat.mtime)),
        }
    }

    fn hash_of(&self, mount: u32, node: &Node) -> MetadataHashValue {
        let stat = self.mounts.stat(mount, node);
        let key = (stat.dev, stat.ino, stat.size, stat.mtime);
        MetadataHashValue {
            lower: self.hasher.hash_one((0u8, key)),
            upper: self.hasher.hash_one((1u8, key)),
        }
    }
}

impl preopens::Host for MemFsView<'_> {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<types::Descriptor>, String)>> {
        let mut preopens = Vec::with_capacity(self.mounts.mounts().len());
        for (index, mount) in self.mounts.mounts().iter().enumerate() {
            let open = OpenNode {
                mount: index as u32,
                node: mount.root.clone(),
                read: true,
                write: false,
                mutate: mount.writable,
            };
            let handle = self.table.push(open)?;
            preopens.push((retag(&handle), mount.path.clone()));
        }
        Ok(preopens)
    }
}

impl types::Host for MemFsView<'_> {
    fn convert_error_code(&mut self, error: FsError) -> wasmtime::Result<ErrorCode> {
        error.downcast()
    }

    /// Our file streams fail with an [`FsErr`] inside the stream error
    /// (`insufficient-space` past `files_bytes`); other streams' errors are
    /// I/O errors, as wasmtime-wasi reads them.
    fn filesystem_error_code(
        &mut self,
        error: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        let error = self.table.get(&error)?;
        if let Some(error) = error.downcast_ref::<FsErr>() {
            return Ok(Some(error_code(*error)));
        }
        if let Some(error) = error.downcast_ref::<std::io::Error>() {
            return Ok(Some(ErrorCode::from(error)));
        }
        Ok(None)
    }
}

impl HostDescriptor for MemFsView<'_> {
    async fn advise(
        &mut self,
        fd: Resource<types::Descriptor>,
        _offset: Filesize,
        _len: Filesize,
        _advice: Advice,
    ) -> FsResult<()> {
        self.file(&fd)?;
        Ok(())
    }

    async fn sync_data(&mut self, fd: Resource<types::Descriptor>) -> FsResult<()> {
        self.open(&fd)?;
        Ok(())
    }

    async fn get_flags(&mut self, fd: Resource<types::Descriptor>) -> FsResult<DescriptorFlags> {
        let open = self.open(&fd)?;
        let mut flags = DescriptorFlags::empty();
        if open.read {
            flags |= DescriptorFlags::READ;
        }
        if open.write {
            flags |= DescriptorFlags::WRITE;
        }
        if open.mutate {
            flags |= DescriptorFlags::MUTATE_DIRECTORY;
        }
        Ok(flags)
    }

    async fn get_type(&mut self, fd: Resource<types::Descriptor>) -> FsResult<DescriptorType> {
        Ok(descriptor_type(self.open(&fd)?.node.kind()))
    }

    async fn set_size(&mut self, fd: Resource<types::Descriptor>, size: Filesize) -> FsResult<()> {
        let open = self.file(&fd)?;
        if !open.write {
            return Err(ErrorCode::BadDescriptor.into());
        }
        let (mount, node) = (open.mount, open.node.clone());
        Ok(self.mounts.set_size(mount, &node, size)?)
    }

    async fn set_times(
        &mut self,
        fd: Resource<types::Descriptor>,
        atim: NewTimestamp,
        mtim: NewTimestamp,
    ) -> FsResult<()> {
        let open = self.open(&fd)?;
        let (mount, node) = (open.mount, open.node.clone());
        Ok(self
            .mounts
            .set_times(mount, &node, timestamp(atim), timestamp(mtim))?)
    }

    async fn read(
        &mut self,
        fd: Resource<types::Descriptor>,
        len: Filesize,
        offset: Filesize,
    ) -> FsResult<(Vec<u8>, bool)> {
        let open = self.file(&fd)?;
        if !open.read {
            return Err(ErrorCode::BadDescriptor.into());
        }
        let max = usize::try_from(len).unwrap_or(usize::MAX).min(MAX_READ);
        let bytes = open.node.read_with(offset, max, <[u8]>::to_vec)?;
        let end = bytes.is_empty();
        Ok((bytes, end))
    }

    async fn write(
        &mut self,
        fd: Resource<types::Descriptor>,
        mut buffer: Vec<u8>,
        offset: Filesize,
    ) -> FsResult<Filesize> {
        let open = self.file(&fd)?;
        if !open.write {
            return Err(ErrorCode::NotPermitted.into());
        }
        let (mount, node) = (open.mount, open.node.clone());
        let written = self.mounts.write(mount, &node, offset, &buffer);
        zeroize::Zeroize::zeroize(&mut buffer);
        Ok(written?)
    }

    async fn read_directory(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<Resource<types::DirectoryEntryStream>> {
        let (_, node) = self.dir(&fd)?;
        let entries: Vec<DirectoryEntry> = self
            .mounts
            .list(&node)?
            .into_iter()
            .map(|entry| DirectoryEntry {
                type_: descriptor_type(entry.kind),
                name: String::from_utf8_lossy(&entry.name).into_owned(),
            })
            .collect();
        let stream = MemReaddir {
            entries: entries.into_iter(),
        };
        Ok(retag(&pushed(self.table.push(stream))?))
    }

    async fn sync(&mut self, fd: Resource<types::Descriptor>) -> FsResult<()> {
        self.open(&fd)?;
        Ok(())
    }

    async fn create_directory_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        let (mount, base) = self.dir(&fd)?;
        Ok(self.mounts.create_dir(mount, &base, &path)?)
    }

    async fn stat(&mut self, fd: Resource<types::Descriptor>) -> FsResult<DescriptorStat> {
        let open = self.open(&fd)?;
        Ok(self.stat_of(open.mount, &open.node))
    }

    async fn stat_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        _path_flags: PathFlags,
        path: String,
    ) -> FsResult<DescriptorStat> {
        let (mount, base) = self.dir(&fd)?;
        let node = self.mounts.lookup(&base, &path)?;
        Ok(self.stat_of(mount, &node))
    }

    async fn set_times_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        _path_flags: PathFlags,
        path: String,
        atim: NewTimestamp,
        mtim: NewTimestamp,
    ) -> FsResult<()> {
        let (mount, base) = self.dir(&fd)?;
        let node = self.mounts.lookup(&base, &path)?;
        Ok(self
            .mounts
            .set_times(mount, &node, timestamp(atim), timestamp(mtim))?)
    }

    async fn link_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        _old_path_flags: PathFlags,
        _old_path: String,
        new_descriptor: Resource<types::Descriptor>,
        _new_path: String,
    ) -> FsResult<()> {
        self.dir(&fd)?;
        self.dir(&new_descriptor)?;
        Err(ErrorCode::Unsupported.into())
    }

    async fn open_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        _path_flags: PathFlags,
        path: String,
        oflags: OpenFlags,
        flags: DescriptorFlags,
    ) -> FsResult<Resource<types::Descriptor>> {
        let (mount, base) = self.dir(&fd)?;
        let write = flags.contains(DescriptorFlags::WRITE);
        let opts = OpenOpts {
            create: oflags.contains(OpenFlags::CREATE),
            exclusive: oflags.contains(OpenFlags::EXCLUSIVE),
            truncate: oflags.contains(OpenFlags::TRUNCATE),
            directory: oflags.contains(OpenFlags::DIRECTORY),
            write,
        };
        let node = self.mounts.open(mount, &base, &path, opts)?;
        let mutate = node.is_dir()
            && flags.contains(DescriptorFlags::MUTATE_DIRECTORY)
            && self.mounts.mounts()[mount as usize].writable;
        self.push(OpenNode {
            mount,
            node,
            read: flags.contains(DescriptorFlags::READ),
            write,
            mutate,
        })
    }

    fn drop(&mut self, fd: Resource<types::Descriptor>) -> wasmtime::Result<()> {
        self.table.delete::<OpenNode>(retag(&fd))?;
        Ok(())
    }

    async fn readlink_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<String> {
        let (_, base) = self.dir(&fd)?;
        self.mounts.lookup(&base, &path)?;
        Err(ErrorCode::Invalid.into())
    }

    async fn remove_directory_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        let (mount, base) = self.dir(&fd)?;
        Ok(self.mounts.remove_dir(mount, &base, &path)?)
    }

    async fn rename_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        old_path: String,
        new_fd: Resource<types::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        let (old_mount, old_base) = self.dir(&fd)?;
        let (new_mount, new_base) = self.dir(&new_fd)?;
        Ok(self.mounts.rename(
            old_mount, &old_base, &old_path, new_mount, &new_base, &new_path,
        )?)
    }

    async fn symlink_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        _src_path: String,
        _dest_path: String,
    ) -> FsResult<()> {
        self.dir(&fd)?;
        Err(ErrorCode::Unsupported.into())
    }

    async fn unlink_file_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        let (mount, base) = self.dir(&fd)?;
        Ok(self.mounts.unlink(mount, &base, &path)?)
    }

    fn read_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: Filesize,
    ) -> FsResult<Resource<DynInputStream>> {
        let node = self.file(&fd)?.node.clone();
        let reader: DynInputStream = Box::new(MemFileReader {
            node,
            position: offset,
        });
        pushed(self.table.push(reader))
    }

    fn write_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: Filesize,
    ) -> FsResult<Resource<DynOutputStream>> {
        self.writer(fd, offset, false)
    }

    fn append_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<Resource<DynOutputStream>> {
        self.writer(fd, 0, true)
    }

    async fn is_same_object(
        &mut self,
        a: Resource<types::Descriptor>,
        b: Resource<types::Descriptor>,
    ) -> wasmtime::Result<bool> {
        let a = self.table.get::<OpenNode>(&retag(&a))?;
        let b = self.table.get::<OpenNode>(&retag(&b))?;
        Ok(a.mount == b.mount && a.node.same(&b.node))
    }

    async fn metadata_hash(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<MetadataHashValue> {
        let open = self.open(&fd)?;
        Ok(self.hash_of(open.mount, &open.node))
    }

    async fn metadata_hash_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        _path_flags: PathFlags,
        path: String,
    ) -> FsResult<MetadataHashValue> {
        let (mount, base) = self.dir(&fd)?;
        let node = self.mounts.lookup(&base, &path)?;
        Ok(self.hash_of(mount, &node))
    }
}

impl MemFsView<'_> {
    fn writer(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: Filesize,
        append: bool,
    ) -> FsResult<Resource<DynOutputStream>> {
        let open = self.file(&fd)?;
        if !open.write {
            return Err(ErrorCode::NotPermitted.into());
        }
        let writer: DynOutputStream = Box::new(MemFileWriter {
            node: open.node.clone(),
            position: offset,
            append,
        });
        pushed(self.table.push(writer))
    }
}

impl HostDirectoryEntryStream for MemFsView<'_> {
    async fn read_directory_entry(
        &mut self,
        stream: Resource<types::DirectoryEntryStream>,
    ) -> FsResult<Option<DirectoryEntry>> {
        let stream = self.table.get_mut::<MemReaddir>(&retag(&stream))?;
        Ok(stream.entries.next())
    }

    fn drop(&mut self, stream: Resource<types::DirectoryEntryStream>) -> wasmtime::Result<()> {
        self.table.delete::<MemReaddir>(retag(&stream))?;
        Ok(())
    }
}

/// `read-via-stream`: a file's bytes from a position; closed at its end.
struct MemFileReader {
    node: Node,
    position: u64,
}

#[wasmtime_wasi::async_trait]
impl Pollable for MemFileReader {
    async fn ready(&mut self) {}
}

impl InputStream for MemFileReader {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        let bytes = self
            .node
            .read_with(self.position, size.min(MAX_READ), Bytes::copy_from_slice)
            .map_err(|error| StreamError::LastOperationFailed(wasmtime::Error::new(error)))?;
        if bytes.is_empty() && size > 0 {
            return Err(StreamError::Closed);
        }
        self.position += bytes.len() as u64;
        Ok(bytes)
    }
}

/// `write-via-stream` / `append-via-stream`: each write all or nothing against
/// the budget; past it, the stream's error carries [`FsErr::NoSpace`], which
/// `filesystem-error-code` turns into `insufficient-space`.
struct MemFileWriter {
    node: Node,
    position: u64,
    append: bool,
}

#[wasmtime_wasi::async_trait]
impl Pollable for MemFileWriter {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for MemFileWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let at = if self.append {
            self.node.size()
        } else {
            self.position
        };
        let written = self
            .node
            .write_at(at, &bytes)
            .map_err(|error| StreamError::LastOperationFailed(wasmtime::Error::new(error)))?;
        self.position = at + written;
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::fs::MountSpec;

    #[tokio::test]
    async fn a_descriptor_write_past_files_bytes_is_insufficient_space() {
        let mut table = ResourceTable::new();
        let mut mounts = Mounts::new(
            vec![MountSpec {
                path: "/out".into(),
                writable: true,
                image: None,
            }],
            4,
            10,
        )
        .unwrap();
        let hasher = RandomState::new();
        let mut view = MemFsView {
            table: &mut table,
            mounts: &mut mounts,
            hasher: &hasher,
        };
        use preopens::Host as _;
        let (root, path) = view.get_directories().unwrap().pop().unwrap();
        assert_eq!(path, "/out");
        let file = view
            .open_at(
                root,
                PathFlags::empty(),
                "f".into(),
                OpenFlags::CREATE,
                DescriptorFlags::READ | DescriptorFlags::WRITE,
            )
            .await
            .unwrap();
        let borrowed = || Resource::<types::Descriptor>::new_borrow(file.rep());
        assert_eq!(view.write(borrowed(), b"123".to_vec(), 0).await.unwrap(), 3);
        let error = view.write(borrowed(), b"45".to_vec(), 3).await.unwrap_err();
        assert_eq!(error.downcast().unwrap(), ErrorCode::InsufficientSpace);
        let (bytes, _) = view.read(borrowed(), 100, 0).await.unwrap();
        assert_eq!(bytes, b"123", "nothing of the refused write");
        // A handle of another type is refused, never confused with a descriptor.
        let stream = view.read_via_stream(borrowed(), 0).unwrap();
        let wrong = Resource::<types::Descriptor>::new_borrow(stream.rep());
        assert!(view.stat(wrong).await.is_err());
    }

    #[test]
    fn filesystem_error_code_maps_our_stream_errors() {
        let mut table = ResourceTable::new();
        let mut mounts = Mounts::new(
            vec![MountSpec {
                path: "/out".into(),
                writable: true,
                image: None,
            }],
            4,
            10,
        )
        .unwrap();
        let root = mounts.mounts()[0].root.clone();
        let file = mounts
            .open(
                0,
                &root,
                "f",
                OpenOpts {
                    create: true,
                    write: true,
                    ..OpenOpts::default()
                },
            )
            .unwrap();
        let mut writer = MemFileWriter {
            node: file,
            position: 0,
            append: false,
        };
        assert!(writer.write(Bytes::from_static(b"1234")).is_ok());
        let Err(StreamError::LastOperationFailed(error)) = writer.write(Bytes::from_static(b"5"))
        else {
            panic!("a write past files_bytes fails the stream's last operation");
        };
        let error = table.push(error).unwrap();
        let io = table
            .push(wasmtime::Error::new(std::io::Error::from_raw_os_error(2)))
            .unwrap();
        let other = table.push(wasmtime::Error::msg("other")).unwrap();
        let hasher = RandomState::new();
        let mut view = MemFsView {
            table: &mut table,
            mounts: &mut mounts,
            hasher: &hasher,
        };
        use types::Host as _;
        assert_eq!(
            view.filesystem_error_code(error).unwrap(),
            Some(ErrorCode::InsufficientSpace)
        );
        assert_eq!(
            view.filesystem_error_code(io).unwrap(),
            Some(ErrorCode::NoEntry)
        );
        assert_eq!(view.filesystem_error_code(other).unwrap(), None);
    }
}

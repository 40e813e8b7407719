//! Errors as preview1 has them: a file-system error ([`FsErr`]) as its errno, and
//! a stdio stream's failure as the error its call returns.

use wasmtime_wasi::p1::types::{self, Errno};
use wasmtime_wasi::p2::StreamError;

use crate::sandbox::fs::FsErr;

impl From<FsErr> for types::Error {
    fn from(error: FsErr) -> types::Error {
        errno(error).into()
    }
}

/// The preview1 errno for a file-system error.
fn errno(error: FsErr) -> Errno {
    match error {
        FsErr::NoEntry => Errno::Noent,
        FsErr::Exist => Errno::Exist,
        FsErr::NotDirectory => Errno::Notdir,
        FsErr::IsDirectory => Errno::Isdir,
        FsErr::NotEmpty => Errno::Notempty,
        FsErr::ReadOnly => Errno::Rofs,
        FsErr::NotPermitted => Errno::Perm,
        FsErr::CrossDevice => Errno::Xdev,
        FsErr::NoSpace => Errno::Nospc,
        FsErr::NameTooLong => Errno::Nametoolong,
        FsErr::Invalid => Errno::Inval,
        FsErr::BadDescriptor => Errno::Badf,
        FsErr::Unsupported => Errno::Notsup,
        FsErr::Overflow => Errno::Overflow,
        FsErr::TooManyOpen => Errno::Mfile,
    }
}

/// A stream's failure as preview1 has it.
pub(super) fn stream_error(error: StreamError) -> types::Error {
    match error {
        StreamError::Trap(error) => types::Error::trap(error),
        StreamError::Closed => Errno::Pipe.into(),
        StreamError::LastOperationFailed(_) => Errno::Io.into(),
    }
}

//! The WASI preview1 front end (work in progress).

#![forbid(unsafe_code)]

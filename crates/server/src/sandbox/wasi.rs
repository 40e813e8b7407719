//! The guest's WASI world, the same for both kinds of guest: what the request
//! gives it ([`GuestInput`]: argv, environment, stdin, and their size check) and
//! the WASI context built from that, with stdout and stderr into capped pipes and
//! nothing of the host: no environment, no preopened directory of the host (a
//! guest's files are its request's mounts, in memory: [`super::fs`]), no network.

use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use zeroize::{Zeroize, Zeroizing};

use super::output::CappedOutput;

/// argv[0] as the guest sees it (protocol §2).
pub const ARGV0: &str = "module.wasm";

/// What the guest is given.
#[derive(Default)]
pub struct GuestInput {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Shared, not copied: for a CBOR request, a view of the request plaintext,
    /// which its owner wipes once the guest's store (holding this view) is gone.
    pub stdin: bytes::Bytes,
}

/// Why a guest's argv and environment are refused (status `invalid_request`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// More `args` than `limits.max_args`.
    #[error("`args` has {count} entries; this server allows at most {max} (limits.max_args)")]
    TooManyArgs { count: usize, max: usize },
    /// More `env` variables than `limits.max_env`.
    #[error("`env` has {count} entries; this server allows at most {max} (limits.max_env)")]
    TooManyEnv { count: usize, max: usize },
    /// argv and environment, as the guest counts them, past `limits.max_args_env_bytes`.
    #[error(
        "`args` and `env` take {bytes} bytes; this server allows at most {max} \
         (limits.max_args_env_bytes)"
    )]
    TooManyBytes { bytes: usize, max: usize },
}

impl GuestInput {
    /// Checks the guest's argv and environment against the server's maxima: at most
    /// `max_args` arguments, `max_env` variables, and `max_bytes` in all as the
    /// guest's `args_sizes_get`/`environ_sizes_get` count them (each string and its
    /// NUL, `NAME=value` for a variable).
    pub fn check_size(
        &self,
        max_args: usize,
        max_env: usize,
        max_bytes: usize,
    ) -> Result<(), InputError> {
        if self.args.len() > max_args {
            return Err(InputError::TooManyArgs {
                count: self.args.len(),
                max: max_args,
            });
        }
        if self.env.len() > max_env {
            return Err(InputError::TooManyEnv {
                count: self.env.len(),
                max: max_env,
            });
        }
        let args: usize = self.args.iter().map(|arg| arg.len() + 1).sum();
        let env: usize = self
            .env
            .iter()
            .map(|(name, value)| name.len() + value.len() + 2)
            .sum();
        if args + env > max_bytes {
            return Err(InputError::TooManyBytes {
                bytes: args + env,
                max: max_bytes,
            });
        }
        Ok(())
    }
}

impl Drop for GuestInput {
    fn drop(&mut self) {
        // Plaintext-derived: cleared before the allocator sees it again.
        self.args.zeroize();
        for (name, value) in &mut self.env {
            name.zeroize();
            value.zeroize();
        }
    }
}

impl std::fmt::Debug for GuestInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestInput")
            .field("args", &self.args.len())
            .field("env", &self.env.len())
            .field("stdin_bytes", &self.stdin.len())
            .finish()
    }
}

/// The WASI context both kinds of guest get: argv (with [`ARGV0`]), env and stdin
/// from the request, stdout and stderr into capped pipes, and no network. Nothing
/// of the host's environment, no preopened directory.
///
/// Our copies of argv and env are zeroized when `input` drops; the WASI context's
/// own copies are freed by Wasmtime without clearing, and so is a JSON request's
/// decoded stdin, while a CBOR request's stdin is a view of the plaintext, wiped
/// with it (see PROTOCOL.md, "What is zeroized").
pub fn context(
    mut input: GuestInput,
    stdout: &CappedOutput,
    stderr: &CappedOutput,
) -> WasiCtxBuilder {
    let mut argv = Zeroizing::new(Vec::with_capacity(input.args.len() + 1));
    argv.push(ARGV0.to_owned());
    argv.append(&mut input.args);
    let mut builder = WasiCtxBuilder::new();
    builder
        .args(&argv)
        .envs(&input.env)
        .stdin(MemoryInputPipe::new(std::mem::take(&mut input.stdin)))
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(args: &[&str], env: &[(&str, &str)]) -> GuestInput {
        GuestInput {
            args: args.iter().map(|arg| arg.to_string()).collect(),
            env: env
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            stdin: bytes::Bytes::new(),
        }
    }

    #[test]
    fn argv_and_env_are_counted_as_the_guest_sees_them() {
        // "ab\0" + "c\0" + "N=v\0": 3 + 2 + 4 bytes.
        let guest = input(&["ab", "c"], &[("N", "v")]);
        assert_eq!(guest.check_size(2, 1, 9), Ok(()));
        assert_eq!(
            guest.check_size(2, 1, 8).unwrap_err().to_string(),
            "`args` and `env` take 9 bytes; this server allows at most 8 \
             (limits.max_args_env_bytes)"
        );
        assert_eq!(
            guest.check_size(1, 1, 9).unwrap_err().to_string(),
            "`args` has 2 entries; this server allows at most 1 (limits.max_args)"
        );
        assert_eq!(
            guest.check_size(2, 0, 9).unwrap_err().to_string(),
            "`env` has 1 entries; this server allows at most 0 (limits.max_env)"
        );
    }
}

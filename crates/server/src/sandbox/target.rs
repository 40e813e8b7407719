//! What runs: a [`RunTarget`], a core module or a component, compiled by a
//! worker, loaded into the server's engine and linked against WASI once, and run
//! by the module for its kind ([`super::core`], [`super::component`]); which
//! kind a binary is ([`TargetKind`], from its header); compiling to, and loading
//! from, Wasmtime's serialized artifacts; the two WASI linkers ([`Linkers`]).
//!
//! The sandbox's only unsafe code is here, in [`load`]: `Module::deserialize` and
//! `Component::deserialize` of what our own compile worker produced. Every other
//! module of the server is denied `unsafe` (crates/server/Cargo.toml).

use std::fmt;
use std::sync::Arc;

use wasmparser::Parser;
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use super::component::{self, ComponentState, LinkedComponent};
use super::core::{self, CoreState, LinkedModule};
use super::fs::MountSpec;
use super::limits::GuestLimits;
use super::run::{Entry, RunReport};
use super::wasi::GuestInput;

/// A compiled guest, linked against WASI once: what the cache holds and a run
/// takes. Like `wasmtime run`'s own `RunTarget`, one value for either kind.
pub enum RunTarget {
    /// A core module: WASI preview1, `_start`.
    Core(LinkedModule),
    /// A component: WASI preview2, `wasi:cli/run`.
    Component(LinkedComponent),
}

impl RunTarget {
    /// Runs the command or the invoked export to completion or to a limit, in a
    /// fresh store, with `mounts` as its file system.
    pub async fn run(
        &self,
        engine: &Engine,
        entry: Entry,
        input: GuestInput,
        mounts: Vec<MountSpec>,
        limits: GuestLimits,
    ) -> RunReport {
        match self {
            RunTarget::Core(module) => {
                core::run(engine, module, entry, input, mounts, limits).await
            }
            RunTarget::Component(component) => {
                component::run(engine, component, entry, input, mounts, limits).await
            }
        }
    }
}

/// Which kind of guest a binary is, before it is compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Core,
    Component,
}

impl TargetKind {
    /// What a binary's 8-byte header says it is: a core module (`\0asm`, version
    /// 1, layer 0) or a component (`\0asm`, version 0x0d, layer 1); `None` for
    /// anything else.
    pub fn of(bytes: &[u8]) -> Option<TargetKind> {
        if Parser::is_core_wasm(bytes) {
            Some(TargetKind::Core)
        } else if Parser::is_component(bytes) {
            Some(TargetKind::Component)
        } else {
            None
        }
    }

    /// The word for it, in a compile worker's command line and in error texts.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Core => "module",
            TargetKind::Component => "component",
        }
    }

    /// The kind [`TargetKind::as_str`] names.
    pub fn parse(word: &str) -> Option<TargetKind> {
        match word {
            "module" => Some(TargetKind::Core),
            "component" => Some(TargetKind::Component),
            _ => None,
        }
    }

    /// Compiles `bytes` as this kind and serializes the result: what a compile
    /// worker sends back.
    pub fn compile(self, engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Vec<u8>> {
        match self {
            TargetKind::Core => Module::from_binary(engine, bytes)?.serialize(),
            TargetKind::Component => Component::from_binary(engine, bytes)?.serialize(),
        }
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A worker's artifact did not load into the server's engine (status
/// `invalid_module`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the compiled {kind} does not load: {error:#}")]
pub struct LoadError {
    kind: TargetKind,
    /// Shared: the refusal is cached and cloned to every request for the module.
    error: Arc<wasmtime::Error>,
}

/// The WASI linkers, one per kind, built once.
pub(crate) struct Linkers {
    core: wasmtime::Linker<CoreState>,
    component: wasmtime::component::Linker<ComponentState>,
}

impl Linkers {
    pub(crate) fn new(engine: &Engine) -> wasmtime::Result<Linkers> {
        Ok(Linkers {
            core: core::linker(engine)?,
            component: component::linker(engine)?,
        })
    }
}

/// Loads a worker's artifact of `kind` and links it; returns the target and the
/// bytes to charge the cache for it.
// The one place the server allows unsafe code (its manifest denies it).
#[allow(unsafe_code)]
pub(crate) fn load(
    engine: &Engine,
    linkers: &Linkers,
    kind: TargetKind,
    artifact: &[u8],
) -> Result<(RunTarget, usize), LoadError> {
    let refused = |error| LoadError {
        kind,
        error: Arc::new(error),
    };
    match kind {
        TargetKind::Core => {
            // SAFETY: `Module::deserialize` trusts its input to be Wasmtime's own
            // output. It is: the bytes come over a private pipe from our compile
            // worker, the same binary and engine configuration
            // (`super::engine::worker`), which serialized what Cranelift compiled;
            // Wasmtime still checks the version and configuration header. Compiled
            // in this process, the same code would be just as trusted.
            let module = unsafe { Module::deserialize(engine, artifact) }.map_err(refused)?;
            let size = image_size(module.image_range());
            Ok((RunTarget::Core(core::link(&linkers.core, module)), size))
        }
        TargetKind::Component => {
            // SAFETY: as for a core module above: the artifact is our own compile
            // worker's output, from the same binary and engine configuration.
            let component = unsafe { Component::deserialize(engine, artifact) }.map_err(refused)?;
            let size = image_size(component.image_range());
            Ok((
                RunTarget::Component(component::link(&linkers.component, component)),
                size,
            ))
        }
    }
}

/// Bytes of compiled code and data behind an artifact, for the cache's budget.
fn image_size(image: std::ops::Range<*const u8>) -> usize {
    image.end.addr().saturating_sub(image.start.addr())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaries_are_told_apart_by_their_header() {
        assert_eq!(
            TargetKind::of(b"\0asm\x01\0\0\0rest"),
            Some(TargetKind::Core)
        );
        assert_eq!(
            TargetKind::of(b"\0asm\x0d\0\x01\0"),
            Some(TargetKind::Component)
        );
        assert_eq!(TargetKind::of(b"\0asm\x0e\0\x01\0"), None);
        assert_eq!(TargetKind::of(b"\0asm"), None);
        assert_eq!(TargetKind::of(b"(module)"), None);
    }

    #[test]
    fn kinds_name_themselves_for_the_worker() {
        for kind in [TargetKind::Core, TargetKind::Component] {
            assert_eq!(TargetKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(TargetKind::parse("other"), None);
    }
}

//! Components: WASI preview2 linking (with `wasi:filesystem` replaced by the
//! execution's in-memory mounts, [`super::fs::p2`]), commands (`wasi:cli/run`)
//! and `invoke` of any exported function, with arguments and results in WAVE
//! checked against the export's component type.

use std::hash::RandomState;
use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{
    Component, ComponentExportIndex, InstancePre, Linker, ResourceTable, Type, Val,
};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::fs::p2::{MAX_TABLE_ENTRIES, MemFs, MemFsView};
use super::fs::{MountSpec, Mounts};
use super::invoke::{self, InvokeError};
use super::limits::{GuestLimiter, GuestLimits};
use super::run::{Entry, GuestOutcome, GuestState, Run, RunError, RunReport};
use super::wasi::GuestInput;

/// Per-store data of a component: its WASI preview2 context, resource table,
/// file system and the limiter.
pub(crate) struct ComponentState {
    ctx: WasiCtx,
    table: ResourceTable,
    mounts: Mounts,
    hasher: RandomState,
    limiter: GuestLimiter,
}

impl ComponentState {
    fn fs(&mut self) -> MemFsView<'_> {
        MemFsView {
            table: &mut self.table,
            mounts: &mut self.mounts,
            hasher: &self.hasher,
        }
    }
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

impl GuestState for ComponentState {
    fn limiter(&mut self) -> &mut GuestLimiter {
        &mut self.limiter
    }

    fn mounts(&self) -> Option<&Mounts> {
        Some(&self.mounts)
    }
}

/// A compiled component and its link against WASI (or why it does not link).
pub struct LinkedComponent {
    component: Component,
    linked: Result<InstancePre<ComponentState>, Arc<wasmtime::Error>>,
    /// `wasi:cli/run`'s export found once, at link time, not per run (`None`:
    /// the component does not export it, or does not link).
    command: Option<CommandPre<ComponentState>>,
}

/// The WASI preview2 linker, built once.
pub(super) fn linker(engine: &Engine) -> wasmtime::Result<Linker<ComponentState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    // Replace wasi:filesystem (cap-std directories of the host) with the
    // execution's in-memory mounts; every other interface stays wasmtime-wasi's.
    // Shadowing, rather than listing the other interfaces ourselves, keeps this
    // right when wasmtime-wasi adds one.
    linker.allow_shadowing(true);
    wasmtime_wasi::p2::bindings::filesystem::types::add_to_linker::<ComponentState, MemFs>(
        &mut linker,
        ComponentState::fs,
    )?;
    wasmtime_wasi::p2::bindings::filesystem::preopens::add_to_linker::<ComponentState, MemFs>(
        &mut linker,
        ComponentState::fs,
    )?;
    linker.allow_shadowing(false);
    Ok(linker)
}

/// Links `component` against WASI, once; a component that does not link is
/// kept with the reason, which every run of it reports.
pub(super) fn link(linker: &Linker<ComponentState>, component: Component) -> LinkedComponent {
    let linked = linker.instantiate_pre(&component).map_err(Arc::new);
    let command = linked
        .as_ref()
        .ok()
        .and_then(|pre| CommandPre::new(pre.clone()).ok());
    LinkedComponent {
        component,
        linked,
        command,
    }
}

/// Runs `wasi:cli/run`, or the invoked export, under `limits`, with `mounts`.
pub(super) async fn run(
    engine: &Engine,
    target: &LinkedComponent,
    entry: Entry,
    input: GuestInput,
    mounts: Vec<MountSpec>,
    limits: GuestLimits,
) -> RunReport {
    let (mounts, refused) = match Mounts::new(mounts, limits.files_bytes, limits.max_mount_entries)
    {
        Ok(mounts) => (mounts, None),
        Err(error) => (Mounts::none(), Some(error)),
    };
    let mut table = ResourceTable::new();
    table.set_max_capacity(MAX_TABLE_ENTRIES);
    let run = Run::new(engine, input, limits, |mut wasi, limiter| ComponentState {
        ctx: wasi.build(),
        table,
        mounts,
        hasher: RandomState::new(),
        limiter,
    });
    if let Some(error) = refused {
        return run.fail(error.into());
    }
    let pre = match &target.linked {
        Ok(pre) => pre,
        Err(error) => return run.fail(RunError::Unlinkable(error.clone())),
    };
    match entry {
        Entry::Command => match &target.command {
            Some(command) => run_command(run, command).await,
            None => run.fail(RunError::NoCliRun),
        },
        Entry::Invoke(expression) => match Call::check(engine, &target.component, &expression) {
            Ok(call) => run_invoke(run, pre, call).await,
            Err(error) => run.fail(error.into()),
        },
    }
}

/// Runs `wasi:cli/run` to its end, or to the deadline.
async fn run_command(
    mut run: Run<ComponentState>,
    command: &CommandPre<ComponentState>,
) -> RunReport {
    let timeout = run.timeout();
    let store = &mut run.store;
    let result = tokio::time::timeout(timeout, async {
        let command = command.instantiate_async(&mut *store).await?;
        command.wasi_cli_run().call_run(&mut *store).await
    })
    .await;
    // `run` returning `err` is a failed command, which `wasmtime run`
    // reports as exit code 1.
    let outcome = match run.outcome(result) {
        Ok(Ok(())) => GuestOutcome::Exited(0),
        Ok(Err(())) => GuestOutcome::Exited(1),
        Err(outcome) => outcome,
    };
    run.finish(outcome)
}

/// Calls the checked export `call` of a fresh instance of `pre`.
async fn run_invoke(
    mut run: Run<ComponentState>,
    pre: &InstancePre<ComponentState>,
    call: Call,
) -> RunReport {
    let timeout = run.timeout();
    let store = &mut run.store;
    let result = tokio::time::timeout(timeout, async {
        let instance = pre.instantiate_async(&mut *store).await?;
        let func = instance
            .get_func(&mut *store, call.export)
            .expect("checked against the component's exports");
        let mut results = vec![Val::Bool(false); call.results];
        func.call_async(&mut *store, &call.params, &mut results)
            .await?;
        Ok(results)
    })
    .await;
    run.finish_invoke(result)
}

/// An invocation checked against the component's type: the export exists, and the
/// arguments parse as its parameter types.
struct Call {
    export: ComponentExportIndex,
    params: Vec<Val>,
    results: usize,
}

impl Call {
    fn check(
        engine: &Engine,
        component: &Component,
        expression: &str,
    ) -> Result<Call, InvokeError> {
        let (name, call) = invoke::parse_call(expression)?;
        let (export, ty) = find_function(engine, component, &name)?;
        let types: Vec<Type> = ty.params().map(|(_, ty)| ty).collect();
        let params = match call.to_wasm_params::<Val>(&types) {
            Ok(params) => params,
            Err(error) => {
                let params = ty.params().map(|(name, _)| name.to_owned()).collect();
                return Err(InvokeError::ComponentArguments {
                    name,
                    params,
                    error,
                });
            }
        };
        Ok(Call {
            export,
            params,
            results: ty.results().len(),
        })
    }
}

/// Finds an exported function by name: a top-level export (`greet`), a function of
/// an exported interface named in full (`example:app/api#greet`), or else the only
/// function with that name in any exported interface.
fn find_function(
    engine: &Engine,
    component: &Component,
    name: &str,
) -> Result<(ComponentExportIndex, ComponentFunc), InvokeError> {
    if let Some((interface, function)) = name.rsplit_once('#') {
        return find_in_interface(engine, component, interface, function);
    }
    match component
        .component_type()
        .get_export(engine, name)
        .map(|e| e.ty)
    {
        Some(ComponentItem::ComponentFunc(func)) => {
            let index = component
                .get_export_index(None, name)
                .expect("the type lists it");
            Ok((index, func))
        }
        Some(_) => Err(InvokeError::NotAFunction {
            name: name.to_owned(),
        }),
        None => find_in_any_interface(engine, component, name),
    }
}

/// The function `function` of the exported interface named in full `interface`.
fn find_in_interface(
    engine: &Engine,
    component: &Component,
    interface: &str,
    function: &str,
) -> Result<(ComponentExportIndex, ComponentFunc), InvokeError> {
    let Some(ComponentItem::ComponentInstance(instance)) = component
        .component_type()
        .get_export(engine, interface)
        .map(|e| e.ty)
    else {
        return Err(InvokeError::NoInterface {
            interface: interface.to_owned(),
        });
    };
    let Some(ComponentItem::ComponentFunc(func)) =
        instance.get_export(engine, function).map(|e| e.ty)
    else {
        return Err(InvokeError::NoInterfaceFunction {
            interface: interface.to_owned(),
            function: function.to_owned(),
        });
    };
    Ok((interface_export(component, interface, function), func))
}

/// The only function named `name` in any exported interface.
fn find_in_any_interface(
    engine: &Engine,
    component: &Component,
    name: &str,
) -> Result<(ComponentExportIndex, ComponentFunc), InvokeError> {
    let mut found = Vec::new();
    for (interface, item) in component.component_type().exports(engine) {
        if let ComponentItem::ComponentInstance(instance) = item.ty
            && let Some(ComponentItem::ComponentFunc(func)) =
                instance.get_export(engine, name).map(|e| e.ty)
        {
            found.push((interface.to_owned(), func));
        }
    }
    match found.len() {
        0 => Err(InvokeError::NoComponentFunction {
            name: name.to_owned(),
        }),
        1 => {
            let (interface, func) = found.pop().expect("one");
            Ok((interface_export(component, &interface, name), func))
        }
        _ => Err(InvokeError::Ambiguous {
            name: name.to_owned(),
            candidates: found
                .iter()
                .map(|(interface, _)| format!("{interface}#{name}"))
                .collect(),
        }),
    }
}

/// The export index of `function` in the exported interface `interface`, both
/// found in the component's type.
fn interface_export(
    component: &Component,
    interface: &str,
    function: &str,
) -> ComponentExportIndex {
    let parent = component
        .get_export_index(None, interface)
        .expect("the type lists it");
    component
        .get_export_index(Some(&parent), function)
        .expect("the type lists it")
}

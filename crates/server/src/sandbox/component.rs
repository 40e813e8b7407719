//! Components: WASI preview2 commands (`wasi:cli/run`) and `invoke` of any exported
//! function, with arguments and results in WAVE checked against the export's
//! component type.

use wasmtime::Engine;
use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{
    Component, ComponentExportIndex, InstancePre, Linker, ResourceTable, Type, Val,
};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::output::CappedOutput;
use super::{
    Entry, Guest, GuestInput, GuestLimiter, GuestLimits, GuestOutcome, Run, RunReport, image_size,
    wasi_context, wave,
};

/// Per-store data of a component: its WASI preview2 context, resource table and
/// the limiter.
pub struct ComponentState {
    ctx: WasiCtx,
    table: ResourceTable,
    limiter: GuestLimiter,
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

impl Guest for ComponentState {
    fn limiter(&mut self) -> &mut GuestLimiter {
        &mut self.limiter
    }
}

/// A compiled component and its link against WASI (or why it does not link).
pub struct PreparedComponent {
    component: Component,
    linked: Result<InstancePre<ComponentState>, String>,
}

/// The WASI preview2 linker, built once.
pub(super) fn linker(engine: &Engine) -> wasmtime::Result<Linker<ComponentState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    Ok(linker)
}

/// Loads a worker's compiled artifact and links it; returns the prepared
/// component and the bytes to charge.
pub(super) fn load(
    engine: &Engine,
    linker: &Linker<ComponentState>,
    artifact: &[u8],
) -> Result<(PreparedComponent, usize), String> {
    // SAFETY: as for core modules (`super::core::load`): the artifact is our own
    // compile worker's output, from the same binary and engine configuration.
    let component = unsafe { Component::deserialize(engine, artifact) }
        .map_err(|error| format!("the compiled component does not load: {error:#}"))?;
    let size = image_size(component.image_range());
    let linked = linker
        .instantiate_pre(&component)
        .map_err(|error| format!("{error:#}"));
    Ok((PreparedComponent { component, linked }, size))
}

/// Runs `wasi:cli/run`, or the invoked export, under `limits`.
pub(super) async fn run(
    engine: &Engine,
    prepared: &PreparedComponent,
    entry: Entry,
    input: GuestInput,
    limits: GuestLimits,
) -> RunReport {
    let stdout = CappedOutput::new(limits.max_output_bytes);
    let stderr = CappedOutput::new(limits.max_output_bytes);
    let ctx = wasi_context(input, &stdout, &stderr).build();
    let state = ComponentState {
        ctx,
        table: ResourceTable::new(),
        limiter: GuestLimiter::new(limits.memory_bytes),
    };
    let mut run = Run::new(engine, state, limits, stdout, stderr);
    let pre = match &prepared.linked {
        Ok(pre) => pre.clone(),
        Err(message) => return run.report(GuestOutcome::InvalidModule(message.clone()), vec![]),
    };
    match entry {
        Entry::Command => {
            let command = match CommandPre::new(pre) {
                Ok(command) => command,
                Err(_) => {
                    let why = "the component does not export `wasi:cli/run` (not a WASI \
                               command); name an export with `invoke` to call it";
                    return run.report(GuestOutcome::InvalidModule(why.to_owned()), vec![]);
                }
            };
            let store = &mut run.store;
            let result = tokio::time::timeout(limits.timeout, async {
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
            run.report(outcome, vec![])
        }
        Entry::Invoke(expression) => {
            let call = match Call::check(engine, &prepared.component, &expression) {
                Ok(call) => call,
                Err(why) => return run.report(GuestOutcome::BadInvoke(why), vec![]),
            };
            let store = &mut run.store;
            let result = tokio::time::timeout(limits.timeout, async {
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
            run.report_invoke(result, wave)
        }
    }
}

/// An invocation checked against the component's type: the export exists, and the
/// arguments parse as its parameter types.
struct Call {
    export: ComponentExportIndex,
    params: Vec<Val>,
    results: usize,
}

impl Call {
    fn check(engine: &Engine, component: &Component, expression: &str) -> Result<Call, String> {
        let (name, call) = super::parse_call(expression)?;
        let name = name.as_str();
        let (export, ty) = find_function(engine, component, name)?;
        let types: Vec<Type> = ty.params().map(|(_, ty)| ty).collect();
        let params = call.to_wasm_params::<Val>(&types).map_err(|error| {
            let names: Vec<&str> = ty.params().map(|(name, _)| name).collect();
            format!(
                "the arguments do not fit `{name}({})`: {error}",
                names.join(", ")
            )
        })?;
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
) -> Result<(ComponentExportIndex, ComponentFunc), String> {
    let ty = component.component_type();
    if let Some((interface, function)) = name.rsplit_once('#') {
        let Some(ComponentItem::ComponentInstance(instance)) =
            ty.get_export(engine, interface).map(|e| e.ty)
        else {
            return Err(format!("the component exports no interface `{interface}`"));
        };
        let Some(ComponentItem::ComponentFunc(func)) =
            instance.get_export(engine, function).map(|e| e.ty)
        else {
            return Err(format!("`{interface}` has no function `{function}`"));
        };
        let parent = component
            .get_export_index(None, interface)
            .expect("the type lists it");
        let index = component
            .get_export_index(Some(&parent), function)
            .expect("the type lists it");
        return Ok((index, func));
    }
    match ty.get_export(engine, name).map(|e| e.ty) {
        Some(ComponentItem::ComponentFunc(func)) => {
            let index = component
                .get_export_index(None, name)
                .expect("the type lists it");
            return Ok((index, func));
        }
        Some(_) => return Err(format!("the export `{name}` is not a function")),
        None => {}
    }
    let mut found = Vec::new();
    for (interface, item) in ty.exports(engine) {
        if let ComponentItem::ComponentInstance(instance) = item.ty
            && let Some(ComponentItem::ComponentFunc(func)) =
                instance.get_export(engine, name).map(|e| e.ty)
        {
            found.push((interface.to_owned(), func));
        }
    }
    match found.len() {
        0 => Err(format!("the component exports no function named `{name}`")),
        1 => {
            let (interface, func) = found.pop().expect("one");
            let parent = component
                .get_export_index(None, interface.as_str())
                .expect("the type lists it");
            let index = component
                .get_export_index(Some(&parent), name)
                .expect("the type lists it");
            Ok((index, func))
        }
        _ => {
            let names: Vec<String> = found
                .iter()
                .map(|(interface, _)| format!("{interface}#{name}"))
                .collect();
            Err(format!(
                "`{name}` is exported by several interfaces; name one of: {}",
                names.join(", ")
            ))
        }
    }
}

//! Core modules: WASI preview1 commands (`_start`) and `invoke` of a numeric export.

use wasmtime::{Engine, ExternType, InstancePre, Linker, Module, Val, ValType};
use wasmtime_wasi::p1::WasiP1Ctx;

use super::output::CappedOutput;
use super::{
    Entry, Guest, GuestInput, GuestLimiter, GuestLimits, GuestOutcome, Run, RunReport,
    check_resources, image_size, wasi_context, wave,
};

/// Per-store data of a core module: its WASI preview1 context and the limiter.
pub struct CoreState {
    wasi: WasiP1Ctx,
    limiter: GuestLimiter,
}

impl Guest for CoreState {
    fn limiter(&mut self) -> &mut GuestLimiter {
        &mut self.limiter
    }
}

/// A compiled module and its link against WASI (or why it does not link).
pub struct PreparedModule {
    module: Module,
    linked: Result<InstancePre<CoreState>, String>,
}

/// The WASI preview1 linker, built once.
pub(super) fn linker(engine: &Engine) -> wasmtime::Result<Linker<CoreState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |state: &mut CoreState| &mut state.wasi)?;
    Ok(linker)
}

/// Loads a worker's compiled artifact and links it; returns the prepared module and
/// the bytes to charge for it.
pub(super) fn load(
    engine: &Engine,
    linker: &Linker<CoreState>,
    artifact: &[u8],
) -> Result<(PreparedModule, usize), String> {
    // SAFETY: `Module::deserialize` trusts its input to be Wasmtime's own output.
    // It is: the bytes come over a private pipe from our compile worker, the same
    // binary and engine configuration (`super::engine_config`), which serialized
    // what Cranelift compiled; Wasmtime still checks the version and configuration
    // header. Compiled in this process, the same code would be just as trusted.
    let module = unsafe { Module::deserialize(engine, artifact) }
        .map_err(|error| format!("the compiled module does not load: {error:#}"))?;
    let size = image_size(module.image_range());
    let linked = linker
        .instantiate_pre(&module)
        .map_err(|error| format!("{error:#}"));
    Ok((PreparedModule { module, linked }, size))
}

/// Runs `_start`, or the invoked export, under `limits`.
pub(super) async fn run(
    engine: &Engine,
    prepared: &PreparedModule,
    entry: Entry,
    input: GuestInput,
    limits: GuestLimits,
) -> RunReport {
    let stdout = CappedOutput::new(limits.max_output_bytes);
    let stderr = CappedOutput::new(limits.max_output_bytes);
    let wasi = wasi_context(input, &stdout, &stderr).build_p1();
    let state = CoreState {
        wasi,
        limiter: GuestLimiter::new(limits.memory_bytes),
    };
    let mut run = Run::new(engine, state, limits, stdout, stderr);

    let pre = match &prepared.linked {
        Ok(pre) => pre.clone(),
        Err(message) => return run.report(GuestOutcome::InvalidModule(message.clone()), vec![]),
    };
    if let Err(outcome) = check_resources(prepared.module.resources_required(), limits.memory_bytes)
    {
        return run.report(outcome, vec![]);
    }
    match entry {
        Entry::Command => {
            match prepared.module.get_export("_start") {
                Some(ExternType::Func(func))
                    if func.params().len() == 0 && func.results().len() == 0 => {}
                Some(_) => {
                    let why = "`_start` is not a function of type [] -> []";
                    return run.report(GuestOutcome::InvalidModule(why.to_owned()), vec![]);
                }
                None => {
                    let why = "module does not export a `_start` function (not a WASI \
                               command); name an export with `invoke` to call it";
                    return run.report(GuestOutcome::InvalidModule(why.to_owned()), vec![]);
                }
            }
            let store = &mut run.store;
            let result = tokio::time::timeout(limits.timeout, async {
                let instance = pre.instantiate_async(&mut *store).await?;
                let start = instance.get_typed_func::<(), ()>(&mut *store, "_start")?;
                start.call_async(&mut *store, ()).await
            })
            .await;
            let outcome = match run.outcome(result) {
                Ok(()) => GuestOutcome::Exited(0),
                Err(outcome) => outcome,
            };
            run.report(outcome, vec![])
        }
        Entry::Invoke(expression) => {
            let call = match Call::check(&prepared.module, &expression) {
                Ok(call) => call,
                Err(why) => return run.report(GuestOutcome::BadInvoke(why), vec![]),
            };
            let store = &mut run.store;
            let result = tokio::time::timeout(limits.timeout, async {
                let instance = pre.instantiate_async(&mut *store).await?;
                let func = instance
                    .get_func(&mut *store, &call.name)
                    .expect("checked against the module's exports");
                let mut results = vec![Val::I32(0); call.results];
                func.call_async(&mut *store, &call.params, &mut results)
                    .await?;
                Ok(results)
            })
            .await;
            run.report_invoke(result, wave)
        }
    }
}

/// An invocation checked against the module: the export exists, is a function of
/// numeric types, and the arguments parse as those types.
struct Call {
    name: String,
    params: Vec<Val>,
    results: usize,
}

impl Call {
    fn check(module: &Module, expression: &str) -> Result<Call, String> {
        let (name, call) = super::parse_call(expression)?;
        let func = match module.get_export(&name) {
            Some(ExternType::Func(func)) => func,
            Some(_) => return Err(format!("the export `{name}` is not a function")),
            None => return Err(format!("the module has no export named `{name}`")),
        };
        let numeric = |ty: &ValType| {
            matches!(
                ty,
                ValType::I32 | ValType::I64 | ValType::F32 | ValType::F64
            )
        };
        if !func.params().all(|ty| numeric(&ty)) || !func.results().all(|ty| numeric(&ty)) {
            return Err(format!(
                "`{name}` takes or returns a type other than i32, i64, f32 and f64, which \
                 `invoke` cannot pass to a core module"
            ));
        }
        let types: Vec<ValType> = func.params().collect();
        let params = call.to_wasm_params::<Val>(&types).map_err(|error| {
            format!("the arguments do not fit `{name}`'s parameters {types:?}: {error}")
        })?;
        Ok(Call {
            name,
            params,
            results: func.results().len(),
        })
    }
}

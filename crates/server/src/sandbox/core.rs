//! Core modules: WASI preview1 linking, the check of a module's declared
//! memories and tables before it is instantiated, commands (`_start`) and
//! `invoke` of an export with numeric parameters and results.

use std::sync::Arc;

use wasmtime::{Engine, ExternType, InstancePre, Linker, Module, ResourcesRequired, Val, ValType};

use super::fs::p1::P1;
use super::fs::{MountSpec, Mounts};

use super::engine::{MAX_MEMORIES, MAX_TABLE_ELEMENTS, MAX_TABLES};
use super::invoke::{self, InvokeError};
use super::limits::{GuestLimiter, GuestLimits, LimitHit, WASM_PAGE};
use super::run::{Entry, GuestOutcome, GuestState, Run, RunError, RunReport};
use super::wasi::GuestInput;

/// Per-store data of a core module: its WASI preview1 context (with the
/// execution's mounts) and the limiter.
pub(crate) struct CoreState {
    wasi: P1,
    limiter: GuestLimiter,
}

impl GuestState for CoreState {
    fn limiter(&mut self) -> &mut GuestLimiter {
        &mut self.limiter
    }

    fn mounts(&self) -> Option<&Mounts> {
        Some(self.wasi.mounts())
    }
}

/// A compiled module and its link against WASI (or why it does not link).
pub struct LinkedModule {
    module: Module,
    linked: Result<InstancePre<CoreState>, Arc<wasmtime::Error>>,
}

/// The WASI preview1 linker, built once.
pub(super) fn linker(engine: &Engine) -> wasmtime::Result<Linker<CoreState>> {
    let mut linker = Linker::new(engine);
    // wasmtime-wasi's preview1 functions over our `P1`, which answers file calls
    // from the mounts and hands every other call to wasmtime-wasi's own context
    // (`wasmtime_wasi::p1::add_to_linker_async` is this call with `WasiP1Ctx`).
    wasmtime_wasi::p1::wasi_snapshot_preview1::add_to_linker(
        &mut linker,
        |state: &mut CoreState| &mut state.wasi,
    )?;
    Ok(linker)
}

/// Links `module` against WASI, once; a module that does not link is kept with
/// the reason, which every run of it reports.
pub(super) fn link(linker: &Linker<CoreState>, module: Module) -> LinkedModule {
    let linked = linker.instantiate_pre(&module).map_err(Arc::new);
    LinkedModule { module, linked }
}

/// Runs `_start`, or the invoked export, under `limits`, with `mounts`.
pub(super) async fn run(
    engine: &Engine,
    target: &LinkedModule,
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
    let run = Run::new(engine, input, limits, |mut wasi, limiter| CoreState {
        wasi: P1::new(wasi.build_p1(), mounts),
        limiter,
    });
    if let Some(error) = refused {
        return run.fail(error.into());
    }
    let pre = match &target.linked {
        Ok(pre) => pre.clone(),
        Err(error) => return run.fail(RunError::Unlinkable(error.clone())),
    };
    if let Err(error) = check_resources(target.module.resources_required(), limits.memory_bytes) {
        return run.fail(error);
    }
    match entry {
        Entry::Command => match target.module.get_export("_start") {
            Some(ExternType::Func(func))
                if func.params().len() == 0 && func.results().len() == 0 =>
            {
                run_start(run, &pre).await
            }
            Some(_) => run.fail(RunError::StartNotCommand),
            None => run.fail(RunError::NoStart),
        },
        Entry::Invoke(expression) => match Call::check(&target.module, &expression) {
            Ok(call) => run_invoke(run, &pre, call).await,
            Err(error) => run.fail(error.into()),
        },
    }
}

/// Runs `_start` of a fresh instance of `pre` to its end, or to the deadline.
async fn run_start(mut run: Run<CoreState>, pre: &InstancePre<CoreState>) -> RunReport {
    let timeout = run.timeout();
    let store = &mut run.store;
    let result = tokio::time::timeout(timeout, async {
        let instance = pre.instantiate_async(&mut *store).await?;
        let start = instance.get_typed_func::<(), ()>(&mut *store, "_start")?;
        start.call_async(&mut *store, ()).await
    })
    .await;
    let outcome = match run.outcome(result) {
        Ok(()) => GuestOutcome::Exited(0),
        Err(outcome) => outcome,
    };
    run.finish(outcome)
}

/// Calls the checked export `call` of a fresh instance of `pre`.
async fn run_invoke(
    mut run: Run<CoreState>,
    pre: &InstancePre<CoreState>,
    call: Call,
) -> RunReport {
    let timeout = run.timeout();
    let store = &mut run.store;
    let result = tokio::time::timeout(timeout, async {
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
    run.finish_invoke(result)
}

/// Checks a core module's declared needs before instantiating it, so that the
/// pool's own refusals never surface as generic errors.
fn check_resources(needs: ResourcesRequired, memory_bytes: u64) -> Result<(), RunError> {
    if needs.num_memories as usize > MAX_MEMORIES {
        return Err(RunError::TooManyMemories {
            defined: needs.num_memories,
        });
    }
    if needs.num_tables as usize > MAX_TABLES {
        return Err(RunError::TooManyTables {
            defined: needs.num_tables,
        });
    }
    let initial_memory = needs
        .max_initial_memory_size
        .unwrap_or(0)
        .saturating_mul(WASM_PAGE);
    if initial_memory > memory_bytes {
        return Err(RunError::MemoryLimit(LimitHit::Memory {
            desired: initial_memory,
            limit: memory_bytes,
        }));
    }
    let initial_table = needs.max_initial_table_size.unwrap_or(0);
    if initial_table > MAX_TABLE_ELEMENTS as u64 {
        return Err(RunError::MemoryLimit(LimitHit::Table {
            desired: initial_table,
        }));
    }
    Ok(())
}

/// An invocation checked against the module: the export exists, is a function of
/// numeric types, and the arguments parse as those types.
struct Call {
    name: String,
    params: Vec<Val>,
    results: usize,
}

impl Call {
    fn check(module: &Module, expression: &str) -> Result<Call, InvokeError> {
        let (name, call) = invoke::parse_call(expression)?;
        let func = match module.get_export(&name) {
            Some(ExternType::Func(func)) => func,
            Some(_) => return Err(InvokeError::NotAFunction { name }),
            None => return Err(InvokeError::NoModuleExport { name }),
        };
        let numeric = |ty: &ValType| {
            matches!(
                ty,
                ValType::I32 | ValType::I64 | ValType::F32 | ValType::F64
            )
        };
        if !func.params().all(|ty| numeric(&ty)) || !func.results().all(|ty| numeric(&ty)) {
            return Err(InvokeError::NotNumeric { name });
        }
        let types: Vec<ValType> = func.params().collect();
        let params = match call.to_wasm_params::<Val>(&types) {
            Ok(params) => params,
            Err(error) => {
                return Err(InvokeError::ModuleArguments { name, types, error });
            }
        };
        Ok(Call {
            name,
            params,
            results: func.results().len(),
        })
    }
}

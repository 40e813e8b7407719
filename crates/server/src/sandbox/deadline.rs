//! The wall clock: the epoch ticker that advances the engine's epoch, and the
//! per-store callback that ends a guest past its deadline and otherwise makes it
//! yield at every tick. The other half of the deadline, a `tokio::time::timeout`
//! around the run for guests parked in a host call, is in [`super::run`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::{Engine, Store, UpdateDeadline};

/// How often the engine's epoch advances. It is the granularity of the wall-clock
/// timeout and of the points where a running guest yields to other tasks: 10 ms
/// keeps both tight while costing one atomic increment per tick.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Raised from the epoch callback when the wall-clock deadline has passed.
#[derive(Debug, thiserror::Error)]
#[error("wall-clock timeout")]
pub(crate) struct DeadlineReached;

/// Ends the store's guest with [`DeadlineReached`] at the first tick past
/// `deadline`, and makes it yield to the guest runtime at every tick before, so
/// that one guest cannot hold a worker thread.
pub(crate) fn arm<T>(store: &mut Store<T>, deadline: Instant) {
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Err(wasmtime::Error::from(DeadlineReached))
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store.set_epoch_deadline(1);
}

/// Advances the engines' epochs every [`EPOCH_TICK`] on its own thread; stops
/// when dropped.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts the `epoch-ticker` thread for `engines`, or says why the OS would
    /// not.
    pub(crate) fn start(engines: Vec<Engine>) -> std::io::Result<EpochTicker> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    for engine in &engines {
                        engine.increment_epoch();
                    }
                }
            })?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

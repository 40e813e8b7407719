//! `run`'s progress on a terminal: one line on stderr, redrawn in place with
//! `\r` at most every [`REDRAW_EVERY`], saying how much of a large request was
//! uploaded and, while `run --async` waits, where the job is (its phase:
//! queued, compiling, running; its state from a server that predates phases). Nothing at all
//! unless stderr is a terminal: pipes, CI logs and tests' captured output get
//! exactly the lines they always did.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use wasm_hypervisor_client::RunProgress;
use wasm_hypervisor_protocol::wire::PendingState;

/// The shortest time between two redraws.
pub(crate) const REDRAW_EVERY: Duration = Duration::from_millis(100);

/// Uploads smaller than this are not shown: they are over before a line helps.
pub(crate) const UPLOAD_SHOWN_FROM: u64 = 1 << 20;

/// The progress line; clones draw the same line. Inert off a terminal.
#[derive(Clone)]
pub(crate) struct ProgressLine {
    state: Option<Arc<Mutex<LineState>>>,
}

/// What is on the terminal.
struct LineState {
    /// When the line was last drawn.
    drawn_at: Option<Instant>,
    /// Whether a line is on screen now (to be erased before other output).
    visible: bool,
    /// When the job was first reported pending, for its waiting time.
    pending_since: Option<Instant>,
}

impl ProgressLine {
    /// A line on stderr if it is a terminal, else one that never draws.
    pub(crate) fn on_stderr() -> ProgressLine {
        let state = std::io::stderr().is_terminal().then(|| {
            Arc::new(Mutex::new(LineState {
                drawn_at: None,
                visible: false,
                pending_since: None,
            }))
        });
        ProgressLine { state }
    }

    /// Draws `event`, unless the last redraw was too recent (the end of an
    /// upload is always drawn).
    pub(crate) fn show(&self, event: &RunProgress) {
        let Some(state) = &self.state else { return };
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if matches!(event, RunProgress::Pending { .. }) {
            state.pending_since.get_or_insert(now);
        }
        let waited = state
            .pending_since
            .map_or(Duration::ZERO, |since| now - since);
        let Some(text) = describe(event, waited) else {
            return;
        };
        let last = matches!(event, RunProgress::Upload { sent, total } if sent == total);
        if !last && state.drawn_at.is_some_and(|at| now - at < REDRAW_EVERY) {
            return;
        }
        // A progress line that cannot be written is no reason to stop the run.
        let _ = write!(std::io::stderr(), "\r{text}\x1b[K");
        state.drawn_at = Some(now);
        state.visible = true;
    }

    /// Erases the line, before other output or at the end.
    pub(crate) fn clear(&self) {
        let Some(state) = &self.state else { return };
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.visible {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
            state.visible = false;
            state.drawn_at = None;
        }
    }
}

/// The line for `event`, if it has one: a job pending for `waited`.
fn describe(event: &RunProgress, waited: Duration) -> Option<String> {
    match event {
        RunProgress::Upload { sent, total } if *total >= UPLOAD_SHOWN_FROM => Some(format!(
            "wasm-hypervisor: uploading {} of {} ({}%)",
            mebibytes(*sent),
            mebibytes(*total),
            sent * 100 / total
        )),
        RunProgress::Pending { state, phase } => {
            // The phase says more than the state (`compiling` is part of
            // `running`); a server that does not send it leaves the state.
            let shown = match (phase, state) {
                (Some(phase), _) => phase.as_str(),
                (None, PendingState::Queued) => "queued",
                (None, PendingState::Running) => "running",
            };
            Some(format!("wasm-hypervisor: {shown} ({} s)", waited.as_secs()))
        }
        _ => None,
    }
}

fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_hypervisor_protocol::wire::ExecutionPhase;

    #[test]
    fn a_large_upload_reads_as_its_share() {
        let line = describe(
            &RunProgress::Upload {
                sent: 3 << 20,
                total: 12 << 20,
            },
            Duration::ZERO,
        );
        assert_eq!(
            line.as_deref(),
            Some("wasm-hypervisor: uploading 3.0 MiB of 12.0 MiB (25%)")
        );
    }

    #[test]
    fn a_small_upload_and_the_acceptance_draw_nothing() {
        let small = RunProgress::Upload {
            sent: 0,
            total: UPLOAD_SHOWN_FROM - 1,
        };
        assert_eq!(describe(&small, Duration::ZERO), None);
        let accepted = RunProgress::Accepted {
            execution_id: uuid::Uuid::nil(),
        };
        assert_eq!(describe(&accepted, Duration::ZERO), None);
    }

    #[test]
    fn a_pending_job_reads_as_its_state_and_wait() {
        let pending = RunProgress::Pending {
            state: PendingState::Queued,
            phase: None,
        };
        assert_eq!(
            describe(&pending, Duration::from_millis(2500)).as_deref(),
            Some("wasm-hypervisor: queued (2 s)")
        );
    }

    #[test]
    fn a_pending_job_reads_as_its_phase_when_the_server_says_it() {
        for (phase, line) in [
            (ExecutionPhase::Queued, "wasm-hypervisor: queued (7 s)"),
            (
                ExecutionPhase::Compiling,
                "wasm-hypervisor: compiling (7 s)",
            ),
            (ExecutionPhase::Running, "wasm-hypervisor: running (7 s)"),
        ] {
            let pending = RunProgress::Pending {
                state: PendingState::Running,
                phase: Some(phase),
            };
            assert_eq!(
                describe(&pending, Duration::from_secs(7)).as_deref(),
                Some(line)
            );
        }
    }
}

//! Progress of the long steps (rendering clusters, reading their status, pushing artifacts),
//! for a progress bar on a terminal. The library only reports; the binary decides whether
//! anything is shown (a terminal, text output, no debug logs) and installs a [`Sink`].
//! Without one, a step costs an atomic load.

use std::sync::OnceLock;

/// Where progress goes: the binary's progress bar.
pub trait Sink: Send + Sync {
    /// A step of `total` units begins (one step at a time).
    fn start(&self, what: &str, total: u64);
    fn advance(&self, n: u64);
    fn finish(&self);
}

static SINK: OnceLock<Box<dyn Sink>> = OnceLock::new();

/// Sends progress to `sink` from now on; `false` if one was installed already.
pub fn install(sink: Box<dyn Sink>) -> bool {
    SINK.set(sink).is_ok()
}

/// A step under way: [`Step::advance`] moves it, dropping it ends it.
pub struct Step {
    active: bool,
}

/// Starts a step of `total` units (clusters, artifacts).
pub fn step(what: &str, total: usize) -> Step {
    match SINK.get() {
        Some(sink) if total > 0 => {
            sink.start(what, total as u64);
            Step { active: true }
        }
        _ => Step { active: false },
    }
}

impl Step {
    pub fn advance(&self, n: usize) {
        if self.active
            && let Some(sink) = SINK.get()
        {
            sink.advance(n as u64);
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if self.active
            && let Some(sink) = SINK.get()
        {
            sink.finish();
        }
    }
}

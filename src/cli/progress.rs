//! Progress bars (indicatif) for the library's long steps (`starmap::progress`): on a
//! terminal only, for text output, and only once a step has taken more than a moment, so that
//! pipes, CI logs and `-o json` never see one.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How long a step runs before its bar appears (`STARMAP_PROGRESS_AFTER_MS` overrides).
const SHOW_AFTER: Duration = Duration::from_millis(500);

struct Bars {
    bar: Mutex<Option<(ProgressBar, Instant)>>,
    show_after: Duration,
}

impl starmap::progress::Sink for Bars {
    fn start(&self, what: &str, total: u64) {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        if let Ok(style) = ProgressStyle::with_template("{msg:>18} [{bar:40}] {pos}/{len} {elapsed}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_string());
        *self.lock() = Some((bar, Instant::now()));
    }

    fn advance(&self, n: u64) {
        if let Some((bar, started)) = &*self.lock() {
            bar.inc(n);
            if bar.is_hidden() && started.elapsed() >= self.show_after {
                bar.set_draw_target(ProgressDrawTarget::stderr());
            }
        }
    }

    fn finish(&self) {
        if let Some((bar, _)) = self.lock().take() {
            bar.finish_and_clear();
        }
    }
}

impl Bars {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(ProgressBar, Instant)>> {
        self.bar.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Installs the bars when stderr is a terminal, the output is for people (`text`) and no
/// debug logs interleave with them.
pub fn install_if_interactive(text_output: bool, verbose: u8) {
    if !text_output || verbose > 0 || !std::io::stderr().is_terminal() {
        return;
    }
    let show_after = std::env::var("STARMAP_PROGRESS_AFTER_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(SHOW_AFTER, Duration::from_millis);
    starmap::progress::install(Box::new(Bars {
        bar: Mutex::new(None),
        show_after,
    }));
}

//! A terminal progress bar with ETA for `hami sim run` (indicatif), drawn on stderr.

use super::results::Progress;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Mutex;

/// Progress bar over runs.
#[derive(Debug)]
pub struct Bar {
    bar: Mutex<Option<ProgressBar>>,
}

impl Default for Bar {
    fn default() -> Self {
        Bar {
            bar: Mutex::new(None),
        }
    }
}

impl Bar {
    /// Finish and clear the bar.
    pub fn finish(&self) {
        if let Ok(g) = self.bar.lock()
            && let Some(b) = g.as_ref()
        {
            b.finish_and_clear();
        }
    }
}

impl Progress for Bar {
    fn start(&self, total: usize) {
        let b = ProgressBar::new(total as u64);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} runs, ETA {eta} {msg}",
        ) {
            b.set_style(style);
        }
        if let Ok(mut g) = self.bar.lock() {
            *g = Some(b);
        }
    }
    fn done(&self, what: &str) {
        if let Ok(g) = self.bar.lock()
            && let Some(b) = g.as_ref()
        {
            b.set_message(what.to_string());
            b.inc(1);
        }
    }
}

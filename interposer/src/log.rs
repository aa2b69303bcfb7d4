//! Logging to stderr with HAMi-core's level variable `LIBCUDA_LOG_LEVEL`:
//! 0 errors only, 1 + warnings, 2 + messages (default), 3 + info, 4 + debug.
//! Lines look like `[hami-rs interposer Warn] ...` and are written with one `write(2)` each so
//! lines from several processes do not interleave.

use std::sync::atomic::{AtomicU8, Ordering};

/// Severity of a log line; a line is printed when its level is ≤ the configured level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Always printed.
    Error = 0,
    /// Printed at level ≥ 1.
    Warn = 1,
    /// Printed at level ≥ 2 (the default).
    Msg = 2,
    /// Printed at level ≥ 3.
    Info = 3,
    /// Printed at level 4.
    Debug = 4,
}

static LEVEL: AtomicU8 = AtomicU8::new(2);

/// Sets the level (values above 4 mean 4).
pub fn set_level(l: u8) {
    LEVEL.store(l.min(4), Ordering::Relaxed);
}

/// Whether lines of `l` are printed.
pub fn enabled(l: Level) -> bool {
    (l as u8) <= LEVEL.load(Ordering::Relaxed)
}

/// Prints one line (callers go through the [`crate::log!`] macro, which checks the level first).
pub fn emit(l: Level, args: std::fmt::Arguments<'_>) {
    let tag = match l {
        Level::Error => "Error",
        Level::Warn => "Warn",
        Level::Msg => "Msg",
        Level::Info => "Info",
        Level::Debug => "Debug",
    };
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let line = format!("[hami-rs interposer {tag}] pid {pid}: {args}\n");
    // SAFETY: writing a valid buffer to fd 2; a short or failed write only loses a log line.
    unsafe { libc::write(2, line.as_ptr() as *const libc::c_void, line.len()) };
}

/// `log!(Level::Warn, "format", args...)`.
#[macro_export]
macro_rules! log {
    ($lvl:expr, $($arg:tt)*) => {
        if $crate::log::enabled($lvl) {
            $crate::log::emit($lvl, format_args!($($arg)*))
        }
    };
}

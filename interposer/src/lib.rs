//! `libvgpu.so`: in-container enforcement of GPU memory and compute shares.
//!
//! Loaded with `LD_PRELOAD` (or `/etc/ld.so.preload`), it exports the CUDA driver functions that
//! allocate, free, report memory or launch work, plus `dlsym` and `cuGetProcAddress(_v2)` so that
//! programs resolving the driver at run time get the same functions. Everything it does not limit
//! is not exported and therefore goes straight to the real `libcuda.so.1`.
//!
//! * Memory: per device limits from `CUDA_DEVICE_MEMORY_LIMIT[_i]`, enforced on every allocation
//!   path by an atomic check-and-reserve in a file shared by the container's processes
//!   ([`region`]); reported memory is virtualised.
//! * Compute: `CUDA_DEVICE_SM_LIMIT[_i]` percent, enforced by a token bucket per device on every
//!   launch path, refilled by a feedback controller from NVML's per-process utilisation
//!   ([`compute`]). The launch fast path is a few atomics.
//! * `CUDA_DISABLE_CONTROL=true` or no limits: every hook is a pure pass-through.
//!
//! Safety contract of the exported functions: the CUDA driver API's and NVML's. No panic leaves
//! an exported function: each body runs under `catch_unwind` and a panic becomes
//! `CUDA_ERROR_UNKNOWN`.
#![allow(non_snake_case, clippy::missing_safety_doc, clippy::too_many_arguments)]

pub mod compute;
pub mod config;
pub mod dlsym;
pub mod hooks;
pub mod log;
pub mod real;
pub mod region;

use config::Config;
use log::Level;
use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Once, OnceLock};

/// `CUresult`.
pub type CUresult = c_int;
/// `CUDA_SUCCESS`.
pub const CUDA_SUCCESS: CUresult = 0;
/// `CUDA_ERROR_OUT_OF_MEMORY`.
pub const CUDA_ERROR_OUT_OF_MEMORY: CUresult = 2;
/// `CUDA_ERROR_NOT_FOUND`.
pub const CUDA_ERROR_NOT_FOUND: CUresult = 500;
/// `CUDA_ERROR_NOT_SUPPORTED`: returned when the real driver lacks the called function.
pub const CUDA_ERROR_NOT_SUPPORTED: CUresult = 801;
/// `CUDA_ERROR_UNKNOWN`: what a caught panic turns into.
pub const CUDA_ERROR_UNKNOWN: CUresult = 999;

static CONFIG: OnceLock<Config> = OnceLock::new();

/// The configuration, parsed from the environment on first use (its problems are logged then).
pub fn config() -> &'static Config {
    CONFIG.get_or_init(|| {
        let (cfg, notes) = Config::parse(&|k| std::env::var(k).ok());
        log::set_level(cfg.log_level);
        for (l, n) in notes {
            log!(l, "{n}");
        }
        if cfg.disabled {
            log!(Level::Info, "CUDA_DISABLE_CONTROL is set: pass-through");
        } else if !cfg.enabled() {
            log!(Level::Info, "no memory or compute limit set: pass-through");
        }
        cfg
    })
}

static READY: AtomicBool = AtomicBool::new(false);
static INIT: Once = Once::new();

/// Makes sure the real driver is resolved and the accounting is attached. One acquire load once
/// done, so it is cheap enough for the launch path.
#[inline(always)]
pub fn ensure_init() {
    if !READY.load(Ordering::Acquire) {
        init_slow();
    }
}

#[cold]
fn init_slow() {
    INIT.call_once(|| {
        let t0 = std::time::Instant::now();
        let c0 = thread_cpu_us();
        let cfg = config();
        let h = real::open_lib(c"libcuda.so.1");
        if h.is_null() {
            log!(
                Level::Error,
                "cannot load the real libcuda.so.1; every call will fail"
            );
        }
        real::cu::resolve_all(h);
        if cfg.enabled() && cfg.any_memory_limit() {
            hooks::attach_region(cfg);
        }
        if cfg.enabled() && cfg.any_compute_limit() {
            compute::start(cfg);
        }
        READY.store(true, Ordering::Release);
        log!(
            Level::Info,
            "initialised in {} us (cpu {} us; memory limits {:?}, SM limits {:?}, policy {:?})",
            t0.elapsed().as_micros(),
            thread_cpu_us().saturating_sub(c0),
            &cfg.mem_limit[..4],
            &cfg.sm_limit[..4],
            cfg.policy
        );
    });
}

/// CPU time of the calling thread in microseconds (init cost without the wait for a core).
fn thread_cpu_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer; CLOCK_THREAD_CPUTIME_ID always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

/// Runs an exported function's body; a panic becomes `CUDA_ERROR_UNKNOWN` instead of crossing
/// the FFI boundary.
#[inline(always)]
pub fn guard(f: impl FnOnce() -> CUresult) -> CUresult {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => CUDA_ERROR_UNKNOWN,
    }
}

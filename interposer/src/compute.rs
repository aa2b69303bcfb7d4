//! Compute share: a token bucket per device, refilled by a feedback controller.
//!
//! # Fast path
//!
//! Every launch calls [`admit`] with its cost in tokens (the grid's block count; a graph launch
//! costs this process's average kernel cost). With no limit that is one relaxed load. With a
//! limit it is the real `cuCtxGetDevice` (skipped when the process sees a single device) plus
//! three atomic read-modify-writes: count the launch,
//! take the tokens, and — only if the bucket went negative — wait (sleeping 1 ms at a time)
//! until the controller has refilled it. No allocation, no lock. Debt is allowed, so a launch
//! larger than the bucket still goes through and is paid for afterwards.
//!
//! # Controller
//!
//! A thread wakes every [`TICK`] and, per limited device, reads NVML's per-process utilisation
//! over the last [`WINDOW`]: this process's share `u_own` and the container's `u_cont` (the
//! pids in the shared accounting file). It keeps an estimate `c` of device time per token
//! (`u_own × WINDOW / tokens launched in WINDOW`, smoothed) and refills at
//! `rate = (limit + I) / c` tokens per second, where `I` integrates `limit − u_cont` (only while
//! the process is actually being throttled, or over its share, to avoid wind-up). The model
//! term makes it converge in a few ticks; the integral removes the remaining bias. It works
//! for a process alone on its card: nothing depends on other tenants.
//!
//! Until NVML has been reached and `c` measured, the bucket admits a probe budget that starts at
//! one token per tick and doubles every tick; if NVML cannot be used at all the device is left
//! unlimited and an error is logged.

use crate::config::{Config, MAX_DEVICES};
use crate::hooks;
use crate::log;
use crate::log::Level;
use std::ffi::{c_char, c_int, c_uint, c_void};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Controller period.
pub const TICK: Duration = Duration::from_millis(20);
/// Ticks in the measurement window.
const WINDOW_TICKS: usize = 10;
/// Measurement window (WINDOW_TICKS × TICK).
pub const WINDOW: Duration = Duration::from_millis(200);
/// Integral gain, per second.
const KI: f64 = 1.5;
/// Consecutive readings without any of our pids (while we launch on a busy card) after which
/// the controller falls back to whole-card utilisation (300 ms).
const UNMATCHED_TICKS: u32 = 15;
/// Tokens meaning "no limit in force".
const OPEN: i64 = i64::MAX / 4;

/// Per-device limiter state shared by the launch path and the controller.
pub struct Limiter {
    /// SM limit in percent (0 = none).
    pub limit: AtomicU32,
    /// Bucket level; may go negative (debt).
    pub tokens: AtomicI64,
    /// Tokens taken by all launches so far.
    pub taken: AtomicU64,
    /// Kernel launches so far (for the average kernel cost).
    pub launches: AtomicU64,
    /// Average tokens per kernel launch, for graph launches.
    pub avg_cost: AtomicU64,
    /// Set when a launch had to wait since the controller last looked.
    pub throttled: AtomicBool,
}

impl Limiter {
    const fn new() -> Limiter {
        Limiter {
            limit: AtomicU32::new(0),
            tokens: AtomicI64::new(OPEN),
            taken: AtomicU64::new(0),
            launches: AtomicU64::new(0),
            avg_cost: AtomicU64::new(1),
            throttled: AtomicBool::new(false),
        }
    }
}

/// The limiters, indexed by CUDA device ordinal.
pub static LIMITERS: [Limiter; MAX_DEVICES] = [const { Limiter::new() }; MAX_DEVICES];
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Admits a kernel launch of `blocks` thread blocks (blocks while over the share).
#[inline(always)]
pub fn admit(blocks: u64) {
    if ACTIVE.load(Ordering::Relaxed) {
        take(blocks, true);
    }
}

/// Admits a graph launch.
#[inline(always)]
pub fn admit_graph() {
    if ACTIVE.load(Ordering::Relaxed) {
        take(0, false);
    }
}

/// The only device the process can see, once known (-1: unknown or several). Saves the
/// `cuCtxGetDevice` call on the launch path in the common one-GPU container.
static ONLY_DEV: AtomicI32 = AtomicI32::new(-1);

#[inline(always)]
fn take(blocks: u64, kernel: bool) {
    let only = ONLY_DEV.load(Ordering::Relaxed);
    let dev = if only >= 0 {
        only as usize
    } else {
        match hooks::current_device() {
            Some(d) => d,
            None => return,
        }
    };
    let Some(l) = LIMITERS.get(dev) else {
        return;
    };
    if l.limit.load(Ordering::Relaxed) == 0 {
        return;
    }
    let cost = if kernel {
        l.launches.fetch_add(1, Ordering::Relaxed);
        blocks.max(1)
    } else {
        l.avg_cost.load(Ordering::Relaxed).max(1)
    };
    l.taken.fetch_add(cost, Ordering::Relaxed);
    let cost = cost.min(OPEN as u64) as i64;
    if l.tokens.fetch_sub(cost, Ordering::AcqRel) < cost {
        wait(l);
    }
}

#[cold]
#[inline(never)]
fn wait(l: &Limiter) {
    l.throttled.store(true, Ordering::Relaxed);
    while l.tokens.load(Ordering::Acquire) < 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Starts the controller for the devices with an SM limit.
pub fn start(cfg: &Config) {
    for (d, l) in cfg.sm_limit.iter().enumerate() {
        if (1..100).contains(l) {
            LIMITERS[d].limit.store(*l, Ordering::Relaxed);
        }
    }
    ACTIVE.store(true, Ordering::Release);
    let r = std::thread::Builder::new()
        .name("hami-sm-limit".into())
        .spawn(controller);
    if let Err(e) = r {
        log!(
            Level::Error,
            "cannot start the compute controller ({e}); no compute limit"
        );
        ACTIVE.store(false, Ordering::Release);
    }
}

/// `nvmlProcessUtilizationSample_t`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Sample {
    pid: c_uint,
    ts: u64,
    sm: c_uint,
    mem: c_uint,
    enc: c_uint,
    dec: c_uint,
}

type PProcUtil = unsafe extern "C" fn(*mut c_void, *mut Sample, *mut c_uint, u64) -> c_int;
type PByUuid = unsafe extern "C" fn(*const c_char, *mut *mut c_void) -> c_int;
type PNvmlInit = unsafe extern "C" fn() -> c_int;
type PUuid = unsafe extern "C" fn(*mut [u8; 16], c_int) -> c_int;
type PCount = unsafe extern "C" fn(*mut c_int) -> c_int;

fn realtime_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// NVML handle of CUDA device `dev`, matched by UUID (None until cuInit has run).
fn nvml_handle(dev: usize) -> Option<*mut c_void> {
    let mut raw = [0u8; 16];
    // SAFETY: resolved driver symbol with its documented signature; raw is a valid out-buffer.
    let f = unsafe { crate::real::cu::cuDeviceGetUuid.get::<PUuid>() }?;
    if unsafe { f(&mut raw, dev as c_int) } != 0 {
        return None;
    }
    let h: Vec<String> = raw.iter().map(|b| format!("{b:02x}")).collect();
    let uuid = format!(
        "GPU-{}-{}-{}-{}-{}\0",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    );
    // SAFETY: resolved NVML symbol; uuid is NUL-terminated; out is a valid out-pointer.
    let by = unsafe { crate::real::nvml::nvmlDeviceGetHandleByUUID.get::<PByUuid>() }?;
    let mut out = std::ptr::null_mut();
    (unsafe { by(uuid.as_ptr() as *const c_char, &mut out) } == 0).then_some(out)
}

/// Utilisation fractions over the window, from NVML.
fn measure(h: *mut c_void, buf: &mut Vec<Sample>, pids: &[u32], me: u32) -> Option<Measure> {
    // SAFETY: resolved NVML symbol with its documented signature.
    let f = unsafe { crate::real::nvml::nvmlDeviceGetProcessUtilization.get::<PProcUtil>() }?;
    let since = realtime_us().saturating_sub(WINDOW.as_micros() as u64);
    let mut n: c_uint;
    loop {
        n = buf.len() as c_uint;
        // SAFETY: buf holds n samples; n is a valid in/out count.
        let r = unsafe { f(h, buf.as_mut_ptr(), &mut n, since) };
        match r {
            0 => break,
            // NOT_FOUND: no samples, nothing ran.
            6 => {
                return Some(Measure {
                    own: 0.0,
                    cont: 0.0,
                    all: 0.0,
                    matched: true,
                });
            }
            7 if (n as usize) > buf.len() && n < 4096 => {
                buf.resize(n as usize + 8, Sample::default())
            }
            _ => return None,
        }
    }
    // Real NVML may return several samples per pid: average per pid, then sum.
    let mut per: Vec<(u32, f64, u32)> = Vec::new();
    for s in &buf[..n as usize] {
        match per.iter_mut().find(|p| p.0 == s.pid) {
            Some(p) => {
                p.1 += s.sm as f64;
                p.2 += 1;
            }
            None => per.push((s.pid, s.sm as f64, 1)),
        }
    }
    let mut own = 0.0;
    let mut cont = 0.0;
    let mut all = 0.0;
    let mut matched = false;
    for (pid, sum, k) in per {
        let u = sum / k as f64 / 100.0;
        all += u;
        if pid == me {
            own = u;
            matched = true;
        }
        if pid == me || pids.contains(&pid) {
            cont += u;
            matched = true;
        }
    }
    Some(Measure {
        own,
        cont,
        all,
        matched,
    })
}

/// One NVML reading: this process's and the container's utilisation, the whole card's (sum
/// over all processes), and whether any sample was ours.
struct Measure {
    own: f64,
    cont: f64,
    all: f64,
    matched: bool,
}

struct DevCtl {
    handle: Option<*mut c_void>,
    tries: u32,
    cost: f64,
    probe: f64,
    integ: f64,
    ring: [u64; WINDOW_TICKS],
    thr: [bool; WINDOW_TICKS],
    last_taken: u64,
    gave_up: bool,
    unmatched: u32,
}

fn controller() {
    hooks::ensure_nvml();
    // SAFETY: resolved NVML symbol; nvmlInit_v2 takes no arguments.
    let init_ok = unsafe { crate::real::nvml::nvmlInit_v2.get::<PNvmlInit>() }
        .map(|f| unsafe { f() } == 0)
        .unwrap_or(false);
    if !init_ok {
        log!(
            Level::Error,
            "NVML (libnvidia-ml.so.1) is not usable: the compute limit cannot be measured and is not enforced"
        );
        ACTIVE.store(false, Ordering::Release);
        return;
    }
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() } as u32;
    let mut ctl: Vec<DevCtl> = (0..MAX_DEVICES)
        .map(|_| DevCtl {
            handle: None,
            tries: 0,
            cost: 0.0,
            probe: 1.0,
            integ: 0.0,
            ring: [0; WINDOW_TICKS],
            thr: [false; WINDOW_TICKS],
            last_taken: 0,
            gave_up: false,
            unmatched: 0,
        })
        .collect();
    let mut buf = vec![Sample::default(); 64];
    let mut pids = Vec::new();
    let dt = TICK.as_secs_f64();
    let win = WINDOW.as_secs_f64();
    let mut tick: usize = 0;
    loop {
        std::thread::sleep(TICK);
        tick += 1;
        match hooks::region() {
            Some(r) => r.pids(&mut pids),
            None => pids.clear(),
        }
        for (d, c) in ctl.iter_mut().enumerate() {
            let l = &LIMITERS[d];
            let limit = l.limit.load(Ordering::Relaxed);
            if limit == 0 || c.gave_up {
                continue;
            }
            if c.handle.is_none() {
                c.handle = nvml_handle(d);
                match c.handle {
                    Some(_) => {
                        let mut n: c_int = 0;
                        // SAFETY: resolved driver symbol; n is a valid out-pointer.
                        let count_ok = unsafe { crate::real::cu::cuDeviceGetCount.get::<PCount>() }
                            .map(|f| unsafe { f(&mut n) } == 0)
                            .unwrap_or(false);
                        if count_ok && n == 1 {
                            ONLY_DEV.store(0, Ordering::Relaxed);
                        }
                        // Start closed: the probe budget grows from one token per tick.
                        l.tokens.store(0, Ordering::Release);
                    }
                    None => {
                        c.tries += 1;
                        // Before cuInit there is nothing to limit; keep trying quietly for a while.
                        if c.tries == 500 {
                            log!(
                                Level::Error,
                                "device {d}: no NVML handle; compute limit not enforced"
                            );
                            c.gave_up = true;
                        }
                        continue;
                    }
                }
            }
            let taken = l.taken.load(Ordering::Relaxed);
            let slot = tick % WINDOW_TICKS;
            c.ring[slot] = taken - c.last_taken;
            c.last_taken = taken;
            c.thr[slot] = l.throttled.swap(false, Ordering::Relaxed);
            let launches = l.launches.load(Ordering::Relaxed);
            if let Some(avg) = taken.checked_div(launches) {
                l.avg_cost.store(avg.max(1), Ordering::Relaxed);
            }
            let Some(h) = c.handle else { continue };
            let Some(m) = measure(h, &mut buf, &pids, me) else {
                continue;
            };
            let target = limit as f64 / 100.0;
            let tokens_in_window: u64 = c.ring.iter().sum();
            // A busy card on which none of the pids is ours, while we keep launching, for
            // UNMATCHED_TICKS: inside a PID namespace NVML reports host pids. Fall back to the
            // whole card's utilisation — exact for a container alone on its card, conservative
            // (below the share) when others run there too. A single unmatched reading is just
            // NVML not having sampled us yet, and is skipped.
            if m.matched || m.all == 0.0 || tokens_in_window == 0 {
                c.unmatched = 0;
            } else {
                c.unmatched += 1;
            }
            let (own, cont) = if m.matched {
                (m.own, m.cont)
            } else if c.unmatched >= UNMATCHED_TICKS {
                if c.unmatched == UNMATCHED_TICKS {
                    log!(
                        Level::Warn,
                        "device {d}: NVML process ids do not match this container's (PID \
                         namespace?); limiting on whole-card utilisation"
                    );
                }
                (m.all, m.all)
            } else {
                (0.0, 0.0)
            };
            // An unusable reading still refills (from the current estimate, or the probe);
            // it only does not feed the estimate or the integral.
            let usable = m.matched || c.unmatched >= UNMATCHED_TICKS || m.all == 0.0;
            if usable && tokens_in_window > 0 && own > 0.005 {
                let est = own * win / tokens_in_window as f64;
                c.cost = if c.cost == 0.0 {
                    est
                } else {
                    0.8 * c.cost + 0.2 * est
                };
            }
            if c.cost == 0.0 {
                // Probe until the cost per token is known: forgive any debt and admit a budget
                // that doubles every tick, so that even tiny kernels soon add up to measurable
                // utilisation (a fixed budget would never get there).
                let budget = c.probe as i64;
                c.probe = (c.probe * 2.0).min(1e12);
                let _ = l
                    .tokens
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                        Some(t.max(0).saturating_add(budget))
                    });
                continue;
            }
            let err = target - cont;
            if usable && (c.thr.iter().any(|t| *t) || err < 0.0) {
                c.integ = (c.integ + KI * err * dt).clamp(-0.9 * target, 0.5);
            }
            let rate = (target + c.integ).max(0.02 * target) / c.cost;
            let refill = (rate * dt).min(OPEN as f64) as i64;
            let cap = refill.saturating_mul(2).max(1);
            let _ = l
                .tokens
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                    Some(t.saturating_add(refill).min(cap))
                });
            if log::enabled(Level::Debug) && tick.is_multiple_of(50) {
                log!(
                    Level::Debug,
                    "device {d}: limit {limit}% own {:.1}% container {:.1}% cost {:.3e}s/token integ {:.3}",
                    own * 100.0,
                    cont * 100.0,
                    c.cost,
                    c.integ
                );
            }
        }
    }
}

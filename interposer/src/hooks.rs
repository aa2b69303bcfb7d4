//! The exported driver and NVML functions that carry limits.
//!
//! Allocation hooks reserve the bytes in the shared [`Region`] *before* calling the real driver
//! and give them back if the driver fails, so the limit holds even when processes race. Each
//! successful allocation is remembered (kind, address or handle → device, bytes) so its free
//! returns exactly what was reserved. Devices without a memory limit are not accounted at all.

use crate::config::{Config, MAX_DEVICES};
use crate::log::Level;
use crate::real::cu as R;
use crate::region::{self, Region};
use crate::{CUDA_ERROR_NOT_SUPPORTED, CUDA_ERROR_OUT_OF_MEMORY, CUDA_SUCCESS, CUresult};
use crate::{compute, config, ensure_init, guard, log};
use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_uint, c_void};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// Opaque driver handle.
pub type Handle = *mut c_void;

type PInit = unsafe extern "C" fn(c_uint) -> CUresult;
type PAlloc = unsafe extern "C" fn(*mut u64, usize) -> CUresult;
type PPitch = unsafe extern "C" fn(*mut u64, *mut usize, usize, usize, c_uint) -> CUresult;
type PManaged = unsafe extern "C" fn(*mut u64, usize, c_uint) -> CUresult;
type PAsync = unsafe extern "C" fn(*mut u64, usize, Handle) -> CUresult;
type PPool = unsafe extern "C" fn(*mut u64, usize, Handle, Handle) -> CUresult;
type PFree = unsafe extern "C" fn(u64) -> CUresult;
type PFreeAsync = unsafe extern "C" fn(u64, Handle) -> CUresult;
type PArray = unsafe extern "C" fn(*mut Handle, *const c_void) -> CUresult;
type PHandle = unsafe extern "C" fn(Handle) -> CUresult;
type PMemCreate = unsafe extern "C" fn(*mut u64, usize, *const PropsHead, u64) -> CUresult;
type PGetInfo = unsafe extern "C" fn(*mut usize, *mut usize) -> CUresult;
type PTotalMem = unsafe extern "C" fn(*mut usize, c_int) -> CUresult;
type PPoolCreate = unsafe extern "C" fn(*mut Handle, *const PropsHead) -> CUresult;
type PDevPool = unsafe extern "C" fn(*mut Handle, c_int) -> CUresult;
type PCtxDev = unsafe extern "C" fn(*mut c_int) -> CUresult;
type PLaunch = unsafe extern "C" fn(
    Handle,
    c_uint,
    c_uint,
    c_uint,
    c_uint,
    c_uint,
    c_uint,
    c_uint,
    Handle,
    *mut *mut c_void,
    *mut *mut c_void,
) -> CUresult;
type PLaunchEx = unsafe extern "C" fn(
    *const LaunchConfig,
    Handle,
    *mut *mut c_void,
    *mut *mut c_void,
) -> CUresult;
type PCoop = unsafe extern "C" fn(
    Handle,
    c_uint,
    c_uint,
    c_uint,
    c_uint,
    c_uint,
    c_uint,
    c_uint,
    Handle,
    *mut *mut c_void,
) -> CUresult;
type PGraph = unsafe extern "C" fn(Handle, Handle) -> CUresult;

/// Calls the real function `$name` of type `$ty`, or returns `CUDA_ERROR_NOT_SUPPORTED` when the
/// real driver does not have it.
macro_rules! real {
    ($name:ident : $ty:ty, ($($a:expr),*)) => {
        // SAFETY: the symbol was resolved by name from the real driver and `$ty` is its
        // documented signature; the arguments are the caller's, passed through unchanged.
        match unsafe { R::$name.get::<$ty>() } {
            Some(f) => unsafe { f($($a),*) },
            None => CUDA_ERROR_NOT_SUPPORTED,
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Accounting state

static REGION: OnceLock<&'static Region> = OnceLock::new();
static SLOT: AtomicIsize = AtomicIsize::new(-1);

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Mem,
    Array,
    Vmm,
}

/// Live accounted allocations: (kind, address/handle) → (device, bytes).
static TRACK: Mutex<BTreeMap<(Kind, u64), (usize, u64)>> = Mutex::new(BTreeMap::new());
/// Memory pools → device, learnt when they are created or looked up.
static POOLS: Mutex<BTreeMap<usize, usize>> = Mutex::new(BTreeMap::new());

/// Attaches the container's shared accounting (called once from initialisation).
pub fn attach_region(cfg: &Config) {
    if let Some(r) = region::open(&cfg.cache_path, &cfg.mem_limit) {
        let slot = r.claim_slot();
        if slot.is_none() {
            log!(
                Level::Warn,
                "all {} accounting slots are in use; this process's memory will not be reclaimed if it dies",
                region::MAX_SLOTS
            );
        }
        SLOT.store(slot.map_or(-1, |s| s as isize), Ordering::Release);
        let _ = REGION.set(r);
    }
}

/// The shared region, when memory is being accounted.
pub fn region() -> Option<&'static Region> {
    REGION.get().copied()
}

fn slot() -> Option<usize> {
    let s = SLOT.load(Ordering::Acquire);
    (s >= 0).then_some(s as usize)
}

fn limit(dev: usize) -> u64 {
    let c = config();
    if !c.enabled() || dev >= MAX_DEVICES {
        return 0;
    }
    c.mem_limit[dev]
}

/// Device of the calling thread's current context (None without one).
pub fn current_device() -> Option<usize> {
    let mut d: c_int = -1;
    let r = real!(cuCtxGetDevice: PCtxDev, (&mut d));
    (r == CUDA_SUCCESS && d >= 0).then_some(d as usize)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reserve, call the driver, then record or roll back.
fn alloc_with(
    dev: Option<usize>,
    size: u64,
    kind: Kind,
    call: impl FnOnce() -> CUresult,
    key: impl FnOnce() -> u64,
) -> CUresult {
    ensure_init();
    let Some(dev) = dev.filter(|d| limit(*d) > 0) else {
        return call();
    };
    let Some(r) = region() else {
        return call();
    };
    let lim = limit(dev);
    if !r.reserve(slot(), dev, size, lim) {
        log!(
            Level::Warn,
            "device {dev} out of memory: {} bytes in use + {size} requested > limit {lim}",
            r.used[dev].load(Ordering::Relaxed)
        );
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    let res = call();
    if res != CUDA_SUCCESS {
        r.release(slot(), dev, size);
        return res;
    }
    lock(&TRACK).insert((kind, key()), (dev, size));
    CUDA_SUCCESS
}

fn free_with(kind: Kind, key: u64, call: impl FnOnce() -> CUresult) -> CUresult {
    ensure_init();
    let tracked = lock(&TRACK).remove(&(kind, key));
    let res = call();
    if let Some((dev, size)) = tracked {
        if res == CUDA_SUCCESS {
            if let Some(r) = region() {
                r.release(slot(), dev, size);
            }
        } else {
            lock(&TRACK).insert((kind, key), (dev, size));
        }
    }
    res
}

fn read_out<T: Copy + Default>(p: *const T) -> T {
    if p.is_null() {
        T::default()
    } else {
        // SAFETY: non-null out-pointer the real driver has just written.
        unsafe { *p }
    }
}

// ---------------------------------------------------------------------------------------------
// Init

/// `cuInit`: also initialises the interposer (so the compute controller starts early).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuInit(flags: c_uint) -> CUresult {
    guard(|| {
        ensure_init();
        real!(cuInit: PInit, (flags))
    })
}

// ---------------------------------------------------------------------------------------------
// Allocation paths

/// `cuMemAlloc_v2`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAlloc_v2(p: *mut u64, size: usize) -> CUresult {
    guard(|| {
        ensure_init();
        alloc_with(
            current_device(),
            size as u64,
            Kind::Mem,
            || real!(cuMemAlloc_v2: PAlloc, (p, size)),
            || read_out(p),
        )
    })
}

/// Row alignment assumed before the driver reports the real pitch; corrected afterwards.
const PITCH_GUESS: u64 = 512;

/// `cuMemAllocPitch_v2`: reserves `round_up(width, 512) × height`, then settles on the driver's
/// actual `pitch × height` (reserving any extra, or failing with out-of-memory and freeing).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAllocPitch_v2(
    p: *mut u64,
    pitch: *mut usize,
    w: usize,
    h: usize,
    elem: c_uint,
) -> CUresult {
    guard(|| {
        ensure_init();
        let dev = current_device();
        let guess = (w as u64).div_ceil(PITCH_GUESS) * PITCH_GUESS * h as u64;
        let res = alloc_with(
            dev,
            guess,
            Kind::Mem,
            || real!(cuMemAllocPitch_v2: PPitch, (p, pitch, w, h, elem)),
            || read_out(p),
        );
        if res != CUDA_SUCCESS {
            return res;
        }
        let (Some(d), Some(r)) = (dev, region()) else {
            return res;
        };
        if limit(d) == 0 {
            return res;
        }
        let actual = read_out(pitch) as u64 * h as u64;
        let key = (Kind::Mem, read_out(p));
        if actual > guess {
            if !r.reserve(slot(), d, actual - guess, limit(d)) {
                let _ = free_with(Kind::Mem, key.1, || real!(cuMemFree_v2: PFree, (key.1)));
                return CUDA_ERROR_OUT_OF_MEMORY;
            }
        } else {
            r.release(slot(), d, guess - actual);
        }
        lock(&TRACK).insert(key, (d, actual));
        res
    })
}

/// `cuMemAllocManaged`: counted on the current device.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAllocManaged(p: *mut u64, size: usize, flags: c_uint) -> CUresult {
    guard(|| {
        ensure_init();
        alloc_with(
            current_device(),
            size as u64,
            Kind::Mem,
            || real!(cuMemAllocManaged: PManaged, (p, size, flags)),
            || read_out(p),
        )
    })
}

/// `cuMemAllocAsync`: counted on the current device when enqueued.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAllocAsync(p: *mut u64, size: usize, s: Handle) -> CUresult {
    guard(|| {
        ensure_init();
        alloc_with(
            current_device(),
            size as u64,
            Kind::Mem,
            || real!(cuMemAllocAsync: PAsync, (p, size, s)),
            || read_out(p),
        )
    })
}

/// `cuMemAllocAsync_ptsz`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAllocAsync_ptsz(p: *mut u64, size: usize, s: Handle) -> CUresult {
    guard(|| {
        ensure_init();
        alloc_with(
            current_device(),
            size as u64,
            Kind::Mem,
            || real!(cuMemAllocAsync_ptsz: PAsync, (p, size, s)),
            || read_out(p),
        )
    })
}

fn pool_device(pool: Handle) -> Option<usize> {
    lock(&POOLS)
        .get(&(pool as usize))
        .copied()
        .or_else(current_device)
}

/// `cuMemAllocFromPoolAsync`: counted on the pool's device.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAllocFromPoolAsync(
    p: *mut u64,
    size: usize,
    pool: Handle,
    s: Handle,
) -> CUresult {
    guard(|| {
        ensure_init();
        alloc_with(
            pool_device(pool),
            size as u64,
            Kind::Mem,
            || real!(cuMemAllocFromPoolAsync: PPool, (p, size, pool, s)),
            || read_out(p),
        )
    })
}

/// `cuMemAllocFromPoolAsync_ptsz`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAllocFromPoolAsync_ptsz(
    p: *mut u64,
    size: usize,
    pool: Handle,
    s: Handle,
) -> CUresult {
    guard(|| {
        ensure_init();
        alloc_with(
            pool_device(pool),
            size as u64,
            Kind::Mem,
            || real!(cuMemAllocFromPoolAsync_ptsz: PPool, (p, size, pool, s)),
            || read_out(p),
        )
    })
}

/// `cuMemFree_v2`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemFree_v2(p: u64) -> CUresult {
    guard(|| free_with(Kind::Mem, p, || real!(cuMemFree_v2: PFree, (p))))
}

/// `cuMemFreeAsync`: the bytes count as free once the free is enqueued.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemFreeAsync(p: u64, s: Handle) -> CUresult {
    guard(|| free_with(Kind::Mem, p, || real!(cuMemFreeAsync: PFreeAsync, (p, s))))
}

/// `cuMemFreeAsync_ptsz`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemFreeAsync_ptsz(p: u64, s: Handle) -> CUresult {
    guard(|| {
        free_with(
            Kind::Mem,
            p,
            || real!(cuMemFreeAsync_ptsz: PFreeAsync, (p, s)),
        )
    })
}

/// Head of `CUmemAllocationProp` and `CUmemPoolProps`: both place `CUmemLocation` at offset 8.
#[repr(C)]
pub struct PropsHead {
    /// Allocation type.
    pub alloc_type: c_uint,
    /// Requested handle types.
    pub handle_types: c_uint,
    /// `CU_MEM_LOCATION_TYPE_DEVICE` = 1.
    pub location_type: c_int,
    /// Device ordinal when the location is a device.
    pub location_id: c_int,
}

fn props_device(p: *const PropsHead) -> Option<usize> {
    if p.is_null() {
        return None;
    }
    // SAFETY: non-null props from the caller; both CUDA structs begin with this head.
    let h = unsafe { &*p };
    (h.location_type == 1 && h.location_id >= 0).then_some(h.location_id as usize)
}

/// `cuMemPoolCreate`: remembers the pool's device.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemPoolCreate(pool: *mut Handle, props: *const PropsHead) -> CUresult {
    guard(|| {
        ensure_init();
        let r = real!(cuMemPoolCreate: PPoolCreate, (pool, props));
        if r == CUDA_SUCCESS
            && let Some(d) = props_device(props)
        {
            lock(&POOLS).insert(read_out(pool) as usize, d);
        }
        r
    })
}

fn note_pool(r: CUresult, pool: *mut Handle, dev: c_int) -> CUresult {
    if r == CUDA_SUCCESS && dev >= 0 {
        lock(&POOLS).insert(read_out(pool) as usize, dev as usize);
    }
    r
}

/// `cuDeviceGetDefaultMemPool`: remembers the pool's device.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGetDefaultMemPool(pool: *mut Handle, dev: c_int) -> CUresult {
    guard(|| {
        ensure_init();
        note_pool(
            real!(cuDeviceGetDefaultMemPool: PDevPool, (pool, dev)),
            pool,
            dev,
        )
    })
}

/// `cuDeviceGetMemPool`: remembers the pool's device.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGetMemPool(pool: *mut Handle, dev: c_int) -> CUresult {
    guard(|| {
        ensure_init();
        note_pool(real!(cuDeviceGetMemPool: PDevPool, (pool, dev)), pool, dev)
    })
}

/// Bytes per channel element of a `CUarray_format`. Unknown (newer) formats count 4 bytes.
pub fn format_bytes(f: c_uint) -> u64 {
    match f {
        0x01 | 0x08 => 1,
        0x02 | 0x09 | 0x10 => 2,
        _ => 4,
    }
}

/// `cuArrayCreate_v2`: width × max(height, 1) × channels × element bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuArrayCreate_v2(arr: *mut Handle, desc: *const c_void) -> CUresult {
    guard(|| {
        ensure_init();
        let size = if desc.is_null() {
            0
        } else {
            // SAFETY: CUDA_ARRAY_DESCRIPTOR is { size_t Width, Height; unsigned Format, NumChannels }.
            let (w, h, f, c) = unsafe {
                let d = desc as *const usize;
                let t = d.add(2) as *const c_uint;
                (*d, *d.add(1), *t, *t.add(1))
            };
            (w as u64)
                .saturating_mul(h.max(1) as u64)
                .saturating_mul(c as u64)
                .saturating_mul(format_bytes(f))
        };
        alloc_with(
            current_device(),
            size,
            Kind::Array,
            || real!(cuArrayCreate_v2: PArray, (arr, desc)),
            || read_out(arr) as u64,
        )
    })
}

/// `cuArray3DCreate_v2`: width × max(h, 1) × max(depth, 1) × channels × element bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuArray3DCreate_v2(arr: *mut Handle, desc: *const c_void) -> CUresult {
    guard(|| {
        ensure_init();
        let size = if desc.is_null() {
            0
        } else {
            // SAFETY: CUDA_ARRAY3D_DESCRIPTOR is { size_t Width, Height, Depth; unsigned Format,
            // NumChannels, Flags }.
            let (w, h, dp, f, c) = unsafe {
                let d = desc as *const usize;
                let t = d.add(3) as *const c_uint;
                (*d, *d.add(1), *d.add(2), *t, *t.add(1))
            };
            (w as u64)
                .saturating_mul(h.max(1) as u64)
                .saturating_mul(dp.max(1) as u64)
                .saturating_mul(c as u64)
                .saturating_mul(format_bytes(f))
        };
        alloc_with(
            current_device(),
            size,
            Kind::Array,
            || real!(cuArray3DCreate_v2: PArray, (arr, desc)),
            || read_out(arr) as u64,
        )
    })
}

/// `cuArrayDestroy`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuArrayDestroy(arr: Handle) -> CUresult {
    guard(|| {
        free_with(
            Kind::Array,
            arr as u64,
            || real!(cuArrayDestroy: PHandle, (arr)),
        )
    })
}

/// `cuMemCreate` (VMM): physical memory is counted when created on a device; mapping it
/// (`cuMemMap`, not hooked) takes no further memory.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemCreate(
    h: *mut u64,
    size: usize,
    props: *const PropsHead,
    flags: u64,
) -> CUresult {
    guard(|| {
        ensure_init();
        alloc_with(
            props_device(props),
            size as u64,
            Kind::Vmm,
            || real!(cuMemCreate: PMemCreate, (h, size, props, flags)),
            || read_out(h),
        )
    })
}

/// `cuMemRelease`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemRelease(h: u64) -> CUresult {
    guard(|| free_with(Kind::Vmm, h, || real!(cuMemRelease: PFree, (h))))
}

// ---------------------------------------------------------------------------------------------
// Reported memory

/// Virtualised (free, total) for device `dev` given the real values.
pub fn virtual_meminfo(dev: usize, real_free: u64, real_total: u64) -> Option<(u64, u64)> {
    let lim = limit(dev);
    if lim == 0 {
        return None;
    }
    let total = lim.min(real_total);
    let used = region().map_or(0, |r| r.used[dev].load(Ordering::Acquire));
    Some((total.saturating_sub(used).min(real_free), total))
}

/// `cuMemGetInfo_v2`: total = min(limit, card), free = what is left under the limit (never more
/// than the card really has free).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemGetInfo_v2(free: *mut usize, total: *mut usize) -> CUresult {
    guard(|| {
        ensure_init();
        let r = real!(cuMemGetInfo_v2: PGetInfo, (free, total));
        if r != CUDA_SUCCESS || free.is_null() || total.is_null() {
            return r;
        }
        if let Some(dev) = current_device()
            && let Some((f, t)) =
                virtual_meminfo(dev, read_out(free) as u64, read_out(total) as u64)
        {
            // SAFETY: both out-pointers are non-null (checked) and were just written by the driver.
            unsafe {
                *free = f as usize;
                *total = t as usize;
            }
        }
        r
    })
}

/// `cuDeviceTotalMem_v2`: min(limit, card).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceTotalMem_v2(bytes: *mut usize, dev: c_int) -> CUresult {
    guard(|| {
        ensure_init();
        let r = real!(cuDeviceTotalMem_v2: PTotalMem, (bytes, dev));
        if r == CUDA_SUCCESS && !bytes.is_null() && dev >= 0 {
            let lim = limit(dev as usize);
            if lim > 0 {
                // SAFETY: non-null out-pointer just written by the driver.
                unsafe { *bytes = (*bytes).min(lim as usize) };
            }
        }
        r
    })
}

// ---------------------------------------------------------------------------------------------
// Launches: the fast path is `compute::admit`, a few atomics when a limit is set.

/// `cuLaunchKernel`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuLaunchKernel(
    f: Handle,
    gx: c_uint,
    gy: c_uint,
    gz: c_uint,
    bx: c_uint,
    by: c_uint,
    bz: c_uint,
    shm: c_uint,
    s: Handle,
    params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> CUresult {
    guard(|| {
        ensure_init();
        compute::admit(gx as u64 * gy as u64 * gz as u64);
        real!(cuLaunchKernel: PLaunch, (f, gx, gy, gz, bx, by, bz, shm, s, params, extra))
    })
}

/// `cuLaunchKernel_ptsz`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuLaunchKernel_ptsz(
    f: Handle,
    gx: c_uint,
    gy: c_uint,
    gz: c_uint,
    bx: c_uint,
    by: c_uint,
    bz: c_uint,
    shm: c_uint,
    s: Handle,
    params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> CUresult {
    guard(|| {
        ensure_init();
        compute::admit(gx as u64 * gy as u64 * gz as u64);
        real!(cuLaunchKernel_ptsz: PLaunch, (f, gx, gy, gz, bx, by, bz, shm, s, params, extra))
    })
}

/// `CUlaunchConfig` (grid dimensions are what the limiter reads).
#[repr(C)]
pub struct LaunchConfig {
    /// gridDimX/Y/Z.
    pub grid: [c_uint; 3],
    /// blockDimX/Y/Z.
    pub block: [c_uint; 3],
    /// sharedMemBytes.
    pub shared_mem: c_uint,
    /// hStream.
    pub stream: Handle,
    /// attrs.
    pub attrs: *mut c_void,
    /// numAttrs.
    pub num_attrs: c_uint,
}

fn ex_blocks(cfg: *const LaunchConfig) -> u64 {
    if cfg.is_null() {
        return 1;
    }
    // SAFETY: non-null launch config from the caller.
    let g = unsafe { (*cfg).grid };
    g[0] as u64 * g[1] as u64 * g[2] as u64
}

/// `cuLaunchKernelEx`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuLaunchKernelEx(
    cfg: *const LaunchConfig,
    f: Handle,
    params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> CUresult {
    guard(|| {
        ensure_init();
        compute::admit(ex_blocks(cfg));
        real!(cuLaunchKernelEx: PLaunchEx, (cfg, f, params, extra))
    })
}

/// `cuLaunchKernelEx_ptsz`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuLaunchKernelEx_ptsz(
    cfg: *const LaunchConfig,
    f: Handle,
    params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> CUresult {
    guard(|| {
        ensure_init();
        compute::admit(ex_blocks(cfg));
        real!(cuLaunchKernelEx_ptsz: PLaunchEx, (cfg, f, params, extra))
    })
}

/// `cuLaunchCooperativeKernel`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuLaunchCooperativeKernel(
    f: Handle,
    gx: c_uint,
    gy: c_uint,
    gz: c_uint,
    bx: c_uint,
    by: c_uint,
    bz: c_uint,
    shm: c_uint,
    s: Handle,
    params: *mut *mut c_void,
) -> CUresult {
    guard(|| {
        ensure_init();
        compute::admit(gx as u64 * gy as u64 * gz as u64);
        real!(cuLaunchCooperativeKernel: PCoop, (f, gx, gy, gz, bx, by, bz, shm, s, params))
    })
}

/// `cuLaunchCooperativeKernel_ptsz`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuLaunchCooperativeKernel_ptsz(
    f: Handle,
    gx: c_uint,
    gy: c_uint,
    gz: c_uint,
    bx: c_uint,
    by: c_uint,
    bz: c_uint,
    shm: c_uint,
    s: Handle,
    params: *mut *mut c_void,
) -> CUresult {
    guard(|| {
        ensure_init();
        compute::admit(gx as u64 * gy as u64 * gz as u64);
        real!(cuLaunchCooperativeKernel_ptsz: PCoop, (f, gx, gy, gz, bx, by, bz, shm, s, params))
    })
}

/// `cuGraphLaunch`: costs the average tokens of this process's kernel launches (the graph's
/// content is opaque); the feedback loop corrects the estimate.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGraphLaunch(e: Handle, s: Handle) -> CUresult {
    guard(|| {
        ensure_init();
        compute::admit_graph();
        real!(cuGraphLaunch: PGraph, (e, s))
    })
}

/// `cuGraphLaunch_ptsz`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGraphLaunch_ptsz(e: Handle, s: Handle) -> CUresult {
    guard(|| {
        ensure_init();
        compute::admit_graph();
        real!(cuGraphLaunch_ptsz: PGraph, (e, s))
    })
}

// ---------------------------------------------------------------------------------------------
// NVML memory info

type PNvmlMem = unsafe extern "C" fn(Handle, *mut u64) -> c_int;
type PNvmlIndex = unsafe extern "C" fn(Handle, *mut c_uint) -> c_int;
type PNvmlUuid = unsafe extern "C" fn(Handle, *mut c_char, c_uint) -> c_int;

/// Loads the real NVML symbols once (the library is already loaded when these hooks run).
pub fn ensure_nvml() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let h = crate::real::open_lib(c"libnvidia-ml.so.1");
        crate::real::nvml::resolve_all(h);
    });
}

/// CUDA ordinal of an NVML device: its position in `CUDA_VISIBLE_DEVICES` (indices or UUIDs),
/// or its NVML index when the variable is unset.
fn nvml_to_cuda(h: Handle) -> Option<usize> {
    ensure_nvml();
    let mut idx: c_uint = 0;
    // SAFETY: resolved NVML symbol with its documented signature.
    let f = unsafe { crate::real::nvml::nvmlDeviceGetIndex.get::<PNvmlIndex>() }?;
    // SAFETY: the handle is the caller's; idx is a valid out-pointer.
    if unsafe { f(h, &mut idx) } != 0 {
        return None;
    }
    let Ok(cvd) = std::env::var("CUDA_VISIBLE_DEVICES") else {
        return Some(idx as usize);
    };
    let mut uuid: Option<String> = None;
    for (i, t) in cvd.split(',').map(str::trim).enumerate() {
        if t.parse::<u32>().ok() == Some(idx) {
            return Some(i);
        }
        if t.starts_with("GPU-") || t.starts_with("MIG-") {
            let u = uuid.get_or_insert_with(|| {
                let mut buf = [0 as c_char; 96];
                // SAFETY: resolved symbol; buf holds 96 bytes.
                let ok = unsafe { crate::real::nvml::nvmlDeviceGetUUID.get::<PNvmlUuid>() }
                    .map(|g| unsafe { g(h, buf.as_mut_ptr(), 96) } == 0)
                    .unwrap_or(false);
                if ok {
                    // SAFETY: NVML wrote a NUL-terminated string into buf.
                    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
                        .to_string_lossy()
                        .into_owned()
                } else {
                    String::new()
                }
            });
            if !u.is_empty() && u.starts_with(t) {
                return Some(i);
            }
        }
    }
    None
}

/// `nvmlDeviceGetMemoryInfo`: total/free/used under the container's limit.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo(h: Handle, m: *mut u64) -> c_int {
    guard(|| {
        ensure_init();
        ensure_nvml();
        // SAFETY: resolved NVML symbol with its documented signature.
        let Some(f) = (unsafe { crate::real::nvml::nvmlDeviceGetMemoryInfo.get::<PNvmlMem>() })
        else {
            return 3; // NVML_ERROR_NOT_SUPPORTED
        };
        // SAFETY: arguments passed through.
        let r = unsafe { f(h, m) };
        if r == 0 && !m.is_null() {
            // SAFETY: nvmlMemory_t is { total, free, used } (u64 each), just written by NVML.
            let (total, free) = unsafe { (*m, *m.add(1)) };
            if let Some(d) = nvml_to_cuda(h)
                && let Some((vf, vt)) = virtual_meminfo(d, free, total)
            {
                // SAFETY: same struct.
                unsafe {
                    *m = vt;
                    *m.add(1) = vf;
                    *m.add(2) = vt - vf;
                }
            }
        }
        r
    })
}

/// `nvmlDeviceGetMemoryInfo_v2`: as v1, on the versioned struct.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo_v2(h: Handle, m: *mut u64) -> c_int {
    guard(|| {
        ensure_init();
        ensure_nvml();
        // SAFETY: resolved NVML symbol with its documented signature.
        let Some(f) = (unsafe { crate::real::nvml::nvmlDeviceGetMemoryInfo_v2.get::<PNvmlMem>() })
        else {
            return 3;
        };
        // SAFETY: arguments passed through.
        let r = unsafe { f(h, m) };
        if r == 0 && !m.is_null() {
            // SAFETY: nvmlMemory_v2_t is { u32 version (padded to 8), total, reserved, free, used }.
            let (total, reserved, free) = unsafe { (*m.add(1), *m.add(2), *m.add(3)) };
            if let Some(d) = nvml_to_cuda(h)
                && let Some((vf, vt)) = virtual_meminfo(d, free, total)
            {
                // SAFETY: same struct.
                unsafe {
                    *m.add(1) = vt;
                    *m.add(3) = vf;
                    *m.add(4) = vt.saturating_sub(vf).saturating_sub(reserved.min(vt - vf));
                }
            }
        }
        r
    })
}

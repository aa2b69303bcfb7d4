//! Fake `libcuda.so.1`: the CUDA driver API over simulated cards.
//!
//! Built as a cdylib and installed (copied or symlinked) as `libcuda.so.1`, it lets programs and
//! the interposer run on a machine without a GPU. What it simulates, honestly:
//!
//! * Cards come from the inventory ([`hami_fake_devices::inventory`]); memory use and kernel
//!   time live in the shared state file ([`hami_fake_devices::state`]), so several processes see
//!   the same cards, `CUDA_ERROR_OUT_OF_MEMORY` comes when a card is full, and fake NVML reports
//!   utilisation from the same numbers.
//! * Device pointers are addresses in a private range per card; **no memory backs them**: copies
//!   check that the device range lies inside a live allocation and then do nothing (device to
//!   host copies write zeros).
//! * A kernel launch of `gx*gy*gz` blocks occupies its card for `gx*gy*gz × kernel_ns_per_block`
//!   of simulated time on the card's serial timeline; synchronisation sleeps until the caller's
//!   work is done. Graph launches take the summed time of the kernels captured into the graph.
//! * Bad handles, missing contexts and use before `cuInit` return the documented error codes.
//!
//! Safety contract of every exported function: the CUDA driver API's (valid out-pointers, valid
//! NUL-terminated strings); null out-pointers are rejected with `CUDA_ERROR_INVALID_VALUE`.
#![allow(non_snake_case, clippy::missing_safety_doc, clippy::too_many_arguments)]

use hami_fake_devices::inventory::{Inventory, uuid_bytes};
use hami_fake_devices::state::{self, SharedState};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// `CUresult`.
pub type CUresult = c_int;
/// `CUdevice`.
pub type CUdevice = c_int;
/// `CUdeviceptr`.
pub type CUdeviceptr = u64;
/// Opaque handle (`CUcontext`, `CUstream`, `CUfunction`, ...).
pub type Handle = *mut c_void;

const SUCCESS: CUresult = 0;
const INVALID_VALUE: CUresult = 1;
const OUT_OF_MEMORY: CUresult = 2;
const NOT_INITIALIZED: CUresult = 3;
const NO_DEVICE: CUresult = 100;
const INVALID_DEVICE: CUresult = 101;
const INVALID_CONTEXT: CUresult = 201;
const INVALID_HANDLE: CUresult = 400;
const NOT_FOUND: CUresult = 500;
const UNKNOWN: CUresult = 999;

/// Driver version reported by `cuDriverGetVersion` (12.4).
pub const DRIVER_VERSION: c_int = 12040;

struct Fake {
    inv: Inventory,
    st: &'static SharedState,
    slot: usize,
}

static FAKE: OnceLock<Result<Fake, String>> = OnceLock::new();
static INITED: AtomicBool = AtomicBool::new(false);
/// End of this process's last queued kernel per card (for context synchronisation).
static DEV_LAST_END: [AtomicU64; 16] = [const { AtomicU64::new(0) }; 16];
/// Next free fake address per card. Addresses are never reused, which makes stale frees
/// detectable.
static NEXT_ADDR: [AtomicU64; 16] = [const { AtomicU64::new(0) }; 16];
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Mem,
    Array,
    Vmm,
}

/// Live allocations: (kind, address or handle) → (card, bytes).
type AllocMap = HashMap<(Kind, u64), (usize, u64)>;
static ALLOCS: Mutex<Option<AllocMap>> = Mutex::new(None);
/// Live contexts, streams, pools, graphs (for handle validation): address → card or payload.
static HANDLES: Mutex<Option<HashMap<usize, Obj>>> = Mutex::new(None);
static PRIMARY: Mutex<[usize; 16]> = Mutex::new([0; 16]);

#[derive(Clone, Copy)]
enum Obj {
    Ctx(usize),
    Stream(usize),
    Pool(usize),
    Graph(u64),
    GraphExec(u64),
    Module,
    Func,
}

/// A stream: when its last kernel ends, and stream-capture state.
struct Stream {
    last_end: AtomicU64,
    capturing: AtomicBool,
    captured_ns: AtomicU64,
}

thread_local! {
    static CURRENT: Cell<usize> = const { Cell::new(0) };
    /// (context, card) of the last lookup: keeps `cuCtxGetDevice` lock-free like the real
    /// driver's (a context destroyed by another thread while current here is not noticed).
    static CURRENT_DEV: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    static CTX_STACK: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

fn guard(f: impl FnOnce() -> CUresult) -> CUresult {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(UNKNOWN)
}

fn fake() -> Result<&'static Fake, CUresult> {
    if !INITED.load(Ordering::Acquire) {
        return Err(NOT_INITIALIZED);
    }
    match FAKE.get() {
        Some(Ok(f)) => Ok(f),
        _ => Err(NOT_INITIALIZED),
    }
}

fn load() -> Result<Fake, String> {
    let inv = Inventory::from_env().map_err(|e| e.to_string())?;
    let st = state::open(&inv)?;
    let slot = st.claim_slot()?;
    Ok(Fake { inv, st, slot })
}

fn put<T>(p: *mut T, v: T) -> Result<(), CUresult> {
    if p.is_null() {
        return Err(INVALID_VALUE);
    }
    // SAFETY: non-null out-pointer supplied by the caller per the driver API contract.
    unsafe { p.write(v) };
    Ok(())
}

fn run(f: impl FnOnce() -> Result<(), CUresult>) -> CUresult {
    guard(|| match f() {
        Ok(()) => SUCCESS,
        Err(e) => e,
    })
}

fn dev_ok(f: &Fake, dev: CUdevice) -> Result<usize, CUresult> {
    if dev < 0 || dev as usize >= f.inv.devices.len() {
        return Err(INVALID_DEVICE);
    }
    Ok(dev as usize)
}

fn handles<R>(f: impl FnOnce(&mut HashMap<usize, Obj>) -> R) -> R {
    let mut g = HANDLES.lock().unwrap_or_else(|e| e.into_inner());
    f(g.get_or_insert_with(HashMap::new))
}

fn allocs<R>(f: impl FnOnce(&mut AllocMap) -> R) -> R {
    let mut g = ALLOCS.lock().unwrap_or_else(|e| e.into_inner());
    f(g.get_or_insert_with(HashMap::new))
}

fn new_handle(o: Obj) -> usize {
    // Handles are heap addresses so they look like real driver handles; payloads live in the
    // registry, except streams whose state is read on the launch path without the lock.
    let h = match o {
        Obj::Stream(_) => Box::into_raw(Box::new(Stream {
            last_end: AtomicU64::new(0),
            capturing: AtomicBool::new(false),
            captured_ns: AtomicU64::new(0),
        })) as usize,
        _ => Box::into_raw(Box::new(0u64)) as usize,
    };
    handles(|m| m.insert(h, o));
    h
}

fn current_dev() -> Result<usize, CUresult> {
    let c = CURRENT.with(|c| c.get());
    if c == 0 {
        return Err(INVALID_CONTEXT);
    }
    let (cc, cd) = CURRENT_DEV.with(|x| x.get());
    if cc == c {
        return Ok(cd);
    }
    match handles(|m| m.get(&c).copied()) {
        Some(Obj::Ctx(d)) => {
            CURRENT_DEV.with(|x| x.set((c, d)));
            Ok(d)
        }
        _ => Err(INVALID_CONTEXT),
    }
}

/// Resolves a stream handle to (card, stream state). The legacy (0, 1) and per-thread (2)
/// default streams map to the current context's card.
fn stream_of(s: Handle) -> Result<(usize, Option<&'static Stream>), CUresult> {
    let h = s as usize;
    if h <= 2 {
        return Ok((current_dev()?, None));
    }
    match handles(|m| m.get(&h).copied()) {
        // SAFETY: registered streams are leaked boxes of `Stream` that are never freed.
        Some(Obj::Stream(d)) => Ok((d, Some(unsafe { &*(h as *const Stream) }))),
        _ => Err(INVALID_HANDLE),
    }
}

fn enqueue(stream: Handle, ns: u64) -> Result<(), CUresult> {
    let f = fake()?;
    let (dev, st) = stream_of(stream)?;
    if let Some(st) = st
        && st.capturing.load(Ordering::Acquire)
    {
        st.captured_ns.fetch_add(ns, Ordering::AcqRel);
        return Ok(());
    }
    let end = f.st.enqueue(f.slot, dev, ns, f.inv.max_queue_ns);
    DEV_LAST_END[dev].fetch_max(end, Ordering::AcqRel);
    if let Some(st) = st {
        st.last_end.fetch_max(end, Ordering::AcqRel);
    }
    Ok(())
}

fn kernel(stream: Handle, func: Handle, gx: c_uint, gy: c_uint, gz: c_uint) -> CUresult {
    run(|| {
        if func.is_null() {
            return Err(INVALID_HANDLE);
        }
        if gx == 0 || gy == 0 || gz == 0 {
            return Err(INVALID_VALUE);
        }
        let f = fake()?;
        let blocks = gx as u64 * gy as u64 * gz as u64;
        enqueue(stream, blocks.saturating_mul(f.inv.kernel_ns_per_block))
    })
}

// ---------------------------------------------------------------------------------------------
// Initialisation, version, devices

/// `cuInit`: loads the inventory and the shared state; errors are printed once to stderr.
#[unsafe(no_mangle)]
pub extern "C" fn cuInit(_flags: c_uint) -> CUresult {
    guard(|| match FAKE.get_or_init(load) {
        Ok(_) => {
            INITED.store(true, Ordering::Release);
            SUCCESS
        }
        Err(e) => {
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| eprintln!("[hami-rs fake libcuda] cuInit failed: {e}"));
            NO_DEVICE
        }
    })
}

/// `cuDriverGetVersion`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDriverGetVersion(v: *mut c_int) -> CUresult {
    run(|| put(v, DRIVER_VERSION))
}

/// `cuDeviceGetCount`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGetCount(n: *mut c_int) -> CUresult {
    run(|| put(n, fake()?.inv.devices.len() as c_int))
}

/// `cuDeviceGet`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGet(d: *mut CUdevice, ordinal: c_int) -> CUresult {
    run(|| {
        dev_ok(fake()?, ordinal)?;
        put(d, ordinal)
    })
}

fn write_str(dst: *mut c_char, len: c_int, s: &str) -> Result<(), CUresult> {
    if dst.is_null() || len <= 0 {
        return Err(INVALID_VALUE);
    }
    let n = s.len().min(len as usize - 1);
    // SAFETY: the caller gave `len` writable bytes at `dst`; we write n + 1 <= len bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), dst as *mut u8, n);
        *dst.add(n) = 0;
    }
    Ok(())
}

/// `cuDeviceGetName`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGetName(name: *mut c_char, len: c_int, dev: CUdevice) -> CUresult {
    run(|| {
        let f = fake()?;
        let d = dev_ok(f, dev)?;
        write_str(name, len, &f.inv.devices[d].name)
    })
}

fn device_uuid(uuid: *mut [u8; 16], dev: CUdevice) -> CUresult {
    run(|| {
        let f = fake()?;
        let d = dev_ok(f, dev)?;
        put(uuid, uuid_bytes(&f.inv.devices[d].uuid).unwrap_or([0; 16]))
    })
}

/// `cuDeviceGetUuid`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGetUuid(uuid: *mut [u8; 16], dev: CUdevice) -> CUresult {
    device_uuid(uuid, dev)
}

/// `cuDeviceGetUuid_v2` (same as v1 here: no MIG).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGetUuid_v2(uuid: *mut [u8; 16], dev: CUdevice) -> CUresult {
    device_uuid(uuid, dev)
}

/// `cuDeviceTotalMem_v2`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceTotalMem_v2(bytes: *mut usize, dev: CUdevice) -> CUresult {
    run(|| {
        let f = fake()?;
        let d = dev_ok(f, dev)?;
        put(bytes, f.inv.devices[d].memory_bytes as usize)
    })
}

/// `cuDeviceGetAttribute`: SM count, compute capability, PCI ids and plausible constants.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGetAttribute(
    v: *mut c_int,
    attr: c_int,
    dev: CUdevice,
) -> CUresult {
    run(|| {
        let f = fake()?;
        let d = dev_ok(f, dev)?;
        let spec = &f.inv.devices[d];
        let val = match attr {
            1 => 1024,                          // max threads per block
            2 | 3 => 1024,                      // max block dim x, y
            4 => 64,                            // max block dim z
            5 => i32::MAX,                      // max grid dim x
            6 | 7 => 65535,                     // max grid dim y, z
            8 => 49152,                         // shared memory per block
            10 => 32,                           // warp size
            16 => spec.sms as c_int,            // multiprocessor count
            33 => d as c_int + 1,               // PCI bus id
            39 => 2048,                         // max threads per multiprocessor
            50 => 0,                            // PCI domain
            75 => spec.cc.0 as c_int,           // compute capability major
            76 => spec.cc.1 as c_int,           // compute capability minor
            41 | 83 | 89 | 95 | 102 | 115 => 1, // unified addressing, managed, concurrent managed, cooperative, VMM, pools
            a if (0..=200).contains(&a) => 0,
            _ => return Err(INVALID_VALUE),
        };
        put(v, val)
    })
}

/// `cuDeviceGetPCIBusId`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGetPCIBusId(
    id: *mut c_char,
    len: c_int,
    dev: CUdevice,
) -> CUresult {
    run(|| {
        let d = dev_ok(fake()?, dev)?;
        write_str(id, len, &format!("00000000:{:02X}:00.0", d + 1))
    })
}

// ---------------------------------------------------------------------------------------------
// Contexts

/// `cuDevicePrimaryCtxRetain`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDevicePrimaryCtxRetain(ctx: *mut Handle, dev: CUdevice) -> CUresult {
    run(|| {
        let f = fake()?;
        let d = dev_ok(f, dev)?;
        let mut p = PRIMARY.lock().unwrap_or_else(|e| e.into_inner());
        if p[d] == 0 {
            p[d] = new_handle(Obj::Ctx(d));
        }
        f.st.mark_active(f.slot, d);
        put(ctx, p[d] as Handle)
    })
}

/// `cuDevicePrimaryCtxRelease_v2` (the primary context stays alive in the fake).
#[unsafe(no_mangle)]
pub extern "C" fn cuDevicePrimaryCtxRelease_v2(dev: CUdevice) -> CUresult {
    run(|| dev_ok(fake()?, dev).map(|_| ()))
}

/// `cuDevicePrimaryCtxReset_v2`.
#[unsafe(no_mangle)]
pub extern "C" fn cuDevicePrimaryCtxReset_v2(dev: CUdevice) -> CUresult {
    run(|| dev_ok(fake()?, dev).map(|_| ()))
}

/// `cuDevicePrimaryCtxGetState`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDevicePrimaryCtxGetState(
    dev: CUdevice,
    flags: *mut c_uint,
    active: *mut c_int,
) -> CUresult {
    run(|| {
        let d = dev_ok(fake()?, dev)?;
        put(flags, 0)?;
        let a = PRIMARY.lock().unwrap_or_else(|e| e.into_inner())[d] != 0;
        put(active, a as c_int)
    })
}

/// `cuDevicePrimaryCtxSetFlags_v2`.
#[unsafe(no_mangle)]
pub extern "C" fn cuDevicePrimaryCtxSetFlags_v2(dev: CUdevice, _flags: c_uint) -> CUresult {
    run(|| dev_ok(fake()?, dev).map(|_| ()))
}

/// `cuCtxCreate_v2`: a new context, made current.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuCtxCreate_v2(
    ctx: *mut Handle,
    _flags: c_uint,
    dev: CUdevice,
) -> CUresult {
    run(|| {
        let f = fake()?;
        let d = dev_ok(f, dev)?;
        let h = new_handle(Obj::Ctx(d));
        f.st.mark_active(f.slot, d);
        CURRENT.with(|c| c.set(h));
        put(ctx, h as Handle)
    })
}

/// `cuCtxDestroy_v2`.
#[unsafe(no_mangle)]
pub extern "C" fn cuCtxDestroy_v2(ctx: Handle) -> CUresult {
    run(|| {
        fake()?;
        let h = ctx as usize;
        match handles(|m| m.get(&h).copied()) {
            Some(Obj::Ctx(_)) => {
                handles(|m| m.remove(&h));
                CURRENT.with(|c| {
                    if c.get() == h {
                        c.set(0)
                    }
                });
                Ok(())
            }
            _ => Err(INVALID_CONTEXT),
        }
    })
}

fn check_ctx(h: usize) -> Result<(), CUresult> {
    if h == 0 {
        return Ok(());
    }
    match handles(|m| m.get(&h).copied()) {
        Some(Obj::Ctx(_)) => Ok(()),
        _ => Err(INVALID_CONTEXT),
    }
}

/// `cuCtxSetCurrent`.
#[unsafe(no_mangle)]
pub extern "C" fn cuCtxSetCurrent(ctx: Handle) -> CUresult {
    run(|| {
        fake()?;
        check_ctx(ctx as usize)?;
        CURRENT.with(|c| c.set(ctx as usize));
        Ok(())
    })
}

/// `cuCtxGetCurrent`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuCtxGetCurrent(ctx: *mut Handle) -> CUresult {
    run(|| {
        fake()?;
        put(ctx, CURRENT.with(|c| c.get()) as Handle)
    })
}

/// `cuCtxPushCurrent_v2`.
#[unsafe(no_mangle)]
pub extern "C" fn cuCtxPushCurrent_v2(ctx: Handle) -> CUresult {
    run(|| {
        fake()?;
        check_ctx(ctx as usize)?;
        let old = CURRENT.with(|c| c.replace(ctx as usize));
        CTX_STACK.with(|s| s.borrow_mut().push(old));
        Ok(())
    })
}

/// `cuCtxPopCurrent_v2`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuCtxPopCurrent_v2(ctx: *mut Handle) -> CUresult {
    run(|| {
        fake()?;
        let prev = CTX_STACK.with(|s| s.borrow_mut().pop()).unwrap_or(0);
        let cur = CURRENT.with(|c| c.replace(prev));
        if !ctx.is_null() {
            put(ctx, cur as Handle)?;
        }
        Ok(())
    })
}

/// `cuCtxGetDevice`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuCtxGetDevice(dev: *mut CUdevice) -> CUresult {
    run(|| {
        fake()?;
        put(dev, current_dev()? as CUdevice)
    })
}

/// `cuCtxSynchronize`: sleeps until this process's kernels on the current card have ended.
#[unsafe(no_mangle)]
pub extern "C" fn cuCtxSynchronize() -> CUresult {
    run(|| {
        fake()?;
        let d = current_dev()?;
        hami_fake_devices::sleep_until(DEV_LAST_END[d].load(Ordering::Acquire));
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Streams

fn stream_create(s: *mut Handle) -> CUresult {
    run(|| {
        fake()?;
        let d = current_dev()?;
        put(s, new_handle(Obj::Stream(d)) as Handle)
    })
}

/// `cuStreamCreate`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuStreamCreate(s: *mut Handle, _flags: c_uint) -> CUresult {
    stream_create(s)
}

/// `cuStreamCreateWithPriority`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuStreamCreateWithPriority(
    s: *mut Handle,
    _flags: c_uint,
    _prio: c_int,
) -> CUresult {
    stream_create(s)
}

/// `cuStreamDestroy_v2` (the stream record is leaked on purpose: a racing launch may still read it).
#[unsafe(no_mangle)]
pub extern "C" fn cuStreamDestroy_v2(s: Handle) -> CUresult {
    run(|| {
        fake()?;
        match handles(|m| m.remove(&(s as usize))) {
            Some(Obj::Stream(_)) => Ok(()),
            _ => Err(INVALID_HANDLE),
        }
    })
}

fn stream_sync(s: Handle) -> CUresult {
    run(|| {
        fake()?;
        let (d, st) = stream_of(s)?;
        let end = match st {
            Some(st) => st.last_end.load(Ordering::Acquire),
            None => DEV_LAST_END[d].load(Ordering::Acquire),
        };
        hami_fake_devices::sleep_until(end);
        Ok(())
    })
}

/// `cuStreamSynchronize`.
#[unsafe(no_mangle)]
pub extern "C" fn cuStreamSynchronize(s: Handle) -> CUresult {
    stream_sync(s)
}

/// `cuStreamSynchronize_ptsz`.
#[unsafe(no_mangle)]
pub extern "C" fn cuStreamSynchronize_ptsz(s: Handle) -> CUresult {
    stream_sync(s)
}

/// `cuStreamQuery`: `CUDA_ERROR_NOT_READY` (600) while work is queued.
#[unsafe(no_mangle)]
pub extern "C" fn cuStreamQuery(s: Handle) -> CUresult {
    run(|| {
        fake()?;
        let (d, st) = stream_of(s)?;
        let end = st.map_or(DEV_LAST_END[d].load(Ordering::Acquire), |st| {
            st.last_end.load(Ordering::Acquire)
        });
        if hami_fake_devices::mono_ns() < end {
            Err(600)
        } else {
            Ok(())
        }
    })
}

/// `cuStreamBeginCapture_v2`: later launches on the stream are recorded into a graph.
#[unsafe(no_mangle)]
pub extern "C" fn cuStreamBeginCapture_v2(s: Handle, _mode: c_int) -> CUresult {
    run(|| {
        fake()?;
        match stream_of(s)? {
            (_, Some(st)) => {
                st.captured_ns.store(0, Ordering::Release);
                st.capturing.store(true, Ordering::Release);
                Ok(())
            }
            // Capturing the legacy default stream is not allowed by CUDA either.
            (_, None) => Err(INVALID_VALUE),
        }
    })
}

/// `cuStreamEndCapture`: returns the captured graph.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuStreamEndCapture(s: Handle, graph: *mut Handle) -> CUresult {
    run(|| {
        fake()?;
        match stream_of(s)? {
            (_, Some(st)) if st.capturing.swap(false, Ordering::AcqRel) => {
                let ns = st.captured_ns.load(Ordering::Acquire);
                put(graph, new_handle(Obj::Graph(ns)) as Handle)
            }
            _ => Err(INVALID_VALUE),
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Modules, functions, launches, graphs

/// `cuModuleLoadData`: any image is accepted.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuModuleLoadData(m: *mut Handle, image: *const c_void) -> CUresult {
    module_load(m, image)
}

fn module_load(m: *mut Handle, image: *const c_void) -> CUresult {
    run(|| {
        fake()?;
        current_dev()?;
        if image.is_null() {
            return Err(INVALID_VALUE);
        }
        put(m, new_handle(Obj::Module) as Handle)
    })
}

/// `cuModuleLoad`: any file name is accepted.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuModuleLoad(m: *mut Handle, fname: *const c_char) -> CUresult {
    module_load(m, fname as *const c_void)
}

/// `cuModuleUnload`.
#[unsafe(no_mangle)]
pub extern "C" fn cuModuleUnload(m: Handle) -> CUresult {
    run(|| match handles(|h| h.remove(&(m as usize))) {
        Some(Obj::Module) => Ok(()),
        _ => Err(INVALID_HANDLE),
    })
}

/// `cuModuleGetFunction`: every name exists in a fake module.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuModuleGetFunction(
    f: *mut Handle,
    m: Handle,
    name: *const c_char,
) -> CUresult {
    run(|| {
        fake()?;
        if name.is_null() {
            return Err(INVALID_VALUE);
        }
        match handles(|h| h.get(&(m as usize)).copied()) {
            Some(Obj::Module) => put(f, new_handle(Obj::Func) as Handle),
            _ => Err(INVALID_HANDLE),
        }
    })
}

/// `cuLaunchKernel`.
#[unsafe(no_mangle)]
pub extern "C" fn cuLaunchKernel(
    f: Handle,
    gx: c_uint,
    gy: c_uint,
    gz: c_uint,
    _bx: c_uint,
    _by: c_uint,
    _bz: c_uint,
    _shm: c_uint,
    s: Handle,
    _p: *mut *mut c_void,
    _e: *mut *mut c_void,
) -> CUresult {
    kernel(s, f, gx, gy, gz)
}

/// `cuLaunchKernel_ptsz`.
#[unsafe(no_mangle)]
pub extern "C" fn cuLaunchKernel_ptsz(
    f: Handle,
    gx: c_uint,
    gy: c_uint,
    gz: c_uint,
    _bx: c_uint,
    _by: c_uint,
    _bz: c_uint,
    _shm: c_uint,
    s: Handle,
    _p: *mut *mut c_void,
    _e: *mut *mut c_void,
) -> CUresult {
    kernel(s, f, gx, gy, gz)
}

/// `CUlaunchConfig` (the fields the fake reads).
#[repr(C)]
pub struct LaunchConfig {
    /// Grid and block dimensions.
    pub grid: [c_uint; 3],
    /// Block dimensions.
    pub block: [c_uint; 3],
    /// Dynamic shared memory.
    pub shared_mem: c_uint,
    /// Stream.
    pub stream: Handle,
    /// Launch attributes.
    pub attrs: *mut c_void,
    /// Number of attributes.
    pub num_attrs: c_uint,
}

fn launch_ex(cfg: *const LaunchConfig, f: Handle) -> CUresult {
    if cfg.is_null() {
        return INVALID_VALUE;
    }
    // SAFETY: non-null config supplied by the caller.
    let c = unsafe { &*cfg };
    kernel(c.stream, f, c.grid[0], c.grid[1], c.grid[2])
}

/// `cuLaunchKernelEx`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuLaunchKernelEx(
    cfg: *const LaunchConfig,
    f: Handle,
    _p: *mut *mut c_void,
    _e: *mut *mut c_void,
) -> CUresult {
    launch_ex(cfg, f)
}

/// `cuLaunchKernelEx_ptsz`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuLaunchKernelEx_ptsz(
    cfg: *const LaunchConfig,
    f: Handle,
    _p: *mut *mut c_void,
    _e: *mut *mut c_void,
) -> CUresult {
    launch_ex(cfg, f)
}

/// `cuLaunchCooperativeKernel`.
#[unsafe(no_mangle)]
pub extern "C" fn cuLaunchCooperativeKernel(
    f: Handle,
    gx: c_uint,
    gy: c_uint,
    gz: c_uint,
    _bx: c_uint,
    _by: c_uint,
    _bz: c_uint,
    _shm: c_uint,
    s: Handle,
    _p: *mut *mut c_void,
) -> CUresult {
    kernel(s, f, gx, gy, gz)
}

/// `cuLaunchCooperativeKernel_ptsz`.
#[unsafe(no_mangle)]
pub extern "C" fn cuLaunchCooperativeKernel_ptsz(
    f: Handle,
    gx: c_uint,
    gy: c_uint,
    gz: c_uint,
    _bx: c_uint,
    _by: c_uint,
    _bz: c_uint,
    _shm: c_uint,
    s: Handle,
    _p: *mut *mut c_void,
) -> CUresult {
    kernel(s, f, gx, gy, gz)
}

/// `cuGraphCreate`: an empty graph.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGraphCreate(g: *mut Handle, _flags: c_uint) -> CUresult {
    run(|| {
        fake()?;
        put(g, new_handle(Obj::Graph(0)) as Handle)
    })
}

/// `cuGraphInstantiateWithFlags`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGraphInstantiateWithFlags(
    e: *mut Handle,
    g: Handle,
    _flags: u64,
) -> CUresult {
    run(|| {
        fake()?;
        match handles(|m| m.get(&(g as usize)).copied()) {
            Some(Obj::Graph(ns)) => put(e, new_handle(Obj::GraphExec(ns)) as Handle),
            _ => Err(INVALID_HANDLE),
        }
    })
}

/// `cuGraphDestroy`.
#[unsafe(no_mangle)]
pub extern "C" fn cuGraphDestroy(g: Handle) -> CUresult {
    run(|| match handles(|m| m.remove(&(g as usize))) {
        Some(Obj::Graph(_)) => Ok(()),
        _ => Err(INVALID_HANDLE),
    })
}

/// `cuGraphExecDestroy`.
#[unsafe(no_mangle)]
pub extern "C" fn cuGraphExecDestroy(e: Handle) -> CUresult {
    run(|| match handles(|m| m.remove(&(e as usize))) {
        Some(Obj::GraphExec(_)) => Ok(()),
        _ => Err(INVALID_HANDLE),
    })
}

fn graph_launch(e: Handle, s: Handle) -> CUresult {
    run(|| {
        fake()?;
        match handles(|m| m.get(&(e as usize)).copied()) {
            Some(Obj::GraphExec(ns)) => enqueue(s, ns),
            _ => Err(INVALID_HANDLE),
        }
    })
}

/// `cuGraphLaunch`: the graph's captured kernel time on the stream's card.
#[unsafe(no_mangle)]
pub extern "C" fn cuGraphLaunch(e: Handle, s: Handle) -> CUresult {
    graph_launch(e, s)
}

/// `cuGraphLaunch_ptsz`.
#[unsafe(no_mangle)]
pub extern "C" fn cuGraphLaunch_ptsz(e: Handle, s: Handle) -> CUresult {
    graph_launch(e, s)
}

// ---------------------------------------------------------------------------------------------
// Memory

fn alloc_on(dev: usize, size: u64, kind: Kind, key: Option<u64>) -> Result<u64, CUresult> {
    let f = fake()?;
    if size == 0 {
        return Err(INVALID_VALUE);
    }
    if !f
        .st
        .reserve_mem(f.slot, dev, size, f.inv.devices[dev].memory_bytes)
    {
        return Err(OUT_OF_MEMORY);
    }
    let key = match key {
        Some(k) => k,
        None if kind == Kind::Mem => {
            let off = NEXT_ADDR[dev].fetch_add(size.div_ceil(512) * 512, Ordering::AcqRel);
            ((dev as u64 + 1) << 40) + off
        }
        None => NEXT_ID.fetch_add(1, Ordering::AcqRel) << 4,
    };
    allocs(|m| m.insert((kind, key), (dev, size)));
    Ok(key)
}

fn free_of(kind: Kind, key: u64) -> Result<(), CUresult> {
    let f = fake()?;
    match allocs(|m| m.remove(&(kind, key))) {
        Some((dev, size)) => {
            f.st.release_mem(f.slot, dev, size);
            Ok(())
        }
        None => Err(if kind == Kind::Mem {
            INVALID_VALUE
        } else {
            INVALID_HANDLE
        }),
    }
}

// Exported functions never call each other: under LD_PRELOAD such a call would be
// resolved to the interposer's hook and counted twice, which a real driver never does.
fn mem_alloc(p: *mut CUdeviceptr, size: usize) -> CUresult {
    run(|| {
        if p.is_null() {
            return Err(INVALID_VALUE);
        }
        let d = current_dev()?;
        put(p, alloc_on(d, size as u64, Kind::Mem, None)?)
    })
}

/// `cuMemAlloc_v2`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAlloc_v2(p: *mut CUdeviceptr, size: usize) -> CUresult {
    mem_alloc(p, size)
}

/// Row pitch used by `cuMemAllocPitch_v2`: rows are padded to 512 bytes.
pub const PITCH_ALIGN: usize = 512;

/// `cuMemAllocPitch_v2`: pitch = width rounded up to [`PITCH_ALIGN`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAllocPitch_v2(
    p: *mut CUdeviceptr,
    pitch: *mut usize,
    w: usize,
    h: usize,
    elem: c_uint,
) -> CUresult {
    run(|| {
        if p.is_null() || pitch.is_null() || !matches!(elem, 4 | 8 | 16) {
            return Err(INVALID_VALUE);
        }
        let d = current_dev()?;
        let pt = w.div_ceil(PITCH_ALIGN) * PITCH_ALIGN;
        let size = (pt as u64).checked_mul(h as u64).ok_or(OUT_OF_MEMORY)?;
        let a = alloc_on(d, size, Kind::Mem, None)?;
        put(pitch, pt)?;
        put(p, a)
    })
}

/// `cuMemAllocManaged`: counted on the current card (the fake does not migrate pages).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAllocManaged(
    p: *mut CUdeviceptr,
    size: usize,
    _flags: c_uint,
) -> CUresult {
    mem_alloc(p, size)
}

fn alloc_async(p: *mut CUdeviceptr, size: usize, s: Handle) -> CUresult {
    run(|| {
        if p.is_null() {
            return Err(INVALID_VALUE);
        }
        let (d, _) = stream_of(s)?;
        put(p, alloc_on(d, size as u64, Kind::Mem, None)?)
    })
}

/// `cuMemAllocAsync`: allocated at once on the stream's card.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAllocAsync(p: *mut CUdeviceptr, size: usize, s: Handle) -> CUresult {
    alloc_async(p, size, s)
}

/// `cuMemAllocAsync_ptsz`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAllocAsync_ptsz(
    p: *mut CUdeviceptr,
    size: usize,
    s: Handle,
) -> CUresult {
    alloc_async(p, size, s)
}

fn alloc_pool(p: *mut CUdeviceptr, size: usize, pool: Handle, _s: Handle) -> CUresult {
    run(|| {
        if p.is_null() {
            return Err(INVALID_VALUE);
        }
        fake()?;
        match handles(|m| m.get(&(pool as usize)).copied()) {
            Some(Obj::Pool(d)) => put(p, alloc_on(d, size as u64, Kind::Mem, None)?),
            _ => Err(INVALID_HANDLE),
        }
    })
}

/// `cuMemAllocFromPoolAsync`: allocated at once on the pool's card.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAllocFromPoolAsync(
    p: *mut CUdeviceptr,
    size: usize,
    pool: Handle,
    s: Handle,
) -> CUresult {
    alloc_pool(p, size, pool, s)
}

/// `cuMemAllocFromPoolAsync_ptsz`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAllocFromPoolAsync_ptsz(
    p: *mut CUdeviceptr,
    size: usize,
    pool: Handle,
    s: Handle,
) -> CUresult {
    alloc_pool(p, size, pool, s)
}

/// `cuMemFree_v2`.
#[unsafe(no_mangle)]
pub extern "C" fn cuMemFree_v2(p: CUdeviceptr) -> CUresult {
    run(|| free_of(Kind::Mem, p))
}

/// `cuMemFreeAsync`: freed at once.
#[unsafe(no_mangle)]
pub extern "C" fn cuMemFreeAsync(p: CUdeviceptr, _s: Handle) -> CUresult {
    run(|| free_of(Kind::Mem, p))
}

/// `cuMemFreeAsync_ptsz`.
#[unsafe(no_mangle)]
pub extern "C" fn cuMemFreeAsync_ptsz(p: CUdeviceptr, _s: Handle) -> CUresult {
    run(|| free_of(Kind::Mem, p))
}

/// `cuMemGetInfo_v2`: free and total bytes of the current card.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemGetInfo_v2(free: *mut usize, total: *mut usize) -> CUresult {
    run(|| {
        let f = fake()?;
        let d = current_dev()?;
        let tot = f.inv.devices[d].memory_bytes;
        let used = f.st.devices[d].mem_used.load(Ordering::Acquire);
        put(free, tot.saturating_sub(used) as usize)?;
        put(total, tot as usize)
    })
}

/// `cuDeviceGetDefaultMemPool`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGetDefaultMemPool(pool: *mut Handle, dev: CUdevice) -> CUresult {
    default_pool(pool, dev)
}

fn default_pool(pool: *mut Handle, dev: CUdevice) -> CUresult {
    run(|| {
        let d = dev_ok(fake()?, dev)?;
        static DEFAULT_POOLS: Mutex<[usize; 16]> = Mutex::new([0; 16]);
        let mut p = DEFAULT_POOLS.lock().unwrap_or_else(|e| e.into_inner());
        if p[d] == 0 {
            p[d] = new_handle(Obj::Pool(d));
        }
        put(pool, p[d] as Handle)
    })
}

/// `cuDeviceGetMemPool` (the current pool is the default pool in the fake).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGetMemPool(pool: *mut Handle, dev: CUdevice) -> CUresult {
    default_pool(pool, dev)
}

/// `CUmemLocation` inside `CUmemPoolProps` / `CUmemAllocationProp` (both start with two u32s).
#[repr(C)]
pub struct PropsHead {
    /// Allocation type.
    pub alloc_type: c_uint,
    /// Handle types.
    pub handle_types: c_uint,
    /// `CU_MEM_LOCATION_TYPE_DEVICE` = 1.
    pub location_type: c_int,
    /// Device ordinal.
    pub location_id: c_int,
}

fn props_dev(props: *const PropsHead) -> Result<usize, CUresult> {
    if props.is_null() {
        return Err(INVALID_VALUE);
    }
    // SAFETY: non-null props supplied by the caller; both CUDA structs start with this head.
    let p = unsafe { &*props };
    if p.location_type != 1 {
        return Err(INVALID_VALUE);
    }
    dev_ok(fake()?, p.location_id)
}

/// `cuMemPoolCreate`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemPoolCreate(pool: *mut Handle, props: *const PropsHead) -> CUresult {
    run(|| {
        let d = props_dev(props)?;
        put(pool, new_handle(Obj::Pool(d)) as Handle)
    })
}

/// `cuMemPoolDestroy`.
#[unsafe(no_mangle)]
pub extern "C" fn cuMemPoolDestroy(pool: Handle) -> CUresult {
    run(|| match handles(|m| m.remove(&(pool as usize))) {
        Some(Obj::Pool(_)) => Ok(()),
        _ => Err(INVALID_HANDLE),
    })
}

/// `CUDA_ARRAY_DESCRIPTOR`.
#[repr(C)]
pub struct ArrayDesc {
    /// Width in elements.
    pub width: usize,
    /// Height (0 = 1D).
    pub height: usize,
    /// `CUarray_format`.
    pub format: c_uint,
    /// Channels (1, 2 or 4).
    pub channels: c_uint,
}

/// `CUDA_ARRAY3D_DESCRIPTOR`.
#[repr(C)]
pub struct Array3dDesc {
    /// Width in elements.
    pub width: usize,
    /// Height (0 = 1D).
    pub height: usize,
    /// Depth (0 = 2D).
    pub depth: usize,
    /// `CUarray_format`.
    pub format: c_uint,
    /// Channels.
    pub channels: c_uint,
    /// Flags.
    pub flags: c_uint,
}

/// Bytes per channel element of a `CUarray_format`; None for formats the fake does not know.
pub fn format_bytes(format: c_uint) -> Option<u64> {
    Some(match format {
        0x01 | 0x08 => 1,
        0x02 | 0x09 | 0x10 => 2,
        0x03 | 0x0a | 0x20 => 4,
        _ => return None,
    })
}

/// Bytes an array of this shape occupies: width × max(h,1) × max(d,1) × channels × element size.
pub fn array_bytes(w: usize, h: usize, d: usize, format: c_uint, channels: c_uint) -> Option<u64> {
    let e = format_bytes(format)?;
    (w as u64)
        .checked_mul(h.max(1) as u64)?
        .checked_mul(d.max(1) as u64)?
        .checked_mul(channels as u64)?
        .checked_mul(e)
}

fn array_create(arr: *mut Handle, bytes: Option<u64>) -> Result<(), CUresult> {
    if arr.is_null() {
        return Err(INVALID_VALUE);
    }
    let d = current_dev()?;
    let size = bytes.filter(|b| *b > 0).ok_or(INVALID_VALUE)?;
    let key = alloc_on(d, size, Kind::Array, None)?;
    put(arr, key as Handle)
}

/// `cuArrayCreate_v2`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuArrayCreate_v2(arr: *mut Handle, desc: *const ArrayDesc) -> CUresult {
    run(|| {
        if desc.is_null() {
            return Err(INVALID_VALUE);
        }
        // SAFETY: non-null descriptor from the caller.
        let d = unsafe { &*desc };
        array_create(arr, array_bytes(d.width, d.height, 0, d.format, d.channels))
    })
}

/// `cuArray3DCreate_v2`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuArray3DCreate_v2(
    arr: *mut Handle,
    desc: *const Array3dDesc,
) -> CUresult {
    run(|| {
        if desc.is_null() {
            return Err(INVALID_VALUE);
        }
        // SAFETY: non-null descriptor from the caller.
        let d = unsafe { &*desc };
        array_create(
            arr,
            array_bytes(d.width, d.height, d.depth, d.format, d.channels),
        )
    })
}

/// `cuArrayDestroy`.
#[unsafe(no_mangle)]
pub extern "C" fn cuArrayDestroy(arr: Handle) -> CUresult {
    run(|| free_of(Kind::Array, arr as u64))
}

/// Allocation granularity reported for VMM (2 MiB, as on real cards).
pub const VMM_GRANULARITY: usize = 2 << 20;

/// `cuMemGetAllocationGranularity`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemGetAllocationGranularity(
    g: *mut usize,
    props: *const PropsHead,
    _opt: c_int,
) -> CUresult {
    run(|| {
        props_dev(props)?;
        put(g, VMM_GRANULARITY)
    })
}

/// `cuMemCreate`: physical memory on `prop.location.id`; size must be a granularity multiple.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemCreate(
    h: *mut u64,
    size: usize,
    props: *const PropsHead,
    _flags: u64,
) -> CUresult {
    run(|| {
        if h.is_null() || !size.is_multiple_of(VMM_GRANULARITY) {
            return Err(INVALID_VALUE);
        }
        let d = props_dev(props)?;
        put(h, alloc_on(d, size as u64, Kind::Vmm, None)?)
    })
}

/// `cuMemRelease`.
#[unsafe(no_mangle)]
pub extern "C" fn cuMemRelease(h: u64) -> CUresult {
    run(|| free_of(Kind::Vmm, h))
}

/// `cuMemAddressReserve`: a fresh virtual range (no memory).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAddressReserve(
    p: *mut CUdeviceptr,
    size: usize,
    _align: usize,
    _addr: CUdeviceptr,
    _flags: u64,
) -> CUresult {
    run(|| {
        fake()?;
        let off = NEXT_ADDR[15].fetch_add(
            size.div_ceil(VMM_GRANULARITY) as u64 * VMM_GRANULARITY as u64,
            Ordering::AcqRel,
        );
        put(p, (17u64 << 40) + off)
    })
}

/// `cuMemAddressFree`.
#[unsafe(no_mangle)]
pub extern "C" fn cuMemAddressFree(_p: CUdeviceptr, _size: usize) -> CUresult {
    run(|| fake().map(|_| ()))
}

/// `cuMemMap`: checks the handle exists (mapping itself takes no memory).
#[unsafe(no_mangle)]
pub extern "C" fn cuMemMap(
    _p: CUdeviceptr,
    _size: usize,
    _off: usize,
    h: u64,
    _flags: u64,
) -> CUresult {
    run(|| {
        fake()?;
        if allocs(|m| m.contains_key(&(Kind::Vmm, h))) {
            Ok(())
        } else {
            Err(INVALID_HANDLE)
        }
    })
}

/// `cuMemUnmap`.
#[unsafe(no_mangle)]
pub extern "C" fn cuMemUnmap(_p: CUdeviceptr, _size: usize) -> CUresult {
    run(|| fake().map(|_| ()))
}

/// `cuMemSetAccess`.
#[unsafe(no_mangle)]
pub extern "C" fn cuMemSetAccess(
    _p: CUdeviceptr,
    _size: usize,
    _desc: *const c_void,
    _n: usize,
) -> CUresult {
    run(|| fake().map(|_| ()))
}

// ---------------------------------------------------------------------------------------------
// Copies (range-checked, no data)

fn dev_range_ok(p: CUdeviceptr, n: usize) -> Result<(), CUresult> {
    fake()?;
    let ok = allocs(|m| {
        m.iter().any(|((k, a), (_, s))| {
            *k == Kind::Mem && p >= *a && p.saturating_add(n as u64) <= a + s
        })
    });
    if ok { Ok(()) } else { Err(INVALID_VALUE) }
}

/// `cuMemcpyHtoD_v2`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemcpyHtoD_v2(
    dst: CUdeviceptr,
    src: *const c_void,
    n: usize,
) -> CUresult {
    run(|| {
        if src.is_null() {
            return Err(INVALID_VALUE);
        }
        dev_range_ok(dst, n)
    })
}

/// `cuMemcpyDtoH_v2`: writes zeros (the fake keeps no device data).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemcpyDtoH_v2(dst: *mut c_void, src: CUdeviceptr, n: usize) -> CUresult {
    run(|| {
        if dst.is_null() {
            return Err(INVALID_VALUE);
        }
        dev_range_ok(src, n)?;
        // SAFETY: the caller gave n writable bytes at dst.
        unsafe { std::ptr::write_bytes(dst as *mut u8, 0, n) };
        Ok(())
    })
}

/// `cuMemcpyDtoD_v2`.
#[unsafe(no_mangle)]
pub extern "C" fn cuMemcpyDtoD_v2(dst: CUdeviceptr, src: CUdeviceptr, n: usize) -> CUresult {
    run(|| {
        dev_range_ok(dst, n)?;
        dev_range_ok(src, n)
    })
}

/// `cuMemsetD8_v2`.
#[unsafe(no_mangle)]
pub extern "C" fn cuMemsetD8_v2(dst: CUdeviceptr, _v: u8, n: usize) -> CUresult {
    run(|| dev_range_ok(dst, n))
}

// ---------------------------------------------------------------------------------------------
// Errors and symbol lookup

fn error_name(e: CUresult) -> Option<&'static CStr> {
    Some(match e {
        0 => c"CUDA_SUCCESS",
        1 => c"CUDA_ERROR_INVALID_VALUE",
        2 => c"CUDA_ERROR_OUT_OF_MEMORY",
        3 => c"CUDA_ERROR_NOT_INITIALIZED",
        100 => c"CUDA_ERROR_NO_DEVICE",
        101 => c"CUDA_ERROR_INVALID_DEVICE",
        201 => c"CUDA_ERROR_INVALID_CONTEXT",
        400 => c"CUDA_ERROR_INVALID_HANDLE",
        500 => c"CUDA_ERROR_NOT_FOUND",
        600 => c"CUDA_ERROR_NOT_READY",
        999 => c"CUDA_ERROR_UNKNOWN",
        _ => return None,
    })
}

/// `cuGetErrorName`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGetErrorName(e: CUresult, s: *mut *const c_char) -> CUresult {
    run(|| put(s, error_name(e).ok_or(INVALID_VALUE)?.as_ptr()))
}

/// `cuGetErrorString`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGetErrorString(e: CUresult, s: *mut *const c_char) -> CUresult {
    run(|| {
        let text: &CStr = match e {
            2 => c"out of memory",
            _ => error_name(e).ok_or(INVALID_VALUE)?,
        };
        put(s, text.as_ptr())
    })
}

macro_rules! symbol_table {
    ($($name:ident),* $(,)?) => {
        /// Every exported driver function by name (what `cuGetProcAddress` can hand out).
        fn symbol(name: &str) -> Option<*mut c_void> {
            match name {
                $(stringify!($name) => Some($name as *mut c_void),)*
                _ => None,
            }
        }
    };
}

symbol_table!(
    cuInit,
    cuDriverGetVersion,
    cuDeviceGetCount,
    cuDeviceGet,
    cuDeviceGetName,
    cuDeviceGetUuid,
    cuDeviceGetUuid_v2,
    cuDeviceTotalMem_v2,
    cuDeviceGetAttribute,
    cuDeviceGetPCIBusId,
    cuDevicePrimaryCtxRetain,
    cuDevicePrimaryCtxRelease_v2,
    cuDevicePrimaryCtxReset_v2,
    cuDevicePrimaryCtxGetState,
    cuDevicePrimaryCtxSetFlags_v2,
    cuCtxCreate_v2,
    cuCtxDestroy_v2,
    cuCtxSetCurrent,
    cuCtxGetCurrent,
    cuCtxPushCurrent_v2,
    cuCtxPopCurrent_v2,
    cuCtxGetDevice,
    cuCtxSynchronize,
    cuStreamCreate,
    cuStreamCreateWithPriority,
    cuStreamDestroy_v2,
    cuStreamSynchronize,
    cuStreamSynchronize_ptsz,
    cuStreamQuery,
    cuStreamBeginCapture_v2,
    cuStreamEndCapture,
    cuModuleLoadData,
    cuModuleLoad,
    cuModuleUnload,
    cuModuleGetFunction,
    cuLaunchKernel,
    cuLaunchKernel_ptsz,
    cuLaunchKernelEx,
    cuLaunchKernelEx_ptsz,
    cuLaunchCooperativeKernel,
    cuLaunchCooperativeKernel_ptsz,
    cuGraphCreate,
    cuGraphInstantiateWithFlags,
    cuGraphDestroy,
    cuGraphExecDestroy,
    cuGraphLaunch,
    cuGraphLaunch_ptsz,
    cuMemAlloc_v2,
    cuMemAllocPitch_v2,
    cuMemAllocManaged,
    cuMemAllocAsync,
    cuMemAllocAsync_ptsz,
    cuMemAllocFromPoolAsync,
    cuMemAllocFromPoolAsync_ptsz,
    cuMemFree_v2,
    cuMemFreeAsync,
    cuMemFreeAsync_ptsz,
    cuMemGetInfo_v2,
    cuDeviceGetDefaultMemPool,
    cuDeviceGetMemPool,
    cuMemPoolCreate,
    cuMemPoolDestroy,
    cuArrayCreate_v2,
    cuArray3DCreate_v2,
    cuArrayDestroy,
    cuMemGetAllocationGranularity,
    cuMemCreate,
    cuMemRelease,
    cuMemAddressReserve,
    cuMemAddressFree,
    cuMemMap,
    cuMemUnmap,
    cuMemSetAccess,
    cuMemcpyHtoD_v2,
    cuMemcpyDtoH_v2,
    cuMemcpyDtoD_v2,
    cuMemsetD8_v2,
    cuGetErrorName,
    cuGetErrorString,
    cuGetProcAddress,
    cuGetProcAddress_v2,
);

/// The versioned symbol `cuGetProcAddress` hands out for a base name: per-thread-stream variants
/// (`_ptsz`) when flag 2 is set, `_v2` from CUDA 3.2 on (`cuGetProcAddress_v2` from 12.0), else
/// the base name.
pub fn resolve_versioned(base: &str, version: c_int, flags: u64) -> Option<*mut c_void> {
    if flags & 2 != 0
        && let Some(p) = symbol(&format!("{base}_ptsz"))
    {
        return Some(p);
    }
    let v2_from = if base == "cuGetProcAddress" {
        12000
    } else {
        3020
    };
    if version >= v2_from
        && let Some(p) = symbol(&format!("{base}_v2"))
    {
        return Some(p);
    }
    symbol(base)
}

fn get_proc(
    sym: *const c_char,
    pfn: *mut *mut c_void,
    version: c_int,
    flags: u64,
    status: *mut c_int,
) -> CUresult {
    run(|| {
        if sym.is_null() || pfn.is_null() {
            return Err(INVALID_VALUE);
        }
        // SAFETY: NUL-terminated symbol name from the caller.
        let name = unsafe { CStr::from_ptr(sym) }
            .to_str()
            .map_err(|_| INVALID_VALUE)?;
        match resolve_versioned(name, version, flags) {
            Some(p) => {
                put(pfn, p)?;
                if !status.is_null() {
                    put(status, 0)?;
                }
                Ok(())
            }
            None => {
                put(pfn, std::ptr::null_mut())?;
                if !status.is_null() {
                    put(status, 1)?;
                }
                Err(NOT_FOUND)
            }
        }
    })
}

/// `cuGetProcAddress` (CUDA 11.3+).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGetProcAddress(
    sym: *const c_char,
    pfn: *mut *mut c_void,
    version: c_int,
    flags: u64,
) -> CUresult {
    get_proc(sym, pfn, version, flags, std::ptr::null_mut())
}

/// `cuGetProcAddress_v2` (CUDA 12.0+), with the symbol status out-parameter.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGetProcAddress_v2(
    sym: *const c_char,
    pfn: *mut *mut c_void,
    version: c_int,
    flags: u64,
    status: *mut c_int,
) -> CUresult {
    get_proc(sym, pfn, version, flags, status)
}

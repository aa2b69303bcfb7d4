//! Fake `libnvidia-ml.so.1` over the same simulated cards as the fake libcuda.
//!
//! Reads the inventory and the shared state file exactly like the fake driver does (same
//! environment variables), so memory in use, running processes and utilisation reflect what
//! the fake driver's users did, across processes. Utilisation is busy time over a window:
//! `nvmlDeviceGetUtilizationRates` uses the last `HAMI_FAKE_NVML_WINDOW_MS` (default 1000 ms),
//! `nvmlDeviceGetProcessUtilization` the time since `lastSeenTimeStamp` (20 ms to 1.2 s).
//! `HAMI_FAKE_NVML_PID_OFFSET` shifts the pids NVML reports, to simulate a PID namespace.
//! Handles are checked: a handle this library did not hand out gives
//! `NVML_ERROR_INVALID_ARGUMENT`.
//!
//! Safety contract of every exported function: NVML's (valid out-pointers, NUL-terminated
//! strings).
#![allow(non_snake_case, clippy::missing_safety_doc)]

use hami_fake_devices::inventory::Inventory;
use hami_fake_devices::state::{self, MAX_PROCS, SharedState};
use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// `nvmlReturn_t`.
pub type NvmlReturn = c_int;
/// `nvmlDevice_t`.
pub type NvmlDevice = *mut c_void;

const SUCCESS: NvmlReturn = 0;
const UNINITIALIZED: NvmlReturn = 1;
const INVALID_ARGUMENT: NvmlReturn = 2;
const NOT_SUPPORTED: NvmlReturn = 3;
const NOT_FOUND: NvmlReturn = 6;
const INSUFFICIENT_SIZE: NvmlReturn = 7;
const ARGUMENT_VERSION_MISMATCH: NvmlReturn = 25;
const UNKNOWN: NvmlReturn = 999;

/// Handles are `HANDLE_BASE + index`: recognisable, and never a valid heap address.
const HANDLE_BASE: usize = 0x7e57_0000_0000;

struct Nvml {
    inv: Inventory,
    st: &'static SharedState,
}

static NVML: OnceLock<Result<Nvml, String>> = OnceLock::new();
static INITED: AtomicBool = AtomicBool::new(false);

fn guard(f: impl FnOnce() -> Result<(), NvmlReturn>) -> NvmlReturn {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => SUCCESS,
        Ok(Err(e)) => e,
        Err(_) => UNKNOWN,
    }
}

fn nvml() -> Result<&'static Nvml, NvmlReturn> {
    if !INITED.load(Ordering::Acquire) {
        return Err(UNINITIALIZED);
    }
    match NVML.get() {
        Some(Ok(n)) => Ok(n),
        _ => Err(UNINITIALIZED),
    }
}

fn put<T>(p: *mut T, v: T) -> Result<(), NvmlReturn> {
    if p.is_null() {
        return Err(INVALID_ARGUMENT);
    }
    // SAFETY: non-null out-pointer from the caller.
    unsafe { p.write(v) };
    Ok(())
}

fn write_str(dst: *mut c_char, len: c_uint, s: &str) -> Result<(), NvmlReturn> {
    if dst.is_null() {
        return Err(INVALID_ARGUMENT);
    }
    if (len as usize) < s.len() + 1 {
        return Err(INSUFFICIENT_SIZE);
    }
    // SAFETY: the caller gave `len` >= s.len() + 1 writable bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), dst as *mut u8, s.len());
        *dst.add(s.len()) = 0;
    }
    Ok(())
}

fn dev_of(n: &Nvml, h: NvmlDevice) -> Result<usize, NvmlReturn> {
    let i = (h as usize).wrapping_sub(HANDLE_BASE);
    if i < n.inv.devices.len() {
        Ok(i)
    } else {
        Err(INVALID_ARGUMENT)
    }
}

fn init() -> NvmlReturn {
    guard(|| {
        let r = NVML.get_or_init(|| {
            let inv = Inventory::from_env().map_err(|e| e.to_string())?;
            let st = state::open(&inv)?;
            Ok(Nvml { inv, st })
        });
        match r {
            Ok(_) => {
                INITED.store(true, Ordering::Release);
                Ok(())
            }
            Err(e) => {
                eprintln!("[hami-rs fake nvml] nvmlInit failed: {e}");
                Err(UNKNOWN)
            }
        }
    })
}

/// `nvmlInit_v2`.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlInit_v2() -> NvmlReturn {
    init()
}

/// `nvmlInit`.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlInit() -> NvmlReturn {
    init()
}

/// `nvmlInitWithFlags`.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlInitWithFlags(_flags: c_uint) -> NvmlReturn {
    init()
}

/// `nvmlShutdown` (the state stays mapped; a later init is cheap).
#[unsafe(no_mangle)]
pub extern "C" fn nvmlShutdown() -> NvmlReturn {
    guard(|| {
        nvml()?;
        INITED.store(false, Ordering::Release);
        Ok(())
    })
}

/// `nvmlErrorString`.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlErrorString(r: NvmlReturn) -> *const c_char {
    let s: &CStr = match r {
        0 => c"Success",
        1 => c"Uninitialized",
        2 => c"Invalid Argument",
        3 => c"Not Supported",
        6 => c"Not Found",
        7 => c"Insufficient Size",
        25 => c"Argument version mismatch",
        _ => c"Unknown Error",
    };
    s.as_ptr()
}

/// `nvmlSystemGetDriverVersion`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetDriverVersion(v: *mut c_char, len: c_uint) -> NvmlReturn {
    guard(|| {
        nvml()?;
        write_str(v, len, "550.54.15")
    })
}

/// `nvmlSystemGetNVMLVersion`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetNVMLVersion(v: *mut c_char, len: c_uint) -> NvmlReturn {
    guard(|| write_str(v, len, "12.550.54.15"))
}

/// `nvmlSystemGetCudaDriverVersion`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetCudaDriverVersion(v: *mut c_int) -> NvmlReturn {
    guard(|| put(v, 12040))
}

/// `nvmlSystemGetCudaDriverVersion_v2`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetCudaDriverVersion_v2(v: *mut c_int) -> NvmlReturn {
    guard(|| put(v, 12040))
}

/// `nvmlDeviceGetCount_v2`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCount_v2(n: *mut c_uint) -> NvmlReturn {
    guard(|| put(n, nvml()?.inv.devices.len() as c_uint))
}

/// `nvmlDeviceGetCount`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCount(n: *mut c_uint) -> NvmlReturn {
    // SAFETY: same contract.
    unsafe { nvmlDeviceGetCount_v2(n) }
}

/// `nvmlDeviceGetHandleByIndex_v2`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex_v2(
    i: c_uint,
    h: *mut NvmlDevice,
) -> NvmlReturn {
    guard(|| {
        if i as usize >= nvml()?.inv.devices.len() {
            return Err(INVALID_ARGUMENT);
        }
        put(h, (HANDLE_BASE + i as usize) as NvmlDevice)
    })
}

/// `nvmlDeviceGetHandleByIndex`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex(i: c_uint, h: *mut NvmlDevice) -> NvmlReturn {
    // SAFETY: same contract.
    unsafe { nvmlDeviceGetHandleByIndex_v2(i, h) }
}

/// `nvmlDeviceGetHandleByUUID`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetHandleByUUID(
    uuid: *const c_char,
    h: *mut NvmlDevice,
) -> NvmlReturn {
    guard(|| {
        let n = nvml()?;
        if uuid.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        // SAFETY: NUL-terminated string from the caller.
        let u = unsafe { CStr::from_ptr(uuid) }.to_string_lossy();
        let i = n
            .inv
            .devices
            .iter()
            .position(|d| d.uuid == u)
            .ok_or(NOT_FOUND)?;
        put(h, (HANDLE_BASE + i) as NvmlDevice)
    })
}

/// `nvmlDeviceGetIndex`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetIndex(h: NvmlDevice, i: *mut c_uint) -> NvmlReturn {
    guard(|| put(i, dev_of(nvml()?, h)? as c_uint))
}

/// `nvmlDeviceGetName`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetName(
    h: NvmlDevice,
    name: *mut c_char,
    len: c_uint,
) -> NvmlReturn {
    guard(|| {
        let n = nvml()?;
        write_str(name, len, &n.inv.devices[dev_of(n, h)?].name)
    })
}

/// `nvmlDeviceGetUUID`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetUUID(
    h: NvmlDevice,
    uuid: *mut c_char,
    len: c_uint,
) -> NvmlReturn {
    guard(|| {
        let n = nvml()?;
        write_str(uuid, len, &n.inv.devices[dev_of(n, h)?].uuid)
    })
}

/// `nvmlMemory_t`.
#[repr(C)]
pub struct Memory {
    /// Total bytes.
    pub total: u64,
    /// Free bytes.
    pub free: u64,
    /// Used bytes.
    pub used: u64,
}

/// `nvmlMemory_v2_t`.
#[repr(C)]
pub struct MemoryV2 {
    /// Must be [`MEMORY_V2_VERSION`].
    pub version: c_uint,
    /// Total bytes.
    pub total: u64,
    /// Reserved by the driver (0 in the fake).
    pub reserved: u64,
    /// Free bytes.
    pub free: u64,
    /// Used bytes.
    pub used: u64,
}

/// `nvmlMemory_v2` = sizeof | 2 << 24.
pub const MEMORY_V2_VERSION: c_uint = std::mem::size_of::<MemoryV2>() as c_uint | (2 << 24);

fn mem(h: NvmlDevice) -> Result<(u64, u64), NvmlReturn> {
    let n = nvml()?;
    let d = dev_of(n, h)?;
    Ok((
        n.inv.devices[d].memory_bytes,
        n.st.devices[d].mem_used.load(Ordering::Acquire),
    ))
}

/// `nvmlDeviceGetMemoryInfo`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo(h: NvmlDevice, m: *mut Memory) -> NvmlReturn {
    guard(|| {
        let (total, used) = mem(h)?;
        put(
            m,
            Memory {
                total,
                free: total.saturating_sub(used),
                used,
            },
        )
    })
}

/// `nvmlDeviceGetMemoryInfo_v2`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo_v2(h: NvmlDevice, m: *mut MemoryV2) -> NvmlReturn {
    guard(|| {
        let (total, used) = mem(h)?;
        if m.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        // SAFETY: non-null struct from the caller; the version is its first field.
        if unsafe { (*m).version } != MEMORY_V2_VERSION {
            return Err(ARGUMENT_VERSION_MISMATCH);
        }
        put(
            m,
            MemoryV2 {
                version: MEMORY_V2_VERSION,
                total,
                reserved: 0,
                free: total.saturating_sub(used),
                used,
            },
        )
    })
}

/// `nvmlUtilization_t`.
#[repr(C)]
pub struct Utilization {
    /// Percent of time a kernel was running.
    pub gpu: c_uint,
    /// Percent of time memory was read or written (0 in the fake).
    pub memory: c_uint,
}

fn window_ms() -> u64 {
    std::env::var("HAMI_FAKE_NVML_WINDOW_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// `nvmlDeviceGetUtilizationRates`: busy time over the last window.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetUtilizationRates(
    h: NvmlDevice,
    u: *mut Utilization,
) -> NvmlReturn {
    guard(|| {
        let n = nvml()?;
        let d = dev_of(n, h)?;
        let util = n.st.device_util(d, window_ms() * 1_000_000);
        put(
            u,
            Utilization {
                gpu: (util * 100.0).round() as c_uint,
                memory: 0,
            },
        )
    })
}

/// `nvmlProcessUtilizationSample_t`.
#[repr(C)]
pub struct ProcessUtilizationSample {
    /// Process id.
    pub pid: c_uint,
    /// CPU timestamp in microseconds.
    pub time_stamp: u64,
    /// SM utilisation, percent.
    pub sm_util: c_uint,
    /// Memory utilisation, percent.
    pub mem_util: c_uint,
    /// Encoder utilisation, percent.
    pub enc_util: c_uint,
    /// Decoder utilisation, percent.
    pub dec_util: c_uint,
}

/// `HAMI_FAKE_NVML_PID_OFFSET`: added to every pid NVML reports, to simulate a container's PID
/// namespace (where NVML shows host pids that the processes inside do not know).
fn pid_offset() -> i32 {
    static OFF: OnceLock<i32> = OnceLock::new();
    *OFF.get_or_init(|| {
        std::env::var("HAMI_FAKE_NVML_PID_OFFSET")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    })
}

fn active_slots(n: &Nvml, d: usize) -> Vec<(usize, i32)> {
    (0..MAX_PROCS)
        .filter_map(|i| {
            let s = &n.st.procs[i];
            let pid = s.pid.load(Ordering::Acquire);
            (pid > 0 && s.active_mask.load(Ordering::Relaxed) & (1 << d) != 0)
                .then_some((i, pid + pid_offset()))
        })
        .collect()
}

/// `nvmlDeviceGetProcessUtilization`: one sample per process using the card, averaged over the
/// time since `last_seen` (µs since the epoch), clamped to 20 ms..1.2 s.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetProcessUtilization(
    h: NvmlDevice,
    out: *mut ProcessUtilizationSample,
    count: *mut c_uint,
    last_seen: u64,
) -> NvmlReturn {
    guard(|| {
        let n = nvml()?;
        let d = dev_of(n, h)?;
        if count.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        let procs = active_slots(n, d);
        if procs.is_empty() {
            put(count, 0)?;
            return Err(NOT_FOUND);
        }
        // SAFETY: non-null count from the caller.
        let cap = unsafe { *count } as usize;
        put(count, procs.len() as c_uint)?;
        if out.is_null() || cap < procs.len() {
            return Err(INSUFFICIENT_SIZE);
        }
        let now = hami_fake_devices::realtime_us();
        let window_us = if last_seen == 0 || last_seen >= now {
            1_000_000
        } else {
            now - last_seen
        };
        let window_ns = window_us.clamp(20_000, 1_200_000) * 1000;
        for (k, (slot, pid)) in procs.iter().enumerate() {
            let u = n.st.proc_util(*slot, d, window_ns);
            let s = ProcessUtilizationSample {
                pid: *pid as c_uint,
                time_stamp: now,
                sm_util: (u * 100.0).round() as c_uint,
                mem_util: 0,
                enc_util: 0,
                dec_util: 0,
            };
            // SAFETY: the caller's buffer holds `cap` >= procs.len() samples.
            unsafe { out.add(k).write(s) };
        }
        Ok(())
    })
}

/// `nvmlProcessInfo_t` (v2/v3 layout).
#[repr(C)]
pub struct ProcessInfo {
    /// Process id.
    pub pid: c_uint,
    /// Bytes of device memory the process holds.
    pub used_gpu_memory: u64,
    /// MIG GPU instance (0xFFFFFFFF: none).
    pub gpu_instance_id: c_uint,
    /// MIG compute instance (0xFFFFFFFF: none).
    pub compute_instance_id: c_uint,
}

fn running(h: NvmlDevice, count: *mut c_uint, out: *mut ProcessInfo) -> Result<(), NvmlReturn> {
    let n = nvml()?;
    let d = dev_of(n, h)?;
    if count.is_null() {
        return Err(INVALID_ARGUMENT);
    }
    let procs = active_slots(n, d);
    // SAFETY: non-null count from the caller.
    let cap = unsafe { *count } as usize;
    put(count, procs.len() as c_uint)?;
    if procs.is_empty() {
        return Ok(());
    }
    if out.is_null() || cap < procs.len() {
        return Err(INSUFFICIENT_SIZE);
    }
    for (k, (slot, pid)) in procs.iter().enumerate() {
        let used = n.st.procs[*slot].mem_used[d].load(Ordering::Acquire);
        let p = ProcessInfo {
            pid: *pid as c_uint,
            used_gpu_memory: used,
            gpu_instance_id: u32::MAX,
            compute_instance_id: u32::MAX,
        };
        // SAFETY: the caller's buffer holds `cap` >= procs.len() entries.
        unsafe { out.add(k).write(p) };
    }
    Ok(())
}

/// `nvmlDeviceGetComputeRunningProcesses_v3`: processes with a context or memory on the card.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetComputeRunningProcesses_v3(
    h: NvmlDevice,
    count: *mut c_uint,
    out: *mut ProcessInfo,
) -> NvmlReturn {
    guard(|| running(h, count, out))
}

/// `nvmlDeviceGetComputeRunningProcesses_v2` (same layout as v3).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetComputeRunningProcesses_v2(
    h: NvmlDevice,
    count: *mut c_uint,
    out: *mut ProcessInfo,
) -> NvmlReturn {
    guard(|| running(h, count, out))
}

/// `nvmlDeviceGetGraphicsRunningProcesses_v3`: always none.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetGraphicsRunningProcesses_v3(
    h: NvmlDevice,
    count: *mut c_uint,
    _out: *mut ProcessInfo,
) -> NvmlReturn {
    guard(|| {
        dev_of(nvml()?, h)?;
        put(count, 0)
    })
}

/// `nvmlDeviceGetNumaNodeId`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetNumaNodeId(h: NvmlDevice, node: *mut c_uint) -> NvmlReturn {
    guard(|| {
        let n = nvml()?;
        put(node, n.inv.devices[dev_of(n, h)?].numa as c_uint)
    })
}

/// `nvmlDeviceGetTopologyCommonAncestor`: same card → INTERNAL (0), same NUMA node → NODE (40),
/// otherwise SYSTEM (50).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetTopologyCommonAncestor(
    a: NvmlDevice,
    b: NvmlDevice,
    level: *mut c_int,
) -> NvmlReturn {
    guard(|| {
        let n = nvml()?;
        let (x, y) = (dev_of(n, a)?, dev_of(n, b)?);
        let l = if x == y {
            0
        } else if n.inv.devices[x].numa == n.inv.devices[y].numa {
            40
        } else {
            50
        };
        put(level, l)
    })
}

/// `nvmlDeviceGetCudaComputeCapability`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCudaComputeCapability(
    h: NvmlDevice,
    major: *mut c_int,
    minor: *mut c_int,
) -> NvmlReturn {
    guard(|| {
        let n = nvml()?;
        let cc = n.inv.devices[dev_of(n, h)?].cc;
        put(major, cc.0 as c_int)?;
        put(minor, cc.1 as c_int)
    })
}

/// `nvmlDeviceGetMinorNumber`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMinorNumber(h: NvmlDevice, m: *mut c_uint) -> NvmlReturn {
    guard(|| put(m, dev_of(nvml()?, h)? as c_uint))
}

/// `nvmlPciInfo_t`.
#[repr(C)]
pub struct PciInfo {
    /// Legacy bus id string.
    pub bus_id_legacy: [c_char; 16],
    /// Domain.
    pub domain: c_uint,
    /// Bus.
    pub bus: c_uint,
    /// Device.
    pub device: c_uint,
    /// PCI device id.
    pub pci_device_id: c_uint,
    /// PCI subsystem id.
    pub pci_sub_system_id: c_uint,
    /// Bus id string.
    pub bus_id: [c_char; 32],
}

/// `nvmlDeviceGetPciInfo_v3`: bus = index + 1, matching the fake driver's `cuDeviceGetPCIBusId`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPciInfo_v3(h: NvmlDevice, p: *mut PciInfo) -> NvmlReturn {
    guard(|| {
        let d = dev_of(nvml()?, h)?;
        let mut info = PciInfo {
            bus_id_legacy: [0; 16],
            domain: 0,
            bus: d as c_uint + 1,
            device: 0,
            pci_device_id: 0x20b0_10de,
            pci_sub_system_id: 0,
            bus_id: [0; 32],
        };
        let id = format!("00000000:{:02X}:00.0", d + 1);
        for (i, b) in id.bytes().enumerate() {
            info.bus_id[i] = b as c_char;
            if i < 15 {
                info.bus_id_legacy[i] = b as c_char;
            }
        }
        put(p, info)
    })
}

/// `nvmlGpuInstanceProfileInfo_t` (v1).
#[repr(C)]
pub struct GpuInstanceProfileInfo {
    /// Profile id.
    pub id: c_uint,
    /// Peer-to-peer support (0 in the fake).
    pub is_p2p_supported: c_uint,
    /// Memory slices one instance takes.
    pub slice_count: c_uint,
    /// Instances of this profile the card can hold at once.
    pub instance_count: c_uint,
    /// Multiprocessors of one instance.
    pub multiprocessor_count: c_uint,
    /// Copy engines (0 in the fake).
    pub copy_engine_count: c_uint,
    /// Decoders (0 in the fake).
    pub decoder_count: c_uint,
    /// Encoders (0 in the fake).
    pub encoder_count: c_uint,
    /// JPEG engines (0 in the fake).
    pub jpeg_count: c_uint,
    /// OFA engines (0 in the fake).
    pub ofa_count: c_uint,
    /// Memory of one instance, MiB.
    pub memory_size_mb: u64,
}

/// `nvmlGpuInstancePlacement_t`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GpuInstancePlacement {
    /// First memory slice.
    pub start: c_uint,
    /// Memory slices.
    pub size: c_uint,
}

/// NVML's GPU instance profile ids (`NVML_GPU_INSTANCE_PROFILE_<g>_SLICE`) and their compute
/// slices `g`.
const GI_PROFILES: [(c_uint, u32); 7] = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 7), (5, 8), (6, 6)];

/// The fake card's MIG profile for NVML profile id `profile`, and the card's SM count:
/// `NOT_SUPPORTED` for a card without MIG or a profile its geometry lacks (as NVML answers).
fn gi_profile(
    h: NvmlDevice,
    profile: c_uint,
) -> Result<(hami_fake_devices::mig::FakeMigProfile, u32), NvmlReturn> {
    let n = nvml()?;
    let dev = &n.inv.devices[dev_of(n, h)?];
    let g = GI_PROFILES
        .iter()
        .find(|(id, _)| *id == profile)
        .map(|(_, g)| *g)
        .ok_or(INVALID_ARGUMENT)?;
    hami_fake_devices::mig::profiles_for(&dev.name, dev.memory_bytes / (1024 * 1024))
        .into_iter()
        .find(|p| p.name.starts_with(&format!("{g}g.")))
        .map(|p| (p, dev.sms))
        .ok_or(NOT_SUPPORTED)
}

/// `nvmlDeviceGetGpuInstanceProfileInfo`: the fake geometry of
/// [`hami_fake_devices::mig::profiles_for`]; multiprocessors = the card's SMs × the profile's
/// compute share.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstanceProfileInfo(
    h: NvmlDevice,
    profile: c_uint,
    info: *mut GpuInstanceProfileInfo,
) -> NvmlReturn {
    guard(|| {
        let (p, sms) = gi_profile(h, profile)?;
        put(
            info,
            GpuInstanceProfileInfo {
                id: profile,
                is_p2p_supported: 0,
                slice_count: p.slice_count,
                instance_count: p.placements.len() as c_uint,
                multiprocessor_count: sms * p.cores / 100,
                copy_engine_count: 0,
                decoder_count: 0,
                encoder_count: 0,
                jpeg_count: 0,
                ofa_count: 0,
                memory_size_mb: p.memory_mib,
            },
        )
    })
}

/// `nvmlDeviceGetGpuInstancePossiblePlacements_v2`: NVML's two-call protocol (a null buffer
/// asks for the count; a buffer smaller than the count is `INSUFFICIENT_SIZE`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstancePossiblePlacements_v2(
    h: NvmlDevice,
    profile: c_uint,
    placements: *mut GpuInstancePlacement,
    count: *mut c_uint,
) -> NvmlReturn {
    guard(|| {
        let (p, _) = gi_profile(h, profile)?;
        if count.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        let n = p.placements.len();
        // SAFETY: non-null in/out count from the caller.
        let room = unsafe { *count } as usize;
        if placements.is_null() {
            return put(count, n as c_uint);
        }
        if room < n {
            put(count, n as c_uint)?;
            return Err(INSUFFICIENT_SIZE);
        }
        for (i, &(start, size)) in p.placements.iter().enumerate() {
            // SAFETY: the caller gave room for `room` >= n placements.
            unsafe {
                placements
                    .add(i)
                    .write(GpuInstancePlacement { start, size })
            };
        }
        put(count, n as c_uint)
    })
}

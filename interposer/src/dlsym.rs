//! Run-time symbol lookup: `dlsym` and `cuGetProcAddress(_v2)`.
//!
//! Frameworks `dlopen("libcuda.so.1")` and look functions up by name, which `LD_PRELOAD` alone
//! does not affect. We export `dlsym` and answer lookups of the functions we limit with our
//! hooks; every other lookup goes to glibc's `dlsym`.
//!
//! **RTLD_NEXT.** glibc resolves `dlsym(RTLD_NEXT, ..)` relative to the object that *called*
//! `dlsym`, found from the return address. A plain wrapper would make that caller us, and break
//! every other library that uses RTLD_NEXT. Our `dlsym` is therefore a naked x86-64 trampoline:
//! it asks [`dlsym_decide`] whether the name is one of ours and, if not, *jumps* (not calls) to
//! glibc's `dlsym` with the original stack, so glibc sees the real caller's return address.
//! On other architectures `dlsym` is not exported (lookups through it are then not limited).
//!
//! **cuGetProcAddress.** CUDA ≥ 11.3 hands out driver functions by base name plus the CUDA
//! version the caller was built for (and a per-thread-default-stream flag). We let the real
//! driver answer, then replace the pointer with our hook for the same versioned function:
//! first by comparing the returned address with the real `_ptsz`, `_v2` and plain symbols, else
//! by the documented rules (`_ptsz` when flag 2 is set, `_v2` from CUDA 3.2, the pointer for
//! `cuGetProcAddress` itself → our hook of the version asked for, `_v2` from 12.0).

use crate::real::{self, Sym};
use crate::{CUDA_SUCCESS, CUresult, config, ensure_init, guard, hooks};
use std::ffi::{CStr, c_char, c_int, c_void};

macro_rules! hook_table {
    (cu: [$($cu:ident),* $(,)?], nvml: [$($nv:ident),* $(,)?]) => {
        /// Our hook and the real symbol for a name we interpose.
        pub fn hook_entry(name: &[u8]) -> Option<(*mut c_void, &'static Sym)> {
            match name {
                $(n if n == stringify!($cu).as_bytes() =>
                    Some((hooks::$cu as *mut c_void, &real::cu::$cu)),)*
                $(n if n == stringify!($nv).as_bytes() =>
                    Some((hooks::$nv as *mut c_void, &real::nvml::$nv)),)*
                b"cuGetProcAddress" => Some((cuGetProcAddress as *mut c_void, &real::cu::cuGetProcAddress)),
                b"cuGetProcAddress_v2" => Some((cuGetProcAddress_v2 as *mut c_void, &real::cu::cuGetProcAddress_v2)),
                _ => None,
            }
        }
    };
}

hook_table!(
    cu: [
        cuInit, cuMemAlloc_v2, cuMemAllocPitch_v2, cuMemAllocManaged, cuMemAllocAsync,
        cuMemAllocAsync_ptsz, cuMemAllocFromPoolAsync, cuMemAllocFromPoolAsync_ptsz, cuMemFree_v2,
        cuMemFreeAsync, cuMemFreeAsync_ptsz, cuArrayCreate_v2, cuArray3DCreate_v2, cuArrayDestroy,
        cuMemCreate, cuMemRelease, cuMemGetInfo_v2, cuDeviceTotalMem_v2, cuMemPoolCreate,
        cuDeviceGetDefaultMemPool, cuDeviceGetMemPool, cuLaunchKernel, cuLaunchKernel_ptsz,
        cuLaunchKernelEx, cuLaunchKernelEx_ptsz, cuLaunchCooperativeKernel,
        cuLaunchCooperativeKernel_ptsz, cuGraphLaunch, cuGraphLaunch_ptsz,
    ],
    nvml: [nvmlDeviceGetMemoryInfo, nvmlDeviceGetMemoryInfo_v2]
);

/// Decides a `dlsym` lookup: our hook's address, or null to let glibc answer. Never panics,
/// never takes a lock, never calls `dlsym` itself.
extern "C" fn dlsym_decide(_handle: *mut c_void, name: *const c_char) -> *mut c_void {
    // Resolve glibc's dlsym first: the trampoline jumps through it when we return null.
    real::real_dlsym();
    if name.is_null() {
        return std::ptr::null_mut();
    }
    let r = std::panic::catch_unwind(|| {
        // SAFETY: dlsym's contract: `name` is a NUL-terminated string.
        let n = unsafe { CStr::from_ptr(name) }.to_bytes();
        if !(n.starts_with(b"cu") || n.starts_with(b"nvml")) || !config().enabled() {
            return std::ptr::null_mut();
        }
        hook_entry(n).map_or(std::ptr::null_mut(), |(h, _)| h)
    });
    r.unwrap_or(std::ptr::null_mut())
}

/// `dlsym`, see the module documentation.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlsym(_handle: *mut c_void, _name: *const c_char) -> *mut c_void {
    core::arch::naked_asm!(
        // Keep the arguments; 3 pushes of 8 bytes re-align the stack to 16 for the call.
        "push rdi",
        "push rsi",
        "sub rsp, 8",
        "call {decide}",
        "add rsp, 8",
        "pop rsi",
        "pop rdi",
        "test rax, rax",
        "jz 2f",
        "ret",
        // Tail-jump: glibc's dlsym returns straight to our caller and sees its address.
        "2:",
        "jmp qword ptr [rip + {real}]",
        decide = sym dlsym_decide,
        real = sym crate::real::REAL_DLSYM,
    )
}

/// The hook to hand out for `base` looked up for CUDA `version` with `flags`, given the real
/// pointer `got` the driver returned.
pub fn versioned_hook(
    base: &str,
    version: c_int,
    flags: u64,
    got: *mut c_void,
) -> Option<*mut c_void> {
    if base == "cuGetProcAddress" {
        return Some(if version >= 12000 {
            cuGetProcAddress_v2 as *mut c_void
        } else {
            cuGetProcAddress as *mut c_void
        });
    }
    let names = [
        format!("{base}_ptsz"),
        format!("{base}_v2"),
        base.to_string(),
    ];
    let entries: Vec<(&String, (*mut c_void, &'static Sym))> = names
        .iter()
        .filter_map(|n| hook_entry(n.as_bytes()).map(|e| (n, e)))
        .collect();
    if let Some((_, (h, _))) = entries
        .iter()
        .find(|(_, (_, s))| !got.is_null() && s.addr() == got)
    {
        return Some(*h);
    }
    let pick = |suffix: &str| {
        entries
            .iter()
            .find(|(n, _)| *n == &format!("{base}{suffix}"))
    };
    if flags & 2 != 0
        && let Some((_, (h, _))) = pick("_ptsz")
    {
        return Some(*h);
    }
    if version >= 3020
        && let Some((_, (h, _))) = pick("_v2")
    {
        return Some(*h);
    }
    pick("").map(|(_, (h, _))| *h)
}

fn patch(sym: *const c_char, pfn: *mut *mut c_void, version: c_int, flags: u64) {
    if sym.is_null() || pfn.is_null() || !config().enabled() {
        return;
    }
    // SAFETY: NUL-terminated symbol name from the caller.
    let Ok(name) = unsafe { CStr::from_ptr(sym) }.to_str() else {
        return;
    };
    // SAFETY: the driver has just written *pfn.
    let got = unsafe { *pfn };
    if let Some(h) = versioned_hook(name, version, flags, got) {
        // SAFETY: non-null out-pointer from the caller.
        unsafe { *pfn = h };
    }
}

type PGpa = unsafe extern "C" fn(*const c_char, *mut *mut c_void, c_int, u64) -> CUresult;
type PGpa2 =
    unsafe extern "C" fn(*const c_char, *mut *mut c_void, c_int, u64, *mut c_int) -> CUresult;

/// `cuGetProcAddress` (CUDA 11.3+).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGetProcAddress(
    sym: *const c_char,
    pfn: *mut *mut c_void,
    version: c_int,
    flags: u64,
) -> CUresult {
    guard(|| {
        ensure_init();
        // SAFETY: resolved driver symbol with its documented signature.
        let Some(f) = (unsafe { real::cu::cuGetProcAddress.get::<PGpa>() }) else {
            return crate::CUDA_ERROR_NOT_FOUND;
        };
        // SAFETY: arguments passed through.
        let r = unsafe { f(sym, pfn, version, flags) };
        if r == CUDA_SUCCESS {
            patch(sym, pfn, version, flags);
        }
        r
    })
}

/// `cuGetProcAddress_v2` (CUDA 12.0+).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGetProcAddress_v2(
    sym: *const c_char,
    pfn: *mut *mut c_void,
    version: c_int,
    flags: u64,
    status: *mut c_int,
) -> CUresult {
    guard(|| {
        ensure_init();
        // SAFETY: resolved driver symbol with its documented signature.
        let Some(f) = (unsafe { real::cu::cuGetProcAddress_v2.get::<PGpa2>() }) else {
            return crate::CUDA_ERROR_NOT_FOUND;
        };
        // SAFETY: arguments passed through.
        let r = unsafe { f(sym, pfn, version, flags, status) };
        if r == CUDA_SUCCESS {
            patch(sym, pfn, version, flags);
        }
        r
    })
}

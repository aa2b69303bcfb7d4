//! The real driver and NVML entry points, resolved with glibc's own `dlsym` (never ours).

use std::ffi::{CStr, c_char, c_void};
use std::sync::atomic::{AtomicPtr, Ordering};

/// Signature of `dlsym`.
pub type DlsymFn = unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void;

/// glibc's `dlsym`. Read by the x86-64 trampoline in [`crate::dlsym`] with a plain load, so it
/// must stay a pointer-sized static.
pub static REAL_DLSYM: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

unsafe extern "C" fn no_dlsym(_h: *mut c_void, _n: *const c_char) -> *mut c_void {
    std::ptr::null_mut()
}

/// Returns glibc's `dlsym`, finding it on first use with `dlvsym(RTLD_NEXT, "dlsym", ...)`.
pub fn real_dlsym() -> DlsymFn {
    let mut p = REAL_DLSYM.load(Ordering::Acquire);
    if p.is_null() {
        for ver in [c"GLIBC_2.34", c"GLIBC_2.2.5", c"GLIBC_2.17"] {
            // SAFETY: dlvsym with constant NUL-terminated strings; RTLD_NEXT from our object
            // finds the next definition, libc's.
            p = unsafe { libc::dlvsym(libc::RTLD_NEXT, c"dlsym".as_ptr(), ver.as_ptr()) };
            if !p.is_null() {
                break;
            }
        }
        if p.is_null() {
            p = no_dlsym as *mut c_void;
        }
        REAL_DLSYM.store(p, Ordering::Release);
    }
    // SAFETY: p is glibc's dlsym or `no_dlsym`, both with the DlsymFn signature.
    unsafe { std::mem::transmute::<*mut c_void, DlsymFn>(p) }
}

/// A lazily resolved function pointer.
pub struct Sym(AtomicPtr<c_void>);

impl Sym {
    /// Unresolved.
    pub const fn new() -> Sym {
        Sym(AtomicPtr::new(std::ptr::null_mut()))
    }

    /// Resolves `name` in `handle`.
    pub(crate) fn resolve(&self, handle: *mut c_void, name: &CStr) {
        if handle.is_null() {
            return;
        }
        // SAFETY: valid handle from dlopen and NUL-terminated name.
        let p = unsafe { real_dlsym()(handle, name.as_ptr()) };
        self.0.store(p, Ordering::Release);
    }

    /// The raw address (null when missing).
    pub fn addr(&self) -> *mut c_void {
        self.0.load(Ordering::Acquire)
    }

    /// The function as type `F`.
    ///
    /// # Safety
    /// `F` must be the `extern "C"` function-pointer type of the resolved symbol.
    #[inline(always)]
    pub unsafe fn get<F: Copy>(&self) -> Option<F> {
        let p = self.0.load(Ordering::Acquire);
        if p.is_null() {
            None
        } else {
            // SAFETY: F is a function pointer (pointer-sized) per the caller's contract.
            Some(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&p) })
        }
    }
}

impl Default for Sym {
    fn default() -> Self {
        Sym::new()
    }
}

macro_rules! symbols {
    ($resolve:ident, $($name:ident),* $(,)?) => {
        $(
            #[allow(non_upper_case_globals)]
            #[doc = concat!("Real `", stringify!($name), "`.")]
            pub static $name: Sym = Sym::new();
        )*
        /// Resolves every symbol of this group in `handle`.
        pub(crate) fn $resolve(handle: *mut c_void) {
            $(
                // SAFETY: the literal is NUL-terminated.
                $name.resolve(handle, unsafe {
                    CStr::from_bytes_with_nul_unchecked(concat!(stringify!($name), "\0").as_bytes())
                });
            )*
        }
    };
}

/// Driver entry points.
pub mod cu {
    use super::*;
    symbols!(
        resolve_all,
        cuInit,
        cuGetProcAddress,
        cuGetProcAddress_v2,
        cuCtxGetDevice,
        cuDeviceGetUuid,
        cuDeviceGetCount,
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
        cuArrayCreate_v2,
        cuArray3DCreate_v2,
        cuArrayDestroy,
        cuMemCreate,
        cuMemRelease,
        cuMemGetInfo_v2,
        cuDeviceTotalMem_v2,
        cuMemPoolCreate,
        cuDeviceGetDefaultMemPool,
        cuDeviceGetMemPool,
        cuLaunchKernel,
        cuLaunchKernel_ptsz,
        cuLaunchKernelEx,
        cuLaunchKernelEx_ptsz,
        cuLaunchCooperativeKernel,
        cuLaunchCooperativeKernel_ptsz,
        cuGraphLaunch,
        cuGraphLaunch_ptsz,
    );
}

/// NVML entry points.
pub mod nvml {
    use super::*;
    symbols!(
        resolve_all,
        nvmlInit_v2,
        nvmlDeviceGetHandleByUUID,
        nvmlDeviceGetIndex,
        nvmlDeviceGetUUID,
        nvmlDeviceGetMemoryInfo,
        nvmlDeviceGetMemoryInfo_v2,
        nvmlDeviceGetProcessUtilization,
    );
}

/// `dlopen(name, RTLD_NOW | RTLD_GLOBAL)`; null when the library is not there.
pub fn open_lib(name: &CStr) -> *mut c_void {
    // SAFETY: NUL-terminated name; dlopen is not interposed by us.
    unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) }
}

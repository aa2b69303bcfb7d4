//! The fake driver called in-process through its Rust items: error codes before init, contexts,
//! out-of-memory when the card is full, bad handles, simulated kernel time, versioned lookups.

use fake_cuda::*;
use std::ffi::c_void;

#[test]
fn fake_driver_behaves_honestly() {
    let dir = std::env::temp_dir().join(format!("fake-cuda-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // SAFETY: set before any thread of this test binary reads the environment.
    unsafe {
        std::env::set_var("HAMI_FAKE_GPUS", "count=2;memory=64m;sms=10");
        std::env::set_var("HAMI_FAKE_STATE", dir.join("state"));
        std::env::set_var("HAMI_FAKE_NS_PER_BLOCK", "100000");
    }
    let mut n = 0;
    // SAFETY (all calls below): valid out-pointers per the driver API.
    assert_eq!(
        unsafe { cuDeviceGetCount(&mut n) },
        3,
        "not initialised yet"
    );
    assert_eq!(cuInit(0), 0);
    assert_eq!(unsafe { cuDeviceGetCount(&mut n) }, 0);
    assert_eq!(n, 2);
    let mut p = 0u64;
    assert_eq!(
        unsafe { cuMemAlloc_v2(&mut p, 1) },
        201,
        "no current context"
    );
    let mut ctx: Handle = std::ptr::null_mut();
    assert_eq!(unsafe { cuDevicePrimaryCtxRetain(&mut ctx, 1) }, 0);
    assert_eq!(
        unsafe { cuDevicePrimaryCtxRetain(&mut ctx, 2) },
        101,
        "bad device"
    );
    assert_eq!(cuCtxSetCurrent(0x1234 as Handle), 201, "bad context");
    assert_eq!(cuCtxSetCurrent(ctx), 0);
    let mut dev = -1;
    assert_eq!(unsafe { cuCtxGetDevice(&mut dev) }, 0);
    assert_eq!(dev, 1);
    // The card is full at 64 MiB.
    assert_eq!(unsafe { cuMemAlloc_v2(&mut p, 64 << 20) }, 0);
    let mut q = 0u64;
    assert_eq!(unsafe { cuMemAlloc_v2(&mut q, 1) }, 2);
    let (mut free, mut total) = (0usize, 0usize);
    assert_eq!(unsafe { cuMemGetInfo_v2(&mut free, &mut total) }, 0);
    assert_eq!((free, total), (0, 64 << 20));
    assert_eq!(cuMemFree_v2(p + 1), 1, "not an allocation");
    assert_eq!(cuMemFree_v2(p), 0);
    assert_eq!(cuMemFree_v2(p), 1, "double free");
    // A kernel of 20 blocks × 100 µs takes 2 ms of simulated time.
    let t0 = std::time::Instant::now();
    let f = 0x10 as Handle;
    let launch = cuLaunchKernel(
        f,
        20,
        1,
        1,
        1,
        1,
        1,
        0,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    );
    assert_eq!(launch, 0);
    assert_eq!(cuCtxSynchronize(), 0);
    assert!(t0.elapsed() >= std::time::Duration::from_millis(2));
    assert_eq!(
        cuLaunchKernel(
            std::ptr::null_mut(),
            1,
            1,
            1,
            1,
            1,
            1,
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut()
        ),
        400
    );
    // Versioned lookups.
    let mut pfn: *mut c_void = std::ptr::null_mut();
    assert_eq!(
        unsafe { cuGetProcAddress(c"cuMemAlloc".as_ptr(), &mut pfn, 12000, 0) },
        0
    );
    assert_eq!(pfn, cuMemAlloc_v2 as *mut c_void);
    assert_eq!(
        unsafe { cuGetProcAddress(c"cuLaunchKernel".as_ptr(), &mut pfn, 12000, 2) },
        0
    );
    assert_eq!(pfn, cuLaunchKernel_ptsz as *mut c_void);
    let mut status = -1;
    assert_eq!(
        unsafe { cuGetProcAddress_v2(c"cuNoSuchThing".as_ptr(), &mut pfn, 12000, 0, &mut status) },
        500
    );
    assert_eq!((pfn, status), (std::ptr::null_mut(), 1));
    let _ = std::fs::remove_dir_all(&dir);
}

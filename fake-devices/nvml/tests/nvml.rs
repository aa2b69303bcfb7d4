//! The fake NVML called in-process: init, handles by index and UUID, bad handles, versioned
//! memory info, topology.

use fake_nvml::*;
use std::ffi::{c_char, c_uint};

#[test]
fn fake_nvml_behaves_honestly() {
    let dir = std::env::temp_dir().join(format!("fake-nvml-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // SAFETY: set before any thread of this test binary reads the environment.
    unsafe {
        std::env::set_var("HAMI_FAKE_GPUS", "count=2;memory=8g;device.1.numa=1");
        std::env::set_var("HAMI_FAKE_STATE", dir.join("state"));
    }
    let mut n: c_uint = 0;
    // SAFETY (all calls below): valid out-pointers per the NVML API.
    assert_eq!(unsafe { nvmlDeviceGetCount_v2(&mut n) }, 1, "uninitialised");
    assert_eq!(nvmlInit_v2(), 0);
    assert_eq!(unsafe { nvmlDeviceGetCount_v2(&mut n) }, 0);
    assert_eq!(n, 2);
    let mut h: NvmlDevice = std::ptr::null_mut();
    assert_eq!(unsafe { nvmlDeviceGetHandleByIndex_v2(1, &mut h) }, 0);
    assert_eq!(unsafe { nvmlDeviceGetHandleByIndex_v2(2, &mut h) }, 2);
    let mut buf = [0 as c_char; 96];
    assert_eq!(unsafe { nvmlDeviceGetHandleByIndex_v2(1, &mut h) }, 0);
    assert_eq!(unsafe { nvmlDeviceGetUUID(h, buf.as_mut_ptr(), 96) }, 0);
    let mut h2: NvmlDevice = std::ptr::null_mut();
    assert_eq!(
        unsafe { nvmlDeviceGetHandleByUUID(buf.as_ptr(), &mut h2) },
        0
    );
    assert_eq!(h, h2);
    assert_eq!(
        unsafe { nvmlDeviceGetHandleByUUID(c"GPU-nope".as_ptr(), &mut h2) },
        6
    );
    let mut m = MemoryV2 {
        version: 0,
        total: 0,
        reserved: 0,
        free: 0,
        used: 0,
    };
    assert_eq!(
        unsafe { nvmlDeviceGetMemoryInfo_v2(h, &mut m) },
        25,
        "version not set"
    );
    m.version = MEMORY_V2_VERSION;
    assert_eq!(unsafe { nvmlDeviceGetMemoryInfo_v2(h, &mut m) }, 0);
    assert_eq!(m.total, 8 << 30);
    let mut m1 = Memory {
        total: 0,
        free: 0,
        used: 0,
    };
    assert_eq!(
        unsafe { nvmlDeviceGetMemoryInfo(0xdead as NvmlDevice, &mut m1) },
        2,
        "bad handle"
    );
    let mut h0: NvmlDevice = std::ptr::null_mut();
    assert_eq!(unsafe { nvmlDeviceGetHandleByIndex_v2(0, &mut h0) }, 0);
    let mut level = -1;
    assert_eq!(
        unsafe { nvmlDeviceGetTopologyCommonAncestor(h0, h, &mut level) },
        0
    );
    assert_eq!(level, 50, "different NUMA nodes");
    let mut node = 9;
    assert_eq!(unsafe { nvmlDeviceGetNumaNodeId(h, &mut node) }, 0);
    assert_eq!(node, 1);
    let mut u = Utilization { gpu: 7, memory: 7 };
    assert_eq!(unsafe { nvmlDeviceGetUtilizationRates(h0, &mut u) }, 0);
    assert_eq!(u.gpu, 0, "nothing ran");
    assert_eq!(nvmlShutdown(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

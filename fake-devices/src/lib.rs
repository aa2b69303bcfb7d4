//! Fake GPU devices for tests and for fake nodes.
//!
//! This crate holds what the fake `libcuda.so.1` (crate `hami-fake-cuda`) and the fake
//! `libnvidia-ml.so.1` (crate `hami-fake-nvml`) share:
//!
//! * [`inventory`]: the description of the fake cards (count, memory, SMs, UUIDs, NUMA), read from
//!   a small `key=value` file or an environment variable; errors name the file and line.
//! * [`mig`]: fake MIG instances (exact placements, deterministic GPU/compute instance ids and
//!   MIG UUIDs) for the device plugin's MIG path.
//! * [`state`]: the simulated device state — memory in use, the device timeline on which fake
//!   kernels "execute", and busy-time buckets from which NVML utilisation is computed. It lives
//!   in a memory-mapped file so that several processes (and the two fake libraries inside one
//!   process) see the same cards.
//!
//! The node agent can use [`inventory::Inventory`] directly to publish fake devices.

pub mod inventory;
pub mod mig;
pub mod state;

/// Monotonic clock in nanoseconds (`CLOCK_MONOTONIC`), comparable across processes on one host,
/// which is what lets several processes share one simulated device timeline.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Wall-clock time in microseconds since the epoch, the unit NVML uses for sample timestamps.
pub fn realtime_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

/// Sleeps until the monotonic clock reaches `deadline_ns` (no-op if it already has).
pub fn sleep_until(deadline_ns: u64) {
    loop {
        let now = mono_ns();
        if now >= deadline_ns {
            return;
        }
        std::thread::sleep(std::time::Duration::from_nanos(deadline_ns - now));
    }
}

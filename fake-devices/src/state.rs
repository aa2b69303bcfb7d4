//! Simulated device state shared by every process (and both fake libraries) that use the same
//! fake cards.
//!
//! # Model
//!
//! Each card executes fake kernels one after another on a single *timeline*: a launch of `d`
//! nanoseconds of work starts at `max(now, end of the previous kernel)` and ends `d` later; the
//! launching thread continues at once (launches are asynchronous) unless the card is more than
//! `max_queue_ns` behind, in which case the launch blocks like a full launch queue does.
//! Synchronisation sleeps until the caller's last kernel has ended. Busy time is recorded in
//! 10 ms buckets per card and per process, which is what fake NVML turns into utilisation.
//!
//! # File layout (version 1)
//!
//! A `#[repr(C)]` [`SharedState`] mapped `MAP_SHARED` from the file named by `HAMI_FAKE_STATE`
//! (default `$TMPDIR/hami-fake-devices-<uid>.state`). Header: magic `HAMIFAKE`, version, device
//! count, inventory fingerprint; then [`MAX_DEVICES`] [`DevState`] records and [`MAX_PROCS`]
//! [`ProcSlot`] records. All fields are atomics, so processes update it without locks; `flock`
//! is held only while the header is (re)initialised. A file written for another inventory is
//! reset.

use crate::inventory::{Inventory, MAX_DEVICES};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

/// Process slots in the state file.
pub const MAX_PROCS: usize = 64;
/// Busy-time buckets kept per card and per process (a ring).
pub const BUCKETS: usize = 128;
/// Width of one busy-time bucket.
pub const BUCKET_NS: u64 = 10_000_000;
const MAGIC: u64 = u64::from_le_bytes(*b"HAMIFAKE");
const VERSION: u32 = 1;
/// Low bits of a bucket word hold busy nanoseconds (≤ 10 ms < 2^24), high bits the bucket epoch;
/// packing both into one word makes "reset if stale, then add" a single CAS.
const BUSY_BITS: u32 = 24;

/// Per-card simulated state.
#[repr(C)]
pub struct DevState {
    /// Bytes allocated on the card by all processes.
    pub mem_used: AtomicU64,
    /// Monotonic ns at which the last queued kernel ends.
    pub timeline_end: AtomicU64,
    /// Total busy ns ever queued (diagnostics).
    pub busy_total: AtomicU64,
    /// Busy-time ring, see [`BUSY_BITS`].
    pub buckets: [AtomicU64; BUCKETS],
}

/// Per-process record: memory and busy time by card.
#[repr(C)]
pub struct ProcSlot {
    /// Owner pid; 0 = free, -1 = being reclaimed.
    pub pid: AtomicI32,
    /// Bit i set = the process has a context or memory on card i.
    pub active_mask: AtomicU32,
    /// Bytes allocated by this process per card.
    pub mem_used: [AtomicU64; MAX_DEVICES],
    /// Busy-time ring per card.
    pub buckets: [[AtomicU64; BUCKETS]; MAX_DEVICES],
}

/// The whole mapped file.
#[repr(C)]
pub struct SharedState {
    magic: AtomicU64,
    version: AtomicU32,
    ndev: AtomicU32,
    fingerprint: AtomicU64,
    /// Cards.
    pub devices: [DevState; MAX_DEVICES],
    /// Processes.
    pub procs: [ProcSlot; MAX_PROCS],
}

/// Default path of the state file when `HAMI_FAKE_STATE` is not set.
pub fn default_path() -> String {
    let dir = std::env::var("TMPDIR").unwrap_or_else(|_| "/tmp".into());
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    format!("{dir}/hami-fake-devices-{uid}.state")
}

/// Maps the state file for `inv` (creating or resetting it as needed).
pub fn open(inv: &Inventory) -> Result<&'static SharedState, String> {
    let path = std::env::var("HAMI_FAKE_STATE").unwrap_or_else(|_| default_path());
    open_path(&path, inv)
}

/// Like [`open`] with an explicit path.
pub fn open_path(path: &str, inv: &Inventory) -> Result<&'static SharedState, String> {
    let size = std::mem::size_of::<SharedState>();
    let cpath = std::ffi::CString::new(path).map_err(|_| format!("{path}: bad path"))?;
    // SAFETY: cpath is NUL-terminated; the flags and mode are plain integers.
    let fd = unsafe {
        libc::open(
            cpath.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC,
            0o666,
        )
    };
    if fd < 0 {
        return Err(format!(
            "{path}: cannot open: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: fd is an open descriptor we own.
    unsafe { libc::flock(fd, libc::LOCK_EX) };
    let result = (|| {
        // SAFETY: fd is open; st is a valid out-pointer.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd, &mut st) } != 0 {
            return Err(format!("{path}: fstat failed"));
        }
        if (st.st_size as usize) < size {
            // SAFETY: fd is open for writing.
            if unsafe { libc::ftruncate(fd, size as libc::off_t) } != 0 {
                return Err(format!("{path}: cannot grow to {size} bytes"));
            }
        }
        // SAFETY: mapping `size` bytes of a file at least that large, shared, read-write.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!(
                "{path}: mmap failed: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: the mapping is sized and aligned (page) for SharedState, every field is an
        // atomic valid for any bit pattern, and it is never unmapped, hence 'static.
        let s: &'static SharedState = unsafe { &*(p as *const SharedState) };
        let fp = inv.fingerprint();
        if s.magic.load(Ordering::Acquire) != MAGIC
            || s.version.load(Ordering::Relaxed) != VERSION
            || s.fingerprint.load(Ordering::Relaxed) != fp
        {
            // SAFETY: we hold the exclusive flock, so no process is reading the header; zeroing
            // atomics through a raw pointer is fine as all-zero is their valid initial value.
            unsafe { std::ptr::write_bytes(p as *mut u8, 0, size) };
            s.ndev.store(inv.devices.len() as u32, Ordering::Relaxed);
            s.version.store(VERSION, Ordering::Relaxed);
            s.fingerprint.store(fp, Ordering::Relaxed);
            s.magic.store(MAGIC, Ordering::Release);
        }
        Ok(s)
    })();
    // SAFETY: fd is ours; the mapping stays valid after close.
    unsafe {
        libc::flock(fd, libc::LOCK_UN);
        libc::close(fd);
    }
    result
}

fn pid_dead(pid: i32) -> bool {
    // SAFETY: signal 0 only checks existence.
    unsafe { libc::kill(pid, 0) != 0 && *libc::__errno_location() == libc::ESRCH }
}

impl SharedState {
    /// Claims a process slot for the calling process (reclaiming slots of dead processes first
    /// when none is free). Returns the slot index.
    pub fn claim_slot(&self) -> Result<usize, String> {
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        // Processes that exited since the last claim leave their memory behind; the real driver
        // frees it at exit, so do the same before reporting anything.
        self.reap_dead();
        // A slot already holding our pid belongs to a dead process whose pid was reused.
        for (i, slot) in self.procs.iter().enumerate() {
            if slot.pid.load(Ordering::Acquire) == me {
                self.reclaim(i, me);
            }
        }
        for attempt in 0..2 {
            for (i, slot) in self.procs.iter().enumerate() {
                if slot
                    .pid
                    .compare_exchange(0, me, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(i);
                }
            }
            if attempt == 0 {
                self.reap_dead();
            }
        }
        Err(format!("all {MAX_PROCS} process slots are taken"))
    }

    fn reclaim(&self, i: usize, pid: i32) -> bool {
        let slot = &self.procs[i];
        if slot
            .pid
            .compare_exchange(pid, -1, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        for (d, dev) in self.devices.iter().enumerate() {
            let m = slot.mem_used[d].swap(0, Ordering::AcqRel);
            dev.mem_used.fetch_sub(m, Ordering::AcqRel);
            for b in &slot.buckets[d] {
                b.store(0, Ordering::Relaxed);
            }
        }
        slot.active_mask.store(0, Ordering::Relaxed);
        slot.pid.store(0, Ordering::Release);
        true
    }

    /// Frees the slots (and the device memory) of processes that no longer exist, as the real
    /// driver does when a process dies. Returns how many were reclaimed.
    pub fn reap_dead(&self) -> usize {
        let mut n = 0;
        for i in 0..MAX_PROCS {
            let pid = self.procs[i].pid.load(Ordering::Acquire);
            if pid > 0 && pid_dead(pid) && self.reclaim(i, pid) {
                n += 1;
            }
        }
        n
    }

    /// Reserves `size` bytes on card `dev` for slot `slot`; false when the card is full.
    pub fn reserve_mem(&self, slot: usize, dev: usize, size: u64, capacity: u64) -> bool {
        let used = &self.devices[dev].mem_used;
        for attempt in 0..2 {
            let mut cur = used.load(Ordering::Acquire);
            while let Some(next) = cur.checked_add(size).filter(|n| *n <= capacity) {
                match used.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => {
                        self.procs[slot].mem_used[dev].fetch_add(size, Ordering::AcqRel);
                        self.mark_active(slot, dev);
                        return true;
                    }
                    Err(c) => cur = c,
                }
            }
            if attempt == 0 && self.reap_dead() == 0 {
                return false;
            }
        }
        false
    }

    /// Returns `size` bytes on card `dev` from slot `slot`.
    pub fn release_mem(&self, slot: usize, dev: usize, size: u64) {
        self.procs[slot].mem_used[dev].fetch_sub(size, Ordering::AcqRel);
        self.devices[dev].mem_used.fetch_sub(size, Ordering::AcqRel);
    }

    /// Records that slot `slot` uses card `dev` (it then shows in NVML's process lists).
    pub fn mark_active(&self, slot: usize, dev: usize) {
        self.procs[slot]
            .active_mask
            .fetch_or(1 << dev, Ordering::Relaxed);
    }

    /// Queues `dur_ns` of kernel work from slot `slot` on card `dev`; returns the monotonic time
    /// at which it will have finished. Blocks while the card is more than `max_queue_ns` behind.
    pub fn enqueue(&self, slot: usize, dev: usize, dur_ns: u64, max_queue_ns: u64) -> u64 {
        let d = &self.devices[dev];
        let (start, end) = loop {
            let now = crate::mono_ns();
            let cur = d.timeline_end.load(Ordering::Acquire);
            if cur > now + max_queue_ns {
                crate::sleep_until(cur - max_queue_ns);
                continue;
            }
            let start = cur.max(now);
            let end = start + dur_ns;
            if d.timeline_end
                .compare_exchange(cur, end, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                break (start, end);
            }
        };
        if dur_ns > 0 {
            add_busy(&d.buckets, start, end);
            add_busy(&self.procs[slot].buckets[dev], start, end);
            d.busy_total.fetch_add(dur_ns, Ordering::Relaxed);
        }
        end
    }

    /// Card `dev`'s busy fraction (0..=1) over the complete buckets in the last `window_ns`.
    pub fn device_util(&self, dev: usize, window_ns: u64) -> f64 {
        util_of(&self.devices[dev].buckets, window_ns)
    }

    /// Slot `slot`'s busy fraction of card `dev` over the last `window_ns`.
    pub fn proc_util(&self, slot: usize, dev: usize, window_ns: u64) -> f64 {
        util_of(&self.procs[slot].buckets[dev], window_ns)
    }
}

fn add_busy(ring: &[AtomicU64; BUCKETS], start: u64, end: u64) {
    // Only the last BUCKETS buckets can ever be read back.
    let start = start.max(end.saturating_sub((BUCKETS as u64 - 1) * BUCKET_NS));
    let mut e = start / BUCKET_NS;
    while e * BUCKET_NS < end {
        let lo = start.max(e * BUCKET_NS);
        let hi = end.min((e + 1) * BUCKET_NS);
        let add = hi - lo;
        let cell = &ring[(e % BUCKETS as u64) as usize];
        let mut cur = cell.load(Ordering::Relaxed);
        loop {
            let next = if cur >> BUSY_BITS == e {
                let busy = ((cur & ((1 << BUSY_BITS) - 1)) + add).min((1 << BUSY_BITS) - 1);
                (e << BUSY_BITS) | busy
            } else {
                (e << BUSY_BITS) | add
            };
            match cell.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => break,
                Err(c) => cur = c,
            }
        }
        e += 1;
    }
}

fn util_of(ring: &[AtomicU64; BUCKETS], window_ns: u64) -> f64 {
    let now_e = crate::mono_ns() / BUCKET_NS;
    let n = (window_ns / BUCKET_NS).clamp(1, BUCKETS as u64 - 2);
    let mut busy = 0u64;
    for e in now_e - n..now_e {
        let cur = ring[(e % BUCKETS as u64) as usize].load(Ordering::Relaxed);
        if cur >> BUSY_BITS == e {
            busy += cur & ((1 << BUSY_BITS) - 1);
        }
    }
    (busy as f64 / (n * BUCKET_NS) as f64).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_state(name: &str) -> (&'static SharedState, Inventory) {
        let inv = Inventory::parse("count=2;memory=1g", "t").unwrap();
        let path =
            std::env::temp_dir().join(format!("hami-fake-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        (open_path(path.to_str().unwrap(), &inv).unwrap(), inv)
    }

    #[test]
    fn memory_capacity_is_enforced() {
        let (s, _) = tmp_state("mem");
        let slot = s.claim_slot().unwrap();
        assert!(s.reserve_mem(slot, 0, 1 << 30, 1 << 30));
        assert!(!s.reserve_mem(slot, 0, 1, 1 << 30));
        assert!(s.reserve_mem(slot, 1, 1, 1 << 30));
        s.release_mem(slot, 0, 1 << 30);
        assert!(s.reserve_mem(slot, 0, 1, 1 << 30));
    }

    #[test]
    fn kernels_run_serially_and_show_as_busy() {
        let (s, _) = tmp_state("busy");
        let slot = s.claim_slot().unwrap();
        let t0 = crate::mono_ns();
        let mut end = 0;
        for _ in 0..10 {
            end = s.enqueue(slot, 0, 5_000_000, 100_000_000);
        }
        assert!(end >= t0 + 50_000_000);
        // The window covers the complete buckets just before now, all inside the busy period
        // unless the sleep overshoots badly (loaded machine): hence the loose bound.
        crate::sleep_until(end);
        let u = s.device_util(0, 30_000_000);
        assert!(u > 0.6, "util {u}");
        assert!(s.proc_util(slot, 0, 30_000_000) > 0.6);
        assert_eq!(s.device_util(1, 40_000_000), 0.0);
    }
}

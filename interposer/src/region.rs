//! Memory accounting shared by the processes of one container.
//!
//! # File layout (version 1)
//!
//! The file named by `CUDA_DEVICE_MEMORY_SHARED_CACHE` is mapped `MAP_SHARED`; it holds one
//! `#[repr(C)]` [`Region`], little-endian, naturally aligned:
//!
//! | offset | field | meaning |
//! |---|---|---|
//! | 0 | `magic: u64` | `b"HAMIRSV1"`; 0 while uninitialised |
//! | 8 | `version: u32` | 1 |
//! | 12 | `max_devices: u32` | 16 |
//! | 16 | `limits: [u64; 16]` | memory limits of the first process (informational) |
//! | 144 | `used: [u64; 16]` | bytes in use per device, summed over all slots |
//! | 272 | `pids: [i32; 1024]` | slot owners: 0 free, -1 being reclaimed |
//! | 4368 | `slot_used: [[u64; 16]; 1024]` | bytes each slot holds per device |
//!
//! The pids sit together (one page) so that attaching scans one page, not 34.
//!
//! Every field is updated with atomic instructions only. A reservation is a compare-and-swap on
//! `used[dev]` that never lets it exceed the limit, followed by an add to the process's own slot,
//! so two processes can never both pass the check on the last free bytes. `flock` is taken only
//! while the file is created or its header written; attaching to an initialised file takes no
//! lock. A slot whose pid no longer exists
//! (`kill(pid, 0)` fails with `ESRCH`) is reclaimed — its bytes are subtracted from `used` —
//! whenever a reservation would fail, so memory of a killed process comes back.
//!
//! This is not HAMi-core's `shared_region_t` (magic 19920718); a file with another magic is
//! left alone and the process falls back to private accounting, with an error line.

use crate::config::MAX_DEVICES;
use crate::log;
use crate::log::Level;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

/// Process slots per container.
pub const MAX_SLOTS: usize = 1024;
const MAGIC: u64 = u64::from_le_bytes(*b"HAMIRSV1");
const VERSION: u32 = 1;

/// The mapped file.
#[repr(C)]
pub struct Region {
    magic: AtomicU64,
    version: AtomicU32,
    max_devices: AtomicU32,
    /// Limits recorded by the first process.
    pub limits: [AtomicU64; MAX_DEVICES],
    /// Bytes in use per device, all processes.
    pub used: [AtomicU64; MAX_DEVICES],
    /// Slot owner pids; 0 free; -1 being reclaimed.
    pub pids: [AtomicI32; MAX_SLOTS],
    /// Bytes each slot holds per device.
    pub slot_used: [[AtomicU64; MAX_DEVICES]; MAX_SLOTS],
}

fn map_anonymous() -> Option<&'static Region> {
    let size = std::mem::size_of::<Region>();
    // SAFETY: anonymous private mapping of `size` bytes; zero-filled, which is a valid Region.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: page-aligned, sized for Region, all-atomic fields, never unmapped.
    Some(unsafe { &*(p as *const Region) })
}

/// Maps (creating if needed) the shared file; falls back to process-private accounting with an
/// error line when the file cannot be used.
pub fn open(path: &str, limits: &[u64; MAX_DEVICES]) -> Option<&'static Region> {
    match open_file(path, limits) {
        Ok(r) => Some(r),
        Err(e) => {
            log!(
                Level::Error,
                "shared memory accounting unavailable ({e}); this process accounts alone"
            );
            map_anonymous()
        }
    }
}

fn open_file(path: &str, limits: &[u64; MAX_DEVICES]) -> Result<&'static Region, String> {
    let size = std::mem::size_of::<Region>();
    let cpath = std::ffi::CString::new(path).map_err(|_| format!("{path}: bad path"))?;
    // SAFETY: NUL-terminated path; plain flags.
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
    // Fast path, no lock: a file already initialised by another process of the container
    // (the common case when many processes start at once) only needs mapping and checking.
    // SAFETY: fd open; st is a valid out-pointer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } == 0
        && st.st_size as usize == size
        && let Some(r) = map(fd, size)
    {
        if r.magic.load(Ordering::Acquire) == MAGIC && r.version.load(Ordering::Relaxed) == VERSION
        {
            check_limits(r, path, limits);
            // SAFETY: fd is ours; the mapping survives close.
            unsafe { libc::close(fd) };
            return Ok(r);
        }
        // SAFETY: unmapping the mapping made just above, not yet shared with anyone.
        unsafe { libc::munmap(r as *const Region as *mut libc::c_void, size) };
    }
    // SAFETY: fd is ours; fchmod lets the other (possibly non-root) processes of the container
    // share the file despite the umask; failure is harmless.
    unsafe {
        libc::fchmod(fd, 0o666);
        libc::flock(fd, libc::LOCK_EX);
    }
    let r = (|| {
        // SAFETY: fd open; st is a valid out-pointer.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd, &mut st) } != 0 {
            return Err(format!("{path}: fstat failed"));
        }
        if (st.st_size as usize) < size {
            if st.st_size != 0 {
                return Err(format!(
                    "{path}: {} bytes, not a hami-rs accounting file (expected {size}); \
                     delete the stale file",
                    st.st_size
                ));
            }
            // SAFETY: fd is open for writing.
            if unsafe { libc::ftruncate(fd, size as libc::off_t) } != 0 {
                return Err(format!("{path}: cannot size the file"));
            }
        }
        let r = map(fd, size).ok_or_else(|| format!("{path}: mmap failed"))?;
        match r.magic.load(Ordering::Acquire) {
            0 => {
                r.version.store(VERSION, Ordering::Relaxed);
                r.max_devices.store(MAX_DEVICES as u32, Ordering::Relaxed);
                for (d, l) in limits.iter().enumerate() {
                    r.limits[d].store(*l, Ordering::Relaxed);
                }
                r.magic.store(MAGIC, Ordering::Release);
            }
            MAGIC if r.version.load(Ordering::Relaxed) == VERSION => check_limits(r, path, limits),
            m => {
                return Err(format!(
                    "{path}: magic {m:#x} / version {} is not hami-rs layout 1; delete the stale file",
                    r.version.load(Ordering::Relaxed)
                ));
            }
        }
        Ok(r)
    })();
    // SAFETY: fd is ours; the mapping survives close.
    unsafe {
        libc::flock(fd, libc::LOCK_UN);
        libc::close(fd);
    }
    r
}

/// Maps the accounting file shared and read-write.
fn map(fd: libc::c_int, size: usize) -> Option<&'static Region> {
    // SAFETY: shared mapping of `size` bytes of a file at least that large.
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
        return None;
    }
    // SAFETY: page-aligned, sized for Region, all-atomic fields, never unmapped once returned.
    Some(unsafe { &*(p as *const Region) })
}

fn check_limits(r: &Region, path: &str, limits: &[u64; MAX_DEVICES]) {
    let differ: Vec<usize> = (0..MAX_DEVICES)
        .filter(|d| r.limits[*d].load(Ordering::Relaxed) != limits[*d])
        .collect();
    if !differ.is_empty() {
        log!(
            Level::Warn,
            "{path}: memory limits of devices {differ:?} differ from those recorded by the first \
             process; each process enforces its own limit on the shared total"
        );
    }
}

fn pid_dead(pid: i32) -> bool {
    // SAFETY: signal 0 only probes existence.
    unsafe { libc::kill(pid, 0) != 0 && *libc::__errno_location() == libc::ESRCH }
}

impl Region {
    /// Claims a slot for this process. A slot that already carries our pid belongs to a dead
    /// process whose pid was reused, and is reclaimed first. None when all slots are live.
    pub fn claim_slot(&self) -> Option<usize> {
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        for i in 0..MAX_SLOTS {
            if self.pids[i].load(Ordering::Acquire) == me {
                self.reclaim(i, me);
            }
        }
        for attempt in 0..2 {
            for i in 0..MAX_SLOTS {
                if self.pids[i]
                    .compare_exchange(0, me, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    return Some(i);
                }
            }
            if attempt == 0 {
                self.reap_dead();
            }
        }
        None
    }

    fn reclaim(&self, i: usize, pid: i32) -> bool {
        if self.pids[i]
            .compare_exchange(pid, -1, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        for d in 0..MAX_DEVICES {
            let b = self.slot_used[i][d].swap(0, Ordering::AcqRel);
            if b > 0 {
                self.used[d].fetch_sub(b, Ordering::AcqRel);
            }
        }
        self.pids[i].store(0, Ordering::Release);
        true
    }

    /// Reclaims slots of dead processes; returns how many bytes came back.
    pub fn reap_dead(&self) -> u64 {
        let mut freed = 0;
        for i in 0..MAX_SLOTS {
            let pid = self.pids[i].load(Ordering::Acquire);
            if pid > 0 && pid_dead(pid) {
                let bytes: u64 = self.slot_used[i]
                    .iter()
                    .map(|u| u.load(Ordering::Relaxed))
                    .sum();
                if self.reclaim(i, pid) {
                    log!(
                        Level::Msg,
                        "reclaimed {bytes} bytes held by dead process {pid}"
                    );
                    freed += bytes.max(1);
                }
            }
        }
        freed
    }

    /// Reserves `size` bytes on `dev` under `limit` for slot `slot` (None: no slot, total only).
    /// On failure the caller returns out-of-memory; nothing is reserved.
    pub fn reserve(&self, slot: Option<usize>, dev: usize, size: u64, limit: u64) -> bool {
        for attempt in 0..2 {
            let used = &self.used[dev];
            let mut cur = used.load(Ordering::Acquire);
            while let Some(next) = cur.checked_add(size).filter(|n| *n <= limit) {
                match used.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => {
                        if let Some(s) = slot {
                            self.slot_used[s][dev].fetch_add(size, Ordering::AcqRel);
                        }
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

    /// Returns bytes reserved by [`Region::reserve`].
    pub fn release(&self, slot: Option<usize>, dev: usize, size: u64) {
        if let Some(s) = slot {
            self.slot_used[s][dev].fetch_sub(size, Ordering::AcqRel);
        }
        self.used[dev].fetch_sub(size, Ordering::AcqRel);
    }

    /// Pids of live slots (the container's processes).
    pub fn pids(&self, out: &mut Vec<u32>) {
        out.clear();
        for pid in self.pids.iter() {
            let p = pid.load(Ordering::Relaxed);
            if p > 0 {
                out.push(p as u32);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_never_exceeds_limit_across_threads() {
        let r = map_anonymous().unwrap();
        let slot = r.claim_slot();
        let ok = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        if r.reserve(slot, 0, 3, 1000) {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(ok.load(Ordering::Relaxed), 333);
        assert_eq!(r.used[0].load(Ordering::Relaxed), 999);
        r.release(slot, 0, 999);
        assert_eq!(r.used[0].load(Ordering::Relaxed), 0);
    }

    #[test]
    fn dead_slot_is_reclaimed_on_pressure() {
        let r = map_anonymous().unwrap();
        // A pid that cannot exist (above pid_max) stands in for a dead process.
        let dead = 0x3fff_fff0;
        r.pids[5].store(dead, Ordering::Relaxed);
        r.slot_used[5][0].store(800, Ordering::Relaxed);
        r.used[0].store(800, Ordering::Relaxed);
        let me = r.claim_slot();
        assert!(r.reserve(me, 0, 500, 1000));
        assert_eq!(r.used[0].load(Ordering::Relaxed), 500);
        assert_eq!(r.pids[5].load(Ordering::Relaxed), 0);
    }

    #[test]
    fn file_layout_is_shared_and_checked() {
        let path = std::env::temp_dir().join(format!("hami-rs-region-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let p = path.to_str().unwrap();
        let a = open_file(p, &[0; MAX_DEVICES]).unwrap();
        let b = open_file(p, &[0; MAX_DEVICES]).unwrap();
        assert!(a.reserve(None, 1, 10, 100));
        assert_eq!(b.used[1].load(Ordering::Relaxed), 10);
        std::fs::write(&path, b"not ours").unwrap();
        assert!(open_file(p, &[0; MAX_DEVICES]).is_err());
        let _ = std::fs::remove_file(&path);
    }
}

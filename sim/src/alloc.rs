//! The binaries' global allocator: mimalloc (its v2 line), called on its plain path.
//!
//! A simulation allocates and frees small objects per event; glibc's malloc was a fifth of a
//! run's instructions. The `mimalloc` crate's allocator sends every request through
//! `mi_malloc_aligned`, even for the alignments every block already has; on the Alibaba trace
//! that cost 6 % of the benchmark's instructions against the plain `mi_malloc` used here
//! (callgrind, `benches/des.rs`).

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

/// Every mimalloc block is aligned to its machine word: requests aligned to no more than that
/// take the plain calls (mimalloc's own `realloc` makes the same test).
const WORD: usize = std::mem::size_of::<usize>();

/// mimalloc as Rust's allocator. Contract: as [`GlobalAlloc`]; the pointers it returns are
/// aligned to the layout's alignment and freed only by it.
#[derive(Debug, Clone, Copy, Default)]
pub struct MiMalloc;

/// mimalloc's plain call for word-aligned `layout`s, its aligned call for the others.
///
/// # Safety
/// As the `GlobalAlloc` method that calls it: `layout` has a non-zero size.
#[inline]
unsafe fn by_alignment(
    layout: Layout,
    plain: unsafe extern "C" fn(usize) -> *mut c_void,
    aligned: unsafe extern "C" fn(usize, usize) -> *mut c_void,
) -> *mut u8 {
    // SAFETY: mimalloc's allocation calls accept any size; Layout guarantees a power-of-two
    // alignment for the aligned one.
    unsafe {
        if layout.align() <= WORD {
            plain(layout.size()).cast()
        } else {
            aligned(layout.size(), layout.align()).cast()
        }
    }
}

// SAFETY: mimalloc returns blocks of at least the requested size, aligned to at least `WORD`
// on the plain calls and to the requested power of two on the aligned ones (Layout guarantees
// a power of two), or null on failure; `mi_free` and `mi_realloc` accept any block it returned.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            by_alignment(
                layout,
                libmimalloc_sys::mi_malloc,
                libmimalloc_sys::mi_malloc_aligned,
            )
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            by_alignment(
                layout,
                libmimalloc_sys::mi_zalloc,
                libmimalloc_sys::mi_zalloc_aligned,
            )
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (GlobalAlloc's contract).
        unsafe { libmimalloc_sys::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout` (GlobalAlloc's contract).
        unsafe {
            if layout.align() <= WORD {
                libmimalloc_sys::mi_realloc(ptr.cast(), new_size).cast()
            } else {
                libmimalloc_sys::mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
            }
        }
    }
}

// mimalloc's option setter and collection, declared here: the `extended` feature of
// `libmimalloc-sys` that declares them would pull in one more crate for these two functions.
unsafe extern "C" {
    fn mi_option_set_default(option: std::ffi::c_int, value: std::ffi::c_long);
    fn mi_collect(force: bool);
}

/// mimalloc's `mi_option_purge_delay` (its position in `mi_option_e`, v2 line).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// Keep memory that the process frees for its own later allocations instead of handing it back
/// to the operating system. For batch work (a simulation, a benchmark); a long-running service
/// should leave the default. Call it before the work starts; `MIMALLOC_PURGE_DELAY` in the
/// environment still wins.
///
/// Why: by default mimalloc returns freed pages 10 ms after the last free in them. A run
/// reuses them moments later, and every reused page then faults and is zeroed again; on a
/// virtual machine whose host is short of huge pages that costs more than the run itself
/// (Alibaba binpack runs of 0.08 s took up to 0.22 s, 0.13 s of it in the kernel).
pub fn keep_freed_memory() {
    // SAFETY: sets a process-wide option before it is read again; any value is accepted
    // (-1: never purge).
    unsafe { mi_option_set_default(MI_OPTION_PURGE_DELAY, -1) }
}

/// Have this thread's heap take back now the blocks that other threads freed for it (a
/// finished run's state, which the simulator frees on a helper thread, see
/// [`crate::des::engine::wait_for_freeing`]). Otherwise this thread's next allocations do it,
/// inside whatever is timed next. For a caller that times runs one after another.
pub fn collect() {
    // SAFETY: mimalloc allows a collection at any time, on any thread; it touches only blocks
    // freed already and the allocator's own bookkeeping.
    unsafe { mi_collect(false) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks come back aligned as asked, for small and large alignments, through growth.
    #[test]
    fn blocks_are_aligned_as_asked() {
        let a = MiMalloc;
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1, 7, 8, 24, 40, 100, 5000] {
                let Ok(layout) = Layout::from_size_align(size, align) else {
                    continue;
                };
                // SAFETY: a non-zero size; each block is freed once, with its layout.
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size}, align {align}");
                    p.write_bytes(0xab, size);
                    let q = a.realloc(p, layout, size * 3);
                    assert!(!q.is_null());
                    assert_eq!(q as usize % align, 0, "grown {size}, align {align}");
                    assert_eq!(*q.add(size - 1), 0xab);
                    a.dealloc(
                        q,
                        Layout::from_size_align(size * 3, align).unwrap_or(layout),
                    );
                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0);
                    assert!((0..size).all(|i| *z.add(i) == 0));
                    a.dealloc(z, layout);
                }
            }
        }
    }
}

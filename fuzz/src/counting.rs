//! The counting global allocator: bytes allocated now and at the peak, and a cap on one allocation.

use std::alloc::GlobalAlloc;
use std::alloc::Layout;
use std::alloc::System;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;

pub(super) static CURRENT: AtomicUsize = AtomicUsize::new(0);
pub(super) static PEAK: AtomicUsize = AtomicUsize::new(0);
pub(super) static SINGLE_CAP: AtomicUsize = AtomicUsize::new(usize::MAX);
pub(super) static INSTALLED: AtomicUsize = AtomicUsize::new(0);

/// A global allocator over [`System`] that counts the bytes in use and their peak, and refuses (returns null
/// for) any single allocation above [`set_single_alloc_cap`]. Install with
/// `#[global_allocator] static A: dino_sae_fuzz::CountingAlloc = dino_sae_fuzz::CountingAlloc;`.
pub struct CountingAlloc;

pub(super) fn note_alloc(size: usize) {
    let now = CURRENT.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// The one unsafe block of the project (the workspace denies unsafe code): a global allocator must implement
// this unsafe trait. Every method forwards its arguments unchanged to `System` and only updates counters.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > SINGLE_CAP.load(Ordering::Relaxed) {
            return std::ptr::null_mut();
        }
        INSTALLED.store(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note_alloc(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > SINGLE_CAP.load(Ordering::Relaxed) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note_alloc(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > SINGLE_CAP.load(Ordering::Relaxed) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
            note_alloc(new_size);
        }
        p
    }
}

/// True once [`CountingAlloc`] has served an allocation (it is the global allocator).
pub fn counting() -> bool {
    INSTALLED.load(Ordering::Relaxed) == 1
}

/// Bytes in use now (0 without [`CountingAlloc`]).
pub fn allocated() -> usize {
    CURRENT.load(Ordering::Relaxed)
}

/// Start a new peak window at the bytes in use now; returns them.
pub fn reset_peak() -> usize {
    let now = CURRENT.load(Ordering::Relaxed);
    PEAK.store(now, Ordering::Relaxed);
    now
}

/// Largest bytes in use since the last [`reset_peak`].
pub fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Refuse single allocations above `bytes` (the process then aborts with "memory allocation failed"): the
/// fuzzing binaries set it to the memory budget so an unforeseen allocation is a visible crash, not swap.
pub fn set_single_alloc_cap(bytes: usize) {
    SINGLE_CAP.store(bytes, Ordering::Relaxed);
}

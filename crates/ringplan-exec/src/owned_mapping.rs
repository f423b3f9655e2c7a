//! A range of this process's address space that the executor mapped and
//! owns: unmapped when dropped, so a failed restore gives it back, or kept
//! for good once it is the restored program's memory.

use std::ffi::c_void;

/// A range this process mapped (with `MAP_FIXED_NOREPLACE` or at an address
/// the kernel chose), unmapped when dropped.
#[derive(Debug)]
pub(crate) struct OwnedMapping {
    pub(crate) addr: usize,
    pub(crate) len: usize,
}

impl OwnedMapping {
    /// Leaves the range mapped for good (it is the restored program's
    /// memory from now on).
    pub(crate) fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for OwnedMapping {
    fn drop(&mut self) {
        // SAFETY: whoever made this value mapped exactly this range
        // (MAP_FIXED_NOREPLACE replaced nothing, or the kernel chose the
        // address) and nothing holds a reference into it; a ring that used
        // it as its memory is closed first (its owner's field order).
        let _ = unsafe { rustix::mm::munmap(self.addr as *mut c_void, self.len) };
    }
}

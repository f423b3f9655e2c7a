//! Keeping a loaded libbpf-rs skeleton in a struct ([`LoadedSkeleton`]),
//! which its borrowed object slot otherwise prevents, and loading it with
//! one of its two sets of programs ([`Programs`]).

use std::mem::{ManuallyDrop, MaybeUninit};
use std::ptr::NonNull;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::OpenObject;

use super::error::BpfError;
use super::layout;
use super::skeleton::{RingplanSkel, RingplanSkelBuilder};

/// Which programs of the object a [`LoadedSkeleton`] loads: the others'
/// autoload is turned off, so libbpf neither relocates them (no CO-RE
/// candidate search for the types only they read) nor has the kernel
/// verify them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Programs {
    /// Passes A, T and B (`ringplan_target_fds`, `ringplan_target_threads`,
    /// `ringplan_chunk_fds`): every dump.
    Passes,
    /// `ringplan_walk_fds` alone: the personality and buffer-group walks,
    /// loaded only for a ring that has some.
    Walks,
}

/// The loaded skeleton and the heap slot its object lives in.
///
/// libbpf-rs skeletons borrow a caller-provided `MaybeUninit<OpenObject>`
/// for their whole life; to keep a loaded skeleton in a struct, the slot is
/// a heap allocation this struct owns and frees after the skeleton is gone.
pub(super) struct LoadedSkeleton {
    pub(super) skeleton: ManuallyDrop<RingplanSkel<'static>>,
    object_slot: NonNull<MaybeUninit<OpenObject>>,
}

// SAFETY: the skeleton is Send (libbpf-rs says so), and the slot is an
// allocation only this struct refers to.
unsafe impl Send for LoadedSkeleton {}

impl LoadedSkeleton {
    pub(super) fn load(programs: Programs) -> Result<LoadedSkeleton, BpfError> {
        let object_slot = NonNull::from(Box::leak(Box::new(MaybeUninit::<OpenObject>::uninit())));
        // SAFETY: the slot is a fresh allocation nothing else refers to. It is
        // freed only after the skeleton that borrows it is dropped (in Drop,
        // or below once open_and_load has returned), so the 'static borrow
        // never outlives it.
        let slot: &'static mut MaybeUninit<OpenObject> = unsafe { &mut *object_slot.as_ptr() };
        match open_and_load(slot, programs) {
            Ok(skeleton) => Ok(LoadedSkeleton {
                skeleton: ManuallyDrop::new(skeleton),
                object_slot,
            }),
            Err(error) => {
                // SAFETY: open_and_load returned, so its skeleton (and the
                // object it kept in the slot) is gone; only the allocation is
                // left, and MaybeUninit drops nothing.
                drop(unsafe { Box::from_raw(object_slot.as_ptr()) });
                Err(error)
            }
        }
    }
}

impl Drop for LoadedSkeleton {
    fn drop(&mut self) {
        // SAFETY: the skeleton goes first (it closes the BPF object kept in
        // the slot), then the slot, which nothing refers to any more.
        unsafe {
            ManuallyDrop::drop(&mut self.skeleton);
            drop(Box::from_raw(self.object_slot.as_ptr()));
        }
    }
}

/// Opens and loads the skeleton's `programs` into `slot`; a load that
/// fails is explained by the first field this kernel's BTF lacks, if any.
fn open_and_load(
    slot: &'static mut MaybeUninit<OpenObject>,
    programs: Programs,
) -> Result<RingplanSkel<'static>, BpfError> {
    let mut open = RingplanSkelBuilder::default()
        .open(slot)
        .map_err(|source| BpfError::Unavailable {
            stage: "opening the BPF object",
            source,
        })?;
    let passes = programs == Programs::Passes;
    let progs = &mut open.progs;
    progs.ringplan_target_fds.set_autoload(passes);
    progs.ringplan_target_threads.set_autoload(passes);
    progs.ringplan_chunk_fds.set_autoload(passes);
    progs.ringplan_walk_fds.set_autoload(!passes);
    open.load().map_err(|source| match layout::missing_field() {
        Some(field) => BpfError::LayoutNotRecognised { field },
        None => BpfError::Unavailable {
            stage: "loading and verifying the BPF program",
            source,
        },
    })
}

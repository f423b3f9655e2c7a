//! Keeping a loaded libbpf-rs skeleton in a struct ([`LoadedSkeleton`]),
//! which its borrowed object slot otherwise prevents, and loading it.

use std::mem::{ManuallyDrop, MaybeUninit};
use std::ptr::NonNull;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::OpenObject;

use super::error::BpfError;
use super::layout;
use super::skeleton::{RingplanSkel, RingplanSkelBuilder};

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
    pub(super) fn load() -> Result<LoadedSkeleton, BpfError> {
        let object_slot = NonNull::from(Box::leak(Box::new(MaybeUninit::<OpenObject>::uninit())));
        // SAFETY: the slot is a fresh allocation nothing else refers to. It is
        // freed only after the skeleton that borrows it is dropped (in Drop,
        // or below once open_and_load has returned), so the 'static borrow
        // never outlives it.
        let slot: &'static mut MaybeUninit<OpenObject> = unsafe { &mut *object_slot.as_ptr() };
        match open_and_load(slot) {
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

/// Opens and loads the skeleton into `slot`; a load that fails is
/// explained by the first field this kernel's BTF lacks, if any.
fn open_and_load(
    slot: &'static mut MaybeUninit<OpenObject>,
) -> Result<RingplanSkel<'static>, BpfError> {
    let open = RingplanSkelBuilder::default()
        .open(slot)
        .map_err(|source| BpfError::Unavailable {
            stage: "opening the BPF object",
            source,
        })?;
    open.load().map_err(|source| match layout::missing_field() {
        Some(field) => BpfError::LayoutNotRecognised { field },
        None => BpfError::Unavailable {
            stage: "loading and verifying the BPF program",
            source,
        },
    })
}

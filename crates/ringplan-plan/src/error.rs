//! Why an image cannot be compiled into a plan.

use ringplan_image::{ImageError, ObjectId};

/// Why [`crate::compile`] refused an image. Every variant that concerns one
/// object names it; the planner reports the first problem it finds, before
/// it builds any step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompileError {
    #[error("not a ringplan image: format is {found:?}, expected {expected:?}")]
    WrongImageFormat {
        found: String,
        expected: &'static str,
    },
    #[error("unsupported image version {found} (this planner reads versions 1 to {supported})")]
    UnsupportedImageVersion { found: u32, supported: u32 },
    /// The image fails the image crate's own validation (a dangling
    /// reference, a wq_parent cycle, a size the kernel refuses, ...). The
    /// cause is in the message, so it is not also a `source` (a chain would
    /// print it twice).
    #[error("invalid image: {0}")]
    InvalidImage(ImageError),
    /// A tree image whose sharing the planner cannot restore, or one of
    /// whose processes' parts it refuses (the cause in the reason).
    #[error("tree image, process {pid}: {reason}")]
    TreeNotPlannable { pid: u32, reason: String },
    #[error(
        "ring {ring}: {field} unknown (the image was dumped with the {backend} backend), \
         so the ring cannot be restored exactly"
    )]
    UnknownRingField {
        ring: ObjectId,
        field: &'static str,
        backend: &'static str,
    },
    #[error("ring {ring}: setup flags {bits:#x} are unknown to this planner")]
    UnknownSetupFlags { ring: ObjectId, bits: u32 },
    #[error("ring {ring}: IORING_SETUP_{flag} cannot be restored: {reason}")]
    UnsupportedSetupFlag {
        ring: ObjectId,
        flag: &'static str,
        reason: &'static str,
    },
    #[error(
        "ring {ring}: cq_entries {cq_entries} without IORING_SETUP_CQSIZE; the kernel always makes it \
         2 x sq_entries = {expected}"
    )]
    CqEntriesWithoutCqsize {
        ring: ObjectId,
        cq_entries: u32,
        expected: u64,
    },
    #[error("ring {ring}: cq_entries {cq_entries} is not a power of two; the kernel would round it up to {rounded}")]
    CqEntriesNotPowerOfTwo {
        ring: ObjectId,
        cq_entries: u32,
        rounded: u64,
    },
    #[error("ring {ring}: file slot {slot} holds ring {target}; the kernel refuses to register an io_uring fd in a file table")]
    RingInFileTable {
        ring: ObjectId,
        slot: usize,
        target: ObjectId,
    },
    #[error("rings {first} and {second} both created the SQ thread of group {sq_group}; one thread has one creator")]
    TwoSqThreadCreators {
        sq_group: u32,
        first: ObjectId,
        second: ObjectId,
    },
    #[error(
        "rings {first} and {second} share the SQ thread of group {sq_group} but pin it to different CPUs \
         ({first_cpu} and {second_cpu})"
    )]
    SqThreadCpuMismatch {
        sq_group: u32,
        first: ObjectId,
        first_cpu: u32,
        second: ObjectId,
        second_cpu: u32,
    },
    #[error("eventfd {eventfd}: count {count:#x} is more than an eventfd holds (at most 0xfffffffffffffffe)")]
    EventfdCountTooLarge { eventfd: ObjectId, count: u64 },
    #[error("object {object}: fd {fd} is beyond the largest fd number the kernel allows ({max})")]
    FdTooLarge { object: ObjectId, fd: i32, max: i32 },
    /// A recorded ring mapping no `mmap` could recreate: unaligned, empty,
    /// outside user space, or overlapping another ring's mapping.
    #[error("ring {ring}: mapping {problem}")]
    BadRingMapping { ring: ObjectId, problem: String },
    /// A ring whose recorded state a continuous restore cannot reproduce.
    #[error("ring {ring}: cannot be restored where the program left it: {reason}")]
    ContinuityImpossible { ring: ObjectId, reason: String },
    /// Personalities or restrictions a restore cannot bring back.
    #[error("ring {ring}: its {what} cannot be restored: {reason}")]
    CannotRestore {
        ring: ObjectId,
        what: &'static str,
        reason: String,
    },
    #[error("the image needs {steps} steps, more than a plan can index")]
    TooManySteps { steps: usize },
    /// The step graph has a cycle. Image validation rules out every cycle the
    /// planner knows of, so this means a planner bug; it names an object on
    /// the cycle when there is one.
    #[error("the restore steps depend on each other in a cycle (through {})", describe_object(*object))]
    Cycle { object: Option<ObjectId> },
}

impl From<ImageError> for CompileError {
    fn from(error: ImageError) -> Self {
        CompileError::InvalidImage(error)
    }
}

fn describe_object(object: Option<ObjectId>) -> String {
    match object {
        Some(id) => format!("object {id}"),
        None => "a temporary ring".to_owned(),
    }
}

//! Whole-plan checks: everything an executor may rely on once a plan decodes.
//!
//! A restorer can take a plan without the planner, so a decoded plan is
//! checked as thoroughly as the planner builds it: order, handles, fds,
//! phases, and each op's parameters against what the kernel accepts.

use ringplan_image::{
    SetupFlags, MAX_BUFFER_LEN, MAX_BUFFER_SLOTS, MAX_CQ_ENTRIES, MAX_FILE_SLOTS, MAX_SQ_ENTRIES,
    USER_ADDRESS_LIMIT,
};

use ringplan_kernel::abi::limits::MAX_EVENTFD_COUNT;

mod continuity;

use std::collections::BTreeMap;

use crate::model::*;
use crate::rules::{self, check_ring_mapping, creates_or_truncates, peak_temporaries};

/// Why a plan is not one an executor can run. Every variant about a step
/// names its index and op.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanInvalid {
    #[error("the plan has {count} steps, more than 32-bit step indices can name")]
    TooManySteps { count: usize },
    #[error("needed_fds: fd {fd} is negative")]
    NegativeNeededFd { fd: i32 },
    #[error("needed_fds: fd {fd} is listed twice or not in ascending order")]
    UnorderedNeededFds { fd: i32 },
    #[error("temp_fd_floor {floor} is not above every needed fd (the largest is {largest})")]
    FloorNotAboveTargets { floor: i32, largest: i32 },
    #[error("step {step} ({op}): waits for step {after}, which does not come before it")]
    AfterNotEarlier {
        step: usize,
        op: &'static str,
        after: StepIndex,
    },
    #[error("step {step} ({op}): its after list is not ascending or repeats step {after}")]
    UnorderedAfter {
        step: usize,
        op: &'static str,
        after: StepIndex,
    },
    #[error("step {step} ({op}): handle {handle} names no earlier step")]
    HandleNotEarlier {
        step: usize,
        op: &'static str,
        handle: Handle,
    },
    #[error("step {step} ({op}): handle {handle} names a {found} step, which creates no fd")]
    NotAHandle {
        step: usize,
        op: &'static str,
        handle: Handle,
        found: &'static str,
    },
    #[error("step {step} ({op}): handle {handle} is the fd of a {found} step, not of {expected}")]
    WrongHandleKind {
        step: usize,
        op: &'static str,
        handle: Handle,
        found: &'static str,
        expected: &'static str,
    },
    #[error("step {step} ({op}): uses handle {handle} without waiting for step {}", handle.0)]
    HandleNotWaitedFor {
        step: usize,
        op: &'static str,
        handle: Handle,
    },
    #[error("step {step} ({op}): uses handle {handle}, which step {closed_by} already closed")]
    HandleClosed {
        step: usize,
        op: &'static str,
        handle: Handle,
        closed_by: StepIndex,
    },
    #[error(
        "step {step} (close_fd): closes {handle} without waiting for step {user}, which uses it"
    )]
    CloseBeforeUse {
        step: usize,
        handle: Handle,
        user: StepIndex,
    },
    #[error("step {step} ({op}): the fd it creates (h{step}) is never closed")]
    HandleLeaked { step: usize, op: &'static str },
    #[error("step {step} ({op}): {problem}")]
    BadOperands {
        step: usize,
        op: &'static str,
        problem: String,
    },
    #[error("the plan has {count} memory_barrier steps; it needs exactly one")]
    BarrierCount { count: usize },
    #[error("step {step} (register_buffers): does not wait for the memory barrier")]
    BuffersBeforeBarrier { step: usize },
    #[error(
        "step {step} ({op}): comes after the first install_fd (step {first_install}); after it only \
         install_fd, close_fd, memory_barrier and register_buffers may run"
    )]
    BuildAfterInstall {
        step: usize,
        op: &'static str,
        first_install: usize,
    },
    #[error("step {step} (install_fd): comes after the memory barrier (step {barrier})")]
    InstallAfterBarrier { step: usize, barrier: usize },
    #[error("step {step} (install_fd): fd {fd} is not in needed_fds")]
    InstallNotNeeded { step: usize, fd: i32 },
    #[error("step {step} (install_fd): fd {fd} was already installed by step {first}")]
    InstallTwice { step: usize, fd: i32, first: usize },
    #[error("fd {fd} is in needed_fds but no install_fd step installs it")]
    NeededNotInstalled { fd: i32 },
    #[error(
        "step {step} (setup_ring): maps {region} at {addr:#x}+{len}, which overlaps the mapping step {other} \
         makes"
    )]
    MappingsOverlap {
        step: usize,
        region: &'static str,
        addr: u64,
        len: u64,
        other: usize,
    },
    #[error("peak_temporaries is {stated} but the steps keep up to {actual} temporaries open")]
    PeakMismatch { stated: u32, actual: u32 },
    /// A tree plan's parts do not fit together (process `pid`'s part).
    #[error("process {pid}'s part: {problem}")]
    BadPart { pid: u32, problem: String },
}

/// What a handle operand must be the fd of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expected {
    Ring,
    Eventfd,
    /// Anything a file table may hold: a file or an eventfd, not a ring.
    TableEntry,
    Any,
}

impl Expected {
    fn accepts(self, op: &Op) -> bool {
        match self {
            Expected::Ring => matches!(
                op,
                Op::SetupRing(_)
                    | Op::ReceiveFd(ReceiveFd {
                        kind: ReceivedKind::Ring,
                        ..
                    })
            ),
            Expected::Eventfd => matches!(
                op,
                Op::CreateEventfd(_)
                    | Op::ReceiveFd(ReceiveFd {
                        kind: ReceivedKind::Eventfd,
                        ..
                    })
            ),
            Expected::TableEntry => matches!(
                op,
                Op::OpenFile(_)
                    | Op::ExternalInput(_)
                    | Op::CreateEventfd(_)
                    | Op::ReceiveFd(ReceiveFd {
                        kind: ReceivedKind::Eventfd | ReceivedKind::File,
                        ..
                    })
            ),
            Expected::Any => op.defines_handle(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Expected::Ring => "a ring",
            Expected::Eventfd => "an eventfd",
            Expected::TableEntry => "a file or an eventfd",
            Expected::Any => "any object",
        }
    }
}

const NOT_CLOSED: StepIndex = StepIndex::MAX;

struct Checker<'a> {
    plan: &'a Plan,
    /// Per step index: the step that closed its handle.
    closed_by: Vec<StepIndex>,
    /// Every (handle, step that used it) pair other than the close itself,
    /// checked against the closing step's after list at the end.
    uses: Vec<(StepIndex, StepIndex)>,
    /// Per needed fd (by position in needed_fds): the step installing it.
    installed_by: Vec<StepIndex>,
    barrier: Option<usize>,
    barrier_count: usize,
    first_install: Option<usize>,
    /// Every ring mapping and placed memory range: `(addr, len, step,
    /// region)`, checked for overlaps at the end.
    mappings: Vec<(u64, u64, usize, ringplan_image::RingRegion)>,
    /// Per step index: `continuity::mark` bits of a ring's setup or a
    /// memory placement.
    marks: Vec<u8>,
    /// Per continuous ring's setup step: the SQ head its
    /// `restore_completions` brought it to.
    completions_sq_head: BTreeMap<StepIndex, u32>,
    /// Every registered ring-fd slot (tid, offset) a step fills: a slot
    /// holds one ring.
    ring_fd_slots: std::collections::BTreeSet<(u32, u32)>,
}

/// Checks everything an executor relies on; see [`PlanInvalid`] for the
/// list. Linear in the plan's size (times a logarithm for lookups).
pub fn validate(plan: &Plan) -> Result<(), PlanInvalid> {
    validate_part(plan)?;
    check_parts(plan)
}

/// One process's plan (the whole plan of one process, or one part of a
/// tree plan) on its own.
fn validate_part(plan: &Plan) -> Result<(), PlanInvalid> {
    let step_count = plan.steps.len();
    if step_count >= NOT_CLOSED as usize {
        return Err(PlanInvalid::TooManySteps { count: step_count });
    }
    check_fd_header(plan)?;
    let mut checker = Checker {
        plan,
        closed_by: vec![NOT_CLOSED; step_count],
        uses: Vec::new(),
        installed_by: vec![NOT_CLOSED; plan.needed_fds.len()],
        barrier: None,
        barrier_count: 0,
        first_install: None,
        mappings: Vec::new(),
        marks: vec![0; step_count],
        completions_sq_head: BTreeMap::new(),
        ring_fd_slots: std::collections::BTreeSet::new(),
    };
    for (index, step) in plan.steps.iter().enumerate() {
        checker.check_step(index, step)?;
    }
    checker.finish()
}

/// A tree plan's parts: version 3, pids unique, each parent listed
/// before, each part a valid plan of its own process without parts, and
/// every `receive_fd` taking an fd an earlier part installs. A plan of
/// one process has no `receive_fd`.
fn check_parts(plan: &Plan) -> Result<(), PlanInvalid> {
    let root = plan.source.pid;
    let bad = |pid: u32, problem: String| PlanInvalid::BadPart { pid, problem };
    if !plan.processes.is_empty() && plan.version < TREE_FORMAT_VERSION {
        return Err(bad(
            root,
            format!(
                "a plan of version {} has no process parts (version {TREE_FORMAT_VERSION} has)",
                plan.version
            ),
        ));
    }
    // The fds each part installs, by pid, as far as the parts checked.
    let mut installs: BTreeMap<u32, &[i32]> = BTreeMap::new();
    check_receives(plan, root, &installs)?;
    installs.insert(root, &plan.needed_fds);
    for part in &plan.processes {
        let pid = part.pid;
        if installs.contains_key(&pid) {
            return Err(bad(pid, "the process has two parts".to_owned()));
        }
        if !installs.contains_key(&part.parent) {
            return Err(bad(
                pid,
                format!("its parent {} has no part before it", part.parent),
            ));
        }
        if part.plan.source.pid != pid || !part.plan.processes.is_empty() {
            return Err(bad(
                pid,
                "its plan must be of that process and have no parts of its own".to_owned(),
            ));
        }
        validate_part(&part.plan).map_err(|error| bad(pid, error.to_string()))?;
        check_receives(&part.plan, pid, &installs)?;
        installs.insert(pid, &part.plan.needed_fds);
    }
    Ok(())
}

/// Every `receive_fd` of `part` (process `pid`) takes an fd that a part
/// in `earlier` installs.
fn check_receives(
    part: &Plan,
    pid: u32,
    earlier: &BTreeMap<u32, &[i32]>,
) -> Result<(), PlanInvalid> {
    for (index, step) in part.steps.iter().enumerate() {
        let Op::ReceiveFd(receive) = &step.op else {
            continue;
        };
        let installed = earlier
            .get(&receive.from_pid)
            .is_some_and(|fds| fds.binary_search(&receive.from_fd).is_ok());
        if !installed {
            return Err(PlanInvalid::BadPart {
                pid,
                problem: format!(
                    "step {index} receive_fd: fd {} of process {} is installed by no earlier part",
                    receive.from_fd, receive.from_pid
                ),
            });
        }
    }
    Ok(())
}

fn check_fd_header(plan: &Plan) -> Result<(), PlanInvalid> {
    let mut previous: Option<i32> = None;
    for &fd in &plan.needed_fds {
        if fd < 0 {
            return Err(PlanInvalid::NegativeNeededFd { fd });
        }
        if previous.is_some_and(|previous| previous >= fd) {
            return Err(PlanInvalid::UnorderedNeededFds { fd });
        }
        previous = Some(fd);
    }
    if let Some(&largest) = plan.needed_fds.last() {
        if plan.temp_fd_floor <= largest {
            return Err(PlanInvalid::FloorNotAboveTargets {
                floor: plan.temp_fd_floor,
                largest,
            });
        }
    }
    Ok(())
}

impl Checker<'_> {
    fn check_step(&mut self, index: usize, step: &Step) -> Result<(), PlanInvalid> {
        let op_name = step.op.name();
        let mut previous: Option<StepIndex> = None;
        for &after in &step.after {
            if after as usize >= index {
                return Err(PlanInvalid::AfterNotEarlier {
                    step: index,
                    op: op_name,
                    after,
                });
            }
            if previous.is_some_and(|previous| previous >= after) {
                return Err(PlanInvalid::UnorderedAfter {
                    step: index,
                    op: op_name,
                    after,
                });
            }
            previous = Some(after);
        }
        self.check_phase(index, step)?;
        let bad = |problem: String| PlanInvalid::BadOperands {
            step: index,
            op: op_name,
            problem,
        };

        match &step.op {
            Op::CreateEventfd(eventfd) => {
                if eventfd.count > MAX_EVENTFD_COUNT {
                    return Err(bad(format!(
                        "count {:#x} is more than an eventfd holds",
                        eventfd.count
                    )));
                }
                require_object(index, step)?;
            }
            Op::OpenFile(open) => {
                if !open.path.starts_with('/') || open.path.contains('\0') {
                    return Err(bad(format!("path {:?} is not an absolute path", open.path)));
                }
                if creates_or_truncates(open.flags) {
                    return Err(bad(format!(
                        "flags {:#o} would create or truncate the file",
                        open.flags
                    )));
                }
                if let Some(file_type) = open
                    .file_type
                    .filter(|file_type| !OpenFile::REOPENABLE.contains(file_type))
                {
                    return Err(bad(format!(
                        "a {} cannot be reopened by path (it is an external input)",
                        file_type.name()
                    )));
                }
                require_object(index, step)?;
            }
            Op::ExternalInput(_) => require_object(index, step)?,
            Op::ReceiveFd(receive) => self.check_receive(index, step, receive)?,
            Op::SetupRing(setup) => self.check_setup_ring(index, step, setup)?,
            Op::RegisterEventfd(register) => {
                self.use_ring_handle(index, step, register.ring_handle)?;
                self.use_handle(index, step, register.eventfd_handle, Expected::Eventfd)?;
                self.note_registration(index, step, register.ring_handle, true)?;
            }
            Op::RegisterFiles(register) => {
                if register.slots.is_empty() || register.slots.len() > MAX_FILE_SLOTS as usize {
                    return Err(bad(format!(
                        "{} file slots is outside 1..={MAX_FILE_SLOTS}",
                        register.slots.len()
                    )));
                }
                if let Some(problem) = tags_problem(&register.tags, |slot| {
                    register.slots.get(slot).is_some_and(Option::is_some)
                }) {
                    return Err(bad(problem));
                }
                self.use_ring_handle(index, step, register.ring_handle)?;
                for slot in register.slots.iter().flatten() {
                    self.use_handle(index, step, *slot, Expected::TableEntry)?;
                }
                self.note_registration(index, step, register.ring_handle, false)?;
            }
            Op::RegisterPersonalities(register) => {
                if let Some(problem) = personalities_problem(register) {
                    return Err(bad(problem));
                }
                self.use_ring_handle(index, step, register.ring_handle)?;
                self.note_registration(index, step, register.ring_handle, false)?;
            }
            Op::RegisterRestrictions(register) => {
                if let Some(problem) = restrictions_problem(&register.restrictions) {
                    return Err(bad(problem));
                }
                self.use_ring_handle(index, step, register.ring_handle)?;
                self.note_registration(index, step, register.ring_handle, false)?;
            }
            Op::RegisterSettings(register) => {
                if let Some(problem) = settings_problem(register) {
                    return Err(bad(problem));
                }
                self.use_ring_handle(index, step, register.ring_handle)?;
                self.note_registration(index, step, register.ring_handle, false)?;
            }
            Op::RegisterWaitRegion(register) => {
                if let Some(problem) = wait_region_problem(register) {
                    return Err(bad(problem));
                }
                self.use_ring_handle(index, step, register.ring_handle)?;
                self.note_registration(index, step, register.ring_handle, false)?;
            }
            Op::EnableRings(enable) => self.use_ring_handle(index, step, enable.ring_handle)?,
            Op::RegisterRingFd(register) => {
                use ringplan_kernel::abi::ring_fd::REGISTERED_RING_FD_SLOTS;
                if register.offset >= REGISTERED_RING_FD_SLOTS || register.tid == 0 {
                    return Err(bad(format!(
                        "offset {} of thread {} is outside a thread's {REGISTERED_RING_FD_SLOTS} slots",
                        register.offset, register.tid
                    )));
                }
                if !self.ring_fd_slots.insert((register.tid, register.offset)) {
                    return Err(bad(format!(
                        "offset {} of thread {} is filled twice",
                        register.offset, register.tid
                    )));
                }
                self.use_ring_handle(index, step, register.ring_handle)?;
            }
            Op::PlaceRingMemory(memory) => self.check_place_memory(index, step, memory)?,
            Op::RestoreCompletions(restore) => {
                self.check_restore_completions(index, step, restore)?;
                self.completions_sq_head
                    .insert(restore.ring_handle.0, restore.sq_head);
            }
            Op::QueueSqes(queue) => {
                if self.barrier.is_none() {
                    return Err(bad(
                        "comes before the memory barrier (an SQ thread would consume its SQEs at once)"
                            .to_owned(),
                    ));
                }
                self.check_queue_sqes(index, step, queue)?;
            }
            Op::MemoryBarrier => {
                self.barrier_count += 1;
                self.barrier.get_or_insert(index);
            }
            Op::RegisterBuffers(register) => self.check_register_buffers(index, step, register)?,
            Op::RegisterPbufRing(register) => {
                self.check_register_pbuf_ring(index, step, register)?
            }
            Op::ProvideBuffers(provide) => self.check_provide_buffers(index, step, provide)?,
            Op::InstallFd(install) => self.check_install(index, step, install)?,
            Op::CloseFd(close) => self.check_close(index, step, close)?,
        }
        Ok(())
    }

    /// A received object's operands: an object, a non-negative fd, and
    /// mappings only for a ring (checked as a setup's are).
    fn check_receive(
        &mut self,
        index: usize,
        step: &Step,
        receive: &ReceiveFd,
    ) -> Result<(), PlanInvalid> {
        let bad = |problem: String| PlanInvalid::BadOperands {
            step: index,
            op: step.op.name(),
            problem,
        };
        require_object(index, step)?;
        if receive.from_fd < 0 || receive.from_pid == 0 {
            return Err(bad(format!(
                "fd {} of process {} names no fd",
                receive.from_fd, receive.from_pid
            )));
        }
        if receive.kind != ReceivedKind::Ring
            && (!receive.mappings.is_empty() || receive.placed_memory)
        {
            return Err(bad(format!(
                "an {} has no ring mappings",
                receive.kind.name()
            )));
        }
        for mapping in &receive.mappings {
            check_ring_mapping(mapping).map_err(bad)?;
            self.mappings
                .push((mapping.addr, mapping.len, index, mapping.region));
        }
        Ok(())
    }

    /// A ring's setup parameters, mappings and `wq_fd`.
    fn check_setup_ring(
        &mut self,
        index: usize,
        step: &Step,
        setup: &SetupRing,
    ) -> Result<(), PlanInvalid> {
        let bad = |problem: String| PlanInvalid::BadOperands {
            step: index,
            op: step.op.name(),
            problem,
        };
        check_setup(setup).map_err(bad)?;
        if setup.temporary.is_some() != step.object.is_none() {
            return Err(bad(
                "a ring's step names an object exactly when the ring is not temporary".to_owned(),
            ));
        }
        if setup.temporary.is_some() && !setup.mappings.is_empty() {
            return Err(bad(
                "a temporary ring was never mapped by the task".to_owned()
            ));
        }
        for mapping in &setup.mappings {
            check_ring_mapping(mapping).map_err(|problem| bad(format!("mapping {problem}")))?;
            // On placed memory the mappings are not made: the memory is
            // where they were.
            if setup.memory.is_none() {
                self.mappings
                    .push((mapping.addr, mapping.len, index, mapping.region));
            }
        }
        if let Some(memory) = setup.memory {
            if setup.temporary.is_some() {
                return Err(bad("a temporary ring has no placed memory".to_owned()));
            }
            self.check_setup_memory(index, step, memory)?;
        }
        if let Some(wq_handle) = setup.wq_handle {
            self.use_handle(index, step, wq_handle, Expected::Ring)?;
            let wq_is_sqpoll = match &self.plan.steps[wq_handle.0 as usize].op {
                Op::SetupRing(wq_setup) => wq_setup.flags & SetupFlags::SQPOLL.bits() != 0,
                _ => false,
            };
            if setup.flags & SetupFlags::SQPOLL.bits() != 0 && !wq_is_sqpoll {
                return Err(bad(format!(
                    "attaches its SQ thread to {wq_handle}, a ring without SQPOLL"
                )));
            }
        }
        Ok(())
    }

    /// A buffer table's iovecs, and its wait for the memory barrier.
    fn check_register_buffers(
        &mut self,
        index: usize,
        step: &Step,
        register: &RegisterBuffers,
    ) -> Result<(), PlanInvalid> {
        let bad = |problem: String| PlanInvalid::BadOperands {
            step: index,
            op: step.op.name(),
            problem,
        };
        if register.iovecs.is_empty() || register.iovecs.len() > MAX_BUFFER_SLOTS as usize {
            return Err(bad(format!(
                "{} buffer slots is outside 1..={MAX_BUFFER_SLOTS}",
                register.iovecs.len()
            )));
        }
        for (slot, iovec) in register.iovecs.iter().enumerate() {
            check_iovec(iovec).map_err(|problem| bad(format!("buffer slot {slot}: {problem}")))?;
        }
        if let Some(problem) = tags_problem(&register.tags, |slot| {
            register
                .iovecs
                .get(slot)
                .is_some_and(|iovec| !iovec.is_empty())
        }) {
            return Err(bad(problem));
        }
        let waits_for_barrier = self
            .barrier
            .is_some_and(|barrier| step.after.binary_search(&(barrier as StepIndex)).is_ok());
        if !waits_for_barrier {
            return Err(PlanInvalid::BuffersBeforeBarrier { step: index });
        }
        self.use_ring_handle(index, step, register.ring_handle)?;
        Ok(())
    }

    /// A legacy group's buffers: at least one SQE, each of 1 to the most
    /// buffers one SQE provides, bids within 16 bits, the buffers inside
    /// user space; after the barrier (the buffers are the program's), on a
    /// continuous ring before its SQEs are queued (each SQE moves its SQ
    /// head, which `restore_completions` leaves for them).
    fn check_provide_buffers(
        &mut self,
        index: usize,
        step: &Step,
        provide: &ProvideBuffers,
    ) -> Result<(), PlanInvalid> {
        use ringplan_kernel::abi::legacy_pbuf::MAX_BUFFERS_PER_SQE;
        let bad = |problem: String| PlanInvalid::BadOperands {
            step: index,
            op: step.op.name(),
            problem,
        };
        if provide.sqes.is_empty() {
            return Err(bad("provides no buffers".to_owned()));
        }
        for sqe in &provide.sqes {
            let fits = (1..=MAX_BUFFERS_PER_SQE).contains(&sqe.count)
                && u32::from(sqe.bid) + sqe.count <= 1 << 16
                && u64::from(sqe.count)
                    .checked_mul(u64::from(sqe.len))
                    .and_then(|bytes| sqe.addr.checked_add(bytes))
                    .is_some_and(|end| end <= ringplan_image::USER_ADDRESS_LIMIT);
            if !fits {
                return Err(bad(format!(
                    "{} buffers of {} B at {:#x} from bid {}: not 1 to {MAX_BUFFERS_PER_SQE} buffers with 16-bit bids inside user space",
                    sqe.count, sqe.len, sqe.addr, sqe.bid
                )));
            }
        }
        let waits_for_barrier = self
            .barrier
            .is_some_and(|barrier| step.after.binary_search(&(barrier as StepIndex)).is_ok());
        if !waits_for_barrier {
            return Err(PlanInvalid::BuffersBeforeBarrier { step: index });
        }
        self.continuous_ring(index, step, provide.ring_handle)?;
        let ring = provide.ring_handle.0;
        if self.marks[ring as usize] & continuity::mark::QUEUED != 0 {
            return Err(bad(
                "provides buffers after the ring's SQEs were queued".to_owned()
            ));
        }
        let head = self.completions_sq_head.entry(ring).or_insert(0);
        *head = head.wrapping_add(provide.sqes.len() as u32);
        Ok(())
    }

    /// A buffer ring: entries a power of two within the kernel's limit,
    /// its memory page-aligned inside user space, after the barrier (the
    /// memory is the program's).
    fn check_register_pbuf_ring(
        &mut self,
        index: usize,
        step: &Step,
        register: &RegisterPbufRing,
    ) -> Result<(), PlanInvalid> {
        use ringplan_kernel::abi::{linux::PAGE_SIZE, pbuf};
        let bad = |problem: String| PlanInvalid::BadOperands {
            step: index,
            op: step.op.name(),
            problem,
        };
        if !register.entries.is_power_of_two() || register.entries > pbuf::MAX_ENTRIES {
            return Err(bad(format!(
                "{} entries is not a power of two up to {}",
                register.entries,
                pbuf::MAX_ENTRIES
            )));
        }
        if register.addr == 0
            || register.addr % PAGE_SIZE != 0
            || register
                .addr
                .checked_add(register.memory_len())
                .is_none_or(|end| end > ringplan_image::USER_ADDRESS_LIMIT)
        {
            return Err(bad(format!(
                "memory at {:#x} is not page-aligned inside user space",
                register.addr
            )));
        }
        if let Some(contents) = &register.contents {
            if contents.0.len() as u64 != register.memory_len() {
                return Err(bad(format!(
                    "{} bytes of contents for {} entries (want {})",
                    contents.0.len(),
                    register.entries,
                    register.memory_len()
                )));
            }
        }
        let waits_for_barrier = self
            .barrier
            .is_some_and(|barrier| step.after.binary_search(&(barrier as StepIndex)).is_ok());
        if !waits_for_barrier {
            return Err(PlanInvalid::BuffersBeforeBarrier { step: index });
        }
        if register.head == 0 {
            self.use_ring_handle(index, step, register.ring_handle)?;
            return Ok(());
        }
        // Its reads move the SQ head of a ring restored with its
        // positions, before its SQEs are queued at the recorded head.
        self.continuous_ring(index, step, register.ring_handle)?;
        let ring = register.ring_handle.0;
        if self.marks[ring as usize] & continuity::mark::QUEUED != 0 {
            return Err(bad(
                "moves a buffer ring's head after the ring's SQEs were queued".to_owned(),
            ));
        }
        let head = self.completions_sq_head.entry(ring).or_insert(0);
        *head = head.wrapping_add(u32::from(register.head));
        Ok(())
    }

    /// An install: of its own object's handle, onto a needed fd, once.
    fn check_install(
        &mut self,
        index: usize,
        step: &Step,
        install: &InstallFd,
    ) -> Result<(), PlanInvalid> {
        self.use_handle(index, step, install.source_handle, Expected::Any)?;
        self.require_same_object(index, step, install.source_handle)?;
        let Ok(position) = self.plan.needed_fds.binary_search(&install.fd) else {
            return Err(PlanInvalid::InstallNotNeeded {
                step: index,
                fd: install.fd,
            });
        };
        let first = self.installed_by[position];
        if first != NOT_CLOSED {
            return Err(PlanInvalid::InstallTwice {
                step: index,
                fd: install.fd,
                first: first as usize,
            });
        }
        self.installed_by[position] = index as StepIndex;
        Ok(())
    }

    /// A close: of open handles, ascending, naming its object when it
    /// closes one.
    fn check_close(
        &mut self,
        index: usize,
        step: &Step,
        close: &CloseFd,
    ) -> Result<(), PlanInvalid> {
        let bad = |problem: String| PlanInvalid::BadOperands {
            step: index,
            op: step.op.name(),
            problem,
        };
        if close.handles.is_empty() {
            return Err(bad("closes nothing".to_owned()));
        }
        if !close.handles.windows(2).all(|pair| pair[0] < pair[1]) {
            return Err(bad("its handles are not ascending or repeat one".to_owned()));
        }
        for &handle in &close.handles {
            self.check_handle(index, step, handle, Expected::Any)?;
        }
        match close.handles.as_slice() {
            [handle] => self.require_same_object(index, step, *handle)?,
            _ if step.object.is_some() => {
                return Err(bad(
                    "a close of several fds names no single object".to_owned()
                ));
            }
            _ => {}
        }
        for &handle in &close.handles {
            self.closed_by[handle.0 as usize] = index as StepIndex;
        }
        Ok(())
    }

    /// The sequence is: build steps, then installs (and closes), then the
    /// barrier, then buffer registrations (and closes). Targets are written
    /// only once nothing else can fail before the barrier.
    fn check_phase(&mut self, index: usize, step: &Step) -> Result<(), PlanInvalid> {
        match &step.op {
            Op::CreateEventfd(_)
            | Op::OpenFile(_)
            | Op::ExternalInput(_)
            | Op::SetupRing(_)
            | Op::ReceiveFd(_)
            | Op::RegisterEventfd(_)
            | Op::RegisterFiles(_)
            | Op::RegisterPersonalities(_)
            | Op::RegisterRestrictions(_)
            | Op::RegisterSettings(_)
            | Op::RegisterWaitRegion(_)
            | Op::RegisterRingFd(_)
            | Op::PlaceRingMemory(_)
            | Op::RestoreCompletions(_) => {
                if let Some(first_install) = self.first_install {
                    return Err(PlanInvalid::BuildAfterInstall {
                        step: index,
                        op: step.op.name(),
                        first_install,
                    });
                }
            }
            Op::InstallFd(_) => {
                if let Some(barrier) = self.barrier {
                    return Err(PlanInvalid::InstallAfterBarrier {
                        step: index,
                        barrier,
                    });
                }
                self.first_install.get_or_insert(index);
            }
            Op::MemoryBarrier
            | Op::RegisterBuffers(_)
            | Op::RegisterPbufRing(_)
            | Op::ProvideBuffers(_)
            | Op::QueueSqes(_)
            | Op::EnableRings(_)
            | Op::CloseFd(_) => {}
        }
        Ok(())
    }

    fn use_ring_handle(
        &mut self,
        index: usize,
        step: &Step,
        handle: Handle,
    ) -> Result<(), PlanInvalid> {
        self.use_handle(index, step, handle, Expected::Ring)?;
        self.require_same_object(index, step, handle)
    }

    fn use_handle(
        &mut self,
        index: usize,
        step: &Step,
        handle: Handle,
        expected: Expected,
    ) -> Result<(), PlanInvalid> {
        self.check_handle(index, step, handle, expected)?;
        self.uses.push((handle.0, index as StepIndex));
        Ok(())
    }

    fn check_handle(
        &self,
        index: usize,
        step: &Step,
        handle: Handle,
        expected: Expected,
    ) -> Result<(), PlanInvalid> {
        let op = step.op.name();
        let Some(defining) = self
            .plan
            .steps
            .get(handle.0 as usize)
            .filter(|_| (handle.0 as usize) < index)
        else {
            return Err(PlanInvalid::HandleNotEarlier {
                step: index,
                op,
                handle,
            });
        };
        if !defining.op.defines_handle() {
            return Err(PlanInvalid::NotAHandle {
                step: index,
                op,
                handle,
                found: defining.op.name(),
            });
        }
        if !expected.accepts(&defining.op) {
            return Err(PlanInvalid::WrongHandleKind {
                step: index,
                op,
                handle,
                found: defining.op.name(),
                expected: expected.name(),
            });
        }
        let closed_by = self.closed_by[handle.0 as usize];
        if closed_by != NOT_CLOSED {
            return Err(PlanInvalid::HandleClosed {
                step: index,
                op,
                handle,
                closed_by,
            });
        }
        if step.after.binary_search(&handle.0).is_err() {
            return Err(PlanInvalid::HandleNotWaitedFor {
                step: index,
                op,
                handle,
            });
        }
        Ok(())
    }

    /// An install, a close or a registration acts on the object whose fd
    /// its handle is.
    fn require_same_object(
        &self,
        index: usize,
        step: &Step,
        handle: Handle,
    ) -> Result<(), PlanInvalid> {
        let defining = &self.plan.steps[handle.0 as usize];
        if defining.object != step.object {
            let name = |object: Option<ringplan_image::ObjectId>| {
                object.map_or_else(|| "no object".to_owned(), |id| format!("object {id}"))
            };
            return Err(PlanInvalid::BadOperands {
                step: index,
                op: step.op.name(),
                problem: format!(
                    "names {} but its handle {handle} is the fd of {}",
                    name(step.object),
                    name(defining.object)
                ),
            });
        }
        Ok(())
    }

    fn finish(self) -> Result<(), PlanInvalid> {
        let steps = &self.plan.steps;
        for (index, step) in steps.iter().enumerate() {
            if step.op.defines_handle() && self.closed_by[index] == NOT_CLOSED {
                return Err(PlanInvalid::HandleLeaked {
                    step: index,
                    op: step.op.name(),
                });
            }
        }
        for &(handle, user) in &self.uses {
            let close = self.closed_by[handle as usize] as usize;
            if steps[close].after.binary_search(&user).is_err() {
                return Err(PlanInvalid::CloseBeforeUse {
                    step: close,
                    handle: Handle(handle),
                    user,
                });
            }
        }
        if let Some(position) = self
            .installed_by
            .iter()
            .position(|&step| step == NOT_CLOSED)
        {
            return Err(PlanInvalid::NeededNotInstalled {
                fd: self.plan.needed_fds[position],
            });
        }
        if let Some(place) = steps.iter().enumerate().position(|(index, step)| {
            matches!(step.op, Op::PlaceRingMemory(_))
                && self.marks[index] & continuity::mark::MEMORY_USED == 0
        }) {
            return Err(PlanInvalid::BadOperands {
                step: place,
                op: "place_ring_memory",
                problem: "no ring is set up on this memory".to_owned(),
            });
        }
        if self.barrier_count != 1 {
            return Err(PlanInvalid::BarrierCount {
                count: self.barrier_count,
            });
        }
        // Two mappings of one range: the executor could only make the
        // first, and the dumped task cannot have had both.
        let mut mappings = self.mappings;
        mappings.sort_unstable_by_key(|&(addr, _, step, _)| (addr, step));
        for pair in mappings.windows(2) {
            let ((first_addr, first_len, first_step, _), (addr, len, step, region)) =
                (pair[0], pair[1]);
            // check_ring_mapping bounded both below USER_ADDRESS_LIMIT.
            if first_addr + first_len > addr {
                return Err(PlanInvalid::MappingsOverlap {
                    step,
                    region: region.name(),
                    addr,
                    len,
                    other: first_step,
                });
            }
        }
        let actual = peak_temporaries(steps);
        if actual != self.plan.peak_temporaries {
            return Err(PlanInvalid::PeakMismatch {
                stated: self.plan.peak_temporaries,
                actual,
            });
        }
        Ok(())
    }
}

fn require_object(index: usize, step: &Step) -> Result<(), PlanInvalid> {
    if step.object.is_none() {
        return Err(PlanInvalid::BadOperands {
            step: index,
            op: step.op.name(),
            problem: "names no image object".to_owned(),
        });
    }
    Ok(())
}

/// The setup parameters the kernel accepts and would hold unchanged.
fn check_setup(setup: &SetupRing) -> Result<(), String> {
    let flags = setup.flags;
    let has = |flag: u32| flags & flag != 0;
    if setup.sq_entries == 0
        || setup.sq_entries > MAX_SQ_ENTRIES
        || !setup.sq_entries.is_power_of_two()
    {
        return Err(format!(
            "sq_entries {} is not a power of two in 1..={MAX_SQ_ENTRIES}",
            setup.sq_entries
        ));
    }
    if setup.cq_entries < setup.sq_entries || setup.cq_entries > MAX_CQ_ENTRIES {
        return Err(format!(
            "cq_entries {} is outside {}..={MAX_CQ_ENTRIES}",
            setup.cq_entries, setup.sq_entries
        ));
    }
    match rules::cq_entries_problem(flags, setup.sq_entries, setup.cq_entries) {
        Some(rules::CqEntriesProblem::NotPowerOfTwo { .. }) => {
            return Err(format!(
                "cq_entries {} is not a power of two",
                setup.cq_entries
            ));
        }
        Some(rules::CqEntriesProblem::WithoutCqsize { .. }) => {
            return Err(format!(
                "cq_entries {} without IORING_SETUP_CQSIZE is not 2 x sq_entries",
                setup.cq_entries
            ));
        }
        None => {}
    }
    if rules::setup_flag_problem(flags, setup.memory.is_some()).is_some() {
        return Err(format!(
            "setup flags {flags:#x} include flags a plan cannot carry"
        ));
    }
    if has(SetupFlags::SQ_AFF.bits()) && !has(SetupFlags::SQPOLL.bits()) {
        return Err("IORING_SETUP_SQ_AFF without IORING_SETUP_SQPOLL".to_owned());
    }
    if setup.sq_thread_cpu.is_some() != has(SetupFlags::SQ_AFF.bits()) {
        return Err("sq_thread_cpu must be set exactly with IORING_SETUP_SQ_AFF".to_owned());
    }
    if setup.sq_thread_idle_ms.is_some() != has(SetupFlags::SQPOLL.bits()) {
        return Err("sq_thread_idle_ms must be set exactly with IORING_SETUP_SQPOLL".to_owned());
    }
    if setup.wq_handle.is_some() != has(SetupFlags::ATTACH_WQ.bits()) {
        return Err("wq_handle must be set exactly with IORING_SETUP_ATTACH_WQ".to_owned());
    }
    Ok(())
}

fn check_iovec(iovec: &Iovec) -> Result<(), String> {
    if iovec.is_empty() {
        return Ok(());
    }
    if iovec.base == 0 || iovec.len == 0 {
        return Err(format!(
            "{:#x}+{} is neither empty nor a buffer",
            iovec.base, iovec.len
        ));
    }
    if iovec.len > MAX_BUFFER_LEN {
        return Err(format!("length {} exceeds the kernel's 1 GiB", iovec.len));
    }
    if iovec
        .base
        .checked_add(iovec.len)
        .is_none_or(|end| end > USER_ADDRESS_LIMIT)
    {
        return Err(format!(
            "{:#x}+{} is not a user address range",
            iovec.base, iovec.len
        ));
    }
    Ok(())
}

/// What is wrong with a `register_personalities` step's operands: ids
/// outside the kernel's range or not ascending, nothing to register, or a
/// next id the allocator cannot be left at by registering in order (below
/// a recorded id: the ids wrapped).
pub(crate) fn personalities_problem(register: &RegisterPersonalities) -> Option<String> {
    use ringplan_kernel::abi::personality::{FIRST_ID, MAX_ID};
    let mut previous = 0;
    for personality in &register.personalities {
        if !(FIRST_ID..=MAX_ID).contains(&personality.id) || personality.id <= previous {
            return Some(format!(
                "personality id {} is outside {FIRST_ID}..={MAX_ID} or not ascending",
                personality.id
            ));
        }
        previous = personality.id;
    }
    if register.next > MAX_ID + 1 || (register.personalities.is_empty() && register.next < 2) {
        return Some(format!("next id {} cannot be restored", register.next));
    }
    if register.next <= previous {
        return Some(format!(
            "next id {} is not above id {previous}: the kernel's ids wrapped past {MAX_ID}, which registering in order cannot bring back",
            register.next
        ));
    }
    None
}

/// What is wrong with restrictions a step would register: opcodes
/// repeated, out of order or beyond the kernel's bitmaps, flags that are
/// not `IOSQE_*`.
pub(crate) fn restrictions_problem(restrictions: &ringplan_image::Restrictions) -> Option<String> {
    use ringplan_kernel::abi::restriction::{BITMAP_BITS, SQE_FLAGS_MASK};
    for (what, ops) in [
        ("register", &restrictions.register_ops),
        ("SQE", &restrictions.sqe_ops),
    ] {
        if ops.windows(2).any(|pair| pair[0] >= pair[1])
            || ops.iter().any(|op| u32::from(*op) >= BITMAP_BITS)
        {
            return Some(format!(
                "{what} opcodes {ops:?} are not ascending opcodes below {BITMAP_BITS}"
            ));
        }
    }
    let flags = restrictions.sqe_flags_allowed | restrictions.sqe_flags_required;
    (flags & !SQE_FLAGS_MASK != 0).then(|| format!("SQE flags {flags:#x} are not IOSQE_* flags"))
}

/// What is wrong with a `register_wait_region` step's operands: memory
/// the kernel does not register (not whole pages, none, or past user
/// space).
fn wait_region_problem(register: &RegisterWaitRegion) -> Option<String> {
    use ringplan_kernel::abi::linux::PAGE_SIZE;
    let (addr, len) = (register.addr, register.len);
    if addr == 0 || len == 0 || addr % PAGE_SIZE != 0 || len % PAGE_SIZE != 0 {
        return Some(format!(
            "{len} bytes at {addr:#x} are not whole pages, which the kernel requires"
        ));
    }
    if addr
        .checked_add(len)
        .is_none_or(|end| end > USER_ADDRESS_LIMIT)
    {
        return Some(format!("{len} bytes at {addr:#x} leave user space"));
    }
    if let Some(contents) = &register.contents {
        if contents.0.len() as u64 != len {
            return Some(format!(
                "contents of {} bytes for a region of {len}",
                contents.0.len()
            ));
        }
    }
    None
}

/// What is wrong with a `register_settings` step's operands: nothing to
/// register, io-wq limits the kernel refuses (above `INT_MAX`, or neither
/// class set), a NAPI timeout the kernel cannot hold in nanoseconds, an
/// io-wq affinity of no CPU, unordered CPUs or one past `NR_CPUS` (8192).
fn settings_problem(register: &RegisterSettings) -> Option<String> {
    if register.file_alloc_range.is_none()
        && register.iowq_max_workers.is_none()
        && register.napi.is_none()
        && register.iowq_affinity.is_none()
    {
        return Some("no setting to register".to_owned());
    }
    if let Some(affinity) = &register.iowq_affinity {
        if affinity.cpus.is_empty() {
            return Some("io-wq affinity lists no CPU".to_owned());
        }
        if !affinity.cpus.windows(2).all(|pair| pair[0] < pair[1]) {
            return Some("io-wq affinity CPUs repeated or out of order".to_owned());
        }
        if affinity.cpus.iter().any(|&cpu| cpu >= 8192) {
            return Some("io-wq affinity names a CPU above 8191".to_owned());
        }
    }
    if !register.napi_static_ids.is_empty()
        && register
            .napi
            .is_none_or(|napi| napi.tracking != ringplan_image::NapiTracking::Static)
    {
        return Some("NAPI ids added without static NAPI tracking".to_owned());
    }
    if let Some(limits) = register.iowq_max_workers {
        let most = i32::MAX as u32;
        if limits.bounded > most || limits.unbounded > most {
            return Some(format!("io-wq max workers above {most}"));
        }
        if limits.bounded == 0 && limits.unbounded == 0 {
            return Some("io-wq max workers set neither class".to_owned());
        }
    }
    if let Some(range) = register.file_alloc_range {
        if range.start.checked_add(range.len).is_none() {
            return Some(format!(
                "file allocation range {}+{} overflows",
                range.start, range.len
            ));
        }
    }
    None
}

/// What is wrong with a registration's slot tags: slots not ascending, a
/// tag of 0 (no tag), a tag on an empty slot or outside the table (the
/// kernel refuses a tag on an empty slot).
fn tags_problem(
    tags: &[ringplan_image::SlotTag],
    occupied: impl Fn(usize) -> bool,
) -> Option<String> {
    if tags.windows(2).any(|pair| pair[0].slot >= pair[1].slot) {
        return Some("tags: slots repeated or out of order".to_owned());
    }
    tags.iter().find_map(|tag| {
        if tag.tag == 0 {
            Some(format!("tags: slot {} has tag 0", tag.slot))
        } else if !occupied(tag.slot as usize) {
            Some(format!(
                "tags: slot {} is empty or outside the table",
                tag.slot
            ))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod settings_tests {
    use ringplan_image::{FileAllocRange, IowqMaxWorkers, SlotTag};

    use super::{settings_problem, tags_problem};
    use crate::model::{Handle, RegisterSettings};

    #[test]
    fn tags_must_be_ascending_non_zero_and_on_occupied_slots() {
        let occupied = |slot: usize| slot == 0 || slot == 2;
        let tag = |slot, tag| SlotTag { slot, tag };
        assert_eq!(tags_problem(&[tag(0, 1), tag(2, 9)], occupied), None);
        assert!(tags_problem(&[tag(2, 1), tag(0, 9)], occupied)
            .is_some_and(|problem| problem.contains("out of order")));
        assert!(
            tags_problem(&[tag(0, 0)], occupied).is_some_and(|problem| problem.contains("tag 0"))
        );
        assert!(tags_problem(&[tag(1, 5)], occupied)
            .is_some_and(|problem| problem.contains("slot 1 is empty")));
    }

    #[test]
    fn register_settings_registers_something_the_kernel_accepts() {
        let settings = |range, limits| RegisterSettings {
            ring_handle: Handle(0),
            file_alloc_range: range,
            iowq_max_workers: limits,
            napi: None,
            napi_static_ids: Vec::new(),
            iowq_affinity: None,
        };
        assert!(settings_problem(&settings(None, None)).is_some());
        let limits = |bounded, unbounded| Some(IowqMaxWorkers { bounded, unbounded });
        assert_eq!(settings_problem(&settings(None, limits(3, 0))), None);
        assert!(settings_problem(&settings(None, limits(0, 0))).is_some());
        assert!(settings_problem(&settings(None, limits(u32::MAX, 1))).is_some());
        let range = |start, len| Some(FileAllocRange { start, len });
        assert_eq!(settings_problem(&settings(range(5, 3), None)), None);
        assert!(settings_problem(&settings(range(u32::MAX, 2), None)).is_some());
    }

    #[test]
    fn io_wq_affinity_names_cpus_the_kernel_can_have() {
        let affinity = |cpus: Vec<u32>| RegisterSettings {
            ring_handle: Handle(0),
            file_alloc_range: None,
            iowq_max_workers: None,
            napi: None,
            napi_static_ids: Vec::new(),
            iowq_affinity: Some(ringplan_image::IowqAffinity { cpus, tid: Some(7) }),
        };
        assert_eq!(settings_problem(&affinity(vec![0, 3])), None);
        assert!(
            settings_problem(&affinity(vec![])).is_some_and(|problem| problem.contains("no CPU"))
        );
        assert!(settings_problem(&affinity(vec![3, 3]))
            .is_some_and(|problem| problem.contains("out of order")));
        assert!(settings_problem(&affinity(vec![8192]))
            .is_some_and(|problem| problem.contains("above 8191")));
    }

    #[test]
    fn napi_ids_are_added_only_with_static_tracking() {
        let napi = |tracking| RegisterSettings {
            ring_handle: Handle(0),
            file_alloc_range: None,
            iowq_max_workers: None,
            napi: Some(ringplan_image::Napi {
                busy_poll_us: 10,
                prefer_busy_poll: false,
                tracking,
                ids_listed: true,
            }),
            napi_static_ids: vec![100_000, 100_001],
            iowq_affinity: None,
        };
        assert_eq!(
            settings_problem(&napi(ringplan_image::NapiTracking::Static)),
            None
        );
        assert!(
            settings_problem(&napi(ringplan_image::NapiTracking::Dynamic))
                .is_some_and(|problem| problem.contains("without static NAPI tracking"))
        );
    }
}

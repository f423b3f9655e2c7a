//! The text view: a header, then one numbered sentence per step.

use std::fmt::Write as _;

use ringplan_image::SetupFlags;

use super::wording::{
    eventfd_flags, handle_list, object_label, placed_memory, plural, queued_sqes, ranges,
    restored_completions,
};
use crate::model::*;

impl Plan {
    /// The text view: a header with the fd numbers the plan needs and where
    /// temporaries live, then one numbered line per step saying what it does
    /// and which steps it waits for.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let source = &self.source;
        let _ = writeln!(
            out,
            "{} v{}: pid {}, {} backend, kernel {}; {} steps",
            self.format,
            self.version,
            source.pid,
            source.backend.name(),
            source.kernel_release,
            self.steps.len()
        );
        let needed = if self.needed_fds.is_empty() {
            "needs no fd free".to_owned()
        } else {
            format!(
                "needs fds {} free",
                ranges(self.needed_fds.iter().map(|&fd| i64::from(fd)))
            )
        };
        let _ = writeln!(
            out,
            "{needed}; temporaries at fd {} and up, at most {} open at once (RLIMIT_NOFILE >= {})",
            self.temp_fd_floor,
            self.peak_temporaries,
            self.fd_limit_needed()
        );
        let _ = writeln!(out, "hN is the fd that step N created");
        let width = self.steps.len().saturating_sub(1).to_string().len();
        for (index, step) in self.steps.iter().enumerate() {
            let _ = write!(out, "{index:>width$}  {}", describe_step(index, step));
            if !step.after.is_empty() {
                let _ = write!(
                    out,
                    "  (after {})",
                    ranges(step.after.iter().map(|&after| i64::from(after)))
                );
            }
            out.push('\n');
        }
        for part in &self.processes {
            let _ = writeln!(
                out,
                "\nprocess {} (child of {}), after the parts above:",
                part.pid, part.parent
            );
            out.push_str(&part.plan.to_text());
        }
        out
    }
}

fn temporary_label(temporary: TemporaryRing) -> String {
    match temporary {
        TemporaryRing::SqThreadHost { sq_group } => {
            format!(" (temporary: hosts the SQ thread of group {sq_group})")
        }
        TemporaryRing::AttachTarget => {
            " (temporary: wq_fd for rings attached without SQPOLL)".to_owned()
        }
    }
}

fn setup_call(setup: &SetupRing) -> String {
    let mut call = format!(
        "io_uring_setup(sq {}, cq {}, flags {}",
        setup.sq_entries,
        setup.cq_entries,
        flags_text(setup.flags)
    );
    if let Some(cpu) = setup.sq_thread_cpu {
        let _ = write!(call, ", sq_thread_cpu {cpu}");
    }
    if let Some(idle) = setup.sq_thread_idle_ms {
        let _ = write!(call, ", sq_thread_idle {idle} ms");
    }
    if let Some(wq) = setup.wq_handle {
        let _ = write!(call, ", wq_fd {wq}");
    }
    call.push(')');
    call
}

/// `; mmap sq_ring 0x7f..000+4096, sqes 0x7f..000+4096`: where the
/// executor maps the ring's regions; empty without mappings.
fn mappings_text(mappings: &[ringplan_image::RingMapping]) -> String {
    if mappings.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = mappings.iter().map(ToString::to_string).collect();
    format!("; mmap {}", parts.join(", "))
}

/// `0`, or the hex value and the names: `0x2e SQPOLL|SQ_AFF|CQSIZE|ATTACH_WQ`.
fn flags_text(flags: u32) -> String {
    if flags == 0 {
        "0".to_owned()
    } else {
        format!("{flags:#x} {}", SetupFlags::names(flags))
    }
}

fn used_slots<T>(slots: &[T], is_used: impl Fn(&T) -> bool, show: impl Fn(&T) -> String) -> String {
    let mut out = String::new();
    for (index, slot) in slots.iter().enumerate() {
        if is_used(slot) {
            let _ = write!(out, " {index}={}", show(slot));
        }
    }
    let used = slots.iter().filter(|slot| is_used(slot)).count();
    let count = plural(slots.len(), "slot");
    if used == 0 {
        format!("{count}, all empty")
    } else {
        format!("{count}, {used} used:{out}")
    }
}

/// One step as a sentence: the op, the object, the call it makes.
fn describe_step(index: usize, step: &Step) -> String {
    let op = step.op.name();
    let object = object_label(step.object);
    match &step.op {
        Op::CreateEventfd(eventfd) => {
            format!(
                "{op}{object}: eventfd2({}, {}) -> h{index}",
                eventfd.count,
                eventfd_flags(eventfd)
            )
        }
        Op::OpenFile(open) => {
            let file_type = open
                .file_type
                .map_or_else(String::new, |file_type| format!(" ({})", file_type.name()));
            let identity = open
                .identity
                .map_or_else(String::new, |identity| format!(" [{identity}]"));
            format!(
                "{op}{object}: open {:?}{file_type}{identity} flags {:#o}, seek to {} -> h{index}",
                open.path, open.flags, open.pos
            )
        }
        Op::ExternalInput(input) => format!(
            "{op}{object}: the restorer supplies it ({}): {} -> h{index}",
            input.reason.describe(),
            external_input_text(input)
        ),
        Op::SetupRing(setup) => {
            let who = setup
                .temporary
                .map_or_else(|| object.clone(), temporary_label);
            match setup.memory {
                Some(memory) => {
                    let owner = setup.owner_tid.map_or_else(String::new, |tid| {
                        format!("; the image's owner thread is {tid}")
                    });
                    format!(
                        "{op}{who}: {} on the memory of step {memory} (with IORING_SETUP_NO_MMAP) -> h{index}{owner}",
                        setup_call(setup)
                    )
                }
                None => format!(
                    "{op}{who}: {} -> h{index}{}",
                    setup_call(setup),
                    mappings_text(&setup.mappings)
                ),
            }
        }
        Op::PlaceRingMemory(memory) => {
            format!("{op}{object}: map {}", placed_memory(memory))
        }
        Op::RestoreCompletions(restore) => format!(
            "{op}{object} on {}: {}",
            restore.ring_handle,
            restored_completions(restore)
        ),
        Op::QueueSqes(queue) => format!(
            "{op}{object} on {}: {}",
            queue.ring_handle,
            queued_sqes(queue)
        ),
        Op::RegisterEventfd(register) => {
            let call = if register.is_async {
                "IORING_REGISTER_EVENTFD_ASYNC"
            } else {
                "IORING_REGISTER_EVENTFD"
            };
            format!(
                "{op}{object}: {call} on {} with eventfd {}",
                register.ring_handle, register.eventfd_handle
            )
        }
        Op::RegisterFiles(register) => format!(
            "{op}{object}: IORING_REGISTER_FILES{} on {}, {}{}",
            if register.tags.is_empty() { "" } else { "2" },
            register.ring_handle,
            used_slots(&register.slots, Option::is_some, |slot| slot
                .map_or_else(String::new, |h| h.to_string())),
            tags_suffix(&register.tags)
        ),
        Op::RegisterPbufRing(register) => format!(
            "{op}{object}: IORING_REGISTER_PBUF_RING on {}: bgid {}, {} entries at {:#x}+{}{} ({}; {})",
            register.ring_handle,
            register.bgid,
            register.entries,
            register.addr,
            register.memory_len(),
            if register.incremental { ", IOU_PBUF_RING_INC" } else { "" },
            match &register.contents {
                None => "the program's memory".to_owned(),
                Some(contents) => format!(
                    "was kernel memory: its {} captured bytes written there first, tail {}",
                    contents.0.len(),
                    contents.tail().map_or_else(|| "?".to_owned(), |tail| tail.to_string())
                ),
            },
            match register.head {
                0 => "head 0".to_owned(),
                head => format!(
                    "head brought to {head} by {head} one-byte reads from a pipe, the SQ head moving {head}"
                ),
            }
        ),
        Op::RegisterWaitRegion(register) => format!(
            "{op}{object}: IORING_REGISTER_MEM_REGION (IORING_MEM_REGION_REG_WAIT_ARG) on {}: {} B at {:#x} (the program's memory, or fresh memory where none is mapped)",
            register.ring_handle, register.len, register.addr
        ),
        Op::ProvideBuffers(provide) => format!(
            "{op}{object}: {} IORING_OP_PROVIDE_BUFFERS on {} into legacy group {}, {} buffers (the program's memory): {}; each SQE skips its CQE and moves the SQ head by one",
            provide.sqes.len(),
            provide.ring_handle,
            provide.bgid,
            provide.buffer_count(),
            provide
                .sqes
                .iter()
                .map(|sqe| format!(
                    "{} x {} B at {:#x} bids {}..",
                    sqe.count, sqe.len, sqe.addr, sqe.bid
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Op::RegisterRingFd(register) => format!(
            "{op}{object}: IORING_REGISTER_RING_FDS of {} at offset {} in thread {}",
            register.ring_handle, register.offset, register.tid
        ),
        Op::RegisterPersonalities(register) => {
            let ids: Vec<String> = register
                .personalities
                .iter()
                .map(|personality| {
                    format!(
                        "{} (uid {}, gid {})",
                        personality.id, personality.euid, personality.egid
                    )
                })
                .collect();
            let fillers = (1..=register.last_id())
                .filter(|id| !register.is_recorded(*id))
                .count();
            format!(
                "{op}{object}: IORING_REGISTER_PERSONALITY on {} for ids 1..={}, then unregister {} filler{}: ids [{}], next id {}",
                register.ring_handle,
                register.last_id(),
                fillers,
                if fillers == 1 { "" } else { "s" },
                ids.join(", "),
                register.next
            )
        }
        Op::RegisterRestrictions(register) => {
            let r = &register.restrictions;
            format!(
                "{op}{object}: IORING_REGISTER_RESTRICTIONS on {}: register ops {:?}, SQE ops {:?}, SQE flags allowed {:#x}, required {:#x}",
                register.ring_handle, r.register_ops, r.sqe_ops, r.sqe_flags_allowed, r.sqe_flags_required
            )
        }
        Op::RegisterSettings(register) => format!(
            "{op}{object}: on {}: {}",
            register.ring_handle,
            super::wording::settings_summary(register)
        ),
        Op::EnableRings(enable) => format!(
            "{op}{object}: IORING_REGISTER_ENABLE_RINGS on {}",
            enable.ring_handle
        ),
        Op::MemoryBarrier => {
            format!("{op}: the task's memory must be in place from here on (restore it now if you restore it yourself)")
        }
        Op::RegisterBuffers(register) => format!(
            "{op}{object}: IORING_REGISTER_BUFFERS{} on {}, {}{}",
            if register.tags.is_empty() { "" } else { "2" },
            register.ring_handle,
            used_slots(
                &register.iovecs,
                |iovec| !iovec.is_empty(),
                |iovec| format!("{:#x}+{}", iovec.base, iovec.len)
            ),
            tags_suffix(&register.tags)
        ),
        Op::InstallFd(install) => format!(
            "{op}{object}: dup3({}, {}, {})",
            install.source_handle,
            install.fd,
            if install.cloexec { "O_CLOEXEC" } else { "0" }
        ),
        Op::CloseFd(close) => {
            // A single handle without an object is a temporary ring's.
            let who = match (step.object, close.handles.len()) {
                (None, 1) => " (temporary ring)".to_owned(),
                _ => object,
            };
            format!("{op}{who}: close({})", handle_list(&close.handles))
        }
        Op::ReceiveFd(receive) => {
            let mappings = if receive.placed_memory {
                format!(
                    ", then map the memory process {} placed for it at{}",
                    receive.from_pid,
                    receive
                        .mappings
                        .iter()
                        .map(|mapping| format!(" {mapping}"))
                        .collect::<String>()
                )
            } else {
                mappings_text(&receive.mappings)
            };
            format!(
                "{op}{object}: the {} at fd {} of process {} (pidfd_open + pidfd_getfd in this process) -> h{index}{mappings}",
                receive.kind.name(),
                receive.from_fd,
                receive.from_pid
            )
        }
    }
}

/// What the image knows of an external input, for the restorer to match:
/// `regular file "/x", flags 0o2, pos 4` or `pipe, no path`.
fn external_input_text(input: &ExternalInput) -> String {
    let mut what = input.file_type.name().replace('_', " ");
    match &input.path {
        Some(path) => {
            let _ = write!(what, " {path:?}");
        }
        None => what.push_str(", no path"),
    }
    if let Some(flags) = input.flags {
        let _ = write!(what, ", flags {flags:#o}");
    }
    if let Some(pos) = input.pos {
        let _ = write!(what, ", pos {pos}");
    }
    what
}

/// `; tags 0=0x1001 3=0x1003`: a registration's slot tags, if any.
fn tags_suffix(tags: &[ringplan_image::SlotTag]) -> String {
    if tags.is_empty() {
        return String::new();
    }
    let listed: Vec<String> = tags
        .iter()
        .map(|tag| format!("{}={:#x}", tag.slot, tag.tag))
        .collect();
    format!("; tags {}", listed.join(" "))
}

//! How both the text and the DOT view write numbers, handles, objects and
//! eventfd flags.

use std::fmt::Write as _;

use ringplan_image::ObjectId;

use crate::model::{
    CreateEventfd, Handle, MemoryOrigin, PlaceRingMemory, QueueSqes, RegisterSettings,
    RestoreCompletions,
};

/// `0-5, 7, 9, 10`: ascending numbers with runs of three or more collapsed.
pub(super) fn ranges(numbers: impl Iterator<Item = i64>) -> String {
    let mut out = String::new();
    let mut run: Option<(i64, i64)> = None;
    let flush = |out: &mut String, (start, end): (i64, i64)| {
        if !out.is_empty() {
            out.push_str(", ");
        }
        // A run of two reads better as a pair than as a range.
        match end - start {
            0 => {
                let _ = write!(out, "{start}");
            }
            1 => {
                let _ = write!(out, "{start}, {end}");
            }
            _ => {
                let _ = write!(out, "{start}-{end}");
            }
        }
    };
    for number in numbers {
        run = match run {
            Some((start, end)) if number == end + 1 => Some((start, number)),
            Some(previous) => {
                flush(&mut out, previous);
                Some((number, number))
            }
            None => Some((number, number)),
        };
    }
    if let Some(last) = run {
        flush(&mut out, last);
    }
    out
}

/// `h1, h2, h5-h9`: ascending handles with runs of three or more collapsed.
pub(super) fn handle_list(handles: &[Handle]) -> String {
    let mut out = String::new();
    let mut index = 0;
    while index < handles.len() {
        let start = handles[index].0;
        let mut end = index;
        while end + 1 < handles.len() && handles[end + 1].0 == handles[end].0 + 1 {
            end += 1;
        }
        if !out.is_empty() {
            out.push_str(", ");
        }
        if end - index >= 2 {
            let _ = write!(out, "h{start}-h{}", handles[end].0);
            index = end + 1;
        } else {
            let _ = write!(out, "h{start}");
            index += 1;
        }
    }
    out
}

pub(super) fn object_label(object: Option<ObjectId>) -> String {
    object.map_or_else(String::new, |id| format!(" {id}"))
}

pub(super) fn eventfd_flags(eventfd: &CreateEventfd) -> String {
    let mut names = Vec::new();
    if eventfd.semaphore {
        names.push("EFD_SEMAPHORE");
    }
    if eventfd.nonblock {
        names.push("EFD_NONBLOCK");
    }
    if names.is_empty() {
        "0".to_owned()
    } else {
        names.join("|")
    }
}

pub(super) fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// `shared memory at 0x7f..000+16384 and 0x7f..000+16384 (rings, the same
/// memory), 0x7f..000+4096 (SQEs)`: what a `place_ring_memory` maps.
pub(super) fn placed_memory(memory: &PlaceRingMemory) -> String {
    let kind = match memory.origin {
        MemoryOrigin::Kernel => "shared memory",
        MemoryOrigin::Program => "the program's own memory",
    };
    let rings: Vec<String> = memory
        .rings
        .iter()
        .map(|range| format!("{:#x}+{}", range.addr, range.len))
        .collect();
    let same = if rings.len() > 1 {
        ", the same memory"
    } else {
        ""
    };
    let lent = if memory.lend {
        "; its memfds kept open until the other processes' parts mapped them"
    } else {
        ""
    };
    format!(
        "{kind} at {} (rings{same}), {:#x}+{} (SQEs){lent}",
        rings.join(" and "),
        memory.sqes.addr,
        memory.sqes.len
    )
}

/// `SQ head 5000, CQ head 4998, CQ tail 5000: 5000 positions by NOPs; 2
/// unconsumed CQEs, 0 overflowed`.
pub(super) fn restored_completions(restore: &RestoreCompletions) -> String {
    let mut text = format!(
        "SQ head {}, CQ head {}, CQ tail {}: {} by NOPs; {}, {} overflowed",
        restore.sq_head,
        restore.cq_head,
        restore.cq_tail,
        plural(
            usize::try_from(restore.positions_to_move()).unwrap_or(usize::MAX),
            "position"
        ),
        plural(restore.cqes.len(), "unconsumed CQE"),
        restore.overflow.len()
    );
    if (restore.sq_dropped, restore.cq_overflow, restore.cq_flags) != (0, 0, 0) {
        let _ = write!(
            text,
            "; sq_dropped {}, cq_overflow {}, cq_flags {:#x}",
            restore.sq_dropped, restore.cq_overflow, restore.cq_flags
        );
    }
    text
}

/// `3 queued SQEs at positions 5000-5002, the SQ array of 8, SQ tail
/// 5003`.
pub(super) fn queued_sqes(queue: &QueueSqes) -> String {
    let mut text = plural(queue.sqes.len(), "queued SQE");
    match (queue.sqes.first(), queue.sqes.last()) {
        (Some(first), Some(last)) if first.position != last.position => {
            let _ = write!(text, " at positions {}-{}", first.position, last.position);
        }
        (Some(first), _) => {
            let _ = write!(text, " at position {}", first.position);
        }
        _ => {}
    }
    if let Some(array) = &queue.sq_array {
        let _ = write!(text, ", the SQ array of {}", array.len());
    }
    let _ = write!(text, ", SQ tail {}", queue.sq_tail);
    text
}

/// `IORING_REGISTER_FILE_ALLOC_RANGE 5+3, IORING_REGISTER_IOWQ_MAX_WORKERS
/// 3/5, IORING_REGISTER_NAPI 50 us`: the calls of a `register_settings`
/// step, in their order.
pub(super) fn settings_summary(register: &RegisterSettings) -> String {
    let mut parts = Vec::new();
    if let Some(range) = register.file_alloc_range {
        parts.push(format!(
            "IORING_REGISTER_FILE_ALLOC_RANGE {}+{}",
            range.start, range.len
        ));
    }
    if let Some(limits) = register.iowq_max_workers {
        parts.push(format!(
            "IORING_REGISTER_IOWQ_MAX_WORKERS {} bounded/{} unbounded",
            limits.bounded, limits.unbounded
        ));
    }
    if let Some(napi) = register.napi {
        parts.push(format!(
            "IORING_REGISTER_NAPI {} us{}, {} tracking",
            napi.busy_poll_us,
            if napi.prefer_busy_poll {
                ", prefer busy poll"
            } else {
                ""
            },
            napi.tracking.name()
        ));
    }
    if !register.napi_static_ids.is_empty() {
        let ids: Vec<String> = register
            .napi_static_ids
            .iter()
            .map(u32::to_string)
            .collect();
        parts.push(format!(
            "IO_URING_NAPI_STATIC_ADD_ID of NAPI ids [{}]",
            ids.join(", ")
        ));
    }
    if let Some(affinity) = &register.iowq_affinity {
        let cpus = affinity.cpu_list();
        parts.push(match affinity.tid {
            Some(tid) => format!("IORING_REGISTER_IOWQ_AFF CPUs {cpus} in thread {tid}"),
            None => format!("IORING_REGISTER_IOWQ_AFF CPUs {cpus} (the SQ thread's io-wq)"),
        });
    }
    parts.join(", ")
}

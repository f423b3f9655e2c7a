//! Views of an image for people (text) and programs (JSON).
//!
//! The JSON view is a contract other tools script against; its names are
//! documented in `docs/image-format.md`. Change them only with the format
//! version.

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::model::*;

/// The JSON view of a whole image: `{"format", "version", "source", "objects": [...]}`.
pub fn to_json(image: &Image) -> Value {
    let mut value = json!({
        "format": image.format,
        "version": image.version,
        "source": {
            "pid": image.source.pid,
            "backend": image.source.backend.name(),
            "kernel_release": image.source.kernel_release,
        },
        "objects": image.objects.iter().map(|object| {
            let mut value = object_json(object);
            if image.is_tree() {
                if let Value::Object(fields) = &mut value {
                    fields.insert("holders".to_owned(), holders_json(image, object.id));
                }
            }
            value
        }).collect::<Vec<_>>(),
    });
    if image.is_tree() {
        if let Value::Object(fields) = &mut value {
            let processes = image
                .processes
                .iter()
                .map(|process| json!({"pid": process.pid, "parent": process.parent}))
                .collect();
            fields.insert("processes".to_owned(), Value::Array(processes));
        }
    }
    value
}

/// A tree image's `holders` of one object: every process that holds it,
/// with its fds (and, for a ring, its mappings, its threads' registered
/// ring-fd slots and whether it owns it).
fn holders_json(image: &Image, id: ObjectId) -> Value {
    image
        .holders(id)
        .map(|(pid, held)| {
            json!({
                "pid": pid,
                "fds": held.fds.iter().map(|entry| entry.fd).collect::<Vec<_>>(),
                "cloexec_fds": held.fds.iter().filter(|entry| entry.cloexec).map(|entry| entry.fd).collect::<Vec<_>>(),
                "mappings": held.mappings.iter().map(|mapping| json!({
                    "region": mapping.region.name(), "addr": mapping.addr, "len": mapping.len,
                })).collect::<Vec<_>>(),
                "registered_ring_fds": held.registered_ring_fds.iter()
                    .map(|slot| json!({"tid": slot.tid, "offset": slot.offset}))
                    .collect::<Vec<_>>(),
                "owner": held.owner,
            })
        })
        .collect()
}

fn object_json(object: &Object) -> Value {
    let mut value = json!({
        "id": object.id.0,
        "kind": object.kind.name(),
        "fds": object.fds.iter().map(|entry| entry.fd).collect::<Vec<_>>(),
        "cloexec_fds": object.fds.iter().filter(|entry| entry.cloexec).map(|entry| entry.fd).collect::<Vec<_>>(),
    });
    let details = match &object.kind {
        ObjectKind::Ring(ring) => ring_json(ring),
        ObjectKind::Eventfd(eventfd) => json!({
            "count": eventfd.count,
            "semaphore": eventfd.semaphore,
            "nonblock": eventfd.nonblock,
        }),
        ObjectKind::File(file) => json!({
            "path": file.path,
            "pos": file.pos,
            "flags": file.flags,
            "type": file.file_type.name(),
            "identity": file.identity.map(|identity| json!({"dev": identity.dev, "ino": identity.ino})),
        }),
    };
    if let (Value::Object(fields), Value::Object(more)) = (&mut value, details) {
        fields.extend(more);
    }
    value
}

fn ring_json(ring: &Ring) -> Value {
    let setup = &ring.setup;
    let mut value = json!({
        "setup": {
            "flags": setup.flags,
            "sq_entries": setup.sq_entries,
            "cq_entries": setup.cq_entries,
            "sq_thread_cpu": setup.sq_thread_cpu,
            "sq_thread_idle_ms": setup.sq_thread_idle_ms,
        },
        "wq_parent": ring.wq_parent.map(|id| id.0),
        "sq_group": ring.sq_group,
        "eventfd": ring.eventfd.map(|eventfd| json!({"object": eventfd.object.0, "async": eventfd.is_async})),
        "file_slots": ring.files.len(),
        "files": ring.files.iter().enumerate()
            .filter_map(|(index, slot)| slot.map(|object| json!({"index": index, "object": object.0})))
            .collect::<Vec<_>>(),
        "buffer_slots": ring.buffers.len(),
        "buffers": ring.buffers.iter().enumerate()
            .filter_map(|(index, slot)| slot.map(|buffer| json!({"index": index, "addr": buffer.addr, "len": buffer.len})))
            .collect::<Vec<_>>(),
        "mappings": ring.mappings.iter()
            .map(|mapping| json!({"region": mapping.region.name(), "addr": mapping.addr, "len": mapping.len}))
            .collect::<Vec<_>>(),
        "unknown": ring.unknown.iter().map(|field| field.name()).collect::<Vec<_>>(),
        "state": ring.state.as_deref().map(state_json),
        "personalities": ring.personalities.iter().map(|p| json!({
            "id": p.id,
            "uid": p.uid, "euid": p.euid, "suid": p.suid, "fsuid": p.fsuid,
            "gid": p.gid, "egid": p.egid, "sgid": p.sgid, "fsgid": p.fsgid,
            "groups": p.groups,
            "cap_inheritable": p.cap_inheritable, "cap_permitted": p.cap_permitted,
            "cap_effective": p.cap_effective, "cap_bounding": p.cap_bounding,
            "cap_ambient": p.cap_ambient,
        })).collect::<Vec<_>>(),
        "personality_next": ring.personality_next,
        "restrictions": ring.restrictions.as_ref().map(|r| json!({
            "register_ops": r.register_ops,
            "sqe_ops": r.sqe_ops,
            "sqe_flags_allowed": r.sqe_flags_allowed,
            "sqe_flags_required": r.sqe_flags_required,
        })),
        "pbuf_rings": ring.pbuf_rings.iter().map(pbuf_ring_json).collect::<Vec<_>>(),
        "legacy_buffer_groups": ring.legacy_buffer_groups.iter().map(|g| json!({
            "bgid": g.bgid,
            "buffers": g.buffers.as_ref().map(|runs| runs.iter().map(|run| json!({
                "addr": run.addr,
                "len": run.len,
                "bid": run.bid,
                "count": run.count,
            })).collect::<Vec<_>>()),
        })).collect::<Vec<_>>(),
        "registered_ring_fds": ring.registered_ring_fds.iter()
            .map(|slot| json!({"tid": slot.tid, "offset": slot.offset}))
            .collect::<Vec<_>>(),
    });
    if let Value::Object(fields) = &mut value {
        fields.extend(settings_json(&ring.settings));
    }
    value
}

/// The ring's registered settings, one key per setting the program set
/// (none when it set none, as in the image).
fn settings_json(settings: &RingSettings) -> serde_json::Map<String, Value> {
    let mut fields = serde_json::Map::new();
    if let Some(range) = settings.file_alloc_range {
        fields.insert(
            "file_alloc_range".to_owned(),
            json!({"start": range.start, "len": range.len}),
        );
    }
    if let Some(limits) = settings.iowq_max_workers {
        fields.insert(
            "iowq_max_workers".to_owned(),
            json!({"bounded": limits.bounded, "unbounded": limits.unbounded}),
        );
    }
    if let Some(napi) = settings.napi {
        fields.insert(
            "napi".to_owned(),
            json!({
                "busy_poll_us": napi.busy_poll_us,
                "prefer_busy_poll": napi.prefer_busy_poll,
                "tracking": napi.tracking.name(),
                "ids_listed": napi.ids_listed,
                "static_ids": settings.napi_static_ids,
            }),
        );
    }
    let tags = |tags: &[SlotTag]| {
        tags.iter()
            .map(|tag| json!({"index": tag.slot, "tag": tag.tag}))
            .collect::<Vec<_>>()
    };
    if !settings.file_tags.is_empty() {
        fields.insert("file_tags".to_owned(), json!(tags(&settings.file_tags)));
    }
    if !settings.buffer_tags.is_empty() {
        fields.insert("buffer_tags".to_owned(), json!(tags(&settings.buffer_tags)));
    }
    if let Some(len) = settings.wait_region_len {
        fields.insert(
            "wait_region".to_owned(),
            json!({
                "len": len,
                "addr": settings.wait_region_addr,
                "kernel_memory": settings.wait_region_kernel_memory,
            }),
        );
    }
    if let Some(affinity) = &settings.iowq_affinity {
        fields.insert(
            "iowq_affinity".to_owned(),
            json!({"cpus": affinity.cpus, "tid": affinity.tid}),
        );
    }
    fields
}

fn state_json(state: &RingState) -> Value {
    let positions = &state.positions;
    let region = |region: Option<UserRegion>| {
        region.map(|region| json!({"addr": region.addr, "len": region.len}))
    };
    json!({
        "positions": {
            "sq_head": positions.sq_head,
            "sq_tail": positions.sq_tail,
            "cached_sq_head": positions.cached_sq_head,
            "cq_head": positions.cq_head,
            "cq_tail": positions.cq_tail,
            "cached_cq_tail": positions.cached_cq_tail,
            "sq_dropped": positions.sq_dropped,
            "cq_overflow": positions.cq_overflow,
            "sq_flags": positions.sq_flags,
            "cq_flags": positions.cq_flags,
        },
        "sq_array": state.sq_array,
        "sqes": state.sqes.as_ref().map(|sqes| sqes.iter()
            .map(|sqe| json!({"position": sqe.position, "slot": sqe.slot, "bytes": hex(&sqe.bytes.0)}))
            .collect::<Vec<_>>()),
        "unqueued_sqes": state.unqueued_sqes.iter()
            .map(|sqe| json!({"slot": sqe.slot, "bytes": hex(&sqe.bytes.0)}))
            .collect::<Vec<_>>(),
        "cqes": state.cqes.as_ref().map(|cqes| cqes.iter().map(cqe_json).collect::<Vec<_>>()),
        "overflow": state.overflow.as_ref().map(|cqes| cqes.iter().map(cqe_json).collect::<Vec<_>>()),
        "memory": {
            "no_mmap": state.memory.no_mmap,
            "rings": region(state.memory.rings),
            "sqes": region(state.memory.sqes),
        },
        "owner_tid": state.owner_tid,
        "unknown": state.unknown.iter().map(|field| field.name()).collect::<Vec<_>>(),
    })
}

fn cqe_json(cqe: &Cqe) -> Value {
    json!({"user_data": cqe.user_data, "res": cqe.res, "flags": cqe.flags, "extra": cqe.extra})
}

/// Lowercase hex, two digits a byte.
fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// The text view of an image for a person: one block per object.
pub fn to_text(image: &Image) -> String {
    let mut out = String::new();
    let source = &image.source;
    let _ = writeln!(
        out,
        "{} v{}: pid {}, {} backend, kernel {}, {} objects",
        image.format,
        image.version,
        source.pid,
        source.backend.name(),
        source.kernel_release,
        image.objects.len()
    );
    if image.is_tree() {
        let pids: Vec<String> = image
            .processes
            .iter()
            .map(|process| match process.parent {
                Some(parent) => format!("{} (child of {parent})", process.pid),
                None => process.pid.to_string(),
            })
            .collect();
        let _ = writeln!(out, "tree of {} processes: {}", pids.len(), pids.join(", "));
    }
    for object in &image.objects {
        write_object(&mut out, object);
        if image.is_tree() {
            write_holders(&mut out, image, object.id);
        }
    }
    out
}

/// One line naming the processes of a tree that hold an object, with
/// their fds, and what differs for a ring (its mappings, its slots, its
/// owner).
fn write_holders(out: &mut String, image: &Image, id: ObjectId) {
    let holders: Vec<String> = image
        .holders(id)
        .map(|(pid, held)| {
            let mut text = format!("pid {pid} {}", fds_text(&held.fds));
            if !held.mappings.is_empty() {
                let _ = write!(text, ", {} mappings", held.mappings.len());
            }
            for slot in &held.registered_ring_fds {
                let _ = write!(text, ", slot {} of thread {}", slot.offset, slot.tid);
            }
            if held.owner {
                text.push_str(", owner");
            }
            text
        })
        .collect();
    if holders.is_empty() {
        let _ = writeln!(out, "    held by no process at an fd, a mapping or a slot");
    } else {
        let _ = writeln!(out, "    held by {}", holders.join("; "));
    }
}

fn fds_text(fds: &[FdEntry]) -> String {
    if fds.is_empty() {
        return "no fd".to_owned();
    }
    let list: Vec<String> = fds
        .iter()
        .map(|entry| {
            format!(
                "{}{}",
                entry.fd,
                if entry.cloexec { "(cloexec)" } else { "" }
            )
        })
        .collect();
    format!("fd {}", list.join(" "))
}

fn write_object(out: &mut String, object: &Object) {
    let _ = writeln!(
        out,
        "{} {}, {}",
        object.id,
        object.kind.name(),
        fds_text(&object.fds)
    );
    match &object.kind {
        ObjectKind::Ring(ring) => write_ring(out, ring),
        ObjectKind::Eventfd(eventfd) => {
            let _ = writeln!(
                out,
                "    count {}, semaphore {}, nonblock {}",
                eventfd.count,
                yes_no(eventfd.semaphore),
                yes_no(eventfd.nonblock)
            );
        }
        ObjectKind::File(file) => {
            let _ = writeln!(
                out,
                "    {} {}, flags {}, pos {}",
                file.file_type.name(),
                file.path.as_deref().unwrap_or("(no path)"),
                file.flags
                    .map_or_else(|| "unknown".to_owned(), |flags| format!("{flags:#o}")),
                optional(file.pos, true)
            );
            if let Some(identity) = file.identity {
                let _ = writeln!(out, "    {identity}");
            }
        }
    }
}

fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

fn optional<T: std::fmt::Display>(value: Option<T>, unknown: bool) -> String {
    match value {
        Some(value) => value.to_string(),
        None if unknown => "unknown".to_owned(),
        None => "-".to_owned(),
    }
}

fn write_ring(out: &mut String, ring: &Ring) {
    let setup = &ring.setup;
    let unknown = |field| ring.unknown.contains(&field);
    let flags = match setup.flags {
        Some(flags) => format!("{flags:#x} ({})", SetupFlags::names(flags)),
        None => "unknown".to_owned(),
    };
    let _ = writeln!(
        out,
        "    setup: flags {flags}, sq {}, cq {}, sq_thread_cpu {}, sq_thread_idle {} ms",
        setup.sq_entries,
        setup.cq_entries,
        optional(setup.sq_thread_cpu, unknown(RingField::SqThreadCpu)),
        optional(setup.sq_thread_idle_ms, unknown(RingField::SqThreadIdle)),
    );
    let _ = writeln!(
        out,
        "    sq thread: group {}, wq_parent {}",
        optional(ring.sq_group, false),
        optional(ring.wq_parent, false)
    );
    let eventfd = match ring.eventfd {
        Some(eventfd) => format!(
            "{}{}",
            eventfd.object,
            if eventfd.is_async { " (async)" } else { "" }
        ),
        None => optional::<ObjectId>(None, unknown(RingField::Eventfd)),
    };
    let _ = writeln!(out, "    eventfd: {eventfd}");
    let files: Vec<String> = ring
        .files
        .iter()
        .enumerate()
        .filter_map(|(index, slot)| slot.map(|object| format!("{index}={object}")))
        .collect();
    let _ = writeln!(
        out,
        "    files: {} slots, {} used{}",
        ring.files.len(),
        files.len(),
        list_suffix(&files)
    );
    let buffers: Vec<String> = ring
        .buffers
        .iter()
        .enumerate()
        .filter_map(|(index, slot)| {
            slot.map(|buffer| format!("{index}={:#x}+{}", buffer.addr, buffer.len))
        })
        .collect();
    let _ = writeln!(
        out,
        "    buffers: {} slots, {} used{}",
        ring.buffers.len(),
        buffers.len(),
        list_suffix(&buffers)
    );
    if !ring.mappings.is_empty() {
        let mappings: Vec<String> = ring.mappings.iter().map(ToString::to_string).collect();
        let _ = writeln!(out, "    mapped: {}", mappings.join(", "));
    }
    write_credentials(out, ring);
    write_pbuf_rings(out, ring);
    write_settings(out, ring);
    write_ring_fds(out, ring);
    if let Some(state) = &ring.state {
        write_state(out, state);
    }
}

/// The personalities and restrictions lines: shown only when the ring has
/// some (or they are unknown).
fn write_credentials(out: &mut String, ring: &Ring) {
    if ring.unknown.contains(&RingField::Personalities) {
        let _ = writeln!(out, "    personalities: unknown");
    } else if !ring.personalities.is_empty() || ring.personality_next != 0 {
        let listed: Vec<String> = ring
            .personalities
            .iter()
            .map(|p| format!("{}=uid {} gid {}", p.id, p.euid, p.egid))
            .collect();
        let _ = writeln!(
            out,
            "    personalities: {} (next id {}){}",
            ring.personalities.len(),
            ring.personality_next,
            list_suffix(&listed)
        );
    }
    if ring.unknown.contains(&RingField::Restrictions) {
        let _ = writeln!(out, "    restrictions: unknown");
    } else if let Some(r) = &ring.restrictions {
        let _ = writeln!(
            out,
            "    restrictions: register ops {:?}, sqe ops {:?}, sqe flags allowed {:#x} required {:#x}",
            r.register_ops, r.sqe_ops, r.sqe_flags_allowed, r.sqe_flags_required
        );
    }
}

/// The registered settings line: shown only when the program set one (or
/// they are unknown).
fn write_settings(out: &mut String, ring: &Ring) {
    if ring.unknown.contains(&RingField::Settings) {
        let _ = writeln!(out, "    settings: unknown");
        return;
    }
    let settings = &ring.settings;
    let mut parts = Vec::new();
    if let Some(range) = settings.file_alloc_range {
        parts.push(format!(
            "file alloc range {}..{}",
            range.start,
            u64::from(range.start) + u64::from(range.len)
        ));
    }
    if let Some(limits) = settings.iowq_max_workers {
        parts.push(format!(
            "io-wq max workers {} bounded, {} unbounded",
            limits.bounded, limits.unbounded
        ));
    }
    if let Some(napi) = settings.napi {
        parts.push(format!(
            "NAPI {} us{}, {} tracking",
            napi.busy_poll_us,
            if napi.prefer_busy_poll {
                ", prefer busy poll"
            } else {
                ""
            },
            napi.tracking.name()
        ));
        if let Some(ids) = &settings.napi_static_ids {
            let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
            parts.push(format!("NAPI ids [{}]", ids.join(", ")));
        }
    }
    if !settings.file_tags.is_empty() {
        parts.push(format!("{} file tags", settings.file_tags.len()));
    }
    if !settings.buffer_tags.is_empty() {
        parts.push(format!("{} buffer tags", settings.buffer_tags.len()));
    }
    if let Some(len) = settings.wait_region_len {
        let memory = if settings.wait_region_kernel_memory {
            "kernel memory"
        } else {
            "program memory"
        };
        parts.push(match settings.wait_region_addr {
            Some(addr) => format!("wait region of {len} bytes ({memory} at {addr:#x})"),
            None => format!("wait region of {len} bytes ({memory}, not found)"),
        });
    }
    if let Some(affinity) = &settings.iowq_affinity {
        let cpus = affinity.cpu_list();
        parts.push(match affinity.tid {
            Some(tid) => format!("io-wq CPUs {cpus} (thread {tid})"),
            None => format!("io-wq CPUs {cpus} (SQ thread)"),
        });
    }
    if !parts.is_empty() {
        let _ = writeln!(out, "    settings: {}", parts.join("; "));
    }
}

/// One buffer ring in the JSON view. Captured contents (kernel memory)
/// show as their length, tail and hash, not their bytes; the key is there
/// only when they were captured.
fn pbuf_ring_json(b: &crate::PbufRing) -> serde_json::Value {
    let mut value = json!({
        "bgid": b.bgid,
        "entries": b.entries,
        "addr": b.addr,
        "head": b.head,
        "mmap": b.mmap,
        "incremental": b.incremental,
    });
    if let (Some(contents), Some(object)) = (&b.contents, value.as_object_mut()) {
        object.insert(
            "contents".to_owned(),
            json!({
                "len": contents.0.len(),
                "tail": contents.tail(),
                "fnv1a64": format!("{:016x}", contents.fnv1a64()),
            }),
        );
    }
    value
}

/// The buffer rings line: shown only when the ring has some (or they
/// are unknown).
fn write_pbuf_rings(out: &mut String, ring: &Ring) {
    if ring.unknown.contains(&RingField::PbufRings) {
        let _ = writeln!(out, "    buffer rings: unknown");
        return;
    }
    if !ring.pbuf_rings.is_empty() {
        let listed: Vec<String> = ring
            .pbuf_rings
            .iter()
            .map(|b| {
                let memory = match (b.addr, b.mmap) {
                    (Some(addr), false) => format!("at {addr:#x}"),
                    (Some(addr), true) => match b.contents.as_ref().and_then(|c| c.tail()) {
                        Some(tail) => {
                            format!("kernel memory mapped at {addr:#x}, captured, tail {tail}")
                        }
                        None => format!("kernel memory mapped at {addr:#x}, not captured"),
                    },
                    (None, false) => "memory not found".to_owned(),
                    (None, true) => "kernel memory, not mapped".to_owned(),
                };
                format!(
                    "bgid {} ({} entries, head {}, {memory}{})",
                    b.bgid,
                    b.entries,
                    b.head,
                    if b.incremental { ", incremental" } else { "" }
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "    buffer rings: {}{}",
            ring.pbuf_rings.len(),
            list_suffix(&listed)
        );
    }
    if !ring.legacy_buffer_groups.is_empty() {
        let listed: Vec<String> = ring
            .legacy_buffer_groups
            .iter()
            .map(|group| match &group.buffers {
                None => format!("bgid {} (buffers not captured)", group.bgid),
                Some(runs) => format!(
                    "bgid {} ({} buffers in {} runs)",
                    group.bgid,
                    group.buffer_count(),
                    runs.len()
                ),
            })
            .collect();
        let _ = writeln!(
            out,
            "    legacy buffer groups: {}{}",
            ring.legacy_buffer_groups.len(),
            list_suffix(&listed)
        );
    }
}

/// The registered ring fds line: shown only when threads registered the
/// ring (or they are unknown).
fn write_ring_fds(out: &mut String, ring: &Ring) {
    if ring.unknown.contains(&RingField::RegisteredRingFds) {
        let _ = writeln!(out, "    registered ring fds: unknown");
    } else if !ring.registered_ring_fds.is_empty() {
        let listed: Vec<String> = ring
            .registered_ring_fds
            .iter()
            .map(|slot| format!("thread {} offset {}", slot.tid, slot.offset))
            .collect();
        let _ = writeln!(out, "    registered ring fds: {}", listed.join(", "));
    }
}

fn write_state(out: &mut String, state: &RingState) {
    let positions = &state.positions;
    let unknown = |field| state.unknown.contains(&field);
    let count = |list: Option<usize>, field| match list {
        Some(count) => count.to_string(),
        None if unknown(field) => "unknown".to_owned(),
        None => "-".to_owned(),
    };
    let _ = writeln!(
        out,
        "    positions: sq head/tail {}/{} (kernel head {}), cq head/tail {}/{} (kernel tail {}), \
         sq_dropped {}, cq_overflow {}, sq_flags {:#x}, cq_flags {:#x}",
        positions.sq_head,
        positions.sq_tail,
        positions.cached_sq_head,
        positions.cq_head,
        positions.cq_tail,
        positions.cached_cq_tail,
        positions.sq_dropped,
        positions.cq_overflow,
        positions.sq_flags,
        positions.cq_flags,
    );
    let owner = match state.owner_tid {
        Some(tid) => format!("tid {tid}"),
        None if unknown(StateField::OwnerTid) => "unknown".to_owned(),
        None => "-".to_owned(),
    };
    let _ = writeln!(
        out,
        "    entries: {} queued SQEs, {} unconsumed CQEs, {} overflowed CQEs; owner {owner}",
        count(state.sqes.as_ref().map(Vec::len), StateField::Entries),
        count(state.cqes.as_ref().map(Vec::len), StateField::Entries),
        count(state.overflow.as_ref().map(Vec::len), StateField::Overflow),
    );
    if state.memory.no_mmap {
        let region = |region: Option<UserRegion>| match region {
            Some(region) => format!("{:#x}+{}", region.addr, region.len),
            None if unknown(StateField::Memory) => "unknown".to_owned(),
            None => "-".to_owned(),
        };
        let _ = writeln!(
            out,
            "    program's memory (NO_MMAP): rings {}, sqes {}",
            region(state.memory.rings),
            region(state.memory.sqes)
        );
    }
}

fn list_suffix(items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!(": {}", items.join(" "))
    }
}

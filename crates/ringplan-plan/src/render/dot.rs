//! The Graphviz DOT view: one node per step, one edge per wait, the steps of
//! each ring grouped in a cluster.

use std::collections::HashMap;
use std::fmt::Write as _;

use ringplan_image::{ObjectId, SetupFlags};

use super::wording::{eventfd_flags, handle_list, object_label, plural, ranges, settings_summary};
use crate::model::*;

impl Plan {
    /// Graphviz DOT: one node per step, one edge per wait, steps grouped in
    /// a `cluster_ring_ID` subgraph per ring (temporary rings in
    /// `cluster_temporary_STEP`). An eventfd or file joins the cluster of the
    /// ring that registers it when exactly one ring does.
    pub fn to_dot(&self) -> String {
        let clusters = assign_clusters(self);
        let mut out = String::new();
        out.push_str("digraph plan {\n");
        let _ = writeln!(
            out,
            "  graph [rankdir=TB, fontname=\"monospace\", labelloc=t, label=\"{}\"];",
            escape(&format!(
                "{} v{}: pid {}, needs fds {} free, temporaries at fd {} and up",
                self.format,
                self.version,
                self.source.pid,
                if self.needed_fds.is_empty() {
                    "no".to_owned()
                } else {
                    ranges(self.needed_fds.iter().map(|&fd| i64::from(fd)))
                },
                self.temp_fd_floor
            ))
        );
        out.push_str("  node [shape=box, fontname=\"monospace\", fontsize=10];\n");

        if self.processes.is_empty() {
            write_steps(&mut out, self, &clusters, "", "  ");
        } else {
            // A tree plan: each process's part in a cluster of its own,
            // node names prefixed by the pid, and a dashed edge from the
            // step that installed an object to each part's `receive_fd`.
            let parts = std::iter::once((self.source.pid, None, self)).chain(
                self.processes
                    .iter()
                    .map(|part| (part.pid, Some(part.parent), &part.plan)),
            );
            for (pid, parent, part) in parts {
                let _ = writeln!(out, "  subgraph cluster_process_{pid} {{");
                let label = match parent {
                    None => format!("process {pid}, runs first"),
                    Some(parent) => format!("process {pid} (child of {parent})"),
                };
                let _ = writeln!(out, "    label=\"{}\"; style=bold;", escape(&label));
                let prefix = format!("p{pid}_");
                write_steps(&mut out, part, &assign_clusters(part), &prefix, "    ");
                out.push_str("  }\n");
            }
            for part in &self.processes {
                for (index, step) in part.plan.steps.iter().enumerate() {
                    let Op::ReceiveFd(receive) = &step.op else {
                        continue;
                    };
                    if let Some(install) = installing_step(self, receive) {
                        let _ = writeln!(
                            out,
                            "  p{}_s{install} -> p{}_s{index} [style=dashed];",
                            receive.from_pid, part.pid
                        );
                    }
                }
            }
        }
        out.push_str("}\n");
        out
    }
}

/// A short node label for DOT: the step's number, op and object, then its
/// key parameters (never a whole file table).
fn dot_label(index: usize, step: &Step) -> String {
    let head = format!("{index} {}{}", step.op.name(), object_label(step.object));
    let detail = match &step.op {
        Op::CreateEventfd(eventfd) => format!(
            "count {}, {} -> h{index}",
            eventfd.count,
            eventfd_flags(eventfd)
        ),
        Op::OpenFile(open) => format!("{} -> h{index}", open.path),
        Op::ExternalInput(input) => {
            format!("{} from the restorer -> h{index}", input.file_type.name())
        }
        Op::SetupRing(setup) => {
            let mut detail = format!(
                "sq {}, cq {}, {}",
                setup.sq_entries,
                setup.cq_entries,
                SetupFlags::names(setup.flags)
            );
            if let Some(wq) = setup.wq_handle {
                let _ = write!(detail, ", wq_fd {wq}");
            }
            let _ = write!(detail, " -> h{index}");
            if let Some(memory) = setup.memory {
                let _ = write!(detail, ", on the memory of step {memory}");
            } else if !setup.mappings.is_empty() {
                let regions: Vec<&str> = setup
                    .mappings
                    .iter()
                    .map(|mapping| mapping.region.name())
                    .collect();
                let _ = write!(detail, ", maps {}", regions.join(", "));
            }
            detail
        }
        Op::RegisterEventfd(register) => format!(
            "{} on {}{}",
            register.eventfd_handle,
            register.ring_handle,
            if register.is_async { " (async)" } else { "" }
        ),
        Op::RegisterPersonalities(register) => format!(
            "{} {} (next id {}) on {}",
            register.personalities.len(),
            if register.personalities.len() == 1 {
                "personality"
            } else {
                "personalities"
            },
            register.next,
            register.ring_handle
        ),
        Op::RegisterRestrictions(register) => format!(
            "{} register ops, {} SQE ops, flags {:#x}/{:#x} on {}",
            register.restrictions.register_ops.len(),
            register.restrictions.sqe_ops.len(),
            register.restrictions.sqe_flags_allowed,
            register.restrictions.sqe_flags_required,
            register.ring_handle
        ),
        Op::RegisterSettings(register) => {
            format!("{} on {}", settings_summary(register), register.ring_handle)
        }
        Op::EnableRings(enable) => format!("{}", enable.ring_handle),
        Op::RegisterWaitRegion(register) => format!(
            "{} B at {:#x} on {}",
            register.len, register.addr, register.ring_handle
        ),
        Op::RegisterPbufRing(register) => format!(
            "bgid {}, {} entries at {:#x}{}{} on {}",
            register.bgid,
            register.entries,
            register.addr,
            if register.contents.is_some() {
                ", contents written"
            } else {
                ""
            },
            match register.head {
                0 => String::new(),
                head => format!(", head to {head}"),
            },
            register.ring_handle
        ),
        Op::ProvideBuffers(provide) => format!(
            "bgid {}, {} buffers in {} SQE(s) on {}",
            provide.bgid,
            provide.buffer_count(),
            provide.sqes.len(),
            provide.ring_handle
        ),
        Op::RegisterRingFd(register) => format!(
            "{} at offset {} of thread {}",
            register.ring_handle, register.offset, register.tid
        ),
        Op::RegisterFiles(register) => format!(
            "{}, {} used, on {}",
            plural(register.slots.len(), "slot"),
            register.slots.iter().flatten().count(),
            register.ring_handle
        ),
        Op::PlaceRingMemory(memory) => {
            let rings: Vec<String> = memory
                .rings
                .iter()
                .map(|range| format!("{:#x}", range.addr))
                .collect();
            format!(
                "rings at {}, SQEs at {:#x}{}",
                rings.join(" and "),
                memory.sqes.addr,
                if memory.lend { ", lent" } else { "" }
            )
        }
        Op::RestoreCompletions(restore) => format!(
            "{} positions, {} CQEs, {} overflowed, on {}",
            restore.positions_to_move(),
            restore.cqes.len(),
            restore.overflow.len(),
            restore.ring_handle
        ),
        Op::QueueSqes(queue) => format!(
            "{}, SQ tail {}, on {}",
            plural(queue.sqes.len(), "SQE"),
            queue.sq_tail,
            queue.ring_handle
        ),
        Op::MemoryBarrier => "task memory in place".to_owned(),
        Op::RegisterBuffers(register) => format!(
            "{}, {} used, on {}",
            plural(register.iovecs.len(), "slot"),
            register
                .iovecs
                .iter()
                .filter(|iovec| !iovec.is_empty())
                .count(),
            register.ring_handle
        ),
        Op::InstallFd(install) => {
            format!(
                "{} -> fd {}{}",
                install.source_handle,
                install.fd,
                if install.cloexec { " cloexec" } else { "" }
            )
        }
        Op::CloseFd(close) => format!("close {}", handle_list(&close.handles)),
        Op::ReceiveFd(receive) => format!(
            "{} at fd {} of process {} -> h{index}{}",
            receive.kind.name(),
            receive.from_fd,
            receive.from_pid,
            if receive.placed_memory {
                ", maps its placed memory"
            } else if receive.mappings.is_empty() {
                ""
            } else {
                ", maps its regions"
            }
        ),
    };
    format!("{head}\n{detail}")
}

/// A plan's steps: its clusters, loose nodes and edges, node names
/// prefixed by `prefix`.
fn write_steps(
    out: &mut String,
    plan: &Plan,
    clusters: &[Option<Cluster>],
    prefix: &str,
    indent: &str,
) {
    let (cluster_order, members, loose) = group_by_cluster(clusters);
    for cluster in &cluster_order {
        let (name, label, style) = match cluster {
            Cluster::Ring(id) => (
                format!("cluster_{prefix}ring_{}", id.0),
                format!("ring {id}"),
                "solid",
            ),
            Cluster::Temporary(step) => (
                format!("cluster_{prefix}temporary_{step}"),
                format!("temporary ring h{step}"),
                "dashed",
            ),
        };
        let _ = writeln!(out, "{indent}subgraph {name} {{");
        let _ = writeln!(
            out,
            "{indent}  label=\"{}\"; style={style};",
            escape(&label)
        );
        let inner = format!("{indent}  ");
        for &index in members.get(cluster).map(Vec::as_slice).unwrap_or_default() {
            write_dot_node(out, &inner, prefix, index, &plan.steps[index]);
        }
        let _ = writeln!(out, "{indent}}}");
    }
    for &index in &loose {
        write_dot_node(out, indent, prefix, index, &plan.steps[index]);
    }
    for (index, step) in plan.steps.iter().enumerate() {
        for after in &step.after {
            let _ = writeln!(out, "{indent}{prefix}s{after} -> {prefix}s{index};");
        }
    }
}

/// The step of the tree plan that installed what `receive` takes: the
/// `install_fd` of its fd in the part of its process.
fn installing_step(plan: &Plan, receive: &ReceiveFd) -> Option<usize> {
    let part = if plan.source.pid == receive.from_pid {
        plan
    } else {
        &plan
            .processes
            .iter()
            .find(|part| part.pid == receive.from_pid)?
            .plan
    };
    part.steps.iter().position(
        |step| matches!(&step.op, Op::InstallFd(install) if install.fd == receive.from_fd),
    )
}

fn write_dot_node(out: &mut String, indent: &str, prefix: &str, index: usize, step: &Step) {
    let style = match &step.op {
        Op::MemoryBarrier => ", shape=octagon, style=bold",
        Op::ExternalInput(_) => ", style=dashed",
        Op::CloseFd(_) => ", color=gray40",
        _ => "",
    };
    let _ = writeln!(
        out,
        "{indent}{prefix}s{index} [label=\"{}\"{style}];",
        escape(&dot_label(index, step))
    );
}

/// Escapes text for a double-quoted DOT string; newlines become `\n`.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            other => out.push(other),
        }
    }
    out
}

/// The subgraph a step is drawn in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Cluster {
    Ring(ObjectId),
    /// A temporary ring, by the index of its setup step.
    Temporary(usize),
}

/// Who registers a handle's object, as far as DOT grouping cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Registrants {
    Nobody,
    One(ObjectId),
    Several,
}

/// Each step's cluster: a ring's own steps in its cluster, an eventfd or
/// file with the one ring that registers it, the rest loose.
fn assign_clusters(plan: &Plan) -> Vec<Option<Cluster>> {
    let steps = &plan.steps;
    let mut registrants = vec![Registrants::Nobody; steps.len()];
    let mut note = |handle: Handle, ring: Option<ObjectId>| {
        let (Some(entry), Some(ring)) = (registrants.get_mut(handle.0 as usize), ring) else {
            return;
        };
        *entry = match *entry {
            Registrants::Nobody => Registrants::One(ring),
            Registrants::One(previous) if previous == ring => Registrants::One(ring),
            _ => Registrants::Several,
        };
    };
    for step in steps {
        match &step.op {
            Op::RegisterEventfd(register) => note(register.eventfd_handle, step.object),
            Op::RegisterFiles(register) => {
                for slot in register.slots.iter().flatten() {
                    note(*slot, step.object);
                }
            }
            _ => {}
        }
    }

    let cluster_of_handle = |handle: Handle| -> Option<Cluster> {
        let defining = steps.get(handle.0 as usize)?;
        match &defining.op {
            Op::SetupRing(setup) if setup.temporary.is_some() => {
                Some(Cluster::Temporary(handle.0 as usize))
            }
            Op::SetupRing(_) => defining.object.map(Cluster::Ring),
            _ => match registrants[handle.0 as usize] {
                Registrants::One(ring) => Some(Cluster::Ring(ring)),
                _ => None,
            },
        }
    };
    steps
        .iter()
        .enumerate()
        .map(|(index, step)| match &step.op {
            Op::CreateEventfd(_)
            | Op::OpenFile(_)
            | Op::ExternalInput(_)
            | Op::SetupRing(_)
            | Op::ReceiveFd(_) => cluster_of_handle(Handle(index as StepIndex)),
            Op::RegisterEventfd(_)
            | Op::RegisterFiles(_)
            | Op::RegisterPersonalities(_)
            | Op::RegisterPbufRing(_)
            | Op::ProvideBuffers(_)
            | Op::RegisterRingFd(_)
            | Op::RegisterRestrictions(_)
            | Op::RegisterSettings(_)
            | Op::RegisterWaitRegion(_)
            | Op::EnableRings(_)
            | Op::RegisterBuffers(_)
            | Op::PlaceRingMemory(_)
            | Op::RestoreCompletions(_)
            | Op::QueueSqes(_) => step.object.map(Cluster::Ring),
            Op::InstallFd(install) => cluster_of_handle(install.source_handle),
            Op::CloseFd(close) => {
                // With its handles' cluster when they all share one.
                let mut clusters = close
                    .handles
                    .iter()
                    .map(|&handle| cluster_of_handle(handle));
                let first = clusters.next().flatten();
                if clusters.all(|cluster| cluster == first) {
                    first
                } else {
                    None
                }
            }
            Op::MemoryBarrier => None,
        })
        .collect()
}

/// The clusters in the order their first step appears (so the output is a
/// function of the plan), each cluster's steps, and the steps in none.
fn group_by_cluster(
    clusters: &[Option<Cluster>],
) -> (Vec<Cluster>, HashMap<Cluster, Vec<usize>>, Vec<usize>) {
    let mut cluster_order: Vec<Cluster> = Vec::new();
    let mut members: HashMap<Cluster, Vec<usize>> = HashMap::new();
    let mut loose: Vec<usize> = Vec::new();
    for (index, cluster) in clusters.iter().enumerate() {
        match cluster {
            Some(cluster) => {
                let list = members.entry(*cluster).or_insert_with(|| {
                    cluster_order.push(*cluster);
                    Vec::new()
                });
                list.push(index);
            }
            None => loose.push(index),
        }
    }
    (cluster_order, members, loose)
}

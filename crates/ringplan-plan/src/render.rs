//! Views of a plan: numbered text for a person, Graphviz DOT, and JSON for
//! programs. All three are functions of the plan alone, so `plan show` gives
//! the same output for an image and for the plan compiled from it.

use std::collections::HashMap;
use std::fmt::Write as _;

use ringplan_image::ObjectId;
use ringplan_image::SetupFlags;
use serde::Serialize;
use serde_json::Value;

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
        out
    }

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

        // Clusters in the order their first step appears, so the output is
        // a function of the plan.
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
        for cluster in &cluster_order {
            let (name, label, style) = match cluster {
                Cluster::Ring(id) => (
                    format!("cluster_ring_{}", id.0),
                    format!("ring {id}"),
                    "solid",
                ),
                Cluster::Temporary(step) => (
                    format!("cluster_temporary_{step}"),
                    format!("temporary ring h{step}"),
                    "dashed",
                ),
            };
            let _ = writeln!(out, "  subgraph {name} {{");
            let _ = writeln!(out, "    label=\"{}\"; style={style};", escape(&label));
            for &index in members.get(cluster).map(Vec::as_slice).unwrap_or_default() {
                write_dot_node(&mut out, "    ", index, &self.steps[index]);
            }
            out.push_str("  }\n");
        }
        for &index in &loose {
            write_dot_node(&mut out, "  ", index, &self.steps[index]);
        }
        for (index, step) in self.steps.iter().enumerate() {
            for after in &step.after {
                let _ = writeln!(out, "  s{after} -> s{index};");
            }
        }
        out.push_str("}\n");
        out
    }

    /// The JSON view as a value: the header fields and `"steps"`, in
    /// execution order, each `{"index", "op", "object", "after",
    /// ...parameters}`. Handles are step indices; an empty file slot is -1
    /// and an empty buffer slot `[0, 0]`. For a large plan prefer
    /// [`Plan::write_json`], which streams.
    pub fn to_json(&self) -> Value {
        // Serializing plain data into a Value cannot fail.
        serde_json::to_value(JsonPlan::of(self)).unwrap_or(Value::Null)
    }

    /// Writes the JSON view (see [`Plan::to_json`]) to `writer` without
    /// building it in memory, keys in the documented order.
    pub fn write_json<W: std::io::Write>(&self, writer: W, pretty: bool) -> serde_json::Result<()> {
        let view = JsonPlan::of(self);
        if pretty {
            serde_json::to_writer_pretty(writer, &view)
        } else {
            serde_json::to_writer(writer, &view)
        }
    }
}

/// The JSON view's shape: the plan's header, then its steps.
#[derive(Serialize)]
struct JsonPlan<'a> {
    format: &'a str,
    version: u32,
    source: JsonSource<'a>,
    needed_fds: &'a [i32],
    temp_fd_floor: i32,
    peak_temporaries: u32,
    steps: JsonSteps<'a>,
}

#[derive(Serialize)]
struct JsonSource<'a> {
    pid: u32,
    backend: &'static str,
    kernel_release: &'a str,
}

impl<'a> JsonPlan<'a> {
    fn of(plan: &'a Plan) -> Self {
        JsonPlan {
            format: &plan.format,
            version: plan.version,
            source: JsonSource {
                pid: plan.source.pid,
                backend: plan.source.backend.name(),
                kernel_release: &plan.source.kernel_release,
            },
            needed_fds: &plan.needed_fds,
            temp_fd_floor: plan.temp_fd_floor,
            peak_temporaries: plan.peak_temporaries,
            steps: JsonSteps(&plan.steps),
        }
    }
}

/// The steps, each with its index, serialized one by one.
struct JsonSteps<'a>(&'a [Step]);

impl Serialize for JsonSteps<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().enumerate().map(|(index, step)| JsonStep {
            index,
            op: step.op.name(),
            object: step.object.map(|id| id.0),
            after: &step.after,
            parameters: JsonParameters::of(&step.op),
        }))
    }
}

#[derive(Serialize)]
struct JsonStep<'a> {
    index: usize,
    op: &'static str,
    object: Option<u32>,
    after: &'a [StepIndex],
    /// The op's own fields, beside the common ones.
    #[serde(flatten)]
    parameters: Option<JsonParameters<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum JsonParameters<'a> {
    CreateEventfd(&'a CreateEventfd),
    OpenFile(&'a OpenFile),
    ExternalInput(&'a ExternalInput),
    SetupRing(&'a SetupRing),
    RegisterEventfd(&'a RegisterEventfd),
    RegisterFiles(&'a RegisterFiles),
    RegisterBuffers(&'a RegisterBuffers),
    InstallFd(&'a InstallFd),
    CloseFd(&'a CloseFd),
}

impl<'a> JsonParameters<'a> {
    fn of(op: &'a Op) -> Option<Self> {
        Some(match op {
            Op::CreateEventfd(parameters) => JsonParameters::CreateEventfd(parameters),
            Op::OpenFile(parameters) => JsonParameters::OpenFile(parameters),
            Op::ExternalInput(parameters) => JsonParameters::ExternalInput(parameters),
            Op::SetupRing(parameters) => JsonParameters::SetupRing(parameters),
            Op::RegisterEventfd(parameters) => JsonParameters::RegisterEventfd(parameters),
            Op::RegisterFiles(parameters) => JsonParameters::RegisterFiles(parameters),
            Op::MemoryBarrier => return None,
            Op::RegisterBuffers(parameters) => JsonParameters::RegisterBuffers(parameters),
            Op::InstallFd(parameters) => JsonParameters::InstallFd(parameters),
            Op::CloseFd(parameters) => JsonParameters::CloseFd(parameters),
        })
    }
}

/// `0-5, 7, 9, 10`: ascending numbers with runs of three or more collapsed.
fn ranges(numbers: impl Iterator<Item = i64>) -> String {
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
fn handle_list(handles: &[Handle]) -> String {
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

fn object_label(object: Option<ObjectId>) -> String {
    object.map_or_else(String::new, |id| format!(" {id}"))
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
    let parts: Vec<String> = mappings
        .iter()
        .map(|mapping| {
            format!(
                "{} {:#x}+{}",
                mapping.region.name(),
                mapping.addr,
                mapping.len
            )
        })
        .collect();
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

fn eventfd_flags(eventfd: &CreateEventfd) -> String {
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

fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
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
            format!(
                "{op}{object}: open {:?} flags {:#o}, seek to {} -> h{index}",
                open.path, open.flags, open.pos
            )
        }
        Op::ExternalInput(input) => {
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
            format!(
                "{op}{object}: the restorer supplies it ({}): {what} -> h{index}",
                input.reason.describe()
            )
        }
        Op::SetupRing(setup) => {
            let who = setup
                .temporary
                .map_or_else(|| object.clone(), temporary_label);
            format!(
                "{op}{who}: {} -> h{index}{}",
                setup_call(setup),
                mappings_text(&setup.mappings)
            )
        }
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
            "{op}{object}: IORING_REGISTER_FILES on {}, {}",
            register.ring_handle,
            used_slots(&register.slots, Option::is_some, |slot| slot
                .map_or_else(String::new, |h| h.to_string()))
        ),
        Op::MemoryBarrier => {
            format!("{op}: the task's memory must be in place from here on (restore it now if you restore it yourself)")
        }
        Op::RegisterBuffers(register) => format!(
            "{op}{object}: IORING_REGISTER_BUFFERS on {}, {}",
            register.ring_handle,
            used_slots(
                &register.iovecs,
                |iovec| !iovec.is_empty(),
                |iovec| format!("{:#x}+{}", iovec.base, iovec.len)
            )
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
            if !setup.mappings.is_empty() {
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
        Op::RegisterFiles(register) => format!(
            "{}, {} used, on {}",
            plural(register.slots.len(), "slot"),
            register.slots.iter().flatten().count(),
            register.ring_handle
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
    };
    format!("{head}\n{detail}")
}

fn write_dot_node(out: &mut String, indent: &str, index: usize, step: &Step) {
    let style = match &step.op {
        Op::MemoryBarrier => ", shape=octagon, style=bold",
        Op::ExternalInput(_) => ", style=dashed",
        Op::CloseFd(_) => ", color=gray40",
        _ => "",
    };
    let _ = writeln!(
        out,
        "{indent}s{index} [label=\"{}\"{style}];",
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
            Op::CreateEventfd(_) | Op::OpenFile(_) | Op::ExternalInput(_) | Op::SetupRing(_) => {
                cluster_of_handle(Handle(index as StepIndex))
            }
            Op::RegisterEventfd(_) | Op::RegisterFiles(_) | Op::RegisterBuffers(_) => {
                step.object.map(Cluster::Ring)
            }
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

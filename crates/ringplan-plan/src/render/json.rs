//! The JSON view, for programs: the plan's header and its steps, each with
//! its index, op name and parameters, serialized straight from the plan.

use serde::Serialize;
use serde_json::Value;

use crate::model::*;

impl Plan {
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
    /// A tree plan's other parts, each `{"pid", "parent", "plan"}`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    processes: Vec<JsonPart<'a>>,
}

#[derive(Serialize)]
struct JsonPart<'a> {
    pid: u32,
    parent: u32,
    plan: JsonPlan<'a>,
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
            processes: plan
                .processes
                .iter()
                .map(|part| JsonPart {
                    pid: part.pid,
                    parent: part.parent,
                    plan: JsonPlan::of(&part.plan),
                })
                .collect(),
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
    RegisterPersonalities(&'a RegisterPersonalities),
    RegisterPbufRing(&'a RegisterPbufRing),
    ProvideBuffers(&'a ProvideBuffers),
    RegisterRingFd(&'a RegisterRingFd),
    RegisterRestrictions(&'a RegisterRestrictions),
    RegisterSettings(&'a RegisterSettings),
    RegisterWaitRegion(&'a RegisterWaitRegion),
    EnableRings(&'a EnableRings),
    RegisterBuffers(&'a RegisterBuffers),
    PlaceRingMemory(&'a PlaceRingMemory),
    RestoreCompletions(&'a RestoreCompletions),
    QueueSqes(&'a QueueSqes),
    InstallFd(&'a InstallFd),
    CloseFd(&'a CloseFd),
    ReceiveFd(&'a ReceiveFd),
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
            Op::RegisterPbufRing(parameters) => JsonParameters::RegisterPbufRing(parameters),
            Op::ProvideBuffers(parameters) => JsonParameters::ProvideBuffers(parameters),
            Op::RegisterRingFd(parameters) => JsonParameters::RegisterRingFd(parameters),
            Op::RegisterPersonalities(parameters) => {
                JsonParameters::RegisterPersonalities(parameters)
            }
            Op::RegisterSettings(parameters) => JsonParameters::RegisterSettings(parameters),
            Op::RegisterRestrictions(parameters) => {
                JsonParameters::RegisterRestrictions(parameters)
            }
            Op::RegisterWaitRegion(parameters) => JsonParameters::RegisterWaitRegion(parameters),
            Op::EnableRings(parameters) => JsonParameters::EnableRings(parameters),
            Op::MemoryBarrier => return None,
            Op::RegisterBuffers(parameters) => JsonParameters::RegisterBuffers(parameters),
            Op::PlaceRingMemory(parameters) => JsonParameters::PlaceRingMemory(parameters),
            Op::RestoreCompletions(parameters) => JsonParameters::RestoreCompletions(parameters),
            Op::QueueSqes(parameters) => JsonParameters::QueueSqes(parameters),
            Op::InstallFd(parameters) => JsonParameters::InstallFd(parameters),
            Op::CloseFd(parameters) => JsonParameters::CloseFd(parameters),
            Op::ReceiveFd(parameters) => JsonParameters::ReceiveFd(parameters),
        })
    }
}

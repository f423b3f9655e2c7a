//! Whether the threads that will register the plan's personalities have the
//! credentials recorded for them. `IORING_REGISTER_PERSONALITY` takes the
//! calling thread's credentials and nothing else: a restore can only give a
//! personality the credentials of the thread that registers it, so a
//! difference is refused before anything is done, unless
//! [`ExecOptions::accept_restorer_credentials`] says to register the
//! restoring thread's credentials instead.

use ringplan_image::{Personality, SetupFlags};
use ringplan_kernel::procfs::credentials::ThreadCredentials;
use ringplan_plan::{Op, Plan};

use crate::error::ExecError;
use crate::options::ExecOptions;

/// Checks every `register_personalities` step. `credentials_of(owner)`
/// reads the credentials of the thread the step will run in: the ring's
/// recorded owner thread for a `SINGLE_ISSUER` ring (`Some(tid)`), else
/// the thread that runs the plan (`None`).
pub(crate) fn check_personalities(
    plan: &Plan,
    options: &ExecOptions,
    credentials_of: impl Fn(Option<u32>) -> Result<ThreadCredentials, ExecError>,
) -> Result<(), ExecError> {
    if options.accept_restorer_credentials {
        return Ok(());
    }
    for (step, entry) in plan.steps.iter().enumerate() {
        let Op::RegisterPersonalities(register) = &entry.op else {
            continue;
        };
        let ring = entry.object.unwrap_or(ringplan_image::ObjectId(0));
        let owner =
            plan.steps
                .get(register.ring_handle.0 as usize)
                .and_then(|setup| match &setup.op {
                    Op::SetupRing(setup)
                        if setup.flags & SetupFlags::SINGLE_ISSUER.bits() != 0
                            && setup.flags & SetupFlags::R_DISABLED.bits() == 0 =>
                    {
                        setup.owner_tid
                    }
                    _ => None,
                });
        if register.personalities.is_empty() {
            continue;
        }
        let current = credentials_of(owner)?;
        for personality in &register.personalities {
            if let Some(difference) = difference(personality, &current) {
                return Err(ExecError::PersonalityCredentials {
                    step,
                    ring,
                    id: personality.id,
                    difference,
                });
            }
        }
    }
    Ok(())
}

/// What differs between a recorded personality and a thread's
/// credentials, as `field recorded (now current)` items; `None` when they
/// are the same.
pub fn difference(personality: &Personality, current: &ThreadCredentials) -> Option<String> {
    let mut items = Vec::new();
    let ids = [
        ("uid", personality.uid, current.uids[0]),
        ("euid", personality.euid, current.uids[1]),
        ("suid", personality.suid, current.uids[2]),
        ("fsuid", personality.fsuid, current.uids[3]),
        ("gid", personality.gid, current.gids[0]),
        ("egid", personality.egid, current.gids[1]),
        ("sgid", personality.sgid, current.gids[2]),
        ("fsgid", personality.fsgid, current.gids[3]),
    ];
    for (name, recorded, now) in ids {
        if recorded != now {
            items.push(format!("{name} {recorded} (now {now})"));
        }
    }
    match &personality.groups {
        Some(groups) if *groups == current.groups => {}
        Some(groups) => items.push(format!("groups {groups:?} (now {:?})", current.groups)),
        None => items.push("groups unknown (more than the dump records)".to_owned()),
    }
    let caps = [
        (
            "cap_effective",
            personality.cap_effective,
            current.cap_effective,
        ),
        (
            "cap_permitted",
            personality.cap_permitted,
            current.cap_permitted,
        ),
        (
            "cap_inheritable",
            personality.cap_inheritable,
            current.cap_inheritable,
        ),
        (
            "cap_bounding",
            personality.cap_bounding,
            current.cap_bounding,
        ),
        ("cap_ambient", personality.cap_ambient, current.cap_ambient),
    ];
    for (name, recorded, now) in caps {
        if recorded != now {
            items.push(format!("{name} {recorded:#x} (now {now:#x})"));
        }
    }
    (!items.is_empty()).then(|| items.join(", "))
}

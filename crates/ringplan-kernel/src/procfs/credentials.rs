//! Credentials as `/proc` shows them: a thread's own (`Uid:`, `Gid:`,
//! `Groups:` and the `Cap*:` lines of `/proc/PID/task/TID/status`), which
//! are what `IORING_REGISTER_PERSONALITY` takes from the thread that calls
//! it, and a ring's registered personalities (the `Personalities:` block of
//! `/proc/PID/fdinfo/RING`, printed when the kernel takes the ring's lock
//! at once: each id, its uids, gids, groups and `CapEff`).

use std::path::Path;

use super::{read_text, Process, ProcfsError};

/// A thread's credentials, as its status file shows them. Ids are as the
/// reader's user namespace maps them (the initial one for ringplan).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ThreadCredentials {
    /// `Uid:` real, effective, saved, filesystem.
    pub uids: [u32; 4],
    /// `Gid:` real, effective, saved, filesystem.
    pub gids: [u32; 4],
    /// `Groups:` the supplementary groups, in the kernel's (sorted) order.
    pub groups: Vec<u32>,
    /// `CapInh:`, `CapPrm:`, `CapEff:`, `CapBnd:`, `CapAmb:`.
    pub cap_inheritable: u64,
    pub cap_permitted: u64,
    pub cap_effective: u64,
    pub cap_bounding: u64,
    pub cap_ambient: u64,
}

impl ThreadCredentials {
    /// Parses the text of a status file; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<ThreadCredentials, ProcfsError> {
        let mut credentials = ThreadCredentials::default();
        let mut seen = [false; 8];
        for (index, line) in text.lines().enumerate() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let bad = || ProcfsError::malformed(path, index + 1, format!("bad {key}: {line:?}"));
            let slot = match key {
                "Uid" => {
                    credentials.uids = four_ids(value).ok_or_else(bad)?;
                    0
                }
                "Gid" => {
                    credentials.gids = four_ids(value).ok_or_else(bad)?;
                    1
                }
                "Groups" => {
                    credentials.groups = ids(value).ok_or_else(bad)?;
                    2
                }
                "CapInh" | "CapPrm" | "CapEff" | "CapBnd" | "CapAmb" => {
                    let mask = u64::from_str_radix(value.trim(), 16).map_err(|_| bad())?;
                    match key {
                        "CapInh" => credentials.cap_inheritable = mask,
                        "CapPrm" => credentials.cap_permitted = mask,
                        "CapEff" => credentials.cap_effective = mask,
                        "CapBnd" => credentials.cap_bounding = mask,
                        _ => credentials.cap_ambient = mask,
                    }
                    match key {
                        "CapInh" => 3,
                        "CapPrm" => 4,
                        "CapEff" => 5,
                        "CapBnd" => 6,
                        _ => 7,
                    }
                }
                _ => continue,
            };
            seen[slot] = true;
        }
        const KEYS: [&str; 8] = [
            "Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
        ];
        match seen.iter().position(|seen| !seen) {
            Some(missing) => Err(ProcfsError::MissingKey {
                path: path.to_owned(),
                key: KEYS[missing],
            }),
            None => Ok(credentials),
        }
    }
}

/// Reads the credentials of thread `tid` of `process`
/// (`/proc/PID/task/TID/status`).
pub fn read_thread(process: Process, tid: u32) -> Result<ThreadCredentials, ProcfsError> {
    let path = process.path(&format!("task/{tid}/status"));
    ThreadCredentials::parse(&read_text(&path)?, &path)
}

/// Reads the calling thread's credentials (`/proc/thread-self/status`).
pub fn read_current_thread() -> Result<ThreadCredentials, ProcfsError> {
    let path = std::path::PathBuf::from("/proc/thread-self/status");
    ThreadCredentials::parse(&read_text(&path)?, &path)
}

/// One personality of a ring's fdinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdinfoPersonality {
    pub id: u32,
    /// Real, effective, saved, filesystem.
    pub uids: [u32; 4],
    /// Real, effective, saved, filesystem.
    pub gids: [u32; 4],
    pub groups: Vec<u32>,
    pub cap_effective: u64,
}

/// The `Personalities:` block of a ring's fdinfo text, in id order; empty
/// when the ring has none (the kernel then prints no block). `path` names
/// the file in errors.
pub fn fdinfo_personalities(
    text: &str,
    path: &Path,
) -> Result<Vec<FdinfoPersonality>, ProcfsError> {
    let mut personalities: Vec<FdinfoPersonality> = Vec::new();
    let mut inside = false;
    for (index, line) in text.lines().enumerate() {
        if !inside {
            inside = line == "Personalities:";
            continue;
        }
        let bad = || ProcfsError::malformed(path, index + 1, format!("bad personality: {line:?}"));
        if !line.starts_with('\t') {
            // An id line ("%5d") starts a personality; anything else ends
            // the block.
            match line.trim().parse::<u32>() {
                Ok(id) => personalities.push(FdinfoPersonality {
                    id,
                    uids: [0; 4],
                    gids: [0; 4],
                    groups: Vec::new(),
                    cap_effective: 0,
                }),
                Err(_) => break,
            }
            continue;
        }
        let current = personalities.last_mut().ok_or_else(bad)?;
        let (key, value) = line.trim_start().split_once(':').ok_or_else(bad)?;
        match key {
            "Uid" => current.uids = four_ids(value).ok_or_else(bad)?,
            "Gid" => current.gids = four_ids(value).ok_or_else(bad)?,
            "Groups" => current.groups = ids(value).ok_or_else(bad)?,
            "CapEff" => {
                current.cap_effective = u64::from_str_radix(value.trim(), 16).map_err(|_| bad())?
            }
            _ => {}
        }
    }
    Ok(personalities)
}

fn ids(value: &str) -> Option<Vec<u32>> {
    value
        .split_whitespace()
        .map(|id| id.parse().ok())
        .collect::<Option<Vec<u32>>>()
}

fn four_ids(value: &str) -> Option<[u32; 4]> {
    ids(value)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_give_ids_groups_and_capabilities() {
        let text = "Name:\tx\nUid:\t1000\t1001\t1002\t1003\nGid:\t5\t6\t7\t8\nGroups:\t4 27 100 \nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000001\n";
        let credentials = ThreadCredentials::parse(text, Path::new("status")).expect("parses");
        assert_eq!(credentials.uids, [1000, 1001, 1002, 1003]);
        assert_eq!(credentials.gids, [5, 6, 7, 8]);
        assert_eq!(credentials.groups, vec![4, 27, 100]);
        assert_eq!(credentials.cap_effective, 0x1ff_ffff_ffff);
        assert_eq!(credentials.cap_ambient, 1);
        assert!(ThreadCredentials::parse("Uid:\t1 2 3 4\n", Path::new("s")).is_err());
        assert!(ThreadCredentials::parse(
            &text.replace("Groups:\t4 27 100 ", "Groups:\tx"),
            Path::new("s")
        )
        .is_err());
    }

    #[test]
    fn this_thread_has_credentials() {
        let credentials = read_current_thread().expect("own status");
        assert_eq!(credentials.uids[0], rustix::process::getuid().as_raw());
        assert_eq!(credentials.gids[1], rustix::process::getegid().as_raw());
    }

    #[test]
    fn the_personalities_block_of_an_fdinfo() {
        let text = "SqMask:\t0x1\nPersonalities:\n    1\n\tUid:\t0\t\t0\t\t0\t\t0\n\tGid:\t0\t\t0\t\t0\t\t0\n\tGroups:\t0\n\tCapEff:\t000001ffffffffff\n    3\n\tUid:\t1000\t\t1000\t\t1000\t\t1000\n\tGid:\t100\t\t100\t\t100\t\t100\n\tGroups:\t\n\tCapEff:\t0000000000000000\nPollList:\n";
        let personalities = fdinfo_personalities(text, Path::new("fdinfo")).expect("parses");
        assert_eq!(personalities.len(), 2);
        assert_eq!(personalities[0].id, 1);
        assert_eq!(personalities[0].groups, vec![0]);
        assert_eq!(personalities[0].cap_effective, 0x1ff_ffff_ffff);
        assert_eq!(personalities[1].id, 3);
        assert_eq!(personalities[1].uids, [1000; 4]);
        assert_eq!(personalities[1].gids, [100; 4]);
        assert!(personalities[1].groups.is_empty());
        assert!(fdinfo_personalities("SqMask:\t0x1\n", Path::new("f"))
            .expect("parses")
            .is_empty());
    }
}

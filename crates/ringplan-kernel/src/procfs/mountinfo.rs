//! `/proc/PID/mountinfo`: one line per mount,
//! `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS`,
//! with space, tab, newline and backslash in paths escaped as `\ooo`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use super::escape::unescape_octal;
use super::{read_text, Process, ProcfsError};

/// What ringplan reads of a mountinfo line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountinfoEntry<'a> {
    /// Where it is mounted, unescaped.
    pub mount_point: PathBuf,
    /// The filesystem type (`cgroup2`, `cgroup`, `ext4`...).
    pub fs_type: &'a str,
    /// The filesystem's own options, comma-separated (a cgroup v1
    /// hierarchy lists its controllers here).
    pub super_options: &'a str,
}

impl MountinfoEntry<'_> {
    /// Parses one line; `None` when it is not a mountinfo line.
    pub fn parse(line: &str) -> Option<MountinfoEntry<'_>> {
        let (before, after) = line.split_once(" - ")?;
        let mount_point = before.split(' ').nth(4)?;
        let mut after = after.split(' ');
        let (fs_type, super_options) = (after.next()?, after.nth(1)?);
        Some(MountinfoEntry {
            mount_point: PathBuf::from(OsString::from_vec(unescape_octal(mount_point.as_bytes()))),
            fs_type,
            super_options,
        })
    }

    /// Whether `option` is one of the super options.
    pub fn has_super_option(&self, option: &str) -> bool {
        self.super_options.split(',').any(|found| found == option)
    }
}

/// Reads `/proc/PID/mountinfo` (its text; parse each line with
/// [`MountinfoEntry::parse`]).
pub fn read(process: Process) -> Result<String, ProcfsError> {
    read_text(&process.path("mountinfo"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_give_mount_point_type_and_options_unescaped() {
        let v1 = MountinfoEntry::parse(
            "30 25 0:26 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer",
        )
        .expect("a line");
        assert_eq!(v1.mount_point, PathBuf::from("/sys/fs/cgroup/freezer"));
        assert_eq!((v1.fs_type, v1.super_options), ("cgroup", "rw,freezer"));
        assert!(v1.has_super_option("freezer") && !v1.has_super_option("pids"));
        let v2 = MountinfoEntry::parse(
            "35 25 0:30 / /sys/fs/cgroup/my\\040unified rw,relatime shared:9 - cgroup2 cgroup2 rw",
        )
        .expect("a line");
        assert_eq!(v2.mount_point, PathBuf::from("/sys/fs/cgroup/my unified"));
        assert_eq!(v2.fs_type, "cgroup2");
        assert_eq!(MountinfoEntry::parse(""), None);
        assert_eq!(MountinfoEntry::parse("1 2 3 - x"), None);
    }

    #[test]
    fn this_process_mountinfo_parses() {
        let text = read(Process::Current).expect("own mountinfo");
        assert!(text
            .lines()
            .all(|line| MountinfoEntry::parse(line).is_some()));
        assert!(text
            .lines()
            .filter_map(MountinfoEntry::parse)
            .any(|entry| entry.mount_point == std::path::Path::new("/")));
    }
}

//! The inode (device and inode number) of every plain file the target
//! holds at an fd, for either backend: `stat` of `/proc/PID/fd/N`.
//!
//! A restore into a process that already holds files at the recorded fds
//! (`plan exec --pid` after a restorer brought the process back) compares
//! them by this identity. It is read from userspace rather than by the BPF
//! program (`f_inode->i_ino`, `i_sb->s_dev`) because the restore compares
//! it with what `stat` of the process's fd shows then: `stat` gives the
//! device in userspace's encoding and, on stacking filesystems such as
//! overlayfs, the inode `getattr` reports, neither of which the kernel's
//! `s_dev` is; and the fdinfo backend, which has no BPF, gets it too.
//! With the BPF backend it is read between the program's pass and the
//! fd-table recheck, so an fd replaced meanwhile makes the read retry.

use ringplan_image::FileIdentity;
use ringplan_kernel::procfs::fd::ProcessFds;
use ringplan_kernel::procfs::{Process, ProcfsError};

use crate::raw::{RawFileRole, RawState};

/// Fills `raw.file_identities` for each plain file at an fd of `pid`. An
/// fd that is gone, or whose inode is no longer of the mode the backend
/// read (it was replaced), gets none: the BPF read's recheck of the fd
/// table then retries, and without it the image simply lacks the
/// identity (a restore then compares by path).
pub fn read(pid: u32, raw: &mut RawState) -> Result<(), ProcfsError> {
    let fds = ProcessFds::open(Process::Pid(pid))?;
    for entry in &raw.fds {
        let Some(file) = raw.files.get(&entry.file) else {
            continue;
        };
        if file.role != RawFileRole::Plain || raw.file_identities.contains_key(&entry.file) {
            continue;
        }
        let Some(inode) = fds.inode(entry.fd)? else {
            continue;
        };
        if file.mode.is_some_and(|mode| mode != inode.mode) {
            continue;
        }
        raw.file_identities.insert(
            entry.file,
            FileIdentity {
                dev: inode.dev,
                ino: inode.ino,
            },
        );
    }
    Ok(())
}

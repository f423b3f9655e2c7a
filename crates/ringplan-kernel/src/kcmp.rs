//! `kcmp(2)` with `KCMP_FILE`: whether two processes' fds are one open
//! file. How a tree restore tells an fd a process already holds is the one
//! another process passes it, how `plan checkpoint` finds rings shared
//! between the processes of a tree, and how the tests check sharing from
//! outside. Needs ptrace read rights over both processes.

use rustix::io::Errno;

use crate::abi::kcmp::KCMP_FILE;

/// Whether fd `fd1` of process `pid1` and fd `fd2` of process `pid2` are
/// one open file; `EBADF` when either fd is not open, `ESRCH` when either
/// process is gone.
pub fn same_file(pid1: u32, fd1: i32, pid2: u32, fd2: i32) -> Result<bool, Errno> {
    let (Ok(pid1), Ok(pid2), Ok(fd1), Ok(fd2)) = (
        libc::pid_t::try_from(pid1),
        libc::pid_t::try_from(pid2),
        libc::c_ulong::try_from(fd1),
        libc::c_ulong::try_from(fd2),
    ) else {
        return Err(Errno::INVAL);
    };
    // SAFETY: kcmp takes integers only and reads no memory of ours.
    let answer = unsafe { libc::syscall(libc::SYS_kcmp, pid1, pid2, KCMP_FILE, fd1, fd2) };
    if answer < 0 {
        return Err(Errno::from_raw_os_error(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        ));
    }
    // 0 is equal; 1 and 2 order two different files, 3 says they differ.
    Ok(answer == 0)
}

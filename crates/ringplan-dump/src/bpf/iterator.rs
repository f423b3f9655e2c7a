//! Running a `task_file` iterator: attaching it to one process and reading
//! everything it writes.

use std::io::{self, Read};
use std::ptr::NonNull;

use libbpf_rs::libbpf_sys;
use libbpf_rs::{AsRawLibbpf, Iter, Link};

use super::records;

/// Attaches `program` as a task_file iterator limited by `link_info`
/// (libbpf-rs 0.27 has no safe wrapper for task iterator parameters).
pub(super) fn attach_task_iterator(
    program: &libbpf_rs::ProgramMut<'_>,
    mut link_info: libbpf_sys::bpf_iter_link_info,
) -> io::Result<Link> {
    let options = libbpf_sys::bpf_iter_attach_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_iter_attach_opts>() as libbpf_sys::size_t,
        link_info: &mut link_info,
        link_info_len: std::mem::size_of::<libbpf_sys::bpf_iter_link_info>() as u32,
        ..Default::default()
    };
    // SAFETY: the program pointer comes from a loaded skeleton that outlives
    // this call; `options` and the `link_info` it points to live until the
    // call returns, and the kernel copies the link info.
    let link = unsafe {
        libbpf_sys::bpf_program__attach_iter(program.as_libbpf_object().as_ptr(), &options)
    };
    let link = NonNull::new(link).ok_or_else(io::Error::last_os_error)?;
    // SAFETY: libbpf just created this link and hands its ownership to us.
    Ok(unsafe { Link::from_ptr(link) })
}

/// Reads an iterator to its end, RP_READ_BUFFER_SIZE bytes at a time (the
/// size that keeps the kernel from re-showing objects).
pub(super) fn drain_iterator(link: &Link) -> io::Result<Vec<u8>> {
    let mut iterator = Iter::new(link).map_err(|error| io::Error::other(error.to_string()))?;
    let mut bytes = Vec::new();
    let mut buffer = vec![0u8; records::READ_BUFFER_SIZE];
    loop {
        match iterator.read(&mut buffer) {
            Ok(0) => return Ok(bytes),
            Ok(read) => bytes.extend_from_slice(buffer.get(..read).unwrap_or(&buffer)),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
}

//! `/proc/PID/mem`: reads and writes of another process's memory at its
//! addresses. Opening it needs the rights ptrace needs
//! (`PTRACE_MODE_ATTACH`). Writes go through page protections as a
//! debugger's do (`FOLL_FORCE`): a read-only or executable private page
//! gets a private copy with the new bytes.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use super::{Process, ProcfsError};

/// An open `/proc/PID/mem`.
#[derive(Debug)]
pub struct ProcessMemory {
    file: File,
    path: PathBuf,
}

impl ProcessMemory {
    /// Opens `/proc/PID/mem` for reading.
    pub fn open(process: Process) -> Result<ProcessMemory, ProcfsError> {
        let path = process.path("mem");
        let file = File::open(&path).map_err(|source| ProcfsError::io(&path, source))?;
        Ok(ProcessMemory { file, path })
    }

    /// Opens `/proc/PID/mem` for reading and writing.
    pub fn open_for_writing(process: Process) -> Result<ProcessMemory, ProcfsError> {
        let path = process.path("mem");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| ProcfsError::io(&path, source))?;
        Ok(ProcessMemory { file, path })
    }

    /// Writes all of `bytes` into the process's memory at `addr`; an error
    /// when any of it is not mapped, or when opened only for reading.
    pub fn write_all_at(&self, addr: u64, bytes: &[u8]) -> Result<(), ProcfsError> {
        self.file
            .write_all_at(bytes, addr)
            .map_err(|source| ProcfsError::io(&self.path, source))
    }

    /// Fills `buffer` from the process's memory at `addr`; an error when any
    /// of it is not mapped or not readable.
    pub fn read_exact_at(&self, addr: u64, buffer: &mut [u8]) -> Result<(), ProcfsError> {
        self.file
            .read_exact_at(buffer, addr)
            .map_err(|source| ProcfsError::io(&self.path, source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_memory_and_not_an_unmapped_page() {
        let value: u64 = 0x1122_3344_5566_7788;
        let memory = ProcessMemory::open(Process::Current).expect("own memory");
        let mut buffer = [0u8; 8];
        memory
            .read_exact_at(std::ptr::addr_of!(value) as u64, &mut buffer)
            .expect("reading a local");
        assert_eq!(u64::from_ne_bytes(buffer), value);
        assert!(memory.read_exact_at(0, &mut buffer).is_err());
        assert!(memory.write_all_at(0, &buffer).is_err());
    }

    #[test]
    fn writes_reach_this_process_memory() {
        let target = Box::new([0u8; 16]);
        let addr = target.as_ptr() as u64;
        let memory = ProcessMemory::open_for_writing(Process::Current).expect("own memory");
        memory.write_all_at(addr + 4, b"ring").expect("writing");
        // SAFETY: `target` is live; the write above went through the
        // kernel, so the compiler must re-read it.
        let seen = unsafe { std::ptr::read_volatile(target.as_ptr().add(4).cast::<[u8; 4]>()) };
        assert_eq!(&seen, b"ring");
        assert!(ProcessMemory::open(Process::Current)
            .expect("own memory")
            .write_all_at(addr, b"x")
            .is_err());
    }
}

//! The per-architecture part of running syscalls in another process: the
//! syscall instruction, the registers (how to read and write them, where a
//! syscall's number, arguments and result go) and what an interrupted
//! syscall looks like in them. One file per architecture; x86-64 only for
//! now.

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub(crate) use x86_64::*;

#[cfg(not(target_arch = "x86_64"))]
compile_error!(
    "ringplan-exec's remote module (syscalls run in another process through ptrace) \
     supports x86-64 only: add remote/arch/<arch>.rs (syscall instruction, registers) \
     for this architecture"
);

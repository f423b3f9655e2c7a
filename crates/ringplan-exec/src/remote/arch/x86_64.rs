//! x86-64: `syscall; int3`, `struct user_regs_struct` through
//! `PTRACE_GETREGS`/`PTRACE_SETREGS`, the syscall number in `rax` (and
//! `orig_rax` once the kernel took it), arguments in `rdi rsi rdx r10 r8 r9`,
//! the result in `rax`.

use rustix::io::Errno;

use crate::remote::ptrace::last_errno;

/// The bytes written where an injected syscall runs: `syscall` then
/// `int3`. The thread is stopped at the syscall's exit (a syscall stop), so
/// the `int3` runs only if something goes wrong: it then traps instead of
/// running whatever follows.
pub(crate) const SYSCALL_CODE: [u8; 3] = [0x0f, 0x05, 0xcc];

/// Bytes of the `syscall` instruction: a thread stopped at an injected
/// syscall's exit has its instruction pointer this far past the code.
pub(crate) const SYSCALL_INSTRUCTION_LEN: u64 = 2;

/// A thread's general registers.
#[derive(Clone, Copy)]
pub(crate) struct Registers(libc::user_regs_struct);

impl Registers {
    /// Reads thread `tid`'s registers (it must be in a ptrace stop).
    pub(crate) fn read(tid: u32) -> Result<Registers, Errno> {
        // SAFETY: user_regs_struct is plain integers, all-zero is valid.
        let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        // SAFETY: PTRACE_GETREGS writes one user_regs_struct at `data`,
        // which points at one.
        let result = unsafe {
            libc::ptrace(
                libc::PTRACE_GETREGS,
                tid as libc::pid_t,
                std::ptr::null_mut::<libc::c_void>(),
                std::ptr::addr_of_mut!(regs).cast::<libc::c_void>(),
            )
        };
        if result == -1 {
            return Err(last_errno());
        }
        Ok(Registers(regs))
    }

    /// Writes these registers into thread `tid` (in a ptrace stop).
    pub(crate) fn write(&self, tid: u32) -> Result<(), Errno> {
        // SAFETY: PTRACE_SETREGS reads one user_regs_struct at `data`.
        let result = unsafe {
            libc::ptrace(
                libc::PTRACE_SETREGS,
                tid as libc::pid_t,
                std::ptr::null_mut::<libc::c_void>(),
                std::ptr::addr_of!(self.0).cast::<libc::c_void>(),
            )
        };
        if result == -1 {
            return Err(last_errno());
        }
        Ok(())
    }

    /// These registers set up to run syscall `nr` with `args` at `code`
    /// (where [`SYSCALL_CODE`] is). `orig_rax` is -1 so that the kernel's
    /// restart logic, which runs when the thread leaves its stop, does not
    /// take the injected call for an interrupted syscall to restart (the
    /// thread's own interrupted syscall would otherwise rewind `rip` by 2
    /// and put its number back in `rax`).
    pub(crate) fn for_syscall(&self, code: u64, nr: u64, args: [u64; 6]) -> Registers {
        let mut regs = self.0;
        regs.rip = code;
        regs.rax = nr;
        regs.orig_rax = u64::MAX;
        regs.rdi = args[0];
        regs.rsi = args[1];
        regs.rdx = args[2];
        regs.r10 = args[3];
        regs.r8 = args[4];
        regs.r9 = args[5];
        Registers(regs)
    }

    /// The raw result of a syscall that just returned (negative errno on
    /// failure, as the kernel gives it).
    pub(crate) fn syscall_result(&self) -> i64 {
        self.0.rax as i64
    }

    /// The instruction pointer.
    pub(crate) fn instruction_pointer(&self) -> u64 {
        self.0.rip
    }

    /// Moves the instruction pointer (an rseq critical section's abort).
    pub(crate) fn set_instruction_pointer(&mut self, ip: u64) {
        self.0.rip = ip;
    }

    /// The syscall the thread was in when it stopped, if its stop
    /// interrupted one the kernel will restart on resume: its number and
    /// the restart code (`-ERESTARTSYS` and its family) in `rax`.
    pub(crate) fn interrupted_syscall(&self) -> Option<(u64, i64)> {
        let nr = self.0.orig_rax as i64;
        let raw = self.0.rax as i64;
        (nr >= 0 && ringplan_kernel::abi::ptrace::is_restart_code(raw)).then_some((nr as u64, raw))
    }

    /// Every register with its name, to compare two sets and name what
    /// differs.
    pub(crate) fn named(&self) -> [(&'static str, u64); 27] {
        let r = &self.0;
        [
            ("r15", r.r15),
            ("r14", r.r14),
            ("r13", r.r13),
            ("r12", r.r12),
            ("rbp", r.rbp),
            ("rbx", r.rbx),
            ("r11", r.r11),
            ("r10", r.r10),
            ("r9", r.r9),
            ("r8", r.r8),
            ("rax", r.rax),
            ("rcx", r.rcx),
            ("rdx", r.rdx),
            ("rsi", r.rsi),
            ("rdi", r.rdi),
            ("orig_rax", r.orig_rax),
            ("rip", r.rip),
            ("cs", r.cs),
            ("eflags", r.eflags),
            ("rsp", r.rsp),
            ("ss", r.ss),
            ("fs_base", r.fs_base),
            ("gs_base", r.gs_base),
            ("ds", r.ds),
            ("es", r.es),
            ("fs", r.fs),
            ("gs", r.gs),
        ]
    }
}

impl std::fmt::Debug for Registers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut map = f.debug_map();
        for (name, value) in self.named() {
            map.entry(&name, &format_args!("{value:#x}"));
        }
        map.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringplan_kernel::abi::ptrace::{ERESTARTSYS, ERESTART_RESTARTBLOCK};

    fn blocked_in(nr: u64, raw: i64) -> Registers {
        // SAFETY: user_regs_struct is plain integers, all-zero is valid.
        let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        regs.orig_rax = nr;
        regs.rax = raw as u64;
        regs.rip = 0x1000;
        regs.rsp = 0x7fff_0000;
        Registers(regs)
    }

    #[test]
    fn injected_registers_carry_the_call_and_no_restart() {
        let blocked = blocked_in(0, -ERESTARTSYS);
        assert_eq!(blocked.interrupted_syscall(), Some((0, -ERESTARTSYS)));
        let injected = blocked.for_syscall(0x5000, 9, [1, 2, 3, 4, 5, 6]);
        let named: std::collections::BTreeMap<_, _> = injected.named().into_iter().collect();
        let args: Vec<u64> = ["rdi", "rsi", "rdx", "r10", "r8", "r9"]
            .iter()
            .map(|name| named[name])
            .collect();
        assert_eq!(args, [1, 2, 3, 4, 5, 6]);
        assert_eq!(
            (named["rax"], named["orig_rax"], named["rip"]),
            (9, u64::MAX, 0x5000)
        );
        assert_eq!(named["rsp"], 0x7fff_0000, "the stack is left alone");
        assert_eq!(injected.interrupted_syscall(), None);
        // The recorded set is untouched.
        assert_eq!(blocked.instruction_pointer(), 0x1000);
    }

    #[test]
    fn only_restart_codes_after_a_syscall_are_interrupted_syscalls() {
        assert_eq!(
            blocked_in(230, -ERESTART_RESTARTBLOCK).interrupted_syscall(),
            Some((230, -ERESTART_RESTARTBLOCK))
        );
        assert_eq!(
            blocked_in(0, -4).interrupted_syscall(),
            None,
            "EINTR is a result"
        );
        assert_eq!(
            blocked_in(u64::MAX, -ERESTARTSYS).interrupted_syscall(),
            None
        );
    }
}

//! x86-64: `syscall; int3`, `struct user_regs_struct` through
//! `PTRACE_GETREGS`/`PTRACE_SETREGS`, the syscall number in `rax` (and
//! `orig_rax` once the kernel took it), arguments in `rdi rsi rdx r10 r8 r9`,
//! the result in `rax`; and the `io_uring_enter` loop
//! ([`ENTER_LOOP_CODE`]), its registers in and out.

use rustix::io::Errno;

use crate::remote::ptrace::last_errno;
use crate::remote::EnterLoop;

/// The bytes written where an injected syscall runs: `syscall` then
/// `int3`. The thread is stopped at the syscall's exit (a syscall stop), so
/// the `int3` runs only if something goes wrong: it then traps instead of
/// running whatever follows.
pub(crate) const SYSCALL_CODE: [u8; 3] = [0x0f, 0x05, 0xcc];

/// Bytes of the `syscall` instruction: a thread stopped at an injected
/// syscall's exit has its instruction pointer this far past the code.
pub(crate) const SYSCALL_INSTRUCTION_LEN: u64 = 2;

/// The `io_uring_enter` loop that [`crate::remote::RemoteProcess::run_enter_loop`]
/// runs in a thread, so that many batches cost one ptrace round trip.
/// Registers in (set by [`Registers::for_enter_loop`]): `rdi` ring fd,
/// `rsi` SQEs per batch, `rdx` `min_complete`, `r10` flags, `r8`/`r9` 0,
/// `r12` batches, `r13` the SQ tail's address, `r14` the CQ head's (0:
/// leave it), `r15` the CQ tail's, `rbx` 0. Out: `r12` the batches not
/// run, `rbx` the last call's result. It uses no stack and no memory but
/// the three ring words.
///
/// ```text
/// loop: test r12, r12          ; batches left?
///       je   done
///       test r14, r14
///       je   submit
///       mov  eax, [r15]        ; CQ head := CQ tail (the CQEs are NOPs')
///       mov  [r14], eax
/// submit:
///       add  [r13+0], esi      ; SQ tail += batch
///       mov  eax, 426          ; io_uring_enter(rdi, rsi, rdx, r10, 0, 0)
///       syscall
///       mov  rbx, rax
///       cmp  rax, rsi          ; all consumed? else stop with the result
///       jne  done
///       dec  r12
///       jmp  loop
/// done: mov  eax, 39           ; tgkill(getpid(), gettid(), SIGTRAP):
///       syscall                ; a signal-delivery stop the tracer sees
///       mov  rdi, rax          ; and suppresses (no forced signal, no
///       mov  eax, 186          ; disposition touched)
///       syscall
///       mov  rsi, rax
///       mov  edx, 5
///       mov  eax, 234
///       syscall
///       jmp  done              ; never reached: the stop comes first
/// ```
pub(crate) const ENTER_LOOP_CODE: [u8; 74] = [
    0x4d, 0x85, 0xe4, // test r12, r12
    0x74, 0x23, // je done
    0x4d, 0x85, 0xf6, // test r14, r14
    0x74, 0x06, // je submit
    0x41, 0x8b, 0x07, // mov eax, [r15]
    0x41, 0x89, 0x06, // mov [r14], eax
    0x41, 0x01, 0x75, 0x00, // add [r13+0], esi
    0xb8, 0xaa, 0x01, 0x00, 0x00, // mov eax, 426
    0x0f, 0x05, // syscall
    0x48, 0x89, 0xc3, // mov rbx, rax
    0x48, 0x39, 0xf0, // cmp rax, rsi
    0x75, 0x05, // jne done
    0x49, 0xff, 0xcc, // dec r12
    0xeb, 0xd8, // jmp loop
    0xb8, 0x27, 0x00, 0x00, 0x00, // done: mov eax, 39
    0x0f, 0x05, // syscall
    0x48, 0x89, 0xc7, // mov rdi, rax
    0xb8, 0xba, 0x00, 0x00, 0x00, // mov eax, 186
    0x0f, 0x05, // syscall
    0x48, 0x89, 0xc6, // mov rsi, rax
    0xba, 0x05, 0x00, 0x00, 0x00, // mov edx, 5 (SIGTRAP)
    0xb8, 0xea, 0x00, 0x00, 0x00, // mov eax, 234
    0x0f, 0x05, // syscall
    0xeb, 0xde, // jmp done
];

/// Where in [`ENTER_LOOP_CODE`] the thread is when its `SIGTRAP` stops it:
/// right after the `tgkill`.
pub(crate) const ENTER_LOOP_STOP_OFFSET: u64 = 0x48;

/// The signal that ends the loop.
pub(crate) const ENTER_LOOP_SIGNAL: i32 = libc::SIGTRAP;

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

    /// These registers set up to run [`ENTER_LOOP_CODE`] at `code` for
    /// `enter_loop`.
    pub(crate) fn for_enter_loop(&self, code: u64, enter_loop: &EnterLoop) -> Registers {
        let mut regs = self.0;
        regs.rip = code;
        regs.orig_rax = u64::MAX;
        regs.rdi = enter_loop.ring_fd as u64;
        regs.rsi = u64::from(enter_loop.batch);
        regs.rdx = u64::from(enter_loop.min_complete);
        regs.r10 = u64::from(enter_loop.flags);
        regs.r8 = 0;
        regs.r9 = 0;
        regs.r12 = enter_loop.batches;
        regs.r13 = enter_loop.sq_tail;
        regs.r14 = enter_loop.cq_head.unwrap_or(0);
        regs.r15 = enter_loop.cq_tail;
        regs.rbx = 0;
        Registers(regs)
    }

    /// After [`ENTER_LOOP_CODE`] stopped: the batches it did not run and
    /// the last `io_uring_enter` result (0 when none ran).
    pub(crate) fn enter_loop_outcome(&self) -> (u64, i64) {
        (self.0.r12, self.0.rbx as i64)
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
    fn the_enter_loop_gets_its_registers_and_ends_at_its_stop() {
        let held = blocked_in(0, -ERESTARTSYS);
        let enter_loop = EnterLoop {
            ring_fd: 7,
            batch: 8,
            min_complete: 0,
            flags: 0,
            batches: 1000,
            sq_tail: 0x1004,
            cq_head: Some(0x1040),
            cq_tail: 0x1044,
        };
        let regs = held.for_enter_loop(0x5000, &enter_loop);
        let named: std::collections::BTreeMap<_, _> = regs.named().into_iter().collect();
        assert_eq!(
            ["rip", "rdi", "rsi", "rdx", "r10", "r8", "r9", "r12", "r13", "r14", "r15", "rbx"]
                .map(|name| named[name]),
            [0x5000, 7, 8, 0, 0, 0, 0, 1000, 0x1004, 0x1040, 0x1044, 0]
        );
        assert_eq!(
            named["orig_rax"],
            u64::MAX,
            "no restart of the thread's own call"
        );
        assert_eq!(named["rsp"], 0x7fff_0000, "the stack is left alone");
        let without_head = held.for_enter_loop(
            0x5000,
            &EnterLoop {
                cq_head: None,
                ..enter_loop
            },
        );
        assert_eq!(
            without_head.named()[..]
                .iter()
                .find(|(n, _)| *n == "r14")
                .map(|r| r.1),
            Some(0)
        );
        // The stop is right after the last `syscall` (0f 05), and the jumps
        // land on instructions: `je done` and `jne done` at the done label,
        // `jmp loop` at 0, `jmp done` at the done label.
        let code = &ENTER_LOOP_CODE;
        assert_eq!(
            &code[ENTER_LOOP_STOP_OFFSET as usize - 2..ENTER_LOOP_STOP_OFFSET as usize],
            &[0x0f, 0x05]
        );
        let target = |at: usize| (at as i64 + 2 + i64::from(code[at + 1] as i8)) as usize;
        let done = 0x28;
        assert_eq!(
            &code[done..done + 5],
            &[0xb8, 0x27, 0, 0, 0],
            "mov eax, getpid"
        );
        assert_eq!((code[3], target(3)), (0x74, done));
        assert_eq!((code[0x21], target(0x21)), (0x75, done));
        assert_eq!((code[0x26], target(0x26)), (0xeb, 0));
        assert_eq!((code[0x48], target(0x48)), (0xeb, done));
        assert_eq!((code[8], target(8)), (0x74, 0x10), "je submit");
        assert_eq!(
            &code[0x14..0x19],
            &[0xb8, 0xaa, 0x01, 0, 0],
            "io_uring_enter is 426"
        );
        assert_eq!(code.len(), 0x4a);
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

//! What ringplan knows about the kernel's interfaces, each fact defined once.
//!
//! - [`abi`]: the io_uring ABI the project uses (setup flags with the
//!   kernel's names, ring regions and their mmap offsets) and the Linux
//!   constants beside it (open flags, eventfd flags, the page size).
//! - [`procfs`]: reading and parsing `/proc/PID/{stat,task,fd,fdinfo,maps,mem}`
//!   and `/proc/self/mountinfo`.
//! - [`probe`]: asking the running kernel with throwaway rings (a ring's
//!   layout for given sizes and flags, whether it has `NO_MMAP`).
//! - [`hold_lock`]: one ringplan command at a time stops and resumes a
//!   process (an `flock` named after it), shared by every crate that stops
//!   one (`--freeze`, `plan freeze`, `plan exec --pid`).
//! - [`kcmp`]: whether two processes' fds are one open file.
//!
//! Every other crate takes these facts from here rather than writing its own
//! copy, so that a kernel constant, a flag name or a `/proc` format has one
//! place to be right or wrong in. `abi` is pure data; `procfs` reads the
//! files it is asked to and nothing else; `probe` sets up and closes rings
//! of its own and changes nothing else.

pub mod abi;
pub mod hold_lock;
pub mod kcmp;
pub mod probe;
pub mod procfs;

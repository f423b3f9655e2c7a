//! Files reopened by path come back with the status flags the image
//! recorded, although every open is made with `O_NONBLOCK` (so that none
//! can block): a restored fd holds `O_APPEND` and loses the `O_NONBLOCK`
//! the open added, unless the image had it; a character device still
//! opens. Checked from outside, in `/proc/HOLDER/fdinfo` of a
//! `plan exec --hold`. (The refusals of a path that names another type of
//! file now are rows of `tests/bad_input.rs`; the run's own check, when a
//! path changes after preflight, is in `crates/ringplan-exec/tests/reopen.rs`.)

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use ringplan_image::{File, FileType, ObjectId, ObjectKind};
use ringplan_kernel::abi::linux::O_NONBLOCK;
use ringplan_kernel::abi::reopen::{O_APPEND, O_LARGEFILE};
use ringplan_kernel::procfs::{fdinfo, Process};

use crate::bad_input::{base, encode};
use crate::support::{scratch_dir, PLAN};

const O_ACCMODE: u32 = 3;
const O_WRONLY: u32 = 1;

fn file_mut(image: &mut ringplan_image::Image, id: u32) -> &mut File {
    let object = image
        .objects
        .iter_mut()
        .find(|object| object.id == ObjectId(id))
        .expect("object in the seed");
    match &mut object.kind {
        ObjectKind::File(file) => file,
        _ => panic!("#{id} is not a file"),
    }
}

/// `flags:` and `pos:` of `/proc/PID/fdinfo/FD`.
fn flags_and_pos(pid: u32, fd: i32) -> (u32, i64) {
    let text = fdinfo::read(Process::Pid(pid), fd).expect("reading the holder's fdinfo");
    let value = |key: &str| {
        let bytes = fdinfo::field(&text, key).unwrap_or_else(|| panic!("no {key} in fdinfo"));
        std::str::from_utf8(bytes)
            .expect("fdinfo is ASCII")
            .trim()
            .to_owned()
    };
    let flags = u32::from_str_radix(&value("flags"), 8).expect("octal flags");
    let pos = value("pos").parse().expect("a position");
    (flags, pos)
}

/// A `plan exec IMAGE --hold --substitute-external EXTRA...` under
/// `timeout 60` (a restore that blocks fails the test instead of hanging
/// it), with the pid of `plan` it printed.
struct Holder {
    child: Child,
    pid: u32,
}

impl Holder {
    fn start(image: &Path, extra: &[&str]) -> Holder {
        let mut child = Command::new("timeout")
            .args(["60", PLAN, "exec"])
            .arg(image)
            .args(["--hold", "--substitute-external"])
            .args(extra)
            .args(crate::support::moved_rings_where_needed())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting plan exec --hold");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("reading the holder's line");
        let held: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|error| panic!("plan exec --hold printed {line:?}: {error}"));
        let pid = held["pid"].as_u64().expect("the holder's pid") as u32;
        Holder { child, pid }
    }

    /// SIGTERM to `plan` (under `timeout`, which then exits with its
    /// status), which must exit 0.
    fn stop(mut self) {
        let status = self.terminate();
        assert!(
            status.success(),
            "the holder exited with {status} on SIGTERM"
        );
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        self.child.wait().expect("waiting for the holder")
    }
}

/// A failed test still stops its holder.
impl Drop for Holder {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.terminate();
        }
    }
}

#[test]
fn reopened_files_keep_their_recorded_status_flags() {
    let dir = scratch_dir("reopen-status-flags");
    let appended = dir.join("appended");
    std::fs::write(&appended, b"0123456789").expect("writing a regular file");
    let appended_text = appended.to_str().expect("a UTF-8 path").to_owned();
    let mut image = base();
    // #4 (held at fd 20): a log opened O_WRONLY|O_APPEND, at position 5.
    *file_mut(&mut image, 4) = File {
        path: Some(appended_text.clone()),
        flags: Some(O_WRONLY | O_APPEND | O_LARGEFILE),
        pos: Some(5),
        file_type: FileType::Regular,
        identity: None,
    };
    // #6 (held at fd 22): /dev/null, a character device, opened with
    // O_NONBLOCK by the program, which it keeps.
    let null = file_mut(&mut image, 6);
    assert_eq!(null.file_type, FileType::CharDevice);
    null.flags = Some(O_WRONLY | O_NONBLOCK | O_LARGEFILE);
    file_mut(&mut image, 5).flags = Some(O_WRONLY | O_NONBLOCK);
    let document = dir.join("status-flags.img");
    std::fs::write(&document, encode(&image)).expect("writing the image");

    let holder = Holder::start(&document, &[]);
    let pid = holder.pid;

    let link = std::fs::read_link(format!("/proc/{pid}/fd/20")).expect("the holder's fd 20");
    assert_eq!(link.to_str(), Some(appended_text.as_str()));
    let (flags, pos) = flags_and_pos(pid, 20);
    assert_eq!(
        flags & O_APPEND,
        O_APPEND,
        "O_APPEND lost: flags {flags:#o}"
    );
    assert_eq!(
        flags & O_NONBLOCK,
        0,
        "O_NONBLOCK of the open left: {flags:#o}"
    );
    assert_eq!(flags & O_ACCMODE, O_WRONLY, "flags {flags:#o}");
    assert_eq!(pos, 5);

    let link = std::fs::read_link(format!("/proc/{pid}/fd/22")).expect("the holder's fd 22");
    assert_eq!(link.to_str(), Some("/dev/null"));
    let (flags, _) = flags_and_pos(pid, 22);
    assert_eq!(
        flags & O_NONBLOCK,
        O_NONBLOCK,
        "recorded O_NONBLOCK lost: {flags:#o}"
    );
    assert_eq!(flags & O_ACCMODE, O_WRONLY, "flags {flags:#o}");

    // #5, the seed's pipe, substituted: non-blocking as recorded.
    let (flags, _) = flags_and_pos(pid, 21);
    assert_eq!(
        flags & O_NONBLOCK,
        O_NONBLOCK,
        "recorded O_NONBLOCK lost: {flags:#o}"
    );
    holder.stop();
    // The restore wrote nothing into the file.
    assert_eq!(
        std::fs::read(&appended).expect("reading the log"),
        b"0123456789"
    );
}

/// A FIFO supplied for the seed's pipe with `--input` is opened without
/// blocking (for writing, as recorded: a reader is there), then loses the
/// `O_NONBLOCK` of that open, as the image's pipe had none.
#[test]
fn an_input_opened_without_blocking_gets_the_recorded_o_nonblock() {
    let dir = scratch_dir("reopen-input-flags");
    let fifo = dir.join("pipe");
    let status = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("running mkfifo (coreutils)");
    assert!(status.success());
    // The reader, so that a non-blocking open for writing succeeds.
    let _reader = rustix::fs::open(
        &fifo,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .expect("opening the FIFO's read end");
    let mut image = base();
    file_mut(&mut image, 5).flags = Some(O_WRONLY);
    let document = dir.join("input.img");
    std::fs::write(&document, encode(&image)).expect("writing the image");
    let input = format!("5={}", fifo.to_str().expect("a UTF-8 path"));
    let holder = Holder::start(&document, &["--input", &input]);
    let link = std::fs::read_link(format!("/proc/{}/fd/21", holder.pid)).expect("fd 21");
    assert_eq!(link, fifo);
    let (flags, _) = flags_and_pos(holder.pid, 21);
    assert_eq!(
        flags & O_NONBLOCK,
        0,
        "O_NONBLOCK of the open left: {flags:#o}"
    );
    assert_eq!(flags & O_ACCMODE, O_WRONLY, "flags {flags:#o}");
    holder.stop();
}

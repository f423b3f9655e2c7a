//! Files reopened by path come back with the status flags the image
//! recorded, although every open is made with `O_NONBLOCK` (so that none
//! can block): a restored fd holds `O_APPEND` and loses the `O_NONBLOCK`
//! the open added, unless the image had it; a character device still
//! opens. Checked from outside, in `/proc/HOLDER/fdinfo` of a
//! `plan exec --hold`. (The refusals of a path that names another type of
//! file now are rows of `tests/bad_input.rs`; the run's own check, when a
//! path changes after preflight, is in `crates/ringplan-exec/tests/reopen.rs`.)

use std::io::BufRead;
use std::process::{Command, Stdio};

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
    };
    // #6 (held at fd 22): /dev/null, a character device, opened with
    // O_NONBLOCK by the program, which it keeps.
    let null = file_mut(&mut image, 6);
    assert_eq!(null.file_type, FileType::CharDevice);
    null.flags = Some(O_WRONLY | O_NONBLOCK | O_LARGEFILE);
    let document = dir.join("status-flags.img");
    std::fs::write(&document, encode(&image)).expect("writing the image");

    let mut holder = Command::new("timeout")
        .args(["60", PLAN, "exec"])
        .arg(&document)
        .args(["--hold", "--substitute-external"])
        .args(crate::support::moved_rings_where_needed())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting plan exec --hold");
    let mut line = String::new();
    std::io::BufReader::new(holder.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("reading the holder's line");
    let held: serde_json::Value = serde_json::from_str(&line)
        .unwrap_or_else(|error| panic!("plan exec --hold printed {line:?}: {error}"));
    let pid = held["pid"].as_u64().expect("the holder's pid") as u32;

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

    // The holder is `plan` itself (the pid it printed), under `timeout`,
    // which then exits with its status.
    let plan_pid = rustix::process::Pid::from_raw(pid as i32).expect("a pid");
    let _ = rustix::process::kill_process(plan_pid, rustix::process::Signal::TERM);
    let status = holder.wait().expect("waiting for the holder");
    assert!(
        status.success(),
        "the holder exited with {status} on SIGTERM"
    );
    // The restored log really appends: nothing written through it here,
    // but the file is untouched by the restore.
    assert_eq!(
        std::fs::read(&appended).expect("reading the log"),
        b"0123456789"
    );
}

//! Adopting what a process already holds (`plan exec --pid`): the seed's
//! image (fds moved up by `FD_SHIFT`, without continuity state) restored
//! into `tests/programs/restore_target.c` started holding, at the recorded
//! numbers, the seed's eventfd (count 42) and a regular file that stands
//! for one of its registered files. Only the rings and what the process
//! lacks are created; the held fds are registered as they are and never
//! closed (not on success, not when any step fails). A different object
//! at a recorded fd is refused in one line, exit 2, nothing changed. And
//! the dump records each held file's inode as `stat` shows it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use ringplan_exec::test_hooks::ProcessState;
use ringplan_image::{File, FileIdentity, FileType, Image, ObjectKind};
use ringplan_kernel::procfs::fdinfo::{self, CommonFdinfo};
use ringplan_kernel::procfs::Process;

use crate::exec_pid::{refused, seed_image, Target, FD_SHIFT};
use crate::support::{
    fail_at_every_step, fdinfo_backend_refusal, kernel_shows_registered_file_paths, plan, plan_ok,
    scratch_dir, Scenario,
};

/// The seed's eventfd fd and its count.
const EVENTFD_FD: i32 = 7 + FD_SHIFT;
const EVENTFD_COUNT: u64 = 42;
/// The seed's fd 1 (a pipe in the tests), made a regular file of the
/// scratch directory in the image, at this offset.
const FILE_FD: i32 = 1 + FD_SHIFT;
const IMAGE_OFFSET: i64 = 5;
/// `O_RDWR | O_LARGEFILE`, as the kernel holds a file opened read-write.
const READ_WRITE: u32 = 0o100_002;

/// The seed image with its fd-1 object a regular file at `file` (whose
/// inode the image records), written to `dir`: `(path, image)`.
fn image_with_file(dir: &Path, file: &Path) -> (String, Image) {
    let (path, mut image) = seed_image(dir, false);
    let metadata = std::fs::metadata(file).expect("the file");
    let object = image
        .objects
        .iter_mut()
        .find(|object| object.fds.iter().any(|entry| entry.fd == FILE_FD))
        .expect("the seed holds fd 1");
    object.kind = ObjectKind::File(File {
        path: Some(file.to_str().expect("utf-8").to_owned()),
        flags: Some(READ_WRITE),
        pos: Some(IMAGE_OFFSET),
        file_type: FileType::Regular,
        identity: Some(FileIdentity {
            dev: metadata.dev(),
            ino: metadata.ino(),
        }),
    });
    let eventfd = image
        .objects
        .iter()
        .find(|object| object.fds.iter().any(|entry| entry.fd == EVENTFD_FD))
        .expect("the seed's eventfd");
    assert!(
        matches!(&eventfd.kind, ObjectKind::Eventfd(e) if e.count == EVENTFD_COUNT && !e.semaphore && !e.nonblock),
        "{eventfd:?}"
    );
    let bytes = ringplan_image::encode_to_vec(&image).expect("encoding");
    // The image still decodes (the identity is a valid field).
    ringplan_image::decode_slice(&bytes).expect("decodes");
    std::fs::write(&path, bytes).expect("writing the image");
    (path, image)
}

/// A file of 64 bytes in `dir`.
fn data_file(dir: &Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, [b'x'; 64]).expect("writing a data file");
    path
}

/// What the process holds at `fd`: `(dev, ino, fdinfo)`.
fn held(pid: u32, fd: i32) -> (u64, u64, CommonFdinfo, Vec<u8>) {
    let path = format!("/proc/{pid}/fd/{fd}");
    let metadata = std::fs::metadata(&path).unwrap_or_else(|error| panic!("{path}: {error}"));
    let text = fdinfo::read(Process::Pid(pid), fd).expect("fdinfo");
    let info = CommonFdinfo::parse(Path::new(&path), &text).expect("fdinfo parses");
    (metadata.dev(), metadata.ino(), info, text)
}

/// `eventfd-id` where the kernel prints it (not 6.1).
fn eventfd_id(text: &[u8]) -> Option<Vec<u8>> {
    fdinfo::field(text, "eventfd-id").map(<[u8]>::to_vec)
}

/// Whether this kernel's fdinfo shows `eventfd-semaphore`.
fn kernel_shows_semaphore() -> bool {
    let eventfd =
        rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).expect("an eventfd");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&eventfd);
    let text = fdinfo::read(Process::Pid(std::process::id()), fd).expect("own fdinfo");
    fdinfo::field(&text, "eventfd-semaphore").is_some()
}

#[test]
fn a_process_holding_the_eventfd_and_a_file_gets_only_the_rest_created() {
    let dir = scratch_dir("exec-pid-adopt");
    let file = data_file(&dir, "adopted.data");
    let (path, image) = image_with_file(&dir, &file);
    let file_arg = file.to_str().expect("utf-8");
    let eventfd_fd = EVENTFD_FD.to_string();
    let file_fd = FILE_FD.to_string();
    let count = EVENTFD_COUNT.to_string();
    let args = [
        "eventfd",
        &eventfd_fd,
        &count,
        "-",
        "open",
        &file_fd,
        file_arg,
        "3",
    ];
    let mut target = Target::start_with(&args);
    let pid = target.pid.to_string();
    let (file_dev, file_ino, file_before, _) = held(target.pid, FILE_FD);
    let (eventfd_dev, eventfd_ino, eventfd_before, eventfd_text) = held(target.pid, EVENTFD_FD);
    assert_eq!((file_dev, file_ino), {
        let metadata = std::fs::metadata(&file).expect("file");
        (metadata.dev(), metadata.ino())
    });
    assert_eq!(file_before.pos, 3);
    assert_eq!(eventfd_before.eventfd_count, Some(EVENTFD_COUNT));

    // The dry run says what it would adopt, and changes nothing.
    let before = ProcessState::capture_of(target.pid);
    let dry = plan_ok(&[
        "exec",
        &path,
        "--pid",
        &pid,
        "--substitute-external",
        "--dry-run",
    ]);
    let dry = String::from_utf8_lossy(&dry).into_owned();
    assert!(dry.contains(&format!("adopted fd {FILE_FD} ")), "{dry}");
    assert!(dry.contains(&format!("adopted fd {EVENTFD_FD} ")), "{dry}");
    assert_eq!(
        before.changes_to(&ProcessState::capture_of(target.pid)),
        Vec::<String>::new()
    );

    // A failure at any step leaves the held fds open, as they were.
    let target_pid = target.pid;
    fail_at_every_step(
        &path,
        target_pid,
        &["--substitute-external"],
        &before,
        |step| {
            assert!(target.answers(), "step {step}: the target runs on");
        },
    );

    let output = plan(&["exec", &path, "--pid", &pid, "--substitute-external"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "exec --pid failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("2 adopted"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "fd {FILE_FD}: offset 3 in the process, {IMAGE_OFFSET} in the image: the process's is kept"
        )),
        "{stdout}"
    );

    // The held fds are the same objects as before, untouched.
    let (dev, ino, file_after, _) = held(target.pid, FILE_FD);
    assert_eq!((dev, ino), (file_dev, file_ino), "fd {FILE_FD}: same inode");
    assert_eq!(file_after.pos, 3, "the process's own offset");
    assert_eq!(file_after.flags, file_before.flags);
    let (dev, ino, eventfd_after, text) = held(target.pid, EVENTFD_FD);
    assert_eq!((dev, ino), (eventfd_dev, eventfd_ino));
    assert_eq!(eventfd_id(&text), eventfd_id(&eventfd_text), "same eventfd");
    assert_eq!(eventfd_after.eventfd_count, Some(EVENTFD_COUNT));
    assert_eq!(eventfd_after.flags, eventfd_before.flags);

    // The rings were created and registered with the held fds: the file
    // table lists the held file, and the eventfd is the ring's.
    let mut rows_with_file = 0;
    for object in &image.objects {
        let ObjectKind::Ring(ring) = &object.kind else {
            continue;
        };
        let fd = object.fds[0].fd;
        assert_eq!(
            target.link(fd).as_deref(),
            Some("anon_inode:[io_uring]"),
            "ring fd {fd}"
        );
        let text = fdinfo::read(Process::Pid(target.pid), fd).expect("ring fdinfo");
        let rows = fdinfo::user_file_rows(&text);
        for (slot, entry) in ring.files.iter().enumerate() {
            let Some(id) = entry else { continue };
            let holds_file = image
                .objects
                .iter()
                .any(|o| o.id == *id && o.fds.iter().any(|e| e.fd == FILE_FD));
            if holds_file {
                // 6.1 lists a registered file by its name only.
                let name = file.file_name().expect("a name").to_str().expect("utf-8");
                let row = rows.get(&(slot as u32)).map(|row| row.as_slice());
                let shown = if kernel_shows_registered_file_paths() {
                    file_arg
                } else {
                    name
                };
                assert_eq!(
                    row,
                    Some(shown.as_bytes()),
                    "ring at {fd}, slot {slot}:\n{}",
                    String::from_utf8_lossy(&text)
                );
                rows_with_file += 1;
            }
        }
    }
    assert_eq!(rows_with_file, 1, "the seed registers fd 1 once");
    // Nothing else was opened at the held numbers, and the target runs.
    assert_ne!(target.state(), b'T');
    assert!(target.answers(), "the target runs on after the restore");
}

#[test]
fn a_different_object_at_a_recorded_fd_is_refused_with_nothing_changed() {
    let dir = scratch_dir("exec-pid-adopt-refused");
    let file = data_file(&dir, "recorded.data");
    let other = data_file(&dir, "other.data");
    let (path, _) = image_with_file(&dir, &file);
    let eventfd_fd = EVENTFD_FD.to_string();
    let file_fd = FILE_FD.to_string();
    let count = EVENTFD_COUNT.to_string();
    let other_count = (EVENTFD_COUNT - 1).to_string();
    let shows_semaphore = kernel_shows_semaphore();
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["open", &file_fd, other.to_str().expect("utf-8"), "0"],
            FILE_FD,
            "other.data",
        ),
        (
            vec!["eventfd", &eventfd_fd, &other_count, "-"],
            EVENTFD_FD,
            "an eventfd (count 41",
        ),
        (
            vec!["eventfd", &eventfd_fd, &count, "n"],
            EVENTFD_FD,
            "non-blocking",
        ),
        // A file where the image has the eventfd.
        (
            vec!["open", &eventfd_fd, other.to_str().expect("utf-8"), "0"],
            EVENTFD_FD,
            "other.data",
        ),
    ];
    let mut cases = cases;
    if shows_semaphore {
        cases.push((
            vec!["eventfd", &eventfd_fd, &count, "s"],
            EVENTFD_FD,
            "semaphore",
        ));
    }
    for (args, fd, found) in &cases {
        let mut target = Target::start_with(args);
        let pid = target.pid.to_string();
        let before = ProcessState::capture_of(target.pid);
        let line = refused(&["exec", &path, "--pid", &pid, "--substitute-external"]);
        assert!(
            line.contains(&format!("fd {fd} of process {pid} holds")) && line.contains(found),
            "{args:?}: {line}"
        );
        assert!(line.contains("but the image has"), "{line}");
        assert_eq!(
            before.changes_to(&ProcessState::capture_of(target.pid)),
            Vec::<String>::new(),
            "{args:?}"
        );
        assert!(target.answers(), "{args:?}");
    }
    if !shows_semaphore {
        // Without the kernel's word on EFD_SEMAPHORE the count and
        // O_NONBLOCK decide, and the run says what it could not compare.
        let target = Target::start_with(&["eventfd", &eventfd_fd, &count, "s"]);
        let output = plan_ok(&[
            "exec",
            &path,
            "--pid",
            &target.pid.to_string(),
            "--substitute-external",
            "--dry-run",
        ]);
        let text = String::from_utf8_lossy(&output);
        assert!(text.contains("does not show EFD_SEMAPHORE"), "{text}");
    }
}

#[test]
fn a_dump_records_the_inode_behind_each_fd_that_holds_a_file() {
    let dir = scratch_dir("dump-identity");
    let scenario = Scenario::start("seed");
    let path = dir.join("seed.img");
    let path = path.to_str().expect("utf-8");
    let pid = scenario.pid();
    for backend in ["bpf", "fdinfo"] {
        if backend == "fdinfo" && fdinfo_backend_refusal().is_some() {
            // 6.1's fdinfo is not a format that backend reads.
            continue;
        }
        plan_ok(&[
            "dump",
            "--pid",
            &pid.to_string(),
            "--backend",
            backend,
            "-o",
            path,
        ]);
        let image =
            ringplan_image::decode_slice(&std::fs::read(path).expect("image")).expect("decodes");
        let mut with_fds = 0;
        for object in &image.objects {
            let ObjectKind::File(file) = &object.kind else {
                continue;
            };
            match object.fds.first() {
                Some(entry) => {
                    let metadata = std::fs::metadata(format!("/proc/{pid}/fd/{}", entry.fd))
                        .expect("the seed's fd");
                    assert_eq!(
                        file.identity,
                        Some(FileIdentity {
                            dev: metadata.dev(),
                            ino: metadata.ino(),
                        }),
                        "{backend}: fd {}",
                        entry.fd
                    );
                    with_fds += 1;
                }
                None => assert_eq!(file.identity, None, "{backend}: {object:?}"),
            }
        }
        if backend == "fdinfo" {
            // Its registered files are one object per slot, without fds.
            continue;
        }
        assert!(with_fds >= 3, "{backend}: the seed's stdio files");
        // The JSON view shows it.
        let json = plan_ok(&["show", path, "--objects", "--format", "json"]);
        let json: serde_json::Value = serde_json::from_slice(&json).expect("JSON");
        let stdin = json["objects"]
            .as_array()
            .expect("objects")
            .iter()
            .find(|object| object["kind"] == "file" && object["fds"][0] == 0)
            .expect("the seed's fd 0");
        assert!(stdin["identity"]["ino"].is_u64(), "{stdin}");
    }
}

/// A held file whose path was deleted since (its inode lives on in the
/// process) is adopted by its inode: preflight does not look the path up,
/// and the run says the path changed.
#[test]
fn a_held_file_whose_path_is_gone_is_adopted_by_its_inode() {
    let dir = scratch_dir("exec-pid-adopt-deleted");
    let file = data_file(&dir, "deleted.data");
    let (path, _) = image_with_file(&dir, &file);
    let file_fd = FILE_FD.to_string();
    let mut target = Target::start_with(&["open", &file_fd, file.to_str().expect("utf-8"), "0"]);
    std::fs::remove_file(&file).expect("deleting the held file");
    let (dev, ino, _, _) = held(target.pid, FILE_FD);
    let output = plan_ok(&[
        "exec",
        &path,
        "--pid",
        &target.pid.to_string(),
        "--substitute-external",
    ]);
    let stdout = String::from_utf8_lossy(&output);
    assert!(
        stdout.contains(&format!("adopted fd {FILE_FD} ")),
        "{stdout}"
    );
    assert!(
        stdout.contains("renamed or deleted since the dump"),
        "{stdout}"
    );
    let (dev_after, ino_after, _, _) = held(target.pid, FILE_FD);
    assert_eq!((dev_after, ino_after), (dev, ino));
    assert!(target.answers());
}

/// `--verify` of a restore that adopted fds compares the adopted objects
/// too, the file's own offset (kept on purpose) said as a note.
#[test]
fn verify_takes_an_adopted_file_offset_as_a_note() {
    let dir = scratch_dir("exec-pid-adopt-verify");
    let file = data_file(&dir, "verified.data");
    let (path, _) = image_with_file(&dir, &file);
    let eventfd_fd = EVENTFD_FD.to_string();
    let file_fd = FILE_FD.to_string();
    let count = EVENTFD_COUNT.to_string();
    let file_arg = file.to_str().expect("utf-8");
    let mut target = Target::start_with(&[
        "eventfd",
        &eventfd_fd,
        &count,
        "-",
        "open",
        &file_fd,
        file_arg,
        "3",
    ]);
    let output = plan(&[
        "exec",
        &path,
        "--pid",
        &target.pid.to_string(),
        "--substitute-external",
        "--verify",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with("verified: "), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "adopted from the process, its offset kept: 3 (image {IMAGE_OFFSET})"
        )),
        "{stdout}"
    );
    assert!(target.answers());
}

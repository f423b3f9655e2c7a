//! Reopening files by path never blocks, and a file of another type than
//! the image recorded is refused: by preflight (`stat`, nothing opened),
//! and by the run itself when the path changes after preflight looked
//! (the race `preflight` cannot close), with everything undone. Each run
//! happens in a thread the test waits for at most 10 s, so an `open` that
//! blocks (a FIFO opened for reading waits for a writer) fails the test
//! instead of hanging it.

use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use ringplan_exec::test_hooks::{run_preflighted, ProcessState};
use ringplan_exec::{preflight, ExecError, ExecOptions, Inputs, NoMemory, Restored};
use ringplan_image::{
    Backend, FdEntry, File, FileType, Image, Object, ObjectId, ObjectKind, Source,
};
use ringplan_kernel::abi::reopen::O_LARGEFILE;
use ringplan_plan::{Op, Plan};

const O_WRONLY: u32 = 1;

/// A fresh directory for one test's files.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringplan-reopen-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a scratch dir");
    dir
}

/// A free fd number well above anything this test process holds, distinct
/// per test (tests of this binary run in parallel).
fn free_fd(from: i32) -> i32 {
    (from..from + 100)
        .find(|fd| {
            // SAFETY: only asks for the fd's flags; EBADF when it is not open.
            let borrowed = unsafe { BorrowedFd::borrow_raw(*fd) };
            rustix::io::fcntl_getfd(borrowed).is_err()
        })
        .expect("a free fd")
}

/// The plan of an image holding one regular file at `fd`, opened with
/// `flags` at `path`.
fn plan_of_regular_file(path: &Path, flags: u32, fd: i32) -> Plan {
    let file = File {
        path: Some(path.to_str().expect("a UTF-8 path").to_owned()),
        flags: Some(flags),
        pos: Some(0),
        file_type: FileType::Regular,
        identity: None,
    };
    let image = Image::new(
        Source {
            pid: 1,
            backend: Backend::Bpf,
            kernel_release: "test".to_owned(),
        },
        vec![Object {
            id: ObjectId(1),
            fds: vec![FdEntry { fd, cloexec: false }],
            kind: ObjectKind::File(file),
        }],
    );
    ringplan_plan::compile(&image).expect("compiling a one-file image")
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("running mkfifo (coreutils)");
    assert!(status.success(), "mkfifo {}: {status}", path.display());
}

/// Runs `work` in a thread and waits at most 10 s for it: a restore that
/// blocks in `open` fails here instead of hanging the test binary.
fn within_10_s<T: Send + 'static>(what: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(work());
    });
    receiver
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{what} did not return within 10 s: an open blocked"))
}

/// What differs in this process's fds and maps that concerns `dir` or
/// `fd` (other tests of this binary open fds meanwhile).
fn changes_about(before: &ProcessState, dir: &Path, fd: i32) -> Vec<String> {
    let dir = dir.to_str().expect("a UTF-8 path").to_owned();
    before
        .changes_to(&ProcessState::capture())
        .into_iter()
        .filter(|change| change.contains(&dir) || change.starts_with(&format!("fd {fd} ")))
        .collect()
}

/// The path is a regular file when preflight looks and a FIFO when the
/// step opens it: the open does not wait for a writer (read side) and
/// does not fail as an unexplained ENXIO (write side, no reader); the step
/// names what it found, and the run is undone.
#[test]
fn a_path_changed_after_preflight_is_refused_by_the_run() {
    let dir = scratch("after-preflight");
    for (name, access, fd_from) in [("read", 0, 700), ("write", O_WRONLY, 800)] {
        let path = dir.join(format!("{name}-was-regular"));
        std::fs::write(&path, b"recorded contents").expect("writing a regular file");
        let fd = free_fd(fd_from);
        let plan = plan_of_regular_file(&path, access | O_LARGEFILE, fd);
        let options = ExecOptions::default();
        let report = preflight(&plan, &Inputs::new(), &mut NoMemory, &options)
            .expect("preflight passes while the path is a regular file");

        std::fs::remove_file(&path).expect("removing the regular file");
        mkfifo(&path);
        let before = ProcessState::capture();
        let result = within_10_s(name, move || {
            run_preflighted(&plan, Inputs::new(), &mut NoMemory, &options, &report)
                .map(|restored: Restored| restored.fds.len())
        });
        let error = result.expect_err("a FIFO where a regular file was must be refused");
        assert!(
            matches!(
                error,
                ExecError::OpenedTypeChanged {
                    found: FileType::Pipe,
                    recorded: Some(FileType::Regular),
                    ..
                }
            ),
            "{name}: {error:?}"
        );
        assert!(
            !error.is_preflight(),
            "{name}: the run refused it, not preflight"
        );
        let message = error.to_string();
        assert!(
            message.contains(&format!(
                "{:?} is a FIFO now, but the image says a regular file; everything done was undone",
                path.to_str().unwrap()
            )),
            "{name}: {message}"
        );
        assert_eq!(
            changes_about(&before, &dir, fd),
            Vec::<String>::new(),
            "{name}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A plan written before `open_file` recorded the file's type (its `type`
/// left out) is still checked: a FIFO is no file a plan reopens.
#[test]
fn a_plan_without_the_type_still_refuses_a_fifo() {
    let dir = scratch("untyped");
    let path = dir.join("fifo");
    mkfifo(&path);
    let fd = free_fd(900);
    let mut plan = plan_of_regular_file(&path, O_LARGEFILE, fd);
    for step in &mut plan.steps {
        if let Op::OpenFile(open) = &mut step.op {
            open.file_type = None;
        }
    }
    let plan = ringplan_plan::decode_slice(&ringplan_plan::encode_to_vec(&plan).unwrap())
        .expect("a plan without the type decodes");
    let error = within_10_s("execute", move || {
        ringplan_exec::execute(&plan, Inputs::new(), &mut NoMemory, &ExecOptions::default())
            .map(|restored| restored.fds.len())
    })
    .expect_err("a FIFO must be refused");
    assert!(error.is_preflight(), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(
            "the image says a file that can be reopened (a regular file, directory or device), but it is a FIFO now"
        ),
        "{message}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

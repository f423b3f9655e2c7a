//! A C test program (`tests/programs/`) that reports in JSON lines on
//! stdout and waits for a line on stdin between its two halves: a test
//! reads its first line, works on the process (takes its rings out, puts
//! them back), then lets it go on and reads how it finished.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};

use serde_json::Value;

/// A running line program; killed on drop.
pub struct LineProgram {
    name: &'static str,
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl LineProgram {
    /// Builds and starts `name` with `args`; the program and its first
    /// line.
    pub fn start(name: &'static str, args: &[String]) -> (LineProgram, Value) {
        let mut child = Command::new(super::c_program(name))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("starting {name}: {error}"));
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut program = LineProgram {
            name,
            child,
            stdout,
        };
        let first = program.line();
        (program, first)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its next line, which must be JSON (else its stderr is shown).
    pub fn line(&mut self) -> Value {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .unwrap_or_else(|error| panic!("reading {}: {error}", self.name));
        serde_json::from_str(&line).unwrap_or_else(|error| {
            let _ = self.child.kill();
            let mut stderr = String::new();
            if let Some(mut pipe) = self.child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            panic!(
                "{}: not a JSON line ({error}): {line:?} {stderr}",
                self.name
            )
        })
    }

    /// Writes `line` and a newline to its stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|error| panic!("writing {line:?} to {}: {error}", self.name));
    }

    /// Lets it go on ("go"); its last line and exit status.
    pub fn finish(mut self) -> (Value, Option<i32>) {
        self.send("go");
        let done = self.line();
        let status = self
            .child
            .wait()
            .unwrap_or_else(|error| panic!("waiting for {}: {error}", self.name));
        (done, status.code())
    }
}

impl Drop for LineProgram {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

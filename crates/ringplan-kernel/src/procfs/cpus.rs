//! CPU lists, as the kernel prints them (`0-3,8,10-11`): the system's
//! possible and online CPUs (`/sys/devices/system/cpu/{possible,online}`)
//! and a thread's allowed CPUs (`Cpus_allowed_list` of
//! `/proc/PID/task/TID/status`). They tell whether an io-wq's CPU mask is
//! one the kernel set by itself and show, from outside, where io-wq workers
//! and SQ threads may run.

use std::path::Path;

use super::{read_text, ProcfsError};

/// Parses a CPU list (`0-3,8`; empty for none) into ascending CPUs; `path`
/// names the file in errors.
pub fn parse_cpu_list(text: &str, path: &Path) -> Result<Vec<u32>, ProcfsError> {
    let text = text.trim();
    let mut cpus = Vec::new();
    if text.is_empty() {
        return Ok(cpus);
    }
    let bad = || ProcfsError::malformed(path, 1, format!("bad CPU list: {text:?}"));
    for part in text.split(',') {
        let (first, last) = match part.split_once('-') {
            Some((first, last)) => (first, last),
            None => (part, part),
        };
        let first: u32 = first.trim().parse().map_err(|_| bad())?;
        let last: u32 = last.trim().parse().map_err(|_| bad())?;
        // A kernel list never runs backwards nor past NR_CPUS (8192).
        if first > last || last >= 1 << 16 {
            return Err(bad());
        }
        cpus.extend(first..=last);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// Formats ascending CPUs as the kernel does (`0-3,8`).
pub fn format_cpu_list(cpus: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut index = 0;
    while let Some(&first) = cpus.get(index) {
        let mut last = first;
        while cpus.get(index + 1) == Some(&(last + 1)) {
            last += 1;
            index += 1;
        }
        parts.push(if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        });
        index += 1;
    }
    parts.join(",")
}

fn system_list(name: &str) -> Result<Vec<u32>, ProcfsError> {
    let path = Path::new("/sys/devices/system/cpu").join(name);
    parse_cpu_list(&read_text(&path)?, &path)
}

/// The CPUs this kernel could ever bring up (`cpu_possible_mask`).
pub fn possible() -> Result<Vec<u32>, ProcfsError> {
    system_list("possible")
}

/// The CPUs online now (`cpu_online_mask`).
pub fn online() -> Result<Vec<u32>, ProcfsError> {
    system_list("online")
}

/// The CPUs thread `tid` of process `pid` may run on (`Cpus_allowed_list`).
pub fn allowed(pid: u32, tid: u32) -> Result<Vec<u32>, ProcfsError> {
    let path = std::path::PathBuf::from(format!("/proc/{pid}/task/{tid}/status"));
    let text = read_text(&path)?;
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .ok_or_else(|| ProcfsError::MissingKey {
            path: path.clone(),
            key: "Cpus_allowed_list",
        })?;
    parse_cpu_list(line, &path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_and_format() {
        let path = Path::new("test");
        assert_eq!(
            parse_cpu_list("0-3,8,10-11\n", path).ok(),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list("", path).ok(), Some(vec![]));
        assert_eq!(parse_cpu_list("1", path).ok(), Some(vec![1]));
        assert!(parse_cpu_list("3-1", path).is_err());
        assert!(parse_cpu_list("a", path).is_err());
        assert!(parse_cpu_list("0-99999", path).is_err());
        assert_eq!(format_cpu_list(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
        assert_eq!(format_cpu_list(&[]), "");
        assert_eq!(format_cpu_list(&[5]), "5");
    }

    #[test]
    fn this_machine_has_its_cpus_online_and_allowed() {
        let online = online().unwrap_or_default();
        assert!(!online.is_empty());
        let possible = possible().unwrap_or_default();
        assert!(online.iter().all(|cpu| possible.contains(cpu)));
        let pid = std::process::id();
        assert!(!allowed(pid, pid).unwrap_or_default().is_empty());
    }
}

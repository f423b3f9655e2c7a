//! How both the text and the DOT view write numbers, handles, objects and
//! eventfd flags.

use std::fmt::Write as _;

use ringplan_image::ObjectId;

use crate::model::{CreateEventfd, Handle};

/// `0-5, 7, 9, 10`: ascending numbers with runs of three or more collapsed.
pub(super) fn ranges(numbers: impl Iterator<Item = i64>) -> String {
    let mut out = String::new();
    let mut run: Option<(i64, i64)> = None;
    let flush = |out: &mut String, (start, end): (i64, i64)| {
        if !out.is_empty() {
            out.push_str(", ");
        }
        // A run of two reads better as a pair than as a range.
        match end - start {
            0 => {
                let _ = write!(out, "{start}");
            }
            1 => {
                let _ = write!(out, "{start}, {end}");
            }
            _ => {
                let _ = write!(out, "{start}-{end}");
            }
        }
    };
    for number in numbers {
        run = match run {
            Some((start, end)) if number == end + 1 => Some((start, number)),
            Some(previous) => {
                flush(&mut out, previous);
                Some((number, number))
            }
            None => Some((number, number)),
        };
    }
    if let Some(last) = run {
        flush(&mut out, last);
    }
    out
}

/// `h1, h2, h5-h9`: ascending handles with runs of three or more collapsed.
pub(super) fn handle_list(handles: &[Handle]) -> String {
    let mut out = String::new();
    let mut index = 0;
    while index < handles.len() {
        let start = handles[index].0;
        let mut end = index;
        while end + 1 < handles.len() && handles[end + 1].0 == handles[end].0 + 1 {
            end += 1;
        }
        if !out.is_empty() {
            out.push_str(", ");
        }
        if end - index >= 2 {
            let _ = write!(out, "h{start}-h{}", handles[end].0);
            index = end + 1;
        } else {
            let _ = write!(out, "h{start}");
            index += 1;
        }
    }
    out
}

pub(super) fn object_label(object: Option<ObjectId>) -> String {
    object.map_or_else(String::new, |id| format!(" {id}"))
}

pub(super) fn eventfd_flags(eventfd: &CreateEventfd) -> String {
    let mut names = Vec::new();
    if eventfd.semaphore {
        names.push("EFD_SEMAPHORE");
    }
    if eventfd.nonblock {
        names.push("EFD_NONBLOCK");
    }
    if names.is_empty() {
        "0".to_owned()
    } else {
        names.join("|")
    }
}

pub(super) fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

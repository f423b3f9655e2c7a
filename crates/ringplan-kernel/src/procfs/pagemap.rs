//! `/proc/PID/pagemap`: which physical page (page frame number) backs each
//! virtual page of a process. The kernel shows frame numbers only to a
//! reader with `CAP_SYS_ADMIN` (others read 0). Used to find where in a
//! process the memory it gave the kernel lies (`IORING_SETUP_NO_MMAP`
//! rings: the kernel keeps the pinned pages, not the address).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::fs::FileExt;

use super::{maps, Process, ProcfsError};
use crate::abi::linux::PAGE_SIZE;

/// An entry's "page present" bit.
const PRESENT: u64 = 1 << 63;
/// An entry's frame number bits (0-54).
const PFN_MASK: u64 = (1 << 55) - 1;
/// Pages read per `pread` of the pagemap.
const PAGES_PER_READ: u64 = 4096;

/// The lowest virtual address at which each of `frames` is mapped in
/// `process`, for those that are (a frame mapped nowhere is absent from
/// the answer). Reads the pagemap of every mapping in `/proc/PID/maps`
/// except the vsyscall page: 8 bytes per virtual page.
pub fn find_frames(
    process: Process,
    frames: &BTreeSet<u64>,
) -> Result<BTreeMap<u64, u64>, ProcfsError> {
    let mut found = BTreeMap::new();
    if frames.is_empty() {
        return Ok(found);
    }
    let maps_text = maps::read(process)?;
    let path = process.path("pagemap");
    let file = File::open(&path).map_err(|source| ProcfsError::io(&path, source))?;
    let mut buffer = vec![0u8; (PAGES_PER_READ * 8) as usize];
    for entry in maps_text.lines().filter_map(maps::MapsEntry::parse) {
        if entry.path == "[vsyscall]" {
            continue;
        }
        let mut page = entry.start / PAGE_SIZE;
        let end = entry.end / PAGE_SIZE;
        while page < end {
            let count = (end - page).min(PAGES_PER_READ);
            let bytes = &mut buffer[..(count * 8) as usize];
            if file.read_exact_at(bytes, page * 8).is_err() {
                // A mapping that went away meanwhile: nothing of it.
                break;
            }
            for (index, word) in bytes.chunks_exact(8).enumerate() {
                let mut raw = [0u8; 8];
                raw.copy_from_slice(word);
                let word = u64::from_ne_bytes(raw);
                if word & PRESENT == 0 {
                    continue;
                }
                let frame = word & PFN_MASK;
                if frames.contains(&frame) {
                    found
                        .entry(frame)
                        .or_insert((page + index as u64) * PAGE_SIZE);
                }
            }
            page += count;
        }
        if found.len() == frames.len() {
            break;
        }
    }
    Ok(found)
}

/// The frame number backing this process's page at `addr`, if present
/// (0 without `CAP_SYS_ADMIN`).
pub fn frame_of(process: Process, addr: u64) -> Result<Option<u64>, ProcfsError> {
    let path = process.path("pagemap");
    let file = File::open(&path).map_err(|source| ProcfsError::io(&path, source))?;
    let mut raw = [0u8; 8];
    file.read_exact_at(&mut raw, addr / PAGE_SIZE * 8)
        .map_err(|source| ProcfsError::io(&path, source))?;
    let word = u64::from_ne_bytes(raw);
    Ok((word & PRESENT != 0).then_some(word & PFN_MASK))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_of_ours_is_found_at_its_address() {
        let page = vec![7u8; (2 * PAGE_SIZE) as usize];
        // The page-aligned page inside the buffer, touched so it is present.
        let addr = (page.as_ptr() as u64).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let frame = frame_of(Process::Current, addr)
            .expect("reading our own pagemap")
            .expect("a touched page is present");
        if frame == 0 {
            eprintln!("no CAP_SYS_ADMIN: frame numbers read as 0, nothing to find");
            return;
        }
        let found = find_frames(Process::Current, &BTreeSet::from([frame])).expect("search");
        assert_eq!(found.get(&frame), Some(&addr));
        drop(page);
    }
}

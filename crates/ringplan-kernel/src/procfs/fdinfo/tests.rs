//! The fdinfo parsers on sample texts of Linux 6.18 (and 6.1 for the
//! lenient readers).

use super::*;

const SEED_ATTACHED_RING: &str = "pos:\t0
flags:\t02000002
mnt_id:\t17
ino:\t17070
SqMask:\t0x1
SqHead:\t0
SqTail:\t0
CachedSqHead:\t0
CqMask:\t0x3
CqHead:\t0
CqTail:\t0
CachedCqTail:\t0
SQEs:\t0
CQEs:\t0
SqThread:\t11206
SqThreadCpu:\t0
SqTotalTime:\t0
SqWorkTime:\t0
UserFiles:\t5
    0: /dev/null
    2: /tmp/hold-seed.out
    4: /tmp/jobs/stderr\\040(deleted)
UserBufs:\t2
    0: <none>
    1: 0x562b97df8480/120
PollList:
CqOverflowList:
NAPI:\tdisabled
";

fn parse(text: &str, kind: FdKind) -> Result<Fdinfo, ProcfsError> {
    Fdinfo::parse(Path::new("/proc/1/fdinfo/6"), text.as_bytes(), kind)
}

fn problem(text: &str, kind: FdKind) -> String {
    parse(text, kind)
        .expect_err("a malformed fdinfo")
        .to_string()
}

#[test]
fn a_ring_with_files_and_buffers_parses_row_by_row() {
    let fdinfo = parse(SEED_ATTACHED_RING, FdKind::Ring).expect("parses");
    assert_eq!(
        (fdinfo.pos, fdinfo.flags, fdinfo.ino),
        (0, 0o2000002, Some(17070))
    );
    assert_eq!(fdinfo.eventfd, None);
    let ring = fdinfo.ring.expect("ring rows");
    assert_eq!(
        (
            ring.sq_entries,
            ring.cq_entries,
            ring.sq_thread,
            ring.sq_thread_cpu
        ),
        (2, 4, Some(11206), Some(0))
    );
    assert_eq!(ring.user_files, 5);
    let files: Vec<(u32, Option<&str>)> = ring
        .files
        .iter()
        .map(|(slot, path)| (*slot, path.as_deref()))
        .collect();
    assert_eq!(
        files,
        [
            (0, Some("/dev/null")),
            (2, Some("/tmp/hold-seed.out")),
            (4, Some("/tmp/jobs/stderr (deleted)"))
        ]
    );
    assert_eq!(
        ring.buffers,
        [
            None,
            Some(UserBuf {
                addr: 0x562b97df8480,
                len: 120
            })
        ]
    );
}

#[test]
fn rows_of_other_tables_and_unknown_lines_are_ignored() {
    let text = "pos:\t0\nflags:\t02\nino:\t9\nSqMask:\t0x7\nSQEs:\t1\n    3: opcode:READ, fd:3, flags:0, off:0, \
                addr:0x0, rw_flags:0x0, buf_index:0 user_data:7\nCqMask:\t0xf\nCQEs:\t1\n    0: user_data:7, res:0, \
                flag:0\nSqThread:\t-1\nSqThreadCpu:\t-1\nSomethingNew:\t0x12\nUserFiles:\t0\nUserBufs:\t0\n\
                Personalities:\n    1\n\tUid:\t0\t0\t0\t0\n\tGroups:\t0\nPollList:\n  op=6 (POLL_ADD), task_works=0, \
                events=EPOLLIN, path=/a:b\n  op=22, task_works=0\nCqOverflowList:\n  user_data=1, res=0, flags=0\n";
    let ring = parse(text, FdKind::Ring)
        .expect("parses")
        .ring
        .expect("ring rows");
    assert_eq!(
        (
            ring.sq_entries,
            ring.cq_entries,
            ring.sq_thread,
            ring.sq_thread_cpu
        ),
        (8, 16, None, None)
    );
    assert_eq!(
        (ring.user_files, ring.files.len(), ring.buffers.len()),
        (0, 0, 0)
    );
}

#[test]
fn slots_of_six_or_more_digits_have_no_leading_space_and_still_count() {
    let text = "pos:\t0\nflags:\t02\nino:\t9\nSqMask:\t0x0\nCqMask:\t0x1\nSqThread:\t-1\nSqThreadCpu:\t-1\n\
                UserFiles:\t100002\n    7: /a\n100001: /b\nUserBufs:\t0\n";
    let ring = parse(text, FdKind::Ring)
        .expect("parses")
        .ring
        .expect("ring rows");
    assert_eq!(
        ring.files,
        [(7, Some("/a".to_owned())), (100001, Some("/b".to_owned()))]
    );
}

#[test]
fn a_non_utf8_path_is_unknown() {
    let text = b"pos:\t0\nflags:\t02\nino:\t9\nSqMask:\t0x0\nCqMask:\t0x1\nSqThread:\t-1\nSqThreadCpu:\t-1\n\
                 UserFiles:\t1\n    0: /\xff\nUserBufs:\t0\n";
    let fdinfo = Fdinfo::parse(Path::new("f"), text, FdKind::Ring).expect("parses");
    assert_eq!(fdinfo.ring.expect("ring rows").files, [(0, None)]);
}

#[test]
fn an_eventfd_reads_count_id_and_semaphore() {
    let text =
        "pos:\t0\nflags:\t02004002\nmnt_id:\t17\nino:\t26\neventfd-count:                7\n\
                eventfd-id: 2\neventfd-semaphore: 1\n";
    let fdinfo = parse(text, FdKind::Eventfd).expect("parses");
    assert_eq!(
        fdinfo.eventfd,
        Some(EventfdFdinfo {
            count: 7,
            id: Some(2),
            semaphore: true
        })
    );
    assert_eq!(fdinfo.ring, None);
    let without_semaphore = "pos:\t0\nflags:\t02\neventfd-count: 2a\neventfd-id: 1\n";
    assert!(problem(without_semaphore, FdKind::Eventfd).ends_with("no \"eventfd-semaphore\" line"));
}

#[test]
fn ring_keys_on_a_plain_file_are_not_read() {
    let text = "pos:\t42\nflags:\t0100002\nmnt_id:\t3\nino:\t5\nSqMask:\tnot-a-number\n";
    let fdinfo = parse(text, FdKind::Other).expect("parses");
    assert_eq!(
        (fdinfo.pos, fdinfo.flags, fdinfo.ring),
        (42, 0o100002, None)
    );
}

#[test]
fn a_ring_without_its_rows_is_busy_not_empty() {
    let text = "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t17070\n";
    assert!(matches!(
        parse(text, FdKind::Ring),
        Err(ProcfsError::NoRingState { .. })
    ));
}

#[test]
fn malformed_values_name_the_file_and_line() {
    let bad_mask = SEED_ATTACHED_RING.replace("SqMask:\t0x1", "SqMask:\t1");
    assert_eq!(
        problem(&bad_mask, FdKind::Ring),
        "/proc/1/fdinfo/6:5: bad SqMask \"1\""
    );
    let bad_flags = SEED_ATTACHED_RING.replace("flags:\t02000002", "flags:\t09");
    assert_eq!(
        problem(&bad_flags, FdKind::Ring),
        "/proc/1/fdinfo/6:2: bad flags \"09\""
    );
    let bad_buffer = SEED_ATTACHED_RING.replace("0x562b97df8480/120", "0x562b97df8480-120");
    assert_eq!(
        problem(&bad_buffer, FdKind::Ring),
        "/proc/1/fdinfo/6:25: bad UserBufs row \"0x562b97df8480-120\""
    );
    let bad_count = "pos:\t0\nflags:\t02\neventfd-count: 0x2a\neventfd-semaphore: 0\n";
    assert_eq!(
        problem(bad_count, FdKind::Eventfd),
        "/proc/1/fdinfo/6:3: bad eventfd-count \"0x2a\""
    );
    let twice = SEED_ATTACHED_RING.replace("SqThreadCpu:\t0", "SqThreadCpu:\t0\nSqThread:\t1");
    assert_eq!(
        problem(&twice, FdKind::Ring),
        "/proc/1/fdinfo/6:17: SqThread appears twice"
    );
    let missing_pos = SEED_ATTACHED_RING.replace("pos:\t0\n", "");
    assert_eq!(
        problem(&missing_pos, FdKind::Ring),
        "/proc/1/fdinfo/6: no \"pos\" line"
    );
    let full_mask = SEED_ATTACHED_RING.replace("CqMask:\t0x3", "CqMask:\t0xffffffff");
    assert_eq!(
        problem(&full_mask, FdKind::Ring),
        "/proc/1/fdinfo/6:9: CqMask 0xffffffff is not a size - 1"
    );
}

#[test]
fn tables_must_fit_their_sizes() {
    let too_few_buffers = SEED_ATTACHED_RING.replace("UserBufs:\t2", "UserBufs:\t3");
    assert_eq!(
        problem(&too_few_buffers, FdKind::Ring),
        "/proc/1/fdinfo/6:23: UserBufs is 3 but the rows are not slots 0..3"
    );
    let slot_past_the_end = SEED_ATTACHED_RING.replace("    4: /tmp", "    5: /tmp");
    assert!(
        problem(&slot_past_the_end, FdKind::Ring).contains("not ascending slots below 5 (slot 5)")
    );
    let repeated_slot = SEED_ATTACHED_RING.replace("    2: /tmp", "    0: /tmp");
    assert!(problem(&repeated_slot, FdKind::Ring).contains("(slot 0)"));
}

const USER_FILES_SAMPLE: &[u8] = b"pos:\t0\nflags:\t02000002\nSqThreadCpu:\t0\nUserFiles:\t5\n    0: /dev/null\n    2: /tmp/d/position-17\n    4: /tmp/d/registered\\040then\\040closed\nUserBufs:\t2\n    0: <none>\n    1: 0x561fdd894180/120\nPollList:\n";

#[test]
fn user_file_rows_are_read_and_unescaped() {
    let rows = user_file_rows(USER_FILES_SAMPLE);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[&0], b"/dev/null");
    assert_eq!(rows[&2], b"/tmp/d/position-17");
    assert_eq!(rows[&4], b"/tmp/d/registered then closed");
}

#[test]
fn user_file_rows_stop_at_the_next_table_and_survive_junk() {
    assert!(user_file_rows(b"UserFiles:\t0\nUserBufs:\t1\n    0: 0x1/2\n").is_empty());
    assert!(user_file_rows(b"").is_empty());
    let rows = user_file_rows(b"UserFiles:\t9\n    x: /a\n    7:\n    8: \\\\134\\9\n12345: /b\n");
    assert_eq!(rows.get(&7), Some(&Vec::new()));
    assert_eq!(rows.get(&8), Some(&b"\\\\\\9".to_vec()));
    assert_eq!(
        rows.get(&12345),
        Some(&b"/b".to_vec()),
        "wide indices are not indented"
    );
}

#[test]
fn six_one_rows_read_leniently() {
    // 6.1: names, a `<none>` row for each empty slot, the dummy buffer.
    let text = b"SqMask:\t0x0\nUserFiles:\t2\n    0: null\n    1: <none>\nUserBufs:\t1\n    0: 0xffffffffffffffff/1\n";
    let rows = user_file_rows(text);
    assert_eq!(rows[&0], b"null");
    assert_eq!(rows[&1], b"<none>");
    assert_eq!(field(text, "SqMask"), Some(&b"0x0"[..]));
    assert_eq!(field(text, "SqThread"), None);
}

#[test]
fn lines_tell_fields_rows_and_the_rest() {
    let text = b"SqMask:\t0x1\nUserFiles:\t1\n    0: /a\\040b\nPersonalities:\n    1\n\tUid:\t0\nPollList:\n  op=6, path=/a:b\n";
    let lines: Vec<(usize, Line<'_>)> = lines(text).collect();
    assert_eq!(
        lines,
        [
            (
                1,
                Line::Field {
                    key: b"SqMask",
                    value: b"0x1"
                }
            ),
            (
                2,
                Line::Field {
                    key: b"UserFiles",
                    value: b"1"
                }
            ),
            (
                3,
                Line::Row {
                    table: b"UserFiles",
                    slot: b"0",
                    value: b"/a\\040b"
                }
            ),
            (
                4,
                Line::Field {
                    key: b"Personalities",
                    value: b""
                }
            ),
            (5, Line::Other),
            (6, Line::Other),
            (
                7,
                Line::Field {
                    key: b"PollList",
                    value: b""
                }
            ),
            (8, Line::Other),
            (9, Line::Other),
        ]
    );
}

#[test]
fn this_process_eventfd_reads_and_parses() {
    let eventfd =
        rustix::event::eventfd(42, rustix::event::EventfdFlags::CLOEXEC).expect("an eventfd");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&eventfd);
    let text = read(Process::Current, fd).expect("own fdinfo");
    let fdinfo = Fdinfo::parse(Path::new("self"), &text, FdKind::Eventfd);
    // 6.1 has no eventfd-semaphore line; the count is there on every kernel.
    assert_eq!(field(&text, "eventfd-count"), Some(&b"2a"[..]));
    if field(&text, "eventfd-semaphore").is_some() {
        let eventfd = fdinfo.expect("parses").eventfd.expect("eventfd part");
        assert_eq!((eventfd.count, eventfd.semaphore), (42, false));
    }
    assert!(read(Process::Current, -1)
        .expect_err("no such fd")
        .is_not_found());
}

/// The common reader takes 6.18's eventfd, 6.1's (no
/// `eventfd-semaphore`) and any file's fdinfo.
#[test]
fn common_fdinfo_reads_every_kernel() {
    let path = Path::new("/proc/1/fdinfo/7");
    let text_618 = "pos:\t0\nflags:\t04002\nmnt_id:\t16\nino:\t1057\neventfd-count:               2a\neventfd-id: 3\neventfd-semaphore: 1\n";
    let info = CommonFdinfo::parse(path, text_618.as_bytes()).expect("6.18");
    assert_eq!(info.pos, 0);
    assert_eq!(info.flags, 0o4002);
    assert_eq!(info.eventfd_count, Some(42));
    assert_eq!(info.eventfd_semaphore, Some(true));
    let text_61 = "pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1057\neventfd-count:                0\n";
    let info = CommonFdinfo::parse(path, text_61.as_bytes()).expect("6.1");
    assert_eq!(info.eventfd_count, Some(0));
    assert_eq!(info.eventfd_semaphore, None);
    let file = "pos:\t4096\nflags:\t0100002\nmnt_id:\t30\nino:\t77\n";
    let info = CommonFdinfo::parse(path, file.as_bytes()).expect("a file");
    assert_eq!(
        (info.pos, info.flags, info.eventfd_count),
        (4096, 0o100002, None)
    );
    assert!(
        CommonFdinfo::parse(path, b"flags:\t02\n").is_err(),
        "pos missing"
    );
    assert!(
        CommonFdinfo::parse(path, b"pos:\tx\nflags:\t02\n").is_err(),
        "bad pos"
    );
}

#[test]
fn napi_lines_are_read_as_each_kernel_prints_them() {
    // 6.13+: the tracking mode line; 6.9-6.12: without it.
    let recent = b"CqOverflowList:\nNAPI:\tenabled\nnapi tracking:\tdynamic\nnapi_busy_poll_dt:\t50000\nnapi_prefer_busy_poll:\ttrue\n";
    assert_eq!(
        super::napi(recent),
        Some(super::NapiFdinfo {
            enabled: true,
            tracking: Some("dynamic".to_owned()),
            busy_poll_dt_ns: Some(50_000),
            prefer_busy_poll: Some(true),
        })
    );
    let older = b"NAPI:\tenabled\nnapi_busy_poll_dt:\t7000\nnapi_prefer_busy_poll:\tfalse\n";
    let napi = super::napi(older).expect("NAPI lines");
    assert_eq!(napi.tracking, None);
    assert_eq!(napi.busy_poll_dt_ns, Some(7000));
    assert_eq!(napi.prefer_busy_poll, Some(false));
    assert_eq!(
        super::napi(b"NAPI:\tdisabled\n").map(|napi| napi.enabled),
        Some(false)
    );
    assert_eq!(super::napi(b"SqMask:\t0x7\n"), None);
}

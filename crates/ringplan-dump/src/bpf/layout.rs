//! Which io_uring layout fields the program needs, and explaining a failed
//! load by the first one the running kernel's BTF lacks.

use libbpf_rs::btf::types::{Composite, Struct};
use libbpf_rs::btf::BtfType;
use libbpf_rs::Btf;

use super::error::BpfError;

/// The program found neither table layout it knows: name the fields this
/// kernel's BTF lacks, or both layouts' key fields when BTF cannot say.
pub(super) fn not_recognised() -> BpfError {
    let field = missing_field().unwrap_or_else(|| {
        "io_file_table.data (6.18 layout) or io_ring_ctx.nr_user_files (6.1 layout)".to_owned()
    });
    BpfError::LayoutNotRecognised { field }
}

/// Fields every kernel must have, as (struct, member).
pub(super) const ALWAYS: &[(&str, &str)] = &[
    ("file", "f_op"),
    ("file", "f_path"),
    ("file", "f_inode"),
    ("file", "f_flags"),
    ("file", "f_pos"),
    ("file", "private_data"),
    ("inode", "i_mode"),
    ("inode", "i_ino"),
    ("task_struct", "files"),
    ("files_struct", "fdt"),
    ("fdtable", "close_on_exec"),
    ("io_ring_ctx", "flags"),
    ("io_ring_ctx", "sq_thread_idle"),
    ("io_ring_ctx", "sq_entries"),
    ("io_ring_ctx", "cq_entries"),
    ("io_ring_ctx", "sq_data"),
    ("io_ring_ctx", "io_ev_fd"),
    ("io_ring_ctx", "file_table"),
    ("io_sq_data", "sq_cpu"),
    ("io_ev_fd", "cq_ev_fd"),
    ("io_ev_fd", "eventfd_async"),
    ("eventfd_ctx", "count"),
    ("eventfd_ctx", "flags"),
    ("io_mapped_ubuf", "ubuf"),
];
/// Table fields of the 6.18 (io_rsrc_node) layout.
pub(super) const RSRC_NODES: &[(&str, &str)] = &[
    ("io_file_table", "data"),
    ("io_ring_ctx", "buf_table"),
    ("io_rsrc_data", "nr"),
    ("io_rsrc_data", "nodes"),
    ("io_rsrc_node", "file_ptr"),
    ("io_rsrc_node", "buf"),
    ("io_mapped_ubuf", "len"),
];
/// Table fields of 6.1-era kernels.
pub(super) const FIXED_FILES: &[(&str, &str)] = &[
    ("io_file_table", "files"),
    ("io_ring_ctx", "nr_user_files"),
    ("io_ring_ctx", "nr_user_bufs"),
    ("io_ring_ctx", "user_bufs"),
    ("io_mapped_ubuf", "ubuf_end"),
];
/// 6.12's: 6.1's tables, but a buffer keeps its length, not its end.
pub(super) const FIXED_FILES_BUFFER_LEN: &[(&str, &str)] = &[
    ("io_file_table", "files"),
    ("io_ring_ctx", "nr_user_files"),
    ("io_ring_ctx", "nr_user_bufs"),
    ("io_ring_ctx", "user_bufs"),
    ("io_mapped_ubuf", "len"),
];

/// The first field the program needs that the running kernel's BTF
/// lacks, as `struct.member`; `None` when all are there (or BTF cannot
/// be read, in which case the load error says enough).
pub(super) fn missing_field() -> Option<String> {
    let btf = Btf::from_vmlinux().ok()?;
    missing_field_in(
        &btf,
        ALWAYS,
        &[
            ("6.18", RSRC_NODES),
            ("6.1", FIXED_FILES),
            ("6.12", FIXED_FILES_BUFFER_LEN),
        ],
    )
}

/// The first of `always` that `btf` lacks; else, when every one of the
/// `alternatives` (named layouts) lacks a field, those fields.
pub(super) fn missing_field_in(
    btf: &Btf<'_>,
    always: &[(&str, &str)],
    alternatives: &[(&str, &[(&str, &str)])],
) -> Option<String> {
    let missing = |fields: &[(&str, &str)]| -> Option<String> {
        fields
            .iter()
            .find(|(structure, member)| !has_member(btf, structure, member))
            .map(|(structure, member)| format!("{structure}.{member}"))
    };
    if let Some(field) = missing(always) {
        return Some(field);
    }
    let mut lacking = Vec::new();
    for (name, fields) in alternatives {
        match missing(fields) {
            Some(field) => lacking.push(format!("{field} ({name} layout)")),
            None => return None,
        }
    }
    (!lacking.is_empty()).then(|| lacking.join(" or "))
}

pub(super) fn has_member(btf: &Btf<'_>, structure: &str, member: &str) -> bool {
    btf.type_by_kind::<Struct<'_>>()
        .filter(|candidate| candidate.name().is_some_and(|name| name == structure))
        .any(|candidate| composite_has_member(btf, &Composite::from(candidate), member, 0))
}

/// Looks through anonymous struct and union members too, as CO-RE does.
fn composite_has_member(
    btf: &Btf<'_>,
    composite: &Composite<'_>,
    member: &str,
    depth: u32,
) -> bool {
    if depth > 8 {
        return false;
    }
    composite.iter().any(|candidate| match candidate.name {
        Some(name) if !name.is_empty() => name == member,
        _ => btf
            .type_by_id::<BtfType<'_>>(candidate.ty)
            .map(|ty| ty.skip_mods_and_typedefs())
            .and_then(|ty| Composite::try_from(ty).ok())
            .is_some_and(|inner| composite_has_member(btf, &inner, member, depth + 1)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The load-failure diagnosis must find every field on a kernel where
    /// the program loads, or it would blame a field for an unrelated error.
    #[test]
    fn layout_diagnosis_finds_every_field_of_this_kernel() {
        let Ok(btf) = libbpf_rs::Btf::from_vmlinux() else {
            eprintln!("no vmlinux BTF here; skipping");
            return;
        };
        assert_eq!(missing_field(), None);
        // Members inside anonymous structs and unions count.
        assert!(has_member(&btf, "io_ring_ctx", "flags"));
        assert!(has_member(&btf, "file", "f_path"));
        // A layout this kernel lacks is named, and so is a missing field.
        let neither: &[(&str, &[(&str, &str)])] = &[
            ("imaginary", &[("io_ring_ctx", "no_such_member")]),
            ("other", &[("no_such_struct", "x")]),
        ];
        assert_eq!(
            missing_field_in(&btf, ALWAYS, neither).as_deref(),
            Some(
                "io_ring_ctx.no_such_member (imaginary layout) or no_such_struct.x (other layout)"
            )
        );
        assert_eq!(
            missing_field_in(
                &btf,
                &[("io_sq_data", "sq_cpu"), ("io_sq_data", "gone")],
                &[]
            )
            .as_deref(),
            Some("io_sq_data.gone")
        );
    }
}

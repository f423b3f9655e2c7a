//! What ringplan-criu refuses before it runs anything: a `criu` it cannot
//! find, cannot ask its version or was not tested with (a stand-in script
//! prints the version line), and a checkpoint directory without a
//! manifest or without an image the manifest lists.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ringplan_criu::manifest::{image_name, ProcessRings, FORMAT, TREE_IMAGE, VERSION};
use ringplan_criu::{Criu, CriuError, Manifest};

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A script that prints `output` for `--version`.
fn stand_in(dir: &Path, output: &str) -> PathBuf {
    let path = dir.join("criu");
    std::fs::write(&path, format!("#!/bin/sh\nprintf '{output}'\n")).expect("script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[test]
fn criu_untested_without_a_version_or_missing_is_refused() {
    let dir = scratch("criu-untested");
    let criu = stand_in(&dir, "Version: 3.17.1\\n");
    let error = Criu::find(Some(&criu)).expect_err("3.17.1 is not tested");
    assert!(matches!(error, CriuError::UntestedVersion { .. }));
    assert_eq!(
        error.to_string(),
        format!(
            "{} is CRIU 3.17.1, which ringplan was not tested with (tested: 4.1.1)",
            criu.display()
        )
    );
    let tested = stand_in(&dir, "Version: 4.1.1\\nGitID: v4.1.1\\n");
    assert_eq!(
        Criu::find(Some(&tested)).expect("tested").version(),
        "4.1.1"
    );

    // Without a version line, or missing. (One test: a script written
    // while another test's thread forks can be busy, ETXTBSY.)
    let dir = scratch("criu-no-version");
    let criu = stand_in(&dir, "hello\\n");
    assert!(matches!(
        Criu::find(Some(&criu)),
        Err(CriuError::VersionUnknown { .. })
    ));
    let missing = dir.join("no-such-criu");
    assert!(matches!(
        Criu::find(Some(&missing)),
        Err(CriuError::Spawn { .. })
    ));
}

#[test]
fn a_directory_without_a_manifest_or_a_listed_image_is_refused() {
    let dir = scratch("criu-manifest");
    let error = Manifest::read(&dir).expect_err("no manifest");
    assert!(
        error
            .to_string()
            .contains("holds no ringplan checkpoint (ringplan.json"),
        "{error}"
    );
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        version: VERSION,
        root_pid: 41,
        criu_version: "4.1.1".to_owned(),
        processes: vec![ProcessRings {
            pid: 42,
            image: image_name(42),
        }],
        thread_ids: vec![41, 42],
        tree_image: None,
    };
    manifest.write(&dir).expect("writing the manifest");
    let error = Manifest::read(&dir).expect_err("its image is missing");
    assert_eq!(
        error.to_string(),
        format!(
            "{}: process 42 had rings, but its ringplan image ringplan-42.img is not there",
            dir.display()
        )
    );
    std::fs::write(dir.join(image_name(42)), b"").expect("an image file");
    assert_eq!(Manifest::read(&dir).expect("complete"), manifest);

    // A tree whose processes shared rings: one tree image, which must be
    // there too.
    let tree = Manifest {
        processes: vec![ProcessRings {
            pid: 42,
            image: TREE_IMAGE.to_owned(),
        }],
        tree_image: Some(TREE_IMAGE.to_owned()),
        ..manifest
    };
    tree.write(&dir).expect("writing the manifest");
    let error = Manifest::read(&dir).expect_err("the tree image is missing");
    assert_eq!(
        error.to_string(),
        format!(
            "{}: the tree's processes shared rings, but its ringplan tree image ringplan-tree.img is not there",
            dir.display()
        )
    );
    std::fs::write(dir.join(TREE_IMAGE), b"").expect("an image file");
    assert_eq!(Manifest::read(&dir).expect("complete"), tree);
}

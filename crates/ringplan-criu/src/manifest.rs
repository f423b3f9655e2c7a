//! `ringplan.json` in a checkpoint's directory: which processes of the
//! tree had rings and which ringplan image holds each one's. `plan restore`
//! refuses a directory without it, or one that lacks an image it lists,
//! before it runs criu.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::CriuError;

/// The manifest's file name in the images directory.
pub const MANIFEST: &str = "ringplan.json";
/// Its `format`.
pub const FORMAT: &str = "ringplan-checkpoint";
/// Its `version`.
pub const VERSION: u32 = 1;

/// What a checkpoint directory holds besides CRIU's images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    /// The root of the checkpointed tree.
    pub root_pid: u32,
    /// The CRIU version that dumped it.
    pub criu_version: String,
    /// Every process of the tree that had rings, with its image.
    pub processes: Vec<ProcessRings>,
    /// Every thread id of the tree at the checkpoint: criu restores them
    /// with their ids, so `plan restore` first checks they are free.
    #[serde(default)]
    pub thread_ids: Vec<u32>,
    /// Set when the tree's processes shared rings: then the rings of all of
    /// them are in this one tree image (`plan dump --tree --detach`), which
    /// every entry of `processes` names, and are put back together.
    /// Left out otherwise (each process has an image of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree_image: Option<String>,
}

/// One process's rings: its ringplan image, relative to the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRings {
    pub pid: u32,
    pub image: String,
}

/// The file name of the one image of a tree whose processes share rings.
pub const TREE_IMAGE: &str = "ringplan-tree.img";

/// The image file name for process `pid`.
pub fn image_name(pid: u32) -> String {
    format!("ringplan-{pid}.img")
}

impl Manifest {
    /// Writes the manifest into `dir` and syncs it (and the directory).
    pub fn write(&self, dir: &Path) -> Result<(), CriuError> {
        let path = dir.join(MANIFEST);
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&path)?;
            serde_json::to_writer_pretty(&mut file, self)?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(|source| CriuError::Write {
            path: path.clone(),
            source,
        })
    }

    /// Reads and checks the manifest of `dir`: every image it names must
    /// be there.
    pub fn read(dir: &Path) -> Result<Manifest, CriuError> {
        let bad = |what: String| CriuError::Directory {
            dir: dir.to_path_buf(),
            what,
        };
        let path = dir.join(MANIFEST);
        let text = std::fs::read(&path).map_err(|error| {
            bad(format!(
                "holds no ringplan checkpoint ({MANIFEST}: {error}); `plan checkpoint` writes one"
            ))
        })?;
        let manifest: Manifest = serde_json::from_slice(&text)
            .map_err(|error| bad(format!("{MANIFEST} is not a ringplan manifest: {error}")))?;
        if manifest.format != FORMAT || manifest.version != VERSION {
            return Err(bad(format!(
                "{MANIFEST} is {} version {}, not {FORMAT} version {VERSION}",
                manifest.format, manifest.version
            )));
        }
        if let Some(tree_image) = &manifest.tree_image {
            if tree_image.contains('/') || !dir.join(tree_image).is_file() {
                return Err(bad(format!(
                    "the tree's processes shared rings, but its ringplan tree image {tree_image} is not there"
                )));
            }
        }
        for process in &manifest.processes {
            let image = manifest.image_path(dir, process);
            if process.image.contains('/') || !image.is_file() {
                return Err(bad(format!(
                    "process {} had rings, but its ringplan image {} is not there",
                    process.pid, process.image
                )));
            }
        }
        Ok(manifest)
    }

    /// Where `process`'s image is.
    pub fn image_path(&self, dir: &Path, process: &ProcessRings) -> PathBuf {
        dir.join(&process.image)
    }
}

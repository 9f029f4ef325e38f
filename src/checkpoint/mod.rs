//! The checkpoint store: each step's output tree, committed atomically under
//! its cache key, with a per-file manifest that is verified on every load
//! (trusting [stamps](crate::stamps) for unchanged files when asked to).

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{file_sha256, hex_sha256};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::manifest::{self, Entry};
use crate::record::KeyInputs;
use crate::stamps::{self, Stamp, Stamps};

/// What a checkpoint says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub key: String,
    pub step: String,
    pub name: String,
    pub version: String,
    pub stage: String,
    pub runner: String,
    pub inputs: KeyInputs,
    /// sha256 of manifest.json, so a damaged manifest is noticed too.
    pub manifest_sha256: String,
    /// Files kept beside the tree (a VM step's disk), by name, with their sha256.
    #[serde(default)]
    pub extras: std::collections::BTreeMap<String, String>,
    /// How long the step took and where it ran; absent in checkpoints made
    /// before this was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built: Option<Built>,
}

/// How a checkpoint's step was built: its runner (`host (bwrap)`, `vm
/// (qemu)`) and the milliseconds from its start to its output, before the
/// commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Built {
    pub runner: String,
    pub millis: u64,
}

#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub meta: Meta,
    pub manifest: Vec<Entry>,
    /// The checkpoint's directory: `tree/` and any extras.
    pub dir: PathBuf,
    /// The step's output files.
    pub tree: PathBuf,
}

/// What a load may take on trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// A file's stamp, unchanged since the commit, for its content.
    Stamps,
    /// Nothing: every file is hashed (`run --verify`, audits, pushes).
    Nothing,
}

/// Why a checkpoint on disk cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrupt(pub String);

pub struct Store {
    root: PathBuf,
    tmp: PathBuf,
}

impl Store {
    /// `root` holds the checkpoints; `tmp` must be on the same filesystem.
    pub fn new(root: PathBuf, tmp: PathBuf) -> Self {
        Store { root, tmp }
    }

    pub fn dir(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// A cheap existence test, for plans; [`Store::load`] verifies.
    pub fn exists(&self, key: &str) -> bool {
        self.dir(key).join("meta.json").is_file()
    }

    /// The output (manifest sha256) of the checkpoint under `key`, as its
    /// meta.json says, if there is one: cheap, for plans; [`Store::load`]
    /// verifies.
    pub fn output(&self, key: &str) -> Option<String> {
        self.meta(key).map(|meta| meta.manifest_sha256)
    }

    /// The meta.json of the checkpoint under `key`, unverified, if there is one.
    pub fn meta(&self, key: &str) -> Option<Meta> {
        let bytes = fs::read(self.dir(key).join("meta.json")).ok()?;
        let meta: Meta = serde_json::from_slice(&bytes).ok()?;
        (meta.key == key).then_some(meta)
    }

    /// Moves `out` (and each file in `extras`, if given) into the store under
    /// `meta.key`. A crash at any point leaves either no checkpoint or a
    /// complete one: everything is assembled in a staging directory, synced,
    /// then renamed into place.
    pub fn commit(&self, out: &Path, extras: Option<&Path>, mut meta: Meta) -> Result<Checkpoint> {
        let (manifest, tree_stamps) =
            manifest::of_tree_stamped(out, &|_, _| None).map_err(|e| Error::Output {
                step: meta.step.clone(),
                problem: e.to_string(),
            })?;
        let manifest_json = manifest_bytes(&manifest);
        meta.manifest_sha256 = hex_sha256(&manifest_json);

        fs::create_dir_all(&self.tmp).io_context(|| format!("creating {}", self.tmp.display()))?;
        let staging = self
            .tmp
            .join(format!("{}.{}.partial", meta.key, std::process::id()));
        fsutil::fresh_dir(&staging)?;
        fs::rename(out, staging.join("tree"))
            .io_context(|| format!("moving {} into the store", out.display()))?;
        let mut extra_stamps = std::collections::BTreeMap::new();
        if let Some(extras) = extras.filter(|e| e.is_dir()) {
            for entry in
                fs::read_dir(extras).io_context(|| format!("reading {}", extras.display()))?
            {
                let path = entry
                    .io_context(|| format!("reading {}", extras.display()))?
                    .path();
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_string();
                if matches!(name.as_str(), "tree" | "manifest.json" | "meta.json")
                    || !path.is_file()
                {
                    return Err(Error::Output {
                        step: meta.step.clone(),
                        problem: format!("{}: not a file a checkpoint can keep", path.display()),
                    });
                }
                let (sha256, _) =
                    file_sha256(&path).io_context(|| format!("reading {}", path.display()))?;
                fs::rename(&path, staging.join(&name))
                    .io_context(|| format!("moving {} into the store", path.display()))?;
                if let Some(stamp) = Stamp::of_path(&staging.join(&name)) {
                    extra_stamps.insert(name.clone(), stamp);
                }
                meta.extras.insert(name, sha256);
            }
        }
        // Plain writes: the staging directory is not yet visible, and the
        // syncfs below makes these two durable with the tree.
        for (name, bytes) in [
            ("manifest.json", manifest_json),
            (
                "meta.json",
                serde_json::to_vec_pretty(&meta).expect("meta serializes"),
            ),
        ] {
            let path = staging.join(name);
            fs::write(&path, bytes).io_context(|| format!("writing {}", path.display()))?;
        }
        // meta.json was written after every file was hashed: its time is
        // the tick from which a write could go unnoticed by a stamp.
        let hashed = Stamp::of_path(&staging.join("meta.json")).map_or((i64::MIN, 0), |s| s.mtime);
        let stamps = Stamps {
            tree: tree_stamps,
            extras: extra_stamps,
        }
        .settled(hashed);
        let path = staging.join(stamps::FILE);
        fs::write(&path, stamps.to_bytes()).io_context(|| format!("writing {}", path.display()))?;
        // One syncfs covers every file of the tree, far cheaper than an fsync each.
        let dir =
            fs::File::open(&staging).io_context(|| format!("opening {}", staging.display()))?;
        nix::unistd::syncfs(&dir).map_err(|e| Error::Io {
            context: format!("syncing {}", staging.display()),
            source: e.into(),
        })?;

        let final_dir = self.dir(&meta.key);
        fs::create_dir_all(&self.root)
            .io_context(|| format!("creating {}", self.root.display()))?;
        if final_dir.exists() {
            self.discard(&meta.key)?;
        }
        fs::rename(&staging, &final_dir)
            .io_context(|| format!("committing {}", final_dir.display()))?;
        fsutil::sync_dir(&self.root)?;
        Ok(Checkpoint {
            tree: final_dir.join("tree"),
            dir: final_dir,
            meta,
            manifest,
        })
    }

    /// Loads and verifies a checkpoint: its meta, its manifest's checksum, and
    /// every file of its tree (and each extra) against the manifest, hashing
    /// every one.
    pub fn load(&self, key: &str) -> Result<Option<Checkpoint>, Corrupt> {
        self.load_with(key, Stamps::default())
    }

    /// [`Store::load`], but with [`Trust::Stamps`] a file whose stamp is as
    /// it was when the checkpoint was committed is taken to hold what the
    /// manifest says without being read: a run's no-op and resume paths.
    pub fn load_trusting(&self, key: &str, trust: Trust) -> Result<Option<Checkpoint>, Corrupt> {
        match trust {
            Trust::Stamps => self.load_with(key, Stamps::read(&self.dir(key))),
            Trust::Nothing => self.load(key),
        }
    }

    fn load_with(&self, key: &str, stamps: Stamps) -> Result<Option<Checkpoint>, Corrupt> {
        let dir = self.dir(key);
        if !dir.exists() {
            return Ok(None);
        }
        let read =
            |name: &str| fs::read(dir.join(name)).map_err(|e| Corrupt(format!("{name}: {e}")));
        let meta: Meta = serde_json::from_slice(&read("meta.json")?)
            .map_err(|e| Corrupt(format!("meta.json: {e}")))?;
        if meta.key != key {
            return Err(Corrupt(format!("meta.json names key {}", meta.key)));
        }
        let manifest_json = read("manifest.json")?;
        if hex_sha256(&manifest_json) != meta.manifest_sha256 {
            return Err(Corrupt("manifest.json does not match its checksum".into()));
        }
        let manifest: Vec<Entry> = serde_json::from_slice(&manifest_json)
            .map_err(|e| Corrupt(format!("manifest.json: {e}")))?;
        let tree = dir.join("tree");
        let expected: std::collections::HashMap<&str, &str> = manifest
            .iter()
            .filter_map(|e| Some((e.path.as_str(), e.sha256.as_deref()?)))
            .collect();
        let known = |path: &str, stamp: &Stamp| {
            (stamps.tree.get(path) == Some(stamp))
                .then(|| expected.get(path).map(|s| s.to_string()))?
        };
        let (actual, _) =
            manifest::of_tree_stamped(&tree, &known).map_err(|e| Corrupt(e.to_string()))?;
        if let Some(diff) = manifest::first_difference(&manifest, &actual) {
            return Err(Corrupt(diff));
        }
        for (name, sha256) in &meta.extras {
            let path = dir.join(name);
            if stamps
                .extras
                .get(name)
                .is_some_and(|s| Stamp::of_path(&path) == Some(*s))
            {
                continue;
            }
            match file_sha256(&path) {
                Ok((actual, _)) if &actual == sha256 => {}
                Ok(_) => return Err(Corrupt(format!("{name} differs"))),
                Err(e) => return Err(Corrupt(format!("{name}: {e}"))),
            }
        }
        Ok(Some(Checkpoint {
            meta,
            manifest,
            tree,
            dir,
        }))
    }

    /// Removes a checkpoint: renamed out of the store first, so that a crash
    /// midway never leaves a half-deleted checkpoint under a valid name.
    pub fn discard(&self, key: &str) -> Result<()> {
        let dir = self.dir(key);
        if !dir.exists() {
            return Ok(());
        }
        fs::create_dir_all(&self.tmp).io_context(|| format!("creating {}", self.tmp.display()))?;
        let doomed = self
            .tmp
            .join(format!("{key}.{}.discarded", std::process::id()));
        fsutil::remove_tree(&doomed)?;
        fs::rename(&dir, &doomed).io_context(|| format!("removing {}", dir.display()))?;
        fsutil::remove_tree(&doomed)
    }
}

/// manifest.json as a checkpoint keeps it.
fn manifest_bytes(manifest: &[Entry]) -> Vec<u8> {
    serde_json::to_vec_pretty(manifest).expect("manifest serializes")
}

/// What a tree would be as a checkpoint's output: its manifest's sha256, the
/// same as [`Meta::manifest_sha256`] once committed.
pub fn output_of_tree(tree: &Path) -> std::result::Result<String, manifest::ManifestError> {
    Ok(hex_sha256(&manifest_bytes(&manifest::of_tree(tree)?)))
}

#[cfg(test)]
mod tests;

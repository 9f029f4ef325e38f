//! The checkpoint store: each step's output tree, committed atomically under
//! its cache key, with a per-file manifest that is verified on every load.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{file_sha256, hex_sha256};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::manifest::{self, Entry};
use crate::record::KeyInputs;

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
        let manifest = manifest::of_tree(out).map_err(|e| Error::Output {
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
    /// every file of its tree against the manifest.
    pub fn load(&self, key: &str) -> Result<Option<Checkpoint>, Corrupt> {
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
        let actual = manifest::of_tree(&tree).map_err(|e| Corrupt(e.to_string()))?;
        if let Some(diff) = manifest::first_difference(&manifest, &actual) {
            return Err(Corrupt(diff));
        }
        for (name, sha256) in &meta.extras {
            match file_sha256(&dir.join(name)) {
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
mod tests {
    use super::*;

    fn meta(key: &str) -> Meta {
        let inputs = KeyInputs {
            definition: "d".into(),
            sources: "s".into(),
            patches: "p".into(),
            files: "f".into(),
            runner: "r".into(),
            earlier: String::new(),
        };
        Meta {
            key: key.into(),
            step: "x".into(),
            name: "x".into(),
            version: "1".into(),
            stage: "host".into(),
            runner: "host".into(),
            inputs,
            manifest_sha256: String::new(),
            extras: Default::default(),
            built: None,
        }
    }

    #[test]
    fn commit_then_load_and_detect_damage() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("checkpoints"), dir.path().join("tmp"));
        let out = dir.path().join("out");
        fs::create_dir_all(out.join("usr/bin")).unwrap();
        fs::write(out.join("usr/bin/tool"), b"binary").unwrap();

        let committed = store.commit(&out, None, meta("k1")).unwrap();
        assert!(!out.exists(), "the output is moved, not copied");
        assert!(store.exists("k1"));
        let loaded = store.load("k1").unwrap().unwrap();
        assert_eq!(loaded.manifest, committed.manifest);
        assert_eq!(loaded.manifest.len(), 3);

        fs::write(loaded.tree.join("usr/bin/tool"), b"binarx").unwrap();
        assert_eq!(
            store.load("k1").unwrap_err(),
            Corrupt("usr/bin/tool differs".into())
        );

        store.discard("k1").unwrap();
        assert!(store.load("k1").unwrap().is_none());
    }

    #[test]
    fn a_meta_without_build_time_still_loads_and_one_with_it_keeps_it() {
        let mut old = serde_json::to_value(meta("k")).unwrap();
        assert!(old.get("built").is_none(), "absent when unknown: {old}");
        old.as_object_mut().unwrap().remove("built");
        let read: Meta = serde_json::from_value(old).unwrap();
        assert_eq!(read.built, None);
        let mut timed = meta("k");
        timed.built = Some(Built {
            runner: "vm (qemu)".into(),
            millis: 34_700,
        });
        let back: Meta = serde_json::from_slice(&serde_json::to_vec(&timed).unwrap()).unwrap();
        assert_eq!(back, timed);
    }

    #[test]
    fn a_truncated_manifest_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("c"), dir.path().join("t"));
        let out = dir.path().join("out");
        fs::create_dir_all(&out).unwrap();
        fs::write(out.join("f"), b"x").unwrap();
        store.commit(&out, None, meta("k")).unwrap();
        let manifest = store.dir("k").join("manifest.json");
        let bytes = fs::read(&manifest).unwrap();
        fs::write(&manifest, &bytes[..bytes.len() / 2]).unwrap();
        assert!(store.load("k").unwrap_err().0.contains("checksum"));
    }

    #[test]
    fn an_output_whose_links_lead_out_is_committed_and_discarded_without_following_them() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("c"), dir.path().join("t"));
        let outside = dir.path().join("outside");
        fs::create_dir_all(outside.join("sub")).unwrap();
        fs::write(outside.join("sub/keep"), "keep").unwrap();
        let out = dir.path().join("out");
        fs::create_dir_all(&out).unwrap();
        symlink(&outside, out.join("abs")).unwrap();
        symlink(".", out.join("a")).unwrap();
        symlink("a/../outside/sub", out.join("up")).unwrap();
        let committed = store.commit(&out, None, meta("k")).unwrap();
        assert_eq!(
            committed.manifest.len(),
            3,
            "three links, nothing behind them"
        );
        assert!(store.load("k").unwrap().is_some());
        store.discard("k").unwrap();
        assert_eq!(fs::read(outside.join("sub/keep")).unwrap(), b"keep");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
    }
}

//! Stamps: what each file of a checkpoint looked like to the kernel (inode,
//! size, modification time) when its content was last hashed. A load trusts
//! the manifest's sha256 for a file whose stamp is unchanged, since every
//! write to a file moves its modification time, and re-hashes the rest; so
//! a no-op rerun of a long chain reads its metadata, not its gigabytes.
//!
//! A stamp is kept only for a file last modified before the stamps were
//! taken, by the clock the kernel stamps files with: a write in the same
//! clock tick as the hash could leave the time as it was (git calls such an
//! entry "racily clean"), so such a file is hashed on every load instead.
//! Stamps are local facts (inode numbers), never part of a key, a manifest
//! or a shared cache's objects; a checkpoint without them (an older one, or
//! a copied state, whose inodes differ) is simply hashed in full.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::sys::stat::FileStat;
use serde::{Deserialize, Serialize};

/// The file name stamps are kept under, in a checkpoint's directory.
pub const FILE: &str = "stamps.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub ino: u64,
    pub size: u64,
    /// Seconds and nanoseconds since the epoch.
    pub mtime: (i64, i64),
}

impl Stamp {
    pub fn of_stat(stat: &FileStat) -> Stamp {
        Stamp {
            ino: stat.st_ino,
            size: stat.st_size as u64,
            mtime: (stat.st_mtime, stat.st_mtime_nsec),
        }
    }

    pub fn of_path(path: &Path) -> Option<Stamp> {
        let meta = fs::symlink_metadata(path).ok()?;
        meta.is_file().then(|| Stamp {
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        })
    }
}

/// The stamps of a checkpoint's tree (by path in the tree) and of its
/// extras (by name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamps {
    pub tree: BTreeMap<String, Stamp>,
    pub extras: BTreeMap<String, Stamp>,
}

impl Stamps {
    /// Drops every stamp whose file was modified at or after `now`, a time
    /// the kernel gave a file written after the hashing ended: such a file
    /// may still be written within the same tick unnoticed.
    pub fn settled(mut self, now: (i64, i64)) -> Stamps {
        self.tree.retain(|_, stamp| stamp.mtime < now);
        self.extras.retain(|_, stamp| stamp.mtime < now);
        self
    }

    /// The stamps kept in `dir`; none if there are none or they do not
    /// parse (then everything is hashed, which is only slower).
    pub fn read(dir: &Path) -> Stamps {
        fs::read(dir.join(FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("stamps serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(ino: u64, mtime: (i64, i64)) -> Stamp {
        Stamp {
            ino,
            size: 1,
            mtime,
        }
    }

    #[test]
    fn a_file_modified_in_the_tick_of_the_hash_or_later_keeps_no_stamp() {
        let mut stamps = Stamps::default();
        stamps.tree.insert("old".into(), stamp(1, (10, 999)));
        stamps.tree.insert("same-tick".into(), stamp(2, (11, 0)));
        stamps.extras.insert("later".into(), stamp(3, (12, 0)));
        let settled = stamps.settled((11, 0));
        assert_eq!(settled.tree.keys().collect::<Vec<_>>(), ["old"]);
        assert!(settled.extras.is_empty());
    }

    #[test]
    fn unreadable_stamps_are_no_stamps() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Stamps::read(dir.path()), Stamps::default());
        fs::write(dir.path().join(FILE), b"{\"tree\": [").unwrap();
        assert_eq!(Stamps::read(dir.path()), Stamps::default());
    }
}

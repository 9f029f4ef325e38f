//! A directory outside the project, state and mirror that hostile input aims
//! at, and a record of everything around it, to show nothing was touched.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// `root/canary` holds a few files, a subdirectory and a link; `watch` lists
/// the entries of `root` itself, so that anything created or removed beside
/// the project, state and mirror is seen.
pub struct Canary {
    root: PathBuf,
    dir: PathBuf,
    before: BTreeMap<String, String>,
    top: Vec<String>,
}

impl Canary {
    /// Plants the canary in `root` (the fixture's temporary directory) and
    /// records it.
    pub fn plant(root: &Path) -> Canary {
        let dir = root.join("canary");
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("passwd"), "root:x:0:0:canary\n").unwrap();
        fs::write(dir.join("sub/keep"), "keep me\n").unwrap();
        std::os::unix::fs::symlink("passwd", dir.join("link")).unwrap();
        let mut canary = Canary {
            root: root.to_path_buf(),
            dir,
            before: BTreeMap::new(),
            top: Vec::new(),
        };
        canary.before = canary.record();
        canary
    }

    /// The canary directory: point attacks here.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records the entries of the root, once the project, state and mirror
    /// exist, so that `assert_untouched` can tell what a run added.
    pub fn watch_root(&mut self) {
        self.top = top_entries(&self.root);
    }

    /// Panics, naming the difference, if any file of the canary changed in
    /// content, type, mode or mtime, or if an entry appeared or vanished in
    /// the canary or beside the watched directories.
    pub fn assert_untouched(&self, case: &str) {
        let now = self.record();
        assert_eq!(self.before, now, "{case}: the canary directory changed");
        if !self.top.is_empty() {
            assert_eq!(
                self.top,
                top_entries(&self.root),
                "{case}: something was created or removed beside the project, state and mirror"
            );
        }
    }

    fn record(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut stack = vec![self.dir.clone()];
        let meta = fs::symlink_metadata(&self.dir).unwrap();
        out.insert(".".into(), describe(&self.dir, &meta));
        while let Some(current) = stack.pop() {
            for entry in fs::read_dir(&current).unwrap() {
                let path = entry.unwrap().path();
                let rel = path.strip_prefix(&self.dir).unwrap().display().to_string();
                let meta = fs::symlink_metadata(&path).unwrap();
                if meta.is_dir() {
                    stack.push(path.clone());
                }
                out.insert(rel, describe(&path, &meta));
            }
        }
        out
    }
}

fn describe(path: &Path, meta: &fs::Metadata) -> String {
    let kind = if meta.is_dir() {
        "dir".to_string()
    } else if meta.file_type().is_symlink() {
        format!("link {}", fs::read_link(path).unwrap().display())
    } else {
        format!("file {}", String::from_utf8_lossy(&fs::read(path).unwrap()))
    };
    format!(
        "{kind} mode {:o} mtime {}.{:09}",
        meta.mode(),
        meta.mtime(),
        meta.mtime_nsec()
    )
}

fn top_entries(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

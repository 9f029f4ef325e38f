//! Step files: one YAML file per package build under `steps/`. What a step
//! is lives here; reading and checking its file, in [`load`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::lock::Lock;

mod load;
mod source;

/// Where a step file explains itself, for the book and `book --check`: the
/// line of its description, and each patch's stated reason with the line of
/// its entry.
#[derive(Debug, Clone, Default)]
pub struct Prose {
    pub description_line: Option<u64>,
    pub patch_reasons: Vec<(Option<String>, Option<u64>)>,
}

/// A kexec step builds nothing: in the guest of a VM stage it loads another
/// kernel and jumps to it, and the stages after it run on that kernel
/// (live-bootstrap's `jump:`). Files are `STEP:PATH`, in an earlier step's
/// output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kexec {
    pub kernel: String,
    #[serde(default)]
    pub initrd: Option<String>,
    /// The new kernel's command line, after stagebuild's console settings.
    #[serde(default)]
    pub append: String,
}

impl Kexec {
    /// The files the hop needs, as `STEP:PATH` references.
    pub fn files(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.kernel).chain(self.initrd.iter())
    }
}

/// Variables stagebuild sets for every step; a step's `env` may not override them.
pub const RESERVED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "TZ",
    "LC_ALL",
    "SOURCE_DATE_EPOCH",
    "SYSROOT",
    "OUT",
    "JOBS",
    "PASS",
];

/// What a step does: everything in the step file that can change its output.
/// The description is prose for the book and is left out, so that editing it
/// does not rebuild the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Definition {
    pub name: String,
    pub version: String,
    pub sources: Vec<String>,
    /// Sources whose payload is an archive inside them: the member of each
    /// that is unpacked instead (left out of the key when there are none, so
    /// that steps without them keep their keys).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub unpack: BTreeMap<String, String>,
    pub patches: Vec<String>,
    pub files: Vec<String>,
    pub workdir: Option<String>,
    pub env: BTreeMap<String, String>,
    pub configure: Option<String>,
    pub build: Option<String>,
    pub install: Option<String>,
    pub timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kexec: Option<Kexec>,
    /// The earlier steps of its stage it sees, by id; empty: all of them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
/// A file of the project that a step uses: a patch under `patches/<step>/`
/// or an extra file under `files/<step>/`.
pub struct ProjectFile {
    pub file: String,
    pub path: PathBuf,
    pub sha256: String,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub path: PathBuf,
    pub description: String,
    pub prose: Prose,
    pub definition: Definition,
    pub patches: Vec<ProjectFile>,
    /// Copied into the top of the build directory before the phases run.
    pub files: Vec<ProjectFile>,
    /// Where each of `definition.needs` is written, for errors the chain finds.
    pub needs_at: Vec<Option<crate::error::Spot>>,
}

impl Step {
    pub fn name(&self) -> &str {
        &self.definition.name
    }

    /// Loads `steps/<name>.yaml`, checks its sources against the lock and reads
    /// its patches from `patches/<name>/` and its files from `files/<name>/`.
    pub fn load(path: &Path, project: &Path, lock: &Lock) -> Result<Self> {
        load::load(path, project, lock)
    }

    /// The shell script that runs the step's phases in order.
    pub fn script(&self) -> String {
        let mut script = String::from("set -e\n");
        for (phase, body) in [
            ("configure", &self.definition.configure),
            ("build", &self.definition.build),
            ("install", &self.definition.install),
        ] {
            if let Some(body) = body {
                script.push_str(&format!(
                    "echo '=== stagebuild: {phase} ==='\n(\nset -ex\n{body}\n)\n"
                ));
            }
        }
        script
    }
}

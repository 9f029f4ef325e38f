//! What a run records about a step, below the plan, the state directory and
//! the checkpoint store, which all read it: what its key is made of, what it
//! produced, and how a guest step was run.

use serde::{Deserialize, Serialize};

use crate::digest::canonical_sha256;

/// What a step's cache key is made of, each part a sha256, so that a changed
/// key can be explained part by part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInputs {
    /// The step's normalised definition and its pass.
    pub definition: String,
    /// Names and checksums of its sources.
    pub sources: String,
    /// Names and contents of its patches.
    pub patches: String,
    /// Names and contents of its extra files.
    pub files: String,
    /// The runner kind and settings, the stage and SOURCE_DATE_EPOCH.
    pub runner: String,
    /// What the earlier steps it sees produced: for a step without `needs:`,
    /// every step before it, chained ([`crate::plan::Keys`]); with `needs:`, those steps.
    /// Empty in records of stagebuild before early cut-off, whose keys
    /// chained on the key of the step before (`parent`, no longer read).
    #[serde(default)]
    pub earlier: String,
}

/// The version of the key derivation; 2 since keys chain on outputs.
const KEY_VERSION: u32 = 2;

impl KeyInputs {
    pub fn key(&self) -> String {
        canonical_sha256(&("stagebuild-step-key", KEY_VERSION, self))
    }
}

/// What the state directory last recorded for a step of a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedStep {
    pub key: String,
    pub inputs: KeyInputs,
    /// The sha256 of its checkpoint's manifest: what it produced. Absent in
    /// records of stagebuild before early cut-off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// The last run built it again and its output was the one before: the
    /// steps after it kept their checkpoints.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unchanged: bool,
    /// The record's count of output changes ([`crate::state::Record`]) when
    /// this step's output last changed, and when its key was computed: an
    /// earlier step that changed after this one was keyed is why it is not
    /// valid.
    #[serde(default)]
    pub changed_at: u64,
    #[serde(default)]
    pub keyed_at: u64,
}

/// How the guest steps of a run are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuestMode {
    /// A qemu guest per step, booted on the previous step's disk.
    Qemu,
    /// The host's sandbox and kernel, on a root linked from the earlier
    /// outputs.
    Sandbox,
}

impl std::fmt::Display for GuestMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GuestMode::Qemu => "qemu",
            GuestMode::Sandbox => "sandbox",
        })
    }
}

//! A guest step's job: its prepared build directory with the script and
//! environment the guest agent runs under `.stagebuild/`. qemu mode ships it
//! to the guest as a tar; sandbox mode mounts it at `/build` directly, so both
//! run the very same files.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::guest::GuestMode;
use super::guest_variation;
use super::job::StepJob;
use super::shell::quote;
use crate::buildtree;
use crate::error::{IoContext, Result};

/// The guest's search path, which the agent exports before anything else.
pub const GUEST_PATH: &str = "/usr/bin:/bin:/usr/sbin:/sbin";

/// Prepares `job.work/build`: the step's sources and patches, and under
/// `.stagebuild/` its script (`step.sh`) and environment (`env`, sourced by
/// the agent). An audit's variations go into both, as `mode` can apply them
/// ([`guest_variation`]). Returns the build directory.
pub fn prepare(job: &StepJob, tools: &buildtree::Tools, mode: GuestMode) -> Result<PathBuf> {
    let step = &job.planned.chain_step.step;
    let build = job.work.join("build");
    buildtree::prepare(step, &job.sources, &build, tools)?;
    let meta = build.join(".stagebuild");
    fs::create_dir_all(&meta).io_context(|| format!("creating {}", meta.display()))?;
    let script = match &step.definition.kexec {
        Some(hop) => super::kexec::prepare(job, hop, &meta)?,
        None => step.script(),
    };
    let variation = job.variation.clone().unwrap_or_default();
    let script = guest_variation::script_prelude(&variation) + &script;
    fs::write(meta.join("step.sh"), script).io_context(|| "writing the step's script")?;
    let env = guest_env(job);
    let mut exports: String = env
        .iter()
        .map(|(k, v)| format!("export {k}={}\n", quote(v)))
        .collect();
    exports.push_str(&guest_variation::env_prelude(&variation, mode));
    fs::write(meta.join("env"), exports).io_context(|| "writing the step's environment")?;
    Ok(build)
}

/// The environment of a step in the guest (the agent exports it before the
/// step's script), with an audit's variations; the book shows it too.
pub fn guest_env(job: &StepJob) -> BTreeMap<String, String> {
    let step = &job.planned.chain_step.step;
    let workdir = step.definition.workdir.as_deref().unwrap_or("");
    let mut env: BTreeMap<String, String> = [
        ("PATH", GUEST_PATH.to_string()),
        ("HOME", "/build".to_string()),
        ("TZ", "UTC".to_string()),
        ("LC_ALL", "C".to_string()),
        ("SOURCE_DATE_EPOCH", job.source_date_epoch.to_string()),
        ("OUT", "/stagebuild/out".to_string()),
        ("JOBS", guest_variation::GUEST_JOBS.to_string()),
        (
            "STAGEBUILD_WORKDIR",
            Path::new("/build").join(workdir).display().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(variation) = &job.variation {
        guest_variation::vary_env(&mut env, variation, workdir);
    }
    if let Some(pass) = job.planned.chain_step.pass {
        env.insert("PASS".into(), pass.to_string());
    }
    env.extend(step.definition.env.clone());
    env
}

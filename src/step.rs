//! Step files: one YAML file per package build under `steps/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::digest::file_sha256;
use crate::error::{Error, Result};
use crate::lock::Lock;
use crate::step_source::RawSource;
use crate::yaml;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: Spanned<String>,
    version: String,
    description: Spanned<String>,
    #[serde(default)]
    sources: Vec<Spanned<RawSource>>,
    #[serde(default)]
    patches: Vec<Spanned<RawPatch>>,
    #[serde(default)]
    files: Vec<Spanned<String>>,
    #[serde(default)]
    workdir: Option<Spanned<String>>,
    #[serde(default)]
    env: Option<Spanned<BTreeMap<String, String>>>,
    #[serde(default)]
    configure: Option<String>,
    #[serde(default)]
    build: Option<String>,
    #[serde(default)]
    install: Option<String>,
    /// Seconds the step may run (VM stages), instead of the stage's default.
    #[serde(default)]
    timeout: Option<u64>,
    #[serde(default)]
    kexec: Option<Spanned<Kexec>>,
}

/// A patch, by file name, or with the reason it is applied (which the book
/// shows beside it, and which is prose: it is not part of the cache key).
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "each patch must be a file name, or { file: NAME, reason: WHY IT IS APPLIED }"
)]
enum RawPatch {
    File(String),
    WithReason(PatchWithReason),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchWithReason {
    file: String,
    reason: String,
}

impl RawPatch {
    fn file(&self) -> &str {
        match self {
            RawPatch::File(file) => file,
            RawPatch::WithReason(p) => &p.file,
        }
    }
}

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
}

impl Step {
    pub fn name(&self) -> &str {
        &self.definition.name
    }

    /// Loads `steps/<name>.yaml`, checks its sources against the lock and reads
    /// its patches from `patches/<name>/` and its files from `files/<name>/`.
    pub fn load(path: &Path, project: &Path, lock: &Lock) -> Result<Self> {
        let raw: RawStep = yaml::read(path)?;
        let bad = |line, message: String| Error::input(path, line, message);

        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if raw.name.value != stem {
            return Err(bad(
                yaml::line_of(&raw.name),
                format!(
                    "the step is named {:?} but its file is {stem}.yaml; a step file must be named after its step",
                    raw.name.value
                ),
            ));
        }
        if !is_identifier(&raw.name.value) {
            return Err(bad(
                yaml::line_of(&raw.name),
                format!(
                    "step name {:?} may use only a-z, 0-9, '-', '_' and '.'",
                    raw.name.value
                ),
            ));
        }
        let scripted = raw.configure.is_some() || raw.build.is_some() || raw.install.is_some();
        match &raw.kexec {
            None if !scripted => {
                return Err(bad(
                    Some(1),
                    "the step has none of configure, build, install (or kexec)".into(),
                ));
            }
            None => {}
            Some(kexec) => {
                let line = yaml::line_of(kexec);
                let builds = [
                    ("configure", raw.configure.is_some()),
                    ("build", raw.build.is_some()),
                    ("install", raw.install.is_some()),
                    ("sources", !raw.sources.is_empty()),
                    ("patches", !raw.patches.is_empty()),
                    ("files", !raw.files.is_empty()),
                    ("workdir", raw.workdir.is_some()),
                    ("env", raw.env.is_some()),
                ];
                if let Some((key, _)) = builds.iter().find(|(_, present)| *present) {
                    return Err(bad(
                        line,
                        format!("a kexec step only loads a kernel and jumps to it: remove {key}"),
                    ));
                }
                for file in kexec.value.files() {
                    if crate::target::VmSettings::file_ref(file).is_none() {
                        return Err(bad(
                            line,
                            format!(
                                "{file:?} must be STEP:PATH, a file in an earlier step's output"
                            ),
                        ));
                    }
                }
                if kexec.value.append.contains('\0') {
                    return Err(bad(line, "append may not hold a NUL byte".into()));
                }
            }
        }

        let mut sources = Vec::new();
        let mut unpack = BTreeMap::new();
        for (source, raw_source) in crate::step_source::names(&raw.sources)
            .iter()
            .zip(&raw.sources)
        {
            if lock.get(&source.value).is_none() {
                return Err(bad(
                    yaml::line_of(source),
                    format!(
                        "source {:?} is not in {}; add it with its sha256",
                        source.value,
                        lock.path.display()
                    ),
                ));
            }
            if sources.contains(&source.value) {
                return Err(bad(
                    yaml::line_of(source),
                    format!("source {:?} is listed twice", source.value),
                ));
            }
            match raw_source.value.member() {
                Ok(None) => {}
                Ok(Some(member)) => {
                    unpack.insert(source.value.clone(), member.to_string());
                }
                Err(why) => return Err(bad(yaml::line_of(source), why)),
            }
            sources.push(source.value.clone());
        }

        let patch_names: Vec<Spanned<String>> = raw
            .patches
            .iter()
            .map(|p| Spanned {
                value: p.value.file().to_string(),
                referenced: p.referenced,
                defined: p.defined,
            })
            .collect();
        let project_files =
            |kind: &str, dir: &str, names: &[Spanned<String>]| -> Result<Vec<ProjectFile>> {
                names
                    .iter()
                    .map(|name| {
                        let file = &name.value;
                        crate::names::plain_file_name(file)
                            .map_err(|why| bad(yaml::line_of(name), format!("{kind} {why}")))?;
                        let path = project.join(dir).join(&raw.name.value).join(file);
                        let (sha256, _) = file_sha256(&path).map_err(|e| {
                            bad(
                                yaml::line_of(name),
                                format!("{kind} {}: {e}", path.display()),
                            )
                        })?;
                        Ok(ProjectFile {
                            file: file.clone(),
                            path,
                            sha256,
                        })
                    })
                    .collect()
            };
        let patches = project_files("patch", "patches", &patch_names)?;
        let files = project_files("file", "files", &raw.files)?;

        // `.` is the build directory itself, the same as no workdir.
        let workdir = match &raw.workdir {
            None => None,
            Some(spanned) => {
                use std::path::Component::{CurDir, Normal};
                let w = Path::new(&spanned.value);
                // A NUL or control byte would fail the sandbox's chdir later,
                // without file:line.
                if w.as_os_str().is_empty()
                    || spanned.value.bytes().any(|b| b < 0x20 || b == 0x7f)
                    || w.is_absolute()
                    || !w.components().all(|c| matches!(c, Normal(_) | CurDir))
                {
                    return Err(bad(
                        yaml::line_of(spanned),
                        format!(
                            "workdir {:?} must be a relative path inside the build directory",
                            spanned.value
                        ),
                    ));
                }
                let parts: Vec<&str> = w
                    .components()
                    .filter_map(|c| match c {
                        Normal(part) => part.to_str(),
                        _ => None,
                    })
                    .collect();
                Some(parts.join("/")).filter(|p| !p.is_empty())
            }
        };

        let env = raw
            .env
            .as_ref()
            .map(|e| e.value.clone())
            .unwrap_or_default();
        if let Some(spanned) = &raw.env {
            for key in env.keys() {
                if RESERVED_ENV.contains(&key.as_str()) {
                    return Err(bad(
                        yaml::line_of(spanned),
                        format!("env may not set {key}: stagebuild sets it"),
                    ));
                }
                if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(bad(
                        yaml::line_of(spanned),
                        format!("env name {key:?} is not a variable name"),
                    ));
                }
            }
            // The environment reaches the sandbox through execve, whose
            // strings end at the first NUL.
            if let Some(key) = env.iter().find(|(_, v)| v.contains('\0')).map(|(k, _)| k) {
                return Err(bad(
                    yaml::line_of(spanned),
                    format!("env {key}: a value may not hold a NUL byte"),
                ));
            }
        }

        let prose = Prose {
            description_line: yaml::line_of(&raw.description),
            patch_reasons: raw
                .patches
                .iter()
                .map(|p| {
                    let reason = match &p.value {
                        RawPatch::File(_) => None,
                        RawPatch::WithReason(p) => Some(p.reason.clone()),
                    };
                    (reason, yaml::line_of(p))
                })
                .collect(),
        };
        Ok(Step {
            path: path.to_path_buf(),
            description: raw.description.value,
            prose,
            definition: Definition {
                name: raw.name.value,
                version: raw.version,
                sources,
                unpack,
                patches: patch_names.into_iter().map(|p| p.value).collect(),
                files: raw.files.into_iter().map(|f| f.value).collect(),
                workdir,
                env,
                configure: raw.configure,
                build: raw.build,
                install: raw.install,
                timeout: raw.timeout,
                kexec: raw.kexec.map(|k| k.value),
            },
            patches,
            files,
        })
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

pub fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.'))
        && !name.starts_with(['.', '-'])
}

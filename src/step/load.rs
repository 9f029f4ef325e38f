//! Reading a step file and checking each value where it is written, so that
//! every refusal points at `file:line:column` of the value.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::{Component, Path};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::source::{self, RawSource};
use super::{Definition, Kexec, ProjectFile, Prose, RESERVED_ENV, Step};
use crate::digest::file_sha256;
use crate::error::Result;
use crate::lock::Lock;
use crate::names::is_identifier;
use crate::yaml::Doc;

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
    env: Option<BTreeMap<EnvName, Spanned<String>>>,
    #[serde(default)]
    configure: Option<Spanned<String>>,
    #[serde(default)]
    build: Option<Spanned<String>>,
    #[serde(default)]
    install: Option<Spanned<String>>,
    /// Seconds the step may run (VM stages), instead of the stage's default.
    #[serde(default)]
    timeout: Option<u64>,
    #[serde(default)]
    kexec: Option<Spanned<RawKexec>>,
    /// The earlier steps of its stage it sees and is keyed on.
    #[serde(default)]
    needs: Vec<Spanned<String>>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKexec {
    kernel: Spanned<String>,
    #[serde(default)]
    initrd: Option<Spanned<String>>,
    #[serde(default)]
    append: Option<Spanned<String>>,
}

/// A variable name in `env`, with where it is written: a bad name is shown
/// at the name, not at its value.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
struct EnvName(Spanned<String>);

impl PartialEq for EnvName {
    fn eq(&self, other: &Self) -> bool {
        self.0.value == other.0.value
    }
}
impl Eq for EnvName {}
impl PartialOrd for EnvName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for EnvName {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.value.cmp(&other.0.value)
    }
}

pub(super) fn load(path: &Path, project: &Path, lock: &Lock) -> Result<Step> {
    let doc = Doc::read(path)?;
    let raw: RawStep = doc.parse()?;

    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if raw.name.value != stem {
        return Err(doc.error(
            &raw.name,
            format!(
                "the step is named {:?} but its file is {stem}.yaml; a step file must be named after its step",
                raw.name.value
            ),
        ));
    }
    if !is_identifier(&raw.name.value) {
        return Err(doc.error(
            &raw.name,
            format!(
                "step name {:?} may use only a-z, 0-9, '-', '_' and '.'",
                raw.name.value
            ),
        ));
    }
    let kexec = check_kexec(&doc, &raw)?;
    let (sources, unpack) = check_sources(&doc, &raw.sources, lock)?;

    let patch_names: Vec<Spanned<String>> = raw
        .patches
        .iter()
        .map(|p| Spanned {
            value: p.value.file().to_string(),
            referenced: p.referenced,
            defined: p.defined,
        })
        .collect();
    let dir = |kind: &str| project.join(kind).join(&raw.name.value);
    let patches = project_files(&doc, "patch", &dir("patches"), &patch_names)?;
    let files = project_files(&doc, "file", &dir("files"), &raw.files)?;
    let workdir = match &raw.workdir {
        None => None,
        Some(spanned) => check_workdir(&doc, spanned)?,
    };
    let env = check_env(&doc, raw.env.unwrap_or_default())?;
    let needs = check_needs(&doc, &raw.needs)?;

    let prose = Prose {
        description_line: crate::yaml::line_of(&raw.description),
        patch_reasons: raw
            .patches
            .iter()
            .map(|p| {
                let reason = match &p.value {
                    RawPatch::File(_) => None,
                    RawPatch::WithReason(p) => Some(p.reason.clone()),
                };
                (reason, crate::yaml::line_of(p))
            })
            .collect(),
    };
    let value = |s: Option<Spanned<String>>| s.map(|s| s.value);
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
            configure: value(raw.configure),
            build: value(raw.build),
            install: value(raw.install),
            timeout: raw.timeout,
            kexec,
            needs: needs.iter().map(|n| n.value.clone()).collect(),
        },
        patches,
        files,
        needs_at: needs.iter().map(|n| doc.spot_of(n)).collect(),
    })
}

/// A step either runs phases or, as a kexec step, only hops to a kernel.
fn check_kexec(doc: &Doc, raw: &RawStep) -> Result<Option<Kexec>> {
    let phases = [&raw.configure, &raw.build, &raw.install];
    let Some(kexec) = &raw.kexec else {
        if phases.iter().all(|p| p.is_none()) {
            return Err(doc.error_at_line(
                1,
                "the step has none of configure, build, install (or kexec)",
            ));
        }
        return Ok(None);
    };
    let builds = [
        ("configure", raw.configure.as_ref().map(|s| s.referenced)),
        ("build", raw.build.as_ref().map(|s| s.referenced)),
        ("install", raw.install.as_ref().map(|s| s.referenced)),
        ("sources", raw.sources.first().map(|s| s.referenced)),
        ("patches", raw.patches.first().map(|s| s.referenced)),
        ("files", raw.files.first().map(|s| s.referenced)),
        ("workdir", raw.workdir.as_ref().map(|s| s.referenced)),
    ];
    if let Some((key, Some(at))) = builds.iter().find(|(_, at)| at.is_some()) {
        let at = Spanned {
            value: (),
            referenced: *at,
            defined: *at,
        };
        return Err(doc.error(
            &at,
            format!("a kexec step only loads a kernel and jumps to it: remove {key}"),
        ));
    }
    if let Some(EnvName(name)) = raw.env.as_ref().and_then(|e| e.keys().next()) {
        return Err(doc.error(
            name,
            "a kexec step only loads a kernel and jumps to it: remove env",
        ));
    }
    let RawKexec {
        kernel,
        initrd,
        append,
    } = &kexec.value;
    for file in std::iter::once(kernel).chain(initrd) {
        if crate::target::VmSettings::file_ref(&file.value).is_none() {
            return Err(doc.error(
                file,
                format!(
                    "{:?} must be STEP:PATH, a file in an earlier step's output",
                    file.value
                ),
            ));
        }
    }
    if let Some(append) = append.as_ref().filter(|a| a.value.contains('\0')) {
        return Err(doc.error(append, "append may not hold a NUL byte"));
    }
    Ok(Some(Kexec {
        kernel: kernel.value.clone(),
        initrd: initrd.as_ref().map(|i| i.value.clone()),
        append: append.as_ref().map(|a| a.value.clone()).unwrap_or_default(),
    }))
}

/// The sources' names, each in the lock and listed once, and the member to
/// unpack of those that name one.
fn check_sources(
    doc: &Doc,
    listed: &[Spanned<RawSource>],
    lock: &Lock,
) -> Result<(Vec<String>, BTreeMap<String, String>)> {
    let mut sources = Vec::new();
    let mut unpack = BTreeMap::new();
    for (source, raw) in source::names(listed).iter().zip(listed) {
        if lock.get(&source.value).is_none() {
            return Err(doc.error(
                source,
                format!(
                    "source {:?} is not in {}; add it with its sha256",
                    source.value,
                    lock.path.display()
                ),
            ));
        }
        if sources.contains(&source.value) {
            return Err(doc.error(source, format!("source {:?} is listed twice", source.value)));
        }
        match raw.value.member() {
            Ok(None) => {}
            Ok(Some(member)) => {
                unpack.insert(source.value.clone(), member.to_string());
            }
            Err(why) => return Err(doc.error(source, why)),
        }
        sources.push(source.value.clone());
    }
    Ok((sources, unpack))
}

/// Patches under `patches/<step>/` and files under `files/<step>/`, each by a
/// plain name, read for its checksum.
fn project_files(
    doc: &Doc,
    kind: &str,
    dir: &Path,
    names: &[Spanned<String>],
) -> Result<Vec<ProjectFile>> {
    names
        .iter()
        .map(|name| {
            let file = &name.value;
            crate::names::plain_file_name(file)
                .map_err(|why| doc.error(name, format!("{kind} {why}")))?;
            let path = dir.join(file);
            let (sha256, _) = file_sha256(&path)
                .map_err(|e| doc.error(name, format!("{kind} {}: {e}", path.display())))?;
            Ok(ProjectFile {
                file: file.clone(),
                path,
                sha256,
            })
        })
        .collect()
}

/// `.` is the build directory itself, the same as no workdir.
fn check_workdir(doc: &Doc, spanned: &Spanned<String>) -> Result<Option<String>> {
    let w = Path::new(&spanned.value);
    // A NUL or control byte would fail the sandbox's chdir later, without
    // file:line.
    if w.as_os_str().is_empty()
        || spanned.value.bytes().any(|b| b < 0x20 || b == 0x7f)
        || w.is_absolute()
        || !w
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(doc.error(
            spanned,
            format!(
                "workdir {:?} must be a relative path inside the build directory",
                spanned.value
            ),
        ));
    }
    let parts: Vec<&str> = w
        .components()
        .filter_map(|c| match c {
            Component::Normal(part) => part.to_str(),
            _ => None,
        })
        .collect();
    Ok(Some(parts.join("/")).filter(|p| !p.is_empty()))
}

/// Step ids, each once; whether each is an earlier step of the stage is
/// known only in a chain ([`super::check_needs`]).
fn check_needs<'r>(doc: &Doc, needs: &'r [Spanned<String>]) -> Result<Vec<&'r Spanned<String>>> {
    let mut seen: Vec<&Spanned<String>> = Vec::new();
    for need in needs {
        if !is_identifier(&need.value) {
            return Err(doc.error(need, format!("needs: {:?} is not a step id", need.value)));
        }
        if seen.iter().any(|s| s.value == need.value) {
            return Err(doc.error(need, format!("needs: {} is listed twice", need.value)));
        }
        seen.push(need);
    }
    Ok(seen)
}

fn check_env(
    doc: &Doc,
    env: BTreeMap<EnvName, Spanned<String>>,
) -> Result<BTreeMap<String, String>> {
    let mut checked = BTreeMap::new();
    for (EnvName(key), value) in env {
        if RESERVED_ENV.contains(&key.value.as_str()) {
            return Err(doc.error(
                &key,
                format!("env may not set {}: stagebuild sets it", key.value),
            ));
        }
        let name = key.value.as_bytes();
        if name.is_empty() || !name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_') {
            return Err(doc.error(
                &key,
                format!("env name {:?} is not a variable name", key.value),
            ));
        }
        // The environment reaches the sandbox through execve, whose strings
        // end at the first NUL.
        if value.value.contains('\0') {
            return Err(doc.error(
                &value,
                format!("env {}: a value may not hold a NUL byte", key.value),
            ));
        }
        checked.insert(key.value, value.value);
    }
    Ok(checked)
}

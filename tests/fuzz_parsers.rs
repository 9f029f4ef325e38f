//! Property tests of the parsers that read input: step files, targets (and
//! the chain they resolve), the lock (and lock add's edits), and mirror
//! packs. Each is fed the project's real files, mutated, and random names
//! full of `..`, `/`, NUL, `-` and newlines, and checks that nothing panics,
//! that every name that parses stays inside its directory when joined, and
//! that nothing is written outside the roots a canary watches.
//!
//! `STAGEBUILD_FUZZ_SECONDS=N` makes each property generate cases for N
//! seconds and print `fuzz NAME: RUNS runs, FAILURES failures`; without it
//! each runs a small fixed number of cases (`scripts/fuzz.sh` runs them all).

mod common;

use std::fmt::Debug;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::canary::Canary;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use sha2::{Digest, Sha256};
use stagebuild::lock::{Lock, LockEntry};
use stagebuild::names;

/// Cases per property in a plain `cargo test`.
const FIXED_CASES: u32 = 48;
/// Cases per batch in a timed run, between looks at the clock.
const BATCH: u32 = 128;

/// Runs `test` over `strategy`: a fixed number of cases, or batches until
/// `STAGEBUILD_FUZZ_SECONDS` have passed. Prints the figures and fails with
/// the (shrunk) failing inputs, if any.
fn fuzz<S>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: Debug,
{
    let seconds: Option<u64> = std::env::var("STAGEBUILD_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok());
    let config = |cases, rng_seed| Config {
        cases,
        failure_persistence: None,
        rng_seed,
        ..Config::default()
    };
    let runs = AtomicU64::new(0);
    let counted = |value| {
        runs.fetch_add(1, Ordering::Relaxed);
        test(value)
    };
    let mut failures = Vec::new();
    match seconds {
        None => {
            let mut runner = TestRunner::new(config(FIXED_CASES, RngSeed::Fixed(0x5eed)));
            if let Err(e) = runner.run(&strategy, counted) {
                failures.push(e.to_string());
            }
        }
        Some(seconds) => {
            let deadline = Instant::now() + Duration::from_secs(seconds);
            // A runner counts its cases across runs, so each batch has its own
            // (with its own random seed).
            while Instant::now() < deadline {
                let mut runner = TestRunner::new(config(BATCH, RngSeed::Random));
                if let Err(e) = runner.run(&strategy, counted) {
                    failures.push(e.to_string());
                }
            }
        }
    }
    println!(
        "fuzz {name}: {} runs, {} failures",
        runs.load(Ordering::Relaxed),
        failures.len()
    );
    let mut kinds: Vec<&str> = failures.iter().filter_map(|f| f.lines().next()).collect();
    kinds.sort();
    kinds.dedup();
    for kind in kinds {
        println!("fuzz {name}: found {kind}");
    }
    assert!(
        failures.is_empty(),
        "{name}: {} failures; the first:\n{}",
        failures.len(),
        failures[0]
    );
}

/// Pieces hostile names are made of.
const PIECES: &[&str] = &[
    "a",
    "x.tar",
    "..",
    ".",
    "/",
    "\0",
    "-",
    "--",
    "\n",
    "\r",
    " ",
    ":",
    ": ",
    "#",
    " #",
    "\"",
    "'",
    "\\",
    "\\0",
    "../../canary/x",
    "/etc/passwd",
    "--upload-pack=touch x",
    "ext::sh -c x",
    "-oX=y",
    "file://",
    "https://",
    "ssh://-o",
    "[",
    "]",
    "{",
    "}",
    "- ",
    "*",
    "&a",
    "!!binary ",
    "~",
    "é",
    "\u{202e}",
    "\t",
    "\x7f",
    "=",
    "%",
    "?",
];

fn hostile_name() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 0..6).prop_map(|p| p.concat())
}

#[derive(Debug, Clone)]
enum Mutation {
    /// The value after the first `: ` (or `- `) of a line becomes a name,
    /// plain or double-quoted (quoting lets NUL and newlines through).
    Value(usize, String, bool),
    Insert(usize, String),
    DeleteLine(usize),
    DuplicateLine(usize),
    Byte(usize, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), hostile_name(), any::<bool>()).prop_map(|(l, n, q)| Mutation::Value(l, n, q)),
        2 => (any::<usize>(), hostile_name()).prop_map(|(at, s)| Mutation::Insert(at, s)),
        1 => any::<usize>().prop_map(Mutation::DeleteLine),
        1 => any::<usize>().prop_map(Mutation::DuplicateLine),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Byte(at, b)),
    ]
}

fn mutate(text: &str, mutations: &[Mutation]) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = text.lines().map(|l| l.as_bytes().to_vec()).collect();
    for m in mutations {
        if lines.is_empty() {
            lines.push(Vec::new());
        }
        let n = lines.len();
        match m {
            Mutation::Value(at, name, quoted) => {
                let line = &mut lines[at % n];
                let value = if *quoted {
                    serde_json::to_string(name).unwrap()
                } else {
                    name.clone()
                };
                let cut = find(line, b": ")
                    .map(|i| i + 2)
                    .or_else(|| find(line, b"- ").map(|i| i + 2));
                if let Some(cut) = cut {
                    line.truncate(cut);
                    line.extend_from_slice(value.as_bytes());
                }
            }
            Mutation::Insert(at, s) => {
                let line = &mut lines[at % n];
                let i = at % (line.len() + 1);
                line.splice(i..i, s.bytes());
            }
            Mutation::DeleteLine(at) => {
                lines.remove(at % n);
            }
            Mutation::DuplicateLine(at) => {
                let line = lines[at % n].clone();
                lines.insert(at % n, line);
            }
            Mutation::Byte(at, b) => {
                let line = &mut lines[at % n];
                if !line.is_empty() {
                    let i = at % line.len();
                    line[i] = *b;
                }
            }
        }
    }
    let mut out = lines.join(&b"\n"[..]);
    out.push(b'\n');
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Whether `rel`, joined to any directory, stays inside it.
fn stays_inside(rel: &str) -> bool {
    !rel.is_empty()
        && !rel.contains('\0')
        && Path::new(rel)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), TestCaseError> {
    if ok {
        Ok(())
    } else {
        Err(TestCaseError::fail(what()))
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A temporary copy of this project (steps, targets, patches, files, lock,
/// agent) beside a planted canary, watched.
struct Sandbox {
    dir: tempfile::TempDir,
    canary: Canary,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("project");
        for part in ["steps", "patches", "files", "vm"] {
            copy_tree(&repo().join(part), &project.join(part));
        }
        fs::copy(repo().join("sources.lock"), project.join("sources.lock")).unwrap();
        fs::create_dir_all(dir.path().join("mirror")).unwrap();
        let mut canary = Canary::plant(dir.path());
        canary.watch_root();
        Sandbox { dir, canary }
    }

    fn project(&self) -> PathBuf {
        self.dir.path().join("project")
    }
}

fn copy_tree(from: &Path, to: &Path) {
    if !from.exists() {
        return;
    }
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        } else if meta.is_file() {
            fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

fn real_files(dir: &str, ext: &str) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = fs::read_dir(repo().join(dir))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let stem = name.strip_suffix(ext)?.to_string();
            Some((stem, fs::read_to_string(e.path()).ok()?))
        })
        .collect();
    files.sort();
    files
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 0..5)
}

#[test]
fn fuzz_step_parser() {
    let sandbox = Sandbox::new();
    let project = sandbox.project();
    let lock = Lock::load(&project.join("sources.lock")).unwrap();
    let steps = real_files("steps", ".yaml");
    fuzz(
        "step_parser",
        (0..steps.len(), mutations()),
        |(which, muts)| {
            let (stem, text) = &steps[which];
            let path = project.join("steps").join(format!("{stem}.yaml"));
            fs::write(&path, mutate(text, &muts)).unwrap();
            let loaded = stagebuild::step::Step::load(&path, &project, &lock);
            fs::write(&path, text).unwrap();
            if let Ok(step) = loaded {
                let d = &step.definition;
                check(names::identifier(&d.name).is_ok(), || {
                    format!("name {:?}", d.name)
                })?;
                for f in step.patches.iter().chain(&step.files) {
                    check(stays_inside(&f.file), || format!("file {:?}", f.file))?;
                    check(f.path.starts_with(&project), || format!("{:?}", f.path))?;
                }
                if let Some(w) = &d.workdir {
                    check(stays_inside(w) && !w.contains(['\n', '\r']), || {
                        format!("workdir {w:?}")
                    })?;
                }
                for (k, v) in &d.env {
                    check(!k.contains('\0') && !v.contains('\0'), || {
                        format!("env {k:?}")
                    })?;
                }
                for s in &d.sources {
                    check(lock.get(s).is_some(), || format!("source {s:?}"))?;
                }
                if let Some(k) = &d.kexec {
                    check(!k.append.contains('\0'), || {
                        format!("append {:?}", k.append)
                    })?;
                    for file in k.files() {
                        let (_, p) = stagebuild::target::VmSettings::file_ref(file).unwrap();
                        check(stays_inside(p), || format!("kexec {file:?}"))?;
                    }
                }
            }
            sandbox.canary.assert_untouched("step parser");
            Ok(())
        },
    );
}

#[test]
fn fuzz_target_parser_and_chain() {
    let sandbox = Sandbox::new();
    let project_dir = sandbox.project();
    let project = stagebuild::project::Project::open(&project_dir).unwrap();
    let targets = real_files("steps/targets", ".yaml");
    let path = project.target_path("demo");
    fuzz(
        "target_parser",
        (0..targets.len(), mutations()),
        |(which, muts)| {
            let (_, text) = &targets[which];
            fs::write(&path, mutate(text, &muts)).unwrap();
            let target = stagebuild::target::Target::load(&path, &[]);
            let chain = project.chain("demo", &[]);
            if let Ok(target) = target {
                check(names::identifier(&target.name).is_ok(), || {
                    target.name.clone()
                })?;
                for step in target.stages.iter().flat_map(|s| &s.steps) {
                    check(names::identifier(&step.step).is_ok(), || step.step.clone())?;
                }
                for vm in target.stages.iter().filter_map(|s| s.vm.as_ref()) {
                    check(!vm.append.contains('\0'), || {
                        format!("append {:?}", vm.append)
                    })?;
                    for file in std::iter::once(&vm.kernel).chain(&vm.initrd) {
                        let (_, p) = stagebuild::target::VmSettings::file_ref(file).unwrap();
                        check(stays_inside(p), || format!("vm file {file:?}"))?;
                    }
                }
            }
            if let Ok(chain) = chain {
                for step in &chain.steps {
                    check(stays_inside(&step.id) && !step.id.contains('/'), || {
                        format!("step id {:?}", step.id)
                    })?;
                }
            }
            sandbox.canary.assert_untouched("target parser");
            Ok(())
        },
    );
    fs::write(&path, &targets[0].1).unwrap();
}

#[test]
fn fuzz_lock_parser_and_lock_edits() {
    let sandbox = Sandbox::new();
    let path = sandbox.project().join("sources.lock");
    let text = fs::read_to_string(&path).unwrap();
    let bases = [
        text.clone(),
        "version: 1\nsources: []\n".to_string(),
        "version: 1\n".to_string(),
    ];
    fuzz(
        "lock_parser",
        (0..bases.len(), mutations(), hostile_name()),
        |(which, muts, name)| {
            let mutated = mutate(&bases[which], &muts);
            let Ok(lock) = Lock::parse(&path, &mutated) else {
                sandbox.canary.assert_untouched("lock parser");
                return Ok(());
            };
            for e in lock.entries.values() {
                check(stays_inside(&e.name) && !e.name.contains('/'), || {
                    format!("name {:?}", e.name)
                })?;
                check(!e.name.starts_with('-'), || format!("name {:?}", e.name))?;
                if let Some(apt) = &e.apt {
                    check(stays_inside(&apt.file) && !apt.file.contains('/'), || {
                        format!("apt file {:?}", apt.file)
                    })?;
                    check(!apt.package.starts_with('-'), || apt.package.clone())?;
                    check(!apt.version.starts_with('-'), || apt.version.clone())?;
                }
                if let Some(git) = &e.git {
                    check(names::git_url(&git.url).is_ok(), || git.url.clone())?;
                    check(!git.url.starts_with('-'), || git.url.clone())?;
                }
                for url in &e.urls {
                    check(
                        url.starts_with("http://") || url.starts_with("https://"),
                        || url.clone(),
                    )?;
                }
            }
            // lock add: a plain name, added to a lock that parses, reads back.
            if names::plain_file_name(&name).is_ok() {
                let text = String::from_utf8(mutated).unwrap();
                let entry = LockEntry {
                    name: name.clone(),
                    sha256: hex::encode(Sha256::digest(name.as_bytes())),
                    size: 1,
                    urls: vec!["https://example.org/a?b=c".into()],
                    apt: None,
                    git: None,
                    line: None,
                };
                let (written, _) = stagebuild::lockedit::with_entry(&path, &lock, &text, &entry)
                    .map_err(|e| TestCaseError::fail(format!("lock add {name:?}: {e}")))?;
                let again = Lock::parse(&path, written.as_bytes())
                    .map_err(|e| TestCaseError::fail(format!("{e}\n{written}")))?;
                check(again.get(&name).is_some(), || written.clone())?;
            }
            sandbox.canary.assert_untouched("lock parser");
            Ok(())
        },
    );
}

#[derive(Debug, Clone)]
enum Member {
    /// A file under `sha256/` whose name is its checksum.
    Stored(Vec<u8>),
    /// Any path, with any entry type.
    Raw(String, u8, Vec<u8>),
}

fn member() -> impl Strategy<Value = Member> {
    let path = prop_oneof![
        hostile_name(),
        hostile_name().prop_map(|n| format!("sha256/{n}")),
        Just("sha256/".to_string() + &"a".repeat(64)),
    ];
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 1..64).prop_map(Member::Stored),
        1 => (path, prop::sample::select(&b"0125L"[..]), prop::collection::vec(any::<u8>(), 0..32))
            .prop_map(|(p, t, d)| Member::Raw(p, t, d)),
    ]
}

/// A manifest entry: checksum (of a member, random hex, or hostile), size,
/// names.
#[derive(Debug, Clone)]
struct Listed {
    of_member: Option<usize>,
    sha: String,
    size: u64,
    names: Vec<String>,
}

fn listed() -> impl Strategy<Value = Listed> {
    let sha = prop_oneof!["[0-9a-f]{64}".prop_map(|s| s), hostile_name(),];
    (
        prop::option::of(0usize..8),
        sha,
        0u64..80,
        prop::collection::vec(
            prop_oneof![hostile_name(), "[a-z0-9.]{1,12}".prop_map(|s| s)],
            0..3,
        ),
    )
        .prop_map(|(of_member, sha, size, names)| Listed {
            of_member,
            sha,
            size,
            names,
        })
}

/// Writes the pack's bytes: a manifest, then the members, with raw headers
/// so that paths `tar::Builder` refuses get through; then maybe a flipped byte.
fn pack_bytes(members: &[Member], listed: &[Listed], flip: Option<usize>) -> Vec<u8> {
    let files: Vec<serde_json::Value> = listed
        .iter()
        .map(|l| {
            let (sha, size) = match l.of_member.and_then(|i| members.get(i)) {
                Some(Member::Stored(data)) => {
                    (hex::encode(Sha256::digest(data)), data.len() as u64)
                }
                _ => (l.sha.clone(), l.size),
            };
            serde_json::json!({ "sha256": sha, "size": size, "names": l.names })
        })
        .collect();
    let manifest = serde_json::json!({ "version": 1, "files": files }).to_string();
    let mut out = Vec::new();
    let mut add = |name: &str, kind: u8, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_size(data.len() as u64);
        h.set_mode(0o444);
        let gnu = h.as_gnu_mut().unwrap();
        let bytes = name.as_bytes();
        let n = bytes.len().min(99);
        gnu.name[..n].copy_from_slice(&bytes[..n]);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    };
    add("stagebuild-mirror.json", b'0', manifest.as_bytes());
    for m in members {
        match m {
            Member::Stored(data) => add(
                &format!("sha256/{}", hex::encode(Sha256::digest(data))),
                b'0',
                data,
            ),
            Member::Raw(path, kind, data) => add(path, *kind, data),
        }
    }
    out.resize(out.len() + 1024, 0);
    if let Some(at) = flip {
        let i = at % out.len();
        out[i] ^= 0x20;
    }
    out
}

#[test]
fn fuzz_pack_reader() {
    let sandbox = Sandbox::new();
    let mirror_root = sandbox.dir.path().join("mirror");
    let mirror = stagebuild::mirror::Mirror::new(mirror_root.clone());
    let pack = sandbox.dir.path().join("project/in.pack.tar");
    let strategy = (
        prop::collection::vec(member(), 0..4),
        prop::collection::vec(listed(), 0..4),
        prop::option::of(any::<usize>()),
    );
    fuzz("pack_reader", strategy, |(members, listed, flip)| {
        fs::write(&pack, pack_bytes(&members, &listed, flip)).unwrap();
        let _ = stagebuild::mirror::pack::unpack(&mirror, &pack);
        // Whatever landed: stored files named by their checksum, and
        // plain names linking to them.
        for entry in fs::read_dir(mirror_root.join("sha256"))
            .into_iter()
            .flatten()
        {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let sum = hex::encode(Sha256::digest(fs::read(entry.path()).unwrap()));
            check(name == sum, || format!("sha256/{name} holds {sum}"))?;
        }
        for entry in fs::read_dir(mirror_root.join("by-name"))
            .into_iter()
            .flatten()
        {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            check(names::plain_file_name(&name).is_ok(), || {
                format!("by-name/{name:?}")
            })?;
            let target = fs::read_link(entry.path()).unwrap();
            check(target.starts_with("../sha256"), || format!("{target:?}"))?;
        }
        sandbox.canary.assert_untouched("pack reader");
        Ok(())
    });
}

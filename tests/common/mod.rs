//! A small real project for integration tests: a C program in a real tarball,
//! pinned in a real sources.lock, built by the real binary in the real sandbox.

#![allow(dead_code)]

pub mod canary;
pub mod http;
pub mod pty;
pub mod s3;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub struct Fixture {
    pub dir: tempfile::TempDir,
}

pub const HELLO_C: &str =
    "#include <stdio.h>\nint main(void) { puts(\"hello from a sandbox\"); return 0; }\n";

impl Fixture {
    /// A project with target `t`: `hello` compiles a C program, `greet` runs it
    /// from the sysroot, `slow` sleeps so that tests can interrupt it.
    pub fn tiny() -> Fixture {
        let fixture = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        let tarball = make_tarball(&[("hello-1.0/hello.c", HELLO_C.as_bytes())]);
        fixture.add_source("hello-1.0.tar.gz", &tarball);
        fixture.write(
            "steps/hello.yaml",
            "name: hello\nversion: \"1.0\"\ndescription: Compiles a tiny C program.\nsources: [hello-1.0.tar.gz]\nworkdir: hello-1.0\nbuild: |\n  gcc -O2 -o hello hello.c\ninstall: |\n  mkdir -p \"$OUT/usr/bin\"\n  cp hello \"$OUT/usr/bin/\"\n  chmod -R go-w \"$OUT\"\n",
        );
        fixture.write(
            "steps/greet.yaml",
            "name: greet\nversion: \"1\"\ndescription: Runs hello from the sysroot.\nbuild: |\n  /sysroot/usr/bin/hello > \"$OUT/greeting\"\n  chmod -R go-w \"$OUT\"\n",
        );
        fixture.write(
            "steps/slow.yaml",
            "name: slow\nversion: \"1\"\ndescription: Takes its time.\nbuild: |\n  echo started-slow\n  sleep \"${SLOW_SECONDS:-30}\"\n  echo done > \"$OUT/slow\"\n",
        );
        fixture.write(
            "steps/targets/t.yaml",
            "name: t\nsource_date_epoch: 1672531200\nconfig:\n  arch: x86_64\nstages:\n  - name: host\n    runner: host\n    steps:\n      - hello\n      - greet\n",
        );
        fixture
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn project(&self) -> PathBuf {
        self.root().join("project")
    }

    pub fn state(&self) -> PathBuf {
        self.root().join("state")
    }

    pub fn mirror(&self) -> PathBuf {
        self.root().join("mirror")
    }

    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) {
        let path = self.project().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    /// Adds a file to the lock and to a directory the mirror imports from.
    pub fn add_source(&self, name: &str, bytes: &[u8]) {
        let lock = self.project().join("sources.lock");
        let mut text = fs::read_to_string(&lock).unwrap_or_else(|_| lock_text(&[]));
        text.push_str(&lock_entry(
            name,
            bytes,
            &[format!("https://example.org/{name}")],
        ));
        self.write("sources.lock", text);
        let incoming = self.root().join("incoming");
        fs::create_dir_all(&incoming).unwrap();
        fs::write(incoming.join(name), bytes).unwrap();
    }

    /// The real binary, pointed at this fixture's project, state and mirror.
    pub fn cmd(&self) -> assert_cmd::Command {
        stagebuild(&self.project(), Some(&self.state()), Some(&self.mirror()))
    }

    pub fn std_cmd(&self) -> std::process::Command {
        std_stagebuild(&self.project(), Some(&self.state()), Some(&self.mirror()))
    }

    pub fn import_sources(&self) {
        self.cmd()
            .args(["mirror", "import"])
            .arg(self.root().join("incoming"))
            .assert()
            .success();
    }
}

/// A gzip'd tarball with the given files, every header fixed.
/// The real binary on `project`, with a state directory and a mirror when
/// given.
pub fn stagebuild(
    project: &Path,
    state: Option<&Path>,
    mirror: Option<&Path>,
) -> assert_cmd::Command {
    assert_cmd::Command::from_std(std_stagebuild(project, state, mirror))
}

/// [`stagebuild`] as a `std::process::Command`, for tests that spawn it.
pub fn std_stagebuild(
    project: &Path,
    state: Option<&Path>,
    mirror: Option<&Path>,
) -> std::process::Command {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("stagebuild"));
    cmd.arg("--project").arg(project);
    if let Some(state) = state {
        cmd.arg("--state").arg(state);
    }
    if let Some(mirror) = mirror {
        cmd.arg("--mirror").arg(mirror);
    }
    cmd
}

/// A sources.lock listing `entries` (see [`lock_entry`]).
pub fn lock_text(entries: &[String]) -> String {
    format!("version: 1\nsources:\n{}", entries.concat())
}

/// One entry of a sources.lock: `name`, pinned to `content`, at `urls`.
pub fn lock_entry(name: &str, content: &[u8], urls: &[String]) -> String {
    let urls: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    format!(
        "  - name: {name}\n    sha256: {}\n    size: {}\n    urls: [{}]\n",
        hex::encode(Sha256::digest(content)),
        content.len(),
        urls.join(", ")
    )
}

/// A target's record in a state directory, as JSON.
pub fn record(state: &Path, target: &str) -> serde_json::Value {
    let path = state.join("targets").join(format!("{target}.json"));
    serde_json::from_slice(&fs::read(&path).unwrap()).unwrap()
}

pub fn make_tarball(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_672_531_200);
        builder.append_data(&mut header, path, *data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// Every path below `dir` with its type and content hash: two equal snapshots
/// mean nothing was written.
pub fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if !dir.exists() {
        return out;
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            let meta = fs::symlink_metadata(&path).unwrap();
            let value = if meta.is_dir() {
                stack.push(path);
                "dir".to_string()
            } else if meta.file_type().is_symlink() {
                format!("link {}", fs::read_link(&path).unwrap().display())
            } else {
                hex::encode(Sha256::digest(fs::read(&path).unwrap()))
            };
            out.insert(rel, value);
        }
    }
    out
}

/// The per-file manifests of every checkpoint a target's record names, by step.
pub fn manifests(state: &Path, target: &str) -> BTreeMap<String, String> {
    let record: serde_json::Value = serde_json::from_slice(
        &fs::read(state.join("targets").join(format!("{target}.json"))).unwrap(),
    )
    .unwrap();
    record["steps"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(id, step)| {
            let key = step["key"].as_str().unwrap();
            let manifest =
                fs::read_to_string(state.join("checkpoints").join(key).join("manifest.json"))
                    .unwrap();
            (id.clone(), manifest)
        })
        .collect()
}

/// One raw tar entry, written as given: names and link targets that
/// `tar::Builder` would refuse are the point of hostile-archive tests.
pub struct RawEntry<'a> {
    pub kind: tar::EntryType,
    pub name: &'a str,
    pub link: Option<&'a str>,
    pub data: &'a [u8],
    /// The size the header claims, if not the data's.
    pub claimed_size: Option<u64>,
}

pub fn raw_tar(entries: &[RawEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(e.kind);
        h.set_size(e.claimed_size.unwrap_or(e.data.len() as u64));
        h.set_mode(0o644);
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..e.name.len()].copy_from_slice(e.name.as_bytes());
        if let Some(link) = e.link {
            gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(e.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// The sha256 of the first entry of a lock file's text.
pub fn first_sha256(lock: &str) -> String {
    let line = lock
        .lines()
        .find(|l| l.trim_start().starts_with("sha256: "))
        .unwrap();
    line.trim_start()
        .trim_start_matches("sha256: ")
        .trim()
        .to_string()
}

/// A process's state letter from /proc (`T` stopped, `Z` a zombie), or
/// `None` once it is gone.
pub fn process_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// Waits until `child` has stopped itself at the fault point that
/// `STAGEBUILD_FAULT_PAUSE` named (see src/faultpoint.rs), then SIGKILLs it.
pub fn kill_at_fault_point(child: &mut std::process::Child) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while process_state(child.id()) != Some('T') {
        assert!(
            std::time::Instant::now() < deadline,
            "never reached the fault point"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "ended before the fault point"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Checks that an error message `expected` (which starts `FILE:LINE:COLUMN:`)
/// is followed in `shown` by that line of FILE (under `project`) and a caret
/// under the column. An empty file has no line to show.
pub fn shows_the_offending_line(shown: &str, expected: &str, project: &Path) -> Result<(), String> {
    let mut parts = expected.splitn(4, ':');
    let (file, line, column) = match (parts.next(), parts.next(), parts.next()) {
        (Some(file), Some(line), Some(column)) => (file, line, column),
        _ => return Err("the message does not start FILE:LINE:COLUMN:".into()),
    };
    let line: usize = line
        .parse()
        .map_err(|_| format!("no line number in {expected:?}"))?;
    let column: usize = column
        .trim()
        .parse()
        .map_err(|_| format!("no column in {expected:?}"))?;
    let text = String::from_utf8_lossy(&fs::read(project.join(file)).unwrap()).into_owned();
    let Some(source) = text.lines().nth(line - 1) else {
        return if text.trim().is_empty() {
            Ok(())
        } else {
            Err(format!("{file} has no line {line}"))
        };
    };
    let source: String = source
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    let gutter = format!("\n{line} | ");
    let at = shown
        .find(&format!("{gutter}{source}\n"))
        .ok_or_else(|| format!("line {line} ({source:?}) is not shown"))?;
    let caret_line = shown[at + gutter.len() + source.len() + 1..]
        .lines()
        .next()
        .unwrap_or("");
    let pad = " ".repeat(line.to_string().len());
    let offset = (column - 1).min(source.chars().count());
    let caret = format!("{pad} | {}^", " ".repeat(offset));
    if caret_line.starts_with(&caret) {
        Ok(())
    } else {
        Err(format!("no caret at column {column}: {caret_line:?}"))
    }
}

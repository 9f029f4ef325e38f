//! Sources pinned to a git commit. The mirror writes the commit's tree as a
//! tarball itself, so its bytes depend only on the commit: entries sorted by
//! path, one directory prefix, mode 644/755, owner 0, mtime the commit's
//! time, and no compression (a compressor's output may change between its
//! versions). `git archive` piped to gzip is not stable that way.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use super::fetch::{Attempt, FetchError, Fetcher, Progress};
use crate::lock::LockEntry;

pub struct GitFetcher;

impl Fetcher for GitFetcher {
    fn attempts(&self, entry: &LockEntry) -> Vec<Attempt> {
        entry
            .git
            .iter()
            .map(|g| Attempt {
                label: format!("git {} {}", g.url, g.commit),
                locator: g.url.clone(),
            })
            .collect()
    }

    fn fetch(
        &self,
        entry: &LockEntry,
        _: &Attempt,
        part: &Path,
        _: &dyn Progress,
    ) -> Result<(), FetchError> {
        let git = entry
            .git
            .as_ref()
            .ok_or_else(|| FetchError::NotApplicable("no git source".into()))?;
        let prefix = entry.name.strip_suffix(".tar").unwrap_or(&entry.name);
        let work = tempfile::Builder::new()
            .prefix("git-")
            .tempdir_in(part.parent().unwrap_or(Path::new(".")))
            .map_err(FetchError::io("making a directory for git"))?;
        let repo = work.path().join("repo.git");
        run(Command::new("git")
            .args(["init", "-q", "--bare"])
            .arg(&repo))?;
        // The URL after `--`, so that git never reads it as an option, and
        // only the protocols the lock accepts, redirects included.
        let fetch = |refspec: &str| {
            run(git_in(&repo)
                .env("GIT_ALLOW_PROTOCOL", crate::names::GIT_PROTOCOLS)
                .args(["fetch", "-q", "--no-tags", "--", &git.url, refspec]))
        };
        fetch(&git.commit).or_else(|_| fetch("+refs/*:refs/remotes/all/*"))?;
        let file = fs::File::create(part).map_err(FetchError::io(part.display().to_string()))?;
        write_tarball(&repo, &git.commit, prefix, file)
    }
}

fn git_in(repo: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("--git-dir").arg(repo);
    cmd
}

fn run(cmd: &mut Command) -> Result<Vec<u8>, FetchError> {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| tool(format!("running git: {e}")))?;
    if !output.status.success() {
        return Err(tool(format!(
            "git: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(output.stdout)
}

/// What git made of a repository or a commit.
fn tool(problem: impl std::fmt::Display) -> FetchError {
    FetchError::Tool(problem.to_string())
}

/// Writes `commit`'s tree under `prefix/` as a tar to `out`.
pub fn write_tarball(
    repo: &Path,
    commit: &str,
    prefix: &str,
    out: impl Write,
) -> Result<(), FetchError> {
    let kind = run(git_in(repo).args(["cat-file", "-t", commit]))?;
    if kind.trim_ascii() != b"commit" {
        return Err(tool(format!("{commit} is not a commit")));
    }
    let time: u64 = String::from_utf8_lossy(&run(git_in(repo).args([
        "show",
        "-s",
        "--format=%ct",
        commit,
    ]))?)
    .trim()
    .parse()
    .map_err(|e| tool(format!("reading the commit time: {e}")))?;
    let listing = run(git_in(repo).args(["ls-tree", "-r", "-z", "--full-tree", commit]))?;

    // (path, mode, object), sorted bytewise; git's own order differs for "a/" and "a.c".
    let mut files = Vec::new();
    for record in listing.split(|&b| b == 0).filter(|r| !r.is_empty()) {
        let record = String::from_utf8(record.to_vec())
            .map_err(|_| tool("a path in the tree is not UTF-8"))?;
        let (meta, path) = record
            .split_once('\t')
            .ok_or_else(|| tool("unexpected ls-tree output"))?;
        let fields: Vec<&str> = meta.split(' ').collect();
        let [mode, _kind, object] = fields[..] else {
            return Err(tool("unexpected ls-tree output"));
        };
        if mode == "160000" {
            return Err(tool(format!(
                "{path} is a submodule; pin it as a source of its own"
            )));
        }
        files.push((path.to_string(), mode.to_string(), object.to_string()));
    }
    files.sort();
    let mut dirs = BTreeSet::new();
    for (path, _, _) in &files {
        let mut p = Path::new(path).parent();
        while let Some(dir) = p.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(dir.to_string_lossy().into_owned());
            p = dir.parent();
        }
    }

    let mut cat = git_in(repo)
        .args(["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| tool(format!("running git: {e}")))?;
    let mut cat_in = cat.stdin.take().unwrap();
    let mut cat_out = BufReader::new(cat.stdout.take().unwrap());

    let mut builder = tar::Builder::new(out);
    let mut entries: Vec<(String, Option<(String, String)>)> =
        dirs.into_iter().map(|d| (d, None)).collect();
    entries.extend(files.into_iter().map(|(p, m, o)| (p, Some((m, o)))));
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(time);
        h.set_uid(0);
        h.set_gid(0);
        h
    };
    let mut top = header(tar::EntryType::Directory, 0o755, 0);
    builder
        .append_data(&mut top, format!("{prefix}/"), std::io::empty())
        .map_err(tool)?;
    for (path, file) in entries {
        let full = format!("{prefix}/{path}");
        let Some((mode, object)) = file else {
            let mut h = header(tar::EntryType::Directory, 0o755, 0);
            builder
                .append_data(&mut h, format!("{full}/"), std::io::empty())
                .map_err(tool)?;
            continue;
        };
        writeln!(cat_in, "{object}").map_err(tool)?;
        cat_in.flush().map_err(tool)?;
        let mut line = String::new();
        cat_out.read_line(&mut line).map_err(tool)?;
        let size: u64 = line
            .split_whitespace()
            .nth(2)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| tool(format!("git cat-file: {}", line.trim())))?;
        let mut content = vec![0; size as usize];
        cat_out.read_exact(&mut content).map_err(tool)?;
        let mut newline = [0u8; 1];
        cat_out.read_exact(&mut newline).map_err(tool)?;
        if mode == "120000" {
            let mut h = header(tar::EntryType::Symlink, 0o777, 0);
            let target = String::from_utf8(content)
                .map_err(|_| tool(format!("{path}: link target is not UTF-8")))?;
            builder.append_link(&mut h, &full, target).map_err(tool)?;
        } else {
            let mode = if mode == "100755" { 0o755 } else { 0o644 };
            let mut h = header(tar::EntryType::Regular, mode, size);
            builder
                .append_data(&mut h, &full, content.as_slice())
                .map_err(tool)?;
        }
    }
    drop(cat_in);
    let _ = cat.wait();
    builder
        .into_inner()
        .and_then(|mut w| w.flush())
        .map_err(tool)
}

//! The mirror against a real HTTP server on 127.0.0.1 that misbehaves on
//! purpose, plus import, verify, pack/unpack, lock add and git sources.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::http::{Behavior, Server};
use predicates::prelude::*;
use sha2::{Digest, Sha256};

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Deterministic bytes that do not compress or repeat.
fn bytes(len: usize, seed: u8) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(seed);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    /// A project whose lock lists `entries`: (name, content, urls).
    fn with(entries: &[(&str, &[u8], Vec<String>)]) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let lock = common::lock_text(
            &entries
                .iter()
                .map(|(name, content, urls)| common::lock_entry(name, content, urls))
                .collect::<Vec<_>>(),
        );
        fs::write(dir.path().join("sources.lock"), lock).unwrap();
        Project { dir }
    }

    fn mirror(&self) -> PathBuf {
        self.dir.path().join("mirror")
    }

    fn cmd(&self) -> assert_cmd::Command {
        common::stagebuild(self.dir.path(), None, Some(&self.mirror()))
    }

    fn fetch(&self, extra: &[&str]) -> assert_cmd::assert::Assert {
        self.cmd()
            .args([
                "mirror",
                "fetch",
                "--timeout",
                "2",
                "--tries",
                "3",
                "--backoff-ms",
                "50",
            ])
            .args(extra)
            .assert()
    }
}

/// Every stored file hashes to its name and every name links to a stored
/// file: the mirror never holds a wrong file under a right name.
fn assert_mirror_clean(mirror: &Path) {
    for entry in fs::read_dir(mirror.join("sha256"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let content = fs::read(entry.path()).unwrap();
        assert!(!content.is_empty(), "an empty file in the store");
        assert_eq!(
            sha(&content),
            entry.file_name().to_string_lossy(),
            "a wrong file in the store"
        );
    }
    for link in fs::read_dir(mirror.join("by-name"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let target = fs::read_link(link.path()).unwrap();
        assert!(target.starts_with("../sha256"), "{target:?}");
        assert!(link.path().exists(), "a dangling name: {:?}", link.path());
    }
}

fn stored(mirror: &Path, content: &[u8]) -> bool {
    fs::read(mirror.join("sha256").join(sha(content))).is_ok_and(|c| c == content)
}

#[test]
fn a_500_then_success_is_retried() {
    let server = Server::start();
    let body = bytes(50_000, 1);
    let url = server.route("/a.tar.gz", Behavior::FailThenServe(2, body.clone()));
    let p = Project::with(&[("a.tar.gz", &body, vec![url.clone()])]);
    p.fetch(&[])
        .success()
        .stdout(predicate::str::contains(
            "1 fetched, 0 already present, 0 failed",
        ))
        .stderr(predicate::str::contains(format!(
            "fetched  a.tar.gz  from {url}"
        )));
    assert_eq!(server.requests("/a.tar.gz").len(), 3);
    assert!(stored(&p.mirror(), &body));
    assert_mirror_clean(&p.mirror());
}

#[test]
fn a_connection_dropped_mid_body_resumes_with_range() {
    let server = Server::start();
    let body = bytes(300_000, 2);
    let url = server.route("/b.tar.gz", Behavior::DropMidBody(body.clone(), 120_000));
    let p = Project::with(&[("b.tar.gz", &body, vec![url])]);
    p.fetch(&[]).success();
    let requests = server.requests("/b.tar.gz");
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].range, None);
    assert_eq!(requests[1].range.as_deref(), Some("bytes=120000-"));
    assert!(stored(&p.mirror(), &body));
    assert_mirror_clean(&p.mirror());
}

#[test]
fn a_server_that_ignores_range_is_read_from_the_start() {
    let server = Server::start();
    let body = bytes(300_000, 3);
    let url = server.route("/c.tar.gz", Behavior::IgnoreRange(body.clone(), 100_000));
    let p = Project::with(&[("c.tar.gz", &body, vec![url])]);
    p.fetch(&[]).success();
    let requests = server.requests("/c.tar.gz");
    assert_eq!(requests[1].range.as_deref(), Some("bytes=100000-"));
    // The 200 replaced the partial file instead of being appended to it.
    assert!(stored(&p.mirror(), &body));
    assert_mirror_clean(&p.mirror());
}

#[test]
fn wrong_bytes_never_land() {
    let server = Server::start();
    let body = bytes(20_000, 4);
    let mut wrong = body.clone();
    wrong[10_000] ^= 0xff;
    let url = server.route("/d.tar.gz", Behavior::Serve(wrong.clone()));
    let p = Project::with(&[("d.tar.gz", &body, vec![url.clone()])]);
    p.fetch(&[])
        .code(1)
        .stdout(
            predicate::str::contains("0 fetched, 0 already present, 1 failed")
                .and(predicate::str::contains(format!(
                    "{url}: checksum mismatch for d.tar.gz"
                )))
                .and(predicate::str::contains(format!(
                    "expected sha256 {} (20000 bytes)",
                    sha(&body)
                )))
                .and(predicate::str::contains(format!(
                    "actual   sha256 {} (20000 bytes)",
                    sha(&wrong)
                ))),
        )
        .stderr(predicate::str::contains("the mirror holds none of them"));
    assert!(!p.mirror().join("sha256").join(sha(&body)).exists());
    assert!(!p.mirror().join("by-name/d.tar.gz").exists());
    assert_mirror_clean(&p.mirror());
}

#[test]
fn a_short_body_fails_after_its_tries() {
    let server = Server::start();
    let body = bytes(20_000, 5);
    let url = server.route("/e.tar.gz", Behavior::Short(body.clone(), 15_000));
    let p = Project::with(&[("e.tar.gz", &body, vec![url.clone()])]);
    p.fetch(&[])
        .code(1)
        .stdout(predicate::str::contains(format!(
            "{url}: short body: 15000 of 20000 bytes (gave up after 3 tries)"
        )));
    assert!(!stored(&p.mirror(), &body));
    assert_mirror_clean(&p.mirror());
}

#[test]
fn a_redirect_is_followed() {
    let server = Server::start();
    let body = bytes(10_000, 6);
    server.route("/real/f.tar.gz", Behavior::Serve(body.clone()));
    let url = server.route(
        "/f.tar.gz",
        Behavior::Redirect(server.url("/real/f.tar.gz")),
    );
    let p = Project::with(&[("f.tar.gz", &body, vec![url])]);
    p.fetch(&[]).success();
    assert_eq!(server.requests("/real/f.tar.gz").len(), 1);
    assert!(stored(&p.mirror(), &body));
}

#[test]
fn a_stalled_body_times_out_and_the_next_url_serves() {
    let server = Server::start();
    let body = bytes(200_000, 7);
    let stalled = server.route("/g-stalled.tar.gz", Behavior::Stall(body.clone(), 50_000));
    let p = Project::with(&[("g.tar.gz", &body, vec![stalled.clone()])]);
    let started = std::time::Instant::now();
    p.cmd()
        .args([
            "mirror",
            "fetch",
            "--timeout",
            "1",
            "--tries",
            "2",
            "--backoff-ms",
            "50",
        ])
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains(format!("{stalled}: the transfer broke off: "))
                .and(predicate::str::contains("gave up after 2 tries")),
        );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "it did not time out"
    );
    assert!(!stored(&p.mirror(), &body));
    assert_mirror_clean(&p.mirror());

    // With a second URL it fails over, and resumes the 50 000 bytes it has.
    let good = server.route("/g.tar.gz", Behavior::Serve(body.clone()));
    let p2 = Project::with(&[("g.tar.gz", &body, vec![stalled, good])]);
    p2.cmd()
        .args(["mirror", "fetch", "--timeout", "1", "--tries", "1"])
        .assert()
        .success();
    assert!(stored(&p2.mirror(), &body));
    assert_eq!(
        server.requests("/g.tar.gz")[0].range.as_deref(),
        Some("bytes=50000-")
    );
}

#[test]
fn a_dead_url_fails_over_to_the_next_then_to_a_from_mirror() {
    let server = Server::start();
    let body = bytes(10_000, 8);
    let dead = server.route("/gone/h.tar.gz", Behavior::NotFound);
    let alive = server.route("/h.tar.gz", Behavior::Serve(body.clone()));
    let p = Project::with(&[("h.tar.gz", &body, vec![dead.clone(), alive.clone()])]);
    p.fetch(&[])
        .success()
        .stderr(predicate::str::contains(format!("from {alive}")));
    assert_eq!(
        server.requests("/gone/h.tar.gz").len(),
        1,
        "a 404 is not retried"
    );

    // Only dead URLs: a --from URL base, then a --from directory.
    let other = Project::with(&[("h.tar.gz", &body, vec![dead.clone()])]);
    server.route("/mirror/h.tar.gz", Behavior::Serve(body.clone()));
    other
        .fetch(&["--from", &server.url("/mirror")])
        .success()
        .stderr(predicate::str::contains(format!(
            "from {}",
            server.url("/mirror/h.tar.gz")
        )));
    let third = Project::with(&[("h.tar.gz", &body, vec![dead])]);
    third
        .fetch(&["--from", &other.mirror().display().to_string()])
        .success()
        .stderr(predicate::str::contains(format!(
            "from mirror {}",
            other.mirror().display()
        )));
    assert!(stored(&third.mirror(), &body));
}

#[test]
fn files_download_in_parallel_and_a_shared_file_is_stored_once() {
    let server = Server::start();
    let mut entries = Vec::new();
    let bodies: Vec<Vec<u8>> = (0..6).map(|i| bytes(5_000, 20 + i)).collect();
    for (i, body) in bodies.iter().enumerate() {
        let url = server.route(
            &format!("/p{i}"),
            Behavior::Latency(std::time::Duration::from_millis(400), body.clone()),
        );
        entries.push((format!("p{i}.tar"), body.as_slice(), vec![url]));
    }
    // The same bytes under a second name, as when upstream renames a file.
    let renamed_url = server.route("/renamed", Behavior::Serve(bodies[0].clone()));
    entries.push((
        "renamed.tar".to_string(),
        bodies[0].as_slice(),
        vec![renamed_url],
    ));
    let refs: Vec<(&str, &[u8], Vec<String>)> = entries
        .iter()
        .map(|(n, b, u)| (n.as_str(), *b, u.clone()))
        .collect();
    let p = Project::with(&refs);
    let started = std::time::Instant::now();
    p.fetch(&["--jobs", "6"]).success();
    // Six 400 ms responses one after another would take 2.4 s.
    assert!(
        started.elapsed() < std::time::Duration::from_millis(2000),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fs::read_dir(p.mirror().join("sha256")).unwrap().count(), 6);
    assert_eq!(
        fs::read_link(p.mirror().join("by-name/renamed.tar")).unwrap(),
        fs::read_link(p.mirror().join("by-name/p0.tar")).unwrap()
    );
    p.fetch(&[])
        .success()
        .stdout(predicate::str::contains("0 fetched, 7 already present"));
}

#[test]
fn verify_reports_missing_corrupt_and_unreferenced_files() {
    let a = bytes(1000, 30);
    let b = bytes(1000, 31);
    let incoming = tempfile::tempdir().unwrap();
    fs::write(incoming.path().join("whatever-name"), &a).unwrap();
    fs::write(incoming.path().join("b-under-another-name"), &b).unwrap();
    let p = Project::with(&[
        ("a.tar", &a, vec!["https://example.org/a.tar".into()]),
        ("b.tar", &b, vec!["https://example.org/b.tar".into()]),
    ]);
    p.cmd()
        .args(["mirror", "import"])
        .arg(incoming.path())
        .assert()
        .success()
        .stdout(predicate::str::contains("2 file(s) matched the lock"));
    p.cmd().args(["mirror", "verify"]).assert().success();

    let stored_b = p.mirror().join("sha256").join(sha(&b));
    fs::set_permissions(
        &stored_b,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    fs::write(&stored_b, b"tampered").unwrap();
    fs::write(p.mirror().join("sha256").join(sha(b"stray")), b"stray").unwrap();
    let out = p
        .cmd()
        .args(["mirror", "verify", "--json"])
        .assert()
        .code(2);
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(
        report["files"][0],
        serde_json::json!(["a.tar", {"state": "ok"}])
    );
    assert_eq!(
        report["files"][1],
        serde_json::json!(["b.tar", {"state": "corrupt", "actual": sha(b"tampered")}])
    );
    assert_eq!(
        report["unreferenced"],
        serde_json::json!([format!("sha256/{}", sha(b"stray"))])
    );
    fs::remove_file(p.mirror().join("sha256").join(sha(&a))).unwrap();
    p.cmd()
        .args(["mirror", "verify"])
        .assert()
        .code(2)
        .stdout(predicate::str::contains("MISSING  a.tar"))
        .stderr(predicate::str::contains("2 file(s) missing or corrupt"));
}

#[test]
fn pack_then_unpack_carries_a_mirror_and_a_flipped_byte_is_caught() {
    let a = bytes(40_000, 40);
    let b = bytes(40_000, 41);
    let incoming = tempfile::tempdir().unwrap();
    fs::write(incoming.path().join("a"), &a).unwrap();
    fs::write(incoming.path().join("b"), &b).unwrap();
    let urls = |n: &str| vec![format!("https://example.org/{n}")];
    let p = Project::with(&[("a.tar", &a, urls("a.tar")), ("b.tar", &b, urls("b.tar"))]);
    p.cmd()
        .args(["mirror", "import"])
        .arg(incoming.path())
        .assert()
        .success();
    let pack = p.dir.path().join("mirror.pack.tar");
    p.cmd()
        .args(["mirror", "pack"])
        .arg(&pack)
        .assert()
        .success()
        .stdout(predicate::str::contains("packed 2 file(s)"));

    let empty = tempfile::tempdir().unwrap();
    let unpack = |pack: &Path| {
        common::stagebuild(p.dir.path(), None, Some(&empty.path().join("m")))
            .args(["mirror", "unpack"])
            .arg(pack)
            .assert()
    };
    unpack(&pack)
        .success()
        .stdout(predicate::str::contains("2 file(s) verified and unpacked"));
    common::stagebuild(p.dir.path(), None, Some(&empty.path().join("m")))
        .args(["mirror", "verify"])
        .assert()
        .success();

    // Flip one byte inside b's data.
    let mut bytes_of_pack = fs::read(&pack).unwrap();
    let at = bytes_of_pack
        .windows(64)
        .position(|w| w == &b[1000..1064])
        .unwrap();
    bytes_of_pack[at] ^= 1;
    let bad_pack = p.dir.path().join("bad.pack.tar");
    fs::write(&bad_pack, &bytes_of_pack).unwrap();
    fs::remove_dir_all(empty.path().join("m")).unwrap();
    unpack(&bad_pack)
        .code(2)
        .stderr(predicate::str::contains("checksum mismatch for b.tar").and(
            predicate::str::contains(format!("expected sha256 {}", sha(&b))),
        ));
    assert_mirror_clean(&empty.path().join("m"));
    assert!(!empty.path().join("m/sha256").join(sha(&b)).exists());
}

#[test]
fn lock_add_pins_a_file_and_never_changes_a_checksum_silently() {
    let server = Server::start();
    let p = Project::with(&[]);
    let lock_path = p.dir.path().join("sources.lock");
    fs::write(
        &lock_path,
        "# pinned sources\nversion: 1\nsources:\n  # kept comment\n",
    )
    .unwrap();
    let file = p.dir.path().join("tool-1.0.tar.gz");
    fs::write(&file, bytes(3000, 50)).unwrap();
    p.cmd()
        .args(["lock", "add"])
        .arg(&file)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "say where it is published with --url",
        ));
    let url_args = ["--url", "https://example.org/tool-1.0.tar.gz"];
    p.cmd()
        .args(["lock", "add"])
        .arg(&file)
        .args(url_args)
        .assert()
        .success()
        .stdout(predicate::str::contains("pinned tool-1.0.tar.gz"));
    let text = fs::read_to_string(&lock_path).unwrap();
    assert!(
        text.contains("# kept comment") && text.contains(&sha(&bytes(3000, 50))),
        "{text}"
    );
    p.cmd().args(["mirror", "verify"]).assert().success();

    // A changed file under the same name needs --update.
    fs::write(&file, bytes(3000, 51)).unwrap();
    p.cmd()
        .args(["lock", "add"])
        .arg(&file)
        .args(url_args)
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("Pass --update")
                .and(predicate::str::contains(sha(&bytes(3000, 50)))),
        );
    assert_eq!(fs::read_to_string(&lock_path).unwrap(), text);
    p.cmd()
        .args(["lock", "add", "--update"])
        .arg(&file)
        .args(url_args)
        .assert()
        .success();
    let updated = fs::read_to_string(&lock_path).unwrap();
    assert_eq!(
        updated,
        text.replace(&sha(&bytes(3000, 50)), &sha(&bytes(3000, 51)))
    );

    // From a URL, with a name.
    let url = server.route("/dl?id=7", Behavior::Serve(bytes(2000, 52)));
    p.cmd()
        .args(["lock", "add", &url, "--name", "other-2.0.tar.xz"])
        .assert()
        .success();
    let text = fs::read_to_string(&lock_path).unwrap();
    assert!(
        text.contains("name: other-2.0.tar.xz") && text.contains(&url),
        "{text}"
    );
    p.cmd().args(["mirror", "verify"]).assert().success();
}

fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .env("GIT_AUTHOR_DATE", "2024-01-02T03:04:05Z")
        .env("GIT_COMMITTER_DATE", "2024-01-02T03:04:05Z")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.org")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.org")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn a_git_source_gives_the_same_tarball_whatever_the_tz_and_umask() {
    let upstream = tempfile::tempdir().unwrap();
    let repo = upstream.path();
    git(repo, &["init", "-q"]);
    fs::create_dir_all(repo.join("src/deep")).unwrap();
    fs::write(repo.join("README"), "hello\n").unwrap();
    fs::write(repo.join("src/a.c"), "int a;\n").unwrap();
    fs::write(repo.join("src/deep/b.c"), "int b;\n").unwrap();
    fs::write(repo.join("configure"), "#!/bin/sh\necho ok\n").unwrap();
    fs::set_permissions(
        repo.join("configure"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("src/a.c", repo.join("link.c")).unwrap();
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "one"]);
    let commit = git(repo, &["rev-parse", "HEAD"]);
    // Another commit after it: the pinned one is still what is packed.
    fs::write(repo.join("README"), "changed\n").unwrap();
    git(repo, &["commit", "-q", "-am", "two"]);

    let mut expected = Vec::new();
    stagebuild::mirror::git::write_tarball(&repo.join(".git"), &commit, "tool-1", &mut expected)
        .unwrap();
    let lock = format!(
        "version: 1\nsources:\n  - name: tool-1.tar\n    sha256: {}\n    size: {}\n    git: {}\n    commit: {commit}\n",
        sha(&expected),
        expected.len(),
        repo.display()
    );
    let mut shas = Vec::new();
    for (tz, umask) in [("UTC", "022"), ("Pacific/Kiritimati", "077")] {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("sources.lock"), &lock).unwrap();
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
            .arg(assert_cmd::cargo::cargo_bin("stagebuild"))
            .arg("--project")
            .arg(dir.path())
            .args(["mirror", "fetch"])
            .env("TZ", tz)
            .status()
            .unwrap();
        assert!(status.success(), "fetch with TZ={tz} umask {umask}");
        let stored = fs::read(dir.path().join("mirror/by-name/tool-1.tar")).unwrap();
        shas.push(sha(&stored));
    }
    assert_eq!(shas[0], shas[1]);
    assert_eq!(shas[0], sha(&expected));

    let listing = Command::new("tar")
        .arg("tvf")
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    listing
        .stdin
        .as_ref()
        .unwrap()
        .write_all(&expected)
        .unwrap();
    let listing = String::from_utf8(listing.wait_with_output().unwrap().stdout).unwrap();
    assert!(
        listing.contains("-rwxr-xr-x 0/0") && listing.contains("tool-1/configure"),
        "{listing}"
    );
    assert!(listing.contains("tool-1/link.c -> src/a.c"), "{listing}");
    assert!(
        listing.contains("2024-01-02 03:04"),
        "mtime is the commit's: {listing}"
    );
    let paths: Vec<&str> = listing
        .lines()
        .map(|l| l.split(" -> ").next().unwrap().rsplit(' ').next().unwrap())
        .collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
}

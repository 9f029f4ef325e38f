//! Sources without the network (`--offline`), and sources from a
//! distribution's archive (`lock add --apt`), through the real binary.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::Ordering;

use common::Fixture;
use common::http::{Behavior, Server};
use predicates::prelude::*;
use sha2::{Digest, Sha256};

/// The tiny fixture, with its tarball's URL on a local server that counts
/// every connection.
fn fixture_served() -> (Fixture, Server) {
    let f = Fixture::tiny();
    let server = Server::start();
    let tarball = fs::read(f.root().join("incoming/hello-1.0.tar.gz")).unwrap();
    let url = server.route("/hello-1.0.tar.gz", Behavior::Serve(tarball));
    let lock = fs::read_to_string(f.project().join("sources.lock")).unwrap();
    f.write(
        "sources.lock",
        lock.replace("https://example.org/hello-1.0.tar.gz", &url),
    );
    (f, server)
}

#[test]
fn offline_fails_clearly_for_a_missing_file_and_makes_no_connection() {
    let (f, server) = fixture_served();
    let url = server.url("/hello-1.0.tar.gz");
    let says_what_is_missing = || {
        predicate::str::contains("hello-1.0.tar.gz (sha256 ")
            .and(predicate::str::contains(format!("would have tried {url}")))
            .and(predicate::str::contains("--offline allows no download"))
            .and(predicate::str::contains("mirror import DIR"))
    };

    f.cmd()
        .args(["mirror", "fetch", "--offline"])
        .assert()
        .code(2)
        .stderr(says_what_is_missing());
    f.cmd()
        .args(["run", "--target", "t", "--offline"])
        .assert()
        .code(2)
        .stderr(says_what_is_missing());
    f.cmd()
        .args(["mirror", "fetch", "--offline", "--from", &server.url("/")])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is a URL; give directories only"));
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);
    assert!(!f.state().exists(), "a refused run wrote its state");

    // From a local directory it needs no network either.
    let incoming = f.root().join("incoming");
    f.cmd()
        .args(["run", "--target", "t", "--offline", "--from"])
        .arg(&incoming)
        .assert()
        .success();
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);

    // The counter counts: without --offline, the same fetch connects.
    fs::remove_dir_all(f.mirror()).unwrap();
    f.cmd().args(["mirror", "fetch"]).assert().success();
    assert!(server.connections.load(Ordering::SeqCst) > 0);
}

#[test]
fn mirror_fetch_offline_copies_from_directories_by_name_or_as_a_mirror() {
    let (f, server) = fixture_served();
    f.cmd()
        .args(["mirror", "fetch", "--offline", "--from"])
        .arg(f.root().join("incoming"))
        .assert()
        .success()
        .stdout(predicate::str::contains("1 copied from local directories"));
    // Another stagebuild mirror is a directory too.
    let other = Fixture::tiny();
    fs::write(
        other.project().join("sources.lock"),
        fs::read(f.project().join("sources.lock")).unwrap(),
    )
    .unwrap();
    other
        .cmd()
        .args(["mirror", "fetch", "--offline", "--from"])
        .arg(f.mirror())
        .assert()
        .success();
    other.cmd().args(["mirror", "verify"]).assert().success();
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);
}

/// A stand-in for apt-get that does what the real one does when a source
/// package's orig tarball arrives but another of its files does not: it
/// writes what it got and exits 100. (The real archive cannot be made to
/// lose a file on demand; this is the one fault injected here.)
fn fake_apt_get(dir: &std::path::Path, orig: &[u8], dsc_sha256: &str) -> std::path::PathBuf {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    fs::write(dir.join("orig"), orig).unwrap();
    let script = format!(
        "#!/bin/sh\ncp '{orig}' foo_1.0.orig.tar.gz\nprintf 'Format: 3.0 (quilt)\\nSource: foo\\nChecksums-Sha256:\\n {dsc_sha256} {size} foo_1.0.orig.tar.gz\\n 0000000000000000000000000000000000000000000000000000000000000000 10 foo_1.0-1.debian.tar.xz\\n' > foo_1.0-1.dsc\necho 'E: Failed to fetch foo_1.0-1.debian.tar.xz  404  Not Found' >&2\nexit 100\n",
        orig = dir.join("orig").display(),
        size = orig.len(),
    );
    let apt = bin.join("apt-get");
    fs::write(&apt, script).unwrap();
    fs::set_permissions(&apt, fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

#[test]
fn lock_add_apt_accepts_the_orig_when_apt_get_fails_for_another_file_and_checks_the_dsc() {
    let f = Fixture::tiny();
    f.import_sources();
    let orig = common::make_tarball(&[("foo-1.0/a", b"a")]);
    let sha256 = hex::encode(Sha256::digest(&orig));
    let path = format!(
        "{}:{}",
        fake_apt_get(f.root(), &orig, &sha256).display(),
        std::env::var("PATH").unwrap()
    );
    f.cmd()
        .env("PATH", &path)
        .args(["lock", "add", "--apt", "foo=1.0-1"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "pinned foo_1.0.orig.tar.gz: sha256 {sha256}"
        )));
    let lock = fs::read_to_string(f.project().join("sources.lock")).unwrap();
    assert!(
        lock.contains(
            "apt: { package: \"foo\", version: \"1.0-1\", file: \"foo_1.0.orig.tar.gz\" }"
        ),
        "{lock}"
    );
    assert_eq!(
        fs::read(f.mirror().join("by-name/foo_1.0.orig.tar.gz")).unwrap(),
        orig
    );

    // mirror fetch takes it through apt the same way.
    fs::remove_file(f.mirror().join("sha256").join(&sha256)).unwrap();
    f.cmd()
        .env("PATH", &path)
        .args(["mirror", "fetch"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "foo_1.0.orig.tar.gz  from apt-get source foo=1.0-1",
        ));
    f.cmd().args(["mirror", "verify"]).assert().success();

    // A file that does not match the package's own .dsc is refused.
    let g = Fixture::tiny();
    let path = format!(
        "{}:{}",
        fake_apt_get(g.root(), &orig, &"0".repeat(64)).display(),
        std::env::var("PATH").unwrap()
    );
    let before = fs::read_to_string(g.project().join("sources.lock")).unwrap();
    g.cmd()
        .env("PATH", &path)
        .args(["lock", "add", "--apt", "foo=1.0-1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "checksum mismatch for foo_1.0.orig.tar.gz",
        ));
    assert_eq!(
        fs::read_to_string(g.project().join("sources.lock")).unwrap(),
        before
    );
}

/// Needs the network to the Debian archive (deb-src; scripts/setup-debian.sh).
#[test]
fn lock_add_apt_records_and_fetches_a_real_debian_source_package() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("p");
    let stagebuild = || common::stagebuild(&project, None, None);
    stagebuild().arg("init").arg(&project).assert().success();
    stagebuild()
        .args(["lock", "add", "--apt", "bzip2=1.0.8-5"])
        .args(["--url", "https://sourceware.org/pub/bzip2/bzip2-1.0.8.tar.gz"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "pinned bzip2-1.0.8.tar.gz: sha256 ab5a03176ee106d3f0fa90e381da478ddae405918153cca248e682cd0c4a2269, 810029 bytes",
        ));
    let lock = fs::read_to_string(project.join("sources.lock")).unwrap();
    assert!(
        lock.contains(
            "apt: { package: \"bzip2\", version: \"1.0.8-5\", file: \"bzip2_1.0.8.orig.tar.gz\" }"
        ),
        "{lock}"
    );
    assert!(lock.contains("- https://sourceware.org/pub/bzip2/bzip2-1.0.8.tar.gz\n"));
    stagebuild().args(["mirror", "verify"]).assert().success();
    // Adding it again changes nothing.
    stagebuild()
        .args(["lock", "add", "--apt", "bzip2=1.0.8-5"])
        .args([
            "--url",
            "https://sourceware.org/pub/bzip2/bzip2-1.0.8.tar.gz",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("already pinned"));
    assert_eq!(
        fs::read_to_string(project.join("sources.lock")).unwrap(),
        lock
    );
}

//! The shared cache on a real S3 server (SeaweedFS), with the tiny host
//! project: push, pull, damaged and missing objects, a server killed in the
//! middle of a pull, signatures, garbage collection and a read-only mirror.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::s3::{KillingProxy, S3Server, is_empty_dir};
use common::{Fixture, manifests};
use predicates::prelude::*;

fn fixture() -> Fixture {
    let f = Fixture::tiny();
    f.import_sources();
    f
}

/// stagebuild on the fixture's project and mirror, with its own state and
/// the server's credentials.
fn stagebuild(f: &Fixture, state: &Path, server: &S3Server) -> assert_cmd::Command {
    let mut cmd = common::stagebuild(&f.project(), Some(state), Some(&f.mirror()));
    server.configure(&mut cmd);
    cmd
}

/// State A: builds target t with the cache, which pushes both steps.
fn build_and_push(f: &Fixture, server: &S3Server, prefix: &str) -> PathBuf {
    let state = f.root().join("state-a");
    stagebuild(f, &state, server)
        .args(["--cache", &server.url(prefix), "run", "--target", "t"])
        .assert()
        .success()
        .stderr(predicate::str::contains("pushed 2 checkpoints"));
    state
}

fn key_of(state: &Path, step: &str) -> String {
    let record = common::record(state, "t");
    record["steps"][step]["key"].as_str().unwrap().to_string()
}

/// The blob of the one file in a step's output.
fn only_blob(state: &Path, step: &str, path: &str) -> String {
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(
            state
                .join("checkpoints")
                .join(key_of(state, step))
                .join("manifest.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let entry = manifest
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == path)
        .unwrap();
    format!("blobs/{}", entry["sha256"].as_str().unwrap())
}

/// Runs t on a new, empty state B with the cache; returns it.
fn run_b(f: &Fixture, server: &S3Server, cache: &str, name: &str) -> (PathBuf, String) {
    let state = f.root().join(name);
    let out = stagebuild(f, &state, server)
        .args(["--cache", cache, "run", "--target", "t"])
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    (state, stderr)
}

/// Nothing half-restored anywhere: only complete checkpoints, an empty staging area.
fn assert_consistent(state: &Path, reference: &Path) {
    assert_eq!(manifests(state, "t"), manifests(reference, "t"));
    let mut keys: Vec<_> = fs::read_dir(state.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    keys.sort();
    let mut expected = vec![key_of(reference, "hello"), key_of(reference, "greet")];
    expected.sort();
    assert_eq!(keys, expected);
    assert!(
        is_empty_dir(&state.join("tmp/cache")),
        "staging left behind"
    );
}

#[test]
fn a_second_state_pulls_every_step_and_damaged_or_missing_objects_are_built_instead() {
    let f = fixture();
    let server = S3Server::start();
    let a = build_and_push(&f, &server, "team");

    let (b, stderr) = run_b(&f, &server, &server.url("team"), "state-b");
    assert!(stderr.contains("hello: pulled from the cache"), "{stderr}");
    assert!(stderr.contains("greet: pulled from the cache"), "{stderr}");
    assert!(stderr.contains("0 built, 2 restored"), "{stderr}");
    assert_consistent(&b, &a);
    // The pulled program runs.
    let hello = b
        .join("checkpoints")
        .join(key_of(&a, "hello"))
        .join("tree/usr/bin/hello");
    let out = std::process::Command::new(hello).output().unwrap();
    assert_eq!(out.stdout, b"hello from a sandbox\n");

    // --fresh builds every step here, and `--cache off` beats the environment.
    stagebuild(&f, &b, &server)
        .args([
            "--cache",
            &server.url("team"),
            "run",
            "--target",
            "t",
            "--fresh",
        ])
        .assert()
        .success()
        .stderr(
            predicate::str::contains("2 built, 0 restored")
                .and(predicate::str::contains("pulled from the cache").not()),
        );
    assert_consistent(&b, &a);
    stagebuild(&f, &f.root().join("state-off"), &server)
        .env("STAGEBUILD_CACHE", server.url("team"))
        .args(["--cache", "off", "run", "--target", "t"])
        .assert()
        .success()
        .stderr(
            predicate::str::contains("2 built, 0 restored")
                .and(predicate::str::contains("cache").not()),
        );

    // Damage hello's program in the cache, three ways; each time hello is
    // built here, greet is still pulled, and B ends up as A.
    let blob = only_blob(&a, "hello", "usr/bin/hello");
    let good = server.read("team", &blob);
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x01;
    let cases: [(&str, Option<Vec<u8>>, &str); 3] = [
        ("flipped", Some(flipped), "expected sha256"),
        (
            "truncated",
            Some(good[..good.len() / 3].to_vec()),
            "expected sha256",
        ),
        ("missing", None, "is missing from the cache"),
    ];
    for (name, damage, why) in cases {
        match &damage {
            Some(bytes) => server.overwrite("team", &blob, bytes),
            None => server.remove("team", &blob),
        }
        let (b, stderr) = run_b(&f, &server, &server.url("team"), &format!("state-{name}"));
        assert!(
            stderr.contains("hello: not pulled from the cache") && stderr.contains(why),
            "{name}: {stderr}"
        );
        assert!(stderr.contains("[1/2] hello: built"), "{name}: {stderr}");
        assert!(
            stderr.contains("greet: pulled from the cache"),
            "{name}: {stderr}"
        );
        assert_consistent(&b, &a);
        server.overwrite("team", &blob, &good);
    }

    // `cache pull` fills a state by hand; a run then restores every step.
    let pulled = f.root().join("state-pull");
    stagebuild(&f, &pulled, &server)
        .args([
            "--cache",
            &server.url("team"),
            "cache",
            "pull",
            "--target",
            "t",
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains("pulled 2 checkpoints"));
    stagebuild(&f, &pulled, &server)
        .args(["run", "--target", "t"])
        .assert()
        .success()
        .stderr(predicate::str::contains("0 built, 2 restored"));
    assert_consistent(&pulled, &a);

    // `cache verify` passes, and finds a damaged object.
    let mut cmd = stagebuild(&f, &a, &server);
    cmd.args(["--cache", &server.url("team"), "cache", "verify"])
        .assert()
        .success();
    server.overwrite("team", &blob, b"not the program");
    let mut cmd = stagebuild(&f, &a, &server);
    cmd.args(["--cache", &server.url("team"), "cache", "verify"])
        .assert()
        .failure()
        .stdout(predicate::str::contains(format!(
            "{} (of",
            &blob["blobs/".len()..]
        )));
}

#[test]
fn a_server_killed_in_the_middle_of_a_pull_leaves_the_step_to_be_built() {
    let f = fixture();
    let mut server = S3Server::start();
    let a = build_and_push(&f, &server, "team");
    // The server dies when B asks for greet's file, after hello was pulled
    // and greet's descriptor was read.
    let blob = only_blob(&a, "greet", "greeting");
    let proxy = KillingProxy::start(server.s3_port, blob, server.pid());
    let state = f.root().join("state-b");
    let mut cmd = stagebuild(&f, &state, &server);
    let out = cmd
        .env(
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", proxy.port),
        )
        .args(["--cache", &server.url("team"), "run", "--target", "t"])
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(proxy.fired.load(std::sync::atomic::Ordering::SeqCst));
    assert!(stderr.contains("hello: pulled from the cache"), "{stderr}");
    assert!(
        stderr.contains("greet: not pulled from the cache"),
        "{stderr}"
    );
    assert!(stderr.contains("[2/2] greet: built"), "{stderr}");
    // Its push fails too, as a warning: the build succeeded.
    assert!(stderr.contains("warning: could not push greet"), "{stderr}");
    assert_consistent(&state, &a);
    server.kill();
}

#[test]
fn with_trusted_keys_only_their_signatures_are_pulled() {
    let f = fixture();
    let server = S3Server::start();
    let keygen = |name: &str| {
        let path = f.root().join(name);
        let out = assert_cmd::Command::cargo_bin("stagebuild")
            .unwrap()
            .args(["cache", "keygen"])
            .arg(&path)
            .assert()
            .success();
        let public = String::from_utf8_lossy(&out.get_output().stdout)
            .trim()
            .to_string();
        (path, public)
    };
    let (alice, alice_public) = keygen("alice.key");
    let (mallory, _) = keygen("mallory.key");
    f.write(
        "cache.yaml",
        format!("trusted_keys:\n  - name: alice\n    key: {alice_public}\n"),
    );
    let push = |key: Option<&Path>, prefix: &str| {
        let state = f.root().join(format!("state-{prefix}"));
        let mut cmd = stagebuild(&f, &state, &server);
        if let Some(key) = key {
            cmd.env("STAGEBUILD_CACHE_SIGNING_KEY", key);
        }
        cmd.args(["--cache", &server.url(prefix), "run", "--target", "t"])
            .assert()
            .success()
            .stderr(predicate::str::contains("pushed 2 checkpoints"));
        state
    };
    let a = push(Some(&alice), "alice");
    push(Some(&mallory), "mallory");
    push(None, "unsigned");

    let (b, stderr) = run_b(&f, &server, &server.url("mallory"), "b-mallory");
    assert!(
        stderr.contains("hello: not pulled from the cache (it is signed by key")
            && stderr.contains("which the project's cache.yaml does not list"),
        "{stderr}"
    );
    assert!(stderr.contains("2 built, 0 restored"), "{stderr}");
    assert_consistent(&b, &a);

    let (_, stderr) = run_b(&f, &server, &server.url("unsigned"), "b-unsigned");
    assert!(stderr.contains("it is not signed"), "{stderr}");
    assert!(stderr.contains("2 built, 0 restored"), "{stderr}");

    let (b, stderr) = run_b(&f, &server, &server.url("alice"), "b-alice");
    assert!(stderr.contains("0 built, 2 restored"), "{stderr}");
    assert_consistent(&b, &a);

    stagebuild(&f, &f.root().join("b-alice-by-hand"), &server)
        .args([
            "--cache",
            &server.url("alice"),
            "cache",
            "pull",
            "--target",
            "t",
        ])
        .assert()
        .success()
        .stderr(
            predicate::str::contains("greet: pulled 1 files")
                .and(predicate::str::contains("signed by alice").count(2)),
        );

    // A descriptor altered after signing is refused too.
    let name = format!("checkpoints/{}.json", key_of(&a, "greet"));
    let text = String::from_utf8(server.read("alice", &name)).unwrap();
    server.overwrite("alice", &name, text.replace("\"1\"", "\"2\"").as_bytes());
    let (_, stderr) = run_b(&f, &server, &server.url("alice"), "b-altered");
    assert!(
        stderr.contains("its signature by alice does not match"),
        "{stderr}"
    );
    assert!(stderr.contains("1 built, 1 restored"), "{stderr}");
}

#[test]
fn gc_keeps_what_the_targets_reference_and_a_read_only_mirror_serves_pulls() {
    let f = fixture();
    let server = S3Server::start();
    let a = build_and_push(&f, &server, "team");
    let old_greet = key_of(&a, "greet");
    let old_greeting = only_blob(&a, "greet", "greeting");
    // greet changes: a new key and a new greeting, so the old one is named
    // by the old checkpoint only.
    f.write(
        "steps/greet.yaml",
        "name: greet\nversion: \"2\"\ndescription: Shouts hello from the sysroot.\nbuild: |\n  /sysroot/usr/bin/hello | tr a-z A-Z > \"$OUT/greeting\"\n  chmod -R go-w \"$OUT\"\n",
    );
    stagebuild(&f, &a, &server)
        .args([
            "--cache",
            &server.url("team"),
            "run",
            "--target",
            "t",
            "--resume",
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains("pushed 1 checkpoints"));
    assert_eq!(server.names("team", "checkpoints").len(), 3);
    let blobs_before = server.names("team", "blobs");
    assert!(blobs_before.contains(&old_greeting["blobs/".len()..].to_string()));

    // gc --dry-run names the old checkpoint and removes nothing; gc removes
    // it and the blob only it named, and keeps the rest.
    let mut cmd = stagebuild(&f, &a, &server);
    cmd.args(["--cache", &server.url("team"), "cache", "gc", "--dry-run"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "would remove checkpoint {old_greet}"
        )));
    assert_eq!(server.names("team", "checkpoints").len(), 3);
    assert_eq!(server.names("team", "blobs"), blobs_before);
    let mut cmd = stagebuild(&f, &a, &server);
    cmd.args(["--cache", &server.url("team"), "cache", "gc"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains(format!("removed checkpoint {old_greet}")).and(
                predicate::str::contains("removed 1 checkpoints and 1 files"),
            ),
        );
    let mut kept = vec![
        format!("{}.json", key_of(&a, "hello")),
        format!("{}.json", key_of(&a, "greet")),
    ];
    kept.sort();
    assert_eq!(server.names("team", "checkpoints"), kept);
    let blobs_after = server.names("team", "blobs");
    let expected: Vec<String> = blobs_before
        .iter()
        .filter(|b| **b != old_greeting["blobs/".len()..])
        .cloned()
        .collect();
    assert_eq!(blobs_after, expected);
    let mut cmd = stagebuild(&f, &a, &server);
    cmd.args(["--cache", &server.url("team"), "cache", "verify"])
        .assert()
        .success();

    // A blob nothing names is removed.
    server.overwrite("team", &format!("blobs/{}", "0".repeat(64)), b"stray");
    let mut cmd = stagebuild(&f, &a, &server);
    cmd.args(["--cache", &server.url("team"), "cache", "gc"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "removed 0 checkpoints and 1 files",
        ));
    assert_eq!(server.names("team", "blobs"), blobs_after);

    // The same layout over plain HTTP: pull only.
    let (b, stderr) = run_b(&f, &server, &server.mirror_url("team"), "state-mirror");
    assert!(stderr.contains("0 built, 2 restored"), "{stderr}");
    assert_consistent(&b, &a);
    let mut cmd = stagebuild(&f, &a, &server);
    cmd.args([
        "--cache",
        &server.mirror_url("team"),
        "cache",
        "push",
        "--target",
        "t",
    ])
    .assert()
    .failure()
    .stderr(predicate::str::contains("read-only HTTP mirror"));
}

#[test]
fn a_cache_that_cannot_be_reached_is_a_warning_and_the_build_succeeds() {
    let f = fixture();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = common::stagebuild(&f.project(), Some(&f.state()), Some(&f.mirror()));
    cmd.env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .env("STAGEBUILD_CACHE", "s3://nowhere/team")
        .args(["run", "--target", "t"])
        .assert()
        .success()
        .stderr(
            // One try per run, each way: a dead cache costs one timeout.
            predicate::str::contains("hello: not pulled from the cache")
                .and(predicate::str::contains("not asking it again in this run"))
                .and(predicate::str::contains("greet: not pulled").not())
                .and(predicate::str::contains("warning: could not push hello"))
                .and(predicate::str::contains(
                    "could not push greet to the cache s3://nowhere/team: not tried after hello failed",
                ))
                .and(predicate::str::contains("2 built, 0 restored")),
        );
}

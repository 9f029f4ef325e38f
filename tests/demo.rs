//! The real demo target, built from real sources. Slow (a few minutes), so
//! these are ignored by a plain `cargo test`; `scripts/test.sh` (and CI) runs
//! them with `--include-ignored`. They share one uninterrupted build.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::manifests;
use predicates::prelude::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The demo's sources, fetched by `scripts/test.sh` (`stagebuild mirror fetch --target demo`).
fn mirror() -> PathBuf {
    std::env::var_os("STAGEBUILD_DEMO_MIRROR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("mirror"))
}

fn stagebuild(state: &Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("stagebuild").unwrap();
    cmd.arg("--project")
        .arg(repo())
        .arg("--state")
        .arg(state)
        .arg("--mirror")
        .arg(mirror());
    cmd
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// One uninterrupted build of the demo, shared by the tests below.
fn built_demo() -> &'static Path {
    static STATE: OnceLock<PathBuf> = OnceLock::new();
    STATE.get_or_init(|| {
        let state = scratch("demo-uninterrupted").join("state");
        stagebuild(&state)
            .args(["mirror", "fetch", "--target", "demo"])
            .assert()
            .success();
        stagebuild(&state)
            .args(["run", "--target", "demo"])
            .timeout(Duration::from_secs(1200))
            .assert()
            .success();
        state
    })
}

fn checkpoint_tree(state: &Path, step: &str) -> PathBuf {
    let record: serde_json::Value =
        serde_json::from_slice(&fs::read(state.join("targets/demo.json")).unwrap()).unwrap();
    let key = record["steps"][step]["key"].as_str().unwrap();
    state.join("checkpoints").join(key).join("tree")
}

#[test]
#[ignore = "slow: builds the real demo"]
fn demo_ends_with_a_static_busybox_that_runs_in_an_empty_sandbox() {
    let state = built_demo();
    let busybox = checkpoint_tree(state, "busybox").join("bin/busybox");
    // Nothing but busybox itself in the sandbox: no libc, no loader. It runs
    // only if it is static.
    let out = Command::new("bwrap")
        .arg("--ro-bind")
        .arg(&busybox)
        .args([
            "/busybox",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--unshare-all",
            "/busybox",
            "echo",
            "ok",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ok\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        checkpoint_tree(state, "kexec-tools")
            .join("usr/sbin/kexec")
            .is_file()
    );
    assert!(
        checkpoint_tree(state, "musl")
            .join("usr/lib/libc.a")
            .is_file()
    );
    assert!(
        checkpoint_tree(state, "linux-headers")
            .join("usr/include/linux/version.h")
            .is_file()
    );
}

#[test]
#[ignore = "slow: builds the real demo"]
fn demo_killed_during_busybox_resumes_to_identical_manifests() {
    let reference = manifests(built_demo(), "demo");
    let state = scratch("demo-killed").join("state");
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("stagebuild"))
        .arg("--project")
        .arg(repo())
        .arg("--state")
        .arg(&state)
        .arg("--mirror")
        .arg(mirror())
        .args(["run", "--target", "demo"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until busybox is compiling, then kill the orchestrator outright.
    let log = state.join("logs/demo/03-busybox.log");
    let deadline = Instant::now() + Duration::from_secs(900);
    while fs::read_to_string(&log)
        .unwrap_or_default()
        .matches("  CC ")
        .count()
        < 20
    {
        assert!(Instant::now() < deadline, "busybox never started compiling");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before busybox was compiled"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    stagebuild(&state)
        .args(["run", "--target", "demo", "--resume"])
        .timeout(Duration::from_secs(900))
        .assert()
        .success()
        .stderr(
            predicate::str::contains("[1/4] linux-headers: restored from checkpoint")
                .and(predicate::str::contains(
                    "[2/4] musl: restored from checkpoint",
                ))
                .and(predicate::str::contains("[3/4] busybox: built"))
                .and(predicate::str::contains("[4/4] kexec-tools: built")),
        );
    assert_eq!(manifests(&state, "demo"), reference);
}

#[test]
#[ignore = "slow: builds the real demo"]
fn demo_plan_after_editing_busybox_invalidates_it_and_what_follows() {
    let state = built_demo();
    let project = scratch("demo-edited-project");
    for entry in ["steps", "patches", "sources.lock"] {
        let status = Command::new("cp")
            .arg("-a")
            .arg(repo().join(entry))
            .arg(&project)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let step = project.join("steps/busybox.yaml");
    let text = fs::read_to_string(&step).unwrap();
    let edited = text.replacen("build: |\n", "build: |\n  echo edited\n", 1);
    assert_ne!(text, edited, "busybox.yaml has a build phase to edit");
    fs::write(&step, edited).unwrap();

    let out = assert_cmd::Command::cargo_bin("stagebuild")
        .unwrap()
        .arg("--project")
        .arg(&project)
        .arg("--state")
        .arg(state)
        .args(["plan", "--target", "demo", "--json"])
        .assert()
        .success();
    let plan: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let rows: Vec<(String, String, String)> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["state"].as_str().unwrap().to_string(),
                s["reasons"]
                    .as_array()
                    .map(|r| r[0].as_str().unwrap().to_string())
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("linux-headers", "done", ""),
            ("musl", "done", ""),
            ("busybox", "invalidated", "its step file changed"),
            (
                "kexec-tools",
                "invalidated",
                "an earlier step changed (busybox)"
            ),
        ]
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    );
}

#[test]
#[ignore = "slow: needs the demo's real sources in the mirror"]
fn import_adopts_debian_orig_tarballs_by_checksum_whatever_their_names() {
    let lock = fs::read_to_string(repo().join("sources.lock")).unwrap();
    let debian = scratch("debian-origs");
    // The demo's sources under the names Debian's archive gives them.
    let mut expected = Vec::new();
    for block in lock.split("\n  - name: ").skip(1) {
        let name = block.lines().next().unwrap().trim();
        let Some(orig) = block
            .split("file: ")
            .nth(1)
            .map(|r| r.split([' ', '}']).next().unwrap())
        else {
            continue;
        };
        fs::copy(mirror().join("by-name").join(name), debian.join(orig)).unwrap();
        expected.push(format!(
            "imported {name}  (from {})",
            debian.join(orig).display()
        ));
    }
    assert_eq!(expected.len(), 4);
    let empty = scratch("imported-mirror");
    let out = assert_cmd::Command::cargo_bin("stagebuild")
        .unwrap()
        .arg("--project")
        .arg(repo())
        .arg("--mirror")
        .arg(&empty)
        .args(["mirror", "import"])
        .arg(&debian)
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    for line in &expected {
        assert!(stdout.contains(line), "{line:?} in:\n{stdout}");
    }
    assert_cmd::Command::cargo_bin("stagebuild")
        .unwrap()
        .arg("--project")
        .arg(repo())
        .arg("--mirror")
        .arg(&empty)
        .args(["mirror", "verify", "--target", "demo"])
        .assert()
        .success();
}

#[test]
#[ignore = "slow: builds the real demo, then rebuilds it under variations"]
fn every_demo_step_is_reproducible_under_the_audit_variations() {
    let state = built_demo();
    let out = stagebuild(state)
        .args(["audit", "--target", "demo", "--json"])
        .timeout(Duration::from_secs(1200))
        .assert()
        .success();
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(
        report["first_divergent"],
        serde_json::Value::Null,
        "{report:#}"
    );
    let verdicts: Vec<(&str, bool)> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap(),
                s["reproducible"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            ("linux-headers", true),
            ("musl", true),
            ("busybox", true),
            ("kexec-tools", true)
        ]
    );
    // Every variation was applied on this machine: none was skipped.
    assert_eq!(report["not_varied"], serde_json::json!([]), "{report:#}");
    assert_eq!(report["variations"].as_array().unwrap().len(), 8);
}

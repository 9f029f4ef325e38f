//! Reproducibility audits and recorded output checksums, through the real
//! binary; the HTML report is opened in a real headless Chromium.

mod common;

use std::fs;
use std::process::Command;

use common::Fixture;
use predicates::prelude::*;

/// hello (reproducible), then a step that writes the time it was built.
fn fixture_with_a_dated_step() -> Fixture {
    let f = Fixture::tiny();
    f.write(
        "steps/stamped.yaml",
        "name: stamped\nversion: \"1\"\ndescription: Embeds the build date.\nbuild: |\n  mkdir -p \"$OUT/share\"\n  printf 'built by stamped\\nbuilt on %s\\n' \"$(date '+%Y-%m-%d %H:%M')\" > \"$OUT/share/built-at\"\n  chmod -R go-w \"$OUT\"\n",
    );
    f.write(
        "steps/targets/t.yaml",
        "name: t\nsource_date_epoch: 1672531200\nstages:\n  - name: host\n    runner: host\n    steps: [hello, stamped, greet]\n",
    );
    f.import_sources();
    f
}

#[test]
fn a_step_that_embeds_the_date_is_the_first_that_diverges() {
    let f = fixture_with_a_dated_step();
    f.cmd()
        .args(["audit", "--target", "t"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not built"));
    f.cmd().args(["run", "--target", "t"]).assert().success();

    let out = f
        .cmd()
        .args(["audit", "--target", "t", "--json"])
        .assert()
        .code(3);
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(report["first_divergent"], "stamped");
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps[0]["id"], "hello");
    assert_eq!(steps[0]["reproducible"], true, "{:#}", steps[0]);
    assert_eq!(steps[1]["reproducible"], false);
    let file = &steps[1]["files"][0];
    assert_eq!(file["path"], "share/built-at");
    assert_eq!(file["change"], "content differs");
    // Within the date on the second line ("built on " ends at byte 26).
    let at = file["first_difference"].as_u64().unwrap();
    assert!((26..42).contains(&at), "{file:#}");
    let diff = file["detail"]["diff"].as_str().unwrap();
    assert!(
        diff.contains("--- a/share/built-at")
            && diff.contains("-built on ")
            && diff.contains("+built on "),
        "{diff}"
    );
    assert!(diff.contains(" built by stamped"), "context lines: {diff}");
    assert_eq!(steps[2]["reproducible"], true);

    // The text report says the same, and the exit code is 3.
    f.cmd()
        .args(["audit", "--target", "t"])
        .assert()
        .code(3)
        .stdout(
            predicate::str::contains("step stamped: NOT reproducible").and(
                predicate::str::contains("first step that diverges: stamped"),
            ),
        )
        .stderr(predicate::str::contains("report.html"));
}

#[test]
fn a_partial_audit_counts_what_it_left_out_and_never_says_every_step() {
    let f = fixture_with_a_dated_step();
    f.cmd().args(["run", "--target", "t"]).assert().success();

    // Only hello: reproducible, and the two others are not audited. That is
    // no failure (exit 0), but no report may say every step is reproducible.
    let headline = "1 of 3 steps reproducible, 2 not audited (not chosen with --only)";
    let out = f
        .cmd()
        .args(["audit", "--target", "t", "--only", "hello", "--json"])
        .assert()
        .success();
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(report["summary"]["headline"], headline, "{report:#}");
    assert_eq!(report["summary"]["audited"], 1);
    assert_eq!(report["summary"]["not_audited"], 2);
    assert_eq!(report["first_divergent"], serde_json::Value::Null);
    assert_eq!(report["steps"][1]["skipped"], "not chosen with --only");
    let out = f
        .cmd()
        .args(["audit", "--target", "t", "--only", "hello"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(
        text.starts_with(&format!("audit of target t: {headline}\n")),
        "{text}"
    );
    assert!(
        text.contains("step stamped: not audited: not chosen with --only"),
        "{text}"
    );
    let html = fs::read_to_string(f.state().join("audit/t/report.html")).unwrap();
    assert!(
        html.contains(&format!(
            "<p class=\"partial\" id=\"summary\">{headline}</p>"
        )),
        "{html}"
    );
    for report in [
        text.as_str(),
        &html,
        &fs::read_to_string(f.state().join("audit/t/report.json")).unwrap(),
    ] {
        assert!(!report.to_lowercase().contains("every step"), "{report}");
    }

    // Only the dated step: it differs, and the headline counts both.
    f.cmd()
        .args(["audit", "--target", "t", "--only", "stamped,greet"])
        .assert()
        .code(3)
        .stdout(predicate::str::contains(
            "1 of 3 steps reproducible, 1 not reproducible, first stamped, 1 not audited (not chosen with --only)",
        ));
    // A step the target does not have is refused before anything is rebuilt.
    f.cmd()
        .args(["audit", "--target", "t", "--only", "nosuch"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--only nosuch: target t has no such step",
        ));
}

#[test]
fn the_html_report_shows_steps_verdicts_and_the_diff_in_chromium() {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("chromium is installed by scripts/setup-debian.sh");
    let f = fixture_with_a_dated_step();
    f.cmd().args(["run", "--target", "t"]).assert().success();
    f.cmd().args(["audit", "--target", "t"]).assert().code(3);
    let report = f.state().join("audit/t/report.html");
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", report.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dom.contains("First step that diverges: <b>stamped</b>"),
        "{dom}"
    );
    assert!(
        dom.contains(
            "id=\"summary\">2 of 3 steps reproducible, 1 not reproducible, first stamped</p>"
        ),
        "{dom}"
    );
    for (step, verdict) in [
        ("hello", "reproducible"),
        ("stamped", "not reproducible"),
        ("greet", "reproducible"),
    ] {
        let row = format!(
            "data-step=\"{step}\"><td><a href=\"#step-{step}\">{step}</a></td><td>host</td><td class=\""
        );
        let at = dom
            .find(&row)
            .unwrap_or_else(|| panic!("no row for {step} in {dom}"));
        assert!(
            dom[at..]
                .split("</tr>")
                .next()
                .unwrap()
                .contains(&format!("verdict\">{verdict}<")),
            "{step}"
        );
    }
    assert!(dom.contains("<span class=\"del\">-built on "), "{dom}");
    assert!(dom.contains("<span class=\"add\">+built on "), "{dom}");
}

#[test]
fn a_patched_byte_fails_the_run_against_recorded_checksums_with_exit_3() {
    let f = Fixture::tiny();
    f.import_sources();
    f.cmd()
        .args(["run", "--target", "t", "--update-checksums"])
        .assert()
        .success();
    let recorded = fs::read_to_string(f.project().join("steps/targets/t.outputs")).unwrap();
    assert!(
        recorded.contains("== step hello") && recorded.contains(" usr/bin/hello\n"),
        "{recorded}"
    );
    // Recording again from the checkpoints gives the same file.
    f.cmd()
        .args(["lock", "outputs", "--target", "t"])
        .assert()
        .success();
    assert_eq!(
        fs::read_to_string(f.project().join("steps/targets/t.outputs")).unwrap(),
        recorded
    );
    f.cmd()
        .args(["run", "--target", "t", "--resume"])
        .assert()
        .success();

    // One byte of the program's output string, changed by a patch.
    f.write(
        "patches/hello/one-byte.patch",
        "--- a/hello.c\n+++ b/hello.c\n@@ -1,2 +1,2 @@\n #include <stdio.h>\n-int main(void) { puts(\"hello from a sandbox\"); return 0; }\n+int main(void) { puts(\"jello from a sandbox\"); return 0; }\n",
    );
    let step = fs::read_to_string(f.project().join("steps/hello.yaml")).unwrap();
    f.write(
        "steps/hello.yaml",
        step.replace(
            "workdir: hello-1.0",
            "patches: [one-byte.patch]\nworkdir: hello-1.0",
        ),
    );
    f.cmd()
        .args(["run", "--target", "t", "--resume"])
        .assert()
        .code(3)
        .stderr(
            predicate::str::contains("step hello: its output differs from the recorded checksums")
                .and(predicate::str::contains("t.outputs"))
                .and(predicate::str::contains("usr/bin/hello (sha256 ")),
        );
}

/// The mount points under `dir` of this process's mount namespace.
fn mounts_under(dir: &std::path::Path) -> Vec<String> {
    let dir = dir.canonicalize().unwrap();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(dir.to_str().unwrap()))
        .map(str::to_string)
        .collect()
}

/// Loop devices backed by a file under `dir`.
fn loop_devices_under(dir: &std::path::Path) -> Vec<String> {
    let out = Command::new("losetup")
        .args(["--list", "--noheadings", "--output", "BACK-FILE"])
        .output()
        .unwrap();
    let dir = dir.canonicalize().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|file| file.starts_with(dir.to_str().unwrap()))
        .map(str::to_string)
        .collect()
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A project whose target `t` is the one host step `id`, defined by `yaml`,
/// built once.
fn built_one_step_target(id: &str, yaml: &str) -> Fixture {
    let f = Fixture::tiny();
    f.write(&format!("steps/{id}.yaml"), yaml);
    f.write(
        "steps/targets/t.yaml",
        format!("name: t\nsource_date_epoch: 1672531200\nstages:\n  - name: host\n    runner: host\n    steps: [{id}]\n"),
    );
    f.cmd().args(["run", "--target", "t"]).assert().success();
    f
}

/// Kills an audit while its rebuild runs in a mounted build directory, then
/// audits again: the second audit clears the mount and succeeds.
fn audit_killed_while_mounted_then_again(dir_order: &str) {
    // Slow only in the audit's rebuild, whose TZ is not UTC.
    let f = built_one_step_target(
        "nap",
        "name: nap\nversion: \"1\"\ndescription: Naps when audited.\nbuild: |\n  if [ \"$TZ\" != UTC ]; then sleep 5; fi\n  echo rested > \"$OUT/nap\"\n  chmod 644 \"$OUT/nap\"\n",
    );

    let mut audit = f.std_cmd();
    let mut audit = audit
        .args(["audit", "--target", "t", "--dir-order", dir_order])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let audits = f.state().join("audit");
    while !audits.exists() || mounts_under(&audits).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the audit never mounted its build directory ({dir_order})"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    audit.kill().unwrap();
    audit.wait().unwrap();
    assert_eq!(
        mounts_under(&audits).len(),
        1,
        "the killed audit's mount stays"
    );

    f.cmd()
        .args(["audit", "--target", "t", "--dir-order", dir_order])
        .assert()
        .success()
        .stderr(predicate::str::contains("nap: reproducible"));
    assert!(
        mounts_under(&audits).is_empty(),
        "{:?}",
        mounts_under(&audits)
    );
    // A detached ext4's loop device frees itself once nothing holds the
    // file system; nothing should, soon after the audit ends.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !loop_devices_under(&audits).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "loop devices left behind: {:?}",
            loop_devices_under(&audits)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn an_audit_killed_while_disorderfs_is_mounted_does_not_stop_the_next() {
    audit_killed_while_mounted_then_again("disorderfs");
}

#[test]
fn an_audit_killed_while_its_ext4_is_mounted_does_not_stop_the_next() {
    assert!(is_root(), "the hash-seed directory order needs root");
    audit_killed_while_mounted_then_again("hash-seed");
}

/// Files made, removed and made again in the build directory, listed once
/// as readdir returns them and once sorted: only the first depends on the
/// directory order. Audited with `dir_order`, the first must differ and the
/// second must not; the report names the variation by `described`.
fn readdir_order_diverges(dir_order: Option<&str>, described: &str) {
    let f = built_one_step_target(
        "listing",
        "name: listing\nversion: \"1\"\ndescription: Lists a directory unsorted.\nbuild: |\n  mkdir many && cd many\n  for i in $(seq 1 40); do echo \"$i\" > \"file-$i\"; done\n  rm file-7 && echo again > file-7\n  mkdir -p \"$OUT/share\"\n  ls -U > \"$OUT/share/unsorted\"\n  ls > \"$OUT/share/sorted\"\n  cat file-7 >> \"$OUT/share/sorted\"\n  chmod -R go-w \"$OUT\"\n",
    );

    let mut audit = f.cmd();
    audit.args(["audit", "--target", "t", "--json"]);
    if let Some(order) = dir_order {
        audit.args(["--dir-order", order]);
    }
    let out = audit.assert().code(3);
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert!(
        report["variations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v.as_str().unwrap().contains(described)),
        "{report:#}"
    );
    let files: Vec<&str> = report["steps"][0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| file["path"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["share/unsorted"], "{report:#}");
}

#[test]
fn a_step_that_lists_a_directory_in_readdir_order_diverges_under_disorderfs() {
    readdir_order_diverges(Some("disorderfs"), "(disorderfs)");
}

#[test]
fn a_step_that_lists_a_directory_in_readdir_order_diverges_on_an_ext4_with_its_own_hash_seed() {
    assert!(is_root(), "the hash-seed directory order needs root");
    // The default, where it can be applied.
    readdir_order_diverges(None, "fresh ext4 with its own hash seed");
}

#[test]
fn an_unavailable_dir_order_is_refused_before_anything_is_rebuilt() {
    let f = Fixture::tiny();
    f.import_sources();
    f.cmd().args(["run", "--target", "t"]).assert().success();
    // disorderfs is looked up on PATH; without it the choice cannot be kept.
    f.cmd()
        .env("PATH", "/nonexistent")
        .args(["audit", "--target", "t", "--dir-order", "disorderfs"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "cannot vary the directory order that way: disorderfs is missing",
        ));
    assert!(!f.state().join("audit/t").exists());
}

//! The real demo target, built from real sources. Slow (a few minutes), so
//! these are ignored by a plain `cargo test`; `scripts/test.sh` (and CI) runs
//! them with `--include-ignored`. They share one uninterrupted build.

#[path = "demo/audit.rs"]
mod audit;
#[path = "demo/book.rs"]
mod book;
mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{kill_at_fault_point, manifests, process_state};
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
    common::stagebuild(&repo(), Some(state), Some(&mirror()))
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// One uninterrupted build of the demo, shared by the tests below.
///
/// `STAGEBUILD_DEMO_STATE=DIR` seeds it with a copy of the checkpoints and
/// records of a demo built earlier (say by `scripts/demo.sh`), so that a
/// developer iterating on one test does not rebuild the kernels each time.
/// The copy is resumed, not trusted: a checkpoint whose key no longer matches
/// the project is rebuilt.
///
/// A failed build is remembered, so that every test after it fails at once
/// with its message instead of starting the build again.
fn built_demo() -> &'static Path {
    static STATE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = STATE.get_or_init(|| {
        let state = scratch("demo-uninterrupted").join("state");
        stagebuild(&state)
            .args(["mirror", "fetch", "--target", "demo"])
            .ok()
            .map_err(|e| format!("mirror fetch: {e}"))?;
        let mut run = vec!["run", "--target", "demo"];
        if let Some(seed) = std::env::var_os("STAGEBUILD_DEMO_STATE") {
            copy_state_records(Path::new(&seed), &state);
            run.push("--resume");
        }
        // A guard against a hang, not a timing goal: under load the demo
        // has taken over 30 minutes here (about 10 on a quiet machine).
        stagebuild(&state)
            .args(&run)
            .timeout(Duration::from_secs(3600))
            .ok()
            .map_err(|e| format!("run: {e}"))?;
        Ok(state)
    });
    match built {
        Ok(state) => state,
        Err(why) => panic!("the shared demo build failed, so this test cannot run:\n{why}"),
    }
}

/// Copies the checkpoints, records and logs of the state `from` into `to`.
fn copy_state_records(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in ["checkpoints", "targets", "logs"] {
        let status = Command::new("cp")
            .arg("-a")
            .arg(from.join(entry))
            .arg(to)
            .status()
            .unwrap();
        assert!(status.success(), "copying {entry}");
    }
}

fn checkpoint_tree(state: &Path, step: &str) -> PathBuf {
    let record = common::record(state, "demo");
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
    // The shared build without busybox: the steps after it keep their
    // checkpoints (their keys do not change), so busybox's rebuild must
    // give the same bytes for the manifests to match.
    let state = copy_of_built_state("demo-killed");
    forget(&state, &["busybox"]);
    // Killed outright once busybox is compiling.
    kill_resume_when(&state, "busybox", "  CC ");

    stagebuild(&state)
        .args(["run", "--target", "demo", "--resume"])
        .timeout(Duration::from_secs(900))
        .assert()
        .success()
        .stderr(
            predicate::str::contains("[1/14] linux-headers: restored from checkpoint")
                .and(predicate::str::contains(
                    "[3/14] kernel-x86_64: restored from checkpoint",
                ))
                .and(predicate::str::contains(
                    "[4/14] musl: restored from checkpoint",
                ))
                .and(predicate::str::contains("[5/14] busybox: built"))
                .and(predicate::str::contains(
                    "[6/14] kexec-tools: restored from checkpoint",
                ))
                .and(predicate::str::contains(": built").count(1)),
        );
    assert_eq!(manifests(&state, "demo"), reference);
}

#[test]
#[ignore = "slow: builds the real demo"]
fn demo_plan_after_editing_busybox_invalidates_it_and_what_follows() {
    let state = built_demo();
    let project = scratch("demo-edited-project");
    for entry in ["steps", "patches", "files", "vm", "sources.lock"] {
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
                (s["reasons"].as_array())
                    .map(|r| r[0].as_str().unwrap().to_string())
                    .or_else(|| s["if_unchanged"].as_str().map(str::to_string))
                    .unwrap_or_default(),
            )
        })
        .collect();
    // The keys after busybox follow its output, known once it is rebuilt.
    let after = "busybox";
    let mut expected = vec![
        ("linux-headers", "done", ""),
        ("kernel-i386", "done", ""),
        ("kernel-x86_64", "done", ""),
        ("musl", "done", ""),
        ("busybox", "invalidated", "its step file changed"),
    ];
    for id in [
        "kexec-tools",
        "tcc",
        "musl-x86_64",
        "tcc-x86_64",
        "guest-initramfs",
        "bzip2",
        "bzip2-check",
        "kexec-x86_64",
        "bzip2-x86_64",
    ] {
        expected.push((id, "may_be_kept", after));
    }
    assert_eq!(
        rows,
        expected
            .into_iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect::<Vec<_>>()
    );
}

#[test]
#[ignore = "slow: needs the demo's real sources in the mirror"]
fn import_adopts_debian_orig_tarballs_by_checksum_whatever_their_names() {
    let lock = fs::read_to_string(repo().join("sources.lock")).unwrap();
    let debian = scratch("debian-origs");
    // The lock holds the azurelinux chain's sources too; the mirror the demo
    // tests are given need only hold the demo's, so ask which those are.
    let verify = stagebuild(&scratch("import-state"))
        .args(["mirror", "verify", "--target", "demo", "--json"])
        .assert()
        .success();
    let report: serde_json::Value = serde_json::from_slice(&verify.get_output().stdout).unwrap();
    let demo_sources: Vec<&str> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| file[0].as_str().unwrap())
        .collect();
    // The demo's sources under the names Debian's archive gives them.
    let mut expected = Vec::new();
    for block in lock.split("\n  - name: ").skip(1) {
        let name = block.lines().next().unwrap().trim();
        if !demo_sources.contains(&name) {
            continue;
        }
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
    assert_eq!(expected.len(), 6);
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

/// A copy of the uninterrupted build's checkpoints and records, to change
/// without disturbing it. Only those: other tests audit the shared state
/// meanwhile, writing under its audit/ and work/.
fn copy_of_built_state(name: &str) -> PathBuf {
    let copy = scratch(name).join("state");
    copy_state_records(built_demo(), &copy);
    copy
}

/// Starts `run --target demo --resume` on `state` in the background.
fn spawn_resume(state: &Path) -> std::process::Child {
    resume_command(state).stderr(Stdio::null()).spawn().unwrap()
}

/// `run --target demo --resume` on `state`, to start in the background.
fn resume_command(state: &Path) -> Command {
    let mut command = Command::new(assert_cmd::cargo::cargo_bin("stagebuild"));
    command
        .arg("--project")
        .arg(repo())
        .arg("--state")
        .arg(state)
        .arg("--mirror")
        .arg(mirror())
        .args(["run", "--target", "demo", "--resume"]);
    command
}

/// Removes the checkpoints of `steps`, so that the next run builds them.
fn forget(state: &Path, steps: &[&str]) {
    let record = common::record(state, "demo");
    for step in steps {
        let key = record["steps"][step]["key"].as_str().unwrap();
        fs::remove_dir_all(state.join("checkpoints").join(key)).unwrap();
    }
}

/// The latest log of `step` in the demo's state.
fn log_path(state: &Path, step: &str) -> PathBuf {
    state.join("logs/demo").join(format!("{step}.log"))
}

fn log_of(state: &Path, step: &str) -> String {
    fs::read_to_string(log_path(state, step)).unwrap_or_default()
}

#[test]
#[ignore = "slow: builds the real demo and boots its guest"]
fn demo_compiles_bzip2_in_the_guest_and_the_result_runs() {
    let state = built_demo();
    let log = log_of(state, "bzip2");
    assert!(log.contains("+ tcc -static -o bzip2 "), "{log}");
    assert!(
        log.contains("\ncompiled in the guest by tcc version 0.9.27 (i386 Linux)\n"),
        "{log}"
    );
    let check = log_of(state, "bzip2-check");
    assert!(check.contains("+ cmp sample3.tst sample3.ref"), "{check}");
    // The guest-built bzip2 is static: it runs on the host too.
    let bzip2 = checkpoint_tree(state, "bzip2").join("usr/bin/bzip2");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo round trip | '{0}' -c | '{0}' -dc",
            bzip2.display()
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "round trip\n");
    let record = checkpoint_tree(state, "bzip2-check").join("usr/share/stagebuild/bzip2-check");
    assert_eq!(fs::read_to_string(record).unwrap().lines().count(), 6);
}

fn qemu_processes_for(state: &Path) -> Vec<String> {
    let marker = state.display().to_string();
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let cmdline = fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (cmdline.starts_with("qemu-system") && cmdline.contains(&marker)).then_some(cmdline)
        })
        .collect()
}

/// The machines (`uname -m`) a VM step's guest announced, in order: a
/// kexec step announces two.
fn guest_machines(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.strip_prefix("# guest up after "))
        .filter_map(|l| l.split(": ").nth(1))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Resumes the demo on `state`, SIGKILLs stagebuild once `log` contains
/// `marker`, and checks that its qemu went with it.
fn kill_resume_when(state: &Path, log: &str, marker: &str) {
    let _ = fs::remove_file(log_path(state, log));
    let mut child = spawn_resume(state);
    let deadline = Instant::now() + Duration::from_secs(300);
    while !log_of(state, log).contains(marker) {
        assert!(Instant::now() < deadline, "{log} never showed {marker:?}");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before {log} showed {marker:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !qemu_processes_for(state).is_empty() {
        assert!(
            Instant::now() < deadline,
            "qemu outlived stagebuild: {:?}",
            qemu_processes_for(state)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "slow: builds the real demo and boots its guests"]
fn the_demo_runs_i686_then_hops_with_kexec_and_runs_x86_64() {
    let state = built_demo();
    assert_eq!(guest_machines(&log_of(state, "bzip2")), ["i686"]);
    assert_eq!(guest_machines(&log_of(state, "bzip2-check")), ["i686"]);
    let hop = log_of(state, "kexec-x86_64");
    assert_eq!(guest_machines(&hop), ["i686", "x86_64"], "{hop}");
    assert!(
        hop.contains("# kexec: the guest jumps to the loaded kernel"),
        "{hop}"
    );
    assert!(
        hop.contains("+ kexec -l /build/.stagebuild/kexec/kernel"),
        "{hop}"
    );
    let after = log_of(state, "bzip2-x86_64");
    assert_eq!(guest_machines(&after), ["x86_64"], "{after}");
    // The step's own `uname -m`, and a 64-bit program that runs on the host.
    assert!(after.contains("+ uname -m\nx86_64\n"), "{after}");
    let bzip2 = checkpoint_tree(state, "bzip2-x86_64").join("usr/x86_64-linux-musl/bin/bzip2");
    assert_eq!(fs::read(&bzip2).unwrap()[4], 2, "ELFCLASS64");

    // plan shows the hop; status shows which kernel each checkpoint is in.
    let plan = stagebuild(state)
        .args(["plan", "--target", "demo"])
        .assert()
        .success();
    let plan = String::from_utf8_lossy(&plan.get_output().stdout).to_string();
    for expected in [
        "stage vm32 (runner vm, kernel kernel-i386:boot/bzImage)",
        "(kexec into kernel-x86_64:boot/bzImage)",
        "stage vm64 (runner vm, kernel kernel-x86_64:boot/bzImage after kexec-x86_64)",
    ] {
        assert!(plan.contains(expected), "{expected:?} in:\n{plan}");
    }
    let status = stagebuild(state)
        .args(["status", "--json"])
        .assert()
        .success();
    let status: serde_json::Value = serde_json::from_slice(&status.get_output().stdout).unwrap();
    let kernels: BTreeMap<String, String> = status["targets"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| {
            Some((
                s["id"].as_str()?.to_string(),
                s["kernel"].as_str()?.to_string(),
            ))
        })
        .collect();
    assert_eq!(
        kernels,
        [
            ("bzip2", "i686 6.1.4"),
            ("bzip2-check", "i686 6.1.4"),
            ("kexec-x86_64", "x86_64 6.1.4"),
            ("bzip2-x86_64", "x86_64 6.1.4"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .into()
    );
}

#[test]
#[ignore = "slow: builds the real demo and boots its guests"]
fn killed_in_the_first_64_bit_step_resumes_in_the_64_bit_kernel_after_the_hop() {
    let reference = manifests(built_demo(), "demo");
    let state = copy_of_built_state("demo-vm64-killed");
    forget(&state, &["bzip2-x86_64"]);
    kill_resume_when(&state, "bzip2-x86_64", "=== stagebuild: build ===");
    let hop_log = fs::read_to_string(log_path(&state, "kexec-x86_64")).unwrap();

    stagebuild(&state)
        .args(["run", "--target", "demo", "--resume"])
        .timeout(Duration::from_secs(600))
        .assert()
        .success()
        .stderr(
            predicate::str::contains("[11/14] bzip2: restored from checkpoint")
                .and(predicate::str::contains(
                    "[12/14] bzip2-check: restored from checkpoint",
                ))
                .and(predicate::str::contains(
                    "[13/14] kexec-x86_64: restored from checkpoint",
                ))
                .and(predicate::str::contains("[14/14] bzip2-x86_64: built"))
                .and(predicate::str::contains(": built").count(1)),
        );
    // No 32-bit guest ran again: the hop's log is untouched, and the step
    // booted straight into the 64-bit kernel.
    assert_eq!(log_of(&state, "kexec-x86_64"), hop_log);
    let log = log_of(&state, "bzip2-x86_64");
    assert_eq!(guest_machines(&log), ["x86_64"], "{log}");
    assert!(log.contains("+ uname -m\nx86_64\n"), "{log}");
    assert_eq!(manifests(&state, "demo"), reference);
}

#[test]
#[ignore = "slow: builds the real demo and boots its guests"]
fn checkpoints_keep_no_base_disk_and_a_resume_makes_the_same_one_again() {
    let reference = manifests(built_demo(), "demo");
    // The completed run left no base disk, and the first VM step's
    // checkpoint names it only by its sha256.
    assert!(!built_demo().join("disks").exists());
    let first = checkpoint_tree(built_demo(), "bzip2");
    let first = first.parent().unwrap();
    assert!(!first.join("base.qcow2").exists());
    let base = fs::read_to_string(first.join("backing.sha256")).unwrap();
    let info = Command::new("qemu-img")
        .arg("info")
        .arg(first.join("disk.qcow2"))
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains(&format!("backing file: ../../disks/{}.qcow2", base.trim())),
        "{info}"
    );

    // Booting the last guest again needs the base disk under the whole
    // chain: it is made again, matches, and no earlier VM step is rebuilt.
    let state = copy_of_built_state("demo-base-again");
    forget(&state, &["bzip2-x86_64"]);
    stagebuild(&state)
        .args(["run", "--target", "demo", "--resume"])
        .timeout(Duration::from_secs(600))
        .assert()
        .success()
        .stderr(
            predicate::str::contains("[11/14] bzip2: restored from checkpoint")
                .and(predicate::str::contains("no longer fits").not())
                .and(predicate::str::contains("[14/14] bzip2-x86_64: built"))
                .and(predicate::str::contains(": built").count(1)),
        );
    assert_eq!(manifests(&state, "demo"), reference);
    assert!(!state.join("disks").exists());
}

#[test]
#[ignore = "slow: builds the real demo and boots its guests"]
fn killed_in_the_last_32_bit_step_resumes_in_the_32_bit_kernel_then_hops() {
    let reference = manifests(built_demo(), "demo");
    let state = copy_of_built_state("demo-vm32-killed");
    forget(&state, &["bzip2-check", "kexec-x86_64", "bzip2-x86_64"]);
    kill_resume_when(&state, "bzip2-check", "=== stagebuild: build ===");

    stagebuild(&state)
        .args(["run", "--target", "demo", "--resume"])
        .timeout(Duration::from_secs(600))
        .assert()
        .success()
        .stderr(
            predicate::str::contains("[11/14] bzip2: restored from checkpoint")
                .and(predicate::str::contains("[12/14] bzip2-check: built"))
                .and(predicate::str::contains("[13/14] kexec-x86_64: built"))
                .and(predicate::str::contains("[14/14] bzip2-x86_64: built"))
                .and(predicate::str::contains("[11/14] bzip2: built").not()),
        );
    let check = log_of(&state, "bzip2-check");
    assert_eq!(guest_machines(&check), ["i686"], "{check}");
    let hop = log_of(&state, "kexec-x86_64");
    assert_eq!(guest_machines(&hop), ["i686", "x86_64"], "{hop}");
    assert_eq!(guest_machines(&log_of(&state, "bzip2-x86_64")), ["x86_64"]);
    assert_eq!(manifests(&state, "demo"), reference);
}

/// A project like the repository's with one more target: the demo's host
/// stage (restored from the shared build), then a VM stage of `vm_steps`.
fn project_with_vm_target(name: &str, steps: &[(&str, &str)]) -> PathBuf {
    let project = scratch(name);
    for entry in ["steps", "patches", "files", "vm", "sources.lock"] {
        let status = Command::new("cp")
            .arg("-a")
            .arg(repo().join(entry))
            .arg(&project)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let demo = fs::read_to_string(project.join("steps/targets/demo.yaml")).unwrap();
    let host_and_vm_header = &demo[..demo.find("    steps:\n      - bzip2").unwrap()];
    let mut target = host_and_vm_header.replace("name: demo", "name: faulty");
    target.push_str("    steps:\n");
    for (id, body) in steps {
        fs::write(project.join("steps").join(format!("{id}.yaml")), body).unwrap();
        target.push_str(&format!("      - {id}\n"));
    }
    fs::write(project.join("steps/targets/faulty.yaml"), target).unwrap();
    project
}

fn run_faulty(project: &Path, state: &Path, resume: bool) -> assert_cmd::assert::Assert {
    let mut cmd = common::stagebuild(project, Some(state), Some(&mirror()));
    cmd.args(["run", "--target", "faulty"]);
    if resume {
        cmd.arg("--resume");
    }
    cmd.timeout(Duration::from_secs(600)).assert()
}

#[test]
#[ignore = "slow: builds the real demo and boots its guest"]
fn a_guest_panic_and_a_step_timeout_end_the_run_with_the_console_and_resume_after_the_fix() {
    let state = copy_of_built_state("demo-vm-faults");
    let project = project_with_vm_target(
        "demo-vm-faults-project",
        &[
            (
                "first",
                "name: first\nversion: \"1\"\ndescription: Works.\nbuild: |\n  mkdir -p \"$OUT/etc\"\n  echo first > \"$OUT/etc/first\"\n",
            ),
            (
                "crash",
                "name: crash\nversion: \"1\"\ndescription: Panics the guest kernel.\nbuild: |\n  echo about to panic\n  echo c > /proc/sysrq-trigger\n  sleep 600\n",
            ),
        ],
    );
    let started = Instant::now();
    let out = run_faulty(&project, &state, false).code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "took {:?}",
        started.elapsed()
    );
    for expected in [
        "[11/12] first: built",
        "step crash: the guest kernel panicked",
        "last lines of the guest console:",
        "Kernel panic - not syncing: sysrq triggered crash",
        "full console log: ",
        "crash.console.log",
        "to resume from here: stagebuild",
        "run --target faulty --resume",
    ] {
        assert!(stderr.contains(expected), "{expected:?} in:\n{stderr}");
    }
    let tail_lines = stderr
        .split("last lines of the guest console:")
        .nth(1)
        .unwrap()
        .split("full console log")
        .next()
        .unwrap()
        .lines()
        .count();
    assert!(tail_lines <= 41, "{tail_lines} lines of console");

    // Fixed, it resumes from the first vm step's checkpoint.
    fs::write(
        project.join("steps/crash.yaml"),
        "name: crash\nversion: \"1\"\ndescription: No longer panics.\nbuild: |\n  cat /etc/first > \"$OUT/seen-first\"\n",
    )
    .unwrap();
    run_faulty(&project, &state, true).success().stderr(
        predicate::str::contains("[11/12] first: restored from checkpoint")
            .and(predicate::str::contains("[12/12] crash: built")),
    );

    // A step that outlives its timeout.
    fs::write(
        project.join("steps/crash.yaml"),
        "name: crash\nversion: \"2\"\ndescription: Sleeps too long.\ntimeout: 5\nbuild: |\n  echo sleeping\n  sleep 600\n",
    )
    .unwrap();
    let started = Instant::now();
    run_faulty(&project, &state, true).code(1).stderr(
        predicate::str::contains("step crash: the step ran past its timeout of 5s")
            .and(predicate::str::contains("last lines of the guest console:"))
            .and(predicate::str::contains("to resume from here:")),
    );
    assert!(
        started.elapsed() < Duration::from_secs(5 + 30 + 30),
        "took {:?}",
        started.elapsed()
    );
    assert!(qemu_processes_for(&state).is_empty());
    assert!(log_of(&state, "../faulty/crash").contains("sleeping"));
}

/// SIGKILLs `run --resume` at seeded random moments while the VM stages
/// build (and, once they are built, while later resumes restore them), then
/// resumes to the end. No run, killed or not, may warn: a warning means a
/// committed checkpoint was thrown away. `STAGEBUILD_KILLS` (default 10)
/// and `STAGEBUILD_FAULT_SEED` choose the kills; with 20 kills this passed
/// for the seeds 424242 (issue 23's), 1, 7, 2026 and 99991:
///
/// ```sh
/// STAGEBUILD_KILLS=20 STAGEBUILD_FAULT_SEED=424242 cargo test --test demo \
///     sigkill_at_random_moments_in_the_vm -- --include-ignored --nocapture
/// ```
#[test]
#[ignore = "slow: builds the real demo and boots its guest many times"]
fn sigkill_at_random_moments_in_the_vm_stage_then_resume_gives_the_uninterrupted_result() {
    let reference = manifests(built_demo(), "demo");
    let state = copy_of_built_state("demo-vm-random-kills");
    forget(
        &state,
        &["bzip2", "bzip2-check", "kexec-x86_64", "bzip2-x86_64"],
    );
    let kills: u64 = std::env::var("STAGEBUILD_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mut seed: u64 = std::env::var("STAGEBUILD_FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_0f0b);
    eprintln!("seed {seed:#x}, {kills} kills");
    for kill in 0..kills {
        // xorshift: a repeatable sequence of moments within a VM stage's run.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(seed % 12000);
        let stderr = state.with_file_name(format!("kill-{kill}.stderr"));
        let mut child = resume_command(&state)
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        child.kill().unwrap();
        child.wait().unwrap();
        let said = fs::read_to_string(&stderr).unwrap();
        assert!(!said.contains("warning"), "kill {kill}'s run:\n{said}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !qemu_processes_for(&state).is_empty() {
            assert!(
                Instant::now() < deadline,
                "kill {kill}: qemu outlived stagebuild"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("kill {kill} after {delay:?}");
    }
    stagebuild(&state)
        .args(["run", "--target", "demo", "--resume"])
        .timeout(Duration::from_secs(600))
        .assert()
        .success()
        .stderr(predicate::str::contains("warning").not());
    assert_eq!(manifests(&state, "demo"), reference);
}

#[test]
#[ignore = "slow: builds the real demo and boots its guest"]
fn a_vm_checkpoint_whose_backing_disk_was_rebuilt_is_not_restored() {
    let reference = manifests(built_demo(), "demo");
    let state = copy_of_built_state("demo-vm-rebased");
    // The first VM step is rebuilt (a new disk); the second's checkpoint
    // is intact, but its overlay was made on the old disk.
    forget(&state, &["bzip2"]);
    stagebuild(&state)
        .args(["run", "--target", "demo", "--resume"])
        .timeout(Duration::from_secs(600))
        .assert()
        .success()
        .stderr(
            predicate::str::contains("[11/14] bzip2: built")
                .and(predicate::str::contains("the checkpoint of bzip2-check"))
                .and(predicate::str::contains(
                    "its disk was made on a disk that has since been rebuilt",
                ))
                .and(predicate::str::contains("[12/14] bzip2-check: built"))
                // The disk chain goes on across the hop.
                .and(predicate::str::contains("the checkpoint of bzip2-x86_64"))
                .and(predicate::str::contains("[14/14] bzip2-x86_64: built")),
        );
    assert_eq!(manifests(&state, "demo"), reference);
}

/// The shared cache between two machines, here two state directories: A
/// (the shared build) pushes, B starts empty and pulls every step, then
/// boots its guests from the pulled overlays.
#[test]
#[ignore = "slow: builds the real demo and boots its last guest"]
fn cache_a_pushes_the_demo_and_an_empty_state_pulls_all_of_it_and_boots_from_it() {
    let reference = manifests(built_demo(), "demo");
    let server = common::s3::S3Server::start();
    let cache = server.url("demo");
    let mut push = stagebuild(built_demo());
    server.configure(&mut push);
    push.args(["--cache", &cache, "cache", "push", "--target", "demo"])
        .timeout(Duration::from_secs(600))
        .assert()
        .success();

    let state = scratch("demo-pulled").join("state");
    let mut pull = stagebuild(&state);
    server.configure(&mut pull);
    pull.args(["--cache", &cache, "run", "--target", "demo"])
        .timeout(Duration::from_secs(600))
        .assert()
        .success()
        .stderr(
            predicate::str::contains("linux-headers: pulled from the cache")
                .and(predicate::str::contains(
                    "kexec-x86_64: pulled from the cache",
                ))
                .and(predicate::str::contains(
                    "bzip2-x86_64: pulled from the cache",
                ))
                .and(predicate::str::contains("pulled from the cache").count(14))
                .and(predicate::str::contains("0 built, 14 restored")),
        );
    assert_eq!(manifests(&state, "demo"), reference);

    // The last guest step again, without the cache: it boots the 64-bit
    // kernel on the pulled overlay of the step before it.
    forget(&state, &["bzip2-x86_64"]);
    stagebuild(&state)
        .args(["run", "--target", "demo", "--resume"])
        .timeout(Duration::from_secs(600))
        .assert()
        .success()
        .stderr(
            predicate::str::contains("[13/14] kexec-x86_64: restored from checkpoint")
                .and(predicate::str::contains("no longer fits").not())
                .and(predicate::str::contains("[14/14] bzip2-x86_64: built"))
                .and(predicate::str::contains(": built").count(1)),
        );
    assert_eq!(guest_machines(&log_of(&state, "bzip2-x86_64")), ["x86_64"]);
    assert_eq!(manifests(&state, "demo"), reference);
}

/// The moment behind issue 23, made exact. When a resume finds no base disk
/// (a run that completed removed it), it makes it again before it restores
/// the first guest step; a kill while mke2fs or qemu-img ran used to leave
/// the tool running, and it went on writing into the scratch image that the
/// next run's make wrote into in place. That run's disk then differed from
/// the one the first guest step recorded, so every guest checkpoint was
/// thrown away. `STAGEBUILD_FAULT_PAUSE` (a test hook, `src/faultpoint.rs`)
/// stops stagebuild just after it starts mke2fs, and the test stops mke2fs
/// too, so that the kill lands while the tool is still running: a moment
/// random kills reach only by luck. The stray bytes written after the kill
/// stand for what such a tool wrote; no real tool does that on demand.
#[test]
#[ignore = "slow: needs the real demo build"]
fn a_kill_while_the_base_disk_is_made_leaves_no_tool_running_and_the_resume_keeps_every_checkpoint()
{
    let reference = manifests(built_demo(), "demo");
    let state = copy_of_built_state("demo-base-disk-kill");
    let mut stagebuild_run = resume_command(&state)
        .env("STAGEBUILD_FAULT_PAUSE", "running mke2fs")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = stagebuild_run.id();
    let deadline = Instant::now() + Duration::from_secs(120);
    while process_state(pid) != Some('T') {
        assert!(Instant::now() < deadline, "stagebuild never reached mke2fs");
        assert!(stagebuild_run.try_wait().unwrap().is_none());
        std::thread::sleep(Duration::from_millis(20));
    }
    let tools = children_of(pid);
    assert_eq!(tools.len(), 1, "stagebuild's children: {tools:?}");
    let mke2fs = tools[0];
    signal(mke2fs, nix::sys::signal::Signal::SIGSTOP);
    kill_at_fault_point(&mut stagebuild_run);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(process_state(mke2fs), None | Some('Z')) {
        if Instant::now() > deadline {
            signal(mke2fs, nix::sys::signal::Signal::SIGKILL);
            panic!("mke2fs outlived stagebuild");
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let image = state.join("disks/tmp/base.raw");
    let mut stray = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&image)
        .unwrap();
    std::io::Seek::seek(&mut stray, std::io::SeekFrom::Start(512 << 20)).unwrap();
    std::io::Write::write_all(&mut stray, &[0x5a; 1 << 20]).unwrap();
    drop(stray);

    stagebuild(&state)
        .args(["run", "--target", "demo", "--resume"])
        .timeout(Duration::from_secs(600))
        .assert()
        .success()
        .stderr(
            predicate::str::contains("warning")
                .not()
                .and(predicate::str::contains("0 built, 14 restored")),
        );
    assert_eq!(manifests(&state, "demo"), reference);
}

fn children_of(pid: u32) -> Vec<u32> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(") ")?.1.split(' ').nth(1)?.parse().ok())
                == Some(pid)
        })
        .collect()
}

fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
}

/// The demo's guest steps, built in qemu by the shared build.
const GUEST_STEPS: [&str; 4] = ["bzip2", "bzip2-check", "kexec-x86_64", "bzip2-x86_64"];

fn resume_with_guest(state: &Path, guest: &str) -> assert_cmd::assert::Assert {
    stagebuild(state)
        .args(["run", "--target", "demo", "--resume", "--guest", guest])
        .timeout(Duration::from_secs(900))
        .assert()
}

/// How `status --json` says each VM checkpoint was built.
fn built_in(state: &Path) -> BTreeMap<String, String> {
    let status = stagebuild(state)
        .args(["status", "--json"])
        .assert()
        .success();
    let status: serde_json::Value = serde_json::from_slice(&status.get_output().stdout).unwrap();
    status["targets"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| {
            Some((
                s["id"].as_str()?.to_string(),
                s["built_in"].as_str()?.to_string(),
            ))
        })
        .collect()
}

fn modes(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
#[ignore = "slow: builds the real demo, then its guest steps in the sandbox"]
fn guest_steps_built_in_the_sandbox_match_qemu_byte_for_byte() {
    let reference = manifests(built_demo(), "demo");
    let state = copy_of_built_state("demo-guest-sandbox");
    forget(&state, &GUEST_STEPS);
    resume_with_guest(&state, "sandbox").success().stderr(
        predicate::str::contains("[10/14] guest-initramfs: restored from checkpoint")
            .and(predicate::str::contains(
                "stage vm32 (runner: vm, in the bwrap sandbox on the host's kernel)",
            ))
            .and(predicate::str::contains("[11/14] bzip2: built"))
            .and(predicate::str::contains("[13/14] kexec-x86_64: built"))
            .and(predicate::str::contains("[14/14] bzip2-x86_64: built"))
            .and(predicate::str::contains(": built").count(4)),
    );
    assert_eq!(manifests(&state, "demo"), reference);

    // No guest booted: each step ran in the sandbox, as its stage's machine.
    let bzip2 = log_of(&state, "bzip2");
    assert!(bzip2.contains("in sandbox mode (bwrap)"), "{bzip2}");
    assert!(
        bzip2.contains("\ncompiled in the guest by tcc version 0.9.27 (i386 Linux)\n"),
        "{bzip2}"
    );
    assert!(guest_machines(&bzip2).is_empty(), "{bzip2}");
    let hop = log_of(&state, "kexec-x86_64");
    assert!(
        hop.contains("is an x86_64 kernel, so the stages after this step run as x86_64"),
        "{hop}"
    );
    let after = log_of(&state, "bzip2-x86_64");
    assert!(after.contains("+ uname -m\nx86_64\n"), "{after}");
    assert!(qemu_processes_for(&state).is_empty());

    // status and plan say so; the host steps were built by neither.
    let sandboxed: Vec<(&str, &str)> = GUEST_STEPS.iter().map(|s| (*s, "sandbox")).collect();
    assert_eq!(built_in(&state), modes(&sandboxed));
    let plan = stagebuild(&state)
        .args(["plan", "--target", "demo"])
        .assert()
        .success();
    let plan = String::from_utf8_lossy(&plan.get_output().stdout).to_string();
    assert!(
        plan.contains("bzip2-check") && plan.contains("done (in sandbox)"),
        "{plan}"
    );
    let kernels = stagebuild(&state).arg("status").assert().success();
    let kernels = String::from_utf8_lossy(&kernels.get_output().stdout).to_string();
    assert!(
        kernels.contains("(built in sandbox, uname: i686 "),
        "{kernels}"
    );

    // The mode is in no key: a qemu run restores all of it and builds nothing.
    resume_with_guest(&state, "qemu").success().stderr(
        predicate::str::contains("[14/14] bzip2-x86_64: restored from checkpoint")
            .and(predicate::str::contains(": built").not())
            .and(predicate::str::contains("no longer fits").not()),
    );
}

/// A step that records what a guest step sees of its environment.
const PROBE_STEP: &str = "name: probe\nversion: \"1\"\ndescription: Records what a guest step sees.\nbuild: |\n  mkdir -p \"$OUT/etc\"\n  {\n    env | sort\n    uname -m\n    umask\n    pwd\n    hostname\n    id\n    ls -la / /stagebuild /build /tmp\n    echo \"args: $0 $#\"\n  } > \"$OUT/etc/probe\"\n  cat \"$OUT/etc/probe\"\n";

#[test]
#[ignore = "slow: builds the real demo and boots its guest"]
fn a_guest_step_sees_the_same_environment_in_qemu_and_in_the_sandbox() {
    let state = copy_of_built_state("demo-guest-probe");
    let project = project_with_vm_target("demo-guest-probe-project", &[("probe", PROBE_STEP)]);
    run_faulty(&project, &state, false).success();
    let probe = |state: &Path| {
        let record = common::record(state, "faulty");
        let key = record["steps"]["probe"]["key"].as_str().unwrap();
        let dir = state.join("checkpoints").join(key);
        let text = fs::read_to_string(dir.join("tree/etc/probe")).unwrap();
        fs::remove_dir_all(dir).unwrap();
        text
    };
    let in_qemu = probe(&state);
    let mut cmd = common::stagebuild(&project, Some(&state), Some(&mirror()));
    cmd.args([
        "run", "--target", "faulty", "--resume", "--guest", "sandbox",
    ])
    .timeout(Duration::from_secs(600))
    .assert()
    .success()
    .stderr(predicate::str::contains("[11/11] probe: built"));
    let in_sandbox = probe(&state);
    assert!(in_qemu.contains("\ni686\n"), "{in_qemu}");
    assert!(in_qemu.contains("OUT=/stagebuild/out\n"), "{in_qemu}");
    // Dates differ (the base disk pins its files to 1980); nothing else may.
    let undated = |text: &str| -> String {
        text.lines()
            .filter(|l| !l.starts_with("total "))
            .map(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                if words.len() >= 9 && l.starts_with(['d', '-', 'l']) {
                    format!("{} {} {}", words[0], words[2], words[8..].join(" "))
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(undated(&in_sandbox), undated(&in_qemu));
}

#[test]
#[ignore = "slow: builds the real demo and boots its guests"]
fn killed_in_qemu_mode_then_resumed_in_sandbox_mode_keeps_the_qemu_checkpoints() {
    let reference = manifests(built_demo(), "demo");
    let state = copy_of_built_state("demo-guest-switch");
    forget(&state, &GUEST_STEPS);
    // SIGKILLed in qemu mode while the second guest step builds.
    kill_resume_when(&state, "bzip2-check", "=== stagebuild: build ===");
    resume_with_guest(&state, "sandbox").success().stderr(
        predicate::str::contains("[11/14] bzip2: restored from checkpoint")
            .and(predicate::str::contains("[12/14] bzip2-check: built"))
            .and(predicate::str::contains("[14/14] bzip2-x86_64: built"))
            .and(predicate::str::contains(": built").count(3)),
    );
    assert_eq!(manifests(&state, "demo"), reference);
    assert_eq!(
        built_in(&state),
        modes(&[
            ("bzip2", "qemu"),
            ("bzip2-check", "sandbox"),
            ("kexec-x86_64", "sandbox"),
            ("bzip2-x86_64", "sandbox"),
        ])
    );

    // And back: qemu mode keeps the sandbox-built steps and boots the last
    // one on a base disk made from every earlier tree, in the 64-bit kernel.
    forget(&state, &["bzip2-x86_64"]);
    resume_with_guest(&state, "qemu").success().stderr(
        predicate::str::contains("[12/14] bzip2-check: restored from checkpoint")
            .and(predicate::str::contains(
                "[13/14] kexec-x86_64: restored from checkpoint",
            ))
            .and(predicate::str::contains("[14/14] bzip2-x86_64: built"))
            .and(predicate::str::contains(": built").count(1))
            .and(predicate::str::contains("no longer fits").not()),
    );
    let log = log_of(&state, "bzip2-x86_64");
    assert_eq!(guest_machines(&log), ["x86_64"], "{log}");
    assert_eq!(manifests(&state, "demo"), reference);
    // A qemu checkpoint on a disk made from the trees is restored again.
    resume_with_guest(&state, "qemu").success().stderr(
        predicate::str::contains("[14/14] bzip2-x86_64: restored from checkpoint")
            .and(predicate::str::contains("no longer fits").not()),
    );
}

#[test]
#[ignore = "slow: builds the real demo"]
fn a_guest_step_in_the_sandbox_is_stopped_at_its_timeout() {
    let state = copy_of_built_state("demo-guest-sandbox-timeout");
    let project = project_with_vm_target(
        "demo-guest-sandbox-timeout-project",
        &[(
            "sleepy",
            "name: sleepy\nversion: \"1\"\ndescription: Sleeps too long.\ntimeout: 2\nbuild: |\n  echo sleeping\n  sleep 600\n",
        )],
    );
    let mut cmd = common::stagebuild(&project, Some(&state), Some(&mirror()));
    cmd.args(["run", "--target", "faulty", "--guest", "sandbox"])
        .timeout(Duration::from_secs(300))
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("step sleepy failed (ran past its timeout of 2s)").and(
                predicate::str::contains("run --target faulty --resume --guest sandbox"),
            ),
        );
    let log = log_of(&state, "../faulty/sleepy");
    assert!(
        log.contains("+ sleep 600\n# stagebuild: the step ran past its timeout"),
        "{log}"
    );
}

/// The checkpoints, records and logs of a state, file by file.
fn state_snapshot(state: &Path) -> [BTreeMap<String, String>; 3] {
    ["checkpoints", "targets", "logs"].map(|part| common::snapshot(&state.join(part)))
}

/// `stagebuild shell` in bzip2-check, the demo's second guest step, through
/// a pty: commands typed into its shell, their output read, then `exit`.
fn shell_in_bzip2_check(name: &str, mode: &[&str], machine_line: &str) {
    let state = copy_of_built_state(name);
    let before = state_snapshot(&state);
    let mut shell = common::std_stagebuild(&repo(), Some(&state), Some(&mirror()));
    shell
        .args(["shell", "--target", "demo", "bzip2-check"])
        .args(mode);
    let mut session = common::pty::Session::spawn(&mut shell);
    session.expect(machine_line, Duration::from_secs(180));
    session.expect("stagebuild:bzip2-check$ ", Duration::from_secs(60));
    // The sources in place, the previous step's bzip2 on the root, the
    // step's environment; what is typed is echoed, so each check looks for
    // what only the output holds.
    session.type_line(
        "test -f sample1.ref && echo \"sources=$((1+1)) m=$(uname -m) out=$OUT at=$PWD bz=$(command -v bzip2)\"",
    );
    session.expect(
        "sources=2 m=i686 out=/stagebuild/out at=/build/bzip2-1.0.8 bz=/usr/bin/bzip2",
        Duration::from_secs(60),
    );
    // Writing where a guest may: the root disk, the build directory, the output.
    session.type_line("echo scribble > /build/typed; echo x > /stagebuild/out/typed; (echo x > /usr/typed) 2>/dev/null; echo wrote-$((6*7))");
    session.expect("wrote-42", Duration::from_secs(60));
    session.type_line("exit");
    let status = session.wait(Duration::from_secs(120));
    assert!(status.success(), "{status:?}\n{}", session.output());
    assert_eq!(
        state_snapshot(&state),
        before,
        "the shell changed a checkpoint, record or log"
    );
    assert!(
        !state.join("tmp/shell-bzip2-check").exists(),
        "the shell's scratch was left behind"
    );
}

#[test]
#[ignore = "slow: builds the real demo and boots its guest"]
fn a_shell_in_a_guest_step_boots_from_the_last_checkpoint_and_changes_none() {
    shell_in_bzip2_check(
        "demo-shell-qemu",
        &[],
        "stagebuild shell: bzip2-check in its guest (i686)",
    );
}

#[test]
#[ignore = "slow: builds the real demo"]
fn a_shell_in_a_guest_step_in_sandbox_mode_changes_no_checkpoint() {
    shell_in_bzip2_check(
        "demo-shell-sandbox",
        &["--guest", "sandbox"],
        "in the sandbox that stands in for its guest",
    );
}

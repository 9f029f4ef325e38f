//! The host stage end to end on a small real project: sandbox, checkpoints,
//! resume, interrupts, plans and bad input, through the real binary.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Fixture, manifests, snapshot};
use predicates::prelude::*;

fn fixture_with(steps: &str) -> Fixture {
    let f = Fixture::tiny();
    f.write(
        "steps/targets/t.yaml",
        format!("name: t\nsource_date_epoch: 1672531200\nconfig:\n  arch: x86_64\nstages:\n  - name: host\n    runner: host\n    steps: [{steps}]\n"),
    );
    f.import_sources();
    f
}

#[test]
fn builds_checkpoints_and_resumes_without_rebuilding() {
    let f = fixture_with("hello, greet");
    f.cmd()
        .args(["run", "--target", "t"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "[2/2] greet: built and checkpointed",
        ));
    let first = manifests(&f.state(), "t");
    assert_eq!(first.len(), 2);
    assert!(
        first["greet"].contains("\"path\": \"greeting\""),
        "{}",
        first["greet"]
    );

    // Existing state is never replaced silently.
    f.cmd()
        .args(["run", "--target", "t"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--resume").and(predicate::str::contains("--fresh")));

    f.cmd()
        .args(["run", "--target", "t", "--resume"])
        .assert()
        .success()
        .stderr(
            predicate::str::contains("[1/2] hello: restored from checkpoint")
                .and(predicate::str::contains(
                    "[2/2] greet: restored from checkpoint",
                ))
                .and(predicate::str::contains("building").not()),
        );
    assert_eq!(manifests(&f.state(), "t"), first);

    f.cmd()
        .args(["run", "--target", "t", "--fresh"])
        .assert()
        .success()
        .stderr(predicate::str::contains("2 built, 0 restored"));
    assert_eq!(
        manifests(&f.state(), "t"),
        first,
        "a rebuild gives the same files"
    );
}

#[test]
fn a_damaged_checkpoint_is_rebuilt_with_a_warning() {
    let f = fixture_with("hello, greet");
    f.cmd().args(["run", "--target", "t"]).assert().success();
    let before = manifests(&f.state(), "t");
    let record = common::record(&f.state(), "t");
    let key = record["steps"]["greet"]["key"]
        .as_str()
        .unwrap()
        .to_string();
    let greeting = f
        .state()
        .join("checkpoints")
        .join(&key)
        .join("tree/greeting");
    fs::write(&greeting, "tampered\n").unwrap();
    f.cmd()
        .args(["run", "--target", "t", "--resume"])
        .assert()
        .success()
        .stderr(
            predicate::str::contains("the checkpoint of greet")
                .and(predicate::str::contains("greeting differs"))
                .and(predicate::str::contains("[2/2] greet: built")),
        );
    assert_eq!(manifests(&f.state(), "t"), before);
}

#[test]
fn the_bwrap_sandbox_is_clean_confined_and_offline() {
    sandbox_is_clean_confined_and_offline("bwrap");
}

#[test]
fn the_namespaces_sandbox_is_clean_confined_and_offline() {
    sandbox_is_clean_confined_and_offline("namespaces");
}

fn sandbox_is_clean_confined_and_offline(sandbox: &str) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    // The listener is reachable from outside the sandbox: the check below can fail.
    std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(listener.accept().is_ok());

    let f = fixture_with("hello, probe");
    f.write(
        "steps/probe.yaml",
        format!(
            "name: probe\nversion: \"1\"\ndescription: Looks around.\nbuild: |\n  env | sort > \"$OUT/env\"\n  umask > \"$OUT/umask\"\n  hostname > \"$OUT/hostname\"\n  pwd > \"$OUT/pwd\"\n  ls /sysroot/usr/bin > \"$OUT/sysroot\"\n  for p in /usr/probe /sysroot/probe /etc/probe /probe; do touch $p 2>/dev/null && echo \"wrote $p\" >> \"$OUT/escapes\" || true; done\n  touch /build/ok /tmp/ok\n  if bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}' 2> \"$OUT/net-error\"; then echo connected > \"$OUT/net\"; else echo refused > \"$OUT/net\"; fi\n"
        ),
    );
    f.cmd()
        .args(["run", "--target", "t", "--sandbox", sandbox])
        .assert()
        .success()
        .stderr(predicate::str::contains(format!("host ({sandbox})")));
    assert!(
        listener.accept().is_err(),
        "the sandbox reached the host's listener"
    );

    let record = common::record(&f.state(), "t");
    let key = record["steps"]["probe"]["key"].as_str().unwrap();
    let out = f.state().join("checkpoints").join(key).join("tree");
    let read = |name: &str| fs::read_to_string(out.join(name)).unwrap_or_default();
    assert_eq!(
        read("net"),
        "refused\n",
        "network error: {}",
        read("net-error")
    );
    assert_eq!(
        read("escapes"),
        "",
        "the step wrote outside /out and /build"
    );
    assert_eq!(read("umask"), "0022\n");
    assert_eq!(read("hostname"), "stagebuild\n");
    assert_eq!(read("pwd"), "/build\n");
    assert_eq!(read("sysroot"), "hello\n");
    let env: Vec<String> = read("env")
        .lines()
        .filter(|l| {
            !["PWD=", "OLDPWD=", "SHLVL=", "_="]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .map(str::to_string)
        .collect();
    let jobs = format!("JOBS={}", std::thread::available_parallelism().unwrap());
    assert_eq!(
        env,
        [
            "HOME=/build",
            &jobs,
            "LC_ALL=C",
            "OUT=/out",
            "PATH=/usr/bin:/bin:/usr/sbin:/sbin:/sysroot/usr/bin:/sysroot/bin",
            "SOURCE_DATE_EPOCH=1672531200",
            "SYSROOT=/sysroot",
            "TZ=UTC",
        ]
    );
}

/// Processes whose command line contains `marker`, anywhere on the machine.
fn processes_with(marker: &str) -> Vec<String> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline
                .contains(marker)
                .then(|| format!("{pid}: {cmdline}"))
        })
        .collect()
}

/// Starts a run and waits until its `slow` step has begun. `marker` is the sleep's argument, to find its process.
fn start_until_slow(f: &Fixture, marker: &str, sandbox: &str) -> std::process::Child {
    f.write(
        "steps/slow.yaml",
        format!(
            "name: slow\nversion: \"1\"\ndescription: Takes its time.\nbuild: |\n  echo started-slow\n  sleep {marker}\n  echo done > \"$OUT/slow\"\n"
        ),
    );
    let mut child = f
        .std_cmd()
        .args(["run", "--target", "t", "--sandbox", sandbox])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = f.state().join("logs/t/slow.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("started-slow")
    {
        assert!(Instant::now() < deadline, "the slow step never started");
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn wait_gone(marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_with(marker).is_empty() {
        assert!(
            Instant::now() < deadline,
            "left running: {:?}",
            processes_with(marker)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigkill_mid_step_then_resume_restores_earlier_steps() {
    sigkill_then_resume("bwrap", "4.217");
}

#[test]
fn sigkill_mid_step_in_the_namespaces_sandbox_leaves_nothing_running() {
    sigkill_then_resume("namespaces", "4.219");
}

fn sigkill_then_resume(sandbox: &str, marker: &str) {
    let f = fixture_with("hello, greet, slow");
    let mut child = start_until_slow(&f, marker, sandbox);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    wait_gone(marker);

    f.cmd()
        .args(["run", "--target", "t", "--resume"])
        .assert()
        .success()
        .stderr(
            predicate::str::contains("[1/3] hello: restored from checkpoint")
                .and(predicate::str::contains(
                    "[2/3] greet: restored from checkpoint",
                ))
                .and(predicate::str::contains("[3/3] slow: built")),
        );
    let resumed = manifests(&f.state(), "t");

    let clean = fixture_with("hello, greet, slow");
    clean.write(
        "steps/slow.yaml",
        fs::read(f.project().join("steps/slow.yaml")).unwrap(),
    );
    clean
        .cmd()
        .args(["run", "--target", "t"])
        .assert()
        .success();
    assert_eq!(resumed, manifests(&clean.state(), "t"));
}

#[test]
fn sigint_stops_the_step_and_says_how_to_resume() {
    let f = fixture_with("hello, slow");
    let marker = "5.331";
    let mut child = start_until_slow(&f, marker, "auto");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .lines()
        .for_each(|l| stderr.push_str(&(l.unwrap() + "\n")));
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted while running step slow"),
        "{stderr}"
    );
    assert!(
        stderr.contains("to resume from here: stagebuild"),
        "{stderr}"
    );
    assert!(stderr.contains("run --target t --resume"), "{stderr}");
    // The step's processes run in their own session in the sandbox's PID
    // namespace: they die with its init, which the kernel finishes tearing
    // down on its own time (under load, just after stagebuild has exited).
    wait_gone(marker);
    f.cmd()
        .args(["run", "--target", "t", "--resume"])
        .assert()
        .success()
        .stderr(
            predicate::str::contains("hello: restored")
                .and(predicate::str::contains("slow: built")),
        );
}

#[test]
fn a_second_run_on_the_same_state_is_refused_naming_the_holder() {
    let f = fixture_with("hello, greet, slow");
    let mut child = start_until_slow(&f, "6.113", "auto");
    f.cmd()
        .args(["run", "--target", "t", "--resume"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("is in use by pid")
                .and(predicate::str::contains(child.id().to_string())),
        );
    f.cmd()
        .arg("status")
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "in use by pid {}",
            child.id()
        )));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_failing_step_shows_its_log_tail_and_the_resume_command() {
    let f = fixture_with("hello, broken");
    f.write(
        "steps/broken.yaml",
        "name: broken\nversion: \"1\"\ndescription: Fails.\nbuild: |\n  echo about to fail\n  false\n",
    );
    f.cmd()
        .args(["run", "--target", "t"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("step broken failed (exit code 1)")
                .and(predicate::str::contains("| about to fail"))
                .and(predicate::str::contains("logs/t/broken.log"))
                .and(predicate::str::contains("run --target t --resume")),
        );
    // The step before it is kept.
    assert_eq!(manifests(&f.state(), "t").len(), 1);
}

#[test]
fn plan_shows_what_an_edit_invalidates_and_why() {
    let f = fixture_with("hello, greet");
    f.cmd()
        .args(["plan", "--target", "t"])
        .assert()
        .success()
        .stdout(predicate::str::contains("to build"));
    f.cmd().args(["run", "--target", "t"]).assert().success();
    f.cmd()
        .args(["plan", "--target", "t"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("done").and(predicate::str::contains("invalidated").not()),
        );

    let step = fs::read_to_string(f.project().join("steps/hello.yaml")).unwrap();
    f.write("steps/hello.yaml", step.replace("-O2", "-O1"));
    let out = f
        .cmd()
        .args(["plan", "--target", "t", "--json"])
        .assert()
        .success();
    let plan: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let steps = plan["steps"].as_array().unwrap();
    assert_eq!(steps[0]["state"], "invalidated");
    assert_eq!(steps[0]["reasons"][0], "its step file changed");
    // greet's key follows hello's output, not known until hello is rebuilt.
    assert_eq!(steps[1]["state"], "may_be_kept");
    assert_eq!(steps[1]["if_unchanged"], "hello");

    // A description is prose: editing it rebuilds nothing.
    f.write(
        "steps/hello.yaml",
        step.replace("Compiles a tiny C program.", "Compiles a small C program."),
    );
    f.cmd()
        .args(["plan", "--target", "t"])
        .assert()
        .success()
        .stdout(predicate::str::contains("invalidated").not());
}

#[test]
fn passes_and_conditions_shape_the_chain() {
    let f = fixture_with("hello");
    f.write(
        "steps/targets/t.yaml",
        "name: t\nsource_date_epoch: 1\nconfig:\n  arch: x86_64\nstages:\n  - name: host\n    runner: host\n    steps:\n      - hello\n      - { step: greet, pass: 1 }\n      - { step: greet, pass: 2 }\n      - { step: greet, pass: 3, when: { arch: i686 } }\n",
    );
    let out = f
        .cmd()
        .args(["plan", "--target", "t", "--json"])
        .assert()
        .success();
    let plan: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let ids: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["hello", "greet-pass1", "greet-pass2"]);
    let out = f
        .cmd()
        .args(["plan", "--target", "t", "--json", "--set", "arch=i686"])
        .assert()
        .success();
    let plan: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(plan["steps"].as_array().unwrap().len(), 4);
    let keys: std::collections::BTreeSet<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 4, "each pass has its own key");
}

#[test]
fn bad_input_is_refused_before_anything_is_written() {
    let f = Fixture::tiny();
    f.import_sources();
    let mirror_before = snapshot(&f.mirror());
    let step = fs::read_to_string(f.project().join("steps/hello.yaml")).unwrap();
    let lock = fs::read_to_string(f.project().join("sources.lock")).unwrap();

    let check = |expected: &[&str]| {
        let assert = f.cmd().args(["run", "--target", "t"]).assert().code(2);
        let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
        for e in expected {
            assert!(stderr.contains(e), "expected {e:?} in:\n{stderr}");
        }
        assert!(!f.state().exists(), "the state directory was created");
        assert_eq!(snapshot(&f.mirror()), mirror_before, "the mirror changed");
    };

    f.write("steps/hello.yaml", format!("{step}colour: red\n"));
    check(&["steps/hello.yaml:12:1: unknown field `colour`"]);

    f.write(
        "steps/hello.yaml",
        step.replace(
            "sources: [hello-1.0.tar.gz]",
            "sources:\n  - hello-2.0.tar.gz",
        ),
    );
    check(&["steps/hello.yaml:5:5:", "hello-2.0.tar.gz", "not in"]);

    f.write("steps/hello.yaml", &step);
    let short = lock
        .lines()
        .map(|l| {
            if l.contains("sha256:") {
                &l[..l.len() - 2]
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    f.write("sources.lock", short);
    check(&[
        "sources.lock:4:13:",
        "64 lowercase hex digits",
        "62 characters",
    ]);

    f.write("sources.lock", &lock);
    let stored = f.mirror().join("sha256").join(common::first_sha256(&lock));
    let good = fs::read(&stored).unwrap();
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    fs::set_permissions(&stored, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    fs::write(&stored, &bad).unwrap();
    let expected_sha = common::first_sha256(&lock);
    let actual_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bad));
    let assert = f.cmd().args(["run", "--target", "t"]).assert().code(2);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(
        stderr.contains("checksum mismatch for hello-1.0.tar.gz"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("expected sha256 {expected_sha}")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("actual   sha256 {actual_sha}")),
        "{stderr}"
    );
    assert!(!f.state().exists());
}

#[test]
fn an_unreadable_record_says_to_start_fresh_and_never_to_resume() {
    let f = Fixture::tiny();
    fs::create_dir_all(f.state().join("targets")).unwrap();
    fs::write(f.state().join("targets/t.json"), "{ not json").unwrap();
    let assert = f
        .cmd()
        .args(["run", "--target", "t", "--resume"])
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(stderr.contains("targets/t.json: unreadable"), "{stderr}");
    assert!(stderr.contains("run with --fresh"), "{stderr}");
    assert!(!stderr.contains("to resume"), "{stderr}");
}

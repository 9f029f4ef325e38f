//! `stagebuild shell` driven through a pseudo-terminal, as a person at a
//! terminal would: commands typed, their output read, then `exit`; and no
//! checkpoint, record or log changed by it. The pty helpers are shared with
//! the guest's test in tests/demo.rs.

mod common;

use std::fs;
use std::time::Duration;

use common::{Fixture, pty, snapshot};
use predicates::prelude::*;

/// `hello`, then `broken`, which leaves a file in its build directory and fails.
fn failing_fixture() -> Fixture {
    let f = Fixture::tiny();
    f.write(
        "steps/broken.yaml",
        "name: broken\nversion: \"1\"\ndescription: Fails after writing into its build directory.\nbuild: |\n  echo left-by-the-failure > kept.txt\n  exit 3\n",
    );
    f.write(
        "steps/targets/t.yaml",
        "name: t\nsource_date_epoch: 1672531200\nconfig:\n  arch: x86_64\nstages:\n  - name: host\n    runner: host\n    steps: [hello, broken]\n",
    );
    f.import_sources();
    f
}

#[test]
fn a_shell_in_a_failed_host_step_sees_what_the_failure_left_and_changes_no_checkpoint() {
    let f = failing_fixture();
    f.cmd()
        .args(["run", "--target", "t"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(format!(
            "to open a shell where it failed: stagebuild --project {} --state {} --mirror {} shell --target t broken",
            f.project().display(),
            f.state().display(),
            f.mirror().display()
        )));
    let state = f.state();
    let before = (
        snapshot(&state.join("checkpoints")),
        snapshot(&state.join("targets")),
        snapshot(&state.join("logs")),
    );
    assert_eq!(before.0.keys().filter(|p| !p.contains('/')).count(), 1);

    // No STEP: the first without a checkpoint, the failed one.
    let mut session = pty::Session::spawn(f.std_cmd().args(["shell", "--target", "t"]));
    session.expect(
        "broken, the first step of t without a checkpoint",
        Duration::from_secs(30),
    );
    session.expect("stagebuild:broken$ ", Duration::from_secs(30));
    // What is typed is echoed, so each check looks for what only the
    // command's output holds.
    session.type_line("tr a-z A-Z < kept.txt; ls /sysroot/usr/bin; echo \"out=$OUT pwd=$PWD\"");
    session.expect("LEFT-BY-THE-FAILURE", Duration::from_secs(10));
    session.expect("hello", Duration::from_secs(10));
    session.expect("out=/out pwd=/build", Duration::from_secs(10));
    session.type_line(
        "echo scribble > /build/typed.txt; touch /sysroot/x || echo sysroot-is-read-only-$((6*7))",
    );
    session.expect("sysroot-is-read-only-42", Duration::from_secs(10));
    session.type_line("exit");
    let status = session.wait(Duration::from_secs(30));
    assert!(status.success(), "{status:?}\n{}", session.output());

    let after = (
        snapshot(&state.join("checkpoints")),
        snapshot(&state.join("targets")),
        snapshot(&state.join("logs")),
    );
    assert_eq!(
        before, after,
        "the shell changed a checkpoint, record or log"
    );
    let kept = state.join("work/broken/build");
    assert_eq!(
        fs::read_to_string(kept.join("typed.txt")).unwrap(),
        "scribble\n"
    );

    // The next run of the step starts from a fresh build directory.
    f.cmd()
        .args(["run", "--target", "t", "--resume"])
        .assert()
        .failure();
    assert!(kept.join("kept.txt").is_file());
    assert!(
        !kept.join("typed.txt").exists(),
        "the kept directory outlived the next run"
    );
}

#[test]
fn a_shell_in_a_step_without_a_failure_prepares_it_afresh_and_leaves_nothing() {
    let f = failing_fixture();
    f.cmd().args(["run", "--target", "t"]).assert().failure();
    // All of the state but its lock file, which names the latest holder.
    let state = || {
        let mut all = snapshot(&f.state());
        all.remove("lock");
        all
    };
    let before = state();
    let mut session = pty::Session::spawn(f.std_cmd().args(["shell", "--target", "t", "hello"]));
    session.expect("stagebuild:hello$ ", Duration::from_secs(30));
    session.type_line("wc -c < hello.c; ls /sysroot | wc -l");
    session.expect(
        &format!("{}\r\n0\r\n", common::HELLO_C.len()),
        Duration::from_secs(10),
    );
    session.type_line("exit 4");
    assert!(session.wait(Duration::from_secs(30)).success());
    assert_eq!(state(), before, "the scratch was left behind");
}

#[test]
fn a_shell_refuses_a_step_whose_earlier_steps_have_no_checkpoint() {
    let f = failing_fixture();
    f.cmd().args(["run", "--target", "t"]).assert().failure();
    f.write(
        "steps/targets/t.yaml",
        "name: t\nsource_date_epoch: 1672531200\nconfig:\n  arch: x86_64\nstages:\n  - name: host\n    runner: host\n    steps: [broken, greet]\n",
    );
    f.cmd()
        .args(["shell", "--target", "t", "greet"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "broken, before greet, has no checkpoint",
        ));
    f.cmd()
        .args(["shell", "--target", "t", "nosuch"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("its steps: broken, greet"));
}

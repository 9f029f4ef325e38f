//! Early cut-off, `run --until` and `--only`, and `report`, through the real
//! binary on the small host project of `common`.

mod common;

use common::Fixture;
use predicates::prelude::*;

fn fixture() -> Fixture {
    let f = Fixture::tiny();
    f.import_sources();
    f
}

#[test]
fn a_comment_in_a_build_script_rebuilds_the_step_once_and_keeps_the_later_ones() {
    let f = fixture();
    f.cmd().args(["run", "--target", "t"]).assert().success();
    let step = std::fs::read_to_string(f.project().join("steps/hello.yaml")).unwrap();
    f.write(
        "steps/hello.yaml",
        step.replace("build: |\n", "build: |\n  # only a comment is new\n"),
    );
    f.cmd()
        .args(["plan", "--target", "t"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "may be kept: kept if the output of hello is unchanged",
        ));
    f.cmd()
        .args(["run", "--target", "t", "--resume"])
        .assert()
        .success()
        .stderr(
            predicate::str::contains("hello: rebuilt, output unchanged: later steps kept").and(
                predicate::str::contains("[2/2] greet: restored from checkpoint"),
            ),
        );
    f.cmd()
        .args(["plan", "--target", "t"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "done (rebuilt, output unchanged: later steps kept)",
        ));

    // Each step's times across the two runs: hello twice, greet once.
    f.cmd()
        .args(["report", "--target", "t"])
        .assert()
        .success()
        .stdout(predicate::str::is_match(r"(?m)^  hello\s+2\s").unwrap())
        .stdout(predicate::str::is_match(r"(?m)^  greet\s+1\s").unwrap());
    let out = f
        .cmd()
        .args(["report", "--target", "t", "--json"])
        .assert()
        .success();
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let runs = |i: usize| report["steps"][i]["runs"].as_array().unwrap().len();
    assert_eq!((runs(0), runs(1)), (2, 1), "{report}");
    assert!(report["steps"][0]["runs"][1]["millis"].as_u64().is_some());
}

#[test]
fn until_stops_after_its_step_and_only_refuses_what_it_cannot_do() {
    let f = fixture();
    f.cmd()
        .args(["run", "--target", "t", "--only", "greet"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--only greet rebuilds it against the checkpoints before it, but hello has none",
        ));
    f.cmd()
        .args(["run", "--target", "t", "--until", "nope"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--until nope: target t has no step nope (its steps: hello, greet)",
        ));
    f.cmd()
        .args(["run", "--target", "t", "--until", "hello"])
        .assert()
        .success()
        .stderr(
            predicate::str::contains("[1/2] hello: built")
                .and(predicate::str::contains("greet").not()),
        );
    f.cmd()
        .args(["run", "--target", "t", "--only", "greet"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "[2/2] greet: built and checkpointed",
        ));
    f.cmd()
        .args(["run", "--target", "t", "--only", "hello", "--fresh"])
        .assert()
        .code(2);
}

//! Early cut-off, `needs:`, `--until` and `--only`, with the fake runner on
//! a real state directory (see [`super::fake`]).

use super::fake::{Fixture, step_file};
use crate::error::{Error, exit};
use crate::plan::{Plan, StepState, UNCHANGED};
use crate::project::Project;
use crate::report::Event;

fn built(events: &[Event]) -> Vec<&str> {
    let ids = events.iter().filter_map(|e| match e {
        Event::StepBuilt { id, .. } => Some(id.as_str()),
        _ => None,
    });
    ids.collect()
}

fn plan(f: &Fixture) -> Plan {
    let project = Project::open(&f.project()).unwrap();
    Plan::load(&project, &f.state(), "t", &[]).unwrap()
}

/// A step file whose build script has `script` as its body.
fn with_script(id: &str, script: &str) -> String {
    step_file(id, "1").replace("build: |\n  true\n", &format!("build: |\n  {script}\n"))
}

#[test]
fn a_cosmetic_change_to_a_build_script_is_rebuilt_once_and_the_later_steps_are_kept() {
    let f = Fixture::new();
    f.run(&[]).result.unwrap();
    f.ran();
    let keys = [f.recorded("a"), f.recorded("b"), f.recorded("c")];
    f.write_step("b", &with_script("b", "true   # only a comment differs"));

    let before = plan(&f);
    assert_eq!(before.states[0], StepState::Done);
    assert!(
        matches!(&before.states[1], StepState::Invalidated { reasons }
        if reasons == &["its step file changed".to_string()])
    );
    assert_eq!(
        before.states[2],
        StepState::MayBeKept {
            if_unchanged: "b".into()
        }
    );

    let run = f.run(&["resume"]);
    run.result.unwrap();
    assert_eq!(f.ran(), ["b"], "b alone is built");
    assert!(
        run.events
            .contains(&Event::OutputUnchanged { id: "b".into() })
    );
    assert_ne!(f.recorded("b"), keys[1], "b has a new key");
    assert_eq!(f.recorded("c"), keys[2], "c keeps its checkpoint and key");

    let after = plan(&f);
    assert!(after.states.iter().all(|s| *s == StepState::Done));
    let rows = after.rows();
    assert_eq!(rows[1].note, Some(UNCHANGED));
    assert_eq!((rows[0].note, rows[2].note), (None, None));

    // Once more: nothing is built at all.
    f.run(&["resume"]).result.unwrap();
    assert!(f.ran().is_empty());
    assert!(
        plan(&f).rows()[1].note.is_none(),
        "the note was the last run's"
    );
}

#[test]
fn a_changed_output_rebuilds_the_later_steps_and_plan_says_whose_output() {
    let f = Fixture::new();
    f.run(&[]).result.unwrap();
    f.ran();
    f.edit("b", "2");
    f.run(&["resume"]).result.unwrap();
    assert_eq!(f.ran(), ["b", "c"], "b's output says 2: c sees it");
    // Back to the first version: both checkpoints of the first run still fit.
    f.edit("b", "1");
    assert!(plan(&f).states.iter().all(|s| *s == StepState::Done));
    f.run(&["resume"]).result.unwrap();
    assert!(f.ran().is_empty());
}

#[test]
fn a_step_inserted_with_needs_sees_only_those_and_leaves_the_unrelated_checkpoints_valid() {
    let f = Fixture::new();
    f.run(&[]).result.unwrap();
    f.ran();
    // ins needs a only; b sees every step before it; c needs a and b.
    f.write_step(
        "ins",
        &step_file("ins", "1").replace("build:", "needs: [a]\nbuild:"),
    );
    f.write_step(
        "c",
        &step_file("c", "1").replace("build:", "needs: [a, b]\nbuild:"),
    );
    f.set_steps(&["a", "ins", "b", "c"]);
    let ran = f.run(&["resume"]);
    ran.result.unwrap();
    // b sees every step before it, n included; c needs a and b alone.
    assert_eq!(f.ran(), ["ins", "b", "c"]);
    assert_eq!(f.script.borrow().saw["ins"], ["a"]);
    assert_eq!(f.script.borrow().saw["b"], ["a", "ins"]);
    assert_eq!(f.script.borrow().saw["c"], ["a", "b"]);

    // Now a step inserted before c that no step needs: only it is built.
    f.write_step(
        "mid",
        &step_file("mid", "1").replace("build:", "needs: [a]\nbuild:"),
    );
    f.set_steps(&["a", "ins", "b", "mid", "c"]);
    let c = f.recorded("c");
    let plan_before = plan(&f);
    assert_eq!(plan_before.states[4], StepState::Done, "c does not need m");
    f.run(&["resume"]).result.unwrap();
    assert_eq!(f.ran(), ["mid"]);
    assert_eq!(f.recorded("c"), c);
    // An edit to ins, which c does not need, leaves c as it is.
    f.write_step(
        "ins",
        &step_file("ins", "2").replace("build:", "needs: [a]\nbuild:"),
    );
    f.run(&["resume"]).result.unwrap();
    assert_eq!(
        f.ran(),
        ["ins", "b"],
        "b sees ins's new output; mid and c do not"
    );
    assert_eq!(f.recorded("c"), c);
}

#[test]
fn needs_naming_an_unknown_or_later_step_is_refused_at_its_place_in_the_file() {
    let f = Fixture::new();
    for (needs, expected) in [
        ("[a, x]", "b: needs: x is not a step of this target"),
        ("[c]", "b: needs: c comes after it in the target"),
        ("[b]", "b: needs: b comes after it in the target"),
    ] {
        f.write_step(
            "b",
            &step_file("b", "1").replace("build:", &format!("needs: {needs}\nbuild:")),
        );
        let project = Project::open(&f.project()).unwrap();
        let error = project.chain("t", &[]).err().unwrap();
        assert_eq!(error.exit_code(), exit::BAD_INPUT);
        let text = error.to_string();
        let column = needs.rfind(|c: char| c.is_ascii_lowercase()).unwrap() + 8;
        assert!(
            text.contains(&format!("steps/b.yaml:4:{column}: {expected}")),
            "{text}"
        );
    }
}

#[test]
fn until_stops_after_its_step_and_only_rebuilds_one_step_against_the_checkpoints_before_it() {
    let f = Fixture::new();
    let until = f.run_scoped(&[], Some("b"), None);
    until.result.unwrap();
    assert_eq!(built(&until.events), ["a", "b"]);
    assert!(f.recorded("c").is_none());

    // --only c is refused while b... has a checkpoint; an unknown step is refused.
    let unknown = f
        .run_scoped(&["resume"], None, Some("x"))
        .result
        .err()
        .unwrap();
    assert!(
        matches!(&unknown, Error::UnknownStep { step, .. } if step == "x"),
        "{unknown}"
    );
    assert_eq!(unknown.exit_code(), exit::BAD_INPUT);
    let unknown_until = f
        .run_scoped(&["resume"], Some("x"), None)
        .result
        .err()
        .unwrap();
    assert!(
        unknown_until
            .to_string()
            .contains("--until x: target t has no step x (its steps: a, b, c)")
    );
    f.edit("a", "2");
    let missing = f.run_scoped(&[], None, Some("c")).result.err().unwrap();
    assert!(
        matches!(&missing, Error::NotCheckpointed { missing, .. } if missing == "a"),
        "{missing}"
    );
    assert_eq!(missing.exit_code(), exit::BAD_INPUT);
    assert!(f.ran().len() == 2, "refusals build nothing");
    f.edit("a", "1");

    // --only b against a's checkpoint, b already built: the same output, replaced.
    let only = f.run_scoped(&[], None, Some("b"));
    only.result.unwrap();
    assert_eq!(f.ran(), ["b"]);
    assert!(
        only.events
            .contains(&Event::OutputUnchanged { id: "b".into() })
    );
    f.run(&["resume"]).result.unwrap();
    assert_eq!(f.ran(), ["c"]);

    // The same key with another output (a build that is not reproducible):
    // refused, and the checkpoint kept.
    let b = f.recorded("b").unwrap();
    f.script
        .borrow_mut()
        .output
        .insert("b".into(), "b differs\n".into());
    let refused = f.run_scoped(&[], None, Some("b")).result.err().unwrap();
    assert!(
        matches!(&refused, Error::WouldInvalidate { later, .. } if later == &["c".to_string()]),
        "{refused}"
    );
    assert_eq!(refused.exit_code(), exit::OUTPUTS_DIFFER);
    let kept = f.state().store().load(&b).unwrap().unwrap();
    assert_eq!(
        std::fs::read_to_string(kept.tree.join("share/out")).unwrap(),
        "b 1\n"
    );

    // An edit that changes b's output: replaced, and the run says what it invalidates.
    f.edit("b", "2");
    f.ran();
    let edited = f.run_scoped(&[], None, Some("b"));
    edited.result.unwrap();
    assert!(edited.events.contains(&Event::Invalidates {
        id: "b".into(),
        later: vec!["c".into()]
    }));
    assert!(
        matches!(&plan(&f).states[2], StepState::Invalidated { reasons }
        if reasons == &["the output of b changed".to_string()])
    );
}

#[test]
fn progress_expects_each_step_to_take_what_its_earlier_build_took_and_sums_what_is_left() {
    use std::time::Duration;
    let f = Fixture::new();
    f.run(&[]).result.unwrap();
    let path = crate::times::path(&f.state(), "t");
    let first = crate::times::read(&path);
    assert_eq!(
        first.iter().map(|t| t.step.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    // As if the earlier run had taken 1, 2 and 3 seconds.
    let slow: Vec<crate::times::Timing> = (first.iter().zip([1000, 2000, 3000]))
        .map(|(t, millis)| crate::times::Timing {
            millis,
            ..t.clone()
        })
        .collect();
    std::fs::remove_file(&path).unwrap();
    for t in &slow {
        crate::times::append(&path, t).unwrap();
    }
    // c under another key: it is expected to take what c took before.
    f.edit("c", "2");
    let fresh = f.run(&["fresh"]);
    fresh.result.unwrap();
    let started: Vec<(String, Option<Duration>, Option<crate::times::Eta>)> = (fresh.events.iter())
        .filter_map(|e| match e {
            Event::StepStarted {
                id, expected, eta, ..
            } => Some((id.clone(), *expected, *eta)),
            _ => None,
        })
        .collect();
    let s = Duration::from_secs;
    let eta = |left: u64| {
        Some(crate::times::Eta {
            left: s(left),
            unknown: 0,
        })
    };
    assert_eq!(
        started,
        [
            ("a".to_string(), Some(s(1)), eta(6)),
            ("b".to_string(), Some(s(2)), eta(5)),
            ("c".to_string(), Some(s(3)), eta(3)),
        ]
    );
    assert_eq!(
        crate::times::read(&path).len(),
        6,
        "this run's builds are added"
    );
}

/// Every path under `dir` but the run lock, with its modification time and
/// size: what a run wrote.
fn written(dir: &std::path::Path) -> Vec<(String, std::time::SystemTime, u64)> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(path) = todo.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let rel = path.strip_prefix(dir).unwrap().display().to_string();
        if rel != "lock" {
            found.push((rel, meta.modified().unwrap(), meta.len()));
        }
        if meta.is_dir() {
            todo.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    found.sort();
    found
}

#[test]
fn a_no_op_rerun_writes_nothing_but_its_lock() {
    let f = Fixture::new();
    f.run(&[]).result.unwrap();
    let before = written(&f.state().root);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let again = f.run(&["resume"]);
    assert_eq!(again.result.unwrap().built, 0);
    assert_eq!(written(&f.state().root), before);
}

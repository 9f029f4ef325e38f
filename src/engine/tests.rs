//! The engine with a fake runner (see [`super::fake`]) on a real state
//! directory, checkpoint store and record.

use std::fs;

use super::fake::{Fixture, names_in};
use crate::error::runner::Misfit;
use crate::error::{Error, exit};
use crate::report::{Event, Unusable};

/// The steps each event of a kind names, in order.
fn built(events: &[Event]) -> Vec<&str> {
    let ids = events.iter().filter_map(|e| match e {
        Event::StepBuilt { id, .. } => Some(id.as_str()),
        _ => None,
    });
    ids.collect()
}

fn restored(events: &[Event]) -> Vec<&str> {
    let ids = events.iter().filter_map(|e| match e {
        Event::StepRestored { id, .. } => Some(id.as_str()),
        _ => None,
    });
    ids.collect()
}

fn discarded(events: &[Event]) -> Vec<(&str, &Unusable)> {
    let found = events.iter().filter_map(|e| match e {
        Event::Discarded { id, why, .. } => Some((id.as_str(), why)),
        _ => None,
    });
    found.collect()
}

#[test]
fn a_failed_run_resumes_from_its_checkpoints_and_a_finished_one_builds_nothing() {
    let f = Fixture::new();
    f.script.borrow_mut().fail.insert("b".into());
    let first = f.run(&[]);
    assert!(matches!(first.result, Err(Error::StepFailed { ref step, .. }) if step == "b"));
    assert_eq!(built(&first.events), ["a"]);
    assert!(f.recorded("a").is_some() && f.recorded("b").is_none());

    // Without --resume the state is not reused silently.
    let refused = f.run(&[]).result.err().unwrap();
    assert_eq!(refused.exit_code(), exit::BAD_INPUT);
    assert!(
        refused.to_string().contains("1 of 3 steps checkpointed"),
        "{refused}"
    );
    assert_eq!(f.ran(), ["a", "b"], "a refused run runs nothing");

    f.script.borrow_mut().fail.clear();
    let resumed = f.run(&["resume"]);
    let summary = resumed.result.unwrap();
    assert_eq!((summary.built, summary.restored), (2, 1));
    assert_eq!(restored(&resumed.events), ["a"]);
    assert_eq!(built(&resumed.events), ["b", "c"]);
    assert_eq!(f.ran(), ["b", "c"]);
    assert_eq!(resumed.cache.offers.len(), 3, "each step is offered");

    let again = f.run(&["resume"]);
    assert_eq!(again.result.unwrap().built, 0);
    assert_eq!(restored(&again.events), ["a", "b", "c"]);
    assert!(f.ran().is_empty());
    assert!(matches!(
        &again.events[0],
        Event::StageStarted { stage, runner } if stage == "host" && runner == "fake"
    ));
}

#[test]
fn fresh_discards_every_checkpoint_of_the_earlier_run_and_asks_no_cache() {
    let f = Fixture::new();
    let first = f.run(&[]);
    first.result.unwrap();
    assert_eq!(
        first.cache.pulls.len(),
        3,
        "a run asks the cache for each step"
    );
    let before = f.checkpoints();
    assert_eq!(before.len(), 3);
    // An edit to c: its old checkpoint is in the record only.
    f.edit("c", "2");
    let fresh = f.run(&["fresh"]);
    let summary = fresh.result.unwrap();
    assert_eq!((summary.built, summary.restored), (3, 0));
    assert_eq!(
        f.ran(),
        ["a", "b", "c", "a", "b", "c"],
        "built again, all of them"
    );
    assert!(
        fresh.cache.pulls.is_empty(),
        "--fresh builds everything here"
    );
    let after = f.checkpoints();
    assert_eq!(
        after.len(),
        3,
        "nothing of the earlier run is left: {after:?}"
    );
    assert_eq!(
        before.intersection(&after).count(),
        2,
        "a and b have the same keys"
    );
    assert_eq!(
        f.recorded("c").as_ref().map(|k| after.contains(k)),
        Some(true)
    );
}

#[test]
fn a_damaged_checkpoint_is_discarded_with_a_warning_and_rebuilt() {
    let f = Fixture::new();
    f.run(&[]).result.unwrap();
    f.ran();
    let key = f.recorded("b").unwrap();
    let file = f
        .state()
        .root
        .join("checkpoints")
        .join(&key)
        .join("tree/share/out");
    fs::write(&file, "tampered\n").unwrap();
    let resumed = f.run(&["resume"]);
    resumed.result.unwrap();
    match discarded(&resumed.events)[..] {
        [("b", Unusable::Damaged(why))] => assert!(why.contains("share/out differs"), "{why}"),
        ref other => panic!("{other:?}"),
    }
    assert_eq!(f.ran(), ["b"]);
    assert_eq!(restored(&resumed.events), ["a", "c"]);
    assert_eq!(fs::read_to_string(&file).unwrap(), "b 1\n");
}

#[test]
fn run_verify_finds_damage_that_left_the_files_stamp_as_it_was() {
    let f = Fixture::new();
    f.run(&[]).result.unwrap();
    f.ran();
    let key = f.recorded("b").unwrap();
    let file = f.state().store().dir(&key).join("tree/share/out");
    let mtime = fs::metadata(&file).unwrap().modified().unwrap();
    fs::write(&file, "b 2\n").unwrap();
    let same = fs::OpenOptions::new().write(true).open(&file).unwrap();
    same.set_times(fs::FileTimes::new().set_modified(mtime))
        .unwrap();
    let verified = f.run(&["resume", "verify"]);
    verified.result.unwrap();
    match discarded(&verified.events)[..] {
        [("b", Unusable::Damaged(why))] => assert!(why.contains("share/out differs"), "{why}"),
        ref other => panic!("{other:?}"),
    }
    assert_eq!(f.ran(), ["b"]);
    assert_eq!(fs::read_to_string(&file).unwrap(), "b 1\n");
}

#[test]
fn a_checkpoint_its_runner_rejects_is_discarded_and_rebuilt() {
    let f = Fixture::new();
    f.run(&[]).result.unwrap();
    f.ran();
    f.script.borrow_mut().misfit.insert("b".into());
    let misfit = Misfit::Rebuilt.to_string();
    let resumed = f.run(&["resume"]);
    resumed.result.unwrap();
    assert_eq!(
        discarded(&resumed.events),
        [("b", &Unusable::DoesNotFit(misfit))]
    );
    assert_eq!(f.ran(), ["b"]);
    assert_eq!(built(&resumed.events), ["b"]);
    assert_eq!(restored(&resumed.events), ["a", "c"]);
}

#[test]
fn outputs_that_differ_from_the_recorded_checksums_stop_the_run_with_exit_3() {
    let f = Fixture::new();
    let recording = f.run(&["update-checksums"]);
    recording.result.unwrap();
    let outputs = f.project().join("steps/targets/t.outputs");
    assert!(recording.events.contains(&Event::OutputsRecorded {
        steps: 3,
        path: outputs.clone()
    }));
    assert!(fs::read_to_string(&outputs).unwrap().contains("share/out"));
    f.ran();

    // The same outputs pass; another byte in b's fails it, before it is recorded.
    f.run(&["fresh"]).result.unwrap();
    f.script
        .borrow_mut()
        .output
        .insert("b".into(), "b 1!\n".into());
    let differs = f.run(&["fresh"]).result.err().unwrap();
    assert_eq!(differs.exit_code(), exit::OUTPUTS_DIFFER);
    match &differs {
        Error::OutputsDiffer {
            step,
            record,
            files,
        } => {
            assert_eq!((step.as_str(), record), ("b", &outputs));
            assert!(files.iter().any(|f| f.contains("share/out")), "{files:?}");
        }
        other => panic!("{other}"),
    }
    assert!(f.recorded("a").is_some() && f.recorded("b").is_none());
    assert_eq!(f.ran()[3..], ["a", "b"], "c is not built after b differs");
}

#[test]
fn a_commit_that_fails_midway_leaves_no_checkpoint_and_the_resume_builds_the_step() {
    let f = Fixture::new();
    f.script.borrow_mut().bad_extras.insert("b".into());
    let failed = f.run(&[]).result.err().unwrap();
    assert!(
        failed
            .to_string()
            .contains("not a file a checkpoint can keep"),
        "{failed}"
    );
    let state = f.state();
    // The tree was moved into staging before the commit failed: no key holds it.
    assert_eq!(f.checkpoints().len(), 1, "only a's");
    let staging = names_in(&state.tmp());
    assert_eq!(staging.len(), 1, "the staging directory");
    assert!(f.recorded("a").is_some() && f.recorded("b").is_none());
    // As a killed run of another process would leave it: this one's own
    // commit would reuse its name.
    let left = staging
        .first()
        .unwrap()
        .replace(&format!(".{}.", std::process::id()), ".1.");
    fs::rename(
        state.tmp().join(staging.first().unwrap()),
        state.tmp().join(left),
    )
    .unwrap();

    f.script.borrow_mut().bad_extras.clear();
    let resumed = f.run(&["resume"]);
    resumed.result.unwrap();
    assert_eq!(restored(&resumed.events), ["a"]);
    assert_eq!(built(&resumed.events), ["b", "c"]);
    assert!(names_in(&state.tmp()).is_empty(), "the staging was cleared");
    assert_eq!(f.checkpoints().len(), 3);
    let b = state
        .store()
        .load(&f.recorded("b").unwrap())
        .unwrap()
        .unwrap();
    assert!(b.meta.extras.is_empty());
}

#[test]
fn an_audit_rebuilds_each_step_varied_beside_its_checkpoint_and_commits_nothing() {
    let f = Fixture::new();
    f.run(&[]).result.unwrap();
    f.ran();
    let checkpoints = f.checkpoints();
    let record = f.state().record("t").unwrap();
    f.script.borrow_mut().tz_in_output.insert("b".into());
    let (report, events) = f.audit();
    let report = report.unwrap();
    assert_eq!(f.ran(), ["a", "b", "c"]);
    let tz = f.script.borrow().tz.clone();
    assert!(
        tz[3..]
            .iter()
            .all(|tz| tz.as_deref() == Some("Pacific/Kiritimati")),
        "{tz:?}"
    );
    let verdicts: Vec<(&str, bool)> = (report.steps.iter())
        .map(|s| (s.id.as_str(), s.reproducible))
        .collect();
    assert_eq!(verdicts, [("a", true), ("b", false), ("c", true)]);
    assert_eq!(report.first_divergent.as_deref(), Some("b"));
    assert_eq!(report.steps[1].files[0].path, "share/out");
    assert!(built(&events).is_empty() && discarded(&events).is_empty());
    assert_eq!(f.checkpoints(), checkpoints, "nothing committed");
    assert_eq!(f.state().record("t").unwrap(), record);

    // A damaged checkpoint is not compared with, nor discarded: an audit changes no state.
    let file = (f.state().root.join("checkpoints"))
        .join(f.recorded("a").unwrap())
        .join("tree/share/out");
    fs::write(&file, "tampered\n").unwrap();
    let damaged = f.audit().0.err().unwrap();
    assert!(
        matches!(&damaged, Error::CheckpointUnusable { step, problem }
        if step == "a" && problem.contains("damaged")),
        "{damaged}"
    );
    assert_eq!(damaged.exit_code(), exit::BUILD_FAILED);
    assert_eq!(fs::read_to_string(&file).unwrap(), "tampered\n");
    assert!(f.ran().is_empty());
}

//! States of a three-step project read through the real loaders, against
//! records and checkpoints made up in memory.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use super::*;
use crate::project::Project;

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// A project whose step `id` has `build` as its script.
fn project(root: &Path, builds: [&str; 3]) -> Project {
    write(root, "sources.lock", "version: 1\nsources:\n");
    for (id, build) in ["a", "b", "c"].iter().zip(builds) {
        write(
            root,
            &format!("steps/{id}.yaml"),
            &format!("name: {id}\nversion: \"1\"\ndescription: S.\nbuild: {build}\n"),
        );
    }
    write(
        root,
        "steps/targets/t.yaml",
        "name: t\nsource_date_epoch: 1\nstages:\n  - name: host\n    runner: host\n    \
         steps: [a, b, c]\n",
    );
    Project::open(root).unwrap()
}

/// What a run that built every step of `builds` leaves: its record and its
/// checkpoints' outputs by key, each step producing `out-ID`.
fn built(
    root: &Path,
    builds: [&str; 3],
) -> (BTreeMap<String, RecordedStep>, BTreeMap<String, String>) {
    let project = project(root, builds);
    let chain = project.chain("t", &[]).unwrap();
    let mut keys = Keys::new(&chain, &project.lock);
    let (mut record, mut outputs) = (BTreeMap::new(), BTreeMap::new());
    for step in &chain.steps {
        let inputs = keys.next();
        let key = inputs.key();
        let output = format!("out-{}", step.id);
        keys.produced(&output);
        outputs.insert(key.clone(), output.clone());
        let recorded = RecordedStep {
            key,
            inputs,
            output: Some(output),
            unchanged: false,
            changed_at: 0,
            keyed_at: 0,
        };
        record.insert(step.id.clone(), recorded);
    }
    (record, outputs)
}

fn states_of(
    root: &Path,
    builds: [&str; 3],
    record: &BTreeMap<String, RecordedStep>,
    outputs: &BTreeMap<String, String>,
) -> Vec<StepState> {
    let project = project(root, builds);
    let chain = project.chain("t", &[]).unwrap();
    plan_steps(&chain, &project.lock, record, |k| outputs.get(k).cloned()).1
}

#[test]
fn an_edit_rebuilds_the_step_and_the_later_ones_may_be_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (record, outputs) = built(dir.path(), ["true", "true", "true"]);
    let states = states_of(
        dir.path(),
        ["true", "true && true", "true"],
        &record,
        &outputs,
    );
    assert_eq!(states[0], StepState::Done);
    assert_eq!(
        states[1],
        StepState::Invalidated {
            reasons: vec!["its step file changed".into()]
        }
    );
    assert_eq!(
        states[2],
        StepState::MayBeKept {
            if_unchanged: "b".into()
        }
    );
    assert_eq!(states[2].detail(), ": kept if the output of b is unchanged");
}

#[test]
fn unbuilt_steps_are_to_build_and_lost_checkpoints_and_changed_outputs_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let builds = ["true", "true", "true"];
    let (record, mut outputs) = built(dir.path(), builds);
    let fresh = states_of(dir.path(), builds, &BTreeMap::new(), &BTreeMap::new());
    assert!(fresh.iter().all(|s| *s == StepState::ToBuild));

    let b = record["b"].key.clone();
    outputs.remove(&b);
    let lost = states_of(dir.path(), builds, &record, &outputs);
    assert_eq!(lost[0], StepState::Done);
    assert_eq!(
        lost[1],
        StepState::Invalidated {
            reasons: vec!["its checkpoint is missing".into()]
        }
    );
    assert_eq!(
        lost[2],
        StepState::MayBeKept {
            if_unchanged: "b".into()
        }
    );

    // b was rebuilt with another output: c's key moved, and the record says why.
    outputs.insert(b, "out-b2".into());
    let moved = states_of(dir.path(), builds, &record, &outputs);
    assert_eq!(moved[1], StepState::Done);
    assert_eq!(
        moved[2],
        StepState::Invalidated {
            reasons: vec!["the output of b changed".into()]
        }
    );
}

#[test]
fn a_record_of_an_older_stagebuild_is_named_as_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let builds = ["true", "true", "true"];
    let (mut record, _) = built(dir.path(), builds);
    for r in record.values_mut() {
        r.inputs.earlier.clear();
        r.key = r.inputs.key();
        r.output = None;
    }
    let states = states_of(dir.path(), builds, &record, &BTreeMap::new());
    let old = "recorded by an older stagebuild, whose keys chained on the step before";
    assert!(
        states.iter().all(|s| *s
            == StepState::Invalidated {
                reasons: vec![old.into()]
            }),
        "{states:?}"
    );
}

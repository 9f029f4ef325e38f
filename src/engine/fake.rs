//! What the engine's tests run it with: a real project, state directory,
//! checkpoint store and mirror in a temporary directory, and a fake runner
//! and reporter. The runner is a stand-in for the sandbox, so that a test
//! takes milliseconds, and it gives on demand what a real runner gives only
//! by chance: other files, a checkpoint it rejects, output a commit cannot
//! keep.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::{Engine, RunOptions, Summary};
use crate::audit::{AuditReport, Auditor};
use crate::cache::{CacheError, CheckpointCache};
use crate::checkpoint::{Checkpoint, Store};
use crate::error::runner::Misfit;
use crate::error::{Error, Result};
use crate::mirror::Mirror;
use crate::project::{ChainStep, Project};
use crate::report::{Event, Reporter};
use crate::runner::{Cancel, Earlier, Runner, Runners, StepJob, Variation};
use crate::state::StateDir;
use crate::target::RunnerKind;

/// What the fake runner does, and what it was asked to do.
#[derive(Default)]
pub struct Script {
    /// The steps it ran, in order.
    pub ran: Vec<String>,
    /// The variations it ran them under (`TZ`), in order.
    pub tz: Vec<Option<String>>,
    /// What a step writes as its file `out`, instead of `STEP VERSION`.
    pub output: BTreeMap<String, String>,
    /// Steps that fail.
    pub fail: BTreeSet<String>,
    /// Steps whose checkpoints do not fit the steps before them.
    pub misfit: BTreeSet<String>,
    /// Steps that leave a directory among their extras, which a checkpoint
    /// cannot keep: the commit fails after it has moved the tree.
    pub bad_extras: BTreeSet<String>,
    /// With an audit's variation, a step writes its `TZ` into `out` too.
    pub tz_in_output: BTreeSet<String>,
    /// For each step run, the first word of each sysroot tree's `share/out`
    /// (the id of the step that wrote it): what it saw.
    pub saw: BTreeMap<String, Vec<String>>,
}

pub struct FakeRunner(pub Rc<RefCell<Script>>);

impl Runner for FakeRunner {
    fn name(&self) -> String {
        "fake".into()
    }

    fn run(&mut self, job: &StepJob, _cancel: &Cancel) -> Result<()> {
        let mut script = self.0.borrow_mut();
        let id = job.planned.id().to_string();
        let tz = job.variation.as_ref().and_then(|v| v.tz.clone());
        script.ran.push(id.clone());
        script.tz.push(tz.clone());
        if script.fail.contains(&id) {
            return Err(Error::StepFailed {
                step: id,
                status: "exit code 1".into(),
                log: job.log.clone(),
                tail: String::new(),
            });
        }
        let saw = (job.stage_trees().iter())
            .filter_map(|tree| fs::read_to_string(tree.join("share/out")).ok())
            .filter_map(|text| text.split_whitespace().next().map(str::to_string))
            .collect();
        script.saw.insert(id.clone(), saw);
        crate::fsutil::fresh_dir(&job.work)?;
        let version = &job.planned.chain_step.step.definition.version;
        let mut text = (script.output.get(&id).cloned()).unwrap_or(format!("{id} {version}\n"));
        if let Some(tz) = tz.filter(|_| script.tz_in_output.contains(&id)) {
            text.push_str(&tz);
        }
        fs::create_dir_all(job.out().join("share")).unwrap();
        fs::write(job.out().join("share/out"), text).unwrap();
        if script.bad_extras.contains(&id) {
            fs::create_dir_all(job.extras().join("not-a-file")).unwrap();
        }
        Ok(())
    }

    fn fits(
        &self,
        step: &ChainStep,
        _checkpoint: &Checkpoint,
        _earlier: &[Earlier],
    ) -> std::result::Result<(), Misfit> {
        match self.0.borrow().misfit.contains(&step.id) {
            true => Err(Misfit::Rebuilt),
            false => Ok(()),
        }
    }
}

/// Keeps every event.
#[derive(Default)]
pub struct Recorder(pub Vec<Event>);

impl Reporter for Recorder {
    fn event(&mut self, event: Event) {
        self.0.push(event);
    }
}

/// A cache that holds nothing and notes what it was asked for.
#[derive(Default)]
pub struct AskedCache {
    pub pulls: Vec<String>,
    pub offers: Vec<String>,
}

impl CheckpointCache for AskedCache {
    fn pull(&mut self, key: &str, _store: &Store) -> std::result::Result<bool, CacheError> {
        self.pulls.push(key.to_string());
        Ok(false)
    }
    fn offer(&mut self, checkpoint: &Checkpoint) {
        self.offers.push(checkpoint.meta.key.clone());
    }
}

/// A project of one host stage with steps `a`, `b` and `c`, with its
/// state directory and mirror, all in a temporary directory.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub script: Rc<RefCell<Script>>,
}

/// What one run gave.
pub struct Ran {
    pub result: Result<Summary>,
    pub events: Vec<Event>,
    pub cache: AskedCache,
}

impl Fixture {
    pub fn new() -> Fixture {
        // Each commit syncs its filesystem: on a disk busy with a build that
        // can take a second, on tmpfs it takes nothing.
        let shm = std::path::Path::new("/dev/shm");
        let dir = match shm.is_dir() {
            true => tempfile::tempdir_in(shm),
            false => tempfile::tempdir(),
        };
        let dir = dir.unwrap();
        let root = dir.path().join("project");
        let write = |rel: &str, text: &str| {
            let path = root.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        };
        write("sources.lock", "version: 1\nsources:\n");
        for id in ["a", "b", "c"] {
            write(&format!("steps/{id}.yaml"), &step_file(id, "1"));
        }
        write(
            "steps/targets/t.yaml",
            "name: t\nsource_date_epoch: 1672531200\nstages:\n  - name: host\n    \
             runner: host\n    steps: [a, b, c]\n",
        );
        Fixture {
            dir,
            script: Default::default(),
        }
    }

    pub fn project(&self) -> PathBuf {
        self.dir.path().join("project")
    }

    pub fn state(&self) -> StateDir {
        StateDir::new(self.dir.path().join("state"))
    }

    /// Gives step `id` another version, and so another key.
    pub fn edit(&self, id: &str, version: &str) {
        self.write_step(id, &step_file(id, version));
    }

    /// Writes step `id`'s file as `text`.
    pub fn write_step(&self, id: &str, text: &str) {
        let path = self.project().join(format!("steps/{id}.yaml"));
        fs::write(path, text).unwrap();
    }

    /// Makes the target's one stage these steps, in order.
    pub fn set_steps(&self, ids: &[&str]) {
        let path = self.project().join("steps/targets/t.yaml");
        let text = format!(
            "name: t\nsource_date_epoch: 1672531200\nstages:\n  - name: host\n    \
             runner: host\n    steps: [{}]\n",
            ids.join(", ")
        );
        fs::write(path, text).unwrap();
    }

    pub fn run(&self, how: &[&str]) -> Ran {
        self.run_scoped(how, None, None)
    }

    /// A run with `--until` or `--only` a step.
    pub fn run_scoped(&self, how: &[&str], until: Option<&str>, only: Option<&str>) -> Ran {
        let opts = RunOptions {
            target: "t".into(),
            overrides: Vec::new(),
            resume: how.contains(&"resume"),
            fresh: how.contains(&"fresh"),
            jobs: 1,
            update_checksums: how.contains(&"update-checksums"),
            command: "engine test".into(),
            until: until.map(str::to_string),
            only: only.map(str::to_string),
            verify: how.contains(&"verify"),
        };
        let project = Project::open(&self.project()).unwrap();
        let state = self.state();
        let mirror = Mirror::new(self.dir.path().join("mirror"));
        let mut runners = self.runners();
        let mut reporter = Recorder::default();
        let mut cache = AskedCache::default();
        let result = Engine {
            project: &project,
            state: &state,
            mirror: &mirror,
            runners: &mut runners,
            reporter: &mut reporter,
            cancel: Cancel::default(),
            cache: &mut cache,
        }
        .run(&opts);
        Ran {
            result,
            events: reporter.0,
            cache,
        }
    }

    /// Audits the target with `TZ` varied.
    pub fn audit(&self) -> (Result<AuditReport>, Vec<Event>) {
        let project = Project::open(&self.project()).unwrap();
        let state = self.state();
        let mirror = Mirror::new(self.dir.path().join("mirror"));
        let mut runners = self.runners();
        let mut reporter = Recorder::default();
        let variation = Variation {
            tz: Some("Pacific/Kiritimati".into()),
            ..Variation::default()
        };
        let report = Auditor {
            project: &project,
            state: &state,
            mirror: &mirror,
            runners: &mut runners,
            reporter: &mut reporter,
            cancel: Cancel::default(),
        }
        .audit("t", (variation, Vec::new(), Vec::new()), 1, "engine test");
        (report, reporter.0)
    }

    pub fn runners(&self) -> Runners {
        let mut runners = Runners::default();
        runners.add(RunnerKind::Host, FakeRunner(self.script.clone()));
        runners
    }

    /// The steps the runner ran since the last call.
    pub fn ran(&self) -> Vec<String> {
        std::mem::take(&mut self.script.borrow_mut().ran)
    }

    /// The keys of the checkpoints in the store.
    pub fn checkpoints(&self) -> BTreeSet<String> {
        names_in(&self.state().root.join("checkpoints"))
    }

    /// The key the record gives step `id`, if it names it.
    pub fn recorded(&self, id: &str) -> Option<String> {
        let record = self.state().record("t").unwrap();
        record.steps.get(id).map(|r| r.key.clone())
    }
}

pub fn names_in(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

pub fn step_file(id: &str, version: &str) -> String {
    format!("name: {id}\nversion: \"{version}\"\ndescription: Step {id}.\nbuild: |\n  true\n")
}

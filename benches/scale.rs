//! Costs at scale: a generated chain of 500 host steps whose outputs total
//! 2 GiB (each step writes one 4 MiB file and ten small ones, and sees every
//! earlier output in its sysroot), against what `make` or a from-scratch
//! build pays for the same thing. Run with `cargo bench --bench scale`; it
//! prints the table and writes it into docs/benchmarks.md. It needs nothing
//! built beforehand, only bwrap and about 4.5 GiB free under target/.
//!
//! 1. No-op rerun of the built chain: `run --resume`, against `make -q` over
//!    500 up-to-date targets; and `run --resume --verify`, which hashes
//!    every file instead of trusting the stamps of unchanged ones.
//! 2. `plan` of the built chain, against `make -n` over the same targets.
//! 3. Resume at step 400: a second target whose step 400 fails, `run
//!    --resume` until it fails again, against the same target built from an
//!    empty state until it fails (what a tool without checkpoints reruns).
//! 4. Checkpoint storage: the blocks under checkpoints/ against the outputs'
//!    bytes.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod support;
use support::{median, secs, step_file, target_file, timed, write};

const STEPS: usize = 500;
const FAILING: usize = 400;
const ROUNDS: usize = 5;
/// 500 of these are 2 GiB.
const BIG_FILE: u64 = (2u64 << 30) / STEPS as u64;
const SMALL_FILES: usize = 10;

struct Chain {
    stagebuild: PathBuf,
    project: PathBuf,
    state: PathBuf,
}

impl Chain {
    fn run(&self, state: &Path, args: &[&str], code: i32) -> Duration {
        timed(
            Command::new(&self.stagebuild)
                .arg("--project")
                .arg(&self.project)
                .arg("--state")
                .arg(state)
                .arg("--mirror")
                .arg(self.project.join("mirror"))
                .args(args),
            code,
        )
    }
}

fn name(n: usize) -> String {
    format!("s{n:03}")
}

/// Step n: its big file and its small ones, all its own.
fn write_steps(project: &Path) {
    for n in 1..=STEPS {
        step_file(
            project,
            &name(n),
            "",
            &format!(
                "mkdir -p \"$OUT/share/{id}\"\n\
                 yes {id} | head -c {BIG_FILE} > \"$OUT/share/{id}/data\"\n\
                 for i in $(seq {SMALL_FILES}); do echo \"{id} $i\" > \"$OUT/share/{id}/$i.h\"; done",
                id = name(n)
            ),
        );
    }
    step_file(
        project,
        "s400-broken",
        "",
        "echo failing on purpose\nexit 1",
    );
    let ids: Vec<String> = (1..=STEPS).map(name).collect();
    let stage = |ids: &[String]| {
        format!(
            "  - name: host\n    runner: host\n    steps: [{}]\n",
            ids.join(", ")
        )
    };
    target_file(project, "scale", &stage(&ids));
    let mut broken = ids.clone();
    broken[FAILING - 1] = "s400-broken".into();
    target_file(project, "scale-broken", &stage(&broken));
    write(&project.join("sources.lock"), "version: 1\nsources: []\n");
}

/// A Makefile of 500 targets, each on the one before it, all made.
fn make_chain(dir: &Path) {
    let mut makefile = format!("all: t{}\n", STEPS - 1);
    for n in 0..STEPS {
        let before = if n == 0 {
            String::new()
        } else {
            format!("t{}", n - 1)
        };
        writeln!(makefile, "t{n}: {before}\n\ttouch $@").unwrap();
    }
    write(&dir.join("Makefile"), &makefile);
    timed(Command::new("make").arg("-s").current_dir(dir), 0);
}

/// Bytes allocated under `dir`, each inode once.
fn allocated(dir: &Path, seen: &mut std::collections::HashSet<u64>) -> u64 {
    let mut total = 0;
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let meta = fs::symlink_metadata(entry.path()).unwrap();
        if seen.insert(meta.ino()) {
            total += meta.blocks() * 512;
        }
        if meta.is_dir() {
            total += allocated(&entry.path(), seen);
        }
    }
    total
}

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn main() {
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-scale");
    let _ = fs::remove_dir_all(&work);
    let chain = Chain {
        stagebuild: PathBuf::from(env!("CARGO_BIN_EXE_stagebuild")),
        project: work.join("project"),
        state: work.join("state"),
    };
    write_steps(&chain.project);
    let make_dir = work.join("make");
    make_chain(&make_dir);

    // The from-scratch baseline first: the broken target from an empty
    // state, until step 400 fails. Then the rest of the chain.
    eprintln!("scale bench: building {FAILING} steps from scratch");
    let scratch = chain.run(&chain.state, &["run", "--target", "scale-broken"], 1);
    eprintln!(
        "scale bench: building the rest ({} s so far)",
        scratch.as_secs()
    );
    chain.run(&chain.state, &["run", "--target", "scale", "--resume"], 0);

    let (mut noop, mut verified, mut make_q, mut plan, mut make_n, mut resume) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for _ in 0..ROUNDS {
        noop.push(chain.run(&chain.state, &["run", "--target", "scale", "--resume"], 0));
        verified.push(chain.run(
            &chain.state,
            &["run", "--target", "scale", "--resume", "--verify"],
            0,
        ));
        make_q.push(timed(
            Command::new("make").arg("-q").current_dir(&make_dir),
            0,
        ));
        plan.push(chain.run(&chain.state, &["plan", "--target", "scale"], 0));
        make_n.push(timed(
            Command::new("make").arg("-n").current_dir(&make_dir),
            0,
        ));
        resume.push(chain.run(
            &chain.state,
            &["run", "--target", "scale-broken", "--resume"],
            1,
        ));
    }

    let checkpoints = chain.state.join("checkpoints");
    let stored = allocated(&checkpoints, &mut Default::default());
    let outputs = STEPS as u64 * BIG_FILE
        + (1..=STEPS)
            .map(|n| {
                (1..=SMALL_FILES)
                    .map(|i| format!("{} {i}\n", name(n)).len() as u64)
                    .sum::<u64>()
            })
            .sum::<u64>();

    let (noop, verified, make_q, plan, make_n, resume) = (
        median(noop),
        median(verified),
        median(make_q),
        median(plan),
        median(make_n),
        median(resume),
    );
    let times = |ours: Duration, theirs: Duration| ours.as_secs_f64() / theirs.as_secs_f64();
    let mut table = String::new();
    writeln!(table, "### 500 steps, 2 GiB of outputs\n").unwrap();
    writeln!(
        table,
        "Measured {} on {}; medians of {ROUNDS} interleaved rounds; a release build of stagebuild. \
         {STEPS} host steps, each writing one {:.1} MiB file and {SMALL_FILES} small ones \
         ({} files in all), each with every earlier output linked into its sysroot.\n",
        support::today(),
        support::machine(),
        BIG_FILE as f64 / (1u64 << 20) as f64,
        STEPS * (SMALL_FILES + 1),
    )
    .unwrap();
    writeln!(table, "| figure | stagebuild | baseline | ratio | goal |").unwrap();
    writeln!(table, "|---|---|---|---|---|").unwrap();
    writeln!(
        table,
        "| no-op rerun | {} (`run --resume`) | {} (`make -q`, {STEPS} up-to-date targets) | {:.1}× make's time | ≤ 0.5 s |",
        secs(noop),
        secs(make_q),
        times(noop, make_q)
    )
    .unwrap();
    writeln!(
        table,
        "| no-op rerun, every file hashed | {} (`run --resume --verify`) | {} (`run --resume`, stamps trusted) | {:.1}× | none: what the stamps save |",
        secs(verified),
        secs(noop),
        times(verified, noop)
    )
    .unwrap();
    writeln!(
        table,
        "| `plan` | {} | {} (`make -n`, the same targets) | {:.1}× make's time | ≤ 0.3 s |",
        secs(plan),
        secs(make_n),
        times(plan, make_n)
    )
    .unwrap();
    writeln!(
        table,
        "| resume at step {FAILING} | {} (`run --resume`: {} restored, then step {FAILING} fails again at once) | {} (the same from an empty state, once: what a tool without checkpoints reruns) | {:.0}× faster | ≤ 3 s before step {FAILING} starts |",
        secs(resume),
        FAILING - 1,
        secs(scratch),
        times(scratch, resume)
    )
    .unwrap();
    writeln!(
        table,
        "| checkpoint storage | {} (blocks under checkpoints/: trees, manifests, meta) | {} (the outputs' bytes) | {:.3}× | ≤ 1.1× |",
        gib(stored),
        gib(outputs),
        stored as f64 / outputs as f64
    )
    .unwrap();
    support::write_section("scale", &table);
    let _ = fs::remove_dir_all(&work);
}

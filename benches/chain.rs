//! Chain benchmarks, measured side by side (A B A B …) so that drift on a
//! shared machine hits both alike. Run with `cargo bench` (this and the
//! mirror benchmark); it prints the table and writes it into
//! docs/benchmarks.md.
//!
//! It needs the demo built in the project's default state directory
//! (`bash scripts/demo.sh`); it resumes that run first, which is instant
//! once the demo is built. The guest of its VM stage is the demo's: the
//! i386 kernel, the initramfs and busybox, taken from those checkpoints.
//!
//! 1. Resume cost: a chain of 4 host and 4 VM steps of real work, failing
//!    at step k (two values): `run --resume` against `run --fresh`, each
//!    until step k starts and fails again.
//! 2. No-op rerun: `run --resume` on a built target of 50 steps, against
//!    `make -q` over 50 up-to-date targets.
//! 3. Host overhead per step: 100 trivial steps, against a shell loop that
//!    runs the same script in a bwrap sandbox of the same shape.
//! 4. VM checkpoint cost per step, from the step logs of (1).
//! 5. Checkpoint disk use after the demo, against its outputs' sizes.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};

mod support;
use support::{median, secs, step_file, target_file, timed, write};

const ROUNDS: usize = 3;

struct Bench {
    stagebuild: PathBuf,
    repo: PathBuf,
}

impl Bench {
    fn cmd(&self, project: &Path, state: &Path, mirror: &Path) -> Command {
        let mut cmd = Command::new(&self.stagebuild);
        cmd.arg("--project")
            .arg(project)
            .arg("--state")
            .arg(state)
            .arg("--mirror")
            .arg(mirror);
        cmd
    }
}

/// The checkpoint directory of a step in a state's record.
fn checkpoint(state: &Path, target: &str, step: &str) -> PathBuf {
    let record: serde_json::Value = serde_json::from_slice(
        &fs::read(state.join("targets").join(format!("{target}.json"))).unwrap(),
    )
    .unwrap();
    let key = record["steps"][step]["key"].as_str().unwrap();
    state.join("checkpoints").join(key)
}

/// A tar of the demo's guest (kernel, initramfs, busybox with its applet
/// links), as a source of the benchmark project, imported into its mirror.
fn guest_source(demo_state: &Path, project: &Path, mirror_dir: &Path) -> String {
    let stage = project.join("guest-tree");
    fs::create_dir_all(stage.join("boot")).unwrap();
    fs::copy(
        checkpoint(demo_state, "demo", "kernel-i386").join("tree/boot/bzImage"),
        stage.join("boot/bzImage"),
    )
    .unwrap();
    fs::copy(
        checkpoint(demo_state, "demo", "guest-initramfs").join("tree/boot/initramfs.cpio"),
        stage.join("boot/initramfs.cpio"),
    )
    .unwrap();
    let busybox = checkpoint(demo_state, "demo", "busybox").join("tree");
    let status = Command::new("cp")
        .arg("-a")
        .arg(busybox.join("."))
        .arg(&stage)
        .status()
        .unwrap();
    assert!(status.success());
    let incoming = project.join("incoming");
    fs::create_dir_all(&incoming).unwrap();
    let tar = incoming.join("guest.tar");
    let status = Command::new("tar")
        .args([
            "--sort=name",
            "--mtime=@1672531200",
            "--owner=0",
            "--group=0",
            "-cf",
        ])
        .arg(&tar)
        .arg("-C")
        .arg(&stage)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = fs::read(&tar).unwrap();
    fs::create_dir_all(mirror_dir).unwrap();
    format!(
        "  - name: guest.tar\n    sha256: {}\n    size: {}\n    urls: [\"http://127.0.0.1:9/guest.tar\"]\n",
        hex::encode(Sha256::digest(&bytes)),
        bytes.len()
    )
}

/// Bytes in the files under `dir` (their lengths, not their blocks).
fn file_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let meta = fs::symlink_metadata(entry.path()).unwrap();
        if meta.is_dir() {
            total += file_bytes(&entry.path());
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    total
}

/// Bytes a disk image takes on disk: images are sparse, so their blocks.
fn allocated_bytes(path: &Path) -> u64 {
    std::os::unix::fs::MetadataExt::blocks(&fs::metadata(path).unwrap()) * 512
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The figures the step logs give for a VM step's checkpoint: the guest's
/// shutdown after its output is written, plus the host's commit.
fn vm_checkpoint_cost(log: &str) -> Option<Duration> {
    let value = |prefix: &str| -> Option<f64> {
        let line = log.lines().find(|l| l.starts_with(prefix))?;
        line[prefix.len()..].split('s').next()?.trim().parse().ok()
    };
    let shutdown = value("# guest shut down ")?;
    let commit = value("# checkpoint committed in ")?;
    Some(Duration::from_secs_f64(shutdown + commit))
}

fn main() {
    let bench = Bench {
        stagebuild: PathBuf::from(env!("CARGO_BIN_EXE_stagebuild")),
        repo: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
    };
    let demo_state = bench.repo.join("state");
    let demo_mirror = bench.repo.join("mirror");
    eprintln!(
        "chain bench: making sure the demo is built in {}",
        demo_state.display()
    );
    let status = bench
        .cmd(&bench.repo, &demo_state, &demo_mirror)
        .args(["run", "--target", "demo", "--resume"])
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the demo must build first (scripts/demo.sh)"
    );

    let work = tempfile::tempdir().unwrap();
    let project = work.path().join("project");
    let mirror = work.path().join("mirror");
    fs::create_dir_all(project.join("vm")).unwrap();
    fs::copy(bench.repo.join("vm/agent"), project.join("vm/agent")).unwrap();
    let lock_entry = guest_source(&demo_state, &project, &mirror);
    write(
        &project.join("sources.lock"),
        &format!("version: 1\nsources:\n{lock_entry}"),
    );
    let status = bench
        .cmd(&project, &work.path().join("unused"), &mirror)
        .args(["mirror", "import"])
        .arg(project.join("incoming"))
        .status()
        .unwrap();
    assert!(status.success());

    // 1. The resume chain: the guest, 4 host steps and 4 VM steps that each
    //    compute for a second or more.
    write(
        &project.join("steps/guest.yaml"),
        "name: guest\nversion: \"1\"\ndescription: The demo's guest.\nsources: [guest.tar]\ninstall: |\n  cp -a bin sbin usr boot \"$OUT/\"\n",
    );
    let host_work = "awk 'BEGIN { for (i = 0; i < 55000000; i++) s += i; print s }'";
    let guest_work = "awk 'BEGIN { for (i = 0; i < 100000; i++) s += i; print s }'";
    for n in 1..=4 {
        step_file(
            &project,
            &format!("h{n}"),
            "",
            &format!("{host_work}\nmkdir -p \"$OUT/h\"\necho {n} > \"$OUT/h/{n}\""),
        );
        step_file(
            &project,
            &format!("v{n}"),
            "",
            &format!("{guest_work}\nmkdir -p \"$OUT/v\"\necho {n} > \"$OUT/v/{n}\""),
        );
    }
    target_file(
        &project,
        "resume",
        "  - name: host\n    runner: host\n    steps: [guest, h1, h2, h3, h4]\n  - name: vm\n    runner: vm\n    vm:\n      kernel: guest:boot/bzImage\n      initrd: guest:boot/initramfs.cpio\n      memory: 256\n      disk: 256\n    steps: [v1, v2, v3, v4]\n",
    );
    let state = work.path().join("state");
    let run =
        |args: &[&str], code: i32| timed(bench.cmd(&project, &state, &mirror).args(args), code);
    // The whole chain once, for each step's time and the VM checkpoints.
    let full = bench
        .cmd(&project, &state, &mirror)
        .args(["run", "--target", "resume", "--fresh"])
        .output()
        .unwrap();
    assert!(
        full.status.success(),
        "{}",
        String::from_utf8_lossy(&full.stderr)
    );
    // "[2/9] h1: built and checkpointed in 1.2s"
    let step_time = |prefix: char| -> Vec<f64> {
        String::from_utf8_lossy(&full.stderr)
            .lines()
            .filter_map(|l| {
                l.split_once("] ")?
                    .1
                    .split_once(": built and checkpointed in ")
            })
            .filter(|(id, _)| id.starts_with(prefix))
            .filter_map(|(_, t)| t.trim_end_matches('s').parse().ok())
            .collect()
    };
    let range = |times: Vec<f64>| {
        let min = times.iter().cloned().fold(f64::MAX, f64::min);
        let max = times.iter().cloned().fold(0.0, f64::max);
        format!("{min:.1}–{max:.1} s")
    };
    let (host_steps, vm_steps) = (range(step_time('h')), range(step_time('v')));
    let logs = state.join("logs/resume");
    let mut vm_checkpoints = Vec::new();
    let mut boots = Vec::new();
    for id in ["guest", "h1", "h2", "h3", "h4", "v1", "v2", "v3", "v4"] {
        let log = fs::read_to_string(logs.join(format!("{id}.log"))).unwrap_or_default();
        if let Some(cost) = vm_checkpoint_cost(&log) {
            vm_checkpoints.push(cost);
        }
        if let Some(up) = log
            .lines()
            .find_map(|l| l.strip_prefix("# guest up after "))
        {
            boots.push(Duration::from_secs_f64(
                up.split('s').next().unwrap().parse().unwrap(),
            ));
        }
    }
    let mut resume_rows = Vec::new();
    for (k, id) in [(7usize, "v2"), (9, "v4")] {
        let path = project.join("steps").join(format!("{id}.yaml"));
        let original = fs::read_to_string(&path).unwrap();
        fs::write(
            &path,
            original.replacen(
                "build: |\n",
                "build: |\n  echo failing on purpose; exit 1\n",
                1,
            ),
        )
        .unwrap();
        let (mut resumed, mut scratch) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            scratch.push(run(&["run", "--target", "resume", "--fresh"], 1));
            resumed.push(run(&["run", "--target", "resume", "--resume"], 1));
        }
        fs::write(&path, original).unwrap();
        resume_rows.push((k, id, median(resumed), median(scratch)));
    }
    let boot = median(boots.clone());

    // 2. No-op rerun of 50 built steps, against make -q on 50 targets.
    let mut names = Vec::new();
    for n in 1..=100 {
        let name = format!("t{n:03}");
        step_file(&project, &name, "", "true");
        names.push(name);
    }
    target_file(
        &project,
        "noop50",
        &format!(
            "  - name: host\n    runner: host\n    steps: [{}]\n",
            names[..50].join(", ")
        ),
    );
    run(&["run", "--target", "noop50", "--fresh"], 0);
    let make_dir = work.path().join("make");
    fs::create_dir_all(&make_dir).unwrap();
    let mut makefile = String::from("all:");
    for n in 0..50 {
        makefile.push_str(&format!(" t{n}"));
    }
    makefile.push('\n');
    for n in 0..50 {
        makefile.push_str(&format!(
            "t{n}: {}\n\ttouch $@\n",
            if n == 0 {
                String::new()
            } else {
                format!("t{}", n - 1)
            }
        ));
    }
    write(&make_dir.join("Makefile"), &makefile);
    timed(Command::new("make").arg("-s").current_dir(&make_dir), 0);
    let (mut noop, mut make) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        noop.push(run(&["run", "--target", "noop50", "--resume"], 0));
        make.push(timed(
            Command::new("make").arg("-q").current_dir(&make_dir),
            0,
        ));
    }

    // 3. Host overhead: 100 trivial steps against the same script in bwrap.
    target_file(
        &project,
        "trivial100",
        &format!(
            "  - name: host\n    runner: host\n    steps: [{}]\n",
            names.join(", ")
        ),
    );
    let script = work.path().join("step.sh");
    write(&script, "set -e\n(\nset -ex\ntrue\n)\n");
    let shell_loop = format!(
        "for i in $(seq 100); do mkdir -p {out}/$i && bwrap --unshare-all --die-with-parent \
         --tmpfs / --ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/lib /lib \
         --symlink usr/lib64 /lib64 --proc /proc --dev /dev --tmpfs /tmp \
         --bind {out}/$i /out --ro-bind {script} /step.sh --remount-ro / \
         sh /step.sh > {out}/$i.log 2>&1 || exit 1; done",
        out = work.path().join("loop").display(),
        script = script.display()
    );
    let (mut ours, mut baseline) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ours.push(run(&["run", "--target", "trivial100", "--fresh"], 0));
        let _ = fs::remove_dir_all(work.path().join("loop"));
        baseline.push(timed(Command::new("sh").arg("-c").arg(&shell_loop), 0));
    }
    let (ours, baseline) = (median(ours), median(baseline));
    let per_step = ours.saturating_sub(baseline) / 100;

    // 5. Checkpoint disk use after the demo.
    let record: serde_json::Value =
        serde_json::from_slice(&fs::read(demo_state.join("targets/demo.json")).unwrap()).unwrap();
    let (mut trees, mut disks, mut metadata) = (0u64, 0u64, 0u64);
    for step in record["steps"].as_object().unwrap().values() {
        let dir = demo_state
            .join("checkpoints")
            .join(step["key"].as_str().unwrap());
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            let bytes = if path.is_dir() {
                file_bytes(&path)
            } else if name.ends_with(".qcow2") {
                allocated_bytes(&path)
            } else {
                fs::metadata(&path).unwrap().len()
            };
            if name == "tree" {
                trees += bytes;
            } else if name.ends_with(".qcow2") {
                disks += bytes;
            } else {
                metadata += bytes;
            }
        }
    }
    // Base disks are made again when needed, and gone after a completed
    // run; any left over count too.
    for entry in fs::read_dir(demo_state.join("disks"))
        .into_iter()
        .flatten()
        .flatten()
    {
        disks += allocated_bytes(&entry.path());
    }
    let store = trees + disks + metadata;

    let mut table = String::new();
    writeln!(table, "### Chain\n").unwrap();
    writeln!(
        table,
        "Measured {} on {}; medians of {ROUNDS} interleaved rounds (5 for the no-op rerun). \
         The resume chain is 9 steps: the demo's guest, 4 host steps of real work ({host_steps} each) and 4 VM \
         steps ({vm_steps} each, i386 kernel, TCG); its guest boots in {} (median of the `guest up` lines).\n",
        support::today(),
        support::machine(),
        secs(boot),
    )
    .unwrap();
    writeln!(table, "| figure | stagebuild | baseline | ratio | goal |").unwrap();
    writeln!(table, "|---|---|---|---|---|").unwrap();
    for (k, id, resumed, scratch) in &resume_rows {
        writeln!(
            table,
            "| resume cost, failing at step {k} of 9 ({id}, a VM step) | {} (`run --resume` until {id} fails again) | {} (`run --fresh` until {id}: what a from-scratch tool reruns) | {:.1}× faster | about one VM start ({}) plus a restore, whatever k is |",
            secs(*resumed),
            secs(*scratch),
            scratch.as_secs_f64() / resumed.as_secs_f64(),
            secs(boot)
        )
        .unwrap();
    }
    let (noop, make) = (median(noop), median(make));
    writeln!(
        table,
        "| no-op rerun of 50 built steps | {} (`run --resume`) | {} (`make -q`, 50 up-to-date targets) | {:.1}× make's time | ≤ 0.3 s |",
        secs(noop),
        secs(make),
        noop.as_secs_f64() / make.as_secs_f64().max(1e-6)
    )
    .unwrap();
    writeln!(
        table,
        "| host overhead per step, 100 trivial steps | {:.1} ms per step ({} in all) | {} in all (the same script in bwrap, in a shell loop) | {:.2}× the loop's time | ≤ 50 ms per step |",
        per_step.as_secs_f64() * 1000.0,
        secs(ours),
        secs(baseline),
        ours.as_secs_f64() / baseline.as_secs_f64()
    )
    .unwrap();
    let vm_checkpoint = median(vm_checkpoints.clone());
    writeln!(
        table,
        "| VM checkpoint per step (guest shutdown after its output + commit), {} steps | {} | {} (the guest's boot, which every step pays anyway) | {:.2}× a boot | ≤ 2 s |",
        vm_checkpoints.len(),
        secs(vm_checkpoint),
        secs(boot),
        vm_checkpoint.as_secs_f64() / boot.as_secs_f64()
    )
    .unwrap();
    writeln!(
        table,
        "| checkpoint disk use after the demo | {} (trees {}, VM disks {}, manifests and meta {}) | {} (the steps' outputs) | {:.2}× | ≤ 1.1× |",
        mib(store),
        mib(trees),
        mib(disks),
        mib(metadata),
        mib(trees),
        store as f64 / trees as f64
    )
    .unwrap();
    support::write_section("chain", &table);
}

//! The fault suite: kills at random moments, hostile archives, malformed
//! input, a full disk. Each asserts the exact error or state, through the
//! real binary.

mod common;

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Fixture, RawEntry, manifests, raw_tar, snapshot};
use predicates::prelude::*;
use tar::EntryType;

/// A small deterministic random sequence (xorshift64*), so a failing run can
/// be repeated with the seed it prints.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A chain of six steps that each do a little real work (compile, generate
/// files), so that kills land in every phase: unpacking, building, committing.
fn work_chain() -> Fixture {
    let f = Fixture::tiny();
    let mut steps = vec!["hello".to_string()];
    for n in 1..=5 {
        let id = format!("work{n}");
        f.write(
            &format!("steps/{id}.yaml"),
            format!(
                "name: {id}\nversion: \"1\"\ndescription: Does some work.\nsources: [hello-1.0.tar.gz]\nworkdir: hello-1.0\nbuild: |\n  gcc -O2 -DSTEP={n} -o prog hello.c\n  i=0; while [ $i -lt 300 ]; do echo \"$i {n}\" > \"$OUT/f$i\"; i=$((i+1)); done\ninstall: |\n  mkdir -p \"$OUT/bin\" && cp prog \"$OUT/bin/prog{n}\"\n  /sysroot/usr/bin/hello > \"$OUT/greeting\"\n"
            ),
        );
        steps.push(id);
    }
    f.write(
        "steps/targets/t.yaml",
        format!(
            "name: t\nsource_date_epoch: 1672531200\nconfig:\n  arch: x86_64\nstages:\n  - name: host\n    runner: host\n    steps: [{}]\n",
            steps.join(", ")
        ),
    );
    f.import_sources();
    f
}

#[test]
fn sigkill_at_random_moments_then_resume_gives_the_uninterrupted_result() {
    let seed = env_number("STAGEBUILD_FAULT_SEED", 0x5eed_cafe);
    let kills = env_number("STAGEBUILD_KILLS", 10);
    eprintln!("seed {seed:#x}, {kills} kills (STAGEBUILD_FAULT_SEED, STAGEBUILD_KILLS)");
    let mut rng = Rng(seed);

    let reference = work_chain();
    let started = Instant::now();
    reference
        .cmd()
        .args(["run", "--target", "t"])
        .assert()
        .success();
    let full_run = started.elapsed();
    let expected = manifests(&reference.state(), "t");
    assert_eq!(expected.len(), 6);

    let f = work_chain();
    for kill in 0..kills {
        let mut child = f
            .std_cmd()
            .args(["run", "--target", "t", "--resume"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let delay = Duration::from_millis(rng.next() % (full_run.as_millis() as u64 + 1));
        std::thread::sleep(delay);
        let finished = child.try_wait().unwrap().is_some();
        child.kill().unwrap();
        child.wait().unwrap();
        eprintln!(
            "kill {kill}: after {delay:?}{}",
            if finished { " (already finished)" } else { "" }
        );
    }
    f.cmd()
        .args(["run", "--target", "t", "--resume"])
        .assert()
        .success();
    assert_eq!(manifests(&f.state(), "t"), expected);
    // Every checkpoint in the store verifies, and nothing half-written is left.
    f.cmd()
        .args(["run", "--target", "t", "--resume"])
        .assert()
        .success()
        .stderr(
            predicate::str::contains("0 built, 6 restored")
                .and(predicate::str::contains("warning").not()),
        );
    assert_eq!(fs::read_dir(f.state().join("tmp")).unwrap().count(), 0);
}

/// Runs a step whose only source is `archive`, and returns stderr.
fn run_with_archive(archive: &[u8]) -> (Fixture, String) {
    let f = Fixture::tiny();
    f.add_source("evil.tar", archive);
    f.write(
        "steps/evil.yaml",
        "name: evil\nversion: \"1\"\ndescription: Unpacks a hostile archive.\nsources: [evil.tar]\nbuild: |\n  true\n",
    );
    f.write(
        "steps/targets/t.yaml",
        "name: t\nsource_date_epoch: 1\nstages:\n  - name: host\n    runner: host\n    steps: [evil]\n",
    );
    f.import_sources();
    let assert = f.cmd().args(["run", "--target", "t"]).assert().code(2);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    (f, stderr)
}

#[test]
fn hostile_archives_are_refused_and_nothing_lands_outside_the_build_directory() {
    let outside = tempfile::tempdir().unwrap();
    let outside_dir = outside.path().display().to_string();
    let absolute_target = format!("{outside_dir}/absolute");
    let entry = |kind, name, link, data| RawEntry {
        kind,
        name,
        link,
        data,
        claimed_size: None,
    };
    let cases: Vec<(&str, Vec<RawEntry>, &str)> = vec![
        (
            "dot-dot path",
            vec![entry(EntryType::Regular, "../escaped", None, b"x")],
            "entry \"../escaped\": path leaves the build directory",
        ),
        (
            "absolute path",
            vec![entry(EntryType::Regular, &absolute_target, None, b"x")],
            "path leaves the build directory (absolute or `..`)",
        ),
        (
            "symlink out, then a file through it",
            vec![
                entry(EntryType::Symlink, "link", Some(&outside_dir), b""),
                entry(EntryType::Regular, "link/through", None, b"x"),
            ],
            "entry \"link\": symlink points outside the build directory",
        ),
        (
            "relative symlink out, then a file through it",
            vec![
                entry(
                    EntryType::Symlink,
                    "up",
                    Some("../../../../../../../../.."),
                    b"",
                ),
                entry(EntryType::Regular, "up/tmp/through", None, b"x"),
            ],
            "entry \"up\": symlink points outside the build directory",
        ),
        (
            "hard link out",
            vec![entry(EntryType::Link, "passwd", Some("/etc/passwd"), b"")],
            "entry \"passwd\": hard link points outside the build directory",
        ),
        (
            "character device",
            vec![entry(EntryType::Char, "null", None, b"")],
            "entry \"null\": device nodes are not allowed",
        ),
        (
            "block device",
            vec![entry(EntryType::Block, "sda", None, b"")],
            "entry \"sda\": device nodes are not allowed",
        ),
        (
            "fifo",
            vec![entry(EntryType::Fifo, "pipe", None, b"")],
            "entry \"pipe\": fifos are not allowed",
        ),
        (
            "huge claimed size",
            vec![RawEntry {
                kind: EntryType::Regular,
                name: "huge",
                link: None,
                data: b"only a few bytes",
                claimed_size: Some(1 << 40),
            }],
            "source evil.tar: ",
        ),
    ];
    for (what, entries, expected) in cases {
        let (f, stderr) = run_with_archive(&raw_tar(&entries));
        assert!(
            stderr.contains(expected),
            "{what}: expected {expected:?} in:\n{stderr}"
        );
        assert!(
            stderr.contains("evil.tar"),
            "{what}: the error names the archive:\n{stderr}"
        );
        assert_eq!(
            fs::read_dir(outside.path()).unwrap().count(),
            0,
            "{what}: wrote outside"
        );
        let work = f.state().join("work/evil");
        let stray: Vec<_> = fs::read_dir(&work)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            stray
                .iter()
                // `key` names the step the failed build belongs to, for `shell`.
                .all(|n| ["build", "out", "sysroot", "key"].contains(&n.as_str())),
            "{what}: {stray:?}"
        );
        assert!(
            !f.state().join("checkpoints").exists()
                || fs::read_dir(f.state().join("checkpoints")).unwrap().count() == 0
        );
    }
}

/// A valid project to break one file at a time.
fn malformed_base() -> Fixture {
    let f = Fixture::tiny();
    f.write(
        "patches/hello/fix.patch",
        "--- a/hello.c\n+++ b/hello.c\n@@ -1,2 +1,2 @@\n #include <stdio.h>\n-int main(void) { puts(\"hello from a sandbox\"); return 0; }\n+int main(void) { puts(\"patched\"); return 0; }\n",
    );
    f.import_sources();
    f
}

#[test]
fn malformed_input_exits_2_with_file_and_line_and_changes_nothing() {
    let f = malformed_base();
    let step = fs::read_to_string(f.project().join("steps/hello.yaml")).unwrap();
    let target = fs::read_to_string(f.project().join("steps/targets/t.yaml")).unwrap();
    let lock = fs::read_to_string(f.project().join("sources.lock")).unwrap();
    let sha = common::first_sha256(&lock);
    let entry = |extra: &str| {
        format!(
            "version: 1\nsources:\n  - name: a.tar.gz\n    sha256: {sha}\n    size: 10\n    urls: [https://example.org/a.tar.gz]\n{extra}"
        )
    };
    let s = |from: &str, to: &str| {
        assert!(step.contains(from), "{from}");
        step.replacen(from, to, 1)
    };
    let t = |from: &str, to: &str| {
        assert!(target.contains(from), "{from}");
        target.replacen(from, to, 1)
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        // Step files.
        (
            "steps/hello.yaml",
            format!("{step}colour: red\n").into(),
            "steps/hello.yaml:12:1: unknown field `colour`",
        ),
        (
            "steps/hello.yaml",
            s("version: \"1.0\"", "version: [1, 0]").into(),
            "steps/hello.yaml:2:10: expected string scalar",
        ),
        (
            "steps/hello.yaml",
            s("name: hello\n", "").into(),
            "steps/hello.yaml:7:1: missing field `name`",
        ),
        (
            "steps/hello.yaml",
            s("name: hello", "name: hullo").into(),
            "steps/hello.yaml:1:7: the step is named \"hullo\" but its file is hello.yaml",
        ),
        (
            "steps/hello.yaml",
            s("name: hello", "name: Hello!").into(),
            "steps/hello.yaml:1:7: the step is named \"Hello!\"",
        ),
        (
            "steps/hello.yaml",
            s("sources: [hello-1.0.tar.gz]", "sources: [hello-9.tar.gz]").into(),
            "steps/hello.yaml:4:11: source \"hello-9.tar.gz\" is not in",
        ),
        (
            "steps/hello.yaml",
            s(
                "sources: [hello-1.0.tar.gz]",
                "sources: [hello-1.0.tar.gz, hello-1.0.tar.gz]",
            )
            .into(),
            "steps/hello.yaml:4:29: source \"hello-1.0.tar.gz\" is listed twice",
        ),
        (
            "steps/hello.yaml",
            s("sources: [hello-1.0.tar.gz]", "sources: hello-1.0.tar.gz").into(),
            "steps/hello.yaml:4:10: expected sequence start",
        ),
        (
            "steps/hello.yaml",
            s(
                "workdir: hello-1.0",
                "workdir: hello-1.0\npatches: [missing.patch]",
            )
            .into(),
            "steps/hello.yaml:6:11: patch",
        ),
        (
            "steps/hello.yaml",
            s(
                "workdir: hello-1.0",
                "workdir: hello-1.0\npatches: [../fix.patch]",
            )
            .into(),
            "steps/hello.yaml:6:11: patch \"../fix.patch\" must be a plain file name",
        ),
        (
            "steps/hello.yaml",
            s("workdir: hello-1.0", "workdir: /etc").into(),
            "steps/hello.yaml:5:10: workdir \"/etc\" must be a relative path",
        ),
        (
            "steps/hello.yaml",
            s("workdir: hello-1.0", "workdir: ../..").into(),
            "steps/hello.yaml:5:10: workdir \"../..\" must be a relative path",
        ),
        (
            "steps/hello.yaml",
            s(
                "workdir: hello-1.0",
                "workdir: hello-1.0\nenv:\n  PATH: /opt/bin",
            )
            .into(),
            "steps/hello.yaml:7:3: env may not set PATH",
        ),
        (
            "steps/hello.yaml",
            s(
                "workdir: hello-1.0",
                "workdir: hello-1.0\nenv:\n  bad-name: x",
            )
            .into(),
            "steps/hello.yaml:7:3: env name \"bad-name\" is not a variable name",
        ),
        (
            "steps/hello.yaml",
            s(
                "workdir: hello-1.0",
                "workdir: hello-1.0\nenv:\n  CFLAGS: {a: 1}",
            )
            .into(),
            "steps/hello.yaml:7:11: expected string scalar",
        ),
        (
            "steps/hello.yaml",
            "name: hello\nversion: \"1\"\ndescription: Nothing to do.\n".into(),
            "steps/hello.yaml:1:1: the step has none of configure, build, install",
        ),
        (
            "steps/hello.yaml",
            b"".to_vec(),
            "steps/hello.yaml:1:1: the file is empty",
        ),
        (
            "steps/hello.yaml",
            s("Compiles", "Comp\u{fffd}iles")
                .replace('\u{fffd}', "\u{1}")
                .into_bytes()
                .into_iter()
                .map(|b| if b == 1 { 0xff } else { b })
                .collect(),
            "steps/hello.yaml:3:18: invalid UTF-8",
        ),
        (
            "steps/hello.yaml",
            format!("{step}name: again\n").into(),
            "steps/hello.yaml:12:1: duplicate mapping key `name`",
        ),
        (
            "steps/hello.yaml",
            s("sources: [hello-1.0.tar.gz]", "sources: [hello-1.0.tar.gz").into(),
            "steps/hello.yaml:5:8: illegal placement of ':' indicator",
        ),
        // Targets.
        (
            "steps/targets/t.yaml",
            t("runner: host", "runner: chroot").into(),
            "steps/targets/t.yaml:7:13: unknown variant `chroot`, expected one of host, vm",
        ),
        (
            "steps/targets/t.yaml",
            t("runner: host", "runner: vm").into(),
            "steps/targets/t.yaml:6:5: stage \"host\" runs in a VM: give its vm: settings (kernel at least)",
        ),
        (
            "steps/targets/t.yaml",
            t(
                "runner: host",
                "runner: vm\n    vm: { kernel: later:boot/vmlinuz }",
            )
            .into(),
            "steps/targets/t.yaml:8:19: \"later:boot/vmlinuz\": later is not a step of an earlier stage",
        ),
        (
            "steps/targets/t.yaml",
            t("      - greet\n", "      - greet\n      - nope\n").into(),
            "steps/targets/t.yaml:11:9: step \"nope\" does not exist",
        ),
        (
            "steps/targets/t.yaml",
            t("      - greet\n", "      - greet\n      - hello\n").into(),
            "steps/targets/t.yaml:11:9: step hello appears twice (first at line 9)",
        ),
        (
            "steps/targets/t.yaml",
            format!("{target}  - name: host\n    runner: host\n    steps: []\n").into(),
            "steps/targets/t.yaml:11:5: stage \"host\" is listed twice",
        ),
        (
            "steps/targets/t.yaml",
            t(
                "      - greet\n",
                "      - { step: greet, when: { libc: musl } }\n",
            )
            .into(),
            "steps/targets/t.yaml:10:9: condition on \"libc\", which is not in the target's config",
        ),
        (
            "steps/targets/t.yaml",
            t("      - greet\n", "      - { step: greet, pass: 0 }\n").into(),
            "steps/targets/t.yaml:10:9: passes count from 1",
        ),
        (
            "steps/targets/t.yaml",
            t("      - greet\n", "      - { step: greet, passes: 2 }\n").into(),
            "steps/targets/t.yaml:10:9: each step must be a step name, or { step: NAME, pass: N, when: { VARIABLE: VALUES } }",
        ),
        (
            "steps/targets/t.yaml",
            "name: t\nsource_date_epoch: 1\nstages: []\n".into(),
            "steps/targets/t.yaml:1:1: the target has no stages",
        ),
        (
            "steps/targets/t.yaml",
            t("name: t", "name: u").into(),
            "steps/targets/t.yaml:1:7: the target is named \"u\" but its file is t.yaml",
        ),
        (
            "steps/targets/t.yaml",
            t("source_date_epoch: 1672531200\n", "").into(),
            "steps/targets/t.yaml:4:1: missing field `source_date_epoch`",
        ),
        (
            "steps/targets/t.yaml",
            t("runner: host", "runner: host\n    memory: 2G").into(),
            "steps/targets/t.yaml:8:5: unknown field `memory`",
        ),
        (
            "steps/targets/t.yaml",
            t(
                "source_date_epoch: 1672531200",
                "source_date_epoch: yesterday",
            )
            .into(),
            "steps/targets/t.yaml:2:20: invalid u64",
        ),
        // Kexec steps and the stages around them.
        (
            "steps/greet.yaml",
            b"name: greet\nversion: \"1\"\ndescription: A hop.\nbuild: |\n  true\nkexec:\n  kernel: hello:boot/bzImage\n".to_vec(),
            "steps/greet.yaml:5:3: a kexec step only loads a kernel and jumps to it: remove build",
        ),
        (
            "steps/greet.yaml",
            b"name: greet\nversion: \"1\"\ndescription: A hop.\nkexec:\n  kernel: /boot/bzImage\n".to_vec(),
            "steps/greet.yaml:5:11: \"/boot/bzImage\" must be STEP:PATH",
        ),
        (
            "steps/greet.yaml",
            b"name: greet\nversion: \"1\"\ndescription: A hop.\nkexec:\n  kernel: hello:boot/bzImage\n".to_vec(),
            "steps/targets/t.yaml:10:9: greet is a kexec step: it runs in a guest, in a stage with runner: vm",
        ),
        (
            "steps/targets/t.yaml",
            format!("{target}  - name: vm\n    runner: vm\n    steps: [hello2]\n").into(),
            "steps/targets/t.yaml:11:5: stage \"vm\" runs in a VM: give its vm: settings (kernel at least), or end the stage before it with a kexec step",
        ),
        // Lock files.
        (
            "sources.lock",
            lock.replacen(&sha, &sha[..60], 1).into(),
            "sources.lock:4:13: hello-1.0.tar.gz: sha256 must be 64 lowercase hex digits, got",
        ),
        (
            "sources.lock",
            lock.replacen(&sha, &sha.to_uppercase(), 1).into(),
            "sources.lock:4:13: hello-1.0.tar.gz: sha256 must be 64 lowercase hex digits",
        ),
        (
            "sources.lock",
            entry("").replace("size: 10", "size: 0").into(),
            "sources.lock:5:11: a.tar.gz: size must be greater than 0",
        ),
        (
            "sources.lock",
            entry("")
                .replace("    urls: [https://example.org/a.tar.gz]\n", "")
                .into(),
            "sources.lock:3:11: a.tar.gz: give at least one url, an apt source, or a git repository and commit",
        ),
        (
            "sources.lock",
            format!("{lock}{}", &lock[lock.find("  - name").unwrap()..]).into(),
            "sources.lock:7:11: hello-1.0.tar.gz is listed twice",
        ),
        (
            "sources.lock",
            lock.replacen("version: 1", "version: 2", 1).into(),
            "sources.lock:1:10: unsupported lock version 2",
        ),
        (
            "sources.lock",
            entry("")
                .replace("https://example.org/a.tar.gz", "example.org/a.tar.gz")
                .into(),
            "sources.lock:6:12: a.tar.gz: \"example.org/a.tar.gz\" is not a URL",
        ),
        (
            "sources.lock",
            entry("")
                .replace("name: a.tar.gz", "name: dir/a.tar.gz")
                .into(),
            "sources.lock:3:11: source name \"dir/a.tar.gz\" must be a plain file name",
        ),
        (
            "sources.lock",
            entry("    md5: abc\n").into(),
            "sources.lock:7:5: unknown field `md5`",
        ),
        (
            "sources.lock",
            b"\n".to_vec(),
            "sources.lock:1:1: the file is empty",
        ),
        (
            "sources.lock",
            entry("").replace("size: 10", "size: ten").into(),
            "sources.lock:5:11: invalid u64",
        ),
    ];
    assert!(cases.len() >= 40);
    let mirror_before = snapshot(&f.mirror());
    let mut wrong = Vec::new();
    for (path, content, expected) in &cases {
        let original = fs::read(f.project().join(path)).unwrap();
        f.write(path, content);
        for command in [
            &["run", "--target", "t"][..],
            &["plan", "--target", "t"][..],
        ] {
            let assert = f.cmd().args(command).assert();
            let output = assert.get_output();
            let stderr = String::from_utf8_lossy(&output.stderr);
            let shown = stderr.replace(&format!("{}/", f.project().display()), "");
            if output.status.code() != Some(2) || !shown.contains(expected) {
                wrong.push(format!(
                    "{path}: expected exit 2 and {expected:?} in:\n{shown}"
                ));
                continue;
            }
            if let Err(why) = common::shows_the_offending_line(&shown, expected, &f.project()) {
                wrong.push(format!("{path} {expected:?}: {why} in:\n{shown}"));
            }
        }
        assert!(
            !f.state().exists(),
            "{path} {expected:?}: the state directory was created"
        );
        assert_eq!(
            snapshot(&f.mirror()),
            mirror_before,
            "{path} {expected:?}: the mirror changed"
        );
        f.write(path, original);
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn a_patch_that_does_not_apply_points_at_its_hunk_and_keeps_earlier_checkpoints() {
    let f = malformed_base();
    f.write(
        "steps/targets/t.yaml",
        "name: t\nsource_date_epoch: 1\nstages:\n  - name: host\n    runner: host\n    steps: [greet0, hello]\n",
    );
    f.write(
        "steps/greet0.yaml",
        "name: greet0\nversion: \"1\"\ndescription: First.\nbuild: |\n  echo hi > \"$OUT/hi\"\n",
    );
    let step = fs::read_to_string(f.project().join("steps/hello.yaml")).unwrap();
    f.write(
        "steps/hello.yaml",
        step.replace(
            "workdir: hello-1.0",
            "workdir: hello-1.0\npatches: [fix.patch]",
        ),
    );
    f.cmd().args(["run", "--target", "t"]).assert().success();
    // Both steps are committed: the failure below must keep them.
    let committed = common::manifests(&f.state(), "t");
    assert_eq!(
        committed.keys().collect::<Vec<_>>(),
        ["greet0", "hello"],
        "{committed:?}"
    );

    // The same patch, now against a line that is not there.
    f.write(
        "patches/hello/fix.patch",
        "--- a/hello.c\n+++ b/hello.c\n@@ -1,2 +1,2 @@\n #include <stdio.h>\n-int main(void) { puts(\"goodbye\"); return 0; }\n+int main(void) { puts(\"patched\"); return 0; }\n",
    );
    let before = snapshot(&f.state().join("checkpoints"));
    f.cmd()
        .args(["run", "--target", "t", "--resume"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "patches/hello/fix.patch:3: patch does not apply",
        ));
    assert_eq!(snapshot(&f.state().join("checkpoints")), before);
    assert_eq!(
        fs::read_to_string(f.root().join("project/patches/hello/fix.patch"))
            .unwrap()
            .lines()
            .count(),
        6
    );
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn mount_tmpfs(dir: &Path, size: &str, remount: bool) {
    let mut cmd = std::process::Command::new("mount");
    if remount {
        cmd.args(["-o", &format!("remount,size={size}")]);
    } else {
        cmd.args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]);
    }
    let status = cmd.arg(dir).status().unwrap();
    assert!(status.success(), "mount {dir:?}");
}

struct Unmount<'a>(&'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0)
            .status();
    }
}

#[test]
fn a_full_disk_fails_the_commit_cleanly_and_resume_finishes_after_space_is_freed() {
    assert!(
        is_root(),
        "this test mounts a small tmpfs for the state directory: run it as root (CI does)"
    );
    let f = Fixture::tiny();
    // On an 8 MiB state filesystem `fill` leaves a few hundred KiB free, and
    // makes 3000 files whose manifest is larger than that: the step
    // succeeds, its checkpoint commit cannot.
    f.write(
        "steps/fill.yaml",
        "name: fill\nversion: \"1\"\ndescription: Fills the disk.\nbuild: |\n  i=0; while [ $i -lt 3000 ]; do : > \"$OUT/a-file-with-a-longish-name-$i\"; i=$((i+1)); done\n  dd if=/dev/zero of=\"$OUT/fill\" bs=1024 count=7800 2>/dev/null\n",
    );
    f.write(
        "steps/targets/t.yaml",
        "name: t\nsource_date_epoch: 1\nstages:\n  - name: host\n    runner: host\n    steps: [hello, fill]\n",
    );
    f.import_sources();
    fs::create_dir_all(f.state()).unwrap();
    mount_tmpfs(&f.state(), "8m", false);
    let _unmount = Unmount(&f.state());

    f.cmd()
        .args(["run", "--target", "t"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("No space left on device")
                .and(predicate::str::contains("to resume from here:")),
        );
    // The earlier checkpoint still loads; the failed one is not there.
    let record = common::record(&f.state(), "t");
    assert!(record["steps"].get("fill").is_none());
    assert_eq!(
        fs::read_dir(f.state().join("checkpoints")).unwrap().count(),
        1
    );
    f.cmd()
        .args(["plan", "--target", "t"])
        .assert()
        .success()
        .stdout(predicate::str::contains("hello").and(predicate::str::contains("done")));

    mount_tmpfs(&f.state(), "64m", true);
    f.cmd()
        .args(["run", "--target", "t", "--resume"])
        .assert()
        .success()
        .stderr(
            predicate::str::contains("[1/2] hello: restored from checkpoint")
                .and(predicate::str::contains("[2/2] fill: built")),
        );
    assert_eq!(manifests(&f.state(), "t").len(), 2);
}

/// A kill just after a step's checkpoint is renamed into place and before
/// the target's record names it: the record lags, and the resume still
/// restores the step rather than building it again, because a checkpoint
/// is found by its key. `STAGEBUILD_FAULT_PAUSE=committed` (a test hook,
/// src/faultpoint.rs) stops stagebuild at that moment, which a random kill
/// hits only by luck.
#[test]
fn a_kill_between_a_commit_and_the_record_keeps_the_checkpoint() {
    let f = Fixture::tiny();
    f.import_sources();
    let mut run = f
        .std_cmd()
        .args(["run", "--target", "t"])
        .env("STAGEBUILD_FAULT_PAUSE", "committed")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    common::kill_at_fault_point(&mut run);
    let record = fs::read(f.state().join("targets/t.json")).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&record).contains("hello"));
    assert_eq!(
        fs::read_dir(f.state().join("checkpoints")).unwrap().count(),
        1
    );

    f.cmd()
        .args(["run", "--target", "t", "--resume"])
        .assert()
        .success()
        .stderr(
            predicate::str::contains("[1/2] hello: restored from checkpoint")
                .and(predicate::str::contains("[2/2] greet: built"))
                .and(predicate::str::contains("warning").not()),
        );
}

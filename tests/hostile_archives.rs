//! Hostile archives through the real binary, in every format a source can
//! have: symlinks that each stay inside but lead out through one another,
//! aimed at a canary beside the project (through a file, a workdir or a
//! patch), and a source that unpacks to more than its limit. Each must fail
//! with exit 2 naming the source and the member, and leave the canary and
//! everything around the project, state and mirror as it was.

mod common;

use std::fs;
use std::io::Write;

use common::canary::Canary;
use common::{Fixture, RawEntry, raw_tar};
use tar::EntryType;

/// The build directory is `ROOT/state/work/evil/build`: four levels below
/// the fixture's root, where the canary lives.
const DEPTH: usize = 4;

fn entry<'a>(kind: EntryType, name: &'a str, link: Option<&'a str>) -> RawEntry<'a> {
    RawEntry {
        kind,
        name,
        link,
        data: if kind == EntryType::Regular {
            b"pwned\n"
        } else {
            b""
        },
        claimed_size: None,
    }
}

/// `l0 -> .`, then `lN -> l(N-1)/..`: each target stays inside when read
/// alone, yet `l4` is the fixture's root.
fn chain_names() -> Vec<(String, String)> {
    let mut links = vec![("l0".to_string(), ".".to_string())];
    for n in 1..=DEPTH {
        links.push((format!("l{n}"), format!("l{}/..", n - 1)));
    }
    links
}

fn chain(names: &[(String, String)]) -> Vec<RawEntry<'_>> {
    names
        .iter()
        .map(|(name, target)| entry(EntryType::Symlink, name, Some(target)))
        .collect()
}

#[derive(Clone, Copy)]
enum Format {
    Tar,
    Gz,
    Xz,
    Bz2,
}

impl Format {
    const ALL: [Format; 4] = [Format::Tar, Format::Gz, Format::Xz, Format::Bz2];

    fn name(self) -> &'static str {
        match self {
            Format::Tar => "evil.tar",
            Format::Gz => "evil.tar.gz",
            Format::Xz => "evil.tar.xz",
            Format::Bz2 => "evil.tar.bz2",
        }
    }

    fn compress(self, tar: &[u8]) -> Vec<u8> {
        match self {
            Format::Tar => tar.to_vec(),
            Format::Gz => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                e.write_all(tar).unwrap();
                e.finish().unwrap()
            }
            Format::Xz => {
                let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
                e.write_all(tar).unwrap();
                e.finish().unwrap()
            }
            Format::Bz2 => {
                let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
                e.write_all(tar).unwrap();
                e.finish().unwrap()
            }
        }
    }
}

/// One attack: the archive, the step around it, what the error must say.
struct Case<'a> {
    what: &'a str,
    tar: Vec<u8>,
    /// Extra lines of the step file (workdir, patches).
    step: &'a str,
    /// A patch, if the step applies one.
    patch: Option<&'a str>,
    /// Environment for the run.
    env: Vec<(&'a str, &'a str)>,
    /// Text the error must hold besides the source's name.
    expected: Vec<String>,
}

fn run_case(format: Format, case: &Case) {
    let label = format!("{} ({})", case.what, format.name());
    let f = Fixture::tiny();
    let mut canary = Canary::plant(f.root());
    f.add_source(format.name(), &format.compress(&case.tar));
    f.write(
        "steps/evil.yaml",
        format!(
            "name: evil\nversion: \"1\"\ndescription: Unpacks a hostile archive.\nsources: [{}]\n{}build: |\n  echo pwned > {}/passwd || true\n",
            format.name(),
            case.step,
            canary.dir().display()
        ),
    );
    if let Some(patch) = case.patch {
        f.write("patches/evil/evil.patch", patch);
    }
    f.write(
        "steps/targets/t.yaml",
        "name: t\nsource_date_epoch: 1\nstages:\n  - name: host\n    runner: host\n    steps: [evil]\n",
    );
    f.import_sources();
    fs::create_dir_all(f.state()).unwrap();
    canary.watch_root();

    let mut cmd = f.cmd();
    for (k, v) in &case.env {
        cmd.env(k, v);
    }
    let output = cmd.args(["run", "--target", "t"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{label}:\n{stderr}");
    for expected in &case.expected {
        assert!(
            stderr.contains(expected.as_str()),
            "{label}: expected {expected:?} in:\n{stderr}"
        );
    }
    canary.assert_untouched(&label);
    let checkpoints = f.state().join("checkpoints");
    assert!(
        !checkpoints.exists() || fs::read_dir(&checkpoints).unwrap().count() == 0,
        "{label}: nothing is committed"
    );
}

fn source_named(format: Format) -> String {
    format!("source {}: ", format.name())
}

#[test]
fn links_that_lead_out_through_one_another_are_refused_in_every_format() {
    let names = chain_names();
    let through = format!("l{DEPTH}/canary/passwd");
    for format in Format::ALL {
        let refused_at = |member: &str| {
            vec![
                source_named(format),
                format!("entry {member:?}: symlink leads outside the build directory"),
            ]
        };
        let mut with_file = chain(&names);
        with_file.push(entry(EntryType::Regular, &through, None));
        // A link made when the link it goes through pointed elsewhere.
        let replaced = vec![
            entry(EntryType::Directory, "a/b/", None),
            entry(EntryType::Symlink, "d", Some("a/b")),
            entry(EntryType::Symlink, "up", Some("d/..")),
            entry(EntryType::Symlink, "d", Some(".")),
        ];
        let workdir = format!("workdir: l{DEPTH}/canary\n");
        let patch = format!(
            "--- a/l{DEPTH}/canary/passwd\n+++ b/l{DEPTH}/canary/passwd\n@@ -1 +1 @@\n-root:x:0:0:canary\n+pwned\n"
        );
        let cases = [
            Case {
                what: "a file through a chain of links",
                tar: raw_tar(&with_file),
                step: "",
                patch: None,
                env: vec![],
                expected: refused_at("l1"),
            },
            Case {
                what: "a link to a directory that is later replaced",
                tar: raw_tar(&replaced),
                step: "",
                patch: None,
                env: vec![],
                expected: refused_at("up"),
            },
            Case {
                what: "a workdir through a chain of links",
                tar: raw_tar(&chain(&names)),
                step: &workdir,
                patch: None,
                env: vec![],
                expected: refused_at("l1"),
            },
            Case {
                what: "a patch whose target goes through a chain of links",
                tar: raw_tar(&chain(&names)),
                step: "patches: [evil.patch]\n",
                patch: Some(&patch),
                env: vec![],
                expected: refused_at("l1"),
            },
        ];
        for case in &cases {
            run_case(format, case);
        }
    }
}

#[test]
fn a_patch_that_makes_a_link_and_writes_through_it_changes_nothing_outside() {
    // The archive is harmless; the patch makes `x -> ../../../..` (the
    // fixture's root) and then writes to x/canary/passwd.
    let up = [".."; DEPTH].join("/");
    let patch = format!(
        "diff --git a/x b/x\nnew file mode 120000\n--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n+{up}\n\\ No newline at end of file\ndiff --git a/x/canary/passwd b/x/canary/passwd\n--- a/x/canary/passwd\n+++ b/x/canary/passwd\n@@ -1 +1 @@\n-root:x:0:0:canary\n+pwned\n"
    );
    for format in Format::ALL {
        run_case(
            format,
            &Case {
                what: "a patch that makes its own link out",
                tar: raw_tar(&[entry(EntryType::Regular, "README", None)]),
                step: "patches: [evil.patch]\n",
                patch: Some(&patch),
                env: vec![],
                expected: vec![
                    "evil.patch".into(),
                    "patch does not apply".into(),
                    "x/canary/passwd".into(),
                ],
            },
        );
    }
}

#[test]
fn a_source_that_unpacks_past_its_limit_is_refused_in_every_format() {
    // Eight members of 512 KiB: 4 MiB unpacked, a few KiB compressed. The
    // second crosses 1 MiB (its header and the first member's come first).
    let data = vec![0u8; 512 << 10];
    let names: Vec<String> = (0..8).map(|n| format!("bomb/f{n}")).collect();
    let entries: Vec<RawEntry> = names
        .iter()
        .map(|name| RawEntry {
            kind: EntryType::Regular,
            name,
            link: None,
            data: &data,
            claimed_size: None,
        })
        .collect();
    let tar = raw_tar(&entries);
    for format in Format::ALL {
        run_case(
            format,
            &Case {
                what: "a size bomb",
                tar: tar.clone(),
                step: "",
                patch: None,
                env: vec![("STAGEBUILD_MAX_UNPACKED", "1M")],
                expected: vec![
                    source_named(format),
                    "entry \"bomb/f1\": unpacks to more than 1 MiB, the limit for one source; raise it with --max-unpacked SIZE".into(),
                ],
            },
        );
    }
}

#[test]
fn the_limit_is_generous_by_default_and_a_flag_raises_it() {
    let data = vec![0u8; 2 << 20];
    let tar = raw_tar(&[RawEntry {
        kind: EntryType::Regular,
        name: "big",
        link: None,
        data: &data,
        claimed_size: None,
    }]);
    let f = Fixture::tiny();
    f.add_source("big.tar.gz", &Format::Gz.compress(&tar));
    f.write(
        "steps/big.yaml",
        "name: big\nversion: \"1\"\ndescription: Unpacks 2 MiB.\nsources: [big.tar.gz]\nbuild: |\n  test \"$(wc -c < big)\" = 2097152\n",
    );
    f.write(
        "steps/targets/t.yaml",
        "name: t\nsource_date_epoch: 1\nstages:\n  - name: host\n    runner: host\n    steps: [big]\n",
    );
    f.import_sources();
    f.cmd()
        .args(["--max-unpacked", "1M", "run", "--target", "t"])
        .assert()
        .code(2);
    f.cmd()
        .args(["--max-unpacked", "3M", "run", "--target", "t", "--resume"])
        .assert()
        .success();
    f.cmd()
        .args(["run", "--target", "t", "--fresh"])
        .assert()
        .success();
}

#[test]
fn a_patch_applies_in_either_sandbox() {
    for sandbox in ["bwrap", "namespaces"] {
        let f = Fixture::tiny();
        f.write(
            "patches/hello/fix.patch",
            "--- a/hello.c\n+++ b/hello.c\n@@ -1,2 +1,2 @@\n #include <stdio.h>\n-int main(void) { puts(\"hello from a sandbox\"); return 0; }\n+int main(void) { puts(\"patched\"); return 0; }\n",
        );
        let step = fs::read_to_string(f.project().join("steps/hello.yaml")).unwrap();
        f.write(
            "steps/hello.yaml",
            step.replace("workdir:", "patches: [fix.patch]\nworkdir:"),
        );
        f.import_sources();
        f.cmd()
            .args(["run", "--target", "t", "--sandbox", sandbox])
            .assert()
            .success();
        let said = fs::read_dir(f.state().join("checkpoints"))
            .unwrap()
            .map(|e| e.unwrap().path().join("tree/greeting"))
            .find(|p| p.exists())
            .unwrap();
        assert_eq!(fs::read_to_string(said).unwrap(), "patched\n", "{sandbox}");
    }
}

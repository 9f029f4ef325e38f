//! Hostile inputs that aim outside the project, state and mirror: names that
//! would become paths, mirror packs, lock entries that reach a command line,
//! links planted in a state directory, names that would forge the outputs
//! file, and lock edits. Each case asserts the exit code, the message (with
//! `file:line` where the input is a file), and that the canary beside the
//! project is untouched and nothing appeared or vanished beside it.
//! (Archives and unpacked trees are tests/hostile_archives.rs.)

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use common::Fixture;
use common::canary::Canary;
use sha2::{Digest, Sha256};

/// What a case expects of the command it runs.
struct Expect {
    code: i32,
    /// Must appear in stderr, with the project's path taken out.
    message: String,
    /// Must not appear in stderr.
    absent: Option<&'static str>,
}

fn refused(message: impl Into<String>) -> Expect {
    Expect {
        code: 2,
        message: message.into(),
        absent: None,
    }
}

/// A case: sets up its attack in a fresh fixture (given the canary
/// directory) and returns the arguments of the command that meets it.
type Setup = Box<dyn Fn(&Fixture, &Path) -> Vec<String>>;

/// Runs every case, then fails naming each that went wrong.
fn run_cases(cases: Vec<(&str, Setup, Expect)>) {
    let mut failed = Vec::new();
    for (name, setup, expect) in cases {
        let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_case(name, &setup, &expect)
        }));
        if let Err(panic) = checked {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push(format!("{name}: {why}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{} case(s) failed:\n{}",
        failed.len(),
        failed.join("\n\n")
    );
}

fn run_case(name: &str, setup: &Setup, expect: &Expect) {
    {
        let f = Fixture::tiny();
        f.import_sources();
        let mut canary = Canary::plant(f.root());
        let args = setup(&f, canary.dir());
        canary.watch_root();
        let output = f.std_cmd().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr)
            .replace(&format!("{}/", f.project().display()), "");
        assert_eq!(output.status.code(), Some(expect.code), "{name}: {stderr}");
        assert!(
            stderr.contains(&expect.message),
            "{name}: expected {:?} in:\n{stderr}",
            expect.message
        );
        if let Some(absent) = expect.absent {
            assert!(!stderr.contains(absent), "{name}: {absent:?} in:\n{stderr}");
        }
        canary.assert_untouched(name);
    }
}

fn args(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Replaces the fixture's target file with `steps` as its one stage's list.
fn target_with_steps(f: &Fixture, steps: &str) {
    f.write(
        "steps/targets/t.yaml",
        format!(
            "name: t\nsource_date_epoch: 1672531200\nstages:\n  - name: host\n    runner: host\n    steps:\n{steps}"
        ),
    );
}

#[test]
fn names_that_would_become_paths_are_refused_where_they_are_parsed() {
    let cases: Vec<(&str, Setup, Expect)> = vec![
        (
            "a step reference with ..",
            Box::new(|f, _| {
                target_with_steps(f, "      - hello\n      - ../../canary/sub\n");
                args(&["run", "--target", "t"])
            }),
            refused("steps/targets/t.yaml:8:9: step \"../../canary/sub\" is not a name"),
        ),
        (
            "an absolute step reference",
            Box::new(|f, canary| {
                let step = canary.join("sub").display().to_string();
                target_with_steps(f, &format!("      - {{ step: {step:?} }}\n"));
                args(&["run", "--target", "t"])
            }),
            refused(
                "steps/targets/t.yaml:7:9: step \"/", // the canary's absolute path follows
            ),
        ),
        (
            "an absolute step reference to the project's own step file",
            Box::new(|f, _| {
                let step = f.project().join("steps/hello").display().to_string();
                target_with_steps(f, &format!("      - {step}\n"));
                args(&["plan", "--target", "t"])
            }),
            // The project's path is taken out of the message.
            refused("steps/targets/t.yaml:7:9: step \"steps/hello\" is not a name"),
        ),
        (
            "--target with ..",
            Box::new(|_, _| args(&["run", "--target", "../../canary/x"])),
            refused("invalid value '../../canary/x' for '--target <TARGET>'"),
        ),
        (
            "--target as an absolute path, for lock outputs",
            Box::new(|_, canary| {
                let target = canary.join("x").display().to_string();
                vec!["lock".into(), "outputs".into(), "--target".into(), target]
            }),
            refused("is not a name"),
        ),
        (
            "--target with .. for mirror pack",
            Box::new(|f, _| {
                let out = f.root().join("incoming/p.tar").display().to_string();
                vec![
                    "mirror".into(),
                    "pack".into(),
                    out,
                    "--target".into(),
                    "../canary".into(),
                ]
            }),
            refused("invalid value '../canary' for '--target <TARGET>'"),
        ),
        (
            "a step's extra file named by an absolute path",
            Box::new(|f, canary| {
                let step = fs::read_to_string(f.project().join("steps/greet.yaml")).unwrap();
                let file = canary.join("passwd").display().to_string();
                f.write("steps/greet.yaml", format!("{step}files: [{file:?}]\n"));
                args(&["run", "--target", "t"])
            }),
            refused("steps/greet.yaml:7:9: file \"/"),
        ),
        (
            // Found by the step_parser property: it passed, and joined to
            // the build directory as the directory itself.
            "an empty workdir",
            Box::new(|f, _| {
                let step = fs::read_to_string(f.project().join("steps/hello.yaml")).unwrap();
                f.write(
                    "steps/hello.yaml",
                    step.replace("workdir: hello-1.0", "workdir: \"\""),
                );
                args(&["run", "--target", "t"])
            }),
            refused("steps/hello.yaml:5:10: workdir \"\" must be a relative path"),
        ),
        (
            // Found by the step_parser property, as the empty one was.
            "a workdir with a NUL",
            Box::new(|f, _| {
                let step = fs::read_to_string(f.project().join("steps/hello.yaml")).unwrap();
                f.write(
                    "steps/hello.yaml",
                    step.replace("workdir: hello-1.0", "workdir: \"hello\\0\""),
                );
                args(&["run", "--target", "t"])
            }),
            refused("steps/hello.yaml:5:10: workdir \"hello\\0\" must be a relative path"),
        ),
        (
            "a patch named -p0",
            Box::new(|f, _| {
                let step = fs::read_to_string(f.project().join("steps/greet.yaml")).unwrap();
                f.write("steps/greet.yaml", format!("{step}patches: [\"-p0\"]\n"));
                args(&["run", "--target", "t"])
            }),
            refused(
                "steps/greet.yaml:7:11: patch \"-p0\" must be a plain file name: it starts with '-'",
            ),
        ),
    ];
    run_cases(cases);
}

/// A mirror pack as `mirror pack` writes it, but with the given manifest.
fn pack_with(f: &Fixture, manifest: &serde_json::Value, content: &[u8]) -> String {
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o444);
        builder.append_data(&mut h, name, data).unwrap();
    };
    add("stagebuild-mirror.json", manifest.to_string().as_bytes());
    add(&format!("sha256/{}", sha(content)), content);
    let path = f.root().join("incoming/hostile.pack.tar");
    fs::write(&path, builder.into_inner().unwrap()).unwrap();
    path.display().to_string()
}

fn unpack_with_names(names: Vec<String>, file_sha: Option<&str>) -> Setup {
    let file_sha = file_sha.map(str::to_string);
    Box::new(move |f, _| {
        let content = b"payload\n";
        let manifest = serde_json::json!({
            "version": 1,
            "files": [{
                "sha256": file_sha.clone().unwrap_or_else(|| sha(content)),
                "size": content.len(),
                "names": names,
            }],
        });
        let pack = pack_with(f, &manifest, content);
        vec!["mirror".into(), "unpack".into(), pack]
    })
}

#[test]
fn a_mirror_pack_cannot_name_a_file_outside_the_mirror() {
    let cases: Vec<(&str, Setup, Expect)> = vec![
        (
            "a manifest name with ..",
            unpack_with_names(vec!["../../canary/passwd".into()], None),
            refused(
                "hostile.pack.tar: stagebuild-mirror.json: source name \"../../canary/passwd\" must be a plain file name",
            ),
        ),
        (
            "an absolute manifest name",
            Box::new(|f, dir| {
                let name = dir.join("passwd").display().to_string();
                unpack_with_names(vec!["ok.tar".into(), name], None)(f, dir)
            }),
            refused("must be a plain file name: it holds a '/'"),
        ),
        (
            "a manifest name that is ..",
            unpack_with_names(vec!["..".into()], None),
            refused("source name \"..\" must be a plain file name"),
        ),
        (
            "a manifest name with a newline",
            unpack_with_names(vec!["a\nb".into()], None),
            refused("it holds a control character"),
        ),
        (
            "a manifest checksum that is a path",
            unpack_with_names(vec!["a.tar".into()], Some("../../canary/sub")),
            refused("\"../../canary/sub\" is not a sha256"),
        ),
    ];
    run_cases(cases);
}

/// Appends an entry to the fixture's lock, whose six lines it follows.
fn lock_entry(f: &Fixture, body: &str) {
    let path = f.project().join("sources.lock");
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 6);
    fs::write(&path, format!("{text}{body}")).unwrap();
}

/// `at` is the `line:column` of the value the lock refuses.
fn hostile_lock_entry(body: String, at: &str, message: String) -> (Setup, Expect) {
    (
        Box::new(move |f, canary| {
            let body = body.replace("CANARY", &canary.display().to_string());
            lock_entry(f, &body);
            args(&["mirror", "fetch"])
        }),
        refused(format!("sources.lock:{at}: {message}")),
    )
}

#[test]
fn lock_entries_never_reach_a_command_line_or_a_path_outside_the_mirror() {
    let sha = "7d5b0b6062521e4627e099e4c9dc8248d32a30285e959b7eecaa780cf8cfd4a4";
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let git = |url: &str| {
        format!(
            "  - name: x.tar\n    sha256: {sha}\n    size: 10\n    git: {url:?}\n    commit: {commit}\n"
        )
    };
    let apt = |package: &str, file: &str| {
        format!(
            "  - name: x.tar\n    sha256: {sha}\n    size: 10\n    apt: {{ package: {package:?}, version: \"1.0-1\", file: {file:?} }}\n"
        )
    };
    let url = |url: &str| {
        format!("  - name: x.tar\n    sha256: {sha}\n    size: 10\n    urls: [{url:?}]\n")
    };
    let table = vec![
        (
            "a git URL that is an option",
            git("--upload-pack=touch CANARY/pwned"),
            "10:10",
            "x.tar: git \"--upload-pack=touch ",
        ),
        (
            "a git URL for the ext:: helper",
            git("ext::sh -c touch% CANARY/pwned"),
            "10:10",
            "x.tar: git \"ext::sh -c touch% ",
        ),
        (
            "an ssh git URL whose host is an option",
            git("ssh://-oProxyCommand=touch CANARY/pwned/r.git"),
            "10:10",
            "x.tar: git \"ssh://-oProxyCommand",
        ),
        (
            "an apt file given as an absolute path",
            apt("hello", "CANARY/passwd"),
            "10:54",
            "x.tar: \"/",
        ),
        (
            "an apt file with ..",
            apt("hello", "../../canary/passwd"),
            "10:54",
            "x.tar: \"../../canary/passwd\" must be a plain file name",
        ),
        (
            "an apt package that is an option",
            apt("-oAPT::Update::Pre-Invoke::=touch CANARY/pwned", "x.tar"),
            "10:21",
            "x.tar: apt package \"-oAPT::Update::Pre-Invoke::=touch ",
        ),
        (
            "a file:// download URL",
            url("file://CANARY/passwd"),
            "10:12",
            "x.tar: \"file://",
        ),
    ];
    let cases = table
        .into_iter()
        .map(|(name, body, at, message)| {
            let (setup, expect) = hostile_lock_entry(body, at, message.to_string());
            (name, setup, expect)
        })
        .collect();
    run_cases(cases);
}

#[test]
fn links_and_files_in_a_state_directory_are_refused_before_anything_is_written() {
    let state_with = |plant: fn(&Path, &Path)| -> Setup {
        Box::new(move |f, canary| {
            fs::create_dir_all(f.state()).unwrap();
            plant(&f.state(), canary);
            args(&["run", "--target", "t"])
        })
    };
    let cases: Vec<(&str, Setup, Expect)> = vec![
        (
            "the run lock is a link to a host file",
            state_with(|state, canary| symlink(canary.join("passwd"), state.join("lock")).unwrap()),
            refused("lock is a symbolic link"),
        ),
        (
            "the target's log directory is a link",
            state_with(|state, canary| {
                fs::create_dir(state.join("logs")).unwrap();
                symlink(canary, state.join("logs/t")).unwrap();
            }),
            refused("logs/t is a symbolic link"),
        ),
        (
            "a step log is a dangling link",
            state_with(|state, canary| {
                fs::create_dir_all(state.join("logs/t")).unwrap();
                symlink(canary.join("new.log"), state.join("logs/t/01-hello.log")).unwrap();
            }),
            refused("logs/t/01-hello.log is a symbolic link"),
        ),
        (
            "the work directory is a link",
            state_with(|state, canary| symlink(canary, state.join("work")).unwrap()),
            refused("work is a symbolic link"),
        ),
        (
            "the records directory is a link, for status",
            Box::new(|f, canary| {
                fs::create_dir_all(f.state()).unwrap();
                symlink(canary, f.state().join("targets")).unwrap();
                args(&["status"])
            }),
            refused("targets is a symbolic link"),
        ),
        (
            "--state names a regular file",
            Box::new(|f, _| {
                fs::write(f.state(), "not a directory\n").unwrap();
                args(&["run", "--target", "t"])
            }),
            Expect {
                code: 2,
                message: "is not a directory; give --state a directory".into(),
                absent: Some("to resume"),
            },
        ),
    ];
    run_cases(cases);
}

#[test]
fn small_input_faults_exit_2_with_their_file_and_line() {
    let cases: Vec<(&str, Setup, Expect)> = vec![
        (
            "a NUL byte in an env value",
            Box::new(|f, _| {
                let step = fs::read_to_string(f.project().join("steps/greet.yaml")).unwrap();
                f.write(
                    "steps/greet.yaml",
                    format!("{step}env:\n  GREETING: \"a\\0b\"\n"),
                );
                args(&["run", "--target", "t"])
            }),
            refused("steps/greet.yaml:8:13: env GREETING: a value may not hold a NUL byte"),
        ),
        (
            "lock add with a name that is a path",
            Box::new(|f, _| {
                let file = f.root().join("incoming/hello-1.0.tar.gz");
                vec![
                    "lock".into(),
                    "add".into(),
                    file.display().to_string(),
                    "--url".into(),
                    "https://example.org/x".into(),
                    "--name".into(),
                    "../../canary/passwd".into(),
                ]
            }),
            refused("--name \"../../canary/passwd\" must be a plain file name"),
        ),
        (
            "lock add with a URL that is not fetched",
            Box::new(|f, canary| {
                let file = f.root().join("incoming/hello-1.0.tar.gz");
                vec![
                    "lock".into(),
                    "add".into(),
                    file.display().to_string(),
                    "--url".into(),
                    format!("file://{}", canary.join("passwd").display()),
                    "--name".into(),
                    "n.tar.gz".into(),
                ]
            }),
            refused("is not a URL that is fetched"),
        ),
        (
            "lock add on a lock that does not parse names sources.lock",
            Box::new(|f, _| {
                lock_entry(f, "  - name: broken\n");
                let file = f.root().join("incoming/hello-1.0.tar.gz");
                vec![
                    "lock".into(),
                    "add".into(),
                    file.display().to_string(),
                    "--url".into(),
                    "https://example.org/y.tar.gz".into(),
                ]
            }),
            refused("sources.lock:7:5: missing field"),
        ),
    ];
    run_cases(cases);
}

#[test]
fn lock_add_writes_names_that_read_back_and_takes_every_lock_shape() {
    for (lock, name) in [
        ("version: 1\nsources: []\n", "plain.tar.gz"),
        ("version: 1\nsources:\n", "with #hash.tar.gz"),
        (
            "sources: [] # none yet\nversion: 1\n",
            "colon: space.tar.gz",
        ),
        ("version: 1\n", "\"quoted\" 'too'.tar.gz"),
    ] {
        let f = Fixture::tiny();
        let mut canary = Canary::plant(f.root());
        f.write("sources.lock", lock);
        fs::create_dir_all(f.mirror()).unwrap();
        let file = f.root().join("incoming/hello-1.0.tar.gz");
        canary.watch_root();
        let output = f
            .std_cmd()
            .args(["lock", "add"])
            .arg(&file)
            .args(["--url", "https://example.org/x.tar.gz", "--name", name])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{lock:?} {name:?}: {stderr}");
        let written = fs::read_to_string(f.project().join("sources.lock")).unwrap();
        let parsed = stagebuild::lock::Lock::load(&f.project().join("sources.lock")).unwrap();
        let names: Vec<&String> = parsed.entries.keys().collect();
        assert_eq!(names, [name], "{written}");
        f.cmd().args(["mirror", "verify"]).assert().success();
        canary.assert_untouched(name);
    }
}

/// Three steps whose outputs are named to forge the outputs file: a newline
/// with a section line after it, ` -> ` in a link's name, a trailing CR.
#[test]
fn hostile_output_names_are_recorded_and_read_back_so_an_honest_rebuild_passes() {
    let f = Fixture::tiny();
    let mut canary = Canary::plant(f.root());
    let steps = [
        (
            "newline",
            "touch \"$OUT/$(printf 'a\\n== step forged\\nf 0644 x')\"",
        ),
        ("arrow", "ln -s target \"$OUT/a -> b\""),
        (
            "cr",
            "touch \"$OUT/$(printf 'trailing\\r')\" \"$OUT/ back\\\\slash \"",
        ),
    ];
    let mut list = String::new();
    for (name, script) in steps {
        f.write(
            &format!("steps/{name}.yaml"),
            format!(
                "name: {name}\nversion: \"1\"\ndescription: Hostile names.\nbuild: |\n  {script}\n"
            ),
        );
        list.push_str(&format!("      - {name}\n"));
    }
    target_with_steps(&f, &list);
    f.cmd().args(["run", "--target", "t"]).assert().success();
    canary.watch_root();
    f.cmd()
        .args(["lock", "outputs", "--target", "t"])
        .assert()
        .success();
    let outputs = f.project().join("steps/targets/t.outputs");
    let text = fs::read_to_string(&outputs).unwrap();
    let sections: Vec<&str> = text.lines().filter(|l| l.starts_with("== step")).collect();
    assert_eq!(
        sections,
        ["== step newline", "== step arrow", "== step cr"],
        "{text}"
    );
    for (case, expected) in [
        (
            "newline",
            "a\\x0a==\\x20step\\x20forged\\x0af\\x200644\\x20x",
        ),
        ("arrow", "a\\x20->\\x20b -> target"),
        ("cr", "trailing\\x0d"),
        ("cr", "\\x20back\\\\slash\\x20"),
    ] {
        assert!(
            text.contains(expected),
            "{case}: {expected:?} not in\n{text}"
        );
    }
    let records = stagebuild::outputs::load(&outputs).unwrap().unwrap();
    assert!(records["newline"].contains_key("a\n== step forged\nf 0644 x"));
    assert_eq!(records["arrow"]["a -> b"].link.as_deref(), Some("target"));
    assert!(records["cr"].contains_key("trailing\r"));
    // An honest rebuild checks every step against the record and passes.
    f.cmd()
        .args(["run", "--target", "t", "--fresh"])
        .assert()
        .success();
    canary.assert_untouched("hostile output names");
}

//! The command line as a new user meets it: completions, the man page,
//! `init`, the schema, colour, the plan table and messages for new projects,
//! through the real binary and the real shells, man and validator.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::Fixture;
use predicates::prelude::*;

fn stagebuild() -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin("stagebuild").unwrap()
}

fn stdout_of(cmd: &mut assert_cmd::Command) -> String {
    String::from_utf8(cmd.assert().success().get_output().stdout.clone()).unwrap()
}

#[test]
fn completions_for_bash_zsh_and_fish_parse_in_their_shells() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, check) in [
        ("bash", ["bash", "-n"]),
        ("zsh", ["zsh", "-n"]),
        ("fish", ["fish", "--no-execute"]),
    ] {
        let script = stdout_of(stagebuild().args(["completions", shell]));
        assert!(script.contains("mirror"), "{shell}: {script}");
        let path = dir.path().join(format!("stagebuild.{shell}"));
        fs::write(&path, &script).unwrap();
        let out = Command::new(check[0])
            .arg(check[1])
            .arg(&path)
            .output()
            .unwrap_or_else(|e| panic!("{shell} (scripts/setup-debian.sh installs it): {e}"));
        assert!(
            out.status.success(),
            "{shell} refuses the script: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The check itself can fail: a broken script is refused.
        fs::write(&path, format!("{script}\nif then fi (\n")).unwrap();
        let broken = Command::new(check[0])
            .arg(check[1])
            .arg(&path)
            .output()
            .unwrap();
        assert!(!broken.status.success(), "{shell} accepted a broken script");
    }
}

fn render_man(page: &Path) -> (String, String) {
    let out = Command::new("man")
        .arg("-l")
        .arg(page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .env("MAN_KEEP_FORMATTING", "0")
        .output()
        .expect("man (man-db; scripts/setup-debian.sh installs it)");
    assert!(out.status.success(), "{out:?}");
    // man emboldens by overstriking (X, backspace, X): keep the last of each.
    let mut text = String::new();
    for c in String::from_utf8_lossy(&out.stdout).chars() {
        match c {
            '\x08' => {
                text.pop();
            }
            c => text.push(c),
        }
    }
    (text, String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn the_man_pages_render_with_man() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("stagebuild.1");
    fs::write(&page, stdout_of(stagebuild().arg("man"))).unwrap();
    let (text, warnings) = render_man(&page);
    for expected in ["NAME", "SYNOPSIS", "--color", "completions", "init"] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }
    assert!(warnings.trim().is_empty(), "{warnings}");

    let pages = dir.path().join("pages");
    stagebuild()
        .args(["man", "--dir"])
        .arg(&pages)
        .assert()
        .success();
    let (run, _) = render_man(&pages.join("stagebuild-run.1"));
    assert!(
        run.contains("--resume") && run.contains("--offline"),
        "{run}"
    );
}

/// The system's Python, where Debian's python3-jsonschema and python3-yaml live.
const VALIDATE: &str = r#"
import json, sys, yaml, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
failed = False
for path in sys.argv[2:]:
    for error in jsonschema.Draft202012Validator(schema).iter_errors(yaml.safe_load(open(path))):
        print(f"{path}: {error.message}")
        failed = True
sys.exit(1 if failed else 0)
"#;

fn validate(schema: &Path, files: &[std::path::PathBuf]) -> std::process::Output {
    Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(VALIDATE)
        .arg(schema)
        .args(files)
        .output()
        .expect("/usr/bin/python3 with python3-jsonschema and python3-yaml")
}

#[test]
fn the_demo_validates_against_the_emitted_schema_and_an_unknown_key_does_not() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    for (kind, files) in [
        (
            "step",
            fs::read_dir(repo.join("steps"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
                .collect::<Vec<_>>(),
        ),
        ("target", vec![repo.join("steps/targets/demo.yaml")]),
    ] {
        let schema = dir.path().join(format!("{kind}.json"));
        fs::write(&schema, stdout_of(stagebuild().args(["schema", kind]))).unwrap();
        assert!(files.len() > 1 || kind == "target");
        let out = validate(&schema, &files);
        assert!(
            out.status.success(),
            "{kind}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let bad = dir.path().join(format!("bad-{kind}.yaml"));
        let text = fs::read_to_string(&files[0]).unwrap();
        fs::write(&bad, format!("{text}colour: red\n")).unwrap();
        let out = validate(&schema, &[bad]);
        assert!(!out.status.success(), "{kind}: an unknown key passed");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("'colour'"),
            "{out:?}"
        );
    }
}

#[test]
fn init_then_plan_then_run_builds_the_example_in_an_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("new");
    fs::create_dir(&project).unwrap();
    let in_project = || {
        let mut cmd = stagebuild();
        cmd.current_dir(&project);
        cmd
    };
    in_project().arg("init").assert().success();
    for file in [
        "steps/hello.yaml",
        "steps/targets/main.yaml",
        "sources.lock",
        "patches/README",
    ] {
        assert!(project.join(file).is_file(), "{file}");
    }
    assert_eq!(
        fs::read_to_string(project.join(".gitignore")).unwrap(),
        "/state/\n/mirror/\n"
    );
    in_project()
        .args(["plan", "--target", "main"])
        .assert()
        .success()
        .stdout(predicate::str::contains("hello").and(predicate::str::contains("to build")));
    in_project()
        .args(["run", "--target", "main"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "[1/1] hello: built and checkpointed",
        ));
    let record = common::record(&project.join("state"), "main");
    let key = record["steps"]["hello"]["key"].as_str().unwrap();
    let hello = project
        .join("state/checkpoints")
        .join(key)
        .join("tree/usr/bin/hello");
    let out = Command::new(&hello).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello, world\n");

    // The lock is one `lock add` extends, and init never overwrites a project.
    let file = dir.path().join("extra-1.0.tar.gz");
    fs::write(&file, common::make_tarball(&[("extra/a", b"a")])).unwrap();
    in_project()
        .args(["lock", "add"])
        .arg(&file)
        .args(["--url", "https://example.org/extra-1.0.tar.gz"])
        .assert()
        .success();
    let lock = fs::read_to_string(project.join("sources.lock")).unwrap();
    assert!(lock.contains("hello-1.0.tar.gz") && lock.contains("extra-1.0.tar.gz"));
    in_project()
        .arg("init")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already holds a project"));
    assert_eq!(
        fs::read_to_string(project.join("sources.lock")).unwrap(),
        lock
    );
}

#[test]
fn init_writes_the_same_example_tarball_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut locks = Vec::new();
    // `init DIR`, or `--project DIR init`.
    stagebuild()
        .arg("init")
        .arg(dir.path().join("a"))
        .assert()
        .success();
    stagebuild()
        .arg("--project")
        .arg(dir.path().join("b"))
        .arg("init")
        .assert()
        .success();
    for name in ["a", "b"] {
        locks.push(fs::read_to_string(dir.path().join(name).join("sources.lock")).unwrap());
    }
    assert_eq!(locks[0], locks[1]);

    // A directory with files of its own keeps them: init refuses.
    let own = dir.path().join("own");
    fs::create_dir(&own).unwrap();
    fs::write(own.join(".gitignore"), "target/\n").unwrap();
    stagebuild()
        .arg("init")
        .arg(&own)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(".gitignore exists"));
    assert_eq!(
        fs::read_to_string(own.join(".gitignore")).unwrap(),
        "target/\n"
    );
    assert!(!own.join("sources.lock").exists());
}

fn plan_lines(f: &Fixture) -> Vec<String> {
    let out = stdout_of(f.cmd().args(["plan", "--target", "t"]));
    out.lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_plan_table_stays_aligned_with_long_versions() {
    let f = Fixture::tiny();
    let tcc = "0.9.27+git20200814.62c30a4a";
    let longer = "2.0.0+git20240101.0123456789abcdef0123456789abcdef";
    let hello = fs::read_to_string(f.project().join("steps/hello.yaml")).unwrap();
    f.write(
        "steps/hello.yaml",
        hello.replace("version: \"1.0\"", &format!("version: \"{tcc}\"")),
    );
    let greet = fs::read_to_string(f.project().join("steps/greet.yaml")).unwrap();
    f.write(
        "steps/greet.yaml",
        greet.replace("version: \"1\"", &format!("version: \"{longer}\"")),
    );
    f.write(
        "steps/targets/t.yaml",
        "name: t\nsource_date_epoch: 1672531200\nstages:\n  - name: host\n    runner: host\n    steps: [hello, greet, slow]\n",
    );
    let lines = plan_lines(&f);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].contains(tcc),
        "the whole of tcc's version: {lines:?}"
    );
    assert!(
        lines[1].contains("2.0.0+git20240101.")
            && lines[1].contains('…')
            && !lines[1].contains(longer),
        "a longer version is cut with an ellipsis: {lines:?}"
    );
    // Each row's key and state start in the same column.
    let key_column = |line: &str| {
        let words: Vec<&str> = line.split_whitespace().collect();
        let key = words[3];
        assert_eq!(key.len(), 12, "{line}");
        line.chars().count() - line[line.find(key).unwrap()..].chars().count()
    };
    let columns: Vec<usize> = lines.iter().map(|l| key_column(l)).collect();
    assert!(columns.iter().all(|c| *c == columns[0]), "{lines:#?}");
}

#[test]
fn colour_follows_the_flag_then_no_color_then_clicolor_force() {
    let f = Fixture::tiny();
    let plan = |flag: &str, env: &[(&str, &str)]| {
        let mut cmd = f.cmd();
        cmd.env_remove("NO_COLOR").env_remove("CLICOLOR_FORCE");
        for (k, v) in env {
            cmd.env(k, v);
        }
        stdout_of(cmd.args(["--color", flag, "plan", "--target", "t"]))
    };
    let coloured = |s: &str| s.contains("\x1b[");
    assert!(coloured(&plan("always", &[("NO_COLOR", "1")])));
    assert!(!coloured(&plan("never", &[("CLICOLOR_FORCE", "1")])));
    assert!(!coloured(&plan("auto", &[])), "a pipe is not a terminal");
    assert!(coloured(&plan("auto", &[("CLICOLOR_FORCE", "1")])));
    assert!(!coloured(&plan(
        "auto",
        &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]
    )));
    assert!(plan("always", &[]).contains("\x1b[36mto build\x1b[0m"));
    // clap's own help and usage errors too.
    let help = |flag: &str| {
        stdout_of(
            stagebuild()
                .env("CLICOLOR_FORCE", "1")
                .env_remove("NO_COLOR")
                .args(["--color", flag, "--help"]),
        )
    };
    assert!(coloured(&help("always")) && !coloured(&help("never")));
    // Errors and progress use the same choice.
    f.cmd()
        .args(["--color", "always", "plan", "--target", "nope"])
        .assert()
        .code(2)
        .stderr(predicate::str::starts_with("\x1b[1;31merror:\x1b[0m "));
    f.cmd()
        .args(["--color", "never", "plan", "--target", "nope"])
        .assert()
        .code(2)
        .stderr(predicate::str::starts_with("error: "));
}

#[test]
fn a_missing_field_is_named_with_an_example_and_workdir_dot_is_the_build_directory() {
    let f = Fixture::tiny();
    f.import_sources();
    f.write(
        "steps/targets/t.yaml",
        "name: t\nstages:\n  - name: host\n    runner: host\n    steps: [hello]\n",
    );
    f.cmd()
        .args(["plan", "--target", "t"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("steps/targets/t.yaml:")
                .and(predicate::str::contains(
                    "missing field `source_date_epoch`",
                ))
                .and(predicate::str::contains("SOURCE_DATE_EPOCH"))
                .and(predicate::str::contains(
                    "\n  source_date_epoch: 1672531200",
                )),
        );
    f.write(
        "steps/targets/t.yaml",
        "name: t\nsource_date_epoch: 1672531200\nstages:\n  - name: host\n    runner: host\n    steps: [hello]\n",
    );
    f.write(
        "steps/hello.yaml",
        "name: hello\nversion: \"1.0\"\ndescription: Builds from the top of the build directory.\nsources: [hello-1.0.tar.gz]\nworkdir: .\nbuild: |\n  test -d hello-1.0\n  gcc -O2 -o hello hello-1.0/hello.c\ninstall: |\n  install -D -m 755 hello \"$OUT/usr/bin/hello\"\n",
    );
    f.cmd().args(["run", "--target", "t"]).assert().success();
    for bad in ["..", "./..", "/build"] {
        let text = fs::read_to_string(f.project().join("steps/hello.yaml")).unwrap();
        f.write(
            "steps/hello.yaml",
            text.replace("workdir: .\n", &format!("workdir: {bad}\n")),
        );
        f.cmd()
            .args(["plan", "--target", "t"])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("steps/hello.yaml:5:10: workdir"));
        f.write("steps/hello.yaml", text);
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn no_stale_log_remains_after_a_step_is_inserted_or_removed() {
    let f = Fixture::tiny();
    f.import_sources();
    f.cmd().args(["run", "--target", "t"]).assert().success();
    let logs = f.state().join("logs/t");
    assert_eq!(names_in(&logs), ["greet.log", "hello.log"]);

    // A step inserted first: every later step is rebuilt (its key covers
    // the steps before it), and no log keeps an old position's name.
    f.write(
        "steps/intro.yaml",
        "name: intro\nversion: \"1\"\ndescription: Comes first.\nbuild: |\n  echo intro > \"$OUT/intro\"\n",
    );
    f.write(
        "steps/targets/t.yaml",
        "name: t\nsource_date_epoch: 1672531200\nstages:\n  - name: host\n    runner: host\n    steps: [intro, hello, greet]\n",
    );
    f.cmd()
        .args(["run", "--target", "t", "--resume"])
        .assert()
        .success();
    assert_eq!(
        names_in(&logs),
        ["greet.log", "hello.log", "history", "intro.log"]
    );
    assert_eq!(
        names_in(&logs.join("history")),
        ["greet.1.log", "hello.1.log"]
    );
    assert!(
        fs::read_to_string(logs.join("greet.log"))
            .unwrap()
            .contains("=== stagebuild: build ==="),
        "greet.log is the latest build's"
    );
    f.cmd()
        .arg("status")
        .assert()
        .success()
        .stdout(predicate::str::contains("log hello.log, 1 earlier"));

    // A step removed: its log leaves the current ones.
    f.write(
        "steps/targets/t.yaml",
        "name: t\nsource_date_epoch: 1672531200\nstages:\n  - name: host\n    runner: host\n    steps: [intro, hello]\n",
    );
    f.cmd()
        .args(["run", "--target", "t", "--resume"])
        .assert()
        .success();
    assert_eq!(names_in(&logs), ["hello.log", "history", "intro.log"]);
    assert!(logs.join("history/greet.2.log").is_file());
}

//! The book and `explain` on a small real project built by the real binary:
//! what the pages say before and after a step is built, in a terminal and
//! not; and `book --check` on the project's own steps and on bad ones.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Fixture, snapshot};
use predicates::prelude::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn page(book: &Path, rel: &str) -> String {
    fs::read_to_string(book.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The text of a page's section, from its heading to the next one.
fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<h2 id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no section {id} in {html}"));
    let rest = &html[start..];
    &rest[..rest[5..].find("<h2").map_or(rest.len(), |end| end + 5)]
}

#[test]
fn book_check_passes_on_the_projects_own_steps() {
    common::stagebuild(&repo(), None, None)
        .args(["book", "--check"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "every step has a description and every patch a reason",
        ));
}

#[test]
fn book_check_names_the_file_and_line_of_a_missing_description_and_patch_reason() {
    let f = Fixture::tiny();
    f.write(
        "steps/hello.yaml",
        "name: hello\nversion: \"1.0\"\ndescription: \"\"\nsources: [hello-1.0.tar.gz]\npatches: [fix.patch]\nworkdir: hello-1.0\nbuild: |\n  gcc -o hello hello.c\n",
    );
    f.write("patches/hello/fix.patch", "--- a/x\n+++ b/x\n");
    let before = snapshot(f.root());
    f.cmd()
        .args(["book", "--check"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "steps/hello.yaml:3: step hello has no description",
        ))
        .stderr(predicate::str::contains(
            "steps/hello.yaml:5: patch fix.patch has no reason",
        ));
    assert_eq!(snapshot(f.root()), before, "--check writes nothing");

    f.write(
        "steps/hello.yaml",
        "name: hello\nversion: \"1.0\"\ndescription: Compiles hello.\nsources: [hello-1.0.tar.gz]\npatches:\n  - file: fix.patch\n    reason: It needs fixing.\nworkdir: hello-1.0\nbuild: |\n  gcc -o hello hello.c\n",
    );
    f.cmd().args(["book", "--check"]).assert().success();

    // A misspelt key in a patch entry is bad input, pointed at like any other.
    f.write(
        "steps/hello.yaml",
        "name: hello\nversion: \"1.0\"\ndescription: Compiles hello.\nsources: [hello-1.0.tar.gz]\npatches:\n  - file: fix.patch\n    reson: It needs fixing.\nbuild: |\n  gcc -o hello hello.c\n",
    );
    f.cmd()
        .args(["book", "--check"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "steps/hello.yaml:6:5: each patch must be a file name, or { file: NAME, reason: WHY IT IS APPLIED }",
        ));
}

#[test]
fn a_step_gets_its_outputs_once_built_and_says_so_before() {
    let f = Fixture::tiny();
    f.import_sources();
    let book = f.root().join("book");
    let write_book = || {
        f.cmd()
            .args(["book", "--target", "t", "--out"])
            .arg(&book)
            .assert()
            .success()
    };

    // Nothing built yet: every page is there, none lists outputs.
    write_book().stdout(predicate::str::contains("0 of 2 steps built"));
    let hello = page(&book, "steps/hello.html");
    assert!(
        section(&hello, "what-it-produced").contains("Not built yet"),
        "{hello}"
    );
    assert!(section(&hello, "sources").contains("hello-1.0.tar.gz"));
    assert!(section(&hello, "commands").contains("gcc -O2 -o hello hello.c"));
    assert!(book.join("book.toml").is_file());
    // mdBook's layout: SUMMARY.md lists every page under src/, and each has its HTML.
    let summary = page(&book, "src/SUMMARY.md");
    let mut listed: Vec<String> = summary
        .split("](")
        .skip(1)
        .map(|s| s[..s.find(')').unwrap()].to_string())
        .collect();
    listed.sort();
    let mut pages: Vec<String> = ["", "stages/", "steps/"]
        .iter()
        .flat_map(|dir| {
            fs::read_dir(book.join("src").join(dir))
                .unwrap()
                .map(move |e| format!("{dir}{}", e.unwrap().file_name().to_str().unwrap()))
        })
        .filter(|p| p.ends_with(".md") && p != "SUMMARY.md")
        .collect();
    pages.sort();
    assert_eq!(listed, pages);
    for md in &pages {
        let html = match md.as_str() {
            "introduction.md" => "index.html".to_string(),
            other => other.replace(".md", ".html"),
        };
        assert!(book.join(&html).is_file(), "{html}");
    }

    f.cmd().args(["run", "--target", "t"]).assert().success();
    write_book().stdout(predicate::str::contains("2 of 2 steps built"));
    let hello = page(&book, "steps/hello.html");
    let produced = section(&hello, "what-it-produced");
    assert!(
        produced.contains("<code>usr/bin/hello</code>")
            && produced.contains("ELF, dynamic (/lib64/ld-linux-x86-64.so.2), 64-bit x86-64"),
        "{produced}"
    );
    assert!(section(&hello, "how-long-it-took").contains("Built in "));
    assert!(section(&hello, "reproducibility").contains("Not audited yet"));
    let index = page(&book, "programs.html");
    assert!(
        index.contains("<td><code>hello</code></td><td><code>usr/bin/hello</code></td><td><a href=\"steps/hello.html\">hello</a></td>"),
        "{index}"
    );

    // greet's checkpoint goes: its page says so again, hello's is unchanged.
    let record = common::record(&f.state(), "t");
    let key = record["steps"]["greet"]["key"].as_str().unwrap();
    fs::remove_dir_all(f.state().join("checkpoints").join(key)).unwrap();
    write_book().stdout(predicate::str::contains("1 of 2 steps built"));
    assert!(
        section(&page(&book, "steps/greet.html"), "what-it-produced").contains("Not built yet")
    );
    assert!(
        section(&page(&book, "steps/hello.html"), "what-it-produced").contains("usr/bin/hello")
    );
}

#[test]
fn book_never_replaces_a_directory_it_did_not_write() {
    let f = Fixture::tiny();
    let theirs = f.root().join("theirs");
    fs::create_dir_all(&theirs).unwrap();
    fs::write(theirs.join("notes.txt"), "mine").unwrap();
    f.cmd()
        .args(["book", "--target", "t", "--out"])
        .arg(&theirs)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not a book stagebuild wrote"));
    assert_eq!(
        fs::read_to_string(theirs.join("notes.txt")).unwrap(),
        "mine"
    );
    assert_eq!(fs::read_dir(&theirs).unwrap().count(), 1);
}

#[test]
fn explain_is_plain_through_a_pipe_and_coloured_on_a_terminal() {
    let f = Fixture::tiny();
    let plain = f.cmd().args(["explain", "hello"]).assert().success();
    let plain = String::from_utf8(plain.get_output().stdout.clone()).unwrap();
    assert!(!plain.contains('\x1b'), "{plain}");
    for part in [
        "hello",
        "== Sources",
        "hello-1.0.tar.gz",
        "== Commands",
        "gcc -O2 -o hello hello.c",
        "Not built yet",
    ] {
        assert!(plain.contains(part), "{part} in {plain}");
    }

    // `script` gives the command a terminal (util-linux, in every Debian).
    let command = f.std_cmd().args(["explain", "hello"]).get_args().fold(
        assert_cmd::cargo::cargo_bin("stagebuild")
            .display()
            .to_string(),
        |line, arg| format!("{line} '{}'", arg.to_str().unwrap()),
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let coloured = String::from_utf8_lossy(&out.stdout);
    assert!(coloured.contains("\x1b[1m== Sources"), "{coloured}");
    assert!(coloured.contains("gcc -O2 -o hello hello.c"), "{coloured}");

    f.cmd()
        .args(["explain", "nosuch"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("has no step \"nosuch\""));
}

#[test]
fn each_page_gives_the_last_audits_verdict_unless_the_step_was_rebuilt_since() {
    let f = Fixture::tiny();
    f.import_sources();
    f.cmd().args(["run", "--target", "t"]).assert().success();
    f.cmd().args(["audit", "--target", "t"]).assert().success();
    let book = f.root().join("book");
    let write_book = || {
        f.cmd()
            .args(["book", "--target", "t", "--out"])
            .arg(&book)
            .assert()
            .success();
    };
    write_book();
    for id in ["hello", "greet"] {
        let verdict = page(&book, &format!("steps/{id}.html"));
        assert!(
            section(&verdict, "reproducibility").contains("<strong>Reproducible.</strong>"),
            "{verdict}"
        );
    }

    // greet is built again after the audit: its verdict was for the build before.
    let record = common::record(&f.state(), "t");
    let key = record["steps"]["greet"]["key"].as_str().unwrap();
    fs::remove_dir_all(f.state().join("checkpoints").join(key)).unwrap();
    f.cmd()
        .args(["run", "--target", "t", "--resume"])
        .assert()
        .success();
    write_book();
    assert!(
        section(&page(&book, "steps/greet.html"), "reproducibility")
            .contains("predates this checkpoint")
    );
    assert!(
        section(&page(&book, "steps/hello.html"), "reproducibility")
            .contains("<strong>Reproducible.</strong>")
    );
}

#[test]
fn a_long_stage_continues_in_a_second_column_of_the_diagram() {
    let f = Fixture::tiny();
    let ids: Vec<String> = (1..=25).map(|i| format!("s{i:02}")).collect();
    for id in &ids {
        f.write(
            &format!("steps/{id}.yaml"),
            format!("name: {id}\nversion: \"1\"\ndescription: Step {id}.\nbuild: |\n  true\n"),
        );
    }
    f.write(
        "steps/targets/long.yaml",
        format!(
            "name: long\nsource_date_epoch: 1672531200\nstages:\n  - name: host\n    runner: host\n    steps: [{}]\n",
            ids.join(", ")
        ),
    );
    let book = f.root().join("book");
    f.cmd()
        .args(["book", "--target", "long", "--out"])
        .arg(&book)
        .assert()
        .success();
    let index = page(&book, "index.html");
    assert_eq!(index.matches("class=\"stage\">stage host<").count(), 2);
    assert_eq!(index.matches("class=\"runs-on\">continued<").count(), 1);
    assert_eq!(index.matches("<rect class=\"step unbuilt\"").count(), 25);
    for id in &ids {
        assert!(
            index.contains(&format!("<a href=\"steps/{id}.html\">")),
            "{id}"
        );
    }
}

/// The azurelinux chain's book, before any of it is built: every step has
/// its page, and the contents say how far the chain has come.
#[test]
fn the_azurelinux_book_renders_every_step_before_any_is_built() {
    let state = tempfile::tempdir().unwrap();
    let book = state.path().join("book");
    common::stagebuild(&repo(), Some(&state.path().join("state")), None)
        .args(["book", "--target", "azurelinux", "--out"])
        .arg(&book)
        .assert()
        .success()
        .stdout(predicate::str::contains("(0 of 29 steps built)"));
    for step in ["cross-gcc", "rpm", "go-1.19", "kexec-x86_64", "hop-check"] {
        let html = page(&book, &format!("steps/{step}.html"));
        assert!(
            section(&html, "what-it-produced").contains("Not built yet"),
            "{step}: {html}"
        );
    }
}

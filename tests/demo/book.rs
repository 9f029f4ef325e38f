//! The book of the built demo, read in a real headless Chromium and checked
//! against the step files and the checkpoints; the book of a demo built only
//! in part; and `explain busybox` with and without a terminal. All read the
//! shared build through a view of it, so that an audit writing its report
//! meanwhile cannot change what a test sees.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{built_demo, repo, scratch, stagebuild};

/// A state directory with a copy of the shared build's record and its
/// checkpoints (all, or only those of `keep`), with a copy of the last
/// audit's report if there is one. The checkpoints' files are hard links:
/// cheap, and plain files to the state check, which refuses symlinks.
fn view_of_built_demo(name: &str, keep: Option<&[&str]>) -> PathBuf {
    let built = built_demo();
    let view = scratch(name).join("state");
    fs::create_dir_all(view.join("checkpoints")).unwrap();
    copy(&built.join("targets"), &view, &["-a"]);
    let record: serde_json::Value =
        serde_json::from_slice(&fs::read(built.join("targets/demo.json")).unwrap()).unwrap();
    for (id, step) in record["steps"].as_object().unwrap() {
        if keep.is_none_or(|k| k.contains(&id.as_str())) {
            let key = step["key"].as_str().unwrap();
            copy(
                &built.join("checkpoints").join(key),
                &view.join("checkpoints"),
                &["-a", "--link"],
            );
        }
    }
    let report = built.join("audit/demo/report.json");
    if let Ok(bytes) = fs::read(&report) {
        fs::create_dir_all(view.join("audit/demo")).unwrap();
        fs::write(view.join("audit/demo/report.json"), bytes).unwrap();
    }
    view
}

fn copy(from: &Path, into: &Path, how: &[&str]) {
    let status = Command::new("cp")
        .args(how)
        .arg(from)
        .arg(into)
        .status()
        .unwrap();
    assert!(status.success(), "copying {}", from.display());
}

fn write_book(state: &Path, out: &Path) {
    stagebuild(state)
        .args(["book", "--target", "demo", "--out"])
        .arg(out)
        .assert()
        .success();
}

fn chromium(args: &[&str], page: &Path) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium is installed by scripts/setup-debian.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub(super) fn dom(page: &Path) -> String {
    String::from_utf8(chromium(&["--dump-dom"], page).stdout).unwrap()
}

/// Text as a reader sees it: tags dropped (block ones as a space),
/// entities read, spaces collapsed.
fn words(html: &str) -> String {
    const BLOCKS: &[&str] = &[
        "p", "td", "th", "tr", "li", "h1", "h2", "h3", "pre", "br", "summary", "table",
    ];
    let mut text = String::new();
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        text.push_str(&rest[..open]);
        let close = rest[open..].find('>').map_or(rest.len(), |c| open + c + 1);
        let name: String = rest[open + 1..close]
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if BLOCKS.contains(&name.as_str()) {
            text.push(' ');
        }
        rest = &rest[close..];
    }
    text.push_str(rest);
    let text = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&");
    normal(&text)
}

/// Spaces collapsed, backticks (Markdown's code marks) dropped.
fn normal(text: &str) -> String {
    text.replace('`', "")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<h2 id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no section {id}"));
    let rest = &html[start..];
    &rest[..rest[5..].find("<h2").map_or(rest.len(), |end| end + 5)]
}

/// Bits and machine of an ELF file, read here independently of stagebuild.
fn elf_class(path: &Path) -> Option<String> {
    let head = fs::read(path).ok()?;
    if !head.starts_with(b"\x7fELF") {
        return None;
    }
    let bits = if head[4] == 2 { 64 } else { 32 };
    let machine = match u16::from_le_bytes([head[18], head[19]]) {
        3 => "i386",
        62 => "x86-64",
        n => panic!("{}: machine {n}", path.display()),
    };
    Some(format!("{bits}-bit {machine}"))
}

#[test]
#[ignore = "slow: builds the real demo"]
fn the_book_of_the_demo_shows_every_step_as_its_files_and_checkpoints_say() {
    let state = view_of_built_demo("book-view", None);
    let book = scratch("book-of-demo").join("book");
    write_book(&state, &book);
    let project = stagebuild::project::Project::open(&repo()).unwrap();
    let chain = project.chain("demo", &[]).unwrap();
    let record: serde_json::Value =
        serde_json::from_slice(&fs::read(state.join("targets/demo.json")).unwrap()).unwrap();
    let report: Option<serde_json::Value> = fs::read(state.join("audit/demo/report.json"))
        .ok()
        .map(|b| serde_json::from_slice(&b).unwrap());

    // The contents, as Chromium reads the first page, link every step in order.
    let index = dom(&book.join("index.html"));
    let toc = &index[index.find("<ol class=\"toc\">").unwrap()..];
    let toc = &toc[..toc.find("</ol>").unwrap()];
    let links: Vec<&str> = toc
        .split("href=\"")
        .skip(1)
        .map(|s| &s[..s.find('"').unwrap()])
        .filter(|href| href.starts_with("steps/"))
        .collect();
    let ids: Vec<String> = chain.steps.iter().map(|s| s.id.clone()).collect();
    let expected: Vec<String> = ids.iter().map(|id| format!("steps/{id}.html")).collect();
    assert_eq!(links, expected);
    assert!(
        index.contains("<svg class=\"chain\""),
        "the chain's diagram"
    );
    assert!(words(&index).contains("14 of 14 steps are built"));

    for (step, href) in chain.steps.iter().zip(&links) {
        let id = &step.id;
        let html = dom(&book.join(href));
        let def = &step.step.definition;
        assert!(html.contains(&format!("<h1 id=\"{id}\">{id}</h1>")), "{id}");

        let why = words(section(&html, "why-it-exists"));
        let described = normal(&step.step.description);
        assert!(
            why.contains(&described[..described.len().min(120)]),
            "{id}: {why}"
        );

        let sources = words(section(&html, "sources"));
        for name in &def.sources {
            let entry = project.lock.get(name).unwrap();
            assert!(
                sources.contains(&format!("{name} {} {}", def.version, entry.sha256)),
                "{id}: {sources}"
            );
            if let Some(url) = entry.urls.first() {
                assert!(sources.contains(url.as_str()), "{id}: {url}");
            }
        }

        for (patch, (reason, _)) in step.step.patches.iter().zip(&step.step.prose.patch_reasons) {
            let patches = words(section(&html, "patches"));
            assert!(
                patches.contains(&normal(reason.as_deref().unwrap())),
                "{id}"
            );
            for line in fs::read_to_string(&patch.path).unwrap().lines() {
                assert!(patches.contains(&normal(line)), "{id}: {line}");
            }
            assert!(
                section(&html, "patches").contains("<span class=\"ad\">+"),
                "coloured"
            );
        }

        let commands = words(section(&html, "commands"));
        for body in [&def.configure, &def.build, &def.install]
            .into_iter()
            .flatten()
        {
            for line in body.lines().filter(|l| !l.trim().is_empty()) {
                assert!(
                    commands.contains(&normal(line)),
                    "{id}: {line} in {commands}"
                );
            }
        }
        let env = words(section(&html, "environment"));
        for (var, value) in def
            .env
            .iter()
            .chain([(&"SOURCE_DATE_EPOCH".to_string(), &"1672531200".to_string())])
        {
            assert!(env.contains(&format!("{var} {value}")), "{id}: {var}");
        }

        let key = record["steps"][id]["key"].as_str().unwrap();
        let checkpoint = state.join("checkpoints").join(key);
        let manifest: Vec<serde_json::Value> =
            serde_json::from_slice(&fs::read(checkpoint.join("manifest.json")).unwrap()).unwrap();
        let produced = section(&html, "what-it-produced");
        let kind = |e: &serde_json::Value, k: &str| e["type"] == k;
        let files = manifest.iter().filter(|e| kind(e, "file")).count();
        let links = manifest.iter().filter(|e| kind(e, "symlink")).count();
        let counts = match (files, links) {
            (0, 0) => "Nothing: its output directory was empty.".to_string(),
            _ => format!(
                "{files} file{} and {links} symlink{}",
                if files == 1 { "" } else { "s" },
                if links == 1 { "" } else { "s" }
            ),
        };
        assert!(
            words(produced).contains(&counts),
            "{id}: {}",
            words(produced)
        );
        for entry in manifest.iter().filter(|e| !kind(e, "dir")) {
            let path = entry["path"].as_str().unwrap();
            let name = path.rsplit('/').next().unwrap();
            assert!(
                produced.contains(&format!("<code>{name}</code>")),
                "{id}: {path}"
            );
            if kind(entry, "file")
                && let Some(class) = elf_class(&checkpoint.join("tree").join(path))
            {
                let row = produced
                    .split("<tr>")
                    .find(|r| r.contains(&format!("<code>{path}</code>")))
                    .unwrap_or_else(|| panic!("{id}: no row for ELF file {path}"));
                assert!(row.contains(&class), "{id}: {path}: {row}");
                if path.contains("bin/") {
                    assert!(
                        row.contains("ELF, static"),
                        "the demo's programs are static: {row}"
                    );
                }
            }
        }

        let meta: serde_json::Value =
            serde_json::from_slice(&fs::read(checkpoint.join("meta.json")).unwrap()).unwrap();
        let took = words(section(&html, "how-long-it-took"));
        match meta["built"]["runner"].as_str() {
            Some(runner) => assert!(
                took.contains("Built in ") && took.contains(runner),
                "{id}: {took}"
            ),
            None => assert!(
                took.contains("before stagebuild recorded build times"),
                "{id}"
            ),
        }

        let verdict = report.as_ref().and_then(|r| {
            r["steps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["id"] == id.as_str())
        });
        let shown = words(section(&html, "reproducibility"));
        match verdict {
            None => assert!(shown.contains("Not audited yet"), "{id}: {shown}"),
            Some(v) if v["skipped"].is_string() => assert!(shown.contains("Not audited"), "{id}"),
            Some(v) if v["reproducible"] == true => {
                assert!(shown.contains("Reproducible."), "{id}")
            }
            Some(_) => assert!(shown.contains("Not reproducible"), "{id}"),
        }

        let deps = section(&html, "dependencies");
        let position = ids.iter().position(|i| i == id).unwrap();
        for earlier in &chain.steps[..position] {
            let visible =
                step.runner == stagebuild::target::RunnerKind::Vm || earlier.stage == step.stage;
            assert_eq!(
                deps.contains(&format!("href=\"../steps/{}.html\"", earlier.id)),
                visible,
                "{id} sees {}",
                earlier.id
            );
        }
    }

    let shot = scratch("book-screenshot").join("busybox.png");
    chromium(
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,1600",
        ],
        &book.join("steps/busybox.html"),
    );
    let png = fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 50_000,
        "{} bytes",
        png.len()
    );
}

#[test]
#[ignore = "slow: builds the real demo"]
fn a_demo_built_only_up_to_busybox_renders_what_it_has() {
    let built = [
        "linux-headers",
        "kernel-i386",
        "kernel-x86_64",
        "musl",
        "busybox",
    ];
    let state = view_of_built_demo("book-partial-view", Some(&built));
    let book = scratch("book-of-partial-demo").join("book");
    write_book(&state, &book);
    let read = |rel: &str| fs::read_to_string(book.join(rel)).unwrap();
    assert!(words(&read("index.html")).contains("5 of 14 steps are built"));
    assert_eq!(
        read("index.html").matches("class=\"step built\"").count(),
        5
    );
    let busybox = read("steps/busybox.html");
    assert!(section(&busybox, "what-it-produced").contains("<code>bin/busybox</code>"));
    // Its commands name musl's compiler wrapper.
    assert!(words(section(&busybox, "dependencies")).contains("musl (/sysroot/usr/bin/musl-gcc)"));
    for id in [
        "kexec-tools",
        "tcc",
        "guest-initramfs",
        "bzip2",
        "kexec-x86_64",
        "bzip2-x86_64",
    ] {
        let page = read(&format!("steps/{id}.html"));
        let produced = words(section(&page, "what-it-produced"));
        assert!(
            produced.starts_with("What it produced Not built yet"),
            "{id}: {produced}"
        );
        assert!(words(section(&page, "how-long-it-took")).contains("Not built yet"));
        assert!(section(&page, "commands").contains("<pre class=\"code\">"));
    }
    let programs = read("programs.html");
    assert!(programs.contains("<td><code>busybox</code></td><td><code>bin/busybox</code></td>"));
    assert!(
        !programs.contains("<td><code>tcc</code></td>"),
        "tcc is not built"
    );
    assert!(words(&programs).contains("Not built yet, so not listed: kexec-tools, tcc,"));
}

#[test]
#[ignore = "slow: builds the real demo"]
fn explain_busybox_prints_its_sources_patch_commands_and_outputs() {
    let state = view_of_built_demo("explain-view", None);
    let plain = stagebuild(&state)
        .args(["explain", "busybox"])
        .assert()
        .success();
    let plain = String::from_utf8(plain.get_output().stdout.clone()).unwrap();
    let coloured = {
        let mut line = assert_cmd::cargo::cargo_bin("stagebuild")
            .display()
            .to_string();
        for arg in [
            "--project",
            repo().to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
        ] {
            line += &format!(" '{arg}'");
        }
        line += " explain busybox";
        let out = Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().replace("\r\n", "\n")
    };
    assert!(!plain.contains('\x1b'), "plain without a terminal");
    assert!(coloured.contains("\x1b[1m== Patches\x1b[0m"), "{coloured}");
    assert!(
        coloured.contains("\x1b[32m+\tstruct tm *build_time, build_tm;\x1b[0m"),
        "{coloured}"
    );
    // Escapes removed, the coloured page reads like the plain one.
    let mut uncoloured = String::new();
    for (i, piece) in coloured.split('\x1b').enumerate() {
        uncoloured += if i == 0 {
            piece
        } else {
            &piece[piece.find('m').unwrap() + 1..]
        };
    }
    for text in [&plain, &uncoloured] {
        for part in [
            "busybox-1.35.0.tar.bz2  1.35.0   faeeb244c35a348a334f4a59e44626ee870fb07b6884d68c10ae8bc19f83a694  https://busybox.net/downloads/busybox-1.35.0.tar.bz2",
            "kconfig-timestamp-gmtime_r.patch",
            "overwrites gmtime()'s static buffer",
            "    make -j\"$JOBS\" HOSTCC=gcc CC=/sysroot/usr/bin/musl-gcc LD=\"ld -m elf_i386\" busybox",
            "bin/busybox",
            "ELF, static, 32-bit i386",
            "(listed in the book)",
        ] {
            assert!(text.contains(part), "{part:?} in {text}");
        }
    }
}

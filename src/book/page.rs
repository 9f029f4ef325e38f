//! A step's page: why it exists, what goes in, what it runs, what came out.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::markdown::{code, duration, fenced, link, table, text};
use super::model::{Book, StepInfo, Verdict};
use super::produced;
use crate::runner::StepJob;
use crate::target::RunnerKind;

/// Where a step's page is, from the book's `src/`.
pub fn path(id: &str) -> String {
    format!("steps/{id}.md")
}

/// Extra files longer than this are named, not shown.
const SHOWN_FILE_LIMIT: u64 = 8 << 10;

pub fn render(book: &Book, step: &StepInfo) -> String {
    let cs = &step.chain_step;
    let def = &cs.step.definition;
    let mut md = format!("# {}\n\n", text(step.id()));
    let runner = match cs.runner {
        RunnerKind::Host => "the host, in a namespace sandbox".to_string(),
        RunnerKind::Vm => "a qemu guest".to_string(),
    };
    md += &format!(
        "*Stage {} · step {} of {} · version {} · runs on {runner}*\n\n",
        text(&cs.stage),
        step.planned.index + 1,
        book.steps.len(),
        text(&def.version),
    );
    md += "## Why it exists\n\n";
    md += cs.step.description.trim();
    md += "\n\n";
    md += &format!("*From {}.*\n\n", code(&format!("steps/{}.yaml", def.name)));
    md += &sources(book, step);
    md += &patches(step);
    md += &files(step);
    md += &commands(step);
    md += &environment(book, step);
    md += &produced::section(book, step);
    md += &time(step);
    md += &reproducibility(book, step);
    md += &dependencies(book, step);
    md
}

fn sources(book: &Book, step: &StepInfo) -> String {
    let def = &step.chain_step.step.definition;
    let mut md = String::from("## Sources\n\n");
    if def.sources.is_empty() {
        md += "None: the step works on what earlier steps produced.\n\n";
        return md;
    }
    let lock = &book.lock;
    let rows: Vec<Vec<String>> = def
        .sources
        .iter()
        .filter_map(|name| lock.get(name))
        .map(|entry| {
            let upstream = match (entry.urls.first(), &entry.git, &entry.apt) {
                (Some(url), _, _) => format!("<{url}>"),
                (None, Some(git), _) => format!("{} at {}", code(&git.url), code(&git.commit)),
                (None, None, Some(apt)) => format!(
                    "source package {} {}",
                    code(&apt.package),
                    code(&apt.version)
                ),
                (None, None, None) => "none recorded".into(),
            };
            let file = match def.unpack.get(&entry.name) {
                Some(member) => format!("{} (unpacks {})", code(&entry.name), code(member)),
                None => code(&entry.name),
            };
            vec![file, text(&def.version), code(&entry.sha256), upstream]
        })
        .collect();
    md += &table(&["file", "version", "sha256", "upstream"], &rows);
    md += "\nEach file is checked against this sha256 (pinned in `sources.lock`) before it is unpacked.\n\n";
    md
}

fn patches(step: &StepInfo) -> String {
    let s = &step.chain_step.step;
    if s.patches.is_empty() {
        return String::new();
    }
    let mut md = String::from(
        "## Patches\n\nApplied in this order with `patch -p1` in the working directory, after a dry run.\n\n",
    );
    for (i, patch) in s.patches.iter().enumerate() {
        md += &format!("### {}\n\n", code(&patch.file));
        match s.prose.patch_reasons.get(i).and_then(|(r, _)| r.as_deref()) {
            Some(reason) => md += &format!("**Why:** {}\n\n", reason.trim()),
            None => md += "**Why:** no reason is stated (`book --check` reports it).\n\n",
        }
        match std::fs::read_to_string(&patch.path) {
            Ok(body) => md += &fenced("diff", &body),
            Err(e) => {
                md += &format!(
                    "(cannot read {}: {})\n",
                    code(&patch.file),
                    text(&e.to_string())
                )
            }
        }
        md += "\n";
    }
    md
}

fn files(step: &StepInfo) -> String {
    let s = &step.chain_step.step;
    if s.files.is_empty() {
        return String::new();
    }
    let mut md = String::from(
        "## Files\n\nCopied from the project into the top of the build directory before the commands run.\n\n",
    );
    for file in &s.files {
        md += &format!("### {}\n\n", code(&file.file));
        let small = std::fs::metadata(&file.path).is_ok_and(|m| m.len() <= SHOWN_FILE_LIMIT);
        match std::fs::read_to_string(&file.path) {
            Ok(body) if small => {
                let shebang = body.lines().next().unwrap_or_default();
                let language = if shebang.starts_with("#!") && shebang.ends_with("sh") {
                    "sh"
                } else {
                    ""
                };
                md += &fenced(language, &body);
            }
            _ => {
                md += &format!(
                    "{} (not shown here: binary or large).\n",
                    code(&format!("files/{}/{}", s.definition.name, file.file))
                )
            }
        }
        md += "\n";
    }
    md
}

fn commands(step: &StepInfo) -> String {
    let def = &step.chain_step.step.definition;
    if let Some(kexec) = &def.kexec {
        let mut md = String::from(
            "## Commands\n\nA kexec step has no commands of its own. stagebuild copies the kernel (and initramfs) below into the step's job and runs `kexec -l` in the guest to load them; the guest agent then marks the disk and jumps to the new kernel, whose agent ends the step.\n\n",
        );
        let mut rows = vec![vec!["kernel".into(), code(&kexec.kernel)]];
        if let Some(initrd) = &kexec.initrd {
            rows.push(vec!["initramfs".into(), code(initrd)]);
        }
        rows.push(vec![
            "command line".into(),
            code(&crate::runner::guest::command_line(&kexec.append)),
        ]);
        md += &table(&["what", "value"], &rows);
        md += &format!(
            "\nThe command that loads them in the guest:\n\n{}",
            fenced("sh", &crate::runner::kexec::load_command(kexec))
        );
        md += &format!(
            "\nSee [the kernel hop]({}) for what happens around it.\n\n",
            "../kernel-hop.md"
        );
        return md;
    }
    let mut md = String::from("## Commands\n\n");
    md += &format!(
        "The phases run in order, each in its own `set -ex` subshell, starting in {}.\n\n",
        code(&format!(
            "/build/{}",
            def.workdir.as_deref().unwrap_or_default()
        ))
    );
    for (phase, body) in [
        ("configure", &def.configure),
        ("build", &def.build),
        ("install", &def.install),
    ] {
        if let Some(body) = body {
            md += &format!("### {phase}\n\n{}\n", fenced("sh", body));
        }
    }
    md
}

/// The environment as the runner builds it; JOBS depends on the machine.
fn environment(book: &Book, step: &StepInfo) -> String {
    let job = StepJob {
        planned: &step.planned,
        sources: Vec::new(),
        earlier: Vec::new(),
        source_date_epoch: book.chain.target.source_date_epoch,
        jobs: 0,
        work: PathBuf::new(),
        log: PathBuf::new(),
        variation: None,
    };
    let (env, intro): (BTreeMap<String, String>, &str) = match step.chain_step.runner {
        RunnerKind::Host => (
            crate::runner::host::base_env(&job),
            "The sandbox has no network and its own PID, IPC and UTS namespaces (hostname `stagebuild`). It sees the host's toolchain (`/usr`, `/etc`, …) read-only, the outputs of the earlier steps of its stage merged read-only at `/sysroot`, its unpacked sources at `/build` and its output directory at `/out`, both writable, and a private `/tmp`. The umask is 022. The environment is exactly:",
        ),
        RunnerKind::Vm => (
            crate::runner::guest_job::guest_env(&job),
            "The guest boots from a disk that holds every earlier step's output; the job (sources and commands) arrives on a second disk and is unpacked at `/build`, and the output is collected from `/stagebuild/out` and copied into the guest's root for the steps after it. The agent exports exactly:",
        ),
    };
    let own = &step.chain_step.step.definition.env;
    let rows: Vec<Vec<String>> = env
        .iter()
        .map(|(k, v)| {
            let value = match (k.as_str(), step.chain_step.runner) {
                ("JOBS", RunnerKind::Host) => "the number of CPUs, or `run --jobs`".to_string(),
                _ => code(v),
            };
            let from = if own.contains_key(k) {
                "the step's `env`"
            } else {
                "stagebuild"
            };
            vec![code(k), value, from.to_string()]
        })
        .collect();
    format!(
        "## Environment\n\n{intro}\n\n{}\n",
        table(&["variable", "value", "set by"], &rows)
    )
}

fn time(step: &StepInfo) -> String {
    let mut md = String::from("## How long it took\n\n");
    md += &match step.built.as_ref().map(|b| &b.meta.built) {
        None => "Not built yet.\n\n".to_string(),
        Some(None) => "Its checkpoint was made before stagebuild recorded build times.\n\n".into(),
        Some(Some(built)) => format!(
            "Built in {} on {}, not counting the checkpoint's commit.\n\n",
            duration(built.millis),
            code(&built.runner)
        ),
    };
    md
}

fn reproducibility(book: &Book, step: &StepInfo) -> String {
    let mut md = String::from("## Reproducibility\n\n");
    let report = book
        .audit_report
        .as_deref()
        .map(|p| format!(" (report: {})", code(p)))
        .unwrap_or_default();
    md += &match (&step.built, &step.verdict) {
        (None, _) => "Not built yet, so not audited.".to_string(),
        (Some(_), Verdict::NotAudited) => format!(
            "Not audited yet: `stagebuild audit --target {}` rebuilds every step in a varied environment and compares.",
            book.chain.target.name
        ),
        (Some(_), Verdict::Stale) => format!(
            "The last audit{report} predates this checkpoint, so its verdict was for an earlier build."
        ),
        (Some(_), Verdict::Skipped(why)) => format!("Not audited: {}.", text(why)),
        (Some(_), Verdict::Reproducible) => format!(
            "**Reproducible.** The last audit{report} rebuilt it with a different build path, umask, locale, timezone, hostname, number of jobs, clock and directory order, and got the same files, byte for byte."
        ),
        (Some(_), Verdict::NotReproducible { failure, files }) => {
            let mut s = format!("**Not reproducible** in the last audit{report}.");
            if let Some(failure) = failure {
                s += &format!(" {}", text(failure));
            }
            if !files.is_empty() {
                let list: Vec<String> = files.iter().map(|f| code(f)).collect();
                s += &format!(" Files that differed: {}.", list.join(", "));
            }
            s
        }
    };
    md += "\n\n";
    md
}

fn dependencies(book: &Book, step: &StepInfo) -> String {
    let name = |i: usize| {
        let id = book.steps[i].id();
        link(id, 1, &path(id))
    };
    let mut md = String::from("## Dependencies\n\n");
    let sees: Vec<String> = step.sees.iter().map(|&i| name(i)).collect();
    md += &match (step.chain_step.runner, sees.is_empty()) {
        (_, true) => "It sees no earlier step's output.".to_string(),
        (RunnerKind::Host, false) => format!(
            "It sees, read-only under `/sysroot`, the outputs of the earlier steps of its stage: {}.",
            sees.join(", ")
        ),
        (RunnerKind::Vm, false) => format!(
            "Its guest's disk holds the outputs of every step before it: {}.",
            sees.join(", ")
        ),
    };
    md += " stagebuild does not know which of these it really uses.";
    if !step.names.is_empty() {
        let named: Vec<String> = step
            .names
            .iter()
            .map(|(&i, words)| {
                let words: Vec<String> = words.iter().map(|w| code(w)).collect();
                format!("{} ({})", name(i), words.join(", "))
            })
            .collect();
        md += &format!(
            " Its commands and settings name files of: {}.",
            named.join("; ")
        );
    }
    md += "\n\n";
    let seen_by: Vec<String> = step.seen_by.iter().map(|&i| name(i)).collect();
    md += &if seen_by.is_empty() {
        "No later step sees its output.".to_string()
    } else {
        format!("Later steps that see its output: {}.", seen_by.join(", "))
    };
    md += " Every step's cache key includes the key of the step before it, so changing this step rebuilds every step after it.\n";
    md
}

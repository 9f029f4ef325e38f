//! An audit as text (for the terminal) and as a self-contained HTML page.

use std::fmt::Write as _;

use super::inspect::Detail;
use super::{AuditReport, FileDiff, StepAudit};
use crate::runner::guest::GuestMode;

fn detail_text(detail: &Detail) -> String {
    match detail {
        Detail::Text { diff } => diff.clone(),
        Detail::Archive {
            format,
            only_before,
            only_after,
            changed,
        } => format!(
            "{format} members: changed [{}], only in the original [{}], only in the rebuild [{}]\n",
            changed.join(", "),
            only_before.join(", "),
            only_after.join(", ")
        ),
        Detail::Elf { sections } => format!("ELF sections that differ: {}\n", sections.join(", ")),
        Detail::Binary => String::new(),
    }
}

fn file_line(f: &FileDiff) -> String {
    let mut line = format!("{}: {}", f.path, f.change);
    if let (Some(a), Some(b)) = (f.size_before, f.size_after) {
        let _ = write!(line, " (size {a} → {b}");
        if let Some(at) = f.first_difference {
            let _ = write!(line, ", first difference at byte {at}");
        }
        line.push(')');
    }
    line
}

/// Where a step was rebuilt, for the reports: a guest step's mode.
fn rebuilt_in(step: &StepAudit) -> String {
    match (step.rebuilt_in, step.checkpoint_built_in) {
        (Some(mode), Some(built)) => format!("{mode} (checkpoint built in {built})"),
        (Some(mode), None) => mode.to_string(),
        (None, _) if step.skipped.is_some() => String::new(),
        (None, _) => "host".into(),
    }
}

pub fn text(report: &AuditReport) -> String {
    let mut out = format!(
        "audit of target {}: {}\nvaried in host steps:\n",
        report.target, report.summary.headline
    );
    for v in &report.variations {
        let _ = writeln!(out, "  {v}");
    }
    for v in &report.not_varied {
        let _ = writeln!(out, "  not varied: {v}");
    }
    for guests in &report.guest_variations {
        let _ = writeln!(out, "varied in guest steps rebuilt in {}:", guests.mode);
        for v in &guests.variations {
            let _ = writeln!(out, "  {v}");
        }
        for v in &guests.not_varied {
            let _ = writeln!(out, "  not varied: {v}");
        }
    }
    for step in &report.steps {
        let verdict = match (&step.skipped, step.reproducible) {
            (Some(why), _) => {
                let _ = writeln!(out, "step {}: not audited: {why}", step.id);
                continue;
            }
            (None, true) => "reproducible",
            (None, false) => "NOT reproducible",
        };
        let _ = writeln!(
            out,
            "step {}: {verdict}, rebuilt in {}",
            step.id,
            rebuilt_in(step)
        );
        if let Some(failure) = &step.failure {
            let _ = writeln!(out, "  {failure}");
        }
        for f in &step.files {
            let _ = writeln!(out, "  {}", file_line(f));
            if let Some(detail) = &f.detail {
                for l in detail_text(detail).lines() {
                    let _ = writeln!(out, "    {l}");
                }
            }
        }
    }
    if let Some(step) = &report.first_divergent {
        let _ = writeln!(out, "first step that diverges: {step}");
    }
    let _ = writeln!(out, "{}", report.summary.headline);
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn html(report: &AuditReport) -> String {
    let mut body = String::new();
    let summary = &report.summary;
    let class = match (summary.not_reproducible, summary.not_audited) {
        (0, 0) => "good",
        (0, _) => "partial",
        _ => "bad",
    };
    let _ = write!(
        body,
        "<p class=\"{class}\" id=\"summary\">{}</p>",
        esc(&summary.headline)
    );
    if let Some(step) = &report.first_divergent {
        let _ = write!(
            body,
            "<p class=\"bad\" id=\"first-divergent\">First step that diverges: <b>{}</b></p>",
            esc(step)
        );
    }
    let lists = [("host steps", &report.variations, &report.not_varied)]
        .into_iter()
        .chain(report.guest_variations.iter().map(|g| {
            let title = match g.mode {
                GuestMode::Qemu => "guest steps rebuilt in qemu",
                GuestMode::Sandbox => "guest steps rebuilt in the sandbox",
            };
            (title, &g.variations, &g.not_varied)
        }));
    for (title, varied, not_varied) in lists {
        let _ = write!(body, "<h2>Variations: {title}</h2><ul>");
        for v in varied {
            let _ = write!(body, "<li>{}</li>", esc(v));
        }
        for v in not_varied {
            let _ = write!(body, "<li class=\"muted\">not varied: {}</li>", esc(v));
        }
        body.push_str("</ul>");
    }
    body.push_str("<h2>Steps</h2><table><tr><th>step</th><th>stage</th><th>verdict</th><th>rebuilt in</th><th>files that differ</th></tr>");
    for step in &report.steps {
        let (class, verdict) = match (&step.skipped, step.reproducible) {
            (Some(_), _) => ("muted", "not audited"),
            (None, true) => ("good", "reproducible"),
            (None, false) => ("bad", "not reproducible"),
        };
        let _ = write!(
            body,
            "<tr class=\"step\" data-step=\"{id}\"><td><a href=\"#step-{id}\">{id}</a></td><td>{}</td><td class=\"{class} verdict\">{verdict}</td><td class=\"rebuilt-in\">{}</td><td>{}</td></tr>",
            esc(&step.stage),
            esc(&rebuilt_in(step)),
            step.files.len(),
            id = esc(&step.id)
        );
    }
    body.push_str("</table>");
    for step in report
        .steps
        .iter()
        .filter(|s| !s.reproducible && s.skipped.is_none())
    {
        let _ = write!(body, "<h2 id=\"step-{id}\">{id}</h2>", id = esc(&step.id));
        if let Some(failure) = &step.failure {
            let _ = write!(body, "<p class=\"bad\">{}</p>", esc(failure));
        }
        for f in &step.files {
            let _ = write!(body, "<h3 class=\"file\">{}</h3>", esc(&file_line(f)));
            if let Some(detail) = &f.detail {
                let text = detail_text(detail);
                if !text.is_empty() {
                    let lines: String = text
                        .lines()
                        .map(|l| {
                            let class = match l.chars().next() {
                                Some('+') if !l.starts_with("+++") => "add",
                                Some('-') if !l.starts_with("---") => "del",
                                _ => "ctx",
                            };
                            format!("<span class=\"{class}\">{}</span>\n", esc(l))
                        })
                        .collect();
                    let _ = write!(body, "<pre class=\"diff\">{lines}</pre>");
                }
            }
        }
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>stagebuild audit: {target}</title>\n<style>\n\
         body {{ font-family: sans-serif; margin: 2em; max-width: 70em; }}\n\
         table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: .3em .8em; text-align: left; }}\n\
         .good {{ color: #1a7f37; }} .bad {{ color: #b42318; }} .partial {{ color: #9a6700; }} .muted {{ color: #777; }}\n\
         pre.diff {{ background: #f6f8fa; padding: .8em; overflow-x: auto; }}\n\
         .add {{ color: #1a7f37; }} .del {{ color: #b42318; }}\n\
         </style></head>\n<body><h1>Audit of target {target}</h1>\n{body}\n</body></html>\n",
        target = esc(&report.target)
    )
}

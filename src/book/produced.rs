//! What a step produced, from its checkpoint's manifest: the files by
//! directory, and the programs and libraries among them.

use std::collections::BTreeMap;

use super::markdown::{code, counted, link, size, table, text};
use super::model::{Book, Produced, StepInfo};
use crate::manifest::FileKind;
use crate::plan::StepState;

/// Directories with more entries than this are folded (`<details>`).
const FOLD_OVER: usize = 12;

/// The directory of an entry, `.` for the top.
fn dir_of(path: &str) -> &str {
    path.rsplit_once('/').map_or(".", |(dir, _)| dir)
}

fn name_of(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, name)| name)
}

/// What a file is, in a few words.
pub fn kind(file: &Produced) -> String {
    match (&file.elf, file.format, file.entry.kind) {
        (Some(elf), _, _) => format!("ELF, {}", elf.describe()),
        (None, Some(format), _) => format.into(),
        (None, None, FileKind::Symlink) => "symlink".into(),
        (None, None, _) if file.entry.mode & 0o111 != 0 => "executable".into(),
        (None, None, _) => String::new(),
    }
}

/// A program: anything in a `bin` or `sbin` directory.
pub fn is_program(file: &Produced) -> bool {
    file.entry.kind != FileKind::Dir && matches!(name_of(dir_of(&file.entry.path)), "bin" | "sbin")
}

/// A library: a static archive, a shared object, or a link to one.
pub fn is_library(file: &Produced) -> bool {
    let name = name_of(&file.entry.path);
    file.entry.kind != FileKind::Dir
        && !is_program(file)
        && name.starts_with("lib")
        && (name.ends_with(".a") || name.contains(".so"))
}

fn row(file: &Produced, shown: &str) -> Vec<String> {
    let size_or_link = match (&file.entry.link, file.entry.size) {
        (Some(target), _) => format!("→ {}", code(target)),
        (None, Some(bytes)) => size(bytes),
        (None, None) => String::new(),
    };
    vec![code(shown), size_or_link, text(&kind(file))]
}

pub fn section(book: &Book, step: &StepInfo) -> String {
    let mut md = String::from("## What it produced\n\n");
    let Some(built) = &step.built else {
        let why = match &step.state {
            StepState::Invalidated { reasons } => {
                format!(" under its current inputs ({})", text(&reasons.join("; ")))
            }
            _ => String::new(),
        };
        md += &format!(
            "Not built yet{why}, so there is nothing to list: once `stagebuild run --target {}` has built it, this section lists its files from the checkpoint's manifest.\n\n",
            book.chain.target.name
        );
        return md;
    };
    let entries: Vec<&Produced> = built
        .files
        .iter()
        .filter(|f| f.entry.kind != FileKind::Dir)
        .collect();
    if entries.is_empty() {
        md += "Nothing: its output directory was empty.\n\n";
        return md;
    }
    let count = |kind| entries.iter().filter(|f| f.entry.kind == kind).count();
    let total: u64 = entries.iter().filter_map(|f| f.entry.size).sum();
    let mut by_dir: BTreeMap<&str, Vec<&Produced>> = BTreeMap::new();
    for file in &entries {
        by_dir
            .entry(dir_of(&file.entry.path))
            .or_default()
            .push(file);
    }
    md += &format!(
        "{} and {} in {}, {} in all (from the manifest of checkpoint {}).\n\n",
        counted(count(FileKind::File), "file", "files"),
        counted(count(FileKind::Symlink), "symlink", "symlinks"),
        counted(by_dir.len(), "directory", "directories"),
        size(total),
        code(crate::report::short(&step.planned.key)),
    );
    let notable: Vec<Vec<String>> = entries
        .iter()
        .filter(|f| f.elf.is_some() || f.format.is_some())
        .map(|f| row(f, &f.entry.path))
        .collect();
    if !notable.is_empty() {
        md += "### Binaries\n\n";
        md += &table(&["file", "size", "kind"], &notable);
        md += "\n";
    }
    md += "### By directory\n\n";
    for (dir, files) in &by_dir {
        let bytes: u64 = files.iter().filter_map(|f| f.entry.size).sum();
        let rows: Vec<Vec<String>> = files
            .iter()
            .map(|f| row(f, name_of(&f.entry.path)))
            .collect();
        let listing = table(&["name", "size", "kind"], &rows);
        let title = format!(
            "{} — {}, {}",
            code(dir),
            counted(files.len(), "entry", "entries"),
            size(bytes)
        );
        if files.len() > FOLD_OVER {
            md += &format!(
                "<details><summary>{}</summary>\n\n{listing}\n</details>\n\n",
                html_text(&title)
            );
        } else {
            md += &format!("**{title}**\n\n{listing}\n");
        }
    }
    md
}

/// `code` spans in a summary line as HTML (Markdown is not read inside
/// an HTML tag's line).
fn html_text(markdown: &str) -> String {
    let escaped = markdown
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let mut out = String::new();
    for (i, part) in escaped.split('`').enumerate() {
        if i % 2 == 1 {
            out += &format!("<code>{}</code>", part.replace("\\|", "|"));
        } else {
            out += part;
        }
    }
    out
}

/// The index of every program and library the chain installs.
pub fn index(book: &Book) -> String {
    let mut programs: Vec<(String, Vec<String>)> = Vec::new();
    let mut libraries: Vec<(String, Vec<String>)> = Vec::new();
    let mut unbuilt = Vec::new();
    for step in &book.steps {
        let Some(built) = &step.built else {
            unbuilt.push(link(step.id(), 0, &super::page::path(step.id())));
            continue;
        };
        for file in &built.files {
            let into = if is_program(file) {
                &mut programs
            } else if is_library(file) {
                &mut libraries
            } else {
                continue;
            };
            let name = name_of(&file.entry.path).to_string();
            into.push((
                name.clone(),
                vec![
                    code(&name),
                    code(&file.entry.path),
                    link(step.id(), 0, &super::page::path(step.id())),
                    match &file.entry.link {
                        Some(target) => format!("symlink → {}", code(target)),
                        None => text(&kind(file)),
                    },
                ],
            ));
        }
    }
    let mut md = String::from(
        "# Programs and libraries\n\nEvery program (a file in a `bin` or `sbin` directory) and library the chain installs, with the step that built it. The same name can come from more than one step: each built its own.\n\n",
    );
    if !unbuilt.is_empty() {
        md += &format!("Not built yet, so not listed: {}.\n\n", unbuilt.join(", "));
    }
    for (title, mut list) in [("Programs", programs), ("Libraries", libraries)] {
        list.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        md += &format!("## {title}\n\n");
        if list.is_empty() {
            md += "None yet.\n\n";
            continue;
        }
        let rows: Vec<Vec<String>> = list.into_iter().map(|(_, row)| row).collect();
        md += &table(&["name", "path", "step", "kind"], &rows);
        md += "\n";
    }
    md
}

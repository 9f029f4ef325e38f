//! The book: the chain explained, made from the files that build it. Every
//! page is Markdown first (in mdBook's layout, under `src/`), then rendered
//! to static HTML beside it; `explain` renders a step's page for a terminal.

pub mod chapters;
pub mod check;
pub mod diagram;
pub mod explain;
pub mod highlight;
pub mod html;
pub mod markdown;
pub mod model;
pub mod page;
pub mod produced;

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use model::Book;

/// One page, as the contents list it: its title, its path under `src/`, its
/// level (0 for chapters, 1 for the steps of a stage) and its text.
pub struct Chapter {
    pub title: String,
    pub path: String,
    pub level: usize,
    pub markdown: String,
}

/// Marks a directory as a book stagebuild wrote, which it may replace.
const MARK: &str = ".stagebuild-book";

/// Every page, in reading order.
pub fn chapters(book: &Book) -> Vec<Chapter> {
    let chapter = |title: String, path: String, level, markdown| Chapter {
        title,
        path,
        level,
        markdown,
    };
    let mut out = vec![chapter(
        "Introduction".into(),
        "introduction.md".into(),
        0,
        chapters::introduction(book),
    )];
    for (stage, steps) in book.stages() {
        out.push(chapter(
            format!("Stage {stage}"),
            chapters::stage_path(stage),
            0,
            chapters::stage(book, stage, &steps),
        ));
        for step in steps {
            out.push(chapter(
                step.id().to_string(),
                page::path(step.id()),
                1,
                page::render(book, step),
            ));
        }
    }
    if let Some(hop) = chapters::kernel_hop(book) {
        out.push(chapter(
            "The kernel hop".into(),
            "kernel-hop.md".into(),
            0,
            hop,
        ));
    }
    out.push(chapter(
        "Checkpoints and resume".into(),
        "checkpoints.md".into(),
        0,
        chapters::checkpoints(book),
    ));
    out.push(chapter(
        "Glossary".into(),
        "glossary.md".into(),
        0,
        chapters::glossary(),
    ));
    out.push(chapter(
        "Programs and libraries".into(),
        "programs.md".into(),
        0,
        produced::index(book),
    ));
    out
}

/// mdBook's `SUMMARY.md`: the introduction before the numbered chapters,
/// the glossary and the index after them.
fn summary(chapters: &[Chapter]) -> String {
    let mut md = String::from("# Summary\n\n");
    let suffix = ["glossary.md", "programs.md"];
    for c in chapters {
        let entry = format!("[{}]({})", markdown::text(&c.title), c.path);
        if c.path == "introduction.md" {
            md += &format!("{entry}\n\n");
        } else if c.path == suffix[0] {
            md += &format!("\n---\n\n{entry}\n");
        } else if suffix.contains(&c.path.as_str()) {
            md += &format!("{entry}\n");
        } else {
            md += &format!("{}- {entry}\n", "    ".repeat(c.level));
        }
    }
    md
}

/// Writes the book into `out`: `book.toml` and `src/` for mdBook, and the
/// HTML pages. It is assembled beside `out` and renamed into place, so an
/// interrupted run leaves the previous book whole. A directory that is not
/// a book stagebuild wrote is never replaced.
pub fn write(book: &Book, out: &Path) -> Result<usize> {
    if out.exists() && !out.join(MARK).exists() {
        let empty = fs::read_dir(out)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty {
            return Err(Error::Usage(format!(
                "{} exists and is not a book stagebuild wrote; choose another --out",
                out.display()
            )));
        }
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).io_context(|| format!("creating {}", parent.display()))?;
    let name = out.file_name().and_then(|n| n.to_str()).unwrap_or("book");
    let staging = parent.join(format!(".{name}.{}.partial", std::process::id()));
    fsutil::fresh_dir(&staging)?;
    let chapters = chapters(book);
    let title = format!("The {} chain", book.chain.target.name);
    let mut files: Vec<(PathBuf, String)> = vec![
        (
            "book.toml".into(),
            format!(
                "# Written by `stagebuild book`; `mdbook build` renders src/ into mdbook/.\n[book]\ntitle = {:?}\nsrc = \"src\"\n\n[build]\nbuild-dir = \"mdbook\"\n",
                title
            ),
        ),
        ("src/SUMMARY.md".into(), summary(&chapters)),
        (MARK.into(), String::new()),
    ];
    for (i, c) in chapters.iter().enumerate() {
        files.push((Path::new("src").join(&c.path), c.markdown.clone()));
        files.push((
            html::html_path(&c.path).into(),
            html::page(&title, &chapters, i),
        ));
    }
    for (path, text) in &files {
        let path = staging.join(path);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).io_context(|| format!("creating {}", dir.display()))?;
        }
        fs::write(&path, text).io_context(|| format!("writing {}", path.display()))?;
    }
    let old = parent.join(format!(".{name}.{}.old", std::process::id()));
    if out.exists() {
        fs::rename(out, &old).io_context(|| format!("moving {} aside", out.display()))?;
    }
    fs::rename(&staging, out).io_context(|| format!("writing {}", out.display()))?;
    fsutil::remove_tree(&old)?;
    Ok(chapters.len())
}

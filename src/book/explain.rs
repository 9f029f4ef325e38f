//! A page of the book for a terminal: the same Markdown, rendered as text,
//! with ANSI colours when asked. Folded directory listings show their
//! summary line only.

use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag, TagEnd};

use super::highlight::{self, Class};

struct Terminal {
    color: bool,
    out: String,
    /// The text of the paragraph, heading or cell being read.
    line: String,
    /// Cells of the table being read, row by row (the head first).
    table: Option<Vec<Vec<String>>>,
    lists: usize,
    code: Option<(String, String)>,
    /// Inside a folded listing.
    folded: bool,
}

impl Terminal {
    fn style(&mut self, sgr: &str) {
        if self.color && self.table.is_none() {
            self.line += &format!("\x1b[{sgr}m");
        }
    }

    fn finish_line(&mut self, trailer: &str) {
        let line = std::mem::take(&mut self.line);
        self.out += line.trim_end();
        self.out += trailer;
    }

    fn code_block(&mut self, language: &str, code: &str) {
        let mut text = String::new();
        for (class, piece) in highlight::pieces(language, code) {
            match class {
                Class::Plain => text += piece,
                _ if !self.color => text += piece,
                class => {
                    // Colour each line of a piece on its own, so that the
                    // indentation below stays plain.
                    let lines: Vec<String> = piece
                        .split('\n')
                        .map(|l| {
                            if l.is_empty() {
                                String::new()
                            } else {
                                format!("\x1b[{}m{l}\x1b[0m", class.ansi())
                            }
                        })
                        .collect();
                    text += &lines.join("\n");
                }
            }
        }
        for line in text.trim_end_matches('\n').split('\n') {
            self.out += "    ";
            self.out += line;
            self.out += "\n";
        }
        self.out += "\n";
    }

    fn table(&mut self, rows: Vec<Vec<String>>) {
        let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                rows.iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for (i, row) in rows.iter().enumerate() {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(c, cell)| format!("{cell:<width$}", width = widths[c]))
                .collect();
            let line = format!("  {}", cells.join("  ").trim_end());
            if i == 0 && self.color {
                self.out += &format!("\x1b[1m{line}\x1b[0m\n");
            } else {
                self.out += &line;
                self.out += "\n";
            }
        }
        self.out += "\n";
    }

    fn event(&mut self, event: Event) {
        if self.folded {
            if matches!(&event, Event::Html(h) if h.contains("</details>")) {
                self.folded = false;
            }
            return;
        }
        if let Some((_, code)) = &mut self.code {
            match event {
                Event::Text(t) => code.push_str(&t),
                Event::End(TagEnd::CodeBlock) => {
                    let (language, code) = self.code.take().expect("in a code block");
                    self.code_block(&language, &code);
                }
                _ => {}
            }
            return;
        }
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                self.style(if level == HeadingLevel::H1 {
                    "1;4"
                } else {
                    "1"
                });
                if level == HeadingLevel::H2 {
                    self.line += "== ";
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                self.style("0");
                self.finish_line("\n\n");
            }
            Event::End(TagEnd::Paragraph) => self.finish_line("\n\n"),
            Event::Start(Tag::Strong) => self.style("1"),
            Event::Start(Tag::Emphasis) => self.style("3"),
            Event::End(TagEnd::Strong | TagEnd::Emphasis | TagEnd::Link) => self.style("0"),
            Event::Start(Tag::Link { .. }) => self.style("4"),
            Event::Start(Tag::List(_)) => self.lists += 1,
            Event::End(TagEnd::List(_)) => {
                self.lists -= 1;
                if self.lists == 0 {
                    self.out += "\n";
                }
            }
            Event::Start(Tag::Item) => self.line += &format!("{}- ", "  ".repeat(self.lists)),
            Event::End(TagEnd::Item) => self.finish_line("\n"),
            Event::Start(Tag::CodeBlock(kind)) => {
                let language = match kind {
                    CodeBlockKind::Fenced(lang) => lang.to_string(),
                    CodeBlockKind::Indented => String::new(),
                };
                self.code = Some((language, String::new()));
            }
            Event::Start(Tag::Table(_)) => self.table = Some(Vec::new()),
            Event::Start(Tag::TableHead | Tag::TableRow) => {
                if let Some(rows) = &mut self.table {
                    rows.push(Vec::new());
                }
            }
            Event::End(TagEnd::TableCell) => {
                let cell = std::mem::take(&mut self.line);
                if let Some(row) = self.table.as_mut().and_then(|t| t.last_mut()) {
                    row.push(cell.trim().to_string());
                }
            }
            Event::End(TagEnd::Table) => {
                let rows = self.table.take().unwrap_or_default();
                self.table(rows);
            }
            Event::Code(text) => {
                self.style("36");
                self.line += &text;
                self.style("0");
            }
            Event::Text(text) => self.line += &text,
            Event::SoftBreak => self.line += " ",
            Event::HardBreak => self.line += "\n",
            Event::Html(html) if html.contains("<details>") => {
                let summary = strip_tags(&html);
                self.style("1");
                self.line += summary.trim();
                self.style("0");
                self.line += " (listed in the book)";
                self.finish_line("\n\n");
                self.folded = !html.contains("</details>");
            }
            _ => {}
        }
    }
}

fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// `markdown` for a terminal; `color` adds ANSI colours and styles.
pub fn render(markdown: &str, color: bool) -> String {
    let mut terminal = Terminal {
        color,
        out: String::new(),
        line: String::new(),
        table: None,
        lists: 0,
        code: None,
        folded: false,
    };
    for event in Parser::new_ext(markdown, Options::ENABLE_TABLES) {
        terminal.event(event);
    }
    terminal.out.trim_end().to_string() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_has_no_escapes_and_colour_has_them() {
        let page = "# x\n\n## Commands\n\n```sh\nmake \"$OUT\"\n```\n\n| a | b |\n|---|---|\n| `c` | d |\n\n<details><summary><code>usr</code> — 40 entries</summary>\n\n| n |\n|---|\n| hidden |\n\n</details>\n\nafter\n";
        let plain = render(page, false);
        assert!(!plain.contains('\x1b'), "{plain}");
        assert!(plain.contains("== Commands"), "{plain}");
        assert!(plain.contains("    make \"$OUT\""), "{plain}");
        assert!(plain.contains("  c  d"), "{plain}");
        assert!(
            plain.contains("usr — 40 entries (listed in the book)"),
            "{plain}"
        );
        assert!(!plain.contains("hidden"), "{plain}");
        assert!(plain.contains("after"), "{plain}");
        let coloured = render(page, true);
        assert!(coloured.contains("\x1b[33m\"$OUT\"\x1b[0m"), "{coloured}");
    }
}

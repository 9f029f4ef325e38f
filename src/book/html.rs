//! The book as static HTML: each chapter's Markdown rendered with
//! pulldown-cmark, code coloured, links to `.md` pages pointed at their
//! `.html`, in one page template with the contents beside it. No script,
//! no font or style sheet from elsewhere.

use pulldown_cmark::{CodeBlockKind, CowStr, Event, Options, Parser, Tag, TagEnd};

use super::Chapter;
use super::highlight::{self, Class};
use super::markdown::slug;

/// Where a chapter's page is: the introduction is the book's `index.html`.
pub fn html_path(md_path: &str) -> String {
    if md_path == "introduction.md" {
        return "index.html".into();
    }
    match md_path.strip_suffix(".md") {
        Some(stem) => format!("{stem}.html"),
        None => md_path.to_string(),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A link between pages, `.md` → `.html`; other links are left alone.
fn rewrite_link(dest: &str) -> String {
    if dest.contains("://") || dest.starts_with('#') || dest.starts_with("mailto:") {
        return dest.to_string();
    }
    let (path, anchor) = dest
        .split_once('#')
        .map_or((dest, None), |(p, a)| (p, Some(a)));
    let (dir, file) = path.rsplit_once('/').map_or(("", path), |(d, f)| (d, f));
    let file = html_path(file);
    let mut out = if dir.is_empty() {
        file
    } else {
        format!("{dir}/{file}")
    };
    if let Some(anchor) = anchor {
        out = format!("{out}#{anchor}");
    }
    out
}

/// Highlighted HTML for a fenced block.
fn code_block(language: &str, code: &str) -> String {
    let mut html = format!(
        "<pre class=\"code\"><code class=\"language-{}\">",
        esc(language)
    );
    for (class, piece) in highlight::pieces(language, code) {
        match class {
            Class::Plain => html += &esc(piece),
            class => html += &format!("<span class=\"{}\">{}</span>", class.css(), esc(piece)),
        }
    }
    html += "</code></pre>\n";
    html
}

/// A chapter's Markdown as HTML.
pub fn body(markdown: &str) -> String {
    let events: Vec<Event> = Parser::new_ext(markdown, Options::ENABLE_TABLES).collect();
    let mut out: Vec<Event> = Vec::with_capacity(events.len());
    let mut used_ids: Vec<String> = Vec::new();
    let mut i = 0;
    while i < events.len() {
        match &events[i] {
            Event::Start(Tag::Heading {
                level,
                classes,
                attrs,
                ..
            }) => {
                let title: String = events[i..]
                    .iter()
                    .take_while(|e| !matches!(e, Event::End(TagEnd::Heading(_))))
                    .filter_map(|e| match e {
                        Event::Text(t) | Event::Code(t) => Some(t.as_ref()),
                        _ => None,
                    })
                    .collect();
                let mut id = slug(&title);
                let mut n = 1;
                while used_ids.contains(&id) {
                    id = format!("{}-{n}", slug(&title));
                    n += 1;
                }
                used_ids.push(id.clone());
                out.push(Event::Start(Tag::Heading {
                    level: *level,
                    id: Some(CowStr::from(id)),
                    classes: classes.clone(),
                    attrs: attrs.clone(),
                }));
            }
            Event::Start(Tag::CodeBlock(kind)) => {
                let language = match kind {
                    CodeBlockKind::Fenced(lang) => lang.split_whitespace().next().unwrap_or(""),
                    CodeBlockKind::Indented => "",
                };
                let mut code = String::new();
                i += 1;
                while let Some(Event::Text(t)) = events.get(i) {
                    code.push_str(t);
                    i += 1;
                }
                out.push(Event::Html(CowStr::from(code_block(language, &code))));
            }
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }) => out.push(Event::Start(Tag::Link {
                link_type: *link_type,
                dest_url: CowStr::from(rewrite_link(dest_url)),
                title: title.clone(),
                id: id.clone(),
            })),
            other => out.push(other.clone()),
        }
        i += 1;
    }
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, out.into_iter());
    html
}

/// One page of the book: the contents, the chapter, and links to the
/// chapters before and after it.
pub fn page(book_title: &str, chapters: &[Chapter], current: usize) -> String {
    let chapter = &chapters[current];
    let up = "../".repeat(chapter.path.matches('/').count());
    let href = |c: &Chapter| format!("{up}{}", html_path(&c.path));
    let mut nav = String::from("<ol class=\"toc\">");
    for (i, c) in chapters.iter().enumerate() {
        let class = match (i == current, c.level) {
            (true, 0) => " class=\"active\"",
            (true, _) => " class=\"active sub\"",
            (false, 0) => "",
            (false, _) => " class=\"sub\"",
        };
        nav += &format!(
            "<li{class}><a href=\"{}\">{}</a></li>",
            esc(&href(c)),
            esc(&c.title)
        );
    }
    nav += "</ol>";
    let mut footer = String::from("<nav class=\"pager\">");
    if let Some(prev) = current.checked_sub(1).map(|i| &chapters[i]) {
        footer += &format!(
            "<a class=\"prev\" href=\"{}\">← {}</a>",
            esc(&href(prev)),
            esc(&prev.title)
        );
    }
    if let Some(next) = chapters.get(current + 1) {
        footer += &format!(
            "<a class=\"next\" href=\"{}\">{} →</a>",
            esc(&href(next)),
            esc(&next.title)
        );
    }
    footer += "</nav>";
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · {book}</title>\n<style>{STYLE}</style></head>\n\
         <body><aside><a class=\"book-title\" href=\"{home}\">{book}</a>{nav}</aside>\n\
         <main>{body}{footer}</main></body></html>\n",
        title = esc(&chapter.title),
        book = esc(book_title),
        home = esc(&format!("{up}index.html")),
        body = body(&chapter.markdown),
    )
}

const STYLE: &str = "
:root { --fg: #1f2328; --muted: #57606a; --line: #d0d7de; --bg-code: #f6f8fa; --accent: #3b6ea5; }
* { box-sizing: border-box; }
body { margin: 0; display: flex; color: var(--fg); background: #fff;
  font: 16px/1.6 system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif; }
aside { width: 17rem; flex: none; height: 100vh; position: sticky; top: 0; overflow-y: auto;
  background: #f6f8fa; border-right: 1px solid var(--line); padding: 1.2rem 1rem; font-size: 14px; }
aside .book-title { display: block; font-weight: 700; font-size: 16px; color: var(--fg);
  text-decoration: none; margin-bottom: .8rem; }
ol.toc { list-style: none; margin: 0; padding: 0; }
ol.toc li { margin: .1rem 0; }
ol.toc li.sub { padding-left: 1.1rem; }
ol.toc li a { color: var(--fg); text-decoration: none; display: block; padding: .05rem .4rem; border-radius: 4px; }
ol.toc li a:hover { background: #eaeef2; }
ol.toc li.active a { background: var(--accent); color: #fff; }
main { flex: 1; min-width: 0; max-width: 60rem; padding: 1.5rem 2.5rem 3rem; }
h1 { font-size: 2rem; margin: .2rem 0 .6rem; }
h2 { font-size: 1.4rem; margin-top: 2.2rem; padding-bottom: .25rem; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.1rem; margin-top: 1.5rem; }
h2 code, h3 code { font-size: .95em; }
a { color: var(--accent); }
code { font: 0.88em/1.45 ui-monospace, 'SFMono-Regular', 'DejaVu Sans Mono', Menlo, Consolas, monospace;
  background: var(--bg-code); padding: .1em .3em; border-radius: 4px; overflow-wrap: anywhere; }
pre.code { background: var(--bg-code); border: 1px solid var(--line); border-radius: 6px;
  padding: .8rem 1rem; overflow-x: auto; }
pre.code code { background: none; padding: 0; overflow-wrap: normal; }
td:first-child, td:first-child code { white-space: nowrap; overflow-wrap: normal; }
table { border-collapse: collapse; margin: .8rem 0; font-size: 14px; display: block; overflow-x: auto; }
th, td { border: 1px solid var(--line); padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: var(--bg-code); }
details { margin: .5rem 0; } summary { cursor: pointer; }
em { color: var(--muted); }
svg.chain { max-width: 100%; height: auto; }
.cm { color: #6e7781; font-style: italic; } .st { color: #0a3069; } .va { color: #8250df; }
.kw { color: #cf222e; font-weight: 600; } .dh { font-weight: 700; } .hk { color: #0550ae; }
.ad { color: #116329; background: #dafbe1; } .rm { color: #82071e; background: #ffebe9; }
nav.pager { display: flex; justify-content: space-between; margin-top: 3rem; padding-top: 1rem;
  border-top: 1px solid var(--line); }
nav.pager .next { margin-left: auto; }
";

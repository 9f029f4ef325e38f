//! Small pieces of Markdown (CommonMark with tables, as mdBook reads it).

/// Inline code for any text: a fence longer than any run of backticks in
/// it, and `|` escaped so that it can sit in a table cell.
pub fn code(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{}{pad}{fence}", text.replace('|', "\\|"))
}

/// Plain text that Markdown must not interpret.
pub fn text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\`*_[]<>#|!&".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A fenced code block whose fence no line of `body` can close.
pub fn fenced(language: &str, body: &str) -> String {
    let longest = body
        .lines()
        .map(|l| l.chars().take_while(|&c| c == '`').count())
        .max()
        .unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    let body = body.trim_end_matches('\n');
    format!("{fence}{language}\n{body}\n{fence}\n")
}

/// A table; cells are Markdown already.
pub fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n|{}\n", head.join(" | "), "---|".repeat(head.len()));
    for row in rows {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}

/// A link to another page of the book, relative to the page it is on.
pub fn link(label: &str, from_depth: usize, to: &str) -> String {
    format!("[{}]({}{to})", text(label), "../".repeat(from_depth))
}

/// "1 file", "2 files".
pub fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// 1234567 → "1.2 MiB".
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// 34712 ms → "34.7 s", 754000 ms → "12 min 34 s".
pub fn duration(millis: u64) -> String {
    let seconds = millis as f64 / 1000.0;
    if seconds < 60.0 {
        format!("{seconds:.1} s")
    } else {
        let whole = seconds.round() as u64;
        format!("{} min {} s", whole / 60, whole % 60)
    }
}

/// A heading's anchor as mdBook makes it: lower case, spaces to dashes,
/// other punctuation dropped.
pub fn slug(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_survive_a_markdown_parser() {
        assert_eq!(code("a`b|c"), "``a`b\\|c``");
        assert_eq!(text("lib_*x*"), "lib\\_\\*x\\*");
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1_258_291), "1.2 MiB");
        assert_eq!(duration(34_712), "34.7 s");
        assert_eq!(duration(754_000), "12 min 34 s");
        assert_eq!(slug("What it produced"), "what-it-produced");
        assert!(fenced("sh", "```\n").starts_with("````sh\n"));
    }
}

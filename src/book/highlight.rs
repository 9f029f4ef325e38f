//! Colouring for the two languages the book shows: shell commands and
//! unified diffs. Each is split into classed pieces that the HTML renderer
//! wraps in spans and the terminal renderer in ANSI colours.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Plain,
    Comment,
    String,
    Variable,
    Keyword,
    /// A diff's file headers.
    Header,
    /// A diff's `@@` hunk lines.
    Hunk,
    Added,
    Removed,
}

impl Class {
    /// The CSS class of a span (see the book's style sheet).
    pub fn css(self) -> &'static str {
        match self {
            Class::Plain => "",
            Class::Comment => "cm",
            Class::String => "st",
            Class::Variable => "va",
            Class::Keyword => "kw",
            Class::Header => "dh",
            Class::Hunk => "hk",
            Class::Added => "ad",
            Class::Removed => "rm",
        }
    }

    /// The ANSI SGR parameters for a terminal.
    pub fn ansi(self) -> &'static str {
        match self {
            Class::Plain => "",
            Class::Comment => "2;3",
            Class::String => "33",
            Class::Variable => "36",
            Class::Keyword => "35;1",
            Class::Header => "1",
            Class::Hunk => "36",
            Class::Added => "32",
            Class::Removed => "31",
        }
    }
}

/// `code` in pieces, for a fenced block's language (`sh`, `diff`); others
/// come back plain.
pub fn pieces<'a>(language: &str, code: &'a str) -> Vec<(Class, &'a str)> {
    match language {
        "diff" => diff(code),
        "sh" | "shell" | "bash" => shell(code),
        _ => vec![(Class::Plain, code)],
    }
}

fn diff(code: &str) -> Vec<(Class, &str)> {
    code.split_inclusive('\n')
        .map(|line| {
            let class = if ["--- ", "+++ ", "diff ", "index "]
                .iter()
                .any(|p| line.starts_with(p))
            {
                Class::Header
            } else if line.starts_with("@@") {
                Class::Hunk
            } else if line.starts_with('+') {
                Class::Added
            } else if line.starts_with('-') {
                Class::Removed
            } else {
                Class::Plain
            };
            (class, line)
        })
        .collect()
}

const KEYWORDS: &[&str] = &[
    "if", "then", "else", "elif", "fi", "for", "in", "do", "done", "while", "until", "case",
    "esac", "set", "export", "exit", "return", "local", "cd",
];

fn shell(code: &str) -> Vec<(Class, &str)> {
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    let mut plain_from = 0;
    let mut i = 0;
    let word_start = |i: usize| i == 0 || b" \t\n;|&(".contains(&bytes[i - 1]);
    while i < bytes.len() {
        let (class, end) = match bytes[i] {
            b'#' if word_start(i) => (Class::Comment, find(bytes, i, b'\n')),
            b'\'' => (Class::String, find(bytes, i + 1, b'\'') + 1),
            b'"' => (Class::String, string_end(bytes, i + 1)),
            b'$' => (Class::Variable, variable_end(bytes, i + 1)),
            b if b.is_ascii_alphabetic() && word_start(i) => {
                let end = i + bytes[i..]
                    .iter()
                    .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
                    .unwrap_or(bytes.len() - i);
                let ends_word = end == bytes.len() || b" \t\n;".contains(&bytes[end]);
                if ends_word && KEYWORDS.contains(&&code[i..end]) {
                    (Class::Keyword, end)
                } else {
                    (Class::Plain, end)
                }
            }
            _ => (Class::Plain, i + 1),
        };
        let end = end.min(bytes.len());
        if class != Class::Plain {
            if plain_from < i {
                out.push((Class::Plain, &code[plain_from..i]));
            }
            out.push((class, &code[i..end]));
            plain_from = end;
        }
        i = end;
    }
    if plain_from < bytes.len() {
        out.push((Class::Plain, &code[plain_from..]));
    }
    out
}

/// The index of the next `byte` at or after `from`, or the end.
fn find(bytes: &[u8], from: usize, byte: u8) -> usize {
    bytes[from.min(bytes.len())..]
        .iter()
        .position(|&b| b == byte)
        .map_or(bytes.len(), |p| from + p)
}

/// Just past the `"` that closes a string opened before `from`.
fn string_end(bytes: &[u8], mut from: usize) -> usize {
    while from < bytes.len() {
        match bytes[from] {
            b'\\' => from += 2,
            b'"' => return from + 1,
            _ => from += 1,
        }
    }
    bytes.len()
}

/// Just past `$NAME`, `${…}` or a special parameter such as `$1`.
fn variable_end(bytes: &[u8], from: usize) -> usize {
    match bytes.get(from) {
        Some(b'{') => find(bytes, from, b'}') + 1,
        Some(b) if b.is_ascii_alphabetic() || *b == b'_' => {
            from + bytes[from..]
                .iter()
                .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
                .unwrap_or(bytes.len() - from)
        }
        Some(b) if b.is_ascii_digit() || b"@*#?$!-".contains(b) => from + 1,
        _ => from,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_pieces_cover_the_text_and_class_what_matters() {
        let code = "if [ -n \"$OUT\" ]; then # check\n  cp a '$b' ${X}\nfi\n";
        let found = shell(code);
        assert_eq!(found.iter().map(|(_, s)| *s).collect::<String>(), code);
        let of = |class| -> Vec<&str> {
            found
                .iter()
                .filter(|(c, _)| *c == class)
                .map(|(_, s)| *s)
                .collect()
        };
        assert_eq!(of(Class::Keyword), ["if", "then", "fi"]);
        assert_eq!(of(Class::String), ["\"$OUT\"", "'$b'"]);
        assert_eq!(of(Class::Comment), ["# check"]);
        assert_eq!(of(Class::Variable), ["${X}"]);
    }

    #[test]
    fn diff_lines_are_classed_by_their_first_characters() {
        let found = diff("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-old\n+new\n same\n");
        let classes: Vec<Class> = found.iter().map(|(c, _)| *c).collect();
        assert_eq!(
            classes,
            [
                Class::Header,
                Class::Header,
                Class::Hunk,
                Class::Removed,
                Class::Added,
                Class::Plain
            ]
        );
    }
}

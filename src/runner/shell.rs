//! Shell quoting, for the commands a step's log shows and the files a
//! guest's shell reads.

use std::borrow::Cow;

/// `word` as a POSIX shell reads it back, unchanged if it needs no quotes.
pub fn quote(word: &str) -> Cow<'_, str> {
    // A NUL byte can be in no shell word; it is passed on as it came rather
    // than refused, as quoting it by hand did.
    shlex::Quoter::new()
        .allow_nul(true)
        .quote(word)
        .expect("quoting fails only on NUL bytes, which are allowed")
}

/// `words` as one line that a shell splits back into them.
pub fn words<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_words_split_back_into_the_same_words() {
        let argv = [
            "bwrap",
            "--setenv",
            "PATH",
            "/usr/bin:/bin",
            "",
            "it's",
            "a b",
            "$HOME",
            "back\\slash",
            "\"quoted\"",
            "tab\there",
        ];
        let line = words(&argv);
        assert_eq!(shlex::split(&line).unwrap(), argv);
        assert!(
            line.starts_with("bwrap --setenv PATH /usr/bin:/bin ''"),
            "{line}"
        );
        assert_eq!(quote("console=ttyS0 panic=-1"), "'console=ttyS0 panic=-1'");
    }
}

//! Names and locators that come from input and become paths or command-line
//! arguments. Each is checked where it is parsed, so that nothing downstream
//! sees `..`, `/`, a NUL, a control byte or a leading `-` where it matters.
//! Every check returns why a value is refused, for a `file:line` error.

/// Why a name or locator from input is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{name:?} must be a plain file name: {why}")]
    NotPlainFileName { name: String, why: &'static str },
    #[error("{0:?} is not a name: use only a-z, 0-9, '-', '_' and '.', not first '.' or '-'")]
    NotIdentifier(String),
    #[error("{0:?} has no host, or a bad one")]
    BadHost(String),
    #[error("{0:?} is not a URL that is fetched (http:// or https://)")]
    NotDownloadUrl(String),
    #[error("git {0:?} holds a control character")]
    ControlInGitUrl(String),
    #[error("git {0:?} must be an https://, http://, git:// or file:// URL, or an absolute path")]
    NotGitUrl(String),
    #[error("apt package {0:?} is not a Debian package name")]
    NotAptPackage(String),
    #[error("apt version {0:?} is not a Debian version")]
    NotAptVersion(String),
}

/// A name that is joined to a directory as one path component: a patch, an
/// extra file, a source in the lock or a mirror pack, an apt `file`.
pub fn plain_file_name(name: &str) -> Result<(), Refused> {
    let why = if name.is_empty() {
        "it is empty"
    } else if name.len() > 255 {
        "it is longer than 255 bytes"
    } else if name.contains('/') {
        "it holds a '/'"
    } else if name.bytes().any(|b| b < 0x20 || b == 0x7f) {
        "it holds a control character"
    } else if name.starts_with('.') {
        "it starts with '.'"
    } else if name.starts_with('-') {
        "it starts with '-'"
    } else {
        return Ok(());
    };
    Err(Refused::NotPlainFileName {
        name: name.to_string(),
        why,
    })
}

/// A step or target name: it names a file, a work directory, a log
/// directory and a record, so only a-z, 0-9, '-', '_' and '.', not starting
/// with '.' or '-'.
pub fn identifier(name: &str) -> Result<(), Refused> {
    if is_identifier(name) {
        Ok(())
    } else {
        Err(Refused::NotIdentifier(name.to_string()))
    }
}

/// A download URL in the lock: http or https, with a host.
pub fn download_url(url: &str) -> Result<(), Refused> {
    match scheme_and_rest(url) {
        Some(("http" | "https", rest)) if host_ok(rest) => Ok(()),
        Some(("http" | "https", _)) => Err(Refused::BadHost(url.to_string())),
        _ => Err(Refused::NotDownloadUrl(url.to_string())),
    }
}

/// A git repository in the lock: https, http or git URLs with a host, a
/// `file://` URL, or an absolute path to a local repository. Not ssh (its
/// host part has reached ssh as an option before) nor git's `ext::` helper,
/// which runs a command.
pub fn git_url(url: &str) -> Result<(), Refused> {
    if url.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(Refused::ControlInGitUrl(url.to_string()));
    }
    match scheme_and_rest(url) {
        Some(("https" | "http" | "git", rest)) if host_ok(rest) => Ok(()),
        Some(("file", rest)) if rest.starts_with('/') => Ok(()),
        None if url.starts_with('/') => Ok(()),
        _ => Err(Refused::NotGitUrl(url.to_string())),
    }
}

/// The protocols git may use for a pinned source, for `GIT_ALLOW_PROTOCOL`:
/// the same as [`git_url`] accepts, so a redirect cannot reach another.
pub const GIT_PROTOCOLS: &str = "https:http:git:file";

/// A Debian package name (policy 5.6.1): lowercase letters, digits, '+',
/// '-', '.', at least two, starting with a letter or digit.
pub fn apt_package(name: &str) -> Result<(), Refused> {
    let ok = name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
    ok.then_some(())
        .ok_or_else(|| Refused::NotAptPackage(name.to_string()))
}

/// A Debian version (policy 5.6.12): starts with a digit, then letters,
/// digits and `.+~-:`.
pub fn apt_version(version: &str) -> Result<(), Refused> {
    let ok = version.starts_with(|c: char| c.is_ascii_digit())
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+~-:".contains(&b));
    ok.then_some(())
        .ok_or_else(|| Refused::NotAptVersion(version.to_string()))
}

fn scheme_and_rest(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    Some((scheme, rest))
}

/// The authority of a URL: present, not an option, no spaces or control bytes.
fn host_ok(rest: &str) -> bool {
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    !host.is_empty() && !host.starts_with('-') && !rest.bytes().any(|b| b <= 0x20 || b == 0x7f)
}

/// A plain name: a-z, 0-9, `-`, `_` and `.`, not starting with `.` or `-`.
pub fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.'))
        && !name.starts_with(['.', '-'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names() {
        for good in ["a.tar.gz", "linux-6.1.tar.xz", "x y#z: w", "é"] {
            assert_eq!(plain_file_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "/etc/passwd",
            "a/b",
            "-rf",
            ".hidden",
            "a\0b",
            "a\nb",
            "a\rb",
        ] {
            assert!(plain_file_name(bad).is_err(), "{bad:?}");
        }
        assert!(plain_file_name(&"a".repeat(256)).is_err());
    }

    #[test]
    fn urls() {
        assert_eq!(download_url("https://example.org/a.tar.gz"), Ok(()));
        for bad in [
            "example.org/a",
            "ftp://example.org/a",
            "file:///etc/passwd",
            "https:///a",
            "https://-x/a",
            "https://a b/c",
        ] {
            assert!(download_url(bad).is_err(), "{bad}");
        }
        for good in [
            "https://example.org/r.git",
            "git://example.org/r",
            "file:///srv/r.git",
            "/srv/r.git",
        ] {
            assert_eq!(git_url(good), Ok(()), "{good}");
        }
        for bad in [
            "--upload-pack=touch /tmp/x",
            "-u",
            "ext::sh -c touch% /tmp/x",
            "ssh://-oProxyCommand=x/r",
            "host:path/r.git",
            "relative/r.git",
            "file://relative",
        ] {
            assert!(git_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn apt_names() {
        assert_eq!(apt_package("linux"), Ok(()));
        assert_eq!(apt_version("1:6.1.158-1+deb12u1~x"), Ok(()));
        for bad in ["-oAPT::Get=x", "Linux", "a", "a b", "a=b"] {
            assert!(apt_package(bad).is_err(), "{bad}");
        }
        for bad in ["-o", "x1", "1 2", "1=2", ""] {
            assert!(apt_version(bad).is_err(), "{bad}");
        }
    }
}

//! A step's `sources:` entries. Most name a file of `sources.lock`, which
//! is unpacked as it is. Some distributions ship an archive whose payload
//! is another archive inside it (Debian's gcc orig tarball holds
//! `gcc-12.2.0-dfsg.tar.xz` beside newlib's and gm2's): such an entry says
//! `{ file: NAME, unpack: MEMBER }`, and only that member is unpacked, read
//! straight out of the outer file.

use std::path::{Component, Path};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::archive::Format;

/// A source as the step file writes it.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "each source must be a file name from sources.lock, or { file: NAME, unpack: MEMBER } to unpack the archive MEMBER inside it"
)]
pub enum RawSource {
    Name(String),
    Inner(InnerSource),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InnerSource {
    file: String,
    unpack: String,
}

impl RawSource {
    /// The file's name in `sources.lock`.
    pub fn file(&self) -> &str {
        match self {
            RawSource::Name(name) => name,
            RawSource::Inner(inner) => &inner.file,
        }
    }

    /// The member to unpack instead of the file itself, checked: a plain
    /// relative path inside the outer archive, naming an archive, and an
    /// outer file that is an archive too.
    pub fn member(&self) -> Result<Option<&str>, String> {
        let RawSource::Inner(inner) = self else {
            return Ok(None);
        };
        let member = inner.unpack.as_str();
        let plain = !member.is_empty()
            && !member.bytes().any(|b| b < 0x20 || b == 0x7f)
            && Path::new(member)
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
        if !plain {
            return Err(format!(
                "unpack {member:?} must be a relative path inside {}, with no `.` or `..`",
                inner.file
            ));
        }
        if Format::of(&inner.file) == Format::Plain {
            return Err(format!(
                "{} is not an archive (.tar, .tar.gz, .tar.bz2, .tar.xz), so it has no member to unpack",
                inner.file
            ));
        }
        if Format::of(member) == Format::Plain {
            return Err(format!(
                "unpack {member:?} must name an archive (.tar, .tar.gz, .tar.bz2, .tar.xz)"
            ));
        }
        Ok(Some(member))
    }
}

/// The name of each listed source, with its span, for the checks every
/// source gets.
pub fn names(raw: &[Spanned<RawSource>]) -> Vec<Spanned<String>> {
    raw.iter()
        .map(|s| Spanned {
            value: s.value.file().to_string(),
            referenced: s.referenced,
            defined: s.defined,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inner(file: &str, unpack: &str) -> RawSource {
        RawSource::Inner(InnerSource {
            file: file.into(),
            unpack: unpack.into(),
        })
    }

    #[test]
    fn a_member_must_be_an_archive_inside_an_archive() {
        assert_eq!(RawSource::Name("a.tar.gz".into()).member(), Ok(None));
        assert_eq!(
            inner("gcc.orig.tar.gz", "gcc-12/gcc.tar.xz").member(),
            Ok(Some("gcc-12/gcc.tar.xz"))
        );
        for (file, member, why) in [
            ("o.tar.gz", "../x.tar.xz", "relative path"),
            ("o.tar.gz", "/x.tar.xz", "relative path"),
            ("o.tar.gz", "./x.tar.xz", "relative path"),
            ("o.tar.gz", "", "relative path"),
            ("o.tar.gz", "a\nb.tar", "relative path"),
            ("o.tar.gz", "x.patch", "must name an archive"),
            ("o.patch", "x.tar", "is not an archive"),
        ] {
            let e = inner(file, member).member().unwrap_err();
            assert!(e.contains(why), "{file} {member:?}: {e}");
        }
    }

    #[test]
    fn a_step_records_the_member_and_a_bad_one_points_at_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let lock_path = dir.path().join("sources.lock");
        std::fs::write(
            &lock_path,
            format!(
                "version: 1\nsources:\n  - name: o.tar.gz\n    sha256: {}\n    size: 1\n    urls: [https://example.org/o.tar.gz]\n",
                "0".repeat(64)
            ),
        )
        .unwrap();
        let lock = crate::lock::Lock::load(&lock_path).unwrap();
        let file = dir.path().join("s.yaml");
        let step = |sources: &str| {
            std::fs::write(
                &file,
                format!("name: s\nversion: \"1\"\ndescription: d\nsources:\n{sources}build: b\n"),
            )
            .unwrap();
            crate::step::Step::load(&file, dir.path(), &lock)
        };
        let loaded = step("  - file: o.tar.gz\n    unpack: o/inner.tar.xz\n").unwrap();
        assert_eq!(loaded.definition.sources, ["o.tar.gz"]);
        assert_eq!(loaded.definition.unpack["o.tar.gz"], "o/inner.tar.xz");
        let e = step("  - file: o.tar.gz\n    unpack: ../x.tar\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("s.yaml:5") && e.contains("relative path"), "{e}");
        let e = step("  - { file: o.tar.gz, member: x.tar }\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("s.yaml:5"), "{e}");
    }
}

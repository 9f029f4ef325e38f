//! What differs inside two versions of a file, cheaply: the first differing
//! byte, a unified diff for text, the member list for archives, and the
//! sections whose bytes differ for ELF files.

use serde::{Deserialize, Serialize};

use crate::elf;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Detail {
    Text {
        diff: String,
    },
    Archive {
        format: String,
        only_before: Vec<String>,
        only_after: Vec<String>,
        changed: Vec<String>,
    },
    Elf {
        sections: Vec<String>,
    },
    Binary,
}

pub fn first_difference(a: &[u8], b: &[u8]) -> Option<u64> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then_some(a.len().min(b.len())))
        .map(|p| p as u64)
}

pub fn detail(path: &str, a: &[u8], b: &[u8]) -> Detail {
    if let (Some(x), Some(y)) = (elf::sections(a), elf::sections(b)) {
        let mut sections: Vec<String> = x
            .iter()
            .filter(|(name, bytes)| {
                y.iter()
                    .find(|(n, _)| n == name)
                    .is_none_or(|(_, other)| other != bytes)
            })
            .map(|(name, _)| name.clone())
            .collect();
        sections.extend(
            y.iter()
                .filter(|(n, _)| !x.iter().any(|(m, _)| m == n))
                .map(|(n, _)| n.clone()),
        );
        return Detail::Elf { sections };
    }
    if let (Some(x), Some(y)) = (ar_members(a), ar_members(b)) {
        return archive("ar", x, y);
    }
    if path.ends_with(".tar")
        && let (Some(x), Some(y)) = (tar_members(a), tar_members(b))
    {
        return archive("tar", x, y);
    }
    match (std::str::from_utf8(a), std::str::from_utf8(b)) {
        (Ok(x), Ok(y)) if !x.contains('\0') && !y.contains('\0') => Detail::Text {
            diff: similar::TextDiff::from_lines(x, y)
                .unified_diff()
                .context_radius(3)
                .header(&format!("a/{path}"), &format!("b/{path}"))
                .to_string(),
        },
        _ => Detail::Binary,
    }
}

fn archive(format: &str, x: Vec<(String, Vec<u8>)>, y: Vec<(String, Vec<u8>)>) -> Detail {
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    let (nx, ny) = (names(&x), names(&y));
    Detail::Archive {
        format: format.into(),
        only_before: nx.iter().filter(|n| !ny.contains(n)).cloned().collect(),
        only_after: ny.iter().filter(|n| !nx.contains(n)).cloned().collect(),
        changed: x
            .iter()
            .filter(|(n, d)| y.iter().any(|(m, e)| m == n && e != d))
            .map(|(n, _)| n.clone())
            .collect(),
    }
}

/// Members of a Unix `ar` archive (static libraries), in order.
fn ar_members(data: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let mut rest = data.strip_prefix(b"!<arch>\n")?;
    let mut members = Vec::new();
    while rest.len() >= 60 {
        let header = &rest[..60];
        let name = String::from_utf8_lossy(&header[..16])
            .trim()
            .trim_end_matches('/')
            .to_string();
        let size: usize = std::str::from_utf8(&header[48..58])
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let body = rest.get(60..60 + size)?;
        members.push((name, body.to_vec()));
        rest = &rest[(60 + size + size % 2).min(rest.len())..];
    }
    Some(members)
}

fn tar_members(data: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let mut archive = tar::Archive::new(data);
    let mut members = Vec::new();
    for entry in archive.entries().ok()? {
        let mut entry = entry.ok()?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut body).ok()?;
        members.push((name, body));
    }
    Some(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_gets_a_unified_diff() {
        let Detail::Text { diff } = detail(
            "built-at",
            b"one\nbuilt 10:00\nthree\n",
            b"one\nbuilt 10:01\nthree\n",
        ) else {
            panic!("not text")
        };
        assert!(
            diff.contains("--- a/built-at")
                && diff.contains("-built 10:00")
                && diff.contains("+built 10:01"),
            "{diff}"
        );
        assert_eq!(first_difference(b"abc", b"abd"), Some(2));
        assert_eq!(first_difference(b"ab", b"abc"), Some(2));
        assert_eq!(first_difference(b"ab", b"ab"), None);
    }

    #[test]
    fn ar_members_are_compared() {
        let ar = |second: &[u8]| {
            let mut v = b"!<arch>\n".to_vec();
            for (name, body) in [("a.o/", &b"AAAA"[..]), ("b.o/", second)] {
                v.extend(
                    format!(
                        "{name:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                        0,
                        0,
                        0,
                        644,
                        body.len()
                    )
                    .bytes(),
                );
                v.extend(body);
                if body.len() % 2 == 1 {
                    v.push(b'\n');
                }
            }
            v
        };
        assert_eq!(
            detail("libx.a", &ar(b"BB"), &ar(b"BC")),
            Detail::Archive {
                format: "ar".into(),
                only_before: vec![],
                only_after: vec![],
                changed: vec!["b.o".into()]
            }
        );
    }

    #[test]
    fn elf_sections_that_differ_are_named() {
        let exe = std::fs::read("/proc/self/exe").unwrap();
        let sections = elf::sections(&exe).unwrap();
        assert!(sections.iter().any(|(n, _)| n == ".text"));
        let text = sections.iter().find(|(n, _)| n == ".text").unwrap();
        let at = exe.windows(64).position(|w| w == &text.1[..64]).unwrap();
        let mut changed = exe.clone();
        changed[at] ^= 1;
        assert_eq!(
            detail("x", &exe, &changed),
            Detail::Elf {
                sections: vec![".text".into()]
            }
        );
    }
}

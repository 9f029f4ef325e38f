//! Random archives against the unpacker: names built from `..`, `.`, `/` and
//! a few plain words, links (chains among them, and to the canary's absolute
//! path), every entry type, claimed sizes that lie, truncated streams and
//! small size limits. Whatever the archive, unpacking must not panic, must
//! change nothing beside the unpack root (a canary sits there), and, whether
//! it succeeds or not, no symlink it leaves may lead out of the root.
//!
//! `STAGEBUILD_FUZZ_SECONDS=N` keeps generating for N seconds with fresh
//! seeds and prints `fuzz unpack: RUNS runs, FAILURES failures`; without it a
//! fixed-seed batch keeps `cargo test` quick.

mod common;

use std::cell::Cell;
use std::fs;
use std::path::{Component, Path};
use std::time::{Duration, Instant};

use common::canary::Canary;
use common::{RawEntry, raw_tar};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use stagebuild::archive::Unpacker;
use stagebuild::beneath::{Root, refusal};
use tar::EntryType;

#[derive(Debug, Clone)]
struct Member {
    kind: u8,
    name: String,
    link: Option<String>,
    data: Vec<u8>,
    claimed_size: Option<u64>,
}

#[derive(Debug, Clone)]
struct Archive {
    members: Vec<Member>,
    /// Cut the stream short by this many bytes.
    truncate: usize,
    limit: u64,
}

/// A path from words, `.` and `..`, sometimes absolute, sometimes with a
/// trailing slash; `{canary}` stands for the canary's absolute path.
fn wild_path() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        Just("..".to_string()),
        Just(".".to_string()),
        Just("a".to_string()),
        Just("b".to_string()),
        Just("c".to_string()),
        Just("canary".to_string()),
        Just("passwd".to_string()),
        Just(String::new()),
    ];
    (
        prop::collection::vec(word, 1..7),
        any::<bool>(),
        any::<bool>(),
        0u8..8,
    )
        .prop_map(|(words, absolute, slash, special)| {
            if special == 0 {
                return "{canary}/passwd".to_string();
            }
            let mut p = words.join("/");
            if absolute && special == 1 {
                p.insert(0, '/');
            }
            if slash {
                p.push('/');
            }
            p
        })
}

/// A path from a few names and `.` and `..`, short: so that names and
/// link targets meet and chains form (`a -> .`, `b -> a/..`).
fn chain_path() -> impl Strategy<Value = String> {
    let word = prop_oneof![Just("a"), Just("b"), Just("c"), Just("."), Just(".."),];
    prop::collection::vec(word, 1..4).prop_map(|words| words.join("/"))
}

/// Any member: every type, names and targets from `wild_path`, sizes that
/// may lie.
fn wild_member() -> impl Strategy<Value = Member> {
    let kind = prop_oneof![
        4 => Just(b'0'),
        5 => Just(b'2'),
        2 => Just(b'5'),
        2 => Just(b'1'),
        1 => Just(b'3'),
        1 => Just(b'6'),
        1 => Just(b'7'),
        1 => any::<u8>(),
    ];
    (
        kind,
        wild_path(),
        prop::option::of(wild_path()),
        prop::collection::vec(any::<u8>(), 0..600),
        prop::option::weighted(0.1, any::<u64>()),
    )
        .prop_map(|(kind, name, link, data, claimed_size)| Member {
            kind,
            name,
            link,
            data,
            claimed_size,
        })
}

/// Mostly symlinks, some directories, files and hard links, all from
/// `chain_path`, and none that the unpacker refuses on sight (a name or a
/// target that climbs out when read alone): each member goes in, so that
/// sequences long enough to build a chain get unpacked.
fn chain_member() -> impl Strategy<Value = Member> {
    let kind = prop_oneof![
        6 => Just(b'2'),
        2 => Just(b'5'),
        2 => Just(b'0'),
        1 => Just(b'1'),
    ];
    (kind, chain_path(), chain_path())
        .prop_filter("refused on sight", |(kind, name, link)| {
            let parent = Path::new(name).parent().unwrap_or(Path::new(""));
            let target = match kind {
                b'2' => parent.join(link),
                _ => Path::new(link).to_path_buf(),
            };
            stays_inside(Path::new(name)) && stays_inside(&target)
        })
        .prop_map(|(kind, name, link)| Member {
            kind,
            name,
            link: Some(link),
            data: b"x".to_vec(),
            claimed_size: None,
        })
}

/// Whether a relative path, read without following anything, stays inside.
fn stays_inside(path: &Path) -> bool {
    let mut depth = 0i32;
    for component in path.components() {
        match component {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

fn archive() -> impl Strategy<Value = Archive> {
    (
        prop_oneof![
            1 => prop::collection::vec(wild_member(), 0..12),
            2 => prop::collection::vec(chain_member(), 0..12),
        ],
        prop_oneof![8 => Just(0usize), 1 => 0usize..2048],
        prop_oneof![3 => Just(u64::MAX), 1 => 0u64..8192],
    )
        .prop_map(|(members, truncate, limit)| Archive {
            members,
            truncate,
            limit,
        })
}

fn bytes(archive: &Archive, canary: &Path) -> Vec<u8> {
    let canary = canary.display().to_string();
    let fill = |s: &str| s.replace("{canary}", &canary);
    let names: Vec<(String, Option<String>)> = archive
        .members
        .iter()
        .map(|m| (fill(&m.name), m.link.as_deref().map(fill)))
        .collect();
    let entries: Vec<RawEntry> = archive
        .members
        .iter()
        .zip(&names)
        // The GNU header holds 100 bytes of name and of link.
        .filter(|(_, (name, link))| {
            name.len() <= 100 && link.as_ref().is_none_or(|l| l.len() <= 100)
        })
        .map(|(m, (name, link))| RawEntry {
            kind: EntryType::new(m.kind),
            name,
            link: link.as_deref(),
            data: &m.data,
            claimed_size: m.claimed_size,
        })
        .collect();
    let mut tar = raw_tar(&entries);
    tar.truncate(tar.len().saturating_sub(archive.truncate));
    tar
}

/// Every symlink below `root`, as paths relative to it.
fn symlinks(root: &Path, rel: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(root.join(rel)).unwrap() {
        let entry = entry.unwrap();
        let child = rel.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_symlink() {
            out.push(child);
        } else if kind.is_dir() {
            symlinks(root, &child, out);
        }
    }
}

fn check(archive: &Archive) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    let mut canary = Canary::plant(dir.path());
    canary.watch_root();
    let tar = bytes(archive, canary.dir());
    let _ = Unpacker::new(&root, archive.limit).unwrap().tar(&tar[..]);
    canary.assert_untouched("random archive");
    let mut links = Vec::new();
    symlinks(&root, Path::new(""), &mut links);
    let opened = Root::open(&root).unwrap();
    for link in links {
        if let Err(e) = opened.resolve(&link) {
            assert_ne!(
                refusal(&e),
                Some("resolves outside the directory"),
                "{} leads out of the root",
                link.display()
            );
        }
    }
}

#[test]
fn unpacking_random_archives_never_panics_or_touches_anything_beside_the_root() {
    let seconds: Option<u64> = std::env::var("STAGEBUILD_FUZZ_SECONDS")
        .ok()
        .map(|s| s.parse().expect("STAGEBUILD_FUZZ_SECONDS is a number"));
    let config = Config {
        cases: if seconds.is_some() { 512 } else { 128 },
        failure_persistence: None,
        ..Config::default()
    };
    let started = Instant::now();
    let runs = Cell::new(0u64);
    let mut failures = Vec::new();
    loop {
        let mut runner = match seconds {
            Some(_) => TestRunner::new(config.clone()),
            None => TestRunner::new_with_rng(
                config.clone(),
                TestRng::deterministic_rng(RngAlgorithm::ChaCha),
            ),
        };
        let result = runner.run(&archive(), |archive| {
            runs.set(runs.get() + 1);
            check(&archive);
            Ok(())
        });
        if let Err(e) = result {
            eprintln!("fuzz unpack: failure: {e}");
            failures.push(e.to_string());
        }
        match seconds {
            Some(limit) if started.elapsed() < Duration::from_secs(limit) => {}
            _ => break,
        }
    }
    println!(
        "fuzz unpack: {} runs, {} failures",
        runs.get(),
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn the_property_holds_for_a_known_chain() {
    let link = |name: &str, target: &str| Member {
        kind: b'2',
        name: name.into(),
        link: Some(target.into()),
        data: Vec::new(),
        claimed_size: None,
    };
    check(&Archive {
        members: vec![link("a", "."), link("b", "a/.."), link("c", "b/..")],
        truncate: 0,
        limit: u64::MAX,
    });
}

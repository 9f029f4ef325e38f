//! The azurelinux chain as the project ships it, without building it (that
//! takes hours: docs/chain.md, scripts/chain.sh): it plans every step in
//! order, shares the demo's kernel steps, and every source it uses is pinned
//! with a way to fetch it again.

use std::path::PathBuf;

use serde_json::Value;
use stagebuild::lock::Lock;
use stagebuild::step::Step;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `plan --json` of a target, against an empty state.
fn plan(target: &str) -> Vec<Value> {
    let state = tempfile::tempdir().unwrap();
    let out = assert_cmd::Command::cargo_bin("stagebuild")
        .unwrap()
        .arg("--project")
        .arg(repo())
        .arg("--state")
        .arg(state.path())
        .args(["plan", "--json", "--target", target])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    plan["steps"].as_array().unwrap().clone()
}

const HOST: &[&str] = &[
    "linux-headers",
    "kernel-i386",
    "kernel-x86_64",
    "cross-binutils",
    "cross-gcc-1",
    "chain-musl",
    "cross-gcc",
    "chain-busybox",
    "chain-make",
    "chain-bash",
    "chain-kexec-tools",
    "chain-binutils",
    "chain-gcc",
    "guest-initramfs",
];

const VM32: &[&str] = &[
    "zlib",
    "pcre2",
    "ncurses",
    "lua",
    "popt",
    "file",
    "libgpg-error",
    "libgcrypt",
    "pkgconf",
    "rpm",
    "rpm-check",
    "go-1.19",
    "comment-check",
    "kexec-x86_64",
];

#[test]
fn the_azurelinux_chain_plans_every_step_in_order_and_shares_the_demos_kernels() {
    let steps = plan("azurelinux");
    let listed: Vec<(&str, &str)> = steps
        .iter()
        .map(|s| (s["stage"].as_str().unwrap(), s["id"].as_str().unwrap()))
        .collect();
    let expected: Vec<(&str, &str)> = HOST
        .iter()
        .map(|s| ("host", *s))
        .chain(VM32.iter().map(|s| ("vm32", *s)))
        .chain([("vm64", "hop-check")])
        .collect();
    assert_eq!(listed, expected);
    assert!(steps.iter().all(|s| s["state"] == "to_build"), "{steps:?}");

    // The headers and kernels come first, with the demo's keys: a cache
    // that holds the demo's holds them.
    let demo = plan("demo");
    for (ours, theirs) in steps.iter().zip(&demo).take(3) {
        assert_eq!(ours["id"], theirs["id"]);
        assert_eq!(ours["key"], theirs["key"], "{}", ours["id"]);
    }
}

#[test]
fn every_source_of_the_chain_is_pinned_with_a_way_to_fetch_it() {
    let repo = repo();
    let lock = Lock::load(&repo.join("sources.lock")).unwrap();
    let mut inner = Vec::new();
    for id in HOST.iter().chain(VM32).chain(&["hop-check"]) {
        let step = Step::load(&repo.join(format!("steps/{id}.yaml")), &repo, &lock).unwrap();
        assert!(!step.description.trim().is_empty(), "{id}");
        for source in &step.definition.sources {
            let entry = lock.get(source).unwrap();
            assert!(
                entry.apt.is_some() || !entry.urls.is_empty(),
                "{source} has no way to be fetched"
            );
            assert!(entry.size > 0 && entry.sha256.len() == 64, "{source}");
        }
        inner.extend(
            step.definition
                .unpack
                .iter()
                .map(|(f, m)| format!("{id}: {f} {m}")),
        );
    }
    // Debian's gcc orig holds the real source as a tarball of its own.
    let member = "gcc-12_12.2.0.orig.tar.gz gcc-12-12.2.0/gcc-12.2.0-dfsg.tar.xz";
    assert_eq!(
        inner,
        ["cross-gcc-1", "cross-gcc", "chain-gcc"].map(|id| format!("{id}: {member}"))
    );
}

use super::*;
use std::path::{Path, PathBuf};

fn meta(key: &str) -> Meta {
    let inputs = KeyInputs {
        definition: "d".into(),
        sources: "s".into(),
        patches: "p".into(),
        files: "f".into(),
        runner: "r".into(),
        earlier: String::new(),
    };
    Meta {
        key: key.into(),
        step: "x".into(),
        name: "x".into(),
        version: "1".into(),
        stage: "host".into(),
        runner: "host".into(),
        inputs,
        manifest_sha256: String::new(),
        extras: Default::default(),
        built: None,
    }
}

#[test]
fn commit_then_load_and_detect_damage() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("checkpoints"), dir.path().join("tmp"));
    let out = dir.path().join("out");
    fs::create_dir_all(out.join("usr/bin")).unwrap();
    fs::write(out.join("usr/bin/tool"), b"binary").unwrap();

    let committed = store.commit(&out, None, meta("k1")).unwrap();
    assert!(!out.exists(), "the output is moved, not copied");
    assert!(store.exists("k1"));
    let loaded = store.load("k1").unwrap().unwrap();
    assert_eq!(loaded.manifest, committed.manifest);
    assert_eq!(loaded.manifest.len(), 3);

    fs::write(loaded.tree.join("usr/bin/tool"), b"binarx").unwrap();
    assert_eq!(
        store.load("k1").unwrap_err(),
        Corrupt("usr/bin/tool differs".into())
    );

    store.discard("k1").unwrap();
    assert!(store.load("k1").unwrap().is_none());
}

#[test]
fn a_meta_without_build_time_still_loads_and_one_with_it_keeps_it() {
    let mut old = serde_json::to_value(meta("k")).unwrap();
    assert!(old.get("built").is_none(), "absent when unknown: {old}");
    old.as_object_mut().unwrap().remove("built");
    let read: Meta = serde_json::from_value(old).unwrap();
    assert_eq!(read.built, None);
    let mut timed = meta("k");
    timed.built = Some(Built {
        runner: "vm (qemu)".into(),
        millis: 34_700,
    });
    let back: Meta = serde_json::from_slice(&serde_json::to_vec(&timed).unwrap()).unwrap();
    assert_eq!(back, timed);
}

#[test]
fn a_truncated_manifest_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("c"), dir.path().join("t"));
    let out = dir.path().join("out");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("f"), b"x").unwrap();
    store.commit(&out, None, meta("k")).unwrap();
    let manifest = store.dir("k").join("manifest.json");
    let bytes = fs::read(&manifest).unwrap();
    fs::write(&manifest, &bytes[..bytes.len() / 2]).unwrap();
    assert!(store.load("k").unwrap_err().0.contains("checksum"));
}

#[test]
fn an_output_whose_links_lead_out_is_committed_and_discarded_without_following_them() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("c"), dir.path().join("t"));
    let outside = dir.path().join("outside");
    fs::create_dir_all(outside.join("sub")).unwrap();
    fs::write(outside.join("sub/keep"), "keep").unwrap();
    let out = dir.path().join("out");
    fs::create_dir_all(&out).unwrap();
    symlink(&outside, out.join("abs")).unwrap();
    symlink(".", out.join("a")).unwrap();
    symlink("a/../outside/sub", out.join("up")).unwrap();
    let committed = store.commit(&out, None, meta("k")).unwrap();
    assert_eq!(
        committed.manifest.len(),
        3,
        "three links, nothing behind them"
    );
    assert!(store.load("k").unwrap().is_some());
    store.discard("k").unwrap();
    assert_eq!(fs::read(outside.join("sub/keep")).unwrap(), b"keep");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
}

/// Sets a file's modification time, as a careful forger (or a restore from
/// backup) would.
fn set_mtime(path: &Path, to: std::time::SystemTime) {
    let file = fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_times(fs::FileTimes::new().set_modified(to))
        .unwrap();
}

/// A checkpoint of one file last written an hour before its commit, so its
/// stamp is kept.
fn committed_with_a_settled_file(store: &Store, root: &Path) -> PathBuf {
    let out = root.join("out");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("lib.a"), b"archive").unwrap();
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    set_mtime(&out.join("lib.a"), hour_ago);
    store.commit(&out, None, meta("k")).unwrap();
    store.dir("k").join("tree/lib.a")
}

#[test]
fn a_load_trusting_stamps_rehashes_a_file_written_since_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("c"), dir.path().join("t"));
    let file = committed_with_a_settled_file(&store, dir.path());
    assert_eq!(
        crate::stamps::Stamps::read(&store.dir("k")).tree.len(),
        1,
        "a file older than the commit keeps its stamp"
    );
    assert!(store.load_trusting("k", Trust::Stamps).unwrap().is_some());
    // The same size, so only the content (and the time a write gives) differ.
    fs::write(&file, b"archivf").unwrap();
    assert_eq!(
        store.load_trusting("k", Trust::Stamps).unwrap_err(),
        Corrupt("lib.a differs".into())
    );
}

#[test]
fn only_a_full_load_finds_damage_that_kept_the_stamp() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("c"), dir.path().join("t"));
    let file = committed_with_a_settled_file(&store, dir.path());
    let before = fs::metadata(&file).unwrap().modified().unwrap();
    fs::write(&file, b"archivf").unwrap();
    set_mtime(&file, before);
    assert!(
        store.load_trusting("k", Trust::Stamps).unwrap().is_some(),
        "the stamp is taken on trust"
    );
    assert_eq!(
        store.load_trusting("k", Trust::Nothing).unwrap_err(),
        Corrupt("lib.a differs".into())
    );
}

#[test]
fn a_file_modified_in_the_tick_of_its_commit_is_hashed_on_every_load() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("c"), dir.path().join("t"));
    let out = dir.path().join("out");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("racy"), b"abc").unwrap();
    // Not before the commit by the kernel's clock: as if written in its tick.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    set_mtime(&out.join("racy"), later);
    store.commit(&out, None, meta("k")).unwrap();
    assert!(crate::stamps::Stamps::read(&store.dir("k")).tree.is_empty());
    let file = store.dir("k").join("tree/racy");
    fs::write(&file, b"abd").unwrap();
    set_mtime(&file, later);
    assert_eq!(
        store.load_trusting("k", Trust::Stamps).unwrap_err(),
        Corrupt("racy differs".into())
    );
}

//! Literal keys of a real project on disk, through the real loaders: any
//! change to how a key is derived (normalisation, any of its parts, the
//! chaining on outputs) changes one of these, and would invalidate every
//! user's checkpoints, so it must be deliberate. Each part of the first
//! step's key is pinned too, so such a change fails here by name.

use std::fs;
use std::path::Path;

use super::{KeyInputs, Keys, keys_with};
use crate::project::Project;

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// Step a, with a source, a patch and a file; step b, with none.
fn project(root: &Path) {
    write(
        root,
        "sources.lock",
        "version: 1\nsources:\n  - name: a-1.tar.gz\n    sha256: \
         0000000000000000000000000000000000000000000000000000000000000001\n    \
         size: 1\n    urls: [\"https://example.org/a-1.tar.gz\"]\n",
    );
    write(
        root,
        "steps/a.yaml",
        "name: a\nversion: \"1\"\ndescription: A.\nsources: [a-1.tar.gz]\n\
         patches: [fix.patch]\nfiles: [extra.conf]\nbuild: |\n  true\n",
    );
    write(root, "patches/a/fix.patch", "--- a/x\n+++ b/x\n");
    write(root, "files/a/extra.conf", "setting = 1\n");
    write(
        root,
        "steps/b.yaml",
        "name: b\nversion: \"2\"\ndescription: B.\nbuild: |\n  true\n",
    );
    write(
        root,
        "steps/targets/t.yaml",
        "name: t\nsource_date_epoch: 1672531200\nstages:\n  - name: host\n    \
         runner: host\n    steps: [a, b]\n",
    );
}

/// The keys of a and b, a's output given.
fn keys(root: &Path, output_of_a: &str) -> Vec<String> {
    let project = Project::open(root).unwrap();
    let chain = project.chain("t", &[]).unwrap();
    keys_with(&chain, &project.lock, |_| Some(output_of_a.into()))
}

/// The parts of a's key.
fn first_inputs(root: &Path) -> KeyInputs {
    let project = Project::open(root).unwrap();
    let chain = project.chain("t", &[]).unwrap();
    Keys::new(&chain, &project.lock).next()
}

#[test]
fn keys_of_a_fixed_project_are_pinned_and_each_input_moves_them() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    project(root);
    let pinned = keys(root, "out-a");
    assert_eq!(
        pinned,
        [
            "0a905e22e6ff2dd76459e2e6550408b921e6a7fd3412e4315b6d79f225a88f49".to_string(),
            "a6920360ec52201f6d38ec7671383043d44b020fc67a18b8136c59e42a4cd80c".to_string(),
        ]
    );
    // Each input moves the first key, and, its output unchanged, not the second.
    for (rel, text) in [
        ("files/a/extra.conf", "setting = 2\n"),
        ("patches/a/fix.patch", "--- a/y\n+++ b/y\n"),
    ] {
        let before = fs::read_to_string(root.join(rel)).unwrap();
        write(root, rel, text);
        let moved = keys(root, "out-a");
        assert_ne!(moved[0], pinned[0], "{rel}");
        assert_eq!(moved[1], pinned[1], "{rel}");
        write(root, rel, &before);
    }
    assert_eq!(keys(root, "out-a"), pinned);
    // Another output of a moves b's key.
    let other = keys(root, "out-a2");
    assert_eq!(other[0], pinned[0]);
    assert_ne!(other[1], pinned[1]);
}

#[test]
fn every_part_of_a_key_is_pinned_and_the_files_part_follows_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    project(root);
    let pinned = first_inputs(root);
    let parts = [
        ("definition", &pinned.definition),
        ("sources", &pinned.sources),
        ("patches", &pinned.patches),
        ("files", &pinned.files),
        ("runner", &pinned.runner),
    ];
    let expected = [
        "f5fee1608a3ed9ede18cea5450cdfacb0d02589072438dc50c419a83260f3570",
        "f6d2957fba5d2e7ab22722ee59ce6926a9778d38953a25d00d9e9b369d555819",
        "71dc5962075bf73f5e76eab42c10a811f514d2b73785eb1997f3b42ca7494b81",
        "9403324e410b233a2087599ce595a2397004eaa500bf1b796975757dae0de269",
        "b3ad78bca18e687280c6ee76bd4059c3806087f3afc26b5a9c7fcce339905013",
    ];
    for ((part, actual), want) in parts.iter().zip(expected) {
        assert_eq!(actual.as_str(), want, "the {part} part of the key moved");
    }
    // The first step sees no earlier output: the start of the chain.
    assert_eq!(
        pinned.earlier, "fccdf0103afde2570226d607ccecf5f28cd282171fcb9f95c6320efe8739fad3",
        "the earlier part of the first key moved"
    );
    // An extra file's content moves the files part, and only it.
    write(root, "files/a/extra.conf", "setting = 2\n");
    let changed = first_inputs(root);
    assert_ne!(changed.files, pinned.files);
    let others = |i: &KeyInputs| {
        (
            i.definition.clone(),
            i.sources.clone(),
            i.patches.clone(),
            i.runner.clone(),
        )
    };
    assert_eq!(others(&changed), others(&pinned));
    write(root, "files/a/extra.conf", "setting = 1\n");
    assert_eq!(first_inputs(root), pinned);
}

//! Each part of a step's cache key, pinned as a literal for a fixed project
//! read through the real loaders: a change to how any one part is derived
//! (the `files` input included) fails here by name, before it silently
//! invalidates every user's checkpoints. `plan::keys::pinned_keys` pins the keys
//! themselves.

use std::fs;
use std::path::Path;

use stagebuild::project::Project;

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

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
        "steps/targets/t.yaml",
        "name: t\nsource_date_epoch: 1672531200\nstages:\n  - name: host\n    \
         runner: host\n    steps: [a]\n",
    );
}

fn inputs(root: &Path) -> stagebuild::plan::KeyInputs {
    let project = Project::open(root).unwrap();
    let chain = project.chain("t", &[]).unwrap();
    stagebuild::plan::Keys::new(&chain, &project.lock).next()
}

#[test]
fn every_part_of_a_key_is_pinned_and_the_files_part_follows_the_files() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let pinned = inputs(dir.path());
    let parts = [
        ("definition", &pinned.definition),
        ("sources", &pinned.sources),
        ("patches", &pinned.patches),
        ("files", &pinned.files),
        ("runner", &pinned.runner),
    ];
    let expected = [
        (
            "definition",
            "f5fee1608a3ed9ede18cea5450cdfacb0d02589072438dc50c419a83260f3570",
        ),
        (
            "sources",
            "f6d2957fba5d2e7ab22722ee59ce6926a9778d38953a25d00d9e9b369d555819",
        ),
        (
            "patches",
            "71dc5962075bf73f5e76eab42c10a811f514d2b73785eb1997f3b42ca7494b81",
        ),
        (
            "files",
            "9403324e410b233a2087599ce595a2397004eaa500bf1b796975757dae0de269",
        ),
        (
            "runner",
            "b3ad78bca18e687280c6ee76bd4059c3806087f3afc26b5a9c7fcce339905013",
        ),
    ];
    for ((part, actual), (_, want)) in parts.iter().zip(expected) {
        assert_eq!(actual.as_str(), want, "the {part} part of the key moved");
    }
    // The first step sees no earlier output: the start of the chain.
    assert_eq!(
        pinned.earlier, "fccdf0103afde2570226d607ccecf5f28cd282171fcb9f95c6320efe8739fad3",
        "the earlier part of the first key moved"
    );

    // An extra file's content moves the files part, and only it.
    write(dir.path(), "files/a/extra.conf", "setting = 2\n");
    let changed = inputs(dir.path());
    assert_ne!(changed.files, pinned.files);
    assert_eq!(
        (
            &changed.definition,
            &changed.sources,
            &changed.patches,
            &changed.runner
        ),
        (
            &pinned.definition,
            &pinned.sources,
            &pinned.patches,
            &pinned.runner
        )
    );
    write(dir.path(), "files/a/extra.conf", "setting = 1\n");
    assert_eq!(inputs(dir.path()), pinned);
}

//! The pages around the step pages: the introduction with the chain's
//! diagram, a chapter per stage, the kernel hop, checkpoints and resume.

use super::diagram;
use super::markdown::{code, duration, link, size, table, text};
use super::model::{Book, StepInfo};
use super::page;
use crate::report::short;
use crate::target::RunnerKind;

pub fn stage_path(stage: &str) -> String {
    format!("stages/{stage}.md")
}

/// A step's description up to the end of its first sentence.
pub fn first_sentence(description: &str) -> String {
    let flat = description.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.find(". ") {
        Some(end) => flat[..=end].to_string(),
        None => flat,
    }
}

fn runs_on(step: &StepInfo) -> String {
    let cs = &step.chain_step;
    match (&cs.runner, &cs.vm) {
        (RunnerKind::Host, _) => "the host, one namespace sandbox per step".into(),
        (RunnerKind::Vm, Some(vm)) => {
            format!("a qemu guest per step, booting {}", code(&vm.kernel))
        }
        (RunnerKind::Vm, None) => "a qemu guest".into(),
    }
}

fn built_count(book: &Book) -> usize {
    book.steps.iter().filter(|s| s.built.is_some()).count()
}

pub fn introduction(book: &Book) -> String {
    let target = &book.chain.target;
    let mut md = format!("# The {} chain\n\n", text(&target.name));
    md += target.description.trim();
    md += "\n\n## The stages\n\n";
    let rows: Vec<Vec<String>> = book
        .stages()
        .iter()
        .map(|(stage, steps)| {
            let names: Vec<String> = steps
                .iter()
                .map(|s| link(s.id(), 0, &page::path(s.id())))
                .collect();
            vec![
                link(stage, 0, &stage_path(stage)),
                runs_on(steps[0]),
                names.join(", "),
            ]
        })
        .collect();
    md += &table(&["stage", "runs on", "steps"], &rows);
    md += "\n## The chain\n\nEach box is a step, in the order they run, and links to its page; a solid box is built, a dashed one is not yet.";
    if book
        .steps
        .iter()
        .any(|s| s.chain_step.step.definition.kexec.is_some())
    {
        md += " The orange arrow is the kernel hop.";
    }
    md += "\n\n";
    md += &diagram::svg(book, 0);
    md += "\n\n## About this book\n\n";
    md += &format!(
        "`stagebuild book` wrote it from the step files in `steps/`, the target `steps/targets/{name}.yaml`, `sources.lock`, and what the state directory knows: each checkpoint's manifest and build time, and the last audit's verdicts. {built} of {total} steps are built. Change a step file and build the book again: it cannot drift from the chain, because it is made from it.\n\n`stagebuild explain STEP --target {name}` shows a step's page in the terminal.\n",
        name = target.name,
        built = built_count(book),
        total = book.steps.len()
    );
    md
}

pub fn stage(book: &Book, name: &str, steps: &[&StepInfo]) -> String {
    let mut md = format!("# Stage {}\n\n", text(name));
    md += &format!("Runs on {}.", runs_on(steps[0]));
    if let Some(i) = book.steps.iter().position(|s| s.id() == steps[0].id())
        && i > 0
        && book.steps[i - 1].chain_step.step.definition.kexec.is_some()
    {
        md += &format!(
            " It starts in the kernel that {} jumped to: see {}.",
            link(
                book.steps[i - 1].id(),
                1,
                &page::path(book.steps[i - 1].id())
            ),
            link("the kernel hop", 1, "kernel-hop.md")
        );
    }
    md += "\n\n";
    if let Some(vm) = &steps[0].chain_step.vm {
        md += &format!(
            "Each step boots a fresh guest with {} MiB of memory on a root disk of {} MiB: an overlay on the previous step's disk, {}. The kernel command line is {}; a guest must announce itself within {} s and finish a step within {} s, unless the step sets its own `timeout`.\n\n",
            vm.memory,
            vm.disk,
            if vm.machine == name {
                "the first on a disk made from the earlier stages' outputs".to_string()
            } else {
                format!(
                    "the first continuing the disk of stage {}",
                    text(&vm.machine)
                )
            },
            code(&crate::runner::guest::command_line(&vm.append)),
            vm.boot_timeout,
            vm.step_timeout,
        );
    }
    let rows: Vec<Vec<String>> = steps
        .iter()
        .map(|s| {
            let state = match &s.built {
                None => "not built".to_string(),
                Some(b) => match &b.meta.built {
                    Some(t) => format!("built in {}", duration(t.millis)),
                    None => "built".to_string(),
                },
            };
            vec![
                link(s.id(), 1, &page::path(s.id())),
                text(&s.chain_step.step.definition.version),
                first_sentence(&s.chain_step.step.description),
                state,
            ]
        })
        .collect();
    md += &table(&["step", "version", "what", "state"], &rows);
    md
}

pub fn kernel_hop(book: &Book) -> Option<String> {
    let hop = book
        .steps
        .iter()
        .position(|s| s.chain_step.step.definition.kexec.is_some())?;
    let step = &book.steps[hop];
    let kexec = step.chain_step.step.definition.kexec.as_ref()?;
    let before = step.chain_step.vm.as_ref()?;
    let after = book.steps.get(hop + 1);
    let mut md = String::from("# The kernel hop\n\n");
    md += &format!(
        "The guest of stage {} boots {}. Its last step, {}, loads {} with `kexec` and jumps to it: no firmware and no reboot of the virtual machine, the same disks and the same console. {}\n\n",
        text(&step.chain_step.stage),
        code(&before.kernel),
        link(step.id(), 0, &page::path(step.id())),
        code(&kexec.kernel),
        match after {
            Some(next) => format!(
                "Stage {} then runs on the new kernel, on the disk the hop left.",
                link(
                    &next.chain_step.stage,
                    0,
                    &stage_path(&next.chain_step.stage)
                )
            ),
            None => String::new(),
        }
    );
    md += "qemu reports nothing when a guest kexecs. stagebuild learns of the new kernel when the guest agent starts again and announces what `uname -m` says. Each VM checkpoint records the kernel its guest ran when the checkpoint was taken:\n\n";
    let rows: Vec<Vec<String>> = book
        .steps
        .iter()
        .filter(|s| s.chain_step.runner == RunnerKind::Vm)
        .map(|s| {
            let kernel = match &s.built {
                None => "not built".to_string(),
                Some(b) => b.guest_kernel.as_deref().map(code).unwrap_or_default(),
            };
            vec![
                link(s.id(), 0, &page::path(s.id())),
                text(&s.chain_step.stage),
                kernel,
            ]
        })
        .collect();
    md += &table(&["step", "stage", "guest kernel at its checkpoint"], &rows);
    md += "\nSo a resume lands on the right side of the hop: a failure before it resumes from a checkpoint in the old kernel and hops again; a failure after it boots straight into the new kernel, from the disk of the last good step.\n";
    Some(md)
}

pub fn checkpoints(book: &Book) -> String {
    let name = &book.chain.target.name;
    let mut md = String::from("# Checkpoints and resume\n\n");
    md += "After every step, stagebuild commits the step's output directory as a checkpoint, under a cache key: a sha256 over the step's definition (not its description), its sources' checksums, its patches and files, its runner and stage, and the key of the step before it. A checkpoint holds the output tree, `manifest.json` (every file with its mode, size and sha256) and `meta.json` (the key's parts and, since stagebuild records it, how long the step took); a VM step's also keeps its guest's disk as a qcow2 overlay on the previous step's disk. A checkpoint is assembled in a staging directory and renamed into place, so it is whole or absent.\n\n";
    md += &format!(
        "`stagebuild run --target {name} --resume` walks the chain: each step whose checkpoint exists under its current key is restored, after its tree is checked against its manifest; the first that is missing or changed is built, and so is every step after it, because their keys include it. `stagebuild plan --target {name}` says which steps are done and why the others would be rebuilt.\n\nThis target's steps, as the state directory holds them now:\n\n"
    );
    let rows: Vec<Vec<String>> = book
        .steps
        .iter()
        .map(|s| {
            let (state, bytes) = match &s.built {
                None => ("not built".to_string(), String::new()),
                Some(b) => (
                    "checkpointed".to_string(),
                    size(b.files.iter().filter_map(|f| f.entry.size).sum()),
                ),
            };
            vec![
                link(s.id(), 0, &page::path(s.id())),
                code(short(&s.planned.key)),
                state,
                bytes,
            ]
        })
        .collect();
    md += &table(&["step", "key", "state", "output"], &rows);
    md
}

pub fn glossary() -> String {
    let terms: &[(&str, &str)] = &[
        (
            "audit",
            "`stagebuild audit` rebuilds every step from the same inputs in a deliberately different environment (build path, umask, locale, timezone, hostname, jobs, clock, directory order) and compares the output file by file.",
        ),
        (
            "cache key",
            "The sha256 that names a step's checkpoint. It covers everything that can change the step's output, including the key of the step before it.",
        ),
        (
            "checkpoint",
            "A step's committed output: its file tree, its manifest and its meta, under its cache key in `state/checkpoints/`.",
        ),
        (
            "initramfs",
            "A small root filesystem, packed with cpio, that the kernel unpacks into memory and runs before it mounts a disk.",
        ),
        (
            "kexec",
            "A Linux system call, and the tool that drives it, that loads a new kernel from the running one and jumps to it without a reboot.",
        ),
        (
            "manifest",
            "The list of every file a step produced, with its type, mode, size and sha256 (`manifest.json`).",
        ),
        (
            "mirror",
            "The local store of source files, by sha256 (`mirror/`), filled by `stagebuild mirror fetch`.",
        ),
        (
            "musl",
            "A small C library; linked statically, it gives programs that need nothing else to run.",
        ),
        (
            "overlay (qcow2)",
            "A disk image that records only the blocks that differ from the image it is based on; each VM step's disk is an overlay on the previous step's.",
        ),
        (
            "reproducible",
            "Built twice from the same inputs, a step gives the same bytes, whatever the machine, time or place.",
        ),
        (
            "runner",
            "What runs a step: `host` (a namespace sandbox on the build machine) or `vm` (a qemu guest).",
        ),
        (
            "SOURCE_DATE_EPOCH",
            "The time, set by the target, that builds use instead of the clock, so that dates in their output do not change.",
        ),
        (
            "stage",
            "A run of consecutive steps sharing a runner (and, for VMs, a guest kernel).",
        ),
        (
            "static",
            "An ELF program that contains all its code and needs no loader or shared library; a dynamic one names its loader (the interpreter).",
        ),
        (
            "step",
            "One build, described by one file under `steps/`: its sources, patches and commands.",
        ),
        (
            "sysroot",
            "Where a host step finds the earlier outputs of its stage, merged and read-only: `/sysroot`.",
        ),
        (
            "tcc",
            "The Tiny C Compiler: small and fast, enough to compile C packages inside the guest without gcc.",
        ),
    ];
    let mut md = String::from("# Glossary\n\n");
    for (term, meaning) in terms {
        md += &format!("- **{term}**: {meaning}\n");
    }
    md
}

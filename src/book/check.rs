//! `book --check`: every step says why it exists and why each of its
//! patches is applied, so that the chain stays teachable.

use crate::error::{IoContext, Result};
use crate::project::Project;
use crate::step::Step;

/// Each problem as `file:line: message`, in file order. A step file that
/// does not load is an error, as it is for every other command.
pub fn problems(project: &Project) -> Result<Vec<String>> {
    let dir = project.root.join("steps");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .io_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    paths.sort();
    let mut problems = Vec::new();
    for path in paths {
        let step = Step::load(&path, &project.root, &project.lock)?;
        let at = |line: Option<u64>| {
            let shown = path.strip_prefix(&project.root).unwrap_or(&path);
            match line {
                Some(line) => format!("{}:{line}", shown.display()),
                None => shown.display().to_string(),
            }
        };
        if step.description.trim().is_empty() {
            problems.push(format!(
                "{}: step {} has no description: say why it exists and what its choices mean",
                at(step.prose.description_line),
                step.name()
            ));
        }
        for (patch, (reason, line)) in step.patches.iter().zip(&step.prose.patch_reasons) {
            if reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
                problems.push(format!(
                    "{}: patch {} has no reason: list it as {{ file: {}, reason: ... }}",
                    at(*line),
                    patch.file,
                    patch.file
                ));
            }
        }
    }
    Ok(problems)
}

//! `needs:`: a step that names the earlier steps of its stage it uses sees
//! only those in its sysroot, and its key covers only their outputs. Which
//! steps come earlier is known only in a target's chain, so that is checked
//! here, once the chain is resolved, pointing at the entry in the step file.

use crate::error::{Error, Result};
use crate::project::ChainStep;
use crate::target::RunnerKind;

/// Each step's `needs:` names an earlier step of its own stage, in a host
/// stage: a guest's root disk holds every earlier output, so a step of a
/// VM stage cannot see fewer.
pub fn check_needs(steps: &[ChainStep]) -> Result<()> {
    for (index, chain_step) in steps.iter().enumerate() {
        let step = &chain_step.step;
        let needs = step.definition.needs.iter().zip(&step.needs_at);
        for (need, at) in needs {
            let bad = |message: String| Error::input(&step.path, at.clone(), message);
            if chain_step.runner != RunnerKind::Host {
                return Err(bad(format!(
                    "{}: needs: only steps of host stages may name what they see; in stage \
                     {:?} (runner {}) a step sees every earlier output on its guest's disk",
                    chain_step.id, chain_step.stage, chain_step.runner
                )));
            }
            let found = steps.iter().position(|s| s.id == *need);
            let message = match found {
                None => format!(
                    "{}: needs: {need} is not a step of this target",
                    chain_step.id
                ),
                Some(at) if at >= index => format!(
                    "{}: needs: {need} comes after it in the target; a step can only need \
                     earlier steps",
                    chain_step.id
                ),
                Some(at) if steps[at].stage != chain_step.stage => format!(
                    "{}: needs: {need} is in stage {:?}, not in {:?}; a host step sees only \
                     its own stage's outputs",
                    chain_step.id, steps[at].stage, chain_step.stage
                ),
                Some(_) => continue,
            };
            return Err(bad(message));
        }
    }
    Ok(())
}

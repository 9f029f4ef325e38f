//! An audit's headline: what it counted, never more. "Every step" is said
//! only when every step was rebuilt and matched; a step left out is counted
//! as not audited, with why, in every report.

use serde::{Deserialize, Serialize};

use super::StepAudit;

/// How many steps an audit looked at, and what it found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub steps: usize,
    /// Rebuilt and compared, or rebuilt and failed.
    pub audited: usize,
    pub reproducible: usize,
    /// Audited and not reproducible (a difference, or a failed rebuild).
    pub not_reproducible: usize,
    pub not_audited: usize,
    /// Why steps were not audited, each reason once, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_audited_because: Vec<String>,
    /// The sentence the reports lead with.
    pub headline: String,
}

impl Summary {
    pub fn of(steps: &[StepAudit], first_divergent: Option<&str>) -> Summary {
        let audited: Vec<&StepAudit> = steps.iter().filter(|s| s.skipped.is_none()).collect();
        let reproducible = audited.iter().filter(|s| s.reproducible).count();
        let mut because: Vec<String> = Vec::new();
        for why in steps.iter().filter_map(|s| s.skipped.as_ref()) {
            if !because.contains(why) {
                because.push(why.clone());
            }
        }
        let mut summary = Summary {
            steps: steps.len(),
            audited: audited.len(),
            reproducible,
            not_reproducible: audited.len() - reproducible,
            not_audited: steps.len() - audited.len(),
            not_audited_because: because,
            headline: String::new(),
        };
        summary.headline = summary.sentence(first_divergent);
        summary
    }

    /// Whether every step was audited and every one matched.
    pub fn all_reproducible(&self) -> bool {
        self.steps > 0 && self.reproducible == self.steps
    }

    fn sentence(&self, first_divergent: Option<&str>) -> String {
        if self.all_reproducible() {
            return format!(
                "Every step is reproducible: all {} were rebuilt and matched",
                self.steps
            );
        }
        let mut parts = vec![format!(
            "{} of {} steps reproducible",
            self.reproducible, self.steps
        )];
        if self.not_reproducible > 0 {
            let first = first_divergent.map_or_else(String::new, |s| format!(", first {s}"));
            parts.push(format!("{} not reproducible{first}", self.not_reproducible));
        }
        if self.not_audited > 0 {
            parts.push(format!(
                "{} not audited ({})",
                self.not_audited,
                self.not_audited_because.join("; ")
            ));
        }
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(id: &str, reproducible: bool, skipped: Option<&str>) -> StepAudit {
        StepAudit {
            reproducible,
            skipped: skipped.map(str::to_string),
            ..StepAudit::uncompared(id, "host")
        }
    }

    #[test]
    fn a_partial_audit_never_says_every_step() {
        let mut steps: Vec<StepAudit> = (0..10)
            .map(|i| step(&format!("h{i}"), true, None))
            .collect();
        for id in ["bzip2", "bzip2-check", "kexec-x86_64", "bzip2-x86_64"] {
            steps.push(step(id, false, Some("guest steps")));
        }
        let summary = Summary::of(&steps, None);
        assert_eq!(
            summary.headline,
            "10 of 14 steps reproducible, 4 not audited (guest steps)"
        );
        assert!(!summary.all_reproducible());
        assert_eq!((summary.audited, summary.not_audited), (10, 4));

        steps[3].reproducible = false;
        let summary = Summary::of(&steps, Some("h3"));
        assert_eq!(
            summary.headline,
            "9 of 14 steps reproducible, 1 not reproducible, first h3, 4 not audited (guest steps)"
        );

        let all: Vec<StepAudit> = (0..3).map(|i| step(&format!("h{i}"), true, None)).collect();
        let summary = Summary::of(&all, None);
        assert!(summary.all_reproducible());
        assert!(
            summary
                .headline
                .starts_with("Every step is reproducible: all 3")
        );
        assert!(!Summary::of(&[], None).headline.contains("Every"));
    }
}

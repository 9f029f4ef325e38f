//! The columns of `plan`'s table: as wide as the widest entry, up to a
//! limit past which an entry is cut with an ellipsis, so a long step name or
//! version never pushes its row out of line.

use crate::color::{Stream, Style, paint};
use crate::plan::{PlanRow, StepState};
use crate::report;

/// Widest a step id or a version may show before it is cut.
const MAX_ID: usize = 28;
const MAX_VERSION: usize = 32;

pub struct Columns {
    index: usize,
    id: usize,
    version: usize,
}

impl Columns {
    pub fn of(rows: &[PlanRow]) -> Columns {
        let widest = |f: fn(&PlanRow) -> usize| rows.iter().map(f).max().unwrap_or(0);
        Columns {
            index: widest(|r| r.index.to_string().len()).max(2),
            id: widest(|r| r.id.chars().count()).min(MAX_ID),
            version: widest(|r| r.version.chars().count()).min(MAX_VERSION),
        }
    }

    /// The row's aligned columns: index, id, version and short key.
    pub fn cells(&self, row: &PlanRow) -> String {
        format!(
            "{:>iw$}. {:<idw$} {:<vw$} {}",
            row.index,
            cut(&row.id, self.id),
            cut(&row.version, self.version),
            report::short(&row.key),
            iw = self.index,
            idw = self.id,
            vw = self.version,
        )
    }
}

/// A step's state, coloured like the run's progress: done as built, to
/// build as a note, invalidated as a warning.
pub fn state_label(state: &StepState) -> String {
    let style = match state {
        StepState::Done => Style::Good,
        StepState::ToBuild | StepState::MayBeKept { .. } => Style::Note,
        StepState::Invalidated { .. } => Style::Warning,
    };
    paint(Stream::Stdout, style, state.label())
}

/// `text`, at most `width` characters: a longer one keeps its start and
/// ends in `…`.
pub fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let kept: String = text.chars().take(width.saturating_sub(1)).collect();
    format!("{kept}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_short_text_and_ends_long_text_in_an_ellipsis() {
        assert_eq!(cut("0.9.27", 10), "0.9.27");
        assert_eq!(cut("0.9.27+git20200814", 10), "0.9.27+gi…");
        assert_eq!(cut("0.9.27+git20200814", 10).chars().count(), 10);
    }
}

//! Which steps of the chain a run takes: all, up to one (`--until`), or one
//! alone against the checkpoints before it (`--only`).

/// The steps a run takes, by their positions in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    All,
    /// `--until`: every step up to this one, then stop.
    Until(usize),
    /// `--only`: restore every step before this one (each must have a
    /// checkpoint), build this one, stop.
    Only(usize),
}

impl Scope {
    /// How many steps of a chain of `total` the walk takes.
    pub fn steps(self, total: usize) -> usize {
        match self {
            Scope::All => total,
            Scope::Until(last) | Scope::Only(last) => last + 1,
        }
    }
}

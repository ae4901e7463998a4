//! Reading rule files and running parse + check over them.
use std::path::PathBuf;

use crate::rules::diagnostics::Diagnostic;
use crate::rules::ruleset::RuleSet;
use crate::rules::source::Sources;

/// What to do with an `env("VAR")` whose variable is not set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvPolicy {
    /// A load error (E210): the service must not start without its secrets.
    Require,
    /// A warning (W103): `check`, `test` and `explain` need no secrets.
    Warn,
}

/// The outcome of loading a rule set.
pub struct Loaded {
    /// Every file read, for rendering diagnostics.
    pub sources: Sources,
    /// The rule set, only when there were no errors.
    pub ruleset: Option<RuleSet>,
    /// Every problem found, errors and warnings.
    pub diagnostics: Vec<Diagnostic>,
}

/// Loads rule files and folders.
pub fn load_paths(_paths: &[PathBuf], _policy: EnvPolicy) -> Loaded {
    todo!()
}

/// Parses and checks sources already read.
pub fn load_sources(_sources: Sources, _policy: EnvPolicy) -> Loaded {
    todo!()
}

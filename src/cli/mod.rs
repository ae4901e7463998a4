//! The command-line tools for rule authors, behind `main.rs`:
//! `check` (diagnostics), `test` (rule unit tests) and `explain` (one
//! classification with its reasons). Each returns the process exit code.

pub mod check;
pub mod explain;
pub mod rule_tests;

use std::process::ExitCode;

/// Exit code for success.
pub const OK: ExitCode = ExitCode::SUCCESS;

/// Exit code for "the input has problems" (errors, failed tests).
pub fn failed() -> ExitCode {
    ExitCode::from(1)
}

/// Output format of `check` and `explain`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people.
    Text,
    /// For tools.
    Json,
}

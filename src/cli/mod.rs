//! The command-line tools for rule authors, behind `main.rs`:
//! `check` (diagnostics), `test` (rule unit tests), `explain` (one
//! classification with its reasons) and `import` (SLOs from Sloth, Pyrra
//! and OpenSLO files as rules). Each returns the process exit code.

pub mod check;
pub mod deliveries;
pub mod explain;
pub mod import;
pub mod replay;
pub mod rule_tests;
pub mod serve;

use std::process::ExitCode;

/// Writes command output to stdout. A closed pipe (`sevroute check | head`)
/// is not an error worth a panic: the reader has what it wanted.
pub fn write_stdout(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

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

//! `sevroute check [PATH...]`: load a rule set and report every problem.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::{Format, OK, failed, write_stdout};
use crate::rules::{EnvPolicy, Loaded, load_paths};

/// Options of `check`.
pub struct CheckOptions {
    /// Rule folders or files; empty means `rules/`.
    pub paths: Vec<PathBuf>,
    /// Exit 1 on warnings too.
    pub deny_warnings: bool,
    /// Treat unset `env(...)` variables as errors, as the service does.
    pub require_env: bool,
    /// Output format.
    pub format: Format,
}

/// Runs `check`, printing diagnostics to stdout; returns the exit code.
pub fn run(options: &CheckOptions) -> ExitCode {
    let paths = if options.paths.is_empty() {
        vec![PathBuf::from("rules")]
    } else {
        options.paths.clone()
    };
    let policy = if options.require_env {
        EnvPolicy::Require
    } else {
        EnvPolicy::Warn
    };
    let loaded = load_paths(&paths, policy);
    let ok = passes(&loaded, options.deny_warnings);
    write_stdout(&render(&loaded, options.format, ok));
    if ok { OK } else { failed() }
}

/// Whether the check passes: no error, and no warning either when
/// warnings are denied. The exit code and the report's verdict (`"ok"` in
/// JSON, the summary line in text) both come from here.
fn passes(loaded: &Loaded, deny_warnings: bool) -> bool {
    loaded.error_count() == 0 && !(deny_warnings && loaded.warning_count() > 0)
}

/// The report of a load as `check` prints it without `--deny-warnings`;
/// other commands print it when their rule set does not check.
pub fn report(loaded: &Loaded, format: Format) -> String {
    render(loaded, format, passes(loaded, false))
}

/// The report, with the verdict `ok` computed by the caller.
fn render(loaded: &Loaded, format: Format, ok: bool) -> String {
    match format {
        Format::Json => {
            let diagnostics: Vec<_> = loaded
                .diagnostics
                .iter()
                .map(|d| d.to_json(&loaded.sources))
                .collect();
            let body = serde_json::json!({
                "ok": ok,
                "errors": loaded.error_count(),
                "warnings": loaded.warning_count(),
                "files": (0..loaded.sources.len()).map(|i| loaded.sources.name(i)).collect::<Vec<_>>(),
                "diagnostics": diagnostics,
            });
            format!("{body:#}\n")
        }
        Format::Text => {
            let mut out = loaded.render();
            let files = loaded.sources.len();
            let summary = match &loaded.ruleset {
                // Checked, yet not ok: only denied warnings do that.
                Some(_) if !ok => format!(
                    "refused: {} warning(s) in {files} file(s), and --deny-warnings denies them\n",
                    loaded.warning_count(),
                ),
                Some(rs) => format!(
                    "ok: {files} file(s), {} SLO(s), {} destination(s), {} rule(s); {} warning(s)\n",
                    rs.slos.len(),
                    rs.destinations.len(),
                    rs.rules.len(),
                    loaded.warning_count()
                ),
                None => format!(
                    "refused: {} error(s), {} warning(s) in {files} file(s)\n",
                    loaded.error_count(),
                    loaded.warning_count()
                ),
            };
            out.push_str(&summary);
            out
        }
    }
}

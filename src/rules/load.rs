//! Loading a rule set: read every `*.sev` file of the given folders (and
//! any files named directly), parse each, then check them together. The
//! only file I/O of the rules language lives here.

use std::fs;
use std::path::{Path, PathBuf};

use crate::rules::check::{EnvLookup, check};
use crate::rules::diagnostics::{Code, Diagnostic};
use crate::rules::parser::parse_file;
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
    /// Every problem found, errors and warnings, in the order found:
    /// problems reading files and folders first, then each file's syntax
    /// errors (files in rule-set order), then the checker's findings
    /// (grouped by what they are about, not by file).
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    /// Number of error diagnostics.
    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// Number of warning diagnostics.
    pub fn warning_count(&self) -> usize {
        self.diagnostics.len() - self.error_count()
    }

    /// One line per diagnostic, `file:line:col: error[E100]: message`,
    /// without the source snippet: for logs, where a snippet could carry
    /// a secret written inline in a rule file.
    pub fn summary_lines(&self) -> String {
        self.diagnostics
            .iter()
            .map(|d| {
                let level = if d.is_error() { "error" } else { "warning" };
                let place = d
                    .primary
                    .as_ref()
                    .map(|p| {
                        let (line, col) = self.sources.line_col(p.span.file, p.span.start);
                        format!("{}:{line}:{col}: ", self.sources.name(p.span.file))
                    })
                    .unwrap_or_default();
                format!("{place}{level}[{}]: {}", d.code, d.message)
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Every diagnostic rendered for a terminal, one after another (each
    /// rendering ends with a blank line).
    pub fn render(&self) -> String {
        self.diagnostics
            .iter()
            .map(|d| d.render(&self.sources))
            .collect()
    }
}

/// Loads the rule set made of `paths`: each folder contributes its `*.sev`
/// files (not recursive, sorted by name), each file itself. Environment
/// variables come from the process environment.
pub fn load_paths(paths: &[PathBuf], policy: EnvPolicy) -> Loaded {
    let mut sources = Sources::new();
    let mut diagnostics = Vec::new();
    for path in paths {
        if path.is_dir() {
            match sev_files(path) {
                Ok(files) if files.is_empty() => diagnostics.push(
                    Diagnostic::new(
                        Code::NoRuleFiles,
                        format!("no *.sev files in folder {}", path.display()),
                    )
                    .note("a rule set is every *.sev file in a folder"),
                ),
                Ok(files) => {
                    for file in files {
                        read_into(&file, &mut sources, &mut diagnostics);
                    }
                }
                Err(e) => diagnostics.push(Diagnostic::new(
                    Code::ReadFailed,
                    format!("cannot list folder {}: {e}", path.display()),
                )),
            }
        } else {
            read_into(path, &mut sources, &mut diagnostics);
        }
    }
    let env = |name: &str| std::env::var(name).ok();
    let mut loaded = load_sources_with_env(sources, policy, &env);
    // Reading problems come first: they explain later absences.
    diagnostics.append(&mut loaded.diagnostics);
    loaded.diagnostics = diagnostics;
    if loaded.error_count() > 0 {
        loaded.ruleset = None;
    }
    loaded
}

/// Parses and checks sources already read, with an injected environment.
pub fn load_sources_with_env(sources: Sources, policy: EnvPolicy, env: EnvLookup<'_>) -> Loaded {
    let mut diagnostics = Vec::new();
    let mut files = Vec::with_capacity(sources.len());
    for id in 0..sources.len() {
        let (file, mut diags) = parse_file(id, sources.text(id));
        diagnostics.append(&mut diags);
        files.push(file);
    }
    // A file with a syntax error lost the items or statements around it, so
    // checking what remains would report their absence as more errors
    // (an SLO "without" the objective that failed to parse). Every syntax
    // error is reported; the checker runs once they are fixed.
    if diagnostics.iter().any(Diagnostic::is_error) {
        return Loaded {
            sources,
            ruleset: None,
            diagnostics,
        };
    }
    let (ruleset, mut check_diags) = check(&files, policy, env);
    diagnostics.append(&mut check_diags);
    Loaded {
        sources,
        ruleset,
        diagnostics,
    }
}

fn sev_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "sev") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn read_into(path: &Path, sources: &mut Sources, diagnostics: &mut Vec<Diagnostic>) {
    match fs::read_to_string(path) {
        Ok(text) => {
            sources.add(path.display().to_string(), text);
        }
        Err(e) => diagnostics.push(Diagnostic::new(
            Code::ReadFailed,
            format!("cannot read rule file {}: {e}", path.display()),
        )),
    }
}

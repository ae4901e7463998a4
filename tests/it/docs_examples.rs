//! Keeps the rules-language documentation and the shipped rule set honest.
//!
//! - `docs/rules-errors.md` has one `## ID — title` section per diagnostic
//!   code, in code order, and each section's `sev` example really triggers
//!   its code (E110/E111, file-system errors, are described in a `text`
//!   block instead).
//! - Every `sev` block in `docs/rules.md` parses, and every block marked
//!   `sev,complete` loads as a rule set without errors.
//! - Every `sev` block in `docs/templates.md` loads, its templates with it.
//! - The shipped rule set in `rules/` checks with no diagnostic other than
//!   W103 (unset secrets), and its unit tests in `rules/tests/` pass.
//!
//! Environment variables are injected (`&|_| None`), never read from the
//! process, so the results do not depend on the machine.

use std::path::{Path, PathBuf};

use sevroute::cli::rule_tests;
use sevroute::rules::{Code, EnvPolicy, Loaded, Sources, load_paths, load_sources_with_env};

/// The codes whose example is a description of a file-system situation,
/// not a rule file.
const FILE_SYSTEM_CODES: &[&str] = &["E110", "E111"];

/// Syntax codes: a `sev` block in docs/rules.md must not produce them.
const SYNTAX_CODES: &[&str] = &["E100", "E101", "E102", "E103", "E104"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A fenced code block.
#[derive(Debug)]
struct Fence {
    /// The info string after the opening backticks, trimmed.
    info: String,
    /// The block's text, each line ending in a newline.
    text: String,
    /// One-based line of the opening fence.
    line: usize,
}

/// A `## ` heading and the fenced blocks up to the next one.
#[derive(Debug)]
struct Section {
    /// The heading text after `## `.
    heading: String,
    /// One-based line of the heading.
    line: usize,
    /// Fenced blocks inside the section.
    fences: Vec<Fence>,
}

/// Splits markdown into `## ` sections (text before the first one is
/// dropped), with their fenced blocks. Headings inside fences are text.
fn sections(markdown: &str) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    let mut open: Option<Fence> = None;
    for (i, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(fence) = open.as_mut() {
            if trimmed.trim_end() == "```" {
                let fence = open.take().expect("fence is open");
                if let Some(s) = sections.last_mut() {
                    s.fences.push(fence);
                }
            } else {
                fence.text.push_str(line);
                fence.text.push('\n');
            }
            continue;
        }
        if let Some(info) = trimmed.strip_prefix("```") {
            open = Some(Fence {
                info: info.trim().to_string(),
                text: String::new(),
                line: i + 1,
            });
        } else if let Some(heading) = line.strip_prefix("## ") {
            sections.push(Section {
                heading: heading.trim().to_string(),
                line: i + 1,
                fences: Vec::new(),
            });
        }
    }
    assert!(open.is_none(), "a fenced block is never closed");
    sections
}

/// Every fenced block of a markdown text, in order.
fn fences(markdown: &str) -> Vec<Fence> {
    // A leading pseudo-heading keeps blocks before the first `## `; it
    // shifts every line by one.
    sections(&format!("## (start)\n{markdown}"))
        .into_iter()
        .flat_map(|s| s.fences)
        .map(|f| Fence {
            line: f.line - 1,
            ..f
        })
        .collect()
}

/// `E100` from `E100 — syntax error: ...`, when the heading names a code.
fn code_heading(heading: &str) -> Option<(&str, &str)> {
    let (id, title) = heading.split_once(" — ")?;
    let looks_like_code = id.len() == 4
        && (id.starts_with('E') || id.starts_with('W'))
        && id[1..].chars().all(|c| c.is_ascii_digit());
    looks_like_code.then_some((id, title))
}

fn load_example(name: &str, text: &str, policy: EnvPolicy) -> Loaded {
    let mut sources = Sources::new();
    sources.add(name, text);
    load_sources_with_env(sources, policy, &|_| None)
}

fn codes_of(loaded: &Loaded) -> Vec<&'static str> {
    loaded.diagnostics.iter().map(|d| d.code.id()).collect()
}

#[test]
fn every_code_has_a_section_in_order_with_its_title() {
    let doc = read("docs/rules-errors.md");
    let documented: Vec<(String, String, usize)> = sections(&doc)
        .iter()
        .filter_map(|s| {
            code_heading(&s.heading).map(|(id, title)| (id.to_string(), title.to_string(), s.line))
        })
        .collect();
    let mut problems = Vec::new();
    for (id, _, line) in &documented {
        if !Code::ALL.iter().any(|c| c.id() == id) {
            problems.push(format!("line {line}: heading for unknown code {id}"));
        }
    }
    for code in Code::ALL {
        match documented.iter().find(|(id, _, _)| id == code.id()) {
            None => problems.push(format!("no `## {} — ` heading", code.id())),
            Some((_, title, line)) if title != code.title() => problems.push(format!(
                "line {line}: {} is titled {title:?}, the code says {:?}",
                code.id(),
                code.title()
            )),
            Some(_) => {}
        }
        let count = documented
            .iter()
            .filter(|(id, _, _)| id == code.id())
            .count();
        if count > 1 {
            problems.push(format!("{} has {count} headings", code.id()));
        }
    }
    let doc_order: Vec<&str> = documented.iter().map(|(id, _, _)| id.as_str()).collect();
    let code_order: Vec<&str> = Code::ALL.iter().map(|c| c.id()).collect();
    if problems.is_empty() && doc_order != code_order {
        problems.push(format!(
            "sections are not in code order:\n  doc:  {doc_order:?}\n  code: {code_order:?}"
        ));
    }
    assert!(
        problems.is_empty(),
        "docs/rules-errors.md:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_error_example_triggers_its_code() {
    let doc = read("docs/rules-errors.md");
    let mut problems = Vec::new();
    let mut checked = 0;
    for section in sections(&doc) {
        let Some((id, _)) = code_heading(&section.heading) else {
            continue;
        };
        let Some(code) = Code::ALL.iter().copied().find(|c| c.id() == id) else {
            // Reported by the heading test.
            continue;
        };
        let sev: Vec<&Fence> = section.fences.iter().filter(|f| f.info == "sev").collect();
        let text: Vec<&Fence> = section.fences.iter().filter(|f| f.info == "text").collect();
        if FILE_SYSTEM_CODES.contains(&id) {
            if !(sev.is_empty() && text.len() == 1) {
                problems.push(format!(
                    "{id} (line {}): expected exactly one `text` block and no `sev` block, found {} and {}",
                    section.line,
                    text.len(),
                    sev.len()
                ));
            }
            continue;
        }
        let [example] = sev.as_slice() else {
            problems.push(format!(
                "{id} (line {}): expected exactly one `sev` block, found {}",
                section.line,
                sev.len()
            ));
            continue;
        };
        let policy = if code == Code::MissingEnv {
            EnvPolicy::Require
        } else {
            EnvPolicy::Warn
        };
        let loaded = load_example(&format!("docs/rules-errors.md#{id}"), &example.text, policy);
        checked += 1;
        if !loaded.diagnostics.iter().any(|d| d.code == code) {
            problems.push(format!(
                "{id}: the example at line {} does not trigger it; it gives {:?}\n{}",
                example.line,
                codes_of(&loaded),
                loaded.render()
            ));
        }
    }
    assert!(checked > 0, "no examples found in docs/rules-errors.md");
    assert!(
        problems.is_empty(),
        "docs/rules-errors.md:\n{}",
        problems.join("\n")
    );
}

#[test]
fn complete_rule_sets_in_the_reference_load_without_errors() {
    let doc = read("docs/rules.md");
    let mut problems = Vec::new();
    let mut checked = 0;
    for fence in fences(&doc).iter().filter(|f| f.info == "sev,complete") {
        let loaded = load_example(
            &format!("docs/rules.md:{}", fence.line),
            &fence.text,
            EnvPolicy::Warn,
        );
        checked += 1;
        if loaded.error_count() > 0 || loaded.ruleset.is_none() {
            problems.push(format!(
                "the rule set at line {} does not load: {:?}\n{}",
                fence.line,
                codes_of(&loaded),
                loaded.render()
            ));
        }
    }
    assert!(checked > 0, "no `sev,complete` blocks in docs/rules.md");
    assert!(
        problems.is_empty(),
        "docs/rules.md:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_sev_snippet_in_the_reference_parses() {
    let doc = read("docs/rules.md");
    let mut problems = Vec::new();
    for fence in fences(&doc)
        .iter()
        .filter(|f| f.info == "sev" || f.info.starts_with("sev,"))
    {
        let loaded = load_example(
            &format!("docs/rules.md:{}", fence.line),
            &fence.text,
            EnvPolicy::Warn,
        );
        let syntax: Vec<_> = loaded
            .diagnostics
            .iter()
            .filter(|d| SYNTAX_CODES.contains(&d.code.id()))
            .collect();
        if !syntax.is_empty() {
            problems.push(format!(
                "the snippet at line {} does not parse:\n{}",
                fence.line,
                syntax
                    .iter()
                    .map(|d| d.render(&loaded.sources))
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/rules.md:\n{}",
        problems.join("\n")
    );
}

#[test]
fn template_examples_load_without_template_problems() {
    let doc = read("docs/templates.md");
    let mut checked = 0;
    for fence in fences(&doc).iter().filter(|f| f.info == "sev") {
        let loaded = load_example(
            &format!("docs/templates.md:{}", fence.line),
            &fence.text,
            EnvPolicy::Warn,
        );
        checked += 1;
        let codes = codes_of(&loaded);
        assert!(
            loaded.ruleset.is_some() && !codes.contains(&"W105"),
            "the example at docs/templates.md:{} has problems: {codes:?}\n{}",
            fence.line,
            loaded.render()
        );
        let ruleset = loaded.ruleset.as_ref().expect("loaded");
        assert!(
            !ruleset.templates.is_empty(),
            "the example at line {} has no template",
            fence.line
        );
    }
    assert!(checked > 0, "no `sev` blocks in docs/templates.md");
}

/// The shipped `*.sev` files, sorted by name as the loader reads them.
fn shipped_rule_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("rules"))
        .expect("rules/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sev"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.sev files in rules/");
    files
}

#[test]
fn shipped_rules_check_with_only_unset_secret_warnings() {
    // Through the real loader: whatever the process environment holds,
    // nothing but W103 may be reported.
    let loaded = load_paths(&[root().join("rules")], EnvPolicy::Warn);
    let unexpected: Vec<_> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.code != Code::EnvNotSet)
        .collect();
    assert!(
        unexpected.is_empty() && loaded.ruleset.is_some(),
        "rules/ does not check clean:\n{}",
        loaded.render()
    );

    // With every secret set, the service's policy reports nothing at all.
    let mut sources = Sources::new();
    for file in shipped_rule_files() {
        let text = std::fs::read_to_string(&file).expect("readable rule file");
        sources.add(file.display().to_string(), text);
    }
    let loaded = load_sources_with_env(sources, EnvPolicy::Require, &|_| {
        Some("test-secret".to_string())
    });
    assert!(
        loaded.diagnostics.is_empty() && loaded.ruleset.is_some(),
        "rules/ with every secret set:\n{}",
        loaded.render()
    );
}

#[test]
fn shipped_rule_tests_pass() {
    let dir = root().join("rules/tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("rules/tests/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.toml files in rules/tests/");
    let mut problems = Vec::new();
    for file in &files {
        match rule_tests::run_file(Path::new(file)) {
            Ok((totals, _)) if totals.failed == 0 && totals.passed > 0 => {}
            Ok((totals, out)) => problems.push(format!(
                "{}: {} passed, {} failed\n{out}",
                file.display(),
                totals.passed,
                totals.failed
            )),
            Err(e) => problems.push(format!("{}: {e:#}", file.display())),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

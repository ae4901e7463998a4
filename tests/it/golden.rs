//! Golden tests: each `tests/golden/NAME.sev` is checked and the rendered
//! output must equal `tests/golden/NAME.expected`. Set SEVROUTE_BLESS=1 to
//! rewrite the expected files after a deliberate change (then read the
//! diff before committing).

use std::fs;
use std::path::{Path, PathBuf};

use sevroute::cli::Format;
use sevroute::cli::check::report;
use sevroute::rules::{EnvPolicy, load_paths};

#[test]
fn rendered_diagnostics_match_the_golden_files() {
    let dir = Path::new("tests/golden");
    let mut cases: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sev"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 3,
        "golden cases missing in {}",
        dir.display()
    );
    let bless = std::env::var_os("SEVROUTE_BLESS").is_some();
    let mut mismatches = Vec::new();
    for case in &cases {
        // Paths are relative to the package root, so they render stably.
        let loaded = load_paths(std::slice::from_ref(case), EnvPolicy::Warn);
        let got = report(&loaded, Format::Text);
        let expected_path = case.with_extension("expected");
        if bless {
            fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            mismatches.push(format!(
                "--- {} expected\n{expected}\n--- got\n{got}",
                expected_path.display()
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

//! Fuzzes the rules parser: any bytes (read as lossy UTF-8) must parse
//! without panicking, every diagnostic must point inside the text on
//! character boundaries, and a file that parses cleanly must survive a
//! print/parse round trip unchanged (and print the same again).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sevroute::rules::parser::parse_file;
use sevroute::rules::printer::print_file;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (file, diags) = parse_file(0, &text);
    for d in &diags {
        let span = d.primary.as_ref().expect("parse diagnostics are located").span;
        assert!(span.start <= span.end && span.end <= text.len(), "{d:?}");
        assert!(text.is_char_boundary(span.start) && text.is_char_boundary(span.end), "{d:?}");
    }
    if diags.is_empty() {
        let printed = print_file(&file);
        let (again, diags) = parse_file(0, &printed);
        assert!(diags.is_empty(), "printed text does not parse: {diags:?}\n{printed}");
        assert_eq!(again, file, "round trip changed the AST:\n{printed}");
        assert_eq!(print_file(&again), printed, "printing is not idempotent");
    }
});

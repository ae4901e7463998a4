//! The parser of the rules language (`docs/grammar.ebnf`): nom 8 over
//! [`nom_locate::LocatedSpan`] so every AST node carries the [`Span`] it
//! came from. Keywords are contextual identifiers.
//!
//! Errors do not stop the parse. A bad item gives one diagnostic and
//! parsing resumes at the next top-level keyword that begins a line; a bad
//! statement inside an `slo`, `destination` or `severity` block gives one
//! diagnostic and parsing resumes at the next statement of that block, so
//! one run reports every independent mistake and keeps everything that
//! parsed.
//!
//! [`Span`]: crate::rules::source::Span

mod error;
mod expr;
mod items;
mod lexer;
mod recover;
#[cfg(test)]
pub(crate) mod tests;

use nom::Err;

use crate::rules::ast;
use crate::rules::diagnostics::Diagnostic;
use crate::rules::source::FileId;
use items::{Ctx, advance, item};
use lexer::{Input, ws};

pub use expr::MAX_NESTING;
pub(crate) use lexer::UNITS as DURATION_UNITS;

/// Parses one rule file. Returns every item that parsed (in file order)
/// and one diagnostic per bad item or statement (codes E100-E104). Never
/// panics, whatever `text` holds.
pub fn parse_file(file: FileId, text: &str) -> (ast::File, Vec<Diagnostic>) {
    let mut cx = Ctx {
        text,
        diags: Vec::new(),
    };
    let mut items = Vec::new();
    let mut i = Input::new_extra(text, file);
    loop {
        i = ws(i);
        if i.fragment().is_empty() {
            break;
        }
        let start = i.location_offset();
        let err = match item(&mut cx, i) {
            Ok((rest, it)) => {
                items.push(it);
                i = rest;
                continue;
            }
            Err(Err::Error(e) | Err::Failure(e)) => e,
            // Only streaming parsers ask for more input; ours are complete.
            Err(Err::Incomplete(_)) => break,
        };
        let err_pos = err.offset();
        cx.diags.push(err.into_diagnostic());
        i = advance(i, recover::item_sync(text, start, err_pos));
    }
    (ast::File { items }, cx.diags)
}

/// Parses a whole duration literal such as `5m` or `1h30m`, as written in
/// rule files; for command-line flags and rule test files.
pub fn parse_duration(text: &str) -> Option<u64> {
    let input = Input::new_extra(text.trim(), 0);
    match lexer::numeric(input) {
        Ok((rest, (lexer::NumLit::Duration(secs), _))) if rest.fragment().is_empty() => Some(secs),
        _ => None,
    }
}

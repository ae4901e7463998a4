//! Error recovery: after a failed item or statement, find where parsing
//! can sensibly resume so one mistake gives one diagnostic and the rest of
//! the file is still read. Scanning uses the raw tokenizer, so strings
//! (even unterminated ones, which end at the line break) and comments never
//! produce false resynchronisation points.

use super::lexer::{RawTok, TokKind, raw_token, skip_trivia};

/// Keywords that start a top-level item.
pub(crate) const TOP_LEVEL: [&str; 6] = [
    "slo",
    "destination",
    "severity",
    "rule",
    "otherwise",
    "group",
];

/// The kind of block whose statement failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BlockKind {
    /// `slo "name" { ... }`
    Slo,
    /// `destination "name" kind { ... }`: any identifier starts a setting.
    Destination,
    /// `severity SEVn { ... }`
    Severity,
}

impl BlockKind {
    /// Whether `word` can start a statement of this block.
    fn starts_statement(self, word: &str) -> bool {
        match self {
            BlockKind::Slo => ["objective", "period", "source"].contains(&word),
            BlockKind::Destination => true,
            BlockKind::Severity => [
                "page",
                "notify",
                "cadence",
                "ack",
                "roles",
                "fallback",
                "postmortem",
            ]
            .contains(&word),
        }
    }
}

/// Where to go after a bad statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sync {
    /// Parse the next statement (or the closing `}`) at this offset.
    Resume(usize),
    /// The block is unfinished; end it and parse the next item here.
    Abort(usize),
}

/// A token with its layout facts.
struct Tok<'a> {
    raw: RawTok,
    text: &'a str,
    /// First token on its line.
    line_start: bool,
    /// Line start in column 1 (not indented).
    col0: bool,
    /// The previous token was `;`.
    after_semi: bool,
}

/// Tokens of `text` from `from` (a token start), ending with one EOF token.
struct Scanner<'a> {
    text: &'a str,
    pos: usize,
    line_start: bool,
    after_semi: bool,
    done: bool,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str, from: usize) -> Self {
        // Only blanks may precede a line-starting token on its line; a
        // comment cannot (it runs to the end of the line).
        let before = &text.as_bytes()[..from.min(text.len())];
        let line_start = before
            .iter()
            .rev()
            .find(|c| !matches!(c, b' ' | b'\t' | b'\r'))
            .is_none_or(|&c| c == b'\n');
        Scanner {
            text,
            pos: from,
            line_start,
            after_semi: false,
            done: false,
        }
    }
}

impl<'a> Iterator for Scanner<'a> {
    type Item = Tok<'a>;

    fn next(&mut self) -> Option<Tok<'a>> {
        if self.done {
            return None;
        }
        let (pos, newline) = skip_trivia(self.text, self.pos);
        let raw = raw_token(self.text, pos);
        let text = &self.text[raw.start..raw.end];
        let tok = Tok {
            raw,
            text,
            line_start: self.line_start || newline,
            col0: raw.start == 0 || self.text.as_bytes()[raw.start - 1] == b'\n',
            after_semi: self.after_semi,
        };
        self.line_start = false;
        self.after_semi = text == ";";
        // Every non-EOF token is at least one byte, so this always advances.
        self.pos = raw.end.max(pos + 1);
        self.done = raw.kind == TokKind::Eof;
        Some(tok)
    }
}

fn is_top_level(tok: &Tok<'_>) -> bool {
    tok.raw.kind == TokKind::Ident && TOP_LEVEL.contains(&tok.text)
}

/// After an item failed: the offset of the next top-level keyword that
/// begins a line, at or after the error and after the item's start (so
/// parsing always advances), or the end of the file.
///
/// Braces are tracked from the item's start: inside an open block only an
/// unindented keyword counts, so an indented `group "x"` setting inside a
/// destination is not mistaken for an item.
pub(crate) fn item_sync(text: &str, item_start: usize, err_pos: usize) -> usize {
    let mut depth = 0i64;
    for tok in Scanner::new(text, item_start) {
        if tok.raw.kind == TokKind::Eof {
            return tok.raw.start;
        }
        let eligible = tok.raw.start >= err_pos && tok.raw.start > item_start;
        if eligible && tok.line_start && is_top_level(&tok) && (depth <= 0 || tok.col0) {
            return tok.raw.start;
        }
        match tok.text {
            "{" => depth += 1,
            "}" => depth -= 1,
            _ => {}
        }
    }
    text.len()
}

/// After a statement failed inside a `kind` block: resume at the next
/// statement keyword that starts a line or follows `;`, or at the `}`
/// closing the block; abort the block at a top-level keyword beginning a
/// line (the `}` is probably missing) or at the end of the file.
pub(crate) fn stmt_sync(text: &str, kind: BlockKind, stmt_start: usize, err_pos: usize) -> Sync {
    // Depth relative to the statement, so the `}` of a nested
    // `prometheus { ... }` does not end the enclosing block.
    let mut depth = 0i64;
    for tok in Scanner::new(text, stmt_start) {
        if tok.raw.kind == TokKind::Eof {
            return Sync::Abort(tok.raw.start);
        }
        // Aborting may stop at the failed statement itself (the block's
        // header was consumed, so the caller still advances); resuming the
        // block must move past it.
        if tok.raw.start >= err_pos
            && tok.line_start
            && is_top_level(&tok)
            && (kind != BlockKind::Destination || tok.col0)
        {
            return Sync::Abort(tok.raw.start);
        }
        if tok.raw.start >= err_pos && tok.raw.start > stmt_start {
            if (tok.line_start || tok.after_semi)
                && tok.raw.kind == TokKind::Ident
                && kind.starts_statement(tok.text)
            {
                return Sync::Resume(tok.raw.start);
            }
            if tok.text == "}" && depth <= 0 {
                return Sync::Resume(tok.raw.start);
            }
        }
        match tok.text {
            "{" => depth += 1,
            "}" => depth -= 1,
            _ => {}
        }
    }
    Sync::Abort(text.len())
}

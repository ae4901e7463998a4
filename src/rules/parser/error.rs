//! The parser's error type: the furthest position reached, the set of
//! things that would have been accepted there, and (for lexical problems
//! such as an unterminated string) a ready-made [`Diagnostic`]. It turns
//! into one `expected X, found Y` diagnostic pointing at the found token.

use nom::error::{ErrorKind, ParseError};

use super::lexer::{Input, TokKind, describe_token, raw_token, skip_trivia};
use crate::rules::diagnostics::{Code, Diagnostic};
use crate::rules::source::Span;
use crate::rules::suggest::closest;

/// Something the parser would have accepted at a position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expected {
    /// A keyword (a contextual identifier), such as `then` or `SEV1`.
    Kw(&'static str),
    /// A punctuation symbol such as `{` or `==`.
    Sym(&'static str),
    /// Any identifier.
    Ident,
    /// A destination setting's key.
    SettingKey,
    /// A quoted string.
    Str,
    /// A plain number.
    Number,
    /// A percentage such as `99.9%`.
    Percent,
    /// A duration such as `5m`.
    Duration,
    /// A string, number, percentage or duration.
    Literal,
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expected::Kw(s) | Expected::Sym(s) => write!(f, "`{s}`"),
            Expected::Ident => f.write_str("an identifier"),
            Expected::SettingKey => f.write_str("a setting name"),
            Expected::Str => f.write_str("a string"),
            Expected::Number => f.write_str("a number"),
            Expected::Percent => f.write_str("a percentage"),
            Expected::Duration => f.write_str("a duration"),
            Expected::Literal => f.write_str("a literal"),
        }
    }
}

/// A parse failure: the furthest position reached, what would have been
/// accepted there, and (via [`PError::found`]) the token found there.
/// Alternatives that fail at the same position merge their
/// expectations (`or`); the one that got further wins otherwise. Boxed so
/// results stay small: deep expressions recurse through many of them.
#[derive(Debug)]
pub(crate) struct PError<'a>(Box<Inner<'a>>);

#[derive(Debug)]
struct Inner<'a> {
    /// Where the failure happened (a token start, after trivia).
    at: Input<'a>,
    /// What would have been accepted there, in grammar order.
    expected: Vec<Expected>,
    /// A complete diagnostic for problems that are not "expected X".
    custom: Option<Box<Diagnostic>>,
    /// Extra hints for the expected/found diagnostic.
    notes: Vec<String>,
}

impl<'a> PError<'a> {
    /// `at` expected one thing.
    pub(crate) fn expected(at: Input<'a>, what: Expected) -> Self {
        Self::expected_any(at, &[what])
    }

    /// `at` expected any of several things.
    pub(crate) fn expected_any(at: Input<'a>, what: &[Expected]) -> Self {
        PError(Box::new(Inner {
            at,
            expected: what.to_vec(),
            custom: None,
            notes: Vec::new(),
        }))
    }

    /// A failure described by a finished diagnostic (lexical errors).
    pub(crate) fn custom(at: Input<'a>, diagnostic: Diagnostic) -> Self {
        PError(Box::new(Inner {
            at,
            expected: Vec::new(),
            custom: Some(Box::new(diagnostic)),
            notes: Vec::new(),
        }))
    }

    /// Adds a hint to the eventual diagnostic.
    pub(crate) fn with_note(mut self, note: impl Into<String>) -> Self {
        self.0.notes.push(note.into());
        self
    }

    /// Byte offset of the failure in the file.
    pub(crate) fn offset(&self) -> usize {
        self.0.at.location_offset()
    }

    /// The position the failure was recorded at.
    pub(crate) fn input(&self) -> Input<'a> {
        self.0.at
    }

    /// Keeps the furthest failure; at the same position, unions the
    /// expectations so the message lists every alternative.
    pub(crate) fn merge(mut self, other: Self) -> Self {
        // A ready-made diagnostic is always more precise than "expected".
        match (self.0.custom.is_some(), other.0.custom.is_some()) {
            (true, false) => return self,
            (false, true) => return other,
            _ => {}
        }
        let (a, b) = (self.offset(), other.offset());
        if a > b {
            return self;
        }
        if b > a {
            return other;
        }
        let other = *other.0;
        for e in other.expected {
            if !self.0.expected.contains(&e) {
                self.0.expected.push(e);
            }
        }
        self.0.notes.extend(other.notes);
        self
    }

    /// The token found where the failure happened: its span and how a
    /// message names it (`` `than` ``, `end of file`).
    pub(crate) fn found(&self) -> (Span, TokKind, String) {
        let at = self.0.at;
        let frag: &str = at.fragment();
        let tok = raw_token(frag, skip_trivia(frag, 0).0);
        let base = at.location_offset();
        let span = Span::new(at.extra, base + tok.start, base + tok.end);
        (
            span,
            tok.kind,
            frag.get(tok.start..tok.end).unwrap_or("").to_string(),
        )
    }

    /// The diagnostic for this failure: `expected X, found Y` at the token
    /// found, plus a "did you mean" note for a near-miss keyword.
    pub(crate) fn into_diagnostic(self) -> Diagnostic {
        let (span, kind, text) = self.found();
        let this = *self.0;
        if let Some(d) = this.custom {
            return *d;
        }
        let found = describe_token(&text, kind);
        let list = one_of(&this.expected);
        let (message, label) = if this.expected.is_empty() {
            (format!("unexpected {found}"), "unexpected here".to_string())
        } else {
            (
                format!("expected {list}, found {found}"),
                format!("expected {}", list.trim_start_matches("one of ")),
            )
        };
        let mut d = Diagnostic::new(Code::Syntax, message).at(span, label);
        if kind == TokKind::Ident
            && let Some(kw) = did_you_mean(&text, &this.expected)
        {
            d = d.note(format!("did you mean `{kw}`?"));
        }
        for n in this.notes {
            d = d.note(n);
        }
        d
    }
}

impl<'a> ParseError<Input<'a>> for PError<'a> {
    fn from_error_kind(input: Input<'a>, _kind: ErrorKind) -> Self {
        PError::expected_any(input, &[])
    }

    fn append(_input: Input<'a>, _kind: ErrorKind, other: Self) -> Self {
        other
    }

    fn or(self, other: Self) -> Self {
        self.merge(other)
    }
}

/// `x`, `x or y`, `one of x, y or z`.
fn one_of(items: &[Expected]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [a, b] => format!("{a} or {b}"),
        [init @ .., last] => {
            let init: Vec<String> = init.iter().map(|e| e.to_string()).collect();
            format!("one of {} or {last}", init.join(", "))
        }
    }
}

/// The expected keyword closest to `found`, if it is a plausible typo.
fn did_you_mean(found: &str, expected: &[Expected]) -> Option<&'static str> {
    closest(
        found,
        expected.iter().filter_map(|e| match *e {
            Expected::Kw(kw) => Some(kw),
            _ => None,
        }),
    )
}

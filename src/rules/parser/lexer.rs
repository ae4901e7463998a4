//! Lexical pieces of the rules language as nom parsers over [`Input`]:
//! trivia (whitespace and `#` comments), identifiers and contextual
//! keywords, symbols, strings with escapes, and numeric literals (numbers,
//! percentages, durations). Every token parser skips leading trivia first,
//! so a failure is reported at the start of the offending token.
//!
//! Also a raw token scanner ([`raw_token`]) that never fails, used to name
//! the token an error was found at and to resynchronise after errors.

use nom::{Err, IResult, Input as _};
use nom_locate::LocatedSpan;

use super::error::{Expected, PError};
use crate::rules::ast::{CmpOp, Name};
use crate::rules::diagnostics::{Code, Diagnostic};
use crate::rules::source::{FileId, Span};

/// Parser input: the rest of the file, its byte offset and the file id.
pub(crate) type Input<'a> = LocatedSpan<&'a str, FileId>;

/// Result of one of our parsers.
pub(crate) type PResult<'a, T> = IResult<Input<'a>, T, PError<'a>>;

/// The span of the first `len` bytes of `i`.
pub(crate) fn span_at(i: &Input<'_>, len: usize) -> Span {
    let start = i.location_offset();
    Span::new(i.extra, start, start + len)
}

/// Splits the first `len` bytes off `i` as a token.
fn token(i: Input<'_>, len: usize) -> (Input<'_>, Span) {
    (i.take_from(len), span_at(&i, len))
}

/// A recoverable failure: `i` expected `what`.
pub(crate) fn fail<'a, T>(i: Input<'a>, what: Expected) -> PResult<'a, T> {
    Err(Err::Error(PError::expected(i, what)))
}

/// A fatal failure carrying a finished diagnostic.
fn fatal<'a, T>(i: Input<'a>, d: Diagnostic) -> PResult<'a, T> {
    Err(Err::Failure(PError::custom(i, d)))
}

/// Skips whitespace and comments.
pub(crate) fn ws(i: Input<'_>) -> Input<'_> {
    let n = skip_trivia(i.fragment(), 0).0;
    if n == 0 { i } else { i.take_from(n) }
}

/// Offset after the trivia starting at `pos`, and whether it crossed a
/// newline. Comments run to (not including) the end of the line.
pub(crate) fn skip_trivia(s: &str, mut pos: usize) -> (usize, bool) {
    let b = s.as_bytes();
    let mut newline = false;
    while let Some(&c) = b.get(pos) {
        match c {
            b' ' | b'\t' | b'\r' => pos += 1,
            b'\n' => {
                newline = true;
                pos += 1;
            }
            b'#' => {
                pos = b[pos..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |k| pos + k)
            }
            _ => break,
        }
    }
    (pos, newline)
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident_continue(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Length of the identifier at the start of `s` (0 when there is none).
pub(crate) fn ident_len(s: &str) -> usize {
    let b = s.as_bytes();
    match b.first() {
        Some(&c) if is_ident_start(c) => {
            1 + b[1..].iter().take_while(|&&c| is_ident_continue(c)).count()
        }
        _ => 0,
    }
}

/// The identifier the next token is, if it is one (after trivia).
pub(crate) fn peek_ident<'a>(i: &Input<'a>) -> Option<&'a str> {
    let s: &'a str = ws(*i).into_fragment();
    let n = ident_len(s);
    (n > 0).then(|| &s[..n])
}

/// An identifier; on failure, reports `what` as expected.
pub(crate) fn ident_as<'a>(what: Expected) -> impl Fn(Input<'a>) -> PResult<'a, Name> {
    move |i| {
        let i = ws(i);
        let n = ident_len(i.fragment());
        if n == 0 {
            return fail(i, what);
        }
        let value = i.fragment()[..n].to_string();
        let (rest, span) = token(i, n);
        Ok((rest, Name { value, span }))
    }
}

/// Any identifier.
pub(crate) fn ident(i: Input<'_>) -> PResult<'_, Name> {
    ident_as(Expected::Ident)(i)
}

/// A contextual keyword: an identifier spelled exactly `word`.
pub(crate) fn kw<'a>(word: &'static str) -> impl Fn(Input<'a>) -> PResult<'a, Span> {
    move |i| {
        let i = ws(i);
        let n = ident_len(i.fragment());
        if n == 0 || &i.fragment()[..n] != word {
            return fail(i, Expected::Kw(word));
        }
        Ok(token(i, n))
    }
}

/// A punctuation symbol.
pub(crate) fn sym<'a>(s: &'static str) -> impl Fn(Input<'a>) -> PResult<'a, Span> {
    move |i| {
        let i = ws(i);
        if !i.fragment().starts_with(s) {
            return fail(i, Expected::Sym(s));
        }
        Ok(token(i, s.len()))
    }
}

/// A quoted string: the decoded value and the span of the whole token.
pub(crate) fn string(i: Input<'_>) -> PResult<'_, Name> {
    let i = ws(i);
    let s: &str = i.fragment();
    if !s.starts_with('"') {
        return fail(i, Expected::Str);
    }
    let unterminated = || {
        let d = Diagnostic::new(Code::UnterminatedString, "unterminated string")
            .at(span_at(&i, 1), "this string is never closed")
            .note("a string ends with `\"` on the same line; write a line break as `\\n`");
        fatal(i, d)
    };
    let bad_escape = |from: usize, to: usize, why: &str| {
        let start = i.location_offset();
        let span = Span::new(i.extra, start + from, start + to);
        let text = printable(&s[from..to], 24);
        let d = Diagnostic::new(
            Code::BadEscape,
            format!("invalid escape `{text}` in string: {why}"),
        )
        .at(span, "invalid escape")
        .note("valid escapes are \\\" \\\\ \\n \\t \\r and \\u{HEX}");
        fatal(i, d)
    };
    let mut value = String::new();
    let mut pos = 1;
    loop {
        let Some(c) = s[pos..].chars().next() else {
            return unterminated();
        };
        match c {
            '"' => {
                let (rest, span) = token(i, pos + 1);
                return Ok((rest, Name { value, span }));
            }
            '\n' => return unterminated(),
            '\\' => {
                let esc = pos;
                pos += 1;
                let Some(e) = s[pos..].chars().next() else {
                    return unterminated();
                };
                pos += e.len_utf8();
                match e {
                    '\n' => return unterminated(),
                    '"' => value.push('"'),
                    '\\' => value.push('\\'),
                    'n' => value.push('\n'),
                    't' => value.push('\t'),
                    'r' => value.push('\r'),
                    'u' => match unicode_escape(&s[pos..]) {
                        Ok((ch, used)) => {
                            value.push(ch);
                            pos += used;
                        }
                        Err((used, why)) => return bad_escape(esc, pos + used, why),
                    },
                    _ => return bad_escape(esc, pos, "unknown escape"),
                }
            }
            c => {
                value.push(c);
                pos += c.len_utf8();
            }
        }
    }
}

/// Decodes the `{HEX}` after `\u`: the character and the bytes used, or
/// the bytes to underline and why it is invalid.
fn unicode_escape(rest: &str) -> Result<(char, usize), (usize, &'static str)> {
    if !rest.starts_with('{') {
        return Err((0, "`\\u` must be followed by `{HEX}`"));
    }
    let hex = rest[1..].bytes().take_while(u8::is_ascii_hexdigit).count();
    if !rest[1 + hex..].starts_with('}') {
        return Err((1 + hex, "expected hex digits and a closing `}`"));
    }
    let used = hex + 2;
    if hex == 0 {
        return Err((used, "no hex digits"));
    }
    if hex > 6 {
        return Err((used, "at most 6 hex digits"));
    }
    u32::from_str_radix(&rest[1..1 + hex], 16)
        .ok()
        .and_then(char::from_u32)
        .map(|c| (c, used))
        .ok_or((used, "not a Unicode scalar value"))
}

/// A numeric literal, by kind.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum NumLit {
    /// `14.4`
    Number(f64),
    /// `99.9%`: the number before `%`.
    Percent(f64),
    /// `1h30m`, in seconds.
    Duration(u64),
}

/// Seconds per duration unit.
pub(crate) const UNITS: [(&str, u64); 5] = [
    ("w", 604_800),
    ("d", 86_400),
    ("h", 3_600),
    ("m", 60),
    ("s", 1),
];

/// A number, percentage or duration. A malformed one (`5x`, `1.5h`, `1.`,
/// or too large) is a fatal E103/E104 at the token.
pub(crate) fn numeric(i: Input<'_>) -> PResult<'_, (NumLit, Span)> {
    let i = ws(i);
    let s: &str = i.fragment();
    let b = s.as_bytes();
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let int = digits(0);
    if int == 0 {
        return fail(i, Expected::Literal);
    }
    let mut end = int;
    let mut fraction = false;
    if b.get(end) == Some(&b'.') {
        let frac = digits(end + 1);
        // `1.` or `1.2.3`: a number is never followed by `.` in the grammar.
        let run = end
            + 1
            + frac
            + b[end + 1 + frac..]
                .iter()
                .take_while(|c| c.is_ascii_digit() || **c == b'.')
                .count();
        if frac == 0 || b.get(end + 1 + frac) == Some(&b'.') {
            let text = printable(&s[..run], 24);
            let d = Diagnostic::new(Code::BadNumber, format!("invalid number `{text}`"))
                .at(span_at(&i, run), "not a number")
                .note("a number is digits with an optional fraction, such as `14` or `14.4`");
            return fatal(i, d);
        }
        end += 1 + frac;
        fraction = true;
    }
    let too_large = |len: usize, what: &str| {
        let text = printable(&s[..len], 24);
        let d = Diagnostic::new(Code::BadNumber, format!("{what} `{text}` is too large"))
            .at(span_at(&i, len), "too large");
        fatal(i, d)
    };
    if b.get(end) == Some(&b'%') {
        let v: f64 = s[..end].parse().unwrap_or(f64::INFINITY);
        if !v.is_finite() {
            return too_large(end + 1, "percentage");
        }
        let (rest, span) = token(i, end + 1);
        return Ok((rest, (NumLit::Percent(v), span)));
    }
    let suffix = b[end..]
        .iter()
        .take_while(|&&c| is_ident_continue(c))
        .count();
    if suffix == 0 {
        let v: f64 = s[..end].parse().unwrap_or(f64::INFINITY);
        if !v.is_finite() {
            return too_large(end, "number");
        }
        let (rest, span) = token(i, end);
        return Ok((rest, (NumLit::Number(v), span)));
    }
    let len = end + suffix;
    let text = &s[..len];
    let result = if fraction {
        Err(fraction_problem(text))
    } else {
        duration_secs(text)
    };
    match result {
        Ok(secs) => {
            let (rest, span) = token(i, len);
            Ok((rest, (NumLit::Duration(secs), span)))
        }
        Err((why, hint)) => {
            let shown = printable(text, 24);
            let d = Diagnostic::new(
                Code::BadDuration,
                format!("invalid duration `{shown}`: {why}"),
            )
            .at(span_at(&i, len), why.clone())
            .note(hint);
            fatal(i, d)
        }
    }
}

/// Why `1.5h` is not a duration, with the whole-unit spelling when exact.
fn fraction_problem(text: &str) -> (String, String) {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let why = "a duration takes whole numbers".to_string();
    let exact = UNITS
        .iter()
        .find(|(u, _)| *u == unit)
        .and_then(|(_, mult)| {
            let secs = num.parse::<f64>().ok()? * *mult as f64;
            (secs.fract() == 0.0 && secs < 1e15)
                .then(|| crate::rules::printer::print_duration(secs as u64))
        });
    let hint = match exact {
        Some(d) => format!("combine whole units instead, such as `{d}`"),
        None => "combine whole units instead, such as `1h30m`".to_string(),
    };
    (why, hint)
}

/// Seconds in a duration token such as `1h30m`, or what is wrong with it.
fn duration_secs(text: &str) -> Result<u64, (String, String)> {
    let units_hint = || "units are s, m, h, d and w; combine them as in `1h30m`".to_string();
    let b = text.as_bytes();
    let mut pos = 0;
    let mut total: u64 = 0;
    let too_large = || {
        (
            "too large".to_string(),
            "the longest duration is about 584 billion years".to_string(),
        )
    };
    while pos < b.len() {
        let n = b[pos..].iter().take_while(|c| c.is_ascii_digit()).count();
        let unit_len = b[pos + n..]
            .iter()
            .take_while(|c| !c.is_ascii_digit())
            .count();
        let unit = &text[pos + n..pos + n + unit_len];
        if n == 0 {
            let why = if UNITS.iter().any(|(u, _)| *u == unit) {
                format!("missing number before `{unit}`")
            } else {
                format!("unknown unit `{}`", printable(unit, 12))
            };
            return Err((why, units_hint()));
        }
        let digits = &text[pos..pos + n];
        if unit_len == 0 {
            return Err((
                format!("missing unit after `{}`", printable(digits, 12)),
                units_hint(),
            ));
        }
        let Some(&(_, mult)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err((
                format!("unknown unit `{}`", printable(unit, 12)),
                units_hint(),
            ));
        };
        let count: u64 = digits.parse().map_err(|_| too_large())?;
        total = count
            .checked_mul(mult)
            .and_then(|secs| total.checked_add(secs))
            .ok_or_else(too_large)?;
        pos += n + unit_len;
    }
    Ok(total)
}

/// `text` shortened to `max` characters (with `…`), control characters
/// escaped, for quoting in a message.
pub(crate) fn printable(text: &str, max: usize) -> String {
    let long = text.chars().nth(max).is_some();
    let mut out = String::new();
    for (n, c) in text.chars().enumerate() {
        if long && n + 1 >= max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// Kind of a raw token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokKind {
    /// An identifier or keyword.
    Ident,
    /// A string, possibly unterminated (then it ends before the newline).
    Str,
    /// A number, percentage or duration, possibly malformed.
    Num,
    /// A symbol or any other single character.
    Sym,
    /// End of file.
    Eof,
}

/// A raw token: kind and byte range in the scanned text.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawTok {
    /// What it is.
    pub kind: TokKind,
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

/// The token starting at `pos` (which must follow any trivia). Never fails:
/// every input splits into tokens, so recovery always makes progress.
pub(crate) fn raw_token(s: &str, mut pos: usize) -> RawTok {
    while pos < s.len() && !s.is_char_boundary(pos) {
        pos += 1;
    }
    let b = s.as_bytes();
    let tok = |kind, end| RawTok {
        kind,
        start: pos,
        end,
    };
    let Some(&c) = b.get(pos) else {
        return tok(TokKind::Eof, pos);
    };
    if is_ident_start(c) {
        return tok(TokKind::Ident, pos + ident_len(&s[pos..]));
    }
    if c.is_ascii_digit() {
        let mut end = pos + b[pos..].iter().take_while(|c| c.is_ascii_digit()).count();
        if b.get(end) == Some(&b'.') && b.get(end + 1).is_some_and(u8::is_ascii_digit) {
            end += 1 + b[end + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
        }
        if b.get(end) == Some(&b'%') {
            end += 1;
        } else {
            end += b[end..]
                .iter()
                .take_while(|&&c| is_ident_continue(c))
                .count();
        }
        return tok(TokKind::Num, end);
    }
    if c == b'"' {
        // Only ASCII bytes matter here, and they never occur inside a
        // multi-byte character, so stepping bytewise is safe.
        let mut p = pos + 1;
        while let Some(&c) = b.get(p) {
            match c {
                b'"' => return tok(TokKind::Str, p + 1),
                b'\n' => break,
                b'\\' if b.get(p + 1).is_some_and(|&c| c != b'\n') => p += 2,
                _ => p += 1,
            }
        }
        while !s.is_char_boundary(p) {
            p += 1;
        }
        return tok(TokKind::Str, p.min(s.len()));
    }
    for op in CmpOp::ALL {
        if s[pos..].starts_with(op.symbol()) {
            return tok(TokKind::Sym, pos + op.symbol().len());
        }
    }
    let len = s[pos..].chars().next().map_or(1, char::len_utf8);
    tok(TokKind::Sym, pos + len)
}

/// How a found token is named in a message: `` `than` ``, `` `"long str…"` ``
/// or `end of file`.
pub(crate) fn describe_token(text: &str, kind: TokKind) -> String {
    match kind {
        TokKind::Eof => "end of file".to_string(),
        TokKind::Str if text.chars().count() > 24 => {
            let head: String = text.chars().take(20).collect();
            format!("`{}…\"`", printable(&head, 24))
        }
        _ => {
            let t = printable(text, 24);
            if t.contains('`') {
                format!("`` {t} ``")
            } else {
                format!("`{t}`")
            }
        }
    }
}

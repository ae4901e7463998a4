//! Top-level items and the statements of their blocks. Block bodies of
//! `slo`, `destination` and `severity` recover statement by statement (see
//! [`super::recover`]); everything else fails the whole item.

use nom::branch::alt;
use nom::combinator::{cut, map, opt};
use nom::multi::many0;
use nom::sequence::preceded;
use nom::{Err, Input as _, Parser};

use super::error::{Expected, PError};
use super::expr::expr;
use super::lexer::{
    Input, NumLit, PResult, fail, ident, ident_as, kw, numeric, peek_ident, raw_token, string, sym,
    ws,
};
use super::recover::{BlockKind, Sync, TOP_LEVEL, stmt_sync};
use crate::model::Severity;
use crate::rules::ast::*;
use crate::rules::diagnostics::Diagnostic;
use crate::rules::source::Span;

/// State shared by the item parsers: the whole text (for resynchronising)
/// and the diagnostics recorded by statement-level recovery.
pub(crate) struct Ctx<'a> {
    /// The whole file.
    pub text: &'a str,
    /// Problems found so far, in order.
    pub diags: Vec<Diagnostic>,
}

/// Moves `i` forward to the absolute byte offset `to` (not before `i`).
pub(crate) fn advance(i: Input<'_>, to: usize) -> Input<'_> {
    let n = to
        .saturating_sub(i.location_offset())
        .min(i.fragment().len());
    i.take_from(n)
}

/// One top-level item, chosen by its keyword.
pub(crate) fn item<'a>(cx: &mut Ctx<'a>, i: Input<'a>) -> PResult<'a, Item> {
    match peek_ident(&i) {
        Some("slo") => slo(cx, i),
        Some("destination") => destination(cx, i),
        Some("severity") => severity(cx, i),
        Some("rule") => map(rule, Item::Rule).parse(i),
        Some("otherwise") => map(otherwise, Item::Otherwise).parse(i),
        Some("group") => map(group, Item::Group).parse(i),
        _ => {
            let expected = TOP_LEVEL.map(Expected::Kw);
            Err(Err::Error(PError::expected_any(ws(i), &expected)))
        }
    }
}

/// A percentage such as `99.9%`.
pub(crate) fn percent(i: Input<'_>) -> PResult<'_, PercentLit> {
    match numeric(i) {
        Ok((rest, (NumLit::Percent(percent), span))) => Ok((rest, PercentLit { percent, span })),
        Ok(_) | Err(Err::Error(_)) => fail(ws(i), Expected::Percent),
        Err(e) => Err(e),
    }
}

/// A duration such as `1h30m`.
pub(crate) fn duration(i: Input<'_>) -> PResult<'_, DurationLit> {
    match numeric(i) {
        Ok((rest, (NumLit::Duration(secs), span))) => Ok((rest, DurationLit { secs, span })),
        Ok(_) | Err(Err::Error(_)) => fail(ws(i), Expected::Duration),
        Err(e) => Err(e),
    }
}

/// `SEV1`, `SEV2` or `SEV3`.
pub(crate) fn sev(i: Input<'_>) -> PResult<'_, SeverityLit> {
    let expected = || {
        PError::expected_any(
            ws(i),
            &[
                Expected::Kw("SEV1"),
                Expected::Kw("SEV2"),
                Expected::Kw("SEV3"),
            ],
        )
    };
    let (rest, name) = ident(i).map_err(|_| Err::Error(expected()))?;
    match Severity::parse(&name.value) {
        Some(severity) => Ok((
            rest,
            SeverityLit {
                severity,
                span: name.span,
            },
        )),
        None => Err(Err::Error(expected())),
    }
}

/// `"a", "b"`: at least one string.
fn string_list(i: Input<'_>) -> PResult<'_, Vec<Name>> {
    let (i, (first, more)) = (string, many0(preceded(sym(","), cut(string)))).parse(i)?;
    Ok((i, std::iter::once(first).chain(more).collect()))
}

/// `a, b`: at least one identifier.
fn ident_list(i: Input<'_>) -> PResult<'_, Vec<Name>> {
    let (i, (first, more)) = (ident, many0(preceded(sym(","), cut(ident)))).parse(i)?;
    Ok((i, std::iter::once(first).chain(more).collect()))
}

fn last_span(names: &[Name], or: Span) -> Span {
    names.last().map_or(or, |n| n.span)
}

/// The statements of a block after its `{`, up to and including `}`.
/// A bad statement is recorded in `cx` and skipped (see [`stmt_sync`]);
/// returns the rest, the good statements and where the block ends.
fn block<'a, T>(
    cx: &mut Ctx<'a>,
    mut i: Input<'a>,
    open: Span,
    kind: BlockKind,
    mut stmt: impl FnMut(Input<'a>) -> PResult<'a, T>,
    stmt_span: fn(&T) -> Span,
) -> (Input<'a>, Vec<T>, usize) {
    let mut stmts = Vec::new();
    let mut end = open.end;
    loop {
        let t = ws(i);
        if let Ok((rest, close)) = sym("}")(t) {
            return (rest, stmts, close.end);
        }
        let start = t.location_offset();
        let err = match stmt(t) {
            Ok((rest, s)) => {
                end = stmt_span(&s).end;
                stmts.push(s);
                i = sym(";")(rest).map_or(rest, |(r, _)| r);
                continue;
            }
            Err(Err::Error(e)) => e.merge(PError::expected(t, Expected::Sym("}"))),
            Err(Err::Failure(e)) => e,
            Err(Err::Incomplete(_)) => PError::expected(t, Expected::Sym("}")),
        };
        let err_pos = err.offset();
        cx.diags.push(err.into_diagnostic());
        match stmt_sync(cx.text, kind, start, err_pos) {
            Sync::Resume(to) => i = advance(t, to),
            Sync::Abort(to) => return (advance(t, to), stmts, end),
        }
    }
}

fn slo<'a>(cx: &mut Ctx<'a>, i: Input<'a>) -> PResult<'a, Item> {
    let (i, start) = kw("slo")(i)?;
    let (i, (name, open)) = cut((string, sym("{"))).parse(i)?;
    let (i, stmts, end) = block(cx, i, open, BlockKind::Slo, slo_stmt, slo_stmt_span);
    let span = Span::new(start.file, start.start, end);
    Ok((i, Item::Slo(SloDecl { name, stmts, span })))
}

fn slo_stmt_span(s: &SloStmt) -> Span {
    match s {
        SloStmt::Objective(p) => p.span,
        SloStmt::Period(d) => d.span,
        SloStmt::Source(source) => source.span(),
    }
}

fn slo_stmt(i: Input<'_>) -> PResult<'_, SloStmt> {
    alt((
        map(preceded(kw("objective"), cut(percent)), SloStmt::Objective),
        map(preceded(kw("period"), cut(duration)), SloStmt::Period),
        map(preceded(kw("source"), cut(slo_source)), SloStmt::Source),
    ))
    .parse(i)
}

fn slo_source(i: Input<'_>) -> PResult<'_, SloSourceSpec> {
    alt((
        map(kw("push"), |span| SloSourceSpec::Push { span }),
        map(kw("alerts"), |span| SloSourceSpec::Alerts { span }),
        prometheus,
    ))
    .parse(i)
}

/// `prometheus { errors "Q"; total "Q" }` (no recovery inside: an error
/// fails the enclosing `source` statement).
fn prometheus(i: Input<'_>) -> PResult<'_, SloSourceSpec> {
    let (i, start) = kw("prometheus")(i)?;
    cut(move |i| prometheus_body(i, start)).parse(i)
}

fn prometheus_body(i: Input<'_>, start: Span) -> PResult<'_, SloSourceSpec> {
    let (mut i, _) = sym("{")(i)?;
    let mut queries = Vec::new();
    loop {
        let t = ws(i);
        if let Ok((rest, close)) = sym("}")(t) {
            let span = start.to(close);
            return Ok((rest, SloSourceSpec::Prometheus { queries, span }));
        }
        let kind = alt((
            map(kw("errors"), |s| (QueryKind::Errors, s)),
            map(kw("total"), |s| (QueryKind::Total, s)),
        ))
        .parse(t);
        let (rest, (kind, kw_span)) =
            kind.map_err(|e| e.map(|e| e.merge(PError::expected(t, Expected::Sym("}")))))?;
        let (rest, query) = cut(string).parse(rest)?;
        let span = kw_span.to(query.span);
        queries.push(PrometheusQuery { kind, query, span });
        i = sym(";")(rest).map_or(rest, |(r, _)| r);
    }
}

fn destination<'a>(cx: &mut Ctx<'a>, i: Input<'a>) -> PResult<'a, Item> {
    let (i, start) = kw("destination")(i)?;
    let (i, (name, kind, open)) = cut((string, ident, sym("{"))).parse(i)?;
    let (i, settings, end) = block(cx, i, open, BlockKind::Destination, setting, |s| s.span);
    let span = Span::new(start.file, start.start, end);
    Ok((
        i,
        Item::Destination(DestinationDecl {
            name,
            kind,
            settings,
            span,
        }),
    ))
}

fn setting(i: Input<'_>) -> PResult<'_, Setting> {
    let (i, key) = ident_as(Expected::SettingKey)(i)?;
    let (i, (value, end)) = cut(setting_value).parse(i)?;
    let span = key.span.to(end);
    Ok((i, Setting { key, value, span }))
}

/// A setting's value and the span it covers (`env(...)` up to `)`).
fn setting_value(i: Input<'_>) -> PResult<'_, (SettingValue, Span)> {
    let env = |i| {
        let (rest, start) = kw("env")(i)?;
        let (rest, (_, var, close)) = cut((sym("("), string, sym(")"))).parse(rest)?;
        Ok((rest, (SettingValue::Env(var), start.to(close))))
    };
    let num = map(numeric, |(lit, span)| match lit {
        NumLit::Number(value) => (SettingValue::Number { value, span }, span),
        NumLit::Percent(percent) => (SettingValue::Percent(PercentLit { percent, span }), span),
        NumLit::Duration(secs) => (SettingValue::Duration(DurationLit { secs, span }), span),
    });
    let boolean = alt((
        map(kw("true"), |span| {
            (SettingValue::Bool { value: true, span }, span)
        }),
        map(kw("false"), |span| {
            (SettingValue::Bool { value: false, span }, span)
        }),
    ));
    let text = map(string, |n| {
        let span = n.span;
        (SettingValue::Str(n), span)
    });
    alt((text, env, num, boolean))
        .parse(i)
        .map_err(|e| match e {
            Err::Error(_) => {
                let what = [
                    Expected::Str,
                    Expected::Kw("env"),
                    Expected::Number,
                    Expected::Percent,
                    Expected::Duration,
                    Expected::Kw("true"),
                    Expected::Kw("false"),
                ];
                Err::Error(PError::expected_any(ws(i), &what))
            }
            e => e,
        })
}

fn severity<'a>(cx: &mut Ctx<'a>, i: Input<'a>) -> PResult<'a, Item> {
    let (i, start) = kw("severity")(i)?;
    let (i, (severity, open)) = cut((sev, sym("{"))).parse(i)?;
    let (i, stmts, end) = block(cx, i, open, BlockKind::Severity, sev_stmt, sev_stmt_span);
    let span = Span::new(start.file, start.start, end);
    Ok((
        i,
        Item::Severity(SeverityDecl {
            severity,
            stmts,
            span,
        }),
    ))
}

fn sev_stmt_span(s: &SeverityStmt) -> Span {
    match s {
        SeverityStmt::Page { span, .. }
        | SeverityStmt::Notify { span, .. }
        | SeverityStmt::Cadence { span, .. }
        | SeverityStmt::AckTimeout { span, .. }
        | SeverityStmt::Roles { span, .. }
        | SeverityStmt::Fallback { span, .. }
        | SeverityStmt::Postmortem { span, .. } => *span,
    }
}

fn sev_stmt(i: Input<'_>) -> PResult<'_, SeverityStmt> {
    let page = map((kw("page"), cut(string_list)), |(k, targets)| {
        let span = k.to(last_span(&targets, k));
        SeverityStmt::Page { targets, span }
    });
    let notify = map((kw("notify"), cut(string_list)), |(k, targets)| {
        let span = k.to(last_span(&targets, k));
        SeverityStmt::Notify { targets, span }
    });
    let cadence = map((kw("cadence"), cut(duration)), |(k, every)| {
        SeverityStmt::Cadence {
            every,
            span: k.to(every.span),
        }
    });
    let ack = map(
        (
            kw("ack"),
            cut((kw("timeout"), duration, kw("escalate"), string_list)),
        ),
        |(k, (_, timeout, _, escalate))| {
            let span = k.to(last_span(&escalate, k));
            SeverityStmt::AckTimeout {
                timeout,
                escalate,
                span,
            }
        },
    );
    // `split` right after `roles` is always the keyword.
    let roles = map(
        (kw("roles"), cut((opt(kw("split")), ident_list))),
        |(k, (split, roles))| {
            let span = k.to(last_span(&roles, k));
            SeverityStmt::Roles {
                split: split.is_some(),
                roles,
                span,
            }
        },
    );
    let postmortem = map(
        (
            kw("postmortem"),
            cut(alt((
                map(kw("required"), |s| (true, s)),
                map(kw("optional"), |s| (false, s)),
            ))),
        ),
        |(k, (required, s))| SeverityStmt::Postmortem {
            required,
            span: k.to(s),
        },
    );
    let fallback = map((kw("fallback"), cut(string)), |(k, target)| {
        let span = k.to(target.span);
        SeverityStmt::Fallback { target, span }
    });
    alt((page, notify, cadence, ack, roles, fallback, postmortem)).parse(i)
}

/// `rule "name" { when EXPR then SEVn }`
fn rule(i: Input<'_>) -> PResult<'_, RuleDecl> {
    let (i, start) = kw("rule")(i)?;
    let (i, (name, _, _, when)) = cut((string, sym("{"), kw("when"), expr)).parse(i)?;
    let (i, _) = kw("then")(i).map_err(|e| match e {
        Err::Error(e) => Err::Failure(chained_comparison_note(e)),
        e => e,
    })?;
    let (i, (then, close)) = cut((sev, sym("}"))).parse(i)?;
    let span = start.to(close);
    Ok((
        i,
        RuleDecl {
            name,
            when,
            then,
            span,
        },
    ))
}

/// Explains `a < b < c`: the second operator is where `then` was expected.
fn chained_comparison_note(e: PError<'_>) -> PError<'_> {
    let at = e.input();
    let tok = raw_token(at.fragment(), 0);
    let text = &at.fragment()[tok.start..tok.end];
    if CmpOp::ALL.iter().any(|op| op.symbol() == text) {
        e.with_note("comparisons do not chain: combine them with `and`, or add parentheses")
    } else {
        e
    }
}

/// `otherwise SEVn`
fn otherwise(i: Input<'_>) -> PResult<'_, OtherwiseDecl> {
    let (i, (start, severity)) = (kw("otherwise"), cut(sev)).parse(i)?;
    Ok((
        i,
        OtherwiseDecl {
            severity,
            span: start.to(severity.span),
        },
    ))
}

/// `group by a, b [wait D] [interval D]`
fn group(i: Input<'_>) -> PResult<'_, GroupDecl> {
    let (i, (start, (_, by))) = (kw("group"), cut((kw("by"), ident_list))).parse(i)?;
    let (i, wait) = opt(preceded(kw("wait"), cut(duration))).parse(i)?;
    let (i, interval) = opt(preceded(kw("interval"), cut(duration))).parse(i)?;
    let end = interval.or(wait).map_or(last_span(&by, start), |d| d.span);
    Ok((
        i,
        GroupDecl {
            by,
            wait,
            interval,
            span: start.to(end),
        },
    ))
}

//! Expressions: `or` < `and` < `not` < comparison (non-associative) <
//! operand. An `and`/`or` chain becomes one node holding every operand,
//! built in a loop; a parenthesised expression yields its inner node.
//! Only parentheses and `not` recurse, so only their nesting is limited
//! (so hostile input cannot overflow the stack); that also bounds the
//! depth of the tree, which the checker, the printer and `Drop` recurse
//! over. A chain of any length is fine.

use nom::branch::alt;
use nom::combinator::{cut, map};
use nom::multi::many0;
use nom::sequence::preceded;
use nom::{Err, Parser};

use super::error::{Expected, PError};
use super::lexer::{Input, NumLit, PResult, ident, kw, numeric, peek_ident, string, sym, ws};
use crate::rules::ast::{CmpOp, Expr, ExprKind};
use crate::rules::diagnostics::{Code, Diagnostic};
use crate::rules::source::Span;

/// Most parentheses and `not`s an expression may nest.
pub const MAX_NESTING: usize = 64;

/// A parsed node, boxed: it ends up boxed in its parent anyway, and small
/// results keep the recursion's stack frames small.
type Node = Box<Expr>;

/// An expression (`when ...`).
pub(crate) fn expr(i: Input<'_>) -> PResult<'_, Expr> {
    map(|i| or_expr(i, 0), |e| *e).parse(i)
}

fn boxed(kind: ExprKind, span: Span) -> Box<Expr> {
    Box::new(Expr { kind, span })
}

fn too_deep<'a, T>(i: Input<'a>, at: Span) -> PResult<'a, T> {
    let d = Diagnostic::new(Code::Syntax, "expression nested too deeply")
        .at(at, "too deep")
        .note(format!(
            "parentheses and `not` may nest at most {MAX_NESTING} deep"
        ));
    Err(Err::Failure(PError::custom(i, d)))
}

/// Turns a recoverable error into a fatal one, as [`cut`] does.
fn commit(e: Err<PError<'_>>) -> Err<PError<'_>> {
    match e {
        Err::Error(e) => Err::Failure(e),
        e => e,
    }
}

// The recursive path below (chain -> not -> comparison -> operand ->
// parentheses) dispatches on the next token by hand instead of through
// `alt`/`cut` combinators: in debug builds every combinator layer keeps its
// own copies of the (large) results, about 35 KiB of stack per nesting
// level, which would overflow a 2 MiB test thread well before the limit.
// Leaves, which do not recurse, use combinators freely.

/// A chain `sub { word sub }`: the single operand, or one node holding
/// every operand in order.
fn chain<'a>(
    i: Input<'a>,
    level: usize,
    word: &'static str,
    sub: fn(Input<'a>, usize) -> PResult<'a, Node>,
    make: fn(Vec<Expr>) -> ExprKind,
) -> PResult<'a, Node> {
    let (mut i, first) = sub(i, level)?;
    // The first operand stays alone until a second one comes.
    let mut first = Some(first);
    let mut terms: Vec<Expr> = Vec::new();
    // Peeked first: a failed `kw` builds an error, and every chain ends
    // with one.
    while peek_ident(&i) == Some(word) {
        let (rest, _) = kw(word)(i)?;
        // After `and`/`or` an operand must follow: commit.
        let (rest, next) = sub(rest, level).map_err(commit)?;
        terms.extend(first.take().map(|f| *f));
        terms.push(*next);
        i = rest;
    }
    match first {
        Some(only) => Ok((i, only)),
        None => {
            let span = terms[0].span.to(terms[terms.len() - 1].span);
            Ok((i, boxed(make(terms), span)))
        }
    }
}

fn or_expr(i: Input<'_>, level: usize) -> PResult<'_, Node> {
    chain(i, level, "or", and_expr, ExprKind::Or)
}

fn and_expr(i: Input<'_>, level: usize) -> PResult<'_, Node> {
    chain(i, level, "and", not_expr, ExprKind::And)
}

fn not_expr(i: Input<'_>, level: usize) -> PResult<'_, Node> {
    if peek_ident(&i) != Some("not") {
        // Where an operand was expected, `not` would have done too.
        return comparison(i, level)
            .map_err(|e| e.map(|e| PError::expected(ws(i), Expected::Kw("not")).merge(e)));
    }
    let (rest, not) = kw("not")(i)?;
    if level >= MAX_NESTING {
        return too_deep(i, not);
    }
    let (rest, inner) = not_expr(rest, level + 1).map_err(commit)?;
    let span = not.to(inner.span);
    Ok((rest, boxed(ExprKind::Not(inner), span)))
}

/// A comparison operator, if one comes next. Not a parser: most operands
/// have none after them, and an error would be built only to be dropped.
fn cmp_op(i: Input<'_>) -> Option<(Input<'_>, CmpOp)> {
    let i = ws(i);
    let op = CmpOp::ALL
        .into_iter()
        .find(|op| i.fragment().starts_with(op.symbol()))?;
    let (rest, _) = nom::Input::take_split(&i, op.symbol().len());
    Some((rest, op))
}

fn comparison(i: Input<'_>, level: usize) -> PResult<'_, Node> {
    let (i, lhs) = operand(i, level)?;
    if let Some((rest, op)) = cmp_op(i) {
        let (rest, rhs) = operand(rest, level).map_err(commit)?;
        let span = lhs.span.to(rhs.span);
        let kind = ExprKind::Compare { op, lhs, rhs };
        return Ok((rest, boxed(kind, span)));
    }
    membership(i, lhs)
}

/// The optional `[not] in [ ... ]` after an operand.
#[inline(never)]
fn membership(i: Input<'_>, lhs: Node) -> PResult<'_, Node> {
    // `not` after an operand can only begin `not in`. Peeked first, as
    // most operands are followed by neither.
    let (i, negated) = match peek_ident(&i) {
        Some("not") => (cut((kw("not"), kw("in"))).parse(i)?.0, true),
        Some("in") => (kw("in")(i)?.0, false),
        _ => return Ok((i, lhs)),
    };
    let (i, (list, close)) = cut(literal_list).parse(i)?;
    let span = lhs.span.to(close);
    let kind = ExprKind::In {
        negated,
        value: lhs,
        list,
    };
    Ok((i, boxed(kind, span)))
}

/// `[ lit, lit ]`: the literals and the span of `]`.
fn literal_list(i: Input<'_>) -> PResult<'_, (Vec<Expr>, Span)> {
    let (i, _) = sym("[")(i)?;
    if let Ok((rest, close)) = sym("]")(i) {
        return Ok((rest, (Vec::new(), close)));
    }
    let (i, first) =
        literal(i).map_err(|e| e.map(|e| e.merge(PError::expected(ws(i), Expected::Sym("]")))))?;
    let (i, more) = many0(preceded(sym(","), cut(literal))).parse(i)?;
    let (i, close) = match sym("]")(i) {
        Ok(ok) => ok,
        Err(_) => {
            let at = ws(i);
            return Err(Err::Failure(PError::expected_any(
                at,
                &[Expected::Sym(","), Expected::Sym("]")],
            )));
        }
    };
    let mut list = vec![first];
    list.extend(more);
    Ok((i, (list, close)))
}

/// A string, number, percentage or duration.
fn literal(i: Input<'_>) -> PResult<'_, Expr> {
    let i = ws(i);
    let str_lit = map(string, |n| Expr {
        kind: ExprKind::Str(n.value),
        span: n.span,
    });
    let num_lit = map(numeric, |(lit, span)| {
        let kind = match lit {
            NumLit::Number(v) => ExprKind::Number(v),
            NumLit::Percent(v) => ExprKind::Percent(v),
            NumLit::Duration(s) => ExprKind::Duration(s),
        };
        Expr { kind, span }
    });
    alt((str_lit, num_lit)).parse(i).map_err(|e| match e {
        Err::Error(_) => Err::Error(PError::expected(i, Expected::Literal)),
        e => e,
    })
}

/// What may start an operand (after `not`, which [`not_expr`] adds).
const OPERAND_STARTS: [Expected; 7] = [
    Expected::Sym("("),
    Expected::Kw("labels"),
    Expected::Kw("annotations"),
    Expected::Kw("burn"),
    Expected::Kw("budget_remaining"),
    Expected::Kw("firing_for"),
    Expected::Literal,
];

fn operand(i: Input<'_>, level: usize) -> PResult<'_, Node> {
    let i = ws(i);
    if i.fragment().starts_with('(') {
        return paren(i, level);
    }
    match peek_ident(&i) {
        Some("labels" | "annotations" | "burn" | "budget_remaining" | "firing_for") => leaf(i),
        _ => match literal(i) {
            Ok((rest, e)) => Ok((rest, Box::new(e))),
            Err(Err::Error(_)) => Err(Err::Error(PError::expected_any(i, &OPERAND_STARTS))),
            Err(e) => Err(e),
        },
    }
}

/// `( expr )`: the inner node itself.
fn paren(i: Input<'_>, level: usize) -> PResult<'_, Node> {
    let (rest, open) = sym("(")(i)?;
    if level >= MAX_NESTING {
        return too_deep(i, open);
    }
    let (rest, inner) = or_expr(rest, level + 1).map_err(commit)?;
    let (rest, _) = sym(")")(rest).map_err(commit)?;
    Ok((rest, inner))
}

/// The keyword operands: `labels.x`, `annotations.x`, `burn(...)`,
/// `budget_remaining(...)`, `firing_for`.
#[inline(never)]
fn leaf(i: Input<'_>) -> PResult<'_, Node> {
    let node = boxed;
    let field = |word: &'static str, make: fn(String) -> ExprKind| {
        move |i| {
            let (rest, start) = kw(word)(i)?;
            let (rest, (_, name)) = cut((sym("."), ident)).parse(rest)?;
            Ok((rest, node(make(name.value), start.to(name.span))))
        }
    };
    let burn = |i| {
        let (rest, start) = kw("burn")(i)?;
        let (rest, (_, slo, _, window, close)) =
            cut((sym("("), string, sym(","), super::items::duration, sym(")"))).parse(rest)?;
        Ok((rest, node(ExprKind::Burn { slo, window }, start.to(close))))
    };
    let budget = |i| {
        let (rest, start) = kw("budget_remaining")(i)?;
        let (rest, (_, slo, close)) = cut((sym("("), string, sym(")"))).parse(rest)?;
        Ok((
            rest,
            node(ExprKind::BudgetRemaining { slo }, start.to(close)),
        ))
    };
    let firing_for = map(kw("firing_for"), |span| node(ExprKind::FiringFor, span));
    alt((
        field("labels", ExprKind::Label),
        field("annotations", ExprKind::Annotation),
        burn,
        budget,
        firing_for,
    ))
    .parse(i)
}

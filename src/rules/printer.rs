//! The printer: writes an AST back as canonical rule-file text. Two-space
//! indentation, one statement per line, a blank line between items,
//! durations in whole units (`5400s` prints as `1h30m`), numbers in Rust's
//! shortest round-trip form, and parentheses only where precedence needs
//! them or the source grouped a chain inside one of the same operator
//! (`(a and b) and c`: a chain is one node, so the grouping is in the
//! AST). For every AST the parser produces, parsing the printed text gives
//! the same AST back, and printing is idempotent.

use std::fmt::Write as _;

use crate::rules::ast::*;
use crate::rules::parser::DURATION_UNITS;

/// A `when` line longer than this is broken before each top-level
/// `and`/`or`.
const MAX_WIDTH: usize = 100;

/// Prints a whole file in canonical form.
pub fn print_file(file: &File) -> String {
    let mut out = String::new();
    for (n, item) in file.items.iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        print_item(&mut out, item);
    }
    out
}

/// Prints an expression on one line, as it would appear after `when`.
pub fn print_expr(expr: &Expr) -> String {
    let mut out = String::new();
    write_expr(&mut out, expr);
    out
}

/// A computed number for people (explanations, diagnostics): at most four
/// decimals, so floating-point noise never shows (`1000.0000000000009`
/// prints as `1000`, `22.1` as `22.1`). Rule-file literals are printed by
/// [`print_expr`] in shortest round-trip form instead.
pub fn format_number(value: f64) -> String {
    let rounded = (value * 10_000.0).round() / 10_000.0;
    // `-0` would read as a different number.
    format!("{}", if rounded == 0.0 { 0.0 } else { rounded })
}

/// A duration in canonical form: `0s` for 0, whole weeks as `Nw`, anything
/// else in days, hours, minutes and seconds, largest first (`5400` prints
/// as `1h30m`, 30 days as `30d` rather than `4w2d`).
pub fn print_duration(secs: u64) -> String {
    const WEEK: u64 = 604_800;
    if secs == 0 {
        return "0s".to_string();
    }
    if secs.is_multiple_of(WEEK) {
        return format!("{}w", secs / WEEK);
    }
    let mut out = String::new();
    let mut rest = secs;
    for (unit, mult) in DURATION_UNITS {
        if mult != WEEK && rest >= mult {
            let _ = write!(out, "{}{unit}", rest / mult);
            rest %= mult;
        }
    }
    out
}

/// A string literal, quoted and escaped so the parser reads back `value`.
pub fn quote_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            // Other control characters would be invisible or break lines.
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn print_item(out: &mut String, item: &Item) {
    match item {
        Item::Slo(slo) => {
            block_open(
                out,
                &format!("slo {}", quote_string(&slo.name.value)),
                slo.stmts.is_empty(),
            );
            for stmt in &slo.stmts {
                match stmt {
                    SloStmt::Objective(p) => line(out, 1, &format!("objective {}%", p.percent)),
                    SloStmt::Period(d) => {
                        line(out, 1, &format!("period {}", print_duration(d.secs)))
                    }
                    SloStmt::Source(SloSourceSpec::Push { .. }) => line(out, 1, "source push"),
                    SloStmt::Source(SloSourceSpec::Alerts { .. }) => line(out, 1, "source alerts"),
                    SloStmt::Source(SloSourceSpec::Prometheus { queries, .. }) => {
                        if queries.is_empty() {
                            line(out, 1, "source prometheus {}");
                            continue;
                        }
                        line(out, 1, "source prometheus {");
                        for q in queries {
                            let kind = match q.kind {
                                QueryKind::Errors => "errors",
                                QueryKind::Total => "total",
                            };
                            line(out, 2, &format!("{kind} {}", quote_string(&q.query.value)));
                        }
                        line(out, 1, "}");
                    }
                }
            }
            block_close(out, slo.stmts.is_empty());
        }
        Item::Destination(d) => {
            let head = format!(
                "destination {} {}",
                quote_string(&d.name.value),
                d.kind.value
            );
            block_open(out, &head, d.settings.is_empty());
            for s in &d.settings {
                let value = match &s.value {
                    SettingValue::Str(n) => quote_string(&n.value),
                    SettingValue::Env(n) => format!("env({})", quote_string(&n.value)),
                    SettingValue::Number { value, .. } => format!("{value}"),
                    SettingValue::Percent(p) => format!("{}%", p.percent),
                    SettingValue::Duration(d) => print_duration(d.secs),
                    SettingValue::Bool { value, .. } => value.to_string(),
                };
                line(out, 1, &format!("{} {value}", s.key.value));
            }
            block_close(out, d.settings.is_empty());
        }
        Item::Severity(s) => {
            block_open(
                out,
                &format!("severity {}", s.severity.severity),
                s.stmts.is_empty(),
            );
            for stmt in &s.stmts {
                let text = match stmt {
                    SeverityStmt::Page { targets, .. } => format!("page {}", strings(targets)),
                    SeverityStmt::Notify { targets, .. } => format!("notify {}", strings(targets)),
                    SeverityStmt::Cadence { every, .. } => {
                        format!("cadence {}", print_duration(every.secs))
                    }
                    SeverityStmt::AckTimeout {
                        timeout, escalate, ..
                    } => {
                        format!(
                            "ack timeout {} escalate {}",
                            print_duration(timeout.secs),
                            strings(escalate)
                        )
                    }
                    SeverityStmt::Roles { split, roles, .. } => {
                        let names: Vec<&str> = roles.iter().map(|r| r.value.as_str()).collect();
                        format!(
                            "roles {}{}",
                            if *split { "split " } else { "" },
                            names.join(", ")
                        )
                    }
                    SeverityStmt::Fallback { target, .. } => {
                        format!("fallback {}", quote_string(&target.value))
                    }
                    SeverityStmt::Postmortem { required, .. } => {
                        format!(
                            "postmortem {}",
                            if *required { "required" } else { "optional" }
                        )
                    }
                };
                line(out, 1, &text);
            }
            block_close(out, s.stmts.is_empty());
        }
        Item::Rule(r) => {
            line(out, 0, &format!("rule {} {{", quote_string(&r.name.value)));
            write_when(out, &r.when);
            line(out, 1, &format!("then {}", r.then.severity));
            line(out, 0, "}");
        }
        Item::Otherwise(o) => line(out, 0, &format!("otherwise {}", o.severity.severity)),
        Item::Group(g) => {
            let by: Vec<&str> = g.by.iter().map(|n| n.value.as_str()).collect();
            let mut text = format!("group by {}", by.join(", "));
            if let Some(w) = &g.wait {
                let _ = write!(text, " wait {}", print_duration(w.secs));
            }
            if let Some(i) = &g.interval {
                let _ = write!(text, " interval {}", print_duration(i.secs));
            }
            line(out, 0, &text);
        }
    }
}

fn line(out: &mut String, indent: usize, text: &str) {
    for _ in 0..indent {
        out.push_str("  ");
    }
    out.push_str(text);
    out.push('\n');
}

/// `head {` (or `head {}` for an empty block).
fn block_open(out: &mut String, head: &str, empty: bool) {
    line(
        out,
        0,
        &format!("{head} {}", if empty { "{}" } else { "{" }),
    );
}

fn block_close(out: &mut String, empty: bool) {
    if !empty {
        line(out, 0, "}");
    }
}

fn strings(names: &[Name]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| quote_string(&n.value)).collect();
    quoted.join(", ")
}

/// The `when` line; a long `and`/`or` chain gets one operand per line with
/// the operator right-aligned under `when`.
fn write_when(out: &mut String, when: &Expr) {
    let one = format!("  when {}", print_expr(when));
    let (word, p, terms) = match &when.kind {
        ExprKind::And(terms) if one.len() > MAX_WIDTH => ("and", 2, terms),
        ExprKind::Or(terms) if one.len() > MAX_WIDTH => ("or", 1, terms),
        _ => {
            out.push_str(&one);
            out.push('\n');
            return;
        }
    };
    for (n, term) in terms.iter().enumerate() {
        let mut text = String::new();
        child(&mut text, term, prec(term) <= p);
        if n == 0 {
            line(out, 1, &format!("when {text}"));
        } else {
            line(out, 0, &format!("{word:>6} {text}"));
        }
    }
}

/// Binding strength: `or` 1, `and` 2, `not` 3, comparisons 4, operands 5.
fn prec(e: &Expr) -> u8 {
    match e.kind {
        ExprKind::Or(..) => 1,
        ExprKind::And(..) => 2,
        ExprKind::Not(..) => 3,
        ExprKind::Compare { .. } | ExprKind::In { .. } => 4,
        _ => 5,
    }
}

fn child(out: &mut String, e: &Expr, parens: bool) {
    if parens {
        out.push('(');
        write_expr(out, e);
        out.push(')');
    } else {
        write_expr(out, e);
    }
}

fn write_expr(out: &mut String, e: &Expr) {
    match &e.kind {
        ExprKind::Or(terms) | ExprKind::And(terms) => {
            let (word, p) = match e.kind {
                ExprKind::Or(..) => (" or ", 1),
                _ => (" and ", 2),
            };
            for (n, term) in terms.iter().enumerate() {
                if n > 0 {
                    out.push_str(word);
                }
                // A nested chain of the same operator was parenthesised in
                // the source (a chain is one node): keep its parentheses.
                child(out, term, prec(term) <= p);
            }
        }
        ExprKind::Not(x) => {
            out.push_str("not ");
            child(out, x, prec(x) < 3);
        }
        ExprKind::Compare { op, lhs, rhs } => {
            child(out, lhs, prec(lhs) < 5);
            let _ = write!(out, " {} ", op.symbol());
            child(out, rhs, prec(rhs) < 5);
        }
        ExprKind::In {
            negated,
            value,
            list,
        } => {
            child(out, value, prec(value) < 5);
            out.push_str(if *negated { " not in [" } else { " in [" });
            for (n, item) in list.iter().enumerate() {
                if n > 0 {
                    out.push_str(", ");
                }
                child(out, item, prec(item) < 5);
            }
            out.push(']');
        }
        ExprKind::Label(name) => {
            let _ = write!(out, "labels.{name}");
        }
        ExprKind::Annotation(name) => {
            let _ = write!(out, "annotations.{name}");
        }
        ExprKind::Str(s) => out.push_str(&quote_string(s)),
        ExprKind::Number(v) => {
            let _ = write!(out, "{v}");
        }
        ExprKind::Percent(v) => {
            let _ = write!(out, "{v}%");
        }
        ExprKind::Duration(secs) => out.push_str(&print_duration(*secs)),
        ExprKind::Burn { slo, window } => {
            let _ = write!(
                out,
                "burn({}, {})",
                quote_string(&slo.value),
                print_duration(window.secs)
            );
        }
        ExprKind::BudgetRemaining { slo } => {
            let _ = write!(out, "budget_remaining({})", quote_string(&slo.value));
        }
        ExprKind::FiringFor => out.push_str("firing_for"),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::model::Severity;
    use crate::rules::parser::parse_file;
    use crate::rules::source::Span;

    fn e(kind: ExprKind) -> Expr {
        Expr {
            kind,
            span: Span::default(),
        }
    }
    fn label(n: &str) -> Expr {
        e(ExprKind::Label(n.to_string()))
    }
    fn or(l: Expr, r: Expr) -> Expr {
        e(ExprKind::Or(vec![l, r]))
    }
    fn and(l: Expr, r: Expr) -> Expr {
        e(ExprKind::And(vec![l, r]))
    }
    fn not(x: Expr) -> Expr {
        e(ExprKind::Not(Box::new(x)))
    }
    fn cmp(l: Expr, r: Expr) -> Expr {
        e(ExprKind::Compare {
            op: CmpOp::Eq,
            lhs: Box::new(l),
            rhs: Box::new(r),
        })
    }
    fn name(v: &str) -> Name {
        Name {
            value: v.to_string(),
            span: Span::default(),
        }
    }

    /// Parses text that must be valid.
    fn parse_ok(text: &str) -> File {
        let (f, d) = parse_file(0, text);
        assert!(d.is_empty(), "unexpected diagnostics for:\n{text}\n{d:#?}");
        f
    }

    #[test]
    fn durations_print_canonically() {
        assert_eq!(print_duration(0), "0s");
        assert_eq!(print_duration(59), "59s");
        assert_eq!(print_duration(5400), "1h30m");
        assert_eq!(print_duration(30 * 86_400), "30d");
        assert_eq!(print_duration(28 * 86_400), "4w");
        assert_eq!(print_duration(86_400 + 3_600 + 61), "1d1h1m1s");
        assert_eq!(print_duration(u64::MAX), "213503982334601d7h15s");
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(quote_string("plain"), r#""plain""#);
        assert_eq!(quote_string("a\"b\\c\nd\te\rf"), r#""a\"b\\c\nd\te\rf""#);
        assert_eq!(quote_string("\u{0}\u{7f}é😀"), "\"\\u{0}\\u{7f}é😀\"");
    }

    #[test]
    fn parentheses_only_where_needed() {
        let (a, b, c) = (label("a"), label("b"), label("c"));
        assert_eq!(
            print_expr(&e(ExprKind::Or(vec![a.clone(), b.clone(), c.clone()]))),
            "labels.a or labels.b or labels.c"
        );
        // A chain is one node, so a nested one was parenthesised.
        assert_eq!(
            print_expr(&or(or(a.clone(), b.clone()), c.clone())),
            "(labels.a or labels.b) or labels.c"
        );
        assert_eq!(
            print_expr(&or(a.clone(), or(b.clone(), c.clone()))),
            "labels.a or (labels.b or labels.c)"
        );
        assert_eq!(
            print_expr(&and(or(a.clone(), b.clone()), c.clone())),
            "(labels.a or labels.b) and labels.c"
        );
        assert_eq!(
            print_expr(&or(and(a.clone(), b.clone()), c.clone())),
            "labels.a and labels.b or labels.c"
        );
        assert_eq!(
            print_expr(&and(a.clone(), and(b.clone(), c.clone()))),
            "labels.a and (labels.b and labels.c)"
        );
        assert_eq!(
            print_expr(&not(and(a.clone(), b.clone()))),
            "not (labels.a and labels.b)"
        );
        assert_eq!(
            print_expr(&not(not(cmp(a.clone(), b.clone())))),
            "not not labels.a == labels.b"
        );
        assert_eq!(
            print_expr(&cmp(cmp(a.clone(), b.clone()), c.clone())),
            "(labels.a == labels.b) == labels.c"
        );
        assert_eq!(
            print_expr(&cmp(not(a.clone()), b.clone())),
            "(not labels.a) == labels.b"
        );
        let list = vec![
            e(ExprKind::Str("x".into())),
            e(ExprKind::Percent(2.5)),
            e(ExprKind::Duration(90)),
        ];
        let isin = e(ExprKind::In {
            negated: true,
            value: Box::new(cmp(a.clone(), b.clone())),
            list,
        });
        assert_eq!(
            print_expr(&isin),
            r#"(labels.a == labels.b) not in ["x", 2.5%, 1m30s]"#
        );
        let empty = e(ExprKind::In {
            negated: false,
            value: Box::new(a),
            list: vec![],
        });
        assert_eq!(print_expr(&empty), "labels.a in []");
    }

    #[test]
    fn numbers_use_shortest_round_trip_form() {
        assert_eq!(print_expr(&e(ExprKind::Number(14.4))), "14.4");
        assert_eq!(print_expr(&e(ExprKind::Number(3.0))), "3");
        assert_eq!(print_expr(&e(ExprKind::Percent(99.9))), "99.9%");
        assert_eq!(print_expr(&e(ExprKind::Number(1e-7))), "0.0000001");
    }

    #[test]
    fn sample_prints_canonically() {
        let printed = print_file(&parse_ok(crate::rules::parser::tests::SAMPLE));
        let expected = r#"slo "checkout-availability" {
  objective 99.9%
  period 30d
  source push
}

slo "search-latency" {
  objective 99.5%
  period 4w
  source prometheus {
    errors "sum(rate(http_errors_total[5m]))"
    total "sum(rate(http_requests_total[5m]))"
  }
}

destination "payments-pd" pagerduty {
  routing_key env("PD_PAYMENTS_KEY")
}

destination "status" webhook {
  url "https://status.example.com/hook"
  secret env("STATUS_SECRET")
  timeout 10s
  retries 3
  verify true
}

severity SEV1 {
  page "payments-pd"
  notify "exec", "status"
  cadence 15m
  ack timeout 5m escalate "exec"
  roles split commander, communications, operations
  postmortem required
}

severity SEV2 {
  page "payments-pd"
  notify "exec"
  cadence 30m
  postmortem required
}

rule "checkout burning fast" {
  when labels.service == "checkout"
   and burn("checkout-availability", 1h) > 14.4
   and burn("checkout-availability", 5m) > 14.4
  then SEV1
}

rule "data loss" {
  when annotations.data_loss == "true"
  then SEV1
}

rule "mixed" {
  when (labels.env =~ "prod|staging" or not labels.team in ["a", "b"])
   and firing_for >= 10m
   and budget_remaining("checkout-availability") < 25%
   and labels.x not in ["y"]
  then SEV2
}

otherwise SEV3

group by service, slo wait 30s interval 5m
"#;
        assert_eq!(printed, expected);
        assert_eq!(print_file(&parse_ok(&printed)), printed);
    }

    #[test]
    fn long_or_chain_breaks_with_aligned_operators() {
        let long = |n: &str| {
            cmp(
                label(n),
                e(ExprKind::Str("a-fairly-long-value-to-compare".into())),
            )
        };
        let when = e(ExprKind::Or(vec![
            long("one"),
            and(long("two"), long("three")),
            long("four"),
        ]));
        let rule = RuleDecl {
            name: name("r"),
            when,
            then: SeverityLit {
                severity: Severity::Sev2,
                span: Span::default(),
            },
            span: Span::default(),
        };
        let file = File {
            items: vec![Item::Rule(rule)],
        };
        let text = print_file(&file);
        assert_eq!(
            text,
            r#"rule "r" {
  when labels.one == "a-fairly-long-value-to-compare"
    or labels.two == "a-fairly-long-value-to-compare" and labels.three == "a-fairly-long-value-to-compare"
    or labels.four == "a-fairly-long-value-to-compare"
  then SEV2
}
"#
        );
        assert_eq!(parse_ok(&text), file);
    }

    #[test]
    fn empty_blocks() {
        let text = "slo \"a\" {}\n\ndestination \"d\" slack {}\n\nseverity SEV3 {}\n";
        let f = parse_ok(text);
        assert_eq!(print_file(&f), text);
    }

    // ---- Round-trip property over generated ASTs ----

    fn sp() -> Span {
        Span::default()
    }

    /// Text that needs escaping now and then.
    fn text() -> impl Strategy<Value = String> {
        let ch = prop_oneof![
            6 => proptest::char::range('a', 'z'),
            1 => Just('"'),
            1 => Just('\\'),
            1 => Just('\n'),
            1 => Just('\t'),
            1 => Just('\r'),
            1 => Just(' '),
            1 => Just('#'),
            1 => Just('\u{0}'),
            2 => any::<char>(),
        ];
        proptest::collection::vec(ch, 0..10).prop_map(String::from_iter)
    }
    fn quoted() -> impl Strategy<Value = Name> {
        text().prop_map(|value| Name { value, span: sp() })
    }
    fn ident_text() -> impl Strategy<Value = String> {
        let keywordish = prop_oneof![
            Just("and"),
            Just("or"),
            Just("not"),
            Just("in"),
            Just("slo"),
            Just("rule"),
            Just("group"),
            Just("then"),
            Just("when"),
            Just("wait"),
            Just("interval"),
            Just("env"),
            Just("true"),
            Just("split"),
            Just("page"),
            Just("SEV1"),
            Just("_"),
        ];
        prop_oneof![
            3 => "[A-Za-z_][A-Za-z0-9_]{0,8}",
            1 => keywordish.prop_map(str::to_string),
        ]
    }
    fn ident() -> impl Strategy<Value = Name> {
        ident_text().prop_map(|value| Name { value, span: sp() })
    }
    fn secs() -> impl Strategy<Value = u64> {
        prop_oneof![
            0u64..200_000,
            Just(0),
            (1u64..1000).prop_map(|w| w * 604_800),
            any::<u64>()
        ]
    }
    fn dur() -> impl Strategy<Value = DurationLit> {
        secs().prop_map(|secs| DurationLit { secs, span: sp() })
    }
    fn float() -> impl Strategy<Value = f64> {
        prop_oneof![
            (0u32..100_000).prop_map(|v| f64::from(v) / 10.0),
            any::<f64>().prop_filter_map("finite", |v| v.is_finite().then_some(v.abs())),
        ]
    }
    fn sev() -> impl Strategy<Value = SeverityLit> {
        proptest::sample::select(Severity::ALL.to_vec()).prop_map(|severity| SeverityLit {
            severity,
            span: sp(),
        })
    }
    fn ex(kind: ExprKind) -> Expr {
        Expr { kind, span: sp() }
    }
    fn literal() -> impl Strategy<Value = Expr> {
        prop_oneof![
            text().prop_map(|s| ex(ExprKind::Str(s))),
            float().prop_map(|v| ex(ExprKind::Number(v))),
            float().prop_map(|v| ex(ExprKind::Percent(v))),
            secs().prop_map(|s| ex(ExprKind::Duration(s))),
        ]
    }
    fn expr() -> impl Strategy<Value = Expr> {
        let leaf = prop_oneof![
            ident_text().prop_map(|n| ex(ExprKind::Label(n))),
            ident_text().prop_map(|n| ex(ExprKind::Annotation(n))),
            literal(),
            (quoted(), dur()).prop_map(|(slo, window)| ex(ExprKind::Burn { slo, window })),
            quoted().prop_map(|slo| ex(ExprKind::BudgetRemaining { slo })),
            Just(ex(ExprKind::FiringFor)),
        ];
        leaf.prop_recursive(6, 48, 3, |inner| {
            let ops = proptest::sample::select(vec![
                CmpOp::Eq,
                CmpOp::Ne,
                CmpOp::Match,
                CmpOp::NotMatch,
                CmpOp::Lt,
                CmpOp::Le,
                CmpOp::Gt,
                CmpOp::Ge,
            ]);
            prop_oneof![
                proptest::collection::vec(inner.clone(), 2..5)
                    .prop_map(|terms| ex(ExprKind::Or(terms))),
                proptest::collection::vec(inner.clone(), 2..5)
                    .prop_map(|terms| ex(ExprKind::And(terms))),
                inner.clone().prop_map(|x| ex(ExprKind::Not(Box::new(x)))),
                (ops, inner.clone(), inner.clone()).prop_map(|(op, l, r)| ex(ExprKind::Compare {
                    op,
                    lhs: Box::new(l),
                    rhs: Box::new(r)
                })),
                (
                    any::<bool>(),
                    inner,
                    proptest::collection::vec(literal(), 0..4)
                )
                    .prop_map(|(negated, v, list)| ex(ExprKind::In {
                        negated,
                        value: Box::new(v),
                        list
                    })),
            ]
        })
    }
    fn slo_stmt() -> impl Strategy<Value = SloStmt> {
        let query = (any::<bool>(), quoted()).prop_map(|(errors, query)| PrometheusQuery {
            kind: if errors {
                QueryKind::Errors
            } else {
                QueryKind::Total
            },
            query,
            span: sp(),
        });
        prop_oneof![
            float().prop_map(|percent| SloStmt::Objective(PercentLit {
                percent,
                span: sp()
            })),
            dur().prop_map(SloStmt::Period),
            Just(SloStmt::Source(SloSourceSpec::Push { span: sp() })),
            Just(SloStmt::Source(SloSourceSpec::Alerts { span: sp() })),
            proptest::collection::vec(query, 0..3).prop_map(|queries| SloStmt::Source(
                SloSourceSpec::Prometheus {
                    queries,
                    span: sp()
                }
            )),
        ]
    }
    fn setting() -> impl Strategy<Value = Setting> {
        let value = prop_oneof![
            quoted().prop_map(SettingValue::Str),
            quoted().prop_map(SettingValue::Env),
            float().prop_map(|value| SettingValue::Number { value, span: sp() }),
            float().prop_map(|percent| SettingValue::Percent(PercentLit {
                percent,
                span: sp()
            })),
            dur().prop_map(SettingValue::Duration),
            any::<bool>().prop_map(|value| SettingValue::Bool { value, span: sp() }),
        ];
        (ident(), value).prop_map(|(key, value)| Setting {
            key,
            value,
            span: sp(),
        })
    }
    fn sev_stmt() -> impl Strategy<Value = SeverityStmt> {
        let names = || proptest::collection::vec(quoted(), 1..4);
        prop_oneof![
            names().prop_map(|targets| SeverityStmt::Page {
                targets,
                span: sp()
            }),
            names().prop_map(|targets| SeverityStmt::Notify {
                targets,
                span: sp()
            }),
            dur().prop_map(|every| SeverityStmt::Cadence { every, span: sp() }),
            (dur(), names()).prop_map(|(timeout, escalate)| SeverityStmt::AckTimeout {
                timeout,
                escalate,
                span: sp()
            }),
            (any::<bool>(), proptest::collection::vec(ident(), 1..4)).prop_map(
                |(split, mut roles)| {
                    // `roles split` always reads `split` as the keyword.
                    if !split && roles[0].value == "split" {
                        roles[0].value.push('_');
                    }
                    SeverityStmt::Roles {
                        split,
                        roles,
                        span: sp(),
                    }
                }
            ),
            quoted().prop_map(|target| SeverityStmt::Fallback { target, span: sp() }),
            any::<bool>().prop_map(|required| SeverityStmt::Postmortem {
                required,
                span: sp()
            }),
        ]
    }
    fn item() -> impl Strategy<Value = Item> {
        prop_oneof![
            (quoted(), proptest::collection::vec(slo_stmt(), 0..4)).prop_map(|(name, stmts)| {
                Item::Slo(SloDecl {
                    name,
                    stmts,
                    span: sp(),
                })
            }),
            (
                quoted(),
                ident(),
                proptest::collection::vec(setting(), 0..4)
            )
                .prop_map(|(name, kind, settings)| {
                    Item::Destination(DestinationDecl {
                        name,
                        kind,
                        settings,
                        span: sp(),
                    })
                }),
            (sev(), proptest::collection::vec(sev_stmt(), 0..5)).prop_map(|(severity, stmts)| {
                Item::Severity(SeverityDecl {
                    severity,
                    stmts,
                    span: sp(),
                })
            }),
            (quoted(), expr(), sev()).prop_map(|(name, when, then)| Item::Rule(RuleDecl {
                name,
                when,
                then,
                span: sp()
            })),
            sev().prop_map(|severity| Item::Otherwise(OtherwiseDecl {
                severity,
                span: sp()
            })),
            (
                proptest::collection::vec(ident(), 1..4),
                proptest::option::of(dur()),
                proptest::option::of(dur())
            )
                .prop_map(|(by, wait, interval)| Item::Group(GroupDecl {
                    by,
                    wait,
                    interval,
                    span: sp()
                })),
        ]
    }
    fn file() -> impl Strategy<Value = File> {
        proptest::collection::vec(item(), 0..6).prop_map(|items| File { items })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn print_then_parse_round_trips(ast in file()) {
            let text = print_file(&ast);
            let (parsed, diags) = parse_file(0, &text);
            prop_assert!(diags.is_empty(), "diagnostics {:#?} for:\n{}", diags, text);
            prop_assert_eq!(&parsed, &ast, "text:\n{}", text);
            prop_assert_eq!(print_file(&parsed), text);
        }
    }
}

//! Parser tests: every construct, diagnostics (text and position),
//! recovery, resource limits, and never-panic properties.

use super::{MAX_NESTING, parse_file};
use crate::model::Severity;
use crate::rules::ast::*;
use crate::rules::diagnostics::{Code, Diagnostic};
use crate::rules::printer::print_file;
use crate::rules::source::{Sources, Span};

/// The sample rule file from the language description.
pub(crate) const SAMPLE: &str = r#"slo "checkout-availability" {
  objective 99.9%
  period    30d
  source    push          # SLI counts posted to the SLO events endpoint
}
slo "search-latency" { objective 99.5%; period 28d; source prometheus { errors "sum(rate(http_errors_total[5m]))"; total "sum(rate(http_requests_total[5m]))" } }
destination "payments-pd" pagerduty { routing_key env("PD_PAYMENTS_KEY") }
destination "status"      webhook   { url "https://status.example.com/hook" secret env("STATUS_SECRET") timeout 10s retries 3 verify true }
severity SEV1 {
  page        "payments-pd"
  notify      "exec", "status"
  cadence     15m
  ack timeout 5m escalate "exec"
  roles split commander, communications, operations
  postmortem  required
}
severity SEV2 { page "payments-pd"; notify "exec"; cadence 30m; postmortem required }
rule "checkout burning fast" {
  when labels.service == "checkout"
   and burn("checkout-availability", 1h) > 14.4
   and burn("checkout-availability", 5m) > 14.4
  then SEV1
}
rule "data loss"  { when annotations.data_loss == "true" then SEV1 }
rule "mixed" { when (labels.env =~ "prod|staging" or not labels.team in ["a", "b"]) and firing_for >= 10m and budget_remaining("checkout-availability") < 25% and labels.x not in ["y"] then SEV2 }
otherwise SEV3
group by service, slo wait 30s interval 5m
"#;

// ---- Helpers ----

/// Parses text that must be valid.
fn parse_ok(text: &str) -> File {
    let (f, d) = parse_file(0, text);
    assert!(d.is_empty(), "unexpected diagnostics for:\n{text}\n{d:#?}");
    f
}

/// The condition of a one-rule file.
fn when(cond: &str) -> Expr {
    let f = parse_ok(&format!("rule \"r\" {{ when {cond} then SEV1 }}"));
    match f.items.into_iter().next() {
        Some(Item::Rule(r)) => r.when,
        other => panic!("not a rule: {other:?}"),
    }
}

/// A diagnostic reduced to what tests check: code, message, line:col of
/// the primary label, the underlined text, notes.
#[derive(Debug)]
struct Seen {
    code: Code,
    message: String,
    at: (usize, usize),
    text: String,
    notes: Vec<String>,
}

fn diagnose(text: &str) -> (File, Vec<Seen>) {
    let mut sources = Sources::new();
    let id = sources.add("test.sev", text);
    let (f, d) = parse_file(id, text);
    let seen = d
        .into_iter()
        .map(|d: Diagnostic| {
            let span = d
                .primary
                .as_ref()
                .expect("every parse diagnostic has a location")
                .span;
            Seen {
                code: d.code,
                message: d.message,
                at: sources.line_col(id, span.start),
                text: text[span.start..span.end].to_string(),
                notes: d.notes,
            }
        })
        .collect();
    (f, seen)
}

/// The single diagnostic `text` must produce.
fn one(text: &str) -> Seen {
    let (_, mut d) = diagnose(text);
    assert_eq!(d.len(), 1, "expected one diagnostic for:\n{text}\n{d:#?}");
    d.remove(0)
}

fn ex(kind: ExprKind) -> Expr {
    Expr {
        kind,
        span: Span::default(),
    }
}
fn lbl(n: &str) -> Expr {
    ex(ExprKind::Label(n.to_string()))
}
fn s(v: &str) -> Expr {
    ex(ExprKind::Str(v.to_string()))
}
fn bx(e: Expr) -> Box<Expr> {
    Box::new(e)
}
fn eq(l: Expr, r: Expr) -> Expr {
    ex(ExprKind::Compare {
        op: CmpOp::Eq,
        lhs: bx(l),
        rhs: bx(r),
    })
}
fn name(v: &str) -> Name {
    Name {
        value: v.to_string(),
        span: Span::default(),
    }
}

// ---- Constructs ----

#[test]
fn sample_parses() {
    let f = parse_ok(SAMPLE);
    let kinds: Vec<&str> = f
        .items
        .iter()
        .map(|i| match i {
            Item::Slo(_) => "slo",
            Item::Destination(_) => "destination",
            Item::Severity(_) => "severity",
            Item::Rule(_) => "rule",
            Item::Otherwise(_) => "otherwise",
            Item::Group(_) => "group",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "slo",
            "slo",
            "destination",
            "destination",
            "severity",
            "severity",
            "rule",
            "rule",
            "rule",
            "otherwise",
            "group"
        ]
    );
}

#[test]
fn empty_and_comment_only_files() {
    assert!(parse_ok("").items.is_empty());
    assert!(parse_ok("  \n\t# just a comment").items.is_empty());
    assert_eq!(
        parse_ok("otherwise SEV3 # trailing comment, no newline")
            .items
            .len(),
        1
    );
}

#[test]
fn slo_statements() {
    let f = parse_ok(
        "slo \"a\" { objective 99.95%\n period 1h30m; source alerts }\nslo \"b\" { source prometheus { } }\nslo \"c\" { source prometheus { total \"t\" errors \"e\"; } }",
    );
    let Item::Slo(a) = &f.items[0] else { panic!() };
    assert_eq!(a.name.value, "a");
    assert_eq!(
        a.stmts,
        [
            SloStmt::Objective(PercentLit {
                percent: 99.95,
                span: Span::default()
            }),
            SloStmt::Period(DurationLit {
                secs: 5400,
                span: Span::default()
            }),
            SloStmt::Source(SloSourceSpec::Alerts {
                span: Span::default()
            }),
        ]
    );
    let Item::Slo(b) = &f.items[1] else { panic!() };
    assert_eq!(
        b.stmts,
        [SloStmt::Source(SloSourceSpec::Prometheus {
            queries: vec![],
            span: Span::default()
        })]
    );
    let Item::Slo(c) = &f.items[2] else { panic!() };
    let SloStmt::Source(SloSourceSpec::Prometheus { queries, .. }) = &c.stmts[0] else {
        panic!()
    };
    assert_eq!(
        queries
            .iter()
            .map(|q| (q.kind, q.query.value.as_str()))
            .collect::<Vec<_>>(),
        [(QueryKind::Total, "t"), (QueryKind::Errors, "e")]
    );
}

#[test]
fn destination_settings() {
    let f = parse_ok(
        "destination \"d\" webhook { url \"u\" key env(\"K\") n 2.5 p 50% t 1m b true c false; group \"g\" env env(\"E\") }",
    );
    let Item::Destination(d) = &f.items[0] else {
        panic!()
    };
    assert_eq!(d.kind, name("webhook"));
    let sp = Span::default();
    let got: Vec<(&str, &SettingValue)> = d
        .settings
        .iter()
        .map(|s| (s.key.value.as_str(), &s.value))
        .collect();
    assert_eq!(
        got,
        [
            ("url", &SettingValue::Str(name("u"))),
            ("key", &SettingValue::Env(name("K"))),
            (
                "n",
                &SettingValue::Number {
                    value: 2.5,
                    span: sp
                }
            ),
            (
                "p",
                &SettingValue::Percent(PercentLit {
                    percent: 50.0,
                    span: sp
                })
            ),
            (
                "t",
                &SettingValue::Duration(DurationLit { secs: 60, span: sp })
            ),
            (
                "b",
                &SettingValue::Bool {
                    value: true,
                    span: sp
                }
            ),
            (
                "c",
                &SettingValue::Bool {
                    value: false,
                    span: sp
                }
            ),
            ("group", &SettingValue::Str(name("g"))),
            ("env", &SettingValue::Env(name("E"))),
        ]
    );
}

#[test]
fn severity_statements() {
    let f = parse_ok(
        "severity SEV2 {\n page \"a\", \"b\"\n notify \"c\"\n cadence 1h\n ack timeout 5m escalate \"x\", \"y\"\n roles commander\n roles split a, b\n postmortem optional\n}",
    );
    let Item::Severity(d) = &f.items[0] else {
        panic!()
    };
    assert_eq!(d.severity.severity, Severity::Sev2);
    let sp = Span::default();
    assert_eq!(
        d.stmts,
        [
            SeverityStmt::Page {
                targets: vec![name("a"), name("b")],
                span: sp
            },
            SeverityStmt::Notify {
                targets: vec![name("c")],
                span: sp
            },
            SeverityStmt::Cadence {
                every: DurationLit {
                    secs: 3600,
                    span: sp
                },
                span: sp
            },
            SeverityStmt::AckTimeout {
                timeout: DurationLit {
                    secs: 300,
                    span: sp
                },
                escalate: vec![name("x"), name("y")],
                span: sp
            },
            SeverityStmt::Roles {
                split: false,
                roles: vec![name("commander")],
                span: sp
            },
            SeverityStmt::Roles {
                split: true,
                roles: vec![name("a"), name("b")],
                span: sp
            },
            SeverityStmt::Postmortem {
                required: false,
                span: sp
            },
        ]
    );
}

#[test]
fn otherwise_and_group() {
    let f =
        parse_ok("otherwise SEV1\ngroup by a\ngroup by slo, wait interval 1m\ngroup by x wait 0s");
    let sp = Span::default();
    assert_eq!(
        f.items[0],
        Item::Otherwise(OtherwiseDecl {
            severity: SeverityLit {
                severity: Severity::Sev1,
                span: sp
            },
            span: sp
        })
    );
    assert_eq!(
        f.items[1],
        Item::Group(GroupDecl {
            by: vec![name("a")],
            wait: None,
            interval: None,
            span: sp
        })
    );
    assert_eq!(
        f.items[2],
        Item::Group(GroupDecl {
            by: vec![name("slo"), name("wait")],
            wait: None,
            interval: Some(DurationLit { secs: 60, span: sp }),
            span: sp
        })
    );
    assert_eq!(
        f.items[3],
        Item::Group(GroupDecl {
            by: vec![name("x")],
            wait: Some(DurationLit { secs: 0, span: sp }),
            interval: None,
            span: sp
        })
    );
}

#[test]
fn precedence_and_associativity() {
    let (a, b, c) = (lbl("a"), lbl("b"), lbl("c"));
    let or = |l, r| ex(ExprKind::Or(vec![l, r]));
    let and = |l, r| ex(ExprKind::And(vec![l, r]));
    let not = |x| ex(ExprKind::Not(bx(x)));
    // A chain is one node with every operand; parentheses nest.
    assert_eq!(
        when("labels.a or labels.b or labels.c"),
        ex(ExprKind::Or(vec![a.clone(), b.clone(), c.clone()]))
    );
    assert_eq!(
        when("labels.a and labels.b and labels.c"),
        ex(ExprKind::And(vec![a.clone(), b.clone(), c.clone()]))
    );
    assert_eq!(
        when("(labels.a and labels.b) and labels.c"),
        and(and(a.clone(), b.clone()), c.clone())
    );
    assert_eq!(
        when("labels.a or labels.b and labels.c"),
        or(a.clone(), and(b.clone(), c.clone()))
    );
    assert_eq!(
        when("labels.a and labels.b or labels.c"),
        or(and(a.clone(), b.clone()), c.clone())
    );
    assert_eq!(
        when("labels.a and (labels.b or labels.c)"),
        and(a.clone(), or(b.clone(), c.clone()))
    );
    assert_eq!(
        when("not labels.a and labels.b"),
        and(not(a.clone()), b.clone())
    );
    assert_eq!(when("not not labels.a"), not(not(a.clone())));
    assert_eq!(when("not labels.a == \"x\""), not(eq(a.clone(), s("x"))));
    assert_eq!(when("((labels.a))"), a.clone());
    assert_eq!(
        when("(labels.a == \"x\") == labels.b"),
        eq(eq(a.clone(), s("x")), b.clone())
    );
}

#[test]
fn comparisons_and_operands() {
    let ops = [
        ("==", CmpOp::Eq),
        ("!=", CmpOp::Ne),
        ("=~", CmpOp::Match),
        ("!~", CmpOp::NotMatch),
        ("<", CmpOp::Lt),
        ("<=", CmpOp::Le),
        (">", CmpOp::Gt),
        (">=", CmpOp::Ge),
    ];
    for (text, op) in ops {
        let got = when(&format!("firing_for{text}1h"));
        let want = ex(ExprKind::Compare {
            op,
            lhs: bx(ex(ExprKind::FiringFor)),
            rhs: bx(ex(ExprKind::Duration(3600))),
        });
        assert_eq!(got, want, "{text}");
    }
    let sp = Span::default();
    assert_eq!(
        when("burn(\"s\", 1h) > 14.4"),
        ex(ExprKind::Compare {
            op: CmpOp::Gt,
            lhs: bx(ex(ExprKind::Burn {
                slo: name("s"),
                window: DurationLit {
                    secs: 3600,
                    span: sp
                }
            })),
            rhs: bx(ex(ExprKind::Number(14.4))),
        })
    );
    assert_eq!(
        when("budget_remaining ( \"s\" ) < 25%"),
        ex(ExprKind::Compare {
            op: CmpOp::Lt,
            lhs: bx(ex(ExprKind::BudgetRemaining { slo: name("s") })),
            rhs: bx(ex(ExprKind::Percent(25.0))),
        })
    );
    // Keywords are contextual: a label may be called `and`.
    assert_eq!(
        when("labels.and == annotations . not"),
        eq(lbl("and"), ex(ExprKind::Annotation("not".into())))
    );
}

#[test]
fn in_lists() {
    let list = vec![
        s("a"),
        ex(ExprKind::Number(1.0)),
        ex(ExprKind::Percent(2.5)),
        ex(ExprKind::Duration(90)),
    ];
    assert_eq!(
        when("labels.x in [\"a\", 1, 2.5%, 90s]"),
        ex(ExprKind::In {
            negated: false,
            value: bx(lbl("x")),
            list
        })
    );
    assert_eq!(
        when("labels.x not in []"),
        ex(ExprKind::In {
            negated: true,
            value: bx(lbl("x")),
            list: vec![]
        })
    );
    assert_eq!(
        when("not labels.x in [\"a\"]"),
        ex(ExprKind::Not(bx(ex(ExprKind::In {
            negated: false,
            value: bx(lbl("x")),
            list: vec![s("a")]
        }))))
    );
}

#[test]
fn strings_decode_escapes() {
    assert_eq!(
        when(r#""a\"b\\c\nd\te\rf\u{1F600}\u{e9}""#),
        s("a\"b\\c\nd\te\rf😀é")
    );
    assert_eq!(
        when("\"raw é 😀 # not a comment\""),
        s("raw é 😀 # not a comment")
    );
}

#[test]
fn durations_and_numbers() {
    let d = |t: &str| when(&format!("firing_for > {t}"));
    let secs = |n| {
        ex(ExprKind::Compare {
            op: CmpOp::Gt,
            lhs: bx(ex(ExprKind::FiringFor)),
            rhs: bx(ex(ExprKind::Duration(n))),
        })
    };
    assert_eq!(d("0s"), secs(0));
    assert_eq!(d("1h30m"), secs(5400));
    assert_eq!(d("2w1d"), secs(2 * 604_800 + 86_400));
    assert_eq!(d("30m1h"), secs(5400));
    assert_eq!(d("18446744073709551615s"), secs(u64::MAX));
    assert_eq!(when("0.000001"), ex(ExprKind::Number(0.000001)));
    assert_eq!(when("007"), ex(ExprKind::Number(7.0)));
}

#[test]
fn spans_point_at_source() {
    let text = "rule \"r\" { when (labels.a == \"x\") and not labels.b in [1] then SEV1 }";
    let f = parse_ok(text);
    let Item::Rule(r) = &f.items[0] else { panic!() };
    let at = |sp: Span| text[sp.start..sp.end].to_string();
    assert_eq!(at(r.span), text);
    assert_eq!(at(r.name.span), "\"r\"");
    assert_eq!(at(r.then.span), "SEV1");
    // Binary spans run from the lhs start (parentheses excluded) to the rhs end.
    assert_eq!(
        at(r.when.span),
        "labels.a == \"x\") and not labels.b in [1]"
    );
    let ExprKind::And(terms) = &r.when.kind else {
        panic!()
    };
    let [l, rt] = &terms[..] else { panic!() };
    assert_eq!(at(l.span), "labels.a == \"x\"");
    assert_eq!(at(rt.span), "not labels.b in [1]");
    let ExprKind::Not(inner) = &rt.kind else {
        panic!()
    };
    assert_eq!(at(inner.span), "labels.b in [1]");

    let text = "severity SEV1 {\n  ack timeout 5m escalate \"a\", \"b\"\n}\ndestination \"d\" k { s env(\"X\") }";
    let f = parse_ok(text);
    let at = |sp: Span| text[sp.start..sp.end].to_string();
    let Item::Severity(sv) = &f.items[0] else {
        panic!()
    };
    assert_eq!(at(sv.span), &text[..text.find('}').unwrap() + 1]);
    let SeverityStmt::AckTimeout { span, timeout, .. } = &sv.stmts[0] else {
        panic!()
    };
    assert_eq!(at(*span), "ack timeout 5m escalate \"a\", \"b\"");
    assert_eq!(at(timeout.span), "5m");
    let Item::Destination(d) = &f.items[1] else {
        panic!()
    };
    assert_eq!(at(d.settings[0].span), "s env(\"X\")");
    let SettingValue::Env(var) = &d.settings[0].value else {
        panic!()
    };
    assert_eq!(at(var.span), "\"X\"");
    assert_eq!(d.span.file, 0);
}

// ---- Diagnostics ----

#[test]
fn expected_then_found_than() {
    let d = one("rule \"r\" {\n  when labels.x == \"y\" than SEV1\n}\n");
    assert_eq!(d.code, Code::Syntax);
    assert_eq!(d.message, "expected `then`, found `than`");
    assert_eq!(d.at, (2, 24));
    assert_eq!(d.text, "than");
    assert_eq!(d.notes, ["did you mean `then`?"]);
}

#[test]
fn unknown_severity_statement_lists_alternatives() {
    let d = one("severity SEV1 {\n  pgae \"x\"\n}\n");
    assert_eq!(
        d.message,
        "expected one of `page`, `notify`, `cadence`, `ack`, `roles`, `fallback`, `postmortem` or `}`, found `pgae`"
    );
    assert_eq!(d.at, (2, 3));
    assert_eq!(d.notes, ["did you mean `page`?"]);
}

#[test]
fn unknown_item() {
    let d = one("\n\n  sol \"x\" {}\n");
    assert_eq!(
        d.message,
        "expected one of `slo`, `destination`, `severity`, `rule`, `otherwise` or `group`, found `sol`"
    );
    assert_eq!(d.at, (3, 3));
    assert_eq!(d.notes, ["did you mean `slo`?"]);
}

#[test]
fn found_end_of_file() {
    let d = one("rule \"r\" { when labels.a == \"b\"");
    assert_eq!(d.message, "expected `then`, found end of file");
    assert_eq!(d.at, (1, 32));
    let d = one("severity SEV1 { page \"a\"\n");
    assert_eq!(
        d.message,
        "expected one of `page`, `notify`, `cadence`, `ack`, `roles`, `fallback`, `postmortem` or `}`, found end of file"
    );
    assert_eq!(d.at, (2, 1));
}

#[test]
fn expected_kinds_of_token() {
    assert_eq!(one("slo { }").message, "expected a string, found `{`");
    assert_eq!(
        one("slo \"a\" { objective 99.9 }").message,
        "expected a percentage, found `99.9`"
    );
    assert_eq!(
        one("slo \"a\" { period 30 }").message,
        "expected a duration, found `30`"
    );
    assert_eq!(
        one("otherwise SEV4").message,
        "expected one of `SEV1`, `SEV2` or `SEV3`, found `SEV4`"
    );
    assert_eq!(
        one("group by").message,
        "expected an identifier, found end of file"
    );
    assert_eq!(
        one("destination \"d\" k { 5 }").message,
        "expected a setting name or `}`, found `5`"
    );
    assert_eq!(
        one("destination \"d\" k { a b }").message,
        "expected one of a string, `env`, a number, a percentage, a duration, `true` or `false`, found `b`"
    );
    assert_eq!(
        one("rule \"r\" { when labels.x in [\"a\" \"b\"] then SEV1 }").message,
        "expected `,` or `]`, found `\"b\"`"
    );
    assert_eq!(
        one("rule \"r\" { when labels.x in [ then SEV1 }").message,
        "expected a literal or `]`, found `then`"
    );
    assert_eq!(
        one("rule \"r\" { when labels.x not labels.y then SEV1 }").message,
        "expected `in`, found `labels`"
    );
    assert_eq!(
        one("rule \"r\" { when x then SEV1 }").message,
        "expected one of `not`, `(`, `labels`, `annotations`, `burn`, `budget_remaining`, `firing_for` or a literal, found `x`"
    );
    let long = one("slo \"a\" { period \"a string long enough to be shortened\" }");
    assert_eq!(
        long.message,
        "expected a duration, found `\"a string long enoug…\"`"
    );
}

#[test]
fn chained_comparison_gets_a_hint() {
    let d = one("rule \"r\" { when 1 < firing_for < 2 then SEV1 }");
    assert_eq!(d.message, "expected `then`, found `<`");
    assert_eq!(
        d.notes,
        ["comparisons do not chain: combine them with `and`, or add parentheses"]
    );
}

#[test]
fn unterminated_strings() {
    let d = one("rule \"r\" { when labels.a == \"abc\n then SEV1 }");
    assert_eq!(d.code, Code::UnterminatedString);
    assert_eq!(d.at, (1, 29));
    assert_eq!(d.text, "\"");
    let d = one("otherwise SEV1\nslo \"abc");
    assert_eq!(d.code, Code::UnterminatedString);
    assert_eq!(d.at, (2, 5));
    let d = one("slo \"abc\\");
    assert_eq!(d.code, Code::UnterminatedString);
}

#[test]
fn bad_escapes() {
    let d = one("slo \"ab\\qc\" {}");
    assert_eq!(d.code, Code::BadEscape);
    assert_eq!(d.message, "invalid escape `\\q` in string: unknown escape");
    assert_eq!((d.at, d.text.as_str()), ((1, 8), "\\q"));
    for (text, bad) in [
        ("slo \"\\u{110000}\" {}", "\\u{110000}"),
        ("slo \"\\u{D800}\" {}", "\\u{D800}"),
        ("slo \"\\u{}\" {}", "\\u{}"),
        ("slo \"\\u{1234567}\" {}", "\\u{1234567}"),
        ("slo \"\\u{12x}\" {}", "\\u{12"),
        ("slo \"\\u12\" {}", "\\u"),
    ] {
        let d = one(text);
        assert_eq!(d.code, Code::BadEscape, "{text}");
        assert_eq!(d.text, bad, "{text}");
        assert_eq!(d.at, (1, 6), "{text}");
    }
}

#[test]
fn bad_durations() {
    let d = one("slo \"a\" { period 5x }");
    assert_eq!(d.code, Code::BadDuration);
    assert_eq!(d.message, "invalid duration `5x`: unknown unit `x`");
    assert_eq!((d.at, d.text.as_str()), ((1, 18), "5x"));
    let d = one("slo \"a\" { period 1.5h }");
    assert_eq!(
        d.message,
        "invalid duration `1.5h`: a duration takes whole numbers"
    );
    assert_eq!(d.notes, ["combine whole units instead, such as `1h30m`"]);
    assert_eq!(
        one("slo \"a\" { period 10ms }").message,
        "invalid duration `10ms`: unknown unit `ms`"
    );
    assert_eq!(
        one("slo \"a\" { period 1h30 }").message,
        "invalid duration `1h30`: missing unit after `30`"
    );
    let d = one("slo \"a\" { period 99999999999999999999s }");
    assert_eq!(
        (d.code, d.message.as_str()),
        (
            Code::BadDuration,
            "invalid duration `99999999999999999999s`: too large"
        )
    );
    let d = one("slo \"a\" { period 30500568904944w }");
    assert_eq!(d.message, "invalid duration `30500568904944w`: too large");
    assert_eq!(
        one("slo \"a\" { period 18446744073709551615s1s }").code,
        Code::BadDuration
    );
}

#[test]
fn bad_numbers() {
    let d = one("rule \"r\" { when firing_for > 1. then SEV1 }");
    assert_eq!(
        (d.code, d.message.as_str(), d.text.as_str()),
        (Code::BadNumber, "invalid number `1.`", "1.")
    );
    assert_eq!(
        one("rule \"r\" { when firing_for > 1.2.3 then SEV1 }").message,
        "invalid number `1.2.3`"
    );
    let huge = "9".repeat(400);
    let d = one(&format!(
        "rule \"r\" {{ when firing_for > {huge} then SEV1 }}"
    ));
    assert_eq!(d.code, Code::BadNumber);
    assert!(
        d.message.starts_with("number `999") && d.message.ends_with("…` is too large"),
        "{}",
        d.message
    );
    assert_eq!(
        one(&format!("slo \"a\" {{ objective {huge}% }}")).code,
        Code::BadNumber
    );
}

#[test]
fn nesting_is_limited() {
    let ok = format!(
        "{}labels.a{}",
        "(".repeat(MAX_NESTING),
        ")".repeat(MAX_NESTING)
    );
    assert_eq!(when(&ok), lbl("a"));
    let deep = format!(
        "rule \"r\" {{ when {}labels.a{} then SEV1 }}",
        "(".repeat(65),
        ")".repeat(65)
    );
    let d = one(&deep);
    assert_eq!(
        (d.code, d.message.as_str()),
        (Code::Syntax, "expression nested too deeply")
    );
    assert_eq!(d.at, (1, 81));
    let nots = format!(
        "rule \"r\" {{ when {}labels.a then SEV1 }}",
        "not ".repeat(1000)
    );
    assert_eq!(one(&nots).message, "expression nested too deeply");
    // A flat chain does not nest: it is one wide node, however long.
    let chain = vec!["labels.a == \"x\""; 10_000].join(" and ");
    let f = parse_ok(&format!("rule \"r\" {{ when {chain} then SEV1 }}"));
    let Item::Rule(r) = &f.items[0] else { panic!() };
    let ExprKind::And(terms) = &r.when.kind else {
        panic!()
    };
    assert_eq!(terms.len(), 10_000);
    // Deep input of other kinds is linear, not recursive.
    let (_, d) = parse_file(0, &"{".repeat(100_000));
    assert_eq!(d.len(), 1);
    let (_, d) = parse_file(0, &format!("rule \"r\" {{ when {} ", "(".repeat(100_000)));
    assert_eq!(d.len(), 1);
}

// ---- Recovery ----

#[test]
fn three_mistakes_three_diagnostics() {
    let text = r##"slo "a" {
  objective 99.9%
  period 30x
  source push
}
destination "d" slack { channel "#ops" }
severity SEV1 {
  page "d"
  pgae "d"
  cadence 15m
}
rule "one" { when labels.a == "b" than SEV1 }
rule "two" { when labels.a == "c" then SEV2 }
otherwise SEV3
"##;
    let (f, d) = diagnose(text);
    let got: Vec<(Code, (usize, usize))> = d.iter().map(|d| (d.code, d.at)).collect();
    assert_eq!(
        got,
        [
            (Code::BadDuration, (3, 10)),
            (Code::Syntax, (9, 3)),
            (Code::Syntax, (12, 35))
        ],
        "{d:#?}"
    );
    assert_eq!(f.items.len(), 5);
    let Item::Slo(slo) = &f.items[0] else {
        panic!()
    };
    assert_eq!(slo.stmts.len(), 2, "objective and source survive");
    assert!(matches!(f.items[1], Item::Destination(_)));
    let Item::Severity(sev) = &f.items[2] else {
        panic!()
    };
    assert_eq!(sev.stmts.len(), 2, "page and cadence survive");
    let Item::Rule(two) = &f.items[3] else {
        panic!()
    };
    assert_eq!(two.name.value, "two");
    assert!(matches!(f.items[4], Item::Otherwise(_)));
}

#[test]
fn statement_recovery_after_semicolon() {
    let (f, d) = diagnose("severity SEV2 { page 5; notify \"x\"; cadence 1h }\notherwise SEV1");
    assert_eq!(d.len(), 1, "{d:#?}");
    let Item::Severity(sev) = &f.items[0] else {
        panic!()
    };
    assert_eq!(sev.stmts.len(), 2);
    assert_eq!(f.items.len(), 2);
}

#[test]
fn unclosed_block_ends_at_next_item() {
    let (f, d) =
        diagnose("severity SEV1 {\n  page \"a\"\nrule \"r\" { when firing_for > 1m then SEV1 }\n");
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(
        d[0].message,
        "expected one of `page`, `notify`, `cadence`, `ack`, `roles`, `fallback`, `postmortem` or `}`, found `rule`"
    );
    assert_eq!(f.items.len(), 2);
    let Item::Severity(sev) = &f.items[0] else {
        panic!()
    };
    assert_eq!(sev.stmts.len(), 1);
}

#[test]
fn nested_block_error_does_not_cascade() {
    let text = "slo \"a\" {\n  source prometheus {\n    errors \"e\"\n    totl \"t\"\n  }\n  period 30d\n}\notherwise SEV3\n";
    let (f, d) = diagnose(text);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(
        d[0].message,
        "expected one of `errors`, `total` or `}`, found `totl`"
    );
    let Item::Slo(slo) = &f.items[0] else {
        panic!()
    };
    assert_eq!(slo.stmts.len(), 1, "period survives");
    assert_eq!(f.items.len(), 2);
}

#[test]
fn item_header_error_skips_the_block() {
    // `group` as a setting key inside the skipped block is not an item.
    let text = "destination \"d\" {\n  group \"x\"\n}\nslo \"s\" { period 1d }\n";
    let (f, d) = diagnose(text);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].message, "expected an identifier, found `{`");
    assert_eq!(f.items.len(), 1);
    assert!(matches!(f.items[0], Item::Slo(_)));
}

#[test]
fn strings_and_comments_are_skipped_when_resynchronising() {
    // Braces in strings and comments do not count, so the indented
    // `group` setting is still inside the skipped block.
    let text =
        "destination \"d\" {\n  a \"}\" # }\n  group \"x\"\n}\n# rule\nslo \"s\" { period 1d }\n";
    let (f, d) = diagnose(text);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(f.items.len(), 1);
    assert!(matches!(f.items[0], Item::Slo(_)));
    // An unterminated string ends at its line; the next line is read.
    let (f, d) = diagnose("slo \"a {\notherwise SEV1\n");
    assert_eq!(d.len(), 1);
    assert_eq!(f.items.len(), 1);
}

#[test]
fn stray_tokens_at_top_level() {
    // `}` and `;` are skipped together up to `otherwise`, then the `}`
    // after it up to `group`.
    let (f, d) = diagnose("}\n;\notherwise SEV1 }\ngroup by a");
    assert_eq!(d.len(), 2, "{d:#?}");
    assert_eq!(f.items.len(), 2);
}

#[test]
fn many_errors_stay_linear() {
    let text = "severity SEV1 {\n".to_string() + &"  page 1\n".repeat(20_000) + "}\n";
    let (f, d) = parse_file(0, &text);
    assert_eq!(d.len(), 20_000);
    assert_eq!(f.items.len(), 1);
}

// ---- Properties ----

mod props {
    use proptest::prelude::*;

    use super::SAMPLE;
    use crate::rules::parser::parse_file;
    use crate::rules::printer::print_file;
    use crate::rules::source::Sources;

    /// Parses without panicking; diagnostics point inside the text at char
    /// boundaries and render; a clean parse round-trips through the printer.
    fn check(text: &str) -> Result<(), TestCaseError> {
        let mut sources = Sources::new();
        let id = sources.add("fuzz.sev", text);
        let (file, diags) = parse_file(id, text);
        for d in &diags {
            let span = d.primary.as_ref().map(|l| l.span).expect("located");
            prop_assert!(span.start <= span.end && span.end <= text.len());
            prop_assert!(text.is_char_boundary(span.start) && text.is_char_boundary(span.end));
            let _ = d.render(&sources);
        }
        if diags.is_empty() {
            let printed = print_file(&file);
            let (again, d2) = parse_file(id, &printed);
            prop_assert!(d2.is_empty(), "{:#?}\n{}", d2, printed);
            prop_assert_eq!(&again, &file);
            prop_assert_eq!(print_file(&again), printed);
        }
        Ok(())
    }

    #[derive(Clone, Debug)]
    enum Edit {
        Insert(usize, char),
        Delete(usize),
        Replace(usize, char),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        let ch = prop_oneof![
            4 => proptest::sample::select("{}()[]\",;.%#=!<>~\\ \n0123456789smhdwx_aeSEV".chars().collect::<Vec<_>>()),
            1 => any::<char>(),
        ];
        prop_oneof![
            (any::<usize>(), ch.clone()).prop_map(|(p, c)| Edit::Insert(p, c)),
            any::<usize>().prop_map(Edit::Delete),
            (any::<usize>(), ch).prop_map(|(p, c)| Edit::Replace(p, c)),
        ]
    }

    fn apply(text: &str, edits: &[Edit]) -> String {
        let mut chars: Vec<char> = text.chars().collect();
        for e in edits {
            match *e {
                Edit::Insert(p, c) => chars.insert(p % (chars.len() + 1), c),
                Edit::Delete(p) if !chars.is_empty() => {
                    let at = p % chars.len();
                    chars.remove(at);
                }
                Edit::Replace(p, c) if !chars.is_empty() => {
                    let at = p % chars.len();
                    chars[at] = c;
                }
                _ => {}
            }
        }
        chars.into_iter().collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_strings_never_panic(text in any::<String>()) {
            check(&text)?;
        }

        #[test]
        fn token_soup_never_panics(text in "([a-zA-Z_]{1,6}|[0-9]{1,4}(\\.[0-9])?[smhdw%]?|[{}()\\[\\]\",;.%#=!<>~\\\\ \n\t]|\"[a-z\\\\]{0,5}\"){0,60}") {
            check(&text)?;
        }

        #[test]
        fn mutated_sample_never_panics(edits in proptest::collection::vec(edit(), 1..8)) {
            check(&apply(SAMPLE, &edits))?;
        }
    }
}

#[test]
fn deepest_accepted_nesting_fits_a_small_stack() {
    // 64 levels of parentheses and `not` must parse, print and drop on a
    // 1 MiB thread even in a debug build.
    let deep = "(not ".repeat(MAX_NESTING / 2) + "labels.a == 1" + &")".repeat(MAX_NESTING / 2);
    let text = format!("rule \"r\" {{ when {deep} and labels.b == 2 then SEV1 }}");
    let printed = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            let f = parse_ok(&text);
            let printed = print_file(&f);
            assert_eq!(parse_ok(&printed), f);
            printed
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(printed.contains("not not not"), "{printed}");
}

#[test]
fn a_long_flat_chain_fits_a_small_stack() {
    // A chain is one node, so its length costs no recursion anywhere.
    let chain = vec!["labels.a == \"x\""; 10_000].join(" or ");
    let text = format!("rule \"r\" {{ when labels.b == \"y\" and ({chain}) then SEV1 }}");
    std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            let f = parse_ok(&text);
            let printed = print_file(&f);
            assert_eq!(parse_ok(&printed), f);
        })
        .unwrap()
        .join()
        .unwrap();
}

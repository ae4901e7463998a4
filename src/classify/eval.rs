//! Evaluating compiled conditions. Two paths over the same semantics: a
//! fast one that only answers true/false (run for every candidate rule),
//! and a traced one that also records the values seen (run only for the
//! rules that matched, to explain them).

use time::OffsetDateTime;

use crate::classify::burn::BurnSnapshot;
use crate::model::{Alert, push_quoted};
use crate::rules::RuleSet;
use crate::rules::printer::{format_number, print_duration};
use crate::rules::{Cond, NumOp, NumOperand, StrOperand};

/// Everything a condition can read.
pub(crate) struct EvalCtx<'a> {
    pub ruleset: &'a RuleSet,
    pub alert: &'a Alert,
    pub burn: &'a BurnSnapshot,
    pub now: OffsetDateTime,
}

impl EvalCtx<'_> {
    fn str_value<'s>(&'s self, operand: &'s StrOperand) -> &'s str {
        match operand {
            StrOperand::Label(name) => self.alert.label(name),
            StrOperand::Annotation(name) => self.alert.annotation(name),
            StrOperand::Literal(text) => text,
        }
    }

    /// The number an operand reads; `None` is "no data".
    fn num_value(&self, operand: &NumOperand) -> Option<f64> {
        match operand {
            NumOperand::Literal(x) | NumOperand::Percent(x) => Some(*x),
            NumOperand::Duration(secs) => Some(*secs as f64),
            NumOperand::Burn { slo, window_secs } => {
                self.burn.burn(&self.ruleset.slos[*slo].name, *window_secs)
            }
            NumOperand::BudgetRemaining { slo } => {
                self.burn.budget_remaining(&self.ruleset.slos[*slo].name)
            }
            NumOperand::FiringFor => Some(self.firing_for_secs() as f64),
        }
    }

    /// The floor a burn-rate alert set under a burn with no value.
    fn floor(&self, operand: &NumOperand) -> Option<f64> {
        match operand {
            NumOperand::Burn { slo, window_secs } => {
                self.burn.floor(&self.ruleset.slos[*slo].name, *window_secs)
            }
            _ => None,
        }
    }

    /// Whole seconds since the alert started, 0 when it did not say or
    /// starts in the future.
    fn firing_for_secs(&self) -> i64 {
        self.alert
            .starts_at
            .map(|start| (self.now - start).whole_seconds().max(0))
            .unwrap_or(0)
    }
}

/// Three-valued truth. A comparison that reads a missing burn or budget is
/// `Unknown`, and `Unknown` stays `Unknown` through `not` (Kleene logic, as
/// SQL's NULL): no data can never make a rule match, not even negated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Truth {
    False,
    Unknown,
    True,
}

impl Truth {
    fn of(value: bool) -> Truth {
        if value { Truth::True } else { Truth::False }
    }

    fn not(self) -> Truth {
        match self {
            Truth::True => Truth::False,
            Truth::False => Truth::True,
            Truth::Unknown => Truth::Unknown,
        }
    }
}

/// `burn OP r` when all that is known is `burn > floor`: decided only when
/// `floor >= r` (then the burn is above `r` too), unknown otherwise.
fn floor_truth(op: NumOp, floor: f64, r: f64) -> Truth {
    if floor < r {
        return Truth::Unknown;
    }
    match op {
        NumOp::Gt | NumOp::Ge | NumOp::Ne => Truth::True,
        NumOp::Lt | NumOp::Le | NumOp::Eq => Truth::False,
    }
}

/// True when the condition definitely holds.
pub(crate) fn holds(cond: &Cond, ctx: &EvalCtx<'_>) -> bool {
    truth(cond, ctx) == Truth::True
}

/// The condition's truth value.
pub(crate) fn truth(cond: &Cond, ctx: &EvalCtx<'_>) -> Truth {
    match cond {
        Cond::And(parts) => {
            let mut result = Truth::True;
            for part in parts {
                match truth(part, ctx) {
                    Truth::False => return Truth::False,
                    Truth::Unknown => result = Truth::Unknown,
                    Truth::True => {}
                }
            }
            result
        }
        Cond::Or(parts) => {
            let mut result = Truth::False;
            for part in parts {
                match truth(part, ctx) {
                    Truth::True => return Truth::True,
                    Truth::Unknown => result = Truth::Unknown,
                    Truth::False => {}
                }
            }
            result
        }
        Cond::Not(inner) => truth(inner, ctx).not(),
        Cond::StrCmp { negated, lhs, rhs } => {
            Truth::of((ctx.str_value(lhs) == ctx.str_value(rhs)) != *negated)
        }
        Cond::Regex {
            negated,
            value,
            regex,
            ..
        } => Truth::of(regex.is_match(ctx.str_value(value)) != *negated),
        Cond::StrIn {
            negated,
            value,
            list,
        } => {
            let v = ctx.str_value(value);
            Truth::of(list.iter().any(|item| item == v) != *negated)
        }
        Cond::NumCmp { op, lhs, rhs } => match (ctx.num_value(lhs), ctx.num_value(rhs)) {
            (Some(l), Some(r)) => Truth::of(op.holds(l, r)),
            (None, Some(r)) => ctx
                .floor(lhs)
                .map_or(Truth::Unknown, |f| floor_truth(*op, f, r)),
            (Some(l), None) => ctx
                .floor(rhs)
                .map_or(Truth::Unknown, |f| floor_truth(op.flipped(), f, l)),
            (None, None) => Truth::Unknown,
        },
        Cond::NumIn {
            negated,
            value,
            list,
        } => match ctx.num_value(value) {
            Some(v) => Truth::of(list.contains(&v) != *negated),
            None => Truth::Unknown,
        },
    }
}

/// Appends, in plain words, the values behind `cond`'s truth value, which
/// must be definite: classification explains only the rules that matched,
/// and a definite condition never rests on an unknown part, so "no data"
/// is never part of an explanation.
///
/// An `and` or `or` shows the parts that settled it (for a true `and`
/// every part, for a true `or` the parts that held; for a false `and` the
/// parts that failed, for a false `or` every part). So each line of a true
/// condition is a true statement and each line of a false one a false
/// statement, which `not` turns around line by line: `not (a or b)` that
/// holds reads `not (a)` and `not (b)`, never a joined line whose `and`
/// or `or` could read wrong.
pub(crate) fn trace(cond: &Cond, ctx: &EvalCtx<'_>, out: &mut Vec<String>) {
    match cond {
        Cond::And(parts) | Cond::Or(parts) => {
            // The value that settles the result on its own.
            let decisive = if matches!(cond, Cond::And(_)) {
                Truth::False
            } else {
                Truth::True
            };
            let truths: Vec<Truth> = parts.iter().map(|part| truth(part, ctx)).collect();
            let settled = truths.contains(&decisive);
            for (part, t) in parts.iter().zip(truths) {
                // Unsettled and definite, every part has the other value.
                if !settled || t == decisive {
                    trace(part, ctx, out);
                }
            }
        }
        Cond::Not(inner) => {
            let mut inner_out = Vec::new();
            trace(inner, ctx, &mut inner_out);
            out.extend(inner_out.into_iter().map(|line| format!("not ({line})")));
        }
        leaf => out.extend(describe_leaf(leaf, ctx)),
    }
}

/// A leaf condition and the values it read; `None` when it read no data
/// (its truth is unknown, so [`trace`] never shows it).
fn describe_leaf(cond: &Cond, ctx: &EvalCtx<'_>) -> Option<String> {
    let line = match cond {
        Cond::StrCmp { negated, lhs, rhs } => format!(
            "{} {} {}",
            describe_str(lhs, ctx),
            if *negated { "!=" } else { "==" },
            describe_str(rhs, ctx)
        ),
        Cond::Regex {
            negated,
            value,
            pattern,
            ..
        } => format!(
            "{} {} {:?}",
            describe_str(value, ctx),
            if *negated { "!~" } else { "=~" },
            pattern
        ),
        Cond::StrIn {
            negated,
            value,
            list,
        } => format!(
            "{} {} [{}]",
            describe_str(value, ctx),
            if *negated { "not in" } else { "in" },
            list.iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Cond::NumCmp { op, lhs, rhs } => format!(
            "{} {} {}",
            describe_num_or_floor(lhs, ctx)?,
            op.symbol(),
            describe_num_or_floor(rhs, ctx)?
        ),
        Cond::NumIn {
            negated,
            value,
            list,
        } => format!(
            "{} {} [{}]",
            describe_num(value, ctx.num_value(value)?, ctx),
            if *negated { "not in" } else { "in" },
            list.iter()
                .map(|n| format_as(value, *n))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Cond::And(_) | Cond::Or(_) | Cond::Not(_) => return None,
    };
    Some(line)
}

/// `labels.severity = "critical"`, `annotations.x = "..."` or `"text"`,
/// as `{:?}` quotes (every classification explains itself, so this runs
/// for every ingested alert).
fn describe_str(operand: &StrOperand, ctx: &EvalCtx<'_>) -> String {
    let mut out = String::with_capacity(48);
    match operand {
        StrOperand::Label(name) => {
            out.push_str("labels.");
            out.push_str(name);
            out.push_str(" = ");
            push_quoted(&mut out, ctx.alert.label(name));
        }
        StrOperand::Annotation(name) => {
            out.push_str("annotations.");
            out.push_str(name);
            out.push_str(" = ");
            push_quoted(&mut out, ctx.alert.annotation(name));
        }
        StrOperand::Literal(text) => push_quoted(&mut out, text),
    }
    out
}

/// An operand and its value, or the floor a burn-rate alert set under it;
/// `None` when neither is known.
fn describe_num_or_floor(operand: &NumOperand, ctx: &EvalCtx<'_>) -> Option<String> {
    if let Some(value) = ctx.num_value(operand) {
        return Some(describe_num(operand, value, ctx));
    }
    let floor = ctx.floor(operand)?;
    let NumOperand::Burn { slo, window_secs } = operand else {
        return None;
    };
    Some(format!(
        "burn({}, {}) above {} (a firing burn-rate alert says)",
        ctx.ruleset.slos[*slo].name,
        print_duration(*window_secs),
        format_number(floor),
    ))
}

/// An operand and the value it read.
fn describe_num(operand: &NumOperand, value: f64, ctx: &EvalCtx<'_>) -> String {
    let value = format_as(operand, value);
    match operand {
        NumOperand::Literal(_) | NumOperand::Percent(_) | NumOperand::Duration(_) => value,
        NumOperand::Burn { slo, window_secs } => format!(
            "burn({}, {}) = {value}",
            ctx.ruleset.slos[*slo].name,
            print_duration(*window_secs),
        ),
        NumOperand::BudgetRemaining { slo } => {
            format!(
                "budget_remaining({}) = {value}",
                ctx.ruleset.slos[*slo].name
            )
        }
        NumOperand::FiringFor => format!("firing_for = {value}"),
    }
}

/// Formats a value the way its operand is written: durations as `1h30m`,
/// budgets and percentages as `25%`, other numbers plainly.
fn format_as(operand: &NumOperand, value: f64) -> String {
    match operand {
        NumOperand::Duration(_) | NumOperand::FiringFor => print_duration(value.max(0.0) as u64),
        NumOperand::Percent(_) | NumOperand::BudgetRemaining { .. } => {
            format!("{}%", format_number(value * 100.0))
        }
        _ => format_number(value),
    }
}

/// Whether the burn of each SLO a condition reads is rising or
/// recovering, one line per SLO: its shortest window read against its
/// longest (or 5m against 1h when it reads one window), as the SLO API's
/// trend does. SLOs without both values give no line.
pub(crate) fn trends(cond: &Cond, ctx: &EvalCtx<'_>) -> Vec<String> {
    let mut windows: Vec<(usize, u64)> = Vec::new();
    cond.each_num_operand(&mut |operand| {
        if let NumOperand::Burn { slo, window_secs } = operand {
            windows.push((*slo, *window_secs));
        }
    });
    let mut lines = Vec::new();
    for slo in cond.slos() {
        let read: Vec<u64> = windows
            .iter()
            .filter(|(s, _)| *s == slo)
            .map(|(_, w)| *w)
            .collect();
        let (short, long) = match (read.iter().min(), read.iter().max()) {
            (Some(&short), Some(&long)) if short < long => (short, long),
            (Some(_), _) => crate::slo::TREND_WINDOWS,
            _ => continue,
        };
        let name = &ctx.ruleset.slos[slo].name;
        let (Some(now), Some(before)) = (ctx.burn.burn(name, short), ctx.burn.burn(name, long))
        else {
            continue;
        };
        let tolerance = crate::slo::TREND_TOLERANCE;
        let word = if now > before * (1.0 + tolerance) {
            "rising"
        } else if now < before * (1.0 - tolerance) {
            "recovering"
        } else {
            "steady"
        };
        lines.push(format!(
            "{name} is {word}: burn over {} = {} against {} over {}",
            print_duration(short),
            format_number(now),
            format_number(before),
            print_duration(long),
        ));
    }
    lines
}

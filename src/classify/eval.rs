//! Evaluating compiled conditions. Two paths over the same semantics: a
//! fast one that only answers true/false (run for every candidate rule),
//! and a traced one that also records the values seen (run only for the
//! rules that matched, to explain them).

use time::OffsetDateTime;

use crate::classify::burn::BurnSnapshot;
use crate::model::Alert;
use crate::rules::RuleSet;
use crate::rules::ast::CmpOp;
use crate::rules::printer::print_duration;
use crate::rules::{Cond, NumOperand, StrOperand};

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

    /// Whole seconds since the alert started, 0 when it did not say or
    /// starts in the future.
    fn firing_for_secs(&self) -> i64 {
        self.alert
            .starts_at
            .map(|start| (self.now - start).whole_seconds().max(0))
            .unwrap_or(0)
    }
}

/// True when the condition holds.
pub(crate) fn holds(cond: &Cond, ctx: &EvalCtx<'_>) -> bool {
    match cond {
        Cond::And(parts) => parts.iter().all(|c| holds(c, ctx)),
        Cond::Or(parts) => parts.iter().any(|c| holds(c, ctx)),
        Cond::Not(inner) => !holds(inner, ctx),
        Cond::StrCmp { negated, lhs, rhs } => {
            (ctx.str_value(lhs) == ctx.str_value(rhs)) != *negated
        }
        Cond::Regex {
            negated,
            value,
            regex,
            ..
        } => regex.is_match(ctx.str_value(value)) != *negated,
        Cond::StrIn {
            negated,
            value,
            list,
        } => {
            let v = ctx.str_value(value);
            list.iter().any(|item| item == v) != *negated
        }
        Cond::NumCmp { op, lhs, rhs } => match (ctx.num_value(lhs), ctx.num_value(rhs)) {
            (Some(l), Some(r)) => compare(*op, l, r),
            // No data: no comparison holds.
            _ => false,
        },
        Cond::NumIn {
            negated,
            value,
            list,
        } => match ctx.num_value(value) {
            Some(v) => list.contains(&v) != *negated,
            None => false,
        },
    }
}

fn compare(op: CmpOp, l: f64, r: f64) -> bool {
    match op {
        CmpOp::Eq => l == r,
        CmpOp::Ne => l != r,
        CmpOp::Lt => l < r,
        CmpOp::Le => l <= r,
        CmpOp::Gt => l > r,
        CmpOp::Ge => l >= r,
        // The checker compiles regex operators to `Cond::Regex`.
        CmpOp::Match | CmpOp::NotMatch => false,
    }
}

/// Evaluates like [`holds`] and appends, in plain words, the values behind
/// the result: for a true `and` every part, for a true `or` the parts that
/// held, for a false one what failed.
pub(crate) fn trace(cond: &Cond, ctx: &EvalCtx<'_>, out: &mut Vec<String>) -> bool {
    match cond {
        Cond::And(parts) => {
            let mut seen = Vec::new();
            for part in parts {
                let mut part_out = Vec::new();
                if !trace(part, ctx, &mut part_out) {
                    out.extend(part_out);
                    return false;
                }
                seen.extend(part_out);
            }
            out.extend(seen);
            true
        }
        Cond::Or(parts) => {
            let mut held = Vec::new();
            let mut failed = Vec::new();
            for part in parts {
                let mut part_out = Vec::new();
                if trace(part, ctx, &mut part_out) {
                    held.extend(part_out);
                } else {
                    failed.extend(part_out);
                }
            }
            let result = !held.is_empty();
            out.extend(if result { held } else { failed });
            result
        }
        Cond::Not(inner) => {
            let mut inner_out = Vec::new();
            let result = !trace(inner, ctx, &mut inner_out);
            out.push(format!("not ({})", inner_out.join(" and ")));
            result
        }
        leaf => {
            out.push(describe_leaf(leaf, ctx));
            holds(leaf, ctx)
        }
    }
}

fn describe_leaf(cond: &Cond, ctx: &EvalCtx<'_>) -> String {
    match cond {
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
            describe_num(lhs, ctx),
            op.symbol(),
            describe_num(rhs, ctx)
        ),
        Cond::NumIn {
            negated,
            value,
            list,
        } => format!(
            "{} {} [{}]",
            describe_num(value, ctx),
            if *negated { "not in" } else { "in" },
            list.iter()
                .map(|n| format_as(value, *n))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Cond::And(_) | Cond::Or(_) | Cond::Not(_) => String::new(),
    }
}

fn describe_str(operand: &StrOperand, ctx: &EvalCtx<'_>) -> String {
    match operand {
        StrOperand::Label(name) => format!("labels.{name} = {:?}", ctx.alert.label(name)),
        StrOperand::Annotation(name) => {
            format!("annotations.{name} = {:?}", ctx.alert.annotation(name))
        }
        StrOperand::Literal(text) => format!("{text:?}"),
    }
}

fn describe_num(operand: &NumOperand, ctx: &EvalCtx<'_>) -> String {
    let value = || match ctx.num_value(operand) {
        Some(v) => format_as(operand, v),
        None => "no data".to_string(),
    };
    match operand {
        NumOperand::Literal(_) | NumOperand::Percent(_) | NumOperand::Duration(_) => value(),
        NumOperand::Burn { slo, window_secs } => format!(
            "burn({}, {}) = {}",
            ctx.ruleset.slos[*slo].name,
            print_duration(*window_secs),
            value()
        ),
        NumOperand::BudgetRemaining { slo } => format!(
            "budget_remaining({}) = {}",
            ctx.ruleset.slos[*slo].name,
            value()
        ),
        NumOperand::FiringFor => format!("firing_for = {}", value()),
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

/// A number with at most four decimals and no floating-point noise.
pub(crate) fn format_number(value: f64) -> String {
    let rounded = (value * 10_000.0).round() / 10_000.0;
    format!("{rounded}")
}

//! The `alerts` SLO source: burn read from alerts that Sloth or Pyrra
//! generate, so teams that already compute multiwindow burn-rate alerts in
//! Prometheus keep them and sevroute classifies on what they say.
//!
//! Such an alert does not carry the burn itself, only that it is above the
//! alert's threshold over its windows. So each firing alert gives a *floor*:
//! "the burn over this window is above this factor". A comparison the floor
//! decides (`burn(S, 1h) > 14.4` under a floor of 14.4) holds; one it does
//! not decide reads as no data.
//!
//! - Pyrra labels its alerts `slo`, `long`, `short` and `exhaustion`: the
//!   burn over both windows is above `period / exhaustion`.
//! - Sloth labels them `sloth_id` (`service-slo`), `sloth_slo` and
//!   `sloth_severity` (`page` or `ticket`). Its page alert fires on either
//!   of two tiers (1h and 5m above 14.4, or 6h and 30m above 6) and its
//!   ticket alert on either of (1d and 2h above 3, or 3d and 6h above 1),
//!   without saying which; a `sloth_window` label naming the long window
//!   (added through Sloth's alert `labels`) says exactly. Without it,
//!   sevroute takes the faster tier of the alert's severity, the one the
//!   alert is named for.

use crate::model::{Alert, AlertStatus};

/// The SRE Workbook tiers Sloth uses, as (long window, short window,
/// factor) in seconds, fastest first.
const SLOTH_TIERS: [(u64, u64, f64); 4] = [
    (3_600, 300, 14.4),
    (21_600, 1_800, 6.0),
    (86_400, 7_200, 3.0),
    (259_200, 21_600, 1.0),
];

/// What one alert says about an SLO's burn.
#[derive(Clone, Debug, PartialEq)]
pub struct BurnFloors {
    /// Which convention the alert follows.
    pub convention: Convention,
    /// The SLO name the alert names (`sloth_id`/`sloth_slo`, or `slo`).
    pub names: Vec<String>,
    /// Windows (seconds) whose burn is above the factor.
    pub windows: Vec<(u64, f64)>,
}

/// The label convention of a burn-rate alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Convention {
    /// Sloth (`sloth_id`, `sloth_slo`, `sloth_severity`).
    Sloth,
    /// Pyrra (`slo`, `long`, `short`, `exhaustion`).
    Pyrra,
}

impl Convention {
    /// The project's name, for explanations.
    pub fn as_str(self) -> &'static str {
        match self {
            Convention::Sloth => "Sloth",
            Convention::Pyrra => "Pyrra",
        }
    }
}

/// Why a burn-rate alert was not understood (it is still routed as an
/// alert; only its burn is ignored).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FloorError {
    /// A label that must hold a duration does not.
    #[error("label {label}={value:?} is not a duration such as 5m, 1h or 4w")]
    BadDuration {
        /// The label.
        label: &'static str,
        /// Its value.
        value: String,
    },
    /// `sloth_severity` is neither `page` nor `ticket`.
    #[error("label sloth_severity={0:?} is neither \"page\" nor \"ticket\"")]
    BadSlothSeverity(String),
    /// `sloth_window` names no Sloth tier.
    #[error("label sloth_window={0:?} is not a Sloth long window (1h, 6h, 1d or 3d)")]
    BadSlothWindow(String),
}

/// Reads the burn floors a firing alert states, given the period (seconds)
/// of the SLO it would name; `Ok(None)` when the alert follows neither
/// convention (or is not firing).
pub fn floors_of(
    alert: &Alert,
    period_of: impl Fn(&[String]) -> Option<u64>,
) -> Result<Option<BurnFloors>, FloorError> {
    if alert.status != AlertStatus::Firing {
        return Ok(None);
    }
    let label = |name: &str| alert.labels.get(name);
    if let (Some(severity), Some(slo)) = (label("sloth_severity"), label("sloth_slo")) {
        let names: Vec<String> = [label("sloth_id"), Some(slo)]
            .into_iter()
            .flatten()
            .map(str::to_string)
            .collect();
        let candidates: &[(u64, u64, f64)] = match severity {
            "page" => &SLOTH_TIERS[..2],
            "ticket" => &SLOTH_TIERS[2..],
            other => return Err(FloorError::BadSlothSeverity(other.to_string())),
        };
        let (long, short, factor) = match label("sloth_window") {
            None | Some("") => candidates[0],
            Some(w) => {
                let secs =
                    prometheus_duration(w).ok_or_else(|| FloorError::BadSlothWindow(w.into()))?;
                *candidates
                    .iter()
                    .find(|(long, _, _)| *long == secs)
                    .ok_or_else(|| FloorError::BadSlothWindow(w.into()))?
            }
        };
        return Ok(Some(BurnFloors {
            convention: Convention::Sloth,
            names,
            windows: vec![(long, factor), (short, factor)],
        }));
    }
    if let (Some(slo), Some(long), Some(short), Some(exhaustion)) = (
        label("slo"),
        label("long"),
        label("short"),
        label("exhaustion"),
    ) {
        let duration = |name: &'static str, value: &str| {
            prometheus_duration(value).ok_or_else(|| FloorError::BadDuration {
                label: name,
                value: value.to_string(),
            })
        };
        let long = duration("long", long)?;
        let short = duration("short", short)?;
        let exhaustion = duration("exhaustion", exhaustion)?;
        let names = vec![slo.to_string()];
        let Some(period) = period_of(&names) else {
            return Ok(None);
        };
        let factor = period as f64 / exhaustion as f64;
        return Ok(Some(BurnFloors {
            convention: Convention::Pyrra,
            names,
            windows: vec![(long, factor), (short, factor)],
        }));
    }
    Ok(None)
}

/// A Prometheus duration (`90s`, `5m`, `1h30m`, `2d`, `4w`, `1y`); `None`
/// when it is not one or is zero.
pub fn prometheus_duration(text: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut rest = text;
    // Whole seconds are what windows are made of; less reads as none.
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        // In milliseconds, the smallest unit.
        let (unit, len) = match rest.as_bytes() {
            [b'm', b's', ..] => (1, 2),
            [b's', ..] => (1_000, 1),
            [b'm', ..] => (60_000, 1),
            [b'h', ..] => (3_600_000, 1),
            [b'd', ..] => (86_400_000, 1),
            [b'w', ..] => (604_800_000, 1),
            [b'y', ..] => (31_536_000_000, 1),
            _ => return None,
        };
        rest = &rest[len..];
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    let secs = total / 1_000;
    (secs > 0).then_some(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(labels: &[(&str, &str)]) -> Alert {
        Alert {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            status: AlertStatus::Firing,
            ..Alert::default()
        }
    }

    const MONTH: u64 = 30 * 86_400;

    #[test]
    fn pyrra_alerts_give_period_over_exhaustion_on_both_windows() {
        // Pyrra's fastest tier on a 4-week SLO: exhaustion 2d -> factor 14.
        let a = alert(&[
            ("alertname", "ErrorBudgetBurn"),
            ("slo", "api-errors"),
            ("long", "1h"),
            ("short", "5m"),
            ("exhaustion", "2d"),
            ("severity", "critical"),
        ]);
        let floors = floors_of(&a, |names| {
            assert_eq!(names, ["api-errors"]);
            Some(28 * 86_400)
        })
        .unwrap()
        .unwrap();
        assert_eq!(floors.convention, Convention::Pyrra);
        assert_eq!(floors.windows, vec![(3_600, 14.0), (300, 14.0)]);
        // An SLO sevroute does not know: nothing to say.
        assert_eq!(floors_of(&a, |_| None).unwrap(), None);
    }

    #[test]
    fn sloth_page_and_ticket_alerts_give_their_tiers() {
        let page = alert(&[
            ("sloth_id", "checkout-availability"),
            ("sloth_service", "checkout"),
            ("sloth_slo", "availability"),
            ("sloth_severity", "page"),
        ]);
        let floors = floors_of(&page, |_| Some(MONTH)).unwrap().unwrap();
        assert_eq!(floors.convention, Convention::Sloth);
        assert_eq!(floors.names, vec!["checkout-availability", "availability"]);
        assert_eq!(floors.windows, vec![(3_600, 14.4), (300, 14.4)]);

        let mut slow = page.clone();
        slow.labels.insert("sloth_window", "6h");
        let floors = floors_of(&slow, |_| Some(MONTH)).unwrap().unwrap();
        assert_eq!(floors.windows, vec![(21_600, 6.0), (1_800, 6.0)]);

        let mut ticket = page.clone();
        ticket.labels.insert("sloth_severity", "ticket");
        let floors = floors_of(&ticket, |_| Some(MONTH)).unwrap().unwrap();
        assert_eq!(floors.windows, vec![(86_400, 3.0), (7_200, 3.0)]);
        ticket.labels.insert("sloth_window", "3d");
        let floors = floors_of(&ticket, |_| Some(MONTH)).unwrap().unwrap();
        assert_eq!(floors.windows, vec![(259_200, 1.0), (21_600, 1.0)]);
    }

    #[test]
    fn malformed_labels_are_named_and_other_alerts_ignored() {
        let bad = alert(&[("sloth_slo", "a"), ("sloth_severity", "urgent")]);
        assert_eq!(
            floors_of(&bad, |_| Some(MONTH)).unwrap_err().to_string(),
            "label sloth_severity=\"urgent\" is neither \"page\" nor \"ticket\""
        );
        let bad = alert(&[
            ("sloth_slo", "a"),
            ("sloth_severity", "page"),
            ("sloth_window", "2h"),
        ]);
        assert!(matches!(
            floors_of(&bad, |_| Some(MONTH)),
            Err(FloorError::BadSlothWindow(_))
        ));
        let bad = alert(&[
            ("slo", "a"),
            ("long", "1h"),
            ("short", "5"),
            ("exhaustion", "2d"),
        ]);
        assert_eq!(
            floors_of(&bad, |_| Some(MONTH)).unwrap_err().to_string(),
            "label short=\"5\" is not a duration such as 5m, 1h or 4w"
        );
        assert_eq!(
            floors_of(&alert(&[("alertname", "X"), ("slo", "a")]), |_| Some(MONTH)).unwrap(),
            None
        );
        let mut resolved = alert(&[("sloth_slo", "a"), ("sloth_severity", "page")]);
        resolved.status = AlertStatus::Resolved;
        assert_eq!(floors_of(&resolved, |_| Some(MONTH)).unwrap(), None);
    }

    #[test]
    fn prometheus_durations() {
        assert_eq!(prometheus_duration("5m"), Some(300));
        assert_eq!(prometheus_duration("1h30m"), Some(5_400));
        assert_eq!(prometheus_duration("4w"), Some(28 * 86_400));
        assert_eq!(prometheus_duration("1500ms"), Some(1));
        for bad in ["", "5", "m", "1x", "0s", "-1h"] {
            assert_eq!(prometheus_duration(bad), None, "{bad}");
        }
    }
}

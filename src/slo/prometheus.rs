//! The `prometheus` SLI source, its pure half: which range queries
//! rebuild an SLO's history, how Prometheus' answers are read, when a
//! sample is too old to trust, and how two cumulative counters (errors and
//! total) become the event counts the engine files. The task that does the
//! HTTP lives in [`crate::prometheus_source`].
//!
//! Each of an SLO's `errors` and `total` expressions is a PromQL
//! expression whose value is a cumulative counter of events, such as
//! `sum(orders_writes_total)`. sevroute samples both and files the
//! increase between two samples, counter by counter with Prometheus' reset
//! rule (a value lower than the previous one is a reset, and the new value
//! is the increase since it). Two counters rather than a good/total pair
//! because they reset independently: `total - errors` is no counter.

use serde_json::Value;
use thiserror::Error;

use super::{Counts, TierSpec};

/// The most points Prometheus returns for one series of a range query:
/// it refuses `(end - start) / step` above 11,000.
pub const MAX_POINTS_PER_QUERY: u64 = 11_000;

/// Longest error text kept from a Prometheus answer: enough to read, and
/// bounded whatever the server sends.
const MAX_MESSAGE_CHARS: usize = 300;

/// One `/api/v1/query_range` call: points at `start`, `start + step`, ...
/// up to `end`, all multiples of `step`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeQuery {
    /// First point, unix seconds.
    pub start: i64,
    /// Last point, unix seconds.
    pub end: i64,
    /// Seconds between points.
    pub step: u64,
}

impl RangeQuery {
    /// How many points the answer holds at most.
    pub fn points(&self) -> u64 {
        ((self.end - self.start) as u64) / self.step + 1
    }
}

/// The range queries that rebuild the counters' history from `from` to
/// `now`, oldest first: each tier of the SLO's layout (`tiers`, finest
/// first, as the engine lays the SLO out) covers the ages it answers
/// windows for, at its own bucket length as the step. So the far past
/// comes in hourly points and the last hour every 10 s, and each tier's
/// buckets get one increase each. The first point is at or before `from`
/// (it is the baseline the next point's increase is measured from); the
/// last is `now` rounded down to the finest step. Points are multiples of
/// their step, so increases fall on bucket edges; a tier's range that
/// would pass [`MAX_POINTS_PER_QUERY`] is split. Junctions may repeat a
/// point, which the counters chain ignores.
pub fn plan_history(tiers: &[TierSpec], from: i64, now: i64) -> Vec<RangeQuery> {
    let mut queries = Vec::new();
    if tiers.is_empty() || from > now {
        return queries;
    }
    // The newest point planned so far: each finer tier's range starts at
    // it, so no stretch between two tiers goes longer than a coarse step.
    let mut cursor: Option<i64> = None;
    for i in (0..tiers.len()).rev() {
        let step = tiers[i].bucket_secs.max(1);
        let s = step as i64;
        // Tier i answers windows longer than tier i-1's span: the ages
        // past that span are its to cover, up to the finest tier's `now`.
        let hi = if i == 0 {
            now
        } else {
            now - tiers[i - 1].span_secs as i64
        };
        let first = match cursor {
            None => from.div_euclid(s),
            Some(c) => c.div_euclid(s) + i64::from(c.rem_euclid(s) != 0),
        };
        let last = hi.div_euclid(s);
        if first > last {
            continue;
        }
        let mut k = first;
        while k <= last {
            let end = last.min(k + MAX_POINTS_PER_QUERY as i64 - 1);
            queries.push(RangeQuery {
                start: k * s,
                end: end * s,
                step,
            });
            k = end + 1;
        }
        cursor = Some(last * s);
    }
    queries
}

/// Why a Prometheus answer could not be used. Each one makes the SLO's
/// data stale; the message says which query and what to do.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum AnswerError {
    /// Prometheus answered with its error status.
    #[error("Prometheus refused the query ({error_type}): {message}")]
    Refused {
        /// Prometheus' `errorType` (`bad_data`, `execution`, `timeout`...).
        error_type: String,
        /// Its `error` text, bounded.
        message: String,
    },
    /// The answer is not the JSON of Prometheus' HTTP API.
    #[error("the answer is not Prometheus API JSON: {0}")]
    Malformed(String),
    /// No series: Prometheus has no data for the expression at that time
    /// (a counter not yet created, a target down past the lookback, or a
    /// typo in a metric name).
    #[error(
        "the query returned no series (if the counter may not exist yet, append `or vector(0)`)"
    )]
    Empty,
    /// More than one series: the expression must aggregate to one value.
    #[error("the query returned {0} series; it must return one (wrap it in sum(...))")]
    ManySeries(usize),
    /// A result type that holds no number per time (a string), or a
    /// matrix from an instant query (a range selector like `x[5m]`).
    #[error(
        "the query returned a {0}; it must return one number (a vector of one series, or a scalar)"
    )]
    WrongType(String),
    /// A value that is not a finite number.
    #[error("the query returned {0:?}, not a finite number")]
    NotFinite(String),
    /// A negative counter value.
    #[error("the query returned {0}, a negative count")]
    Negative(f64),
    /// The sample is older than the staleness bound.
    #[error(
        "the newest sample is {age_secs} s old, older than the staleness bound of {bound_secs} s"
    )]
    TooOld {
        /// How old it is at `now`.
        age_secs: i64,
        /// The bound.
        bound_secs: u64,
    },
}

/// One value of an expression at a time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// Unix seconds.
    pub at: i64,
    /// The counter's value.
    pub value: f64,
}

fn bounded(text: &str) -> String {
    if text.chars().count() <= MAX_MESSAGE_CHARS {
        text.to_string()
    } else {
        let cut: String = text.chars().take(MAX_MESSAGE_CHARS).collect();
        format!("{cut}...")
    }
}

/// The `data` of a successful answer, or the error it carries.
fn data(body: &[u8]) -> Result<Value, AnswerError> {
    let json: Value = serde_json::from_slice(body)
        .map_err(|e| AnswerError::Malformed(bounded(&e.to_string())))?;
    match json.get("status").and_then(Value::as_str) {
        Some("success") => json
            .get("data")
            .cloned()
            .ok_or_else(|| AnswerError::Malformed("no \"data\" in a success answer".into())),
        Some("error") => Err(AnswerError::Refused {
            error_type: bounded(json["errorType"].as_str().unwrap_or("unknown")),
            message: bounded(json["error"].as_str().unwrap_or("")),
        }),
        _ => Err(AnswerError::Malformed(
            "no \"status\" of \"success\" or \"error\"".into(),
        )),
    }
}

/// A `[time, "value"]` pair as Prometheus writes it.
fn point(pair: &Value) -> Result<Point, AnswerError> {
    let malformed = || AnswerError::Malformed(bounded(&format!("{pair} is not [time, \"value\"]")));
    let items = pair
        .as_array()
        .filter(|a| a.len() == 2)
        .ok_or_else(malformed)?;
    let at = items[0].as_f64().ok_or_else(malformed)?;
    let text = items[1].as_str().ok_or_else(malformed)?;
    let value: f64 = text.parse().map_err(|_| malformed())?;
    if !value.is_finite() {
        return Err(AnswerError::NotFinite(bounded(text)));
    }
    if value < 0.0 {
        return Err(AnswerError::Negative(value));
    }
    // Prometheus times have millisecond resolution; the engine files
    // whole seconds.
    Ok(Point {
        at: at.floor() as i64,
        value,
    })
}

/// Reads an `/api/v1/query` answer: exactly one number (a vector of one
/// series, or a scalar).
pub fn parse_instant(body: &[u8]) -> Result<Point, AnswerError> {
    let data = data(body)?;
    let kind = data["resultType"].as_str().unwrap_or("");
    match kind {
        "scalar" => point(&data["result"]),
        "vector" => {
            let result = data["result"]
                .as_array()
                .ok_or_else(|| AnswerError::Malformed("\"result\" is not a list".into()))?;
            match result.as_slice() {
                [] => Err(AnswerError::Empty),
                [one] => point(&one["value"]),
                many => Err(AnswerError::ManySeries(many.len())),
            }
        }
        "" => Err(AnswerError::Malformed("no \"resultType\"".into())),
        other => Err(AnswerError::WrongType(bounded(other))),
    }
}

/// Reads an `/api/v1/query_range` answer: the points of its one series,
/// oldest first; none when Prometheus has no data in the range (history
/// that does not exist is not an error: the SLO may be new).
pub fn parse_range(body: &[u8]) -> Result<Vec<Point>, AnswerError> {
    let data = data(body)?;
    match data["resultType"].as_str().unwrap_or("") {
        "matrix" => {}
        "" => return Err(AnswerError::Malformed("no \"resultType\"".into())),
        other => return Err(AnswerError::WrongType(bounded(other))),
    }
    let result = data["result"]
        .as_array()
        .ok_or_else(|| AnswerError::Malformed("\"result\" is not a list".into()))?;
    match result.as_slice() {
        [] => Ok(Vec::new()),
        [one] => {
            let values = one["values"]
                .as_array()
                .ok_or_else(|| AnswerError::Malformed("\"values\" is not a list".into()))?;
            let mut points = values.iter().map(point).collect::<Result<Vec<_>, _>>()?;
            points.sort_by_key(|p| p.at);
            Ok(points)
        }
        many => Err(AnswerError::ManySeries(many.len())),
    }
}

/// Refuses a sample older than `bound_secs` at `now`: Prometheus answered,
/// but with data too old to stand for the present.
pub fn check_fresh(at: i64, now: i64, bound_secs: u64) -> Result<(), AnswerError> {
    let age = now.saturating_sub(at);
    if age > bound_secs as i64 {
        Err(AnswerError::TooOld {
            age_secs: age,
            bound_secs,
        })
    } else {
        Ok(())
    }
}

/// The points of the two expressions at the same times, oldest first:
/// `(at, errors, total)`. A time only one of them answered is skipped (the
/// next common time's increase covers it).
pub fn join(errors: &[Point], total: &[Point]) -> Vec<(i64, f64, f64)> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(errors.len().min(total.len()));
    while i < errors.len() && j < total.len() {
        let (e, t) = (errors[i], total[j]);
        match e.at.cmp(&t.at) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push((e.at, e.value, t.value));
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// The last sample of an SLO's two counters: what the next sample's
/// increases are measured from.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CounterChain {
    last: Option<(i64, f64, f64)>,
    /// Errors seen beyond the total of their sample, owed to the next.
    carried_bad: u64,
}

impl CounterChain {
    /// The time of the last sample taken in, if any.
    pub fn last_at(&self) -> Option<i64> {
        self.last.map(|(at, _, _)| at)
    }

    /// Takes in the counters' values at `at` and returns the events
    /// between the previous sample and this one, with the second to file
    /// them under; `None` for the first sample (the baseline) and for a
    /// sample not after the previous one (already counted).
    ///
    /// Each counter's increase follows Prometheus' reset rule, and is
    /// rounded to whole events (counters of events are whole; a fraction
    /// can only come from the expression, such as a sum of rates). When
    /// the errors rose by more than the total (the two read a scrape
    /// apart), every event of the sample is bad and the excess errors are
    /// carried to the next sample: so the sum over any run of samples
    /// stays the counters' difference, never fewer errors. The events happened
    /// in `(previous, at]`; they are filed under `at - 1`, so that with
    /// steps on bucket edges they land in the bucket they happened in.
    pub fn push(&mut self, at: i64, errors: f64, total: f64) -> Option<(i64, Counts)> {
        let previous = self.last;
        if let Some((last_at, _, _)) = previous
            && at <= last_at
        {
            return None;
        }
        self.last = Some((at, errors, total));
        let (_, e0, t0) = previous?;
        let increase = |new: f64, old: f64| if new < old { new } else { new - old };
        let total = increase(total, t0).round() as u64;
        let errors = (increase(errors, e0).round() as u64).saturating_add(self.carried_bad);
        let bad = errors.min(total);
        self.carried_bad = errors - bad;
        Some((
            at - 1,
            Counts {
                good: total - bad,
                total,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slo::EngineConfig;

    const NOW: i64 = 1_700_000_000;

    fn tiers_30d() -> Vec<TierSpec> {
        EngineConfig::default().layout(30 * 86_400)
    }

    #[test]
    fn a_30_day_history_comes_coarse_for_the_far_past_and_fine_for_the_recent() {
        let plan = plan_history(&tiers_30d(), NOW - 30 * 86_400, NOW);
        let steps: Vec<u64> = plan.iter().map(|q| q.step).collect();
        assert_eq!(steps, [3_600, 600, 60, 10]);
        // Hourly from the hour at or before the period's start to 3 days
        // ago; every 10 min to 6 h ago; every minute to 1 h ago; every 10 s
        // to now (rounded down to 10 s).
        let hour = |t: i64| t.div_euclid(3_600) * 3_600;
        assert_eq!(plan[0].start, hour(NOW - 30 * 86_400));
        assert_eq!(plan[0].end, hour(NOW - 3 * 86_400));
        assert!(plan[0].start <= NOW - 30 * 86_400);
        // Each finer range starts at the coarser one's last point.
        assert_eq!(plan[1].start, plan[0].end);
        assert!(plan[1].end <= NOW - 6 * 3_600 && plan[1].end > NOW - 6 * 3_600 - 600);
        assert_eq!(plan[2].start, plan[1].end);
        assert!(plan[2].end <= NOW - 3_600 && plan[2].end > NOW - 3_600 - 60);
        assert_eq!(plan[3].start, plan[2].end);
        assert_eq!(plan[3].end, NOW - NOW % 10);
        for q in &plan {
            assert_eq!(q.start % q.step as i64, 0);
            assert_eq!(q.end % q.step as i64, 0);
            assert!(q.points() <= MAX_POINTS_PER_QUERY);
        }
    }

    #[test]
    fn a_short_gap_is_filled_at_the_finest_step_only() {
        let plan = plan_history(&tiers_30d(), NOW - 125, NOW);
        assert_eq!(
            plan,
            [RangeQuery {
                start: NOW - 130,
                end: NOW,
                step: 10
            }]
        );
        // A gap of two hours: a minute step past the last hour.
        let plan = plan_history(&tiers_30d(), NOW - 7_200, NOW);
        assert_eq!(plan.iter().map(|q| q.step).collect::<Vec<_>>(), [60, 10]);
        assert_eq!(
            plan[0].start,
            NOW - 7_200 - 20,
            "at or before the gap's start"
        );
        assert!(plan_history(&tiers_30d(), NOW + 1, NOW).is_empty());
    }

    #[test]
    fn a_range_past_the_point_limit_is_split() {
        let tiers = [TierSpec {
            bucket_secs: 1,
            span_secs: 30_000,
        }];
        let plan = plan_history(&tiers, 0, 25_000);
        assert_eq!(
            plan,
            [
                RangeQuery {
                    start: 0,
                    end: 10_999,
                    step: 1
                },
                RangeQuery {
                    start: 11_000,
                    end: 21_999,
                    step: 1
                },
                RangeQuery {
                    start: 22_000,
                    end: 25_000,
                    step: 1
                },
            ]
        );
        assert_eq!(plan.iter().map(RangeQuery::points).sum::<u64>(), 25_001);
    }

    #[test]
    fn instant_answers_give_one_number_or_say_why_not() {
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000.781,"1234"]}]}}"#;
        assert_eq!(
            parse_instant(vector),
            Ok(Point {
                at: 1_700_000_000,
                value: 1234.0
            })
        );
        let scalar =
            br#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"5"]}}"#;
        assert_eq!(parse_instant(scalar).unwrap().value, 5.0);
        let empty = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(parse_instant(empty), Err(AnswerError::Empty));
        assert!(
            AnswerError::Empty.to_string().contains("or vector(0)"),
            "the message says how to fix it"
        );
        let two = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"a":"1"},"value":[1,"1"]},{"metric":{"a":"2"},"value":[1,"2"]}]}}"#;
        assert_eq!(parse_instant(two), Err(AnswerError::ManySeries(2)));
        assert!(AnswerError::ManySeries(2).to_string().contains("sum("));
        let string = br#"{"status":"success","data":{"resultType":"string","result":[1,"x"]}}"#;
        assert_eq!(
            parse_instant(string),
            Err(AnswerError::WrongType("string".into()))
        );
        let nan = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#;
        assert_eq!(
            parse_instant(nan),
            Err(AnswerError::NotFinite("NaN".into()))
        );
        let inf = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"+Inf"]}}"#;
        assert_eq!(
            parse_instant(inf),
            Err(AnswerError::NotFinite("+Inf".into()))
        );
        let negative = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"-3"]}}"#;
        assert_eq!(parse_instant(negative), Err(AnswerError::Negative(-3.0)));
        let refused = br#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected <EOF>"}"#;
        assert_eq!(
            parse_instant(refused),
            Err(AnswerError::Refused {
                error_type: "bad_data".into(),
                message: "1:5: parse error: unexpected <EOF>".into()
            })
        );
        assert!(matches!(
            parse_instant(b"<html>bad gateway</html>"),
            Err(AnswerError::Malformed(_))
        ));
        assert!(matches!(
            parse_instant(
                br#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1]}]}}"#
            ),
            Err(AnswerError::Malformed(_))
        ));
        // An endless error text is cut.
        let long = format!(
            r#"{{"status":"error","errorType":"execution","error":"{}"}}"#,
            "x".repeat(10_000)
        );
        let err = parse_instant(long.as_bytes()).unwrap_err().to_string();
        assert!(err.len() < 400, "{} chars", err.len());
    }

    #[test]
    fn range_answers_give_the_points_of_one_series() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[20,"7"],[10,"5"],[30,"9"]]}]}}"#;
        let points = parse_range(body).unwrap();
        assert_eq!(
            points.iter().map(|p| (p.at, p.value)).collect::<Vec<_>>(),
            [(10, 5.0), (20, 7.0), (30, 9.0)]
        );
        let none = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert_eq!(parse_range(none), Ok(Vec::new()));
        let two = br#"{"status":"success","data":{"resultType":"matrix","result":[{"values":[]},{"values":[]}]}}"#;
        assert_eq!(parse_range(two), Err(AnswerError::ManySeries(2)));
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(
            parse_range(vector),
            Err(AnswerError::WrongType("vector".into()))
        );
    }

    #[test]
    fn a_sample_older_than_the_bound_is_stale() {
        assert_eq!(check_fresh(NOW - 120, NOW, 120), Ok(()));
        assert_eq!(check_fresh(NOW + 5, NOW, 120), Ok(()), "clock skew ahead");
        assert_eq!(
            check_fresh(NOW - 121, NOW, 120),
            Err(AnswerError::TooOld {
                age_secs: 121,
                bound_secs: 120
            })
        );
    }

    #[test]
    fn join_keeps_the_times_both_expressions_answered() {
        let p = |at, value| Point { at, value };
        let errors = [p(10, 1.0), p(20, 2.0), p(40, 4.0)];
        let total = [p(10, 10.0), p(30, 30.0), p(40, 40.0)];
        assert_eq!(join(&errors, &total), [(10, 1.0, 10.0), (40, 4.0, 40.0)]);
    }

    #[test]
    fn counters_become_increases_with_resets_counter_by_counter() {
        let mut chain = CounterChain::default();
        assert_eq!(chain.push(100, 5.0, 1_000.0), None, "the baseline");
        let c = |good, total| Counts { good, total };
        assert_eq!(chain.push(110, 7.0, 1_100.0), Some((109, c(98, 100))));
        // Only the errors counter reset (its process restarted): its new
        // value is its increase; total went on.
        assert_eq!(chain.push(120, 3.0, 1_200.0), Some((119, c(97, 100))));
        // Both reset.
        assert_eq!(chain.push(130, 1.0, 50.0), Some((129, c(49, 50))));
        // Not after the last sample: already counted.
        assert_eq!(chain.push(130, 1.0, 50.0), None);
        assert_eq!(chain.push(125, 9.0, 90.0), None);
        assert_eq!(chain.last_at(), Some(130));
        // Fractions round to whole events.
        assert_eq!(chain.push(140, 1.4, 60.6), Some((139, c(11, 11))));
        // Errors read a scrape ahead of total: all bad now, the excess
        // (18 - 1) carried, so the two samples together count the
        // counters' true difference (18 bad of 40).
        assert_eq!(chain.push(150, 19.4, 62.0), Some((149, c(0, 1))));
        assert_eq!(chain.push(160, 19.4, 101.0), Some((159, c(22, 39))));
    }
}

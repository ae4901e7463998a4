//! The SLO error-budget engine: SLI counts in, burn rates and budget out.
//! It sits beside classification: the service feeds it pushed good/total
//! counts, and on every evaluation tick turns it into the
//! [`BurnSnapshot`] that [`crate::classify`] reads. Pure: no clock (every
//! call takes `now`, unix seconds), no I/O, no async.
//!
//! # Storage
//!
//! Each SLO keeps its counts in tiers of time buckets, fine for short
//! windows and coarse for long ones. The default tiers, and the windows
//! each one answers:
//!
//! | bucket | tier spans | answers windows | start-edge slack, worst |
//! |---|---|---|---|
//! | 10 s   | 1 h        | up to 1 h (5m, 30m, 1h) | 10 s of 5m = 3.3% |
//! | 1 min  | 6 h        | over 1 h to 6 h (6h)    | 1 min of 1h = 1.7% |
//! | 10 min | 3 d        | over 6 h to 3 d (1d, 3d) | 10 min of 6h = 2.8% |
//! | 1 h    | the period | over 3 d (the period)   | 1 h of 3d = 1.4% |
//!
//! The buckets are sized so that each tier's bucket is at most ~3% of the
//! shortest window it answers, and no more buckets are kept than that
//! needs: 1,876 buckets for a 30-day SLO. The alternative of one-minute
//! buckets up to a day would hold 2,523 and make 6h no more exact than
//! this. Every record goes into every tier (four additions), so any
//! window is answered by one tier alone and no sum ever splices tiers.
//!
//! Each bucket holds running totals (good and total since the SLO was
//! first fed, as `u64`), so a window's sum is one subtraction, whatever
//! its length: an evaluation tick costs the same for 5m and for 30 days.
//! Counts are whole events; sums are exact integers, never averages of
//! ratios.
//!
//! # The exactness guarantee
//!
//! A window of `w` seconds at `now` is answered by the finest tier whose
//! span is at least `w`; with that tier's bucket length `s`, it holds
//! exactly the events recorded with
//!
//! ```text
//! s * floor((now - w + 1) / s)  <=  at  <=  now
//! ```
//!
//! that is: every event in `(now - w, now]`, plus the events in the same
//! bucket as second `now - w + 1` that precede it — at most `s - 1` extra
//! seconds at the window's old end, none at its new end. When `now` is the
//! last second of a bucket the window is exact. `at` here is the second a
//! record was filed under: its own timestamp, or its `now` when it was
//! stamped in the future within the allowed skew. This holds for any `now`
//! at or after every record's `now` (the service's ticks); a `now` in the
//! past also counts events filed after it in `now`'s own bucket.
//!
//! # Intake
//!
//! [`SloEngine::record`] takes interval counts, [`SloEngine::record_cumulative`]
//! cumulative counters with Prometheus' reset rule (a decrease is a reset;
//! the new value is the increase since it). A record may be up to
//! `lateness_secs` old (default 1 h, the finest tier's span, so every tier
//! still holds its bucket) and up to `future_skew_secs` ahead of `now`.
//! Anything else — too late, too far ahead, `good > total`, negative,
//! fractional or non-finite counts — is refused with a [`SloError`] that
//! names the problem, and a refused record changes nothing.
//!
//! # Readings
//!
//! burn = error ratio / (1 - objective), error ratio = bad / total over
//! the window. Budget remaining = 1 - bad / (total x (1 - objective)) over
//! the period: the same as 1 - burn(period), and negative once the budget
//! is overspent (kept negative: "120% spent" is worth knowing). A window
//! with no records, with zero events, or with fewer than `min_events` has
//! no value, only a [`Reading`] state saying which. An SLO whose source
//! cannot be read (see [`SloEngine::set_stale`]) reads [`Reading::Stale`]
//! in every window until it is fresh again: never zero errors.
//!
//! History kept elsewhere (Prometheus) is rebuilt with
//! [`SloEngine::record_past`], which has no lateness bound but takes
//! records oldest first.

pub mod alerts;
pub mod prometheus;
mod report;
mod ring;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::classify::BurnSnapshot;
use crate::rules::{Slo, SloSource};

pub use report::{
    BurnFloor, DataState, Exhaustion, Reading, Recorded, SloStatus, Staleness, Trend, WindowBurn,
    WindowCounts,
};
pub use ring::Counts;
use ring::Ring;

/// The windows of a status report, in seconds: 5m, 30m, 1h, 6h, 1d, 3d
/// (the SRE Workbook's multiwindow pairs).
pub const STANDARD_WINDOWS: [u64; 6] = [300, 1_800, 3_600, 21_600, 86_400, 259_200];

/// The short and long windows compared for [`Trend`].
pub const TREND_WINDOWS: (u64, u64) = (300, 3_600);

/// How far apart (relative to the long window's burn) the two trend
/// windows must be to count as rising or recovering rather than steady;
/// without a band, noise would flip the trend on every tick.
pub const TREND_TOLERANCE: f64 = 0.1;

/// The largest count kept exactly: counts arrive as JSON numbers (f64),
/// whose integers are exact only up to 2^53.
const MAX_COUNT: f64 = 9_007_199_254_740_992.0;

/// Everything the SLO engine can refuse.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum SloError {
    /// No SLO of that name is declared.
    #[error("unknown SLO {name:?}")]
    UnknownSlo {
        /// The name asked for.
        name: String,
    },
    /// A count is NaN or infinite.
    #[error("{field} is not a finite number ({value})")]
    NotFinite {
        /// Which count.
        field: CountField,
        /// Its value.
        value: f64,
    },
    /// A count is below zero.
    #[error("{field} is negative ({value})")]
    Negative {
        /// Which count.
        field: CountField,
        /// Its value.
        value: f64,
    },
    /// A count has a fractional part: events are whole, and fractions
    /// would make sums inexact.
    #[error("{field} is not a whole number of events ({value})")]
    NotWhole {
        /// Which count.
        field: CountField,
        /// Its value.
        value: f64,
    },
    /// A count above 2^53, past which f64 cannot hold every integer.
    #[error("{field} ({value}) is above 2^53, the largest count kept exactly")]
    TooLarge {
        /// Which count.
        field: CountField,
        /// Its value.
        value: f64,
    },
    /// More good events than events (interval counts or counter values).
    #[error("good ({good}) exceeds total ({total})")]
    GoodExceedsTotal {
        /// Good events (or the good counter).
        good: u64,
        /// All events (or the total counter).
        total: u64,
    },
    /// The counters' increases since the previous sample have good above
    /// total (one counter reset and the other did not, or they disagree).
    #[error(
        "since the previous sample the good counter rose by {good} but the total counter only by {total}"
    )]
    IncreaseGoodExceedsTotal {
        /// Increase of the good counter.
        good: u64,
        /// Increase of the total counter.
        total: u64,
    },
    /// The timestamp is older than the lateness bound (or than the data
    /// still held, if `now` went backwards).
    #[error("timestamp {at} is too late: the oldest accepted is {oldest}")]
    TooLate {
        /// The record's timestamp.
        at: i64,
        /// The oldest timestamp accepted at this `now`.
        oldest: i64,
    },
    /// The timestamp is further ahead of `now` than the allowed skew.
    #[error("timestamp {at} is in the future: more than {skew_secs} s after now ({now})")]
    InFuture {
        /// The record's timestamp.
        at: i64,
        /// The `now` it was recorded at.
        now: i64,
        /// The allowed clock skew.
        skew_secs: u64,
    },
    /// A cumulative sample not after the previous one (or at the same
    /// time with other values): its increase cannot be known.
    #[error("cumulative sample at {at} is not after the previous one at {previous}")]
    OutOfOrder {
        /// The sample's timestamp.
        at: i64,
        /// The previous sample's timestamp.
        previous: i64,
    },
    /// A window of zero length, or longer than the SLO's data reaches.
    #[error("window of {window_secs} s is outside 1..={max_secs} s")]
    WindowOutOfRange {
        /// The window asked for.
        window_secs: u64,
        /// The longest window this SLO answers (its period, rounded up
        /// to whole buckets).
        max_secs: u64,
    },
    /// The window, ending at a `now` in the past, starts before the data
    /// its tier still holds.
    #[error("the window of {window_secs} s ending at {now} starts before the oldest data held")]
    NotRetained {
        /// The window asked for.
        window_secs: u64,
        /// The `now` asked for.
        now: i64,
    },
    /// The SLO reads its data from another source, so pushed samples
    /// would be mixed into (or lost from) that source's history.
    #[error("SLO {name:?} reads its data from {from}, not from pushed samples")]
    NotPushed {
        /// The SLO.
        name: String,
        /// Its source (`prometheus`).
        from: &'static str,
    },
    /// The engine configuration is inconsistent.
    #[error("invalid SLO engine configuration: {}", problems.join("; "))]
    InvalidConfig {
        /// Every problem found, not only the first.
        problems: Vec<String>,
    },
}

/// Which count of a record an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CountField {
    /// The good events of an interval.
    Good,
    /// The total events of an interval.
    Total,
    /// The cumulative good counter.
    GoodCounter,
    /// The cumulative total counter.
    TotalCounter,
}

impl std::fmt::Display for CountField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CountField::Good => "good",
            CountField::Total => "total",
            CountField::GoodCounter => "good counter",
            CountField::TotalCounter => "total counter",
        })
    }
}

/// One tier of buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TierSpec {
    /// Bucket length in seconds.
    pub bucket_secs: u64,
    /// How far back the tier reaches, in seconds; a multiple of
    /// `bucket_secs`.
    pub span_secs: u64,
}

/// Settings of the SLO engine.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Tiers from finest to coarsest, buckets and spans both increasing.
    /// An SLO uses them in order up to the first that spans its period,
    /// which is cut (or, for the last tier, stretched) to the period.
    pub tiers: Vec<TierSpec>,
    /// How old a record may be, in seconds; at most the finest tier's
    /// span, so that every tier still holds its bucket.
    pub lateness_secs: u64,
    /// How far ahead of `now` a record's timestamp may be, in seconds
    /// (sender clocks drift); such records are filed under `now`.
    pub future_skew_secs: u64,
    /// The fewest events a window needs to give a value: below it the
    /// window reads [`Reading::LowVolume`].
    pub min_events: u64,
    /// The window whose burn projects budget exhaustion, in seconds.
    pub exhaustion_window_secs: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            tiers: vec![
                TierSpec {
                    bucket_secs: 10,
                    span_secs: 3_600,
                },
                TierSpec {
                    bucket_secs: 60,
                    span_secs: 6 * 3_600,
                },
                TierSpec {
                    bucket_secs: 600,
                    span_secs: 3 * 86_400,
                },
                TierSpec {
                    bucket_secs: 3_600,
                    span_secs: 30 * 86_400,
                },
            ],
            lateness_secs: 3_600,
            future_skew_secs: 60,
            min_events: 10,
            exhaustion_window_secs: 3_600,
        }
    }
}

impl EngineConfig {
    /// Every problem with these settings, empty when there is none.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.tiers.is_empty() {
            problems.push("tiers: at least one tier is needed".to_string());
        }
        for (i, t) in self.tiers.iter().enumerate() {
            if t.bucket_secs == 0 {
                problems.push(format!("tiers[{i}].bucket_secs must be above 0"));
            } else if t.span_secs < t.bucket_secs || t.span_secs % t.bucket_secs != 0 {
                problems.push(format!(
                    "tiers[{i}].span_secs ({}) must be a whole number (>= 1) of buckets of {} s",
                    t.span_secs, t.bucket_secs
                ));
            }
            if i > 0 {
                let p = &self.tiers[i - 1];
                if t.bucket_secs <= p.bucket_secs || t.span_secs <= p.span_secs {
                    problems.push(format!(
                        "tiers[{i}] must have longer buckets and a longer span than tiers[{}]",
                        i - 1
                    ));
                }
            }
        }
        if let Some(first) = self.tiers.first()
            && self.lateness_secs > first.span_secs
        {
            problems.push(format!(
                "lateness_secs ({}) must be at most the finest tier's span ({})",
                self.lateness_secs, first.span_secs
            ));
        }
        if self.exhaustion_window_secs == 0 {
            problems.push("exhaustion_window_secs must be above 0".to_string());
        }
        problems
    }

    /// The tiers an SLO with this period uses: in order up to the first
    /// that spans the period, cut to the period (rounded up to a whole
    /// bucket), the last stretched to it when none spans it.
    pub fn layout(&self, period_secs: u64) -> Vec<TierSpec> {
        let period = period_secs.max(1);
        let mut tiers = Vec::new();
        for t in &self.tiers {
            let reaches = t.span_secs >= period;
            tiers.push(*t);
            if reaches {
                break;
            }
        }
        if let Some(last) = tiers.last_mut() {
            last.span_secs = period.div_ceil(last.bucket_secs) * last.bucket_secs;
        }
        tiers
    }
}

/// The last cumulative sample of an SLO: what the next one's increase is
/// measured from.
#[derive(Clone, Copy, Debug)]
struct CounterBase {
    at: i64,
    good: f64,
    total: f64,
}

/// One SLO's history.
#[derive(Clone, Debug)]
struct Series {
    name: String,
    /// `push`, `alerts` or `prometheus`, for reports.
    source: &'static str,
    objective: f64,
    period_secs: u64,
    tiers: Vec<TierSpec>,
    /// One ring per tier, created by the first record: an SLO never fed
    /// costs no buckets.
    rings: Vec<Ring>,
    last_record_at: Option<i64>,
    counter: Option<CounterBase>,
    /// Set while the SLO's source cannot be read: its readings are then
    /// [`Reading::Stale`], whatever counts are held.
    stale: Option<Staleness>,
}

impl Series {
    fn new(slo: &Slo, config: &EngineConfig) -> Series {
        Series {
            name: slo.name.clone(),
            source: match slo.source {
                SloSource::Push => "push",
                SloSource::Alerts => "alerts",
                SloSource::Prometheus { .. } => "prometheus",
            },
            objective: slo.objective,
            period_secs: slo.period_secs,
            tiers: config.layout(slo.period_secs),
            rings: Vec::new(),
            last_record_at: None,
            counter: None,
            stale: None,
        }
    }

    /// The oldest timestamp the rings can still file.
    fn oldest_held(&self) -> i64 {
        self.rings
            .iter()
            .map(Ring::oldest_second)
            .max()
            .unwrap_or(i64::MIN)
    }

    fn add(&mut self, at: i64, counts: Counts) {
        if self.rings.is_empty() {
            self.rings = self
                .tiers
                .iter()
                .map(|t| {
                    let cap = (t.span_secs / t.bucket_secs) as usize + 1;
                    Ring::new(t.bucket_secs, cap, at.div_euclid(t.bucket_secs as i64))
                })
                .collect();
        }
        for ring in &mut self.rings {
            ring.add(at, counts);
        }
        self.last_record_at = Some(self.last_record_at.map_or(at, |l| l.max(at)));
    }

    fn max_window(&self) -> u64 {
        self.tiers.last().map_or(0, |t| t.span_secs)
    }

    fn window(&self, now: i64, window_secs: u64) -> Result<WindowCounts, SloError> {
        let tier = self
            .tiers
            .iter()
            .position(|t| window_secs >= 1 && t.span_secs >= window_secs)
            .ok_or(SloError::WindowOutOfRange {
                window_secs,
                max_secs: self.max_window(),
            })?;
        let s = self.tiers[tier].bucket_secs as i64;
        // The window's first second, now - w + 1, sets the first bucket;
        // the ring has one bucket more than the span so that this bucket
        // is still held even when it only partly overlaps the window.
        let first = now.saturating_sub(window_secs as i64 - 1).div_euclid(s);
        let last = now.div_euclid(s);
        let (counts, has_data) = match self.rings.get(tier) {
            None => (Counts::default(), false),
            Some(ring) => {
                debug_assert_eq!(ring.bucket_secs(), s);
                ring.sum(first, last)
                    .ok_or(SloError::NotRetained { window_secs, now })?
            }
        };
        Ok(WindowCounts {
            window_secs,
            bucket_secs: s as u64,
            from: first * s,
            to: now,
            counts,
            has_data,
        })
    }

    /// The burn a window's counts give, or why there is none.
    fn burn(&self, w: &WindowCounts, min_events: u64) -> Reading {
        let c = w.counts;
        if self.stale.is_some() {
            Reading::Stale
        } else if !w.has_data {
            Reading::NoData
        } else if c.total == 0 {
            Reading::ZeroTraffic
        } else if c.total < min_events {
            Reading::LowVolume {
                total: c.total,
                min_events,
            }
        } else {
            let error_ratio = c.bad() as f64 / c.total as f64;
            Reading::Ok(error_ratio / (1.0 - self.objective))
        }
    }
}

/// The SLO engine: every declared SLO's bucketed counts.
#[derive(Clone, Debug)]
pub struct SloEngine {
    config: EngineConfig,
    series: Vec<Series>,
    index: HashMap<String, usize>,
}

impl SloEngine {
    /// An engine with no SLOs yet; refuses inconsistent settings.
    pub fn new(config: EngineConfig) -> Result<SloEngine, SloError> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(SloError::InvalidConfig { problems });
        }
        Ok(SloEngine {
            config,
            series: Vec::new(),
            index: HashMap::new(),
        })
    }

    /// The settings in force.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Makes the engine's SLOs those of a (re)loaded rule set, in its
    /// order. An SLO kept with the same period keeps its data (a new
    /// objective applies to it at once: counts do not depend on it); one
    /// whose period changed starts empty, because its tiers are laid out
    /// by period; the alternative, re-bucketing old data, could only be
    /// as exact as the coarser of the two layouts. SLOs no longer declared
    /// are dropped.
    pub fn set_slos(&mut self, slos: &[Slo]) {
        let mut old: HashMap<String, Series> =
            self.series.drain(..).map(|s| (s.name.clone(), s)).collect();
        self.index.clear();
        for slo in slos {
            let series = match old.remove(&slo.name) {
                Some(mut s) if s.period_secs == slo.period_secs => {
                    s.objective = slo.objective;
                    s
                }
                _ => Series::new(slo, &self.config),
            };
            self.index.insert(slo.name.clone(), self.series.len());
            self.series.push(series);
        }
    }

    /// The names of the SLOs, in declaration order.
    pub fn slo_names(&self) -> impl Iterator<Item = &str> {
        self.series.iter().map(|s| s.name.as_str())
    }

    fn series(&self, slo: &str) -> Result<&Series, SloError> {
        self.index
            .get(slo)
            .map(|&i| &self.series[i])
            .ok_or_else(|| SloError::UnknownSlo {
                name: slo.to_string(),
            })
    }

    fn index_of(&self, slo: &str) -> Result<usize, SloError> {
        self.index
            .get(slo)
            .copied()
            .ok_or_else(|| SloError::UnknownSlo {
                name: slo.to_string(),
            })
    }

    /// The second a record stamped `at` is filed under at `now`, or why
    /// it is refused.
    fn file_time(&self, series: &Series, now: i64, at: i64) -> Result<i64, SloError> {
        let skew = self.config.future_skew_secs;
        if at > now.saturating_add(skew as i64) {
            return Err(SloError::InFuture {
                at,
                now,
                skew_secs: skew,
            });
        }
        // Within the skew, "the future" is the sender's clock running
        // ahead: the events happened now. Filing them under their own
        // second instead would hide them from every window until the
        // clock caught up.
        let at = at.min(now);
        let oldest = now
            .saturating_sub(self.config.lateness_secs as i64)
            .max(series.oldest_held());
        if at < oldest {
            return Err(SloError::TooLate { at, oldest });
        }
        Ok(at)
    }

    /// Records `good` of `total` events that happened at `at` (unix
    /// seconds), seen at `now`. Interval counts are not idempotent: a
    /// retried push counts twice (cumulative counters do not).
    pub fn record(
        &mut self,
        slo: &str,
        now: i64,
        at: i64,
        good: f64,
        total: f64,
    ) -> Result<Recorded, SloError> {
        let i = self.index_of(slo)?;
        let good = whole(CountField::Good, good)?;
        let total = whole(CountField::Total, total)?;
        if good > total {
            return Err(SloError::GoodExceedsTotal { good, total });
        }
        let at = self.file_time(&self.series[i], now, at)?;
        let counts = Counts { good, total };
        self.series[i].add(at, counts);
        Ok(Recorded::Applied {
            at,
            counts,
            counter_reset: false,
        })
    }

    /// Records a sample of cumulative counters taken at `at`, seen at
    /// `now`. The increase since the previous sample is filed under `at`;
    /// a counter lower than before was reset, and its value is the
    /// increase since the reset (Prometheus' rule, counter by counter).
    /// The first sample only sets the baseline. Samples must come in
    /// timestamp order; the same sample again is ignored, so retries are
    /// safe.
    pub fn record_cumulative(
        &mut self,
        slo: &str,
        now: i64,
        at: i64,
        good_counter: f64,
        total_counter: f64,
    ) -> Result<Recorded, SloError> {
        let i = self.index_of(slo)?;
        let g = whole(CountField::GoodCounter, good_counter)?;
        let t = whole(CountField::TotalCounter, total_counter)?;
        if g > t {
            return Err(SloError::GoodExceedsTotal { good: g, total: t });
        }
        let series = &self.series[i];
        let base = series.counter;
        if let Some(b) = base {
            if at == b.at && good_counter == b.good && total_counter == b.total {
                return Ok(Recorded::Duplicate { at });
            }
            if at <= b.at {
                return Err(SloError::OutOfOrder { at, previous: b.at });
            }
        }
        let filed = self.file_time(series, now, at)?;
        let new_base = CounterBase {
            at,
            good: good_counter,
            total: total_counter,
        };
        let Some(b) = base else {
            self.series[i].counter = Some(new_base);
            return Ok(Recorded::Baseline { at });
        };
        let increase = |new: f64, old: f64| if new < old { new } else { new - old };
        let counts = Counts {
            good: increase(good_counter, b.good) as u64,
            total: increase(total_counter, b.total) as u64,
        };
        if counts.good > counts.total {
            return Err(SloError::IncreaseGoodExceedsTotal {
                good: counts.good,
                total: counts.total,
            });
        }
        let series = &mut self.series[i];
        series.counter = Some(new_base);
        series.add(filed, counts);
        Ok(Recorded::Applied {
            at: filed,
            counts,
            counter_reset: good_counter < b.good || total_counter < b.total,
        })
    }

    /// Records `counts` that happened at `at`, seen at `now`, with no
    /// lateness bound: for history rebuilt from a source that keeps it
    /// (Prometheus), oldest first. On an SLO with no data yet any `at` is
    /// taken (the first record lays the rings out around it); after that,
    /// `at` may be no older than every tier still holds (about the finest
    /// tier's span before the newest record).
    /// A future `at` within the skew is filed under `now`, as in
    /// [`SloEngine::record`].
    pub fn record_past(
        &mut self,
        slo: &str,
        now: i64,
        at: i64,
        counts: Counts,
    ) -> Result<Recorded, SloError> {
        let i = self.index_of(slo)?;
        if counts.good > counts.total {
            return Err(SloError::GoodExceedsTotal {
                good: counts.good,
                total: counts.total,
            });
        }
        let skew = self.config.future_skew_secs;
        if at > now.saturating_add(skew as i64) {
            return Err(SloError::InFuture {
                at,
                now,
                skew_secs: skew,
            });
        }
        let at = at.min(now);
        let oldest = self.series[i].oldest_held();
        if at < oldest {
            return Err(SloError::TooLate { at, oldest });
        }
        self.series[i].add(at, counts);
        Ok(Recorded::Applied {
            at,
            counts,
            counter_reset: false,
        })
    }

    /// Forgets everything recorded for `slo` (its counts and counter
    /// baseline, not its staleness): before its history is rebuilt whole.
    pub fn clear(&mut self, slo: &str) -> Result<(), SloError> {
        let i = self.index_of(slo)?;
        let s = &mut self.series[i];
        s.rings = Vec::new();
        s.last_record_at = None;
        s.counter = None;
        Ok(())
    }

    /// Marks `slo`'s data stale at `now` for `reason` (an SLO already
    /// stale keeps its first `since`, and takes the newest reason). Until
    /// [`SloEngine::set_fresh`], every reading of it is [`Reading::Stale`]
    /// and the burn snapshot leaves it out, so rules read it as unknown.
    pub fn set_stale(&mut self, slo: &str, now: i64, reason: String) -> Result<(), SloError> {
        let i = self.index_of(slo)?;
        let s = &mut self.series[i];
        let since = s.stale.as_ref().map_or(now, |st| st.since);
        s.stale = Some(Staleness { since, reason });
        Ok(())
    }

    /// Clears `slo`'s staleness: its source answered again.
    pub fn set_fresh(&mut self, slo: &str) -> Result<(), SloError> {
        let i = self.index_of(slo)?;
        self.series[i].stale = None;
        Ok(())
    }

    /// Exact counts of `slo` over the `window_secs` ending at `now` (see
    /// the module docs for the edge alignment).
    pub fn window(&self, slo: &str, now: i64, window_secs: u64) -> Result<WindowCounts, SloError> {
        self.series(slo)?.window(now, window_secs)
    }

    /// The burn rate of `slo` over the `window_secs` ending at `now`.
    pub fn burn(&self, slo: &str, now: i64, window_secs: u64) -> Result<Reading, SloError> {
        let s = self.series(slo)?;
        Ok(s.burn(&s.window(now, window_secs)?, self.config.min_events))
    }

    /// The fraction of `slo`'s period budget left at `now`; negative once
    /// overspent.
    pub fn budget_remaining(&self, slo: &str, now: i64) -> Result<Reading, SloError> {
        Ok(self.budget_of(self.series(slo)?, now))
    }

    fn budget_of(&self, s: &Series, now: i64) -> Reading {
        match s.window(now, s.period_secs.max(1)) {
            Ok(w) => match s.burn(&w, self.config.min_events) {
                Reading::Ok(burn) => Reading::Ok(1.0 - burn),
                other => other,
            },
            // Only a `now` far in the past gets here.
            Err(_) => Reading::NoData,
        }
    }

    /// Burn of every SLO over every window in `windows`, and budget
    /// remaining, as classification reads them. Only values go in: a
    /// window with no data, zero traffic or low volume (or one longer than
    /// the SLO's period) is left out, which classification reads as
    /// unknown.
    pub fn snapshot(&self, now: i64, windows: &[u64]) -> BurnSnapshot {
        let min_events = self.config.min_events;
        let mut snap = BurnSnapshot::with_capacity(self.series.len());
        let mut burns: Vec<(u64, f64)> = Vec::with_capacity(windows.len());
        for s in &self.series {
            // All of an SLO's reads first, the snapshot's allocations and
            // hashing after: the reads are cache misses (the rings are far
            // larger than the cache), and with nothing else in between the
            // CPU overlaps them instead of waiting for each in turn.
            burns.clear();
            for &w in windows {
                if let Ok(counts) = s.window(now, w)
                    && let Reading::Ok(burn) = s.burn(&counts, min_events)
                {
                    burns.push((w, burn));
                }
            }
            let budget = self.budget_of(s, now);
            snap.set_burns(&s.name, &burns);
            if let Reading::Ok(left) = budget {
                snap.set_budget_remaining(&s.name, left);
            }
        }
        snap
    }

    /// The status report of one SLO at `now`.
    pub fn status(&self, slo: &str, now: i64) -> Result<SloStatus, SloError> {
        Ok(self.status_of(self.series(slo)?, now))
    }

    /// The status reports of every SLO at `now`, in declaration order.
    pub fn statuses(&self, now: i64) -> Vec<SloStatus> {
        self.series.iter().map(|s| self.status_of(s, now)).collect()
    }

    fn status_of(&self, s: &Series, now: i64) -> SloStatus {
        let min_events = self.config.min_events;
        let reading = |w: u64| {
            s.window(now, w)
                .map(|counts| (counts, s.burn(&counts, min_events)))
        };
        let burns: Vec<WindowBurn> = STANDARD_WINDOWS
            .iter()
            .filter_map(|&w| reading(w).ok())
            .map(|(counts, burn)| WindowBurn {
                window_secs: counts.window_secs,
                counts: counts.counts,
                burn,
            })
            .collect();
        let current = reading(self.config.exhaustion_window_secs)
            .map(|(_, r)| r)
            .unwrap_or(Reading::NoData);
        let budget = self.budget_of(s, now);
        let exhaustion = match (budget, current) {
            (Reading::Ok(left), _) if left <= 0.0 => Exhaustion::Exhausted,
            (Reading::Ok(_), Reading::Ok(burn)) if burn <= 0.0 => Exhaustion::Never,
            (Reading::Ok(left), Reading::Ok(burn)) => {
                // Linear: the budget left lasts left x period at burn 1,
                // and 1/burn of that at this burn. It ignores bad events
                // rolling out of the period, so it errs early, the safe
                // side for a warning.
                let secs = (left * s.period_secs as f64 / burn) as u64;
                Exhaustion::In {
                    secs,
                    at: now.saturating_add(secs.min(i64::MAX as u64) as i64),
                }
            }
            _ => Exhaustion::Unknown,
        };
        let value = |w: u64| reading(w).ok().and_then(|(_, r)| r.value());
        let trend = match (value(TREND_WINDOWS.0), value(TREND_WINDOWS.1)) {
            (Some(short), Some(long)) => {
                if short > long * (1.0 + TREND_TOLERANCE) {
                    Trend::Rising
                } else if short < long * (1.0 - TREND_TOLERANCE) {
                    Trend::Recovering
                } else {
                    Trend::Steady
                }
            }
            _ => Trend::Unknown,
        };
        SloStatus {
            name: s.name.clone(),
            source: s.source,
            objective: s.objective,
            period_secs: s.period_secs,
            state: current.state(),
            stale: s.stale.clone(),
            last_record_at: s.last_record_at,
            burns,
            budget_remaining: budget,
            exhaustion,
            trend,
            burn_floors: Vec::new(),
        }
    }

    /// Bytes the engine holds, computed from its structures' sizes and
    /// capacities (the index's hash table estimated as one entry plus a
    /// control byte per bucket); allocator overhead not included.
    pub fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        let series: usize = self
            .series
            .iter()
            .map(|s| {
                s.name.capacity()
                    + s.tiers.capacity() * size_of::<TierSpec>()
                    + s.rings.capacity() * size_of::<Ring>()
                    + s.rings.iter().map(Ring::heap_bytes).sum::<usize>()
            })
            .sum();
        let index: usize = self.index.capacity() * (size_of::<(String, usize)>() + 1)
            + self.index.keys().map(String::capacity).sum::<usize>();
        size_of::<SloEngine>() + self.series.capacity() * size_of::<Series>() + series + index
    }
}

/// A count as a whole number of events, or why it is not one.
fn whole(field: CountField, value: f64) -> Result<u64, SloError> {
    if !value.is_finite() {
        Err(SloError::NotFinite { field, value })
    } else if value < 0.0 {
        Err(SloError::Negative { field, value })
    } else if value.fract() != 0.0 {
        Err(SloError::NotWhole { field, value })
    } else if value > MAX_COUNT {
        Err(SloError::TooLarge { field, value })
    } else {
        Ok(value as u64)
    }
}

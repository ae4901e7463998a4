//! What the SLO engine answers with: exact window counts, the reading a
//! window gives (a burn rate, or why there is none), and the per-SLO
//! status report the API will serve.

use serde::Serialize;

use super::ring::Counts;

/// Exact counts over one window, with the span they cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct WindowCounts {
    /// The window asked for, in seconds.
    pub window_secs: u64,
    /// Bucket length of the tier that answered, in seconds: the window's
    /// start is aligned to it.
    pub bucket_secs: u64,
    /// First second covered: `now - window_secs + 1` rounded down to a
    /// bucket boundary, so `from <= now - window_secs + 1`.
    pub from: i64,
    /// Last second covered: `now`.
    pub to: i64,
    /// Good and total events recorded with `from <= at <= to`.
    pub counts: Counts,
    /// Whether any record (even one of zero events) landed in the window.
    pub has_data: bool,
}

/// What a window says about an SLO: a value, or the reason there is none.
/// Only `Ok` puts a number in a burn snapshot: classification reads an
/// absent number as unknown, so a quiet service neither pages nor hides.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "state", content = "value", rename_all = "snake_case")]
pub enum Reading {
    /// Nothing was recorded in the window: the SLO was never fed, or its
    /// sender has gone quiet. Not the same as zero traffic.
    NoData,
    /// Records arrived but counted no events.
    ZeroTraffic,
    /// Fewer events than the minimum-events guard: too few for a ratio to
    /// mean anything (one failure in three requests is not a 33% outage).
    LowVolume {
        /// Events in the window.
        total: u64,
        /// The guard they fell short of.
        min_events: u64,
    },
    /// The value: a burn rate, or a budget fraction.
    Ok(f64),
    /// The SLO's source could not be read (a `prometheus` query failed,
    /// timed out, answered nothing usable, or its samples are too old):
    /// whatever counts are held are not current, so no value is given.
    /// Never read as zero errors.
    Stale,
}

impl Reading {
    /// The value, when there is one.
    pub fn value(&self) -> Option<f64> {
        match self {
            Reading::Ok(v) => Some(*v),
            _ => None,
        }
    }

    /// The state without its payload.
    pub fn state(&self) -> DataState {
        match self {
            Reading::NoData => DataState::NoData,
            Reading::ZeroTraffic => DataState::ZeroTraffic,
            Reading::LowVolume { .. } => DataState::LowVolume,
            Reading::Ok(_) => DataState::Ok,
            Reading::Stale => DataState::Stale,
        }
    }
}

/// The kind of a [`Reading`], for reports that only need the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataState {
    /// See [`Reading::NoData`].
    NoData,
    /// See [`Reading::ZeroTraffic`].
    ZeroTraffic,
    /// See [`Reading::LowVolume`].
    LowVolume,
    /// See [`Reading::Ok`].
    Ok,
    /// See [`Reading::Stale`].
    Stale,
}

impl DataState {
    /// The name the API and metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            DataState::NoData => "no_data",
            DataState::ZeroTraffic => "zero_traffic",
            DataState::LowVolume => "low_volume",
            DataState::Ok => "ok",
            DataState::Stale => "stale",
        }
    }
}

/// Why an SLO's data is stale, and since when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Staleness {
    /// Unix time the data first went stale (kept while it stays stale).
    pub since: i64,
    /// What went wrong, for people: the failed query and the error,
    /// bounded and free of secrets.
    pub reason: String,
}

/// The burn over one window in a status report.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct WindowBurn {
    /// Window length in seconds.
    pub window_secs: u64,
    /// Exact counts over the window.
    pub counts: Counts,
    /// The burn rate, or why there is none.
    pub burn: Reading,
}

/// When the error budget runs out at the current burn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Exhaustion {
    /// The budget or the current burn is not known (see their readings).
    Unknown,
    /// The budget is already spent (remaining <= 0).
    Exhausted,
    /// Nothing is failing now (burn 0): the budget is not being spent.
    Never,
    /// At this burn the budget lasts this long.
    In {
        /// Seconds from `now`.
        secs: u64,
        /// Unix time of exhaustion.
        at: i64,
    },
}

/// Whether the burn is getting worse: the short window against the long
/// one (5m against 1h, the SRE Workbook's page pair).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trend {
    /// The short window burns faster than the long one: errors are
    /// arriving faster now than over the last hour.
    Rising,
    /// The short window burns slower: the burn is easing off.
    Recovering,
    /// Within [`super::TREND_TOLERANCE`] of each other.
    Steady,
    /// One of the two windows has no burn value.
    Unknown,
}

/// Everything the engine knows about one SLO at `now`: what
/// `GET /api/v1/slos/{name}` serves.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SloStatus {
    /// The SLO's name.
    pub name: String,
    /// Where its data comes from: `push`, `alerts` or `prometheus`.
    pub source: &'static str,
    /// Target fraction of good events.
    pub objective: f64,
    /// The period of the objective, in seconds.
    pub period_secs: u64,
    /// The state of the exhaustion window (1 hour by default): whether
    /// the SLO is being measured now; `stale` whenever its source cannot
    /// be read.
    pub state: DataState,
    /// Why the data is stale, when it is (`null` otherwise).
    pub stale: Option<Staleness>,
    /// The newest `at` recorded (after clamping to the record's `now`).
    pub last_record_at: Option<i64>,
    /// Burn over the standard windows, 5m/30m/1h/6h/1d/3d (those that
    /// fit in the period).
    pub burns: Vec<WindowBurn>,
    /// Fraction of the period's error budget left: `1 - bad / (total *
    /// (1 - objective))` over the period. Negative once overspent.
    pub budget_remaining: Reading,
    /// When the budget runs out at the burn of the exhaustion window.
    pub exhaustion: Exhaustion,
    /// Whether the burn is rising or recovering.
    pub trend: Trend,
    /// For `source alerts`: what the firing burn-rate alerts say, the burn
    /// over each window being above `above` (empty otherwise, or when none
    /// fires).
    pub burn_floors: Vec<BurnFloor>,
}

/// A burn known only to be above a value (see [`crate::slo::alerts`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct BurnFloor {
    /// The window, in seconds.
    pub window_secs: u64,
    /// The burn over the window is above this.
    pub above: f64,
}

/// What an accepted record did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Recorded {
    /// Counts were added at `at`.
    Applied {
        /// The second the counts were filed under (a future `at` within
        /// the skew is filed under `now`).
        at: i64,
        /// The counts added: the interval's, or the counters' increase.
        counts: Counts,
        /// Whether a counter decreased and was taken as reset.
        counter_reset: bool,
    },
    /// The first cumulative sample of an SLO: it sets the baseline, and
    /// the next sample's increase over it is what counts.
    Baseline {
        /// The sample's timestamp.
        at: i64,
    },
    /// The same cumulative sample again (same timestamp and values): a
    /// retried push, accepted and ignored.
    Duplicate {
        /// The sample's timestamp.
        at: i64,
    },
}

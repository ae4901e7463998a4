//! Engine tests: hand-computed burn numbers, tier edges, intake rules,
//! states, budget, and a property test against brute-force sums.

use super::*;
use crate::rules::SloSource;

/// A time aligned to the hour (and so to every default bucket): 2023-11-14
/// 22:00:00 UTC.
const T0: i64 = 1_699_999_200;
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;
const PERIOD_30D: u64 = 30 * 86_400;

fn slo(name: &str, objective: f64, period_secs: u64) -> Slo {
    Slo {
        name: name.to_string(),
        objective,
        period_secs,
        source: SloSource::Push,
    }
}

fn engine(slos: &[Slo]) -> SloEngine {
    let mut e = SloEngine::new(EngineConfig::default()).unwrap();
    e.set_slos(slos);
    e
}

fn api() -> SloEngine {
    engine(&[slo("api", 0.999, PERIOD_30D)])
}

#[track_caller]
fn assert_close(got: f64, want: f64) {
    assert!(
        (got - want).abs() <= 1e-9 * want.abs().max(1.0),
        "got {got}, want {want}"
    );
}

#[track_caller]
fn burn_of(e: &SloEngine, now: i64, w: u64) -> f64 {
    match e.burn("api", now, w).unwrap() {
        Reading::Ok(b) => b,
        other => panic!("window {w}: {other:?}"),
    }
}

#[test]
fn hand_computed_burns_over_a_steady_stream() {
    let mut e = api();
    // One record every 10 s for an hour: 100 requests each, all good
    // except the last 5 minutes (30 records), where 2 of 100 fail.
    for i in 0..360 {
        let at = T0 + i * 10;
        let good = if at >= T0 + 3_300 { 98.0 } else { 100.0 };
        e.record("api", at, at, good, 100.0).unwrap();
    }
    // The last second of the hour: the end of a bucket in every tier, so
    // every window is exact.
    let now = T0 + 3_599;
    // 5m = [T0+3300, T0+3599]: 30 records, 3,000 events, 60 bad.
    // error ratio 60/3000 = 0.02; burn = 0.02 / (1 - 0.999) = 20.
    let w = e.window("api", now, 300).unwrap();
    assert_eq!(
        (w.counts, w.from, w.to),
        (
            Counts {
                good: 2_940,
                total: 3_000
            },
            T0 + 3_300,
            now
        )
    );
    assert_close(burn_of(&e, now, 300), 20.0);
    // 30m: 180 records, 18,000 events, the same 60 bad: 60/18000 = 1/300;
    // burn = (1/300) / 0.001 = 3.333...
    assert_close(burn_of(&e, now, 1_800), 10.0 / 3.0);
    // 1h: 360 records, 36,000 events, 60 bad: 1/600 / 0.001 = 1.666...
    assert_close(burn_of(&e, now, 3_600), 5.0 / 3.0);
    // 6h (one-minute tier) and 1d, 3d (ten-minute tier) hold the same
    // hour of data: the same 1.666...
    for w in [21_600, 86_400, 259_200] {
        assert_close(burn_of(&e, now, w), 5.0 / 3.0);
    }
    // Budget over the period: 1 - 60 / (36000 x 0.001) = 1 - 5/3 = -2/3:
    // an hour at burn 5/3 with nothing before it has overspent the budget
    // of the events seen so far, and the reading says so (negative).
    assert_close(
        e.budget_remaining("api", now).unwrap().value().unwrap(),
        -2.0 / 3.0,
    );
    // The snapshot carries exactly these values.
    let snap = e.snapshot(now, &STANDARD_WINDOWS);
    assert_close(snap.burn("api", 300).unwrap(), 20.0);
    assert_close(snap.burn("api", 3_600).unwrap(), 5.0 / 3.0);
    assert_close(snap.budget_remaining("api").unwrap(), -2.0 / 3.0);
}

#[test]
fn window_start_is_aligned_down_to_the_bucket_of_its_first_second() {
    let mut e = api();
    // One event per second, T0..=T0+95 so far.
    for t in T0..=T0 + 95 {
        e.record("api", t, t, 1.0, 1.0).unwrap();
    }
    // 30 s at T0+95: the exact window is (T0+65, T0+95] = T0+66..=T0+95,
    // 30 events. Its first second, T0+66, lies in the 10 s bucket
    // T0+60..=T0+69, so the window covers T0+60..=T0+95: 36 events (6
    // extra, at most s - 1 = 9).
    let w = e.window("api", T0 + 95, 30).unwrap();
    assert_eq!((w.from, w.counts.total, w.bucket_secs), (T0 + 60, 36, 10));
    for t in T0 + 96..=T0 + 99 {
        e.record("api", t, t, 1.0, 1.0).unwrap();
    }
    // At T0+99, the last second of a bucket, the window is exact:
    // T0+70..=T0+99, 30 events.
    let w = e.window("api", T0 + 99, 30).unwrap();
    assert_eq!((w.from, w.counts.total), (T0 + 70, 30));
    // At T0+100 the window's first second is T0+71: bucket T0+70; the
    // new bucket T0+100 is empty: T0+70..=T0+99 again.
    let w = e.window("api", T0 + 100, 30).unwrap();
    assert_eq!((w.from, w.counts.total), (T0 + 70, 30));
}

#[test]
fn each_window_is_answered_by_the_finest_tier_that_spans_it() {
    let e = api();
    let bucket = |w| e.window("api", T0, w).unwrap().bucket_secs;
    assert_eq!(bucket(1), 10);
    assert_eq!(bucket(3_600), 10);
    assert_eq!(bucket(3_601), 60);
    assert_eq!(bucket(21_600), 60);
    assert_eq!(bucket(21_601), 600);
    assert_eq!(bucket(259_200), 600);
    assert_eq!(bucket(259_201), 3_600);
    assert_eq!(bucket(PERIOD_30D), 3_600);
    assert_eq!(
        e.window("api", T0, PERIOD_30D + 1),
        Err(SloError::WindowOutOfRange {
            window_secs: PERIOD_30D + 1,
            max_secs: PERIOD_30D
        })
    );
    assert!(matches!(
        e.window("api", T0, 0),
        Err(SloError::WindowOutOfRange { .. })
    ));
}

#[test]
fn across_a_tier_boundary_only_the_start_edge_alignment_changes() {
    let mut e = api();
    // One event every 10 s for two hours.
    for i in 0..720 {
        let at = T0 + i * 10;
        e.record("api", at, at, 1.0, 1.0).unwrap();
    }
    let now = T0 + 7_199;
    // 1h, 10 s tier, exact: T0+3600..=T0+7199, 360 events.
    assert_eq!(e.window("api", now, 3_600).unwrap().counts.total, 360);
    // 1h + 1 s, one-minute tier: first second T0+3599 lies in the minute
    // T0+3540..: events T0+3540, 3550, ..., 7190 = 366.
    let w = e.window("api", now, 3_601).unwrap();
    assert_eq!((w.from, w.counts.total), (T0 + 3_540, 366));
    // Both end at now: the newest events are in every tier at once.
    assert_eq!(e.window("api", now, 7_200).unwrap().counts.total, 720);
}

#[test]
fn cumulative_counters_with_resets_and_retries() {
    let mut e = api();
    let rec = |e: &mut SloEngine, dt: i64, g: f64, t: f64| {
        e.record_cumulative("api", T0 + dt, T0 + dt, g, t)
    };
    assert_eq!(
        rec(&mut e, 0, 100.0, 100.0),
        Ok(Recorded::Baseline { at: T0 })
    );
    // Increase: good 190-100 = 90, total 200-100 = 100.
    assert_eq!(
        rec(&mut e, 60, 190.0, 200.0),
        Ok(Recorded::Applied {
            at: T0 + 60,
            counts: Counts {
                good: 90,
                total: 100
            },
            counter_reset: false
        })
    );
    // Both counters fell: a restart. The increase is the new values.
    assert_eq!(
        rec(&mut e, 120, 20.0, 30.0),
        Ok(Recorded::Applied {
            at: T0 + 120,
            counts: Counts {
                good: 20,
                total: 30
            },
            counter_reset: true
        })
    );
    // 60-20 = 40 good, 80-30 = 50 total.
    rec(&mut e, 180, 60.0, 80.0).unwrap();
    // A retry of the same sample is ignored; a different sample at the
    // same time, or an older one, is refused.
    assert_eq!(
        rec(&mut e, 180, 60.0, 80.0),
        Ok(Recorded::Duplicate { at: T0 + 180 })
    );
    assert_eq!(
        rec(&mut e, 180, 61.0, 81.0),
        Err(SloError::OutOfOrder {
            at: T0 + 180,
            previous: T0 + 180
        })
    );
    assert_eq!(
        e.record_cumulative("api", T0 + 200, T0 + 170, 70.0, 90.0),
        Err(SloError::OutOfOrder {
            at: T0 + 170,
            previous: T0 + 180
        })
    );
    // A good counter above the total counter is refused outright.
    assert_eq!(
        rec(&mut e, 240, 100.0, 10.0),
        Err(SloError::GoodExceedsTotal {
            good: 100,
            total: 10
        })
    );
    // Good rose 60 -> 65 (increase 5), total fell 80 -> 70 (a reset:
    // increase 70): consistent. The next sample is not, though its
    // counters are (72 <= 75): good rose by 72-65 = 7, total by 75-70 = 5.
    rec(&mut e, 240, 65.0, 70.0).unwrap();
    assert_eq!(
        rec(&mut e, 300, 72.0, 75.0),
        Err(SloError::IncreaseGoodExceedsTotal { good: 7, total: 5 })
    );
    // Refusals leave the baseline alone: the next sample counts from
    // (65, 70): 70-65 = 5 good of 80-70 = 10.
    rec(&mut e, 360, 70.0, 80.0).unwrap();
    // Sum over the 10 minutes: good 90+20+40+5+5 = 160, total
    // 100+30+50+70+10 = 260.
    let w = e.window("api", T0 + 599, 600).unwrap();
    assert_eq!(
        w.counts,
        Counts {
            good: 160,
            total: 260
        }
    );
    // burn = (100/260) / 0.001 = 384.6...
    assert_close(burn_of(&e, T0 + 599, 600), 100.0 / 260.0 / 0.001);
}

#[test]
fn gaps_read_as_no_data_and_leave_sums_exact() {
    let mut e = api();
    e.record("api", T0, T0, 90.0, 100.0).unwrap();
    // Two hours of silence: the last hour has no records at all.
    let now = T0 + 2 * HOUR;
    assert_eq!(e.burn("api", now, 3_600), Ok(Reading::NoData));
    assert_eq!(e.burn("api", now, 300), Ok(Reading::NoData));
    // The 6h window still holds the first record: 10 bad of 100 = 0.1;
    // 0.1 / 0.001 = 100.
    assert_close(burn_of(&e, now, 21_600), 100.0);
    // The sender comes back after more than the finest tier's span (its
    // ring wraps whole) and more than the one-minute tier's (6h).
    let back = T0 + 7 * HOUR;
    e.record("api", back, back, 100.0, 100.0).unwrap();
    assert_close(burn_of(&e, back, 3_600), 0.0);
    // 1d: both records: 10 bad of 200 = 0.05 -> burn 50.
    assert_close(burn_of(&e, back, 86_400), 50.0);
}

#[test]
fn late_data_lands_in_its_bucket_and_too_late_data_is_refused() {
    let mut e = api();
    let now = T0 + 1_800;
    e.record("api", now, now, 100.0, 100.0).unwrap();
    // 25 minutes late: inside the 30m window, outside the 5m one.
    e.record("api", now, T0 + 300, 0.0, 50.0).unwrap();
    assert_eq!(e.window("api", now, 300).unwrap().counts.total, 100);
    assert_eq!(
        e.window("api", now, 1_800).unwrap().counts,
        Counts {
            good: 100,
            total: 150
        }
    );
    // Exactly the lateness bound (1 h) is accepted; one second more is not.
    assert!(e.record("api", now, now - 3_600, 1.0, 1.0).is_ok());
    assert_eq!(
        e.record("api", now, now - 3_601, 1.0, 1.0),
        Err(SloError::TooLate {
            at: now - 3_601,
            oldest: now - 3_600
        })
    );
    // Up to the skew (60 s) ahead is filed under now; more is refused.
    assert_eq!(
        e.record("api", now, now + 60, 1.0, 1.0),
        Ok(Recorded::Applied {
            at: now,
            counts: Counts { good: 1, total: 1 },
            counter_reset: false
        })
    );
    assert_eq!(
        e.record("api", now, now + 61, 1.0, 1.0),
        Err(SloError::InFuture {
            at: now + 61,
            now,
            skew_secs: 60
        })
    );
    // If the caller's clock steps back, data older than the rings hold is
    // refused even within the lateness bound.
    let mut e2 = api();
    let later = T0 + 2 * HOUR;
    e2.record("api", later, later, 1.0, 1.0).unwrap();
    assert!(matches!(
        e2.record("api", T0, T0 - 100, 1.0, 1.0),
        Err(SloError::TooLate { .. })
    ));
}

#[test]
fn refused_values_are_named_and_change_nothing() {
    let mut e = api();
    e.record("api", T0, T0, 5.0, 10.0).unwrap();
    let before = e.window("api", T0, 300).unwrap();
    let cases = [
        (f64::NAN, 1.0, "good is not a finite number (NaN)"),
        (1.0, f64::INFINITY, "total is not a finite number (inf)"),
        (-1.0, 1.0, "good is negative (-1)"),
        (1.0, 2.5, "total is not a whole number of events (2.5)"),
        (
            1.0,
            1e17,
            "total (100000000000000000) is above 2^53, the largest count kept exactly",
        ),
        (3.0, 2.0, "good (3) exceeds total (2)"),
    ];
    for (good, total, message) in cases {
        let err = e.record("api", T0, T0, good, total).unwrap_err();
        assert_eq!(err.to_string(), message);
    }
    // NaN is not equal to itself, so compare the message.
    let err = e
        .record_cumulative("api", T0, T0, 1.0, f64::NAN)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "total counter is not a finite number (NaN)"
    );
    assert_eq!(
        e.record("nope", T0, T0, 1.0, 1.0),
        Err(SloError::UnknownSlo {
            name: "nope".into()
        })
    );
    assert_eq!(e.window("api", T0, 300).unwrap(), before);
}

#[test]
fn no_data_zero_traffic_and_low_volume_are_states_not_values() {
    let mut e = engine(&[
        slo("never", 0.999, PERIOD_30D),
        slo("zero", 0.999, PERIOD_30D),
        slo("low", 0.999, PERIOD_30D),
        slo("enough", 0.999, PERIOD_30D),
    ]);
    e.record("zero", T0, T0, 0.0, 0.0).unwrap();
    e.record("low", T0, T0, 0.0, 9.0).unwrap();
    e.record("enough", T0, T0, 9.0, 10.0).unwrap();
    let now = T0 + 10;
    assert_eq!(e.burn("never", now, 300), Ok(Reading::NoData));
    assert_eq!(e.burn("zero", now, 300), Ok(Reading::ZeroTraffic));
    assert_eq!(
        e.burn("low", now, 300),
        Ok(Reading::LowVolume {
            total: 9,
            min_events: 10
        })
    );
    // 10 events reach the guard: 1 bad of 10 = 0.1 -> burn 100.
    assert_close(e.burn("enough", now, 300).unwrap().value().unwrap(), 100.0);
    // Only the value reaches the snapshot; the rest read as unknown.
    let snap = e.snapshot(now, &STANDARD_WINDOWS);
    for name in ["never", "zero", "low"] {
        for w in STANDARD_WINDOWS {
            assert_eq!(snap.burn(name, w), None, "{name} {w}");
        }
        assert_eq!(snap.budget_remaining(name), None, "{name}");
    }
    assert_close(snap.burn("enough", 300).unwrap(), 100.0);
    // ...and the status says which state each is in.
    let state = |n| e.status(n, now).unwrap().state;
    assert_eq!(state("never"), DataState::NoData);
    assert_eq!(state("zero"), DataState::ZeroTraffic);
    assert_eq!(state("low"), DataState::LowVolume);
    assert_eq!(state("enough"), DataState::Ok);
    let never = e.status("never", now).unwrap();
    assert_eq!(never.exhaustion, Exhaustion::Unknown);
    assert_eq!(never.trend, Trend::Unknown);
    assert_eq!(never.last_record_at, None);
}

#[test]
fn the_minimum_events_guard_is_configurable() {
    let mut e = SloEngine::new(EngineConfig {
        min_events: 1,
        ..EngineConfig::default()
    })
    .unwrap();
    e.set_slos(&[slo("api", 0.999, PERIOD_30D)]);
    e.record("api", T0, T0, 0.0, 1.0).unwrap();
    // One event, failed: error ratio 1 -> burn 1 / 0.001 = 1000 (the
    // largest possible).
    assert_close(burn_of(&e, T0, 300), 1_000.0);
}

#[test]
fn budget_remaining_and_exhaustion_by_hand() {
    let mut e = engine(&[slo("api", 0.99, PERIOD_30D)]);
    // Budget: 1 - 0.99 = 0.01 of events. Two days ago: 990,000 events,
    // 3,800 bad. Now: 10,000 events, 200 bad.
    e.record("api", T0, T0, 986_200.0, 990_000.0).unwrap();
    let now = T0 + 2 * DAY + 10;
    e.record("api", now, now, 9_800.0, 10_000.0).unwrap();
    // Period: 1,000,000 events, 4,000 bad: 1 - 4000 / (1e6 x 0.01) = 0.6.
    let status = e.status("api", now).unwrap();
    assert_close(status.budget_remaining.value().unwrap(), 0.6);
    // Current burn (1h): 200/10000 = 0.02 / 0.01 = 2.
    let one_hour = status
        .burns
        .iter()
        .find(|b| b.window_secs == 3_600)
        .unwrap();
    assert_close(one_hour.burn.value().unwrap(), 2.0);
    // At burn 2 the remaining 0.6 lasts 0.6 x 30 d / 2 = 9 d = 777,600 s.
    assert_eq!(
        status.exhaustion,
        Exhaustion::In {
            secs: 777_600,
            at: now + 777_600
        }
    );
    assert_eq!(status.state, DataState::Ok);
    assert_eq!(status.last_record_at, Some(now));
    assert_eq!(
        status
            .burns
            .iter()
            .map(|b| b.window_secs)
            .collect::<Vec<_>>(),
        STANDARD_WINDOWS
    );

    // 10,000 more events, 7,000 bad: 11,000 bad of 1,010,000;
    // 1 - 11000 / 10100 = -0.0891...: overspent, and so exhausted.
    e.record("api", now, now, 3_000.0, 10_000.0).unwrap();
    let status = e.status("api", now).unwrap();
    assert_close(
        status.budget_remaining.value().unwrap(),
        1.0 - 11_000.0 / 10_100.0,
    );
    assert_eq!(status.exhaustion, Exhaustion::Exhausted);

    // Nothing failing now: the budget is not being spent.
    let mut calm = engine(&[slo("api", 0.99, PERIOD_30D)]);
    calm.record("api", T0, T0, 990.0, 1_000.0).unwrap();
    let later = T0 + DAY;
    calm.record("api", later, later, 100.0, 100.0).unwrap();
    assert_eq!(
        calm.status("api", later).unwrap().exhaustion,
        Exhaustion::Never
    );
}

#[test]
fn the_trend_compares_five_minutes_with_the_hour() {
    // 50 minutes clean then 10 minutes at 5% errors: the 5m burn (50) is
    // above the hour's (10 min of 5% over 60 min = 0.833% -> 8.33).
    let mut e = api();
    for i in 0..60 {
        let at = T0 + i * 60;
        let good = if i >= 50 { 95.0 } else { 100.0 };
        e.record("api", at, at, good, 100.0).unwrap();
    }
    let now = T0 + 3_599;
    assert_eq!(e.status("api", now).unwrap().trend, Trend::Rising);
    // The reverse: the errors were earlier in the hour.
    let mut e = api();
    for i in 0..60 {
        let at = T0 + i * 60;
        let good = if i < 10 { 95.0 } else { 100.0 };
        e.record("api", at, at, good, 100.0).unwrap();
    }
    assert_eq!(e.status("api", now).unwrap().trend, Trend::Recovering);
    // Even errors: both windows at 1% -> burn 10; steady.
    let mut e = api();
    for i in 0..60 {
        let at = T0 + i * 60;
        e.record("api", at, at, 99.0, 100.0).unwrap();
    }
    assert_eq!(e.status("api", now).unwrap().trend, Trend::Steady);
}

#[test]
fn a_short_period_limits_the_windows() {
    // A 1-day SLO: the ten-minute tier is cut to the day and is the last;
    // 3d is out of range, and left out of snapshot and status.
    let mut e = engine(&[slo("daily", 0.99, 86_400)]);
    e.record("daily", T0, T0, 90.0, 100.0).unwrap();
    assert!(matches!(
        e.window("daily", T0, 259_200),
        Err(SloError::WindowOutOfRange {
            max_secs: 86_400,
            ..
        })
    ));
    let snap = e.snapshot(T0, &STANDARD_WINDOWS);
    assert_eq!(snap.burn("daily", 259_200), None);
    // 10 bad of 100: 0.1 / 0.01 = 10; budget 1 - 10 = -9.
    assert_close(snap.burn("daily", 86_400).unwrap(), 10.0);
    assert_close(snap.budget_remaining("daily").unwrap(), -9.0);
    assert_eq!(e.status("daily", T0).unwrap().burns.len(), 5);
}

#[test]
fn reloading_slos_keeps_data_unless_the_period_changed() {
    let mut e = engine(&[slo("a", 0.999, PERIOD_30D), slo("b", 0.999, PERIOD_30D)]);
    e.record("a", T0, T0, 90.0, 100.0).unwrap();
    e.record("b", T0, T0, 90.0, 100.0).unwrap();
    // a: new objective, same period -> same counts, new burn: 0.1 / 0.01
    // = 10. b: new period -> empty. c: new. (Order follows the new list.)
    e.set_slos(&[
        slo("c", 0.9, PERIOD_30D),
        slo("a", 0.99, PERIOD_30D),
        slo("b", 0.999, 7 * 86_400),
    ]);
    assert_eq!(e.slo_names().collect::<Vec<_>>(), ["c", "a", "b"]);
    assert_close(e.burn("a", T0, 300).unwrap().value().unwrap(), 10.0);
    assert_eq!(e.burn("b", T0, 300), Ok(Reading::NoData));
    e.set_slos(&[slo("c", 0.9, PERIOD_30D)]);
    assert!(matches!(
        e.burn("a", T0, 300),
        Err(SloError::UnknownSlo { .. })
    ));
}

#[test]
fn inconsistent_settings_are_all_reported() {
    let config = EngineConfig {
        tiers: vec![
            TierSpec {
                bucket_secs: 10,
                span_secs: 95,
            },
            TierSpec {
                bucket_secs: 0,
                span_secs: 60,
            },
        ],
        lateness_secs: 100,
        exhaustion_window_secs: 0,
        ..EngineConfig::default()
    };
    let Err(SloError::InvalidConfig { problems }) = SloEngine::new(config) else {
        panic!("accepted")
    };
    assert_eq!(
        problems,
        [
            "tiers[0].span_secs (95) must be a whole number (>= 1) of buckets of 10 s",
            "tiers[1].bucket_secs must be above 0",
            "tiers[1] must have longer buckets and a longer span than tiers[0]",
            "lateness_secs (100) must be at most the finest tier's span (95)",
            "exhaustion_window_secs must be above 0",
        ]
    );
    assert!(EngineConfig::default().problems().is_empty());
}

#[test]
fn memory_is_paid_on_the_first_record() {
    let mut e = api();
    let empty = e.memory_bytes();
    e.record("api", T0, T0, 1.0, 1.0).unwrap();
    // 361 + 361 + 433 + 721 = 1,876 buckets of 16 bytes, plus seen bits
    // (6 + 6 + 7 + 12 words of 8 bytes) and the ring headers.
    let rings = 1_876 * 16 + (6 + 6 + 7 + 12) * 8;
    let added = e.memory_bytes() - empty;
    assert!(added >= rings && added < rings + 512, "{added}");
}

mod property {
    use super::*;
    use proptest::prelude::*;

    /// One step of a stream: time moves on by `dt`, then a record arrives
    /// stamped `offset` seconds from now (negative: late; beyond the
    /// lateness bound or the skew: refused).
    #[derive(Clone, Debug)]
    struct Step {
        dt: i64,
        offset: i64,
        good: u64,
        bad: u64,
    }

    fn steps(max_dt: i64, lateness: i64) -> impl Strategy<Value = Vec<Step>> {
        let dt = prop_oneof![
            6 => 0..=max_dt / 50,
            3 => 0..=max_dt,
            1 => Just(0),
        ];
        let offset = prop_oneof![
            6 => Just(0i64),
            3 => -lateness - 5..=0,
            1 => -5i64..=70,
        ];
        prop::collection::vec(
            (
                dt,
                offset,
                0u64..20,
                prop_oneof![3 => Just(0u64), 1 => 0u64..5],
            ),
            1..120,
        )
        .prop_map(|v| {
            v.into_iter()
                .map(|(dt, offset, good, bad)| Step {
                    dt,
                    offset,
                    good,
                    bad,
                })
                .collect()
        })
    }

    /// Accepted events: (second filed under, good, total).
    type Events = Vec<(i64, u64, u64)>;

    /// What the engine should hold for a window, from the raw events and
    /// the documented alignment: events with s*floor((now-w+1)/s) <= at
    /// <= now, s the bucket of the finest tier spanning w.
    fn brute(events: &Events, tiers: &[TierSpec], now: i64, w: u64) -> (Counts, bool) {
        let s = tiers.iter().find(|t| t.span_secs >= w).unwrap().bucket_secs as i64;
        let from = (now - w as i64 + 1).div_euclid(s) * s;
        let mut c = Counts::default();
        let mut seen = false;
        for &(at, good, total) in events {
            if from <= at && at <= now {
                c.good += good;
                c.total += total;
                seen = true;
            }
        }
        (c, seen)
    }

    fn run(config: EngineConfig, period: u64, steps: &[Step], windows: &[u64]) {
        let tiers = config.layout(period);
        let (lateness, skew) = (config.lateness_secs as i64, config.future_skew_secs as i64);
        let mut e = SloEngine::new(config).unwrap();
        e.set_slos(&[slo("s", 0.99, period)]);
        let mut events: Events = Vec::new();
        let mut now = T0 + 7;
        for step in steps {
            now += step.dt;
            let at = now + step.offset;
            let (good, total) = (step.good, step.good + step.bad);
            let got = e.record("s", now, at, good as f64, total as f64);
            if at > now + skew {
                assert!(matches!(got, Err(SloError::InFuture { .. })), "{got:?}");
            } else if at < now - lateness {
                assert!(matches!(got, Err(SloError::TooLate { .. })), "{got:?}");
            } else {
                assert!(got.is_ok(), "{got:?}");
                events.push((at.min(now), good, total));
            }
            // Query a little after the record too: the tick runs later.
            for query_now in [now, now + step.dt / 3] {
                for &w in windows {
                    let wc = e.window("s", query_now, w).unwrap();
                    let (counts, seen) = brute(&events, &tiers, query_now, w);
                    assert_eq!(
                        (wc.counts, wc.has_data),
                        (counts, seen),
                        "window {w} at {query_now}"
                    );
                }
            }
        }
    }

    /// Small tiers (2 s / 1 min, 10 s / 10 min, 1 min up to a 2 h period)
    /// so that short streams wrap every ring many times.
    fn small_config() -> EngineConfig {
        EngineConfig {
            tiers: vec![
                TierSpec {
                    bucket_secs: 2,
                    span_secs: 60,
                },
                TierSpec {
                    bucket_secs: 10,
                    span_secs: 600,
                },
                TierSpec {
                    bucket_secs: 60,
                    span_secs: 3_600,
                },
            ],
            lateness_secs: 60,
            future_skew_secs: 5,
            ..EngineConfig::default()
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn window_sums_equal_brute_force_sums_small_tiers(
            steps in steps(900, 60),
            extra in prop::collection::vec(1u64..=7_200, 3),
        ) {
            let mut windows = vec![1, 2, 59, 60, 61, 600, 601, 3_600, 3_601, 7_200];
            windows.extend(extra);
            run(small_config(), 7_200, &steps, &windows);
        }

        #[test]
        fn window_sums_equal_brute_force_sums_default_tiers(
            steps in steps(4 * 3_600, 3_600),
            extra in prop::collection::vec(1u64..=3 * 86_400, 3),
        ) {
            let mut windows = STANDARD_WINDOWS.to_vec();
            windows.extend([1, 3_601, 21_601, 3 * 86_400 + 1, 7 * 86_400]);
            windows.extend(extra);
            run(EngineConfig::default(), 7 * 86_400, &steps, &windows);
        }
    }
}

#[test]
fn history_older_than_the_lateness_bound_goes_in_oldest_first() {
    let mut e = api();
    let now = T0 + 10 * DAY - 1;
    // Hourly increases over the last 10 days, rebuilt at once: far older
    // than the 1 h lateness bound that pushed records must meet.
    for h in 0..240 {
        let at = T0 + h * HOUR + HOUR - 1;
        let good = if h >= 216 { 990 } else { 1_000 };
        let r = e.record_past("api", now, at, Counts { good, total: 1_000 });
        assert!(matches!(r, Ok(Recorded::Applied { .. })), "{r:?}");
    }
    // The last day: 24 hours of 10 failures in 1,000: ratio 0.01, burn 10.
    assert_close(burn_of(&e, now, DAY as u64), 10.0);
    // 3 days: 240 bad of 72,000.
    assert_close(burn_of(&e, now, 3 * DAY as u64), 240.0 / 72_000.0 / 0.001);
    // Once laid out, the rings refuse what they no longer hold.
    let err = e
        .record_past("api", now, T0, Counts { good: 1, total: 1 })
        .unwrap_err();
    assert!(matches!(err, SloError::TooLate { .. }), "{err}");
    let err = e
        .record_past("api", now, now, Counts { good: 2, total: 1 })
        .unwrap_err();
    assert_eq!(err, SloError::GoodExceedsTotal { good: 2, total: 1 });
    // Clearing forgets it all, and history can start over further back.
    e.clear("api").unwrap();
    assert_eq!(e.burn("api", now, 300).unwrap(), Reading::NoData);
    e.record_past("api", now, T0, Counts { good: 1, total: 1 })
        .unwrap();
}

#[test]
fn stale_data_gives_no_value_and_stays_out_of_the_snapshot() {
    let mut e = api();
    let now = T0 + HOUR - 1;
    for i in 0..360 {
        let at = T0 + i * 10;
        e.record("api", at, at, 900.0, 1_000.0).unwrap();
    }
    assert_close(burn_of(&e, now, 300), 100.0);
    e.set_stale("api", now, "query failed".into()).unwrap();
    e.set_stale("api", now + 30, "query failed again".into())
        .unwrap();
    assert_eq!(e.burn("api", now, 300).unwrap(), Reading::Stale);
    assert_eq!(e.budget_remaining("api", now).unwrap(), Reading::Stale);
    let snap = e.snapshot(now, &[300, 3_600]);
    assert_eq!(snap.burn("api", 300), None, "stale is unknown, not zero");
    let status = e.status("api", now).unwrap();
    assert_eq!(status.state, DataState::Stale);
    assert_eq!(
        status.stale,
        Some(Staleness {
            since: now,
            reason: "query failed again".into()
        }),
        "the first time it went stale, the latest reason"
    );
    assert!(status.burns.iter().all(|b| b.burn == Reading::Stale));
    // The counts held are still shown: stale is about trust, not loss.
    assert_eq!(status.burns[0].counts.total, 30_000);
    assert_eq!(status.exhaustion, Exhaustion::Unknown);
    assert_eq!(status.trend, Trend::Unknown);
    e.set_fresh("api").unwrap();
    assert_close(burn_of(&e, now, 300), 100.0);
    assert_eq!(e.status("api", now).unwrap().stale, None);
}

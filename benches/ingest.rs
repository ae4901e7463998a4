//! The request side of ingest, per 100-alert Alertmanager API v2 body of
//! the load generator's shape (6 labels, 2 annotations, generatorURL):
//! reading the body into alerts, and then preparing each for the router
//! (classification with its explanation, fingerprint, group key), which
//! runs on the request's own task. The peer in the same run is serde_json
//! reading the same body into a `serde_json::Value`, the floor of any
//! reading that goes through one.
//!
//! Run: `cargo bench --bench ingest`. Numbers go in docs/performance.md.

mod common;

use std::hint::black_box;

use sevroute::classify::{BurnSnapshot, classify};
use sevroute::normalize::prometheus_v2;
use sevroute::route::{ClassifiedAlert, group_key};
use time::macros::datetime;

fn main() {
    divan::main();
}

/// 100 alerts as `benches/loadgen.rs` writes them, in 10 groups.
fn body() -> Vec<u8> {
    common::load_body(0..100, 10)
}

const NOW: time::OffsetDateTime = datetime!(2026-11-27 10:05 UTC);

/// The body read into 100 alerts.
#[divan::bench]
fn read_100_alerts(bencher: divan::Bencher) {
    let body = body();
    bencher.bench(|| prometheus_v2(black_box(&body), NOW, time::Duration::hours(1)).unwrap());
}

/// The peer: the same body into a `serde_json::Value`, nothing else.
#[divan::bench]
fn peer_serde_value_100_alerts(bencher: divan::Bencher) {
    let body = body();
    bencher.bench(|| serde_json::from_slice::<serde_json::Value>(black_box(&body)).unwrap());
}

/// Reading and preparing 100 alerts as a request's task does.
#[divan::bench]
fn read_and_prepare_100_alerts(bencher: divan::Bencher) {
    let body = body();
    let rules = common::ruleset();
    let burn = BurnSnapshot::new();
    bencher.bench(|| {
        let alerts = prometheus_v2(black_box(&body), NOW, time::Duration::hours(1)).unwrap();
        alerts
            .into_iter()
            .map(|alert| {
                let classification = classify(&rules, &alert, &burn, NOW);
                let fingerprint = alert.fingerprint().to_string();
                let (key, _) = group_key(&rules.grouping, &alert);
                (
                    ClassifiedAlert::new(alert, &classification),
                    fingerprint,
                    key,
                )
            })
            .collect::<Vec<_>>()
    });
}

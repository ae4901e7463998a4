//! The router's cost per alert, without the store: batches of 100 alerts
//! of the load generator's shape (`benches/loadgen.rs`) go through
//! `Pipeline::ingest` (the request side's preparation, then the router
//! task's routing) into a pipeline that already holds 100,000 active
//! alerts in 1,000 incidents, as in `benches/vs-alertmanager.sh`. The
//! store's commit does nothing, so what is timed is the CPU the pipeline
//! spends on a batch, on one thread (a current-thread runtime).
//!
//! Run: `cargo bench --bench router`. Numbers go in docs/performance.md.

mod common;

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use sevroute::classify::{BurnSnapshot, classify};
use sevroute::model::Alert;
use sevroute::normalize::prometheus_v2;
use sevroute::pipeline::{Pipeline, PipelineSettings, SystemClock};
use sevroute::route::{ClassifiedAlert, Incident, TimelineEntry, group_key_text};
use sevroute::store::sqlite::SqliteStore;
use sevroute::store::{
    AttemptLog, AttemptRecord, CommitBatch, Delivery, DeliveryFilter, DisabledDestination,
    IncidentFilter, NewDelivery, OutboxStats, SloSampleRecord, Store, StoreError,
};
use time::OffsetDateTime;

fn main() {
    divan::main();
}

const ACTIVE: usize = 100_000;
const GROUPS: usize = 1_000;
const BATCH: usize = 100;

/// Load alerts `range` as one Alertmanager API v2 body, as the load
/// generator writes them (no `endsAt`: each read sets it from `now`).
fn body(range: std::ops::Range<usize>) -> Vec<u8> {
    common::load_body(range, GROUPS)
}

/// The body read as the HTTP edge reads it, at the wall clock's now.
fn alerts(body: &[u8]) -> Vec<Alert> {
    prometheus_v2(body, OffsetDateTime::now_utc(), time::Duration::hours(1)).expect("alerts")
}

/// A pipeline holding `ACTIVE` alerts, on a current-thread runtime.
fn loaded() -> (tokio::runtime::Runtime, Pipeline) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ruleset = common::ruleset();
    let pipeline = rt.block_on(async {
        let store = Arc::new(NoCommit(SqliteStore::in_memory().expect("store")));
        let (pipeline, _task) = Pipeline::start(
            store,
            Arc::new(ArcSwap::from_pointee(ruleset)),
            Arc::new(SystemClock),
            PipelineSettings {
                max_batch: 512,
                max_wait: Duration::ZERO,
                tick: Duration::from_secs(3600),
                slo_evaluation: Duration::from_secs(3600),
                slo_hold_down: Duration::from_secs(300),
                public_url: "http://127.0.0.1:9797".into(),
            },
        )
        .expect("pipeline");
        for start in (0..ACTIVE).step_by(1000) {
            let batch = alerts(&body(start..start + 1000));
            pipeline.ingest(batch).await.expect("ingest");
        }
        pipeline
    });
    (rt, pipeline)
}

/// Refreshes of 100 active alerts (100 incidents), one batch at a time.
#[divan::bench(sample_count = 200, sample_size = 4)]
fn refresh_100_alerts(bencher: divan::Bencher) {
    let (rt, pipeline) = loaded();
    let bodies: Vec<Vec<u8>> = (0..ACTIVE)
        .step_by(BATCH)
        .map(|start| body(start..start + BATCH))
        .collect();
    let next = Cell::new(0);
    bencher
        .with_inputs(|| {
            let i = next.get();
            next.set((i + 1) % bodies.len());
            alerts(&bodies[i])
        })
        .bench_local_values(|batch| rt.block_on(pipeline.ingest(batch)).expect("ingest"));
}

/// 100 new alerts joining 100 open incidents, one batch at a time (the
/// incidents grow by 100 alerts a batch, from 100,000).
#[divan::bench(sample_count = 100, sample_size = 4)]
fn new_100_alerts(bencher: divan::Bencher) {
    let (rt, pipeline) = loaded();
    let next = Cell::new(ACTIVE);
    bencher
        .with_inputs(|| {
            let start = next.get();
            next.set(start + BATCH);
            alerts(&body(start..start + BATCH))
        })
        .bench_local_values(|batch| rt.block_on(pipeline.ingest(batch)).expect("ingest"));
}

/// The request side's share of the above: classifying, fingerprinting
/// and keying 100 read alerts, as `Pipeline::ingest` does before it hands
/// them to the router.
#[divan::bench(sample_count = 200, sample_size = 4)]
fn prepare_100_alerts(bencher: divan::Bencher) {
    let ruleset = common::ruleset();
    let burn = BurnSnapshot::new();
    let body = body(0..BATCH);
    bencher
        .with_inputs(|| alerts(&body))
        .bench_local_values(|batch| {
            let now = OffsetDateTime::now_utc();
            batch
                .into_iter()
                .map(|alert| {
                    let classification = classify(&ruleset, &alert, &burn, now);
                    let key = group_key_text(&ruleset.grouping, &alert);
                    (ClassifiedAlert::new(alert, &classification), key)
                })
                .collect::<Vec<_>>()
        });
}

/// An in-memory SQLite store whose commit writes nothing: the routing
/// state alone is measured. (Its reads see an empty store.)
struct NoCommit(SqliteStore);

impl Store for NoCommit {
    fn commit(&self, _batch: &CommitBatch) -> Result<(), StoreError> {
        Ok(())
    }
    fn active_incidents(&self) -> Result<Vec<Incident>, StoreError> {
        self.0.active_incidents()
    }
    fn max_incident_id(&self) -> Result<i64, StoreError> {
        self.0.max_incident_id()
    }
    fn incident(&self, id: i64) -> Result<Option<(Incident, Vec<TimelineEntry>)>, StoreError> {
        self.0.incident(id)
    }
    fn incidents(&self, filter: &IncidentFilter) -> Result<Vec<Incident>, StoreError> {
        self.0.incidents(filter)
    }
    fn due_deliveries(
        &self,
        now: OffsetDateTime,
        limit: usize,
        in_flight: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.0.due_deliveries(now, limit, in_flight)
    }
    fn next_delivery_due(&self) -> Result<Option<OffsetDateTime>, StoreError> {
        self.0.next_delivery_due()
    }
    fn record_attempts(&self, attempts: &[(i64, AttemptRecord)]) -> Result<(), StoreError> {
        self.0.record_attempts(attempts)
    }
    fn deliveries_for(&self, incident_id: i64) -> Result<Vec<Delivery>, StoreError> {
        self.0.deliveries_for(incident_id)
    }
    fn outbox_stats(&self, now: OffsetDateTime) -> Result<OutboxStats, StoreError> {
        self.0.outbox_stats(now)
    }
    fn instance_id(&self) -> Result<String, StoreError> {
        self.0.instance_id()
    }
    fn postpone(&self, id: i64, at: OffsetDateTime) -> Result<(), StoreError> {
        self.0.postpone(id, at)
    }
    fn fail_over(
        &self,
        id: i64,
        attempt: &AttemptRecord,
        to: &NewDelivery,
        note: &TimelineEntry,
    ) -> Result<i64, StoreError> {
        self.0.fail_over(id, attempt, to, note)
    }
    fn coalesce_repeats(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
        self.0.coalesce_repeats(now)
    }
    fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>, StoreError> {
        self.0.deliveries(filter)
    }
    fn delivery(&self, id: i64) -> Result<Option<(Delivery, Vec<AttemptLog>)>, StoreError> {
        self.0.delivery(id)
    }
    fn delivery_id(&self, webhook_id: &str) -> Result<Option<i64>, StoreError> {
        self.0.delivery_id(webhook_id)
    }
    fn requeue(&self, id: i64, now: OffsetDateTime) -> Result<Option<bool>, StoreError> {
        self.0.requeue(id, now)
    }
    fn requeue_since(
        &self,
        since: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Vec<i64>, StoreError> {
        self.0.requeue_since(since, now)
    }
    fn disable_destination(
        &self,
        name: &str,
        reason: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.0.disable_destination(name, reason, at)
    }
    fn enable_destination(&self, name: &str) -> Result<bool, StoreError> {
        self.0.enable_destination(name)
    }
    fn enable_all_destinations(&self) -> Result<(), StoreError> {
        self.0.enable_all_destinations()
    }
    fn disabled_destinations(&self) -> Result<Vec<DisabledDestination>, StoreError> {
        self.0.disabled_destinations()
    }
    fn slo_samples(&self) -> Result<Vec<SloSampleRecord>, StoreError> {
        self.0.slo_samples()
    }
}

//! Heap bytes per active alert, and where they go: builds N alerts the way
//! `benches/loadgen.rs` sends them (6 labels, 2 annotations, a
//! generatorURL, 100 alerts per group), reads them with the Prometheus
//! normalizer, classifies them and routes them with `route::declare` /
//! `route::apply` into incidents held the way the router holds them (by
//! group key, plus the due-timer index), then counts the heap with a
//! counting global allocator.
//!
//! Run: `cargo bench --bench alert_memory [-- N]` (N defaults to 100,000).
//! It prints numbers; it asserts nothing about them. "requested" is what
//! the code asked for; "glibc" rounds each allocation up to the chunk
//! glibc's malloc really takes (8 bytes of header, 16-byte steps, at least
//! 32), which is closer to what RSS pays.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use serde_json::Value;
use sevroute::classify::{BurnSnapshot, classify};
use sevroute::route::{self, ClassifiedAlert, Event, Incident, TrackedAlert};
use sevroute::rules::RuleSet;
use time::OffsetDateTime;

/// Counts live allocations and their bytes, then defers to the system
/// allocator (glibc malloc, as the server uses).
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static LIVE_CHUNK_BYTES: AtomicUsize = AtomicUsize::new(0);
static LIVE_COUNT: AtomicUsize = AtomicUsize::new(0);

/// The bytes glibc's malloc takes for a request of `size` (64-bit).
fn glibc_chunk(size: usize) -> usize {
    ((size + 8 + 15) & !15).max(32)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Relaxed);
            LIVE_CHUNK_BYTES.fetch_add(glibc_chunk(layout.size()), Relaxed);
            LIVE_COUNT.fetch_add(1, Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size(), Relaxed);
        LIVE_CHUNK_BYTES.fetch_sub(glibc_chunk(layout.size()), Relaxed);
        LIVE_COUNT.fetch_sub(1, Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE_BYTES.fetch_sub(layout.size(), Relaxed);
            LIVE_BYTES.fetch_add(new_size, Relaxed);
            LIVE_CHUNK_BYTES.fetch_sub(glibc_chunk(layout.size()), Relaxed);
            LIVE_CHUNK_BYTES.fetch_add(glibc_chunk(new_size), Relaxed);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Live heap at one moment.
#[derive(Clone, Copy)]
struct Heap {
    bytes: usize,
    chunk_bytes: usize,
    count: usize,
}

fn heap() -> Heap {
    Heap {
        bytes: LIVE_BYTES.load(Relaxed),
        chunk_bytes: LIVE_CHUNK_BYTES.load(Relaxed),
        count: LIVE_COUNT.load(Relaxed),
    }
}

/// The heap `build` leaves behind, per alert, minus `inline` bytes per
/// alert that belong to a container made outside (so only what the
/// values own on the heap is counted).
fn per_alert<T>(n: usize, build: impl FnOnce() -> T) -> (T, [f64; 3]) {
    let before = heap();
    let kept = build();
    let after = heap();
    let per = |a: usize, b: usize| (a as f64 - b as f64) / n as f64;
    (
        kept,
        [
            per(after.bytes, before.bytes),
            per(after.chunk_bytes, before.chunk_bytes),
            per(after.count, before.count),
        ],
    )
}

/// Incidents as the router holds them: active ones by group key, and when
/// each one's next timer is due.
struct RouterState {
    active: HashMap<String, Incident>,
    due_at: HashMap<String, OffsetDateTime>,
}

fn ingest(n: usize, ruleset: &RuleSet, now: OffsetDateTime) -> RouterState {
    const BATCH: usize = 100;
    let groups = (n / 100).max(1);
    let run = now.unix_timestamp().to_string();
    let starts_at = (now - time::Duration::minutes(10))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("rfc3339");
    let burn = BurnSnapshot::default();
    let mut state = RouterState {
        active: HashMap::new(),
        due_at: HashMap::new(),
    };
    let mut next_id = 1;
    for start in (0..n).step_by(BATCH) {
        let body: Vec<Value> = (start..(start + BATCH).min(n))
            .map(|i| common::load_alert(i, groups, &run, &starts_at))
            .collect();
        let body = serde_json::to_vec(&body).expect("json");
        let alerts = sevroute::normalize::prometheus_v2(&body, now, time::Duration::hours(1))
            .expect("the load alerts are valid");
        for alert in alerts {
            let classification = classify(ruleset, &alert, &burn, now);
            let (key, _) = route::group_key(&ruleset.grouping, &alert);
            let classified = ClassifiedAlert::new(alert, &classification);
            match state.active.get_mut(&key) {
                Some(incident) => {
                    route::apply(incident, Event::Alert(classified), ruleset, now)
                        .expect("an alert applies");
                }
                None => {
                    let (mut incident, _) = route::declare(next_id, classified, ruleset, now)
                        .expect("a firing classified alert declares");
                    next_id += 1;
                    // wait 0s: the tick of the same moment opens it.
                    route::apply(&mut incident, Event::Tick, ruleset, now).expect("tick");
                    state.active.insert(key.clone(), incident);
                }
            }
            // The router writes and forgets each batch's changes; kept,
            // they would count as state.
            if let Some(incident) = state.active.get_mut(&key) {
                incident.alerts.forget_changes();
            }
            if let Some(at) = state.active[&key].next_due() {
                state.due_at.insert(key, at);
            }
        }
    }
    state
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let ruleset = common::ruleset();
    let now = OffsetDateTime::now_utc();

    let (state, total) = per_alert(n, || ingest(n, &ruleset, now));
    let tracked: Vec<&TrackedAlert> = state
        .active
        .values()
        .flat_map(|i| i.alerts.values())
        .collect();
    assert_eq!(tracked.len(), n, "every load alert is tracked once");
    let incidents = state.active.len();

    // Each part cloned into a vector made beforehand: what the clones own
    // on the heap is what the originals own (clones are packed no worse).
    let mut rows: Vec<(String, [f64; 3])> = Vec::new();
    macro_rules! heap_of {
        ($name:expr, $value:expr) => {{
            let mut out = Vec::with_capacity(n);
            let (_, row) = per_alert(n, || {
                for a in &tracked {
                    out.push($value(a));
                }
            });
            rows.push(($name.to_string(), row));
            drop(out);
        }};
    }
    heap_of!("alert.labels", |a: &&TrackedAlert| a.alert.labels.clone());
    heap_of!("alert.annotations", |a: &&TrackedAlert| a
        .alert
        .annotations
        .clone());
    heap_of!("alert.generator_url", |a: &&TrackedAlert| a
        .alert
        .generator_url
        .clone());
    heap_of!("rule name", |a: &&TrackedAlert| a.rule.clone());
    heap_of!("explanation lines", |a: &&TrackedAlert| a
        .explanation
        .clone());
    heap_of!("fingerprint key (hex String)", |a: &&TrackedAlert| a
        .alert
        .fingerprint()
        .to_string());
    let parts: [f64; 3] = rows.iter().fold([0.0; 3], |acc, (_, r)| {
        [acc[0] + r[0], acc[1] + r[1], acc[2] + r[2]]
    });
    // The incidents' alert maps: B-tree nodes holding keys and
    // TrackedAlert values inline, beyond what the parts above own.
    let (maps, alert_maps) = per_alert(n, || {
        state
            .active
            .values()
            .map(|i| i.alerts.clone())
            .collect::<Vec<_>>()
    });
    drop(maps);
    let nodes = [
        alert_maps[0] - parts[0],
        alert_maps[1] - parts[1],
        alert_maps[2] - parts[2],
    ];
    rows.push(("Incident.alerts B-tree nodes (inline)".into(), nodes));
    let rest = [
        total[0] - alert_maps[0],
        total[1] - alert_maps[1],
        total[2] - alert_maps[2],
    ];
    rows.push(("incident headers + active, due_at maps".into(), rest));

    println!(
        "{n} active alerts in {incidents} incidents; size_of: Alert {} B, TrackedAlert {} B, Incident {} B",
        size_of::<sevroute::model::Alert>(),
        size_of::<TrackedAlert>(),
        size_of::<Incident>(),
    );
    println!(
        "{:<42} {:>12} {:>12} {:>13}",
        "per active alert", "requested B", "glibc B", "allocations"
    );
    for (name, [bytes, chunks, count]) in &rows {
        println!("{name:<42} {bytes:>12.0} {chunks:>12.0} {count:>13.1}");
    }
    println!(
        "{:<42} {:>12.0} {:>12.0} {:>13.1}",
        "total (router state)", total[0], total[1], total[2]
    );
    drop(state);
}

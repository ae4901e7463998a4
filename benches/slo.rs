//! SLO engine benchmarks (issue 5): 10,000 SLOs fed at one-minute
//! resolution for a whole 30-day period, every tier full. Measures one
//! evaluation tick (the burn snapshot over the six standard windows plus
//! budget remaining, for every SLO), the status reports of every SLO, and
//! the intake of one on-time sample; before the benches it prints the
//! memory: bytes per SLO from the structure sizes, and the process' peak
//! RSS (`VmHWM`) after populating.
//!
//! Run: `cargo bench --bench slo`. Numbers go in docs/performance.md.
//! `SLO_BENCH_SLOS=n` tries another number of SLOs (default 10,000).

use std::hint::black_box;
use std::sync::LazyLock;

use sevroute::rules::{Slo, SloSource};
use sevroute::slo::{EngineConfig, STANDARD_WINDOWS, SloEngine};

/// How many SLOs: 10,000 unless `SLO_BENCH_SLOS` says otherwise.
static SLOS: LazyLock<usize> = LazyLock::new(|| {
    std::env::var("SLO_BENCH_SLOS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
});
const PERIOD_SECS: u64 = 30 * 86_400;
/// Where the populated history starts (unix seconds).
const START: i64 = 1_700_000_000;

fn main() {
    let (engine, _) = &*POPULATED;
    let slos = *SLOS;
    let bytes = engine.memory_bytes();
    println!(
        "slo engine: {slos} SLOs x {} one-minute samples; structures {:.1} MiB = {} bytes per SLO; peak RSS (VmHWM) {}",
        PERIOD_SECS / 60,
        bytes as f64 / (1024.0 * 1024.0),
        bytes / slos,
        vm_hwm().unwrap_or_else(|| "unknown".to_string()),
    );
    divan::main();
}

/// The engine after a full period of one sample a minute per SLO, and the
/// `now` just after the last sample.
static POPULATED: LazyLock<(SloEngine, i64)> = LazyLock::new(|| {
    let started = std::time::Instant::now();
    let (engine, now) = populate(*SLOS);
    println!(
        "populated {} samples in {:.1} s",
        *SLOS as u64 * PERIOD_SECS / 60,
        started.elapsed().as_secs_f64()
    );
    (engine, now)
});

fn slo(i: usize) -> Slo {
    Slo {
        name: format!("service-{i:05}-availability"),
        objective: 0.999,
        period_secs: PERIOD_SECS,
        source: SloSource::Push,
    }
}

/// `n` SLOs with a sample every minute for the whole period, through the
/// public intake (`record`), the way a pushing sender would fill it.
fn populate(n: usize) -> (SloEngine, i64) {
    let mut engine = SloEngine::new(EngineConfig::default()).expect("default config");
    let slos: Vec<Slo> = (0..n).map(slo).collect();
    engine.set_slos(&slos);
    let minutes = (PERIOD_SECS / 60) as i64;
    for (i, s) in slos.iter().enumerate() {
        for m in 0..minutes {
            let at = START + m * 60;
            // Some traffic shape and an error now and then, so that every
            // window has a real burn value.
            let total = 600 + ((m + i as i64) % 60) as u64;
            let bad = if (m + i as i64) % 97 == 0 { 3 } else { 0 };
            engine
                .record(&s.name, at, at, (total - bad) as f64, total as f64)
                .expect("on-time sample");
        }
    }
    (engine, START + minutes * 60 - 1)
}

/// Peak resident set size of this process, from /proc/self/status.
fn vm_hwm() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line["VmHWM:".len()..].trim().to_string())
}

/// One evaluation tick: the snapshot classification reads, for every
/// SLO, over 5m/30m/1h/6h/1d/3d plus budget remaining.
#[divan::bench(sample_count = 30)]
fn tick_snapshot(bencher: divan::Bencher) {
    let (engine, now) = &*POPULATED;
    bencher.bench(|| engine.snapshot(black_box(*now), black_box(&STANDARD_WINDOWS)));
}

/// Status reports for every SLO (what `GET /api/v1/slos` builds).
#[divan::bench(sample_count = 30)]
fn statuses(bencher: divan::Bencher) {
    let (engine, now) = &*POPULATED;
    bencher.bench(|| engine.statuses(black_box(*now)));
}

/// One on-time sample into a populated SLO, a minute after the previous
/// one: the intake path of a push.
#[divan::bench]
fn record_one_sample(bencher: divan::Bencher) {
    let (mut engine, mut now) = populate(1);
    let name = slo(0).name;
    bencher.bench_local(move || {
        now += 60;
        engine
            .record(black_box(&name), now, now, 599.0, 600.0)
            .expect("on-time sample")
    });
}

//! Load generator for any Alertmanager-API-compatible endpoint
//! (`POST /api/v2/alerts`): sevroute, Alertmanager, or anything else that
//! speaks API v2 and delivers webhooks.
//!
//! It measures, in one run against one server:
//! - ingest throughput at batch sizes 1, 100 and 1,000, for new alerts and
//!   for refreshes of alerts already active, over several concurrent
//!   connections (the generator reports its own CPU use, to show it is not
//!   the bottleneck);
//! - the server's CPU use (cores) per phase and its peak RSS, read from
//!   `/proc/PID/stat` and `/proc/PID/status`;
//! - memory per active alert once 100,000 alerts are active;
//! - POST-to-webhook latency (p50/p99/max) with its own loopback webhook
//!   receiver, idle and under a steady background load. Probe alerts each
//!   open their own group and carry a `startsAt` well in the past, so no
//!   grouping wait delays them in either product;
//! - from the receiver's log: that every group that was sent accepted
//!   alerts got its page (nothing lost) and none got two (no page sent
//!   twice).
//!
//! Everything is loopback and bounded: a fixed number of alerts per phase,
//! a time cap per phase, a timeout per request.
//!
//! Run it through `benches/vs-alertmanager.sh`, which starts both servers
//! with equivalent configurations; or by hand:
//!
//! ```sh
//! cargo bench --bench loadgen -- run --url http://127.0.0.1:9797 \
//!     --pid $(pidof sevroute) --receiver 127.0.0.1:9799 --out sevroute.json
//! cargo bench --bench loadgen -- table sevroute.json alertmanager.json
//! ```
//!
//! The server must deliver webhooks for the `alertname`+`service` groups to
//! `http://<receiver>/hook` with no grouping wait (see the script for the
//! two configurations).

mod common;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderMap;
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Parser)]
#[command(about = "Load generator for Alertmanager-API-compatible alert routers")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Runs every phase against one server and writes the figures as JSON.
    Run(RunArgs),
    /// Prints a loopback TCP port that was free a moment ago.
    FreePort,
    /// Prints the rules sevroute is run with, paging the receiver at
    /// RECEIVER (`host:port`).
    Rules {
        #[arg(long)]
        receiver: String,
    },
    /// Prints two result files side by side with their ratio (first/second).
    Table {
        /// The first result file (the numerator).
        first: PathBuf,
        /// The second result file (the denominator).
        second: PathBuf,
    },
}

#[derive(Parser, Clone)]
struct RunArgs {
    /// Base URL of the server (its API v2 is at /api/v2/alerts).
    #[arg(long)]
    url: String,
    /// The server's process id, for CPU and memory.
    #[arg(long)]
    pid: u32,
    /// Address the webhook receiver listens on (the server delivers to
    /// http://ADDR/hook).
    #[arg(long)]
    receiver: String,
    /// Name of the server in the results.
    #[arg(long, default_value = "server")]
    name: String,
    /// Where to write the results (JSON).
    #[arg(long)]
    out: PathBuf,
    /// Concurrent connections for throughput phases.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Active alerts at the end of the new-alert phases (memory is measured
    /// there).
    #[arg(long, default_value_t = 100_000)]
    active: usize,
    /// Groups (distinct `service` values) the load alerts fall into.
    #[arg(long, default_value_t = 1_000)]
    groups: usize,
    /// Latency probes per latency phase.
    #[arg(long, default_value_t = 1_000)]
    probes: usize,
    /// Background load during the loaded latency phase, alerts/s (refreshes
    /// in batches of 100).
    #[arg(long, default_value_t = 10_000)]
    load_rate: usize,
    /// Longest a throughput phase may run, in seconds; what was done by
    /// then is reported.
    #[arg(long, default_value_t = 120)]
    phase_cap_secs: u64,
}

fn main() {
    let cli = Cli::parse();
    let Some(command) = cli.command else {
        // `cargo bench` runs every bench; this one needs servers to talk to.
        eprintln!(
            "loadgen: nothing to do without a command; see benches/vs-alertmanager.sh \
             or `cargo bench --bench loadgen -- --help`"
        );
        return;
    };
    let result = match command {
        Command::Run(args) => run(args),
        Command::Table { first, second } => table(&first, &second),
        Command::FreePort => std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| println!("{}", a.port()))
            .map_err(|e| format!("no free port: {e}")),
        Command::Rules { receiver } => {
            print!("{}", common::rules(&receiver));
            Ok(())
        }
    };
    if let Err(e) = result {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------- /proc

/// CPU time (user + system) of a process, in seconds. Assumes the usual
/// 100 clock ticks per second (USER_HZ on Linux).
fn cpu_secs(pid: &str) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("cannot read /proc/{pid}/stat: {e}"))?;
    // The command name may hold spaces: fields are counted after its ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| format!("/proc/{pid}/stat has no ')'"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ')'.
    let ticks = |i: usize| -> Result<f64, String> {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .ok_or_else(|| format!("/proc/{pid}/stat field {} unreadable", i + 3))
    };
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// A `Vm*` figure of `/proc/PID/status`, in bytes.
fn vm_bytes(pid: &str, key: &str) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| format!("/proc/{pid}/status has no {key}"))
}

/// CPU of the server and of this process across a stretch of work.
struct CpuMeter {
    pid: String,
    start: Instant,
    server: f64,
    client: f64,
}

impl CpuMeter {
    fn start(pid: &str) -> Result<Self, String> {
        Ok(CpuMeter {
            pid: pid.to_string(),
            start: Instant::now(),
            server: cpu_secs(pid)?,
            client: cpu_secs("self")?,
        })
    }

    /// (wall seconds, server cores, client cores).
    fn stop(&self) -> Result<(f64, f64, f64), String> {
        let wall = self.start.elapsed().as_secs_f64();
        let server = cpu_secs(&self.pid)? - self.server;
        let client = cpu_secs("self")? - self.client;
        Ok((wall, server / wall, client / wall))
    }
}

// ---------------------------------------------------------------- receiver

/// One webhook as the receiver saw it.
struct Received {
    /// A page (sevroute `type: page`; an Alertmanager notification that is
    /// firing), as opposed to notifications and resolves.
    page: bool,
    /// The group it is about (sevroute's incident key, Alertmanager's
    /// groupKey).
    group: String,
}

#[derive(Default)]
struct ReceiverLog {
    requests: Vec<Received>,
    /// First arrival of each probe, by probe number.
    probes: HashMap<u64, Instant>,
}

struct Receiver {
    log: Arc<Mutex<ReceiverLog>>,
    arrived: Arc<tokio::sync::Notify>,
}

/// Starts the webhook receiver on its own thread and runtime, so arrival
/// times are not delayed by the load the generator makes.
fn start_receiver(addr: &str) -> Result<Receiver, String> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| format!("receiver cannot bind {addr}: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("receiver: {e}"))?;
    let log = Arc::new(Mutex::new(ReceiverLog::default()));
    let arrived = Arc::new(tokio::sync::Notify::new());
    let (log2, arrived2) = (log.clone(), arrived.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("receiver runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("receiver listener");
            let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
                let (log, arrived) = (log2.clone(), arrived2.clone());
                async move {
                    let at = Instant::now();
                    record(&log, at, &headers, &body);
                    arrived.notify_waiters();
                    "ok"
                }
            });
            let _ = axum::serve(listener, app).await;
        });
    });
    Ok(Receiver { log, arrived })
}

fn record(log: &Mutex<ReceiverLog>, at: Instant, _headers: &HeaderMap, body: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let (page, group) = if let Some(kind) = value["type"].as_str() {
        // sevroute
        (
            kind == "page",
            value["incident"]["key"].as_str().unwrap_or("").to_string(),
        )
    } else {
        // Alertmanager
        (
            value["status"] == "firing",
            value["groupKey"].as_str().unwrap_or("").to_string(),
        )
    };
    let probes: Vec<u64> = value["alerts"]
        .as_array()
        .map(|alerts| {
            alerts
                .iter()
                .filter_map(|a| a["labels"]["probe"].as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
    if page {
        for p in probes {
            log.probes.entry(p).or_insert(at);
        }
    }
    log.requests.push(Received { page, group });
}

// ---------------------------------------------------------------- alerts

/// The alerts of the run, rendered once so the measured phases only send
/// bytes.
struct Workload {
    starts_at: String,
    run: String,
    groups: usize,
}

impl Workload {
    fn load_alert(&self, i: usize) -> Value {
        common::load_alert(i, self.groups, &self.run, &self.starts_at)
    }

    fn probe_alert(&self, n: u64) -> Value {
        json!({
            "labels": {
                "alertname": "LatencyProbe",
                "service": format!("probe-{n}"),
                "probe": n.to_string(),
                "severity": "critical",
                "run": self.run,
            },
            "annotations": { "summary": format!("latency probe {n}") },
            "startsAt": self.starts_at,
        })
    }

    /// Bodies of `size` alerts each for load alerts `range`.
    fn bodies(&self, range: std::ops::Range<usize>, size: usize) -> Vec<Bytes> {
        let ids: Vec<usize> = range.collect();
        ids.chunks(size)
            .map(|chunk| {
                let alerts: Vec<Value> = chunk.iter().map(|&i| self.load_alert(i)).collect();
                Bytes::from(serde_json::to_vec(&alerts).expect("json"))
            })
            .collect()
    }
}

// ---------------------------------------------------------------- results

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Throughput {
    phase: String,
    batch: usize,
    alerts: usize,
    failed_requests: usize,
    wall_secs: f64,
    alerts_per_sec: f64,
    server_cores: f64,
    client_cores: f64,
    capped: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Latency {
    phase: String,
    probes: usize,
    /// Probes the server answered with a 2xx.
    accepted: usize,
    /// Probes whose page arrived.
    answered: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Background alerts/s actually sent during the phase (0 when idle).
    background_rate: f64,
    server_cores: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Results {
    name: String,
    date: String,
    throughput: Vec<Throughput>,
    latency: Vec<Latency>,
    rss_idle_bytes: u64,
    rss_active_bytes: u64,
    active_alerts: usize,
    bytes_per_active_alert: f64,
    peak_rss_bytes: u64,
    groups_expected: usize,
    groups_paged: usize,
    groups_lost: usize,
    groups_paged_twice: usize,
    pages: usize,
}

// ---------------------------------------------------------------- run

fn run(args: RunArgs) -> Result<(), String> {
    let receiver = start_receiver(&args.receiver)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let results = rt.block_on(run_phases(&args, &receiver))?;
    let text = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
    std::fs::write(&args.out, text)
        .map_err(|e| format!("cannot write {}: {e}", args.out.display()))?;
    print_one(&results);
    if results.groups_lost > 0 || results.groups_paged_twice > 0 {
        return Err(format!(
            "{}: {} groups lost their page, {} were paged twice",
            results.name, results.groups_lost, results.groups_paged_twice
        ));
    }
    Ok(())
}

fn client() -> Result<reqwest::Client, String> {
    sevroute::deliver::install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(256)
        .build()
        .map_err(|e| e.to_string())
}

/// Posts one body; true on a 2xx.
async fn post(http: &reqwest::Client, url: &str, body: Bytes) -> bool {
    match http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(resp) => {
            let ok = resp.status().is_success();
            // Read the answer so the connection goes back to the pool.
            let _ = resp.bytes().await;
            ok
        }
        Err(_) => false,
    }
}

/// Sends every body over `connections` concurrent connections, at most
/// `cap` long. Returns (alerts accepted, requests failed, capped).
async fn blast(
    http: &reqwest::Client,
    url: &str,
    bodies: Arc<Vec<Bytes>>,
    batch: usize,
    connections: usize,
    cap: Duration,
) -> (usize, usize, bool) {
    let next = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + cap;
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (http, url, bodies) = (http.clone(), url.to_string(), bodies.clone());
            let (next, accepted, failed) = (next.clone(), accepted.clone(), failed.clone());
            let requests = requests.clone();
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= bodies.len() || Instant::now() >= deadline {
                        break;
                    }
                    requests.fetch_add(1, Ordering::Relaxed);
                    if post(&http, &url, bodies[i].clone()).await {
                        accepted.fetch_add(batch.min(count_alerts(&bodies[i])), Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    (
        accepted.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        requests.load(Ordering::Relaxed) < bodies.len(),
    )
}

/// Alerts in a body (the last body of a phase may be short): counted by
/// the `alertname` keys, which every alert has once.
fn count_alerts(body: &[u8]) -> usize {
    let needle = b"\"alertname\"";
    body.windows(needle.len()).filter(|w| *w == needle).count()
}

async fn run_phases(args: &RunArgs, receiver: &Receiver) -> Result<Results, String> {
    let pid = args.pid.to_string();
    let http = client()?;
    let url = format!("{}/api/v2/alerts", args.url.trim_end_matches('/'));
    let now = OffsetDateTime::now_utc();
    let work = Workload {
        // Older than any grouping wait: both products flush at once.
        starts_at: (now - time::Duration::minutes(10))
            .format(&Rfc3339)
            .map_err(|e| e.to_string())?,
        run: format!("{}", now.unix_timestamp()),
        groups: args.groups,
    };
    let mut results = Results {
        name: args.name.clone(),
        date: now.format(&Rfc3339).map_err(|e| e.to_string())?,
        ..Results::default()
    };
    let cap = Duration::from_secs(args.phase_cap_secs);
    let mut probe_no = 0u64;
    let mut probes_accepted = 0usize;
    let mut groups_sent: HashSet<String> = HashSet::new();

    tokio::time::sleep(Duration::from_millis(500)).await;
    results.rss_idle_bytes = vm_bytes(&pid, "VmRSS")?;

    // Idle latency.
    eprintln!("{}: idle latency, {} probes", args.name, args.probes);
    let lat = latency_phase(
        "idle",
        &http,
        &url,
        &work,
        receiver,
        &pid,
        args.probes,
        &mut probe_no,
        None,
    )
    .await?;
    probes_accepted += lat.accepted;
    results.latency.push(lat);

    // New alerts: 10% at batch 1, 40% at 100, 50% at 1000.
    let n = args.active;
    let splits = [(1, 0..n / 10), (100, n / 10..n / 2), (1000, n / 2..n)];
    for (batch, range) in splits.iter().cloned() {
        for i in range.clone().take(args.groups) {
            groups_sent.insert(format!("svc-{}", i % args.groups));
        }
        let bodies = Arc::new(work.bodies(range.clone(), batch));
        eprintln!("{}: new alerts, batch {batch}: {}", args.name, range.len());
        let t = throughput_phase("new", &http, &url, bodies, batch, args, &pid, cap).await?;
        results.throughput.push(t);
    }

    // Memory at `n` active alerts, once the server settled.
    tokio::time::sleep(Duration::from_secs(2)).await;
    results.rss_active_bytes = vm_bytes(&pid, "VmRSS")?;
    results.active_alerts = n;
    results.bytes_per_active_alert =
        (results.rss_active_bytes as f64 - results.rss_idle_bytes as f64) / n as f64;

    // Refreshes of the same alerts.
    for (batch, range) in [(1, 0..n / 10), (100, 0..n), (1000, 0..n)] {
        let bodies = Arc::new(work.bodies(range.clone(), batch));
        eprintln!("{}: refreshes, batch {batch}: {}", args.name, range.len());
        let t = throughput_phase("refresh", &http, &url, bodies, batch, args, &pid, cap).await?;
        results.throughput.push(t);
    }

    // Latency under a steady background of refreshes.
    eprintln!(
        "{}: latency under {} alerts/s, {} probes",
        args.name, args.load_rate, args.probes
    );
    let background = Arc::new(work.bodies(0..n, 100));
    let lat = latency_phase(
        "loaded",
        &http,
        &url,
        &work,
        receiver,
        &pid,
        args.probes,
        &mut probe_no,
        Some((background, args.load_rate, args.connections)),
    )
    .await?;
    probes_accepted += lat.accepted;
    results.latency.push(lat);
    results.peak_rss_bytes = vm_bytes(&pid, "VmHWM")?;

    // The receiver's log: one page per group, none lost, none twice.
    // Deliveries may trail the last answer a little: wait, bounded.
    let expected = groups_sent.len() + probes_accepted;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let paged = paged_groups(receiver);
        if paged.len() >= expected || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A late duplicate would show within a moment more.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let paged = paged_groups(receiver);
    results.groups_expected = expected;
    results.groups_paged = paged.len();
    results.groups_lost = expected.saturating_sub(paged.len());
    results.groups_paged_twice = paged.values().filter(|&&c| c > 1).count();
    results.pages = paged.values().sum();
    Ok(results)
}

/// Pages per group in the receiver's log.
fn paged_groups(receiver: &Receiver) -> HashMap<String, usize> {
    let log = receiver.log.lock().unwrap_or_else(|p| p.into_inner());
    let mut by_group: HashMap<String, usize> = HashMap::new();
    for r in log.requests.iter().filter(|r| r.page) {
        *by_group.entry(r.group.clone()).or_default() += 1;
    }
    by_group
}

#[allow(clippy::too_many_arguments)]
async fn throughput_phase(
    phase: &str,
    http: &reqwest::Client,
    url: &str,
    bodies: Arc<Vec<Bytes>>,
    batch: usize,
    args: &RunArgs,
    pid: &str,
    cap: Duration,
) -> Result<Throughput, String> {
    let meter = CpuMeter::start(pid)?;
    let (alerts, failed, capped) = blast(http, url, bodies, batch, args.connections, cap).await;
    let (wall, server, client) = meter.stop()?;
    Ok(Throughput {
        phase: phase.to_string(),
        batch,
        alerts,
        failed_requests: failed,
        wall_secs: wall,
        alerts_per_sec: alerts as f64 / wall,
        server_cores: server,
        client_cores: client,
        capped,
    })
}

/// Sends `probes` probe alerts one after another, each once the previous
/// one's page arrived (or timed out), optionally over a background load
/// of (bodies, alerts/s, connections).
#[allow(clippy::too_many_arguments)]
async fn latency_phase(
    phase: &str,
    http: &reqwest::Client,
    url: &str,
    work: &Workload,
    receiver: &Receiver,
    pid: &str,
    probes: usize,
    probe_no: &mut u64,
    background: Option<(Arc<Vec<Bytes>>, usize, usize)>,
) -> Result<Latency, String> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut load_tasks = Vec::new();
    if let Some((bodies, rate, connections)) = background {
        // Each connection sends its share of the rate, paced by an interval.
        let per_conn = (rate as f64 / 100.0 / connections as f64).max(0.01);
        let period = Duration::from_secs_f64(1.0 / per_conn);
        for c in 0..connections {
            let (http, url, bodies) = (http.clone(), url.to_string(), bodies.clone());
            let (stop, sent) = (stop.clone(), sent.clone());
            load_tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    if post(&http, &url, bodies[i % bodies.len()].clone()).await {
                        sent.fetch_add(100, Ordering::Relaxed);
                    }
                    i += connections;
                }
            }));
        }
        // Let the load settle before probing.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let meter = CpuMeter::start(pid)?;
    let sent_before = sent.load(Ordering::Relaxed);
    let mut latencies = Vec::with_capacity(probes);
    let mut accepted = 0;
    // Probes are spaced, so a loaded phase lasts long enough to be loaded.
    let mut pace = tokio::time::interval(Duration::from_millis(25));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for _ in 0..probes {
        pace.tick().await;
        *probe_no += 1;
        let n = *probe_no;
        let body = Bytes::from(serde_json::to_vec(&[work.probe_alert(n)]).expect("json"));
        let posted = Instant::now();
        if !post(http, url, body).await {
            continue;
        }
        accepted += 1;
        let deadline = posted + Duration::from_secs(10);
        loop {
            let notified = receiver.arrived.notified();
            let arrived = receiver
                .log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .probes
                .get(&n)
                .copied();
            if let Some(at) = arrived {
                latencies.push(at.saturating_duration_since(posted).as_secs_f64() * 1000.0);
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), notified).await;
        }
    }
    let (wall, server, _) = meter.stop()?;
    let background_rate = (sent.load(Ordering::Relaxed) - sent_before) as f64 / wall;
    stop.store(true, Ordering::Relaxed);
    for t in load_tasks {
        let _ = t.await;
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i]
    };
    Ok(Latency {
        phase: phase.to_string(),
        probes,
        accepted,
        answered: latencies.len(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: latencies.last().copied().unwrap_or(f64::NAN),
        background_rate,
        server_cores: server,
    })
}

// ---------------------------------------------------------------- output

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn print_one(r: &Results) {
    println!("{}", r.name);
    for t in &r.throughput {
        println!(
            "  {:>7} batch {:>4}: {:>9.0} alerts/s ({} alerts in {:.2} s, {} failed requests{}), server {:.2} cores, client {:.2} cores",
            t.phase,
            t.batch,
            t.alerts_per_sec,
            t.alerts,
            t.wall_secs,
            t.failed_requests,
            if t.capped { ", CAPPED" } else { "" },
            t.server_cores,
            t.client_cores
        );
    }
    for l in &r.latency {
        println!(
            "  latency {:>6}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({}/{} probes, background {:.0} alerts/s, server {:.2} cores)",
            l.phase,
            l.p50_ms,
            l.p99_ms,
            l.max_ms,
            l.answered,
            l.probes,
            l.background_rate,
            l.server_cores
        );
    }
    println!(
        "  RSS idle {:.1} MiB, at {} active alerts {:.1} MiB: {:.0} bytes per active alert; peak RSS {:.1} MiB",
        mib(r.rss_idle_bytes),
        r.active_alerts,
        mib(r.rss_active_bytes),
        r.bytes_per_active_alert,
        mib(r.peak_rss_bytes)
    );
    println!(
        "  receiver: {} pages for {} groups ({} expected): {} lost, {} paged twice",
        r.pages, r.groups_paged, r.groups_expected, r.groups_lost, r.groups_paged_twice
    );
}

fn table(first: &PathBuf, second: &PathBuf) -> Result<(), String> {
    let read = |p: &PathBuf| -> Result<Results, String> {
        let text =
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
    };
    let (a, b) = (read(first)?, read(second)?);
    let mut rows: Vec<(String, f64, f64, &str)> = Vec::new();
    for (ta, tb) in a.throughput.iter().zip(&b.throughput) {
        let what = format!("ingest {} alerts, batch {}", ta.phase, ta.batch);
        rows.push((
            format!("{what}: alerts/s"),
            ta.alerts_per_sec,
            tb.alerts_per_sec,
            "higher is better",
        ));
        rows.push((
            format!("{what}: server cores"),
            ta.server_cores,
            tb.server_cores,
            "",
        ));
        rows.push((
            format!("{what}: generator cores"),
            ta.client_cores,
            tb.client_cores,
            "",
        ));
    }
    for (la, lb) in a.latency.iter().zip(&b.latency) {
        for (name, x, y) in [
            ("p50", la.p50_ms, lb.p50_ms),
            ("p99", la.p99_ms, lb.p99_ms),
            ("max", la.max_ms, lb.max_ms),
        ] {
            rows.push((
                format!("POST->webhook {name} ms, {}", la.phase),
                x,
                y,
                "lower is better",
            ));
        }
        rows.push((
            format!("server cores during {} latency", la.phase),
            la.server_cores,
            lb.server_cores,
            "",
        ));
    }
    rows.push((
        format!("bytes per active alert ({} active)", a.active_alerts),
        a.bytes_per_active_alert,
        b.bytes_per_active_alert,
        "lower is better",
    ));
    rows.push((
        "peak RSS MiB".into(),
        mib(a.peak_rss_bytes),
        mib(b.peak_rss_bytes),
        "lower is better",
    ));
    rows.push((
        "groups lost / paged twice".into(),
        (a.groups_lost + a.groups_paged_twice) as f64,
        (b.groups_lost + b.groups_paged_twice) as f64,
        "must be 0",
    ));
    println!(
        "| figure | {} | {} | {}/{} | |",
        a.name, b.name, a.name, b.name
    );
    println!("|---|---:|---:|---:|---|");
    for (what, x, y, note) in rows {
        let ratio = if y != 0.0 {
            format!("{:.2}", x / y)
        } else {
            "-".into()
        };
        println!("| {what} | {} | {} | {ratio} | {note} |", fmt(x), fmt(y));
    }
    Ok(())
}

fn fmt(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

//! The pipeline: the one place the stages are chained. Ingested alerts are
//! classified, routed into incidents, and the resulting incident state,
//! timeline and deliveries are committed to the store in one transaction
//! before the sender hears back. Timers run here too.
//!
//! One router task owns all incident state, so routing needs no locks.
//! It routes every command waiting in its queue as one part and hands the
//! part to the commit thread ([`committer`]), which joins the parts that
//! wait while a transaction runs into the next one (group commit):
//! concurrent requests share one transaction and one fsync, so durability
//! does not cost throughput, and routing overlaps the commits.

mod committer;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use thiserror::Error;
use time::OffsetDateTime;
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::classify::{BurnSnapshot, classify};
use crate::deliver::message::{
    IncidentStatus as MessageStatus, MessageAlert, MessageIncident, MessageType, MessageVersion,
    WebhookMessage, burn_readings, derive_message_id,
};
use crate::deliver::worker::EarlyPages;
use crate::model::{Alert, AlertStatus, Severity};
use crate::route::{
    self, Action, ActionKind, Changed, ClassifiedAlert, Decision, Event, Incident, IncidentStatus,
    RouteError,
};
use crate::rules::{RuleSet, SloSource};
use crate::slo::{Counts, EngineConfig, Recorded, SloEngine, SloError, SloStatus};
use crate::store::{
    AlertRecord, AlertSeen, CommitBatch, Delivery, DeliveryStatus, IncidentAlert, NewDelivery,
    SloSampleRecord, Store, StoreError,
};
use committer::{Committer, Part, Refusal, Reply};

/// Reads the time; injected so tests can control it.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// Why the pipeline could not do what was asked.
#[derive(Debug, Error)]
pub enum PipelineError {
    /// The store failed; nothing of the request was committed.
    #[error("the store failed, nothing was committed: {0}")]
    Store(#[from] StoreError),
    /// No such incident.
    #[error("no incident {0}")]
    NoIncident(i64),
    /// The action does not apply to the incident in its state.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// The router stopped (shutting down).
    #[error("sevroute is shutting down")]
    Stopped,
    /// An SLO sample or query was refused.
    #[error(transparent)]
    Slo(#[from] SloError),
}

/// What happened to an ingested batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    /// Alerts in the batch.
    pub alerts: usize,
    /// Alerts that joined or opened an incident.
    pub routed: usize,
    /// Alerts with no severity and no incident to join: recorded, not routed.
    pub unrouted: usize,
    /// Alerts classified SEV1, SEV2, SEV3 (by [`Severity::index`]).
    pub by_severity: [usize; 3],
}

/// Settings of the pipeline.
#[derive(Clone, Debug)]
pub struct PipelineSettings {
    /// Most commands committed in one transaction.
    pub max_batch: usize,
    /// How long a request waits for others to share its commit.
    pub max_wait: Duration,
    /// How often timers are checked at most.
    pub tick: Duration,
    /// How often SLO burn is recomputed and incidents re-classified.
    pub slo_evaluation: Duration,
    /// How long an SLO rule must stay false before its incident resolves.
    pub slo_hold_down: Duration,
    /// Base URL for links back to incidents.
    pub public_url: String,
}

/// One SLI sample posted for an SLO.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SloSample {
    /// Good and total events in an interval ending at the sample's time.
    Interval {
        /// Good events.
        good: f64,
        /// All events.
        total: f64,
    },
    /// Cumulative counters (Prometheus-style; resets are detected).
    Cumulative {
        /// The good-events counter.
        good: f64,
        /// The all-events counter.
        total: f64,
    },
}

/// What an SLO source other than push (the `prometheus` task) read.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceUpdate {
    /// Forget the SLO's counts first: its whole history follows.
    pub replace: bool,
    /// Events to file, oldest first: `(at, counts)`.
    pub records: Vec<(i64, Counts)>,
    /// Why the source could not be read, when it could not; `None` makes
    /// the SLO fresh again.
    pub stale: Option<String>,
    /// Until when (unix seconds) this data counts as current, when fresh:
    /// if no newer update comes by then, the SLO goes stale.
    pub valid_until: Option<i64>,
}

enum Command {
    SloSource {
        slo: String,
        update: SourceUpdate,
        reply: oneshot::Sender<Result<(), PipelineError>>,
    },
    Slo {
        slo: String,
        at: Option<i64>,
        sample: SloSample,
        reply: oneshot::Sender<Result<Recorded, PipelineError>>,
    },
    SloStatus {
        slo: Option<String>,
        reply: oneshot::Sender<Result<Vec<SloStatus>, PipelineError>>,
    },
    Ingest {
        batch: PreparedBatch,
        reply: oneshot::Sender<Result<IngestOutcome, PipelineError>>,
    },
    Human {
        incident_id: i64,
        event: Event,
        reply: oneshot::Sender<Result<(), PipelineError>>,
    },
}

/// An ingested alert made ready for routing: classified, fingerprinted
/// and keyed by the request's own task, so that work runs on every core
/// instead of on the one router task.
struct PreparedAlert {
    classified: ClassifiedAlert,
    key: String,
}

impl PreparedAlert {
    fn new(ruleset: &RuleSet, burn: &BurnSnapshot, now: OffsetDateTime, alert: Alert) -> Self {
        let classification = classify(ruleset, &alert, burn, now);
        let key = route::group_key_text(&ruleset.grouping, &alert);
        PreparedAlert {
            classified: ClassifiedAlert::new(alert, &classification),
            key,
        }
    }
}

/// Alerts prepared against one rule set and burn snapshot. The router
/// prepares them again when either changed in between (a reload, an SLO
/// evaluation), so the outcome is as if it had classified them itself.
struct PreparedBatch {
    ruleset: Arc<RuleSet>,
    burn: Arc<BurnSnapshot>,
    alerts: Vec<PreparedAlert>,
}

/// The handle the HTTP layer uses. Cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    commands: mpsc::Sender<Command>,
    /// The burn snapshot classification reads, as the router last
    /// computed it.
    burn: Arc<ArcSwap<BurnSnapshot>>,
    clock: Arc<dyn Clock>,
    /// The rule set in force; swapped whole on reload.
    pub ruleset: Arc<ArcSwap<RuleSet>>,
    /// Woken whenever deliveries were committed.
    pub deliveries_ready: Arc<Notify>,
    /// First pages handed to the delivery worker before their commit,
    /// until a worker takes the receiving end.
    early_pages: Arc<std::sync::Mutex<Option<mpsc::Receiver<EarlyPages>>>>,
}

/// How many batches of early pages may wait for the worker; past that a
/// page waits for the outbox like any delivery.
const EARLY_PAGES_QUEUE: usize = 256;

impl Pipeline {
    /// Starts the router task. Incidents not yet resolved are loaded from
    /// the store, timers included.
    pub fn start(
        store: Arc<dyn Store>,
        ruleset: Arc<ArcSwap<RuleSet>>,
        clock: Arc<dyn Clock>,
        settings: PipelineSettings,
    ) -> Result<(Pipeline, tokio::task::JoinHandle<()>), PipelineError> {
        let active: HashMap<String, Incident> = store
            .active_incidents()?
            .into_iter()
            .map(|mut i| {
                // As loaded: nothing of it needs writing back.
                i.alerts.forget_changes();
                (i.key.clone(), i)
            })
            .collect();
        let next_id = store.max_incident_id()? + 1;
        let instance_id = store.instance_id()?;
        let (tx, rx) = mpsc::channel(4096);
        let deliveries_ready = Arc::new(Notify::new());
        let (early_tx, early_rx) = mpsc::channel(EARLY_PAGES_QUEUE);
        let mut slo = SloEngine::new(EngineConfig::default())?;
        let rules_now = ruleset.load_full();
        slo.set_slos(&rules_now.slos);
        let samples = store.slo_samples()?;
        let refused = replay_samples(&mut slo, &rules_now, &samples, None);
        if !samples.is_empty() {
            tracing::info!(
                samples = samples.len(),
                refused,
                "Replayed the pushed SLI samples kept in the store."
            );
        }
        let burn = Arc::new(BurnSnapshot::new());
        let published_burn = Arc::new(ArcSwap::new(burn.clone()));
        let router = Router {
            store,
            slo,
            slo_windows: evaluated_windows(&rules_now),
            slo_rules: rules_now.clone(),
            burn,
            published_burn: published_burn.clone(),
            next_slo_evaluation: OffsetDateTime::UNIX_EPOCH,
            slo_last_held: HashMap::new(),
            alert_floors: HashMap::new(),
            next_slo_prune: OffsetDateTime::UNIX_EPOCH,
            source_valid_until: HashMap::new(),
            ruleset: ruleset.clone(),
            clock: clock.clone(),
            settings,
            due_at: TimerIndex::default(),
            active,
            next_id,
            instance_id,
            deliveries_ready: deliveries_ready.clone(),
            early_pages: early_tx,
            stopped: false,
            pushed_since_resumed: BTreeSet::new(),
            resolved_in_place: false,
        };
        let mut router = router;
        router.reindex_timers();
        let task = tokio::spawn(router.run(rx));
        Ok((
            Pipeline {
                commands: tx,
                burn: published_burn,
                clock,
                ruleset,
                deliveries_ready,
                early_pages: Arc::new(std::sync::Mutex::new(Some(early_rx))),
            },
            task,
        ))
    }

    /// The receiving end of the first pages the router hands over before
    /// their commit, for the delivery worker ([`Worker::early`]); `None`
    /// once taken. Until a worker takes it, up to [`EARLY_PAGES_QUEUE`]
    /// batches of pages wait in it, and their rows in the outbox for a
    /// worker's next look (a worker reading only the outbox looks at least
    /// every `poll`).
    ///
    /// [`Worker::early`]: crate::deliver::worker::Worker::early
    pub fn early_pages(&self) -> Option<mpsc::Receiver<EarlyPages>> {
        self.early_pages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Classifies and routes a batch; returns once it is committed.
    pub async fn ingest(&self, alerts: Vec<Alert>) -> Result<IngestOutcome, PipelineError> {
        let ruleset = self.ruleset.load_full();
        let burn = self.burn.load_full();
        let now = self.clock.now();
        let alerts = alerts
            .into_iter()
            .map(|a| PreparedAlert::new(&ruleset, &burn, now, a))
            .collect();
        let batch = PreparedBatch {
            ruleset,
            burn,
            alerts,
        };
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Ingest { batch, reply })
            .await
            .map_err(|_| PipelineError::Stopped)?;
        rx.await.map_err(|_| PipelineError::Stopped)?
    }

    /// True while the router runs; false once it stopped (then nothing
    /// can be ingested, and `/readyz` says so).
    pub fn is_running(&self) -> bool {
        !self.commands.is_closed()
    }

    /// Records an SLI sample for an SLO (`at` in unix seconds; now when
    /// absent).
    pub async fn record_slo(
        &self,
        slo: String,
        at: Option<i64>,
        sample: SloSample,
    ) -> Result<Recorded, PipelineError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Slo {
                slo,
                at,
                sample,
                reply,
            })
            .await
            .map_err(|_| PipelineError::Stopped)?;
        rx.await.map_err(|_| PipelineError::Stopped)?
    }

    /// Hands the router what an SLO source read: history, new events, or
    /// that the source could not be read (stale).
    pub async fn update_slo_source(
        &self,
        slo: String,
        update: SourceUpdate,
    ) -> Result<(), PipelineError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::SloSource { slo, update, reply })
            .await
            .map_err(|_| PipelineError::Stopped)?;
        rx.await.map_err(|_| PipelineError::Stopped)?
    }

    /// The status of one SLO, or of every SLO.
    pub async fn slo_status(&self, slo: Option<String>) -> Result<Vec<SloStatus>, PipelineError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::SloStatus { slo, reply })
            .await
            .map_err(|_| PipelineError::Stopped)?;
        rx.await.map_err(|_| PipelineError::Stopped)?
    }

    /// Applies a person's action to an incident; returns once committed.
    pub async fn act(&self, incident_id: i64, event: Event) -> Result<(), PipelineError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Human {
                incident_id,
                event,
                reply,
            })
            .await
            .map_err(|_| PipelineError::Stopped)?;
        rx.await.map_err(|_| PipelineError::Stopped)?
    }
}

struct Router {
    store: Arc<dyn Store>,
    /// Pushed SLI counts and the burn computed from them.
    slo: SloEngine,
    /// Burn windows the rules read.
    slo_windows: Vec<u64>,
    /// The rule set the SLO engine was last set up for.
    slo_rules: Arc<RuleSet>,
    /// The burn classification reads, refreshed every SLO evaluation.
    burn: Arc<BurnSnapshot>,
    /// Where `burn` is published for the requests that prepare alerts.
    published_burn: Arc<ArcSwap<BurnSnapshot>>,
    /// When SLO burn is next recomputed.
    next_slo_evaluation: OffsetDateTime,
    /// When each SLO's rules last held, for the hold-down of its incident.
    slo_last_held: HashMap<String, OffsetDateTime>,
    /// Burn floors stated by firing Sloth/Pyrra alerts, by fingerprint.
    alert_floors: HashMap<String, AlertFloors>,
    /// When pushed samples past their SLO's period are next deleted.
    next_slo_prune: OffsetDateTime,
    /// Per SLO fed by a source task, until when its last data counts as
    /// current: past it, the SLO goes stale even if the task said nothing
    /// (stuck, or stopped).
    source_valid_until: HashMap<String, i64>,
    ruleset: Arc<ArcSwap<RuleSet>>,
    clock: Arc<dyn Clock>,
    settings: PipelineSettings,
    /// Incidents not yet resolved, by group key.
    active: HashMap<String, Incident>,
    /// When each active incident's next timer is due (those with one), so
    /// finding due timers does not walk every alert of every incident.
    /// Kept in step with `active` for every incident a batch touches.
    due_at: TimerIndex,
    next_id: i64,
    /// The store's instance id, part of every webhook-id.
    instance_id: String,
    deliveries_ready: Arc<Notify>,
    /// Where first pages go before their commit (see [`EarlyPages`]).
    early_pages: mpsc::Sender<EarlyPages>,
    /// Set when state could not be brought back in line with the store.
    stopped: bool,
    /// SLOs pushed to since the last refused commit: a refusal reloads
    /// them from the store.
    pushed_since_resumed: BTreeSet<String>,
    /// Set when an event that does not retire what it resolves (an SLO
    /// re-classification, a budget check) left an incident resolved in
    /// `active`: the end of the batch's routing removes it.
    resolved_in_place: bool,
}

/// When each active incident's next timer is due (those with one), by
/// group key, and the same in time order: finding what is due and when to
/// wake next read the earliest entries, where a walk of every incident at
/// every batch (comparing `OffsetDateTime`s, which converts both to UTC)
/// was most of the cost of a batch that touched few incidents.
#[derive(Default)]
struct TimerIndex {
    by_key: HashMap<String, OffsetDateTime>,
    /// Every entry of `by_key` as (its time in unix nanoseconds, its key).
    by_time: std::collections::BTreeSet<(i128, String)>,
}

impl TimerIndex {
    /// When the incident at `key` is next due, if it is indexed.
    fn get(&self, key: &str) -> Option<OffsetDateTime> {
        self.by_key.get(key).copied()
    }

    /// Indexes the incident at `key` as due at `at`, or not at all.
    fn set(&mut self, key: &str, at: Option<OffsetDateTime>) {
        let old = match at {
            Some(at) => match self.by_key.get_mut(key) {
                Some(indexed) if *indexed == at && indexed.offset() == at.offset() => return,
                Some(indexed) => Some(std::mem::replace(indexed, at)),
                None => {
                    self.by_key.insert(key.to_string(), at);
                    None
                }
            },
            None => self.by_key.remove(key),
        };
        if let Some(old) = old {
            self.by_time
                .remove(&(old.unix_timestamp_nanos(), key.to_string()));
        }
        if let Some(at) = at {
            self.by_time
                .insert((at.unix_timestamp_nanos(), key.to_string()));
        }
    }

    /// The keys of the incidents due by `now`, earliest first.
    fn due(&self, now: OffsetDateTime) -> Vec<String> {
        let now = now.unix_timestamp_nanos();
        self.by_time
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, key)| key.clone())
            .collect()
    }

    /// The earliest time indexed.
    fn earliest(&self) -> Option<OffsetDateTime> {
        let (_, key) = self.by_time.first()?;
        self.get(key)
    }
}

/// What one firing burn-rate alert says, until when.
struct AlertFloors {
    /// (SLO, window in seconds, the burn is above this).
    windows: Vec<(String, u64, f64)>,
    /// When the alert lapses unless refreshed.
    until: OffsetDateTime,
}

/// The incidents a batch changed, by group key, and whether each one's
/// own row (status, severity, timers, what was paged: its header) may have
/// changed. Which of its alerts changed, and how, its
/// [`route::AlertSet`] recorded: only those are written, so refreshing one
/// alert of a large incident does not rewrite the others, nor the header
/// unless its next timer moved.
#[derive(Default)]
struct Touched(HashMap<String, bool>);

impl Touched {
    /// The incident at `key` changed: only its alerts, or (`header`)
    /// anything. Takes the key by value, so an incident already noted
    /// costs no copy of it.
    fn note(&mut self, key: String, header: bool) {
        let noted = self.0.entry(key).or_insert(header);
        *noted |= header;
    }

    /// Anything in the incident at `key` may have changed.
    fn all(&mut self, key: &str) {
        match self.0.get_mut(key) {
            Some(header) => *header = true,
            None => {
                self.0.insert(key.to_string(), true);
            }
        }
    }
}

/// A routed batch: what to commit, and whom to answer once it is.
struct Routed {
    batch: CommitBatch,
    replies: Vec<Reply>,
    /// Commands routed into it.
    commands: usize,
    /// SLOs this batch pushed samples to (already in the engine).
    pushed_to: Vec<String>,
    /// The batch's time.
    now: OffsetDateTime,
}

/// The first pages of incidents a batch opened: nothing about those
/// incidents can be waiting in the outbox before them, so they may go out
/// before the commit without overtaking anything.
fn first_pages(batch: &CommitBatch, now: OffsetDateTime) -> Vec<Delivery> {
    let opened: std::collections::HashSet<i64> = batch
        .incidents
        .iter()
        .filter(|i| i.opened_at == Some(now))
        .map(|i| i.id)
        .collect();
    if opened.is_empty() {
        return Vec::new();
    }
    batch
        .deliveries
        .iter()
        .filter(|d| d.kind == ActionKind::Page && opened.contains(&d.incident_id))
        .map(|d| Delivery {
            id: 0,
            incident_id: d.incident_id,
            destination: d.destination.clone(),
            kind: d.kind,
            webhook_id: d.webhook_id.clone(),
            body: d.body.clone(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_at: d.created_at,
            created_at: d.created_at,
            last_http_status: None,
            last_error: None,
            finished_at: None,
            failover_of: None,
        })
        .collect()
}

impl Router {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let (committer, mut refusals) = match Committer::start(
            self.store.clone(),
            self.deliveries_ready.clone(),
            self.settings.max_batch,
        ) {
            Ok(started) => started,
            Err(e) => {
                tracing::error!(error = %e, "The commit thread could not start; the router stops.");
                return;
            }
        };
        loop {
            let wait = self.until_next_timer();
            let first = tokio::select! {
                biased;
                // A refused commit: what was routed on top of it is being
                // refused; state comes back from the store first.
                refusal = refusals.recv() => {
                    self.refused(&committer, refusal).await;
                    if self.stopped {
                        return;
                    }
                    continue;
                }
                cmd = rx.recv() => match cmd {
                    Some(cmd) => Some(cmd),
                    // Every handle dropped: shut down once what was routed
                    // is committed (and its requests answered).
                    None => {
                        let _ = committer.drained().await;
                        return;
                    }
                },
                () = tokio::time::sleep(wait) => None,
            };
            let woken_by_request = first.is_some();
            let mut commands: Vec<Command> = first.into_iter().collect();
            // Gather what is already queued, then (when a request woke us)
            // wait up to max_wait for more to share the commit.
            let deadline = tokio::time::Instant::now() + self.settings.max_wait;
            while commands.len() < self.settings.max_batch {
                match rx.try_recv() {
                    Ok(cmd) => commands.push(cmd),
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        if !woken_by_request || self.settings.max_wait.is_zero() {
                            break;
                        }
                        match tokio::time::timeout_at(deadline, rx.recv()).await {
                            Ok(Some(cmd)) => commands.push(cmd),
                            _ => break,
                        }
                    }
                }
            }
            // A reload may refill SLOs from the store: what was routed
            // before it is committed first, so the refill reads its
            // samples (or, refused, state is reloaded first).
            let ruleset = self.ruleset.load_full();
            if !Arc::ptr_eq(&ruleset, &self.slo_rules) {
                if committer.drained().await.is_err() {
                    tracing::error!("The commit thread is gone; the router stops.");
                    return;
                }
                if let Ok(refusal) = refusals.try_recv() {
                    self.refused(&committer, Some(refusal)).await;
                    if self.stopped {
                        return;
                    }
                }
            }
            let routed = self.route(commands, ruleset).await;
            // First pages go to the worker now, before the commit: sending
            // them does not wait for the fsync (recording them does).
            let (landed, handed_over) = self.hand_over_first_pages(&routed);
            self.pushed_since_resumed
                .extend(routed.pushed_to.iter().cloned());
            if routed.batch.is_empty() && routed.replies.is_empty() {
                continue;
            }
            let has_deliveries = routed.batch.deliveries.len() > handed_over;
            committer
                .send(Part::new(
                    routed.batch,
                    routed.replies,
                    routed.commands,
                    has_deliveries,
                    landed.into_iter().collect(),
                ))
                .await;
        }
    }

    /// What the commit and flush threads said: a refused commit reloads
    /// state; a failed sync, or the threads gone (`None`), stops the
    /// router, since what the store holds durably is no longer known.
    async fn refused(&mut self, committer: &Committer, refusal: Option<Refusal>) {
        match refusal {
            Some(Refusal::Commit(error, replies)) => {
                self.recover(committer, &error).await;
                committer::refuse(replies, &error);
            }
            Some(Refusal::Queued(error, replies)) => committer::refuse(replies, &error),
            Some(Refusal::Durability(error)) => {
                tracing::error!(%error, "A commit could not be made durable; the router stops.");
                self.stopped = true;
            }
            None => {
                tracing::error!("The commit thread is gone; the router stops.");
                self.stopped = true;
            }
        }
    }

    /// After a refused commit: the store is the truth, so state (incidents,
    /// and the SLOs pushed to since the last refusal) is read back from
    /// it, dropping what the refused parts and those routed on top of them
    /// changed; then the commit thread hears that what follows counts. If
    /// even that read fails, memory and store may disagree, so the router
    /// stops (fail closed; `/readyz` then says so).
    async fn recover(&mut self, committer: &Committer, error: &str) {
        tracing::warn!(%error, "Reloading state after a refused commit.");
        // Burn, SLO alerts and reclassifications of the refused batches
        // are recomputed from the reloaded state at once.
        self.next_slo_evaluation = OffsetDateTime::UNIX_EPOCH;
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.active_incidents()).await {
            Ok(Ok(incidents)) => {
                self.active = incidents
                    .into_iter()
                    .map(|mut i| {
                        // As loaded: nothing in it is unwritten.
                        i.alerts.forget_changes();
                        (i.key.clone(), i)
                    })
                    .collect();
                self.reindex_timers();
            }
            _ => {
                tracing::error!(
                    "Reloading state after a failed commit failed too; the router stops."
                );
                self.stopped = true;
                return;
            }
        }
        let pushed_to: Vec<String> = std::mem::take(&mut self.pushed_since_resumed)
            .into_iter()
            .collect();
        if !pushed_to.is_empty() {
            let ruleset = self.slo_rules.clone();
            if self.reload_pushed(&ruleset, &pushed_to).await.is_err() {
                tracing::error!(
                    "Reloading SLI samples after a failed commit failed too; the router stops."
                );
                self.stopped = true;
                return;
            }
        }
        committer.resumed();
    }

    /// Hands a routed batch's first pages to the delivery worker; returns
    /// how to tell it the batch's fate and how many it took, when there
    /// were any. A worker that is not listening, or is behind, leaves them
    /// to the outbox.
    fn hand_over_first_pages(
        &self,
        routed: &Routed,
    ) -> (Option<watch::Sender<Option<bool>>>, usize) {
        if self.early_pages.is_closed() {
            return (None, 0);
        }
        let deliveries = first_pages(&routed.batch, routed.now);
        let count = deliveries.len();
        if count == 0 {
            return (None, 0);
        }
        let (landed, on_landing) = watch::channel(None);
        match self.early_pages.try_send(EarlyPages {
            deliveries,
            landed: on_landing,
        }) {
            Ok(()) => (Some(landed), count),
            Err(_) => (None, 0),
        }
    }

    /// Rebuilds the timer index from every active incident.
    fn reindex_timers(&mut self) {
        let mut due_at = TimerIndex::default();
        for (key, incident) in &self.active {
            due_at.set(key, incident.next_due());
        }
        self.due_at = due_at;
    }

    /// Brings the timer index in line with the incident at `key`.
    fn reindex_timer(&mut self, key: &str) {
        let due = self.active.get(key).and_then(Incident::next_due);
        self.due_at.set(key, due);
    }

    /// How long until the earliest incident timer, bounded by the tick.
    fn until_next_timer(&self) -> Duration {
        let now = self.clock.now();
        let next = self.due_at.earliest();
        match next {
            Some(t) if t <= now => Duration::ZERO,
            Some(t) => Duration::try_from(t - now)
                .unwrap_or(self.settings.tick)
                .min(self.settings.tick),
            None => self.settings.tick,
        }
    }

    /// Routes a batch of commands into the state and the batch to commit,
    /// with `ruleset` (read by the caller, which lands what a reload's
    /// refill must read first).
    async fn route(&mut self, commands: Vec<Command>, ruleset: Arc<RuleSet>) -> Routed {
        let now = self.clock.now();
        if !Arc::ptr_eq(&ruleset, &self.slo_rules) {
            // A reload: SLOs keep their data unless their period changed.
            self.slo.set_slos(&ruleset.slos);
            self.slo_windows = evaluated_windows(&ruleset);
            // A push SLO that is new, or changed period or source, starts
            // from its samples in the store, not from empty (or from what
            // another source put there).
            let refill: Vec<String> = ruleset
                .slos
                .iter()
                .filter(|s| s.source == SloSource::Push)
                .filter(|s| {
                    !self.slo_rules.slos.iter().any(|old| {
                        old.name == s.name
                            && old.period_secs == s.period_secs
                            && old.source == s.source
                    })
                })
                .map(|s| s.name.clone())
                .collect();
            self.slo_rules = ruleset.clone();
            // Only SLOs still read from Prometheus keep a validity: one now
            // pushed must not go stale when the old source's data expires.
            self.source_valid_until.retain(|name, _| {
                ruleset
                    .slos
                    .iter()
                    .any(|s| &s.name == name && matches!(s.source, SloSource::Prometheus { .. }))
            });
            if !refill.is_empty() && self.reload_pushed(&ruleset, &refill).await.is_err() {
                tracing::error!(
                    slos = ?refill,
                    "The store could not be read to refill reloaded SLOs; they start empty."
                );
            }
            // A pushed SLO's data is as fresh as its last push, whatever a
            // source it had before said.
            for slo in &refill {
                let _ = self.slo.set_fresh(slo);
            }
        }
        let mut batch = CommitBatch::default();
        let mut touched = Touched::default();
        let mut replies = Vec::new();
        let routed_commands = commands.len();
        for command in commands {
            match command {
                // A pushed sample is answered once it is committed, so it
                // survives a restart (replayed at start).
                Command::Slo {
                    slo,
                    at,
                    sample,
                    reply,
                } => {
                    let now_secs = now.unix_timestamp();
                    let at = at.unwrap_or(now_secs);
                    match self.record_pushed(&ruleset, &slo, now_secs, at, sample) {
                        Ok(recorded) => {
                            if !matches!(recorded, Recorded::Duplicate { .. }) {
                                let (cumulative, good, total) = match sample {
                                    SloSample::Interval { good, total } => (false, good, total),
                                    SloSample::Cumulative { good, total } => (true, good, total),
                                };
                                batch.slo_samples.push(SloSampleRecord {
                                    slo,
                                    received_at: now_secs,
                                    at,
                                    cumulative,
                                    good,
                                    total,
                                });
                            }
                            replies.push(Reply::Slo(reply, recorded));
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e.into()));
                        }
                    }
                }
                Command::SloSource { slo, update, reply } => {
                    let _ =
                        reply.send(self.apply_source_update(&slo, now.unix_timestamp(), update));
                }
                Command::SloStatus { slo, reply } => {
                    let now_secs = now.unix_timestamp();
                    let mut statuses = match slo {
                        Some(name) => self.slo.status(&name, now_secs).map(|s| vec![s]),
                        None => Ok(self.slo.statuses(now_secs)),
                    };
                    // The engine holds counts; floors from burn-rate
                    // alerts live in the snapshot.
                    for status in statuses.iter_mut().flatten() {
                        status.burn_floors = self
                            .burn
                            .floors(&status.name)
                            .into_iter()
                            .map(|(window_secs, above)| crate::slo::BurnFloor {
                                window_secs,
                                above,
                            })
                            .collect();
                    }
                    let _ = reply.send(statuses.map_err(PipelineError::from));
                }
                Command::Ingest {
                    batch: alerts,
                    reply,
                } => {
                    let outcome = self.ingest(alerts, &ruleset, now, &mut batch, &mut touched);
                    replies.push(Reply::Ingest(reply, outcome));
                }
                Command::Human {
                    incident_id,
                    event,
                    reply,
                } => {
                    let Some(key) = self
                        .active
                        .values()
                        .find(|i| i.id == incident_id)
                        .map(|i| i.key.clone())
                    else {
                        // Not active: resolved, or never existed.
                        let store = self.store.clone();
                        let found =
                            tokio::task::spawn_blocking(move || store.incident(incident_id)).await;
                        let err = match found {
                            Ok(Ok(Some(_))) => {
                                PipelineError::Route(RouteError::Resolved(incident_id))
                            }
                            Ok(Ok(None)) => PipelineError::NoIncident(incident_id),
                            Ok(Err(e)) => PipelineError::Store(e),
                            Err(_) => PipelineError::Stopped,
                        };
                        let _ = reply.send(Err(err));
                        continue;
                    };
                    match self.apply(&key, event, &ruleset, now, &mut batch) {
                        Ok(_) => {
                            touched.all(&key);
                            replies.push(Reply::Human(reply));
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e.into()));
                        }
                    }
                }
            }
        }
        if now >= self.next_slo_evaluation {
            self.expire_source_data(now.unix_timestamp());
            self.evaluate_slos(&ruleset, now, &mut batch, &mut touched);
            let every = time::Duration::try_from(self.settings.slo_evaluation)
                .unwrap_or(time::Duration::SECOND);
            self.next_slo_evaluation = now + every;
        }
        if now >= self.next_slo_prune {
            batch.slo_prune = prune_cuts(&ruleset, &self.slo, now.unix_timestamp());
            self.next_slo_prune = now + SLO_PRUNE_EVERY;
        }
        // Timers due by now, whatever woke the router (a new incident with
        // no wait is due at once, so the index first learns this batch's).
        // The index's time is in the header's row: a timer that moved
        // earlier is written at once. One that only moved later (a refresh
        // pushed the earliest alert's end out, the earliest alert resolved)
        // keeps its earlier time in the index and the row when nothing
        // else of the header changed: a safe lower bound, since the tick
        // then finds nothing due and sets it right. Otherwise refreshes
        // would rewrite the header at almost every batch.
        for (key, header) in touched.0.iter_mut() {
            let Some(incident) = self.active.get(key) else {
                // Resolved: it left the active set, and the index.
                self.due_at.set(key, None);
                continue;
            };
            let before = self.due_at.get(key);
            let exact = incident.next_due();
            let later = match (before, exact) {
                (Some(b), Some(e)) => e > b,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if *header || !later {
                // What `reindex_timer` does, with the incident in hand.
                self.due_at.set(key, exact);
                *header |= exact != before;
            }
        }
        let due = self.due_at.due(now);
        for key in due {
            // A tick never fails.
            let _ = self.apply(&key, Event::Tick, &ruleset, now, &mut batch);
            // Only a tick changes timers after the pass above.
            self.reindex_timer(&key);
            touched.note(key, true);
        }
        // Incidents that resolved went into the batch whole when they left
        // the active set; the others go in as their row, if it changed,
        // and their changed alerts.
        for (key, header) in touched.0 {
            let Some(incident) = self.active.get_mut(&key) else {
                continue;
            };
            if header {
                batch.incidents.push(incident.header());
                // The row's timer column: the header alone cannot see when
                // its alerts expire.
                batch.next_due.insert(incident.id, self.due_at.get(&key));
            }
            let incident_id = incident.id;
            for (fingerprint, changed) in incident.alerts.take_changes() {
                match changed {
                    Changed::Seen { last_seen, ends_at } => batch.alert_seen.push(AlertSeen {
                        incident_id,
                        fingerprint,
                        last_seen,
                        ends_at,
                    }),
                    Changed::Whole(alert) => batch.incident_alerts.push(IncidentAlert::new(
                        incident_id,
                        fingerprint,
                        Arc::clone(alert),
                    )),
                }
            }
        }

        // Incidents resolved by routing left the active set at once
        // (`retire_if_resolved`); this walk of every incident is for one
        // that resolved in place, by an event that does not retire it,
        // now that the pass above wrote it: the next batch (or part of
        // this one) must not find it.
        if std::mem::take(&mut self.resolved_in_place) {
            self.active.retain(|_, i| i.is_active());
        }
        let mut pushed_to: Vec<String> = batch.slo_samples.iter().map(|r| r.slo.clone()).collect();
        pushed_to.sort();
        pushed_to.dedup();
        Routed {
            batch,
            replies,
            commands: routed_commands,
            pushed_to,
            now,
        }
    }

    /// Applies a pushed sample to the engine; refused for an SLO whose
    /// data comes from Prometheus (its history is Prometheus').
    fn record_pushed(
        &mut self,
        ruleset: &RuleSet,
        slo: &str,
        now: i64,
        at: i64,
        sample: SloSample,
    ) -> Result<Recorded, SloError> {
        if let Some(declared) = ruleset.slos.iter().find(|s| s.name == slo)
            && matches!(declared.source, SloSource::Prometheus { .. })
        {
            return Err(SloError::NotPushed {
                name: slo.to_string(),
                from: "prometheus",
            });
        }
        match sample {
            SloSample::Interval { good, total } => self.slo.record(slo, now, at, good, total),
            SloSample::Cumulative { good, total } => {
                self.slo.record_cumulative(slo, now, at, good, total)
            }
        }
    }

    /// Applies what an SLO source read. Records the engine refuses (older
    /// than it holds) are logged and skipped: the rest still count.
    fn apply_source_update(
        &mut self,
        slo: &str,
        now: i64,
        update: SourceUpdate,
    ) -> Result<(), PipelineError> {
        // An update in flight across a reload that moved the SLO to
        // another source must not touch the new source's data.
        let from_prometheus = self
            .slo_rules
            .slos
            .iter()
            .any(|s| s.name == slo && matches!(s.source, SloSource::Prometheus { .. }));
        if !from_prometheus {
            tracing::info!(
                slo,
                "An update from Prometheus arrived for an SLO no longer read from it; dropped."
            );
            return Ok(());
        }
        if update.replace {
            self.slo.clear(slo)?;
        }
        let mut refused = 0usize;
        for (at, counts) in &update.records {
            if self.slo.record_past(slo, now, *at, *counts).is_err() {
                refused += 1;
            }
        }
        if refused > 0 {
            tracing::warn!(
                slo,
                refused,
                "Some SLI records from the source were refused."
            );
        }
        match update.stale {
            Some(reason) => self.slo.set_stale(slo, now, reason)?,
            None => self.slo.set_fresh(slo)?,
        }
        match update.valid_until {
            Some(until) => self.source_valid_until.insert(slo.to_string(), until),
            None => self.source_valid_until.remove(slo),
        };
        Ok(())
    }

    /// Marks stale every source-fed SLO whose data outlived its validity
    /// with nothing newer from its source.
    fn expire_source_data(&mut self, now: i64) {
        for (slo, until) in &self.source_valid_until {
            if now > *until {
                let when = OffsetDateTime::from_unix_timestamp(*until)
                    .ok()
                    .and_then(|t| {
                        t.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    })
                    .unwrap_or_else(|| until.to_string());
                let reason = format!(
                    "no new sample from the source; its last data went out of date at {when}"
                );
                let _ = self.slo.set_stale(slo, now, reason);
            }
        }
    }

    /// Rebuilds the counts of the push SLOs `slos` from their samples in
    /// the store, the truth: after a failed commit (memory may hold
    /// samples the store refused) and after a reload that laid them out
    /// anew. `Err` when the store cannot be read; the SLOs are then left
    /// as they were.
    async fn reload_pushed(&mut self, ruleset: &RuleSet, slos: &[String]) -> Result<(), ()> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.slo_samples()).await {
            Ok(Ok(samples)) => {
                for slo in slos {
                    let _ = self.slo.clear(slo);
                }
                replay_samples(&mut self.slo, ruleset, &samples, Some(slos));
                Ok(())
            }
            _ => Err(()),
        }
    }

    /// Recomputes burn from the SLO engine and re-classifies the firing
    /// alerts of every active incident against it; incidents whose
    /// classifications changed are re-evaluated (escalations page).
    fn evaluate_slos(
        &mut self,
        ruleset: &RuleSet,
        now: OffsetDateTime,
        batch: &mut CommitBatch,
        touched: &mut Touched,
    ) {
        if ruleset.slos.is_empty() {
            // A reload may have removed every SLO: their raised alerts
            // must still resolve.
            self.resolve_orphaned_slo_alerts(ruleset, &[], now, batch, touched);
            return;
        }
        let mut burn = self.slo.snapshot(now.unix_timestamp(), &self.slo_windows);
        self.alert_floors.retain(|_, f| f.until > now);
        for floors in self.alert_floors.values() {
            for (slo, window, factor) in &floors.windows {
                burn.raise_floor(slo, *window, *factor);
            }
        }
        self.burn = Arc::new(burn);
        self.published_burn.store(self.burn.clone());
        let links = Links {
            public_url: &self.settings.public_url,
            instance_id: &self.instance_id,
            burn: &self.burn,
            ruleset,
        };
        for (key, incident) in self.active.iter_mut() {
            let changed: Vec<ClassifiedAlert> = incident
                .alerts
                .values()
                .filter(|a| a.is_firing())
                .filter_map(|a| {
                    let c = classify(ruleset, &a.alert, &self.burn, now);
                    // An SLO's own alert keeps its severity through the
                    // hold-down; evaluate_slo_rules resolves it after.
                    if c.severity.is_none() && a.alert.slo_rule_alert_of().is_some() {
                        return None;
                    }
                    let again = ClassifiedAlert::new(a.alert.clone(), &c);
                    (again.severity != a.severity || again.rule != a.rule).then_some(again)
                })
                .collect();
            if changed.is_empty() {
                continue;
            }
            if let Ok(decision) = route::apply(incident, Event::Reclassify(changed), ruleset, now) {
                record(incident, decision, now, &links, batch);
                touched.all(key);
            }
            self.resolved_in_place |= !incident.is_active();
        }
        self.evaluate_slo_rules(ruleset, now, batch, touched);
        self.check_budgets(ruleset, now, batch, touched);
    }

    /// Tells every open incident how much budget is left of the SLOs its
    /// alerts' deciding rules read, so one that consumes too much of a
    /// budget requires a postmortem.
    fn check_budgets(
        &mut self,
        ruleset: &RuleSet,
        now: OffsetDateTime,
        batch: &mut CommitBatch,
        touched: &mut Touched,
    ) {
        let rule_index: HashMap<&str, usize> = ruleset
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.as_str(), i))
            .collect();
        let links = Links {
            public_url: &self.settings.public_url,
            instance_id: &self.instance_id,
            burn: &self.burn,
            ruleset,
        };
        for (key, incident) in self.active.iter_mut() {
            let mut slos: Vec<usize> = incident
                .alerts
                .values()
                .filter(|a| a.is_firing())
                .filter_map(|a| rule_index.get(a.rule.as_deref()?).copied())
                .flat_map(|i| ruleset.rules[i].when.slos())
                .collect();
            slos.sort_unstable();
            slos.dedup();
            let budgets: Vec<(String, f64, u64)> = slos
                .into_iter()
                .filter_map(|i| {
                    let slo = &ruleset.slos[i];
                    let left = self.burn.budget_remaining(&slo.name)?;
                    Some((slo.name.clone(), left, slo.period_secs))
                })
                .collect();
            if budgets.is_empty() {
                continue;
            }
            let marks_before = incident.slo_budgets.len();
            if let Ok(decision) = route::apply(incident, Event::Budgets(budgets), ruleset, now) {
                // A first mark is state worth keeping across a restart.
                if !decision.timeline.is_empty() || incident.slo_budgets.len() != marks_before {
                    touched.all(key);
                }
                record(incident, decision, now, &links, batch);
            }
            self.resolved_in_place |= !incident.is_active();
        }
    }

    /// Applies an event to the active incident at `key` and records what it
    /// owes in the batch; an incident that resolved leaves the active set.
    /// The caller notes in its [`Touched`] what changed; the answer says
    /// whether the decision reached past the event's alerts (an
    /// announcement, a page, a resolve: anything but an alert joining or
    /// resolving), so that the incident's own row is written too. (Which
    /// alerts changed, the incident's alert set recorded itself.)
    fn apply(
        &mut self,
        key: &str,
        event: Event,
        ruleset: &RuleSet,
        now: OffsetDateTime,
        batch: &mut CommitBatch,
    ) -> Result<bool, RouteError> {
        let links = Links {
            public_url: &self.settings.public_url,
            instance_id: &self.instance_id,
            burn: &self.burn,
            ruleset,
        };
        let Some(incident) = self.active.get_mut(key) else {
            return Ok(false);
        };
        let decision = route::apply(incident, event, ruleset, now)?;
        let beyond_the_alert = decision.reaches_beyond_its_alerts();
        record(incident, decision, now, &links, batch);
        self.retire_if_resolved(key, batch);
        Ok(beyond_the_alert)
    }

    fn links<'a>(&'a self, ruleset: &'a RuleSet) -> Links<'a> {
        Links {
            public_url: &self.settings.public_url,
            instance_id: &self.instance_id,
            burn: &self.burn,
            ruleset,
        }
    }

    /// Moves an incident that just resolved out of the active set and into
    /// the batch, so a later alert for its group (in the same batch, even)
    /// opens a new incident instead of reaching a resolved one.
    fn retire_if_resolved(&mut self, key: &str, batch: &mut CommitBatch) {
        if self.active.get(key).is_some_and(|i| !i.is_active())
            && let Some(incident) = self.active.remove(key)
        {
            batch.incidents.push(incident);
        }
    }

    fn ingest(
        &mut self,
        prepared: PreparedBatch,
        ruleset: &Arc<RuleSet>,
        now: OffsetDateTime,
        batch: &mut CommitBatch,
        touched: &mut Touched,
    ) -> IngestOutcome {
        // Floors the batch's own burn-rate alerts state apply to it: a
        // change makes the burn new, so the batch is prepared again below.
        self.take_burn_floors(
            prepared.alerts.iter().map(|p| &p.classified.alert),
            ruleset,
            now,
        );
        let mut outcome = IngestOutcome {
            alerts: prepared.alerts.len(),
            ..IngestOutcome::default()
        };
        let stale =
            !Arc::ptr_eq(&prepared.ruleset, ruleset) || !Arc::ptr_eq(&prepared.burn, &self.burn);
        for alert in prepared.alerts {
            let alert = if stale {
                PreparedAlert::new(ruleset, &self.burn, now, alert.classified.alert)
            } else {
                alert
            };
            if let Some(severity) = alert.classified.severity {
                outcome.by_severity[severity.index()] += 1;
            }
            match self.route_prepared(alert, ruleset, now, batch, touched) {
                Some(_) => outcome.routed += 1,
                None => outcome.unrouted += 1,
            }
        }
        outcome
    }

    /// Reads the burn floors that Sloth and Pyrra alerts state about SLOs
    /// whose source is `alerts`, and puts the floors in force into the
    /// burn snapshot, so this very batch is classified with them.
    fn take_burn_floors<'a>(
        &mut self,
        alerts: impl Iterator<Item = &'a Alert>,
        ruleset: &RuleSet,
        now: OffsetDateTime,
    ) {
        let by_alerts: Vec<&crate::rules::Slo> = ruleset
            .slos
            .iter()
            .filter(|s| s.source == crate::rules::SloSource::Alerts)
            .collect();
        if by_alerts.is_empty() && self.alert_floors.is_empty() {
            return;
        }
        let slo_named = |names: &[String]| {
            names
                .iter()
                .find_map(|n| by_alerts.iter().find(|s| &s.name == n))
                .copied()
        };
        let mut changed = false;
        for alert in alerts {
            let fingerprint = alert.fingerprint().to_string();
            let floors = match crate::slo::alerts::floors_of(alert, |names| {
                slo_named(names).map(|s| s.period_secs)
            }) {
                Ok(floors) => floors,
                Err(e) => {
                    tracing::warn!(alert = %fingerprint, error = %e, "A burn-rate alert's labels were not understood; its burn is ignored.");
                    None
                }
            };
            let held = floors.and_then(|f| {
                let slo = slo_named(&f.names)?;
                // Until the alert says it ends, or five minutes (the
                // Alertmanager resolve timeout) without a refresh.
                let until = alert
                    .ends_at
                    .filter(|end| *end > now)
                    .unwrap_or(now + time::Duration::minutes(5));
                Some(AlertFloors {
                    windows: f
                        .windows
                        .iter()
                        .map(|(w, factor)| (slo.name.clone(), *w, *factor))
                        .collect(),
                    until,
                })
            });
            changed |= match held {
                Some(floors) => self.alert_floors.insert(fingerprint, floors).is_none(),
                None => self.alert_floors.remove(&fingerprint).is_some(),
            };
        }
        if changed {
            // A new snapshot (never an edit in place): batches prepared
            // against the old one see that it changed.
            let mut burn = (*self.burn).clone();
            burn.clear_floors();
            for floors in self.alert_floors.values() {
                for (slo, window, factor) in &floors.windows {
                    burn.raise_floor(slo, *window, *factor);
                }
            }
            self.burn = Arc::new(burn);
            self.published_burn.store(self.burn.clone());
        }
    }

    /// Routes one prepared alert: it joins the active incident of its
    /// group, or declares a new one; returns the incident's id, or `None`
    /// when the alert opens nothing (resolved, or no severity). The alert
    /// is recorded either way.
    fn route_prepared(
        &mut self,
        prepared: PreparedAlert,
        ruleset: &RuleSet,
        now: OffsetDateTime,
        batch: &mut CommitBatch,
        touched: &mut Touched,
    ) -> Option<i64> {
        let PreparedAlert { classified, key } = prepared;
        // Nothing reads the `alerts` row of an alert an incident holds (the
        // incident has the alert), so only alerts no incident holds get one,
        // and only those are serialized.
        let unheld = |classified: &ClassifiedAlert| AlertRecord {
            fingerprint: classified.fingerprint.clone(),
            alert_json: serde_json::to_string(&classified.alert).unwrap_or_default(),
            incident_id: None,
            received_at: now,
        };
        if let Some(incident) = self.active.get_mut(&key) {
            let id = incident.id;
            // A resolve for an alert the incident never saw joins nothing.
            let unheld_row = (classified.alert.status != AlertStatus::Firing
                && !incident.alerts.contains_key(&classified.fingerprint))
            .then(|| unheld(&classified));
            // What `Router::apply` does, on the incident already found:
            // one lookup by group key per alert, not three.
            let links = Links {
                public_url: &self.settings.public_url,
                instance_id: &self.instance_id,
                burn: &self.burn,
                ruleset,
            };
            // Alerts always apply to an active incident.
            let header = match route::apply(incident, Event::Alert(classified), ruleset, now) {
                Ok(decision) => {
                    let beyond_the_alert = decision.reaches_beyond_its_alerts();
                    record(incident, decision, now, &links, batch);
                    beyond_the_alert
                }
                Err(_) => true,
            };
            if !incident.is_active() {
                self.retire_if_resolved(&key, batch);
            }
            touched.note(key, header);
            batch.alerts.extend(unheld_row);
            return Some(id);
        }
        if !route::opens_an_incident(&classified) {
            batch.alerts.push(unheld(&classified));
            return None;
        }
        let (incident, decision) = route::declare(self.next_id, classified, ruleset, now)?;
        self.next_id += 1;
        let id = incident.id;
        let key = incident.key.clone();
        record(&incident, decision, now, &self.links(ruleset), batch);
        self.active.insert(key.clone(), incident);
        touched.all(&key);
        Some(id)
    }

    /// Raises the alert of every SLO whose rules hold, opening (or
    /// joining) the SLO's incident, and resolves it once they have not held
    /// for the hold-down, so a burn that flickers around its threshold
    /// neither resolves nor re-pages.
    fn evaluate_slo_rules(
        &mut self,
        ruleset: &RuleSet,
        now: OffsetDateTime,
        batch: &mut CommitBatch,
        touched: &mut Touched,
    ) {
        let burn = self.burn.clone();
        let hold_down =
            time::Duration::try_from(self.settings.slo_hold_down).unwrap_or(time::Duration::ZERO);
        for slo in watched_names(ruleset) {
            let probe = Alert::for_slo(&slo, AlertStatus::Firing, now);
            let classification = classify(ruleset, &probe, &burn, now);
            let (key, _) = route::group_key(&ruleset.grouping, &probe);
            let fingerprint = probe.fingerprint().to_string();
            let raised: Option<Alert> = self
                .active
                .get(&key)
                .and_then(|i| i.alerts.get(&fingerprint))
                .filter(|a| a.is_firing())
                .map(|a| a.alert.clone());
            if classification.severity.is_some() {
                self.slo_last_held.insert(slo.clone(), now);
                if raised.is_none() {
                    let prepared = PreparedAlert::new(ruleset, &burn, now, probe);
                    self.route_prepared(prepared, ruleset, now, batch, touched);
                }
            } else if let Some(mut raised) = raised {
                // After a restart the hold-down starts again from now.
                let held = *self.slo_last_held.entry(slo.clone()).or_insert(now);
                if now - held >= hold_down {
                    raised.status = AlertStatus::Resolved;
                    raised.ends_at = Some(now);
                    let prepared = PreparedAlert::new(ruleset, &burn, now, raised);
                    // slo_last_held stays until the resolve is seen to
                    // have landed (the next evaluation finds nothing
                    // raised): a refused commit brings the alert back,
                    // and its hold-down must not start again.
                    self.route_prepared(prepared, ruleset, now, batch, touched);
                }
            } else {
                self.slo_last_held.remove(&slo);
            }
        }
        self.resolve_orphaned_slo_alerts(ruleset, &watched_names(ruleset), now, batch, touched);
    }

    /// Resolves, at once, the alerts SLO rules raised for SLOs that no
    /// longer have any (a reload removed the rule or the SLO): nothing
    /// would ever resolve them otherwise.
    fn resolve_orphaned_slo_alerts(
        &mut self,
        ruleset: &RuleSet,
        watched: &[String],
        now: OffsetDateTime,
        batch: &mut CommitBatch,
        touched: &mut Touched,
    ) {
        let orphans: Vec<Alert> = self
            .active
            .values()
            .flat_map(|i| i.alerts.values())
            .filter(|a| a.is_firing())
            .filter(|a| {
                a.alert
                    .slo_rule_alert_of()
                    .is_some_and(|slo| !watched.iter().any(|w| w == slo))
            })
            .map(|a| a.alert.clone())
            .collect();
        let burn = self.burn.clone();
        for mut orphan in orphans {
            orphan.status = AlertStatus::Resolved;
            orphan.ends_at = Some(now);
            if let Some(slo) = orphan.slo_rule_alert_of() {
                self.slo_last_held.remove(slo);
            }
            let prepared = PreparedAlert::new(ruleset, &burn, now, orphan);
            self.route_prepared(prepared, ruleset, now, batch, touched);
        }
    }
}

/// The SLOs that have SLO rules: those whose own alert sevroute raises.
fn watched_names(ruleset: &RuleSet) -> Vec<String> {
    ruleset
        .slo_rules()
        .map(|(slo, _)| ruleset.slos[slo].name.clone())
        .collect()
}

/// The burn windows an SLO evaluation computes: those the rules read, and
/// the pair whose comparison says whether a burn is rising or recovering.
fn evaluated_windows(ruleset: &RuleSet) -> Vec<u64> {
    let mut windows = ruleset.burn_windows();
    windows.extend([crate::slo::TREND_WINDOWS.0, crate::slo::TREND_WINDOWS.1]);
    windows.sort_unstable();
    windows.dedup();
    windows
}

/// How often pushed samples past their SLO's period are deleted.
const SLO_PRUNE_EVERY: time::Duration = time::Duration::HOUR;

/// Replays pushed samples, in the order they were accepted, into the
/// engine, each with the `now` it was accepted at: the engine is
/// deterministic, so this rebuilds the same counts (and counter
/// baselines). Only SLOs declared with `source push` (and, with `only`,
/// named in it) take them. Returns how many the engine refused (an SLO
/// whose period changed since keeps what still fits).
fn replay_samples(
    engine: &mut SloEngine,
    ruleset: &RuleSet,
    samples: &[SloSampleRecord],
    only: Option<&[String]>,
) -> usize {
    let pushed: std::collections::HashSet<&str> = ruleset
        .slos
        .iter()
        .filter(|s| s.source == SloSource::Push)
        .filter(|s| only.is_none_or(|names| names.contains(&s.name)))
        .map(|s| s.name.as_str())
        .collect();
    let mut refused = 0;
    for r in samples.iter().filter(|r| pushed.contains(r.slo.as_str())) {
        let result = if r.cumulative {
            engine.record_cumulative(&r.slo, r.received_at, r.at, r.good, r.total)
        } else {
            engine.record(&r.slo, r.received_at, r.at, r.good, r.total)
        };
        refused += usize::from(result.is_err());
    }
    refused
}

/// Per SLO fed by pushes, the time before which its samples can no
/// longer count: its period and the lateness bound before `now` (a
/// cumulative sample just past the cut still serves as the baseline of
/// the next).
fn prune_cuts(ruleset: &RuleSet, engine: &SloEngine, now: i64) -> Vec<(String, i64)> {
    let lateness = engine.config().lateness_secs as i64;
    ruleset
        .slos
        .iter()
        .filter(|s| s.source == SloSource::Push)
        .map(|s| (s.name.clone(), now - s.period_secs as i64 - lateness))
        .collect()
}

/// What a delivery body and id are made from besides the incident.
struct Links<'a> {
    /// Base URL for links back to incidents.
    public_url: &'a str,
    /// The store's instance id.
    instance_id: &'a str,
    /// The burn rates as classification last saw them, for the message's
    /// `burn` readings.
    burn: &'a BurnSnapshot,
    /// The rule set in force, to find which burn rates a rule reads.
    ruleset: &'a RuleSet,
}

/// Adds a decision's timeline entries and deliveries to the batch.
fn record(
    incident: &Incident,
    decision: Decision,
    now: OffsetDateTime,
    links: &Links<'_>,
    batch: &mut CommitBatch,
) {
    for entry in decision.timeline {
        batch.timeline.push((incident.id, entry));
    }
    for action in decision.actions {
        // Derived from what names the action for good, so every retry,
        // restart and replay carries the same webhook-id; the store's
        // instance id keeps a new store from reusing an old store's ids.
        let webhook_id = derive_message_id(&format!(
            "{}:{}:{}:{}:{}",
            links.instance_id,
            incident.id,
            action.destination,
            action.kind.as_str(),
            action.seq
        ));
        let body = render_action(incident, &action, &webhook_id, now, links);
        batch.deliveries.push(NewDelivery {
            incident_id: incident.id,
            destination: action.destination.clone(),
            kind: action.kind,
            webhook_id,
            body,
            created_at: now,
        });
    }
}

/// The versioned webhook body for one action, from the incident as it
/// stands when the action is decided.
fn render_action(
    incident: &Incident,
    action: &Action,
    webhook_id: &str,
    now: OffsetDateTime,
    links: &Links<'_>,
) -> String {
    let kind = match action.kind {
        ActionKind::Page => MessageType::Page,
        ActionKind::Notify => MessageType::Notify,
        ActionKind::UpdateDue => MessageType::UpdateDue,
        ActionKind::Escalate => MessageType::Escalate,
        ActionKind::Resolve => MessageType::Resolve,
        ActionKind::Acknowledge => MessageType::Acknowledge,
    };
    let deciding = incident.deciding_alert();
    let explanation = deciding.map(|a| a.explanation.to_vec()).unwrap_or_default();
    let burn = burn_readings(
        links.ruleset,
        deciding.and_then(|a| a.rule.as_deref()),
        links.burn,
    );
    let message = WebhookMessage {
        version: MessageVersion,
        id: webhook_id.to_string(),
        kind,
        occurred_at: now,
        incident: MessageIncident {
            id: incident.id,
            key: incident.key.clone(),
            title: incident.title.clone(),
            // Actions are only owed once an incident has a severity.
            severity: incident.severity.unwrap_or(Severity::Sev3),
            status: match incident.status {
                IncidentStatus::Resolved => MessageStatus::Resolved,
                _ => MessageStatus::Open,
            },
            opened_at: incident.opened_at.unwrap_or(incident.declared_at),
            url: Some(format!(
                "{}/api/v1/incidents/{}",
                links.public_url.trim_end_matches('/'),
                incident.id
            )),
        },
        alerts: incident
            .alerts
            .values()
            .map(|a| MessageAlert::from(&a.alert))
            .collect(),
        explanation,
        reason: Some(action.reason.clone()),
        burn,
    };
    // Serializing plain data to a Vec cannot fail.
    String::from_utf8(message.to_body().unwrap_or_default()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;
    use crate::model::AlertStatus;
    use crate::route::TimelineEntry;
    use crate::rules::{EnvPolicy, Sources, load_sources_with_env};
    use crate::store::sqlite::SqliteStore;
    use crate::store::{AttemptRecord, Delivery, Flush, IncidentFilter, OutboxStats};

    /// A store that counts commits, makes each slow (so requests queue up
    /// behind it), and fails them on demand.
    struct CountingStore {
        inner: SqliteStore,
        commits: AtomicUsize,
        fail: AtomicBool,
        /// Incident alerts each commit wrote.
        alert_rows: std::sync::Mutex<Vec<usize>>,
        /// What each commit wrote.
        shapes: std::sync::Mutex<Vec<Shape>>,
        /// A commit waits while this is set.
        held: AtomicBool,
        /// Set once a commit is waiting at the gate or past it.
        entered: AtomicBool,
        /// Fails the next commit only.
        fail_once: AtomicBool,
        /// A read of due deliveries waits while this is set.
        reads_held: AtomicBool,
        /// Set once a read of due deliveries is waiting at that gate.
        read_entered: AtomicBool,
        /// Recording attempts waits while this is set.
        records_held: AtomicBool,
        /// How many attempts each recording held.
        recorded: std::sync::Mutex<Vec<usize>>,
        /// A flush waits while this is set.
        flushes_held: Arc<AtomicBool>,
        /// Flushes that ran.
        flushes: Arc<AtomicUsize>,
        /// Flushes fail while this is set.
        flushes_fail: Arc<AtomicBool>,
        /// The next commit panics.
        panic_once: AtomicBool,
    }

    impl CountingStore {
        /// What each commit does before it reaches the inner store.
        fn count(&self, batch: &CommitBatch) -> Result<(), StoreError> {
            if self.panic_once.swap(false, Ordering::SeqCst) {
                panic!("the store broke");
            }
            self.entered.store(true, Ordering::SeqCst);
            while self.held.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(30));
            if self.fail.load(Ordering::SeqCst) || self.fail_once.swap(false, Ordering::SeqCst) {
                return Err(StoreError::Open {
                    path: "test".into(),
                    message: "disk full".into(),
                });
            }
            self.commits.fetch_add(1, Ordering::SeqCst);
            let rows = batch.incident_alerts.len()
                + batch
                    .incidents
                    .iter()
                    .map(|i| i.alerts.len())
                    .sum::<usize>();
            self.alert_rows.lock().unwrap().push(rows);
            self.shapes.lock().unwrap().push(Shape {
                headers: batch.incidents.len(),
                whole_alerts: rows,
                seen_alerts: batch.alert_seen.len(),
                alert_records: batch.alerts.len(),
            });
            Ok(())
        }
    }

    impl Store for CountingStore {
        fn commit(&self, batch: &CommitBatch) -> Result<(), StoreError> {
            self.count(batch)?;
            self.inner.commit(batch)
        }
        fn commit_to_flush(&self, batch: Arc<CommitBatch>) -> Result<Flush, StoreError> {
            self.count(&batch)?;
            let flush = self.inner.commit_to_flush(batch)?;
            let (held, flushes, fail) = (
                self.flushes_held.clone(),
                self.flushes.clone(),
                self.flushes_fail.clone(),
            );
            Ok(Flush::new(move || {
                while held.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                flushes.fetch_add(1, Ordering::SeqCst);
                if fail.load(Ordering::SeqCst) {
                    return Err(StoreError::Flush {
                        path: "test-wal".into(),
                        message: "I/O error".into(),
                    });
                }
                flush.run()
            }))
        }
        fn active_incidents(&self) -> Result<Vec<Incident>, StoreError> {
            self.inner.active_incidents()
        }
        fn max_incident_id(&self) -> Result<i64, StoreError> {
            self.inner.max_incident_id()
        }
        fn incident(&self, id: i64) -> Result<Option<(Incident, Vec<TimelineEntry>)>, StoreError> {
            self.inner.incident(id)
        }
        fn incidents(&self, filter: &IncidentFilter) -> Result<Vec<Incident>, StoreError> {
            self.inner.incidents(filter)
        }
        fn due_deliveries(
            &self,
            now: OffsetDateTime,
            limit: usize,
            in_flight: usize,
        ) -> Result<Vec<Delivery>, StoreError> {
            self.read_entered.store(true, Ordering::SeqCst);
            while self.reads_held.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            self.inner.due_deliveries(now, limit, in_flight)
        }
        fn next_delivery_due(&self) -> Result<Option<OffsetDateTime>, StoreError> {
            self.inner.next_delivery_due()
        }
        fn record_attempts(&self, attempts: &[(i64, AttemptRecord)]) -> Result<(), StoreError> {
            while self.records_held.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            self.inner.record_attempts(attempts)?;
            self.recorded.lock().unwrap().push(attempts.len());
            Ok(())
        }
        fn deliveries_for(&self, incident_id: i64) -> Result<Vec<Delivery>, StoreError> {
            self.inner.deliveries_for(incident_id)
        }
        fn outbox_stats(&self, now: OffsetDateTime) -> Result<OutboxStats, StoreError> {
            self.inner.outbox_stats(now)
        }
        fn instance_id(&self) -> Result<String, StoreError> {
            self.inner.instance_id()
        }
        fn postpone(&self, id: i64, at: OffsetDateTime) -> Result<(), StoreError> {
            self.inner.postpone(id, at)
        }
        fn fail_over(
            &self,
            id: i64,
            attempt: &AttemptRecord,
            to: &crate::store::NewDelivery,
            note: &TimelineEntry,
        ) -> Result<i64, StoreError> {
            self.inner.fail_over(id, attempt, to, note)
        }
        fn coalesce_repeats(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
            self.inner.coalesce_repeats(now)
        }
        fn deliveries(
            &self,
            filter: &crate::store::DeliveryFilter,
        ) -> Result<Vec<Delivery>, StoreError> {
            self.inner.deliveries(filter)
        }
        fn delivery(
            &self,
            id: i64,
        ) -> Result<Option<(Delivery, Vec<crate::store::AttemptLog>)>, StoreError> {
            self.inner.delivery(id)
        }
        fn delivery_id(&self, webhook_id: &str) -> Result<Option<i64>, StoreError> {
            self.inner.delivery_id(webhook_id)
        }
        fn requeue(&self, id: i64, now: OffsetDateTime) -> Result<Option<bool>, StoreError> {
            self.inner.requeue(id, now)
        }
        fn requeue_since(
            &self,
            since: OffsetDateTime,
            now: OffsetDateTime,
        ) -> Result<Vec<i64>, StoreError> {
            self.inner.requeue_since(since, now)
        }
        fn disable_destination(
            &self,
            name: &str,
            reason: &str,
            at: OffsetDateTime,
        ) -> Result<(), StoreError> {
            self.inner.disable_destination(name, reason, at)
        }
        fn enable_destination(&self, name: &str) -> Result<bool, StoreError> {
            self.inner.enable_destination(name)
        }
        fn enable_all_destinations(&self) -> Result<(), StoreError> {
            self.inner.enable_all_destinations()
        }
        fn disabled_destinations(
            &self,
        ) -> Result<Vec<crate::store::DisabledDestination>, StoreError> {
            self.inner.disabled_destinations()
        }
        fn slo_samples(&self) -> Result<Vec<SloSampleRecord>, StoreError> {
            self.inner.slo_samples()
        }
    }

    const RULES: &str = r#"
destination "pd" webhook { url "http://127.0.0.1:9/pd" }
severity SEV1 { page "pd" }
otherwise SEV1
group by instance wait 0s
"#;

    fn start(store: Arc<CountingStore>) -> Pipeline {
        start_with(store, RULES, Arc::new(SystemClock))
    }

    fn start_with(store: Arc<CountingStore>, rules: &str, clock: Arc<dyn Clock>) -> Pipeline {
        let mut sources = Sources::new();
        sources.add("t.sev", rules);
        let ruleset = load_sources_with_env(sources, EnvPolicy::Warn, &|_| None)
            .ruleset
            .unwrap();
        let (pipeline, _task) = Pipeline::start(
            store,
            Arc::new(ArcSwap::from_pointee(ruleset)),
            clock,
            PipelineSettings {
                max_batch: 512,
                max_wait: Duration::from_millis(2),
                tick: Duration::from_millis(50),
                slo_evaluation: Duration::from_secs(30),
                slo_hold_down: Duration::from_secs(300),
                public_url: "http://127.0.0.1:9797".into(),
            },
        )
        .unwrap();
        pipeline
    }

    fn alert(instance: usize) -> Alert {
        Alert {
            labels: [
                ("alertname".to_string(), "X".to_string()),
                ("instance".to_string(), instance.to_string()),
            ]
            .into_iter()
            .collect(),
            status: AlertStatus::Firing,
            ..Alert::default()
        }
    }

    /// Rows of each kind one commit wrote.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Shape {
        /// Incident rows (headers, or whole resolved incidents).
        headers: usize,
        /// Incident alerts written whole.
        whole_alerts: usize,
        /// Incident alerts written as a refresh (`AlertSeen`).
        seen_alerts: usize,
        /// Rows of the `alerts` table.
        alert_records: usize,
    }

    fn counting_store() -> Arc<CountingStore> {
        counting_store_on(SqliteStore::in_memory().unwrap())
    }

    fn counting_store_on(inner: SqliteStore) -> Arc<CountingStore> {
        Arc::new(CountingStore {
            inner,
            commits: AtomicUsize::new(0),
            fail: AtomicBool::new(false),
            alert_rows: Default::default(),
            shapes: Default::default(),
            held: AtomicBool::new(false),
            entered: AtomicBool::new(false),
            fail_once: AtomicBool::new(false),
            reads_held: AtomicBool::new(false),
            read_entered: AtomicBool::new(false),
            records_held: AtomicBool::new(false),
            recorded: Default::default(),
            flushes_held: Arc::new(AtomicBool::new(false)),
            flushes: Arc::new(AtomicUsize::new(0)),
            flushes_fail: Arc::new(AtomicBool::new(false)),
            panic_once: AtomicBool::new(false),
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_commits() {
        let store = counting_store();
        let pipeline = start(store.clone());
        let requests: Vec<_> = (0..40)
            .map(|i| {
                let p = pipeline.clone();
                tokio::spawn(async move { p.ingest(vec![alert(i)]).await })
            })
            .collect();
        for r in requests {
            let outcome = r.await.unwrap().unwrap();
            assert_eq!(outcome.routed, 1);
        }
        let commits = store.commits.load(Ordering::SeqCst);
        assert!(commits < 40 / 2, "40 requests took {commits} commits");
        // Every request's incident and page is in the store.
        assert_eq!(store.inner.active_incidents().unwrap().len(), 40);
        assert_eq!(
            store
                .inner
                .outbox_stats(OffsetDateTime::now_utc())
                .unwrap()
                .pending,
            40
        );
    }

    /// A loopback receiver that answers 200 and counts what it got.
    async fn counting_receiver() -> (String, Arc<AtomicUsize>) {
        let got = Arc::new(AtomicUsize::new(0));
        let counter = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, got)
    }

    /// A receiver that counts requests and answers none while `held` is
    /// set.
    async fn holding_receiver() -> (String, Arc<AtomicUsize>, Arc<AtomicBool>) {
        let got = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(AtomicBool::new(false));
        let (counter, hold) = (got.clone(), held.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                let (counter, hold) = (counter.clone(), hold.clone());
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    while hold.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, got, held)
    }

    /// A pipeline and a delivery worker taking its early pages, paging
    /// the receiver at `url`; the worker stops when the sender drops.
    fn start_with_worker(
        store: Arc<CountingStore>,
        url: &str,
    ) -> (Pipeline, tokio::sync::watch::Sender<bool>) {
        start_with_worker_polling(
            store,
            url,
            "",
            Duration::from_millis(50),
            Arc::new(SystemClock),
        )
    }

    /// A clock running ahead of the system's by a fixed amount.
    struct AheadClock(time::Duration);

    impl Clock for AheadClock {
        fn now(&self) -> OffsetDateTime {
            OffsetDateTime::now_utc() + self.0
        }
    }

    /// As [`start_with_worker`], with destination settings and the
    /// worker's longest sleep between looks at the outbox.
    fn start_with_worker_polling(
        store: Arc<CountingStore>,
        url: &str,
        settings: &str,
        poll: Duration,
        worker_clock: Arc<dyn Clock>,
    ) -> (Pipeline, tokio::sync::watch::Sender<bool>) {
        use crate::deliver::backoff::RetryPolicy;
        use crate::deliver::isolation::Horizon;
        use crate::deliver::sender::WebhookSender;
        use crate::deliver::worker::{Worker, WorkerSettings};
        let rules = format!(
            "destination \"pd\" webhook {{ url \"{url}\" {settings} }}\n\
             severity SEV1 {{ page \"pd\" }}\notherwise SEV1\ngroup by instance wait 0s\n"
        );
        let pipeline = start_with(store.clone(), &rules, Arc::new(SystemClock));
        let worker = Worker {
            store,
            ruleset: pipeline.ruleset.clone(),
            sender: WebhookSender::new(RetryPolicy::default()).unwrap(),
            policy: RetryPolicy::default(),
            metrics: Arc::new(crate::metrics::Metrics::new()),
            clock: worker_clock,
            ready: pipeline.deliveries_ready.clone(),
            early: pipeline.early_pages(),
            settings: WorkerSettings {
                concurrency: 8,
                request_timeout: Duration::from_secs(5),
                poll,
                horizon: Horizon {
                    page_attempts: 3,
                    page_age: Duration::from_secs(120),
                    notify_attempts: 10,
                    notify_age: Duration::from_secs(3600),
                },
                min_penalty: Duration::from_secs(1),
                destination_concurrency: 4,
                breaker_failures: 5,
                breaker_cooldown: Duration::from_secs(30),
            },
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(worker.run(stopped));
        (pipeline, stop)
    }

    /// Waits (at most 5 s) until the incident's first delivery has `status`.
    async fn until_row(store: &CountingStore, incident: i64, status: DeliveryStatus) {
        until(&format!("the row {status:?}"), || {
            store.inner.deliveries_for(incident).unwrap()[0].status == status
        })
        .await;
    }

    /// Waits (at most 5 s) until `done` holds.
    async fn until(what: &str, done: impl Fn() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    type IngestTask = tokio::task::JoinHandle<Result<IngestOutcome, PipelineError>>;

    /// Ingests alert 1, holds its commit, ingests alerts 2 to `last` one
    /// at a time (20 ms apart) while it is held, then lets it go; the
    /// first request and the later ones.
    async fn during_a_held_commit(
        store: &CountingStore,
        pipeline: &Pipeline,
        last: usize,
    ) -> (IngestTask, Vec<IngestTask>) {
        store.held.store(true, Ordering::SeqCst);
        let ingest = |instance| {
            let p = pipeline.clone();
            tokio::spawn(async move { p.ingest(vec![alert(instance)]).await })
        };
        let first = ingest(1);
        until("the first commit", || store.entered.load(Ordering::SeqCst)).await;
        let mut later = Vec::new();
        for instance in 2..=last {
            later.push(ingest(instance));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        store.held.store(false, Ordering::SeqCst);
        (first, later)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_arriving_during_a_commit_are_routed_at_once_and_committed_together() {
        let store = counting_store();
        let pipeline = start(store.clone());
        // Three more while the first commit is held: each is routed as it
        // comes, into the batch after it.
        let (first, later) = during_a_held_commit(&store, &pipeline, 4).await;
        assert_eq!(first.await.unwrap().unwrap().routed, 1);
        for request in later {
            assert_eq!(request.await.unwrap().unwrap().routed, 1);
        }
        // The three that came during the first commit share the second
        // (routed one batch at a time, they would take two more). Timer
        // wake-ups may commit empty batches around them.
        let written: Vec<usize> = store
            .alert_rows
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|&rows| rows > 0)
            .collect();
        assert_eq!(written, vec![1, 3]);
        let incidents = store.inner.active_incidents().unwrap();
        assert_eq!(incidents.iter().map(|i| i.alerts.len()).sum::<usize>(), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_is_answered_once_its_commit_is_flushed_and_the_next_commit_does_not_wait_for_it()
     {
        let store = counting_store();
        let pipeline = start(store.clone());
        store.flushes_held.store(true, Ordering::SeqCst);
        let ingest = |instance| {
            let p = pipeline.clone();
            tokio::spawn(async move { p.ingest(vec![alert(instance)]).await })
        };
        let first = ingest(1);
        until("the first commit", || {
            store.commits.load(Ordering::SeqCst) == 1
        })
        .await;
        // Committed (readable) but not flushed: not answered yet.
        assert_eq!(store.inner.active_incidents().unwrap().len(), 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!first.is_finished(), "answered before its flush");
        // The next request is committed while the first flush waits.
        let second = ingest(2);
        until("the second commit", || {
            store.commits.load(Ordering::SeqCst) == 2
        })
        .await;
        assert!(!first.is_finished() && !second.is_finished());
        assert_eq!(store.flushes.load(Ordering::SeqCst), 0);
        store.flushes_held.store(false, Ordering::SeqCst);
        assert_eq!(first.await.unwrap().unwrap().routed, 1);
        assert_eq!(second.await.unwrap().unwrap().routed, 1);
        assert!(store.flushes.load(Ordering::SeqCst) >= 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_sync_refuses_its_requests_and_every_later_one_and_stops_the_router() {
        let store = counting_store();
        let pipeline = start(store.clone());
        pipeline.ingest(vec![alert(1)]).await.unwrap();
        store.flushes_fail.store(true, Ordering::SeqCst);
        let refused = pipeline.ingest(vec![alert(2)]).await;
        assert!(
            matches!(&refused, Err(PipelineError::Store(e)) if e.to_string().contains("I/O error")),
            "{refused:?}"
        );
        // A later sync that would succeed proves nothing: no more writes.
        store.flushes_fail.store(false, Ordering::SeqCst);
        until("the router to stop", || !pipeline.is_running()).await;
        assert!(pipeline.ingest(vec![alert(3)]).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_that_panics_in_a_commit_refuses_that_batch_and_stops_the_router() {
        let store = counting_store();
        let pipeline = start(store.clone());
        pipeline.ingest(vec![alert(1)]).await.unwrap();
        store.panic_once.store(true, Ordering::SeqCst);
        let refused = pipeline.ingest(vec![alert(2)]).await;
        assert!(
            matches!(&refused, Err(PipelineError::Store(e)) if e.to_string().contains("panicked")),
            "{refused:?}"
        );
        // What the panic left of the store is unknown: nothing more is
        // written, and the first batch stays as it was.
        until("the router to stop", || !pipeline.is_running()).await;
        assert!(pipeline.ingest(vec![alert(3)]).await.is_err());
        assert_eq!(store.inner.active_incidents().unwrap().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_store_holds_the_router_back_after_its_parts_in_flight() {
        let store = counting_store();
        let pipeline = start(store.clone());
        store.held.store(true, Ordering::SeqCst);
        // One request at a time, each routed into a part of its own (two
        // that meet in the queue share one): twice as many as may wait for
        // their answers.
        let mut requests = Vec::new();
        for instance in 0..2 * committer::PARTS_IN_FLIGHT {
            let p = pipeline.clone();
            requests.push(tokio::spawn(async move {
                p.ingest(vec![alert(instance)]).await
            }));
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        // The router waits for a place, so it answers nothing else either.
        let status = {
            let p = pipeline.clone();
            tokio::spawn(async move { p.slo_status(None).await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !status.is_finished(),
            "the router ran ahead of a stalled store"
        );
        store.held.store(false, Ordering::SeqCst);
        status.await.unwrap().unwrap();
        for request in requests {
            assert_eq!(request.await.unwrap().unwrap().routed, 1);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_that_fails_refuses_every_part_routed_while_it_ran() {
        let store = counting_store();
        let pipeline = start(store.clone());
        store.fail_once.store(true, Ordering::SeqCst);
        let (first, later) = during_a_held_commit(&store, &pipeline, 3).await;
        assert!(first.await.unwrap().is_err());
        for request in later {
            assert!(request.await.unwrap().is_err(), "a part on refused state");
        }
        assert!(store.inner.active_incidents().unwrap().is_empty());
        // Nothing of them is left in memory: sent again, they open their
        // incidents anew, and the store gets all three.
        for instance in 1..=3 {
            pipeline.ingest(vec![alert(instance)]).await.unwrap();
        }
        assert_eq!(store.inner.active_incidents().unwrap().len(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_first_page_goes_out_during_its_commit_and_is_recorded_once_after_it() {
        let (url, got) = counting_receiver().await;
        let store = counting_store();
        let (pipeline, _stop) = start_with_worker(store.clone(), &url);
        store.held.store(true, Ordering::SeqCst);
        let request = {
            let p = pipeline.clone();
            tokio::spawn(async move { p.ingest(vec![alert(1)]).await })
        };
        // The page reaches the receiver while its commit is still held.
        until("the page", || got.load(Ordering::SeqCst) == 1).await;
        assert!(store.held.load(Ordering::SeqCst));
        assert!(!request.is_finished(), "answered before the commit");
        store.held.store(false, Ordering::SeqCst);
        assert_eq!(request.await.unwrap().unwrap().routed, 1);
        // Recorded on its outbox row once committed: delivered, one attempt.
        let incident = store.inner.active_incidents().unwrap()[0].id;
        until_row(&store, incident, DeliveryStatus::Delivered).await;
        let row = &store.inner.deliveries_for(incident).unwrap()[0];
        assert_eq!(row.attempts, 1);
        // The outbox never sends it a second time.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(got.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_pages_goes_out_while_attempts_wait_to_be_recorded_and_they_share_transactions()
     {
        let (url, got) = counting_receiver().await;
        let store = counting_store();
        // Recording is held: a delivery waiting for it must not hold one
        // of the worker's 8 slots, or the 30 pages would stop at 8.
        store.records_held.store(true, Ordering::SeqCst);
        let (pipeline, _stop) = start_with_worker(store.clone(), &url);
        let outcome = pipeline
            .ingest((1..=30).map(alert).collect())
            .await
            .unwrap();
        assert_eq!(outcome.routed, 30);
        for _ in 0..500 {
            if got.load(Ordering::SeqCst) == 30 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Let go before asserting: a held recording would keep the
        // runtime from shutting down after a failure.
        let sent = got.load(Ordering::SeqCst);
        let recorded_while_held = store.recorded.lock().unwrap().len();
        store.records_held.store(false, Ordering::SeqCst);
        assert_eq!(sent, 30, "pages sent while recording was held");
        assert_eq!(recorded_while_held, 0);
        let incidents = store.inner.active_incidents().unwrap();
        assert_eq!(incidents.len(), 30);
        for incident in &incidents {
            until_row(&store, incident.id, DeliveryStatus::Delivered).await;
            assert_eq!(
                store.inner.deliveries_for(incident.id).unwrap()[0].attempts,
                1
            );
        }
        // Attempts that ended while a group was held went in together.
        let recorded = store.recorded.lock().unwrap().clone();
        assert_eq!(recorded.iter().sum::<usize>(), 30);
        assert!(
            recorded.len() <= 10,
            "one transaction per few attempts: {recorded:?}"
        );
        // Rows waiting to be recorded were never handed out again.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(got.load(Ordering::SeqCst), 30, "paged twice");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_page_left_waiting_for_its_destinations_gate_goes_when_the_send_before_it_ends() {
        let (url, got, held) = holding_receiver().await;
        let store = counting_store();
        // One request at a time to the destination, and a poll too long
        // to wait for: only the end of the first send can start the second.
        let (pipeline, _stop) = start_with_worker_polling(
            store.clone(),
            &url,
            "concurrency 1",
            Duration::from_secs(30),
            Arc::new(SystemClock),
        );
        held.store(true, Ordering::SeqCst);
        pipeline.ingest(vec![alert(1), alert(2)]).await.unwrap();
        until("the first page", || got.load(Ordering::SeqCst) == 1).await;
        // The second page's row is committed, and the look at the outbox
        // its commit asked for finds it held by the gate.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(got.load(Ordering::SeqCst), 1);
        held.store(false, Ordering::SeqCst);
        until("the second page", || got.load(Ordering::SeqCst) == 2).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_outbox_read_that_sees_an_early_pages_row_leaves_it_to_the_early_send() {
        let (url, got) = counting_receiver().await;
        let store = counting_store();
        // The worker's first look at the outbox waits at the gate while
        // a page is routed, handed over and committed. (Its clock runs an
        // hour ahead, so a row committed after it read the time is due.)
        store.reads_held.store(true, Ordering::SeqCst);
        let (pipeline, _stop) = start_with_worker_polling(
            store.clone(),
            &url,
            "",
            Duration::from_millis(50),
            Arc::new(AheadClock(time::Duration::HOUR)),
        );
        until("the outbox read", || {
            store.read_entered.load(Ordering::SeqCst)
        })
        .await;
        pipeline.ingest(vec![alert(1)]).await.unwrap();
        // The read now sees the committed row while the early page is
        // still in the channel.
        store.reads_held.store(false, Ordering::SeqCst);
        until("the page", || got.load(Ordering::SeqCst) >= 1).await;
        let incident = store.inner.active_incidents().unwrap()[0].id;
        until_row(&store, incident, DeliveryStatus::Delivered).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(got.load(Ordering::SeqCst), 1, "paged twice");
        assert_eq!(store.inner.deliveries_for(incident).unwrap()[0].attempts, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_first_page_to_a_destination_disabled_before_the_start_is_not_sent_early() {
        let (url, got) = counting_receiver().await;
        let store = counting_store();
        store
            .inner
            .disable_destination("pd", "the receiver answered 410", OffsetDateTime::now_utc())
            .unwrap();
        // The page reaches the worker before its first outbox read ends
        // (that read is held), so only what the worker knew at its start
        // can keep it from going out early.
        store.reads_held.store(true, Ordering::SeqCst);
        let (pipeline, _stop) = start_with_worker(store.clone(), &url);
        until("the outbox read", || {
            store.read_entered.load(Ordering::SeqCst)
        })
        .await;
        pipeline.ingest(vec![alert(1)]).await.unwrap();
        store.reads_held.store(false, Ordering::SeqCst);
        // The outbox path takes it: no fallback, so a dead letter.
        let incident = store.inner.active_incidents().unwrap()[0].id;
        until_row(&store, incident, DeliveryStatus::Dead).await;
        assert_eq!(
            got.load(Ordering::SeqCst),
            0,
            "sent to a disabled destination"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_first_page_its_gate_holds_back_goes_through_the_outbox_without_waiting_for_a_poll() {
        let (url, got) = counting_receiver().await;
        let store = counting_store();
        // One page a second, and a worker that on its own would look at
        // the outbox only every 30 s.
        let (pipeline, _stop) = start_with_worker_polling(
            store.clone(),
            &url,
            "rate 1 burst 1",
            Duration::from_secs(30),
            Arc::new(SystemClock),
        );
        // The first page takes the one token; it is sent and recorded.
        pipeline.ingest(vec![alert(1)]).await.unwrap();
        until("the first page", || got.load(Ordering::SeqCst) == 1).await;
        let first = store.inner.active_incidents().unwrap()[0].id;
        until_row(&store, first, DeliveryStatus::Delivered).await;
        // The second comes while the gate has no token: it is left to the
        // outbox, whose row is committed after the worker went back to
        // sleep, with nothing else in flight to wake it.
        store.held.store(true, Ordering::SeqCst);
        let request = {
            let p = pipeline.clone();
            tokio::spawn(async move { p.ingest(vec![alert(2)]).await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(got.load(Ordering::SeqCst), 1, "sent past its rate");
        store.held.store(false, Ordering::SeqCst);
        request.await.unwrap().unwrap();
        // It goes once the rate allows (1 s), not at the next poll.
        until("the second page", || got.load(Ordering::SeqCst) == 2).await;
        for incident in store.inner.active_incidents().unwrap() {
            until_row(&store, incident.id, DeliveryStatus::Delivered).await;
        }
        assert_eq!(got.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_page_sent_before_a_refused_commit_leaves_no_row_and_the_retry_pages_again() {
        let (url, got) = counting_receiver().await;
        let store = counting_store();
        let (pipeline, _stop) = start_with_worker(store.clone(), &url);
        store.fail_once.store(true, Ordering::SeqCst);
        store.held.store(true, Ordering::SeqCst);
        let request = {
            let p = pipeline.clone();
            tokio::spawn(async move { p.ingest(vec![alert(1)]).await })
        };
        until("the page", || got.load(Ordering::SeqCst) == 1).await;
        store.held.store(false, Ordering::SeqCst);
        let refused = request.await.unwrap();
        assert!(
            matches!(refused, Err(PipelineError::Store(_))),
            "{refused:?}"
        );
        assert!(store.inner.active_incidents().unwrap().is_empty());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(got.load(Ordering::SeqCst), 1, "sent again without a row");
        // The sender, refused, posts again: at least once, a second page.
        pipeline.ingest(vec![alert(1)]).await.unwrap();
        until("the second page", || got.load(Ordering::SeqCst) == 2).await;
        let incident = store.inner.active_incidents().unwrap()[0].id;
        until_row(&store, incident, DeliveryStatus::Delivered).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_routed_during_a_failing_commit_is_refused_too() {
        let store = counting_store();
        let pipeline = start(store.clone());
        store.fail_once.store(true, Ordering::SeqCst);
        store.held.store(true, Ordering::SeqCst);
        let first = {
            let p = pipeline.clone();
            tokio::spawn(async move { p.ingest(vec![alert(1)]).await })
        };
        // The first batch's commit is held; the second is routed meanwhile,
        // on top of the first's state.
        while !store.entered.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let second = {
            let p = pipeline.clone();
            tokio::spawn(async move { p.ingest(vec![alert(2)]).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        store.held.store(false, Ordering::SeqCst);
        let first = first.await.unwrap();
        let second = second.await.unwrap();
        assert!(matches!(first, Err(PipelineError::Store(_))), "{first:?}");
        assert!(matches!(second, Err(PipelineError::Store(_))), "{second:?}");
        assert!(store.inner.active_incidents().unwrap().is_empty());
        // Nothing of either stayed in memory: both open afresh, each paged.
        pipeline.ingest(vec![alert(1), alert(2)]).await.unwrap();
        let active = store.inner.active_incidents().unwrap();
        assert_eq!(active.len(), 2);
        for incident in &active {
            assert_eq!(store.inner.deliveries_for(incident.id).unwrap().len(), 1);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refresh_writes_only_the_refreshed_alert_and_nothing_is_lost() {
        let store = counting_store();
        let pipeline = start(store.clone());
        let member = |n: &str| {
            let mut a = alert(1);
            a.labels.insert("n", n);
            a
        };
        // Three alerts of one group: one incident, opened and paged.
        pipeline
            .ingest(vec![member("a"), member("b"), member("c")])
            .await
            .unwrap();
        let before = store.inner.active_incidents().unwrap();
        assert_eq!(before.len(), 1);
        assert_eq!(before[0].alerts.len(), 3);
        // A refresh of one of them writes that alert and no other.
        let mut refreshed = member("b");
        refreshed.annotations.insert("summary", "still bad");
        pipeline.ingest(vec![refreshed]).await.unwrap();
        assert_eq!(store.alert_rows.lock().unwrap().last(), Some(&1));
        // What a restart reads back is what the router holds.
        let after = store.inner.active_incidents().unwrap();
        assert_eq!(after[0].alerts.len(), 3);
        let b = after[0]
            .alerts
            .values()
            .find(|a| a.alert.label("n") == "b")
            .unwrap();
        assert_eq!(b.alert.annotation("summary"), "still bad");
        assert_eq!(after[0].id, before[0].id);
        assert_eq!(after[0].status, IncidentStatus::Open);
        assert!(after[0].alerts.values().all(|a| a.announced));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_alert_after_a_resolve_in_the_same_batch_opens_a_new_incident() {
        let store = counting_store();
        let pipeline = start(store.clone());
        pipeline.ingest(vec![alert(1)]).await.unwrap();
        // One batch: the open incident's alert resolves, then a new alert
        // of the same group fires. It must not vanish into the resolved one.
        let mut resolved = alert(1);
        resolved.status = AlertStatus::Resolved;
        let mut again = alert(1);
        again.labels.insert("extra", "x");
        let outcome = pipeline.ingest(vec![resolved, again]).await.unwrap();
        assert_eq!(outcome.routed, 2);
        let active = store.inner.active_incidents().unwrap();
        assert_eq!(active.len(), 1, "the new alert opened its own incident");
        assert_eq!(active[0].id, 2);
        assert_eq!(store.inner.deliveries_for(2).unwrap().len(), 1, "and paged");
        let (first, _) = store.inner.incident(1).unwrap().unwrap();
        assert_eq!(first.status, crate::route::IncidentStatus::Resolved);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_commit_refuses_the_request_and_keeps_nothing() {
        let store = counting_store();
        let pipeline = start(store.clone());
        store.fail.store(true, Ordering::SeqCst);
        let err = pipeline.ingest(vec![alert(1)]).await.unwrap_err();
        assert!(matches!(err, PipelineError::Store(_)), "{err}");
        // Once the store recovers, the same alert opens its incident (the
        // refused one left no state behind).
        store.fail.store(false, Ordering::SeqCst);
        pipeline.ingest(vec![alert(1)]).await.unwrap();
        let active = store.inner.active_incidents().unwrap();
        assert_eq!(active.len(), 1);
        assert_eq!(store.inner.deliveries_for(active[0].id).unwrap().len(), 1);
    }

    const NOTHING: Shape = Shape {
        headers: 0,
        whole_alerts: 0,
        seen_alerts: 0,
        alert_records: 0,
    };

    /// What the last commit that wrote anything wrote (the router also
    /// commits empty batches when it wakes for timers).
    fn last_shape(store: &CountingStore) -> Shape {
        store
            .shapes
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|s| **s != NOTHING)
            .copied()
            .unwrap_or(NOTHING)
    }

    /// Alert `n` of one group (instance 1), ending at `ends_at`.
    fn member(n: &str, ends_at: OffsetDateTime) -> Alert {
        let mut a = alert(1);
        a.labels.insert("n", n);
        a.ends_at = Some(ends_at);
        a
    }

    fn tracked<'a>(incident: &'a Incident, n: &str) -> &'a route::TrackedAlert {
        incident
            .alerts
            .values()
            .find(|a| a.alert.label("n") == n)
            .unwrap()
    }

    const T: OffsetDateTime = time::macros::datetime!(2026-11-27 12:00 UTC);

    fn minutes(m: i64) -> OffsetDateTime {
        T + time::Duration::minutes(m)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_plain_refresh_writes_one_alert_seen_and_no_header_and_a_restart_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sevroute.db");
        let clock = Arc::new(ManualClock(std::sync::Mutex::new(T)));
        let store = counting_store_on(SqliteStore::open(&path).unwrap());
        let pipeline = start_with(store.clone(), RULES, clock.clone());
        pipeline
            .ingest(vec![
                member("a", minutes(60)),
                member("b", minutes(120)),
                member("c", minutes(180)),
            ])
            .await
            .unwrap();
        let opened = last_shape(&store);
        assert_eq!((opened.headers, opened.whole_alerts), (1, 3), "{opened:?}");
        assert_eq!(opened.alert_records, 0, "held alerts get no alerts row");

        // b again, later, ending later; a still expires first, so the
        // incident's next timer does not move.
        clock.set(minutes(1));
        pipeline
            .ingest(vec![member("b", minutes(150))])
            .await
            .unwrap();
        assert_eq!(
            last_shape(&store),
            Shape {
                headers: 0,
                whole_alerts: 0,
                seen_alerts: 1,
                alert_records: 0
            }
        );

        // A restart: another store on the same file, another router.
        drop(pipeline);
        let store = counting_store_on(SqliteStore::open(&path).unwrap());
        let pipeline = start_with(store.clone(), RULES, clock.clone());
        let active = store.inner.active_incidents().unwrap();
        assert_eq!(active.len(), 1);
        let b = tracked(&active[0], "b");
        assert_eq!(b.last_seen, minutes(1));
        assert_eq!(b.alert.ends_at, Some(minutes(150)));
        assert_eq!(tracked(&active[0], "a").last_seen, T);
        assert!(active[0].alerts.values().all(|a| a.announced));

        // The restarted router knows b as refreshed too: refreshing a (the
        // earliest expiry) moves the incident's timer later, to b's new
        // end. Nothing loaded is written back, nor the header: the timer
        // index keeps a's old end as a lower bound.
        clock.set(minutes(2));
        pipeline
            .ingest(vec![member("a", minutes(170))])
            .await
            .unwrap();
        assert_eq!(
            last_shape(&store),
            Shape {
                seen_alerts: 1,
                ..NOTHING
            }
        );
        let active = store.inner.active_incidents().unwrap();
        assert_eq!(active[0].next_due(), Some(minutes(150)));
        let a = tracked(&active[0], "a");
        assert_eq!(
            (a.last_seen, a.alert.ends_at),
            (minutes(2), Some(minutes(170)))
        );

        // At a's old end the router wakes, finds nothing due (a was
        // refreshed: it does not expire), and writes the header alone.
        clock.set(minutes(60));
        eventually(&store, "the early tick writes the header", |_| {
            last_shape(&store).headers == 1
        })
        .await;
        assert_eq!(
            last_shape(&store),
            Shape {
                headers: 1,
                ..NOTHING
            }
        );
        let active = store.inner.active_incidents().unwrap();
        assert!(active[0].alerts.values().all(|a| a.is_firing()));

        // A timer that moves earlier is written at once: a refresh that
        // brings c's end before every other.
        clock.set(minutes(61));
        pipeline
            .ingest(vec![member("c", minutes(90))])
            .await
            .unwrap();
        assert_eq!(
            last_shape(&store),
            Shape {
                headers: 1,
                seen_alerts: 1,
                ..NOTHING
            }
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_status_change_writes_the_whole_alert_and_an_unheld_alert_its_alerts_row() {
        let clock = Arc::new(ManualClock(std::sync::Mutex::new(T)));
        let store = counting_store();
        let pipeline = start_with(store.clone(), RULES, clock.clone());
        pipeline
            .ingest(vec![member("a", minutes(60)), member("b", minutes(120))])
            .await
            .unwrap();
        clock.set(minutes(1));
        let mut resolved = member("b", minutes(1));
        resolved.status = AlertStatus::Resolved;
        pipeline.ingest(vec![resolved]).await.unwrap();
        // The alert, whole; the header, because its expiry left the
        // incident's timers (a resolved alert does not expire).
        let shape = last_shape(&store);
        assert_eq!((shape.whole_alerts, shape.seen_alerts), (1, 0), "{shape:?}");
        let active = store.inner.active_incidents().unwrap();
        assert_eq!(tracked(&active[0], "b").alert.status, AlertStatus::Resolved);
        assert_eq!(active[0].status, IncidentStatus::Open, "a still fires");

        // A resolve no incident holds: only its alerts row.
        let mut stray = alert(2);
        stray.status = AlertStatus::Resolved;
        let outcome = pipeline.ingest(vec![stray]).await.unwrap();
        assert_eq!(outcome.unrouted, 1);
        assert_eq!(
            last_shape(&store),
            Shape {
                headers: 0,
                whole_alerts: 0,
                seen_alerts: 0,
                alert_records: 1
            }
        );
    }

    /// A clock the test sets by hand.
    struct ManualClock(std::sync::Mutex<OffsetDateTime>);

    impl ManualClock {
        fn set(&self, at: OffsetDateTime) {
            *self.0.lock().unwrap() = at;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> OffsetDateTime {
            *self.0.lock().unwrap()
        }
    }

    const SLO_RULES: &str = r#"
slo "api" { objective 99%; period 30d }
destination "pd" webhook { url "http://127.0.0.1:9/pd" }
destination "chat" webhook { url "http://127.0.0.1:9/chat" }
severity SEV1 { page "pd" }
severity SEV2 { notify "chat" }
rule "api fast burn" { when burn("api", 1h) > 14.4 and burn("api", 5m) > 14.4 then SEV1 }
rule "api slow burn" { when burn("api", 1h) > 2 then SEV2 }
rule "x" { when labels.alertname == "X" then SEV2 }
group by instance wait 0s
"#;

    /// Waits (real time, bounded) until the router has made the store
    /// satisfy `done`.
    async fn eventually(store: &CountingStore, what: &str, done: impl Fn(&SqliteStore) -> bool) {
        for _ in 0..100 {
            if done(&store.inner) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out waiting until {what}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_slo_rule_opens_escalates_and_after_the_hold_down_resolves_its_own_incident() {
        use crate::route::IncidentStatus;
        let t0 = time::macros::datetime!(2026-11-27 12:00 UTC);
        let clock = Arc::new(ManualClock(std::sync::Mutex::new(t0)));
        let store = counting_store();
        let pipeline = start_with(store.clone(), SLO_RULES, clock.clone());
        let at = |t: OffsetDateTime| Some(t.unix_timestamp());
        // Samples arrive as their interval ends.
        let push = |t: OffsetDateTime, good: f64, total: f64| {
            let p = pipeline.clone();
            clock.set(t);
            async move {
                p.record_slo("api".into(), at(t), SloSample::Interval { good, total })
                    .await
                    .unwrap();
            }
        };

        // 5% errors for a minute: burn 5 against a 1% budget. The slow-burn
        // rule holds, the fast-burn one does not: SEV2 notifies.
        push(t0, 95_000.0, 100_000.0).await;
        clock.set(t0 + time::Duration::seconds(30));
        eventually(&store, "the SLO opens its incident", |s| {
            s.active_incidents()
                .unwrap()
                .first()
                .and_then(|i| i.severity)
                == Some(Severity::Sev2)
        })
        .await;
        let incident = store.inner.active_incidents().unwrap().remove(0);
        assert_eq!(incident.key, r#"{slo="api"}"#);
        assert_eq!(incident.title, "SLO api burning its error budget");
        // A plain alert is not classified by SLO rules: it joins nothing.
        let outcome = pipeline.ingest(vec![alert(1)]).await.unwrap();
        assert_eq!(
            outcome.by_severity,
            [0, 1, 0],
            "X is SEV2 by its own rule only"
        );
        assert_eq!(store.inner.active_incidents().unwrap().len(), 2);

        // A minute of total failure at ten times the volume: both windows
        // above 14.4, the SLO's incident escalates to SEV1 and pages.
        let t1 = t0 + time::Duration::minutes(1);
        push(t1, 0.0, 1_000_000.0).await;
        clock.set(t1 + time::Duration::seconds(30));
        eventually(&store, "the SLO incident escalates", |s| {
            s.incident(incident.id).unwrap().unwrap().0.severity == Some(Severity::Sev1)
        })
        .await;
        let kinds = |s: &SqliteStore| -> Vec<&'static str> {
            s.deliveries_for(incident.id)
                .unwrap()
                .iter()
                .map(|d| d.kind.as_str())
                .collect()
        };
        assert_eq!(kinds(&store.inner), vec!["notify", "page"]);
        // That minute spent far more than a fifth of the month's budget.
        let (escalated, timeline) = store.inner.incident(incident.id).unwrap().unwrap();
        assert!(escalated.slo_budgets["api"].over_threshold);
        assert!(
            timeline.iter().any(|e| e.text.starts_with("consumed ")
                && e.text.contains("of SLO api's 30d error budget")),
            "{timeline:#?}"
        );

        // Recovery: a flood of good traffic brings both windows under 2.
        // The rules last held at t1 (the evaluation the sample woke), so
        // the incident stays open, at its severity, until t1 + 300 s.
        let t2 = t1 + time::Duration::minutes(1);
        push(t2, 1e9, 1e9).await;
        clock.set(t2 + time::Duration::seconds(1));
        tokio::time::sleep(Duration::from_millis(200)).await;
        clock.set(t1 + time::Duration::seconds(299));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (open, timeline) = store.inner.incident(incident.id).unwrap().unwrap();
        assert_eq!(open.status, IncidentStatus::Open, "{timeline:#?}");
        assert_eq!(open.severity, Some(Severity::Sev1));

        // At the first evaluation past the hold-down (they run every 30 s)
        // it resolves, and the page is closed.
        clock.set(t1 + time::Duration::seconds(299 + 30));
        eventually(&store, "the SLO incident resolves", |s| {
            s.incident(incident.id).unwrap().unwrap().0.status == IncidentStatus::Resolved
        })
        .await;
        assert_eq!(kinds(&store.inner), vec!["notify", "page", "resolve"]);

        // The next burn opens a new incident, not the resolved one.
        let t3 = t1 + time::Duration::minutes(10);
        push(t3, 0.0, 1e10).await;
        clock.set(t3 + time::Duration::seconds(30));
        eventually(&store, "a new burn opens a new incident", |s| {
            s.active_incidents()
                .unwrap()
                .iter()
                .any(|i| i.key == incident.key && i.id != incident.id)
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_slo_incident_whose_rule_a_reload_removed_resolves() {
        use crate::route::IncidentStatus;
        let t0 = time::macros::datetime!(2026-11-27 12:00 UTC);
        let clock = Arc::new(ManualClock(std::sync::Mutex::new(t0)));
        let store = counting_store();
        let pipeline = start_with(store.clone(), SLO_RULES, clock.clone());
        pipeline
            .record_slo(
                "api".into(),
                Some(t0.unix_timestamp()),
                SloSample::Interval {
                    good: 0.0,
                    total: 1e6,
                },
            )
            .await
            .unwrap();
        clock.set(t0 + time::Duration::seconds(30));
        eventually(&store, "the SLO opens its incident", |s| {
            s.active_incidents().unwrap().len() == 1
        })
        .await;
        let id = store.inner.active_incidents().unwrap()[0].id;
        // The SLO rules go; the burn stays. Nothing would ever resolve
        // the SLO's alert, so the next evaluation does, without a hold-down.
        let without: String = SLO_RULES
            .lines()
            .filter(|l| !l.contains("burn(\"api\""))
            .collect::<Vec<_>>()
            .join("\n");
        let mut sources = Sources::new();
        sources.add("t.sev", without);
        let reloaded = load_sources_with_env(sources, EnvPolicy::Warn, &|_| None)
            .ruleset
            .unwrap();
        assert_eq!(reloaded.slo_rules().count(), 0);
        pipeline.ruleset.store(Arc::new(reloaded));
        clock.set(t0 + time::Duration::seconds(60));
        eventually(&store, "the orphaned SLO incident resolves", |s| {
            s.incident(id).unwrap().unwrap().0.status == IncidentStatus::Resolved
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pyrra_alert_sets_the_burn_its_own_batch_is_classified_with_until_it_resolves() {
        let rules = r#"
slo "api" { objective 99.9%; period 28d; source alerts }
destination "pd" webhook { url "http://127.0.0.1:9/pd" }
severity SEV1 { page "pd" }
severity SEV3 { page "pd" }
rule "api fast burn" { when labels.slo == "api" and burn("api", 1h) > 14 and burn("api", 5m) > 14 then SEV1 }
otherwise SEV3
group by alertname wait 0s
"#;
        let store = counting_store();
        let pipeline = start_with(store.clone(), rules, Arc::new(SystemClock));
        let labelled = |pairs: &[(&str, &str)], status| Alert {
            labels: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            status,
            ..Alert::default()
        };
        // Pyrra's fastest tier on a 4-week SLO: burn above 28d / 2d = 14.
        let burning = [
            ("alertname", "ErrorBudgetBurn"),
            ("slo", "api"),
            ("long", "1h"),
            ("short", "5m"),
            ("exhaustion", "2d"),
        ];
        let out = pipeline
            .ingest(vec![labelled(&burning, AlertStatus::Firing)])
            .await
            .unwrap();
        assert_eq!(out.by_severity, [1, 0, 0], "classified with its own floor");
        let status = pipeline.slo_status(Some("api".into())).await.unwrap();
        assert_eq!(status[0].source, "alerts");
        assert_eq!(
            status[0].burn_floors,
            vec![
                crate::slo::BurnFloor {
                    window_secs: 300,
                    above: 14.0
                },
                crate::slo::BurnFloor {
                    window_secs: 3600,
                    above: 14.0
                }
            ]
        );
        // A slower tier (exhaustion 1w: above 4) does not reach 14.
        let mut slow = burning;
        slow[0].1 = "ErrorBudgetBurnSlow";
        slow[4].1 = "1w";
        slow[2].1 = "6h";
        slow[3].1 = "30m";
        let other = [("alertname", "Latency"), ("slo", "api")];
        let out = pipeline
            .ingest(vec![
                labelled(&burning, AlertStatus::Resolved),
                labelled(&slow, AlertStatus::Firing),
                labelled(&other, AlertStatus::Firing),
            ])
            .await
            .unwrap();
        // The fast alert resolved in the same batch: its floor is gone
        // before anything of the batch is classified.
        assert_eq!(out.by_severity, [0, 0, 3]);
        let status = pipeline.slo_status(Some("api".into())).await.unwrap();
        let floors: Vec<(u64, f64)> = status[0]
            .burn_floors
            .iter()
            .map(|f| (f.window_secs, f.above))
            .collect();
        assert_eq!(floors, vec![(1_800, 4.0), (21_600, 4.0)], "the slow tier's");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pushed_sample_counts_only_once_committed() {
        let rules = slo_rules("1d");
        let store = counting_store();
        let pipeline = start_with(store.clone(), &rules, Arc::new(SystemClock));
        let interval = SloSample::Interval {
            good: 90.0,
            total: 100.0,
        };
        pipeline
            .record_slo("api".into(), None, interval)
            .await
            .unwrap();
        assert_eq!(store.inner.slo_samples().unwrap().len(), 1);
        // A refused commit: the sample is refused and leaves no counts.
        store.fail.store(true, Ordering::SeqCst);
        let err = pipeline
            .record_slo("api".into(), None, interval)
            .await
            .unwrap_err();
        assert!(matches!(err, PipelineError::Store(_)), "{err}");
        store.fail.store(false, Ordering::SeqCst);
        let status = pipeline.slo_status(Some("api".into())).await.unwrap();
        assert_eq!(
            status[0].burns[0].counts,
            Counts {
                good: 90,
                total: 100
            },
            "only the committed sample counts"
        );
        // An SLO read from Prometheus takes no pushes.
        let err = pipeline
            .record_slo("db".into(), None, interval)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("reads its data from prometheus, not from pushed samples"),
            "{err}"
        );
        assert_eq!(store.inner.slo_samples().unwrap().len(), 1);
    }

    fn slo_rules(period: &str) -> String {
        format!(
            "{RULES}\nslo \"api\" {{ objective 99%; period {period}; source push }}\n\
             slo \"db\" {{ objective 99%; period 1d; source prometheus {{ errors \"e\" total \"t\" }} }}\n"
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn source_data_past_its_validity_goes_stale_at_the_evaluation() {
        let pipeline = start_with(counting_store(), &slo_rules("1d"), Arc::new(SystemClock));
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let update = SourceUpdate {
            replace: true,
            records: vec![(
                now - 5,
                Counts {
                    good: 90,
                    total: 100,
                },
            )],
            stale: None,
            valid_until: Some(now - 1),
        };
        pipeline
            .update_slo_source("db".into(), update)
            .await
            .unwrap();
        let status = pipeline.slo_status(Some("db".into())).await.unwrap();
        assert_eq!(status[0].state, crate::slo::DataState::Stale);
        let reason = &status[0].stale.as_ref().unwrap().reason;
        assert!(reason.contains("went out of date at 20"), "{reason}");
        // The counts are kept, only not trusted.
        assert_eq!(status[0].burns[0].counts.total, 100);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reload_that_changes_a_push_slos_period_refills_it_from_the_store() {
        let store = counting_store();
        let pipeline = start_with(store.clone(), &slo_rules("1d"), Arc::new(SystemClock));
        let sample = SloSample::Interval {
            good: 90.0,
            total: 100.0,
        };
        pipeline
            .record_slo("api".into(), None, sample)
            .await
            .unwrap();
        // The engine lays an SLO out by period, so a new period starts it
        // empty; the store still has the sample.
        let mut sources = Sources::new();
        sources.add("t.sev", slo_rules("2d"));
        let reloaded = load_sources_with_env(sources, EnvPolicy::Warn, &|_| None)
            .ruleset
            .unwrap();
        pipeline.ruleset.store(Arc::new(reloaded));
        let status = pipeline.slo_status(Some("api".into())).await.unwrap();
        assert_eq!(status[0].period_secs, 2 * 86_400);
        assert_eq!(
            status[0].burns[0].counts,
            Counts {
                good: 90,
                total: 100
            }
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reload_during_a_commit_routes_what_came_after_it_once_the_commit_landed() {
        let store = counting_store();
        let pipeline = start_with(store.clone(), &slo_rules("1d"), Arc::new(SystemClock));
        let record = |good: f64| {
            let p = pipeline.clone();
            tokio::spawn(async move {
                p.record_slo(
                    "api".into(),
                    None,
                    SloSample::Interval { good, total: 100.0 },
                )
                .await
            })
        };
        store.held.store(true, Ordering::SeqCst);
        let first = record(90.0);
        until("the first commit", || store.entered.load(Ordering::SeqCst)).await;
        // Routed while the first commit runs: the router now waits for it.
        let second = record(100.0);
        tokio::time::sleep(Duration::from_millis(30)).await;
        // A new period: the SLO is refilled from the store, which must by
        // then hold the first two samples.
        let mut sources = Sources::new();
        sources.add("t.sev", slo_rules("2d"));
        let reloaded = load_sources_with_env(sources, EnvPolicy::Warn, &|_| None)
            .ruleset
            .unwrap();
        pipeline.ruleset.store(Arc::new(reloaded));
        let third = record(50.0);
        tokio::time::sleep(Duration::from_millis(30)).await;
        store.held.store(false, Ordering::SeqCst);
        for request in [first, second, third] {
            request.await.unwrap().unwrap();
        }
        let status = pipeline.slo_status(Some("api".into())).await.unwrap();
        assert_eq!(status[0].period_secs, 2 * 86_400);
        assert_eq!(
            status[0].burns[0].counts,
            Counts {
                good: 240,
                total: 300
            }
        );
    }

    #[test]
    fn the_timer_index_answers_as_a_walk_over_a_plain_map() {
        use time::macros::datetime;
        let t0 = datetime!(2026-11-27 10:00 UTC);
        let mut index = TimerIndex::default();
        let mut plain: HashMap<String, OffsetDateTime> = HashMap::new();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        for step in 0..5_000 {
            let key = format!("{{service=\"svc-{}\"}}", next(40));
            let at = match next(5) {
                0 => None,
                // Some in another offset: the same instants as UTC ones.
                1 => Some(
                    (t0 + time::Duration::seconds(next(600) as i64))
                        .to_offset(time::macros::offset!(+2)),
                ),
                _ => Some(t0 + time::Duration::seconds(next(600) as i64)),
            };
            index.set(&key, at);
            match at {
                Some(at) => plain.insert(key.clone(), at),
                None => plain.remove(&key),
            };
            let now = t0 + time::Duration::seconds(next(700) as i64);
            let mut due = index.due(now);
            let walked: Vec<&String> = {
                let mut v: Vec<&String> = plain
                    .iter()
                    .filter(|(_, t)| **t <= now)
                    .map(|(k, _)| k)
                    .collect();
                v.sort();
                v
            };
            due.sort();
            assert_eq!(due.iter().collect::<Vec<_>>(), walked, "step {step}");
            assert_eq!(
                index.earliest(),
                plain.values().min().copied(),
                "step {step}"
            );
            let got = index.get(&key);
            assert_eq!(got, plain.get(&key).copied(), "step {step}");
            assert_eq!(got.map(|t| t.offset()), plain.get(&key).map(|t| t.offset()));
            assert_eq!(index.by_time.len(), plain.len(), "step {step}");
        }
    }

    #[test]
    fn pushed_samples_are_pruned_past_their_slos_period_and_lateness() {
        let mut sources = Sources::new();
        sources.add("t.sev", slo_rules("1d"));
        let ruleset = load_sources_with_env(sources, EnvPolicy::Warn, &|_| None)
            .ruleset
            .unwrap();
        let engine = SloEngine::new(EngineConfig::default()).unwrap();
        // Only the push SLO: one day and the hour of lateness back.
        assert_eq!(
            prune_cuts(&ruleset, &engine, 1_000_000),
            [("api".to_string(), 1_000_000 - 86_400 - 3_600)]
        );
    }
}

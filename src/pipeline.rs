//! The pipeline: the one place the stages are chained. Ingested alerts are
//! classified, routed into incidents, and the resulting incident state,
//! timeline and deliveries are committed to the store in one transaction
//! before the sender hears back. Timers run here too.
//!
//! One router task owns all incident state, so routing needs no locks.
//! It drains every command waiting in its queue and commits them together
//! (group commit): concurrent requests share one transaction and one
//! fsync, so durability does not cost throughput.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use thiserror::Error;
use time::OffsetDateTime;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::classify::{BurnSnapshot, classify};
use crate::deliver::message::{
    IncidentStatus as MessageStatus, MessageAlert, MessageIncident, MessageType, MessageVersion,
    WebhookMessage, derive_message_id,
};
use crate::model::{Alert, Severity};
use crate::route::{
    self, Action, ActionKind, ClassifiedAlert, Decision, Event, Incident, IncidentStatus,
    RouteError, TimelineKind,
};
use crate::rules::RuleSet;
use crate::slo::{EngineConfig, Recorded, SloEngine, SloError, SloStatus};
use crate::store::{AlertRecord, CommitBatch, IncidentAlert, NewDelivery, Store, StoreError};

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

enum Command {
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

/// An ingested alert made ready for routing: classified, fingerprinted,
/// keyed and serialized by the request's own task, so that work runs on
/// every core instead of on the one router task.
struct PreparedAlert {
    classified: ClassifiedAlert,
    fingerprint: String,
    alert_json: String,
    key: String,
}

impl PreparedAlert {
    fn new(ruleset: &RuleSet, burn: &BurnSnapshot, now: OffsetDateTime, alert: Alert) -> Self {
        let classification = classify(ruleset, &alert, burn, now);
        let fingerprint = alert.fingerprint().to_string();
        let alert_json = serde_json::to_string(&alert).unwrap_or_default();
        let (key, _) = route::group_key(&ruleset.grouping, &alert);
        PreparedAlert {
            classified: ClassifiedAlert::new(alert, &classification),
            fingerprint,
            alert_json,
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
}

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
            .map(|i| (i.key.clone(), i))
            .collect();
        let next_id = store.max_incident_id()? + 1;
        let instance_id = store.instance_id()?;
        let (tx, rx) = mpsc::channel(4096);
        let deliveries_ready = Arc::new(Notify::new());
        let mut slo = SloEngine::new(EngineConfig::default())?;
        let rules_now = ruleset.load_full();
        slo.set_slos(&rules_now.slos);
        let burn = Arc::new(BurnSnapshot::new());
        let published_burn = Arc::new(ArcSwap::new(burn.clone()));
        let router = Router {
            store,
            slo,
            slo_windows: rules_now.burn_windows(),
            slo_rules: rules_now.clone(),
            burn,
            published_burn: published_burn.clone(),
            next_slo_evaluation: OffsetDateTime::UNIX_EPOCH,
            ruleset: ruleset.clone(),
            clock: clock.clone(),
            settings,
            due_at: HashMap::new(),
            active,
            next_id,
            instance_id,
            deliveries_ready: deliveries_ready.clone(),
            stopped: false,
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
            },
            task,
        ))
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
    ruleset: Arc<ArcSwap<RuleSet>>,
    clock: Arc<dyn Clock>,
    settings: PipelineSettings,
    /// Incidents not yet resolved, by group key.
    active: HashMap<String, Incident>,
    /// When each active incident's next timer is due (those with one), so
    /// finding due timers does not walk every alert of every incident.
    /// Kept in step with `active` for every incident a batch touches.
    due_at: HashMap<String, OffsetDateTime>,
    next_id: i64,
    /// The store's instance id, part of every webhook-id.
    instance_id: String,
    deliveries_ready: Arc<Notify>,
    /// Set when state could not be brought back in line with the store.
    stopped: bool,
}

/// The incidents a batch changed, by group key, and which of their alerts:
/// an ingested alert changes only itself; ticks, people and SLO burn may
/// change any (`None`). Only those alerts are written back, so refreshing
/// one alert of a large incident does not rewrite all of them.
#[derive(Default)]
struct Touched(BTreeMap<String, Option<BTreeSet<String>>>);

impl Touched {
    /// One alert of the incident at `key` changed.
    fn alert(&mut self, key: &str, fingerprint: &str) {
        match self.0.get_mut(key) {
            Some(None) => {}
            Some(Some(fingerprints)) => {
                fingerprints.insert(fingerprint.to_string());
            }
            None => {
                self.0.insert(
                    key.to_string(),
                    Some(BTreeSet::from([fingerprint.to_string()])),
                );
            }
        }
    }

    /// Anything in the incident at `key` may have changed.
    fn all(&mut self, key: &str) {
        self.0.insert(key.to_string(), None);
    }
}

/// A routed batch: what to commit, and whom to answer once it is.
struct Routed {
    batch: CommitBatch,
    replies: Vec<Reply>,
}

/// A batch whose commit is running.
struct InFlight {
    task: tokio::task::JoinHandle<Result<(), StoreError>>,
    replies: Vec<Reply>,
    has_deliveries: bool,
}

/// The commit's result, from its task's.
fn committed(
    joined: Result<Result<(), StoreError>, tokio::task::JoinError>,
) -> Result<(), StoreError> {
    joined.unwrap_or_else(|e| {
        Err(StoreError::Open {
            path: "commit task".into(),
            message: e.to_string(),
        })
    })
}

/// Answers every request of a batch the store refused.
fn refuse(replies: Vec<Reply>, message: &str) {
    for reply in replies {
        let err = || {
            PipelineError::Store(StoreError::Open {
                path: "store".into(),
                message: message.to_string(),
            })
        };
        match reply {
            Reply::Ingest(tx, _) => {
                let _ = tx.send(Err(err()));
            }
            Reply::Human(tx) => {
                let _ = tx.send(Err(err()));
            }
        }
    }
}

/// A reply owed once the batch commits.
enum Reply {
    Ingest(
        oneshot::Sender<Result<IngestOutcome, PipelineError>>,
        IngestOutcome,
    ),
    Human(oneshot::Sender<Result<(), PipelineError>>),
}

impl Router {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        // The batch whose commit is running, if any.
        let mut in_flight: Option<InFlight> = None;
        loop {
            let wait = self.until_next_timer();
            let first = tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => Some(cmd),
                    // Every handle dropped: shut down, once the last
                    // commit landed.
                    None => {
                        if let Some(previous) = in_flight.take() {
                            let _ = self.land(previous).await;
                        }
                        return;
                    }
                },
                () = tokio::time::sleep(wait) => None,
                // Nothing new to route: answer the running batch as soon
                // as it is committed.
                joined = async { (&mut in_flight.as_mut().expect("guarded").task).await }, if in_flight.is_some() => {
                    if let Some(previous) = in_flight.take() {
                        let _ = self
                            .finish(committed(joined), previous.replies, previous.has_deliveries)
                            .await;
                    }
                    if self.stopped {
                        return;
                    }
                    continue;
                }
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
            let routed = self.route(commands).await;
            // One writer at a time: the previous batch lands first. Routing
            // this batch overlapped its commit, so both cores work.
            if let Some(previous) = in_flight.take()
                && let Err(message) = self.land(previous).await
            {
                // This batch was routed on top of state the store refused;
                // the reload dropped it too, so it is refused as well.
                refuse(routed.replies, &message);
                if self.stopped {
                    return;
                }
                continue;
            }
            let store = self.store.clone();
            let batch = routed.batch;
            in_flight = Some(InFlight {
                has_deliveries: !batch.deliveries.is_empty(),
                task: tokio::task::spawn_blocking(move || store.commit(&batch)),
                replies: routed.replies,
            });
        }
    }

    /// Waits for a batch's commit, then answers its requests; on failure
    /// reloads state from the store and returns the error's text.
    async fn land(&mut self, in_flight: InFlight) -> Result<(), String> {
        let joined = in_flight.task.await;
        self.finish(
            committed(joined),
            in_flight.replies,
            in_flight.has_deliveries,
        )
        .await
    }

    /// Rebuilds the timer index from every active incident.
    fn reindex_timers(&mut self) {
        self.due_at = self
            .active
            .iter()
            .filter_map(|(key, i)| Some((key.clone(), i.next_due()?)))
            .collect();
    }

    /// Brings the timer index in line with the incident at `key`.
    fn reindex_timer(&mut self, key: &str) {
        match self.active.get(key).and_then(Incident::next_due) {
            Some(at) => {
                self.due_at.insert(key.to_string(), at);
            }
            None => {
                self.due_at.remove(key);
            }
        }
    }

    /// How long until the earliest incident timer, bounded by the tick.
    fn until_next_timer(&self) -> Duration {
        let now = self.clock.now();
        let next = self.due_at.values().min().copied();
        match next {
            Some(t) if t <= now => Duration::ZERO,
            Some(t) => Duration::try_from(t - now)
                .unwrap_or(self.settings.tick)
                .min(self.settings.tick),
            None => self.settings.tick,
        }
    }

    /// Routes a batch of commands into the state and the batch to commit.
    async fn route(&mut self, commands: Vec<Command>) -> Routed {
        let now = self.clock.now();
        let ruleset = self.ruleset.load_full();
        if !Arc::ptr_eq(&ruleset, &self.slo_rules) {
            // A reload: SLOs keep their data unless their period changed.
            self.slo.set_slos(&ruleset.slos);
            self.slo_windows = ruleset.burn_windows();
            self.slo_rules = ruleset.clone();
        }
        let mut batch = CommitBatch::default();
        let mut touched = Touched::default();
        let mut replies = Vec::new();
        for command in commands {
            match command {
                // SLI samples live in memory only in this version: nothing
                // to commit, so they are answered at once.
                Command::Slo {
                    slo,
                    at,
                    sample,
                    reply,
                } => {
                    let now_secs = now.unix_timestamp();
                    let at = at.unwrap_or(now_secs);
                    let recorded = match sample {
                        SloSample::Interval { good, total } => {
                            self.slo.record(&slo, now_secs, at, good, total)
                        }
                        SloSample::Cumulative { good, total } => {
                            self.slo.record_cumulative(&slo, now_secs, at, good, total)
                        }
                    };
                    let _ = reply.send(recorded.map_err(PipelineError::from));
                }
                Command::SloStatus { slo, reply } => {
                    let now_secs = now.unix_timestamp();
                    let statuses = match slo {
                        Some(name) => self.slo.status(&name, now_secs).map(|s| vec![s]),
                        None => Ok(self.slo.statuses(now_secs)),
                    };
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
            self.evaluate_slos(&ruleset, now, &mut batch, &mut touched);
            let every = time::Duration::try_from(self.settings.slo_evaluation)
                .unwrap_or(time::Duration::SECOND);
            self.next_slo_evaluation = now + every;
        }
        // Timers due by now, whatever woke the router (a new incident with
        // no wait is due at once, so the index first learns this batch's).
        for key in touched.0.keys() {
            self.reindex_timer(key);
        }
        let due: Vec<String> = self
            .due_at
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            // A tick never fails.
            let _ = self.apply(&key, Event::Tick, &ruleset, now, &mut batch);
            touched.all(&key);
            // Only a tick changes timers after the pass above.
            self.reindex_timer(&key);
        }
        // Incidents that resolved went into the batch whole when they left
        // the active set; the others go in as their row and changed alerts.
        for (key, changed) in touched.0 {
            let Some(incident) = self.active.get(&key) else {
                continue;
            };
            batch.incidents.push(incident.header());
            // The row's timer column: the header alone cannot see when its
            // alerts expire.
            batch
                .next_due
                .insert(incident.id, self.due_at.get(&key).copied());
            let alert = |(fingerprint, alert): (&String, &route::TrackedAlert)| IncidentAlert {
                incident_id: incident.id,
                fingerprint: fingerprint.clone(),
                alert: alert.clone(),
            };
            match changed {
                None => batch
                    .incident_alerts
                    .extend(incident.alerts.iter().map(alert)),
                Some(fingerprints) => batch.incident_alerts.extend(
                    fingerprints
                        .iter()
                        .filter_map(|f| incident.alerts.get_key_value(f))
                        .map(alert),
                ),
            }
        }

        Routed { batch, replies }
    }

    /// Answers a batch's requests once its commit returned; on failure,
    /// reloads state from the store and returns the error's text.
    async fn finish(
        &mut self,
        committed: Result<(), StoreError>,
        replies: Vec<Reply>,
        has_deliveries: bool,
    ) -> Result<(), String> {
        match committed {
            Ok(()) => {
                self.active.retain(|_, i| i.is_active());
                if has_deliveries {
                    self.deliveries_ready.notify_one();
                }
                for reply in replies {
                    match reply {
                        Reply::Ingest(tx, outcome) => {
                            let _ = tx.send(Ok(outcome));
                        }
                        Reply::Human(tx) => {
                            let _ = tx.send(Ok(()));
                        }
                    }
                }
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "The commit failed; the batch is refused and state is reloaded from the store.");
                // The store is the truth: drop what this batch changed. If
                // even that read fails, memory and store may disagree, so
                // the router stops (fail closed; /readyz then says so).
                let store = self.store.clone();
                match tokio::task::spawn_blocking(move || store.active_incidents()).await {
                    Ok(Ok(incidents)) => {
                        self.active = incidents.into_iter().map(|i| (i.key.clone(), i)).collect();
                        self.reindex_timers();
                    }
                    _ => {
                        tracing::error!(
                            "Reloading state after a failed commit failed too; the router stops."
                        );
                        self.stopped = true;
                    }
                }
                let message = e.to_string();
                refuse(replies, &message);
                Err(message)
            }
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
            return;
        }
        self.burn = Arc::new(self.slo.snapshot(now.unix_timestamp(), &self.slo_windows));
        self.published_burn.store(self.burn.clone());
        let links = Links {
            public_url: &self.settings.public_url,
            instance_id: &self.instance_id,
        };
        for (key, incident) in self.active.iter_mut() {
            let changed: Vec<ClassifiedAlert> = incident
                .alerts
                .values()
                .filter(|a| a.is_firing())
                .filter_map(|a| {
                    let c = classify(ruleset, &a.alert, &self.burn, now);
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
        }
    }

    /// Applies an event to the active incident at `key` and records what it
    /// owes in the batch; an incident that resolved leaves the active set.
    /// The caller notes in its [`Touched`] what changed; the answer says
    /// whether the decision reached past the event's own alert (an
    /// announcement, a page, a resolve: anything but an alert joining or
    /// resolving), so that every alert of the incident is written.
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
        };
        let Some(incident) = self.active.get_mut(key) else {
            return Ok(false);
        };
        let decision = route::apply(incident, event, ruleset, now)?;
        let beyond_the_alert = !decision.actions.is_empty()
            || decision.timeline.iter().any(|e| {
                !matches!(
                    e.kind,
                    TimelineKind::AlertJoined | TimelineKind::AlertResolved
                )
            });
        record(incident, decision, now, &links, batch);
        self.retire_if_resolved(key, batch);
        Ok(beyond_the_alert)
    }

    fn links(&self) -> Links<'_> {
        Links {
            public_url: &self.settings.public_url,
            instance_id: &self.instance_id,
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
        let mut outcome = IngestOutcome {
            alerts: prepared.alerts.len(),
            ..IngestOutcome::default()
        };
        let stale =
            !Arc::ptr_eq(&prepared.ruleset, ruleset) || !Arc::ptr_eq(&prepared.burn, &self.burn);
        for alert in prepared.alerts {
            let PreparedAlert {
                classified,
                fingerprint,
                alert_json,
                key,
            } = if stale {
                PreparedAlert::new(ruleset, &self.burn, now, alert.classified.alert)
            } else {
                alert
            };
            if let Some(severity) = classified.severity {
                outcome.by_severity[severity.index()] += 1;
            }
            let incident_id = if let Some(id) = self.active.get(&key).map(|i| i.id) {
                // Alerts always apply to an active incident.
                match self.apply(&key, Event::Alert(classified), ruleset, now, batch) {
                    Ok(false) => touched.alert(&key, &fingerprint),
                    _ => touched.all(&key),
                }
                outcome.routed += 1;
                Some(id)
            } else if let Some((incident, decision)) =
                route::declare(self.next_id, classified, ruleset, now)
            {
                self.next_id += 1;
                let id = incident.id;
                let key = incident.key.clone();
                record(&incident, decision, now, &self.links(), batch);
                self.active.insert(key.clone(), incident);
                touched.all(&key);
                outcome.routed += 1;
                Some(id)
            } else {
                outcome.unrouted += 1;
                None
            };
            batch.alerts.push(AlertRecord {
                fingerprint,
                alert_json,
                incident_id,
                received_at: now,
            });
        }
        outcome
    }
}

/// What a delivery body and id are made from besides the incident.
struct Links<'a> {
    /// Base URL for links back to incidents.
    public_url: &'a str,
    /// The store's instance id.
    instance_id: &'a str,
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
        let body = render_action(incident, &action, &webhook_id, now, links.public_url);
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
    public_url: &str,
) -> String {
    let kind = match action.kind {
        ActionKind::Page => MessageType::Page,
        ActionKind::Notify => MessageType::Notify,
        ActionKind::UpdateDue => MessageType::UpdateDue,
        ActionKind::Escalate => MessageType::Escalate,
        ActionKind::Resolve => MessageType::Resolve,
    };
    let explanation = incident
        .deciding_alert()
        .map(|a| a.explanation.clone())
        .unwrap_or_default();
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
                public_url.trim_end_matches('/'),
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
    use crate::store::{AttemptRecord, Delivery, IncidentFilter, OutboxStats};

    /// A store that counts commits, makes each slow (so requests queue up
    /// behind it), and fails them on demand.
    struct CountingStore {
        inner: SqliteStore,
        commits: AtomicUsize,
        fail: AtomicBool,
        /// Incident alerts each commit wrote.
        alert_rows: std::sync::Mutex<Vec<usize>>,
        /// A commit waits while this is set.
        held: AtomicBool,
        /// Set once a commit is waiting at the gate or past it.
        entered: AtomicBool,
        /// Fails the next commit only.
        fail_once: AtomicBool,
    }

    impl Store for CountingStore {
        fn commit(&self, batch: &CommitBatch) -> Result<(), StoreError> {
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
            self.inner.commit(batch)
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
        ) -> Result<Vec<Delivery>, StoreError> {
            self.inner.due_deliveries(now, limit)
        }
        fn next_delivery_due(&self) -> Result<Option<OffsetDateTime>, StoreError> {
            self.inner.next_delivery_due()
        }
        fn record_attempt(&self, id: i64, attempt: &AttemptRecord) -> Result<(), StoreError> {
            self.inner.record_attempt(id, attempt)
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
    }

    const RULES: &str = r#"
destination "pd" webhook { url "http://127.0.0.1:9/pd" }
severity SEV1 { page "pd" }
otherwise SEV1
group by instance wait 0s
"#;

    fn start(store: Arc<CountingStore>) -> Pipeline {
        let mut sources = Sources::new();
        sources.add("t.sev", RULES);
        let ruleset = load_sources_with_env(sources, EnvPolicy::Warn, &|_| None)
            .ruleset
            .unwrap();
        let (pipeline, _task) = Pipeline::start(
            store,
            Arc::new(ArcSwap::from_pointee(ruleset)),
            Arc::new(SystemClock),
            PipelineSettings {
                max_batch: 512,
                max_wait: Duration::from_millis(2),
                tick: Duration::from_millis(50),
                slo_evaluation: Duration::from_secs(30),
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

    fn counting_store() -> Arc<CountingStore> {
        Arc::new(CountingStore {
            inner: SqliteStore::in_memory().unwrap(),
            commits: AtomicUsize::new(0),
            fail: AtomicBool::new(false),
            alert_rows: Default::default(),
            held: AtomicBool::new(false),
            entered: AtomicBool::new(false),
            fail_once: AtomicBool::new(false),
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
                .due_deliveries(OffsetDateTime::now_utc(), 100)
                .unwrap()
                .len(),
            40
        );
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
            a.labels.insert("n".into(), n.into());
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
        refreshed
            .annotations
            .insert("summary".into(), "still bad".into());
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
        assert_eq!(b.alert.annotations["summary"], "still bad");
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
        again.labels.insert("extra".into(), "x".into());
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
}

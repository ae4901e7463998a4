//! The outbox worker: takes due deliveries from the store, sends them, and
//! decides what each attempt means: delivered; retried after a backoff
//! (with the receiver's `Retry-After`, and a minimum penalty after a 429
//! or a timeout); a dead letter (a 4xx that will never succeed, or past
//! the retry horizon); failed over to the severity's `fallback` (a page
//! past its shorter horizon, or work for a destination the receiver
//! disabled with 410).
//!
//! Destinations are isolated from each other ([`super::isolation`]): each
//! has its own concurrency limit, token bucket and circuit breaker, and
//! the due query hands out work round robin by destination, so a broken or
//! rate-limited chat webhook never delays a page to another destination.
//! Stopping leaves every undelivered row in the store for the next start
//! (delivery is at least once; receivers dedupe on `webhook-id`).

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use time::OffsetDateTime;

use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::deliver::backoff::{Outcome, RetryPolicy, RetryReason, with_min_penalty};
use crate::deliver::isolation::{AfterFailure, Breaker, Gate, Held, Horizon, Limits};
use crate::deliver::sender::{Attempt, WebhookSender};
use crate::deliver::vendor;
use crate::metrics::{
    DeliveryFailure, DestinationKindLabel, DestinationLabel, DestinationOutcome, Metrics,
};
use crate::pipeline::Clock;
use crate::route::{ActionKind, TimelineEntry, TimelineKind};
use crate::rules::{DestinationKind, RuleSet, Value};
use crate::store::{AttemptDetail, AttemptRecord, Delivery, DeliveryStatus, NewDelivery, Store};

/// The worker's settings.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// Deliveries in flight at once, over all destinations.
    pub concurrency: usize,
    /// Timeout of one request.
    pub request_timeout: Duration,
    /// Longest sleep between looks at the outbox.
    pub poll: Duration,
    /// When a failing delivery stops retrying, by what it carries.
    pub horizon: Horizon,
    /// Least wait after a 429 or a timeout.
    pub min_penalty: Duration,
    /// Requests in flight at once to one destination, unless it sets its
    /// own `concurrency`.
    pub destination_concurrency: usize,
    /// Consecutive failures that open a destination's circuit (0: never).
    pub breaker_failures: u32,
    /// How long an open circuit waits before one probe.
    pub breaker_cooldown: Duration,
}

/// First pages of incidents the router just declared, handed over before
/// their batch is committed so a page does not wait for the fsync. Each
/// is sent at once (when its destination's gate admits it) and recorded
/// once `landed` says the batch is committed; until then the outbox row
/// is left alone. A page refused by its gate, or sent for a batch whose
/// commit failed, is the outbox's again (or nobody's: a refused batch
/// leaves no row, and the sender, answered with an error, posts again).
#[derive(Debug)]
pub struct EarlyPages {
    /// The pages, as the outbox will hold them (row id not known yet).
    pub deliveries: Vec<Delivery>,
    /// `Some(true)` once the batch is committed, `Some(false)` if refused.
    pub landed: watch::Receiver<Option<bool>>,
}

/// The outbox worker.
pub struct Worker {
    /// Where deliveries wait.
    pub store: Arc<dyn Store>,
    /// The rule set in force (destinations are looked up at send time).
    pub ruleset: Arc<ArcSwap<RuleSet>>,
    /// Sends one request.
    pub sender: WebhookSender,
    /// Backoff and attempt limits.
    pub policy: RetryPolicy,
    /// Delivery metrics.
    pub metrics: Arc<Metrics>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Woken when the pipeline committed deliveries.
    pub ready: Arc<Notify>,
    /// First pages from the router, before their commit (see
    /// [`EarlyPages`]); `None` reads only the outbox.
    pub early: Option<tokio::sync::mpsc::Receiver<EarlyPages>>,
    /// Settings.
    pub settings: WorkerSettings,
}

/// What a delivery task works on: an outbox row, or an early page known
/// by its webhook id until its row is committed.
enum Working {
    Row(i64),
    Early(String),
}

/// What the worker does with one due delivery.
enum Job {
    /// Send it (its destination's gate let it through).
    Send(Delivery),
    /// Its destination is disabled: hand it to the fallback (or dead-letter it).
    Divert(Delivery, String),
    /// A page held by an open circuit past its horizon: fail it over if
    /// the severity has a fallback, else wait for the circuit.
    Expire(Delivery, OffsetDateTime),
}

/// What a look at the outbox came to.
#[derive(Default)]
struct Taken {
    jobs: Vec<Job>,
    /// The destinations disabled now, when they could be read.
    disabled: Option<HashSet<String>>,
    /// Whether a due row was left only because its destination's gate
    /// has as many requests in flight as it may.
    waits_for_a_send: bool,
    /// Whether due rows were left because every worker slot is taken
    /// (early pages may take the last ones while the outbox is read).
    waits_for_a_slot: bool,
}

/// What an attempt came to before any decision about retrying.
pub(crate) enum Sent {
    /// No request was made (the destination is missing or misconfigured,
    /// or its kind has no sender): final, with this status and reason.
    NotSent(DeliveryStatus, String),
    /// A request was made.
    Attempt(Attempt),
}

/// The per-destination gates, shared by the loop (which admits) and the
/// delivery tasks (which finish).
#[derive(Default)]
struct Gates(Mutex<HashMap<String, Gate>>);

impl Gates {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Gate>) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// What the loop shares with its delivery tasks.
struct Shared {
    gates: Gates,
    slots: Slots,
    recorder: Recorder,
}

/// The worker's slots (`concurrency`): sends in flight over all
/// destinations. A delivery gives its slot back once its request is
/// answered, before its attempt is recorded, so during a burst the slots
/// stay full of sends rather than of tasks waiting for a commit. (The
/// task, and with it its row's place among the busy ones, ends once the
/// attempt is recorded.)
#[derive(Default)]
struct Slots {
    taken: AtomicUsize,
    /// Woken when a slot is given back.
    freed: Notify,
}

impl Slots {
    fn taken(&self) -> usize {
        self.taken.load(Ordering::Acquire)
    }
}

/// Tasks at most per slot, counting those whose attempt waits to be
/// recorded: a store that stops committing stops the worker taking work.
const TASKS_PER_SLOT: usize = 16;

/// One taken slot, given back when dropped (by a panicking task too).
struct Slot(Arc<Shared>);

impl Slot {
    fn take(shared: &Arc<Shared>) -> Slot {
        shared.slots.taken.fetch_add(1, Ordering::AcqRel);
        Slot(shared.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.slots.taken.fetch_sub(1, Ordering::AcqRel);
        self.0.slots.freed.notify_one();
    }
}

/// Records attempts in groups, one transaction each. One transaction (and
/// fsync) per attempt, each waiting for the writer between the router's
/// commits, held the first pages of a storm of new incidents to about 400
/// a second, and took the writer from the router's commits while they
/// drained. Attempts that end while a group is being written go into the
/// next one.
struct Recorder {
    queue: mpsc::UnboundedSender<Recording>,
}

/// An attempt waiting to be recorded, and whom to tell it was.
struct Recording {
    id: i64,
    attempt: AttemptRecord,
    saved: oneshot::Sender<bool>,
}

/// Attempts at most in one transaction.
const MAX_RECORDED_AT_ONCE: usize = 512;

impl Recorder {
    /// Starts the task that writes the groups; it ends when the recorder
    /// (and every task holding it) is gone.
    fn start(store: Arc<dyn Store>) -> Recorder {
        let (queue, mut waiting) = mpsc::unbounded_channel::<Recording>();
        tokio::spawn(async move {
            let mut group = Vec::new();
            while waiting.recv_many(&mut group, MAX_RECORDED_AT_ONCE).await > 0 {
                let (attempts, replies): (Vec<_>, Vec<_>) = group
                    .drain(..)
                    .map(|r: Recording| ((r.id, r.attempt), r.saved))
                    .unzip();
                let store = store.clone();
                let saved = tokio::task::spawn_blocking(move || record_group(&*store, &attempts))
                    .await
                    .unwrap_or_else(|_| vec![false; replies.len()]);
                for (reply, saved) in replies.into_iter().zip(saved) {
                    let _ = reply.send(saved);
                }
            }
        });
        Recorder { queue }
    }

    /// Records one attempt with whatever others wait; true once committed.
    async fn record(&self, id: i64, attempt: AttemptRecord) -> bool {
        let (saved, on_saved) = oneshot::channel();
        let recording = Recording { id, attempt, saved };
        self.queue.send(recording).is_ok() && on_saved.await.unwrap_or(false)
    }
}

/// Writes a group of attempts in one transaction; if that fails, each on
/// its own, so one attempt the store refuses does not lose the others.
/// Whether each was recorded, in order.
fn record_group(store: &dyn Store, attempts: &[(i64, AttemptRecord)]) -> Vec<bool> {
    match store.record_attempts(attempts) {
        Ok(()) => vec![true; attempts.len()],
        Err(e) => {
            tracing::error!(error = %e, attempts = attempts.len(), "Recording delivery attempts failed.");
            if attempts.len() == 1 {
                return vec![false];
            }
            attempts
                .iter()
                .map(|a| store.record_attempts(std::slice::from_ref(a)).is_ok())
                .collect()
        }
    }
}

/// Time as the gates read it: since the Unix epoch.
fn gate_time(now: OffsetDateTime) -> Duration {
    Duration::try_from(now - OffsetDateTime::UNIX_EPOCH).unwrap_or_default()
}

/// Finishes a send at its gate when dropped, and then gives its worker
/// slot back (unless taken out before), so a panicking task still frees
/// both.
struct InFlight<'a> {
    worker: &'a Worker,
    gates: &'a Gates,
    destination: String,
    healthy: bool,
    slot: Option<Slot>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let now = self.worker.clock.now();
        let state = self.gates.with(|gates| {
            gates.get_mut(&self.destination).map(|g| {
                g.finish(self.healthy, gate_time(now));
                g.breaker_state(gate_time(now))
            })
        });
        if let Some(state) = state {
            self.worker
                .metrics
                .circuit_state
                .get_or_create(&DestinationLabel {
                    destination: self.destination.clone(),
                })
                .set(state.as_gauge());
        }
    }
}

impl Worker {
    /// Runs until `stop` turns true; attempts in flight finish first.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut early = self.early.take();
        let this = Arc::new(self);
        let shared = Arc::new(Shared {
            gates: Gates::default(),
            slots: Slots::default(),
            recorder: Recorder::start(this.store.clone()),
        });
        let slots = this.settings.concurrency.max(1);
        // Deliveries in flight: each runs as its own task, and the loop
        // keeps looking at the outbox while they run, so a slow
        // destination holds its own slots, never the whole worker.
        let mut in_flight: HashMap<tokio::task::Id, Working> = HashMap::new();
        let mut tasks: JoinSet<()> = JoinSet::new();
        // Destinations disabled as of the last look at the outbox.
        // (Read once now, so early pages sent before the first look at the
        // outbox skip a destination disabled before this start.)
        let mut disabled: HashSet<String> = {
            let store = this.store.clone();
            match tokio::task::spawn_blocking(move || store.disabled_destinations()).await {
                Ok(Ok(found)) => found.into_iter().map(|d| d.name).collect(),
                _ => HashSet::new(),
            }
        };
        // Whether the outbox may hold work this loop has not seen, and when
        // it must be looked at anyway (the next due row, or the poll). An
        // early page ending is no reason to look: during a burst of new
        // incidents that would read the outbox once per page. (A failed
        // early page is seen again by the next look, within `poll`.)
        let mut look = true;
        let mut next_look = tokio::time::Instant::now();
        // Set while every slot is taken: then any task ending, an early
        // page's too, frees one for work that may wait in the outbox.
        let mut short_of_slots = false;
        // Set while a due row waits only for its destination's gate (as
        // many requests in flight as it may have): then a send ending is
        // a reason to look, or the row would wait for the poll.
        let mut waits_for_a_send = false;
        loop {
            while let Some(done) = tasks.try_join_next_with_id() {
                let row = reap(done, &mut in_flight);
                look |= row || short_of_slots;
            }
            if *stop.borrow() {
                break;
            }
            // Early pages first: they are the newest and most urgent.
            this.take_early(
                &mut early,
                &shared,
                &disabled,
                slots,
                &mut tasks,
                &mut in_flight,
            );
            look |= tokio::time::Instant::now() >= next_look;
            let free = if in_flight.len() >= slots.saturating_mul(TASKS_PER_SLOT) {
                0
            } else {
                slots.saturating_sub(shared.slots.taken())
            };
            short_of_slots = free == 0;
            let jobs = if free == 0 || !look {
                Vec::new()
            } else {
                let busy: HashSet<i64> = in_flight
                    .values()
                    .filter_map(|w| match w {
                        Working::Row(id) => Some(*id),
                        Working::Early(_) => None,
                    })
                    .collect();
                let taken = this
                    .take_jobs(&shared.gates, &busy, in_flight.len(), free, || {
                        // Once the outbox is read, the early pages of every
                        // commit that read could see are in the channel
                        // (the router hands them over before it commits):
                        // taken now, their rows are known to be in flight
                        // and are not sent a second time.
                        this.take_early(
                            &mut early,
                            &shared,
                            &disabled,
                            slots,
                            &mut tasks,
                            &mut in_flight,
                        );
                        let early_ids = in_flight
                            .values()
                            .filter_map(|w| match w {
                                Working::Early(webhook_id) => Some(webhook_id.clone()),
                                Working::Row(_) => None,
                            })
                            .collect();
                        (early_ids, slots.saturating_sub(shared.slots.taken()))
                    })
                    .await;
                if let Some(now_disabled) = taken.disabled {
                    disabled = now_disabled;
                }
                waits_for_a_send = taken.waits_for_a_send;
                short_of_slots |= taken.waits_for_a_slot;
                taken.jobs
            };
            if jobs.is_empty() {
                if look {
                    let mut wait = this.wait_for_next(this.clock.now()).await;
                    if wait.is_zero() {
                        // What is due is in flight, held, or slots are full:
                        // a task finishing, or new work, wakes the loop.
                        wait = this.settings.poll;
                    }
                    next_look = tokio::time::Instant::now() + wait;
                    look = false;
                }
                tokio::select! {
                    () = this.ready.notified() => look = true,
                    Some(pages) = async { early.as_mut()?.recv().await }, if early.is_some() => {
                        this.start_early(pages, &shared, &disabled, slots, &mut tasks, &mut in_flight);
                    }
                    () = shared.slots.freed.notified(), if short_of_slots || waits_for_a_send => {
                        look = true;
                    }
                    () = tokio::time::sleep_until(next_look) => look = true,
                    Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                        let row = reap(done, &mut in_flight);
                        look |= row || short_of_slots;
                    }
                    _ = stop.changed() => {}
                }
                continue;
            }
            for job in jobs {
                let this = this.clone();
                let slot = Slot::take(&shared);
                let shared = shared.clone();
                let (id, task) = match job {
                    Job::Send(delivery) => (
                        delivery.id,
                        tasks.spawn(
                            async move { this.deliver(&shared, delivery, None, slot).await },
                        ),
                    ),
                    Job::Divert(delivery, reason) => (
                        delivery.id,
                        tasks.spawn(async move {
                            let _slot = slot;
                            let now = this.clock.now();
                            this.divert(&shared.recorder, &delivery, &reason, None, now)
                                .await;
                        }),
                    ),
                    Job::Expire(delivery, retry_at) => (
                        delivery.id,
                        tasks.spawn(async move {
                            let _slot = slot;
                            this.expire(&shared.recorder, delivery, retry_at).await
                        }),
                    ),
                };
                in_flight.insert(task.id(), Working::Row(id));
            }
        }
        // Attempts in flight finish (the caller bounds how long).
        while let Some(done) = tasks.join_next_with_id().await {
            reap(done, &mut in_flight);
        }
        tracing::info!("The delivery worker stopped; undelivered work stays in the store.");
    }

    /// Reads the due deliveries and decides, destination by destination,
    /// which may go now. Held ones are postponed in the store (rate limit,
    /// open circuit) or left due (the destination's slots are full).
    /// `busy`: the rows of the `tasks` in flight, which are skipped.
    /// `early_in_flight`, called once the outbox is read, gives the webhook
    /// ids of early pages in flight, which are skipped, and the slots still
    /// free after them.
    async fn take_jobs(
        &self,
        gates: &Gates,
        busy: &HashSet<i64>,
        tasks: usize,
        free: usize,
        early_in_flight: impl FnOnce() -> (HashSet<String>, usize),
    ) -> Taken {
        let now = self.clock.now();
        let store = self.store.clone();
        // Room for the rows the tasks work on (sending, or waiting for
        // their attempt to be recorded; early pages' too), and for rows
        // other destinations' gates hold back.
        let limit = free + tasks + self.settings.concurrency + 64;
        let read = tokio::task::spawn_blocking(move || {
            let coalesced = store.coalesce_repeats(now)?;
            let disabled = store.disabled_destinations()?;
            Ok::<_, crate::store::StoreError>((
                coalesced,
                disabled,
                store.due_deliveries(now, limit, tasks)?,
            ))
        })
        .await;
        let (early, slots_left) = early_in_flight();
        // Early pages taken just now hold slots too.
        let free = free.min(slots_left);
        let (coalesced, disabled, due) = match read {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "Reading the outbox failed; retrying.");
                return Taken::default();
            }
            Err(e) => {
                tracing::error!(error = %e, "Reading the outbox failed; retrying.");
                return Taken::default();
            }
        };
        if coalesced > 0 {
            tracing::info!(
                coalesced,
                "Repeated status-update reminders were coalesced into the newest."
            );
        }
        let disabled: HashMap<String, String> =
            disabled.into_iter().map(|d| (d.name, d.reason)).collect();
        let ruleset = self.ruleset.load();
        for d in &ruleset.destinations {
            self.metrics
                .destination_disabled
                .get_or_create(&DestinationLabel {
                    destination: d.name.clone(),
                })
                .set(i64::from(disabled.contains_key(&d.name)));
        }
        let at = gate_time(now);
        let mut jobs = Vec::new();
        let mut waits_for_a_send = false;
        let mut waits_for_a_slot = false;
        let mut postpone: Vec<(i64, OffsetDateTime)> = Vec::new();
        gates.with(|gates| {
            for delivery in due
                .into_iter()
                .filter(|d| !busy.contains(&d.id) && !early.contains(&d.webhook_id))
            {
                if jobs.len() >= free {
                    waits_for_a_slot = true;
                    break;
                }
                if let Some(reason) = disabled.get(&delivery.destination) {
                    let reason = format!("the destination is disabled: {reason}");
                    jobs.push(Job::Divert(delivery, reason));
                    continue;
                }
                let gate = self.gate(gates, &ruleset, &delivery.destination, at);
                match gate.admit(at) {
                    Ok(()) => jobs.push(Job::Send(delivery)),
                    Err(Held::Busy) => waits_for_a_send = true,
                    Err(held @ (Held::RateLimited(wait) | Held::CircuitOpen(wait))) => {
                        let wait = time::Duration::try_from(wait.max(Duration::from_millis(10)))
                            .unwrap_or(time::Duration::MINUTE);
                        let retry_at = now.checked_add(wait).unwrap_or(now);
                        let age = Duration::try_from(now - delivery.created_at).unwrap_or_default();
                        // A page must not sit behind an open circuit past its
                        // horizon: it may fail over without another attempt.
                        if matches!(held, Held::CircuitOpen(_))
                            && delivery.is_urgent()
                            && age >= self.settings.horizon.page_age
                            && jobs.len() < free
                        {
                            jobs.push(Job::Expire(delivery, retry_at));
                        } else {
                            postpone.push((delivery.id, retry_at));
                        }
                    }
                }
            }
        });
        if !postpone.is_empty() {
            let store = self.store.clone();
            let saved = tokio::task::spawn_blocking(move || {
                postpone
                    .into_iter()
                    .try_for_each(|(id, at)| store.postpone(id, at))
            })
            .await;
            if !matches!(saved, Ok(Ok(()))) {
                tracing::error!("Postponing held deliveries failed; they are tried again.");
            }
        }
        Taken {
            jobs,
            disabled: Some(disabled.into_keys().collect()),
            waits_for_a_send,
            waits_for_a_slot,
        }
    }

    /// Starts every batch of early pages waiting in the channel.
    fn take_early(
        self: &Arc<Self>,
        early: &mut Option<tokio::sync::mpsc::Receiver<EarlyPages>>,
        shared: &Arc<Shared>,
        disabled: &HashSet<String>,
        slots: usize,
        tasks: &mut JoinSet<()>,
        in_flight: &mut HashMap<tokio::task::Id, Working>,
    ) {
        while let Some(rx) = early.as_mut() {
            match rx.try_recv() {
                Ok(pages) => self.start_early(pages, shared, disabled, slots, tasks, in_flight),
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => *early = None,
            }
        }
    }

    /// Sends the early pages their gates admit now; the others wait for
    /// the outbox like any delivery.
    fn start_early(
        self: &Arc<Self>,
        pages: EarlyPages,
        shared: &Arc<Shared>,
        disabled: &HashSet<String>,
        slots: usize,
        tasks: &mut JoinSet<()>,
        in_flight: &mut HashMap<tokio::task::Id, Working>,
    ) {
        let now = self.clock.now();
        let at = gate_time(now);
        let ruleset = self.ruleset.load();
        // Pages not sent here are the outbox's, which nobody is told to
        // read: look at it once their batch is committed.
        let mut left_to_outbox = false;
        for delivery in pages.deliveries {
            let full = shared.slots.taken() >= slots
                || in_flight.len() >= slots.saturating_mul(TASKS_PER_SLOT);
            if full || disabled.contains(&delivery.destination) {
                left_to_outbox = true;
                continue;
            }
            let admitted = shared.gates.with(|gates| {
                self.gate(gates, &ruleset, &delivery.destination, at)
                    .admit(at)
                    .is_ok()
            });
            if !admitted {
                left_to_outbox = true;
                continue;
            }
            let webhook_id = delivery.webhook_id.clone();
            let this = self.clone();
            let slot = Slot::take(shared);
            let shared = shared.clone();
            let landed = pages.landed.clone();
            let task = tasks
                .spawn(async move { this.deliver(&shared, delivery, Some(landed), slot).await });
            in_flight.insert(task.id(), Working::Early(webhook_id));
        }
        if left_to_outbox {
            let ready = self.ready.clone();
            let mut landed = pages.landed;
            tokio::spawn(async move {
                let _ = landed.wait_for(Option::is_some).await;
                ready.notify_one();
            });
        }
    }

    /// Waits until the batch of an early page is committed; returns the
    /// page's row id, or `None` when there is no row to record on (the
    /// commit failed, or the router stopped first).
    async fn landed(
        &self,
        mut landed: watch::Receiver<Option<bool>>,
        webhook_id: &str,
    ) -> Option<i64> {
        let committed = landed
            .wait_for(Option::is_some)
            .await
            .map(|v| *v == Some(true))
            .unwrap_or(false);
        if !committed {
            tracing::warn!(
                webhook_id,
                "A page was sent before its batch's commit, which did not happen; \
                 the sender was answered with an error and will post the alert again."
            );
            return None;
        }
        let store = self.store.clone();
        let id = webhook_id.to_string();
        match tokio::task::spawn_blocking(move || store.delivery_id(&id)).await {
            Ok(Ok(Some(id))) => Some(id),
            _ => {
                tracing::error!(
                    webhook_id,
                    "A page sent early has no outbox row to record on; it may be sent again."
                );
                None
            }
        }
    }

    /// Fails over a page held by an open circuit past its horizon, or, with
    /// no fallback, leaves it for the circuit's next probe.
    async fn expire(&self, recorder: &Recorder, delivery: Delivery, retry_at: OffsetDateTime) {
        if self.fallback_for(&delivery).await.is_some() {
            let now = self.clock.now();
            let error = "the destination's circuit is open past the page's retry horizon";
            self.divert(recorder, &delivery, error, None, now).await;
            return;
        }
        let store = self.store.clone();
        let id = delivery.id;
        if !matches!(
            tokio::task::spawn_blocking(move || store.postpone(id, retry_at)).await,
            Ok(Ok(()))
        ) {
            tracing::error!(delivery = id, "Postponing a held delivery failed.");
        }
    }

    /// The gate of `destination`, made (or made again, when the rules
    /// changed its limits) as needed.
    fn gate<'g>(
        &self,
        gates: &'g mut HashMap<String, Gate>,
        ruleset: &RuleSet,
        destination: &str,
        at: Duration,
    ) -> &'g mut Gate {
        let limits = self.limits_of(ruleset, destination);
        gates
            .entry(destination.to_string())
            .and_modify(|g| {
                if g.limits() != limits {
                    *g = Gate::new(limits, self.breaker(), at);
                }
            })
            .or_insert_with(|| Gate::new(limits, self.breaker(), at))
    }

    fn breaker(&self) -> Breaker {
        Breaker::new(
            self.settings.breaker_failures,
            self.settings.breaker_cooldown,
        )
    }

    /// A destination's limits: its kind's documented rate, overridden by
    /// its own `concurrency`, `rate` and `burst` settings.
    fn limits_of(&self, ruleset: &RuleSet, name: &str) -> Limits {
        let Some(destination) = ruleset.destination(name) else {
            return Limits::for_kind(
                DestinationKind::Webhook,
                self.settings.destination_concurrency,
            );
        };
        let mut limits = Limits::for_kind(destination.kind, self.settings.destination_concurrency);
        let number = |key| match destination.setting(key) {
            Some(Value::Number(n)) => Some(*n),
            _ => None,
        };
        if let Some(n) = number("concurrency") {
            // Checked > 0 at load; a fraction rounds up to one.
            limits.concurrency = n.ceil() as usize;
        }
        if let Some(rate) = number("rate") {
            limits.rate_per_sec = Some(rate);
            limits.burst = limits.burst.max(1.0).min(rate.max(1.0));
        }
        if let Some(burst) = number("burst") {
            limits.burst = burst;
        }
        limits
    }

    async fn wait_for_next(&self, now: OffsetDateTime) -> Duration {
        let store = self.store.clone();
        let next = tokio::task::spawn_blocking(move || store.next_delivery_due())
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        match next {
            Some(t) if t > now => Duration::try_from(t - now)
                .unwrap_or(self.settings.poll)
                .min(self.settings.poll),
            Some(_) => Duration::ZERO,
            None => self.settings.poll,
        }
    }

    /// Sends one delivery its gate admitted, and records what it came to.
    /// An early page (`landed` set) is recorded once its batch is committed.
    /// The gate and the worker `slot` are given back once the request is
    /// answered.
    async fn deliver(
        &self,
        shared: &Shared,
        mut delivery: Delivery,
        landed: Option<watch::Receiver<Option<bool>>>,
        slot: Slot,
    ) {
        let mut in_flight = InFlight {
            worker: self,
            gates: &shared.gates,
            destination: delivery.destination.clone(),
            healthy: true,
            slot: Some(slot),
        };
        let recorder = &shared.recorder;
        let kind = self.kind_label(&delivery.destination);
        if delivery.kind == ActionKind::Resolve && delivery.attempts == 0 {
            self.follow_failovers(&delivery).await;
        }
        let sent = self.attempt(&delivery).await;
        // The breaker counts failures of the receiver, not answers about
        // the request (a 400 says the receiver works), whether or not the
        // attempt can be recorded.
        if let Sent::Attempt(attempt) = &sent {
            in_flight.healthy = !matches!(attempt.outcome, Outcome::Retry { .. });
        }
        // An early page keeps its worker slot until its batch is
        // committed, so the pages sent for a batch whose commit fails stay
        // as few as the slots.
        let slot = if landed.is_some() {
            in_flight.slot.take()
        } else {
            None
        };
        drop(in_flight);
        if let Some(landed) = landed {
            match self.landed(landed, &delivery.webhook_id).await {
                Some(id) => delivery.id = id,
                None => return,
            }
        }
        drop(slot);
        let attempt = match sent {
            Sent::NotSent(status, error) => {
                let now = self.clock.now();
                let record = AttemptRecord {
                    status,
                    next_attempt_at: None,
                    http_status: None,
                    error: Some(error),
                    at: now,
                    detail: None,
                };
                self.finish(recorder, &delivery, &kind, record).await;
                return;
            }
            Sent::Attempt(attempt) => attempt,
        };
        let now = self.clock.now();
        let detail = AttemptDetail {
            outcome: outcome_label(&attempt.outcome),
            elapsed_ms: u64::try_from(attempt.elapsed.as_millis()).unwrap_or(u64::MAX),
            response_headers: attempt.response_headers.clone(),
            response_excerpt: attempt.response_excerpt.clone(),
        };
        if !matches!(attempt.outcome, Outcome::Delivered) {
            self.metrics
                .delivery_failures
                .get_or_create(&DeliveryFailure {
                    destination: delivery.destination.clone(),
                    kind: kind.clone(),
                    reason: detail.outcome.clone(),
                })
                .inc();
        }
        let record = |status, next_attempt_at, error: Option<String>| AttemptRecord {
            status,
            next_attempt_at,
            http_status: attempt.status,
            error,
            at: now,
            detail: Some(detail.clone()),
        };
        let excerpt = &attempt.response_excerpt;
        match attempt.outcome {
            Outcome::Delivered => {
                self.finish(
                    recorder,
                    &delivery,
                    &kind,
                    record(DeliveryStatus::Delivered, None, None),
                )
                .await;
            }
            outcome if outcome.disables_destination() => {
                let reason = format!("the receiver answered {}", detail.outcome);
                self.disable(&delivery.destination, &kind, &reason, now)
                    .await;
                let error = format!("{reason}; the destination is disabled: {excerpt}");
                self.divert(
                    recorder,
                    &delivery,
                    &error,
                    Some(record(DeliveryStatus::Dead, None, None)),
                    now,
                )
                .await;
            }
            Outcome::Terminal { reason } => {
                let error = format!("{reason}: {excerpt}");
                self.finish(
                    recorder,
                    &delivery,
                    &kind,
                    record(DeliveryStatus::Dead, None, Some(error)),
                )
                .await;
            }
            Outcome::Retry { after, reason } => {
                let attempts_made = delivery.attempts.saturating_add(1);
                let age = Duration::try_from(now - delivery.created_at).unwrap_or_default();
                let fallback = if delivery.is_urgent() {
                    self.fallback_for(&delivery).await
                } else {
                    None
                };
                let decision = self.settings.horizon.after_failure(
                    delivery.is_urgent(),
                    attempts_made,
                    age,
                    fallback.is_some(),
                );
                match decision {
                    AfterFailure::Retry => {
                        let next =
                            self.next_attempt_at(&delivery, attempts_made, after, reason, now);
                        let error = format!("{reason}: {excerpt}");
                        self.finish(
                            recorder,
                            &delivery,
                            &kind,
                            record(DeliveryStatus::Pending, Some(next), Some(error)),
                        )
                        .await;
                    }
                    AfterFailure::FailOver => {
                        let error = format!(
                            "{reason} after {attempts_made} attempts over {}s: {excerpt}",
                            age.as_secs()
                        );
                        self.divert(
                            recorder,
                            &delivery,
                            &error,
                            Some(record(DeliveryStatus::Dead, None, None)),
                            now,
                        )
                        .await;
                    }
                    AfterFailure::Dead => {
                        let error = format!(
                            "past the retry horizon after {attempts_made} attempts over {}s, last {reason}: {excerpt}",
                            age.as_secs()
                        );
                        self.finish(
                            recorder,
                            &delivery,
                            &kind,
                            record(DeliveryStatus::Dead, None, Some(error)),
                        )
                        .await;
                    }
                }
            }
        }
    }

    /// When to try again: the backoff or the receiver's `Retry-After`,
    /// never sooner than the minimum penalty after a 429 or a timeout.
    fn next_attempt_at(
        &self,
        delivery: &Delivery,
        attempts_made: u32,
        after: Option<Duration>,
        reason: RetryReason,
        now: OffsetDateTime,
    ) -> OffsetDateTime {
        let mut delay = self.policy.retry_delay(
            delivery.attempts,
            jitter(&delivery.webhook_id, attempts_made),
            after,
        );
        delay = with_min_penalty(delay, reason, self.settings.min_penalty);
        // Saturate: a delay past the calendar (a huge Retry-After under a
        // huge clamp) waits a year rather than panicking.
        let year = time::Duration::days(365);
        let wait = time::Duration::try_from(delay).unwrap_or(year).min(year);
        now.checked_add(wait).unwrap_or(now + time::Duration::DAY)
    }

    /// The fallback destination for this delivery's incident severity, when
    /// it has one it can fail over to: not itself a failover (no chains),
    /// not the same destination, and not disabled.
    async fn fallback_for(&self, delivery: &Delivery) -> Option<String> {
        if delivery.failover_of.is_some() {
            return None;
        }
        let store = self.store.clone();
        let incident_id = delivery.incident_id;
        let (incident, disabled) = tokio::task::spawn_blocking(move || {
            Ok::<_, crate::store::StoreError>((
                store.incident(incident_id)?,
                store.disabled_destinations()?,
            ))
        })
        .await
        .ok()?
        .ok()?;
        let severity = incident?.0.severity?;
        let ruleset = self.ruleset.load();
        let policy = ruleset.policy(severity)?;
        let name = &ruleset.destinations.get(policy.fallback?)?.name;
        let usable = *name != delivery.destination && !disabled.iter().any(|d| d.name == *name);
        usable.then(|| name.clone())
    }

    /// Gives up on a delivery's destination: sends a copy to the fallback
    /// when there is one (the original becomes `failed_over`, linked from
    /// the copy, and the timeline says so); otherwise a dead letter.
    /// `record` is the attempt that led here, if one was made.
    async fn divert(
        &self,
        recorder: &Recorder,
        delivery: &Delivery,
        error: &str,
        record: Option<AttemptRecord>,
        now: OffsetDateTime,
    ) {
        let kind = self.kind_label(&delivery.destination);
        let base = record.unwrap_or(AttemptRecord {
            status: DeliveryStatus::Dead,
            next_attempt_at: None,
            http_status: None,
            error: None,
            at: now,
            detail: None,
        });
        let Some(fallback) = self.fallback_for(delivery).await else {
            let record = AttemptRecord {
                status: DeliveryStatus::Dead,
                error: Some(format!("{error}; no fallback destination to fail over to")),
                ..base
            };
            self.finish(recorder, delivery, &kind, record).await;
            return;
        };
        let record = AttemptRecord {
            status: DeliveryStatus::FailedOver,
            error: Some(format!("{error}; failed over to \"{fallback}\"")),
            ..base
        };
        let to = NewDelivery {
            incident_id: delivery.incident_id,
            destination: fallback.clone(),
            kind: delivery.kind,
            webhook_id: format!("{}_fo", delivery.webhook_id),
            body: delivery.body.clone(),
            created_at: now,
        };
        let note = TimelineEntry {
            at: now,
            kind: TimelineKind::FailedOver,
            actor: None,
            text: format!(
                "The {} to \"{}\" failed over to \"{fallback}\" (delivery {}).",
                delivery.kind.as_str(),
                delivery.destination,
                delivery.id
            ),
            alert: None,
        };
        let store = self.store.clone();
        let id = delivery.id;
        let saved =
            tokio::task::spawn_blocking(move || store.fail_over(id, &record, &to, &note)).await;
        match saved {
            Ok(Ok(new_id)) => {
                self.count(delivery, "failed_over");
                tracing::error!(
                    destination = %delivery.destination, fallback = %fallback,
                    webhook_id = %delivery.webhook_id, delivery = id, failover = new_id,
                    error,
                    "A delivery gave up on its destination and failed over to the fallback."
                );
                self.ready.notify_one();
            }
            _ => tracing::error!(
                delivery = id,
                "Recording a failover failed; the delivery stays pending."
            ),
        }
    }

    /// A resolve to a destination whose page failed over also goes to
    /// where the page went, so the fallback's alert is closed too. Its
    /// copy is enqueued after the page's copy, so it cannot overtake it.
    async fn follow_failovers(&self, resolve: &Delivery) {
        let store = self.store.clone();
        let resolve = resolve.clone();
        let followed = tokio::task::spawn_blocking(move || {
            let all = store.deliveries_for(resolve.incident_id)?;
            let mut targets: Vec<&str> = Vec::new();
            for original in all.iter().filter(|d| {
                d.destination == resolve.destination
                    && d.status == DeliveryStatus::FailedOver
                    && d.id < resolve.id
            }) {
                for copy in all.iter().filter(|c| c.failover_of == Some(original.id)) {
                    if !targets.contains(&copy.destination.as_str()) {
                        targets.push(&copy.destination);
                    }
                }
            }
            let deliveries: Vec<NewDelivery> = targets
                .iter()
                .enumerate()
                .map(|(i, target)| NewDelivery {
                    incident_id: resolve.incident_id,
                    destination: (*target).to_string(),
                    kind: ActionKind::Resolve,
                    // The same id on every try: a second look enqueues nothing.
                    webhook_id: match i {
                        0 => format!("{}_fo", resolve.webhook_id),
                        n => format!("{}_fo{n}", resolve.webhook_id),
                    },
                    body: resolve.body.clone(),
                    created_at: resolve.created_at,
                })
                .collect();
            let count = deliveries.len();
            store.commit(&crate::store::CommitBatch {
                deliveries,
                ..Default::default()
            })?;
            Ok::<_, crate::store::StoreError>(count)
        })
        .await;
        match followed {
            Ok(Ok(0)) => {}
            Ok(Ok(count)) => {
                tracing::info!(
                    count,
                    "A resolve follows its incident's failed-over page to the fallback."
                );
                self.ready.notify_one();
            }
            _ => tracing::error!("Sending a resolve after its failed-over page failed."),
        }
    }

    /// Marks a destination disabled, loudly.
    async fn disable(&self, name: &str, kind: &str, reason: &str, now: OffsetDateTime) {
        let store = self.store.clone();
        let (owned, why) = (name.to_string(), reason.to_string());
        let saved =
            tokio::task::spawn_blocking(move || store.disable_destination(&owned, &why, now)).await;
        if !matches!(saved, Ok(Ok(()))) {
            tracing::error!(destination = %name, "Recording a disabled destination failed.");
        }
        self.metrics
            .destination_disabled
            .get_or_create(&DestinationLabel {
                destination: name.to_string(),
            })
            .set(1);
        tracing::error!(
            destination = %name, kind, reason,
            "The receiver says this destination is gone: it is disabled until the rules are reloaded or it is re-enabled, and its work goes to the fallback."
        );
    }

    /// Records a final or retry decision, with metrics and a log line.
    async fn finish(
        &self,
        recorder: &Recorder,
        delivery: &Delivery,
        kind: &str,
        record: AttemptRecord,
    ) {
        let outcome = match record.status {
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Pending => "retry",
            DeliveryStatus::Dead => "dead",
            DeliveryStatus::Skipped => "skipped",
            DeliveryStatus::FailedOver => "failed_over",
        };
        self.count(delivery, outcome);
        let error = record.error.as_deref().unwrap_or("");
        match record.status {
            DeliveryStatus::Dead => {
                self.metrics
                    .dead_letters
                    .get_or_create(&DestinationKindLabel {
                        destination: delivery.destination.clone(),
                        kind: kind.to_string(),
                    })
                    .inc();
                tracing::warn!(
                    destination = %delivery.destination, webhook_id = %delivery.webhook_id,
                    error, "A delivery failed for good and is kept as a dead letter."
                );
            }
            DeliveryStatus::Pending => tracing::info!(
                destination = %delivery.destination, webhook_id = %delivery.webhook_id,
                error, "A delivery attempt failed; it will be retried."
            ),
            _ => {}
        }
        if !recorder.record(delivery.id, record).await {
            // The row stays pending: the receiver may see it again, and
            // dedupes on webhook-id.
            tracing::error!(
                delivery = delivery.id,
                "Recording a delivery attempt failed."
            );
        }
    }

    fn count(&self, delivery: &Delivery, outcome: &str) {
        self.metrics
            .deliveries
            .get_or_create(&DestinationOutcome {
                destination: delivery.destination.clone(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// The destination's kind as a metric label (`unknown` when it left
    /// the rule set).
    fn kind_label(&self, name: &str) -> String {
        self.ruleset
            .load()
            .destination(name)
            .map_or("unknown", |d| d.kind.as_str())
            .to_string()
    }

    /// Makes one attempt. Settings problems come back as
    /// [`Sent::NotSent`]; what a request's outcome means for the delivery
    /// is decided by [`Worker::deliver`].
    pub(crate) async fn attempt(&self, delivery: &Delivery) -> Sent {
        let now = self.clock.now();
        let finished = |status, error: &str| Sent::NotSent(status, error.to_string());
        let ruleset = self.ruleset.load();
        let Some(destination) = ruleset.destination(&delivery.destination) else {
            return finished(
                DeliveryStatus::Dead,
                "the destination is no longer in the rule set",
            );
        };
        // Each kind renders its vendor's request from the stored message
        // at send time; a destination that cannot be sent to as configured
        // (a missing setting, an unset env var) is a dead letter at once.
        let request = match vendor::prepare(
            destination,
            &ruleset.templates,
            delivery.body.as_bytes(),
            &delivery.webhook_id,
            now.unix_timestamp(),
        ) {
            Ok((request, template_failures)) => {
                // A broken template must not stop a page: the built-in
                // words went instead; say so, and count it.
                for failure in template_failures {
                    tracing::warn!(
                        destination = %failure.destination, setting = failure.setting,
                        error = %failure.error,
                        "A message template failed; the built-in words were sent instead."
                    );
                    self.metrics
                        .template_failures
                        .get_or_create(&DestinationLabel {
                            destination: failure.destination,
                        })
                        .inc();
                }
                request
            }
            Err(problem) => return finished(DeliveryStatus::Dead, &problem.to_string()),
        };
        let kind = destination.kind;
        let attempt = self
            .sender
            .send_prepared(
                &request,
                timeout_of(destination).unwrap_or(self.settings.request_timeout),
                |reply| vendor::classify(kind, reply),
            )
            .await;
        self.metrics
            .delivery_latency
            .get_or_create(&DestinationLabel {
                destination: delivery.destination.clone(),
            })
            .observe(attempt.elapsed.as_secs_f64());
        Sent::Attempt(attempt)
    }
}

/// A short label for an outcome: `delivered`, `http_503`, `timeout`, `gone`...
fn outcome_label(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Delivered => "delivered".to_string(),
        Outcome::Retry { reason, .. } => reason.to_string(),
        Outcome::Terminal { reason } => reason.to_string(),
    }
}

/// Forgets a finished task (a panicked one is logged, and its row stays
/// pending to be tried again); true when it worked on an outbox row (its end
/// may have freed a slot for, or left, work in the outbox), false for an
/// early page, which the outbox never handed out.
fn reap(
    done: Result<(tokio::task::Id, ()), tokio::task::JoinError>,
    in_flight: &mut HashMap<tokio::task::Id, Working>,
) -> bool {
    let task = match done {
        Ok((task, ())) => task,
        Err(e) => {
            tracing::error!(error = %e, "A delivery task failed; its delivery stays pending.");
            e.id()
        }
    };
    !matches!(in_flight.remove(&task), Some(Working::Early(_)))
}

/// The destination's own `timeout`, if it sets one.
fn timeout_of(destination: &crate::rules::Destination) -> Option<Duration> {
    match destination.setting("timeout") {
        Some(Value::Duration(secs)) => Some(Duration::from_secs(*secs)),
        _ => None,
    }
}

/// A jitter in [0, 1) that differs between deliveries and attempts, so
/// retries after an outage spread out; derived rather than random so a
/// schedule can be reproduced.
fn jitter(webhook_id: &str, attempt: u32) -> f64 {
    let mut h = std::hash::DefaultHasher::new();
    webhook_id.hash(&mut h);
    attempt.hash(&mut h);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

//! The commit thread: writes routed batches to the store in the order the
//! router routed them, one transaction at a time, and answers their
//! requests once they are durable.
//!
//! The router hands each part it routed over at once and goes on routing;
//! parts that wait while a transaction runs are joined into the next one
//! (group commit). The router used to wait for each commit itself: a
//! commit that ended while it routed waited for that routing to end, and
//! for the router's task to be polled, before the next transaction began.
//! The writer then stood idle a fifth of a storm of new alerts.
//!
//! A commit is durable once its WAL is synced: a second thread does that
//! ([`Flusher`]) and then answers the part's requests, while this one
//! writes the next transaction. Of several parts waiting for a sync, one
//! sync covers them all.
//!
//! A refused commit refuses every part queued behind it too: they were
//! routed on top of state the store does not have. The router hears of
//! the refusal, reloads its state from the store, and says so
//! ([`Committer::resumed`]); parts after that are committed again.
//!
//! A failed sync is the end: after one, a later sync that succeeds proves
//! nothing (the kernel may have dropped the pages it could not write, and
//! SQLite's recovery stops at the first frame that is not there), so
//! neither thread commits or answers anything after it, and the router
//! stops, as `/readyz` then says. So does a store that panicked in a
//! commit (its connection's state is unknown), or a thread gone.
//!
//! The router may run at most [`PARTS_IN_FLIGHT`] parts ahead of the
//! answers, so a stalled disk holds the requests back instead of filling
//! memory with routed parts.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};

use super::{IngestOutcome, PipelineError};
use crate::slo::Recorded;
use crate::store::{CommitBatch, Flush, Store, StoreError};

/// Parts routed and not yet answered (or refused), at most.
pub(super) const PARTS_IN_FLIGHT: usize = 64;

/// What the router hears from the commit and flush threads.
pub(super) enum Refusal {
    /// A commit failed: reload state from the store, then refuse these
    /// requests (so a request refused never sees its own effect after),
    /// then resume.
    Commit(String, Vec<Reply>),
    /// Requests of a part routed on refused state: refused once the
    /// router reloaded (it hears of the failed commit first).
    Queued(String, Vec<Reply>),
    /// A sync failed, a commit panicked or a thread is gone: the store can
    /// no longer say what is durable, and nothing more is written.
    Durability(String),
}

/// Why the store takes no more writes, once it does not: set once, by
/// either thread, read by both.
type Broken = Arc<std::sync::OnceLock<String>>;

/// Says the store takes no more writes (the first reason stays), and tells
/// the router.
fn break_store(broken: &Broken, refusals: &mpsc::UnboundedSender<Refusal>, error: String) {
    tracing::error!(%error, "A commit could not be made durable: no more writes are taken, and what waits is refused.");
    if broken.set(error.clone()).is_ok() {
        let _ = refusals.send(Refusal::Durability(error));
    }
}

/// A reply owed once the part it belongs to commits.
pub(super) enum Reply {
    Ingest(
        oneshot::Sender<Result<IngestOutcome, PipelineError>>,
        IngestOutcome,
    ),
    Human(oneshot::Sender<Result<(), PipelineError>>),
    Slo(oneshot::Sender<Result<Recorded, PipelineError>>, Recorded),
}

/// What the router routed, ready to commit.
pub(super) struct Part {
    pub batch: CommitBatch,
    pub replies: Vec<Reply>,
    /// Commands routed into it, to bound how many share a transaction.
    pub commands: usize,
    /// Deliveries the worker must look for in the outbox once committed
    /// (first pages handed over early need no look).
    pub has_deliveries: bool,
    /// Told whether the early pages of each part were committed.
    pub landed: Vec<watch::Sender<Option<bool>>>,
    /// Its places among the parts in flight, given back once answered.
    permits: Vec<OwnedSemaphorePermit>,
}

impl Part {
    /// A part routed, to be sent.
    pub fn new(
        batch: CommitBatch,
        replies: Vec<Reply>,
        commands: usize,
        has_deliveries: bool,
        landed: Vec<watch::Sender<Option<bool>>>,
    ) -> Part {
        Part {
            batch,
            replies,
            commands,
            has_deliveries,
            landed,
            permits: Vec::new(),
        }
    }
}

impl Part {
    /// Takes a part routed after this one into it: the two then write
    /// what they would one after the other.
    fn absorb(&mut self, later: Part) {
        self.batch.append(later.batch);
        self.replies.extend(later.replies);
        self.commands += later.commands;
        self.has_deliveries |= later.has_deliveries;
        self.landed.extend(later.landed);
        self.permits.extend(later.permits);
    }
}

enum Message {
    Part(Box<Part>),
    /// Answered once every part before it is committed or refused.
    Drained(oneshot::Sender<()>),
    /// The router reloaded its state after a refusal: parts after this
    /// were routed on what the store holds.
    Resumed,
}

#[derive(Default)]
struct Queue {
    messages: VecDeque<Message>,
    /// Set when the router is gone: the thread ends once the queue is empty.
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The router's end of the commit thread.
pub(super) struct Committer {
    shared: Arc<Shared>,
    max_commands: usize,
    in_flight: Arc<Semaphore>,
}

impl Committer {
    /// Starts the two threads; the receiver hears of each refused commit
    /// (its error's text) once, at the first part refused, and of the end
    /// of writes (a failed sync, a panic, a thread gone).
    pub fn start(
        store: Arc<dyn Store>,
        deliveries_ready: Arc<Notify>,
        max_commands: usize,
    ) -> std::io::Result<(Committer, mpsc::UnboundedReceiver<Refusal>)> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
        });
        let (refusals, refused) = mpsc::unbounded_channel();
        let (flushes, waiting) = std::sync::mpsc::channel();
        let broken = Broken::default();
        let flusher = Flusher {
            waiting,
            deliveries_ready,
            refusals: refusals.clone(),
            broken: broken.clone(),
        };
        std::thread::Builder::new()
            .name("sevroute-flush".into())
            .spawn(move || flusher.run())?;
        let thread = Thread {
            shared: shared.clone(),
            store,
            flushes,
            refusals,
            broken,
        };
        std::thread::Builder::new()
            .name("sevroute-commit".into())
            .spawn(move || thread.run())?;
        Ok((
            Committer {
                shared,
                max_commands: max_commands.max(1),
                in_flight: Arc::new(Semaphore::new(PARTS_IN_FLIGHT)),
            },
            refused,
        ))
    }

    fn push(&self, message: Message) {
        self.shared.queue().messages.push_back(message);
        self.shared.wake.notify_one();
    }

    /// Queues a part, once fewer than [`PARTS_IN_FLIGHT`] wait for their
    /// answers. One still waiting behind a running transaction takes it
    /// in, so the thread finds one batch, not many to join.
    pub async fn send(&self, mut part: Part) {
        if let Ok(permit) = self.in_flight.clone().acquire_owned().await {
            part.permits.push(permit);
        }
        let mut queue = self.shared.queue();
        if let Some(Message::Part(waiting)) = queue.messages.back_mut()
            && waiting.commands + part.commands <= self.max_commands
        {
            waiting.absorb(part);
            return;
        }
        queue.messages.push_back(Message::Part(Box::new(part)));
        drop(queue);
        self.shared.wake.notify_one();
    }

    /// Waits until every part sent so far is committed and flushed (its
    /// requests answered), or refused. `Err` when the thread is gone.
    pub async fn drained(&self) -> Result<(), ()> {
        let (done, wait) = oneshot::channel();
        self.push(Message::Drained(done));
        wait.await.map_err(|_| ())
    }

    /// Says the router reloaded its state after a refusal.
    pub fn resumed(&self) {
        self.push(Message::Resumed);
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.shared.queue().closed = true;
        self.shared.wake.notify_one();
    }
}

/// The thread's side.
struct Thread {
    shared: Arc<Shared>,
    store: Arc<dyn Store>,
    /// Committed parts, to the flusher.
    flushes: std::sync::mpsc::Sender<Flushing>,
    refusals: mpsc::UnboundedSender<Refusal>,
    broken: Broken,
}

impl Thread {
    fn run(self) {
        // The error of the refused commit, until the router resumes.
        let mut refusing: Option<String> = None;
        loop {
            let message = {
                let mut queue = self.shared.queue();
                loop {
                    if let Some(message) = queue.messages.pop_front() {
                        break message;
                    }
                    if queue.closed {
                        return;
                    }
                    queue = self
                        .shared
                        .wake
                        .wait(queue)
                        .unwrap_or_else(|p| p.into_inner());
                }
            };
            let part = match message {
                Message::Part(part) => *part,
                // Answered once the parts before it are flushed too.
                Message::Drained(done) => {
                    if let Err(unsent) = self.flushes.send(Flushing::Drained(done))
                        && let Flushing::Drained(done) = unsent.0
                    {
                        let _ = done.send(());
                    }
                    continue;
                }
                Message::Resumed => {
                    refusing = None;
                    continue;
                }
            };
            if let Some(error) = self.broken.get() {
                tell_landed(part.landed, false);
                refuse(part.replies, error);
                continue;
            }
            if let Some(error) = &refusing {
                tell_landed(part.landed, false);
                if let Err(unsent) = self
                    .refusals
                    .send(Refusal::Queued(error.clone(), part.replies))
                    && let Refusal::Queued(error, replies) = unsent.0
                {
                    refuse(replies, &error);
                }
                continue;
            }
            let Part {
                batch,
                replies,
                has_deliveries,
                landed,
                permits,
                ..
            } = part;
            let Ok(committed) = catch_unwind(AssertUnwindSafe(|| {
                self.store.commit_to_flush(Arc::new(batch))
            })) else {
                // What the panic left of the connection is unknown.
                let error = "the commit panicked".to_string();
                tell_landed(landed, false);
                refuse(replies, &error);
                break_store(&self.broken, &self.refusals, error);
                continue;
            };
            match committed {
                Ok(flush) => {
                    let sent = self.flushes.send(Flushing::Committed {
                        flush,
                        replies,
                        has_deliveries,
                        landed,
                        permits,
                    });
                    if let Err(unsent) = sent {
                        let error = "the flush thread is gone".to_string();
                        if let Flushing::Committed { replies, .. } = unsent.0 {
                            refuse(replies, &error);
                        }
                        break_store(&self.broken, &self.refusals, error);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "The commit failed; the batch, and those routed after it, are refused and state is reloaded from the store.");
                    let error = e.to_string();
                    tell_landed(landed, false);
                    if let Err(unsent) = self.refusals.send(Refusal::Commit(error.clone(), replies))
                        && let Refusal::Commit(error, replies) = unsent.0
                    {
                        refuse(replies, &error);
                    }
                    refusing = Some(error);
                }
            }
        }
    }
}

/// A committed part on its way to its requests, or a wait for those
/// before it.
enum Flushing {
    Committed {
        flush: Flush,
        replies: Vec<Reply>,
        has_deliveries: bool,
        landed: Vec<watch::Sender<Option<bool>>>,
        /// Dropped once the part is answered.
        permits: Vec<OwnedSemaphorePermit>,
    },
    Drained(oneshot::Sender<()>),
}

/// The thread that makes commits durable and answers their requests.
struct Flusher {
    waiting: std::sync::mpsc::Receiver<Flushing>,
    deliveries_ready: Arc<Notify>,
    refusals: mpsc::UnboundedSender<Refusal>,
    broken: Broken,
}

impl Flusher {
    fn run(self) {
        while let Ok(first) = self.waiting.recv() {
            let mut parts = vec![first];
            parts.extend(self.waiting.try_iter());
            // The last flush covers every commit before it.
            let last = parts.iter_mut().rev().find_map(|part| match part {
                Flushing::Committed { flush, .. } => Some(std::mem::replace(flush, Flush::done())),
                Flushing::Drained(_) => None,
            });
            if self.broken.get().is_none() {
                let flushed = last.map_or(Ok(()), |flush| {
                    catch_unwind(AssertUnwindSafe(|| flush.run())).unwrap_or_else(|_| {
                        Err(StoreError::Flush {
                            path: "the WAL".into(),
                            message: "the sync panicked".into(),
                        })
                    })
                });
                if let Err(e) = flushed {
                    break_store(&self.broken, &self.refusals, e.to_string());
                }
            }
            let failed = self.broken.get();
            for part in parts {
                match part {
                    Flushing::Committed {
                        replies,
                        has_deliveries,
                        landed,
                        permits,
                        ..
                    } => {
                        // The rows are there either way: the worker keeps
                        // the early pages it sent as recorded on them.
                        tell_landed(landed, true);
                        if has_deliveries {
                            self.deliveries_ready.notify_one();
                        }
                        match failed {
                            None => answer(replies),
                            Some(error) => refuse(replies, error),
                        }
                        // Answered: the router may route another part.
                        drop(permits);
                    }
                    Flushing::Drained(done) => {
                        let _ = done.send(());
                    }
                }
            }
        }
    }
}

/// Tells the worker how parts with early pages came out.
fn tell_landed(landed: Vec<watch::Sender<Option<bool>>>, committed: bool) {
    for landed in landed {
        let _ = landed.send(Some(committed));
    }
}

/// Answers the requests of a committed part.
fn answer(replies: Vec<Reply>) {
    for reply in replies {
        match reply {
            Reply::Ingest(tx, outcome) => {
                let _ = tx.send(Ok(outcome));
            }
            Reply::Human(tx) => {
                let _ = tx.send(Ok(()));
            }
            Reply::Slo(tx, recorded) => {
                let _ = tx.send(Ok(recorded));
            }
        }
    }
}

/// Answers every request of a part the store refused.
pub(super) fn refuse(replies: Vec<Reply>, message: &str) {
    for reply in replies {
        let err = || {
            PipelineError::Store(StoreError::Refused {
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
            Reply::Slo(tx, _) => {
                let _ = tx.send(Err(err()));
            }
        }
    }
}

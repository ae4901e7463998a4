//! SQLite store, the embedded default: one file in WAL mode with
//! `synchronous=FULL`, so a commit that returned survives a crash or power
//! loss. Callers batch writes (group commit), so the fsync is shared. The
//! pipeline's batches use [`Store::commit_to_flush`]: the WAL is synced
//! after the commit, on another thread, before any request is answered.
//!
//! Incidents are kept as one JSON document per row beside the columns that
//! are queried (status, severity, key, next timer); the JSON carries the
//! timers, so they survive restarts.

use std::ffi::c_int;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use time::OffsetDateTime;

use super::alert_codec;
use crate::route::{ActionKind, Incident, TimelineEntry, TrackedAlert};
use crate::store::{
    AttemptLog, AttemptRecord, CommitBatch, Delivery, DeliveryFilter, DeliveryStatus,
    DisabledDestination, Flush, IncidentFilter, NewDelivery, OutboxStats, SloSampleRecord, Store,
    StoreError,
};

/// The schema this version reads and writes. Version 2 added the
/// `incident_alerts`, `delivery_attempts`, `disabled_destinations` and
/// `slo_samples` tables and `outbox.failover_of`; a version-1 store is
/// migrated at open (all of it additive), and then refused by version-1
/// binaries, which would read incidents without their alerts.
/// Version 3 added `incident_alerts.last_seen` and `.ends_at` (a refresh
/// written as those two values); a version-2 store gains them at open,
/// and is then refused by version-2 binaries, which would read the stale
/// values inside `state`.
/// Version 4 added `alert_seen_log` and `incident_alerts.seen_mark` (plain
/// refreshes appended to a log instead of updating each alert's row); a
/// version-3 store gains them at open, and is then refused by version-3
/// binaries, which would not read the log.
/// Version 5 added `incident_alerts_recent` and `timeline_recent` (whole
/// alert writes and timeline lines appended to tables without an index,
/// folded into the indexed ones in the background); a version-4 store
/// gains them at open, and is then refused by version-4 binaries, which
/// would not read them. Version 6 stores an incident's alerts in a
/// compact binary form (a BLOB `state`, see `alert_codec`) beside the JSON
/// text earlier versions wrote; a version-5 store is marked 6 at open, and
/// then refused by version-5 binaries, which would not read the BLOBs.
const SCHEMA_VERSION: &str = "6";

/// Schema, applied idempotently at open. `schema_version` lets later
/// versions migrate; a store with another version is refused at open.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '6');
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    status TEXT NOT NULL,
    severity TEXT,
    declared_at INTEGER NOT NULL,
    next_due_at INTEGER,
    state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_status ON incidents (status, id);
CREATE TABLE IF NOT EXISTS timeline (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL,
    entry TEXT NOT NULL
);
-- Each alert of an incident in its own row, so a change to one alert
-- rewrites that row, not the whole incident. (Incident rows written by
-- earlier versions carry their alerts inside `state`; both are read.)
-- `last_seen` and `ends_at` (RFC 3339), while `last_seen` is set,
-- override the JSON's: a plain refresh folded in from `alert_seen_log`
-- (or written directly by version 3). A write of the whole alert clears
-- them and sets `seen_mark` to the last log id given out before it, so
-- older log entries no longer apply to it.
CREATE TABLE IF NOT EXISTS incident_alerts (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    last_seen TEXT,
    ends_at TEXT,
    seen_mark INTEGER NOT NULL DEFAULT 0
);
-- Plain refreshes (nothing changed but when the alert was last seen and
-- when it ends), appended in commit order: a batch of them writes a few
-- sequential pages instead of one page per alert scattered over
-- `incident_alerts`. An alert's newest entry with an id above its row's
-- `seen_mark` holds its current values; entries are folded into the rows
-- in the background and deleted. Ids only grow, across folds and
-- restarts (`meta.seen_log_folded` keeps the highest id folded).
CREATE TABLE IF NOT EXISTS alert_seen_log (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    ends_at TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS incident_alerts_key ON incident_alerts (incident_id, fingerprint);
CREATE INDEX IF NOT EXISTS timeline_incident ON timeline (incident_id, id);
CREATE TABLE IF NOT EXISTS alerts (
    fingerprint TEXT PRIMARY KEY,
    incident_id INTEGER,
    received_at INTEGER NOT NULL,
    alert TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL,
    destination TEXT NOT NULL,
    kind TEXT NOT NULL,
    webhook_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    last_http_status INTEGER,
    last_error TEXT,
    finished_at INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS outbox_incident ON outbox (incident_id, id);
-- The due query's order within a destination: pages and escalations, then
-- the rest, each by when due (and by id, the rowid that ends every index).
-- Pending rows only: the outbox keeps every row it sent.
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox
    (destination, (kind NOT IN ('page', 'escalate')), next_attempt_at)
    WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS delivery_attempts (
    id INTEGER PRIMARY KEY,
    delivery_id INTEGER NOT NULL,
    at INTEGER NOT NULL,
    status TEXT NOT NULL,
    http_status INTEGER,
    error TEXT,
    outcome TEXT NOT NULL DEFAULT '',
    elapsed_ms INTEGER NOT NULL DEFAULT 0,
    response_headers TEXT NOT NULL DEFAULT '',
    response_excerpt TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS delivery_attempts_delivery ON delivery_attempts (delivery_id, id);
CREATE TABLE IF NOT EXISTS disabled_destinations (
    name TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS slo_samples (
    id INTEGER PRIMARY KEY,
    slo TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    at INTEGER NOT NULL,
    cumulative INTEGER NOT NULL,
    good REAL NOT NULL,
    total REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS slo_samples_at ON slo_samples (slo, at);
-- Whole writes of incident alerts and timeline lines, appended in commit
-- order to tables without an index. New alerts of a storm land all over
-- the per-incident indexes of `incident_alerts` and `timeline`, and each
-- commit rewrote hundreds of their 4 KiB pages; appended here they fill
-- a few pages at the tables' ends. They are folded into the indexed
-- tables in the background, many at a time, in key order, and deleted;
-- reads take both. An alert's newest row here (by id) holds it whole,
-- with the `seen_mark` its write had; a line keeps its id in `timeline`,
-- given out by the writer across both tables.
CREATE TABLE IF NOT EXISTS incident_alerts_recent (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    seen_mark INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS timeline_recent (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL,
    entry TEXT NOT NULL
);
"#;

/// Columns added after their table first shipped, by table: added at open
/// when missing. `outbox.failover_of` came within schema 1 (older stores
/// keep working without it); the `incident_alerts` pair is schema 3's,
/// `seen_mark` schema 4's.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("outbox", "failover_of", "INTEGER"),
    ("incident_alerts", "last_seen", "TEXT"),
    ("incident_alerts", "ends_at", "TEXT"),
    ("incident_alerts", "seen_mark", "INTEGER NOT NULL DEFAULT 0"),
];

/// The page size of a new store: 16 KiB rather than SQLite's 4 KiB. A
/// storm's commit appends about a kilobyte per new alert, and SQLite
/// writes each page to the WAL with its own `pwrite` (and copies it again
/// at the checkpoint): a quarter of the writes cut the commit's share of
/// the CPU, and new alerts took 16.0-17.5 us of server CPU each instead
/// of 18.5-19.9 (docs/performance.md). 32 KiB gained little more; 64 KiB made
/// refreshes and loaded latency worse.
const PAGE_SIZE: i64 = 16384;

/// Deliveries per destination the due query hands out at once: enough to
/// keep a destination busy, few enough that one destination's backlog
/// never crowds the others out of the batch.
const DUE_PER_DESTINATION: i64 = 8;

/// Prepared statements kept per connection: every statement the hot
/// paths run (the commit's eight, the delivery worker's) stays prepared,
/// where rusqlite's default of 16 is close to what the writer uses.
const STATEMENT_CACHE: usize = 32;

/// Reader connections kept open at most: the delivery worker, the API
/// handlers and the metrics scrape each hold one briefly; a fifth caller
/// waits for one to come back rather than opening (and caching) more.
const MAX_READERS: usize = 4;

/// The SQLite store: one writer connection and a small pool of reader
/// connections. In WAL mode readers see the last committed state while a
/// commit is writing (and fsyncing), so the delivery worker's outbox
/// reads and the API never wait behind a commit, nor a commit behind them.
/// Writes come in batches from one router task (plus the delivery
/// worker's small updates), so one writer is enough.
pub struct SqliteStore {
    /// `None` for an in-memory store (its log is folded only past
    /// [`SEEN_LOG_BACKLOG`]). Declared first, so its thread has stopped,
    /// and let go of the writer, before the writer closes.
    folder: Option<SeenLogFolder>,
    writer: Arc<Mutex<Writer>>,
    /// `None` for an in-memory store: its database lives in the one
    /// connection, and reads use that connection too.
    readers: Option<ReaderPool>,
    /// The WAL, which [`Store::commit_to_flush`] syncs after the commit;
    /// `None` for an in-memory store.
    wal: Option<Arc<WalFile>>,
    /// `None` for an in-memory store (it has no WAL). Declared last, so
    /// it stops after the connections above are closed.
    checkpointer: Option<Checkpointer>,
}

/// The store's WAL file, synced to make commits durable after they
/// returned. A commit of [`Store::commit_to_flush`] runs with
/// `synchronous=NORMAL`: SQLite writes its frames to the WAL without
/// waiting for the disk (and still syncs the WAL before any checkpoint
/// copies them), and the flush syncs them on another thread while the next
/// batch is written. The fsync was a fifth of each commit in a storm of
/// new alerts, on the one thread that writes.
struct WalFile {
    path: PathBuf,
    /// The open file and its inode: opened at the first flush (SQLite
    /// makes the file), and again if the path names another file (SQLite
    /// deletes the WAL when its last connection closes).
    file: Mutex<Option<(std::fs::File, u64)>>,
}

/// The file's identity on its device, to notice a file made anew under
/// the same path.
#[cfg(unix)]
fn file_id(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn file_id(_meta: &std::fs::Metadata) -> u64 {
    0
}

/// Syncs the directory holding `path`, so a file made in it survives a
/// power loss.
#[cfg(unix)]
fn sync_directory_of(path: &Path) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_directory_of(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

impl WalFile {
    fn new(database: &Path) -> WalFile {
        let mut path = database.as_os_str().to_owned();
        path.push("-wal");
        WalFile {
            path: PathBuf::from(path),
            file: Mutex::new(None),
        }
    }

    /// Syncs the WAL: every commit written to it so far is durable after.
    fn sync(&self) -> Result<(), StoreError> {
        let failed = |e: std::io::Error| StoreError::Flush {
            path: self.path.display().to_string(),
            message: e.to_string(),
        };
        let mut open = lock(&self.file);
        let inode = file_id(&std::fs::metadata(&self.path).map_err(failed)?);
        if open.as_ref().is_none_or(|(_, known)| *known != inode) {
            let file = std::fs::File::open(&self.path).map_err(failed)?;
            // A WAL just made is durable only once its directory entry is.
            // SQLite syncs the directory at its own first sync of it, and
            // ignores a failure (some file systems cannot): so does this.
            if let Err(e) = sync_directory_of(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %e, "The WAL's directory could not be synced.");
            }
            *open = Some((file, inode));
        }
        match open.as_ref() {
            Some((file, _)) => file.sync_data().map_err(failed),
            None => Ok(()),
        }
    }
}

/// The writing connection, and what the store keeps in memory about its
/// log of refreshes and its recent tables: all change only under the one
/// lock.
struct Writer {
    conn: Connection,
    seen_log: SeenLog,
    recent: Recent,
    /// The buffer each alert's stored form is written into, kept
    /// between alerts and batches.
    encoded: Vec<u8>,
}

impl std::ops::Deref for Writer {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl std::ops::DerefMut for Writer {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// The writer's account of `alert_seen_log`.
#[derive(Debug)]
struct SeenLog {
    /// The id the next entry gets: above every id given out before,
    /// folded or not, so a row's `seen_mark` never hides a newer entry.
    next_id: i64,
    /// Entries in the log now.
    entries: usize,
    /// When the last commit ended: the background fold waits for a pause.
    last_commit: std::time::Instant,
    /// [`SEEN_LOG_STEADY`], [`SEEN_LOG_BACKLOG`] and
    /// [`SEEN_LOG_BACKLOG_CHUNK`] (tests lower them).
    steady: usize,
    backlog: usize,
    backlog_chunk: usize,
}

/// The writer's account of `incident_alerts_recent` and `timeline_recent`.
#[derive(Debug)]
struct Recent {
    /// The id the next timeline line gets: above every line's, in either
    /// table, so lines keep their order when folded.
    next_timeline_id: i64,
    /// Rows in the two tables now.
    rows: usize,
    /// [`RECENT_STEADY`], [`RECENT_BACKLOG`] and [`RECENT_CHUNK`] (tests
    /// lower them).
    steady: usize,
    backlog: usize,
    chunk: usize,
}

/// Recent rows from which the background thread folds while commits go
/// on, a chunk per [`SEEN_LOG_PAUSE`]: a storm of up to about 120,000 new
/// alerts (a row each, and a timeline line) writes only the recent
/// tables, and is folded once it pauses; the fold costs about what the
/// rows' inserts into the indexed tables did, but outside the storm. A
/// read of incidents scans the recent tables (they have no index), about
/// 500 bytes a row: this and [`RECENT_BACKLOG`] bound that scan, to a
/// tenth to a quarter of a second, in a storm that goes on.
const RECENT_STEADY: usize = 250_000;

/// Recent rows from which each commit also folds a chunk, whatever the
/// load: bounds the tables in a storm faster than the background fold.
const RECENT_BACKLOG: usize = 500_000;

/// Rows of each recent table folded per transaction: about 4 us of CPU
/// a row on this project's test machine, so a chunk holds the writer
/// (and a commit arriving meanwhile) for about 10 ms.
const RECENT_CHUNK: usize = 1_000;

/// Log entries from which the background thread folds while commits go
/// on (a chunk per [`SEEN_LOG_PAUSE`]): a storm of refreshes shorter than
/// this writes only to the log, and its fold waits for a pause; a steady
/// stream that never pauses is folded at about 4,000 entries a second,
/// costing each commit at most one chunk's wait.
const SEEN_LOG_STEADY: usize = 250_000;

/// Log entries from which each commit also folds a chunk, whatever the
/// load: bounds the log (about 80 bytes an entry on disk), and so the
/// scan a read of incidents makes and the memory a restart needs to
/// apply it.
const SEEN_LOG_BACKLOG: usize = 500_000;

/// Entries folded per commit past [`SEEN_LOG_BACKLOG`], or as many as
/// the commit logged if more, so the log shrinks back under any load.
const SEEN_LOG_BACKLOG_CHUNK: usize = 1_000;

/// How long the writer must have been without a commit for the
/// background thread to fold chunk after chunk.
const SEEN_LOG_IDLE: Duration = Duration::from_millis(250);

/// How often the background thread looks at the log, and how long it
/// leaves the writer alone between two chunks while commits go on.
const SEEN_LOG_PAUSE: Duration = Duration::from_millis(50);

/// Entries the background thread folds per transaction: each is a page
/// rewritten, about 10 ms for a chunk with its fsync on this project's
/// test machine with 4 KiB pages, which a commit arriving meanwhile waits
/// for. With 16 KiB pages a chunk rewrites up to four times the bytes;
/// that was not timed apart.
const SEEN_LOG_CHUNK: usize = 250;

/// How long the background thread waits after a fold failed.
const SEEN_LOG_RETRY: Duration = Duration::from_secs(5);

/// Read-only connections to the store's file, opened on demand.
struct ReaderPool {
    path: PathBuf,
    state: Mutex<PoolState>,
    returned: Condvar,
}

struct PoolState {
    idle: Vec<Connection>,
    /// Connections open, idle or lent out.
    open: usize,
}

/// A connection to read with: a pooled reader (returned on drop) or, for
/// an in-memory store, the writer itself.
enum Reader<'a> {
    Pooled(&'a ReaderPool, Option<Connection>),
    Writer(MutexGuard<'a, Writer>),
}

impl std::ops::Deref for Reader<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        match self {
            Reader::Pooled(_, conn) => conn.as_ref().expect("held until drop"),
            Reader::Writer(guard) => &guard.conn,
        }
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        if let Reader::Pooled(pool, conn) = self
            && let Some(conn) = conn.take()
        {
            lock(&pool.state).idle.push(conn);
            pool.returned.notify_one();
        }
    }
}

impl ReaderPool {
    fn get(&self) -> Result<Reader<'_>, StoreError> {
        let mut state = lock(&self.state);
        loop {
            if let Some(conn) = state.idle.pop() {
                return Ok(Reader::Pooled(self, Some(conn)));
            }
            if state.open < MAX_READERS {
                break;
            }
            state = self.returned.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.open += 1;
        drop(state);
        match open_reader(&self.path) {
            Ok(conn) => Ok(Reader::Pooled(self, Some(conn))),
            Err(e) => {
                lock(&self.state).open -= 1;
                self.returned.notify_one();
                Err(e.into())
            }
        }
    }
}

/// A read-only connection: it cannot write by mistake, and needs no
/// pragma but the busy timeout (WAL mode is a property of the file).
fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // 512 KiB of page cache rather than the default 2 MiB: a reader's
    // cache is dropped whenever it finds a newer commit, which under load
    // is at nearly every read, so more would only add to the RSS.
    conn.pragma_update(None, "cache_size", -512)?;
    Ok(conn)
}

/// When the checkpointer copies the WAL back into the database.
#[derive(Clone, Copy, Debug)]
struct CheckpointPolicy {
    /// WAL pages after a commit from which a PASSIVE checkpoint runs: it
    /// copies what no reader still needs and never waits for, nor blocks,
    /// the writer or a reader.
    passive_pages: c_int,
    /// WAL pages from which passive checkpoints evidently cannot keep up
    /// (a reader holds an old snapshot, or commits outpace them): then a
    /// RESTART, which also waits for readers so the next commit writes
    /// the WAL from its start again.
    restart_pages: c_int,
    /// Longest a RESTART waits for the writer and for readers; it holds
    /// the write lock meanwhile, so a commit waits as long at most.
    restart_wait: Duration,
}

impl CheckpointPolicy {
    /// 16 MiB of WAL (4,096 pages of 4 KiB, 1,024 of 16 KiB): large enough
    /// that the hot pages a run of commits rewrites are copied once, not
    /// once per commit; 256 MiB before insisting. In bytes, so a store's
    /// page size does not change how much WAL it keeps.
    fn for_page_size(page_size: i64) -> CheckpointPolicy {
        let pages = |bytes: i64| c_int::try_from(bytes / page_size.max(512)).unwrap_or(c_int::MAX);
        CheckpointPolicy {
            passive_pages: pages(16 << 20),
            restart_pages: pages(256 << 20),
            restart_wait: Duration::from_millis(250),
        }
    }
}

/// How long after a refused RESTART the next one may be tried.
const RESTART_BACKOFF: Duration = Duration::from_secs(1);

/// The thread that checkpoints a file store's WAL, on its own connection,
/// when the writer's commits have grown it past the policy's threshold.
struct Checkpointer {
    shared: Arc<CheckpointShared>,
    policy: CheckpointPolicy,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct CheckpointShared {
    state: Mutex<CheckpointState>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct CheckpointState {
    /// Pages in the WAL after the last commit, as the writer reported.
    wal_pages: c_int,
    /// Of those, the ones the last checkpoint copied (0 once the WAL
    /// started over).
    backfilled: c_int,
    /// A commit left more than the threshold of uncopied pages in the WAL,
    /// or the WAL past the hard limit.
    requested: bool,
    /// The store is being dropped.
    stop: bool,
    /// Checkpoints run (each answered, whatever it managed).
    runs: u64,
    /// Of those, RESTARTs.
    restarts: u64,
    /// Checkpoints that copied every frame of the WAL.
    completed: u64,
}

impl Checkpointer {
    fn start(path: &Path, policy: CheckpointPolicy) -> Result<Checkpointer, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(policy.restart_wait)?;
        let shared = Arc::new(CheckpointShared {
            state: Mutex::new(CheckpointState::default()),
            wake: Condvar::new(),
        });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(&conn, &thread_shared, policy))
            .map_err(|e| StoreError::Open {
                path: path.display().to_string(),
                message: format!("cannot start the checkpoint thread: {e}"),
            })?;
        Ok(Checkpointer {
            shared,
            policy,
            thread: Some(thread),
        })
    }

    /// Has the writer report the WAL's size after each commit (SQLite's
    /// WAL hook, called once the write lock is released).
    fn watch(&self, writer: &mut Connection) -> Result<(), StoreError> {
        let shared = self.shared.clone();
        let policy = self.policy;
        writer.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: c_int| {
            let mut state = lock(&shared.state);
            if pages < state.backfilled {
                state.backfilled = 0; // the WAL started over
            }
            state.wal_pages = pages;
            // New pages since the last checkpoint, not the WAL's length:
            // under steady load the WAL rarely starts over (a commit is
            // usually writing when a checkpoint ends), and a checkpoint per
            // commit would add an fsync of the database to each.
            if pages - state.backfilled >= policy.passive_pages || pages >= policy.restart_pages {
                state.requested = true;
                drop(state);
                shared.wake.notify_one();
            }
            Ok(())
        }))?;
        Ok(())
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        lock(&self.shared.state).stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn checkpoint_loop(conn: &Connection, shared: &CheckpointShared, policy: CheckpointPolicy) {
    // A RESTART that found a reader still busy is not retried at every
    // commit (each try holds the write lock for up to `restart_wait`):
    // passive ones run meanwhile.
    let mut restart_refused_at: Option<std::time::Instant> = None;
    loop {
        let (pages, backfilled) = {
            let mut state = lock(&shared.state);
            while !state.requested && !state.stop {
                state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            if state.stop {
                return;
            }
            state.requested = false;
            (state.wal_pages, state.backfilled)
        };
        let backing_off = restart_refused_at.is_some_and(|at| at.elapsed() < RESTART_BACKOFF);
        let mode = if pages >= policy.restart_pages && !backing_off {
            "RESTART"
        } else if pages - backfilled >= policy.passive_pages {
            "PASSIVE"
        } else {
            continue;
        };
        // (busy, frames in the WAL, frames copied): busy when a RESTART
        // gave up waiting; fewer copied than logged when a reader still
        // needs the rest. Either way the next commit asks again.
        let result = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        });
        {
            let mut state = lock(&shared.state);
            state.runs += 1;
            state.restarts += u64::from(mode == "RESTART");
            if let Ok((_, _, copied)) = result {
                state.backfilled = c_int::try_from(copied.max(0)).unwrap_or(c_int::MAX);
            }
        }
        match result {
            Ok((0, logged, copied)) if copied >= logged => {
                restart_refused_at = None;
                lock(&shared.state).completed += 1;
            }
            Ok((busy, logged, copied)) => {
                if mode == "RESTART" {
                    restart_refused_at = Some(std::time::Instant::now());
                }
                tracing::debug!(mode, busy, logged, copied, "WAL checkpoint incomplete");
            }
            Err(e) => tracing::warn!(mode, error = %e, "WAL checkpoint failed"),
        }
    }
}

/// Folds the oldest `limit` entries of `alert_seen_log` into their
/// alerts' rows, in one transaction, and deletes them; returns how many.
/// Per alert only its newest entry among them is written, and only over
/// a row whose `seen_mark` it is newer than (a whole write after it won).
///
/// Entries newer than the oldest whole write still in
/// `incident_alerts_recent` stay in the log: that write may be of their
/// alert, and folding it later replaces the row, refresh and all.
fn fold_seen_log(writer: &mut Writer, limit: usize) -> Result<usize, StoreError> {
    // Immediate: a deferred transaction that reads first cannot wait for
    // the write lock (SQLite skips the busy handler then), so a fold
    // during the checkpointer's RESTART would fail at once.
    let tx = writer
        .conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let oldest_recent_mark: Option<i64> = tx
        .query_row(
            "SELECT seen_mark FROM incident_alerts_recent ORDER BY id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    let bound: Option<i64> = tx.query_row(
        "SELECT MAX(id) FROM (SELECT id FROM alert_seen_log WHERE id <= ?2 ORDER BY id LIMIT ?1)",
        params![
            i64::try_from(limit).unwrap_or(i64::MAX),
            oldest_recent_mark.unwrap_or(i64::MAX)
        ],
        |r| r.get(0),
    )?;
    let Some(bound) = bound else {
        if oldest_recent_mark.is_none() {
            writer.seen_log.entries = 0;
        }
        return Ok(0);
    };
    // SQLite takes the other columns of an aggregate query with a single
    // MAX() from the row that has the maximum: each alert's newest entry.
    tx.execute(
        "UPDATE incident_alerts
         SET last_seen = newest.last_seen, ends_at = newest.ends_at, seen_mark = newest.id
         FROM (SELECT incident_id, fingerprint, last_seen, ends_at, MAX(id) AS id
               FROM alert_seen_log WHERE id <= ?1
               GROUP BY incident_id, fingerprint) AS newest
         WHERE incident_alerts.incident_id = newest.incident_id
           AND incident_alerts.fingerprint = newest.fingerprint
           AND newest.id > incident_alerts.seen_mark",
        [bound],
    )?;
    let folded = tx.execute("DELETE FROM alert_seen_log WHERE id <= ?1", [bound])?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('seen_log_folded', ?1)
         ON CONFLICT (key) DO UPDATE SET value = ?1",
        [bound.to_string()],
    )?;
    tx.commit()?;
    writer.seen_log.entries = writer.seen_log.entries.saturating_sub(folded);
    Ok(folded)
}

/// Folds the oldest `limit` rows of each recent table into
/// `incident_alerts` and `timeline`, in one transaction, and deletes
/// them; returns how many rows it folded. Of an alert written whole more
/// than once among them only the newest write is kept. Alerts go in key
/// order and lines in id order, so the indexes are written page by page.
fn fold_recent(writer: &mut Writer, limit: usize) -> Result<usize, StoreError> {
    let tx = writer
        .conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut folded = 0;
    let bound: Option<i64> = tx.query_row(
        "SELECT MAX(id) FROM (SELECT id FROM incident_alerts_recent ORDER BY id LIMIT ?1)",
        [limit],
        |r| r.get(0),
    )?;
    if let Some(bound) = bound {
        // SQLite takes the other columns of an aggregate query with a
        // single MAX() from the row that has the maximum: each alert's
        // newest write. (The WHERE before ON CONFLICT is SQLite's rule
        // for an upsert from a SELECT.)
        tx.execute(
            "INSERT INTO incident_alerts (incident_id, fingerprint, state, seen_mark)
             SELECT incident_id, fingerprint, state, seen_mark FROM (
               SELECT incident_id, fingerprint, state, seen_mark, MAX(id)
               FROM incident_alerts_recent WHERE id <= ?1
               GROUP BY incident_id, fingerprint) WHERE true
             ON CONFLICT (incident_id, fingerprint) DO UPDATE SET state = excluded.state,
               last_seen = NULL, ends_at = NULL, seen_mark = excluded.seen_mark",
            [bound],
        )?;
        folded += tx.execute("DELETE FROM incident_alerts_recent WHERE id <= ?1", [bound])?;
    }
    let bound: Option<i64> = tx.query_row(
        "SELECT MAX(id) FROM (SELECT id FROM timeline_recent ORDER BY id LIMIT ?1)",
        [limit],
        |r| r.get(0),
    )?;
    if let Some(bound) = bound {
        tx.execute(
            "INSERT INTO timeline (id, incident_id, entry)
             SELECT id, incident_id, entry FROM timeline_recent WHERE id <= ?1 ORDER BY id",
            [bound],
        )?;
        folded += tx.execute("DELETE FROM timeline_recent WHERE id <= ?1", [bound])?;
    }
    tx.commit()?;
    writer.recent.rows = if folded == 0 {
        // Both tables are empty: whatever the count said.
        0
    } else {
        writer.recent.rows.saturating_sub(folded)
    };
    Ok(folded)
}

/// Folds a chunk of the refresh log; when recent whole writes hold it
/// back (it folds nothing above the oldest of them), a chunk of those
/// instead, so that the log is held up by at most as many chunks as there
/// are recent rows ahead of it. Returns how many entries or rows it
/// folded.
fn fold_log_chunk(writer: &mut Writer, limit: usize) -> Result<usize, StoreError> {
    let folded = fold_seen_log(writer, limit)?;
    if folded > 0 || writer.recent.rows == 0 {
        return Ok(folded);
    }
    let chunk = writer.recent.chunk;
    fold_recent(writer, chunk)
}

/// Folds one chunk of what is due at the writer's pause or load: the
/// refresh log when due (or the recent rows that hold it back), else the
/// recent tables; returns false when nothing was due or nothing was left
/// to fold.
fn fold_due_chunk(writer: &mut Writer, idle: bool) -> Result<bool, StoreError> {
    let log = &writer.seen_log;
    let log_due = log.entries > 0 && (idle || log.entries >= log.steady);
    let recent = &writer.recent;
    let recent_due = recent.rows > 0 && (idle || recent.rows >= recent.steady);
    let chunk = recent.chunk;
    let folded = if log_due {
        fold_log_chunk(writer, SEEN_LOG_CHUNK)?
    } else if recent_due {
        fold_recent(writer, chunk)?
    } else {
        return Ok(false);
    };
    Ok(folded > 0)
}

/// The thread that folds a file store's recent tables and log of
/// refreshes into the indexed tables and the alert rows: chunk after
/// chunk once the writer has paused for [`SEEN_LOG_IDLE`], and one chunk
/// per [`SEEN_LOG_PAUSE`] while commits go on if the recent tables hold
/// [`RECENT_STEADY`] rows or the log [`SEEN_LOG_STEADY`] entries or more.
/// It gives the writer back between chunks.
struct SeenLogFolder {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SeenLogFolder {
    fn start(writer: Arc<Mutex<Writer>>, path: &Path) -> Result<SeenLogFolder, StoreError> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-seen-fold".into())
            .spawn(move || fold_when_idle(&writer, &thread_stop))
            .map_err(|e| StoreError::Open {
                path: path.display().to_string(),
                message: format!("cannot start the refresh-log thread: {e}"),
            })?;
        Ok(SeenLogFolder {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for SeenLogFolder {
    fn drop(&mut self) {
        *lock(&self.stop.0) = true;
        self.stop.1.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn fold_when_idle(writer: &Mutex<Writer>, stop: &(Mutex<bool>, Condvar)) {
    // After a failed fold (a full disk, say) the next waits a while,
    // rather than failing, and warning, twenty times a second.
    let mut failed_at: Option<std::time::Instant> = None;
    loop {
        {
            let stopped = lock(&stop.0);
            let (stopped, _) = stop
                .1
                .wait_timeout(stopped, SEEN_LOG_PAUSE)
                .unwrap_or_else(|p| p.into_inner());
            if *stopped {
                return;
            }
        }
        if failed_at.is_some_and(|at| at.elapsed() < SEEN_LOG_RETRY) {
            continue;
        }
        loop {
            if *lock(&stop.0) {
                return;
            }
            let mut writer = lock(writer);
            let idle = writer.seen_log.last_commit.elapsed() >= SEEN_LOG_IDLE;
            match fold_due_chunk(&mut writer, idle) {
                Ok(true) => failed_at = None,
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "folding recent writes or the refresh log failed; retried in 5 s");
                    failed_at = Some(std::time::Instant::now());
                    break;
                }
            }
            if !idle {
                break;
            }
        }
    }
}

/// The newest entry of `alert_seen_log` per alert, by incident and
/// fingerprint, as read for loading incidents.
type SeenEntries = std::collections::HashMap<i64, std::collections::HashMap<String, SeenEntry>>;

struct SeenEntry {
    id: i64,
    last_seen: String,
    ends_at: Option<String>,
}

/// The incidents a read wants the unfolded writes of: one (found by the
/// query), or several (kept while scanning, so the map holds theirs only).
enum Wanted<'a> {
    One(i64),
    Some(&'a std::collections::HashSet<i64>),
}

impl Wanted<'_> {
    /// The id the query filters on, if one.
    fn one(&self) -> Option<i64> {
        match self {
            Wanted::One(id) => Some(*id),
            Wanted::Some(_) => None,
        }
    }

    fn keeps(&self, id: i64) -> bool {
        match self {
            Wanted::One(one) => *one == id,
            Wanted::Some(ids) => ids.contains(&id),
        }
    }
}

/// Reads the log's newest entry per alert of the wanted incidents.
/// The log has no index (one would be written all over for each batch,
/// as the rows were), so this scans it; it is folded to empty whenever
/// the writer pauses, and kept near [`SEEN_LOG_STEADY`] entries, under
/// [`SEEN_LOG_BACKLOG`], while it does not.
fn read_seen_log(conn: &Connection, wanted: &Wanted) -> Result<SeenEntries, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, incident_id, fingerprint, last_seen, ends_at FROM alert_seen_log
         WHERE ?1 IS NULL OR incident_id = ?1 ORDER BY id",
    )?;
    let mut rows = stmt.query([wanted.one()])?;
    let mut newest = SeenEntries::new();
    while let Some(row) = rows.next()? {
        let incident_id = row.get(1)?;
        if !wanted.keeps(incident_id) {
            continue;
        }
        let entry = SeenEntry {
            id: row.get(0)?,
            last_seen: row.get(3)?,
            ends_at: row.get(4)?,
        };
        newest
            .entry(incident_id)
            .or_default()
            .insert(row.get(2)?, entry);
    }
    Ok(newest)
}

/// The newest whole write per alert in `incident_alerts_recent`, by
/// incident and fingerprint: the stored alert and its `seen_mark`.
type RecentAlerts =
    std::collections::HashMap<i64, std::collections::HashMap<String, (StoredAlert, i64)>>;

/// An alert's `state` column as stored: its compact form
/// ([`alert_codec`], a BLOB), or the JSON text an earlier version wrote.
enum StoredAlert {
    Encoded(Vec<u8>),
    Json(String),
}

impl rusqlite::types::FromSql for StoredAlert {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        use rusqlite::types::{FromSqlError, ValueRef};
        match value {
            ValueRef::Blob(bytes) => Ok(StoredAlert::Encoded(bytes.to_vec())),
            ValueRef::Text(text) => String::from_utf8(text.to_vec())
                .map(StoredAlert::Json)
                .map_err(|e| FromSqlError::Other(Box::new(e))),
            _ => Err(FromSqlError::InvalidType),
        }
    }
}

impl StoredAlert {
    /// The alert, of incident `incident_id` (named in an error).
    fn decode(&self, incident_id: i64) -> Result<TrackedAlert, StoreError> {
        match self {
            StoredAlert::Encoded(bytes) => {
                alert_codec::decode(bytes).map_err(|e| corrupt("incident alert", incident_id, e))
            }
            StoredAlert::Json(text) => {
                serde_json::from_str(text).map_err(|e| corrupt("incident alert", incident_id, e))
            }
        }
    }
}

/// Reads the newest recent write per alert of the wanted incidents.
/// The table has no index, so this scans it; it is folded to empty
/// whenever the writer pauses, and kept under [`RECENT_BACKLOG`] rows
/// while it does not.
fn read_recent_alerts(conn: &Connection, wanted: &Wanted) -> Result<RecentAlerts, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT incident_id, fingerprint, state, seen_mark FROM incident_alerts_recent
         WHERE ?1 IS NULL OR incident_id = ?1 ORDER BY id",
    )?;
    let mut rows = stmt.query([wanted.one()])?;
    let mut newest = RecentAlerts::new();
    while let Some(row) = rows.next()? {
        let incident_id = row.get(0)?;
        if wanted.keeps(incident_id) {
            newest
                .entry(incident_id)
                .or_default()
                .insert(row.get(1)?, (row.get(2)?, row.get(3)?));
        }
    }
    Ok(newest)
}

/// What a read of incidents needs besides their rows, read once in its
/// snapshot: the refresh log and the recent whole writes.
struct Unfolded {
    seen: SeenEntries,
    recent: RecentAlerts,
}

impl Unfolded {
    /// What is unfolded of the incidents `ids`.
    fn read(conn: &Connection, ids: &[i64]) -> Result<Unfolded, StoreError> {
        let set: std::collections::HashSet<i64>;
        let wanted = match ids {
            [] => {
                return Ok(Unfolded {
                    seen: SeenEntries::new(),
                    recent: RecentAlerts::new(),
                });
            }
            [id] => Wanted::One(*id),
            _ => {
                set = ids.iter().copied().collect();
                Wanted::Some(&set)
            }
        };
        Ok(Unfolded {
            seen: read_seen_log(conn, &wanted)?,
            recent: read_recent_alerts(conn, &wanted)?,
        })
    }
}

/// The one buffer a commit serializes its JSON columns into, instead of a
/// new `String` per row (`serde_json::to_string` starts at 128 bytes and
/// reallocates four times on the way to a 1 KB alert).
#[derive(Default)]
struct JsonBuf(Vec<u8>);

impl JsonBuf {
    /// `value` as JSON text, valid until the next call.
    fn of(&mut self, value: &impl serde::Serialize) -> Result<&str, serde_json::Error> {
        self.0.clear();
        serde_json::to_writer(&mut self.0, value)?;
        // serde_json writes UTF-8 only; the check is a fast ASCII scan.
        std::str::from_utf8(&self.0).map_err(serde::ser::Error::custom)
    }
}

/// Locks a mutex of the store. A panic while holding one cannot leave a
/// half-written transaction (rusqlite rolls back on drop), so keep going.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, creating its
    /// folder too.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, CheckpointPolicy::for_page_size)
    }

    /// `policy`: the checkpoint policy for the store's page size.
    fn open_with(
        path: &Path,
        policy: impl FnOnce(i64) -> CheckpointPolicy,
    ) -> Result<Self, StoreError> {
        let open_error = |message: String| StoreError::Open {
            path: path.display().to_string(),
            message,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_error(e.to_string()))?;
        }
        let conn = Connection::open(path).map_err(|e| open_error(e.to_string()))?;
        let mut store = Self::init(conn)?;
        store.wal = Some(Arc::new(WalFile::new(path)));
        store.readers = Some(ReaderPool {
            path: path.to_path_buf(),
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            returned: Condvar::new(),
        });
        let page_size: i64 = lock(&store.writer)
            .conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let checkpointer = Checkpointer::start(path, policy(page_size))?;
        {
            let mut writer = lock(&store.writer);
            checkpointer.watch(&mut writer.conn)?;
        }
        store.checkpointer = Some(checkpointer);
        store.folder = Some(SeenLogFolder::start(store.writer.clone(), path)?);
        Ok(store)
    }

    /// An in-memory store, for tests and `replay`. One connection serves
    /// reads and writes: an in-memory database lives in its connection,
    /// and sharing it (`mode=memory&cache=shared`) would trade WAL for
    /// table locks, where a read during a commit fails with
    /// `SQLITE_LOCKED` at once instead of waiting.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self, StoreError> {
        // Only a new database takes the page size (an existing one keeps
        // the size it was made with, until a VACUUM outside WAL mode).
        conn.pragma_update(None, "page_size", PAGE_SIZE)?;
        // WAL lets readers (the API) work while a batch commits; FULL makes
        // each commit durable before it returns.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // 8 MiB of page cache (the default is 2 MiB): room for the indexes
        // new alerts are inserted into all over (about 5 MiB at 100k
        // active alerts), which would otherwise be read back from the file
        // at every commit. Refreshes, which used to touch every page of
        // the alert rows, go to the log now: 16 MiB saved little CPU
        // (new alerts 18 against 19 us each) for 80 more bytes of memory
        // per active alert.
        conn.pragma_update(None, "cache_size", -8192)?;
        // No checkpoint inside a commit: copying the WAL back into the
        // database (and its fsync) made the commit that crossed the limit
        // wait tens of milliseconds, and every request in it. A file
        // store's own thread checkpoints instead (`Checkpointer`).
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // A store of a version this binary does not know is refused before
        // anything is written to it (the script below only adds, but a
        // later version's layout is not ours to touch).
        let has_meta: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
            [],
            |r| r.get(0),
        )?;
        if has_meta {
            let found: Option<String> = conn
                .query_row(
                    "SELECT value FROM meta WHERE key = 'schema_version'",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(version) = found
                && !["1", "2", "3", "4", "5", SCHEMA_VERSION].contains(&version.as_str())
            {
                return Err(unknown_version(&version));
            }
        }
        conn.execute_batch(SCHEMA)?;
        for (table, column, ty) in ADDED_COLUMNS {
            let present: bool = conn.query_row(
                "SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
                [table, column],
                |r| r.get(0),
            )?;
            if !present {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}"))?;
            }
        }
        let mut version: String = conn.query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )?;
        if version == "1" {
            migrate_from_1(&mut conn)?;
            version = SCHEMA_VERSION.to_string();
        }
        if ["2", "3", "4", "5"].contains(&version.as_str()) {
            // Version 2 to 3 is the two columns added above; 3 to 4 the
            // log table and `seen_mark`; 4 to 5 the recent tables; 5 to 6
            // only how new alert rows are written.
            conn.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
                [SCHEMA_VERSION],
            )?;
            version = SCHEMA_VERSION.to_string();
        }
        if version != SCHEMA_VERSION {
            return Err(unknown_version(&version));
        }
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).map_err(|e| StoreError::Open {
            path: "instance id".into(),
            message: e.to_string(),
        })?;
        let id: String = random.iter().map(|b| format!("{b:02x}")).collect();
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('instance_id', ?1)",
            [id],
        )?;
        let (newest_logged, entries): (Option<i64>, i64) =
            conn.query_row("SELECT MAX(id), COUNT(*) FROM alert_seen_log", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        let folded: i64 = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'seen_log_folded'",
                [],
                |r| r.get::<_, String>(0),
            )
            .optional()?
            .map(|v| v.parse().map_err(|e| corrupt("meta seen_log_folded", 0, e)))
            .transpose()?
            .unwrap_or(0);
        let seen_log = SeenLog {
            next_id: newest_logged.unwrap_or(0).max(folded) + 1,
            entries: usize::try_from(entries).unwrap_or(0),
            last_commit: std::time::Instant::now(),
            steady: SEEN_LOG_STEADY,
            backlog: SEEN_LOG_BACKLOG,
            backlog_chunk: SEEN_LOG_BACKLOG_CHUNK,
        };
        let (newest_line, recent_rows): (i64, i64) = conn.query_row(
            "SELECT MAX(COALESCE((SELECT MAX(id) FROM timeline), 0),
                        COALESCE((SELECT MAX(id) FROM timeline_recent), 0)),
                    (SELECT COUNT(*) FROM timeline_recent)
                    + (SELECT COUNT(*) FROM incident_alerts_recent)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let recent = Recent {
            next_timeline_id: newest_line + 1,
            rows: usize::try_from(recent_rows).unwrap_or(0),
            steady: RECENT_STEADY,
            backlog: RECENT_BACKLOG,
            chunk: RECENT_CHUNK,
        };
        Ok(SqliteStore {
            folder: None,
            writer: Arc::new(Mutex::new(Writer {
                conn,
                seen_log,
                recent,
                encoded: Vec::new(),
            })),
            readers: None,
            wal: None,
            checkpointer: None,
        })
    }

    /// The connection that writes.
    fn writer(&self) -> MutexGuard<'_, Writer> {
        lock(&self.writer)
    }

    /// A connection to read with; it sees every commit that returned.
    fn reader(&self) -> Result<Reader<'_>, StoreError> {
        match &self.readers {
            Some(pool) => pool.get(),
            None => Ok(Reader::Writer(self.writer())),
        }
    }
}

/// A time as the alert JSON holds it (serde's `time::serde::rfc3339`).
fn rfc3339(t: OffsetDateTime) -> Result<String, time::error::Format> {
    t.format(&time::format_description::well_known::Rfc3339)
}

fn from_rfc3339(text: &str) -> Result<OffsetDateTime, time::error::Parse> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
}

fn millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn from_millis(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn corrupt(what: &'static str, id: i64, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what,
        id,
        message: e.to_string(),
    }
}

fn kind_from(text: &str) -> Option<ActionKind> {
    [
        ActionKind::Page,
        ActionKind::Notify,
        ActionKind::UpdateDue,
        ActionKind::Escalate,
        ActionKind::Resolve,
        ActionKind::Acknowledge,
    ]
    .into_iter()
    .find(|k| k.as_str() == text)
}

fn unknown_version(version: &str) -> StoreError {
    StoreError::Corrupt {
        what: "schema version",
        id: 0,
        message: format!("the store has schema {version}; this sevroute reads {SCHEMA_VERSION}"),
    }
}

/// Version 1 to the current one: the script already added the new tables and columns;
/// what is left is moving each incident's alerts out of its row into
/// `incident_alerts`, where version 2 reads and writes them (a row that
/// kept them would lose them at its next write, which writes the header
/// alone). One transaction, with the version bump.
fn migrate_from_1(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    let rows: Vec<(i64, String)> = {
        let mut stmt = tx.prepare("SELECT id, state FROM incidents")?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?
    };
    for (id, state) in rows {
        let incident = parse_incident(id, &state)?;
        if incident.alerts.is_empty() {
            continue;
        }
        for (fingerprint, alert) in &incident.alerts {
            let alert_state =
                serde_json::to_string(alert).map_err(|e| corrupt("incident alert", id, e))?;
            tx.execute(
                "INSERT INTO incident_alerts (incident_id, fingerprint, state) VALUES (?1, ?2, ?3)
                 ON CONFLICT (incident_id, fingerprint) DO UPDATE SET state = ?3",
                params![id, fingerprint, alert_state],
            )?;
        }
        let header =
            serde_json::to_string(&incident.header()).map_err(|e| corrupt("incident", id, e))?;
        tx.execute(
            "UPDATE incidents SET state = ?2 WHERE id = ?1",
            params![id, header],
        )?;
    }
    tx.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
        [SCHEMA_VERSION],
    )?;
    tx.commit()?;
    Ok(())
}

fn parse_incident(id: i64, state: &str) -> Result<Incident, StoreError> {
    serde_json::from_str(state).map_err(|e| corrupt("incident", id, e))
}

/// Reads the incident in `state` with its alerts from `incident_alerts`
/// (on top of any an older version kept inside `state`) and the newer
/// whole writes still recent, each with its newest refresh: folded into
/// its row, or still in the log.
fn load_incident(
    conn: &Connection,
    id: i64,
    state: &str,
    unfolded: &Unfolded,
) -> Result<Incident, StoreError> {
    let mut incident = parse_incident(id, state)?;
    let logged = unfolded.seen.get(&id);
    let recent = unfolded.recent.get(&id);
    let mut stmt = conn.prepare_cached(
        "SELECT fingerprint, state, last_seen, ends_at, seen_mark FROM incident_alerts
         WHERE incident_id = ?1 ORDER BY fingerprint",
    )?;
    let rows = stmt.query_map([id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, StoredAlert>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, i64>(4)?,
        ))
    })?;
    let mut add = |fingerprint: String,
                   state: &StoredAlert,
                   mut last_seen: Option<String>,
                   mut ends_at: Option<String>,
                   mark: i64| {
        let mut alert = state.decode(id)?;
        if let Some(entry) = logged
            .and_then(|alerts| alerts.get(&fingerprint))
            .filter(|entry| entry.id > mark)
        {
            last_seen = Some(entry.last_seen.clone());
            ends_at = entry.ends_at.clone();
        }
        if let Some(last_seen) = last_seen {
            let bad_time = |e| corrupt("incident alert", id, e);
            alert.last_seen = from_rfc3339(&last_seen).map_err(bad_time)?;
            alert.alert.ends_at = ends_at
                .map(|t| from_rfc3339(&t))
                .transpose()
                .map_err(bad_time)?;
        }
        incident.alerts.insert(fingerprint, alert);
        Ok::<_, StoreError>(())
    };
    for row in rows {
        let (fingerprint, state, last_seen, ends_at, mark) = row?;
        // A recent whole write replaces the row.
        if !recent.is_some_and(|recent| recent.contains_key(&fingerprint)) {
            add(fingerprint, &state, last_seen, ends_at, mark)?;
        }
    }
    for (fingerprint, (state, mark)) in recent.into_iter().flatten() {
        add(fingerprint.clone(), state, None, None, *mark)?;
    }
    Ok(incident)
}

const DELIVERY_COLUMNS: &str = "id, incident_id, destination, kind, webhook_id, body, status, attempts, next_attempt_at, created_at, last_http_status, last_error, finished_at, failover_of";

/// The columns of [`DELIVERY_COLUMNS`] after the first ten.
type DeliveryTail = (Option<u16>, Option<String>, Option<i64>, Option<i64>);

type DeliveryRow = (
    i64,
    i64,
    String,
    String,
    String,
    String,
    String,
    u32,
    i64,
    i64,
    DeliveryTail,
);

fn delivery_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
        row.get(9)?,
        (row.get(10)?, row.get(11)?, row.get(12)?, row.get(13)?),
    ))
}

fn to_delivery(r: DeliveryRow) -> Result<Delivery, StoreError> {
    let (
        id,
        incident_id,
        destination,
        kind,
        webhook_id,
        body,
        status,
        attempts,
        next,
        created,
        tail,
    ) = r;
    let (last_http_status, last_error, finished_at, failover_of) = tail;
    Ok(Delivery {
        id,
        incident_id,
        destination,
        kind: kind_from(&kind)
            .ok_or_else(|| corrupt("delivery", id, format!("unknown kind {kind:?}")))?,
        webhook_id,
        body,
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| corrupt("delivery", id, format!("unknown status {status:?}")))?,
        attempts,
        next_attempt_at: from_millis(next),
        created_at: from_millis(created),
        last_http_status,
        last_error,
        finished_at: finished_at.map(from_millis),
        failover_of,
    })
}

/// Records an attempt on the outbox row and in its history, inside the
/// caller's transaction.
fn write_attempt(
    tx: &rusqlite::Transaction<'_>,
    id: i64,
    attempt: &AttemptRecord,
) -> Result<(), StoreError> {
    let finished = (attempt.status != DeliveryStatus::Pending).then(|| millis(attempt.at));
    tx.prepare_cached(
        "UPDATE outbox SET status = ?2, attempts = attempts + 1,
           next_attempt_at = COALESCE(?3, next_attempt_at), last_http_status = ?4,
           last_error = ?5, finished_at = ?6
         WHERE id = ?1",
    )?
    .execute(params![
        id,
        attempt.status.as_str(),
        attempt.next_attempt_at.map(millis),
        attempt.http_status,
        attempt.error,
        finished,
    ])?;
    let detail = attempt.detail.clone().unwrap_or_default();
    tx.prepare_cached(
        "INSERT INTO delivery_attempts (delivery_id, at, status, http_status, error, outcome,
           elapsed_ms, response_headers, response_excerpt)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        id,
        millis(attempt.at),
        attempt.status.as_str(),
        attempt.http_status,
        attempt.error,
        detail.outcome,
        i64::try_from(detail.elapsed_ms).unwrap_or(i64::MAX),
        detail.response_headers,
        detail.response_excerpt,
    ])?;
    Ok(())
}

/// A pending reminder (`update_due`) that a newer pending one to the same
/// incident and destination makes redundant.
const REPEATED_REMINDER: &str = "status = 'pending' AND kind = 'update_due' AND EXISTS (
    SELECT 1 FROM outbox AS newer
    WHERE newer.incident_id = outbox.incident_id
      AND newer.destination = outbox.destination
      AND newer.kind = 'update_due'
      AND newer.status = 'pending' AND newer.id > outbox.id)";

/// A delivery row's place after pages and escalations (false for those):
/// the second column of `outbox_pending`, written as the index has it so
/// SQLite matches the two.
const LESS_URGENT: &str = "(kind NOT IN ('page', 'escalate'))";

/// Pages and escalations go before the other kinds in each turn.
fn is_urgent(kind: ActionKind) -> bool {
    matches!(kind, ActionKind::Page | ActionKind::Escalate)
}

/// The destinations with a pending delivery, in name order: a skip-scan of
/// `outbox_pending`, one step per destination however many rows each has.
/// (Named, or SQLite walks `outbox_due` instead, every pending row a step.)
const PENDING_DESTINATIONS: &str = "WITH RECURSIVE pending(name) AS (
       SELECT MIN(destination) FROM outbox INDEXED BY outbox_pending
       WHERE status = 'pending'
       UNION ALL
       SELECT (SELECT MIN(destination) FROM outbox INDEXED BY outbox_pending
               WHERE status = 'pending' AND destination > pending.name)
       FROM pending WHERE pending.name IS NOT NULL)
     SELECT name FROM pending WHERE name IS NOT NULL";

/// The due-query's condition that keeps order per incident and
/// destination: a row waits while an older one to the same place is
/// pending.
/// (Its index named: `outbox_pending` would match too, and walk every
/// pending row of the destination for each row checked.)
const NO_OLDER_PENDING: &str = "NOT EXISTS (
    SELECT 1 FROM outbox AS older INDEXED BY outbox_incident
    WHERE older.incident_id = outbox.incident_id
      AND older.destination = outbox.destination
      AND older.status = 'pending' AND older.id < outbox.id)";

/// A batch's whole alert writes, in the order they happened: an incident
/// written whole holds its alerts, and `incident_alerts` comes after.
fn whole_alerts(batch: &CommitBatch) -> impl Iterator<Item = (i64, &str, &TrackedAlert)> {
    batch
        .incidents
        .iter()
        .flat_map(|inc| inc.alerts.iter().map(move |(f, a)| (inc.id, f.as_str(), a)))
        .chain(
            batch
                .incident_alerts
                .iter()
                .map(|a| (a.incident_id, a.fingerprint.as_str(), &*a.alert)),
        )
}

/// Writes `batch` in one transaction. Full alert writes go to
/// `incident_alerts_recent` in their stored form ([`alert_codec`]),
/// carrying the last log id given out before them as their `seen_mark`;
/// the batch's plain refreshes are logged after them, with the next ids.
/// Timeline lines go to `timeline_recent` with the next line ids.
fn write_batch(writer: &mut Writer, batch: &CommitBatch) -> Result<(), StoreError> {
    let Writer {
        conn,
        seen_log,
        recent,
        encoded,
    } = writer;
    let seen_mark = seen_log.next_id - 1;
    let tx = conn.transaction()?;
    {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO incidents (id, key, status, severity, declared_at, next_due_at, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (id) DO UPDATE SET key = ?2, status = ?3, severity = ?4,
               next_due_at = ?6, state = ?7",
        )?;
        let mut json = JsonBuf::default();
        for inc in &batch.incidents {
            // The alerts go to rows of their own (below); the row keeps
            // the rest.
            let state = if inc.alerts.is_empty() {
                json.of(inc)
            } else {
                json.of(&inc.header())
            }
            .map_err(|e| corrupt("incident", inc.id, e))?;
            upsert.execute(params![
                inc.id,
                inc.key,
                inc.status.as_str(),
                inc.severity.map(|s| s.as_str()),
                millis(inc.declared_at),
                batch
                    .next_due
                    .get(&inc.id)
                    .copied()
                    .unwrap_or_else(|| inc.next_due())
                    .map(millis),
                state,
            ])?;
        }
        // A plain refresh is appended to the log: updating its alert's
        // row wrote (to the WAL, then back at the checkpoint) a whole page
        // per refresh, the rows of a batch being spread over the table;
        // the log's entries share a few pages at its end.
        let mut seen = tx.prepare_cached(
            "INSERT INTO alert_seen_log (id, incident_id, fingerprint, last_seen, ends_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for a in &batch.alert_seen {
            let bad_time = |e| corrupt("incident alert", a.incident_id, e);
            seen.execute(params![
                seen_log.next_id,
                a.incident_id,
                a.fingerprint,
                rfc3339(a.last_seen).map_err(bad_time)?,
                a.ends_at.map(rfc3339).transpose().map_err(bad_time)?,
            ])?;
            seen_log.next_id += 1;
        }
        let mut timeline = tx.prepare_cached(
            "INSERT INTO timeline_recent (id, incident_id, entry) VALUES (?1, ?2, ?3)",
        )?;
        for (id, entry) in &batch.timeline {
            let text = json
                .of(entry)
                .map_err(|e| corrupt("timeline entry", *id, e))?;
            timeline.execute(params![recent.next_timeline_id, id, text])?;
            recent.next_timeline_id += 1;
        }
        let mut alert = tx.prepare_cached(
            "INSERT INTO alerts (fingerprint, incident_id, received_at, alert) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (fingerprint) DO UPDATE SET incident_id = ?2, received_at = ?3, alert = ?4",
        )?;
        for a in &batch.alerts {
            alert.execute(params![
                a.fingerprint,
                a.incident_id,
                millis(a.received_at),
                a.alert_json
            ])?;
        }
        // A webhook id already enqueued (a replayed batch) is kept as is:
        // the receiver must see it once.
        let mut outbox = tx.prepare_cached(
            "INSERT OR IGNORE INTO outbox (incident_id, destination, kind, webhook_id, body, status,
               next_attempt_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?6)",
        )?;
        for d in &batch.deliveries {
            outbox.execute(params![
                d.incident_id,
                d.destination,
                d.kind.as_str(),
                d.webhook_id,
                d.body,
                millis(d.created_at),
            ])?;
        }
        let mut sample = tx.prepare_cached(
            "INSERT INTO slo_samples (slo, received_at, at, cumulative, good, total)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for r in &batch.slo_samples {
            sample.execute(params![
                r.slo,
                r.received_at,
                r.at,
                r.cumulative,
                r.good,
                r.total
            ])?;
        }
        let mut prune = tx.prepare_cached("DELETE FROM slo_samples WHERE slo = ?1 AND at < ?2")?;
        for (slo, before) in &batch.slo_prune {
            prune.execute(params![slo, before])?;
        }
        let mut incident_alert = tx.prepare_cached(
            "INSERT INTO incident_alerts_recent (incident_id, fingerprint, state, seen_mark)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        // In the order they happened: a later write of an alert wins
        // when the recent rows are folded.
        for (id, fingerprint, alert) in whole_alerts(batch) {
            encoded.clear();
            alert_codec::encode(alert, encoded);
            incident_alert.execute(params![id, fingerprint, &encoded[..], seen_mark])?;
        }
    }
    tx.commit()?;
    Ok(())
}

impl SqliteStore {
    /// [`Store::commit`]; `unsynced`, the transaction skips its sync
    /// (its flush makes it durable).
    fn commit_batch(&self, batch: &CommitBatch, unsynced: bool) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut writer = self.writer();
        let before = (writer.seen_log.next_id, writer.recent.next_timeline_id);
        // Only this transaction skips the sync: every other write of the
        // connection (and a fold below) is durable as it returns.
        let unsynced = unsynced && self.wal.is_some();
        if unsynced {
            writer.conn.pragma_update(None, "synchronous", "NORMAL")?;
        }
        let written = write_batch(&mut writer, batch);
        // Back to FULL whatever came of the batch: other writes of the
        // connection are durable as they return.
        let restored = if unsynced {
            writer.conn.pragma_update(None, "synchronous", "FULL")
        } else {
            Ok(())
        };
        if written.is_err() {
            // Nothing was logged: the ids go out again.
            (writer.seen_log.next_id, writer.recent.next_timeline_id) = before;
        }
        written?;
        let whole_alerts = batch.incident_alerts.len()
            + batch
                .incidents
                .iter()
                .map(|i| i.alerts.len())
                .sum::<usize>();
        writer.recent.rows += whole_alerts + batch.timeline.len();
        writer.seen_log.entries += batch.alert_seen.len();
        writer.seen_log.last_commit = std::time::Instant::now();
        let chunk = writer
            .recent
            .chunk
            .max(whole_alerts.max(batch.timeline.len()));
        if writer.recent.rows >= writer.recent.backlog
            && let Err(e) = fold_recent(&mut writer, chunk)
        {
            // The batch is committed; the rows are folded at a later commit.
            tracing::warn!(error = %e, "folding the recent tables failed");
        }
        let chunk = writer.seen_log.backlog_chunk.max(batch.alert_seen.len());
        if writer.seen_log.entries >= writer.seen_log.backlog
            && let Err(e) = fold_log_chunk(&mut writer, chunk)
        {
            // The batch is committed; the log is folded at a later commit.
            tracing::warn!(error = %e, "folding the refresh log failed");
        }
        // The batch is in, and its flush syncs it. Other writes of the
        // connection may wait for that sync (or the next batch's, which
        // sets FULL again) to be durable.
        if let Err(e) = restored {
            tracing::error!(error = %e, "The store could not go back to synchronous=FULL after a batch.");
        }
        Ok(())
    }
}

impl Store for SqliteStore {
    fn commit(&self, batch: &CommitBatch) -> Result<(), StoreError> {
        self.commit_batch(batch, false)
    }

    fn commit_to_flush(&self, batch: Arc<CommitBatch>) -> Result<Flush, StoreError> {
        self.commit_batch(&batch, true)?;
        Ok(match &self.wal {
            Some(wal) => {
                let wal = wal.clone();
                Flush::new(move || wal.sync())
            }
            None => Flush::done(),
        })
    }

    fn active_incidents(&self) -> Result<Vec<Incident>, StoreError> {
        let conn = self.reader()?;
        // One snapshot for the reads below: a commit between them would
        // pair an old row with newer ones.
        let _snapshot = conn.unchecked_transaction()?;
        let mut stmt =
            conn.prepare("SELECT id, state FROM incidents WHERE status != 'resolved' ORDER BY id")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
        let unfolded = Unfolded::read(&conn, &ids)?;
        rows.iter()
            .map(|(id, state)| load_incident(&conn, *id, state, &unfolded))
            .collect()
    }

    fn max_incident_id(&self) -> Result<i64, StoreError> {
        let conn = self.reader()?;
        Ok(
            conn.query_row("SELECT COALESCE(MAX(id), 0) FROM incidents", [], |r| {
                r.get(0)
            })?,
        )
    }

    fn incident(&self, id: i64) -> Result<Option<(Incident, Vec<TimelineEntry>)>, StoreError> {
        let conn = self.reader()?;
        // One snapshot for the reads below: a commit between them would
        // pair an old row with newer ones.
        let _snapshot = conn.unchecked_transaction()?;
        let state: Option<String> = conn
            .prepare_cached("SELECT state FROM incidents WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        let Some(state) = state else {
            return Ok(None);
        };
        let unfolded = Unfolded::read(&conn, &[id])?;
        let incident = load_incident(&conn, id, &state, &unfolded)?;
        let mut stmt = conn.prepare_cached(
            "SELECT entry FROM (
               SELECT id, entry FROM timeline WHERE incident_id = ?1
               UNION ALL SELECT id, entry FROM timeline_recent WHERE incident_id = ?1)
             ORDER BY id",
        )?;
        let mut entries = stmt
            .query_map([id], |r| r.get::<_, String>(0))?
            .map(|r| {
                let text = r?;
                serde_json::from_str(&text).map_err(|e| corrupt("timeline entry", id, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Lines of alerts joining are stored naming the alert.
        TimelineEntry::render_all(&mut entries, &incident);
        Ok(Some((incident, entries)))
    }

    fn incidents(&self, filter: &IncidentFilter) -> Result<Vec<Incident>, StoreError> {
        let conn = self.reader()?;
        // One snapshot for the reads below: a commit between them would
        // pair an old row with newer ones.
        let _snapshot = conn.unchecked_transaction()?;
        let limit = if filter.limit == 0 { 100 } else { filter.limit };
        let mut stmt = conn.prepare(
            "SELECT id, state FROM incidents
             WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR severity = ?2)
             ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            params![
                filter.status.map(|s| s.as_str()),
                filter.severity.map(|s| s.as_str()),
                i64::try_from(limit).unwrap_or(i64::MAX),
            ],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )?;
        let rows = rows.collect::<Result<Vec<_>, _>>()?;
        let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
        let unfolded = Unfolded::read(&conn, &ids)?;
        rows.iter()
            .map(|(id, state)| load_incident(&conn, *id, state, &unfolded))
            .collect()
    }

    fn due_deliveries(
        &self,
        now: OffsetDateTime,
        limit: usize,
        in_flight: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let conn = self.reader()?;
        // Round robin over destinations: each destination's first due rows
        // (pages and escalations first), then each one's second, and so on.
        // A destination with a thousand rows waiting gets no more of the
        // batch than one with a single page. Order per incident and
        // destination: a resolve never overtakes the page waiting before it.
        // The rows in flight are still pending, and may be any
        // destination's first: each share grows by their number.
        //
        // Each destination's share is read from `outbox_pending` in its
        // order, so a look costs its share (and the rows it skips, held
        // behind an older one), not the backlog: one query ranking every
        // pending row (a window over the whole outbox) made each look at a
        // storm's thousand spilled pages cost milliseconds, a fifth of the
        // server's CPU while they drained.
        let share = usize::try_from(DUE_PER_DESTINATION)
            .unwrap_or(0)
            .saturating_add(in_flight)
            .min(limit);
        // One snapshot for every statement below, as one query had.
        let _snapshot = conn.unchecked_transaction()?;
        let destinations: Vec<String> = conn
            .prepare_cached(PENDING_DESTINATIONS)?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut turns = conn.prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM outbox INDEXED BY outbox_pending
             WHERE status = 'pending' AND destination = ?1 AND {LESS_URGENT} = ?2
               AND next_attempt_at <= ?3 AND {NO_OLDER_PENDING}
             ORDER BY next_attempt_at, id LIMIT ?4"
        ))?;
        let mut shares: Vec<std::vec::IntoIter<Delivery>> = Vec::with_capacity(destinations.len());
        for destination in &destinations {
            let mut rows: Vec<Delivery> = Vec::new();
            for less_urgent in [false, true] {
                let wanted = share - rows.len();
                if wanted == 0 {
                    break;
                }
                let read = turns.query_map(
                    params![
                        destination,
                        less_urgent,
                        millis(now),
                        i64::try_from(wanted).unwrap_or(i64::MAX)
                    ],
                    delivery_row,
                )?;
                for row in read {
                    rows.push(to_delivery(row?)?);
                }
            }
            shares.push(rows.into_iter());
        }
        // Turn by turn; within a turn, pages and escalations first, then
        // by when due and by id.
        let mut due = Vec::new();
        while due.len() < limit {
            let mut turn: Vec<Delivery> = shares.iter_mut().filter_map(Iterator::next).collect();
            if turn.is_empty() {
                break;
            }
            turn.sort_by_key(|d| (!is_urgent(d.kind), d.next_attempt_at, d.id));
            turn.truncate(limit - due.len());
            due.append(&mut turn);
        }
        Ok(due)
    }

    fn next_delivery_due(&self) -> Result<Option<OffsetDateTime>, StoreError> {
        let conn = self.reader()?;
        let next: Option<i64> = conn
            .prepare_cached(&format!(
                "SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending'
                   AND {NO_OLDER_PENDING}"
            ))?
            .query_row([], |r| r.get(0))?;
        Ok(next.map(from_millis))
    }

    fn delivery_id(&self, webhook_id: &str) -> Result<Option<i64>, StoreError> {
        let conn = self.reader()?;
        Ok(conn
            .query_row(
                "SELECT id FROM outbox WHERE webhook_id = ?1",
                [webhook_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn record_attempts(&self, attempts: &[(i64, AttemptRecord)]) -> Result<(), StoreError> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        for (id, attempt) in attempts {
            write_attempt(&tx, *id, attempt)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn postpone(&self, id: i64, at: OffsetDateTime) -> Result<(), StoreError> {
        let conn = self.writer();
        conn.prepare_cached(
            "UPDATE outbox SET next_attempt_at = ?2 WHERE id = ?1 AND status = 'pending'",
        )?
        .execute(params![id, millis(at)])?;
        Ok(())
    }

    fn fail_over(
        &self,
        id: i64,
        attempt: &AttemptRecord,
        to: &NewDelivery,
        note: &TimelineEntry,
    ) -> Result<i64, StoreError> {
        let mut writer = self.writer();
        let line_id = writer.recent.next_timeline_id;
        let tx = writer.conn.transaction()?;
        write_attempt(&tx, id, attempt)?;
        tx.execute(
            "INSERT OR IGNORE INTO outbox (incident_id, destination, kind, webhook_id, body, status,
               next_attempt_at, created_at, failover_of)
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?6, ?7)",
            params![
                to.incident_id,
                to.destination,
                to.kind.as_str(),
                to.webhook_id,
                to.body,
                millis(to.created_at),
                id,
            ],
        )?;
        let new_id: i64 = tx.query_row(
            "SELECT id FROM outbox WHERE webhook_id = ?1",
            [&to.webhook_id],
            |r| r.get(0),
        )?;
        let text = serde_json::to_string(note).map_err(|e| corrupt("timeline entry", id, e))?;
        tx.execute(
            "INSERT INTO timeline_recent (id, incident_id, entry) VALUES (?1, ?2, ?3)",
            params![line_id, to.incident_id, text],
        )?;
        tx.commit()?;
        writer.recent.next_timeline_id += 1;
        writer.recent.rows += 1;
        Ok(new_id)
    }

    fn coalesce_repeats(&self, now: OffsetDateTime) -> Result<usize, StoreError> {
        // The worker asks before each look at the outbox, and almost every
        // time there is nothing to coalesce: a read says so without
        // waiting for the writer, which the router's commits keep busy
        // during a storm (a burst of first pages waited on it per look).
        let any: bool = self.reader()?.query_row(
            &format!("SELECT EXISTS (SELECT 1 FROM outbox WHERE {REPEATED_REMINDER})"),
            [],
            |r| r.get(0),
        )?;
        if !any {
            return Ok(0);
        }
        let conn = self.writer();
        Ok(conn.execute(
            &format!(
                "UPDATE outbox SET status = 'skipped', finished_at = ?1,
                   last_error = 'coalesced: a newer reminder to the same destination replaces it'
                 WHERE {REPEATED_REMINDER}"
            ),
            [millis(now)],
        )?)
    }

    fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>, StoreError> {
        let conn = self.reader()?;
        let limit = if filter.limit == 0 { 100 } else { filter.limit };
        let mut stmt = conn.prepare(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM outbox
             WHERE (?1 IS NULL OR status = ?1)
               AND (?2 IS NULL OR COALESCE(finished_at, created_at) >= ?2)
             ORDER BY id DESC LIMIT ?3"
        ))?;
        let rows = stmt.query_map(
            params![
                filter.status.map(|s| s.as_str()),
                filter.since.map(millis),
                i64::try_from(limit).unwrap_or(i64::MAX),
            ],
            delivery_row,
        )?;
        rows.map(|r| to_delivery(r?)).collect()
    }

    fn delivery(&self, id: i64) -> Result<Option<(Delivery, Vec<AttemptLog>)>, StoreError> {
        let conn = self.reader()?;
        // One snapshot for the reads below: a commit between them would
        // pair an old row with newer ones.
        let _snapshot = conn.unchecked_transaction()?;
        let row = conn
            .query_row(
                &format!("SELECT {DELIVERY_COLUMNS} FROM outbox WHERE id = ?1"),
                [id],
                delivery_row,
            )
            .optional()?;
        let Some(row) = row else {
            return Ok(None);
        };
        let delivery = to_delivery(row)?;
        let mut stmt = conn.prepare(
            "SELECT at, status, http_status, error, outcome, elapsed_ms, response_headers,
               response_excerpt
             FROM delivery_attempts WHERE delivery_id = ?1 ORDER BY id",
        )?;
        let attempts = stmt
            .query_map([id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<u16>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                ))
            })?
            .map(|r| {
                let (at, status, http_status, error, outcome, elapsed, headers, excerpt) = r?;
                Ok(AttemptLog {
                    at: from_millis(at),
                    status: DeliveryStatus::parse(&status).ok_or_else(|| {
                        corrupt("delivery attempt", id, format!("unknown status {status:?}"))
                    })?,
                    http_status,
                    error,
                    outcome,
                    elapsed_ms: u64::try_from(elapsed).unwrap_or(0),
                    response_headers: headers,
                    response_excerpt: excerpt,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some((delivery, attempts)))
    }

    fn requeue(&self, id: i64, now: OffsetDateTime) -> Result<Option<bool>, StoreError> {
        let conn = self.writer();
        let status: Option<String> = conn
            .query_row("SELECT status FROM outbox WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        let Some(status) = status else {
            return Ok(None);
        };
        if status != "dead" && status != "failed_over" {
            return Ok(Some(false));
        }
        conn.execute(
            "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?2,
               finished_at = NULL WHERE id = ?1",
            params![id, millis(now)],
        )?;
        Ok(Some(true))
    }

    fn requeue_since(
        &self,
        since: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Vec<i64>, StoreError> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        let ids: Vec<i64> = {
            let mut stmt = tx.prepare(
                "SELECT id FROM outbox WHERE status IN ('dead', 'failed_over')
                   AND finished_at >= ?1 ORDER BY id",
            )?;
            stmt.query_map([millis(since)], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        for id in &ids {
            tx.execute(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?2,
                   finished_at = NULL WHERE id = ?1",
                params![id, millis(now)],
            )?;
        }
        tx.commit()?;
        Ok(ids)
    }

    fn disable_destination(
        &self,
        name: &str,
        reason: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let conn = self.writer();
        conn.execute(
            "INSERT INTO disabled_destinations (name, reason, at) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO NOTHING",
            params![name, reason, millis(at)],
        )?;
        Ok(())
    }

    fn enable_destination(&self, name: &str) -> Result<bool, StoreError> {
        let conn = self.writer();
        Ok(conn.execute("DELETE FROM disabled_destinations WHERE name = ?1", [name])? > 0)
    }

    fn enable_all_destinations(&self) -> Result<(), StoreError> {
        let conn = self.writer();
        conn.execute("DELETE FROM disabled_destinations", [])?;
        Ok(())
    }

    fn disabled_destinations(&self) -> Result<Vec<DisabledDestination>, StoreError> {
        let conn = self.reader()?;
        let mut stmt =
            conn.prepare("SELECT name, reason, at FROM disabled_destinations ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok(DisabledDestination {
                name: r.get(0)?,
                reason: r.get(1)?,
                at: from_millis(r.get(2)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn deliveries_for(&self, incident_id: i64) -> Result<Vec<Delivery>, StoreError> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM outbox WHERE incident_id = ?1 ORDER BY id"
        ))?;
        let rows = stmt.query_map([incident_id], delivery_row)?;
        rows.map(|r| to_delivery(r?)).collect()
    }

    fn instance_id(&self) -> Result<String, StoreError> {
        let conn = self.reader()?;
        Ok(conn.query_row(
            "SELECT value FROM meta WHERE key = 'instance_id'",
            [],
            |r| r.get(0),
        )?)
    }

    fn slo_samples(&self) -> Result<Vec<SloSampleRecord>, StoreError> {
        let conn = self.reader()?;
        let mut stmt = conn.prepare(
            "SELECT slo, received_at, at, cumulative, good, total FROM slo_samples ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(SloSampleRecord {
                slo: r.get(0)?,
                received_at: r.get(1)?,
                at: r.get(2)?,
                cumulative: r.get(3)?,
                good: r.get(4)?,
                total: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn outbox_stats(&self, now: OffsetDateTime) -> Result<OutboxStats, StoreError> {
        let conn = self.reader()?;
        let (pending, oldest): (i64, Option<i64>) = conn.query_row(
            "SELECT COUNT(*), MIN(created_at) FROM outbox WHERE status = 'pending'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let age_ms = oldest.map(|o| (millis(now) - o).max(0)).unwrap_or(0);
        Ok(OutboxStats {
            pending: u64::try_from(pending).unwrap_or(0),
            oldest_pending_age_secs: u64::try_from(age_ms / 1000).unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::route::{IncidentStatus, TimelineKind, Timers};
    use crate::store::{AlertRecord, AlertSeen, DeliveryFilter, NewDelivery};

    const T0: OffsetDateTime = datetime!(2026-11-27 12:00 UTC);

    fn incident(id: i64, status: IncidentStatus) -> Incident {
        Incident {
            id,
            key: format!("{{service=\"s{id}\"}}"),
            group_labels: Default::default(),
            title: format!("incident {id}"),
            status,
            severity: Some(crate::model::Severity::Sev2),
            pinned: None,
            declared_at: T0,
            opened_at: Some(T0),
            acked_at: None,
            resolved_at: None,
            alerts: Default::default(),
            paged: Default::default(),
            postmortem_required: false,
            slo_budgets: Default::default(),
            timers: Timers {
                cadence_due: Some(T0 + time::Duration::minutes(30)),
                ..Timers::default()
            },
            action_seq: 1,
        }
    }

    /// `n` minutes after T0.
    fn minute(n: i64) -> OffsetDateTime {
        T0 + time::Duration::minutes(n)
    }

    /// Incident 1, open, holding alert "a" as seen at T0; and a's
    /// fingerprint.
    fn incident_holding_a() -> (String, Incident) {
        let (a, alert) = tracked("a", T0);
        let mut holding = incident(1, IncidentStatus::Open);
        holding.alerts = [(a.clone(), alert)].into_iter().collect();
        (a, holding)
    }

    /// Commits `incident` whole.
    fn commit_whole(store: &SqliteStore, incident: &Incident) {
        store
            .commit(&CommitBatch {
                incidents: vec![incident.clone()],
                ..CommitBatch::default()
            })
            .unwrap();
    }

    fn tracked(instance: &str, at: OffsetDateTime) -> (String, TrackedAlert) {
        let alert = crate::model::Alert {
            labels: [("alertname", "X"), ("instance", instance)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..crate::model::Alert::default()
        };
        let tracked = TrackedAlert {
            alert,
            severity: Some(crate::model::Severity::Sev2),
            rule: Some("r".into()),
            explanation: vec!["why".to_string()].into(),
            first_seen: T0,
            last_seen: at,
            announced: true,
        };
        (tracked.alert.fingerprint().to_string(), tracked)
    }

    /// The writing connection's `PRAGMA synchronous` (2 is FULL).
    fn synchronous(store: &SqliteStore) -> i64 {
        store
            .writer()
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_commit_to_flush_skips_only_its_own_sync_and_its_flush_makes_it_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = SqliteStore::open(&path).unwrap();
        let (_, holding) = incident_holding_a();
        let flush = store
            .commit_to_flush(Arc::new(CommitBatch {
                incidents: vec![holding.clone()],
                ..CommitBatch::default()
            }))
            .unwrap();
        // Readable at once; every other write syncs as it commits again.
        assert_eq!(store.active_incidents().unwrap(), vec![holding.clone()]);
        assert_eq!(synchronous(&store), 2, "FULL");
        flush.run().unwrap();
        drop(store);
        let reopened = SqliteStore::open(&path).unwrap();
        assert_eq!(reopened.active_incidents().unwrap(), vec![holding]);
        // A failed commit leaves the connection syncing too. (RFC 3339,
        // the refresh log's form, has no year before 0.)
        let refused = reopened.commit_to_flush(Arc::new(CommitBatch {
            alert_seen: vec![crate::store::AlertSeen {
                incident_id: 1,
                fingerprint: "a".into(),
                last_seen: time::macros::datetime!(-0001-01-01 0:00 UTC),
                ends_at: None,
            }],
            ..CommitBatch::default()
        }));
        assert!(refused.is_err());
        assert_eq!(synchronous(&reopened), 2, "FULL after a refused commit");
    }

    #[test]
    fn a_wal_that_cannot_be_synced_says_which_file() {
        let dir = tempfile::tempdir().unwrap();
        let wal = WalFile::new(&dir.path().join("never-opened.db"));
        let err = wal.sync().unwrap_err();
        assert!(
            matches!(&err, StoreError::Flush { path, .. } if path.ends_with("never-opened.db-wal")),
            "{err}"
        );
        // Once SQLite made it, the same WalFile syncs it.
        let store = SqliteStore::open(&dir.path().join("never-opened.db")).unwrap();
        commit_whole(&store, &incident_holding_a().1);
        wal.sync().unwrap();
    }

    #[test]
    fn a_batch_with_many_alerts_writes_them_as_a_small_one_does() {
        // Every alert of the batch in its own row, in order: a later
        // write of the same alert in the batch wins.
        for alerts in [2, 130, 1031] {
            let store = SqliteStore::in_memory().unwrap();
            let mut whole = incident(1, IncidentStatus::Open);
            whole.alerts = (0..alerts / 2)
                .map(|i| tracked(&format!("i{i}"), T0))
                .collect();
            // The later writes: new alerts, and a second write of one the
            // incident holds, which must win.
            let later = T0 + time::Duration::minutes(1);
            let mut incident_alerts: Vec<_> = (alerts / 2..alerts)
                .map(|i| {
                    let (fingerprint, alert) = tracked(&format!("i{i}"), later);
                    crate::store::IncidentAlert::new(1, fingerprint, alert)
                })
                .collect();
            let (again, rewritten) = tracked("i0", later);
            incident_alerts.push(crate::store::IncidentAlert::new(
                1,
                again.clone(),
                rewritten,
            ));
            let mut expected = whole.clone();
            for a in &incident_alerts {
                expected
                    .alerts
                    .insert(a.fingerprint.clone(), (*a.alert).clone());
            }
            store
                .commit_to_flush(Arc::new(CommitBatch {
                    incidents: vec![whole],
                    incident_alerts,
                    ..CommitBatch::default()
                }))
                .unwrap()
                .run()
                .unwrap();
            let (loaded, _) = store.incident(1).unwrap().unwrap();
            assert_eq!(loaded.alerts.len(), alerts, "batch of {alerts}");
            assert_eq!(loaded.alerts[&again].last_seen, later, "batch of {alerts}");
            assert_eq!(loaded, expected, "batch of {alerts}");
        }
    }

    #[test]
    fn an_incident_keeps_its_alerts_in_rows_of_their_own() {
        let store = SqliteStore::in_memory().unwrap();
        let mut first = incident(1, IncidentStatus::Open);
        first.alerts = [tracked("a", T0), tracked("b", T0)].into_iter().collect();
        store
            .commit(&CommitBatch {
                incidents: vec![first.clone()],
                ..CommitBatch::default()
            })
            .unwrap();
        // The incident's own row holds no alerts.
        let state: String = store
            .writer()
            .query_row("SELECT state FROM incidents WHERE id = 1", [], |r| r.get(0))
            .unwrap();
        assert!(state.contains("\"alerts\":{}"), "{state}");
        assert_eq!(store.active_incidents().unwrap(), vec![first.clone()]);

        // A refresh of one alert: the row without alerts, and that alert.
        let later = T0 + time::Duration::minutes(1);
        let (fingerprint, b) = tracked("b", later);
        let mut header = first.header();
        header.action_seq = 2;
        store
            .commit(&CommitBatch {
                incidents: vec![header],
                incident_alerts: vec![crate::store::IncidentAlert::new(
                    1,
                    fingerprint.clone(),
                    b.clone(),
                )],
                ..CommitBatch::default()
            })
            .unwrap();
        let mut expected = first;
        expected.action_seq = 2;
        expected.alerts.insert(fingerprint, b);
        let (loaded, _) = store.incident(1).unwrap().unwrap();
        assert_eq!(loaded, expected);
        assert_eq!(loaded.alerts.len(), 2);
        assert_eq!(
            store.incidents(&IncidentFilter::default()).unwrap(),
            vec![expected]
        );
    }

    #[test]
    fn alerts_are_stored_in_their_compact_form_and_json_rows_of_earlier_versions_still_read() {
        let store = SqliteStore::in_memory().unwrap();
        let mut first = incident(1, IncidentStatus::Open);
        first.alerts = [tracked("a", T0)].into_iter().collect();
        commit_whole(&store, &first);
        let kind: String = store
            .writer()
            .query_row(
                "SELECT typeof(state) FROM incident_alerts_recent WHERE incident_id = 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(kind, "blob");
        // Rows as an earlier version wrote them: JSON text, folded and
        // recent.
        let (b, old_b) = tracked("b", T0);
        let (c, old_c) = tracked("c", T0);
        {
            let writer = store.writer();
            writer
                .execute(
                    "INSERT INTO incident_alerts (incident_id, fingerprint, state) VALUES (1, ?1, ?2)",
                    params![b, serde_json::to_string(&old_b).unwrap()],
                )
                .unwrap();
            writer
                .execute(
                    "INSERT INTO incident_alerts_recent (incident_id, fingerprint, state, seen_mark)
                     VALUES (1, ?1, ?2, 0)",
                    params![c, serde_json::to_string(&old_c).unwrap()],
                )
                .unwrap();
        }
        let mut expected = first;
        expected.alerts.insert(b, old_b);
        expected.alerts.insert(c, old_c);
        assert_eq!(store.incident(1).unwrap().unwrap().0, expected);
        // Folded, both forms stay as they are and read the same.
        while fold_recent(&mut store.writer(), 100).unwrap() > 0 {}
        assert_eq!(store.active_incidents().unwrap(), vec![expected]);
    }

    #[test]
    fn a_line_naming_a_joining_alert_reads_as_the_alerts_labels() {
        let store = SqliteStore::in_memory().unwrap();
        let mut first = incident(1, IncidentStatus::Open);
        let (a, alert) = tracked("a", T0);
        first.alerts.insert(a.clone(), alert);
        let joined = TimelineEntry {
            at: T0,
            kind: TimelineKind::AlertJoined,
            actor: None,
            text: String::new(),
            alert: Some(a),
        };
        store
            .commit(&CommitBatch {
                incidents: vec![first],
                timeline: vec![(1, line("opened")), (1, joined)],
                ..CommitBatch::default()
            })
            .unwrap();
        let stored: String = store
            .writer()
            .query_row(
                "SELECT entry FROM timeline_recent ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(!stored.contains("instance"), "{stored}");
        let (_, timeline) = store.incident(1).unwrap().unwrap();
        let texts: Vec<_> = timeline.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["opened", r#"X{instance="a"} joined"#]);
        assert!(timeline.iter().all(|l| l.alert.is_none()));
    }

    #[test]
    fn a_stored_alert_that_does_not_decode_is_named_not_a_panic() {
        let store = SqliteStore::in_memory().unwrap();
        let mut first = incident(7, IncidentStatus::Open);
        first.alerts = [tracked("a", T0)].into_iter().collect();
        commit_whole(&store, &first);
        store
            .writer()
            .execute(
                "UPDATE incident_alerts_recent SET state = substr(state, 1, 20)",
                [],
            )
            .unwrap();
        let err = store.incident(7).unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { what: "incident alert", id: 7, message }
                if message.contains("cut short")),
            "{err}"
        );
    }

    #[test]
    fn a_refresh_written_as_seen_times_loads_as_the_whole_alert_would() {
        let store = SqliteStore::in_memory().unwrap();
        let mut first = incident(1, IncidentStatus::Open);
        first.alerts = [tracked("a", T0), tracked("b", T0)].into_iter().collect();
        store
            .commit(&CommitBatch {
                incidents: vec![first.clone()],
                ..CommitBatch::default()
            })
            .unwrap();
        let later = T0 + time::Duration::minutes(1);
        let ends = later + time::Duration::minutes(4);
        let (fingerprint, _) = tracked("b", T0);
        // Once with an end, then without one: both directions of `null`.
        for ends_at in [Some(ends), None] {
            store
                .commit(&CommitBatch {
                    alert_seen: vec![crate::store::AlertSeen {
                        incident_id: 1,
                        fingerprint: fingerprint.clone(),
                        last_seen: later,
                        ends_at,
                    }],
                    ..CommitBatch::default()
                })
                .unwrap();
            let mut expected = first.clone();
            let b = expected.alerts.get_mut(&fingerprint).unwrap();
            b.last_seen = later;
            b.alert.ends_at = ends_at;
            let (loaded, _) = store.incident(1).unwrap().unwrap();
            assert_eq!(loaded, expected, "ends_at {ends_at:?}");
        }
        // A later write of the whole alert wins over the refresh before it.
        let (_, mut whole) = tracked("b", T0 + time::Duration::minutes(5));
        whole.alert.ends_at = Some(T0 + time::Duration::minutes(9));
        store
            .commit(&CommitBatch {
                incident_alerts: vec![crate::store::IncidentAlert::new(
                    1,
                    fingerprint.clone(),
                    whole.clone(),
                )],
                ..CommitBatch::default()
            })
            .unwrap();
        let (loaded, _) = store.incident(1).unwrap().unwrap();
        assert_eq!(loaded.alerts[&fingerprint], whole);
    }

    fn seen(fingerprint: &str, at: OffsetDateTime, ends_at: Option<OffsetDateTime>) -> AlertSeen {
        AlertSeen {
            incident_id: 1,
            fingerprint: fingerprint.to_string(),
            last_seen: at,
            ends_at,
        }
    }

    fn refresh(store: &SqliteStore, refreshes: Vec<AlertSeen>) {
        store
            .commit(&CommitBatch {
                alert_seen: refreshes,
                ..CommitBatch::default()
            })
            .unwrap();
    }

    fn schema_version(store: &SqliteStore) -> String {
        store
            .writer()
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    }

    /// Commits with `commit(n)` for n = 1, 2, ..., 10 ms apart, until
    /// `rows()` (what is left unfolded) falls below what those commits
    /// added: a fold while commits go on. Returns the last n.
    fn commit_until_folded_while_busy(mut commit: impl FnMut(i64), rows: impl Fn() -> i64) -> i64 {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let (mut added, mut n) = (0, 0);
        let mut last_commit = std::time::Instant::now();
        loop {
            n += 1;
            commit(n);
            let since_last = last_commit.elapsed();
            last_commit = std::time::Instant::now();
            added += 1;
            let rows = rows();
            if since_last >= SEEN_LOG_IDLE {
                // The machine stalled long enough to count as a pause:
                // what was folded meanwhile proves nothing.
                added = rows;
            } else if rows < added {
                return n;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never folded while busy"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Folds the recent tables, then the log, to empty.
    fn fold_all(store: &SqliteStore) {
        fold_recent(&mut store.writer(), usize::MAX).unwrap();
        fold_seen_log(&mut store.writer(), usize::MAX).unwrap();
    }

    fn log_entries(store: &SqliteStore) -> (i64, usize) {
        let writer = store.writer();
        let rows = writer
            .query_row("SELECT COUNT(*) FROM alert_seen_log", [], |r| r.get(0))
            .unwrap();
        (rows, writer.seen_log.entries)
    }

    /// Every way of reading incident 1 gives `expected`.
    fn reads_as(store: &SqliteStore, expected: &Incident) {
        assert_eq!(&store.incident(1).unwrap().unwrap().0, expected);
        assert_eq!(store.active_incidents().unwrap(), vec![expected.clone()]);
        assert_eq!(
            store.incidents(&IncidentFilter::default()).unwrap(),
            vec![expected.clone()]
        );
    }

    #[test]
    fn refreshes_are_logged_read_newest_first_and_folded_into_the_rows() {
        let store = SqliteStore::in_memory().unwrap();
        let mut expected = incident(1, IncidentStatus::Open);
        expected.alerts = [tracked("a", T0), tracked("b", T0)].into_iter().collect();
        commit_whole(&store, &expected);
        // The whole writes are recent; folded, their rows take the log's.
        fold_recent(&mut store.writer(), usize::MAX).unwrap();
        let (a, _) = tracked("a", T0);
        let (b, _) = tracked("b", T0);
        refresh(&store, vec![seen(&b, minute(1), Some(minute(5)))]);
        refresh(
            &store,
            vec![seen(&a, minute(2), None), seen(&b, minute(3), None)],
        );
        refresh(&store, vec![seen(&b, minute(4), Some(minute(9)))]);
        assert_eq!(log_entries(&store), (4, 4));
        // The rows are as the whole write left them: the log holds it all.
        let untouched: i64 = store
            .writer()
            .query_row(
                "SELECT COUNT(*) FROM incident_alerts WHERE last_seen IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(untouched, 2);
        expected.alerts.get_mut(&a).unwrap().last_seen = minute(2);
        let alert_b = expected.alerts.get_mut(&b).unwrap();
        alert_b.last_seen = minute(4);
        alert_b.alert.ends_at = Some(minute(9));
        reads_as(&store, &expected);

        // Folding the two oldest: b's newest entry is still in the log.
        assert_eq!(fold_seen_log(&mut store.writer(), 2).unwrap(), 2);
        assert_eq!(log_entries(&store), (2, 2));
        reads_as(&store, &expected);
        // The rest: the rows alone hold the newest values.
        assert_eq!(fold_seen_log(&mut store.writer(), 100).unwrap(), 2);
        assert_eq!(log_entries(&store), (0, 0));
        let (b_seen, b_ends): (String, Option<String>) = store
            .writer()
            .query_row(
                "SELECT last_seen, ends_at FROM incident_alerts WHERE fingerprint = ?1",
                [&b],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(b_seen, rfc3339(minute(4)).unwrap());
        assert_eq!(b_ends, Some(rfc3339(minute(9)).unwrap()));
        reads_as(&store, &expected);
        assert_eq!(fold_seen_log(&mut store.writer(), 100).unwrap(), 0);
    }

    #[test]
    fn a_whole_write_after_a_refresh_wins_over_it_before_and_after_the_fold_and_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let (a, mut expected) = incident_holding_a();
        let whole_write = |store: &SqliteStore, at: OffsetDateTime| {
            let (_, mut alert) = tracked("a", at);
            alert.alert.ends_at = Some(at + time::Duration::hours(1));
            store
                .commit(&CommitBatch {
                    incident_alerts: vec![crate::store::IncidentAlert::new(
                        1,
                        a.clone(),
                        alert.clone(),
                    )],
                    ..CommitBatch::default()
                })
                .unwrap();
            alert
        };
        {
            let store = SqliteStore::open(&path).unwrap();
            commit_whole(&store, &expected);
            refresh(&store, vec![seen(&a, minute(1), Some(minute(2)))]);
            let whole = whole_write(&store, minute(3));
            expected.alerts.insert(a.clone(), whole);
            reads_as(&store, &expected);
            fold_all(&store);
            assert_eq!(log_entries(&store), (0, 0));
            reads_as(&store, &expected);
        }
        // The log is empty after the fold, yet the ids go on from the
        // highest folded: a refresh now is newer than the row's mark.
        let store = SqliteStore::open(&path).unwrap();
        reads_as(&store, &expected);
        refresh(&store, vec![seen(&a, minute(4), None)]);
        let alert = expected.alerts.get_mut(&a).unwrap();
        alert.last_seen = minute(4);
        alert.alert.ends_at = None;
        reads_as(&store, &expected);
        // And a whole write, then a refresh: the refresh is the newer.
        let whole = whole_write(&store, minute(4));
        expected.alerts.insert(a.clone(), whole);
        refresh(&store, vec![seen(&a, minute(5), None)]);
        let alert = expected.alerts.get_mut(&a).unwrap();
        alert.last_seen = minute(5);
        alert.alert.ends_at = None;
        reads_as(&store, &expected);
    }

    fn line(text: &str) -> TimelineEntry {
        TimelineEntry {
            at: T0,
            kind: TimelineKind::StatusUpdate,
            actor: None,
            text: text.into(),
            alert: None,
        }
    }

    fn lines(store: &SqliteStore, id: i64) -> Vec<String> {
        let (_, timeline) = store.incident(id).unwrap().unwrap();
        timeline.into_iter().map(|e| e.text).collect()
    }

    fn recent_rows(store: &SqliteStore) -> (i64, usize) {
        let writer = store.writer();
        let rows = writer
            .query_row(
                "SELECT (SELECT COUNT(*) FROM incident_alerts_recent)
                      + (SELECT COUNT(*) FROM timeline_recent)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        (rows, writer.recent.rows)
    }

    #[test]
    fn recent_alerts_and_lines_read_the_same_before_during_and_after_their_fold_and_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut expected = incident(1, IncidentStatus::Open);
        expected.alerts = [tracked("a", T0), tracked("b", T0)].into_iter().collect();
        let (b, _) = tracked("b", T0);
        let later = T0 + time::Duration::minutes(1);
        let (_, b_later) = tracked("b", later);
        let mut written_lines: Vec<String> = ["one", "two", "three", "four", "five"]
            .map(String::from)
            .to_vec();
        // Incident 2's line is in the same tables: each reads its own.
        let reads_as = |store: &SqliteStore, expected: &Incident| {
            assert_eq!(&store.incident(1).unwrap().unwrap().0, expected);
            assert_eq!(&store.active_incidents().unwrap()[0], expected);
        };
        {
            let store = SqliteStore::open(&path).unwrap();
            store
                .commit(&CommitBatch {
                    incidents: vec![expected.clone(), incident(2, IncidentStatus::Open)],
                    timeline: vec![(1, line("one")), (2, line("other")), (1, line("two"))],
                    deliveries: vec![delivery(1, "page", T0)],
                    ..CommitBatch::default()
                })
                .unwrap();
            // Folded, the first write's rows are in the indexed tables; the
            // next are recent: b written whole again, and more lines, one
            // of them a failover's note.
            fold_recent(&mut store.writer(), usize::MAX).unwrap();
            assert_eq!(recent_rows(&store), (0, 0));
            store
                .commit(&CommitBatch {
                    incident_alerts: vec![crate::store::IncidentAlert::new(
                        1,
                        b.clone(),
                        b_later.clone(),
                    )],
                    timeline: vec![(1, line("three"))],
                    ..CommitBatch::default()
                })
                .unwrap();
            let original = store.due_deliveries(T0, 10, 0).unwrap().remove(0);
            let attempt = AttemptRecord {
                status: DeliveryStatus::FailedOver,
                next_attempt_at: None,
                http_status: Some(503),
                error: None,
                at: T0,
                detail: None,
            };
            let copy = delivery(1, "page_fo", T0);
            store
                .fail_over(original.id, &attempt, &copy, &line("four"))
                .unwrap();
            store
                .commit(&CommitBatch {
                    timeline: vec![(1, line("five"))],
                    ..CommitBatch::default()
                })
                .unwrap();
            assert_eq!(recent_rows(&store), (4, 4));
            expected.alerts.insert(b.clone(), b_later.clone());
            reads_as(&store, &expected);
            assert_eq!(lines(&store, 1), written_lines);
            // A fold of one row per table: some of each in both tables.
            fold_recent(&mut store.writer(), 1).unwrap();
            assert_eq!(recent_rows(&store), (2, 2));
            reads_as(&store, &expected);
            assert_eq!(lines(&store, 1), written_lines);
        }
        // Reopened: the count is read back, and a new line goes after all.
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(recent_rows(&store), (2, 2));
        reads_as(&store, &expected);
        store
            .commit(&CommitBatch {
                timeline: vec![(1, line("six"))],
                ..CommitBatch::default()
            })
            .unwrap();
        written_lines.push("six".into());
        assert_eq!(lines(&store, 1), written_lines);
        fold_recent(&mut store.writer(), usize::MAX).unwrap();
        assert_eq!(recent_rows(&store), (0, 0));
        reads_as(&store, &expected);
        assert_eq!(lines(&store, 1), written_lines);
        assert_eq!(lines(&store, 2), vec!["other".to_string()]);
    }

    #[test]
    fn a_refresh_of_an_alert_whose_whole_write_is_recent_waits_for_its_fold() {
        let store = SqliteStore::in_memory().unwrap();
        let (_, mut expected) = incident_holding_a();
        commit_whole(&store, &expected);
        fold_recent(&mut store.writer(), usize::MAX).unwrap();
        // A whole write, recent, then a refresh of it, logged.
        let (a, _) = tracked("a", T0);
        let (_, whole) = tracked("a", minute(1));
        store
            .commit(&CommitBatch {
                incident_alerts: vec![crate::store::IncidentAlert::new(
                    1,
                    a.clone(),
                    whole.clone(),
                )],
                ..CommitBatch::default()
            })
            .unwrap();
        refresh(&store, vec![seen(&a, minute(2), Some(minute(7)))]);
        let mut refreshed = whole;
        refreshed.last_seen = minute(2);
        refreshed.alert.ends_at = Some(minute(7));
        expected.alerts.insert(a.clone(), refreshed);
        reads_as(&store, &expected);
        // Folded into the row before the whole write is, the refresh would
        // be overwritten by it: it stays in the log.
        assert_eq!(fold_seen_log(&mut store.writer(), 100).unwrap(), 0);
        assert_eq!(log_entries(&store), (1, 1));
        reads_as(&store, &expected);
        fold_recent(&mut store.writer(), usize::MAX).unwrap();
        reads_as(&store, &expected);
        assert_eq!(fold_seen_log(&mut store.writer(), 100).unwrap(), 1);
        assert_eq!(log_entries(&store), (0, 0));
        reads_as(&store, &expected);
    }

    #[test]
    fn recent_rows_are_folded_when_idle_while_busy_past_the_steady_mark_and_past_the_backlog() {
        let whole = |n: i64| {
            let (fingerprint, alert) = tracked("a", minute(n));
            CommitBatch {
                incident_alerts: vec![crate::store::IncidentAlert::new(
                    1,
                    fingerprint,
                    alert.clone(),
                )],
                ..CommitBatch::default()
            }
        };
        let mut expected = incident(1, IncidentStatus::Open);
        let first = CommitBatch {
            incidents: vec![expected.clone()],
            ..CommitBatch::default()
        };

        // A file store's thread folds them all once no commit came for a while.
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        store.commit(&first).unwrap();
        for n in 1..=3 {
            store.commit(&whole(n)).unwrap();
        }
        wait_for("the idle fold", || recent_rows(&store) == (0, 0));
        expected.alerts = [tracked("a", minute(3))].into_iter().collect();
        reads_as(&store, &expected);

        // Past the steady mark, it folds while commits go on.
        let store = SqliteStore::open(&dir.path().join("t.db")).unwrap();
        store.commit(&first).unwrap();
        store.writer().recent.steady = 2;
        let n = commit_until_folded_while_busy(
            |n| store.commit(&whole(n)).unwrap(),
            || recent_rows(&store).0,
        );
        expected.alerts = [tracked("a", minute(n))].into_iter().collect();
        reads_as(&store, &expected);

        // Past the backlog, each commit folds a chunk, whatever the load.
        let store = SqliteStore::in_memory().unwrap();
        store.commit(&first).unwrap();
        fold_recent(&mut store.writer(), usize::MAX).unwrap();
        store.writer().recent.backlog = 3;
        store.writer().recent.chunk = 2;
        store.commit(&whole(1)).unwrap();
        store.commit(&whole(2)).unwrap();
        assert_eq!(recent_rows(&store), (2, 2));
        store.commit(&whole(3)).unwrap();
        assert_eq!(recent_rows(&store), (1, 1));
        expected.alerts = [tracked("a", minute(3))].into_iter().collect();
        reads_as(&store, &expected);
    }

    #[test]
    fn a_refused_commit_gives_its_log_ids_out_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let (a, mut expected) = incident_holding_a();
        {
            let store = SqliteStore::open(&path).unwrap();
            commit_whole(&store, &expected);
            refresh(&store, vec![seen(&a, minute(1), None)]);
            store
                .writer()
                .execute_batch(
                    "CREATE TEMP TRIGGER refuse BEFORE INSERT ON alert_seen_log
                     WHEN NEW.fingerprint = 'refused'
                     BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
                )
                .unwrap();
            let refused = store.commit(&CommitBatch {
                alert_seen: vec![seen(&a, minute(2), None), seen("refused", minute(2), None)],
                ..CommitBatch::default()
            });
            assert!(refused.is_err());
            // This whole write's mark must not count the refused ids:
            // after a restart they are given out again.
            let (_, mut whole) = tracked("a", minute(3));
            whole.alert.ends_at = Some(minute(30));
            store
                .commit(&CommitBatch {
                    incident_alerts: vec![crate::store::IncidentAlert::new(
                        1,
                        a.clone(),
                        whole.clone(),
                    )],
                    ..CommitBatch::default()
                })
                .unwrap();
            expected.alerts.insert(a.clone(), whole);
            reads_as(&store, &expected);
        }
        let store = SqliteStore::open(&path).unwrap();
        refresh(&store, vec![seen(&a, minute(4), None)]);
        let alert = expected.alerts.get_mut(&a).unwrap();
        alert.last_seen = minute(4);
        alert.alert.ends_at = None;
        reads_as(&store, &expected);
    }

    #[test]
    fn the_log_is_folded_in_pauses_while_busy_past_the_steady_mark_and_at_each_commit_past_the_backlog()
     {
        let (a, mut expected) = incident_holding_a();
        let first = CommitBatch {
            incidents: vec![expected.clone()],
            ..CommitBatch::default()
        };
        expected.alerts.get_mut(&a).unwrap().last_seen = minute(3);

        // A file store's thread folds it all once no commit came for a while.
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        store.commit(&first).unwrap();
        for n in 1..=3 {
            refresh(&store, vec![seen(&a, minute(n), None)]);
        }
        wait_for("the idle fold", || log_entries(&store) == (0, 0));
        reads_as(&store, &expected);

        // Past the steady mark, it folds while commits go on.
        // (The incident's alert is still a recent write: it holds the log
        // back until it is folded, which the log's fold does first.)
        let store = SqliteStore::open(&dir.path().join("t.db")).unwrap();
        store.commit(&first).unwrap();
        store.writer().seen_log.steady = 2;
        let n = commit_until_folded_while_busy(
            |n| refresh(&store, vec![seen(&a, minute(n), None)]),
            || log_entries(&store).0,
        );
        let mut now_expected = expected.clone();
        now_expected.alerts.get_mut(&a).unwrap().last_seen = minute(n);
        reads_as(&store, &now_expected);

        // Past the backlog, each commit folds a chunk, whatever the load.
        let store = SqliteStore::in_memory().unwrap();
        store.commit(&first).unwrap();
        fold_recent(&mut store.writer(), usize::MAX).unwrap();
        store.writer().seen_log.backlog = 3;
        store.writer().seen_log.backlog_chunk = 2;
        refresh(&store, vec![seen(&a, minute(1), None)]);
        refresh(&store, vec![seen(&a, minute(2), None)]);
        assert_eq!(log_entries(&store), (2, 2));
        refresh(&store, vec![seen(&a, minute(3), None)]);
        assert_eq!(log_entries(&store), (1, 1));
        reads_as(&store, &expected);
        // A commit that logs more than the chunk folds as many: the log
        // cannot outgrow the backlog by more than one commit.
        for round in 0..5 {
            let many = (0..4)
                .map(|n| seen(&a, minute(10 * round + n), None))
                .collect();
            refresh(&store, many);
            assert!(log_entries(&store).0 <= 3 + 4, "round {round}");
        }
    }

    #[test]
    fn a_log_past_its_backlog_held_back_by_a_recent_write_folds_that_first_and_stays_bounded() {
        let (a, mut expected) = incident_holding_a();
        let store = SqliteStore::in_memory().unwrap();
        // The alert's whole write is recent, and the recent tables are far
        // under their own marks: only the log's backlog asks for a fold.
        commit_whole(&store, &expected);
        store.writer().seen_log.backlog = 3;
        store.writer().seen_log.backlog_chunk = 2;
        for round in 0..5 {
            let many = (0..4)
                .map(|n| seen(&a, minute(10 * round + n), None))
                .collect();
            refresh(&store, many);
            assert!(log_entries(&store).0 <= 3 + 4, "round {round}");
        }
        assert_eq!(recent_rows(&store), (0, 0));
        expected.alerts.get_mut(&a).unwrap().last_seen = minute(43);
        reads_as(&store, &expected);
    }

    #[test]
    fn a_fold_waits_for_a_write_lock_held_elsewhere_as_a_checkpoint_restart_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let (a, _) = tracked("a", T0);
        let mut first = incident(1, IncidentStatus::Open);
        first.alerts = [tracked("a", T0)].into_iter().collect();
        let store = SqliteStore::open(&path).unwrap();
        store
            .commit(&CommitBatch {
                incidents: vec![first],
                ..CommitBatch::default()
            })
            .unwrap();
        fold_recent(&mut store.writer(), usize::MAX).unwrap();
        refresh(
            &store,
            vec![seen(&a, T0 + time::Duration::minutes(1), None)],
        );
        // The store's own thread must not fold first, however slow this is.
        store.writer().seen_log.last_commit = std::time::Instant::now() + Duration::from_secs(3600);
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            other.execute_batch("COMMIT").unwrap();
        });
        assert_eq!(fold_seen_log(&mut store.writer(), 100).unwrap(), 1);
        release.join().unwrap();
    }

    /// One write of a batch in the equivalence test below: (what, incident,
    /// alert, minute, flag).
    type Op = (u8, i64, usize, i64, bool);

    fn batch_of(ops: &[Op]) -> CommitBatch {
        let minute = |n: i64| T0 + time::Duration::minutes(n);
        let names = ["a", "b", "c"];
        let alert = |fp: usize, at: i64, ends: bool| {
            let (fingerprint, mut whole) = tracked(names[fp], minute(at));
            whole.alert.ends_at = ends.then(|| minute(at + 5));
            (fingerprint, whole)
        };
        let mut batch = CommitBatch::default();
        for &(what, inc, fp, at, flag) in ops {
            match what {
                // The row alone, with a timer listed or not.
                0 => {
                    let mut header = incident(inc, IncidentStatus::Open).header();
                    header.action_seq = at as u64;
                    if flag {
                        batch.next_due.insert(inc, Some(minute(at)));
                    }
                    batch.incidents.push(header);
                }
                // Whole, with two of its alerts (as a retired incident).
                1 => {
                    let mut whole = incident(
                        inc,
                        if flag {
                            IncidentStatus::Resolved
                        } else {
                            IncidentStatus::Open
                        },
                    );
                    whole.action_seq = at as u64;
                    whole.alerts = [alert(fp, at, flag), alert((fp + 1) % 3, at, !flag)]
                        .into_iter()
                        .collect();
                    batch.incidents.push(whole);
                }
                2 => {
                    let (fingerprint, whole) = alert(fp, at, flag);
                    batch.incident_alerts.push(crate::store::IncidentAlert::new(
                        inc,
                        fingerprint,
                        whole.clone(),
                    ));
                }
                3 => {
                    let (fingerprint, _) = alert(fp, at, flag);
                    batch.alert_seen.push(AlertSeen {
                        incident_id: inc,
                        ..seen(&fingerprint, minute(at), flag.then(|| minute(at + 5)))
                    });
                }
                _ => batch.timeline.push((
                    inc,
                    TimelineEntry {
                        at: minute(at),
                        kind: TimelineKind::AlertJoined,
                        actor: None,
                        text: format!("{} joined", names[fp]),
                        alert: None,
                    },
                )),
            }
        }
        batch
    }

    /// What a store holds of incidents 1 and 2: each as read, its
    /// timeline, and the timer column of its row; then both as the reads
    /// of several incidents give them (the active ones, and all).
    type Held = (
        Vec<(Incident, Vec<TimelineEntry>, Option<i64>)>,
        Vec<Incident>,
        Vec<Incident>,
    );

    fn held(store: &SqliteStore) -> Held {
        let each = (1..=2)
            .map(|id| {
                let (incident, timeline) = store.incident(id).unwrap().unwrap();
                let next_due = store
                    .writer()
                    .query_row(
                        "SELECT next_due_at FROM incidents WHERE id = ?1",
                        [id],
                        |r| r.get(0),
                    )
                    .unwrap();
                (incident, timeline, next_due)
            })
            .collect();
        (
            each,
            store.active_incidents().unwrap(),
            store.incidents(&IncidentFilter::default()).unwrap(),
        )
    }

    /// Both incidents with all three alerts, then `parts` (one after the
    /// other, or appended into one batch); what the store holds then, and
    /// after its recent tables and refresh log are folded.
    fn written(parts: &[Vec<Op>], appended: bool) -> (Held, Held) {
        let store = SqliteStore::in_memory().unwrap();
        let start: Vec<Op> = (1..=2)
            .flat_map(|inc| [(1, inc, 0, 0, false), (2, inc, 2, 0, false)])
            .collect();
        store.commit(&batch_of(&start)).unwrap();
        if appended {
            let mut all = CommitBatch::default();
            for part in parts {
                all.append(batch_of(part));
            }
            store.commit(&all).unwrap();
        } else {
            for part in parts {
                store.commit(&batch_of(part)).unwrap();
            }
        }
        let before = held(&store);
        fold_all(&store);
        (before, held(&store))
    }

    /// A fold after a commit in the test below: (which, rows per table).
    type Fold = (u8, usize);

    /// The start of [`written`], then each part followed by its fold;
    /// what the store holds after each.
    fn folded_along(parts: &[(Vec<Op>, Fold)], fold: bool) -> Vec<Held> {
        let store = SqliteStore::in_memory().unwrap();
        let start: Vec<Op> = (1..=2)
            .flat_map(|inc| [(1, inc, 0, 0, false), (2, inc, 2, 0, false)])
            .collect();
        store.commit(&batch_of(&start)).unwrap();
        parts
            .iter()
            .map(|(ops, (which, limit))| {
                store.commit(&batch_of(ops)).unwrap();
                if fold && which & 1 != 0 {
                    fold_recent(&mut store.writer(), *limit).unwrap();
                }
                if fold && which & 2 != 0 {
                    fold_seen_log(&mut store.writer(), *limit).unwrap();
                }
                held(&store)
            })
            .collect()
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        (0u8..5, 1i64..=2, 0usize..3, 1i64..60, any::<bool>())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(400))]
        #[test]
        fn parts_appended_into_one_batch_write_what_they_write_one_after_the_other(
            parts in proptest::collection::vec(proptest::collection::vec(op(), 0..6), 1..4)
        ) {
            let one_after_the_other = written(&parts, false);
            proptest::prop_assert_eq!(written(&parts, true), one_after_the_other);
        }

        #[test]
        fn folds_of_some_recent_rows_or_log_entries_between_commits_change_no_read(
            parts in proptest::collection::vec(
                (proptest::collection::vec(op(), 0..6), (0u8..4, 1usize..4)),
                1..6,
            )
        ) {
            proptest::prop_assert_eq!(folded_along(&parts, true), folded_along(&parts, false));
        }
    }

    #[test]
    fn a_whole_incident_in_a_later_part_wins_over_an_earlier_parts_alert_and_refresh() {
        // The cases the rules are for, spelled out: an alert written whole
        // and refreshed, then its incident written whole (resolved).
        let parts = vec![
            vec![(2, 1, 0, 10, false), (3, 1, 1, 11, true)],
            vec![(1, 1, 0, 20, true)],
        ];
        let (appended, _) = written(&parts, true);
        let (one_after_the_other, _) = written(&parts, false);
        assert_eq!(appended, one_after_the_other);
        let (a, _) = tracked("a", T0);
        let (b, _) = tracked("b", T0);
        assert_eq!(appended.0[0].0.alerts[&a].last_seen, minute(20));
        assert_eq!(appended.0[0].0.alerts[&b].last_seen, minute(20));
        assert_eq!(appended.0[0].0.status, IncidentStatus::Resolved);
    }

    #[test]
    fn an_alert_that_cannot_be_written_refuses_its_whole_batch() {
        let store = SqliteStore::in_memory().unwrap();
        let mut first = incident(1, IncidentStatus::Open);
        first.alerts = [tracked("a", T0)].into_iter().collect();
        store
            .commit(&CommitBatch {
                incidents: vec![first.clone()],
                ..CommitBatch::default()
            })
            .unwrap();
        // A new alert, and a refresh that cannot be written: RFC 3339,
        // the refresh log's form, has no year before 0.
        let (b, whole) = tracked("b", T0);
        let refused = store.commit(&CommitBatch {
            incident_alerts: vec![crate::store::IncidentAlert::new(1, b, whole)],
            alert_seen: vec![crate::store::AlertSeen {
                incident_id: 1,
                fingerprint: "a".into(),
                last_seen: time::macros::datetime!(-0001-01-01 0:00 UTC),
                ends_at: None,
            }],
            timeline: vec![(
                1,
                TimelineEntry {
                    at: T0,
                    kind: TimelineKind::AlertJoined,
                    actor: None,
                    text: "b joined".into(),
                    alert: None,
                },
            )],
            ..CommitBatch::default()
        });
        let message = refused.unwrap_err().to_string();
        assert!(
            message.contains("incident alert 1") && message.contains("year"),
            "{message}"
        );
        let (loaded, timeline) = store.incident(1).unwrap().unwrap();
        assert_eq!(loaded, first);
        assert!(timeline.is_empty());
    }

    #[test]
    fn a_failed_fold_keeps_the_log_and_what_it_says() {
        let (a, mut expected) = incident_holding_a();
        let store = SqliteStore::in_memory().unwrap();
        commit_whole(&store, &expected);
        fold_recent(&mut store.writer(), usize::MAX).unwrap();
        refresh(&store, vec![seen(&a, minute(1), Some(minute(6)))]);
        store
            .writer()
            .execute_batch(
                "CREATE TEMP TRIGGER refuse BEFORE UPDATE ON incident_alerts
                 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
            )
            .unwrap();
        assert!(fold_seen_log(&mut store.writer(), 100).is_err());
        assert_eq!(log_entries(&store), (1, 1));
        let alert = expected.alerts.get_mut(&a).unwrap();
        alert.last_seen = minute(1);
        alert.alert.ends_at = Some(minute(6));
        reads_as(&store, &expected);
        store.writer().execute_batch("DROP TRIGGER refuse").unwrap();
        assert_eq!(fold_seen_log(&mut store.writer(), 100).unwrap(), 1);
        reads_as(&store, &expected);
    }

    #[test]
    fn an_incident_row_with_its_alerts_inside_still_loads() {
        // The row as versions before incident_alerts wrote it.
        let store = SqliteStore::in_memory().unwrap();
        let mut old = incident(1, IncidentStatus::Open);
        old.alerts = [tracked("a", T0)].into_iter().collect();
        store
            .writer()
            .execute(
                "INSERT INTO incidents (id, key, status, severity, declared_at, next_due_at, state)
                 VALUES (1, 'k', 'open', 'SEV2', 0, NULL, ?1)",
                [serde_json::to_string(&old).unwrap()],
            )
            .unwrap();
        assert_eq!(store.active_incidents().unwrap(), vec![old]);
    }

    fn delivery(incident_id: i64, webhook_id: &str, at: OffsetDateTime) -> NewDelivery {
        NewDelivery {
            incident_id,
            destination: "pd".into(),
            kind: ActionKind::Page,
            webhook_id: webhook_id.into(),
            body: "{}".into(),
            created_at: at,
        }
    }

    #[test]
    fn reads_go_on_while_a_write_transaction_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
        store
            .commit(&CommitBatch {
                deliveries: vec![delivery(1, "committed", T0)],
                ..CommitBatch::default()
            })
            .unwrap();
        // The writer inside a transaction, as during a commit's fsync.
        let writer = store.writer();
        writer.execute_batch("BEGIN IMMEDIATE").unwrap();
        writer
            .execute(
                "INSERT INTO outbox (incident_id, destination, kind, webhook_id, body, status,
                   next_attempt_at, created_at) VALUES (2, 'pd', 'page', 'uncommitted', '{}',
                   'pending', 0, 0)",
                [],
            )
            .unwrap();
        let (sent, got) = std::sync::mpsc::channel();
        let reading = store.clone();
        std::thread::spawn(move || {
            let due = reading
                .due_deliveries(T0, 10, 0)
                .map(|d| d.into_iter().map(|d| d.webhook_id).collect::<Vec<String>>());
            let _ = sent.send((due, reading.outbox_stats(T0).map(|s| s.pending)));
        });
        let (due, pending) = got
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("a read does not wait for the writer");
        assert_eq!(due.unwrap(), vec!["committed"], "the last committed state");
        assert_eq!(pending.unwrap(), 1);
        writer.execute_batch("COMMIT").unwrap();
        drop(writer);
        assert_eq!(store.outbox_stats(T0).unwrap().pending, 2);
    }

    #[test]
    fn at_most_max_readers_are_open_and_a_caller_past_them_waits_for_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
        let mut held: Vec<Reader<'_>> = (0..MAX_READERS).map(|_| store.reader().unwrap()).collect();
        let (sent, got) = std::sync::mpsc::channel();
        let reading = store.clone();
        std::thread::spawn(move || {
            let _ = sent.send(reading.instance_id());
        });
        assert!(
            got.recv_timeout(std::time::Duration::from_millis(200))
                .is_err(),
            "every reader is lent out"
        );
        held.pop();
        let id = got
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("a returned reader is handed on");
        assert_eq!(id.unwrap().len(), 32);
        let open = lock(&store.readers.as_ref().unwrap().state).open;
        assert_eq!(open, MAX_READERS);
    }

    /// The checkpointer's state: WAL pages after the last commit, runs,
    /// restarts, completed checkpoints.
    fn checkpoints(store: &SqliteStore) -> (c_int, u64, u64, u64) {
        let state = lock(
            &store
                .checkpointer
                .as_ref()
                .expect("a file store")
                .shared
                .state,
        );
        (state.wal_pages, state.runs, state.restarts, state.completed)
    }

    fn wait_for(what: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Twenty incidents of two alerts each, ids from `round * 100`.
    fn busy_batch(round: i64) -> CommitBatch {
        let incidents = (0..20)
            .map(|i| {
                let mut inc = incident(round * 100 + i, IncidentStatus::Open);
                inc.alerts = [
                    tracked(&format!("{round}-{i}-a"), T0),
                    tracked(&format!("{round}-{i}-b"), T0),
                ]
                .into_iter()
                .collect();
                inc
            })
            .collect();
        CommitBatch {
            incidents,
            ..CommitBatch::default()
        }
    }

    /// Commits busy batches from round `from` until the WAL holds at least
    /// `pages`; returns the next round.
    fn commit_until_wal_has(store: &SqliteStore, from: i64, pages: c_int) -> i64 {
        let mut round = from;
        while checkpoints(store).0 < pages {
            assert!(round < from + 500, "the WAL never reached {pages} pages");
            store.commit(&busy_batch(round)).unwrap();
            round += 1;
        }
        round
    }

    #[test]
    fn commits_past_the_threshold_are_checkpointed_by_the_thread_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let policy = CheckpointPolicy {
            passive_pages: 64,
            restart_pages: c_int::MAX,
            restart_wait: Duration::from_millis(50),
        };
        let store = SqliteStore::open_with(&path, |_| policy).unwrap();
        let rounds = commit_until_wal_has(&store, 0, 64);
        wait_for("a checkpoint", || checkpoints(&store).3 >= 1);
        // Every frame was copied, so the next commit writes the WAL from
        // its start: it is small again.
        store
            .commit(&CommitBatch {
                deliveries: vec![delivery(1, "after", T0)],
                ..CommitBatch::default()
            })
            .unwrap();
        let (pages, _, restarts, _) = checkpoints(&store);
        assert!(pages < 64, "{pages} pages in the WAL after a checkpoint");
        assert_eq!(restarts, 0, "passive ones were enough");
        // Dropping the store stops the thread (drop joins it).
        let (sent, got) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(store);
            let _ = sent.send(());
        });
        got.recv_timeout(Duration::from_secs(5))
            .expect("the checkpointer stops with the store");
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.active_incidents().unwrap().len(),
            rounds as usize * 20
        );
        assert_eq!(store.due_deliveries(T0, 10, 0).unwrap().len(), 1);
    }

    #[test]
    fn a_wal_that_cannot_start_over_is_checkpointed_per_threshold_of_new_pages_not_per_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let policy = CheckpointPolicy {
            passive_pages: 64,
            restart_pages: c_int::MAX,
            restart_wait: Duration::from_millis(20),
        };
        let store = SqliteStore::open_with(&path, |_| policy).unwrap();
        let mut round = commit_until_wal_has(&store, 0, 40);
        // A reader on that snapshot keeps the WAL from starting over, and
        // checkpoints from copying what comes after it.
        let old_reader = Connection::open(&path).unwrap();
        old_reader.execute_batch("BEGIN").unwrap();
        let _: i64 = old_reader
            .query_row("SELECT COUNT(*) FROM incidents", [], |r| r.get(0))
            .unwrap();
        let pinned = checkpoints(&store).0;
        round = commit_until_wal_has(&store, round, 64);
        wait_for("the first checkpoint", || checkpoints(&store).1 >= 1);
        let backfilled = lock(&store.checkpointer.as_ref().unwrap().shared.state).backfilled;
        assert_eq!(backfilled, pinned, "copied up to the reader's snapshot");
        // Commits that add fewer new pages than the threshold ask for no
        // checkpoint, although the WAL is past it.
        let mut small = 0;
        while checkpoints(&store).0 + 8 < backfilled + 64 {
            store
                .commit(&CommitBatch {
                    deliveries: vec![delivery(1, &format!("d{small}"), T0)],
                    ..CommitBatch::default()
                })
                .unwrap();
            small += 1;
            let state = lock(&store.checkpointer.as_ref().unwrap().shared.state);
            assert!(!state.requested, "after {small} small commits: {state:?}");
            assert_eq!(state.runs, 1);
        }
        assert!(small >= 2, "{small} commits under the threshold");
        commit_until_wal_has(&store, round, backfilled + 64);
        wait_for("the second checkpoint", || checkpoints(&store).1 >= 2);
        drop(old_reader);
    }

    #[test]
    fn a_restart_waits_briefly_for_an_old_reader_and_completes_once_it_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let policy = CheckpointPolicy {
            passive_pages: 16,
            restart_pages: 64,
            restart_wait: Duration::from_millis(20),
        };
        let store = SqliteStore::open_with(&path, |_| policy).unwrap();
        store.commit(&busy_batch(0)).unwrap();
        if checkpoints(&store).0 >= 16 {
            wait_for("the first batch's checkpoint", || {
                checkpoints(&store).1 >= 1
            });
        }
        let completed_before = checkpoints(&store).3;
        // A reader that keeps the snapshot of round 0: no checkpoint may
        // copy a frame written after it.
        let old_reader = Connection::open(&path).unwrap();
        old_reader.execute_batch("BEGIN").unwrap();
        let seen: i64 = old_reader
            .query_row("SELECT COUNT(*) FROM incidents", [], |r| r.get(0))
            .unwrap();
        assert_eq!(seen, 20);
        let mut round = commit_until_wal_has(&store, 1, 64);
        // Past the hard limit the thread tries a RESTART; it gives up on
        // the reader after `restart_wait` and commits go on meanwhile.
        wait_for("a restart", || checkpoints(&store).2 >= 1);
        for _ in 0..3 {
            store.commit(&busy_batch(round)).unwrap();
            round += 1;
        }
        assert_eq!(
            checkpoints(&store).3,
            completed_before,
            "no checkpoint completed past the reader"
        );
        old_reader.execute_batch("COMMIT").unwrap();
        drop(old_reader);
        let runs = checkpoints(&store).1;
        store.commit(&busy_batch(round)).unwrap();
        round += 1;
        wait_for("a complete checkpoint", || {
            let (_, now_runs, _, completed) = checkpoints(&store);
            now_runs > runs && completed > completed_before
        });
        // A checkpoint still running (a RESTART retried as the reader
        // left) can make one commit miss the moment: a few may be needed.
        let after = std::cell::Cell::new(0);
        wait_for("the WAL starts over", || {
            after.set(after.get() + 1);
            store
                .commit(&CommitBatch {
                    deliveries: vec![delivery(1, &format!("after-{}", after.get()), T0)],
                    ..CommitBatch::default()
                })
                .unwrap();
            checkpoints(&store).0 < 16
        });
        drop(store);
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.active_incidents().unwrap().len(), round as usize * 20);
    }

    #[test]
    fn readers_are_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let reader = store.reader().unwrap();
        let err = reader
            .execute("DELETE FROM outbox", [])
            .expect_err("a reader cannot write");
        assert!(err.to_string().contains("readonly"), "{err}");
    }

    #[test]
    fn a_commit_survives_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/sevroute.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            store
                .commit(&CommitBatch {
                    incidents: vec![
                        incident(1, IncidentStatus::Open),
                        incident(2, IncidentStatus::Resolved),
                    ],
                    timeline: vec![(
                        1,
                        TimelineEntry {
                            at: T0,
                            kind: TimelineKind::Opened,
                            actor: None,
                            text: "opened".into(),
                            alert: None,
                        },
                    )],
                    deliveries: vec![delivery(1, "msg_1_1", T0)],
                    alerts: vec![AlertRecord {
                        fingerprint: "00ff".into(),
                        alert_json: "{}".into(),
                        incident_id: Some(1),
                        received_at: T0,
                    }],
                    ..CommitBatch::default()
                })
                .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let active = store.active_incidents().unwrap();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0], incident(1, IncidentStatus::Open));
        assert_eq!(store.max_incident_id().unwrap(), 2);
        let (inc, timeline) = store.incident(1).unwrap().unwrap();
        assert_eq!(
            inc.timers.cadence_due,
            Some(T0 + time::Duration::minutes(30))
        );
        assert_eq!(timeline.len(), 1);
        assert_eq!(store.due_deliveries(T0, 10, 0).unwrap().len(), 1);
        assert!(store.incident(99).unwrap().is_none());
    }

    #[test]
    fn the_instance_id_is_random_per_store_and_kept_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let first = SqliteStore::open(&path).unwrap().instance_id().unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(
            SqliteStore::open(&path).unwrap().instance_id().unwrap(),
            first
        );
        let other = SqliteStore::open(&dir.path().join("b.db"))
            .unwrap()
            .instance_id()
            .unwrap();
        assert_ne!(other, first);
    }

    #[test]
    fn a_store_of_another_schema_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        drop(SqliteStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "UPDATE meta SET value = '7' WHERE key = 'schema_version'",
            [],
        )
        .unwrap();
        conn.execute_batch("DROP TABLE slo_samples").unwrap();
        drop(conn);
        let err = SqliteStore::open(&path).err().expect("refused");
        assert!(err.to_string().contains("schema 7"), "{err}");
        // Refused before anything was written: the table is still gone.
        let conn = Connection::open(&path).unwrap();
        let tables: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'slo_samples'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0);
    }

    #[test]
    fn a_version_1_store_is_migrated_to_the_current_version_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        drop(SqliteStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "UPDATE meta SET value = '1' WHERE key = 'schema_version'; \
             DROP TABLE slo_samples; DROP TABLE incident_alerts;",
        )
        .unwrap();
        // An open incident as version 1 wrote it: its alerts inside the row.
        let mut old = incident(1, IncidentStatus::Open);
        old.alerts = [tracked("a", T0), tracked("b", T0)].into_iter().collect();
        conn.execute(
            "INSERT INTO incidents (id, key, status, severity, declared_at, next_due_at, state)
             VALUES (1, 'k', 'open', 'SEV2', 0, NULL, ?1)",
            [serde_json::to_string(&old).unwrap()],
        )
        .unwrap();
        drop(conn);
        let store = SqliteStore::open(&path).unwrap();
        assert!(store.slo_samples().unwrap().is_empty(), "the table is back");
        // A version-2 write of the header and one changed alert (a
        // refresh) keeps the other alert: it moved to its own row.
        let fingerprints: Vec<String> = old.alerts.keys().cloned().collect();
        let (a, b) = (&fingerprints[0], &fingerprints[1]);
        let mut refreshed = old.alerts[a].clone();
        refreshed.last_seen = T0 + time::Duration::minutes(1);
        store
            .commit(&CommitBatch {
                incidents: vec![old.header()],
                incident_alerts: vec![crate::store::IncidentAlert::new(
                    1,
                    a.clone(),
                    refreshed.clone(),
                )],
                ..CommitBatch::default()
            })
            .unwrap();
        let loaded = store.active_incidents().unwrap().remove(0);
        assert_eq!(loaded.alerts.len(), 2, "no alert lost: {loaded:?}");
        assert_eq!(loaded.alerts[a], refreshed);
        assert_eq!(loaded.alerts[b], old.alerts[b]);
        drop(store);
        let conn = Connection::open(&path).unwrap();
        let version: String = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn a_new_store_has_large_pages_and_one_made_with_small_pages_keeps_them_and_works() {
        let page_size = |path: &Path| -> i64 {
            Connection::open(path)
                .unwrap()
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("new.db");
        drop(SqliteStore::open(&new).unwrap());
        assert_eq!(page_size(&new), PAGE_SIZE);
        // The WAL kept before a checkpoint is the same in bytes.
        for size in [4096, PAGE_SIZE] {
            let policy = CheckpointPolicy::for_page_size(size);
            assert_eq!(i64::from(policy.passive_pages) * size, 16 << 20);
        }
        let passive_pages =
            |store: &SqliteStore| store.checkpointer.as_ref().unwrap().policy.passive_pages;
        assert_eq!(passive_pages(&SqliteStore::open(&new).unwrap()), 1024);
        // A store an earlier version made, with SQLite's default pages.
        let old = dir.path().join("old.db");
        {
            let conn = Connection::open(&old).unwrap();
            conn.pragma_update(None, "page_size", 4096).unwrap();
            conn.pragma_update(None, "journal_mode", "WAL").unwrap();
            conn.execute_batch(SCHEMA).unwrap();
        }
        let mut open = incident(1, IncidentStatus::Open);
        open.alerts = [tracked("a", T0), tracked("b", T0)].into_iter().collect();
        commit_whole(&SqliteStore::open(&old).unwrap(), &open);
        assert_eq!(page_size(&old), 4096);
        let store = SqliteStore::open(&old).unwrap();
        assert_eq!(store.active_incidents().unwrap(), vec![open]);
        // Its checkpoints keep the same WAL in bytes, in its own pages.
        assert_eq!(passive_pages(&store), 4096);
    }

    #[test]
    fn a_version_2_store_gains_the_seen_columns_at_open_and_keeps_its_alerts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        drop(SqliteStore::open(&path).unwrap());
        // The layout version 2 wrote, with one incident and its alerts.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "UPDATE meta SET value = '2' WHERE key = 'schema_version'; \
             ALTER TABLE incident_alerts DROP COLUMN last_seen; \
             ALTER TABLE incident_alerts DROP COLUMN ends_at; \
             ALTER TABLE incident_alerts DROP COLUMN seen_mark; \
             DROP TABLE alert_seen_log; DROP TABLE incident_alerts_recent; \
             DROP TABLE timeline_recent;",
        )
        .unwrap();
        let mut old = incident(1, IncidentStatus::Open);
        old.alerts = [tracked("a", T0), tracked("b", T0)].into_iter().collect();
        conn.execute(
            "INSERT INTO incidents (id, key, status, severity, declared_at, next_due_at, state)
             VALUES (1, 'k', 'open', 'SEV2', 0, NULL, ?1)",
            [serde_json::to_string(&old.header()).unwrap()],
        )
        .unwrap();
        for (fingerprint, alert) in &old.alerts {
            conn.execute(
                "INSERT INTO incident_alerts (incident_id, fingerprint, state) VALUES (1, ?1, ?2)",
                params![fingerprint, serde_json::to_string(alert).unwrap()],
            )
            .unwrap();
        }
        drop(conn);
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.active_incidents().unwrap(), vec![old.clone()]);
        // A refresh goes to the new columns and reads back.
        let fingerprint = old.alerts.keys().next().unwrap().clone();
        let later = T0 + time::Duration::minutes(2);
        refresh(&store, vec![seen(&fingerprint, later, Some(later))]);
        let mut expected = old;
        let refreshed = expected.alerts.get_mut(&fingerprint).unwrap();
        refreshed.last_seen = later;
        refreshed.alert.ends_at = Some(later);
        assert_eq!(store.active_incidents().unwrap(), vec![expected]);
        assert_eq!(schema_version(&store), SCHEMA_VERSION);
    }

    #[test]
    fn a_version_4_store_gains_the_recent_tables_at_open_and_keeps_its_alerts_lines_and_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let mut old = incident(1, IncidentStatus::Open);
        old.alerts = [tracked("a", T0), tracked("b", T0)].into_iter().collect();
        let (a, _) = tracked("a", T0);
        let refreshed_at = T0 + time::Duration::minutes(2);
        {
            let store = SqliteStore::open(&path).unwrap();
            store
                .commit(&CommitBatch {
                    incidents: vec![old.clone()],
                    timeline: vec![(1, line("one")), (1, line("two"))],
                    ..CommitBatch::default()
                })
                .unwrap();
            fold_recent(&mut store.writer(), usize::MAX).unwrap();
            // A refresh version 4 left in its log, unfolded.
            refresh(&store, vec![seen(&a, refreshed_at, None)]);
        }
        // As version 4 left it: no recent tables.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "UPDATE meta SET value = '4' WHERE key = 'schema_version'; \
             DROP TABLE incident_alerts_recent; DROP TABLE timeline_recent;",
        )
        .unwrap();
        drop(conn);

        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(schema_version(&store), SCHEMA_VERSION);
        let mut expected = old;
        expected.alerts.get_mut(&a).unwrap().last_seen = refreshed_at;
        reads_as(&store, &expected);
        // New lines go after the old ones, through the recent table.
        store
            .commit(&CommitBatch {
                timeline: vec![(1, line("three"))],
                ..CommitBatch::default()
            })
            .unwrap();
        assert_eq!(recent_rows(&store), (1, 1));
        assert_eq!(lines(&store, 1), ["one", "two", "three"]);
    }

    #[test]
    fn a_version_5_store_is_marked_6_at_open_and_reads_its_json_alerts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v5.db");
        let mut old = incident(1, IncidentStatus::Open);
        let (a, alert) = tracked("a", T0);
        old.alerts.insert(a.clone(), alert.clone());
        {
            let store = SqliteStore::open(&path).unwrap();
            commit_whole(&store, &incident(1, IncidentStatus::Open));
        }
        // As version 5 wrote it: the alert's state as JSON text.
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "UPDATE meta SET value = '5' WHERE key = 'schema_version'",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO incident_alerts_recent (incident_id, fingerprint, state, seen_mark)
             VALUES (1, ?1, ?2, 0)",
            params![a, serde_json::to_string(&alert).unwrap()],
        )
        .unwrap();
        drop(conn);
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(schema_version(&store), "6");
        reads_as(&store, &old);
    }

    #[test]
    fn a_version_3_store_gains_the_refresh_log_at_open_and_keeps_its_refreshes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let mut old = incident(1, IncidentStatus::Open);
        old.alerts = [tracked("a", T0), tracked("b", T0)].into_iter().collect();
        {
            let store = SqliteStore::open(&path).unwrap();
            store
                .commit(&CommitBatch {
                    incidents: vec![old.clone()],
                    ..CommitBatch::default()
                })
                .unwrap();
            fold_all(&store);
        }
        // As version 3 left it: no log, a refresh written into the row.
        let fingerprint = old.alerts.keys().next().unwrap().clone();
        let refreshed_at = T0 + time::Duration::minutes(2);
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "UPDATE meta SET value = '3' WHERE key = 'schema_version'; \
             ALTER TABLE incident_alerts DROP COLUMN seen_mark; \
             DROP TABLE alert_seen_log; DROP TABLE incident_alerts_recent; \
             DROP TABLE timeline_recent;",
        )
        .unwrap();
        conn.execute(
            "UPDATE incident_alerts SET last_seen = ?2, ends_at = NULL WHERE fingerprint = ?1",
            params![fingerprint, rfc3339(refreshed_at).unwrap()],
        )
        .unwrap();
        drop(conn);

        let store = SqliteStore::open(&path).unwrap();
        let mut expected = old;
        expected.alerts.get_mut(&fingerprint).unwrap().last_seen = refreshed_at;
        assert_eq!(store.active_incidents().unwrap(), vec![expected.clone()]);
        // A refresh now goes to the log, and wins over the row's columns.
        let later = refreshed_at + time::Duration::minutes(1);
        refresh(&store, vec![seen(&fingerprint, later, Some(later))]);
        let alert = expected.alerts.get_mut(&fingerprint).unwrap();
        alert.last_seen = later;
        alert.alert.ends_at = Some(later);
        assert_eq!(store.active_incidents().unwrap(), vec![expected]);
        assert_eq!(schema_version(&store), SCHEMA_VERSION);
    }

    #[test]
    fn deliveries_come_due_in_order_and_a_webhook_id_is_enqueued_once() {
        let store = SqliteStore::in_memory().unwrap();
        let later = T0 + time::Duration::seconds(10);
        store
            .commit(&CommitBatch {
                // Different destinations: no order between them.
                deliveries: vec![
                    NewDelivery {
                        destination: "chat".into(),
                        ..delivery(1, "msg_1_2", later)
                    },
                    delivery(1, "msg_1_1", T0),
                ],
                ..CommitBatch::default()
            })
            .unwrap();
        // The same id again (a replayed batch) is ignored.
        store
            .commit(&CommitBatch {
                deliveries: vec![delivery(1, "msg_1_1", T0)],
                ..CommitBatch::default()
            })
            .unwrap();
        let due: Vec<String> = store
            .due_deliveries(later, 10, 0)
            .unwrap()
            .into_iter()
            .map(|d| d.webhook_id)
            .collect();
        assert_eq!(due, vec!["msg_1_1", "msg_1_2"]);
        assert_eq!(store.due_deliveries(T0, 10, 0).unwrap().len(), 1);
        assert_eq!(store.next_delivery_due().unwrap(), Some(T0));
        let stats = store
            .outbox_stats(T0 + time::Duration::seconds(65))
            .unwrap();
        assert_eq!(
            stats,
            OutboxStats {
                pending: 2,
                oldest_pending_age_secs: 65
            }
        );
    }

    #[test]
    fn a_later_delivery_waits_for_an_earlier_pending_one_to_the_same_destination() {
        let store = SqliteStore::in_memory().unwrap();
        let mut resolve = delivery(1, "resolve", T0);
        resolve.kind = ActionKind::Resolve;
        let mut other = delivery(2, "other-incident", T0);
        other.destination = "pd".into();
        store
            .commit(&CommitBatch {
                deliveries: vec![delivery(1, "page", T0), resolve, other],
                ..CommitBatch::default()
            })
            .unwrap();
        let due = |at| -> Vec<String> {
            store
                .due_deliveries(at, 10, 0)
                .unwrap()
                .into_iter()
                .map(|d| d.webhook_id)
                .collect()
        };
        assert_eq!(due(T0), vec!["page", "other-incident"]);
        // The page fails and backs off: its resolve still waits.
        let page_id = store.due_deliveries(T0, 10, 0).unwrap()[0].id;
        let later = T0 + time::Duration::seconds(60);
        store
            .record_attempts(&[(
                page_id,
                AttemptRecord {
                    status: DeliveryStatus::Pending,
                    next_attempt_at: Some(later),
                    http_status: Some(503),
                    error: None,
                    at: T0,
                    detail: None,
                },
            )])
            .unwrap();
        assert_eq!(
            due(T0 + time::Duration::seconds(30)),
            vec!["other-incident"]
        );
        assert_eq!(due(later), vec!["other-incident", "page"]);
    }

    #[test]
    fn attempts_move_deliveries_between_states() {
        let store = SqliteStore::in_memory().unwrap();
        store
            .commit(&CommitBatch {
                deliveries: vec![
                    delivery(1, "a", T0),
                    NewDelivery {
                        destination: "chat".into(),
                        ..delivery(1, "b", T0)
                    },
                ],
                ..CommitBatch::default()
            })
            .unwrap();
        let due = store.due_deliveries(T0, 10, 0).unwrap();
        let retry_at = T0 + time::Duration::seconds(30);
        // Two attempts in one call: one transaction records both.
        store
            .record_attempts(&[
                (
                    due[0].id,
                    AttemptRecord {
                        status: DeliveryStatus::Pending,
                        next_attempt_at: Some(retry_at),
                        http_status: Some(503),
                        error: Some("503 Service Unavailable".into()),
                        at: T0,
                        detail: None,
                    },
                ),
                (
                    due[1].id,
                    AttemptRecord {
                        status: DeliveryStatus::Delivered,
                        next_attempt_at: None,
                        http_status: Some(200),
                        error: None,
                        at: T0,
                        detail: None,
                    },
                ),
            ])
            .unwrap();
        assert!(store.due_deliveries(T0, 10, 0).unwrap().is_empty());
        let again = store.due_deliveries(retry_at, 10, 0).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].attempts, 1);
        let all = store.deliveries_for(1).unwrap();
        assert_eq!(all[1].status, DeliveryStatus::Delivered);
    }

    #[test]
    fn incidents_filter_by_status_and_severity() {
        let store = SqliteStore::in_memory().unwrap();
        let mut sev1 = incident(3, IncidentStatus::Open);
        sev1.severity = Some(crate::model::Severity::Sev1);
        store
            .commit(&CommitBatch {
                incidents: vec![
                    incident(1, IncidentStatus::Open),
                    incident(2, IncidentStatus::Resolved),
                    sev1,
                ],
                ..CommitBatch::default()
            })
            .unwrap();
        let ids = |f: IncidentFilter| -> Vec<i64> {
            store.incidents(&f).unwrap().iter().map(|i| i.id).collect()
        };
        assert_eq!(ids(IncidentFilter::default()), vec![3, 2, 1]);
        assert_eq!(
            ids(IncidentFilter {
                status: Some(IncidentStatus::Open),
                ..Default::default()
            }),
            vec![3, 1]
        );
        assert_eq!(
            ids(IncidentFilter {
                severity: Some(crate::model::Severity::Sev1),
                ..Default::default()
            }),
            vec![3]
        );
    }

    #[test]
    fn the_due_query_takes_destinations_in_turn_and_pages_first() {
        let store = SqliteStore::in_memory().unwrap();
        // A chat destination with a backlog of 20, enqueued before a page.
        let mut deliveries: Vec<NewDelivery> = (0..20)
            .map(|i| NewDelivery {
                destination: "chat".into(),
                kind: ActionKind::Notify,
                ..delivery(100 + i, &format!("chat-{i}"), T0)
            })
            .collect();
        deliveries.push(NewDelivery {
            destination: "pd".into(),
            ..delivery(1, "page", T0 + time::Duration::seconds(1))
        });
        store
            .commit(&CommitBatch {
                deliveries,
                ..CommitBatch::default()
            })
            .unwrap();
        let now = T0 + time::Duration::seconds(5);
        let due: Vec<String> = store
            .due_deliveries(now, 3, 0)
            .unwrap()
            .into_iter()
            .map(|d| d.webhook_id)
            .collect();
        // The page is in the first three despite twenty older chat rows.
        assert_eq!(due, vec!["page", "chat-0", "chat-1"]);
        let all = store.due_deliveries(now, 1000, 0).unwrap();
        assert_eq!(all.len(), 1 + DUE_PER_DESTINATION as usize);
        // Five rows in flight (still pending, skipped by the caller) may
        // all be chat's: its share grows by five.
        let chat = |in_flight| {
            let due = store.due_deliveries(now, 1000, in_flight).unwrap();
            due.iter().filter(|d| d.destination == "chat").count()
        };
        assert_eq!(chat(5), DUE_PER_DESTINATION as usize + 5);
        assert_eq!(chat(100), 20);
    }

    #[test]
    fn the_due_query_answers_as_one_ranking_of_the_whole_outbox_did() {
        // The query before `outbox_pending`: every pending row ranked at once.
        let ranked = |store: &SqliteStore, now: OffsetDateTime, limit: usize, in_flight: usize| {
            let conn = store.reader().unwrap();
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT id FROM (
                       SELECT *, ROW_NUMBER() OVER (
                           PARTITION BY destination
                           ORDER BY kind NOT IN ('page', 'escalate'), next_attempt_at, id) AS turn
                       FROM outbox
                       WHERE status = 'pending' AND next_attempt_at <= ?1 AND {NO_OLDER_PENDING})
                     WHERE turn <= ?3
                     ORDER BY turn, kind NOT IN ('page', 'escalate'), next_attempt_at, id
                     LIMIT ?2"
                ))
                .unwrap();
            stmt.query_map(
                params![
                    millis(now),
                    limit as i64,
                    DUE_PER_DESTINATION + in_flight as i64
                ],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
        };
        let store = SqliteStore::in_memory().unwrap();
        // A fixed pseudo-random outbox: four destinations, every kind,
        // incidents sharing rows, times spread over a minute.
        let mut seed: u64 = 0x5eed;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let kinds = [
            ActionKind::Page,
            ActionKind::Notify,
            ActionKind::UpdateDue,
            ActionKind::Escalate,
            ActionKind::Resolve,
            ActionKind::Acknowledge,
        ];
        let deliveries: Vec<NewDelivery> = (0..400)
            .map(|i| NewDelivery {
                destination: ["pd", "chat", "ops", "hook"][next(4) as usize].into(),
                kind: kinds[next(6) as usize],
                ..delivery(
                    1 + next(60) as i64,
                    &format!("w{i}"),
                    T0 + time::Duration::seconds(next(60) as i64),
                )
            })
            .collect();
        store
            .commit(&CommitBatch {
                deliveries,
                ..CommitBatch::default()
            })
            .unwrap();
        // Some rows are done: they neither go nor hold later ones back.
        store
            .writer()
            .conn
            .execute("UPDATE outbox SET status = 'sent' WHERE id % 7 = 0", [])
            .unwrap();
        let mut compared = 0;
        for now_secs in [0, 10, 30, 59] {
            let now = T0 + time::Duration::seconds(now_secs);
            for (limit, in_flight) in [(1, 0), (5, 0), (20, 3), (64, 0), (1000, 0), (1000, 40)] {
                let due: Vec<i64> = store
                    .due_deliveries(now, limit, in_flight)
                    .unwrap()
                    .iter()
                    .map(|d| d.id)
                    .collect();
                assert_eq!(
                    due,
                    ranked(&store, now, limit, in_flight),
                    "now +{now_secs}s, limit {limit}, {in_flight} in flight"
                );
                compared += due.len();
            }
        }
        assert!(compared > 500, "the outbox had rows due: {compared}");
    }

    #[test]
    fn a_failover_links_the_copy_records_the_attempt_and_notes_the_timeline() {
        let store = SqliteStore::in_memory().unwrap();
        store
            .commit(&CommitBatch {
                incidents: vec![incident(1, IncidentStatus::Open)],
                deliveries: vec![delivery(1, "page", T0)],
                ..CommitBatch::default()
            })
            .unwrap();
        let original = store.due_deliveries(T0, 10, 0).unwrap().remove(0);
        let attempt = AttemptRecord {
            status: DeliveryStatus::FailedOver,
            next_attempt_at: None,
            http_status: Some(503),
            error: Some("http_503".into()),
            at: T0,
            detail: Some(crate::store::AttemptDetail {
                outcome: "http_503".into(),
                elapsed_ms: 12,
                response_headers: "retry-after: 7\n".into(),
                response_excerpt: "busy".into(),
            }),
        };
        let copy = NewDelivery {
            destination: "backup".into(),
            ..delivery(1, "page_fo", T0)
        };
        let note = TimelineEntry {
            at: T0,
            kind: TimelineKind::FailedOver,
            actor: None,
            text: "failed over".into(),
            alert: None,
        };
        let new_id = store
            .fail_over(original.id, &attempt, &copy, &note)
            .unwrap();
        let (moved, attempts) = store.delivery(original.id).unwrap().unwrap();
        assert_eq!(moved.status, DeliveryStatus::FailedOver);
        assert_eq!(moved.finished_at, Some(T0));
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].http_status, Some(503));
        assert_eq!(attempts[0].response_headers, "retry-after: 7\n");
        assert_eq!(attempts[0].elapsed_ms, 12);
        let (copied, _) = store.delivery(new_id).unwrap().unwrap();
        assert_eq!(copied.failover_of, Some(original.id));
        assert_eq!(copied.destination, "backup");
        assert_eq!(copied.status, DeliveryStatus::Pending);
        let (_, timeline) = store.incident(1).unwrap().unwrap();
        assert_eq!(timeline.last().unwrap().kind, TimelineKind::FailedOver);
        // Failing over again (a replayed original) keeps the one copy.
        assert_eq!(
            store
                .fail_over(original.id, &attempt, &copy, &note)
                .unwrap(),
            new_id
        );
    }

    #[test]
    fn dead_letters_are_listed_and_requeued_with_their_webhook_id() {
        let store = SqliteStore::in_memory().unwrap();
        store
            .commit(&CommitBatch {
                deliveries: vec![delivery(1, "a", T0), delivery(2, "b", T0)],
                ..CommitBatch::default()
            })
            .unwrap();
        let due = store.due_deliveries(T0, 10, 0).unwrap();
        let dead = |at| AttemptRecord {
            status: DeliveryStatus::Dead,
            next_attempt_at: None,
            http_status: Some(400),
            error: Some("http_400".into()),
            at,
            detail: None,
        };
        let later = T0 + time::Duration::minutes(10);
        store
            .record_attempts(&[(due[0].id, dead(T0)), (due[1].id, dead(later))])
            .unwrap();
        let listed = store
            .deliveries(&DeliveryFilter {
                status: Some(DeliveryStatus::Dead),
                ..DeliveryFilter::default()
            })
            .unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].last_http_status, Some(400));
        // Only what finished since `later` comes back.
        let now = later + time::Duration::minutes(1);
        assert_eq!(store.requeue_since(later, now).unwrap(), vec![due[1].id]);
        let again = store.due_deliveries(now, 10, 0).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].webhook_id, "b");
        assert_eq!(again[0].attempts, 0);
        // A pending delivery is not replayable; an unknown one is absent.
        assert_eq!(store.requeue(due[1].id, now).unwrap(), Some(false));
        assert_eq!(store.requeue(due[0].id, now).unwrap(), Some(true));
        assert_eq!(store.requeue(999, now).unwrap(), None);
    }

    #[test]
    fn older_reminders_are_coalesced_into_the_newest() {
        let store = SqliteStore::in_memory().unwrap();
        let reminder = |id: &str| NewDelivery {
            kind: ActionKind::UpdateDue,
            ..delivery(1, id, T0)
        };
        store
            .commit(&CommitBatch {
                deliveries: vec![reminder("r1"), reminder("r2"), reminder("r3")],
                ..CommitBatch::default()
            })
            .unwrap();
        assert_eq!(store.coalesce_repeats(T0).unwrap(), 2);
        let due: Vec<String> = store
            .due_deliveries(T0, 10, 0)
            .unwrap()
            .into_iter()
            .map(|d| d.webhook_id)
            .collect();
        assert_eq!(due, vec!["r3"]);
        assert_eq!(store.coalesce_repeats(T0).unwrap(), 0);
    }

    #[test]
    fn disabled_destinations_are_kept_until_enabled() {
        let store = SqliteStore::in_memory().unwrap();
        store.disable_destination("chat", "http 410", T0).unwrap();
        store.disable_destination("pd", "http 410", T0).unwrap();
        let names: Vec<String> = store
            .disabled_destinations()
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(names, vec!["chat", "pd"]);
        assert!(store.enable_destination("chat").unwrap());
        assert!(!store.enable_destination("chat").unwrap());
        store.enable_all_destinations().unwrap();
        assert!(store.disabled_destinations().unwrap().is_empty());
    }

    #[test]
    fn a_store_from_before_failover_links_gains_the_column_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        drop(SqliteStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("ALTER TABLE outbox DROP COLUMN failover_of")
            .unwrap();
        drop(conn);
        let store = SqliteStore::open(&path).unwrap();
        store
            .commit(&CommitBatch {
                deliveries: vec![delivery(1, "a", T0)],
                ..CommitBatch::default()
            })
            .unwrap();
        assert_eq!(store.due_deliveries(T0, 1, 0).unwrap()[0].failover_of, None);
    }

    #[test]
    fn pushed_slo_samples_survive_reopening_in_order_and_are_pruned_per_slo() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sevroute.db");
        let sample = |slo: &str, at: i64, cumulative: bool, good: f64| SloSampleRecord {
            slo: slo.into(),
            received_at: at + 1,
            at,
            cumulative,
            good,
            total: 100.0,
        };
        {
            let store = SqliteStore::open(&path).unwrap();
            store
                .commit(&CommitBatch {
                    slo_samples: vec![
                        sample("api", 300, false, 99.0),
                        sample("api", 100, false, 98.0),
                        sample("web", 100, true, 97.5),
                    ],
                    ..CommitBatch::default()
                })
                .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.slo_samples().unwrap(),
            [
                sample("api", 300, false, 99.0),
                sample("api", 100, false, 98.0),
                sample("web", 100, true, 97.5),
            ],
            "in the order accepted, not by time"
        );
        store
            .commit(&CommitBatch {
                slo_prune: vec![("api".into(), 300)],
                ..CommitBatch::default()
            })
            .unwrap();
        assert_eq!(
            store.slo_samples().unwrap(),
            [
                sample("api", 300, false, 99.0),
                sample("web", 100, true, 97.5)
            ],
            "only the named SLO's samples before the cut go"
        );
    }
}

//! SQLite store, the embedded default: one file in WAL mode with
//! `synchronous=FULL`, so a commit that returned survives a crash or power
//! loss. Callers batch writes (group commit), so the fsync is shared.
//!
//! Incidents are kept as one JSON document per row beside the columns that
//! are queried (status, severity, key, next timer); the JSON carries the
//! timers, so they survive restarts.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

use crate::route::{ActionKind, Incident, TimelineEntry, TrackedAlert};
use crate::store::{
    AttemptRecord, CommitBatch, Delivery, DeliveryStatus, IncidentFilter, OutboxStats, Store,
    StoreError,
};

/// The schema this version reads and writes.
const SCHEMA_VERSION: &str = "1";

/// Schema, applied idempotently at open. `schema_version` lets later
/// versions migrate; a store with another version is refused at open.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '1');
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
CREATE TABLE IF NOT EXISTS incident_alerts (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL
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
"#;

/// The SQLite store. One connection behind a mutex: writes come in batches
/// from one router task, so there is no write contention to spread.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, creating its
    /// folder too.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_error = |message: String| StoreError::Open {
            path: path.display().to_string(),
            message,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_error(e.to_string()))?;
        }
        let conn = Connection::open(path).map_err(|e| open_error(e.to_string()))?;
        Self::init(conn)
    }

    /// An in-memory store, for tests and `replay`.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        // WAL lets readers (the API) work while a batch commits; FULL makes
        // each commit durable before it returns.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // 16 MiB of page cache (the default is 2 MiB): with 100k active
        // alerts, upserts otherwise read most B-tree pages back from the
        // file on every commit.
        conn.pragma_update(None, "cache_size", -16384)?;
        // Checkpoint the WAL into the database every 10,000 pages (about
        // 40 MiB) rather than every 1,000: a large batch alone wrote that
        // much, so each commit paid a checkpoint (and its fsync) of pages
        // the next commits rewrite anyway.
        conn.pragma_update(None, "wal_autocheckpoint", 10000)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        let version: String = conn.query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )?;
        if version != SCHEMA_VERSION {
            return Err(StoreError::Corrupt {
                what: "schema version",
                id: 0,
                message: format!(
                    "the store has schema {version}; this sevroute reads {SCHEMA_VERSION}"
                ),
            });
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
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-written
        // transaction (rusqlite rolls back on drop), so keep going.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
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
    ]
    .into_iter()
    .find(|k| k.as_str() == text)
}

fn parse_incident(id: i64, state: &str) -> Result<Incident, StoreError> {
    serde_json::from_str(state).map_err(|e| corrupt("incident", id, e))
}

/// Reads the incident in `state` with its alerts from `incident_alerts`
/// (on top of any an older version kept inside `state`).
fn load_incident(conn: &Connection, id: i64, state: &str) -> Result<Incident, StoreError> {
    let mut incident = parse_incident(id, state)?;
    let mut stmt = conn.prepare_cached(
        "SELECT fingerprint, state FROM incident_alerts WHERE incident_id = ?1 ORDER BY fingerprint",
    )?;
    let rows = stmt.query_map([id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    for row in rows {
        let (fingerprint, state) = row?;
        let alert: TrackedAlert =
            serde_json::from_str(&state).map_err(|e| corrupt("incident alert", id, e))?;
        incident.alerts.insert(fingerprint, alert);
    }
    Ok(incident)
}

const DELIVERY_COLUMNS: &str = "id, incident_id, destination, kind, webhook_id, body, status, attempts, next_attempt_at, created_at";

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
    ))
}

fn to_delivery(r: DeliveryRow) -> Result<Delivery, StoreError> {
    let (id, incident_id, destination, kind, webhook_id, body, status, attempts, next, created) = r;
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
    })
}

impl Store for SqliteStore {
    fn commit(&self, batch: &CommitBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO incidents (id, key, status, severity, declared_at, next_due_at, state)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (id) DO UPDATE SET key = ?2, status = ?3, severity = ?4,
                   next_due_at = ?6, state = ?7",
            )?;
            let mut incident_alert = tx.prepare_cached(
                "INSERT INTO incident_alerts (incident_id, fingerprint, state) VALUES (?1, ?2, ?3)
                 ON CONFLICT (incident_id, fingerprint) DO UPDATE SET state = ?3",
            )?;
            let mut write_alert = |id: i64, fingerprint: &str, alert: &TrackedAlert| {
                let state =
                    serde_json::to_string(alert).map_err(|e| corrupt("incident alert", id, e))?;
                incident_alert.execute(params![id, fingerprint, state])?;
                Ok::<_, StoreError>(())
            };
            for inc in &batch.incidents {
                // The alerts go to rows of their own; the row keeps the rest.
                let state = if inc.alerts.is_empty() {
                    serde_json::to_string(inc)
                } else {
                    for (fingerprint, alert) in &inc.alerts {
                        write_alert(inc.id, fingerprint, alert)?;
                    }
                    serde_json::to_string(&inc.header())
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
            for a in &batch.incident_alerts {
                write_alert(a.incident_id, &a.fingerprint, &a.alert)?;
            }
            let mut timeline =
                tx.prepare_cached("INSERT INTO timeline (incident_id, entry) VALUES (?1, ?2)")?;
            for (id, entry) in &batch.timeline {
                let text =
                    serde_json::to_string(entry).map_err(|e| corrupt("timeline entry", *id, e))?;
                timeline.execute(params![id, text])?;
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
        }
        tx.commit()?;
        Ok(())
    }

    fn active_incidents(&self) -> Result<Vec<Incident>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT id, state FROM incidents WHERE status != 'resolved' ORDER BY id")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        rows.iter()
            .map(|(id, state)| load_incident(&conn, *id, state))
            .collect()
    }

    fn max_incident_id(&self) -> Result<i64, StoreError> {
        let conn = self.conn();
        Ok(
            conn.query_row("SELECT COALESCE(MAX(id), 0) FROM incidents", [], |r| {
                r.get(0)
            })?,
        )
    }

    fn incident(&self, id: i64) -> Result<Option<(Incident, Vec<TimelineEntry>)>, StoreError> {
        let conn = self.conn();
        let state: Option<String> = conn
            .query_row("SELECT state FROM incidents WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        let Some(state) = state else {
            return Ok(None);
        };
        let incident = load_incident(&conn, id, &state)?;
        let mut stmt =
            conn.prepare("SELECT entry FROM timeline WHERE incident_id = ?1 ORDER BY id")?;
        let entries = stmt
            .query_map([id], |r| r.get::<_, String>(0))?
            .map(|r| {
                let text = r?;
                serde_json::from_str(&text).map_err(|e| corrupt("timeline entry", id, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some((incident, entries)))
    }

    fn incidents(&self, filter: &IncidentFilter) -> Result<Vec<Incident>, StoreError> {
        let conn = self.conn();
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
        rows.iter()
            .map(|(id, state)| load_incident(&conn, *id, state))
            .collect()
    }

    fn due_deliveries(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM outbox
             WHERE status = 'pending' AND next_attempt_at <= ?1
               -- Order per destination and incident: a resolve never
               -- overtakes the page still waiting before it.
               AND NOT EXISTS (
                 SELECT 1 FROM outbox AS older
                 WHERE older.incident_id = outbox.incident_id
                   AND older.destination = outbox.destination
                   AND older.status = 'pending' AND older.id < outbox.id)
             ORDER BY next_attempt_at, id LIMIT ?2"
        ))?;
        let rows = stmt.query_map(
            params![millis(now), i64::try_from(limit).unwrap_or(i64::MAX)],
            delivery_row,
        )?;
        rows.map(|r| to_delivery(r?)).collect()
    }

    fn next_delivery_due(&self) -> Result<Option<OffsetDateTime>, StoreError> {
        let conn = self.conn();
        let next: Option<i64> = conn.query_row(
            "SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending'
               AND NOT EXISTS (
                 SELECT 1 FROM outbox AS older
                 WHERE older.incident_id = outbox.incident_id
                   AND older.destination = outbox.destination
                   AND older.status = 'pending' AND older.id < outbox.id)",
            [],
            |r| r.get(0),
        )?;
        Ok(next.map(from_millis))
    }

    fn record_attempt(&self, id: i64, attempt: &AttemptRecord) -> Result<(), StoreError> {
        let conn = self.conn();
        let finished = (attempt.status != DeliveryStatus::Pending).then(|| millis(attempt.at));
        conn.execute(
            "UPDATE outbox SET status = ?2, attempts = attempts + 1,
               next_attempt_at = COALESCE(?3, next_attempt_at), last_http_status = ?4,
               last_error = ?5, finished_at = ?6
             WHERE id = ?1",
            params![
                id,
                attempt.status.as_str(),
                attempt.next_attempt_at.map(millis),
                attempt.http_status,
                attempt.error,
                finished,
            ],
        )?;
        Ok(())
    }

    fn deliveries_for(&self, incident_id: i64) -> Result<Vec<Delivery>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM outbox WHERE incident_id = ?1 ORDER BY id"
        ))?;
        let rows = stmt.query_map([incident_id], delivery_row)?;
        rows.map(|r| to_delivery(r?)).collect()
    }

    fn instance_id(&self) -> Result<String, StoreError> {
        let conn = self.conn();
        Ok(conn.query_row(
            "SELECT value FROM meta WHERE key = 'instance_id'",
            [],
            |r| r.get(0),
        )?)
    }

    fn outbox_stats(&self, now: OffsetDateTime) -> Result<OutboxStats, StoreError> {
        let conn = self.conn();
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
    use crate::store::{AlertRecord, NewDelivery};

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
            timers: Timers {
                cadence_due: Some(T0 + time::Duration::minutes(30)),
                ..Timers::default()
            },
            action_seq: 1,
        }
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
            explanation: vec!["why".into()],
            first_seen: T0,
            last_seen: at,
            announced: true,
        };
        (tracked.alert.fingerprint().to_string(), tracked)
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
            .conn()
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
                incident_alerts: vec![crate::store::IncidentAlert {
                    incident_id: 1,
                    fingerprint: fingerprint.clone(),
                    alert: b.clone(),
                }],
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
    fn an_incident_row_with_its_alerts_inside_still_loads() {
        // The row as versions before incident_alerts wrote it.
        let store = SqliteStore::in_memory().unwrap();
        let mut old = incident(1, IncidentStatus::Open);
        old.alerts = [tracked("a", T0)].into_iter().collect();
        store
            .conn()
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
        assert_eq!(store.due_deliveries(T0, 10).unwrap().len(), 1);
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
            "UPDATE meta SET value = '2' WHERE key = 'schema_version'",
            [],
        )
        .unwrap();
        drop(conn);
        let err = SqliteStore::open(&path).err().expect("refused");
        assert!(err.to_string().contains("schema 2"), "{err}");
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
            .due_deliveries(later, 10)
            .unwrap()
            .into_iter()
            .map(|d| d.webhook_id)
            .collect();
        assert_eq!(due, vec!["msg_1_1", "msg_1_2"]);
        assert_eq!(store.due_deliveries(T0, 10).unwrap().len(), 1);
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
                .due_deliveries(at, 10)
                .unwrap()
                .into_iter()
                .map(|d| d.webhook_id)
                .collect()
        };
        assert_eq!(due(T0), vec!["page", "other-incident"]);
        // The page fails and backs off: its resolve still waits.
        let page_id = store.due_deliveries(T0, 10).unwrap()[0].id;
        let later = T0 + time::Duration::seconds(60);
        store
            .record_attempt(
                page_id,
                &AttemptRecord {
                    status: DeliveryStatus::Pending,
                    next_attempt_at: Some(later),
                    http_status: Some(503),
                    error: None,
                    at: T0,
                },
            )
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
        let due = store.due_deliveries(T0, 10).unwrap();
        let retry_at = T0 + time::Duration::seconds(30);
        store
            .record_attempt(
                due[0].id,
                &AttemptRecord {
                    status: DeliveryStatus::Pending,
                    next_attempt_at: Some(retry_at),
                    http_status: Some(503),
                    error: Some("503 Service Unavailable".into()),
                    at: T0,
                },
            )
            .unwrap();
        store
            .record_attempt(
                due[1].id,
                &AttemptRecord {
                    status: DeliveryStatus::Delivered,
                    next_attempt_at: None,
                    http_status: Some(200),
                    error: None,
                    at: T0,
                },
            )
            .unwrap();
        assert!(store.due_deliveries(T0, 10).unwrap().is_empty());
        let again = store.due_deliveries(retry_at, 10).unwrap();
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
}

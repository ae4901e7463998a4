//! An incident's alerts, with what routing asks of them on every event
//! (how many fire, how many wait to be announced, the most severe firing
//! classification, the earliest expiry) kept as counts that each change
//! updates in O(log n), instead of walks over every alert of the incident
//! for every alert routed. It also records which alerts changed, and how,
//! so the pipeline writes those and no others.
//!
//! Every mutation goes through this type, so the counts cannot drift from
//! the alerts; reads go through the read-only methods of a map (`get`,
//! `iter`, `values`, ...). (`get_mut` hands out the alert itself, as a map
//! would: the counts are then recounted at the next change, and read by
//! walking until then. Routing uses `update`.)
//!
//! Routing a refresh looks its alert up by fingerprint in an incident that
//! may hold thousands of alerts, and the incidents of a batch are spread
//! over the whole state, so the cost of a lookup is its cache misses. The
//! map's keys therefore hold the fingerprint's 16 bytes inline beside the
//! text ([`Key`]), and the expiries are keyed by an integer: a search
//! compares inside the B-tree's nodes instead of following a pointer to
//! each key's text (or converting both times to UTC) at every comparison.
//!
//! Each alert is held behind an `Arc`: a batch to commit takes the alerts
//! it writes whole as a count, not a copy (copying a new alert's labels,
//! annotations and explanation for the store was a tenth of routing it),
//! and a change to an alert a running commit still holds copies it then.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::collections::btree_map;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::{OffsetDateTime, UtcOffset};

use super::TrackedAlert;
use crate::model::Severity;

/// How an alert changed since the changes were last taken: what the store
/// must write for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlertWrite {
    /// Only when it was last seen and when it ends (a plain refresh):
    /// written as those two values.
    Seen,
    /// Anything else: written whole.
    Whole,
}

/// An alert's fingerprint as the key of the set: the text, and its first
/// 16 bytes inline (big-endian, zero-padded), which decide almost every
/// comparison without reading the text. Orders exactly as the text does.
#[derive(Clone)]
struct Key {
    /// The first 16 bytes of `text`, zero-padded, as a big-endian number:
    /// comparing two of them compares those bytes in text order.
    prefix: u128,
    /// The fingerprint (16 hex digits for every alert sevroute makes).
    text: String,
}

/// Bytes of the text the prefix holds.
const PREFIX_BYTES: usize = 16;

impl Key {
    fn new(text: String) -> Key {
        let mut bytes = [0u8; PREFIX_BYTES];
        let n = text.len().min(PREFIX_BYTES);
        bytes[..n].copy_from_slice(&text.as_bytes()[..n]);
        Key {
            prefix: u128::from_be_bytes(bytes),
            text,
        }
    }

    /// A key to look `text` up with (a copy: for the lookups that only
    /// have a borrowed fingerprint, none of which is on a hot path).
    fn of(text: &str) -> Key {
        Key::new(text.to_string())
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Key) -> Ordering {
        // Different prefixes order as the texts do: the first differing
        // byte decides, and a text that ends first pads with zero bytes,
        // which sort first, as a shorter text does. Equal prefixes of texts
        // that both fit in them: the texts differ, if at all, by trailing
        // NUL bytes, so the shorter one sorts first. Longer texts compare
        // as text.
        self.prefix.cmp(&other.prefix).then_with(|| {
            if self.text.len() <= PREFIX_BYTES && other.text.len() <= PREFIX_BYTES {
                self.text.len().cmp(&other.text.len())
            } else {
                self.text.cmp(&other.text)
            }
        })
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Key {}

/// The alerts of one incident by fingerprint (hex). Reads as a
/// `BTreeMap<String, TrackedAlert>` (the same methods, in the same order);
/// changes go through its methods, which keep the counts.
#[derive(Clone, Default)]
pub struct AlertSet {
    alerts: BTreeMap<Key, Arc<TrackedAlert>>,
    counts: Counts,
    /// Set when `get_mut` handed out an alert: `counts` may be wrong until
    /// the next change recounts them.
    stale: bool,
    /// Alerts changed since [`AlertSet::take_changes`], in the order they
    /// changed, with repeats: a list, not a map, since most incidents see
    /// one change a batch and a map would search (and allocate a node) for
    /// it; [`AlertSet::take_changes`] sorts and merges them.
    changes: Vec<Change>,
}

/// One recorded change: the alert's key, how it changed, and the two
/// values a plain refresh writes as they were right after it (the last
/// change of an alert holds its current values: every change records
/// one), so taking a refresh needs no second lookup of its alert.
#[derive(Clone)]
struct Change {
    key: Key,
    write: AlertWrite,
    seen: SeenValues,
}

/// When an alert was last seen and when it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SeenValues {
    last_seen: OffsetDateTime,
    ends_at: Option<OffsetDateTime>,
}

impl SeenValues {
    fn of(a: &TrackedAlert) -> SeenValues {
        SeenValues {
            last_seen: a.last_seen,
            ends_at: a.alert.ends_at,
        }
    }
}

/// A changed alert as [`AlertSet::take_changes`] hands it out: what the
/// store must write for it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Changed<'a> {
    /// A plain refresh: only these two values changed.
    Seen {
        /// When it was last received.
        last_seen: OffsetDateTime,
        /// When it ends unless refreshed.
        ends_at: Option<OffsetDateTime>,
    },
    /// Anything else: the alert as it is now, to write whole.
    Whole(&'a Arc<TrackedAlert>),
}

impl Changed<'_> {
    /// Which kind of write it is.
    pub fn write(&self) -> AlertWrite {
        match self {
            Changed::Seen { .. } => AlertWrite::Seen,
            Changed::Whole(_) => AlertWrite::Whole,
        }
    }
}

/// What an alert adds to the counts.
#[derive(Clone, Copy)]
struct Share {
    firing: bool,
    unannounced: bool,
    severity: Option<Severity>,
    ends_at: Option<OffsetDateTime>,
}

impl Share {
    fn of(a: &TrackedAlert) -> Share {
        let firing = a.is_firing();
        Share {
            firing,
            unannounced: firing && !a.announced,
            severity: a.severity.filter(|_| firing),
            ends_at: a.alert.ends_at.filter(|_| firing),
        }
    }
}

/// Counts over the firing alerts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Counts {
    firing: usize,
    unannounced: usize,
    /// Firing alerts per severity, by [`Severity::index`].
    by_severity: [usize; Severity::ALL.len()],
    /// The `ends_at` of firing alerts, each with how many end then: a
    /// multiset, so the earliest stays exact as alerts move. Keyed by the
    /// instant in unix nanoseconds (comparing two `OffsetDateTime`s
    /// converts both to UTC), each with the offset of the first `ends_at`
    /// counted at that instant, as a map keyed by `OffsetDateTime` keeps
    /// its first key.
    expiries: BTreeMap<i128, Expiry>,
}

/// Firing alerts that end at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Expiry {
    /// How many end then.
    count: u32,
    /// The offset the first of them gave the instant in.
    offset: UtcOffset,
}

/// The instant `nanos` in `offset`: the `ends_at` it was made from.
fn expiry_at(nanos: i128, offset: UtcOffset) -> Option<OffsetDateTime> {
    let utc = OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()?;
    // Back in the offset it came in, it is in range: fall back to UTC
    // rather than fail if it were not.
    Some(utc.checked_to_offset(offset).unwrap_or(utc))
}

impl Counts {
    fn of<'a>(alerts: impl Iterator<Item = &'a TrackedAlert>) -> Counts {
        let mut counts = Counts::default();
        for a in alerts {
            counts.add(Share::of(a));
        }
        counts
    }

    fn add(&mut self, s: Share) {
        if !s.firing {
            return;
        }
        self.firing += 1;
        self.unannounced += usize::from(s.unannounced);
        if let Some(severity) = s.severity {
            self.by_severity[severity.index()] += 1;
        }
        if let Some(t) = s.ends_at {
            self.expiries
                .entry(t.unix_timestamp_nanos())
                .or_insert(Expiry {
                    count: 0,
                    offset: t.offset(),
                })
                .count += 1;
        }
    }

    fn remove(&mut self, s: Share) {
        if !s.firing {
            return;
        }
        self.firing -= 1;
        self.unannounced -= usize::from(s.unannounced);
        if let Some(severity) = s.severity {
            self.by_severity[severity.index()] -= 1;
        }
        if let Some(t) = s.ends_at {
            let instant = t.unix_timestamp_nanos();
            if let Some(expiry) = self.expiries.get_mut(&instant) {
                expiry.count -= 1;
                if expiry.count == 0 {
                    self.expiries.remove(&instant);
                }
            }
        }
    }

    fn replace(&mut self, before: Share, after: Share) {
        // A refresh that moves nothing the counts hold skips the B-tree.
        if before.firing == after.firing
            && before.unannounced == after.unannounced
            && before.severity == after.severity
            && before.ends_at == after.ends_at
        {
            return;
        }
        self.remove(before);
        self.add(after);
    }
}

impl AlertSet {
    /// How many alerts fire.
    pub fn firing(&self) -> usize {
        if self.stale {
            return self.firing_alerts().count();
        }
        self.counts.firing
    }

    /// How many firing alerts have not been announced.
    pub fn unannounced(&self) -> usize {
        if self.stale {
            return self.firing_alerts().filter(|a| !a.announced).count();
        }
        self.counts.unannounced
    }

    /// The most severe classification among the firing alerts.
    pub fn most_severe_firing(&self) -> Option<Severity> {
        if self.stale {
            return self.firing_alerts().filter_map(|a| a.severity).min();
        }
        Severity::ALL
            .into_iter()
            .find(|s| self.counts.by_severity[s.index()] > 0)
    }

    /// The earliest `ends_at` among the firing alerts: when the first of
    /// them expires unless refreshed.
    pub fn earliest_expiry(&self) -> Option<OffsetDateTime> {
        if self.stale {
            return self.firing_alerts().filter_map(|a| a.alert.ends_at).min();
        }
        let (&nanos, expiry) = self.counts.expiries.iter().next()?;
        expiry_at(nanos, expiry.offset)
    }

    fn firing_alerts(&self) -> impl Iterator<Item = &TrackedAlert> {
        self.values().filter(|a| a.is_firing())
    }

    /// Makes the counts right again after `get_mut`.
    fn recount_if_stale(&mut self) {
        if self.stale {
            self.counts = Counts::of(self.values());
            self.stale = false;
        }
    }

    /// The place of the alert with `fingerprint`: the alert, to change,
    /// or where to add it. One search either way.
    pub fn slot(&mut self, fingerprint: String) -> Slot<'_> {
        self.recount_if_stale();
        let record = Record {
            counts: &mut self.counts,
            changes: &mut self.changes,
        };
        match self.alerts.entry(Key::new(fingerprint)) {
            btree_map::Entry::Occupied(entry) => Slot::Known(Known { entry, record }),
            btree_map::Entry::Vacant(entry) => Slot::Vacant(Vacant { entry, record }),
        }
    }

    /// Adds or replaces an alert (a change written whole).
    pub fn insert(&mut self, fingerprint: String, alert: TrackedAlert) {
        match self.slot(fingerprint) {
            Slot::Known(known) => known.replace(alert),
            Slot::Vacant(vacant) => vacant.insert(alert),
        }
    }

    /// Changes the alert with `fingerprint`, if there is one; `change` says
    /// what it changed. Returns that, or gives the fingerprint back when
    /// there is no such alert (`change` is then not called).
    pub fn update(
        &mut self,
        fingerprint: String,
        change: impl FnOnce(&mut TrackedAlert) -> AlertWrite,
    ) -> Result<AlertWrite, String> {
        match self.slot(fingerprint) {
            Slot::Known(known) => Ok(known.change(change)),
            Slot::Vacant(vacant) => Err(vacant.entry.into_key().text),
        }
    }

    /// The alert with `fingerprint`, to change in any way (a change
    /// written whole). The counts are recounted at the next change, O(n):
    /// [`AlertSet::update`] keeps them in O(log n).
    pub fn get_mut(&mut self, fingerprint: &str) -> Option<&mut TrackedAlert> {
        let key = Key::of(fingerprint);
        let alert = Arc::make_mut(self.alerts.get_mut(&key)?);
        self.changes.push(Change {
            key,
            write: AlertWrite::Whole,
            // Not read: a whole write is taken from the alert itself.
            seen: SeenValues::of(alert),
        });
        self.stale = true;
        Some(alert)
    }

    /// Calls `change` on every alert; those it returns true for changed
    /// (written whole). O(n): for events that reach every alert anyway.
    pub fn update_all(&mut self, mut change: impl FnMut(&mut TrackedAlert) -> bool) {
        for (key, alert) in self.alerts.iter_mut() {
            // A copy only of an alert a running commit still holds.
            let alert = Arc::make_mut(alert);
            if change(alert) {
                self.changes.push(Change {
                    key: key.clone(),
                    write: AlertWrite::Whole,
                    seen: SeenValues::of(alert),
                });
            }
        }
        self.counts = Counts::of(self.values());
        self.stale = false;
    }

    /// The alerts changed since the last call, each once, in fingerprint
    /// order: its fingerprint and what to write for it (the larger write,
    /// when it changed more than once; a refresh's values as its last
    /// change left them, which are its values now).
    pub fn take_changes(&mut self) -> impl Iterator<Item = (String, Changed<'_>)> {
        let mut changes = std::mem::take(&mut self.changes);
        if changes.len() > 1 {
            // Stable, so an alert's changes stay in the order they came.
            changes.sort_by(|a, b| a.key.cmp(&b.key));
            changes.dedup_by(|later, kept| {
                let same = later.key == kept.key;
                if same {
                    kept.write = kept.write.max(later.write);
                    kept.seen = later.seen;
                }
                same
            });
        }
        let alerts = &self.alerts;
        changes
            .into_iter()
            .filter_map(move |Change { key, write, seen }| {
                let changed = match write {
                    AlertWrite::Seen => Changed::Seen {
                        last_seen: seen.last_seen,
                        ends_at: seen.ends_at,
                    },
                    // Alerts are never removed from a set, so every changed
                    // one is there.
                    AlertWrite::Whole => Changed::Whole(alerts.get(&key)?),
                };
                Some((key.text, changed))
            })
    }

    /// Forgets the changes recorded so far: for alerts just loaded from
    /// the store, which need no writing back.
    pub fn forget_changes(&mut self) {
        self.changes.clear();
    }

    /// How many alerts the set holds.
    pub fn len(&self) -> usize {
        self.alerts.len()
    }

    /// True when the set holds no alert.
    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty()
    }

    /// The alert with `fingerprint`.
    pub fn get(&self, fingerprint: &str) -> Option<&TrackedAlert> {
        self.alerts.get(&Key::of(fingerprint)).map(|a| &**a)
    }

    /// True when the set holds an alert with `fingerprint`.
    pub fn contains_key(&self, fingerprint: &str) -> bool {
        self.alerts.contains_key(&Key::of(fingerprint))
    }

    /// The alerts with their fingerprints, in fingerprint order.
    pub fn iter(&self) -> Iter<'_> {
        Iter(self.alerts.iter())
    }

    /// The fingerprints, in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &String> + ExactSizeIterator {
        self.alerts.keys().map(|k| &k.text)
    }

    /// The alerts, in fingerprint order.
    pub fn values(
        &self,
    ) -> impl DoubleEndedIterator<Item = &TrackedAlert> + ExactSizeIterator + Clone {
        self.alerts.values().map(|a| &**a)
    }

    /// True when the counts equal a count over every alert (for tests).
    #[cfg(test)]
    pub(crate) fn counts_are_exact(&self) -> bool {
        !self.stale && self.counts == Counts::of(self.values())
    }
}

/// Where an alert is, or would go, in a set ([`AlertSet::slot`]).
pub enum Slot<'a> {
    /// The set holds it.
    Known(Known<'a>),
    /// It does not.
    Vacant(Vacant<'a>),
}

/// What a change records besides the alert.
struct Record<'a> {
    counts: &'a mut Counts,
    changes: &'a mut Vec<Change>,
}

/// An alert the set holds.
pub struct Known<'a> {
    entry: btree_map::OccupiedEntry<'a, Key, Arc<TrackedAlert>>,
    record: Record<'a>,
}

impl Known<'_> {
    /// Changes the alert; `change` says what it changed (and so what the
    /// store writes). Returns that.
    pub fn change(mut self, change: impl FnOnce(&mut TrackedAlert) -> AlertWrite) -> AlertWrite {
        let alert = Arc::make_mut(self.entry.get_mut());
        let before = Share::of(alert);
        let write = change(alert);
        self.record.counts.replace(before, Share::of(alert));
        let seen = SeenValues::of(alert);
        self.record.changes.push(Change {
            key: self.entry.key().clone(),
            write,
            seen,
        });
        write
    }
}

impl Known<'_> {
    /// Puts `alert` in the old one's place (a change written whole),
    /// without copying the old one if a commit still holds it.
    pub fn replace(mut self, alert: TrackedAlert) {
        let before = Share::of(self.entry.get());
        self.record.counts.replace(before, Share::of(&alert));
        self.record.changes.push(Change {
            key: self.entry.key().clone(),
            write: AlertWrite::Whole,
            seen: SeenValues::of(&alert),
        });
        *self.entry.get_mut() = Arc::new(alert);
    }
}

/// Where an alert the set does not hold would go.
pub struct Vacant<'a> {
    entry: btree_map::VacantEntry<'a, Key, Arc<TrackedAlert>>,
    record: Record<'a>,
}

impl Vacant<'_> {
    /// The fingerprint the place is for.
    pub fn fingerprint(&self) -> &str {
        &self.entry.key().text
    }

    /// Adds the alert (a change written whole).
    pub fn insert(self, alert: TrackedAlert) {
        self.record.counts.add(Share::of(&alert));
        self.record.changes.push(Change {
            key: self.entry.key().clone(),
            write: AlertWrite::Whole,
            seen: SeenValues::of(&alert),
        });
        self.entry.insert(Arc::new(alert));
    }
}

/// The alerts of a set with their fingerprints, in fingerprint order.
pub struct Iter<'a>(btree_map::Iter<'a, Key, Arc<TrackedAlert>>);

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a String, &'a TrackedAlert);
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(key, alert)| (&key.text, &**alert))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|(key, alert)| (&key.text, &**alert))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a AlertSet {
    type Item = (&'a String, &'a TrackedAlert);
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// `set[fingerprint]`, as a map's: panics when there is no such alert
/// (for tests; routing uses [`AlertSet::get`]).
impl<Q: AsRef<str> + ?Sized> std::ops::Index<&Q> for AlertSet {
    type Output = TrackedAlert;
    fn index(&self, fingerprint: &Q) -> &TrackedAlert {
        self.get(fingerprint.as_ref())
            .expect("no alert with that fingerprint in the set")
    }
}

impl FromIterator<(String, TrackedAlert)> for AlertSet {
    fn from_iter<I: IntoIterator<Item = (String, TrackedAlert)>>(iter: I) -> Self {
        let mut set = AlertSet::default();
        for (fingerprint, alert) in iter {
            set.insert(fingerprint, alert);
        }
        set
    }
}

/// Equal when the alerts are: the counts follow from them, and pending
/// changes are bookkeeping, not state.
impl PartialEq for AlertSet {
    fn eq(&self, other: &Self) -> bool {
        self.alerts == other.alerts
    }
}

impl fmt::Debug for AlertSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Stored as the plain map.
impl Serialize for AlertSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

/// Read back as it was stored: counted, with nothing to write.
impl<'de> Deserialize<'de> for AlertSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let alerts: BTreeMap<Key, Arc<TrackedAlert>> =
            BTreeMap::<String, TrackedAlert>::deserialize(deserializer)?
                .into_iter()
                .map(|(fingerprint, alert)| (Key::new(fingerprint), Arc::new(alert)))
                .collect();
        Ok(AlertSet {
            counts: Counts::of(alerts.values().map(|a| &**a)),
            stale: false,
            alerts,
            changes: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// An alert with nothing set: no labels, no severity, seen at the epoch.
    fn plain_alert() -> TrackedAlert {
        TrackedAlert {
            alert: crate::model::Alert::default(),
            severity: None,
            rule: None,
            explanation: crate::model::Explanation::default(),
            first_seen: OffsetDateTime::UNIX_EPOCH,
            last_seen: OffsetDateTime::UNIX_EPOCH,
            announced: false,
        }
    }

    /// Texts that share long prefixes, end in NUL bytes, or run past the
    /// inline prefix: where the inline comparison could go wrong.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9a-f]{16}",
            "[ab\u{0}]{0,20}",
            "[0-9a-f]{14,18}\u{0}{0,3}",
            ".{0,24}",
        ]
    }

    proptest! {
        #[test]
        fn an_expiry_comes_back_as_the_ends_at_it_was_made_from(
            secs in -50_000_000_000i64..200_000_000_000,
            nanos in 0u32..1_000_000_000,
            offset_secs in -86_399i32..86_400,
        ) {
            let offset = UtcOffset::from_whole_seconds(offset_secs).unwrap();
            let utc = OffsetDateTime::from_unix_timestamp(secs).unwrap()
                + time::Duration::nanoseconds(i64::from(nanos));
            if let Some(t) = utc.checked_to_offset(offset) {
                let back = expiry_at(t.unix_timestamp_nanos(), t.offset()).unwrap();
                prop_assert_eq!(back, t);
                prop_assert_eq!(back.offset(), t.offset());
                prop_assert_eq!(
                    back.format(&time::format_description::well_known::Rfc3339).ok(),
                    t.format(&time::format_description::well_known::Rfc3339).ok()
                );
            }
        }

        #[test]
        fn keys_order_as_their_texts(a in text(), b in text()) {
            prop_assert_eq!(Key::new(a.clone()).cmp(&Key::new(b.clone())), a.cmp(&b));
            prop_assert_eq!(Key::new(a.clone()) == Key::new(b.clone()), a == b);
        }

        #[test]
        fn a_set_iterates_and_finds_as_a_map_of_strings(texts in proptest::collection::vec(text(), 0..40)) {
            let alert = |i: usize| {
                let mut a = plain_alert();
                a.last_seen += time::Duration::seconds(i as i64);
                a
            };
            let map: BTreeMap<String, TrackedAlert> =
                texts.iter().enumerate().map(|(i, t)| (t.clone(), alert(i))).collect();
            let set: AlertSet =
                texts.iter().enumerate().map(|(i, t)| (t.clone(), alert(i))).collect();
            prop_assert!(set.iter().eq(map.iter()));
            prop_assert_eq!(set.len(), map.len());
            for t in &texts {
                prop_assert_eq!(set.get(t), map.get(t));
            }
            prop_assert_eq!(
                serde_json::to_string(&set).unwrap(),
                serde_json::to_string(&map).unwrap()
            );
        }
    }

    #[test]
    fn changes_come_out_once_each_in_fingerprint_order_with_the_larger_write() {
        let alert = plain_alert;
        let mut set: AlertSet = ["c", "a", "b"]
            .into_iter()
            .map(|f| (f.to_string(), alert()))
            .collect();
        set.forget_changes();
        let seen = |_: &mut TrackedAlert| AlertWrite::Seen;
        let whole = |_: &mut TrackedAlert| AlertWrite::Whole;
        assert_eq!(set.update("c".into(), seen), Ok(AlertWrite::Seen));
        assert_eq!(set.update("a".into(), whole), Ok(AlertWrite::Whole));
        assert_eq!(set.update("a".into(), seen), Ok(AlertWrite::Seen));
        assert_eq!(set.update("c".into(), seen), Ok(AlertWrite::Seen));
        assert_eq!(set.update("x".into(), whole), Err("x".to_string()));
        let changes: Vec<(String, AlertWrite)> =
            set.take_changes().map(|(f, c)| (f, c.write())).collect();
        assert_eq!(
            changes,
            [
                ("a".to_string(), AlertWrite::Whole),
                ("c".to_string(), AlertWrite::Seen)
            ]
        );
        assert_eq!(set.take_changes().count(), 0, "taken once");
    }

    #[test]
    fn an_alert_taken_to_be_written_keeps_its_value_when_the_set_changes_it_after() {
        let alert = plain_alert;
        let mut set = AlertSet::default();
        set.insert("a".into(), alert());
        set.insert("b".into(), alert());
        // What a batch to commit holds: the alerts as they were routed.
        let taken: Vec<Arc<TrackedAlert>> = set
            .take_changes()
            .filter_map(|(_, changed)| match changed {
                Changed::Whole(a) => Some(Arc::clone(a)),
                Changed::Seen { .. } => None,
            })
            .collect();
        assert_eq!(taken.len(), 2);
        // Each way of changing an alert changes the set's, not the batch's.
        set.update("a".into(), |a| {
            a.announced = true;
            AlertWrite::Whole
        })
        .unwrap();
        set.get_mut("b").unwrap().severity = Some(Severity::Sev1);
        set.update_all(|a| {
            a.last_seen += time::Duration::SECOND;
            true
        });
        assert!(taken.iter().all(|a| **a == alert()), "{taken:?}");
        assert!(set["a"].announced);
        assert_eq!(set["b"].severity, Some(Severity::Sev1));
        assert!(
            set.values()
                .all(|a| a.last_seen > OffsetDateTime::UNIX_EPOCH)
        );
        // Once nothing else holds them, changes are made in place.
        drop(taken);
        let before: *const TrackedAlert = &set["a"];
        set.update("a".into(), |a| {
            a.announced = false;
            AlertWrite::Whole
        })
        .unwrap();
        assert!(std::ptr::eq(before, &set["a"]));
    }

    #[test]
    fn the_earliest_expiry_keeps_the_offset_it_was_first_given() {
        use time::macros::datetime;
        let utc = datetime!(2026-11-27 10:00 UTC);
        let plus_one = datetime!(2026-11-27 11:00 +1);
        let ending = |at: OffsetDateTime| {
            let mut a = plain_alert();
            a.alert.ends_at = Some(at);
            a
        };
        let mut set = AlertSet::default();
        set.insert("a".into(), ending(plus_one));
        set.insert("b".into(), ending(utc));
        let earliest = set.earliest_expiry().unwrap();
        assert_eq!(earliest, utc);
        assert_eq!(earliest.offset(), plus_one.offset(), "the first one given");
        // As the map keyed by `OffsetDateTime` did.
        let mut by_time = BTreeMap::new();
        by_time.entry(plus_one).or_insert(0);
        by_time.entry(utc).or_insert(0);
        assert_eq!(by_time.keys().next().unwrap().offset(), earliest.offset());
    }
}

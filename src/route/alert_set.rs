//! An incident's alerts, with what routing asks of them on every event
//! (how many fire, how many wait to be announced, the most severe firing
//! classification, the earliest expiry) kept as counts that each change
//! updates in O(log n), instead of walks over every alert of the incident
//! for every alert routed. It also records which alerts changed, and how,
//! so the pipeline writes those and no others.
//!
//! Every mutation goes through this type, so the counts cannot drift from
//! the alerts; reads go through `Deref` to the map. (`get_mut` hands out
//! the alert itself, as a map would: the counts are then recounted at the
//! next change, and read by walking until then. Routing uses `update`.)

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;

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

/// The alerts of one incident by fingerprint (hex). Reads as a
/// `BTreeMap`; changes go through its methods, which keep the counts.
#[derive(Clone, Default)]
pub struct AlertSet {
    alerts: BTreeMap<String, TrackedAlert>,
    counts: Counts,
    /// Set when `get_mut` handed out an alert: `counts` may be wrong until
    /// the next change recounts them.
    stale: bool,
    /// Alerts changed since [`AlertSet::take_changes`], by fingerprint.
    changes: BTreeMap<String, AlertWrite>,
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
    /// multiset, so the earliest stays exact as alerts move.
    expiries: BTreeMap<OffsetDateTime, usize>,
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
            *self.expiries.entry(t).or_insert(0) += 1;
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
        if let Some(t) = s.ends_at
            && let Some(n) = self.expiries.get_mut(&t)
        {
            *n -= 1;
            if *n == 0 {
                self.expiries.remove(&t);
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
        self.counts.expiries.keys().next().copied()
    }

    fn firing_alerts(&self) -> impl Iterator<Item = &TrackedAlert> {
        self.alerts.values().filter(|a| a.is_firing())
    }

    /// Makes the counts right again after `get_mut`.
    fn recount_if_stale(&mut self) {
        if self.stale {
            self.counts = Counts::of(self.alerts.values());
            self.stale = false;
        }
    }

    /// Adds or replaces an alert (a change written whole).
    pub fn insert(&mut self, fingerprint: String, alert: TrackedAlert) {
        self.recount_if_stale();
        self.counts.add(Share::of(&alert));
        if let Some(old) = self.alerts.insert(fingerprint.clone(), alert) {
            self.counts.remove(Share::of(&old));
        }
        self.changes.insert(fingerprint, AlertWrite::Whole);
    }

    /// Changes the alert with `fingerprint`, if there is one; `change` says
    /// what it changed. Returns that, or `None` when there is no such
    /// alert. (The fingerprint is taken by value: it becomes the key of
    /// the recorded change, without a copy.)
    pub fn update(
        &mut self,
        fingerprint: String,
        change: impl FnOnce(&mut TrackedAlert) -> AlertWrite,
    ) -> Option<AlertWrite> {
        self.recount_if_stale();
        let alert = self.alerts.get_mut(&fingerprint)?;
        let before = Share::of(alert);
        let write = change(alert);
        self.counts.replace(before, Share::of(alert));
        self.changes
            .entry(fingerprint)
            .and_modify(|w| *w = (*w).max(write))
            .or_insert(write);
        Some(write)
    }

    /// The alert with `fingerprint`, to change in any way (a change
    /// written whole). The counts are recounted at the next change, O(n):
    /// [`AlertSet::update`] keeps them in O(log n).
    pub fn get_mut(&mut self, fingerprint: &str) -> Option<&mut TrackedAlert> {
        let alert = self.alerts.get_mut(fingerprint)?;
        self.changes
            .insert(fingerprint.to_string(), AlertWrite::Whole);
        self.stale = true;
        Some(alert)
    }

    /// Calls `change` on every alert; those it returns true for changed
    /// (written whole). O(n): for events that reach every alert anyway.
    pub fn update_all(&mut self, mut change: impl FnMut(&mut TrackedAlert) -> bool) {
        for (fingerprint, alert) in self.alerts.iter_mut() {
            if change(alert) {
                self.changes.insert(fingerprint.clone(), AlertWrite::Whole);
            }
        }
        self.counts = Counts::of(self.alerts.values());
        self.stale = false;
    }

    /// The alerts changed since the last call, and how.
    pub fn take_changes(&mut self) -> BTreeMap<String, AlertWrite> {
        std::mem::take(&mut self.changes)
    }

    /// Forgets the changes recorded so far: for alerts just loaded from
    /// the store, which need no writing back.
    pub fn forget_changes(&mut self) {
        self.changes.clear();
    }

    /// True when the counts equal a count over every alert (for tests).
    #[cfg(test)]
    pub(crate) fn counts_are_exact(&self) -> bool {
        !self.stale && self.counts == Counts::of(self.alerts.values())
    }
}

impl Deref for AlertSet {
    type Target = BTreeMap<String, TrackedAlert>;
    fn deref(&self) -> &Self::Target {
        &self.alerts
    }
}

impl<'a> IntoIterator for &'a AlertSet {
    type Item = (&'a String, &'a TrackedAlert);
    type IntoIter = std::collections::btree_map::Iter<'a, String, TrackedAlert>;
    fn into_iter(self) -> Self::IntoIter {
        self.alerts.iter()
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
        self.alerts.fmt(f)
    }
}

/// Stored as the plain map.
impl Serialize for AlertSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.alerts.serialize(serializer)
    }
}

/// Read back as it was stored: counted, with nothing to write.
impl<'de> Deserialize<'de> for AlertSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let alerts = BTreeMap::<String, TrackedAlert>::deserialize(deserializer)?;
        Ok(AlertSet {
            counts: Counts::of(alerts.values()),
            stale: false,
            alerts,
            changes: BTreeMap::new(),
        })
    }
}

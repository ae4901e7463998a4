//! A snapshot of SLO error-budget burn at one moment: the input that ties
//! classification to SLOs. Built by the SLO engine in the service, from
//! `--burn` flags in `explain`, or from a rule test case.

use std::collections::HashMap;

/// Burn rates per (SLO, window) and budget remaining per SLO. A value that
/// is absent reads as "no data": a comparison with it is unknown (neither
/// true nor false, even under `not`), so a rule that needs it never matches.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BurnSnapshot {
    burn: HashMap<String, Vec<(u64, f64)>>,
    budget_remaining: HashMap<String, f64>,
    /// Lower bounds (exclusive) per (SLO, window), from burn-rate alerts
    /// (the `alerts` source): the burn is known to be above them, not its
    /// value.
    floors: HashMap<String, Vec<(u64, f64)>>,
}

impl BurnSnapshot {
    /// An empty snapshot: every burn reads as no data.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty snapshot with room for `slos` SLOs, so that filling it
    /// (the SLO engine's tick fills thousands) never rehashes.
    pub fn with_capacity(slos: usize) -> Self {
        BurnSnapshot {
            burn: HashMap::with_capacity(slos),
            budget_remaining: HashMap::with_capacity(slos),
            floors: HashMap::new(),
        }
    }

    /// Sets the burn rate of `slo` over a window of `window_secs`.
    pub fn set_burn(&mut self, slo: &str, window_secs: u64, rate: f64) {
        let windows = self.burn.entry(slo.to_string()).or_default();
        upsert(windows, window_secs, rate);
    }

    /// Sets the burn rates of `slo` over several windows, as `set_burn`
    /// would one by one, but hashing and copying the name once per SLO
    /// rather than once per window: in the SLO engine's tick that was a
    /// third of the time.
    pub fn set_burns(&mut self, slo: &str, burns: &[(u64, f64)]) {
        if burns.is_empty() {
            return;
        }
        if let Some(windows) = self.burn.get_mut(slo) {
            for &(w, rate) in burns {
                upsert(windows, w, rate);
            }
        } else {
            let mut windows = Vec::with_capacity(burns.len());
            for &(w, rate) in burns {
                upsert(&mut windows, w, rate);
            }
            self.burn.insert(slo.to_string(), windows);
        }
    }

    /// Sets the fraction of the period's error budget left: 1 untouched,
    /// 0 spent, negative once overspent (the SLO engine keeps the sign).
    pub fn set_budget_remaining(&mut self, slo: &str, fraction: f64) {
        self.budget_remaining.insert(slo.to_string(), fraction);
    }

    /// The burn rate of `slo` over `window_secs`, if known.
    pub fn burn(&self, slo: &str, window_secs: u64) -> Option<f64> {
        self.burn
            .get(slo)?
            .iter()
            .find(|(w, _)| *w == window_secs)
            .map(|(_, r)| *r)
    }

    /// Records that the burn of `slo` over `window_secs` is above `floor`
    /// (a firing burn-rate alert says so); the highest floor stands.
    pub fn raise_floor(&mut self, slo: &str, window_secs: u64, floor: f64) {
        let windows = self.floors.entry(slo.to_string()).or_default();
        match windows.iter_mut().find(|(w, _)| *w == window_secs) {
            Some(entry) => entry.1 = entry.1.max(floor),
            None => windows.push((window_secs, floor)),
        }
    }

    /// Drops every floor (before they are gathered again).
    pub fn clear_floors(&mut self) {
        self.floors.clear();
    }

    /// The value the burn of `slo` over `window_secs` is known to exceed.
    pub fn floor(&self, slo: &str, window_secs: u64) -> Option<f64> {
        self.floors
            .get(slo)?
            .iter()
            .find(|(w, _)| *w == window_secs)
            .map(|(_, f)| *f)
    }

    /// Every floor of `slo`, as (window in seconds, floor), shortest
    /// window first.
    pub fn floors(&self, slo: &str) -> Vec<(u64, f64)> {
        let mut floors = self.floors.get(slo).cloned().unwrap_or_default();
        floors.sort_by_key(|(w, _)| *w);
        floors
    }

    /// The fraction of the budget left for `slo`, if known.
    pub fn budget_remaining(&self, slo: &str) -> Option<f64> {
        self.budget_remaining.get(slo).copied()
    }
}

/// Sets the rate of one window in an SLO's list, replacing an earlier one.
fn upsert(windows: &mut Vec<(u64, f64)>, window_secs: u64, rate: f64) {
    match windows.iter_mut().find(|(w, _)| *w == window_secs) {
        Some(entry) => entry.1 = rate,
        None => windows.push((window_secs, rate)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_values_read_as_no_data_and_later_sets_replace() {
        let mut snap = BurnSnapshot::new();
        assert_eq!(snap.burn("a", 3600), None);
        snap.set_burn("a", 3600, 2.0);
        snap.set_burn("a", 300, 5.0);
        snap.set_burn("a", 3600, 3.0);
        assert_eq!(snap.burn("a", 3600), Some(3.0));
        assert_eq!(snap.burn("a", 300), Some(5.0));
        assert_eq!(snap.burn("b", 300), None);
        snap.set_budget_remaining("a", 0.25);
        assert_eq!(snap.budget_remaining("a"), Some(0.25));
        assert_eq!(snap.budget_remaining("b"), None);
    }

    #[test]
    fn set_burns_is_set_burn_in_bulk() {
        let mut one = BurnSnapshot::new();
        let mut bulk = BurnSnapshot::with_capacity(2);
        for (w, r) in [(300, 1.0), (3600, 2.0), (300, 3.0)] {
            one.set_burn("a", w, r);
        }
        bulk.set_burns("a", &[(300, 1.0), (3600, 2.0)]);
        bulk.set_burns("a", &[(300, 3.0)]);
        bulk.set_burns("b", &[]);
        assert_eq!(one, bulk);
        assert_eq!(bulk.burn("a", 300), Some(3.0));
        assert_eq!(bulk.burn("b", 300), None);
    }
}

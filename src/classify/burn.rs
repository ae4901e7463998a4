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
}

impl BurnSnapshot {
    /// An empty snapshot: every burn reads as no data.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the burn rate of `slo` over a window of `window_secs`.
    pub fn set_burn(&mut self, slo: &str, window_secs: u64, rate: f64) {
        let windows = self.burn.entry(slo.to_string()).or_default();
        match windows.iter_mut().find(|(w, _)| *w == window_secs) {
            Some(entry) => entry.1 = rate,
            None => windows.push((window_secs, rate)),
        }
    }

    /// Sets the fraction (0..=1) of the period's error budget left.
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

    /// The fraction of the budget left for `slo`, if known.
    pub fn budget_remaining(&self, slo: &str) -> Option<f64> {
        self.budget_remaining.get(slo).copied()
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
}

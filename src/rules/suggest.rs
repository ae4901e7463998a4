//! "Did you mean" suggestions for misspelt words: keywords in the parser,
//! SLO and destination names in the checker. One distance and one
//! threshold, so both say the same thing about the same typo.

/// The candidate closest to `found` when it is a plausible typo: at most
/// `max(2, len / 4)` edits from it (`len` the candidate's length in
/// characters), fewer edits than the candidate has characters (so a short
/// word does not "resemble" everything), and strictly closer than every
/// other candidate (a tie suggests nothing rather than a coin toss).
pub(crate) fn closest<'c>(
    found: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let found_len = found.chars().count();
    let mut best: Option<(usize, &'c str)> = None;
    let mut tie = false;
    for candidate in candidates {
        let len = candidate.chars().count();
        let limit = 2.max(len / 4).min(len.saturating_sub(1));
        // Each edit changes the length by at most one.
        if found_len.abs_diff(len) > limit {
            continue;
        }
        let d = edit_distance(found, candidate);
        if d == 0 || d > limit {
            continue;
        }
        match best {
            Some((bd, b)) if bd < d || (bd == d && b == candidate) => {}
            Some((bd, _)) if bd == d => tie = true,
            _ => {
                best = Some((d, candidate));
                tie = false;
            }
        }
    }
    if tie { None } else { best.map(|(_, c)| c) }
}

/// Optimal-string-alignment distance over characters: insertions,
/// deletions, substitutions and adjacent transpositions (`pgae` -> `page`
/// is 1, where plain Levenshtein says 2).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_transpositions_as_one_edit() {
        assert_eq!(edit_distance("pgae", "page"), 1);
        assert_eq!(edit_distance("than", "then"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("é", "e"), 1);
    }

    #[test]
    fn one_threshold_for_keywords_and_names() {
        assert_eq!(closest("than", ["then", "when"]), Some("then"));
        assert_eq!(closest("apii", ["api", "web"]), Some("api"));
        // Four edits are fine for a 16-character word, not for a short one.
        assert_eq!(
            closest("budget_remainig", ["budget_remaining"]),
            Some("budget_remaining")
        );
        assert_eq!(
            closest("checkout-avail", ["checkout-availability"]),
            None,
            "7 edits is too many"
        );
        assert_eq!(closest("xy", ["or"]), None, "as many edits as letters");
        assert_eq!(
            closest("cat", ["bat", "hat"]),
            None,
            "a tie suggests nothing"
        );
        assert_eq!(closest("api", ["api"]), None, "nothing to correct");
        // The same name listed twice is not a tie.
        assert_eq!(closest("apj", ["api", "api"]), Some("api"));
    }
}

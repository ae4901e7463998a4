//! One tier of an SLO's history: a ring of time buckets holding running
//! (cumulative) good/total counts, so the sum over any run of buckets the
//! ring still holds is one subtraction. The engine in [`super`] keeps one
//! ring per tier per SLO and picks the tier by window length.
//!
//! Why cumulative counts rather than per-bucket counts: an evaluation tick
//! asks for six windows and the period for every SLO; with per-bucket
//! counts a one-day window sums hundreds of buckets, with running counts it
//! reads two. The price is paid by late data only: a late event is added
//! to its bucket and every newer bucket in the ring (at most one ring's
//! worth, and only for the rare late record).

use serde::Serialize;

/// Good and total event counts: over a window, or running since an SLO
/// was first fed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Good events.
    pub good: u64,
    /// All events, good and bad.
    pub total: u64,
}

impl Counts {
    /// Bad events: `total - good`.
    pub fn bad(&self) -> u64 {
        self.total - self.good
    }

    /// Running counts only ever grow, but they may wrap after 2^64
    /// events; wrapping arithmetic keeps every difference of two of them
    /// exact as long as the difference itself is below 2^64.
    fn wrapping_add(self, other: Counts) -> Counts {
        Counts {
            good: self.good.wrapping_add(other.good),
            total: self.total.wrapping_add(other.total),
        }
    }

    fn wrapping_sub(self, other: Counts) -> Counts {
        Counts {
            good: self.good.wrapping_sub(other.good),
            total: self.total.wrapping_sub(other.total),
        }
    }
}

/// A ring of `cap` buckets of `bucket_secs` each. Bucket `k` holds the
/// events with `k * bucket_secs <= at < (k + 1) * bucket_secs`; the ring
/// holds buckets `head - cap + 1 ..= head`, where `head` is the newest
/// bucket any record has reached.
#[derive(Clone, Debug)]
pub(crate) struct Ring {
    bucket_secs: i64,
    head: i64,
    /// `head mod cap`, kept so that finding a slot needs no division (a
    /// tick finds thousands).
    head_slot: usize,
    /// `cum[k mod cap]`: running counts through the end of bucket `k`.
    cum: Box<[Counts]>,
    /// Running counts through bucket `head - cap`, the one just evicted:
    /// what a sum starting at the oldest held bucket subtracts.
    floor: Counts,
    /// One bit per slot: whether any record (even one of zero events)
    /// landed in that bucket. This is what tells "no data" from "zero
    /// traffic"; a bit costs 1/128 of the slot's counts.
    seen: Box<[u64]>,
}

impl Ring {
    /// A ring whose newest bucket is `head` and which has seen nothing:
    /// every held bucket reads as empty, as the time before an SLO's first
    /// record is.
    pub(crate) fn new(bucket_secs: u64, cap: usize, head: i64) -> Ring {
        Ring {
            bucket_secs: bucket_secs as i64,
            head,
            head_slot: head.rem_euclid(cap as i64) as usize,
            cum: vec![Counts::default(); cap].into_boxed_slice(),
            floor: Counts::default(),
            seen: vec![0; cap.div_ceil(64)].into_boxed_slice(),
        }
    }

    /// The bucket holding second `at`.
    pub(crate) fn bucket(&self, at: i64) -> i64 {
        at.div_euclid(self.bucket_secs)
    }

    /// Bucket length in seconds.
    pub(crate) fn bucket_secs(&self) -> i64 {
        self.bucket_secs
    }

    fn cap(&self) -> i64 {
        self.cum.len() as i64
    }

    /// The slot of bucket `k`, which must be held: `head - cap < k <=
    /// head`.
    fn slot(&self, k: i64) -> usize {
        let back = (self.head - k) as usize;
        debug_assert!(back < self.cum.len());
        if back <= self.head_slot {
            self.head_slot - back
        } else {
            self.head_slot + self.cum.len() - back
        }
    }

    /// The first second of the oldest bucket the ring still holds: the
    /// oldest `at` a record may carry.
    pub(crate) fn oldest_second(&self) -> i64 {
        (self.head - self.cap() + 1) * self.bucket_secs
    }

    /// Heap bytes held by this ring.
    pub(crate) fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.cum) + std::mem::size_of_val(&*self.seen)
    }

    /// Adds `counts` at second `at`. The caller has checked that `at` is
    /// not older than [`Ring::oldest_second`].
    pub(crate) fn add(&mut self, at: i64, counts: Counts) {
        let k = self.bucket(at);
        debug_assert!(k > self.head - self.cap(), "caller checks lateness");
        if k > self.head {
            self.advance(k);
        }
        // Every running count from bucket k on includes the new events:
        // one slot for on-time data, up to a ring's worth for late data.
        let mut j = k;
        while j <= self.head {
            let s = self.slot(j);
            self.cum[s] = self.cum[s].wrapping_add(counts);
            j += 1;
        }
        let s = self.slot(k);
        self.seen[s / 64] |= 1 << (s % 64);
    }

    /// Moves the head to bucket `k`: the buckets in between saw nothing,
    /// so their running counts equal the old head's.
    fn advance(&mut self, k: i64) {
        let last = self.cum[self.head_slot];
        if k - self.head >= self.cap() {
            // The whole ring is evicted; bucket k - cap is newer than the
            // old head, so it too carries the old head's running counts.
            self.floor = last;
            self.cum.fill(last);
            self.seen.fill(0);
            self.head_slot = k.rem_euclid(self.cap()) as usize;
        } else {
            let mut s = self.head_slot;
            for _ in self.head..k {
                s = if s + 1 == self.cum.len() { 0 } else { s + 1 };
                // Slot s held the oldest bucket: its running counts become
                // the floor as it is evicted.
                self.floor = self.cum[s];
                self.cum[s] = last;
                self.seen[s / 64] &= !(1 << (s % 64));
            }
            self.head_slot = s;
        }
        self.head = k;
    }

    /// Running counts through the end of bucket `k`, if the ring can tell.
    fn cum_through(&self, k: i64) -> Option<Counts> {
        if k >= self.head {
            Some(self.cum[self.head_slot])
        } else if k > self.head - self.cap() {
            Some(self.cum[self.slot(k)])
        } else if k == self.head - self.cap() {
            Some(self.floor)
        } else {
            None
        }
    }

    /// Exact counts over buckets `a ..= b`, and whether any record landed
    /// in them; `None` when bucket `a` is older than the ring holds.
    pub(crate) fn sum(&self, a: i64, b: i64) -> Option<(Counts, bool)> {
        let end = self.cum_through(b)?;
        let start = self.cum_through(a - 1)?;
        Some((end.wrapping_sub(start), self.seen_in(a, b)))
    }

    /// Whether any record landed in buckets `a ..= b` (both held, or newer
    /// than the head).
    fn seen_in(&self, a: i64, b: i64) -> bool {
        let hi = b.min(self.head);
        if a > hi {
            return false;
        }
        // The head bucket always holds a record (only records move it), so
        // the usual query, one that reaches the head, needs no scan.
        if hi == self.head {
            return true;
        }
        let (lo, hi) = (self.slot(a), self.slot(hi));
        if lo <= hi {
            self.any_bit(lo, hi)
        } else {
            self.any_bit(lo, self.cum.len() - 1) || self.any_bit(0, hi)
        }
    }

    /// Whether any bit in slots `lo ..= hi` is set.
    fn any_bit(&self, lo: usize, hi: usize) -> bool {
        let (wl, wh) = (lo / 64, hi / 64);
        let low_mask = u64::MAX << (lo % 64);
        let high_mask = u64::MAX >> (63 - hi % 64);
        if wl == wh {
            return self.seen[wl] & low_mask & high_mask != 0;
        }
        self.seen[wl] & low_mask != 0
            || self.seen[wl + 1..wh].iter().any(|w| *w != 0)
            || self.seen[wh] & high_mask != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(good: u64, total: u64) -> Counts {
        Counts { good, total }
    }

    #[test]
    fn sums_are_differences_of_running_counts() {
        // 10 s buckets, 4 slots; first record at t=100 (bucket 10).
        let mut r = Ring::new(10, 4, 10);
        r.add(100, c(1, 2)); // bucket 10
        r.add(115, c(3, 4)); // bucket 11
        r.add(139, c(5, 6)); // bucket 13 (12 is a gap)
        assert_eq!(r.sum(10, 13), Some((c(9, 12), true)));
        assert_eq!(r.sum(11, 13), Some((c(8, 10), true)));
        assert_eq!(r.sum(12, 12), Some((c(0, 0), false)), "the gap");
        assert_eq!(r.sum(9, 9), None, "older than the ring");
        // A late record into bucket 11 shows in every sum covering it.
        r.add(110, c(0, 1));
        assert_eq!(r.sum(10, 13), Some((c(9, 13), true)));
        assert_eq!(r.sum(13, 13), Some((c(5, 6), true)));
        // Advancing to bucket 15 evicts 10 and 11; 12..=15 stay.
        r.add(150, c(1, 1));
        assert_eq!(r.sum(12, 15), Some((c(6, 7), true)));
        assert_eq!(r.sum(11, 15), None);
        assert_eq!(r.oldest_second(), 120);
        // Past the head, buckets read as empty and unseen.
        assert_eq!(r.sum(16, 40), Some((c(0, 0), false)));
    }

    #[test]
    fn a_jump_past_the_whole_ring_keeps_the_floor_right() {
        let mut r = Ring::new(10, 4, 0);
        r.add(5, c(2, 3));
        r.add(1_000, c(1, 1)); // bucket 100: everything else evicted
        assert_eq!(r.sum(97, 100), Some((c(1, 1), true)));
        assert_eq!(r.sum(97, 99), Some((c(0, 0), false)));
    }

    #[test]
    fn seen_bits_scan_across_the_wrap_and_words() {
        // 130 slots: three words, and a query that wraps the ring.
        let mut r = Ring::new(1, 130, 0);
        r.add(0, c(0, 0));
        r.add(200, c(0, 0)); // head 200; slots hold 71..=200
        r.add(100, c(0, 0)); // slot 100
        assert_eq!(r.sum(71, 99).map(|s| s.1), Some(false));
        assert_eq!(r.sum(71, 100).map(|s| s.1), Some(true));
        assert_eq!(r.sum(101, 199).map(|s| s.1), Some(false), "wraps");
        r.add(131, c(0, 0)); // slot 1, after the wrap
        assert_eq!(r.sum(101, 199).map(|s| s.1), Some(true));
        assert_eq!(r.sum(132, 199).map(|s| s.1), Some(false));
    }
}

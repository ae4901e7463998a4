//! The stored form of an incident's alert: the `state` column of
//! `incident_alerts` and `incident_alerts_recent`, written as a BLOB.
//!
//! Every new alert of a storm is written whole once. As JSON that was
//! about 600 bytes of escaped text and a quarter of the server's CPU per
//! new alert (serializing it, then SQLite and the WAL carrying it). This
//! form copies the packed label maps as they are, keeps times as numbers,
//! and reads back exactly what was written. Rows written as JSON text by
//! earlier versions stay readable: the column's type tells the two apart.
//!
//! Layout, after a format byte ([`FORMAT`]):
//! labels, annotations (each a [`StrMap`]'s packed form, as a string),
//! status, starts_at, ends_at, source, generator_url, severity, rule,
//! explanation (a count, then each line), first_seen, last_seen,
//! announced. A string is its length (LEB128) and its UTF-8 bytes; a time
//! is its local date and time as seconds since the Unix epoch (8 bytes:
//! the Unix time plus the offset, so that any time the RFC 3339 form can
//! hold, local year 9999 included, reads back), nanoseconds (4) and UTC
//! offset in seconds (4), little-endian; an option is a byte 0 (none) or
//! 1 and the value; an enum is one byte.

use time::{OffsetDateTime, UtcOffset};

use crate::model::{Alert, AlertStatus, Explanation, Severity, SharedStr, Source, StrMap};
use crate::route::TrackedAlert;

/// The first byte of every encoded alert: its layout's version.
pub const FORMAT: u8 = 1;

/// Appends the stored form of `alert` to `out`.
pub fn encode(alert: &TrackedAlert, out: &mut Vec<u8>) {
    let a = &alert.alert;
    out.push(FORMAT);
    put_str(out, a.labels.packed());
    put_str(out, a.annotations.packed());
    out.push(match a.status {
        AlertStatus::Firing => 0,
        AlertStatus::Resolved => 1,
    });
    put_option(out, a.starts_at.as_ref(), put_time);
    put_option(out, a.ends_at.as_ref(), put_time);
    out.push(match a.source {
        Source::Prometheus => 0,
        Source::Alertmanager => 1,
        Source::Grafana => 2,
        Source::Generic => 3,
        Source::Slo => 4,
    });
    put_option(out, a.generator_url.as_ref(), |out, s| put_str(out, s));
    out.push(match alert.severity {
        None => 0,
        Some(Severity::Sev1) => 1,
        Some(Severity::Sev2) => 2,
        Some(Severity::Sev3) => 3,
    });
    put_option(out, alert.rule.as_ref(), |out, s| put_str(out, s));
    put_len(out, alert.explanation.len());
    for line in alert.explanation.iter() {
        put_str(out, line);
    }
    put_time(out, &alert.first_seen);
    put_time(out, &alert.last_seen);
    out.push(u8::from(alert.announced));
}

/// The alert `bytes` encode. An error names the first thing that is not
/// as [`encode`] writes it; nothing in `bytes` can make this panic.
pub fn decode(bytes: &[u8]) -> Result<TrackedAlert, String> {
    let mut r = Reader { bytes, at: 0 };
    let format = r.byte("format")?;
    if format != FORMAT {
        return Err(format!(
            "unknown alert format {format} (this version reads {FORMAT})"
        ));
    }
    let labels = r.str_map("labels")?;
    let annotations = r.str_map("annotations")?;
    let status = match r.byte("status")? {
        0 => AlertStatus::Firing,
        1 => AlertStatus::Resolved,
        other => return Err(format!("unknown status {other}")),
    };
    let starts_at = r.option("starts_at", |r| r.time("starts_at"))?;
    let ends_at = r.option("ends_at", |r| r.time("ends_at"))?;
    let source = match r.byte("source")? {
        0 => Source::Prometheus,
        1 => Source::Alertmanager,
        2 => Source::Grafana,
        3 => Source::Generic,
        4 => Source::Slo,
        other => return Err(format!("unknown source {other}")),
    };
    let generator_url = r.option("generator_url", |r| {
        r.str("generator_url").map(SharedStr::from)
    })?;
    let severity = match r.byte("severity")? {
        0 => None,
        1 => Some(Severity::Sev1),
        2 => Some(Severity::Sev2),
        3 => Some(Severity::Sev3),
        other => return Err(format!("unknown severity {other}")),
    };
    let rule = r.option("rule", |r| r.str("rule").map(SharedStr::from))?;
    let lines = r.len("explanation")?;
    // Each line takes a byte at least: a count past the rest is corrupt,
    // and must not reserve memory for it.
    if lines > r.bytes.len() - r.at {
        return Err(format!("explanation of {lines} lines is past the end"));
    }
    let explanation = (0..lines)
        .map(|_| r.str("explanation").map(str::to_string))
        .collect::<Result<Vec<_>, _>>()?;
    let first_seen = r.time("first_seen")?;
    let last_seen = r.time("last_seen")?;
    let announced = match r.byte("announced")? {
        0 => false,
        1 => true,
        other => return Err(format!("announced is {other}, not 0 or 1")),
    };
    if r.at != bytes.len() {
        return Err(format!("{} bytes after the alert", bytes.len() - r.at));
    }
    Ok(TrackedAlert {
        alert: Alert {
            labels,
            annotations,
            status,
            starts_at,
            ends_at,
            source,
            generator_url,
        },
        severity,
        rule,
        explanation: Explanation::from(explanation),
        first_seen,
        last_seen,
        announced,
    })
}

fn put_len(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_time(out: &mut Vec<u8>, t: &OffsetDateTime) {
    // Local, not UTC: `9999-12-31T23:00:00-05:00` is in year 10000 in
    // UTC, which `OffsetDateTime::from_unix_timestamp` refuses.
    let local = t.unix_timestamp() + i64::from(t.offset().whole_seconds());
    out.extend_from_slice(&local.to_le_bytes());
    out.extend_from_slice(&t.nanosecond().to_le_bytes());
    out.extend_from_slice(&t.offset().whole_seconds().to_le_bytes());
}

fn put_option<T: ?Sized>(out: &mut Vec<u8>, value: Option<&T>, put: impl Fn(&mut Vec<u8>, &T)) {
    match value {
        None => out.push(0),
        Some(value) => {
            out.push(1);
            put(out, value);
        }
    }
}

/// Reads an encoded alert front to back; every read checks what is left.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let taken = self
            .at
            .checked_add(n)
            .and_then(|end| self.bytes.get(self.at..end))
            .ok_or_else(|| format!("{what} is cut short at byte {}", self.at))?;
        self.at += n;
        Ok(taken)
    }

    fn byte(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N, what)?);
        Ok(array)
    }

    fn len(&mut self, what: &str) -> Result<usize, String> {
        let too_large = || format!("{what}: a length too large");
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.byte(what)?;
            let bits = u64::from(byte & 0x7f);
            // The tenth byte holds the 64th bit only.
            if shift == 63 && bits > 1 {
                return Err(too_large());
            }
            n |= bits << shift;
            if byte & 0x80 == 0 {
                return usize::try_from(n).map_err(|_| too_large());
            }
        }
        Err(too_large())
    }

    fn str(&mut self, what: &str) -> Result<&'a str, String> {
        let len = self.len(what)?;
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes).map_err(|e| format!("{what} is not UTF-8: {e}"))
    }

    fn str_map(&mut self, what: &str) -> Result<StrMap, String> {
        let packed = self.str(what)?;
        StrMap::from_packed(packed).ok_or_else(|| format!("{what} is not a packed label map"))
    }

    fn time(&mut self, what: &str) -> Result<OffsetDateTime, String> {
        let seconds = i64::from_le_bytes(self.array(what)?);
        let nanos = u32::from_le_bytes(self.array(what)?);
        let offset = i32::from_le_bytes(self.array(what)?);
        let bad = |e: &dyn std::fmt::Display| format!("{what}: {e}");
        let offset = UtcOffset::from_whole_seconds(offset).map_err(|e| bad(&e))?;
        // The seconds are the local date and time: read as UTC, then given
        // their offset, which keeps the date and time (and cannot fail,
        // where converting to the offset can leave the calendar).
        Ok(OffsetDateTime::from_unix_timestamp(seconds)
            .map_err(|e| bad(&e))?
            .replace_nanosecond(nanos)
            .map_err(|e| bad(&e))?
            .replace_offset(offset))
    }

    fn option<T>(
        &mut self,
        what: &str,
        read: impl FnOnce(&mut Self) -> Result<T, String>,
    ) -> Result<Option<T>, String> {
        match self.byte(what)? {
            0 => Ok(None),
            1 => read(self).map(Some),
            other => Err(format!("{what}: option tag {other}, not 0 or 1")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn alert() -> TrackedAlert {
        TrackedAlert {
            alert: Alert {
                labels: [
                    ("alertname", "HighLatency"),
                    ("service", "checkout"),
                    ("severity", "critical"),
                    ("quote", "a \"quoted\" value, \\ and ünïcode"),
                ]
                .into_iter()
                .collect(),
                annotations: [("summary", "p99 over 2s\nsecond line")]
                    .into_iter()
                    .collect(),
                status: AlertStatus::Firing,
                starts_at: Some(datetime!(2026-11-28 10:00:00.123456789 +02:00)),
                ends_at: Some(datetime!(2026-11-28 11:00:00 UTC)),
                source: Source::Alertmanager,
                generator_url: Some(SharedStr::from("http://prometheus:9090/graph?g0.expr=up")),
            },
            severity: Some(Severity::Sev2),
            rule: Some(SharedStr::from("checkout-latency")),
            explanation: Explanation::from(vec![
                "SEV2 by rule \"checkout-latency\"".to_string(),
                "  labels.service = \"checkout\"".to_string(),
            ]),
            first_seen: datetime!(2026-11-28 08:00:01.5 UTC),
            last_seen: datetime!(2026-11-28 08:05:00 UTC),
            announced: true,
        }
    }

    fn round_trip(alert: &TrackedAlert) -> TrackedAlert {
        let mut bytes = Vec::new();
        encode(alert, &mut bytes);
        decode(&bytes).expect("decodes")
    }

    #[test]
    fn an_alert_reads_back_as_written_offsets_and_nanoseconds_included() {
        let written = alert();
        let read = round_trip(&written);
        assert_eq!(read, written);
        let starts = read.alert.starts_at.unwrap();
        assert_eq!(starts.offset(), UtcOffset::from_hms(2, 0, 0).unwrap());
        assert_eq!(starts.nanosecond(), 123_456_789);
        // The same as the JSON form says, which the API shows.
        assert_eq!(
            serde_json::to_value(&read).unwrap(),
            serde_json::to_value(&written).unwrap()
        );
    }

    #[test]
    fn every_empty_and_absent_field_reads_back() {
        let mut written = alert();
        written.alert.labels = StrMap::new();
        written.alert.annotations = StrMap::new();
        written.alert.status = AlertStatus::Resolved;
        written.alert.starts_at = None;
        written.alert.ends_at = None;
        written.alert.generator_url = None;
        written.alert.source = Source::Slo;
        written.severity = None;
        written.rule = None;
        written.explanation = Explanation::default();
        written.announced = false;
        assert_eq!(round_trip(&written), written);
        for (source, severity) in [
            (Source::Prometheus, Severity::Sev1),
            (Source::Grafana, Severity::Sev3),
            (Source::Generic, Severity::Sev2),
        ] {
            written.alert.source = source;
            written.severity = Some(severity);
            assert_eq!(round_trip(&written), written);
        }
    }

    #[test]
    fn times_at_the_ends_of_the_calendar_read_back_and_bad_ones_are_errors() {
        // Local year 9999 is year 10000 in UTC: as RFC 3339 allows it,
        // so does the stored form.
        let mut written = alert();
        written.alert.starts_at = Some(datetime!(9999-12-31 23:00:00.999999999 -05:00));
        written.alert.ends_at = Some(datetime!(-9999-01-01 00:00:00 +05:00));
        assert_eq!(round_trip(&written), written);
        // Whatever the stored seconds and offset, an error, never a panic.
        let mut bytes = Vec::new();
        encode(&alert(), &mut bytes);
        // first_seen is the second time from the end: 16 + 16 + 1 bytes.
        let at = bytes.len() - 33;
        for (seconds, offset) in [
            (253_402_300_799i64, 1i32),
            (253_402_300_799, 93_599),
            (-377_705_116_800, -93_599),
            (i64::MAX, 0),
            (i64::MIN, 0),
            (0, 86_400),
        ] {
            let mut changed = bytes.clone();
            changed[at..at + 8].copy_from_slice(&seconds.to_le_bytes());
            changed[at + 12..at + 16].copy_from_slice(&offset.to_le_bytes());
            let _ = decode(&changed);
        }
    }

    #[test]
    fn a_long_label_value_takes_a_multi_byte_length() {
        let mut written = alert();
        let long = "x".repeat(70_000);
        written.alert.annotations = [("description", long.as_str())].into_iter().collect();
        assert_eq!(round_trip(&written), written);
    }

    #[test]
    fn the_stored_form_is_far_smaller_than_the_json() {
        let mut bytes = Vec::new();
        encode(&alert(), &mut bytes);
        let json = serde_json::to_vec(&alert()).unwrap();
        assert!(
            bytes.len() * 3 < json.len() * 2,
            "{} bytes against {} of JSON",
            bytes.len(),
            json.len()
        );
    }

    #[test]
    fn every_cut_and_every_changed_byte_is_an_error_or_an_alert_never_a_panic() {
        let mut bytes = Vec::new();
        encode(&alert(), &mut bytes);
        for end in 0..bytes.len() {
            let err = decode(&bytes[..end]).unwrap_err();
            assert!(!err.is_empty());
        }
        for at in 0..bytes.len() {
            for value in [0u8, 1, 0x7f, 0x80, 0xff] {
                let mut changed = bytes.clone();
                changed[at] = value;
                let _ = decode(&changed);
            }
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer).unwrap_err(), "1 bytes after the alert");
    }

    #[test]
    fn another_format_is_refused_by_name() {
        let mut bytes = Vec::new();
        encode(&alert(), &mut bytes);
        bytes[0] = 9;
        assert_eq!(
            decode(&bytes).unwrap_err(),
            "unknown alert format 9 (this version reads 1)"
        );
    }

    #[test]
    fn a_label_map_out_of_order_is_refused() {
        // Packed by hand: width 1, two entries "b"="1", "a"="2".
        let packed = "1\u{2}\u{1}\u{2}\u{3}\u{4}b1a2";
        assert!(StrMap::from_packed(packed).is_none());
        let sorted = "1\u{2}\u{1}\u{2}\u{3}\u{4}a1b2";
        let map = StrMap::from_packed(sorted).expect("a valid packed map");
        assert_eq!(map.get("a"), Some("1"));
        assert_eq!(map.get("b"), Some("2"));
        assert_eq!(map.packed(), sorted);
    }
}

//! Shared vocabulary of every stage: [`Alert`], [`Severity`] and the
//! Alertmanager-compatible [`Fingerprint`]. Plain data, no I/O.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Incident severity. SEV1 is the most severe; `Ord` sorts the most severe
/// first, so `min()` over a set of severities picks the worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    /// Critical: customer-facing outage or data loss; page now.
    #[serde(rename = "SEV1")]
    Sev1,
    /// Major: significant degradation; page.
    #[serde(rename = "SEV2")]
    Sev2,
    /// Minor: notify, handle in working hours.
    #[serde(rename = "SEV3")]
    Sev3,
}

impl Severity {
    /// All severities, most severe first.
    pub const ALL: [Severity; 3] = [Severity::Sev1, Severity::Sev2, Severity::Sev3];

    /// The name as written in rule files (`SEV1`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Sev1 => "SEV1",
            Severity::Sev2 => "SEV2",
            Severity::Sev3 => "SEV3",
        }
    }

    /// Position in [`Severity::ALL`] (0 for SEV1).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Parses `SEV1`..`SEV3` (case-sensitive, as written in rule files).
    pub fn parse(text: &str) -> Option<Severity> {
        match text {
            "SEV1" => Some(Severity::Sev1),
            "SEV2" => Some(Severity::Sev2),
            "SEV3" => Some(Severity::Sev3),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Appends `value` as `{value:?}` writes it: quoted, with Rust's escapes.
/// Label values are nearly always printable ASCII with no quote or
/// backslash, which need no escape, so those are copied as they are
/// rather than passed through the formatter character by character.
pub(crate) fn push_quoted(out: &mut String, value: &str) {
    if value
        .bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
    {
        out.push('"');
        out.push_str(value);
        out.push('"');
    } else {
        let _ = std::fmt::Write::write_fmt(out, format_args!("{value:?}"));
    }
}

/// Whether an alert is firing or resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// The condition holds.
    #[default]
    Firing,
    /// The condition no longer holds.
    Resolved,
}

/// Alertmanager's label-set fingerprint: FNV-1a 64 over the label names and
/// values in name order, each followed by the byte 0xff. Using the same
/// function means sevroute's alert ids match Alertmanager's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub u64);

impl Fingerprint {
    /// The fingerprint of a label set.
    pub fn of_labels(labels: &StrMap) -> Fingerprint {
        const OFFSET: u64 = 14_695_981_039_346_656_037;
        const PRIME: u64 = 1_099_511_628_211;
        const SEPARATOR: u8 = 0xff;
        let mut hash = OFFSET;
        let mut add = |bytes: &[u8]| {
            for &b in bytes {
                hash ^= u64::from(b);
                hash = hash.wrapping_mul(PRIME);
            }
        };
        // StrMap iterates in byte order of names, as Go's sort.Strings does.
        for (name, value) in labels {
            add(name.as_bytes());
            add(&[SEPARATOR]);
            add(value.as_bytes());
            add(&[SEPARATOR]);
        }
        Fingerprint(hash)
    }
}

/// 16 lowercase hex digits, as `{:016x}` writes them, digit by digit: each
/// ingested alert's fingerprint is written once, and the integer
/// formatter's padding machinery cost more than the digits.
impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut digits = [0u8; 16];
        for (i, digit) in digits.iter_mut().enumerate() {
            *digit = HEX[((self.0 >> (60 - 4 * i)) & 0xf) as usize];
        }
        // ASCII digits: always UTF-8.
        f.write_str(std::str::from_utf8(&digits).unwrap_or_default())
    }
}

/// A sorted map of string names to string values (an alert's labels or
/// annotations), packed for the many alerts an incident keeps in memory:
/// one boxed string holds a small header of offsets, then every name and
/// value.
///
/// `BTreeMap<String, String>`, the alternative, takes a B-tree leaf of 11
/// slots (~550 bytes) even for 6 labels, plus one allocation per string:
/// about 1 KB per label set where this takes one allocation of ~120
/// bytes. It reads the same (lookups, iteration in name order) and writes
/// the same JSON object; changing it rebuilds the whole buffer, which
/// suits data that is written once and read many times.
///
/// Names are unique: building from pairs with a repeated name keeps the
/// last value, as inserting them one by one into a map would.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct StrMap {
    /// Empty for an empty map. Otherwise a header, then the text:
    /// - the width `w` of every number below, as the byte `b'0' + w`;
    /// - the number of entries `n`;
    /// - `2n` end offsets into the text: entry `i`'s name ends at end
    ///   `2i`, its value at end `2i + 1` (each starts where the one
    ///   before ends);
    /// - the text: name 0, value 0, name 1, value 1, ... in name order.
    ///
    /// Each number is `w` bytes of 7 bits, so the header is ASCII and the
    /// whole stays a `str` (no unsafe code to read it), and `w` is the
    /// fewest that fit: one byte per offset for the usual label set, where
    /// `u32` offsets would take four. The encoding is unique, so equal
    /// maps have equal buffers and the derived `PartialEq` and `Hash` hold.
    buf: Box<str>,
}

/// Bits each header byte of a [`StrMap`] carries (ASCII: 0..=127).
const DIGIT_BITS: u32 = 7;

impl StrMap {
    /// An empty map (allocates nothing).
    pub fn new() -> StrMap {
        StrMap::default()
    }

    /// Packs pairs already sorted by name with no name repeated.
    fn from_sorted_unique<'a>(
        pairs: impl ExactSizeIterator<Item = (&'a str, &'a str)> + Clone,
    ) -> StrMap {
        let n = pairs.len();
        if n == 0 {
            return StrMap::new();
        }
        let text_len: usize = pairs.clone().map(|(k, v)| k.len() + v.len()).sum();
        let largest = text_len.max(n);
        let mut width = 1;
        while width * (DIGIT_BITS as usize) < usize::BITS as usize
            && largest >> (width as u32 * DIGIT_BITS) != 0
        {
            width += 1;
        }
        let mut buf = String::with_capacity(1 + width * (1 + 2 * n) + text_len);
        let push_number = |buf: &mut String, number: usize| {
            for digit in (0..width).rev() {
                let bits = (number >> (digit as u32 * DIGIT_BITS)) & 0x7f;
                buf.push(char::from(bits as u8));
            }
        };
        buf.push(char::from(b'0' + width as u8));
        push_number(&mut buf, n);
        let mut end = 0;
        for (name, value) in pairs.clone() {
            for part in [name, value] {
                end += part.len();
                push_number(&mut buf, end);
            }
        }
        for (name, value) in pairs {
            buf.push_str(name);
            buf.push_str(value);
        }
        StrMap {
            buf: buf.into_boxed_str(),
        }
    }

    /// Packs pairs in any order; of pairs with the same name the last wins.
    pub(crate) fn from_pairs<K: AsRef<str>, V: AsRef<str>>(mut pairs: Vec<(K, V)>) -> StrMap {
        let sorted_unique = pairs.windows(2).all(|w| w[0].0.as_ref() < w[1].0.as_ref());
        if !sorted_unique {
            // Stable, so among equal names the last one given stays last.
            pairs.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
            let mut unique: Vec<(K, V)> = Vec::with_capacity(pairs.len());
            for pair in pairs {
                match unique.last_mut() {
                    Some(last) if last.0.as_ref() == pair.0.as_ref() => *last = pair,
                    _ => unique.push(pair),
                }
            }
            pairs = unique;
        }
        StrMap::from_sorted_unique(pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
    }

    /// The map's packed form (see the field's comment): what the store
    /// writes, and [`StrMap::from_packed`] reads back.
    pub(crate) fn packed(&self) -> &str {
        &self.buf
    }

    /// The map whose [`StrMap::packed`] form is `text`; `None` when `text`
    /// is not one (cut short, offsets out of order or off a character,
    /// names not in order), so that no stored bytes make a map that reads
    /// wrong.
    pub(crate) fn from_packed(text: &str) -> Option<StrMap> {
        if text.is_empty() {
            return Some(StrMap::new());
        }
        let raw = StrMap { buf: text.into() };
        let width = raw.width();
        // Each header byte carries 7 bits of a usize.
        if width == 0 || width * (DIGIT_BITS as usize) > usize::BITS as usize + 6 {
            return None;
        }
        let n = raw.len();
        let header = n
            .checked_mul(2)?
            .checked_add(1)?
            .checked_mul(width)?
            .checked_add(1)?;
        let text_len = text.len().checked_sub(header)?;
        if !text.as_bytes()[..header].is_ascii() {
            return None;
        }
        let mut end = 0;
        for i in 1..=2 * n {
            let next = raw.number(width, i);
            if next < end || next > text_len || !text.is_char_boundary(header + next) {
                return None;
            }
            end = next;
        }
        if end != text_len || !raw.keys().zip(raw.keys().skip(1)).all(|(a, b)| a < b) {
            return None;
        }
        // Packed anew: the one encoding of these entries, so that equal
        // maps stay equal byte for byte.
        Some(StrMap::from_sorted_unique(raw.iter()))
    }

    /// Width in bytes of each header number (0 for an empty map).
    fn width(&self) -> usize {
        self.buf
            .as_bytes()
            .first()
            .map_or(0, |&w| usize::from(w.saturating_sub(b'0')))
    }

    /// The `index`-th header number after the width byte (0 is `n`, then
    /// the ends). Reads 0 past the header: never, for a map built here.
    fn number(&self, width: usize, index: usize) -> usize {
        let at = 1 + index * width;
        self.buf
            .as_bytes()
            .get(at..at + width)
            .unwrap_or(&[])
            .iter()
            .fold(0, |acc, &digit| (acc << DIGIT_BITS) | usize::from(digit))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        match self.width() {
            0 => 0,
            width => self.number(width, 0),
        }
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Text of part `i` (name `2k`, value `2k + 1`).
    fn part(&self, i: usize) -> &str {
        let (text_start, start, end) = match self.buf.as_bytes() {
            // The usual label set, under 128 bytes of text: one byte per
            // number, read directly (every lookup and walk of a map comes
            // here: the general decoding below was 6% of the server's
            // CPU in a storm of new alerts).
            [b'1', n, ends @ ..] => {
                let end_of = |part: usize| ends.get(part).map_or(0, |&e| usize::from(e));
                let start = if i == 0 { 0 } else { end_of(i - 1) };
                (2 + 2 * usize::from(*n), start, end_of(i))
            }
            _ => {
                let width = self.width();
                let text_start = 1 + width * (1 + 2 * self.len());
                let start = if i == 0 { 0 } else { self.number(width, i) };
                (text_start, start, self.number(width, i + 1))
            }
        };
        // `get` rather than indexing: the offsets are ours, but a lookup
        // must never panic.
        self.buf
            .get(text_start + start..text_start + end)
            .unwrap_or("")
    }

    /// Entry `i`: its name and value.
    fn entry(&self, i: usize) -> (&str, &str) {
        (self.part(2 * i), self.part(2 * i + 1))
    }

    /// Position of `name`, or where it would go.
    fn search(&self, name: &str) -> Result<usize, usize> {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let mid = low + (high - low) / 2;
            match self.part(2 * mid).cmp(name) {
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(low)
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.search(name).ok().map(|i| self.part(2 * i + 1))
    }

    /// True when `name` is present.
    pub fn contains_key(&self, name: &str) -> bool {
        self.search(name).is_ok()
    }

    /// Sets `name` to `value`, replacing an earlier value. Rebuilds the
    /// buffer: meant for building a few entries, not for hot paths.
    pub fn insert(&mut self, name: &str, value: &str) {
        let mut pairs: Vec<(&str, &str)> = self.iter().collect();
        match self.search(name) {
            Ok(i) => pairs[i].1 = value,
            Err(i) => pairs.insert(i, (name, value)),
        }
        *self = StrMap::from_sorted_unique(pairs.into_iter());
    }

    /// Removes `name`, returning whether it was present.
    pub fn remove(&mut self, name: &str) -> bool {
        let Ok(i) = self.search(name) else {
            return false;
        };
        let mut pairs: Vec<(&str, &str)> = self.iter().collect();
        pairs.remove(i);
        *self = StrMap::from_sorted_unique(pairs.into_iter());
        true
    }

    /// The entries in name order (byte order, as Go's `sort.Strings`).
    pub fn iter(&self) -> StrMapIter<'_> {
        StrMapIter {
            map: self,
            front: 0,
            back: self.len(),
        }
    }

    /// The names, in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &str> + ExactSizeIterator {
        self.iter().map(|(k, _)| k)
    }

    /// The values, in name order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &str> + ExactSizeIterator {
        self.iter().map(|(_, v)| v)
    }
}

/// Iterator over a [`StrMap`]'s entries in name order.
#[derive(Clone)]
pub struct StrMapIter<'a> {
    map: &'a StrMap,
    front: usize,
    back: usize,
}

impl<'a> Iterator for StrMapIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        (self.front < self.back).then(|| {
            self.front += 1;
            self.map.entry(self.front - 1)
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.back - self.front;
        (n, Some(n))
    }
}

impl DoubleEndedIterator for StrMapIter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        (self.front < self.back).then(|| {
            self.back -= 1;
            self.map.entry(self.back)
        })
    }
}

impl ExactSizeIterator for StrMapIter<'_> {}

impl<'a> IntoIterator for &'a StrMap {
    type Item = (&'a str, &'a str);
    type IntoIter = StrMapIter<'a>;

    fn into_iter(self) -> StrMapIter<'a> {
        self.iter()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for StrMap {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> StrMap {
        StrMap::from_pairs(pairs.into_iter().collect())
    }
}

impl From<BTreeMap<String, String>> for StrMap {
    fn from(map: BTreeMap<String, String>) -> StrMap {
        StrMap::from_sorted_unique(map.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

impl std::ops::Index<&str> for StrMap {
    type Output = str;

    /// The value of `name`; panics when it is missing, like `BTreeMap`'s
    /// index (for tests; code reads with [`StrMap::get`]).
    fn index(&self, name: &str) -> &str {
        match self.get(name) {
            Some(value) => value,
            None => panic!("no entry {name:?} in the map"),
        }
    }
}

impl fmt::Debug for StrMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for StrMap {
    /// A JSON object in name order: the same bytes a
    /// `BTreeMap<String, String>` writes.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for StrMap {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<StrMap, D::Error> {
        struct Visitor;

        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = StrMap;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of string values")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut access: A,
            ) -> Result<StrMap, A::Error> {
                // Borrowed from the input where it allows (no escapes), so
                // reading a stored alert copies each string once, into the
                // packed buffer.
                let mut pairs: Vec<(Text<'de>, Text<'de>)> =
                    Vec::with_capacity(access.size_hint().unwrap_or(0).min(64));
                while let Some(pair) = access.next_entry()? {
                    pairs.push(pair);
                }
                Ok(StrMap::from_pairs(pairs))
            }
        }

        deserializer.deserialize_map(Visitor)
    }
}

/// A string read by serde: borrowed from the input when it can be.
struct Text<'de>(std::borrow::Cow<'de, str>);

impl AsRef<str> for Text<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Text<'de>, D::Error> {
        struct Visitor;

        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(std::borrow::Cow::Borrowed(text)))
            }

            fn visit_str<E>(self, text: &str) -> Result<Text<'de>, E> {
                Ok(Text(std::borrow::Cow::Owned(text.to_string())))
            }

            fn visit_string<E>(self, text: String) -> Result<Text<'de>, E> {
                Ok(Text(std::borrow::Cow::Owned(text)))
            }
        }

        deserializer.deserialize_str(Visitor)
    }
}

/// How many distinct values each thread's intern cache remembers (see
/// [`SharedStr`]): enough for every rule name and explanation a rule set
/// gives at once, small enough that the cache itself costs little.
const INTERNED_MAX: usize = 1024;

/// Longest value (in bytes of text) the intern caches remember: so a
/// cache holds at most about 1 MiB per thread, even when a sender puts
/// long text into evidence or URLs. Longer values are not shared.
const INTERNED_MAX_BYTES: usize = 1024;

thread_local! {
    static INTERNED_STRS: RefCell<HashSet<Arc<str>>> = RefCell::new(HashSet::new());
    static INTERNED_LINES: RefCell<HashSet<Arc<[String]>>> = RefCell::new(HashSet::new());
}

/// The shared copy of `value` (`bytes` of text) from this thread's cache,
/// made with `make` and remembered when the cache has none. A full cache
/// first forgets the values nobody else holds any more, then, if still
/// full, everything: values handed out stay valid, only later ones stop
/// sharing with them.
fn intern<T: ?Sized + Eq + std::hash::Hash, V: std::borrow::Borrow<T>>(
    cache: &'static std::thread::LocalKey<RefCell<HashSet<Arc<T>>>>,
    value: V,
    bytes: usize,
    make: impl FnOnce(V) -> Arc<T>,
) -> Arc<T> {
    if bytes > INTERNED_MAX_BYTES {
        return make(value);
    }
    cache.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(shared) = cache.get(value.borrow()) {
            return Arc::clone(shared);
        }
        if cache.len() >= INTERNED_MAX {
            cache.retain(|shared| Arc::strong_count(shared) > 1);
            if cache.len() >= INTERNED_MAX {
                cache.clear();
            }
        }
        let shared = make(value);
        cache.insert(Arc::clone(&shared));
        shared
    })
}

/// An immutable string that alerts share when they carry the same one: a
/// rule name, a generator URL. Building one looks the text up in a small
/// per-thread cache first, so 100,000 alerts decided by one rule hold one
/// copy of its name rather than 100,000 (`String`, the alternative, costs
/// an allocation per alert). Reads, compares, prints and serializes as the
/// plain string.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SharedStr(Arc<str>);

impl SharedStr {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for SharedStr {
    fn from(text: &str) -> SharedStr {
        SharedStr(intern(&INTERNED_STRS, text, text.len(), Arc::from))
    }
}

impl From<String> for SharedStr {
    fn from(text: String) -> SharedStr {
        SharedStr::from(text.as_str())
    }
}

impl std::ops::Deref for SharedStr {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for SharedStr {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for SharedStr {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for SharedStr {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl fmt::Display for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for SharedStr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SharedStr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<SharedStr, D::Error> {
        let text = Text::deserialize(deserializer)?;
        Ok(SharedStr::from(text.as_ref()))
    }
}

/// A classification's explanation, one fact per line, shared (like
/// [`SharedStr`]) by the alerts whose classification reads the same: the
/// alerts one rule decides on the same evidence. Reads as a slice of
/// lines and serializes as the JSON array of them.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Explanation(Arc<[String]>);

impl Explanation {
    /// The explanation of `text`'s lines (as [`str::lines`] splits them).
    pub fn from_text(text: &str) -> Explanation {
        Explanation::from(text.lines().map(str::to_string).collect::<Vec<_>>())
    }
}

impl From<Vec<String>> for Explanation {
    fn from(lines: Vec<String>) -> Explanation {
        let bytes = lines.iter().map(String::len).sum();
        Explanation(intern(&INTERNED_LINES, lines, bytes, Arc::from))
    }
}

impl Default for Explanation {
    fn default() -> Explanation {
        Explanation::from(Vec::new())
    }
}

impl std::ops::Deref for Explanation {
    type Target = [String];

    fn deref(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Debug for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for Explanation {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Explanation {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Explanation, D::Error> {
        Ok(Explanation::from(Vec::<String>::deserialize(deserializer)?))
    }
}

/// Which kind of system sent an alert (the ingest endpoint it came in on).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Prometheus (or anything) posting to the Alertmanager API v2.
    Prometheus,
    /// Alertmanager's webhook receiver (version 4).
    Alertmanager,
    /// Grafana unified alerting's webhook contact point.
    Grafana,
    /// The documented generic JSON alert.
    #[default]
    Generic,
    /// sevroute itself: the alert an SLO rule raises while its condition
    /// holds (see [`Alert::for_slo`]). No ingest endpoint produces it.
    Slo,
}

impl Source {
    /// The name used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Prometheus => "prometheus",
            Source::Alertmanager => "alertmanager",
            Source::Grafana => "grafana",
            Source::Generic => "generic",
            Source::Slo => "slo",
        }
    }
}

/// One alert, whatever system sent it.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Alert {
    /// Identifying labels; a missing label reads as `""`.
    pub labels: StrMap,
    /// Descriptive annotations; a missing one reads as `""`.
    pub annotations: StrMap,
    /// Firing or resolved.
    pub status: AlertStatus,
    /// When the alert started firing, if the sender said.
    #[serde(with = "time::serde::rfc3339::option")]
    pub starts_at: Option<OffsetDateTime>,
    /// When it ended or will end unless refreshed, if the sender said.
    #[serde(with = "time::serde::rfc3339::option")]
    pub ends_at: Option<OffsetDateTime>,
    /// The system that sent it.
    pub source: Source,
    /// Where the alert can be seen at its source (Prometheus graph, Grafana
    /// panel), when the sender gave one.
    #[serde(default)]
    pub generator_url: Option<SharedStr>,
}

/// The `alertname` of the alert an SLO rule raises.
pub const SLO_ALERTNAME: &str = "SLOErrorBudgetBurn";

impl Alert {
    /// The alert an SLO rule raises for `slo` while its condition holds:
    /// labelled `alertname` and `slo`, so its fingerprint is the same every
    /// time and an incident grouped on it is named after the SLO.
    pub fn for_slo(slo: &str, status: AlertStatus, starts_at: OffsetDateTime) -> Alert {
        Alert {
            labels: [("alertname", SLO_ALERTNAME), ("slo", slo)]
                .into_iter()
                .collect(),
            annotations: [("summary", format!("SLO {slo} is spending its error budget"))]
                .into_iter()
                .collect(),
            status,
            starts_at: Some(starts_at),
            ends_at: None,
            source: Source::Slo,
            generator_url: None,
        }
    }

    /// The SLO whose rule raised this alert, when sevroute raised it.
    pub fn slo_rule_alert_of(&self) -> Option<&str> {
        (self.source == Source::Slo).then(|| self.label("slo"))
    }

    /// The value of a label, `""` when missing (as in Prometheus).
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).unwrap_or("")
    }

    /// The value of an annotation, `""` when missing.
    pub fn annotation(&self, name: &str) -> &str {
        self.annotations.get(name).unwrap_or("")
    }

    /// The Alertmanager-compatible fingerprint of the labels.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_labels(&self.labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn push_quoted_writes_what_debug_writes(
            value in proptest::prop_oneof![
                "[ -~]{0,16}",
                "[a-z\"\\\\ '\t\n\u{7f}\u{0}é\u{301}\u{200b}]{0,8}",
                ".{0,12}",
            ]
        ) {
            let mut out = String::from("x=");
            push_quoted(&mut out, &value);
            proptest::prop_assert_eq!(out, format!("x={value:?}"));
        }

        /// Small maps (one byte per header number) and larger ones read
        /// alike, and their packed form reads back as the same map.
        #[test]
        fn any_str_map_reads_like_a_btree_map_and_its_packed_form_reads_back(
            pairs in proptest::collection::vec(("[a-dé]{0,3}", "[a-z\"é]{0,4}|.{0,90}"), 0..40)
        ) {
            let map: StrMap = pairs.iter().cloned().collect();
            let expected: BTreeMap<String, String> = pairs.iter().cloned().collect();
            proptest::prop_assert!(map.iter().eq(expected.iter().map(|(k, v)| (k.as_str(), v.as_str()))));
            for (name, value) in &expected {
                proptest::prop_assert_eq!(map.get(name), Some(value.as_str()));
            }
            proptest::prop_assert_eq!(map.get("zz"), None);
            proptest::prop_assert_eq!(StrMap::from_packed(map.packed()), Some(map.clone()));
        }

        #[test]
        fn a_fingerprint_prints_as_16_hex_digits_do(n in proptest::prelude::any::<u64>()) {
            proptest::prop_assert_eq!(Fingerprint(n).to_string(), format!("{n:016x}"));
        }
    }

    #[test]
    fn fingerprints_at_the_edges_print_as_16_hex_digits_do() {
        for n in [0, 1, 0xf, 0x10, u64::MAX, 1 << 63, 0x0123_4567_89ab_cdef] {
            assert_eq!(Fingerprint(n).to_string(), format!("{n:016x}"));
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> StrMap {
        pairs.iter().copied().collect()
    }

    #[test]
    fn fingerprint_matches_alertmanager_fixture() {
        let text = include_str!("../../shared/fixtures/alertmanager-0.25-webhook-firing.json");
        let body: serde_json::Value = serde_json::from_str(text).unwrap();
        let alerts = body["alerts"].as_array().unwrap();
        assert!(!alerts.is_empty());
        for alert in alerts {
            let labels: StrMap = serde_json::from_value(alert["labels"].clone()).unwrap();
            let expected = alert["fingerprint"].as_str().unwrap();
            assert_eq!(Fingerprint::of_labels(&labels).to_string(), expected);
        }
    }

    #[test]
    fn fingerprint_of_empty_label_set_is_the_fnv_offset() {
        assert_eq!(
            Fingerprint::of_labels(&StrMap::new()).0,
            14_695_981_039_346_656_037
        );
    }

    #[test]
    fn missing_label_reads_as_empty() {
        let alert = Alert {
            labels: labels(&[("service", "checkout")]),
            ..Alert::default()
        };
        assert_eq!(alert.label("service"), "checkout");
        assert_eq!(alert.label("team"), "");
        assert_eq!(alert.annotation("summary"), "");
    }

    #[test]
    fn severities_sort_most_severe_first() {
        let worst = [Severity::Sev3, Severity::Sev1, Severity::Sev2]
            .into_iter()
            .min()
            .unwrap();
        assert_eq!(worst, Severity::Sev1);
    }

    /// The same pairs in a `BTreeMap`, the type `StrMap` replaced.
    fn btree(pairs: &[(String, String)]) -> BTreeMap<String, String> {
        pairs.iter().cloned().collect()
    }

    #[test]
    fn str_map_reads_like_the_btree_map_it_replaced() {
        let pairs: Vec<(String, String)> = [
            ("service", "checkout"),
            ("alertname", "HighErrorRate"),
            ("Zone", "b"),
            ("service", "payments"),
            ("é", "accent sorts after ASCII"),
            ("empty", ""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let map: StrMap = pairs.iter().cloned().collect();
        let expected = btree(&pairs);
        assert_eq!(map.len(), 5, "the repeated name is one entry");
        assert_eq!(map.get("service"), Some("payments"), "the last value wins");
        assert_eq!(map.get("empty"), Some(""));
        assert_eq!(map.get("missing"), None);
        assert!(map.contains_key("Zone") && !map.contains_key("zone"));
        let names: Vec<&str> = map.keys().collect();
        assert_eq!(names, ["Zone", "alertname", "empty", "service", "é"]);
        assert!(
            map.iter()
                .eq(expected.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        );
        assert!(
            map.iter()
                .rev()
                .eq(expected.iter().rev().map(|(k, v)| (k.as_str(), v.as_str())))
        );
        assert_eq!(&map["alertname"], "HighErrorRate");
    }

    #[test]
    fn str_map_json_is_byte_for_byte_the_btree_maps() {
        let pairs: Vec<(String, String)> = [
            ("quote\"d", "line\nbreak"),
            ("b", "tab\tand \\ backslash"),
            ("a", "ünïcödé ✓"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let map: StrMap = pairs.iter().cloned().collect();
        let json = serde_json::to_string(&map).unwrap();
        assert_eq!(json, serde_json::to_string(&btree(&pairs)).unwrap());
        // Escaped strings cannot be borrowed from the input: they are read
        // owned and still land in the map.
        let back: StrMap = serde_json::from_str(&json).unwrap();
        assert_eq!(back, map);
        assert_eq!(back.get("quote\"d"), Some("line\nbreak"));
        let from_value: StrMap = serde_json::from_value(serde_json::json!({"x": "1"})).unwrap();
        assert_eq!(from_value.get("x"), Some("1"));
        assert_eq!(serde_json::to_string(&StrMap::new()).unwrap(), "{}");
    }

    #[test]
    fn str_map_refuses_non_string_values_with_serdes_message() {
        let err = serde_json::from_str::<StrMap>(r#"{"a": 1}"#).unwrap_err();
        let btree_err =
            serde_json::from_str::<BTreeMap<String, String>>(r#"{"a": 1}"#).unwrap_err();
        assert_eq!(err.to_string(), btree_err.to_string());
        assert!(serde_json::from_str::<StrMap>(r#"["a"]"#).is_err());
    }

    #[test]
    fn str_map_insert_and_remove_keep_it_sorted() {
        let mut map = labels(&[("b", "2")]);
        map.insert("c", "3");
        map.insert("a", "1");
        map.insert("b", "two");
        assert_eq!(
            map.iter().collect::<Vec<_>>(),
            [("a", "1"), ("b", "two"), ("c", "3")]
        );
        assert!(map.remove("b"));
        assert!(!map.remove("b"));
        assert_eq!(
            map,
            labels(&[("c", "3"), ("a", "1")]),
            "equal maps compare equal"
        );
        assert!(map.remove("a") && map.remove("c") && map.is_empty());
        assert_eq!(map, StrMap::new());
    }

    #[test]
    fn str_map_holds_large_maps_and_long_values() {
        // 300 entries and a 20 KB value: header numbers wider than a byte.
        let mut pairs: Vec<(String, String)> = (0..300)
            .map(|i| (format!("name{i:03}"), format!("value {i}")))
            .collect();
        pairs.push(("long".to_string(), "é".repeat(10_000)));
        let map: StrMap = pairs.iter().cloned().collect();
        let expected = btree(&pairs);
        assert_eq!(map.len(), 301);
        assert!(
            map.iter()
                .eq(expected.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        );
        assert_eq!(map.get("name299"), Some("value 299"));
        assert_eq!(map.get("long").map(str::len), Some(20_000));
        assert_eq!(map.get("name300"), None);
        // The usual label set packs into one small buffer.
        let small = labels(&[("alertname", "LoadTest"), ("job", "node")]);
        assert_eq!(
            small.buf.len(),
            1 + 1 + 4 + "alertnameLoadTestjobnode".len()
        );
    }

    proptest::proptest! {
        #[test]
        fn str_map_matches_btree_map(pairs in proptest::collection::vec((".{0,6}", ".{0,8}"), 0..12), probe in ".{0,6}") {
            let map: StrMap = pairs.iter().cloned().collect();
            let expected = btree(&pairs);
            proptest::prop_assert_eq!(map.len(), expected.len());
            proptest::prop_assert!(map.iter().eq(expected.iter().map(|(k, v)| (k.as_str(), v.as_str()))));
            proptest::prop_assert_eq!(map.get(&probe), expected.get(&probe).map(String::as_str));
            for (k, v) in &expected {
                proptest::prop_assert_eq!(map.get(k), Some(v.as_str()));
            }
            let json = serde_json::to_string(&map).unwrap();
            proptest::prop_assert_eq!(&json, &serde_json::to_string(&expected).unwrap());
            proptest::prop_assert_eq!(serde_json::from_str::<StrMap>(&json).unwrap(), map.clone());
            proptest::prop_assert_eq!(
                Fingerprint::of_labels(&map),
                Fingerprint::of_labels(&StrMap::from(expected))
            );
        }
    }

    #[test]
    fn equal_shared_strs_share_one_copy_and_read_as_the_string() {
        let rule = SharedStr::from("checkout burning fast");
        let again = SharedStr::from("checkout burning fast".to_string());
        assert!(Arc::ptr_eq(&rule.0, &again.0), "one copy for both");
        assert_eq!(rule, "checkout burning fast");
        assert_eq!(rule.to_string(), "checkout burning fast");
        assert_eq!(format!("{rule:?}"), "\"checkout burning fast\"");
        assert_ne!(rule, SharedStr::from("other"));
        let json = serde_json::to_string(&Some(rule.clone())).unwrap();
        assert_eq!(
            json,
            serde_json::to_string(&Some("checkout burning fast")).unwrap()
        );
        let back: SharedStr = serde_json::from_str(&json).unwrap();
        assert!(
            Arc::ptr_eq(&back.0, &rule.0),
            "read back into the shared copy"
        );
        let escaped: SharedStr = serde_json::from_str(r#""a\"b""#).unwrap();
        assert_eq!(escaped, "a\"b");
    }

    #[test]
    fn explanations_share_and_serialize_as_their_lines() {
        let text = "SEV1 by rule \"critical\"\n  matched \"critical\" -> SEV1\n";
        let one = Explanation::from_text(text);
        let two = Explanation::from_text(text);
        assert!(Arc::ptr_eq(&one.0, &two.0));
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        assert_eq!(&*one, lines.as_slice());
        assert_eq!(
            serde_json::to_string(&one).unwrap(),
            serde_json::to_string(&lines).unwrap()
        );
        let back: Explanation =
            serde_json::from_str(&serde_json::to_string(&one).unwrap()).unwrap();
        assert!(Arc::ptr_eq(&back.0, &one.0));
        assert_eq!(
            serde_json::to_string(&Explanation::default()).unwrap(),
            "[]"
        );
        assert_ne!(
            one,
            Explanation::from_text("SEV3 by `otherwise`: no rule matched")
        );
    }

    #[test]
    fn the_intern_cache_stays_bounded_and_values_stay_whole() {
        let kept = SharedStr::from("kept while the cache turns over");
        let many: Vec<SharedStr> = (0..3 * INTERNED_MAX)
            .map(|i| SharedStr::from(format!("value {i}")))
            .collect();
        for (i, value) in many.iter().enumerate() {
            assert_eq!(value.as_str(), format!("value {i}"));
        }
        assert_eq!(kept, "kept while the cache turns over");
        let size = INTERNED_STRS.with(|cache| cache.borrow().len());
        assert!(size <= INTERNED_MAX, "{size} cached");
        // Values still held elsewhere survive a turnover of the cache.
        let again = SharedStr::from("value 0");
        assert_eq!(again, many[0]);
        // Long values are whole but not remembered.
        let long = "x".repeat(INTERNED_MAX_BYTES + 1);
        let (one, two) = (
            SharedStr::from(long.as_str()),
            SharedStr::from(long.as_str()),
        );
        assert_eq!(one, two);
        assert!(!Arc::ptr_eq(&one.0, &two.0));
        assert!(INTERNED_STRS.with(|cache| !cache.borrow().contains(long.as_str())));
    }
}

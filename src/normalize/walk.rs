//! Shared walking of a parsed JSON body: each ingest format reads its
//! fields through these helpers, so every format validates labels, times
//! and statuses the same way and every error names the alert index and the
//! field path. The body is parsed into a `serde_json::Value` first (rather
//! than typed structs) because serde's typed errors name a line and column,
//! not the field and alert the sender needs to fix.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;

use super::NormalizeError;
use crate::model::{AlertStatus, SharedStr, StrMap};

/// Go's zero `time.Time`, which Alertmanager and Grafana write for "not set".
const GO_ZERO_TIME: OffsetDateTime = datetime!(0001-01-01 0:00 UTC);

/// Parses the body as JSON; syntax errors keep serde's line and column.
pub(super) fn parse(body: &[u8]) -> Result<Value, NormalizeError> {
    Ok(serde_json::from_slice(body)?)
}

/// The JSON type of a value, for messages ("found a string").
pub(super) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A payload-level error (outside any one alert).
pub(super) fn body_error(field: Option<&str>, message: impl Into<String>) -> NormalizeError {
    NormalizeError::Body {
        field: field.map(str::to_string),
        message: message.into(),
    }
}

/// The `alerts` array of a wrapper object such as a webhook body.
pub(super) fn alerts_array<'a>(
    body: &'a Map<String, Value>,
    field: &str,
) -> Result<&'a [Value], NormalizeError> {
    match body.get(field) {
        None | Some(Value::Null) => Err(body_error(Some(field), "missing")),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(body_error(
            Some(field),
            format!("expected an array of alerts, found {}", kind(other)),
        )),
    }
}

/// Checks that a wrapper's `version` field is exactly `expected`.
pub(super) fn require_version(
    body: &Map<String, Value>,
    expected: &str,
    required: bool,
) -> Result<(), NormalizeError> {
    match body.get("version") {
        None | Some(Value::Null) if !required => Ok(()),
        None | Some(Value::Null) => Err(body_error(Some("version"), "missing")),
        Some(Value::String(v)) if v == expected => Ok(()),
        Some(Value::String(v)) => Err(body_error(
            Some("version"),
            format!("expected \"{expected}\", found {v:?}"),
        )),
        Some(other) => Err(body_error(
            Some("version"),
            format!("expected the string \"{expected}\", found {}", kind(other)),
        )),
    }
}

/// Whether `name` matches `[a-zA-Z_][a-zA-Z0-9_]*`, Prometheus' (and
/// Alertmanager 0.25's) label name rule.
pub(super) fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// One alert object of a payload, with its index for error messages.
pub(super) struct AlertObject<'a> {
    /// Position of the alert in the payload.
    pub index: usize,
    map: &'a Map<String, Value>,
}

impl<'a> AlertObject<'a> {
    /// Wraps the `index`-th item of a payload, which must be an object.
    pub fn new(index: usize, value: &'a Value) -> Result<Self, NormalizeError> {
        match value {
            Value::Object(map) => Ok(AlertObject { index, map }),
            other => Err(NormalizeError::Alert {
                index,
                message: format!("expected an alert object, found {}", kind(other)),
            }),
        }
    }

    /// An error about `field` of this alert.
    pub fn error(&self, field: &str, message: impl Into<String>) -> NormalizeError {
        NormalizeError::Field {
            index: self.index,
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// The value of `field`; JSON `null` reads as absent, as Go's decoder
    /// does for pointer fields.
    fn get(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    /// An optional string field.
    pub fn string(&self, field: &str) -> Result<Option<&'a str>, NormalizeError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => {
                Err(self.error(field, format!("expected a string, found {}", kind(other))))
            }
        }
    }

    /// An optional URL-ish string field; `""` reads as absent. Shared
    /// with other alerts that carry the same URL (one per alerting rule,
    /// for Prometheus).
    pub fn url(&self, field: &str) -> Result<Option<SharedStr>, NormalizeError> {
        Ok(self
            .string(field)?
            .filter(|s| !s.is_empty())
            .map(SharedStr::from))
    }

    /// The label set in `field`: required, an object of string values with
    /// valid names. Labels with an empty value are dropped first, as
    /// Alertmanager does (an empty label is the same as a missing one), and
    /// what is left must not be empty.
    pub fn labels(&self, field: &str) -> Result<StrMap, NormalizeError> {
        let Some(value) = self.get(field) else {
            return Err(self.error(field, "missing"));
        };
        let labels = self.string_map(field, value, MapKind::Labels)?;
        if labels.is_empty() {
            return Err(self.error(field, "must hold at least one label with a non-empty value"));
        }
        Ok(labels)
    }

    /// The optional annotations in `field`: an object of string values.
    /// `check_names` applies the label name rule to the keys too, as
    /// Alertmanager's API does; other formats accept any key.
    pub fn annotations(&self, field: &str, check_names: bool) -> Result<StrMap, NormalizeError> {
        match self.get(field) {
            None => Ok(StrMap::new()),
            Some(value) => self.string_map(field, value, MapKind::Annotations { check_names }),
        }
    }

    fn string_map(
        &self,
        field: &str,
        value: &Value,
        map_kind: MapKind,
    ) -> Result<StrMap, NormalizeError> {
        let check_names = match map_kind {
            MapKind::Labels => true,
            MapKind::Annotations { check_names } => check_names,
        };
        let Value::Object(map) = value else {
            return Err(self.error(
                field,
                format!("expected an object of strings, found {}", kind(value)),
            ));
        };
        // Borrowed from the parsed body and copied once, into the map.
        let mut out: Vec<(&str, &str)> = Vec::with_capacity(map.len());
        for (name, value) in map {
            let path = || format!("{field}.{name}");
            if check_names && !is_label_name(name) {
                return Err(self.error(&path(), "label name must match [a-zA-Z_][a-zA-Z0-9_]*"));
            }
            let Value::String(text) = value else {
                return Err(self.error(
                    &path(),
                    format!("expected a string value, found {}", kind(value)),
                ));
            };
            // Labels drop empty values; annotations keep theirs (an empty
            // summary is still a summary).
            if matches!(map_kind, MapKind::Labels) && text.is_empty() {
                continue;
            }
            out.push((name, text));
        }
        Ok(out.into_iter().collect())
    }

    /// An optional RFC 3339 time; absent, `null`, `""` and Go's zero time
    /// all read as `None`.
    pub fn time(&self, field: &str) -> Result<Option<OffsetDateTime>, NormalizeError> {
        match self.string(field)? {
            None => Ok(None),
            Some(text) => rfc3339(text).map_err(|message| self.error(field, message)),
        }
    }

    /// The alert's status: `"firing"` or `"resolved"`; `None` when absent.
    pub fn status(&self, field: &str) -> Result<Option<AlertStatus>, NormalizeError> {
        match self.string(field)? {
            None => Ok(None),
            Some("firing") => Ok(Some(AlertStatus::Firing)),
            Some("resolved") => Ok(Some(AlertStatus::Resolved)),
            Some(other) => Err(self.error(
                field,
                format!("expected \"firing\" or \"resolved\", found {other:?}"),
            )),
        }
    }

    /// The status, which must be present.
    pub fn required_status(&self, field: &str) -> Result<AlertStatus, NormalizeError> {
        self.status(field)?
            .ok_or_else(|| self.error(field, "missing"))
    }
}

/// Which string map is read: the rules differ only in names and empties.
#[derive(Clone, Copy)]
enum MapKind {
    /// Names must be label names; empty values are dropped.
    Labels,
    /// Any value is kept; names are checked only when asked.
    Annotations { check_names: bool },
}

/// Parses RFC 3339 text; `""` and Go's zero time read as `None`. The error
/// is the message for the field.
pub(super) fn rfc3339(text: &str) -> Result<Option<OffsetDateTime>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    let parsed = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| format!("{text:?} is not an RFC 3339 time"))?;
    Ok((parsed != GO_ZERO_TIME).then_some(parsed))
}

//! Message templates, the rules-language side: which destination settings
//! hold a template (`title`, `text`, `title_sev1`, ...), the template
//! engine configured once (minijinja: no auto-escaping, since each vendor
//! format escapes for its own markup; bounded work through fuel), and the
//! compiled templates a [`RuleSet`](crate::rules::RuleSet) carries so that
//! sending never parses. Rendering over a message is in
//! `crate::deliver::template`; the variables are documented in
//! `docs/templates.md`.

use std::collections::BTreeSet;
use std::fmt;

use minijinja::{Environment, Template, UndefinedBehavior, Value};

use crate::model::Severity;

/// The part of a message a template replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TextPart {
    /// The one-line title.
    Title,
    /// The body text.
    Text,
}

impl TextPart {
    /// Both parts.
    pub const ALL: [TextPart; 2] = [TextPart::Title, TextPart::Text];

    /// The setting for every severity (`title`, `text`).
    pub fn as_str(self) -> &'static str {
        match self {
            TextPart::Title => "title",
            TextPart::Text => "text",
        }
    }
}

/// Every destination setting that holds a template: the part for every
/// severity, then one override per severity.
pub const TEMPLATE_SETTINGS: [&str; 8] = [
    "title",
    "text",
    "title_sev1",
    "text_sev1",
    "title_sev2",
    "text_sev2",
    "title_sev3",
    "text_sev3",
];

/// The setting that holds the template of `part`, for one severity
/// (`title_sev1`) or for all (`title`).
pub fn setting_name(part: TextPart, severity: Option<Severity>) -> &'static str {
    let base = match part {
        TextPart::Title => 0,
        TextPart::Text => 1,
    };
    let offset = match severity {
        None => 0,
        Some(s) => 2 + 2 * s.index(),
    };
    TEMPLATE_SETTINGS[offset + base]
}

/// Top-level variables a template may use (see `docs/templates.md`).
pub const VARIABLES: &[&str] = &[
    "id",
    "type",
    "occurred_at",
    "destination",
    "incident",
    "alerts",
    "common_labels",
    "common_annotations",
    "explanation",
    "reason",
    "builtin",
];

/// The fields of the variables that are objects with a fixed shape.
const FIELDS: &[(&str, &[&str])] = &[
    (
        "incident",
        &[
            "id",
            "key",
            "title",
            "severity",
            "status",
            "url",
            "opened_at",
        ],
    ),
    ("builtin", &["title", "text"]),
];

/// Functions the engine provides that a template may call by name.
const GLOBALS: &[&str] = &["range", "dict", "namespace", "debug"];

/// Instructions one render may execute: ample for any message (a loop over
/// a few hundred alerts), and a hard stop for a runaway template.
pub const RENDER_FUEL: u64 = 50_000;

/// Template names inside the engine: destination and setting, joined by a
/// character that rule-file names do not contain in practice.
fn template_name(destination: &str, setting: &str) -> String {
    format!("{destination}\u{1f}{setting}")
}

/// The engine as every template is compiled and rendered: no auto-escape,
/// lenient undefined values (a missing label prints as empty, as a missing
/// label reads as the empty string in rules), `none` printed as nothing,
/// bounded fuel, and the
/// filters `truncate` and `pairs`.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_debug(true); // keeps spans, so a syntax error points into the string
    env.set_fuel(Some(RENDER_FUEL));
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    // A missing value (`incident.url` without a public address) prints as
    // nothing rather than the engine's `None`.
    env.set_formatter(|out, state, value| {
        if value.is_none() {
            Ok(())
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    env.add_filter("truncate", truncate);
    env.add_filter("pairs", pairs);
    env
}

/// `{{ text | truncate(80) }}`: at most `length` characters, the last one
/// `…` when something was cut.
fn truncate(text: String, length: usize) -> String {
    if text.chars().count() <= length {
        return text;
    }
    let mut out: String = text.chars().take(length.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `{{ common_labels | pairs }}`: a map as `key=value, key=value`, keys
/// sorted.
fn pairs(map: Value) -> Result<String, minijinja::Error> {
    let mut items = Vec::new();
    for key in map.try_iter()? {
        let value = map.get_item(&key)?;
        items.push(format!("{key}={value}"));
    }
    items.sort();
    Ok(items.join(", "))
}

/// Why a template does not compile: the engine's message and, when it knows
/// it, the byte range inside the template text.
#[derive(Clone, Debug)]
pub struct TemplateSyntaxError {
    /// What is wrong, in the engine's words.
    pub message: String,
    /// Where inside the template text (bytes), when known.
    pub range: Option<std::ops::Range<usize>>,
}

/// The compiled templates of a rule set, by destination and setting.
pub struct MessageTemplates {
    env: Environment<'static>,
    names: BTreeSet<String>,
}

impl Default for MessageTemplates {
    fn default() -> Self {
        MessageTemplates {
            env: environment(),
            names: BTreeSet::new(),
        }
    }
}

impl fmt::Debug for MessageTemplates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self
            .names
            .iter()
            .map(|n| n.replace('\u{1f}', "."))
            .collect();
        f.debug_struct("MessageTemplates")
            .field("templates", &names)
            .finish()
    }
}

impl MessageTemplates {
    /// No templates: every message uses the built-in text.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when no destination has a template.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Compiles `source` as the template of `setting` for `destination`.
    /// On success, returns the variables it uses that are not documented
    /// (`incident.nope`, `alert`), for a warning.
    pub fn add(
        &mut self,
        destination: &str,
        setting: &str,
        source: &str,
    ) -> Result<Vec<String>, TemplateSyntaxError> {
        let name = template_name(destination, setting);
        self.env
            .add_template_owned(name.clone(), source.to_string())
            .map_err(|e| TemplateSyntaxError {
                message: e.detail().unwrap_or("invalid template").to_string(),
                range: e.range(),
            })?;
        let unknown = match self.env.get_template(&name) {
            Ok(template) => undocumented(&template),
            Err(_) => Vec::new(),
        };
        self.names.insert(name);
        Ok(unknown)
    }

    /// The template for `part` of a message to `destination` about an
    /// incident at `severity`: the severity's own setting if given, else
    /// the setting for every severity. Returns the setting's name with it.
    pub fn select(
        &self,
        destination: &str,
        part: TextPart,
        severity: Severity,
    ) -> Option<(&'static str, Template<'_, '_>)> {
        [Some(severity), None].into_iter().find_map(|s| {
            let setting = setting_name(part, s);
            let name = template_name(destination, setting);
            if !self.names.contains(&name) {
                return None;
            }
            self.env.get_template(&name).ok().map(|t| (setting, t))
        })
    }
}

/// Variables the template reads that `docs/templates.md` does not document,
/// sorted.
fn undocumented(template: &Template<'_, '_>) -> Vec<String> {
    let mut unknown: Vec<String> = template
        .undeclared_variables(true)
        .into_iter()
        .filter(|path| !is_documented(path))
        .collect();
    unknown.sort();
    unknown
}

/// `incident.title` is documented; `incident.nope`, `alert` are not;
/// anything below `common_labels`, `alerts` and the like is free-form.
fn is_documented(path: &str) -> bool {
    let mut parts = path.split('.');
    let top = parts.next().unwrap_or_default();
    if GLOBALS.contains(&top) {
        return true;
    }
    if !VARIABLES.contains(&top) {
        return false;
    }
    match (FIELDS.iter().find(|(name, _)| *name == top), parts.next()) {
        (Some((_, fields)), Some(field)) => fields.contains(&field),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_names_cover_every_part_and_severity_once() {
        let mut names = Vec::new();
        for part in TextPart::ALL {
            names.push(setting_name(part, None));
            for s in Severity::ALL {
                names.push(setting_name(part, Some(s)));
            }
        }
        names.sort();
        let mut expected = TEMPLATE_SETTINGS.to_vec();
        expected.sort();
        assert_eq!(names, expected);
        assert_eq!(
            setting_name(TextPart::Text, Some(Severity::Sev2)),
            "text_sev2"
        );
    }

    #[test]
    fn a_severity_override_wins_over_the_setting_for_every_severity() {
        let mut templates = MessageTemplates::new();
        templates.add("pd", "title", "all {{ type }}").unwrap();
        templates.add("pd", "title_sev1", "one {{ type }}").unwrap();
        let (setting, _) = templates
            .select("pd", TextPart::Title, Severity::Sev1)
            .unwrap();
        assert_eq!(setting, "title_sev1");
        let (setting, _) = templates
            .select("pd", TextPart::Title, Severity::Sev2)
            .unwrap();
        assert_eq!(setting, "title");
        assert!(
            templates
                .select("pd", TextPart::Text, Severity::Sev1)
                .is_none()
        );
        assert!(
            templates
                .select("other", TextPart::Title, Severity::Sev1)
                .is_none()
        );
    }

    #[test]
    fn a_syntax_error_has_a_message_and_a_range_inside_the_template() {
        let mut templates = MessageTemplates::new();
        let source = "[{{ incident.severity }}] {{ incident.title ";
        let err = templates.add("pd", "title", source).unwrap_err();
        assert!(!err.message.is_empty());
        let range = err.range.expect("a range");
        assert!(
            range.start >= source.find("{{ incident.title").unwrap(),
            "{range:?}"
        );
        assert!(range.end <= source.len());
        assert!(templates.is_empty());
    }

    #[test]
    fn undocumented_variables_are_listed_and_documented_ones_are_not() {
        let mut templates = MessageTemplates::new();
        let unknown = templates
            .add(
                "pd",
                "text",
                "{{ incident.title }} {{ incident.sevrity }} {{ alert.labels }} \
                 {% for a in alerts %}{{ a.labels.service }}{% endfor %} \
                 {{ common_labels.team }} {{ builtin.text }} {% for i in range(3) %}{{ i }}{% endfor %}",
            )
            .unwrap();
        assert_eq!(unknown, vec!["alert.labels", "incident.sevrity"]);
    }

    #[test]
    fn the_filters_truncate_and_pair() {
        assert_eq!(truncate("abcdef".into(), 4), "abc…");
        assert_eq!(truncate("abc".into(), 4), "abc");
        let map = Value::from(minijinja::value::Serde(std::collections::BTreeMap::from([
            ("b", "2"),
            ("a", "1"),
        ])));
        assert_eq!(pairs(map).unwrap(), "a=1, b=2");
    }
}

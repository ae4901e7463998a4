//! `sevroute import sloth|pyrra|openslo FILE`: reads SLO definitions
//! written for another tool and prints the equivalent rules-language text:
//! one `slo` block per objective and the SRE Workbook's multiwindow,
//! multi-burn-rate rules for it, scaled to the SLO's period, with comments
//! naming where each came from. Pure translation (YAML in, text out); the
//! command prints, the user reviews and commits. Documented in
//! `docs/import.md`.
//!
//! The `prometheus` source reads CUMULATIVE COUNTERS, so the `rate(X[w])` /
//! `increase(X[w])` that Sloth and OpenSLO queries wrap around a counter
//! are unwrapped to `X`; a query with no counter form (a ratio, a
//! `*_over_time`, a raw error ratio) becomes `source push` with a comment
//! quoting it, and a note for stderr.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use serde::Deserialize as _;
use serde_norway::Value;
use thiserror::Error;

use crate::cli::{OK, failed, write_stdout};
use crate::rules::printer::{format_number, print_duration, quote_string};

/// The tool a file was written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportFormat {
    /// Sloth: `version: prometheus/v1` specs and the Kubernetes
    /// `PrometheusServiceLevel` resource.
    Sloth,
    /// Pyrra: the Kubernetes `ServiceLevelObjective` resource.
    Pyrra,
    /// OpenSLO v1: `SLO` documents, with inline or referenced ratio `SLI`s.
    Openslo,
}

impl ImportFormat {
    fn as_str(self) -> &'static str {
        match self {
            ImportFormat::Sloth => "sloth",
            ImportFormat::Pyrra => "pyrra",
            ImportFormat::Openslo => "openslo",
        }
    }
}

/// Why a file could not be imported: which file, which field, what is wrong.
#[derive(Debug, Error)]
pub enum ImportError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not YAML.
    #[error("{file}: not valid YAML: {message}")]
    Yaml {
        /// The file.
        file: String,
        /// The parser's message, with its line and column.
        message: String,
    },
    /// A field is missing or has the wrong shape or value.
    #[error("{file}: {field}: {message}")]
    Field {
        /// The file.
        file: String,
        /// The field's path, such as `document 1: spec.slos[0].objective`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The file as a whole cannot be imported: no document of the kind
    /// asked for, or two SLOs with one name.
    #[error("{file}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// What was looked for and what was found.
        message: String,
    },
}

/// The result of an import: the rules text and notes for the user.
#[derive(Debug)]
pub struct Imported {
    /// Rules-language text: `slo` blocks and burn rules.
    pub text: String,
    /// Things the user must know (a query that became `source push`), one
    /// line each, for stderr.
    pub notes: Vec<String>,
    /// The names of the SLOs written, in order.
    pub slos: Vec<String>,
}

/// Runs the command: prints the rules to stdout, notes to stderr.
pub fn run(format: ImportFormat, file: &Path) -> ExitCode {
    match import_file(format, file) {
        Ok(imported) => {
            for note in &imported.notes {
                eprintln!("note: {note}");
            }
            write_stdout(&imported.text);
            OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            failed()
        }
    }
}

/// Reads `file` and translates it.
pub fn import_file(format: ImportFormat, file: &Path) -> Result<Imported, ImportError> {
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|source| ImportError::Read {
        file: name.clone(),
        source,
    })?;
    import_str(format, &name, &text)
}

/// Translates YAML `text` (one or more documents) read from `file`.
pub fn import_str(format: ImportFormat, file: &str, text: &str) -> Result<Imported, ImportError> {
    let mut docs = Vec::new();
    for doc in serde_norway::Deserializer::from_str(text) {
        let value = Value::deserialize(doc).map_err(|e| ImportError::Yaml {
            file: file.to_string(),
            message: e.to_string(),
        })?;
        docs.push(value);
    }
    let multi = docs.len() > 1;
    let mut ctx = Ctx {
        file: file.to_string(),
        slos: Vec::new(),
        notes: Vec::new(),
    };
    let slis = match format {
        ImportFormat::Openslo => openslo_slis(&ctx, &docs, multi)?,
        _ => Vec::new(),
    };
    let mut kinds_seen = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        if doc.is_null() {
            continue;
        }
        let root = Node::root(
            doc,
            if multi {
                format!("document {}: ", i + 1)
            } else {
                String::new()
            },
        );
        kinds_seen.push(describe_kind(doc));
        match format {
            ImportFormat::Sloth => sloth(&mut ctx, &root)?,
            ImportFormat::Pyrra => pyrra(&mut ctx, &root)?,
            ImportFormat::Openslo => openslo(&mut ctx, &root, &slis)?,
        }
    }
    if ctx.slos.is_empty() {
        let wanted = match format {
            ImportFormat::Sloth => {
                "a Sloth spec (`version: prometheus/v1`, or `kind: PrometheusServiceLevel`)"
            }
            ImportFormat::Pyrra => "a Pyrra `kind: ServiceLevelObjective`",
            ImportFormat::Openslo => "an OpenSLO `apiVersion: openslo/v1`, `kind: SLO`",
        };
        let found = if kinds_seen.is_empty() {
            "the file has no YAML documents".to_string()
        } else {
            format!("found {}", kinds_seen.join(", "))
        };
        return Err(ImportError::Invalid {
            file: file.to_string(),
            message: format!("no SLO to import: expected {wanted}; {found}"),
        });
    }
    Ok(render(format, &ctx))
}

/// `kind: X` (apiVersion) or `version: X`, for the "found ..." message.
fn describe_kind(doc: &Value) -> String {
    let get = |k: &str| doc.get(k).and_then(Value::as_str);
    match (get("apiVersion"), get("kind"), get("version")) {
        (Some(api), Some(kind), _) => format!("`{api}` `{kind}`"),
        (None, Some(kind), _) => format!("`kind: {kind}`"),
        (_, None, Some(version)) => format!("`version: {version}`"),
        _ => "a document without `kind` or `version`".to_string(),
    }
}

/// Where events come from, after translation.
#[derive(Debug)]
enum Source {
    /// Both queries read as cumulative counters.
    Prometheus { errors: String, total: String },
    /// No counter form: pushed counts, with why.
    Push { why: Vec<String> },
}

/// One SLO to print.
#[derive(Debug)]
struct SloOut {
    name: String,
    /// Objective in percent, in (0, 100).
    objective_percent: f64,
    period_secs: u64,
    source: Source,
    /// Comment lines naming the origin.
    origin: Vec<String>,
}

struct Ctx {
    file: String,
    slos: Vec<SloOut>,
    notes: Vec<String>,
}

impl Ctx {
    fn push(&mut self, slo: SloOut) -> Result<(), ImportError> {
        if let Some(first) = self.slos.iter().find(|s| s.name == slo.name) {
            return Err(ImportError::Invalid {
                file: self.file.clone(),
                message: format!(
                    "two SLOs would both be named {:?} ({} and {}); SLO names must be unique",
                    slo.name,
                    first.origin.first().map(String::as_str).unwrap_or(""),
                    slo.origin.first().map(String::as_str).unwrap_or("")
                ),
            });
        }
        if let Source::Push { why } = &slo.source {
            self.notes.push(format!(
                "{}: SLO {:?} uses `source push`: {}",
                self.file,
                slo.name,
                why.first().map(|w| w.trim_end_matches(':')).unwrap_or("")
            ));
        }
        self.slos.push(slo);
        Ok(())
    }
}

/// A YAML value with the path that led to it, for error messages.
#[derive(Clone)]
struct Node<'a> {
    value: &'a Value,
    /// `document 2: ` when the file has several documents.
    doc: String,
    /// `spec.slos[0].objective`.
    path: String,
}

impl<'a> Node<'a> {
    fn root(value: &'a Value, doc: String) -> Self {
        Node {
            value,
            doc,
            path: String::new(),
        }
    }

    fn child(&self, value: &'a Value, segment: String) -> Node<'a> {
        let path = if self.path.is_empty() || segment.starts_with('[') {
            format!("{}{segment}", self.path)
        } else {
            format!("{}.{segment}", self.path)
        };
        Node {
            value,
            doc: self.doc.clone(),
            path,
        }
    }

    /// ` (document 2)` for a file of several documents, else nothing.
    fn document(&self) -> String {
        let doc = self.doc.trim_end_matches([':', ' ']);
        if doc.is_empty() {
            String::new()
        } else {
            format!(" ({doc})")
        }
    }

    fn error(&self, ctx: &Ctx, message: impl Into<String>) -> ImportError {
        ImportError::Field {
            file: ctx.file.clone(),
            field: format!(
                "{}{}",
                self.doc,
                if self.path.is_empty() {
                    "(top level)"
                } else {
                    self.path.as_str()
                }
            ),
            message: message.into(),
        }
    }

    /// The field `key`, if present and not null.
    fn get(&self, key: &str) -> Option<Node<'a>> {
        self.value
            .get(key)
            .filter(|v| !v.is_null())
            .map(|v| self.child(v, key.to_string()))
    }

    /// The field `key`, or an error naming it.
    fn req(&self, ctx: &Ctx, key: &str) -> Result<Node<'a>, ImportError> {
        self.get(key).ok_or_else(|| {
            self.child(&Value::Null, key.to_string())
                .error(ctx, "missing (required)")
        })
    }

    fn str(&self, ctx: &Ctx) -> Result<&'a str, ImportError> {
        self.value.as_str().ok_or_else(|| {
            self.error(
                ctx,
                format!("expected a string, found {}", shape(self.value)),
            )
        })
    }

    fn non_empty_str(&self, ctx: &Ctx) -> Result<&'a str, ImportError> {
        let s = self.str(ctx)?;
        if s.trim().is_empty() {
            return Err(self.error(ctx, "is empty"));
        }
        Ok(s.trim())
    }

    /// A number, or a string holding one (Pyrra writes `target: "99.5"`).
    fn number(&self, ctx: &Ctx) -> Result<f64, ImportError> {
        let n = match self.value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        n.filter(|n| n.is_finite()).ok_or_else(|| {
            self.error(
                ctx,
                format!("expected a number, found {}", shape(self.value)),
            )
        })
    }

    fn seq(&self, ctx: &Ctx) -> Result<Vec<Node<'a>>, ImportError> {
        let items = self.value.as_sequence().ok_or_else(|| {
            self.error(ctx, format!("expected a list, found {}", shape(self.value)))
        })?;
        Ok(items
            .iter()
            .enumerate()
            .map(|(i, v)| self.child(v, format!("[{i}]")))
            .collect())
    }

    fn string_list(&self, ctx: &Ctx) -> Result<Vec<String>, ImportError> {
        self.seq(ctx)?
            .iter()
            .map(|n| n.non_empty_str(ctx).map(str::to_string))
            .collect()
    }
}

/// How a value looks, for "expected X, found Y".
fn shape(value: &Value) -> String {
    match value {
        Value::Null => "nothing".to_string(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Sequence(_) => "a list".to_string(),
        Value::Mapping(_) => "a mapping".to_string(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// An objective in percent, checked to be strictly between 0 and 100.
fn percent(ctx: &Ctx, node: &Node<'_>, value: f64) -> Result<f64, ImportError> {
    if value > 0.0 && value < 100.0 {
        Ok(value)
    } else {
        Err(node.error(
            ctx,
            format!("objective {value}% is not strictly between 0% and 100%"),
        ))
    }
}

/// A Prometheus/OpenSLO duration (`30d`, `2w`, `28d`, `1h30m`, `1M`) in
/// seconds. Months, quarters and years are 30, 90 and 365 days.
fn duration(ctx: &Ctx, node: &Node<'_>) -> Result<u64, ImportError> {
    let text = node.non_empty_str(ctx)?;
    let bad = |why: &str| node.error(ctx, format!("invalid duration {text:?}: {why}"));
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad(
                "expected a number followed by a unit (s, m, h, d, w, M, Q, Y)",
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| bad("number too large"))?;
        rest = &rest[digits..];
        if rest.starts_with("ms") {
            return Err(bad("milliseconds are too short for an SLO period"));
        }
        let mult: u64 = match rest.chars().next() {
            Some('s') => 1,
            Some('m') => 60,
            Some('h') => 3_600,
            Some('d') => 86_400,
            Some('w') => 7 * 86_400,
            Some('M') => 30 * 86_400,
            Some('Q') => 90 * 86_400,
            Some('Y' | 'y') => 365 * 86_400,
            Some(c) => return Err(bad(&format!("unknown unit `{c}`"))),
            None => return Err(bad("missing unit")),
        };
        rest = &rest[1..]; // every accepted unit is one ASCII byte
        total = n
            .checked_mul(mult)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| bad("too long"))?;
    }
    if total == 0 {
        return Err(bad("zero"));
    }
    Ok(total)
}

/// The `description` field as one comment line, when there is one.
fn description(node: &Node<'_>) -> Option<String> {
    let text = node.get("description")?.value.as_str()?;
    Some(comment_text(text)).filter(|t| !t.is_empty())
}

/// One line of text fit for a `#` comment.
fn comment_text(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------------------
// Sloth
// ---------------------------------------------------------------------------

/// Sloth's SLO period when the spec does not say (Sloth's own default).
const SLOTH_DEFAULT_PERIOD_SECS: u64 = 30 * 86_400;

fn sloth(ctx: &mut Ctx, root: &Node<'_>) -> Result<(), ImportError> {
    let version = root.get("version").and_then(|n| n.value.as_str());
    let kind = root.get("kind").and_then(|n| n.value.as_str());
    // prometheus/v1 uses snake_case keys; the Kubernetes CRD camelCase.
    let (spec, crd) = match (version, kind) {
        (Some("prometheus/v1"), _) => (root.clone(), false),
        (_, Some("PrometheusServiceLevel")) => (root.req(ctx, "spec")?, true),
        (Some(other), _) => {
            return Err(root.req(ctx, "version")?.error(
                ctx,
                format!("unsupported Sloth spec version {other:?}; expected \"prometheus/v1\""),
            ));
        }
        _ => return Ok(()), // another kind of document
    };
    let key = |snake: &'static str, camel: &'static str| if crd { camel } else { snake };
    let service = spec.req(ctx, "service")?.non_empty_str(ctx)?;
    for slo in spec.req(ctx, "slos")?.seq(ctx)? {
        let name = slo.req(ctx, "name")?.non_empty_str(ctx)?;
        let objective_node = slo.req(ctx, "objective")?;
        let objective = percent(ctx, &objective_node, objective_node.number(ctx)?)?;
        let sli = slo.req(ctx, "sli")?;
        let full_name = format!("{service}-{name}");
        let mut origin = vec![format!(
            "From Sloth service {service:?}, SLO {name:?} ({}{}).",
            root.doc, slo.path
        )];
        if let Some(d) = description(&slo) {
            origin.push(d);
        }
        origin.push("Sloth specs carry no period: Sloth's default, 30d, is used.".to_string());
        let source = if let Some(events) = sli.get("events") {
            let errors = events
                .req(ctx, key("error_query", "errorQuery"))?
                .non_empty_str(ctx)?;
            let total = events
                .req(ctx, key("total_query", "totalQuery"))?
                .non_empty_str(ctx)?;
            counter_source(errors, total)
        } else if let Some(raw) = sli.get("raw") {
            let ratio = raw
                .req(ctx, key("error_ratio_query", "errorRatioQuery"))?
                .non_empty_str(ctx)?;
            Source::Push {
                why: vec![
                    "a raw error-ratio query has no counter form (sevroute needs error and total counts):".to_string(),
                    format!("  {}", comment_text(ratio)),
                ],
            }
        } else if let Some(plugin) = sli.get("plugin") {
            let id = plugin
                .get("id")
                .and_then(|n| n.value.as_str())
                .unwrap_or("?");
            Source::Push {
                why: vec![format!(
                    "the SLI comes from the Sloth plugin {id:?}, whose queries only Sloth can expand"
                )],
            }
        } else {
            return Err(sli.error(ctx, "expected `events`, `raw` or `plugin`"));
        };
        ctx.push(SloOut {
            name: full_name,
            objective_percent: objective,
            period_secs: SLOTH_DEFAULT_PERIOD_SECS,
            source,
            origin,
        })?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Pyrra
// ---------------------------------------------------------------------------

fn pyrra(ctx: &mut Ctx, root: &Node<'_>) -> Result<(), ImportError> {
    if root.get("kind").and_then(|n| n.value.as_str()) != Some("ServiceLevelObjective") {
        return Ok(());
    }
    let metadata = root.req(ctx, "metadata")?;
    let name = metadata.req(ctx, "name")?.non_empty_str(ctx)?;
    let spec = root.req(ctx, "spec")?;
    let target = spec.req(ctx, "target")?;
    let objective = percent(ctx, &target, target.number(ctx)?)?;
    let period_secs = duration(ctx, &spec.req(ctx, "window")?)?;
    let indicator = spec.req(ctx, "indicator")?;
    let mut origin = vec![format!(
        "From Pyrra ServiceLevelObjective {name:?}{}{}.",
        metadata
            .get("namespace")
            .and_then(|n| n.value.as_str())
            .map(|ns| format!(" in namespace {ns:?}"))
            .unwrap_or_default(),
        root.document()
    )];
    if let Some(d) = description(&spec) {
        origin.push(d);
    }
    let grouping = |node: &Node<'_>| -> Result<Vec<String>, ImportError> {
        match node.get("grouping") {
            Some(g) => g.string_list(ctx),
            None => Ok(Vec::new()),
        }
    };
    let source = if let Some(ratio) = indicator.get("ratio") {
        let by = grouping(&ratio)?;
        let errors = pyrra_metric(ctx, &ratio.req(ctx, "errors")?)?;
        let total = pyrra_metric(ctx, &ratio.req(ctx, "total")?)?;
        if !by.is_empty() {
            origin.push(format!(
                "Pyrra groups by {}: the queries return one series per group.",
                by.join(", ")
            ));
        }
        Source::Prometheus {
            errors: summed(&errors, &by),
            total: summed(&total, &by),
        }
    } else if let Some(latency) = indicator.get("latency") {
        let by = grouping(&latency)?;
        let success = pyrra_metric(ctx, &latency.req(ctx, "success")?)?;
        let total = pyrra_metric(ctx, &latency.req(ctx, "total")?)?;
        origin.push(
            "Latency SLI: errors are the requests slower than the bucket, total minus success."
                .to_string(),
        );
        Source::Prometheus {
            errors: format!("{} - {}", summed(&total, &by), summed(&success, &by)),
            total: summed(&total, &by),
        }
    } else {
        let kind = indicator
            .value
            .as_mapping()
            .and_then(|m| m.keys().next())
            .and_then(Value::as_str)
            .unwrap_or("?");
        Source::Push {
            why: vec![format!(
                "Pyrra's `{kind}` indicator has no error and total counter selectors (only `ratio` and `latency` translate)"
            )],
        }
    };
    ctx.push(SloOut {
        name: name.to_string(),
        objective_percent: objective,
        period_secs,
        source,
        origin,
    })
}

/// `errors: { metric: SELECTOR }`: the selector, checked to be one.
fn pyrra_metric(ctx: &Ctx, node: &Node<'_>) -> Result<String, ImportError> {
    let metric = node.req(ctx, "metric")?;
    let selector = metric.non_empty_str(ctx)?;
    if !is_selector(selector) {
        return Err(metric.error(
            ctx,
            format!("expected a counter selector such as http_requests_total{{code=~\"5..\"}}, found {selector:?}"),
        ));
    }
    Ok(selector.to_string())
}

/// `sum(X)`, or `sum by (a, b) (X)` when grouped.
fn summed(selector: &str, by: &[String]) -> String {
    if by.is_empty() {
        format!("sum({selector})")
    } else {
        format!("sum by ({}) ({selector})", by.join(", "))
    }
}

// ---------------------------------------------------------------------------
// OpenSLO
// ---------------------------------------------------------------------------

/// A named `kind: SLI` document.
struct NamedSli<'a> {
    name: String,
    spec: Node<'a>,
}

fn is_openslo_v1(doc: &Value) -> bool {
    doc.get("apiVersion").and_then(Value::as_str) == Some("openslo/v1")
}

fn openslo_slis<'a>(
    ctx: &Ctx,
    docs: &'a [Value],
    multi: bool,
) -> Result<Vec<NamedSli<'a>>, ImportError> {
    let mut slis = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        if is_openslo_v1(doc) && doc.get("kind").and_then(Value::as_str) == Some("SLI") {
            let root = Node::root(
                doc,
                if multi {
                    format!("document {}: ", i + 1)
                } else {
                    String::new()
                },
            );
            let name = root
                .req(ctx, "metadata")?
                .req(ctx, "name")?
                .non_empty_str(ctx)?;
            slis.push(NamedSli {
                name: name.to_string(),
                spec: root.req(ctx, "spec")?,
            });
        }
    }
    Ok(slis)
}

fn openslo<'a>(ctx: &mut Ctx, root: &Node<'a>, slis: &[NamedSli<'a>]) -> Result<(), ImportError> {
    if root.get("kind").and_then(|n| n.value.as_str()) != Some("SLO") {
        return Ok(());
    }
    if !is_openslo_v1(root.value) {
        let found = root
            .get("apiVersion")
            .and_then(|n| n.value.as_str())
            .unwrap_or("none");
        return Err(root
            .child(&Value::Null, "apiVersion".to_string())
            .error(ctx, format!("expected \"openslo/v1\", found {found:?}")));
    }
    let name = root
        .req(ctx, "metadata")?
        .req(ctx, "name")?
        .non_empty_str(ctx)?;
    let spec = root.req(ctx, "spec")?;

    let windows_node = spec.req(ctx, "timeWindow")?;
    let windows = windows_node.seq(ctx)?;
    let window = windows
        .first()
        .ok_or_else(|| windows_node.error(ctx, "is empty"))?;
    let period_secs = duration(ctx, &window.req(ctx, "duration")?)?;

    let mut origin = vec![format!("From OpenSLO SLO {name:?}{}.", root.document())];
    if let Some(d) = description(&spec) {
        origin.push(d);
    }
    let rolling = window
        .get("isRolling")
        .and_then(|n| n.value.as_bool())
        .unwrap_or(false);
    if !rolling || window.get("calendar").is_some() {
        origin.push("The calendar-aligned window is imported as a rolling period.".to_string());
    }
    let method = spec.get("budgetingMethod").and_then(|n| n.value.as_str());
    if let Some(method) = method.filter(|m| *m != "Occurrences") {
        origin.push(format!(
            "The budgeting method {method:?} is imported as Occurrences (sevroute counts events)."
        ));
    }

    let slo_indicator = spec
        .get("indicator")
        .map(|i| i.req(ctx, "spec"))
        .transpose()?;
    let slo_indicator = match (slo_indicator, spec.get("indicatorRef")) {
        (Some(i), _) => Some(i),
        (None, Some(r)) => Some(lookup_sli(ctx, &r, slis)?),
        (None, None) => None,
    };

    let objectives = spec.req(ctx, "objectives")?.seq(ctx)?;
    if objectives.is_empty() {
        return Err(spec.req(ctx, "objectives")?.error(ctx, "is empty"));
    }
    for (i, objective) in objectives.iter().enumerate() {
        let percent_value = if let Some(t) = objective.get("target") {
            let fraction = t.number(ctx)?;
            percent(ctx, &t, fraction * 100.0)?
        } else if let Some(t) = objective.get("targetPercent") {
            percent(ctx, &t, t.number(ctx)?)?
        } else {
            return Err(objective.error(
                ctx,
                "missing `target` (a fraction such as 0.995) or `targetPercent`",
            ));
        };
        // A composite SLO's objective may carry its own indicator.
        let indicator = match (objective.get("indicator"), objective.get("indicatorRef")) {
            (Some(i), _) => i.req(ctx, "spec")?,
            (None, Some(r)) => lookup_sli(ctx, &r, slis)?,
            (None, None) => slo_indicator
                .clone()
                .ok_or_else(|| spec.error(ctx, "missing `indicator` or `indicatorRef`"))?,
        };
        let slo_name = if objectives.len() == 1 {
            name.to_string()
        } else {
            let label = objective
                .get("name")
                .or_else(|| objective.get("displayName"))
                .and_then(|n| n.value.as_str())
                .map(slug)
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| (i + 1).to_string());
            format!("{name}-{label}")
        };
        let mut origin = origin.clone();
        if objectives.len() > 1 {
            origin.push(format!("Objective {} ({}).", i + 1, objective.path));
        }
        let source = openslo_source(ctx, &indicator)?;
        ctx.push(SloOut {
            name: slo_name,
            objective_percent: percent_value,
            period_secs,
            source,
            origin,
        })?;
    }
    Ok(())
}

fn lookup_sli<'a>(
    ctx: &Ctx,
    reference: &Node<'_>,
    slis: &[NamedSli<'a>],
) -> Result<Node<'a>, ImportError> {
    let wanted = reference.non_empty_str(ctx)?;
    slis.iter()
        .find(|s| s.name == wanted)
        .map(|s| s.spec.clone())
        .ok_or_else(|| {
            reference.error(
                ctx,
                format!("no `kind: SLI` document named {wanted:?} in this file"),
            )
        })
}

/// Lower-case letters, digits and `-`, for a name suffix.
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

fn openslo_source(ctx: &Ctx, indicator: &Node<'_>) -> Result<Source, ImportError> {
    let Some(ratio) = indicator.get("ratioMetric") else {
        let kind = if indicator.get("thresholdMetric").is_some() {
            "a threshold metric"
        } else {
            "no ratio metric"
        };
        return Ok(Source::Push {
            why: vec![format!(
                "the indicator has {kind}; only `ratioMetric` translates to error and total counts"
            )],
        });
    };
    let query = |key: &str| -> Result<Option<String>, ImportError> {
        let Some(metric) = ratio.get(key) else {
            return Ok(None);
        };
        let source = metric.req(ctx, "metricSource")?;
        let kind = source
            .get("type")
            .and_then(|n| n.value.as_str())
            .unwrap_or("Prometheus");
        if !kind.eq_ignore_ascii_case("prometheus") {
            return Err(source
                .req(ctx, "type")?
                .error(ctx, format!("metric source {kind:?} is not Prometheus")));
        }
        let spec = source.req(ctx, "spec")?;
        let q = match (spec.get("query"), spec.get("promql")) {
            (Some(q), _) | (None, Some(q)) => q.non_empty_str(ctx)?,
            (None, None) => return Err(spec.error(ctx, "missing `query` (the PromQL expression)")),
        };
        Ok(Some(q.to_string()))
    };
    if ratio.get("raw").is_some() {
        return Ok(Source::Push {
            why: vec![
                "a raw ratio metric has no counter form (sevroute needs error and total counts)"
                    .to_string(),
            ],
        });
    }
    let total = query("total")?.ok_or_else(|| ratio.error(ctx, "missing `total`"))?;
    let counter = ratio
        .get("counter")
        .and_then(|n| n.value.as_bool())
        .unwrap_or(false);
    let (errors, good) = match (query("bad")?, query("good")?) {
        (Some(bad), _) => (bad, false),
        (None, Some(good)) => (good, true),
        (None, None) => return Err(ratio.error(ctx, "missing `good` or `bad`")),
    };
    if !counter {
        return Ok(Source::Push {
            why: vec![
                "the ratio metric is not marked `counter: true`, so its queries are not cumulative counts:".to_string(),
                format!("  total: {}", comment_text(&total)),
            ],
        });
    }
    Ok(match counter_source(&errors, &total) {
        Source::Prometheus { errors, total } if good => Source::Prometheus {
            errors: format!("{} - {}", parenthesized(&total), parenthesized(&errors)),
            total,
        },
        other => other,
    })
}

// ---------------------------------------------------------------------------
// PromQL: from rate()/increase() to the counter
// ---------------------------------------------------------------------------

/// Both queries as counters, or `source push` with why.
fn counter_source(errors: &str, total: &str) -> Source {
    match (counter_query(errors), counter_query(total)) {
        (Ok(errors), Ok(total)) => Source::Prometheus { errors, total },
        (Err(why), _) => push_because("error", errors, why),
        (_, Err(why)) => push_because("total", total, why),
    }
}

fn push_because(which: &str, query: &str, why: String) -> Source {
    Source::Push {
        why: vec![
            format!("the {which} query has no cumulative-counter form ({why}):"),
            format!("  {}", comment_text(query)),
        ],
    }
}

/// Functions whose counter argument is unwrapped: over a counter they give
/// a per-window rate or increase, which sevroute computes itself from the
/// counter.
const RATE_FUNCTIONS: &[&str] = &["rate", "irate", "increase"];

/// `sum(rate(x{a="b"}[{{.window}}]))` -> `sum(x{a="b"})`. Refuses what has
/// no counter form: other range functions, subqueries, offsets inside a
/// rate, template placeholders left over, and `*`, `/`, `%`, `^`, which do
/// not keep a sum of counters a counter.
fn counter_query(query: &str) -> Result<String, String> {
    let q = query.trim();
    let mut out = String::with_capacity(q.len());
    let mut i = 0;
    while i < q.len() {
        let rest = &q[i..];
        let c = rest.chars().next().unwrap_or(' ');
        if matches!(c, '"' | '\'' | '`') {
            let end = string_end(rest).ok_or("an unterminated string")?;
            out.push_str(&rest[..end]);
            i += end;
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let len = rest
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == ':'))
                .unwrap_or(rest.len());
            let ident = &rest[..len];
            let after = rest[len..].trim_start();
            if RATE_FUNCTIONS.contains(&ident) && after.starts_with('(') {
                let open = q.len() - after.len();
                let close = matching_paren(q, open).ok_or("unbalanced parentheses")?;
                let selector = rate_argument(&q[open + 1..close]).ok_or_else(|| {
                    format!(
                        "`{ident}(...)` over something other than a counter selector with a range"
                    )
                })?;
                out.push_str(selector);
                i = close + 1;
            } else {
                out.push_str(ident);
                i += len;
            }
        } else if (c == '{' && rest.starts_with("{{")) || c == '$' {
            return Err("a template placeholder outside rate()/increase()".to_string());
        } else if c == '{' {
            // Label matchers: copy through to the closing brace, strings intact.
            let end = braces_end(rest).ok_or("unbalanced braces")?;
            out.push_str(&rest[..end]);
            i += end;
        } else if c == '[' {
            return Err(
                "a range or subquery outside rate()/increase(), such as a *_over_time function"
                    .to_string(),
            );
        } else if matches!(c, '*' | '/' | '%' | '^') {
            return Err(format!(
                "the operator `{c}`: a product or ratio of counters is not a counter"
            ));
        } else {
            out.push(c);
            i += c.len_utf8();
        }
    }
    if out.trim().is_empty() {
        return Err("the query is empty".to_string());
    }
    Ok(out)
}

/// `x{a="b"}[5m]` -> `x{a="b"}`; `None` for anything else.
fn rate_argument(inner: &str) -> Option<&str> {
    let inner = inner.trim();
    let body = inner.strip_suffix(']')?;
    let open = body.rfind('[')?;
    let range = &body[open + 1..];
    if range.contains(':') || range.contains(']') {
        return None; // a subquery
    }
    let selector = body[..open].trim();
    is_selector(selector).then_some(selector)
}

/// A plain instant-vector selector: `name`, `name{...}` or `{...}`.
fn is_selector(text: &str) -> bool {
    let name_len = text
        .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == ':'))
        .unwrap_or(text.len());
    let (name, rest) = text.split_at(name_len);
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        return false;
    }
    if rest.is_empty() {
        return !name.is_empty();
    }
    rest.starts_with('{') && braces_end(rest) == Some(rest.len())
}

/// The byte just past the string literal `text` starts with.
fn string_end(text: &str) -> Option<usize> {
    let quote = text.chars().next()?;
    let mut escaped = false;
    for (i, c) in text.char_indices().skip(1) {
        if escaped {
            escaped = false;
        } else if c == '\\' && quote != '`' {
            escaped = true;
        } else if c == quote {
            return Some(i + 1);
        }
    }
    None
}

/// The byte just past the `}` closing the `{` that `text` starts with.
fn braces_end(text: &str) -> Option<usize> {
    let mut i = 1;
    while i < text.len() {
        let rest = &text[i..];
        let c = rest.chars().next()?;
        match c {
            '"' | '\'' | '`' => i += string_end(rest)?,
            '}' => return Some(i + 1),
            '{' => return None,
            c => i += c.len_utf8(),
        }
    }
    None
}

/// The index of the `)` matching the `(` at `open`.
fn matching_paren(text: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    while i < text.len() {
        let rest = &text[i..];
        let c = rest.chars().next()?;
        match c {
            '"' | '\'' | '`' => {
                i += string_end(rest)?;
                continue;
            }
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += c.len_utf8();
    }
    None
}

/// `q` in parentheses when it has a top-level `+` or `-`, so it can be
/// subtracted from.
fn parenthesized(q: &str) -> String {
    let mut depth = 0i32;
    let mut i = 0;
    let mut top_level_sum = false;
    while i < q.len() {
        let rest = &q[i..];
        let c = rest.chars().next().unwrap_or(' ');
        match c {
            '"' | '\'' | '`' => {
                i += string_end(rest).unwrap_or(rest.len());
                continue;
            }
            '(' | '{' => depth += 1,
            ')' | '}' => depth -= 1,
            '+' | '-' if depth == 0 => top_level_sum = true,
            _ => {}
        }
        i += c.len_utf8();
    }
    if top_level_sum {
        format!("({q})")
    } else {
        q.to_string()
    }
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

/// An objective in percent as written: `99.9`, `99.999` (never rounded to
/// 100, which would leave no budget), without float noise such as
/// `99.49999999999999`.
fn percent_text(percent: f64) -> String {
    let rounded = (percent * 1e9).round() / 1e9;
    format!("{rounded}")
}

/// One tier of the SRE Workbook's multiwindow, multi-burn-rate alerts.
struct Tier {
    /// Share of the period's budget spent over the long window.
    budget_share: f64,
    long_secs: u64,
    short_secs: u64,
    severity: &'static str,
    rule_suffix: &'static str,
}

/// The tiers of `rules/rules.sev`: for a 30-day period they are burns of
/// 14.4, 6 and 1.
const TIERS: [Tier; 3] = [
    Tier {
        budget_share: 0.02,
        long_secs: 3_600,
        short_secs: 300,
        severity: "SEV1",
        rule_suffix: "fast burn",
    },
    Tier {
        budget_share: 0.05,
        long_secs: 6 * 3_600,
        short_secs: 1_800,
        severity: "SEV2",
        rule_suffix: "sustained burn",
    },
    Tier {
        budget_share: 0.10,
        long_secs: 3 * 86_400,
        short_secs: 6 * 3_600,
        severity: "SEV3",
        rule_suffix: "slow burn",
    },
];

/// The burn threshold that spends `budget_share` of the budget over the
/// long window: burn × window / period = share. Rounded as printed.
fn threshold(tier: &Tier, period_secs: u64) -> f64 {
    let raw = tier.budget_share * period_secs as f64 / tier.long_secs as f64;
    format_number(raw).parse().unwrap_or(raw)
}

fn render(format: ImportFormat, ctx: &Ctx) -> Imported {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Imported by `sevroute import {}` from {}.",
        format.as_str(),
        comment_text(&ctx.file)
    );
    out.push_str(
        "# The burn rules name SEV1, SEV2 and SEV3: add this file to a rule set\n\
         # whose severities say who is paged and notified (docs/import.md).\n",
    );
    for slo in &ctx.slos {
        out.push('\n');
        for line in &slo.origin {
            let _ = writeln!(out, "# {line}");
        }
        if let Source::Push { why } = &slo.source {
            out.push_str("# This SLO takes pushed counts (`source push`) because\n");
            for line in why {
                let _ = writeln!(out, "# {line}");
            }
            let _ = writeln!(
                out,
                "# Post good/total counts to /api/v1/slos/{}/events, or write counter\n\
                 # queries and use `source prometheus {{ errors \"...\" total \"...\" }}`.",
                slo.name
            );
        }
        let name = quote_string(&slo.name);
        let _ = writeln!(out, "slo {name} {{");
        let _ = writeln!(out, "  objective {}%", percent_text(slo.objective_percent));
        let _ = writeln!(out, "  period    {}", print_duration(slo.period_secs));
        match &slo.source {
            Source::Push { .. } => out.push_str("  source    push\n"),
            Source::Prometheus { errors, total } => {
                out.push_str("  source    prometheus {\n");
                let _ = writeln!(out, "    errors {}", quote_string(errors));
                let _ = writeln!(out, "    total  {}", quote_string(total));
                out.push_str("  }\n");
            }
        }
        out.push_str("}\n\n");
        let max_burn = 100.0 / (100.0 - slo.objective_percent);
        let period = print_duration(slo.period_secs);
        let _ = writeln!(
            out,
            "# Multiwindow, multi-burn-rate rules (SRE Workbook) for a {period} period:\n\
             # 2% of the budget spent in 1h -> SEV1, 5% in 6h -> SEV2, 10% in 3d -> SEV3."
        );
        for tier in &TIERS {
            let long = print_duration(tier.long_secs);
            let short = print_duration(tier.short_secs);
            let k = threshold(tier, slo.period_secs);
            if tier.long_secs > slo.period_secs {
                let _ = writeln!(
                    out,
                    "# No {} rule: its {long} window is longer than the {period} period.",
                    tier.severity
                );
                continue;
            }
            if k >= max_burn {
                let _ = writeln!(
                    out,
                    "# No {} rule: burn {} is unreachable for a {}% objective (at most {}).",
                    tier.severity,
                    format_number(k),
                    percent_text(slo.objective_percent),
                    format_number(max_burn)
                );
                continue;
            }
            let k = format_number(k);
            let _ = writeln!(
                out,
                "rule {} {{",
                quote_string(&format!("{} {}", slo.name, tier.rule_suffix))
            );
            let _ = writeln!(out, "  when burn({name}, {long}) > {k}");
            let _ = writeln!(out, "   and burn({name}, {short}) > {k}");
            let _ = writeln!(out, "  then {}", tier.severity);
            out.push_str("}\n");
        }
    }
    Imported {
        text: out,
        notes: ctx.notes.clone(),
        slos: ctx.slos.iter().map(|s| s.name.clone()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_increase_unwrap_to_the_counter() {
        let cases = [
            (
                r#"sum(rate(http_requests_total{code=~"(5..|429)"}[{{.window}}]))"#,
                r#"sum(http_requests_total{code=~"(5..|429)"})"#,
            ),
            (
                "sum(increase(x_total[5m])) by (job)",
                "sum(x_total) by (job)",
            ),
            (
                r#"sum(rate(a_total{re=~"5[0-9]{2}"}[1h])) - sum(irate(b_total[5m]))"#,
                r#"sum(a_total{re=~"5[0-9]{2}"}) - sum(b_total)"#,
            ),
            ("sum(requests_total)", "sum(requests_total)"),
            (
                r#"rate({__name__="x", a="}"}[$window])"#,
                r#"{__name__="x", a="}"}"#,
            ),
        ];
        for (query, expected) in cases {
            assert_eq!(counter_query(query).as_deref(), Ok(expected), "{query}");
        }
    }

    #[test]
    fn queries_without_a_counter_form_are_refused_with_why() {
        let cases = [
            ("sum(rate(a[5m])) / sum(rate(b[5m]))", "`/`"),
            ("sum_over_time(x[5m])", "outside rate"),
            ("rate(rate(x[5m])[1h:])", "rate(...)"),
            ("rate(x[5m] offset 1h)", "rate(...)"),
            ("sum(x{a=\"b\"}[{{.window}}])", "outside rate"),
            ("sum(rate(x[5m]", "unbalanced"),
            ("   ", "empty"),
        ];
        for (query, why) in cases {
            let err = counter_query(query).expect_err(query);
            assert!(err.contains(why), "{query}: {err}");
        }
    }

    #[test]
    fn thresholds_scale_with_the_period() {
        let day = 86_400;
        let burns =
            |days: u64| -> Vec<f64> { TIERS.iter().map(|t| threshold(t, days * day)).collect() };
        assert_eq!(burns(30), vec![14.4, 6.0, 1.0]);
        assert_eq!(burns(28), vec![13.44, 5.6, 0.9333]);
        assert_eq!(burns(14), vec![6.72, 2.8, 0.4667]);
    }

    /// Loads imported text with three severity blocks, as a user adds it
    /// to a rule set: the codes of every diagnostic.
    fn check_codes(imported: &str) -> Vec<&'static str> {
        use crate::rules::{EnvPolicy, Sources, load_sources_with_env};
        let mut sources = Sources::new();
        sources.add(
            "severities.sev",
            "destination \"ops\" webhook { url \"https://ops.example/x\" }\n\
             severity SEV1 { page \"ops\" }\nseverity SEV2 { page \"ops\" }\n\
             severity SEV3 { notify \"ops\" }\notherwise SEV3\n",
        );
        sources.add("imported.sev", imported);
        let loaded = load_sources_with_env(sources, EnvPolicy::Warn, &|_| None);
        assert!(loaded.ruleset.is_some(), "{}\n{imported}", loaded.render());
        loaded.diagnostics.iter().map(|d| d.code.id()).collect()
    }

    fn sloth_spec(objective: &str, extra: &str) -> String {
        format!(
            "version: prometheus/v1\nservice: api\nslos:\n  - name: avail\n    objective: {objective}\n{extra}    sli:\n      events:\n        error_query: sum(rate(req_total{{code=~\"5..\"}}[{{{{.window}}}}]))\n        total_query: sum(rate(req_total[{{{{.window}}}}]))\n"
        )
    }

    #[test]
    fn an_import_checks_clean_and_unreachable_or_too_long_tiers_are_left_out() {
        let imported = import_str(ImportFormat::Sloth, "s.yml", &sloth_spec("99.9", "")).unwrap();
        assert_eq!(imported.slos, vec!["api-avail"]);
        assert!(imported.notes.is_empty(), "{:?}", imported.notes);
        assert!(
            imported
                .text
                .contains("errors \"sum(req_total{code=~\\\"5..\\\"})\""),
            "{}",
            imported.text
        );
        assert_eq!(check_codes(&imported.text), Vec::<&str>::new());

        // 90%: the highest burn is 10, so the 14.4 tier cannot fire (E304).
        let imported = import_str(ImportFormat::Sloth, "s.yml", &sloth_spec("90", "")).unwrap();
        assert!(
            imported.text.contains(
                "# No SEV1 rule: burn 14.4 is unreachable for a 90% objective (at most 10)."
            ),
            "{}",
            imported.text
        );
        assert!(!imported.text.contains("then SEV1"));
        assert!(imported.text.contains("then SEV2"));
        assert_eq!(check_codes(&imported.text), Vec::<&str>::new());

        // A 1-day Pyrra window: the 3d tier does not fit (E305).
        let pyrra = "kind: ServiceLevelObjective\nmetadata: {name: short}\nspec:\n  target: 99.9\n  window: 1d\n  indicator:\n    ratio:\n      errors: {metric: 'e_total'}\n      total: {metric: 't_total'}\n";
        let imported = import_str(ImportFormat::Pyrra, "p.yaml", pyrra).unwrap();
        assert!(
            imported
                .text
                .contains("# No SEV3 rule: its 3d window is longer than the 1d period."),
            "{}",
            imported.text
        );
        assert!(
            imported.text.contains("burn(\"short\", 1h) > 0.48"),
            "{}",
            imported.text
        );
        assert_eq!(check_codes(&imported.text), Vec::<&str>::new());
    }

    #[test]
    fn a_query_without_counter_form_becomes_push_with_the_query_quoted_and_a_note() {
        let spec = sloth_spec("99", "").replace(
            "sum(rate(req_total{code=~\"5..\"}[{{.window}}]))",
            "sum(avg_over_time(errors_ratio[{{.window}}]))",
        );
        let imported = import_str(ImportFormat::Sloth, "s.yml", &spec).unwrap();
        assert!(
            imported.text.contains("  source    push\n"),
            "{}",
            imported.text
        );
        assert!(
            imported
                .text
                .contains("#   sum(avg_over_time(errors_ratio[{{.window}}]))\n"),
            "{}",
            imported.text
        );
        assert_eq!(imported.notes.len(), 1);
        assert!(
            imported.notes[0]
                .starts_with("s.yml: SLO \"api-avail\" uses `source push`: the error query"),
            "{}",
            imported.notes[0]
        );
        assert_eq!(check_codes(&imported.text), Vec::<&str>::new());
    }

    #[test]
    fn bad_input_names_the_file_the_field_and_what_is_wrong() {
        let cases = [
            (ImportFormat::Sloth, sloth_spec("high", ""), "s.yml: slos[0].objective: expected a number, found the string \"high\""),
            (ImportFormat::Sloth, sloth_spec("100", ""), "s.yml: slos[0].objective: objective 100% is not strictly between 0% and 100%"),
            (ImportFormat::Sloth, sloth_spec("99", "").replace("service: api\n", ""), "s.yml: service: missing (required)"),
            (ImportFormat::Sloth, "version: prometheus/v2\n".to_string(), "s.yml: version: unsupported Sloth spec version \"prometheus/v2\"; expected \"prometheus/v1\""),
            (ImportFormat::Sloth, "a: [1, 2\n".to_string(), "s.yml: not valid YAML: "),
            (ImportFormat::Pyrra, sloth_spec("99", ""), "s.yml: no SLO to import: expected a Pyrra `kind: ServiceLevelObjective`; found `version: prometheus/v1`"),
            (ImportFormat::Pyrra, "kind: ServiceLevelObjective\nmetadata: {name: x}\nspec: {target: '99', window: 4x, indicator: {}}\n".to_string(), "s.yml: spec.window: invalid duration \"4x\": unknown unit `x`"),
            (ImportFormat::Pyrra, "kind: ServiceLevelObjective\nmetadata: {name: x}\nspec: {target: '99', window: 4w, indicator: {ratio: {errors: {metric: 'rate(x[5m])'}, total: {metric: y}}}}\n".to_string(), "s.yml: spec.indicator.ratio.errors.metric: expected a counter selector"),
        ];
        for (format, text, expected) in cases {
            let err = import_str(format, "s.yml", &text)
                .expect_err(expected)
                .to_string();
            assert!(
                err.starts_with(expected),
                "expected {expected:?}\n   found {err:?}"
            );
        }
    }

    #[test]
    fn openslo_good_counts_are_subtracted_from_total_and_non_counters_are_pushed() {
        let slo = |counter: bool, good: &str| {
            format!(
                "apiVersion: openslo/v1\nkind: SLO\nmetadata: {{name: web}}\nspec:\n  timeWindow: [{{duration: 30d, isRolling: true}}]\n  objectives: [{{target: 0.999}}, {{targetPercent: 99, displayName: Relaxed target}}]\n  indicator:\n    metadata: {{name: i}}\n    spec:\n      ratioMetric:\n        counter: {counter}\n        good: {{metricSource: {{type: Prometheus, spec: {{query: '{good}'}}}}}}\n        total: {{metricSource: {{type: Prometheus, spec: {{query: 'sum(t_total)'}}}}}}\n"
            )
        };
        let imported = import_str(
            ImportFormat::Openslo,
            "o.yaml",
            &slo(true, "sum(a_total) + sum(b_total)"),
        )
        .unwrap();
        assert_eq!(imported.slos, vec!["web-1", "web-relaxed-target"]);
        assert!(
            imported
                .text
                .contains("errors \"sum(t_total) - (sum(a_total) + sum(b_total))\""),
            "{}",
            imported.text
        );
        assert!(
            imported.text.contains("objective 99.9%"),
            "{}",
            imported.text
        );
        assert_eq!(check_codes(&imported.text), Vec::<&str>::new());

        let imported =
            import_str(ImportFormat::Openslo, "o.yaml", &slo(false, "sum(g_total)")).unwrap();
        assert!(
            imported.text.contains("not marked `counter: true`"),
            "{}",
            imported.text
        );
        assert_eq!(imported.notes.len(), 2, "{:?}", imported.notes);
    }

    #[test]
    fn durations_read_prometheus_and_openslo_units() {
        let ctx = Ctx {
            file: "f.yaml".to_string(),
            slos: Vec::new(),
            notes: Vec::new(),
        };
        let read = |text: &str| {
            let value = Value::String(text.to_string());
            duration(&ctx, &Node::root(&value, String::new()))
        };
        assert_eq!(read("30d").unwrap(), 30 * 86_400);
        assert_eq!(read("2w").unwrap(), 14 * 86_400);
        assert_eq!(read("1h30m").unwrap(), 5_400);
        assert_eq!(read("1M").unwrap(), 30 * 86_400);
        let err = read("4x").unwrap_err().to_string();
        assert_eq!(
            err,
            "f.yaml: (top level): invalid duration \"4x\": unknown unit `x`"
        );
    }
}

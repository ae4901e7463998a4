//! Settings of `sevroute serve`, read once at start-up, before any stage
//! runs. Three layers, later ones overriding earlier ones key by key:
//! the defaults embedded from `config/default.toml` (which documents every
//! key), an optional TOML file (`--config FILE`), and environment variables
//! `SEVROUTE__SECTION__KEY`.
//!
//! Loading checks, in order: TOML syntax; unknown sections and keys in the
//! file and the environment (all of them, each named with where it came
//! from); value types; then [`Settings::validate`], which reports every
//! remaining problem at once.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

// `::config` is the crate; this module shares its name.
use ::config::{Config, Environment, File, FileFormat};
use serde::Deserialize;
use thiserror::Error;

use crate::model::Source;

/// The embedded defaults: the first layer, and the reference of every key.
pub const DEFAULTS_TOML: &str = include_str!("../config/default.toml");

/// Prefix of the environment variables read (`SEVROUTE__SERVER__LISTEN`).
pub const ENV_PREFIX: &str = "SEVROUTE";

/// Separator between prefix, section and key in environment variable names.
/// Two underscores, because keys themselves contain one (`max_body_bytes`).
pub const ENV_SEPARATOR: &str = "__";

/// Every section and its keys. The pre-check of unknown keys uses it to
/// report all of them at once with their origin (serde's
/// `deny_unknown_fields`, still set on every struct, stops at the first);
/// tests keep it in step with the structs and with `config/default.toml`.
const KEYS: &[(&str, &[&str])] = &[
    (
        "server",
        &[
            "listen",
            "max_body_bytes",
            "request_timeout_secs",
            "shutdown_grace_secs",
            "public_url",
        ],
    ),
    ("rules", &["path", "require_env"]),
    (
        "store",
        &["path", "group_commit_max_batch", "group_commit_max_wait_ms"],
    ),
    ("ingest", &["resolve_timeout_secs"]),
    (
        "auth",
        &[
            "ingest_token",
            "prometheus_token",
            "alertmanager_token",
            "grafana_token",
            "generic_token",
            "admin_token",
        ],
    ),
    (
        "delivery",
        &[
            "workers",
            "request_timeout_secs",
            "max_attempts",
            "max_age_secs",
            "page_failover_attempts",
            "page_failover_secs",
            "backoff_initial_ms",
            "backoff_max_secs",
            "retry_after_max_secs",
            "min_penalty_secs",
            "destination_concurrency",
            "breaker_failures",
            "breaker_cooldown_secs",
        ],
    ),
    (
        "timers",
        &["tick_ms", "slo_evaluation_secs", "slo_hold_down_secs"],
    ),
    (
        "slo",
        &[
            "prometheus_url",
            "prometheus_interval_secs",
            "prometheus_timeout_secs",
            "prometheus_stale_after_secs",
        ],
    ),
];

/// Why settings could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The `--config` file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A layer is not valid TOML.
    #[error("{origin} is not valid TOML: {message}")]
    Syntax {
        /// Which layer (the file's path, or "the embedded defaults").
        origin: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A `SEVROUTE__` environment variable's value is not UTF-8.
    #[error("environment variable {name} is not valid UTF-8")]
    Env {
        /// The variable's name.
        name: String,
    },
    /// A value has the wrong type (`max_body_bytes = "big"`); the message
    /// names the key and where the value came from.
    #[error("invalid setting: {0}")]
    Type(#[from] ::config::ConfigError),
    /// Unknown keys, or values that break a rule; every problem found,
    /// each message starting with the key.
    #[error("invalid settings:\n{}", bullet_list(.0))]
    Invalid(Vec<String>),
}

fn bullet_list(problems: &[String]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// All settings of `sevroute serve`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The HTTP server.
    pub server: ServerSettings,
    /// Where the rule set lives.
    pub rules: RulesSettings,
    /// The embedded store.
    pub store: StoreSettings,
    /// Alert ingest.
    pub ingest: IngestSettings,
    /// Bearer tokens.
    pub auth: AuthSettings,
    /// Outbound webhook delivery.
    pub delivery: DeliverySettings,
    /// The timer loop.
    pub timers: TimerSettings,
    /// SLO sources.
    pub slo: SloSettings,
}

/// `[server]`: the HTTP server.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Socket address to listen on (`127.0.0.1:9797`); see
    /// [`ServerSettings::listen_addr`].
    pub listen: String,
    /// Largest request body accepted, in bytes (413 above).
    pub max_body_bytes: u64,
    /// Time a request may take, in seconds.
    pub request_timeout_secs: u64,
    /// Time in-flight requests get to finish on shutdown, in seconds.
    pub shutdown_grace_secs: u64,
    /// Base URL for links back to incidents.
    pub public_url: String,
}

impl ServerSettings {
    /// `listen` as a socket address (always `Ok` once validated).
    pub fn listen_addr(&self) -> Result<SocketAddr, std::net::AddrParseError> {
        self.listen.parse()
    }

    /// `request_timeout_secs` as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// `shutdown_grace_secs` as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

/// `[rules]`: the rule set.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesSettings {
    /// Folder of `*.sev` files.
    pub path: PathBuf,
    /// Refuse a rule set whose `env("VAR")` secrets are not set (E210);
    /// when false they are warnings (W103).
    pub require_env: bool,
}

impl RulesSettings {
    /// The loader's policy for unset secrets.
    pub fn env_policy(&self) -> crate::rules::EnvPolicy {
        if self.require_env {
            crate::rules::EnvPolicy::Require
        } else {
            crate::rules::EnvPolicy::Warn
        }
    }
}

/// `[store]`: the SQLite store and its group commit.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// The database file.
    pub path: PathBuf,
    /// Most writes sharing one transaction.
    pub group_commit_max_batch: usize,
    /// Longest wait for others to join a transaction, in milliseconds.
    pub group_commit_max_wait_ms: u64,
}

impl StoreSettings {
    /// `group_commit_max_wait_ms` as a duration.
    pub fn group_commit_max_wait(&self) -> Duration {
        Duration::from_millis(self.group_commit_max_wait_ms)
    }
}

/// `[ingest]`: alert ingest.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    /// How long an API v2 alert without `endsAt` fires unless re-sent, in
    /// seconds (Alertmanager's `resolve_timeout`).
    pub resolve_timeout_secs: u64,
}

impl IngestSettings {
    /// `resolve_timeout_secs` as the `time` duration that
    /// [`crate::normalize::prometheus_v2`] takes.
    pub fn resolve_timeout(&self) -> time::Duration {
        // Saturates instead of wrapping; validation keeps it sane anyway.
        time::Duration::seconds(i64::try_from(self.resolve_timeout_secs).unwrap_or(i64::MAX))
    }
}

/// `[auth]`: bearer tokens. `Debug` shows only whether each is set.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Token for every ingest endpoint without a token of its own.
    pub ingest_token: Option<String>,
    /// Token for `POST /api/v2/alerts`; overrides `ingest_token`.
    pub prometheus_token: Option<String>,
    /// Token for the Alertmanager webhook; overrides `ingest_token`.
    pub alertmanager_token: Option<String>,
    /// Token for the Grafana webhook; overrides `ingest_token`.
    pub grafana_token: Option<String>,
    /// Token for the generic endpoint; overrides `ingest_token`.
    pub generic_token: Option<String>,
    /// Token for the incident and admin endpoints.
    pub admin_token: Option<String>,
}

impl AuthSettings {
    /// The token an ingest endpoint requires: the source's own, else
    /// `ingest_token`; `None` when neither is set (no token required).
    pub fn ingest_token_for(&self, source: Source) -> Option<&str> {
        let own = match source {
            Source::Prometheus => &self.prometheus_token,
            Source::Alertmanager => &self.alertmanager_token,
            Source::Grafana => &self.grafana_token,
            Source::Generic => &self.generic_token,
            // Raised inside sevroute, never posted: the shared token.
            Source::Slo => &None,
        };
        own.as_deref().or(self.ingest_token.as_deref())
    }

    /// Each token by its key name, for validation.
    fn named(&self) -> [(&'static str, &Option<String>); 6] {
        [
            ("ingest_token", &self.ingest_token),
            ("prometheus_token", &self.prometheus_token),
            ("alertmanager_token", &self.alertmanager_token),
            ("grafana_token", &self.grafana_token),
            ("generic_token", &self.generic_token),
            ("admin_token", &self.admin_token),
        ]
    }
}

impl fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Written out rather than derived: a derived Debug would print the
        // tokens into any log line that prints the settings.
        let mut out = f.debug_struct("AuthSettings");
        for (name, token) in self.named() {
            out.field(name, &token.as_ref().map(|_| Redacted));
        }
        out.finish()
    }
}

/// Stands in for a secret in `Debug` output.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `[delivery]`: the outbox worker.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySettings {
    /// Concurrent senders.
    pub workers: usize,
    /// Time one outbound request may take, in seconds.
    pub request_timeout_secs: u64,
    /// Attempts before a dead letter.
    pub max_attempts: u32,
    /// First retry delay, in milliseconds.
    pub backoff_initial_ms: u64,
    /// Longest retry delay, in seconds.
    pub backoff_max_secs: u64,
    /// Longest `Retry-After` honoured, in seconds.
    pub retry_after_max_secs: u64,
    /// Least wait after a 429 or a timeout, in seconds.
    pub min_penalty_secs: u64,
    /// Age after which a notification (anything but a page or an
    /// escalation) stops retrying and becomes a dead letter, in seconds.
    pub max_age_secs: u64,
    /// Attempts after which a page or escalation fails over to the
    /// severity's fallback.
    pub page_failover_attempts: u32,
    /// Age after which a page or escalation fails over, in seconds.
    pub page_failover_secs: u64,
    /// Requests in flight at once to one destination.
    pub destination_concurrency: usize,
    /// Consecutive failures that open a destination's circuit (0: never).
    pub breaker_failures: u32,
    /// How long an open circuit waits before one probe, in seconds.
    pub breaker_cooldown_secs: u64,
}

impl DeliverySettings {
    /// `request_timeout_secs` as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// `backoff_initial_ms` as a duration.
    pub fn backoff_initial(&self) -> Duration {
        Duration::from_millis(self.backoff_initial_ms)
    }

    /// `backoff_max_secs` as a duration.
    pub fn backoff_max(&self) -> Duration {
        Duration::from_secs(self.backoff_max_secs)
    }

    /// `retry_after_max_secs` as a duration.
    pub fn retry_after_max(&self) -> Duration {
        Duration::from_secs(self.retry_after_max_secs)
    }

    /// The retry horizons by what a delivery carries.
    pub fn horizon(&self) -> crate::deliver::isolation::Horizon {
        crate::deliver::isolation::Horizon {
            page_attempts: self.page_failover_attempts,
            page_age: Duration::from_secs(self.page_failover_secs),
            notify_attempts: self.max_attempts,
            notify_age: Duration::from_secs(self.max_age_secs),
        }
    }
}

/// `[timers]`: the loop that fires due timers.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimerSettings {
    /// How often due timers are checked, in milliseconds.
    pub tick_ms: u64,
    /// How often SLO burn is recomputed and open incidents re-classified.
    pub slo_evaluation_secs: u64,
    /// How long an SLO-only incident's rules must stay false before it
    /// resolves.
    pub slo_hold_down_secs: u64,
}

impl TimerSettings {
    /// `tick_ms` as a duration.
    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.tick_ms)
    }

    /// `slo_evaluation_secs` as a duration.
    pub fn slo_evaluation(&self) -> Duration {
        Duration::from_secs(self.slo_evaluation_secs)
    }

    /// `slo_hold_down_secs` as a duration.
    pub fn slo_hold_down(&self) -> Duration {
        Duration::from_secs(self.slo_hold_down_secs)
    }
}

/// `[slo]`: where SLOs with `source prometheus` are read from. `Debug`
/// hides a password in the URL.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloSettings {
    /// Base URL of the Prometheus HTTP API (`/api/v1/...` is appended);
    /// `None` when not set.
    pub prometheus_url: Option<String>,
    /// How often each SLO's expressions are sampled, in seconds.
    pub prometheus_interval_secs: u64,
    /// How long one query may take, in seconds.
    pub prometheus_timeout_secs: u64,
    /// How old a sample may be before the SLO's data counts as stale, in
    /// seconds.
    pub prometheus_stale_after_secs: u64,
}

impl SloSettings {
    /// `prometheus_interval_secs` as a duration.
    pub fn prometheus_interval(&self) -> Duration {
        Duration::from_secs(self.prometheus_interval_secs)
    }

    /// `prometheus_timeout_secs` as a duration.
    pub fn prometheus_timeout(&self) -> Duration {
        Duration::from_secs(self.prometheus_timeout_secs)
    }
}

impl fmt::Debug for SloSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A Prometheus behind basic auth carries a password in its URL.
        let url = self
            .prometheus_url
            .as_deref()
            .map(|u| match u.split_once('@') {
                Some((userinfo, host)) if userinfo.contains("://") => {
                    let scheme = userinfo.split("://").next().unwrap_or("");
                    format!("{scheme}://<redacted>@{host}")
                }
                _ => u.to_string(),
            });
        f.debug_struct("SloSettings")
            .field("prometheus_url", &url)
            .field("prometheus_interval_secs", &self.prometheus_interval_secs)
            .field("prometheus_timeout_secs", &self.prometheus_timeout_secs)
            .field(
                "prometheus_stale_after_secs",
                &self.prometheus_stale_after_secs,
            )
            .finish()
    }
}

/// One layer's text and where it came from, for messages.
struct FileLayer<'a> {
    origin: String,
    text: &'a str,
}

impl Settings {
    /// Loads the settings: embedded defaults, then `file` if given, then
    /// the process's `SEVROUTE__*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let text = file
            .map(|path| {
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            })
            .transpose()?;
        let layer = file.zip(text.as_deref()).map(|(path, text)| FileLayer {
            origin: path.display().to_string(),
            text,
        });
        let mut env = Vec::new();
        for (name, value) in std::env::vars_os() {
            // Names that are not UTF-8 cannot be ours; values of ours must be.
            let Some(name) = name.to_str().filter(|n| has_env_prefix(n)) else {
                continue;
            };
            let value = value.into_string().map_err(|_| ConfigError::Env {
                name: name.to_string(),
            })?;
            env.push((name.to_string(), value));
        }
        Self::build(layer, &env)
    }

    /// Loads from given layers instead of the file system and process
    /// environment, for tests: `file_text` is the `--config` file's text,
    /// `env` the environment (variables without the `SEVROUTE__` prefix are
    /// ignored, as in [`Settings::load`]).
    pub fn from_sources(
        file_text: Option<&str>,
        env: &[(&str, &str)],
    ) -> Result<Settings, ConfigError> {
        let layer = file_text.map(|text| FileLayer {
            origin: "the config file".to_string(),
            text,
        });
        let env: Vec<(String, String)> = env
            .iter()
            .filter(|(name, _)| has_env_prefix(name))
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        Self::build(layer, &env)
    }

    fn build(
        file: Option<FileLayer<'_>>,
        env: &[(String, String)],
    ) -> Result<Settings, ConfigError> {
        let defaults = FileLayer {
            origin: "the embedded defaults".to_string(),
            text: DEFAULTS_TOML,
        };
        let mut problems = Vec::new();
        for layer in std::iter::once(&defaults).chain(file.as_ref()) {
            problems.extend(unknown_file_keys(layer)?);
        }
        problems.extend(env.iter().filter_map(|(name, _)| unknown_env_key(name)));
        if !problems.is_empty() {
            return Err(ConfigError::Invalid(problems));
        }

        let mut builder =
            Config::builder().add_source(File::from_str(DEFAULTS_TOML, FileFormat::Toml));
        if let Some(layer) = &file {
            builder = builder.add_source(File::from_str(layer.text, FileFormat::Toml));
        }
        let env_map: ::config::Map<String, String> = env.iter().cloned().collect();
        // The environment is passed in rather than read by the crate, so
        // `from_sources` never touches the process environment.
        let builder = builder.add_source(
            Environment::with_prefix(ENV_PREFIX)
                .prefix_separator(ENV_SEPARATOR)
                .separator(ENV_SEPARATOR)
                .source(Some(env_map)),
        );
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate().map_err(ConfigError::Invalid)?;
        Ok(settings)
    }

    /// Checks every rule a value must follow and returns every broken one,
    /// each message starting with the key (`server.listen: ...`).
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, key: &str, message: String| {
            if !ok {
                problems.push(format!("{key}: {message}"));
            }
        };
        let positive = "must be more than 0".to_string();

        let server = &self.server;
        check(
            server.listen_addr().is_ok(),
            "server.listen",
            format!(
                "{:?} is not a socket address (an IP address and a port, e.g. 127.0.0.1:9797)",
                server.listen
            ),
        );
        check(
            server.max_body_bytes > 0,
            "server.max_body_bytes",
            positive.clone(),
        );
        check(
            server.request_timeout_secs > 0,
            "server.request_timeout_secs",
            positive.clone(),
        );
        let url = &server.public_url;
        check(
            (url.starts_with("http://") && url.len() > "http://".len())
                || (url.starts_with("https://") && url.len() > "https://".len()),
            "server.public_url",
            format!("{url:?} is not an http:// or https:// URL"),
        );

        check(
            !self.rules.path.as_os_str().is_empty(),
            "rules.path",
            "must not be empty".to_string(),
        );

        let store = &self.store;
        check(
            !store.path.as_os_str().is_empty(),
            "store.path",
            "must not be empty".to_string(),
        );
        check(
            store.group_commit_max_batch > 0,
            "store.group_commit_max_batch",
            positive.clone(),
        );

        check(
            self.ingest.resolve_timeout_secs > 0,
            "ingest.resolve_timeout_secs",
            positive.clone(),
        );
        // Above ~292 billion years `time::Duration` saturates; far below
        // that it is a typo, so a generous cap keeps the arithmetic safe.
        check(
            self.ingest.resolve_timeout_secs <= MAX_RESOLVE_TIMEOUT_SECS,
            "ingest.resolve_timeout_secs",
            format!("must be at most {MAX_RESOLVE_TIMEOUT_SECS} (one year)"),
        );

        let auth = &self.auth;
        for (name, token) in auth.named() {
            if let Some(token) = token {
                check(
                    !token.trim().is_empty(),
                    &format!("auth.{name}"),
                    "must not be empty when set (leave the key out for no token)".to_string(),
                );
            }
        }
        if let Some(admin) = auth.admin_token.as_deref().filter(|t| !t.trim().is_empty()) {
            for (name, token) in auth.named() {
                if name != "admin_token" && token.as_deref() == Some(admin) {
                    check(
                        false,
                        "auth.admin_token",
                        format!(
                            "must differ from auth.{name}, or that sender could resolve incidents"
                        ),
                    );
                }
            }
        }

        let delivery = &self.delivery;
        check(delivery.workers > 0, "delivery.workers", positive.clone());
        check(
            delivery.request_timeout_secs > 0,
            "delivery.request_timeout_secs",
            positive.clone(),
        );
        check(
            delivery.max_attempts > 0,
            "delivery.max_attempts",
            positive.clone(),
        );
        check(
            delivery.backoff_initial_ms > 0,
            "delivery.backoff_initial_ms",
            positive.clone(),
        );
        check(
            delivery.backoff_max_secs > 0,
            "delivery.backoff_max_secs",
            positive.clone(),
        );
        check(
            u128::from(delivery.backoff_initial_ms) <= u128::from(delivery.backoff_max_secs) * 1000,
            "delivery.backoff_initial_ms",
            format!(
                "{} ms is more than delivery.backoff_max_secs ({} s)",
                delivery.backoff_initial_ms, delivery.backoff_max_secs
            ),
        );
        check(
            delivery.retry_after_max_secs > 0,
            "delivery.retry_after_max_secs",
            positive.clone(),
        );
        for (ok, key) in [
            (delivery.max_age_secs > 0, "delivery.max_age_secs"),
            (
                delivery.page_failover_attempts > 0,
                "delivery.page_failover_attempts",
            ),
            (
                delivery.page_failover_secs > 0,
                "delivery.page_failover_secs",
            ),
            (
                delivery.destination_concurrency > 0,
                "delivery.destination_concurrency",
            ),
            (
                delivery.breaker_cooldown_secs > 0,
                "delivery.breaker_cooldown_secs",
            ),
        ] {
            check(ok, key, positive.clone());
        }

        check(self.timers.tick_ms > 0, "timers.tick_ms", positive.clone());
        check(
            self.timers.slo_evaluation_secs > 0,
            "timers.slo_evaluation_secs",
            positive.clone(),
        );

        let slo = &self.slo;
        if let Some(url) = &slo.prometheus_url {
            check(
                is_http_url(url),
                "slo.prometheus_url",
                format!(
                    "{:?} is not an http:// or https:// URL",
                    // Never echo a password.
                    url.split_once('@').map_or(url.as_str(), |(_, host)| host)
                ),
            );
        }
        check(
            slo.prometheus_interval_secs > 0,
            "slo.prometheus_interval_secs",
            positive.clone(),
        );
        check(
            slo.prometheus_timeout_secs > 0,
            "slo.prometheus_timeout_secs",
            positive.clone(),
        );
        check(
            slo.prometheus_stale_after_secs > slo.prometheus_interval_secs,
            "slo.prometheus_stale_after_secs",
            format!(
                "must be more than slo.prometheus_interval_secs ({} s), or every SLO would go stale between two samples",
                slo.prometheus_interval_secs
            ),
        );

        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// Whether `url` starts with http:// or https:// and has something after.
fn is_http_url(url: &str) -> bool {
    ["http://", "https://"]
        .iter()
        .any(|scheme| url.starts_with(scheme) && url.len() > scheme.len())
}

/// Upper bound of `ingest.resolve_timeout_secs`: one year.
const MAX_RESOLVE_TIMEOUT_SECS: u64 = 365 * 24 * 3600;

/// Whether an environment variable is one of ours. Case-insensitive, as the
/// `config` crate matches it.
fn has_env_prefix(name: &str) -> bool {
    let prefix = format!("{ENV_PREFIX}{ENV_SEPARATOR}");
    name.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(&prefix))
}

fn section_keys(section: &str) -> Option<&'static [&'static str]> {
    KEYS.iter()
        .find(|(s, _)| *s == section)
        .map(|(_, keys)| *keys)
}

/// Unknown sections and keys of one TOML layer, and keys that should be
/// sections or values and are not.
fn unknown_file_keys(layer: &FileLayer<'_>) -> Result<Vec<String>, ConfigError> {
    let table: toml::Table = toml::from_str(layer.text).map_err(|e| ConfigError::Syntax {
        origin: layer.origin.clone(),
        message: e.to_string(),
    })?;
    let origin = &layer.origin;
    let mut problems = Vec::new();
    for (section, value) in &table {
        let Some(known) = section_keys(section) else {
            problems.push(format!("{section}: unknown section in {origin}"));
            continue;
        };
        let Some(keys) = value.as_table() else {
            problems.push(format!(
                "{section}: must be a [{section}] table in {origin}"
            ));
            continue;
        };
        for key in keys.keys().filter(|k| !known.contains(&k.as_str())) {
            problems.push(format!("{section}.{key}: unknown key in {origin}"));
        }
    }
    Ok(problems)
}

/// The problem with a `SEVROUTE__` variable's name, if any: it must be
/// `SEVROUTE__SECTION__KEY` with a known section and key.
fn unknown_env_key(name: &str) -> Option<String> {
    let path = name[ENV_PREFIX.len() + ENV_SEPARATOR.len()..].to_lowercase();
    let parts: Vec<&str> = path.split(ENV_SEPARATOR).collect();
    let problem = match parts.as_slice() {
        [section, key] => match section_keys(section) {
            None => format!("{section}: unknown section"),
            Some(known) if !known.contains(key) => format!("{section}.{key}: unknown key"),
            Some(_) => return None,
        },
        _ => format!(
            "{}: not a setting (expected {ENV_PREFIX}__SECTION__KEY)",
            parts.join(".")
        ),
    };
    Some(format!("{problem} (environment variable {name})"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn load(file: Option<&str>, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_sources(file, env)
    }

    fn problems(result: Result<Settings, ConfigError>) -> Vec<String> {
        match result {
            Err(ConfigError::Invalid(problems)) => problems,
            other => panic!("expected invalid settings, got {other:?}"),
        }
    }

    #[test]
    fn the_defaults_alone_load_with_the_documented_values() {
        let s = load(None, &[]).unwrap();
        assert_eq!(s.server.listen, "127.0.0.1:9797");
        assert_eq!(s.server.listen_addr().unwrap().port(), 9797);
        assert_eq!(s.server.max_body_bytes, 4_194_304);
        assert_eq!(s.server.request_timeout(), Duration::from_secs(10));
        assert_eq!(s.server.shutdown_grace_secs, 20);
        assert_eq!(s.server.public_url, "http://127.0.0.1:9797");
        assert_eq!(s.rules.path, PathBuf::from("rules"));
        assert_eq!(s.store.path, PathBuf::from("data/sevroute.db"));
        assert_eq!(s.store.group_commit_max_batch, 512);
        assert_eq!(s.store.group_commit_max_wait(), Duration::ZERO);
        assert_eq!(s.ingest.resolve_timeout(), time::Duration::minutes(5));
        assert_eq!(s.auth.ingest_token, None);
        assert_eq!(s.auth.admin_token, None);
        assert_eq!(s.delivery.workers, 4);
        assert_eq!(s.delivery.request_timeout_secs, 10);
        assert_eq!(s.delivery.max_attempts, 60);
        assert_eq!(s.delivery.max_age_secs, 6 * 3600);
        assert_eq!(s.delivery.page_failover_attempts, 3);
        assert_eq!(s.delivery.page_failover_secs, 120);
        assert_eq!(s.delivery.min_penalty_secs, 5);
        assert_eq!(s.delivery.destination_concurrency, 2);
        assert_eq!(s.delivery.breaker_failures, 5);
        assert_eq!(s.delivery.breaker_cooldown_secs, 30);
        assert_eq!(s.delivery.backoff_initial(), Duration::from_millis(500));
        assert_eq!(s.delivery.backoff_max_secs, 300);
        assert_eq!(s.delivery.retry_after_max_secs, 600);
        assert_eq!(s.timers.tick(), Duration::from_secs(1));
    }

    #[test]
    fn the_file_overrides_defaults_key_by_key() {
        let s = load(
            Some("[server]\nlisten = \"0.0.0.0:8080\"\n[delivery]\nworkers = 9\n"),
            &[],
        )
        .unwrap();
        assert_eq!(s.server.listen, "0.0.0.0:8080");
        assert_eq!(
            s.server.max_body_bytes, 4_194_304,
            "untouched key keeps its default"
        );
        assert_eq!(s.delivery.workers, 9);
        assert_eq!(s.delivery.max_attempts, 60);
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let file = "[server]\nlisten = \"0.0.0.0:8080\"\nmax_body_bytes = 100\n";
        let s = load(
            Some(file),
            &[
                ("SEVROUTE__SERVER__LISTEN", "127.0.0.1:1"),
                ("SEVROUTE__STORE__GROUP_COMMIT_MAX_BATCH", "7"),
                ("SEVROUTE__AUTH__ADMIN_TOKEN", "s3cret"),
                ("PATH", "/usr/bin"),
                ("SEVROUTE_LOG", "debug"),
            ],
        )
        .unwrap();
        assert_eq!(s.server.listen, "127.0.0.1:1", "env beats file");
        assert_eq!(s.server.max_body_bytes, 100, "file beats defaults");
        assert_eq!(s.store.group_commit_max_batch, 7, "env beats defaults");
        assert_eq!(s.auth.admin_token.as_deref(), Some("s3cret"));
    }

    #[test]
    fn a_per_source_token_overrides_the_ingest_token() {
        let s = load(
            None,
            &[
                ("SEVROUTE__AUTH__INGEST_TOKEN", "shared"),
                ("SEVROUTE__AUTH__GRAFANA_TOKEN", "graf"),
            ],
        )
        .unwrap();
        assert_eq!(s.auth.ingest_token_for(Source::Grafana), Some("graf"));
        assert_eq!(s.auth.ingest_token_for(Source::Prometheus), Some("shared"));
        let none = load(None, &[]).unwrap();
        assert_eq!(none.auth.ingest_token_for(Source::Generic), None);
    }

    #[test]
    fn unknown_keys_are_all_rejected_with_their_origin() {
        let file = "top = 1\n[server]\nlisten = \"127.0.0.1:1\"\nlistn = \"x\"\n[srever]\nlisten = \"y\"\n";
        let found = problems(load(
            Some(file),
            &[
                ("SEVROUTE__DELIVERY__WORKER", "3"),
                ("SEVROUTE__LISTEN", "x"),
                ("SEVROUTE__NOPE__KEY", "x"),
            ],
        ));
        assert_eq!(
            found,
            [
                "server.listn: unknown key in the config file",
                "srever: unknown section in the config file",
                "top: unknown section in the config file",
                "delivery.worker: unknown key (environment variable SEVROUTE__DELIVERY__WORKER)",
                "listen: not a setting (expected SEVROUTE__SECTION__KEY) (environment variable SEVROUTE__LISTEN)",
                "nope: unknown section (environment variable SEVROUTE__NOPE__KEY)",
            ]
        );
    }

    #[test]
    fn keys_are_case_sensitive_in_files_and_not_in_the_environment() {
        let found = problems(load(Some("[server]\nListen = \"127.0.0.1:1\"\n"), &[]));
        assert_eq!(found, ["server.Listen: unknown key in the config file"]);
        let s = load(None, &[("sevroute__server__listen", "127.0.0.1:2")]).unwrap();
        assert_eq!(s.server.listen, "127.0.0.1:2");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let file = r#"
            [server]
            listen = "localhost"
            max_body_bytes = 0
            public_url = "ftp://x"
            [delivery]
            backoff_initial_ms = 400000
            backoff_max_secs = 300
            workers = 0
        "#;
        let found = problems(load(
            Some(file),
            &[
                ("SEVROUTE__AUTH__INGEST_TOKEN", ""),
                ("SEVROUTE__TIMERS__TICK_MS", "0"),
            ],
        ));
        assert_eq!(
            found,
            [
                "server.listen: \"localhost\" is not a socket address (an IP address and a port, e.g. 127.0.0.1:9797)",
                "server.max_body_bytes: must be more than 0",
                "server.public_url: \"ftp://x\" is not an http:// or https:// URL",
                "auth.ingest_token: must not be empty when set (leave the key out for no token)",
                "delivery.workers: must be more than 0",
                "delivery.backoff_initial_ms: 400000 ms is more than delivery.backoff_max_secs (300 s)",
                "timers.tick_ms: must be more than 0",
            ]
        );
    }

    #[test]
    fn the_admin_token_must_differ_from_ingest_tokens() {
        let found = problems(load(
            None,
            &[
                ("SEVROUTE__AUTH__PROMETHEUS_TOKEN", "same"),
                ("SEVROUTE__AUTH__ADMIN_TOKEN", "same"),
            ],
        ));
        assert_eq!(
            found,
            [
                "auth.admin_token: must differ from auth.prometheus_token, or that sender could resolve incidents"
            ]
        );
    }

    #[test]
    fn a_wrong_type_names_the_key() {
        let err = load(Some("[server]\nmax_body_bytes = \"big\"\n"), &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Type(_)), "{err:?}");
        assert!(err.to_string().contains("server.max_body_bytes"), "{err}");
        let err = load(None, &[("SEVROUTE__DELIVERY__WORKERS", "many")]).unwrap_err();
        assert!(err.to_string().contains("delivery.workers"), "{err}");
    }

    #[test]
    fn a_syntax_error_names_the_layer_and_line() {
        let err = load(Some("[server]\nlisten = \n"), &[]).unwrap_err();
        let ConfigError::Syntax { origin, message } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(origin, "the config file");
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn debug_output_redacts_tokens() {
        let s = load(
            None,
            &[
                ("SEVROUTE__AUTH__ADMIN_TOKEN", "very-secret-admin"),
                ("SEVROUTE__AUTH__INGEST_TOKEN", "very-secret-ingest"),
            ],
        )
        .unwrap();
        for text in [format!("{s:?}"), format!("{s:#?}")] {
            assert!(!text.contains("very-secret"), "{text}");
            assert!(text.contains("<redacted>"), "{text}");
        }
        let auth = format!("{:?}", s.auth);
        assert!(auth.contains("admin_token: Some(<redacted>)"), "{auth}");
        assert!(auth.contains("grafana_token: None"), "{auth}");
    }

    #[test]
    fn load_reads_a_file_and_reports_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sevroute.toml");
        std::fs::write(&path, "[timers]\ntick_ms = 250\n").unwrap();
        let s = Settings::load(Some(&path)).unwrap();
        assert_eq!(s.timers.tick_ms, 250);
        let err = Settings::load(Some(&dir.path().join("missing.toml"))).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
        std::fs::write(&path, "[timers]\ntick = 250\n").unwrap();
        let found = problems(Settings::load(Some(&path)));
        assert_eq!(
            found,
            [format!("timers.tick: unknown key in {}", path.display())]
        );
    }

    /// Every key of every section, set to a valid non-default value.
    fn every_key_file() -> String {
        let mut text = String::new();
        for (section, keys) in KEYS {
            text.push_str(&format!("[{section}]\n"));
            for key in *keys {
                let value = match *key {
                    "listen" => "\"127.0.0.1:1\"".to_string(),
                    "public_url" => "\"https://sevroute.example\"".to_string(),
                    k if k.ends_with("_token") => format!("\"token-{k}\""),
                    "path" => "\"somewhere\"".to_string(),
                    "require_env" => "true".to_string(),
                    "prometheus_url" => "\"http://127.0.0.1:9090\"".to_string(),
                    "prometheus_stale_after_secs" => "8".to_string(),
                    _ => "7".to_string(),
                };
                text.push_str(&format!("{key} = {value}\n"));
            }
        }
        text
    }

    #[test]
    fn every_listed_key_is_a_field() {
        // deny_unknown_fields would refuse a listed key with no field.
        let s = load(Some(&every_key_file()), &[]).unwrap();
        assert_eq!(s.delivery.retry_after_max_secs, 7);
        assert_eq!(s.auth.generic_token.as_deref(), Some("token-generic_token"));
    }

    #[test]
    fn the_defaults_file_documents_every_key_and_only_those() {
        // Each key appears as `key = ...` (or `# key = ...` for keys with no
        // default), right after a comment line, in its section.
        let mut documented: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut section = String::new();
        let mut previous = "";
        for line in DEFAULTS_TOML.lines() {
            let line = line.trim();
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_string();
            } else if let Some((key, _)) = line.trim_start_matches("# ").split_once(" = ") {
                let key = key.trim();
                if !key.contains(' ') && !section.is_empty() {
                    assert!(previous.starts_with('#'), "{section}.{key} has no comment");
                    documented
                        .entry(section.clone())
                        .or_default()
                        .push(key.to_string());
                }
            }
            previous = line;
        }
        let expected: BTreeMap<String, Vec<String>> = KEYS
            .iter()
            .map(|(s, keys)| (s.to_string(), keys.iter().map(|k| k.to_string()).collect()))
            .collect();
        assert_eq!(documented, expected);
    }

    #[test]
    fn the_prometheus_source_settings_default_and_are_checked() {
        let s = load(None, &[]).unwrap();
        assert_eq!(s.slo.prometheus_url, None);
        assert_eq!(s.slo.prometheus_interval(), Duration::from_secs(30));
        assert_eq!(s.slo.prometheus_timeout(), Duration::from_secs(10));
        assert_eq!(s.slo.prometheus_stale_after_secs, 120);
        let s = load(
            None,
            &[("SEVROUTE__SLO__PROMETHEUS_URL", "http://127.0.0.1:9090")],
        )
        .unwrap();
        assert_eq!(
            s.slo.prometheus_url.as_deref(),
            Some("http://127.0.0.1:9090")
        );
        assert_eq!(
            problems(load(
                Some(
                    "[slo]\nprometheus_url = \"ftp://user:hunter2@prom\"\nprometheus_interval_secs = 0\n"
                ),
                &[]
            )),
            [
                "slo.prometheus_url: \"prom\" is not an http:// or https:// URL",
                "slo.prometheus_interval_secs: must be more than 0",
            ]
        );
        assert_eq!(
            problems(load(
                Some("[slo]\nprometheus_interval_secs = 60\nprometheus_stale_after_secs = 60\n"),
                &[]
            )),
            [
                "slo.prometheus_stale_after_secs: must be more than slo.prometheus_interval_secs (60 s), or every SLO would go stale between two samples"
            ]
        );
        let s = load(
            Some("[slo]\nprometheus_url = \"https://sre:hunter2@prom.example/prometheus\"\n"),
            &[],
        )
        .unwrap();
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(
            debug.contains("https://<redacted>@prom.example/prometheus"),
            "{debug}"
        );
    }
}

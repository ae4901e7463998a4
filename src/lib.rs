//! sevroute: an SLO-driven severity classifier and alert router.
//!
//! Data moves one way: ingest -> normalize -> classify -> route -> deliver,
//! with the store beside them, and [`pipeline`] the one place that chains
//! them:
//!
//! - [`ingest`]: the HTTP edge (axum): ingest endpoints, the incident API,
//!   health, metrics, reload; one `ApiError` with a stable JSON body.
//! - [`normalize`]: ingest payloads -> `Alert`, one pure function per
//!   format (Prometheus' Alertmanager API v2 list, Alertmanager webhook,
//!   Grafana webhook, generic JSON), with errors naming alert and field.
//! - [`rules`]: the rules language: source files and spans, the AST, the
//!   nom parser, the printer, the checker that compiles a [`rules::RuleSet`],
//!   and diagnostics with stable codes.
//! - [`classify`]: pure evaluation of a rule set against an alert and a
//!   burn snapshot at a given time, with an explanation, and the actions a
//!   severity owes.
//! - [`route`]: pure incident decisions: grouping, severity changes,
//!   actions owed, timers.
//! - [`deliver`]: Standard Webhooks signing, the versioned webhook body,
//!   the retry policy, the HTTP sender and the outbox worker.
//! - [`slo`]: the pure SLO error-budget engine: good/total counts (pushed,
//!   or read from Prometheus) in tiered ring buffers, exact window sums, burn rates, budget left and
//!   its exhaustion, and the burn snapshot classification reads.
//! - [`prometheus_source`]: the task that reads `source prometheus` SLOs
//!   from a Prometheus' HTTP API (history at start, samples on an
//!   interval, stale on failure) and feeds the router.
//! - [`store`]: the only SQL: the `Store` trait and its SQLite backend.
//! - [`pipeline`]: the router task: classify, route and group-commit.
//! - [`config`]: settings of `sevroute serve`, layered: embedded defaults
//!   (`config/default.toml`) -> `--config` file -> `SEVROUTE__` environment.
//! - [`metrics`]: the Prometheus text exposition.
//! - [`model`]: shared vocabulary (`Alert`, `Severity`, fingerprints).
//! - [`cli`]: the commands behind `main.rs`: serve, check, test, explain,
//!   replay.

pub mod classify;
pub mod cli;
pub mod config;
pub mod deliver;
pub mod ingest;
pub mod metrics;
pub mod model;
pub mod normalize;
pub mod pipeline;
pub mod prometheus_source;
pub mod route;
pub mod rules;
pub mod slo;
pub mod store;

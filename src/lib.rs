//! sevroute: an SLO-driven severity classifier and alert router.
//!
//! Data moves one way: ingest -> normalize -> classify -> route -> deliver,
//! with the store beside them. This crate holds, so far:
//!
//! - [`config`]: settings of `sevroute serve`, layered: embedded defaults
//!   (`config/default.toml`) -> `--config` file -> `SEVROUTE__` environment.
//! - [`model`]: shared vocabulary (`Alert`, `Severity`, fingerprints).
//! - [`rules`]: the rules language: source files and spans, the AST, the
//!   nom parser, the printer, the checker that compiles a [`rules::RuleSet`],
//!   and diagnostics with stable codes.
//! - [`classify`]: pure evaluation of a rule set against an alert and a
//!   burn snapshot at a given time, with an explanation, and the actions a
//!   severity owes.
//! - [`normalize`]: ingest payloads -> `Alert`, one pure function per
//!   format (Prometheus' Alertmanager API v2 list, Alertmanager webhook,
//!   Grafana webhook, generic JSON), with errors naming alert and field.
//! - [`deliver`]: Standard Webhooks signing, the versioned webhook body,
//!   the retry policy, and the HTTP sender that makes one attempt.
//! - [`slo`]: the pure SLO error-budget engine: pushed good/total counts
//!   in tiered ring buffers, exact window sums, burn rates, budget left and
//!   its exhaustion, and the burn snapshot classification reads.
//! - [`cli`]: the `check`, `test` and `explain` commands behind `main.rs`.

pub mod classify;
pub mod cli;
pub mod config;
pub mod deliver;
pub mod ingest;
pub mod metrics;
pub mod model;
pub mod normalize;
pub mod pipeline;
pub mod route;
pub mod rules;
pub mod slo;
pub mod store;

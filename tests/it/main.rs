//! Integration tests, one binary: the `sevroute` commands run as a user
//! runs them, and golden files for rendered diagnostics.

mod cli;
mod delivery;
mod docs_examples;
mod golden;
mod import;
mod interop;
mod replay;
mod serve;
mod slo;
mod vendors;

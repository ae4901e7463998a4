//! The rules language. Text flows one way through it:
//! [`source`] (files, spans) -> [`parser`] ([`ast`]) -> [`check`]
//! ([`RuleSet`], or [`diagnostics`]). [`printer`] writes an AST back as
//! canonical text. [`load`] reads a folder of `*.sev` files and runs the
//! whole chain. [`template`] compiles destinations' message templates at
//! check time. Pure: no clock, no network, no database.

pub mod ast;
pub mod check;
pub mod diagnostics;
pub mod load;
pub mod parser;
pub mod printer;
pub mod ruleset;
pub mod source;
pub(crate) mod suggest;
pub mod template;

pub use diagnostics::{Code, Diagnostic, Level};
pub use load::{EnvPolicy, Loaded, load_paths, load_sources_with_env};
pub use ruleset::*;
pub use source::{FileId, Sources, Span};

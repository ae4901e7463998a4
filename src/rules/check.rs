//! Placeholder: the checker.

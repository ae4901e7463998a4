//! Source text of a rule set: the files it was read from and the spans that
//! point into them. Every AST node carries a [`Span`], so a diagnostic can
//! name `file:line:col` and underline the exact token.

use codespan_reporting::files::{Files, SimpleFiles};

/// Index of a file inside a [`Sources`].
pub type FileId = usize;

/// A byte range inside one source file.
///
/// Spans are location metadata: they take no part in equality or hashing,
/// so two ASTs parsed from differently formatted text compare equal when
/// they say the same thing (syn treats spans the same way).
#[derive(Clone, Copy, Debug, Default)]
pub struct Span {
    /// The file the range points into.
    pub file: FileId,
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
}

impl Span {
    /// A span from `start` to `end` in `file`.
    pub fn new(file: FileId, start: usize, end: usize) -> Self {
        Span { file, start, end }
    }

    /// The smallest span covering both `self` and `other` (same file).
    pub fn to(self, other: Span) -> Span {
        Span {
            file: self.file,
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

impl PartialEq for Span {
    fn eq(&self, _: &Span) -> bool {
        true
    }
}
impl Eq for Span {}

/// The files of a rule set, by [`FileId`].
#[derive(Default)]
pub struct Sources {
    files: SimpleFiles<String, String>,
    count: usize,
}

impl Sources {
    /// An empty set of sources.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file and returns its id.
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> FileId {
        self.count += 1;
        self.files.add(name.into(), text.into())
    }

    /// Number of files added.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when no file was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The text of a file.
    pub fn text(&self, file: FileId) -> &str {
        self.files
            .get(file)
            .map(|f| f.source().as_str())
            .unwrap_or("")
    }

    /// The name (path) of a file.
    pub fn name(&self, file: FileId) -> &str {
        self.files
            .get(file)
            .map(|f| f.name().as_str())
            .unwrap_or("<unknown>")
    }

    /// One-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, file: FileId, offset: usize) -> (usize, usize) {
        let text = self.text(file);
        let offset = offset.min(text.len());
        let line_index = self.files.line_index(file, offset).unwrap_or(0);
        let line_start = self
            .files
            .line_range(file, line_index)
            .map(|r| r.start)
            .unwrap_or(0);
        let col = text
            .get(line_start..offset)
            .map(|s| s.chars().count())
            .unwrap_or(0);
        (line_index + 1, col + 1)
    }

    /// The underlying store, for the renderer.
    pub(crate) fn files(&self) -> &SimpleFiles<String, String> {
        &self.files
    }
}

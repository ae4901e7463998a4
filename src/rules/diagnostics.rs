//! Diagnostics: every problem the parser or checker finds, with a stable
//! code (documented in `docs/rules-errors.md`), a level, and the spans it
//! points at. Rendered for people (codespan-reporting: `file:line:col`, the
//! line, a caret under the token) and as JSON for tools.

use std::fmt;

use codespan_reporting::diagnostic as cs;
use codespan_reporting::term;
use serde::Serialize;

use crate::rules::source::{Sources, Span};

/// Error or warning. Errors refuse the rule set; warnings do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// The rule set cannot be used.
    Error,
    /// Worth fixing; the rule set still loads.
    Warning,
}

macro_rules! codes {
    ($( $variant:ident = $id:literal, $level:ident, $title:literal; )*) => {
        /// Stable diagnostic codes. The id never changes meaning once shipped;
        /// each is listed with an example in `docs/rules-errors.md`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Code { $( #[doc = $title] $variant, )* }

        impl Code {
            /// Every code, in id order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The stable id, such as `E100`.
            pub fn id(self) -> &'static str {
                match self { $(Code::$variant => $id,)* }
            }

            /// The level a diagnostic with this code has by default.
            pub fn level(self) -> Level {
                match self { $(Code::$variant => Level::$level,)* }
            }

            /// A one-line title for the code.
            pub fn title(self) -> &'static str {
                match self { $(Code::$variant => $title,)* }
            }
        }
    };
}

codes! {
    // Reading and syntax.
    Syntax = "E100", Error, "syntax error: unexpected token";
    UnterminatedString = "E101", Error, "unterminated string";
    BadEscape = "E102", Error, "invalid escape in string";
    BadDuration = "E103", Error, "invalid duration";
    BadNumber = "E104", Error, "invalid number or percentage";
    ReadFailed = "E110", Error, "cannot read rule file or folder";
    NoRuleFiles = "E111", Error, "no rule files found";
    // Names.
    DuplicateSlo = "E200", Error, "duplicate SLO name";
    DuplicateDestination = "E201", Error, "duplicate destination name";
    DuplicateSeverity = "E202", Error, "severity defined twice";
    DuplicateRule = "E203", Error, "duplicate rule name";
    UnknownSlo = "E204", Error, "unknown SLO";
    UnknownDestination = "E205", Error, "unknown destination";
    UndefinedSeverity = "E206", Error, "severity used but not defined";
    DuplicateDeclaration = "E207", Error, "declaration allowed once per rule set";
    UnknownDestinationKind = "E208", Error, "unknown destination kind";
    BadSetting = "E209", Error, "unknown, missing or mistyped destination setting";
    MissingEnv = "E210", Error, "environment variable not set";
    BadTemplate = "E211", Error, "message template does not compile";
    // SLOs and burn.
    BadObjective = "E300", Error, "missing or out-of-range SLO objective";
    BadPeriod = "E301", Error, "missing or zero SLO period";
    BadSloSource = "E302", Error, "incomplete SLO source";
    DuplicateStatement = "E303", Error, "statement given twice in one block";
    UnreachableBurn = "E304", Error, "burn threshold the SLO can never reach";
    WindowTooLong = "E305", Error, "burn window longer than the SLO period";
    ZeroDuration = "E306", Error, "zero duration where a positive one is needed";
    // Severities and actions.
    NoAction = "E400", Error, "severity with no concrete action";
    SplitTooFewRoles = "E401", Error, "roles split with fewer than two roles";
    UnknownRole = "E402", Error, "unknown incident role";
    DuplicateRole = "E403", Error, "role listed twice";
    UnknownFallback = "E404", Error, "fallback names an unknown destination";
    // Expressions.
    TypeMismatch = "E500", Error, "operands of different or unsupported types";
    BadRegex = "E501", Error, "invalid regular expression";
    RegexNotLiteral = "E502", Error, "regex operand is not a string literal";
    NotBoolean = "E503", Error, "condition is not true/false";
    BadList = "E504", Error, "invalid `in` list";
    // Warnings.
    NoBurnCondition = "W100", Warning, "SEV1/SEV2 rule with no SLO burn condition";
    UnusedDestination = "W101", Warning, "destination never used";
    NoOtherwise = "W102", Warning, "no `otherwise` severity";
    EnvNotSet = "W103", Warning, "environment variable not set (load would fail)";
    RatioAsNumber = "W104", Warning, "budget compared to a number above 1";
    UnknownTemplateVariable = "W105", Warning, "template uses an undocumented variable";
    FallbackAlsoPaged = "W106", Warning, "fallback is already paged by the same severity";
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// A span with a message, shown under the source line.
#[derive(Clone, Debug)]
pub struct Label {
    /// What the label points at.
    pub span: Span,
    /// What it says there (may be empty).
    pub message: String,
}

/// One problem found in a rule set.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    /// Stable code.
    pub code: Code,
    /// Error or warning.
    pub level: Level,
    /// One sentence saying what is wrong.
    pub message: String,
    /// The main location, when the problem has one.
    pub primary: Option<Label>,
    /// Related locations (the first definition of a duplicate, say).
    pub secondary: Vec<Label>,
    /// Extra lines: hints, expected values.
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// A diagnostic with the code's default level.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            level: code.level(),
            message: message.into(),
            primary: None,
            secondary: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Points the diagnostic at `span` with a label message.
    pub fn at(mut self, span: Span, label: impl Into<String>) -> Self {
        self.primary = Some(Label {
            span,
            message: label.into(),
        });
        self
    }

    /// Adds a related location.
    pub fn also(mut self, span: Span, label: impl Into<String>) -> Self {
        self.secondary.push(Label {
            span,
            message: label.into(),
        });
        self
    }

    /// Adds a note line.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.level == Level::Error
    }

    /// Renders for a terminal, without colour:
    ///
    /// ```text
    /// error[E100]: expected `then`, found `than`
    ///   ┌─ rules/main.sev:3:29
    ///   │
    /// 3 │   when labels.x == "y" than SEV1
    ///   │                        ^^^^ expected `then`
    /// ```
    pub fn render(&self, sources: &Sources) -> String {
        let config = term::Config::default();
        term::emit_into_string(&config, sources.files(), &self.to_codespan())
            // Only a span outside its file can fail; fall back to the bare message.
            .unwrap_or_else(|_| format!("{}[{}]: {}\n", self.level_word(), self.code, self.message))
    }

    fn level_word(&self) -> &'static str {
        match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
        }
    }

    fn to_codespan(&self) -> cs::Diagnostic<usize> {
        let base = match self.level {
            Level::Error => cs::Diagnostic::error(),
            Level::Warning => cs::Diagnostic::warning(),
        };
        let mut labels = Vec::new();
        if let Some(p) = &self.primary {
            labels.push(
                cs::Label::primary(p.span.file, p.span.start..p.span.end).with_message(&p.message),
            );
        }
        for s in &self.secondary {
            labels.push(
                cs::Label::secondary(s.span.file, s.span.start..s.span.end)
                    .with_message(&s.message),
            );
        }
        base.with_code(self.code.id())
            .with_message(&self.message)
            .with_labels(labels)
            .with_notes(self.notes.clone())
    }

    /// The diagnostic as a JSON-ready value with resolved positions.
    pub fn to_json(&self, sources: &Sources) -> JsonDiagnostic {
        let location = |label: &Label| {
            let (line, column) = sources.line_col(label.span.file, label.span.start);
            let (end_line, end_column) = sources.line_col(label.span.file, label.span.end);
            JsonLocation {
                file: sources.name(label.span.file).to_string(),
                line,
                column,
                end_line,
                end_column,
                message: label.message.clone(),
            }
        };
        JsonDiagnostic {
            code: self.code.id(),
            level: self.level,
            message: self.message.clone(),
            location: self.primary.as_ref().map(location),
            related: self.secondary.iter().map(location).collect(),
            notes: self.notes.clone(),
        }
    }
}

/// JSON form of a [`Diagnostic`], for `check --format json`.
#[derive(Debug, Serialize)]
pub struct JsonDiagnostic {
    /// Stable code such as `E100`.
    pub code: &'static str,
    /// `error` or `warning`.
    pub level: Level,
    /// What is wrong.
    pub message: String,
    /// Main location, when there is one.
    pub location: Option<JsonLocation>,
    /// Related locations.
    pub related: Vec<JsonLocation>,
    /// Hints.
    pub notes: Vec<String>,
}

/// A resolved location: one-based line and column (in characters).
#[derive(Debug, Serialize)]
pub struct JsonLocation {
    /// File path as given.
    pub file: String,
    /// Line of the first character.
    pub line: usize,
    /// Column of the first character.
    pub column: usize,
    /// Line just past the end.
    pub end_line: usize,
    /// Column just past the end.
    pub end_column: usize,
    /// The label's message.
    pub message: String,
}

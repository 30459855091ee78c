//! Errors and warnings about user input, each pointing at a place in a file.
//!
//! Every config, register-map and pipeline problem becomes a [`Diagnostic`] so that
//! `hpflow validate` can print all of them at once as `file:line:column: error: …`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no better place than the whole file.
    pub line: usize,
    /// 1-based, counted in characters.
    pub column: usize,
    /// The component (`sources.heatpumps`) or device the problem belongs to.
    pub component: Option<String>,
    pub message: String,
}

impl Diagnostic {
    pub fn error(file: &SourceText, span: Option<Range<usize>>, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, file, span, message)
    }

    pub fn warning(file: &SourceText, span: Option<Range<usize>>, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, file, span, message)
    }

    fn new(severity: Severity, file: &SourceText, span: Option<Range<usize>>, message: impl Into<String>) -> Self {
        let (line, column) = span.map(|s| file.line_column(s.start)).unwrap_or((0, 0));
        Diagnostic {
            severity,
            file: file.path.clone(),
            line,
            column,
            component: None,
            message: message.into(),
        }
    }

    /// A problem with a file as a whole (missing, unreadable).
    pub fn file_error(path: &Path, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            component: None,
            message: message.into(),
        }
    }

    /// A problem at a known line and column (1-based), e.g. from a YAML parser.
    pub fn at(path: &Path, line: usize, column: usize, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: path.to_path_buf(),
            line,
            column,
            component: None,
            message: message.into(),
        }
    }

    pub fn in_component(mut self, component: impl Into<String>) -> Self {
        self.component = Some(component.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, ": {level}: ")?;
        if let Some(c) = &self.component {
            write!(f, "{c}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// The text of a file that diagnostics point into.
#[derive(Debug, Clone)]
pub struct SourceText {
    pub path: PathBuf,
    pub text: String,
}

impl SourceText {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        SourceText {
            path: path.into(),
            text: text.into(),
        }
    }

    /// 1-based line and column of a byte offset (clamped to the text).
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    /// Byte offset of the start of a 1-based line, for parsers that report lines.
    pub fn line_offset(&self, line: usize) -> usize {
        if line <= 1 {
            return 0;
        }
        self.text
            .match_indices('\n')
            .nth(line - 2)
            .map(|(i, _)| i + 1)
            .unwrap_or(self.text.len())
    }
}

/// A collection of diagnostics with the helpers a compile pass needs.
#[derive(Debug, Default, Clone)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    pub fn extend(&mut self, ds: impl IntoIterator<Item = Diagnostic>) {
        self.0.extend(ds);
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.is_error())
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| !d.is_error())
    }

    /// Orders by file and position so output reads top to bottom.
    pub fn sort(&mut self) {
        self.0
            .sort_by(|a, b| (&a.file, a.line, a.column, a.severity).cmp(&(&b.file, b.line, b.column, b.severity)));
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters_not_bytes() {
        let src = SourceText::new("p.toml", "a = 1\nnäme = 2\n");
        let off = src.text.find('=').unwrap();
        assert_eq!(src.line_column(off), (1, 3));
        let off = src.text.rfind('=').unwrap();
        assert_eq!(src.line_column(off), (2, 6));
        assert_eq!(src.line_offset(2), 6);
    }

    #[test]
    fn diagnostic_prints_file_line_column_and_component() {
        let src = SourceText::new("p.toml", "x\ny = 1\n");
        let d = Diagnostic::error(&src, Some(2..3), "bad").in_component("sinks.a");
        assert_eq!(d.to_string(), "p.toml:2:1: error: sinks.a: bad");
    }
}

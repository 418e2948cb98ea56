//! Config errors that say where: file, line, column and the key path
//! (`sinks.cloudwatch_logs.log_group: missing`). Every problem found is reported, not just the
//! first, so one `validate` run shows everything to fix.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem is not tied to a place in the file (e.g. it cannot be read).
    pub line: usize,
    pub column: usize,
    /// Dotted key path, e.g. `sinks.out.inputs[1]`; empty for file-level problems.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.key, self.message)
        }
    }
}

/// All problems found in one config file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A key path being built up while walking the config, e.g. `["sinks", "out", "inputs", "[1]"]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(Vec<String>);

impl KeyPath {
    pub fn root() -> Self {
        Self(Vec::new())
    }

    pub fn key(&self, k: &str) -> Self {
        let mut p = self.clone();
        p.0.push(k.to_owned());
        p
    }

    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(format!("[{i}]"));
        p
    }

    pub fn segments(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 && !s.starts_with('[') {
                f.write_str(".")?;
            }
            f.write_str(s)?;
        }
        Ok(())
    }
}

/// Maps key paths back to lines in the source text, using toml_edit's spans.
pub struct SourceMap<'a> {
    file: &'a Path,
    text: &'a str,
    doc: toml_edit::Document<&'a str>,
}

impl<'a> SourceMap<'a> {
    pub fn new(file: &'a Path, text: &'a str, doc: toml_edit::Document<&'a str>) -> Self {
        Self { file, text, doc }
    }

    /// An error located at `path`, or at the closest enclosing key that exists in the file
    /// (a missing key is reported at its table).
    pub fn error(&self, path: &KeyPath, message: impl Into<String>) -> ConfigError {
        let offset = self.locate(path).unwrap_or(0);
        let (line, column) = line_col(self.text, offset);
        ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            key: path.to_string(),
            message: message.into(),
        }
    }

    fn locate(&self, path: &KeyPath) -> Option<usize> {
        let mut item: &toml_edit::Item = self.doc.as_item();
        let mut best = None;
        for seg in path.segments() {
            if let Some(i) = seg.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                let i: usize = i.parse().ok()?;
                // Arrays are leaves in our configs: stop at the element.
                let span = match item {
                    toml_edit::Item::Value(toml_edit::Value::Array(a)) => {
                        a.get(i).and_then(|v| v.span())
                    }
                    toml_edit::Item::ArrayOfTables(a) => a.get(i).and_then(|t| t.span()),
                    _ => None,
                };
                return span.map(|s| s.start).or(best);
            }
            let Some((key, value)) = item.as_table_like().and_then(|t| t.get_key_value(seg)) else {
                return best;
            };
            best = key
                .span()
                .or_else(|| value.span())
                .map(|s| s.start)
                .or(best);
            item = value;
        }
        best
    }
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, column)
}

//! Config errors that say where: file, line, column and the key path
//! (`sinks.cloudwatch_logs.log_group: missing`). Both programs report every problem found, not
//! just the first, so one `validate` run shows everything to fix: the agent for its TOML config,
//! the watchdog for its YAML alert spec.
//!
//! This module depends on no other part of Vigil: components of the agent validate their own
//! settings with [`Errors`] and [`KeyPath`] without knowing the config loader that calls them.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; `None` when the problem is not tied to a place in the file (it cannot be read,
    /// or it is about how files fit together).
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Dotted key path, e.g. `sinks.out.inputs[1]`; empty for file-level problems.
    pub key: String,
    pub message: String,
}

impl ConfigError {
    /// A problem of the whole file, or of a key whose place in the file is not known.
    pub fn unplaced(file: &Path, key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line: None,
            column: None,
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, ":{line}:{column}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

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

/// Where key paths are in one file's text; each file format (TOML, YAML) supplies its own.
pub trait Locate {
    fn file(&self) -> &Path;
    /// Line and column (1-based) of `path`, or of the closest enclosing key that exists in the
    /// file (a missing key is reported at its table).
    fn line_col(&self, path: &KeyPath) -> Option<(usize, usize)>;
}

/// Collects errors with their locations while a config is parsed.
pub struct Errors<'a> {
    map: &'a dyn Locate,
    list: Vec<ConfigError>,
}

impl<'a> Errors<'a> {
    pub fn new(map: &'a dyn Locate) -> Self {
        Self {
            map,
            list: Vec::new(),
        }
    }

    pub fn push(&mut self, path: &KeyPath, message: impl Into<String>) {
        let place = self.map.line_col(path);
        self.list.push(ConfigError {
            file: self.map.file().to_path_buf(),
            line: place.map(|(line, _)| line),
            column: place.map(|(_, column)| column),
            key: path.to_string(),
            message: message.into(),
        });
    }

    /// Deserializes `value` (found at `path`) into `T`, recording a located error on failure.
    pub fn deserialize<'de, T: Deserialize<'de>>(
        &mut self,
        path: &KeyPath,
        value: impl Deserializer<'de>,
    ) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(e) => {
                let mut at = path.clone();
                for seg in e.path().iter() {
                    at = match seg {
                        serde_path_to_error::Segment::Seq { index } => at.index(*index),
                        serde_path_to_error::Segment::Map { key } => at.key(key),
                        serde_path_to_error::Segment::Enum { variant } => at.key(variant),
                        serde_path_to_error::Segment::Unknown => at,
                    };
                }
                // Parsers append their own location lines; ours is better, keep the first line.
                let inner = e.inner().to_string();
                let first = inner.lines().next().unwrap_or("").trim().to_owned();
                let (at, message) = describe_serde_error(at, first);
                self.push(&at, message);
                None
            }
        }
    }

    /// Records an unknown component type, listing the known ones.
    pub fn unknown_type(&mut self, path: &KeyPath, kind: &str, known: &[&str]) {
        self.push(
            &path.key("type"),
            format!(
                "unknown type `{kind}`; expected one of: {}",
                known.join(", ")
            ),
        );
    }

    /// Records `must be between LO and HI` for each `(key, value, lo, hi)` out of its range.
    pub fn within<T: PartialOrd + fmt::Display + Copy>(
        &mut self,
        path: &KeyPath,
        checks: &[(&str, T, T, T)],
    ) {
        for &(key, value, lo, hi) in checks {
            if !(lo..=hi).contains(&value) {
                self.push(&path.key(key), format!("must be between {lo} and {hi}"));
            }
        }
    }

    /// Records `must be greater than 0` for each `(key, value)` that is 0 (timeouts, intervals).
    pub fn positive(&mut self, path: &KeyPath, checks: &[(&str, u64)]) {
        for &(key, value) in checks {
            if value == 0 {
                self.push(&path.key(key), "must be greater than 0");
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The problems found, in file order.
    pub fn finish(mut self) -> ConfigErrors {
        self.list.sort_by_key(|e| (e.line, e.column));
        ConfigErrors(self.list)
    }
}

/// Turns serde's messages into `key: problem`, moving the missing or unknown field into the path.
fn describe_serde_error(at: KeyPath, message: String) -> (KeyPath, String) {
    let quoted = |rest: &str| rest.split('`').nth(1).map(str::to_owned);
    if let Some(field) = message.strip_prefix("missing field ").and_then(quoted) {
        return (at.key(&field), "missing".to_owned());
    }
    if let Some(rest) = message.strip_prefix("unknown field ")
        && let Some(field) = quoted(rest)
    {
        let at = if at.segments().last() == Some(&field) {
            at
        } else {
            at.key(&field)
        };
        let expected = rest.split_once(", expected ").map(|(_, e)| e).unwrap_or("");
        let msg = if expected.is_empty() {
            "unknown key".to_owned()
        } else {
            format!("unknown key; expected {expected}")
        };
        return (at, msg);
    }
    (at, message)
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Locate for Fixed {
        fn file(&self) -> &Path {
            Path::new("a.toml")
        }
        fn line_col(&self, path: &KeyPath) -> Option<(usize, usize)> {
            Some((path.segments().len(), 1))
        }
    }

    #[test]
    fn errors_are_located_sorted_and_printed_with_their_key() {
        let mut errs = Errors::new(&Fixed);
        errs.push(&KeyPath::root().key("a").key("b").index(2), "bad");
        errs.push(&KeyPath::root().key("a"), "missing");
        let list = errs.finish();
        assert_eq!(
            list.to_string(),
            "a.toml:1:1: a: missing\na.toml:3:1: a.b[2]: bad"
        );
        let mut errs = Errors::new(&Fixed);
        let at = KeyPath::root().key("s");
        errs.within(&at, &[("n", 0usize, 1, 4), ("m", 2, 1, 4)]);
        errs.positive(&at, &[("t", 0), ("u", 5)]);
        assert_eq!(
            errs.finish().to_string(),
            "a.toml:2:1: s.n: must be between 1 and 4\na.toml:2:1: s.t: must be greater than 0"
        );
        let plain = ConfigError::unplaced(Path::new("dir"), "", "cannot read");
        assert_eq!(plain.to_string(), "dir: cannot read");
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab", 99), (1, 3));
    }
}

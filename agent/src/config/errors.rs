//! Where keys are in the agent's TOML text, for located config errors. The error list and key
//! paths themselves live in `vigil_common::config_error`, shared with the watchdog's spec.

use std::path::Path;

use vigil_common::config_error::{KeyPath, Locate, line_col};

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

impl Locate for SourceMap<'_> {
    fn file(&self) -> &Path {
        self.file
    }

    /// An unknown place is the top of the file: every TOML error has a line.
    fn line_col(&self, path: &KeyPath) -> Option<(usize, usize)> {
        Some(line_col(self.text, self.locate(path).unwrap_or(0)))
    }
}

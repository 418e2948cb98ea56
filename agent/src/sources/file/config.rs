//! `[sources.NAME]` with `type = "file"`.

use serde::Deserialize;

use vigil_common::config_default;
use vigil_common::config_error::{Errors, KeyPath};

use crate::component::{ComponentConfig, Signals};

/// Tails files matched by glob patterns, identifying each file by a fingerprint of its first line
/// so that renames and copytruncate rotations neither lose nor repeat lines.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// Glob patterns of files to read, e.g. `/var/log/shop/*/*.log`. Re-evaluated while running.
    pub include: Vec<String>,
    /// Glob patterns of files to skip even when `include` matches them.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Where to start in a file that has no checkpoint and was already there when the agent
    /// started. Files that appear later are always read from their beginning.
    #[serde(default)]
    pub start_at: StartAt,
    /// Longest line kept whole; longer ones are truncated or split (and counted).
    #[serde(default = "config_default::usize::<{ 256 * 1024 }>")]
    pub max_line_bytes: usize,
    #[serde(default)]
    pub oversized_lines: OversizedLines,
    /// How many bytes of the first line identify a file. A file is read once its first line is
    /// complete or this long.
    #[serde(default = "config_default::usize::<256>")]
    pub fingerprint_bytes: usize,
    /// How often files are checked for new data and the globs re-evaluated. After a few polls
    /// that found nothing, the wait doubles up to 1 s (or this value, if larger) until data
    /// comes again, so an idle agent barely wakes up.
    #[serde(default = "config_default::u64::<250>")]
    pub poll_interval_ms: u64,
    /// How long a rotated-away or deleted file is kept open after it last grew, so that a writer
    /// still holding it open loses nothing.
    #[serde(default = "config_default::u64::<5_000>")]
    pub rotate_wait_ms: u64,
    /// Most events in one batch handed downstream (a batch can pass it by the lines of one
    /// 64 KiB read). Every queue between the source and the sinks holds a couple of batches, and
    /// a parsed line weighs ~1.5 KB in memory: at 250 a 1,000,000-line burst peaked at 36 MiB
    /// RSS instead of 52 at 1,000, for the same CPU (`scripts/bench-e2e.sh`).
    #[serde(default = "config_default::usize::<250>")]
    pub max_batch_events: usize,
    /// Regex with named groups matched against the file path; each group becomes an attribute,
    /// e.g. `^/var/log/shop/(?P<module>[^/]+)/` gives every line a `module`.
    pub path_fields: Option<String>,
    /// Groups continuation lines (stack traces) with the line that started them.
    pub multiline: Option<MultilineConfig>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    #[default]
    Beginning,
    End,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OversizedLines {
    /// Keep the first `max_line_bytes` and drop the rest of the line.
    #[default]
    Truncate,
    /// Emit the line as several events of at most `max_line_bytes`.
    Split,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    /// A line matching this regex starts a new event; others continue the current one.
    pub start_pattern: String,
    /// An event is complete when no continuation line came for this long.
    #[serde(default = "config_default::u64::<1_000>")]
    pub timeout_ms: u64,
    /// Most lines in one event; more start a new event.
    #[serde(default = "config_default::usize::<500>")]
    pub max_lines: usize,
}

impl ComponentConfig for FileSourceConfig {
    fn emits(&self, _inputs: Signals) -> Signals {
        Signals::LOGS
    }

    fn validate(&self, path: &KeyPath, errs: &mut Errors<'_>) {
        if self.include.is_empty() {
            errs.push(&path.key("include"), "must list at least one glob pattern");
        }
        for (key, patterns) in [("include", &self.include), ("exclude", &self.exclude)] {
            for (i, p) in patterns.iter().enumerate() {
                if let Err(e) = glob::Pattern::new(p) {
                    errs.push(&path.key(key).index(i), format!("invalid glob `{p}`: {e}"));
                } else if !p.starts_with('/') {
                    errs.push(
                        &path.key(key).index(i),
                        format!("`{p}` must be an absolute path"),
                    );
                }
            }
        }
        if self.max_line_bytes < 16 {
            errs.push(&path.key("max_line_bytes"), "must be at least 16");
        }
        if self.fingerprint_bytes < 8 {
            errs.push(&path.key("fingerprint_bytes"), "must be at least 8");
        }
        errs.positive(
            path,
            &[
                ("poll_interval_ms", self.poll_interval_ms),
                ("max_batch_events", self.max_batch_events as u64),
            ],
        );
        if let Some(re) = &self.path_fields {
            match regex::Regex::new(re) {
                Ok(r) if r.capture_names().flatten().next().is_none() => errs.push(
                    &path.key("path_fields"),
                    "needs at least one named group, e.g. (?P<module>[^/]+)",
                ),
                Ok(_) => {}
                Err(e) => errs.push(&path.key("path_fields"), format!("invalid regex: {e}")),
            }
        }
        if let Some(m) = &self.multiline {
            let mp = path.key("multiline");
            if let Err(e) = regex::Regex::new(&m.start_pattern) {
                errs.push(&mp.key("start_pattern"), format!("invalid regex: {e}"));
            }
            errs.positive(
                &mp,
                &[
                    ("timeout_ms", m.timeout_ms),
                    ("max_lines", m.max_lines as u64),
                ],
            );
        }
    }
}

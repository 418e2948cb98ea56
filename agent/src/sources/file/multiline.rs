//! Grouping continuation lines (stack traces) with the line that started them.

use std::time::{Duration, Instant};

use regex::Regex;

use super::config::MultilineConfig;

/// A finished multiline event: its text and the file offset where its last line ends.
pub type Group = (String, u64);

#[derive(Debug)]
pub struct Multiline {
    start: Regex,
    timeout: Duration,
    max_lines: usize,
    current: Option<Open>,
}

#[derive(Debug)]
struct Open {
    text: String,
    end: u64,
    lines: usize,
    last: Instant,
}

impl Multiline {
    /// The config was validated, so the pattern compiles.
    pub fn new(config: &MultilineConfig) -> Result<Self, regex::Error> {
        Ok(Self {
            start: Regex::new(&config.start_pattern)?,
            timeout: Duration::from_millis(config.timeout_ms),
            max_lines: config.max_lines,
            current: None,
        })
    }

    /// Adds a line; returns the previous group when this line starts a new one.
    pub fn push(&mut self, line: String, end: u64, now: Instant) -> Option<Group> {
        if let Some(open) = &mut self.current
            && !self.start.is_match(&line)
            && open.lines < self.max_lines
        {
            open.text.push('\n');
            open.text.push_str(&line);
            open.end = end;
            open.lines += 1;
            open.last = now;
            return None;
        }
        self.current
            .replace(Open {
                text: line,
                end,
                lines: 1,
                last: now,
            })
            .map(|o| (o.text, o.end))
    }

    /// The open group, if nothing was added to it for the timeout.
    pub fn flush_idle(&mut self, now: Instant) -> Option<Group> {
        if self
            .current
            .as_ref()
            .is_some_and(|o| now.duration_since(o.last) >= self.timeout)
        {
            self.flush()
        } else {
            None
        }
    }

    /// The open group, whatever its age (end of file, shutdown).
    pub fn flush(&mut self) -> Option<Group> {
        self.current.take().map(|o| (o.text, o.end))
    }

    pub fn is_open(&self) -> bool {
        self.current.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_a_stack_trace_and_flushes_on_timeout() {
        let mut m = Multiline::new(&MultilineConfig {
            start_pattern: r"^\d{4}-".into(),
            timeout_ms: 100,
            max_lines: 10,
        })
        .unwrap();
        let t = Instant::now();
        assert_eq!(m.push("2026-01-01 boom".into(), 10, t), None);
        assert_eq!(m.push("  at a()".into(), 20, t), None);
        assert_eq!(m.push("  at b()".into(), 30, t), None);
        let g = m.push("2026-01-01 next".into(), 40, t).unwrap();
        assert_eq!(g, ("2026-01-01 boom\n  at a()\n  at b()".into(), 30));
        assert_eq!(m.flush_idle(t + Duration::from_millis(50)), None);
        assert_eq!(
            m.flush_idle(t + Duration::from_millis(150)),
            Some(("2026-01-01 next".into(), 40))
        );
    }
}

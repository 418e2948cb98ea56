//! Durations as people write them in the spec: `300ms`, `90s`, `5m`, `1h`, `3d`, `4w`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

/// A span of time read from the spec. Kept in whole milliseconds so it prints back exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span(Duration);

impl Span {
    pub const fn from_secs(secs: u64) -> Self {
        Span(Duration::from_secs(secs))
    }

    pub const fn from_millis(ms: u64) -> Self {
        Span(Duration::from_millis(ms))
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }

    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }

    /// Parses `<number><unit>`; the number is a whole number and must not be zero.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("`{text}` has no unit (use ms, s, m, h, d or w, e.g. `5m`)"))?;
        let (digits, unit) = text.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("`{text}` does not start with a whole number"))?;
        let ms_per_unit: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            other => {
                return Err(format!(
                    "`{text}`: unknown unit `{other}` (use ms, s, m, h, d or w)"
                ));
            }
        };
        if n == 0 {
            return Err(format!("`{text}` must be longer than zero"));
        }
        n.checked_mul(ms_per_unit)
            .map(Span::from_millis)
            .ok_or_else(|| format!("`{text}` is too long"))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis() as u64;
        // Days rather than weeks: SLO periods are written in days (`28d`, `30d`).
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
        ] {
            if ms >= size && ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        // Reported through serde so the YAML parser attaches the key path and line.
        Span::parse(&text).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_prints_back() {
        for (text, secs) in [
            ("90s", 90),
            ("5m", 300),
            ("1h", 3600),
            ("3d", 259_200),
            ("14d", 1_209_600),
        ] {
            let span = Span::parse(text).unwrap();
            assert_eq!(span.as_secs(), secs, "{text}");
            assert_eq!(span.to_string(), text);
        }
        assert_eq!(
            Span::parse("300ms").unwrap().as_duration(),
            Duration::from_millis(300)
        );
        assert_eq!(Span::from_secs(7200).to_string(), "2h");
        assert_eq!(Span::parse("2w").unwrap().to_string(), "14d");
    }

    #[test]
    fn rejects_bad_text_with_a_reason() {
        assert!(Span::parse("5").unwrap_err().contains("no unit"));
        assert!(Span::parse("5y").unwrap_err().contains("unknown unit `y`"));
        assert!(Span::parse("0m").unwrap_err().contains("longer than zero"));
        assert!(Span::parse("m").unwrap_err().contains("whole number"));
        assert!(Span::parse("99999999999999999999d").is_err());
    }
}

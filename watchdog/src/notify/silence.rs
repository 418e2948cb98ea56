//! Silences (one-off and recurring maintenance windows, in a time zone) and inhibition
//! (while a source finding fires, matching target findings are held back and listed inside
//! the source's message instead).
//!
//! Neither touches alert state: a held-back page is simply not sent, so no receiver is
//! recorded as notified, and the next run after the silence ends (or the source recovers)
//! sends it while the incident still fires. Resolves are never held back: whoever got the page
//! hears that it is over.

use jiff::Timestamp;
use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;

use crate::finding::{Finding, Status};

use super::routing::matches;
use crate::spec::notify::{InhibitRule, SilenceSpec};

/// When a silence holds.
#[derive(Debug)]
enum Window {
    Once {
        start: Timestamp,
        end: Timestamp,
    },
    /// Every listed day (all days when empty) from `from` to `to` local time; `to` before
    /// `from` crosses midnight into the next day.
    Recurring {
        days: Vec<Weekday>,
        from: Time,
        to: Time,
        tz: TimeZone,
    },
}

#[derive(Debug)]
pub struct Silence {
    pub name: String,
    spec: SilenceSpec,
    window: Window,
}

fn weekday(name: &str) -> Result<Weekday, String> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Monday,
        "tue" | "tuesday" => Weekday::Tuesday,
        "wed" | "wednesday" => Weekday::Wednesday,
        "thu" | "thursday" => Weekday::Thursday,
        "fri" | "friday" => Weekday::Friday,
        "sat" | "saturday" => Weekday::Saturday,
        "sun" | "sunday" => Weekday::Sunday,
        _ => return Err(format!("unknown day {name:?} (mon, tue, ... sun)")),
    })
}

impl Silence {
    pub fn new(spec: &SilenceSpec) -> Result<Silence, String> {
        let err = |e: String| format!("settings.notify.silences {}: {e}", spec.name);
        let time = |t: &str| {
            t.parse::<Time>()
                .map_err(|e| err(format!("bad time {t:?} (HH:MM): {e}")))
        };
        let window = match (&spec.start, &spec.end, &spec.from, &spec.to) {
            (Some(start), Some(end), None, None) => {
                let ts = |t: &str| {
                    t.parse::<Timestamp>().map_err(|e| {
                        err(format!(
                            "bad time {t:?} (RFC 3339, e.g. 2026-11-22T02:00:00Z): {e}"
                        ))
                    })
                };
                let (start, end) = (ts(start)?, ts(end)?);
                if end <= start {
                    return Err(err("end is not after start".into()));
                }
                Window::Once { start, end }
            }
            (None, None, Some(from), Some(to)) => {
                let zone = spec.time_zone.as_deref().unwrap_or("UTC");
                Window::Recurring {
                    days: spec
                        .days
                        .iter()
                        .map(|d| weekday(d))
                        .collect::<Result<_, _>>()
                        .map_err(err)?,
                    from: time(from)?,
                    to: time(to)?,
                    tz: TimeZone::get(zone)
                        .map_err(|e| err(format!("unknown time zone {zone:?}: {e}")))?,
                }
            }
            _ => {
                return Err(err(
                    "give either start and end (one-off) or from and to (recurring)".into(),
                ));
            }
        };
        Ok(Silence {
            name: spec.name.clone(),
            spec: spec.clone(),
            window,
        })
    }

    pub fn active_at(&self, now: Timestamp) -> bool {
        match &self.window {
            Window::Once { start, end } => *start <= now && now < *end,
            Window::Recurring { days, from, to, tz } => {
                let local = now.to_zoned(tz.clone());
                let (day, t) = (local.weekday(), local.time());
                let on = |d: Weekday| days.is_empty() || days.contains(&d);
                if from <= to {
                    on(day) && *from <= t && t < *to
                } else {
                    (on(day) && t >= *from) || (on(day.previous()) && t < *to)
                }
            }
        }
    }

    pub fn silences(&self, finding: &Finding, now: Timestamp) -> bool {
        matches(&self.spec.matcher, finding) && self.active_at(now)
    }
}

/// For each finding, the fingerprint of the firing finding that inhibits it, if any.
pub fn inhibited_by<'a>(
    rules: &[InhibitRule],
    findings: &'a [Finding],
    finding: &Finding,
) -> Option<&'a Finding> {
    if finding.status != Status::Firing {
        return None;
    }
    rules.iter().find_map(|rule| {
        if !matches(&rule.target, finding) || matches(&rule.source, finding) {
            return None;
        }
        findings.iter().find(|s| {
            s.status == Status::Firing
                && s.fingerprint != finding.fingerprint
                && matches(&rule.source, s)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn silence(yaml: &str) -> Silence {
        Silence::new(&yaml_serde::from_str(yaml).unwrap()).unwrap()
    }

    fn at(t: &str) -> Timestamp {
        t.parse().unwrap()
    }

    #[test]
    fn a_one_off_silence_holds_between_start_and_end() {
        let s =
            silence("name: migration\nstart: 2026-11-22T02:00:00Z\nend: 2026-11-22T03:00:00Z\n");
        assert!(!s.active_at(at("2026-11-22T01:59:59Z")));
        assert!(s.active_at(at("2026-11-22T02:00:00Z")));
        assert!(!s.active_at(at("2026-11-22T03:00:00Z")));
    }

    #[test]
    fn a_recurring_window_follows_its_time_zone_across_midnight_and_dst() {
        // Saturday 23:00 to Sunday 01:00, Berlin time.
        let s = silence(
            "name: weekly\ndays: [sat]\nfrom: \"23:00\"\nto: \"01:00\"\ntime_zone: Europe/Berlin\n",
        );
        // Winter (UTC+1): Saturday 2026-11-21 23:30 Berlin = 22:30 UTC.
        assert!(s.active_at(at("2026-11-21T22:30:00Z")));
        // Sunday 00:30 Berlin (the window crossed midnight).
        assert!(s.active_at(at("2026-11-21T23:30:00Z")));
        // Sunday 01:30 Berlin: over.
        assert!(!s.active_at(at("2026-11-22T00:30:00Z")));
        // 23:30 UTC on Saturday is already Sunday 00:30 in Berlin, but a Friday-night UTC time
        // (Friday 23:30 Berlin) is not in the window.
        assert!(!s.active_at(at("2026-11-20T22:30:00Z")));
        // Summer (UTC+2): Saturday 2026-07-04 23:30 Berlin = 21:30 UTC.
        assert!(s.active_at(at("2026-07-04T21:30:00Z")));
        assert!(!s.active_at(at("2026-07-04T20:30:00Z")));
    }

    #[test]
    fn bad_silences_are_errors_naming_them() {
        let e = Silence::new(
            &yaml_serde::from_str(
                "name: x\nfrom: \"01:00\"\nto: \"02:00\"\ntime_zone: Mars/Olympus\n",
            )
            .unwrap(),
        )
        .unwrap_err();
        assert!(
            e.contains("silences x") && e.contains("Mars/Olympus"),
            "{e}"
        );
        let e =
            Silence::new(&yaml_serde::from_str("name: y\nstart: 2026-11-22T02:00:00Z\n").unwrap())
                .unwrap_err();
        assert!(e.contains("either start and end"), "{e}");
    }
}

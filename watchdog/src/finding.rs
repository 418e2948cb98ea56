//! A finding: the watchdog's verdict on one SLO or one check, in the shape a notifier reads.
//! Every evaluated SLO and check yields one, healthy or not, so alert state can also resolve.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::spec::Severity;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Healthy: resolves an open incident with the same fingerprint.
    Ok,
    /// Unhealthy at `severity`.
    Firing,
    /// The watchdog could not tell (API denied, timeout, bad data): a ticket of its own, under
    /// its own fingerprint, so it neither pages nor resolves the real incident.
    Unknown,
}

#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// Stable identity of the incident: `<kind>:<service>:<target>` (`/unknown` appended when
    /// the check could not run). Alert state and notifications are keyed by it.
    pub fingerprint: String,
    pub status: Status,
    pub severity: Severity,
    pub service: String,
    pub module: Option<String>,
    /// `slo`, `asg`, `target_group`, `rds_instance`, ... (the spec's key).
    pub kind: String,
    /// What was checked: the SLO name, group name, URL, ...
    pub target: String,
    pub labels: BTreeMap<String, String>,
    /// One line a human reads first.
    pub summary: String,
    /// Why: one line per fact the verdict rests on (printed by `--explain`).
    pub details: Vec<String>,
    /// Numbers behind the verdict, for the notifier's message and for dashboards.
    pub values: BTreeMap<String, serde_json::Value>,
}

impl Finding {
    /// The fingerprint for `kind`/`service`/`target`.
    pub fn fingerprint_of(kind: &str, service: &str, target: &str) -> String {
        format!("{kind}:{service}:{target}")
    }

    /// Makes this a "could not tell" finding: a ticket under `<fingerprint>/unknown`, so it
    /// neither pages for nor resolves the incident the check normally watches.
    pub fn mark_unknown(&mut self, summary: String) {
        self.status = Status::Unknown;
        self.severity = Severity::Ticket;
        self.fingerprint.push_str("/unknown");
        self.summary = summary;
    }

    pub fn is_firing(&self) -> bool {
        matches!(self.status, Status::Firing | Status::Unknown)
    }
}

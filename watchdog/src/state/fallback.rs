//! When alert state cannot be read (DynamoDB down, throttled, access denied), the watchdog
//! still notifies — a repeated page beats a missed one — but not on every run: each firing
//! fingerprint at most once per `unreadable_repeat`, remembered in a small local file. In
//! Lambda that file lives in `/tmp` as long as the warm sandbox does (a new sandbox may page
//! once more); for the CLI it lives in the temporary directory. The outage itself is reported
//! as a finding (`watchdog:state:<table>`), under the same limit.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::finding::{Finding, Status};
use crate::spec::Severity;
use crate::state::{Cause, Decision, decide_stateless};

/// When each fingerprint was last notified while state was unreadable.
pub struct Ledger {
    path: PathBuf,
    every: u64,
}

impl Ledger {
    /// The ledger for `table`: `$VIGIL_FALLBACK_LEDGER`, else a file in the temp directory.
    pub fn for_table(table: &str, every: u64) -> Ledger {
        let path = std::env::var_os("VIGIL_FALLBACK_LEDGER")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let safe: String = table
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                std::env::temp_dir().join(format!("vigil-watchdog-unreadable-{safe}.json"))
            });
        Ledger { path, every }
    }

    fn load(&self) -> BTreeMap<String, u64> {
        std::fs::read(&self.path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    fn store(&self, seen: &BTreeMap<String, u64>) {
        let tmp = self.path.with_extension("tmp");
        let written = serde_json::to_vec(seen)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            tracing::warn!(path = %self.path.display(), error = %e, "fallback ledger not written: the next run may notify again");
        }
    }

    /// Decisions for `findings` while state is unreadable: the outage's own finding is added
    /// to `findings`; every firing finding notified within the interval is left out.
    pub fn decide(
        &self,
        findings: &mut Vec<Finding>,
        table: &str,
        error: &str,
        now: u64,
    ) -> Vec<Decision> {
        findings.push(outage_finding(table, error));
        let cause = Cause::StateUnreadable {
            error: error.to_string(),
        };
        let mut seen = self.load();
        // Forget what is long past, so the file stays small.
        seen.retain(|_, at| now.saturating_sub(*at) < self.every.max(1) * 24);
        let decisions: Vec<Decision> = decide_stateless(findings, &cause)
            .into_iter()
            .filter(|d| {
                let due = seen
                    .get(&d.fingerprint)
                    .is_none_or(|at| now.saturating_sub(*at) >= self.every);
                if !due {
                    tracing::info!(fingerprint = %d.fingerprint, "notified recently while alert state is unreadable: not again yet");
                }
                due
            })
            .collect();
        for d in &decisions {
            seen.insert(d.fingerprint.clone(), now);
        }
        self.store(&seen);
        decisions
    }
}

/// The watchdog's own finding: it cannot remember what it sent.
fn outage_finding(table: &str, error: &str) -> Finding {
    Finding {
        fingerprint: Finding::fingerprint_of("watchdog", "watchdog", &format!("state:{table}")),
        status: Status::Firing,
        severity: Severity::Page,
        service: "watchdog".into(),
        module: None,
        kind: "watchdog".into(),
        target: table.into(),
        labels: BTreeMap::new(),
        summary: format!(
            "alert state table {table} cannot be read: pages may repeat (at most once per interval) and resolves wait"
        ),
        details: vec![error.to_string()],
        values: BTreeMap::new(),
    }
}

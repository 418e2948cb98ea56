//! One watchdog cycle, the same for the CLI and the Lambda: evaluate, then decide.

use serde::Serialize;

use crate::aws::Aws;
use crate::evaluate::{Evaluation, Scope, evaluate};
use crate::spec::Spec;
use crate::state::{AlertState, Decision, decide_stateless};

/// Everything one cycle produced: the findings (what is true) and the decisions (what the
/// notifier should send). This JSON is the contract with the notifier.
#[derive(Debug, Serialize)]
pub struct Report {
    /// What started the cycle: `schedule`, `cli`, or the state-change event.
    pub trigger: String,
    pub dry_run: bool,
    /// Set when nothing could be evaluated for this trigger (e.g. an unknown event type).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(flatten)]
    pub evaluation: Evaluation,
    pub decisions: Vec<Decision>,
}

/// Where alert state lives, if anywhere: the CLI's `--state-table`, else the spec's setting.
pub fn alert_state(spec: &Spec, aws: &Aws, table_override: Option<&str>) -> Option<AlertState> {
    let settings = spec.settings.state.as_ref();
    let table = table_override.or(settings.map(|s| s.table.as_str()))?;
    Some(AlertState {
        client: aws.dynamodb.clone(),
        table: table.to_string(),
        keep_resolved_for: settings.map_or_else(
            || crate::spec::Span::from_secs(30 * 86_400),
            |s| s.keep_resolved_for,
        ),
    })
}

pub async fn run(
    spec: &Spec,
    aws: &Aws,
    state: Option<&AlertState>,
    scope: &Scope,
    trigger: String,
    dry_run: bool,
) -> Report {
    let evaluation = evaluate(spec, aws, scope).await;
    let decisions = match state {
        Some(state) => {
            state
                .decide(&evaluation.findings, evaluation.evaluated_at, dry_run)
                .await
        }
        None => decide_stateless(&evaluation.findings, "no alert state table configured"),
    };
    for d in &decisions {
        tracing::info!(fingerprint = %d.fingerprint, action = ?d.action, severity = %d.severity, reason = %d.reason, "decision");
    }
    Report {
        trigger,
        dry_run,
        note: None,
        evaluation,
        decisions,
    }
}

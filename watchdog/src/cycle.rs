//! One watchdog cycle, the same for the CLI and the Lambda: evaluate, then decide.

use serde::Serialize;

use crate::aws::Aws;
use crate::evaluate::{Evaluation, Scope, evaluate};
use crate::notify::{Delivery, Held, Notifier, Outcome};
use crate::spec::Spec;
use crate::state::fallback::Ledger;
use crate::state::{AlertState, Cause, Decided, Decision, decide_stateless};

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
    /// What the notifier sent (empty on a dry run or without `settings.notify`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deliveries: Vec<Delivery>,
    /// Pages the notifier held back this run (silenced or inhibited).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<Held>,
    /// Events put on the notifier's EventBridge bus.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Delivery>,
}

/// Where alert state lives, if anywhere: the CLI's `--state-table`, else the spec's setting.
pub fn alert_state(spec: &Spec, aws: &Aws, table_override: Option<&str>) -> Option<AlertState> {
    let settings = spec.settings.state.as_ref();
    let table = table_override.or(settings.map(|s| s.table.as_str()))?;
    Some(AlertState {
        client: aws.dynamodb.clone(),
        table: table.to_string(),
        resolve_after: settings.map_or(1, |s| s.resolve_after),
        keep_resolved_for: settings.map_or_else(
            || crate::spec::Span::from_secs(30 * 86_400),
            |s| s.keep_resolved_for,
        ),
        unreadable_repeat: settings.map_or(3_600, |s| s.unreadable_repeat.as_secs()),
    })
}

/// The notifier for the spec's `settings.notify`, with its secrets read; `None` without it.
pub async fn notifier(spec: &Spec, aws: &Aws) -> Result<Option<Notifier>, String> {
    match &spec.settings.notify {
        Some(settings) => Notifier::load(settings, aws).await.map(Some),
        None => Ok(None),
    }
}

// Each argument is one independent input of a run (both callers pass them all).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    spec: &Spec,
    aws: &Aws,
    state: Option<&AlertState>,
    scope: &Scope,
    notifier: Option<&Notifier>,
    trigger: String,
    dry_run: bool,
    // Evaluation stops here (checks not done are unknown), leaving time to decide and send.
    deadline: Option<std::time::Instant>,
) -> Report {
    let mut evaluation = evaluate(spec, aws, scope, deadline).await;
    let now = evaluation.evaluated_at;
    let decisions = match state {
        Some(state) => match state.decide(&evaluation.findings, now, dry_run).await {
            Decided::Decisions(decisions) => decisions,
            Decided::Unreadable(error) if dry_run => decide_stateless(
                &evaluation.findings,
                &Cause::StateUnreadable {
                    error: error.to_string(),
                },
            ),
            Decided::Unreadable(error) => Ledger::for_table(&state.table, state.unreadable_repeat)
                .decide(
                    &mut evaluation.findings,
                    &state.table,
                    &error.to_string(),
                    now,
                ),
        },
        None => decide_stateless(&evaluation.findings, &Cause::NoStateTable),
    };
    for d in &decisions {
        tracing::info!(fingerprint = %d.fingerprint, action = ?d.action(), severity = %d.severity, reason = %d.cause, "decision");
    }
    let outcome = match notifier {
        Some(n) if !dry_run => n.deliver(&evaluation.findings, &decisions, state).await,
        _ => Outcome::default(),
    };
    if !dry_run {
        heartbeat(aws, &outcome).await;
    }
    Report {
        trigger,
        dry_run,
        note: None,
        evaluation,
        decisions,
        deliveries: outcome.deliveries,
        held: outcome.held,
        events: outcome.events,
    }
}

/// The watchdog watches itself: every run puts `Vigil/Watchdog heartbeat` = 1 (an alarm that
/// treats missing data as breaching fires when runs stop), and how many notifications were
/// sent and failed. Best effort: a failure is logged, never fatal.
async fn heartbeat(aws: &Aws, outcome: &Outcome) {
    use aws_sdk_cloudwatch::primitives::DateTime;
    use aws_sdk_cloudwatch::types::{MetricDatum, StandardUnit};
    let failed = outcome.deliveries.iter().filter(|d| !d.ok).count();
    let datum = |name: &str, value: usize| {
        MetricDatum::builder()
            .metric_name(name)
            .timestamp(DateTime::from(std::time::SystemTime::now()))
            .unit(StandardUnit::Count)
            .value(value as f64)
            .build()
    };
    let result = aws
        .cloudwatch
        .put_metric_data()
        .namespace(crate::spec::HEARTBEAT_NAMESPACE)
        .metric_data(datum("heartbeat", 1))
        .metric_data(datum(
            "notifications_sent",
            outcome.deliveries.len() - failed,
        ))
        .metric_data(datum("notifications_failed", failed))
        .send()
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %crate::aws::error_text(&e), "heartbeat metric not published");
    }
}

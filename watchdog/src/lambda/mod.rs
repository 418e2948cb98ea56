//! The Lambda entry point: one handler for scheduled and state-change events. The spec and the
//! AWS clients are set up once per cold start and reused by every invocation.

mod events;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

use crate::aws::Aws;
use crate::cycle::{self, Report};
use crate::evaluate::Evaluation;
use crate::metrics::now_secs;
use crate::spec;
use crate::state::AlertState;

struct Setup {
    /// A broken spec is answered on every invocation (not a crash loop at cold start).
    spec: Result<spec::Spec, String>,
    aws: Aws,
    state: Option<AlertState>,
    /// A missing secret is answered on every invocation, naming the variable or parameter.
    notifier: Result<Option<crate::notify::Notifier>, String>,
    dry_run: bool,
}

/// Set by the Lambda service; lambda_runtime panics without them, so say what is missing.
const RUNTIME_VARIABLES: [&str; 3] = [
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
];

pub async fn run() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let missing: Vec<&str> = RUNTIME_VARIABLES
        .into_iter()
        .filter(|v| std::env::var_os(v).is_none())
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "AWS_LAMBDA_RUNTIME_API is set but not {}: not a complete Lambda environment",
        missing.join(", ")
    );
    // The spec ships next to the binary in the deployment package (/var/task/alerts).
    let path = std::env::var("VIGIL_SPEC").unwrap_or_else(|_| "alerts".into());
    let spec = spec::load(std::path::Path::new(&path)).map_err(|e| e.to_string());
    if let Err(e) = &spec {
        tracing::error!(spec = %path, error = %e, "invalid alert spec");
    }
    let aws = Aws::load().await?;
    let table = std::env::var("VIGIL_STATE_TABLE").ok();
    let state = spec
        .as_ref()
        .ok()
        .and_then(|s| cycle::alert_state(s, &aws, table.as_deref()));
    let notifier = match &spec {
        Ok(s) => cycle::notifier(s, &aws).await,
        Err(_) => Ok(None),
    };
    if let Err(e) = &notifier {
        tracing::error!(error = %e, "notifier cannot start");
    }
    let dry_run = std::env::var("VIGIL_DRY_RUN").is_ok_and(|v| v == "1" || v == "true");
    // Lives as long as the process (one Lambda execution environment); leaking it gives the
    // handler a plain `&'static` instead of reference counting on every invocation.
    let setup: &'static Setup = Box::leak(Box::new(Setup {
        spec,
        aws,
        state,
        notifier,
        dry_run,
    }));
    tracing::info!(
        init_ms = started.elapsed().as_millis() as u64,
        "ready for events"
    );
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handle(setup, event.payload).await
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}

async fn handle(setup: &Setup, payload: Value) -> Result<Value, Error> {
    let spec = setup
        .spec
        .as_ref()
        .map_err(|e| Error::from(format!("invalid alert spec: {e}")))?;
    let notifier = setup
        .notifier
        .as_ref()
        .map_err(|e| Error::from(format!("notifier: {e}")))?;
    let trigger = events::classify(&payload);
    tracing::info!(trigger = %trigger.describe(), "invocation");
    let report = match events::scope_for(&trigger, spec, &setup.aws).await {
        Ok(scope) => {
            cycle::run(
                spec,
                &setup.aws,
                setup.state.as_ref(),
                &scope,
                notifier.as_ref(),
                trigger.describe(),
                setup.dry_run,
            )
            .await
        }
        Err(note) => {
            tracing::warn!(%note, "nothing to evaluate");
            Report {
                trigger: trigger.describe(),
                dry_run: setup.dry_run,
                note: Some(note),
                evaluation: Evaluation {
                    evaluated_at: now_secs(),
                    findings: vec![],
                    metric_calls: 0,
                    metric_queries: 0,
                    elapsed_ms: 0,
                },
                decisions: vec![],
                deliveries: vec![],
                held: vec![],
                events: vec![],
            }
        }
    };
    Ok(serde_json::to_value(&report)?)
}

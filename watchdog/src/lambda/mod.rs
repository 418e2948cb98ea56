//! The Lambda entry point: one handler for scheduled and state-change events. The spec and the
//! AWS clients are set up once per cold start and reused by every invocation.

mod events;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

use crate::aws::{Allowed, Aws};
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
    // The spec ships next to `bootstrap` in the deployment package: $LAMBDA_TASK_ROOT/alerts
    // (/var/task/alerts), unless VIGIL_SPEC names another place.
    let path =
        std::env::var("VIGIL_SPEC").unwrap_or_else(|_| match std::env::var("LAMBDA_TASK_ROOT") {
            Ok(root) => format!("{root}/alerts"),
            Err(_) => "alerts".into(),
        });
    let spec = spec::load(std::path::Path::new(&path)).map_err(|e| e.to_string());
    if let Err(e) = &spec {
        tracing::error!(spec = %path, error = %e, "invalid alert spec");
    }
    let table = std::env::var("VIGIL_STATE_TABLE").ok();
    // The clients may call exactly what the generated IAM policy grants for this spec.
    let allowed = spec.as_ref().map_or_else(
        |_| Default::default(),
        |s| crate::iam::operations_with_table(s, table.is_some()),
    );
    let aws = Aws::load(Allowed::Granted(allowed)).await?;
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
        handle(setup, event.payload, deadline(event.context.deadline)).await
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}

/// The invocation's deadline from `lambda-runtime-deadline-ms`: epoch milliseconds in AWS. A
/// value too small to be a date (cargo lambda's emulator sends its timeout, 600000) is taken as
/// the time left.
fn deadline(header_ms: u64) -> std::time::SystemTime {
    const YEAR_2001_MS: u64 = 978_307_200_000;
    let now = std::time::SystemTime::now();
    if header_ms < YEAR_2001_MS {
        now + std::time::Duration::from_millis(header_ms)
    } else {
        std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(header_ms)
    }
}

/// Time kept back from the invocation's deadline for deciding and sending: a quarter of what
/// is left, between 1 and 10 seconds.
fn evaluation_deadline(deadline: std::time::SystemTime) -> std::time::Instant {
    let left = deadline
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    let reserve = (left / 4).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(10),
    );
    std::time::Instant::now() + left.saturating_sub(reserve)
}

async fn handle(
    setup: &Setup,
    payload: Value,
    deadline: std::time::SystemTime,
) -> Result<Value, Error> {
    let spec = setup
        .spec
        .as_ref()
        .map_err(|e| Error::from(format!("invalid alert spec: {e}")))?;
    let notifier = setup
        .notifier
        .as_ref()
        .map_err(|e| Error::from(format!("notifier: {e}")))?;
    let trigger = events::classify(&payload);
    let evaluate_until = evaluation_deadline(deadline);
    tracing::info!(
        trigger = %trigger.describe(),
        evaluate_ms = evaluate_until
            .saturating_duration_since(std::time::Instant::now())
            .as_millis() as u64,
        "invocation"
    );
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
                Some(evaluate_until),
            )
            .await
        }
        Err(note) => {
            tracing::warn!(%note, "nothing to evaluate");
            Report {
                trigger: trigger.describe(),
                dry_run: setup.dry_run,
                note: Some(note.to_string()),
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

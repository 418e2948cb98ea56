//! The command line: `check` (once or on an interval), `validate`, `create-state-table`, and
//! `iam-policy`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use vigil_common::logging::LogFormat;

use crate::aws::{Allowed, Aws};
use crate::evaluate::Scope;
use crate::iam;
use crate::spec::{self, Span};
use crate::{cycle, report};

#[derive(Parser)]
#[command(name = "vigil-watchdog", version, about)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "VIGIL_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// The readable report.
    Text,
    /// The report as JSON (findings and decisions, as the notifier reads them).
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Evaluate every SLO and check, decide what to page, and print the report.
    Check {
        /// The spec directory (or one file).
        #[arg(long, default_value = "alerts/", env = "VIGIL_SPEC")]
        spec: PathBuf,
        /// Evaluate once and exit (otherwise repeat every --interval).
        #[arg(long)]
        once: bool,
        /// Time between evaluations without --once, e.g. 1m.
        #[arg(long, default_value = "1m", value_parser = Span::parse)]
        interval: Span,
        /// Decide what would be paged without writing alert state.
        #[arg(long)]
        dry_run: bool,
        /// Show why every SLO and check passed or failed.
        #[arg(long)]
        explain: bool,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// DynamoDB table for alert state (overrides the spec's `settings.state.table`).
        #[arg(long, env = "VIGIL_STATE_TABLE")]
        state_table: Option<String>,
    },
    /// Validate the spec and print what it declares.
    Validate {
        #[arg(long, default_value = "alerts/", env = "VIGIL_SPEC")]
        spec: PathBuf,
    },
    /// Print the least-privilege IAM policy document the spec needs (JSON). Without
    /// --account-id/--region/--partition the ARNs carry `${account_id}`, `${region}` and
    /// `${partition}`, for Terraform's templatefile().
    IamPolicy {
        #[arg(long, default_value = "alerts/", env = "VIGIL_SPEC")]
        spec: PathBuf,
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        region: Option<String>,
        #[arg(long)]
        partition: Option<String>,
    },
    /// Write the dashboards and alarms that follow from the spec (or, with --check, say which
    /// generated file is stale).
    Render(crate::render::cli::RenderArgs),
    /// The state of every SLO now and over its period, with the incidents of the period.
    Report(crate::report::slo::ReportArgs),
    /// Create the alert-state table (with TTL) named in the spec, for local runs.
    CreateStateTable {
        #[arg(long, default_value = "alerts/", env = "VIGIL_SPEC")]
        spec: PathBuf,
        #[arg(long, env = "VIGIL_STATE_TABLE")]
        state_table: Option<String>,
    },
}

fn load_spec(path: &std::path::Path) -> Option<spec::Spec> {
    match spec::load(path) {
        Ok(spec) => Some(spec),
        Err(errors) => {
            eprint!("{errors}");
            None
        }
    }
}

pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Render(args) => crate::render::cli::run(args),
        Command::Report(args) => crate::report::run_slo_report(args).await,
        Command::Validate { spec } => {
            let Some(spec) = load_spec(&spec) else {
                return Ok(ExitCode::from(2));
            };
            let slos: usize = spec.services.values().map(|s| s.slos.len()).sum();
            let checks: usize = spec.services.values().map(|s| s.checks.len()).sum();
            println!(
                "spec ok: {} services, {slos} SLOs, {checks} checks; alert state: {}",
                spec.services.len(),
                spec.settings
                    .state
                    .as_ref()
                    .map_or("none (stateless)", |s| s.table.as_str())
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::IamPolicy {
            spec,
            account_id,
            region,
            partition,
        } => {
            let defaults = iam::Target::default();
            let target = iam::Target {
                partition: partition.unwrap_or(defaults.partition),
                region: region.unwrap_or(defaults.region),
                account: account_id.unwrap_or(defaults.account),
            };
            let Some(spec) = load_spec(&spec) else {
                return Ok(ExitCode::from(2));
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&iam::policy(&spec, &target))?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::CreateStateTable { spec, state_table } => {
            create_state_table(&spec, state_table).await
        }
        Command::Check {
            spec,
            once,
            interval,
            dry_run,
            explain,
            output,
            state_table,
        } => {
            let Some(spec) = load_spec(&spec) else {
                return Ok(ExitCode::from(2));
            };
            let aws = Aws::load(Allowed::Granted(iam::operations_with_table(
                &spec,
                state_table.is_some(),
            )))
            .await?;
            let state = cycle::alert_state(&spec, &aws, state_table.as_deref());
            let notifier = cycle::notifier(&spec, &aws)
                .await
                .map_err(|e| anyhow::anyhow!("notifier: {e}"))?;
            loop {
                let report = cycle::run(
                    &spec,
                    &aws,
                    state.as_ref(),
                    &Scope::Everything,
                    notifier.as_ref(),
                    "cli".into(),
                    dry_run,
                    None,
                )
                .await;
                match output {
                    Output::Text => print!("{}", report::render(&report, explain)),
                    Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                }
                if once {
                    return Ok(ExitCode::SUCCESS);
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval.as_duration()) => {}
                    _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
                }
            }
        }
    }
}

/// `create-state-table`: the alert-state table, for local runs and tests.
async fn create_state_table(
    spec: &std::path::Path,
    state_table: Option<String>,
) -> anyhow::Result<ExitCode> {
    let Some(spec) = load_spec(spec) else {
        return Ok(ExitCode::from(2));
    };
    let aws = Aws::load(Allowed::AnyInTable).await?;
    let Some(state) = cycle::alert_state(&spec, &aws, state_table.as_deref()) else {
        anyhow::bail!("no table: set settings.state.table in the spec or pass --state-table");
    };
    crate::state::create_table(&state.client, &state.table)
        .await
        .map_err(|e| anyhow::anyhow!("creating table {}: {e}", state.table))?;
    println!("table {} ready", state.table);
    Ok(ExitCode::SUCCESS)
}

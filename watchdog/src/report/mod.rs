//! The human-readable report printed by `vigil-watchdog check`.

pub mod slo;
pub mod slo_view;

use std::fmt::Write;
use std::process::ExitCode;

use aws_sdk_cloudwatch::primitives::{DateTime, DateTimeFormat};

use crate::cycle::Report;
use crate::finding::{Finding, Status};
use crate::state::Action;

fn tag(f: &Finding) -> String {
    match f.status {
        Status::Ok => "ok".into(),
        Status::Firing => format!("FIRING {}", f.severity),
        Status::Unknown => "UNKNOWN".into(),
    }
}

fn section(out: &mut String, title: &str, findings: &[&Finding], explain: bool) {
    if findings.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n{title}");
    for f in findings {
        let _ = writeln!(out, "  [{}] {} ({})", tag(f), f.summary, f.fingerprint);
        // Details explain every verdict with --explain; without it, only the bad ones.
        if explain || f.status != Status::Ok {
            for line in &f.details {
                let _ = writeln!(out, "      {line}");
            }
        }
    }
}

/// Renders the report; `explain` adds the reasoning behind every verdict.
pub fn render(report: &Report, explain: bool) -> String {
    let e = &report.evaluation;
    let when = DateTime::from_secs(e.evaluated_at as i64)
        .fmt(DateTimeFormat::DateTime)
        .unwrap_or_else(|_| e.evaluated_at.to_string());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "vigil-watchdog report at {when} ({}): {} ms, {} GetMetricData call(s) for {} series",
        report.trigger, e.elapsed_ms, e.metric_calls, e.metric_queries
    );
    if let Some(note) = &report.note {
        let _ = writeln!(out, "note: {note}");
    }
    let slos: Vec<&Finding> = e.findings.iter().filter(|f| f.kind == "slo").collect();
    let checks: Vec<&Finding> = e.findings.iter().filter(|f| f.kind != "slo").collect();
    section(&mut out, "SLOs", &slos, explain);
    section(&mut out, "Checks", &checks, explain);

    let _ = writeln!(
        out,
        "\nDecisions{}",
        if report.dry_run {
            " (dry run: nothing sent, state not written)"
        } else {
            ""
        }
    );
    if report.decisions.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for d in &report.decisions {
        let verb = match d.action() {
            Action::Page => "PAGE",
            Action::Ticket => "TICKET",
            Action::Resolve => "RESOLVE",
            Action::FollowUp | Action::Quiet => "quiet",
        };
        let _ = writeln!(out, "  {verb:<7} {} ({})", d.fingerprint, d.cause);
    }
    let firing = e
        .findings
        .iter()
        .filter(|f| f.status == Status::Firing)
        .count();
    let unknown = e
        .findings
        .iter()
        .filter(|f| f.status == Status::Unknown)
        .count();
    let _ = writeln!(
        out,
        "\n{} finding(s): {} ok, {firing} firing, {unknown} unknown",
        e.findings.len(),
        e.findings.len() - firing - unknown
    );
    out
}

/// `vigil-watchdog report`: builds the SLO report (`slo`) and writes it in the chosen format
/// (`slo_view`).
pub async fn run_slo_report(args: slo::ReportArgs) -> anyhow::Result<ExitCode> {
    let spec = match crate::spec::load(&args.spec) {
        Ok(spec) => spec,
        Err(errors) => {
            eprint!("{errors}");
            return Ok(ExitCode::from(2));
        }
    };
    // Run by people with their own credentials: any operation in the IAM table.
    let aws = crate::aws::Aws::load(crate::aws::Allowed::AnyInTable).await?;
    let now = crate::metrics::now_secs();
    let report = match slo::build(&spec, &aws, args.month, args.state_table.as_deref(), now).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot report: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let text = match args.format {
        slo::Format::Text => slo_view::text(&report),
        slo::Format::Markdown => slo_view::markdown(&report),
        slo::Format::Html => slo_view::html(&report),
    };
    match &args.out {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

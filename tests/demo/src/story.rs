//! The demo's story: baseline traffic, the payment outage, the page, the recovery, the resolve,
//! then the summary. The watchdog runs on a fixed schedule throughout (the EventBridge rule's
//! stand-in); everything shown is read back from the stand-ins that received it.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::Args;
use crate::lambda::{Run, tail};
use crate::show::{Printer, clock, now_unix, now_unix_f64, print_email};
use crate::stack::{Options, Stack, Tools, claim_port};
use crate::stop;

/// The SLO the outage burns.
const SLO: &str = "slo:checkout:checkout-success-rate";
/// How long the outage may take to page, and the recovery to resolve, before the demo fails.
const PAGE_DEADLINE: Duration = Duration::from_secs(180);
const RESOLVE_DEADLINE: Duration = Duration::from_secs(240);
/// The outage starts no later than this second of a minute, so the minute it starts in fails
/// enough to burn (see the spec's factor).
const LATEST_START_SECOND: u64 = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Baseline,
    Outage,
    Recovering,
    Done,
}

/// One moment of the timeline, in unix seconds, with the run that saw it.
#[derive(Debug, Clone, Copy, Default)]
struct Moment {
    at: f64,
    run: Option<usize>,
}

#[derive(Debug, Default)]
struct Timeline {
    outage_start: Option<Moment>,
    /// The end of the first minute holding outage traffic: from then on the watchdog's windows
    /// (whole minutes) can see the burn.
    burn_visible: Option<u64>,
    page: Option<Moment>,
    outage_end: Option<Moment>,
    resolve: Option<Moment>,
}

pub fn run(args: &Args) -> anyhow::Result<bool> {
    let p = Printer::start();
    let fast = args.fast;
    let rate = args.rate.unwrap_or(if fast { 40.0 } else { 200.0 });
    let every = Duration::from_secs(args.schedule_secs.unwrap_or(if fast { 5 } else { 10 }));
    anyhow::ensure!(
        rate > 0.0 && rate <= 5000.0,
        "--rate must be between 0 and 5000"
    );
    anyhow::ensure!(
        (1..=30).contains(&every.as_secs()),
        "--schedule-secs must be between 1 and 30 (the demo's windows are one minute)"
    );
    let root = args.root.clone().unwrap_or_else(|| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .canonicalize()
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../..").into())
    });

    let tools = Tools::find()?;
    let api_port = claim_port(
        args.agent_api_port,
        "the agent's API, read by `vigil-agent top`",
        "--agent-api-port",
    )?;
    let otlp_port = claim_port(
        args.otlp_port,
        "the agent's OTLP/gRPC receiver",
        "--otlp-port",
    )?;
    let scratch = tempfile::Builder::new()
        .prefix("vigil-demo-")
        .tempdir()
        .context("creating a scratch directory")?;

    p.step("Vigil demo: the simulated shop, watched end to end on this machine");
    let mut stack = Stack::start(
        &p,
        &tools,
        &Options {
            root,
            api_port,
            otlp_port,
            rate,
            scratch: scratch.path().to_owned(),
        },
    )?;
    p.step(format!(
        "Watching: the EventBridge schedule's stand-in invokes the watchdog every {} s",
        every.as_secs()
    ));

    let mut runs: Vec<Run> = Vec::new();
    let mut t = Timeline::default();
    let mut phase = Phase::Baseline;
    let traffic_started = Instant::now();
    let baseline = if fast {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(30)
    };
    let mut next_tick = Instant::now();
    let mut page_shown = false;
    while phase != Phase::Done {
        // In the fast variant the outage ends on the minute boundary that makes it visible.
        let outage_ends_at = (fast && phase == Phase::Outage && t.outage_end.is_none())
            .then_some(t.burn_visible)
            .flatten();
        let wake = match outage_ends_at {
            Some(b) => next_tick.min(instant_of(b as f64)),
            None => next_tick,
        };
        stop::sleep_until(wake)?;
        if let Some(b) = outage_ends_at
            && now_unix() >= b
        {
            end_outage(&p, &stack, &mut t, runs.len())?;
        }
        if Instant::now() < next_tick {
            continue;
        }
        next_tick += every;
        stack.check_alive()?;

        let started = Instant::now();
        let started_unix = now_unix_f64();
        let report = stack.lambda.invoke_scheduled()?;
        let run = Run {
            number: runs.len() + 1,
            started_unix,
            took: started.elapsed(),
            report,
        };
        print_run(&p, &run);
        runs.push(run);

        match phase {
            Phase::Baseline => {
                let second = now_unix() % 60;
                if traffic_started.elapsed() >= baseline
                    && runs.len() >= 2
                    && second <= LATEST_START_SECOND
                {
                    stack.set_outage(true)?;
                    let at = now_unix_f64();
                    let visible = (at as u64 / 60 + 1) * 60;
                    t.outage_start = Some(Moment {
                        at,
                        run: Some(runs.len()),
                    });
                    t.burn_visible = Some(visible);
                    p.step(p.red(&format!(
                        "Payment outage injected: the payment gateway refuses every payment, so every checkout fails. \
                         The watchdog's windows are whole minutes: the burn is visible from {} on",
                        clock(visible)
                    )));
                    phase = Phase::Outage;
                }
            }
            Phase::Outage => {
                let channel = stack.slack.channel();
                let emails = stack.emails();
                if !page_shown && !channel.is_empty() && !emails.is_empty() {
                    page_shown = true;
                    let page_run = runs
                        .iter()
                        .rev()
                        .find(|r| r.decided("page", SLO))
                        .map(|r| r.number);
                    t.page = Some(Moment {
                        at: now_unix_f64(),
                        run: page_run,
                    });
                    p.step(p.red("PAGE: the watchdog paged the on-call (Slack, SNS, email)"));
                    p.line("Slack #shop-oncall (the stand-in's channel, as a reader sees it):");
                    p.slack_message("#shop-oncall", &channel[0].body, false);
                    p.line("Email received by the SMTP relay (aiosmtpd):");
                    print_email(&p, &emails[0]);
                    if !fast {
                        end_outage(&p, &stack, &mut t, runs.len())?;
                    }
                }
                if page_shown && t.outage_end.is_some() {
                    phase = Phase::Recovering;
                } else if let Some(b) = t.burn_visible
                    && !page_shown
                    && now_unix_f64() > b as f64 + PAGE_DEADLINE.as_secs_f64()
                {
                    bail!(
                        "no page {} s after the burn became visible; the watchdog's log ends:\n{}",
                        PAGE_DEADLINE.as_secs(),
                        tail(&stack.lambda.function.log(), 30)
                    );
                }
            }
            Phase::Recovering => {
                let channel = stack.slack.channel();
                let emails = stack.emails();
                let turned = channel.first().is_some_and(|m| m.updated.is_some());
                if turned && emails.len() >= 2 {
                    t.resolve = Some(Moment {
                        at: now_unix_f64(),
                        run: runs
                            .iter()
                            .rev()
                            .find(|r| r.decided("resolve", SLO))
                            .map(|r| r.number),
                    });
                    p.step(p.green(
                        "RESOLVED: checkout recovered; the same Slack message turned green in place",
                    ));
                    p.slack_message("#shop-oncall", &channel[0].body, true);
                    p.line("Resolve email (a reply to the page):");
                    print_email(&p, &emails[1]);
                    phase = Phase::Done;
                } else if let Some(end) = t.outage_end
                    && now_unix_f64() > end.at + RESOLVE_DEADLINE.as_secs_f64()
                {
                    bail!(
                        "no resolve {} s after the outage ended; the watchdog's log ends:\n{}",
                        RESOLVE_DEADLINE.as_secs(),
                        tail(&stack.lambda.function.log(), 30)
                    );
                }
            }
            Phase::Done => {}
        }
    }

    let ok = summarize(&p, args, &mut stack, &runs, &t)?;
    if args.keep {
        p.step(format!(
            "--keep: everything stays up. In another terminal: vigil-agent top --url http://127.0.0.1:{api_port}/metrics \
             (logs under {}). Ctrl-C stops it all.",
            stack.log_dir.display()
        ));
        loop {
            stop::sleep_until(Instant::now() + Duration::from_secs(3600)).ok();
            if stop::requested() {
                break;
            }
        }
    }
    p.line("stopping everything the demo started");
    drop(stack);
    Ok(ok)
}

fn end_outage(p: &Printer, stack: &Stack, t: &mut Timeline, runs: usize) -> anyhow::Result<()> {
    stack.set_outage(false)?;
    t.outage_end = Some(Moment {
        at: now_unix_f64(),
        run: Some(runs),
    });
    p.step(p.green(
        "Outage over: payments succeed again (the watchdog resolves once a whole minute is clean)",
    ));
    Ok(())
}

/// The `Instant` of a unix time (now if it is past).
fn instant_of(unix: f64) -> Instant {
    let ahead = unix - now_unix_f64();
    Instant::now() + Duration::from_secs_f64(ahead.max(0.0))
}

/// One line per run: what the watchdog found and decided.
fn print_run(p: &Printer, run: &Run) {
    let findings = run.report["findings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let firing: Vec<&Value> = findings.iter().filter(|f| f["status"] != "ok").collect();
    let decisions: Vec<String> = run
        .decisions()
        .iter()
        .filter(|(a, _)| a != "already_notified")
        .map(|(a, f)| format!("{} {f}", a.to_uppercase()))
        .collect();
    let slo = run
        .finding(SLO)
        .or_else(|| run.finding(&format!("{SLO}/unknown")))
        .and_then(|f| f["summary"].as_str())
        .unwrap_or("checkout SLO: no finding")
        .to_owned();
    let mut line = format!(
        "watchdog run {} ({} ms): {} findings, {} ok; {}",
        run.number,
        run.took.as_millis(),
        findings.len(),
        findings.len() - firing.len(),
        slo
    );
    if !decisions.is_empty() {
        line.push_str(&format!(" → {}", decisions.join(", ")));
    }
    let line = if run.decided("page", SLO) {
        p.red(&line)
    } else if run.decided("resolve", SLO) {
        p.green(&line)
    } else {
        line
    };
    p.line(line);
}

/// Prints the summary, checks the story's promises, writes `--summary-json`; true if all held.
fn summarize(
    p: &Printer,
    args: &Args,
    stack: &mut Stack,
    runs: &[Run],
    t: &Timeline,
) -> anyhow::Result<bool> {
    // Give the agent a moment to ship the last batches, then read its counters.
    std::thread::sleep(Duration::from_secs(2));
    let sent = stack.agent_sent();
    // With --keep the shop goes on (for `vigil-agent top`); otherwise it stops and reports.
    let requests = if args.keep { None } else { stack.stop_shop() };
    let channel = stack.slack.channel();
    let emails = stack.emails();
    // SNS keeps what it publishes to itself (moto's record of it is too large to read back
    // once the logs are in): count the Publish calls it accepted, with their message ids.
    let sns: usize = runs.iter().map(|r| r.accepted_by("oncall-sns")).sum();
    let nr_spans = stack.newrelic.span_count();
    let nr_logs: usize = stack
        .newrelic
        .logs()
        .iter()
        .flat_map(|r| r.resource_logs.iter())
        .flat_map(|rl| rl.scope_logs.iter())
        .map(|sl| sl.log_records.len())
        .sum();
    let nr_metrics: usize = stack
        .newrelic
        .metrics()
        .iter()
        .flat_map(|r| r.resource_metrics.iter())
        .flat_map(|rm| rm.scope_metrics.iter())
        .map(|sm| sm.metrics.len())
        .sum();
    let log_groups = stack.rt.block_on(async {
        let logs = aws_sdk_cloudwatchlogs::Client::new(&stack.moto.sdk_config().await);
        logs.describe_log_groups()
            .log_group_name_prefix("/shop/demo/")
            .send()
            .await
            .map(|o| o.log_groups().len())
            .unwrap_or(0)
    });

    let evaluations_after_burn = match (t.burn_visible, t.page.and_then(|m| m.run)) {
        (Some(b), Some(page_run)) => Some(
            runs.iter()
                .filter(|r| r.started_unix >= b as f64 && r.number <= page_run)
                .count(),
        ),
        _ => None,
    };
    let page_emails = emails
        .iter()
        .filter(|e| e.header("Subject").is_some_and(|s| s.starts_with("[PAGE]")))
        .count();
    let resolve_emails = emails
        .iter()
        .filter(|e| {
            e.header("Subject")
                .is_some_and(|s| s.starts_with("[RESOLVED]"))
        })
        .count();
    let resolved_in_place = channel.len() == 1
        && channel[0].updated.is_some()
        && channel[0].body["text"]
            .as_str()
            .is_some_and(|s| s.starts_with("[RESOLVED]"));

    let mut problems = Vec::new();
    if channel.len() != 1 {
        problems.push(format!(
            "expected exactly one Slack message, the channel has {}",
            channel.len()
        ));
    }
    if !resolved_in_place {
        problems.push("the Slack page was not turned into [RESOLVED] in place".to_owned());
    }
    if page_emails != 1 || resolve_emails != 1 {
        problems.push(format!(
            "expected one page email and one resolve email, got {page_emails} and {resolve_emails}"
        ));
    }
    match evaluations_after_burn {
        Some(n) if (1..=2).contains(&n) => {}
        other => problems.push(format!(
            "the page came {other:?} evaluations after the burn became visible (at most 2 expected)"
        )),
    }

    let rel = |at: f64| p.elapsed(instant_of_past(at));
    p.step("Summary");
    println!("  Timeline (wall clock, UTC; +s since the demo started):");
    let moment = |name: &str, m: Option<Moment>, extra: &str| {
        if let Some(m) = m {
            println!(
                "    {name:<16} {} (+{:.0} s){}{extra}",
                clock(m.at as u64),
                rel(m.at),
                m.run.map(|r| format!(", run {r}")).unwrap_or_default()
            );
        }
    };
    let page_note = match (t.outage_start, t.page, evaluations_after_burn) {
        (Some(s), Some(pg), Some(n)) => format!(
            ": {:.0} s after the outage started, evaluation {n} after the burn became visible",
            pg.at - s.at
        ),
        _ => String::new(),
    };
    let resolve_note = match (t.outage_end, t.resolve) {
        (Some(e), Some(r)) => format!(": {:.0} s after the outage ended", r.at - e.at),
        _ => String::new(),
    };
    let burn = t.burn_visible.map(|b| Moment {
        at: b as f64,
        run: None,
    });
    let mut moments = [
        ("outage start", t.outage_start, String::new()),
        (
            "burn visible",
            burn,
            " (the first whole minute with the outage ended)".to_owned(),
        ),
        ("page", t.page, page_note),
        ("outage end", t.outage_end, String::new()),
        ("resolved", t.resolve, resolve_note),
    ];
    moments.sort_by(|a, b| {
        let at = |m: &Option<Moment>| m.map_or(f64::MAX, |m| m.at);
        at(&a.1).total_cmp(&at(&b.1))
    });
    for (name, m, extra) in &moments {
        moment(name, *m, extra);
    }

    let get = |c: &str| sent.get(c).copied().unwrap_or(0.0);
    println!("  Shipped by vigil-agent (events each backend accepted):");
    println!(
        "    CloudWatch Logs  {:>9} log events in {log_groups} groups /shop/demo/<module> (moto)",
        get("cloudwatch_logs")
    );
    println!(
        "    CloudWatch       {:>9} span metric points, namespace Vigil/SpanMetrics (moto)",
        get("span_metrics")
    );
    println!(
        "    X-Ray            {:>9} spans of sampled traces: every error or slow trace, 10 % of the rest (moto)",
        get("xray")
    );
    println!(
        "    New Relic        {:>9} events; the stand-in decoded {nr_spans} spans, {nr_logs} log records, {nr_metrics} metrics",
        get("newrelic")
    );
    if let Some(n) = requests {
        println!("    (the shop simulator generated {n} user requests)");
    }
    println!("  Notifications:");
    println!(
        "    Slack #shop-oncall {} message(s){}; email {} page + {} resolve; SNS shop-oncall {} message(s) accepted",
        channel.len(),
        if resolved_in_place {
            ", the page updated in place to [RESOLVED]"
        } else {
            ""
        },
        page_emails,
        resolve_emails,
        sns
    );
    println!("  The watchdog's decision per run:");
    for line in run_table(runs) {
        println!("    {line}");
    }
    println!("  Where to look:");
    // Outside the scratch directory, which goes when the demo ends.
    let report = std::env::temp_dir().join("vigil-demo-slo-report.html");
    match stack.slo_report(&report) {
        Ok(()) => println!("    HTML SLO report: {}", report.display()),
        Err(e) => println!("    HTML SLO report: not written ({e:#})"),
    }
    println!("    Dashboards:      dashboards/ (generated from the alert spec)");
    println!(
        "    Live agent:      vigil-agent top --url http://127.0.0.1:{}/metrics  (start the demo with --keep)",
        stack.api_port
    );
    println!(
        "    The demo's spec and agent config: examples/shop-demo/alerts/shop.yaml, examples/shop-demo/agent.toml"
    );

    if problems.is_empty() {
        p.step(p.green("Demo complete: one page for the outage, one resolve, nothing else sent"));
    } else {
        for problem in &problems {
            p.step(p.red(&format!("NOT AS EXPECTED: {problem}")));
        }
    }

    if let Some(path) = &args.summary_json {
        let moment_json = |m: Option<Moment>| {
            m.map(|m| json!({"at": m.at, "run": m.run}))
                .unwrap_or(Value::Null)
        };
        let doc = json!({
            "ok": problems.is_empty(),
            "problems": problems,
            "outage_start": moment_json(t.outage_start),
            "burn_visible": t.burn_visible,
            "page": moment_json(t.page),
            "evaluations_after_burn": evaluations_after_burn,
            "outage_end": moment_json(t.outage_end),
            "resolve": moment_json(t.resolve),
            "slack_messages": channel.len(),
            "slack_resolved_in_place": resolved_in_place,
            "page_emails": page_emails,
            "resolve_emails": resolve_emails,
            "emails": emails.len(),
            "sns_messages": sns,
            "shipped": sent,
            "newrelic": {"spans": nr_spans, "log_records": nr_logs, "metrics": nr_metrics},
            "cloudwatch_log_groups": log_groups,
            "shop_requests": requests,
            "runs": runs.iter().map(|r| json!({
                "number": r.number,
                "at": r.started_unix,
                "decisions": r.decisions(),
            })).collect::<Vec<_>>(),
        });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(problems.is_empty())
}

fn instant_of_past(unix: f64) -> Instant {
    let ago = now_unix_f64() - unix;
    Instant::now()
        .checked_sub(Duration::from_secs_f64(ago.max(0.0)))
        .unwrap_or_else(Instant::now)
}

/// Runs with the same decisions folded into one line: `runs 1–4: nothing to send`.
fn run_table(runs: &[Run]) -> Vec<String> {
    let describe = |r: &Run| {
        let d: Vec<String> = r
            .decisions()
            .iter()
            .map(|(a, f)| format!("{a} {f}"))
            .collect();
        if d.is_empty() {
            "all ok, nothing to send".to_owned()
        } else {
            d.join("; ")
        }
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < runs.len() {
        let text = describe(&runs[i]);
        let mut j = i;
        while j + 1 < runs.len() && describe(&runs[j + 1]) == text {
            j += 1;
        }
        let span = if i == j {
            format!("run {}", runs[i].number)
        } else {
            format!("runs {}–{}", runs[i].number, runs[j].number)
        };
        out.push(format!(
            "{span:<12} {} {text}",
            clock(runs[i].started_unix as u64)
        ));
        i = j + 1;
    }
    out
}

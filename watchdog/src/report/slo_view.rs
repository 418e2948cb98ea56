//! The SLO report drawn three ways: plain text, Markdown for Slack, and a self-contained HTML
//! page whose charts are inline SVG (one budget burn-down per SLO, one incidents timeline).

use std::fmt::Write;

use super::slo::{Compliance, Incident, Report, SloReport, WindowBurn, duration, when};
use crate::slo::burn::Verdict;

fn pct(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(
        || "no data".into(),
        |x| format!("{:.*}%", digits, x * 100.0),
    )
}

fn rate(x: Option<f64>) -> String {
    x.map_or_else(|| "no data".into(), |x| format!("{x:.2}×"))
}

fn objective(x: f64) -> String {
    crate::render::cloudwatch::fmt_num(x)
}

fn compliance_word(c: &Compliance) -> &'static str {
    match c {
        Compliance::Met => "MET",
        Compliance::Breached => "BREACHED",
        Compliance::NoData => "NO DATA",
    }
}

fn verdict_word(v: &Verdict) -> &'static str {
    match v {
        Verdict::Firing => "FIRING",
        Verdict::BelowFactor => "ok",
        Verdict::NoData => "no data",
        Verdict::TooFewEvents => "too few events",
    }
}

fn window_line(w: &WindowBurn) -> String {
    format!(
        "{} {}/{} ≥ {}×: {} / {} → {}",
        w.severity,
        w.long,
        w.short,
        objective(w.factor),
        rate(w.long_rate),
        rate(w.short_rate),
        verdict_word(&w.verdict)
    )
}

fn incident_line(i: &Incident, now: u64) -> String {
    match i.resolved {
        Some(r) => format!(
            "{} {}: opened {}, resolved {} ({})",
            i.severity,
            i.fingerprint,
            when(i.opened),
            when(r),
            duration(r.saturating_sub(i.opened))
        ),
        None => format!(
            "{} {}: opened {}, still open ({} so far)",
            i.severity,
            i.fingerprint,
            when(i.opened),
            duration(now.saturating_sub(i.opened))
        ),
    }
}

fn title(report: &Report) -> String {
    match report.month {
        Some(m) => format!(
            "SLO compliance for {m} ({} – {})",
            when(report.timeline.0),
            when(report.timeline.1)
        ),
        None => format!(
            "SLO report at {} (each SLO over its period)",
            when(report.generated_at)
        ),
    }
}

fn slo_headline(s: &SloReport) -> String {
    let mut line = format!(
        "SLI {} ({} bad of {} events), objective {}% over {}, error budget left {}",
        pct(s.counts.sli(), 3),
        s.counts.bad.round(),
        s.counts.total.round(),
        objective(s.objective),
        s.period,
        pct(s.budget_left(), 1)
    );
    if let Some(since) = s.objective_since {
        line.push_str(&format!(
            " (measured since {}, when the objective became {}%)",
            when(since),
            objective(s.objective)
        ));
    }
    line
}

pub fn text(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", title(report));
    if report.slos.is_empty() {
        let _ = writeln!(out, "\nNo SLOs are declared in the spec.");
    }
    for s in &report.slos {
        let _ = writeln!(
            out,
            "\n[{}] {}/{}",
            compliance_word(&s.compliance()),
            s.service,
            s.name
        );
        let _ = writeln!(out, "  {}", slo_headline(s));
        if let Some(e) = &s.error {
            let _ = writeln!(out, "  could not read: {e}");
        }
        for w in &s.windows {
            let _ = writeln!(out, "  burn now: {}", window_line(w));
        }
        if s.incidents.is_empty() {
            let _ = writeln!(out, "  incidents: none");
        }
        for i in &s.incidents {
            let _ = writeln!(out, "  incident: {}", incident_line(i, report.generated_at));
        }
    }
    let _ = writeln!(out, "\nIncidents in the period: {}", report.incidents.len());
    for i in &report.incidents {
        let _ = writeln!(out, "  {}", incident_line(i, report.generated_at));
    }
    if let Some(note) = &report.state_note {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

/// Slack's mrkdwn: `*bold*`, `•` bullets, backticks; no tables or headings.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "*{}*", title(report));
    let met = report
        .slos
        .iter()
        .filter(|s| s.compliance() == Compliance::Met)
        .count();
    let _ = writeln!(out, "{met} of {} SLOs within budget\n", report.slos.len());
    for s in &report.slos {
        let icon = match s.compliance() {
            Compliance::Met => ":large_green_circle:",
            Compliance::Breached => ":red_circle:",
            Compliance::NoData => ":white_circle:",
        };
        let _ = writeln!(
            out,
            "{icon} *{}/{}* — {}",
            s.service,
            s.name,
            compliance_word(&s.compliance())
        );
        let _ = writeln!(out, "• {}", slo_headline(s));
        for w in &s.windows {
            let _ = writeln!(out, "• burn now: `{}`", window_line(w));
        }
        for i in &s.incidents {
            let _ = writeln!(out, "• incident: {}", incident_line(i, report.generated_at));
        }
        if let Some(e) = &s.error {
            let _ = writeln!(out, "• could not read: {e}");
        }
    }
    if let Some(note) = &report.state_note {
        let _ = writeln!(out, "\n_{note}_");
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 180.0;
const PAD: f64 = 36.0;

/// Budget left (100 % .. -100 %, clipped) against time over the SLO's range.
fn burndown_svg(s: &SloReport) -> String {
    let id = format!("{}/{}", s.service, s.name);
    let mut svg = format!(
        "<svg class=\"burndown\" data-slo=\"{}\" role=\"img\" aria-label=\"error budget burn-down of {}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" xmlns=\"http://www.w3.org/2000/svg\">",
        esc(&id),
        esc(&id)
    );
    let plot_w = WIDTH - 2.0 * PAD;
    let plot_h = HEIGHT - 2.0 * PAD;
    // y: +100 % at the top, -100 % at the bottom, 0 (budget spent) in the middle.
    let y_of = |left: f64| PAD + (1.0 - left.clamp(-1.0, 1.0)) / 2.0 * plot_h;
    let span = (s.end.saturating_sub(s.start)).max(1) as f64;
    let x_of = |ts: u64| PAD + (ts.saturating_sub(s.start) as f64 / span).min(1.0) * plot_w;
    let _ = write!(
        svg,
        "<rect x=\"{PAD}\" y=\"{PAD}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"#f7f7f7\" stroke=\"#ccc\"/>\
         <line x1=\"{PAD}\" x2=\"{}\" y1=\"{y0}\" y2=\"{y0}\" stroke=\"#d62728\" stroke-dasharray=\"4 3\"/>\
         <text x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"#d62728\" text-anchor=\"end\">budget spent</text>\
         <text x=\"4\" y=\"{}\" font-size=\"10\">100%</text><text x=\"4\" y=\"{}\" font-size=\"10\">-100%</text>\
         <text x=\"{PAD}\" y=\"{}\" font-size=\"10\">{}</text><text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{}</text>",
        WIDTH - PAD,
        WIDTH - PAD - 4.0,
        y_of(0.0) - 4.0,
        y_of(1.0) + 4.0,
        y_of(-1.0),
        HEIGHT - 8.0,
        esc(&when(s.start)),
        WIDTH - PAD,
        HEIGHT - 8.0,
        esc(&when(s.end)),
        y0 = y_of(0.0),
    );
    if s.burndown.is_empty() {
        let _ = write!(
            svg,
            "<text class=\"nodata\" x=\"{}\" y=\"{}\" font-size=\"16\" text-anchor=\"middle\" fill=\"#666\">no data: no events in this range</text>",
            WIDTH / 2.0,
            HEIGHT / 2.0
        );
    } else {
        let points: Vec<String> = s
            .burndown
            .iter()
            .map(|(ts, left)| format!("{:.1},{:.1}", x_of(*ts), y_of(*left)))
            .collect();
        let color = if s.compliance() == Compliance::Breached {
            "#d62728"
        } else {
            "#1f77b4"
        };
        let _ = write!(
            svg,
            "<polyline class=\"budget\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        );
    }
    for i in &s.incidents {
        let x = x_of(i.opened.max(s.start));
        let _ = write!(
            svg,
            "<line class=\"incident\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{PAD}\" y2=\"{}\" stroke=\"#ff7f0e\"><title>{}</title></line>",
            HEIGHT - PAD,
            esc(&i.fingerprint)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// One row per incident: a bar from opened to resolved (or to the end when still open).
fn timeline_svg(report: &Report) -> String {
    let (start, end) = report.timeline;
    let rows = report.incidents.len().max(1) as f64;
    let row_h = 22.0;
    let height = PAD + rows * row_h + 20.0;
    let label_w = 260.0;
    let plot_w = WIDTH + 200.0 - label_w - 10.0;
    let span = end.saturating_sub(start).max(1) as f64;
    let x_of = |ts: u64| label_w + (ts.clamp(start, end) - start) as f64 / span * plot_w;
    let mut svg = format!(
        "<svg class=\"timeline\" role=\"img\" aria-label=\"incidents timeline\" viewBox=\"0 0 {w} {height}\" width=\"{w}\" height=\"{height}\" xmlns=\"http://www.w3.org/2000/svg\">\
         <text x=\"{label_w}\" y=\"14\" font-size=\"10\">{}</text><text x=\"{}\" y=\"14\" font-size=\"10\" text-anchor=\"end\">{}</text>",
        esc(&when(start)),
        label_w + plot_w,
        esc(&when(end)),
        w = WIDTH + 200.0,
    );
    if report.incidents.is_empty() {
        let _ = write!(
            svg,
            "<text x=\"{label_w}\" y=\"{}\" font-size=\"13\" fill=\"#666\">no incidents in this period</text>",
            PAD + 12.0
        );
    }
    for (n, i) in report.incidents.iter().enumerate() {
        let y = PAD + n as f64 * row_h;
        let x1 = x_of(i.opened);
        let x2 = x_of(i.resolved.unwrap_or(end)).max(x1 + 2.0);
        let color = if i.severity == crate::spec::Severity::Page {
            "#d62728"
        } else {
            "#ff7f0e"
        };
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{}\" font-size=\"11\">{}</text>\
             <rect class=\"incident\" x=\"{x1:.1}\" y=\"{y}\" width=\"{:.1}\" height=\"{}\" fill=\"{color}\"><title>{}</title></rect>",
            y + 12.0,
            esc(&i.fingerprint),
            x2 - x1,
            row_h - 6.0,
            esc(&format!(
                "{} {}",
                incident_line(i, report.generated_at),
                i.summary
            ))
        );
    }
    svg.push_str("</svg>");
    svg
}

pub fn html(report: &Report) -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">",
    );
    let _ = write!(out, "<title>{}</title>", esc(&title(report)));
    out.push_str(
        "<style>body{font:14px/1.4 sans-serif;margin:24px;color:#222;max-width:900px}\
         h1{font-size:20px}h2{font-size:16px;margin:28px 0 4px}table{border-collapse:collapse}\
         td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}\
         .MET{color:#2ca02c}.BREACHED{color:#d62728}.NODATA{color:#666}\
         section{border-top:1px solid #eee}</style></head><body>",
    );
    let _ = write!(out, "<h1>{}</h1>", esc(&title(report)));
    out.push_str("<table><tr><th>SLO</th><th>SLI</th><th>objective</th><th>budget left</th><th>status</th><th>incidents</th></tr>");
    for s in &report.slos {
        let word = compliance_word(&s.compliance());
        let _ = write!(
            out,
            "<tr><td>{}/{}</td><td>{}</td><td>{}%</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
            esc(&s.service),
            esc(&s.name),
            pct(s.counts.sli(), 3),
            objective(s.objective),
            pct(s.budget_left(), 1),
            word.replace(' ', ""),
            word,
            s.incidents.len()
        );
    }
    out.push_str("</table>");
    if report.slos.is_empty() {
        out.push_str("<p>No SLOs are declared in the spec.</p>");
    }
    for s in &report.slos {
        let _ = write!(
            out,
            "<section class=\"slo\"><h2>{}/{} — <span class=\"{}\">{}</span></h2><p>{}</p>",
            esc(&s.service),
            esc(&s.name),
            compliance_word(&s.compliance()).replace(' ', ""),
            compliance_word(&s.compliance()),
            esc(&slo_headline(s))
        );
        out.push_str(&burndown_svg(s));
        if !s.windows.is_empty() {
            out.push_str("<ul>");
            for w in &s.windows {
                let _ = write!(out, "<li>burn now: {}</li>", esc(&window_line(w)));
            }
            out.push_str("</ul>");
        }
        if let Some(e) = &s.error {
            let _ = write!(out, "<p>could not read: {}</p>", esc(e));
        }
        out.push_str("</section>");
    }
    out.push_str("<h2>Incidents</h2>");
    out.push_str(&timeline_svg(report));
    if let Some(note) = &report.state_note {
        let _ = write!(out, "<p><em>{}</em></p>", esc(note));
    }
    out.push_str("</body></html>\n");
    out
}

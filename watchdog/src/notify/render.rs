//! One message model per notification, rendered for each receiver kind. Slack gets Block Kit
//! inside a coloured attachment (the colour is the severity, green once resolved) plus a plain
//! `text` fallback for notifications and clients without blocks.

use serde_json::{Value, json};

use crate::finding::Finding;
use crate::spec::Severity;

/// What a notification says, independent of where it goes.
#[derive(Clone, Debug)]
pub struct Message {
    pub fingerprint: String,
    pub resolved: bool,
    pub severity: Severity,
    /// `[PAGE] checkout: ...` / `[RESOLVED] ...`, one line.
    pub title: String,
    pub service: String,
    /// `slo checkout-success-rate`, `http https://...`.
    pub what: String,
    pub summary: String,
    /// `99.870% vs objective 99.9%`, when the finding has them.
    pub value_vs_objective: Option<String>,
    /// `1h: 14.6x, 5m: 20.1x`.
    pub burn_rates: Option<String>,
    pub budget_left: Option<String>,
    pub details: Vec<String>,
    pub runbook: Option<String>,
    pub dashboard: Option<String>,
    /// Held-back findings listed inside this one (inhibition), one line each.
    pub folded: Vec<String>,
    /// The findings of a group sent as this one message (empty for a single finding), one line
    /// each.
    pub members: Vec<String>,
    /// A resolve for part of a group whose other findings still fire: a Slack bot replies in
    /// the page's thread instead of turning the whole message green.
    pub partial: bool,
}

fn percent(x: f64) -> String {
    format!("{:.3}%", x * 100.0)
}

impl Message {
    pub fn new(finding: &Finding, resolved: bool, dashboard_default: Option<&str>) -> Message {
        let v = &finding.values;
        let value_vs_objective = match (
            v.get("sli").and_then(Value::as_f64),
            v.get("objective_percent").and_then(Value::as_f64),
        ) {
            (Some(sli), Some(objective)) => {
                Some(format!("{} vs objective {objective}%", percent(sli)))
            }
            _ => None,
        };
        let burn_rates = v.get("burn_rates").and_then(Value::as_object).map(|rates| {
            rates
                .iter()
                .map(|(window, rate)| match rate.as_f64() {
                    Some(r) => format!("{window}: {r:.1}x"),
                    None => format!("{window}: n/a"),
                })
                .collect::<Vec<_>>()
                .join(", ")
        });
        let budget_left = v
            .get("budget_remaining")
            .and_then(Value::as_f64)
            .map(|b| format!("{:.1}%", b * 100.0));
        let tag = if resolved {
            "RESOLVED".to_string()
        } else {
            finding.severity.to_string().to_uppercase()
        };
        let mut title = format!("[{tag}] {}: {}", finding.service, finding.target);
        truncate(&mut title, 140);
        Message {
            fingerprint: finding.fingerprint.clone(),
            resolved,
            severity: finding.severity,
            title,
            service: finding.service.clone(),
            what: format!("{} {}", finding.kind, finding.target),
            summary: finding.summary.clone(),
            value_vs_objective,
            burn_rates,
            budget_left,
            details: finding.details.clone(),
            runbook: finding.labels.get("runbook").cloned(),
            dashboard: finding
                .labels
                .get("dashboard")
                .cloned()
                .or_else(|| dashboard_default.map(str::to_string)),
            folded: Vec::new(),
            members: Vec::new(),
            partial: false,
        }
    }

    /// One message for several findings of one group (`label`: the group's values): the most
    /// severe finding leads, and every finding is listed with its summary and fingerprint.
    pub fn group(
        findings: &[&Finding],
        resolved: bool,
        dashboard_default: Option<&str>,
        label: &str,
    ) -> Message {
        let mut sorted: Vec<&Finding> = findings.to_vec();
        sorted.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(a.fingerprint.cmp(&b.fingerprint))
        });
        let Some(lead) = sorted.first() else {
            unreachable!("a group has at least one finding")
        };
        let mut message = Message::new(lead, resolved, dashboard_default);
        if sorted.len() == 1 {
            return message;
        }
        let n = sorted.len();
        let tag = if resolved {
            "RESOLVED".to_string()
        } else {
            lead.severity.to_string().to_uppercase()
        };
        message.title = format!("[{tag}] {label}: {n} findings");
        truncate(&mut message.title, 140);
        message.fingerprint = format!("group:{label}");
        message.summary = if resolved {
            format!("{n} findings of {label} are ok again")
        } else {
            format!("{n} findings of {label} fire together")
        };
        message.what = format!("{n} checks / SLOs");
        message.value_vs_objective = None;
        message.burn_rates = None;
        message.budget_left = None;
        message.details = Vec::new();
        message.members = sorted
            .iter()
            .map(|f| {
                let tag = if resolved {
                    "resolved".to_string()
                } else {
                    f.severity.to_string()
                };
                format!("[{tag}] {} ({})", f.summary, f.fingerprint)
            })
            .collect();
        message
    }

    /// The one-line fallback (Slack `text`, SMS, notifications).
    pub fn fallback(&self) -> String {
        let mut text = format!("{} — {}", self.title, self.summary);
        truncate(&mut text, 3000);
        text
    }

    /// The full plain-text body (email, SNS email/default).
    pub fn text(&self) -> String {
        let mut out = format!(
            "{}\n\n{}\n\nService: {}\nWhat: {}\n",
            self.title, self.summary, self.service, self.what
        );
        for (name, value) in [
            ("Current vs objective", &self.value_vs_objective),
            ("Burn rates", &self.burn_rates),
            ("Error budget left", &self.budget_left),
            ("Runbook", &self.runbook),
            ("Dashboard", &self.dashboard),
        ] {
            if let Some(v) = value {
                out.push_str(&format!("{name}: {v}\n"));
            }
        }
        if !self.members.is_empty() {
            out.push_str(&format!("\nFindings ({}):\n", self.members.len()));
            for m in &self.members {
                out.push_str(&format!("- {m}\n"));
            }
        }
        if !self.folded.is_empty() {
            out.push_str("\nAlso affected (held back):\n");
            for f in &self.folded {
                out.push_str(&format!("- {f}\n"));
            }
        }
        if !self.details.is_empty() {
            out.push_str("\nWhy:\n");
            for d in &self.details {
                out.push_str(&format!("- {d}\n"));
            }
        }
        out.push_str(&format!("\nFingerprint: {}\n", self.fingerprint));
        out
    }

    /// The HTML email body: the same facts as `text`, escaped.
    pub fn html(&self) -> String {
        let e = html_escape;
        let mut rows = format!(
            "<tr><th align=\"left\">Service</th><td>{}</td></tr><tr><th align=\"left\">SLO / check</th><td>{}</td></tr>",
            e(&self.service),
            e(&self.what)
        );
        for (name, value) in [
            ("Current vs objective", &self.value_vs_objective),
            ("Burn rates", &self.burn_rates),
            ("Error budget left", &self.budget_left),
        ] {
            if let Some(v) = value {
                rows.push_str(&format!(
                    "<tr><th align=\"left\">{name}</th><td>{}</td></tr>",
                    e(v)
                ));
            }
        }
        let links: Vec<String> = [("Runbook", &self.runbook), ("Dashboard", &self.dashboard)]
            .into_iter()
            .filter_map(|(name, url)| {
                url.as_ref()
                    .map(|u| format!("<a href=\"{}\">{name}</a>", e(u)))
            })
            .collect();
        let list = |items: &[String]| {
            items
                .iter()
                .map(|i| format!("<li>{}</li>", e(i)))
                .collect::<String>()
        };
        let mut out = format!(
            "<!DOCTYPE html><html><body style=\"font-family:sans-serif\"><h2 style=\"border-left:6px solid {};padding-left:8px\">{}</h2><p>{}</p><table>{rows}</table>",
            self.colour(),
            e(&self.title),
            e(&self.summary)
        );
        if !links.is_empty() {
            out.push_str(&format!("<p>{}</p>", links.join(" · ")));
        }
        if !self.members.is_empty() {
            out.push_str(&format!(
                "<h3>Findings ({})</h3><ul>{}</ul>",
                self.members.len(),
                list(&self.members)
            ));
        }
        if !self.folded.is_empty() {
            out.push_str(&format!(
                "<h3>Also affected (held back)</h3><ul>{}</ul>",
                list(&self.folded)
            ));
        }
        if !self.details.is_empty() {
            out.push_str(&format!("<h3>Why</h3><ul>{}</ul>", list(&self.details)));
        }
        out.push_str(&format!(
            "<p><code>{}</code></p></body></html>",
            e(&self.fingerprint)
        ));
        out
    }

    pub fn colour(&self) -> &'static str {
        match (self.resolved, self.severity) {
            (true, _) => "#2eb67d",
            (false, Severity::Page) => "#e01e5a",
            (false, Severity::Ticket) => "#ecb22e",
        }
    }

    /// A Slack message body (for `chat.postMessage`, `chat.update` and webhooks alike).
    pub fn slack(&self) -> Value {
        let mut fields = vec![
            json!({"type": "mrkdwn", "text": format!("*Service*\n{}", self.service)}),
            json!({"type": "mrkdwn", "text": format!("*SLO / check*\n{}", self.what)}),
        ];
        if let Some(v) = &self.value_vs_objective {
            fields.push(json!({"type": "mrkdwn", "text": format!("*Current vs objective*\n{v}")}));
        }
        if let Some(b) = &self.burn_rates {
            fields.push(json!({"type": "mrkdwn", "text": format!("*Burn rates*\n{b}")}));
        }
        if let Some(b) = &self.budget_left {
            fields.push(json!({"type": "mrkdwn", "text": format!("*Error budget left*\n{b}")}));
        }
        let mut header = self.title.clone();
        truncate(&mut header, 150); // Block Kit's header limit
        let mut summary = if self.resolved {
            format!(":white_check_mark: Resolved. {}", self.summary)
        } else {
            self.summary.clone()
        };
        truncate(&mut summary, 3000);
        let mut blocks = vec![
            json!({"type": "header", "text": {"type": "plain_text", "text": header}}),
            json!({"type": "section", "text": {"type": "mrkdwn", "text": summary}}),
            json!({"type": "section", "fields": fields}),
        ];
        if !self.members.is_empty() {
            let mut text = format!(
                "*Findings ({})*\n• {}",
                self.members.len(),
                self.members.join("\n• ")
            );
            truncate(&mut text, 3000);
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": text}}));
        }
        if !self.folded.is_empty() {
            let mut text = format!(
                "*Also affected (held back)*\n• {}",
                self.folded.join("\n• ")
            );
            truncate(&mut text, 3000);
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": text}}));
        }
        let links: Vec<String> = [("Runbook", &self.runbook), ("Dashboard", &self.dashboard)]
            .into_iter()
            .filter_map(|(name, url)| url.as_ref().map(|u| format!("<{u}|{name}>")))
            .collect();
        let mut context =
            vec![json!({"type": "mrkdwn", "text": format!("`{}`", self.fingerprint)})];
        if !links.is_empty() {
            context.push(json!({"type": "mrkdwn", "text": links.join(" · ")}));
        }
        blocks.push(json!({"type": "context", "elements": context}));
        json!({
            "text": self.fallback(),
            "attachments": [{"color": self.colour(), "fallback": self.fallback(), "blocks": blocks}],
        })
    }
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Cuts `s` to at most `max` characters, marking the cut with an ellipsis.
pub fn truncate(s: &mut String, max: usize) {
    if s.chars().count() > max {
        let cut: String = s.chars().take(max.saturating_sub(1)).collect();
        *s = cut + "…";
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Status;

    fn slo_finding() -> Finding {
        let mut f = Finding {
            fingerprint: "slo:checkout:checkout-success-rate".into(),
            status: Status::Firing,
            severity: Severity::Page,
            service: "checkout".into(),
            module: Some("checkout".into()),
            kind: "slo".into(),
            target: "checkout-success-rate".into(),
            labels: [(
                "runbook".to_string(),
                "https://runbooks.example/checkout".to_string(),
            )]
            .into(),
            summary: "checkout/checkout-success-rate: burning error budget 20x over 1h".into(),
            details: vec!["SLI over 30d: 99.8%".into()],
            values: Default::default(),
        };
        f.values.insert("sli".into(), json!(0.9987));
        f.values.insert("objective_percent".into(), json!(99.9));
        f.values.insert("budget_remaining".into(), json!(0.42));
        f.values
            .insert("burn_rates".into(), json!({"1h": 20.0, "5m": 31.5}));
        f
    }

    #[test]
    fn slack_message_has_header_fields_links_fallback_and_severity_colour() {
        let m = Message::new(
            &slo_finding(),
            false,
            Some("https://grafana.example/d/shop"),
        );
        let body = m.slack();
        assert_eq!(
            body["text"],
            "[PAGE] checkout: checkout-success-rate — checkout/checkout-success-rate: burning error budget 20x over 1h"
        );
        let att = &body["attachments"][0];
        assert_eq!(att["color"], "#e01e5a");
        let blocks = att["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[0]["text"]["type"], "plain_text");
        let fields: Vec<&str> = blocks[2]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["text"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&"*Current vs objective*\n99.870% vs objective 99.9%"));
        assert!(fields.contains(&"*Burn rates*\n1h: 20.0x, 5m: 31.5x"));
        assert!(fields.contains(&"*Error budget left*\n42.0%"));
        let context = blocks.last().unwrap()["elements"][1]["text"]
            .as_str()
            .unwrap();
        assert_eq!(
            context,
            "<https://runbooks.example/checkout|Runbook> · <https://grafana.example/d/shop|Dashboard>"
        );

        let resolved = Message::new(&slo_finding(), true, None).slack();
        assert_eq!(resolved["attachments"][0]["color"], "#2eb67d");
        assert!(
            resolved["text"]
                .as_str()
                .unwrap()
                .starts_with("[RESOLVED] checkout")
        );
    }

    #[test]
    fn a_group_message_is_led_by_its_most_severe_finding_and_lists_every_one() {
        let page = slo_finding();
        let mut ticket = slo_finding();
        ticket.fingerprint = "http:checkout:https://shop.example/".into();
        ticket.severity = Severity::Ticket;
        ticket.summary = "slow".into();
        let m = Message::group(&[&ticket, &page], false, None, "checkout");
        assert_eq!(m.title, "[PAGE] checkout: 2 findings");
        assert_eq!(m.colour(), "#e01e5a");
        assert_eq!(m.fingerprint, "group:checkout");
        assert_eq!(
            m.members,
            [
                format!("[page] {} ({})", page.summary, page.fingerprint),
                format!("[ticket] slow ({})", ticket.fingerprint),
            ]
        );
        assert!(m.value_vs_objective.is_none());
        assert!(m.text().contains("Findings (2):\n- [page] "));
        let blocks = m.slack()["attachments"][0]["blocks"].to_string();
        assert!(blocks.contains("*Findings (2)*"), "{blocks}");
        // One finding: the plain single message.
        let single = Message::group(&[&page], true, None, "checkout");
        assert_eq!(single.fingerprint, page.fingerprint);
        assert!(single.members.is_empty());
        assert!(
            single
                .title
                .starts_with("[RESOLVED] checkout: checkout-success-rate")
        );
    }

    #[test]
    fn html_email_escapes_what_it_shows() {
        let mut f = slo_finding();
        f.summary = "<script>alert(1)</script> & more".into();
        let html = Message::new(&f, false, None).html();
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; more"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("<a href=\"https://runbooks.example/checkout\">Runbook</a>"));
        assert!(html.contains("<td>99.870% vs objective 99.9%</td>"));
    }

    #[test]
    fn long_texts_are_cut_to_slack_limits() {
        let mut f = slo_finding();
        f.target = "x".repeat(400);
        let body = Message::new(&f, false, None).slack();
        let header = body["attachments"][0]["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap();
        assert_eq!(header.chars().count(), 140);
        assert!(header.ends_with('…'));
    }
}

//! Which receivers a finding goes to.
//!
//! Routes are tried in order. The first route whose `match` fits the finding contributes its
//! receivers and, unless it says `continue: true`, ends the search; with `continue`, later
//! matching routes add theirs too (each receiver once, in first-seen order). A finding that no
//! route matched goes to `default_receivers`. Every condition of a `match` must hold; an empty
//! `match` matches everything.

use crate::finding::Finding;

use crate::spec::notify::{Matcher, NotifySettings};

pub fn matches(m: &Matcher, f: &Finding) -> bool {
    m.severity.is_none_or(|s| s == f.severity)
        && m.kind.as_ref().is_none_or(|k| *k == f.kind)
        && m.service.as_ref().is_none_or(|s| *s == f.service)
        && m.module
            .as_ref()
            .is_none_or(|want| f.module.as_ref() == Some(want))
        && m.labels.iter().all(|(k, v)| f.labels.get(k) == Some(v))
}

/// The receivers for `finding` with their repeat interval in seconds: the shortest of the
/// matched routes that name the receiver (None: never repeat).
pub fn routed<'a>(settings: &'a NotifySettings, finding: &Finding) -> Vec<(&'a str, Option<u64>)> {
    let mut out: Vec<(&str, Option<u64>)> = Vec::new();
    let mut add = |receivers: &'a [String], repeat: Option<u64>| {
        for r in receivers {
            match out.iter_mut().find(|(name, _)| name == r) {
                Some((_, existing)) => {
                    *existing = match (*existing, repeat) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    }
                }
                None => out.push((r, repeat)),
            }
        }
    };
    let mut matched = false;
    for route in &settings.routes {
        if !matches(&route.matcher, finding) {
            continue;
        }
        matched = true;
        add(&route.receivers, route.repeat_interval.map(|s| s.as_secs()));
        if !route.continue_matching {
            break;
        }
    }
    if !matched {
        add(
            &settings.default_receivers,
            settings.default_repeat_interval.map(|s| s.as_secs()),
        );
    }
    out
}

/// The group a finding belongs to under `group_by`: `name=value` pairs joined by `,` (a
/// missing module or label is `-`). Without `group_by`, each finding is its own group.
pub fn group_key(group_by: &[String], f: &Finding) -> String {
    if group_by.is_empty() {
        return f.fingerprint.clone();
    }
    group_by
        .iter()
        .map(|name| {
            let value = match name.as_str() {
                "service" => Some(f.service.clone()),
                "module" => f.module.clone(),
                "kind" => Some(f.kind.clone()),
                "severity" => Some(f.severity.to_string()),
                label => f.labels.get(label).cloned(),
            };
            format!("{name}={}", value.as_deref().unwrap_or("-"))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Every receiver name used by a route or the default exists.
pub fn check(settings: &NotifySettings) -> Result<(), String> {
    let used = settings
        .routes
        .iter()
        .flat_map(|r| &r.receivers)
        .chain(&settings.default_receivers);
    for name in used {
        if !settings.receivers.contains_key(name) {
            return Err(format!(
                "settings.notify: route names receiver {name:?}, which is not declared under settings.notify.receivers"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Status;
    use crate::spec::Severity;

    /// The receivers for `finding`, each once, in first-seen order.
    fn receivers_for<'a>(settings: &'a NotifySettings, finding: &Finding) -> Vec<&'a str> {
        routed(settings, finding)
            .into_iter()
            .map(|(r, _)| r)
            .collect()
    }

    fn settings(yaml: &str) -> NotifySettings {
        yaml_serde::from_str(yaml).unwrap()
    }

    fn finding(severity: Severity, service: &str, team: &str) -> Finding {
        Finding {
            fingerprint: format!("http:{service}:x"),
            status: Status::Firing,
            severity,
            service: service.into(),
            module: Some(service.into()),
            kind: "http".into(),
            target: "x".into(),
            labels: [("team".to_string(), team.to_string())].into(),
            summary: String::new(),
            details: vec![],
            values: Default::default(),
        }
    }

    const SPEC: &str = r#"
receivers:
  oncall: { slack_webhook: { url: { env: A } } }
  payments: { slack_webhook: { url: { env: B } } }
  tickets: { slack_webhook: { url: { env: C } } }
  audit: { slack_webhook: { url: { env: D } } }
routes:
  - match: { labels: { team: payments } }
    receivers: [payments]
    continue: true
  - match: { severity: page }
    receivers: [oncall]
  - match: { severity: ticket, module: cart }
    receivers: [tickets, audit]
default_receivers: [audit]
"#;

    #[test]
    fn first_match_wins_continue_adds_and_default_catches_the_rest() {
        let s = settings(SPEC);
        check(&s).unwrap();
        // `continue` on the team route lets the severity route add oncall.
        assert_eq!(
            receivers_for(&s, &finding(Severity::Page, "payment", "payments")),
            ["payments", "oncall"]
        );
        // First match ends the search: the cart ticket route is not reached for a page.
        assert_eq!(
            receivers_for(&s, &finding(Severity::Page, "cart", "shop")),
            ["oncall"]
        );
        assert_eq!(
            receivers_for(&s, &finding(Severity::Ticket, "cart", "shop")),
            ["tickets", "audit"]
        );
        // Nothing matched: default route.
        assert_eq!(
            receivers_for(&s, &finding(Severity::Ticket, "checkout", "shop")),
            ["audit"]
        );
        // The team route matched (with continue) and nothing after it: no default.
        assert_eq!(
            receivers_for(&s, &finding(Severity::Ticket, "payment", "payments")),
            ["payments"]
        );
    }

    #[test]
    fn the_shortest_repeat_interval_of_the_matched_routes_applies() {
        let s = settings(
            r#"
receivers:
  oncall: { slack_webhook: { url: { env: A } } }
  audit: { slack_webhook: { url: { env: D } } }
routes:
  - match: { labels: { team: payments } }
    receivers: [oncall]
    repeat_interval: 4h
    continue: true
  - match: { severity: page }
    receivers: [oncall, audit]
    repeat_interval: 30m
default_receivers: [audit]
default_repeat_interval: 1d
"#,
        );
        assert_eq!(
            routed(&s, &finding(Severity::Page, "payment", "payments")),
            [("oncall", Some(1800)), ("audit", Some(1800))]
        );
        assert_eq!(
            routed(&s, &finding(Severity::Ticket, "cart", "shop")),
            [("audit", Some(86_400))]
        );
    }

    #[test]
    fn group_keys_take_the_named_fields_and_labels() {
        let f = finding(Severity::Page, "cart", "shop");
        assert_eq!(group_key(&[], &f), f.fingerprint);
        assert_eq!(
            group_key(&["service".into(), "team".into(), "zone".into()], &f),
            "service=cart,team=shop,zone=-"
        );
    }

    #[test]
    fn an_undeclared_receiver_is_an_error_naming_it() {
        let s = settings(
            "receivers: {}\nroutes:\n  - match: { severity: page }\n    receivers: [pager]\n",
        );
        let e = check(&s).unwrap_err();
        assert!(e.contains("\"pager\""), "{e}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = yaml_serde::from_str::<NotifySettings>(
            "receivers: {}\nroutes:\n  - matches: { severity: page }\n    receivers: []\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("matches"), "{e}");
    }
}

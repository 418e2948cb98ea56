//! Alert state in DynamoDB, and the decisions made from it.
//!
//! One item per fingerprint: `status` (firing/resolved), `severity`, `first_seen`,
//! `last_seen`, `last_notified`, `resolved_at`, `message_ids` (left for the notifier to fill,
//! so it can update or thread its messages), `resolve_pending` (receivers that got the page but
//! have not accepted the resolve yet), `version`, and `expires_at` for DynamoDB's TTL.
//!
//! Every transition (open, escalate, resolve) is a write conditioned on the `version` that was
//! read, so when two invocations look at the same failing state, exactly one write succeeds
//! and only that invocation decides to page; the other learns it lost and stays quiet.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use serde::Serialize;

use crate::aws::error_text;
use crate::finding::{Finding, Status};
use crate::spec::{Severity, Span};

/// What the notifier should do about a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Wake someone up: a new incident, or one that escalated to page.
    Page,
    /// Open a ticket: a new incident at ticket severity.
    Ticket,
    /// Tell whoever was notified that it is over.
    Resolve,
    /// Still firing and already notified (by this or a concurrent invocation): nothing to send.
    AlreadyNotified,
}

#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    pub fingerprint: String,
    pub action: Action,
    pub severity: Severity,
    pub reason: String,
    /// When the incident started (unix seconds), once state knows it.
    pub first_seen: Option<u64>,
    /// What the notifier stored for this incident (channel -> message id), to update threads.
    pub message_ids: BTreeMap<String, String>,
    /// When each receiver was last sent this incident (unix seconds), for repeat intervals.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub notified_at: BTreeMap<String, u64>,
    /// A resolve sent again to receivers that did not accept it on an earlier run (only they
    /// are in `message_ids`); not a new event.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub retry: bool,
}

/// The DynamoDB table and how long resolved records stay.
pub struct AlertState {
    pub client: Client,
    pub table: String,
    pub keep_resolved_for: Span,
    /// Consecutive ok evaluations that resolve an incident.
    pub resolve_after: u32,
}

/// One item as read.
#[derive(Clone, Debug, Default)]
struct Record {
    firing: bool,
    severity: Severity,
    version: u64,
    first_seen: Option<u64>,
    message_ids: BTreeMap<String, String>,
    /// Consecutive ok evaluations seen while firing.
    ok_streak: u64,
    notified_at: BTreeMap<String, u64>,
    /// Receivers whose resolve is still owed (resolved incidents only).
    resolve_pending: Vec<String>,
}

/// Top-level attribute `notified_at:<receiver>` (a flat name: it needs no map to exist).
const NOTIFIED_AT: &str = "notified_at:";

fn severity_of(text: &str) -> Severity {
    if text == "page" {
        Severity::Page
    } else {
        Severity::Ticket
    }
}

fn number(item: &HashMap<String, AttributeValue>, key: &str) -> Option<u64> {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

fn string<'a>(item: &'a HashMap<String, AttributeValue>, key: &str) -> Option<&'a str> {
    item.get(key)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn record_from(item: &HashMap<String, AttributeValue>) -> Record {
    Record {
        firing: string(item, "status") == Some("firing"),
        severity: severity_of(string(item, "severity").unwrap_or("ticket")),
        version: number(item, "version").unwrap_or(0),
        first_seen: number(item, "first_seen"),
        ok_streak: number(item, "ok_streak").unwrap_or(0),
        resolve_pending: item
            .get("resolve_pending")
            .and_then(|v| v.as_ss().ok())
            .cloned()
            .unwrap_or_default(),
        notified_at: item
            .iter()
            .filter_map(|(k, v)| {
                let receiver = k.strip_prefix(NOTIFIED_AT)?;
                Some((receiver.to_string(), v.as_n().ok()?.parse().ok()?))
            })
            .collect(),
        message_ids: item
            .get("message_ids")
            .and_then(|v| v.as_m().ok())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_s().ok().map(|s| (k.clone(), s.clone())))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The transition a finding asks for, given what state says.
#[derive(Debug, PartialEq)]
enum Transition {
    Open,
    Escalate,
    Resolve,
    /// Ok, but fewer than `resolve_after` times in a row yet: count it, stay open.
    CountOk,
    Touch,
    /// Resolved, but some receivers have not accepted the resolve yet: send it to them again.
    RetryResolve,
    Nothing,
}

fn transition(finding: &Finding, record: Option<&Record>, resolve_after: u32) -> Transition {
    let firing_now = finding.is_firing();
    match (firing_now, record.filter(|r| r.firing)) {
        (true, None) => Transition::Open,
        (true, Some(r)) if finding.severity > r.severity => Transition::Escalate,
        (true, Some(_)) => Transition::Touch,
        (false, None)
            if finding.status == Status::Ok
                && record.is_some_and(|r| !r.firing && !r.resolve_pending.is_empty()) =>
        {
            Transition::RetryResolve
        }
        (false, Some(r)) if finding.status == Status::Ok => {
            if r.ok_streak + 1 >= u64::from(resolve_after) {
                Transition::Resolve
            } else {
                Transition::CountOk
            }
        }
        _ => Transition::Nothing,
    }
}

fn notify_action(severity: Severity) -> Action {
    match severity {
        Severity::Page => Action::Page,
        Severity::Ticket => Action::Ticket,
    }
}

/// Decides without state: every firing finding notifies. Used without a table, and when the
/// table cannot be read (better a repeated page than a missed one).
pub fn decide_stateless(findings: &[Finding], why: &str) -> Vec<Decision> {
    findings
        .iter()
        .filter(|f| f.is_firing())
        .map(|f| Decision {
            fingerprint: f.fingerprint.clone(),
            action: notify_action(f.severity),
            severity: f.severity,
            reason: format!("firing; {why}"),
            first_seen: None,
            message_ids: BTreeMap::new(),
            notified_at: BTreeMap::new(),
            retry: false,
        })
        .collect()
}

impl AlertState {
    /// Reads state for every finding and decides; with `dry_run` nothing is written.
    pub async fn decide(&self, findings: &[Finding], now: u64, dry_run: bool) -> Vec<Decision> {
        // A check that could not run earlier left an incident under `<fingerprint>/unknown`;
        // once it runs again, that incident is over.
        let recovered: Vec<Finding> = findings
            .iter()
            .filter(|f| f.status != Status::Unknown)
            .map(|f| Finding {
                fingerprint: format!("{}/unknown", f.fingerprint),
                status: Status::Ok,
                summary: format!("{} can be checked again", f.target),
                ..f.clone()
            })
            .collect();
        let findings: Vec<&Finding> = findings.iter().chain(&recovered).collect();
        let records = match self.read(&findings).await {
            Ok(records) => records,
            Err(e) => {
                tracing::error!(table = %self.table, error = %e, "cannot read alert state");
                return decide_stateless(
                    findings.into_iter().cloned().collect::<Vec<_>>().as_slice(),
                    &format!("alert state unreadable ({e})"),
                );
            }
        };
        let mut decisions = Vec::new();
        for finding in findings {
            let record = records.get(&finding.fingerprint);
            let step = transition(finding, record, self.resolve_after);
            let decision = |action, reason: String| Decision {
                fingerprint: finding.fingerprint.clone(),
                action,
                severity: finding.severity,
                reason,
                first_seen: record.and_then(|r| r.first_seen),
                message_ids: record.map(|r| r.message_ids.clone()).unwrap_or_default(),
                notified_at: record.map(|r| r.notified_at.clone()).unwrap_or_default(),
                retry: false,
            };
            let (action, reason) = match step {
                Transition::Nothing => continue,
                Transition::Touch => {
                    if !dry_run {
                        self.touch(finding, now, None).await;
                    }
                    (
                        Action::AlreadyNotified,
                        "still firing; already notified".to_string(),
                    )
                }
                Transition::RetryResolve => {
                    let pending = record
                        .map(|r| r.resolve_pending.clone())
                        .unwrap_or_default();
                    let mut d = decision(
                        Action::Resolve,
                        format!("resolved; retrying the resolve for {}", pending.join(", ")),
                    );
                    d.message_ids.retain(|r, _| pending.contains(r));
                    d.retry = true;
                    decisions.push(d);
                    continue;
                }
                Transition::CountOk => {
                    let streak = record.map_or(0, |r| r.ok_streak) + 1;
                    if !dry_run {
                        self.touch(finding, now, Some(streak)).await;
                    }
                    (
                        Action::AlreadyNotified,
                        format!(
                            "ok {streak} of {} consecutive evaluations needed to resolve",
                            self.resolve_after
                        ),
                    )
                }
                Transition::Open | Transition::Escalate | Transition::Resolve if dry_run => {
                    let action = if step == Transition::Resolve {
                        Action::Resolve
                    } else {
                        notify_action(finding.severity)
                    };
                    (
                        action,
                        format!("{step:?} (dry run: state not written)").to_lowercase(),
                    )
                }
                Transition::Open | Transition::Escalate | Transition::Resolve => {
                    match self.write(finding, record, &step, now).await {
                        Ok(true) => {
                            let action = if step == Transition::Resolve {
                                Action::Resolve
                            } else {
                                notify_action(finding.severity)
                            };
                            (
                                action,
                                match step {
                                    Transition::Open => "new incident".to_string(),
                                    Transition::Escalate => "escalated to page".to_string(),
                                    _ => "recovered".to_string(),
                                },
                            )
                        }
                        // Another invocation made this transition first: it notifies, we don't.
                        Ok(false) if step == Transition::Resolve => continue,
                        Ok(false) => (
                            Action::AlreadyNotified,
                            "a concurrent invocation decided first".to_string(),
                        ),
                        Err(e) => {
                            tracing::error!(fingerprint = %finding.fingerprint, error = %e, "cannot write alert state");
                            if step == Transition::Resolve {
                                continue;
                            }
                            (
                                notify_action(finding.severity),
                                format!("firing; alert state unwritable ({e})"),
                            )
                        }
                    }
                }
            };
            let mut d = decision(action, reason);
            if matches!(step, Transition::Open) {
                // A new incident: ids of the previous one's messages are not its own.
                d.message_ids.clear();
                d.notified_at.clear();
                if !dry_run {
                    d.first_seen = Some(now);
                }
            }
            decisions.push(d);
        }
        decisions
    }

    /// Consistent reads of every fingerprint's item, 100 keys per BatchGetItem.
    async fn read(&self, findings: &[&Finding]) -> Result<HashMap<String, Record>, String> {
        let mut records = HashMap::new();
        let mut fingerprints: Vec<&str> = findings.iter().map(|f| f.fingerprint.as_str()).collect();
        fingerprints.sort();
        fingerprints.dedup();
        for chunk in fingerprints.chunks(100) {
            let keys = chunk
                .iter()
                .map(|f| {
                    HashMap::from([("fingerprint".to_string(), AttributeValue::S(f.to_string()))])
                })
                .collect::<Vec<_>>();
            let mut request = HashMap::from([(
                self.table.clone(),
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| e.to_string())?,
            )]);
            // DynamoDB may return part of a batch as unprocessed under load: ask again.
            for _ in 0..5 {
                let out = self
                    .client
                    .batch_get_item()
                    .set_request_items(Some(request.clone()))
                    .send()
                    .await
                    .map_err(|e| error_text(&e))?;
                for item in out
                    .responses()
                    .and_then(|r| r.get(&self.table))
                    .into_iter()
                    .flatten()
                {
                    if let Some(fp) = string(item, "fingerprint") {
                        records.insert(fp.to_string(), record_from(item));
                    }
                }
                match out.unprocessed_keys() {
                    Some(rest) if !rest.is_empty() => request = rest.clone(),
                    _ => break,
                }
            }
        }
        Ok(records)
    }

    fn expires_at(&self, now: u64) -> AttributeValue {
        AttributeValue::N((now + self.keep_resolved_for.as_secs()).to_string())
    }

    /// A transition, conditioned on the version read. `Ok(false)`: someone else got there first.
    async fn write(
        &self,
        finding: &Finding,
        record: Option<&Record>,
        step: &Transition,
        now: u64,
    ) -> Result<bool, String> {
        let read_version = record.map_or(0, |r| r.version);
        let n = |x: u64| AttributeValue::N(x.to_string());
        let s = |x: &str| AttributeValue::S(x.to_string());
        let mut values = HashMap::from([
            (":now".to_string(), n(now)),
            (":next".to_string(), n(read_version + 1)),
            (":expires".to_string(), self.expires_at(now)),
            (":summary".to_string(), s(&finding.summary)),
        ]);
        let update = match step {
            Transition::Open => {
                values.insert(":firing".into(), s("firing"));
                values.insert(":severity".into(), s(&finding.severity.to_string()));
                values.insert(":service".into(), s(&finding.service));
                values.insert(":kind".into(), s(&finding.kind));
                values.insert(":empty".into(), AttributeValue::M(HashMap::new()));
                values.insert(":zero".into(), n(0));
                "SET #status = :firing, severity = :severity, service = :service, kind = :kind, \
                 first_seen = :now, last_seen = :now, last_notified = :now, summary = :summary, \
                 message_ids = :empty, ok_streak = :zero, version = :next, expires_at = :expires REMOVE resolved_at, resolve_pending"
            }
            Transition::Escalate => {
                values.insert(":severity".into(), s(&finding.severity.to_string()));
                "SET severity = :severity, last_seen = :now, last_notified = :now, summary = :summary, \
                 version = :next, expires_at = :expires"
            }
            Transition::Resolve => {
                values.insert(":resolved".into(), s("resolved"));
                // Who is owed a resolve, written with the transition itself so that a run that
                // dies before sending still leaves the debt for the next one.
                let owed: Vec<String> = record
                    .map(|r| r.message_ids.keys().cloned().collect())
                    .unwrap_or_default();
                if owed.is_empty() {
                    "SET #status = :resolved, resolved_at = :now, summary = :summary, version = :next, expires_at = :expires"
                } else {
                    values.insert(":owed".into(), AttributeValue::Ss(owed));
                    "SET #status = :resolved, resolved_at = :now, summary = :summary, version = :next, expires_at = :expires, resolve_pending = :owed"
                }
            }
            Transition::Touch
            | Transition::CountOk
            | Transition::RetryResolve
            | Transition::Nothing => return Ok(true),
        };
        let condition = if record.is_some() {
            values.insert(":read".into(), n(read_version));
            "version = :read"
        } else {
            "attribute_not_exists(fingerprint)"
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("fingerprint", s(&finding.fingerprint))
            .update_expression(update)
            .condition_expression(condition)
            .expression_attribute_names("#status", "status")
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(error_text(&e)),
        }
    }

    /// Records that `receiver` accepted this incident's page under `id` (a Slack `channel|ts`,
    /// an SNS message id, ...), so it is not paged again and its resolve can update in place.
    pub async fn record_message_id(
        &self,
        fingerprint: &str,
        receiver: &str,
        id: &str,
        now: u64,
    ) -> Result<(), String> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("fingerprint", AttributeValue::S(fingerprint.to_string()))
            .update_expression("SET message_ids.#receiver = :id, #at = :now")
            .condition_expression("attribute_exists(message_ids)")
            .expression_attribute_names("#receiver", receiver)
            .expression_attribute_names("#at", format!("{NOTIFIED_AT}{receiver}"))
            .expression_attribute_values(":id", AttributeValue::S(id.to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .send()
            .await
            .map_err(|e| error_text(&e))?;
        Ok(())
    }

    /// Records that `receiver` accepted this incident's resolve (or can never get it): it is
    /// owed nothing more.
    pub async fn record_resolved(&self, fingerprint: &str, receiver: &str) -> Result<(), String> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("fingerprint", AttributeValue::S(fingerprint.to_string()))
            .update_expression("DELETE resolve_pending :r")
            .expression_attribute_values(":r", AttributeValue::Ss(vec![receiver.to_string()]))
            .send()
            .await
            .map_err(|e| error_text(&e))?;
        Ok(())
    }

    /// Records that a firing incident is still seen (keeps its TTL ahead) and how many ok
    /// evaluations in a row it has had (`ok_streak`: `None` = firing now, back to 0). Best
    /// effort: a lost write only delays a resolve by one evaluation.
    async fn touch(&self, finding: &Finding, now: u64, ok_streak: Option<u64>) {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(
                "fingerprint",
                AttributeValue::S(finding.fingerprint.clone()),
            )
            .update_expression(if ok_streak.is_some() {
                "SET ok_streak = :streak, last_ok = :now, expires_at = :expires"
            } else {
                "SET last_seen = :now, ok_streak = :streak, expires_at = :expires"
            })
            .expression_attribute_values(
                ":streak",
                AttributeValue::N(ok_streak.unwrap_or(0).to_string()),
            )
            .condition_expression("#status = :firing")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .expression_attribute_values(":expires", self.expires_at(now))
            .expression_attribute_values(":firing", AttributeValue::S("firing".into()))
            .send()
            .await;
        if let Err(e) = result {
            tracing::debug!(fingerprint = %finding.fingerprint, error = %error_text(&e), "last_seen not updated");
        }
    }
}

/// Creates the state table with TTL on `expires_at` (for local runs and tests; in AWS the
/// infrastructure code owns the table).
pub async fn create_table(client: &Client, table: &str) -> Result<(), String> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        TimeToLiveSpecification,
    };
    let created = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("fingerprint")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| e.to_string())?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("fingerprint")
                .key_type(KeyType::Hash)
                .build()
                .map_err(|e| e.to_string())?,
        )
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) => {}
        Err(e) => return Err(error_text(&e)),
    }
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name("expires_at")
                .enabled(true)
                .build()
                .map_err(|e| e.to_string())?,
        )
        .send()
        .await
        .map_err(|e| error_text(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(status: Status, severity: Severity) -> Finding {
        Finding {
            fingerprint: "slo:checkout:x".into(),
            status,
            severity,
            service: "checkout".into(),
            module: None,
            kind: "slo".into(),
            target: "x".into(),
            labels: Default::default(),
            summary: String::new(),
            details: vec![],
            values: Default::default(),
        }
    }

    #[test]
    fn transitions_follow_the_incident() {
        let firing_ticket = Record {
            firing: true,
            severity: Severity::Ticket,
            ..Default::default()
        };
        let resolved = Record {
            firing: false,
            ..Default::default()
        };
        let page = finding(Status::Firing, Severity::Page);
        assert_eq!(transition(&page, None, 1), Transition::Open);
        assert_eq!(transition(&page, Some(&resolved), 1), Transition::Open);
        assert_eq!(
            transition(&page, Some(&firing_ticket), 1),
            Transition::Escalate
        );
        assert_eq!(
            transition(
                &finding(Status::Firing, Severity::Ticket),
                Some(&firing_ticket),
                1
            ),
            Transition::Touch
        );
        assert_eq!(
            transition(
                &finding(Status::Ok, Severity::Page),
                Some(&firing_ticket),
                1
            ),
            Transition::Resolve
        );
        assert_eq!(
            transition(&finding(Status::Ok, Severity::Page), None, 1),
            Transition::Nothing
        );
        // An unknown result neither resolves an incident nor stays silent on its own fingerprint.
        assert_eq!(
            transition(&finding(Status::Unknown, Severity::Ticket), None, 1),
            Transition::Open
        );
    }

    #[test]
    fn an_incident_resolves_only_after_k_ok_evaluations_in_a_row() {
        let ok = finding(Status::Ok, Severity::Page);
        let firing = |ok_streak| Record {
            firing: true,
            severity: Severity::Page,
            ok_streak,
            ..Default::default()
        };
        assert_eq!(transition(&ok, Some(&firing(0)), 3), Transition::CountOk);
        assert_eq!(transition(&ok, Some(&firing(1)), 3), Transition::CountOk);
        assert_eq!(transition(&ok, Some(&firing(2)), 3), Transition::Resolve);
        // Firing again in between: touched (which resets the streak), not reopened.
        assert_eq!(
            transition(
                &finding(Status::Firing, Severity::Page),
                Some(&firing(2)),
                3
            ),
            Transition::Touch
        );
        assert_eq!(transition(&ok, Some(&firing(0)), 1), Transition::Resolve);
    }

    #[test]
    fn a_resolved_incident_that_still_owes_a_resolve_retries_it_until_it_fires_again() {
        let owing = Record {
            firing: false,
            resolve_pending: vec!["oncall-bot".into()],
            ..Default::default()
        };
        let ok = finding(Status::Ok, Severity::Page);
        assert_eq!(transition(&ok, Some(&owing), 2), Transition::RetryResolve);
        let paid = Record {
            firing: false,
            ..Default::default()
        };
        assert_eq!(transition(&ok, Some(&paid), 2), Transition::Nothing);
        // Firing again: a new incident, whose page supersedes the owed resolve.
        assert_eq!(
            transition(&finding(Status::Firing, Severity::Page), Some(&owing), 2),
            Transition::Open
        );
        // Unknown is neither ok nor a reason to resend.
        assert_eq!(
            transition(&finding(Status::Unknown, Severity::Page), Some(&owing), 2),
            Transition::Open
        );
    }

    #[test]
    fn stateless_decisions_notify_every_firing_finding() {
        let d = decide_stateless(
            &[
                finding(Status::Firing, Severity::Page),
                finding(Status::Ok, Severity::Page),
            ],
            "no state table",
        );
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].action, Action::Page);
    }
}

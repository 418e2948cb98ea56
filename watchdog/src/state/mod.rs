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
//!
//! Sending is fenced the same way (`claim.rs`): before a message goes to a receiver, the
//! invocation claims that (incident, receiver) delivery with a conditional write — on the
//! incident's identity (`incident`, the version that opened it), on what the receiver was
//! already sent (`sent.<receiver>`), and on no live claim (`claims.<receiver>`, a lease).
//! So when the schedule and a state-change event run at once, each receiver gets one message,
//! and a slow invocation cannot record an old incident's message on a reopened one.

mod claim;
pub mod fallback;

pub use claim::{Claim, ClaimFor};

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use serde::Serialize;

use crate::error::CallError;
use crate::finding::{Finding, Status};
use crate::spec::{Severity, Span};

/// What the notifier does about a decision. Made from the decision's `Cause` (and the
/// finding's severity), never stored beside it, so the two cannot disagree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Wake someone up: a new incident, or one that escalated to page.
    Page,
    /// Open a ticket: a new incident at ticket severity.
    Ticket,
    /// Tell whoever was notified that it is over.
    Resolve,
    /// Still firing and notified before: only receivers that never accepted the page, or whose
    /// repeat interval has passed, are sent to.
    FollowUp,
    /// Nothing to send (the ok streak is not long enough yet, or another invocation made the
    /// transition and notifies).
    Quiet,
}

impl Action {
    /// The report's word for it. `FollowUp` and `Quiet` are both `already_notified` there:
    /// the cause beside it says which.
    pub fn label(self) -> &'static str {
        match self {
            Action::Page => "page",
            Action::Ticket => "ticket",
            Action::Resolve => "resolve",
            Action::FollowUp | Action::Quiet => "already_notified",
        }
    }
}

impl Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.label())
    }
}

/// What happened to a finding's incident: the decision itself. The notifier branches on the
/// `Action` made from it; text is made from it only for people (reports, logs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cause {
    /// This invocation opened the incident.
    NewIncident,
    /// This invocation raised the incident from ticket to page.
    Escalated,
    /// This invocation resolved the incident.
    Recovered,
    /// Firing, and notified before: only receivers that never accepted it, or whose repeat
    /// interval has passed, are sent to.
    StillFiring,
    /// Ok, but not yet `needed` evaluations in a row.
    OkStreak { streak: u64, needed: u32 },
    /// Another invocation made this transition first: it notifies.
    LostRace,
    /// Resolved earlier; these receivers have not accepted the resolve yet.
    ResolveOwed { receivers: Vec<String> },
    /// A dry run: the transition that would be written.
    DryRun { would: Step },
    /// No state table: every firing finding notifies.
    NoStateTable,
    /// Alert state could not be read: firing findings notify, at most once per interval.
    StateUnreadable { error: String },
    /// The transition could not be written: notify rather than stay silent.
    StateUnwritable { error: String },
}

impl Cause {
    /// What the notifier does for a finding of `severity` decided for this cause.
    pub fn action(&self, severity: Severity) -> Action {
        match self {
            Cause::NewIncident
            | Cause::Escalated
            | Cause::NoStateTable
            | Cause::StateUnreadable { .. }
            | Cause::StateUnwritable { .. }
            | Cause::DryRun {
                would: Step::Open | Step::Escalate,
            } => notify_action(severity),
            Cause::Recovered
            | Cause::ResolveOwed { .. }
            | Cause::DryRun {
                would: Step::Resolve,
            } => Action::Resolve,
            Cause::StillFiring => Action::FollowUp,
            Cause::OkStreak { .. } | Cause::LostRace => Action::Quiet,
        }
    }
}

/// A transition that is written to state (or, in a dry run, would be).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Open,
    Escalate,
    Resolve,
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cause::NewIncident => f.write_str("new incident"),
            Cause::Escalated => f.write_str("escalated to page"),
            Cause::Recovered => f.write_str("recovered"),
            Cause::StillFiring => f.write_str("still firing; already notified"),
            Cause::OkStreak { streak, needed } => write!(
                f,
                "ok {streak} of {needed} consecutive evaluations needed to resolve"
            ),
            Cause::LostRace => f.write_str("a concurrent invocation decided first"),
            Cause::ResolveOwed { receivers } => write!(
                f,
                "resolved; retrying the resolve for {}",
                receivers.join(", ")
            ),
            Cause::DryRun { would } => {
                let step = match would {
                    Step::Open => "open",
                    Step::Escalate => "escalate",
                    Step::Resolve => "resolve",
                };
                write!(f, "{step} (dry run: state not written)")
            }
            Cause::NoStateTable => f.write_str("firing; no alert state table configured"),
            Cause::StateUnreadable { error } => {
                write!(f, "firing; alert state unreadable ({error})")
            }
            Cause::StateUnwritable { error } => {
                write!(f, "firing; alert state unwritable ({error})")
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct Decision {
    pub fingerprint: String,
    pub severity: Severity,
    pub cause: Cause,
    /// The incident's identity in alert state (the version that opened it); deliveries are
    /// claimed and recorded against it. `None` without state.
    pub incident: Option<u64>,
    /// When the incident started (unix seconds), once state knows it.
    pub first_seen: Option<u64>,
    /// What the notifier stored for this incident (channel -> message id), to update threads.
    pub message_ids: BTreeMap<String, String>,
    /// When each receiver was last sent this incident (unix seconds), for repeat intervals.
    pub notified_at: BTreeMap<String, u64>,
}

impl Decision {
    pub fn action(&self) -> Action {
        self.cause.action(self.severity)
    }

    /// The cause, as text for people.
    pub fn reason(&self) -> String {
        self.cause.to_string()
    }
}

/// The report's shape of a decision: `action` and `reason` are made from `cause` here, at the
/// edge.
impl Serialize for Decision {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            fingerprint: &'a str,
            action: Action,
            severity: Severity,
            reason: String,
            cause: &'a Cause,
            #[serde(skip_serializing_if = "Option::is_none")]
            incident: Option<u64>,
            first_seen: Option<u64>,
            message_ids: &'a BTreeMap<String, String>,
            #[serde(skip_serializing_if = "BTreeMap::is_empty")]
            notified_at: BTreeMap<&'a str, u64>,
        }
        View {
            fingerprint: &self.fingerprint,
            action: self.action(),
            severity: self.severity,
            reason: self.reason(),
            cause: &self.cause,
            incident: self.incident,
            first_seen: self.first_seen,
            message_ids: &self.message_ids,
            notified_at: self
                .notified_at
                .iter()
                .map(|(k, v)| (k.as_str(), *v))
                .collect(),
        }
        .serialize(s)
    }
}

/// The DynamoDB table and how long resolved records stay.
pub struct AlertState {
    pub client: Client,
    pub table: String,
    pub keep_resolved_for: Span,
    /// Consecutive ok evaluations that resolve an incident.
    pub resolve_after: u32,
    /// While the table is unreadable, notify a finding at most once per this many seconds.
    pub unreadable_repeat: u64,
}

/// One item as read.
#[derive(Clone, Debug, Default)]
struct Record {
    firing: bool,
    severity: Severity,
    version: u64,
    /// The version that opened the current (or last) incident: its identity.
    incident: u64,
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
        incident: number(item, "incident").unwrap_or(0),
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

/// A decision about `finding` with what state knows of its incident.
fn decision_from(finding: &Finding, record: Option<&Record>, cause: Cause) -> Decision {
    Decision {
        fingerprint: finding.fingerprint.clone(),
        severity: finding.severity,
        cause,
        // Items written before incidents had an identity cannot be claimed on: unfenced.
        incident: record.map(|r| r.incident).filter(|&i| i > 0),
        first_seen: record.and_then(|r| r.first_seen),
        message_ids: record.map(|r| r.message_ids.clone()).unwrap_or_default(),
        notified_at: record.map(|r| r.notified_at.clone()).unwrap_or_default(),
    }
}

/// Decides without state: every firing finding notifies (no table configured, or the table
/// could not be read: better a repeated page than a missed one).
pub fn decide_stateless(findings: &[Finding], cause: &Cause) -> Vec<Decision> {
    findings
        .iter()
        .filter(|f| f.is_firing())
        .map(|f| Decision {
            fingerprint: f.fingerprint.clone(),
            severity: f.severity,
            cause: cause.clone(),
            incident: None,
            first_seen: None,
            message_ids: BTreeMap::new(),
            notified_at: BTreeMap::new(),
        })
        .collect()
}

/// What `decide` made of the state: decisions, or why the state could not be read.
pub enum Decided {
    Decisions(Vec<Decision>),
    /// Nothing was decided: the caller falls back (see `fallback`).
    Unreadable(CallError),
}

impl AlertState {
    /// Reads state for every finding and decides; with `dry_run` nothing is written.
    pub async fn decide(&self, findings: &[Finding], now: u64, dry_run: bool) -> Decided {
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
                return Decided::Unreadable(e);
            }
        };
        let mut decisions = Vec::new();
        for finding in findings {
            let record = records.get(&finding.fingerprint);
            if let Some(d) = self.decide_one(finding, record, now, dry_run).await {
                decisions.push(d);
            }
        }
        Decided::Decisions(decisions)
    }

    /// The decision for one finding (`None`: nothing to say), writing its transition.
    async fn decide_one(
        &self,
        finding: &Finding,
        record: Option<&Record>,
        now: u64,
        dry_run: bool,
    ) -> Option<Decision> {
        let decision = |cause| decision_from(finding, record, cause);
        match transition(finding, record, self.resolve_after) {
            Transition::Nothing => None,
            Transition::Touch => {
                if !dry_run {
                    self.touch(finding, now, None).await;
                }
                Some(decision(Cause::StillFiring))
            }
            Transition::RetryResolve => {
                let receivers = record
                    .map(|r| r.resolve_pending.clone())
                    .unwrap_or_default();
                let mut d = decision(Cause::ResolveOwed {
                    receivers: receivers.clone(),
                });
                d.message_ids.retain(|r, _| receivers.contains(r));
                Some(d)
            }
            Transition::CountOk => {
                let streak = record.map_or(0, |r| r.ok_streak) + 1;
                if !dry_run {
                    self.touch(finding, now, Some(streak)).await;
                }
                Some(decision(Cause::OkStreak {
                    streak,
                    needed: self.resolve_after,
                }))
            }
            Transition::Open => self.step(finding, record, Step::Open, now, dry_run).await,
            Transition::Escalate => {
                self.step(finding, record, Step::Escalate, now, dry_run)
                    .await
            }
            Transition::Resolve => {
                self.step(finding, record, Step::Resolve, now, dry_run)
                    .await
            }
        }
    }

    /// Opens, escalates or resolves: writes the transition (conditioned on the version read)
    /// and decides by how the write went; a dry run only says what it would write.
    async fn step(
        &self,
        finding: &Finding,
        record: Option<&Record>,
        step: Step,
        now: u64,
        dry_run: bool,
    ) -> Option<Decision> {
        let opens = step == Step::Open;
        let mut d = if dry_run {
            decision_from(finding, record, Cause::DryRun { would: step })
        } else {
            match self.write(finding, record, step, now).await {
                Ok(true) => {
                    let cause = match step {
                        Step::Open => Cause::NewIncident,
                        Step::Escalate => Cause::Escalated,
                        Step::Resolve => Cause::Recovered,
                    };
                    let mut d = decision_from(finding, record, cause);
                    if opens {
                        d.first_seen = Some(now);
                        d.incident = Some(record.map_or(0, |r| r.version) + 1);
                    }
                    d
                }
                // Another invocation made this transition first: it notifies, we don't.
                Ok(false) if step == Step::Resolve => return None,
                Ok(false) => return Some(decision_from(finding, record, Cause::LostRace)),
                Err(e) => {
                    tracing::error!(fingerprint = %finding.fingerprint, error = %e, "cannot write alert state");
                    if step == Step::Resolve {
                        return None;
                    }
                    // Unwritable: notify without claims (better a repeated page than none).
                    let mut d = decision_from(
                        finding,
                        record,
                        Cause::StateUnwritable {
                            error: e.to_string(),
                        },
                    );
                    d.incident = None;
                    return Some(d);
                }
            }
        };
        if opens {
            // A new incident: the previous one's messages are not its own.
            d.message_ids.clear();
            d.notified_at.clear();
        }
        Some(d)
    }

    /// Consistent reads of every fingerprint's item, 100 keys per BatchGetItem.
    async fn read(&self, findings: &[&Finding]) -> Result<HashMap<String, Record>, CallError> {
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
                    .map_err(|e| CallError::bad_data(e.to_string()))?,
            )]);
            // DynamoDB may return part of a batch as unprocessed under load: ask again.
            for _ in 0..5 {
                let out = self
                    .client
                    .batch_get_item()
                    .set_request_items(Some(request.clone()))
                    .send()
                    .await
                    .map_err(CallError::from_sdk)?;
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
        step: Step,
        now: u64,
    ) -> Result<bool, CallError> {
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
            Step::Open => {
                values.insert(":firing".into(), s("firing"));
                values.insert(":severity".into(), s(&finding.severity.to_string()));
                values.insert(":service".into(), s(&finding.service));
                values.insert(":kind".into(), s(&finding.kind));
                values.insert(":empty".into(), AttributeValue::M(HashMap::new()));
                values.insert(":zero".into(), n(0));
                "SET #status = :firing, severity = :severity, service = :service, kind = :kind, \
                 first_seen = :now, last_seen = :now, last_notified = :now, summary = :summary, \
                 message_ids = :empty, sent = :empty, claims = :empty, ok_streak = :zero, \
                 version = :next, incident = :next, expires_at = :expires \
                 REMOVE resolved_at, resolve_pending"
            }
            Step::Escalate => {
                values.insert(":severity".into(), s(&finding.severity.to_string()));
                "SET severity = :severity, last_seen = :now, last_notified = :now, summary = :summary, \
                 version = :next, expires_at = :expires"
            }
            Step::Resolve => {
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
            Err(e) => Err(CallError::from_sdk(e)),
        }
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
            tracing::debug!(fingerprint = %finding.fingerprint, error = %CallError::from_sdk(e), "last_seen not updated");
        }
    }
}

/// Creates the state table with TTL on `expires_at` (for local runs and tests; in AWS the
/// infrastructure code owns the table).
pub async fn create_table(client: &Client, table: &str) -> Result<(), CallError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        TimeToLiveSpecification,
    };
    let built = |e: aws_sdk_dynamodb::error::BuildError| CallError::bad_data(e.to_string());
    let key = AttributeDefinition::builder().attribute_name("fingerprint");
    let key_type = key
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(built)?;
    let hash = KeySchemaElement::builder().attribute_name("fingerprint");
    let hash = hash.key_type(KeyType::Hash).build().map_err(built)?;
    let created = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(key_type)
        .key_schema(hash)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) => {}
        Err(e) => return Err(CallError::from_sdk(e)),
    }
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name("expires_at")
                .enabled(true)
                .build()
                .map_err(|e| CallError::bad_data(e.to_string()))?,
        )
        .send()
        .await
        .map_err(CallError::from_sdk)?;
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
    fn the_action_follows_from_what_happened() {
        use Severity::{Page, Ticket};
        let cases = [
            (Cause::NewIncident, Page, Action::Page),
            (Cause::NewIncident, Ticket, Action::Ticket),
            (Cause::Escalated, Page, Action::Page),
            (Cause::Recovered, Page, Action::Resolve),
            (Cause::StillFiring, Page, Action::FollowUp),
            (
                Cause::OkStreak {
                    streak: 1,
                    needed: 2,
                },
                Page,
                Action::Quiet,
            ),
            (Cause::LostRace, Ticket, Action::Quiet),
            (
                Cause::ResolveOwed { receivers: vec![] },
                Page,
                Action::Resolve,
            ),
            (Cause::DryRun { would: Step::Open }, Ticket, Action::Ticket),
            (
                Cause::DryRun {
                    would: Step::Resolve,
                },
                Page,
                Action::Resolve,
            ),
            (Cause::NoStateTable, Page, Action::Page),
            (
                Cause::StateUnwritable { error: "x".into() },
                Ticket,
                Action::Ticket,
            ),
        ];
        for (cause, severity, action) in cases {
            assert_eq!(cause.action(severity), action, "{cause}");
        }
        // The report keeps its word for both kinds of "nothing new to announce".
        assert_eq!(Action::FollowUp.label(), "already_notified");
        assert_eq!(Action::Quiet.label(), "already_notified");
    }

    #[test]
    fn stateless_decisions_notify_every_firing_finding() {
        let d = decide_stateless(
            &[
                finding(Status::Firing, Severity::Page),
                finding(Status::Ok, Severity::Page),
            ],
            &Cause::NoStateTable,
        );
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].action(), Action::Page);
    }
}

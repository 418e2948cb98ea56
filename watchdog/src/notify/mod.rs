//! The notifier: turns the cycle's decisions into messages on the receivers the routes pick,
//! and remembers in alert state which receiver accepted which message.
//!
//! - `config`: `settings.notify` (receivers, routes); `routing`: which receivers get a finding;
//!   `render`: one message model, rendered per receiver; `secrets`: SSM / environment.
//! - Receivers: `slack` (webhook, bot token), `sns`, `email_ses`, `email_smtp`.
//!
//! Once per incident: a `page`/`ticket` decision (made once, by a conditional write) sends to
//! every routed receiver; each one that accepts is recorded in the incident's `message_ids`
//! (receiver -> id). A receiver that failed after its retries is not recorded, so while the
//! incident fires the next run (`already_notified`) sends to it again — and only to it. A
//! `resolve` goes to every receiver in `message_ids`: Slack bot messages are updated in place
//! (`chat.update` on the stored `ts`), the others get a resolved message. Until each of them
//! accepted it, state keeps the receiver in `resolve_pending`, and later runs send it again.
//!
//! Grouping: findings with equal `group_by` values go to a receiver as one message, and every
//! finding of it records that message's id; `group_wait` holds a young group back.

mod email_ses;
mod email_smtp;
mod events;
mod render;
pub mod routing;
mod secrets;
mod silence;
mod slack;
mod sns;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::aws::Aws;
use crate::error::CallError;
use crate::finding::Finding;
use crate::spec::notify::{NotifySettings, ReceiverSpec};
use crate::state::{Action, AlertState, Cause, Claim, ClaimFor, Decision};

use render::Message;

enum Receiver {
    Slack(slack::Slack),
    Sns(sns::Sns),
    Ses(email_ses::SesEmail),
    Smtp(email_smtp::SmtpEmail),
}

/// Receivers with their secrets read, ready to send.
pub struct Notifier {
    settings: NotifySettings,
    receivers: BTreeMap<String, Receiver>,
    silences: Vec<silence::Silence>,
    http: reqwest::Client,
    sns: aws_sdk_sns::Client,
    ses: aws_sdk_sesv2::Client,
    eventbridge: aws_sdk_eventbridge::Client,
}

/// One attempt to tell one receiver about one incident (part of the cycle's report).
/// A page not sent this run, and why (a silence, or an inhibiting finding).
#[derive(Debug, Serialize)]
pub struct Held {
    pub fingerprint: String,
    pub why: String,
}

/// What the notifier did in one cycle.
#[derive(Debug, Default)]
pub struct Outcome {
    pub deliveries: Vec<Delivery>,
    pub held: Vec<Held>,
    /// Events put on `event_bus`, one per page, ticket and resolve.
    pub events: Vec<Delivery>,
}

#[derive(Debug, Serialize)]
pub struct Delivery {
    /// The finding's fingerprint, or `group:<values>` for a grouped message.
    pub fingerprint: String,
    /// The findings a grouped message carried (empty for a single finding).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<String>,
    pub receiver: String,
    /// `firing` or `resolved`.
    pub message: &'static str,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Notifier {
    /// Checks the routes and reads every receiver's secrets. Errors name the receiver and the
    /// variable or parameter, never a value.
    pub async fn load(settings: &NotifySettings, aws: &Aws) -> Result<Notifier, String> {
        routing::check(settings)?;
        let mut receivers = BTreeMap::new();
        for (name, spec) in &settings.receivers {
            let receiver = match spec {
                ReceiverSpec::SlackWebhook {
                    url,
                    allow_insecure_http,
                } => {
                    let url = secrets::resolve(url, name, &aws.ssm).await?;
                    refuse_plain_http(name, "url", url.expose(), *allow_insecure_http)?;
                    Receiver::Slack(slack::Slack::Webhook { url })
                }
                ReceiverSpec::SlackBot {
                    token,
                    channel,
                    api_url,
                    allow_insecure_http,
                } => {
                    refuse_plain_http(name, "api_url", api_url, *allow_insecure_http)?;
                    Receiver::Slack(slack::Slack::Bot {
                        token: secrets::resolve(token, name, &aws.ssm).await?,
                        channel: channel.clone(),
                        api_url: api_url.clone(),
                    })
                }
                ReceiverSpec::Sns { topic_arn } => Receiver::Sns(sns::Sns {
                    topic_arn: topic_arn.clone(),
                }),
                ReceiverSpec::SesEmail { from, to } => Receiver::Ses(email_ses::SesEmail {
                    from: from.clone(),
                    to: to.clone(),
                }),
                ReceiverSpec::SmtpEmail {
                    host,
                    port,
                    tls,
                    from,
                    to,
                    username,
                    password,
                    ca_file,
                } => {
                    let ca_pem = match ca_file {
                        Some(path) => Some(
                            std::fs::read(path)
                                .map_err(|e| format!("receiver {name}: ca_file {path}: {e}"))?,
                        ),
                        None => None,
                    };
                    let login = match (username, password) {
                        (Some(user), Some(password)) => Some((
                            user.clone(),
                            secrets::resolve(password, name, &aws.ssm).await?,
                        )),
                        (None, None) => None,
                        _ => {
                            return Err(format!(
                                "receiver {name}: username and password go together"
                            ));
                        }
                    };
                    let smtp = email_smtp::SmtpEmail {
                        host: host.clone(),
                        port: *port,
                        tls: *tls,
                        from: from.clone(),
                        to: to.clone(),
                        login,
                        ca_pem,
                    };
                    smtp.check().map_err(|e| format!("receiver {name}: {e}"))?;
                    Receiver::Smtp(smtp)
                }
            };
            receivers.insert(name.clone(), receiver);
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("vigil-watchdog/", env!("CARGO_PKG_VERSION")))
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let silences = settings
            .silences
            .iter()
            .map(silence::Silence::new)
            .collect::<Result<_, _>>()?;
        Ok(Notifier {
            silences,
            settings: settings.clone(),
            receivers,
            http,
            sns: aws.sns.clone(),
            ses: aws.ses.clone(),
            eventbridge: aws.eventbridge.clone(),
        })
    }

    async fn send(
        &self,
        receiver: &str,
        message: &Message,
        previous: Option<&str>,
    ) -> Result<String, CallError> {
        match self.receivers.get(receiver) {
            Some(Receiver::Slack(s)) => s.send(&self.http, message, previous).await,
            Some(Receiver::Sns(s)) => s.send(&self.sns, message).await,
            Some(Receiver::Ses(s)) => s.send(&self.ses, message).await,
            Some(Receiver::Smtp(s)) => s.send(message, previous).await,
            None => Err(CallError::not_found(format!(
                "receiver {receiver} is not configured"
            ))),
        }
    }

    /// Sends what the decisions ask for, all receivers concurrently. With alert state, every
    /// message is claimed first (one delivery per incident and receiver, whatever runs at the
    /// same time) and recorded once accepted.
    pub async fn deliver(
        &self,
        findings: &[Finding],
        decisions: &[Decision],
        state: Option<&AlertState>,
    ) -> Outcome {
        let now = jiff::Timestamp::now();
        let now_secs = now.as_second().max(0) as u64;
        let mut plan = Plan::default();
        for d in decisions {
            if let Some(finding) = finding_for(findings, &d.fingerprint) {
                self.plan_one(&mut plan, d, finding, findings, now);
            }
        }
        let Plan {
            mut outgoing,
            mut held,
            retired,
        } = plan;
        if let Some(wait) = self.settings.group_wait.map(|w| w.as_secs()) {
            self.hold_young_groups(&mut outgoing, &mut held, wait, now_secs);
        }
        // Page ids a still-firing incident keeps: a resolve for another finding of the same
        // grouped page must not turn that page green.
        let live: std::collections::BTreeSet<(&str, &str)> = decisions
            .iter()
            .filter(|d| d.action() != Action::Resolve)
            .flat_map(|d| {
                d.message_ids
                    .iter()
                    .map(|(r, id)| (r.as_str(), id.as_str()))
            })
            .collect();
        let live = &live;
        let jobs = outgoing
            .into_iter()
            .map(|(send, members)| self.send_group(send, members, findings, live, state, now_secs));
        let deliveries: Vec<Delivery> = futures_util::future::join_all(jobs)
            .await
            .into_iter()
            .flatten()
            .collect();
        if let Some(state) = state {
            forget_retired(state, retired).await;
        }
        Outcome {
            deliveries,
            held,
            events: self.publish(findings, decisions).await,
        }
    }

    /// Adds what one decision sends to the plan: nothing while it is silenced or inhibited,
    /// else one member per target receiver, in the message of its group.
    fn plan_one<'a>(
        &self,
        plan: &mut Plan<'a>,
        d: &'a Decision,
        finding: Finding,
        findings: &[Finding],
        now: jiff::Timestamp,
    ) {
        let action = d.action();
        if matches!(action, Action::Page | Action::Ticket | Action::FollowUp)
            && let Some(why) = self.held_back(&finding, findings, now)
        {
            // Not sent, so not recorded: it goes out once the reason is gone.
            if d.message_ids.is_empty() || action != Action::FollowUp {
                tracing::info!(fingerprint = %d.fingerprint, %why, "page held back");
                plan.held.push(Held {
                    fingerprint: d.fingerprint.clone(),
                    why,
                });
            }
            return;
        }
        let resolved = action == Action::Resolve;
        let key = routing::group_key(&self.settings.group_by, &finding);
        let now_secs = now.as_second().max(0) as u64;
        for (receiver, previous, claim) in self.targets(d, &finding, now_secs, &mut plan.retired) {
            plan.outgoing
                .entry(GroupSend {
                    receiver,
                    resolved,
                    key: key.clone(),
                    previous,
                })
                .or_default()
                .push(Member {
                    finding: finding.clone(),
                    decision: d,
                    claim,
                });
        }
    }

    /// Why a page is not sent now: a silence, or a finding that inhibits it.
    fn held_back(
        &self,
        finding: &Finding,
        findings: &[Finding],
        now: jiff::Timestamp,
    ) -> Option<String> {
        if let Some(s) = self.silences.iter().find(|s| s.silences(finding, now)) {
            return Some(format!("silenced by {}", s.name));
        }
        silence::inhibited_by(&self.settings.inhibit, findings, finding)
            .map(|source| format!("inhibited by {}", source.fingerprint))
    }

    /// The receivers a decision goes to: (receiver, the page a resolve answers, claim). A
    /// resolve owed to a receiver no longer configured is added to `retired`.
    fn targets(
        &self,
        d: &Decision,
        finding: &Finding,
        now: u64,
        retired: &mut Vec<(String, String)>,
    ) -> Vec<(String, Option<String>, ClaimFor)> {
        let routed = || routing::routed(&self.settings, finding);
        let page = ClaimFor::Page(d.severity);
        match d.action() {
            Action::Page | Action::Ticket => routed()
                .iter()
                .map(|(r, _)| (r.to_string(), None, page.clone()))
                .collect(),
            // A receiver that failed (or was held back) earlier in this incident gets its
            // page now; one whose repeat interval has passed gets a reminder.
            Action::FollowUp => routed()
                .iter()
                .filter_map(|(r, repeat)| {
                    if !d.message_ids.contains_key(*r) {
                        return Some((r.to_string(), None, page.clone()));
                    }
                    let last = *d.notified_at.get(*r)?;
                    let due = repeat.is_some_and(|every| now.saturating_sub(last) >= every);
                    due.then(|| (r.to_string(), None, ClaimFor::Reminder { last }))
                })
                .collect(),
            Action::Quiet => Vec::new(),
            Action::Resolve => {
                for r in d.message_ids.keys() {
                    if !self.receivers.contains_key(r) {
                        retired.push((d.fingerprint.clone(), r.clone()));
                    }
                }
                d.message_ids
                    .iter()
                    .filter(|(r, _)| self.receivers.contains_key(*r))
                    .map(|(r, id)| (r.clone(), Some(id.clone()), ClaimFor::Resolve))
                    .collect()
            }
        }
    }

    /// Every page, ticket and resolve decision as an event on `event_bus`, if one is set.
    async fn publish(&self, findings: &[Finding], decisions: &[Decision]) -> Vec<Delivery> {
        let Some(bus) = &self.settings.event_bus else {
            return Vec::new();
        };
        let items: Vec<(&Decision, Finding)> = decisions
            .iter()
            .filter(|d| matches!(d.action(), Action::Page | Action::Ticket | Action::Resolve))
            // A resent resolve was already an event when the incident resolved.
            .filter(|d| !matches!(d.cause, Cause::ResolveOwed { .. }))
            .filter_map(|d| Some((d, finding_for(findings, &d.fingerprint)?)))
            .collect();
        events::publish(&self.eventbridge, bus, &items).await
    }

    /// Claims, sends and records one message to one receiver. `None`: every finding in it was
    /// claimed by a concurrent invocation (or already sent), so there is nothing to send.
    async fn send_group(
        &self,
        send: GroupSend,
        members: Vec<Member<'_>>,
        findings: &[Finding],
        live: &std::collections::BTreeSet<(&str, &str)>,
        state: Option<&AlertState>,
        now: u64,
    ) -> Option<Delivery> {
        let GroupSend {
            receiver,
            resolved,
            key,
            previous,
        } = send;
        let mut sending: Vec<(Finding, Option<Claim>)> = Vec::new();
        for m in members {
            match claim(state, &m, &receiver, now).await {
                Permit::Claimed(c) => sending.push((m.finding, Some(c))),
                Permit::Unfenced => sending.push((m.finding, None)),
                Permit::Taken => {
                    tracing::info!(fingerprint = %m.finding.fingerprint, %receiver, "sent or being sent by another invocation");
                }
            }
        }
        if sending.is_empty() {
            return None;
        }
        let member_findings: Vec<&Finding> = sending.iter().map(|(f, _)| f).collect();
        let mut message = Message::group(
            &member_findings,
            resolved,
            self.settings.dashboard_url.as_deref(),
            &group_label(&key),
        );
        let rules = &self.settings.inhibit;
        if resolved {
            message.partial = previous
                .as_deref()
                .is_some_and(|id| live.contains(&(receiver.as_str(), id)));
        } else {
            message.folded = findings
                .iter()
                .filter(|f| {
                    silence::inhibited_by(rules, findings, f).is_some_and(|s| {
                        member_findings
                            .iter()
                            .any(|m| m.fingerprint == s.fingerprint)
                    })
                })
                .map(|f| format!("{} ({})", f.summary, f.fingerprint))
                .collect();
        }
        let result = self.send(&receiver, &message, previous.as_deref()).await;
        if let Some(state) = state {
            for (finding, claim) in &sending {
                let Some(claim) = claim else { continue };
                let recorded = match &result {
                    Ok(id) => state.delivered(claim, id, now).await,
                    Err(_) => state.release(claim).await,
                };
                if let Err(e) = recorded {
                    // Sent but not recorded: the claim's lease keeps others off until it ends.
                    tracing::error!(fingerprint = %finding.fingerprint, %receiver, error = %e, "cannot record delivery");
                }
            }
        }
        match &result {
            Ok(_) => {
                tracing::info!(fingerprint = %message.fingerprint, %receiver, resolved, "notified")
            }
            Err(e) => {
                tracing::error!(fingerprint = %message.fingerprint, %receiver, resolved, error = %e, "notification failed")
            }
        }
        let fingerprints: Vec<String> = sending.into_iter().map(|(f, _)| f.fingerprint).collect();
        Some(Delivery {
            fingerprint: message.fingerprint.clone(),
            findings: if fingerprints.len() > 1 {
                fingerprints
            } else {
                Vec::new()
            },
            receiver,
            message: if resolved { "resolved" } else { "firing" },
            ok: result.is_ok(),
            id: result.as_ref().ok().cloned(),
            error: result.err().map(|e| e.to_string()),
        })
    }

    /// `group_wait`: a group's page waits until its oldest unsent incident is `wait` seconds
    /// old, so findings that start failing a run or two later join the same message. What
    /// waits is not recorded as sent, so a later run sends it.
    fn hold_young_groups(
        &self,
        outgoing: &mut BTreeMap<GroupSend, Vec<Member>>,
        held: &mut Vec<Held>,
        wait: u64,
        now: u64,
    ) {
        let mut oldest: BTreeMap<String, u64> = BTreeMap::new();
        for (send, members) in outgoing.iter().filter(|(s, _)| !s.resolved) {
            for m in members {
                // Without alert state nothing remembers when a group started: no waiting.
                let seen = m.decision.first_seen.unwrap_or(0);
                let entry = oldest.entry(send.key.clone()).or_insert(seen);
                *entry = (*entry).min(seen);
            }
        }
        let young: BTreeMap<String, u64> = oldest
            .into_iter()
            .filter(|(_, seen)| now < seen + wait)
            .collect();
        let mut seen_fps = std::collections::BTreeSet::new();
        outgoing.retain(|send, members| {
            let Some(since) = young.get(&send.key).filter(|_| !send.resolved) else {
                return true;
            };
            for Member { finding: f, .. } in members.iter() {
                if seen_fps.insert(f.fingerprint.clone()) {
                    let why = format!(
                        "grouped by {}: waiting {}s more for the group",
                        send.key,
                        since + wait - now
                    );
                    tracing::info!(fingerprint = %f.fingerprint, %why, "page held back");
                    held.push(Held {
                        fingerprint: f.fingerprint.clone(),
                        why,
                    });
                }
            }
            false
        });
    }
}

/// What a cycle sends, before anything is sent.
#[derive(Default)]
struct Plan<'a> {
    /// One message per entry: (receiver, resolved, group key, the page's id for a resolve) ->
    /// the findings in it. Resolves are grouped by the page they answer.
    outgoing: BTreeMap<GroupSend, Vec<Member<'a>>>,
    held: Vec<Held>,
    /// (fingerprint, receiver): receivers no longer configured that are owed a resolve; they
    /// never will get it.
    retired: Vec<(String, String)>,
}

async fn forget_retired(state: &AlertState, retired: Vec<(String, String)>) {
    for (fp, receiver) in retired {
        tracing::warn!(fingerprint = %fp, %receiver, "receiver no longer configured: its resolve is dropped");
        if let Err(e) = state.forget_resolve(&fp, &receiver).await {
            tracing::error!(fingerprint = %fp, %receiver, error = %e, "cannot record delivery");
        }
    }
}

/// A Slack URL over plain HTTP would carry its secret (token, webhook path) in clear.
fn refuse_plain_http(receiver: &str, key: &str, url: &str, allowed: bool) -> Result<(), String> {
    if url.starts_with("http://") && !allowed {
        return Err(format!(
            "receiver {receiver}: {key} uses http://, which would send the secret in clear; \
             use https://, or set allow_insecure_http: true for a local stand-in"
        ));
    }
    Ok(())
}

/// One message to send: to whom, firing or resolved, for which group, answering which page.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct GroupSend {
    receiver: String,
    resolved: bool,
    key: String,
    previous: Option<String>,
}

/// One finding in an outgoing message, and the claim its delivery is made under.
struct Member<'a> {
    finding: Finding,
    decision: &'a Decision,
    claim: ClaimFor,
}

/// Whether this invocation may send a member's message.
enum Permit {
    /// Claimed in alert state: send, then record or release.
    Claimed(Claim),
    /// No state to claim in (no table, no incident, or the claim could not be written): send
    /// anyway, since a repeated message beats a missed one.
    Unfenced,
    /// Another invocation has it, or it was already sent.
    Taken,
}

async fn claim(state: Option<&AlertState>, m: &Member<'_>, receiver: &str, now: u64) -> Permit {
    let (Some(state), Some(incident)) = (state, m.decision.incident) else {
        return Permit::Unfenced;
    };
    match state
        .claim(
            &m.finding.fingerprint,
            incident,
            receiver,
            m.claim.clone(),
            now,
        )
        .await
    {
        Ok(Some(claim)) => Permit::Claimed(claim),
        Ok(None) => Permit::Taken,
        Err(e) => {
            tracing::error!(fingerprint = %m.finding.fingerprint, %receiver, error = %e, "cannot claim the delivery: sending unfenced");
            Permit::Unfenced
        }
    }
}

/// `service=shop,team=-` -> `shop/-`: the group's values, as shown in a title.
fn group_label(key: &str) -> String {
    key.split(',')
        .map(|part| part.split_once('=').map_or(part, |(_, v)| v))
        .collect::<Vec<_>>()
        .join("/")
}

/// The finding a decision is about; a recovered `<fingerprint>/unknown` incident is described
/// by the check's own finding.
fn finding_for(findings: &[Finding], fingerprint: &str) -> Option<Finding> {
    if let Some(f) = findings.iter().find(|f| f.fingerprint == fingerprint) {
        return Some(f.clone());
    }
    let base = fingerprint.strip_suffix("/unknown")?;
    let f = findings.iter().find(|f| f.fingerprint == base)?;
    Some(Finding {
        fingerprint: fingerprint.to_string(),
        summary: format!("{} can be checked again", f.target),
        ..f.clone()
    })
}

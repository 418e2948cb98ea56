//! One delivery per (incident, receiver), whatever runs concurrently.
//!
//! The schedule and state-change events start invocations exactly while incidents happen, and
//! a send can take seconds (Slack's rate limits, SMTP). Deciding once is not enough: a second
//! invocation that reads the item after the incident opened but before its messages were
//! recorded sees receivers "missing" and would send again. So every send is preceded by a
//! conditional write that claims it:
//!
//! - fenced on the incident (`incident = :incident`): a slow invocation cannot claim, nor
//!   record a message id, on an incident that has since resolved and reopened;
//! - on what the receiver was already sent (`sent.<receiver>` = the severity it got, or its
//!   `notified_at:<receiver>` for a reminder, or its place in `resolve_pending`);
//! - on no live claim (`claims.<receiver>` = lease expiry): the lease outlives any invocation,
//!   so an invocation that dies mid-send only delays the next attempt, never loses it.
//!
//! The winner sends, then records the message id and clears its claim in one write; a failed
//! send clears the claim so the next run retries. DynamoDB evaluates each conditional write
//! atomically, which is what makes this exact (the tests serialise moto's DynamoDB requests,
//! whose conditional writes are not atomic under load).

use aws_sdk_dynamodb::types::AttributeValue;

use super::{AlertState, NOTIFIED_AT};
use crate::error::CallError;
use crate::spec::Severity;

/// How long a claim holds: longer than any invocation (Lambda's limit is 15 minutes; the
/// watchdog's sends time out long before), short enough that a crashed send is retried soon.
const LEASE_SECS: u64 = 900;

/// What a delivery is, which decides the condition it is claimed under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimFor {
    /// The incident's message at this severity, to a receiver not yet sent it at this
    /// severity (a new incident, an escalation, or a receiver that failed earlier).
    Page(Severity),
    /// A repeat-interval reminder: only if nobody reminded since `last` (unix seconds).
    Reminder { last: u64 },
    /// The resolve, to a receiver still owed it.
    Resolve,
}

/// A won claim: the right to send one message to one receiver for one incident.
#[derive(Clone, Debug)]
pub struct Claim {
    fingerprint: String,
    incident: u64,
    receiver: String,
    /// The lease expiry written; it also identifies this claim when it is released.
    until: u64,
    what: ClaimFor,
}

fn s(x: &str) -> AttributeValue {
    AttributeValue::S(x.to_string())
}

fn n(x: u64) -> AttributeValue {
    AttributeValue::N(x.to_string())
}

impl AlertState {
    /// Claims `what` for `receiver` on `incident`. `Ok(None)`: someone else has it, or it is
    /// already done.
    pub async fn claim(
        &self,
        fingerprint: &str,
        incident: u64,
        receiver: &str,
        what: ClaimFor,
        now: u64,
    ) -> Result<Option<Claim>, CallError> {
        // Also identifies this claim when it is released: a later claim can only be taken
        // after this one expired, so it carries a later expiry.
        let until = now + LEASE_SECS;
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("fingerprint", s(fingerprint))
            .update_expression("SET claims.#r = :until")
            .expression_attribute_names("#r", receiver)
            .expression_attribute_values(":incident", n(incident))
            .expression_attribute_values(":until", n(until))
            .expression_attribute_values(":now", n(now));
        let free = "incident = :incident AND (attribute_not_exists(claims.#r) OR claims.#r < :now)";
        let condition = match &what {
            ClaimFor::Page(severity) => {
                request = request.expression_attribute_values(":sev", s(&severity.to_string()));
                format!("{free} AND (attribute_not_exists(sent.#r) OR sent.#r <> :sev)")
            }
            ClaimFor::Reminder { last } => {
                request = request
                    .expression_attribute_names("#at", format!("{NOTIFIED_AT}{receiver}"))
                    .expression_attribute_values(":last", n(*last));
                format!("{free} AND #at = :last")
            }
            ClaimFor::Resolve => {
                request = request.expression_attribute_values(":receiver", s(receiver));
                format!("{free} AND contains(resolve_pending, :receiver)")
            }
        };
        match request.condition_expression(condition).send().await {
            Ok(_) => Ok(Some(Claim {
                fingerprint: fingerprint.to_string(),
                incident,
                receiver: receiver.to_string(),
                until,
                what,
            })),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(CallError::from_sdk(e)),
        }
    }

    /// The claimed message went out as `id`: record it (so resolves can update it in place)
    /// and free the claim, in one write fenced on the incident.
    pub async fn delivered(&self, claim: &Claim, id: &str, now: u64) -> Result<(), CallError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("fingerprint", s(&claim.fingerprint))
            .condition_expression("incident = :incident")
            .expression_attribute_names("#r", &claim.receiver)
            .expression_attribute_values(":incident", n(claim.incident));
        let request = match &claim.what {
            ClaimFor::Page(severity) => request
                .update_expression(
                    "SET message_ids.#r = :id, sent.#r = :sev, #at = :now REMOVE claims.#r",
                )
                .expression_attribute_names("#at", format!("{NOTIFIED_AT}{}", claim.receiver))
                .expression_attribute_values(":id", s(id))
                .expression_attribute_values(":sev", s(&severity.to_string()))
                .expression_attribute_values(":now", n(now)),
            ClaimFor::Reminder { .. } => request
                .update_expression("SET #at = :now REMOVE claims.#r")
                .expression_attribute_names("#at", format!("{NOTIFIED_AT}{}", claim.receiver))
                .expression_attribute_values(":now", n(now)),
            ClaimFor::Resolve => request
                .update_expression("DELETE resolve_pending :owed REMOVE claims.#r")
                .expression_attribute_values(
                    ":owed",
                    AttributeValue::Ss(vec![claim.receiver.clone()]),
                ),
        };
        request.send().await.map_err(CallError::from_sdk)?;
        Ok(())
    }

    /// The claimed message did not go out: free the claim so the next run tries again.
    pub async fn release(&self, claim: &Claim) -> Result<(), CallError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("fingerprint", s(&claim.fingerprint))
            .update_expression("REMOVE claims.#r")
            .condition_expression("incident = :incident AND claims.#r = :until")
            .expression_attribute_names("#r", &claim.receiver)
            .expression_attribute_values(":incident", n(claim.incident))
            .expression_attribute_values(":until", n(claim.until))
            .send()
            .await
            .map_err(CallError::from_sdk)?;
        Ok(())
    }

    /// A receiver owed a resolve that is no longer configured: it never will get it.
    pub async fn forget_resolve(&self, fingerprint: &str, receiver: &str) -> Result<(), CallError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("fingerprint", s(fingerprint))
            .update_expression("DELETE resolve_pending :r")
            .expression_attribute_values(":r", AttributeValue::Ss(vec![receiver.to_string()]))
            .send()
            .await
            .map_err(CallError::from_sdk)?;
        Ok(())
    }
}

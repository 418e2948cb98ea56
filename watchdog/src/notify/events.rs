//! Findings as events: every page, ticket and resolve decision is also put on an EventBridge
//! bus (`PutEvents`, source `vigil.watchdog`, detail-type `Vigil Page` / `Vigil Ticket` /
//! `Vigil Resolve`) for other automation. Use a custom bus: rules there can route to anything.

use serde_json::json;

use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use crate::aws::error_text;
use crate::finding::Finding;
use crate::state::{Action, Decision};

use super::Delivery;

pub const SOURCE: &str = "vigil.watchdog";

fn entry(bus: &str, d: &Decision, f: &Finding) -> PutEventsRequestEntry {
    let detail_type = match d.action() {
        Action::Page => "Vigil Page",
        Action::Ticket => "Vigil Ticket",
        _ => "Vigil Resolve",
    };
    let detail = json!({
        "fingerprint": d.fingerprint,
        "action": d.action(),
        "severity": d.severity,
        "reason": d.reason(),
        "first_seen": d.first_seen,
        "status": f.status,
        "service": f.service,
        "module": f.module,
        "kind": f.kind,
        "target": f.target,
        "labels": f.labels,
        "summary": f.summary,
        // Bounded: an entry may be at most 256 KB.
        "details": f.details.iter().take(20).collect::<Vec<_>>(),
        "values": f.values,
    });
    PutEventsRequestEntry::builder()
        .event_bus_name(bus)
        .source(SOURCE)
        .detail_type(detail_type)
        .resources(d.fingerprint.clone())
        .detail(detail.to_string())
        .build()
}

/// Puts one event per decision (10 per request); one `Delivery` per event.
pub async fn publish(
    client: &aws_sdk_eventbridge::Client,
    bus: &str,
    items: &[(&Decision, Finding)],
) -> Vec<Delivery> {
    let mut out = Vec::new();
    for chunk in items.chunks(10) {
        let entries: Vec<PutEventsRequestEntry> =
            chunk.iter().map(|(d, f)| entry(bus, d, f)).collect();
        let result = client.put_events().set_entries(Some(entries)).send().await;
        for (i, (d, _)) in chunk.iter().enumerate() {
            let (id, error) = match &result {
                Ok(r) => match r.entries().get(i) {
                    Some(e) if e.error_code().is_none() => (e.event_id().map(str::to_string), None),
                    Some(e) => (
                        None,
                        Some(format!(
                            "{}: {}",
                            e.error_code().unwrap_or(""),
                            e.error_message().unwrap_or("")
                        )),
                    ),
                    None => (None, Some("no result for this entry".to_string())),
                },
                Err(e) => (None, Some(error_text(e))),
            };
            if let Some(e) = &error {
                tracing::error!(fingerprint = %d.fingerprint, %bus, error = %e, "event not put");
            }
            out.push(Delivery {
                fingerprint: d.fingerprint.clone(),
                findings: Vec::new(),
                receiver: format!("event_bus:{bus}"),
                message: if d.action() == Action::Resolve {
                    "resolved"
                } else {
                    "firing"
                },
                ok: error.is_none(),
                id,
                error,
            });
        }
    }
    out
}

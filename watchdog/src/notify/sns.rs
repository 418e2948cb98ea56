//! SNS: one `Publish` per page or resolve to a topic, with `MessageStructure=json` so SMS
//! subscribers get one short line and email (and every other protocol) the full text, a subject
//! under 100 characters, and message attributes (`severity`, `service`, `status`,
//! `fingerprint`) for subscription filter policies. The whole message stays under SNS's 256 KB.

use aws_sdk_sns::Client;
use aws_sdk_sns::types::MessageAttributeValue;
use serde_json::json;

use crate::error::CallError;

use super::render::{Message, truncate};

/// SNS allows 256 KiB for message + attributes; keep the full body well below.
const MAX_BODY_CHARS: usize = 60_000;

pub struct Sns {
    pub topic_arn: String,
}

/// The three bodies and subject for `message` (a pure function, unit-tested).
pub fn bodies(message: &Message) -> (String, String) {
    let mut subject: String = message
        .title
        .chars()
        // SNS subjects: printable ASCII-ish, no line breaks.
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate(&mut subject, 99);
    let mut sms = message.fallback();
    truncate(&mut sms, 140);
    let mut full = message.text();
    truncate(&mut full, MAX_BODY_CHARS);
    let structure = json!({ "default": full, "email": full, "sms": sms });
    (subject, structure.to_string())
}

fn attribute(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("data_type is set")
}

impl Sns {
    pub async fn send(&self, client: &Client, message: &Message) -> Result<String, CallError> {
        let (subject, body) = bodies(message);
        let status = if message.resolved {
            "resolved"
        } else {
            "firing"
        };
        let out = client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject)
            .message_structure("json")
            .message(body)
            .message_attributes("severity", attribute(&message.severity.to_string()))
            .message_attributes("service", attribute(&message.service))
            .message_attributes("status", attribute(status))
            .message_attributes("fingerprint", attribute(&message.fingerprint))
            .send()
            .await
            .map_err(CallError::from_sdk)?;
        Ok(out.message_id().unwrap_or("published").to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::{Finding, Status};
    use crate::spec::Severity;

    #[test]
    fn subject_is_short_sms_is_short_and_the_full_body_is_bounded() {
        let f = Finding {
            fingerprint: "http:shop:x".into(),
            status: Status::Firing,
            severity: Severity::Page,
            service: "shop".into(),
            module: None,
            kind: "http".into(),
            target: "https://shop.example/".repeat(20),
            labels: Default::default(),
            summary: "down".into(),
            details: vec!["y".repeat(1000); 500],
            values: Default::default(),
        };
        let (subject, body) = bodies(&Message::new(&f, false, None));
        assert!(subject.chars().count() < 100, "{subject}");
        assert!(subject.starts_with("[PAGE] shop: "));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(v["sms"].as_str().unwrap().chars().count() <= 140);
        assert!(v["email"].as_str().unwrap().contains("What: http"));
        assert!(body.len() < 256 * 1024, "{}", body.len());
    }
}

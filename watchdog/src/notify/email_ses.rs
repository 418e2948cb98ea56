//! Email through SES (v2 `SendEmail`): a simple message with a text and an HTML part.

use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message as SesMessage};

use crate::error::CallError;

use super::render::{Message, truncate};

pub struct SesEmail {
    pub from: String,
    pub to: Vec<String>,
}

fn content(data: String) -> Result<Content, CallError> {
    Content::builder()
        .data(data)
        .charset("UTF-8")
        .build()
        .map_err(|e| CallError::bad_data(e.to_string()))
}

impl SesEmail {
    pub async fn send(&self, client: &Client, message: &Message) -> Result<String, CallError> {
        let mut subject = message.title.clone();
        truncate(&mut subject, 200);
        let email = SesMessage::builder()
            .subject(content(subject)?)
            .body(
                Body::builder()
                    .text(content(message.text())?)
                    .html(content(message.html())?)
                    .build(),
            )
            .build();
        let out = client
            .send_email()
            .from_email_address(&self.from)
            .destination(
                Destination::builder()
                    .set_to_addresses(Some(self.to.clone()))
                    .build(),
            )
            .content(EmailContent::builder().simple(email).build())
            .send()
            .await
            .map_err(CallError::from_sdk)?;
        Ok(out.message_id().unwrap_or("sent").to_string())
    }
}

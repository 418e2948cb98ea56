//! Email through SMTP with lettre: STARTTLS (rustls) by default, a multipart/alternative text +
//! HTML body. The page's `Message-ID` is what alert state stores, so the resolve is sent as a
//! reply to it (`In-Reply-To`, `References`) and mail clients thread the two.

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::render::Message;
use super::secrets::Secret;
use crate::error::{CallError, ErrorKind};
use crate::spec::notify::SmtpTls;

pub struct SmtpEmail {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub from: String,
    pub to: Vec<String>,
    pub login: Option<(String, Secret)>,
    /// A CA certificate (PEM) trusted besides the system's, from `ca_file`.
    pub ca_pem: Option<Vec<u8>>,
}

fn mailbox(address: &str) -> Result<Mailbox, CallError> {
    address
        .parse()
        .map_err(|e| CallError::bad_data(format!("bad address {address:?}: {e}")))
}

impl SmtpEmail {
    pub fn check(&self) -> Result<(), CallError> {
        mailbox(&self.from)?;
        for to in &self.to {
            mailbox(to)?;
        }
        if let Some(pem) = &self.ca_pem {
            lettre::transport::smtp::client::Certificate::from_pem(pem).map_err(|e| {
                CallError::bad_data(format!("ca_file is not a PEM certificate: {e}"))
            })?;
        }
        if self.tls == SmtpTls::None && self.login.is_some() {
            return Err(CallError::new(
                ErrorKind::Refused,
                "a password is never sent over plain SMTP: use tls: starttls",
            ));
        }
        Ok(())
    }

    fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, CallError> {
        let builder = match self.tls {
            SmtpTls::Starttls => {
                use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
                let mut params = TlsParameters::builder(self.host.clone());
                if let Some(pem) = &self.ca_pem {
                    params = params.add_root_certificate(
                        Certificate::from_pem(pem)
                            .map_err(|e| CallError::bad_data(format!("ca_file: {e}")))?,
                    );
                }
                let params = params
                    .build()
                    .map_err(|e| CallError::bad_data(format!("SMTP relay {}: {e}", self.host)))?;
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)
                    .tls(Tls::Required(params))
            }
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host),
        };
        let mut builder = builder
            .port(self.port)
            .timeout(Some(std::time::Duration::from_secs(10)));
        if let Some((user, password)) = &self.login {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose().to_string(),
            ));
        }
        Ok(builder.build())
    }

    pub async fn send(
        &self,
        message: &Message,
        previous: Option<&str>,
    ) -> Result<String, CallError> {
        let domain = self
            .from
            .rsplit_once('@')
            .map_or("vigil.invalid", |(_, d)| d.trim_end_matches('>'));
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let id = format!("<vigil.{nanos:x}.{}@{domain}>", std::process::id());
        let mut builder = lettre::Message::builder()
            .from(mailbox(&self.from)?)
            .subject(&message.title)
            .message_id(Some(id.clone()));
        for to in &self.to {
            builder = builder.to(mailbox(to)?);
        }
        if let Some(previous) = previous.filter(|p| p.starts_with('<')) {
            builder = builder
                .in_reply_to(previous.to_string())
                .references(previous.to_string());
        }
        let email = builder
            .multipart(MultiPart::alternative_plain_html(
                message.text(),
                message.html(),
            ))
            .map_err(|e| CallError::bad_data(format!("building the email: {e}")))?;
        let mut last = String::new();
        for attempt in 0..3u32 {
            match self.transport()?.send(email.clone()).await {
                Ok(_) => return Ok(id),
                // 5xx: the server refused this message; trying again will not help.
                Err(e) if e.is_permanent() => {
                    return Err(CallError::new(
                        ErrorKind::Refused,
                        format!("SMTP refused: {e}"),
                    ));
                }
                Err(e) => {
                    last = e.to_string();
                    tokio::time::sleep(std::time::Duration::from_millis(300 << attempt)).await;
                }
            }
        }
        Err(CallError::new(
            ErrorKind::Unreachable,
            format!("SMTP: gave up after 3 attempts: {last}"),
        ))
    }
}

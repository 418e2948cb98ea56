//! `settings.notify` in the spec (read here with the rest of the spec; used by `notify` and `iam`): receivers (where messages go), routes (which findings go
//! where) and the incident lifecycle knobs. Secrets are never written here, only where to
//! read them from (`{ env: NAME }` or `{ ssm: /parameter/name }`).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Severity, Span};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySettings {
    /// Receiver name -> how to reach it. Names are what routes and alert state refer to.
    #[serde(deserialize_with = "yaml_serde::with::singleton_map_recursive::deserialize")]
    pub receivers: BTreeMap<String, ReceiverSpec>,
    /// Tried in order; see `routing` for `continue`.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Receivers for a finding no route matched (may be empty: then it is not sent).
    #[serde(default)]
    pub default_receivers: Vec<String>,
    /// Repeat interval for `default_receivers` (see `Route::repeat_interval`).
    #[serde(default)]
    pub default_repeat_interval: Option<Span>,
    /// Maintenance windows: matching pages are held back while one holds.
    #[serde(default)]
    pub silences: Vec<SilenceSpec>,
    /// While a `source` finding fires, firing `target` findings are held back and listed in
    /// the source's message.
    #[serde(default)]
    pub inhibit: Vec<InhibitRule>,
    /// EventBridge bus (name or ARN) that gets every page, ticket and resolve as an event.
    #[serde(default)]
    pub event_bus: Option<String>,
    /// Link shown on every message when a finding has no `dashboard` label.
    #[serde(default)]
    pub dashboard_url: Option<String>,
    /// What makes findings one notification: `service`, `module`, `kind`, `severity`, or a
    /// label name. Findings with equal values go to a receiver as one message. Empty: each
    /// finding alone.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// How long a new group's page waits (from its first incident's `first_seen`) for more
    /// findings of the group to join it. None: sent in the run that opened it.
    #[serde(default)]
    pub group_wait: Option<Span>,
}

/// Where a secret comes from. Its value is never logged, printed or stored in alert state.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretRef {
    /// An environment variable (local runs, tests).
    Env(String),
    /// An SSM Parameter Store parameter, read with decryption (SecureString).
    Ssm(String),
}

impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "environment variable {name}"),
            SecretRef::Ssm(name) => write!(f, "SSM parameter {name}"),
        }
    }
}

fn slack_api() -> String {
    "https://slack.com/api".into()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ReceiverSpec {
    /// A Slack incoming webhook (the URL is the secret). Cannot edit what it posted, so a
    /// resolve is a second message.
    SlackWebhook {
        url: SecretRef,
        /// Allows an `http://` URL, which sends the webhook secret in clear: local stand-ins
        /// only.
        #[serde(default)]
        allow_insecure_http: bool,
    },
    /// The Slack Web API with a bot token: `chat.postMessage`, then `chat.update` on the
    /// stored `ts` turns the same message into "resolved".
    SlackBot {
        token: SecretRef,
        channel: String,
        #[serde(default = "slack_api")]
        api_url: String,
        /// Allows an `http://` `api_url`, which sends the token in clear: local stand-ins only.
        #[serde(default)]
        allow_insecure_http: bool,
    },
    /// An SNS topic: `Publish` with per-protocol bodies (short SMS, full email).
    Sns { topic_arn: String },
    /// Email through SES (v2 `SendEmail`); `from` must be a verified identity.
    SesEmail { from: String, to: Vec<String> },
    /// Email through an SMTP server, HTML + text, STARTTLS by default.
    SmtpEmail {
        host: String,
        #[serde(default = "smtp_port")]
        port: u16,
        #[serde(default)]
        tls: SmtpTls,
        from: String,
        to: Vec<String>,
        /// Login, when the server wants one (with `password`).
        #[serde(default)]
        username: Option<String>,
        #[serde(default)]
        password: Option<SecretRef>,
        /// PEM file of a CA to trust besides the system's (a private relay's certificate).
        #[serde(default)]
        ca_file: Option<String>,
    },
}

fn smtp_port() -> u16 {
    587
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// STARTTLS, required (the connection fails rather than send in clear).
    #[default]
    Starttls,
    /// Plain SMTP: only for a relay on localhost or a test server. No login allowed.
    None,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    #[serde(default)]
    pub severity: Option<Severity>,
    /// The finding's kind: `slo`, `http`, `asg`, `target_group`, ...
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub module: Option<String>,
    /// Every label given must be present with this value.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Empty: matches every finding.
    #[serde(default, rename = "match")]
    pub matcher: Matcher,
    pub receivers: Vec<String>,
    /// Keep trying later routes after this one matched (their receivers are added).
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    /// While the incident fires, send it again to these receivers this long after they were
    /// last sent it (a reminder). None: once per incident.
    #[serde(default)]
    pub repeat_interval: Option<Span>,
}

/// A one-off (`start`/`end`, RFC 3339) or recurring (`days`, `from`/`to` as `HH:MM` in
/// `time_zone`, default UTC) maintenance window.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceSpec {
    pub name: String,
    #[serde(default, rename = "match")]
    pub matcher: Matcher,
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub end: Option<String>,
    /// `mon` .. `sun`; empty: every day.
    #[serde(default)]
    pub days: Vec<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub time_zone: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitRule {
    pub source: Matcher,
    pub target: Matcher,
}

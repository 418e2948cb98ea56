//! How the demo prints: timestamped story lines, a Slack message as a reader would see it, an
//! email as it arrived.

use std::io::IsTerminal;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

pub struct Printer {
    started: Instant,
    color: bool,
}

impl Printer {
    pub fn start() -> Printer {
        Printer {
            started: Instant::now(),
            color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    /// Seconds since the demo started.
    pub fn elapsed(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.started).as_secs_f64()
    }

    /// `[+m:ss hh:mm:ss]`: the demo's clock and the wall clock (the watchdog's windows are
    /// wall-clock minutes).
    fn stamp(&self) -> String {
        let e = self.started.elapsed().as_secs();
        format!("[+{}:{:02} {}]", e / 60, e % 60, clock(now_unix()))
    }

    pub fn line(&self, text: impl AsRef<str>) {
        println!("{} {}", self.dim(&self.stamp()), text.as_ref());
    }

    pub fn step(&self, text: impl AsRef<str>) {
        println!("{} {}", self.dim(&self.stamp()), self.bold(text.as_ref()));
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }

    pub fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }

    pub fn red(&self, text: &str) -> String {
        self.paint("1;31", text)
    }

    pub fn green(&self, text: &str) -> String {
        self.paint("1;32", text)
    }

    pub fn yellow(&self, text: &str) -> String {
        self.paint("1;33", text)
    }

    /// A Slack message (Block Kit in a coloured attachment) as text in a box, its colour bar
    /// as the box's left edge.
    pub fn slack_message(&self, channel: &str, body: &Value, edited: bool) {
        let attachment = &body["attachments"][0];
        let bar = match attachment["color"].as_str().unwrap_or("") {
            "#2eb67d" => self.green("┃"),
            "#ecb22e" => self.yellow("┃"),
            _ => self.red("┃"),
        };
        let mut lines = vec![format!(
            "{channel} · vigil-watchdog{}",
            if edited { " (edited)" } else { "" }
        )];
        for block in attachment["blocks"].as_array().into_iter().flatten() {
            match block["type"].as_str() {
                Some("header") => {
                    lines.push(self.bold(block["text"]["text"].as_str().unwrap_or("")));
                }
                Some("section") => {
                    if let Some(t) = block["text"]["text"].as_str() {
                        lines.extend(t.lines().map(mrkdwn));
                    }
                    for f in block["fields"].as_array().into_iter().flatten() {
                        let t = f["text"].as_str().unwrap_or("");
                        lines.push(mrkdwn(&t.replace('\n', " ")));
                    }
                }
                Some("context") => {
                    let parts: Vec<String> = block["elements"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|e| e["text"].as_str().map(mrkdwn))
                        .collect();
                    lines.push(self.dim(&parts.join("  ·  ")));
                }
                _ => {}
            }
        }
        if lines.len() == 1 {
            lines.push(body["text"].as_str().unwrap_or("").to_owned());
        }
        for l in lines {
            println!("      {bar} {l}");
        }
    }
}

/// Slack's mrkdwn made plain: `*bold*` and links `<url|text>` → `text (url)`.
fn mrkdwn(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('>') else {
            break;
        };
        let inner = &rest[start + 1..start + end];
        match inner.split_once('|') {
            Some((url, label)) => out.push_str(&format!("{label} ({url})")),
            None => out.push_str(inner),
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out.replace('*', "")
}

/// One email as aiosmtpd printed it.
#[derive(Debug, Clone)]
pub struct Email {
    pub raw: String,
}

impl Email {
    /// Every message aiosmtpd's debugging handler printed, in order.
    pub fn all_in(log: &str) -> Vec<Email> {
        log.split("---------- MESSAGE FOLLOWS ----------")
            .skip(1)
            .filter_map(|m| {
                let (message, _) = m.split_once("------------ END MESSAGE ------------")?;
                Some(Email {
                    raw: message.trim_start_matches(['\r', '\n']).to_owned(),
                })
            })
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.raw.lines().find_map(|l| {
            let (k, v) = l.split_once(": ")?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// The first lines of the plain-text part (quoted-printable soft breaks joined).
    pub fn text_lines(&self, n: usize) -> Vec<String> {
        let Some(start) = self.raw.find("Content-Type: text/plain") else {
            return Vec::new();
        };
        let part = &self.raw[start..];
        let Some(body_start) = part.find("\n\n").or_else(|| part.find("\r\n\r\n")) else {
            return Vec::new();
        };
        let body = part[body_start..]
            .replace("=\r\n", "")
            .replace("=\n", "")
            .replace("=3D", "=")
            .replace("=E2=80=94", "—")
            .replace("=C3=97", "×");
        body.lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .take_while(|l| !l.starts_with("--"))
            .take(n)
            .map(str::to_owned)
            .collect()
    }
}

pub fn print_email(p: &Printer, email: &Email) {
    for h in ["Subject", "From", "To", "Date", "In-Reply-To"] {
        if let Some(v) = email.header(h) {
            println!("      {} {}: {v}", p.dim("✉"), h);
        }
    }
    for l in email.text_lines(6) {
        println!("      {} {l}", p.dim("│"));
    }
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

pub fn now_unix_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// `hh:mm:ss` (UTC) of a unix time.
pub fn clock(secs: u64) -> String {
    let s = secs % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// RFC 3339 (UTC) of a unix time, for the EventBridge payload.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{}Z", clock(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_341_600), "2026-11-22T10:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn mrkdwn_links_and_bold() {
        assert_eq!(
            mrkdwn("*Runbook*: <https://r.example|open>"),
            "Runbook: open (https://r.example)"
        );
    }

    #[test]
    fn emails_are_split_and_read() {
        let log = "x\n---------- MESSAGE FOLLOWS ----------\nSubject: [PAGE] a\nX-Peer: 1\n\nContent-Type: text/plain\n\nhello =\nworld\n------------ END MESSAGE ------------\n";
        let mails = Email::all_in(log);
        assert_eq!(mails.len(), 1);
        assert_eq!(mails[0].header("subject").as_deref(), Some("[PAGE] a"));
        assert_eq!(mails[0].text_lines(3), vec!["hello world".to_string()]);
    }
}

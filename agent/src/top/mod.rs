//! `vigil-agent top`: a live terminal view of a running agent, read from its own Prometheus
//! endpoint (the same numbers a dashboard sees, so there is no second source of truth).

mod model;
mod view;

pub use model::{Reading, Row, View};

use std::time::{Duration, Instant};

use anyhow::Context;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyModifiers};

use crate::event::Tags;
use crate::sources::prometheus_scrape::parse;

/// Reads the endpoint once.
async fn read(client: &reqwest::Client, url: &str) -> anyhow::Result<Reading> {
    let body = client
        .get(url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .with_context(|| format!("cannot read {url}"))?
        .text()
        .await
        .with_context(|| format!("cannot read {url}"))?;
    let tags = Tags::new();
    let options = parse::Options {
        max_series: 1_000_000,
        default_timestamp_ms: 0,
        start_ms: 0,
        extra_tags: &tags,
        deadline: None,
    };
    let mut metrics = Vec::new();
    parse::parse(&body, &options, &mut metrics)
        .map_err(|e| anyhow::anyhow!("{url}: line {}: {}", e.line, e.message))?;
    Ok(Reading::from_metrics(&metrics))
}

/// Two readings `interval` apart, printed as a table: for scripts and tests.
pub fn once(url: &str, interval: Duration) -> anyhow::Result<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = client()?;
        let before = read(&client, url).await?;
        let started = Instant::now();
        tokio::time::sleep(interval).await;
        let after = read(&client, url).await?;
        Ok(view::text(
            &View::between(&before, &after, started.elapsed()),
            url,
        ))
    })
}

/// The live view, refreshed every `interval` until q, Esc or Ctrl-C.
pub fn live(url: &str, interval: Duration) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = client()?;
    let mut terminal = ratatui::try_init().context("cannot open the terminal")?;
    let result = (|| -> anyhow::Result<()> {
        let mut last: Option<(Reading, Instant)> = None;
        let mut view: Option<View> = None;
        loop {
            let status = match runtime.block_on(read(&client, url)) {
                Ok(reading) => {
                    let now = Instant::now();
                    if let Some((before, at)) = &last {
                        view = Some(View::between(before, &reading, now - *at));
                    }
                    last = Some((reading, now));
                    "ok".to_owned()
                }
                Err(e) => format!("{e:#}"),
            };
            terminal.draw(|f| view::draw(f, view.as_ref(), url, &status))?;
            let deadline = Instant::now() + interval;
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                if event::poll(left)?
                    && let Event::Key(key) = event::read()?
                {
                    let ctrl_c = key.code == KeyCode::Char('c')
                        && key.modifiers.contains(KeyModifiers::CONTROL);
                    if matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c {
                        return Ok(());
                    }
                }
            }
        }
    })();
    ratatui::restore();
    result
}

fn client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .context("HTTP client")
}

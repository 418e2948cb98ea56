//! The agent's own HTTP endpoint (`[api]`): `/metrics` (Prometheus text), `/health` (the
//! process answers) and `/ready` (every sink delivers). Localhost by default: the metrics name
//! files and components, which is nobody else's business.

use std::net::SocketAddr;
use vigil_common::config_default;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::telemetry;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Serve the endpoint at all.
    #[serde(default = "config_default::yes")]
    pub enabled: bool,
    /// Address to listen on.
    #[serde(default = "default_address")]
    pub address: SocketAddr,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            address: default_address(),
        }
    }
}

fn default_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9598))
}

/// Binds the address and serves until `shutdown`. A taken address is logged, not fatal: the
/// agent's job is shipping data, and its own endpoint must never stop that.
pub async fn serve(
    config: &ApiConfig,
    shutdown: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    if !config.enabled {
        return None;
    }
    let listener = match tokio::net::TcpListener::bind(config.address).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(address = %config.address, error = %e, "api: cannot listen; running without /metrics, /health, /ready");
            return None;
        }
    };
    tracing::info!(address = %config.address, "api listening (/metrics, /health, /ready)");
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready));
    Some(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "api server stopped");
        }
    }))
}

async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        telemetry::render(),
    )
}

async fn health() -> &'static str {
    "ok\n"
}

async fn ready() -> impl IntoResponse {
    let report = telemetry::health_report();
    let mut body = String::new();
    for (name, h) in &report {
        body.push_str(&format!(
            "{name}: {} ({} consecutive failed requests)\n",
            if h.healthy { "healthy" } else { "unhealthy" },
            h.consecutive_failures
        ));
    }
    let status = if report.values().all(|h| h.healthy) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}

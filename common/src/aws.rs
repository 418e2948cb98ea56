//! AWS SDK configuration from the SDK's standard chain only: `AWS_REGION`, `AWS_ENDPOINT_URL`
//! (and the per-service `AWS_ENDPOINT_URL_<SERVICE>`), profiles, and the credentials chain
//! (environment, web identity, ECS, IMDSv2). Pointing Vigil at a local stand-in such as moto
//! therefore needs no Vigil-specific flag.
//!
//! The HTTP client is the SDK's current one (hyper 1, rustls on aws-lc-rs; see deny.toml). On a
//! host without CA certificates (a minimal container image, a host without `ca-certificates`)
//! the SDK would start with an empty trust store and, in debug builds, stop on an assertion;
//! there we say what is missing once, loudly, and give the client an explicitly empty store:
//! plain-http endpoints keep working and https ones fail their handshakes, retried and counted
//! by each sink, until certificates are installed.

use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_smithy_http_client::{Builder, ConnectorBuilder};

/// [`load`], for clients whose callers retry on their own (the agent's sinks never give up on
/// accepted data and back off per request): the SDK's retries are off, since they would only
/// multiply the attempts, and each call ends after `timeout`.
pub async fn load_without_retries(timeout: std::time::Duration) -> SdkConfig {
    without_retries(load().await, timeout)
}

/// `sdk` with the SDK's own retries off and each call ending after `timeout`.
pub fn without_retries(sdk: SdkConfig, timeout: std::time::Duration) -> SdkConfig {
    sdk.into_builder()
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_timeout(timeout)
                .build(),
        )
        .build()
}

/// Loads the shared SDK configuration.
pub async fn load() -> SdkConfig {
    let loader = aws_config::defaults(BehaviorVersion::latest());
    if system_has_ca_certificates() {
        return loader.load().await;
    }
    tracing::error!(
        "no CA certificates found in the system trust store (install the ca-certificates \
         package, or point SSL_CERT_FILE / SSL_CERT_DIR at them): calls to https AWS \
         endpoints will fail until then"
    );
    loader
        .http_client(client_without_trust_anchors())
        .load()
        .await
}

/// Whether the platform store (or `SSL_CERT_FILE` / `SSL_CERT_DIR`) holds any certificate.
fn system_has_ca_certificates() -> bool {
    !rustls_native_certs::load_native_certs().certs.is_empty()
}

/// The SDK's default client (same TLS provider, proxy settings from the environment) with an
/// explicitly empty trust store instead of the missing system one.
fn client_without_trust_anchors() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    let context = TlsContext::builder()
        .with_trust_store(TrustStore::empty().with_native_roots(false))
        .build()
        .expect("a TLS context without certificates is valid");
    Builder::new().build_with_connector_fn(move |settings, components| {
        let mut connector = ConnectorBuilder::default()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::AwsLc,
            ))
            .tls_context(context.clone());
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

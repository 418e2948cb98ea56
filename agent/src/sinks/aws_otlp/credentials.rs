//! Credentials for signing, from the SDK's provider chain (environment, profile, web identity,
//! ECS task role, EC2 instance role), kept until they near their expiry and fetched again then,
//! so rotated credentials are used without a restart.
//!
//! The chain's provider itself does not cache (the SDK's clients cache in their identity cache,
//! which a hand-signed request does not go through), hence this small cache.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use tokio::sync::Mutex;

/// Refresh this long before expiry, or at half of a shorter lifetime.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

struct Cached {
    credentials: Credentials,
    refresh_at: Option<SystemTime>,
}

pub struct CredentialsCache {
    provider: SharedCredentialsProvider,
    current: Mutex<Option<Cached>>,
}

impl CredentialsCache {
    pub fn new(provider: SharedCredentialsProvider) -> Self {
        Self {
            provider,
            current: Mutex::new(None),
        }
    }

    /// Current credentials; an error describes why the chain found none.
    pub async fn get(&self) -> Result<Credentials, String> {
        let mut current = self.current.lock().await;
        let now = SystemTime::now();
        if let Some(c) = current.as_ref()
            && c.refresh_at.is_none_or(|t| now < t)
        {
            return Ok(c.credentials.clone());
        }
        let credentials = self
            .provider
            .provide_credentials()
            .await
            .map_err(|e| vigil_common::error_text::chain(&e))?;
        let refresh_at = credentials.expiry().map(|expiry| {
            let lifetime = expiry.duration_since(now).unwrap_or_default();
            expiry - REFRESH_BEFORE_EXPIRY.min(lifetime / 2)
        });
        *current = Some(Cached {
            credentials: credentials.clone(),
            refresh_at,
        });
        Ok(credentials)
    }

    /// Forgets the cached credentials (after the service refused them).
    pub async fn invalidate(&self) {
        *self.current.lock().await = None;
    }
}

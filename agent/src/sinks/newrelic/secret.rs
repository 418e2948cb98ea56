//! The license key: read once at start from the environment, a file or SSM Parameter Store,
//! and never printed (its `Debug` and `Display` show a placeholder; the header is marked
//! sensitive so HTTP tracing redacts it too).

use std::fmt;

use anyhow::{Context, bail};

use super::config::{DEFAULT_LICENSE_ENV, LicenseKeySource};

#[derive(Clone)]
pub struct LicenseKey(String);

impl fmt::Debug for LicenseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LicenseKey(<redacted>)")
    }
}

impl fmt::Display for LicenseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl LicenseKey {
    pub fn new(key: String) -> anyhow::Result<Self> {
        let key = key.trim().to_owned();
        if key.is_empty() {
            bail!("the license key is empty");
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            // Never echo it: the message says what is wrong, not what it was.
            bail!("the license key contains characters that cannot go into an HTTP header");
        }
        Ok(Self(key))
    }

    /// The `api-key` header value, marked sensitive.
    pub fn header(&self) -> reqwest::header::HeaderValue {
        let mut v = reqwest::header::HeaderValue::from_str(&self.0)
            .expect("checked to be visible ASCII in new");
        v.set_sensitive(true);
        v
    }

    pub async fn load(source: &LicenseKeySource) -> anyhow::Result<Self> {
        if let Some(path) = &source.file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the license key file {}", path.display()))?;
            return Self::new(text).with_context(|| format!("license key file {}", path.display()));
        }
        if let Some(name) = &source.ssm_parameter {
            let sdk = vigil_common::aws::load().await;
            let client = aws_sdk_ssm::Client::new(&sdk);
            let out = client
                .get_parameter()
                .name(name)
                .with_decryption(true)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("{}", aws_sdk_ssm::error::DisplayErrorContext(e)))
                .with_context(|| format!("cannot read SSM parameter {name}"))?;
            let value = out
                .parameter()
                .and_then(|p| p.value())
                .with_context(|| format!("SSM parameter {name} has no value"))?;
            return Self::new(value.to_owned()).with_context(|| format!("SSM parameter {name}"));
        }
        let var = source.env.as_deref().unwrap_or(DEFAULT_LICENSE_ENV);
        let value = std::env::var(var).with_context(|| {
            format!("environment variable {var} (the New Relic license key) is not set")
        })?;
        Self::new(value).with_context(|| format!("environment variable {var}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_formats_the_key() {
        let k = LicenseKey::new("  abc123SECRETNRAL  ".into()).unwrap();
        assert!(!format!("{k:?} {k}").contains("SECRET"));
        assert!(k.header().is_sensitive());
        assert_eq!(k.header().to_str().unwrap(), "abc123SECRETNRAL");
        let err = LicenseKey::new("bad key\n".into()).unwrap_err();
        assert!(!format!("{err:#}").contains("bad key"));
    }
}

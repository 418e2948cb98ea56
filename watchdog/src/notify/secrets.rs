//! Secrets (Slack webhook URLs, bot tokens) from SSM Parameter Store SecureString or, for local
//! runs, the environment. A `Secret` never prints its value: `Debug` and `Display` show
//! `[redacted]`, and errors name where the secret was looked up, never what it holds.

use crate::aws::error_text;

use crate::spec::notify::SecretRef;

#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that sends it (a URL or an Authorization header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Reads a secret. The error names the variable or parameter and the receiver needing it.
pub async fn resolve(
    reference: &SecretRef,
    receiver: &str,
    ssm: &aws_sdk_ssm::Client,
) -> Result<Secret, String> {
    let missing = |why: &str| format!("receiver {receiver}: secret {reference} {why}");
    let value = match reference {
        SecretRef::Env(name) => match std::env::var(name) {
            Ok(v) => v,
            Err(std::env::VarError::NotPresent) => return Err(missing("is not set")),
            Err(std::env::VarError::NotUnicode(_)) => return Err(missing("is not UTF-8")),
        },
        SecretRef::Ssm(name) => {
            let out = ssm
                .get_parameter()
                .name(name)
                .with_decryption(true)
                .send()
                .await
                .map_err(|e| {
                    if e.as_service_error()
                        .is_some_and(|s| s.is_parameter_not_found())
                    {
                        missing("does not exist")
                    } else {
                        missing(&format!("cannot be read: {}", error_text(&e)))
                    }
                })?;
            out.parameter()
                .and_then(|p| p.value())
                .map(str::to_string)
                .ok_or_else(|| missing("has no value"))?
        }
    };
    let value = value.trim().to_string();
    if value.is_empty() {
        return Err(missing("is empty"));
    }
    Ok(Secret(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_formats_its_value() {
        let s = Secret("xoxb-very-secret".into());
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(s.expose(), "xoxb-very-secret");
    }
}

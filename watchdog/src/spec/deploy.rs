//! `settings.deploy`: how the watchdog runs in AWS. The Lambda function's name (it names the
//! role, log group and alarms too) and the EventBridge schedule. Checked here so `validate` and
//! `iam-policy` refuse what AWS would refuse at deploy time, naming the key.

use serde::Deserialize;

/// The namespace of the watchdog's own heartbeat metric (`cycle::heartbeat`); the IAM policy
/// allows `PutMetricData` only into it and the dead-man alarm watches it.
pub const HEARTBEAT_NAMESPACE: &str = "Vigil/Watchdog";

/// Lambda's limit for a function name (the unqualified name).
const FUNCTION_NAME_MAX: usize = 64;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploySettings {
    /// The Lambda function's name: 1–64 letters, digits, `-` or `_`.
    #[serde(default = "default_function_name")]
    pub function_name: String,
    /// EventBridge schedule expression: `rate(1 minute)`, `rate(5 minutes)`, `cron(...)`.
    #[serde(default = "default_schedule")]
    pub schedule: String,
}

impl Default for DeploySettings {
    fn default() -> Self {
        DeploySettings {
            function_name: default_function_name(),
            schedule: default_schedule(),
        }
    }
}

fn default_function_name() -> String {
    "vigil-watchdog".into()
}

fn default_schedule() -> String {
    "rate(1 minute)".into()
}

/// Every problem with the deploy settings, as (key below `settings.deploy`, message).
pub fn problems(deploy: &DeploySettings) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Err(e) = function_name(&deploy.function_name) {
        out.push(("function_name", e));
    }
    if let Err(e) = schedule(&deploy.schedule) {
        out.push(("schedule", e));
    }
    out
}

pub fn function_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > FUNCTION_NAME_MAX {
        return Err(format!(
            "`{name}` is {} characters; a Lambda function name has 1 to {FUNCTION_NAME_MAX}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "`{name}` contains {c:?}; a Lambda function name uses letters, digits, `-` and `_`"
        ));
    }
    Ok(())
}

/// An EventBridge schedule expression: `rate(N unit)` or a six-field `cron(...)`.
pub fn schedule(expr: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "`{expr}` is not an EventBridge schedule expression: {why} (e.g. `rate(1 minute)`, `rate(5 minutes)`, `cron(0/5 * * * ? *)`)"
        ))
    };
    if let Some(inner) = expr.strip_prefix("rate(").and_then(|r| r.strip_suffix(')')) {
        let mut parts = inner.split(' ');
        let (Some(value), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
            return bad("rate needs a number and a unit");
        };
        let Ok(n) = value.parse::<u32>() else {
            return bad("the rate's value must be a whole number");
        };
        if n == 0 {
            return bad("the rate's value must be above 0");
        }
        let singular = ["minute", "hour", "day"];
        let plural = ["minutes", "hours", "days"];
        return match (n, singular.contains(&unit), plural.contains(&unit)) {
            (1, true, _) | (2.., _, true) => Ok(()),
            (1, _, true) => bad("a rate of 1 takes a singular unit (`minute`, `hour`, `day`)"),
            (_, true, _) => bad("a rate above 1 takes a plural unit (`minutes`, `hours`, `days`)"),
            _ => bad("the unit must be minute(s), hour(s) or day(s)"),
        };
    }
    if let Some(inner) = expr.strip_prefix("cron(").and_then(|r| r.strip_suffix(')')) {
        let fields: Vec<&str> = inner.split_whitespace().collect();
        if fields.len() != 6 {
            return bad(&format!(
                "cron takes 6 fields (minutes hours day-of-month month day-of-week year), not {}",
                fields.len()
            ));
        }
        let allowed = |f: &str| {
            f.chars()
                .all(|c| c.is_ascii_alphanumeric() || ",-*/?LW#".contains(c))
        };
        if let Some(f) = fields.iter().find(|f| !allowed(f)) {
            return bad(&format!("field `{f}` has characters cron does not know"));
        }
        // EventBridge wants exactly one of day-of-month and day-of-week to be `?`.
        if (fields[2] == "?") == (fields[4] == "?") {
            return bad("exactly one of day-of-month and day-of-week must be `?`");
        }
        return Ok(());
    }
    bad("it must be rate(...) or cron(...)")
}

/// A receiver's `ssm:` secret must be a parameter path (`/vigil/slack/webhook`): the IAM policy
/// grants `ssm:GetParameter` on exactly that parameter's ARN.
pub fn ssm_parameter_path(name: &str) -> Result<(), String> {
    if !name.starts_with('/') || name.ends_with('/') || name.contains("//") {
        return Err(format!(
            "`{name}` is not an SSM parameter path: write it as /path/to/parameter"
        ));
    }
    if name.len() > 2048 {
        return Err(format!(
            "`{name}` is longer than an SSM parameter name may be (2048)"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_.-/".contains(*c)))
    {
        return Err(format!(
            "`{name}` contains {c:?}; SSM parameter names use letters, digits, `_`, `.`, `-` and `/`"
        ));
    }
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("/aws") || lower.starts_with("/ssm") {
        return Err(format!(
            "`{name}`: SSM reserves names starting with /aws and /ssm"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_eventbridge_accepts_pass_and_others_say_why() {
        for ok in [
            "rate(1 minute)",
            "rate(5 minutes)",
            "rate(1 day)",
            "cron(0/5 * * * ? *)",
            "cron(0 8 ? * MON-FRI *)",
        ] {
            assert_eq!(schedule(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("rate(1 minutes)", "singular"),
            ("rate(5 minute)", "plural"),
            ("rate(0 minutes)", "above 0"),
            ("rate(one minute)", "whole number"),
            ("rate(5 weeks)", "unit must be"),
            ("every minute", "rate(...) or cron(...)"),
            ("cron(* * * * *)", "6 fields"),
            ("cron(0 8 * * * *)", "exactly one"),
            ("*/5 * * * *", "rate(...) or cron(...)"),
        ] {
            let e = schedule(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn function_names_follow_lambda_rules() {
        assert_eq!(function_name("vigil-watchdog_prod"), Ok(()));
        assert_eq!(function_name(&"a".repeat(64)), Ok(()));
        assert!(
            function_name(&"a".repeat(65))
                .unwrap_err()
                .contains("65 characters")
        );
        assert!(function_name("").is_err());
        assert!(function_name("vigil.watchdog").unwrap_err().contains("'.'"));
    }

    #[test]
    fn ssm_secrets_are_parameter_paths() {
        assert_eq!(ssm_parameter_path("/vigil/slack/webhook"), Ok(()));
        assert!(
            ssm_parameter_path("vigil-webhook")
                .unwrap_err()
                .contains("not an SSM parameter path")
        );
        assert!(ssm_parameter_path("/vigil/").is_err());
        assert!(ssm_parameter_path("/vigil/slack hook").is_err());
        assert!(ssm_parameter_path("/aws/reference/x").is_err());
    }
}

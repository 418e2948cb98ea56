//! Reading a spec directory: every `*.yaml` / `*.yml` file below it, merged, then checked as a
//! whole (names unique, windows sensible). All problems are collected, not just the first.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::{BurnRateAlert, Service, Settings, Sli, Slo, SpecFile};

/// CloudWatch keeps hourly data for 455 days; no window may look further back.
const LONGEST_WINDOW_SECS: u64 = 455 * 86_400;

/// A validated spec.
#[derive(Clone, Debug, Default)]
pub struct Spec {
    pub settings: Settings,
    pub services: BTreeMap<String, Service>,
    /// The file each service came from, for messages.
    pub sources: BTreeMap<String, PathBuf>,
    pub infrastructure: super::infrastructure::Infrastructure,
    /// The file `infrastructure` came from, for messages.
    pub infrastructure_source: Option<PathBuf>,
}

impl Spec {
    /// The burn-rate alerts and low-traffic guard that apply to one SLO.
    pub fn alerts_for<'a>(&'a self, slo: &'a Slo) -> (&'a [BurnRateAlert], u64) {
        (
            slo.burn_rate_alerts
                .as_deref()
                .unwrap_or(&self.settings.burn_rate_alerts),
            slo.min_events.unwrap_or(self.settings.min_events),
        )
    }
}

/// One problem in the spec, located as precisely as the parser allows: the same located error
/// as the agent's config (`vigil_common::config_error`), with YAML key paths such as
/// `services.checkout.slos[0].objective`.
pub type SpecError = vigil_common::config_error::ConfigError;

/// All problems found in a spec directory.
#[derive(Debug)]
pub struct SpecErrors(pub Vec<SpecError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the alert spec has {} problem(s):", self.0.len())?;
        for error in &self.0 {
            writeln!(f, "  {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

/// Loads and validates every YAML file under `dir` (or the one file `dir` names).
pub fn load(dir: &Path) -> Result<Spec, SpecErrors> {
    let mut files = Vec::new();
    if dir.is_file() {
        files.push(dir.to_path_buf());
    } else {
        collect_yaml(dir, &mut files).map_err(|e| {
            SpecErrors(vec![plain_error(
                dir,
                "",
                format!("cannot read the spec directory: {e}"),
            )])
        })?;
    }
    files.sort();
    if files.is_empty() {
        return Err(SpecErrors(vec![plain_error(
            dir,
            "",
            "no .yaml or .yml files found".into(),
        )]));
    }

    let texts = files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).map_err(|e| e.to_string());
            (file, text)
        })
        .collect();
    load_texts(dir, texts)
}

/// Validates spec files already read (or the reason each could not be), in order; `dir` names
/// the spec in messages that belong to no file. Separate from the reading so that the spec
/// fuzz target can drive it without a file system.
pub fn load_texts(
    dir: &Path,
    files: Vec<(PathBuf, Result<String, String>)>,
) -> Result<Spec, SpecErrors> {
    let mut errors = Vec::new();
    let mut spec = Spec::default();
    let mut settings_from: Option<PathBuf> = None;
    for (file, text) in &files {
        let parsed = match text {
            Ok(text) => parse_file(file, text),
            Err(e) => Err(plain_error(file, "", format!("cannot read: {e}"))),
        };
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if let Some(settings) = parsed.settings {
            match &settings_from {
                Some(first) => errors.push(plain_error(
                    file,
                    "settings",
                    format!("settings are already declared in {}", first.display()),
                )),
                None => {
                    spec.settings = settings;
                    settings_from = Some(file.clone());
                }
            }
        }
        if let Some(infrastructure) = parsed.infrastructure {
            match &spec.infrastructure_source {
                Some(first) => errors.push(plain_error(
                    file,
                    "infrastructure",
                    format!("infrastructure is already declared in {}", first.display()),
                )),
                None => {
                    for (key, message) in infrastructure.problems() {
                        errors.push(plain_error(file, &key, message));
                    }
                    spec.infrastructure = infrastructure;
                    spec.infrastructure_source = Some(file.clone());
                }
            }
        }
        for (name, service) in parsed.services {
            if let Some(first) = spec.sources.get(&name) {
                errors.push(plain_error(
                    file,
                    &format!("services.{name}"),
                    format!(
                        "service `{name}` is already declared in {}",
                        first.display()
                    ),
                ));
                continue;
            }
            spec.sources.insert(name.clone(), file.clone());
            spec.services.insert(name, service);
        }
    }

    let settings_file = settings_from.unwrap_or_else(|| dir.to_path_buf());
    check_alerts(
        &settings_file,
        "settings.burn_rate_alerts",
        &spec.settings.burn_rate_alerts,
        None,
        &mut errors,
    );
    for (name, service) in &spec.services {
        check_service(&spec.sources[name], name, service, &mut errors);
    }
    check_deploy(&settings_file, &spec.settings, &mut errors);
    if errors.is_empty() {
        Ok(spec)
    } else {
        Err(SpecErrors(errors))
    }
}

/// What AWS would refuse at deploy time: the function name, the schedule, and secrets that
/// are not SSM parameter paths (the IAM policy names each parameter's ARN).
fn check_deploy(file: &Path, settings: &Settings, errors: &mut Vec<SpecError>) {
    use super::notify::{ReceiverSpec, SecretRef};
    if let Some(deploy) = &settings.deploy {
        for (key, message) in super::deploy::problems(deploy) {
            errors.push(plain_error(
                file,
                &format!("settings.deploy.{key}"),
                message,
            ));
        }
    }
    let Some(notify) = &settings.notify else {
        return;
    };
    for (name, receiver) in &notify.receivers {
        let (field, secret) = match receiver {
            ReceiverSpec::SlackWebhook { url, .. } => ("slack_webhook.url", Some(url)),
            ReceiverSpec::SlackBot { token, .. } => ("slack_bot.token", Some(token)),
            ReceiverSpec::SmtpEmail { password, .. } => ("smtp_email.password", password.as_ref()),
            ReceiverSpec::Sns { .. } | ReceiverSpec::SesEmail { .. } => ("", None),
        };
        if let Some(SecretRef::Ssm(parameter)) = secret
            && let Err(message) = super::deploy::ssm_parameter_path(parameter)
        {
            errors.push(plain_error(
                file,
                &format!("settings.notify.receivers.{name}.{field}.ssm"),
                message,
            ));
        }
    }
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_yaml(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

fn parse_file(file: &Path, text: &str) -> Result<SpecFile, SpecError> {
    // An empty file (or one with only comments) is an empty spec, not an error.
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Ok(SpecFile::default());
    }
    yaml_serde::from_str(text).map_err(|e| {
        let location = e.location();
        let mut message = e.to_string();
        // The parser appends " at line L column C"; we print the location up front instead.
        if let Some(at) = message.rfind(" at line ") {
            message.truncate(at);
        }
        // Its message starts with the key path ("services.checkout.slos[0]: ..."); split it off.
        let (key, message) = match message.split_once(": ") {
            Some((key, rest)) if !key.contains(' ') => (key.to_string(), rest.to_string()),
            _ => (String::new(), message),
        };
        SpecError {
            file: file.to_path_buf(),
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
            key,
            message,
        }
    })
}

fn plain_error(file: &Path, key: &str, message: String) -> SpecError {
    SpecError::unplaced(file, key, message)
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn check_service(file: &Path, name: &str, service: &Service, errors: &mut Vec<SpecError>) {
    let here = format!("services.{name}");
    if !is_plain_name(name) {
        errors.push(plain_error(
            file,
            &here,
            "service names use lowercase letters, digits, `-` and `_` (they become part of alert fingerprints)".into(),
        ));
    }
    check_slos(file, &here, &service.slos, errors);
    check_checks(file, &here, &service.checks, errors);
}

/// The SLOs of the service at `here`: names, objective start, period, alerts and SLI.
fn check_slos(file: &Path, here: &str, slos: &[Slo], errors: &mut Vec<SpecError>) {
    let mut seen = BTreeMap::new();
    for (i, slo) in slos.iter().enumerate() {
        let key = format!("{here}.slos[{i}]");
        if !is_plain_name(&slo.name) {
            errors.push(plain_error(
                file,
                &format!("{key}.name"),
                format!(
                    "`{}`: SLO names use lowercase letters, digits, `-` and `_`",
                    slo.name
                ),
            ));
        }
        if let Some(first) = seen.insert(slo.name.as_str(), i) {
            errors.push(plain_error(
                file,
                &format!("{key}.name"),
                format!("SLO `{}` is already declared at slos[{first}]", slo.name),
            ));
        }
        if let Some(since) = &slo.objective_since
            && since.parse::<jiff::Timestamp>().is_err()
        {
            errors.push(plain_error(
                file,
                &format!("{key}.objective_since"),
                format!("`{since}` is not an RFC 3339 time like 2026-11-15T00:00:00Z"),
            ));
        }
        if slo.period.as_secs() > LONGEST_WINDOW_SECS {
            errors.push(plain_error(
                file,
                &format!("{key}.period"),
                format!("{} is longer than CloudWatch keeps data (455d)", slo.period),
            ));
        }
        if let Some(alerts) = &slo.burn_rate_alerts {
            check_alerts(
                file,
                &format!("{key}.burn_rate_alerts"),
                alerts,
                Some(slo),
                errors,
            );
        }
        check_sli(file, &format!("{key}.sli"), &slo.sli, errors);
    }
}

/// The checks of the service at `here`: one per target, and each kind's own rules.
fn check_checks(file: &Path, here: &str, checks: &[super::CheckSpec], errors: &mut Vec<SpecError>) {
    let mut fingerprints = BTreeMap::new();
    for (i, check) in checks.iter().enumerate() {
        let key = format!("{here}.checks[{i}]");
        // Alert state is keyed by fingerprint: two checks sharing one would fight over it.
        let identity = (check.kind(), check.target());
        if let Some(first) = fingerprints.insert(identity.clone(), i) {
            errors.push(plain_error(
                file,
                &key,
                format!(
                    "checks[{first}] already checks {} {} for this service (merge them into one)",
                    identity.0, identity.1
                ),
            ));
        }
        if let super::CheckSpec::Http(http) = check
            && !(http.url.starts_with("http://") || http.url.starts_with("https://"))
        {
            errors.push(plain_error(
                file,
                &format!("{key}.http.url"),
                format!("`{}` is not an http:// or https:// URL", http.url),
            ));
        }
        if let super::CheckSpec::Alarms(alarms) = check
            && alarms.names.is_empty()
            && alarms.prefix.is_none()
        {
            errors.push(plain_error(
                file,
                &format!("{key}.alarms"),
                "give `names`, `prefix` or both".into(),
            ));
        }
        if let super::CheckSpec::Heartbeat(hb) = check {
            if hb.hosts.is_empty() && hb.asgs.is_empty() && !hb.discover {
                errors.push(plain_error(
                    file,
                    &format!("{key}.heartbeat"),
                    "no hosts to watch: give `hosts`, `asgs` or `discover: true`".into(),
                ));
            }
            if hb.within.as_secs() < 60 {
                errors.push(plain_error(
                    file,
                    &format!("{key}.heartbeat.within"),
                    "must be at least 1m (agents report once a minute)".into(),
                ));
            }
        }
    }
}

fn check_sli(file: &Path, key: &str, sli: &Sli, errors: &mut Vec<SpecError>) {
    let empty = |k: &str, v: &str, errors: &mut Vec<SpecError>| {
        if v.trim().is_empty() {
            errors.push(plain_error(
                file,
                &format!("{key}.{k}"),
                "must not be empty".into(),
            ));
        }
    };
    match sli {
        Sli::SpanErrors { service, route } => {
            empty("span_errors.service", service, errors);
            empty("span_errors.route", route, errors);
        }
        Sli::SpanLatency {
            service,
            route,
            threshold_ms,
        } => {
            empty("span_latency.service", service, errors);
            empty("span_latency.route", route, errors);
            if *threshold_ms == 0 {
                errors.push(plain_error(
                    file,
                    &format!("{key}.span_latency.threshold_ms"),
                    "must be above 0".into(),
                ));
            }
        }
        Sli::AlbAvailability {
            load_balancer,
            target_group,
        } => {
            empty("alb_availability.load_balancer", load_balancer, errors);
            empty("alb_availability.target_group", target_group, errors);
        }
        Sli::AlbLatency {
            load_balancer,
            target_group,
            threshold_ms,
        } => {
            empty("alb_latency.load_balancer", load_balancer, errors);
            empty("alb_latency.target_group", target_group, errors);
            if *threshold_ms == 0 {
                errors.push(plain_error(
                    file,
                    &format!("{key}.alb_latency.threshold_ms"),
                    "must be above 0".into(),
                ));
            }
        }
        Sli::GoodOverTotal { good: a, total } | Sli::BadOverTotal { bad: a, total } => {
            if a == total {
                errors.push(plain_error(
                    file,
                    key,
                    "both counts are the same metric".into(),
                ));
            }
        }
    }
}

fn check_alerts(
    file: &Path,
    key: &str,
    alerts: &[BurnRateAlert],
    slo: Option<&Slo>,
    errors: &mut Vec<SpecError>,
) {
    for (i, alert) in alerts.iter().enumerate() {
        let key = format!("{key}[{i}]");
        if alert.short >= alert.long {
            errors.push(plain_error(
                file,
                &key,
                format!(
                    "the short window ({}) must be shorter than the long window ({})",
                    alert.short, alert.long
                ),
            ));
        }
        if alert.long.as_secs() < 60
            || alert.short.as_secs() < 60
            || alert.long.as_secs() % 60 != 0
            || alert.short.as_secs() % 60 != 0
        {
            errors.push(plain_error(
                file,
                &key,
                "windows must be whole minutes (CloudWatch's finest common period)".into(),
            ));
        }
        if let Some(slo) = slo
            && alert.long > slo.period
        {
            errors.push(plain_error(
                file,
                &key,
                format!(
                    "the long window ({}) is longer than the SLO period ({})",
                    alert.long, slo.period
                ),
            ));
        }
        if alert.long.as_secs() > LONGEST_WINDOW_SECS {
            errors.push(plain_error(
                file,
                &key,
                "windows cannot be longer than 455d".into(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn a_bad_objective_is_reported_with_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.yaml",
            "services:\n  checkout:\n    slos:\n      - name: ok\n        objective: 120\n        sli: {span_errors: {service: checkout, route: POST /checkout}}\n",
        );
        let errors = load(dir.path()).unwrap_err().0;
        assert_eq!(errors.len(), 1, "{errors:?}");
        let e = &errors[0];
        // The parser locates a bad value at the mapping that holds it; the message names the key.
        assert_eq!(e.line, Some(4));
        assert_eq!(e.key, "services.checkout.slos[0]");
        assert!(
            e.message.contains("objective 120 must be a percentage"),
            "{}",
            e.message
        );
        assert!(
            e.to_string()
                .starts_with(&format!("{}:4:", dir.path().join("a.yaml").display()))
        );
    }

    #[test]
    fn unknown_keys_and_bad_durations_are_named() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.yaml",
            "services:\n  cart:\n    checks:\n      - asg: {group: cart, min_healthy: 2, min_az: 2}\n",
        );
        write(
            dir.path(),
            "b.yaml",
            "settings:\n  burn_rate_alerts:\n    - {severity: page, long: 1x, short: 5m, factor: 14.4}\n",
        );
        let errors = load(dir.path()).unwrap_err().0;
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].message.contains("unknown field `min_az`"),
            "{:?}",
            errors[0]
        );
        assert_eq!(errors[0].line, Some(4));
        assert!(
            errors[1].message.contains("unknown unit `x`"),
            "{:?}",
            errors[1]
        );
        assert_eq!(errors[1].key, "settings.burn_rate_alerts[0]");
        assert_eq!(errors[1].line, Some(3));
    }

    #[test]
    fn cross_file_and_window_problems_are_all_reported() {
        let dir = tempfile::tempdir().unwrap();
        let slo = "    slos:\n      - name: s\n        objective: 99\n        period: 7d\n        sli: {span_errors: {service: x, route: r}}\n        burn_rate_alerts:\n          - {severity: page, long: 5m, short: 1h, factor: 2}\n          - {severity: ticket, long: 14d, short: 1h, factor: 1}\n";
        write(dir.path(), "a.yaml", &format!("services:\n  x:\n{slo}"));
        write(
            dir.path(),
            "b.yaml",
            "services:\n  x: {}\n  y:\n    checks:\n      - asg: { group: g, min_healthy: 1 }\n      - asg: { group: g, min_healthy: 2 }\n",
        );
        let errors = load(dir.path()).unwrap_err().0;
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 4, "{text:#?}");
        assert!(
            text.iter()
                .any(|t| t.contains("services.y.checks[1]: checks[0] already checks asg g"))
        );
        assert!(
            text.iter()
                .any(|t| t.contains("b.yaml: services.x: service `x` is already declared"))
        );
        assert!(text.iter().any(|t| {
            t.contains("slos[0].burn_rate_alerts[0]: the short window (1h) must be shorter")
        }));
        assert!(text.iter().any(|t| t.contains(
            "burn_rate_alerts[1]: the long window (14d) is longer than the SLO period (7d)"
        )));
    }

    #[test]
    fn the_shipped_spec_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../alerts");
        let spec = load(&dir).unwrap_or_else(|e| panic!("{e}"));
        for service in [
            "proxy",
            "authentication",
            "inventory",
            "checkout",
            "cart",
            "notification",
            "payment",
        ] {
            assert!(spec.services.contains_key(service), "{service} missing");
        }
        let checkout = &spec.services["checkout"];
        assert!(checkout.slos.iter().any(|s| matches!(
            s.sli,
            Sli::SpanLatency {
                threshold_ms: 300,
                ..
            }
        ) && s.objective == 95.0));
        assert!(
            checkout
                .slos
                .iter()
                .any(|s| matches!(s.sli, Sli::SpanErrors { .. }) && s.objective == 99.9)
        );
        assert!(spec.settings.state.is_some());
    }
}

//! The `vigil_agent` Ansible role and the Debian package, applied over SSH to a real Debian 12
//! host with systemd as PID 1 (systemd-nspawn), shipping to moto outside the container.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vigil_test_support::{
    Moto, SystemdHost, log_group_messages, repo_root, venv_bin, workspace_bin,
};

/// One `ansible-playbook site.yml` run's outcome, from its PLAY RECAP.
struct Run {
    ok: bool,
    changed: u32,
    output: String,
    took: Duration,
}

/// Runs the repository's `ansible/site.yml` against one host with extra variables.
struct Ansible {
    dir: tempfile::TempDir,
    inventory: PathBuf,
    base: Value,
}

impl Ansible {
    fn new(host: &SystemdHost, base: Value) -> Ansible {
        let dir = tempfile::tempdir().unwrap();
        let inventory = dir.path().join("inventory.ini");
        std::fs::write(&inventory, host.inventory("checkout", "shop-host")).unwrap();
        Ansible {
            dir,
            inventory,
            base,
        }
    }

    /// `vars` override the base variables (extra vars: the highest precedence).
    fn run(&self, vars: Value, args: &[&str]) -> Run {
        let mut all = self.base.clone();
        for (k, v) in vars.as_object().unwrap() {
            all[k] = v.clone();
        }
        let vars_file = self.dir.path().join("vars.json");
        std::fs::write(&vars_file, all.to_string()).unwrap();
        let ansible_dir = repo_root().join("ansible");
        let start = Instant::now();
        let out = Command::new(venv_bin("ansible-playbook"))
            .current_dir(&ansible_dir)
            .env("ANSIBLE_CONFIG", ansible_dir.join("ansible.cfg"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_HOST_KEY_CHECKING", "False")
            .env("ANSIBLE_LOCAL_TEMP", self.dir.path().join("tmp"))
            .env("ANSIBLE_SSH_CONTROL_PATH_DIR", self.dir.path().join("cp"))
            .arg("-i")
            .arg(&self.inventory)
            .arg("site.yml")
            .arg("-e")
            .arg(format!("@{}", vars_file.display()))
            .args(args)
            .output()
            .expect("run ansible-playbook");
        let took = start.elapsed();
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let recap = output
            .lines()
            .rev()
            .find(|l| l.starts_with("shop-host") && l.contains("changed="))
            .unwrap_or_else(|| panic!("no PLAY RECAP in ansible's output:\n{output}"));
        let count = |key: &str| -> u32 {
            recap
                .split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {recap}"))
        };
        let ok = out.status.success() && count("failed=") == 0 && count("unreachable=") == 0;
        Run {
            ok,
            changed: count("changed="),
            output,
            took,
        }
    }
}

/// Builds the .deb from the debug binary the workspace build already made (no second compile).
fn package(out: &Path) -> PathBuf {
    let agent = workspace_bin("vigil-agent");
    let target_dir = agent.parent().unwrap().parent().unwrap();
    let run = Command::new(repo_root().join("scripts/package.sh"))
        .args(["--profile", "dev", "--no-build", "--out"])
        .arg(out)
        .env("CARGO_TARGET_DIR", target_dir)
        .output()
        .expect("run scripts/package.sh");
    assert!(
        run.status.success(),
        "package.sh failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let deb = PathBuf::from(String::from_utf8_lossy(&run.stdout).trim());
    assert!(deb.exists(), "package.sh printed {}", deb.display());
    let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    assert!(
        sums.contains(".deb") && sums.contains(".tar.gz"),
        "SHA256SUMS: {sums}"
    );
    deb
}

/// Polls CloudWatch Logs until `group` holds a message containing `needle`.
fn wait_for_message(
    rt: &tokio::runtime::Runtime,
    logs: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    needle: &str,
    timeout: Duration,
) -> bool {
    let start = Instant::now();
    loop {
        let messages = rt.block_on(log_group_messages(logs, group));
        if messages.iter().any(|m| m.contains(needle)) {
            return true;
        }
        if start.elapsed() > timeout {
            eprintln!("{group} after {timeout:?}: {messages:?}");
            return false;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn main_pid(host: &SystemdHost) -> u32 {
    let pid = host.sh("systemctl show -p MainPID --value vigil-agent");
    pid.trim()
        .parse()
        .unwrap_or_else(|_| panic!("MainPID: {pid}"))
}

fn agent_journal(host: &SystemdHost) -> String {
    String::from_utf8_lossy(
        &host
            .ssh("journalctl -u vigil-agent --no-pager -n 80; systemctl status vigil-agent --no-pager")
            .stdout,
    )
    .into_owned()
}

#[test]
fn role_installs_configures_reloads_and_removes_the_agent_on_a_systemd_host() {
    let test_start = Instant::now();
    let moto = Moto::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let logs = aws_sdk_cloudwatchlogs::Client::new(&rt.block_on(moto.sdk_config()));
    let work = tempfile::tempdir().unwrap();
    let deb = package(work.path());
    let deb_bytes = std::fs::metadata(&deb).unwrap().len();
    eprintln!("package {}: {deb_bytes} bytes", deb.display());

    let host = SystemdHost::boot();
    eprintln!("container up after {:?}", test_start.elapsed());
    // A module log the agent may read only through its membership of adm.
    host.sh(
        "install -d -m 0750 -g adm /var/log/shop/checkout && \
         echo 'checkout started' >/var/log/shop/checkout/app.log && \
         chown root:adm /var/log/shop/checkout/app.log && chmod 0640 /var/log/shop/checkout/app.log",
    );

    let environment: serde_json::Map<String, Value> = moto
        .env()
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let ansible = Ansible::new(
        &host,
        json!({
            "vigil_agent_install_from": "file",
            "vigil_agent_package_file": deb,
            "vigil_agent_environment": environment,
            "vigil_agent_env": "test",
            "vigil_agent_modules": [{"name": "checkout", "logs": ["/var/log/shop/checkout/*.log"]}],
            "vigil_agent_ec2_metadata": false,
            "vigil_agent_parse_json": false,
            "vigil_agent_host_metrics": false,
            "vigil_agent_log_stream": "{host}",
        }),
    );

    // Bad input: each fails in preflight, naming the variable, before the host changes.
    let bad_inputs = [
        (json!({"vigil_agent_modulez": []}), "vigil_agent_modulez"),
        (
            json!({"vigil_agent_modules": [{"name": "billing", "logs": ["/var/log/billing.log"]}]}),
            "vigil_agent_modules",
        ),
        (
            json!({"vigil_agent_prometheus_targets": [{"url": "localhost:9100/metrics"}]}),
            "vigil_agent_prometheus_targets[0].url",
        ),
        (
            json!({"vigil_agent_newrelic": true, "vigil_agent_newrelic_license_ssm_parameter": "newrelic-license"}),
            "vigil_agent_newrelic_license_ssm_parameter",
        ),
    ];
    for (vars, named) in bad_inputs {
        let run = ansible.run(vars.clone(), &[]);
        assert!(!run.ok, "{vars} was accepted:\n{}", run.output);
        assert_eq!(run.changed, 0, "{vars} changed the host:\n{}", run.output);
        assert!(
            run.output.contains(named),
            "the failure for {vars} does not name {named}:\n{}",
            run.output
        );
    }
    assert!(
        !host.ssh("dpkg -s vigil-agent").status.success()
            && !host.ssh("test -e /etc/vigil").status.success(),
        "bad input changed the host"
    );

    // First converge: package, user, config, unit, running agent.
    let first = ansible.run(json!({}), &[]);
    assert!(first.ok, "first converge failed:\n{}", first.output);
    assert!(first.changed > 0);
    eprintln!(
        "first converge: {:?}, changed={}",
        first.took, first.changed
    );
    assert_eq!(
        host.sh("systemctl is-active vigil-agent").trim(),
        "active",
        "{}",
        agent_journal(&host)
    );
    assert_eq!(
        host.sh("systemctl is-enabled vigil-agent").trim(),
        "enabled"
    );
    let groups = host.sh("id -nG vigil");
    assert!(
        groups.split_whitespace().any(|g| g == "adm"),
        "vigil's groups: {groups}"
    );
    assert_eq!(
        host.sh("stat -c '%U:%G %a' /etc/vigil/agent.toml").trim(),
        "root:vigil 640"
    );
    let pid = main_pid(&host);
    assert_eq!(host.sh(&format!("ps -o user= -p {pid}")).trim(), "vigil");

    host.sh("echo 'order 1001 paid' >>/var/log/shop/checkout/app.log");
    assert!(
        wait_for_message(
            &rt,
            &logs,
            "/shop/test/checkout",
            "order 1001 paid",
            Duration::from_secs(60)
        ),
        "the line never reached CloudWatch Logs; agent:\n{}",
        agent_journal(&host)
    );

    // Second converge: nothing to do.
    let second = ansible.run(json!({}), &[]);
    assert!(second.ok, "second converge failed:\n{}", second.output);
    assert_eq!(
        second.changed, 0,
        "second converge changed something:\n{}",
        second.output
    );
    eprintln!("second converge: {:?}", second.took);
    assert_eq!(main_pid(&host), pid, "an unchanged run restarted the agent");

    // The unit: valid, and hardened.
    let unit = host.sh("systemctl show -p FragmentPath --value vigil-agent");
    let verify = host.ssh(&format!("systemd-analyze verify {}", unit.trim()));
    assert!(
        verify.status.success(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let security = host.sh("systemd-analyze security --no-pager vigil-agent.service");
    let exposure: f64 = security
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for vigil-agent.service:")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{security}"));
    eprintln!("systemd-analyze security: exposure {exposure}");
    assert!(exposure <= 2.0, "exposure {exposure} > 2.0:\n{security}");

    // Check mode with a change: reported, not applied.
    let before = host.sh("sha256sum /etc/vigil/agent.toml");
    let check = ansible.run(
        json!({"vigil_agent_log_group": "/shop-v2/{env}/{module}"}),
        &["--check", "--diff"],
    );
    assert!(check.ok, "check mode failed:\n{}", check.output);
    assert!(
        check.changed > 0 && check.output.contains("/shop-v2/"),
        "{}",
        check.output
    );
    assert_eq!(host.sh("sha256sum /etc/vigil/agent.toml"), before);

    // A changed variable: the config is replaced and the agent reloads in the same process.
    let third = ansible.run(
        json!({"vigil_agent_log_group": "/shop-v2/{env}/{module}"}),
        &[],
    );
    assert!(
        third.ok,
        "converge with a new log group failed:\n{}",
        third.output
    );
    assert_eq!(
        third.changed, 2,
        "expected config + reload handler:\n{}",
        third.output
    );
    assert_eq!(main_pid(&host), pid, "a config change restarted the agent");
    host.sh("echo 'order 1002 paid' >>/var/log/shop/checkout/app.log");
    assert!(
        wait_for_message(
            &rt,
            &logs,
            "/shop-v2/test/checkout",
            "order 1002 paid",
            Duration::from_secs(60)
        ),
        "the reloaded agent did not use the new group; agent:\n{}",
        agent_journal(&host)
    );

    // A variable that renders an invalid config: the task fails, the old config and agent stay.
    let before = host.sh("sha256sum /etc/vigil/agent.toml");
    let invalid = ansible.run(
        json!({
            "vigil_agent_log_group": "/shop-v2/{env}/{module}",
            "vigil_agent_redaction_patterns": [{"name": "broken", "regex": "([unclosed"}],
        }),
        &[],
    );
    assert!(
        !invalid.ok,
        "an invalid config was accepted:\n{}",
        invalid.output
    );
    assert!(
        invalid.output.contains("failed to validate") && invalid.output.contains("redaction"),
        "{}",
        invalid.output
    );
    assert_eq!(host.sh("sha256sum /etc/vigil/agent.toml"), before);
    assert_eq!(host.sh("systemctl is-active vigil-agent").trim(), "active");
    assert_eq!(main_pid(&host), pid);

    // Removal: package, unit, config and user go; the data directory stays unless asked.
    let removed = ansible.run(json!({"vigil_agent_state": "absent"}), &[]);
    assert!(removed.ok, "removal failed:\n{}", removed.output);
    let status = host.ssh("dpkg-query -W -f='${Status}' vigil-agent");
    assert!(
        !String::from_utf8_lossy(&status.stdout).contains("installed")
            || String::from_utf8_lossy(&status.stdout).contains("not-installed"),
        "package still there: {}",
        String::from_utf8_lossy(&status.stdout)
    );
    for gone in [
        "systemctl cat vigil-agent",
        "getent passwd vigil",
        "getent group vigil",
        "test -e /etc/vigil",
        "test -e /usr/bin/vigil-agent",
        "test -e /etc/systemd/system/vigil-agent.service.d",
        "pgrep -x vigil-agent",
    ] {
        let out = host.ssh(gone);
        assert!(
            !out.status.success(),
            "after removal `{gone}` still succeeds: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    host.sh("test -d /var/lib/vigil-agent");
    let purged = ansible.run(
        json!({"vigil_agent_state": "absent", "vigil_agent_purge_data": true}),
        &[],
    );
    assert!(purged.ok, "{}", purged.output);
    assert_eq!(
        purged.changed, 1,
        "only the data directory was left:\n{}",
        purged.output
    );
    assert!(!host.ssh("test -e /var/lib/vigil-agent").status.success());

    eprintln!(
        "RECORD package_bytes={deb_bytes} first_converge_s={:.1} second_converge_s={:.1} exposure={exposure} test_s={:.1}",
        first.took.as_secs_f64(),
        second.took.as_secs_f64(),
        test_start.elapsed().as_secs_f64()
    );
}

/// defaults/main.yml and meta/argument_specs.yml describe the same variables, and each
/// default has the type (and is one of the choices) the spec declares.
#[test]
fn role_defaults_and_argument_specs_agree() {
    let role = repo_root().join("ansible/roles/vigil_agent");
    let read = |p: &str| -> yaml_serde::Value {
        let text = std::fs::read_to_string(role.join(p)).unwrap();
        yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{p}: {e}"))
    };
    let defaults = read("defaults/main.yml");
    let specs = read("meta/argument_specs.yml");
    let options = specs["argument_specs"]["main"]["options"]
        .as_mapping()
        .expect("argument_specs.main.options");
    let defaults = defaults.as_mapping().expect("defaults is a mapping");
    let names = |m: &yaml_serde::Mapping| -> std::collections::BTreeSet<String> {
        m.keys()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(
        names(defaults),
        names(options),
        "defaults/main.yml vs meta/argument_specs.yml"
    );
    for (name, spec) in options {
        let name = name.as_str().unwrap();
        let default = &defaults[name];
        let kind = spec["type"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no type"));
        let fits = match kind {
            "str" => default.is_string(),
            "bool" => default.is_bool(),
            "int" => default.is_i64() || default.is_u64(),
            "list" => default.is_sequence(),
            "dict" => default.is_mapping(),
            other => panic!("{name}: type {other} not checked here"),
        };
        assert!(fits, "{name}: default {default:?} is not a {kind}");
        assert!(
            spec["description"].is_string() || spec["description"].is_sequence(),
            "{name}: no description"
        );
        if let Some(choices) = spec["choices"].as_sequence() {
            assert!(
                choices.contains(default),
                "{name}: default {default:?} not in {choices:?}"
            );
        }
    }
}

/// The role, site.yml and the example inventory pass ansible-lint's production profile.
#[test]
fn ansible_lint_production_profile_is_clean() {
    let out = Command::new(venv_bin("ansible-lint"))
        .current_dir(repo_root().join("ansible"))
        .env("ANSIBLE_CONFIG", repo_root().join("ansible/ansible.cfg"))
        .args(["--profile", "production", "--nocolor"])
        .output()
        .expect("run ansible-lint");
    assert!(
        out.status.success(),
        "ansible-lint --profile production:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

//! Everything the demo runs, started in order and stopped (process groups killed) when the
//! `Stack` drops: moto with the shop's resources, the Slack / New Relic / SMTP stand-ins, the
//! agent, the shop simulator and the watchdog behind the Lambda Runtime API.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use vigil_test_support::slack::SlackStandIn;
use vigil_test_support::{ChildGuard, Moto, OtlpReceiver, free_port, http_get, wait_until};

use crate::lambda::{LambdaRuntime, tail};
use crate::shop_aws;
use crate::show::Printer;
use crate::stop;

/// Programs the demo needs, found before anything starts.
pub struct Tools {
    pub agent: PathBuf,
    pub watchdog: PathBuf,
    pub shop_sim: PathBuf,
    pub cargo_lambda: PathBuf,
    pub python: PathBuf,
}

impl Tools {
    /// Finds every program, or says which one is missing and how to get it.
    pub fn find() -> anyhow::Result<Tools> {
        let exe = std::env::current_exe().context("locating vigil-demo itself")?;
        let bin_dir = exe.parent().context("vigil-demo has no directory")?;
        let built = |name: &str| -> anyhow::Result<PathBuf> {
            let p = bin_dir.join(name);
            if !p.exists() {
                bail!(
                    "{} not found: build the workspace first (`cargo build --workspace --bins`; scripts/demo.sh does)",
                    p.display()
                );
            }
            Ok(p)
        };
        let venv = vigil_test_support::venv_dir();
        let installed = |name: &str| -> anyhow::Result<PathBuf> {
            let p = venv.join("bin").join(name);
            if !p.exists() {
                bail!(
                    "{} not found: run scripts/setup.sh (it installs moto, cargo-lambda and aiosmtpd into {})",
                    p.display(),
                    venv.display()
                );
            }
            Ok(p)
        };
        let tools = Tools {
            agent: built("vigil-agent")?,
            watchdog: built("vigil-watchdog")?,
            shop_sim: built("vigil-shop-sim")?,
            cargo_lambda: installed("cargo-lambda")?,
            python: installed("python")?,
        };
        installed("moto_server")?;
        let aiosmtpd = Command::new(&tools.python)
            .args(["-c", "import aiosmtpd"])
            .output()
            .context("running the virtualenv's python")?;
        if !aiosmtpd.status.success() {
            bail!(
                "aiosmtpd is not installed in {}: run scripts/setup.sh",
                venv.display()
            );
        }
        Ok(tools)
    }
}

/// A port for one of the demo's servers: the one asked for if it is free (0: any free port).
pub fn claim_port(port: u16, what: &str, flag: &str) -> anyhow::Result<u16> {
    if port == 0 {
        return Ok(free_port());
    }
    match TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => Ok(port),
        Err(e) => bail!(
            "port {port} on 127.0.0.1 ({what}) is already taken ({e}): stop what listens there \
             (`ss -ltnp 'sport = :{port}'` shows it) or pick another with {flag} PORT (0 = any free port)"
        ),
    }
}

pub struct Options {
    pub root: PathBuf,
    pub api_port: u16,
    pub otlp_port: u16,
    pub rate: f64,
    pub scratch: PathBuf,
}

pub struct Stack {
    pub moto: Moto,
    pub rt: tokio::runtime::Runtime,
    pub slack: SlackStandIn,
    pub newrelic: OtlpReceiver,
    pub smtp: ChildGuard,
    pub agent: ChildGuard,
    pub api_port: u16,
    pub sim: ChildGuard,
    pub lambda: LambdaRuntime,
    pub outage_file: PathBuf,
    pub sim_summary: PathBuf,
    pub log_dir: PathBuf,
    /// The filled-in alert spec the watchdog runs on, and the watchdog binary (for `report`).
    pub spec_dir: PathBuf,
    pub watchdog: PathBuf,
}

/// Replaces every `${NAME}` of `vars` in a template.
fn fill(template: &str, vars: &[(&str, String)]) -> String {
    vars.iter().fold(template.to_owned(), |t, (k, v)| {
        t.replace(&format!("${{{k}}}"), v)
    })
}

fn read_template(root: &Path, rel: &str) -> anyhow::Result<String> {
    let p = root.join(rel);
    std::fs::read_to_string(&p).with_context(|| {
        format!(
            "reading {} (run the demo from a Vigil checkout, or pass --root)",
            p.display()
        )
    })
}

/// Runs a program to its end; its output becomes the error if it fails.
fn run_ok(mut cmd: Command, what: &str) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Stack {
    pub fn start(p: &Printer, tools: &Tools, o: &Options) -> anyhow::Result<Stack> {
        p.step("Starting the AWS stand-in: moto (CloudWatch, Logs, X-Ray, DynamoDB, SNS, SSM, Auto Scaling, ELBv2)");
        let moto = Moto::start();
        stop::check()?;
        p.line(format!("moto listens on {}", moto.endpoint));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let resources = rt.block_on(shop_aws::create(&moto))?;
        p.line(format!(
            "created the shop's resources: SSM secrets /vigil/slack/bot-token and /vigil/newrelic-license, \
             SNS topic shop-oncall, Auto Scaling group {} ({} instances) and its target group",
            shop_aws::CHECKOUT_GROUP,
            resources.instances.len()
        ));

        p.step("Starting the stand-ins for Slack, New Relic (OTLP) and an SMTP relay (aiosmtpd)");
        let slack = SlackStandIn::start();
        let newrelic = OtlpReceiver::start(shop_aws::NEWRELIC_LICENSE);
        let smtp_port = free_port();
        let mut smtp_cmd = Command::new(&tools.python);
        smtp_cmd
            .args(["-u", "-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{smtp_port}"));
        let mut smtp = ChildGuard::spawn("aiosmtpd", smtp_cmd).context("starting aiosmtpd")?;
        let up = wait_until(Duration::from_secs(20), || {
            stop::requested()
                || !smtp.is_running()
                || std::net::TcpStream::connect(("127.0.0.1", smtp_port)).is_ok()
        });
        stop::check()?;
        if !up || !smtp.is_running() {
            bail!(
                "aiosmtpd did not start on port {smtp_port}:\n{}",
                smtp.log()
            );
        }
        p.line(format!(
            "Slack API on http://127.0.0.1:{}/api, New Relic OTLP on {}, SMTP on 127.0.0.1:{smtp_port}",
            slack.port,
            newrelic.endpoint()
        ));

        // The watchdog's spec, and the alert-state table it names.
        let spec_dir = o.scratch.join("alerts");
        std::fs::create_dir_all(&spec_dir)?;
        let spec = fill(
            &read_template(&o.root, "examples/shop-demo/alerts/shop.yaml")?,
            &[
                (
                    "SLACK_API_URL",
                    format!("http://127.0.0.1:{}/api", slack.port),
                ),
                ("TOPIC_ARN", resources.topic_arn.clone()),
                ("SMTP_PORT", smtp_port.to_string()),
            ],
        );
        std::fs::write(spec_dir.join("shop.yaml"), spec)?;
        let spec_arg = spec_dir.to_string_lossy().into_owned();
        let mut validate = Command::new(&tools.watchdog);
        validate.args(["validate", "--spec", &spec_arg]);
        run_ok(validate, "vigil-watchdog validate")?;
        let mut table = Command::new(&tools.watchdog);
        table
            .args(["create-state-table", "--spec", &spec_arg])
            .envs(moto.env())
            .env("VIGIL_LOG", "warn");
        run_ok(table, "vigil-watchdog create-state-table")?;
        p.line("alert spec examples/shop-demo/alerts validated; DynamoDB table vigil-demo-alert-state created");

        p.step("Starting vigil-agent (config: examples/shop-demo/agent.toml)");
        let log_dir = o.scratch.join("shop-logs");
        std::fs::create_dir_all(&log_dir)?;
        let config = fill(
            &read_template(&o.root, "examples/shop-demo/agent.toml")?,
            &[
                (
                    "DATA_DIR",
                    o.scratch.join("agent-data").display().to_string(),
                ),
                ("API_PORT", o.api_port.to_string()),
                ("OTLP_PORT", o.otlp_port.to_string()),
                ("LOG_DIR", log_dir.display().to_string()),
                ("NEWRELIC_ENDPOINT", newrelic.endpoint()),
            ],
        );
        let config_path = o.scratch.join("agent.toml");
        std::fs::write(&config_path, config)?;
        let mut validate = Command::new(&tools.agent);
        validate.arg("validate").arg("--config").arg(&config_path);
        run_ok(validate, "vigil-agent validate")?;
        let mut agent_cmd = Command::new(&tools.agent);
        agent_cmd
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .envs(moto.env())
            .env("VIGIL_LOG", "info");
        let mut agent =
            ChildGuard::spawn("vigil-agent", agent_cmd).context("starting the agent")?;
        let health = format!("http://127.0.0.1:{}/health", o.api_port);
        let up = wait_until(Duration::from_secs(30), || {
            stop::requested() || !agent.is_running() || http_get(&health).is_ok()
        });
        stop::check()?;
        if !up || !agent.is_running() {
            bail!("the agent did not start:\n{}", tail(&agent.log(), 30));
        }
        p.line(format!(
            "agent: OTLP/gRPC on 127.0.0.1:{}, tailing {}/*.log, metrics on http://127.0.0.1:{}/metrics",
            o.otlp_port,
            log_dir.display(),
            o.api_port
        ));

        p.step(format!(
            "Starting the shop: vigil-shop-sim, {} requests/s over proxy, authentication, cart, checkout, inventory, payment, notification",
            o.rate
        ));
        let outage_file = o.scratch.join("payment-outage");
        let sim_summary = o.scratch.join("shop-summary.json");
        let mut sim_cmd = Command::new(&tools.shop_sim);
        sim_cmd
            .arg("--otlp-endpoint")
            .arg(format!("http://127.0.0.1:{}", o.otlp_port))
            .arg("--rate")
            .arg(o.rate.to_string())
            .args([
                "--seed",
                "7",
                // A healthy shop: well within checkout's 99 % objective until the outage.
                "--checkout-failure-rate",
                "0.002",
                "--failure-rate",
                "0.001",
                "--slow-checkout-rate",
                "0.03",
            ])
            .arg("--log-dir")
            .arg(&log_dir)
            .arg("--outage-file")
            .arg(&outage_file)
            .arg("--summary")
            .arg(&sim_summary);
        let sim = ChildGuard::spawn("vigil-shop-sim", sim_cmd).context("starting the shop")?;

        p.step("Starting the watchdog as a Lambda function behind `cargo lambda watch` (the Lambda Runtime API)");
        let lambda = LambdaRuntime::start(
            &tools.cargo_lambda,
            &tools.watchdog,
            &o.root.join("watchdog"),
            &moto,
            &spec_dir,
            &o.scratch,
        )?;
        Ok(Stack {
            moto,
            rt,
            slack,
            newrelic,
            smtp,
            agent,
            api_port: o.api_port,
            sim,
            lambda,
            outage_file,
            sim_summary,
            log_dir,
            spec_dir,
            watchdog: tools.watchdog.clone(),
        })
    }

    /// Writes the HTML SLO report (`vigil-watchdog report`) of this run's metrics and alert
    /// state to `out`, while moto still holds them.
    pub fn slo_report(&self, out: &Path) -> anyhow::Result<()> {
        let mut report = Command::new(&self.watchdog);
        report
            .args(["report", "--spec"])
            .arg(&self.spec_dir)
            .args(["--format", "html", "--out"])
            .arg(out)
            .envs(self.moto.env())
            .env("VIGIL_LOG", "warn");
        run_ok(report, "vigil-watchdog report").map(drop)
    }

    /// Fails, with the process's log, when a part of the stack stopped on its own.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for (name, guard) in [
            ("vigil-agent", &mut self.agent),
            ("vigil-shop-sim", &mut self.sim),
            ("aiosmtpd", &mut self.smtp),
            ("vigil-watchdog (Lambda)", &mut self.lambda.function),
            ("cargo lambda watch", &mut self.lambda.emulator),
        ] {
            if !guard.is_running() {
                bail!("{name} stopped unexpectedly:\n{}", tail(&guard.log(), 30));
            }
        }
        Ok(())
    }

    pub fn set_outage(&self, on: bool) -> anyhow::Result<()> {
        if on {
            std::fs::write(&self.outage_file, "payment gateway down\n")
        } else {
            std::fs::remove_file(&self.outage_file)
        }
        .with_context(|| format!("switching the outage file {}", self.outage_file.display()))
    }

    pub fn emails(&self) -> Vec<crate::show::Email> {
        crate::show::Email::all_in(&self.smtp.log())
    }

    /// The agent's `vigil_component_events_total{component=…,outcome="sent"}` per component.
    pub fn agent_sent(&self) -> std::collections::BTreeMap<String, f64> {
        let mut sent = std::collections::BTreeMap::new();
        let Ok(text) = http_get(&format!("http://127.0.0.1:{}/metrics", self.api_port)) else {
            return sent;
        };
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("vigil_component_events_total{") else {
                continue;
            };
            let Some((labels, value)) = rest.split_once("} ") else {
                continue;
            };
            let label = |name: &str| {
                labels.split(',').find_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    (k == name).then(|| v.trim_matches('"').to_owned())
                })
            };
            if label("outcome").as_deref() == Some("sent")
                && let (Some(c), Ok(v)) = (label("component"), value.trim().parse::<f64>())
            {
                sent.insert(c, v);
            }
        }
        sent
    }

    /// Stops the simulator gracefully (it flushes and writes its summary): requests generated.
    pub fn stop_shop(&mut self) -> Option<u64> {
        self.sim.signal(libc::SIGTERM);
        self.sim.wait_exit(Duration::from_secs(15))?;
        let text = std::fs::read_to_string(&self.sim_summary).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v["requests"].as_u64()
    }
}

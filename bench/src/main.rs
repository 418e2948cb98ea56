//! End-to-end benchmark of the release agent (`scripts/bench-e2e.sh` drives it).
//!
//! - `burst`: generates a deterministic JSON log file (about 1 % of lines with a card number,
//!   weeks-old timestamps), measures the single-thread baseline (the agent's own line splitter,
//!   redaction, `json_parse` and JSON encoding, as a library, in this process), then starts the
//!   agent on the file with a `cloudwatch_logs` sink pointed at the stand-in below and reports
//!   events/s, the agent's CPU-seconds, events per CPU-second, peak RSS and the ratio to the
//!   baseline.
//! - `steady`: appends lines at a fixed rate for a while and reports the agent's CPU % of one
//!   core and its RSS once it has settled.
//!
//! The stand-in (`standin`) speaks CloudWatch Logs' awsJson 1.1 on one thread, answers at once,
//! and checks every event: all arrived, none twice, in order, every request within the
//! PutLogEvents limits, no card number.

mod generate;
mod proc_stats;
mod standin;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(about = "End-to-end benchmark of vigil-agent against a CloudWatch Logs stand-in")]
struct Cli {
    /// The agent binary (a release build).
    #[arg(long)]
    agent: PathBuf,
    /// Scratch directory (input file, data dirs, logs).
    #[arg(long)]
    work: PathBuf,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// A file of LINES lines read as fast as the agent can.
    Burst {
        #[arg(long, default_value_t = 1_000_000)]
        lines: u64,
        #[arg(long, value_enum, default_value_t = Buffer::Disk)]
        buffer: Buffer,
        /// Give up after this many seconds without all events arriving.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// RATE lines per second appended for SECONDS.
    Steady {
        #[arg(long, default_value_t = 10_000)]
        rate: u64,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Buffer {
    Disk,
    Memory,
}

impl Buffer {
    fn name(self) -> &'static str {
        match self {
            Buffer::Disk => "disk",
            Buffer::Memory => "memory",
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    std::fs::create_dir_all(&cli.work).with_context(|| format!("create {}", cli.work.display()))?;
    match cli.mode {
        Mode::Burst {
            lines,
            buffer,
            timeout,
        } => burst(&cli.agent, &cli.work, lines, buffer, timeout),
        Mode::Steady { rate, seconds } => steady(&cli.agent, &cli.work, rate, seconds),
    }
}

/// The agent under test, killed (with its children) when dropped.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn start(
        bin: &Path,
        work: &Path,
        name: &str,
        buffer: Buffer,
        port: u16,
    ) -> anyhow::Result<Self> {
        let data = work.join(format!("data-{name}"));
        let _ = std::fs::remove_dir_all(&data);
        let input = work.join(format!("input-{name}"));
        let buffer_table = match buffer {
            Buffer::Disk => String::new(), // the sink's default
            Buffer::Memory => "[sinks.cloudwatch.buffer]\ntype = \"memory\"\n".to_owned(),
        };
        // For experiments: extra TOML lines for the agent (top level) and its sink table, e.g.
        // BENCH_SINK_TOML='stream_queue_requests = 2'. Printed so that a figure names them.
        let agent_extra = std::env::var("BENCH_AGENT_TOML").unwrap_or_default();
        let sink_extra = std::env::var("BENCH_SINK_TOML").unwrap_or_default();
        if !agent_extra.is_empty() || !sink_extra.is_empty() {
            println!("  extra agent config: {agent_extra:?}; sink: {sink_extra:?}");
        }
        let config = work.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                r#"data_dir = "{data}"
{agent_extra}
[sources.app]
type = "file"
include = ["{input}/*.log"]
[processors.parse]
type = "json_parse"
inputs = ["app"]
[sinks.cloudwatch]
type = "cloudwatch_logs"
inputs = ["parse"]
log_group = "/bench/e2e"
log_stream = "app"
{sink_extra}
{buffer_table}"#,
                data = data.display(),
                input = input.display(),
            ),
        )?;
        let log = work.join(format!("{name}.agent.log"));
        let out = std::fs::File::create(&log)?;
        let child = Command::new(bin)
            .args(["run", "--config"])
            .arg(&config)
            .env("AWS_ACCESS_KEY_ID", "bench")
            .env("AWS_SECRET_ACCESS_KEY", "bench")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        Ok(Self { child, log })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SIGTERM, then waits for a graceful exit (SIGKILL after 30 s).
    fn stop(mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.exited() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if !self.exited() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn burst(bin: &Path, work: &Path, lines: u64, buffer: Buffer, timeout: u64) -> anyhow::Result<()> {
    let file = work.join(format!("burst-{lines}.log"));
    let bytes = generate::ensure_file(&file, lines)?;
    let base = generate::baseline(&file)?;
    anyhow::ensure!(
        base.lines == lines,
        "baseline read {} lines, expected {lines}",
        base.lines
    );

    let standin = standin::Standin::start(lines)?;
    let name = format!("burst-{}", buffer.name());
    let input = work.join(format!("input-{name}"));
    let _ = std::fs::remove_dir_all(&input);
    std::fs::create_dir_all(&input)?;
    // A hard link: the agent reads the generated file itself, nothing is copied.
    std::fs::hard_link(&file, input.join("app.log"))
        .or_else(|_| std::fs::copy(&file, input.join("app.log")).map(drop))?;

    let started = Instant::now();
    let mut agent = Agent::start(bin, work, &name, buffer, standin.port())?;
    let pid = agent.pid();
    let deadline = started + Duration::from_secs(timeout);
    // VmHWM counts the binary's code mapped from the page cache too (~19 MiB of it here):
    // the anonymous part (heap, stacks) is sampled on the way, to show the two apart.
    let mut peak_anon = 0;
    loop {
        peak_anon = peak_anon.max(proc_stats::status_kib(pid, "RssAnon").unwrap_or(0));
        if standin.distinct() >= lines {
            break;
        }
        if agent.exited() {
            bail!("the agent exited early:\n{}", agent.log_tail());
        }
        if Instant::now() > deadline {
            bail!(
                "only {} of {lines} events arrived in {timeout} s:\n{}",
                standin.distinct(),
                agent.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let wall = standin
        .last_new_event()
        .map_or(started.elapsed(), |t| t.duration_since(started));
    let cpu = proc_stats::cpu_seconds(pid)?;
    let hwm = proc_stats::status_kib(pid, "VmHWM")?;
    agent.stop();
    let report = standin.finish();

    let per_cpu = lines as f64 / cpu;
    println!(
        "burst, {} buffer: {lines} lines, {:.0} MB, {} requests",
        buffer.name(),
        bytes as f64 / 1e6,
        report.requests
    );
    println!(
        "  agent:    {:>9.0} events/s  {:>6.2} CPU-s  {:>9.0} events/CPU-s  peak RSS {:>6.1} MiB (anonymous {:.1} MiB)",
        lines as f64 / wall.as_secs_f64(),
        cpu,
        per_cpu,
        hwm as f64 / 1024.0,
        peak_anon as f64 / 1024.0
    );
    println!(
        "  baseline: {:>9.0} lines/CPU-s (one thread: split + redact + json_parse + encode, {:.2} CPU-s)",
        base.lines as f64 / base.cpu_seconds,
        base.cpu_seconds
    );
    println!(
        "  ratio:    {:.1} % of the baseline's lines per CPU-second",
        100.0 * per_cpu / (base.lines as f64 / base.cpu_seconds)
    );
    report.print_and_check()
}

fn steady(bin: &Path, work: &Path, rate: u64, seconds: u64) -> anyhow::Result<()> {
    let total = rate * seconds;
    let standin = standin::Standin::start(total)?;
    let name = "steady";
    let input = work.join(format!("input-{name}"));
    let _ = std::fs::remove_dir_all(&input);
    std::fs::create_dir_all(&input)?;
    let path = input.join("app.log");
    std::fs::write(&path, b"")?;
    let mut agent = Agent::start(bin, work, name, Buffer::Disk, standin.port())?;
    let pid = agent.pid();
    // Let it start and settle before the lines come.
    std::thread::sleep(Duration::from_secs(2));

    let mut out = std::fs::OpenOptions::new().append(true).open(&path)?;
    let tick = Duration::from_millis(10);
    let per_tick = rate / 100;
    let started = Instant::now();
    let warmup = Duration::from_secs(5.min(seconds / 3));
    let mut window: Option<(Instant, f64)> = None;
    let mut seq = 0u64;
    let mut buf = Vec::new();
    for n in 1..=seconds * 100 {
        buf.clear();
        for _ in 0..per_tick {
            generate::line(seq, &mut buf);
            seq += 1;
        }
        std::io::Write::write_all(&mut out, &buf)?;
        if window.is_none() && started.elapsed() >= warmup {
            window = Some((Instant::now(), proc_stats::cpu_seconds(pid)?));
        }
        let next = started + tick * n as u32;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if agent.exited() {
            bail!("the agent exited early:\n{}", agent.log_tail());
        }
    }
    let (t0, c0) = window.context("run too short for a measurement window")?;
    let cpu = proc_stats::cpu_seconds(pid)? - c0;
    let wall = t0.elapsed().as_secs_f64();
    let rss = proc_stats::status_kib(pid, "VmRSS")?;
    let anon = proc_stats::status_kib(pid, "RssAnon")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while standin.distinct() < total {
        if Instant::now() > deadline {
            bail!(
                "only {} of {total} events arrived:\n{}",
                standin.distinct(),
                agent.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let lag = standin.last_new_event().map_or(0.0, |t| {
        t.saturating_duration_since(started + tick * (seconds * 100) as u32)
            .as_secs_f64()
    });
    let hwm = proc_stats::status_kib(pid, "VmHWM")?;
    agent.stop();
    let report = standin.finish();
    println!(
        "steady: {rate} lines/s for {seconds} s ({total} lines), {} requests",
        report.requests
    );
    println!(
        "  agent:    {:.2} % of one core ({:.2} CPU-s over {:.1} s after a {} s warm-up)  RSS {:.1} MiB (anonymous {:.1} MiB)  peak {:.1} MiB  last event {:.1} s after the last line",
        100.0 * cpu / wall,
        cpu,
        wall,
        warmup.as_secs(),
        rss as f64 / 1024.0,
        anon as f64 / 1024.0,
        hwm as f64 / 1024.0,
        lag
    );
    report.print_and_check()
}

#!/usr/bin/env bash
# End-to-end cost of the release agent (issue 19), from one run:
#   1. a 1,000,000-line JSON file (deterministic, ~1 % card numbers, weeks-old timestamps) read
#      by the agent through json_parse and default redaction into its cloudwatch_logs sink,
#      pointed at a local CloudWatch Logs stand-in (vigil-bench-e2e, awsJson 1.1, answers at
#      once and checks every event) — with the disk buffer (default), then a memory buffer;
#      each printed beside the same run's single-thread baseline (split + redact + json_parse +
#      encode with the agent's own code, one thread) and the ratio of lines per CPU-second;
#   2. 10,000 lines/s appended for STEADY_SECONDS (default 30): CPU % of one core and RSS;
#   3. the idle figures of scripts/bench-idle.sh (IDLE_SECONDS, default 30) for comparison.
#
#   scripts/bench-e2e.sh                # builds the release agent and the bench first
#   BENCH_LINES=200000 SKIP_IDLE=1 scripts/bench-e2e.sh
#   BENCH_SINK_TOML="stream_queue_requests = 2" BENCH_AGENT_TOML="memory_limit_bytes = 67108864" ...
#                                       # experiments: extra config lines (printed with the figures)
#   NO_BUILD=1 SKIP_BURST=1 SKIP_IDLE=1 AGENT_BIN=~/.cache/vigil/vigil-agent.old scripts/bench-e2e.sh
#                                       # only the steady run, of another agent binary (to compare
#                                       # builds in one session: alternate them, CPU varies ±30 %)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

LINES=${BENCH_LINES:-1000000}
STEADY_SECONDS=${STEADY_SECONDS:-30}
IDLE_SECONDS=${IDLE_SECONDS:-30}

if [ -z "${NO_BUILD:-}" ]; then
    # Only the two binaries the benchmark runs (the watchdog's SDK crates are not needed here).
    cargo build --release --locked -p vigil-agent -p vigil-bench
fi
bin="$CARGO_TARGET_DIR/release"
agent=${AGENT_BIN:-$bin/vigil-agent}
work=${BENCH_WORK:-$VIGIL_CACHE/bench-e2e}
mkdir -p "$work"

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ), $(git rev-parse --short HEAD)"
if [ -z "${SKIP_BURST:-}" ]; then
    for buffer in disk memory; do
        "$bin/vigil-bench-e2e" --agent "$agent" --work "$work" burst --lines "$LINES" --buffer "$buffer"
    done
fi
"$bin/vigil-bench-e2e" --agent "$agent" --work "$work" steady --rate 10000 --seconds "$STEADY_SECONDS"
if [ -z "${SKIP_IDLE:-}" ]; then
    BENCH_SECONDS=$IDLE_SECONDS AGENT_BIN="$agent" scripts/bench-idle.sh
fi

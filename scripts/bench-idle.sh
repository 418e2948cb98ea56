#!/usr/bin/env bash
# Idle cost of the agent, side by side with prometheus-node-exporter, in one run.
#
# Runs for BENCH_SECONDS (default 60) after a short warm-up:
#   - agent "full":  host_metrics every 10 s + an idle file source → console sink (/dev/null)
#   - agent "fixed": the same without host_metrics (the fixed cost: runtime, file polling)
#   - prometheus-node-exporter, scraped every 10 s by a curl loop
# and reports, per process: CPU % of one core (sum of every thread's /proc/PID/task/*/schedstat
# run time, in ns — the tick counters in /proc/PID/stat are too coarse for 0.01 %), RSS (VmRSS)
# and peak RSS (VmHWM), wake-ups per second (voluntary + involuntary context switches of all
# threads), then the agent's numbers as ratios to node_exporter's and the cost per collection.
#
#   scripts/bench-idle.sh                 # builds the agent (--profile bench) first
#   AGENT_BIN=path/to/vigil-agent scripts/bench-idle.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_SECONDS=${BENCH_SECONDS:-60}
INTERVAL=10
NODE_EXPORTER=${NODE_EXPORTER:-/usr/bin/prometheus-node-exporter}

if [ -z "${AGENT_BIN:-}" ]; then
    cargo build --quiet --profile bench -p vigil-agent --bin vigil-agent
    AGENT_BIN="${CARGO_TARGET_DIR:-target}/release/vigil-agent" # the bench profile builds into release/
fi

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

mkdir -p "$work/logs"
echo "started" > "$work/logs/app.log"
for kind in full fixed; do
    host=""
    inputs='["logs"]'
    if [ "$kind" = full ]; then
        host=$'[sources.host]\ntype = "host_metrics"\ninterval_ms = '"$((INTERVAL * 1000))"
        inputs='["logs", "host"]'
    fi
    cat > "$work/$kind.toml" <<TOML
data_dir = "$work/data-$kind"
[sources.logs]
type = "file"
include = ["$work/logs/*.log"]
$host
[sinks.out]
type = "console"
inputs = $inputs
path = "/dev/null"
TOML
done

port=$(free_port)
"$NODE_EXPORTER" --web.listen-address="127.0.0.1:$port" >"$work/node.log" 2>&1 &
node=$!; pids+=("$node")
"$AGENT_BIN" run --config "$work/full.toml" >"$work/full.log" 2>&1 &
full=$!; pids+=("$full")
"$AGENT_BIN" run --config "$work/fixed.toml" >"$work/fixed.log" 2>&1 &
fixed=$!; pids+=("$fixed")
( while true; do curl -s -o /dev/null "http://127.0.0.1:$port/metrics" || true; sleep "$INTERVAL"; done ) &
pids+=("$!")

sleep 3 # warm-up: first collection, first scrape, runtime threads settled

# "<cpu ns> <context switches>" summed over every thread of $1.
sample() {
    local ns=0 cs=0 t
    for t in /proc/"$1"/task/*; do
        read -r run _ < "$t/schedstat" || continue
        ns=$((ns + run))
        cs=$((cs + $(awk '/^(non)?voluntary_ctxt_switches/ {s += $2} END {print s}' "$t/status")))
    done
    echo "$ns $cs"
}
mem() { awk -v k="$2:" '$1 == k {print $2}' /proc/"$1"/status; }

declare -A before
for name in full fixed node; do before[$name]=$(sample "${!name}"); done
start=$(date +%s.%N)
sleep "$RUN_SECONDS"
elapsed=$(echo "$(date +%s.%N) - $start" | bc -l)

declare -A cpu wake rss hwm
for name in full fixed node; do
    pid=${!name}
    read -r ns0 cs0 <<<"${before[$name]}"
    read -r ns1 cs1 <<<"$(sample "$pid")"
    cpu[$name]=$(echo "($ns1 - $ns0) / 1000000000 / $elapsed * 100" | bc -l)
    wake[$name]=$(echo "($cs1 - $cs0) / $elapsed" | bc -l)
    rss[$name]=$(echo "$(mem "$pid" VmRSS) / 1024" | bc -l)
    hwm[$name]=$(echo "$(mem "$pid" VmHWM) / 1024" | bc -l)
done

collections=$(echo "$elapsed / $INTERVAL" | bc -l)
printf '\nIdle benchmark: %.0f s, host metrics and node_exporter scrape every %d s\n\n' "$elapsed" "$INTERVAL"
printf '%-34s %12s %10s %10s %12s\n' process "CPU % core" "RSS MiB" "HWM MiB" "wakeups/s"
for name in full fixed node; do
    case $name in
        full) label="agent (host metrics + idle file)" ;;
        fixed) label="agent (idle file only)" ;;
        node) label="prometheus-node-exporter" ;;
    esac
    printf '%-34s %12.4f %10.1f %10.1f %12.2f\n' "$label" "${cpu[$name]}" "${rss[$name]}" "${hwm[$name]}" "${wake[$name]}"
done
printf '\nagent/node_exporter: CPU x%.2f, RSS x%.2f, wakeups x%.2f\n' \
    "$(echo "${cpu[full]} / ${cpu[node]}" | bc -l)" \
    "$(echo "${rss[full]} / ${rss[node]}" | bc -l)" \
    "$(echo "${wake[full]} / ${wake[node]}" | bc -l)"
printf 'fixed cost: %.4f %% of a core, %.2f wakeups/s; per collection: %.3f ms CPU, %.1f wakeups\n' \
    "${cpu[fixed]}" "${wake[fixed]}" \
    "$(echo "(${cpu[full]} - ${cpu[fixed]}) / 100 * $elapsed / $collections * 1000" | bc -l)" \
    "$(echo "(${wake[full]} - ${wake[fixed]}) * $elapsed / $collections" | bc -l)"
printf 'targets (whole agent): < 0.03 %% of a core, < 15 MiB RSS, <= 5 wakeups/s\n'

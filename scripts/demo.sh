#!/usr/bin/env bash
# The demo: builds vigil-agent, copies the sample shop logs to a scratch directory, and runs the
# agent on them with a console sink, printing what it would ship to CloudWatch Logs. It appends
# a few more lines while running to show live tailing, then stops the agent with SIGTERM.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
source "$here/env.sh"

cargo build --quiet -p vigil-agent
agent="$CARGO_TARGET_DIR/debug/vigil-agent"

DEMO_DIR="$(mktemp -d "${TMPDIR:-/tmp}/vigil-demo.XXXXXX")"
export DEMO_DIR
trap 'rm -rf "$DEMO_DIR"' EXIT
cp -r "$root/examples/demo/logs" "$DEMO_DIR/logs"
sed "s|\${DEMO_DIR}|$DEMO_DIR|g" "$root/examples/demo/agent.toml" >"$DEMO_DIR/agent.toml"

"$agent" validate --config "$DEMO_DIR/agent.toml" >&2
echo "--- what vigil-agent would ship (stdout) ---" >&2
"$agent" run --config "$DEMO_DIR/agent.toml" &
pid=$!
sleep 1.5
echo '{"timestamp":"2026-11-22T10:00:05.000Z","level":"info","route":"GET /cart","msg":"live line appended while running"}' \
  >>"$DEMO_DIR/logs/checkout/checkout.log"
sleep 1.5
kill -TERM "$pid"
wait "$pid"

#!/usr/bin/env bash
# The demo (the README's first command): the simulated shop watched by Vigil on this machine.
# It installs what it needs (scripts/setup.sh: moto, cargo-lambda, aiosmtpd), builds exactly
# what scripts/test.sh builds (same packages and features, so after the tests nothing is
# rebuilt), then runs `vigil-demo` (tests/demo): moto with the shop's AWS resources, Slack /
# New Relic / SMTP stand-ins, the shop simulator, vigil-agent, and the watchdog as a Lambda on
# a schedule; it injects a payment outage, shows the page and its resolve, prints a summary
# and stops everything it started (also on Ctrl-C).
#
#   scripts/demo.sh            # about 4-5 minutes once built
#   scripts/demo.sh --keep     # leave the stack up afterwards for `vigil-agent top` (Ctrl-C ends)
#   scripts/demo.sh --fast     # the short variant the test suite runs (about 2-3 minutes)
#   scripts/demo.sh --help     # ports, rate, schedule
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$(dirname "$here")"

"$here/setup.sh"
source "$here/env.sh"

echo "== building Vigil (cargo build --workspace --bins --locked, as scripts/test.sh; the first build takes a while)" >&2
cargo build --workspace --bins --locked
exec "$CARGO_TARGET_DIR/debug/vigil-demo" "$@"

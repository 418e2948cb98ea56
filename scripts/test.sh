#!/usr/bin/env bash
# Runs every check and test of Vigil, installing what they need first (scripts/setup.sh).
# This is the README's test command and exactly what CI runs (.ci/run).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$(dirname "$here")"

"$here/setup.sh"
source "$here/env.sh"

echo "== cargo fmt --check" >&2
cargo fmt --all --check
echo "== cargo deny (deny.toml)" >&2
"$here/deny.sh"
echo "== module layering (no module cycles; scripts/layering.py)" >&2
python3 "$here/layering.py"
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== build binaries (end-to-end tests run the real programs)" >&2
cargo build --workspace --bins --locked
echo "== tests" >&2
# nextest runs each test in its own process: a crashing test cannot take others down, and
# servers started by a test die with it.
cargo nextest run --workspace --locked --no-fail-fast --failure-output final "$@"

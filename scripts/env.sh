# Shared locations for Vigil's scripts; sourced, not run.
# Caches live outside the clone so a fresh clone reuses them and `git clean` never drops them.
export VIGIL_CACHE="${VIGIL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil}"
export VIGIL_VENV="${VIGIL_VENV:-$VIGIL_CACHE/venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$VIGIL_CACHE/target}"
# The test harness finds moto_server, cargo-lambda, aiosmtpd and ansible here.
export PATH="$VIGIL_VENV/bin:$PATH"

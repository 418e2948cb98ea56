#!/usr/bin/env bash
# Installs everything Vigil's tests and demo need on a fresh Debian machine where only the
# package registries (Debian, PyPI, crates.io) are reachable. Idempotent and quick when done:
# every step checks first and only installs what is missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/env.sh
source "$here/env.sh"

log() { printf '[setup] %s\n' "$*" >&2; }

# --- Debian packages -------------------------------------------------------------------------
# prometheus-node-exporter and promtool (package prometheus) are Prometheus stand-ins;
# logrotate rotates real files under the running agent in the end-to-end tests.
# openssl makes the CA and server certificate of the STARTTLS test; make builds jemalloc (the
# agent's allocator).
debs=(prometheus-node-exporter prometheus logrotate openssl make)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  # No init system runs services here: keep package scripts from trying to start daemons.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${sudo_cmd[@]}" chmod +x /usr/sbin/policy-rc.d
  fi
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Python virtualenv (outside the clone) ---------------------------------------------------
req="$here/requirements.txt"
stamp="$VIGIL_VENV/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ ! -x "$VIGIL_VENV/bin/python" ]; then
  log "creating virtualenv at $VIGIL_VENV"
  python3 -m venv "$VIGIL_VENV"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing Python tools from $req"
  "$VIGIL_VENV/bin/pip" install -q --disable-pip-version-check -r "$req"
  echo "$want" >"$stamp"
fi

# --- Rust toolchain components and test runner ------------------------------------------------
# rust-toolchain.toml pins the compiler; rustfmt and clippy come with it.
if ! command -v cargo-nextest >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install --locked cargo-nextest >/dev/null
fi

# --- Issue 13: packaging and the real systemd host for the Ansible role test -----------------
# cargo-deb builds vigil-agent's .deb (scripts/package.sh); systemd-container (systemd-nspawn)
# and debootstrap give the role test a real Debian 12 host booted with systemd as PID 1.
if ! command -v cargo-deb >/dev/null 2>&1 || [ "$(cargo-deb --version 2>/dev/null)" != "cargo-deb 3.8.0" ]; then
  log "installing cargo-deb 3.8.0"
  cargo install --locked --quiet cargo-deb --version 3.8.0
fi
host_debs=(systemd-container debootstrap)
host_missing=()
for p in "${host_debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || host_missing+=("$p")
done
if ((${#host_missing[@]})); then
  log "installing Debian packages: ${host_missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${host_missing[@]}" >/dev/null
fi
# The Debian 12 root the role test boots (once per machine, about 4 minutes; outside the clone).
# Built into a temporary directory and renamed, so an interrupted build is never mistaken for one.
"$here/debian-host-root.sh" >/dev/null
# --- end issue 13 ------------------------------------------------------------------------------

# --- checkov for the watchdog's Terraform module (issue 14) ------------------------------------
# checkov pins an old botocore that conflicts with moto's: it gets a virtualenv of its own.
checkov_venv="$VIGIL_CACHE/checkov-venv"
checkov_version="3.3.30"
if [ "$("$checkov_venv/bin/checkov" --version 2>/dev/null)" != "$checkov_version" ]; then
  log "installing checkov $checkov_version into $checkov_venv"
  [ -x "$checkov_venv/bin/python" ] || python3 -m venv "$checkov_venv"
  "$checkov_venv/bin/pip" install -q --disable-pip-version-check "checkov==$checkov_version"
fi
# --- end checkov ------------------------------------------------------------------------------
# --- issue 15: headless Chromium for the SLO report test ------------------------------------
# The HTML report (`vigil-watchdog report --format html`) is rendered by Debian's chromium in
# watchdog/tests: a screenshot and the DOM after layout prove it draws one chart per SLO.
if ! dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q 'install ok installed'; then
  log "installing chromium (report rendering test)"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
# --- end issue 15 ------------------------------------------------------------------------------

# --- cargo-deny (issue 12): licenses, one HTTP/TLS stack, sources (scripts/deny.sh) ----------
if [ "$(cargo-deny --version 2>/dev/null)" != "cargo-deny 0.20.2" ]; then
  log "installing cargo-deny 0.20.2"
  cargo install --locked --quiet cargo-deny --version 0.20.2
fi
# --- end cargo-deny ----------------------------------------------------------------------------

log "ready (venv: $VIGIL_VENV)"

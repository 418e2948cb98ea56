#!/usr/bin/env bash
# Builds the Debian 12 (bookworm) root that the Ansible role test boots with systemd-nspawn:
# systemd as PID 1, dbus, python3 (+ python3-apt for Ansible's apt module), openssh-server and
# ca-certificates (as on an EC2 image; the agent needs them for HTTPS),
# so Ansible reaches it over SSH the way it reaches an EC2 host. Built once into $VIGIL_CACHE
# and reused; prints the root's path.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/env.sh
source "$here/env.sh"

# Bump the suffix when the package list changes, so machines rebuild instead of reusing.
root="$VIGIL_CACHE/nspawn/debian12-v2"
if [ -x "$root/lib/systemd/systemd" ] && [ -x "$root/usr/sbin/sshd" ]; then
  echo "$root"
  exit 0
fi
mirror="${VIGIL_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
mkdir -p "$VIGIL_CACHE/nspawn"
tmp="$VIGIL_CACHE/nspawn/.debian12-building.$$"
"${sudo_cmd[@]}" rm -rf "$tmp"
trap '"${sudo_cmd[@]}" rm -rf "$tmp"' EXIT
printf '[setup] building the Debian 12 root for the role test (about 4 minutes): %s\n' "$root" >&2
"${sudo_cmd[@]}" debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,python3,python3-apt,openssh-server,ca-certificates \
  bookworm "$tmp" "$mirror" >"$VIGIL_CACHE/nspawn/debootstrap.log" 2>&1 || {
  echo "debootstrap failed; see $VIGIL_CACHE/nspawn/debootstrap.log" >&2
  exit 1
}
# A booted test host needs no getty on a console nobody reads, and no network configuration of
# its own (it shares the host's network namespace).
"${sudo_cmd[@]}" rm -f "$tmp/etc/systemd/system/getty.target.wants/"* || true
"${sudo_cmd[@]}" mv "$tmp" "$root"
trap - EXIT
echo "$root"

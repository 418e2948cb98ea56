#!/usr/bin/env bash
# Packages vigil-agent for hosts: a Debian package (cargo-deb, metadata in agent/Cargo.toml),
# a plain .tar.gz for hosts without dpkg, and SHA256SUMS over both.
#
#   scripts/package.sh                      # release build, into $CARGO_TARGET_DIR/package
#   scripts/package.sh --profile dev --no-build --out DIR
#                                           # the debug binary `cargo build --workspace --bins`
#                                           # already made (what the tests install)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
# shellcheck source=scripts/env.sh
source "$here/env.sh"

profile=release
build=1
out=""
while (($#)); do
  case "$1" in
    --profile) profile="${2:?--profile needs a value (release or dev)}"; shift 2 ;;
    --no-build) build=0; shift ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    -h | --help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "package.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$profile" in
  release) profile_dir=release ;;
  dev) profile_dir=debug ;;
  *) echo "package.sh: --profile must be release or dev, not '$profile'" >&2; exit 2 ;;
esac
out="${out:-$CARGO_TARGET_DIR/package}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$repo"

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)"
arch="$(dpkg --print-architecture)"
[ -n "$version" ] || { echo "package.sh: no version in Cargo.toml's [workspace.package]" >&2; exit 1; }

if ((build)); then
  cargo build -p vigil-agent --bin vigil-agent --profile "$profile" --locked
fi
bin="$CARGO_TARGET_DIR/$profile_dir/vigil-agent"
[ -x "$bin" ] || { echo "package.sh: $bin not found (build it, or drop --no-build)" >&2; exit 1; }

deb="$out/vigil-agent_${version}_${arch}.deb"
# Test packages (dev) favour speed over size.
fast=()
[ "$profile" = dev ] && fast=(--fast)
cargo deb -p vigil-agent --no-build --profile "$profile" "${fast[@]}" --output "$deb" >&2

# The tarball: the same files as the package, laid out for a manual install.
name="vigil-agent-${version}-linux-${arch}"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/$name"
cp "$bin" "$stage/$name/vigil-agent"
strip --strip-debug "$stage/$name/vigil-agent"
cp agent/debian/vigil-agent.service agent/debian/agent.toml "$stage/$name/"
cat >"$stage/$name/INSTALL" <<TXT
vigil-agent $version, for hosts without dpkg:
  install -m 0755 vigil-agent /usr/bin/vigil-agent
  useradd --system --user-group --groups adm --no-create-home --shell /usr/sbin/nologin vigil
  install -d -m 0750 -g vigil /etc/vigil && install -m 0640 -g vigil agent.toml /etc/vigil/
  install -m 0644 vigil-agent.service /etc/systemd/system/ && systemctl daemon-reload
  vigil-agent validate --config /etc/vigil/agent.toml && systemctl enable --now vigil-agent
TXT
tar -C "$stage" --owner=0 --group=0 --sort=name -czf "$out/$name.tar.gz" "$name"

(cd "$out" && sha256sum "$(basename "$deb")" "$name.tar.gz" >SHA256SUMS)
echo "$deb"

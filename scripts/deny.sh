#!/usr/bin/env bash
# cargo-deny over the workspace's dependency graph (deny.toml): licenses, bans (one HTTP/TLS
# stack) and sources always; advisories when a copy of the RustSec database is on this machine.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$(dirname "$here")"
source "$here/env.sh"

checks=(licenses bans sources)
if compgen -G "$VIGIL_CACHE/advisory-dbs/*/crates" >/dev/null; then
  checks+=(advisories)
else
  echo "[deny] advisories not checked: no RustSec database under $VIGIL_CACHE/advisory-dbs" \
    "(its home, GitHub, is not reachable from here)" >&2
fi
# cargo-deny reads the crates' manifests and license files from their sources: download them
# first (a no-op when cached; a fresh machine has not built anything yet at this point).
cargo fetch --locked --quiet
# --offline: then never fetch (crates.io index or advisory database); use what is on the machine.
cargo deny --offline check "${checks[@]}"

#!/usr/bin/env bash
# Packages vigil-watchdog as an AWS Lambda deployment zip for the provided.al2023 runtime:
#   bootstrap        the watchdog binary (Lambda runs it; it finds the Runtime API itself)
#   alerts/...       the alert spec, found at $LAMBDA_TASK_ROOT/alerts (or $VIGIL_SPEC)
#
#   scripts/package-lambda.sh                      # cargo lambda build --release, x86_64
#   scripts/package-lambda.sh --binary PATH        # zip a binary already built (the tests use
#                                                  # target/debug/vigil-watchdog: no release build)
#   options: --spec DIR (default alerts/), --out FILE (default target/lambda/vigil-watchdog.zip)
#
# arm64 (Graviton): `cargo lambda build --release --arm64` needs the aarch64-unknown-linux-gnu
# std from rustup; not built or tested here. Pass the binary it makes with --binary.
# The zip is reproducible (sorted entries, fixed timestamps), so Terraform's source_code_hash
# changes only when the binary or the spec does.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
# shellcheck source=scripts/env.sh
source "$here/env.sh"

binary=""
spec="$root/alerts"
out=""
while (($#)); do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --spec) spec="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "package-lambda: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
out="${out:-$CARGO_TARGET_DIR/lambda/vigil-watchdog.zip}"

if [ -z "$binary" ]; then
  echo "[package-lambda] cargo lambda build --release (x86_64, provided.al2023)" >&2
  (cd "$root" && cargo lambda build --release --locked --bin vigil-watchdog --x86-64)
  binary="$CARGO_TARGET_DIR/lambda/vigil-watchdog/bootstrap"
fi
[ -x "$binary" ] || { echo "package-lambda: $binary is not an executable file" >&2; exit 1; }
[ -d "$spec" ] || { echo "package-lambda: spec directory $spec not found" >&2; exit 1; }

# A package with a broken spec would page nobody: validate it with the binary being shipped.
if ! "$binary" validate --spec "$spec" >&2; then
  echo "package-lambda: the spec in $spec is invalid; not packaging it" >&2
  exit 1
fi

mkdir -p "$(dirname "$out")"
python3 - "$binary" "$spec" "$out" <<'EOF'
import os, sys, zipfile
binary, spec, out = sys.argv[1:4]
# 1980-01-01: the earliest a zip can store; the same bytes in give the same zip out.
stamp = (1980, 1, 1, 0, 0, 0)
def add(z, path, name, mode):
    info = zipfile.ZipInfo(name, stamp)
    info.external_attr = (0o100000 | mode) << 16  # regular file + permissions, read by Lambda
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # Unix, so the permissions above count
    with open(path, "rb") as f:
        z.writestr(info, f.read(), compresslevel=9)
tmp = out + ".tmp"
with zipfile.ZipFile(tmp, "w") as z:
    add(z, binary, "bootstrap", 0o755)
    files = []
    for d, _, names in os.walk(spec):
        for n in names:
            if n.endswith((".yaml", ".yml")):
                p = os.path.join(d, n)
                files.append((os.path.join("alerts", os.path.relpath(p, spec)), p))
    for name, p in sorted(files):
        add(z, p, name, 0o644)
os.replace(tmp, out)
EOF
size=$(stat -c %s "$out")
echo "[package-lambda] $out ($((size / 1024)) KiB)" >&2
echo "$out"

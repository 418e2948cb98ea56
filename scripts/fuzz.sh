#!/usr/bin/env bash
# Runs one fuzz target under libFuzzer (cargo-fuzz, stable toolchain, no sanitizer):
#   scripts/fuzz.sh TARGET SECONDS     fuzz for SECONDS, then print executions and coverage
#   scripts/fuzz.sh TARGET FILE...     replay inputs (a crash file, a corpus file)
#   scripts/fuzz.sh --list             the targets
# Targets are fuzz/fuzz_targets/*.rs; each calls an entry in the library crates
# (vigil_agent::fuzzing, the watchdog's spec/fuzzing.rs), which the unit tests also run seeded.
# The committed corpus fuzz/corpus/TARGET seeds the run and is not written to: new inputs go to
# $VIGIL_CACHE/fuzz-corpus/TARGET, crashes to $VIGIL_CACHE/fuzz-artifacts/TARGET/ (add a
# crashing input to fuzz/corpus/TARGET with its fix). The build instruments every dependency
# (its own target dir, $VIGIL_CACHE/fuzz-target): the first one takes long; it and the fuzzer run
# niced so that other builds on the machine are not starved.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
# shellcheck source=env.sh
source "$here/env.sh"

targets=()
for f in "$root"/fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
usage() { echo "usage: $0 TARGET SECONDS | TARGET FILE... | --list; targets: ${targets[*]}" >&2; exit 2; }
[ $# -ge 1 ] || usage
if [ "$1" = "--list" ]; then printf '%s\n' "${targets[@]}"; exit 0; fi
target="$1"; shift
[[ " ${targets[*]} " == *" $target "* ]] || { echo "unknown target '$target'" >&2; usage; }
[ $# -ge 1 ] || usage

cargo_fuzz_version="0.13.2"
cargo_fuzz="$VIGIL_CACHE/cargo-fuzz/bin/cargo-fuzz"
if [ "$("$cargo_fuzz" --version 2>/dev/null)" != "cargo-fuzz $cargo_fuzz_version" ]; then
  echo "fuzz.sh: installing cargo-fuzz $cargo_fuzz_version into $VIGIL_CACHE/cargo-fuzz" >&2
  cargo install cargo-fuzz --locked --version "$cargo_fuzz_version" --root "$VIGIL_CACHE/cargo-fuzz"
fi
export PATH="$VIGIL_CACHE/cargo-fuzz/bin:$PATH"
export CARGO_TARGET_DIR="$VIGIL_CACHE/fuzz-target"
# No sanitizer: the fuzzed code is safe Rust (ASan would find nothing a panic does not) and
# this way cargo-fuzz needs no nightly flags. Debug assertions on: overflow panics.
flags=(--fuzz-dir fuzz --sanitizer none --debug-assertions --codegen-units 16)
cd "$root"
nice -n 10 cargo fuzz build "${flags[@]}" "$target"
binary="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/$target"

if [[ "$1" =~ ^[0-9]+$ ]] && [ $# -eq 1 ]; then
  seconds="$1"
  work="$VIGIL_CACHE/fuzz-corpus/$target"
  artifacts="$VIGIL_CACHE/fuzz-artifacts/$target/"
  logs="$VIGIL_CACHE/fuzz-logs"
  mkdir -p "$work" "$artifacts" "$logs"
  log="$logs/$target.log"
  start=$(date +%s)
  set +e
  nice -n 19 "$binary" "$work" "fuzz/corpus/$target" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -artifact_prefix="$artifacts" -print_final_stats=1 >"$log" 2>&1
  status=$?
  set -e
  end=$(date +%s)
  runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || true)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(grep -o 'cov: [0-9]*' <<<"$last" | grep -o '[0-9]*$' || true)
  ft=$(grep -o 'ft: [0-9]*' <<<"$last" | grep -o '[0-9]*$' || true)
  corp=$(grep -o 'corp: [0-9]*/[0-9a-zA-Z]*' <<<"$last" | cut -d' ' -f2 || true)
  echo "$target: $((end - start)) s, ${runs:-?} executions, coverage ${cov:-?} edges (${ft:-?} features), corpus ${corp:-?}, exit $status; log $log"
  if [ "$status" -ne 0 ]; then
    grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -20 >&2
  fi
  exit "$status"
fi
# Replay the given inputs.
nice -n 19 "$binary" "$@"

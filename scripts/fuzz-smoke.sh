#!/usr/bin/env bash
# Fuzz smoke test: builds the cargo-fuzz targets in fuzz/ and runs each one
# for a short, bounded time on a scratch copy of the committed corpus, so the
# repository's corpus never grows. Exits non-zero if any target crashes,
# panics, breaks an invariant, hangs or runs out of memory; the failing input
# is kept under fuzz/artifacts/<target>/ (gitignored) for `cargo fuzz tmin`.
#
# Needs only rustup's stable toolchain and a C/C++ compiler (the service's
# build already needs the C one). cargo-fuzz passes nightly-only flags
# (-Zsanitizer=address, sancov passes), which stable accepts with
# RUSTC_BOOTSTRAP=1; see fuzz/README.md.
#
#   scripts/fuzz-smoke.sh                       # every target, 20 s each
#   FUZZ_SECONDS=120 scripts/fuzz-smoke.sh scopes mint_request
#
# Saved regressions (fuzz/regressions/) are not replayed here: `cargo test`
# does that (tests/integration/fuzz_regressions.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-20}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "FUZZ_SECONDS must be a positive integer (got '$seconds')" >&2
  exit 2
fi
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

echo "== building ${targets[*]}"
for target in "${targets[@]}"; do
  cargo fuzz build "$target"
done

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

failed=()
for target in "${targets[@]}"; do
  echo "== fuzzing $target for ${seconds}s"
  corpus="$scratch/$target"
  mkdir -p "$corpus"
  if [ -d "fuzz/corpus/$target" ]; then
    cp -R "fuzz/corpus/$target/." "$corpus/"
  fi
  options=(-max_total_time="$seconds" -timeout=10 -print_final_stats=1)
  if [ -f "fuzz/dict/$target.dict" ]; then
    options+=(-dict="fuzz/dict/$target.dict")
  fi
  if ! cargo fuzz run "$target" "$corpus" -- "${options[@]}"; then
    failed+=("$target")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "== FAILED: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
  exit 1
fi
echo "== fuzz smoke passed: ${targets[*]} (${seconds}s each)"

#!/usr/bin/env bash
# Supply-chain checks: cargo-deny over advisories, bans, licenses and sources,
# against the offline RustSec database copy in ../shared/advisory-db.
#
#   scripts/supply-chain.sh            # install cargo-deny if needed, check all
#   scripts/supply-chain.sh licenses   # extra args go to `cargo deny check`
#
# Exits non-zero if any check fails (or cargo-deny cannot run). See
# docs/supply-chain.md.
set -euo pipefail

# Pinned: bump deliberately, and re-read deny.toml against its CHANGELOG.
CARGO_DENY_VERSION="0.20.2"
# Relative to the repository root; must equal [advisories] db-path in deny.toml.
DB_PATH="target/advisory-db"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

advisory_tool="$repo_root/../shared/tools/advisory-db"
if [ ! -x "$advisory_tool" ]; then
  echo "supply-chain: $advisory_tool not found; it is expected beside the repository (../shared/)" >&2
  exit 2
fi

# 1. cargo-deny, at the pinned version.
installed="$(cargo deny --version 2>/dev/null || true)"
if [ "$installed" != "cargo-deny $CARGO_DENY_VERSION" ]; then
  echo "== installing cargo-deny $CARGO_DENY_VERSION (found: ${installed:-none})"
  cargo install cargo-deny --version "$CARGO_DENY_VERSION" --locked
fi
cargo deny --version

# 2. Offline advisory database: the tool copies ../shared/advisory-db into a
#    git checkout under $DB_PATH (only when the copy changed) and prints the
#    db-path; it has to be the one deny.toml names. The copied files keep
#    shared/'s read-only modes and the tool replaces the checkout with `rm -rf`;
#    keep it writable so that (and `cargo clean`) works for non-root users too.
if [ -d "$DB_PATH" ]; then chmod -R u+w "$DB_PATH"; fi
printed="$("$advisory_tool" "$DB_PATH")"
chmod -R u+w "$DB_PATH"
configured="$(sed -n 's/^[[:space:]]*db-path[[:space:]]*=[[:space:]]*"\(.*\)".*$/\1/p' deny.toml)"
if [ "$printed" != "$configured" ]; then
  echo "supply-chain: advisory-db tool printed db-path '$printed' but deny.toml has '$configured'" >&2
  exit 2
fi
# cargo-deny's staleness check sees the time the tool made its commit, not the
# age of the data, so say how old the data really is.
newest="$(grep -rhoE '^date = "[0-9]{4}-[0-9]{2}-[0-9]{2}"' "$repo_root/../shared/advisory-db/crates" \
  | cut -d'"' -f2 | sort | tail -n 1 || true)"
echo "== advisory database: $printed (newest advisory dated ${newest:-unknown})"
if [ -n "$newest" ]; then
  age_days=$(( ($(date +%s) - $(date -d "$newest" +%s)) / 86400 ))
  if [ "$age_days" -gt 90 ]; then
    echo "warning: the newest advisory in ../shared/advisory-db is $age_days days old;" \
      "the copy needs refreshing (see docs/supply-chain.md)" >&2
  fi
fi

# 3. cargo-deny reads `cargo metadata`, which needs every locked crate's
#    manifest; fetch them (never changes Cargo.lock because of --locked).
cargo fetch --locked --quiet

# 4. All checks. --offline: no database fetch, no index update.
echo "== cargo deny check ${*:-(all)}"
cargo deny --locked --offline check "$@"

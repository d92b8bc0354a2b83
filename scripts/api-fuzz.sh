#!/usr/bin/env bash
# API fuzzing: checks the running service against docs/openapi.yaml with
# Schemathesis (property-based requests, valid and invalid, per operation).
#
#   scripts/api-fuzz.sh            (from any directory of a clone)
#
# What it does:
#   1. installs schemathesis==$SCHEMATHESIS_VERSION from PyPI, with its
#      dependencies pinned below, using `pip install --target` into
#      ${XDG_CACHE_HOME:-~/.cache}/macp-auth-service/ (python3 >= 3.11 and pip
#      only: no virtualenv, no root); later runs reuse it;
#   2. cargo build --locked (debug, so it reuses the `cargo test` build;
#      honours CARGO_TARGET_DIR) and starts the binary on a free 127.0.0.1
#      port with an ephemeral ES256 key and RUST_LOG=warn, waits for /healthz
#      and stops it on exit;
#   3. runs every Schemathesis check (server errors, status codes, content
#      types, response headers and bodies against the schemas, acceptance of
#      valid and rejection of invalid data, wrong methods and Allow, missing
#      required headers, auth) over the examples, coverage and fuzzing phases.
#
# The service is started with no client list, rate limit or other MACP_AUTH_*
# setting from the caller's environment, so the 401/403/429 paths are not
# exercised here (they are covered by the integration tests).
#
# Environment:
#   API_FUZZ_EXAMPLES    test cases per operation and phase (default 500;
#                        about 15 s of fuzzing on 2 cores)
#   API_FUZZ_SEED        Schemathesis seed (default 1, so a failure reproduces
#                        with the same command); set it empty for a random one
#   API_FUZZ_TIMEOUT     hard limit on the Schemathesis run, seconds (default 300)
#   API_FUZZ_REPORT_DIR  if set, also write JUnit XML and a HAR of every
#                        request and response there
#   PYTHON               the interpreter to install with and run (default python3)
#
# Exit status: 0 when every check passed; non-zero when a check failed or
# something could not run (install, build, service start).
set -euo pipefail

# Pinned: bump deliberately, re-run, and re-read the failures it reports.
SCHEMATHESIS_VERSION="4.32.5"
# Its dependencies, pinned too, so a seed generates the same requests on every
# machine (Hypothesis decides what gets generated).
CONSTRAINTS="\
anyio==4.16.0
certifi==2026.10.18
charset-normalizer==3.5.2
click==8.5.1
graphql-core==3.3.2
harfile==0.6.0
hypothesis==6.170.15
hypothesis-graphql==0.13.5
idna==3.20
iniconfig==2.3.1
jsonschema-rs==0.60.3
markdown-it-py==4.3.0
MarkupSafe==3.0.4
mdurl==0.1.2
packaging==26.3
pluggy==1.7.0
Pygments==2.21.0
pyrate-limiter==4.5.1
pytest==9.2.0
PyYAML==6.0.3
requests==2.34.2
rich==15.0.0
sortedcontainers==2.4.0
typing-extensions==4.16.0
urllib3==2.8.0
Werkzeug==3.1.9
"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

examples="${API_FUZZ_EXAMPLES:-500}"
seed="${API_FUZZ_SEED-1}"
run_timeout="${API_FUZZ_TIMEOUT:-300}"
python="${PYTHON:-python3}"

die() {
    echo "api-fuzz: $*" >&2
    exit 2
}

case "$examples" in '' | *[!0-9]* | 0*) die "API_FUZZ_EXAMPLES must be a positive integer (got '$examples')" ;; esac
case "$seed" in *[!0-9]*) die "API_FUZZ_SEED must be a non-negative integer or empty (got '$seed')" ;; esac
case "$run_timeout" in '' | *[!0-9]* | 0*) die "API_FUZZ_TIMEOUT must be a positive integer (got '$run_timeout')" ;; esac

command -v "$python" >/dev/null 2>&1 || die "$python not found"
py_version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "schemathesis $SCHEMATHESIS_VERSION needs Python 3.11 or newer; $python is $py_version (set PYTHON)"

workdir="$(mktemp -d "${TMPDIR:-/tmp}/api-fuzz.XXXXXX")"
server_pid=""

# shellcheck disable=SC2329 # invoked by the EXIT trap
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        local waited=0
        while kill -0 "$server_pid" 2>/dev/null && [ "$waited" -lt 50 ]; do
            sleep 0.2
            waited=$((waited + 1))
        done
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [ "$status" -ne 0 ] && [ -s "$workdir/service.log" ]; then
        echo "--- service log (last 40 lines)" >&2
        tail -n 40 "$workdir/service.log" >&2 || true
    fi
    rm -rf "$workdir"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 1. Schemathesis, installed once per version and Python minor version (the
#    --target directory holds compiled wheels for one interpreter).
st_dir="${XDG_CACHE_HOME:-$HOME/.cache}/macp-auth-service/schemathesis-${SCHEMATHESIS_VERSION}-py${py_version}"
if [ ! -f "$st_dir/schemathesis/cli/__main__.py" ]; then
    echo "== installing schemathesis==$SCHEMATHESIS_VERSION into $st_dir" >&2
    mkdir -p "$(dirname "$st_dir")"
    printf '%s' "$CONSTRAINTS" >"$workdir/constraints.txt"
    # Staged and renamed, so an interrupted install never looks complete.
    staging="$(mktemp -d "$st_dir.XXXXXX")"
    if ! PIP_ROOT_USER_ACTION=ignore "$python" -m pip install --quiet \
        --disable-pip-version-check --no-input --no-compile \
        --target "$staging" --constraint "$workdir/constraints.txt" \
        "schemathesis==${SCHEMATHESIS_VERSION}" >&2; then
        rm -rf "$staging"
        die "could not install schemathesis==$SCHEMATHESIS_VERSION from PyPI"
    fi
    rm -rf "$st_dir"
    mv "$staging" "$st_dir"
fi
# PYTHONPATH puts the --target directory first; -s and PYTHONNOUSERSITE keep
# the user's site-packages from shadowing the pinned set. Hypothesis keeps its
# Unicode tables there (building them takes ~10 s); no test-case database
# is kept (--generation-database none), so a seed always means the same run.
schemathesis=(env PYTHONPATH="$st_dir" PYTHONNOUSERSITE=1
    HYPOTHESIS_STORAGE_DIRECTORY="$st_dir/.hypothesis"
    "$python" -s -m schemathesis.cli)
"${schemathesis[@]}" --version

# 2. The service, built as `cargo test` builds it; cargo says where.
echo "== cargo build --locked" >&2
binary="$(cargo build --locked --message-format=json-render-diagnostics |
    "$python" -c '
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message.get("executable") \
            and message["target"]["name"] == "macp-auth-service":
        print(message["executable"])
')"
[ -x "$binary" ] || die "cargo build did not produce the macp-auth-service binary"

free_port() {
    "$python" -c '
import socket
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
'
}

# Polls /healthz until it answers 200 {"ok":true}; fails if the process exits
# or 30 s pass.
wait_healthy() {
    "$python" - "$1" "$2" <<'EOF'
import http.client, os, sys, time
port, pid = int(sys.argv[1]), int(sys.argv[2])
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit(1)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/healthz")
        reply = conn.getresponse()
        if reply.status == 200 and reply.read() == b'{"ok":true}':
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit(2)
EOF
}

# Only the settings named here; no MACP_AUTH_* from the caller's environment.
unset_args=()
for name in $(compgen -e); do
    case "$name" in MACP_AUTH_*) unset_args+=(-u "$name") ;; esac
done

# The free port can be taken between the probe and the bind: retry a few times.
for attempt in 1 2 3; do
    port="$(free_port)"
    env "${unset_args[@]}" HOST=127.0.0.1 PORT="$port" MACP_AUTH_SIGNING_ALG=ES256 RUST_LOG=warn \
        "$binary" >"$workdir/service.log" 2>&1 &
    server_pid=$!
    if wait_healthy "$port" "$server_pid"; then
        break
    fi
    if kill -0 "$server_pid" 2>/dev/null; then
        die "the service did not answer /healthz on 127.0.0.1:$port within 30 s"
    fi
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
    if [ "$attempt" -eq 3 ] || ! grep -q "cannot listen" "$workdir/service.log"; then
        die "the service exited before answering /healthz"
    fi
done
base_url="http://127.0.0.1:$port"
echo "== service up at $base_url (pid $server_pid)" >&2

# 3. Schemathesis. Run from the scratch directory: it keeps state
#    (.schemathesis/) in the working directory, which must not be the clone.
args=(
    run "$repo_root/docs/openapi.yaml"
    --url "$base_url"
    # Every check; the stateful ones (use_after_free, ensure_resource_availability)
    # have no links to follow here and pass trivially.
    --checks all
    --max-examples "$examples"
    --workers 1
    --request-timeout 10
    --generation-database none
    --continue-on-failure
    # No secret crosses this run (ephemeral key, no clients): show reproductions verbatim.
    --output-sanitize false
)
if [ -n "$seed" ]; then
    args+=(--seed "$seed")
fi
if [ -n "${API_FUZZ_REPORT_DIR:-}" ]; then
    mkdir -p "$API_FUZZ_REPORT_DIR"
    args+=(--report "junit,har" --report-dir "$(cd "$API_FUZZ_REPORT_DIR" && pwd)")
fi
if [ ! -t 1 ]; then
    args+=(--no-color)
fi

echo "== schemathesis ${args[*]}" >&2
status=0
# --foreground: Schemathesis stays in this process group, so Ctrl-C reaches it.
(cd "$workdir" && timeout --foreground --kill-after=10 "$run_timeout" \
    "${schemathesis[@]}" "${args[@]}") || status=$?
case "$status" in
    0) echo "api-fuzz: every check passed" >&2 ;;
    124 | 137) echo "api-fuzz: schemathesis did not finish within ${run_timeout} s" >&2 ;;
    *) echo "api-fuzz: schemathesis reported failures (exit $status)" >&2 ;;
esac
exit "$status"

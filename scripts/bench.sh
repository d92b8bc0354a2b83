#!/usr/bin/env bash
# One-command benchmark of macp-auth-service on this machine, over loopback.
#
#   scripts/bench.sh            (from any directory of a clone; needs root for apt-get)
#
# What it does, in about a minute and a half plus the release build:
#   1. installs wrk (apt-get) and openssl if missing; needs python3 and cargo;
#   2. cargo build --release --locked (honours CARGO_TARGET_DIR);
#   3. measures this machine's own signing limit with `openssl speed`
#      (RSA-2048 and ECDSA P-256, one process = one core, times nproc);
#   4. start-to-healthy: spawns the binary with a pinned RSA key ~10 times and
#      times spawn -> first 200 from /healthz (python3 socket loop);
#   5. loads 127.0.0.1 with wrk: RS256 and ES256 mints (RUST_LOG=warn, so
#      logging is not measured), both again with RUST_LOG=info (per-mint log
#      line to a file), JWKS GETs, and /healthz p99 while /tokens is
#      saturated (a light, paced probe load; and two connections flat out);
#      peak RSS from VmHWM; CPU split per service thread, wrk and the rest;
#   6. prints a table: figure, target, PASS/MISS, and ratio to the Node 20
#      TypeScript reference figures.
#
# Environment:
#   BENCH_DURATION     length of each wrk run (default 10s; 30, 30s or 1m)
#   BENCH_CONNECTIONS  wrk connections for mint and JWKS runs (default 16)
#   BENCH_STARTS       start-to-healthy repetitions (default 10)
#   REFERENCE_URL      optional base URL of a running reference service on
#                      loopback (e.g. http://127.0.0.1:3000); loaded the same
#                      way (mint, JWKS, /healthz under load) and compared
#
# Exit status: 0 when the benchmark ran (a MISS is a result, not an error);
# non-zero when something could not run (build, install, service start, wrk).
# All load goes to loopback; every run is bounded by BENCH_DURATION.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

# --- settings -----------------------------------------------------------------

die() {
    echo "bench: error: $*" >&2
    exit 1
}
say() { echo "bench: $*" >&2; }

# "10", "10s", "2m" -> whole seconds.
to_seconds() {
    [[ "$1" =~ ^([0-9]+)([smh]?)$ ]] || return 1
    case "${BASH_REMATCH[2]}" in
        m) echo "$((10#${BASH_REMATCH[1]} * 60))" ;;
        h) echo "$((10#${BASH_REMATCH[1]} * 3600))" ;;
        *) echo "$((10#${BASH_REMATCH[1]}))" ;;
    esac
}

DURATION_S="$(to_seconds "${BENCH_DURATION:-10s}")" ||
    die "BENCH_DURATION must be like 10, 10s or 1m (got '${BENCH_DURATION:-}')"
[ "$DURATION_S" -ge 3 ] || die "BENCH_DURATION must be at least 3s"
CONNS="${BENCH_CONNECTIONS:-16}"
[[ "$CONNS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_CONNECTIONS must be a positive integer (got '$CONNS')"
STARTS="${BENCH_STARTS:-10}"
[[ "$STARTS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_STARTS must be a positive integer (got '$STARTS')"
WRK_THREADS=2
[ "$CONNS" -ge "$WRK_THREADS" ] || WRK_THREADS="$CONNS"

REFERENCE_URL="${REFERENCE_URL:-}"
REFERENCE_URL="${REFERENCE_URL%/}"
if [ -n "$REFERENCE_URL" ]; then
    ref_host="${REFERENCE_URL#*://}"
    ref_host="${ref_host%%/*}"
    case "$ref_host" in
        \[::1\] | \[::1\]:*) ;;
        127.* | localhost | localhost:*) ;;
        *) die "REFERENCE_URL must point at loopback (127.0.0.1, localhost or [::1]); got '$REFERENCE_URL'" ;;
    esac
fi

# Figures of the TypeScript reference (Node 20, same kind of machine), and targets.
REF_RS256=1727
REF_ES256=3701
REF_JWKS=6203
REF_HEALTHZ_P99_MS=14.4
REF_RSS_MB=115
REF_START_MS=196
TARGET_RS256_FRACTION=0.85
TARGET_ES256=$((5 * REF_ES256))
TARGET_JWKS=$((8 * REF_JWKS))
TARGET_HEALTHZ_P99_MS=2
TARGET_RSS_MB=20
TARGET_START_MS=20

MINT_BODY='{"sender":"agent://bench","scopes":{"can_start_sessions":true},"ttl_seconds":300}'

# --- cleanup --------------------------------------------------------------------

WORKDIR="$(mktemp -d "${TMPDIR:-/tmp}/macp-bench.XXXXXX")"
PIDS=()

cleanup() {
    local rc=$? pid waited
    trap - EXIT INT TERM
    for pid in ${PIDS[@]+"${PIDS[@]}"}; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in ${PIDS[@]+"${PIDS[@]}"}; do
        waited=0
        while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 30 ]; do
            sleep 0.1
            waited=$((waited + 1))
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$WORKDIR"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

forget_pid() {
    local keep=() pid
    for pid in ${PIDS[@]+"${PIDS[@]}"}; do
        [ "$pid" = "$1" ] || keep+=("$pid")
    done
    PIDS=(${keep[@]+"${keep[@]}"})
}

# --- tools ------------------------------------------------------------------------

apt_install() {
    [ "$(id -u)" -eq 0 ] || die "$1 is missing and installing it needs root (apt-get install -y $1)"
    command -v apt-get >/dev/null || die "$1 is missing and apt-get is not available"
    say "installing $1 with apt-get"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" >"$WORKDIR/apt.log" 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$WORKDIR/apt.log" 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" >>"$WORKDIR/apt.log" 2>&1 ||
            { tail -20 "$WORKDIR/apt.log" >&2; die "apt-get install $1 failed"; }
    fi
}

command -v wrk >/dev/null || apt_install wrk
command -v openssl >/dev/null || apt_install openssl
command -v python3 >/dev/null || apt_install python3-minimal
command -v cargo >/dev/null || die "cargo is not on PATH"

# Helpers that need sockets, clocks or /proc parsing, in one python3 file.
cat >"$WORKDIR/helper.py" <<'PY'
import base64, json, os, signal, socket, statistics, subprocess, sys, time

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port

def http(port, method, path, body=b"", headers=None, timeout=5.0, host="127.0.0.1"):
    """One HTTP/1.1 request, connection closed after; returns (status, body)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(raw)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, rest

def startup(binary, runs):
    """Spawn the service `runs` times; ms from spawn to the first 200 on /healthz."""
    base_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOST": "127.0.0.1",
                "RUST_LOG": "warn", "MACP_AUTH_SIGNING_ALG": "RS256",
                "MACP_AUTH_SIGNING_KEY_JSON": os.environ["BENCH_KEY"]}
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    times = []
    for _ in range(runs):
        port = free_port()
        env = dict(base_env, PORT=str(port))
        t0 = time.perf_counter()
        proc = subprocess.Popen([binary, "serve"], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = t0 + 10.0
            elapsed = None
            while time.perf_counter() < deadline:
                s = socket.socket()
                try:
                    s.connect(("127.0.0.1", port))
                except OSError:
                    s.close()
                    if proc.poll() is not None:
                        err = proc.stderr.read().decode(errors="replace").strip()
                        sys.exit(f"service exited with {proc.returncode} during startup: {err}")
                    # A short nap rather than a pure spin: on 2 cores a spinning
                    # poller would steal the CPU the service is starting on.
                    time.sleep(0.0001)
                    continue
                s.settimeout(2.0)
                s.sendall(request)
                data = s.recv(64)
                s.close()
                if data.startswith(b"HTTP/1.1 200"):
                    elapsed = (time.perf_counter() - t0) * 1000.0
                    break
            if elapsed is None:
                sys.exit("service did not answer /healthz with 200 within 10 s")
            times.append(elapsed)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    print(f"{statistics.median(times):.2f} {min(times):.2f} {max(times):.2f} "
          + ",".join(f"{t:.1f}" for t in times))

def b64json(part):
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))

def sample(port, alg, body, n):
    """Mint n tokens one by one and check each is a 200 with a well-formed JWT
    whose header names `alg` and the JWKS kid; also JWKS and /healthz are 200."""
    status, jwks = http(port, "GET", "/.well-known/jwks.json")
    if status != 200:
        sys.exit(f"GET /.well-known/jwks.json answered {status}")
    kids = {k.get("kid") for k in json.loads(jwks)["keys"]}
    status, _ = http(port, "GET", "/healthz")
    if status != 200:
        sys.exit(f"GET /healthz answered {status}")
    for _ in range(n):
        status, reply = http(port, "POST", "/tokens", body.encode(),
                             {"content-type": "application/json"})
        if status != 200:
            sys.exit(f"POST /tokens answered {status}: {reply[:200]!r}")
        token = json.loads(reply)["token"]
        parts = token.split(".")
        header, claims = b64json(parts[0]), b64json(parts[1])
        if len(parts) != 3 or header.get("alg") != alg or header.get("kid") not in kids \
                or claims.get("sub") != "agent://bench":
            sys.exit(f"malformed token for {alg}: header={header} claims={claims}")
    print(f"{n} mints 200 with {alg} tokens, JWKS 200, healthz 200")

def ref_sample(base, body):
    """Status codes of one mint, JWKS and healthz on a reference service."""
    from urllib.parse import urlsplit
    u = urlsplit(base)
    port = u.port or 80
    out = []
    for method, path, b, h in (("POST", "/tokens", body.encode(), {"content-type": "application/json"}),
                               ("GET", "/.well-known/jwks.json", b"", None),
                               ("GET", "/healthz", b"", None)):
        status, _ = http(port, method, u.path.rstrip("/") + path, b, h, host=u.hostname)
        out.append(f"{method} {path} {status}")
        if status != 200:
            sys.exit("reference service: " + "; ".join(out))
    print("reference: " + "; ".join(out))

def cpusnap(pid):
    threads = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                s = f.read()
        except OSError:
            continue
        comm = s[s.index("(") + 1:s.rindex(")")]
        fields = s[s.rindex(")") + 2:].split()
        threads[tid] = [comm, int(fields[11]) + int(fields[12])]
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:]]
    idle = vals[3] + vals[4]
    total = sum(vals[:8])
    json.dump({"t": time.monotonic(), "threads": threads, "busy": total - idle,
               "irq": vals[5] + vals[6], "steal": vals[7], "total": total}, sys.stdout)

def cpudiff(before_path, after_path, wrk_time_path, label):
    """Cores used during a run: per service thread group, wrk (from bash's
    `time`), and the rest of the machine (kernel, other processes)."""
    before = json.load(open(before_path))
    after = json.load(open(after_path))
    hz = os.sysconf("SC_CLK_TCK")
    ncpu = os.cpu_count() or 1
    wall = after["t"] - before["t"]
    groups = {}
    per_thread = []
    for tid, (comm, ticks) in after["threads"].items():
        used = (ticks - before["threads"].get(tid, [comm, 0])[1]) / hz / wall
        if comm.startswith("macp-signer"):
            group = "macp-signer-*"
        elif comm.startswith("tokio-"):
            group = "tokio workers"
        else:
            group = "other threads"
        groups[group] = groups.get(group, 0.0) + used
        if used >= 0.005:
            per_thread.append(f"{comm}={used:.2f}")
    span = max(1, after["total"] - before["total"])
    busy = (after["busy"] - before["busy"]) / span * ncpu
    irq = (after["irq"] - before["irq"]) / span * ncpu
    steal = (after["steal"] - before["steal"]) / span * ncpu
    service = sum(groups.values())
    try:
        user, system = (float(x) for x in open(wrk_time_path).read().split()[:2])
        wrk = (user + system) / wall
    except (OSError, ValueError):
        wrk = float("nan")
    rest = max(0.0, busy - service - irq - steal - (0.0 if wrk != wrk else wrk))
    parts = ", ".join(f"{g} {groups.get(g, 0.0):.2f}"
                      for g in ("macp-signer-*", "tokio workers", "other threads"))
    print(f"  {label}: machine busy {busy:.2f} of {ncpu} cores = service {service:.2f} "
          f"({parts}) + wrk {wrk:.2f} + irq/softirq {irq:.2f} + steal {steal:.2f} "
          f"+ anything else {rest:.2f}")
    print(f"    per thread (cores): {' '.join(sorted(per_thread))}")
    # The caller flags runs where something else took a real share of the CPU.
    with open(after_path + ".rest", "w") as f:
        f.write(f"{rest + steal:.2f}\n")

def busy_cores(seconds):
    """Cores busy machine-wide over `seconds` (from /proc/stat), and the top
    processes by CPU in that window."""
    def procs():
        out = {}
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    st = f.read()
            except OSError:
                continue
            fields = st[st.rindex(")") + 2:].split()
            out[pid] = (st[st.index("(") + 1:st.rindex(")")], int(fields[11]) + int(fields[12]))
        return out
    def stat():
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
        return sum(vals[:8]) - vals[3] - vals[4], sum(vals[:8])
    p0, (b0, t0) = procs(), stat()
    time.sleep(seconds)
    p1, (b1, t1) = procs(), stat()
    ncpu = os.cpu_count() or 1
    busy = (b1 - b0) / max(1, t1 - t0) * ncpu
    hz = os.sysconf("SC_CLK_TCK")
    top = sorted(((ticks - p0.get(pid, (comm, 0))[1], comm) for pid, (comm, ticks) in p1.items()),
                 reverse=True)[:4]
    names = ", ".join(f"{comm} {ticks / hz / seconds:.2f}" for ticks, comm in top if ticks > 0)
    new = sorted({p1[pid][0] for pid in set(p1) - set(p0)})
    if new:
        names += f"; {len(set(p1) - set(p0))} processes started meanwhile: {' '.join(new[:6])}"
    print(f"{busy:.2f} {names or '-'}")

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "free-port":
        print(free_port())
    elif cmd == "startup":
        startup(args[0], int(args[1]))
    elif cmd == "sample":
        sample(int(args[0]), args[1], args[2], int(args[3]))
    elif cmd == "ref-sample":
        ref_sample(args[0], args[1])
    elif cmd == "cpusnap":
        cpusnap(args[0])
    elif cmd == "cpudiff":
        cpudiff(args[0], args[1], args[2], args[3])
    elif cmd == "busy":
        busy_cores(float(args[0]))
    elif cmd == "health":
        try:
            status, _ = http(int(args[0]), "GET", "/healthz", timeout=1.0)
        except OSError:
            sys.exit(1)
        sys.exit(0 if status == 200 else 1)
    else:
        sys.exit(f"unknown helper command {cmd}")
PY
helper() { python3 "$WORKDIR/helper.py" "$@"; }

cat >"$WORKDIR/mint.lua" <<LUA
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = '$MINT_BODY'
LUA
cat >"$WORKDIR/paced.lua" <<'LUA'
function delay()
   return 1
end
LUA

# --- build ------------------------------------------------------------------------

say "building: cargo build --release --locked"
cargo build --release --locked >&2
target_dir="$(cargo metadata --format-version 1 --no-deps --locked 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' 2>/dev/null)" ||
    target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
BIN="$target_dir/release/macp-auth-service"
[ -x "$BIN" ] || die "built binary not found at $BIN"
say "binary: $BIN"

NPROC="$(nproc)"

# --- machine signing limit ----------------------------------------------------------

# `openssl speed -mr` prints +F2:<n>:<bits>:<sign/s>:<verify/s> (RSA) and
# +F4:<n>:<bits>:<sign/s>:<verify/s> (ECDSA).
speed_sign_per_s() {
    local algo="$1" tag="$2" out
    out="$(openssl speed -mr -seconds 3 "$algo" 2>/dev/null)" || die "openssl speed $algo failed"
    awk -F: -v tag="$tag" '$1 == tag { print $4; found = 1 } END { exit !found }' <<<"$out" ||
        die "could not parse the sign/s figure of openssl speed $algo"
}
read -r BG_BUSY BG_TOP < <(helper busy 2) || BG_BUSY=0
BG_NOTE="machine busy ${BG_BUSY} cores just before the benchmark"
if awk -v b="$BG_BUSY" 'BEGIN { exit !(b > 0.25) }'; then
    BG_NOTE="WARNING: $BG_NOTE (top: $BG_TOP): something else is using the CPU, figures will be low"
    say "$BG_NOTE"
fi
say "measuring the signing limit: openssl speed -seconds 3 rsa2048 / ecdsap256 (one process = one core)"
RSA_CORE="$(speed_sign_per_s rsa2048 +F2)"
EC_CORE="$(speed_sign_per_s ecdsap256 +F4)"
RSA_MACHINE="$(awk -v a="$RSA_CORE" -v n="$NPROC" 'BEGIN { printf "%.0f", a * n }')"
EC_MACHINE="$(awk -v a="$EC_CORE" -v n="$NPROC" 'BEGIN { printf "%.0f", a * n }')"

# --- keys -----------------------------------------------------------------------------

"$BIN" keygen --alg RS256 --kid bench-rs256 >"$WORKDIR/rs256.jwk" || die "keygen RS256 failed"
"$BIN" keygen --alg ES256 --kid bench-es256 >"$WORKDIR/es256.jwk" || die "keygen ES256 failed"

# --- start to healthy -----------------------------------------------------------------------

say "start to healthy: $STARTS spawns with a pinned RS256 key, RUST_LOG=warn"
read -r START_MEDIAN START_BEST START_WORST START_ALL < <(
    BENCH_KEY="$(cat "$WORKDIR/rs256.jwk")" helper startup "$BIN" "$STARTS" || echo FAIL
)
[ "${START_MEDIAN:-FAIL}" != FAIL ] || die "start-to-healthy measurement failed"

# --- service lifecycle -----------------------------------------------------------------------

SVC_PID=""
SVC_PORT=""
# start_service ALG LOGLEVEL
start_service() {
    local alg="$1" log="$2" key i
    key="$(cat "$WORKDIR/$(echo "$alg" | tr 'A-Z' 'a-z').jwk")"
    SVC_PORT="$(helper free-port)"
    env -i PATH="$PATH" HOST=127.0.0.1 PORT="$SVC_PORT" RUST_LOG="$log" \
        MACP_AUTH_SIGNING_ALG="$alg" MACP_AUTH_SIGNING_KEY_JSON="$key" \
        "$BIN" serve >"$WORKDIR/service-$alg-$log.log" 2>&1 &
    SVC_PID=$!
    PIDS+=("$SVC_PID")
    for i in $(seq 1 200); do
        if ! kill -0 "$SVC_PID" 2>/dev/null; then
            tail -5 "$WORKDIR/service-$alg-$log.log" >&2
            die "the service ($alg, RUST_LOG=$log) exited during startup"
        fi
        helper health "$SVC_PORT" && break
        sleep 0.05
    done
    helper health "$SVC_PORT" || die "the service ($alg, RUST_LOG=$log) did not become healthy"
    helper sample "$SVC_PORT" "$alg" "$MINT_BODY" 20 >&2 || die "sample check failed ($alg)"
}

# Peak RSS (VmHWM) of the running service in kB.
vmhwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$SVC_PID/status"; }

stop_service() {
    local waited=0
    kill -TERM "$SVC_PID" 2>/dev/null || true
    while kill -0 "$SVC_PID" 2>/dev/null && [ "$waited" -lt 100 ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    kill -KILL "$SVC_PID" 2>/dev/null || true
    wait "$SVC_PID" 2>/dev/null || true
    forget_pid "$SVC_PID"
    SVC_PID=""
}

# --- wrk ---------------------------------------------------------------------------------------

# run_wrk NAME THREADS CONNS SECONDS URL [LUA]: output kept in $WORKDIR/NAME.wrk
run_wrk() {
    local name="$1" threads="$2" conns="$3" secs="$4" url="$5" lua="${6:-}"
    local args=(-t"$threads" -c"$conns" -d"${secs}s" --timeout 5s --latency)
    [ -z "$lua" ] || args+=(-s "$lua")
    # bash's `time` gives wrk's own CPU (user and system seconds) for the CPU split.
    local TIMEFORMAT='%U %S'
    { time wrk "${args[@]}" "$url" >"$WORKDIR/$name.wrk" 2>&1; } 2>"$WORKDIR/$name.time" ||
        { cat "$WORKDIR/$name.wrk" >&2; die "wrk run '$name' failed"; }
    grep -q '^Requests/sec:' "$WORKDIR/$name.wrk" ||
        { cat "$WORKDIR/$name.wrk" >&2; die "wrk run '$name' printed no Requests/sec"; }
}

# wrk_field NAME FIELD: rps | p50 | p75 | p90 | p99 (ms) | requests | non2xx | sockerr
wrk_field() {
    awk -v want="$2" '
        function ms(v) {
            if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
            if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
            if (v ~ /m$/)  return substr(v, 1, length(v) - 1) * 60000
            if (v ~ /s$/)  return substr(v, 1, length(v) - 1) * 1000
            return v + 0
        }
        /^Requests\/sec:/ { rps = $2 }
        $2 == "requests" && $3 == "in" { requests = $1 }
        /Non-2xx or 3xx responses:/ { non2xx = $NF }
        /Socket errors:/ { gsub(/,/, ""); sockerr = $4 + $6 + $8 + $10 }
        $1 == "50%" { p50 = ms($2) }
        $1 == "75%" { p75 = ms($2) }
        $1 == "90%" { p90 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        END {
            v["rps"] = rps; v["requests"] = requests; v["non2xx"] = non2xx + 0
            v["sockerr"] = sockerr + 0
            v["p50"] = p50; v["p75"] = p75; v["p90"] = p90; v["p99"] = p99
            print v[want]
        }' "$WORKDIR/$1.wrk"
}

errors_of() {
    local n s out rest=""
    n="$(wrk_field "$1" non2xx)"
    s="$(wrk_field "$1" sockerr)"
    if [ "$n" -eq 0 ] && [ "$s" -eq 0 ]; then out="0"; else out="non-2xx=$n sock=$s FLAG"; fi
    [ ! -f "$WORKDIR/$1.cpu1.rest" ] || rest="$(cat "$WORKDIR/$1.cpu1.rest")"
    if [ -n "$rest" ] && awk -v r="$rest" 'BEGIN { exit !(r > 0.25) }'; then
        out="$out; NOISY: $rest cores to other processes/steal"
    fi
    echo "$out"
}

# mint_run NAME BASE_URL [PID for CPU split]
mint_run() {
    local name="$1" base="$2" pid="${3:-}"
    run_wrk "$name-warmup" "$WRK_THREADS" "$CONNS" 1 "$base/tokens" "$WORKDIR/mint.lua"
    [ -z "$pid" ] || helper cpusnap "$pid" >"$WORKDIR/$name.cpu0"
    run_wrk "$name" "$WRK_THREADS" "$CONNS" "$DURATION_S" "$base/tokens" "$WORKDIR/mint.lua"
    [ -z "$pid" ] || helper cpusnap "$pid" >"$WORKDIR/$name.cpu1"
}

# healthz_under_load NAME BASE_URL [LUA]: mint wrk in the background at CONNS,
# and inside its window a /healthz wrk with 1 thread and 2 connections; with
# paced.lua each connection waits 1 ms between requests (a light probe load of
# at most ~2000 req/s), without it the 2 connections run closed-loop flat out.
healthz_under_load() {
    local name="$1" base="$2" lua="${3:-}" bg hz_secs=$((DURATION_S - 2))
    wrk -t"$WRK_THREADS" -c"$CONNS" -d"$((DURATION_S + 1))s" --timeout 5s --latency \
        -s "$WORKDIR/mint.lua" "$base/tokens" >"$WORKDIR/$name-mint.wrk" 2>&1 &
    bg=$!
    PIDS+=("$bg")
    sleep 1
    run_wrk "$name" 1 2 "$hz_secs" "$base/healthz" "$lua"
    wait "$bg" || { cat "$WORKDIR/$name-mint.wrk" >&2; die "background mint wrk ($name) failed"; }
    forget_pid "$bg"
}

# --- our service --------------------------------------------------------------------------------

LOAD_NOTE="wrk -t$WRK_THREADS -c$CONNS -d${DURATION_S}s --latency (1 s warm-up first), service RUST_LOG=warn unless stated"
say "load: $LOAD_NOTE"

say "RS256, RUST_LOG=warn: mint, JWKS, /healthz under mint saturation"
start_service RS256 warn
URL="http://127.0.0.1:$SVC_PORT"
mint_run rs256 "$URL" "$SVC_PID"
helper cpusnap "$SVC_PID" >"$WORKDIR/jwks.cpu0"
run_wrk jwks "$WRK_THREADS" "$CONNS" "$DURATION_S" "$URL/.well-known/jwks.json"
helper cpusnap "$SVC_PID" >"$WORKDIR/jwks.cpu1"
healthz_under_load healthz "$URL" "$WORKDIR/paced.lua"
healthz_under_load healthz-closed "$URL"
RSS_RS256_KB="$(vmhwm_kb)"
stop_service

say "RS256, RUST_LOG=info (per-mint log line written to a file): mint"
start_service RS256 info
mint_run rs256-info "http://127.0.0.1:$SVC_PORT" "$SVC_PID"
RSS_RS256_INFO_KB="$(vmhwm_kb)"
stop_service

say "ES256, RUST_LOG=warn: mint"
start_service ES256 warn
mint_run es256 "http://127.0.0.1:$SVC_PORT" "$SVC_PID"
RSS_ES256_KB="$(vmhwm_kb)"
stop_service

say "ES256, RUST_LOG=info: mint"
start_service ES256 info
mint_run es256-info "http://127.0.0.1:$SVC_PORT" "$SVC_PID"
RSS_ES256_INFO_KB="$(vmhwm_kb)"
stop_service

# --- reference service (optional) ---------------------------------------------------------------

if [ -n "$REFERENCE_URL" ]; then
    say "reference service at $REFERENCE_URL: mint, JWKS, /healthz under mint saturation"
    helper ref-sample "$REFERENCE_URL" "$MINT_BODY" >&2 || die "the reference service is not answering 200"
    mint_run ref-mint "$REFERENCE_URL"
    run_wrk ref-jwks "$WRK_THREADS" "$CONNS" "$DURATION_S" "$REFERENCE_URL/.well-known/jwks.json"
    healthz_under_load ref-healthz "$REFERENCE_URL" "$WORKDIR/paced.lua"
fi

# --- report ----------------------------------------------------------------------------------------

calc() { awk "BEGIN { printf \"$1\", $2 }"; }
verdict() { # verdict VALUE OP LIMIT
    if awk -v v="$1" -v l="$3" "BEGIN { exit !(v $2 l) }"; then echo PASS; else echo MISS; fi
}

RS_RPS="$(wrk_field rs256 rps)"
RS_FRAC="$(calc %.3f "$RS_RPS / $RSA_MACHINE")"
RS_TARGET_RPS="$(calc %.0f "$TARGET_RS256_FRACTION * $RSA_MACHINE")"
RSI_RPS="$(wrk_field rs256-info rps)"
ES_RPS="$(wrk_field es256 rps)"
ESI_RPS="$(wrk_field es256-info rps)"
JWKS_RPS="$(wrk_field jwks rps)"
HZ_P99="$(wrk_field healthz p99)"
HZ_MINT_RPS="$(wrk_field healthz-mint rps)"
RSS_MAX_KB="$(printf '%s\n' "$RSS_RS256_KB" "$RSS_RS256_INFO_KB" "$RSS_ES256_KB" "$RSS_ES256_INFO_KB" | sort -n | tail -1)"
RSS_WARN_KB="$(printf '%s\n' "$RSS_RS256_KB" "$RSS_ES256_KB" | sort -n | tail -1)"
RSS_MB="$(calc %.1f "$RSS_MAX_KB / 1024")"

row() { printf '%-32s %-26s %-27s %-6s %-15s %s\n' "$@"; }
rule() { printf '%s\n' "--------------------------------------------------------------------------------------------------------------------------"; }

echo
echo "== macp-auth-service benchmark: $(date -u '+%Y-%m-%d %H:%M:%SZ'), $(uname -m), nproc=$NPROC, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
echo "   commit $(git --no-optional-locks -C "$repo_root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git --no-optional-locks -C "$repo_root" diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)'); $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2); $(openssl version | cut -d' ' -f1-2)"
echo "   load: $LOAD_NOTE; all on 127.0.0.1, wrk shares the $NPROC cores"
echo "   $BG_NOTE"
echo
echo "Machine signing limit (openssl speed -seconds 3, one process = one core):"
printf '  RSA-2048  sign: %10.1f /s per core  x %s = %8s /s whole machine\n' "$RSA_CORE" "$NPROC" "$RSA_MACHINE"
printf '  ECDSA P-256 sign: %8.1f /s per core  x %s = %8s /s whole machine\n' "$EC_CORE" "$NPROC" "$EC_MACHINE"
echo
echo "Latency (ms, wrk, closed loop at $CONNS connections):"
for run in rs256 rs256-info es256 es256-info jwks healthz-mint healthz healthz-closed-mint healthz-closed; do
    printf '  %-14s p50 %7.3f  p90 %7.3f  p99 %7.3f   %9.0f req/s  requests %9s  errors %s\n' "$run" \
        "$(wrk_field $run p50)" "$(wrk_field $run p90)" "$(wrk_field $run p99)" "$(wrk_field $run rps)" \
        "$(wrk_field $run requests)" "$(errors_of $run)"
done
echo "  (healthz = /healthz at -t1 -c2 -d$((DURATION_S - 2))s, each connection pausing 1 ms between requests, while healthz-mint"
echo "   saturates /tokens at -c$CONNS; healthz-closed = the same without the pause, i.e. two closed-loop connections flat out)"
echo
echo "Where the CPU goes (cores used during each run, from /proc/<pid>/task/*/stat, /proc/stat and wrk's own time):"
for run in rs256 rs256-info es256 es256-info jwks; do
    helper cpudiff "$WORKDIR/$run.cpu0" "$WORKDIR/$run.cpu1" "$WORKDIR/$run.time" "$run"
done
echo
echo "Start to healthy ($STARTS spawns, pinned RS256 key, spawn -> first 200 on /healthz): median $START_MEDIAN ms, best $START_BEST ms, worst $START_WORST ms"
echo "  all: $START_ALL"
printf 'Peak RSS (VmHWM): RS256 warn %s kB, RS256 info %s kB, ES256 warn %s kB, ES256 info %s kB\n' \
    "$RSS_RS256_KB" "$RSS_RS256_INFO_KB" "$RSS_ES256_KB" "$RSS_ES256_INFO_KB"
printf 'Per-mint log line cost (RUST_LOG=info vs warn): RS256 %+.1f%% mints/s, ES256 %+.1f%% mints/s\n' \
    "$(calc %.4f "($RSI_RPS / $RS_RPS - 1) * 100")" "$(calc %.4f "($ESI_RPS / $ES_RPS - 1) * 100")"
echo
rule
row "figure" "measured" "target" "result" "vs reference" "errors"
rule
row "RS256 mints/s (c$CONNS)" "$(calc %.0f "$RS_RPS") = $RS_FRAC of $RSA_MACHINE" ">= $TARGET_RS256_FRACTION x limit ($RS_TARGET_RPS)" \
    "$(verdict "$RS_FRAC" '>=' "$TARGET_RS256_FRACTION")" "$(calc %.2f "$RS_RPS / $REF_RS256")x $REF_RS256" "$(errors_of rs256)"
row "ES256 mints/s (c$CONNS)" "$(calc %.0f "$ES_RPS")" ">= 5 x $REF_ES256 = $TARGET_ES256" \
    "$(verdict "$ES_RPS" '>=' "$TARGET_ES256")" "$(calc %.2f "$ES_RPS / $REF_ES256")x $REF_ES256" "$(errors_of es256)"
row "JWKS req/s (c$CONNS)" "$(calc %.0f "$JWKS_RPS")" ">= 8 x $REF_JWKS = $TARGET_JWKS" \
    "$(verdict "$JWKS_RPS" '>=' "$TARGET_JWKS")" "$(calc %.2f "$JWKS_RPS / $REF_JWKS")x $REF_JWKS" "$(errors_of jwks)"
row "/healthz p99 under mint load" "$(calc %.3f "$HZ_P99") ms (2 conns, paced)" "<= $TARGET_HEALTHZ_P99_MS ms" \
    "$(verdict "$HZ_P99" '<=' "$TARGET_HEALTHZ_P99_MS")" "$(calc %.1f "$REF_HEALTHZ_P99_MS / $HZ_P99")x lower" \
    "$(errors_of healthz); mint $(errors_of healthz-mint)"
row "peak RSS, all load (VmHWM)" "$RSS_MB MiB" "<= $TARGET_RSS_MB MB" \
    "$(verdict "$RSS_MB" '<=' "$TARGET_RSS_MB")" "$(calc %.1f "$REF_RSS_MB / $RSS_MB")x lower" "-"
row "start to healthy, median" "$START_MEDIAN ms (best $START_BEST)" "<= $TARGET_START_MS ms" \
    "$(verdict "$START_MEDIAN" '<=' "$TARGET_START_MS")" "$(calc %.1f "$REF_START_MS / $START_MEDIAN")x faster" "-"
rule
row "RS256 p50/p90/p99 ms" "$(calc %.2f "$(wrk_field rs256 p50)")/$(calc %.2f "$(wrk_field rs256 p90)")/$(calc %.2f "$(wrk_field rs256 p99)")" "-" "info" "-" "-"
row "ES256 p50/p90/p99 ms" "$(calc %.2f "$(wrk_field es256 p50)")/$(calc %.2f "$(wrk_field es256 p90)")/$(calc %.2f "$(wrk_field es256 p99)")" "-" "info" "-" "-"
row "RS256 mints/s, RUST_LOG=info" "$(calc %.0f "$RSI_RPS") ($(calc %+.1f "($RSI_RPS / $RS_RPS - 1) * 100")%)" "-" "info" "$(calc %.2f "$RSI_RPS / $REF_RS256")x $REF_RS256" "$(errors_of rs256-info)"
row "ES256 mints/s, RUST_LOG=info" "$(calc %.0f "$ESI_RPS") ($(calc %+.1f "($ESI_RPS / $ES_RPS - 1) * 100")%)" "-" "info" "$(calc %.2f "$ESI_RPS / $REF_ES256")x $REF_ES256" "$(errors_of es256-info)"
row "mint req/s during healthz test" "$(calc %.0f "$HZ_MINT_RPS")" "-" "info" "-" "$(errors_of healthz-mint)"
row "/healthz p99, 2 conns flat out" "$(calc %.3f "$(wrk_field healthz-closed p99)") ms at $(calc %.0f "$(wrk_field healthz-closed rps)")/s" "-" "info" \
    "$(calc %.1f "$REF_HEALTHZ_P99_MS / $(wrk_field healthz-closed p99)")x lower" "$(errors_of healthz-closed); mint $(errors_of healthz-closed-mint)"
row "mint req/s during that test" "$(calc %.0f "$(wrk_field healthz-closed-mint rps)")" "-" "info" "-" "$(errors_of healthz-closed-mint)"
row "peak RSS, RUST_LOG=warn runs" "$(calc %.1f "$RSS_WARN_KB / 1024") MiB" "-" "info" "-" "-"
rule
echo "vs reference: TypeScript reference on Node 20, same kind of machine (RS256 $REF_RS256/s at 16 connections, ES256 $REF_ES256/s,"
echo "JWKS $REF_JWKS/s, /healthz p99 $REF_HEALTHZ_P99_MS ms under mint saturation, RSS $REF_RSS_MB MB, start $REF_START_MS ms); throughput as ours/theirs, the rest as theirs/ours."
echo "errors: wrk's non-2xx responses and socket errors; FLAG marks a run that had any (its figure is suspect)."

if [ -n "$REFERENCE_URL" ]; then
    R_MINT="$(wrk_field ref-mint rps)"
    R_JWKS="$(wrk_field ref-jwks rps)"
    R_HZ="$(wrk_field ref-healthz p99)"
    R_HZ_MINT="$(wrk_field ref-healthz-mint rps)"
    echo
    echo "Measured against REFERENCE_URL=$REFERENCE_URL in this run (same wrk settings; its alg is whatever it was started with):"
    rule
    row "figure" "ours" "theirs" "" "ours/theirs" "errors (theirs)"
    rule
    row "mint/s (ours RS256)" "$(calc %.0f "$RS_RPS")" "$(calc %.0f "$R_MINT")" "" "$(calc %.2f "$RS_RPS / $R_MINT")x" "$(errors_of ref-mint)"
    row "mint p99 ms" "$(calc %.2f "$(wrk_field rs256 p99)")" "$(calc %.2f "$(wrk_field ref-mint p99)")" "" "$(calc %.2f "$(wrk_field rs256 p99) / $(wrk_field ref-mint p99)")x" "-"
    row "JWKS req/s" "$(calc %.0f "$JWKS_RPS")" "$(calc %.0f "$R_JWKS")" "" "$(calc %.2f "$JWKS_RPS / $R_JWKS")x" "$(errors_of ref-jwks)"
    row "/healthz p99 under mint load, ms" "$(calc %.3f "$HZ_P99")" "$(calc %.3f "$R_HZ")" "" "$(calc %.3f "$HZ_P99 / $R_HZ")x" "$(errors_of ref-healthz)"
    row "mint/s during healthz test" "$(calc %.0f "$HZ_MINT_RPS")" "$(calc %.0f "$R_HZ_MINT")" "" "$(calc %.2f "$HZ_MINT_RPS / $R_HZ_MINT")x" "$(errors_of ref-healthz-mint)"
    rule
fi

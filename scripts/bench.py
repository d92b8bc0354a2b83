#!/usr/bin/env python3
"""One-command benchmark of macp-auth-service over loopback, optionally side
by side with the TypeScript reference service in the same run.

    scripts/bench.py                                  # this service only
    scripts/bench.py --reference-dir ~/macp-auth-ref  # + an already-built reference
    scripts/bench.py --softhsm                        # + RS256/ES256 through SoftHSM2

What one run does (about three minutes plus the release build):
  1. builds the release binary (cargo build --release --locked);
  2. measures one bare signature three ways: `openssl speed` (one process,
     one core), the `sign/*` lines of `cargo bench --bench mint_path`, and,
     with a PKCS#11 module, a bare C_Sign loop (one session per core);
  3. times spawn -> first 200 on /healthz, each service with a pinned key;
  4. loads each service with the same wrk settings, one after the other:
     RS256 and ES256 mints, JWKS GETs, and /healthz probed while N
     connections saturate /tokens with no pause; reads CPU time (user+sys)
     and peak RSS of each service from /proc over each run;
  5. prints every figure with the date (UTC), machine and commit, and a
     Markdown fragment for docs/performance.md. Every ratio "this/reference"
     is computed from figures of this run.

The reference is never built here: pass a directory that already holds a
built checkout (`--reference-dir`, runs `node dist/index.js` in it), a
command (`--reference-cmd`), or the URL of one already running on loopback
(`--reference-url`, HTTP figures only). docs/performance.md says how to
obtain one. Without any of them the comparison is skipped with a reason.

Key-custody rows (issue 10) run when asked: `--pkcs11-module`/`--pkcs11-pin`
with object URIs, or `--softhsm` to make a throw-away SoftHSM2 token here;
`--kms-endpoint` (a KMS-compatible server on loopback) with key ids.

wrk is the load generator; the tiny Lua scripts it needs (request body,
pacing, a JSON summary) are generated into a temporary directory. All
traffic goes to 127.0.0.1; every load phase is bounded by --duration.
Exit status: 0 when the benchmark ran (a missed target is a result, not an
error); 1 when something could not run.
"""

from __future__ import annotations

import argparse
import base64
import http.client as httpclient
import json
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

REPO = Path(__file__).resolve().parent.parent

# The body every mint sends, here and in the micro-benchmarks.
MINT_BODY = '{"sender":"agent://bench","scopes":{"can_start_sessions":true},"ttl_seconds":300}'


def parse_args(argv: list[str]) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--duration", type=float, default=10.0, help="seconds per load phase (default 10)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up before each mint phase")
    p.add_argument("--connections", type=int, default=32, help="wrk connections for every load phase (default 32)")
    p.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    p.add_argument("--starts", type=int, default=10, help="spawns for start-to-healthy (default 10)")
    p.add_argument("--binary", help="use this macp-auth-service binary instead of building one")
    p.add_argument("--skip-cargo-bench", action="store_true", help="do not run cargo bench for the bare signature")
    p.add_argument("--no-log-variant", action="store_true", help="skip the extra RUST_LOG=warn mint runs")
    p.add_argument("--markdown", help="also write the Markdown fragment to this file")
    p.add_argument("--json", help="also write every figure as JSON to this file")
    g = p.add_argument_group("reference service (already built or running; never built here)")
    g.add_argument("--reference-dir", default=env("MACP_BENCH_REFERENCE_DIR"),
                   help="a built checkout of the reference; runs --reference-cmd in it [$MACP_BENCH_REFERENCE_DIR]")
    g.add_argument("--reference-cmd", default=env("MACP_BENCH_REFERENCE_CMD"),
                   help="command starting the reference (default with --reference-dir: node dist/index.js) "
                        "[$MACP_BENCH_REFERENCE_CMD]")
    g.add_argument("--reference-env", action="append", default=["NODE_ENV=production"], metavar="K=V",
                   help="extra environment for the reference (default NODE_ENV=production, as its Dockerfile)")
    g.add_argument("--reference-url", default=env("MACP_BENCH_REFERENCE_URL"),
                   help="a reference already running on loopback: HTTP figures only [$MACP_BENCH_REFERENCE_URL]")
    g = p.add_argument_group("PKCS#11 keys (issue 10; needs the pkcs11 backend in the service)")
    g.add_argument("--softhsm", action="store_true",
                   help="make a temporary SoftHSM2 token with an RSA-2048 and a P-256 key and use it")
    g.add_argument("--pkcs11-module", default=env("MACP_AUTH_PKCS11_MODULE"), help="PKCS#11 module path")
    g.add_argument("--pkcs11-pin", default=env("MACP_AUTH_PKCS11_PIN"), help="user PIN")
    g.add_argument("--pkcs11-rs256", metavar="URI",
                   help="RFC 7512 URI of the RSA key, e.g. pkcs11:token=macp;object=rs256")
    g.add_argument("--pkcs11-es256", metavar="URI", help="RFC 7512 URI of the P-256 key")
    g = p.add_argument_group("AWS KMS keys (issue 10; needs the aws-kms backend in the service)")
    g.add_argument("--kms-endpoint", help="KMS endpoint on loopback, e.g. a moto server: http://127.0.0.1:5000")
    g.add_argument("--kms-rs256", metavar="KEY", help="key id, ARN or alias/NAME of an RSA_2048 SIGN_VERIFY key")
    g.add_argument("--kms-es256", metavar="KEY", help="key id, ARN or alias/NAME of an ECC_NIST_P256 key")
    g.add_argument("--kms-region", default=env("AWS_REGION", "us-east-1"))
    g.add_argument("--moto", action="store_true",
                   help="start the test suite's moto KMS server (tests/integration/support/moto_server.py, "
                        "which honours MessageType DIGEST) with an RSA_2048 and an ECC_NIST_P256 key, and use it")
    args = p.parse_args(argv)
    check_args(p, args)
    return args


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.duration < 3:
        p.error("--duration must be at least 3 seconds")
    if args.connections < 1 or args.threads < 1 or args.starts < 1:
        p.error("--connections, --threads and --starts must be positive")
    args.threads = min(args.threads, args.connections)
    for flag, url in (("--reference-url", args.reference_url), ("--kms-endpoint", args.kms_endpoint)):
        if url and not is_loopback_url(url):
            p.error(f"{flag} must point at loopback (127.0.0.1, localhost or [::1]); got {url!r}")
    if args.reference_url and (args.reference_dir or args.reference_cmd):
        p.error("give either --reference-url or --reference-dir/--reference-cmd, not both")
    if args.reference_dir and not args.reference_cmd:
        args.reference_cmd = "node dist/index.js"
        if not (Path(args.reference_dir) / "dist" / "index.js").is_file():
            p.error(f"{args.reference_dir}/dist/index.js not found: the reference must already be built "
                    "(see docs/performance.md)")
    pkcs11_keys = args.pkcs11_rs256 or args.pkcs11_es256
    if pkcs11_keys and not args.softhsm and not (args.pkcs11_module and args.pkcs11_pin):
        p.error("--pkcs11-rs256/--pkcs11-es256 need --pkcs11-module and --pkcs11-pin")
    if args.moto and args.kms_endpoint:
        p.error("give either --moto or --kms-endpoint, not both")
    if args.kms_endpoint and not (args.kms_rs256 or args.kms_es256):
        p.error("--kms-endpoint needs --kms-rs256 and/or --kms-es256")


class BenchError(Exception):
    """Something could not run; the message says what."""


def say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


# --- machine, build and tools -----------------------------------------------------------

def run_text(argv: list[str], **kw) -> str:
    """Output of a short command, or "" when it cannot run."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, **kw).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info(repo: Path) -> dict:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    commit = run_text(["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"]) or "unknown"
    if run_text(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"]):
        commit += " (+ uncommitted changes)"
    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        "nproc": os.cpu_count() or 1,
        "cpu_model": cpu,
        "kernel": os.uname().release,
        "arch": os.uname().machine,
        "memory_gib": round(mem_kb / 1048576, 1),
        "commit": commit,
        "wrk": " ".join(run_text(["wrk", "--version"]).split()[:2]) or "wrk",
        "openssl": " ".join(run_text(["openssl", "version"]).split()[:2]),
        "node": run_text(["node", "--version"]) or None,
    }


def target_dir(repo: Path) -> Path:
    """Cargo's target directory (CARGO_TARGET_DIR and config honoured)."""
    meta = run_text(["cargo", "metadata", "--format-version", "1", "--no-deps", "--locked"], cwd=repo)
    return Path(json.loads(meta)["target_directory"]) if meta else repo / "target"


def build_release(repo: Path) -> str:
    say("building: cargo build --release --locked")
    if subprocess.run(["cargo", "build", "--release", "--locked"], cwd=repo,
                      stdout=sys.stderr).returncode != 0:
        raise BenchError("cargo build --release failed")
    binary = target_dir(repo) / "release" / "macp-auth-service"
    if not os.access(binary, os.X_OK):
        raise BenchError(f"built binary not found at {binary}")
    return str(binary)


def proc_stat_totals() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:9]]
    return sum(vals) - vals[3] - vals[4], sum(vals)


def busy_cores(seconds: float) -> tuple[float, str]:
    """Cores busy machine-wide over `seconds`, and the busiest processes."""
    def ticks_by_process() -> dict[str, tuple[str, int]]:
        out = {}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                comm, fields = read_stat(f"/proc/{pid}/stat")
            except OSError:
                continue
            out[pid] = (comm, int(fields[11]) + int(fields[12]))
        return out
    p0, (b0, t0) = ticks_by_process(), proc_stat_totals()
    time.sleep(seconds)
    p1, (b1, t1) = ticks_by_process(), proc_stat_totals()
    busy = (b1 - b0) / max(1, t1 - t0) * (os.cpu_count() or 1)
    top = sorted(((ticks - p0.get(pid, (comm, 0))[1], comm) for pid, (comm, ticks) in p1.items()),
                 reverse=True)[:4]
    hz = os.sysconf("SC_CLK_TCK")
    return busy, ", ".join(f"{comm} {t / hz / seconds:.2f}" for t, comm in top if t > 0) or "-"


def openssl_sign_per_s(algo: str) -> float:
    """Signatures per second of one core: `openssl speed -mr` prints
    +F2:<n>:<bits>:<sign/s>:<verify/s> for RSA and +F4:... for ECDSA."""
    tag = "+F2" if algo.startswith("rsa") else "+F4"
    out = run_text(["openssl", "speed", "-mr", "-seconds", "3", algo])
    for line in out.splitlines():
        parts = line.split(":")
        if parts[0] == tag and len(parts) >= 4:
            return float(parts[3])
    raise BenchError(f"could not read the sign/s figure of openssl speed {algo}")


def cargo_bench(repo: Path) -> dict[str, float]:
    """CPU ns/op of every micro-benchmark in benches/mint_path.rs."""
    env = dict(os.environ, MINT_BENCH_SECONDS=os.environ.get("MINT_BENCH_SECONDS", "1"))
    proc = subprocess.run(["cargo", "bench", "--locked", "--bench", "mint_path"], cwd=repo, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchError("cargo bench --bench mint_path failed:\n" + proc.stderr[-2000:])
    figures = {}
    for line in proc.stdout.splitlines():
        words = line.split()
        # "<name> <CPU> ns/op CPU <wall> ns/op wall ...": the CPU figure.
        if len(words) >= 4 and words[2] == "ns/op" and words[3] == "CPU":
            figures[words[0]] = float(words[1])
    if not {"sign/RS256", "sign/ES256"} <= figures.keys():
        raise BenchError("cargo bench printed no sign/RS256 and sign/ES256 lines")
    return figures


# --- processes and HTTP -----------------------------------------------------------------

def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url: str, method: str, path: str, body: bytes = b"", timeout: float = 5.0) -> tuple[int, bytes]:
    """One HTTP/1.1 request on its own connection; (status, body)."""
    u = urlsplit(url)
    conn = httpclient.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    try:
        headers = {"content-type": "application/json"} if method == "POST" else {}
        conn.request(method, u.path.rstrip("/") + path, body=body or None, headers=headers)
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def healthy(url: str) -> bool:
    try:
        return request(url, "GET", "/healthz", timeout=1.0)[0] == 200
    except OSError:
        return False


def b64json(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def sample_mints(url: str, alg: str | None, n: int) -> str:
    """Mints `n` tokens one by one; each must be a 200 with a JWT whose header
    names the expected alg and a kid from the JWKS. Returns the alg served."""
    status, jwks = request(url, "GET", "/.well-known/jwks.json")
    if status != 200:
        raise BenchError(f"{url}: GET /.well-known/jwks.json answered {status}")
    kids = {k.get("kid") for k in json.loads(jwks)["keys"]}
    served = None
    for _ in range(n):
        status, reply = request(url, "POST", "/tokens", MINT_BODY.encode())
        if status != 200:
            raise BenchError(f"{url}: POST /tokens answered {status}: {reply[:200]!r}")
        parts = json.loads(reply)["token"].split(".")
        header, claims = b64json(parts[0]), b64json(parts[1])
        served = header.get("alg")
        if len(parts) != 3 or (alg and served != alg) or header.get("kid") not in kids \
                or claims.get("sub") != "agent://bench":
            raise BenchError(f"{url}: unexpected token: header={header} claims={claims}")
    return served or ""


class Service:
    """A service process started for one phase, stopped (SIGTERM, then
    SIGKILL after 10 s) when the phase ends, whatever happens."""

    def __init__(self, argv: list[str], cwd: str | None, env: dict, port: int, log: Path):
        self.argv, self.cwd, self.env, self.log = argv, cwd, env, log
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Service":
        out = open(self.log, "wb")
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log.read_bytes()[-600:].decode(errors="replace")
                raise BenchError(f"{self.argv[0]} exited with {self.proc.returncode} at start: {tail}")
            if healthy(self.url):
                return self
            time.sleep(0.05)
        self.__exit__()
        raise BenchError(f"{self.argv[0]} did not answer /healthz within 20 s")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __exit__(self, *_exc) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def time_to_healthy(argv: list[str], cwd: str | None, env: dict) -> float:
    """ms from spawn to the first 200 on /healthz (a raw socket poll with a
    0.1 ms nap, so the poller does not steal the CPU the service starts on)."""
    port = int(env["PORT"])
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while time.perf_counter() - t0 < 20:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    s.sendall(request)
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        return (time.perf_counter() - t0) * 1000
            except OSError:
                if proc.poll() is not None:
                    raise BenchError(f"{argv[0]} exited with {proc.returncode} during start-up")
                time.sleep(0.0001)
        raise BenchError(f"{argv[0]} did not answer /healthz within 20 s")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def summary_ms(times: list[float]) -> dict:
    return {"median": statistics.median(times), "min": min(times), "max": max(times),
            "all": [round(t, 1) for t in times]}


# --- /proc ------------------------------------------------------------------------------

def read_stat(path: str) -> tuple[str, list[str]]:
    """(comm, fields after comm) of a /proc stat file; fields[11:13] = utime, stime."""
    with open(path) as f:
        text = f.read()
    return text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()


def cpu_snapshot(pid: int) -> dict:
    """Process CPU (user+sys, all threads, dead ones included) and, per live
    thread group, the signing threads' share."""
    _, fields = read_stat(f"/proc/{pid}/stat")
    signer = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            comm, tf = read_stat(f"/proc/{pid}/task/{tid}/stat")
        except OSError:
            continue
        if comm.startswith(("macp-signer", "macp-pkcs11")):
            signer += int(tf[11]) + int(tf[12])
    return {"t": time.monotonic(), "ticks": int(fields[11]) + int(fields[12]),
            "system_ticks": int(fields[12]), "signer": signer, "machine": proc_stat_totals()}


def cpu_delta(before: dict, after: dict, split: bool) -> dict:
    hz = os.sysconf("SC_CLK_TCK")
    wall = after["t"] - before["t"]
    busy = (after["machine"][0] - before["machine"][0]) / max(1, after["machine"][1] - before["machine"][1])
    out = {"seconds": (after["ticks"] - before["ticks"]) / hz, "wall": wall,
           "system_seconds": (after["system_ticks"] - before["system_ticks"]) / hz,
           "machine_cores": busy * (os.cpu_count() or 1)}
    if split:
        out["signer_seconds"] = (after["signer"] - before["signer"]) / hz
    return out


def memory_kb(pid: int) -> dict:
    found = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key = line.split(":", 1)[0]
            if key in ("VmHWM", "VmRSS"):
                found[key] = int(line.split()[1])
    return found


# --- wrk --------------------------------------------------------------------------------

# A done() callback that prints the summary as one JSON line, so nothing
# depends on wrk's human-readable layout. Latencies are in microseconds.
WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50":%.0f,"p90":%.0f,"p99":%.0f,"p999":%.0f,"max":%.0f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
"""


def write_wrk_scripts(work: Path) -> dict[str, str]:
    """The Lua scripts wrk needs: a JSON mint POST, a plain GET, and a GET
    whose connections pause 1 ms between requests (a probe, not a load)."""
    body = MINT_BODY.replace("\\", "\\\\").replace("'", "\\'")
    scripts = {
        "mint": f"wrk.method = 'POST'\nwrk.headers['Content-Type'] = 'application/json'\n"
                f"wrk.body = '{body}'\n",
        "get": "",
        "paced": "delay = function() return 1 end\n",
    }
    paths = {}
    for name, text in scripts.items():
        path = work / f"{name}.lua"
        path.write_text(text + WRK_DONE)
        paths[name] = str(path)
    return paths


def wrk_argv(url: str, seconds: float, script: str, conns: int, threads: int) -> list[str]:
    return ["wrk", f"-t{threads}", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--timeout", "5s",
            "-s", script, url]


def parse_wrk(output: str, argv: list[str]) -> dict:
    for line in output.splitlines():
        if line.startswith("WRKJSON "):
            raw = json.loads(line[len("WRKJSON "):])
            break
    else:
        raise BenchError(f"{' '.join(argv)} printed no summary:\n{output[-1500:]}")
    errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
    # With no completed request wrk reports zero latencies: keep them unknown.
    ms = {f"{k}_ms": raw[k] / 1000 if raw["requests"] else None for k in ("p50", "p90", "p99", "p999")}
    return {"rps": raw["requests"] / (raw["duration_us"] / 1e6), "requests": raw["requests"],
            "errors": errors, "non2xx": raw["status"], **ms}


def run_wrk(url: str, seconds: float, script: str, conns: int, threads: int) -> dict:
    """One bounded wrk run; adds wrk's own CPU (from wait4) and the whole
    machine's busy cores over the run, so a noisy run can be spotted."""
    argv = wrk_argv(url, seconds, script, conns, threads)
    m0, t0 = proc_stat_totals(), time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall, m1 = time.monotonic() - t0, proc_stat_totals()
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(argv)} failed:\n{output[-1500:]}")
    result = parse_wrk(output, argv)
    result["wrk_cores"] = (usage.ru_utime + usage.ru_stime) / wall
    result["machine_cores"] = (m1[0] - m0[0]) / max(1, m1[1] - m0[1]) * (os.cpu_count() or 1)
    return result


class BackgroundWrk:
    """A wrk run in the background for the length of a `with` block."""

    def __init__(self, url: str, seconds: float, script: str, conns: int, threads: int):
        self.argv = wrk_argv(url, seconds, script, conns, threads)
        self.proc: subprocess.Popen | None = None
        self.result: dict = {}

    def __enter__(self) -> "BackgroundWrk":
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return self

    def __exit__(self, exc_type, *_exc) -> None:
        assert self.proc is not None
        if exc_type is not None:
            self.proc.kill()
        output, _ = self.proc.communicate(timeout=120)
        if exc_type is None:
            if self.proc.returncode != 0:
                raise BenchError(f"{' '.join(self.argv)} failed:\n{output[-1500:]}")
            self.result = parse_wrk(output, self.argv)


# --- PKCS#11: a throw-away SoftHSM2 token and the bare C_Sign baseline -------------------

def parse_pkcs11_uri(uri: str) -> dict[str, str]:
    """The path attributes of an RFC 7512 URI (token, object, id, slot-id...)."""
    if not uri.startswith("pkcs11:"):
        raise BenchError(f"not a PKCS#11 URI: {uri!r}")
    path = uri[len("pkcs11:"):].split("?", 1)[0]
    return {k: unquote(v) for k, _, v in (part.partition("=") for part in path.split(";") if part)}


class SoftHsm:
    """A SoftHSM2 token in the run's temporary directory, with an RSA-2048
    key (object rs256) and a P-256 key (object es256) made by pkcs11-tool."""

    MODULES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
               "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so")

    def __init__(self, work: Path):
        for tool in ("softhsm2-util", "pkcs11-tool"):
            if not shutil.which(tool):
                raise BenchError(f"--softhsm needs {tool} (apt-get install softhsm2 opensc)")
        module = next((m for m in self.MODULES if os.path.exists(m)), None)
        if module is None:
            raise BenchError("--softhsm: libsofthsm2.so not found (apt-get install softhsm2)")
        self.module, self.pin, self.token = module, "123456", "macp-bench"
        tokens = work / "softhsm-tokens"
        tokens.mkdir()
        self.conf = str(work / "softhsm2.conf")
        Path(self.conf).write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
                                   "log.level = ERROR\n")
        env = dict(os.environ, SOFTHSM2_CONF=self.conf)
        self.run(["softhsm2-util", "--init-token", "--free", "--label", self.token,
                  "--so-pin", "12345678", "--pin", self.pin], env)
        for obj, kind, key_id in (("rs256", "rsa:2048", "01"), ("es256", "EC:prime256v1", "02")):
            self.run(["pkcs11-tool", "--module", module, "--token-label", self.token, "--login",
                      "--pin", self.pin, "--keypairgen", "--key-type", kind, "--label", obj,
                      "--id", key_id, "--usage-sign"], env)
        say(f"SoftHSM2 token {self.token} with RSA-2048 and P-256 keys in {tokens}")

    @staticmethod
    def run(argv: list[str], env: dict) -> None:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BenchError(f"{argv[0]} failed: {(proc.stderr or proc.stdout).strip()[-400:]}")

    def uri(self, alg: str) -> str:
        return f"pkcs11:token={self.token};object={alg.lower()}"


class MotoKms:
    """The test suite's moto KMS server (which honours MessageType DIGEST, see
    the comment in moto_server.py) on a free loopback port, with one RSA_2048
    and one ECC_NIST_P256 signing key created through boto3 with static test
    credentials; stopped when the block ends."""

    def __init__(self, repo: Path, region: str):
        self.script = repo / "tests" / "integration" / "support" / "moto_server.py"
        self.region = region
        self.keys: dict[str, str] = {}

    def __enter__(self) -> "MotoKms":
        env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                   AWS_REGION=self.region, AWS_EC2_METADATA_DISABLED="true")
        self.proc = subprocess.Popen([sys.executable, str(self.script)], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=env)
        line = self.proc.stdout.readline().split() if self.proc.stdout else []
        if len(line) != 2 or line[0] != "PORT":
            self.proc.kill()
            raise BenchError("moto_server.py did not start (pip install 'moto[server]==5.2.1')")
        self.endpoint = f"http://127.0.0.1:{line[1]}"
        try:
            import boto3  # only this optional phase needs it; moto[server] brings it
            kms = boto3.client("kms", endpoint_url=self.endpoint, region_name=self.region,
                               aws_access_key_id="testing", aws_secret_access_key="testing")
            for alg, spec in (("RS256", "RSA_2048"), ("ES256", "ECC_NIST_P256")):
                self.keys[alg] = kms.create_key(KeySpec=spec, KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
        except Exception as err:  # noqa: BLE001 - any failure here skips the KMS rows
            self.__exit__()
            raise BenchError(f"could not create the KMS keys in moto: {err}") from None
        return self

    def __exit__(self, *_exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def csign_baseline(module: str, pin: str, uri: str, alg: str, seconds: float, threads: int) -> dict:
    """The module's own signing rate for a threaded application: the
    `csign` example (examples/csign.rs) initialises the module for OS
    threads, logs in once and runs a bare C_Sign loop on one session per
    thread, as the service's signing threads do, with the same mechanisms
    (CKM_SHA256_RSA_PKCS over the message for RS256, CKM_ECDSA over a
    SHA-256 digest for ES256)."""
    attrs = parse_pkcs11_uri(uri)
    if "token" not in attrs or "object" not in attrs:
        raise BenchError(f"the C_Sign baseline needs token= and object= in the key URI: {uri}")
    build = ["cargo", "build", "--release", "--locked", "--example", "csign"]
    if subprocess.run(build, cwd=REPO, stdout=subprocess.DEVNULL).returncode != 0:
        raise BenchError("cargo build --example csign failed")
    binary = target_dir(REPO) / "release" / "examples" / "csign"
    argv = [str(binary), module, attrs["token"], attrs["object"], alg, str(seconds), str(threads)]
    try:
        out = subprocess.run(argv, env=dict(os.environ, CSIGN_PIN=pin), capture_output=True, text=True,
                             timeout=seconds + 60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise BenchError(f"the C_Sign loop could not run ({alg}): {err}") from None
    fields = dict(part.split("=", 1) for part in out.stdout.split()[1:] if "=" in part)
    if out.returncode != 0 or "signatures" not in fields:
        raise BenchError(f"the C_Sign loop failed ({alg}, {uri}): {out.stderr.strip()[:200]}")
    return {"sessions": threads, "signatures": int(fields["signatures"]),
            "per_s": float(fields["rate"])}


# --- report -----------------------------------------------------------------------------

def ratio(ours: float | None, theirs: float | None) -> str:
    return f"{ours / theirs:.2f}×" if ours and theirs else "—"


class Report:
    """Text details and the Markdown fragment, from `Bench.results`."""

    def __init__(self, results: dict, args: argparse.Namespace):
        self.r, self.args = results, args
        self.runs = results["runs"]

    def run(self, subject: str, alg: str, phase: str) -> dict:
        return self.runs.get(subject, {}).get(alg, {}).get(phase, {})

    def per_mint_us(self, subject: str, alg: str, key: str = "seconds") -> float | None:
        return self.per_request_us(subject, alg, "mint", key)

    def per_request_us(self, subject: str, alg: str, phase: str, key: str = "seconds") -> float | None:
        run = self.run(subject, alg, phase)
        cpu = run.get("cpu", {})
        if key not in cpu or not run.get("requests"):
            return None
        return cpu[key] / run["requests"] * 1e6

    def header(self) -> str:
        m = self.r["machine"]
        return (f"Measured {m['date_utc']} on {m['nproc']} × {m['cpu_model']} ({m['arch']}, "
                f"{m['memory_gib']} GiB, Linux {m['kernel']}), commit {m['commit']}; {m['wrk']}, "
                f"{m['openssl']}" + (f", Node {m['node']}" if m.get("node") else "") +
                f". Load: wrk -t{self.args.threads} -c{self.args.connections}, {self.args.duration:.0f} s per "
                f"phase after {self.args.warmup:.0f} s of warm-up, everything on 127.0.0.1 sharing the "
                f"{m['nproc']} cores with wrk.")

    def markdown(self) -> str:
        parts = [self.header(), "", self.comparison_table(), "", self.efficiency_table()]
        custody = self.custody_table()
        if custody:
            parts += ["", custody]
        return "\n".join(parts)

    def comparison_table(self) -> str:
        c = self.args.connections
        rows = ["| figure | macp-auth-service | reference | this / reference |", "|---|---|---|---|"]

        def row(label: str, ours, theirs, fmt: str, r=True) -> None:
            def show(v: float | None) -> str:
                return fmt.format(v) if v is not None else "—"
            rows.append(f"| {label} | {show(ours)} | {show(theirs)} | {ratio(ours, theirs) if r else '—'} |")
        for alg in ("RS256", "ES256"):
            o, t = self.run("ours", alg, "mint"), self.run("reference", alg, "mint")
            row(f"{alg} mints/s ({c} connections)", o.get("rps"), t.get("rps"), "{:.0f}")
            rows.append(f"| {alg} mint p50 / p99 ms | {self.pair(o)} | {self.pair(t)} | "
                        f"{ratio(o.get('p50_ms'), t.get('p50_ms'))} / "
                        f"{ratio(o.get('p99_ms'), t.get('p99_ms'))} |")
            row(f"CPU per {alg} mint, µs (user+sys)", self.per_mint_us("ours", alg),
                self.per_mint_us("reference", alg), "{:.0f}")
        o, t = self.run("ours", "RS256", "jwks"), self.run("reference", "RS256", "jwks")
        row(f"JWKS req/s ({c} connections)", o.get("rps"), t.get("rps"), "{:.0f}")
        o, t = self.run("ours", "RS256", "healthz"), self.run("reference", "RS256", "healthz")
        row(f"`/healthz` p99 ms, {c} connections saturating RS256 `/tokens`", o.get("p99_ms"),
            t.get("p99_ms"), "{:.2f}")
        row("mints/s meanwhile", o.get("saturating_mints", {}).get("rps"),
            t.get("saturating_mints", {}).get("rps"), "{:.0f}")
        row("peak RSS MiB (VmHWM, largest instance)", self.peak_rss("ours"), self.peak_rss("reference"), "{:.1f}")
        st = self.r.get("startup_ms", {})
        row(f"spawn to healthy ms, median of {self.args.starts}", st.get("ours", {}).get("median"),
            st.get("reference", {}).get("median"), "{:.1f}")
        for alg in ("RS256", "ES256"):
            w = self.run("ours-warn", alg, "mint")
            if w:
                row(f"{alg} mints/s, this service at RUST_LOG=warn (no audit line)", w.get("rps"), None,
                    "{:.0f}", r=False)
        return "\n".join(rows)

    @staticmethod
    def pair(run: dict) -> str:
        if not run or run.get("p50_ms") is None:
            return "—"
        return f"{run['p50_ms']:.2f} / {run['p99_ms']:.2f}"

    def peak_rss(self, subject: str) -> float | None:
        peaks = [phases.get("memory", {}).get("VmHWM", 0) for phases in self.runs.get(subject, {}).values()]
        return max(peaks) / 1024 if peaks and max(peaks) else None

    def efficiency_table(self) -> str:
        speed, micro = self.r.get("openssl", {}), self.r.get("cargo_bench", {})
        rows = ["| per mint, this service | RS256 | ES256 |", "|---|---|---|"]

        def line(label: str, values: list[float | None], fmt: str) -> None:
            rows.append(f"| {label} | " + " | ".join(fmt.format(v) if v is not None else "—" for v in values) + " |")
        algs = ("RS256", "ES256")
        cpu = [self.per_mint_us("ours", a) for a in algs]
        signer = [self.per_mint_us("ours", a, "signer_seconds") for a in algs]
        bare = [micro.get(f"sign/{a}", 0) / 1000 or None for a in algs]
        ossl = [1e6 / speed[a] if speed.get(a) else None for a in algs]
        line("service CPU per mint, µs (user+sys over the run / mints)", cpu, "{:.1f}")
        system = [self.per_mint_us("ours", a, "system_seconds") for a in algs]
        line("… of which system time (sockets, wake-ups, and on loopback the load generator's "
             "receive path), µs", system, "{:.1f}")
        line("… of which signing threads, µs", signer, "{:.1f}")
        line("… of which everything else (HTTP, JSON, hand-offs, log; for keys signed on the async worker, "
             "ES256, also the signature), µs",
             [c - s if c is not None and s is not None else None for c, s in zip(cpu, signer)], "{:.1f}")
        line("one bare signature, `cargo bench` (`sign/<alg>`, CPU time), µs", bare, "{:.1f}")
        line("one bare signature, `openssl speed` (1 core), µs", ossl, "{:.1f}")
        line("CPU per mint ÷ bare signature (`cargo bench`)",
             [c / b if c and b else None for c, b in zip(cpu, bare)], "{:.2f}×")
        line("CPU per mint ÷ bare signature (`openssl speed`)",
             [c / o if c and o else None for c, o in zip(cpu, ossl)], "{:.2f}×")
        line("non-crypto CPU per mint (CPU per mint − `cargo bench` signature), µs",
             [c - b if c and b else None for c, b in zip(cpu, bare)], "{:.1f}")
        router = [micro.get(f"router/mint-{a}") for a in algs]
        line("in-process mint through the router, no socket (`cargo bench`, CPU time), µs",
             [v / 1000 if v else None for v in router], "{:.1f}")
        # The HTTP floor: what the cheapest request costs this service over the
        # same sockets, to read the non-crypto CPU of a mint against.
        floor = self.per_request_us("ours", "RS256", "jwks")
        floor_sys = self.per_request_us("ours", "RS256", "jwks", "system_seconds")
        if floor is not None and floor_sys is not None:
            rows += ["", f"For scale, from the JWKS phase of the same run: one `GET /.well-known/jwks.json` "
                         f"(no body, answered from memory) cost this service {floor:.1f} µs of CPU at full load, "
                         f"{floor_sys:.1f} µs of it system time."]
        return "\n".join(rows)

    def custody_table(self) -> str:
        csign = self.r.get("csign", {})
        rows = []
        for subject, label in (("ours", "in-process key"), ("pkcs11", "PKCS#11"), ("aws-kms", "AWS KMS")):
            for alg in ("RS256", "ES256"):
                m = self.run(subject, alg, "mint")
                if not m or (subject == "ours" and not any(s in self.runs for s in ("pkcs11", "aws-kms"))):
                    continue
                base = csign.get(alg, {}).get("per_s") if subject == "pkcs11" else None
                rows.append(f"| {label} | {alg} | {m['rps']:.0f} | {self.pair(m)} | "
                            f"{self.per_mint_us(subject, alg) or 0:.0f} | "
                            f"{f'{base:.0f}' if base else '—'} | {ratio(m['rps'], base) if base else '—'} |")
        if not rows:
            return ""
        head = ("| key | alg | mints/s | p50 / p99 ms | CPU µs per mint | bare C_Sign/s, one session per core "
                "| mints ÷ C_Sign |")
        return "\n".join([head, "|---|---|---|---|---|---|---|"] + rows)

    def text(self) -> str:
        out = ["", "== macp-auth-service benchmark", self.header(), ""]
        out.append(f"background load before the run: {self.r.get('background_busy_cores', 0):.2f} cores")
        for alg, rate in self.r.get("openssl", {}).items():
            out.append(f"openssl speed {alg}: {rate:.1f} signatures/s on one core ({1e6 / rate:.1f} µs each)")
        for name, ns in self.r.get("cargo_bench", {}).items():
            out.append(f"cargo bench {name:<28} {ns:>12.1f} ns/op")
        for name, st in self.r.get("startup_ms", {}).items():
            out.append(f"spawn to healthy, {name}: median {st['median']:.1f} ms, best {st['min']:.1f}, "
                       f"worst {st['max']:.1f} ({st['all']})")
        for alg, base in self.r.get("csign", {}).items():
            out.append(f"bare C_Sign {alg}: {base['per_s']:.0f}/s over {base['sessions']} sessions")
        out.append("")
        for subject, algs in self.runs.items():
            for alg, phases in algs.items():
                for phase, run in phases.items():
                    out.append(self.run_line(subject, alg, phase, run))
        out += [""] + [f"note: {n}" for n in self.r["notes"]]
        return "\n".join(out)

    @staticmethod
    def run_line(subject: str, alg: str, phase: str, run: dict) -> str:
        head = f"{subject:<10} {alg} {phase:<8}"
        if phase == "memory":
            return f"{head} VmHWM {run.get('VmHWM', 0)} kB, VmRSS {run.get('VmRSS', 0)} kB"
        lat = "  ".join(f"{k} {run[f'{k}_ms']:.3f}" if run[f"{k}_ms"] is not None else f"{k} -"
                        for k in ("p50", "p90", "p99", "p999"))
        line = (f"{head} {run['rps']:9.0f} req/s  {lat} ms  requests {run['requests']}  "
                f"errors {run['errors']}{' FLAG' if run['errors'] else ''}  wrk {run['wrk_cores']:.2f} cores, "
                f"machine {run['machine_cores']:.2f} cores")
        if "cpu" in run:
            cpu = run["cpu"]
            line += f"; service {cpu['seconds'] / cpu['wall']:.2f} cores"
            if "signer_seconds" in cpu:
                line += f" (signing threads {cpu['signer_seconds'] / cpu['wall']:.2f})"
        if "saturating_mints" in run:
            s = run["saturating_mints"]
            line += f"; meanwhile /tokens {s['rps']:.0f} req/s, errors {s['errors']}"
        return line


@dataclass
class Subject:
    """One way of running a service: ours or the reference, one key source."""

    name: str                 # key in the results, e.g. "ours", "reference", "pkcs11"
    label: str                # what the report calls it
    argv: list[str] | None    # None: already running at `url`
    cwd: str | None = None
    base_env: dict[str, str] = field(default_factory=dict)
    url: str | None = None
    split_threads: bool = False   # report signing threads apart (ours)


class Bench:
    """Runs the phases and collects figures into `self.results`."""

    def __init__(self, args: argparse.Namespace, work: Path):
        self.args = args
        self.work = work
        self.results: dict = {"runs": {}, "notes": []}
        self.scripts = write_wrk_scripts(work)
        self.keys: dict[str, str] = {}
        self.binary = ""

    # --- preparation -----------------------------------------------------------------

    def prepare(self) -> None:
        for tool, package in (("wrk", "wrk"), ("openssl", "openssl")):
            if not shutil.which(tool):
                sys.exit(f"bench: {tool} is not installed (apt-get install {package})")
        self.binary = self.args.binary or build_release(REPO)
        for alg in ("RS256", "ES256"):
            out = subprocess.run([self.binary, "keygen", "--alg", alg, "--kid", f"bench-{alg.lower()}"],
                                 check=True, capture_output=True, text=True)
            self.keys[alg] = out.stdout.strip()
        self.results["machine"] = machine_info(REPO)
        busy, top = busy_cores(2.0)
        self.results["background_busy_cores"] = busy
        if busy > 0.25:
            self.note(f"WARNING: {busy:.2f} cores busy before the run ({top}); figures will be low")

    def note(self, text: str) -> None:
        text = " ".join(text.split())
        say(text)
        self.results["notes"].append(text)

    def subjects(self) -> list[Subject]:
        ours = Subject("ours", "macp-auth-service", [self.binary, "serve"], split_threads=True)
        found = [ours]
        a = self.args
        if a.reference_cmd:
            extra = dict(kv.split("=", 1) for kv in a.reference_env if "=" in kv)
            found.append(Subject("reference", "reference (TypeScript)", shlex.split(a.reference_cmd),
                                 cwd=a.reference_dir, base_env=extra))
        elif a.reference_url:
            found.append(Subject("reference", "reference (TypeScript, already running)", None,
                                 url=a.reference_url.rstrip("/")))
        else:
            self.note("no reference given (--reference-dir, --reference-cmd or --reference-url): "
                      "comparison skipped, ratios left blank")
        return found

    # --- signature baselines ---------------------------------------------------------

    def baselines(self) -> None:
        say("openssl speed -seconds 3 rsa2048 / ecdsap256 (one process, one core)")
        self.results["openssl"] = {
            "RS256": openssl_sign_per_s("rsa2048"),
            "ES256": openssl_sign_per_s("ecdsap256"),
        }
        if self.args.skip_cargo_bench:
            self.note("cargo bench skipped (--skip-cargo-bench)")
            return
        say("cargo bench --bench mint_path")
        self.results["cargo_bench"] = cargo_bench(REPO)

    # --- start to healthy ------------------------------------------------------------

    def startups(self, subjects: list[Subject]) -> None:
        for s in subjects:
            if s.argv is None:
                continue
            say(f"start to healthy, {s.label}: {self.args.starts} spawns")
            times = [time_to_healthy(s.argv, s.cwd, self.env_for(s, "RS256", free_port()))
                     for _ in range(self.args.starts)]
            self.results.setdefault("startup_ms", {})[s.name] = summary_ms(times)

    def env_for(self, s: Subject, alg: str, port: int, key_json: str | None = None) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
               "HOST": "127.0.0.1", "PORT": str(port), "MACP_AUTH_SIGNING_ALG": alg,
               "MACP_AUTH_SIGNING_KEY_JSON": key_json or self.keys[alg]}
        env.update(s.base_env)
        return env

    # --- load ------------------------------------------------------------------------

    def load_all(self, subjects: list[Subject]) -> None:
        for alg in ("RS256", "ES256"):
            for s in subjects:
                self.load_subject(s, alg, log="info", full=(alg == "RS256"))
            if not self.args.no_log_variant:
                self.load_subject(subjects[0], alg, log="warn", full=False, run_name="ours-warn")

    def load_subject(self, s: Subject, alg: str, log: str, full: bool, run_name: str | None = None,
                     key_json: str | None = None) -> None:
        name = run_name or s.name
        if s.argv is None:
            self.load_running(s, alg, full)
            return
        port = free_port()
        env = self.env_for(s, alg, port, key_json)
        if s.name != "reference":
            env["RUST_LOG"] = log
        logging = f" (RUST_LOG={env['RUST_LOG']})" if "RUST_LOG" in env else ""
        say(f"{s.label} {alg}{logging}: load")
        log_path = self.work / f"{name}-{alg}.log"
        with Service(s.argv, s.cwd, env, port, log_path) as svc:
            sample_mints(svc.url, alg, n=20)
            runs = self.results["runs"].setdefault(name, {}).setdefault(alg, {})
            runs["mint"] = self.mint_phase(svc.url, svc.pid, s.split_threads)
            if full:
                runs["jwks"] = self.jwks_phase(svc.url, svc.pid)
                runs["healthz"] = self.healthz_phase(svc.url)
            runs["memory"] = memory_kb(svc.pid)

    def load_running(self, s: Subject, alg: str, full: bool) -> None:
        served = sample_mints(s.url, None, n=5)
        if served != alg:
            return
        runs = self.results["runs"].setdefault(s.name, {}).setdefault(alg, {})
        runs["mint"] = self.mint_phase(s.url, None, False)
        if full:
            runs["jwks"] = self.jwks_phase(s.url, None)
            runs["healthz"] = self.healthz_phase(s.url)

    def wrk(self, url: str, seconds: float, script: str, conns: int | None = None,
            threads: int | None = None) -> dict:
        return run_wrk(url, seconds, self.scripts[script],
                           conns or self.args.connections, threads or self.args.threads)

    def mint_phase(self, url: str, pid: int | None, split: bool) -> dict:
        self.wrk(url + "/tokens", self.args.warmup, "mint")
        before = cpu_snapshot(pid) if pid else None
        result = self.wrk(url + "/tokens", self.args.duration, "mint")
        if before:
            result["cpu"] = cpu_delta(before, cpu_snapshot(pid), split)
        return result

    def jwks_phase(self, url: str, pid: int | None) -> dict:
        before = cpu_snapshot(pid) if pid else None
        result = self.wrk(url + "/.well-known/jwks.json", self.args.duration, "get")
        if before:
            result["cpu"] = cpu_delta(before, cpu_snapshot(pid), False)
        return result

    def healthz_phase(self, url: str) -> dict:
        """/healthz from 2 paced connections (1 ms pause each) while
        --connections saturate /tokens with no pause."""
        d = self.args.duration
        with BackgroundWrk(url + "/tokens", d + 2, self.scripts["mint"],
                               self.args.connections, self.args.threads) as saturating:
            time.sleep(1.0)
            probe = self.wrk(url + "/healthz", d - 1, "paced", conns=2, threads=1)
        probe["saturating_mints"] = saturating.result
        return probe

    # --- key custody -----------------------------------------------------------------

    def custody(self) -> None:
        a = self.args
        if a.softhsm:
            hsm = SoftHsm(self.work)
            a.pkcs11_module, a.pkcs11_pin = hsm.module, hsm.pin
            a.pkcs11_rs256, a.pkcs11_es256 = hsm.uri("RS256"), hsm.uri("ES256")
            os.environ["SOFTHSM2_CONF"] = hsm.conf
        if a.pkcs11_module and (a.pkcs11_rs256 or a.pkcs11_es256):
            self.pkcs11_rows()
        else:
            self.note("PKCS#11 rows skipped: no --softhsm or --pkcs11-module/--pkcs11-pin/--pkcs11-<alg>")
        if a.moto:
            try:
                with MotoKms(REPO, a.kms_region) as moto:
                    a.kms_endpoint, a.kms_rs256, a.kms_es256 = moto.endpoint, moto.keys["RS256"], moto.keys["ES256"]
                    self.kms_rows()
            except BenchError as err:
                self.note(f"AWS KMS rows skipped: {err}")
        elif a.kms_endpoint:
            self.kms_rows()
        else:
            self.note("AWS KMS rows skipped: no --moto or --kms-endpoint")

    def pkcs11_rows(self) -> None:
        a = self.args
        env = {"MACP_AUTH_PKCS11_MODULE": a.pkcs11_module, "MACP_AUTH_PKCS11_PIN": a.pkcs11_pin}
        if os.environ.get("SOFTHSM2_CONF"):
            env["SOFTHSM2_CONF"] = os.environ["SOFTHSM2_CONF"]
        s = Subject("pkcs11", "macp-auth-service, PKCS#11 key", [self.binary, "serve"],
                    base_env=env, split_threads=True)
        for alg, uri in (("RS256", a.pkcs11_rs256), ("ES256", a.pkcs11_es256)):
            if not uri:
                continue
            say(f"bare C_Sign loop, {alg}, one thread and one session per core")
            try:
                base = csign_baseline(a.pkcs11_module, a.pkcs11_pin, uri, alg, a.duration,
                                      os.cpu_count() or 1)
                self.results.setdefault("csign", {})[alg] = base
            except BenchError as err:
                self.note(f"bare C_Sign loop {alg} could not be measured: {err}")
            member = json.dumps({"kid": f"hsm-{alg.lower()}", "alg": alg, "pkcs11": uri})
            self.custody_run(s, alg, member)

    def kms_rows(self) -> None:
        a = self.args
        env = {"AWS_ENDPOINT_URL": a.kms_endpoint, "AWS_REGION": a.kms_region,
               "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
               "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
               "AWS_EC2_METADATA_DISABLED": "true"}
        s = Subject("aws-kms", "macp-auth-service, AWS KMS key", [self.binary, "serve"],
                    base_env=env, split_threads=True)
        for alg, key in (("RS256", a.kms_rs256), ("ES256", a.kms_es256)):
            if key:
                self.custody_run(s, alg, json.dumps({"kid": f"kms-{alg.lower()}", "alg": alg, "aws_kms": key}))

    def custody_run(self, s: Subject, alg: str, member: str) -> None:
        try:
            self.load_subject(s, alg, log="info", full=False, key_json=member)
        except BenchError as err:
            # The backends are new: one that does not start yet must not
            # lose the figures measured so far.
            self.note(f"{s.label} {alg} could not be measured: {err}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="macp-bench.") as tmp:
        bench = Bench(args, Path(tmp))
        try:
            bench.prepare()
            subjects = bench.subjects()
            bench.baselines()
            bench.startups(subjects)
            bench.load_all(subjects)
            bench.custody()
        except BenchError as err:
            say(f"error: {err}")
            return 1
        report = Report(bench.results, args)
        print(report.text())
        markdown = report.markdown()
        print("\n<!-- Markdown fragment for docs/performance.md -->\n" + markdown)
        if args.markdown:
            Path(args.markdown).write_text(markdown + "\n")
        if args.json:
            Path(args.json).write_text(json.dumps(bench.results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Time from spawn to the first `200` on /healthz, for a given binary.

    scripts/startup-time.py BINARY [RUNS]        (default 20 runs)

Spawns BINARY `serve` RUNS times, each on a free loopback port with a pinned
RSA-2048 key made by the binary's own `keygen` (so no key generation is
timed) and RUST_LOG=warn, and polls /healthz until it answers 200. Prints the
median, best and worst in milliseconds, and the CPU time the service
used until that answer (all threads, from /proc/PID/task/*/schedstat; it
hardly depends on what else runs on the machine), with the date, the machine, the load
average and the commit, so the figure can be quoted as measured. It asserts
nothing about the time.

Start-up includes AWS-LC's first use of randomness (the sign-and-verify probe
of the key before the port opens), which is where its CPU-jitter entropy
source initialises: docs/performance.md, "Start-up".
"""

from __future__ import annotations

import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_ms(pid: int) -> float:
    """On-CPU time of every thread of `pid` so far (schedstat, nanoseconds).
    Unlike wall time, it barely moves when other processes share the cores."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/schedstat") as stat:
            total += int(stat.read().split()[0])
    return total / 1e6


def one_start(binary: str, env: dict[str, str]) -> tuple[float, float]:
    port = free_port()
    env = dict(env, PORT=str(port))
    t0 = time.perf_counter()
    proc = subprocess.Popen([binary, "serve"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while time.perf_counter() - t0 < 10:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
            except OSError:
                if proc.poll() is not None:
                    sys.exit(f"exited {proc.returncode} during start-up: {proc.stderr.read().decode()}")
                time.sleep(0.0001)  # a short nap, not a spin: the service needs the CPU
                continue
            with s:
                s.sendall(REQUEST)
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return (time.perf_counter() - t0) * 1000, cpu_ms(proc.pid)
        sys.exit("no 200 from /healthz within 10 s")
    finally:
        proc.terminate()
        proc.wait()
    raise AssertionError("unreachable")


def describe_machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def main() -> None:
    binary = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    key = subprocess.run([binary, "keygen", "--kid", "startup-1"], capture_output=True, text=True, check=True).stdout
    env = {"PATH": "/usr/bin:/bin", "HOST": "127.0.0.1", "RUST_LOG": "warn",
           "MACP_AUTH_SIGNING_ALG": "RS256", "MACP_AUTH_SIGNING_KEY_JSON": key}
    one_start(binary, env)  # warm the page cache; not counted
    results = [one_start(binary, env) for _ in range(runs)]
    times = sorted(wall for wall, _ in results)
    cpu = sorted(cpu for _, cpu in results)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    load = os.getloadavg()
    print(f"spawn to first 200 on /healthz, {runs} runs, pinned RSA-2048 key: "
          f"median {statistics.median(times):.1f} ms, best {times[0]:.1f} ms, worst {times[-1]:.1f} ms; "
          f"CPU used by the service until then: median {statistics.median(cpu):.1f} ms, best {cpu[0]:.1f} ms")
    print(f"  date {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; machine {describe_machine()}; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; commit {commit or 'unknown'}; binary {binary}")


if __name__ == "__main__":
    main()

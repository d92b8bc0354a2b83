#!/usr/bin/env python3
"""Smoke test of the built image, run by scripts/container-check.sh.

    smoke.py IMAGE BASE_IMAGE

Everything here runs the image the way an operator would (podman with
`--read-only`, no capabilities, the image's own user) and checks what the
deployment documents promise:

- the image is its base plus one layer holding only the binary, and has no
  shell; sizes of image, base and binary are printed;
- the binary carries its dependency list (cargo-auditable's `.dep-v0`);
- the process runs as 65532:65532 on a read-only root filesystem, with the
  signing key and the client list mounted as read-only files, as on
  Kubernetes;
- /healthz answers; a minted token verifies the way the MACP runtime verifies
  it (key chosen by `kid` from the JWKS, RS256 only, `iss`, `aud`, `exp` and
  `sub` required, 60 s leeway), with PyJWT, an independent implementation;
- the image's own HEALTHCHECK command passes inside the container;
- `podman stop` drains: a request still arriving when SIGTERM lands is
  answered, then the process exits 0 promptly.

Any failure raises; containers are removed on every path.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from datetime import datetime
from pathlib import Path

import jwt  # PyJWT, with the `cryptography` backend

NONROOT = 65532
ISSUER = "https://auth.smoke.invalid"
AUDIENCE = "macp-runtime-smoke"
SENDER = "agent://smoke/one"
SCOPES = {"can_start_sessions": True, "can_manage_mode_registry": False, "max_open_sessions": 3}
SMOKE_LABEL = "org.macp.smoke=1"
SECRETS_IN_CONTAINER = "/var/run/secrets/macp-auth"
SHELLS = ("bin/sh", "bin/bash", "bin/dash", "usr/bin/sh", "usr/bin/bash", "usr/bin/dash", "bin/busybox")


def podman(*args: str, check: bool = True, capture: bool = True, **kw) -> subprocess.CompletedProcess:
    cmd = ["podman", "--runtime", "runc", *args]
    result = subprocess.run(cmd, capture_output=capture, text=True, **kw)
    if check and result.returncode != 0:
        raise SystemExit(f"smoke: `{' '.join(cmd)}` failed ({result.returncode}): {result.stderr.strip()}")
    return result


def inspect(kind: str, name: str, fmt: str) -> str:
    return podman(kind, "inspect", "--format", fmt, name).stdout.strip()


def say(message: str) -> None:
    print(f"[smoke] {message}", flush=True)


def mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def file_list(image: str) -> set[str]:
    """Paths in an image's filesystem, from `podman export` of a created
    container (never started; the command is only there because the base has
    none)."""
    name = podman("create", "--pull=never", "--label", SMOKE_LABEL, image, "/never-run").stdout.strip()
    try:
        export = subprocess.Popen(
            ["podman", "--runtime", "runc", "export", name], stdout=subprocess.PIPE
        )
        listing = subprocess.run(["tar", "-t"], stdin=export.stdout, capture_output=True, text=True, check=True)
        export.wait()
        return {line.removeprefix("./").rstrip("/") for line in listing.stdout.splitlines() if line.strip(". /")}
    finally:
        podman("rm", "-f", name)


def check_layers_and_files(image: str, base: str) -> None:
    image_layers = json.loads(inspect("image", image, "{{json .RootFS.Layers}}"))
    base_layers = json.loads(inspect("image", base, "{{json .RootFS.Layers}}"))
    assert image_layers[: len(base_layers)] == base_layers, "the image is not built on the base it names"
    assert len(image_layers) == len(base_layers) + 1, f"expected one layer over the base, got {len(image_layers) - len(base_layers)}"

    image_files, base_files = file_list(image), file_list(base)
    added = image_files - base_files
    binary = "usr/local/bin/macp-auth-service"
    parents = {"usr/local", "usr/local/bin"}
    assert binary in added, f"{binary} is missing from the image"
    assert added <= {binary} | parents, f"the image adds more than the binary: {sorted(added - {binary} - parents)}"
    assert base_files <= image_files, f"the image removes base files: {sorted(base_files - image_files)[:5]}"
    shells = [s for s in SHELLS if s in image_files]
    assert not shells, f"the image has a shell: {shells}"
    say(f"layers: the base's {len(base_layers)} + 1; files added over the base: {sorted(added)}; no shell ({', '.join(SHELLS)} absent)")


def extract_binary(image: str, dest: Path) -> Path:
    name = podman("create", "--pull=never", "--label", SMOKE_LABEL, image).stdout.strip()
    try:
        target = dest / "macp-auth-service"
        podman("cp", f"{name}:/usr/local/bin/macp-auth-service", str(target))
        return target
    finally:
        podman("rm", "-f", name)


def check_dependency_list(binary: Path, work: Path) -> None:
    """cargo-auditable's section: zlib-compressed JSON listing every crate."""
    section = work / "dep-v0"
    subprocess.run(["objcopy", "--dump-section", f".dep-v0={section}", str(binary), str(work / "scratch")], check=True, capture_output=True)
    packages = json.loads(zlib.decompress(section.read_bytes()))["packages"]
    names = {p["name"] for p in packages}
    for expected in ("macp-auth-service", "aws-lc-rs", "aws-lc-sys", "axum", "tokio"):
        assert expected in names, f".dep-v0 does not list {expected}"
    root = [p for p in packages if p.get("root")]
    assert [p["name"] for p in root] == ["macp-auth-service"], f"root package: {root}"
    say(f"binary: {mb(binary.stat().st_size)}, .dep-v0 lists {len(packages)} crates (aws-lc-rs {next(p['version'] for p in packages if p['name'] == 'aws-lc-rs')})")


def make_secrets(image: str, work: Path) -> tuple[Path, str, str]:
    """A key ring and a client list made by the image itself, laid out as the
    Kubernetes base mounts them: root-owned, group 65532, mode 0440."""
    jwk = json.loads(podman("run", "--rm", "--pull=never", "--read-only", image, "keygen", "--kid", "smoke-key-1").stdout)
    assert jwk["kid"] == "smoke-key-1" and jwk["alg"] == "RS256" and "d" in jwk
    client = json.loads(
        podman("run", "--rm", "--pull=never", "--read-only", image, "clients", "new", "--name", "smoke", "--senders", "agent://smoke/*").stdout
    )
    secrets = work / "secrets"
    for sub, filename, content in (
        ("signing", "jwk", json.dumps(jwk)),
        ("clients", "clients.json", json.dumps([client["client"]])),
    ):
        directory = secrets / sub
        directory.mkdir(parents=True)
        path = directory / filename
        path.write_text(content)
        os.chown(path, 0, NONROOT)
        os.chmod(path, 0o440)
        os.chmod(directory, 0o755)
    return secrets, client["secret"], jwk["kid"]


def run_service(image: str, secrets: Path) -> tuple[str, int, float]:
    started = time.monotonic()
    name = podman(
        "run", "-d", "--pull=never", "--label", SMOKE_LABEL,
        "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "-p", "127.0.0.1::3200",
        "-v", f"{secrets / 'signing'}:{SECRETS_IN_CONTAINER}/signing:ro",
        "-v", f"{secrets / 'clients'}:{SECRETS_IN_CONTAINER}/clients:ro",
        "-e", f"MACP_AUTH_SIGNING_KEY_FILE={SECRETS_IN_CONTAINER}/signing/jwk",
        "-e", f"MACP_AUTH_CLIENTS_FILE={SECRETS_IN_CONTAINER}/clients/clients.json",
        "-e", f"MACP_AUTH_ISSUER={ISSUER}",
        "-e", f"MACP_AUTH_AUDIENCE={AUDIENCE}",
        "-e", "MACP_AUTH_LOG_FORMAT=json",
        image,
    ).stdout.strip()
    port = int(podman("port", name, "3200/tcp").stdout.strip().rsplit(":", 1)[1])
    deadline = started + 30
    while True:
        try:
            status, _ = request(port, "GET", "/healthz")
            if status == 200:
                return name, port, time.monotonic() - started
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"smoke: /healthz did not answer within 30 s\n{podman('logs', name, check=False).stderr}")
        time.sleep(0.02)


def request(port: int, method: str, path: str, body: dict | None = None, secret: str | None = None) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    headers = {"content-type": "application/json"} if body is not None else {}
    if secret is not None:
        headers["authorization"] = f"Bearer {secret}"
    connection.request(method, path, json.dumps(body) if body is not None else None, headers)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, (json.loads(data) if data else {})


def check_process(name: str) -> None:
    pid = inspect("container", name, "{{.State.Pid}}")
    status = Path(f"/proc/{pid}/status").read_text()
    ids = {line.split(":")[0]: line.split()[1:] for line in status.splitlines() if line.startswith(("Uid:", "Gid:"))}
    assert ids["Uid"] == [str(NONROOT)] * 4 and ids["Gid"] == [str(NONROOT)] * 4, f"process ids: {ids}"
    assert inspect("container", name, "{{.HostConfig.ReadonlyRootfs}}") == "true"
    logs = podman("logs", name).stderr + podman("logs", name).stdout
    assert "key source: file" in logs, "the key did not come from the mounted file"
    say(f"process {pid} runs as uid/gid {NONROOT} on a read-only root filesystem; key source: file")


def check_token(port: int, secret: str, kid: str) -> None:
    status, body = request(port, "POST", "/tokens", {"sender": SENDER, "scopes": SCOPES}, secret="wrong-secret")
    assert status == 401, f"a wrong client secret got {status} {body}"
    status, body = request(port, "POST", "/tokens", {"sender": SENDER, "scopes": SCOPES, "ttl_seconds": 120}, secret=secret)
    assert status == 200, f"mint: {status} {body}"
    token = body["token"]

    # The runtime's rules: key by kid from the JWKS, RS256, iss/aud exact,
    # exp and sub required, 60 s leeway.
    status, jwks = request(port, "GET", "/.well-known/jwks.json")
    assert status == 200
    assert all("d" not in key for key in jwks["keys"]), "the JWKS publishes a private member"
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256" and header["kid"] == kid, header
    matching = [key for key in jwks["keys"] if key.get("kid") == header["kid"]]
    assert len(matching) == 1, f"kid {header['kid']} in the JWKS: {len(matching)} times"
    claims = jwt.decode(
        token,
        key=jwt.PyJWK(matching[0]).key,
        algorithms=["RS256"],
        audience=AUDIENCE,
        issuer=ISSUER,
        leeway=60,
        options={"require": ["exp", "sub", "iss", "aud"]},
    )
    assert claims["sub"] == SENDER and claims["macp_scopes"] == SCOPES, claims
    assert claims["exp"] - claims["iat"] == 120 == body["expires_in_seconds"], claims
    for wrong in ({"audience": "someone-else", "issuer": ISSUER}, {"audience": AUDIENCE, "issuer": "https://evil.invalid"}):
        try:
            jwt.decode(token, key=jwt.PyJWK(matching[0]).key, algorithms=["RS256"], **wrong)
        except jwt.InvalidTokenError:
            continue
        raise AssertionError(f"the token verified with {wrong}")
    say(f"minted a token for {SENDER}; it verifies against the JWKS (kid {kid}, RS256, iss, aud, exp, sub); a wrong secret gets 401")


def check_healthcheck(image: str, name: str) -> None:
    # Read from the whole inspect document: podman's --format template cannot
    # reach this field.
    config = json.loads(podman("image", "inspect", image).stdout)[0]
    test = (config.get("Healthcheck") or {}).get("Test")
    assert test and test[0] == "CMD", f"HEALTHCHECK must use the exec form: {test}"
    result = podman("exec", name, *test[1:], check=False)
    assert result.returncode == 0, f"the image's healthcheck {test[1:]} failed: {result.stderr}"
    shell = podman("exec", name, "/bin/sh", "-c", "true", check=False)
    assert shell.returncode != 0, "/bin/sh ran inside the container"
    say(f"the image's HEALTHCHECK ({' '.join(test[1:])}) passes inside the container; /bin/sh cannot be run")


def check_drain_on_stop(name: str, port: int) -> None:
    """A request whose body is still arriving when SIGTERM lands is answered."""
    body = json.dumps({"sender": SENDER, "scopes": SCOPES}).encode()
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    secret = os.environ["SMOKE_SECRET"]
    head = (
        f"POST /tokens HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer {secret}\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode()
    conn.sendall(head + body[:10])

    stopped: dict[str, float] = {}

    def stop() -> None:
        begin = time.monotonic()
        podman("stop", "--time", "15", name)
        stopped["at"] = time.monotonic()
        stopped["took"] = stopped["at"] - begin

    stopper = threading.Thread(target=stop)
    stopper.start()
    deadline = time.monotonic() + 10
    while "received SIGTERM" not in podman("logs", name).stderr + podman("logs", name).stdout:
        assert time.monotonic() < deadline, "SIGTERM was not logged"
        time.sleep(0.02)
    conn.sendall(body[10:])
    response = b""
    while b"\r\n\r\n" not in response or not response.rstrip().endswith(b"}"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        response += chunk
    answered = time.monotonic()
    conn.close()
    assert response.startswith(b"HTTP/1.1 200"), f"in-flight request during shutdown: {response[:200]!r}"
    stopper.join(30)
    assert "at" in stopped, "podman stop did not return"
    exit_code = inspect("container", name, "{{.State.ExitCode}}")
    assert exit_code == "0", f"exit code {exit_code}"
    after = (stopped["at"] - answered) * 1000
    assert after < 5000, f"the container took {after:.0f} ms to exit after its last request"
    say(
        f"podman stop: the in-flight mint was answered 200 after SIGTERM; the container exited 0 "
        f"{after:.0f} ms after answering it (podman stop took {stopped['took'] * 1000:.0f} ms in all, "
        "including the time this test held the request open)"
    )


def sigterm_to_exit_ms(name: str) -> float:
    """From the service's own "received SIGTERM" log record to the exit
    podman recorded: the process's part of a stop, without podman's."""
    logs = podman("logs", name).stdout + podman("logs", name).stderr
    line = next(line for line in logs.splitlines() if "received SIGTERM" in line)
    received = datetime.fromisoformat(json.loads(line)["timestamp"].replace("Z", "+00:00"))
    date, clock, offset = inspect("container", name, "{{.State.FinishedAt}}").split()[:3]
    seconds, _, fraction = clock.partition(".")
    finished = datetime.fromisoformat(f"{date}T{seconds}.{(fraction + '000000')[:6]}{offset[:3]}:{offset[3:]}")
    return (finished - received).total_seconds() * 1000


def check_idle_stop(image: str, secrets: Path) -> None:
    name, _, _ = run_service(image, secrets)
    try:
        begin = time.monotonic()
        podman("stop", "--time", "15", name)
        took = (time.monotonic() - begin) * 1000
        exit_code = inspect("container", name, "{{.State.ExitCode}}")
        own = sigterm_to_exit_ms(name)
    finally:
        podman("rm", "-f", name, check=False)
    assert exit_code == "0", f"exit code {exit_code}"
    assert took < 5000, f"podman stop of an idle container took {took:.0f} ms"
    say(f"podman stop of an idle container: exit 0; the process exited {own:.0f} ms after SIGTERM, podman stop took {took:.0f} ms in all")


def main() -> None:
    image, base = sys.argv[1], sys.argv[2]
    image_size = int(inspect("image", image, "{{.Size}}"))
    base_size = int(inspect("image", base, "{{.Size}}"))
    say(f"image {image}: {mb(image_size)}; base {base}: {mb(base_size)}; the image adds {mb(image_size - base_size)}")
    check_layers_and_files(image, base)
    with tempfile.TemporaryDirectory(prefix="macp-smoke.") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        check_dependency_list(extract_binary(image, work), work)
        secrets, secret, kid = make_secrets(image, work)
        os.environ["SMOKE_SECRET"] = secret
        name, port, ready = run_service(image, secrets)
        try:
            say(f"/healthz answered 200 {ready * 1000:.0f} ms after `podman run` (container creation included)")
            check_process(name)
            check_token(port, secret, kid)
            check_healthcheck(image, name)
            check_drain_on_stop(name, port)
        finally:
            podman("rm", "-f", name, check=False)
        check_idle_stop(image, secrets)
    say("all checks passed")


if __name__ == "__main__":
    main()

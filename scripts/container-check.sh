#!/usr/bin/env bash
# Builds the real Dockerfile with podman and smoke-tests the image.
#
#   scripts/container-check.sh
#
# 1. Installs what it needs from Debian (podman, runc, mmdebstrap, ...) when
#    missing, and the smoke test's Python packages (PyJWT, cryptography) into
#    a cache directory.
# 2. Runs podman as these machines need it: `--runtime runc` and a
#    containers.conf with `default_ulimits = []` (scripts/container/lib.sh).
# 3. Registry images cannot be pulled here, so the two bases the Dockerfile
#    names are stood in locally, under the exact names it uses, from the same
#    sources (scripts/container/standin-*.sh; docs/deployment.md, "Stand-in
#    base images"). A base that exists locally without the stand-in label
#    (the real one, pulled elsewhere) is used as it is.
# 4. Builds the Dockerfile unchanged with `--pull=never` as
#    localhost/macp-auth-service:local.
# 5. Smoke-tests that image (scripts/container/smoke.py).
#
# Idempotent: stand-ins are rebuilt only when their recipe changed
# (MACP_STANDIN_REBUILD=1 forces it), the build reuses podman's layer and
# cargo cache mounts, and every container the script starts is removed on
# exit. Needs root (apt-get, rootful podman). Locally, a missing prerequisite
# skips the check with the reason; under CI=true it fails.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
# shellcheck source=scripts/container/lib.sh
source scripts/container/lib.sh

IMAGE="localhost/macp-auth-service:local"
APT_PACKAGES=(podman runc uidmap fuse-overlayfs slirp4netns netavark aardvark-dns
    containernetworking-plugins mmdebstrap binutils ca-certificates)
PYTHON_PACKAGES=("PyJWT==2.15.1" "cryptography==50.0.2")

unavailable() {
    if [ "${CI:-}" = "true" ]; then
        die "$1"
    fi
    log "SKIPPED: $1"
    exit 0
}

stamp() { date +%s; }
elapsed() { echo "$(( $(stamp) - $1 )) s"; }

# 1. Debian packages.
install_packages() {
    local missing=() package
    for package in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$package")
    done
    [ "${#missing[@]}" -gt 0 ] || return 0
    [ "$(id -u)" = 0 ] || unavailable "not root, and these packages are missing: ${missing[*]}"
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
        || unavailable "apt-get install ${missing[*]} failed"
}

# The smoke test's Python packages, installed once into the cache (staged and
# renamed, so an interrupted install never looks complete).
python_path() {
    local dest
    dest="$CONTAINER_WORK/python-$(printf '%s\n' "${PYTHON_PACKAGES[@]}" | sha256sum | cut -c1-12)"
    if [ ! -d "$dest" ]; then
        log "installing ${PYTHON_PACKAGES[*]} into $dest"
        local staging
        staging="$(mktemp -d "$dest.XXXXXX")"
        PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
            --no-input --target "$staging" "${PYTHON_PACKAGES[@]}" >&2 || {
            rm -rf "$staging"
            unavailable "pip install ${PYTHON_PACKAGES[*]} failed"
        }
        mv "$staging" "$dest"
    fi
    printf '%s\n' "$dest"
}

remove_smoke_containers() {
    local ids
    ids="$(podman ps -a -q --filter label=org.macp.smoke=1 2>/dev/null || true)"
    if [ -n "$ids" ]; then
        # shellcheck disable=SC2086
        podman rm -f $ids >/dev/null 2>&1 || true
    fi
}

# The image of the first (builder) or the last (runtime) FROM.
from_image() {
    local images
    images="$(grep -iE '^FROM[[:space:]]' Dockerfile | awk '{print $2}')"
    case "$1" in
        first) head -n 1 <<<"$images" ;;
        last) tail -n 1 <<<"$images" ;;
    esac
}

[ "$(id -u)" = 0 ] || unavailable "needs root: apt-get and rootful podman"
install_packages
use_podman
command -v podman >/dev/null || unavailable "podman is not installed"
podman info >/dev/null 2>&1 || unavailable "podman does not work here: $(podman info 2>&1 | tail -n 1)"
remove_smoke_containers
trap remove_smoke_containers EXIT

builder="$(canonical_name "$(from_image first)")"
runtime="$(canonical_name "$(from_image last)")"
log "Dockerfile bases: builder $builder, runtime $runtime"

started="$(stamp)"
scripts/container/standin-builder.sh "$builder"
log "builder base ready in $(elapsed "$started")"
started="$(stamp)"
scripts/container/standin-runtime.sh "$runtime"
log "runtime base ready in $(elapsed "$started")"

# 4. The real Dockerfile. --format docker keeps its HEALTHCHECK (the OCI
# image format has no field for it). Egress from these machines goes through
# a TLS-inspecting proxy whose CA only the host trusts, so cargo inside the
# build gets the host's CA bundle, mounted read-only for the RUN steps: a
# build-time mount, in no layer, and a no-op where the host trusts nothing
# more than Debian does.
ca_mount=()
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    ca_mount=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
fi
previous="$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
started="$(stamp)"
log "building $IMAGE from the Dockerfile (--pull=never)"
podman build --pull=never --format docker "${ca_mount[@]}" --tag "$IMAGE" --file Dockerfile . >&2
log "image built in $(elapsed "$started")"
current="$(podman image inspect --format '{{.Id}}' "$IMAGE")"
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
    podman rmi "$previous" >/dev/null 2>&1 || true
fi

# 5. The smoke test.
command -v objcopy >/dev/null || unavailable "objcopy (binutils) is not installed"
started="$(stamp)"
PYTHONPATH="$(python_path)" python3 scripts/container/smoke.py "$IMAGE" "$runtime"
log "smoke test done in $(elapsed "$started")"

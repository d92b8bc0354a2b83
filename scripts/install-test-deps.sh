#!/usr/bin/env bash
# Installs what the key-custody tests start: SoftHSM2 (a PKCS#11 token in a
# temporary directory), OpenSC's pkcs11-tool (creates keys in it) and moto's
# server (a local AWS KMS), and a C compiler for the PKCS#11 shim that
# plays a hung token (tests/integration/support/hung_pkcs11.c; the one cargo
# links with does). `cargo test` skips those tests with a printed
# reason when a dependency is missing, except under CI=true, where a missing
# dependency fails them; .ci/run calls this script before `cargo test`.
#
#   scripts/install-test-deps.sh
#
# Idempotent: installs only what is missing. Debian packages need root (or
# sudo); moto goes into the current python3 with pip.
set -euo pipefail

# Pinned: tests/integration/support/moto_server.py patches moto's KMS Sign
# (see the comment there); bump deliberately and rerun the KMS tests.
MOTO_VERSION="5.2.1"
SOFTHSM_MODULE="/usr/lib/softhsm/libsofthsm2.so"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing_packages=()
[ -e "$SOFTHSM_MODULE" ] && command -v softhsm2-util >/dev/null || missing_packages+=(softhsm2)
command -v pkcs11-tool >/dev/null || missing_packages+=(opensc)
command -v cc >/dev/null || missing_packages+=(gcc libc6-dev)
if [ "${#missing_packages[@]}" -gt 0 ]; then
    echo "== installing ${missing_packages[*]} (apt)"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
        "${missing_packages[@]}"
fi

installed_moto="$(python3 -c 'import moto.server, boto3; print(moto.__version__)' 2>/dev/null || true)"
if [ "$installed_moto" != "$MOTO_VERSION" ]; then
    echo "== installing moto[server]==$MOTO_VERSION (pip; found: ${installed_moto:-none})"
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
        --no-input "moto[server]==$MOTO_VERSION"
fi

echo "softhsm2: $(softhsm2-util --version)  module: $SOFTHSM_MODULE"
echo "pkcs11-tool: $(command -v pkcs11-tool)"
echo "moto: $(python3 -c 'import moto; print(moto.__version__)')"

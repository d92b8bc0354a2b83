#!/usr/bin/env bash
# Builds a local STAND-IN for the Rust builder base (rust:<version>-bookworm),
# which cannot be pulled on these machines (no registry access).
#
#   scripts/container/standin-builder.sh IMAGE_NAME      e.g. rust:1.95-bookworm
#
# The official image is Debian 12 (buildpack-deps:bookworm) with rustup and
# one toolchain under /usr/local/rustup and /usr/local/cargo. The stand-in:
#   - a Debian 12 root filesystem made by mmdebstrap (variant minbase) from
#     the Debian archive, plus what building this crate needs: gcc, libc6-dev
#     (cc and the linker for AWS-LC's C code) and ca-certificates (cargo
#     fetches crates over HTTPS). The official image has much more
#     (git, curl, make, libssl-dev, ...); nothing in the Dockerfile uses it;
#   - the host's own Rust toolchain, which must be the version the tag names
#     (checked), copied to /usr/local/rustup/toolchains/<version>-<host>
#     without its HTML docs, with the host's rustup as the proxy in
#     /usr/local/cargo/bin, and the same ENV as the official image
#     (RUSTUP_HOME, CARGO_HOME, PATH, RUST_VERSION).
#
# Tagged with the exact name the Dockerfile uses and labelled
# org.macp.standin.recipe; it is NOT the published image. See
# docs/deployment.md ("Stand-in base images").
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/container/lib.sh
source "$here/lib.sh"

name="$(canonical_name "${1:?usage: standin-builder.sh IMAGE_NAME}")"
PACKAGES=(gcc libc6-dev ca-certificates)
MIRRORS=(
    "deb http://deb.debian.org/debian bookworm main"
    "deb http://deb.debian.org/debian bookworm-updates main"
    "deb http://deb.debian.org/debian-security bookworm-security main"
)

use_podman

# The tag names the toolchain: rust:1.95-bookworm needs rustc 1.95.x.
tag="${name##*:}"
wanted="${tag%-bookworm}"
[ "$wanted" != "$tag" ] || die "$name: expected a rust:<version>-bookworm tag"
rustc_version="$(rustc --version | awk '{print $2}')"
case "$rustc_version." in
    "$wanted".*) ;;
    *) die "$name needs Rust $wanted but the host's rustc is $rustc_version; install that toolchain or change the Dockerfile's tag" ;;
esac
sysroot="$(rustc --print sysroot)"
host_triple="$(rustc -vV | sed -n 's/^host: //p')"
toolchain="$rustc_version-$host_triple"

versions="$(apt-cache show --no-all-versions "${PACKAGES[@]}" | grep -E '^(Package|Version):')"
hash="$(printf '%s\n%s\n' "$versions" "$(rustc -vV)" \
    | recipe_hash "${BASH_SOURCE[0]}" "$here/lib.sh" -)"

if image_exists "$name"; then
    existing="$(image_label "$name" "$STANDIN_LABEL")"
    if [ -z "$existing" ]; then
        log "$name exists and is not a stand-in (no $STANDIN_LABEL label): using it as it is"
        exit 0
    fi
    if [ "$existing" = "builder-$hash" ] && [ "${MACP_STANDIN_REBUILD:-0}" != 1 ]; then
        log "stand-in $name is up to date (recipe builder-$hash)"
        exit 0
    fi
fi

command -v mmdebstrap >/dev/null || die "mmdebstrap is not installed (apt-get install mmdebstrap)"

log "assembling stand-in $name: Debian 12 (mmdebstrap) + ${PACKAGES[*]} + Rust $toolchain from $sysroot"
work="$(mktemp -d "${TMPDIR:-/tmp}/macp-standin-builder.XXXXXX")"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

include="$(IFS=,; echo "${PACKAGES[*]}")"
mmdebstrap --quiet --variant=minbase --include="$include" bookworm "$rootfs" "${MIRRORS[@]}"

# The toolchain, as rustup lays it out, minus the 700 MB of HTML docs.
dest="$rootfs/usr/local/rustup/toolchains/$toolchain"
mkdir -p "$dest" "$rootfs/usr/local/cargo/bin"
tar -C "$sysroot" --exclude=./share/doc/rust/html -cf - . | tar -C "$dest" -xf -
cat >"$rootfs/usr/local/rustup/settings.toml" <<SETTINGS
version = "12"
default_toolchain = "$toolchain"
profile = "minimal"
auto_self_update = "disable"
SETTINGS

proxies=(cargo rustc rustdoc cargo-clippy clippy-driver rustfmt cargo-fmt)
if rustup_bin="$(command -v rustup)"; then
    install -m 0755 "$(readlink -f "$rustup_bin")" "$rootfs/usr/local/cargo/bin/rustup"
    for proxy in "${proxies[@]}"; do
        ln -sf rustup "$rootfs/usr/local/cargo/bin/$proxy"
    done
else
    for proxy in "${proxies[@]}"; do
        [ ! -e "$dest/bin/$proxy" ] || ln -sf "/usr/local/rustup/toolchains/$toolchain/bin/$proxy" \
            "$rootfs/usr/local/cargo/bin/$proxy"
    done
fi
chmod -R a+rX,go-w "$rootfs/usr/local/rustup" "$rootfs/usr/local/cargo"

tar -C "$rootfs" --numeric-owner --owner=0 --group=0 -cf "$work/rootfs.tar" .
rm -rf "$rootfs"
podman import --quiet \
    --change 'ENV RUSTUP_HOME=/usr/local/rustup' \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "ENV RUST_VERSION=$rustc_version" \
    --change "LABEL $STANDIN_LABEL=builder-$hash" \
    --change "LABEL org.opencontainers.image.description=\"LOCAL STAND-IN for $name, assembled by scripts/container/standin-builder.sh (Debian 12 + the host's Rust $rustc_version); not the published image\"" \
    "$work/rootfs.tar" "$name" >/dev/null
podman run --rm --pull=never "$name" rustc --version >&2
log "stand-in $name built: $(image_size "$name") bytes"

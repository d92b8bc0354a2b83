#!/usr/bin/env bash
# Builds a local STAND-IN for the runtime base gcr.io/distroless/cc-debian12:nonroot,
# which cannot be pulled on these machines (no registry access).
#
#   scripts/container/standin-runtime.sh IMAGE_NAME
#
# Distroless builds its Debian 12 images by unpacking Debian packages into a
# root filesystem, without a package manager or shell. This does the same from
# the same source, the Debian 12 archive the host's apt is configured with:
#   - `apt-get download` of the packages distroless's cc-debian12 starts from
#     (base-files, netbase, tzdata, ca-certificates, libc6, libgcc-s1);
#   - `dpkg-deb -x` of each into an empty directory (no maintainer scripts run,
#     as in distroless);
#   - the files distroless writes itself: /etc/passwd and /etc/group with root,
#     nobody and nonroot (65532), /home/nonroot, /tmp, the CA bundle
#     /etc/ssl/certs/ca-certificates.crt, and one status file per package
#     under /var/lib/dpkg/status.d/ so scanners can read the versions;
#   - image config as distroless's :nonroot: USER 65532, WORKDIR /home/nonroot,
#     PATH and SSL_CERT_FILE.
# There is no shell: none of these packages ships one.
#
# The result is tagged with the exact name the Dockerfile uses and labelled
# org.macp.standin.recipe; it is NOT the published image (different digest,
# not signed by Google, package versions from this host's apt snapshot). See
# docs/deployment.md ("Stand-in base images").
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/container/lib.sh
source "$here/lib.sh"

name="$(canonical_name "${1:?usage: standin-runtime.sh IMAGE_NAME}")"
PACKAGES=(base-files netbase tzdata ca-certificates libc6 libgcc-s1)

use_podman

# Candidate versions are part of the recipe: a Debian security update
# rebuilds the stand-in.
versions="$(apt-cache show --no-all-versions "${PACKAGES[@]}" | grep -E '^(Package|Version):')"
hash="$(printf '%s\n' "$versions" | recipe_hash "${BASH_SOURCE[0]}" "$here/lib.sh" -)"

if image_exists "$name"; then
    existing="$(image_label "$name" "$STANDIN_LABEL")"
    if [ -z "$existing" ]; then
        log "$name exists and is not a stand-in (no $STANDIN_LABEL label): using it as it is"
        exit 0
    fi
    if [ "$existing" = "runtime-$hash" ] && [ "${MACP_STANDIN_REBUILD:-0}" != 1 ]; then
        log "stand-in $name is up to date (recipe runtime-$hash)"
        exit 0
    fi
fi

log "assembling stand-in $name from Debian packages: ${PACKAGES[*]}"
work="$(mktemp -d "${TMPDIR:-/tmp}/macp-standin-runtime.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/debs" "$work/rootfs"
(cd "$work/debs" && apt-get download -q -o APT::Sandbox::User=root "${PACKAGES[@]}" >/dev/null)

rootfs="$work/rootfs"
mkdir -p "$rootfs/var/lib/dpkg/status.d"
for deb in "$work"/debs/*.deb; do
    dpkg-deb -x "$deb" "$rootfs"
    package="$(dpkg-deb -f "$deb" Package)"
    dpkg-deb -f "$deb" >"$rootfs/var/lib/dpkg/status.d/$package"
    log "  $(basename "$deb")"
done

# update-ca-certificates is a shell script that cannot run here; distroless
# ships the bundle it would have written, so write that instead.
mkdir -p "$rootfs/etc/ssl/certs"
find "$rootfs/usr/share/ca-certificates" -name '*.crt' -print0 | sort -z \
    | xargs -0 cat >"$rootfs/etc/ssl/certs/ca-certificates.crt"
rm -f "$rootfs/usr/sbin/update-ca-certificates"

cat >"$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
cat >"$rootfs/etc/group" <<'GROUP'
root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:65532:
GROUP
mkdir -p "$rootfs/root" "$rootfs/home/nonroot" "$rootfs/tmp"
chmod 0700 "$rootfs/root" "$rootfs/home/nonroot"
chmod 1777 "$rootfs/tmp"

for shell in bin/sh bin/bash bin/dash usr/bin/sh usr/bin/bash usr/bin/dash; do
    [ ! -e "$rootfs/$shell" ] || die "the stand-in rootfs has /$shell; distroless has no shell"
done

# Owners are set in the archive, so this works without root as well:
# everything root's, /home/nonroot the nonroot user's.
tar -C "$rootfs" --numeric-owner --owner=0 --group=0 --exclude=./home/nonroot \
    -cf "$work/rootfs.tar" .
tar -C "$rootfs" --numeric-owner --owner=65532 --group=65532 \
    -rf "$work/rootfs.tar" ./home/nonroot

podman import --quiet \
    --change 'USER 65532' \
    --change 'WORKDIR /home/nonroot' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change "LABEL $STANDIN_LABEL=runtime-$hash" \
    --change 'LABEL org.opencontainers.image.description="LOCAL STAND-IN for gcr.io/distroless/cc-debian12:nonroot, assembled by scripts/container/standin-runtime.sh from Debian 12 packages; not the published image"' \
    "$work/rootfs.tar" "$name" >/dev/null
log "stand-in $name built: $(image_size "$name") bytes"

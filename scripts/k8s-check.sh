#!/usr/bin/env bash
# Checks the Kubernetes base in deploy/kubernetes with real tools:
#
#   scripts/k8s-check.sh
#
# 1. kubernetes-validate --strict: every manifest file, the kustomize-rendered
#    base and a rendered example overlay, against the API schemas of the
#    current Kubernetes minor and of the oldest one the base supports (1.30:
#    the preStop `sleep` action). Unknown fields fail (--strict).
# 2. `kubectl kustomize` (kustomize built into kubectl, no cluster needed)
#    renders the base, and an example overlay that sets the NetworkPolicy's
#    namespaces through components/network-namespaces; the rendered policy
#    must carry the overlay's names.
# 3. checkov on deploy/kubernetes (its kubernetes and kustomize frameworks).
#    Any failed check fails the run; the base's documented exceptions are the
#    checkov.io/skip annotations, each with its reason, printed below.
#
# kubernetes-validate and checkov are pinned and installed from PyPI into a
# virtualenv under ${XDG_CACHE_HOME:-~/.cache}/macp-auth-service/ on first
# use. Locally a missing kubectl skips the rendering with the reason; under
# CI=true it fails.
set -euo pipefail

KUBERNETES_VALIDATE_VERSION="1.37.0"
CHECKOV_VERSION="3.3.30"
# The current minor, and the oldest the base supports.
KUBERNETES_VERSIONS=(1.37 1.30)

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
base=deploy/kubernetes

log() { printf '[k8s] %s\n' "$*" >&2; }
die() { printf '[k8s] error: %s\n' "$*" >&2; exit 1; }

tools="${XDG_CACHE_HOME:-$HOME/.cache}/macp-auth-service/k8s-tools-kv${KUBERNETES_VALIDATE_VERSION}-checkov${CHECKOV_VERSION}"
# A virtualenv's scripts name its own path, so it is built in place; the
# marker file, written last, tells a complete install from an interrupted one.
if [ ! -f "$tools/.complete" ]; then
    log "installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION and checkov==$CHECKOV_VERSION into $tools"
    rm -rf "$tools"
    python3 -m venv "$tools"
    "$tools/bin/pip" install --quiet --disable-pip-version-check --no-input \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "checkov==$CHECKOV_VERSION" >&2 \
        || die "could not install kubernetes-validate and checkov from PyPI"
    touch "$tools/.complete"
fi
"$tools/bin/kubernetes-validate" --version >&2
"$tools/bin/checkov" --version >&2

work="$(mktemp -d "${TMPDIR:-/tmp}/macp-k8s-check.XXXXXX")"
trap 'rm -rf "$work"' EXIT

validate() {
    local version
    for version in "${KUBERNETES_VERSIONS[@]}"; do
        "$tools/bin/kubernetes-validate" --strict --quiet -k "$version" "$@"
    done
}

# 1. Each manifest file (kustomization.yaml files are kustomize's, not the API's).
mapfile -t manifests < <(find "$base" -name '*.yaml' ! -name kustomization.yaml | sort)
[ "${#manifests[@]}" -gt 0 ] || die "no manifests under $base"
validate "${manifests[@]}"
log "kubernetes-validate --strict (${KUBERNETES_VERSIONS[*]}): ${#manifests[@]} files valid: ${manifests[*]}"

# 2. Rendered base and example overlay.
if command -v kubectl >/dev/null; then
    kubectl kustomize "$base" >"$work/base.yaml"
    validate "$work/base.yaml"
    log "kubectl kustomize $base: $(grep -c '^kind:' "$work/base.yaml") resources, valid"

    mkdir -p "$work/overlay"
    # kustomize takes only relative paths to other kustomizations.
    from_overlay="$(realpath --relative-to="$work/overlay" "$repo_root/$base")"
    cat >"$work/overlay/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: auth-example
resources:
  - $from_overlay
components:
  - $from_overlay/components/network-namespaces
images:
  - name: ghcr.io/multiagentcoordinationprotocol/macp-auth-service
    newTag: sha-0123abc
configMapGenerator:
  - name: macp-auth-network-parameters
    literals:
      - orchestrators-namespace=example-orchestrators
      - runtimes-namespace=example-runtimes
      - monitoring-namespace=example-monitoring
    options:
      disableNameSuffixHash: true
      annotations:
        config.kubernetes.io/local-config: "true"
EOF
    kubectl kustomize "$work/overlay" >"$work/overlay.yaml"
    validate "$work/overlay.yaml"
    python3 - "$work/overlay.yaml" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
names = re.findall(r"kubernetes.io/metadata.name: (\S+)", text)
expected = ["example-orchestrators", "example-runtimes", "example-monitoring"]
assert names == expected, f"NetworkPolicy namespaces: {names}, expected {expected}"
assert "macp-auth-network-parameters" not in text, "the parameters ConfigMap was rendered"
assert "namespace: macp-auth\n" not in text and "name: auth-example" in text, "namespace not overridden"
PY
    log "example overlay: NetworkPolicy admits example-orchestrators, example-runtimes (API) and example-monitoring (metrics); valid"
elif [ "${CI:-}" = "true" ]; then
    die "kubectl is not installed: cannot render the kustomization"
else
    log "SKIPPED rendering: kubectl (with built-in kustomize) is not installed"
fi

# 3. checkov, offline (--skip-download: no Prisma Cloud guidelines).
log "checkov exceptions documented in the base:"
grep -rhoE 'checkov\.io/skip[0-9]+: .*' "$base" | sed 's/^/[k8s]   /' >&2
"$tools/bin/checkov" --directory "$base" --framework kubernetes kustomize \
    --skip-download --compact --quiet >"$work/checkov.txt" 2>"$work/checkov.err" || {
    cat "$work/checkov.txt" "$work/checkov.err" >&2
    die "checkov found problems in $base"
}
grep -E 'scan results|Passed checks' "$work/checkov.txt" | sed 's/^/[k8s] checkov: /' >&2
grep -q 'Passed checks: [1-9]' "$work/checkov.txt" || die "checkov ran no checks"

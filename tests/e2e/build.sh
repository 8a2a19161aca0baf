#!/usr/bin/env bash
# Build the e2e fleet binaries (kube-apiserver, kube-controller-manager, kube-scheduler, etcd,
# kwok, the OCI registry (CNCF Distribution), sops and age-keygen and, when tests/e2e/flux exists, Flux
# source-controller and kustomize-controller) from the Go module proxy into a cache outside
# the repo, keyed by version. Binaries already present
# are reused. Usage: tests/e2e/build.sh [--print-bin]
#   --print-bin   only print the bin directory (after building what is missing)
# Environment:
#   STARMAP_E2E_CACHE   cache root (default ~/.cache/starmap-e2e)
#   STARMAP_E2E_TIME    set to 1 to wrap each go build in /usr/bin/time -v (peak RAM in log)
#   STARMAP_E2E_NO_FLUX set to 1 to skip the Flux controllers
#   STARMAP_E2E_ARGOCD  set to 1 to build Argo CD too (the hub of tests/e2e/up.sh)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PRINT_BIN=0
[[ "${1:-}" == "--print-bin" ]] && PRINT_BIN=1

say() { echo "[e2e build] $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

command -v go >/dev/null || die "go not found in PATH (need Go >= 1.23)"

# Versions come from the committed go.mod files, so the cache key follows them.
modver() { # modver <go.mod> <module path>
  awk -v m="$2" '$1==m && $2 ~ /^v/ {print $2; exit} $1=="require" && $2==m {print $3; exit}' "$1"
}
K8S_VERSION="$(modver "$HERE/k8s/go.mod" k8s.io/kubernetes)"
ETCD_VERSION="$(modver "$HERE/k8s/go.mod" go.etcd.io/etcd/server/v3)"
KWOK_VERSION="v0.7.0"
# The OCI registry (CNCF Distribution) that OCI delivery pushes to in the tests.
REGISTRY_VERSION="v3.1.2"
# go-containerregistry's `crane registry serve`: a second, lighter registry (in memory) that
# the delivery benchmark measures beside Distribution.
CRANE_VERSION="v0.22.1"
# SOPS and age-keygen: the hardening tests encrypt a Secret with the real sops and an age key,
# and the kustomize-controller decrypts it. The versions kustomize-controller itself uses.
SOPS_VERSION="v3.13.2"
AGE_VERSION="v1.3.1"
[[ -n "$K8S_VERSION" && -n "$ETCD_VERSION" ]] || die "cannot read versions from $HERE/k8s/go.mod"
FLUX_KEY=""
if [[ -f "$HERE/flux/go.mod" ]]; then
  SC_VERSION="$(modver "$HERE/flux/go.mod" github.com/fluxcd/source-controller)"
  KC_VERSION="$(modver "$HERE/flux/go.mod" github.com/fluxcd/kustomize-controller)"
  FLUX_KEY="-sc${SC_VERSION}-kc${KC_VERSION}"
fi

# One bin dir per combination of versions; each binary is built once per its own version into
# $CACHE/store/<name>@<version>/ and linked into the bin dir, so adding or bumping one component
# does not rebuild the others.
KEY="k8s${K8S_VERSION}-etcd${ETCD_VERSION}-kwok${KWOK_VERSION}${FLUX_KEY}-reg${REGISTRY_VERSION}-crane${CRANE_VERSION}-sops${SOPS_VERSION}-age${AGE_VERSION}"
CACHE="${STARMAP_E2E_CACHE:-$HOME/.cache/starmap-e2e}"
BIN="$CACHE/$KEY/bin"
LOGDIR="$CACHE/build-logs"
mkdir -p "$BIN" "$LOGDIR" "$CACHE/store"

export CGO_ENABLED=0
TIMER=()
if [[ "${STARMAP_E2E_TIME:-0}" == 1 && -x /usr/bin/time ]]; then TIMER=(/usr/bin/time -v); fi

TOTAL_START=$SECONDS
BUILT=0

# build_one <name> <version> <dir> <command...>: unless the store already has <name>@<version>,
# run the command (which must write $CACHE/store/<name>@<version>/<name>) in <dir>; then link
# it into $BIN.
build_one() {
  local name="$1" version="$2" dir="$3"; shift 3
  local store="$CACHE/store/$name@$version"
  OUT="$store/$name"
  if [[ -x "$OUT" ]]; then
    say "$name $version: cached ($OUT)"
  else
    local log="$LOGDIR/$name@$version.log"
    say "$name $version: building (log: $log) ..."
    mkdir -p "$store"
    local start=$SECONDS
    if ! (cd "$dir" && "${TIMER[@]}" "$@") >"$log" 2>&1; then
      tail -n 30 "$log" >&2
      die "$name: build failed, see $log"
    fi
    [[ -x "$OUT" ]] || die "$name: build produced no binary at $OUT"
    say "$name $version: built in $((SECONDS - start))s"
    BUILT=$((BUILT + 1))
  fi
  ln -sfn "$OUT" "$BIN/$name"
}

# Kubernetes: -X flags so that /version reports the real version instead of v0.0.0-master.
K8S_MINOR="$(echo "$K8S_VERSION" | cut -d. -f2)"
BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
VPKG=k8s.io/component-base/version
K8S_LDFLAGS="-s -w -X $VPKG.gitVersion=$K8S_VERSION -X $VPKG.gitMajor=1 -X $VPKG.gitMinor=$K8S_MINOR"
K8S_LDFLAGS+=" -X $VPKG.gitTreeState=clean -X $VPKG.buildDate=$BUILD_DATE"
K8S_LDFLAGS+=" -X $VPKG.gitCommit=$K8S_VERSION"
# client-go carries its own copy of the version variables (used by some clients' User-Agent).
K8S_LDFLAGS+=" -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
K8S_LDFLAGS+=" -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$K8S_MINOR"

# kubectl of the same version: up.sh and the tests use it, so CI needs no kubectl of its own.
for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  build_one "$c" "$K8S_VERSION" "$HERE/k8s" \
    go build -trimpath -ldflags "$K8S_LDFLAGS" -o "$CACHE/store/$c@$K8S_VERSION/$c" "k8s.io/kubernetes/cmd/$c"
done
# etcd: server/main.go is package main in etcd 3.5.
build_one etcd "$ETCD_VERSION" "$HERE/k8s" \
  go build -trimpath -ldflags "-s -w" -o "$CACHE/store/etcd@$ETCD_VERSION/etcd" go.etcd.io/etcd/server/v3

# kwok: no replace directives, so plain go install into the cache (outside any module).
build_one kwok "$KWOK_VERSION" "$CACHE" env GOBIN="$CACHE/store/kwok@$KWOK_VERSION" GOFLAGS=-trimpath go install -ldflags "-s -w" \
  "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"

# The registry: no replace directives either. Its storage drivers pull in the cloud SDKs, so
# the first build takes a few minutes; the tests use its filesystem driver.
build_one registry "$REGISTRY_VERSION" "$CACHE" env GOBIN="$CACHE/store/registry@$REGISTRY_VERSION" GOFLAGS=-trimpath \
  go install -ldflags "-s -w" "github.com/distribution/distribution/v3/cmd/registry@$REGISTRY_VERSION"

build_one crane "$CRANE_VERSION" "$CACHE" env GOBIN="$CACHE/store/crane@$CRANE_VERSION" GOFLAGS=-trimpath \
  go install -ldflags "-s -w" "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION"

build_one sops "$SOPS_VERSION" "$CACHE" env GOBIN="$CACHE/store/sops@$SOPS_VERSION" GOFLAGS=-trimpath \
  go install -ldflags "-s -w" "github.com/getsops/sops/v3/cmd/sops@$SOPS_VERSION"
build_one age-keygen "$AGE_VERSION" "$CACHE" env GOBIN="$CACHE/store/age-keygen@$AGE_VERSION" GOFLAGS=-trimpath \
  go install -ldflags "-s -w" "filippo.io/age/cmd/age-keygen@$AGE_VERSION"

if [[ -f "$HERE/flux/go.mod" && "${STARMAP_E2E_NO_FLUX:-0}" != 1 ]]; then
  build_one source-controller "$SC_VERSION" "$HERE/flux" go build -trimpath -ldflags "-s -w" \
    -o "$CACHE/store/source-controller@$SC_VERSION/source-controller" github.com/fluxcd/source-controller
  build_one kustomize-controller "$KC_VERSION" "$HERE/flux" go build -trimpath -ldflags "-s -w" \
    -o "$CACHE/store/kustomize-controller@$KC_VERSION/kustomize-controller" github.com/fluxcd/kustomize-controller
  # The controllers' CRDs, from the same module versions (config/crd/bases in the module zips).
  CRDS="$CACHE/$KEY/crds"
  if ! compgen -G "$CRDS/*.yaml" >/dev/null; then
    mkdir -p "$CRDS"
    for m in source-controller kustomize-controller; do
      d="$(cd "$HERE/flux" && go list -m -f '{{.Dir}}' "github.com/fluxcd/$m")"
      [[ -d "$d/config/crd/bases" ]] || die "no CRDs in $d/config/crd/bases"
      cp "$d"/config/crd/bases/*.yaml "$CRDS/"
    done
    chmod 644 "$CRDS"/*.yaml
    say "Flux CRDs copied to $CRDS"
  fi
fi

# Argo CD (STARMAP_E2E_ARGOCD=1): one multi-call binary, linked under the names of the roles
# the hub runs (the name it is started under picks the role). Its go.mod declares go 1.27.0,
# so this build alone uses the go1.27.3 toolchain from the proxy. 267 s in a cold CI run.
if [[ "${STARMAP_E2E_ARGOCD:-0}" == 1 ]]; then
  ARGOCD_VERSION="$(modver "$HERE/argocd/go.mod" github.com/argoproj/argo-cd/v3)"
  [[ -n "$ARGOCD_VERSION" ]] || die "cannot read the Argo CD version from $HERE/argocd/go.mod"
  build_one argocd "$ARGOCD_VERSION" "$HERE/argocd" env GOTOOLCHAIN=go1.27.3 GOFLAGS="-mod=mod -buildvcs=false" \
    go build -trimpath -ldflags "-s -w -X github.com/argoproj/argo-cd/v3/common.version=$ARGOCD_VERSION" \
    -o "$CACHE/store/argocd@$ARGOCD_VERSION/argocd" github.com/argoproj/argo-cd/v3/cmd
  for role in argocd-application-controller argocd-repo-server argocd-applicationset-controller; do
    ln -sfn "$CACHE/store/argocd@$ARGOCD_VERSION/argocd" "$BIN/$role"
  done
  # The CRDs of the version that runs (manifests/crds in its module zip).
  ARGOCD_CRDS="$CACHE/$KEY/argocd-crds-$ARGOCD_VERSION"
  if ! compgen -G "$ARGOCD_CRDS/*.yaml" >/dev/null; then
    d="$(cd "$HERE/argocd" && GOTOOLCHAIN=go1.27.3 go list -m -f '{{.Dir}}' github.com/argoproj/argo-cd/v3)"
    [[ -d "$d/manifests/crds" ]] || die "no CRDs in $d/manifests/crds"
    mkdir -p "$ARGOCD_CRDS"
    cp "$d"/manifests/crds/*-crd.yaml "$ARGOCD_CRDS/"
    chmod 644 "$ARGOCD_CRDS"/*.yaml
    say "Argo CD CRDs copied to $ARGOCD_CRDS"
  fi
  ln -sfn "$ARGOCD_CRDS" "$CACHE/$KEY/argocd-crds"
  # What Argo CD's image puts beside the binary (its Dockerfile): the repo server runs
  # git-verify-wrapper.sh on every revision it renders (a missing script reads as "permission
  # denied") and `kustomize build` on every path holding a kustomization.yaml.
  ARGOCD_MOD="$(cd "$HERE/argocd" && GOTOOLCHAIN=go1.27.3 go list -m -f '{{.Dir}}' github.com/argoproj/argo-cd/v3)"
  for script in git-verify-wrapper.sh gpg-wrapper.sh; do
    install -m 755 "$ARGOCD_MOD/hack/$script" "$BIN/$script"
  done
  # kustomize: the version kubectl embeds (the k8s module's go.mod), so that Argo CD builds each
  # cluster directory exactly as `kubectl kustomize` does in the rest of the tests. (The version
  # Argo CD's hack/tool-versions.sh pins needs a kube-openapi the module proxy does not serve.)
  KUSTOMIZE_VERSION="$(modver "$HERE/k8s/go.mod" sigs.k8s.io/kustomize/kustomize/v5)"
  [[ -n "$KUSTOMIZE_VERSION" ]] || die "cannot read the kustomize version from $HERE/k8s/go.mod"
  build_one kustomize "$KUSTOMIZE_VERSION" "$HERE/k8s" env GOFLAGS=-mod=mod \
    go build -trimpath -ldflags "-s -w" -o "$CACHE/store/kustomize@$KUSTOMIZE_VERSION/kustomize" sigs.k8s.io/kustomize/kustomize/v5
fi

if (( BUILT > 0 )); then
  say "built $BUILT binaries in $((SECONDS - TOTAL_START))s (cold build) into $BIN"
else
  say "all binaries cached in $BIN"
fi
if (( PRINT_BIN )); then echo "$BIN"; fi

#!/usr/bin/env bash
# Start N local Kubernetes control planes on 127.0.0.1 for starmap's end-to-end tests.
#   tests/e2e/up.sh N [name...]      (names default to c1..cN)
# Each cluster: etcd (--unsafe-no-fsync), kube-apiserver, kube-controller-manager,
# kube-scheduler (both --leader-elect=false) and kwok managing one fake Node, on its own ports.
# Unless STARMAP_E2E_NO_FLUX=1, also installs the Flux CRDs and runs source-controller and
# kustomize-controller per cluster, out of cluster (namespace flux-system).
# Also serves bare git repos in $RUN/git over smart HTTP at the URL written to $RUN/git-url,
# and (with Flux or Argo CD) an OCI registry at the host:port written to $RUN/registry-host.
# Writes one kubeconfig with a context per cluster (named like the cluster).
# Every process runs under `timeout`, so the fleet stops by itself after STARMAP_E2E_TTL
# seconds even if down.sh is never run. Stop it with tests/e2e/down.sh.
# Environment:
#   STARMAP_E2E_RUN      run dir: logs/, pids/, pki/, data/, kubeconfig (default /tmp/starmap-e2e)
#   STARMAP_E2E_TTL      lifetime in seconds (default 1800)
#   STARMAP_E2E_PORT_BASE  first port (default 21000); cluster i uses PORT_BASE + 100*i + k
#   STARMAP_E2E_CACHE    binary cache, see build.sh
#   STARMAP_E2E_NO_FLUX=1           clusters only
#   STARMAP_E2E_ARGOCD=1            also an Argo CD hub on the first cluster (see below)
#   STARMAP_E2E_KEEP_ON_FAILURE=1   leave processes running when startup fails (for debugging)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
say() { echo "[e2e up] $*" >&2; }
# On failure, stop what was started (logs are kept) unless STARMAP_E2E_KEEP_ON_FAILURE=1.
die() {
  say "ERROR: $*"; say "logs: $RUN/logs"
  if [[ "${STARMAP_E2E_KEEP_ON_FAILURE:-0}" != 1 && -n "${STARTED_ANY:-}" ]]; then
    STARMAP_E2E_RUN="$RUN" "$HERE/down.sh" || true
  fi
  exit 1
}

N="${1:-}"
[[ "$N" =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 N [name...]" >&2; exit 2; }
shift
NAMES=("$@")
if (( ${#NAMES[@]} == 0 )); then for ((i = 1; i <= N; i++)); do NAMES+=("c$i"); done; fi
(( ${#NAMES[@]} == N )) || { echo "give exactly N names (got ${#NAMES[@]})" >&2; exit 2; }

RUN="${STARMAP_E2E_RUN:-/tmp/starmap-e2e}"
TTL="${STARMAP_E2E_TTL:-1800}"
PORT_BASE="${STARMAP_E2E_PORT_BASE:-21000}"
KUBECONFIG_OUT="$RUN/kubeconfig"

for t in openssl curl timeout setsid; do command -v "$t" >/dev/null || die "$t not found"; done

if [[ -d "$RUN/pids" ]] && compgen -G "$RUN/pids/*.pid" >/dev/null; then
  die "$RUN/pids has PID files: a fleet may be running; run tests/e2e/down.sh first"
fi

START=$SECONDS
BIN="$("$HERE/build.sh" --print-bin)"
# kubectl of the fleet's own version, built with it.
export PATH="$BIN:$PATH"
FLUX=1
[[ "${STARMAP_E2E_NO_FLUX:-0}" == 1 || ! -f "$HERE/flux/go.mod" ]] && FLUX=0
need=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok kubectl)
(( FLUX )) && need+=(source-controller kustomize-controller registry)
for b in "${need[@]}"; do
  [[ -x "$BIN/$b" ]] || die "missing $BIN/$b"
done
CRDS="$(dirname "$BIN")/crds"
ARGOCD=0
if [[ "${STARMAP_E2E_ARGOCD:-0}" == 1 ]]; then
  ARGOCD=1
  ARGOCD_CRDS="$(dirname "$BIN")/argocd-crds"
  for b in argocd-application-controller argocd-repo-server argocd-applicationset-controller registry; do
    [[ -x "$BIN/$b" ]] || die "missing $BIN/$b (STARMAP_E2E_ARGOCD=1 tests/e2e/build.sh builds it)"
  done
  compgen -G "$ARGOCD_CRDS/*.yaml" >/dev/null || die "no Argo CD CRDs in $ARGOCD_CRDS (run build.sh)"
  command -v redis-server >/dev/null || die "redis-server not found (Debian: apt-get install redis-server)"
fi
(( FLUX )) && { compgen -G "$CRDS/*.yaml" >/dev/null || die "no Flux CRDs in $CRDS (run build.sh)"; }

mkdir -p "$RUN/logs" "$RUN/pids" "$RUN/pki" "$RUN/data"
echo "$TTL" >"$RUN/ttl"
date -u +%s >"$RUN/started"

# ---------------------------------------------------------------- PKI (shared by all clusters)
PKI="$RUN/pki"
if [[ ! -f "$PKI/admin.crt" ]]; then
  say "making certificates in $PKI"
  (
    cd "$PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 \
      -subj "/CN=starmap-e2e-ca" 2>/dev/null
    cat >serving.ext <<'EOF'
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.0.0.1
extendedKeyUsage=serverAuth
keyUsage=digitalSignature,keyEncipherment
EOF
    openssl req -newkey rsa:2048 -nodes -keyout serving.key -out serving.csr -subj "/CN=kube-apiserver" 2>/dev/null
    openssl x509 -req -in serving.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
      -extfile serving.ext -out serving.crt 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n' >client.ext
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr \
      -subj "/O=system:masters/CN=starmap-e2e-admin" 2>/dev/null
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
      -extfile client.ext -out admin.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    rm -f ./*.csr
  ) || die "openssl failed"
fi

# ---------------------------------------------------------------- helpers
# spawn <name> <cmd...>: run in its own session under timeout; log to logs/<name>.log.
spawn() {
  local name="$1"; shift
  setsid timeout -k 10 "$TTL" "$@" >"$RUN/logs/$name.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$RUN/pids/$name.pid"
  STARTED_ANY=1
}

# check_alive: fail fast, with the log tail, if any started component has exited.
check_alive() {
  local f pid name
  for f in "$RUN"/pids/*.pid; do
    [[ -e "$f" ]] || continue
    pid="$(cat "$f")"; name="$(basename "$f" .pid)"
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 15 "$RUN/logs/$name.log" >&2 || true
      die "$name exited during startup, see $RUN/logs/$name.log"
    fi
  done
}

# wait_for <what> <seconds> <cmd...>: poll cmd every 0.5 s while every component is alive.
wait_for() {
  local what="$1" secs="$2"; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    check_alive
    if (( SECONDS >= deadline )); then die "timed out after ${secs}s waiting for $what"; fi
    sleep 0.5
  done
}

# Shared kubeconfig for one cluster's components (admin identity), plus the fleet kubeconfig.
write_kubeconfig() { # write_kubeconfig <file> <name> <server>
  local f="$1" name="$2" server="$3"
  KUBECONFIG="$f" kubectl config set-cluster "$name" --server="$server" \
    --certificate-authority="$PKI/ca.crt" --embed-certs=true >/dev/null
  KUBECONFIG="$f" kubectl config set-credentials "$name-admin" \
    --client-certificate="$PKI/admin.crt" --client-key="$PKI/admin.key" --embed-certs=true >/dev/null
  KUBECONFIG="$f" kubectl config set-context "$name" --cluster="$name" --user="$name-admin" >/dev/null
}

rm -f "$KUBECONFIG_OUT"

# ---------------------------------------------------------------- start each cluster
for ((i = 1; i <= N; i++)); do
  name="${NAMES[i - 1]}"
  p=$((PORT_BASE + 100 * i))
  ETCD_CLIENT=$((p + 1)); ETCD_PEER=$((p + 2)); API=$((p + 43))
  KCM=$((p + 57)); SCHED=$((p + 59)); KWOK=$((p + 47))
  dir="$RUN/data/$name"; mkdir -p "$dir"
  kc="$dir/kubeconfig"; rm -f "$kc"
  write_kubeconfig "$kc" "$name" "https://127.0.0.1:$API"
  KUBECONFIG="$kc" kubectl config use-context "$name" >/dev/null
  write_kubeconfig "$KUBECONFIG_OUT" "$name" "https://127.0.0.1:$API"
  echo "name=$name api=$API etcd=$ETCD_CLIENT kcm=$KCM scheduler=$SCHED kwok=$KWOK" >"$dir/ports"

  say "$name: etcd on 127.0.0.1:$ETCD_CLIENT"
  spawn "$name-etcd" "$BIN/etcd" --name "$name" --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
    --initial-cluster "$name=http://127.0.0.1:$ETCD_PEER" \
    --unsafe-no-fsync --quota-backend-bytes 1073741824 --log-level warn

  say "$name: kube-apiserver on https://127.0.0.1:$API"
  spawn "$name-kube-apiserver" "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_CLIENT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API" \
    --tls-cert-file "$PKI/serving.crt" --tls-private-key-file "$PKI/serving.key" \
    --client-ca-file "$PKI/ca.crt" \
    --service-account-key-file "$PKI/sa.key" --service-account-signing-key-file "$PKI/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range 10.0.0.0/24 --authorization-mode Node,RBAC \
    --endpoint-reconciler-type=none \
    --allow-privileged=true --profiling=false --v=1

  say "$name: kube-controller-manager (secure port $KCM), kube-scheduler (secure port $SCHED)"
  # They start retrying until the apiserver answers, so no need to wait here. No
  # --authentication/authorization-kubeconfig: without a front-proxy CA on the apiserver they
  # only log "missing content for CA bundle requestheader-client-ca-file" errors.
  spawn "$name-kube-controller-manager" "$BIN/kube-controller-manager" \
    --kubeconfig "$kc" \
    --bind-address 127.0.0.1 --secure-port "$KCM" --leader-elect=false \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --use-service-account-credentials=false --profiling=false --v=1 \
    --node-monitor-grace-period=2m
  spawn "$name-kube-scheduler" "$BIN/kube-scheduler" \
    --kubeconfig "$kc" \
    --bind-address 127.0.0.1 --secure-port "$SCHED" --leader-elect=false --profiling=false --v=1

  # kwok renews the node's Lease like a kubelet (else the node lifecycle controller sees the
  # node as unreachable between status updates and marks every pod NotReady for good, since
  # kwok sets pod readiness only once); the longer grace period covers a loaded machine.
  # The node IP is not loopback: the endpoints controller rejects loopback addresses of
  # hostNetwork pods.
  say "$name: kwok (server 127.0.0.1:$KWOK)"
  spawn "$name-kwok" "$BIN/kwok" --kubeconfig "$kc" \
    --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --cidr=10.244.0.0/16 --node-ip=10.255.0.1 \
    --node-lease-duration-seconds=40 \
    --server-address "127.0.0.1:$KWOK"
done

# ---------------------------------------------------------------- readiness
for ((i = 1; i <= N; i++)); do
  name="${NAMES[i - 1]}"
  kc="$RUN/data/$name/kubeconfig"
  k() { kubectl --kubeconfig "$kc" "$@"; }
  say "$name: waiting for /readyz"
  wait_for "$name /readyz" 120 k get --raw /readyz
  say "$name: creating fake Node $name-node-0 (managed by kwok)"
  # No taint: the fleet has no real nodes, so every workload may land on the fake one.
  k apply -f - >/dev/null <<EOF || die "$name: cannot create the fake Node"
apiVersion: v1
kind: Node
metadata:
  name: $name-node-0
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: $name-node-0
    kubernetes.io/os: linux
    kubernetes.io/role: agent
    node-role.kubernetes.io/agent: ""
    type: kwok
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
  nodeInfo:
    architecture: amd64
    bootID: ""
    containerRuntimeVersion: ""
    kernelVersion: ""
    kubeProxyVersion: fake
    kubeletVersion: fake
    machineID: ""
    operatingSystem: linux
    osImage: ""
    systemUUID: ""
  phase: Running
EOF
done
for ((i = 1; i <= N; i++)); do
  name="${NAMES[i - 1]}"
  kc="$RUN/data/$name/kubeconfig"
  say "$name: waiting for the Node to be Ready and the default ServiceAccount"
  wait_for "$name node Ready (kwok log: $RUN/logs/$name-kwok.log)" 90 \
    kubectl --kubeconfig "$kc" wait --for=condition=Ready "node/$name-node-0" --timeout=5s
  wait_for "$name default ServiceAccount (kcm log: $RUN/logs/$name-kube-controller-manager.log)" 90 \
    kubectl --kubeconfig "$kc" get serviceaccount default -n default
done

# ---------------------------------------------------------------- git (for Flux and Argo CD)
if (( FLUX || ARGOCD )); then
  # One smart-HTTP git server for the fleet: bare repos under $RUN/git, URL
  # http://127.0.0.1:$GIT_PORT/git/<name>.git (git-http.py wraps git http-backend).
  GIT_PORT=$((PORT_BASE + 90))
  mkdir -p "$RUN/git"
  command -v python3 >/dev/null || die "python3 not found (needed for the git server)"
  say "git smart-HTTP server: http://127.0.0.1:$GIT_PORT/git/<repo>.git serving $RUN/git"
  spawn git-http python3 "$HERE/git-http.py" "$RUN/git" "$GIT_PORT"
  echo "http://127.0.0.1:$GIT_PORT/git" >"$RUN/git-url"
fi

# ---------------------------------------------------------------- the OCI registry
if (( FLUX || ARGOCD )); then
  # What the edges' Flux, or Argo CD's repo server, pull artifacts from (plain HTTP, files in
  # $RUN/registry).
  REGISTRY_PORT=$((PORT_BASE + 91))
  mkdir -p "$RUN/registry"
  printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:%s\n' \
    "$RUN/registry/data" "$REGISTRY_PORT" >"$RUN/registry/config.yml"
  say "OCI registry (CNCF Distribution): 127.0.0.1:$REGISTRY_PORT"
  spawn registry "$BIN/registry" serve "$RUN/registry/config.yml"
  wait_for "the OCI registry (log: $RUN/logs/registry.log)" 30 curl -fsS "http://127.0.0.1:$REGISTRY_PORT/v2/"
  echo "127.0.0.1:$REGISTRY_PORT" >"$RUN/registry-host"
fi

# ---------------------------------------------------------------- Flux (out of cluster)
if (( FLUX )); then
  for ((i = 1; i <= N; i++)); do
    name="${NAMES[i - 1]}"
    dir="$RUN/data/$name"; kc="$dir/kubeconfig"
    p=$((PORT_BASE + 100 * i))
    SC_METRICS=$((p + 80)); SC_HEALTH=$((p + 81)); SC_STORAGE=$((p + 82))
    KC_METRICS=$((p + 85)); KC_HEALTH=$((p + 86))
    echo "source-controller: metrics=$SC_METRICS health=$SC_HEALTH storage=$SC_STORAGE kustomize-controller: metrics=$KC_METRICS health=$KC_HEALTH" >>"$dir/ports"
    say "$name: Flux CRDs, namespace flux-system"
    kubectl --kubeconfig "$kc" apply --server-side -f "$CRDS" >/dev/null || die "$name: cannot apply Flux CRDs"
    kubectl --kubeconfig "$kc" create namespace flux-system --dry-run=client -o yaml \
      | kubectl --kubeconfig "$kc" apply -f - >/dev/null
    kubectl --kubeconfig "$kc" wait --for=condition=Established crd --all --timeout=60s >/dev/null \
      || die "$name: Flux CRDs not Established"
    mkdir -p "$dir/flux-storage"
    say "$name: source-controller (storage http://127.0.0.1:$SC_STORAGE), kustomize-controller"
    spawn "$name-source-controller" env KUBECONFIG="$kc" RUNTIME_NAMESPACE=flux-system \
      "$BIN/source-controller" --metrics-addr "127.0.0.1:$SC_METRICS" --health-addr "127.0.0.1:$SC_HEALTH" \
      --storage-path "$dir/flux-storage" --storage-addr "127.0.0.1:$SC_STORAGE" \
      --storage-adv-addr "127.0.0.1:$SC_STORAGE" --log-level info
    spawn "$name-kustomize-controller" env KUBECONFIG="$kc" RUNTIME_NAMESPACE=flux-system \
      "$BIN/kustomize-controller" --metrics-addr "127.0.0.1:$KC_METRICS" --health-addr "127.0.0.1:$KC_HEALTH" \
      --log-level info
  done
  for ((i = 1; i <= N; i++)); do
    name="${NAMES[i - 1]}"
    p=$((PORT_BASE + 100 * i))
    wait_for "$name source-controller /readyz (log: $RUN/logs/$name-source-controller.log)" 60 \
      curl -fsS "http://127.0.0.1:$((p + 81))/readyz"
    wait_for "$name kustomize-controller /readyz (log: $RUN/logs/$name-kustomize-controller.log)" 60 \
      curl -fsS "http://127.0.0.1:$((p + 86))/readyz"
  done
fi

# ---------------------------------------------------------------- Argo CD hub (out of cluster)
# On the first cluster (the hub): Argo CD's CRDs, namespace, settings and default project,
# every cluster of the fleet as an Argo CD cluster Secret (labelled starmap.dev/managed, as
# starmap's ApplicationSet selects them), then redis, the repo server, the application
# controller and the ApplicationSet controller, all out of cluster.
if (( ARGOCD )); then
  hub="${NAMES[0]}"; hkc="$RUN/data/$hub/kubeconfig"
  ARGO_DIR="$RUN/argocd"; mkdir -p "$ARGO_DIR/tls" "$ARGO_DIR/ssh" "$ARGO_DIR/redis"
  REDIS=$((PORT_BASE + 92)); REPO=$((PORT_BASE + 93)); REPO_METRICS=$((PORT_BASE + 94))
  CTRL_METRICS=$((PORT_BASE + 95)); APPSET_METRICS=$((PORT_BASE + 96)); APPSET_PROBE=$((PORT_BASE + 97))
  APPSET_WEBHOOK=$((PORT_BASE + 98))
  echo "hub=$hub redis=$REDIS repo-server=$REPO repo-metrics=$REPO_METRICS controller-metrics=$CTRL_METRICS appset-metrics=$APPSET_METRICS appset-probe=$APPSET_PROBE" >"$ARGO_DIR/ports"
  # The controllers read their namespace from the kubeconfig's context.
  akc="$ARGO_DIR/kubeconfig"; cp "$hkc" "$akc"
  KUBECONFIG="$akc" kubectl config set-context --current --namespace argocd >/dev/null
  ka() { kubectl --kubeconfig "$hkc" "$@"; }
  say "$hub: Argo CD CRDs, namespace argocd, argocd-cm, argocd-secret, AppProject default"
  ka apply --server-side -f "$ARGOCD_CRDS/" >/dev/null || die "$hub: cannot apply the Argo CD CRDs"
  wait_for "the Argo CD CRDs to be Established" 60 ka wait --for=condition=Established crd --all --timeout=5s
  ka apply -f - >/dev/null <<EOF || die "$hub: cannot create Argo CD's settings"
apiVersion: v1
kind: Namespace
metadata: {name: argocd}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels: {app.kubernetes.io/part-of: argocd}
data:
  timeout.reconciliation: 10s
---
apiVersion: v1
kind: Secret
metadata:
  name: argocd-secret
  namespace: argocd
  labels: {app.kubernetes.io/part-of: argocd}
---
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: default, namespace: argocd}
spec:
  sourceRepos: ["*"]
  destinations: [{server: "*", namespace: "*", name: "*"}]
  clusterResourceWhitelist: [{group: "*", kind: "*"}]
EOF
  ca="$(base64 -w0 <"$PKI/ca.crt")"; cert="$(base64 -w0 <"$PKI/admin.crt")"; key="$(base64 -w0 <"$PKI/admin.key")"
  for ((i = 1; i <= N; i++)); do
    name="${NAMES[i - 1]}"; api=$((PORT_BASE + 100 * i + 43))
    ka apply -f - >/dev/null <<EOF || die "cannot register $name with Argo CD"
apiVersion: v1
kind: Secret
metadata:
  name: cluster-$name
  namespace: argocd
  labels:
    argocd.argoproj.io/secret-type: cluster
    starmap.dev/managed: "true"
stringData:
  name: $name
  server: https://127.0.0.1:$api
  config: '{"tlsClientConfig": {"caData": "$ca", "certData": "$cert", "keyData": "$key"}}'
EOF
  done
  say "Argo CD: redis on 127.0.0.1:$REDIS"
  spawn argocd-redis redis-server --bind 127.0.0.1 --port "$REDIS" --save "" --appendonly no --dir "$ARGO_DIR/redis"
  wait_for "redis (log: $RUN/logs/argocd-redis.log)" 30 redis-cli -p "$REDIS" ping
  argo_env=(env KUBECONFIG="$akc" ARGOCD_FAKE_IN_CLUSTER=true ARGOCD_GPG_ENABLED=false
    ARGOCD_TLS_DATA_PATH="$ARGO_DIR/tls" ARGOCD_SSH_DATA_PATH="$ARGO_DIR/ssh"
    ARGOCD_ASK_PASS_SOCK="$ARGO_DIR/askpass.sock" HOME="$ARGO_DIR")
  say "Argo CD: repo server on 127.0.0.1:$REPO"
  # A branch's commit is cached for 3 min by default (a git webhook refreshes it where Argo CD's
  # API server runs, which the hub does not): 5 s lets a new render reach the edges in seconds.
  spawn argocd-repo-server "${argo_env[@]}" "$BIN/argocd-repo-server" --address 127.0.0.1 --port "$REPO" \
    --metrics-address 127.0.0.1 --metrics-port "$REPO_METRICS" --redis "127.0.0.1:$REDIS" --disable-tls --client-ca-path= \
    --revision-cache-expiration 5s --loglevel info
  wait_for "the Argo CD repo server (log: $RUN/logs/argocd-repo-server.log)" 60 curl -fsS "http://127.0.0.1:$REPO_METRICS/metrics"
  say "Argo CD: application controller, ApplicationSet controller"
  # --persist-resource-health: each resource's health in the Application's status, as
  # docs/argocd.md asks of a hub that starmap reads status from (controller.resource.health.persist
  # in argocd-cmd-params-cm); without it starmap falls back to the Application's own health.
  spawn argocd-application-controller "${argo_env[@]}" "$BIN/argocd-application-controller" \
    --redis "127.0.0.1:$REDIS" --repo-server "127.0.0.1:$REPO" --repo-server-plaintext \
    --metrics-port "$CTRL_METRICS" --app-resync 10 --persist-resource-health --loglevel info
  spawn argocd-applicationset-controller "${argo_env[@]}" "$BIN/argocd-applicationset-controller" \
    --argocd-repo-server "127.0.0.1:$REPO" --repo-server-plaintext \
    --metrics-addr "127.0.0.1:$APPSET_METRICS" --probe-addr "127.0.0.1:$APPSET_PROBE" \
    --webhook-addr "127.0.0.1:$APPSET_WEBHOOK" --loglevel info
  wait_for "the Argo CD application controller (log: $RUN/logs/argocd-application-controller.log)" 60 \
    curl -fsS "http://127.0.0.1:$CTRL_METRICS/metrics"
  wait_for "the ApplicationSet controller (log: $RUN/logs/argocd-applicationset-controller.log)" 60 \
    curl -fsS "http://127.0.0.1:$APPSET_METRICS/metrics"
  echo "$hub" >"$RUN/argocd-hub"
fi

KUBECONFIG="$KUBECONFIG_OUT" kubectl config use-context "${NAMES[0]}" >/dev/null
say "fleet of $N up in $((SECONDS - START))s; stops by itself in ${TTL}s"
say "kubeconfig: $KUBECONFIG_OUT (contexts: ${NAMES[*]}); logs: $RUN/logs; stop: $HERE/down.sh"
echo "$KUBECONFIG_OUT"

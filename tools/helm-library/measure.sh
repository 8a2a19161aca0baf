#!/usr/bin/env bash
# Cold Helm rendering of N distinct value sets of one chart (the chart of benches/helm.rs),
# by the options issue 15 names: one `helm template` process per value set, 1/2/4/8 at a
# time; and one long-lived process rendering every value set with Helm's own library
# (main.go, the same Helm version), 1/2/4 at a time. Checks that every output of every option
# is byte-identical to `helm template`'s. Prints wall times.
#
#   bash benches/helm-library/measure.sh [N]        # default 1000
#
# Needs helm (PATH or ~/.cache/starmap-tools/bin, where .ci/run installs it) and Go.
set -euo pipefail
n=${1:-1000}
here=$(cd "$(dirname "$0")" && pwd)
export PATH="$PATH:$HOME/.cache/starmap-tools/bin"
helm version --short
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$here" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -o "$work/helm-library" .)

chart=$work/chart
mkdir -p "$chart/templates" "$work/values"
cat >"$chart/Chart.yaml" <<'YAML'
apiVersion: v2
name: store-app
version: 0.1.0
appVersion: "6.14.1"
YAML
printf 'replicas: 1\nstoreId: "0"\nregion: none\nimage: ghcr.io/stefanprodan/podinfo:6.14.1\n' >"$chart/values.yaml"
cat >"$chart/templates/deployment.yaml" <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
  namespace: {{ .Release.Namespace }}
  labels: {app: {{ .Release.Name }}, region: {{ .Values.region | quote }}}
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels: {app: {{ .Release.Name }}}
  template:
    metadata:
      labels: {app: {{ .Release.Name }}}
    spec:
      containers:
      - name: app
        image: {{ .Values.image }}
        env:
        - {name: STORE_ID, value: {{ .Values.storeId | quote }}}
YAML
cat >"$chart/templates/configmap.yaml" <<'YAML'
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-config
  namespace: {{ .Release.Namespace }}
data:
  store: {{ .Values.storeId | quote }}
  region: {{ .Values.region | quote }}
YAML
cat >"$chart/templates/service.yaml" <<'YAML'
apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}
  namespace: {{ .Release.Namespace }}
spec:
  selector: {app: {{ .Release.Name }}}
  ports:
  - port: 80
YAML
regions=(us-east us-west eu-central ap-southeast)
for ((i = 0; i < n; i++)); do
  printf 'replicas: %d\nstoreId: "%05d"\nregion: %s\n' $((1 + i % 3)) "$i" "${regions[i % 4]}" >"$work/values/$(printf '%05d' "$i").yaml"
done

seconds() { local s=$1 e; e=$(date +%s.%N); echo "scale=2; ($e - $s) / 1" | bc; }

for p in 1 2 4 8; do
  out=$work/helm-p$p
  mkdir -p "$out"
  start=$(date +%s.%N)
  ls "$work/values" | xargs -P "$p" -I{} sh -c \
    "helm template store-app '$chart' --namespace store --values '$work/values/{}' >'$out/{}'"
  echo "helm template, one process per value set, $p at a time: $(seconds "$start") s"
done
for w in 1 2 4; do
  out=$work/library-w$w
  mkdir -p "$out"
  start=$(date +%s.%N)
  "$work/helm-library" -workers "$w" store-app store "$chart" "$work/values" "$out"
  echo "Helm's library, one process, $w value sets at a time: $(seconds "$start") s"
done
for d in "$work"/helm-p2 "$work"/helm-p4 "$work"/helm-p8 "$work"/library-w*; do
  diff -r "$work/helm-p1" "$d" >/dev/null || { echo "$(basename "$d") differs from helm template"; exit 1; }
done
echo "all $n outputs of every option are byte-identical to helm template's"

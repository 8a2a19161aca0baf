#!/usr/bin/env bash
# Stop everything tests/e2e/up.sh started, by the PIDs it recorded, and clean up data.
#   tests/e2e/down.sh [--purge]    (logs are kept unless --purge, which removes the run dir)
# Each recorded PID is the `timeout` wrapper leading its own session (setsid), so the whole
# process group is signalled: TERM, then KILL after 10 s.
set -euo pipefail

RUN="${STARMAP_E2E_RUN:-/tmp/starmap-e2e}"
PURGE=0
[[ "${1:-}" == "--purge" ]] && PURGE=1
say() { echo "[e2e down] $*" >&2; }

if [[ ! -d "$RUN" ]]; then say "nothing to stop ($RUN absent)"; exit 0; fi

pids=()
for f in "$RUN"/pids/*.pid; do
  [[ -e "$f" ]] || continue
  pid="$(cat "$f")"
  name="$(basename "$f" .pid)"
  # Only signal a process that is still ours: a session leader whose session id is its PID
  # and whose command is `timeout` (guards against PID reuse after the TTL expired).
  if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null \
     && [[ "$(ps -o comm= -p "$pid" 2>/dev/null)" == timeout ]] \
     && [[ "$(ps -o sid= -p "$pid" 2>/dev/null | tr -d ' ')" == "$pid" ]]; then
    say "stopping $name (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || true
    pids+=("$pid")
  fi
  rm -f "$f"
done

deadline=$((SECONDS + 10))
for pid in "${pids[@]}"; do
  while kill -0 "$pid" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    say "pid $pid still alive, KILL"
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
done

rm -rf "$RUN/data" "$RUN/pids" "$RUN/git" "$RUN/pki" "$RUN/ttl" "$RUN/started" "$RUN/git-url" "$RUN/kubeconfig" \
  "$RUN/registry" "$RUN/registry-host"
if (( PURGE )); then rm -rf "$RUN"; say "stopped ${#pids[@]} processes; removed $RUN"
else say "stopped ${#pids[@]} processes; logs kept in $RUN/logs"; fi

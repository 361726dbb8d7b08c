#!/usr/bin/env bash
# Start or stop the bridge's processes in the background: `services.sh up|down|status`.
#   up    the Siteti sandbox (only when SITETI_BASE_URL is unset), ingest, receipts and
#         DISPATCHER_INSTANCES dispatchers (default 1); returns when every one is ready.
#   down  stops what `up` started (pid files in .stack/run/).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
RUN="$ROOT/.stack/run"
LOGS="$ROOT/.stack/logs"
PY="$ROOT/.venv/bin/python"
mkdir -p "$RUN" "$LOGS"

# Export KEY=VALUE lines of a file, except keys the caller already set: the caller wins.
load_env_file() {
  [ -f "$1" ] || return 0
  while IFS='=' read -r key value; do
    [[ -z "$key" || "$key" == \#* ]] && continue
    [ -n "${!key+x}" ] || export "$key=$value"
  done <"$1"
}

# Local secrets for the sandbox and the demo: random, made once, never committed.
ensure_local_secrets() {
  local file="$ROOT/.stack/secrets.env"
  [ -f "$file" ] && return 0
  umask 077
  {
    echo "SITETI_API_KEY=sk_sandbox_$(openssl rand -hex 12)"
    echo "SITETI_SIGNING_SECRET=$(openssl rand -hex 32)"
    echo "SITETI_WEBHOOK_SECRETS=$(openssl rand -hex 32)"
    echo "MONIEPOINT_WEBHOOK_SECRETS=$(openssl rand -hex 32)"
  } >"$file"
}

is_running() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

start() { # name, then the command
  local name="$1"; shift
  if is_running "$name"; then echo "$name already running (pid $(cat "$RUN/$name.pid"))"; return 0; fi
  setsid nohup "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

wait_ready() { # name, url
  local name="$1" url="$2"
  for _ in $(seq 1 120); do
    if curl -fsS -o /dev/null "$url" 2>/dev/null; then echo "$name ready at ${url%/readyz}"; return 0; fi
    if ! is_running "$name"; then
      echo "$name exited during start-up; last lines of $LOGS/$name.log:" >&2
      tail -n 30 "$LOGS/$name.log" >&2; return 1
    fi
    sleep 0.5
  done
  echo "$name not ready after 60 s; see $LOGS/$name.log" >&2; tail -n 30 "$LOGS/$name.log" >&2; return 1
}

up() {
  [ -f "$ROOT/.stack/env" ] || { echo "the stack is not up: run 'make stack-up' first" >&2; exit 1; }
  load_env_file "$ROOT/.stack/env"
  ensure_local_secrets
  load_env_file "$ROOT/.stack/secrets.env"
  export BRIDGE_ENV_FILE="$ROOT/.stack/env"
  local ingest_port="${INGEST_PORT:-8000}" receipts_port="${RECEIPTS_PORT:-8001}"
  local metrics_port="${DISPATCHER_METRICS_PORT:-8002}" sandbox_port="${SANDBOX_PORT:-8090}"

  if [ -z "${SITETI_BASE_URL:-}" ]; then
    export SITETI_BASE_URL="http://127.0.0.1:$sandbox_port/v2.6/accounts/acc_sandbox"
    SANDBOX_API_KEYS="$SITETI_API_KEY" SANDBOX_SIGNING_SECRET="$SITETI_SIGNING_SECRET" \
    SANDBOX_WEBHOOK_SECRETS="$SITETI_WEBHOOK_SECRETS" SANDBOX_PORT="$sandbox_port" \
    SANDBOX_WEBHOOK_URL="http://127.0.0.1:$receipts_port/siteti/webhooks" \
      start sandbox "$PY" -m siteti_sandbox
    wait_ready sandbox "http://127.0.0.1:$sandbox_port/readyz"
  fi
  echo "SITETI_BASE_URL=$SITETI_BASE_URL" >"$RUN/siteti.env"

  start receipts "$PY" -m receipts
  start ingest "$PY" -m ingest
  local count="${DISPATCHER_INSTANCES:-1}"
  for i in $(seq 1 "$count"); do
    DISPATCHER_INSTANCE="dispatcher-$i" DISPATCHER_METRICS_PORT=$((metrics_port + i - 1)) \
      start "dispatcher-$i" "$PY" -m dispatcher
  done
  wait_ready receipts "http://127.0.0.1:$receipts_port/readyz"
  wait_ready ingest "http://127.0.0.1:$ingest_port/readyz"
  for i in $(seq 1 "$count"); do
    wait_ready "dispatcher-$i" "http://127.0.0.1:$((metrics_port + i - 1))/readyz"
  done
}

stop() { # name
  local name="$1" pid
  [ -f "$RUN/$name.pid" ] || return 0
  pid="$(cat "$RUN/$name.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && { echo "$name did not stop in 30 s: killing"; kill -KILL "$pid" || true; }
    echo "$name stopped"
  fi
  rm -f "$RUN/$name.pid"
}

down() {
  for pidfile in "$RUN"/dispatcher-*.pid; do [ -e "$pidfile" ] && stop "$(basename "$pidfile" .pid)"; done
  stop ingest
  stop receipts
  stop sandbox
  rm -f "$RUN/siteti.env"
}

status() {
  for pidfile in "$RUN"/*.pid; do
    [ -e "$pidfile" ] || continue
    name="$(basename "$pidfile" .pid)"
    if is_running "$name"; then echo "$name running (pid $(cat "$pidfile"))"; else echo "$name not running"; fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Start or stop the bridge's processes in the background: `services.sh up|down|status`.
#   up    the Siteti sandbox (only when SITETI_BASE_URL is unset) and the Flutterwave stand-in
#         (only when FLUTTERWAVE_API_BASE_URL is unset), ingest, receipts, the file-drop
#         watcher, the poller (when POLLER_QUERY is set), DISPATCHER_INSTANCES dispatchers
#         (default 1) and the operations console (CONSOLE_PORT, default 8080); returns when
#         every one is ready. First the schema is applied as the owner (`bridge db migrate`);
#         each service then connects with its own login role.
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
  local line key
  while IFS= read -r line; do
    [[ -z "$line" || "$line" == \#* ]] && continue
    key="${line%%=*}"  # split at the first '=' only: base64 secrets end in '='
    [ -n "${!key+x}" ] || export "$line"
  done <"$1"
}

# Local secrets for the sandbox, the providers and the demo: random, made once, never
# committed. A key added in a later version is appended without touching the others.
ensure_local_secrets() {
  local file="$ROOT/.stack/secrets.env" name
  umask 077
  touch "$file"
  add() { grep -q "^$1=" "$file" || echo "$1=$2" >>"$file"; }
  add SITETI_API_KEY "sk_sandbox_$(openssl rand -hex 12)"
  add SITETI_SIGNING_SECRET "$(openssl rand -hex 32)"
  add SITETI_WEBHOOK_SECRETS "$(openssl rand -hex 32)"
  for name in MONIEPOINT_WEBHOOK_SECRETS MONNIFY_CLIENT_SECRETS PAYSTACK_SECRET_KEYS \
      FLUTTERWAVE_SECRET_HASHES FLUTTERWAVE_SECRET_KEY WASAAPAY_WEBHOOK_SECRETS \
      OPENMARKET_PRIVATE_KEYS ADMIN_API_TOKENS; do
    add "$name" "$(openssl rand -hex 32)"
  done
  add GENERIC_WEBHOOK_SECRETS "whsec_$(openssl rand -base64 32)"
  # Data protection (docs/data-protection.md): the sealing key and the blind-index key.
  add BRIDGE_DATA_KEYS "k$(date -u +%Y%m%d):$(openssl rand -base64 32)"
  add BRIDGE_INDEX_KEY "$(openssl rand -base64 32)"
  add API_TOKENS "support:$(openssl rand -hex 24),engineering:$(openssl rand -hex 24),analyst:$(openssl rand -hex 24)"
  # Each service's PostgreSQL login (bridge_<service>_login, see prepare_database).
  for name in INGEST DISPATCHER RECEIPTS; do add "BRIDGE_DB_PASSWORD_$name" "$(openssl rand -hex 24)"; done
}

DB_SERVICES=(ingest dispatcher receipts)

# Least privilege (docs/data-protection.md): the owner (DATABASE_URL of .stack/env) applies the
# schema, which services may not change, and keeps one LOGIN role per service.
prepare_database() {
  local bridge="$ROOT/.venv/bin/bridge" service var pids=()
  "$bridge" db migrate
  for service in "${DB_SERVICES[@]}"; do
    var="BRIDGE_DB_PASSWORD_${service^^}"
    BRIDGE_ROLE_PASSWORD="${!var}" "$bridge" db login-role "bridge_${service}_login" "$service" \
      >/dev/null &
    pids+=($!)
  done
  for service in "${!pids[@]}"; do
    wait "${pids[$service]}" || { echo "bridge db login-role failed for ${DB_SERVICES[$service]}" >&2; return 1; }
  done
}

# DATABASE_URL with the service's login role in place of the owner (passwords are hex: no
# escaping needed).
service_dsn() { # service
  local var="BRIDGE_DB_PASSWORD_${1^^}" rest="${DATABASE_URL#*://}"
  echo "${DATABASE_URL%%://*}://bridge_${1}_login:${!var}@${rest#*@}"
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
  local console_port="${CONSOLE_PORT:-8080}"

  if [ -z "${SITETI_BASE_URL:-}" ]; then
    export SITETI_BASE_URL="http://127.0.0.1:$sandbox_port/v2.6/accounts/acc_sandbox"
    SANDBOX_API_KEYS="$SITETI_API_KEY" SANDBOX_SIGNING_SECRET="$SITETI_SIGNING_SECRET" \
    SANDBOX_WEBHOOK_SECRETS="$SITETI_WEBHOOK_SECRETS" SANDBOX_PORT="$sandbox_port" \
    SANDBOX_WEBHOOK_URL="http://127.0.0.1:$receipts_port/siteti/webhooks" \
      start sandbox "$PY" -m siteti_sandbox
    wait_ready sandbox "http://127.0.0.1:$sandbox_port/readyz"
    # The sandbox knows templates.md's eight; approve every template the rules can choose.
    "$PY" scripts/sandbox_templates.py --sandbox "http://127.0.0.1:$sandbox_port" >/dev/null
  fi
  if [ -z "${FLUTTERWAVE_API_BASE_URL:-}" ]; then
    local standin_port="${FLUTTERWAVE_STANDIN_PORT:-8091}"
    export FLUTTERWAVE_API_BASE_URL="http://127.0.0.1:$standin_port"
    start flutterwave-standin "$PY" -m ingest.flutterwave_standin
    wait_ready flutterwave-standin "http://127.0.0.1:$standin_port/healthz"
  fi
  echo "SITETI_BASE_URL=$SITETI_BASE_URL" >"$RUN/siteti.env"

  prepare_database
  local ingest_dsn dispatcher_dsn
  ingest_dsn="$(service_dsn ingest)"
  dispatcher_dsn="$(service_dsn dispatcher)"
  DATABASE_URL="$(service_dsn receipts)" start receipts "$PY" -m receipts
  # The console needs no database: it calls the admin and audit APIs with each operator's token.
  CONSOLE_PORT="$console_port" CONSOLE_ADMIN_URL="http://127.0.0.1:$metrics_port" \
    CONSOLE_RECEIPTS_URL="http://127.0.0.1:$receipts_port" \
    CONSOLE_INGEST_URL="http://127.0.0.1:$ingest_port" start console "$PY" -m console
  DATABASE_URL="$ingest_dsn" start ingest "$PY" -m ingest
  local count="${DISPATCHER_INSTANCES:-1}"
  for i in $(seq 1 "$count"); do
    DISPATCHER_INSTANCE="dispatcher-$i" DISPATCHER_METRICS_PORT=$((metrics_port + i - 1)) \
      DATABASE_URL="$dispatcher_dsn" start "dispatcher-$i" "$PY" -m dispatcher
  done
  DATABASE_URL="$ingest_dsn" start filedrop "$PY" -m ingest.sources filedrop
  # The poller reads a database view of the operator's choosing: only when one is configured.
  # Without POLLER_DATABASE_URL it reads it as the ingest role (the demo's view grants it).
  if [ -n "${POLLER_QUERY:-}" ]; then
    DATABASE_URL="$ingest_dsn" start poller "$PY" -m ingest.sources poller
  fi
  wait_ready receipts "http://127.0.0.1:$receipts_port/readyz"
  wait_ready console "http://127.0.0.1:$console_port/readyz"
  wait_ready ingest "http://127.0.0.1:$ingest_port/readyz"
  for i in $(seq 1 "$count"); do
    wait_ready "dispatcher-$i" "http://127.0.0.1:$((metrics_port + i - 1))/readyz"
  done
  # Last: its scrape targets are the processes whose pid files now exist.
  bash "$ROOT/scripts/prometheus.sh" up
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
  bash "$ROOT/scripts/prometheus.sh" down
  for pidfile in "$RUN"/dispatcher-*.pid; do [ -e "$pidfile" ] && stop "$(basename "$pidfile" .pid)"; done
  stop poller
  stop filedrop
  stop ingest
  stop console
  stop receipts
  stop flutterwave-standin
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

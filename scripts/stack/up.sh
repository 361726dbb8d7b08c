#!/usr/bin/env bash
# Bring up the local stack: Kafka (KRaft, single node), Redis and PostgreSQL, all under .stack/.
#
# Idempotent: a component that already runs (per its pid file) is health-checked and reused;
# a stale pid file is removed and the component restarted. A component whose URL is already in
# the environment (KAFKA_BOOTSTRAP_SERVERS, REDIS_URL, DATABASE_URL) is not started, only checked.
# Ports: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), REDIS_PORT (6379), POSTGRES_PORT (5432).
# Ends by writing .stack/env and creating the topics (python -m bridge.topics).
# Usage: up.sh [kafka|redis|postgres]...  (none named: all three). Naming components starts
# (or checks) only those, e.g. to bring one back after `down.sh redis`; topics are created
# only when Kafka is among them.
set -euo pipefail

# shellcheck source=scripts/stack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mkdir -p "$RUN_DIR" "$LOG_DIR"

# Two concurrent runs (e.g. parallel make targets) would race on pid files and initdb.
# flock -o: the lock is held by flock itself, so the daemons we start do not inherit it.
if [ -z "${_STACK_UP_LOCKED:-}" ]; then
    export _STACK_UP_LOCKED=1
    exec flock -o -w 600 "$RUN_DIR/up.lock" bash "${BASH_SOURCE[0]}" "$@"
fi

parse_components "$@"
[ "${#ARGS[@]}" -eq 0 ] || die "unknown argument: ${ARGS[0]} (usage: up.sh [kafka|redis|postgres]...)"

T0=$SECONDS
[ -x "$PY" ] || die "no Python venv at $ROOT/.venv: run 'uv sync --frozen --extra dev' first"

EXT_KAFKA="${KAFKA_BOOTSTRAP_SERVERS:-}"
EXT_REDIS="${REDIS_URL:-}"
EXT_PG="${DATABASE_URL:-}"

KAFKA_URL="${EXT_KAFKA:-127.0.0.1:$KAFKA_PORT}"
REDIS_URL_OUT="${EXT_REDIS:-redis://127.0.0.1:$REDIS_PORT/0}"
PG_URL_OUT="${EXT_PG:-postgresql://bridge:bridge@127.0.0.1:$POSTGRES_PORT/bridge}"

KAFKA_LOG="$LOG_DIR/kafka.log"
REDIS_LOG="$LOG_DIR/redis.log"
PG_LOG="$LOG_DIR/postgres.log"

# ---------------------------------------------------------------------------------------------
# Missing system packages: one apt-get run for all of them (a fresh machine lacks redis, maybe
# postgres; java/maven are normally present).
# ---------------------------------------------------------------------------------------------
install_missing_packages() {
    local pkgs=() new_pg=""
    if selected kafka && [ -z "$EXT_KAFKA" ]; then
        command -v java >/dev/null || pkgs+=(default-jre-headless)
        command -v mvn >/dev/null || pkgs+=(maven)
    fi
    if selected redis && [ -z "$EXT_REDIS" ] && ! command -v redis-server >/dev/null; then
        pkgs+=(redis-server)
    fi
    if selected postgres && [ -z "$EXT_PG" ] && [ -z "$(find_pg_bin)" ]; then
        pkgs+=(postgresql)
        new_pg=1
    fi
    # Tools, not components: promtool (make test's rule checks) and the local Prometheus of
    # scripts/prometheus.sh; chromium for the console's browser tests.
    command -v promtool >/dev/null || pkgs+=(prometheus)
    command -v chromium >/dev/null || pkgs+=(chromium)
    [ "${#pkgs[@]}" -gt 0 ] || return 0
    apt_install "${pkgs[@]}"
    # Only services this very install brought in are stopped and kept from starting at boot.
    if [[ " ${pkgs[*]} " == *" redis-server "* ]]; then
        stop_system_service redis-server
    fi
    if [[ " ${pkgs[*]} " == *" prometheus "* ]]; then
        stop_system_service prometheus
    fi
    if [ -n "$new_pg" ]; then
        stop_system_service postgresql
        # Debian creates a "main" cluster on 5432; set it to manual so it never takes our port.
        local conf
        for conf in /etc/postgresql/*/*/start.conf; do
            [ -e "$conf" ] || continue
            as_root pg_ctlcluster "$(basename "$(dirname "$(dirname "$conf")")")" \
                "$(basename "$(dirname "$conf")")" stop >/dev/null 2>&1 || true
            echo manual | as_root tee "$conf" >/dev/null
        done
    fi
}

# ---------------------------------------------------------------------------------------------
# Kafka
# ---------------------------------------------------------------------------------------------
KAFKA_PID=""

kafka_java_opts() {
    # slf4j-simple logs to stderr (-> kafka.log); quiet the per-request logger like Kafka's own
    # log4j config does.
    printf '%s\n' -Xmx768m -Xms256m -Djava.awt.headless=true \
        -Dorg.slf4j.simpleLogger.showDateTime=true \
        "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd HH:mm:ss,SSS" \
        -Dorg.slf4j.simpleLogger.showThreadName=false \
        -Dorg.slf4j.simpleLogger.log.kafka.request.logger=warn \
        -Dorg.slf4j.simpleLogger.log.org.apache.kafka.clients=warn
}

# Jars are fetched only when the cache is missing or was built from another pom.
ensure_kafka_libs() {
    local version marker want
    version="$(kafka_version)"
    [ -n "$version" ] || die "cannot read <kafka.version> from $STACK_SCRIPTS/kafka/pom.xml"
    want="kafka $version pom $(sha256sum "$STACK_SCRIPTS/kafka/pom.xml" | cut -c1-16)"
    marker="$KAFKA_LIBS/.complete"
    if [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ]; then
        return 0
    fi
    log "kafka: fetching Kafka $version jars with Maven into .stack/kafka-libs (once)"
    local tmp="$KAFKA_LIBS.tmp.$$" mvn_log="$LOG_DIR/kafka-fetch.log"
    rm -rf "$tmp"
    if ! mvn -B -q -f "$STACK_SCRIPTS/kafka/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$mvn_log" 2>&1; then
        rm -rf "$tmp"
        die_with_log "kafka: Maven could not fetch the broker jars" "$mvn_log"
    fi
    [ -f "$tmp/kafka_2.13-$version.jar" ] || die_with_log "kafka: kafka_2.13-$version.jar missing after fetch" "$mvn_log"
    echo "$want" >"$tmp/.complete"
    rm -rf "$KAFKA_LIBS"
    mv "$tmp" "$KAFKA_LIBS"
}

kafka_java() { # main-class args...
    local opts
    mapfile -t opts < <(kafka_java_opts)
    java "${opts[@]}" -cp "$KAFKA_LIBS/*" "$@"
}

kafka_start() {
    if KAFKA_PID="$(running_pid "$RUN_DIR/kafka.pid" "$KAFKA_PROPS")"; then
        check_reused_port kafka "$(sed -n 's|^listeners=PLAINTEXT://127.0.0.1:\([0-9]*\),.*|\1|p' "$KAFKA_PROPS")" "$KAFKA_PORT"
        log "kafka: already running (pid $KAFKA_PID), reusing it"
        return 0
    fi
    clear_stale_pidfile kafka "$RUN_DIR/kafka.pid"
    local hint="Stop it, or set KAFKA_PORT/KAFKA_CONTROLLER_PORT, or KAFKA_BOOTSTRAP_SERVERS to use it."
    ensure_port_free kafka "$KAFKA_PORT" "$hint"
    ensure_port_free kafka-controller "$KAFKA_CONTROLLER_PORT" "$hint"
    ensure_kafka_libs

    mkdir -p "$KAFKA_DATA"
    sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" \
        -e "s|@KAFKA_CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
        -e "s|@KAFKA_DATA@|$KAFKA_DATA|g" \
        "$STACK_SCRIPTS/kafka/server.properties.in" >"$KAFKA_PROPS"

    # Format once; a formatted dir is reused as is (a later port change is fine: tested).
    if [ ! -f "$KAFKA_DATA/meta.properties" ]; then
        log "kafka: formatting KRaft storage in .stack/kafka-data"
        local cluster_id
        cluster_id="$(kafka_java kafka.tools.StorageTool random-uuid 2>>"$KAFKA_LOG")" ||
            die_with_log "kafka: StorageTool random-uuid failed" "$KAFKA_LOG"
        kafka_java kafka.tools.StorageTool format --standalone -t "$cluster_id" -c "$KAFKA_PROPS" \
            >>"$KAFKA_LOG" 2>&1 || die_with_log "kafka: StorageTool format failed" "$KAFKA_LOG"
    fi

    log "kafka: starting Kafka $(kafka_version) on 127.0.0.1:$KAFKA_PORT (log: .stack/logs/kafka.log)"
    local opts
    mapfile -t opts < <(kafka_java_opts)
    echo "=== $(date '+%F %T') up.sh: starting kafka" >>"$KAFKA_LOG"
    # setsid+nohup: survives the calling shell (make runs each line in its own shell). The inner
    # bash writes its own pid and execs java, so the pid file holds the JVM's pid.
    rm -f "$RUN_DIR/kafka.pid.new"
    # shellcheck disable=SC2016  # expanded by the inner shell
    setsid nohup bash -c 'echo $$ >"$0.new" && mv "$0.new" "$0" && exec "$@"' "$RUN_DIR/kafka.pid" \
        java "${opts[@]}" -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_PROPS" \
        >>"$KAFKA_LOG" 2>&1 </dev/null &
    local i
    for ((i = 0; i < 50; i++)); do
        [ -s "$RUN_DIR/kafka.pid" ] && break
        sleep 0.1
    done
    KAFKA_PID="$(cat "$RUN_DIR/kafka.pid" 2>/dev/null)" || die_with_log "kafka: no pid file after launch" "$KAFKA_LOG"
}

kafka_wait() {
    local timeout_s="${KAFKA_START_TIMEOUT:-60}" start=$SECONDS
    if [ -n "$EXT_KAFKA" ]; then
        log "kafka: KAFKA_BOOTSTRAP_SERVERS is set, checking $EXT_KAFKA (not starting one)"
        py_check kafka "$EXT_KAFKA" "$timeout_s" || die "kafka at $EXT_KAFKA does not answer a metadata request"
        return 0
    fi
    wait_for_port kafka 127.0.0.1 "$KAFKA_PORT" "$timeout_s" "$KAFKA_PID" "$KAFKA_LOG"
    local left=$((timeout_s - (SECONDS - start)))
    [ "$left" -ge 10 ] || left=10
    # An open port is not a ready broker: wait for a real metadata round trip.
    py_check kafka "$KAFKA_URL" "$left" "$KAFKA_PID" ||
        die_with_log "kafka: broker on 127.0.0.1:$KAFKA_PORT does not answer metadata requests" "$KAFKA_LOG"
}

# ---------------------------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------------------------
REDIS_PID=""

redis_up() {
    if [ -n "$EXT_REDIS" ]; then
        log "redis: REDIS_URL is set, checking $EXT_REDIS (not starting one)"
        py_check redis "$EXT_REDIS" 30 || die "redis at $EXT_REDIS does not answer PING"
        return 0
    fi
    if REDIS_PID="$(running_pid "$RUN_DIR/redis.pid" redis-server)"; then
        check_reused_port redis "$(cat "$RUN_DIR/redis.port" 2>/dev/null)" "$REDIS_PORT"
        log "redis: already running (pid $REDIS_PID), reusing it"
    else
        clear_stale_pidfile redis "$RUN_DIR/redis.pid"
        ensure_port_free redis "$REDIS_PORT" "Stop it, or set REDIS_PORT, or REDIS_URL to use it."
        mkdir -p "$REDIS_DIR"
        log "redis: starting on 127.0.0.1:$REDIS_PORT (log: .stack/logs/redis.log)"
        # Our own instance, not the system service. AOF keeps dedupe keys across restarts.
        redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$REDIS_DIR" \
            --daemonize yes --pidfile "$RUN_DIR/redis.pid" --logfile "$REDIS_LOG" \
            --save "" --appendonly yes </dev/null ||
            die_with_log "redis: redis-server failed to start" "$REDIS_LOG"
        echo "$REDIS_PORT" >"$RUN_DIR/redis.port"
    fi
    local deadline=$((SECONDS + 30)) reply=""
    while :; do
        reply="$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null || true)"
        [ "$reply" = "PONG" ] && break
        # LOADING while the AOF replays: keep waiting.
        [ "$SECONDS" -lt "$deadline" ] || die_with_log "redis: no PONG on 127.0.0.1:$REDIS_PORT within 30s (last reply: ${reply:-none})" "$REDIS_LOG"
        sleep 0.2
    done
    REDIS_PID="$(running_pid "$RUN_DIR/redis.pid" redis-server)" ||
        die_with_log "redis: answers PING but $RUN_DIR/redis.pid is missing" "$REDIS_LOG"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------
PG_PID=""

pg_up() {
    if [ -n "$EXT_PG" ]; then
        log "postgres: DATABASE_URL is set, checking it (not starting one)"
        py_check postgres "$EXT_PG" 30 || die "postgres at DATABASE_URL does not answer 'select 1'"
        return 0
    fi
    local pg_bin
    pg_bin="$(find_pg_bin)"
    [ -n "$pg_bin" ] || die "postgres: no server binaries under /usr/lib/postgresql/*/bin"
    if [ -f "$PG_DATA/PG_VERSION" ] && [ "$(basename "$(dirname "$pg_bin")")" != "$(cat "$PG_DATA/PG_VERSION")" ]; then
        die "postgres: .stack/pg-data is PostgreSQL $(cat "$PG_DATA/PG_VERSION") but only $pg_bin is installed; run scripts/stack/down.sh --purge (deletes local data)"
    fi

    # Unix socket paths are limited to 107 bytes.
    [ "${#RUN_DIR}" -le 90 ] || die "postgres: socket dir $RUN_DIR is too long for a Unix socket; use a shorter checkout path, or set DATABASE_URL"

    local user
    user="$(pg_os_user)"
    mkdir -p "$PG_DATA"
    if is_root; then
        # The postgres user must reach .stack/ and own its data dir, socket dir and log.
        runuser -u postgres -- test -x "$STACK" ||
            die "postgres: the 'postgres' OS user cannot reach $STACK (a parent directory is not searchable); chmod o+x it, or set DATABASE_URL"
        chown postgres: "$PG_DATA" "$RUN_DIR"
        touch "$PG_LOG" && chown postgres: "$PG_LOG"
    fi
    chmod 700 "$PG_DATA"

    if [ ! -f "$PG_DATA/PG_VERSION" ]; then
        log "postgres: initdb in .stack/pg-data (as OS user $user)"
        # Local socket: trust (admin tasks below); TCP: password (the app's role).
        as_pg "$pg_bin/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
            --auth-local=trust --auth-host=scram-sha-256 --no-instructions \
            >>"$PG_LOG" 2>&1 || die_with_log "postgres: initdb failed" "$PG_LOG"
        # shellcheck disable=SC2016  # expanded by the inner shell
        as_pg sh -c 'printf "\n# siteti-bridge local stack\nmax_connections = 200\n" >>"$1/postgresql.conf"' _ "$PG_DATA"
    fi

    # Not `pg_ctl status`: it trusts kill -0, which succeeds on a killed, not yet reaped
    # (zombie) postmaster, so a crashed server would be "reused".
    if PG_PID="$(running_pid "$PG_DATA/postmaster.pid" postgres)"; then
        check_reused_port postgres "$(sed -n 4p "$PG_DATA/postmaster.pid")" "$POSTGRES_PORT"
        log "postgres: already running (pid $PG_PID), reusing it"
    else
        clear_stale_pidfile postgres "$RUN_DIR/postgres.pid"
        # Lock files left by a crash make postgres refuse to start when their pid still answers
        # kill -0 (zombie, or reused by another process). The server is gone: remove them.
        local lock
        for lock in "$PG_DATA/postmaster.pid" "$RUN_DIR/.s.PGSQL.$POSTGRES_PORT.lock"; do
            if [ -f "$lock" ] && ! running_pid "$lock" postgres >/dev/null; then
                log "postgres: removing stale $(basename "$lock") (server gone)"
                rm -f "$lock"
            fi
        done
        ensure_port_free postgres "$POSTGRES_PORT" "Stop it, or set POSTGRES_PORT, or DATABASE_URL to use it."
        log "postgres: starting on 127.0.0.1:$POSTGRES_PORT (log: .stack/logs/postgres.log)"
        # Port, address and socket dir go on the command line so they follow the environment.
        as_pg "$pg_bin/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 \
            -o "-p $POSTGRES_PORT -c listen_addresses=127.0.0.1 -k '$RUN_DIR'" start >/dev/null ||
            die_with_log "postgres: pg_ctl start failed" "$PG_LOG"
    fi
    head -n 1 "$PG_DATA/postmaster.pid" >"$RUN_DIR/postgres.pid"
    PG_PID="$(cat "$RUN_DIR/postgres.pid")"

    local deadline=$((SECONDS + 30))
    until "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$POSTGRES_PORT"; do
        [ "$SECONDS" -lt "$deadline" ] || die_with_log "postgres: pg_isready failed for 30s" "$PG_LOG"
        sleep 0.2
    done

    # The owner role and database; CREATEDB so tests can make throwaway databases, CREATEROLE
    # so its migrations create the services' group roles and `bridge db login-role` their
    # logins (docs/data-protection.md, least privilege). ALTER: stacks made before it.
    "$pg_bin/psql" -h "$RUN_DIR" -p "$POSTGRES_PORT" -U postgres -d postgres -qtA -v ON_ERROR_STOP=1 \
        >/dev/null 2>>"$PG_LOG" <<'SQL' || die_with_log "postgres: creating role/database bridge failed" "$PG_LOG"
SELECT 'CREATE ROLE bridge LOGIN CREATEDB CREATEROLE PASSWORD ''bridge'''
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bridge')\gexec
SELECT 'ALTER ROLE bridge CREATEROLE'
 WHERE NOT (SELECT rolcreaterole FROM pg_roles WHERE rolname = 'bridge')\gexec
SELECT 'CREATE DATABASE bridge OWNER bridge'
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'bridge')\gexec
SQL
}

# ---------------------------------------------------------------------------------------------
install_missing_packages

# Kafka's JVM boots while Redis and PostgreSQL come up.
if selected kafka && [ -z "$EXT_KAFKA" ]; then
    command -v java >/dev/null || die "kafka: java not found (Java 17+ is needed)"
    kafka_start
fi
if selected redis; then redis_up; fi
if selected postgres; then pg_up; fi
if selected kafka; then kafka_wait; fi

# .stack/env first: bridge.topics (and every service) reads it. Only a full start writes it:
# bringing one component back must not rewrite the others' URLs (they may be external).
if [ "${#COMPONENTS[@]}" -eq "${#ALL_COMPONENTS[@]}" ]; then
    {
        echo "KAFKA_BOOTSTRAP_SERVERS=$KAFKA_URL"
        # One broker: topics with one replica are what it can hold (bridge.topics).
        echo "KAFKA_SINGLE_BROKER=true"
        echo "REDIS_URL=$REDIS_URL_OUT"
        echo "DATABASE_URL=$PG_URL_OUT"
    } >"$ENV_FILE.tmp"
    mv "$ENV_FILE.tmp" "$ENV_FILE"
fi

if ! selected kafka; then
    : # the topics are where they were
elif "$PY" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("bridge.topics") is None)' 2>/dev/null; then
    log "topics: python -m bridge.topics"
    (cd "$ROOT" && BRIDGE_ENV_FILE="$ENV_FILE" KAFKA_BOOTSTRAP_SERVERS="$KAFKA_URL" KAFKA_SINGLE_BROKER=true \
        REDIS_URL="$REDIS_URL_OUT" DATABASE_URL="$PG_URL_OUT" "$PY" -m bridge.topics) ||
        die "topics: 'python -m bridge.topics' failed (output above)"
else
    warn "topics: module bridge.topics not found, no topics created"
fi

describe() { # name url pid
    if [ -n "$3" ]; then printf '  %-9s %-55s pid %s\n' "$1" "$2" "$3"; else printf '  %-9s %-55s (external)\n' "$1" "$2"; fi
}
if [ "${#COMPONENTS[@]}" -eq "${#ALL_COMPONENTS[@]}" ]; then
    log "stack is up in $((SECONDS - T0))s (env: ${ENV_FILE#"$ROOT"/}, logs: ${LOG_DIR#"$ROOT"/}/)"
else
    log "${COMPONENTS[*]}: up in $((SECONDS - T0))s"
fi
if selected kafka; then describe kafka "$KAFKA_URL" "$KAFKA_PID"; fi
if selected redis; then describe redis "$REDIS_URL_OUT" "$REDIS_PID"; fi
if selected postgres; then describe postgres "$PG_URL_OUT" "$PG_PID"; fi

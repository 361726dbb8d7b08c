#!/usr/bin/env bash
# Stop what scripts/stack/up.sh started (found by the pid files in .stack/run/), nothing else.
# Harmless when nothing runs. Data is kept unless --purge is given, which also deletes
# .stack/kafka-data, .stack/pg-data and .stack/redis (never the jar cache .stack/kafka-libs).
# Usage: down.sh [--purge] [kafka|redis|postgres]...  (none named: all three).
set -euo pipefail

# shellcheck source=scripts/stack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

parse_components "$@"
PURGE=""
for arg in ${ARGS[@]+"${ARGS[@]}"}; do
    case "$arg" in
    --purge) PURGE=1 ;;
    -h | --help)
        sed -n '2,5s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
        exit 0
        ;;
    *) die "unknown argument: $arg (usage: down.sh [--purge] [kafka|redis|postgres]...)" ;;
    esac
done

STOP_TIMEOUT="${STACK_STOP_TIMEOUT:-20}"

if [ ! -d "$STACK" ]; then
    log "nothing to stop (no .stack/)"
    exit 0
fi

# Same lock as up.sh: never stop a component while up.sh is half-way through starting it.
mkdir -p "$RUN_DIR"
if [ -z "${_STACK_DOWN_LOCKED:-}" ]; then
    export _STACK_DOWN_LOCKED=1
    exec flock -o -w 600 "$RUN_DIR/up.lock" bash "${BASH_SOURCE[0]}" "$@"
fi

# Generic: SIGTERM (Kafka does a controlled shutdown, Redis fsyncs its AOF), then SIGKILL.
stop_by_pidfile() { # name pidfile cmdline-pattern
    local pid
    if pid="$(running_pid "$2" "$3")"; then
        stop_pid "$1" "$pid" "$STOP_TIMEOUT"
        log "$1: stopped"
    elif [ -e "$2" ]; then
        log "$1: not running (stale pid file removed)"
    else
        log "$1: not running"
    fi
    rm -f "$2"
}

# PostgreSQL through pg_ctl (fast = roll back open transactions, checkpoint, exit cleanly).
stop_postgres() {
    local pg_bin pid
    pg_bin="$(find_pg_bin)"
    # running_pid, not `pg_ctl status`: the latter counts a zombie postmaster as running.
    if [ -n "$pg_bin" ] && running_pid "$PG_DATA/postmaster.pid" postgres >/dev/null; then
        log "postgres: stopping (pg_ctl stop -m fast)"
        if as_pg "$pg_bin/pg_ctl" -D "$PG_DATA" -m fast -w -t "$STOP_TIMEOUT" stop >/dev/null 2>&1; then
            log "postgres: stopped"
            rm -f "$RUN_DIR/postgres.pid"
            return 0
        fi
        warn "postgres: pg_ctl stop failed, falling back to signals"
    fi
    # No pg_ctl or it failed: the postmaster pid, if it is still a postgres process.
    if pid="$(running_pid "$RUN_DIR/postgres.pid" postgres)"; then
        stop_pid postgres "$pid" "$STOP_TIMEOUT"
        log "postgres: stopped"
    elif [ -e "$RUN_DIR/postgres.pid" ]; then
        log "postgres: not running (stale pid file removed)"
    else
        log "postgres: not running"
    fi
    rm -f "$RUN_DIR/postgres.pid"
}

# The pattern guards against killing an unrelated process that reused a recorded pid.
if selected kafka; then stop_by_pidfile kafka "$RUN_DIR/kafka.pid" "$KAFKA_PROPS"; fi
if selected redis; then
    stop_by_pidfile redis "$RUN_DIR/redis.pid" redis-server
    rm -f "$RUN_DIR/redis.port"
fi
if selected postgres; then stop_postgres; fi

if [ -n "$PURGE" ]; then
    purge=()
    if selected kafka; then purge+=("$KAFKA_DATA" "$KAFKA_PROPS"); fi
    if selected postgres; then purge+=("$PG_DATA"); fi
    if selected redis; then purge+=("$REDIS_DIR"); fi
    log "purge: deleting ${purge[*]#"$ROOT"/} (keeping .stack/kafka-libs)"
    rm -rf "${purge[@]}"
fi

# shellcheck shell=bash disable=SC2034  # paths are used by the scripts that source this
# Shared helpers for scripts/stack/{up,down,status}.sh. Source it; it only defines things.
#
# Layout (all git-ignored, under the repo root):
#   .stack/kafka-libs/  broker jars fetched by Maven (kept by `down.sh --purge`)
#   .stack/kafka-data/  KRaft log dir          .stack/pg-data/  PostgreSQL cluster
#   .stack/redis/       Redis AOF              .stack/run/      pid files, pg socket, lock
#   .stack/logs/        one log per component  .stack/env       URLs for the services/tests
#
# STACK_DIR (default .stack) puts a second, private stack elsewhere, e.g. with other ports
# for a test that restarts its components; the jar cache stays in .stack/kafka-libs.

# The repo root is found from this file's location, so the scripts work from any cwd.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
STACK_SCRIPTS="$ROOT/scripts/stack"
STACK="${STACK_DIR:-$ROOT/.stack}"
RUN_DIR="$STACK/run"
LOG_DIR="$STACK/logs"
KAFKA_LIBS="$ROOT/.stack/kafka-libs"
KAFKA_DATA="$STACK/kafka-data"
KAFKA_PROPS="$STACK/kafka-server.properties"
PG_DATA="$STACK/pg-data"
REDIS_DIR="$STACK/redis"
ENV_FILE="$STACK/env"

KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
REDIS_PORT="${REDIS_PORT:-6379}"
POSTGRES_PORT="${POSTGRES_PORT:-5432}"

PY="$ROOT/.venv/bin/python"

log() { printf '[stack] %s\n' "$*"; }
warn() { printf '[stack] WARNING: %s\n' "$*" >&2; }
die() {
    printf '[stack] ERROR: %s\n' "$*" >&2
    exit 1
}

# die, naming the log to read and showing its tail.
die_with_log() { # what-failed logfile
    {
        printf '[stack] ERROR: %s\n' "$1"
        printf '[stack] see %s; last 20 lines:\n' "$2"
        if [ -f "$2" ]; then tail -n 20 "$2" | sed 's/^/    /'; else echo "    (no log file)"; fi
    } >&2
    exit 1
}

# The components named on the command line (all three when none is), into COMPONENTS;
# other arguments into ARGS.
ALL_COMPONENTS=(kafka redis postgres)
parse_components() { # args...
    COMPONENTS=()
    ARGS=()
    local arg
    for arg in "$@"; do
        case "$arg" in
        kafka | redis | postgres) COMPONENTS+=("$arg") ;;
        *) ARGS+=("$arg") ;;
        esac
    done
    [ "${#COMPONENTS[@]}" -gt 0 ] || COMPONENTS=("${ALL_COMPONENTS[@]}")
}

selected() { # component
    [[ " ${COMPONENTS[*]} " == *" $1 "* ]]
}

is_root() { [ "$(id -u)" -eq 0 ]; }

as_root() {
    if is_root; then "$@"; else sudo "$@"; fi
}

# PostgreSQL refuses to run as root: as root, run its tools as the `postgres` OS user
# (created by Debian's postgresql-common); otherwise as ourselves.
as_pg() {
    if is_root; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_os_user() {
    if is_root; then echo postgres; else id -un; fi
}

# The PostgreSQL server binaries: the version that created .stack/pg-data if it is installed,
# else the newest installed. Prints nothing when none is installed.
find_pg_bin() {
    local want=""
    [ -f "$PG_DATA/PG_VERSION" ] && want="$(cat "$PG_DATA/PG_VERSION")"
    if [ -n "$want" ] && [ -x "/usr/lib/postgresql/$want/bin/initdb" ]; then
        echo "/usr/lib/postgresql/$want/bin"
        return 0
    fi
    local d
    d="$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' 2>/dev/null | sort -V | tail -n 1)"
    [ -n "$d" ] && dirname "$d"
    return 0
}

# True if the process exists and is not a zombie (a dead child we have not reaped yet).
pid_alive() { # pid
    kill -0 "$1" 2>/dev/null || return 1
    local state
    state="$(sed -n 's/^[0-9]* (.*) \([A-Z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null)"
    [ "$state" != "Z" ]
}

# Prints the pid recorded in a pid file if that process is alive AND its command line contains
# the given text (guards against a recycled pid); returns 1 otherwise.
running_pid() { # pidfile pattern
    local pid
    [ -s "$1" ] || return 1
    pid="$(head -n 1 "$1" | tr -dc '0-9')"
    [ -n "$pid" ] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # A zombie has an empty cmdline, so it counts as dead here.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2" || return 1
    echo "$pid"
}

# Removes a pid file whose process is gone; prints a note.
clear_stale_pidfile() { # name pidfile
    if [ -e "$2" ]; then
        log "$1: stale pid file $2 (process gone), removing it"
        rm -f "$2"
    fi
}

port_open() { # host port
    # shellcheck disable=SC2016  # expanded by the inner shell
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# Waits for a TCP port; fails early if the watched process dies.
wait_for_port() { # name host port timeout_s pid logfile
    local name=$1 host=$2 port=$3 timeout_s=$4 pid=$5 logfile=$6
    local deadline=$((SECONDS + timeout_s))
    until port_open "$host" "$port"; do
        if [ -n "$pid" ] && ! pid_alive "$pid"; then
            die_with_log "$name exited during start-up (pid $pid)" "$logfile"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            die_with_log "$name did not open $host:$port within ${timeout_s}s" "$logfile"
        fi
        sleep 0.2
    done
}

# Refuse to start a component on a port someone else already listens on.
ensure_port_free() { # name port hint
    if port_open 127.0.0.1 "$2"; then
        die "$1: port 127.0.0.1:$2 is already in use by a process this stack did not start. $3"
    fi
}

# A reused process must listen where this run expects it (ports come from the environment).
check_reused_port() { # name running-port wanted-port
    if [ "$2" != "$3" ]; then
        die "$1: already running on port $2, but this run wants port $3; run scripts/stack/down.sh first to change ports"
    fi
}

# SIGTERM, wait, then SIGKILL. Only for pids checked with running_pid.
stop_pid() { # name pid timeout_s
    local name=$1 pid=$2 timeout_s=$3 i
    log "$name: stopping (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < timeout_s * 5; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.2
    done
    warn "$name: still running after ${timeout_s}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 25; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.2
    done
    die "$name: pid $pid survived SIGKILL"
}

# apt-get install, without letting Debian start its own redis/postgresql services: they
# would take the ports our own processes need.
apt_install() { # packages...
    local apt_log="$LOG_DIR/apt.log"
    log "installing with apt-get: $* (log: .stack/logs/apt.log)"
    is_root || command -v sudo >/dev/null || die "need root or sudo to apt-get install $*"
    local policy=/usr/sbin/policy-rc.d added_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod 755 "$policy"
        added_policy=1
    fi
    local rc=0
    as_root apt-get update -qq >>"$apt_log" 2>&1 || rc=$?
    if [ "$rc" -eq 0 ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "$@" >>"$apt_log" 2>&1 || rc=$?
    fi
    if [ -n "$added_policy" ]; then as_root rm -f "$policy"; fi
    [ "$rc" -eq 0 ] || die_with_log "apt-get install $* failed (exit $rc)" "$apt_log"
}

# After a fresh install, a systemd host may still have started the Debian service.
stop_system_service() { # service
    if [ -d /run/systemd/system ]; then
        as_root systemctl disable --now "$1" >/dev/null 2>&1 || true
    else
        as_root service "$1" stop >/dev/null 2>&1 || true
    fi
}

kafka_version() {
    sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$STACK_SCRIPTS/kafka/pom.xml" | head -n 1
}

# Runs a small Python health check with the project's venv (aiokafka, redis, asyncpg).
#   py_check kafka BOOTSTRAP TIMEOUT [PID]   metadata round trip (list_topics)
#   py_check redis URL TIMEOUT               PING
#   py_check postgres URL TIMEOUT            SELECT 1
py_check() {
    "$PY" - "$@" <<'PYEOF'
import asyncio, logging, os, sys, time

logging.disable(logging.CRITICAL)  # aiokafka logs every refused connection while we poll
kind, target, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
pid = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[4] else None
deadline = time.monotonic() + timeout


async def kafka() -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=target, request_timeout_ms=5000)
    try:
        await asyncio.wait_for(admin.start(), 10)
        await asyncio.wait_for(admin.list_topics(), 10)
    finally:
        try:
            await admin.close()
        except Exception:
            pass


async def redis() -> None:
    import redis.asyncio as r

    client = r.Redis.from_url(target, socket_connect_timeout=3, socket_timeout=3)
    try:
        if not await client.ping():
            raise RuntimeError("PING did not answer PONG")
    finally:
        await client.aclose()


async def postgres() -> None:
    import asyncpg

    conn = await asyncpg.connect(target, timeout=5)
    try:
        if await conn.fetchval("select 1") != 1:
            raise RuntimeError("select 1 did not return 1")
    finally:
        await conn.close()


async def main() -> int:
    check = {"kafka": kafka, "redis": redis, "postgres": postgres}[kind]
    last: BaseException | None = None
    while time.monotonic() < deadline:
        if pid is not None:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
            except OSError:
                zombie = True
            if zombie:
                print(f"{kind}: process {pid} exited", file=sys.stderr)
                return 2
        try:
            await check()
            return 0
        except Exception as exc:  # keep polling until the deadline
            last = exc
        await asyncio.sleep(0.5)
    print(f"{kind} health check failed after {timeout:.0f}s: {type(last).__name__}: {last}",
          file=sys.stderr)
    return 1


sys.exit(asyncio.run(main()))
PYEOF
}

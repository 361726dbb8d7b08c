#!/usr/bin/env bash
# Print what the local stack runs (from the pid files in .stack/run/) and the URLs in .stack/env.
# Exit status: 0 if all three components started by up.sh run, 1 otherwise.
set -euo pipefail

# shellcheck source=scripts/stack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

all=0
show() { # name pidfile pattern
    local pid
    if pid="$(running_pid "$2" "$3")"; then
        printf '  %-9s running  pid %-8s log .stack/logs/%s.log\n' "$1" "$pid" "$1"
    else
        local note=""
        [ -e "$2" ] && note="  (stale pid file)"
        printf '  %-9s stopped%s\n' "$1" "$note"
        all=1
    fi
}

show kafka "$RUN_DIR/kafka.pid" "$KAFKA_PROPS"
show redis "$RUN_DIR/redis.pid" redis-server
show postgres "$RUN_DIR/postgres.pid" postgres
if [ -f "$ENV_FILE" ]; then
    echo "  .stack/env:"
    sed 's/^/    /' "$ENV_FILE"
fi
exit "$all"

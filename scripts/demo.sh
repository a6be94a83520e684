#!/bin/sh
# make demo: starts redis-server (temp dir, free port) and mcpgate with
# deploy/conf/demo.yaml on 127.0.0.1, prints the URLs, and stops everything
# on Ctrl-C (or SIGTERM). Environment knobs:
#   MCPGATE_PORT   gateway port (default 8080)
#   MCPGATE_BIN    the binary (default ./mcpgate)
#   DEMO_DIR       state directory (default ./.demo)
set -eu
cd "$(dirname "$0")/.."

MCPGATE_PORT=${MCPGATE_PORT:-8080}
MCPGATE_BIN=${MCPGATE_BIN:-./mcpgate}
DEMO_DIR=${DEMO_DIR:-$PWD/.demo}
mkdir -p "$DEMO_DIR"
chmod 700 "$DEMO_DIR"

free_port() {
    node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

pids=""
cleanup() {
    trap - INT TERM EXIT
    echo
    echo "demo: stopping"
    for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
    for p in $pids; do wait "$p" 2>/dev/null || true; done
    exit 0
}
trap cleanup INT TERM EXIT

# The server secret signs cookies and wraps token keys: random per demo dir.
export MCPGATE_SECRET_FILE="$DEMO_DIR/secret"
[ -s "$MCPGATE_SECRET_FILE" ] || head -c 48 /dev/urandom >"$MCPGATE_SECRET_FILE"
chmod 600 "$MCPGATE_SECRET_FILE"

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$DEMO_DIR" >"$DEMO_DIR/redis.log" 2>&1 &
pids="$pids $!"
export REDIS_URL="redis://127.0.0.1:$redis_port/0"

export MCPGATE_PORT
"$MCPGATE_BIN" check-config deploy/conf/demo.yaml >/dev/null
"$MCPGATE_BIN" -c deploy/conf/demo.yaml 2>"$DEMO_DIR/mcpgate.log" &
pids="$pids $!"

base="http://127.0.0.1:$MCPGATE_PORT"
i=0
until curl -fsS "$base/readyz" >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -gt 100 ]; then
        echo "demo: mcpgate did not become ready; see $DEMO_DIR/mcpgate.log" >&2
        tail -n 20 "$DEMO_DIR/mcpgate.log" >&2
        exit 1
    fi
    sleep 0.1
done

cat <<MSG
demo: mcpgate is up (redis on 127.0.0.1:$redis_port)
  health     $base/healthz
  readiness  $base/readyz
  metrics    $base/metrics
  logs       $DEMO_DIR/mcpgate.log
Press Ctrl-C to stop.
MSG
wait

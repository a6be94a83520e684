#!/bin/sh
# make demo: starts redis-server (temp dir, free port), the demo identity
# provider (tests/idp, an OpenID provider shaped like Asgardeo), and mcpgate
# with deploy/conf/demo.yaml in front of examples/whoami-server, prints the
# URLs, and stops everything on Ctrl-C (or SIGTERM). Environment knobs:
#   MCPGATE_PORT   gateway port (default 8080)
#   IDP_PORT       identity provider port (default 9400)
#   MCPGATE_BIN    the binary (default ./mcpgate)
#   DEMO_DIR       state directory (default ./.demo)
set -eu
cd "$(dirname "$0")/.."

MCPGATE_PORT=${MCPGATE_PORT:-8080}
IDP_PORT=${IDP_PORT:-9400}
MCPGATE_BIN=${MCPGATE_BIN:-./mcpgate}
DEMO_DIR=${DEMO_DIR:-$PWD/.demo}
mkdir -p "$DEMO_DIR"
chmod 700 "$DEMO_DIR"

free_port() {
    node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

wait_http() { # $1 url, $2 what, $3 log
    i=0
    until curl -fsS "$1" >/dev/null 2>&1; do
        i=$((i + 1))
        if [ "$i" -gt 150 ]; then
            echo "demo: $2 did not come up; see $3" >&2
            tail -n 20 "$3" >&2
            exit 1
        fi
        sleep 0.1
    done
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

# Secrets of this demo directory: the server secret and the identity key.
export MCPGATE_SECRET_FILE="$DEMO_DIR/secret"
[ -s "$MCPGATE_SECRET_FILE" ] || head -c 48 /dev/urandom | base64 >"$MCPGATE_SECRET_FILE"
chmod 600 "$MCPGATE_SECRET_FILE"
export MCPGATE_IDENTITY_KEY="$DEMO_DIR/identity-es256.pem"
[ -s "$MCPGATE_IDENTITY_KEY" ] || "$MCPGATE_BIN" keygen "$MCPGATE_IDENTITY_KEY" >/dev/null

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$DEMO_DIR" >"$DEMO_DIR/redis.log" 2>&1 &
pids="$pids $!"
export REDIS_URL="redis://127.0.0.1:$redis_port/0"

# The demo identity provider (npm: oidc-provider), installed from its lock file once.
if [ ! -d tests/idp/node_modules ]; then
    echo "demo: installing the demo identity provider (npm ci in tests/idp)"
    (cd tests/idp && npm ci --no-audit --no-fund --loglevel=error)
fi
node tests/idp/server.mjs --port "$IDP_PORT" \
    --redirect-uri "http://127.0.0.1:$MCPGATE_PORT/callback" >"$DEMO_DIR/idp.log" 2>&1 &
pids="$pids $!"
export IDP_ISSUER="http://127.0.0.1:$IDP_PORT/t/demo/oauth2/token"
wait_http "$IDP_ISSUER/.well-known/openid-configuration" "the identity provider" "$DEMO_DIR/idp.log"

export MCPGATE_PORT
export WHOAMI_BIN="${WHOAMI_BIN:-$PWD/build/rel/examples/whoami-server}"
"$MCPGATE_BIN" check-config deploy/conf/demo.yaml >/dev/null
"$MCPGATE_BIN" -c deploy/conf/demo.yaml 2>"$DEMO_DIR/mcpgate.log" &
pids="$pids $!"

base="http://127.0.0.1:$MCPGATE_PORT"
wait_http "$base/readyz" "mcpgate" "$DEMO_DIR/mcpgate.log"

everything=""
if command -v npx >/dev/null 2>&1; then
    # Fetch the reference server now, so the first session does not wait for npm.
    (npx -y @modelcontextprotocol/server-everything@2026.8.31 stdio </dev/null >/dev/null 2>&1 &)
    everything="  also            $base/mcp/everything   (the MCP reference server)"
fi

cat <<MSG
demo: everything is up
  MCP server URL   $base/mcp/whoami      (paste this into an MCP client)
$everything
  sign in as       alice / alice-pass (roles manager, employee) or bob / bob-pass (employee)
  gateway          $base/healthz  $base/readyz  $base/metrics
  identity keys    $base/.well-known/jwks.json
  identity provider $IDP_ISSUER
  logs             $DEMO_DIR/mcpgate.log  $DEMO_DIR/idp.log
Press Ctrl-C to stop.
MSG
wait

#!/bin/sh
# make bench: mcpgate measured side by side with two npm peers that also bridge a STDIO MCP
# server to Streamable HTTP (supergateway, mcp-proxy), in one run, all on 127.0.0.1.
#
# Each gateway runs alone in turn, in front of the same upstream (build/rel/examples/
# whoami-server); bench/drive.mjs runs the scenarios against it (session setup, throughput with
# wrk, memory and fds, large payloads); mcpgate once more with a warm pool (stdio.warm, session
# setup only); bench/direct (built here from bench/direct.c) drives the upstream itself over its
# stdin/stdout, the ceiling ("child direct"); then mcpgate again with OAuth on (redis-server,
# the test IdP of tests/idp, a token obtained through the real flow by bench/token.mjs).
# bench/report.mjs prints the tables with the ratios mcpgate/row and writes them to
# bench/results/latest.txt and, as Markdown, bench/results/latest.md.
#
# Knobs (environment): BENCH_SECONDS (8) and BENCH_WARMUP (2) per measurement,
# BENCH_CONCURRENCY ("1,16,64"), BENCH_LARGE_BYTES (1048576; 0 skips the large payloads),
# BENCH_WARM (4: stdio.warm of the warm-pool row; 0 skips that row), BENCH_DIRECT (1; 0 skips
# the child-direct row), BENCH_OAUTH (1; 0 skips that scenario), BENCH_PEERS
# ("supergateway mcp-proxy"), BENCH_IDLE_STREAMS (5000; 0 skips the idle-stream scenario),
# BENCH_CLUSTER (1; 0 skips the two-instance rows: via the session's owner, via the other),
# BENCH_EVERYTHING (16: the clients of scenario 2b, server-everything as the upstream; 0 skips it),
# BENCH_EVERYTHING_WARMUP (10 x BENCH_WARMUP: the warm-up of each 2b row, for V8's compiler),
# MCPGATE_BIN (build/rel/mcpgate).
#
# Every process started here is in its own process group and is stopped on exit, on error and
# on Ctrl-C; every wait is bounded; ports are picked free at run time. All of them stay in this
# script's session: with a session each (setsid), the kernel's autogroup scheduler put every
# gateway with its children in one scheduling group against the load generator's, which on a
# saturated 2-core machine raised every gateway's p99 at 16 clients to 15-25 ms and its CPU
# per request by a fifth. A new process group is made by perl's setpgrp (perl-base is in every
# Debian) or by timeout(1), which makes its own.
set -eu
set +m # no job control: a background perl then execs in place, so $! is the server itself
cd "$(dirname "$0")/.."
ROOT=$PWD

BENCH_SECONDS=${BENCH_SECONDS:-8}
BENCH_WARMUP=${BENCH_WARMUP:-2}
BENCH_CONCURRENCY=${BENCH_CONCURRENCY:-1,16,64}
BENCH_LARGE_BYTES=${BENCH_LARGE_BYTES:-1048576}
BENCH_WARM=${BENCH_WARM:-4}
BENCH_DIRECT=${BENCH_DIRECT:-1}
BENCH_OAUTH=${BENCH_OAUTH:-1}
BENCH_PEERS=${BENCH_PEERS-supergateway mcp-proxy} # empty: mcpgate only
MCPGATE_BIN=${MCPGATE_BIN:-$ROOT/build/rel/mcpgate}
WHOAMI=$ROOT/build/rel/examples/whoami-server
NM=$ROOT/bench/node_modules
BENCH_T0=$(date +%s)
BENCH_LOAD_START=$(cat /proc/loadavg)
export BENCH_SECONDS BENCH_WARMUP MCPGATE_BIN BENCH_T0 BENCH_LOAD_START BENCH_LARGE_BYTES BENCH_WARM
# A bound on one driver run: every measurement of it (setup, each concurrency, two large
# payloads) with its warm-up, plus slack for opening sessions and starting wrk.
NCONC=$(echo "$BENCH_CONCURRENCY" | tr -s ', ' '\n' | grep -c .)
DRIVER_TIMEOUT=$(awk -v s="$BENCH_SECONDS" -v w="$BENCH_WARMUP" -v n="$NCONC" 'BEGIN { printf "%d", (s + w) * (n + 3) * 1.5 + 120 }')

say() { echo "bench: $*" >&2; }
die() {
    say "$*"
    exit 1
}

# ---- what the run needs ----------------------------------------------------------------

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    die "node and npm are missing: run 'make deps' (scripts/deps.sh) as root"
fi
if ! command -v wrk >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || die "wrk (the load generator) is missing: sudo apt-get install -y wrk"
    say "installing wrk (Debian package)"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -qq || die "apt-get update failed"
    timeout 300 apt-get install -y -qq --no-install-recommends wrk >/dev/null || die "apt-get install wrk failed"
fi
for tool in perl timeout curl; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (make deps installs curl; perl and timeout are in perl-base and coreutils)"
done
[ -x "$MCPGATE_BIN" ] || die "$MCPGATE_BIN is missing: run 'make' first"
if [ ! -x "$WHOAMI" ]; then
    say "building the upstream, $WHOAMI"
    make --no-print-directory -s build/rel/examples/whoami-server || die "cannot build $WHOAMI"
fi

# The peers (and everything of the IdP) need Node.js 20 or later; Debian 12's own is 18.
NODE_MAJOR=$(node -p 'process.versions.node.split(".")[0]')
if [ "$NODE_MAJOR" -lt 20 ]; then
    NODE_TOO_OLD="needs Node.js >= 20 (this is $(node --version); Debian 12 ships 18: use NodeSource's nodejs 20+)"
    say "the peers and the OAuth scenario $NODE_TOO_OLD: only mcpgate (auth: none) is measured"
else
    NODE_TOO_OLD=""
fi

# npm peers, exactly as bench/package-lock.json pins them (again when the lock changed).
if [ -z "$NODE_TOO_OLD" ] && { [ ! -f "$NM/.package-lock.json" ] ||
    [ -n "$(find bench/package-lock.json -newer "$NM/.package-lock.json")" ]; }; then
    say "installing the peers (npm ci in bench/)"
    (cd bench && timeout 300 npm ci --no-audit --no-fund --loglevel=error) || die "npm ci in bench/ failed"
fi

# The child-direct driver and the large-payload client, built with the flags of the project's
# own C (before TMP exists: a failure here leaves nothing behind).
DIRECT_BIN=$ROOT/build/bench/direct
BIGCALL_BIN=$ROOT/build/bench/bigcall
stale() { # $1 binary, $2... sources: missing or older than one of them
    b=$1
    shift
    [ ! -x "$b" ] || [ -n "$(find "$@" -newer "$b")" ]
}
build_c() { # $1 binary, $2 source, then extra flags
    command -v cc >/dev/null 2>&1 || die "cc is missing (make deps installs gcc)"
    mkdir -p "$ROOT/build/bench"
    say "building $1"
    out=$1
    src=$2
    shift 2
    cc -std=c11 -O2 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -o "$out" "$src" "$@" || die "cannot build $src"
}
if [ "$BENCH_DIRECT" = 1 ] && stale "$DIRECT_BIN" bench/direct.c bench/client.h; then
    build_c "$DIRECT_BIN" bench/direct.c
fi
if [ "$BENCH_LARGE_BYTES" != 0 ] && stale "$BIGCALL_BIN" bench/bigcall.c bench/client.h; then
    # shellcheck disable=SC2046 # pkg-config prints several words
    build_c "$BIGCALL_BIN" bench/bigcall.c $(pkg-config --cflags --libs libcurl)
fi

rm -f "$ROOT"/bench/results/*.log # logs of gateways that failed to start last time
TMP=$(mktemp -d "${TMPDIR:-/tmp}/mcpgate-bench.XXXXXX")
chmod 700 "$TMP"

# ---- process lifetimes -----------------------------------------------------------------

PIDS=""

alive() { # $1 pid: running, not a zombie waiting for us
    [ -r "/proc/$1/stat" ] || return 1
    [ "$(sed 's/.*) //' "/proc/$1/stat" | cut -c1)" != Z ]
}

stop_pid() { # $1 pid (also its process group): TERM, up to 10 s, then KILL
    p=$1
    kill -TERM "$p" 2>/dev/null || true
    i=0
    while alive "$p"; do
        i=$((i + 1))
        if [ "$i" -gt 100 ]; then
            say "process $p did not stop within 10 s of SIGTERM: SIGKILL"
            kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
    wait "$p" 2>/dev/null || true
    kill -TERM -- "-$p" 2>/dev/null || true # whatever is left in its group
    PIDS=$(echo "$PIDS" | tr ' ' '\n' | grep -vx "$p" | tr '\n' ' ' || true)
}

cleanup() {
    st=$?
    trap - EXIT INT TERM
    for p in $PIDS; do stop_pid "$p"; done
    rm -rf "$TMP"
    exit "$st"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start LOG CMD...: in its own process group (same session), stdin from /dev/null; sets PID.
NEW_GROUP='setpgrp(0, 0) or die "setpgrp: $!\n"; exec { $ARGV[0] } @ARGV or die "exec $ARGV[0]: $!\n";'
start() {
    logf=$1
    shift
    perl -e "$NEW_GROUP" -- "$@" </dev/null >"$logf" 2>&1 &
    PID=$!
    PIDS="$PIDS $PID"
}

free_port() {
    node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# wait_up NAME PID URL LOG: until URL answers (any HTTP status), at most 20 s; 1 when not.
wait_up() {
    i=0
    while ! curl -s -o /dev/null --max-time 1 "$3"; do
        if ! alive "$2"; then
            say "$1 exited during start-up; last lines of its log ($4):"
            tail -n 15 "$4" >&2
            return 1
        fi
        i=$((i + 1))
        if [ "$i" -gt 200 ]; then
            say "$1 did not answer $3 within 20 s; last lines of its log ($4):"
            tail -n 15 "$4" >&2
            return 1
        fi
        sleep 0.1
    done
}

# measure NAME URL PID [driver options]: runs the scenarios, then stops the gateway.
measure() {
    name=$1
    url=$2
    pid=$3
    shift 3
    say "measuring $name"
    # In the background and in its own process group (with its wrk runs), so that a signal to
    # this script stops it at once: sh runs traps only after a foreground command ends.
    timeout "$DRIVER_TIMEOUT" node bench/drive.mjs --name "$name" --url "$url" --pid "$pid" --upstream "$WHOAMI" \
        --out "$TMP/$name.json" --seconds "$BENCH_SECONDS" --warmup "$BENCH_WARMUP" \
        --concurrency "$BENCH_CONCURRENCY" --large-bytes "$BENCH_LARGE_BYTES" --bigcall "$BIGCALL_BIN" "$@" &
    dpid=$!
    PIDS="$PIDS $dpid"
    if ! wait "$dpid"; then
        [ -f "$TMP/$name.json" ] || echo "the driver failed; see the messages above" >"$TMP/$name.error"
    fi
    stop_pid "$dpid"
    stop_pid "$pid"
}

failed() { # NAME WHY: a row that says why instead of numbers
    say "$1: $2"
    echo "$2" >"$TMP/$1.error"
}

# start_failed NAME LOG: the row says why, and the log outlives the run.
start_failed() {
    mkdir -p "$ROOT/bench/results"
    cp "$2" "$ROOT/bench/results/$1.log" 2>/dev/null || true
    why=$(grep -m1 -iE 'error|cannot|unknown|invalid|EADDRINUSE' "$2" | cut -c1-120 || true)
    failed "$1" "failed to start${why:+: $why} (log: bench/results/$1.log)"
}

NAMES="mcpgate"

# ---- mcpgate, auth: none, memory store -------------------------------------------------

# Per-request logging is off for every gateway (mcpgate: access_log; supergateway: --logLevel
# none, as its info level logs every message; mcp-proxy logs nothing per request by default).
# $1 port, $2 extra top-level YAML (flow style), $3 route auth, [$4 extra stdio keys (", k: v"),
# $5 extra route line]
write_config() {
    cat <<EOF
server:
  listen: ["127.0.0.1:$1"]
  public_url: "http://127.0.0.1:$1"
  limits: { max_sessions_per_user: 10000 }
routes:
  - name: whoami
    path: /mcp
    auth: $3
    stdio: { command: ["${UPSTREAM_CMD:-$WHOAMI}"]${4:-} }
${5:-}
log: { level: warn, access_log: false }
$2
EOF
}

port=$(free_port)
write_config "$port" "store: { backend: memory }" none >"$TMP/mcpgate.yaml"
"$MCPGATE_BIN" check-config "$TMP/mcpgate.yaml" >"$TMP/check.log" 2>&1 ||
    { cat "$TMP/check.log" >&2; die "mcpgate refused the benchmark configuration"; }
start "$TMP/mcpgate.log" "$MCPGATE_BIN" -c "$TMP/mcpgate.yaml"
if wait_up mcpgate "$PID" "http://127.0.0.1:$port/healthz" "$TMP/mcpgate.log"; then
    measure mcpgate "http://127.0.0.1:$port/mcp" "$PID"
else
    stop_pid "$PID"
    start_failed mcpgate "$TMP/mcpgate.log"
fi

# ---- mcpgate with OAuth: redis, the test IdP, a real token -----------------------------

# Measured right after auth: none, so that the two rows the OAuth ratio compares are a minute
# apart, not the whole run: measured last, auth: none did up to 1.24x its req/s from the VM's
# drift alone (measured adjacent, the same build gave 1.05x to 1.08x).

# start_redis: a redis-server on a free loopback port; sets rport and rpid; 1 when it does not answer.
start_redis() {
    rport=$(free_port)
    start "$TMP/redis.log" redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP"
    rpid=$PID
    i=0
    until node -e 'const s=require("net").connect(+process.argv[1],"127.0.0.1",()=>process.exit(0));s.on("error",()=>process.exit(1))' "$rport"; do
        i=$((i + 1))
        if [ "$i" -gt 100 ] || ! alive "$rpid"; then
            tail -n 5 "$TMP/redis.log" >&2
            return 1
        fi
        sleep 0.1
    done
}

oauth_scenario() {
    command -v redis-server >/dev/null 2>&1 || { failed mcpgate-oauth "skipped: redis-server is missing (make deps)"; return; }
    [ -z "$NODE_TOO_OLD" ] || { failed mcpgate-oauth "skipped: the test IdP $NODE_TOO_OLD"; return; }
    if [ ! -f tests/idp/node_modules/.package-lock.json ]; then
        say "installing the test IdP (npm ci in tests/idp)"
        (cd tests/idp && timeout 300 npm ci --no-audit --no-fund --loglevel=error) ||
            { failed mcpgate-oauth "skipped: npm ci in tests/idp failed"; return; }
    fi

    start_redis || { failed mcpgate-oauth "redis-server did not start"; return; }

    gport=$(free_port)
    iport=$(free_port)
    start "$TMP/idp.log" node tests/idp/server.mjs --port "$iport" \
        --redirect-uri "http://127.0.0.1:$gport/callback"
    ipid=$PID
    issuer="http://127.0.0.1:$iport/t/demo/oauth2/token"
    wait_up "test IdP" "$ipid" "$issuer/.well-known/openid-configuration" "$TMP/idp.log" ||
        { start_failed idp "$TMP/idp.log"; failed mcpgate-oauth "the test IdP did not start"; return; }

    head -c 48 /dev/urandom | base64 >"$TMP/secret"
    write_config "$gport" "store: { backend: redis, redis: { url: \"redis://127.0.0.1:$rport/0\" } }
idp: { preset: oidc, issuer: \"$issuer\", client_id: mcpgate-demo, client_secret: mcpgate-demo-secret }
oauth: { secret_file: \"$TMP/secret\", scopes: { \"mcp:tools\": \"Use the benchmark tools\" } }" oauth \
        >"$TMP/mcpgate-oauth.yaml"
    "$MCPGATE_BIN" check-config "$TMP/mcpgate-oauth.yaml" >"$TMP/check.log" 2>&1 ||
        { cat "$TMP/check.log" >&2; failed mcpgate-oauth "mcpgate refused the OAuth configuration"; return; }
    start "$TMP/mcpgate-oauth.log" "$MCPGATE_BIN" -c "$TMP/mcpgate-oauth.yaml"
    gpid=$PID
    wait_up mcpgate-oauth "$gpid" "http://127.0.0.1:$gport/healthz" "$TMP/mcpgate-oauth.log" ||
        { start_failed mcpgate-oauth "$TMP/mcpgate-oauth.log"; return; }
    i=0 # /readyz: the store answers and the IdP metadata is loaded
    until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$gport/readyz")" = 200 ]; do
        i=$((i + 1))
        [ "$i" -le 150 ] || { tail -n 5 "$TMP/mcpgate-oauth.log" >&2; failed mcpgate-oauth "mcpgate not ready within 15 s"; return; }
        sleep 0.1
    done

    say "obtaining an access token through the real flow (register, consent, IdP login, /token)"
    if ! timeout 60 node bench/token.mjs --base "http://127.0.0.1:$gport" --route /mcp >"$TMP/token"; then
        failed mcpgate-oauth "could not obtain a token through the OAuth flow (see above)"
        return
    fi
    chmod 600 "$TMP/token"
    measure mcpgate-oauth "http://127.0.0.1:$gport/mcp" "$gpid" --auth-file "$TMP/token"
    stop_pid "$ipid"
    stop_pid "$rpid"
}

if [ "$BENCH_OAUTH" = 1 ]; then
    NAMES="$NAMES mcpgate-oauth"
    oauth_scenario
fi

# ---- mcpgate with a warm pool: session setup only -----------------------------------

# stdio.warm needs the identity to reach the child per request only (README, "Warm children").
if [ "$BENCH_WARM" != 0 ]; then
    NAMES="$NAMES mcpgate-warm"
    port=$(free_port)
    write_config "$port" "store: { backend: memory }" none ", warm: $BENCH_WARM" \
        "    identity: { env: false, jwt: false, idp_access_token: false, meta: true }" >"$TMP/mcpgate-warm.yaml"
    if ! "$MCPGATE_BIN" check-config "$TMP/mcpgate-warm.yaml" >"$TMP/check.log" 2>&1; then
        cat "$TMP/check.log" >&2
        failed mcpgate-warm "mcpgate refused the warm-pool configuration (stdio.warm: $BENCH_WARM)"
    else
        start "$TMP/mcpgate-warm.log" "$MCPGATE_BIN" -c "$TMP/mcpgate-warm.yaml"
        if wait_up mcpgate-warm "$PID" "http://127.0.0.1:$port/healthz" "$TMP/mcpgate-warm.log"; then
            sleep 1 # the pool fills
            measure mcpgate-warm "http://127.0.0.1:$port/mcp" "$PID" --only setup
        else
            stop_pid "$PID"
            start_failed mcpgate-warm "$TMP/mcpgate-warm.log"
        fi
    fi
fi

# ---- child direct: the upstream driven over its stdin/stdout, no gateway ---------------

# run_direct NAME UPSTREAM [bench/direct options]: into $TMP/NAME.json, or the row says why.
run_direct() {
    name=$1
    up=$2
    shift 2
    say "measuring $name (bench/direct: $up spawned and driven over its pipes)"
    # Its own process group, as every driver; its children read EOF and exit when it ends.
    timeout "$DRIVER_TIMEOUT" "$DIRECT_BIN" --upstream "$up" --out "$TMP/$name.json" \
        --seconds "$BENCH_SECONDS" --warmup "$BENCH_WARMUP" "$@" &
    dpid=$!
    PIDS="$PIDS $dpid"
    if ! wait "$dpid"; then
        rm -f "$TMP/$name.json"
        failed "$name" "bench/direct failed; see the messages above"
    fi
    stop_pid "$dpid"
}

if [ "$BENCH_DIRECT" = 1 ]; then
    NAMES="$NAMES direct"
    run_direct direct "$WHOAMI" --concurrency "$BENCH_CONCURRENCY" --large-bytes "$BENCH_LARGE_BYTES"
fi

# ---- peers -----------------------------------------------------------------------------

# start_peer NAME PEER PORT UPSTREAM: starts PEER in front of UPSTREAM (one executable) and
# waits until it answers; sets PID; 1 (the row says why) when it does not come up.
start_peer() {
    case $2 in
    supergateway)
        # --stateful: one child per session, as mcpgate. bench/loopback.cjs keeps its listener
        # on 127.0.0.1 (it has no flag for that). No --sessionTimeout: sessions end by DELETE.
        start "$TMP/$1.log" node --require "$ROOT/bench/loopback.cjs" \
            "$NM/supergateway/dist/index.js" --stdio "$4" --outputTransport streamableHttp \
            --stateful --port "$3" --streamableHttpPath /mcp --healthEndpoint /healthz --logLevel none
        health=/healthz
        ;;
    mcp-proxy)
        # Streamable HTTP only (--server stream); never a tunnel, whatever MCP_PROXY_* says.
        start "$TMP/$1.log" node "$NM/mcp-proxy/dist/bin/mcp-proxy.mjs" --host 127.0.0.1 \
            --port "$3" --server stream --streamEndpoint /mcp --no-tunnel -- "$4"
        health=/ping
        ;;
    *)
        failed "$1" "unknown peer"
        return 1
        ;;
    esac
    wait_up "$1" "$PID" "http://127.0.0.1:$3$health" "$TMP/$1.log" && return 0
    stop_pid "$PID"
    start_failed "$1" "$TMP/$1.log"
    return 1
}

for peer in $BENCH_PEERS; do
    NAMES="$NAMES $peer"
    if [ -n "$NODE_TOO_OLD" ]; then
        failed "$peer" "not run: $NODE_TOO_OLD"
        continue
    fi
    port=$(free_port)
    if start_peer "$peer" "$peer" "$port" "$WHOAMI"; then
        measure "$peer" "http://127.0.0.1:$port/mcp" "$PID"
    fi
done

# ---- scenario 2b: the same calls with a Node upstream (server-everything) -----------------

# The upstream of the issue that asked for these numbers (bench/README.md, scenario 2b): every
# front and the child-direct driver run the same small script that execs it over STDIO.
everything_scenario() {
    EVERYTHING=$TMP/server-everything
    printf '#!/bin/sh\nexec node "%s" stdio\n' "$NM/@modelcontextprotocol/server-everything/dist/index.js" >"$EVERYTHING"
    chmod +x "$EVERYTHING"
    NODE_EXE=$(readlink -f "$(command -v node)")
    # V8 compiles a server's hot paths only after thousands of calls per process: after 2 s the
    # 16 children ran at half the rate they reach at 15 s (bench/README.md, scenario 2b).
    ev_opts="--only throughput --concurrency $BENCH_EVERYTHING --upstream $NODE_EXE --echo-arg message"
    ev_opts="$ev_opts --warmup $BENCH_EVERYTHING_WARMUP"
    say "scenario 2b: $BENCH_EVERYTHING clients, upstream server-everything"

    # mcpgate as configured by default, then with its children one CPU priority step set below
    # it (stdio.nice, README "STDIO routes").
    for row in mcpgate:"" mcpgate-nice:", nice: 5"; do
        name=everything-${row%%:*}
        port=$(free_port)
        UPSTREAM_CMD=$EVERYTHING # write_config's route command, for this config only
        write_config "$port" "store: { backend: memory }" none "${row#*:}" >"$TMP/$name.yaml"
        UPSTREAM_CMD=
        start "$TMP/$name.log" "$MCPGATE_BIN" -c "$TMP/$name.yaml"
        if wait_up "$name" "$PID" "http://127.0.0.1:$port/healthz" "$TMP/$name.log"; then
            # shellcheck disable=SC2086
            measure "$name" "http://127.0.0.1:$port/mcp" "$PID" $ev_opts --echo-prefix "Echo: "
        else
            stop_pid "$PID"
            start_failed "$name" "$TMP/$name.log"
        fi
    done
    for peer in $BENCH_PEERS; do
        port=$(free_port)
        if start_peer "everything-$peer" "$peer" "$port" "$EVERYTHING"; then
            # shellcheck disable=SC2086
            measure "everything-$peer" "http://127.0.0.1:$port/mcp" "$PID" $ev_opts --echo-prefix "Echo: "
        fi
    done
    if [ "$BENCH_DIRECT" = 1 ]; then
        run_direct everything-direct "$EVERYTHING" --concurrency "$BENCH_EVERYTHING" \
            --large-bytes 0 --spawn 0 --echo-arg message --echo-prefix "Echo: " \
            --warmup "$BENCH_EVERYTHING_WARMUP"
    fi
}

BENCH_EVERYTHING=${BENCH_EVERYTHING:-16}
BENCH_EVERYTHING_WARMUP=${BENCH_EVERYTHING_WARMUP:-$(awk -v w="$BENCH_WARMUP" 'BEGIN { print w * 10 }')}
if [ "$BENCH_EVERYTHING" != 0 ]; then
    if [ -n "$NODE_TOO_OLD" ]; then
        failed everything-mcpgate "not run: server-everything $NODE_TOO_OLD"
        failed everything-mcpgate-nice "not run: server-everything $NODE_TOO_OLD"
    else
        everything_scenario
    fi
fi

# ---- two instances on one Redis: calls via the session's owner, and via the other ----------

# Sessions opened on A; wrk calls them on A (the owner), then on B, which forwards every call
# to A over the internal channel. CPU counts both processes. C = 16 only.
cluster_scenario() {
    command -v redis-server >/dev/null 2>&1 || { failed cluster-owner "skipped: redis-server is missing (make deps)"; failed cluster-other "skipped"; return; }
    start_redis || { failed cluster-owner "redis-server did not start"; failed cluster-other "skipped"; return; }
    head -c 48 /dev/urandom | base64 >"$TMP/cluster-secret"
    for x in a b; do
        p=$(free_port)
        ip=$(free_port)
        write_config "$p" "store: { backend: redis, redis: { url: \"redis://127.0.0.1:$rport/0\" } }
cluster: { listen: \"127.0.0.1:$ip\", advertise: \"http://127.0.0.1:$ip\", secret_file: \"$TMP/cluster-secret\" }" none \
            >"$TMP/mcpgate-cluster-$x.yaml"
        start "$TMP/mcpgate-cluster-$x.log" "$MCPGATE_BIN" -c "$TMP/mcpgate-cluster-$x.yaml"
        eval "cport_$x=$p cpid_$x=$PID"
        wait_up "mcpgate cluster $x" "$PID" "http://127.0.0.1:$p/healthz" "$TMP/mcpgate-cluster-$x.log" ||
            { start_failed cluster-owner "$TMP/mcpgate-cluster-$x.log"; failed cluster-other "skipped"; stop_pid "$rpid"; return; }
    done
    # shellcheck disable=SC2154 # set by the eval above
    for row in owner other; do
        wport=$cport_a
        [ "$row" = other ] && wport=$cport_b
        say "measuring cluster-$row"
        timeout "$DRIVER_TIMEOUT" node bench/drive.mjs --name "cluster-$row" --url "http://127.0.0.1:$cport_a/mcp" \
            --wrk-url "http://127.0.0.1:$wport/mcp" --pid "$cpid_a" --cpu-pids "$cpid_b" --upstream "$WHOAMI" \
            --out "$TMP/cluster-$row.json" --seconds "$BENCH_SECONDS" --warmup "$BENCH_WARMUP" --concurrency 16 --only throughput &
        dpid=$!
        PIDS="$PIDS $dpid"
        wait "$dpid" || { [ -f "$TMP/cluster-$row.json" ] || echo "the driver failed; see the messages above" >"$TMP/cluster-$row.error"; }
    done
    stop_pid "$cpid_a"
    stop_pid "$cpid_b"
    stop_pid "$rpid"
}

BENCH_CLUSTER=${BENCH_CLUSTER:-1}
if [ "$BENCH_CLUSTER" = 1 ]; then
    NAMES="$NAMES cluster-owner cluster-other"
    cluster_scenario
fi

# ---- idle streams: an HTTP route, mcpgate beside nginx in front of the same upstream --------

# idle_front NAME PORT PIDS: bench/idle.mjs client against one front, into $TMP/idle-NAME.json.
idle_front() {
    say "idle streams: $BENCH_IDLE_STREAMS GET streams through $1"
    timeout 300 node bench/idle.mjs client --port "$2" --path /mcp --pids "$3" --n "$BENCH_IDLE_STREAMS" \
        --out "$TMP/idle-$1.json" >"$TMP/idle-$1.err" 2>&1 ||
        { say "the idle-stream client failed through $1:"; tail -n 5 "$TMP/idle-$1.err" >&2; }
}

idle_scenario() {
    # Each stream is a client socket and an upstream socket in the front, and one in the client.
    need=$((BENCH_IDLE_STREAMS * 2 + 512))
    if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$need" ]; then
        say "idle streams skipped: the hard open-file limit $(ulimit -Hn) is below $need"
        return
    fi
    # nginx also counts, against worker_connections, the client connections of the
    # initialize phase that it is still closing: at 5000 streams 2 x N + 512 made it
    # "reuse connections" and reset some of the streams. Give it a third more.
    nginx_conns=$((BENCH_IDLE_STREAMS * 3 + 512))
    ulimit -n "$nginx_conns" 2>/dev/null || ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    uport=$(free_port)
    start "$TMP/idle-upstream.log" node bench/idle.mjs upstream --port "$uport"
    upid=$PID
    wait_up "idle upstream" "$upid" "http://127.0.0.1:$uport/" "$TMP/idle-upstream.log" || { stop_pid "$upid"; return 0; }

    gport=$(free_port)
    cat >"$TMP/mcpgate-idle.yaml" <<YAML
server:
  listen: ["127.0.0.1:$gport"]
  public_url: "http://127.0.0.1:$gport"
  limits: { max_connections: $need, max_connections_per_ip: $need, max_sessions: $need, max_sessions_per_user: $need, max_upstream_sessions: $need }
store: { backend: memory }
log: { level: warn, access_log: false }
routes:
  - { name: idle, path: /mcp, auth: none, http: { url: "http://127.0.0.1:$uport/mcp" } }
YAML
    "$MCPGATE_BIN" check-config "$TMP/mcpgate-idle.yaml" >"$TMP/check-idle.log" 2>&1 ||
        { cat "$TMP/check-idle.log" >&2; say "idle streams: mcpgate refused its configuration"; stop_pid "$upid"; return; }
    start "$TMP/mcpgate-idle.log" "$MCPGATE_BIN" -c "$TMP/mcpgate-idle.yaml"
    gpid=$PID
    if wait_up mcpgate "$gpid" "http://127.0.0.1:$gport/healthz" "$TMP/mcpgate-idle.log"; then
        idle_front mcpgate "$gport" "$gpid"
    fi
    stop_pid "$gpid"

    if ! command -v nginx >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        say "installing nginx-light (Debian package) for the idle-stream comparison"
        timeout 300 apt-get install -y -qq --no-install-recommends nginx-light >/dev/null || true
    fi
    if command -v nginx >/dev/null 2>&1; then
        nport=$(free_port)
        mkdir -p "$TMP/nginx"
        cat >"$TMP/nginx/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
worker_rlimit_nofile $nginx_conns;
events { worker_connections $nginx_conns; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    upstream idle { server 127.0.0.1:$uport; keepalive 64; }
    server {
        listen 127.0.0.1:$nport;
        location / {
            proxy_pass http://idle;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 1h;
        }
    }
}
NGINX
        start "$TMP/nginx.log" nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf"
        npid=$PID
        if wait_up nginx "$npid" "http://127.0.0.1:$nport/" "$TMP/nginx.log"; then
            workers=$(pgrep -P "$npid" | tr '\n' ',' | sed 's/,$//')
            idle_front nginx "$nport" "$npid${workers:+,$workers}"
        fi
        stop_pid "$npid"
    else
        say "idle streams: nginx is missing (apt-get install nginx-light): mcpgate alone"
    fi
    stop_pid "$upid"
}

BENCH_IDLE_STREAMS=${BENCH_IDLE_STREAMS:-5000}
export BENCH_IDLE_STREAMS
if [ "$BENCH_IDLE_STREAMS" -gt 0 ]; then
    idle_scenario
fi

# ---- report ------------------------------------------------------------------------------

say "all gateways stopped; the report:"
echo
# shellcheck disable=SC2086
node bench/report.mjs --dir "$TMP" --out "$ROOT/bench/results/latest.txt" --md "$ROOT/bench/results/latest.md" $NAMES

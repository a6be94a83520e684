#!/bin/sh
# make soak: the release binary under mixed load (tests/soak/soak.mjs).
set -eu
cd "$(dirname "$0")/../.."
for d in tests/idp tests/e2e; do
    [ -d "$d/node_modules" ] || (cd "$d" && npm ci --no-audit --no-fund --loglevel=error)
done
export MCPGATE_BIN=${MCPGATE_BIN:-$PWD/build/rel/mcpgate}
export WHOAMI_BIN=${WHOAMI_BIN:-$PWD/build/rel/examples/whoami-server}
exec node tests/soak/soak.mjs

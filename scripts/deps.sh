#!/bin/sh
# Installs the Debian packages that mcpgate's build, tests and demo need,
# only those that are missing. Safe to run again and again.
set -eu

BUILD_PKGS="gcc make pkg-config libevent-dev libcurl4-openssl-dev libjansson-dev libssl-dev
libjwt-dev libhiredis-dev libyaml-dev libcmocka-dev"
TEST_PKGS="redis-server curl ca-certificates procps"
NODE_PKGS="nodejs npm"

missing=""
for p in $BUILD_PKGS $TEST_PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
# Node.js may come from Debian or from elsewhere (nodesource); either will do.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    missing="$missing $NODE_PKGS"
fi

if [ -z "$missing" ]; then
    echo "deps: all packages present"
    exit 0
fi

echo "deps: installing:$missing"
if [ "$(id -u)" != 0 ]; then
    echo "deps: these packages are missing and installing them needs root:" >&2
    echo "      sudo apt-get install -y$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# A stale package list makes apt-get install fail to find packages.
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "deps: done"

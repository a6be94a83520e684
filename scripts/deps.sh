#!/bin/sh
# Installs the Debian packages that mcpgate's build, tests and demo need,
# only those that are missing. Safe to run again and again.
set -eu

BUILD_PKGS="gcc make pkg-config libevent-dev libcurl4-openssl-dev libjansson-dev libssl-dev
libjwt-dev libhiredis-dev libyaml-dev libcmocka-dev"
TEST_PKGS="redis-server nginx-light curl ca-certificates procps"
NODE_PKGS="nodejs npm"

missing=""
for p in $BUILD_PKGS $TEST_PKGS; do
    # Any nginx flavour provides /usr/sbin/nginx (e2e/cluster runs it as the load balancer).
    [ "$p" = nginx-light ] && [ -x /usr/sbin/nginx ] && continue
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
# The packages' services (redis-server on 6379, nginx on port 80 of every
# address) are not wanted: the tests start their own on loopback. A
# policy-rc.d that answers 101 keeps invoke-rc.d from starting them.
policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    policy=/usr/sbin/policy-rc.d
fi
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null || {
    [ -n "$policy" ] && rm -f "$policy"
    exit 1
}
[ -n "$policy" ] && rm -f "$policy"
echo "deps: done"

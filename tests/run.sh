#!/bin/sh
# Runs the whole suite: the cmocka unit tests (ASan/UBSan builds), then the
# integration and end-to-end tests (node --test) against the ASan binary,
# a real redis-server and real children, all on 127.0.0.1. Prints one
# closing line "N passed, N failed" and exits non-zero on any failure.
#
#   tests/run.sh                 everything
#   tests/run.sh unit            only the unit tests
#   tests/run.sh integration     only the node suites
#   TESTS=http tests/run.sh      only suites whose name contains "http"
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
what=${1:-all}
filter=${TESTS:-}
passed=0
failed=0
failed_names=""
logdir=$(mktemp -d "${TMPDIR:-/tmp}/mcpgate-tests.XXXXXX")

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export MCPGATE_BIN=${MCPGATE_BIN:-$PWD/$BUILD/san/mcpgate}
export MCPGATE_BUILD=$PWD/$BUILD

count() { # $1 file, $2 pattern -> the number in the first matching line
    sed -n "s/$2/\1/p" "$1" | head -n 1
}

run_unit() {
    for t in "$BUILD"/san/tests/test_*; do
        [ -x "$t" ] || continue
        name=$(basename "$t")
        case "$name" in *"$filter"*) ;; *) continue ;; esac
        log="$logdir/$name.log"
        "$t" >"$log" 2>&1
        rc=$?
        p=$(count "$log" '.*\[  PASSED  \] \([0-9]*\) test.*')
        f=$(count "$log" '.*\[  FAILED  \] \([0-9]*\) test.*')
        p=${p:-0}
        f=${f:-0}
        if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi # crashed (sanitizer) before counting
        passed=$((passed + p))
        failed=$((failed + f))
        if [ "$f" != 0 ]; then
            failed_names="$failed_names $name"
            echo "FAIL unit/$name ($p passed, $f failed)"
            sed 's/^/    /' "$log" | tail -n 60
        else
            echo "ok   unit/$name ($p passed)"
        fi
    done
}

run_node() { # $1 dir
    for t in "$1"/*.test.mjs; do
        [ -f "$t" ] || continue
        name=$(basename "$t" .test.mjs)
        case "$name" in *"$filter"*) ;; *) continue ;; esac
        log="$logdir/$(basename "$1")-$name.log"
        # Every suite is bounded: a hung one fails instead of holding CI.
        timeout -k 10 "${SUITE_TIMEOUT:-300}" node --test --test-reporter=tap "$t" >"$log" 2>&1
        rc=$?
        p=$(count "$log" '^# pass \([0-9]*\)')
        f=$(count "$log" '^# fail \([0-9]*\)')
        p=${p:-0}
        f=${f:-0}
        if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi
        passed=$((passed + p))
        failed=$((failed + f))
        if [ "$f" != 0 ]; then
            failed_names="$failed_names $(basename "$1")/$name"
            echo "FAIL $(basename "$1")/$name ($p passed, $f failed)"
            grep -vE '^\s*(duration_ms|type:|\.\.\.|---)' "$log" | sed 's/^/    /' | tail -n 80
        else
            echo "ok   $(basename "$1")/$name ($p passed)"
        fi
    done
}

case "$what" in
all | unit) run_unit ;;
esac
case "$what" in
all | integration)
    # Each directory with a package.json gets its locked npm dependencies once.
    for d in tests/idp tests/e2e tests/conformance; do
        [ -f "$d/package.json" ] || continue
        [ -d "$d/node_modules" ] && [ "$d/node_modules" -nt "$d/package-lock.json" ] && continue
        echo "npm: installing $d"
        if ! (cd "$d" && npm ci --no-audit --no-fund --loglevel=error >"$logdir/npm-$(basename "$d").log" 2>&1); then
            echo "FAIL npm ci in $d (see $logdir/npm-$(basename "$d").log)"
            failed=$((failed + 1))
            failed_names="$failed_names npm:$d"
        fi
    done
    run_node tests/integration
    if [ -f tests/e2e/setup.mjs ] && ! node tests/e2e/setup.mjs >"$logdir/e2e-setup.log" 2>&1; then
        echo "FAIL e2e setup (see $logdir/e2e-setup.log)"
        tail -n 20 "$logdir/e2e-setup.log" | sed 's/^/    /'
        failed=$((failed + 1))
        failed_names="$failed_names e2e-setup"
    fi
    run_node tests/e2e
    ;;
esac

echo
[ -n "$failed_names" ] && echo "failed:$failed_names"
echo "logs: $logdir"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]

#!/bin/sh
# The helper behind `make fuzz` and `make fuzz-smoke` (tests/fuzz/README.md).
#
#   sh tests/fuzz/run.sh deps                        clang + libFuzzer runtime (apt-get, root)
#   sh tests/fuzz/run.sh smoke DIR NAME...           each seed corpus once (-runs=0)
#   sh tests/fuzz/run.sh fuzz DIR SECONDS NAME...    fuzz each target for SECONDS
#
# DIR is the fuzz build directory (build/fuzz) holding fuzz_NAME binaries.
# Fuzzing works on DIR/corpus-NAME, a copy of tests/fuzz/corpus/NAME that
# keeps growing across runs, so the committed seeds stay as they are.
# Crashes, leaks, timeouts and OOMs land in DIR/artifacts/NAME/; logs in
# DIR/logs/. Prints one line per target; exits 1 when any target failed.
set -u

FUZZ_CC=${FUZZ_CC:-clang}

deps() {
    # Can clang link a libFuzzer program? Then nothing to do.
    probe=$(mktemp -d)
    printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' \
        >"$probe/p.c"
    if "$FUZZ_CC" -fsanitize=fuzzer,address,undefined -o "$probe/p" "$probe/p.c" \
        >/dev/null 2>&1; then
        rm -rf "$probe"
        echo "fuzz-deps: $FUZZ_CC links libFuzzer"
        return 0
    fi
    rm -rf "$probe"
    # Debian: clang-N's libFuzzer archive is in libclang-rt-N-dev.
    pkgs="clang"
    if command -v "$FUZZ_CC" >/dev/null 2>&1; then
        major=$("$FUZZ_CC" -dumpversion | cut -d. -f1)
        pkgs="$pkgs libclang-rt-$major-dev"
    else
        pkgs="$pkgs libclang-rt-dev"
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "fuzz-deps: $FUZZ_CC cannot link -fsanitize=fuzzer; as root:" >&2
        echo "           apt-get install -y $pkgs" >&2
        return 1
    fi
    echo "fuzz-deps: installing $pkgs"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends $pkgs >/dev/null ||
        return 1
}

# The last "cov: N ft: N corp: N/SIZE" libFuzzer printed, as "cov N, ft N, corpus N (SIZE)".
stats() {
    grep -E '^#[0-9]+.*cov: ' "$1" | tail -n 1 |
        sed -E 's/.*cov: ([0-9]+) ft: ([0-9]+) corp: ([0-9]+)\/([0-9a-zA-Z]+).*/cov \1, ft \2, corpus \3 (\4)/;t;s/.*/cov ?/'
}

runs() {
    grep -E '^stat::number_of_executed_units:' "$1" | tail -n 1 | awk '{print $2}'
}

# Artifacts newer than the marker file: what this run found.
found() {
    find "$1" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
        -o -name 'oom-*' -o -name 'slow-unit-*' \) -newer "$2" 2>/dev/null
}

run_target() { # MODE DIR SECONDS NAME
    mode=$1 dir=$2 secs=$3 name=$4
    bin=$dir/fuzz_$name
    seeds=tests/fuzz/corpus/$name
    art=$dir/artifacts/$name
    log=$dir/logs/$name.$mode.log
    mkdir -p "$art" "$dir/logs"
    if [ ! -x "$bin" ] || [ ! -d "$seeds" ]; then
        echo "fuzz $name: FAILED: missing $bin or $seeds"
        return 1
    fi
    set -- -timeout=5 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$art/"
    [ -f "tests/fuzz/$name.dict" ] && set -- "$@" -dict="tests/fuzz/$name.dict"
    marker=$dir/logs/$name.$mode.start
    : >"$marker"
    if [ "$mode" = smoke ]; then
        "$bin" "$@" -runs=0 "$seeds" >"$log" 2>&1
        rc=$?
        n=$(find "$seeds" -type f | wc -l)
        summary="$n seeds, $(stats "$log")"
    else
        corpus=$dir/corpus-$name
        mkdir -p "$corpus"
        cp -f "$seeds"/* "$corpus"/
        "$bin" "$@" -max_total_time="$secs" "$corpus" >"$log" 2>&1
        rc=$?
        summary="$(runs "$log") runs in ${secs}s, $(stats "$log")"
    fi
    new=$(found "$art" "$marker")
    n_new=$(printf '%s' "$new" | grep -c . || true)
    if [ "$rc" -ne 0 ] || [ "$n_new" -gt 0 ]; then
        echo "fuzz $name: $summary, crashes $n_new: FAILED (exit $rc, log $log)"
        for f in $new; do
            reason=$(grep -m1 -E '^(==[0-9]+==ERROR|SUMMARY|FUZZ_CHECK failed|.*runtime error)' \
                "$log" | cut -c1-160)
            echo "    $f: $reason"
        done
        [ -n "$new" ] && echo "    reproduce: $bin FILE; once fixed, keep FILE as $seeds/crash-<what>"
        return 1
    fi
    echo "fuzz $name: $summary, crashes 0"
}

mode=${1:-}
case "$mode" in
deps)
    deps
    ;;
smoke | fuzz)
    dir=$2
    shift 2
    secs=0
    if [ "$mode" = fuzz ]; then
        secs=$1
        shift
    fi
    failed=0
    for name in "$@"; do
        run_target "$mode" "$dir" "$secs" "$name" || failed=$((failed + 1))
    done
    what="make fuzz"
    [ "$mode" = smoke ] && what="make fuzz-smoke"
    if [ "$failed" -gt 0 ]; then
        echo "$what: $failed of $# targets failed"
        exit 1
    fi
    echo "$what: $# targets ok"
    ;;
*)
    echo "usage: $0 deps | smoke DIR NAME... | fuzz DIR SECONDS NAME..." >&2
    exit 2
    ;;
esac

#!/bin/sh
# make layers: the include rules of ARCHITECTURE.md, checked. The allowed
# graph and the library confinement are read from the two fenced blocks of
# ARCHITECTURE.md that start with "layers:" and "libraries:", so the rules
# are written once. Prints every violation as file:line and exits 1 if any.
set -u
cd "$(dirname "$0")/.."
doc=ARCHITECTURE.md
[ -f "$doc" ] || { echo "layers: $doc is missing"; exit 1; }

block() { # $1: the block's first line; prints the lines after it up to the closing fence
    awk -v head="$1" '
        /^```/ { if (inb) exit; next }
        $0 == head { inb = 1; next }
        inb { print }' "$doc"
}
layers=$(block "layers:")
libs=$(block "libraries:")
[ -n "$layers" ] || { echo "layers: no 'layers:' block in $doc"; exit 1; }

bad=0
dirs=$(printf '%s\n' "$layers" | sed 's/:.*//')
# Every directory that holds module code is a layer.
for d in $(ls -d */ | tr -d /); do
    case "$d" in tests | examples | bench | build | deploy | scripts | node_modules) continue ;; esac
    ls "$d"/*.c "$d"/*.h >/dev/null 2>&1 || continue
    printf '%s\n' "$dirs" | grep -qx "$d" || { echo "layers: $d/ holds code but is not a layer in $doc"; bad=1; }
done

for d in $dirs; do
    allowed=$(printf '%s\n' "$layers" | sed -n "s/^$d:[[:space:]]*//p")
    for f in "$d"/*.c "$d"/*.h; do
        [ -f "$f" ] || continue
        grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" | while IFS= read -r line; do
            n=${line%%:*}
            inc=$(printf '%s' "$line" | sed 's/.*include[[:space:]]*"\([^"]*\)".*/\1/')
            top=${inc%%/*}
            if [ "$top" = "$inc" ]; then
                echo "$f:$n: \"$inc\": includes name their layer (\"common/xalloc.h\")"
                continue
            fi
            [ -f "$inc" ] || echo "$f:$n: \"$inc\" does not exist"
            case " $allowed " in
            *" $top "*) ;;
            *) echo "$f:$n: $d/ may not include $top/ (\"$inc\"); $d may use: $allowed" ;;
            esac
            case "$inc" in
            */*_int.h) [ "$top" = "$d" ] || echo "$f:$n: \"$inc\" is private to $top/" ;;
            esac
        done
    done
done >/tmp/layers.$$
# Each third-party library stays behind the files that wrap it.
printf '%s\n' "$libs" | while IFS= read -r rule; do
    [ -n "$rule" ] || continue
    hdr=${rule%%:*}
    owners=${rule#*:}
    for d in $dirs; do
        grep -ln "#[[:space:]]*include[[:space:]]*<$hdr" "$d"/*.c "$d"/*.h 2>/dev/null | while read -r f; do
            case " $owners " in *" $f "*) ;; *) echo "$f: includes <$hdr…>, which only$owners may use" ;; esac
        done
    done
done >>/tmp/layers.$$
# The walk names functions as `dir/file.c:function`: each must be defined there.
grep -o '`[a-z]*/[a-z_]*\.c:[a-z_0-9]*`' "$doc" | tr -d '`' | sort -u | while IFS= read -r ref; do
    f=${ref%%:*}
    fn=${ref#*:}
    if [ ! -f "$f" ]; then
        echo "$doc: $ref: no file $f"
    elif ! grep -qE "^[a-z].*[ *]$fn\(" "$f"; then
        echo "$doc: $ref: $fn is not defined in $f"
    fi
done >>/tmp/layers.$$
if [ -s /tmp/layers.$$ ]; then
    cat /tmp/layers.$$
    rm -f /tmp/layers.$$
    echo "make layers: the include rules of $doc are broken (above)"
    exit 1
fi
rm -f /tmp/layers.$$
[ "$bad" = 0 ] || exit 1
echo "layers: ok ($(printf '%s\n' "$dirs" | wc -l) layers, rules from $doc)"

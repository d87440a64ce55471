#!/bin/sh
# Rule 22 (never panic in the kernel), checked on the machine code: builds src/lib.rs (every
# encoder and decoder, LTO, panic=abort) with overflow checks off (the driver's release build)
# and on (its debug build), and fails if the panic handler is reachable from any of them.
set -eu
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
status=0
for checks in false true; do
    CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=$checks cargo build --quiet --release
    lib="$CARGO_TARGET_DIR/release/libvigil_protocol_no_panic.so"
    if nm "$lib" | grep -q vigil_panic_reached; then
        echo "overflow-checks=$checks: a panic path is reachable from vigil-protocol:"
        objdump -d --no-show-raw-insn -C "$lib" |
            awk '/^[0-9a-f]+ <.*>:$/ { fn = $0 } /call.*panic/ { print "  in " fn }' | sort -u
        status=1
    else
        echo "overflow-checks=$checks: no panic path"
    fi
done
exit $status

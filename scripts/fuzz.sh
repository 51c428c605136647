#!/usr/bin/env bash
# Fuzzes the code that reads untrusted or damaged bytes, each target for a
# bounded time (default 60 s; FUZZ_SECONDS=N to change), with cargo-fuzz
# (libFuzzer):
#   abi_decode     the kernel record decoder (kernel/src/abi.rs)
#   spool_segment  a spool segment left by an earlier run (agent/src/spool/)
#   config_file    the configuration file (config/)
# The corpus is kept in fuzz/corpus/<target> (new finds are added there, so
# commit them); a crash leaves its input in fuzz/artifacts/<target> and
# fails this script. Every corpus file is also replayed by the ordinary test
# suite (kernel/tests/fuzz_corpus.rs, agent/tests/fuzz_corpus.rs,
# config/tests/fuzz_corpus.rs), so CI keeps them passing without fuzzing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/prereqs.sh"
cd "$mapwatch_root/fuzz"

seconds="${FUZZ_SECONDS:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# No sanitizer: the targets are safe Rust (the decoder's one unsafe read is
# bounds-checked), and this way the pinned stable toolchain builds them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$mapwatch_root/target/fuzz}"
for target in abi_decode spool_segment config_file; do
    mkdir -p "corpus/$target"
    echo "== fuzzing $target for ${seconds}s" >&2
    log="$CARGO_TARGET_DIR/fuzz-$target.log"
    status=0
    cargo fuzz run --sanitizer none --release "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || status=$?
    grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)" "$log" || true
    if [ "$status" -ne 0 ] || compgen -G "artifacts/$target/*" >/dev/null; then
        tail -40 "$log" >&2
        echo "== $target failed (exit $status); crash inputs, if any, in fuzz/artifacts/$target" >&2
        exit 1
    fi
done

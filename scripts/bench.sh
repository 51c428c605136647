#!/usr/bin/env bash
# The performance harness (issue 7), one command, as root:
#   scripts/bench.sh [--no-wait] [--skip-bench] [loadtest options...]
# Installs what it needs (perf, bpftrace, valgrind, python3 matplotlib), builds release
# binaries, runs the criterion benchmarks (decode, map, OTLP encoding against the SDK's
# path, spool), then
# testkit's `loadtest`: the load sweep against a local OTLP receiver, a perf
# profile of the agent, and the overhead per mmap + munmap against a bpftrace
# script doing equivalent work (mapwatch with export on, the headline, and
# off; bpftrace's output read by a separate process). It writes
# docs/performance.md and docs/performance.png (keeping the file's sections
# it does not generate). `loadtest --help` lists its options (e.g.
# --rates 5000,50000 --seconds 5 --skip-overhead).
# Not part of CI: it takes about 15 minutes and measures this machine.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/prereqs.sh"
cd "$mapwatch_root"

if [ "$(id -u)" -ne 0 ]; then
    echo "mapwatch: the harness loads BPF programs; re-running as root" >&2
    exec sudo --preserve-env "PATH=$PATH" "$0" "$@"
fi

wait_quiet=1
run_bench=1
loadtest_args=()
for arg in "$@"; do
    case "$arg" in
        --no-wait) wait_quiet=0 ;;
        --skip-bench) run_bench=0 ;;
        *) loadtest_args+=("$arg") ;;
    esac
done

need=()
command -v perf >/dev/null || need+=(linux-perf)
command -v bpftrace >/dev/null || need+=(bpftrace)
command -v valgrind >/dev/null || need+=(valgrind)
if [ "${#need[@]}" -gt 0 ]; then
    echo "mapwatch: installing ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! python3 -c 'import matplotlib' 2>/dev/null; then
    echo "mapwatch: installing matplotlib (for the plot)" >&2
    python3 -m pip install -q matplotlib || echo "mapwatch: no matplotlib; the plot will be missing" >&2
fi
# bpftrace and the agent lock BPF memory.
ulimit -l unlimited 2>/dev/null || true

# Where cargo puts the binaries (CARGO_TARGET_DIR, if set, moves them).
target_dir="${CARGO_TARGET_DIR:-target}"

echo "== building release binaries" >&2
cargo build --release --locked -p mapwatch -p mapwatch-testkit --bin mapwatch --bin mmap-load --bin loadtest --bin pathcost

if [ "$run_bench" -eq 1 ]; then
    echo "== criterion benchmarks" >&2
    for spec in "mapwatch-kernel decode" "mapwatch-model map" "mapwatch-model otlp" "mapwatch spool"; do
        set -- $spec
        cargo bench --locked -p "$1" --bench "$2" -- --warm-up-time 1 --measurement-time 4 --noplot
    done
fi

# Measurements on a shared machine: wait (up to 10 minutes) for the 1-minute
# load average to drop below 1, so builds of others do not skew the numbers.
if [ "$wait_quiet" -eq 1 ]; then
    for _ in $(seq 60); do
        load=$(cut -d' ' -f1 /proc/loadavg)
        awk -v l="$load" 'BEGIN { exit !(l < 1.0) }' && break
        echo "mapwatch: waiting for a quiet machine (load average $load)" >&2
        sleep 10
    done
fi

echo "== load, profile and kernel overhead" >&2
exec "$target_dir/release/loadtest" \
    --agent "$target_dir/release/mapwatch" \
    --workload "$target_dir/release/mmap-load" \
    --pathcost "$target_dir/release/pathcost" \
    --criterion-dir "$target_dir/criterion" \
    --out docs/performance.md \
    --plot docs/performance.png \
    "${loadtest_args[@]}"

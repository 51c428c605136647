#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and property tests, and the
# end-to-end tests that load the BPF programs into the running kernel (root).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/prereqs.sh"
cd "$mapwatch_root"

if [ "$(id -u)" -ne 0 ]; then
    echo "mapwatch: the end-to-end tests load BPF programs; re-running as root" >&2
    exec sudo --preserve-env "PATH=$PATH" "$0" "$@"
fi

# The real OpenTelemetry Collector, Jaeger and VictoriaLogs for
# agent/tests/collector.rs, built from their Go modules once into a cache.
# Without Go (exit 3) those tests skip, except in CI, where they must run.
# Built in the background while fmt and clippy run: its module downloads
# overlap the Rust build.
echo "== scripts/otel-stack.sh (the collector stack for agent/tests/collector.rs), in the background" >&2
stack_started=$SECONDS
stack_log=$(mktemp)
bash scripts/otel-stack.sh >"$stack_log" 2>&1 &
stack_pid=$!

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy -D warnings" >&2
cargo clippy --locked --workspace --all-targets -- -D warnings

stack_status=0
wait "$stack_pid" || stack_status=$?
cat "$stack_log" >&2
rm -f "$stack_log"
if [ "$stack_status" -eq 3 ] && [ "${CI:-}" != true ]; then
    echo "== SKIPPED building the collector stack (reason above): agent/tests/collector.rs skips" >&2
elif [ "$stack_status" -ne 0 ]; then
    echo "== FAILED: scripts/otel-stack.sh exited $stack_status" >&2
    exit "$stack_status"
else
    echo "== the collector stack is ready ($((SECONDS - stack_started)) s after it started)" >&2
fi
echo "== cargo test" >&2
cargo test --locked --workspace

# Every BPF-loading test suite on Debian kernels in qemu, under each backend
# it exercises (kprobe, fexit, lsm need production kernels). Runs where the machine can:
# an x86_64 host with qemu, or apt to install it; the xtask exits 3 when it
# cannot get qemu or a kernel (no apt, mirror unreachable). MAPWATCH_VM_TEST=0
# turns it off.
vm_skip=""
if [ "${MAPWATCH_VM_TEST:-1}" = 0 ]; then
    vm_skip="MAPWATCH_VM_TEST=0"
elif [ "$(uname -m)" != x86_64 ]; then
    vm_skip="needs an x86_64 host, this is $(uname -m)"
elif ! command -v qemu-system-x86_64 >/dev/null && ! command -v apt-get >/dev/null; then
    vm_skip="no qemu-system-x86_64, and no apt-get to install it"
fi
# In CI the VMs are the only run of the kprobe, fexit and lsm backends:
# not running them there is a failure, not a skip.
vm_required() {
    if [ "${CI:-}" = true ] && [ "${MAPWATCH_VM_TEST:-1}" != 0 ]; then
        echo "== FAILED: CI must run the VM matrix (kprobe, fexit and lsm run nowhere else): $1" >&2
        exit 1
    fi
}
if [ -n "$vm_skip" ]; then
    vm_required "$vm_skip"
    echo "== SKIPPED cargo xtask vm-test: $vm_skip" >&2
else
    echo "== cargo xtask vm-test (the BPF-loading test suites on Debian kernels in qemu)" >&2
    vm_status=0
    cargo xtask vm-test || vm_status=$?
    if [ "$vm_status" -eq 3 ]; then
        vm_required "the xtask could not get qemu or a kernel (reason above)"
        echo "== SKIPPED cargo xtask vm-test: this machine cannot run the VMs (reason above)" >&2
    elif [ "$vm_status" -ne 0 ]; then
        exit "$vm_status"
    fi
fi

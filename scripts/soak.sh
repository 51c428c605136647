#!/usr/bin/env bash
# The long chaos soak of docs/reliability.md ("Chaos"): the real agent, spool
# on, against a collector that is up 5 s and down 5 s for
# MAPWATCH_SOAK_CYCLES cycles (default 60: 10 minutes) while a workload makes
# MAPWATCH_SOAK_RATE mappings a second (default 10000: 20000 records/s).
# Prints the exit summary (nothing lost uncounted) and the agent's RSS after
# each cycle. Root (it loads the BPF programs).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/prereqs.sh"
cd "$mapwatch_root"

if [ "$(id -u)" -ne 0 ]; then
    exec sudo --preserve-env "PATH=$PATH" "$0" "$@"
fi

# A release build of the agent and of the test (the receiver in the test
# process must keep up with 20000 records/s).
cargo test --locked --release -p mapwatch --test faults -- \
    --ignored --exact soak_flapping_collector --nocapture

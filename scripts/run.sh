#!/usr/bin/env bash
# Builds mapwatch (installing what is missing) and runs it as root.
# Arguments go to mapwatch, e.g.:
#   scripts/run.sh --otlp-endpoint http://localhost:4317
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/prereqs.sh"
cd "$mapwatch_root"
cargo build --release --locked -p mapwatch
if [ "$(id -u)" -eq 0 ]; then
    exec ./target/release/mapwatch "$@"
else
    exec sudo --preserve-env ./target/release/mapwatch "$@"
fi

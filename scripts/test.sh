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

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy -D warnings" >&2
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "== cargo test" >&2
cargo test --locked --workspace

#!/usr/bin/env bash
# Installs what building mapwatch needs, only where it is missing:
# the BPF toolchain (clang, llvm, libbpf headers), a C compiler, and the Rust
# toolchain pinned in rust-toolchain.toml. Sourced by run.sh and test.sh.
set -euo pipefail

mapwatch_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

need_packages=()
command -v clang >/dev/null || need_packages+=(clang)
command -v llvm-strip >/dev/null || need_packages+=(llvm)
[ -f /usr/include/bpf/bpf_helpers.h ] || need_packages+=(libbpf-dev)
[ -f /usr/include/linux/bpf.h ] || need_packages+=(linux-libc-dev)
command -v cc >/dev/null || need_packages+=(gcc libc6-dev)
# The 32-bit workload of the compat tests (gcc -m32 -static; agent/build.rs).
if [ "$(uname -m)" = x86_64 ] && command -v dpkg >/dev/null \
    && ! dpkg -s gcc-multilib >/dev/null 2>&1; then
    need_packages+=(gcc-multilib)
fi
if [ "${#need_packages[@]}" -gt 0 ]; then
    echo "mapwatch: installing ${need_packages[*]}" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_packages[@]}" >/dev/null
fi

if ! command -v rustup >/dev/null; then
    if [ -x "$HOME/.cargo/bin/rustup" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    else
        echo "mapwatch: installing rustup from Debian" >&2
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rustup >/dev/null || {
            echo "mapwatch: rustup is not available; install it (https://rustup.rs) and run this again" >&2
            exit 1
        }
    fi
fi
# The toolchain named in rust-toolchain.toml (aya needs a recent rustc).
(cd "$mapwatch_root" && rustup toolchain install --no-self-update >/dev/null 2>&1 \
    || rustup toolchain install --no-self-update)

# syntax=docker/dockerfile:1
#
# The mapwatch agent as a container image.
#
#   docker build -t mapwatch .
#   docker run --rm --privileged --pid=host --uts=host \
#     -v /sys/kernel/btf:/sys/kernel/btf:ro -v /sys/kernel/tracing:/sys/kernel/tracing \
#     -e OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4317 mapwatch
#
# otel-collector/compose.yaml builds and runs it next to a collector, Loki,
# Jaeger and Grafana; examples/kubernetes/daemonset.yaml runs it on every
# node with the minimal privileges explained.

ARG DEBIAN_RELEASE=trixie

# --- build: clang/llvm/libbpf for the BPF side, the pinned Rust toolchain ----
FROM debian:${DEBIAN_RELEASE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates curl clang llvm libbpf-dev linux-libc-dev gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:$PATH
RUN curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
      | sh -s -- -y --no-modify-path --profile minimal --default-toolchain none
WORKDIR /src
# The toolchain named in rust-toolchain.toml, in a layer of its own.
COPY rust-toolchain.toml ./
RUN rustup toolchain install
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release -p mapwatch --bin mapwatch \
 && install -D -s -m 0755 target/release/mapwatch /out/mapwatch

# --- runtime: the binary needs glibc only (the BPF object is embedded) -------
FROM debian:${DEBIAN_RELEASE}-slim
LABEL org.opencontainers.image.title="mapwatch" \
      org.opencontainers.image.description="Every memory mapping on a Linux host, as OpenTelemetry log records" \
      org.opencontainers.image.licenses="Apache-2.0 AND GPL-2.0-only"
COPY --from=build /out/mapwatch /usr/bin/mapwatch
# Every key at its default: no endpoint, so records go to stdout until
# OTEL_EXPORTER_OTLP_ENDPOINT (or MAPWATCH_OTLP__ENDPOINT) names a collector.
COPY examples/mapwatch.toml /etc/mapwatch/mapwatch.toml
# Runs as uid 0: tracefs is readable by its owner, root, only. Capabilities
# are whatever the runtime grants (CAP_BPF + CAP_PERFMON are enough).
ENTRYPOINT ["/usr/bin/mapwatch"]

#!/usr/bin/env bash
# Builds the real OpenTelemetry backend programs that the end-to-end tests
# (agent/tests/collector.rs) run mapwatch against, and the tools the
# deployment tests use, from their Go modules, once, into a cache directory:
#   otelcol-mapwatch  the OpenTelemetry Collector, made by the official builder
#                     with the components mapwatch's collector configs use
#   jaeger            Jaeger v2 (in-memory storage, OTLP in, HTTP query API)
#   victoria-logs     VictoriaLogs, a log store with OTLP/HTTP ingestion
#   helm              Helm, to lint and render deploy/helm/mapwatch
#
#   scripts/otel-stack.sh            build what is missing, print versions
#   scripts/otel-stack.sh --paths    the same, then NAME=PATH lines on stdout
#   scripts/otel-stack.sh --run      the same, then runs the collector with
#                                    otel-collector/config.yaml, Jaeger and
#                                    VictoriaLogs on loopback until Ctrl-C
#
# A program present in the cache is not built again. Its directory name
# carries its version (and the collector's a hash of its component list),
# so a change below builds the new one.
# MAPWATCH_STACK_CACHE picks the cache (default ~/.cache/mapwatch/otel-stack);
# Go's module and build caches live inside it while building, and are
# removed after a build unless MAPWATCH_STACK_KEEP_GO_CACHES=1. Deleting the
# cache starts from scratch (a kept module cache is read-only: `chmod -R
# u+w` it first).
# Exit status 3: Go is missing, nothing was built.
set -euo pipefail

# All collector modules at one release (core modules 1.x go with 0.x).
otelcol_version=0.161.0
otelcol_stable_version=1.67.0
jaeger_version=v1.76.0
victorialogs_version=v1.52.1
helm_version=v3.22.0

# CI may run without HOME; Go wants one too.
export HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
cache="${MAPWATCH_STACK_CACHE:-$HOME/.cache/mapwatch/otel-stack}"
print_paths=0 run=0
case "${1:-}" in
    --paths) print_paths=1 ;;
    --run) run=1 ;;
    "") ;;
    *) echo "usage: $0 [--paths | --run]" >&2; exit 2 ;;
esac

say() { echo "otel-stack: $*" >&2; }

if ! command -v go >/dev/null; then
    if [ -x /usr/local/go/bin/go ]; then
        export PATH="/usr/local/go/bin:$PATH"
    else
        say "no Go toolchain (go on PATH or /usr/local/go/bin/go): cannot build the collector, Jaeger, VictoriaLogs or Helm"
        exit 3
    fi
fi

mkdir -p "$cache"
# One build at a time: tests may call this script in parallel.
exec 9>"$cache/.lock"
flock 9

export GOMODCACHE="$cache/go/mod" GOCACHE="$cache/go/build" GOPATH="$cache/go/path"
export GOFLAGS="-buildvcs=false" GOTOOLCHAIN=local CGO_ENABLED=0

jaeger_dir="$cache/jaeger-$jaeger_version"
victorialogs_dir="$cache/victoria-logs-$victorialogs_version"
helm_dir="$cache/helm-$helm_version"

built=0
timed() {
    local what=$1 started=$SECONDS
    built=1
    shift
    say "building $what"
    "$@"
    say "built $what in $((SECONDS - started)) s"
}

# The collector's builder manifest (@OUT@: the build directory). Not in it:
# k8sattributes and loadbalancing, whose modules at this release (or an AWS
# SDK module that loadbalancing needs) the Go module proxy here refuses.
core=go.opentelemetry.io/collector
contrib=github.com/open-telemetry/opentelemetry-collector-contrib
otelcol_manifest="dist:
  name: otelcol-mapwatch
  description: OpenTelemetry Collector for mapwatch's tests and configs
  version: $otelcol_version
  output_path: @OUT@
receivers:
  - gomod: $core/receiver/otlpreceiver v$otelcol_version
processors:
  - gomod: $core/processor/batchprocessor v$otelcol_version
  - gomod: $core/processor/memorylimiterprocessor v$otelcol_version
  - gomod: $contrib/processor/transformprocessor v$otelcol_version
  - gomod: $contrib/processor/filterprocessor v$otelcol_version
  - gomod: $contrib/processor/attributesprocessor v$otelcol_version
  - gomod: $contrib/processor/resourceprocessor v$otelcol_version
exporters:
  - gomod: $core/exporter/otlpexporter v$otelcol_version
  - gomod: $core/exporter/otlphttpexporter v$otelcol_version
  - gomod: $core/exporter/debugexporter v$otelcol_version
  - gomod: $contrib/exporter/fileexporter v$otelcol_version
providers:
  - gomod: $core/confmap/provider/envprovider v$otelcol_stable_version
  - gomod: $core/confmap/provider/fileprovider v$otelcol_stable_version
  - gomod: $core/confmap/provider/yamlprovider v$otelcol_stable_version
"
# A changed component list is a new directory, so it gets built.
otelcol_dir="$cache/otelcol-$otelcol_version-$(printf %s "$otelcol_manifest" | sha256sum | cut -c1-12)"

build_otelcol() {
    local work="$otelcol_dir.tmp"
    rm -rf "$work"
    mkdir -p "$work"
    GOBIN="$work" go install "$core/cmd/builder@v$otelcol_version"
    printf '%s' "${otelcol_manifest//@OUT@/$work/src}" >"$work/builder.yaml"
    "$work/builder" --config "$work/builder.yaml"
    mkdir -p "$otelcol_dir"
    mv "$work/src/otelcol-mapwatch" "$work/builder.yaml" "$otelcol_dir/"
    rm -rf "$work"
}

# A program of another module, built as a tool of a scratch module
# (`go get -tool`), so that its go.mod's versions are the ones used.
build_tool() {
    local dir=$1 package=$2 version=$3 name=$4
    local work="$dir.tmp"
    rm -rf "$work"
    mkdir -p "$work"
    (
        cd "$work"
        go mod init "mapwatch.invalid/stack-$name" >/dev/null 2>&1
        go get -tool "$package@$version"
        GOBIN="$work/bin" go install tool
    )
    mkdir -p "$dir"
    mv "$work/bin/$name" "$dir/$name"
    rm -rf "$work"
}

[ -x "$otelcol_dir/otelcol-mapwatch" ] || timed "the collector $otelcol_version" build_otelcol
[ -x "$jaeger_dir/jaeger" ] \
    || timed "Jaeger $jaeger_version" build_tool "$jaeger_dir" \
        github.com/jaegertracing/jaeger/cmd/jaeger "$jaeger_version" jaeger
[ -x "$victorialogs_dir/victoria-logs" ] \
    || timed "VictoriaLogs $victorialogs_version" build_tool "$victorialogs_dir" \
        github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs "$victorialogs_version" victoria-logs
[ -x "$helm_dir/helm" ] \
    || timed "Helm $helm_version" build_tool "$helm_dir" helm.sh/helm/v3/cmd/helm "$helm_version" helm

# Programs of other versions (or another component list) are not used again.
for dir in "$cache"/otelcol-* "$cache"/jaeger-* "$cache"/victoria-logs-* "$cache"/helm-*; do
    case "$dir" in
        "$otelcol_dir" | "$jaeger_dir" | "$victorialogs_dir" | "$helm_dir") ;;
        *) rm -rf "$dir" ;;
    esac
done

# Go's caches hold about 5.5 GB after a full build, the programs 270 MB:
# drop the caches unless asked to keep them for faster rebuilds.
if [ "$built" = 1 ] && [ "${MAPWATCH_STACK_KEEP_GO_CACHES:-0}" != 1 ]; then
    go clean -cache -modcache
fi

# The version of MODULE that BINARY was built from, read from the binary.
built_from() {
    go version -m "$1" | awk -v m="$2" '($1 == "dep" || $1 == "mod") && $2 == m { print $3; exit }'
}
say "otelcol-mapwatch: $("$otelcol_dir/otelcol-mapwatch" --version) (receiver/otlpreceiver $(built_from "$otelcol_dir/otelcol-mapwatch" go.opentelemetry.io/collector/receiver/otlpreceiver))"
say "jaeger: github.com/jaegertracing/jaeger $(built_from "$jaeger_dir/jaeger" github.com/jaegertracing/jaeger)"
say "victoria-logs: github.com/VictoriaMetrics/VictoriaLogs $(built_from "$victorialogs_dir/victoria-logs" github.com/VictoriaMetrics/VictoriaLogs)"
say "helm: helm.sh/helm/v3 $(built_from "$helm_dir/helm" helm.sh/helm/v3)"
say "$(go version)"
say "cache $cache ($(du -sh "$cache" | cut -f1))"

if [ "$print_paths" = 1 ]; then
    echo "otelcol=$otelcol_dir/otelcol-mapwatch"
    echo "jaeger=$jaeger_dir/jaeger"
    echo "victoria-logs=$victorialogs_dir/victoria-logs"
    echo "helm=$helm_dir/helm"
fi
[ "$run" = 1 ] || exit 0

# The pipeline of otel-collector/config.yaml on this machine, without
# containers: the file as it is, its listen and backend addresses changed
# on the command line (--set); VictoriaLogs stands where compose has Loki.
flock -u 9
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="$cache/run"
mkdir -p "$state"
pids=()
stop() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait
}
trap stop EXIT
trap 'exit 130' INT TERM
"$jaeger_dir/jaeger" --config="$root/otel-collector/local/jaeger.yaml" >"$state/jaeger.log" 2>&1 &
pids+=($!)
"$victorialogs_dir/victoria-logs" -httpListenAddr=127.0.0.1:9428 \
    -storageDataPath="$state/victoria-logs" >"$state/victoria-logs.log" 2>&1 &
pids+=($!)
"$otelcol_dir/otelcol-mapwatch" --config="$root/otel-collector/config.yaml" \
    --set=receivers::otlp::protocols::grpc::endpoint=127.0.0.1:4317 \
    --set=receivers::otlp::protocols::http::endpoint=127.0.0.1:4318 \
    --set=exporters::otlp_grpc/jaeger::endpoint=127.0.0.1:14317 \
    --set=exporters::otlp_http/loki::endpoint=http://127.0.0.1:9428/insert/opentelemetry \
    --set=service::telemetry::metrics::level=none \
    >"$state/collector.log" 2>&1 &
pids+=($!)
say "running (logs in $state), Ctrl-C stops:"
say "  collector     OTLP 127.0.0.1:4317 (gRPC), 127.0.0.1:4318 (HTTP)"
say "  Jaeger        query API http://127.0.0.1:16686/api/services"
say "  VictoriaLogs  web UI http://127.0.0.1:9428/select/vmui, LogsQL at /select/logsql/query"
say "then: sudo MAPWATCH_SIGNALS=logs,traces scripts/run.sh --otlp-endpoint http://127.0.0.1:4317"
wait -n "${pids[@]}" || true
say "a program stopped; its log is in $state"

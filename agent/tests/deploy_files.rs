//! Every deployment and configuration file in the repository parses, and the
//! files agree with each other and with the agent:
//!
//! - the collector's pipelines name only components it defines, of types the
//!   contrib distribution has; its OTLP ports are the agent's defaults and
//!   the ones compose publishes;
//! - compose mounts files that exist, at the paths the programs are told to
//!   read; the agent container is wired to the collector;
//! - Grafana's data sources point at compose services and the ports they
//!   listen on; the dashboard uses only provisioned data sources, and its
//!   LogQL (and the LogQL in the docs) uses only fields mapwatch records have
//!   in Loki, with index labels only in stream selectors;
//! - every example TOML loads with the agent's real loader, and its
//!   collector snippet is well formed;
//! - the Kubernetes DaemonSet's environment and config file load, and point
//!   at a port the collector listens on; the Helm chart passes `helm lint`
//!   and renders a DaemonSet that passes the same checks, with its values
//!   in place (Helm built by scripts/otel-stack.sh);
//! - the systemd unit, the Debian package metadata, the Dockerfile and the
//!   packaging script agree on paths.
//!
//! Nothing here starts a container: no engine runs where these tests do.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use mapwatch_config::{CliArgs, Config, DEFAULT_CONFIG_PATH, Protocol};
use serde_json::Value as Json;
use serde_norway::Value as Yaml;

// --- files -----------------------------------------------------------------

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("agent/ has a parent")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn parse_yaml_docs(rel: &str, text: &str) -> Vec<Yaml> {
    serde_norway::Deserializer::from_str(text)
        .map(|doc| {
            serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("{rel}: bad YAML: {e}"))
        })
        .collect()
}

fn yaml(rel: &str) -> Yaml {
    let mut docs = parse_yaml_docs(rel, &read(rel));
    assert_eq!(docs.len(), 1, "{rel}: expected one YAML document");
    docs.remove(0)
}

fn json(rel: &str) -> Json {
    serde_json::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: bad JSON: {e}"))
}

/// Files under `dir` (relative to the repository root), recursively, as
/// paths relative to the root, sorted.
fn files_under(dir: &str) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.push(
                    path.strip_prefix(base)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(&root(), &root().join(dir), &mut out);
    out.sort();
    out
}

fn ext(rel: &str) -> &str {
    rel.rsplit_once('.').map_or("", |(_, e)| e)
}

// --- YAML access -------------------------------------------------------------

fn get<'a>(v: &'a Yaml, path: &str) -> &'a Yaml {
    let mut cur = v;
    for key in path.split('.') {
        cur = cur
            .get(key)
            .unwrap_or_else(|| panic!("missing `{key}` on the way to `{path}`"));
    }
    cur
}

fn try_get<'a>(v: &'a Yaml, path: &str) -> Option<&'a Yaml> {
    path.split('.').try_fold(v, |cur, key| cur.get(key))
}

fn str_of<'a>(v: &'a Yaml, path: &str) -> &'a str {
    get(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("`{path}` is not a string"))
}

fn keys(v: &Yaml) -> BTreeSet<String> {
    v.as_mapping()
        .map(|m| {
            m.keys()
                .map(|k| k.as_str().expect("string keys").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn strings(v: &Yaml) -> Vec<String> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("expected a list, got {v:?}"))
        .iter()
        .map(|s| match s {
            Yaml::String(s) => s.clone(),
            Yaml::Number(n) => n.to_string(),
            other => panic!("expected a string, got {other:?}"),
        })
        .collect()
}

/// `environment:` of a compose service or `data:` of a ConfigMap, as a map.
fn string_map(v: &Yaml) -> BTreeMap<String, String> {
    let m = v.as_mapping().expect("a mapping");
    m.iter()
        .map(|(k, v)| {
            let v = match v {
                Yaml::String(s) => s.clone(),
                Yaml::Number(n) => n.to_string(),
                Yaml::Bool(b) => b.to_string(),
                other => panic!("unexpected value {other:?}"),
            };
            (k.as_str().unwrap().to_owned(), v)
        })
        .collect()
}

// --- addresses ----------------------------------------------------------------

/// The port of `host:port`.
fn port_of(endpoint: &str) -> u16 {
    endpoint
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {endpoint:?}"))
}

/// `(host, port, path)` of `scheme://host:port/path`.
fn url_parts(url: &str) -> (String, u16, String) {
    let rest = url
        .split_once("://")
        .unwrap_or_else(|| panic!("not a URL: {url:?}"))
        .1;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, String::new()),
    };
    let (host, port) = authority
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("no port in {url:?}"));
    (host.to_owned(), port.parse().unwrap(), path)
}

/// Container ports a compose service publishes (`[ip:]host:container`).
fn published_container_ports(service: &Yaml) -> BTreeSet<u16> {
    try_get(service, "ports")
        .map(strings)
        .unwrap_or_default()
        .iter()
        .map(|p| {
            let p = p.split('/').next().unwrap();
            p.rsplit(':').next().unwrap().parse().unwrap()
        })
        .collect()
}

// --- the agent's side -------------------------------------------------------------

/// The OTLP ports the agent documents as its defaults, read from its
/// `--otlp-endpoint` help: `(gRPC, HTTP)`.
fn agent_default_ports() -> (u16, u16) {
    let cmd = mapwatch::cli::Cli::command();
    let arg = cmd
        .get_arguments()
        .find(|a| a.get_long() == Some("otlp-endpoint"))
        .expect("--otlp-endpoint exists");
    let help = arg
        .get_help()
        .expect("--otlp-endpoint has help")
        .to_string();
    let port_before = |label: &str| -> u16 {
        let at = help
            .find(label)
            .unwrap_or_else(|| panic!("{label} in {help:?}"));
        let url = help[..at].trim_end().rsplit(' ').next().unwrap();
        url_parts(url).1
    };
    (port_before("(gRPC)"), port_before("(HTTP)"))
}

fn load_config(file: Option<PathBuf>, env: &BTreeMap<String, String>) -> Config {
    let cli = CliArgs {
        config: file.clone(),
        ..CliArgs::default()
    };
    Config::load_from(&cli, env.clone(), None)
        .unwrap_or_else(|e| panic!("{file:?} with {env:?} does not load: {e}"))
}

// --- the collector --------------------------------------------------------------

const COLLECTOR: &str = "otel-collector/config.yaml";
const COMPOSE: &str = "otel-collector/compose.yaml";
const LOKI: &str = "otel-collector/loki.yaml";
const DATASOURCES: &str = "otel-collector/grafana/provisioning/datasources/datasources.yaml";
const DASHBOARD_PROVIDERS: &str = "otel-collector/grafana/provisioning/dashboards/dashboards.yaml";
const DASHBOARDS_DIR: &str = "otel-collector/grafana/dashboards";
const DAEMONSET: &str = "examples/kubernetes/daemonset.yaml";
const HELM_CHART: &str = "deploy/helm/mapwatch";
const UNIT: &str = "examples/systemd/mapwatch.service";

/// Component types of opentelemetry-collector-contrib these files may use
/// (current names: `otlp_grpc` / `otlp_http`, not the deprecated aliases).
const RECEIVER_TYPES: &[&str] = &["otlp"];
const PROCESSOR_TYPES: &[&str] = &[
    "memory_limiter",
    "batch",
    "transform",
    "filter",
    "attributes",
    "resource",
];
const EXPORTER_TYPES: &[&str] = &["debug", "otlp_grpc", "otlp_http"];

fn component_type(id: &str) -> &str {
    id.split('/').next().unwrap()
}

fn check_processor_shape(id: &str, config: &Yaml) {
    let ty = component_type(id);
    assert!(PROCESSOR_TYPES.contains(&ty), "unknown processor type {id}");
    if let Some(mode) = try_get(config, "error_mode") {
        assert!(
            ["ignore", "silent", "propagate"].contains(&mode.as_str().unwrap()),
            "{id}: error_mode {mode:?}"
        );
    }
    match ty {
        "filter" => {
            let conditions = strings(get(config, "logs.log_record"));
            assert!(!conditions.is_empty(), "{id}: no conditions");
            for c in conditions {
                check_ottl(id, &c);
            }
        }
        "transform" => {
            let groups = get(config, "log_statements").as_sequence().unwrap();
            assert!(!groups.is_empty(), "{id}: no statements");
            for group in groups {
                assert_eq!(str_of(group, "context"), "log", "{id}");
                for s in strings(get(group, "statements")) {
                    check_ottl(id, &s);
                }
            }
        }
        _ => {}
    }
}

/// OTTL: balanced brackets and quotes, and attribute keys mapwatch sends
/// (or `event.name`, which transform/event_name adds).
fn check_ottl(id: &str, statement: &str) {
    let mut depth = 0i32;
    let mut in_string = false;
    for c in statement.chars() {
        match (in_string, c) {
            (false, '"') | (true, '"') => in_string = !in_string,
            (false, '(' | '[') => depth += 1,
            (false, ')' | ']') => depth -= 1,
            _ => {}
        }
        assert!(depth >= 0, "{id}: unbalanced {statement:?}");
    }
    assert!(depth == 0 && !in_string, "{id}: unbalanced {statement:?}");
    let attrs: BTreeSet<&str> = mapwatch_model::attributes::ALL
        .iter()
        .map(|a| a.name)
        .chain(["event.name"])
        .collect();
    for (i, _) in statement.match_indices("attributes[\"") {
        let rest = &statement[i + "attributes[\"".len()..];
        let key = &rest[..rest.find('"').unwrap()];
        assert!(
            attrs.contains(key),
            "{id}: `{key}` is not an attribute mapwatch sends: {statement:?}"
        );
    }
    for (i, _) in statement.match_indices("keep_keys(attributes, [") {
        let rest = &statement[i + "keep_keys(attributes, [".len()..];
        for key in rest[..rest.find(']').unwrap()].split(',') {
            let key = key.trim().trim_matches('"');
            assert!(attrs.contains(key), "{id}: keep_keys of unknown {key}");
        }
    }
}

/// Checks pipelines against the components defined in `base` plus `extra`
/// (a snippet's own processors).
fn check_pipelines(what: &str, pipelines: &Yaml, base: &Yaml, extra: &Yaml) {
    for (name, pipeline) in pipelines.as_mapping().expect("pipelines is a mapping") {
        let name = name.as_str().unwrap();
        let signal = component_type(name);
        assert!(
            ["logs", "traces", "metrics"].contains(&signal),
            "{what}: pipeline {name}"
        );
        for (kind, types) in [
            ("receivers", RECEIVER_TYPES),
            ("processors", PROCESSOR_TYPES),
            ("exporters", EXPORTER_TYPES),
        ] {
            let Some(list) = pipeline.get(kind) else {
                assert_eq!(kind, "processors", "{what}: pipeline {name} has no {kind}");
                continue;
            };
            let defined: BTreeSet<String> = keys(try_get(base, kind).unwrap_or(&Yaml::Null))
                .into_iter()
                .chain(keys(try_get(extra, kind).unwrap_or(&Yaml::Null)))
                .collect();
            for id in strings(list) {
                assert!(
                    defined.contains(&id),
                    "{what}: pipeline {name} uses {kind} `{id}`, which is not defined (defined: {defined:?})"
                );
                assert!(
                    types.contains(&component_type(&id)),
                    "{what}: unknown {kind} type {id}"
                );
            }
        }
        if let Some(processors) = pipeline.get("processors") {
            let processors = strings(processors);
            if let Some(first) = processors.first() {
                assert_eq!(
                    first, "memory_limiter",
                    "{what}: pipeline {name}: memory_limiter must come first"
                );
            }
        }
    }
}

#[test]
fn every_yaml_json_and_toml_file_parses() {
    let mut seen = BTreeMap::<String, usize>::new();
    for dir in ["otel-collector", "examples"] {
        for rel in files_under(dir) {
            let text = read(&rel);
            match ext(&rel) {
                "yaml" | "yml" => {
                    let docs = parse_yaml_docs(&rel, &text);
                    assert!(docs.iter().all(|d| !d.is_null()), "{rel}: empty document");
                }
                "json" => {
                    serde_json::from_str::<Json>(&text)
                        .unwrap_or_else(|e| panic!("{rel}: bad JSON: {e}"));
                }
                "toml" => {
                    toml::from_str::<toml::Table>(&text)
                        .unwrap_or_else(|e| panic!("{rel}: bad TOML: {e}"));
                }
                "md" | "service" => {}
                other => panic!("{rel}: no test knows files of type {other:?}; add one"),
            }
            *seen.entry(ext(&rel).to_owned()).or_default() += 1;
        }
    }
    assert!(seen["yaml"] >= 6, "{seen:?}");
    assert!(seen["json"] >= 1, "{seen:?}");
    assert!(seen["toml"] >= 5, "{seen:?}");
}

#[test]
fn collector_pipelines_use_only_defined_components() {
    let c = yaml(COLLECTOR);
    let pipelines = get(&c, "service.pipelines");
    check_pipelines(COLLECTOR, pipelines, &c, &Yaml::Null);
    for kind in ["receivers", "processors", "exporters"] {
        let used: BTreeSet<String> = pipelines
            .as_mapping()
            .unwrap()
            .values()
            .filter_map(|p| p.get(kind))
            .flat_map(strings)
            .collect();
        assert_eq!(
            keys(get(&c, kind)),
            used,
            "{COLLECTOR}: {kind} defined but unused"
        );
    }
    for (id, config) in get(&c, "processors").as_mapping().unwrap() {
        check_processor_shape(id.as_str().unwrap(), config);
    }
    for ext in try_get(&c, "service.extensions")
        .map(strings)
        .unwrap_or_default()
    {
        assert!(
            keys(get(&c, "extensions")).contains(&ext),
            "extension {ext}"
        );
    }
    // Logs reach Loki; Loki drops EventName, so it must be kept as event.name.
    let logs = get(pipelines, "logs");
    assert!(strings(get(logs, "exporters")).contains(&"otlp_http/loki".to_owned()));
    assert!(strings(get(logs, "processors")).contains(&"transform/event_name".to_owned()));
    assert!(
        strings(get(get(pipelines, "traces"), "exporters"))
            .contains(&"otlp_grpc/jaeger".to_owned())
    );
    // The agent exports its own counters as OTLP metrics by default: the
    // collector must accept them, or every metrics export fails.
    if Config::default().otlp.metrics {
        let metrics = get(pipelines, "metrics");
        assert!(strings(get(metrics, "receivers")).contains(&"otlp".to_owned()));
    }
}

#[test]
fn collector_ports_are_the_agents_defaults_and_compose_publishes_them() {
    let (grpc, http) = agent_default_ports();
    assert_eq!((grpc, http), (4317, 4318), "the OTLP standard ports");
    let c = yaml(COLLECTOR);
    assert_eq!(
        port_of(str_of(&c, "receivers.otlp.protocols.grpc.endpoint")),
        grpc
    );
    assert_eq!(
        port_of(str_of(&c, "receivers.otlp.protocols.http.endpoint")),
        http
    );

    let compose = yaml(COMPOSE);
    let collector = get(&compose, "services.collector");
    let published = published_container_ports(collector);
    assert!(
        published.contains(&grpc) && published.contains(&http),
        "{published:?}"
    );

    // The agent container sends to the collector service, on the port of its protocol.
    let env = string_map(get(&compose, "services.mapwatch.environment"));
    let config = load_config(None, &env);
    let (host, port, _) = url_parts(config.otlp.logs_url().as_deref().expect("an endpoint"));
    assert_eq!(host, "collector");
    assert_eq!(config.otlp.protocol, Protocol::Grpc);
    assert_eq!(port, grpc);
}

#[test]
fn collector_exporters_reach_compose_services_on_their_ports() {
    let c = yaml(COLLECTOR);
    let compose = yaml(COMPOSE);
    let services = keys(get(&compose, "services"));
    let loki = yaml(LOKI);
    let loki_port = get(&loki, "server.http_listen_port").as_u64().unwrap() as u16;

    let (host, port, path) = url_parts(str_of(&c, "exporters.otlp_http/loki.endpoint"));
    assert!(services.contains(&host), "{host} is not a compose service");
    assert_eq!(
        (host.as_str(), port, path.as_str()),
        ("loki", loki_port, "/otlp")
    );
    assert_eq!(
        get(&loki, "limits_config.allow_structured_metadata"),
        &Yaml::Bool(true)
    );

    let jaeger = str_of(&c, "exporters.otlp_grpc/jaeger.endpoint");
    let (host, port) = jaeger.rsplit_once(':').unwrap();
    assert!(services.contains(host), "{host} is not a compose service");
    // Jaeger 2.x all-in-one receives OTLP/gRPC on the standard port.
    assert_eq!(port.parse::<u16>().unwrap(), agent_default_ports().0);
}

#[test]
fn compose_mounts_existing_files_where_the_programs_read_them() {
    let compose = yaml(COMPOSE);
    let services = get(&compose, "services");
    let names = keys(services);
    for name in &names {
        let service = get(services, name);
        // Images are pinned.
        if let Some(image) = service.get("image") {
            let image = image.as_str().unwrap();
            let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
            assert!(
                !tag.is_empty() && tag != "latest" && !tag.contains('/'),
                "{name}: pin the image ({image})"
            );
        }
        for dep in try_get(service, "depends_on")
            .map(strings)
            .unwrap_or_default()
        {
            assert!(names.contains(&dep), "{name} depends on unknown {dep}");
        }
        for volume in try_get(service, "volumes").map(strings).unwrap_or_default() {
            let source = volume.split(':').next().unwrap();
            if let Some(rel) = source.strip_prefix("./") {
                let path = root().join("otel-collector").join(rel);
                assert!(
                    path.exists(),
                    "{name}: {volume}: {} is missing",
                    path.display()
                );
            } else if !source.starts_with('/') {
                assert!(
                    keys(get(&compose, "volumes")).contains(source),
                    "{name}: named volume {source} is not declared"
                );
            }
        }
    }
    let mount_target = |service: &str, source: &str| -> String {
        let volumes = strings(get(get(services, service), "volumes"));
        volumes
            .iter()
            .find_map(|v| {
                let mut parts = v.split(':');
                (parts.next() == Some(source)).then(|| parts.next().unwrap().to_owned())
            })
            .unwrap_or_else(|| panic!("{service} does not mount {source}"))
    };
    // The collector reads the config.yaml mounted for it.
    let command = strings(get(services, "collector").get("command").unwrap()).join(" ");
    assert!(
        command.contains(&format!(
            "--config={}",
            mount_target("collector", "./config.yaml")
        )),
        "{command}"
    );
    // Loki reads the loki.yaml mounted for it.
    let command = strings(get(services, "loki").get("command").unwrap()).join(" ");
    assert!(
        command.contains(&format!(
            "-config.file={}",
            mount_target("loki", "./loki.yaml")
        )),
        "{command}"
    );
    // Grafana loads dashboards from where they are mounted, and its home
    // dashboard is one of them.
    let dashboards = mount_target("grafana", "./grafana/dashboards");
    let providers = yaml(DASHBOARD_PROVIDERS);
    for provider in get(&providers, "providers").as_sequence().unwrap() {
        assert_eq!(str_of(provider, "options.path"), dashboards);
    }
    assert_eq!(
        mount_target("grafana", "./grafana/provisioning"),
        "/etc/grafana/provisioning"
    );
    let env = string_map(get(services, "grafana").get("environment").unwrap());
    let home = &env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"];
    let file = home
        .strip_prefix(&format!("{dashboards}/"))
        .unwrap_or_else(|| panic!("{home} is not under {dashboards}"));
    assert!(root().join(DASHBOARDS_DIR).join(file).is_file(), "{home}");

    // The agent: built from the repository's Dockerfile, with what BPF needs.
    let agent = get(services, "mapwatch");
    let context = root()
        .join("otel-collector")
        .join(str_of(agent, "build.context"));
    assert!(context.join(str_of(agent, "build.dockerfile")).is_file());
    assert_eq!(get(agent, "privileged"), &Yaml::Bool(true));
    assert_eq!(str_of(agent, "pid"), "host");
    let targets: BTreeSet<String> = strings(get(agent, "volumes"))
        .iter()
        .map(|v| v.split(':').nth(1).unwrap().to_owned())
        .collect();
    for needed in ["/sys/kernel/btf", "/sys/kernel/tracing", "/sys/fs/bpf"] {
        assert!(targets.contains(needed), "mapwatch must mount {needed}");
    }
}

#[test]
fn grafana_data_sources_point_at_compose_services() {
    let compose = yaml(COMPOSE);
    let services = get(&compose, "services");
    let loki_port = get(&yaml(LOKI), "server.http_listen_port")
        .as_u64()
        .unwrap() as u16;
    let ds = yaml(DATASOURCES);
    let mut types = BTreeSet::new();
    for source in get(&ds, "datasources").as_sequence().unwrap() {
        let (host, port, _) = url_parts(str_of(source, "url"));
        let service = services
            .get(host.as_str())
            .unwrap_or_else(|| panic!("data source host {host} is not a compose service"));
        let ty = str_of(source, "type");
        match ty {
            "loki" => assert_eq!(port, loki_port),
            // The Jaeger query API is the UI's port, which compose publishes.
            "jaeger" => assert!(published_container_ports(service).contains(&port), "{port}"),
            other => panic!("unexpected data source type {other}"),
        }
        assert!(!str_of(source, "uid").is_empty());
        types.insert(ty.to_owned());
    }
    assert_eq!(
        types,
        BTreeSet::from(["loki".to_owned(), "jaeger".to_owned()])
    );
    // The links between them: Loki's derived field opens a trace in Jaeger,
    // Jaeger's trace-to-logs query runs in Loki, on fields records have.
    let uids = datasource_uids();
    let fields = loki_fields();
    for source in get(&ds, "datasources").as_sequence().unwrap() {
        let what = format!("data source {}", str_of(source, "name"));
        for field in try_get(source, "jsonData.derivedFields")
            .and_then(Yaml::as_sequence)
            .into_iter()
            .flatten()
        {
            assert!(
                uids.contains_key(str_of(field, "datasourceUid")),
                "{what}: derived field links to a data source that is not provisioned"
            );
            let label = str_of(field, "matcherRegex");
            assert!(fields.all.contains(label), "{what}: no field {label}");
        }
        if let Some(link) = try_get(source, "jsonData.tracesToLogsV2") {
            assert_eq!(
                uids.get(str_of(link, "datasourceUid")).map(String::as_str),
                Some("loki")
            );
            check_logql(&what, str_of(link, "query"), &fields);
        }
    }
}

// --- LogQL ---------------------------------------------------------------------------

/// Loki's default list of resource attributes stored as index labels
/// (distributor.otlp_config.default_resource_attributes_as_index_labels,
/// Loki 3.x docs, "Ingesting logs to Loki using OpenTelemetry Collector").
const LOKI_DEFAULT_INDEX_LABELS: &[&str] = &[
    "cloud.availability_zone",
    "cloud.region",
    "container.name",
    "deployment.environment",
    "deployment.environment.name",
    "k8s.cluster.name",
    "k8s.container.name",
    "k8s.cronjob.name",
    "k8s.daemonset.name",
    "k8s.deployment.name",
    "k8s.job.name",
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.replicaset.name",
    "k8s.statefulset.name",
    "service.instance.id",
    "service.name",
    "service.namespace",
];

/// Loki's name for an OTLP attribute: dots (and other characters) become `_`.
fn loki_name(attr: &str) -> String {
    attr.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

struct LokiFields {
    index: BTreeSet<String>,
    all: BTreeSet<String>,
}

/// What a mapwatch record has in Loki, derived from the code and the files:
/// index labels (the defaults plus loki.yaml's), and every field.
fn loki_fields() -> LokiFields {
    let loki = yaml(LOKI);
    let mut index: BTreeSet<String> = LOKI_DEFAULT_INDEX_LABELS
        .iter()
        .map(|a| loki_name(a))
        .collect();
    for rule in get(
        &loki,
        "limits_config.otlp_config.resource_attributes.attributes_config",
    )
    .as_sequence()
    .unwrap()
    {
        if str_of(rule, "action") == "index_label" {
            index.extend(
                strings(get(rule, "attributes"))
                    .iter()
                    .map(|a| loki_name(a)),
            );
        }
    }
    let mut all = index.clone();
    // Record attributes.
    all.extend(
        mapwatch_model::attributes::ALL
            .iter()
            .map(|a| loki_name(a.name)),
    );
    // The agent's resource.
    let resource = mapwatch::export::resource(&Config::default());
    all.extend(resource.iter().map(|(k, _)| loki_name(k.as_str())));
    // Resource attributes the deployment files and examples add.
    for rel in files_under("examples")
        .into_iter()
        .filter(|f| ext(f) == "toml")
    {
        let config = load_config(Some(root().join(&rel)), &BTreeMap::new());
        all.extend(
            config
                .service
                .resource_attributes
                .keys()
                .map(|k| loki_name(k)),
        );
    }
    let compose_env = string_map(get(&yaml(COMPOSE), "services.mapwatch.environment"));
    for pair in compose_env["OTEL_RESOURCE_ATTRIBUTES"].split(',') {
        all.insert(loki_name(pair.split('=').next().unwrap()));
    }
    let ds_env = daemonset_env(&daemonset_docs());
    for pair in ds_env["OTEL_RESOURCE_ATTRIBUTES"].split(',') {
        all.insert(loki_name(pair.split('=').next().unwrap()));
    }
    // Attributes the collector adds (transform/event_name: event.name).
    let collector = read(COLLECTOR);
    for (i, _) in collector.match_indices("set(attributes[\"") {
        let rest = &collector[i + "set(attributes[\"".len()..];
        all.insert(loki_name(&rest[..rest.find('"').unwrap()]));
    }
    // Fields Loki adds from the record itself.
    all.extend(
        [
            "severity_text",
            "severity_number",
            "observed_timestamp",
            "detected_level",
            "scope_name",
            "trace_id",
            "span_id",
        ]
        .map(String::from),
    );
    LokiFields { index, all }
}

/// Field names a LogQL expression refers to: `(name, in a stream selector)`.
fn logql_fields(expr: &str) -> Vec<(String, bool)> {
    let bytes = expr.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out = Vec::new();
    let mut selector_depth = 0;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'"' | b'`' => {
                i += 1;
                while i < bytes.len() && bytes[i] != c {
                    i += if bytes[i] == b'\\' && c == b'"' { 2 } else { 1 };
                }
                i += 1;
                continue;
            }
            b'{' if bytes.get(i + 1) != Some(&b'{') => selector_depth += 1,
            b'}' if selector_depth > 0 => selector_depth -= 1,
            b'$' => {
                // $__auto, $host, ...: Grafana variables.
                i += 1;
                while i < bytes.len() && ident(bytes[i]) {
                    i += 1;
                }
                continue;
            }
            _ if (c.is_ascii_alphabetic() || c == b'_') && (i == 0 || !ident(bytes[i - 1])) => {
                let start = i;
                while i < bytes.len() && ident(bytes[i]) {
                    i += 1;
                }
                let word = &expr[start..i];
                let rest = expr[i..].trim_start();
                if word == "unwrap" {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    out.push((name, false));
                    i += expr[i..].len() - rest.len();
                    while i < bytes.len() && ident(bytes[i]) {
                        i += 1;
                    }
                } else if (word == "by" || word == "without") && rest.starts_with('(') {
                    let close = rest.find(')').expect("closing )");
                    for name in rest[1..close].split(',') {
                        out.push((name.trim().to_owned(), false));
                    }
                } else if let Some(op) = ["=~", "!~", "!=", "==", ">=", "<=", "=", ">", "<"]
                    .iter()
                    .find(|op| rest.starts_with(**op))
                {
                    let value = rest[op.len()..].trim_start();
                    if value.starts_with(['"', '`'])
                        || value.starts_with(|c: char| c.is_ascii_digit())
                    {
                        out.push((word.to_owned(), selector_depth > 0));
                    }
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

fn check_logql(what: &str, expr: &str, fields: &LokiFields) {
    let mut depth = 0i32;
    for c in expr.chars() {
        match c {
            '(' | '{' | '[' => depth += 1,
            ')' | '}' | ']' => depth -= 1,
            _ => {}
        }
        assert!(depth >= 0, "{what}: unbalanced: {expr}");
    }
    assert_eq!(depth, 0, "{what}: unbalanced: {expr}");
    assert!(expr.contains('{'), "{what}: no stream selector: {expr}");
    let refs = logql_fields(expr);
    assert!(!refs.is_empty(), "{what}: no field at all? {expr}");
    for (name, in_selector) in refs {
        if in_selector {
            assert!(
                fields.index.contains(&name),
                "{what}: `{name}` is not an index label, so it cannot be in a stream selector \
                 (use a label filter: | {name}=...): {expr}"
            );
        } else {
            assert!(
                fields.all.contains(&name),
                "{what}: `{name}` is not a field of mapwatch records in Loki: {expr}"
            );
        }
    }
}

#[test]
fn the_logql_field_scanner_sees_selectors_filters_and_groupings() {
    let refs = logql_fields(
        r#"sum by (process_executable_name) (sum_over_time({service_name="mapwatch", host_name=~"$host"} | file_path!="" | mmap_len > 4096 | unwrap mmap_pgoff [$__auto]))"#,
    );
    assert_eq!(
        refs,
        [
            ("process_executable_name".to_owned(), false),
            ("service_name".to_owned(), true),
            ("host_name".to_owned(), true),
            ("file_path".to_owned(), false),
            ("mmap_len".to_owned(), false),
            ("mmap_pgoff".to_owned(), false),
        ]
    );
    let fields = loki_fields();
    let bad = std::panic::catch_unwind(|| {
        check_logql(
            "t",
            r#"{service_name="mapwatch", process_pid="1"}"#,
            &fields,
        )
    });
    assert!(
        bad.is_err(),
        "structured metadata in a stream selector must fail"
    );
    let bad = std::panic::catch_unwind(|| {
        check_logql("t", r#"{service_name="mapwatch"} | file.path="x""#, &fields)
    });
    assert!(bad.is_err(), "dotted names must fail");
    let bad = std::panic::catch_unwind(|| {
        check_logql("t", r#"{service_name="mapwatch"} | filepath="x""#, &fields)
    });
    assert!(bad.is_err(), "unknown names must fail");
}

fn datasource_uids() -> BTreeMap<String, String> {
    get(&yaml(DATASOURCES), "datasources")
        .as_sequence()
        .unwrap()
        .iter()
        .map(|d| (str_of(d, "uid").to_owned(), str_of(d, "type").to_owned()))
        .collect()
}

fn check_datasource(what: &str, ds: &Json, uids: &BTreeMap<String, String>) {
    let uid = ds["uid"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: datasource without uid"));
    let ty = uids
        .get(uid)
        .unwrap_or_else(|| panic!("{what}: data source uid {uid} is not provisioned ({uids:?})"));
    assert_eq!(
        ds["type"].as_str(),
        Some(ty.as_str()),
        "{what}: type of {uid}"
    );
}

#[test]
fn dashboards_query_provisioned_data_sources_with_real_fields() {
    let uids = datasource_uids();
    let fields = loki_fields();
    let service = Config::default().service.name;
    let dashboards: Vec<String> = files_under(DASHBOARDS_DIR)
        .into_iter()
        .filter(|f| ext(f) == "json")
        .collect();
    assert!(!dashboards.is_empty());
    for rel in dashboards {
        let d = json(&rel);
        assert!(
            d["uid"].as_str().is_some_and(|u| !u.is_empty()),
            "{rel}: uid"
        );
        assert!(d["title"].as_str().is_some(), "{rel}: title");
        for var in d["templating"]["list"].as_array().unwrap() {
            let what = format!("{rel}: variable {}", var["name"]);
            check_datasource(&what, &var["datasource"], &uids);
            let query = var["query"].as_str().unwrap();
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .unwrap_or_else(|| panic!("{what}: {query}"));
            let (selector, label) = inner.rsplit_once(',').unwrap();
            check_logql(&what, selector.trim(), &fields);
            assert!(
                fields.index.contains(label.trim()),
                "{what}: {label} is not a label"
            );
        }
        let panels = d["panels"].as_array().unwrap();
        let mut ids = BTreeSet::new();
        let mut types = BTreeSet::new();
        for panel in panels {
            let what = format!("{rel}: panel {:?}", panel["title"].as_str().unwrap());
            assert!(
                ids.insert(panel["id"].as_u64().unwrap()),
                "{what}: duplicate id"
            );
            types.insert(panel["type"].as_str().unwrap().to_owned());
            assert!(
                panel["gridPos"]["w"].as_u64().unwrap() <= 24,
                "{what}: gridPos"
            );
            check_datasource(&what, &panel["datasource"], &uids);
            let targets = panel["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{what}: no query");
            for target in targets {
                check_datasource(&what, &target["datasource"], &uids);
                let expr = target["expr"].as_str().unwrap();
                check_logql(&what, expr, &fields);
                assert!(
                    expr.contains(&format!("service_name=\"{service}\"")),
                    "{what}: select the agent's service.name ({service}): {expr}"
                );
                // Legends name only what the query groups by.
                if let Some(legend) = target["legendFormat"].as_str() {
                    let grouped: BTreeSet<String> = logql_fields(expr)
                        .into_iter()
                        .filter(|f| !f.1)
                        .map(|f| f.0)
                        .collect();
                    for (i, _) in legend.match_indices("{{") {
                        let name = &legend[i + 2..i + legend[i..].find("}}").unwrap()];
                        assert!(grouped.contains(name.trim()), "{what}: legend {legend}");
                    }
                }
            }
        }
        // What issue 8 asks the dashboard to show.
        let all_exprs: String = panels
            .iter()
            .flat_map(|p| p["targets"].as_array().unwrap())
            .map(|t| t["expr"].as_str().unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        for needle in [
            "by (process_executable_name)",
            "severity_text=\"WARN\"",
            "by (file_path)",
            "by (error_type)",
        ] {
            assert!(all_exprs.contains(needle), "{rel}: no query with {needle}");
        }
        assert!(types.contains("table"), "{rel}: the WARN records table");
    }
}

/// ```logql blocks of a markdown file.
fn logql_blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```logql") => current = Some(String::new()),
            (Some(block), l) if l.starts_with("```") => {
                out.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            _ => {}
        }
    }
    out
}

const DOCS_WITH_LOGQL: &[&str] = &[
    "docs/use-cases.md",
    "docs/getting-started-loki.md",
    "docs/filtering-and-detection.md",
    "otel-collector/README.md",
];

#[test]
fn logql_in_the_docs_uses_real_fields() {
    let fields = loki_fields();
    for rel in DOCS_WITH_LOGQL {
        let blocks = logql_blocks(&read(rel));
        assert!(!blocks.is_empty(), "{rel}: no ```logql block");
        for block in blocks {
            // One query per line; comments (#) allowed.
            for expr in block
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
            {
                check_logql(rel, expr, &fields);
            }
        }
    }
    assert!(
        logql_blocks(&read("docs/use-cases.md")).len() >= 4,
        "a query per use case"
    );
}

#[test]
fn relative_links_in_the_deployment_docs_resolve() {
    for rel in DOCS_WITH_LOGQL
        .iter()
        .copied()
        .chain(["docs/getting-started-jaeger.md", "README.md"])
    {
        let text = read(rel);
        let dir = root().join(rel).parent().unwrap().to_path_buf();
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let target = &rest[..rest.find(')').unwrap()];
            if target.contains("://") || target.starts_with('#') || target.starts_with("mailto:") {
                continue;
            }
            let path = target.split('#').next().unwrap();
            assert!(dir.join(path).exists(), "{rel}: broken link {target}");
        }
    }
}

// --- examples -----------------------------------------------------------------------

/// The collector snippet of an example TOML: the commented lines between
/// `# BEGIN collector snippet` and `# END collector snippet`.
fn snippet(rel: &str, text: &str) -> Option<Yaml> {
    let start = text.find("# BEGIN collector snippet\n")?;
    let body = &text[start..];
    let end = body
        .find("# END collector snippet")
        .unwrap_or_else(|| panic!("{rel}: snippet without END"));
    let yaml: String = body[..end]
        .lines()
        .skip(1)
        .map(|l| {
            let l = l
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("{rel}: uncommented {l:?}"));
            format!("{}\n", l.strip_prefix(' ').unwrap_or(l))
        })
        .collect();
    Some(
        serde_norway::from_str(&yaml)
            .unwrap_or_else(|e| panic!("{rel}: the collector snippet is not YAML: {e}\n{yaml}")),
    )
}

#[test]
fn example_configs_load_with_the_real_loader_and_their_snippets_fit_the_collector() {
    let collector = yaml(COLLECTOR);
    let (grpc, http) = agent_default_ports();
    let mut snippets = 0;
    let examples: Vec<String> = files_under("examples")
        .into_iter()
        .filter(|f| ext(f) == "toml")
        .collect();
    for job in [
        "examples/mapwatch.toml",
        "examples/audit-executables.toml",
        "examples/detect-injection.toml",
        "examples/shared-memory.toml",
        "examples/hot-spots.toml",
    ] {
        assert!(examples.contains(&job.to_owned()), "{job} is missing");
    }
    for rel in examples {
        let config = load_config(Some(root().join(&rel)), &BTreeMap::new());
        if let Some(url) = config.otlp.logs_url() {
            let port = url_parts(&url).1;
            let expected = match config.otlp.protocol {
                Protocol::Grpc => grpc,
                Protocol::HttpProtobuf => http,
            };
            assert_eq!(
                port, expected,
                "{rel}: {url} is not where the collector listens"
            );
        }
        let text = read(&rel);
        // Jobs whose selection the in-kernel filter cannot make carry a
        // collector snippet that makes it.
        let Some(snippet) = snippet(&rel, &text) else {
            assert!(
                !text.contains("collector snippet"),
                "{rel}: mentions a collector snippet but has no BEGIN/END block"
            );
            continue;
        };
        snippets += 1;
        let processors = get(&snippet, "processors");
        assert!(
            !keys(processors).is_empty(),
            "{rel}: snippet defines no processor"
        );
        for (id, config) in processors.as_mapping().unwrap() {
            let id = id.as_str().unwrap();
            assert!(
                !keys(get(&collector, "processors")).contains(id),
                "{rel}: {id} is already in {COLLECTOR}"
            );
            check_processor_shape(id, config);
        }
        // The snippet's pipeline: the collector's, with its processors added.
        let mut merged = get(&collector, "service.pipelines").clone();
        for (name, pipeline) in get(&snippet, "service.pipelines").as_mapping().unwrap() {
            let target = merged
                .get_mut(name)
                .unwrap_or_else(|| panic!("{rel}: no pipeline {name:?} in {COLLECTOR}"));
            for (k, v) in pipeline.as_mapping().unwrap() {
                target
                    .as_mapping_mut()
                    .unwrap()
                    .insert(k.clone(), v.clone());
            }
        }
        check_pipelines(&rel, &merged, &collector, &snippet);
        let used: BTreeSet<String> = strings(get(&merged, "logs.processors"))
            .into_iter()
            .collect();
        for id in keys(processors) {
            assert!(
                used.contains(&id),
                "{rel}: {id} is defined but not in the pipeline"
            );
        }
        assert!(
            used.contains("transform/event_name"),
            "{rel}: the pipeline must keep transform/event_name"
        );
    }
    assert!(
        snippets >= 3,
        "only {snippets} collector snippets were checked"
    );
}

#[test]
fn an_unknown_key_in_an_example_fails_the_loader() {
    // The check above is only worth something if the loader rejects typos.
    let dir = crate::common::private_dir();
    let path = dir.path().join("typo.toml");
    let text =
        read("examples/hot-spots.toml").replace("[ring_buffer]\n", "[ring_buffer]\nsize = 1\n");
    std::fs::write(&path, text).unwrap();
    let cli = CliArgs {
        config: Some(path),
        ..CliArgs::default()
    };
    assert!(Config::load_from(&cli, Vec::<(String, String)>::new(), None).is_err());
}

// --- Kubernetes -----------------------------------------------------------------------

fn daemonset_docs() -> Vec<Yaml> {
    parse_yaml_docs(DAEMONSET, &read(DAEMONSET))
}

fn find_kind<'a>(docs: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| str_of(d, "kind") == kind && str_of(d, "metadata.name") == name)
        .unwrap_or_else(|| panic!("no {kind} {name} among {} documents", docs.len()))
}

fn daemonset_container(docs: &[Yaml]) -> &Yaml {
    let ds = docs
        .iter()
        .find(|d| str_of(d, "kind") == "DaemonSet")
        .expect("a DaemonSet");
    &get(ds, "spec.template.spec.containers")
        .as_sequence()
        .unwrap()[0]
}

/// The container's environment as the kubelet builds it: envFrom ConfigMaps,
/// then env, with `$(VAR)` substituted (fieldRefs become `<fieldPath>`).
fn daemonset_env(docs: &[Yaml]) -> BTreeMap<String, String> {
    let container = daemonset_container(docs);
    let mut env = BTreeMap::new();
    for from in get(container, "envFrom").as_sequence().unwrap() {
        let name = str_of(from, "configMapRef.name");
        env.extend(string_map(get(find_kind(docs, "ConfigMap", name), "data")));
    }
    for var in get(container, "env").as_sequence().unwrap() {
        let name = str_of(var, "name").to_owned();
        let value = match var.get("value") {
            Some(v) => {
                let mut v = v.as_str().unwrap().to_owned();
                for (k, val) in &env {
                    v = v.replace(&format!("$({k})"), val);
                }
                assert!(!v.contains("$("), "{name}: unresolved reference in {v}");
                v
            }
            None => format!("<{}>", str_of(var, "valueFrom.fieldRef.fieldPath")),
        };
        env.insert(name, value);
    }
    env
}

#[test]
fn the_daemonset_config_loads_and_points_at_the_collector() {
    check_daemonset(&daemonset_docs());
}

/// The DaemonSet in `docs` (with the ConfigMaps it uses): one namespace, the
/// minimal privileges, BTF and tracefs mounted, tolerations and memory
/// resources, and a config file and environment that load with the agent's
/// loader and point at the collector's port.
fn check_daemonset(docs: &[Yaml]) {
    let ds = docs
        .iter()
        .find(|d| str_of(d, "kind") == "DaemonSet")
        .expect("a DaemonSet");
    let namespace = str_of(ds, "metadata.namespace");
    for doc in docs {
        if str_of(doc, "kind") != "Namespace" {
            assert_eq!(str_of(doc, "metadata.namespace"), namespace);
        }
    }
    let pod = get(ds, "spec.template.spec");
    assert_eq!(
        get(ds, "spec.selector.matchLabels"),
        get(ds, "spec.template.metadata.labels")
    );
    assert_eq!(
        get(pod, "hostPID"),
        &Yaml::Bool(true),
        "hostPID: the agent's pid must be the host's"
    );
    assert!(!get(pod, "tolerations").as_sequence().unwrap().is_empty());
    let container = daemonset_container(docs);

    // Minimal privileges: not privileged, BPF + PERFMON, everything else dropped.
    let sc = get(container, "securityContext");
    assert_eq!(get(sc, "privileged"), &Yaml::Bool(false));
    assert_eq!(get(sc, "allowPrivilegeEscalation"), &Yaml::Bool(false));
    assert_eq!(strings(get(sc, "capabilities.drop")), ["ALL"]);
    let added: BTreeSet<String> = strings(get(sc, "capabilities.add")).into_iter().collect();
    assert_eq!(
        added,
        BTreeSet::from(["BPF", "PERFMON", "SYS_PTRACE"].map(String::from))
    );
    for kind in ["requests", "limits"] {
        assert!(
            try_get(container, &format!("resources.{kind}.memory")).is_some(),
            "{kind}"
        );
    }

    // Host paths: BTF and tracefs, mounted where the agent looks.
    let volumes: BTreeMap<String, &Yaml> = get(pod, "volumes")
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| (str_of(v, "name").to_owned(), v))
        .collect();
    let mut mounts = BTreeMap::new();
    for m in get(container, "volumeMounts").as_sequence().unwrap() {
        let name = str_of(m, "name");
        let volume = volumes
            .get(name)
            .unwrap_or_else(|| panic!("volumeMount {name} has no volume"));
        mounts.insert(str_of(m, "mountPath").to_owned(), *volume);
    }
    for path in [
        mapwatch::host::preflight::VMLINUX_BTF,
        mapwatch::host::preflight::TRACEFS,
    ] {
        let dir = if path.ends_with("vmlinux") {
            Path::new(path).parent().unwrap().to_str().unwrap()
        } else {
            path
        };
        let volume = mounts
            .get(dir)
            .unwrap_or_else(|| panic!("nothing mounted at {dir}"));
        assert_eq!(str_of(volume, "hostPath.path"), dir);
    }

    // The config file: mounted where --config says, and it loads together
    // with the environment the ConfigMap and env give the container.
    let args = strings(get(container, "args"));
    let config_path = &args[args.iter().position(|a| a == "--config").unwrap() + 1];
    let (dir, file) = config_path.rsplit_once('/').unwrap();
    let volume = mounts
        .get(dir)
        .unwrap_or_else(|| panic!("nothing mounted at {dir}"));
    let config_map = find_kind(docs, "ConfigMap", str_of(volume, "configMap.name"));
    let data = string_map(get(config_map, "data"));
    let toml_text = data
        .get(file)
        .unwrap_or_else(|| panic!("ConfigMap has no {file}"));
    let tmp = crate::common::private_dir();
    let path = tmp.path().join(file);
    std::fs::write(&path, toml_text).unwrap();
    let env = daemonset_env(docs);
    let config = load_config(Some(path), &env);
    let url = config
        .otlp
        .logs_url()
        .expect("the DaemonSet configures an endpoint");
    let port = url_parts(&url).1;
    let collector = yaml(COLLECTOR);
    let listens = match config.otlp.protocol {
        Protocol::Grpc => str_of(&collector, "receivers.otlp.protocols.grpc.endpoint"),
        Protocol::HttpProtobuf => str_of(&collector, "receivers.otlp.protocols.http.endpoint"),
    };
    assert_eq!(
        port,
        port_of(listens),
        "{url} is not where the collector listens"
    );
    assert_eq!(
        config
            .service
            .resource_attributes
            .get("host.name")
            .map(String::as_str),
        Some("<spec.nodeName>"),
        "host.name is the node's name"
    );
}

/// `helm ARGS` with its caches in a scratch directory: standard output, or
/// the error output when it fails.
fn helm(helm: &Path, args: &[&str]) -> Result<String, String> {
    let home = crate::common::private_dir();
    let out = std::process::Command::new(helm)
        .args(args)
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .output()
        .expect("run helm");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr))
    }
}

/// The documents `helm template` renders from the chart with `sets`.
fn helm_template(helm_bin: &Path, sets: &[&str]) -> Vec<Yaml> {
    let chart = root().join(HELM_CHART);
    // Helm built from source assumes Kubernetes 1.20; the chart needs >= 1.25.
    let mut args = vec![
        "template",
        "mapwatch",
        chart.to_str().unwrap(),
        "--namespace",
        "mapwatch",
        "--kube-version",
        "1.31.0",
    ];
    args.extend_from_slice(sets);
    let rendered = helm(helm_bin, &args).unwrap_or_else(|e| panic!("helm {args:?}:\n{e}"));
    parse_yaml_docs("helm template", &rendered)
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

#[test]
fn the_helm_chart_lints_and_renders_the_daemonset_with_its_values() {
    let Some(stack) = common::stack::stack() else {
        return;
    };
    let chart = root().join(HELM_CHART);
    let lint = helm(&stack.helm, &["lint", "--strict", chart.to_str().unwrap()]);
    assert!(lint.is_ok(), "helm lint --strict:\n{lint:?}");

    // The defaults: the example's pod, checked the same way.
    let docs = helm_template(&stack.helm, &[]);
    check_daemonset(&docs);
    let example = daemonset_docs();
    let config_of = |docs: &[Yaml]| {
        let ds = docs
            .iter()
            .find(|d| str_of(d, "kind") == "DaemonSet")
            .unwrap();
        let volume = get(ds, "spec.template.spec.volumes")
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| str_of(v, "name") == "config")
            .unwrap();
        let map = find_kind(docs, "ConfigMap", str_of(volume, "configMap.name"));
        let text = get(map, "data")
            .get("mapwatch.toml")
            .and_then(Yaml::as_str)
            .expect("mapwatch.toml in the ConfigMap");
        toml::from_str::<toml::Table>(text).expect("the ConfigMap's mapwatch.toml parses")
    };
    assert_eq!(
        config_of(&docs),
        config_of(&example),
        "the chart's default config file says other than the example DaemonSet's"
    );
    assert_eq!(
        get(daemonset_container(&docs), "securityContext"),
        get(daemonset_container(&example), "securityContext"),
        "the chart's privileges differ from the example's"
    );

    // Values reach the manifests.
    let docs = helm_template(
        &stack.helm,
        &[
            "--set",
            "collector.endpoint=https://gateway.example:4317",
            "--set",
            "signals={logs,traces}",
            "--set",
            "collector.caSecretName=collector-ca",
            "--set",
            "resources.limits.memory=1Gi",
            "--set-json",
            r#"tolerations=[{"key":"dedicated","operator":"Equal","value":"security","effect":"NoSchedule"}]"#,
        ],
    );
    let env = daemonset_env(&docs);
    let mut config = load_config(None, &env);
    assert_eq!(
        config.otlp.logs_url().as_deref(),
        Some("https://gateway.example:4317"),
        "{env:?}"
    );
    assert!(
        config
            .signals
            .contains(mapwatch_config::TelemetrySignal::Traces),
        "{env:?}"
    );
    let ca = config.otlp.certificate.take().expect("a CA file for https");
    let container = daemonset_container(&docs);
    let ds = docs
        .iter()
        .find(|d| str_of(d, "kind") == "DaemonSet")
        .unwrap();
    let tls_mount = get(container, "volumeMounts")
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| str_of(m, "name") == "tls")
        .expect("the CA Secret is mounted");
    assert_eq!(
        ca.parent(),
        Some(Path::new(str_of(tls_mount, "mountPath"))),
        "the CA file is where the Secret is mounted"
    );
    assert!(
        get(ds, "spec.template.spec.volumes")
            .as_sequence()
            .unwrap()
            .iter()
            .any(|v| str_of(v, "name") == "tls" && str_of(v, "secret.secretName") == "collector-ca")
    );
    assert_eq!(str_of(container, "resources.limits.memory"), "1Gi");
    let tolerations = get(ds, "spec.template.spec.tolerations")
        .as_sequence()
        .unwrap();
    assert_eq!(tolerations.len(), 1);
    assert_eq!(str_of(&tolerations[0], "key"), "dedicated");

    // No endpoint, no manifest.
    let chart = chart.to_str().unwrap();
    let refused = helm(
        &stack.helm,
        &[
            "template",
            "mapwatch",
            chart,
            "--kube-version",
            "1.31.0",
            "--set",
            "collector.endpoint=",
        ],
    );
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("collector.endpoint is required")),
        "{refused:?}"
    );
}

// --- systemd, Debian package, Dockerfile -----------------------------------------------

/// `[section] -> key -> values` of a systemd unit (keys may repeat).
fn unit_file(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut section = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.to_owned());
            out.entry(name.to_owned()).or_default();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{UNIT}:{}: not key=value: {line}", n + 1));
        let section = section
            .clone()
            .unwrap_or_else(|| panic!("{UNIT}: key before a section"));
        out.entry(section)
            .or_default()
            .entry(key.trim().to_owned())
            .or_default()
            .push(value.trim().to_owned());
    }
    out
}

fn deb_metadata() -> toml::Table {
    let manifest: toml::Table = toml::from_str(&read("agent/Cargo.toml")).unwrap();
    manifest["package"]["metadata"]["deb"]
        .as_table()
        .expect("[package.metadata.deb]")
        .clone()
}

/// `(source, dest)` of every asset.
fn deb_assets() -> Vec<(String, String)> {
    deb_metadata()["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_array().expect("[source, dest, mode]");
            (
                a[0].as_str().unwrap().to_owned(),
                a[1].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn the_systemd_unit_is_hardened_and_starts_the_packaged_binary() {
    let unit = unit_file(&read(UNIT));
    for section in ["Unit", "Service", "Install"] {
        assert!(unit.contains_key(section), "[{section}]");
    }
    let service = &unit["Service"];
    let one = |key: &str| -> &str {
        let values = service
            .get(key)
            .unwrap_or_else(|| panic!("[Service] {key}= is missing"));
        assert_eq!(values.len(), 1, "{key}= set more than once");
        &values[0]
    };
    let words =
        |key: &str| -> BTreeSet<String> { one(key).split_whitespace().map(String::from).collect() };

    // The binary the package installs.
    let exec = one("ExecStart");
    let (_, dest) = deb_assets()
        .into_iter()
        .find(|(s, _)| s == "target/release/mapwatch")
        .expect("the binary is a package asset");
    assert_eq!(
        exec.split_whitespace().next(),
        Some(format!("/{dest}mapwatch").as_str())
    );

    // Exactly the capabilities BPF needs, granted without root.
    let caps = BTreeSet::from(
        [
            "CAP_BPF",
            "CAP_PERFMON",
            "CAP_DAC_READ_SEARCH",
            "CAP_SYS_PTRACE",
        ]
        .map(String::from),
    );
    assert_eq!(words("CapabilityBoundingSet"), caps);
    assert_eq!(words("AmbientCapabilities"), caps);
    assert_eq!(one("DynamicUser"), "yes");
    assert!(!service.contains_key("User"), "no fixed (root) user");
    assert_ne!(
        service.get("PrivateUsers").map(|v| v[0].as_str()),
        Some("yes")
    );
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictNamespaces", "yes"),
        ("SystemCallArchitectures", "native"),
    ] {
        assert_eq!(one(key), value, "{key}=");
    }
    // bpf(2) and perf_event_open(2) are outside @system-service.
    let filter = words("SystemCallFilter");
    for needed in ["@system-service", "bpf", "perf_event_open"] {
        assert!(filter.contains(needed), "SystemCallFilter= lacks {needed}");
    }
    assert!(
        !filter.iter().any(|f| f.starts_with('~')),
        "no deny list that could catch bpf"
    );
    // A configuration error (exit 2) is not retried.
    assert_eq!(one("RestartPreventExitStatus"), "2");
    assert_eq!(unit["Install"]["WantedBy"], ["multi-user.target"]);
}

#[test]
fn the_debian_package_metadata_names_files_that_exist_or_are_generated() {
    let deb = deb_metadata();
    let script = read("scripts/package-deb.sh");
    let agent_dir = root().join("agent");
    let manifest: toml::Table = toml::from_str(&read("agent/Cargo.toml")).unwrap();
    let bins: BTreeSet<String> = manifest["bin"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_owned())
        .collect();
    let mut dests = BTreeSet::new();
    for (source, dest) in deb_assets() {
        assert!(
            !dest.starts_with('/'),
            "{dest}: cargo-deb destinations are relative"
        );
        if let Some(name) = source.strip_prefix("target/release/assets/") {
            assert!(
                script.contains(&format!("\"$assets/{name}\"")),
                "scripts/package-deb.sh does not generate {name}"
            );
        } else if let Some(bin) = source.strip_prefix("target/release/") {
            assert!(bins.contains(bin), "{bin} is not a binary of the package");
        } else if let Some((dir, pattern)) = source.rsplit_once("/*") {
            let dir = agent_dir.join(dir);
            let matches = std::fs::read_dir(&dir)
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(pattern)
                })
                .count();
            assert!(matches > 0, "{source} matches nothing");
        } else {
            assert!(agent_dir.join(&source).is_file(), "{source} does not exist");
        }
        let full = if dest.ends_with('/') {
            format!("{dest}{}", source.rsplit('/').next().unwrap())
        } else {
            dest
        };
        dests.insert(full);
    }
    // The conffile is the documented example, where the agent looks by default.
    assert!(
        dests.contains(DEFAULT_CONFIG_PATH.trim_start_matches('/')),
        "{dests:?}"
    );
    assert!(deb_assets().contains(&(
        "../examples/mapwatch.toml".into(),
        DEFAULT_CONFIG_PATH[1..].into()
    )));
    // Man page and completions for the three shells with vendor directories.
    for needed in [
        "usr/bin/mapwatch",
        "usr/share/man/man1/mapwatch.1.gz",
        "usr/share/bash-completion/completions/mapwatch",
        "usr/share/zsh/vendor-completions/_mapwatch",
        "usr/share/fish/vendor_completions.d/mapwatch.fish",
    ] {
        assert!(dests.contains(needed), "the package lacks {needed}");
    }
    // The unit comes from the systemd-units directory, named after the package.
    let units = deb["systemd-units"].as_table().unwrap();
    let unit_dir = agent_dir.join(units["unit-scripts"].as_str().unwrap());
    assert!(
        unit_dir
            .join(format!("{}.service", deb["name"].as_str().unwrap()))
            .is_file()
    );
    assert_eq!(
        units["enable"].as_bool(),
        Some(false),
        "not started before it is configured"
    );
    assert!(
        agent_dir
            .join(deb["maintainer-scripts"].as_str().unwrap())
            .is_dir()
    );
    // The script generates with the binary's own subcommands.
    for shell in ["bash", "zsh", "fish"] {
        assert!(script.contains(&format!("completions {shell}")), "{shell}");
    }
    assert!(script.contains("manpage"));
    assert!(script.contains("cargo deb --package mapwatch --no-build"));
    assert!(
        script.contains("gzip -9n"),
        "Debian wants compressed man pages"
    );
}

#[test]
fn the_dockerfile_builds_the_agent_the_deployments_run() {
    let text = read("Dockerfile");
    let instructions: Vec<(String, String)> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .fold(Vec::<String>::new(), |mut acc, line| {
            match acc.last_mut() {
                Some(prev) if prev.ends_with('\\') => {
                    prev.pop();
                    prev.push(' ');
                    prev.push_str(line);
                }
                _ => acc.push(line.to_owned()),
            }
            acc
        })
        .into_iter()
        .map(|l| {
            let (op, rest) = l.split_once(' ').unwrap_or((&l, ""));
            (op.to_uppercase(), rest.trim().to_owned())
        })
        .collect();
    const KNOWN: &[&str] = &[
        "FROM",
        "RUN",
        "COPY",
        "ENV",
        "ARG",
        "WORKDIR",
        "ENTRYPOINT",
        "CMD",
        "LABEL",
        "USER",
        "EXPOSE",
        "VOLUME",
        "STOPSIGNAL",
        "HEALTHCHECK",
        "SHELL",
        "ADD",
    ];
    for (op, _) in &instructions {
        assert!(
            KNOWN.contains(&op.as_str()),
            "Dockerfile: unknown instruction {op}"
        );
    }
    let froms: Vec<&String> = instructions
        .iter()
        .filter(|(op, _)| op == "FROM")
        .map(|(_, r)| r)
        .collect();
    assert!(froms.len() >= 2, "multi-stage");
    assert!(froms[0].ends_with(" AS build"), "{}", froms[0]);
    assert!(froms.last().unwrap().contains("-slim"), "slim runtime");
    let joined = text.replace("\\\n", " ");
    for needed in [
        "clang",
        "llvm",
        "libbpf-dev",
        "COPY rust-toolchain.toml",
        "rustup toolchain install",
        "cargo build --locked --release -p mapwatch",
    ] {
        assert!(joined.contains(needed), "Dockerfile lacks {needed}");
    }
    // Every COPY from the context exists; the config lands where the agent looks.
    let mut copies = BTreeMap::new();
    for (op, rest) in &instructions {
        if op == "COPY" && !rest.starts_with("--from") {
            let parts: Vec<&str> = rest.split_whitespace().collect();
            let (dest, sources) = parts.split_last().unwrap();
            for source in sources {
                if *source != "." {
                    assert!(root().join(source).exists(), "COPY {source}: missing");
                }
                copies.insert(source.to_string(), dest.to_string());
            }
        }
    }
    assert_eq!(
        copies.get("examples/mapwatch.toml").map(String::as_str),
        Some(DEFAULT_CONFIG_PATH)
    );
    let entrypoint = &instructions
        .iter()
        .rfind(|(op, _)| op == "ENTRYPOINT")
        .unwrap()
        .1;
    let entrypoint: Vec<String> = serde_json::from_str(entrypoint).expect("exec form");
    // The same path as the Debian package and the systemd unit.
    assert_eq!(entrypoint, ["/usr/bin/mapwatch"]);
    let ignore = read(".dockerignore");
    assert!(
        ignore.lines().any(|l| l.trim() == "target"),
        ".dockerignore must exclude target"
    );
}

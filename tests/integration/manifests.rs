//! The deployment files agree with the service they deploy.
//!
//! The Kubernetes base in `deploy/kubernetes/` and the `Dockerfile` repeat
//! facts that the code owns: the port, the health route, the user the image
//! runs as, how long shutdown may take, where the signing key and the client
//! list come from, and which ports the NetworkPolicy opens to whom. These
//! tests read those files and compare them with the crate's own constants and
//! configuration parser, so a change on either side that breaks a deployment
//! fails here rather than in a cluster. (Schema validation, kustomize
//! rendering and checkov run in `scripts/k8s-check.sh`; the image itself is
//! built and run by `scripts/container-check.sh`.)

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use macp_auth_service::Config;
use macp_auth_service::config::DEFAULT_DRAIN_TIMEOUT;
use macp_auth_service::http::routes::{HEALTHZ_PATH, READYZ_PATH};
use serde::Deserialize;
use serde_norway::{Mapping, Value};

/// The UID of the distroless `nonroot` user, which the image and pods run as.
const NONROOT_UID: u64 = 65532;
/// The container, the Service port and the name the probes use.
const CONTAINER_NAME: &str = "macp-auth-service";
const PORT_NAME: &str = "http";
/// The container port `/metrics` moves to (`MACP_AUTH_METRICS_ADDR`).
const METRICS_PORT_NAME: &str = "metrics";

/// A secret the pods read from a file mounted from a Secret that the base
/// does not ship, never from an environment variable.
struct MountedSecret {
    /// The variable naming the file.
    file_variable: &'static str,
    /// The variable that would carry the secret inline; never set.
    inline_variable: &'static str,
    /// The Secret and its key.
    secret: &'static str,
    key: &'static str,
}

const MOUNTED_SECRETS: &[MountedSecret] = &[
    MountedSecret {
        file_variable: "MACP_AUTH_SIGNING_KEY_FILE",
        inline_variable: "MACP_AUTH_SIGNING_KEY_JSON",
        secret: "macp-auth-signing-key",
        key: "jwk",
    },
    MountedSecret {
        file_variable: "MACP_AUTH_CLIENTS_FILE",
        inline_variable: "MACP_AUTH_CLIENTS_JSON",
        secret: "macp-auth-clients",
        key: "clients.json",
    },
];
/// Where the image installs the binary.
const IMAGE_BINARY: &str = "/usr/local/bin/macp-auth-service";

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn kubernetes_dir() -> PathBuf {
    repo_path("deploy/kubernetes")
}

/// The port the service listens on when `PORT` is unset.
fn service_port() -> u64 {
    u64::from(Config::default().listen.port)
}

/// Every `.yaml`/`.yml` file under `deploy/kubernetes`, sorted.
fn manifest_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries = fs::read_dir(dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if matches!(
                path.extension().and_then(|ext| ext.to_str()),
                Some("yaml" | "yml")
            ) {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&kubernetes_dir(), &mut files);
    files.sort();
    assert!(
        files.len() >= 5,
        "expected the Kustomize base in {}, found {files:?}",
        kubernetes_dir().display()
    );
    files
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// One YAML document and the file it came from.
struct Document {
    file: PathBuf,
    value: Value,
}

impl Document {
    fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }

    fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or_default()
    }
}

/// Every document of every manifest file; a file may hold several,
/// separated by `---`. Empty documents are skipped.
fn documents() -> Vec<Document> {
    let mut documents = Vec::new();
    for file in manifest_files() {
        let text = read(&file);
        for document in serde_norway::Deserializer::from_str(&text) {
            let value = Value::deserialize(document)
                .unwrap_or_else(|err| panic!("{} is not valid YAML: {err}", file.display()));
            if !value.is_null() {
                documents.push(Document {
                    file: file.clone(),
                    value,
                });
            }
        }
    }
    documents
}

fn objects_of_kind(kind: &str) -> Vec<Document> {
    documents()
        .into_iter()
        .filter(|doc| doc.kind() == kind)
        .collect()
}

fn the_only(kind: &str) -> Value {
    let mut found = objects_of_kind(kind);
    assert_eq!(found.len(), 1, "expected exactly one {kind} in the base");
    found.remove(0).value
}

fn deployment() -> Value {
    the_only("Deployment")
}

fn pod_spec(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]
}

fn container(deployment: &Value) -> &Value {
    let containers = pod_spec(deployment)["containers"]
        .as_sequence()
        .expect("the pod template lists its containers");
    containers
        .iter()
        .find(|c| c["name"].as_str() == Some(CONTAINER_NAME))
        .unwrap_or_else(|| panic!("no container named {CONTAINER_NAME}"))
}

fn as_u64(value: &Value, what: &str) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("{what} must be a number, got {value:?}"))
}

/// Resolves a probe or Service port, given by number or by name, against the
/// container's declared ports.
fn resolve_port(port: &Value, container: &Value) -> u64 {
    match port {
        Value::Number(_) => as_u64(port, "a port"),
        Value::String(name) => {
            let ports = container["ports"]
                .as_sequence()
                .expect("the container declares its ports");
            let declared = ports
                .iter()
                .find(|p| p["name"].as_str() == Some(name.as_str()))
                .unwrap_or_else(|| panic!("no container port is named {name:?}"));
            as_u64(&declared["containerPort"], "containerPort")
        }
        other => panic!("a port must be a number or a name, got {other:?}"),
    }
}

/// A container security setting, falling back to the pod's for the fields
/// Kubernetes inherits from the pod security context.
fn security_setting<'a>(deployment: &'a Value, field: &str) -> &'a Value {
    let own = &container(deployment)["securityContext"][field];
    if !own.is_null() {
        return own;
    }
    const INHERITED: &[&str] = &["runAsNonRoot", "runAsUser", "runAsGroup", "seccompProfile"];
    if INHERITED.contains(&field) {
        &pod_spec(deployment)["securityContext"][field]
    } else {
        own
    }
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    let (Some(selector), Some(labels)) = (selector.as_mapping(), labels.as_mapping()) else {
        return false;
    };
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn every_manifest_is_yaml_with_an_api_version_and_a_kind() {
    let documents = documents();
    assert!(!documents.is_empty());
    for doc in &documents {
        assert!(
            doc.value["apiVersion"].is_string() && !doc.kind().is_empty(),
            "{}: a document without apiVersion/kind",
            doc.file.display()
        );
    }
}

#[test]
fn the_kustomization_lists_every_manifest_in_the_base() {
    let kustomization = the_only("Kustomization");
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_sequence()
        .expect("kustomization.yaml lists resources")
        .iter()
        .map(|r| r.as_str().expect("a resource path").to_owned())
        .collect();
    let dir = kubernetes_dir();
    let present: BTreeSet<String> = manifest_files()
        .iter()
        .filter(|f| !is_kustomize_file(f))
        .map(|f| f.strip_prefix(&dir).unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listed, present, "kustomization.yaml resources vs files");
    for kind in [
        "Namespace",
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
    ] {
        assert_eq!(objects_of_kind(kind).len(), 1, "the base has one {kind}");
    }
    assert_eq!(
        objects_of_kind("Component").len(),
        1,
        "the network-namespaces component"
    );
}

/// A kustomization or component file: kustomize's input, not a resource.
fn is_kustomize_file(path: &Path) -> bool {
    path.file_name().and_then(|name| name.to_str()) == Some("kustomization.yaml")
}

#[test]
fn every_resource_is_in_the_namespace_the_kustomization_sets() {
    let kustomization = the_only("Kustomization");
    let namespace = kustomization["namespace"]
        .as_str()
        .expect("kustomization.yaml sets a namespace");
    let declared = the_only("Namespace");
    assert_eq!(declared["metadata"]["name"].as_str(), Some(namespace));
    assert_eq!(
        declared["metadata"]["labels"]["pod-security.kubernetes.io/enforce"].as_str(),
        Some("restricted"),
        "the namespace enforces the restricted Pod Security Standard"
    );
    for doc in documents() {
        if is_kustomize_file(&doc.file) || doc.kind() == "Namespace" {
            continue;
        }
        assert_eq!(
            doc.value["metadata"]["namespace"].as_str(),
            Some(namespace),
            "{}: {} {}",
            doc.file.display(),
            doc.kind(),
            doc.name()
        );
    }
}

#[test]
fn probes_point_at_the_health_routes_on_the_service_port() {
    let deployment = deployment();
    let container = container(&deployment);
    let port = service_port();
    assert_eq!(port, 3200);
    assert_eq!(HEALTHZ_PATH, "/healthz");
    assert_eq!(READYZ_PATH, "/readyz");

    let http = container["ports"]
        .as_sequence()
        .expect("the container declares its ports")
        .iter()
        .find(|p| p["name"].as_str() == Some(PORT_NAME))
        .expect("the container has a port named http");
    assert_eq!(as_u64(&http["containerPort"], "containerPort"), port);

    for probe in ["readinessProbe", "livenessProbe"] {
        assert!(container[probe].is_mapping(), "the container has a {probe}");
    }
    for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
        let spec = &container[probe];
        if spec.is_null() {
            continue;
        }
        let get = &spec["httpGet"];
        assert!(get.is_mapping(), "{probe} must be an httpGet probe");
        // Readiness fails as soon as shutdown begins; liveness must not.
        let expected = if probe == "readinessProbe" {
            READYZ_PATH
        } else {
            HEALTHZ_PATH
        };
        assert_eq!(get["path"].as_str(), Some(expected), "{probe} path");
        assert_eq!(resolve_port(&get["port"], container), port, "{probe} port");
        let scheme = get["scheme"].as_str().unwrap_or("HTTP");
        assert_eq!(scheme, "HTTP", "{probe}: the service speaks plain HTTP");
    }
}

#[test]
fn the_configmap_port_matches_the_container_port() {
    let deployment = deployment();
    let container = container(&deployment);
    let config = the_only("ConfigMap");
    let config_name = config["metadata"]["name"].as_str().unwrap();
    let referenced = container["envFrom"]
        .as_sequence()
        .expect("the container takes its settings from envFrom")
        .iter()
        .any(|source| source["configMapRef"]["name"].as_str() == Some(config_name));
    assert!(referenced, "the container reads ConfigMap {config_name}");

    let data = &config["data"];
    if let Some(port) = data["PORT"].as_str() {
        assert_eq!(port.parse::<u64>().ok(), Some(service_port()));
    }
    for value in data.as_mapping().expect("the ConfigMap has data").values() {
        assert!(
            value.is_string(),
            "ConfigMap values must be strings: {value:?}"
        );
    }
}

#[test]
fn the_service_and_disruption_budget_select_the_pods_on_the_service_port() {
    let deployment = deployment();
    let container = container(&deployment);
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert!(labels_match(
        &deployment["spec"]["selector"]["matchLabels"],
        pod_labels
    ));

    let service = the_only("Service");
    let spec = &service["spec"];
    assert_eq!(spec["type"].as_str().unwrap_or("ClusterIP"), "ClusterIP");
    assert!(
        labels_match(&spec["selector"], pod_labels),
        "Service selector"
    );
    let ports = spec["ports"].as_sequence().expect("the Service has ports");
    assert_eq!(ports.len(), 1);
    assert_eq!(as_u64(&ports[0]["port"], "Service port"), service_port());
    assert_eq!(
        resolve_port(&ports[0]["targetPort"], container),
        service_port()
    );

    let pdb = the_only("PodDisruptionBudget");
    assert!(labels_match(
        &pdb["spec"]["selector"]["matchLabels"],
        pod_labels
    ));
    assert_eq!(pdb["spec"]["minAvailable"].as_u64(), Some(1));
}

#[test]
fn the_deployment_runs_as_the_nonroot_user_with_a_locked_down_container() {
    let deployment = deployment();
    let setting = |field| security_setting(&deployment, field);
    assert_eq!(setting("runAsNonRoot").as_bool(), Some(true));
    assert_eq!(setting("runAsUser").as_u64(), Some(NONROOT_UID));
    assert_eq!(setting("readOnlyRootFilesystem").as_bool(), Some(true));
    assert_eq!(setting("allowPrivilegeEscalation").as_bool(), Some(false));
    assert_ne!(setting("privileged").as_bool(), Some(true));
    assert_eq!(
        setting("seccompProfile")["type"].as_str(),
        Some("RuntimeDefault")
    );
    let capabilities = setting("capabilities");
    let dropped: Vec<&str> = capabilities["drop"]
        .as_sequence()
        .expect("capabilities.drop is a list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(dropped, ["ALL"]);
    assert!(capabilities["add"].is_null(), "no capabilities are added");

    // The pod-level context must not contradict the container's.
    let pod = &pod_spec(&deployment)["securityContext"];
    assert_ne!(pod["runAsNonRoot"].as_bool(), Some(false));
    if let Some(uid) = pod["runAsUser"].as_u64() {
        assert_eq!(uid, NONROOT_UID);
    }
}

#[test]
fn the_deployment_runs_two_bounded_replicas_that_outlive_the_drain() {
    let deployment = deployment();
    assert_eq!(deployment["spec"]["replicas"].as_u64(), Some(2));

    let resources = &container(&deployment)["resources"];
    for bound in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                !resources[bound][resource].is_null(),
                "resources.{bound}.{resource} is set"
            );
        }
    }

    // SIGTERM arrives after the preStop hook; the drain may then take up to
    // DEFAULT_DRAIN_TIMEOUT. The grace period must cover both, or the
    // kubelet kills requests the service is still finishing.
    let grace = as_u64(
        &pod_spec(&deployment)["terminationGracePeriodSeconds"],
        "terminationGracePeriodSeconds",
    );
    let pre_stop = container(&deployment)["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap_or(0);
    assert!(grace >= 15, "terminationGracePeriodSeconds is {grace}");
    assert!(
        grace > pre_stop + DEFAULT_DRAIN_TIMEOUT.as_secs(),
        "grace {grace}s must exceed preStop {pre_stop}s + drain {}s",
        DEFAULT_DRAIN_TIMEOUT.as_secs()
    );
}

/// The variables the container starts with: the ConfigMap's, overridden by
/// the container's own `env` (as Kubernetes orders them). Every one must be a
/// literal: nothing may come from a Secret through the environment.
fn container_environment(deployment: &Value) -> BTreeMap<String, String> {
    let container = container(deployment);
    let mut environment = BTreeMap::new();
    for source in container["envFrom"].as_sequence().into_iter().flatten() {
        assert!(
            source["secretRef"].is_null(),
            "envFrom must not read a Secret"
        );
        let name = source["configMapRef"]["name"]
            .as_str()
            .expect("configMapRef");
        let config = objects_of_kind("ConfigMap")
            .into_iter()
            .find(|c| c.name() == name)
            .unwrap_or_else(|| panic!("the base has no ConfigMap {name}"));
        for (key, value) in config.value["data"].as_mapping().expect("ConfigMap data") {
            let (Some(key), Some(value)) = (key.as_str(), value.as_str()) else {
                panic!("ConfigMap {name}: keys and values must be strings: {key:?}: {value:?}");
            };
            environment.insert(key.to_owned(), value.to_owned());
        }
    }
    for entry in container["env"].as_sequence().into_iter().flatten() {
        let name = entry["name"].as_str().expect("an env entry has a name");
        assert!(
            entry["valueFrom"].is_null(),
            "{name}: no variable may come from a Secret or another object"
        );
        let value = entry["value"].as_str().expect("an env entry has a value");
        environment.insert(name.to_owned(), value.to_owned());
    }
    environment
}

fn port_named(container: &Value, name: &str) -> u64 {
    resolve_port(&Value::String(name.to_owned()), container)
}

#[test]
fn the_service_accepts_the_settings_the_deployment_gives_it() {
    let deployment = deployment();
    let container = container(&deployment);
    let environment = container_environment(&deployment);
    let config = Config::from_lookup(|name| environment.get(name).map(OsString::from))
        .unwrap_or_else(|err| panic!("the deployment's settings are refused: {err}"));

    assert_eq!(
        u64::from(config.listen.port),
        port_named(container, PORT_NAME)
    );
    assert_eq!(config.listen.port, Config::default().listen.port);
    let metrics = config
        .listen
        .metrics_addr
        .expect("the deployment moves /metrics to its own port");
    assert!(
        metrics.ip().is_unspecified(),
        "metrics must listen on the pod IP"
    );
    assert_eq!(
        u64::from(metrics.port()),
        port_named(container, METRICS_PORT_NAME)
    );
    assert!(
        config.listen.host.is_unspecified(),
        "the kubelet probes the pod IP"
    );
    for secret in MOUNTED_SECRETS {
        assert!(
            !environment.contains_key(secret.inline_variable),
            "{} must not be set: the secret is a mounted file",
            secret.inline_variable
        );
    }
    assert!(config.keys.inline.is_none() && config.clients.inline.is_none());
    assert_eq!(
        config.keys.file.as_deref().map(Path::to_str),
        Some(
            environment
                .get("MACP_AUTH_SIGNING_KEY_FILE")
                .map(String::as_str)
        )
    );
    assert_eq!(
        config.clients.file.as_deref().map(Path::to_str),
        Some(
            environment
                .get("MACP_AUTH_CLIENTS_FILE")
                .map(String::as_str)
        )
    );
}

/// The `volumes` entry called `name`.
fn volume<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    pod_spec(deployment)["volumes"]
        .as_sequence()
        .expect("the pod has volumes")
        .iter()
        .find(|v| v["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no volume named {name}"))
}

#[test]
fn secrets_are_files_mounted_from_secrets_that_the_base_does_not_ship() {
    let deployment = deployment();
    let container = container(&deployment);
    let environment = container_environment(&deployment);
    assert_eq!(
        pod_spec(&deployment)["securityContext"]["fsGroup"].as_u64(),
        Some(NONROOT_UID),
        "the Secret files are group-owned by the nonroot user's group"
    );
    let mounts = container["volumeMounts"]
        .as_sequence()
        .expect("the container mounts volumes");
    for secret in MOUNTED_SECRETS {
        let path = environment
            .get(secret.file_variable)
            .unwrap_or_else(|| panic!("{} is set", secret.file_variable));
        let (directory, file) = path.rsplit_once('/').expect("an absolute path");
        let mount = mounts
            .iter()
            .find(|m| m["mountPath"].as_str() == Some(directory))
            .unwrap_or_else(|| panic!("{path}: nothing is mounted at {directory}"));
        assert_eq!(mount["readOnly"].as_bool(), Some(true), "{directory}");
        assert!(
            mount["subPath"].is_null(),
            "{directory}: a subPath mount never sees Secret updates"
        );
        let source = &volume(&deployment, mount["name"].as_str().unwrap())["secret"];
        assert_eq!(source["secretName"].as_str(), Some(secret.secret));
        assert_ne!(
            source["optional"].as_bool(),
            Some(true),
            "{}: a missing Secret must stop the pod, not start it without the file",
            secret.secret
        );
        let items = source["items"]
            .as_sequence()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let projected = items.is_empty() && file == secret.key
            || items
                .iter()
                .any(|i| i["key"].as_str() == Some(secret.key) && i["path"].as_str() == Some(file));
        assert!(
            projected,
            "{path} is key {} of {}",
            secret.key, secret.secret
        );
        let mode = file_mode(&source["defaultMode"]);
        assert!(mode & 0o040 != 0 && mode & 0o007 == 0, "mode {mode:o}");
    }
    assert_no_secret_is_shipped();
}

/// A file mode as Kubernetes reads it from YAML 1.1, where a leading zero
/// means octal (`0440`); the YAML 1.2 parser here keeps such a scalar as a
/// string. A plain number is decimal, as in JSON.
fn file_mode(value: &Value) -> u64 {
    match value {
        Value::Number(_) => as_u64(value, "a file mode"),
        Value::String(text) if text.len() > 1 && text.starts_with('0') => {
            u64::from_str_radix(text, 8).unwrap_or_else(|_| panic!("mode {text}"))
        }
        other => panic!("a file mode must be a number, got {other:?}"),
    }
}

fn assert_no_secret_is_shipped() {
    for config in objects_of_kind("ConfigMap") {
        for secret in MOUNTED_SECRETS {
            assert!(
                config.value["data"][secret.inline_variable].is_null(),
                "{} puts {} in ConfigMap {}",
                config.file.display(),
                secret.inline_variable,
                config.name()
            );
        }
    }
    for secret in objects_of_kind("Secret") {
        for field in ["data", "stringData"] {
            let empty = secret.value[field]
                .as_mapping()
                .is_none_or(Mapping::is_empty);
            assert!(
                empty,
                "{}: Secret {} carries {field}",
                secret.file.display(),
                secret.name()
            );
        }
    }
    let kustomization = the_only("Kustomization");
    assert!(
        kustomization["secretGenerator"].is_null(),
        "the base must not generate the Secrets"
    );
}

/// One ingress rule of the NetworkPolicy: the namespaces it admits (by
/// `kubernetes.io/metadata.name`) and the ports it opens, resolved to numbers
/// against the container's ports.
#[derive(Debug)]
struct IngressRule {
    namespaces: Vec<String>,
    ports: BTreeSet<u64>,
}

const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

fn ingress_rules(policy: &Value, container: &Value) -> Vec<IngressRule> {
    let rules = policy["spec"]["ingress"]
        .as_sequence()
        .expect("the NetworkPolicy lists ingress rules");
    rules
        .iter()
        .map(|rule| {
            let peers = rule["from"]
                .as_sequence()
                .expect("every rule names its peers");
            assert!(!peers.is_empty(), "a rule without peers admits everyone");
            let namespaces = peers
                .iter()
                .map(|peer| {
                    assert!(
                        peer["ipBlock"].is_null(),
                        "peers are namespaces, not addresses"
                    );
                    let labels = peer["namespaceSelector"]["matchLabels"]
                        .as_mapping()
                        .expect("each peer selects namespaces by label");
                    assert_eq!(labels.len(), 1, "one label per namespace selector");
                    labels[NAMESPACE_NAME_LABEL]
                        .as_str()
                        .expect("namespaces are selected by name")
                        .to_owned()
                })
                .collect();
            let ports = rule["ports"]
                .as_sequence()
                .expect("every rule names its ports: none would open all")
                .iter()
                .map(|p| {
                    assert_eq!(p["protocol"].as_str().unwrap_or("TCP"), "TCP");
                    resolve_port(&p["port"], container)
                })
                .collect();
            IngressRule { namespaces, ports }
        })
        .collect()
}

#[test]
fn the_network_policy_opens_the_api_to_callers_and_metrics_to_monitoring_only() {
    let deployment = deployment();
    let container = container(&deployment);
    let policy = the_only("NetworkPolicy");
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert!(
        labels_match(&policy["spec"]["podSelector"]["matchLabels"], pod_labels),
        "the policy selects the service's pods"
    );
    let types: Vec<&str> = policy["spec"]["policyTypes"]
        .as_sequence()
        .expect("policyTypes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(types.contains(&"Ingress"), "{types:?}");

    let api = port_named(container, PORT_NAME);
    let metrics = port_named(container, METRICS_PORT_NAME);
    assert_eq!(api, service_port());
    let rules = ingress_rules(&policy, container);
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert_eq!(
        rules[0].ports,
        BTreeSet::from([api]),
        "rule 1: the API port"
    );
    assert_eq!(rules[0].namespaces.len(), 2, "orchestrators and runtimes");
    assert_eq!(rules[1].ports, BTreeSet::from([metrics]), "rule 2: metrics");
    assert_eq!(rules[1].namespaces.len(), 1, "monitoring only");
    assert!(
        rules[0]
            .namespaces
            .iter()
            .all(|n| !rules[1].namespaces.contains(n)),
        "the API's callers are not the monitoring namespace: {rules:?}"
    );
    // Every port the container declares is covered, and only those.
    let declared: BTreeSet<u64> = container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| as_u64(&p["containerPort"], "containerPort"))
        .collect();
    let opened: BTreeSet<u64> = rules.iter().flat_map(|r| r.ports.iter().copied()).collect();
    assert_eq!(opened, declared);
}

/// Follows a kustomize field path (`a.0.b.[dotted.key]`) through a value.
fn at_field_path<'a>(value: &'a Value, path: &str) -> &'a Value {
    let mut segments = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        let (segment, tail) = match rest.strip_prefix('[') {
            Some(bracketed) => bracketed.split_once(']').expect("a closing ]"),
            None => rest.split_once('.').unwrap_or((rest, "")),
        };
        segments.push(segment);
        rest = tail.strip_prefix('.').unwrap_or(tail);
    }
    segments
        .iter()
        .fold(value, |node, segment| match segment.parse::<usize>() {
            Ok(index) => &node[index],
            Err(_) => &node[*segment],
        })
}

#[test]
fn the_network_namespaces_component_sets_each_namespace_of_the_policy_once() {
    let component = the_only("Component");
    let policy = the_only("NetworkPolicy");
    let container_value = deployment();
    let rules = ingress_rules(&policy, container(&container_value));
    let mut expected: Vec<&str> = rules
        .iter()
        .flat_map(|r| r.namespaces.iter().map(String::as_str))
        .collect();
    let mut replaced = Vec::new();
    for replacement in component["replacements"]
        .as_sequence()
        .expect("replacements")
    {
        assert_eq!(
            replacement["source"]["name"].as_str(),
            Some("macp-auth-network-parameters")
        );
        for target in replacement["targets"].as_sequence().unwrap() {
            assert_eq!(target["select"]["kind"].as_str(), Some("NetworkPolicy"));
            assert_eq!(target["select"]["name"], policy["metadata"]["name"]);
            for path in target["fieldPaths"].as_sequence().unwrap() {
                let path = path.as_str().unwrap();
                let found = at_field_path(&policy, path)
                    .as_str()
                    .unwrap_or_else(|| panic!("{path} is not in the NetworkPolicy"));
                replaced.push(found);
            }
        }
    }
    expected.sort_unstable();
    replaced.sort_unstable();
    assert_eq!(replaced, expected, "every namespace is a parameter, once");
}

#[test]
fn no_build_file_switches_off_aws_lc_jitter_entropy() {
    // AWS-LC keeps its audited default entropy configuration (SECURITY.md).
    let mut files = vec![
        repo_path("Dockerfile"),
        repo_path(".cargo/config.toml"),
        repo_path(".ci/run"),
        repo_path("Cargo.toml"),
    ];
    for dir in [".github/workflows", "scripts"] {
        for entry in fs::read_dir(repo_path(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    for file in files.iter().filter(|f| f.exists()) {
        for line in read(file).lines() {
            let code = line.split('#').next().unwrap_or_default();
            assert!(
                !code.contains("NO_JITTER_ENTROPY"),
                "{}: {line}",
                file.display()
            );
        }
    }
}

/// Signs of private key material in text: a JWK's private member or key type,
/// or a PEM private key. Whitespace and backslashes are ignored, so
/// pretty-printed JSON and JSON escaped inside a YAML string count too.
fn key_material_in(text: &str) -> Vec<&'static str> {
    let compact: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '\\')
        .collect();
    let mut found = Vec::new();
    for (needle, label) in [
        ("\"d\":", "a JWK private member \"d\""),
        ("'d':", "a JWK private member 'd'"),
        ("\"kty\"", "a JWK \"kty\""),
        ("'kty'", "a JWK 'kty'"),
        ("PRIVATEKEY", "a PEM PRIVATE KEY"),
    ] {
        if compact.contains(needle) {
            found.push(label);
        }
    }
    found
}

/// Key material anywhere in a parsed document: a mapping with a JWK's `kty`
/// member, or a string scalar that holds a JWK or PEM key.
fn key_material_in_value(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Mapping(map) => {
            for (key, child) in map {
                if key.as_str() == Some("kty") {
                    found.push("a mapping with a JWK \"kty\" member".to_owned());
                }
                key_material_in_value(key, found);
                key_material_in_value(child, found);
            }
        }
        Value::Sequence(items) => items
            .iter()
            .for_each(|item| key_material_in_value(item, found)),
        Value::Tagged(tagged) => key_material_in_value(&tagged.value, found),
        Value::String(text) => found.extend(key_material_in(text).into_iter().map(String::from)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// A private JWK in the shape `keygen` prints, with placeholder values.
const ONE_LINE_JWK: &str =
    r#"{"kty":"EC","crv":"P-256","x":"AAAA","y":"BBBB","d":"CCCC","alg":"ES256"}"#;

/// A private JWK pretty-printed.
const PRETTY_JWK: &str = "{\n  \"kty\" : \"RSA\",\n  \"n\": \"AAAA\",\n  \"d\" : \"BBBB\"\n}";

/// A private JWK as a JSON string in YAML.
const ESCAPED_JWK: &str = r#"jwk: "{\"kty\":\"EC\",\"d\":\"CCCC\"}""#;

#[test]
fn the_key_material_scan_recognises_a_private_jwk_in_any_layout() {
    let (one_line, pretty) = (ONE_LINE_JWK, PRETTY_JWK);
    // Assembled, so secret scanners do not flag this file.
    let pem = ["-----BEGIN ", "PRIVATE KEY-----\nAAAA\n"].concat();
    let pem_wrapped = ["-----BEGIN RSA ", "PRIVATE\n KEY-----"].concat();
    for text in [one_line, pretty, &pem, &pem_wrapped] {
        assert!(!key_material_in(text).is_empty(), "missed: {text}");
    }
    let escaped = ESCAPED_JWK;
    assert!(!key_material_in(escaped).is_empty(), "missed: {escaped}");

    // Parsed: as a YAML mapping, as a JSON string, and as a block scalar.
    for yaml in [
        "jwk:\n  kty: EC\n  d: CCCC\n",
        escaped,
        "jwk: |\n  {\"crv\": \"P-256\", \"d\": \"CCCC\"}\n",
    ] {
        let value: Value = serde_norway::from_str(yaml).unwrap();
        let mut found = Vec::new();
        key_material_in_value(&value, &mut found);
        assert!(!found.is_empty(), "missed: {yaml}");
    }

    // And the words operators do use in these files are not flagged.
    let benign = "MACP_AUTH_SIGNING_KEY_JSON: from Secret macp-auth-signing-key, key jwk";
    assert!(key_material_in(benign).is_empty());
}

#[test]
fn no_manifest_or_image_file_contains_key_material() {
    let mut files = manifest_files();
    files.push(repo_path("Dockerfile"));
    files.push(repo_path(".dockerignore"));
    for file in &files {
        let found = key_material_in(&read(file));
        assert!(found.is_empty(), "{}: {found:?}", file.display());
    }
    for doc in documents() {
        let mut found = Vec::new();
        key_material_in_value(&doc.value, &mut found);
        assert!(found.is_empty(), "{}: {found:?}", doc.file.display());
    }
}

/// One Dockerfile instruction: its keyword (upper-cased) and its arguments,
/// with line continuations joined and comments dropped.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    arguments: String,
}

/// The instructions of the Dockerfile's final stage, the one that ships.
fn final_stage() -> Vec<Instruction> {
    let text = read(&repo_path("Dockerfile"));
    let mut instructions = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        if let Some(continued) = trimmed.strip_suffix('\\') {
            pending.push_str(continued);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let (keyword, arguments) = pending
            .split_once(char::is_whitespace)
            .unwrap_or((&pending, ""));
        instructions.push(Instruction {
            keyword: keyword.to_ascii_uppercase(),
            arguments: arguments.trim().to_owned(),
        });
        pending.clear();
    }
    let last_from = instructions
        .iter()
        .rposition(|i| i.keyword == "FROM")
        .expect("the Dockerfile has a FROM");
    instructions.split_off(last_from)
}

fn instructions<'a>(stage: &'a [Instruction], keyword: &str) -> Vec<&'a Instruction> {
    stage.iter().filter(|i| i.keyword == keyword).collect()
}

/// Parses an exec-form (JSON array) argument list.
fn exec_form(arguments: &str, what: &str) -> Vec<String> {
    serde_json::from_str(arguments)
        .unwrap_or_else(|_| panic!("{what} must use the exec form (a JSON array): {arguments}"))
}

#[test]
fn the_dockerfile_exposes_the_service_port() {
    let stage = final_stage();
    let exposed: Vec<u64> = instructions(&stage, "EXPOSE")
        .iter()
        .flat_map(|i| i.arguments.split_whitespace())
        .map(|port| {
            let number = port.strip_suffix("/tcp").unwrap_or(port);
            number.parse().unwrap_or_else(|_| panic!("EXPOSE {port}"))
        })
        .collect();
    assert_eq!(exposed, [service_port()]);
}

#[test]
fn the_dockerfile_health_check_runs_the_healthcheck_subcommand_without_a_shell() {
    let stage = final_stage();
    let checks = instructions(&stage, "HEALTHCHECK");
    assert_eq!(checks.len(), 1, "the image has one HEALTHCHECK");
    let (options, command) = checks[0]
        .arguments
        .split_once("CMD")
        .expect("HEALTHCHECK ... CMD [...]");
    for option in options.split_whitespace() {
        assert!(
            option.starts_with("--"),
            "unexpected HEALTHCHECK word {option}"
        );
    }
    let argv = exec_form(command.trim(), "HEALTHCHECK CMD");
    assert_eq!(argv, [IMAGE_BINARY, "healthcheck"]);

    let entrypoint = instructions(&stage, "ENTRYPOINT");
    assert_eq!(entrypoint.len(), 1, "the image has one ENTRYPOINT");
    assert_eq!(
        exec_form(&entrypoint[0].arguments, "ENTRYPOINT"),
        [IMAGE_BINARY]
    );
}

#[test]
fn the_image_runs_as_the_same_nonroot_user_as_the_pods() {
    let stage = final_stage();
    let from = &stage[0].arguments;
    assert!(
        from.starts_with("gcr.io/distroless/cc-debian12:nonroot"),
        "runtime base is {from}"
    );
    let users = instructions(&stage, "USER");
    let user = users.last().expect("the final stage sets USER");
    let uid = user.arguments.split(':').next().unwrap();
    assert!(
        uid == NONROOT_UID.to_string() || uid == "nonroot",
        "USER {}",
        user.arguments
    );
    let copies = instructions(&stage, "COPY");
    assert!(
        copies
            .iter()
            .all(|c| c.arguments.starts_with("--from=") && c.arguments.ends_with(IMAGE_BINARY)),
        "the runtime stage copies only the binary: {copies:?}"
    );
}

/// `kubectl` commands in the docs that need no namespace: cluster-scoped
/// objects, the namespace itself, Kustomize (the base sets the namespace),
/// and the reference service's own command, quoted for comparison.
const KUBECTL_WITHOUT_NAMESPACE: &[&str] = &[
    "kubectl get --raw",
    "kubectl create clusterrolebinding",
    "kubectl kustomize",
    "kubectl apply -k ",
    "kubectl apply -f deploy/kubernetes/namespace.yaml",
    "kubectl exec deploy/macp-auth -- printenv",
];

#[test]
fn kubectl_commands_in_the_docs_name_the_namespace_and_deployment_of_the_base() {
    let deployment = deployment();
    let namespace = deployment["metadata"]["namespace"].as_str().unwrap();
    let name = deployment["metadata"]["name"].as_str().unwrap();
    let scoped = format!("kubectl -n {namespace} ");
    let mut checked = 0;
    for doc in [
        "README.md",
        "docs/operations.md",
        "docs/deployment.md",
        "docs/migrating.md",
    ] {
        for (number, line) in read(&repo_path(doc)).lines().enumerate() {
            for (at, _) in line.match_indices("kubectl ") {
                let command = &line[at..];
                if KUBECTL_WITHOUT_NAMESPACE
                    .iter()
                    .any(|exempt| command.starts_with(exempt))
                {
                    continue;
                }
                checked += 1;
                let place = format!("{doc}:{}: {command}", number + 1);
                assert!(command.starts_with(&scoped), "{place} lacks -n {namespace}");
                for kind in ["deploy/", "deployment/"] {
                    if let Some((_, rest)) = command.split_once(&format!(" {kind}")) {
                        let named = rest
                            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                            .next();
                        assert_eq!(
                            named,
                            Some(name),
                            "{place} names another Deployment than {name}"
                        );
                    }
                }
            }
        }
    }
    assert!(checked >= 10, "the docs hold kubectl commands: {checked}");
}

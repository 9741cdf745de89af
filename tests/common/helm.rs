//! The chart rendered with the helm binary scripts/tools.sh builds, and applied with kubectl.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::{Value, json};

use super::{DeleteOnDrop, cluster, show};

pub const CHART: &str = "charts/alert-triage-operator";

pub fn helm_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("ATO_TEST_HELM") {
        return path.into();
    }
    let beside_kubectl = cluster().kubectl.with_file_name("helm");
    if beside_kubectl.exists() {
        beside_kubectl
    } else {
        "helm".into()
    }
}

/// Runs helm against the test cluster; never panics on its exit status (check it yourself).
pub fn helm_output(args: &[&str]) -> Output {
    Command::new(helm_bin())
        .args(args)
        .arg("--kubeconfig")
        .arg(&cluster().kubeconfig)
        .output()
        .unwrap_or_else(|e| panic!("running helm (scripts/tools.sh helm builds it): {e}"))
}

/// Runs helm and returns its stdout; panics with its output when it fails.
pub fn helm(args: &[&str]) -> String {
    let out = helm_output(args);
    assert!(
        out.status.success(),
        "helm {} failed:\n{}",
        args.join(" "),
        show(&out)
    );
    String::from_utf8(out.stdout).expect("helm prints UTF-8")
}

pub fn chart_dir() -> String {
    cluster().repo.join(CHART).to_string_lossy().into_owned()
}

/// The arguments of `helm template RELEASE CHART --namespace NAMESPACE --kube-version V --set ...`
/// (the chart needs a Kubernetes version helm does not assume by default).
pub fn template_args(release: &str, namespace: &str, sets: &[String]) -> Vec<String> {
    let mut args: Vec<String> = [
        "template",
        release,
        &chart_dir(),
        "--namespace",
        namespace,
        "--kube-version",
        "v1.36.0",
    ]
    .map(String::from)
    .to_vec();
    for s in sets {
        args.extend(["--set".to_string(), s.clone()]);
    }
    args
}

/// `helm template` with `sets`; panics when helm refuses.
pub fn render(release: &str, namespace: &str, sets: &[String]) -> String {
    let args = template_args(release, namespace, sets);
    helm(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

pub fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("helm renders YAML"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

pub fn of_kind<'a>(docs: &'a [Value], kinds: &[&str]) -> Vec<&'a Value> {
    docs.iter()
        .filter(|d| kinds.contains(&d["kind"].as_str().unwrap_or_default()))
        .collect()
}

/// `kubectl apply -f` of `docs` (admin) with extra flags.
pub fn apply(docs: &[&Value], extra: &[&str]) -> Output {
    let file = tempfile::NamedTempFile::new().expect("a temporary file");
    let list = json!({"apiVersion": "v1", "kind": "List", "items": docs});
    std::fs::write(file.path(), list.to_string()).expect("writing the manifests");
    let path = file.path().to_string_lossy().into_owned();
    let mut args = vec!["apply", "-f", &path];
    args.extend_from_slice(extra);
    cluster().kubectl(&args)
}

pub fn apply_ok(docs: &[&Value], extra: &[&str]) {
    let out = apply(docs, extra);
    assert!(
        out.status.success(),
        "kubectl apply failed:\n{}",
        show(&out)
    );
}

/// Deletes the cluster-scoped objects among `docs` when dropped.
pub fn cleanup(docs: &[&Value]) -> Vec<DeleteOnDrop> {
    docs.iter()
        .filter(|d| d["metadata"]["namespace"].is_null())
        .map(|d| {
            let kind = d["kind"].as_str().unwrap().to_ascii_lowercase();
            let name = d["metadata"]["name"].as_str().unwrap();
            cluster().delete_on_drop(&kind, name)
        })
        .collect()
}

pub fn set_list(key: &str, items: &[&str]) -> String {
    format!("{key}={{{}}}", items.join(","))
}

/// The environment the chart's Deployment gives the operator, for a process run outside the
/// cluster as pod `pod` of namespace `namespace`.
pub fn deployment_env(docs: &[Value], pod: &str, namespace: &str) -> Vec<(String, String)> {
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("a Deployment");
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            let name = e["name"].as_str().unwrap().to_string();
            let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.name") => pod.to_string(),
                Some("metadata.namespace") => namespace.to_string(),
                Some(other) => panic!("unexpected fieldRef {other}"),
                None => e["value"].as_str().unwrap().to_string(),
            };
            // The harness gives every operator a free port of its own.
            (name != "ATO_HTTP_ADDRESS").then_some((name, value))
        })
        .collect()
}

//! The Helm chart on the simulated cluster: it lints and applies server-side in every mode, its
//! RBAC is exactly what the operator uses (the operator runs as the chart's ServiceAccount with
//! nothing else), and its ValidatingAdmissionPolicy decides who may approve.
//!
//! Cluster-scoped objects (ClusterRoles, the policy and its binding) are named after a release
//! named like the test's namespace, deleted when the test ends, and the policy binding matches
//! only that namespace, so tests running side by side never see each other's.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::helm::deployment_env;
use common::operator::{Operator, create_triage, events_with, wait_for_phase};
use common::scenario::network_failure;
use common::{DeleteOnDrop, PodLog, TestNs, Workload, cluster, eventually, show};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{DynamicObject, EvictParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

const CHART: &str = "charts/alert-triage-operator";
const DEPLOY: Duration = Duration::from_secs(90);
const VERDICT: Duration = Duration::from_secs(60);

// ------------------------------------------------------------------------------------------------
// Helm

fn helm_bin() -> PathBuf {
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

/// Runs helm and returns its stdout; panics with its output when it fails.
fn helm(args: &[&str]) -> String {
    let out = Command::new(helm_bin())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running helm (scripts/tools.sh helm builds it): {e}"));
    assert!(
        out.status.success(),
        "helm {} failed:\n{}",
        args.join(" "),
        show(&out)
    );
    String::from_utf8(out.stdout).expect("helm prints UTF-8")
}

fn chart_dir() -> String {
    cluster().repo.join(CHART).to_string_lossy().into_owned()
}

/// The cluster's version, for `helm template --kube-version` (the chart needs >= 1.30).
async fn kube_version() -> String {
    cluster()
        .admin()
        .await
        .apiserver_version()
        .await
        .expect("the API server's version")
        .git_version
}

/// `helm template RELEASE CHART --namespace NAMESPACE --set ...`.
async fn render(release: &str, namespace: &str, sets: &[String]) -> String {
    let version = kube_version().await;
    let chart = chart_dir();
    let mut args = vec![
        "template",
        release,
        &chart,
        "--namespace",
        namespace,
        "--kube-version",
        &version,
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    helm(&args)
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("helm renders YAML"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kinds: &[&str]) -> Vec<&'a Value> {
    docs.iter()
        .filter(|d| kinds.contains(&d["kind"].as_str().unwrap_or_default()))
        .collect()
}

/// `kubectl apply -f` of `docs` (admin) with extra flags; returns the output.
fn apply(docs: &[&Value], extra: &[&str]) -> std::process::Output {
    let file = tempfile::NamedTempFile::new().expect("a temporary file");
    let list = json!({"apiVersion": "v1", "kind": "List", "items": docs});
    std::fs::write(file.path(), list.to_string()).expect("writing the manifests");
    let path = file.path().to_string_lossy().into_owned();
    let mut args = vec!["apply", "-f", &path];
    args.extend_from_slice(extra);
    cluster().kubectl(&args)
}

fn apply_ok(docs: &[&Value], extra: &[&str]) {
    let out = apply(docs, extra);
    assert!(
        out.status.success(),
        "kubectl apply failed:\n{}",
        show(&out)
    );
}

/// Deletes the cluster-scoped objects among `docs` when dropped.
fn cleanup(docs: &[&Value]) -> Vec<DeleteOnDrop> {
    docs.iter()
        .filter(|d| d["metadata"]["namespace"].is_null())
        .map(|d| {
            let kind = d["kind"].as_str().unwrap().to_ascii_lowercase();
            let name = d["metadata"]["name"].as_str().unwrap();
            cluster().delete_on_drop(&kind, name)
        })
        .collect()
}

fn set_list(key: &str, items: &[&str]) -> String {
    format!("{key}={{{}}}", items.join(","))
}

// ------------------------------------------------------------------------------------------------
// (a) lint, render, server-side dry run

#[tokio::test]
async fn the_chart_lints_and_applies_server_side_in_every_mode() {
    let ns = TestNs::new("chart-modes").await;
    ns.cluster.install_crds();
    let chart = chart_dir();
    helm(&["lint", &chart]);
    helm(&[
        "lint",
        &chart,
        "--set",
        &set_list("watchNamespaces", &["a", "b"]),
    ]);

    let own = |s: &str| s.to_string();
    let watch_ns = set_list("watchNamespaces", &[&ns.name]);
    let variants: Vec<(&str, Vec<String>)> = vec![
        ("cluster-wide", vec![]),
        ("namespaced", vec![watch_ns.clone()]),
        ("policy off", vec![own("approvalPolicy.enabled=false")]),
        (
            "policy with groups and an exempt GitOps identity",
            vec![
                set_list("approvalPolicy.approverGroups", &["sre", "oncall"]),
                set_list(
                    "approvalPolicy.exemptUsers",
                    &["system:serviceaccount:argocd:argocd-application-controller"],
                ),
            ],
        ),
        (
            "namespaced, policy off",
            vec![watch_ns.clone(), own("approvalPolicy.enabled=false")],
        ),
        ("two replicas", vec![own("replicas=2")]),
        (
            "remediation policy off, an admin namespace, an extra redaction pattern",
            vec![
                own("remediationPolicy.enabled=false"),
                set_list("adminNamespaces", &["sre"]),
                own("redaction.extraPatterns[0]=CUST-[0-9]{8}"),
            ],
        ),
        (
            "the intake and notifications, each from its own Secret",
            vec![
                own("intake.enabled=true"),
                own("intake.tokenSecret=ato-intake-token"),
                own("notifications.configSecret=ato-notify"),
            ],
        ),
        (
            "pod deletion and an info ConfigMap in a fixed namespace",
            vec![
                own("operator.allowPodDelete=true"),
                format!("operator.infoConfigMap={}/env-info", ns.name),
            ],
        ),
    ];
    for (name, sets) in &variants {
        let yaml = render(&ns.name, &ns.name, sets).await;
        let docs = documents(&yaml);
        // `helm test` hooks exist only after the release does (see the hook's own test).
        let installed: Vec<&Value> = docs
            .iter()
            .filter(|d| d["metadata"]["annotations"]["helm.sh/hook"].is_null())
            .collect();
        let out = apply(&installed, &["--dry-run=server"]);
        assert!(
            out.status.success(),
            "{name}: server-side dry run failed:\n{}",
            show(&out)
        );
        let kinds: BTreeSet<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        let policies: BTreeSet<&str> = docs
            .iter()
            .filter(|d| d["kind"] == "ValidatingAdmissionPolicy")
            .filter_map(|d| d["metadata"]["name"].as_str())
            .collect();
        let fullname = format!("{}-alert-triage-operator", ns.name);
        let approval = sets.iter().all(|s| s != "approvalPolicy.enabled=false");
        for policy in ["approval", "tenancy"] {
            assert_eq!(
                policies.contains(format!("{fullname}-{policy}").as_str()),
                approval,
                "{name}: {policies:?}"
            );
        }
        assert_eq!(
            policies.contains(format!("{fullname}-remediation").as_str()),
            sets.iter().all(|s| s != "remediationPolicy.enabled=false"),
            "{name}: {policies:?}"
        );
        assert_eq!(
            kinds.contains("PodDisruptionBudget"),
            sets.iter().any(|s| s == "replicas=2"),
            "{name}: {kinds:?}"
        );
        let namespaced = sets.contains(&watch_ns);
        assert_eq!(
            kinds.contains("ClusterRoleBinding"),
            !namespaced,
            "{name}: {kinds:?}"
        );
    }

    // The notification file is the named Secret's key, mounted read-only where the flag's env
    // var points; without a Secret named there is neither.
    let notified = render(
        &ns.name,
        &ns.name,
        &[
            own("notifications.configSecret=ato-notify"),
            own("notifications.configSecretKey=config.yaml"),
        ],
    )
    .await;
    let docs = documents(&notified);
    let deployment = of_kind(&docs, &["Deployment"])[0];
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let env = container["env"].as_array().unwrap();
    assert!(
        env.contains(&serde_json::json!({"name": "ATO_NOTIFY_CONFIG_FILE",
            "value": "/etc/alert-triage-operator/notify/notify.yaml"})),
        "{env:?}"
    );
    assert_eq!(
        container["volumeMounts"],
        serde_json::json!([{"name": "notify-config", "mountPath": "/etc/alert-triage-operator/notify", "readOnly": true}])
    );
    assert_eq!(
        pod["volumes"],
        serde_json::json!([{"name": "notify-config", "secret": {"secretName": "ato-notify",
            "items": [{"key": "config.yaml", "path": "notify.yaml"}]}}])
    );
    let plain = render(&ns.name, &ns.name, &[]).await;
    assert!(!plain.contains("ATO_NOTIFY_CONFIG_FILE") && !plain.contains("notify-config"));

    let monitored = render(
        &ns.name,
        &ns.name,
        &[own("metrics.serviceMonitor.enabled=true")],
    )
    .await;
    assert!(
        documents(&monitored)
            .iter()
            .any(|d| d["kind"] == "ServiceMonitor"),
        "no ServiceMonitor"
    );
}

#[tokio::test]
async fn the_charts_crds_are_the_ones_in_crds() {
    let ns = TestNs::new("chart-crds").await;
    let version = kube_version().await;
    let chart = chart_dir();
    let rendered = helm(&[
        "template",
        "x",
        &chart,
        "--include-crds",
        "--kube-version",
        &version,
    ]);
    // A packaged chart carries the files' contents, not a link to them.
    let dir = tempfile::tempdir().unwrap();
    helm(&["package", &chart, "-d", &dir.path().to_string_lossy()]);
    let package = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .expect("a package")
        .unwrap()
        .path();
    for file in [
        "alerttriages.triage.dev.yaml",
        "runbooks.triage.dev.yaml",
        "clusterrunbooks.triage.dev.yaml",
    ] {
        let ours = std::fs::read_to_string(ns.cluster.repo.join("crds").join(file))
            .unwrap_or_else(|e| panic!("crds/{file}: {e}"));
        assert!(
            rendered.contains(&ours),
            "helm template --include-crds: {file}"
        );
        let out = Command::new("tar")
            .arg("-xzOf")
            .arg(&package)
            .arg(format!("alert-triage-operator/crds/{file}"))
            .output()
            .expect("tar");
        assert!(out.status.success(), "{}", show(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), ours, "{file}");
    }
}

// ------------------------------------------------------------------------------------------------
// RBAC, statically and as the API server sees it

fn rules_of(docs: &[Value], kind: &str, name: &str) -> Vec<(String, String, Vec<String>)> {
    let role = docs
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"));
    let mut rules = Vec::new();
    for rule in role["rules"].as_array().unwrap() {
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                let names = rule["resourceNames"]
                    .as_array()
                    .map(|n| {
                        format!(
                            "/{}",
                            n.iter()
                                .map(|v| v.as_str().unwrap())
                                .collect::<Vec<_>>()
                                .join(",")
                        )
                    })
                    .unwrap_or_default();
                let mut verbs: Vec<String> = rule["verbs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect();
                verbs.sort();
                rules.push((
                    group.as_str().unwrap().to_string(),
                    format!("{}{names}", resource.as_str().unwrap()),
                    verbs,
                ));
            }
        }
    }
    rules.sort();
    rules
}

fn rule(group: &str, resource: &str, verbs: &[&str]) -> (String, String, Vec<String>) {
    let mut verbs: Vec<String> = verbs.iter().map(|v| v.to_string()).collect();
    verbs.sort();
    (group.into(), resource.into(), verbs)
}

#[tokio::test]
async fn rbac_grants_exactly_the_verbs_the_operator_uses_and_no_secrets() {
    let ns = TestNs::new("chart-rbac-static").await;
    let release = &ns.name;
    let fullname = format!("{release}-alert-triage-operator");
    let docs = documents(&render(release, &ns.name, &[]).await);
    // The chart README's table, rule for rule.
    let mut expected = vec![
        rule("triage.dev", "alerttriages", &["get", "list", "watch"]),
        rule("triage.dev", "alerttriages/status", &["patch"]),
        rule("triage.dev", "runbooks", &["get", "list", "watch"]),
        rule("triage.dev", "runbooks/status", &["patch"]),
        rule("triage.dev", "clusterrunbooks", &["get", "list", "watch"]),
        rule("triage.dev", "clusterrunbooks/status", &["patch"]),
        rule("", "pods", &["get", "list"]),
        rule("", "pods/log", &["get"]),
        rule("", "pods/eviction", &["create"]),
        rule("apps", "replicasets", &["get"]),
        rule("", "events", &["list"]),
        rule("events.k8s.io", "events", &["create", "patch"]),
        rule("", "configmaps/armada-info", &["get"]),
        rule(
            "authorization.k8s.io",
            "localsubjectaccessreviews",
            &["create"],
        ),
    ];
    expected.sort();
    assert_eq!(rules_of(&docs, "ClusterRole", &fullname), expected);
    let mut own = vec![
        rule("", "configmaps", &["create"]),
        rule(
            "",
            &format!("configmaps/{fullname}-ledger"),
            &["get", "update"],
        ),
        rule("coordination.k8s.io", "leases", &["create"]),
        rule(
            "coordination.k8s.io",
            &format!("leases/{fullname}"),
            &["get", "update"],
        ),
    ];
    own.sort();
    assert_eq!(rules_of(&docs, "Role", &format!("{fullname}-self")), own);
    // Teams write the Runbooks of their namespace through this role; ClusterRunbooks apply to
    // every namespace, so no role of the chart lets anyone write them.
    assert_eq!(
        rules_of(&docs, "ClusterRole", &format!("{fullname}-runbook-author")),
        vec![rule(
            "triage.dev",
            "runbooks",
            &[
                "create", "delete", "get", "list", "patch", "update", "watch"
            ]
        )]
    );
    for role in docs
        .iter()
        .filter(|d| d["kind"] == "Role" || d["kind"] == "ClusterRole")
    {
        let name = role["metadata"]["name"].as_str().unwrap();
        for (_, resource, verbs) in rules_of(&docs, role["kind"].as_str().unwrap(), name) {
            if resource == "clusterrunbooks" {
                assert_eq!(verbs, ["get", "list", "watch"], "{name}");
            }
        }
    }
    let deleting =
        documents(&render(release, &ns.name, &["operator.allowPodDelete=true".into()]).await);
    assert!(
        rules_of(&deleting, "ClusterRole", &fullname).contains(&rule(
            "",
            "pods",
            &["get", "list", "delete"]
        ))
    );

    // The intake adds exactly `create` on alerttriages, and `delete` only for its retention.
    for (retention, verbs) in [("24h", &["create", "delete"][..]), ("0", &["create"][..])] {
        let mut with_intake = expected.clone();
        with_intake.push(rule("triage.dev", "alerttriages", verbs));
        with_intake.sort();
        let sets = [
            "intake.enabled=true".to_string(),
            "intake.tokenSecret=am-token".to_string(),
            format!("intake.resolvedRetention={retention}"),
        ];
        let docs = documents(&render(release, &ns.name, &sets).await);
        assert_eq!(
            rules_of(&docs, "ClusterRole", &fullname),
            with_intake,
            "retention {retention}"
        );
        let service = docs
            .iter()
            .find(|d| {
                d["kind"] == "Service" && d["metadata"]["name"] == format!("{fullname}-intake")
            })
            .expect("the intake Service");
        assert_eq!(service["spec"]["ports"][0]["port"], 9094);
    }

    // As the API server sees it, with the cluster-wide RBAC applied for real.
    let rbac = of_kind(
        &docs,
        &[
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
        ],
    );
    let _cleanup = cleanup(&rbac);
    apply_ok(&rbac, &[]);
    let sa = format!("system:serviceaccount:{}:{fullname}", ns.name);
    let can = |args: &[&str]| {
        let mut all = vec!["auth", "can-i", "--as", &sa];
        all.extend_from_slice(args);
        let out = cluster().kubectl(&all);
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    };
    eventually(Duration::from_secs(10), || async {
        if can(&["list", "pods", "-A"]) {
            Ok(())
        } else {
            Err("RBAC not in effect yet")
        }
    })
    .await;
    assert!(can(&["watch", "alerttriages.triage.dev", "-A"]));
    assert!(can(&["watch", "runbooks.triage.dev", "-A"]));
    assert!(can(&["watch", "clusterrunbooks.triage.dev"]));
    assert!(can(&[
        "patch",
        "clusterrunbooks.triage.dev",
        "--subresource=status"
    ]));
    assert!(!can(&["create", "clusterrunbooks.triage.dev"]));
    assert!(!can(&["patch", "runbooks.triage.dev", "-A"]));
    assert!(can(&[
        "create",
        "pods",
        "--subresource=eviction",
        "-n",
        "kube-system"
    ]));
    assert!(can(&["get", "pods", "--subresource=log", "-A"]));
    for denied in [
        &["get", "secrets", "-A"][..],
        &["list", "secrets", "-n", &ns.name],
        &["delete", "pods", "-A"],
        &["update", "alerttriages.triage.dev", "-A"],
        &["get", "configmaps", "-n", "kube-system"],
        &["update", "leases", "-n", "kube-system"],
    ] {
        assert!(!can(denied), "the ServiceAccount may {denied:?}");
    }
}

// ------------------------------------------------------------------------------------------------
// (b) who may approve

fn triage_api(client: Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client, ns, &common::operator::triage_resource())
}

async fn set_approval(
    client: Client,
    ns: &str,
    name: &str,
    approved_by: &str,
) -> Result<(), kube::Error> {
    patch_approval(client, ns, name, approved_by, &PatchParams::default()).await
}

async fn patch_approval(
    client: Client,
    ns: &str,
    name: &str,
    approved_by: &str,
    params: &PatchParams,
) -> Result<(), kube::Error> {
    let patch = json!({"spec": {"approval": {"proposal": "delete-pod-0123456789ab", "approvedBy": approved_by}}});
    triage_api(client, ns)
        .patch(name, params, &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

fn refused(result: Result<(), kube::Error>, says: &[&str]) {
    match result {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403, "{s:?}");
            for part in says {
                assert!(s.message.contains(part), "{part:?} not in {:?}", s.message);
            }
        }
        other => panic!("expected a refusal saying {says:?}, got {other:?}"),
    }
}

fn triage_manifest(name: &str) -> Value {
    json!({
        "apiVersion": "triage.dev/v1alpha1",
        "kind": "AlertTriage",
        "metadata": {"name": name},
        "spec": {
            "alert": {"name": "armada-cluster_error_metering_token_exchange"},
            "target": {"selector": {"matchLabels": {"app": "web"}}}
        }
    })
}

#[tokio::test]
async fn the_approval_policy_lets_only_approvers_approve_as_themselves() {
    let ns = TestNs::new("chart-approval").await;
    ns.cluster.install_crds();
    let release = &ns.name;
    let fullname = format!("{release}-alert-triage-operator");
    let group = format!("{}-approvers", ns.name);
    let gitops = format!("system:serviceaccount:{}:gitops", ns.name);
    let docs = documents(
        &render(
            release,
            &ns.name,
            &[
                set_list("watchNamespaces", &[&ns.name]),
                set_list("approvalPolicy.approverGroups", &[&group]),
                set_list("approvalPolicy.exemptUsers", &[&gitops]),
            ],
        )
        .await,
    );
    let policy = of_kind(
        &docs,
        &[
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
            "ClusterRole",
        ],
    );
    let policy: Vec<&Value> = policy
        .into_iter()
        .filter(|d| {
            d["kind"] != "ClusterRole" || d["metadata"]["name"] == format!("{fullname}-approver")
        })
        .collect();
    let _cleanup = cleanup(&policy);
    apply_ok(&policy, &[]);

    // alice: the approver ClusterRole, bound in this namespace. bob, the GitOps ServiceAccount
    // and the approver group: may edit AlertTriages, nothing more.
    ns.kubectl_ok(&[
        "create",
        "rolebinding",
        "alice-approves",
        &format!("--clusterrole={fullname}-approver"),
        "--user=alice",
    ]);
    ns.kubectl_ok(&[
        "create",
        "role",
        "triage-editor",
        "--verb=get,create,update,patch",
        "--resource=alerttriages.triage.dev",
    ]);
    ns.kubectl_ok(&[
        "create",
        "rolebinding",
        "editors",
        "--role=triage-editor",
        "--user=bob",
        &format!("--serviceaccount={}:gitops", ns.name),
        &format!("--group={group}"),
    ]);
    ns.kubectl_ok(&["create", "serviceaccount", "gitops"]);
    // Approving also takes the right to evict pods here; alice and the approver group have it.
    ns.kubectl_ok(&[
        "create",
        "role",
        "pod-evicter",
        "--verb=create",
        "--resource=pods/eviction",
    ]);
    ns.kubectl_ok(&[
        "create",
        "rolebinding",
        "approvers-evict",
        "--role=pod-evicter",
        "--user=alice",
        &format!("--group={group}"),
    ]);
    let admin = ns.client.clone();
    let triages = triage_api(admin.clone(), &ns.name);
    for name in ["t1", "t2"] {
        let obj: DynamicObject = serde_json::from_value(triage_manifest(name)).unwrap();
        triages.create(&PostParams::default(), &obj).await.unwrap();
    }
    let alice = ns.cluster.user("alice").await;
    let bob = ns.cluster.user("bob").await;

    // The policy is in force once the API server has loaded it; dry runs (admission runs, nothing
    // is stored) probe for that without changing the object.
    eventually(Duration::from_secs(30), || {
        let bob = bob.clone();
        let ns = ns.name.clone();
        async move {
            let dry_run = PatchParams {
                dry_run: true,
                ..PatchParams::default()
            };
            match patch_approval(bob, &ns, "t1", "bob", &dry_run).await {
                Err(kube::Error::Api(s))
                    if s.code == 403 && s.message.contains("ValidatingAdmissionPolicy") =>
                {
                    Ok(())
                }
                other => Err(format!("not refused yet: {other:?}")),
            }
        }
    })
    .await;

    refused(
        set_approval(bob.clone(), &ns.name, "t1", "bob").await,
        &[
            "\"bob\" may not approve",
            "\"approve\" verb",
            &format!("{fullname}-approver"),
            &group,
        ],
    );
    refused(
        set_approval(alice.clone(), &ns.name, "t1", "bob").await,
        &[
            "approvedBy must name the user who approves",
            "you are \"alice\"",
            "it says \"bob\"",
        ],
    );
    set_approval(alice.clone(), &ns.name, "t1", "alice")
        .await
        .expect("alice approves as herself");

    // Edits that leave the approval alone are not the policy's business.
    let window = json!({"spec": {"window": "2h"}});
    triage_api(bob.clone(), &ns.name)
        .patch("t1", &PatchParams::default(), &Patch::Merge(&window))
        .await
        .expect("bob edits the window of an approved triage");
    // Pointing alice's approval at another proposal is approving: bob may not.
    let other = json!({"spec": {"approval": {"proposal": "delete-pod-ba9876543210"}}});
    refused(
        triage_api(bob.clone(), &ns.name)
            .patch("t1", &PatchParams::default(), &Patch::Merge(&other))
            .await
            .map(|_| ()),
        &["you are \"bob\" but it says \"alice\""],
    );
    // Creating an object that carries an approval is approving too.
    let mut preapproved = triage_manifest("t3");
    preapproved["spec"]["approval"] =
        json!({"proposal": "delete-pod-0123456789ab", "approvedBy": "bob"});
    let obj: DynamicObject = serde_json::from_value(preapproved).unwrap();
    refused(
        triage_api(bob.clone(), &ns.name)
            .create(&PostParams::default(), &obj)
            .await
            .map(|_| ()),
        &["\"bob\" may not approve"],
    );

    // A member of an approver group, as themselves.
    let carol = ns.cluster.impersonating("carol", &[&group]).await;
    set_approval(carol, &ns.name, "t2", "carol")
        .await
        .expect("a member of an approver group approves");
    // The GitOps controller applies an approval reviewed in git: exempt.
    let gitops_client = ns.cluster.service_account(&ns.name, "gitops").await;
    set_approval(gitops_client, &ns.name, "t2", "alice")
        .await
        .expect("the exempt GitOps identity applies alice's approval");
}

// ------------------------------------------------------------------------------------------------
// (c) the operator as the chart's ServiceAccount, with exactly the chart's RBAC

fn callback_line(controller: &str) -> String {
    json!({"level": "error", "callbackName": "DeleteClientID", "reasonCode": "ErrorUnclassified",
           "controllerID": controller, "msg": "403 BXNIM0515E: You are not authorized to manage this Client ID."})
        .to_string()
}

#[tokio::test]
async fn the_operator_runs_with_only_the_charts_identity_and_rbac() {
    let ns = TestNs::new("chart-sa").await;
    let outside = TestNs::new("chart-outside").await;
    let release = "ato";
    let fullname = "ato-alert-triage-operator";
    let docs = documents(
        &render(
            release,
            &ns.name,
            &[
                set_list("watchNamespaces", &[&ns.name]),
                "approvalPolicy.enabled=false".into(),
                // This operator evicts in its own (release) namespace, which the remediation
                // policy never allows; that policy has a test of its own below.
                "remediationPolicy.enabled=false".into(),
                // Judge the replacement after a second, not the default two minutes.
                "operator.verifySettle=1s".into(),
            ],
        )
        .await,
    );
    // Namespaced mode with the policy off renders nothing cluster-scoped.
    assert!(docs.iter().all(|d| !d["metadata"]["namespace"].is_null()));
    let rbac = of_kind(&docs, &["Role", "RoleBinding"]);
    apply_ok(&of_kind(&docs, &["ServiceAccount"]), &[]);

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("operator.kubeconfig");
    ns.cluster
        .service_account_kubeconfig(&ns.name, fullname, &kubeconfig)
        .await;
    let env = deployment_env(&docs, "ato-0", &ns.name);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let kubeconfig_arg = kubeconfig.to_string_lossy().into_owned();
    let op = Operator::start_raw(
        &ns,
        &format!("{}-chart", ns.name),
        &["run", "--kubeconfig", &kubeconfig_arg],
        &env,
    );

    // Without its RBAC the operator cannot list AlertTriages: alive, not ready.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(op.get("/healthz").await.0, 200);
    assert_eq!(op.get("/readyz").await.0, 503);
    apply_ok(&rbac, &[]);
    op.wait_ready(Duration::from_secs(60)).await;
    let refusals_before_rbac = op.output().len();

    // BXNIM: reads the one ConfigMap it may read.
    for (name, account) in [("armada-info", "acct-1234"), ("other-config", "nope")] {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": name},
            "data": {"MULTISHIFT_SRE_ACCOUNT_ID": account, "MULTISHIFT_SRE_RESOURCE_GROUP_ID": "rg-5678"}
        }))
        .unwrap();
        ns.api::<ConfigMap>()
            .create(&PostParams::default(), &cm)
            .await
            .unwrap();
    }
    let before = op
        .metric("alert_triage_reconciles_total{result=\"success\"}")
        .await
        .unwrap_or(0.0);
    let orchestrator = ns
        .deploy(&Workload::new("armada-orchestrator", 1), DEPLOY)
        .await;
    ns.attach_logs(
        orchestrator[0].metadata.name.as_deref().unwrap(),
        "app",
        &PodLog::lines([callback_line("c0ffee01"), callback_line("c0ffee02")]),
        None,
    )
    .await;
    create_triage(
        &ns,
        json!({
            "metadata": {"name": "bx"},
            "spec": {
                "alert": {
                    "name": "ClusterSquadOrchestratorCallbackActionTimeErrors",
                    "labels": {"operation": "DeleteClientID", "reason_code": "ErrorUnclassified"}
                },
                "target": {"selector": {"matchLabels": {"app": "armada-orchestrator"}}}
            }
        }),
    )
    .await;
    let t = wait_for_phase(&ns, "bx", &["ApiKeyRotationRequired"], VERDICT).await;
    assert_eq!(t["status"]["apiKeyRotation"]["account"], "acct-1234");
    assert_eq!(
        t["status"]["apiKeyRotation"]["controllerIds"],
        json!(["c0ffee01", "c0ffee02"])
    );
    op.wait_for_metric("alert_triage_reconciles_total{result=\"success\"}", |v| {
        v > before
    })
    .await;
    op.wait_for_metric("alert_triage_reconcile_duration_seconds_count", |v| v > 0.0)
        .await;

    // A proposal, approved and carried out: pods, ReplicaSets, eviction, the ledger, Events.
    let web = ns.deploy(&Workload::new("web", 3), DEPLOY).await;
    let healthy = vec!["Worker metering started".to_string()];
    for (pod, lines) in web
        .iter()
        .zip([healthy.clone(), network_failure(), healthy])
    {
        ns.attach_logs(
            pod.metadata.name.as_deref().unwrap(),
            "app",
            &PodLog::lines(lines),
            None,
        )
        .await;
    }
    create_triage(
        &ns,
        json!({
            "metadata": {"name": "net"},
            "spec": {
                "alert": {"name": "armada-cluster_error_metering_token_exchange"},
                "target": {"selector": {"matchLabels": {"app": "web"}}},
                "window": "1h"
            }
        }),
    )
    .await;
    let t = wait_for_phase(&ns, "net", &["AwaitingApproval"], VERDICT).await;
    eventually(Duration::from_secs(10), || async {
        match op.metric("alert_triage_proposals_awaiting_approval").await {
            Some(1.0) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let proposal = t["status"]["proposal"]["id"].as_str().unwrap().to_string();
    // The replacement's log, so verification can read it.
    let _logs = ns.serve_logs_to_new_pods(
        "app=web",
        &web,
        "app",
        PodLog::lines(vec!["Worker metering started".to_string()]),
        Duration::from_secs(90),
    );
    let approval = json!({"spec": {"approval": {"proposal": proposal, "approvedBy": "alice"}}});
    triage_api(ns.client.clone(), &ns.name)
        .patch("net", &PatchParams::default(), &Patch::Merge(&approval))
        .await
        .unwrap();
    let t = wait_for_phase(
        &ns,
        "net",
        &["Remediated", "RemediationFailed"],
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(t["status"]["phase"], "Remediated", "{}", t["status"]);
    assert_eq!(
        t["status"]["remediation"]["podUID"],
        web[1].metadata.uid.as_deref().unwrap()
    );
    assert!(
        ns.api::<ConfigMap>()
            .get_opt(&format!("{fullname}-ledger"))
            .await
            .unwrap()
            .is_some()
    );
    events_with(&ns, "net", &["Evicted"]).await;
    assert_eq!(
        op.metric("alert_triage_proposals_awaiting_approval").await,
        Some(0.0)
    );
    assert_eq!(op.metric("alert_triage_leader").await, Some(1.0));

    // Nothing it did was refused, and it may do nothing more.
    let log = op.output()[refusals_before_rbac..].to_ascii_lowercase();
    assert!(
        !log.contains("forbidden"),
        "the operator was refused something:\n{log}"
    );
    let me = ns.cluster.service_account(&ns.name, fullname).await;
    let denied = |r: Result<(), kube::Error>, what: &str| match r {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("{what}: expected 403, got {other:?}"),
    };
    let secrets: Api<Secret> = Api::namespaced(me.clone(), &ns.name);
    denied(
        secrets.list(&ListParams::default()).await.map(|_| ()),
        "list secrets",
    );
    denied(secrets.get("anything").await.map(|_| ()), "get a secret");
    let other_config: Api<ConfigMap> = Api::namespaced(me.clone(), &ns.name);
    denied(
        other_config.get("other-config").await.map(|_| ()),
        "get another ConfigMap",
    );
    let outside_pods: Api<Pod> = Api::namespaced(me.clone(), &outside.name);
    denied(
        outside_pods.list(&ListParams::default()).await.map(|_| ()),
        "list pods outside",
    );
    denied(
        outside_pods
            .delete("x", &Default::default())
            .await
            .map(|_| ()),
        "delete a pod outside",
    );
    denied(
        triage_api(me.clone(), &outside.name)
            .list(&ListParams::default())
            .await
            .map(|_| ()),
        "list AlertTriages outside",
    );
    let own_pods: Api<Pod> = Api::namespaced(me, &ns.name);
    denied(
        own_pods
            .delete(
                web[0].metadata.name.as_deref().unwrap(),
                &Default::default(),
            )
            .await
            .map(|_| ()),
        "delete a pod without allowPodDelete",
    );
}

// ------------------------------------------------------------------------------------------------
// (d) the operator's own blast radius: its token removes pods only in opted-in namespaces

async fn pod_uids(api: &Api<Pod>) -> BTreeSet<String> {
    api.list(&ListParams::default())
        .await
        .expect("listing pods")
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.uid.clone())
        .collect()
}

async fn evict(api: &Api<Pod>, pod: &str, dry_run: bool) -> Result<(), kube::Error> {
    let params = EvictParams {
        post_options: PostParams {
            dry_run,
            ..PostParams::default()
        },
        ..EvictParams::default()
    };
    api.evict(pod, &params).await.map(|_| ())
}

/// Deletes the named pod in kube-system when dropped.
struct KubeSystemPod(String);

impl Drop for KubeSystemPod {
    fn drop(&mut self) {
        let _ = cluster().kubectl(&[
            "-n",
            "kube-system",
            "delete",
            "pod",
            &self.0,
            "--ignore-not-found",
            "--wait=false",
        ]);
    }
}

fn first_name(pods: &[Pod]) -> String {
    pods[0].metadata.name.clone().expect("a pod name")
}

#[tokio::test]
async fn the_operators_own_token_removes_pods_only_in_opted_in_namespaces() {
    let home = TestNs::new("chart-blast").await;
    let opted_in = TestNs::new("chart-blast-in").await;
    let plain = TestNs::new("chart-blast-out").await;
    let release = &home.name;
    let fullname = format!("{release}-alert-triage-operator");
    // Cluster-wide RBAC with pod deletion: RBAC lets the ServiceAccount evict and delete pods in
    // every namespace, so each refusal below is the policy's.
    let docs = documents(
        &render(
            release,
            &home.name,
            &[
                "operator.allowPodDelete=true".into(),
                "approvalPolicy.enabled=false".into(),
            ],
        )
        .await,
    );
    let objects = of_kind(
        &docs,
        &[
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        ],
    );
    let _cleanup = cleanup(&objects);
    apply_ok(&objects, &[]);
    // The release namespace carries the label too: it is never eligible all the same.
    for ns in [&opted_in, &home] {
        ns.kubectl_ok(&[
            "label",
            "namespace",
            &ns.name,
            "triage.dev/remediation=enabled",
        ]);
    }
    let in_pods = opted_in.deploy(&Workload::new("web", 2), DEPLOY).await;
    let out_pods = plain.deploy(&Workload::new("web", 2), DEPLOY).await;
    let home_pods = home.deploy(&Workload::new("web", 2), DEPLOY).await;

    let me = home.cluster.service_account(&home.name, &fullname).await;
    let mine = |ns: &str| -> Api<Pod> { Api::namespaced(me.clone(), ns) };
    eventually(Duration::from_secs(30), || async {
        match evict(&mine(&plain.name), &first_name(&out_pods), true).await {
            Err(kube::Error::Api(s))
                if s.code == 403 && s.message.contains("ValidatingAdmissionPolicy") =>
            {
                Ok(())
            }
            other => Err(format!("not refused by the policy yet: {other:?}")),
        }
    })
    .await;

    // An unlabelled namespace: neither eviction nor deletion.
    let before = pod_uids(&plain.pods()).await;
    refused(
        evict(&mine(&plain.name), &first_name(&out_pods), false).await,
        &[
            "only in namespaces labelled triage.dev/remediation=enabled",
            &format!("{} is not", plain.name),
        ],
    );
    refused(
        mine(&plain.name)
            .delete(&first_name(&out_pods), &Default::default())
            .await
            .map(|_| ()),
        &["only in namespaces labelled triage.dev/remediation=enabled"],
    );
    // The release namespace, labelled.
    let home_before = pod_uids(&home.pods()).await;
    refused(
        evict(&mine(&home.name), &first_name(&home_pods), false).await,
        &[&format!("never removes pods in {}", home.name)],
    );
    let system = mine("kube-system");
    let admin_system: Api<Pod> = Api::namespaced(home.client.clone(), "kube-system");
    // A pod of this test's own there, touched only by dry runs, so a broken policy could not
    // remove anything in kube-system.
    let system_pod = format!("{}-probe", home.name);
    let probe: Pod = serde_json::from_value(json!({
        "metadata": {"name": system_pod},
        "spec": {"containers": [{"name": "app", "image": "probe"}]}
    }))
    .unwrap();
    let probe_uid = admin_system
        .create(&PostParams::default(), &probe)
        .await
        .expect("a probe pod in kube-system")
        .metadata
        .uid
        .unwrap();
    let _probe = KubeSystemPod(system_pod.clone());
    refused(
        evict(&system, &system_pod, true).await,
        &["never removes pods in kube-system"],
    );
    let dry_delete = kube::api::DeleteParams {
        dry_run: true,
        ..Default::default()
    };
    refused(
        system.delete(&system_pod, &dry_delete).await.map(|_| ()),
        &["never removes pods in kube-system"],
    );
    assert_eq!(
        pod_uids(&plain.pods()).await,
        before,
        "a refused pod was removed"
    );
    assert_eq!(pod_uids(&home.pods()).await, home_before);
    assert!(pod_uids(&admin_system).await.contains(&probe_uid));

    // An opted-in namespace: the eviction goes through.
    let evicted = in_pods[0].metadata.uid.clone().unwrap();
    evict(&mine(&opted_in.name), &first_name(&in_pods), false)
        .await
        .expect("evicting in an opted-in namespace");
    eventually(Duration::from_secs(30), || async {
        if pod_uids(&opted_in.pods()).await.contains(&evicted) {
            Err("the evicted pod is still there")
        } else {
            Ok(())
        }
    })
    .await;
    // The policy binds the operator's identity only: an administrator is not held by it.
    evict(&plain.pods(), &first_name(&out_pods), true)
        .await
        .expect("an administrator's dry-run eviction in an unlabelled namespace");
}

// ------------------------------------------------------------------------------------------------
// (e) tenancy, and approvers within their own rights

fn targeting(name: &str, target_ns: Option<&str>) -> DynamicObject {
    let mut manifest = triage_manifest(name);
    if let Some(ns) = target_ns {
        manifest["spec"]["target"]["namespace"] = json!(ns);
    }
    serde_json::from_value(manifest).unwrap()
}

async fn create_as(client: &Client, ns: &str, obj: &DynamicObject) -> Result<(), kube::Error> {
    triage_api(client.clone(), ns)
        .create(&PostParams::default(), obj)
        .await
        .map(|_| ())
}

#[tokio::test]
async fn the_admission_policy_keeps_triages_in_their_tenancy_and_approvers_within_their_rights() {
    let team_a = TestNs::new("chart-team-a").await;
    let team_b = TestNs::new("chart-team-b").await;
    let central = TestNs::new("chart-central").await;
    team_a.cluster.install_crds();
    let (a, b, c) = (&team_a.name, &team_b.name, &central.name);
    let release = a;
    let fullname = format!("{release}-alert-triage-operator");
    let docs = documents(
        &render(
            release,
            a,
            &[
                set_list("watchNamespaces", &[a, b, c]),
                set_list("adminNamespaces", &[c]),
            ],
        )
        .await,
    );
    let wanted = [
        format!("{fullname}-approval"),
        format!("{fullname}-tenancy"),
        format!("{fullname}-approver"),
    ];
    let policy: Vec<&Value> = of_kind(
        &docs,
        &[
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
            "ClusterRole",
        ],
    )
    .into_iter()
    .filter(|d| wanted.iter().any(|w| d["metadata"]["name"] == w.as_str()))
    .collect();
    assert_eq!(
        policy.len(),
        5,
        "two policies, two bindings, one ClusterRole"
    );
    let _cleanup = cleanup(&policy);
    apply_ok(&policy, &[]);

    // Users named after the test, so tests side by side never share RBAC.
    let ann = format!("{a}-ann"); // team A only
    let cy = format!("{a}-cy"); // central SRE
    let ed = format!("{a}-ed"); // approver
    for ns in [&team_a, &team_b, &central] {
        ns.kubectl_ok(&[
            "create",
            "role",
            "triage-editor",
            "--verb=get,list,create,update,patch",
            "--resource=alerttriages.triage.dev",
        ]);
        ns.kubectl_ok(&[
            "create",
            "role",
            "pod-lister",
            "--verb=list",
            "--resource=pods",
        ]);
        ns.kubectl_ok(&[
            "create",
            "role",
            "log-reader",
            "--verb=get",
            "--resource=pods/log",
        ]);
        ns.kubectl_ok(&[
            "create",
            "role",
            "pod-evicter",
            "--verb=create",
            "--resource=pods/eviction",
        ]);
    }
    let bind = |ns: &TestNs, binding: &str, role: &str, user: &str| {
        ns.kubectl_ok(&[
            "create",
            "rolebinding",
            binding,
            &format!("--role={role}"),
            &format!("--user={user}"),
        ]);
    };
    bind(&team_a, "ann-edits", "triage-editor", &ann);
    bind(&team_a, "ann-lists", "pod-lister", &ann);
    bind(&team_a, "ann-reads", "log-reader", &ann);
    bind(&central, "cy-edits", "triage-editor", &cy);
    team_a.kubectl_ok(&[
        "create",
        "rolebinding",
        "ed-approves",
        &format!("--clusterrole={fullname}-approver"),
        &format!("--user={ed}"),
    ]);
    central.kubectl_ok(&[
        "create",
        "rolebinding",
        "ed-approves",
        &format!("--clusterrole={fullname}-approver"),
        &format!("--user={ed}"),
    ]);
    let ann_client = team_a.cluster.impersonating(&ann, &[]).await;
    let cy_client = team_a.cluster.impersonating(&cy, &[]).await;
    let ed_client = team_a.cluster.impersonating(&ed, &[]).await;
    let admin = team_a.client.clone();

    // In force once a dry run of the cross-namespace triage is refused by the policy.
    eventually(Duration::from_secs(30), || {
        let ann_client = ann_client.clone();
        let a = a.clone();
        let obj = targeting("probe", Some(b));
        async move {
            let dry_run = PostParams {
                dry_run: true,
                ..PostParams::default()
            };
            match triage_api(ann_client, &a).create(&dry_run, &obj).await {
                Err(kube::Error::Api(s))
                    if s.code == 403 && s.message.contains("ValidatingAdmissionPolicy") =>
                {
                    Ok(())
                }
                other => Err(format!("not refused yet: {other:?}")),
            }
        }
    })
    .await;

    // Team A's user cannot reach into team B, on create or by editing; nor can an administrator
    // outside the admin namespaces.
    let own_ns_only: [&str; 3] = [
        "spec.target.namespace must be this AlertTriage's own namespace",
        &format!("({a}), not {b}"),
        &format!("adminNamespaces ({c})"),
    ];
    refused(
        create_as(&ann_client, a, &targeting("cross", Some(b))).await,
        &own_ns_only,
    );
    refused(
        create_as(&admin, a, &targeting("cross", Some(b))).await,
        &own_ns_only,
    );
    create_as(&ann_client, a, &targeting("own", Some(a)))
        .await
        .expect("a triage naming its own namespace");
    create_as(&ann_client, a, &targeting("implicit", None))
        .await
        .expect("a triage in its own namespace");
    let retarget = json!({"spec": {"target": {"namespace": b}}});
    refused(
        triage_api(ann_client.clone(), a)
            .patch("own", &PatchParams::default(), &Patch::Merge(&retarget))
            .await
            .map(|_| ()),
        &own_ns_only,
    );

    // The central namespace may target team B, for someone who may read team B's pods and logs.
    let lacks_reads: [&str; 2] = [
        &format!("\"{cy}\" may not triage pods in namespace {b}"),
        "list pods and get pods/log",
    ];
    refused(
        create_as(&cy_client, c, &targeting("central", Some(b))).await,
        &lacks_reads,
    );
    bind(&team_b, "cy-lists", "pod-lister", &cy);
    refused(
        create_as(&cy_client, c, &targeting("central", Some(b))).await,
        &lacks_reads,
    );
    bind(&team_b, "cy-reads", "log-reader", &cy);
    eventually(Duration::from_secs(10), || async {
        create_as(&cy_client, c, &targeting("central", Some(b)))
            .await
            .map_err(|e| format!("{e}"))
    })
    .await;

    // Approving takes the right to evict in the target namespace, not only the approve verb.
    let cannot_evict = |ns: &str| {
        [
            format!("\"{ed}\" may not approve evicting a pod in namespace {ns}"),
            "create pods/eviction".to_string(),
        ]
    };
    let says = cannot_evict(a);
    refused(
        set_approval(ed_client.clone(), a, "own", &ed).await,
        &says.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    bind(&team_a, "ed-evicts", "pod-evicter", &ed);
    eventually(Duration::from_secs(10), || async {
        set_approval(ed_client.clone(), a, "own", &ed)
            .await
            .map_err(|e| format!("{e}"))
    })
    .await;
    // A central triage over team B: evicting in the central namespace is not enough. Reading
    // team B is granted, so only the eviction check can refuse.
    bind(&team_b, "ed-lists", "pod-lister", &ed);
    bind(&team_b, "ed-reads", "log-reader", &ed);
    bind(&central, "ed-evicts", "pod-evicter", &ed);
    let says = cannot_evict(b);
    refused(
        set_approval(ed_client.clone(), c, "central", &ed).await,
        &says.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    bind(&team_b, "ed-evicts", "pod-evicter", &ed);
    eventually(Duration::from_secs(10), || async {
        set_approval(ed_client.clone(), c, "central", &ed)
            .await
            .map_err(|e| format!("{e}"))
    })
    .await;
}

// ------------------------------------------------------------------------------------------------
// (f) values that cannot work together are refused, with a message

#[tokio::test]
async fn the_chart_refuses_values_that_cannot_run() {
    let ns = TestNs::new("chart-refuses").await;
    let own = |s: &str| s.to_string();
    let refused = |sets: &[String], says: &[&str]| {
        let args = common::helm::template_args("ato", &ns.name, sets);
        let out = common::helm::helm_output(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{sets:?} rendered:\n{}", show(&out));
        for part in says {
            assert!(stderr.contains(part), "{sets:?}: {part:?} not in {stderr}");
        }
    };
    refused(
        &[own("intake.enabled=true")],
        &["intake.enabled needs intake.tokenSecret"],
    );
    refused(
        &[
            own("intake.enabled=true"),
            own("intake.tokenSecret=t"),
            own("intake.resolvedRetention=forever"),
        ],
        &["resolvedRetention"],
    );
    let lease = "retryPeriod < renewDeadline < leaseDuration";
    refused(
        &[own("leaderElection.leaseDuration=5s")],
        &[lease, "2s, 10s and 5s"],
    );
    refused(&[own("leaderElection.retryPeriod=10s")], &[lease]);
    refused(
        &[
            own("leaderElection.leaseDuration=1m"),
            own("leaderElection.renewDeadline=1m"),
        ],
        &[lease],
    );
    refused(
        &[
            own("leaderElection.leaseDuration=900ms"),
            own("leaderElection.renewDeadline=500ms"),
            own("leaderElection.retryPeriod=100ms"),
        ],
        &["leaseDuration 900ms is under 1s"],
    );
    refused(
        &[own("replicas=2"), own("leaderElection.enabled=false")],
        &["replicas > 1 needs leaderElection.enabled"],
    );
    refused(
        &[
            own("metrics.prometheusRule.enabled=true"),
            own("metrics.prometheusRule.proposalWaiting=30m"),
        ],
        &["proposalWaiting (30m) must be shorter than operator.proposalTTL (30m)"],
    );
    refused(
        &[
            own("metrics.prometheusRule.enabled=true"),
            own("operator.proposalTTL=10m"),
        ],
        &["proposalWaiting (15m) must be shorter than operator.proposalTTL (10m)"],
    );
    // The schema still refuses a malformed duration before any of this.
    refused(
        &[own("leaderElection.leaseDuration=soon")],
        &["leaseDuration"],
    );

    // Units mix; what is consistent renders, and checks that do not apply do not refuse.
    for sets in [
        vec![
            own("leaderElection.leaseDuration=1m"),
            own("leaderElection.renewDeadline=45s"),
            own("leaderElection.retryPeriod=1500ms"),
        ],
        vec![
            own("leaderElection.enabled=false"),
            own("leaderElection.leaseDuration=1s"),
        ],
        vec![
            own("metrics.prometheusRule.enabled=true"),
            own("metrics.prometheusRule.proposalWaiting=1h"),
            own("operator.proposalTTL=1h30m"),
        ],
        vec![own("metrics.prometheusRule.proposalWaiting=2h")],
    ] {
        render("ato", &ns.name, &sets).await;
    }

    // helm install refuses before it creates anything.
    let kubeconfig = ns.cluster.kubeconfig.to_string_lossy().into_owned();
    let chart = chart_dir();
    let out = common::helm::helm_output(&[
        "install",
        "refused",
        &chart,
        "--namespace",
        &ns.name,
        "--kubeconfig",
        &kubeconfig,
        "--set",
        "leaderElection.leaseDuration=5s",
    ]);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(lease),
        "{}",
        show(&out)
    );
    let left = ns.kubectl_ok(&["get", "deployments,secrets", "-o", "name"]);
    assert!(!left.contains("refused"), "helm left {left}");
}

// ------------------------------------------------------------------------------------------------
// (g) `helm test`

/// The hook's kubectl commands, run here as the hook's ServiceAccount against the chart applied
/// for real (namespaced, on the kwok nodes). A Pod of the simulated nodes runs nothing, so the
/// hook Pod itself does not run here, and the operator's pod has no real address for the Service
/// to reach: the last step (/readyz through the Service) is checked for permission only.
/// `tests/real_node.rs` runs `helm test` for real on the real node.
#[tokio::test]
async fn the_helm_test_hook_checks_what_it_says_with_only_what_it_needs() {
    let ns = TestNs::new("chart-helm-test").await;
    ns.cluster.install_crds();
    let release = "ato";
    let fullname = "ato-alert-triage-operator";
    let docs = documents(
        &render(
            release,
            &ns.name,
            &[
                set_list("watchNamespaces", &[&ns.name]),
                "approvalPolicy.enabled=false".into(),
                "nodeSelector.type=kwok".into(),
            ],
        )
        .await,
    );
    let hooks: Vec<&Value> = docs
        .iter()
        .filter(|d| d["metadata"]["annotations"]["helm.sh/hook"] == "test")
        .collect();
    let kinds: Vec<&str> = hooks.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ServiceAccount", "Role", "RoleBinding", "Pod"]);
    let pod = hooks[3];
    assert_eq!(
        pod["spec"]["serviceAccountName"],
        format!("{fullname}-test")
    );
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    assert_eq!(pod["spec"]["nodeSelector"]["type"], "kwok");
    let steps: Vec<Vec<String>> = pod["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .chain(pod["spec"]["containers"].as_array().unwrap())
        .map(|c| {
            assert_eq!(c["image"], "registry.k8s.io/kubectl:v1.36.3");
            assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
            c["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect()
        })
        .collect();
    assert_eq!(steps.len(), 3, "{steps:?}");

    // Everything but the hook Pod, for real: the operator's Deployment becomes Available on
    // the kwok nodes, which is what the hook waits for.
    let objects: Vec<&Value> = docs.iter().filter(|d| d["kind"] != "Pod").collect();
    apply_ok(&objects, &[]);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("test.kubeconfig");
    ns.cluster
        .service_account_kubeconfig(&ns.name, &format!("{fullname}-test"), &kubeconfig)
        .await;
    for step in &steps[..2] {
        let args: Vec<&str> = step.iter().map(String::as_str).collect();
        let out = ns.cluster.kubectl_with(&kubeconfig, &args);
        assert!(out.status.success(), "kubectl {args:?}:\n{}", show(&out));
    }
    // The third step's request, and that this identity may make it and nothing else.
    let proxy = format!(
        "/api/v1/namespaces/{}/services/{fullname}-metrics:http-metrics/proxy/readyz",
        ns.name
    );
    assert_eq!(steps[2], ["get", "--raw", proxy.as_str()]);
    let sa = format!("system:serviceaccount:{}:{fullname}-test", ns.name);
    let can = |args: &[&str]| {
        let mut all = vec!["auth", "can-i", "--as", &sa, "-n", &ns.name];
        all.extend_from_slice(args);
        String::from_utf8_lossy(&cluster().kubectl(&all).stdout).trim() == "yes"
    };
    assert!(can(&[
        "get",
        &format!("services/{fullname}-metrics:http-metrics"),
        "--subresource=proxy"
    ]));
    for denied in [
        &["get", "services/other:http", "--subresource=proxy"][..],
        &["get", "deployments/other"],
        &["list", "pods"],
        &["get", "secrets"],
        &["list", "alerttriages.triage.dev"],
    ] {
        assert!(!can(denied), "the test hook may {denied:?}");
    }
    // Without the CRD the first step fails (here: a group that does not exist).
    let out = ns
        .cluster
        .kubectl_with(&kubeconfig, &["explain", "alerttriages.nosuch.triage.dev"]);
    assert!(!out.status.success(), "{}", show(&out));
}

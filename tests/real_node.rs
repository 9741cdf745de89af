//! The operator as users run it, on the local cluster's real node (containerd, runc and a kubelet:
//! `scripts/cluster.sh up --real-node`, docs/cluster.md): its image built here without Docker
//! (`scripts/image.sh operator`, which scripts/test.sh runs first), installed with `helm install`
//! as two replicas of which exactly one leads; a workload whose real container logs the single-pod
//! network failure; the triage proposes, alice approves, the pod is evicted and its container
//! stopped by the kubelet, the replacement becomes Ready through its readiness probe and logs
//! clean, and the triage ends Remediated; deleting the leader pod hands over within the lease
//! timings.
//!
//! A cluster without a real node fails this test with a message saying how to start one.

mod common;

use std::time::{Duration, Instant};

use common::helm::{helm, helm_output};
use common::operator::{create_triage, triage_resource, wait_for_phase};
use common::scenario::metering_triage;
use common::{TestNs, cluster, eventually, is_running_and_ready, pod_state, show};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{DynamicObject, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

const CHART: &str = "charts/alert-triage-operator";
/// The real node's label (scripts/cluster.sh gives the kwok nodes `type=kwok`).
const REAL_NODE: (&str, &str) = ("type", "real");
const TAINT: &str = "alert-triage-operator/real-node";
const LOG_WRITER_IMAGE: &str = "localhost/ato-log-writer:1";
/// First start on a fresh node unpacks images; later starts take seconds.
const START: Duration = Duration::from_secs(120);
const VERDICT: Duration = Duration::from_secs(60);
const REMEDIATION: Duration = Duration::from_secs(180);
// Short lease timings (the chart's defaults are 15s/10s/2s), so the handover is quick to see.
const LEASE_DURATION: Duration = Duration::from_secs(6);
const RETRY: Duration = Duration::from_secs(1);
const SIGNATURE: &str = "ErrorMeteringTokenExchangeFailure";

/// The real node's name; panics with how to get one when the cluster has none.
async fn real_node() -> String {
    let c = cluster();
    let nodes: Api<Node> = Api::all(c.admin().await);
    let list = nodes
        .list(&ListParams::default().labels(&format!("{}={}", REAL_NODE.0, REAL_NODE.1)))
        .await
        .expect("listing nodes");
    let Some(node) = list.items.into_iter().next() else {
        panic!(
            "\n\nNO REAL NODE: the cluster at {} has no node labelled {}={}.\n\
             This test runs real containers. Start the local cluster with one (as root):\n  \
             scripts/cluster.sh up --real-node && scripts/image.sh operator\n\
             (scripts/test.sh does both when it starts the cluster itself).\n",
            c.kubeconfig.display(),
            REAL_NODE.0,
            REAL_NODE.1
        )
    };
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    assert!(
        ready,
        "the real node {} is not Ready: {:?}",
        node.name_any(),
        node.status.and_then(|s| s.conditions)
    );
    node.name_any()
}

/// Uninstalls the release (its cluster-scoped ClusterRoles and admission policy) when dropped.
struct Release {
    name: String,
    namespace: String,
}

impl Drop for Release {
    fn drop(&mut self) {
        if std::env::var_os("ATO_TEST_KEEP_NAMESPACES").is_none() {
            let _ = helm_output(&["uninstall", &self.name, "-n", &self.namespace]);
        }
    }
}

/// Pod specs on the real node: its label, and a toleration of its taint.
fn on_real_node(spec: &mut Value) {
    spec["nodeSelector"] = json!({REAL_NODE.0: REAL_NODE.1});
    spec["tolerations"] = json!([{"key": TAINT, "operator": "Exists", "effect": "NoSchedule"}]);
}

/// The namespace's pods and Events, for failure messages.
fn describe(ns: &TestNs) -> String {
    let pods = ns.kubectl(&["get", "pods", "-o", "wide"]);
    let events = ns.kubectl(&["get", "events", "--sort-by=.lastTimestamp"]);
    format!("{}\n{}", show(&pods), show(&events))
}

async fn wait_ready_pods(ns: &TestNs, selector: &str, n: usize) -> Vec<Pod> {
    let started = Instant::now();
    let pods = tokio::time::timeout(START, async {
        loop {
            if let Ok(pods) = ns.running_pods(selector, n).await {
                return pods;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    match pods {
        Ok(pods) => pods,
        Err(_) => panic!(
            "{n} pods matching {selector} were not Running and Ready after {:?}:\n{}",
            started.elapsed(),
            describe(ns)
        ),
    }
}

/// GET http://<pod IP>:8080<path>: the host reaches pod addresses over the node's bridge.
async fn http_get(pod: &Pod, path: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .ok_or("no pod IP")?;
    let address = format!("{ip}:8080");
    // Bounded, so a caller polling with `eventually` tries again instead of hanging on one
    // attempt (a pod address can take a moment to answer after a replica starts).
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(&address)
            .await
            .map_err(|e| format!("connecting to {address}: {e}"))?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(3), exchange)
        .await
        .map_err(|_| format!("GET {path} from {address}: no answer within 3s"))??;
    let text = String::from_utf8_lossy(&response).into_owned();
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
        _ => Err(format!("GET {path} from {address}: {text}")),
    }
}

async fn leader_metric(pod: &Pod) -> Result<f64, String> {
    let body = http_get(pod, "/metrics").await?;
    body.lines()
        .find_map(|l| l.strip_prefix("alert_triage_leader "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no alert_triage_leader in /metrics of {}", pod.name_any()))
}

async fn lease_holder(ns: &TestNs, lease: &str) -> Option<String> {
    ns.api::<Lease>()
        .get_opt(lease)
        .await
        .expect("reading the Lease")
        .and_then(|l| l.spec?.holder_identity)
}

/// Waits until exactly one of `pods` holds the Lease and says so on /metrics, the others
/// report 0; returns (leader, followers).
async fn one_leader(ns: &TestNs, lease: &str, pods: &[Pod]) -> (Pod, Vec<Pod>) {
    eventually(Duration::from_secs(30), || async {
        let holder = lease_holder(ns, lease)
            .await
            .ok_or_else(|| "no holder yet".to_string())?;
        let mut leaders = Vec::new();
        let mut followers = Vec::new();
        for p in pods {
            match leader_metric(p).await? {
                1.0 => leaders.push(p.clone()),
                0.0 => followers.push(p.clone()),
                other => return Err(format!("alert_triage_leader {other} on {}", p.name_any())),
            }
        }
        match leaders.as_slice() {
            [l] if l.name_any() == holder => Ok::<_, String>((l.clone(), followers)),
            _ => Err(format!(
                "Lease held by {holder}; replicas reporting leadership: {:?}",
                leaders.iter().map(|p| p.name_any()).collect::<Vec<_>>()
            )),
        }
    })
    .await
}

async fn log_of(ns: &TestNs, pod: &str) -> String {
    ns.pods()
        .logs(pod, &LogParams::default())
        .await
        .unwrap_or_else(|e| panic!("reading the log of {pod}: {e}"))
}

/// The log-writer Deployment: every container prints `/logs/<mode ConfigMap's "log">` as it
/// starts, so switching the ConfigMap decides what the next pods log.
fn metering_deployment() -> Deployment {
    let mut spec = json!({
        "terminationGracePeriodSeconds": 10,
        "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "app",
            "image": LOG_WRITER_IMAGE,
            "imagePullPolicy": "Never",
            "args": ["/logs/$(LOG)"],
            "env": [{"name": "LOG", "valueFrom": {"configMapKeyRef": {"name": "mode", "key": "log"}}}],
            "volumeMounts": [{"name": "logs", "mountPath": "/logs"}],
            "readinessProbe": {"exec": {"command": ["test", "-e", "/tmp/printed"]}, "periodSeconds": 1},
            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
        }],
        "volumes": [{"name": "logs", "configMap": {"name": "logs"}}]
    });
    on_real_node(&mut spec);
    serde_json::from_value(json!({
        "metadata": {"name": "metering"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "metering"}},
            "template": {"metadata": {"labels": {"app": "metering"}}, "spec": spec}
        }
    }))
    .expect("deployment manifest")
}

fn demo_log(name: &str) -> String {
    let path = cluster().repo.join("examples/demo/logs").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn the_chart_on_a_real_node_remediates_and_hands_over() {
    let started = Instant::now();
    let node = real_node().await;
    let ns = TestNs::new("real-node").await;
    // The operator lives in a namespace of its own: the chart's policy never lets it remove
    // pods in its own namespace.
    let home = TestNs::new("real-node-op").await;
    let release = Release {
        name: ns.name.clone(),
        namespace: home.name.clone(),
    };
    let fullname = format!("{}-alert-triage-operator", release.name);
    // Opted in to remediation, as the design's guardrail asks of a namespace.
    ns.kubectl_ok(&[
        "label",
        "namespace",
        &ns.name,
        "triage.dev/remediation=enabled",
    ]);

    // alice may approve here: the chart's approver ClusterRole, bound in this namespace.
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "alice-approves"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("{fullname}-approver")},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]
    }))
    .unwrap();
    ns.api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .expect("binding alice");

    // ---- helm install: two replicas on the real node, from the image built here
    let chart = cluster().repo.join(CHART).to_string_lossy().into_owned();
    let placement = json!({"nodeSelector": {REAL_NODE.0: REAL_NODE.1},
        "tolerations": [{"key": TAINT, "operator": "Exists", "effect": "NoSchedule"}]});
    let t0 = Instant::now();
    helm(&[
        "install",
        &release.name,
        &chart,
        "-n",
        &home.name,
        "--set",
        "replicas=2",
        "--set",
        "image.pullPolicy=Never",
        "--set-json",
        &format!("nodeSelector={}", placement["nodeSelector"]),
        "--set-json",
        &format!("tolerations={}", placement["tolerations"]),
        "--set",
        &format!("watchNamespaces={{{}}}", ns.name),
        "--set",
        "leaderElection.leaseDuration=6s,leaderElection.renewDeadline=4s,leaderElection.retryPeriod=1s",
        // Judge the replacement after a few seconds, not the default two minutes.
        "--set",
        "operator.verifySettle=3s",
    ]);
    let selector = format!("app.kubernetes.io/instance={}", release.name);
    let operators = wait_ready_pods(&home, &selector, 2).await;
    println!(
        "operator pods Ready through their probes {:?} after helm install",
        t0.elapsed()
    );
    for p in &operators {
        assert_eq!(
            p.spec.as_ref().unwrap().node_name.as_deref(),
            Some(node.as_str())
        );
    }
    let (leader, _) = one_leader(&home, &fullname, &operators).await;

    // ---- helm test: the chart's hook Pod runs for real on this node (kubectl image built here)
    let tested = helm_output(&["test", &release.name, "-n", &home.name, "--timeout", "3m"]);
    if !tested.status.success()
        || !String::from_utf8_lossy(&tested.stdout).contains("Phase:          Succeeded")
    {
        // A failed hook Pod stays (hook-delete-policy hook-succeeded): show which step failed.
        let pod = format!("{fullname}-test");
        panic!(
            "helm test failed:\n{}\n{}\n{}\n{}",
            show(&tested),
            show(&home.kubectl(&["describe", "pod", &pod])),
            show(&home.kubectl(&["logs", &pod, "--all-containers", "--prefix"])),
            describe(&home)
        );
    }
    println!("helm test: the hook Pod succeeded");

    // ---- a workload: one pod logs the network failure, its two siblings are healthy
    let cm = |name: &str, data: Value| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name}, "data": data})).unwrap()
    };
    let configmaps = ns.api::<ConfigMap>();
    configmaps
        .create(
            &PostParams::default(),
            &cm(
                "logs",
                json!({"network.log": demo_log("network.log"), "healthy.log": demo_log("healthy.log")}),
            ),
        )
        .await
        .unwrap();
    configmaps
        .create(
            &PostParams::default(),
            &cm("mode", json!({"log": "network.log"})),
        )
        .await
        .unwrap();
    let deployments = ns.api::<Deployment>();
    deployments
        .create(&PostParams::default(), &metering_deployment())
        .await
        .expect("creating the workload");
    let sick = wait_ready_pods(&ns, "app=metering", 1).await.remove(0);
    configmaps
        .patch(
            "mode",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"log": "healthy.log"}})),
        )
        .await
        .unwrap();
    deployments
        .patch(
            "metering",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    let pods = wait_ready_pods(&ns, "app=metering", 3).await;
    for p in &pods {
        let log = log_of(&ns, &p.name_any()).await;
        if p.uid() == sick.uid() {
            assert!(log.contains(SIGNATURE), "the sick pod logged:\n{log}");
        } else {
            assert_eq!(log, demo_log("healthy.log"), "a healthy pod's log");
        }
    }

    // Pod traffic stays on this machine: a pod has a route to the API server's Service address
    // over the bridge, and none anywhere else (a route lookup sends no packet).
    let route = |to: &str| ns.kubectl(&["exec", &sick.name_any(), "--", "ip", "route", "get", to]);
    let outside = route("1.1.1.1");
    assert!(
        !outside.status.success() && show(&outside).contains("unreachable"),
        "a pod has a route off the machine:\n{}",
        show(&outside)
    );
    assert!(route("10.96.0.1").status.success());

    // ---- triage, approval by alice, eviction, verification
    create_triage(&ns, metering_triage("net", "metering")).await;
    let t = wait_for_phase(&ns, "net", &["AwaitingApproval"], VERDICT).await;
    assert_eq!(
        t["status"]["proposal"]["pod"],
        sick.name_any(),
        "{}",
        t["status"]
    );
    let proposal = t["status"]["proposal"]["id"].as_str().unwrap().to_string();
    let alice = cluster().user("alice").await;
    let triages: Api<DynamicObject> = Api::namespaced_with(alice, &ns.name, &triage_resource());
    triages
        .patch(
            "net",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"approval": {"proposal": proposal, "approvedBy": "alice"}}}),
            ),
        )
        .await
        .expect("alice approves");
    let approved = Instant::now();
    let t = wait_for_phase(
        &ns,
        "net",
        &["Remediated", "RemediationFailed"],
        REMEDIATION,
    )
    .await;
    println!("approval to Remediated: {:?}", approved.elapsed());
    let r = &t["status"]["remediation"];
    assert_eq!(t["status"]["phase"], "Remediated", "{}", t["status"]);
    assert_eq!(r["outcome"], "Succeeded", "{r}");
    assert_eq!(r["podUID"], sick.uid().unwrap());
    assert_eq!(r["approvedBy"], "alice");

    // The kubelet stopped the evicted pod's container: only then is the pod object gone.
    let live = ns
        .pods()
        .list(&ListParams::default().labels("app=metering"))
        .await
        .unwrap()
        .items;
    assert!(
        live.iter().all(|p| p.uid() != sick.uid()),
        "the evicted pod is still there: {:?}",
        live.iter().map(pod_state).collect::<Vec<_>>()
    );
    let replacement_name = r["replacement"]
        .as_str()
        .expect("a replacement")
        .to_string();
    let replacement = ns.pods().get(&replacement_name).await.unwrap();
    assert!(
        is_running_and_ready(&replacement),
        "{}",
        pod_state(&replacement)
    );
    assert_eq!(
        replacement.spec.as_ref().unwrap().node_name.as_deref(),
        Some(node.as_str())
    );
    let log = log_of(&ns, &replacement_name).await;
    assert_eq!(log, demo_log("healthy.log"), "the replacement's log");
    assert!(
        pods.iter().all(|p| p.name_any() != replacement_name),
        "the replacement is a new pod"
    );

    // ---- deleting the leader hands over within the lease timings: to the follower, or to the
    // replica the Deployment starts in its place if that one asks first
    let t0 = Instant::now();
    home.pods()
        .delete(&leader.name_any(), &Default::default())
        .await
        .expect("deleting the leader pod");
    let bound = LEASE_DURATION + RETRY + Duration::from_secs(3);
    let new_holder = loop {
        let holder = lease_holder(&home, &fullname).await;
        match holder {
            Some(h) if h != leader.name_any() => break h,
            _ if t0.elapsed() > bound => {
                let out = home.kubectl(&["logs", &leader.name_any(), "--tail=30"]);
                panic!(
                    "{bound:?} after deleting the leader pod the Lease is held by {holder:?}; \
                     the old leader's last output:\n{}\n{}",
                    show(&out),
                    describe(&ns)
                );
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let handover = t0.elapsed();
    println!("leader pod deleted: {new_holder} leads after {handover:?}");
    let operators = wait_ready_pods(&home, &selector, 2).await;
    assert!(operators.iter().all(|p| p.uid() != leader.uid()));
    let (new_leader, _) = one_leader(&home, &fullname, &operators).await;
    assert_eq!(new_leader.name_any(), new_holder);
    println!("real-node test took {:?}", started.elapsed());
}

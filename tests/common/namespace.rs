//! A fresh namespace per test, and the simulated workloads in it.

use super::*;

// ------------------------------------------------------------------------------------------------
// A namespace per test

/// A fresh namespace for one test, deleted (without waiting) when dropped, together with its
/// pod-log files. Set `ATO_TEST_KEEP_NAMESPACES=1` to keep namespaces for debugging.
pub struct TestNs {
    pub name: String,
    /// Admin client (created on this test's runtime).
    pub client: Client,
    pub cluster: &'static Cluster,
}

pub(super) fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    let mut n = h.finish();
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..6)
        .map(|_| {
            let c = alphabet[(n % 36) as usize] as char;
            n /= 36;
            c
        })
        .collect()
}

/// The user the tests approve as; every test namespace lets them evict and delete pods, since
/// the operator acts only with a power its approver has.
pub const APPROVER: &str = "alice";

/// Lets `user` evict and delete pods in `namespace`, and nothing else (not even list them).
pub async fn grant_approver(client: &Client, namespace: &str, user: &str) {
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": format!("approver-{user}")},
        "rules": [
            {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]},
        ],
    }))
    .expect("a Role");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("approver-{user}")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("approver-{user}")},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }))
    .expect("a RoleBinding");
    Api::<Role>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &role)
        .await
        .unwrap_or_else(|e| panic!("creating the approver Role in {namespace}: {e}"));
    Api::<RoleBinding>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap_or_else(|e| panic!("binding the approver Role in {namespace}: {e}"));
}

impl TestNs {
    /// Creates namespace `t-<test>-<random>` labelled `ato-test=true` and waits for its
    /// `default` ServiceAccount (pods are refused until it exists).
    pub async fn new(test: &str) -> TestNs {
        let cluster = cluster();
        let client = cluster.admin().await;
        let mut base: String = test
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        base.truncate(40);
        let base = base.trim_matches('-');
        let name = format!("t-{base}-{}", unique_suffix());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(BTreeMap::from([(
                    TEST_NS_LABEL.to_string(),
                    "true".to_string(),
                )])),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
        eventually(Duration::from_secs(60), || sas.get("default")).await;
        grant_approver(&client, &name, APPROVER).await;
        TestNs {
            name,
            client,
            cluster,
        }
    }

    /// An `Api` for a namespaced resource in this namespace (admin client).
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    pub fn pods(&self) -> Api<Pod> {
        self.api()
    }

    /// Runs kubectl as admin in this namespace (`-n <ns>` is added).
    pub fn kubectl(&self, args: &[&str]) -> Output {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        self.cluster.kubectl(&all)
    }

    /// Like [`TestNs::kubectl`] but panics unless it succeeds; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        self.cluster.kubectl_ok(&all)
    }

    /// Creates the Deployment described by `w` (pods scheduled on the kwok nodes).
    pub async fn create_deployment(&self, w: &Workload) -> Deployment {
        let deployment: Deployment =
            serde_json::from_value(w.deployment_json()).expect("deployment manifest");
        self.api::<Deployment>()
            .create(&PostParams::default(), &deployment)
            .await
            .unwrap_or_else(|e| panic!("creating deployment {}/{}: {e}", self.name, w.name))
    }

    /// Creates the Deployment and waits until exactly `w.replicas` of its pods are Running and
    /// Ready. Returns them sorted by name.
    pub async fn deploy(&self, w: &Workload, timeout: Duration) -> Vec<Pod> {
        self.create_deployment(w).await;
        self.wait_for_running_pods(&w.selector(), w.replicas as usize, timeout)
            .await
    }

    /// Lists the non-terminating pods matching `selector`; `Ok` (sorted by name) only if there
    /// are exactly `n` and all are Running and Ready. For use in [`eventually`].
    pub async fn running_pods(&self, selector: &str, n: usize) -> Result<Vec<Pod>> {
        let mut list: Vec<Pod> = self
            .pods()
            .list(&ListParams::default().labels(selector))
            .await?
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let summary: Vec<String> = list
            .iter()
            .map(|p| {
                format!(
                    "{}={}",
                    p.metadata.name.as_deref().unwrap_or("?"),
                    pod_state(p)
                )
            })
            .collect();
        ensure!(
            list.len() == n && list.iter().all(is_running_and_ready),
            "want {n} Running+Ready pods matching {selector:?}, have {summary:?}"
        );
        Ok(list)
    }

    /// Waits until exactly `n` non-terminating pods match `selector` and all are Running and
    /// Ready. Returns them sorted by name.
    pub async fn wait_for_running_pods(
        &self,
        selector: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<Pod> {
        eventually(timeout, || self.running_pods(selector, n)).await
    }

    /// Strategic-merge-patches a pod's status (status subresource), e.g. to simulate restarts
    /// or a crash loop. kwok leaves a Running pod's status alone afterwards (its stages only act
    /// on Pending pods and on deletion).
    pub async fn patch_pod_status(&self, pod: &str, status: serde_json::Value) -> Pod {
        self.pods()
            .patch_status(
                pod,
                &PatchParams::default(),
                &Patch::Strategic(json!({ "status": status })),
            )
            .await
            .unwrap_or_else(|e| panic!("patching status of {}/{pod}: {e}", self.name))
    }

    /// Makes `container` of `pod` look crash-looping: not ready, `restarts` restarts, waiting in
    /// CrashLoopBackOff, last terminated with exit code 1 a minute ago. The pod stays Running
    /// but not Ready.
    pub async fn simulate_crash_loop(&self, pod: &str, container: &str, restarts: i32) -> Pod {
        let now = Timestamp::now();
        let started = (now - SignedDuration::from_mins(2)).to_string();
        let finished = (now - SignedDuration::from_mins(1)).to_string();
        let image = format!("registry.invalid/ato/{container}:fake");
        self.patch_pod_status(
            pod,
            json!({
                "conditions": [
                    {"type": "Ready", "status": "False", "reason": "ContainersNotReady"},
                    {"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady"},
                ],
                "containerStatuses": [{
                    "name": container, "image": image, "imageID": "", "ready": false,
                    "restartCount": restarts,
                    "state": {"waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": format!("back-off restarting failed container {container}"),
                    }},
                    "lastState": {"terminated": {
                        "exitCode": 1, "reason": "Error",
                        "startedAt": started, "finishedAt": finished,
                    }},
                }],
            }),
        )
        .await
    }

    /// Gives `container` of `pod` a log (and optionally a previous instance's log, returned by
    /// `previous=true`), served through the API server by kwok, and waits until it is served.
    /// One pod's containers should be given logs one after the other, not concurrently.
    pub async fn attach_logs(
        &self,
        pod: &str,
        container: &str,
        current: &PodLog,
        previous: Option<&PodLog>,
    ) {
        attach_logs(
            &self.client,
            &self.cluster.podlogs_dir,
            &self.name,
            pod,
            container,
            current,
            previous,
        )
        .await
        .unwrap_or_else(|e| panic!("attaching logs to {}/{pod} [{container}]: {e:#}", self.name))
    }

    /// Gives every pod matching `selector` that is not in `known` (a replacement, say) the log
    /// `log` in container `container` as soon as it appears, for `duration`: simulated pods
    /// have no log of their own. Stops when dropped.
    pub fn serve_logs_to_new_pods(
        &self,
        selector: &str,
        known: &[Pod],
        container: &str,
        log: PodLog,
        duration: Duration,
    ) -> ServeLogs {
        let client = self.client.clone();
        let podlogs = self.cluster.podlogs_dir.clone();
        let namespace = self.name.clone();
        let selector = selector.to_string();
        let container = container.to_string();
        let mut served: BTreeSet<String> = known
            .iter()
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        let task = tokio::spawn(async move {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
            let until = std::time::Instant::now() + duration;
            while std::time::Instant::now() < until {
                let list = pods.list(&ListParams::default().labels(&selector)).await;
                for pod in list.map(|l| l.items).unwrap_or_default() {
                    let (Some(name), Some(uid)) = (pod.metadata.name, pod.metadata.uid) else {
                        continue;
                    };
                    if served.contains(&uid) {
                        continue;
                    }
                    let attached =
                        attach_logs(&client, &podlogs, &namespace, &name, &container, &log, None)
                            .await;
                    if attached.is_ok() {
                        served.insert(uid);
                    }
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        ServeLogs(task)
    }
}

/// A background task serving logs to new pods; aborted when dropped.
pub struct ServeLogs(tokio::task::JoinHandle<()>);

impl Drop for ServeLogs {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        if std::env::var_os("ATO_TEST_KEEP_NAMESPACES").is_some() {
            eprintln!("keeping namespace {} (ATO_TEST_KEEP_NAMESPACES)", self.name);
            return;
        }
        // Synchronous and short: a Drop may run while the test's runtime shuts down.
        let _ = Command::new(&self.cluster.kubectl)
            .arg("--kubeconfig")
            .arg(&self.cluster.kubeconfig)
            .args([
                "delete",
                "namespace",
                &self.name,
                "--wait=false",
                "--ignore-not-found",
            ])
            .output();
        let _ = std::fs::remove_dir_all(self.cluster.podlogs_dir.join(&self.name));
    }
}

/// `Running/Ready` style one-word summary of a pod, for messages.
pub fn pod_state(p: &Pod) -> String {
    let phase = p
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "NoStatus".into());
    let ready = if is_ready(p) { "Ready" } else { "NotReady" };
    let node = p
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_else(|| "unscheduled".into());
    format!("{phase}/{ready}@{node}")
}

pub fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn is_running_and_ready(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") && is_ready(p)
}

// ------------------------------------------------------------------------------------------------
// Workloads

/// A Deployment whose pods run on the simulated nodes.
#[derive(Clone, Debug)]
pub struct Workload {
    pub name: String,
    pub replicas: i32,
    /// Pod labels, also the Deployment's selector. Default: `app=<name>`.
    pub labels: BTreeMap<String, String>,
    /// Container names (default: `["app"]`); the image is a placeholder kwok never pulls.
    pub containers: Vec<String>,
}

impl Workload {
    pub fn new(name: &str, replicas: i32) -> Workload {
        Workload {
            name: name.to_string(),
            replicas,
            labels: BTreeMap::from([("app".to_string(), name.to_string())]),
            containers: vec!["app".to_string()],
        }
    }

    pub fn label(mut self, key: &str, value: &str) -> Workload {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    pub fn containers(mut self, names: &[&str]) -> Workload {
        self.containers = names.iter().map(|n| n.to_string()).collect();
        self
    }

    /// `k=v,k2=v2` label selector for this workload's pods.
    pub fn selector(&self) -> String {
        self.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn deployment_json(&self) -> serde_json::Value {
        let containers: Vec<serde_json::Value> = self
            .containers
            .iter()
            .map(|c| json!({"name": c, "image": format!("registry.invalid/ato/{c}:fake")}))
            .collect();
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": self.name, "labels": self.labels},
            "spec": {
                "replicas": self.replicas,
                "selector": {"matchLabels": self.labels},
                "template": {
                    "metadata": {"labels": self.labels},
                    "spec": {
                        "containers": containers,
                        "nodeSelector": {KWOK_NODE_SELECTOR.0: KWOK_NODE_SELECTOR.1},
                        // Our kwok nodes are not tainted; this keeps the pods schedulable on
                        // clusters whose kwok nodes carry kwok's customary taint.
                        "tolerations": [{
                            "key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"
                        }],
                    }
                }
            }
        })
    }
}

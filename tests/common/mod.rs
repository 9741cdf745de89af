//! Integration-test harness: the local simulated cluster (see docs/cluster.md), clients for its
//! identities, a fresh namespace per test, simulated workloads and pod logs.
//!
//! Use it from a test binary with `mod common;`. Tests in one binary run in parallel: every test
//! gets its own namespace (`TestNs`), pod-log files live under that namespace's own folder, and
//! the cluster is started once per process (and `scripts/cluster.sh up` takes a lock, so several
//! test binaries can race safely).
//!
//! The cluster: `ATO_TEST_KUBECONFIG` if set (an already running cluster of this layout: admin
//! kubeconfig, with `users/` and `podlogs/` beside it unless `ATO_TEST_USERS_DIR` /
//! `ATO_TEST_PODLOGS_DIR` say otherwise; pod logs need kwok on this machine), otherwise
//! `scripts/cluster.sh up` (a no-op when it already runs). A cluster that cannot start fails the
//! test loudly; nothing is ever skipped.
#![allow(dead_code)]

pub mod helm;
pub mod operator;
pub mod scenario;

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    future::Future,
    hash::{BuildHasher, Hasher},
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail, ensure};
use jiff::{SignedDuration, Timestamp, tz::TimeZone};
use k8s_openapi::api::{
    apps::v1::Deployment,
    authentication::v1::{TokenRequest, TokenRequestSpec},
    core::v1::{Namespace, Pod, ServiceAccount},
};
use kube::{
    Api, Client, Config,
    api::{
        ApiResource, DynamicObject, ListParams, LogParams, ObjectMeta, Patch, PatchParams,
        PostParams,
    },
    config::{AuthInfo, KubeConfigOptions, Kubeconfig},
};
use serde_json::json;

/// Label on every namespace the harness creates.
pub const TEST_NS_LABEL: &str = "ato-test";
/// Node label the simulated (kwok) nodes carry; the harness's pods select it.
pub const KWOK_NODE_SELECTOR: (&str, &str) = ("type", "kwok");

// ------------------------------------------------------------------------------------------------
// The cluster

/// The process-wide cluster handle. Get it with [`cluster()`].
#[derive(Debug)]
pub struct Cluster {
    /// Admin (system:masters) kubeconfig.
    pub kubeconfig: PathBuf,
    /// `<name>.kubeconfig` per non-admin user (alice: triage-approvers, bob: triage-viewers).
    pub users_dir: PathBuf,
    /// Where pod-log files for kwok are written (`<namespace>/<pod>/<container>.log`).
    pub podlogs_dir: PathBuf,
    /// The kubectl binary built by scripts/tools.sh (or `kubectl` from PATH).
    pub kubectl: PathBuf,
    /// The repository root.
    pub repo: PathBuf,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The cluster every test of this process uses, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(Cluster::start)
}

fn script_env(repo: &Path) -> HashMap<String, String> {
    let out = Command::new("bash")
        .arg(repo.join("scripts/cluster.sh"))
        .arg("env")
        .output()
        .expect("could not run bash scripts/cluster.sh env");
    assert!(
        out.status.success(),
        "scripts/cluster.sh env failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Cluster {
    fn start() -> Cluster {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let env = script_env(&repo);
        let from_env = |k: &str| PathBuf::from(&env[k]);
        let kubectl = {
            let built = from_env("ATO_BIN").join("kubectl");
            std::env::var_os("ATO_TEST_KUBECTL")
                .map(PathBuf::from)
                .unwrap_or(if built.exists() {
                    built
                } else {
                    "kubectl".into()
                })
        };
        if let Some(kubeconfig) = std::env::var_os("ATO_TEST_KUBECONFIG") {
            let kubeconfig = PathBuf::from(kubeconfig);
            assert!(
                kubeconfig.is_file(),
                "ATO_TEST_KUBECONFIG={} is not a file",
                kubeconfig.display()
            );
            let dir = kubeconfig.parent().unwrap_or(Path::new(".")).to_path_buf();
            let dir_from = |var: &str, default: &str| {
                std::env::var_os(var)
                    .map(PathBuf::from)
                    .unwrap_or_else(|| dir.join(default))
            };
            return Cluster {
                users_dir: dir_from("ATO_TEST_USERS_DIR", "users"),
                podlogs_dir: dir_from("ATO_TEST_PODLOGS_DIR", "podlogs"),
                kubeconfig,
                kubectl,
                repo,
            };
        }
        let started = Instant::now();
        let out = Command::new("bash")
            .arg(repo.join("scripts/cluster.sh"))
            .arg("up")
            .current_dir(&repo)
            .output()
            .expect("could not run bash scripts/cluster.sh up");
        if !out.status.success() {
            panic!(
                "\n\n========== THE TEST CLUSTER COULD NOT START ==========\n\
                 `scripts/cluster.sh up` exited with {} after {:.1?}.\n\
                 ----- stdout -----\n{}\n----- stderr -----\n{}\n\
                 ======================================================\n",
                out.status,
                started.elapsed(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Cluster {
            kubeconfig: from_env("ATO_KUBECONFIG"),
            users_dir: from_env("ATO_USERS_DIR"),
            podlogs_dir: from_env("ATO_PODLOGS_DIR"),
            kubectl,
            repo,
        }
    }

    /// A client with cluster-admin rights (system:masters).
    pub async fn admin(&self) -> Client {
        client_from_kubeconfig(&self.kubeconfig).await
    }

    /// The kubeconfig of a non-admin user: `alice` (group triage-approvers) or `bob`
    /// (group triage-viewers). More: `scripts/cluster.sh user NAME GROUP...`.
    pub fn user_kubeconfig(&self, name: &str) -> PathBuf {
        let path = self.users_dir.join(format!("{name}.kubeconfig"));
        assert!(
            path.is_file(),
            "no kubeconfig for user {name:?} at {} (create one with scripts/cluster.sh user {name} GROUP...)",
            path.display()
        );
        path
    }

    /// A client authenticated as a non-admin user (client certificate). Users have no RBAC
    /// rights until a test grants them some.
    pub async fn user(&self, name: &str) -> Client {
        client_from_kubeconfig(&self.user_kubeconfig(name)).await
    }

    /// An admin client impersonating `user` with `groups` (as `kubectl --as --as-group`).
    pub async fn impersonating(&self, user: &str, groups: &[&str]) -> Client {
        let mut config = config_from_kubeconfig(&self.kubeconfig).await;
        config.auth_info.impersonate = Some(user.to_string());
        config.auth_info.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
        Client::try_from(config).expect("building an impersonating client")
    }

    /// A client authenticated as a ServiceAccount, with a fresh bound token (TokenRequest API).
    pub async fn service_account(&self, namespace: &str, name: &str) -> Client {
        let token = self.service_account_token(namespace, name).await;
        let mut config = config_from_kubeconfig(&self.kubeconfig).await;
        config.auth_info = AuthInfo {
            token: Some(token.into()),
            ..Default::default()
        };
        Client::try_from(config).expect("building a service-account client")
    }

    /// Writes a kubeconfig to `path` that authenticates as a ServiceAccount (fresh bound token),
    /// for running a process such as the operator binary as that identity.
    pub async fn service_account_kubeconfig(&self, namespace: &str, name: &str, path: &Path) {
        let token = self.service_account_token(namespace, name).await;
        let text = std::fs::read_to_string(&self.kubeconfig).expect("reading the admin kubeconfig");
        let mut kubeconfig: serde_yaml::Value =
            serde_yaml::from_str(&text).expect("the admin kubeconfig is YAML");
        let users = kubeconfig["users"]
            .as_sequence_mut()
            .expect("the admin kubeconfig has users");
        for user in users {
            user["user"] = serde_yaml::to_value(json!({ "token": token })).unwrap();
        }
        std::fs::write(path, serde_yaml::to_string(&kubeconfig).unwrap())
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    async fn service_account_token(&self, namespace: &str, name: &str) -> String {
        let admin = self.admin().await;
        let sas: Api<ServiceAccount> = Api::namespaced(admin, namespace);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..Default::default()
            }),
            ..Default::default()
        };
        sas.create_token_request(name, &PostParams::default(), &request)
            .await
            .unwrap_or_else(|e| panic!("TokenRequest for serviceaccount {namespace}/{name}: {e}"))
            .status
            .and_then(|s| s.token)
            .expect("TokenRequest without a token")
    }

    /// Runs kubectl with the admin kubeconfig. Never panics; check `status` yourself.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with(&self.kubeconfig, args)
    }

    /// Runs kubectl with the given kubeconfig (e.g. [`Cluster::user_kubeconfig`]).
    pub fn kubectl_with(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("could not run {}: {e}", self.kubectl.display()))
    }

    /// Runs kubectl as admin and panics with its output unless it succeeds; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed:\n{}",
            args.join(" "),
            show(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Installs the project's CRDs from `crds/` (server-side apply; once per process) and waits
    /// until they are established.
    pub fn install_crds(&self) {
        static DONE: OnceLock<()> = OnceLock::new();
        DONE.get_or_init(|| {
            let dir = self.repo.join("crds");
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            files.sort();
            assert!(!files.is_empty(), "no CRDs (*.yaml) in {}", dir.display());
            for f in &files {
                let f = f.to_string_lossy();
                self.kubectl_ok(&["apply", "--server-side", "--force-conflicts", "-f", &f]);
                self.kubectl_ok(&[
                    "wait",
                    "--for=condition=Established",
                    "--timeout=30s",
                    "-f",
                    &f,
                ]);
            }
        });
    }
}

/// Runs `kubectl delete <kind> <name> --ignore-not-found --wait=false` (admin) when dropped:
/// cleanup for cluster-scoped objects a test creates.
pub struct DeleteOnDrop {
    pub kind: String,
    pub name: String,
}

impl Cluster {
    pub fn delete_on_drop(&'static self, kind: &str, name: &str) -> DeleteOnDrop {
        DeleteOnDrop {
            kind: kind.to_string(),
            name: name.to_string(),
        }
    }
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        let _ = cluster().kubectl(&[
            "delete",
            &self.kind,
            &self.name,
            "--ignore-not-found",
            "--wait=false",
        ]);
    }
}

/// Formats a finished command's status and output for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn config_from_kubeconfig(path: &Path) -> Config {
    let kubeconfig = Kubeconfig::read_from(path)
        .unwrap_or_else(|e| panic!("reading kubeconfig {}: {e}", path.display()));
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("loading kubeconfig {}: {e}", path.display()))
}

/// A client from a kubeconfig file (its current context).
pub async fn client_from_kubeconfig(path: &Path) -> Client {
    Client::try_from(config_from_kubeconfig(path).await)
        .unwrap_or_else(|e| panic!("building a client from {}: {e}", path.display()))
}

// ------------------------------------------------------------------------------------------------
// Waiting

/// Retries `f` every 200ms until it returns `Ok`, and returns that value; panics with the last
/// error once `timeout` has passed. An attempt still running at the deadline is abandoned.
pub async fn eventually<T, E, F, Fut>(timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, E>>,
    E: fmt::Debug,
{
    let deadline = Instant::now() + timeout;
    let mut last: Option<String> = None;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining.max(Duration::from_millis(1)), f()).await {
            Ok(Ok(v)) => return v,
            Ok(Err(e)) => last = Some(format!("{e:?}")),
            Err(_) => {
                last = Some(format!(
                    "attempt still running at the deadline (last error: {last:?})"
                ))
            }
        }
        if Instant::now() >= deadline {
            panic!(
                "condition not met within {timeout:?}; last error: {}",
                last.unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

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

fn unique_suffix() -> String {
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

// ------------------------------------------------------------------------------------------------
// Pod logs

/// Which stream a log's lines were written to; `kubectl logs` returns both, interleaved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Clone, Debug)]
enum Timing {
    /// Evenly spread over `span` ending at `end` (None: "now" when attached; for a previous
    /// log: just before the current log's span).
    Spread {
        end: Option<Timestamp>,
        span: SignedDuration,
    },
    /// First line at `start`, then `interval` apart.
    Start {
        start: Timestamp,
        interval: SignedDuration,
    },
    /// One timestamp per line.
    Explicit(Vec<Timestamp>),
}

/// A container's log: lines of arbitrary bytes (no `\n` inside a line) with timestamps.
/// Default timing: spread evenly over the 10 minutes before it is attached, the last line "now".
#[derive(Clone, Debug)]
pub struct PodLog {
    lines: Vec<Vec<u8>>,
    timing: Timing,
    stream: Stream,
}

pub const DEFAULT_LOG_SPAN: SignedDuration = SignedDuration::from_mins(10);

impl PodLog {
    /// From lines (text or bytes; may be non-UTF-8). Panics if a line contains `\n`.
    pub fn lines<I, L>(lines: I) -> PodLog
    where
        I: IntoIterator<Item = L>,
        L: AsRef<[u8]>,
    {
        let lines: Vec<Vec<u8>> = lines.into_iter().map(|l| l.as_ref().to_vec()).collect();
        for l in &lines {
            assert!(
                !l.contains(&b'\n'),
                "a log line cannot contain '\\n': {:?}",
                String::from_utf8_lossy(l)
            );
        }
        PodLog {
            lines,
            timing: Timing::Spread {
                end: None,
                span: DEFAULT_LOG_SPAN,
            },
            stream: Stream::Stdout,
        }
    }

    /// From the bytes of a plain-text log: one line per `\n` (a final `\n` does not start an
    /// empty line).
    pub fn from_bytes(bytes: &[u8]) -> PodLog {
        let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
        if lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        PodLog::lines(lines)
    }

    /// Lines with explicit timestamps (kept in the given order).
    pub fn timed<I, L>(lines: I) -> PodLog
    where
        I: IntoIterator<Item = (Timestamp, L)>,
        L: AsRef<[u8]>,
    {
        let (ts, ls): (Vec<Timestamp>, Vec<L>) = lines.into_iter().unzip();
        let mut log = PodLog::lines(ls);
        log.timing = Timing::Explicit(ts);
        log
    }

    /// Spread the lines evenly over `span`, the last line at the end of it.
    pub fn spread_over(mut self, span: Duration) -> PodLog {
        let span = SignedDuration::try_from(span).expect("span too large");
        self.timing = match self.timing {
            Timing::Spread { end, .. } => Timing::Spread { end, span },
            _ => Timing::Spread { end: None, span },
        };
        self
    }

    /// The last line's time (with the current or default span).
    pub fn ending_at(mut self, end: Timestamp) -> PodLog {
        let span = match self.timing {
            Timing::Spread { span, .. } => span,
            _ => DEFAULT_LOG_SPAN,
        };
        self.timing = Timing::Spread {
            end: Some(end),
            span,
        };
        self
    }

    /// First line at `start`, the next ones `interval` apart.
    pub fn starting_at(mut self, start: Timestamp, interval: Duration) -> PodLog {
        let interval = SignedDuration::try_from(interval).expect("interval too large");
        self.timing = Timing::Start { start, interval };
        self
    }

    /// Mark every line as written to stderr.
    pub fn stderr(mut self) -> PodLog {
        self.stream = Stream::Stderr;
        self
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The lines, as given.
    pub fn raw_lines(&self) -> &[Vec<u8>] {
        &self.lines
    }

    /// What `kubectl logs` returns for this log: every line followed by `\n`.
    pub fn expected_output(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for l in &self.lines {
            out.extend_from_slice(l);
            out.push(b'\n');
        }
        out
    }

    /// The timestamp of each line; `end` stands in for the attach time when the log is spread
    /// without an explicit end (for a previous log: the attach time minus the current log's span).
    pub fn timestamps_at(&self, end: Timestamp) -> Vec<Timestamp> {
        self.resolve(end)
    }

    fn resolve(&self, end_default: Timestamp) -> Vec<Timestamp> {
        let n = self.lines.len() as i64;
        match &self.timing {
            Timing::Spread { end, span } => {
                let end = end.unwrap_or(end_default);
                let span_ns = span.as_nanos();
                (0..n)
                    .map(|i| {
                        let offset = span_ns - span_ns * i128::from(i + 1) / i128::from(n);
                        end - SignedDuration::from_nanos(offset as i64)
                    })
                    .collect()
            }
            Timing::Start { start, interval } => (0..n)
                .map(|i| *start + SignedDuration::from_nanos(interval.as_nanos() as i64 * i))
                .collect(),
            Timing::Explicit(ts) => {
                assert_eq!(ts.len(), self.lines.len(), "one timestamp per line");
                ts.clone()
            }
        }
    }

    /// The file kwok serves: CRI log format, `<RFC 3339, 9 fraction digits> <stream> F <line>`.
    fn to_cri(&self, end_default: Timestamp) -> Vec<u8> {
        let stream = match self.stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        };
        let mut out = Vec::new();
        for (t, line) in self.resolve(end_default).iter().zip(&self.lines) {
            out.extend_from_slice(format!("{} {stream} F ", cri_timestamp(*t)).as_bytes());
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out
    }

    fn span(&self) -> SignedDuration {
        match self.timing {
            Timing::Spread { span, .. } => span,
            _ => SignedDuration::ZERO,
        }
    }
}

/// `2024-01-02T03:04:05.000000006Z`: the timestamp format of the CRI log files (and of
/// `kubectl logs --timestamps`).
pub fn cri_timestamp(t: Timestamp) -> String {
    let z = t.to_zoned(TimeZone::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        z.year(),
        z.month(),
        z.day(),
        z.hour(),
        z.minute(),
        z.second(),
        z.subsec_nanosecond()
    )
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("log path without a parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        unique_suffix()
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// The kwok `Logs` resource (kwok.x-k8s.io/v1alpha1, namespaced, named after its pod).
pub fn kwok_logs_resource() -> ApiResource {
    ApiResource {
        group: "kwok.x-k8s.io".into(),
        version: "v1alpha1".into(),
        api_version: "kwok.x-k8s.io/v1alpha1".into(),
        kind: "Logs".into(),
        plural: "logs".into(),
    }
}

/// Writes the log files under `podlogs_dir/<ns>/<pod>/` and applies the pod's kwok `Logs`
/// object (one entry per container with a file there), then waits until the API server serves
/// the container's log (and previous log). Same layout as scripts/pod-logs.sh.
pub async fn attach_logs(
    client: &Client,
    podlogs_dir: &Path,
    namespace: &str,
    pod: &str,
    container: &str,
    current: &PodLog,
    previous: Option<&PodLog>,
) -> Result<()> {
    let dir = podlogs_dir.join(namespace).join(pod);
    let now = Timestamp::now();
    write_atomically(&dir.join(format!("{container}.log")), &current.to_cri(now))?;
    let previous_path = dir.join(format!("{container}.previous.log"));
    match previous {
        Some(p) => {
            // A previous instance spread "until now" ends where the current log's span begins.
            let before = now - current.span();
            write_atomically(&previous_path, &p.to_cri(before))?
        }
        None => match std::fs::remove_file(&previous_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        },
    }

    let mut entries = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".log") && !n.ends_with(".previous.log") && !n.starts_with('.'))
        .collect();
    names.sort();
    for n in names {
        let c = n.trim_end_matches(".log");
        let mut entry = json!({"containers": [c], "logsFile": dir.join(&n)});
        let prev = dir.join(format!("{c}.previous.log"));
        if prev.exists() {
            entry["previousLogsFile"] = json!(prev);
        }
        entries.push(entry);
    }
    let obj = json!({
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Logs",
        "metadata": {"name": pod, "namespace": namespace, "labels": {"ato.triage.dev/pod-logs": "true"}},
        "spec": {"logs": entries},
    });
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &kwok_logs_resource());
    api.patch(
        pod,
        &PatchParams::apply("ato-test-harness").force(),
        &Patch::Apply(&obj),
    )
    .await
    .context("applying the kwok Logs object")?;

    // kwok learns about the object through a watch; wait until the log is served.
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + Duration::from_secs(30);
    for prev in [false, true] {
        if prev && previous.is_none() {
            continue;
        }
        let lp = LogParams {
            container: Some(container.to_string()),
            tail_lines: Some(1),
            previous: prev,
            ..Default::default()
        };
        loop {
            match pods.log_stream(pod, &lp).await {
                Ok(_) => break,
                Err(e) if Instant::now() > deadline => {
                    bail!("log (previous={prev}) still not served after 30s: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
    Ok(())
}

/// Reads a container's log through the API as raw bytes (kube's `Api::logs` wants UTF-8).
pub async fn read_log_bytes(pods: &Api<Pod>, pod: &str, lp: &LogParams) -> Result<Vec<u8>> {
    use futures::AsyncReadExt;
    let mut stream = pods
        .log_stream(pod, lp)
        .await
        .map_err(|e| anyhow!("logs of {pod}: {e}"))?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await?;
    Ok(buf)
}

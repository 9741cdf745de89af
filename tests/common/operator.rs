//! The operator binary under test, run as a real process against the test cluster and scoped
//! to one test's namespace, its output kept in a file so tests can read what it logged.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kube::Api;
use serde_json::Value;

use super::{TestNs, eventually, http_request};

pub const BIN: &str = env!("CARGO_BIN_EXE_alert-triage-operator");
/// The name of the deletion ledger ConfigMap in each test's namespace.
pub const LEDGER: &str = "ledger";

/// The release build of the operator, which `scripts/test.sh` builds and names in
/// `ATO_RELEASE_BIN`; a test that needs it fails when it is missing.
pub fn release_binary() -> PathBuf {
    let path = std::env::var_os("ATO_RELEASE_BIN").map(PathBuf::from).expect(
        "ATO_RELEASE_BIN is not set: run scripts/test.sh, or `cargo build --release` and set it",
    );
    assert!(
        path.is_file(),
        "ATO_RELEASE_BIN={} is not a file",
        path.display()
    );
    path
}

/// The arguments of every test operator: `run`, watching only `ns`, with a deletion ledger of
/// its own there (so budgets do not leak between tests), as the identity in `kubeconfig`.
pub fn run_args(ns: &TestNs, kubeconfig: &Path) -> Vec<String> {
    let ledger = format!("{}/{LEDGER}", ns.name);
    let kubeconfig = kubeconfig.to_string_lossy().into_owned();
    [
        "run",
        "--namespaces",
        &ns.name,
        "--ledger",
        &ledger,
        "--kubeconfig",
        &kubeconfig,
    ]
    .map(str::to_string)
    .to_vec()
}

/// Leader election on short timings (a 6 s lease), the Lease in `ns`.
pub fn lease_flags(ns: &TestNs) -> Vec<&str> {
    vec![
        "--leader-election",
        "--lease-namespace",
        &ns.name,
        "--lease-duration",
        "6s",
        "--lease-renew-deadline",
        "4s",
        "--lease-retry-period",
        "1s",
    ]
}

/// A running operator; killed when dropped.
pub struct Operator {
    child: Child,
    pub log: PathBuf,
    /// Where this run's output starts in `log`.
    log_from: usize,
}

impl Operator {
    /// Starts `alert-triage-operator run` watching only `ns`, with extra flags.
    pub fn start(ns: &TestNs, extra: &[&str]) -> Operator {
        Operator::start_with_env(ns, extra, &[])
    }

    /// Like [`Operator::start`], with extra environment variables (e.g. `ATO_PAUSE_AT`).
    pub fn start_with_env(ns: &TestNs, extra: &[&str], env: &[(&str, &str)]) -> Operator {
        let mut args = run_args(ns, &ns.cluster.kubeconfig);
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Operator::start_raw(ns, &ns.name, &args, env)
    }

    /// Starts `alert-triage-operator --log-format json ARGS` with nothing else added but a free
    /// port for its HTTP endpoints, logging to `<log_name>.log` (appended).
    pub fn start_raw(ns: &TestNs, log_name: &str, args: &[&str], env: &[(&str, &str)]) -> Operator {
        Operator::start_binary(Path::new(BIN), ns, log_name, args, env)
    }

    /// Like [`Operator::start_raw`], running the binary at `bin` (e.g. the release build).
    pub fn start_binary(
        bin: &Path,
        ns: &TestNs,
        log_name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Operator {
        ns.cluster.install_crds();
        let dir = std::env::temp_dir().join("ato-operator-logs");
        std::fs::create_dir_all(&dir).expect("log folder");
        let log = dir.join(format!("{log_name}.log"));
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .expect("operator log file");
        let err = out.try_clone().expect("operator log file");
        let log_from = std::fs::metadata(&log).map_or(0, |m| m.len() as usize);
        let child = Command::new(bin)
            .args(["--log-format", "json"])
            .args(args)
            // Tests run many operators side by side: each serves on a port of its own.
            .env("ATO_HTTP_ADDRESS", "127.0.0.1:0")
            .env("RUST_LOG", "info,alert_triage_operator=debug")
            // Tests watch a replacement pod for a second, not the default two minutes; a test
            // that needs longer passes --verify-settle.
            .env("ATO_VERIFY_SETTLE", "1s")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("starting the operator binary");
        Operator {
            child,
            log,
            log_from,
        }
    }

    /// `http://ADDRESS` where this run serves /metrics, /healthz and /readyz (from its log).
    pub async fn http_base(&self) -> String {
        let started = std::time::Instant::now();
        loop {
            let output = self.output();
            if let Some(address) = output
                .lines()
                .filter(|l| l.contains("serving /metrics"))
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find_map(|v| v["fields"]["address"].as_str().map(str::to_string))
            {
                return format!("http://{address}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the operator did not say where it serves HTTP:\n{output}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// GETs `path` from the operator's HTTP endpoints: status code and body.
    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self, timeout: Duration) {
        eventually(timeout, || async {
            match self.get("/readyz").await {
                (200, _) => Ok(()),
                (code, body) => Err(format!("{code} {body}")),
            }
        })
        .await
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let base = self.http_base().await;
        let address = base.trim_start_matches("http://");
        http_request(address, "GET", path, &[], b"")
            .await
            .unwrap_or_else(|e| panic!("GET {path} from {address}: {e}"))
    }

    /// The value of one series (`name` or `name{labels}`) on /metrics, if present.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200, "{body}");
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Waits (up to 10 s) until `series` satisfies `holds`: a reconcile's counters move just
    /// after the status write a test waits for. Panics with the last value seen.
    pub async fn wait_for_metric(&self, series: &str, holds: impl Fn(f64) -> bool) -> f64 {
        let mut last = None;
        for _ in 0..100 {
            last = self.metric(series).await;
            if let Some(v) = last.filter(|v| holds(*v)) {
                return v;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("{series} never reached the expected value; last seen {last:?}");
    }

    /// A replica named `identity` (its POD_NAME) with leader election on short timings, as
    /// admin, with `extra` flags.
    pub fn replica(ns: &TestNs, identity: &str, extra: &[&str]) -> Operator {
        let mut args = run_args(ns, &ns.cluster.kubeconfig);
        args.extend(lease_flags(ns).into_iter().map(str::to_string));
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Operator::start_raw(
            ns,
            &format!("{}-{identity}", ns.name),
            &args,
            &[("POD_NAME", identity)],
        )
    }

    /// Waits until the operator stops at its `ATO_PAUSE_AT` step (crash-points builds).
    pub async fn wait_for_pause(&self, timeout: Duration) {
        self.wait_logged(timeout, &["paused for a crash test"])
            .await;
    }

    /// Waits until this run's output holds every one of `texts`; fails the test with the output
    /// after `timeout`.
    pub async fn wait_logged(&self, timeout: Duration, texts: &[&str]) {
        eventually(timeout, || async {
            let output = self.output();
            if texts.iter().all(|t| output.contains(t)) {
                Ok(())
            } else {
                Err(output)
            }
        })
        .await;
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything this run of the operator has logged so far (the log file may hold earlier
    /// runs under the same name: they are not this run's).
    pub fn output(&self) -> String {
        let all = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(all.get(self.log_from..).unwrap_or_default()).into_owned()
    }

    /// Peak resident memory of the process so far, in KiB (Linux's VmHWM).
    pub fn peak_rss_kib(&self) -> u64 {
        peak_rss_kib(self.child.id()).expect("reading /proc/<pid>/status")
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, as the kubelet stops a pod.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -TERM {}", self.pid());
    }

    /// Waits until the process has exited; fails the test after `timeout`.
    pub async fn wait_stopped(&mut self, timeout: Duration) {
        eventually(timeout, || {
            let running = self.is_running();
            async move {
                if running {
                    Err("still running")
                } else {
                    Ok(())
                }
            }
        })
        .await;
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Gives each pod's `app` container its log, pairing pods and logs in order.
pub async fn give_app_logs(
    ns: &TestNs,
    pods: &[k8s_openapi::api::core::v1::Pod],
    logs: Vec<Vec<String>>,
) {
    assert_eq!(pods.len(), logs.len(), "one log per pod");
    for (pod, lines) in pods.iter().zip(logs) {
        let name = pod.metadata.name.as_deref().expect("pod name");
        ns.attach_logs(name, "app", &super::PodLog::lines(lines), None)
            .await;
    }
}

/// Creates an AlertTriage from JSON (the test's manifest, minus apiVersion/kind).
pub async fn create_triage(ns: &TestNs, manifest: Value) -> Value {
    let api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(ns.client.clone(), &ns.name, &triage_resource());
    let mut obj = manifest;
    obj["apiVersion"] = "triage.dev/v1alpha1".into();
    obj["kind"] = "AlertTriage".into();
    let dynamic: kube::api::DynamicObject = serde_json::from_value(obj).expect("manifest shape");
    let created = api
        .create(&kube::api::PostParams::default(), &dynamic)
        .await
        .unwrap_or_else(|e| panic!("creating AlertTriage: {e}"));
    serde_json::to_value(created).expect("json")
}

pub fn triage_resource() -> kube::api::ApiResource {
    kube::api::ApiResource {
        group: "triage.dev".into(),
        version: "v1alpha1".into(),
        api_version: "triage.dev/v1alpha1".into(),
        kind: "AlertTriage".into(),
        plural: "alerttriages".into(),
    }
}

/// Polls the AlertTriage until `check` finds what it waits for in its JSON, and returns that;
/// `check` says what it saw otherwise, for the failure message.
pub async fn wait_for_triage<T>(
    ns: &TestNs,
    name: &str,
    timeout: Duration,
    check: impl Fn(&Value) -> Result<T, String>,
) -> T {
    let api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(ns.client.clone(), &ns.name, &triage_resource());
    let check = &check;
    eventually(timeout, || {
        let api = api.clone();
        async move {
            let obj = api
                .get(name)
                .await
                .map_err(|e| format!("get {name}: {e}"))?;
            check(&serde_json::to_value(&obj).map_err(|e| e.to_string())?)
        }
    })
    .await
}

/// Waits until the triage's status reaches one of `phases` for its current generation and
/// returns the whole object as JSON.
pub async fn wait_for_phase(ns: &TestNs, name: &str, phases: &[&str], timeout: Duration) -> Value {
    wait_for_triage(ns, name, timeout, |t| {
        let phase = t["status"]["phase"].as_str().unwrap_or("");
        let observed = t["status"]["observedGeneration"].as_i64();
        let generation = t["metadata"]["generation"].as_i64();
        if phases.contains(&phase) && observed == generation {
            Ok(t.clone())
        } else {
            Err(format!(
                "phase {phase:?} (observed {observed:?} of {generation:?}); status {}",
                t["status"]
            ))
        }
    })
    .await
}

/// The object's Events once one with each of `reasons` has been recorded: the operator writes a
/// status before its Event, so a test that just saw the status waits a moment for the Event.
pub async fn events_with(ns: &TestNs, name: &str, reasons: &[&str]) -> Vec<String> {
    eventually(Duration::from_secs(20), || async {
        let events = events_for(ns, name).await;
        let missing: Vec<&&str> = reasons
            .iter()
            .filter(|r| !events.iter().any(|e| e.starts_with(&format!("{r}:"))))
            .collect();
        if missing.is_empty() {
            Ok(events)
        } else {
            Err(format!("no {missing:?} Event yet; have {events:?}"))
        }
    })
    .await
}

/// The Events recorded for an object, as `Reason: note` lines.
pub async fn events_for(ns: &TestNs, name: &str) -> Vec<String> {
    let api: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(ns.client.clone(), &ns.name);
    let list = api
        .list(&kube::api::ListParams::default())
        .await
        .expect("listing Events");
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| {
            format!(
                "{}: {}",
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default()
            )
        })
        .collect()
}

//! The Alertmanager intake with real Alertmanager processes (built by `scripts/tools.sh
//! alertmanager`), each configured in a temporary folder to post to the operator under test:
//! one triage per firing (also through two clustered replicas with repeat intervals of
//! seconds), resolution, refusals, retention and a bounded storm.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::alertmanager::{Alertmanager, Gossip};
use common::operator::{
    Operator, events_for, give_app_logs, triage_resource, wait_for_phase, wait_for_triage,
};
use common::scenario::network_failure;
use common::{TestNs, Workload, eventually, free_port, http_request};
use jiff::Timestamp;
use kube::Api;
use kube::api::{DynamicObject, ListParams};
use serde_json::{Value, json};
use tempfile::TempDir;

const DEPLOY: Duration = Duration::from_secs(90);
const VERDICT: Duration = Duration::from_secs(60);
/// Alertmanager waits `group_wait` (1s) before the first notification of a group.
const DELIVERY: Duration = Duration::from_secs(30);
const METERING: &str = "armada-cluster_error_metering_token_exchange";

/// The operator with its intake on a port of its own, the token in `dir/token`.
struct Intake {
    op: Operator,
    address: String,
    dir: TempDir,
}

impl Intake {
    fn start(ns: &TestNs, extra: &[&str]) -> Intake {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "intake-test-token\n").unwrap();
        let address = format!("127.0.0.1:{}", free_port());
        let token = dir.path().join("token");
        let mut args = vec![
            "--intake-bind-address",
            &address,
            "--intake-token-file",
            token.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let op = Operator::start(ns, &args);
        Intake { op, address, dir }
    }

    fn token_file(&self) -> PathBuf {
        self.dir.path().join("token")
    }

    async fn alerts(&self, outcome: &str) -> f64 {
        self.op
            .metric(&format!(
                "alert_triage_intake_alerts_total{{outcome=\"{outcome}\"}}"
            ))
            .await
            .unwrap_or(0.0)
    }

    async fn notifications(&self, result: &str) -> f64 {
        self.op
            .metric(&format!(
                "alert_triage_intake_notifications_total{{result=\"{result}\"}}"
            ))
            .await
            .unwrap_or(0.0)
    }
}

/// An Alertmanager posting every alert to the intake at `intake` with the token in
/// `token_file`, resolutions included, repeating every 3 s.
fn posting_to(intake: &str, token_file: &Path, gossip: Option<Gossip<'_>>) -> Alertmanager {
    let config = format!(
        r#"route:
  receiver: triage
  group_by: [alertname]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 3s
receivers:
  - name: triage
    webhook_configs:
      - url: http://{intake}/alertmanager
        send_resolved: true
        http_config:
          authorization:
            credentials_file: {}
"#,
        token_file.display()
    );
    Alertmanager::start(&config, gossip)
}

/// A firing metering alert about the pods `app=<service>` in `ns`.
fn alert(ns: &TestNs, service: &str, starts_at: &str, extra: &[(&str, &str)]) -> Value {
    let mut labels = json!({"alertname": METERING, "service": service, "namespace": ns.name,
        "region": "us-south"});
    for (k, v) in extra {
        labels[*k] = (*v).into();
    }
    json!({
        "labels": labels,
        "annotations": {"summary": "metering token exchange failures"},
        "startsAt": starts_at,
        "generatorURL": "http://prometheus.example/graph?g0.expr=metering",
    })
}

/// The alert resolved at `ends_at`.
fn resolved(alert: &Value, ends_at: &str) -> Value {
    let mut a = alert.clone();
    a["endsAt"] = ends_at.into();
    a
}

fn now_minus(secs: i64) -> String {
    (Timestamp::now() - jiff::SignedDuration::from_secs(secs)).to_string()
}

async fn intake_triages(ns: &TestNs) -> Vec<Value> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(ns.client.clone(), &ns.name, &triage_resource());
    api.list(&ListParams::default().labels("triage.dev/source=alertmanager"))
        .await
        .expect("listing triages")
        .items
        .into_iter()
        .map(|o| serde_json::to_value(o).unwrap())
        .collect()
}

/// Waits until the intake has created exactly `n` triages and returns them.
async fn wait_for_triages(ns: &TestNs, n: usize) -> Vec<Value> {
    eventually(DELIVERY, || async {
        let list = intake_triages(ns).await;
        if list.len() == n {
            Ok(list)
        } else {
            Err(format!("{} triages, want {n}", list.len()))
        }
    })
    .await
}

fn condition<'a>(t: &'a Value, type_: &str) -> &'a Value {
    t["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

fn name_of(t: &Value) -> String {
    t["metadata"]["name"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn firing_alerts_become_exactly_one_triage_each() {
    let ns = TestNs::new("intake-firing").await;
    let intake = Intake::start(&ns, &[]);
    let am = posting_to(&intake.address, &intake.token_file(), None);
    am.wait_ready().await;
    let starts = now_minus(60);
    let a = alert(&ns, "web", &starts, &[("instance", "a")]);
    let b = alert(&ns, "web", &starts, &[("instance", "b")]);
    let mut unknown = alert(&ns, "web", &starts, &[]);
    unknown["labels"]["alertname"] = "Watchdog".into();
    am.post(&json!([a, b, unknown])).await;

    let triages = wait_for_triages(&ns, 2).await;
    for t in &triages {
        let name = name_of(t);
        assert!(
            name.starts_with("metering-token-exchange-"),
            "named from runbook and fingerprint: {name}"
        );
        let fingerprint = t["metadata"]["labels"]["triage.dev/fingerprint"]
            .as_str()
            .unwrap();
        assert!(name.contains(fingerprint), "{name} {fingerprint}");
        assert_eq!(fingerprint.len(), 16);
        assert_eq!(t["spec"]["alert"]["name"], METERING);
        assert_eq!(t["spec"]["alert"]["labels"]["region"], "us-south");
        assert_eq!(t["spec"]["runbook"], "metering-token-exchange");
        assert_eq!(t["spec"]["target"]["selector"]["matchLabels"]["app"], "web");
        let started: Timestamp = t["spec"]["alert"]["startsAt"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let posted: Timestamp = starts.parse().unwrap();
        assert_eq!(
            started.as_second(),
            posted.as_second(),
            "startsAt carried over"
        );
        assert_eq!(
            t["metadata"]["annotations"]["triage.dev/generator-url"],
            "http://prometheus.example/graph?g0.expr=metering"
        );
        assert!(t["spec"]["approval"].is_null());
        // Triaged by the runbook like any other triage (no pods here: no evidence).
        let done = wait_for_phase(&ns, &name, &["NoAction", "Escalated"], VERDICT).await;
        assert_eq!(done["status"]["runbook"], "metering-token-exchange");
    }
    let instances: Vec<&str> = triages
        .iter()
        .map(|t| t["spec"]["alert"]["labels"]["instance"].as_str().unwrap())
        .collect();
    assert!(
        instances.contains(&"a") && instances.contains(&"b"),
        "{instances:?}"
    );

    // Repeats (every 3s) are acknowledged as duplicates and never make a second object.
    eventually(DELIVERY, || async {
        match intake.alerts("duplicate").await {
            d if d >= 4.0 => Ok(()),
            d => Err(format!("{d} duplicates so far")),
        }
    })
    .await;
    assert_eq!(intake_triages(&ns).await.len(), 2);
    assert_eq!(intake.alerts("created").await, 2.0);
    assert!(
        intake.alerts("unrouted").await >= 1.0,
        "Watchdog is unrouted"
    );
    assert_eq!(intake.notifications("unauthorized").await, 0.0);
}

/// With a catch-all runbook, an alert no runbook knows is triaged by it instead of only being
/// counted; alerts a runbook knows still go to that runbook.
#[tokio::test]
async fn a_catch_all_runbook_triages_what_no_runbook_knows() {
    let ns = TestNs::new("intake-catch-all").await;
    let intake = Intake::start(
        &ns,
        &["--intake-catch-all-runbook", "orchestrator-callback-errors"],
    );
    let am = posting_to(&intake.address, &intake.token_file(), None);
    am.wait_ready().await;
    let starts = now_minus(60);
    let known = alert(&ns, "web", &starts, &[]);
    let mut unknown = alert(&ns, "web", &starts, &[("service_name", "web")]);
    unknown["labels"]["alertname"] = "Watchdog".into();
    am.post(&json!([known, unknown])).await;

    let triages = wait_for_triages(&ns, 2).await;
    let mut runbooks: Vec<(String, String)> = triages
        .iter()
        .map(|t| {
            (
                t["spec"]["alert"]["name"].as_str().unwrap().to_string(),
                t["spec"]["runbook"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    runbooks.sort();
    assert_eq!(
        runbooks,
        [
            (
                "Watchdog".to_string(),
                "orchestrator-callback-errors".to_string()
            ),
            (METERING.to_string(), "metering-token-exchange".to_string()),
        ]
    );
    let watchdog = triages
        .iter()
        .find(|t| t["spec"]["alert"]["name"] == "Watchdog")
        .unwrap();
    assert!(name_of(watchdog).starts_with("orchestrator-callback-errors-"));
    assert_eq!(intake.alerts("unrouted").await, 0.0);
    assert_eq!(intake.alerts("created").await, 2.0);
}

/// An alert only a Runbook object knows is routed to it, in the Runbook's namespace.
#[tokio::test]
async fn an_alert_a_runbook_object_knows_is_routed_to_it() {
    let ns = TestNs::new("intake-runbook").await;
    ns.cluster.install_crds();
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/runbooks/crash-loop.yaml"
    ))
    .expect("the example runbook");
    let mut runbook: Value = serde_yaml::from_str(&text).expect("the example is YAML");
    runbook["kind"] = "Runbook".into();
    runbook["metadata"] = json!({"name": "crash-loop", "namespace": ns.name});
    runbook["spec"]["alerts"] = json!({"names": ["TeamCrashLooping"]});
    let resource = kube::api::ApiResource {
        group: "triage.dev".into(),
        version: "v1alpha1".into(),
        api_version: "triage.dev/v1alpha1".into(),
        kind: "Runbook".into(),
        plural: "runbooks".into(),
    };
    let runbooks: Api<DynamicObject> = Api::namespaced_with(ns.client.clone(), &ns.name, &resource);
    runbooks
        .create(
            &Default::default(),
            &serde_json::from_value(runbook).unwrap(),
        )
        .await
        .expect("creating the Runbook");
    let intake = Intake::start(&ns, &[]);
    // Checked and reported Ready: the operator has seen it.
    eventually(VERDICT, || async {
        let rb = serde_json::to_value(
            runbooks
                .get("crash-loop")
                .await
                .map_err(|e| e.to_string())?,
        )
        .unwrap();
        let ready = rb["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        if ready {
            Ok(())
        } else {
            Err(format!("{}", rb["status"]))
        }
    })
    .await;
    let am = posting_to(&intake.address, &intake.token_file(), None);
    am.wait_ready().await;
    let mut crashing = alert(&ns, "cart", &now_minus(60), &[]);
    crashing["labels"]["alertname"] = "TeamCrashLooping".into();
    am.post(&json!([crashing])).await;
    let triages = wait_for_triages(&ns, 1).await;
    assert_eq!(
        triages[0]["spec"]["runbook"], "crash-loop",
        "{}",
        triages[0]
    );
    assert!(name_of(&triages[0]).starts_with("crash-loop-"));
    assert_eq!(intake.alerts("unrouted").await, 0.0);
}

#[tokio::test]
async fn two_clustered_replicas_still_make_one_triage_per_firing() {
    let ns = TestNs::new("intake-ha").await;
    let intake = Intake::start(&ns, &[]);
    let (c1, c2) = (free_port(), free_port());
    let am1 = posting_to(
        &intake.address,
        &intake.token_file(),
        Some(Gossip {
            port: c1,
            peers: &[c2],
        }),
    );
    let am2 = posting_to(
        &intake.address,
        &intake.token_file(),
        Some(Gossip {
            port: c2,
            peers: &[c1],
        }),
    );
    am1.wait_ready().await;
    am2.wait_ready().await;
    let starts = now_minus(30);
    let alerts = json!([
        alert(&ns, "web", &starts, &[("instance", "a")]),
        alert(&ns, "api", &starts, &[("instance", "b")]),
    ]);
    // Prometheus sends every alert to every replica.
    am1.post(&alerts).await;
    am2.post(&alerts).await;
    wait_for_triages(&ns, 2).await;
    // Both replicas deliver, repeatedly: the intake sees many copies of each firing.
    eventually(DELIVERY, || async {
        match intake.alerts("duplicate").await {
            d if d >= 6.0 => Ok(()),
            d => Err(format!("{d} duplicates so far")),
        }
    })
    .await;
    assert_eq!(intake_triages(&ns).await.len(), 2);
    assert_eq!(intake.alerts("created").await, 2.0);
}

#[tokio::test]
async fn a_resolved_alert_withdraws_its_proposal_and_nothing_is_evicted_after() {
    let ns = TestNs::new("intake-resolve").await;
    let intake = Intake::start(&ns, &[]);
    let am = posting_to(&intake.address, &intake.token_file(), None);
    let pods = ns.deploy(&Workload::new("web", 3), DEPLOY).await;
    let healthy = || vec!["Worker metering started".to_string()];
    give_app_logs(&ns, &pods, vec![healthy(), network_failure(), healthy()]).await;
    am.wait_ready().await;
    let firing = alert(&ns, "web", &now_minus(120), &[]);
    am.post(&json!([firing])).await;
    let name = name_of(&wait_for_triages(&ns, 1).await[0]);
    let t = wait_for_phase(&ns, &name, &["AwaitingApproval"], VERDICT).await;
    let proposal = t["status"]["proposal"]["id"].as_str().unwrap().to_string();

    let ends = now_minus(1);
    am.post(&json!([resolved(&firing, &ends)])).await;
    let t = wait_for_triage(&ns, &name, DELIVERY, |t| {
        let withdrawn = t["status"]["proposal"].is_null() && t["status"]["phase"] == "NoAction";
        if condition(t, "Resolved")["status"] == "True" && withdrawn {
            Ok(t.clone())
        } else {
            Err(format!("status {}", t["status"]))
        }
    })
    .await;
    let resolved_at: Timestamp = condition(&t, "Resolved")["lastTransitionTime"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        resolved_at.as_second(),
        ends.parse::<Timestamp>().unwrap().as_second()
    );
    assert_eq!(condition(&t, "Remediated")["reason"], "AlertResolved");
    let events = events_for(&ns, &name).await;
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("ProposalWithdrawn") && e.contains("resolved")),
        "{events:?}"
    );

    // An approval of the withdrawn proposal, after resolution, is refused; nothing is evicted.
    let patch = json!({"spec": {"approval": {"proposal": proposal, "approvedBy": "alice"}}});
    ns.kubectl_ok(&[
        "patch",
        "alerttriage",
        &name,
        "--type",
        "merge",
        "-p",
        &patch.to_string(),
    ]);
    let t = wait_for_triage(&ns, &name, VERDICT, |t| {
        let current = t["status"]["observedGeneration"] == t["metadata"]["generation"];
        if current && condition(t, "Remediated")["reason"] == "AlertResolved" {
            Ok(t.clone())
        } else {
            Err(format!("status {}", t["status"]))
        }
    })
    .await;
    assert!(t["status"]["remediation"].is_null(), "{}", t["status"]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after: Vec<String> = ns
        .pods()
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| p.metadata.uid.clone().unwrap())
        .collect();
    let before: Vec<String> = pods
        .iter()
        .map(|p| p.metadata.uid.clone().unwrap())
        .collect();
    assert_eq!(after.len(), 3);
    assert!(
        before.iter().all(|u| after.contains(u)),
        "no pod was replaced"
    );
    let events = events_for(&ns, &name).await;
    assert!(
        !events
            .iter()
            .any(|e| e.starts_with("Evicted") || e.starts_with("Remediating")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e.starts_with("AlertResolved")),
        "{events:?}"
    );
    assert!(intake.alerts("resolved").await >= 1.0);
}

#[tokio::test]
async fn wrong_token_malformed_and_oversized_notifications_are_refused() {
    let ns = TestNs::new("intake-refuse").await;
    let intake = Intake::start(&ns, &[]);
    // A real Alertmanager with the wrong token: refused (401), counted, nothing created.
    let wrong = intake.dir.path().join("wrong-token");
    std::fs::write(&wrong, "not-the-token").unwrap();
    let am = posting_to(&intake.address, &wrong, None);
    am.wait_ready().await;
    am.post(&json!([alert(&ns, "web", &now_minus(10), &[])]))
        .await;
    eventually(DELIVERY, || async {
        match intake.notifications("unauthorized").await {
            n if n >= 1.0 => Ok(()),
            n => Err(format!("{n} unauthorized so far")),
        }
    })
    .await;

    let good = json!({"version": "4", "status": "firing", "receiver": "triage", "alerts": [{
        "status": "firing", "labels": {"alertname": METERING, "service": "web", "namespace": ns.name},
        "annotations": {}, "startsAt": now_minus(5), "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "", "fingerprint": "00000000000000aa"}]});
    let post = |headers: &'static [(&'static str, &'static str)], body: Vec<u8>| {
        let address = intake.address.clone();
        async move {
            http_request(&address, "POST", "/alertmanager", headers, &body)
                .await
                .expect("the intake answers")
        }
    };
    const BEARER: &[(&str, &str)] = &[("Authorization", "Bearer intake-test-token")];
    const WRONG: &[(&str, &str)] = &[("Authorization", "Bearer intake-test-tokeN")];

    let (code, body) = post(WRONG, good.to_string().into_bytes()).await;
    assert_eq!(code, 401, "{body}");
    let (code, body) = post(&[], good.to_string().into_bytes()).await;
    assert_eq!(code, 401, "{body}");

    let mut bad = good.clone();
    bad["alerts"][0]["fingerprint"] = "../etc".into();
    bad["alerts"]
        .as_array_mut()
        .unwrap()
        .insert(0, good["alerts"][0].clone());
    let (code, body) = post(BEARER, bad.to_string().into_bytes()).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("alert 1: fingerprint"), "{body}");
    let (code, body) = post(BEARER, b"{not json".to_vec()).await;
    assert_eq!(code, 400, "{body}");

    let mut huge = good.clone();
    huge["padding"] = "x".repeat(9 * 1024 * 1024).into();
    let (code, body) = post(BEARER, huge.to_string().into_bytes()).await;
    assert_eq!(code, 413, "{body}");

    // The first alert of the malformed notification was valid, yet nothing was created.
    assert!(intake_triages(&ns).await.is_empty());
    assert_eq!(intake.alerts("created").await, 0.0);
    assert_eq!(intake.notifications("malformed").await, 2.0);
    assert_eq!(intake.notifications("too_large").await, 1.0);
    assert!(intake.notifications("unauthorized").await >= 3.0);

    // The same valid notification with the right token is accepted.
    let (code, body) = post(BEARER, good.to_string().into_bytes()).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("created=1"), "{body}");
    wait_for_triages(&ns, 1).await;
}

#[tokio::test]
async fn a_sender_that_hangs_up_mid_notification_still_has_every_alert_handled() {
    use tokio::io::AsyncWriteExt;
    let ns = TestNs::new("intake-hangup").await;
    let intake = Intake::start(&ns, &["--intake-max-per-minute", "1000"]);
    intake
        .op
        .wait_logged(DEPLOY, &["serving the Alertmanager intake"])
        .await;
    // Alertmanager gives up on a slow receiver and closes the connection; the API server may
    // already have created some of the notification's triages by then. What it created must
    // be logged and counted, and the rest created too: the next delivery would only find
    // duplicates and never count them.
    const N: usize = 40;
    let starts = now_minus(20);
    let alerts: Vec<Value> = (0..N)
        .map(|i| {
            let mut a = alert(&ns, "web", &starts, &[("instance", &format!("i-{i}"))]);
            a["status"] = "firing".into();
            a["endsAt"] = "0001-01-01T00:00:00Z".into();
            a["fingerprint"] = format!("{i:016x}").into();
            a
        })
        .collect();
    let body = json!({"version": "4", "status": "firing", "receiver": "triage", "alerts": alerts})
        .to_string();
    let mut stream = tokio::net::TcpStream::connect(&intake.address)
        .await
        .expect("the intake listens");
    let head = format!(
        "POST /alertmanager HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer intake-test-token\r\n\
         Content-Length: {}\r\n\r\n",
        intake.address,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    // Hung up without reading the answer.
    drop(stream);

    wait_for_triages(&ns, N).await;
    let created = eventually(DELIVERY, || async {
        match intake.alerts("created").await {
            n if n == N as f64 => Ok(n),
            n => Err(format!("{n} counted as created, want {N}")),
        }
    })
    .await;
    assert_eq!(created, N as f64);
    intake
        .op
        .wait_logged(DELIVERY, &["triage created for a firing alert"])
        .await;
    let logged = intake
        .op
        .output()
        .matches("triage created for a firing alert")
        .count();
    assert_eq!(logged, N, "every created triage is logged");
}

#[tokio::test]
async fn a_storm_is_bounded_and_counted() {
    let ns = TestNs::new("intake-storm").await;
    let intake = Intake::start(&ns, &["--intake-max-per-minute", "5"]);
    let am = posting_to(&intake.address, &intake.token_file(), None);
    am.wait_ready().await;
    let starts = now_minus(30);
    let storm: Vec<Value> = (0..5000)
        .map(|i| alert(&ns, "web", &starts, &[("instance", &format!("i-{i}"))]))
        .collect();
    am.post(&Value::Array(storm)).await;
    eventually(Duration::from_secs(60), || async {
        match intake.alerts("rate_limited").await {
            n if n >= 4995.0 => Ok(()),
            n => Err(format!("{n} rate limited so far")),
        }
    })
    .await;
    assert_eq!(intake.alerts("created").await, 5.0);
    assert_eq!(intake_triages(&ns).await.len(), 5);
    assert!(
        intake.op.output().contains("intake rate limit reached"),
        "the storm is logged with counts"
    );
    let peak = intake.op.peak_rss_kib();
    println!("operator peak RSS after a storm of 5,000 alerts: {peak} KiB");
    assert!(peak < 160 * 1024, "peak RSS {peak} KiB");
}

#[tokio::test]
async fn resolved_triages_are_deleted_after_the_retention() {
    let ns = TestNs::new("intake-retention").await;
    let intake = Intake::start(&ns, &["--resolved-retention", "2s"]);
    let am = posting_to(&intake.address, &intake.token_file(), None);
    am.wait_ready().await;
    let firing = alert(&ns, "web", &now_minus(60), &[]);
    am.post(&json!([firing])).await;
    let name = name_of(&wait_for_triages(&ns, 1).await[0]);
    am.post(&json!([resolved(&firing, &now_minus(1))])).await;
    eventually(DELIVERY, || async {
        match intake_triages(&ns).await.len() {
            0 => Ok(()),
            n => Err(format!("{n} intake triages remain ({name})")),
        }
    })
    .await;
}

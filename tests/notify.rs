//! Notifications, end to end: the operator (a real process against the test cluster) posts an
//! escalation to a real Alertmanager (built by `scripts/tools.sh alertmanager`) that routes it
//! to a local webhook sink, and straight to local sinks standing in for Slack, PagerDuty and a
//! signed webhook, each payload checked field by field; a sink that fails twice, one that is
//! down throughout, and an operator killed between sending and recording.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use common::alertmanager::Alertmanager;
use common::operator::{Operator, create_triage, triage_resource, wait_for_phase, wait_for_triage};
use common::scenario::{metering_triage, network_failure, rate_limited};
use common::{PodLog, TestNs, Workload, eventually, free_port};
use hmac::{Hmac, Mac};
use kube::Api;
use kube::api::{DeleteParams, DynamicObject};
use serde_json::{Value, json};
use sha2::Sha256;
use tempfile::TempDir;

const DEPLOY: Duration = Duration::from_secs(90);
const VERDICT: Duration = Duration::from_secs(60);
const DELIVERY: Duration = Duration::from_secs(30);
const SIGNING_KEY: &str = "test-signing-key-0123456789abcdef0123456789";
const ROUTING_KEY: &str = "R0UT1NGKEY-secret-0123456789";
const SLACK_SECRET_PATH: &str = "/services/T000/B000/slacksecretpath";

/// One request a sink received.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Value,
    raw: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// A local HTTP receiver that records every request and fails the first `fail_first` with 500.
#[derive(Clone)]
struct Sink {
    address: String,
    received: Arc<Mutex<Vec<Received>>>,
    failures_left: Arc<AtomicUsize>,
}

async fn record(State(sink): State<Sink>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    sink.received.lock().unwrap().push(Received {
        path: uri.path().to_string(),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        raw: body.to_vec(),
    });
    let failing = sink
        .failures_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::ACCEPTED
    }
}

impl Sink {
    async fn start(fail_first: usize) -> Sink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = Sink {
            address: listener.local_addr().unwrap().to_string(),
            received: Arc::default(),
            failures_left: Arc::new(AtomicUsize::new(fail_first)),
        };
        let app = Router::new().fallback(record).with_state(sink.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        sink
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    fn received(&self, path: &str) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Waits until requests to `path` satisfy `done`; returns them.
    async fn wait(
        &self,
        path: &str,
        what: &str,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        eventually(DELIVERY, || async {
            let got = self.received(path);
            if done(&got) {
                Ok(got)
            } else {
                Err(format!(
                    "{what}: {path} has {:?}",
                    got.iter().map(|r| &r.body).collect::<Vec<_>>()
                ))
            }
        })
        .await
    }
}

/// A real Alertmanager grouping by triage and sending to `receiver`, resolutions included.
async fn alertmanager_sending_to(receiver: &str) -> Alertmanager {
    let config = format!(
        r#"route:
  receiver: sink
  group_by: [alertname, namespace, triage]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: sink
    webhook_configs:
      - url: {receiver}
        send_resolved: true
"#
    );
    let am = Alertmanager::start(&config, None);
    am.wait_ready().await;
    am
}

/// One pod logging rate-limited failures, ready to be triaged.
async fn failing_pod(ns: &TestNs) {
    let pods = ns.deploy(&Workload::new("armada-cluster", 1), DEPLOY).await;
    ns.attach_logs(
        pods[0].metadata.name.as_deref().unwrap(),
        "app",
        &PodLog::lines(rate_limited()),
        None,
    )
    .await;
}

async fn escalate(ns: &TestNs, name: &str) -> Value {
    create_triage(
        ns,
        json!({
            "metadata": {"name": name},
            "spec": {
                "alert": {"name": "armada-cluster_error_metering_token_exchange", "labels": {"region": "us-south"}},
                "target": {"selector": {"matchLabels": {"app": "armada-cluster"}}},
                "window": "1h"
            }
        }),
    )
    .await;
    wait_for_phase(ns, name, &["Escalated"], VERDICT).await
}

/// Writes the notification config into a temporary folder; returns it and the file's path.
fn config(yaml: &str) -> (TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.yaml");
    std::fs::write(&path, yaml).unwrap();
    (dir, path.to_string_lossy().into_owned())
}

/// Waits until the triage's delivery to `target` satisfies `done`; returns it.
async fn wait_for_delivery(
    ns: &TestNs,
    name: &str,
    target: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    wait_for_triage(ns, name, DELIVERY, |t| {
        let d = t["status"]["notification"]["deliveries"]
            .as_array()
            .and_then(|ds| ds.iter().find(|d| d["target"] == target).cloned());
        match d {
            Some(d) if done(&d) => Ok(d),
            other => Err(format!("delivery to {target}: {other:?}")),
        }
    })
    .await
}

async fn delete_triage(ns: &TestNs, name: &str) {
    let api: Api<DynamicObject> =
        Api::namespaced_with(ns.client.clone(), &ns.name, &triage_resource());
    api.delete(name, &DeleteParams::default()).await.unwrap();
}

/// GETs `path` from 127.0.0.1:`port` and parses the body as JSON.
async fn get_json(port: u16, path: &str) -> Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    // HTTP/1.0, so the answer is not chunked.
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.split_whitespace().nth(1) == Some("200"), "{head}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn hmac_hex(key: &str, message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(message);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn alertmanager_routes_the_escalation_once_and_then_its_resolution() {
    let ns = TestNs::new("notify-am").await;
    failing_pod(&ns).await;
    let sink = Sink::start(0).await;
    let am = alertmanager_sending_to(&sink.url("/am")).await;
    let (_dir, file) = config(&format!(
        "targets:\n  - name: am\n    alertmanager: {{url: \"http://127.0.0.1:{}\", repostInterval: 1s}}\nroutes:\n  - targets: [am]\n    categories: [RateLimited]\n",
        am.port
    ));
    let op = Operator::start(&ns, &["--notify-config-file", &file]);
    let t = escalate(&ns, "esc").await;
    let uid = t["metadata"]["uid"].as_str().unwrap().to_string();

    let d = wait_for_delivery(&ns, "esc", "am", |d| d["result"] == "Delivered").await;
    assert_eq!(d["kind"], "Escalation");
    assert_eq!(d["event"], "Firing");
    assert_eq!(d["attempts"], 1);
    assert_eq!(d["key"].as_str().unwrap().len(), 32);

    let firing = sink
        .wait("/am", "the escalation", |r| {
            r.iter().any(|r| r.body["status"] == "firing")
        })
        .await;
    let n = &firing[0].body;
    assert_eq!(n["version"], "4");
    assert_eq!(n["status"], "firing");
    let alerts = n["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{n}");
    let labels = &alerts[0]["labels"];
    assert_eq!(labels["alertname"], "AlertTriageEscalation");
    assert_eq!(labels["team"], "troutbridge");
    assert_eq!(labels["severity"], "critical");
    assert_eq!(labels["namespace"], ns.name.as_str());
    assert_eq!(labels["triage"], "esc");
    assert_eq!(labels["category"], "RateLimited");
    assert_eq!(labels["action"], "Escalate");
    assert_eq!(labels["runbook"], "metering-token-exchange");
    let annotations = &alerts[0]["annotations"];
    assert!(
        annotations["reason"].as_str().unwrap().contains("rate"),
        "{annotations}"
    );
    assert!(
        annotations["next_steps"]
            .as_str()
            .unwrap()
            .starts_with("1. "),
        "{annotations}"
    );
    assert!(
        annotations["customer_notice"]
            .as_str()
            .unwrap()
            .contains("Customers may see delays"),
        "{annotations}"
    );
    assert_eq!(
        annotations["command"],
        format!("kubectl triage why esc -n {}", ns.name)
    );
    assert_eq!(annotations["idempotency_key"], d["key"]);
    assert!(!uid.is_empty());

    // While it holds it is posted again every repostInterval with endsAt five of them ahead:
    // Alertmanager keeps one alert, pushed forward, and does not notify again within the group.
    let ends_at = |alerts: &Value| -> jiff::Timestamp {
        let ours: Vec<&Value> = alerts
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["labels"]["triage"] == "esc")
            .collect();
        assert_eq!(ours.len(), 1, "{alerts}");
        assert_eq!(ours[0]["status"]["state"], "active", "{alerts}");
        ours[0]["endsAt"].as_str().unwrap().parse().unwrap()
    };
    let before = ends_at(&get_json(am.port, "/api/v2/alerts").await);
    let reposted = "alert_triage_notifications_total{target=\"am\",result=\"reposted\"}";
    let count = op.metric(reposted).await.unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(op.metric(reposted).await.unwrap() >= count + 3.0);
    let after = ends_at(&get_json(am.port, "/api/v2/alerts").await);
    assert!(
        after > before,
        "endsAt {before} was not pushed ahead: {after}"
    );
    assert!(after > jiff::Timestamp::now(), "{after}");
    let firing: Vec<_> = sink
        .received("/am")
        .into_iter()
        .filter(|r| r.body["status"] == "firing")
        .collect();
    assert_eq!(firing.len(), 1, "one notification per group");

    delete_triage(&ns, "esc").await;
    let all = sink
        .wait("/am", "the resolution", |r| {
            r.iter().any(|r| r.body["status"] == "resolved")
        })
        .await;
    let resolved = all.iter().find(|r| r.body["status"] == "resolved").unwrap();
    assert_eq!(resolved.body["alerts"][0]["labels"], *labels);
    assert_eq!(
        all.iter().filter(|r| r.body["status"] == "firing").count(),
        1,
        "the escalation was sent once"
    );
}

#[tokio::test]
async fn direct_targets_get_their_documented_payloads_and_secrets_stay_out_of_status() {
    let ns = TestNs::new("notify-direct").await;
    failing_pod(&ns).await;
    let sink = Sink::start(0).await;
    let (_dir, file) = config(&format!(
        r#"targets:
  - name: chat
    slack: {{webhookUrl: "{slack}"}}
  - name: oncall
    pagerduty: {{routingKey: "{ROUTING_KEY}", url: "{pd}"}}
  - name: audit
    webhook: {{url: "{hook}", signingKey: "{SIGNING_KEY}"}}
routes:
  - targets: [chat, oncall, audit]
    runbooks: [metering-token-exchange]
    actions: [Escalate]
    namespaces: ["{ns}"]
"#,
        slack = sink.url(SLACK_SECRET_PATH),
        pd = sink.url("/pd"),
        hook = sink.url("/hook"),
        ns = ns.name,
    ));
    let op = Operator::start(&ns, &["--notify-config-file", &file]);
    let t = escalate(&ns, "direct").await;
    let uid = t["metadata"]["uid"].as_str().unwrap().to_string();
    for target in ["chat", "oncall", "audit"] {
        wait_for_delivery(&ns, "direct", target, |d| d["result"] == "Delivered").await;
    }

    // Slack: fallback text and blocks within Slack's limits.
    let slack = &sink.received(SLACK_SECRET_PATH)[0].body;
    assert!(
        slack["text"].as_str().unwrap().contains("escalated"),
        "{slack}"
    );
    let blocks = slack["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= 150);
    let sections: Vec<&str> = blocks
        .iter()
        .filter(|b| b["type"] == "section")
        .map(|b| b["text"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(sections.len(), 3, "{slack}");
    assert!(sections[0].starts_with("*Why*"));
    assert!(
        sections[1].starts_with("*Next steps*\n1. "),
        "{}",
        sections[1]
    );
    assert!(sections[2].contains("Customers may see delays"));
    assert!(sections.iter().all(|s| s.chars().count() <= 3000));

    // PagerDuty: a trigger on the triage's UID.
    let pd = &sink.received("/pd")[0].body;
    assert_eq!(pd["routing_key"], ROUTING_KEY);
    assert_eq!(pd["event_action"], "trigger");
    assert_eq!(pd["dedup_key"], uid.as_str());
    assert_eq!(pd["payload"]["severity"], "critical");
    assert_eq!(pd["payload"]["source"], format!("{}/direct", ns.name));
    assert_eq!(pd["payload"]["class"], "RateLimited");
    assert_eq!(pd["payload"]["component"], "metering-token-exchange");
    assert_eq!(pd["payload"]["custom_details"]["team"], "troutbridge");
    assert!(
        pd["payload"]["summary"]
            .as_str()
            .unwrap()
            .contains("page troutbridge")
    );

    // The signed webhook: the body's fields, its signature and idempotency key.
    let hook = &sink.received("/hook")[0];
    assert_eq!(hook.header("content-type"), "application/json");
    let ts = hook.header("x-triage-timestamp");
    let now = jiff::Timestamp::now().as_second();
    assert!((now - ts.parse::<i64>().unwrap()).abs() < 120, "{ts}");
    let mut signed = ts.as_bytes().to_vec();
    signed.push(b'.');
    signed.extend_from_slice(&hook.raw);
    assert_eq!(
        hook.header("x-triage-signature"),
        format!("sha256={}", hmac_hex(SIGNING_KEY, &signed))
    );
    let b = &hook.body;
    assert_eq!(
        hook.header("idempotency-key"),
        format!("{}.firing", b["key"].as_str().unwrap())
    );
    assert_eq!(b["kind"], "Escalation");
    assert_eq!(b["event"], "firing");
    assert_eq!(
        b["triage"],
        json!({"name": "direct", "namespace": ns.name, "uid": uid})
    );
    assert_eq!(b["runbook"], "metering-token-exchange");
    assert_eq!(b["team"], "troutbridge");
    assert_eq!(b["category"], "RateLimited");
    assert_eq!(b["action"], "Escalate");
    assert!(b["nextSteps"].as_array().unwrap().len() >= 2);
    assert!(
        b["customerNotice"]["body"]
            .as_str()
            .unwrap()
            .contains("us-south")
    );
    assert_eq!(
        b["command"],
        format!("kubectl triage why direct -n {}", ns.name)
    );

    // No secret in status, Events or the operator's log.
    let status = wait_for_triage(&ns, "direct", DELIVERY, |t| Ok::<_, String>(t.clone())).await;
    let events = common::operator::events_for(&ns, "direct").await;
    for secret in [ROUTING_KEY, SIGNING_KEY, "slacksecretpath"] {
        assert!(!status.to_string().contains(secret), "{secret} in status");
        assert!(
            !events.iter().any(|e| e.contains(secret)),
            "{secret} in Events"
        );
        assert!(!op.output().contains(secret), "{secret} in the log");
    }

    // The end: PagerDuty resolves the same incident, the webhook says resolved, Slack too.
    delete_triage(&ns, "direct").await;
    let pd = sink.wait("/pd", "the resolve", |r| r.len() == 2).await;
    assert_eq!(
        pd[1].body,
        json!({"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": uid})
    );
    let hooks = sink.wait("/hook", "the resolution", |r| r.len() == 2).await;
    assert_eq!(hooks[1].body["event"], "resolved");
    assert_eq!(hooks[1].body["key"], hooks[0].body["key"]);
    assert_eq!(
        hooks[1].header("idempotency-key"),
        format!("{}.resolved", hooks[0].body["key"].as_str().unwrap())
    );
    let slack = sink
        .wait(SLACK_SECRET_PATH, "the resolution", |r| r.len() == 2)
        .await;
    assert!(
        slack[1].body["text"]
            .as_str()
            .unwrap()
            .starts_with("Resolved: ")
    );
}

#[tokio::test]
async fn a_failing_sink_is_retried_and_a_down_one_is_recorded_undelivered() {
    let ns = TestNs::new("notify-retry").await;
    failing_pod(&ns).await;
    let flaky = Sink::start(2).await;
    let down = format!("http://127.0.0.1:{}/hook", free_port());
    let (_dir, file) = config(&format!(
        r#"targets:
  - name: flaky
    webhook: {{url: "{flaky}", signingKey: "{SIGNING_KEY}"}}
  - name: down
    webhook: {{url: "{down}", signingKey: "{SIGNING_KEY}"}}
routes:
  - targets: [flaky, down]
retry: {{initialBackoff: 1s, maxBackoff: 2s, maxAttempts: 3}}
"#,
        flaky = flaky.url("/hook"),
    ));
    let op = Operator::start(&ns, &["--notify-config-file", &file]);
    // The triage completes whatever the sinks do.
    escalate(&ns, "retry").await;

    let d = wait_for_delivery(&ns, "retry", "flaky", |d| d["result"] == "Delivered").await;
    assert_eq!(d["attempts"], 3);
    let got = flaky.received("/hook");
    assert_eq!(got.len(), 3, "two failures and a success");
    let keys: BTreeSet<&str> = got.iter().map(|r| r.header("idempotency-key")).collect();
    assert_eq!(
        keys.len(),
        1,
        "every attempt carries the same key: {keys:?}"
    );

    let d = wait_for_delivery(&ns, "retry", "down", |d| d["result"] == "Undelivered").await;
    assert_eq!(d["attempts"], 3);
    let error = d["error"].as_str().unwrap();
    assert!(error.starts_with("connection failed"), "{error}");
    assert!(!error.contains("127.0.0.1"), "no URL in status: {error}");
    let phase = wait_for_phase(&ns, "retry", &["Escalated"], VERDICT).await;
    assert_eq!(phase["status"]["phase"], "Escalated");
    let events = common::operator::events_with(&ns, "retry", &["NotificationUndelivered"]).await;
    let undelivered: Vec<&String> = events
        .iter()
        .filter(|e| e.starts_with("NotificationUndelivered:"))
        .collect();
    assert_eq!(undelivered.len(), 1, "{events:?}");
    assert!(
        undelivered[0].contains(
            "Escalation firing to target down gave up after 3 attempts: connection failed"
        ),
        "{undelivered:?}"
    );
    assert!(!undelivered[0].contains("127.0.0.1"), "{undelivered:?}");

    let series = |target: &str, result: &str| {
        format!("alert_triage_notifications_total{{target=\"{target}\",result=\"{result}\"}}")
    };
    assert_eq!(op.metric(&series("flaky", "failed")).await, Some(2.0));
    assert_eq!(op.metric(&series("flaky", "delivered")).await, Some(1.0));
    assert_eq!(op.metric(&series("down", "failed")).await, Some(2.0));
    assert_eq!(op.metric(&series("down", "undelivered")).await, Some(1.0));
    assert_eq!(op.metric(&series("down", "delivered")).await, Some(0.0));
}

#[tokio::test]
async fn an_operator_killed_between_send_and_record_sends_the_same_key_again() {
    let ns = TestNs::new("notify-kill").await;
    failing_pod(&ns).await;
    let sink = Sink::start(0).await;
    let (_dir, file) = config(&format!(
        r#"targets:
  - name: oncall
    pagerduty: {{routingKey: "{ROUTING_KEY}", url: "{pd}"}}
  - name: audit
    webhook: {{url: "{hook}", signingKey: "{SIGNING_KEY}"}}
routes:
  - targets: [oncall, audit]
"#,
        pd = sink.url("/pd"),
        hook = sink.url("/hook"),
    ));
    let mut first = Operator::start_with_env(
        &ns,
        &["--notify-config-file", &file],
        &[("ATO_PAUSE_AT", "notify-sent")],
    );
    escalate(&ns, "kill").await;
    sink.wait("/pd", "the first page", |r| r.len() == 1).await;
    sink.wait("/hook", "the first post", |r| r.len() == 1).await;
    // Sent, not yet recorded: status still says Sending.
    let d = wait_for_delivery(&ns, "kill", "oncall", |d| d["result"] == "Sending").await;
    assert_eq!(d["attempts"], 1);
    first.kill();

    let _second = Operator::start(&ns, &["--notify-config-file", &file]);
    let d = wait_for_delivery(&ns, "kill", "oncall", |d| d["result"] == "Delivered").await;
    assert_eq!(d["attempts"], 2);
    wait_for_delivery(&ns, "kill", "audit", |d| d["result"] == "Delivered").await;
    let pd = sink.received("/pd");
    assert_eq!(pd.len(), 2, "sent again after the restart");
    assert_eq!(
        pd[0].body, pd[1].body,
        "the same event, the same dedup_key: one incident"
    );
    let hooks = sink.received("/hook");
    assert_eq!(hooks.len(), 2);
    assert_eq!(
        hooks[0].header("idempotency-key"),
        hooks[1].header("idempotency-key")
    );
    assert_eq!(hooks[0].body["key"], hooks[1].body["key"]);
    // And nothing more once recorded.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sink.received("/pd").len(), 2);
}

#[tokio::test]
async fn an_invalid_config_fails_the_start_with_its_error() {
    let ns = TestNs::new("notify-invalid").await;
    let (_dir, file) = config(&format!(
        "targets:\n  - name: audit\n    webhook: {{url: \"https://x.example/{SIGNING_KEY}\", signingKey: short}}\n"
    ));
    let mut op = Operator::start(&ns, &["--notify-config-file", &file]);
    op.wait_stopped(Duration::from_secs(30)).await;
    let log = op.output();
    assert!(
        log.contains(
            "notification config: target audit: webhook.signingKey must be at least 32 bytes"
        ),
        "{log}"
    );
    assert!(!log.contains(SIGNING_KEY), "{log}");
}

#[tokio::test]
async fn a_resolved_alert_ends_its_notification_and_the_end_is_recorded() {
    let ns = TestNs::new("notify-resolved").await;
    failing_pod(&ns).await;
    let sink = Sink::start(0).await;
    let (_dir, file) = config(&format!(
        "targets:\n  - name: audit\n    webhook: {{url: \"{}\", signingKey: \"{SIGNING_KEY}\"}}\nroutes:\n  - targets: [audit]\n    kinds: [Escalation]\n",
        sink.url("/hook")
    ));
    let _op = Operator::start(&ns, &["--notify-config-file", &file]);
    escalate(&ns, "ends").await;
    let firing = wait_for_delivery(&ns, "ends", "audit", |d| d["result"] == "Delivered").await;

    // A new generation is triaged again (the controller writes Gathering, then the verdict):
    // the same escalation stays sent, neither resolved nor paged again, and the controller's
    // writes leave the deliveries alone.
    let api: Api<DynamicObject> =
        Api::namespaced_with(ns.client.clone(), &ns.name, &triage_resource());
    api.patch(
        "ends",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"spec": {"window": "2h"}})),
    )
    .await
    .unwrap();
    let t = wait_for_triage(&ns, "ends", VERDICT, |t| {
        if t["status"]["observedGeneration"] == 2 && t["status"]["phase"] == "Escalated" {
            Ok(t.clone())
        } else {
            Err(format!("{}", t["status"]))
        }
    })
    .await;
    assert_eq!(t["status"]["evidence"]["window"], "2h");
    assert_eq!(t["status"]["notification"]["deliveries"], json!([firing]));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        sink.received("/hook").len(),
        1,
        "no resolve and no second page"
    );

    // What the intake writes when Alertmanager reports the alert resolved.
    let patch = json!({
        "apiVersion": "triage.dev/v1alpha1",
        "kind": "AlertTriage",
        "status": {"conditions": [{"type": "Resolved", "status": "True", "reason": "AlertResolved",
            "message": "resolved", "lastTransitionTime": jiff::Timestamp::now().to_string()}]},
    });
    api.patch_status(
        "ends",
        &kube::api::PatchParams::apply("alert-triage-operator-intake").force(),
        &kube::api::Patch::Apply(&patch),
    )
    .await
    .unwrap();

    let ended = wait_for_delivery(&ns, "ends", "audit", |d| {
        d["event"] == "Resolved" && d["result"] == "Delivered"
    })
    .await;
    assert_eq!(ended["key"], firing["key"]);
    assert_eq!(ended["attempts"], 1);
    let hooks = sink.wait("/hook", "the resolution", |r| r.len() == 2).await;
    assert_eq!(hooks[0].body["event"], "firing");
    assert_eq!(hooks[1].body["event"], "resolved");
    let t = wait_for_phase(&ns, "ends", &["Escalated"], VERDICT).await;
    assert!(
        t["status"]["notification"]["title"]
            .as_str()
            .unwrap()
            .contains("Customers may see delays"),
        "the controller's notice is kept beside them: {}",
        t["status"]
    );
}

#[tokio::test]
async fn a_proposal_awaiting_approval_is_announced_and_ended_by_the_approval() {
    let ns = TestNs::new("notify-approval").await;
    let pods = ns.deploy(&Workload::new("web", 3), DEPLOY).await;
    let healthy = || vec!["Worker metering started".to_string()];
    for (pod, lines) in pods.iter().zip([healthy(), network_failure(), healthy()]) {
        ns.attach_logs(
            pod.metadata.name.as_deref().unwrap(),
            "app",
            &PodLog::lines(lines),
            None,
        )
        .await;
    }
    let sink = Sink::start(0).await;
    let (_dir, file) = config(&format!(
        "targets:\n  - name: audit\n    webhook: {{url: \"{}\", signingKey: \"{SIGNING_KEY}\"}}\nroutes:\n  - targets: [audit]\n    kinds: [ApprovalRequest]\n",
        sink.url("/hook")
    ));
    // Operator-wide dry run: the approval is carried out as a record only.
    let _op = Operator::start(&ns, &["--notify-config-file", &file, "--dry-run"]);
    create_triage(&ns, metering_triage("net", "web")).await;
    let t = wait_for_phase(&ns, "net", &["AwaitingApproval"], VERDICT).await;
    let proposal = t["status"]["proposal"]["id"].as_str().unwrap().to_string();

    let asked = sink
        .wait("/hook", "the approval request", |r| r.len() == 1)
        .await;
    let b = &asked[0].body;
    assert_eq!(b["kind"], "ApprovalRequest");
    assert_eq!(b["event"], "firing");
    assert_eq!(b["proposal"], proposal.as_str());
    assert_eq!(b["action"], "DeletePod");
    let reason = b["reason"].as_str().unwrap();
    assert!(
        reason.contains("waits for approval")
            && reason.contains(pods[1].metadata.name.as_deref().unwrap()),
        "{reason}"
    );
    let d = wait_for_delivery(&ns, "net", "audit", |d| d["result"] == "Delivered").await;
    assert_eq!(d["kind"], "ApprovalRequest");

    let patch = json!({"spec": {"approval": {"proposal": proposal, "approvedBy": "alice"}}});
    let api: Api<DynamicObject> =
        Api::namespaced_with(ns.client.clone(), &ns.name, &triage_resource());
    api.patch(
        "net",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(patch),
    )
    .await
    .unwrap();
    let ended = sink
        .wait("/hook", "the request's end", |r| r.len() == 2)
        .await;
    assert_eq!(ended[1].body["event"], "resolved");
    assert_eq!(ended[1].body["key"], b["key"]);
    wait_for_delivery(&ns, "net", "audit", |d| {
        d["event"] == "Resolved" && d["result"] == "Delivered"
    })
    .await;
}

#[tokio::test]
async fn only_the_leader_notifies_and_the_next_one_picks_up_from_status() {
    let ns = TestNs::new("notify-leader").await;
    failing_pod(&ns).await;
    let sink = Sink::start(0).await;
    let (_dir, file) = config(&format!(
        "targets:\n  - name: oncall\n    pagerduty: {{routingKey: \"{ROUTING_KEY}\", url: \"{}\"}}\nroutes:\n  - targets: [oncall]\n",
        sink.url("/pd")
    ));
    let mut a = Operator::replica(&ns, "replica-a", &["--notify-config-file", &file]);
    a.wait_ready(Duration::from_secs(30)).await;
    eventually(Duration::from_secs(30), || async {
        match a.metric("alert_triage_leader").await {
            Some(1.0) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let b = Operator::replica(&ns, "replica-b", &["--notify-config-file", &file]);
    b.wait_ready(Duration::from_secs(30)).await;

    escalate(&ns, "lead").await;
    wait_for_delivery(&ns, "lead", "oncall", |d| d["result"] == "Delivered").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        sink.received("/pd").len(),
        1,
        "one page from the leader only"
    );
    let delivered = "alert_triage_notifications_total{target=\"oncall\",result=\"delivered\"}";
    assert_eq!(a.metric(delivered).await, Some(1.0));
    assert_eq!(b.metric(delivered).await, Some(0.0));

    // The follower takes over, reads what was delivered from status and pages nobody again;
    // the end is then its to send.
    a.kill();
    eventually(Duration::from_secs(30), || async {
        match b.metric("alert_triage_leader").await {
            Some(1.0) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        sink.received("/pd").len(),
        1,
        "no second page after the takeover"
    );
    delete_triage(&ns, "lead").await;
    let pd = sink.wait("/pd", "the resolve", |r| r.len() == 2).await;
    assert_eq!(pd[1].body["event_action"], "resolve");
    assert_eq!(pd[1].body["dedup_key"], pd[0].body["dedup_key"]);
    assert_eq!(b.metric(delivered).await, Some(1.0));
}

#[tokio::test]
async fn https_targets_are_verified_against_the_trusted_roots() {
    let ns = TestNs::new("notify-tls").await;
    failing_pod(&ns).await;
    // The test cluster's API server is an HTTPS endpoint with a certificate from the cluster's
    // own CA: trusted through SSL_CERT_FILE, the handshake succeeds and the server's answer (it
    // refuses an anonymous POST) is what fails the delivery.
    let kubeconfig = kube::config::Kubeconfig::read_from(&ns.cluster.kubeconfig).unwrap();
    let server = kubeconfig.clusters[0]
        .cluster
        .as_ref()
        .unwrap()
        .server
        .clone()
        .unwrap();
    let ca = ns.cluster.kubeconfig.parent().unwrap().join("pki/ca.crt");
    assert!(ca.is_file(), "{}", ca.display());
    let (_dir, file) = config(&format!(
        "targets:\n  - name: tls\n    webhook: {{url: \"{server}/notify-probe\", signingKey: \"{SIGNING_KEY}\"}}\nroutes:\n  - targets: [tls]\nretry: {{maxAttempts: 1}}\n"
    ));
    let mut op = Operator::start_with_env(
        &ns,
        &["--notify-config-file", &file],
        &[("SSL_CERT_FILE", ca.to_str().unwrap())],
    );
    escalate(&ns, "tls").await;
    let d = wait_for_delivery(&ns, "tls", "tls", |d| d["result"] == "Undelivered").await;
    let error = d["error"].as_str().unwrap();
    assert!(
        error == "HTTP 401" || error == "HTTP 403" || error == "HTTP 404",
        "the TLS handshake should have succeeded: {error}"
    );
    op.kill();

    // Without that trust the certificate is refused before anything is sent.
    let _op = Operator::start(&ns, &["--notify-config-file", &file]);
    escalate(&ns, "untrusted").await;
    let d = wait_for_delivery(&ns, "untrusted", "tls", |d| d["result"] == "Undelivered").await;
    let error = d["error"].as_str().unwrap();
    assert!(
        error.starts_with("connection failed") && error.contains("certificate"),
        "{error}"
    );
}

//! Core triage on the simulated cluster: the operator binary, a real kube-apiserver, pods on
//! kwok nodes and their logs served through the API. One test per runbook scenario.

mod common;

use std::time::Duration;

use common::operator::{Operator, create_triage, events_with, give_app_logs, wait_for_phase};
use common::{PodLog, TestNs, Workload};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{ListParams, PostParams};
use serde_json::{Value, json};

const DEPLOY: Duration = Duration::from_secs(90);
const VERDICT: Duration = Duration::from_secs(60);

const METERING_ALERT: &str =
    "bluemix.containers-kubernetes.armada-cluster_error_metering_token_exchange.us-south";

fn metering_failure(status: u16, detail: &str) -> Vec<String> {
    vec![
        "ErrorMeteringTokenExchangeFailure: Failed to prepare OpenShift license metering  IAM token exchange failure".to_string(),
        format!(
            r#"Wrapped Errors: ["The IAM token exchange request failed. ({status})","Failed to decode response ({status}): \"{detail}\"","invalid character 'A' looking for beginning of value"]"#
        ),
    ]
}

fn network_failure() -> Vec<String> {
    vec![
        "ErrorMeteringTokenExchangeFailure: Failed to prepare OpenShift license metering  IAM token exchange failure".to_string(),
        r#"Wrapped Errors: ["The IAM token exchange request failed.","Post \"https://iam.cloud.ibm.com/identity/token\": dial tcp 10.1.2.3:443: i/o timeout"]"#.to_string(),
    ]
}

fn healthy() -> Vec<String> {
    vec![
        "Worker metering started".to_string(),
        "OpenShift licences usage submitted".to_string(),
        "Worker metering stopped".to_string(),
    ]
}

fn repeat(lines: Vec<String>, times: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..times {
        out.extend(lines.iter().cloned());
    }
    out
}

/// Deploys `name` with one pod per log in `logs` and gives each pod (in name order) its log.
async fn workload_with_logs(ns: &TestNs, w: Workload, logs: Vec<Vec<String>>) -> Vec<Pod> {
    assert_eq!(w.replicas as usize, logs.len());
    let pods = ns.deploy(&w, DEPLOY).await;
    give_app_logs(ns, &pods, logs).await;
    pods
}

fn metering_triage(name: &str, selector_app: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "alert": {"name": METERING_ALERT, "labels": {"service": "armada-cluster", "region": "us-south"}},
            "target": {"selector": {"matchLabels": {"app": selector_app}}},
            "window": "1h"
        }
    })
}

fn pod_names(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect()
}

#[tokio::test]
async fn rate_limited_on_every_pod_escalates_and_names_related_services() {
    let ns = TestNs::new("rate-limited").await;
    let op = Operator::start(&ns, &[]);
    let limited = repeat(
        metering_failure(429, "ApiKey based rate limit for calls to /token"),
        20,
    );
    workload_with_logs(
        &ns,
        Workload::new("armada-cluster", 3),
        vec![limited.clone(), limited.clone(), limited.clone()],
    )
    .await;
    // Another service named by the runbook, hitting the same IAM rate limit.
    workload_with_logs(&ns, Workload::new("armada-api", 1), vec![limited.clone()]).await;
    create_triage(&ns, metering_triage("rl", "armada-cluster")).await;

    let t = wait_for_phase(&ns, "rl", &["Escalated"], VERDICT).await;
    let s = &t["status"];
    assert_eq!(s["runbook"], "metering-token-exchange");
    assert_eq!(s["classification"]["category"], "RateLimited");
    assert_eq!(s["classification"]["httpStatus"], 429);
    assert_eq!(s["classification"]["scope"], "AllPods");
    assert_eq!(s["recommendation"]["action"], "Escalate");
    assert_eq!(s["recommendation"]["team"], "troutbridge");
    assert!(s["proposal"].is_null());
    let related: Vec<&str> = s["evidence"]["relatedServices"]
        .as_array()
        .expect("relatedServices")
        .iter()
        .map(|r| r["service"].as_str().unwrap())
        .collect();
    assert_eq!(related, ["armada-api"]);
    assert_eq!(s["evidence"]["pods"].as_array().unwrap().len(), 3);
    assert!(
        s["notification"]["title"]
            .as_str()
            .unwrap()
            .contains("provisioning or deleting workers")
    );
    let events = events_with(&ns, "rl", &["Gathering", "Escalated"]).await;
    assert!(
        events.iter().any(|e| e.starts_with("Gathering")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e.starts_with("Escalated")),
        "{events:?}"
    );
    drop(op);
}

#[tokio::test]
async fn a_generation_is_triaged_once_even_across_a_restart() {
    let ns = TestNs::new("once").await;
    let first = Operator::start(&ns, &[]);
    let failing = repeat(
        metering_failure(401, "Provided API key could not be found"),
        3,
    );
    workload_with_logs(&ns, Workload::new("armada-cluster", 1), vec![failing]).await;
    create_triage(&ns, metering_triage("once", "armada-cluster")).await;
    wait_for_phase(&ns, "once", &["ApiKeyRotationRequired"], VERDICT).await;
    let before = events_with(&ns, "once", &["Gathering", "ApiKeyRotationRequired"]).await;
    // Our own status writes wake the controller again; none of them may triage again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        first.output().matches("\"triaged\"").count(),
        1,
        "{}",
        first.output()
    );
    drop(first);

    let second = Operator::start(&ns, &[]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Both operators log to the namespace's one file: over both runs, still only the first
    // one's triage.
    let log = std::fs::read_to_string(&second.log).expect("the operators' log");
    assert_eq!(
        log.matches("starting the AlertTriage controller").count(),
        2
    );
    assert_eq!(log.matches("\"triaged\"").count(), 1, "{log}");
    assert_eq!(
        events_with(&ns, "once", &[]).await,
        before,
        "a restart repeated Events"
    );
}

#[tokio::test]
async fn unauthorized_401_records_an_api_key_rotation() {
    let ns = TestNs::new("auth-401").await;
    let _op = Operator::start(&ns, &[]);
    let failing = repeat(
        metering_failure(401, "Provided API key could not be found"),
        5,
    );
    workload_with_logs(
        &ns,
        Workload::new("armada-cluster", 2),
        vec![failing.clone(), failing],
    )
    .await;
    create_triage(&ns, metering_triage("auth", "armada-cluster")).await;

    let t = wait_for_phase(&ns, "auth", &["ApiKeyRotationRequired"], VERDICT).await;
    let s = &t["status"];
    assert_eq!(s["classification"]["category"], "AuthFailure");
    assert_eq!(s["classification"]["httpStatus"], 401);
    assert_eq!(s["recommendation"]["action"], "RecordApiKeyRotation");
    assert_eq!(s["apiKeyRotation"]["required"], true);
    assert!(!s["apiKeyRotation"]["steps"].as_array().unwrap().is_empty());
    let conditions = s["conditions"].as_array().unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "ActionRequired" && c["status"] == "True")
    );
}

#[tokio::test]
async fn forbidden_403_in_a_plain_text_record_is_an_auth_failure() {
    let ns = TestNs::new("auth-403").await;
    let _op = Operator::start(&ns, &[]);
    let mut log = healthy();
    log.extend(metering_failure(403, "Forbidden"));
    log.extend(healthy());
    workload_with_logs(
        &ns,
        Workload::new("armada-billing", 2),
        vec![log, healthy()],
    )
    .await;
    create_triage(&ns, metering_triage("forbidden", "armada-billing")).await;

    let t = wait_for_phase(&ns, "forbidden", &["ApiKeyRotationRequired"], VERDICT).await;
    let s = &t["status"];
    assert_eq!(s["classification"]["category"], "AuthFailure");
    assert_eq!(s["classification"]["httpStatus"], 403);
    // One record: the Wrapped Errors line belongs to the failure line before it.
    let pods = s["evidence"]["pods"].as_array().unwrap();
    assert_eq!(pods[0]["matches"]["AuthFailure"], 1, "{pods:?}");
    let intermittency = &s["evidence"]["intermittency"];
    assert_eq!(intermittency["failures"], 1);
    // One failure between successes: metering succeeded before and after it, never between
    // two failures, so it is not intermittent (issue 15 changed this from true).
    assert_eq!(intermittency["intermittent"], false, "{intermittency:#}");
    assert!(
        ts_of(&intermittency["lastSuccessBefore"]) < ts_of(&intermittency["firstFailure"])
            && ts_of(&intermittency["firstSuccessAfter"]) > ts_of(&intermittency["lastFailure"]),
        "{intermittency:#}"
    );
}

#[tokio::test]
async fn network_failure_on_one_pod_of_three_proposes_deleting_exactly_that_pod() {
    let ns = TestNs::new("net-one").await;
    let _op = Operator::start(&ns, &[]);
    let pods = workload_with_logs(
        &ns,
        Workload::new("armada-cluster", 3),
        vec![healthy(), repeat(network_failure(), 10), healthy()],
    )
    .await;
    let sick = &pods[1];
    create_triage(&ns, metering_triage("net", "armada-cluster")).await;

    let t = wait_for_phase(&ns, "net", &["AwaitingApproval"], VERDICT).await;
    let s = &t["status"];
    assert_eq!(s["classification"]["category"], "NetworkFailure");
    assert_eq!(s["classification"]["scope"], "SinglePod");
    assert_eq!(s["recommendation"]["action"], "DeletePod");
    assert_eq!(s["proposal"]["action"], "DeletePod");
    assert_eq!(s["proposal"]["pod"], sick.metadata.name.as_deref().unwrap());
    assert_eq!(
        s["proposal"]["podUID"],
        sick.metadata.uid.as_deref().unwrap()
    );
    assert!(
        s["proposal"]["id"]
            .as_str()
            .unwrap()
            .starts_with("delete-pod-")
    );
    assert!(s["proposal"]["expiresAt"].is_string());

    // Nothing was deleted: the same three pods, same UIDs, none terminating.
    let now: Vec<Pod> = ns
        .pods()
        .list(&ListParams::default().labels("app=armada-cluster"))
        .await
        .unwrap()
        .items;
    assert_eq!(pod_names(&now), pod_names(&pods));
    assert!(now.iter().all(|p| p.metadata.deletion_timestamp.is_none()));
    let events = events_with(&ns, "net", &["AwaitingApproval"]).await;
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("AwaitingApproval") && e.contains("patch alerttriage net")),
        "{events:?}"
    );
}

#[tokio::test]
async fn network_failure_on_every_pod_escalates_without_a_proposal() {
    let ns = TestNs::new("net-all").await;
    let _op = Operator::start(&ns, &[]);
    let failing = repeat(network_failure(), 5);
    workload_with_logs(
        &ns,
        Workload::new("armada-cluster", 3),
        vec![failing.clone(), failing.clone(), failing],
    )
    .await;
    create_triage(&ns, metering_triage("net-all", "armada-cluster")).await;

    let t = wait_for_phase(&ns, "net-all", &["Escalated"], VERDICT).await;
    let s = &t["status"];
    assert_eq!(s["classification"]["category"], "NetworkFailure");
    assert_eq!(s["classification"]["scope"], "AllPods");
    assert_eq!(s["recommendation"]["action"], "Escalate");
    assert!(s["proposal"].is_null());
}

fn orchestrator_triage(name: &str, reason_code: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "alert": {
                "name": "ClusterSquadOrchestratorCallbackActionTimeErrors",
                "labels": {
                    "operation": "DeleteClientID",
                    "reason_code": reason_code,
                    "carrier_name": "stage-dal10-carrier103",
                    "region": "us-south",
                    "service": "armada-orchestrator"
                }
            },
            "target": {"selector": {"matchLabels": {"app": "armada-orchestrator"}}}
        }
    })
}

fn callback_line(callback: &str, reason: &str, controller: &str, msg: &str) -> String {
    json!({"level": "error", "callbackName": callback, "reasonCode": reason, "controllerID": controller, "msg": msg})
        .to_string()
}

#[tokio::test]
async fn client_id_not_authorized_fills_in_controller_ids_and_the_info_configmap() {
    let ns = TestNs::new("bxnim").await;
    let _op = Operator::start(&ns, &[]);
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "armada-info"},
        "data": {"MULTISHIFT_SRE_ACCOUNT_ID": "acct-1234", "MULTISHIFT_SRE_RESOURCE_GROUP_ID": "rg-5678"}
    }))
    .unwrap();
    ns.api::<ConfigMap>()
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let msg = "403 BXNIM0515E: You are not authorized to manage this Client ID.";
    let log = vec![
        callback_line("DeleteClientID", "ErrorUnclassified", "c0ffee01", msg),
        callback_line(
            "CreateClientID",
            "ErrorUnclassified",
            "deadbeef",
            "500 something else",
        ),
        callback_line("DeleteClientID", "ErrorUnclassified", "c0ffee02", msg),
    ];
    workload_with_logs(&ns, Workload::new("armada-orchestrator", 1), vec![log]).await;
    create_triage(&ns, orchestrator_triage("bx", "ErrorUnclassified")).await;

    let t = wait_for_phase(&ns, "bx", &["ApiKeyRotationRequired"], VERDICT).await;
    let s = &t["status"];
    assert_eq!(s["runbook"], "orchestrator-callback-errors");
    assert_eq!(s["classification"]["category"], "ClientIdNotAuthorized");
    assert_eq!(s["recommendation"]["action"], "RecordApiKeyRotation");
    let rotation = &s["apiKeyRotation"];
    assert_eq!(rotation["controllerIds"], json!(["c0ffee01", "c0ffee02"]));
    assert_eq!(rotation["account"], "acct-1234");
    assert_eq!(rotation["resourceGroup"], "rg-5678");
    let steps = rotation["steps"].to_string();
    assert!(steps.contains("ibmcloud target -c acct-1234"), "{steps}");
    assert!(steps.contains("ibmcloud target -g rg-5678"), "{steps}");
    assert!(steps.contains("--cluster c0ffee01"), "{steps}");
    assert!(
        rotation["followUp"]
            .to_string()
            .contains("Cleanup Client IDs")
    );
    assert_eq!(
        s["evidence"]["pods"][0]["matches"]["ClientIdNotAuthorized"],
        2
    );
}

#[tokio::test]
async fn an_unknown_orchestrator_error_escalates_to_troutbridge() {
    let ns = TestNs::new("orch-unknown").await;
    let _op = Operator::start(&ns, &[]);
    let log = vec![
        callback_line(
            "DeleteClientID",
            "ErrorUnclassified",
            "c1",
            "500 upstream exploded",
        ),
        callback_line(
            "DeleteClientID",
            "ErrorUnclassified",
            "c2",
            "500 upstream exploded",
        ),
    ];
    workload_with_logs(&ns, Workload::new("armada-orchestrator", 1), vec![log]).await;
    create_triage(&ns, orchestrator_triage("unk", "ErrorUnclassified")).await;

    let t = wait_for_phase(&ns, "unk", &["Escalated"], VERDICT).await;
    let s = &t["status"];
    assert_eq!(s["classification"]["category"], "Unclassified");
    assert_eq!(s["recommendation"]["action"], "Escalate");
    assert_eq!(s["recommendation"]["team"], "troutbridge");
}

#[tokio::test]
async fn no_matching_lines_is_no_evidence() {
    let ns = TestNs::new("no-evidence").await;
    let _op = Operator::start(&ns, &[]);
    workload_with_logs(
        &ns,
        Workload::new("armada-cluster", 2),
        vec![healthy(), healthy()],
    )
    .await;
    create_triage(&ns, metering_triage("quiet", "armada-cluster")).await;

    let t = wait_for_phase(&ns, "quiet", &["NoAction"], VERDICT).await;
    let s = &t["status"];
    assert_eq!(s["classification"]["category"], "NoEvidence");
    // Never "all clear": a person must look.
    let action_required = s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "ActionRequired")
        .cloned()
        .unwrap();
    assert_eq!(action_required["status"], "True", "{action_required}");
    assert_eq!(action_required["reason"], "NoEvidence");
    assert_eq!(s["classification"]["scope"], "NoPods");
    assert_eq!(s["recommendation"]["action"], "None");
    assert!(s["evidence"]["linesScanned"].as_u64().unwrap() >= 6);
}

#[tokio::test]
async fn an_unknown_runbook_is_reported_with_the_known_ids() {
    let ns = TestNs::new("unknown-runbook").await;
    let _op = Operator::start(&ns, &[]);
    let mut manifest = metering_triage("nope", "armada-cluster");
    manifest["spec"]["runbook"] = "no-such-runbook".into();
    create_triage(&ns, manifest).await;

    // Not "all clear": it waits for a spec it can work with, and says so the kstatus way.
    let t = wait_for_phase(&ns, "nope", &["Pending"], VERDICT).await;
    let stalled = t["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Stalled")
        .cloned()
        .expect("Stalled condition");
    assert_eq!(stalled["status"], "True");
    assert_eq!(stalled["reason"], "UnknownRunbook");
    let triaged = t["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Triaged")
        .cloned()
        .expect("Triaged condition");
    assert_eq!(triaged["status"], "False");
    assert_eq!(triaged["reason"], "UnknownRunbook");
    let message = triaged["message"].as_str().unwrap();
    assert!(
        message.contains("metering-token-exchange")
            && message.contains("orchestrator-callback-errors"),
        "{message}"
    );
    let events = events_with(&ns, "nope", &["UnknownRunbook"]).await;
    assert!(
        events.iter().any(|e| e.starts_with("UnknownRunbook")),
        "{events:?}"
    );
}

#[tokio::test]
async fn secrets_in_logs_reach_neither_status_nor_events_nor_the_operator_log() {
    let ns = TestNs::new("secrets").await;
    let op = Operator::start(&ns, &[]);
    let secrets = [
        "s3cr3tApiKeyValue0123456789abcdefABCDEF",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlc2lnbmF0dXJl",
        "hunter2password",
    ];
    let mut log = vec![
        format!(
            "ErrorMeteringTokenExchangeFailure: token exchange failed apikey={} Authorization: Bearer {}",
            secrets[0], secrets[1]
        ),
        format!(
            r#"Wrapped Errors: ["The IAM token exchange request failed. (401)","POST https://svc:{}@iam.example/identity/token"]"#,
            secrets[2]
        ),
    ];
    log.push(json!({"reasonCode": "ErrorMeteringTokenExchangeFailure", "apikey": secrets[0], "wrappedErrors": ["(401) unauthorized"]}).to_string());
    workload_with_logs(&ns, Workload::new("armada-cluster", 1), vec![log]).await;
    create_triage(&ns, metering_triage("sec", "armada-cluster")).await;

    let t = wait_for_phase(&ns, "sec", &["ApiKeyRotationRequired"], VERDICT).await;
    let samples = t["status"]["evidence"]["pods"][0]["samples"].to_string();
    assert!(
        samples.contains("ErrorMeteringTokenExchangeFailure"),
        "samples are kept, redacted: {samples}"
    );
    let status = t["status"].to_string();
    let events = events_with(&ns, "sec", &["ApiKeyRotationRequired"])
        .await
        .join("\n");
    let own_log = op.output();
    for secret in secrets {
        assert!(!status.contains(secret), "status leaks {secret}: {status}");
        assert!(!events.contains(secret), "Events leak {secret}: {events}");
        assert!(!own_log.contains(secret), "operator log leaks {secret}");
    }
}

#[tokio::test]
async fn malformed_objects_are_refused_by_the_api_server_naming_the_field() {
    let ns = TestNs::new("malformed").await;
    ns.cluster.install_crds();
    let base =
        json!({"alert": {"name": "x"}, "target": {"selector": {"matchLabels": {"app": "a"}}}});
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "empty alert name",
            json!({"alert": {"name": ""}}),
            "spec.alert.name",
        ),
        (
            "blank alert name",
            json!({"alert": {"name": "   "}}),
            "spec.alert.name",
        ),
        ("missing alert", json!({"dryRun": true}), "spec.alert"),
        (
            "window not a duration",
            json!({"window": "banana"}),
            "spec.window",
        ),
        ("window too long", json!({"window": "25h"}), "spec.window"),
        ("window too short", json!({"window": "30s"}), "spec.window"),
        (
            "approval without approvedBy",
            json!({"approval": {"proposal": "delete-pod-1"}}),
            "spec.approval.approvedBy",
        ),
        (
            "approval without proposal",
            json!({"approval": {"approvedBy": "alice"}}),
            "spec.approval.proposal",
        ),
        (
            "selector with a bad operator",
            json!({"target": {"selector": {"matchExpressions": [{"key": "app", "operator": "Like", "values": ["a"]}]}}}),
            "spec.target.selector.matchExpressions[0].operator",
        ),
        (
            "selector In without values",
            json!({"target": {"selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}}}),
            "spec.target.selector.matchExpressions[0]",
        ),
        (
            "selector that only excludes",
            json!({"target": {"selector": {"matchLabels": null, "matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}}}),
            "spec.target.selector",
        ),
        (
            "selector of NotIn and Exists",
            json!({"target": {"selector": {"matchLabels": null, "matchExpressions": [
                {"key": "zone", "operator": "NotIn", "values": ["a"]},
                {"key": "app", "operator": "Exists"}
            ]}}}),
            "target.selector must require at least one label",
        ),
        (
            "empty selector",
            json!({"target": {"selector": {"matchLabels": null}}}),
            "target.selector must require at least one label",
        ),
        (
            "selector with an invalid label key",
            json!({"target": {"selector": {"matchLabels": {"bad key!": "a"}}}}),
            "spec.target.selector.matchLabels",
        ),
    ];
    for (what, patch, field) in cases {
        let mut spec = base.clone();
        merge(&mut spec, &patch);
        if what == "missing alert" {
            spec.as_object_mut().unwrap().remove("alert");
        }
        let manifest = json!({"apiVersion": "triage.dev/v1alpha1", "kind": "AlertTriage", "metadata": {"name": "bad"}, "spec": spec});
        let file = std::env::temp_dir().join(format!("{}-bad.json", ns.name));
        std::fs::write(&file, manifest.to_string()).unwrap();
        let out = ns.kubectl(&["create", "-f", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: the API server accepted it");
        assert!(
            stderr.contains(field),
            "{what}: message does not name {field}: {stderr}"
        );
    }
    // And good ones are accepted, so the refusals above are about the fields: an `In` selects
    // positively as well as matchLabels does.
    let in_only = json!({"alert": {"name": "x"}, "target": {"selector": {"matchExpressions": [
        {"key": "app", "operator": "In", "values": ["a"]},
        {"key": "canary", "operator": "DoesNotExist"}
    ]}}});
    for (name, spec) in [("good", base), ("good-in", in_only)] {
        let ok = json!({"apiVersion": "triage.dev/v1alpha1", "kind": "AlertTriage", "metadata": {"name": name}, "spec": spec});
        let file = std::env::temp_dir().join(format!("{}-{name}.json", ns.name));
        std::fs::write(&file, ok.to_string()).unwrap();
        ns.kubectl_ok(&["create", "-f", file.to_str().unwrap()]);
    }
}

fn merge(into: &mut Value, patch: &Value) {
    match (into, patch) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

/// kstatus, as kubectl reads it: `kubectl wait --for=condition=Ready` returns once a verdict is
/// final, and a triage that cannot proceed is Stalled, never Ready.
#[tokio::test]
async fn kubectl_wait_tells_a_final_verdict_from_a_stalled_triage() {
    let ns = TestNs::new("kstatus-wait").await;
    let _op = Operator::start(&ns, &[]);
    workload_with_logs(
        &ns,
        Workload::new("armada-cluster", 2),
        vec![healthy(), healthy()],
    )
    .await;
    create_triage(&ns, metering_triage("quiet", "armada-cluster")).await;
    let mut stalled = metering_triage("nope", "armada-cluster");
    stalled["spec"]["runbook"] = "no-such-runbook".into();
    create_triage(&ns, stalled).await;
    let wait = |name: &str, condition: &str, timeout: &str| {
        ns.kubectl(&[
            "wait",
            &format!("--for=condition={condition}"),
            &format!("alerttriage/{name}"),
            &format!("--timeout={timeout}"),
        ])
    };
    let ready = wait("quiet", "Ready", "90s");
    assert!(ready.status.success(), "{}", common::show(&ready));
    let stuck = wait("nope", "Stalled", "90s");
    assert!(stuck.status.success(), "{}", common::show(&stuck));
    let never = wait("nope", "Ready", "3s");
    assert!(!never.status.success(), "a stalled triage reported Ready");
}

// ------------------------------------------------------------------------------------------------
// Verdicts that say exactly what the evidence shows (issue 15) and mixed evidence (issue 9).

fn ago(minutes: i64) -> Timestamp {
    Timestamp::now() - SignedDuration::from_mins(minutes)
}

/// One timed log: each line at its own time.
fn timed(lines: Vec<(Timestamp, String)>) -> PodLog {
    PodLog::timed(lines)
}

fn at_each(times: impl Iterator<Item = Timestamp>, lines: Vec<String>) -> Vec<(Timestamp, String)> {
    times
        .flat_map(|t| lines.iter().map(move |l| (t, l.clone())))
        .collect()
}

fn ts_of(v: &Value) -> Timestamp {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn metering_that_stopped_is_not_called_intermittent() {
    let ns = TestNs::new("stopped").await;
    let _op = Operator::start(&ns, &[]);
    let pods = ns.deploy(&Workload::new("armada-cluster", 2), DEPLOY).await;
    // Metering every minute for 30 minutes, then every attempt rate limited for 19 minutes.
    let mut lines = at_each(
        (20..50).rev().map(ago),
        vec!["Worker metering started".to_string()],
    );
    lines.extend(at_each(
        (1..20).rev().map(ago),
        metering_failure(429, "ApiKey based rate limit for calls to /token"),
    ));
    for p in &pods {
        ns.attach_logs(
            p.metadata.name.as_deref().unwrap(),
            "app",
            &timed(lines.clone()),
            None,
        )
        .await;
    }
    create_triage(&ns, metering_triage("stop", "armada-cluster")).await;

    let t = wait_for_phase(&ns, "stop", &["Escalated"], VERDICT).await;
    let i = &t["status"]["evidence"]["intermittency"];
    assert_eq!(i["intermittent"], false, "{i:#}");
    assert!(i["successesBetweenFailures"].is_null(), "{i:#}");
    assert!(i["succeedingPods"].is_null(), "{i:#}");
    let stopped = ts_of(&i["lastSuccessBefore"]);
    assert!(stopped < ts_of(&i["firstFailure"]), "{i:#}");
    assert!(i["firstSuccessAfter"].is_null(), "{i:#}");
    assert_eq!(i["pods"].as_array().unwrap().len(), 2, "{i:#}");
    let steps = t["status"]["recommendation"]["nextSteps"].to_string();
    assert!(
        steps.contains(&format!(
            "metering stopped at {} and has not succeeded since",
            stopped.strftime("%Y-%m-%dT%H:%M:%SZ")
        )),
        "{steps}"
    );
    assert!(!steps.contains("intermittent"), "{steps}");
}

#[tokio::test]
async fn an_old_alert_is_judged_on_its_own_window_and_a_fresh_one_up_to_now() {
    let ns = TestNs::new("window").await;
    let _op = Operator::start(&ns, &[]);
    let pods = ns.deploy(&Workload::new("armada-cluster", 1), DEPLOY).await;
    let started = ago(180);
    // Auth failures in the hour after the old alert started; rate limiting in the last 30
    // minutes, long after that hour.
    let mut lines = at_each(
        [10, 20, 30]
            .into_iter()
            .map(|m| started + SignedDuration::from_mins(m)),
        metering_failure(401, "Provided API key could not be found"),
    );
    lines.extend(at_each(
        (1..30).rev().map(ago),
        metering_failure(429, "ApiKey based rate limit for calls to /token"),
    ));
    ns.attach_logs(
        pods[0].metadata.name.as_deref().unwrap(),
        "app",
        &timed(lines),
        None,
    )
    .await;
    let with_start = |name: &str, start: Timestamp| {
        let mut m = metering_triage(name, "armada-cluster");
        m["spec"]["alert"]["startsAt"] = start.strftime("%Y-%m-%dT%H:%M:%SZ").to_string().into();
        m
    };
    let created = Timestamp::now();
    create_triage(&ns, with_start("old", started)).await;
    create_triage(&ns, with_start("fresh", ago(10))).await;

    let old = wait_for_phase(&ns, "old", &["ApiKeyRotationRequired"], VERDICT).await;
    let e = &old["status"]["evidence"];
    let start = ts_of(&old["spec"]["alert"]["startsAt"]);
    assert_eq!(
        ts_of(&e["since"]),
        start - SignedDuration::from_mins(5),
        "{e:#}"
    );
    assert_eq!(
        ts_of(&e["until"]),
        start + SignedDuration::from_hours(1),
        "{e:#}"
    );
    assert_eq!(e["window"], "1h");
    assert_eq!(e["matches"], json!({"AuthFailure": 3}), "{e:#}");
    assert_eq!(old["status"]["classification"]["category"], "AuthFailure");

    let fresh = wait_for_phase(&ns, "fresh", &["Escalated"], VERDICT).await;
    let e = &fresh["status"]["evidence"];
    assert_eq!(fresh["status"]["classification"]["category"], "RateLimited");
    let until = ts_of(&e["until"]);
    assert!(until >= created - SignedDuration::from_secs(1), "{e:#}");
    assert_eq!(
        ts_of(&e["since"]),
        until - SignedDuration::from_hours(1),
        "{e:#}"
    );
    assert_eq!(e["matches"], json!({"RateLimited": 29}), "{e:#}");
}

/// Two pods; the first restarted `mins` minutes ago, its previous container logged network
/// failures and the current one has logged clean since. Returns the pods, their names and the
/// restart time.
async fn restarted_pod(ns: &TestNs, mins: i64) -> (Vec<Pod>, Vec<String>, Timestamp) {
    let pods = ns.deploy(&Workload::new("armada-cluster", 2), DEPLOY).await;
    let names = pod_names(&pods);
    let restarted_at = ago(mins);
    ns.patch_pod_status(
        &names[0],
        json!({"containerStatuses": [{
            "name": "app", "image": "registry.invalid/ato/app:fake", "imageID": "", "ready": true,
            "restartCount": 1,
            "state": {"running": {"startedAt": restarted_at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                "finishedAt": restarted_at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()}},
        }]}),
    )
    .await;
    // The current container has logged clean since the restart; the one before it failed.
    let current = PodLog::lines(repeat(vec!["reconciling worker".to_string()], 16))
        .spread_over(Duration::from_secs(mins as u64 * 60));
    let previous = PodLog::lines(repeat(network_failure(), 5));
    ns.attach_logs(&names[0], "app", &current, Some(&previous))
        .await;
    ns.attach_logs(&names[1], "app", &PodLog::lines(healthy()), None)
        .await;
    (pods, names, restarted_at)
}

fn restart_note(name: &str, restarted_at: Timestamp) -> String {
    format!(
        "the failures of pod {name} are all in the container that ran before the restart at {}; the current container has been clean for",
        restarted_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    )
}

/// Restarted 2 minutes ago: too soon to call it recovered, so the deletion is still proposed,
/// and the approver is told about the restart where they approve.
#[tokio::test]
async fn failures_only_before_a_recent_restart_are_proposed_with_the_restart_named() {
    let ns = TestNs::new("restarted-recent").await;
    let _op = Operator::start(&ns, &[]);
    let (_, names, restarted_at) = restarted_pod(&ns, 2).await;
    create_triage(&ns, metering_triage("rst", "armada-cluster")).await;
    let t = wait_for_phase(&ns, "rst", &["AwaitingApproval"], VERDICT).await;
    let s = &t["status"];
    assert_eq!(s["proposal"]["pod"], names[0].as_str(), "{s:#}");
    let said = restart_note(&names[0], restarted_at);
    let asked = s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "ActionRequired")
        .unwrap();
    for text in [&s["recommendation"]["reason"], &asked["message"]] {
        assert!(text.as_str().unwrap().contains(&said), "{text}");
    }
}

#[tokio::test]
async fn failures_only_before_a_restart_name_the_restart_and_propose_no_deletion() {
    let ns = TestNs::new("restarted").await;
    let _op = Operator::start(&ns, &[]);
    let (pods, names, restarted_at) = restarted_pod(&ns, 15).await;
    create_triage(&ns, metering_triage("rst", "armada-cluster")).await;

    let t = wait_for_phase(&ns, "rst", &["NoAction"], VERDICT).await;
    let s = &t["status"];
    assert_eq!(s["classification"]["category"], "NetworkFailure");
    assert_eq!(s["classification"]["scope"], "SinglePod");
    assert_eq!(s["recommendation"]["action"], "None");
    assert!(s["proposal"].is_null(), "{s:#}");
    let said = restart_note(&names[0], restarted_at);
    for reason in [
        &s["classification"]["reason"],
        &s["recommendation"]["reason"],
    ] {
        assert!(reason.as_str().unwrap().contains(&said), "{reason}");
    }
    let pod = s["evidence"]["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == names[0].as_str())
        .unwrap();
    assert_eq!(pod["previousContainerMatches"], 5, "{pod:#}");
    assert!(pod["restartedAt"].is_string(), "{pod:#}");
    // Nothing was removed.
    let now: Vec<String> = ns
        .pods()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| p.metadata.uid.clone().unwrap())
        .collect();
    for p in &pods {
        assert!(now.contains(p.metadata.uid.as_ref().unwrap()));
    }
}

#[tokio::test]
async fn a_named_container_limits_the_read_and_the_evidence_says_which() {
    let ns = TestNs::new("container").await;
    let _op = Operator::start(&ns, &[]);
    let pods = ns
        .deploy(
            &Workload::new("armada-cluster", 1).containers(&["app", "sidecar"]),
            DEPLOY,
        )
        .await;
    let name = pods[0].metadata.name.clone().unwrap();
    ns.attach_logs(&name, "app", &PodLog::lines(healthy()), None)
        .await;
    ns.attach_logs(
        &name,
        "sidecar",
        &PodLog::lines(repeat(network_failure(), 3)),
        None,
    )
    .await;
    let mut m = metering_triage("named", "armada-cluster");
    m["spec"]["target"]["container"] = "app".into();
    create_triage(&ns, m).await;

    let t = wait_for_phase(&ns, "named", &["NoAction"], VERDICT).await;
    let s = &t["status"];
    assert_eq!(s["classification"]["category"], "NoEvidence");
    assert_eq!(s["evidence"]["containersRead"], json!(["app"]));
    assert_eq!(s["evidence"]["containersSkipped"], json!(["sidecar"]));
    let reason = s["classification"]["reason"].as_str().unwrap();
    assert!(
        reason
            .ends_with("Read container app only, as spec.target.container says; skipped sidecar."),
        "{reason}"
    );
}

#[tokio::test]
async fn mixed_evidence_keeps_every_count_and_the_runbooks_order_decides() {
    let ns = TestNs::new("mixed").await;
    let _op = Operator::start(&ns, &[]);
    let rate = || metering_failure(429, "ApiKey based rate limit for calls to /token");
    let mut first = rate();
    first.extend(metering_failure(401, "Provided API key could not be found"));
    let mut second = network_failure();
    second.extend(rate());
    let pods =
        workload_with_logs(&ns, Workload::new("armada-cluster", 2), vec![first, second]).await;
    create_triage(&ns, metering_triage("mix", "armada-cluster")).await;

    let t = wait_for_phase(&ns, "mix", &["ApiKeyRotationRequired"], VERDICT).await;
    let s = &t["status"];
    assert_eq!(s["classification"]["category"], "AuthFailure");
    assert_eq!(
        s["evidence"]["matches"],
        json!({"AuthFailure": 1, "RateLimited": 2, "NetworkFailure": 1})
    );
    let per_pod: Vec<Value> = pod_names(&pods)
        .iter()
        .map(|n| {
            s["evidence"]["pods"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == n.as_str())
                .unwrap()["matches"]
                .clone()
        })
        .collect();
    assert_eq!(
        per_pod,
        [
            json!({"AuthFailure": 1, "RateLimited": 1}),
            json!({"NetworkFailure": 1, "RateLimited": 1})
        ]
    );
    let reason = s["classification"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("mixed evidence: also 2 RateLimited, 1 NetworkFailure, which the runbook ranks below AuthFailure"),
        "{reason}"
    );
}

//! The Argo CD health check (`charts/alert-triage-operator/argocd/health.lua`) run with Lua 5.1,
//! as Argo CD runs it, against AlertTriages captured from the operator (`tests/fixtures/argocd/`)
//! and against live ones on the local cluster.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::operator::{Operator, create_triage, give_app_logs, triage_resource, wait_for_phase};
use common::scenario::{metering_triage, network_failure};
use common::{PodLog, TestNs, Workload, show};
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn script() -> PathBuf {
    repo().join("charts/alert-triage-operator/argocd/health.lua")
}

/// Debian's Lua 5.1 (`scripts/tools.sh lua` installs it); `ATO_TEST_LUA` overrides.
fn lua() -> PathBuf {
    std::env::var_os("ATO_TEST_LUA")
        .map(PathBuf::from)
        .unwrap_or_else(|| "lua5.1".into())
}

/// A JSON value as a Lua table constructor, as Argo CD hands the object to the script
/// (arrays from 1, null as nil).
fn to_lua(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let mut out = String::from("\"");
            for b in s.bytes() {
                match b {
                    b'"' | b'\\' => {
                        out.push('\\');
                        out.push(b as char);
                    }
                    0x20..=0x7e => out.push(b as char),
                    _ => out.push_str(&format!("\\{b}")),
                }
            }
            out.push('"');
            out
        }
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(to_lua).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("[{}] = {}", to_lua(&Value::String(k.clone())), to_lua(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Runs the health script on `obj`: (status, message).
fn health(obj: &Value) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let runner = dir.path().join("run.lua");
    std::fs::write(
        &runner,
        format!(
            "obj = {}\nlocal hs = dofile({})\nio.write(hs.status, \"\\n\", hs.message or \"\")\n",
            to_lua(obj),
            to_lua(&Value::String(script().to_string_lossy().into_owned()))
        ),
    )
    .unwrap();
    let out = Command::new(lua())
        .arg(&runner)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running {} (scripts/tools.sh lua installs lua5.1): {e}",
                lua().display()
            )
        });
    assert!(
        out.status.success(),
        "the health script failed:\n{}",
        show(&out)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (status, message) = text.split_once('\n').unwrap_or((&text, ""));
    (status.to_string(), message.to_string())
}

fn fixture(name: &str) -> Value {
    let path = repo().join("tests/fixtures/argocd").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn expect(obj: &Value, what: &str, status: &str, message_has: &str) {
    let (got, message) = health(obj);
    assert_eq!(got, status, "{what}: {message}");
    assert!(
        message.contains(message_has),
        "{what}: {message_has:?} not in {message:?}"
    );
}

#[test]
fn captured_triages_map_to_argo_cd_health() {
    for (file, status, says) in [
        (
            "awaiting-approval.json",
            "Suspended",
            "waits for approval until ",
        ),
        ("remediated.json", "Healthy", "Remediated (NetworkFailure)"),
        ("remediation-failed.json", "Degraded", "Remediation Failed"),
        ("escalated.json", "Healthy", "Escalated (RateLimited)"),
        (
            "api-key-rotation.json",
            "Healthy",
            "ApiKeyRotationRequired (AuthFailure)",
        ),
        ("no-evidence.json", "Healthy", "NoAction (NoEvidence)"),
        ("unknown-runbook.json", "Healthy", "NoAction"),
        ("kstatus-stalled.json", "Degraded", "UnknownRunbook: "),
        ("kstatus-ready.json", "Healthy", "Escalated (RateLimited)"),
        (
            "kstatus-reconciling.json",
            "Progressing",
            "Gathering: gathering evidence",
        ),
        (
            "kstatus-unverified.json",
            "Degraded",
            "Remediation Unverified",
        ),
    ] {
        expect(&fixture(file), file, status, says);
    }
}

#[test]
fn what_the_status_does_not_say_yet_is_progressing() {
    let mut obj = fixture("escalated.json");
    obj.as_object_mut().unwrap().remove("status");
    expect(&obj, "no status", "Progressing", "Waiting for the operator");

    let mut obj = fixture("escalated.json");
    obj["metadata"]["generation"] = json!(5);
    expect(&obj, "older status", "Progressing", "generation 5");

    // A Stalled condition of an older generation is stale and decides nothing.
    let mut obj = fixture("kstatus-stalled.json");
    obj["metadata"]["generation"] = json!(7);
    obj["status"]["observedGeneration"] = json!(7);
    let (status, _) = health(&obj);
    assert_ne!(status, "Degraded");
}

#[test]
fn the_argocd_cm_snippet_carries_the_script() {
    let script = std::fs::read_to_string(script()).unwrap();
    let path = repo().join("charts/alert-triage-operator/argocd/argocd-cm-patch.yaml");
    let patch: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        patch["data"]["resource.customizations.health.triage.dev_AlertTriage"].as_str(),
        Some(script.as_str()),
        "{} must hold health.lua as it is",
        path.display()
    );
}

/// The README's command applies the snippet to an argocd-cm (here one in a test namespace).
#[tokio::test]
async fn the_snippet_patches_an_argocd_cm() {
    let ns = TestNs::new("argocd-cm").await;
    ns.kubectl_ok(&[
        "create",
        "configmap",
        "argocd-cm",
        "--from-literal=url=https://argo.example",
    ]);
    let patch = repo().join("charts/alert-triage-operator/argocd/argocd-cm-patch.yaml");
    ns.kubectl_ok(&[
        "patch",
        "configmap",
        "argocd-cm",
        "--patch-file",
        &patch.to_string_lossy(),
    ]);
    let cm: Value =
        serde_json::from_str(&ns.kubectl_ok(&["get", "configmap", "argocd-cm", "-o", "json"]))
            .unwrap();
    assert_eq!(cm["data"]["url"], "https://argo.example");
    assert_eq!(
        cm["data"]["resource.customizations.health.triage.dev_AlertTriage"].as_str(),
        Some(std::fs::read_to_string(script()).unwrap().as_str())
    );
}

async fn live(ns: &TestNs, name: &str) -> Value {
    let api: Api<DynamicObject> =
        Api::namespaced_with(ns.client.clone(), &ns.name, &triage_resource());
    serde_json::to_value(api.get(name).await.unwrap()).unwrap()
}

/// Caught while it gathers (the operator paused right after recording it): kstatus
/// `Reconciling=True`, and Argo CD sees Progressing. Too brief to catch without the pause.
#[tokio::test]
async fn a_triage_being_gathered_is_reconciling_and_progressing() {
    let ns = TestNs::new("argocd-gathering").await;
    let op = Operator::start_with_env(&ns, &[], &[("ATO_PAUSE_AT", "while-gathering")]);
    create_triage(&ns, metering_triage("quiet", "armada-cluster")).await;
    op.wait_for_pause(Duration::from_secs(60)).await;
    let t = live(&ns, "quiet").await;
    assert_eq!(t["status"]["phase"], "Gathering", "{}", t["status"]);
    let reconciling = t["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Reconciling")
        .cloned()
        .unwrap_or_default();
    assert_eq!(reconciling["status"], "True", "{}", t["status"]);
    // The fixture kstatus-reconciling.json is this object as captured (see its README).
    if std::env::var_os("ATO_CAPTURE_FIXTURE").is_some() {
        let mut t = t.clone();
        t["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("managedFields");
        println!("{}", serde_json::to_string_pretty(&t).unwrap());
    }
    expect(
        &t,
        "gathering",
        "Progressing",
        "Gathering: gathering evidence",
    );
}

/// What the operator writes today, read back from the API server: Progressing before the
/// operator has looked, Suspended while a proposal waits, Healthy once remediated.
#[tokio::test]
async fn live_triages_move_from_progressing_to_suspended_to_healthy() {
    let ns = TestNs::new("argocd-live").await;
    ns.cluster.install_crds();
    let web = ns
        .deploy(&Workload::new("web", 3), Duration::from_secs(90))
        .await;
    let healthy = vec!["Worker metering started".to_string()];
    give_app_logs(&ns, &web, vec![healthy.clone(), network_failure(), healthy]).await;
    create_triage(&ns, metering_triage("net", "web")).await;
    expect(
        &live(&ns, "net").await,
        "before the operator",
        "Progressing",
        "Waiting",
    );

    let _op = Operator::start(&ns, &[]);
    let t = wait_for_phase(&ns, "net", &["AwaitingApproval"], Duration::from_secs(60)).await;
    expect(
        &t,
        "awaiting approval",
        "Suspended",
        &web[1].metadata.name.clone().unwrap(),
    );
    // The replacement's log, so verification can read it.
    let _logs = ns.serve_logs_to_new_pods(
        "app=web",
        &web,
        "app",
        PodLog::lines(vec!["Worker metering started".to_string()]),
        Duration::from_secs(90),
    );
    let approval = json!({"spec": {"approval": {"proposal": t["status"]["proposal"]["id"], "approvedBy": "alice"}}});
    Api::<DynamicObject>::namespaced_with(ns.client.clone(), &ns.name, &triage_resource())
        .patch("net", &PatchParams::default(), &Patch::Merge(&approval))
        .await
        .unwrap();
    let t = wait_for_phase(&ns, "net", &["Remediated"], Duration::from_secs(90)).await;
    expect(&t, "remediated", "Healthy", "Remediated (NetworkFailure)");
}

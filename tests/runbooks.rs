//! Runbooks as resources on the simulated cluster: a ClusterRunbook of the project's example
//! (crash-looping pods, categories of its own) triages pods end to end, from their logs and
//! from their status alone (an OOM kill leaves no log line), a namespaced Runbook
//! overrides it in its namespace only, an invalid runbook says why in its status and is not
//! used, an edit reaches the next triage without a restart, and a Runbook never reaches beyond
//! its namespace.
//!
//! ClusterRunbooks are shared by every test on the cluster, so each test gives its own a unique
//! id and name and names it in `spec.runbook`.

mod common;

use std::time::Duration;

use common::operator::{
    Operator, create_triage, give_app_logs, run_args, wait_for_phase, wait_for_triage,
};
use common::{DeleteOnDrop, PodLog, TestNs, Workload, eventually};
use kube::Api;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const DEPLOY: Duration = Duration::from_secs(90);
const VERDICT: Duration = Duration::from_secs(60);
const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/runbooks/crash-loop.yaml"
);

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "triage.dev".into(),
        version: "v1alpha1".into(),
        api_version: "triage.dev/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// The example ClusterRunbook as JSON, with `id` (also its name).
fn example(id: &str) -> Value {
    let text = std::fs::read_to_string(EXAMPLE).expect("the example runbook");
    let mut doc: Value = serde_yaml::from_str(&text).expect("the example is YAML");
    doc["metadata"] = json!({"name": id});
    doc["spec"]["id"] = id.into();
    doc
}

/// The same runbook as a namespaced Runbook whose categories are renamed with `prefix`.
fn namespaced(mut doc: Value, prefix: &str) -> Value {
    doc["kind"] = "Runbook".into();
    for rule in doc["spec"]["categories"].as_array_mut().unwrap() {
        let name = rule["category"].as_str().unwrap().to_string();
        rule["category"] = format!("{prefix}{name}").into();
    }
    doc
}

/// A runbook id no other test uses: the test's namespace is unique.
fn unique(ns: &TestNs) -> String {
    format!("rb-{}", ns.name)
}

async fn create_cluster_runbook(ns: &TestNs, doc: &Value) -> DeleteOnDrop {
    ns.cluster.install_crds();
    let api: Api<DynamicObject> = Api::all_with(
        ns.client.clone(),
        &resource("ClusterRunbook", "clusterrunbooks"),
    );
    let obj: DynamicObject = serde_json::from_value(doc.clone()).unwrap();
    api.create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("creating the ClusterRunbook: {e}"));
    ns.cluster
        .delete_on_drop("clusterrunbook", doc["metadata"]["name"].as_str().unwrap())
}

fn runbooks(ns: &TestNs) -> Api<DynamicObject> {
    Api::namespaced_with(
        ns.client.clone(),
        &ns.name,
        &resource("Runbook", "runbooks"),
    )
}

async fn create_runbook(ns: &TestNs, doc: &Value) {
    ns.cluster.install_crds();
    let obj: DynamicObject = serde_json::from_value(doc.clone()).unwrap();
    runbooks(ns)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("creating the Runbook: {e}"));
}

/// Waits until the object's status reports its current generation, and returns its Ready
/// condition.
async fn ready_condition(api: &Api<DynamicObject>, name: &str) -> Value {
    eventually(VERDICT, || async {
        let obj = api.get(name).await.map_err(|e| e.to_string())?;
        let obj = serde_json::to_value(&obj).unwrap();
        let status = &obj["status"];
        let ready = status["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
            .cloned();
        match ready {
            Some(c) if status["observedGeneration"] == obj["metadata"]["generation"] => Ok(c),
            _ => Err(format!("status {status}")),
        }
    })
    .await
}

/// Two crash-looping pods of `app` that ran out of memory.
async fn out_of_memory_pods(ns: &TestNs) {
    let pods = ns.deploy(&Workload::new("app", 2), DEPLOY).await;
    let dying = vec![
        "starting worker".to_string(),
        "FATAL: runtime: out of memory allocating 1048576 bytes".to_string(),
    ];
    give_app_logs(ns, &pods, vec![dying.clone(), dying]).await;
}

fn crash_triage(name: &str, runbook: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "alert": {"name": "KubePodCrashLooping", "labels": {"namespace": "x", "pod": "app-1"}},
            "runbook": runbook,
            "target": {"selector": {"matchLabels": {"app": "app"}}},
            "window": "30m"
        }
    })
}

/// An edit to a runbook manifest.
type Change = fn(&mut Value);

/// Waits until the triage's `Triaged` condition has `reason`, and returns the triage.
async fn triaged_with(ns: &TestNs, name: &str, reason: &str) -> Value {
    wait_for_triage(ns, name, VERDICT, |t| {
        let c = condition(t, "Triaged");
        if c["reason"] == reason {
            Ok(t.clone())
        } else {
            Err(format!("Triaged condition {c}"))
        }
    })
    .await
}

fn condition(t: &Value, kind: &str) -> Value {
    t["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_cluster_runbook_triages_pods_and_a_namespaced_runbook_overrides_it_in_its_namespace_only()
 {
    let plain = TestNs::new("rb-cluster").await;
    let overridden = TestNs::new("rb-override").await;
    let id = unique(&plain);
    let _cluster = create_cluster_runbook(&plain, &example(&id)).await;
    create_runbook(&overridden, &namespaced(example(&id), "Team")).await;
    let _a = Operator::start(&plain, &[]);
    let _b = Operator::start(&overridden, &[]);

    let clusterrunbooks = Api::<DynamicObject>::all_with(
        plain.client.clone(),
        &resource("ClusterRunbook", "clusterrunbooks"),
    );
    let ready = ready_condition(&clusterrunbooks, &id).await;
    assert_eq!(ready["status"], "True", "{ready}");
    assert_eq!(ready["reason"], "Valid", "{ready}");
    // The printer column's list: the runbook's own categories, in order of precedence.
    let status =
        serde_json::to_value(clusterrunbooks.get(&id).await.unwrap()).unwrap()["status"].clone();
    assert_eq!(
        status["categories"],
        json!(["OutOfMemory", "OOMKilled", "BadConfig", "Crash"]),
        "{status}"
    );
    let ready = ready_condition(&runbooks(&overridden), &id).await;
    assert_eq!(ready["status"], "True", "{ready}");

    for ns in [&plain, &overridden] {
        out_of_memory_pods(ns).await;
        create_triage(ns, crash_triage("crash", &id)).await;
    }

    let t = wait_for_phase(&plain, "crash", &["Escalated"], VERDICT).await;
    let s = &t["status"];
    assert_eq!(s["runbook"], id.as_str());
    assert_eq!(s["classification"]["category"], "OutOfMemory", "{s}");
    assert_eq!(s["classification"]["scope"], "AllPods");
    assert_eq!(s["recommendation"]["action"], "Escalate");
    assert_eq!(s["recommendation"]["team"], "platform");
    assert_eq!(
        s["runbookRef"],
        json!({"kind": "ClusterRunbook", "name": id, "generation": 1})
    );

    let t = wait_for_phase(&overridden, "crash", &["Escalated"], VERDICT).await;
    let s = &t["status"];
    assert_eq!(s["classification"]["category"], "TeamOutOfMemory", "{s}");
    assert_eq!(
        s["runbookRef"],
        json!({"kind": "Runbook", "namespace": overridden.name, "name": id, "generation": 1})
    );
}

#[tokio::test]
async fn an_invalid_runbook_says_which_field_and_the_triage_naming_it_stalls() {
    let ns = TestNs::new("rb-invalid").await;
    let mut doc = namespaced(example("broken"), "");
    doc["spec"]["categories"][0]["patterns"] = json!(["(unclosed"]);
    create_runbook(&ns, &doc).await;
    let _op = Operator::start(&ns, &[]);

    let ready = ready_condition(&runbooks(&ns), "broken").await;
    assert_eq!(ready["status"], "False", "{ready}");
    assert_eq!(ready["reason"], "Invalid", "{ready}");
    let message = ready["message"].as_str().unwrap();
    assert!(message.contains("categories[0].patterns"), "{message}");

    out_of_memory_pods(&ns).await;
    create_triage(&ns, crash_triage("uses-broken", "broken")).await;
    let t = triaged_with(&ns, "uses-broken", "InvalidRunbook").await;
    let message = condition(&t, "Triaged")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains(&format!("Runbook {}/broken", ns.name))
            && message.contains("categories[0].patterns"),
        "{message}"
    );
    assert_eq!(
        condition(&t, "Stalled")["status"],
        "True",
        "{}",
        t["status"]
    );
    assert!(
        t["status"]["evidence"].is_null(),
        "read nothing: {}",
        t["status"]
    );
    assert_eq!(t["status"]["runbookRef"]["kind"], "Runbook");

    // What the schema and CEL can check, the API server refuses before the operator sees it.
    let refusals: [(&str, Change, &str); 3] = [
        (
            "a category with spaces",
            |d| d["spec"]["categories"][0]["category"] = "out of memory".into(),
            "spec.categories[0].category",
        ),
        (
            "a window over 24h",
            |d| d["spec"]["window"] = "25h".into(),
            "window must be a duration between 1m and 24h",
        ),
        (
            "a pod deletion for every pod",
            |d| d["spec"]["categories"][0]["recommend"]["action"] = "DeletePod".into(),
            "DeletePod only in recommendIfSinglePod",
        ),
    ];
    for (what, change, says) in refusals {
        let mut bad = namespaced(example("bad"), "");
        change(&mut bad);
        let obj: DynamicObject = serde_json::from_value(bad).unwrap();
        let refused = runbooks(&ns)
            .create(&PostParams::default(), &obj)
            .await
            .expect_err(what);
        assert!(refused.to_string().contains(says), "{what}: {refused}");
    }
}

#[tokio::test]
async fn an_edited_runbook_is_used_by_the_next_triage_without_a_restart() {
    let ns = TestNs::new("rb-edit").await;
    create_runbook(&ns, &namespaced(example("crash"), "")).await;
    let _op = Operator::start(&ns, &[]);
    out_of_memory_pods(&ns).await;
    create_triage(&ns, crash_triage("before", "crash")).await;
    let before = wait_for_phase(&ns, "before", &["Escalated"], VERDICT).await;
    assert_eq!(
        before["status"]["classification"]["category"],
        "OutOfMemory"
    );

    // Out of memory now counts as a plain crash: the OutOfMemory rule goes.
    let patch = json!({"spec": {"categories": namespaced(example("crash"), "")["spec"]["categories"]
        .as_array().unwrap()[1..].to_vec()}});
    runbooks(&ns)
        .patch("crash", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("editing the Runbook");
    let ready = ready_condition(&runbooks(&ns), "crash").await;
    assert_eq!(ready["status"], "True", "{ready}");

    create_triage(&ns, crash_triage("after", "crash")).await;
    let after = wait_for_phase(&ns, "after", &["Escalated"], VERDICT).await;
    assert_eq!(
        after["status"]["classification"]["category"], "Crash",
        "{}",
        after["status"]
    );
    assert_eq!(after["status"]["runbookRef"]["generation"], 2);
    // A finished triage keeps the verdict of the generation it used.
    let api: Api<DynamicObject> = Api::namespaced_with(
        ns.client.clone(),
        &ns.name,
        &common::operator::triage_resource(),
    );
    let before = serde_json::to_value(api.get("before").await.unwrap()).unwrap();
    assert_eq!(
        before["status"]["classification"]["category"],
        "OutOfMemory"
    );
    assert_eq!(before["status"]["runbookRef"]["generation"], 1);
}

#[tokio::test]
async fn a_namespaced_runbook_never_reaches_another_namespace() {
    let home = TestNs::new("rb-home").await;
    let away = TestNs::new("rb-away").await;
    let id = unique(&home);
    create_runbook(&home, &namespaced(example(&id), "")).await;
    out_of_memory_pods(&away).await;
    let mut args = run_args(&home, &home.cluster.kubeconfig);
    let at = args.iter().position(|a| a == "--namespaces").unwrap() + 1;
    args[at] = format!("{},{}", home.name, away.name);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _op = Operator::start_raw(&home, &home.name, &args, &[]);
    ready_condition(&runbooks(&home), &id).await;

    // The home triage may not read the other namespace with its runbook.
    let mut reach = crash_triage("reach", &id);
    reach["spec"]["target"]["namespace"] = away.name.clone().into();
    create_triage(&home, reach).await;
    let t = triaged_with(&home, "reach", "CrossNamespaceTarget").await;
    assert!(
        t["status"]["evidence"].is_null(),
        "read nothing: {}",
        t["status"]
    );

    // A triage in the other namespace does not see the home namespace's runbook at all.
    create_triage(&away, crash_triage("borrow", &id)).await;
    let t = triaged_with(&away, "borrow", "UnknownRunbook").await;
    assert!(
        t["status"]["evidence"].is_null(),
        "read nothing: {}",
        t["status"]
    );
}

#[tokio::test]
async fn a_runbook_with_a_built_in_id_overrides_the_built_in_in_its_namespace() {
    let ns = TestNs::new("rb-builtin").await;
    let mut doc = namespaced(example("metering"), "");
    doc["spec"]["id"] = "metering-token-exchange".into();
    doc["spec"]["alerts"] = json!({"names": ["*error_metering_token_exchange*"]});
    create_runbook(&ns, &doc).await;
    let _op = Operator::start(&ns, &[]);
    ready_condition(&runbooks(&ns), "metering").await;
    out_of_memory_pods(&ns).await;
    // Chosen by the alert's name, as the built-in would be.
    let mut manifest = crash_triage("by-alert", "unused");
    manifest["spec"]["alert"] = json!({"name": "armada-cluster_error_metering_token_exchange"});
    manifest["spec"].as_object_mut().unwrap().remove("runbook");
    create_triage(&ns, manifest).await;
    let t = wait_for_phase(&ns, "by-alert", &["Escalated"], VERDICT).await;
    let s = &t["status"];
    assert_eq!(s["runbook"], "metering-token-exchange");
    assert_eq!(s["classification"]["category"], "OutOfMemory", "{s}");
    assert_eq!(
        s["runbookRef"],
        json!({"kind": "Runbook", "namespace": ns.name, "name": "metering", "generation": 1})
    );
}

/// The kernel killed one pod's container over its memory limit: its status says so and its
/// logs say nothing. The example's `OOMKilled` rule (pod state alone) classifies it, for that
/// pod only, and status shows what fit.
#[tokio::test]
async fn an_oom_killed_container_without_a_log_line_is_classified_from_its_status() {
    let ns = TestNs::new("rb-oomkilled").await;
    let id = unique(&ns);
    let _cluster = create_cluster_runbook(&ns, &example(&id)).await;
    let _op = Operator::start(&ns, &[]);
    let pods = ns.deploy(&Workload::new("app", 2), DEPLOY).await;
    let names: Vec<String> = pods
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    let finished = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_mins(1))
        .unwrap()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    ns.patch_pod_status(
        &names[0],
        json!({
            "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
            "containerStatuses": [{
                "name": "app", "image": "registry.invalid/ato/app:fake", "imageID": "",
                "ready": false, "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                    "finishedAt": finished}},
            }],
        }),
    )
    .await;
    let quiet = PodLog::lines(vec!["starting worker".to_string(); 3]);
    ns.attach_logs(&names[0], "app", &quiet, Some(&quiet)).await;
    ns.attach_logs(&names[1], "app", &quiet, None).await;
    create_triage(&ns, crash_triage("oom", &id)).await;

    let t = wait_for_phase(&ns, "oom", &["Escalated"], VERDICT).await;
    let s = &t["status"];
    assert_eq!(s["classification"]["category"], "OOMKilled", "{s:#}");
    assert_eq!(s["classification"]["scope"], "SinglePod", "{s:#}");
    assert_eq!(s["recommendation"]["action"], "Escalate");
    assert_eq!(s["recommendation"]["team"], "platform");
    let reason = s["recommendation"]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("1 of 2 pods ({})", names[0])),
        "{reason}"
    );
    let pods = s["evidence"]["pods"].as_array().unwrap();
    let killed = pods
        .iter()
        .find(|p| p["name"] == names[0].as_str())
        .unwrap();
    assert_eq!(
        killed["lastTermination"], "OOMKilled (exit 137)",
        "{killed:#}"
    );
    assert_eq!(killed["matches"], json!({"OOMKilled": 1}), "{killed:#}");
    assert!(
        killed["linesScanned"].as_u64().unwrap() > 0,
        "its logs were read and held no failure: {killed:#}"
    );
    assert!(
        killed["samples"]
            .as_array()
            .unwrap()
            .contains(&json!("pod state: lastTermination OOMKilled (exit 137)")),
        "{killed:#}"
    );
    let other = pods
        .iter()
        .find(|p| p["name"] == names[1].as_str())
        .unwrap();
    assert!(other["matches"].is_null(), "{other:#}");
}

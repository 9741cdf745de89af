//! Approval-gated pod remediation on the simulated cluster: the approve-and-evict path, every
//! refusal (each with nothing deleted), PodDisruptionBudgets, durable budgets, and real kills of
//! the operator at each step of an eviction.

mod common;

use std::process::Output;
use std::time::Duration;

use common::charted::Charted;
use common::operator::{
    BIN, LEDGER, Operator, create_triage, events_for, events_with, give_app_logs, release_binary,
    run_args, wait_for_phase, wait_for_triage,
};
use common::scenario::{metering_triage, network_failure};
use common::{APPROVER, PodLog, ServeLogs, TestNs, Workload, eventually};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{ListParams, PostParams};
use serde_json::{Value, json};

const DEPLOY: Duration = Duration::from_secs(90);
const VERDICT: Duration = Duration::from_secs(60);
const REMEDIATION: Duration = Duration::from_secs(90);

fn healthy() -> Vec<String> {
    vec![
        "Worker metering started".into(),
        "Worker metering stopped".into(),
    ]
}

/// Pods of a scenario: their names and UIDs, in name order.
#[derive(Debug, Clone, PartialEq)]
struct PodIds(Vec<(String, String)>);

fn ids(pods: &[Pod]) -> PodIds {
    PodIds(
        pods.iter()
            .map(|p| {
                (
                    p.metadata.name.clone().unwrap(),
                    p.metadata.uid.clone().unwrap(),
                )
            })
            .collect(),
    )
}

async fn live_pods(ns: &TestNs, app: &str) -> Vec<Pod> {
    let mut pods: Vec<Pod> = ns
        .pods()
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    pods
}

/// Three pods of Deployment `web`, the middle one failing; returns the pods and the proposal.
async fn proposal_for_one_failing_pod(ns: &TestNs, dry_run: bool) -> (Vec<Pod>, Value) {
    let pods = ns.deploy(&Workload::new("web", 3), DEPLOY).await;
    give_app_logs(ns, &pods, vec![healthy(), network_failure(), healthy()]).await;
    let mut manifest = metering_triage("net", "web");
    manifest["spec"]["dryRun"] = dry_run.into();
    create_triage(ns, manifest).await;
    let t = wait_for_phase(ns, "net", &["AwaitingApproval"], VERDICT).await;
    assert_eq!(
        t["status"]["proposal"]["pod"],
        pods[1].metadata.name.as_deref().unwrap()
    );
    (pods, t["status"]["proposal"].clone())
}

/// The failing pod's two siblings (of the three) report not Ready.
async fn siblings_not_ready(ns: &TestNs, pods: &[Pod]) {
    for sibling in [&pods[0], &pods[2]] {
        ns.patch_pod_status(
            sibling.metadata.name.as_deref().unwrap(),
            json!({"conditions": [{"type": "Ready", "status": "False", "reason": "Test"}]}),
        )
        .await;
    }
}

/// A PodDisruptionBudget over `web` that allows no eviction of its three pods.
async fn pdb_allowing_no_eviction(ns: &TestNs) {
    let pdb: k8s_openapi::api::policy::v1::PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"minAvailable": 3, "selector": {"matchLabels": {"app": "web"}}}
    }))
    .unwrap();
    ns.api().create(&PostParams::default(), &pdb).await.unwrap();
}

/// A merge patch of triage `name`, as admin or as `user`; the output, to check.
fn patch_triage(ns: &TestNs, user: Option<&str>, name: &str, patch: &Value) -> Output {
    let user = user.map(|u| format!("--as={u}"));
    let patch = patch.to_string();
    let mut args: Vec<&str> = user.iter().map(String::as_str).collect();
    args.extend([
        "patch",
        "alerttriage",
        name,
        "--type",
        "merge",
        "-p",
        &patch,
    ]);
    ns.kubectl(&args)
}

fn approval(proposal: &str, by: &str) -> Value {
    json!({"spec": {"approval": {"proposal": proposal, "approvedBy": by}}})
}

/// Admin sets the approval in `by`'s name (no approval policy is installed for these tests).
fn approve(ns: &TestNs, name: &str, proposal: &str, by: &str) {
    let out = patch_triage(ns, None, name, &approval(proposal, by));
    assert!(out.status.success(), "approving: {out:?}");
}

/// The attack tests run the operator as the chart installs it: its ServiceAccount, RBAC and
/// admission policies (approvals made by the approver in person, as the policy demands). Leader
/// election is off so that a test can race two replicas or replace one at once.
async fn chart(ns: &TestNs) -> Charted {
    Charted::install(ns, APPROVER, &["leaderElection.enabled=false"]).await
}

/// `by` approves, as themself (the approval policy refuses an approval in another's name).
fn approve_in_person(ns: &TestNs, name: &str, proposal: &str, by: &str) {
    let out = patch_triage(ns, Some(by), name, &approval(proposal, by));
    assert!(out.status.success(), "{by} approving: {out:?}");
}

fn condition<'a>(t: &'a Value, type_: &str) -> &'a Value {
    t["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

/// Waits until the Remediated condition says `reason` for the triage's current generation.
async fn wait_for_refusal(ns: &TestNs, name: &str, reason: &str) -> Value {
    wait_for_triage(ns, name, VERDICT, |t| {
        let c = condition(t, "Remediated");
        let current = t["status"]["observedGeneration"] == t["metadata"]["generation"];
        if current && c["reason"] == reason && c["status"] == "False" {
            Ok(t.clone())
        } else {
            Err(format!("Remediated condition {c}; status {}", t["status"]))
        }
    })
    .await
}

/// The refusal is visible as a condition and an Event, and nothing was deleted.
async fn assert_refused_and_untouched(
    ns: &TestNs,
    reason: &str,
    before: &PodIds,
    app: &str,
) -> Value {
    let t = wait_for_refusal(ns, "net", reason).await;
    let events = events_with(ns, "net", &[reason]).await;
    assert!(
        !events.iter().any(|e| e.starts_with("Evicted")),
        "{events:?}"
    );
    assert_eq!(
        &ids(&live_pods(ns, app).await),
        before,
        "pods changed after a refusal"
    );
    assert!(
        t["status"]["remediation"].is_null() || t["status"]["remediation"]["outcome"] == "DryRun"
    );
    t
}

async fn write_ledger(ns: &TestNs, entries: Value) {
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": LEDGER},
        "data": {"deletions.json": entries.to_string()}
    }))
    .unwrap();
    ns.api::<ConfigMap>()
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
}

fn ledger_entry(workload: &str, mins_ago: i64) -> Value {
    json!({
        "at": (Timestamp::now() - SignedDuration::from_mins(mins_ago)).to_string(),
        "workload": workload,
        "proposal": format!("delete-pod-{workload}-{mins_ago}"),
        "podUID": "00000000-0000-0000-0000-000000000000",
        "triage": "elsewhere/t"
    })
}

/// Where an operator keeps its ledger: [`LEDGER`] in the test namespace for
/// [`Operator::start`], the chart's in its release namespace for a [`Charted`] one.
struct LedgerAt {
    namespace: String,
    name: String,
}

fn ledger_in(ns: &TestNs) -> LedgerAt {
    LedgerAt {
        namespace: ns.name.clone(),
        name: LEDGER.to_string(),
    }
}

fn chart_ledger(chart: &Charted) -> LedgerAt {
    let (namespace, name) = chart.ledger();
    LedgerAt { namespace, name }
}

async fn ledger_entries(ns: &TestNs, at: &LedgerAt) -> Vec<Value> {
    let cm = kube::Api::<ConfigMap>::namespaced(ns.client.clone(), &at.namespace)
        .get(&at.name)
        .await
        .expect("ledger ConfigMap");
    serde_json::from_str(&cm.data.unwrap()["deletions.json"]).unwrap()
}

/// Waits for the remediation to end and checks it succeeded exactly once; returns the triage.
async fn expect_remediated(ns: &TestNs, pods: &[Pod], ledger: &LedgerAt) -> Value {
    let _logs = serve_replacement_logs(ns, pods);
    let t = wait_for_phase(ns, "net", &["Remediated", "RemediationFailed"], REMEDIATION).await;
    assert_eq!(t["status"]["phase"], "Remediated", "{}", t["status"]);
    assert_remediated_once(ns, &t, pods, ledger).await;
    t
}

/// Simulated pods have no log: a replacement of `web` gets a healthy one, so verification can
/// read it (unreadable logs make the outcome Unverified, not Succeeded).
fn serve_replacement_logs(ns: &TestNs, pods: &[Pod]) -> ServeLogs {
    ns.serve_logs_to_new_pods(
        "app=web",
        pods,
        "app",
        PodLog::lines(healthy()),
        REMEDIATION,
    )
}

/// After a successful remediation: the approved pod (and only it) was replaced, the record is
/// complete, and exactly one eviction happened.
async fn assert_remediated_once(ns: &TestNs, t: &Value, before: &[Pod], ledger: &LedgerAt) {
    let sick = &before[1];
    let r = &t["status"]["remediation"];
    assert_eq!(r["outcome"], "Succeeded", "{r}");
    assert_eq!(r["pod"], sick.metadata.name.as_deref().unwrap());
    assert_eq!(r["podUID"], sick.metadata.uid.as_deref().unwrap());
    assert_eq!(r["approvedBy"], "alice");
    for field in ["startedAt", "evictedAt", "finishedAt", "replacement"] {
        assert!(r[field].is_string(), "remediation.{field} missing: {r}");
    }
    let now = live_pods(ns, "web").await;
    assert_eq!(now.len(), 3);
    let now_uids: Vec<_> = now
        .iter()
        .map(|p| p.metadata.uid.clone().unwrap())
        .collect();
    assert!(
        !now_uids.contains(sick.metadata.uid.as_ref().unwrap()),
        "the sick pod is still there"
    );
    for healthy in [&before[0], &before[2]] {
        assert!(
            now_uids.contains(healthy.metadata.uid.as_ref().unwrap()),
            "a healthy pod was removed"
        );
    }
    let replacement = r["replacement"].as_str().unwrap();
    assert!(
        now.iter()
            .any(|p| p.metadata.name.as_deref() == Some(replacement)),
        "replacement {replacement} is gone"
    );
    let events = events_for(ns, "net").await;
    let evictions = events.iter().filter(|e| e.starts_with("Evicted")).count();
    assert!(evictions <= 1, "evicted more than once: {events:?}");
    assert_eq!(
        ledger_entries(ns, ledger).await.len(),
        1,
        "one unit of budget spent"
    );
}

#[tokio::test]
async fn an_approved_proposal_evicts_that_pod_and_verifies_the_replacement() {
    let ns = TestNs::new("rem-e2e").await;
    let _op = Operator::start(&ns, &[]);
    let (pods, proposal) = proposal_for_one_failing_pod(&ns, false).await;
    approve(&ns, "net", proposal["id"].as_str().unwrap(), "alice");

    let t = expect_remediated(&ns, &pods, &ledger_in(&ns)).await;
    assert_eq!(condition(&t, "Remediated")["status"], "True");
    let events = events_with(&ns, "net", &["Remediating", "Evicted", "Remediated"]).await;
    for reason in ["Remediating", "Evicted", "Remediated"] {
        assert!(
            events.iter().any(|e| e.starts_with(reason)),
            "no {reason} Event: {events:?}"
        );
    }
    assert!(
        events
            .iter()
            .any(|e| e.contains("alice") && e.contains(proposal["id"].as_str().unwrap()))
    );
    // The evicted pod carries an Event naming the approver and the proposal.
    let pod_events: Vec<String> = ns
        .api::<k8s_openapi::api::events::v1::Event>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == pods[1].metadata.name.as_deref()
        })
        .map(|e| {
            format!(
                "{}: {}",
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default()
            )
        })
        .collect();
    assert!(
        pod_events
            .iter()
            .any(|e| e.starts_with("EvictedByAlertTriage") && e.contains("alice")),
        "{pod_events:?}"
    );
}

#[tokio::test]
async fn a_replacement_that_fails_the_same_way_fails_the_remediation() {
    let ns = TestNs::new("rem-relapse").await;
    let _op = Operator::start(&ns, &["--verify-settle", "10s"]);
    let (pods, proposal) = proposal_for_one_failing_pod(&ns, false).await;
    approve(&ns, "net", proposal["id"].as_str().unwrap(), "alice");
    // While the operator watches the Ready replacement, it starts failing like its predecessor.
    let replacement = wait_for_triage(
        &ns,
        "net",
        REMEDIATION,
        |t| match t["status"]["remediation"]["replacement"].as_str() {
            Some(r) => Ok(r.to_string()),
            None => Err(format!("{}", t["status"])),
        },
    )
    .await;
    // Written since the replacement started: spread over the last two seconds.
    let relapse = PodLog::lines(network_failure()).spread_over(Duration::from_secs(2));
    ns.attach_logs(&replacement, "app", &relapse, None).await;
    let t = wait_for_phase(
        &ns,
        "net",
        &["Remediated", "RemediationFailed"],
        REMEDIATION,
    )
    .await;
    assert_eq!(t["status"]["phase"], "RemediationFailed", "{}", t["status"]);
    let r = &t["status"]["remediation"];
    assert_eq!(r["outcome"], "Failed");
    assert_eq!(r["replacement"], replacement.as_str());
    assert!(
        r["message"].as_str().unwrap().contains("signature again"),
        "{r}"
    );
    // The replacement is left alone: one eviction, of the approved pod only.
    let now = live_pods(&ns, "web").await;
    assert!(
        now.iter()
            .any(|p| p.metadata.name.as_deref() == Some(replacement.as_str()))
    );
    assert_eq!(now.len(), pods.len());
    assert_eq!(ledger_entries(&ns, &ledger_in(&ns)).await.len(), 1);
    events_with(&ns, "net", &["RemediationFailed"]).await;
}

#[tokio::test]
async fn without_an_approval_nothing_is_ever_deleted() {
    let ns = TestNs::new("rem-unapproved").await;
    let _op = Operator::start(&ns, &[]);
    let (pods, _) = proposal_for_one_failing_pod(&ns, false).await;
    let before = ids(&pods);
    // Give the operator every chance to misbehave.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let t = wait_for_phase(&ns, "net", &["AwaitingApproval"], VERDICT).await;
    assert!(t["status"]["remediation"].is_null());
    assert_eq!(ids(&live_pods(&ns, "web").await), before);
    let events = events_for(&ns, "net").await;
    assert!(
        !events
            .iter()
            .any(|e| e.starts_with("Evicted") || e.starts_with("Remediating")),
        "{events:?}"
    );
}

#[tokio::test]
async fn approving_another_proposal_is_refused() {
    let ns = TestNs::new("rem-mismatch").await;
    let chart = chart(&ns).await;
    let _op = chart.start(&ns, "ato-0", &[], &[]);
    let (pods, _) = proposal_for_one_failing_pod(&ns, false).await;
    approve_in_person(&ns, "net", "delete-pod-000000000000", "alice");
    let t = assert_refused_and_untouched(&ns, "ProposalMismatch", &ids(&pods), "web").await;
    assert_eq!(
        t["status"]["phase"], "AwaitingApproval",
        "the real proposal still waits"
    );
}

#[tokio::test]
async fn an_expired_proposal_cannot_be_approved() {
    let ns = TestNs::new("rem-expired").await;
    let _op = Operator::start(&ns, &["--proposal-ttl", "4s"]);
    let (pods, proposal) = proposal_for_one_failing_pod(&ns, false).await;
    let t = wait_for_refusal(&ns, "net", "ProposalExpired").await;
    assert_eq!(t["status"]["phase"], "NoAction");
    // Approving the dead proposal acts on nothing and does not re-run the triage: it is
    // ignored, visibly.
    approve(&ns, "net", proposal["id"].as_str().unwrap(), "alice");
    let t = wait_for_refusal(&ns, "net", "ProposalMismatch").await;
    assert_eq!(t["status"]["phase"], "NoAction");
    assert_eq!(t["status"]["proposal"]["id"], proposal["id"]);
    assert_eq!(ids(&live_pods(&ns, "web").await), ids(&pods));
    // Removing the approval is how a person asks for a new triage: it proposes anew.
    ns.kubectl_ok(&[
        "patch",
        "alerttriage",
        "net",
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/spec/approval"}]"#,
    ]);
    let t = wait_for_phase(&ns, "net", &["AwaitingApproval"], VERDICT).await;
    assert_ne!(t["status"]["proposal"]["id"], proposal["id"]);
    assert_eq!(ids(&live_pods(&ns, "web").await), ids(&pods));
}

#[tokio::test]
async fn a_pod_replaced_under_the_same_name_is_not_touched() {
    let ns = TestNs::new("rem-uid").await;
    let chart = chart(&ns).await;
    let _op = chart.start(&ns, "ato-0", &[], &[]);
    let sts: k8s_openapi::api::apps::v1::StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 3, "serviceName": "db", "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/db:fake"}], "nodeSelector": {"type": "kwok"}}
            }
        }
    }))
    .unwrap();
    ns.api().create(&PostParams::default(), &sts).await.unwrap();
    let pods = ns.wait_for_running_pods("app=db", 3, DEPLOY).await;
    give_app_logs(&ns, &pods, vec![healthy(), network_failure(), healthy()]).await;
    create_triage(&ns, metering_triage("net", "db")).await;
    let t = wait_for_phase(&ns, "net", &["AwaitingApproval"], VERDICT).await;
    assert_eq!(t["status"]["proposal"]["pod"], "db-1");
    // db-1 dies and the StatefulSet brings back a new pod with the same name.
    ns.kubectl_ok(&[
        "delete",
        "pod",
        "db-1",
        "--grace-period=0",
        "--force",
        "--wait=true",
    ]);
    let again = ns.wait_for_running_pods("app=db", 3, DEPLOY).await;
    assert_ne!(ids(&again), ids(&pods));
    approve_in_person(
        &ns,
        "net",
        t["status"]["proposal"]["id"].as_str().unwrap(),
        "alice",
    );
    assert_refused_and_untouched(&ns, "PodUIDChanged", &ids(&again), "db").await;
}

#[tokio::test]
async fn a_pod_without_a_replacing_controller_is_never_proposed() {
    let ns = TestNs::new("rem-bare").await;
    let _op = Operator::start(&ns, &[]);
    for i in 0..3 {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("bare-{i}"), "labels": {"app": "bare"}},
            "spec": {"containers": [{"name": "app", "image": "registry.invalid/bare:fake"}], "nodeSelector": {"type": "kwok"}}
        }))
        .unwrap();
        ns.pods()
            .create(&PostParams::default(), &pod)
            .await
            .unwrap();
    }
    let pods = ns.wait_for_running_pods("app=bare", 3, DEPLOY).await;
    give_app_logs(&ns, &pods, vec![healthy(), network_failure(), healthy()]).await;
    create_triage(&ns, metering_triage("net", "bare")).await;
    let t = wait_for_phase(&ns, "net", &["Escalated"], VERDICT).await;
    assert!(t["status"]["proposal"].is_null());
    assert_eq!(t["status"]["recommendation"]["action"], "Escalate");
    assert_eq!(
        condition(&t, "ActionRequired")["reason"],
        "NotOwnedByController"
    );
    assert_eq!(ids(&live_pods(&ns, "bare").await), ids(&pods));
}

#[tokio::test]
async fn no_ready_sibling_refuses() {
    let ns = TestNs::new("rem-sibling").await;
    let _op = Operator::start(&ns, &[]);
    let (pods, proposal) = proposal_for_one_failing_pod(&ns, false).await;
    siblings_not_ready(&ns, &pods).await;
    approve(&ns, "net", proposal["id"].as_str().unwrap(), "alice");
    assert_refused_and_untouched(&ns, "NoReadySibling", &ids(&pods), "web").await;
}

#[tokio::test]
async fn a_second_failing_pod_refuses() {
    let ns = TestNs::new("rem-more").await;
    let _op = Operator::start(&ns, &[]);
    let (pods, proposal) = proposal_for_one_failing_pod(&ns, false).await;
    ns.attach_logs(
        pods[2].metadata.name.as_deref().unwrap(),
        "app",
        &PodLog::lines(network_failure()),
        None,
    )
    .await;
    approve(&ns, "net", proposal["id"].as_str().unwrap(), "alice");
    assert_refused_and_untouched(&ns, "MorePodsFailing", &ids(&pods), "web").await;
}

#[tokio::test]
async fn the_hourly_budget_refuses_once_spent() {
    let ns = TestNs::new("rem-budget").await;
    let _op = Operator::start(&ns, &[]);
    let (pods, proposal) = proposal_for_one_failing_pod(&ns, false).await;
    write_ledger(
        &ns,
        json!([
            ledger_entry("a/Deployment/x", 5),
            ledger_entry("b/Deployment/y", 20),
            ledger_entry("c/Deployment/z", 50)
        ]),
    )
    .await;
    approve(&ns, "net", proposal["id"].as_str().unwrap(), "alice");
    assert_refused_and_untouched(&ns, "BudgetExhausted", &ids(&pods), "web").await;
}

#[tokio::test]
async fn the_workload_cooldown_refuses() {
    let ns = TestNs::new("rem-cooldown").await;
    let _op = Operator::start(&ns, &[]);
    let (pods, proposal) = proposal_for_one_failing_pod(&ns, false).await;
    write_ledger(
        &ns,
        json!([ledger_entry(&format!("{}/Deployment/web", ns.name), 5)]),
    )
    .await;
    approve(&ns, "net", proposal["id"].as_str().unwrap(), "alice");
    assert_refused_and_untouched(&ns, "CooldownActive", &ids(&pods), "web").await;
}

#[tokio::test]
async fn dry_run_records_what_it_would_have_done() {
    let ns = TestNs::new("rem-dry").await;
    let _op = Operator::start(&ns, &[]);
    let (pods, proposal) = proposal_for_one_failing_pod(&ns, true).await;
    approve(&ns, "net", proposal["id"].as_str().unwrap(), "alice");
    let t = assert_refused_and_untouched(&ns, "DryRun", &ids(&pods), "web").await;
    let r = &t["status"]["remediation"];
    assert_eq!(r["outcome"], "DryRun");
    let message = r["message"].as_str().unwrap();
    assert!(
        message.contains("would evict")
            && message.contains(pods[1].metadata.uid.as_deref().unwrap()),
        "{message}"
    );
    assert_eq!(r["approvedBy"], "alice");
}

#[tokio::test]
async fn an_operator_wide_dry_run_never_acts() {
    let ns = TestNs::new("rem-dry-wide").await;
    let _op = Operator::start(&ns, &["--dry-run"]);
    let (pods, proposal) = proposal_for_one_failing_pod(&ns, false).await;
    approve(&ns, "net", proposal["id"].as_str().unwrap(), "alice");
    let t = assert_refused_and_untouched(&ns, "DryRun", &ids(&pods), "web").await;
    let message = t["status"]["remediation"]["message"].as_str().unwrap();
    assert!(
        message.contains("operator-wide") && message.contains("would evict"),
        "{message}"
    );
}

#[tokio::test]
async fn a_namespace_outside_the_operators_scope_is_not_acted_in() {
    let home = TestNs::new("rem-scope-home").await;
    let away = TestNs::new("rem-scope-away").await;
    // The home namespace may target others, so what is checked here is the guardrail on the
    // operator's own scope (--namespaces), not tenancy.
    let _op = Operator::start(&home, &["--admin-namespaces", &home.name]);
    let pods = away.deploy(&Workload::new("web", 3), DEPLOY).await;
    give_app_logs(&away, &pods, vec![healthy(), network_failure(), healthy()]).await;
    let mut manifest = metering_triage("net", "web");
    manifest["spec"]["target"]["namespace"] = away.name.clone().into();
    create_triage(&home, manifest).await;
    let t = wait_for_phase(&home, "net", &["Escalated"], VERDICT).await;
    assert!(t["status"]["proposal"].is_null());
    assert_eq!(
        condition(&t, "ActionRequired")["reason"],
        "NamespaceOutOfScope"
    );
    assert_eq!(ids(&live_pods(&away, "web").await), ids(&pods));
}

#[tokio::test]
async fn a_pod_disruption_budget_blocks_until_it_allows() {
    let ns = TestNs::new("rem-pdb").await;
    let _op = Operator::start(&ns, &[]);
    pdb_allowing_no_eviction(&ns).await;
    let (pods, proposal) = proposal_for_one_failing_pod(&ns, false).await;
    approve(&ns, "net", proposal["id"].as_str().unwrap(), "alice");

    let t = wait_for_triage(&ns, "net", REMEDIATION, |t| {
        if t["status"]["remediation"]["outcome"] == "Blocked" {
            Ok(t.clone())
        } else {
            Err(format!("{}", t["status"]))
        }
    })
    .await;
    assert_eq!(t["status"]["phase"], "Remediating");
    assert!(
        t["status"]["remediation"]["message"]
            .as_str()
            .unwrap()
            .contains("PodDisruptionBudget")
    );
    assert_eq!(
        ids(&live_pods(&ns, "web").await),
        ids(&pods),
        "blocked means nothing evicted"
    );
    let events = events_with(&ns, "net", &["EvictionBlocked"]).await;
    assert!(
        events.iter().any(|e| e.starts_with("EvictionBlocked")),
        "{events:?}"
    );

    ns.kubectl_ok(&["delete", "pdb", "web"]);
    expect_remediated(&ns, &pods, &ledger_in(&ns)).await;
}

#[tokio::test]
async fn budgets_and_cooldowns_survive_an_operator_restart() {
    let ns = TestNs::new("rem-durable").await;
    let first = Operator::start(&ns, &[]);
    let (pods, proposal) = proposal_for_one_failing_pod(&ns, false).await;
    approve(&ns, "net", proposal["id"].as_str().unwrap(), "alice");
    expect_remediated(&ns, &pods, &ledger_in(&ns)).await;
    drop(first);

    let _second = Operator::start(&ns, &[]);
    // Another pod of the same Deployment fails: the cooldown, read back from the ledger,
    // holds the proposal back.
    let now = live_pods(&ns, "web").await;
    ns.attach_logs(
        now[0].metadata.name.as_deref().unwrap(),
        "app",
        &PodLog::lines(network_failure()),
        None,
    )
    .await;
    for other in &now[1..] {
        ns.attach_logs(
            other.metadata.name.as_deref().unwrap(),
            "app",
            &PodLog::lines(healthy()),
            None,
        )
        .await;
    }
    create_triage(&ns, metering_triage("again", "web")).await;
    let t = wait_for_phase(&ns, "again", &["Escalated"], VERDICT).await;
    assert!(t["status"]["proposal"].is_null());
    assert_eq!(condition(&t, "ActionRequired")["reason"], "CooldownActive");
    assert_eq!(ids(&live_pods(&ns, "web").await), ids(&now));
}

/// A proposal for one failing pod, approved, and the operator that acts on it killed
/// (SIGKILL) where `ATO_PAUSE_AT=step` stops it; returns the pods as they were.
async fn approved_then_killed_at(ns: &TestNs, step: &str) -> Vec<Pod> {
    let watcher = Operator::start(ns, &[]);
    let (pods, proposal) = proposal_for_one_failing_pod(ns, false).await;
    drop(watcher);
    let mut doomed = Operator::start_with_env(ns, &[], &[("ATO_PAUSE_AT", step)]);
    approve(ns, "net", proposal["id"].as_str().unwrap(), "alice");
    doomed.wait_for_pause(REMEDIATION).await;
    assert!(doomed.is_running());
    doomed.kill();
    pods
}

/// Kills the operator (SIGKILL) where `ATO_PAUSE_AT` stops it, then lets a fresh one finish.
async fn crash_at(step: &str) {
    let ns = TestNs::new(&format!("rem-crash-{step}")).await;
    let pods = approved_then_killed_at(&ns, step).await;

    let t = wait_for_phase(&ns, "net", &["Remediating"], VERDICT).await;
    let evicted = t["status"]["remediation"]["evictedAt"].is_string();
    match step {
        "after-intent" => {
            assert!(!evicted);
            assert_eq!(
                ids(&live_pods(&ns, "web").await),
                ids(&pods),
                "nothing evicted before the call"
            );
        }
        "after-evict" => assert!(!evicted, "killed before evictedAt was recorded"),
        _ => assert!(evicted),
    }

    let _fresh = Operator::start(&ns, &[]);
    expect_remediated(&ns, &pods, &ledger_in(&ns)).await;
}

#[tokio::test]
async fn a_kill_after_the_intent_is_recorded_evicts_exactly_once() {
    crash_at("after-intent").await;
}

#[tokio::test]
async fn a_kill_right_after_the_eviction_call_never_evicts_again() {
    crash_at("after-evict").await;
}

#[tokio::test]
async fn a_kill_during_verification_finishes_the_record() {
    crash_at("during-verify").await;
}

/// The alert resolves while an approved eviction is recorded but not yet made (the operator
/// died between the two): the next operator ends the remediation without evicting, and does
/// not call it a failure (nothing was evicted, so nothing failed).
#[tokio::test]
async fn an_alert_resolved_between_intent_and_eviction_evicts_nothing() {
    let ns = TestNs::new("rem-abandon").await;
    let pods = approved_then_killed_at(&ns, "after-intent").await;
    let t = wait_for_phase(&ns, "net", &["Remediating"], VERDICT).await;
    assert!(t["status"]["remediation"]["evictedAt"].is_null());

    // What the intake writes when Alertmanager reports the alert resolved.
    let ended_at = Timestamp::now().to_string();
    let patch = json!({
        "apiVersion": "triage.dev/v1alpha1",
        "kind": "AlertTriage",
        "status": {"conditions": [{
            "type": "Resolved",
            "status": "True",
            "reason": "AlertResolved",
            "message": "Alertmanager reported the alert resolved",
            "lastTransitionTime": ended_at,
        }]},
    });
    ns.api::<alert_triage_operator::crd::AlertTriage>()
        .patch_status(
            "net",
            &kube::api::PatchParams::apply("triage-intake").force(),
            &kube::api::Patch::Apply(&patch),
        )
        .await
        .expect("marking the triage resolved");

    let op = Operator::start(&ns, &[]);
    let t = wait_for_phase(&ns, "net", &["NoAction"], REMEDIATION).await;
    let remediation = &t["status"]["remediation"];
    assert_eq!(remediation["outcome"], "Withdrawn", "{remediation}");
    assert!(remediation["evictedAt"].is_null(), "{remediation}");
    assert!(remediation["finishedAt"].is_string(), "{remediation}");
    let message = remediation["message"].as_str().unwrap();
    assert!(
        message.contains("not evicted") && message.contains("resolved"),
        "{message}"
    );
    assert_eq!(condition(&t, "Remediated")["reason"], "AlertResolved");
    // Nothing was evicted, and nothing is later: the pods are the ones from before.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(ids(&live_pods(&ns, "web").await), ids(&pods));
    assert_eq!(
        op.metric("alert_triage_actions_total{action=\"DeletePod\",result=\"Failed\"}")
            .await
            .unwrap_or(0.0),
        0.0,
        "a withdrawn remediation is not a failed one"
    );
}

/// Crash points exist only in test builds: the release binary has none, and a pause point
/// named in its environment does not stop it.
#[tokio::test]
async fn the_release_binary_ignores_crash_points() {
    let has = |bin: &std::path::Path, s: &str| {
        let bytes = std::fs::read(bin).unwrap();
        memchr::memmem::find(&bytes, s.as_bytes()).is_some()
    };
    let release = release_binary();
    assert!(
        has(std::path::Path::new(BIN), "ATO_PAUSE_AT"),
        "the test build must carry the crash points, or this check proves nothing"
    );
    assert!(!has(&release, "ATO_PAUSE_AT"), "{}", release.display());

    let ns = TestNs::new("rem-release").await;
    let watcher = Operator::start(&ns, &[]);
    let (pods, proposal) = proposal_for_one_failing_pod(&ns, false).await;
    drop(watcher);
    let args = run_args(&ns, &ns.cluster.kubeconfig);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let op = Operator::start_binary(
        &release,
        &ns,
        &ns.name,
        &args,
        &[("ATO_PAUSE_AT", "after-intent")],
    );
    approve(&ns, "net", proposal["id"].as_str().unwrap(), "alice");
    expect_remediated(&ns, &pods, &ledger_in(&ns)).await;
    assert!(!op.output().contains("paused for a crash test"));
}

/// Tenancy: a triage names another namespace as its target; without an admin namespace the
/// operator refuses it, reads nothing there, and says why.
#[tokio::test]
async fn a_triage_cannot_reach_into_another_namespace() {
    let home = TestNs::new("rem-tenant-a").await;
    let away = TestNs::new("rem-tenant-b").await;
    let _op = Operator::start(&home, &[]);
    let pods = away.deploy(&Workload::new("web", 3), DEPLOY).await;
    give_app_logs(&away, &pods, vec![healthy(), network_failure(), healthy()]).await;
    let mut manifest = metering_triage("net", "web");
    manifest["spec"]["target"]["namespace"] = away.name.clone().into();
    create_triage(&home, manifest).await;
    let t = wait_for_triage(&home, "net", VERDICT, |t| {
        let c = condition(t, "Triaged");
        if c["reason"] == "CrossNamespaceTarget" {
            Ok(t.clone())
        } else {
            Err(format!("Triaged condition {c}"))
        }
    })
    .await;
    assert!(
        t["status"]["evidence"].is_null(),
        "read nothing: {}",
        t["status"]
    );
    assert!(t["status"]["proposal"].is_null());
    let message = condition(&t, "Triaged")["message"].as_str().unwrap();
    assert!(message.contains(&away.name), "{message}");
    events_with(&home, "net", &["CrossNamespaceTarget"]).await;
    assert_eq!(ids(&live_pods(&away, "web").await), ids(&pods));
}

/// An approval is bound to the spec it approved: held by a guardrail, then the selector is
/// changed (by anyone who may patch the triage) so that another Deployment's pods would count
/// as ready siblings. The proposal is withdrawn, the new spec is triaged afresh, and nothing
/// is evicted on the standing approval.
#[tokio::test]
async fn a_spec_change_withdraws_an_approved_proposal() {
    let ns = TestNs::new("rem-rebind").await;
    let chart = chart(&ns).await;
    let _op = chart.start(&ns, "ato-0", &[], &[]);
    let (pods, proposal) = proposal_for_one_failing_pod(&ns, false).await;
    siblings_not_ready(&ns, &pods).await;
    approve_in_person(&ns, "net", proposal["id"].as_str().unwrap(), "alice");
    wait_for_refusal(&ns, "net", "NoReadySibling").await;
    let others = ns.deploy(&Workload::new("other", 2), DEPLOY).await;
    give_app_logs(&ns, &others, vec![healthy(), healthy()]).await;
    let patch = json!({"spec": {"target": {"selector": {"matchLabels": null, "matchExpressions": [
        {"key": "app", "operator": "In", "values": ["web", "other"]}]}}}});
    // carol may patch the triage but not approve: her selector change passes admission.
    ns.kubectl_ok(&[
        "create",
        "role",
        "triage-editor",
        "--verb=get,patch",
        "--resource=alerttriages.triage.dev",
    ]);
    ns.kubectl_ok(&[
        "create",
        "rolebinding",
        "triage-editor-carol",
        "--role=triage-editor",
        "--user=carol",
    ]);
    let own = approval(proposal["id"].as_str().unwrap(), "carol");
    let refused = patch_triage(&ns, Some("carol"), "net", &own);
    assert!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr).contains("may not approve"),
        "carol may not approve: {refused:?}"
    );
    // Nor may she point the triage at another namespace (the chart's tenancy policy).
    let away = json!({"spec": {"target": {"namespace": "kube-system"}}});
    let refused = patch_triage(&ns, Some("carol"), "net", &away);
    assert!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr)
                .contains("spec.target.namespace must be this AlertTriage's own namespace"),
        "carol may not retarget the triage: {refused:?}"
    );
    let out = patch_triage(&ns, Some("carol"), "net", &patch);
    assert!(out.status.success(), "carol's selector change: {out:?}");
    let t = wait_for_triage(&ns, "net", VERDICT, |t| {
        let fresh = t["status"]["observedGeneration"] == t["metadata"]["generation"];
        let settled = t["status"]["phase"] != "Gathering";
        if fresh && settled && condition(t, "Remediated")["reason"] == "ProposalWithdrawn" {
            Ok(t.clone())
        } else {
            Err(format!("{}", t["status"]))
        }
    })
    .await;
    assert_ne!(t["status"]["proposal"]["id"], proposal["id"]);
    assert!(t["status"]["remediation"].is_null());
    events_with(&ns, "net", &["ProposalWithdrawn"]).await;
    // The standing approval names the withdrawn proposal: nothing acts on it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(ids(&live_pods(&ns, "web").await), ids(&pods));
    assert_eq!(ids(&live_pods(&ns, "other").await), ids(&others));
    let t = wait_for_phase(&ns, "net", &["AwaitingApproval"], VERDICT).await;
    assert!(t["status"]["remediation"].is_null());
}

/// An approval of something that is not waiting (here an escalation) is ignored, visibly, and
/// does not run the triage again.
#[tokio::test]
async fn an_approval_with_no_proposal_waiting_is_ignored_visibly() {
    let ns = TestNs::new("rem-noprop").await;
    let chart = chart(&ns).await;
    let _op = chart.start(&ns, "ato-0", &[], &[]);
    let pods = ns.deploy(&Workload::new("web", 2), DEPLOY).await;
    give_app_logs(&ns, &pods, vec![network_failure(), network_failure()]).await;
    create_triage(&ns, metering_triage("net", "web")).await;
    wait_for_phase(&ns, "net", &["Escalated"], VERDICT).await;
    approve_in_person(&ns, "net", "delete-pod-000000000000", "alice");
    let t = wait_for_refusal(&ns, "net", "ProposalMismatch").await;
    assert_eq!(t["status"]["phase"], "Escalated");
    assert_eq!(condition(&t, "ActionRequired")["status"], "True");
    let events = events_with(&ns, "net", &["ProposalMismatch"]).await;
    let gathering = events
        .iter()
        .filter(|e| e.starts_with("Gathering:"))
        .count();
    assert_eq!(gathering, 1, "not triaged again: {events:?}");
    assert_eq!(ids(&live_pods(&ns, "web").await), ids(&pods));
}

/// The operator never acts with a power the approver lacks: bob may patch the triage but not
/// evict pods, so his approval is refused right before acting.
#[tokio::test]
async fn an_approver_who_may_not_evict_is_refused() {
    let ns = TestNs::new("rem-sar").await;
    let _op = Operator::start(&ns, &[]);
    let (pods, proposal) = proposal_for_one_failing_pod(&ns, false).await;
    approve(&ns, "net", proposal["id"].as_str().unwrap(), "bob");
    let t = assert_refused_and_untouched(&ns, "ApproverNotAllowed", &ids(&pods), "web").await;
    let message = condition(&t, "Remediated")["message"].as_str().unwrap();
    assert!(
        message.contains("bob") && message.contains("evict"),
        "{message}"
    );
    assert_eq!(
        t["status"]["phase"], "AwaitingApproval",
        "another approver may still approve"
    );
}

/// Status is not a record of intent: whoever may write `alerttriages/status` sets
/// `phase: Remediating` naming a pod; the operator finds no such intent in its ledger, evicts
/// nothing, and says so.
#[tokio::test]
async fn a_forged_remediating_status_evicts_nothing() {
    let ns = TestNs::new("rem-forged").await;
    let chart = chart(&ns).await;
    let _op = chart.start(&ns, "ato-0", &[], &[]);
    let (pods, proposal) = proposal_for_one_failing_pod(&ns, false).await;
    let victim = &pods[0];
    let forged = json!({"status": {"phase": "Remediating", "remediation": {
        "action": "EvictPod",
        "proposal": proposal["id"],
        "pod": victim.metadata.name,
        "podUID": victim.metadata.uid,
        "approvedBy": "mallory",
        "outcome": "InProgress",
        "startedAt": Timestamp::now().to_string(),
    }}});
    ns.kubectl_ok(&[
        "patch",
        "alerttriage",
        "net",
        "--subresource=status",
        "--type",
        "merge",
        "-p",
        &forged.to_string(),
    ]);
    let t = wait_for_refusal(&ns, "net", "StatusMismatch").await;
    assert_ne!(t["status"]["phase"], "Remediated");
    let message = condition(&t, "Remediated")["message"].as_str().unwrap();
    assert!(message.contains("ledger"), "{message}");
    events_with(&ns, "net", &["StatusMismatch"]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(ids(&live_pods(&ns, "web").await), ids(&pods));
}

/// A remediation in flight is pinned to the intent in the ledger: moving
/// `spec.target.namespace` while a PodDisruptionBudget blocks the eviction redirects nothing.
/// With the chart installed its tenancy policy refuses that change at admission (see
/// `a_spec_change_withdraws_an_approved_proposal`); this runs the operator without it, to show
/// the operator's own pinning holds when the policy is off or bypassed.
/// The approved pod is evicted in its own namespace once the budget allows, its replacement
/// there is verified, and the other namespace's pods are never touched or taken for it.
#[tokio::test]
async fn a_blocked_remediation_is_not_redirected_by_a_spec_change() {
    let ns = TestNs::new("rem-pinned").await;
    let other = TestNs::new("rem-pinned-away").await;
    let _op = Operator::start(&ns, &[]);
    pdb_allowing_no_eviction(&ns).await;
    let (pods, proposal) = proposal_for_one_failing_pod(&ns, false).await;
    let elsewhere = other.deploy(&Workload::new("web", 2), DEPLOY).await;
    approve(&ns, "net", proposal["id"].as_str().unwrap(), "alice");
    wait_for_triage(&ns, "net", REMEDIATION, |t| {
        if t["status"]["remediation"]["outcome"] == "Blocked" {
            Ok(())
        } else {
            Err(format!("{}", t["status"]))
        }
    })
    .await;
    let patch = json!({"spec": {"target": {"namespace": other.name}}});
    ns.kubectl_ok(&[
        "patch",
        "alerttriage",
        "net",
        "--type",
        "merge",
        "-p",
        &patch.to_string(),
    ]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        ids(&live_pods(&ns, "web").await),
        ids(&pods),
        "still blocked"
    );
    let _logs = serve_replacement_logs(&ns, &pods);
    ns.kubectl_ok(&["delete", "pdb", "web"]);
    // The remediation finishes first; then the changed spec is triaged (and refused: the
    // triage may not reach into the other namespace), and the record of the eviction stays.
    let t = wait_for_triage(&ns, "net", REMEDIATION, |t| {
        let triaged = condition(t, "Triaged")["reason"] == "CrossNamespaceTarget";
        let outcome = &t["status"]["remediation"]["outcome"];
        if triaged && (outcome == "Succeeded" || outcome == "Failed") {
            Ok(t.clone())
        } else {
            Err(format!("{}", t["status"]))
        }
    })
    .await;
    assert_remediated_once(&ns, &t, &pods, &ledger_in(&ns)).await;
    let replacement = t["status"]["remediation"]["replacement"].as_str().unwrap();
    assert!(
        !elsewhere
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some(replacement)),
        "{replacement} is in the other namespace"
    );
    assert_eq!(ids(&live_pods(&other, "web").await), ids(&elsewhere));
}

/// Two operators without leader election race the same approval: one eviction, one ledger
/// entry, and a final record that says Remediated (no stale write from the loser replaces it).
#[tokio::test]
async fn two_operators_racing_one_approval_evict_once() {
    let ns = TestNs::new("rem-race").await;
    let chart = chart(&ns).await;
    let first = chart.start(&ns, "ato-0", &[], &[]);
    let (pods, proposal) = proposal_for_one_failing_pod(&ns, false).await;
    let second = chart.start(&ns, "ato-1", &[], &[]);
    second.wait_ready(Duration::from_secs(30)).await;
    approve_in_person(&ns, "net", proposal["id"].as_str().unwrap(), "alice");
    expect_remediated(&ns, &pods, &chart_ledger(&chart)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let t = wait_for_phase(&ns, "net", &["Remediated"], VERDICT).await;
    assert_eq!(t["status"]["remediation"]["outcome"], "Succeeded");
    let entries = ledger_entries(&ns, &chart_ledger(&chart)).await;
    let ours = entries
        .iter()
        .filter(|e| e["proposal"] == proposal["id"])
        .count();
    assert_eq!(ours, 1, "{entries:?}");
    let evicted = events_for(&ns, "net")
        .await
        .iter()
        .filter(|e| e.starts_with("Evicted:"))
        .count();
    assert!(evicted <= 1, "evicted more than once");
    drop((first, second));
}

/// libfaketime in the operator's environment: its clock runs `offset` (e.g. `-5m`) from the
/// machine's, and so from the API server's.
fn skewed_clock(offset: &str) -> Vec<(&'static str, String)> {
    let lib = std::env::var("ATO_FAKETIME_LIB")
        .unwrap_or_else(|_| "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1".into());
    assert!(
        std::path::Path::new(&lib).is_file(),
        "libfaketime is missing ({lib}): scripts/tools.sh faketime installs it"
    );
    vec![
        ("LD_PRELOAD", lib),
        ("FAKETIME", offset.to_string()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string()),
    ]
}

fn start_skewed(chart: &Charted, ns: &TestNs, extra: &[&str], offset: &str) -> Operator {
    let env = skewed_clock(offset);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    chart.start(ns, "ato-skewed", extra, &env)
}

/// The skew is real: the operator measured the API server's clock `secs` away from its own.
async fn assert_measured_offset(op: &Operator, secs: i64) {
    eventually(Duration::from_secs(30), || async {
        let output = op.output();
        // The newest measurement.
        let offset = output
            .lines()
            .rev()
            .filter(|l| l.contains("API server clock offset"))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find_map(|v| v["fields"]["offset_ms"].as_i64());
        match offset {
            Some(ms) if (ms / 1000 - secs).abs() <= 5 => Ok(()),
            other => Err(format!("offset {other:?} ms, wanted about {secs}s")),
        }
    })
    .await;
}

/// An operator whose clock runs 5 minutes behind judges a proposal's expiry by the API
/// server's clock: one that expired seconds ago is expired, and approving it evicts nothing.
#[tokio::test]
async fn a_slow_clock_does_not_revive_an_expired_proposal() {
    let ns = TestNs::new("rem-skew-expiry").await;
    let chart = chart(&ns).await;
    let first = chart.start(&ns, "ato-0", &["--proposal-ttl", "20s"], &[]);
    let (pods, proposal) = proposal_for_one_failing_pod(&ns, false).await;
    drop(first);
    let expires: Timestamp = proposal["expiresAt"].as_str().unwrap().parse().unwrap();
    let wait = expires.duration_since(Timestamp::now()) + SignedDuration::from_secs(3);
    tokio::time::sleep(Duration::try_from(wait).unwrap_or_default()).await;
    let behind = start_skewed(&chart, &ns, &[], "-5m");
    assert_measured_offset(&behind, 300).await;
    // On its own clock the proposal has more than four minutes left; on the server's it is gone.
    let t = wait_for_refusal(&ns, "net", "ProposalExpired").await;
    assert_eq!(t["status"]["phase"], "NoAction");
    approve_in_person(&ns, "net", proposal["id"].as_str().unwrap(), "alice");
    wait_for_refusal(&ns, "net", "ProposalMismatch").await;
    assert_eq!(ids(&live_pods(&ns, "web").await), ids(&pods));
}

/// An operator whose clock runs 5 minutes ahead does not take a fresh proposal for expired.
#[tokio::test]
async fn a_fast_clock_does_not_expire_a_fresh_proposal() {
    let ns = TestNs::new("rem-skew-ahead").await;
    let chart = chart(&ns).await;
    let first = chart.start(&ns, "ato-0", &["--proposal-ttl", "2m"], &[]);
    let (pods, proposal) = proposal_for_one_failing_pod(&ns, false).await;
    drop(first);
    let ahead = start_skewed(&chart, &ns, &["--proposal-ttl", "2m"], "+5m");
    assert_measured_offset(&ahead, -300).await;
    approve_in_person(&ns, "net", proposal["id"].as_str().unwrap(), "alice");
    expect_remediated(&ns, &pods, &chart_ledger(&chart)).await;
}

/// With the operator's clock 5 minutes behind, the siblings that existed before the eviction
/// look "newer" than it: the replacement is still the new pod, known by UID.
#[tokio::test]
async fn a_slow_clock_takes_no_old_pod_for_the_replacement() {
    let ns = TestNs::new("rem-skew-replace").await;
    let chart = chart(&ns).await;
    let behind = start_skewed(&chart, &ns, &[], "-5m");
    let (pods, proposal) = proposal_for_one_failing_pod(&ns, false).await;
    assert_measured_offset(&behind, 300).await;
    approve_in_person(&ns, "net", proposal["id"].as_str().unwrap(), "alice");
    let t = expect_remediated(&ns, &pods, &chart_ledger(&chart)).await;
    let replacement = t["status"]["remediation"]["replacement"].as_str().unwrap();
    assert!(
        !pods
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some(replacement)),
        "{replacement} existed before the eviction"
    );
}

/// Honest outcomes: a replacement that became Ready but whose logs could never be read is not
/// called a success.
#[tokio::test]
async fn a_replacement_whose_logs_cannot_be_read_is_unverified() {
    let ns = TestNs::new("rem-unverified").await;
    let _op = Operator::start(&ns, &["--verify-timeout", "15s"]);
    let (pods, proposal) = proposal_for_one_failing_pod(&ns, false).await;
    approve(&ns, "net", proposal["id"].as_str().unwrap(), "alice");
    let t = wait_for_triage(&ns, "net", REMEDIATION, |t| {
        let outcome = &t["status"]["remediation"]["outcome"];
        if ["Succeeded", "Failed", "Unverified"]
            .iter()
            .any(|o| outcome == o)
        {
            Ok(t.clone())
        } else {
            Err(format!("{}", t["status"]))
        }
    })
    .await;
    let r = &t["status"]["remediation"];
    assert_eq!(r["outcome"], "Unverified", "{r}");
    assert!(
        r["message"].as_str().unwrap().contains("could not be read"),
        "{r}"
    );
    assert_eq!(t["status"]["phase"], "Remediated");
    let c = condition(&t, "Remediated");
    assert_eq!(
        (c["status"].as_str(), c["reason"].as_str()),
        (Some("False"), Some("Unverified"))
    );
    events_with(&ns, "net", &["Unverified"]).await;
    assert!(!ids(&live_pods(&ns, "web").await).0.contains(&(
        pods[1].metadata.name.clone().unwrap(),
        pods[1].metadata.uid.clone().unwrap()
    )));
}

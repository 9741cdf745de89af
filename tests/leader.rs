//! Leader election with real operator processes on the simulated cluster: only the leader acts,
//! a follower takes over when the leader is killed (and at once when it shuts down cleanly), and
//! a leader that cannot renew stops before anyone else could take the lease. A stop request is
//! honoured at once even by an operator whose lists are all refused.

mod common;

use std::time::{Duration, Instant};

use common::operator::{Operator, create_triage, lease_flags, run_args, wait_for_phase};
use common::scenario::rate_limited;
use common::{PodLog, TestNs, Workload, eventually};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use serde_json::{Value, json};

const LEASE: &str = "alert-triage-operator";
const LEASE_DURATION: Duration = Duration::from_secs(6);
const RETRY: Duration = Duration::from_secs(1);
const VERDICT: Duration = Duration::from_secs(60);

async fn lease(ns: &TestNs) -> Option<Lease> {
    ns.api::<Lease>()
        .get_opt(LEASE)
        .await
        .expect("reading the Lease")
}

fn holder(lease: &Lease) -> Option<&str> {
    lease.spec.as_ref()?.holder_identity.as_deref()
}

fn renewed_at(lease: &Lease) -> Timestamp {
    lease.spec.as_ref().unwrap().renew_time.as_ref().unwrap().0
}

async fn wait_for_holder(ns: &TestNs, identity: &str, timeout: Duration) -> Lease {
    eventually(timeout, || async {
        match lease(ns).await {
            Some(l) if holder(&l) == Some(identity) => Ok(l),
            other => Err(format!("holder {:?}", other.as_ref().and_then(holder))),
        }
    })
    .await
}

fn triage(name: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "alert": {"name": "armada-cluster_error_metering_token_exchange"},
            "target": {"selector": {"matchLabels": {"app": "armada-cluster"}}},
            "window": "1h"
        }
    })
}

/// Which replicas recorded the Events about `name`, one entry per Event.
async fn reporters(ns: &TestNs, name: &str) -> Vec<String> {
    ns.api::<Event>()
        .list(&ListParams::default())
        .await
        .expect("listing Events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| {
            format!(
                "{} {}",
                e.reporting_instance.unwrap_or_default(),
                e.reason.unwrap_or_default()
            )
        })
        .collect()
}

async fn reconciles(op: &Operator) -> f64 {
    let mut total = 0.0;
    for result in ["success", "error"] {
        total += op
            .metric(&format!(
                "alert_triage_reconciles_total{{result=\"{result}\"}}"
            ))
            .await
            .unwrap_or(0.0);
    }
    total
}

#[tokio::test]
async fn only_the_leader_acts_and_a_follower_takes_over_when_it_is_killed() {
    let ns = TestNs::new("leader-takeover").await;
    let pods = ns
        .deploy(&Workload::new("armada-cluster", 1), Duration::from_secs(90))
        .await;
    ns.attach_logs(
        pods[0].metadata.name.as_deref().unwrap(),
        "app",
        &PodLog::lines(rate_limited()),
        None,
    )
    .await;
    let mut a = Operator::replica(&ns, "replica-a", &[]);
    wait_for_holder(&ns, "replica-a", Duration::from_secs(30)).await;
    let b = Operator::replica(&ns, "replica-b", &[]);
    // The follower is warm: connected, its cache synced, ready; it does not reconcile.
    b.wait_ready(Duration::from_secs(30)).await;
    assert_eq!(b.metric("alert_triage_leader").await, Some(0.0));
    assert_eq!(a.metric("alert_triage_leader").await, Some(1.0));

    create_triage(&ns, triage("first")).await;
    wait_for_phase(&ns, "first", &["Escalated"], VERDICT).await;
    let first_events = reporters(&ns, "first").await;
    assert!(!first_events.is_empty());
    assert!(
        first_events.iter().all(|e| e.starts_with("replica-a ")),
        "{first_events:?}"
    );
    assert!(reconciles(&a).await > 0.0);
    assert_eq!(reconciles(&b).await, 0.0, "the follower reconciled");

    a.kill();
    let killed = Instant::now();
    let last = lease(&ns).await.unwrap();
    let taken = wait_for_holder(&ns, "replica-b", Duration::from_secs(30)).await;
    let took = killed.elapsed();
    assert!(
        took <= LEASE_DURATION + RETRY + Duration::from_secs(2),
        "takeover took {took:?}"
    );
    // Never two actors: the follower took the lease only once it had gone a whole lease
    // duration without renewal.
    let acquired = taken
        .spec
        .as_ref()
        .unwrap()
        .acquire_time
        .as_ref()
        .unwrap()
        .0;
    assert!(
        acquired >= renewed_at(&last) + SignedDuration::try_from(LEASE_DURATION).unwrap(),
        "taken at {acquired}, last renewed at {}",
        renewed_at(&last)
    );
    assert_eq!(taken.spec.as_ref().unwrap().lease_transitions, Some(1));

    create_triage(&ns, triage("second")).await;
    wait_for_phase(&ns, "second", &["Escalated"], VERDICT).await;
    let second_events = reporters(&ns, "second").await;
    assert!(
        second_events.iter().all(|e| e.starts_with("replica-b ")),
        "{second_events:?}"
    );
    assert_eq!(b.metric("alert_triage_leader").await, Some(1.0));
    // The new leader saw the first triage as done: nothing about it happened again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(reporters(&ns, "first").await, first_events);
}

#[tokio::test]
async fn a_clean_shutdown_hands_the_lease_over_at_once() {
    let ns = TestNs::new("leader-handover").await;
    let mut a = Operator::replica(&ns, "replica-a", &[]);
    wait_for_holder(&ns, "replica-a", Duration::from_secs(30)).await;
    let b = Operator::replica(&ns, "replica-b", &[]);
    b.wait_ready(Duration::from_secs(30)).await;

    a.terminate();
    let stopped = Instant::now();
    wait_for_holder(&ns, "replica-b", Duration::from_secs(30)).await;
    assert!(
        stopped.elapsed() < LEASE_DURATION,
        "handover took {:?}: the lease was not released",
        stopped.elapsed()
    );
    a.wait_stopped(Duration::from_secs(10)).await;
    let out = a.output();
    assert!(out.contains("released the lease"), "{out}");
    assert!(out.contains("controller stopped"), "{out}");
}

#[tokio::test]
async fn a_leader_that_cannot_renew_stops_before_its_lease_expires() {
    let ns = TestNs::new("leader-renewal").await;
    ns.kubectl_ok(&["create", "serviceaccount", "op"]);
    ns.kubectl_ok(&[
        "create",
        "role",
        "triages",
        "--verb=list,watch",
        "--resource=alerttriages.triage.dev",
    ]);
    ns.kubectl_ok(&[
        "create",
        "role",
        "lease",
        "--verb=get,create,update",
        "--resource=leases.coordination.k8s.io",
    ]);
    let sa = format!("--serviceaccount={}:op", ns.name);
    for role in ["triages", "lease"] {
        ns.kubectl_ok(&[
            "create",
            "rolebinding",
            role,
            &format!("--role={role}"),
            &sa,
        ]);
    }
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("op.kubeconfig");
    ns.cluster
        .service_account_kubeconfig(&ns.name, "op", &kubeconfig)
        .await;
    let mut args = run_args(&ns, &kubeconfig);
    args.extend(lease_flags(&ns).into_iter().map(str::to_string));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut op = Operator::start_raw(&ns, &ns.name, &args, &[("POD_NAME", "replica-a")]);
    wait_for_holder(&ns, "replica-a", Duration::from_secs(30)).await;

    // From now on every renewal is refused.
    ns.kubectl_ok(&["delete", "rolebinding", "lease"]);
    let stopped_at = eventually(Duration::from_secs(30), || {
        let running = op.is_running();
        async move {
            if running {
                Err("still running")
            } else {
                Ok(Timestamp::now())
            }
        }
    })
    .await;
    let last_renewal = renewed_at(&lease(&ns).await.unwrap());
    let expires = last_renewal + SignedDuration::try_from(LEASE_DURATION).unwrap();
    assert!(
        stopped_at < expires,
        "stopped at {stopped_at}, but the lease (renewed at {last_renewal}) could be taken from {expires}"
    );
    let out = op.output();
    assert!(out.contains("lost the leader lease"), "{out}");
    assert!(out.contains("not renewed within"), "{out}");
}

/// With no right to list anything, the operator never gets its first list of AlertTriages; a
/// SIGTERM must still stop it at once, not leave it for the kubelet's SIGKILL 30 s later.
#[tokio::test]
async fn an_operator_refused_every_list_still_stops_when_asked() {
    let ns = TestNs::new("stop-unlisted").await;
    ns.kubectl_ok(&["create", "serviceaccount", "nobody"]);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("nobody.kubeconfig");
    ns.cluster
        .service_account_kubeconfig(&ns.name, "nobody", &kubeconfig)
        .await;
    let args = run_args(&ns, &kubeconfig);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut op = Operator::start_raw(&ns, &ns.name, &args, &[]);
    op.wait_logged(
        Duration::from_secs(30),
        &["watching AlertTriages failed", "forbidden"],
    )
    .await;

    op.terminate();
    let asked = Instant::now();
    op.wait_stopped(Duration::from_secs(20)).await;
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "stopped {:?} after SIGTERM",
        asked.elapsed()
    );
    let out = op.output();
    assert!(
        out.contains("stopping before the first list of AlertTriages succeeded"),
        "{out}"
    );
    assert!(out.contains("controller stopped"), "{out}");
}

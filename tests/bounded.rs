//! Bounds under load, on the simulated cluster: a log larger than the byte limit is read from
//! its newest end (from its start when the window ended long ago), and a backlog larger than the concurrency limit is triaged once each.

mod common;

use std::time::Duration;

use common::operator::{Operator, create_triage, wait_for_phase};
use common::scenario::{metering_triage, network_failure};
use common::{PodLog, TestNs, Workload};
use jiff::Timestamp;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;

const DEPLOY: Duration = Duration::from_secs(90);
const VERDICT: Duration = Duration::from_secs(120);
const FINAL: &[&str] = &[
    "Escalated",
    "AwaitingApproval",
    "NoAction",
    "ApiKeyRotationRequired",
];

fn benign(i: usize) -> String {
    format!(
        "GET /v1/clusters/c{i:07}/workers 200 3.1ms user-agent=armada-cluster/1.0 request-id=r-{i:08}"
    )
}

#[tokio::test]
async fn a_log_over_the_byte_limit_is_read_from_its_newest_end() {
    let ns = TestNs::new("newest").await;
    let limit: u64 = 512 * 1024;
    let _op = Operator::start(&ns, &["--log-byte-limit", &limit.to_string()]);
    let pods = ns.deploy(&Workload::new("armada-cluster", 1), DEPLOY).await;
    let pod = pods[0].metadata.name.as_deref().unwrap();
    // About 4 MB of benign lines over 50 minutes, then network failures in the last minute
    // only: reading the window from its start up to the limit would never reach them.
    let mut lines: Vec<String> = (0..40_000).map(benign).collect();
    lines.extend(network_failure());
    lines.extend((40_000..40_050).map(benign));
    let log = PodLog::lines(lines).spread_over(Duration::from_secs(50 * 60));
    ns.attach_logs(pod, "app", &log, None).await;
    let attached = Timestamp::now();
    create_triage(&ns, metering_triage("newest", "armada-cluster")).await;

    let t = wait_for_phase(&ns, "newest", FINAL, VERDICT).await;
    let s = &t["status"];
    assert_eq!(s["classification"]["category"], "NetworkFailure", "{s}");
    let evidence = &s["evidence"]["pods"][0];
    let bytes = evidence["bytesScanned"].as_u64().unwrap();
    assert!(bytes <= limit, "scanned {bytes} bytes, limit {limit}");
    assert!(bytes > limit / 2, "scanned only {bytes} bytes");
    assert_eq!(evidence["olderLogsUnread"], true, "{evidence}");
    let time = |key: &str| -> Timestamp {
        evidence[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} in {evidence}"))
            .parse()
            .unwrap()
    };
    let (from, to) = (time("logsFrom"), time("logsTo"));
    // 512 KiB of ~100-byte lines spread over 50 minutes is under 7 minutes of log.
    assert!(
        attached.duration_since(from) < jiff::SignedDuration::from_mins(10),
        "read from {from}, log ends {attached}"
    );
    assert!(
        attached.duration_since(to) < jiff::SignedDuration::from_mins(1),
        "the newest line read is {to}, log ends {attached}"
    );
    assert!(
        evidence["logError"]
            .as_str()
            .unwrap_or("")
            .contains("newest"),
        "the cut is recorded: {evidence}"
    );
}

#[tokio::test]
async fn a_window_that_ended_long_ago_is_read_from_its_start_up_to_the_limit() {
    let ns = TestNs::new("past").await;
    let limit: u64 = 64 * 1024;
    let _op = Operator::start(&ns, &["--log-byte-limit", &limit.to_string()]);
    let pods = ns.deploy(&Workload::new("armada-cluster", 1), DEPLOY).await;
    let pod = pods[0].metadata.name.as_deref().unwrap();
    // The alert started 3 hours ago; its window holds network failures at its start and
    // then about 500 KB of benign lines, far over the limit. A window that ended long ago is
    // read from its start (the API cannot end a read at a time, and the log's newest lines
    // would lie beyond the window), so the failures are found and the cut is recorded.
    let started = Timestamp::now() - jiff::SignedDuration::from_hours(3);
    let mut lines = network_failure();
    lines.extend((0..5_000).map(benign));
    let log = PodLog::lines(lines)
        .spread_over(Duration::from_secs(55 * 60))
        .ending_at(started + jiff::SignedDuration::from_mins(50));
    ns.attach_logs(pod, "app", &log, None).await;
    let mut manifest = metering_triage("past", "armada-cluster");
    manifest["spec"]["alert"]["startsAt"] =
        started.strftime("%Y-%m-%dT%H:%M:%SZ").to_string().into();
    create_triage(&ns, manifest).await;

    let t = wait_for_phase(&ns, "past", FINAL, VERDICT).await;
    let s = &t["status"];
    assert_eq!(s["classification"]["category"], "NetworkFailure", "{s}");
    let evidence = &s["evidence"]["pods"][0];
    let bytes = evidence["bytesScanned"].as_u64().unwrap();
    assert!(bytes <= limit, "scanned {bytes} bytes, limit {limit}");
    let error = evidence["logError"].as_str().unwrap_or("");
    assert!(
        error.contains("read its oldest"),
        "the cut is recorded: {evidence}"
    );
    assert_ne!(evidence["olderLogsUnread"], true, "{evidence}");
}

#[tokio::test]
async fn kubelet_timestamps_are_asked_for_only_when_lines_have_none() {
    let ns = TestNs::new("own-times").await;
    let _op = Operator::start(&ns, &[]);
    let pods = ns.deploy(&Workload::new("armada-cluster", 2), DEPLOY).await;
    let now = Timestamp::now();
    let own: Vec<String> = (0..20)
        .map(|i| {
            let t = now - jiff::SignedDuration::from_secs(60 - i);
            format!("{t} ErrorMeteringTokenExchangeFailure: i/o timeout {i}")
        })
        .collect();
    let bare: Vec<String> = (0..20)
        .map(|i| format!("ErrorMeteringTokenExchangeFailure: i/o timeout {i}"))
        .collect();
    let mut sizes = Vec::new();
    for (pod, lines) in pods.iter().zip([own, bare]) {
        let log = PodLog::lines(lines);
        sizes.push(log.expected_output().len() as u64);
        ns.attach_logs(pod.metadata.name.as_deref().unwrap(), "app", &log, None)
            .await;
    }
    create_triage(&ns, metering_triage("own-times", "armada-cluster")).await;
    let t = wait_for_phase(&ns, "own-times", FINAL, VERDICT).await;
    let scanned = |i: usize| {
        let name = pods[i].metadata.name.as_deref().unwrap();
        t["status"]["evidence"]["pods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {}", t["status"]))["bytesScanned"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(
        scanned(0),
        sizes[0],
        "lines with their own times are read as they are"
    );
    assert!(
        scanned(1) > sizes[1] + 20 * 20,
        "lines without times get the kubelet's: {} of {}",
        scanned(1),
        sizes[1]
    );
}

/// Gathering Events per AlertTriage, counting an Event series by its count.
async fn gathering_events(ns: &TestNs) -> std::collections::BTreeMap<String, i32> {
    let api: Api<Event> = Api::namespaced(ns.client.clone(), &ns.name);
    let mut counts = std::collections::BTreeMap::new();
    for e in api.list(&ListParams::default()).await.unwrap().items {
        if e.reason.as_deref() != Some("Gathering") {
            continue;
        }
        let name = e.regarding.and_then(|r| r.name).unwrap_or_default();
        *counts.entry(name).or_default() += e.series.map_or(1, |s| s.count);
    }
    counts
}

#[tokio::test]
async fn a_backlog_over_the_concurrency_limit_is_triaged_once_each() {
    let ns = TestNs::new("backlog").await;
    let pods = ns.deploy(&Workload::new("armada-cluster", 1), DEPLOY).await;
    let lines: Vec<String> = (0..2_000).map(benign).chain(network_failure()).collect();
    ns.attach_logs(
        pods[0].metadata.name.as_deref().unwrap(),
        "app",
        &PodLog::lines(lines),
        None,
    )
    .await;
    // Created while no operator runs, as after an outage.
    let names: Vec<String> = (0..12).map(|i| format!("backlog-{i:02}")).collect();
    for name in &names {
        create_triage(&ns, metering_triage(name, "armada-cluster")).await;
    }
    let _op = Operator::start(
        &ns,
        &[
            "--max-concurrent-triages",
            "2",
            "--log-bytes-in-flight",
            "1048576",
        ],
    );
    for name in &names {
        let t = wait_for_phase(&ns, name, FINAL, VERDICT).await;
        assert_eq!(t["status"]["classification"]["category"], "NetworkFailure");
    }
    let counts = common::eventually(Duration::from_secs(20), || async {
        let counts = gathering_events(&ns).await;
        if counts.len() == names.len() {
            Ok(counts)
        } else {
            Err(format!("Gathering Events so far: {counts:?}"))
        }
    })
    .await;
    for name in &names {
        assert_eq!(counts.get(name), Some(&1), "{name} gathered: {counts:?}");
    }
}

//! Odd inputs must not break a triage: a pod gone mid-gather, a container that never logged,
//! bytes that are not UTF-8, and a log far larger than the byte limit.

mod common;

use std::time::Duration;

use common::operator::{Operator, create_triage, wait_for_phase};
use common::scenario::metering_triage;
use common::{PodLog, TestNs, Workload};

const DEPLOY: Duration = Duration::from_secs(90);
const VERDICT: Duration = Duration::from_secs(120);

const FAILURE: &str = "ErrorMeteringTokenExchangeFailure: IAM token exchange failure";
const WRAPPED_429: &str = r#"Wrapped Errors: ["The IAM token exchange request failed. (429)"]"#;

#[tokio::test]
async fn non_utf8_bytes_and_a_silent_container_are_handled() {
    let ns = TestNs::new("odd-bytes").await;
    let _op = Operator::start(&ns, &[]);
    let pods = ns
        .deploy(
            &Workload::new("armada-cluster", 2).containers(&["app", "sidecar"]),
            DEPLOY,
        )
        .await;
    let mut garbage = b"\xff\xfe\x00 garbage \xc3\x28 ".to_vec();
    garbage.extend_from_slice(FAILURE.as_bytes());
    let lines: Vec<Vec<u8>> = vec![
        garbage,
        WRAPPED_429.as_bytes().to_vec(),
        b"\x80\x81\x82".to_vec(),
    ];
    // Only one container of one pod gets a log; the others never logged anything.
    ns.attach_logs(
        pods[0].metadata.name.as_deref().unwrap(),
        "app",
        &PodLog::lines(lines),
        None,
    )
    .await;
    create_triage(&ns, metering_triage("odd", "armada-cluster")).await;

    let t = wait_for_phase(
        &ns,
        "odd",
        &["Escalated", "NoAction", "AwaitingApproval"],
        VERDICT,
    )
    .await;
    let s = &t["status"];
    assert_eq!(s["classification"]["category"], "RateLimited", "{s}");
    assert_eq!(s["classification"]["scope"], "SinglePod", "{s}");
    assert_eq!(s["evidence"]["pods"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_pod_that_disappears_mid_gather_does_not_stop_the_triage() {
    let ns = TestNs::new("odd-vanish").await;
    let _op = Operator::start(&ns, &[]);
    let pods = ns.deploy(&Workload::new("armada-cluster", 3), DEPLOY).await;
    for p in &pods {
        let lines = vec![FAILURE.to_string(), WRAPPED_429.to_string()];
        ns.attach_logs(
            p.metadata.name.as_deref().unwrap(),
            "app",
            &PodLog::lines(lines),
            None,
        )
        .await;
    }
    // Delete a pod with no grace while the triage starts: whichever way the race goes, the
    // triage must finish with a verdict rather than fail or hang.
    create_triage(&ns, metering_triage("vanish", "armada-cluster")).await;
    ns.kubectl_ok(&[
        "delete",
        "pod",
        pods[0].metadata.name.as_deref().unwrap(),
        "--grace-period=0",
        "--force",
        "--wait=false",
    ]);
    let t = wait_for_phase(
        &ns,
        "vanish",
        &["Escalated", "AwaitingApproval", "NoAction"],
        VERDICT,
    )
    .await;
    assert_eq!(t["status"]["classification"]["category"], "RateLimited");
}

#[tokio::test]
async fn a_huge_log_is_cut_at_the_byte_limit_with_bounded_memory() {
    let ns = TestNs::new("odd-huge").await;
    let limit: u64 = 4 * 1024 * 1024;
    let op = Operator::start(&ns, &["--log-byte-limit", &limit.to_string()]);
    let pods = ns.deploy(&Workload::new("armada-cluster", 1), DEPLOY).await;
    // About 300 MB of log as kwok stores it: 600k records of three lines, each a failure.
    let filler = "x".repeat(100);
    let mut lines = Vec::with_capacity(1_800_000);
    for i in 0..600_000 {
        lines.push(format!("{FAILURE} request {i} {filler}"));
        lines.push(WRAPPED_429.to_string());
        lines.push(format!("Worker metering started {i} {filler}"));
    }
    let log = PodLog::lines(lines).spread_over(Duration::from_secs(30 * 60));
    let pod = pods[0].metadata.name.as_deref().unwrap();
    ns.attach_logs(pod, "app", &log, None).await;
    let log_bytes = std::fs::metadata(
        ns.cluster
            .podlogs_dir
            .join(&ns.name)
            .join(pod)
            .join("app.log"),
    )
    .expect("the attached log file")
    .len();
    assert!(log_bytes > 250_000_000, "the log is only {log_bytes} bytes");
    create_triage(&ns, metering_triage("huge", "armada-cluster")).await;

    let t = wait_for_phase(
        &ns,
        "huge",
        &["Escalated", "AwaitingApproval", "NoAction"],
        VERDICT,
    )
    .await;
    let s = &t["status"];
    let bytes = s["evidence"]["bytesScanned"].as_u64().unwrap();
    assert!(bytes <= limit, "scanned {bytes} bytes, limit {limit}");
    assert!(bytes > limit / 2, "scanned only {bytes} bytes");
    assert_eq!(s["classification"]["category"], "RateLimited");
    assert!(
        s["evidence"]["pods"][0]["logError"]
            .as_str()
            .unwrap_or("")
            .contains("byte limit"),
        "the cut is recorded: {s}"
    );
    let status_len = s.to_string().len();
    assert!(status_len <= 32 * 1024, "status is {status_len} bytes");
    let peak = op.peak_rss_kib();
    eprintln!("operator peak RSS after a {log_bytes} byte log: {peak} KiB");
    assert!(peak < 200 * 1024, "operator peak RSS {peak} KiB");
}

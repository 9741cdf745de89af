//! Redaction end to end: one of each secret format the rule set knows (plus patterns added at
//! start, terminal escapes and control characters) planted in pod logs and a pod's Warning
//! Event; none of it may reach the AlertTriage's status, its Events or the operator's own log.

mod common;

use std::time::Duration;

use common::charted::Charted;
use common::operator::{create_triage, events_for, give_app_logs, wait_for_phase};
use common::scenario::metering_triage;
use common::{APPROVER, TestNs, Workload};
use k8s_openapi::api::core::v1::Event as CoreEvent;
use kube::api::PostParams;
use serde_json::{Value, json};

const DEPLOY: Duration = Duration::from_secs(90);
const VERDICT: Duration = Duration::from_secs(120);
const SIGNATURE: &str = "ErrorMeteringTokenExchangeFailure: IAM token exchange failure";

/// Failure records, each short enough that no sample is cut, so only redaction can hide a
/// secret, and the secrets in them (the parts that must never be seen again).
fn planted() -> (Vec<String>, Vec<&'static str>) {
    let records = [
        "key AKIAIOSFODNN7EXAMPLE aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "env DB_PASSWORD=Hunter2DbPass pwd=PwdValue77 cmd --password CliPass123",
        "api key: ApiKeySpace99 session_token: SessTok31 credential=CredVal32",
        "Cookie: sid=CookieSid42; theme=dark",
        "Set-Cookie: id=SetCookieVal88; Path=/; HttpOnly",
        r"-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBFpgpSECRETbody\n-----END PGP PRIVATE KEY BLOCK-----",
        r"-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEpemSECRETbody\n-----END EC PRIVATE KEY----- private_key=PrivKey33",
        "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8 github_pat_11ABCDEFGH0123456789abcdefXYZ",
        "glpat-AbCdEfGhIjKlMnOpQrSt12 xoxb-1234567890-SlackBotToken42",
        "redis://:RedisPass55@cache:6379 https://user:UrlPass66@example.com/x",
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJyZWRhY3QifQ.JwtSigValue Authorization: Bearer BearerTok0123456789abcdef",
        "Authorization: Basic QmFzaWNVc2VyOnBhc3M= customer CUST-123456 order ORDER#98765",
        r#"Authorization: token TokenAuth0123456789 body {"apikey": "JsonApiKey34"}"#,
        "\x1b[31mred\x1b[0m bell\x07 bidi\u{202e}txt pass\x1b[0mword=SplitPass36 \x1b]0;title\x07",
    ];
    let secrets = vec![
        "IOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI",
        "Hunter2DbPass",
        "PwdValue77",
        "CliPass123",
        "ApiKeySpace99",
        "SessTok31",
        "CredVal32",
        "CookieSid42",
        "SetCookieVal88",
        "lQOYBFpgpSECRETbody",
        "MHcCAQEEpemSECRETbody",
        "PrivKey33",
        "A1b2C3d4E5f6G7h8I9j0",
        "11ABCDEFGH0123456789",
        "AbCdEfGhIjKlMnOpQrSt12",
        "1234567890-SlackBotToken42",
        "RedisPass55",
        "UrlPass66",
        "JwtSigValue",
        "eyJzdWIiOiJyZWRhY3QifQ",
        "BearerTok0123456789abcdef",
        "QmFzaWNVc2VyOnBhc3M",
        "CUST-123456",
        "ORDER#98765",
        "TokenAuth0123456789",
        "JsonApiKey34",
        "SplitPass36",
        "EventPass37",
    ];
    let records = records.iter().map(|r| format!("{SIGNATURE} {r}")).collect();
    (records, secrets)
}

/// Strings of a JSON value with control characters or bidi overrides in them.
/// Newlines are allowed: the runbook's customer notice is written in lines on purpose.
fn controls_in(v: &Value, found: &mut Vec<String>) {
    let hides = |c: char| (c.is_control() && c != '\n') || ('\u{202a}'..='\u{202e}').contains(&c);
    match v {
        Value::String(s) if s.chars().any(hides) => found.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|i| controls_in(i, found)),
        Value::Object(map) => map.values().for_each(|i| controls_in(i, found)),
        _ => {}
    }
}

#[tokio::test]
async fn no_planted_secret_or_escape_reaches_status_events_or_the_operator_log() {
    let ns = TestNs::new("redaction").await;
    // Two patterns of the user's own, one per line, as the chart passes them.
    // The operator as the chart installs it (its ServiceAccount, RBAC and policies).
    let chart = Charted::install(&ns, APPROVER, &["leaderElection.enabled=false"]).await;
    let op = chart.start(
        &ns,
        "ato-0",
        &[],
        &[("ATO_REDACT_PATTERNS", "CUST-[0-9]{6}\nORDER#[0-9]+")],
    );
    let (records, secrets) = planted();
    // Three records per pod: every pod keeps up to three samples.
    let logs: Vec<Vec<String>> = records.chunks(3).map(<[String]>::to_vec).collect();
    let pods = ns
        .deploy(&Workload::new("armada-cluster", logs.len() as i32), DEPLOY)
        .await;
    give_app_logs(&ns, &pods, logs).await;
    // A pod's Warning Event is evidence too.
    let pod = &pods[0];
    let event: CoreEvent = serde_json::from_value(json!({
        "metadata": {"generateName": "planted-"},
        "involvedObject": {"kind": "Pod", "namespace": ns.name, "name": pod.metadata.name, "uid": pod.metadata.uid},
        "type": "Warning",
        "reason": "BackOff",
        "message": "\u{1b}[1mBack-off\u{1b}[0m restarting: password=EventPass37",
        "count": 1,
        "lastTimestamp": jiff::Timestamp::now().to_string(),
    }))
    .unwrap();
    ns.api::<CoreEvent>()
        .create(&PostParams::default(), &event)
        .await
        .expect("planting a Warning Event");

    create_triage(&ns, metering_triage("planted", "armada-cluster")).await;
    let t = wait_for_phase(
        &ns,
        "planted",
        &[
            "Escalated",
            "NoAction",
            "AwaitingApproval",
            "ApiKeyRotationRequired",
        ],
        VERDICT,
    )
    .await;
    let status = &t["status"];

    // The samples were kept (redacted), so the checks below are about redaction, not absence.
    let samples: Vec<String> = status["evidence"]["pods"]
        .as_array()
        .expect("evidence per pod")
        .iter()
        .flat_map(|p| p["samples"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    assert_eq!(
        samples.len(),
        records.len(),
        "every record kept: {samples:#?}"
    );
    for s in &samples {
        assert!(s.contains("[REDACTED]"), "a sample without a mark: {s}");
    }
    let status_text = status.to_string();
    assert!(
        status_text.contains("BackOff"),
        "the planted Event is in the evidence: {status_text}"
    );

    let events = events_for(&ns, "planted").await.join("\n");
    assert!(!events.is_empty(), "the triage has Events");
    let own_log = op.output();
    assert!(
        own_log.contains("triaged"),
        "the operator logged the triage"
    );
    for secret in &secrets {
        assert!(
            !status_text.contains(secret),
            "status leaks {secret}: {status_text}"
        );
        assert!(!events.contains(secret), "Events leak {secret}: {events}");
        assert!(!own_log.contains(secret), "the operator log leaks {secret}");
    }

    let mut found = Vec::new();
    controls_in(status, &mut found);
    assert!(found.is_empty(), "control characters in status: {found:?}");
    assert!(
        !events.chars().any(|c| c.is_control() && c != '\n'),
        "control characters in Events: {events:?}"
    );
    for line in own_log.lines() {
        assert!(
            !line.chars().any(char::is_control),
            "raw control in {line:?}"
        );
        assert!(!line.contains("\\u001b"), "escaped ESC in {line:?}");
    }
}

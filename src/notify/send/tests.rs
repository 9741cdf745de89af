use std::time::Duration;

use super::*;
use crate::crd::{
    Action, AlertTriageSpec, AlertTriageStatus, Category, Classification, Notification,
    Recommendation, Scope,
};

fn triage() -> AlertTriage {
    let mut t = AlertTriage::new("t1", AlertTriageSpec::default());
    t.metadata.uid = Some("uid-1".into());
    t.metadata.namespace = Some("ns".into());
    t.status = Some(AlertTriageStatus {
        runbook: Some("metering-token-exchange".into()),
        classification: Some(Classification {
            category: Category::new("RateLimited").unwrap(),
            http_status: Some(429),
            scope: Scope::AllPods,
            reason: "why".into(),
        }),
        recommendation: Some(Recommendation {
            action: Action::Escalate,
            team: Some("troutbridge".into()),
            reason: "rate limited; token=abcdefghijklmnopqrstuvwxyz0123456789".into(),
            next_steps: vec!["a <b> & c".into(), "x".repeat(5000)],
        }),
        notification: Some(Notification {
            title: "Notice".into(),
            body: "Body".into(),
            deliveries: vec![],
        }),
        ..AlertTriageStatus::default()
    });
    t
}

fn message(event: DeliveryEvent) -> Message {
    Message::new(&triage(), NotificationKind::Escalation, "k1", event)
}

#[test]
fn alertmanager_alert_has_routable_labels_and_ends_when_resolved() {
    let now = Timestamp::from_second(1_800_000_000).unwrap();
    let firing = alertmanager(
        &message(DeliveryEvent::Firing),
        now,
        Duration::from_secs(60),
    );
    let a = &firing[0];
    assert_eq!(a["labels"]["alertname"], "AlertTriageEscalation");
    assert_eq!(a["labels"]["team"], "troutbridge");
    assert_eq!(a["labels"]["severity"], "critical");
    assert_eq!(a["labels"]["triage"], "t1");
    assert_eq!(a["labels"]["category"], "RateLimited");
    assert_eq!(a["labels"]["action"], "Escalate");
    assert!(a["labels"].get("proposal").is_none());
    assert_eq!(a["annotations"]["command"], "kubectl triage why t1 -n ns");
    assert_eq!(a["endsAt"], "2027-01-15T08:05:00Z");
    let resolved = alertmanager(
        &message(DeliveryEvent::Resolved),
        now,
        Duration::from_secs(60),
    );
    assert_eq!(resolved[0]["endsAt"], now.to_string());
    assert_eq!(
        resolved[0]["labels"], a["labels"],
        "same labels: the same alert"
    );
}

#[test]
fn everything_sent_is_redacted() {
    let now = Timestamp::from_second(1_800_000_000).unwrap();
    let m = message(DeliveryEvent::Firing);
    for body in [
        alertmanager(&m, now, Duration::from_secs(60)),
        slack(&m),
        pagerduty(&m, "ROUTINGKEY"),
        webhook(&m, now),
    ] {
        let text = body.to_string();
        assert!(
            !text.contains("abcdefghijklmnopqrstuvwxyz0123456789"),
            "{text}"
        );
    }
}

#[test]
fn slack_stays_within_its_limits() {
    let s = slack(&message(DeliveryEvent::Firing));
    let blocks = s["blocks"].as_array().unwrap();
    assert!(blocks.len() <= 50);
    assert_eq!(blocks[0]["type"], "header");
    for b in blocks {
        if let Some(text) = b["text"]["text"].as_str() {
            let limit = if b["type"] == "header" { 150 } else { 3000 };
            assert!(text.chars().count() <= limit, "{b}");
        }
    }
    assert!(s.to_string().contains("a &lt;b&gt; &amp; c"));
}

#[test]
fn pagerduty_triggers_and_resolves_one_incident_per_triage() {
    let t = pagerduty(&message(DeliveryEvent::Firing), "RK");
    assert_eq!(t["routing_key"], "RK");
    assert_eq!(t["event_action"], "trigger");
    assert_eq!(t["dedup_key"], "uid-1");
    assert_eq!(t["payload"]["severity"], "critical");
    assert_eq!(t["payload"]["source"], "ns/t1");
    assert!(t["payload"]["summary"].as_str().unwrap().chars().count() <= 1024);
    let r = pagerduty(&message(DeliveryEvent::Resolved), "RK");
    assert_eq!(
        r,
        serde_json::json!({"routing_key": "RK", "event_action": "resolve", "dedup_key": "uid-1"})
    );
}

#[test]
fn severity_follows_the_alert_label_then_the_kind() {
    let mut t = triage();
    assert_eq!(severity(&t, NotificationKind::Escalation), "critical");
    assert_eq!(severity(&t, NotificationKind::ApprovalRequest), "warning");
    t.spec
        .alert
        .labels
        .insert("severity".into(), "Warning".into());
    assert_eq!(severity(&t, NotificationKind::Escalation), "warning");
    t.spec.alert.labels.insert("severity".into(), "p5".into());
    assert_eq!(severity(&t, NotificationKind::Escalation), "info");
    t.spec
        .alert
        .labels
        .insert("severity".into(), "whatever".into());
    assert_eq!(severity(&t, NotificationKind::ApiKeyRotation), "warning");
}

#[test]
fn the_signature_is_hmac_sha256_over_timestamp_and_body() {
    // RFC 4231 test case 2 ("Jefe"), with the message split as "<timestamp>.<body>".
    let sig = signature(b"Jefe", 1, b"ignored");
    assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64, "{sig}");
    let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
    mac.update(b"what do ya want for nothing?");
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        want,
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
    mac.update(b"1.ignored");
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(sig, format!("sha256={hex}"));
    assert_ne!(
        signature(b"Jefe", 2, b"ignored"),
        sig,
        "the timestamp is signed"
    );
}

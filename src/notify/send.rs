//! The payloads each kind of target receives, and the one HTTP client that posts them.
//!
//! Every text is redacted before it is sent; secrets (the PagerDuty routing key, the signing
//! key) are added after redaction and only where the receiver needs them.

use std::time::Duration;

use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jiff::Timestamp;
use serde_json::{Value, json};
use sha2::Sha256;

use super::config::Sink;
use crate::crd::{AlertTriage, DeliveryEvent, NotificationKind};
use crate::redact::redact;

/// How long one attempt may take, connection included.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// A firing Alertmanager alert ends this many re-post intervals after each post: a few lost
/// posts do not end it, a stopped operator's alerts expire.
const REPOSTS_AHEAD: u32 = 5;
/// Slack: a section block's text holds at most 3000 characters, a header's 150.
const SLACK_SECTION: usize = 3000;
const SLACK_HEADER: usize = 150;
/// PagerDuty: `payload.summary` holds at most 1024 characters.
const PAGERDUTY_SUMMARY: usize = 1024;
/// The signed webhook's headers.
pub const SIGNATURE_HEADER: &str = "x-triage-signature";
pub const TIMESTAMP_HEADER: &str = "x-triage-timestamp";
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// Everything a notification says, taken from the triage's status.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub kind: NotificationKind,
    pub event: DeliveryEvent,
    pub key: String,
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub runbook: String,
    pub team: String,
    pub category: String,
    pub action: String,
    pub severity: &'static str,
    pub reason: String,
    pub steps: Vec<String>,
    pub notice_title: String,
    pub notice_body: String,
    pub proposal: Option<String>,
    pub since: Timestamp,
}

impl Message {
    pub fn new(
        t: &AlertTriage,
        kind: NotificationKind,
        key: &str,
        event: DeliveryEvent,
    ) -> Message {
        let status = t.status.clone().unwrap_or_default();
        let recommendation = status.recommendation.as_ref();
        let steps = match (kind, status.api_key_rotation.as_ref()) {
            (NotificationKind::ApiKeyRotation, Some(r)) if !r.steps.is_empty() => r.steps.clone(),
            _ => recommendation
                .map(|r| r.next_steps.clone())
                .unwrap_or_default(),
        };
        let reason = match kind {
            NotificationKind::ApprovalRequest => status
                .proposal
                .as_ref()
                .map(|p| {
                    format!(
                        "{} of pod {} waits for approval until {}",
                        p.action.as_str(),
                        p.pod,
                        p.expires_at.0
                    )
                })
                .unwrap_or_default(),
            _ => recommendation
                .map(|r| r.reason.clone())
                .or_else(|| status.classification.as_ref().map(|c| c.reason.clone()))
                .unwrap_or_default(),
        };
        let notice = status.notification.clone().unwrap_or_default();
        Message {
            kind,
            event,
            key: key.to_string(),
            uid: t.metadata.uid.clone().unwrap_or_default(),
            name: t.metadata.name.clone().unwrap_or_default(),
            namespace: t.metadata.namespace.clone().unwrap_or_default(),
            runbook: status.runbook.clone().unwrap_or_default(),
            team: recommendation
                .and_then(|r| r.team.clone())
                .unwrap_or_default(),
            category: status
                .classification
                .as_ref()
                .map(|c| c.category.as_str().to_string())
                .unwrap_or_default(),
            action: recommendation
                .map(|r| r.action.as_str().to_string())
                .unwrap_or_default(),
            severity: severity(t, kind),
            reason,
            steps,
            notice_title: notice.title,
            notice_body: notice.body,
            proposal: status.proposal.as_ref().map(|p| p.id.clone()),
            since: t
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(Timestamp::UNIX_EPOCH, |c| c.0),
        }
    }

    pub fn command(&self) -> String {
        format!("kubectl triage why {} -n {}", self.name, self.namespace)
    }

    fn summary(&self) -> String {
        let what = match self.kind {
            NotificationKind::Escalation => "escalated",
            NotificationKind::ApiKeyRotation => "needs an API key rotation",
            NotificationKind::ApprovalRequest => "awaits approval",
        };
        let mut s = format!("AlertTriage {}/{} {what}", self.namespace, self.name);
        if !self.category.is_empty() {
            s.push_str(&format!(" ({})", self.category));
        }
        if !self.team.is_empty() && self.kind == NotificationKind::Escalation {
            s.push_str(&format!(": page {}", self.team));
        }
        s
    }
}

/// PagerDuty's four severities, from the alert's own `severity` label when it names one, else
/// by what is asked: an escalation pages (critical), the rest wait for a person (warning).
pub fn severity(t: &AlertTriage, kind: NotificationKind) -> &'static str {
    let label = t
        .spec
        .alert
        .labels
        .get("severity")
        .map(|s| s.to_ascii_lowercase());
    match label.as_deref() {
        Some("critical" | "page" | "p1") => "critical",
        Some("error" | "major" | "high" | "p2") => "error",
        Some("warning" | "minor" | "medium" | "p3") => "warning",
        Some("info" | "low" | "p4" | "p5") => "info",
        _ if kind == NotificationKind::Escalation => "critical",
        _ => "warning",
    }
}

/// Redacts every string in `value`, object keys included. Line by line: redaction turns
/// control characters into spaces, and the steps and notices are meant to be read as lines.
fn redacted(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(s.split('\n').map(redact).collect::<Vec<_>>().join("\n")),
        Value::Array(items) => Value::Array(items.into_iter().map(redacted).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (redact(&k).into_owned(), redacted(v)))
                .collect(),
        ),
        other => other,
    }
}

fn cut(s: &str, chars: usize) -> String {
    if s.chars().count() <= chars {
        return s.to_string();
    }
    let mut out: String = s.chars().take(chars.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn steps_text(steps: &[String]) -> String {
    steps
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{}. {s}", i + 1))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One alert for Alertmanager's `POST /api/v2/alerts`: labels existing routes can match,
/// annotations with what a person needs; `endsAt` ahead while firing, now once resolved.
pub fn alertmanager(m: &Message, now: Timestamp, repost: Duration) -> Value {
    let mut labels = serde_json::Map::new();
    let alertname = format!("AlertTriage{}", m.kind.as_str());
    for (k, v) in [
        ("alertname", alertname.as_str()),
        ("team", &m.team),
        ("severity", m.severity),
        ("namespace", &m.namespace),
        ("triage", &m.name),
        ("runbook", &m.runbook),
        ("category", &m.category),
        ("action", &m.action),
        (
            "proposal",
            m.proposal
                .as_deref()
                .filter(|_| m.kind == NotificationKind::ApprovalRequest)
                .unwrap_or_default(),
        ),
    ] {
        if !v.is_empty() {
            labels.insert(k.into(), v.into());
        }
    }
    let ends = match m.event {
        DeliveryEvent::Firing => {
            jiff::SignedDuration::try_from(repost.saturating_mul(REPOSTS_AHEAD))
                .ok()
                .and_then(|ahead| now.checked_add(ahead).ok())
                .unwrap_or(now)
        }
        DeliveryEvent::Resolved => now,
    };
    redacted(json!([{
        "labels": labels,
        "annotations": {
            "summary": m.summary(),
            "reason": m.reason,
            "next_steps": steps_text(&m.steps),
            "customer_notice": format!("{}\n\n{}", m.notice_title, m.notice_body).trim().to_string(),
            "command": m.command(),
            "idempotency_key": m.key,
        },
        "startsAt": m.since.min(now).to_string(),
        "endsAt": ends.to_string(),
    }]))
}

fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A Slack incoming-webhook message: `text` (the notification's fallback) and blocks, each
/// within Slack's limits.
pub fn slack(m: &Message) -> Value {
    let resolved = m.event == DeliveryEvent::Resolved;
    let title = if resolved {
        format!("Resolved: {}", m.summary())
    } else {
        m.summary()
    };
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": cut(&title, SLACK_HEADER)},
    })];
    let mut section = |label: &str, body: &str| {
        if !body.trim().is_empty() {
            blocks.push(json!({
                "type": "section",
                "text": {"type": "mrkdwn", "text": cut(&format!("*{label}*\n{}", slack_escape(body)), SLACK_SECTION)},
            }));
        }
    };
    if !resolved {
        section("Why", &m.reason);
        section("Next steps", &steps_text(&m.steps));
        section(
            "Customer notice",
            format!("{}\n{}", m.notice_title, m.notice_body).trim(),
        );
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": cut(&format!("`{}` · key {}", m.command(), m.key), SLACK_SECTION)}],
    }));
    redacted(json!({
        "text": cut(&slack_escape(&title), SLACK_SECTION),
        "blocks": blocks,
    }))
}

/// A PagerDuty Events API v2 event: `trigger` with the details, or `resolve`; one incident per
/// triage (`dedup_key` = its UID).
pub fn pagerduty(m: &Message, routing_key: &str) -> Value {
    let mut event = match m.event {
        DeliveryEvent::Firing => redacted(json!({
            "event_action": "trigger",
            "dedup_key": m.uid,
            "client": "alert-triage-operator",
            "payload": {
                "summary": cut(&m.summary(), PAGERDUTY_SUMMARY),
                "source": format!("{}/{}", m.namespace, m.name),
                "severity": m.severity,
                "component": m.runbook,
                "group": m.namespace,
                "class": m.category,
                "custom_details": {
                    "kind": m.kind.as_str(),
                    "team": m.team,
                    "action": m.action,
                    "reason": m.reason,
                    "next_steps": m.steps,
                    "customer_notice": format!("{}\n\n{}", m.notice_title, m.notice_body).trim().to_string(),
                    "command": m.command(),
                    "idempotency_key": m.key,
                },
            },
        })),
        DeliveryEvent::Resolved => json!({"event_action": "resolve", "dedup_key": m.uid}),
    };
    event["routing_key"] = routing_key.into();
    event
}

/// The generic webhook's JSON body.
pub fn webhook(m: &Message, now: Timestamp) -> Value {
    redacted(json!({
        "kind": m.kind.as_str(),
        "event": m.event.as_str(),
        "key": m.key,
        "time": now.to_string(),
        "triage": {"name": m.name, "namespace": m.namespace, "uid": m.uid},
        "runbook": m.runbook,
        "team": m.team,
        "category": m.category,
        "action": m.action,
        "severity": m.severity,
        "proposal": m.proposal,
        "reason": m.reason,
        "nextSteps": m.steps,
        "customerNotice": {"title": m.notice_title, "body": m.notice_body},
        "command": m.command(),
    }))
}

/// `sha256=<hex>` of HMAC-SHA256 over `<timestamp>.<body>` with the target's key: the
/// timestamp is signed too, so a receiver that refuses old timestamps refuses replays.
pub fn signature(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", crate::hex(&mac.finalize().into_bytes()))
}

/// Posts JSON to the targets.
#[derive(Clone)]
pub struct Poster {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Poster {
    pub fn new() -> std::io::Result<Poster> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Poster {
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// Sends `m` to `sink`. The error says what went wrong (a status code, a connection
    /// failure) without the URL, which may itself be a secret.
    pub async fn send(&self, sink: &Sink, m: &Message) -> Result<(), String> {
        let now = Timestamp::now();
        let (url, body) = match sink {
            Sink::Alertmanager { url, repost } => (url, alertmanager(m, now, *repost)),
            Sink::Slack { webhook_url } => (webhook_url, slack(m)),
            Sink::PagerDuty { url, routing_key } => (url, pagerduty(m, routing_key)),
            Sink::Webhook { url, .. } => (url, webhook(m, now)),
        };
        let body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        let mut headers = Vec::new();
        if let Sink::Webhook { signing_key, .. } = sink {
            let ts = now.as_second();
            headers.push((TIMESTAMP_HEADER, ts.to_string()));
            headers.push((
                SIGNATURE_HEADER,
                signature(signing_key.as_bytes(), ts, &body),
            ));
            headers.push((
                IDEMPOTENCY_HEADER,
                format!("{}.{}", m.key, m.event.as_str()),
            ));
        }
        let mut request = http::Request::post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "alert-triage-operator");
        for (k, v) in headers {
            request = request.header(k, v);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| "the request could not be built".to_string())?;
        let response = tokio::time::timeout(ATTEMPT_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| format!("no answer within {}s", ATTEMPT_TIMEOUT.as_secs()))?
            .map_err(|e| format!("connection failed: {}", chain(&e)))?;
        let status = response.status();
        // Drain the answer so the connection can be reused; its content is not needed.
        let _ = tokio::time::timeout(ATTEMPT_TIMEOUT, response.into_body().collect()).await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", status.as_u16()))
        }
    }
}

/// The error's causes, innermost last; hyper's own messages name no URL.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    redact(&parts.join(": ")).into_owned()
}

#[cfg(test)]
mod tests;

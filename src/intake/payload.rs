//! Alertmanager's webhook payload (version 4), read strictly where the intake depends on a
//! field and leniently everywhere else: fields Alertmanager adds in later versions
//! (`notification_reason`, `routeLabels`, ...) are ignored, never refused. A payload is
//! checked whole before anything is created, so a bad one never leaves a partial result.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Deserialize;

/// The only payload version this receiver understands.
pub const VERSION: &str = "4";
/// The longest label value or name kept; longer ones mark the payload as malformed.
const MAX_LABEL_CHARS: usize = 4096;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Notification {
    version: String,
    #[serde(default)]
    alerts: Vec<RawAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAlert {
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    starts_at: String,
    #[serde(default)]
    ends_at: Option<String>,
    #[serde(default, rename = "generatorURL")]
    generator_url: String,
    fingerprint: String,
}

/// One alert of a notification, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub starts_at: Timestamp,
    /// Set when the alert resolved.
    pub ended_at: Option<Timestamp>,
    pub generator_url: String,
    /// 16 lowercase hex digits, from the labels only: the same on every replica and re-fire.
    pub fingerprint: String,
}

/// Why a payload was refused (HTTP 400); the message names the field.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PayloadError {
    #[error("the body is not an Alertmanager webhook payload: {0}")]
    Json(String),
    #[error("payload version {0:?} is not supported; this receiver reads version \"4\"")]
    Version(String),
    #[error("alert {index}: {message}")]
    Alert { index: usize, message: String },
}

/// Reads and checks a whole notification.
pub fn parse(body: &[u8]) -> Result<Vec<Alert>, PayloadError> {
    let notification: Notification =
        serde_json::from_slice(body).map_err(|e| PayloadError::Json(e.to_string()))?;
    if notification.version != VERSION {
        return Err(PayloadError::Version(
            notification.version.chars().take(16).collect(),
        ));
    }
    notification
        .alerts
        .into_iter()
        .enumerate()
        .map(|(index, raw)| check(raw).map_err(|message| PayloadError::Alert { index, message }))
        .collect()
}

fn check(raw: RawAlert) -> Result<Alert, String> {
    let resolved = match raw.status.as_str() {
        "firing" => false,
        "resolved" => true,
        other => {
            return Err(format!(
                "status {:?} is neither \"firing\" nor \"resolved\"",
                other.chars().take(32).collect::<String>()
            ));
        }
    };
    let fingerprint = raw.fingerprint;
    if fingerprint.is_empty()
        || fingerprint.len() > 16
        || !fingerprint
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err("fingerprint must be 1 to 16 lowercase hex digits".into());
    }
    let name = match raw.labels.get("alertname") {
        Some(n) if !n.trim().is_empty() => n.clone(),
        _ => return Err("the alertname label is missing or blank".into()),
    };
    if let Some((k, _)) = raw
        .labels
        .iter()
        .find(|(k, v)| k.len() > MAX_LABEL_CHARS || v.len() > MAX_LABEL_CHARS)
    {
        return Err(format!(
            "label {:?} is longer than {MAX_LABEL_CHARS} bytes",
            k.chars().take(64).collect::<String>()
        ));
    }
    let starts_at = time(&raw.starts_at).ok_or("startsAt is not an RFC 3339 time")?;
    let ended_at = match (resolved, raw.ends_at.as_deref()) {
        (false, _) => None,
        (true, Some(t)) => Some(time(t).ok_or("endsAt is not an RFC 3339 time")?),
        (true, None) => return Err("a resolved alert has no endsAt".into()),
    };
    Ok(Alert {
        name,
        labels: raw.labels,
        starts_at,
        ended_at,
        generator_url: raw.generator_url,
        fingerprint,
    })
}

/// An RFC 3339 time after the zero time Alertmanager sends for "unset".
fn time(s: &str) -> Option<Timestamp> {
    s.parse::<Timestamp>().ok().filter(|t| t.as_second() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Alertmanager 0.34's payload shape, with the newer fields a receiver must tolerate.
    fn notification(alerts: &str) -> String {
        format!(
            r#"{{"receiver":"triage","status":"firing","alerts":[{alerts}],
            "groupLabels":{{"alertname":"X"}},"commonLabels":{{}},"commonAnnotations":{{}},
            "externalURL":"http://am:9093","version":"4","groupKey":"{{}}:{{alertname=\"X\"}}",
            "truncatedAlerts":0,"notification_reason":"new","routeLabels":{{}}}}"#
        )
    }

    const FIRING: &str = r#"{"status":"firing","labels":{"alertname":"ClusterSquadOrchestratorCallbackActionTimeErrors","service":"armada-orchestrator","namespace":"prod"},
        "annotations":{"summary":"s"},"startsAt":"2026-05-01T10:00:00.123Z","endsAt":"0001-01-01T00:00:00Z",
        "generatorURL":"http://prom/graph?g0.expr=x","fingerprint":"0a1b2c3d4e5f6789","extra":{"new":true}}"#;

    #[test]
    fn a_firing_alert_is_read_with_its_labels_and_times() {
        let alerts = parse(notification(FIRING).as_bytes()).unwrap();
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(a.name, "ClusterSquadOrchestratorCallbackActionTimeErrors");
        assert_eq!(a.labels["namespace"], "prod");
        assert_eq!(a.starts_at.to_string(), "2026-05-01T10:00:00.123Z");
        assert_eq!(
            a.ended_at, None,
            "the zero endsAt of a firing alert is no end"
        );
        assert_eq!(a.fingerprint, "0a1b2c3d4e5f6789");
        assert_eq!(a.generator_url, "http://prom/graph?g0.expr=x");
    }

    #[test]
    fn a_resolved_alert_carries_its_end() {
        let resolved = FIRING
            .replace(r#""status":"firing""#, r#""status":"resolved""#)
            .replace("0001-01-01T00:00:00Z", "2026-05-01T10:30:00Z");
        let alerts = parse(notification(&resolved).as_bytes()).unwrap();
        assert_eq!(
            alerts[0].ended_at.map(|t| t.to_string()).as_deref(),
            Some("2026-05-01T10:30:00Z")
        );
    }

    #[test]
    fn every_alert_of_a_group_is_read() {
        let second = FIRING.replace("0a1b2c3d4e5f6789", "ffff000011112222");
        let alerts = parse(notification(&format!("{FIRING},{second}")).as_bytes()).unwrap();
        assert_eq!(alerts.len(), 2);
        assert_eq!(alerts[1].fingerprint, "ffff000011112222");
    }

    #[test]
    fn malformed_payloads_say_what_is_wrong() {
        let cases = [
            (
                "not json".to_string(),
                "not an Alertmanager webhook payload",
            ),
            (r#"{"alerts":[]}"#.to_string(), "missing field `version`"),
            (
                notification(FIRING).replace(r#""version":"4""#, r#""version":"3""#),
                "version \"3\" is not supported",
            ),
            (
                notification(&FIRING.replace("0a1b2c3d4e5f6789", "../../etc")),
                "alert 0: fingerprint",
            ),
            (
                notification(&FIRING.replace(r#""status":"firing""#, r#""status":"odd""#)),
                "neither",
            ),
            (
                notification(&FIRING.replace("2026-05-01T10:00:00.123Z", "yesterday")),
                "startsAt",
            ),
            (
                notification(
                    &FIRING.replace("\"alertname\":\"ClusterSquad", "\"other\":\"ClusterSquad"),
                ),
                "alertname",
            ),
            (
                notification(
                    &FIRING
                        .replace(r#""status":"firing""#, r#""status":"resolved""#)
                        .replace(r#""endsAt":"0001-01-01T00:00:00Z","#, ""),
                ),
                "no endsAt",
            ),
            (
                notification(&FIRING.replace("armada-orchestrator", &"x".repeat(5000))),
                "longer than",
            ),
            (
                notification(&format!(
                    "{FIRING},{}",
                    FIRING.replace("\"fingerprint\":\"0a1b2c3d4e5f6789\",", "")
                )),
                "missing field `fingerprint`",
            ),
        ];
        for (body, expected) in cases {
            let err = parse(body.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(expected), "{err:?} lacks {expected:?}");
        }
    }

    #[test]
    fn odd_bytes_never_panic() {
        for body in [
            &b""[..],
            b"\xff\xfe",
            b"[]",
            b"{\"version\":4}",
            b"null",
            b"{\"version\":\"4\",\"alerts\":null}",
        ] {
            assert!(parse(body).is_err(), "{body:?}");
        }
        assert_eq!(parse(br#"{"version":"4","alerts":[]}"#).unwrap(), vec![]);
    }
}

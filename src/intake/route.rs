//! From one alert to the AlertTriage it becomes, or why it becomes none. Pure: the handler
//! only carries out what is decided here.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ObjectMeta;
use sha2::{Digest, Sha256};

use super::payload::Alert;
use crate::crd::{self, AlertTriage, AlertTriageSpec, Target};
use std::sync::Arc;

use tracing::warn;

use crate::controller::runbooks::Runbooks;
use crate::runbook::{Runbook, is_runbook_id};

/// Label carrying the alert's fingerprint on every triage the intake creates.
pub const FINGERPRINT_LABEL: &str = "triage.dev/fingerprint";
/// Label saying who created the triage; retention deletes only triages with this value.
pub const SOURCE_LABEL: &str = "triage.dev/source";
pub const SOURCE: &str = "alertmanager";
/// Annotation keeping the alert's link back to the rule that fired it.
pub const GENERATOR_URL_ANNOTATION: &str = "triage.dev/generator-url";
/// The alert label naming the namespace the alert is about.
pub const NAMESPACE_LABEL: &str = "namespace";
/// Object names are DNS labels.
const MAX_NAME: usize = 63;

/// Where alerts may become triages.
#[derive(Debug, Clone, Default)]
pub struct Namespaces {
    /// Namespaces an alert's `namespace` label may name; empty: any.
    pub allowed: Vec<String>,
    /// Where alerts without a `namespace` label go; none: they are refused.
    pub default: Option<String>,
}

/// The runbook for an alert whose triage would live in `namespace`: matched by the alert's
/// name and labels in the order a triage's own lookup uses (a Runbook there, a ClusterRunbook,
/// a built-in), else the catch-all runbook when one is configured (and exists). The one place
/// routing is decided.
pub fn route(
    runbooks: &Runbooks,
    namespace: &str,
    alert: &crd::Alert,
    catch_all: Option<&str>,
) -> Option<Arc<Runbook>> {
    runbooks
        .select(namespace, None, alert)
        .ok()
        .or_else(|| {
            let id = catch_all?;
            let chosen = runbooks.select(namespace, Some(id), alert);
            if let Err(e) = &chosen {
                warn!(
                    catch_all = id,
                    namespace,
                    error = e.message,
                    "the catch-all runbook cannot be used"
                );
            }
            chosen.ok()
        })
        .map(|c| c.runbook)
}

/// The catch-all runbook id from the operator's configuration, refused at start when it is not
/// a runbook id (a DNS label). Whether such a runbook exists is known only when an alert comes:
/// it may be a Runbook or ClusterRunbook applied later.
pub fn catch_all(id: Option<&str>) -> Result<Option<String>, String> {
    match id {
        None => Ok(None),
        Some(id) if is_runbook_id(id) => Ok(Some(id.to_string())),
        Some(id) => Err(format!(
            "--intake-catch-all-runbook: {id:?} is not a runbook id (a DNS label)"
        )),
    }
}

/// The namespace the alert's triage lives in. An alert that names a namespace goes there or
/// nowhere (never into the default, where its selector would pick another team's pods); the
/// error says why it is refused.
pub fn namespace(rules: &Namespaces, alert: &Alert) -> Result<String, String> {
    match alert.labels.get(NAMESPACE_LABEL) {
        Some(ns) if rules.allowed.is_empty() || rules.allowed.contains(ns) => Ok(ns.clone()),
        Some(ns) => Err(format!(
            "namespace {ns:?} is not one the intake may create triages in ({})",
            rules.allowed.join(", ")
        )),
        None => rules.default.clone().ok_or_else(|| {
            "the alert has no namespace label and no default namespace is configured".into()
        }),
    }
}

/// The triage's name: the runbook id, the fingerprint and a digest of `startsAt`. One firing
/// has one name on every replica and every repeat; a new firing of the same alert after it
/// resolved gets a new name, so it is a new triage with its own evidence and approval.
pub fn name(runbook: &str, alert: &Alert) -> String {
    let digest = Sha256::digest(alert.starts_at.to_string().as_bytes());
    let firing = crate::hex(&digest[..4]);
    let suffix = format!("-{}-{firing}", alert.fingerprint);
    let room = MAX_NAME - suffix.len();
    let prefix: String = runbook.chars().take(room).collect();
    format!("{}{suffix}", prefix.trim_end_matches('-'))
}

/// The AlertTriage for a firing alert routed to `runbook` in `namespace`.
pub fn triage(runbook: &Runbook, namespace: &str, alert: &Alert) -> AlertTriage {
    let spec_alert = spec_alert(alert);
    let selector = runbook.default_selector(&spec_alert);
    let mut annotations = BTreeMap::new();
    if !alert.generator_url.is_empty() {
        annotations.insert(
            GENERATOR_URL_ANNOTATION.to_string(),
            alert.generator_url.clone(),
        );
    }
    AlertTriage {
        metadata: ObjectMeta {
            name: Some(name(runbook.id(), alert)),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([
                (FINGERPRINT_LABEL.to_string(), alert.fingerprint.clone()),
                (SOURCE_LABEL.to_string(), SOURCE.to_string()),
            ])),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..ObjectMeta::default()
        },
        spec: AlertTriageSpec {
            alert: spec_alert,
            runbook: Some(runbook.id().to_string()),
            target: Target {
                namespace: None,
                selector,
                container: None,
            },
            window: None,
            approval: None,
            dry_run: false,
        },
        status: None,
    }
}

/// The alert as a triage's spec carries it.
pub fn spec_alert(alert: &Alert) -> crd::Alert {
    crd::Alert {
        name: alert.name.clone(),
        labels: alert.labels.clone(),
        starts_at: Some(Time(alert.starts_at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(name: &str, labels: &[(&str, &str)]) -> Alert {
        let mut labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.insert("alertname".into(), name.into());
        Alert {
            name: name.into(),
            labels,
            starts_at: "2026-05-01T10:00:00Z".parse().unwrap(),
            ended_at: None,
            generator_url: "http://prom/graph".into(),
            fingerprint: "0a1b2c3d4e5f6789".into(),
        }
    }

    fn routed(alert: &crd::Alert, catch_all: Option<&str>) -> Option<String> {
        route(&Runbooks::builtin_only(), "team-a", alert, catch_all).map(|r| r.id().to_string())
    }

    #[test]
    fn alerts_route_to_the_runbook_that_knows_them() {
        let orchestrator = alert("ClusterSquadOrchestratorCallbackActionTimeErrors", &[]);
        assert_eq!(
            routed(&spec_alert(&orchestrator), None).as_deref(),
            Some("orchestrator-callback-errors")
        );
        let metering = spec_alert(&alert("armada-cluster_error_metering_token_exchange", &[]));
        assert_eq!(
            routed(&metering, None).as_deref(),
            Some("metering-token-exchange")
        );
        let watchdog = spec_alert(&alert("Watchdog", &[]));
        assert!(routed(&watchdog, None).is_none());

        // A catch-all takes only what no runbook knows, and only when it exists.
        let fallback = Some("orchestrator-callback-errors");
        assert_eq!(
            routed(&watchdog, fallback).as_deref(),
            Some("orchestrator-callback-errors")
        );
        assert_eq!(
            routed(&metering, fallback).as_deref(),
            Some("metering-token-exchange")
        );
        assert!(routed(&watchdog, Some("not-applied-yet")).is_none());
    }

    #[test]
    fn a_catch_all_that_is_not_a_runbook_id_is_refused() {
        assert_eq!(catch_all(None), Ok(None));
        assert_eq!(catch_all(Some("generic")), Ok(Some("generic".to_string())));
        for bad in ["", "Generic", "-x", "x_y", &"a".repeat(64)] {
            let err = catch_all(Some(bad)).unwrap_err();
            assert!(err.contains("--intake-catch-all-runbook"), "{err}");
        }
    }

    #[test]
    fn namespaces_follow_the_rules() {
        let rules = Namespaces {
            allowed: vec!["prod".into(), "triage".into()],
            default: Some("triage".into()),
        };
        assert_eq!(
            namespace(&rules, &alert("A", &[("namespace", "prod")])),
            Ok("prod".into())
        );
        assert_eq!(namespace(&rules, &alert("A", &[])), Ok("triage".into()));
        let refused = namespace(&rules, &alert("A", &[("namespace", "kube-system")]));
        assert!(matches!(refused, Err(m) if m.contains("kube-system")));
        let no_default = Namespaces {
            default: None,
            ..rules
        };
        assert!(namespace(&no_default, &alert("A", &[])).is_err());
        let open = Namespaces::default();
        assert_eq!(
            namespace(&open, &alert("A", &[("namespace", "x")])),
            Ok("x".into())
        );
    }

    #[test]
    fn names_are_stable_dns_labels_per_firing() {
        let a = alert("A", &[]);
        let n = name("orchestrator-callback-errors", &a);
        assert_eq!(n, name("orchestrator-callback-errors", &a.clone()));
        assert!(n.starts_with("orchestrator-callback-errors-0a1b2c3d4e5f6789-"));
        let refire = Alert {
            starts_at: "2026-05-02T10:00:00Z".parse().unwrap(),
            ..a.clone()
        };
        assert_ne!(n, name("orchestrator-callback-errors", &refire));
        let long = name(&"r-".repeat(40), &a);
        assert!(long.len() <= 63, "{long}");
        let dns = regex::Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").unwrap();
        assert!(dns.is_match(&long) && dns.is_match(&n), "{long} {n}");
    }

    #[test]
    fn the_triage_carries_the_alert_and_the_runbooks_selector() {
        let a = alert(
            "armada-cluster_error_metering_token_exchange",
            &[("service", "armada-cluster")],
        );
        let runbook = route(&Runbooks::builtin_only(), "team-a", &spec_alert(&a), None).unwrap();
        let t = triage(&runbook, "prod", &a);
        let labels = t.metadata.labels.unwrap();
        assert_eq!(labels[FINGERPRINT_LABEL], "0a1b2c3d4e5f6789");
        assert_eq!(labels[SOURCE_LABEL], "alertmanager");
        assert_eq!(
            t.metadata.annotations.unwrap()[GENERATOR_URL_ANNOTATION],
            "http://prom/graph"
        );
        assert_eq!(t.metadata.namespace.as_deref(), Some("prod"));
        assert_eq!(t.spec.runbook.as_deref(), Some("metering-token-exchange"));
        assert_eq!(t.spec.alert.labels["service"], "armada-cluster");
        assert_eq!(t.spec.alert.starts_at, Some(Time(a.starts_at)));
        let selector = t.spec.target.selector.unwrap();
        assert_eq!(selector.match_labels["app"], "armada-cluster");
        assert!(
            t.spec.approval.is_none(),
            "a human approves, never the intake"
        );
    }
}

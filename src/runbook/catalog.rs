//! The runbooks the operator knows, and choosing one for an alert.

use std::sync::{Arc, LazyLock};

use serde::Deserialize;

use super::RunbookError;
use super::model::Runbook;
use crate::crd::Alert;

const BUILTIN_YAML: &[&str] = &[
    include_str!("builtin/metering-token-exchange.yaml"),
    include_str!("builtin/orchestrator-callback-errors.yaml"),
];

static BUILTIN: LazyLock<Catalog> = LazyLock::new(|| {
    // Shipped in the binary and covered by a unit test, so failing here is a build defect.
    // That test also compiles their regexes, so they are not compiled here just to be checked:
    // that took longer than the rest of a `replay` start (about 10 ms), for every start.
    Catalog::parse(BUILTIN_YAML, Runbook::validate).expect("built-in runbooks are valid")
});

/// A set of validated runbooks, in the order they were given.
#[derive(Debug, Clone)]
pub struct Catalog {
    runbooks: Vec<Arc<Runbook>>,
}

/// Why no runbook could be chosen for a triage.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("unknown runbook {id:?}; known runbooks: {}", known.join(", "))]
    Unknown { id: String, known: Vec<String> },
    #[error("no runbook matches alert {alert:?}; set spec.runbook to one of: {}", known.join(", "))]
    NoMatch { alert: String, known: Vec<String> },
}

impl Catalog {
    /// The runbooks shipped with the binary, parsed once.
    pub fn builtin() -> &'static Catalog {
        &BUILTIN
    }

    /// Parses and validates runbooks; each string may hold several `---`-separated documents,
    /// each a bare runbook (like the built-in files) or a `Runbook`/`ClusterRunbook` manifest.
    pub fn from_yaml(docs: &[&str]) -> Result<Catalog, RunbookError> {
        Catalog::parse(docs, Runbook::check)
    }

    /// As [`Catalog::from_yaml`], with `check` for each bare runbook.
    fn parse(
        docs: &[&str],
        check: fn(&Runbook) -> Result<(), RunbookError>,
    ) -> Result<Catalog, RunbookError> {
        let mut runbooks: Vec<Arc<Runbook>> = Vec::new();
        let documents = || {
            docs.iter()
                .flat_map(|d| serde_yaml::Deserializer::from_str(d))
        };
        let values = documents().map(serde_yaml::Value::deserialize);
        for (i, (document, value)) in documents().zip(values).enumerate() {
            let parse = |source| RunbookError::Parse {
                index: i + 1,
                source,
            };
            let runbook = match manifest_spec(value.map_err(parse)?) {
                // Through text again, so errors name the field inside `spec`.
                Some(spec) => Runbook::load(&serde_yaml::to_string(&spec).map_err(parse)?)?,
                None => {
                    let runbook = Runbook::deserialize(document).map_err(parse)?;
                    check(&runbook)?;
                    runbook
                }
            };
            if runbooks.iter().any(|r| r.id == runbook.id) {
                return Err(RunbookError::Duplicate { id: runbook.id });
            }
            runbooks.push(Arc::new(runbook));
        }
        Ok(Catalog { runbooks })
    }

    pub fn runbooks(&self) -> &[Arc<Runbook>] {
        &self.runbooks
    }

    pub fn ids(&self) -> Vec<&str> {
        self.runbooks.iter().map(|r| r.id()).collect()
    }

    /// The requested runbook, or else the first whose alert patterns match the alert.
    pub fn select(
        &self,
        requested: Option<&str>,
        alert: &Alert,
    ) -> Result<&Arc<Runbook>, SelectError> {
        let known = || self.ids().into_iter().map(String::from).collect();
        match requested {
            Some(id) => {
                self.runbooks
                    .iter()
                    .find(|r| r.id == id)
                    .ok_or_else(|| SelectError::Unknown {
                        id: id.to_string(),
                        known: known(),
                    })
            }
            None => self
                .runbooks
                .iter()
                .find(|r| r.matches_alert(alert))
                .ok_or_else(|| SelectError::NoMatch {
                    alert: alert.name.clone(),
                    known: known(),
                }),
        }
    }
}

/// The `spec` of a Runbook or ClusterRunbook manifest; None for a bare runbook document.
fn manifest_spec(doc: serde_yaml::Value) -> Option<serde_yaml::Value> {
    let kind = doc.get("kind").and_then(serde_yaml::Value::as_str);
    let group = doc
        .get("apiVersion")
        .and_then(serde_yaml::Value::as_str)
        .and_then(|v| v.split_once('/'))
        .map(|(group, _)| group);
    match (group, kind) {
        (Some("triage.dev"), Some("Runbook" | "ClusterRunbook")) => {
            Some(doc.get("spec").cloned().unwrap_or_default())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::runbook::RunbookError;

    fn alert(name: &str, labels: &[(&str, &str)]) -> Alert {
        Alert {
            name: name.to_string(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            starts_at: None,
        }
    }

    fn orchestrator_alert() -> Alert {
        alert(
            "ClusterSquadOrchestratorCallbackActionTimeErrors",
            &[
                ("operation", "DeleteClientID"),
                ("reason_code", "ErrorUnclassified"),
                ("service", "armada-orchestrator"),
            ],
        )
    }

    #[test]
    fn builtins_parse_and_compile() {
        let catalog = Catalog::builtin();
        for runbook in catalog.runbooks() {
            runbook
                .check()
                .expect("every regex of a built-in runbook compiles");
        }
        assert_eq!(
            catalog.ids(),
            ["metering-token-exchange", "orchestrator-callback-errors"]
        );
        let metering = catalog
            .select(Some("metering-token-exchange"), &alert("x", &[]))
            .unwrap();
        metering
            .compile(&alert("armada-cluster_error_metering_token_exchange", &[]))
            .expect("metering compiles without labels");
        let orchestrator = catalog
            .select(Some("orchestrator-callback-errors"), &alert("x", &[]))
            .unwrap();
        orchestrator
            .compile(&orchestrator_alert())
            .expect("orchestrator compiles");

        assert_eq!(metering.default_window(), Duration::from_secs(3600));
        assert_eq!(metering.title(), "Metering IAM Token Exchange Failures");
        assert!(metering.env_info_spec().is_none());
        let env = orchestrator.env_info_spec().unwrap();
        assert_eq!(
            (
                env.config_map.as_str(),
                env.account_key.as_str(),
                env.resource_group_key.as_str()
            ),
            (
                "armada-info",
                "MULTISHIFT_SRE_ACCOUNT_ID",
                "MULTISHIFT_SRE_RESOURCE_GROUP_ID"
            )
        );
        let (key, services) = metering.related_services().unwrap();
        assert_eq!(key, "app");
        assert_eq!(
            services,
            [
                "armada-api",
                "armada-cluster",
                "armada-billing",
                "armada-provider-riaas",
                "armada-orchestrator"
            ]
        );
        assert!(orchestrator.related_services().is_none());
    }

    #[test]
    fn orchestrator_needs_operation_and_reason_code() {
        let orchestrator = Catalog::builtin()
            .select(Some("orchestrator-callback-errors"), &alert("x", &[]))
            .unwrap();
        let no_operation = alert(
            "ClusterSquadOrchestratorCallbackActionTimeErrors",
            &[("reason_code", "E")],
        );
        let err = orchestrator
            .compile(&no_operation)
            .err()
            .expect("operation is required");
        assert!(
            matches!(&err, RunbookError::MissingLabel { label, .. } if label == "operation"),
            "{err}"
        );
        assert!(err.to_string().contains("`operation`"), "{err}");
    }

    #[test]
    fn alerts_select_their_runbook() {
        let catalog = Catalog::builtin();
        let cases = [
            (
                "armada-cluster_error_metering_token_exchange",
                vec![],
                "metering-token-exchange",
            ),
            (
                "armada-billing_error_metering_token_exchange",
                vec![],
                "metering-token-exchange",
            ),
            (
                "bluemix.containers-kubernetes.armada-cluster_error_metering_token_exchange.us-south",
                vec![],
                "metering-token-exchange",
            ),
            (
                "ClusterSquadOrchestratorCallbackActionTimeErrors",
                vec![],
                "orchestrator-callback-errors",
            ),
            (
                "SomethingElse",
                vec![(
                    "alert_situation",
                    "DeleteClientID_callback_action_time_errors",
                )],
                "orchestrator-callback-errors",
            ),
        ];
        for (name, labels, want) in cases {
            assert_eq!(
                catalog.select(None, &alert(name, &labels)).unwrap().id(),
                want,
                "{name}"
            );
        }
        let requested = catalog.select(
            Some("orchestrator-callback-errors"),
            &alert("armada-cluster_error_metering_token_exchange", &[]),
        );
        assert_eq!(requested.unwrap().id(), "orchestrator-callback-errors");
    }

    #[test]
    fn selection_errors_name_the_known_runbooks() {
        let catalog = Catalog::builtin();
        let unknown = catalog.select(Some("nope"), &alert("x", &[])).unwrap_err();
        let no_match = catalog.select(None, &alert("DiskFull", &[])).unwrap_err();
        for err in [unknown, no_match] {
            let text = err.to_string();
            assert!(
                text.contains("metering-token-exchange")
                    && text.contains("orchestrator-callback-errors"),
                "{text}"
            );
        }
    }

    #[test]
    fn default_selectors() {
        let catalog = Catalog::builtin();
        let metering = catalog
            .select(Some("metering-token-exchange"), &alert("x", &[]))
            .unwrap();
        let with_service = alert("a", &[("service", "armada-billing")]);
        let selector = metering.default_selector(&with_service).unwrap();
        assert_eq!(selector.to_query(), "app=armada-billing");
        assert!(metering.default_selector(&alert("a", &[])).is_none());
        assert!(
            metering
                .default_selector(&alert("a", &[("service", "not a label value")]))
                .is_none()
        );
        let orchestrator = catalog
            .select(Some("orchestrator-callback-errors"), &alert("x", &[]))
            .unwrap();
        assert_eq!(
            orchestrator
                .default_selector(&alert("a", &[]))
                .unwrap()
                .to_query(),
            "app=armada-orchestrator"
        );
    }

    const MINIMAL: &str = r#"
id: tiny
title: Tiny
window: 30m
alerts: {names: [Tiny*]}
team: someone
json: {timeFields: [ts], detailFields: [msg]}
signature: {contains: [BOOM]}
httpStatus: ['\((\d{3})\)']
categories:
  - category: AuthFailure
    httpStatus: [401]
    recommend: {action: RecordApiKeyRotation, reason: 'rotate {count}'}
  - category: Unclassified
    recommend: {action: Escalate, reason: 'page {labels.team}'}
"#;

    #[test]
    fn invalid_runbooks_are_refused_with_a_reason() {
        let ok = Catalog::from_yaml(&[MINIMAL]).expect("minimal runbook is valid");
        assert_eq!(ok.ids(), ["tiny"]);
        let cases: &[(&str, &str, &str)] = &[
            ("window: 30m", "window: 25h", "between 1m and 24h"),
            ("id: tiny", "id: Tiny_Runbook", "id must be"),
            ("id: tiny", "id: tiny\nextra: 1", "unknown field"),
            ("contains: [BOOM]", "contains: []", "signature.contains"),
            (
                "contains: [BOOM]",
                "contains: ['{count}']",
                "may only use {labels.<name>}",
            ),
            (r"'\((\d{3})\)'", r"'\(\d{3}\)'", "needs a capture group"),
            (r"'\((\d{3})\)'", r"'(unclosed'", "httpStatus"),
            // Too expensive to build: refused, never run.
            (
                r"'\((\d{3})\)'",
                r"'(\w{1000}){1000}'",
                "exceeds size limit",
            ),
            (
                "reason: 'rotate {count}'",
                "reason: 'rotate {cuont}'",
                "unknown placeholder {cuont}",
            ),
            (
                "action: RecordApiKeyRotation",
                "action: DeletePod",
                "DeletePod only in recommendIfSinglePod",
            ),
            (
                "category: Unclassified",
                "category: NoEvidence",
                "NoEvidence",
            ),
            (
                "category: Unclassified",
                "category: AuthFailure",
                "appears twice",
            ),
            ("    httpStatus: [401]\n", "", "only the last one may"),
            (
                "httpStatus: [401]",
                "httpStatus: [4010]",
                "not an HTTP status",
            ),
            (
                "alerts: {names: [Tiny*]}",
                "alerts: {}",
                "alerts needs names or labels",
            ),
        ];
        for (from, to, want) in cases {
            assert!(MINIMAL.contains(from), "case {from:?} does not apply");
            let doc = MINIMAL.replacen(from, to, 1);
            let err = Catalog::from_yaml(&[&doc])
                .err()
                .unwrap_or_else(|| panic!("{to:?} accepted"));
            assert!(err.to_string().contains(want), "{to:?}: {err}");
        }
        let manifest = format!(
            "apiVersion: triage.dev/v1alpha1\nkind: ClusterRunbook\nmetadata: {{name: x}}\nspec:\n{}",
            MINIMAL
                .lines()
                .map(|l| format!("  {l}\n"))
                .collect::<String>()
        );
        assert_eq!(Catalog::from_yaml(&[&manifest]).unwrap().ids(), ["tiny"]);
        let bad = manifest.replace("category: AuthFailure", "category: Auth Failure");
        let err = Catalog::from_yaml(&[&bad]).err().unwrap().to_string();
        assert!(
            err.starts_with("spec: categories[0]: category \"Auth Failure\""),
            "{err}"
        );
        let duplicate = Catalog::from_yaml(&[MINIMAL, MINIMAL]).expect_err("duplicate id");
        assert!(
            matches!(duplicate, RunbookError::Duplicate { .. }),
            "{duplicate}"
        );
        let two_docs = format!(
            "{MINIMAL}---\n{}",
            MINIMAL.replace("id: tiny", "id: tiny-two")
        );
        assert_eq!(
            Catalog::from_yaml(&[&two_docs]).unwrap().ids(),
            ["tiny", "tiny-two"]
        );
    }
}

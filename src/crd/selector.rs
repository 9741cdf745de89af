//! A label selector with the same YAML shape as Kubernetes' `LabelSelector`, but with a schema
//! tight enough for the API server to refuse a malformed one (unknown operator, values where
//! none belong, invalid keys) instead of the controller finding out later.

use std::collections::BTreeMap;
use std::fmt::Write;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const LABEL_VALUE: &str = r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$";
const LABEL_KEY: &str = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$";

/// Selects pods by labels; both parts must match (AND).
///
/// It must select positively: at least one label required to equal a value (a `matchLabels`
/// entry or an `In` expression). `NotIn`, `Exists` and `DoesNotExist` alone are satisfied by
/// pods nobody meant, e.g. `x DoesNotExist` by every pod of the namespace.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && self.matchExpressions.exists(e, e.operator == 'In' && has(e.values) && size(e.values) > 0))").message("target.selector must require at least one label to have a value (a matchLabels entry or a matchExpressions entry with operator In); with only NotIn, Exists or DoesNotExist, or nothing, it could match every pod of the namespace"))]
pub struct TargetSelector {
    /// Label key to exact value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "match_labels_schema")]
    pub match_labels: BTreeMap<String, String>,

    /// Set-based requirements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub match_expressions: Vec<SelectorRequirement>,
}

/// One set-based requirement.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("(self.operator in ['In', 'NotIn']) == (has(self.values) && size(self.values) > 0)").message("values must be non-empty for In and NotIn, and absent for Exists and DoesNotExist"))]
pub struct SelectorRequirement {
    /// The label key.
    #[schemars(length(min = 1, max = 253), regex(pattern = LABEL_KEY))]
    pub key: String,
    /// How the key relates to the values.
    pub operator: SelectorOperator,
    /// Values for `In` and `NotIn`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 63)))]
    pub values: Vec<String>,
}

/// Values are checked by pattern rather than CEL: a CEL rule over every value of a map costs
/// more than the API server's budget allows.
fn match_labels_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 32,
        "additionalProperties": {
            "type": "string",
            "maxLength": 63,
            "pattern": LABEL_VALUE,
        },
        "x-kubernetes-validations": [{
            "rule": format!("self.all(k, size(k) <= 253 && k.matches('{}'))", LABEL_KEY.replace('\\', "\\\\")),
            "message": "matchLabels keys must be valid label keys (an optional DNS prefix and '/', then at most 63 letters, digits, '-', '_', '.')",
        }],
    })
}

#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl TargetSelector {
    pub fn from_labels<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        TargetSelector {
            match_labels: labels
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            match_expressions: Vec::new(),
        }
    }

    /// The selector in the API's query syntax, e.g. `app=x,tier in (a,b),!canary`.
    pub fn to_query(&self) -> String {
        let mut parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for e in &self.match_expressions {
            let mut s = String::new();
            match e.operator {
                SelectorOperator::In => {
                    let _ = write!(s, "{} in ({})", e.key, e.values.join(","));
                }
                SelectorOperator::NotIn => {
                    let _ = write!(s, "{} notin ({})", e.key, e.values.join(","));
                }
                SelectorOperator::Exists => s.push_str(&e.key),
                SelectorOperator::DoesNotExist => {
                    let _ = write!(s, "!{}", e.key);
                }
            }
            parts.push(s);
        }
        parts.join(",")
    }

    /// Whether a pod with these labels is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|e| {
                let value = labels.get(&e.key);
                match e.operator {
                    SelectorOperator::In => value.is_some_and(|v| e.values.contains(v)),
                    SelectorOperator::NotIn => value.is_none_or(|v| !e.values.contains(v)),
                    SelectorOperator::Exists => value.is_some(),
                    SelectorOperator::DoesNotExist => value.is_none(),
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn query_and_matching_agree() {
        let sel = TargetSelector {
            match_labels: labels(&[("app", "metering")]),
            match_expressions: vec![
                SelectorRequirement {
                    key: "tier".into(),
                    operator: SelectorOperator::In,
                    values: vec!["a".into(), "b".into()],
                },
                SelectorRequirement {
                    key: "canary".into(),
                    operator: SelectorOperator::DoesNotExist,
                    values: vec![],
                },
            ],
        };
        assert_eq!(sel.to_query(), "app=metering,tier in (a,b),!canary");
        assert!(sel.matches(&labels(&[("app", "metering"), ("tier", "a")])));
        assert!(!sel.matches(&labels(&[("app", "metering"), ("tier", "c")])));
        assert!(!sel.matches(&labels(&[
            ("app", "metering"),
            ("tier", "a"),
            ("canary", "1")
        ])));
        assert!(!sel.matches(&labels(&[("tier", "a")])));
    }

    #[test]
    fn notin_and_exists() {
        let sel = TargetSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![
                SelectorRequirement {
                    key: "zone".into(),
                    operator: SelectorOperator::NotIn,
                    values: vec!["x".into()],
                },
                SelectorRequirement {
                    key: "app".into(),
                    operator: SelectorOperator::Exists,
                    values: vec![],
                },
            ],
        };
        assert_eq!(sel.to_query(), "zone notin (x),app");
        assert!(sel.matches(&labels(&[("app", "a")])));
        assert!(!sel.matches(&labels(&[("app", "a"), ("zone", "x")])));
        assert!(!sel.matches(&labels(&[("zone", "y")])));
    }
}

//! `Runbook` (namespaced) and `ClusterRunbook` (cluster-scoped) resources: the runbook model of
//! [`super::model::Runbook`], the same one the built-in data files use, as objects teams apply
//! with kubectl or GitOps. The operator checks each generation and reports it in status.
//!
//! The kube derive names each root type after its kind, so the namespaced one is `Runbook`
//! here and is exported as `RunbookResource`, apart from the model.

// kube's printcolumn(...) entries repeat the same keys, which clippy mistakes for duplicates.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A runbook for the AlertTriages in its namespace; overrides a ClusterRunbook or built-in
/// runbook of the same id there.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "triage.dev",
    version = "v1alpha1",
    kind = "Runbook",
    plural = "runbooks",
    namespaced,
    status = "RunbookStatus",
    doc = "A runbook for the AlertTriages in its namespace (same model as the built-in runbooks).",
    printcolumn(name = "Id", type_ = "string", json_path = ".spec.id"),
    printcolumn(name = "Alerts", type_ = "string", json_path = ".spec.alerts.names"),
    printcolumn(
        name = "Categories",
        type_ = "string",
        json_path = ".status.categories"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(transparent)]
pub struct RunbookSpec(pub super::model::Runbook);

/// A runbook for AlertTriages in every namespace; overrides a built-in runbook of the same id.
/// Cluster-admin only: it decides what every namespace's triages conclude.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "triage.dev",
    version = "v1alpha1",
    kind = "ClusterRunbook",
    plural = "clusterrunbooks",
    status = "RunbookStatus",
    doc = "A runbook for AlertTriages in every namespace (same model as the built-in runbooks).",
    printcolumn(name = "Id", type_ = "string", json_path = ".spec.id"),
    printcolumn(name = "Alerts", type_ = "string", json_path = ".spec.alerts.names"),
    printcolumn(
        name = "Categories",
        type_ = "string",
        json_path = ".status.categories"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(transparent)]
pub struct ClusterRunbookSpec(pub super::model::Runbook);

/// What the operator found checking the runbook; written by the operator only.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunbookStatus {
    /// The generation of spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The categories a verdict of this runbook can name, in order of precedence (for the
    /// printer column: a column shows one value of a list inside `spec`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// `Ready`: True when the runbook is valid and used; False with reason `Invalid` and the
    /// field and error in the message when it is not used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::crd::conditions_schema")]
    pub conditions: Vec<Condition>,
}

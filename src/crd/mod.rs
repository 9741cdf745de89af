//! The `AlertTriage` custom resource (`triage.dev/v1alpha1`).
//!
//! Field names here are the public API contract (see DESIGN.md): users, docs and tests rely on
//! them. Doc comments become the CRD's descriptions, so `kubectl explain` reads them to users.

// kube's printcolumn(...) entries repeat the same keys, which clippy mistakes for duplicates.
#![allow(clippy::duplicated_attributes)]

mod selector;

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use selector::{SelectorOperator, SelectorRequirement, TargetSelector};

/// An alert to triage: the controller gathers evidence for it, applies a runbook and records the
/// verdict in status. It may delete one pod, and only after a human approves that exact proposal.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "triage.dev",
    version = "v1alpha1",
    kind = "AlertTriage",
    plural = "alerttriages",
    shortname = "triage",
    namespaced,
    status = "AlertTriageStatus",
    doc = "An alert to triage with a runbook; the verdict is recorded in status.",
    printcolumn(name = "Alert", type_ = "string", json_path = ".spec.alert.name"),
    printcolumn(name = "Runbook", type_ = "string", json_path = ".status.runbook"),
    printcolumn(
        name = "Category",
        type_ = "string",
        json_path = ".status.classification.category"
    ),
    printcolumn(
        name = "Scope",
        type_ = "string",
        json_path = ".status.classification.scope"
    ),
    printcolumn(
        name = "Action",
        type_ = "string",
        json_path = ".status.recommendation.action"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AlertTriageSpec {
    /// The firing alert, as the alerting system reported it.
    pub alert: Alert,

    /// The runbook to apply, by id (built in: `metering-token-exchange`,
    /// `orchestrator-callback-errors`). When omitted, the runbook whose alert patterns match
    /// `alert.name` is chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub runbook: Option<String>,

    /// Which pods the evidence is gathered from.
    #[serde(default)]
    pub target: Target,

    /// How much log to read, as a duration between 1m and 24h (e.g. `30m`, `1h`, `1h30m`).
    /// Defaults to the runbook's window. The window ends now, or at `alert.startsAt` plus the
    /// window when that is earlier (an alert triaged late is judged by its own window, not by
    /// what happened after it), and starts one window before its end, or 5 minutes before
    /// `alert.startsAt` when that is earlier (so the lines that fired the alert are read).
    /// `status.evidence.since` and `until` record exactly what was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 2, max = 16),
        regex(pattern = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$")
    )]
    #[x_kube(validation = kube::core::Rule::new("duration(self) >= duration('1m') && duration(self) <= duration('24h')").message("window must be a duration between 1m and 24h, e.g. 30m or 1h"))]
    pub window: Option<String>,

    /// Approves exactly one proposal: `proposal` must equal the current `status.proposal.id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,

    /// Plan and record only: never act, even when approved.
    #[serde(default)]
    pub dry_run: bool,
}

/// The alert as received.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// The alert's name, e.g. `armada-cluster_error_metering_token_exchange` or
    /// `ClusterSquadOrchestratorCallbackActionTimeErrors`.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = kube::core::Rule::new("self.trim() != ''").message("alert.name must not be blank"))]
    pub name: String,

    /// Every label the alert carried (service, region, operation, reason_code, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,

    /// When the alert started firing; anchors the evidence window (see `window`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<Time>,
}

/// Where the evidence lives.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// Namespace of the pods; defaults to the AlertTriage's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: Option<String>,

    /// Label selector for the pods (same shape as a Kubernetes LabelSelector). When omitted,
    /// the runbook's default selector is used; a runbook without one needs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<TargetSelector>,

    /// Only read this container's logs (and its previous instance's); all containers
    /// otherwise. `status.evidence` names the containers read and those skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub container: Option<String>,
}

/// A human's approval of one proposal.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// The id of the proposal being approved (`status.proposal.id`).
    #[schemars(length(min = 1, max = 128))]
    pub proposal: String,
    /// Who approves: the requesting user's name (the admission policy can enforce this).
    #[schemars(length(min = 1, max = 253))]
    pub approved_by: String,
}

/// Where a triage stands.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Gathering,
    AwaitingApproval,
    Remediating,
    Remediated,
    RemediationFailed,
    ApiKeyRotationRequired,
    Escalated,
    NoAction,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Gathering => "Gathering",
            Phase::AwaitingApproval => "AwaitingApproval",
            Phase::Remediating => "Remediating",
            Phase::Remediated => "Remediated",
            Phase::RemediationFailed => "RemediationFailed",
            Phase::ApiKeyRotationRequired => "ApiKeyRotationRequired",
            Phase::Escalated => "Escalated",
            Phase::NoAction => "NoAction",
        }
    }
}

/// The kind of failure the runbook recognised: the runbook's own word for it (built in:
/// `RateLimited`, `AuthFailure`, `NetworkFailure`, `ClientIdNotAuthorized`, `Unclassified`), or
/// `NoEvidence` when nothing matched. 1-63 letters, digits or '-', starting with a letter.
#[derive(Serialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(transparent)]
pub struct Category(Cow<'static, str>);

impl Category {
    /// The engine's verdict when no failure record was found; no runbook rule may use it.
    pub const NO_EVIDENCE: Category = Category(Cow::Borrowed("NoEvidence"));

    /// A category name as a runbook or a status spells it, checked against the schema's
    /// pattern so a runbook file fails to load exactly as the API server would refuse it.
    pub fn new(name: &str) -> Result<Category, String> {
        let ok = name.len() <= 63
            && name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !name.ends_with('-');
        if ok {
            Ok(Category(Cow::Owned(name.to_string())))
        } else {
            Err(format!(
                "category {name:?} must be 1-63 letters, digits or '-', starting with a letter and not ending with '-'"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Category {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let name = String::deserialize(de)?;
        Category::new(&name).map_err(serde::de::Error::custom)
    }
}

/// Kept in step with [`Category::new`].
pub const CATEGORY_PATTERN: &str = "^[A-Za-z]([-A-Za-z0-9]*[A-Za-z0-9])?$";

impl JsonSchema for Category {
    fn schema_name() -> Cow<'static, str> {
        "Category".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "The kind of failure the runbook recognised, in the runbook's own words; NoEvidence when nothing matched.",
            "type": "string",
            "minLength": 1,
            "maxLength": 63,
            "pattern": CATEGORY_PATTERN,
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

/// How many of the target pods show the failure.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    SinglePod,
    SomePods,
    AllPods,
    NoPods,
}

/// What the runbook says should happen.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    DeletePod,
    RecordApiKeyRotation,
    Escalate,
    None,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::DeletePod => "DeletePod",
            Action::RecordApiKeyRotation => "RecordApiKeyRotation",
            Action::Escalate => "Escalate",
            Action::None => "None",
        }
    }
}

/// Everything the controller learned; written by the controller only.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlertTriageStatus {
    /// Where the triage stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The generation of spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// A digest of the spec this status describes, without `approval`: a new generation with
    /// the same digest changed only the approval, anything else withdraws the proposal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_digest: Option<String>,
    /// The runbook that was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
    /// Where that runbook came from: which object, and which generation of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook_ref: Option<RunbookRef>,
    /// What kind of failure this is and how far it reaches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<Classification>,
    /// What was looked at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    /// What the runbook says to do, with its steps filled in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommendation: Option<Recommendation>,
    /// The action awaiting approval, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal: Option<Proposal>,
    /// Set when an API key must be rotated by a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_rotation: Option<ApiKeyRotation>,
    /// The customer-impact notice from the runbook's template, filled in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<Notification>,
    /// What was done to a pod, by whose approval, and how it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation: Option<Remediation>,
    /// Standard conditions: `Triaged`, `ActionRequired`, `Remediated`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// Which runbook a triage used. A runbook changed later does not change a finished triage;
/// the next triage uses the new generation.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunbookRef {
    /// `Runbook`, `ClusterRunbook`, or `BuiltIn` (compiled into the operator).
    pub kind: String,
    /// The Runbook's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The object's name; a built-in runbook's id.
    pub name: String,
    /// The object's generation that was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
}

/// The verdict.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Classification {
    pub category: Category,
    /// The HTTP status read from the matching errors, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    pub scope: Scope,
    /// One sentence on why.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// What the controller read to reach its verdict.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    /// The window used, as a duration (e.g. `1h`).
    pub window: String,
    /// Start of the window: logs are read from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
    /// End of the window: lines after it are not read (`alert.startsAt` plus the window, or
    /// the time of the triage when that is earlier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Time>,
    /// Failure records per category across all pods; when more than one category shows, the
    /// verdict is the one the runbook ranks first and the reason names the others.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub matches: BTreeMap<String, u64>,
    /// Containers whose logs were read (by name, across the pods).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers_read: Vec<String>,
    /// Containers not read because `spec.target.container` names another.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers_skipped: Vec<String>,
    /// Namespace and selector the pods were found by.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    /// Log lines read across all pods and containers.
    pub lines_scanned: u64,
    /// Log bytes read across all pods and containers.
    pub bytes_scanned: u64,
    /// Per pod findings, failing pods first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<PodEvidence>,
    /// Pods left out of `pods` to keep status small.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pods_omitted: u32,
    /// Answers the runbook's "are the failures intermittent?".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intermittency: Option<Intermittency>,
    /// Other services named by the runbook that show the same signature in the window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related_services: Vec<RelatedService>,
    /// Anything that limited the evidence (a pod gone mid-gather, a byte limit reached, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero64(n: &u64) -> bool {
    *n == 0
}

/// One pod's facts and what its logs showed.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodEvidence {
    pub name: String,
    pub uid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub phase: String,
    pub ready: bool,
    pub restarts: i32,
    /// Controller that owns the pod, as `Kind/name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// e.g. `CrashLoopBackOff`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_reason: Option<String>,
    /// The last terminated container's reason and exit code, e.g. `Error (exit 1)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_termination: Option<String>,
    /// Matching log lines per category.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub matches: BTreeMap<String, u64>,
    /// Of those, the ones in the logs of containers that ran before a restart (`--previous`).
    #[serde(default, skip_serializing_if = "is_zero64")]
    pub previous_container_matches: u64,
    /// When the current containers of a restarted pod started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<Time>,
    /// A few matching lines, redacted and shortened.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<String>,
    /// Recent warning Events of the pod, as `Reason: message`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    pub lines_scanned: u64,
    pub bytes_scanned: u64,
    /// The span of log read: its first and last lines' times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs_from: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs_to: Option<Time>,
    /// The window held more log than the byte limit: only its newest part, from `logsFrom`,
    /// was read.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub older_logs_unread: bool,
    /// Why some of this pod's logs could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_error: Option<String>,
}

/// Whether the work keeps succeeding while it fails: successes between the first and the last
/// failure, not merely somewhere in the window.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Intermittency {
    /// Matching failure lines in the window.
    pub failures: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failure: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Time>,
    /// Lines showing the work succeeding, per marker (e.g. `Worker metering started`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub success_markers: BTreeMap<String, u64>,
    /// Success lines between the first and the last failure, in any pod: at least this many.
    /// Each log's own order places its successes among its own failures exactly; another
    /// pod's successes are counted where their times prove them inside the period.
    #[serde(default, skip_serializing_if = "is_zero64")]
    pub successes_between_failures: u64,
    /// The last success before the first failure, when the logs show it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_before: Option<Time>,
    /// The first success after the last failure, when the logs show it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_success_after: Option<Time>,
    /// Pods that logged a success between the first and the last failure (at most 20).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub succeeding_pods: Vec<String>,
    /// The same questions for each failing pod (at most 20, most failures first), about its
    /// own failures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<PodIntermittency>,
    /// True when at least one success came between the first and the last failure.
    pub intermittent: bool,
}

/// One failing pod's successes around its own failures.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodIntermittency {
    pub name: String,
    pub failures: u64,
    #[serde(default, skip_serializing_if = "is_zero64")]
    pub successes_between_failures: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_before: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_success_after: Option<Time>,
    pub intermittent: bool,
}

/// Another service seen with the same signature.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RelatedService {
    pub service: String,
    /// Pods of the service that were visible and read.
    pub pods: u32,
    /// Matching lines across those pods.
    pub matches: u64,
}

/// The runbook's recommendation.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Recommendation {
    pub action: Action,
    /// The team to page, when escalating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    pub reason: String,
    /// The runbook's next steps with real values filled in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next_steps: Vec<String>,
}

/// An action that waits for a human's approval.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Proposal {
    /// Stable for this generation, pod UID and action; approve it by copying it into
    /// `spec.approval.proposal`.
    pub id: String,
    pub action: Action,
    pub pod: String,
    #[serde(rename = "podUID")]
    pub pod_uid: String,
    pub expires_at: Time,
}

/// An API key a person must rotate; the operator never rotates keys itself.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyRotation {
    pub required: bool,
    pub reason: String,
    /// Controller IDs seen in the matching log lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controller_ids: Vec<String>,
    /// The account to target (from the environment's info ConfigMap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The resource group to target (from the environment's info ConfigMap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_group: Option<String>,
    /// Where account and resource group were read from, or why they could not be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The runbook's steps with these values filled in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<String>,
    /// What must follow the rotation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub follow_up: Vec<String>,
}

/// A customer-impact notice, ready to send, and what the notifier delivered about this triage.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
    /// One entry per configured target and notification: the last event sent (or being sent)
    /// and how it went. Targets are named as configured; their URLs and keys never appear here.
    /// Written by the notifier under a field manager of its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deliveries: Vec<Delivery>,
}

/// A notification to one target.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The target's name in the notification configuration.
    pub target: String,
    pub kind: NotificationKind,
    /// The idempotency key: the same for every attempt and every replica, from the triage's
    /// UID, the kind and what it is about (the verdict, or the proposal's id).
    pub key: String,
    /// `Firing` while the condition holds, `Resolved` once it has ended.
    pub event: DeliveryEvent,
    /// `Sending` (recorded before each attempt, so a restart sends again with the same key),
    /// `Delivered`, `Failed` (retried with backoff), `Undelivered` (gave up after the
    /// configured attempts) or `Superseded` (a resolve not sent because the receiver's incident
    /// is still held open by another notification of this triage).
    pub result: DeliveryResult,
    /// Attempts at this event so far.
    pub attempts: u32,
    /// When the last attempt started or ended.
    pub time: Time,
    /// Why the last attempt failed (status code or connection error; never a URL or key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a notification is about.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotificationKind {
    Escalation,
    ApiKeyRotation,
    ApprovalRequest,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Escalation => "Escalation",
            NotificationKind::ApiKeyRotation => "ApiKeyRotation",
            NotificationKind::ApprovalRequest => "ApprovalRequest",
        }
    }
}

/// Whether a delivery announces the condition or its end.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryEvent {
    Firing,
    Resolved,
}

impl DeliveryEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryEvent::Firing => "firing",
            DeliveryEvent::Resolved => "resolved",
        }
    }
}

/// How a delivery stands.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryResult {
    Sending,
    Delivered,
    Failed,
    Undelivered,
    Superseded,
}

/// What was done to a pod. Written before the pod is touched (the intent), then completed.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Remediation {
    /// `EvictPod`, or `DeletePod` when plain deletion is configured.
    pub action: RemediationAction,
    /// The approved proposal's id.
    pub proposal: String,
    pub pod: String,
    #[serde(rename = "podUID")]
    pub pod_uid: String,
    pub approved_by: String,
    /// When the intent was recorded, before anything was done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the API server accepted the eviction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evicted_at: Option<Time>,
    /// The pod that replaced the evicted one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// `InProgress`, `Blocked` (a PodDisruptionBudget said not now), `Succeeded`, `Failed`,
    /// `Unverified` (done, but a check could not be made), or `DryRun` (what would have been
    /// done).
    pub outcome: RemediationOutcome,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// How a pod is removed.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RemediationAction {
    /// Through the Eviction API, which honours PodDisruptionBudgets.
    #[default]
    EvictPod,
    /// A plain delete, when the operator is configured for it.
    DeletePod,
}

impl RemediationAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RemediationAction::EvictPod => "EvictPod",
            RemediationAction::DeletePod => "DeletePod",
        }
    }
}

/// Where a remediation stands or how it ended.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RemediationOutcome {
    #[default]
    InProgress,
    Blocked,
    Succeeded,
    Failed,
    /// The pod was removed and replaced, but a check could not be made (e.g. the replacement's
    /// logs could not be read): not called a success.
    Unverified,
    DryRun,
    /// Ended before the eviction, which was not made: its approval was withdrawn or the alert
    /// resolved meanwhile. Nothing was evicted, so nothing failed.
    Withdrawn,
}

impl RemediationOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RemediationOutcome::InProgress => "InProgress",
            RemediationOutcome::Blocked => "Blocked",
            RemediationOutcome::Succeeded => "Succeeded",
            RemediationOutcome::Failed => "Failed",
            RemediationOutcome::Unverified => "Unverified",
            RemediationOutcome::DryRun => "DryRun",
            RemediationOutcome::Withdrawn => "Withdrawn",
        }
    }
}

pub(crate) fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    let obj = schema.ensure_object();
    obj.insert("x-kubernetes-list-type".into(), "map".into());
    obj.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    schema
}

/// A CRD as YAML, exactly as committed under `crds/` (see [`crate::crd_files`]).
pub fn render(
    crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> String {
    let mut crd = serde_json::to_value(crd).expect("a CRD always serialises");
    tidy_schema(&mut crd);
    let mut out =
        String::from("# Generated by `alert-triage-operator crd`; do not edit by hand.\n");
    out.push_str(&serde_yaml::to_string(&crd).expect("a CRD always serialises"));
    out
}

/// Kubernetes knows only the int32 and int64 formats, so unsigned integers become those with a
/// minimum of 0; and descriptions drop the doc comments' hard line breaks so `kubectl explain`
/// wraps them itself.
fn tidy_schema(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            let unsigned = match map.get("format").and_then(|f| f.as_str()) {
                Some("uint64") => Some("int64"),
                Some("uint32" | "uint16" | "uint8") => Some("int32"),
                _ => None,
            };
            if let Some(format) = unsigned {
                map.insert("format".into(), format.into());
                // A bound of the field's own (e.g. an HTTP status's 100) stays.
                let own_bound = map
                    .get("minimum")
                    .and_then(serde_json::Value::as_f64)
                    .is_some_and(|m| m > 0.0);
                if !own_bound {
                    map.insert("minimum".into(), 0.into());
                }
            }
            if let Some(serde_json::Value::String(d)) = map.get_mut("description") {
                *d = d
                    .split("\n\n")
                    .map(|para| {
                        para.split('\n')
                            .map(str::trim)
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .collect::<Vec<_>>()
                    .join("\n\n");
            }
            map.values_mut().for_each(tidy_schema);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(tidy_schema),
        _ => {}
    }
}

impl AlertTriage {
    /// The namespace the target pods live in.
    pub fn target_namespace(&self) -> Option<&str> {
        self.spec
            .target
            .namespace
            .as_deref()
            .or(self.metadata.namespace.as_deref())
    }
}

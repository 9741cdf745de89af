//! What a runbook file says. The built-in runbooks in `builtin/` are the worked examples; this
//! is the reference for their fields.
//!
//! A runbook is one YAML document (camelCase keys, unknown keys refused so typos fail loudly):
//!
//! - `id`, `title`, `window` (default evidence window, `1m`..`24h`), `team` (paged on Escalate;
//!   a name or a template over the alert's labels with a fallback: `{labels.team|platform}`).
//! - `alerts`: `names` (globs with `*`, case-insensitive) and/or `labels` (label -> glob); the
//!   runbook is chosen for an alert when any of them matches.
//! - `defaultSelector`: matchLabels used when the triage names no selector; values may use
//!   `{labels.<name>}`, and a missing label means there is no default.
//! - `envInfo`: the ConfigMap and keys holding the account and resource group, when needed.
//! - `json`: `timeFields` (time of a JSON line) and `detailFields` (the fields that describe
//!   the error, searched for statuses and categories).
//! - `signature`: `contains` (literals; a line holding one opens a failure record),
//!   `continuation` (regex; the next line, when it matches, belongs to the same record) and
//!   `where` (fields read from JSON keys or a text regex that must equal a value, e.g. the
//!   alert's `operation`).
//! - `httpStatus`: regexes whose first participating group is an HTTP status.
//! - `controllerIds`: a field (JSON keys and/or text regex) whose values are collected.
//! - `successMarkers`: `name` + `pattern`, counted on every line to tell whether failures are
//!   intermittent: whether successes come between the first and the last failure (see
//!   `success.rs`). `work` names what they show succeeding (e.g. `metering`) for the
//!   `{intermittency}` phrase: "metering stopped at T and has not succeeded since", "metering
//!   keeps succeeding between failures: ...".
//! - `relatedServices`: `labelKey`, `services`, `patterns` and the `category` they belong to:
//!   other services to check for the same signature when that category is the verdict.
//! - `categories`: ordered rules, highest precedence first. A rule fits a record when one of
//!   its `httpStatus` values was read from it or one of its `patterns` matches; the last rule
//!   has neither and fits every record. `pod` (waiting reason, last termination reason and
//!   exit code, a restart count threshold, readiness) and `events` (a Warning Event's reason
//!   and/or message) add conditions on the pod's state: with patterns they must hold too (AND),
//!   alone each pod meeting them is one record (see `state.rs`). `recommend` is the outcome
//!   (`action`, `reason`, `steps`, `followUp`); `recommendIfSinglePod` is used instead when
//!   exactly one pod fails and a sibling is Ready and clean (the only place `DeletePod` is allowed). When that pod's
//!   failures are all in the log of the container that ran before a restart and its current
//!   container has logged clean for 5 minutes, no deletion is proposed (action `None`): the
//!   restart already replaced the failing container, which is all deleting the pod would do.
//! - `noEvidenceSteps`, `notification` (`title`, `body`).
//! - `notify`: names of notification targets (see docs/notifications.md) that this runbook's
//!   escalations always go to, besides the configuration's routes; like `team`, each may be a
//!   template over the alert's labels with a fallback (`{labels.oncall|platform-pager}`).
//!
//! Text fields are templates: `{labels.<name>}` (`{labels.<name>|<fallback>}` with a fallback)
//! and the variables listed in [`super::template::VARIABLES`] are filled in when the verdict is
//! made; `{count}`, `{firstFailure}` and `{lastFailure}` are the verdict's category's, and
//! `{count:<category>}` etc. another category's.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::RunbookError;
use super::template;
use crate::crd::{Action, Alert, Category, TargetSelector};

const MIN_WINDOW: Duration = Duration::from_secs(60);
const MAX_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// A runbook: how to recognise an alert's failures in logs and what to do about each kind.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Runbook {
    /// How triages name the runbook (`spec.runbook`); a runbook resource with a built-in id
    /// overrides the built-in.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub(super) id: String,
    pub(super) title: String,
    /// The default evidence window, between 1m and 24h (e.g. `30m`, `1h`).
    #[serde(with = "window")]
    #[schemars(
        with = "String",
        regex(pattern = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$"),
        length(min = 2, max = 16),
        extend("x-kubernetes-validations" = [{
            "rule": "duration(self) >= duration('1m') && duration(self) <= duration('24h')",
            "message": "window must be a duration between 1m and 24h, e.g. 30m or 1h"
        }])
    )]
    pub(super) window: Duration,
    /// Alerts the runbook is chosen for when a triage names none: `names` (globs with `*`,
    /// case-insensitive) or `labels` (label -> glob).
    pub(super) alerts: AlertMatch,
    /// matchLabels used when the triage names no selector; values may use `{labels.<name>}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) default_selector: BTreeMap<String, String>,
    /// The ConfigMap and keys holding the account and resource group, when needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) env_info: Option<EnvInfoSpec>,
    /// The team paged on Escalate: a name, or a template over the alert's labels with a
    /// fallback, e.g. `{labels.team|platform}`.
    pub(super) team: String,
    /// JSON keys holding a line's time and the error's details.
    pub(super) json: JsonFields,
    /// What opens a failure record (`contains`), continues it and filters it (`where`).
    pub(super) signature: Signature,
    /// Regexes whose first participating group is an HTTP status.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) http_status: Vec<String>,
    /// A field whose values are collected from the failure records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) controller_ids: Option<Field>,
    /// Lines that show the work succeeding, to tell whether failures are intermittent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) success_markers: Vec<Marker>,
    /// What the success markers show succeeding, for messages (e.g. `metering`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) work: Option<String>,
    /// Other services to check for the same signature when `category` is the verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) related_services: Option<RelatedServices>,
    /// Ordered rules, highest precedence first; the last has no httpStatus and no patterns.
    #[schemars(length(min = 1))]
    pub(super) categories: Vec<CategoryRule>,
    /// Steps for a person when no failure record was found.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) no_evidence_steps: Vec<String>,
    /// A customer-impact notice (`title`, `body`), filled in with the verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) notification: Option<NotificationTemplate>,
    /// Notification targets (names in the notifier's configuration) this runbook's triages are
    /// always sent to, besides those the configuration's routes pick.
    #[serde(default)]
    pub(super) notify: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct AlertMatch {
    #[serde(default)]
    pub(super) names: Vec<String>,
    #[serde(default)]
    pub(super) labels: BTreeMap<String, String>,
}

/// Where the environment's account and resource group are kept (a ConfigMap's data keys).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvInfoSpec {
    pub config_map: String,
    pub account_key: String,
    pub resource_group_key: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct JsonFields {
    pub(super) time_fields: Vec<String>,
    pub(super) detail_fields: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Signature {
    pub(super) contains: Vec<String>,
    #[serde(default)]
    pub(super) continuation: Option<String>,
    #[serde(default, rename = "where")]
    pub(super) filters: Vec<Filter>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Filter {
    /// Names the field in descriptions, e.g. `callbackName=DeleteClientID`.
    pub(super) field: String,
    #[serde(default)]
    pub(super) json: Vec<String>,
    #[serde(default)]
    pub(super) text: Option<String>,
    pub(super) equals: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Field {
    #[serde(default)]
    pub(super) json: Vec<String>,
    #[serde(default)]
    pub(super) text: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Marker {
    pub(super) name: String,
    pub(super) pattern: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RelatedServices {
    pub(super) label_key: String,
    pub(super) services: Vec<String>,
    pub(super) category: Category,
    pub(super) patterns: Vec<String>,
}

/// One category: which records it fits and what its verdict recommends.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.recommend.action in ['RecordApiKeyRotation', 'Escalate']",
    "message": "recommend.action must be RecordApiKeyRotation or Escalate (DeletePod only in recommendIfSinglePod)"
}]))]
pub(super) struct CategoryRule {
    pub(super) category: Category,
    /// HTTP statuses (read with the runbook's `httpStatus` regexes) that put a record here.
    #[serde(default)]
    #[schemars(inner(range(min = 100, max = 599)))]
    pub(super) http_status: Vec<u16>,
    #[serde(default)]
    pub(super) patterns: Vec<String>,
    /// Conditions on the pod's status, all of which must hold. With `patterns` or
    /// `httpStatus`, a record fits only in a pod that meets them; alone, each pod that meets
    /// them is one record of this category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) pod: Option<PodMatch>,
    /// A recent Warning Event of the pod that must be there; combined with the rest as `pod` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) events: Option<EventMatch>,
    pub(super) recommend: Outcome,
    #[serde(default)]
    pub(super) recommend_if_single_pod: Option<Outcome>,
}

impl CategoryRule {
    pub(super) fn is_catch_all(&self) -> bool {
        !self.reads_logs() && self.pod.is_none() && self.events.is_none()
    }

    /// Whether log records can fit the rule, as opposed to the pod's state alone.
    pub(super) fn reads_logs(&self) -> bool {
        !self.http_status.is_empty() || !self.patterns.is_empty()
    }
}

/// Pod status facts a rule needs, as `status.evidence.pods[]` records them; every one given
/// must hold. Reasons are compared exactly (Kubernetes' own words: `OOMKilled`, `Error`,
/// `CrashLoopBackOff`, `CreateContainerConfigError`, `ImagePullBackOff`, ...).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct PodMatch {
    /// A container waits for one of these reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(min = 1, max = 128)))]
    pub(super) waiting_reason: Vec<String>,
    /// A container's previous instance ended for one of these reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(min = 1, max = 128)))]
    pub(super) last_termination_reason: Vec<String>,
    /// ... with one of these exit codes (e.g. 137 for SIGKILL).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) exit_code: Vec<i32>,
    /// The pod's containers restarted at least this many times in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub(super) min_restarts: Option<i32>,
    /// The pod is Ready (true) or not (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) ready: Option<bool>,
}

impl PodMatch {
    fn is_empty(&self) -> bool {
        self.waiting_reason.is_empty()
            && self.last_termination_reason.is_empty()
            && self.exit_code.is_empty()
            && self.min_restarts.is_none()
            && self.ready.is_none()
    }
}

/// A Warning Event of the pod in the window whose reason is one of `reasons` (when given) and
/// whose message matches `message` (a regex, when given).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct EventMatch {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(min = 1, max = 128)))]
    pub(super) reasons: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) message: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Outcome {
    pub(super) action: Action,
    pub(super) reason: String,
    #[serde(default)]
    pub(super) steps: Vec<String>,
    #[serde(default)]
    pub(super) follow_up: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct NotificationTemplate {
    pub(super) title: String,
    pub(super) body: String,
}

/// `window` as written in a runbook: a duration between 1m and 24h.
mod window {
    use super::*;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(de)?;
        let parsed: jiff::SignedDuration = text.parse().map_err(serde::de::Error::custom)?;
        Duration::try_from(parsed)
            .ok()
            .filter(|d| (MIN_WINDOW..=MAX_WINDOW).contains(d))
            .ok_or_else(|| {
                serde::de::Error::custom(format!("window {text:?} must be between 1m and 24h"))
            })
    }

    pub(super) fn serialize<S: Serializer>(d: &Duration, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&crate::duration::format(*d))
    }
}

/// Whether `id` can be a runbook's id: a DNS label (1-63 lower-case letters, digits or '-',
/// starting and ending with a letter or digit), as the Runbook schema demands.
pub fn is_runbook_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-')
}

/// A routing field (`team`, `notify`) filled from the alert's labels. A label value that is not
/// a plausible name (1-63 letters, digits, `-`, `_`, `.`) is not trusted to route a page: the
/// fallback is used.
fn routing(text: &str, alert: &Alert) -> String {
    template::render(text, |p| {
        let (name, fallback) = template::label_parts(p).unwrap_or((p, None));
        alert
            .labels
            .get(name)
            .filter(|v| !v.is_empty() && is_label_value(v))
            .cloned()
            .unwrap_or_else(|| fallback.unwrap_or_default().to_string())
    })
}

/// A routing field's placeholders must each be a label with a fallback, so every alert routes.
fn check_routing(field: &str, text: &str) -> Result<(), String> {
    match template::placeholders(text).find(|p| {
        template::label_parts(p)
            .is_none_or(|(name, fallback)| name.is_empty() || fallback.is_none_or(|f| f.is_empty()))
    }) {
        Some(p) => Err(format!(
            "{field}: placeholder {{{p}}} must be a label with a fallback, e.g. {{labels.team|platform}}, so every alert has one"
        )),
        None => Ok(()),
    }
}

impl Runbook {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The notification targets this runbook names for `alert` (`notify`), each filled from
    /// the alert's labels like [`Runbook::team`].
    pub fn notify(&self, alert: &Alert) -> Vec<String> {
        self.notify.iter().map(|n| routing(n, alert)).collect()
    }

    /// `notify` as written (what the notifier's configuration check compares).
    pub fn notify_entries(&self) -> &[String] {
        &self.notify
    }

    pub fn title(&self) -> &str {
        &self.title
    }

    /// The team to page for this alert.
    pub fn team(&self, alert: &Alert) -> String {
        routing(&self.team, alert)
    }

    pub fn default_window(&self) -> Duration {
        self.window
    }

    /// What the success markers show succeeding, for messages.
    pub(super) fn work(&self) -> &str {
        self.work.as_deref().unwrap_or("the work")
    }

    /// Selector used when `spec.target.selector` is absent; `None` when the runbook has none
    /// or the alert lacks a label it is built from (the triage must then name a selector).
    pub fn default_selector(&self, alert: &Alert) -> Option<TargetSelector> {
        if self.default_selector.is_empty() {
            return None;
        }
        let mut labels = BTreeMap::new();
        for (key, value) in &self.default_selector {
            let value = template::fill_labels(value, &alert.labels)?;
            if !is_label_value(&value) || value.is_empty() {
                return None;
            }
            labels.insert(key.clone(), value);
        }
        Some(TargetSelector {
            match_labels: labels,
            match_expressions: Vec::new(),
        })
    }

    /// The ConfigMap and keys to read for [`super::EnvInfo`].
    pub fn env_info_spec(&self) -> Option<&EnvInfoSpec> {
        self.env_info.as_ref()
    }

    /// Other services to scan with [`super::CompiledRunbook::related_scanner`]: the pod label
    /// key and the service names (label values). The list may include the alert's own service;
    /// the verdict leaves that one out. It is only reported when the verdict's category is the
    /// one the runbook ties related services to (rate limiting for the built-ins), so a caller
    /// may gather it only then and assess again.
    pub fn related_services(&self) -> Option<(&str, &[String])> {
        self.related_services
            .as_ref()
            .map(|r| (r.label_key.as_str(), r.services.as_slice()))
    }

    /// Every (category, action) a verdict of this runbook can carry, so the metrics can show
    /// each at zero before the first triage.
    pub fn verdicts(&self) -> Vec<(Category, Action)> {
        let mut out = vec![(Category::NO_EVIDENCE, Action::None)];
        for rule in &self.categories {
            let actions = std::iter::once(&rule.recommend).chain(&rule.recommend_if_single_pod);
            for outcome in actions {
                let verdict = (rule.category.clone(), outcome.action);
                if !out.contains(&verdict) {
                    out.push(verdict);
                }
            }
        }
        out
    }

    /// The categories of its rules, in order of precedence.
    pub fn categories(&self) -> impl Iterator<Item = &Category> {
        self.categories.iter().map(|r| &r.category)
    }

    /// The category whose verdict reports related services.
    pub fn related_category(&self) -> Option<&Category> {
        self.related_services.as_ref().map(|r| &r.category)
    }

    pub fn matches_alert(&self, alert: &Alert) -> bool {
        self.alerts.names.iter().any(|p| glob(p, &alert.name))
            || self
                .alerts
                .labels
                .iter()
                .any(|(k, p)| alert.labels.get(k).is_some_and(|v| glob(p, v)))
    }

    /// A Runbook's or ClusterRunbook's spec (as YAML or JSON text), checked as
    /// [`Runbook::check`] does. Errors name the field: `spec: categories[1]: ...`.
    pub fn load(spec: &str) -> Result<Runbook, RunbookError> {
        let runbook: Runbook = serde_yaml::from_str(spec).map_err(|e| {
            let text = e.to_string();
            let at = text.rfind(" at line ").unwrap_or(text.len());
            RunbookError::Spec(text[..at].to_string())
        })?;
        runbook.check()?;
        Ok(runbook)
    }

    /// Everything the operator checks before it uses a runbook: the fields, the templates and
    /// every regex, compiled as a triage would compile them.
    pub fn check(&self) -> Result<(), RunbookError> {
        self.validate()?;
        super::compile::check(self)
    }

    /// Everything a runbook author can get wrong short of its regexes (which
    /// [`super::compile::check`] builds), checked when the runbook is loaded, so a bad runbook
    /// fails at startup (or in `replay`) rather than mid-triage.
    pub(super) fn validate(&self) -> Result<(), RunbookError> {
        let invalid = |reason: String| RunbookError::Invalid {
            id: self.id.clone(),
            reason,
        };
        if !is_runbook_id(&self.id) {
            return Err(invalid(
                "id must be 1-63 lower-case letters, digits or '-', starting and ending with a letter or digit".into(),
            ));
        }
        if self.alerts.names.is_empty() && self.alerts.labels.is_empty() {
            return Err(invalid("alerts needs names or labels to match".into()));
        }
        if self.signature.contains.is_empty()
            || self.signature.contains.iter().any(String::is_empty)
        {
            return Err(invalid(
                "signature.contains needs at least one non-empty literal".into(),
            ));
        }
        if self.team.trim().is_empty() {
            return Err(invalid("team must not be empty".into()));
        }
        check_routing("team", &self.team).map_err(invalid)?;
        for (i, n) in self.notify.iter().enumerate() {
            if n.trim().is_empty() {
                return Err(invalid(format!("notify[{i}] must not be empty")));
            }
            check_routing(&format!("notify[{i}]"), n).map_err(invalid)?;
        }
        self.validate_categories().map_err(invalid)?;
        if let Some(related) = &self.related_services
            && (related.label_key.is_empty()
                || related.services.is_empty()
                || related.patterns.is_empty())
        {
            return Err(invalid(
                "relatedServices needs labelKey, services and patterns".into(),
            ));
        }
        if let Some(env) = &self.env_info
            && [&env.config_map, &env.account_key, &env.resource_group_key]
                .iter()
                .any(|s| s.is_empty())
        {
            return Err(invalid(
                "envInfo needs configMap, accountKey and resourceGroupKey".into(),
            ));
        }
        self.validate_templates().map_err(invalid)
    }

    fn validate_categories(&self) -> Result<(), String> {
        let Some((last, rest)) = self.categories.split_last() else {
            return Err("categories must not be empty".into());
        };
        if !last.is_catch_all() {
            return Err("the last category must have no httpStatus, patterns, pod or events, so every record gets a category".into());
        }
        if let Some(rule) = rest.iter().find(|r| r.is_catch_all()) {
            return Err(format!(
                "category {} has no httpStatus, patterns, pod or events; only the last one may",
                rule.category.as_str()
            ));
        }
        for (i, rule) in self.categories.iter().enumerate() {
            let name = rule.category.as_str();
            if rule.category == Category::NO_EVIDENCE {
                return Err(
                    "NoEvidence is the engine's verdict when nothing matches, not a rule".into(),
                );
            }
            if self.categories[..i]
                .iter()
                .any(|r| r.category == rule.category)
            {
                return Err(format!("category {name} appears twice"));
            }
            if rule.pod.as_ref().is_some_and(PodMatch::is_empty) {
                return Err(format!("category {name}: pod needs at least one condition"));
            }
            if let Some(p) = &rule.pod {
                let reasons = p.waiting_reason.iter().chain(&p.last_termination_reason);
                if reasons.clone().any(|r| r.trim().is_empty()) {
                    return Err(format!("category {name}: pod: a reason must not be empty"));
                }
                if p.min_restarts.is_some_and(|n| n < 1) {
                    return Err(format!(
                        "category {name}: pod.minRestarts must be at least 1"
                    ));
                }
            }
            if let Some(e) = &rule.events {
                if e.reasons.is_empty() && e.message.is_none() {
                    return Err(format!(
                        "category {name}: events needs reasons or a message pattern"
                    ));
                }
                if e.reasons.iter().any(|r| r.trim().is_empty()) {
                    return Err(format!(
                        "category {name}: events: a reason must not be empty"
                    ));
                }
            }
            if let Some(s) = rule.http_status.iter().find(|s| !(100..=599).contains(*s)) {
                return Err(format!("category {name}: {s} is not an HTTP status"));
            }
            if !matches!(
                rule.recommend.action,
                Action::RecordApiKeyRotation | Action::Escalate
            ) {
                return Err(format!(
                    "category {name}: recommend.action must be RecordApiKeyRotation or Escalate (DeletePod only in recommendIfSinglePod)"
                ));
            }
            if rule
                .recommend_if_single_pod
                .as_ref()
                .is_some_and(|o| o.action == Action::None)
            {
                return Err(format!(
                    "category {name}: recommendIfSinglePod.action must not be None"
                ));
            }
        }
        Ok(())
    }

    fn validate_templates(&self) -> Result<(), String> {
        for text in self.verdict_templates() {
            let known = |p: &str| template::is_known(p, self.categories().map(Category::as_str));
            if let Some(p) = template::placeholders(text).find(|p| !known(p)) {
                return Err(format!(
                    "unknown placeholder {{{p}}} in {text:?}; known: {{labels.<name>}}, {}, and {} of another category of this runbook, e.g. {{count:{}}}",
                    template::VARIABLES
                        .iter()
                        .map(|v| format!("{{{v}}}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    template::PER_CATEGORY
                        .iter()
                        .map(|v| format!("{{{v}:<category>}}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    self.categories().next().map_or("Crash", Category::as_str)
                ));
            }
        }
        for text in self.compile_time_templates() {
            if let Some(p) =
                template::placeholders(text).find(|p| !p.starts_with(template::LABELS_PREFIX))
            {
                return Err(format!(
                    "placeholder {{{p}}} in {text:?}: signatures and selectors may only use {{labels.<name>}}"
                ));
            }
        }
        Ok(())
    }

    /// Templates filled from the alert's labels when the runbook is compiled or selected.
    pub(super) fn compile_time_templates(&self) -> impl Iterator<Item = &str> {
        self.signature
            .contains
            .iter()
            .chain(self.signature.filters.iter().map(|f| &f.equals))
            .chain(self.default_selector.values())
            .map(String::as_str)
    }

    /// Templates filled when the verdict is made.
    fn verdict_templates(&self) -> impl Iterator<Item = &str> {
        let outcomes = self
            .categories
            .iter()
            .flat_map(|r| std::iter::once(&r.recommend).chain(&r.recommend_if_single_pod));
        outcomes
            .flat_map(|o| {
                std::iter::once(&o.reason)
                    .chain(&o.steps)
                    .chain(&o.follow_up)
            })
            .chain(&self.no_evidence_steps)
            .chain(self.notification.iter().flat_map(|n| [&n.title, &n.body]))
            .map(String::as_str)
    }
}

/// Kubernetes label values: at most 63 characters, alphanumerics and `-_.` inside.
fn is_label_value(v: &str) -> bool {
    v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && v.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
        && v.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric())
}

/// `*` matches any run of characters; everything else matches itself, ignoring ASCII case.
pub(super) fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was and how much text it has taken so far, for backtracking.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if p.get(pi) == Some(&b'*') {
            star = Some((pi, ti));
            pi += 1;
        } else if p.get(pi).is_some_and(|c| c.eq_ignore_ascii_case(&t[ti])) {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches() {
        let cases = [
            (
                "*error_metering_token_exchange*",
                "armada-cluster_error_metering_token_exchange",
                true,
            ),
            (
                "*error_metering_token_exchange*",
                "bluemix.containers-kubernetes.armada-billing_error_metering_token_exchange.us-south",
                true,
            ),
            (
                "*_callback_action_time_errors",
                "DeleteClientID_callback_action_time_errors",
                true,
            ),
            (
                "*_callback_action_time_errors",
                "DeleteClientID_callback_action_time_errors_x",
                false,
            ),
            (
                "ClusterSquadOrchestratorCallbackActionTimeErrors",
                "clustersquadorchestratorcallbackactiontimeerrors",
                true,
            ),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("*", "", true),
            ("", "x", false),
        ];
        for (p, t, want) in cases {
            assert_eq!(glob(p, t), want, "{p} vs {t}");
        }
    }

    const MINIMAL: &str = r#"
id: x
title: X
window: 30m
alerts: {names: [A]}
team: '{labels.team|platform}'
json: {timeFields: [ts], detailFields: [msg]}
signature: {contains: [FATAL]}
categories:
  - category: Crash
    recommend: {action: Escalate, reason: r}
"#;

    #[test]
    fn notify_targets_are_taken_from_the_alert_with_a_fallback() {
        let text = MINIMAL.replace(
            "team: '{labels.team|platform}'",
            "team: '{labels.team|platform}'\nnotify: [audit, '{labels.oncall|platform-pager}']",
        );
        let rb = Runbook::load(&text).expect("valid");
        let alert = |oncall: &str| Alert {
            name: "A".into(),
            labels: BTreeMap::from([("oncall".to_string(), oncall.to_string())]),
            ..Alert::default()
        };
        assert_eq!(
            rb.notify(&alert("payments-pager")),
            ["audit", "payments-pager"]
        );
        assert_eq!(rb.notify(&alert("")), ["audit", "platform-pager"]);
        assert_eq!(rb.notify(&alert("x <@here>")), ["audit", "platform-pager"]);
        for (entry, error) in [
            (
                "'{labels.oncall}'",
                "notify[1]: placeholder {labels.oncall} must be a label with a fallback",
            ),
            (
                "'{count}'",
                "notify[1]: placeholder {count} must be a label with a fallback",
            ),
            ("''", "notify[1] must not be empty"),
        ] {
            let bad = text.replace("'{labels.oncall|platform-pager}'", entry);
            let err = Runbook::load(&bad).expect_err(entry).to_string();
            assert!(err.contains(error), "{entry}: {err}");
        }
    }

    #[test]
    fn team_is_taken_from_the_alert_with_a_fallback() {
        let rb = Runbook::load(MINIMAL).expect("valid");
        let alert = |team: Option<&str>| Alert {
            name: "A".into(),
            labels: team
                .map(|t| BTreeMap::from([("team".to_string(), t.to_string())]))
                .unwrap_or_default(),
            ..Alert::default()
        };
        assert_eq!(rb.team(&alert(Some("payments"))), "payments");
        assert_eq!(rb.team(&alert(None)), "platform");
        assert_eq!(rb.team(&alert(Some(""))), "platform");
        // Not a name: never routes a page.
        assert_eq!(rb.team(&alert(Some("a b <@here>"))), "platform");
        for (team, error) in [
            ("'{labels.team}'", "must be a label with a fallback"),
            ("'{labels.team|}'", "must be a label with a fallback"),
            ("'{count}'", "must be a label with a fallback"),
        ] {
            let text = MINIMAL.replace("'{labels.team|platform}'", team);
            let err = Runbook::load(&text).expect_err(team).to_string();
            assert!(err.contains(error), "{team}: {err}");
        }
    }

    #[test]
    fn label_values() {
        assert!(is_label_value("armada-cluster"));
        assert!(is_label_value(""));
        assert!(!is_label_value("-x"));
        assert!(!is_label_value("a b"));
        assert!(!is_label_value(&"a".repeat(64)));
    }
}

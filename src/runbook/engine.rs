//! The verdict: from what the pods' logs showed to a classification and a recommendation, by
//! the runbook's category rules. Which phase a verdict puts a triage in is the controller's
//! phase machine's call, not the runbook's.
//!
//! Precedence is the order of the runbook's `categories`: the verdict is the first category
//! that any record has, whatever the counts, and the other categories seen are named in the
//! classification's reason. Counts do not decide because the categories are not alternatives
//! of equal weight: an auth failure has a definite fix and hides what would happen with a good
//! key, and a service-wide cause (rate limiting) makes deleting one pod pointless.
//!
//! Scope counts the pods showing the verdict's category. The single-pod outcome (deleting the
//! pod) applies only when exactly one pod shows any failure at all and another pod is Ready
//! with no failures, so a deletion never leaves the workload without a healthy pod.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use super::compile::CompiledRunbook;
use super::model::{CategoryRule, EnvInfoSpec, Outcome, Runbook};
use super::scan::{LogScanner, StreamFindings};
use super::state::PodState;
use super::{success, template};
use crate::crd::{
    Action, Alert, ApiKeyRotation, Category, Classification, Intermittency, Notification,
    Recommendation, RelatedService, Scope,
};

/// Failing pods named in steps before the rest are summarised as a count.
const MAX_NAMED_PODS: usize = 5;
/// How long a restarted pod's current container must have logged without a failure before
/// its restart counts as the remedy a deletion would have been.
const RECOVERED_AFTER: SignedDuration = SignedDuration::from_mins(5);

/// One target pod and what its containers' logs showed.
#[derive(Debug, Clone, PartialEq)]
pub struct PodInput {
    pub name: String,
    pub ready: bool,
    /// Every log read: the current containers' and, after a restart, the previous ones'.
    pub findings: StreamFindings,
    /// Set when logs of containers that ran before a restart were read.
    pub restart: Option<Restart>,
}

/// A pod whose containers restarted, and what their previous instances' logs showed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Restart {
    /// When the current container started.
    pub at: Option<Timestamp>,
    /// Failure records in the previous containers' logs (part of the pod's findings).
    pub previous_failures: u64,
    /// The last line read from the current containers' logs.
    pub current_until: Option<Timestamp>,
}

impl Restart {
    /// How long the current container has logged since it started, when its failures were all
    /// in the previous container's log.
    fn clean_for(&self, pod: &PodInput) -> Option<Option<SignedDuration>> {
        let failures = pod.findings.failures();
        (failures > 0 && self.previous_failures == failures).then(|| {
            self.at
                .zip(self.current_until)
                .map(|(start, end)| end.duration_since(start))
        })
    }
}

/// Which containers' logs were read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Containers {
    /// `spec.target.container`, when it limits the read.
    pub wanted: Option<String>,
    pub read: BTreeSet<String>,
    pub skipped: BTreeSet<String>,
}

/// The environment's account and resource group, for runbooks that need them.
#[derive(Debug, Clone, PartialEq)]
pub enum EnvInfo {
    NotNeeded,
    Found {
        account: Option<String>,
        resource_group: Option<String>,
        /// Where they were read, e.g. `ConfigMap kube-system/armada-info`.
        source: String,
    },
    Missing {
        reason: String,
    },
}

/// Another service's pods scanned with the related-services scanner.
#[derive(Debug, Clone, PartialEq)]
pub struct RelatedInput {
    pub service: String,
    pub pods: u32,
    pub findings: StreamFindings,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AssessInput {
    pub alert: Alert,
    pub pods: Vec<PodInput>,
    pub related: Vec<RelatedInput>,
    pub env_info: EnvInfo,
    pub containers: Containers,
}

/// What the runbook concludes for one triage.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub classification: Classification,
    pub recommendation: Recommendation,
    /// The pod to propose deleting; only with the `DeletePod` action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_candidate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_rotation: Option<ApiKeyRotation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notification: Option<Notification>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intermittency: Option<Intermittency>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related_services: Vec<RelatedService>,
}

impl EnvInfoSpec {
    /// Reads the account and resource group from the ConfigMap's data; `source` says where
    /// that data came from and is shown to people.
    pub fn read(&self, data: &BTreeMap<String, String>, source: impl Into<String>) -> EnvInfo {
        let source = source.into();
        let get = |key: &str| {
            data.get(key)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let (account, resource_group) = (get(&self.account_key), get(&self.resource_group_key));
        if account.is_none() && resource_group.is_none() {
            return EnvInfo::Missing {
                reason: format!(
                    "{source} has neither {} nor {}",
                    self.account_key, self.resource_group_key
                ),
            };
        }
        EnvInfo::Found {
            account,
            resource_group,
            source,
        }
    }
}

impl CompiledRunbook {
    pub fn runbook(&self) -> &Runbook {
        &self.runbook
    }

    /// A scanner for one container's log stream of a target pod whose state is not known:
    /// rules with `pod` or `events` conditions take none of its records.
    pub fn scanner(&self) -> LogScanner<'_> {
        LogScanner::new(&self.matchers, false, self.matchers.eligible(None))
    }

    /// A scanner for one container's log stream of a target pod in this state.
    pub fn scanner_for(&self, state: &PodState) -> LogScanner<'_> {
        LogScanner::new(&self.matchers, false, self.matchers.eligible(Some(state)))
    }

    /// A scanner that counts only the related-services signature, for other services' pods.
    pub fn related_scanner(&self) -> LogScanner<'_> {
        LogScanner::new(&self.matchers, true, Vec::new())
    }

    /// The records a pod's state makes by itself: one per rule of pod state alone that it
    /// meets. Merge them once into the pod's findings, beside its logs'.
    pub fn state_findings(&self, state: &PodState) -> StreamFindings {
        let mut findings = StreamFindings::default();
        for (category, shown) in self.matchers.state_matches(state) {
            *findings.matches.entry(category.clone()).or_default() += 1;
            findings.samples.push(shown);
        }
        findings
    }

    pub fn assess(&self, input: &AssessInput) -> Verdict {
        self.assess_at(input, Timestamp::now())
    }

    /// [`CompiledRunbook::assess`] with the clock given, for the notice's status time.
    pub fn assess_at(&self, input: &AssessInput, now: Timestamp) -> Verdict {
        let rb = &self.runbook;
        let mut total = StreamFindings::default();
        for pod in &input.pods {
            total.merge(pod.findings.clone());
        }
        let mut vars = Vars::new(&input.alert.labels);
        vars.set("alert", &input.alert.name);
        vars.set("runbook", &rb.id);
        vars.set("title", &rb.title);
        vars.set("now", now.strftime("%Y-%m-%d %H:%M UTC"));
        vars.set("signature", &self.matchers.description);
        vars.set("pods", input.pods.len());
        vars.set("failures", total.failures());
        for c in rb.categories() {
            vars.set_category(c, &total);
        }
        let intermittency = self.intermittency(input, &total, &mut vars);
        let env = self.env_info(&input.env_info, &mut vars);

        let Some(rule) = rb
            .categories
            .iter()
            .find(|r| count(&total, &r.category) > 0)
        else {
            return self.no_evidence(input, &total, &vars, intermittency);
        };
        let category = &rule.category;
        let failing: Vec<&PodInput> = input
            .pods
            .iter()
            .filter(|p| count(&p.findings, category) > 0)
            .collect();
        let scope = match failing.len() {
            0 => Scope::NoPods,
            n if n == input.pods.len() => Scope::AllPods,
            1 => Scope::SinglePod,
            _ => Scope::SomePods,
        };
        let http_status = pick_status(&rb.categories, rule, &total.http_statuses);
        let candidate = single_pod_candidate(rule, input, category);
        // Failures only in the container that ran before a restart: the restart already did
        // what deleting the pod would do, unless the new container is too young to tell.
        let restarted = candidate.and_then(|p| {
            let r = p.restart.as_ref()?;
            Some((p, r, r.clean_for(p)?))
        });
        let recovered =
            restarted.is_some_and(|(_, _, clean)| clean.is_some_and(|d| d >= RECOVERED_AFTER));
        let restart_note = restarted.map(|(p, r, clean)| {
            format!(
                "the failures of pod {} are all in the container that ran before the restart at {}; the current container has been clean for {}",
                p.name,
                r.at.map_or_else(|| "<restart time not known>".to_string(), show_time),
                clean.map_or_else(|| "an unknown time (its log carries no times)".to_string(), show_minutes),
            )
        });
        let recovered_outcome;
        let outcome: &Outcome = match (candidate, &rule.recommend_if_single_pod) {
            _ if recovered => {
                recovered_outcome = Outcome {
                    action: Action::None,
                    reason: format!(
                        "No deletion proposed: {}, so deleting the pod would be pointless now. Triage again if the failures return.",
                        restart_note.as_deref().unwrap_or_default()
                    ),
                    steps: vec![format!(
                        "Watch the logs of pod {{pod}} for {}; if the failures return, triage again (a new AlertTriage or a change to this one's spec).",
                        self.matchers.description
                    )],
                    follow_up: Vec::new(),
                };
                &recovered_outcome
            }
            (Some(_), Some(single)) => single,
            _ => &rule.recommend,
        };

        vars.set("category", category.as_str());
        vars.set_verdict_category(category);
        vars.set("failingPods", failing.len());
        vars.set("failingPodNames", pod_names(&failing));
        if let Some(pod) = candidate.or(failing.first().copied()) {
            vars.set("pod", &pod.name);
        }
        vars.set(
            "httpStatus",
            http_status.map_or_else(
                || "<httpStatus: none in the matching records>".into(),
                |s| s.to_string(),
            ),
        );
        let ids: Vec<String> = total.controller_ids.iter().cloned().collect();
        let no_ids = "<controllerid: none in the matching log lines>";
        vars.set("controllerId", ids.first().map_or(no_ids, String::as_str));
        vars.set(
            "controllerIds",
            if ids.is_empty() {
                no_ids.to_string()
            } else {
                ids.join(", ")
            },
        );
        let related_services = self.related(input, category, &mut vars);

        let mut reason = vars.fill(&outcome.reason);
        if let Some(note) = restart_note.as_deref().filter(|_| !recovered) {
            reason.push_str(&format!(
                " Note: {note}, less than {} to call it recovered.",
                show_minutes(RECOVERED_AFTER)
            ));
        }
        let recommendation = Recommendation {
            action: outcome.action,
            team: (outcome.action == Action::Escalate).then(|| rb.team(&input.alert)),
            reason,
            next_steps: outcome
                .steps
                .iter()
                .chain(&outcome.follow_up)
                .map(|s| vars.fill(s))
                .collect(),
        };
        let api_key_rotation =
            (outcome.action == Action::RecordApiKeyRotation).then(|| ApiKeyRotation {
                required: true,
                reason: recommendation.reason.clone(),
                controller_ids: ids.clone(),
                account: env.account.clone(),
                resource_group: env.resource_group.clone(),
                source: env.source.clone(),
                steps: outcome.steps.iter().map(|s| vars.fill(s)).collect(),
                follow_up: outcome.follow_up.iter().map(|s| vars.fill(s)).collect(),
            });
        let classification = Classification {
            category: category.clone(),
            http_status,
            scope,
            reason: self.classification_reason(
                input,
                &total,
                category,
                http_status,
                failing.len(),
                restart_note.as_deref(),
            ),
        };
        Verdict {
            classification,
            recommendation,
            delete_candidate: candidate
                .filter(|_| outcome.action == Action::DeletePod)
                .map(|p| p.name.clone()),
            api_key_rotation,
            notification: rb.notification.as_ref().map(|n| Notification {
                title: vars.fill(&n.title),
                body: vars.fill(&n.body),
                ..Notification::default()
            }),
            intermittency,
            related_services,
        }
    }

    fn classification_reason(
        &self,
        input: &AssessInput,
        total: &StreamFindings,
        category: &Category,
        http_status: Option<u16>,
        failing: usize,
        restart_note: Option<&str>,
    ) -> String {
        let by_state = self
            .runbook
            .categories
            .iter()
            .find(|r| &r.category == category)
            .is_some_and(|r| !r.reads_logs());
        let mut reason = if by_state {
            format!(
                "The status or Warning Events of {failing} of {} fit the runbook's {} conditions",
                pods(input.pods.len()),
                category.as_str()
            )
        } else {
            format!(
                "{} of {} {} records in the window were {}",
                count(total, category),
                total.failures(),
                self.matchers.description,
                category.as_str()
            )
        };
        if let Some(s) = http_status {
            reason.push_str(&format!(" (HTTP {s})"));
        }
        if !by_state {
            reason.push_str(&format!(", in {failing} of {}", pods(input.pods.len())));
        }
        match (total.first_failure, total.last_failure) {
            (Some(first), Some(last)) if first == last => {
                reason.push_str(&format!(", at {}", show_time(first)));
            }
            (Some(first), Some(last)) => {
                reason.push_str(&format!(
                    ", from {} to {}",
                    show_time(first),
                    show_time(last)
                ));
            }
            _ => {}
        }
        // In the runbook's order of precedence, highest first.
        let others: Vec<String> = self
            .runbook
            .categories
            .iter()
            .map(|r| &r.category)
            .filter(|c| *c != category)
            .filter_map(|c| total.matches.get(c).filter(|n| **n > 0).map(|n| (c, n)))
            .map(|(c, n)| format!("{n} {}", c.as_str()))
            .collect();
        if !others.is_empty() {
            reason.push_str(&format!(
                "; mixed evidence: also {}, which the runbook ranks below {}",
                others.join(", "),
                category.as_str()
            ));
        }
        if let Some(note) = restart_note {
            reason.push_str(&format!("; {note}"));
        }
        reason.push('.');
        reason
    }

    fn no_evidence(
        &self,
        input: &AssessInput,
        total: &StreamFindings,
        vars: &Vars,
        intermittency: Option<Intermittency>,
    ) -> Verdict {
        let description = &self.matchers.description;
        let reason = if input.pods.is_empty() {
            format!(
                "No pods were found to read logs from, so there is no evidence of {description} records."
            )
        } else {
            format!(
                "No {description} records in {} log lines from {}.{}",
                total.lines,
                pods(input.pods.len()),
                containers_read(&input.containers)
            )
        };
        Verdict {
            classification: Classification {
                category: Category::NO_EVIDENCE,
                http_status: None,
                scope: Scope::NoPods,
                reason: reason.clone(),
            },
            recommendation: Recommendation {
                action: Action::None,
                team: None,
                reason: format!(
                    "No action: the runbook acts on {description} records and the logs read had none."
                ),
                next_steps: self
                    .runbook
                    .no_evidence_steps
                    .iter()
                    .map(|s| vars.fill(s))
                    .collect(),
            },
            delete_candidate: None,
            api_key_rotation: None,
            notification: None,
            intermittency,
            related_services: Vec::new(),
        }
    }

    /// The runbook's "are the failures intermittent?", when it names success markers.
    fn intermittency(
        &self,
        input: &AssessInput,
        total: &StreamFindings,
        vars: &mut Vars,
    ) -> Option<Intermittency> {
        let markers = &self.runbook.success_markers;
        if markers.is_empty() {
            return None;
        }
        let success_markers: BTreeMap<String, u64> = markers
            .iter()
            .map(|m| {
                (
                    m.name.clone(),
                    total.success_markers.get(&m.name).copied().unwrap_or(0),
                )
            })
            .collect();
        let (intermittency, phrase) =
            success::assess(&input.pods, total, success_markers, self.runbook.work());
        let success_markers = &intermittency.success_markers;
        let intermittent = intermittency.intermittent;
        vars.set("intermittency", phrase);
        vars.set(
            "successes",
            success_markers
                .iter()
                .map(|(name, n)| format!("{name} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        vars.set(
            "intermittent",
            if intermittent {
                "intermittent"
            } else {
                "persistent"
            },
        );
        Some(intermittency)
    }

    fn env_info(&self, info: &EnvInfo, vars: &mut Vars) -> EnvFacts {
        let Some(spec) = self.runbook.env_info_spec() else {
            return EnvFacts::default();
        };
        // The full reason goes to `source`; the steps carry a short marker where the value goes.
        let missing = |reason: &str| EnvFacts {
            account: None,
            resource_group: None,
            source: Some(format!(
                "Not available: {reason}; the account and resource group in the steps are left unfilled"
            )),
            account_text: format!(
                "<{}: not found in ConfigMap {}>",
                spec.account_key, spec.config_map
            ),
            resource_group_text: format!(
                "<{}: not found in ConfigMap {}>",
                spec.resource_group_key, spec.config_map
            ),
        };
        let facts = match info {
            EnvInfo::Found {
                account,
                resource_group,
                source,
            } => EnvFacts {
                account: account.clone(),
                resource_group: resource_group.clone(),
                source: Some(source.clone()),
                account_text: account
                    .clone()
                    .unwrap_or_else(|| format!("<{}: not in {source}>", spec.account_key)),
                resource_group_text: resource_group
                    .clone()
                    .unwrap_or_else(|| format!("<{}: not in {source}>", spec.resource_group_key)),
            },
            EnvInfo::Missing { reason } => missing(reason),
            EnvInfo::NotNeeded => missing(&format!("ConfigMap {} was not read", spec.config_map)),
        };
        vars.set("account", &facts.account_text);
        vars.set("resourceGroup", &facts.resource_group_text);
        vars.set("envSource", facts.source.as_deref().unwrap_or_default());
        facts
    }

    /// Other services showing the related signature, when the verdict is the category the
    /// runbook ties them to; the alert's own service is left out.
    fn related(
        &self,
        input: &AssessInput,
        category: &Category,
        vars: &mut Vars,
    ) -> Vec<RelatedService> {
        if self.runbook.related_category() != Some(category) {
            return Vec::new();
        }
        let own = input.alert.labels.get("service");
        let checked: Vec<&RelatedInput> = input
            .related
            .iter()
            .filter(|r| Some(&r.service) != own)
            .collect();
        let (hits, clean): (Vec<&RelatedInput>, Vec<&RelatedInput>) =
            checked.iter().partition(|r| r.findings.failures() > 0);
        let text = if checked.is_empty() {
            "not checked (no logs of the related services were read)".to_string()
        } else if hits.is_empty() {
            format!("none (checked {})", names(&clean))
        } else {
            let mut text = hits
                .iter()
                .map(|r| {
                    format!(
                        "{} ({} matching lines in {})",
                        r.service,
                        r.findings.failures(),
                        pods(r.pods as usize)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            if !clean.is_empty() {
                text.push_str(&format!("; no matches in {}", names(&clean)));
            }
            text
        };
        vars.set("relatedServices", text);
        hits.iter()
            .map(|r| RelatedService {
                service: r.service.clone(),
                pods: r.pods,
                matches: r.findings.failures(),
            })
            .collect()
    }
}

#[derive(Default)]
struct EnvFacts {
    account: Option<String>,
    resource_group: Option<String>,
    source: Option<String>,
    account_text: String,
    resource_group_text: String,
}

/// Template values for one verdict.
struct Vars<'a> {
    labels: &'a BTreeMap<String, String>,
    values: BTreeMap<String, String>,
}

impl<'a> Vars<'a> {
    fn new(labels: &'a BTreeMap<String, String>) -> Self {
        Vars {
            labels,
            values: BTreeMap::new(),
        }
    }

    fn set(&mut self, name: &str, value: impl ToString) {
        self.values.insert(name.to_string(), value.to_string());
    }

    /// `{count:<category>}`, `{firstFailure:<category>}`, `{lastFailure:<category>}`: that
    /// category's records only, so a time never belongs to another category's failure.
    fn set_category(&mut self, category: &Category, total: &StreamFindings) {
        let c = category.as_str();
        let times = total.failure_times.get(category);
        let no_time = |name: &str| {
            if count(total, category) == 0 {
                format!("<{name}: no {c} records>")
            } else {
                format!("<{name}: the {c} records carry no time>")
            }
        };
        self.set(&format!("count:{c}"), count(total, category));
        self.set(
            &format!("firstFailure:{c}"),
            times.map_or_else(|| no_time("firstFailure"), |t| show_time(t.0)),
        );
        self.set(
            &format!("lastFailure:{c}"),
            times.map_or_else(|| no_time("lastFailure"), |t| show_time(t.1)),
        );
    }

    /// `{count}`, `{firstFailure}`, `{lastFailure}`: the verdict's category's.
    fn set_verdict_category(&mut self, category: &Category) {
        for name in template::PER_CATEGORY {
            let value = self
                .values
                .get(&format!("{name}:{}", category.as_str()))
                .cloned();
            if let Some(value) = value {
                self.values.insert(name.to_string(), value);
            }
        }
    }

    fn fill(&self, text: &str) -> String {
        template::render(text, |name| {
            if name.starts_with(template::LABELS_PREFIX) {
                template::label(self.labels, name)
            } else {
                self.values
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| format!("<{name}: not known for this verdict>"))
            }
        })
    }
}

fn count(findings: &StreamFindings, category: &Category) -> u64 {
    findings.matches.get(category).copied().unwrap_or(0)
}

/// The one failing pod, when the rule has a single-pod outcome, no other pod fails in any way
/// and a sibling is Ready and clean.
fn single_pod_candidate<'i>(
    rule: &CategoryRule,
    input: &'i AssessInput,
    category: &Category,
) -> Option<&'i PodInput> {
    rule.recommend_if_single_pod.as_ref()?;
    let mut failing = input.pods.iter().filter(|p| p.findings.failures() > 0);
    let only = failing.next().filter(|_| failing.next().is_none())?;
    let healthy_sibling = input
        .pods
        .iter()
        .any(|p| p.name != only.name && p.ready && p.findings.failures() == 0);
    (count(&only.findings, category) > 0 && healthy_sibling).then_some(only)
}

/// The commonest status among those the rule names; for a rule naming none, among those no
/// rule names (so a catch-all reports e.g. 500, not a 429 that belongs to another category).
fn pick_status(
    rules: &[CategoryRule],
    rule: &CategoryRule,
    statuses: &BTreeMap<u16, u64>,
) -> Option<u16> {
    let eligible = |s: u16| {
        if rule.http_status.is_empty() {
            !rules.iter().any(|r| r.http_status.contains(&s))
        } else {
            rule.http_status.contains(&s)
        }
    };
    statuses
        .iter()
        .filter(|(s, _)| eligible(**s))
        .max_by_key(|(s, n)| (**n, Reverse(**s)))
        .map(|(s, _)| *s)
}

pub(super) fn show_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn show_minutes(d: SignedDuration) -> String {
    match d.as_secs() / 60 {
        1 => "1 minute".to_string(),
        n => format!("{n} minutes"),
    }
}

/// For the no-evidence message: which containers were read when the spec limits them.
fn containers_read(c: &Containers) -> String {
    let Some(wanted) = &c.wanted else {
        return String::new();
    };
    let list = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>().join(", ");
    let skipped = if c.skipped.is_empty() {
        String::new()
    } else {
        format!("; skipped {}", list(&c.skipped))
    };
    if c.read.is_empty() {
        format!(
            " spec.target.container is {wanted:?} and no pod has a container of that name{skipped}."
        )
    } else {
        format!(
            " Read container {} only, as spec.target.container says{skipped}.",
            list(&c.read)
        )
    }
}

fn pods(n: usize) -> String {
    if n == 1 {
        "1 pod".into()
    } else {
        format!("{n} pods")
    }
}

fn pod_names(pods: &[&PodInput]) -> String {
    let mut text = pods
        .iter()
        .take(MAX_NAMED_PODS)
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if pods.len() > MAX_NAMED_PODS {
        text.push_str(&format!(" and {} more", pods.len() - MAX_NAMED_PODS));
    }
    text
}

fn names(related: &[&RelatedInput]) -> String {
    related
        .iter()
        .map(|r| r.service.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook::Catalog;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn alert(name: &str, labels: &[(&str, &str)]) -> Alert {
        Alert {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            starts_at: None,
        }
    }

    fn metering_alert() -> Alert {
        alert(
            "armada-cluster_error_metering_token_exchange",
            &[("service", "armada-cluster"), ("region", "eu-de")],
        )
    }

    fn orchestrator_alert() -> Alert {
        alert(
            "ClusterSquadOrchestratorCallbackActionTimeErrors",
            &[
                ("operation", "DeleteClientID"),
                ("reason_code", "ErrorUnclassified"),
                ("carrier_name", "prod-fra02-carrier5"),
                ("crn_cname", "bluemix"),
                ("region", "eu-de"),
            ],
        )
    }

    fn compile(alert: &Alert) -> CompiledRunbook {
        Catalog::builtin()
            .select(None, alert)
            .unwrap()
            .compile(alert)
            .unwrap()
    }

    fn findings(c: &CompiledRunbook, lines: &[&str]) -> StreamFindings {
        let mut scanner = c.scanner();
        for line in lines {
            scanner.push(line.as_bytes());
            scanner.push(b"\n");
        }
        scanner.finish()
    }

    fn pod(c: &CompiledRunbook, name: &str, ready: bool, lines: &[&str]) -> PodInput {
        PodInput {
            name: name.into(),
            ready,
            findings: findings(c, lines),
            restart: None,
        }
    }

    fn input(alert: Alert, pods: Vec<PodInput>) -> AssessInput {
        AssessInput {
            alert,
            pods,
            related: Vec::new(),
            env_info: EnvInfo::NotNeeded,
            containers: Containers::default(),
        }
    }

    const NOW: &str = "2026-11-21T04:30:59Z";
    const AUTH: &str = "2026-11-21T04:01:00Z ErrorMeteringTokenExchangeFailure (401)";
    const RATE: &str = "2026-11-21T04:02:00Z ErrorMeteringTokenExchangeFailure (429)";
    const NET: &str =
        "2026-11-21T04:03:00Z ErrorMeteringTokenExchangeFailure dial tcp: i/o timeout";
    const OTHER: &str = "2026-11-21T04:04:00Z ErrorMeteringTokenExchangeFailure (500) odd";
    const OK: &str = "2026-11-21T04:05:00Z Worker metering started";

    fn assess(c: &CompiledRunbook, input: &AssessInput) -> Verdict {
        c.assess_at(input, NOW.parse().unwrap())
    }

    const PER_CATEGORY: &str = r#"
id: per-category
title: Per category
window: 30m
alerts: {names: [A]}
team: t
json: {timeFields: [ts], detailFields: [msg]}
signature: {contains: [FAIL]}
categories:
  - category: Rejected
    patterns: [rejected]
    recommend:
      action: Escalate
      reason: '{count} {firstFailure} {lastFailure}; net {count:Network} {firstFailure:Network}; other {count:Other} {lastFailure:Other}'
  - category: Network
    patterns: [timeout]
    recommend: {action: Escalate, reason: n}
  - category: Other
    recommend: {action: Escalate, reason: o}
"#;

    /// "First rejection at T" names a rejection's time, not an earlier network error's.
    #[test]
    fn counts_and_times_are_the_verdicts_category_unless_another_is_named() {
        let a = alert("A", &[]);
        let c = Catalog::from_yaml(&[PER_CATEGORY])
            .unwrap()
            .select(None, &a)
            .unwrap()
            .compile(&a)
            .unwrap();
        let lines = [
            "2026-11-21T04:01:00Z FAIL timeout",
            "2026-11-21T04:02:00Z FAIL rejected",
            "2026-11-21T04:03:00Z FAIL timeout",
            "2026-11-21T04:04:00Z FAIL rejected",
        ];
        let v = assess(&c, &input(a.clone(), vec![pod(&c, "p", true, &lines)]));
        assert_eq!(
            v.recommendation.reason,
            "2 2026-11-21T04:02:00Z 2026-11-21T04:04:00Z; net 2 2026-11-21T04:01:00Z; other 0 <lastFailure: no Other records>"
        );
        let text = PER_CATEGORY.replace("{count:Network}", "{count:Nope}");
        let Err(err) = Catalog::from_yaml(&[&text]) else {
            panic!("a placeholder of an unknown category was accepted");
        };
        assert!(
            err.to_string().contains("unknown placeholder {count:Nope}"),
            "{err}"
        );
    }

    #[test]
    fn auth_wins_over_everything_and_the_rest_is_named() {
        let a = metering_alert();
        let c = compile(&a);
        let v = assess(
            &c,
            &input(
                a,
                vec![pod(&c, "p1", true, &[RATE, NET, AUTH, OTHER, RATE])],
            ),
        );
        assert_eq!(v.recommendation.action, Action::RecordApiKeyRotation);
        assert_eq!(
            v.classification.category,
            Category::new("AuthFailure").unwrap()
        );
        assert_eq!(v.classification.http_status, Some(401));
        assert_eq!(
            v.classification.reason,
            "1 of 5 ErrorMeteringTokenExchangeFailure records in the window were AuthFailure (HTTP 401), \
             in 1 of 1 pod, from 2026-11-21T04:01:00Z to 2026-11-21T04:04:00Z; mixed evidence: also \
             2 RateLimited, 1 NetworkFailure, 1 Unclassified, which the runbook ranks below AuthFailure."
        );
        let rotation = v.api_key_rotation.expect("rotation recorded");
        assert!(rotation.required);
        assert!(
            rotation
                .steps
                .iter()
                .any(|s| s.contains("Replace the API key"))
        );
        assert_eq!(rotation.source, None, "this runbook reads no ConfigMap");
        assert_eq!(v.recommendation.team, None);
    }

    #[test]
    fn rate_limiting_outranks_network_and_reports_its_own_status() {
        let a = metering_alert();
        let c = compile(&a);
        let v = assess(
            &c,
            &input(
                a,
                vec![
                    pod(&c, "p1", true, &[NET, OTHER, RATE]),
                    pod(&c, "p2", true, &[OK]),
                ],
            ),
        );
        assert_eq!(
            v.classification.category,
            Category::new("RateLimited").unwrap()
        );
        assert_eq!(v.classification.http_status, Some(429));
        assert_eq!(v.classification.scope, Scope::SinglePod);
        assert_eq!(v.recommendation.action, Action::Escalate);
        assert_eq!(v.recommendation.team.as_deref(), Some("troutbridge"));
        assert_eq!(v.delete_candidate, None);
    }

    #[test]
    fn network_scope_decides_between_deleting_and_escalating() {
        let a = metering_alert();
        let c = compile(&a);
        // (case, pods, action, scope, delete candidate)
        type Case<'a> = (&'a str, Vec<PodInput>, Action, Scope, Option<&'a str>);
        let cases: Vec<Case> = vec![
            (
                "one of three failing, siblings clean",
                vec![
                    pod(&c, "bad", true, &[NET, NET]),
                    pod(&c, "good1", true, &[OK]),
                    pod(&c, "good2", true, &[]),
                ],
                Action::DeletePod,
                Scope::SinglePod,
                Some("bad"),
            ),
            (
                "the failing pod itself not Ready",
                vec![pod(&c, "bad", false, &[NET]), pod(&c, "good", true, &[])],
                Action::DeletePod,
                Scope::SinglePod,
                Some("bad"),
            ),
            (
                "the only clean sibling not Ready",
                vec![pod(&c, "bad", true, &[NET]), pod(&c, "good", false, &[OK])],
                Action::Escalate,
                Scope::SinglePod,
                None,
            ),
            (
                "a sibling fails differently",
                vec![
                    pod(&c, "bad", true, &[NET]),
                    pod(&c, "odd", true, &[OTHER]),
                    pod(&c, "good", true, &[]),
                ],
                Action::Escalate,
                Scope::SinglePod,
                None,
            ),
            (
                "two failing",
                vec![
                    pod(&c, "bad1", true, &[NET]),
                    pod(&c, "bad2", true, &[NET]),
                    pod(&c, "good", true, &[]),
                ],
                Action::Escalate,
                Scope::SomePods,
                None,
            ),
            (
                "the only pod",
                vec![pod(&c, "bad", true, &[NET])],
                Action::Escalate,
                Scope::AllPods,
                None,
            ),
        ];
        for (name, pods, action, scope, candidate) in cases {
            let v = assess(&c, &input(a.clone(), pods));
            assert_eq!(
                v.classification.category,
                Category::new("NetworkFailure").unwrap(),
                "{name}"
            );
            assert_eq!(v.recommendation.action, action, "{name}");
            assert_eq!(v.classification.scope, scope, "{name}");
            assert_eq!(v.delete_candidate.as_deref(), candidate, "{name}");
            let outcome = if candidate.is_some() {
                Action::DeletePod
            } else {
                Action::Escalate
            };
            assert_eq!(v.recommendation.action, outcome, "{name}");
        }
    }

    #[test]
    fn notice_and_steps_are_filled_with_real_values() {
        let a = metering_alert();
        let c = compile(&a);
        let v = assess(
            &c,
            &input(
                a,
                vec![
                    pod(&c, "p1", true, &[RATE, OK]),
                    pod(&c, "p2", true, &[RATE]),
                ],
            ),
        );
        let notice = v.notification.expect("metering raises a pCIE");
        assert_eq!(
            notice.title,
            "Customers may see delays when provisioning or deleting workers"
        );
        assert!(notice.body.contains(
            "- 2026-11-21 04:30 UTC - INVESTIGATING - The SRE team is aware and investigating."
        ));
        assert!(notice.body.contains("- eu-de"));
        let steps = v.recommendation.next_steps.join("\n");
        assert!(steps.contains("2 ErrorMeteringTokenExchangeFailure records from armada-cluster in eu-de were rate limited by IAM (HTTP 429)"), "{steps}");
        assert!(steps.contains("not checked"), "{steps}");
        assert!(!steps.contains('{'), "{steps}");
        let i = v.intermittency.expect("metering asks about intermittency");
        // Both failures at 04:02, the one success at 04:05: after them, not between.
        assert!(!i.intermittent);
        assert_eq!(
            i.first_success_after,
            Some(Time(ts("2026-11-21T04:05:00Z")))
        );
        assert!(
            steps.contains("no metering success before or during the failures from 2026-11-21T04:02:00Z to 2026-11-21T04:02:00Z; it succeeded again at 2026-11-21T04:05:00Z"),
            "{steps}"
        );
        assert_eq!(i.failures, 2);
        assert_eq!(i.success_markers["Worker metering started"], 1);
        assert_eq!(i.success_markers["Worker metering stopped"], 0);
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn at(time: &str, line: &str) -> String {
        format!("{time} {line}")
    }

    const STARTED: &str = "Worker metering started";
    const RATE_LINE: &str = "ErrorMeteringTokenExchangeFailure (429)";
    const NET_LINE: &str = "ErrorMeteringTokenExchangeFailure dial tcp: i/o timeout";

    fn timed(c: &CompiledRunbook, name: &str, lines: &[String]) -> PodInput {
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        pod(c, name, true, &lines)
    }

    #[test]
    fn metering_that_stopped_is_not_intermittent_and_says_when_it_stopped() {
        let a = metering_alert();
        let c = compile(&a);
        // 40 minutes of metering, then every attempt fails.
        let mut lines: Vec<String> = (0..40)
            .map(|m| at(&format!("2026-11-21T03:{:02}:00Z", 10 + m), STARTED))
            .collect();
        lines.extend((0..10).map(|m| at(&format!("2026-11-21T03:5{m}:30Z"), RATE_LINE)));
        let v = assess(&c, &input(a, vec![timed(&c, "p1", &lines)]));
        let i = v.intermittency.unwrap();
        assert!(!i.intermittent);
        assert_eq!(i.successes_between_failures, 0);
        assert_eq!(
            i.last_success_before,
            Some(Time(ts("2026-11-21T03:49:00Z")))
        );
        assert_eq!(i.first_success_after, None);
        assert!(i.succeeding_pods.is_empty());
        let steps = v.recommendation.next_steps.join("\n");
        assert!(
            steps.contains("metering stopped at 2026-11-21T03:49:00Z and has not succeeded since (failures from 2026-11-21T03:50:30Z to 2026-11-21T03:59:30Z)"),
            "{steps}"
        );
        assert!(!steps.contains("intermittent"), "{steps}");
    }

    #[test]
    fn successes_between_failures_are_intermittent_and_name_the_pods_still_succeeding() {
        let a = metering_alert();
        let c = compile(&a);
        let failing: Vec<String> = (0..6)
            .map(|m| at(&format!("2026-11-21T04:0{m}:00Z"), NET_LINE))
            .collect();
        // The sibling meters every minute through the failure period, and the failing pod
        // once between its own failures.
        let sibling: Vec<String> = (0..10)
            .map(|m| at(&format!("2026-11-21T03:5{m}:30Z"), STARTED))
            .chain((0..10).map(|m| at(&format!("2026-11-21T04:0{m}:30Z"), STARTED)))
            .collect();
        let mut bad = failing.clone();
        bad.insert(3, at("2026-11-21T04:02:30Z", STARTED));
        let v = assess(
            &c,
            &input(a, vec![timed(&c, "bad", &bad), timed(&c, "good", &sibling)]),
        );
        let i = v.intermittency.unwrap();
        assert!(i.intermittent);
        assert_eq!(i.succeeding_pods, ["bad", "good"]);
        // bad: 04:02:30, exactly; good meters on both sides and at least once inside (no quiet
        // spell as long as the failure period), its count inside unknown from the summary.
        assert_eq!(i.successes_between_failures, 2);

        // The sibling's successes run through the period without a quiet spell covering its
        // ends, so the summary cannot tell which came last before it: nothing is claimed.
        assert_eq!(i.last_success_before, None);
        assert_eq!(i.first_success_after, None);
        assert_eq!(i.pods.len(), 1);
        assert_eq!(i.pods[0].name, "bad");
        assert_eq!(i.pods[0].successes_between_failures, 1);
        assert!(i.pods[0].intermittent);

        // Without the failing pod's own success, it is the sibling alone that still meters.
        let v = assess(
            &c,
            &input(
                metering_alert(),
                vec![timed(&c, "bad", &failing), timed(&c, "good", &sibling)],
            ),
        );
        let i = v.intermittency.unwrap();
        assert!(i.intermittent);
        assert_eq!(i.succeeding_pods, ["good"]);
        assert!(!i.pods[0].intermittent);
    }

    #[test]
    fn without_times_the_logs_order_decides() {
        let a = metering_alert();
        let c = compile(&a);
        let v = assess(
            &c,
            &input(
                a.clone(),
                vec![timed(
                    &c,
                    "p",
                    &[RATE_LINE.into(), STARTED.into(), RATE_LINE.into()],
                )],
            ),
        );
        assert!(v.intermittency.unwrap().intermittent);
        let v = assess(
            &c,
            &input(
                a,
                vec![timed(
                    &c,
                    "p",
                    &[
                        STARTED.into(),
                        RATE_LINE.into(),
                        RATE_LINE.into(),
                        STARTED.into(),
                    ],
                )],
            ),
        );
        let i = v.intermittency.unwrap();
        assert!(!i.intermittent);
        assert_eq!(i.successes_between_failures, 0);
    }

    fn restarted(
        c: &CompiledRunbook,
        name: &str,
        previous: &[String],
        current: &[String],
    ) -> PodInput {
        let mut p = timed(c, name, current);
        let before = timed(c, name, previous);
        p.restart = Some(Restart {
            at: before
                .findings
                .last_line
                .map(|t| t + SignedDuration::from_secs(1)),
            previous_failures: before.findings.failures(),
            current_until: p.findings.last_line,
        });
        p.findings.merge(before.findings);
        p
    }

    #[test]
    fn failures_only_before_a_restart_propose_no_deletion_once_the_new_container_is_clean() {
        let a = metering_alert();
        let c = compile(&a);
        let previous: Vec<String> = (0..5)
            .map(|m| at(&format!("2026-11-21T04:0{m}:00Z"), NET_LINE))
            .collect();
        let clean = |minutes: i64| -> Vec<String> {
            (0..=minutes)
                .map(|m| {
                    at(
                        &(ts("2026-11-21T04:05:00Z") + SignedDuration::from_mins(m)).to_string(),
                        "reconciling",
                    )
                })
                .collect()
        };
        let sibling = pod(&c, "good", true, &[]);

        let v = assess(
            &c,
            &input(
                a.clone(),
                vec![restarted(&c, "bad", &previous, &clean(12)), sibling.clone()],
            ),
        );
        assert_eq!(
            v.classification.category,
            Category::new("NetworkFailure").unwrap()
        );
        assert_eq!(v.classification.scope, Scope::SinglePod);
        assert_eq!(v.recommendation.action, Action::None);
        assert_eq!(v.delete_candidate, None);
        let said = "the failures of pod bad are all in the container that ran before the restart at 2026-11-21T04:04:01Z; the current container has been clean for 12 minutes";
        assert!(
            v.recommendation.reason.contains(said),
            "{}",
            v.recommendation.reason
        );
        assert!(
            v.classification.reason.contains(said),
            "{}",
            v.classification.reason
        );
        assert!(v.recommendation.reason.contains("pointless"));

        // Two minutes clean is too short to tell: the deletion is still proposed, and says why.
        let v = assess(
            &c,
            &input(
                a.clone(),
                vec![restarted(&c, "bad", &previous, &clean(2)), sibling.clone()],
            ),
        );
        assert_eq!(v.recommendation.action, Action::DeletePod);
        assert_eq!(v.delete_candidate.as_deref(), Some("bad"));
        assert!(
            v.recommendation
                .reason
                .contains("clean for 2 minutes, less than 5 minutes to call it recovered"),
            "{}",
            v.recommendation.reason
        );

        // Failures in the current container too: the restart did not help.
        let mut still = clean(12);
        still.push(at("2026-11-21T04:17:30Z", NET_LINE));
        let v = assess(
            &c,
            &input(a, vec![restarted(&c, "bad", &previous, &still), sibling]),
        );
        assert_eq!(v.recommendation.action, Action::DeletePod);
        assert!(
            !v.recommendation.reason.contains("restart"),
            "{}",
            v.recommendation.reason
        );
    }

    #[test]
    fn no_evidence_names_the_containers_read_and_skipped() {
        let a = metering_alert();
        let c = compile(&a);
        let mut i = input(a, vec![pod(&c, "p1", true, &["hello"])]);
        i.containers = Containers {
            wanted: Some("app".into()),
            read: ["app".to_string()].into(),
            skipped: ["sidecar".to_string()].into(),
        };
        assert_eq!(
            assess(&c, &i).classification.reason,
            "No ErrorMeteringTokenExchangeFailure records in 1 log lines from 1 pod. Read container app only, as spec.target.container says; skipped sidecar."
        );
        i.containers.read.clear();
        i.containers.wanted = Some("ap".into());
        i.containers.skipped.insert("app".into());
        assert!(
            assess(&c, &i)
                .classification
                .reason
                .ends_with("spec.target.container is \"ap\" and no pod has a container of that name; skipped app, sidecar."),
        );
    }

    #[test]
    fn related_services_leave_out_the_alerts_own_service() {
        let a = metering_alert();
        let c = compile(&a);
        let related = |service: &str, lines: &[&str]| {
            let mut s = c.related_scanner();
            for l in lines {
                s.push(l.as_bytes());
                s.push(b"\n");
            }
            RelatedInput {
                service: service.into(),
                pods: 2,
                findings: s.finish(),
            }
        };
        let mut i = input(a, vec![pod(&c, "p1", true, &[RATE])]);
        i.related = vec![
            related(
                "armada-api",
                &["ApiKey based rate limit for calls to /token"],
            ),
            related(
                "armada-cluster",
                &["ApiKey based rate limit for calls to /token"],
            ),
            related("armada-billing", &["fine"]),
        ];
        let v = assess(&c, &i);
        assert_eq!(
            v.related_services,
            [RelatedService {
                service: "armada-api".into(),
                pods: 2,
                matches: 1
            }]
        );
        let steps = v.recommendation.next_steps.join("\n");
        assert!(
            steps.contains("armada-api (1 matching lines in 2 pods); no matches in armada-billing"),
            "{steps}"
        );

        // Only a rate-limit verdict reports them.
        i.pods = vec![pod(&c, "p1", true, &[AUTH])];
        assert!(assess(&c, &i).related_services.is_empty());
    }

    #[test]
    fn no_pods_or_no_matches_is_no_evidence() {
        let a = metering_alert();
        let c = compile(&a);
        let none = assess(&c, &input(a.clone(), vec![]));
        assert_eq!(none.recommendation.action, Action::None);
        assert_eq!(none.classification.category, Category::NO_EVIDENCE);
        assert_eq!(none.classification.scope, Scope::NoPods);
        assert_eq!(none.recommendation.action, Action::None);
        assert!(
            none.classification.reason.starts_with("No pods were found"),
            "{}",
            none.classification.reason
        );
        let quiet = assess(&c, &input(a, vec![pod(&c, "p1", true, &[OK, "hello"])]));
        assert_eq!(quiet.classification.category, Category::NO_EVIDENCE);
        assert_eq!(
            quiet.classification.reason,
            "No ErrorMeteringTokenExchangeFailure records in 2 log lines from 1 pod."
        );
        assert!(quiet.notification.is_none());
        assert!(!quiet.recommendation.next_steps.is_empty());
    }

    #[test]
    fn client_id_not_authorized_fills_the_rotation() {
        let a = orchestrator_alert();
        let c = compile(&a);
        let line = "callbackName:DeleteClientID reasonCode:ErrorUnclassified controllerID:c7kd91rd0f6h1m2n3o4p 403 BXNIM0515E: You are not authorized to manage this Client ID.";
        let mut i = input(a, vec![pod(&c, "o1", true, &[line])]);
        let spec = c.runbook().env_info_spec().unwrap().clone();

        i.env_info = spec.read(
            &BTreeMap::from([(
                "MULTISHIFT_SRE_ACCOUNT_ID".to_string(),
                " acc123 ".to_string(),
            )]),
            "ConfigMap armada/armada-info",
        );
        let v = assess(&c, &i);
        assert_eq!(v.recommendation.action, Action::RecordApiKeyRotation);
        assert_eq!(
            v.classification.category,
            Category::new("ClientIdNotAuthorized").unwrap()
        );
        assert_eq!(v.classification.http_status, Some(403));
        let r = v.api_key_rotation.unwrap();
        assert_eq!(r.controller_ids, ["c7kd91rd0f6h1m2n3o4p"]);
        assert_eq!(r.account.as_deref(), Some("acc123"));
        assert_eq!(r.resource_group, None);
        assert_eq!(r.source.as_deref(), Some("ConfigMap armada/armada-info"));
        let steps = r.steps.join("\n");
        assert!(steps.contains("`ibmcloud target -c acc123`"), "{steps}");
        assert!(steps.contains("`ibmcloud target -g <MULTISHIFT_SRE_RESOURCE_GROUP_ID: not in ConfigMap armada/armada-info>`"), "{steps}");
        assert!(
            steps.contains("`ibmcloud ks api-key info --cluster c7kd91rd0f6h1m2n3o4p`"),
            "{steps}"
        );
        assert!(
            r.follow_up[0].contains("Environments affected: bluemix prod-fra02-carrier5 (eu-de)"),
            "{:?}",
            r.follow_up
        );
        assert_eq!(
            v.recommendation.next_steps.len(),
            r.steps.len() + r.follow_up.len()
        );

        i.env_info = spec.read(&BTreeMap::new(), "ConfigMap armada/armada-info");
        assert!(
            matches!(&i.env_info, EnvInfo::Missing { reason } if reason.contains("has neither"))
        );
        let r = assess(&c, &i).api_key_rotation.unwrap();
        assert_eq!((r.account, r.resource_group), (None, None));
        assert!(
            r.source
                .unwrap()
                .starts_with("Not available: ConfigMap armada/armada-info has neither")
        );
        assert!(r.steps.join("\n").contains(
            "`ibmcloud target -c <MULTISHIFT_SRE_ACCOUNT_ID: not found in ConfigMap armada-info>`"
        ));

        i.env_info = EnvInfo::NotNeeded;
        let r = assess(&c, &i).api_key_rotation.unwrap();
        assert!(r.source.unwrap().contains("was not read"));
    }

    #[test]
    fn unknown_orchestrator_errors_go_to_troutbridge_with_their_status() {
        let a = orchestrator_alert();
        let c = compile(&a);
        let v = assess(
            &c,
            &input(
                a,
                vec![pod(
                    &c,
                    "o1",
                    true,
                    &["callbackName:DeleteClientID reasonCode:ErrorUnclassified IAM said (500)"],
                )],
            ),
        );
        assert_eq!(v.recommendation.action, Action::Escalate);
        assert_eq!(
            v.classification.category,
            Category::new("Unclassified").unwrap()
        );
        assert_eq!(v.classification.http_status, Some(500));
        assert_eq!(v.recommendation.team.as_deref(), Some("troutbridge"));
        assert!(
            v.api_key_rotation.is_none() && v.notification.is_none() && v.intermittency.is_none()
        );
        assert!(v.recommendation.next_steps[0].contains("in prod-fra02-carrier5 (eu-de)"));
    }

    #[test]
    fn compiled_runbooks_can_be_shared_across_tasks() {
        fn shareable<T: Send + Sync>() {}
        fn sendable<T: Send>() {}
        shareable::<CompiledRunbook>();
        shareable::<Catalog>();
        sendable::<LogScanner<'static>>();
        sendable::<Verdict>();
    }
}

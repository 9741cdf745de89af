//! One generation of an AlertTriage, from alert to recorded verdict.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use sha2::{Digest, Sha256};
use tracing::{info, instrument};

use super::status::{ACTION_REQUIRED, Conditions, TRIAGED, fit};
use super::{Context, Error, MANAGER, remediate, retry_after};
use crate::action::{self, Facts, Target};
use crate::crd::{self, AlertTriage, AlertTriageStatus, Evidence, Phase, Proposal, TargetSelector};
use crate::evidence::{self, Plan};
use crate::redact::redact;
use crate::runbook::{
    AssessInput, CompiledRunbook, EnvInfo, EnvInfoSpec, PodInput, RelatedInput, Runbook, Verdict,
};

/// How far before `alert.startsAt` the window reaches, so the lines that fired the alert are in.
const BEFORE_ALERT: SignedDuration = SignedDuration::from_mins(5);
/// The longest window the API accepts; `startsAt` never stretches the window past it.
const MAX_WINDOW: SignedDuration = SignedDuration::from_hours(24);

pub async fn reconcile(cached: Arc<AlertTriage>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Decide on a fresh read, not the watch cache: right after our own status write the cache
    // can still show the previous phase, and acting on that would triage a generation twice or
    // take an approval for a spec change.
    let Some(obj) = triage_api(&cached, &ctx)
        .get_opt(&cached.name_any())
        .await?
    else {
        return Ok(Action::await_change());
    };
    let generation = obj.metadata.generation.unwrap_or_default();
    let status = obj.status.clone().unwrap_or_default();
    if status.phase == Some(Phase::Remediating) {
        // An action under way is finished whatever happened to the spec meanwhile.
        return remediate::resume(&obj, &ctx).await;
    }
    let waiting = status.phase == Some(Phase::AwaitingApproval);
    if status.observed_generation == Some(generation) {
        let settled = !matches!(
            status.phase,
            None | Some(Phase::Pending) | Some(Phase::Gathering)
        );
        if waiting && remediate::expired(&status, Timestamp::now()) {
            return remediate::expire(&obj, &ctx).await;
        }
        if waiting && obj.spec.approval.is_some() && remediate::awaiting_retry(&status) {
            return remediate::approved(&obj, &ctx).await;
        }
        if settled {
            // This generation was handled already; a restart must not redo it or repeat its
            // Events. A proposal still wakes us when it expires.
            return Ok(match (&status.proposal, waiting) {
                (Some(p), true) => Action::requeue(until(p.expires_at.0)),
                _ => Action::await_change(),
            });
        }
    } else if waiting && obj.spec.approval.is_some() && status.proposal.is_some() {
        // An approval is a spec change: it acts on the proposal instead of triaging again.
        return remediate::approved(&obj, &ctx).await;
    }
    triage(&obj, &ctx).await
}

fn until(t: Timestamp) -> Duration {
    Duration::try_from(t.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO)
        + Duration::from_secs(1)
}

pub fn error_policy(_obj: Arc<AlertTriage>, err: &Error, _ctx: Arc<Context>) -> Action {
    retry_after(err)
}

/// Why a triage cannot apply a runbook at all; it waits for the spec to change.
pub(super) struct Unworkable {
    pub reason: &'static str,
    pub message: String,
    pub runbook: Option<String>,
}

/// Everything a triage (or a remediation's fresh look) needs from the spec and the runbook.
pub(super) struct Resolved {
    pub runbook: &'static Runbook,
    pub compiled: Arc<CompiledRunbook>,
    pub namespace: String,
    pub selector: TargetSelector,
    pub window: Duration,
}

impl Resolved {
    /// What to read for a window ending `now`.
    pub fn plan(&self, obj: &AlertTriage, ctx: &Context, now: Timestamp) -> Plan {
        let since = window_start(
            now,
            self.window,
            obj.spec.alert.starts_at.as_ref().map(|t| t.0),
        );
        Plan {
            namespace: self.namespace.clone(),
            selector: self.selector.clone(),
            container: obj.spec.target.container.clone(),
            since,
            log_byte_limit: ctx.config.log_byte_limit,
            concurrency: ctx.config.pod_concurrency,
            bytes_in_flight: ctx.bytes_in_flight.clone(),
        }
    }
}

pub(super) fn resolve(obj: &AlertTriage, ctx: &Context) -> Result<Resolved, Unworkable> {
    let runbook = ctx
        .catalog
        .select(obj.spec.runbook.as_deref(), &obj.spec.alert)
        .map_err(|e| Unworkable {
            reason: "UnknownRunbook",
            message: e.to_string(),
            runbook: None,
        })?;
    let unworkable = |reason: &'static str, message: String| Unworkable {
        reason,
        message,
        runbook: Some(runbook.id().to_string()),
    };
    let namespace = obj
        .target_namespace()
        .map(str::to_string)
        .ok_or_else(|| unworkable("NoNamespace", "the AlertTriage has no namespace".into()))?;
    let selector = obj
        .spec
        .target
        .selector
        .clone()
        .or_else(|| runbook.default_selector(&obj.spec.alert))
        .ok_or_else(|| {
            unworkable(
                "NoSelector",
                format!(
                    "runbook {} has no default selector for this alert; set spec.target.selector",
                    runbook.id()
                ),
            )
        })?;
    let window = match &obj.spec.window {
        Some(w) => crate::cli::parse_duration(w).map_err(|e| unworkable("InvalidWindow", e))?,
        None => runbook.default_window(),
    };
    let compiled = ctx
        .compiled
        .get(runbook, &obj.spec.alert)
        .map_err(|e| unworkable("RunbookError", e.to_string()))?;
    Ok(Resolved {
        runbook,
        compiled,
        namespace,
        selector,
        window,
    })
}

#[instrument(skip_all, fields(triage = %obj.name_any(), namespace = obj.namespace().unwrap_or_default(), generation = obj.metadata.generation))]
async fn triage(obj: &AlertTriage, ctx: &Context) -> Result<Action, Error> {
    let api = triage_api(obj, ctx);
    let generation = obj.metadata.generation.unwrap_or_default();
    let previous = obj.status.clone().unwrap_or_default();
    let now = Timestamp::now();
    let resolved = match resolve(obj, ctx) {
        Ok(r) => r,
        Err(u) => return settle_unworkable(&api, obj, ctx, &previous, u, now).await,
    };
    let Resolved {
        runbook,
        compiled,
        namespace,
        selector,
        window,
    } = &resolved;

    if previous.phase != Some(Phase::Gathering) || previous.observed_generation != Some(generation)
    {
        let mut gathering = AlertTriageStatus {
            phase: Some(Phase::Gathering),
            observed_generation: Some(generation),
            runbook: Some(runbook.id().to_string()),
            ..AlertTriageStatus::default()
        };
        let mut conditions = Conditions::new(&previous.conditions, generation, now);
        conditions.set(TRIAGED, false, "Gathering", "gathering evidence");
        gathering.conditions = conditions.into_vec();
        apply_status(&api, obj, &gathering).await?;
        publish(
            ctx,
            obj,
            EventType::Normal,
            "Gathering",
            format!(
                "Applying runbook {} to pods {} in {namespace}",
                runbook.id(),
                selector.to_query()
            ),
        )
        .await;
    }

    let plan = resolved.plan(obj, ctx, now);
    let since = plan.since;
    let gathered = evidence::gather(&ctx.client, &plan, compiled).await?;
    let env_info = match runbook.env_info_spec() {
        Some(spec) => read_env_info(ctx, spec, namespace).await?,
        None => EnvInfo::NotNeeded,
    };
    let mut input = AssessInput {
        alert: obj.spec.alert.clone(),
        pods: gathered
            .pods
            .iter()
            .map(|p| PodInput {
                name: p.facts.name.clone(),
                ready: p.facts.ready,
                findings: p.findings.clone(),
            })
            .collect(),
        related: Vec::new(),
        env_info,
    };
    let mut verdict = compiled.assess(&input);
    if Some(verdict.classification.category) == runbook.related_category()
        && let Some((label_key, services)) = runbook.related_services()
    {
        let own: BTreeSet<String> = gathered.pods.iter().map(|p| p.facts.uid.clone()).collect();
        let related =
            evidence::gather_related(&ctx.client, &plan, compiled, label_key, services, &own)
                .await?;
        input.related = related
            .into_iter()
            .map(|(service, pods, findings)| RelatedInput {
                service,
                pods,
                findings,
            })
            .collect();
        verdict = compiled.assess(&input);
    }

    let lines = gathered.pods.iter().map(|p| p.findings.lines).sum();
    let bytes = gathered.pods.iter().map(|p| p.findings.bytes).sum();
    let evidence = Evidence {
        window: format_duration(*window),
        since: Some(Time(since)),
        selector: format!("{namespace}: {}", selector.to_query()),
        lines_scanned: lines,
        bytes_scanned: bytes,
        pods: gathered.pods.iter().map(|p| p.to_evidence()).collect(),
        pods_omitted: 0,
        intermittency: verdict.intermittency.clone(),
        related_services: verdict.related_services.clone(),
        notes: gathered.notes.clone(),
    };
    let proposal = match &verdict.delete_candidate {
        Some(pod) => propose(obj, ctx, &resolved, &gathered, pod, generation, now).await?,
        None => Proposed::Nothing,
    };
    let status = verdict_status(
        &previous,
        &verdict,
        evidence,
        proposal,
        runbook.id(),
        generation,
        now,
        ctx,
    );
    apply_status(&api, obj, &status).await?;
    let action = status
        .recommendation
        .as_ref()
        .map_or(verdict.recommendation.action, |r| r.action);
    ctx.metrics.triaged(
        runbook.id(),
        verdict.classification.category.as_str(),
        action.as_str(),
    );
    ctx.metrics.log_bytes(bytes);
    info!(
        runbook = runbook.id(),
        category = verdict.classification.category.as_str(),
        action = verdict.recommendation.action.as_str(),
        phase = verdict.phase.as_str(),
        lines,
        bytes,
        "triaged"
    );
    publish(
        ctx,
        obj,
        phase_event_type(verdict.phase),
        verdict.phase.as_str(),
        phase_message(obj, &status),
    )
    .await;
    Ok(match &status.proposal {
        // Wake up when the proposal expires so the record says so.
        Some(p) => Action::requeue(until(p.expires_at.0)),
        None => Action::await_change(),
    })
}

/// The window starts `window` before now, or a little before the alert started when that is
/// earlier (but never more than 24h back), so an alert triaged late still sees its cause.
fn window_start(now: Timestamp, window: Duration, starts_at: Option<Timestamp>) -> Timestamp {
    let by_window = now - SignedDuration::try_from(window).unwrap_or(MAX_WINDOW);
    let floor = now - MAX_WINDOW;
    match starts_at {
        Some(start) => {
            let anchored = start - BEFORE_ALERT;
            if anchored < by_window {
                anchored.max(floor)
            } else {
                by_window
            }
        }
        None => by_window,
    }
}

fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// A proposal id is stable for this triage, generation, pod UID and action, so re-running the
/// same triage proposes the same thing and an approval can never carry over to another pod.
fn proposal_id(triage_uid: &str, generation: i64, pod_uid: &str, action: crd::Action) -> String {
    let mut h = Sha256::new();
    h.update(triage_uid.as_bytes());
    h.update(generation.to_be_bytes());
    h.update(pod_uid.as_bytes());
    h.update(action.as_str().as_bytes());
    let digest = h.finalize();
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("delete-pod-{hex}")
}

/// What became of the runbook's DeletePod verdict.
enum Proposed {
    Nothing,
    Proposal(Proposal),
    /// A guardrail already says no, so nobody is asked to approve something that would be refused.
    HeldBack {
        pod: String,
        refusal: action::Refusal,
    },
}

/// Proposes deleting `pod` if every guardrail passes as of now.
async fn propose(
    obj: &AlertTriage,
    ctx: &Context,
    resolved: &Resolved,
    gathered: &evidence::Gathered,
    pod: &str,
    generation: i64,
    now: Timestamp,
) -> Result<Proposed, Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &resolved.namespace);
    let Some(live) = pods.get_opt(pod).await? else {
        let refusal = action::Refusal::PodGone {
            pod: pod.to_string(),
        };
        return Ok(Proposed::HeldBack {
            pod: pod.to_string(),
            refusal,
        });
    };
    let uid = live.uid().unwrap_or_default();
    let ledger = remediate::ledger_store(ctx).load().await?;
    let facts = Facts {
        namespace: &resolved.namespace,
        selector: &resolved.selector,
        pod: Some(remediate::pod_now(&live)),
        workload: remediate::workload_of(ctx, &resolved.namespace, &live).await?,
        failing: gathered
            .pods
            .iter()
            .filter(|p| p.findings.failures() > 0)
            .map(|p| p.facts.name.clone())
            .collect(),
        ready_siblings: gathered
            .pods
            .iter()
            .filter(|p| p.facts.name != pod && p.facts.ready && p.findings.failures() == 0)
            .count(),
        ledger: &ledger,
        now,
    };
    Ok(
        match action::check(Target { pod, uid: &uid }, &facts, &ctx.config.limits) {
            Ok(()) => Proposed::Proposal(proposal_for(
                obj,
                generation,
                pod,
                &uid,
                now,
                ctx.config.proposal_ttl,
            )),
            Err(refusal) => Proposed::HeldBack {
                pod: pod.to_string(),
                refusal,
            },
        },
    )
}

fn proposal_for(
    obj: &AlertTriage,
    generation: i64,
    pod: &str,
    pod_uid: &str,
    now: Timestamp,
    ttl: Duration,
) -> Proposal {
    let uid = obj.metadata.uid.as_deref().unwrap_or_default();
    Proposal {
        id: proposal_id(uid, generation, pod_uid, crd::Action::DeletePod),
        action: crd::Action::DeletePod,
        pod: pod.to_string(),
        pod_uid: pod_uid.to_string(),
        expires_at: Time(
            now + SignedDuration::try_from(ttl).unwrap_or(SignedDuration::from_mins(30)),
        ),
    }
}

#[allow(clippy::too_many_arguments)]
fn verdict_status(
    previous: &AlertTriageStatus,
    verdict: &Verdict,
    evidence: Evidence,
    proposed: Proposed,
    runbook: &str,
    generation: i64,
    now: Timestamp,
    ctx: &Context,
) -> AlertTriageStatus {
    let mut status = AlertTriageStatus {
        phase: Some(verdict.phase),
        observed_generation: Some(generation),
        runbook: Some(runbook.to_string()),
        classification: Some(verdict.classification.clone()),
        evidence: Some(evidence),
        recommendation: Some(verdict.recommendation.clone()),
        proposal: None,
        api_key_rotation: verdict.api_key_rotation.clone(),
        notification: verdict.notification.clone(),
        remediation: None,
        conditions: Vec::new(),
    };
    let mut conditions = Conditions::new(&previous.conditions, generation, now);
    conditions.set(
        TRIAGED,
        true,
        verdict.classification.category.as_str(),
        &verdict.classification.reason,
    );
    let (needs_human, reason, message) = match verdict.recommendation.action {
        crd::Action::DeletePod => match proposed {
            Proposed::Proposal(p) => {
                let message = format!("approve proposal {} to delete pod {}", p.id, p.pod);
                status.proposal = Some(p);
                (true, "AwaitingApproval", message)
            }
            Proposed::HeldBack { pod, refusal } => {
                let message = format!(
                    "the runbook would delete pod {pod}, but {}; escalate instead",
                    refusal.message()
                );
                status.phase = Some(Phase::Escalated);
                if let Some(r) = status.recommendation.as_mut() {
                    r.action = crd::Action::Escalate;
                    r.reason = format!("{} Not proposed: {}.", r.reason, refusal.message());
                }
                (true, refusal.reason(), message)
            }
            Proposed::Nothing => (true, "Escalate", verdict.recommendation.reason.clone()),
        },
        crd::Action::RecordApiKeyRotation => (
            true,
            "ApiKeyRotationRequired",
            verdict.recommendation.reason.clone(),
        ),
        crd::Action::Escalate => (
            true,
            "Escalate",
            format!(
                "page {}: {}",
                verdict
                    .recommendation
                    .team
                    .as_deref()
                    .unwrap_or("the owning team"),
                verdict.recommendation.reason
            ),
        ),
        crd::Action::None => (false, "NoAction", verdict.recommendation.reason.clone()),
    };
    conditions.set(ACTION_REQUIRED, needs_human, reason, &message);
    status.conditions = conditions.into_vec();
    fit(&mut status, ctx.config.status_byte_limit);
    status
}

pub(super) async fn settle_unworkable(
    api: &Api<AlertTriage>,
    obj: &AlertTriage,
    ctx: &Context,
    previous: &AlertTriageStatus,
    unworkable: Unworkable,
    now: Timestamp,
) -> Result<Action, Error> {
    let generation = obj.metadata.generation.unwrap_or_default();
    let message = redact(&unworkable.message).into_owned();
    let mut status = AlertTriageStatus {
        phase: Some(Phase::NoAction),
        observed_generation: Some(generation),
        runbook: unworkable.runbook,
        ..AlertTriageStatus::default()
    };
    let mut conditions = Conditions::new(&previous.conditions, generation, now);
    conditions.set(TRIAGED, false, unworkable.reason, &message);
    status.conditions = conditions.into_vec();
    apply_status(api, obj, &status).await?;
    publish(ctx, obj, EventType::Warning, unworkable.reason, message).await;
    Ok(Action::await_change())
}

pub(super) fn triage_api(obj: &AlertTriage, ctx: &Context) -> Api<AlertTriage> {
    Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default())
}

/// Reads the environment's info ConfigMap the runbook names (or the one configured on the
/// command line). Its absence is a fact for the record, not an error: the verdict says so.
async fn read_env_info(
    ctx: &Context,
    spec: &EnvInfoSpec,
    target_namespace: &str,
) -> Result<EnvInfo, Error> {
    let configured = ctx.config.info_configmap.as_ref();
    let name = configured.map_or(spec.config_map.as_str(), |c| c.name.as_str());
    let namespace = configured
        .and_then(|c| c.namespace.as_deref())
        .unwrap_or(target_namespace);
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let source = format!("ConfigMap {namespace}/{name}");
    match api.get_opt(name).await {
        Ok(Some(found)) => Ok(spec.read(&found.data.unwrap_or_default(), source)),
        Ok(None) => Ok(EnvInfo::Missing {
            reason: format!("{source} does not exist"),
        }),
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(EnvInfo::Missing {
            reason: format!(
                "{source} cannot be read: the operator is not allowed to ({})",
                s.message
            ),
        }),
        Err(source_err) => Err(Error::InfoConfigMap {
            name: source,
            source: source_err,
        }),
    }
}

pub(super) async fn apply_status(
    api: &Api<AlertTriage>,
    obj: &AlertTriage,
    status: &AlertTriageStatus,
) -> Result<(), Error> {
    let patch = serde_json::json!({
        "apiVersion": AlertTriage::api_version(&()),
        "kind": AlertTriage::kind(&()),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

fn phase_event_type(phase: Phase) -> EventType {
    match phase {
        Phase::RemediationFailed => EventType::Warning,
        _ => EventType::Normal,
    }
}

fn phase_message(obj: &AlertTriage, status: &AlertTriageStatus) -> String {
    let mut parts = Vec::new();
    if let Some(c) = &status.classification {
        parts.push(format!("{} ({:?})", c.category.as_str(), c.scope));
        if let Some(code) = c.http_status {
            parts.push(format!("HTTP {code}"));
        }
    }
    if let Some(r) = &status.recommendation {
        parts.push(format!("action {}", r.action.as_str()));
        if let Some(team) = &r.team {
            parts.push(format!("team {team}"));
        }
    }
    if let Some(p) = &status.proposal {
        parts.push(format!(
            "proposal {} deletes pod {}; approve with: kubectl -n {} patch alerttriage {} --type merge -p '{{\"spec\":{{\"approval\":{{\"proposal\":\"{}\",\"approvedBy\":\"<your user name>\"}}}}}}'",
            p.id,
            p.pod,
            obj.namespace().unwrap_or_default(),
            obj.name_any(),
            p.id
        ));
    }
    redact(&parts.join("; ")).into_owned()
}

/// Events are best effort: a triage is not failed because an Event could not be written.
pub(super) async fn publish(
    ctx: &Context,
    obj: &AlertTriage,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let note: String = redact(&note).chars().take(1000).collect();
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: "Triage".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        tracing::warn!(error = %e, "could not publish Event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_anchors_on_alert_start_within_a_day() {
        let now: Timestamp = "2026-11-21T12:00:00Z".parse().unwrap();
        let hour = Duration::from_secs(3600);
        assert_eq!(
            window_start(now, hour, None),
            "2026-11-21T11:00:00Z".parse().unwrap()
        );
        let recent: Timestamp = "2026-11-21T11:30:00Z".parse().unwrap();
        assert_eq!(
            window_start(now, hour, Some(recent)),
            "2026-11-21T11:00:00Z".parse().unwrap()
        );
        let early: Timestamp = "2026-11-21T08:00:00Z".parse().unwrap();
        assert_eq!(
            window_start(now, hour, Some(early)),
            "2026-11-21T07:55:00Z".parse().unwrap()
        );
        let ancient: Timestamp = "2026-11-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            window_start(now, hour, Some(ancient)),
            "2026-11-20T12:00:00Z".parse().unwrap()
        );
    }

    #[test]
    fn proposal_ids_are_stable_and_specific() {
        let a = proposal_id("t", 1, "pod-uid", crd::Action::DeletePod);
        assert_eq!(a, proposal_id("t", 1, "pod-uid", crd::Action::DeletePod));
        assert_ne!(a, proposal_id("t", 2, "pod-uid", crd::Action::DeletePod));
        assert_ne!(a, proposal_id("t", 1, "other-uid", crd::Action::DeletePod));
        assert_ne!(a, proposal_id("u", 1, "pod-uid", crd::Action::DeletePod));
        assert!(a.starts_with("delete-pod-") && a.len() == "delete-pod-".len() + 12);
    }

    #[test]
    fn durations_print_like_go() {
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(0)), "0s");
    }
}

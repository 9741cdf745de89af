//! Acting on an approved proposal: re-check with fresh reads, record the intent, evict with a
//! UID precondition, then verify that a replacement became Ready without the signature.
//!
//! Crash safety comes from the order of writes: the ledger entry and the intent
//! (`status.remediation`, phase `Remediating`) are written before the eviction call, and
//! `evictedAt` after it. A restart with an intent but no `evictedAt` evicts only if the pod with
//! the recorded UID is still there and not terminating, so a pod is never evicted twice and a
//! replacement never at all.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, ResourceExt};
use tracing::{info, instrument, warn};

use super::reconcile::{Resolved, apply_status, publish, resolve, settle_unworkable, triage_api};
use super::status::{ACTION_REQUIRED, Conditions, REMEDIATED};
use super::{Context, Error};
use crate::action::{
    self, ApprovedPlan, EvictOutcome, Facts, LedgerStore, PodNow, Refusal, Target,
};
use crate::crd::{AlertTriage, AlertTriageStatus, Phase, Remediation};
use crate::evidence::{self, is_ready};

/// Test-only crash points: with `ATO_PAUSE_AT=<step>` the operator stops at that step and
/// waits to be killed, so tests can kill it there for real.
fn pause_at(step: &str) -> impl Future<Output = ()> {
    let hit = std::env::var("ATO_PAUSE_AT").is_ok_and(|s| s == step);
    async move {
        if hit {
            warn!(step, "paused for a crash test (ATO_PAUSE_AT)");
            std::future::pending::<()>().await;
        }
    }
}

/// The `action` label of the actions metric, whichever API removes the pod.
const ACTION_LABEL: &str = "DeletePod";
const POLL: Duration = Duration::from_secs(3);
const BLOCKED_RETRY: Duration = Duration::from_secs(20);
const REFUSED_RETRY: Duration = Duration::from_secs(60);

/// A new generation carries an approval for the proposal awaiting it.
#[instrument(skip_all, fields(triage = %obj.name_any(), generation = obj.metadata.generation))]
pub async fn approved(obj: &AlertTriage, ctx: &Context) -> Result<Action, Error> {
    let api = triage_api(obj, ctx);
    let previous = obj.status.clone().unwrap_or_default();
    let now = Timestamp::now();
    let plan = match action::approve(obj.spec.approval.as_ref(), previous.proposal.as_ref(), now) {
        Ok(p) => p,
        Err(refusal) => return refuse(obj, ctx, &previous, refusal, now).await,
    };
    let resolved = match resolve(obj, ctx) {
        Ok(r) => r,
        Err(u) => return settle_unworkable(&api, obj, ctx, &previous, u, now).await,
    };

    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &resolved.namespace);
    let pod = pods.get_opt(plan.pod()).await?;
    let workload = match &pod {
        Some(p) => workload_of(ctx, &resolved.namespace, p).await?,
        None => String::new(),
    };
    let gathered = evidence::gather(
        &ctx.client,
        &resolved.plan(obj, ctx, now),
        &resolved.compiled,
    )
    .await?;
    ctx.metrics
        .log_bytes(gathered.pods.iter().map(|p| p.findings.bytes).sum());
    let failing: Vec<String> = gathered
        .pods
        .iter()
        .filter(|p| p.findings.failures() > 0)
        .map(|p| p.facts.name.clone())
        .collect();
    let ready_siblings = gathered
        .pods
        .iter()
        .filter(|p| p.facts.name != plan.pod() && p.facts.ready && p.findings.failures() == 0)
        .count();
    let store = ledger_store(ctx);
    let mut ledger = store.load().await.map_err(Error::Ledger)?;
    let facts = Facts {
        namespace: &resolved.namespace,
        selector: &resolved.selector,
        pod: pod.as_ref().map(pod_now),
        workload: workload.clone(),
        failing,
        ready_siblings,
        ledger: &ledger,
        now,
    };
    if let Err(refusal) = action::check(Target::from(&plan), &facts, &ctx.config.limits) {
        return refuse(obj, ctx, &previous, refusal, now).await;
    }

    let action_name = if ctx.config.allow_pod_delete {
        "DeletePod"
    } else {
        "EvictPod"
    };
    if obj.spec.dry_run || ctx.config.dry_run {
        let message = format!(
            "dry run{}: would {} pod {} (UID {}) approved by {} for proposal {}; every guardrail passed; nothing was done",
            if obj.spec.dry_run {
                ""
            } else {
                " (operator-wide)"
            },
            if ctx.config.allow_pod_delete {
                "delete"
            } else {
                "evict"
            },
            plan.pod(),
            plan.pod_uid(),
            plan.approved_by(),
            plan.proposal()
        );
        let mut status = previous.clone();
        status.phase = Some(Phase::NoAction);
        status.observed_generation = obj.metadata.generation;
        status.remediation = Some(Remediation {
            outcome: "DryRun".into(),
            message: message.clone(),
            finished_at: Some(Time(now)),
            ..intent(&plan, action_name, now)
        });
        set_conditions(&mut status, &previous, now, false, "DryRun", &message);
        apply_status(&api, obj, &status).await?;
        publish(ctx, obj, EventType::Normal, "DryRun", message).await;
        ctx.metrics.action(ACTION_LABEL, "DryRun");
        return Ok(Action::await_change());
    }

    // Spend the budget first: a crash after this costs one unit of budget, never a second pod.
    ledger.record(action::Entry {
        at: now,
        workload,
        proposal: plan.proposal().to_string(),
        pod_uid: plan.pod_uid().to_string(),
        triage: format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()),
    });
    store.save(&ledger).await.map_err(Error::Ledger)?;

    let mut status = previous.clone();
    status.phase = Some(Phase::Remediating);
    status.observed_generation = obj.metadata.generation;
    status.remediation = Some(intent(&plan, action_name, now));
    let message = format!(
        "removing pod {} (UID {}) as approved by {} (proposal {})",
        plan.pod(),
        plan.pod_uid(),
        plan.approved_by(),
        plan.proposal()
    );
    set_conditions(&mut status, &previous, now, false, "InProgress", &message);
    apply_status(&api, obj, &status).await?;
    publish(ctx, obj, EventType::Normal, "Remediating", message).await;
    pause_at("after-intent").await;
    execute(obj, ctx, &resolved, &plan, status).await
}

/// Phase `Remediating`: carry on from the recorded intent, whatever the generation.
#[instrument(skip_all, fields(triage = %obj.name_any()))]
pub async fn resume(obj: &AlertTriage, ctx: &Context) -> Result<Action, Error> {
    let status = obj.status.clone().unwrap_or_default();
    let Some(remediation) = status.remediation.clone() else {
        return Ok(Action::await_change());
    };
    let now = Timestamp::now();
    let resolved = match resolve(obj, ctx) {
        Ok(r) => r,
        Err(u) => {
            let reason = format!("the triage can no longer be resolved: {}", u.message);
            return finish(obj, ctx, status, false, &reason, None, now).await;
        }
    };
    if remediation.evicted_at.is_some() {
        return verify(obj, ctx, &resolved, status).await;
    }
    let started = remediation.started_at.as_ref().map_or(now, |t| t.0);
    // The approval is checked as of when the intent was recorded: an approval withdrawn or
    // changed since then stops an eviction that has not happened yet.
    let plan = match action::approve(
        obj.spec.approval.as_ref(),
        status.proposal.as_ref(),
        started,
    ) {
        Ok(p) => p,
        Err(refusal) => {
            let reason = format!("not evicted: {}", refusal.message());
            return finish(obj, ctx, status, false, &reason, None, now).await;
        }
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &resolved.namespace);
    let still_there = pods.get_opt(plan.pod()).await?.filter(|p| {
        p.uid().as_deref() == Some(plan.pod_uid()) && p.metadata.deletion_timestamp.is_none()
    });
    if still_there.is_some() {
        return execute(obj, ctx, &resolved, &plan, status).await;
    }
    // The pod with that UID is terminating or gone: the eviction was accepted before a restart
    // (or someone else removed it). Either way it must not be evicted again.
    info!(
        pod = plan.pod(),
        "the approved pod is already going; verifying"
    );
    let mut status = status;
    if let Some(r) = status.remediation.as_mut() {
        r.evicted_at = Some(Time(now));
        r.outcome = "InProgress".into();
        r.message = "the pod was already terminating or gone when the operator resumed; waiting for a replacement".into();
    }
    apply_status(&triage_api(obj, ctx), obj, &status).await?;
    verify(obj, ctx, &resolved, status).await
}

/// The eviction call and what follows from its answer.
async fn execute(
    obj: &AlertTriage,
    ctx: &Context,
    resolved: &Resolved,
    plan: &ApprovedPlan,
    mut status: AlertTriageStatus,
) -> Result<Action, Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.eviction_client.clone(), &resolved.namespace);
    let outcome = action::evict(&pods, plan, ctx.config.allow_pod_delete).await?;
    pause_at("after-evict").await;
    let now = Timestamp::now();
    match outcome {
        EvictOutcome::Evicted => {
            ctx.metrics.action(ACTION_LABEL, "Evicted");
            let message = format!(
                "pod {} (UID {}) evicted as approved by {} (proposal {}); waiting for a replacement to become Ready",
                plan.pod(),
                plan.pod_uid(),
                plan.approved_by(),
                plan.proposal()
            );
            if let Some(r) = status.remediation.as_mut() {
                r.evicted_at = Some(Time(now));
                r.outcome = "InProgress".into();
                r.message = message.clone();
            }
            apply_status(&triage_api(obj, ctx), obj, &status).await?;
            publish(ctx, obj, EventType::Normal, "Evicted", message).await;
            publish_on_pod(ctx, &resolved.namespace, plan).await;
            verify(obj, ctx, resolved, status).await
        }
        EvictOutcome::Blocked(why) => {
            ctx.metrics.action(ACTION_LABEL, "Blocked");
            let message = format!(
                "eviction of pod {} is blocked by a PodDisruptionBudget ({why}); retrying in {}s",
                plan.pod(),
                BLOCKED_RETRY.as_secs()
            );
            let first = status
                .remediation
                .as_ref()
                .is_none_or(|r| r.outcome != "Blocked");
            if let Some(r) = status.remediation.as_mut() {
                r.outcome = "Blocked".into();
                r.message = message.clone();
            }
            apply_status(&triage_api(obj, ctx), obj, &status).await?;
            if first {
                publish(ctx, obj, EventType::Warning, "EvictionBlocked", message).await;
            }
            Ok(Action::requeue(BLOCKED_RETRY))
        }
        EvictOutcome::Gone(why) => {
            ctx.metrics.action(ACTION_LABEL, "Gone");
            let reason = format!(
                "pod {} was gone or replaced before it could be evicted ({why}); nothing was evicted",
                plan.pod()
            );
            finish(obj, ctx, status, false, &reason, None, now).await
        }
    }
}

/// After the eviction: a replacement must become Ready and its logs must not show the signature.
async fn verify(
    obj: &AlertTriage,
    ctx: &Context,
    resolved: &Resolved,
    status: AlertTriageStatus,
) -> Result<Action, Error> {
    pause_at("during-verify").await;
    let now = Timestamp::now();
    let Some(remediation) = status.remediation.clone() else {
        return Ok(Action::await_change());
    };
    let evicted_at = remediation.evicted_at.as_ref().map_or(now, |t| t.0);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &resolved.namespace);
    let list = pods
        .list(&ListParams::default().labels(&resolved.selector.to_query()))
        .await?;
    // A replacement is a pod the evicted one's controller created after the eviction.
    let slack = SignedDuration::from_secs(2);
    let mut replacements: Vec<Pod> = list
        .items
        .into_iter()
        .filter(|p| p.uid().as_deref() != Some(remediation.pod_uid.as_str()))
        .filter(|p| {
            p.metadata
                .creation_timestamp
                .as_ref()
                .is_some_and(|t| t.0 + slack >= evicted_at)
        })
        .filter(is_ready)
        .collect();
    replacements.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
    if let Some(replacement) = replacements.into_iter().next() {
        let name = replacement.name_any();
        let ready_since = ready_since(&replacement).unwrap_or(now);
        let settled_at = ready_since
            + SignedDuration::try_from(ctx.config.verify_settle).unwrap_or(SignedDuration::MAX);
        if now < settled_at {
            // Ready is not yet well: watch the replacement a while before judging it.
            if remediation.replacement.as_deref() != Some(name.as_str()) {
                let mut status = status;
                if let Some(r) = status.remediation.as_mut() {
                    r.replacement = Some(name.clone());
                    r.message = format!(
                        "replacement pod {name} is Ready; checking its logs for the signature at {settled_at}"
                    );
                }
                apply_status(&triage_api(obj, ctx), obj, &status).await?;
            }
            let wait = Duration::try_from(settled_at.duration_since(now)).unwrap_or(POLL);
            return Ok(Action::requeue(wait.min(POLL)));
        }
        let mut plan = resolved.plan(obj, ctx, now);
        plan.since = replacement
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(evicted_at, |t| t.0);
        let scanned = evidence::scan_one(&ctx.client, &plan, replacement, &resolved.compiled).await;
        ctx.metrics.log_bytes(scanned.findings.bytes);
        let failures = scanned.findings.failures();
        return if failures > 0 {
            let reason = format!(
                "replacement pod {name} shows the signature again ({failures} matching records); escalate"
            );
            finish(obj, ctx, status, false, &reason, Some(name), now).await
        } else {
            let logs = if scanned.log_errors.is_empty() {
                format!(
                    "{} log lines since it started, none with the signature",
                    scanned.findings.lines
                )
            } else {
                format!(
                    "its logs could not be read: {}",
                    scanned.log_errors.join("; ")
                )
            };
            let reason = format!(
                "replacement pod {name} has been Ready for {}s; {logs}",
                now.duration_since(ready_since).as_secs()
            );
            finish(obj, ctx, status, true, &reason, Some(name), now).await
        };
    }
    let deadline = evicted_at
        + SignedDuration::try_from(ctx.config.verify_timeout).unwrap_or(SignedDuration::MAX);
    if now >= deadline {
        let reason = format!(
            "no replacement pod became Ready within {}s of the eviction",
            ctx.config.verify_timeout.as_secs()
        );
        return finish(obj, ctx, status, false, &reason, None, now).await;
    }
    Ok(Action::requeue(POLL))
}

/// When the pod's Ready condition last became True.
fn ready_since(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?
        .last_transition_time
        .as_ref()
        .map(|t| t.0)
}

/// Records how the remediation ended.
async fn finish(
    obj: &AlertTriage,
    ctx: &Context,
    previous: AlertTriageStatus,
    succeeded: bool,
    message: &str,
    replacement: Option<String>,
    now: Timestamp,
) -> Result<Action, Error> {
    let mut status = previous.clone();
    status.phase = Some(if succeeded {
        Phase::Remediated
    } else {
        Phase::RemediationFailed
    });
    if let Some(r) = status.remediation.as_mut() {
        r.outcome = if succeeded { "Succeeded" } else { "Failed" }.into();
        r.message = message.to_string();
        r.finished_at = Some(Time(now));
        r.replacement = replacement;
    }
    let reason = if succeeded {
        "Remediated"
    } else {
        "RemediationFailed"
    };
    ctx.metrics
        .action(ACTION_LABEL, if succeeded { "Succeeded" } else { "Failed" });
    set_conditions(&mut status, &previous, now, succeeded, reason, message);
    apply_status(&triage_api(obj, ctx), obj, &status).await?;
    let type_ = if succeeded {
        EventType::Normal
    } else {
        EventType::Warning
    };
    publish(ctx, obj, type_, reason, message.to_string()).await;
    Ok(Action::await_change())
}

/// A guardrail said no: nothing is touched; the triage says why.
async fn refuse(
    obj: &AlertTriage,
    ctx: &Context,
    previous: &AlertTriageStatus,
    refusal: Refusal,
    now: Timestamp,
) -> Result<Action, Error> {
    let message = refusal.message();
    info!(reason = refusal.reason(), "remediation refused");
    ctx.metrics.action(ACTION_LABEL, "Refused");
    let mut status = previous.clone();
    status.observed_generation = obj.metadata.generation;
    if !refusal.keeps_proposal() {
        status.phase = Some(Phase::NoAction);
    }
    set_conditions(
        &mut status,
        previous,
        now,
        false,
        refusal.reason(),
        &message,
    );
    apply_status(&triage_api(obj, ctx), obj, &status).await?;
    publish(ctx, obj, EventType::Warning, refusal.reason(), message).await;
    Ok(if retryable(&refusal) {
        Action::requeue(REFUSED_RETRY)
    } else {
        Action::await_change()
    })
}

/// Refusals that may clear by themselves while the approval stands (a budget refills, a
/// cooldown ends, a sibling becomes Ready): the approval path is tried again later.
pub fn retryable(refusal: &Refusal) -> bool {
    refusal.keeps_proposal() && !matches!(refusal, Refusal::ProposalMismatch { .. })
}

/// Whether the last approval attempt was refused for a reason that may clear by itself.
pub fn awaiting_retry(status: &AlertTriageStatus) -> bool {
    status.conditions.iter().any(|c| {
        c.type_ == REMEDIATED
            && c.status == "False"
            && RETRYABLE_REASONS.contains(&c.reason.as_str())
    })
}

const RETRYABLE_REASONS: &[&str] = &[
    "NoReadySibling",
    "BudgetExhausted",
    "CooldownActive",
    "NamespaceOutOfScope",
];

fn set_conditions(
    status: &mut AlertTriageStatus,
    previous: &AlertTriageStatus,
    now: Timestamp,
    remediated: bool,
    reason: &str,
    message: &str,
) {
    let generation = status.observed_generation.unwrap_or_default();
    let mut conditions = Conditions::new(&previous.conditions, generation, now);
    for c in &previous.conditions {
        if c.type_ != REMEDIATED && c.type_ != ACTION_REQUIRED {
            conditions.set(&c.type_, c.status == "True", &c.reason, &c.message);
        }
    }
    let waiting = status.phase == Some(Phase::AwaitingApproval);
    conditions.set(
        ACTION_REQUIRED,
        waiting,
        if waiting { "AwaitingApproval" } else { reason },
        message,
    );
    conditions.set(REMEDIATED, remediated, reason, message);
    status.conditions = conditions.into_vec();
}

fn intent(plan: &ApprovedPlan, action_name: &str, now: Timestamp) -> Remediation {
    Remediation {
        action: action_name.into(),
        proposal: plan.proposal().into(),
        pod: plan.pod().into(),
        pod_uid: plan.pod_uid().into(),
        approved_by: plan.approved_by().into(),
        started_at: Some(Time(now)),
        evicted_at: None,
        replacement: None,
        finished_at: None,
        outcome: "InProgress".into(),
        message: String::new(),
    }
}

pub(super) fn pod_now(p: &Pod) -> PodNow {
    PodNow {
        uid: p.uid().unwrap_or_default(),
        labels: p.labels().clone(),
        terminating: p.metadata.deletion_timestamp.is_some(),
        owner: p
            .owner_references()
            .iter()
            .find(|r| r.controller == Some(true))
            .map(|r| (r.kind.clone(), r.name.clone())),
    }
}

/// The workload a pod belongs to, for the cooldown: a ReplicaSet's Deployment when it has one.
pub(super) async fn workload_of(
    ctx: &Context,
    namespace: &str,
    pod: &Pod,
) -> Result<String, Error> {
    let Some(owner) = pod
        .owner_references()
        .iter()
        .find(|r| r.controller == Some(true))
    else {
        return Ok(format!("Pod/{}", pod.name_any()));
    };
    if owner.kind == "ReplicaSet" {
        let rs: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), namespace);
        if let Some(rs) = rs.get_opt(&owner.name).await?
            && let Some(parent) = rs
                .owner_references()
                .iter()
                .find(|r| r.controller == Some(true))
        {
            return Ok(format!("{namespace}/{}/{}", parent.kind, parent.name));
        }
    }
    Ok(format!("{namespace}/{}/{}", owner.kind, owner.name))
}

pub(super) fn ledger_store(ctx: &Context) -> LedgerStore {
    let (namespace, name) = &ctx.config.ledger;
    LedgerStore::new(ctx.client.clone(), namespace, name)
}

/// The Event on the evicted pod itself, so `kubectl describe pod` (while it lasts) and the
/// namespace's Events say who approved it.
async fn publish_on_pod(ctx: &Context, namespace: &str, plan: &ApprovedPlan) {
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(plan.pod().into()),
        namespace: Some(namespace.into()),
        uid: Some(plan.pod_uid().into()),
        ..Default::default()
    };
    let event = Event {
        type_: EventType::Normal,
        reason: "EvictedByAlertTriage".into(),
        note: Some(format!(
            "evicted by alert-triage-operator: proposal {} approved by {}",
            plan.proposal(),
            plan.approved_by()
        )),
        action: "Evict".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &reference).await {
        warn!(error = %e, "could not publish the Event on the evicted pod");
    }
}

/// Whether a proposal awaiting approval has expired by `now`.
pub fn expired(status: &AlertTriageStatus, now: Timestamp) -> bool {
    status
        .proposal
        .as_ref()
        .is_some_and(|p| now >= p.expires_at.0)
}

/// Marks an unapproved proposal as expired, once.
pub async fn expire(obj: &AlertTriage, ctx: &Context) -> Result<Action, Error> {
    let previous = obj.status.clone().unwrap_or_default();
    let now = Timestamp::now();
    let expired_at = previous.proposal.as_ref().map_or(now, |p| p.expires_at.0);
    refuse(
        obj,
        ctx,
        &previous,
        Refusal::ProposalExpired { expired_at },
        now,
    )
    .await
}

//! Acting on an approved proposal: re-check with fresh reads, record the intent, evict with a
//! UID precondition; or say why not.
//!
//! Crash safety comes from the order of writes: the ledger entry and the intent
//! (`status.remediation`, phase `Remediating`) are written before the eviction call, and
//! `evictedAt` after it. A restart with an intent but no `evictedAt` evicts only if the pod with
//! the recorded UID is still there and not terminating, so a pod is never evicted twice and a
//! replacement never at all.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use tracing::{info, instrument};

use super::conditions::{REMEDIATED, set_one, set_remediation};
use super::facts::{self, GuardFacts, ledger_store};
use super::phase::{self, Outcome};
use super::record::{Note, Record};
use super::resolve::{Resolved, resolve};
use super::triage::stall;
use super::verify::{ACTION_LABEL, finish, verify};
use super::{Context, Error};
use crate::action::{self, ApprovedPlan, EvictOutcome, Refusal, Target};
use crate::crash;
use crate::crd::{
    AlertTriage, AlertTriageStatus, Remediation, RemediationAction, RemediationOutcome,
};
use crate::evidence;

const BLOCKED_RETRY: Duration = Duration::from_secs(20);
const REFUSED_RETRY: Duration = Duration::from_secs(60);

/// An approval of the proposal awaiting it: check it, re-check every guardrail, then act.
#[instrument(skip_all, fields(triage = %obj.name_any(), generation = obj.metadata.generation))]
pub async fn act(obj: &AlertTriage, ctx: &Context, now: Timestamp) -> Result<Action, Error> {
    let record = Record::new(ctx, obj);
    let previous = obj.status.clone().unwrap_or_default();
    let plan = match action::approve(obj.spec.approval.as_ref(), previous.proposal.as_ref(), now) {
        Ok(p) => p,
        Err(refusal) => return refuse(&record, obj, ctx, refusal, now).await,
    };
    let resolved = match resolve(obj, ctx) {
        Ok(r) => r,
        Err(u) => return stall(&record, obj, u, now).await,
    };
    let gathered = evidence::gather(
        &ctx.client,
        &resolved.plan(obj, ctx, now),
        &resolved.compiled,
    )
    .await?;
    ctx.metrics
        .log_bytes(gathered.pods.iter().map(|p| p.findings.bytes).sum());
    let read = GuardFacts::read(ctx, &resolved, plan.pod(), &gathered).await?;
    if let Err(refusal) = action::check(
        Target::from(&plan),
        &read.facts(&resolved, now),
        &ctx.config.limits,
    ) {
        return refuse(&record, obj, ctx, refusal, now).await;
    }
    if ctx.config.review_approver
        && let Err(why) =
            facts::approver_may_remove(ctx, &resolved.namespace, plan.pod(), plan.approved_by())
                .await?
    {
        let refusal = Refusal::ApproverNotAllowed {
            approver: plan.approved_by().to_string(),
            verb: if ctx.config.allow_pod_delete {
                "delete"
            } else {
                "evict"
            }
            .to_string(),
            namespace: resolved.namespace.clone(),
            pod: plan.pod().to_string(),
            why,
        };
        return refuse(&record, obj, ctx, refusal, now).await;
    }

    let action = if ctx.config.allow_pod_delete {
        RemediationAction::DeletePod
    } else {
        RemediationAction::EvictPod
    };
    if obj.spec.dry_run || ctx.config.dry_run {
        let message = format!(
            "dry run{}: would {} pod {} (UID {}) approved by {} for proposal {}; every guardrail passed; nothing was done",
            if obj.spec.dry_run {
                ""
            } else {
                " (operator-wide)"
            },
            match action {
                RemediationAction::DeletePod => "delete",
                RemediationAction::EvictPod => "evict",
            },
            plan.pod(),
            plan.pod_uid(),
            plan.approved_by(),
            plan.proposal()
        );
        let mut status = previous.clone();
        status.phase = Some(phase::after(Outcome::DryRun));
        status.observed_generation = obj.metadata.generation;
        status.remediation = Some(Remediation {
            outcome: RemediationOutcome::DryRun,
            message: message.clone(),
            finished_at: Some(Time(now)),
            ..intent(&plan, action, now)
        });
        set_remediation(&mut status, &previous, now, false, "DryRun", &message);
        record
            .write(status, Some(Note::normal("DryRun", message)))
            .await?;
        ctx.metrics.action(ACTION_LABEL, "DryRun");
        return Ok(Action::await_change());
    }

    // Spend the budget first: a crash after this costs one unit of budget, never a second pod.
    let mut ledger = read.ledger;
    ledger.record(action::Entry {
        at: now,
        workload: read.workload,
        proposal: plan.proposal().to_string(),
        pod_uid: plan.pod_uid().to_string(),
        triage: format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()),
    });
    ledger_store(ctx).save(&ledger).await?;

    let mut status = previous.clone();
    status.phase = Some(phase::after(Outcome::IntentRecorded));
    status.observed_generation = obj.metadata.generation;
    status.remediation = Some(intent(&plan, action, now));
    let message = format!(
        "removing pod {} (UID {}) as approved by {} (proposal {})",
        plan.pod(),
        plan.pod_uid(),
        plan.approved_by(),
        plan.proposal()
    );
    set_remediation(&mut status, &previous, now, false, "InProgress", &message);
    let status = record
        .write(status, Some(Note::normal("Remediating", message)))
        .await?;
    crash::point("after-intent").await;
    execute(&record, obj, ctx, &resolved, &plan, status).await
}

/// Phase `Remediating` without a confirmed eviction: carry on from the recorded intent,
/// whatever the generation.
#[instrument(skip_all, fields(triage = %obj.name_any()))]
pub async fn resume(obj: &AlertTriage, ctx: &Context, now: Timestamp) -> Result<Action, Error> {
    let record = Record::new(ctx, obj);
    let status = obj.status.clone().unwrap_or_default();
    let Some(remediation) = status.remediation.clone() else {
        return Ok(Action::await_change());
    };
    let resolved = match resolve(obj, ctx) {
        Ok(r) => r,
        Err(u) => {
            let reason = format!("the triage can no longer be resolved: {}", u.message);
            return finish(&record, ctx, status, false, &reason, None, now).await;
        }
    };
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
            return finish(&record, ctx, status, false, &reason, None, now).await;
        }
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &resolved.namespace);
    let still_there = pods.get_opt(plan.pod()).await?.filter(|p| {
        p.uid().as_deref() == Some(plan.pod_uid()) && p.metadata.deletion_timestamp.is_none()
    });
    if still_there.is_some() {
        return execute(&record, obj, ctx, &resolved, &plan, status).await;
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
        r.outcome = RemediationOutcome::InProgress;
        r.message = "the pod was already terminating or gone when the operator resumed; waiting for a replacement".into();
    }
    let status = record.write(status, None).await?;
    verify(&record, obj, ctx, &resolved, status, now).await
}

/// The eviction call and what follows from its answer.
async fn execute(
    record: &Record<'_>,
    obj: &AlertTriage,
    ctx: &Context,
    resolved: &Resolved,
    plan: &ApprovedPlan,
    mut status: AlertTriageStatus,
) -> Result<Action, Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.eviction_client.clone(), &resolved.namespace);
    let outcome = action::evict(&pods, plan, ctx.config.allow_pod_delete).await?;
    crash::point("after-evict").await;
    let now = ctx.clock.now().await;
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
                r.outcome = RemediationOutcome::InProgress;
                r.message = message.clone();
            }
            let status = record
                .write(status, Some(Note::normal("Evicted", message)))
                .await?;
            record.event_on_pod(&resolved.namespace, plan).await;
            verify(record, obj, ctx, resolved, status, now).await
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
                .is_none_or(|r| r.outcome != RemediationOutcome::Blocked);
            if let Some(r) = status.remediation.as_mut() {
                r.outcome = RemediationOutcome::Blocked;
                r.message = message.clone();
            }
            let note = first.then(|| Note::warning("EvictionBlocked", message));
            record.write(status, note).await?;
            Ok(Action::requeue(BLOCKED_RETRY))
        }
        EvictOutcome::Gone(why) => {
            ctx.metrics.action(ACTION_LABEL, "Gone");
            let reason = format!(
                "pod {} was gone or replaced before it could be evicted ({why}); nothing was evicted",
                plan.pod()
            );
            finish(record, ctx, status, false, &reason, None, now).await
        }
    }
}

/// A guardrail or the approval check said no: nothing is touched; the triage says why.
async fn refuse(
    record: &Record<'_>,
    obj: &AlertTriage,
    ctx: &Context,
    refusal: Refusal,
    now: Timestamp,
) -> Result<Action, Error> {
    let previous = obj.status.clone().unwrap_or_default();
    let message = refusal.message();
    info!(reason = refusal.reason(), "remediation refused");
    ctx.metrics.action(ACTION_LABEL, "Refused");
    let mut status = previous.clone();
    status.observed_generation = obj.metadata.generation;
    status.phase = Some(phase::after(Outcome::Refused {
        kind: refusal.kind(),
        from: previous.phase,
    }));
    set_remediation(
        &mut status,
        &previous,
        now,
        false,
        refusal.reason(),
        &message,
    );
    record
        .write(status, Some(Note::warning(refusal.reason(), message)))
        .await?;
    Ok(if refusal.is_transient() {
        Action::requeue(REFUSED_RETRY)
    } else {
        Action::await_change()
    })
}

/// Only the approval changed and no proposal waits for it: the approval is ignored, visibly,
/// and the triage is not run again by it.
pub async fn ignore_approval(
    obj: &AlertTriage,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action, Error> {
    let previous = obj.status.clone().unwrap_or_default();
    let refusal = Refusal::ProposalMismatch {
        approved: obj
            .spec
            .approval
            .as_ref()
            .map(|a| a.proposal.clone())
            .unwrap_or_default(),
        current: previous
            .proposal
            .as_ref()
            .map(|p| p.id.clone())
            .unwrap_or_default(),
    };
    let message = refusal.message();
    let mut status = previous.clone();
    status.observed_generation = obj.metadata.generation;
    set_one(
        &mut status,
        &previous,
        now,
        REMEDIATED,
        false,
        refusal.reason(),
        &message,
    );
    ctx.metrics.action(ACTION_LABEL, "Refused");
    Record::new(ctx, obj)
        .write(status, Some(Note::warning(refusal.reason(), message)))
        .await?;
    Ok(Action::await_change())
}

/// Marks an unapproved proposal as expired, once.
pub async fn expire(obj: &AlertTriage, ctx: &Context, now: Timestamp) -> Result<Action, Error> {
    let expired_at = obj
        .status
        .as_ref()
        .and_then(|s| s.proposal.as_ref())
        .map_or(now, |p| p.expires_at.0);
    let record = Record::new(ctx, obj);
    refuse(
        &record,
        obj,
        ctx,
        Refusal::ProposalExpired { expired_at },
        now,
    )
    .await
}

fn intent(plan: &ApprovedPlan, action: RemediationAction, now: Timestamp) -> Remediation {
    Remediation {
        action,
        proposal: plan.proposal().into(),
        pod: plan.pod().into(),
        pod_uid: plan.pod_uid().into(),
        approved_by: plan.approved_by().into(),
        started_at: Some(Time(now)),
        evicted_at: None,
        replacement: None,
        finished_at: None,
        outcome: RemediationOutcome::InProgress,
        message: String::new(),
    }
}

//! Acting on an approved proposal: re-check with fresh reads, record the intent, then hand
//! over to the eviction (`evict`); or say why not.
//!
//! Crash safety comes from the order of writes: the ledger entry and the intent
//! (`status.remediation`, phase `Remediating`) are written before the eviction call, and
//! `evictedAt` after it. A restart with an intent but no `evictedAt` evicts only if the pod with
//! the recorded UID is still there and not terminating, so a pod is never evicted twice and a
//! replacement never at all.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use tracing::{info, instrument};

use super::conditions::{REMEDIATED, set_one, set_remediation};
use super::evict::execute;
use super::facts::{self, GuardFacts, ledger_store};
use super::phase::{self, Outcome};
use super::record::{Note, Record};
use super::resolve::resolve;
use super::triage::stall;
use super::verify::ACTION_LABEL;
use super::{Context, Error};
use crate::action::{self, ApprovedPlan, Intent, Refusal, Target};
use crate::crash;
use crate::crd::{AlertTriage, Remediation, RemediationAction, RemediationOutcome};
use crate::evidence::{self, PodFacts};

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
    let uid = obj.metadata.uid.as_deref().unwrap_or_default();
    if read.ledger.intent_for(uid, plan.proposal()).is_some() {
        // Another replica committed to this proposal first; its status write is on its way
        // and the next reconcile resumes from its intent.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
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
            ..remediation_intent(&plan, action, now)
        });
        set_remediation(&mut status, &previous, now, false, "DryRun", &message);
        record
            .write(status, Some(Note::normal("DryRun", message)))
            .await?;
        ctx.metrics.action(ACTION_LABEL, "DryRun");
        return Ok(Action::await_change());
    }

    // Spend the budget and record the intent first: a crash after this costs one unit of
    // budget, never a second pod, and a restart resumes from this entry, not from status.
    // The same reading verification uses to recognise the replacement's controller.
    let owner = read.pod.as_ref().and_then(|p| PodFacts::from_pod(p).owner);
    let intent = Intent {
        triage_uid: obj.metadata.uid.clone().unwrap_or_default(),
        generation: obj.metadata.generation.unwrap_or_default(),
        namespace: resolved.namespace.clone(),
        pod: plan.pod().to_string(),
        approved_by: plan.approved_by().to_string(),
        runbook: resolved.runbook.id().to_string(),
        selector: resolved.selector.clone(),
        pods_before: gathered
            .pods
            .iter()
            .filter(|p| p.facts.uid != plan.pod_uid() && p.facts.owner == owner)
            .map(|p| p.facts.uid.clone())
            .collect(),
        owner,
    };
    let mut ledger = read.ledger;
    ledger.record(action::Entry {
        at: now,
        workload: read.workload,
        proposal: plan.proposal().to_string(),
        pod_uid: plan.pod_uid().to_string(),
        triage: format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()),
        intent: Some(intent.clone()),
    });
    ledger_store(ctx).save(&ledger).await?;

    let mut status = previous.clone();
    status.phase = Some(phase::after(Outcome::IntentRecorded));
    status.observed_generation = obj.metadata.generation;
    status.remediation = Some(remediation_intent(&plan, action, now));
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
    execute(&record, ctx, &plan, &intent, status).await
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
    let refusal = Refusal::ProposalMismatch {
        approved: obj
            .spec
            .approval
            .as_ref()
            .map(|a| a.proposal.clone())
            .unwrap_or_default(),
        current: obj
            .status
            .as_ref()
            .and_then(|s| s.proposal.as_ref())
            .map(|p| p.id.clone())
            .unwrap_or_default(),
    };
    refuse_approval(obj, ctx, refusal, now).await
}

/// An approval that arrived after the alert resolved: refused, visibly; nothing is deleted.
pub async fn refuse_resolved(
    obj: &AlertTriage,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action, Error> {
    refuse_approval(obj, ctx, phase::resolved_refusal(obj, now), now).await
}

/// Records that an approval was not acted on, without changing the phase.
async fn refuse_approval(
    obj: &AlertTriage,
    ctx: &Context,
    refusal: Refusal,
    now: Timestamp,
) -> Result<Action, Error> {
    let previous = obj.status.clone().unwrap_or_default();
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

/// The alert resolved while a proposal waited: the proposal is withdrawn (approved or not) and
/// the Event says why. The generation is left as it was observed, so a spec changed meanwhile
/// is still triaged (and then never proposes).
pub async fn withdraw(obj: &AlertTriage, ctx: &Context, now: Timestamp) -> Result<Action, Error> {
    let previous = obj.status.clone().unwrap_or_default();
    let refusal = phase::resolved_refusal(obj, now);
    let id = previous
        .proposal
        .as_ref()
        .map(|p| format!("{} to delete pod {}", p.id, p.pod))
        .unwrap_or_default();
    let message = format!("proposal {id} was withdrawn: {}", refusal.message());
    let mut status = previous.clone();
    status.proposal = None;
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
    info!(reason = refusal.reason(), "proposal withdrawn");
    Record::new(ctx, obj)
        .write(status, Some(Note::normal("ProposalWithdrawn", message)))
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

fn remediation_intent(
    plan: &ApprovedPlan,
    action: RemediationAction,
    now: Timestamp,
) -> Remediation {
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

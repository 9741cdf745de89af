//! The eviction call, and carrying on from a recorded intent after a restart. Both work from
//! the intent in the operator's ledger: what status or spec say now never redirects them.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use tracing::{info, instrument};

use super::facts::{ledger_store, pinned_intent};
use super::record::{Note, Record};
use super::verify::{ACTION_LABEL, status_mismatch, verify, withdrawn};
use super::{Context, Error};
use crate::action::{self, ApprovedPlan, EvictOutcome, Intent};
use crate::crash;
use crate::crd::{AlertTriage, AlertTriageStatus, RemediationOutcome};

const BLOCKED_RETRY: Duration = Duration::from_secs(20);

/// Phase `Remediating` without a confirmed eviction: carry on from the intent the operator
/// recorded in its ledger, whatever the generation. The spec cannot redirect it, and a status
/// that claims an intent the ledger does not hold is refused.
#[instrument(skip_all, fields(triage = %obj.name_any()))]
pub async fn resume(obj: &AlertTriage, ctx: &Context, now: Timestamp) -> Result<Action, Error> {
    let record = Record::new(ctx, obj);
    let status = obj.status.clone().unwrap_or_default();
    let ledger = ledger_store(ctx).load().await?;
    let (plan, intent) = match pinned_intent(obj, &ledger) {
        Ok(pinned) => pinned,
        Err(why) => return status_mismatch(&record, ctx, status, &why, now).await,
    };
    // An approval withdrawn or changed since the intent was recorded stops an eviction that
    // has not happened yet.
    if obj.spec.approval.as_ref().map(|a| a.proposal.as_str()) != Some(plan.proposal()) {
        let reason = format!(
            "not evicted: the approval of proposal {} was withdrawn or changed before the eviction",
            plan.proposal()
        );
        return withdrawn(&record, ctx, status, "ApprovalWithdrawn", &reason, now).await;
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &intent.namespace);
    let still_there = pods.get_opt(plan.pod()).await?.filter(|p| {
        p.uid().as_deref() == Some(plan.pod_uid()) && p.metadata.deletion_timestamp.is_none()
    });
    if still_there.is_some() {
        return execute(&record, ctx, &plan, &intent, status).await;
    }
    // The pod with that UID is terminating or gone: the eviction was accepted before a restart
    // (or someone else removed it). Either way it must not be evicted again.
    info!(
        pod = plan.pod(),
        "the approved pod is already going; verifying"
    );
    already_going(
        &record,
        ctx,
        &intent,
        status,
        "the pod was already terminating or gone when the operator resumed",
        now,
    )
    .await
}

/// Phase `Remediating`, the eviction not yet confirmed, and the alert resolved since: end the
/// remediation without evicting; the pod is left alone.
#[instrument(skip_all, fields(triage = %obj.name_any()))]
pub async fn abandon(obj: &AlertTriage, ctx: &Context, now: Timestamp) -> Result<Action, Error> {
    let record = Record::new(ctx, obj);
    let status = obj.status.clone().unwrap_or_default();
    let refusal = super::phase::resolved_refusal(obj, now);
    let message = format!("not evicted: {}", refusal.message());
    withdrawn(&record, ctx, status, refusal.reason(), &message, now).await
}

/// Records that the approved pod went away without our eviction call (or before its answer),
/// then looks for the replacement.
async fn already_going(
    record: &Record<'_>,
    ctx: &Context,
    intent: &Intent,
    mut status: AlertTriageStatus,
    why: &str,
    now: Timestamp,
) -> Result<Action, Error> {
    if let Some(r) = status.remediation.as_mut() {
        r.evicted_at = Some(Time(now));
        r.outcome = RemediationOutcome::InProgress;
        r.message = format!("{why}; waiting for a replacement");
    }
    let status = record.write(status, None).await?;
    verify(record, ctx, intent, status, now).await
}

/// The eviction call and what follows from its answer.
pub(super) async fn execute(
    record: &Record<'_>,
    ctx: &Context,
    plan: &ApprovedPlan,
    intent: &Intent,
    mut status: AlertTriageStatus,
) -> Result<Action, Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.eviction_client.clone(), &intent.namespace);
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
            record.event_on_pod(&intent.namespace, plan).await;
            verify(record, ctx, intent, status, now).await
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
            // Gone before our call landed: removed by someone else, or by another replica
            // acting on the same intent. Not evicted again; the replacement decides.
            ctx.metrics.action(ACTION_LABEL, "Gone");
            let why = format!(
                "pod {} was gone or replaced before this eviction call ({why}); nothing more was evicted",
                plan.pod()
            );
            already_going(record, ctx, intent, status, &why, now).await
        }
    }
}

//! After the eviction: a replacement must become Ready, stay Ready for a while, and its logs
//! must not show the signature. Then the remediation's outcome is recorded.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use tracing::info;

use super::conditions::set_remediation;
use super::facts::{ledger_store, pinned_intent};
use super::phase::{self, Outcome};
use super::record::{Note, Record};
use super::{Context, Error};
use crate::action::Intent;
use crate::crash;
use crate::crd::{AlertTriage, AlertTriageStatus, RemediationOutcome};
use crate::evidence::{self, Freshness, Plan, PodFacts, is_ready};
use crate::runbook::CompiledRunbook;

const POLL: Duration = Duration::from_secs(3);
/// The `action` label of the actions metric, whichever API removes the pod.
pub(super) const ACTION_LABEL: &str = "DeletePod";

/// Phase `Remediating` after the eviction was accepted, whatever the generation: judged
/// against the intent in the operator's ledger, never against what status or spec say now.
pub async fn check_replacement(
    obj: &AlertTriage,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action, Error> {
    let record = Record::new(ctx, obj);
    let status = obj.status.clone().unwrap_or_default();
    let ledger = ledger_store(ctx).load().await?;
    match pinned_intent(obj, &ledger) {
        Ok((_, intent)) => verify(&record, ctx, &intent, status, now).await,
        Err(why) => status_mismatch(&record, ctx, status, &why, now).await,
    }
}

/// Looks for a Ready replacement and judges it once it has settled. A replacement is a pod of
/// the evicted one's controller that did not exist before the eviction: identified by UIDs,
/// never by comparing timestamps.
pub async fn verify(
    record: &Record<'_>,
    ctx: &Context,
    intent: &Intent,
    status: AlertTriageStatus,
    now: Timestamp,
) -> Result<Action, Error> {
    crash::point("during-verify").await;
    let Some(remediation) = status.remediation.clone() else {
        return Ok(Action::await_change());
    };
    let evicted_at = remediation.evicted_at.as_ref().map_or(now, |t| t.0);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &intent.namespace);
    let list = pods
        .list(&ListParams::default().labels(&intent.selector.to_query()))
        .await?;
    let mut replacements: Vec<Pod> = list
        .items
        .into_iter()
        .filter(|p| {
            let uid = p.uid().unwrap_or_default();
            uid != remediation.pod_uid && !intent.pods_before.contains(&uid)
        })
        .filter(|p| PodFacts::from_pod(p).owner == intent.owner)
        .filter(is_ready)
        .collect();
    replacements.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let Some(replacement) = replacements.into_iter().next() else {
        let deadline = evicted_at
            + SignedDuration::try_from(ctx.config.verify_timeout).unwrap_or(SignedDuration::MAX);
        if now >= deadline {
            let reason = format!(
                "no replacement pod became Ready within {}s of the eviction",
                ctx.config.verify_timeout.as_secs()
            );
            return finish(record, ctx, status, false, &reason, None, now).await;
        }
        return Ok(Action::requeue(POLL));
    };
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
            record.write(status, None).await?;
        }
        let wait = Duration::try_from(settled_at.duration_since(now)).unwrap_or(POLL);
        return Ok(Action::requeue(wait.min(POLL)));
    }
    let compiled = match compiled_runbook(record.triage(), ctx, &intent.runbook) {
        Ok(c) => c,
        Err(why) => {
            let reason = format!("replacement pod {name} could not be checked: {why}");
            return finish(record, ctx, status, false, &reason, Some(name), now).await;
        }
    };
    let plan = Plan {
        namespace: intent.namespace.clone(),
        selector: intent.selector.clone(),
        container: record.triage().spec.target.container.clone(),
        since: replacement
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(evicted_at, |t| t.0),
        until: None,
        log_byte_limit: ctx.config.log_byte_limit,
        concurrency: ctx.config.pod_concurrency,
        bytes_in_flight: ctx.bytes_in_flight.clone(),
        events: ctx.events.clone(),
        events_fresh: Freshness::AfterRequest,
        pods_from_cache: false,
    };
    let scanned = evidence::scan_one(&ctx.client, &plan, replacement, &compiled).await;
    ctx.metrics.log_bytes(scanned.findings.bytes);
    let failures = scanned.findings.failures();
    if failures > 0 {
        let reason = format!(
            "replacement pod {name} shows the signature again ({failures} matching records); escalate"
        );
        return finish(record, ctx, status, false, &reason, Some(name), now).await;
    }
    let ready_for = now.duration_since(ready_since).as_secs();
    let deadline = evicted_at
        + SignedDuration::try_from(ctx.config.verify_timeout).unwrap_or(SignedDuration::MAX);
    if !scanned.log_errors.is_empty() && now < deadline {
        // A kubelet that cannot serve a new container's log yet may soon: look again.
        return Ok(Action::requeue(POLL));
    }
    if !scanned.log_errors.is_empty() {
        // Ready, but whether the signature stopped could not be checked: not a success.
        let message = format!(
            "replacement pod {name} has been Ready for {ready_for}s, but its logs could not be read ({}); check them by hand",
            scanned.log_errors.join("; ")
        );
        return end(
            record,
            ctx,
            status,
            RemediationOutcome::Unverified,
            "Unverified",
            &message,
            Some(name),
            now,
        )
        .await;
    }
    let reason = format!(
        "replacement pod {name} has been Ready for {ready_for}s; {} log lines since it started, none with the signature",
        scanned.findings.lines
    );
    finish(record, ctx, status, true, &reason, Some(name), now).await
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

/// The runbook the intent names, compiled for the triage's alert.
fn compiled_runbook(
    obj: &AlertTriage,
    ctx: &Context,
    id: &str,
) -> Result<Arc<CompiledRunbook>, String> {
    let own = obj.metadata.namespace.as_deref().unwrap_or_default();
    let chosen = ctx
        .runbooks
        .select(own, Some(id), &obj.spec.alert)
        .map_err(|r| r.message)?;
    ctx.compiled
        .get(&chosen.version, &chosen.runbook, &obj.spec.alert)
        .map_err(|e| e.to_string())
}

/// Status claims a remediation the operator's ledger does not hold: nothing is done, and the
/// record says so.
pub async fn status_mismatch(
    record: &Record<'_>,
    ctx: &Context,
    previous: AlertTriageStatus,
    why: &str,
    now: Timestamp,
) -> Result<Action, Error> {
    let message = format!("{why}; nothing was evicted");
    end(
        record,
        ctx,
        previous,
        RemediationOutcome::Failed,
        "StatusMismatch",
        &message,
        None,
        now,
    )
    .await
}

/// Records how the remediation ended.
pub async fn finish(
    record: &Record<'_>,
    ctx: &Context,
    previous: AlertTriageStatus,
    succeeded: bool,
    message: &str,
    replacement: Option<String>,
    now: Timestamp,
) -> Result<Action, Error> {
    let (outcome, reason) = if succeeded {
        (RemediationOutcome::Succeeded, "Remediated")
    } else {
        (RemediationOutcome::Failed, "RemediationFailed")
    };
    end(
        record,
        ctx,
        previous,
        outcome,
        reason,
        message,
        replacement,
        now,
    )
    .await
}

/// Ends a recorded intent whose eviction was not made and never will be.
pub async fn withdrawn(
    record: &Record<'_>,
    ctx: &Context,
    previous: AlertTriageStatus,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> Result<Action, Error> {
    info!(reason, "remediation withdrawn before the eviction");
    end(
        record,
        ctx,
        previous,
        RemediationOutcome::Withdrawn,
        reason,
        message,
        None,
        now,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn end(
    record: &Record<'_>,
    ctx: &Context,
    previous: AlertTriageStatus,
    outcome: RemediationOutcome,
    reason: &str,
    message: &str,
    replacement: Option<String>,
    now: Timestamp,
) -> Result<Action, Error> {
    let mut status = previous.clone();
    // Unverified: the pod was replaced, so the remediation ended, but it is not a success.
    let succeeded = outcome == RemediationOutcome::Succeeded;
    status.phase = Some(phase::after(match outcome {
        RemediationOutcome::Withdrawn => Outcome::Withdrawn,
        RemediationOutcome::Failed => Outcome::Finished { succeeded: false },
        _ => Outcome::Finished { succeeded: true },
    }));
    if let Some(r) = status.remediation.as_mut() {
        r.outcome = outcome;
        r.message = message.to_string();
        r.finished_at = Some(Time(now));
        r.replacement = replacement;
    }
    ctx.metrics.action(ACTION_LABEL, outcome.as_str());
    set_remediation(&mut status, &previous, now, succeeded, reason, message);
    let note = if succeeded || outcome == RemediationOutcome::Withdrawn {
        Note::normal(reason, message)
    } else {
        Note::warning(reason, message)
    };
    record.write(status, Some(note)).await?;
    Ok(Action::await_change())
}

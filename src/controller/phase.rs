//! The phase machine. [`next`] decides what a reconcile does with a triage as read, and
//! [`after`] which phase each outcome leaves it in. Both are pure: no I/O and no clock read
//! inside, so every combination is tested from a table below; the step files only carry out
//! what was decided here.

use jiff::Timestamp;

use crate::action::{Refusal, RefusalKind};
use sha2::{Digest, Sha256};

use crate::crd::{Action, AlertTriage, AlertTriageSpec, AlertTriageStatus, Phase};

use super::conditions::{REMEDIATED, RESOLVED};

/// What a reconcile does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Triage this generation from scratch: gather, assess, propose.
    Triage,
    /// A proposal waits for approval; nothing to do before it expires.
    AwaitApproval { expires_at: Timestamp },
    /// Check the approval against the proposal, re-check the guardrails and act.
    Act,
    /// Only the approval changed, and there is no proposal waiting for it: say so, and do
    /// not triage again.
    IgnoreApproval,
    /// An intent is recorded and the eviction not yet confirmed: carry on from the intent.
    Resume,
    /// The eviction was accepted: judge the replacement.
    Verify,
    /// The proposal waited past its expiry without an approval.
    Expire,
    /// The alert resolved while a proposal waited: withdraw it and say why.
    Withdraw,
    /// An approval arrived after the alert resolved: refuse it (`AlertResolved`).
    RefuseResolved,
    /// An intent is recorded, the eviction is not confirmed, and the alert has resolved since:
    /// end the remediation without evicting.
    Abandon,
    /// This generation is settled; nothing happens until the spec changes.
    Done,
}

/// The next step for `obj` as read at `now`.
pub fn next(obj: &AlertTriage, now: Timestamp) -> Step {
    let resolved = resolution(obj).is_some();
    match next_ignoring_resolution(obj, now) {
        // Nothing is evicted for a resolved alert: what was not yet evicted never will be.
        Step::Resume if resolved => Step::Abandon,
        Step::Act | Step::IgnoreApproval if resolved => Step::RefuseResolved,
        step => step,
    }
}

/// When the alert resolved, if Alertmanager said so (the `Resolved` condition the operator's
/// intake writes); a triage for a resolved alert never proposes or evicts.
pub fn resolution(obj: &AlertTriage) -> Option<Timestamp> {
    obj.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == RESOLVED && c.status == "True")
        .map(|c| c.last_transition_time.0)
}

/// Why nothing is proposed or done for a resolved alert, with when it resolved.
pub fn resolved_refusal(obj: &AlertTriage, now: Timestamp) -> Refusal {
    Refusal::AlertResolved {
        ended_at: resolution(obj).unwrap_or(now).to_string(),
    }
}

fn next_ignoring_resolution(obj: &AlertTriage, now: Timestamp) -> Step {
    let default = AlertTriageStatus::default();
    let status = obj.status.as_ref().unwrap_or(&default);
    let generation = obj.metadata.generation.unwrap_or_default();
    let approved = obj.spec.approval.is_some();
    if status.phase == Some(Phase::Remediating) {
        // An action under way is finished whatever happened to the spec meanwhile.
        return match &status.remediation {
            Some(r) if r.evicted_at.is_some() => Step::Verify,
            Some(_) => Step::Resume,
            None => Step::Done,
        };
    }
    let waiting = status.phase == Some(Phase::AwaitingApproval);
    if waiting && status.proposal.is_some() && resolution(obj).is_some() {
        // Before expiry and approvals: a resolved alert's proposal is withdrawn, approved or not.
        return Step::Withdraw;
    }
    if status.observed_generation == Some(generation) {
        if let (true, Some(p)) = (waiting, &status.proposal) {
            if now >= p.expires_at.0 {
                return Step::Expire;
            }
            if approved && refused_transiently(status) {
                return Step::Act;
            }
        }
        return match status.phase {
            // A triage that was interrupted while gathering is triaged again; a stalled one
            // (Pending) waits for its spec to change.
            None | Some(Phase::Gathering) => Step::Triage,
            Some(Phase::AwaitingApproval) => match &status.proposal {
                Some(p) => Step::AwaitApproval {
                    expires_at: p.expires_at.0,
                },
                None => Step::Done,
            },
            Some(_) => Step::Done,
        };
    }
    if status.spec_digest.as_deref() == Some(spec_digest(&obj.spec).as_str()) && approved {
        // Only the approval changed: it acts on the waiting proposal, never on a new spec.
        return if waiting && status.proposal.is_some() {
            Step::Act
        } else {
            Step::IgnoreApproval
        };
    }
    // Any other spec change withdraws a proposal and triages the new spec from scratch.
    Step::Triage
}

/// A digest of everything in the spec but the approval, so an approval is bound to the spec
/// it approved: changing anything else makes a different digest.
pub fn spec_digest(spec: &AlertTriageSpec) -> String {
    let without_approval = AlertTriageSpec {
        approval: None,
        ..spec.clone()
    };
    // Field order is the struct's and maps are sorted, so the JSON is canonical.
    let json = serde_json::to_vec(&without_approval).unwrap_or_default();
    let digest = Sha256::digest(&json);
    crate::hex(&digest[..16])
}

/// Whether the last approval attempt was refused for a reason that may clear by itself.
fn refused_transiently(status: &AlertTriageStatus) -> bool {
    status.conditions.iter().any(|c| {
        c.type_ == REMEDIATED
            && c.status == "False"
            && RefusalKind::from_reason(&c.reason).is_some_and(RefusalKind::is_transient)
    })
}

/// What a step ended with, for [`after`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Evidence is being gathered for a new generation.
    Gathering,
    /// The runbook's verdict; `proposed` when its deletion passed the guardrails and waits
    /// for approval.
    Triaged { action: Action, proposed: bool },
    /// The spec cannot be triaged as it is (unknown runbook, no selector, ...).
    Unworkable,
    /// A guardrail or the approval check said no while in phase `from`.
    Refused {
        kind: RefusalKind,
        from: Option<Phase>,
    },
    /// An approved action was planned and recorded, not done.
    DryRun,
    /// The intent to act is recorded; the action follows.
    IntentRecorded,
    /// The remediation ended.
    Finished { succeeded: bool },
    /// A recorded intent ended without the eviction (approval withdrawn, alert resolved).
    Withdrawn,
}

/// The phase a triage is in after `outcome`.
pub fn after(outcome: Outcome) -> Phase {
    match outcome {
        Outcome::Gathering => Phase::Gathering,
        // A deletion the guardrails already refuse is not proposed: a person takes over.
        Outcome::Triaged {
            action: Action::DeletePod,
            proposed: false,
        } => Phase::Escalated,
        Outcome::Triaged { action, .. } => verdict_phase(action),
        // Waiting for a spec it can work with (kstatus: Stalled), never "all clear".
        Outcome::Unworkable => Phase::Pending,
        Outcome::DryRun => Phase::NoAction,
        Outcome::Refused { kind, from } if kind.keeps_proposal() => from.unwrap_or(Phase::NoAction),
        Outcome::Refused { .. } => Phase::NoAction,
        Outcome::IntentRecorded => Phase::Remediating,
        Outcome::Finished { succeeded: true } => Phase::Remediated,
        Outcome::Finished { succeeded: false } => Phase::RemediationFailed,
        Outcome::Withdrawn => Phase::NoAction,
    }
}

/// The phase a runbook's recommended action leads to before any guardrail is consulted (what
/// `replay` reports offline).
pub fn verdict_phase(action: Action) -> Phase {
    match action {
        Action::DeletePod => Phase::AwaitingApproval,
        Action::RecordApiKeyRotation => Phase::ApiKeyRotationRequired,
        Action::Escalate => Phase::Escalated,
        Action::None => Phase::NoAction,
    }
}

#[cfg(test)]
mod tests;

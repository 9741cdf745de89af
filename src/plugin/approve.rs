//! `kubectl triage approve`: approve the proposal the person was shown, as themselves.
//!
//! The approval names the caller as the API server knows them (a SelfSubjectReview), never a
//! name typed in, so the chart's admission policy judges the real caller. The patch carries the
//! object's resourceVersion: if the triage changed after it was shown (a new proposal, a spec
//! edit), the API server refuses the patch instead of approving something nobody looked at.

use jiff::Timestamp;
use serde_json::json;

use crate::crd::{AlertTriage, Phase, Proposal};

/// Why there is nothing to approve.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotApprovable {
    #[error("{name} has not been triaged yet; wait for a verdict (kubectl triage why {name})")]
    NotTriaged { name: String },
    #[error(
        "{name}'s spec changed (generation {generation}) and the operator has not triaged it again yet; wait for the new verdict"
    )]
    Outdated { name: String, generation: i64 },
    #[error(
        "{name} has no proposal to approve (phase {phase}); kubectl triage why {name} says what it needs"
    )]
    NoProposal { name: String, phase: String },
    #[error(
        "proposal {id} of {name} expired at {at}; nothing can approve it now. Change the spec (e.g. remove spec.approval) to triage again"
    )]
    Expired {
        name: String,
        id: String,
        at: Timestamp,
    },
}

/// What approving would do.
#[derive(Debug, PartialEq)]
pub enum Approvable<'a> {
    Proposal(&'a Proposal),
    /// `spec.approval` already names this proposal.
    AlreadyApproved {
        id: String,
        by: String,
    },
}

/// Whether `t` has a proposal that can be approved at `now` (the caller's clock: the operator
/// checks expiry again with its own).
pub fn approvable(t: &AlertTriage, now: Timestamp) -> Result<Approvable<'_>, NotApprovable> {
    let name = t.metadata.name.clone().unwrap_or_default();
    let Some(status) = &t.status else {
        return Err(NotApprovable::NotTriaged { name });
    };
    let generation = t.metadata.generation.unwrap_or_default();
    if status.observed_generation.is_some_and(|o| o < generation) {
        return Err(NotApprovable::Outdated { name, generation });
    }
    let phase = status.phase.map_or("none", Phase::as_str);
    let proposal = match &status.proposal {
        Some(p) if status.phase == Some(Phase::AwaitingApproval) => p,
        Some(p) if phase == "NoAction" && p.expires_at.0 <= now => {
            return Err(NotApprovable::Expired {
                name,
                id: p.id.clone(),
                at: p.expires_at.0,
            });
        }
        _ => {
            return Err(NotApprovable::NoProposal {
                name,
                phase: phase.to_string(),
            });
        }
    };
    if let Some(a) = t
        .spec
        .approval
        .as_ref()
        .filter(|a| a.proposal == proposal.id)
    {
        return Ok(Approvable::AlreadyApproved {
            id: a.proposal.clone(),
            by: a.approved_by.clone(),
        });
    }
    if proposal.expires_at.0 <= now {
        return Err(NotApprovable::Expired {
            name,
            id: proposal.id.clone(),
            at: proposal.expires_at.0,
        });
    }
    Ok(Approvable::Proposal(proposal))
}

/// The merge patch that approves `proposal` as `user`: `spec.approval` and nothing else, plus
/// the resourceVersion the person saw, which makes the API server refuse it if the object
/// changed since.
pub fn patch(resource_version: &str, proposal: &str, user: &str) -> serde_json::Value {
    json!({
        "metadata": {"resourceVersion": resource_version},
        "spec": {"approval": {"proposal": proposal, "approvedBy": user}},
    })
}

/// Whether a typed answer to "Approve? [y/N]" is a yes.
pub fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn now() -> Timestamp {
        "2026-01-02T03:00:00Z".parse().unwrap()
    }

    fn triage(status: serde_json::Value, approval: Option<serde_json::Value>) -> AlertTriage {
        let mut spec = json!({"alert": {"name": "a"}});
        if let Some(a) = approval {
            spec["approval"] = a;
        }
        serde_json::from_value(json!({
            "apiVersion": "triage.dev/v1alpha1", "kind": "AlertTriage",
            "metadata": {"name": "net", "namespace": "pay", "generation": 2},
            "spec": spec, "status": status,
        }))
        .unwrap()
    }

    fn proposal(expires: &str) -> serde_json::Value {
        json!({"id": "delete-pod-abc", "action": "DeletePod", "pod": "web-1", "podUID": "u",
               "expiresAt": expires})
    }

    #[test]
    fn only_a_live_proposal_of_the_current_generation_can_be_approved() {
        let live = triage(
            json!({"phase": "AwaitingApproval", "observedGeneration": 2,
                   "proposal": proposal("2026-01-02T03:10:00Z")}),
            None,
        );
        assert!(matches!(
            approvable(&live, now()),
            Ok(Approvable::Proposal(p)) if p.id == "delete-pod-abc"
        ));

        let cases = [
            (
                json!({"phase": "AwaitingApproval", "observedGeneration": 2,
                       "proposal": proposal("2026-01-02T02:59:59Z")}),
                "expired at 2026-01-02T02:59:59Z",
            ),
            (
                json!({"phase": "NoAction", "observedGeneration": 2,
                       "proposal": proposal("2026-01-02T02:30:00Z")}),
                "expired at 2026-01-02T02:30:00Z",
            ),
            (
                json!({"phase": "Escalated", "observedGeneration": 2}),
                "no proposal to approve (phase Escalated)",
            ),
            (
                json!({"phase": "AwaitingApproval", "observedGeneration": 1,
                       "proposal": proposal("2026-01-02T03:10:00Z")}),
                "spec changed (generation 2)",
            ),
        ];
        for (status, says) in cases {
            let t = triage(status.clone(), None);
            let err = approvable(&t, now()).unwrap_err().to_string();
            assert!(err.contains(says), "{status}: {err}");
        }
        let untriaged: AlertTriage = serde_json::from_value(json!({
            "apiVersion": "triage.dev/v1alpha1", "kind": "AlertTriage",
            "metadata": {"name": "net", "generation": 1}, "spec": {"alert": {"name": "a"}},
        }))
        .unwrap();
        assert!(matches!(
            approvable(&untriaged, now()),
            Err(NotApprovable::NotTriaged { .. })
        ));
    }

    #[test]
    fn an_approved_proposal_is_reported_not_approved_again() {
        let t = triage(
            json!({"phase": "AwaitingApproval", "observedGeneration": 2,
                   "proposal": proposal("2026-01-02T03:10:00Z")}),
            Some(json!({"proposal": "delete-pod-abc", "approvedBy": "alice"})),
        );
        assert_eq!(
            approvable(&t, now()),
            Ok(Approvable::AlreadyApproved {
                id: "delete-pod-abc".into(),
                by: "alice".into()
            })
        );
    }

    #[test]
    fn the_patch_sets_only_the_approval_and_pins_the_version_seen() {
        assert_eq!(
            patch("42", "delete-pod-abc", "alice"),
            json!({"metadata": {"resourceVersion": "42"},
                   "spec": {"approval": {"proposal": "delete-pod-abc", "approvedBy": "alice"}}})
        );
    }

    #[test]
    fn only_y_or_yes_approves() {
        for yes in ["y", "Y", "yes", " YES \n"] {
            assert!(is_yes(yes), "{yes:?}");
        }
        for no in ["", "\n", "n", "no", "yess", "ok"] {
            assert!(!is_yes(no), "{no:?}");
        }
    }
}

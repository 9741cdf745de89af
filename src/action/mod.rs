//! Acting on a proposal: approval, guardrails, the durable deletion ledger and the executor.
//!
//! The only way to get an [`ApprovedPlan`] is [`approve`], which checks a human's approval
//! against the proposal; the executor takes nothing else, so an unapproved deletion cannot be
//! written.

mod executor;
mod guardrails;
mod ledger;

use jiff::Timestamp;

use crate::crd::{Approval, Proposal};

pub use executor::{EvictOutcome, evict};
pub use guardrails::{Facts, Limits, PodNow, Target, check};
pub use ledger::{Entry, Intent, Ledger, LedgerError, LedgerStore};

/// Why the operator will not act. Each is shown as a condition reason and an Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NoProposal,
    ProposalMismatch {
        approved: String,
        current: String,
    },
    ProposalExpired {
        expired_at: Timestamp,
    },
    NamespaceOutOfScope {
        namespace: String,
    },
    PodGone {
        pod: String,
    },
    PodUidChanged {
        pod: String,
        proposed: String,
        found: String,
    },
    PodNoLongerSelected {
        pod: String,
    },
    NotOwnedByController {
        pod: String,
        owner: Option<String>,
    },
    NoLongerFailing {
        pod: String,
    },
    MorePodsFailing {
        failing: Vec<String>,
    },
    NoReadySibling {
        pod: String,
    },
    BudgetExhausted {
        used: usize,
        budget: usize,
    },
    CooldownActive {
        workload: String,
        until: Timestamp,
    },
    ApproverNotAllowed {
        approver: String,
        verb: String,
        namespace: String,
        pod: String,
        why: String,
    },
    /// Alertmanager reported the alert resolved: nothing is evicted for it any more.
    AlertResolved {
        ended_at: String,
    },
}

/// The kinds of [`Refusal`], by the reason shown in conditions and Events. Status records only
/// the reason, so this is what a later reconcile reads back to know whether to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    NoProposal,
    ProposalMismatch,
    ProposalExpired,
    NamespaceOutOfScope,
    PodGone,
    PodUidChanged,
    PodNoLongerSelected,
    NotOwnedByController,
    NoLongerFailing,
    MorePodsFailing,
    NoReadySibling,
    BudgetExhausted,
    CooldownActive,
    ApproverNotAllowed,
    AlertResolved,
}

impl RefusalKind {
    pub const ALL: [RefusalKind; 15] = [
        RefusalKind::NoProposal,
        RefusalKind::ProposalMismatch,
        RefusalKind::ProposalExpired,
        RefusalKind::NamespaceOutOfScope,
        RefusalKind::PodGone,
        RefusalKind::PodUidChanged,
        RefusalKind::PodNoLongerSelected,
        RefusalKind::NotOwnedByController,
        RefusalKind::NoLongerFailing,
        RefusalKind::MorePodsFailing,
        RefusalKind::NoReadySibling,
        RefusalKind::BudgetExhausted,
        RefusalKind::CooldownActive,
        RefusalKind::ApproverNotAllowed,
        RefusalKind::AlertResolved,
    ];

    /// The condition/Event reason.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalKind::NoProposal => "NoProposal",
            RefusalKind::ProposalMismatch => "ProposalMismatch",
            RefusalKind::ProposalExpired => "ProposalExpired",
            RefusalKind::NamespaceOutOfScope => "NamespaceOutOfScope",
            RefusalKind::PodGone => "PodGone",
            RefusalKind::PodUidChanged => "PodUIDChanged",
            RefusalKind::PodNoLongerSelected => "PodNoLongerSelected",
            RefusalKind::NotOwnedByController => "NotOwnedByController",
            RefusalKind::NoLongerFailing => "NoLongerFailing",
            RefusalKind::MorePodsFailing => "MorePodsFailing",
            RefusalKind::NoReadySibling => "NoReadySibling",
            RefusalKind::BudgetExhausted => "BudgetExhausted",
            RefusalKind::CooldownActive => "CooldownActive",
            RefusalKind::ApproverNotAllowed => "ApproverNotAllowed",
            RefusalKind::AlertResolved => "AlertResolved",
        }
    }

    /// The kind whose reason is `reason`, if any.
    pub fn from_reason(reason: &str) -> Option<RefusalKind> {
        RefusalKind::ALL.into_iter().find(|k| k.as_str() == reason)
    }

    /// Whether the proposal can still be approved as it is once the situation changes (the
    /// triage keeps waiting), or is dead and needs a new triage.
    pub fn keeps_proposal(self) -> bool {
        matches!(
            self,
            RefusalKind::ProposalMismatch
                | RefusalKind::NamespaceOutOfScope
                | RefusalKind::NoReadySibling
                | RefusalKind::BudgetExhausted
                | RefusalKind::CooldownActive
                | RefusalKind::ApproverNotAllowed
        )
    }

    /// Whether the refusal may clear by itself while the approval stands (a budget refills, a
    /// cooldown ends, a sibling becomes Ready), so the approval is tried again later. The one
    /// source of retry truth: a later reconcile reads the reason back from status.
    pub fn is_transient(self) -> bool {
        self.keeps_proposal()
            && !matches!(
                self,
                RefusalKind::ProposalMismatch | RefusalKind::ApproverNotAllowed
            )
    }
}

impl Refusal {
    pub fn kind(&self) -> RefusalKind {
        match self {
            Refusal::NoProposal => RefusalKind::NoProposal,
            Refusal::ProposalMismatch { .. } => RefusalKind::ProposalMismatch,
            Refusal::ProposalExpired { .. } => RefusalKind::ProposalExpired,
            Refusal::NamespaceOutOfScope { .. } => RefusalKind::NamespaceOutOfScope,
            Refusal::PodGone { .. } => RefusalKind::PodGone,
            Refusal::PodUidChanged { .. } => RefusalKind::PodUidChanged,
            Refusal::PodNoLongerSelected { .. } => RefusalKind::PodNoLongerSelected,
            Refusal::NotOwnedByController { .. } => RefusalKind::NotOwnedByController,
            Refusal::NoLongerFailing { .. } => RefusalKind::NoLongerFailing,
            Refusal::MorePodsFailing { .. } => RefusalKind::MorePodsFailing,
            Refusal::NoReadySibling { .. } => RefusalKind::NoReadySibling,
            Refusal::BudgetExhausted { .. } => RefusalKind::BudgetExhausted,
            Refusal::CooldownActive { .. } => RefusalKind::CooldownActive,
            Refusal::ApproverNotAllowed { .. } => RefusalKind::ApproverNotAllowed,
            Refusal::AlertResolved { .. } => RefusalKind::AlertResolved,
        }
    }

    /// The condition/Event reason.
    pub fn reason(&self) -> &'static str {
        self.kind().as_str()
    }

    pub fn keeps_proposal(&self) -> bool {
        self.kind().keeps_proposal()
    }

    pub fn is_transient(&self) -> bool {
        self.kind().is_transient()
    }

    pub fn message(&self) -> String {
        match self {
            Refusal::NoProposal => "there is no proposal to approve".into(),
            Refusal::ProposalMismatch { approved, current } if current.is_empty() => format!(
                "spec.approval.proposal is {approved:?} but no proposal is waiting for approval; the approval was ignored and nothing was deleted"
            ),
            Refusal::ProposalMismatch { approved, current } => format!(
                "spec.approval.proposal is {approved:?} but the current proposal is {current:?}; nothing was deleted"
            ),
            Refusal::ProposalExpired { expired_at } => format!(
                "the proposal expired at {expired_at}; change the spec (e.g. remove spec.approval) to triage again"
            ),
            Refusal::NamespaceOutOfScope { namespace } => {
                format!("namespace {namespace} is outside the namespaces this operator may act in")
            }
            Refusal::PodGone { pod } => format!("pod {pod} no longer exists; nothing was deleted"),
            Refusal::PodUidChanged {
                pod,
                proposed,
                found,
            } => format!(
                "pod {pod} is now a different pod (UID {found}, proposed {proposed}); nothing was deleted"
            ),
            Refusal::PodNoLongerSelected { pod } => {
                format!("pod {pod} no longer matches the target selector")
            }
            Refusal::NotOwnedByController { pod, owner } => match owner {
                Some(o) => {
                    format!("pod {pod} is owned by {o}, which does not replace deleted pods")
                }
                None => format!("pod {pod} has no controller to replace it"),
            },
            Refusal::NoLongerFailing { pod } => {
                format!("pod {pod} no longer shows the failure in fresh evidence")
            }
            Refusal::MorePodsFailing { failing } => format!(
                "{} pods now show the failure ({}); the runbook says to escalate, not delete",
                failing.len(),
                failing.join(", ")
            ),
            Refusal::NoReadySibling { pod } => {
                format!("no other Ready pod would serve while {pod} is replaced")
            }
            Refusal::BudgetExhausted { used, budget } => format!(
                "the cluster-wide deletion budget is used up ({used} of {budget} in the last hour)"
            ),
            Refusal::CooldownActive { workload, until } => {
                format!("{workload} had a pod deleted recently; its cooldown lasts until {until}")
            }
            Refusal::ApproverNotAllowed {
                approver,
                verb,
                namespace,
                pod,
                why,
            } => format!(
                "{approver} approved, but may not {verb} pod {pod} in {namespace} ({why}); the operator never acts with a power the approver lacks, so nothing was deleted"
            ),
            Refusal::AlertResolved { ended_at } => {
                format!("the alert resolved at {ended_at}; nothing is deleted for a resolved alert")
            }
        }
    }
}

/// A proposal a human approved. Only [`approve`] builds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovedPlan {
    proposal: String,
    pod: String,
    pod_uid: String,
    approved_by: String,
}

impl ApprovedPlan {
    pub fn proposal(&self) -> &str {
        &self.proposal
    }
    pub fn pod(&self) -> &str {
        &self.pod
    }
    pub fn pod_uid(&self) -> &str {
        &self.pod_uid
    }
    pub fn approved_by(&self) -> &str {
        &self.approved_by
    }
}

/// The plan a ledger entry committed to: the operator wrote it from an [`ApprovedPlan`] before
/// acting, so it is one. None for entries without an intent.
pub fn pinned(entry: &Entry) -> Option<(ApprovedPlan, &Intent)> {
    let intent = entry.intent.as_ref()?;
    let plan = ApprovedPlan {
        proposal: entry.proposal.clone(),
        pod: intent.pod.clone(),
        pod_uid: entry.pod_uid.clone(),
        approved_by: intent.approved_by.clone(),
    };
    Some((plan, intent))
}

/// Checks the approval against the current proposal as of `at` (now, or when the recorded
/// intent was written, when resuming after a restart).
pub fn approve(
    approval: Option<&Approval>,
    proposal: Option<&Proposal>,
    at: Timestamp,
) -> Result<ApprovedPlan, Refusal> {
    let proposal = proposal.ok_or(Refusal::NoProposal)?;
    let approval = approval.ok_or(Refusal::NoProposal)?;
    if approval.proposal != proposal.id {
        return Err(Refusal::ProposalMismatch {
            approved: approval.proposal.clone(),
            current: proposal.id.clone(),
        });
    }
    if at >= proposal.expires_at.0 {
        return Err(Refusal::ProposalExpired {
            expired_at: proposal.expires_at.0,
        });
    }
    Ok(ApprovedPlan {
        proposal: proposal.id.clone(),
        pod: proposal.pod.clone(),
        pod_uid: proposal.pod_uid.clone(),
        approved_by: approval.approved_by.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Action;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn proposal() -> Proposal {
        Proposal {
            id: "delete-pod-abc".into(),
            action: Action::DeletePod,
            pod: "p-1".into(),
            pod_uid: "uid-1".into(),
            expires_at: Time("2026-01-01T01:00:00Z".parse().unwrap()),
        }
    }

    fn approval(id: &str) -> Approval {
        Approval {
            proposal: id.into(),
            approved_by: "alice".into(),
        }
    }

    #[test]
    fn a_matching_unexpired_approval_builds_a_plan() {
        let at = "2026-01-01T00:30:00Z".parse().unwrap();
        let plan = approve(Some(&approval("delete-pod-abc")), Some(&proposal()), at).unwrap();
        assert_eq!(plan.pod(), "p-1");
        assert_eq!(plan.pod_uid(), "uid-1");
        assert_eq!(plan.approved_by(), "alice");
        assert_eq!(plan.proposal(), "delete-pod-abc");
    }

    #[test]
    fn another_or_an_old_proposal_is_refused() {
        let at = "2026-01-01T00:30:00Z".parse().unwrap();
        let refused =
            approve(Some(&approval("delete-pod-old")), Some(&proposal()), at).unwrap_err();
        assert_eq!(refused.reason(), "ProposalMismatch");
        assert!(refused.message().contains("delete-pod-old"));
    }

    #[test]
    fn an_expired_proposal_is_refused() {
        let at = "2026-01-01T01:00:00Z".parse().unwrap();
        let refused =
            approve(Some(&approval("delete-pod-abc")), Some(&proposal()), at).unwrap_err();
        assert_eq!(refused.reason(), "ProposalExpired");
        assert!(!refused.keeps_proposal());
    }

    #[test]
    fn every_reason_reads_back_as_its_kind() {
        for kind in RefusalKind::ALL {
            assert_eq!(RefusalKind::from_reason(kind.as_str()), Some(kind));
        }
        assert_eq!(RefusalKind::from_reason("Remediated"), None);
        assert!(!RefusalKind::AlertResolved.keeps_proposal());
        let transient: Vec<&str> = RefusalKind::ALL
            .into_iter()
            .filter(|k| k.is_transient())
            .map(RefusalKind::as_str)
            .collect();
        assert_eq!(
            transient,
            [
                "NamespaceOutOfScope",
                "NoReadySibling",
                "BudgetExhausted",
                "CooldownActive"
            ]
        );
    }

    #[test]
    fn nothing_to_approve_is_refused() {
        let at = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            approve(Some(&approval("x")), None, at).unwrap_err(),
            Refusal::NoProposal
        );
        assert_eq!(
            approve(None, Some(&proposal()), at).unwrap_err(),
            Refusal::NoProposal
        );
    }
}

//! The phase machine's decision table, over every combination.

use super::*;
use crate::crd::{Approval, Proposal, Remediation};
use jiff::SignedDuration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

#[rustfmt::skip]
const ALL_PHASES: [Option<Phase>; 10] = [
    None, Some(Phase::Pending), Some(Phase::Gathering), Some(Phase::AwaitingApproval),
    Some(Phase::Remediating), Some(Phase::Remediated), Some(Phase::RemediationFailed),
    Some(Phase::ApiKeyRotationRequired), Some(Phase::Escalated), Some(Phase::NoAction),
];

fn now() -> Timestamp {
    "2026-11-21T12:00:00Z".parse().unwrap()
}

/// The proposal in status, relative to now.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Prop {
    None,
    Live,
    Expired,
}

/// What status says about a remediation.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rem {
    None,
    Intent,
    Evicted,
}

/// How the spec relates to the one status describes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Spec {
    /// The generation status observed.
    Same,
    /// A newer generation that changed only the approval.
    ApprovalOnly,
    /// A newer generation that changed something else.
    Changed,
}

#[derive(Debug, Clone, Copy)]
struct Case {
    phase: Option<Phase>,
    spec: Spec,
    approved: bool,
    proposal: Prop,
    remediation: Rem,
    transient_refusal: bool,
    /// Alertmanager reported the alert resolved.
    resolved: bool,
}

fn triage(c: Case) -> AlertTriage {
    let expires_at = match c.proposal {
        Prop::Expired => now() - SignedDuration::from_secs(1),
        _ => now() + SignedDuration::from_mins(10),
    };
    let refusal = if c.transient_refusal {
        "NoReadySibling"
    } else {
        "PodGone"
    };
    let mut conditions = vec![serde_json::json!({"type": REMEDIATED, "status": "False",
        "reason": refusal, "message": "", "lastTransitionTime": now().to_string()})];
    if c.resolved {
        conditions.push(serde_json::json!({"type": RESOLVED, "status": "True",
            "reason": "AlertResolved", "message": "", "lastTransitionTime": now().to_string()}));
    }
    let object = serde_json::json!({
        "apiVersion": "triage.dev/v1alpha1", "kind": "AlertTriage",
        "metadata": {"name": "t", "generation": if c.spec == Spec::Same { 2 } else { 3 }},
        "spec": {"alert": {"name": "a"}},
        "status": {"observedGeneration": 2, "conditions": conditions},
    });
    let mut t: AlertTriage = serde_json::from_value(object).unwrap();
    t.spec.approval = c.approved.then(|| Approval {
        proposal: "delete-pod-1".into(),
        approved_by: "alice".into(),
    });
    let digest = spec_digest(&t.spec);
    let status = t.status.as_mut().unwrap();
    status.phase = c.phase;
    status.spec_digest = Some(if c.spec == Spec::Changed {
        "an older spec".into()
    } else {
        digest
    });
    status.proposal = (c.proposal != Prop::None).then(|| Proposal {
        id: "delete-pod-1".into(),
        action: Action::DeletePod,
        pod: "p".into(),
        pod_uid: "u".into(),
        expires_at: Time(expires_at),
    });
    status.remediation = (c.remediation != Rem::None).then(|| Remediation {
        evicted_at: (c.remediation == Rem::Evicted).then(|| Time(now())),
        ..Remediation::default()
    });
    t
}

/// A row of the table: `None` matches anything.
type Row = (
    Option<&'static [Option<Phase>]>,
    Option<&'static [Spec]>,
    Option<bool>,
    Option<Prop>,
    Option<Rem>,
    Option<bool>,
    Option<bool>,
    Step,
);

const UNSETTLED: &[Option<Phase>] = &[None, Some(Phase::Gathering)];
const REMEDIATING: &[Option<Phase>] = &[Some(Phase::Remediating)];
const WAITING: &[Option<Phase>] = &[Some(Phase::AwaitingApproval)];

/// The decision table, first matching row wins. Read top to bottom it is the policy: an
/// action under way always continues, unless the alert resolved before the eviction; a
/// resolved alert's waiting proposal is withdrawn and any later approval refused; a settled
/// generation stays settled except for expiry and retries; an approval of a waiting proposal
/// acts; anything else triages. Columns: the row's comment.
fn table() -> Vec<Row> {
    let wait = Step::AwaitApproval {
        expires_at: now() + SignedDuration::from_mins(10),
    };
    let (t, w, r) = (Some(true), Some(WAITING), Some(REMEDIATING));
    let (same, newer) = (Some(&[Spec::Same][..]), Some(&[Spec::ApprovalOnly][..]));
    let (live, expired) = (Some(Prop::Live), Some(Prop::Expired));
    #[rustfmt::skip]
    let rows = vec![
        // phase, spec, approved, proposal, remediation, transient refusal, resolved -> step
        (r,    None, None, None,    Some(Rem::Evicted), None, None, Step::Verify),
        (r,    None, None, None,    Some(Rem::Intent),  None, t,    Step::Abandon),
        (r,    None, None, None,    Some(Rem::Intent),  None, None, Step::Resume),
        (r,    None, None, None,    None,               None, None, Step::Done),
        (w,    None, None, live,    None,               None, t,    Step::Withdraw),
        (w,    None, None, expired, None,               None, t,    Step::Withdraw),
        (w,    same, None, expired, None,               None, None, Step::Expire),
        (w,    same, t,    live,    None,               t,    None, Step::Act),
        (w,    same, None, live,    None,               None, None, wait),
        (Some(UNSETTLED), same, None, None, None,       None, None, Step::Triage),
        (None, same, None, None,    None,               None, None, Step::Done),
        (w,    newer, t,   live,    None,               None, None, Step::Act),
        (w,    newer, t,   expired, None,               None, None, Step::Act),
        (None, newer, t,   None,    None,               None, t,    Step::RefuseResolved),
        (None, newer, t,   None,    None,               None, None, Step::IgnoreApproval),
        (None, None, None, None,    None,               None, None, Step::Triage),
    ];
    rows
}

fn matches(row: &Row, c: &Case) -> bool {
    let (phase, spec, approved, proposal, remediation, transient, resolved, _) = *row;
    phase.is_none_or(|p| p.contains(&c.phase))
        && spec.is_none_or(|v| v.contains(&c.spec))
        && approved.is_none_or(|v| v == c.approved)
        && proposal.is_none_or(|v| v == c.proposal)
        && remediation.is_none_or(|v| v == c.remediation)
        && transient.is_none_or(|v| v == c.transient_refusal)
        && resolved.is_none_or(|v| v == c.resolved)
}

fn every_case() -> Vec<Case> {
    let mut cases = Vec::new();
    for phase in ALL_PHASES {
        for spec in [Spec::Same, Spec::ApprovalOnly, Spec::Changed] {
            for approved in [false, true] {
                for proposal in [Prop::None, Prop::Live, Prop::Expired] {
                    for remediation in [Rem::None, Rem::Intent, Rem::Evicted] {
                        for transient_refusal in [false, true] {
                            for resolved in [false, true] {
                                cases.push(Case {
                                    phase,
                                    spec,
                                    approved,
                                    proposal,
                                    remediation,
                                    transient_refusal,
                                    resolved,
                                });
                            }
                        }
                    }
                }
            }
        }
    }
    cases
}

#[test]
fn every_combination_follows_the_table() {
    let table = table();
    let cases = every_case();
    assert_eq!(cases.len(), 10 * 3 * 2 * 3 * 3 * 2 * 2);
    for c in cases {
        let row = table.iter().find(|r| matches(r, &c)).expect("a last row");
        assert_eq!(next(&triage(c), now()), row.7, "{c:?}");
    }
}

#[test]
fn nothing_acts_without_an_approval_of_a_waiting_proposal() {
    for c in every_case() {
        if next(&triage(c), now()) == Step::Act {
            assert!(c.approved, "{c:?}");
            assert_eq!(c.phase, Some(Phase::AwaitingApproval), "{c:?}");
            assert_ne!(c.proposal, Prop::None, "{c:?}");
        }
    }
}

#[test]
fn nothing_is_acted_on_or_resumed_for_a_resolved_alert() {
    for c in every_case().into_iter().filter(|c| c.resolved) {
        let step = next(&triage(c), now());
        assert!(
            !matches!(step, Step::Act | Step::Resume | Step::AwaitApproval { .. }),
            "{c:?}: {step:?}"
        );
    }
}

#[test]
fn a_standing_approval_never_carries_over_to_a_changed_spec() {
    for c in every_case().into_iter().filter(|c| c.spec == Spec::Changed) {
        let withdrawn =
            c.resolved && c.phase == Some(Phase::AwaitingApproval) && c.proposal != Prop::None;
        if c.phase != Some(Phase::Remediating) {
            let expected = if withdrawn {
                Step::Withdraw
            } else {
                Step::Triage
            };
            assert_eq!(next(&triage(c), now()), expected, "{c:?}");
        }
    }
}

#[test]
fn the_digest_ignores_only_the_approval() {
    let t = triage(every_case()[0]);
    let mut approved = t.spec.clone();
    approved.approval = Some(Approval {
        proposal: "x".into(),
        approved_by: "y".into(),
    });
    assert_eq!(spec_digest(&t.spec), spec_digest(&approved));
    let mut retargeted = t.spec.clone();
    retargeted.target.container = Some("other".into());
    assert_ne!(spec_digest(&t.spec), spec_digest(&retargeted));
    let mut dry = t.spec.clone();
    dry.dry_run = true;
    assert_ne!(spec_digest(&t.spec), spec_digest(&dry));
}

#[test]
fn a_remediation_under_way_is_never_triaged_again() {
    for c in every_case()
        .into_iter()
        .filter(|c| c.phase == Some(Phase::Remediating))
    {
        assert!(
            matches!(
                next(&triage(c), now()),
                Step::Resume | Step::Verify | Step::Abandon | Step::Done
            ),
            "{c:?}"
        );
    }
}

#[test]
fn outcomes_lead_to_their_phases() {
    use Outcome::*;
    let triaged = |action, proposed| Triaged { action, proposed };
    let refused = |kind| Refused {
        kind,
        from: Some(Phase::AwaitingApproval),
    };
    let cases = [
        (Gathering, Phase::Gathering),
        (triaged(Action::DeletePod, true), Phase::AwaitingApproval),
        (triaged(Action::DeletePod, false), Phase::Escalated),
        (
            triaged(Action::RecordApiKeyRotation, false),
            Phase::ApiKeyRotationRequired,
        ),
        (triaged(Action::Escalate, false), Phase::Escalated),
        (triaged(Action::None, false), Phase::NoAction),
        (Unworkable, Phase::Pending),
        (DryRun, Phase::NoAction),
        (IntentRecorded, Phase::Remediating),
        (Finished { succeeded: true }, Phase::Remediated),
        (Finished { succeeded: false }, Phase::RemediationFailed),
        (
            refused(RefusalKind::NoReadySibling),
            Phase::AwaitingApproval,
        ),
        (refused(RefusalKind::ProposalExpired), Phase::NoAction),
        (refused(RefusalKind::PodGone), Phase::NoAction),
    ];
    for (outcome, phase) in cases {
        assert_eq!(after(outcome), phase, "{outcome:?}");
    }
}

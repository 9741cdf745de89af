//! The checks made with fresh reads just before acting. Pure: the controller gathers [`Facts`],
//! this decides.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::{ApprovedPlan, Ledger, Refusal};
use crate::crd::TargetSelector;

/// Owner kinds whose controllers create a new pod when one is deleted.
const REPLACING_OWNERS: &[&str] = &[
    "ReplicaSet",
    "StatefulSet",
    "ReplicationController",
    "DaemonSet",
];

/// How much the operator may do.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Namespaces the operator may act in; empty means any.
    pub namespaces: Vec<String>,
    /// Deletions across the cluster in any hour.
    pub budget_per_hour: usize,
    /// Time between two deletions in one workload.
    pub cooldown: Duration,
}

/// The proposed pod as read just now.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PodNow {
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    pub terminating: bool,
    /// The controlling owner's kind and name.
    pub owner: Option<(String, String)>,
}

/// What was read just before acting.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts<'a> {
    pub namespace: &'a str,
    pub selector: &'a TargetSelector,
    /// None when the pod is gone.
    pub pod: Option<PodNow>,
    /// The workload the pod belongs to (e.g. `Deployment/x`), for the cooldown.
    pub workload: String,
    /// Pods that show the failure in fresh evidence.
    pub failing: Vec<String>,
    /// Other Ready pods matching the selector.
    pub ready_siblings: usize,
    pub ledger: &'a Ledger,
    pub now: Timestamp,
}

/// The pod a proposal names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub pod: &'a str,
    pub uid: &'a str,
}

impl<'a> From<&'a ApprovedPlan> for Target<'a> {
    fn from(plan: &'a ApprovedPlan) -> Self {
        Target {
            pod: plan.pod(),
            uid: plan.pod_uid(),
        }
    }
}

/// Every guardrail, in the order a person would check them. Run before proposing, and again
/// with fresh reads before acting on an approval.
pub fn check(target: Target<'_>, facts: &Facts<'_>, limits: &Limits) -> Result<(), Refusal> {
    let pod = target.pod.to_string();
    if !limits.namespaces.is_empty() && !limits.namespaces.iter().any(|n| n == facts.namespace) {
        return Err(Refusal::NamespaceOutOfScope {
            namespace: facts.namespace.to_string(),
        });
    }
    let Some(now_pod) = facts.pod.as_ref().filter(|p| !p.terminating) else {
        return Err(Refusal::PodGone { pod });
    };
    if now_pod.uid != target.uid {
        return Err(Refusal::PodUidChanged {
            pod,
            proposed: target.uid.to_string(),
            found: now_pod.uid.clone(),
        });
    }
    if !facts.selector.matches(&now_pod.labels) {
        return Err(Refusal::PodNoLongerSelected { pod });
    }
    match &now_pod.owner {
        Some((kind, _)) if REPLACING_OWNERS.contains(&kind.as_str()) => {}
        other => {
            return Err(Refusal::NotOwnedByController {
                pod,
                owner: other.as_ref().map(|(k, n)| format!("{k}/{n}")),
            });
        }
    }
    if facts.failing.len() > 1 {
        return Err(Refusal::MorePodsFailing {
            failing: facts.failing.clone(),
        });
    }
    if !facts.failing.contains(&pod) {
        return Err(Refusal::NoLongerFailing { pod });
    }
    if facts.ready_siblings == 0 {
        return Err(Refusal::NoReadySibling { pod });
    }
    let hour_ago = facts.now - SignedDuration::from_hours(1);
    let used = facts.ledger.since(hour_ago).count();
    if used >= limits.budget_per_hour {
        return Err(Refusal::BudgetExhausted {
            used,
            budget: limits.budget_per_hour,
        });
    }
    let cooldown = SignedDuration::try_from(limits.cooldown).unwrap_or(SignedDuration::MAX);
    if let Some(last) = facts.ledger.last_for(&facts.workload) {
        let until = last.at.checked_add(cooldown).unwrap_or(Timestamp::MAX);
        if until > facts.now {
            return Err(Refusal::CooldownActive {
                workload: facts.workload.clone(),
                until,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::{Entry, approve};
    use crate::crd::{Action, Approval, Proposal};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn now() -> Timestamp {
        "2026-01-01T12:00:00Z".parse().unwrap()
    }

    fn plan() -> ApprovedPlan {
        let proposal = Proposal {
            id: "delete-pod-1".into(),
            action: Action::DeletePod,
            pod: "web-1".into(),
            pod_uid: "uid-1".into(),
            expires_at: Time(now() + SignedDuration::from_mins(10)),
        };
        let approval = Approval {
            proposal: "delete-pod-1".into(),
            approved_by: "alice".into(),
        };
        approve(Some(&approval), Some(&proposal), now()).unwrap()
    }

    fn selector() -> TargetSelector {
        TargetSelector::from_labels([("app", "web")])
    }

    fn limits() -> Limits {
        Limits {
            namespaces: vec![],
            budget_per_hour: 3,
            cooldown: Duration::from_secs(30 * 60),
        }
    }

    fn pod_now() -> PodNow {
        PodNow {
            uid: "uid-1".into(),
            labels: BTreeMap::from([("app".to_string(), "web".to_string())]),
            terminating: false,
            owner: Some(("ReplicaSet".into(), "web-abc".into())),
        }
    }

    fn entry(workload: &str, mins_ago: i64) -> Entry {
        Entry {
            at: now() - SignedDuration::from_mins(mins_ago),
            workload: workload.into(),
            proposal: format!("p-{workload}-{mins_ago}"),
            pod_uid: "u".into(),
            triage: "ns/t".into(),
            intent: None,
        }
    }

    /// Runs `check` on healthy facts changed by `tweak`.
    fn check_with(
        tweak: impl FnOnce(&mut Facts<'_>, &mut Limits),
        ledger: &Ledger,
    ) -> Result<(), Refusal> {
        let sel = selector();
        let mut facts = Facts {
            namespace: "prod",
            selector: &sel,
            pod: Some(pod_now()),
            workload: "Deployment/web".into(),
            failing: vec!["web-1".into()],
            ready_siblings: 2,
            ledger,
            now: now(),
        };
        let mut limits = limits();
        tweak(&mut facts, &mut limits);
        check(Target::from(&plan()), &facts, &limits)
    }

    fn reason(r: Result<(), Refusal>) -> &'static str {
        r.err().map(|r| r.reason()).unwrap_or("Allowed")
    }

    #[test]
    fn healthy_facts_allow_the_deletion() {
        assert_eq!(check_with(|_, _| {}, &Ledger::default()), Ok(()));
    }

    #[test]
    fn every_guardrail_refuses_on_its_own() {
        let empty = Ledger::default();
        type Tweak = Box<dyn FnOnce(&mut Facts<'_>, &mut Limits)>;
        let cases: Vec<(&str, Tweak)> = vec![
            (
                "NamespaceOutOfScope",
                Box::new(|_, l| l.namespaces = vec!["other".into()]),
            ),
            ("PodGone", Box::new(|f, _| f.pod = None)),
            (
                "PodGone",
                Box::new(|f, _| f.pod.as_mut().unwrap().terminating = true),
            ),
            (
                "PodUIDChanged",
                Box::new(|f, _| f.pod.as_mut().unwrap().uid = "uid-2".into()),
            ),
            (
                "PodNoLongerSelected",
                Box::new(|f, _| f.pod.as_mut().unwrap().labels.clear()),
            ),
            (
                "NotOwnedByController",
                Box::new(|f, _| f.pod.as_mut().unwrap().owner = None),
            ),
            (
                "NotOwnedByController",
                Box::new(|f, _| f.pod.as_mut().unwrap().owner = Some(("Job".into(), "j".into()))),
            ),
            (
                "MorePodsFailing",
                Box::new(|f, _| f.failing.push("web-2".into())),
            ),
            ("NoLongerFailing", Box::new(|f, _| f.failing.clear())),
            ("NoReadySibling", Box::new(|f, _| f.ready_siblings = 0)),
        ];
        for (want, tweak) in cases {
            assert_eq!(reason(check_with(tweak, &empty)), want);
        }
    }

    #[test]
    fn the_hourly_budget_counts_every_workload() {
        let ledger = Ledger::from_entries(vec![
            entry("Deployment/a", 10),
            entry("Deployment/b", 20),
            entry("Deployment/c", 59),
        ]);
        assert_eq!(reason(check_with(|_, _| {}, &ledger)), "BudgetExhausted");
        let older = Ledger::from_entries(vec![
            entry("Deployment/a", 10),
            entry("Deployment/b", 20),
            entry("Deployment/c", 61),
        ]);
        assert_eq!(reason(check_with(|_, _| {}, &older)), "Allowed");
    }

    #[test]
    fn the_cooldown_is_per_workload() {
        let ledger = Ledger::from_entries(vec![entry("Deployment/web", 29)]);
        assert_eq!(reason(check_with(|_, _| {}, &ledger)), "CooldownActive");
        let other = Ledger::from_entries(vec![entry("Deployment/api", 1)]);
        assert_eq!(reason(check_with(|_, _| {}, &other)), "Allowed");
        let cooled = Ledger::from_entries(vec![entry("Deployment/web", 31)]);
        assert_eq!(reason(check_with(|_, _| {}, &cooled)), "Allowed");
    }
}

//! What to send, decided from a triage's status and its recorded deliveries alone, so that a
//! restarted operator or a new leader decides exactly what the last one would have.

use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

use super::config::Retry;
use crate::controller::RESOLVED_CONDITION;
use crate::crd::{AlertTriage, Delivery, DeliveryEvent, DeliveryResult, NotificationKind, Phase};

/// A notification the triage's status calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub kind: NotificationKind,
    pub key: String,
}

/// The notifications `triage` calls for now: none once it is deleted or its alert resolved;
/// otherwise one for a phase that needs a person.
pub fn wanted(triage: &AlertTriage, deleted: bool) -> Vec<Wanted> {
    let Some(status) = triage.status.as_ref().filter(|_| !deleted) else {
        return Vec::new();
    };
    let resolved = status
        .conditions
        .iter()
        .any(|c| c.type_ == RESOLVED_CONDITION && c.status == "True");
    if resolved {
        return Vec::new();
    }
    let category = status
        .classification
        .as_ref()
        .map_or("", |c| c.category.as_str());
    let (kind, about) = match status.phase {
        Some(Phase::Escalated) => {
            let team = status
                .recommendation
                .as_ref()
                .and_then(|r| r.team.as_deref())
                .unwrap_or_default();
            (NotificationKind::Escalation, format!("{category}/{team}"))
        }
        Some(Phase::ApiKeyRotationRequired) => {
            (NotificationKind::ApiKeyRotation, category.to_string())
        }
        Some(Phase::AwaitingApproval) => match status.proposal.as_ref() {
            Some(p) => (NotificationKind::ApprovalRequest, p.id.clone()),
            None => return Vec::new(),
        },
        _ => return Vec::new(),
    };
    let uid = triage.metadata.uid.as_deref().unwrap_or_default();
    vec![Wanted {
        kind,
        key: key(uid, kind, &about),
    }]
}

/// True while a verdict is being (re)made: a triage that is Pending or Gathering keeps what it
/// has sent until its new verdict says otherwise, so a re-triage does not resolve and page
/// again for the same thing.
pub fn held(triage: &AlertTriage, deleted: bool) -> bool {
    !deleted
        && wanted(triage, false).is_empty()
        && matches!(
            triage.status.as_ref().map(|s| s.phase),
            None | Some(None | Some(Phase::Pending | Phase::Gathering))
        )
        && !triage.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == RESOLVED_CONDITION && c.status == "True")
        })
}

/// The idempotency key of a notification: stable across attempts, restarts and replicas.
pub fn key(uid: &str, kind: NotificationKind, about: &str) -> String {
    let mut h = Sha256::new();
    for part in [uid, kind.as_str(), about] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    crate::hex(&h.finalize()[..16])
}

/// A target as the planner sees it.
#[derive(Debug, Clone, Copy)]
pub struct TargetRef<'a> {
    pub name: &'a str,
    /// The receiver keeps one incident per triage, so it is resolved only when nothing of the
    /// triage fires there any more.
    pub one_incident_per_triage: bool,
}

/// One thing to do for a triage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send `event` for (`target`, `key`); `attempts` counts the earlier attempts at it.
    Send {
        target: String,
        kind: NotificationKind,
        key: String,
        event: DeliveryEvent,
        attempts: u32,
    },
    /// Record a resolve as not sent: another notification keeps the receiver's incident open.
    Supersede { target: String, key: String },
}

/// What to send now. `routed` lists, for each wanted notification, the targets it goes to;
/// `deliveries` is what was recorded. A delivery still `Sending` was cut short (a restart) and
/// is sent again with the same key; a `Failed` one waits out its backoff; a delivery whose
/// notification is no longer wanted gets its resolve.
pub fn due(
    routed: &[(Wanted, Vec<TargetRef<'_>>)],
    deliveries: &[Delivery],
    known_targets: &[TargetRef<'_>],
    retry: &Retry,
    now: Timestamp,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let recorded = |target: &str, key: &str| {
        deliveries
            .iter()
            .find(|d| d.target == target && d.key == key)
    };
    let again = |d: &Delivery| match d.result {
        DeliveryResult::Sending => true,
        DeliveryResult::Failed => {
            let wait =
                SignedDuration::try_from(retry.backoff(d.attempts)).unwrap_or(SignedDuration::MAX);
            d.time.0.checked_add(wait).is_ok_and(|at| at <= now)
        }
        DeliveryResult::Delivered | DeliveryResult::Undelivered | DeliveryResult::Superseded => {
            false
        }
    };
    for (w, targets) in routed {
        for t in targets {
            let send = |attempts| Step::Send {
                target: t.name.to_string(),
                kind: w.kind,
                key: w.key.clone(),
                event: DeliveryEvent::Firing,
                attempts,
            };
            match recorded(t.name, &w.key) {
                None => steps.push(send(0)),
                Some(d) if d.event == DeliveryEvent::Resolved => steps.push(send(0)),
                Some(d) if again(d) => steps.push(send(d.attempts)),
                Some(_) => {}
            }
        }
    }
    let fires_at = |target: &str| {
        routed
            .iter()
            .any(|(_, targets)| targets.iter().any(|t| t.name == target))
    };
    for d in deliveries {
        let Some(t) = known_targets.iter().find(|t| t.name == d.target) else {
            continue;
        };
        let still_wanted = routed
            .iter()
            .any(|(w, targets)| w.key == d.key && targets.iter().any(|t| t.name == d.target));
        if still_wanted {
            continue;
        }
        let resolve = |attempts| Step::Send {
            target: d.target.clone(),
            kind: d.kind,
            key: d.key.clone(),
            event: DeliveryEvent::Resolved,
            attempts,
        };
        match d.event {
            DeliveryEvent::Firing if t.one_incident_per_triage && fires_at(t.name) => {
                steps.push(Step::Supersede {
                    target: d.target.clone(),
                    key: d.key.clone(),
                });
            }
            DeliveryEvent::Firing => steps.push(resolve(0)),
            DeliveryEvent::Resolved if again(d) => steps.push(resolve(d.attempts)),
            DeliveryEvent::Resolved => {}
        }
    }
    steps
}

/// Drops the oldest finished entries (resolved and no longer being sent) beyond `max`, so a
/// triage that goes through many proposals keeps a bounded status. Entries still firing or
/// still being sent are never dropped: they are what the next decision is made from.
pub fn prune(deliveries: &mut Vec<Delivery>, max: usize) {
    let finished = |d: &Delivery| {
        d.event == DeliveryEvent::Resolved
            && matches!(
                d.result,
                DeliveryResult::Delivered
                    | DeliveryResult::Undelivered
                    | DeliveryResult::Superseded
            )
    };
    while deliveries.len() > max {
        let oldest = deliveries
            .iter()
            .enumerate()
            .filter(|(_, d)| finished(d))
            .min_by_key(|(_, d)| d.time.0)
            .map(|(i, _)| i);
        match oldest {
            Some(i) => {
                deliveries.remove(i);
            }
            None => break,
        }
    }
}

#[cfg(test)]
mod tests;

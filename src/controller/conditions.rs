//! The triage's conditions: they keep their transition times while their status holds.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{AlertTriageStatus, Phase};
use crate::redact::redact;

pub const TRIAGED: &str = "Triaged";
pub const ACTION_REQUIRED: &str = "ActionRequired";
pub const REMEDIATED: &str = "Remediated";
/// The alert resolved (Alertmanager said so); written by the intake, kept by every later write.
pub const RESOLVED: &str = "Resolved";
/// kstatus: the triage reached a final verdict or outcome for its generation.
pub const READY: &str = "Ready";
/// kstatus (abnormal-true): gathering, waiting for approval or acting.
pub const RECONCILING: &str = "Reconciling";
/// kstatus (abnormal-true): it cannot go on without a spec change.
pub const STALLED: &str = "Stalled";

/// Builds the conditions of one status write; messages are redacted. `lastTransitionTime` carries over from the
/// previous status while a condition keeps its status, and moves only when it flips.
pub struct Conditions<'a> {
    previous: &'a [Condition],
    generation: i64,
    now: Timestamp,
    list: Vec<Condition>,
}

impl<'a> Conditions<'a> {
    pub fn new(previous: &'a [Condition], generation: i64, now: Timestamp) -> Self {
        Conditions {
            previous,
            generation,
            now,
            list: Vec::new(),
        }
    }

    pub fn set(&mut self, type_: &str, status: bool, reason: &str, message: &str) -> &mut Self {
        let status = if status { "True" } else { "False" }.to_string();
        let last_transition_time = self
            .previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(self.now));
        self.list.retain(|c| c.type_ != type_);
        self.list.push(Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message: redact(message).chars().take(1024).collect(),
            observed_generation: Some(self.generation),
            last_transition_time,
        });
        self
    }

    pub fn into_vec(self) -> Vec<Condition> {
        self.list
    }
}

/// Sets `ActionRequired` and `Remediated` for a remediation step, keeping the other conditions.
pub fn set_remediation(
    status: &mut AlertTriageStatus,
    previous: &AlertTriageStatus,
    now: Timestamp,
    remediated: bool,
    reason: &str,
    message: &str,
) {
    let generation = status.observed_generation.unwrap_or_default();
    let mut conditions = Conditions::new(&previous.conditions, generation, now);
    for c in &previous.conditions {
        if c.type_ != REMEDIATED && c.type_ != ACTION_REQUIRED {
            conditions.set(&c.type_, c.status == "True", &c.reason, &c.message);
        }
    }
    let waiting = status.phase == Some(Phase::AwaitingApproval);
    conditions.set(
        ACTION_REQUIRED,
        waiting,
        if waiting { "AwaitingApproval" } else { reason },
        message,
    );
    conditions.set(REMEDIATED, remediated, reason, message);
    status.conditions = conditions.into_vec();
}

/// Keeps every condition of `previous` and sets one.
pub fn set_one(
    status: &mut AlertTriageStatus,
    previous: &AlertTriageStatus,
    now: Timestamp,
    type_: &str,
    value: bool,
    reason: &str,
    message: &str,
) {
    let generation = status.observed_generation.unwrap_or_default();
    let mut conditions = Conditions::new(&previous.conditions, generation, now);
    for c in &previous.conditions {
        conditions.set(&c.type_, c.status == "True", &c.reason, &c.message);
    }
    conditions.set(type_, value, reason, message);
    status.conditions = conditions.into_vec();
}

/// Sets the kstatus trio from the phase being written, so `kubectl wait --for=condition=Ready`,
/// Argo CD, Flux and cli-utils tell a finished triage from a stuck one. Derived here, in the
/// one place every status passes, so it can never disagree with the phase.
pub fn set_kstatus(status: &mut AlertTriageStatus, previous: &[Condition], now: Timestamp) {
    let generation = status.observed_generation.unwrap_or_default();
    let phase = status.phase;
    let name = phase.map_or("Pending", Phase::as_str);
    let triaged = status
        .conditions
        .iter()
        .find(|c| c.type_ == TRIAGED)
        .cloned();
    let mut conditions = Conditions::new(previous, generation, now);
    for c in &status.conditions {
        conditions.set(&c.type_, c.status == "True", &c.reason, &c.message);
    }
    let stalled = phase == Some(Phase::Pending);
    let (reason, message) = match (&triaged, stalled) {
        (Some(t), true) => (t.reason.as_str(), t.message.as_str()),
        _ => (name, ""),
    };
    conditions.set(STALLED, stalled, reason, message);
    let reconciling = matches!(
        phase,
        None | Some(Phase::Gathering) | Some(Phase::AwaitingApproval) | Some(Phase::Remediating)
    );
    // What it is reconciling towards, in the words of the condition that follows it.
    let waits_on = match phase {
        Some(Phase::AwaitingApproval) => ACTION_REQUIRED,
        Some(Phase::Remediating) => REMEDIATED,
        _ => TRIAGED,
    };
    let waiting = status
        .conditions
        .iter()
        .find(|c| c.type_ == waits_on)
        .filter(|_| reconciling)
        .map_or("", |c| c.message.as_str());
    conditions.set(RECONCILING, reconciling, name, waiting);
    conditions.set(READY, !reconciling && !stalled, name, "");
    status.conditions = conditions.into_vec();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_survives_a_repeat_and_moves_on_a_flip() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T01:00:00Z".parse().unwrap();
        let mut first = Conditions::new(&[], 1, t0);
        first.set(TRIAGED, true, "RateLimited", "m");
        let first = first.into_vec();
        let mut again = Conditions::new(&first, 2, t1);
        again.set(TRIAGED, true, "RateLimited", "m");
        let again = again.into_vec();
        assert_eq!(again[0].last_transition_time, Time(t0));
        assert_eq!(again[0].observed_generation, Some(2));
        let mut flipped = Conditions::new(&again, 3, t1);
        flipped.set(TRIAGED, false, "UnknownRunbook", "m");
        let flipped = flipped.into_vec();
        assert_eq!(flipped[0].last_transition_time, Time(t1));
        assert_eq!(flipped[0].status, "False");
    }

    #[test]
    fn kstatus_follows_the_phase() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let of = |phase: Option<Phase>| {
            let mut status = AlertTriageStatus {
                phase,
                observed_generation: Some(1),
                ..AlertTriageStatus::default()
            };
            set_kstatus(&mut status, &[], now);
            let get = |t: &str| {
                let c = status.conditions.iter().find(|c| c.type_ == t).unwrap();
                c.status == "True"
            };
            (get(READY), get(RECONCILING), get(STALLED))
        };
        assert_eq!(of(Some(Phase::Gathering)), (false, true, false));
        assert_eq!(of(Some(Phase::AwaitingApproval)), (false, true, false));
        assert_eq!(of(Some(Phase::Remediating)), (false, true, false));
        assert_eq!(of(Some(Phase::Pending)), (false, false, true));

        // Reconciling says what it waits for.
        let mut status = AlertTriageStatus {
            phase: Some(Phase::Gathering),
            observed_generation: Some(1),
            ..AlertTriageStatus::default()
        };
        let mut conditions = Conditions::new(&[], 1, now);
        conditions.set(TRIAGED, false, "Gathering", "gathering evidence");
        status.conditions = conditions.into_vec();
        set_kstatus(&mut status, &[], now);
        let reconciling = status
            .conditions
            .iter()
            .find(|c| c.type_ == RECONCILING)
            .unwrap();
        assert_eq!(reconciling.message, "gathering evidence");
        for done in [
            Phase::Remediated,
            Phase::RemediationFailed,
            Phase::ApiKeyRotationRequired,
            Phase::Escalated,
            Phase::NoAction,
        ] {
            assert_eq!(of(Some(done)), (true, false, false), "{done:?}");
        }
    }
}

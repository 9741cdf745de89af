//! Status bookkeeping: conditions that keep their transition times, and a hard size cap so a
//! triage over thousands of pods or noisy logs still writes a small object.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::AlertTriageStatus;

pub const TRIAGED: &str = "Triaged";
pub const ACTION_REQUIRED: &str = "ActionRequired";
pub const REMEDIATED: &str = "Remediated";

/// Builds the conditions of one status write. `lastTransitionTime` carries over from the
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
            message: message.chars().take(1024).collect(),
            observed_generation: Some(self.generation),
            last_transition_time,
        });
        self
    }

    pub fn into_vec(self) -> Vec<Condition> {
        self.list
    }
}

/// Shrinks the evidence until the serialised status fits in `limit` bytes. The verdict,
/// proposal and conditions are never dropped; samples, Events and then whole pods go first.
pub fn fit(status: &mut AlertTriageStatus, limit: usize) {
    let size = |s: &AlertTriageStatus| serde_json::to_vec(s).map(|v| v.len()).unwrap_or(usize::MAX);
    if size(status) <= limit {
        return;
    }
    let Some(evidence) = status.evidence.as_mut() else {
        return;
    };
    for pod in &mut evidence.pods {
        pod.samples.truncate(1);
        pod.events.truncate(1);
    }
    evidence.notes.truncate(5);
    while size(status) > limit {
        let evidence = status.evidence.as_mut().expect("checked above");
        if evidence.pods.is_empty() {
            break;
        }
        evidence.pods.pop();
        evidence.pods_omitted += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{Evidence, PodEvidence};

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
    fn fit_keeps_status_under_the_cap() {
        let pod = |i: usize| PodEvidence {
            name: format!("pod-{i}"),
            uid: format!("uid-{i}"),
            samples: vec!["x".repeat(240); 3],
            events: vec!["BackOff: y".repeat(20); 5],
            ..PodEvidence::default()
        };
        let mut status = AlertTriageStatus {
            evidence: Some(Evidence {
                pods: (0..500).map(pod).collect(),
                ..Evidence::default()
            }),
            ..AlertTriageStatus::default()
        };
        fit(&mut status, 32 * 1024);
        let len = serde_json::to_vec(&status).unwrap().len();
        assert!(len <= 32 * 1024, "status is {len} bytes");
        let evidence = status.evidence.unwrap();
        assert!(!evidence.pods.is_empty());
        assert_eq!(evidence.pods.len() as u32 + evidence.pods_omitted, 500);
        assert_eq!(
            evidence.pods[0].name, "pod-0",
            "the first (failing) pods are kept"
        );
    }

    #[test]
    fn fit_leaves_a_small_status_alone() {
        let mut status = AlertTriageStatus {
            evidence: Some(Evidence {
                pods: vec![PodEvidence {
                    samples: vec!["a".into(), "b".into()],
                    ..PodEvidence::default()
                }],
                ..Evidence::default()
            }),
            ..AlertTriageStatus::default()
        };
        let before = status.clone();
        fit(&mut status, 32 * 1024);
        assert_eq!(status, before);
    }
}

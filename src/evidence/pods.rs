//! Plain facts read off a Pod object: what `kubectl get pod` and `describe` would show.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use crate::redact::redact;
use crate::runbook::{PodEvent, PodState};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodFacts {
    pub name: String,
    pub uid: String,
    pub phase: String,
    pub ready: bool,
    pub restarts: i32,
    /// The controlling owner as `Kind/name`.
    pub owner: Option<String>,
    pub waiting_reason: Option<String>,
    /// As status shows it: `OOMKilled (exit 137)`.
    pub last_termination: Option<String>,
    pub last_termination_reason: Option<String>,
    pub last_exit_code: Option<i32>,
    /// When the current instance of a restarted container started (the latest of them).
    pub restarted_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerInfo {
    pub name: String,
    pub restarts: i32,
}

impl PodFacts {
    pub fn from_pod(pod: &Pod) -> Self {
        let statuses = container_statuses(pod);
        // Reasons are free text in the pod's status (whoever writes pods/status sets them), and
        // they are copied into the triage's status.
        let waiting_reason = statuses.iter().find_map(|s| {
            let reason = s.state.as_ref()?.waiting.as_ref()?.reason.as_deref()?;
            Some(redact(reason).into_owned())
        });
        let terminated = statuses
            .iter()
            .find_map(|s| s.last_state.as_ref()?.terminated.as_ref());
        let last_termination_reason =
            terminated.map(|t| redact(t.reason.as_deref().unwrap_or("Terminated")).into_owned());
        let last_exit_code = terminated.map(|t| t.exit_code);
        PodFacts {
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            phase: pod
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default(),
            ready: is_ready(pod),
            restarts: statuses.iter().map(|s| s.restart_count).sum(),
            owner: pod
                .metadata
                .owner_references
                .as_ref()
                .and_then(|refs| refs.iter().find(|r| r.controller == Some(true)))
                .map(|r| format!("{}/{}", r.kind, r.name)),
            waiting_reason,
            last_termination: last_termination_reason
                .as_ref()
                .zip(last_exit_code)
                .map(|(r, c)| format!("{r} (exit {c})")),
            last_termination_reason,
            last_exit_code,
            restarted_at: statuses
                .iter()
                .filter(|s| s.restart_count > 0)
                .filter_map(|s| Some(s.state.as_ref()?.running.as_ref()?.started_at.as_ref()?.0))
                .max(),
        }
    }
}

impl PodFacts {
    /// What the runbook's `pod` and `events` conditions are checked against.
    pub fn state(&self, events: &[PodEvent]) -> PodState {
        PodState {
            ready: self.ready,
            restarts: self.restarts,
            waiting_reason: self.waiting_reason.clone(),
            last_termination_reason: self.last_termination_reason.clone(),
            last_exit_code: self.last_exit_code,
            events: events.to_vec(),
        }
    }
}

/// Ready as the kubelet reports it, and not on its way out.
pub fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn container_statuses(pod: &Pod) -> Vec<&ContainerStatus> {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|v| v.iter().collect())
        .unwrap_or_default()
}

/// The pod's regular containers with their restart counts.
pub fn containers(pod: &Pod) -> Vec<ContainerInfo> {
    let statuses = container_statuses(pod);
    pod.spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| ContainerInfo {
                    name: c.name.clone(),
                    restarts: statuses
                        .iter()
                        .find(|s| s.name == c.name)
                        .map(|s| s.restart_count)
                        .unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).expect("valid pod")
    }

    #[test]
    fn facts_of_a_crashlooping_pod() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "m-1", "uid": "u1",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "m-rs", "uid": "r", "controller": true}]},
            "spec": {"containers": [{"name": "app"}, {"name": "sidecar"}]},
            "status": {"phase": "Running",
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [
                    {"name": "app", "ready": false, "restartCount": 4, "image": "x", "imageID": "",
                     "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                     "lastState": {"terminated": {"reason": "Error", "exitCode": 2}}},
                    {"name": "sidecar", "ready": true, "restartCount": 1, "image": "x", "imageID": ""}
                ]}
        }));
        let f = PodFacts::from_pod(&p);
        assert_eq!(f.name, "m-1");
        assert!(!f.ready);
        assert_eq!(f.restarts, 5);
        assert_eq!(f.owner.as_deref(), Some("ReplicaSet/m-rs"));
        assert_eq!(f.waiting_reason.as_deref(), Some("CrashLoopBackOff"));
        assert_eq!(f.last_termination.as_deref(), Some("Error (exit 2)"));
        assert_eq!(f.last_termination_reason.as_deref(), Some("Error"));
        assert_eq!(f.last_exit_code, Some(2));
        assert_eq!(
            containers(&p),
            vec![
                ContainerInfo {
                    name: "app".into(),
                    restarts: 4
                },
                ContainerInfo {
                    name: "sidecar".into(),
                    restarts: 1
                }
            ]
        );
    }

    #[test]
    fn reasons_are_stripped_of_escape_sequences() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "x"},
            "status": {"containerStatuses": [
                {"name": "app", "ready": false, "restartCount": 1, "image": "x", "imageID": "",
                 "state": {"waiting": {"reason": "\u{1b}[31mCrashLoopBackOff\u{1b}[0m"}},
                 "lastState": {"terminated": {"reason": "Error\u{7} password=p", "exitCode": 1}}}
            ]}
        }));
        let f = PodFacts::from_pod(&p);
        assert_eq!(f.waiting_reason.as_deref(), Some("CrashLoopBackOff"));
        assert_eq!(
            f.last_termination.as_deref(),
            Some("Error password=[REDACTED] (exit 1)")
        );
    }

    #[test]
    fn a_pod_without_status_is_not_ready() {
        let p = pod(serde_json::json!({"metadata": {"name": "x"}}));
        let f = PodFacts::from_pod(&p);
        assert!(!f.ready);
        assert_eq!(f.restarts, 0);
        assert!(containers(&p).is_empty());
    }

    #[test]
    fn a_terminating_pod_is_not_ready() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "x", "deletionTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        }));
        assert!(!is_ready(&p));
    }
}

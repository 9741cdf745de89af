//! The one door for what the controller writes about a triage: its status (server-side apply
//! under one field manager, capped in size) and its Events. A phase change always comes with an
//! Event, and everything written is redacted first.

use std::sync::Mutex;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Resource, ResourceExt};
use tracing::warn;

use super::conditions::{RESOLVED, set_kstatus};
use super::{Context, Error, MANAGER};
use crate::action::ApprovedPlan;
use crate::crd::{AlertTriage, AlertTriageStatus, Delivery};
use crate::redact::redact;

/// Longest Event note; the API server refuses notes over 1 KiB.
const NOTE_CHARS: usize = 1000;

/// An Event to publish on the triage.
#[derive(Debug, Clone)]
pub struct Note {
    pub type_: EventType,
    pub reason: String,
    pub message: String,
}

impl Note {
    pub fn normal(reason: &str, message: impl Into<String>) -> Note {
        Note {
            type_: EventType::Normal,
            reason: reason.to_string(),
            message: message.into(),
        }
    }

    pub fn warning(reason: &str, message: impl Into<String>) -> Note {
        Note {
            type_: EventType::Warning,
            reason: reason.to_string(),
            message: message.into(),
        }
    }
}

/// Writes one triage's status and Events.
pub struct Record<'a> {
    ctx: &'a Context,
    obj: &'a AlertTriage,
    api: Api<AlertTriage>,
    /// The resourceVersion the next write is conditional on: the one this reconcile decided
    /// from, then the one of its own last write.
    version: Mutex<Option<String>>,
}

impl<'a> Record<'a> {
    pub fn new(ctx: &'a Context, obj: &'a AlertTriage) -> Self {
        let api = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
        Record {
            ctx,
            obj,
            api,
            version: Mutex::new(obj.metadata.resource_version.clone()),
        }
    }

    /// The triage this records for.
    pub fn triage(&self) -> &AlertTriage {
        self.obj
    }

    /// Writes `status` and then publishes `note`, if any. A phase change without a note of its
    /// own gets a plain one, so `kubectl describe` shows every phase the triage went through.
    pub async fn write(
        &self,
        mut status: AlertTriageStatus,
        note: Option<Note>,
    ) -> Result<AlertTriageStatus, Error> {
        fit(&mut status, self.ctx.config.status_byte_limit);
        let previous = self
            .obj
            .status
            .as_ref()
            .map_or(&[][..], |s| &s.conditions[..]);
        set_kstatus(&mut status, previous, self.ctx.clock.now().await);
        // Deliveries belong to the notifier's field manager: leaving them out of this apply
        // neither claims nor drops them.
        if let Some(n) = status.notification.as_mut() {
            n.deliveries.clear();
        }
        if status
            .notification
            .as_ref()
            .is_some_and(|n| n.title.is_empty() && n.body.is_empty())
        {
            status.notification = None;
        }
        // Resolution is a fact about the alert that no later step may drop: every write keeps
        // the intake's condition exactly as it was read.
        status.conditions.retain(|c| c.type_ != RESOLVED);
        if let Some(resolved) = previous.iter().find(|c| c.type_ == RESOLVED) {
            status.conditions.push(resolved.clone());
        }
        let version = self
            .version
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // Conditional on what was decided from: a reconcile that read an older object (a
        // replica that lost a race, a stale retry) cannot overwrite a newer record.
        let patch = serde_json::json!({
            "apiVersion": AlertTriage::api_version(&()),
            "kind": AlertTriage::kind(&()),
            "metadata": {"resourceVersion": version},
            "status": status,
        });
        let written = self
            .api
            .patch_status(
                &self.obj.name_any(),
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map_err(|e| match e {
                kube::Error::Api(s) if s.code == 409 => Error::Conflict(self.obj.name_any()),
                other => Error::Kube(other),
            })?;
        *self.version.lock().unwrap_or_else(|e| e.into_inner()) = written.metadata.resource_version;
        let before = self.obj.status.as_ref().and_then(|s| s.phase);
        let note = match (note, status.phase) {
            (Some(note), _) => Some(note),
            (None, Some(phase)) if Some(phase) != before => Some(Note::normal(
                phase.as_str(),
                format!("phase {}", phase.as_str()),
            )),
            (None, _) => None,
        };
        if let Some(note) = note {
            self.event(note).await;
        }
        Ok(status)
    }

    /// Publishes an Event on the triage. Events are best effort: a triage is not failed because
    /// an Event could not be written.
    pub async fn event(&self, note: Note) {
        publish(self.ctx, &self.obj.object_ref(&()), note).await;
    }

    /// The Event on the evicted pod itself, so `kubectl describe pod` (while it lasts) and the
    /// namespace's Events say who approved it.
    pub async fn event_on_pod(&self, namespace: &str, plan: &ApprovedPlan) {
        let reference = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(plan.pod().into()),
            namespace: Some(namespace.into()),
            uid: Some(plan.pod_uid().into()),
            ..Default::default()
        };
        let note = Note::normal(
            "EvictedByAlertTriage",
            format!(
                "evicted by alert-triage-operator: proposal {} approved by {}",
                plan.proposal(),
                plan.approved_by()
            ),
        );
        publish(self.ctx, &reference, note).await;
    }
}

/// The field manager of the one status field the intake writes, the `Resolved` condition. It is
/// not the controller's, so neither apply removes what the other owns.
pub const INTAKE_MANAGER: &str = "alert-triage-operator-intake";

/// Marks a triage's alert resolved at `ended_at` (server-side apply of the `Resolved`
/// condition alone). Written by the operator itself, like the rest of status; the phase machine
/// only ever becomes more careful because of it. False when there is no such triage.
pub async fn mark_resolved(
    api: &Api<AlertTriage>,
    name: &str,
    ended_at: jiff::Timestamp,
) -> Result<bool, kube::Error> {
    let patch = serde_json::json!({
        "apiVersion": AlertTriage::api_version(&()),
        "kind": AlertTriage::kind(&()),
        "status": {"conditions": [{
            "type": RESOLVED,
            "status": "True",
            "reason": "AlertResolved",
            "message": format!("Alertmanager reported the alert resolved at {ended_at}; nothing is deleted for it"),
            "lastTransitionTime": ended_at.to_string(),
        }]},
    });
    match api
        .patch_status(
            name,
            &PatchParams::apply(INTAKE_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// The field manager of `status.notification.deliveries`, which only the notifier writes; the
/// controller's applies leave that list out, so neither removes what the other owns.
pub const NOTIFY_MANAGER: &str = "alert-triage-operator-notify";

/// Records the notifier's deliveries for one triage (server-side apply of that list alone),
/// conditional on `resource_version` so a notifier that read an older object (a replica that
/// lost the lease) cannot overwrite a newer record. Returns the new resourceVersion, or None
/// when the triage is gone. Errors are redacted by the caller's logging like any other.
pub async fn record_deliveries(
    api: &Api<AlertTriage>,
    name: &str,
    resource_version: Option<&str>,
    deliveries: &[Delivery],
) -> Result<Option<String>, Error> {
    let patch = serde_json::json!({
        "apiVersion": AlertTriage::api_version(&()),
        "kind": AlertTriage::kind(&()),
        "metadata": {"resourceVersion": resource_version},
        "status": {"notification": {"deliveries": deliveries}},
    });
    match api
        .patch_status(
            name,
            &PatchParams::apply(NOTIFY_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(written) => Ok(written.metadata.resource_version),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(kube::Error::Api(s)) if s.code == 409 => Err(Error::Conflict(name.to_string())),
        Err(e) => Err(Error::Kube(e)),
    }
}

/// A reconcile that failed, as a Warning Event on the triage with the error's category, so
/// `kubectl describe` shows why a triage is stuck without the operator's logs.
pub async fn reconcile_error(ctx: &Context, obj: &AlertTriage, category: &str, message: &str) {
    let note = Note::warning(
        "ReconcileError",
        format!("{category} error, will retry: {message}"),
    );
    publish(ctx, &obj.object_ref(&()), note).await;
}

async fn publish(ctx: &Context, reference: &ObjectReference, note: Note) {
    publish_with(&ctx.recorder, reference, note, "Triage").await;
}

/// A notification that could not be delivered, as a Warning Event on its triage (the target by
/// name, never its URL), so `kubectl describe` shows it beside the phase.
pub async fn notification_undelivered(recorder: &Recorder, triage: &AlertTriage, message: String) {
    let note = Note::warning("NotificationUndelivered", message);
    publish_with(recorder, &triage.object_ref(&()), note, "Notify").await;
}

async fn publish_with(recorder: &Recorder, reference: &ObjectReference, note: Note, action: &str) {
    let event = Event {
        type_: note.type_,
        reason: note.reason,
        note: Some(redact(&note.message).chars().take(NOTE_CHARS).collect()),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, reference).await {
        warn!(error = %e, "could not publish Event");
    }
}

/// Shrinks the evidence until the serialised status fits in `limit` bytes. The verdict,
/// proposal and conditions are never dropped; samples, Events and then whole pods go first.
pub fn fit(status: &mut AlertTriageStatus, limit: usize) {
    let size = |s: &AlertTriageStatus| serde_json::to_vec(s).map_or(usize::MAX, |v| v.len());
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
        let Some(evidence) = status.evidence.as_mut() else {
            break;
        };
        if evidence.pods.pop().is_none() {
            break;
        }
        evidence.pods_omitted += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{Evidence, PodEvidence};

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

    #[test]
    fn fit_gives_up_gracefully_when_even_no_pods_is_too_big() {
        let mut status = AlertTriageStatus {
            evidence: Some(Evidence {
                notes: vec!["n".repeat(4096); 3],
                pods: vec![PodEvidence::default(); 3],
                ..Evidence::default()
            }),
            ..AlertTriageStatus::default()
        };
        fit(&mut status, 100);
        let evidence = status.evidence.unwrap();
        assert!(evidence.pods.is_empty());
        assert_eq!(evidence.pods_omitted, 3);
    }
}

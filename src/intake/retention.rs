//! Deletes the triages the intake created once their alert has been resolved for longer than
//! the retention, so they do not pile up. Only triages labelled as the intake's are touched,
//! and each deletion is conditional on the UID that was judged.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, ListParams, Preconditions};
use kube::{Api, Client, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::route::{SOURCE, SOURCE_LABEL};
use crate::controller::{ServerClock, phase};
use crate::crd::AlertTriage;

/// Runs until `shutdown`, sweeping every `min(retention, 1 minute)`.
pub async fn run(
    client: Client,
    namespaces: Vec<String>,
    retention: Duration,
    shutdown: CancellationToken,
) {
    let apis: Vec<Api<AlertTriage>> = if namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    };
    let clock = ServerClock::new(client.clone());
    let every = retention.min(Duration::from_secs(60));
    let retention = SignedDuration::try_from(retention).unwrap_or(SignedDuration::MAX);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let now = clock.now().await;
        for api in &apis {
            if let Err(e) = sweep(&client, api, now, retention).await {
                warn!(error = %e, "retention: could not list resolved triages");
            }
        }
    }
}

async fn sweep(
    client: &Client,
    api: &Api<AlertTriage>,
    now: Timestamp,
    retention: SignedDuration,
) -> Result<(), kube::Error> {
    let list = api
        .list(&ListParams::default().labels(&format!("{SOURCE_LABEL}={SOURCE}")))
        .await?;
    for triage in list.items.iter().filter(|t| expired(t, now, retention)) {
        let namespace = triage.namespace().unwrap_or_default();
        let name = triage.name_any();
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: triage.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let api: Api<AlertTriage> = Api::namespaced(client.clone(), &namespace);
        match api.delete(&name, &params).await {
            Ok(_) => info!(
                triage = name,
                namespace, "retention: deleted a resolved triage"
            ),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => warn!(triage = name, namespace, error = %e, "retention: could not delete"),
        }
    }
    Ok(())
}

/// Whether the triage's alert resolved at least `retention` before `now`. A remediation under
/// way keeps its triage: the record of what it did must outlive it.
fn expired(triage: &AlertTriage, now: Timestamp, retention: SignedDuration) -> bool {
    let acting =
        triage.status.as_ref().and_then(|s| s.phase) == Some(crate::crd::Phase::Remediating);
    !acting && phase::resolution(triage).is_some_and(|at| now.duration_since(at) >= retention)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn triage(phase: &str, resolved_at: Option<&str>) -> AlertTriage {
        let conditions: Vec<_> = resolved_at
            .into_iter()
            .map(|at| {
                serde_json::json!({"type": "Resolved", "status": "True", "reason": "AlertResolved",
                    "message": "", "lastTransitionTime": at})
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "apiVersion": "triage.dev/v1alpha1", "kind": "AlertTriage",
            "metadata": {"name": "t", "namespace": "n"},
            "spec": {"alert": {"name": "a"}},
            "status": {"phase": phase, "conditions": conditions},
        }))
        .unwrap()
    }

    #[test]
    fn only_triages_resolved_longer_than_the_retention_expire() {
        let now: Timestamp = "2026-05-02T12:00:00Z".parse().unwrap();
        let day = SignedDuration::from_hours(24);
        assert!(expired(
            &triage("NoAction", Some("2026-05-01T12:00:00Z")),
            now,
            day
        ));
        assert!(!expired(
            &triage("NoAction", Some("2026-05-01T12:00:01Z")),
            now,
            day
        ));
        assert!(!expired(&triage("NoAction", None), now, day));
        assert!(!expired(
            &triage("Remediating", Some("2026-04-01T00:00:00Z")),
            now,
            day
        ));
    }
}

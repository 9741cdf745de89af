//! The one place that removes a pod. It takes an [`ApprovedPlan`] and nothing else, and always
//! names the pod's UID as a precondition, so a replacement pod of the same name is never hit.

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, EvictParams, Preconditions};

use super::ApprovedPlan;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvictOutcome {
    /// The API server accepted the eviction (or deletion); the pod is going away.
    Evicted,
    /// A PodDisruptionBudget does not allow it now (HTTP 429); try again later.
    Blocked(String),
    /// The pod is gone, or the name now belongs to another pod: nothing was removed.
    Gone(String),
}

/// Evicts the approved pod through the Eviction API, which honours PodDisruptionBudgets; with
/// `plain_delete` (an explicit configuration choice) deletes it instead.
pub async fn evict(
    pods: &Api<Pod>,
    plan: &ApprovedPlan,
    plain_delete: bool,
) -> Result<EvictOutcome, kube::Error> {
    let delete = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(plan.pod_uid().to_string()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let result = if plain_delete {
        pods.delete(plan.pod(), &delete).await.map(|_| ())
    } else {
        let params = EvictParams {
            delete_options: Some(delete),
            ..EvictParams::default()
        };
        pods.evict(plan.pod(), &params).await.map(|_| ())
    };
    match result {
        Ok(()) => Ok(EvictOutcome::Evicted),
        Err(kube::Error::Api(s)) if s.code == 429 => Ok(EvictOutcome::Blocked(s.message)),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
            Ok(EvictOutcome::Gone(s.message))
        }
        Err(e) => Err(e),
    }
}

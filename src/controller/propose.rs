//! Turning a runbook's DeletePod verdict into a proposal a human can approve, unless a
//! guardrail already says no.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use sha2::{Digest, Sha256};

use super::facts::GuardFacts;
use super::phase::spec_digest;
use super::resolve::Resolved;
use super::{Context, Error};
use crate::action::{self, Refusal, Target};
use crate::crd::{self, AlertTriage, Proposal};
use crate::evidence::Gathered;

/// What became of the runbook's DeletePod verdict.
pub enum Proposed {
    Nothing,
    Proposal(Proposal),
    /// A guardrail already says no, so nobody is asked to approve something that would be refused.
    HeldBack {
        pod: String,
        refusal: Refusal,
    },
}

/// Proposes deleting `pod` if every guardrail passes as of now.
pub async fn propose(
    obj: &AlertTriage,
    ctx: &Context,
    resolved: &Resolved,
    gathered: &Gathered,
    pod: &str,
    now: Timestamp,
) -> Result<Proposed, Error> {
    let held_back = |refusal| Proposed::HeldBack {
        pod: pod.to_string(),
        refusal,
    };
    let read = GuardFacts::read(ctx, resolved, pod, gathered).await?;
    let Some(uid) = read.pod.as_ref().map(|p| p.uid().unwrap_or_default()) else {
        return Ok(held_back(Refusal::PodGone {
            pod: pod.to_string(),
        }));
    };
    let facts = read.facts(resolved, now);
    Ok(
        match action::check(Target { pod, uid: &uid }, &facts, &ctx.config.limits) {
            Ok(()) => {
                Proposed::Proposal(proposal_for(obj, pod, &uid, now, ctx.config.proposal_ttl))
            }
            Err(refusal) => held_back(refusal),
        },
    )
}

fn proposal_for(
    obj: &AlertTriage,
    pod: &str,
    pod_uid: &str,
    now: Timestamp,
    ttl: Duration,
) -> Proposal {
    let uid = obj.metadata.uid.as_deref().unwrap_or_default();
    let generation = obj.metadata.generation.unwrap_or_default();
    let spec = spec_digest(&obj.spec);
    Proposal {
        id: proposal_id(uid, generation, &spec, pod_uid, crd::Action::DeletePod),
        action: crd::Action::DeletePod,
        pod: pod.to_string(),
        pod_uid: pod_uid.to_string(),
        expires_at: Time(
            now + SignedDuration::try_from(ttl).unwrap_or(SignedDuration::from_mins(30)),
        ),
    }
}

/// A proposal id is stable for this triage, generation, spec (without approval), pod UID and
/// action, so re-running the same triage proposes the same thing and an approval can never
/// carry over to another pod or another spec.
fn proposal_id(
    triage_uid: &str,
    generation: i64,
    spec: &str,
    pod_uid: &str,
    action: crd::Action,
) -> String {
    let mut h = Sha256::new();
    h.update(triage_uid.as_bytes());
    h.update(generation.to_be_bytes());
    h.update(spec.as_bytes());
    h.update(pod_uid.as_bytes());
    h.update(action.as_str().as_bytes());
    let digest = h.finalize();
    format!("delete-pod-{}", crate::hex(&digest[..6]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposal_ids_are_stable_and_specific() {
        let id = |t, g, s, p| proposal_id(t, g, s, p, crd::Action::DeletePod);
        let a = id("t", 1, "spec", "pod-uid");
        assert_eq!(a, id("t", 1, "spec", "pod-uid"));
        assert_ne!(a, id("t", 2, "spec", "pod-uid"));
        assert_ne!(a, id("t", 1, "other-spec", "pod-uid"));
        assert_ne!(a, id("t", 1, "spec", "other-uid"));
        assert_ne!(a, id("u", 1, "spec", "pod-uid"));
        assert!(a.starts_with("delete-pod-") && a.len() == "delete-pod-".len() + 12);
    }
}

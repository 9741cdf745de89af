//! One reconcile: read the triage fresh, ask the phase machine what to do, do that step.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use tracing::{debug, instrument, warn};

use super::evict::{abandon, resume};
use super::phase::{self, Step};
use super::remediate::{act, expire, ignore_approval, refuse_resolved, withdraw};
use super::triage::triage;
use super::verify::check_replacement;
use super::{Context, Error, requeue_until};
use crate::crd::AlertTriage;

/// How long a reconcile waits for the runbook watches to list before trying again later:
/// choosing before then could miss a runbook that overrides a built-in one.
const RUNBOOKS_SYNC_WAIT: Duration = Duration::from_secs(10);

#[instrument(skip_all, fields(triage = %cached.name_any(), namespace = cached.namespace().unwrap_or_default()))]
pub async fn reconcile(cached: Arc<AlertTriage>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Decide on a fresh read, not the watch cache: right after our own status write the cache
    // can still show the previous phase, and acting on that would triage a generation twice or
    // take an approval for a spec change.
    let api: Api<AlertTriage> =
        Api::namespaced(ctx.client.clone(), &cached.namespace().unwrap_or_default());
    let Some(obj) = api.get_opt(&cached.name_any()).await? else {
        return Ok(Action::await_change());
    };
    if !ctx.runbooks.synced(RUNBOOKS_SYNC_WAIT).await {
        warn!(
            "Runbooks and ClusterRunbooks are not listed yet (is the operator allowed to watch them?); waiting"
        );
        return Ok(Action::requeue(RUNBOOKS_SYNC_WAIT));
    }
    let now = ctx.clock.now().await;
    let step = phase::next(&obj, now);
    debug!(?step, "next step");
    match step {
        Step::Triage => triage(&obj, &ctx, now).await,
        Step::AwaitApproval { expires_at } => Ok(requeue_until(expires_at, now)),
        Step::Act => act(&obj, &ctx, now).await,
        Step::IgnoreApproval => ignore_approval(&obj, &ctx, now).await,
        Step::Resume => resume(&obj, &ctx, now).await,
        Step::Verify => check_replacement(&obj, &ctx, now).await,
        Step::Expire => expire(&obj, &ctx, now).await,
        Step::Withdraw => withdraw(&obj, &ctx, now).await,
        Step::RefuseResolved => refuse_resolved(&obj, &ctx, now).await,
        Step::Abandon => abandon(&obj, &ctx, now).await,
        Step::Done => Ok(Action::await_change()),
    }
}

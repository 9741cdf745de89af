//! From a spec to what a triage works with: the runbook, the target pods and the window. Pure:
//! a spec that cannot be resolved says why, and waits for the spec to change.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::Context;
use crate::crd::{AlertTriage, TargetSelector};
use crate::evidence::Plan;
use crate::runbook::{CompiledRunbook, Runbook};

/// How far before `alert.startsAt` the window reaches, so the lines that fired the alert are in.
const BEFORE_ALERT: SignedDuration = SignedDuration::from_mins(5);
/// The longest window the API accepts; `startsAt` never stretches the window past it.
const MAX_WINDOW: SignedDuration = SignedDuration::from_hours(24);

/// Why a triage cannot apply a runbook at all; it waits for the spec to change.
#[derive(Debug)]
pub struct Unworkable {
    pub reason: &'static str,
    pub message: String,
    pub runbook: Option<String>,
}

/// Everything a triage (or a remediation's fresh look) needs from the spec and the runbook.
pub struct Resolved {
    pub runbook: &'static Runbook,
    pub compiled: Arc<CompiledRunbook>,
    pub namespace: String,
    pub selector: TargetSelector,
    pub window: Duration,
}

impl Resolved {
    /// What to read for a window ending `now`.
    pub fn plan(&self, obj: &AlertTriage, ctx: &Context, now: Timestamp) -> Plan {
        let since = window_start(
            now,
            self.window,
            obj.spec.alert.starts_at.as_ref().map(|t| t.0),
        );
        Plan {
            namespace: self.namespace.clone(),
            selector: self.selector.clone(),
            container: obj.spec.target.container.clone(),
            since,
            log_byte_limit: ctx.config.log_byte_limit,
            concurrency: ctx.config.pod_concurrency,
            bytes_in_flight: ctx.bytes_in_flight.clone(),
        }
    }
}

pub fn resolve(obj: &AlertTriage, ctx: &Context) -> Result<Resolved, Unworkable> {
    let runbook = ctx
        .catalog
        .select(obj.spec.runbook.as_deref(), &obj.spec.alert)
        .map_err(|e| Unworkable {
            reason: "UnknownRunbook",
            message: e.to_string(),
            runbook: None,
        })?;
    let unworkable = |reason: &'static str, message: String| Unworkable {
        reason,
        message,
        runbook: Some(runbook.id().to_string()),
    };
    let namespace = obj
        .target_namespace()
        .map(str::to_string)
        .ok_or_else(|| unworkable("NoNamespace", "the AlertTriage has no namespace".into()))?;
    let own = obj.metadata.namespace.as_deref().unwrap_or_default();
    if namespace != own && !ctx.config.admin_namespaces.iter().any(|a| a == own) {
        return Err(unworkable(
            "CrossNamespaceTarget",
            format!(
                "spec.target.namespace is {namespace:?}, but a triage in namespace {own:?} reads \
                 and acts only in its own namespace; only triages in an admin namespace ({}) may \
                 target another",
                if ctx.config.admin_namespaces.is_empty() {
                    "none are configured".to_string()
                } else {
                    ctx.config.admin_namespaces.join(", ")
                }
            ),
        ));
    }
    let selector = obj
        .spec
        .target
        .selector
        .clone()
        .or_else(|| runbook.default_selector(&obj.spec.alert))
        .ok_or_else(|| {
            unworkable(
                "NoSelector",
                format!(
                    "runbook {} has no default selector for this alert; set spec.target.selector",
                    runbook.id()
                ),
            )
        })?;
    let window = match &obj.spec.window {
        Some(w) => crate::duration::parse(w).map_err(|e| unworkable("InvalidWindow", e))?,
        None => runbook.default_window(),
    };
    let compiled = ctx
        .compiled
        .get(runbook, &obj.spec.alert)
        .map_err(|e| unworkable("RunbookError", e.to_string()))?;
    Ok(Resolved {
        runbook,
        compiled,
        namespace,
        selector,
        window,
    })
}

/// The window starts `window` before now, or a little before the alert started when that is
/// earlier (but never more than 24h back), so an alert triaged late still sees its cause.
fn window_start(now: Timestamp, window: Duration, starts_at: Option<Timestamp>) -> Timestamp {
    let by_window = now - SignedDuration::try_from(window).unwrap_or(MAX_WINDOW);
    let floor = now - MAX_WINDOW;
    match starts_at {
        Some(start) => {
            let anchored = start - BEFORE_ALERT;
            if anchored < by_window {
                anchored.max(floor)
            } else {
                by_window
            }
        }
        None => by_window,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_anchors_on_alert_start_within_a_day() {
        let now: Timestamp = "2026-11-21T12:00:00Z".parse().unwrap();
        let hour = Duration::from_secs(3600);
        assert_eq!(
            window_start(now, hour, None),
            "2026-11-21T11:00:00Z".parse().unwrap()
        );
        let recent: Timestamp = "2026-11-21T11:30:00Z".parse().unwrap();
        assert_eq!(
            window_start(now, hour, Some(recent)),
            "2026-11-21T11:00:00Z".parse().unwrap()
        );
        let early: Timestamp = "2026-11-21T08:00:00Z".parse().unwrap();
        assert_eq!(
            window_start(now, hour, Some(early)),
            "2026-11-21T07:55:00Z".parse().unwrap()
        );
        let ancient: Timestamp = "2026-11-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            window_start(now, hour, Some(ancient)),
            "2026-11-20T12:00:00Z".parse().unwrap()
        );
    }
}

//! From a spec to what a triage works with: the runbook, the target pods and the window. Pure:
//! a spec that cannot be resolved says why, and waits for the spec to change.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::Context;
use super::runbooks::Chosen;
use crate::crd::{AlertTriage, RunbookRef, TargetSelector};
use crate::evidence::{Freshness, Plan};
use crate::runbook::{CompiledRunbook, Runbook};

/// How far before `alert.startsAt` the window reaches, so the lines that fired the alert are in.
const BEFORE_ALERT: SignedDuration = SignedDuration::from_mins(5);
/// The longest window the API accepts.
const MAX_WINDOW: SignedDuration = SignedDuration::from_hours(24);

/// Why a triage cannot apply a runbook at all; it waits for the spec to change.
#[derive(Debug)]
pub struct Unworkable {
    pub reason: &'static str,
    pub message: String,
    pub runbook: Option<String>,
    pub runbook_ref: Option<Box<RunbookRef>>,
}

/// Everything a triage (or a remediation's fresh look) needs from the spec and the runbook.
pub struct Resolved {
    pub runbook: Arc<Runbook>,
    /// Which object the runbook came from, and its generation.
    pub source: RunbookRef,
    pub compiled: Arc<CompiledRunbook>,
    pub namespace: String,
    pub selector: TargetSelector,
    pub window: Duration,
}

impl Resolved {
    /// What to read, for a triage made at `now`.
    pub fn plan(&self, obj: &AlertTriage, ctx: &Context, now: Timestamp) -> Plan {
        let (since, until) = window(
            now,
            self.window,
            obj.spec.alert.starts_at.as_ref().map(|t| t.0),
        );
        Plan {
            namespace: self.namespace.clone(),
            selector: self.selector.clone(),
            container: obj.spec.target.container.clone(),
            since,
            until,
            log_byte_limit: ctx.config.log_byte_limit,
            concurrency: ctx.config.pod_concurrency,
            bytes_in_flight: ctx.bytes_in_flight.clone(),
            events: ctx.events.clone(),
            events_fresh: Freshness::AfterRequest,
            pods_from_cache: false,
        }
    }
}

pub fn resolve(obj: &AlertTriage, ctx: &Context) -> Result<Resolved, Unworkable> {
    let own = obj.metadata.namespace.as_deref().unwrap_or_default();
    // Only the triage's own namespace's Runbooks apply, wherever its target is: a Runbook
    // cannot reach a triage in another namespace, nor lead one beyond the tenancy check below.
    let Chosen {
        runbook,
        source,
        version,
    } = ctx
        .runbooks
        .select(own, obj.spec.runbook.as_deref(), &obj.spec.alert)
        .map_err(|r| Unworkable {
            reason: r.reason,
            message: r.message,
            runbook: r.source.as_ref().and(obj.spec.runbook.clone()),
            runbook_ref: r.source,
        })?;
    let unworkable = |reason: &'static str, message: String| Unworkable {
        reason,
        message,
        runbook: Some(runbook.id().to_string()),
        runbook_ref: Some(Box::new(source.clone())),
    };
    let namespace = obj
        .target_namespace()
        .map(str::to_string)
        .ok_or_else(|| unworkable("NoNamespace", "the AlertTriage has no namespace".into()))?;
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
        .get(&version, &runbook, &obj.spec.alert)
        .map_err(|e| unworkable("RunbookError", e.to_string()))?;
    Ok(Resolved {
        runbook,
        source,
        compiled,
        namespace,
        selector,
        window,
    })
}

/// The window read: the alert's own window when `startsAt` is known, so a triage applied
/// hours later neither blames failures that came after it nor misses the ones in it. It ends
/// now, or `window` after the alert started when that is earlier, and starts `window` before
/// its end, or 5 minutes before the alert started when that is earlier (the lines that fired
/// the alert came just before it). At most `window` plus 5 minutes long.
///
/// Returns `since` and, only for a window that ended before now, its end: a window that ends
/// now is read to the end of the log, since "now" is the operator's estimate of the API
/// server's clock and must not cut off the newest lines (the ones that fired the alert).
fn window(
    now: Timestamp,
    window: Duration,
    starts_at: Option<Timestamp>,
) -> (Timestamp, Option<Timestamp>) {
    let length = SignedDuration::try_from(window).unwrap_or(MAX_WINDOW);
    let ended = starts_at
        .and_then(|s| s.checked_add(length).ok())
        .filter(|end| *end < now);
    let end = ended.unwrap_or(now);
    let by_window = end.checked_sub(length).unwrap_or(end);
    let since = starts_at
        .and_then(|s| s.checked_sub(BEFORE_ALERT).ok())
        .map_or(by_window, |anchored| anchored.min(by_window));
    (since, ended)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_the_alerts_own_for_an_old_alert_and_ends_now_for_a_fresh_one() {
        let now: Timestamp = "2026-11-21T12:00:00Z".parse().unwrap();
        let hour = Duration::from_secs(3600);
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        // (startsAt, since, until: None when the window ends now and is read to the log's end)
        let cases = [
            (None, "2026-11-21T11:00:00Z", None),
            // Fresh: the hour before now, which holds the alert's start and its cause.
            (Some("2026-11-21T11:50:00Z"), "2026-11-21T11:00:00Z", None),
            // Started 57 minutes ago: reaches 5 minutes before it.
            (Some("2026-11-21T11:03:00Z"), "2026-11-21T10:58:00Z", None),
            // Old: the alert's own hour, not the 12 hours since.
            (
                Some("2026-11-21T00:00:00Z"),
                "2026-11-20T23:55:00Z",
                Some("2026-11-21T01:00:00Z"),
            ),
            // A start in the future (another clock): the hour before now.
            (Some("2026-11-21T13:00:00Z"), "2026-11-21T11:00:00Z", None),
            // Ends exactly now: read to the end of the log.
            (Some("2026-11-21T11:00:00Z"), "2026-11-21T10:55:00Z", None),
        ];
        for (starts_at, since, until) in cases {
            assert_eq!(
                window(now, hour, starts_at.map(t)),
                (t(since), until.map(t)),
                "{starts_at:?}"
            );
        }
        // Odd times never panic.
        let _ = window(Timestamp::MAX, hour, Some(Timestamp::MIN));
        let _ = window(Timestamp::MIN, hour, Some(Timestamp::MAX));
    }
}

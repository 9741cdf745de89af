//! The AlertTriage controller: watches AlertTriages and triages each generation once.
//!
//! A reconcile reads the triage fresh, asks the pure phase machine (`phase`) what to do, and
//! carries out that one step: `triage` (with `propose`), `remediate` or `verify`. Everything
//! they write goes through `record`; what they read besides logs comes from `facts`.

pub mod cache;
mod clock;
mod conditions;
mod evict;
mod facts;
pub mod phase;
mod propose;
mod reconcile;
mod record;
mod remediate;
mod resolve;
pub mod runbooks;
mod triage;
mod verify;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use jiff::Timestamp;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::Recorder;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::warn;

pub use clock::ServerClock;
pub use conditions::RESOLVED as RESOLVED_CONDITION;
pub use record::{
    INTAKE_MANAGER, NOTIFY_MANAGER, mark_resolved, notification_undelivered, record_deliveries,
};

use crate::action::Limits;
use crate::cli::RunArgs;
use crate::crd::AlertTriage;
use crate::evidence::{LogBudget, WarningEvents};
use crate::metrics::Metrics;
use crate::runbook::CompiledCache;
use runbooks::Runbooks;

/// The field manager for everything the controller writes (status, server-side apply).
pub const MANAGER: &str = "alert-triage-operator";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("AlertTriage {0} changed since it was read; deciding again on a fresh read")]
    Conflict(String),
    #[error("gathering evidence: {0}")]
    Evidence(#[from] crate::evidence::Error),
    #[error("deletion ledger: {0}")]
    Ledger(#[from] crate::action::LedgerError),
    #[error("reading the info ConfigMap {name}: {source}")]
    InfoConfigMap { name: String, source: kube::Error },
}

impl Error {
    /// A low-cardinality label for metrics and Events.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Conflict(_) => "conflict",
            Error::Evidence(_) => "evidence",
            Error::InfoConfigMap { .. } => "info_configmap",
            Error::Ledger(_) => "ledger",
        }
    }

    /// How long to wait before trying again. A ledger write lost a race with another writer:
    /// try again at once with a fresh read. The API server or a kubelet failed: give it time.
    pub fn retry_after(&self) -> Duration {
        match self {
            Error::Ledger(crate::action::LedgerError::Conflict(_)) | Error::Conflict(_) => {
                Duration::from_secs(1)
            }
            Error::Ledger(_) | Error::Kube(_) => Duration::from_secs(15),
            Error::Evidence(_) | Error::InfoConfigMap { .. } => Duration::from_secs(30),
        }
    }
}

/// Where the environment's info ConfigMap lives.
#[derive(Debug, Clone, PartialEq)]
pub struct InfoConfigMap {
    /// None: the target namespace.
    pub namespace: Option<String>,
    pub name: String,
}

impl InfoConfigMap {
    pub fn parse(s: &str) -> Self {
        match s.split_once('/') {
            Some((ns, name)) => InfoConfigMap {
                namespace: Some(ns.to_string()),
                name: name.to_string(),
            },
            None => InfoConfigMap {
                namespace: None,
                name: s.to_string(),
            },
        }
    }
}

/// Settings the reconciler needs, taken from the command line.
#[derive(Debug, Clone)]
pub struct Config {
    pub log_byte_limit: u64,
    pub pod_concurrency: usize,
    /// Overrides the runbook's info ConfigMap.
    pub info_configmap: Option<InfoConfigMap>,
    pub proposal_ttl: Duration,
    pub status_byte_limit: usize,
    pub limits: Limits,
    pub verify_timeout: Duration,
    pub verify_settle: Duration,
    pub allow_pod_delete: bool,
    /// Treat every triage as `spec.dryRun: true`.
    pub dry_run: bool,
    /// Namespace and name of the ledger ConfigMap.
    pub ledger: (String, String),
    /// Namespaces whose triages may target another namespace.
    pub admin_namespaces: Vec<String>,
    /// Check with a SubjectAccessReview that the approver may evict the pod before acting.
    pub review_approver: bool,
    pub max_concurrent_triages: usize,
    pub log_bytes_in_flight: u64,
}

impl From<&RunArgs> for Config {
    fn from(a: &RunArgs) -> Self {
        Config {
            log_byte_limit: a.log_byte_limit,
            pod_concurrency: a.pod_concurrency,
            info_configmap: a.info_configmap.as_deref().map(InfoConfigMap::parse),
            proposal_ttl: a.proposal_ttl,
            status_byte_limit: a.status_byte_limit,
            limits: Limits {
                namespaces: a.namespaces.clone(),
                budget_per_hour: a.deletion_budget_per_hour,
                cooldown: a.workload_cooldown,
            },
            verify_timeout: a.verify_timeout,
            verify_settle: a.verify_settle,
            allow_pod_delete: a.allow_pod_delete,
            dry_run: a.dry_run,
            ledger: ledger_location(a.ledger.as_deref()),
            admin_namespaces: a.admin_namespaces.clone(),
            review_approver: a.review_approver,
            max_concurrent_triages: a.max_concurrent_triages.max(1),
            log_bytes_in_flight: a.log_bytes_in_flight,
        }
    }
}

const LEDGER_NAME: &str = "alert-triage-operator-ledger";

fn ledger_location(flag: Option<&str>) -> (String, String) {
    let own_namespace = || std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "default".into());
    match flag {
        Some(s) => match s.split_once('/') {
            Some((ns, name)) => (ns.to_string(), name.to_string()),
            None => (own_namespace(), s.to_string()),
        },
        None => (own_namespace(), LEDGER_NAME.to_string()),
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    /// For the Eviction API only: without kube's automatic retries, whose backoff on HTTP 429
    /// would swallow a PodDisruptionBudget's "not now" for minutes.
    pub eviction_client: Client,
    pub recorder: Recorder,
    pub config: Config,
    /// Runbook objects and the built-in runbooks, for choosing a triage's runbook.
    pub runbooks: Arc<Runbooks>,
    pub compiled: CompiledCache,
    pub metrics: Arc<Metrics>,
    /// Bounds the triages running at once across every watched namespace.
    pub triage_slots: Semaphore,
    pub bytes_in_flight: LogBudget,
    /// Pods' Warning Events, listed once per namespace for all the triages waiting on them.
    pub events: WarningEvents,
    /// The API server's time, for every decision that compares times.
    pub clock: ServerClock,
}

/// Runs one controller per watched namespace (or one for all) until `shutdown`, then lets the
/// reconciles in flight finish.
pub async fn run(ctx: Arc<Context>, apis: Vec<Api<AlertTriage>>, shutdown: &CancellationToken) {
    let concurrency = u16::try_from(ctx.config.max_concurrent_triages).unwrap_or(u16::MAX);
    let controllers = apis.into_iter().map(|api| {
        // Each reconcile reads its AlertTriage afresh, so this cache only names what to
        // reconcile: it keeps no status, managed fields or annotations.
        let (reader, writer) = reflector::store();
        let listed = reader.clone();
        let triages = watcher(api, watcher::Config::default().any_semantic())
            .default_backoff()
            .modify(|t| {
                t.metadata.managed_fields = None;
                t.metadata.annotations = None;
                t.status = None;
            })
            .reflect(writer)
            .applied_objects();
        let controller = Controller::for_stream(triages, reader)
            .with_config(controller::Config::default().concurrency(concurrency))
            .graceful_shutdown_on(shutdown.clone().cancelled_owned())
            .run(measured, error_policy, ctx.clone())
            .for_each(|res| async move {
                match res {
                    Ok((obj, _)) => tracing::debug!(object = %obj.name, "reconciled"),
                    Err(e) => warn!(error = %e, "reconcile failed"),
                }
            });
        // kube-runtime holds its reconciles until the first list has succeeded, and its
        // graceful shutdown waits for that list too: when listing keeps failing (no CRD, no
        // RBAC to list), a stop request would wait until the kubelet kills the process. Before
        // that first list nothing can be in flight, so the stop is immediate.
        let stop = shutdown.clone();
        let unlisted_at_stop = async move {
            stop.cancelled().await;
            if listed.wait_until_ready().now_or_never().is_none() {
                warn!("stopping before the first list of AlertTriages succeeded");
                return;
            }
            std::future::pending::<()>().await;
        };
        async move {
            tokio::select! {
                () = controller => {}
                () = unlisted_at_stop => {}
            }
        }
    });
    futures::future::join_all(controllers).await;
}

/// A reconcile, counted and timed.
async fn measured(obj: Arc<AlertTriage>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Never closed, so the wait ends with a slot.
    let _slot = ctx.triage_slots.acquire().await;
    let started = Instant::now();
    let result = reconcile::reconcile(obj, ctx.clone()).await;
    ctx.metrics.reconciled(
        started.elapsed(),
        result.as_ref().err().map(Error::category),
    );
    result
}

/// After a failed reconcile: a Warning Event on the triage says why, and the retry waits as
/// long as the error's category suggests.
fn error_policy(obj: Arc<AlertTriage>, err: &Error, ctx: Arc<Context>) -> Action {
    warn!(error = %err, category = err.category(), "will retry");
    // Losing a race to a newer write is how conditional writes work, not a fault to report.
    if !matches!(err, Error::Conflict(_)) {
        let message = err.to_string();
        let category = err.category();
        tokio::spawn(async move {
            record::reconcile_error(&ctx, &obj, category, &message).await;
        });
    }
    Action::requeue(err.retry_after())
}

/// Requeues a second after `t` (so the deadline has passed when the reconcile runs).
fn requeue_until(t: Timestamp, now: Timestamp) -> Action {
    Action::requeue(
        Duration::try_from(t.duration_since(now)).unwrap_or(Duration::ZERO)
            + Duration::from_secs(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_category_is_on_metrics_from_the_start() {
        let errors = [
            Error::Kube(kube::Error::LinesCodecMaxLineLengthExceeded),
            Error::Conflict("t".into()),
            Error::Evidence(crate::evidence::Error::ListEvents {
                namespace: "n".into(),
                source: kube::Error::LinesCodecMaxLineLengthExceeded,
            }),
            Error::Ledger(crate::action::LedgerError::Conflict("l".into())),
            Error::InfoConfigMap {
                name: "c".into(),
                source: kube::Error::LinesCodecMaxLineLengthExceeded,
            },
        ];
        let categories: Vec<&str> = errors.iter().map(Error::category).collect();
        assert_eq!(categories, crate::metrics::ERROR_CATEGORIES);
    }
}

//! The AlertTriage controller: watches AlertTriages and triages each generation once.

mod cache;
mod reconcile;
mod remediate;
pub mod status;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::action::Limits;
use crate::cli::RunArgs;
use crate::crd::AlertTriage;
use crate::evidence::LogBudget;
use crate::http::{self, Endpoints};
use crate::leader::{Elector, LeaderArgs};
use crate::metrics::Metrics;
use crate::runbook::{Catalog, CompiledCache};

/// The field manager for everything the controller writes (status, server-side apply).
pub const MANAGER: &str = "alert-triage-operator";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
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
            Error::Evidence(_) => "evidence",
            Error::InfoConfigMap { .. } => "info_configmap",
            Error::Ledger(_) => "ledger",
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
    pub max_concurrent_triages: usize,
    pub log_bytes_in_flight: u64,
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
}

impl From<&RunArgs> for Config {
    fn from(a: &RunArgs) -> Self {
        Config {
            log_byte_limit: a.log_byte_limit,
            pod_concurrency: a.pod_concurrency,
            max_concurrent_triages: a.max_concurrent_triages.max(1),
            log_bytes_in_flight: a.log_bytes_in_flight,
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

pub struct Context {
    pub client: Client,
    /// For the Eviction API only: without kube's automatic retries, whose backoff on HTTP 429
    /// would swallow a PodDisruptionBudget's "not now" for minutes.
    pub eviction_client: Client,
    pub recorder: Recorder,
    pub config: Config,
    pub catalog: &'static Catalog,
    pub compiled: CompiledCache,
    pub metrics: Arc<Metrics>,
    /// Bounds the triages running at once across every watched namespace.
    pub triage_slots: Semaphore,
    pub bytes_in_flight: LogBudget,
}

/// Runs the controller until SIGTERM/SIGINT: serves /metrics, /healthz and /readyz, keeps the
/// AlertTriage watch cache warm, and reconciles (while holding the lease, with leader election).
pub async fn run(client: Client, args: &RunArgs) -> anyhow::Result<()> {
    let identity = args.leader.identity();
    let reporter = Reporter {
        controller: MANAGER.to_string(),
        instance: Some(identity.clone()),
    };
    let apis: Vec<Api<AlertTriage>> = if args.namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        args.namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(
        signal(SignalKind::terminate())?,
        shutdown.clone(),
    ));
    let cache = cache::WarmCache::start(&apis);
    let metrics = Arc::new(Metrics::new(cache.awaiting_approval()));
    let server = http::serve(
        args.http.http_address,
        Endpoints {
            metrics: metrics.clone(),
            ready: cache.ready(),
        },
        shutdown.clone(),
    )
    .await?;
    let mut eviction_config = crate::kube_config(args.kubeconfig.as_deref()).await?;
    eviction_config.default_retry = false;
    let ctx = Arc::new(Context {
        client: client.clone(),
        eviction_client: Client::try_from(eviction_config)?,
        recorder: Recorder::new(client.clone(), reporter),
        config: Config::from(args),
        catalog: Catalog::builtin(),
        compiled: CompiledCache::default(),
        metrics,
        triage_slots: Semaphore::new(args.max_concurrent_triages.max(1)),
        bytes_in_flight: LogBudget::new(args.log_bytes_in_flight),
    });
    info!(namespaces = ?args.namespaces, identity, "starting the AlertTriage controller");
    let result = if args.leader.enabled {
        lead(client, &args.leader, identity, ctx, apis, &shutdown).await
    } else {
        ctx.metrics.set_leader(true);
        reconcile_until(ctx, apis, &shutdown).await;
        Ok(())
    };
    shutdown.cancel();
    server.await??;
    info!("controller stopped");
    result
}

async fn cancel_on_signal(mut terminate: tokio::signal::unix::Signal, shutdown: CancellationToken) {
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    info!("shutting down: finishing the reconciles in flight");
    shutdown.cancel();
}

/// Waits for the lease, then reconciles while holding it. Losing the lease stops every
/// reconcile at once (they are dropped, not drained) and fails the process: the renew deadline
/// is shorter than the lease duration, so this happens before another replica may take over.
async fn lead(
    client: Client,
    args: &LeaderArgs,
    identity: String,
    ctx: Arc<Context>,
    apis: Vec<Api<AlertTriage>>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut elector = Elector::new(client, args, identity)?;
    tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        () = elector.acquire() => {}
    }
    ctx.metrics.set_leader(true);
    let outcome = tokio::select! {
        biased;
        lost = elector.hold() => {
            error!(%lost, "lost the leader lease; stopped reconciling");
            Err(anyhow::anyhow!("lost the leader lease: {lost}"))
        }
        () = reconcile_until(ctx.clone(), apis, shutdown) => Ok(()),
    };
    ctx.metrics.set_leader(false);
    if outcome.is_ok() {
        elector.release().await;
    }
    outcome
}

/// Runs one controller per watched namespace (or one for all) until `shutdown`, then lets the
/// reconciles in flight finish.
async fn reconcile_until(
    ctx: Arc<Context>,
    apis: Vec<Api<AlertTriage>>,
    shutdown: &CancellationToken,
) {
    let concurrency = u16::try_from(ctx.config.max_concurrent_triages).unwrap_or(u16::MAX);
    let controllers = apis.into_iter().map(|api| {
        // Each reconcile reads its AlertTriage afresh, so this cache only names what to
        // reconcile: it keeps no status, managed fields or annotations.
        let (reader, writer) = reflector::store();
        let triages = watcher(api, watcher::Config::default().any_semantic())
            .default_backoff()
            .modify(|t| {
                t.metadata.managed_fields = None;
                t.metadata.annotations = None;
                t.status = None;
            })
            .reflect(writer)
            .applied_objects();
        Controller::for_stream(triages, reader)
            .with_config(controller::Config::default().concurrency(concurrency))
            .graceful_shutdown_on(shutdown.clone().cancelled_owned())
            .run(measured, reconcile::error_policy, ctx.clone())
            .for_each(|res| async move {
                match res {
                    Ok((obj, _)) => tracing::debug!(object = %obj.name, "reconciled"),
                    Err(e) => warn!(error = %e, "reconcile failed"),
                }
            })
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

/// Requeue after a transient error, with a little backoff.
pub(crate) fn retry_after(err: &Error) -> Action {
    warn!(error = %err, category = err.category(), "will retry");
    Action::requeue(Duration::from_secs(15))
}

//! The composition root: wires the process's parts as siblings (signal handling, the warm
//! AlertTriage cache, the HTTP endpoints, leader election and the controller) and runs them
//! until SIGTERM/SIGINT. A new component (an intake, a notifier) is added here, beside the
//! controller, not through it.

use std::sync::Arc;

use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::cli::RunArgs;
use crate::controller::runbooks::Runbooks;
use crate::controller::{self, Config, Context, MANAGER, ServerClock, cache::WarmCache};
use crate::crd::AlertTriage;
use crate::evidence::{LogBudget, WarningEvents};
use crate::http::{self, Endpoints};
use crate::leader::{Elector, LeaderArgs};
use crate::metrics::Metrics;
use crate::runbook::CompiledCache;

/// Runs the operator until SIGTERM/SIGINT: serves /metrics, /healthz and /readyz, keeps the
/// AlertTriage watch cache warm, and reconciles (while holding the lease, with leader election).
pub async fn run(client: Client, args: &RunArgs) -> anyhow::Result<()> {
    // Before anything is read from the cluster, so no evidence or log line escapes the
    // user's patterns.
    crate::redact::install(args.redact_patterns.clone())?;
    let identity = args.leader.identity();
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
    let cache = WarmCache::start(&apis);
    let metrics = Arc::new(Metrics::new(cache.awaiting_approval()));
    // Before serving anything, so a bad notification config fails the start with its error.
    // One view of the runbooks (built-in, Runbook and ClusterRunbook objects) for the
    // controller, the intake's routing and the notifier's per-runbook targets.
    let runbooks = Arc::new(Runbooks::start(
        &client,
        &args.namespaces,
        args.cluster_runbooks,
    ));
    let notifier = crate::notify::load(
        &args.notify,
        runbooks.clone(),
        client.clone(),
        Recorder::new(client.clone(), reporter(&identity)),
        metrics.clone(),
    )?;
    let server = http::serve(
        args.http.http_address,
        Endpoints {
            metrics: metrics.clone(),
            ready: cache.ready(),
        },
        shutdown.clone(),
    )
    .await?;
    let intake = crate::intake::start(
        &args.intake,
        &args.namespaces,
        runbooks.clone(),
        client.clone(),
        metrics.clone(),
        shutdown.clone(),
    )
    .await?;
    let mut eviction_config = crate::kube_config(args.kubeconfig.as_deref()).await?;
    eviction_config.default_retry = false;
    let ctx = Arc::new(Context {
        client: client.clone(),
        eviction_client: Client::try_from(eviction_config)?,
        recorder: Recorder::new(client.clone(), reporter(&identity)),
        config: Config::from(args),
        runbooks,
        compiled: CompiledCache::default(),
        metrics,
        triage_slots: Semaphore::new(args.max_concurrent_triages.max(1)),
        bytes_in_flight: LogBudget::new(args.log_bytes_in_flight),
        events: WarningEvents::default(),
        clock: ServerClock::new(client.clone()),
    });
    info!(namespaces = ?args.namespaces, identity, "starting the AlertTriage controller");
    let result = if args.leader.enabled {
        lead(
            client,
            &args.leader,
            identity,
            ctx,
            apis,
            notifier,
            &shutdown,
        )
        .await
    } else {
        ctx.metrics.set_leader(true);
        reconcile_and_notify(ctx, apis, notifier, &shutdown).await;
        Ok(())
    };
    shutdown.cancel();
    server.await??;
    if let Some(intake) = intake {
        intake.await??;
    }
    info!("controller stopped");
    result
}

/// Who the Events this replica publishes come from.
fn reporter(identity: &str) -> Reporter {
    Reporter {
        controller: MANAGER.to_string(),
        instance: Some(identity.to_string()),
    }
}

async fn cancel_on_signal(mut terminate: tokio::signal::unix::Signal, shutdown: CancellationToken) {
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    info!("shutting down: finishing the reconciles in flight");
    shutdown.cancel();
}

/// The leader's work: the controller and, beside it on a watch of its own, the notifier.
async fn reconcile_and_notify(
    ctx: Arc<Context>,
    apis: Vec<Api<AlertTriage>>,
    notifier: Option<Arc<crate::notify::Notifier>>,
    shutdown: &CancellationToken,
) {
    let notify = async {
        if let Some(notifier) = notifier {
            notifier.run(apis.clone(), shutdown).await;
        }
    };
    tokio::join!(controller::run(ctx, apis.clone(), shutdown), notify);
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
    notifier: Option<Arc<crate::notify::Notifier>>,
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
        () = reconcile_and_notify(ctx.clone(), apis, notifier, shutdown) => Ok(()),
    };
    ctx.metrics.set_leader(false);
    if outcome.is_ok() {
        elector.release().await;
    }
    outcome
}

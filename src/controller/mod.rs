//! The AlertTriage controller: watches AlertTriages and triages each generation once.

mod reconcile;
mod remediate;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client};
use tracing::{info, warn};

use crate::action::Limits;
use crate::cli::RunArgs;
use crate::crd::AlertTriage;
use crate::runbook::Catalog;

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
    /// Overrides the runbook's info ConfigMap.
    pub info_configmap: Option<InfoConfigMap>,
    pub proposal_ttl: Duration,
    pub status_byte_limit: usize,
    pub limits: Limits,
    pub verify_timeout: Duration,
    pub allow_pod_delete: bool,
    /// Namespace and name of the ledger ConfigMap.
    pub ledger: (String, String),
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
            allow_pod_delete: a.allow_pod_delete,
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
}

/// Runs the controller until SIGTERM/SIGINT.
pub async fn run(client: Client, args: &RunArgs) -> anyhow::Result<()> {
    let reporter = Reporter {
        controller: MANAGER.to_string(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let mut eviction_config = crate::kube_config(args.kubeconfig.as_deref()).await?;
    eviction_config.default_retry = false;
    let ctx = Arc::new(Context {
        client: client.clone(),
        eviction_client: Client::try_from(eviction_config)?,
        recorder: Recorder::new(client.clone(), reporter),
        config: Config::from(args),
        catalog: Catalog::builtin(),
    });
    let apis: Vec<Api<AlertTriage>> = if args.namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        args.namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    };
    info!(namespaces = ?args.namespaces, "starting the AlertTriage controller");
    let controllers = apis.into_iter().map(|api| {
        Controller::new(api, watcher::Config::default().any_semantic())
            .shutdown_on_signal()
            .run(reconcile::reconcile, reconcile::error_policy, ctx.clone())
            .for_each(|res| async move {
                match res {
                    Ok((obj, _)) => tracing::debug!(object = %obj.name, "reconciled"),
                    Err(e) => warn!(error = %e, "reconcile failed"),
                }
            })
    });
    futures::future::join_all(controllers).await;
    info!("controller stopped");
    Ok(())
}

/// Requeue after a transient error, with a little backoff.
pub(crate) fn retry_after(err: &Error) -> Action {
    warn!(error = %err, category = err.category(), "will retry");
    Action::requeue(Duration::from_secs(15))
}

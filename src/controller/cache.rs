//! A watch cache of AlertTriages that every replica keeps, leader or not: it tells `/readyz`
//! when the watch has synced, keeps followers warm (connected, authorised, listing) for a quick
//! takeover, and answers the proposals-awaiting-approval gauge at scrape time.
//!
//! kube-runtime's `Controller` cannot share a watch without its unstable features, so the
//! leader's controller keeps its own; this cache holds only what the gauge needs, not evidence.

use std::fmt;

use futures::StreamExt;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::crd::{AlertTriage, AlertTriageStatus, Phase};

pub struct WarmCache {
    stores: Vec<Store<AlertTriage>>,
    ready: watch::Receiver<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl WarmCache {
    /// Starts watching through each of `apis` (one per watched namespace, or one for all).
    pub fn start(apis: &[Api<AlertTriage>]) -> WarmCache {
        let mut stores = Vec::new();
        let mut tasks = Vec::new();
        for api in apis {
            let (reader, writer) = reflector::store();
            let events = watcher(api.clone(), watcher::Config::default().any_semantic())
                .default_backoff()
                .modify(trim)
                .reflect(writer);
            tasks.push(tokio::spawn(events.for_each(|event| async move {
                if let Err(e) = event {
                    warn!(error = %e, "watching AlertTriages failed; retrying");
                }
            })));
            stores.push(reader);
        }
        let (tx, ready) = watch::channel(false);
        let waiting = stores.clone();
        tasks.push(tokio::spawn(async move {
            let synced = futures::future::join_all(waiting.iter().map(Store::wait_until_ready));
            if synced.await.iter().all(Result::is_ok) {
                let _ = tx.send(true);
            }
        }));
        WarmCache {
            stores,
            ready,
            tasks,
        }
    }

    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.clone()
    }

    pub fn awaiting_approval(&self) -> AwaitingApproval {
        AwaitingApproval(self.stores.clone())
    }
}

impl Drop for WarmCache {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Keeps what the cache is for (identity and phase) and drops the rest, evidence above all.
fn trim(t: &mut AlertTriage) {
    t.metadata.managed_fields = None;
    t.metadata.annotations = None;
    if let Some(status) = t.status.as_mut() {
        *status = AlertTriageStatus {
            phase: status.phase,
            ..AlertTriageStatus::default()
        };
    }
}

/// `alert_triage_proposals_awaiting_approval`, counted from the cache on each scrape.
#[derive(Clone)]
pub struct AwaitingApproval(Vec<Store<AlertTriage>>);

impl fmt::Debug for AwaitingApproval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AwaitingApproval")
    }
}

impl Collector for AwaitingApproval {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let waiting = self
            .0
            .iter()
            .flat_map(Store::state)
            .filter(|t| t.status.as_ref().and_then(|s| s.phase) == Some(Phase::AwaitingApproval))
            .count();
        let gauge = ConstGauge::new(i64::try_from(waiting).unwrap_or(i64::MAX));
        gauge.encode(encoder.encode_descriptor(
            "proposals_awaiting_approval",
            "AlertTriages whose proposal waits for a human's approval",
            None,
            gauge.metric_type(),
        )?)
    }
}

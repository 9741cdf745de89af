//! The notifier: delivers escalations, API key rotation needs and proposals awaiting approval
//! to Alertmanager, Slack, PagerDuty or a signed webhook, and their end once the triage is
//! resolved, settled otherwise or deleted.
//!
//! It runs beside the controller (only while this replica leads) on a watch of its own, so a
//! triage never waits on a sink. What to send is decided by `plan` from the triage's status and
//! the deliveries recorded in `status.notification.deliveries`; each attempt is recorded as
//! `Sending` before it is made and with its result after, through `controller::record`. A
//! process killed between the two sends again after a restart with the same idempotency key,
//! which every receiver dedupes (Alertmanager by label set, PagerDuty by `dedup_key`, the
//! webhook's `Idempotency-Key`): at least once, never a second page.

pub mod config;
pub mod plan;
pub mod send;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::Recorder;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::controller::runbooks::Runbooks;
use crate::controller::{notification_undelivered, record_deliveries};
use crate::crd::{AlertTriage, Delivery, DeliveryEvent, DeliveryResult};
use crate::metrics::Metrics;
use crate::runbook::Catalog;
use config::{Config, Sink};
use plan::{Step, TargetRef};
use send::{Message, Poster};

/// Most entries kept in `status.notification.deliveries` (finished ones go first).
const MAX_DELIVERIES: usize = 20;
/// How often retries and re-posts are looked for.
const TICK: Duration = Duration::from_secs(1);
/// Writes of the deliveries tried again on a conflict before the next tick takes over.
const WRITE_TRIES: usize = 3;

#[derive(Args, Debug, Clone)]
pub struct NotifyArgs {
    /// The notification configuration (targets, routes, retry; see docs/notifications.md).
    /// Nothing is sent without it. An invalid file fails the start.
    #[arg(long, env = "ATO_NOTIFY_CONFIG_FILE")]
    pub notify_config_file: Option<PathBuf>,
}

/// What the notifier knows of one triage.
struct Tracked {
    obj: AlertTriage,
    /// Which of the notifier's watches (one per watched namespace, or one) reports it.
    watch: usize,
    deleted: bool,
    /// The deliveries as last written (or read at first sight): the notifier is their only
    /// writer, so this copy is never older than the watch's.
    deliveries: Vec<Delivery>,
    in_flight: HashSet<(String, String)>,
    posted: HashMap<(String, String), Instant>,
    /// The last write of `deliveries` failed; the next tick writes them again.
    unwritten: bool,
}

pub struct Notifier {
    config: Config,
    /// Target names as metric labels (a fixed set, read once at start).
    labels: HashMap<String, &'static str>,
    /// Where a triage's runbook (and so its own `notify` targets) is looked up.
    runbooks: Arc<Runbooks>,
    poster: Poster,
    metrics: Arc<Metrics>,
    client: Client,
    recorder: Recorder,
    state: Mutex<HashMap<String, Tracked>>,
    writes: tokio::sync::Mutex<()>,
}

/// Reads the configuration; `None` when none is given. Invalid configuration is an error here,
/// before anything else starts.
pub fn load(
    args: &NotifyArgs,
    runbooks: Arc<Runbooks>,
    client: Client,
    recorder: Recorder,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Option<Arc<Notifier>>> {
    let Some(path) = &args.notify_config_file else {
        return Ok(None);
    };
    // The built-in runbooks' own targets are checked here. A Runbook object's come and go with
    // the object: names that are not configured targets are ignored (docs/notifications.md).
    let known: Vec<(&str, &[String])> = Catalog::builtin()
        .runbooks()
        .iter()
        .map(|r| (r.id(), r.notify_entries()))
        .collect();
    let config = Config::load(path, &known)?;
    let labels: HashMap<String, &'static str> = config
        .targets
        .iter()
        .map(|t| (t.name.clone(), &*Box::leak(t.name.clone().into_boxed_str())))
        .collect();
    metrics.notify_targets(labels.values().copied());
    info!(
        targets = ?config.targets.iter().map(|t| format!("{} ({})", t.name, t.sink.type_name())).collect::<Vec<_>>(),
        routes = config.routes.len(),
        "notifications configured"
    );
    Ok(Some(Arc::new(Notifier {
        config,
        labels,
        runbooks,
        poster: Poster::new()?,
        metrics,
        client,
        recorder,
        state: Mutex::new(HashMap::new()),
        writes: tokio::sync::Mutex::new(()),
    })))
}

/// Keeps what deciding and writing need; the evidence is the bulk of a triage and is not sent.
fn trim(t: &mut AlertTriage) {
    t.metadata.managed_fields = None;
    t.metadata.annotations = None;
    if let Some(s) = t.status.as_mut() {
        s.evidence = None;
    }
}

impl Notifier {
    /// Watches through `apis` and delivers until `shutdown`.
    pub async fn run(self: Arc<Self>, apis: Vec<Api<AlertTriage>>, shutdown: &CancellationToken) {
        let streams = apis.into_iter().enumerate().map(|(watch, api)| {
            watcher(api, watcher::Config::default().any_semantic())
                .default_backoff()
                .modify(trim)
                .map(move |event| (watch, event))
                .boxed()
        });
        let mut events = futures::stream::select_all(streams);
        // Per watch, the UIDs seen since its (re)list began: a triage deleted while the watch
        // was broken shows up only as missing from the next list.
        let mut listing: HashMap<usize, HashSet<String>> = HashMap::new();
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    let uids: Vec<String> = self.lock().keys().cloned().collect();
                    for uid in uids {
                        self.clone().decide(&uid);
                    }
                }
                event = events.next() => match event {
                    Some((watch, Ok(watcher::Event::Apply(obj)))) => {
                        let uid = self.seen(watch, obj, false);
                        self.clone().decide(&uid);
                    }
                    Some((watch, Ok(watcher::Event::InitApply(obj)))) => {
                        let uid = self.seen(watch, obj, false);
                        listing.entry(watch).or_default().insert(uid.clone());
                        self.clone().decide(&uid);
                    }
                    Some((watch, Ok(watcher::Event::Delete(obj)))) => {
                        let uid = self.seen(watch, obj, true);
                        self.clone().decide(&uid);
                    }
                    Some((watch, Ok(watcher::Event::Init))) => {
                        listing.insert(watch, HashSet::new());
                    }
                    Some((watch, Ok(watcher::Event::InitDone))) => {
                        let listed = listing.remove(&watch).unwrap_or_default();
                        for uid in self.vanished(watch, &listed) {
                            self.clone().decide(&uid);
                        }
                    }
                    Some((_, Err(e))) => warn!(error = %e, "notifier: watching AlertTriages failed; retrying"),
                    None => return,
                },
            }
        }
    }

    /// Marks deleted the triages of watch `watch` that its fresh list no longer has.
    fn vanished(&self, watch: usize, listed: &HashSet<String>) -> Vec<String> {
        let mut state = self.lock();
        state
            .iter_mut()
            .filter(|(uid, t)| t.watch == watch && !t.deleted && !listed.contains(*uid))
            .map(|(uid, t)| {
                t.deleted = true;
                uid.clone()
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tracked>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn seen(&self, watch: usize, obj: AlertTriage, deleted: bool) -> String {
        let uid = obj.uid().unwrap_or_default();
        let mut state = self.lock();
        let tracked = state.entry(uid.clone()).or_insert_with(|| Tracked {
            deliveries: obj
                .status
                .as_ref()
                .and_then(|s| s.notification.as_ref())
                .map(|n| n.deliveries.clone())
                .unwrap_or_default(),
            obj: obj.clone(),
            watch,
            deleted,
            in_flight: HashSet::new(),
            posted: HashMap::new(),
            unwritten: false,
        });
        tracked.obj = obj;
        tracked.deleted |= deleted;
        uid
    }

    /// Starts what `plan::due` asks for this triage (each in a task of its own), and the
    /// Alertmanager re-posts that keep a firing alert alive.
    fn decide(self: Arc<Self>, uid: &str) {
        let now = Timestamp::now();
        let mut state = self.lock();
        let Some(t) = state.get_mut(uid) else {
            return;
        };
        if plan::held(&t.obj, t.deleted) {
            return;
        }
        let wanted = plan::wanted(&t.obj, t.deleted);
        // The runbook's own targets, looked up only when something is to be sent: this runs
        // every tick for every tracked triage.
        let notify: Vec<String> = t
            .obj
            .status
            .as_ref()
            .and_then(|s| s.runbook.as_deref())
            .filter(|_| !wanted.is_empty())
            .and_then(|id| {
                let namespace = t.obj.metadata.namespace.as_deref().unwrap_or_default();
                self.runbooks
                    .select(namespace, Some(id), &t.obj.spec.alert)
                    .ok()
            })
            .map(|c| c.runbook.notify(&t.obj.spec.alert))
            .unwrap_or_default();

        let routed: Vec<_> = wanted
            .into_iter()
            .map(|w| {
                let targets = self
                    .config
                    .targets_for(&t.obj, w.kind, &notify)
                    .into_iter()
                    .map(target_ref)
                    .collect();
                (w, targets)
            })
            .collect();
        let known: Vec<TargetRef> = self.config.targets.iter().map(target_ref).collect();
        let steps = plan::due(&routed, &t.deliveries, &known, &self.config.retry, now);
        let mut write = std::mem::take(&mut t.unwritten);
        for step in steps {
            match step {
                Step::Send {
                    target,
                    kind,
                    key,
                    event,
                    attempts,
                } => {
                    if !t.in_flight.insert((target.clone(), key.clone())) {
                        continue;
                    }
                    let message = Message::new(&t.obj, kind, &key, event);
                    tokio::spawn(
                        self.clone()
                            .deliver(uid.to_string(), target, message, attempts),
                    );
                }
                Step::Supersede { target, key } => {
                    if let Some(d) = t
                        .deliveries
                        .iter_mut()
                        .find(|d| d.target == target && d.key == key)
                    {
                        d.event = DeliveryEvent::Resolved;
                        d.result = DeliveryResult::Superseded;
                        d.attempts = 0;
                        d.time = Time(now);
                        d.error = None;
                        write = true;
                    }
                }
            }
        }
        for (w, targets) in &routed {
            for target in targets {
                let id = (target.name.to_string(), w.key.clone());
                let firing = t.deliveries.iter().any(|d| {
                    d.target == id.0
                        && d.key == id.1
                        && d.event == DeliveryEvent::Firing
                        && d.result == DeliveryResult::Delivered
                });
                let repost = match self.config.target(target.name).map(|t| &t.sink) {
                    Some(Sink::Alertmanager { repost, .. }) => *repost,
                    _ => continue,
                };
                let stale = t.posted.get(&id).is_none_or(|at| at.elapsed() >= repost);
                if firing && stale && !t.in_flight.contains(&id) {
                    t.posted.insert(id.clone(), Instant::now());
                    let message = Message::new(&t.obj, w.kind, &w.key, DeliveryEvent::Firing);
                    tokio::spawn(self.clone().repost(id.0, message));
                }
            }
        }
        if t.deleted && routed.is_empty() && t.in_flight.is_empty() {
            let settled = t.deliveries.iter().all(|d| {
                d.event == DeliveryEvent::Resolved
                    && d.result != DeliveryResult::Sending
                    && d.result != DeliveryResult::Failed
            });
            if settled
                || !t
                    .deliveries
                    .iter()
                    .any(|d| self.config.target(&d.target).is_some())
            {
                state.remove(uid);
                return;
            }
        }
        drop(state);
        if write {
            tokio::spawn(self.clone().write(uid.to_string()));
        }
    }

    /// One attempt: the intent is recorded, the message sent, the result recorded.
    async fn deliver(
        self: Arc<Self>,
        uid: String,
        target: String,
        message: Message,
        attempts: u32,
    ) {
        let attempt = attempts.saturating_add(1);
        self.update(
            &uid,
            &target,
            &message,
            DeliveryResult::Sending,
            attempt,
            None,
        );
        self.clone().write(uid.clone()).await;
        let outcome = match self.config.target(&target) {
            Some(t) => self.poster.send(&t.sink, &message).await,
            None => Err("target no longer configured".to_string()),
        };
        crate::crash::point("notify-sent").await;
        let result = match &outcome {
            Ok(()) => DeliveryResult::Delivered,
            Err(_) if attempt >= self.config.retry.max_attempts => DeliveryResult::Undelivered,
            Err(_) => DeliveryResult::Failed,
        };
        let span = tracing::info_span!(
            "notification",
            target_name = target,
            triage = message.name,
            namespace = message.namespace,
            kind = message.kind.as_str(),
            event = message.event.as_str(),
            attempt,
        )
        .entered();
        match &outcome {
            Ok(()) => info!("notification delivered"),
            Err(error) => warn!(error, "notification not delivered"),
        }
        drop(span);
        if let (DeliveryResult::Undelivered, Err(error)) = (result, &outcome) {
            let triage = self.lock().get(&uid).map(|t| t.obj.clone());
            if let Some(triage) = triage.filter(|_| !message.name.is_empty()) {
                let text = format!(
                    "{} {} to target {target} gave up after {attempt} attempts: {error}",
                    message.kind.as_str(),
                    message.event.as_str()
                );
                notification_undelivered(&self.recorder, &triage, text).await;
            }
        }
        self.update(&uid, &target, &message, result, attempt, outcome.err());
        self.count(&target, result);
        {
            let mut state = self.lock();
            if let Some(t) = state.get_mut(&uid) {
                let id = (target.clone(), message.key.clone());
                if result == DeliveryResult::Delivered && message.event == DeliveryEvent::Firing {
                    t.posted.insert(id.clone(), Instant::now());
                }
                t.in_flight.remove(&id);
            }
        }
        self.write(uid).await;
    }

    /// Posts a firing alert to Alertmanager again; not recorded (the delivery is), counted.
    async fn repost(self: Arc<Self>, target: String, message: Message) {
        let Some(t) = self.config.target(&target) else {
            return;
        };
        let result = match self.poster.send(&t.sink, &message).await {
            Ok(()) => "reposted",
            Err(error) => {
                warn!(
                    target_name = target,
                    triage = message.name,
                    error,
                    "re-posting to Alertmanager failed"
                );
                "repost_failed"
            }
        };
        if let Some(label) = self.labels.get(&target) {
            self.metrics.notification(label, result);
        }
    }

    fn count(&self, target: &str, result: DeliveryResult) {
        if let Some(label) = self.labels.get(target) {
            self.metrics.notification(label, result_label(result));
        }
    }

    fn update(
        &self,
        uid: &str,
        target: &str,
        m: &Message,
        result: DeliveryResult,
        attempts: u32,
        error: Option<String>,
    ) {
        let mut state = self.lock();
        let Some(t) = state.get_mut(uid) else {
            return;
        };
        let delivery = Delivery {
            target: target.to_string(),
            kind: m.kind,
            key: m.key.clone(),
            event: m.event,
            result,
            attempts,
            time: Time(Timestamp::now()),
            error: error.map(|e| crate::redact::redact(&e).chars().take(200).collect()),
        };
        match t
            .deliveries
            .iter_mut()
            .find(|d| d.target == target && d.key == m.key)
        {
            Some(d) => *d = delivery,
            None => t.deliveries.push(delivery),
        }
        plan::prune(&mut t.deliveries, MAX_DELIVERIES);
    }

    /// Writes this triage's deliveries as they are now. Writes are one at a time, so an older
    /// snapshot never lands after a newer one.
    async fn write(self: Arc<Self>, uid: String) {
        let _turn = self.writes.lock().await;
        for _ in 0..WRITE_TRIES {
            let (name, namespace, version, deliveries) = {
                let state = self.lock();
                let Some(t) = state.get(&uid).filter(|t| !t.deleted) else {
                    return;
                };
                (
                    t.obj.name_any(),
                    t.obj.namespace().unwrap_or_default(),
                    t.obj.resource_version(),
                    t.deliveries.clone(),
                )
            };
            let api: Api<AlertTriage> = Api::namespaced(self.client.clone(), &namespace);
            match record_deliveries(&api, &name, version.as_deref(), &deliveries).await {
                Ok(version) => {
                    let mut state = self.lock();
                    if let (Some(t), Some(v)) = (state.get_mut(&uid), version) {
                        t.obj.metadata.resource_version = Some(v);
                    }
                    return;
                }
                Err(crate::controller::Error::Conflict(_)) => match api.get_opt(&name).await {
                    Ok(Some(mut fresh)) if fresh.uid().as_deref() == Some(uid.as_str()) => {
                        trim(&mut fresh);
                        if let Some(t) = self.lock().get_mut(&uid) {
                            t.obj = fresh;
                        }
                    }
                    Ok(_) => return,
                    Err(e) => {
                        warn!(triage = name, error = %e, "notifier: reading the triage failed");
                        break;
                    }
                },
                Err(e) => {
                    warn!(triage = name, error = %e, "notifier: recording deliveries failed; trying again");
                    break;
                }
            }
        }
        // Not written (an error, or every race lost to the controller): the next tick tries again.
        if let Some(t) = self.lock().get_mut(&uid) {
            t.unwritten = true;
        }
    }
}

/// `result` label of `alert_triage_notifications_total` for a recorded outcome.
fn result_label(result: DeliveryResult) -> &'static str {
    match result {
        DeliveryResult::Sending => "sending",
        DeliveryResult::Delivered => "delivered",
        DeliveryResult::Failed => "failed",
        DeliveryResult::Undelivered => "undelivered",
        DeliveryResult::Superseded => "superseded",
    }
}

fn target_ref(t: &config::Target) -> TargetRef<'_> {
    TargetRef {
        name: &t.name,
        one_incident_per_triage: t.sink.one_incident_per_triage(),
    }
}

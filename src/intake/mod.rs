//! The Alertmanager intake: a webhook receiver (payload version 4) on a listener of its own,
//! that turns each firing alert of a notification into one AlertTriage and marks the triage of
//! each resolved alert resolved.
//!
//! Idempotence comes from the name: one firing (fingerprint + `startsAt`) has one name
//! everywhere, and the intake only ever creates (an existing object is a duplicate, never
//! updated), so repeats, HA replicas of Alertmanager and concurrent deliveries make one object
//! whose spec nobody but its owner changes. A resolved alert is recorded as a `Resolved`
//! condition the operator writes itself (`controller::mark_resolved`); the phase machine reads
//! it and withdraws, refuses and never evicts. Retention later deletes resolved triages the
//! intake created.
//!
//! Answers: 401 without the right bearer token, 413 over the body limit, 400 for a payload that
//! is not version 4 or has a bad alert (nothing of it is created), 503 when the API server
//! failed for some alert (Alertmanager retries; what was created is a duplicate next time),
//! 200 otherwise, with what became of each alert in the body and on /metrics.

mod auth;
mod payload;
mod retention;
mod route;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use clap::Args;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use route::{FINGERPRINT_LABEL, GENERATOR_URL_ANNOTATION, Namespaces, SOURCE, SOURCE_LABEL};

use crate::controller::mark_resolved;
use crate::controller::runbooks::Runbooks;
use crate::crd::AlertTriage;
use crate::duration::parse as parse_duration;
use crate::metrics::Metrics;
use payload::Alert;

/// Where Alertmanager posts.
pub const PATH: &str = "/alertmanager";
/// The largest notification read; Alertmanager's own default caps a group at no limit, so a
/// storm of 5,000 alerts with a few labels each (~2 MiB) still fits.
pub const BODY_LIMIT: usize = 8 * 1024 * 1024;
/// Notifications handled at once; with the body limit, this bounds the intake's memory.
const CONCURRENT_NOTIFICATIONS: usize = 4;

#[derive(Args, Debug, Clone)]
pub struct IntakeArgs {
    /// Serve Alertmanager's webhook (POST /alertmanager) on this address; the intake is off
    /// unless set. Port 0 picks a free port (logged).
    #[arg(long, env = "ATO_INTAKE_BIND_ADDRESS")]
    pub intake_bind_address: Option<SocketAddr>,

    /// File holding the bearer token Alertmanager must send (required with the intake).
    #[arg(long, env = "ATO_INTAKE_TOKEN_FILE")]
    pub intake_token_file: Option<PathBuf>,

    /// Namespaces an alert's `namespace` label may name for its triage; empty: the namespaces
    /// the operator watches (all when it watches all). Alerts about others are refused.
    #[arg(long, env = "ATO_INTAKE_ALLOWED_NAMESPACES", value_delimiter = ',')]
    pub intake_allowed_namespaces: Vec<String>,

    /// Where the triage of an alert without a `namespace` label lives; without it such alerts
    /// are refused.
    #[arg(long, env = "ATO_INTAKE_DEFAULT_NAMESPACE")]
    pub intake_default_namespace: Option<String>,

    /// A runbook id (built-in, Runbook or ClusterRunbook) that triages alerts no runbook
    /// matches by name; without it such alerts are acknowledged and counted
    /// (`outcome="unrouted"`), not created.
    #[arg(long, env = "ATO_INTAKE_CATCH_ALL_RUNBOOK")]
    pub intake_catch_all_runbook: Option<String>,

    /// Most triages the intake creates in any minute; alerts beyond are acknowledged, counted
    /// (`alert_triage_intake_alerts_total{outcome="rate_limited"}`) and logged, not created.
    #[arg(long, env = "ATO_INTAKE_MAX_PER_MINUTE", default_value_t = 60)]
    pub intake_max_per_minute: u32,

    /// How long a triage the intake created is kept after its alert resolved; 0 keeps it.
    #[arg(long, env = "ATO_RESOLVED_RETENTION", default_value = "24h", value_parser = parse_duration)]
    pub resolved_retention: Duration,
}

/// Starts the intake (and its retention) when it is bound; `None` when it is off.
pub async fn start(
    args: &IntakeArgs,
    watched: &[String],
    runbooks: Arc<Runbooks>,
    client: Client,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<JoinHandle<std::io::Result<()>>>> {
    let Some(address) = args.intake_bind_address else {
        return Ok(None);
    };
    let path = args
        .intake_token_file
        .as_ref()
        .context("--intake-token-file is required with --intake-bind-address")?;
    let token = auth::Token::read(path)?;
    let allowed = if args.intake_allowed_namespaces.is_empty() {
        watched.to_vec()
    } else {
        args.intake_allowed_namespaces.clone()
    };
    let catch_all =
        route::catch_all(args.intake_catch_all_runbook.as_deref()).map_err(anyhow::Error::msg)?;
    let intake = Arc::new(Intake {
        client: client.clone(),
        token,
        runbooks,
        catch_all,
        namespaces: Namespaces {
            allowed,
            default: args.intake_default_namespace.clone(),
        },
        limit: RateLimit::new(args.intake_max_per_minute),
        metrics,
        slots: Arc::new(Semaphore::new(CONCURRENT_NOTIFICATIONS)),
    });
    if !args.resolved_retention.is_zero() {
        tokio::spawn(retention::run(
            client,
            watched.to_vec(),
            args.resolved_retention,
            shutdown.clone(),
        ));
    }
    let listener = TcpListener::bind(address).await?;
    info!(address = %listener.local_addr()?, path = PATH, "serving the Alertmanager intake");
    let app = router(intake);
    Ok(Some(tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    })))
}

struct Intake {
    client: Client,
    token: auth::Token,
    runbooks: Arc<Runbooks>,
    /// The id of the runbook that triages what no runbook matches, when configured.
    catch_all: Option<String>,
    namespaces: Namespaces,
    limit: RateLimit,
    metrics: Arc<Metrics>,
    slots: Arc<Semaphore>,
}

fn router(intake: Arc<Intake>) -> Router {
    Router::new().route(PATH, post(receive)).with_state(intake)
}

async fn receive(
    State(intake): State<Arc<Intake>>,
    headers: HeaderMap,
    body: Body,
) -> (StatusCode, String) {
    // Checked before the body is read: an unauthenticated sender costs nothing.
    if !intake.token.accepts(headers.get(header::AUTHORIZATION)) {
        intake.metrics.intake_notification("unauthorized");
        return (
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token\n".into(),
        );
    }
    // Never closed, so the wait ends with a slot; should it ever be closed, the sender retries.
    let Ok(slot) = Arc::clone(&intake.slots).acquire_owned().await else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "no slot for the notification; retry\n".into(),
        );
    };
    let Ok(body) = to_bytes(body, BODY_LIMIT).await else {
        intake.metrics.intake_notification("too_large");
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {BODY_LIMIT} bytes, or could not be read\n"),
        );
    };
    let alerts = match payload::parse(&body) {
        Ok(a) => a,
        Err(e) => {
            intake.metrics.intake_notification("malformed");
            return (StatusCode::BAD_REQUEST, format!("{e}\n"));
        }
    };
    drop(body);
    // A task of its own, holding the slot: when the sender hangs up (Alertmanager's timeout)
    // the server drops this handler, but triages the API server may already have created are
    // still logged and counted, and the rest of the notification is still handled; a retry
    // would only find them as duplicates.
    let handling = tokio::spawn(async move {
        let answer = intake.notification(&alerts).await;
        drop(slot);
        answer
    });
    handling.await.unwrap_or_else(|_| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the notification was not handled to the end; retry\n".into(),
        )
    })
}

impl Intake {
    /// Handles every alert of a checked notification and answers for it.
    async fn notification(&self, alerts: &[Alert]) -> (StatusCode, String) {
        let mut tally = Tally::default();
        for alert in alerts {
            let outcome = self.handle(alert).await;
            self.metrics.intake_alerts(outcome, 1);
            tally.add(outcome);
        }
        if tally.rate_limited > 0 {
            warn!(
                rate_limited = tally.rate_limited,
                limit_per_minute = self.limit.per_minute,
                "intake rate limit reached: alerts were acknowledged without creating a triage"
            );
        }
        let summary = tally.summary();
        if tally.error > 0 {
            self.metrics.intake_notification("error");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the API server failed for some alerts; retry: {summary}\n"),
            );
        }
        self.metrics.intake_notification("accepted");
        (StatusCode::OK, format!("{summary}\n"))
    }

    async fn handle(&self, alert: &Alert) -> &'static str {
        let spec_alert = route::spec_alert(alert);
        let catch_all = self.catch_all.as_deref();
        // Runbook objects apply in their own namespace, so the namespace comes first; an alert
        // refused a namespace is still told apart from one no runbook knows.
        let namespace = match route::namespace(&self.namespaces, alert) {
            Ok(ns) => ns,
            Err(_) if route::route(&self.runbooks, "", &spec_alert, catch_all).is_none() => {
                return "unrouted";
            }
            Err(why) => {
                warn!(
                    alert = alert.name,
                    fingerprint = alert.fingerprint,
                    why,
                    "alert refused"
                );
                return "refused";
            }
        };
        let Some(runbook) = route::route(&self.runbooks, &namespace, &spec_alert, catch_all) else {
            return "unrouted";
        };
        let api: Api<AlertTriage> = Api::namespaced(self.client.clone(), &namespace);
        let name = route::name(runbook.id(), alert);
        if let Some(ended_at) = alert.ended_at {
            return match mark_resolved(&api, &name, ended_at).await {
                Ok(found) => {
                    info!(triage = name, namespace, found, "alert resolved");
                    "resolved"
                }
                Err(e) => {
                    warn!(triage = name, namespace, error = %e, "could not mark the triage resolved");
                    "error"
                }
            };
        }
        if !self.limit.take(Instant::now()) {
            return "rate_limited";
        }
        let triage = route::triage(&runbook, &namespace, alert);
        match api.create(&PostParams::default(), &triage).await {
            Ok(_) => {
                info!(
                    triage = name,
                    namespace,
                    runbook = runbook.id(),
                    "triage created for a firing alert"
                );
                "created"
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                self.limit.give_back();
                "duplicate"
            }
            Err(kube::Error::Api(s)) if (400..500).contains(&s.code) => {
                self.limit.give_back();
                warn!(
                    triage = name,
                    namespace,
                    code = s.code,
                    message = s.message,
                    "the API server refused the triage"
                );
                "refused"
            }
            Err(e) => {
                self.limit.give_back();
                warn!(triage = name, namespace, error = %e, "could not create the triage");
                "error"
            }
        }
    }
}

/// What became of the alerts of one notification.
#[derive(Debug, Default)]
struct Tally {
    created: u64,
    duplicate: u64,
    resolved: u64,
    unrouted: u64,
    refused: u64,
    rate_limited: u64,
    error: u64,
}

impl Tally {
    fn add(&mut self, outcome: &'static str) {
        let slot = match outcome {
            "created" => &mut self.created,
            "duplicate" => &mut self.duplicate,
            "resolved" => &mut self.resolved,
            "unrouted" => &mut self.unrouted,
            "refused" => &mut self.refused,
            "rate_limited" => &mut self.rate_limited,
            _ => &mut self.error,
        };
        *slot += 1;
    }

    fn counts(&self) -> [(&'static str, u64); 7] {
        [
            ("created", self.created),
            ("duplicate", self.duplicate),
            ("resolved", self.resolved),
            ("unrouted", self.unrouted),
            ("refused", self.refused),
            ("rate_limited", self.rate_limited),
            ("error", self.error),
        ]
    }

    fn summary(&self) -> String {
        self.counts()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// At most `per_minute` creations in any fixed minute-long window.
struct RateLimit {
    per_minute: u32,
    window: Mutex<(Instant, u32)>,
}

impl RateLimit {
    fn new(per_minute: u32) -> Self {
        RateLimit {
            per_minute,
            window: Mutex::new((Instant::now(), 0)),
        }
    }

    /// Takes one creation from the current window, if any is left.
    fn take(&self, now: Instant) -> bool {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if now.duration_since(w.0) >= Duration::from_secs(60) {
            *w = (now, 0);
        }
        if w.1 >= self.per_minute {
            return false;
        }
        w.1 += 1;
        true
    }

    /// A creation that did not create (a duplicate, a refusal) does not count.
    fn give_back(&self) {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        w.1 = w.1.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_allows_n_per_minute_and_refills() {
        let limit = RateLimit::new(3);
        let t0 = Instant::now();
        assert!((0..3).all(|_| limit.take(t0)));
        assert!(!limit.take(t0 + Duration::from_secs(59)));
        limit.give_back();
        assert!(limit.take(t0 + Duration::from_secs(59)));
        assert!(!limit.take(t0 + Duration::from_secs(59)));
        assert!(limit.take(t0 + Duration::from_secs(60)));
        let none = RateLimit::new(0);
        assert!(!none.take(t0));
    }

    #[test]
    fn every_outcome_is_a_metric_label() {
        let mut tally = Tally::default();
        for outcome in crate::metrics::INTAKE_OUTCOMES {
            tally.add(outcome);
        }
        let counted: Vec<&str> = tally.counts().iter().map(|(k, _)| *k).collect();
        assert_eq!(counted, crate::metrics::INTAKE_OUTCOMES);
        assert!(tally.counts().iter().all(|(_, v)| *v == 1), "{tally:?}");
    }
}

//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several replicas exactly one
//! reconciles and acts.
//!
//! Written here rather than taken from a crate: kube-runtime has none, and the part that matters
//! is small but safety-critical and specific to us. A follower takes the lease only after it has
//! seen the lease record unchanged for the whole lease duration, measured on its own clock (so
//! clock skew between nodes does not matter). The holder renews every retry period and, if no
//! renewal succeeds within the renew deadline (shorter than the lease duration), reports the lease
//! lost so the caller stops acting at once, before any follower can have taken over. That
//! coupling of renewal to stopping the controller is the reason for the module.

use std::time::Duration;

use clap::Args;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client, ResourceExt};
use tokio::time::{Instant, sleep, timeout_at};
use tracing::{debug, info, warn};

use crate::duration::parse as parse_duration;

/// Leader election settings.
#[derive(Args, Debug, Clone)]
pub struct LeaderArgs {
    /// Reconcile only while holding a Lease, so that of several replicas exactly one acts.
    #[arg(long = "leader-election", env = "ATO_LEADER_ELECTION")]
    pub enabled: bool,

    /// The Lease's name.
    #[arg(long, env = "ATO_LEASE_NAME", default_value = "alert-triage-operator")]
    pub lease_name: String,

    /// The Lease's namespace (default: $POD_NAMESPACE, else `default`).
    #[arg(long, env = "ATO_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// How long followers wait, after the lease was last renewed, before taking it over.
    #[arg(long, env = "ATO_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,

    /// How long the leader keeps acting without a successful renewal; shorter than the lease
    /// duration, so it has stopped before anyone else may take over.
    #[arg(long, env = "ATO_LEASE_RENEW_DEADLINE", default_value = "10s", value_parser = parse_duration)]
    pub lease_renew_deadline: Duration,

    /// How often the leader renews and followers look at the lease.
    #[arg(long, env = "ATO_LEASE_RETRY_PERIOD", default_value = "2s", value_parser = parse_duration)]
    pub lease_retry_period: Duration,

    /// This replica's name in the Lease and in the Events it records; must be unique per replica
    /// (default: host name and process id).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

impl LeaderArgs {
    pub fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME")
                .ok()
                .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "alert-triage-operator".into());
            format!("{host}-{}", std::process::id())
        })
    }
}

/// The namespace the operator runs in, from the downward API.
fn own_namespace() -> String {
    std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "default".into())
}

#[derive(Debug, thiserror::Error)]
pub enum Lost {
    #[error("the lease was not renewed within the renew deadline ({0:?})")]
    NotRenewed(Duration),
    #[error("the lease is held by {0:?} now")]
    TakenBy(String),
}

enum RenewError {
    Taken(String),
    Api(kube::Error),
}

pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    renew_deadline: Duration,
    retry_period: Duration,
    /// The lease as last written by us, while we hold it.
    held: Option<Lease>,
    /// When our last successful write was started.
    renewed_at: Instant,
    /// Another holder's record (resourceVersion) and when we first saw it as it is.
    observed: Option<(String, Instant)>,
}

impl Elector {
    pub fn new(client: Client, args: &LeaderArgs, identity: String) -> anyhow::Result<Elector> {
        anyhow::ensure!(
            args.lease_retry_period < args.lease_renew_deadline
                && args.lease_renew_deadline < args.lease_duration,
            "leader election needs retry period ({:?}) < renew deadline ({:?}) < lease duration ({:?})",
            args.lease_retry_period,
            args.lease_renew_deadline,
            args.lease_duration
        );
        anyhow::ensure!(
            args.lease_duration >= Duration::from_secs(1),
            "the lease duration is counted in whole seconds"
        );
        let namespace = args.lease_namespace.clone().unwrap_or_else(own_namespace);
        Ok(Elector {
            api: Api::namespaced(client, &namespace),
            name: args.lease_name.clone(),
            identity,
            duration: args.lease_duration,
            renew_deadline: args.lease_renew_deadline,
            retry_period: args.lease_retry_period,
            held: None,
            renewed_at: Instant::now(),
            observed: None,
        })
    }

    /// Waits until this replica holds the lease.
    pub async fn acquire(&mut self) {
        info!(lease = %self.name, identity = %self.identity, "waiting to lead");
        loop {
            match self.try_acquire().await {
                Ok(true) => {
                    info!(lease = %self.name, identity = %self.identity, "acquired the lease");
                    return;
                }
                Ok(false) => {}
                Err(e) => warn!(error = %e, "could not read or take the lease; retrying"),
            }
            sleep(self.retry_period).await;
        }
    }

    async fn try_acquire(&mut self) -> Result<bool, kube::Error> {
        let started = Instant::now();
        let written = match self.api.get_opt(&self.name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.taken(None, Timestamp::now())),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Some(mut current) => {
                let version = current.resource_version().unwrap_or_default();
                let unchanged_for = match &self.observed {
                    Some((seen, at)) if *seen == version => at.elapsed(),
                    _ => {
                        self.observed = Some((version, Instant::now()));
                        Duration::ZERO
                    }
                };
                let spec = current.spec.take().unwrap_or_default();
                if !may_take(&spec, &self.identity, unchanged_for, self.duration) {
                    debug!(holder = ?spec.holder_identity, "another replica leads");
                    return Ok(false);
                }
                current.spec = Some(self.taken(Some(&spec), Timestamp::now()));
                // The resourceVersion we read is a precondition: of two followers taking an
                // expired lease at once, one gets a conflict.
                self.api
                    .replace(&self.name, &PostParams::default(), &current)
                    .await
            }
        };
        match written {
            Ok(lease) => {
                self.held = Some(lease);
                self.renewed_at = started;
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The spec with us as the holder, from the previous holder's spec if any.
    fn taken(&self, previous: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        let same_holder =
            previous.and_then(|p| p.holder_identity.as_deref()) == Some(self.identity.as_str());
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs().try_into().unwrap_or(i32::MAX)),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if same_holder || previous.is_none() {
                transitions
            } else {
                transitions + 1
            }),
            ..LeaseSpec::default()
        }
    }

    /// Renews the lease every retry period for as long as that works. Returns only when the lease
    /// is lost: the caller must stop acting at once.
    pub async fn hold(&mut self) -> Lost {
        loop {
            sleep(self.retry_period).await;
            let deadline = self.renewed_at + self.renew_deadline;
            match timeout_at(deadline, self.renew_until_done()).await {
                Ok(Ok(started)) => self.renewed_at = started,
                Ok(Err(holder)) => return Lost::TakenBy(holder),
                Err(_) => return Lost::NotRenewed(self.renew_deadline),
            }
        }
    }

    async fn renew_until_done(&mut self) -> Result<Instant, String> {
        loop {
            let started = Instant::now();
            match self.renew().await {
                Ok(()) => return Ok(started),
                Err(RenewError::Taken(holder)) => return Err(holder),
                Err(RenewError::Api(e)) => {
                    warn!(error = %e, "could not renew the lease; retrying");
                    sleep(self.retry_period).await;
                }
            }
        }
    }

    async fn renew(&mut self) -> Result<(), RenewError> {
        // Only a held lease is renewed; without one there is nothing of ours to keep.
        let Some(mut lease) = self.held.clone() else {
            return Err(RenewError::Taken("nobody (no lease is held)".into()));
        };
        if let Some(spec) = lease.spec.as_mut() {
            spec.renew_time = Some(MicroTime(Timestamp::now()));
        }
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.held = Some(written);
                Ok(())
            }
            // Someone else wrote the lease (or deleted it): ours only if it still names us.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
                match self
                    .api
                    .get_opt(&self.name)
                    .await
                    .map_err(RenewError::Api)?
                {
                    Some(current) if holder(&current) == Some(self.identity.as_str()) => {
                        self.held = Some(current);
                        Err(RenewError::Api(kube::Error::Api(s)))
                    }
                    current => Err(RenewError::Taken(
                        current
                            .as_ref()
                            .and_then(holder)
                            .unwrap_or("nobody")
                            .to_string(),
                    )),
                }
            }
            Err(e) => Err(RenewError::Api(e)),
        }
    }

    /// Gives the lease up after the controller has stopped, so a follower takes over at once
    /// instead of after the lease duration.
    pub async fn release(&mut self) {
        let Some(mut lease) = self.held.take() else {
            return;
        };
        for _ in 0..2 {
            lease.spec = Some(LeaseSpec {
                holder_identity: None,
                lease_duration_seconds: Some(1),
                renew_time: Some(MicroTime(Timestamp::now())),
                ..lease.spec.clone().unwrap_or_default()
            });
            match self
                .api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => {
                    info!(lease = %self.name, "released the lease");
                    return;
                }
                // A renewal whose answer we never saw moved the version on: try the fresh one.
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    match self.api.get_opt(&self.name).await {
                        Ok(Some(current)) if holder(&current) == Some(self.identity.as_str()) => {
                            lease = current;
                        }
                        _ => return,
                    }
                }
                Err(e) => {
                    warn!(error = %e, "could not release the lease; it expires by itself");
                    return;
                }
            }
        }
    }
}

fn holder(lease: &Lease) -> Option<&str> {
    lease.spec.as_ref()?.holder_identity.as_deref()
}

/// Whether `me` may take a lease whose record has been seen unchanged for `unchanged_for`.
fn may_take(spec: &LeaseSpec, me: &str, unchanged_for: Duration, fallback: Duration) -> bool {
    match spec.holder_identity.as_deref() {
        None | Some("") => true,
        Some(holder) if holder == me => true,
        Some(_) => {
            let duration = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .filter(|s| *s > 0)
                .map_or(fallback, Duration::from_secs);
            unchanged_for >= duration
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(holder: &str, secs: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(secs),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_held_lease_is_taken_only_after_its_duration_unchanged() {
        let fallback = Duration::from_secs(15);
        let spec = held_by("a", 10);
        assert!(!may_take(&spec, "b", Duration::ZERO, fallback));
        assert!(!may_take(
            &spec,
            "b",
            Duration::from_millis(9_999),
            fallback
        ));
        assert!(may_take(&spec, "b", Duration::from_secs(10), fallback));
        // The holder's own duration counts, not ours.
        assert!(!may_take(
            &held_by("a", 60),
            "b",
            Duration::from_secs(30),
            fallback
        ));
    }

    #[test]
    fn a_free_or_own_lease_is_taken_at_once() {
        let fallback = Duration::from_secs(15);
        assert!(may_take(
            &LeaseSpec::default(),
            "b",
            Duration::ZERO,
            fallback
        ));
        assert!(may_take(&held_by("", 15), "b", Duration::ZERO, fallback));
        assert!(may_take(&held_by("b", 15), "b", Duration::ZERO, fallback));
    }

    #[test]
    fn timings_must_leave_the_leader_time_to_stop() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cmd {
            #[command(flatten)]
            leader: LeaderArgs,
        }
        let client = || {
            let config = kube::Config::new("http://127.0.0.1:1".parse().unwrap());
            Client::try_from(config).unwrap()
        };
        let args = |extra: &[&str]| {
            let mut argv = vec!["x"];
            argv.extend_from_slice(extra);
            Cmd::parse_from(argv).leader
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            assert!(Elector::new(client(), &args(&[]), "me".into()).is_ok());
            let bad = args(&["--lease-duration", "10s", "--lease-renew-deadline", "10s"]);
            assert!(Elector::new(client(), &bad, "me".into()).is_err());
            let bad = args(&["--lease-retry-period", "12s"]);
            assert!(Elector::new(client(), &bad, "me".into()).is_err());
        });
    }
}

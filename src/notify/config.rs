//! The notification configuration file: targets (with their secrets), routes, retry policy.
//! It is read once at start and refused whole when anything in it is wrong, with an error that
//! names the field but never echoes a URL or key.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;

use crate::crd::{AlertTriage, NotificationKind};
use crate::runbook::is_runbook_id;

/// Largest configuration file read.
const FILE_LIMIT: u64 = 1024 * 1024;
/// Shortest webhook signing key: HMAC-SHA256 keys shorter than the hash add no strength.
const MIN_SIGNING_KEY: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("reading the notification config {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("notification config: {0}")]
    Parse(String),
    #[error("notification config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct File {
    targets: Vec<TargetFile>,
    #[serde(default)]
    routes: Vec<RouteFile>,
    #[serde(default)]
    retry: RetryFile,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TargetFile {
    name: String,
    #[serde(default)]
    alertmanager: Option<AlertmanagerFile>,
    #[serde(default)]
    slack: Option<SlackFile>,
    #[serde(default)]
    pagerduty: Option<PagerDutyFile>,
    #[serde(default)]
    webhook: Option<WebhookFile>,
}

// Secrets never reach a log through Debug.
impl std::fmt::Debug for TargetFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TargetFile({})", self.name)
    }
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AlertmanagerFile {
    url: String,
    #[serde(default = "repost_interval")]
    repost_interval: String,
}

fn repost_interval() -> String {
    "1m".into()
}

/// Bounds of an Alertmanager target's `repostInterval`.
const REPOST_BOUNDS: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(3600));

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SlackFile {
    webhook_url: String,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PagerDutyFile {
    routing_key: String,
    #[serde(default = "pagerduty_url")]
    url: String,
}

fn pagerduty_url() -> String {
    "https://events.pagerduty.com/v2/enqueue".into()
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WebhookFile {
    url: String,
    signing_key: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RouteFile {
    targets: Vec<String>,
    #[serde(default)]
    runbooks: Vec<String>,
    #[serde(default)]
    categories: Vec<String>,
    #[serde(default)]
    actions: Vec<String>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    kinds: Vec<NotificationKind>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RetryFile {
    #[serde(default = "initial_backoff")]
    initial_backoff: String,
    #[serde(default = "max_backoff")]
    max_backoff: String,
    #[serde(default = "max_attempts")]
    max_attempts: u32,
}

fn initial_backoff() -> String {
    "5s".into()
}
fn max_backoff() -> String {
    "5m".into()
}
fn max_attempts() -> u32 {
    12
}

impl Default for RetryFile {
    fn default() -> Self {
        RetryFile {
            initial_backoff: initial_backoff(),
            max_backoff: max_backoff(),
            max_attempts: max_attempts(),
        }
    }
}

/// Where a target sends and with what secret.
#[derive(Clone, PartialEq)]
pub enum Sink {
    /// A firing alert is posted again every `repost` with `endsAt` five of them ahead, so a
    /// few lost posts do not end it but a stopped operator's alerts expire.
    Alertmanager {
        url: String,
        repost: Duration,
    },
    Slack {
        webhook_url: String,
    },
    PagerDuty {
        url: String,
        routing_key: String,
    },
    Webhook {
        url: String,
        signing_key: String,
    },
}

impl Sink {
    /// The target's type, for metrics and logs.
    pub fn type_name(&self) -> &'static str {
        match self {
            Sink::Alertmanager { .. } => "alertmanager",
            Sink::Slack { .. } => "slack",
            Sink::PagerDuty { .. } => "pagerduty",
            Sink::Webhook { .. } => "webhook",
        }
    }

    /// PagerDuty keeps one incident per triage (dedup key = the triage's UID): a resolve ends
    /// it whichever notification it was for.
    pub fn one_incident_per_triage(&self) -> bool {
        matches!(self, Sink::PagerDuty { .. })
    }
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.type_name())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub name: String,
    pub sink: Sink,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub targets: Vec<String>,
    pub runbooks: Vec<String>,
    pub categories: Vec<String>,
    pub actions: Vec<String>,
    pub namespaces: Vec<String>,
    pub kinds: Vec<NotificationKind>,
}

/// Exponential backoff between attempts, capped, and how many attempts before giving up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retry {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub max_attempts: u32,
}

impl Retry {
    /// The wait after `attempts` failed attempts: initial, doubled each time, at most the cap.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(30);
        self.initial_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub targets: Vec<Target>,
    pub routes: Vec<Route>,
    pub retry: Retry,
}

impl Config {
    /// Reads and checks the file at `path`; `runbooks` are the known runbooks' ids with the
    /// targets each names (`notify`), which must exist here.
    pub fn load(
        path: &std::path::Path,
        runbooks: &[(&str, &[String])],
    ) -> Result<Config, ConfigError> {
        let read = |reason: String| ConfigError::Read {
            path: path.display().to_string(),
            reason,
        };
        let len = std::fs::metadata(path)
            .map_err(|e| read(e.to_string()))?
            .len();
        if len > FILE_LIMIT {
            return Err(read(format!("larger than {FILE_LIMIT} bytes")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| read(e.to_string()))?;
        Config::parse(&text, runbooks)
    }

    pub fn parse(text: &str, runbooks: &[(&str, &[String])]) -> Result<Config, ConfigError> {
        // serde_yaml's messages quote the offending scalar, which may be a secret: keep only
        // where the error is and what kind it is.
        let file: File = serde_yaml::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(" at line {} column {}", l.line(), l.column()))
                .unwrap_or_default();
            ConfigError::Parse(format!("{}{at}", scrub(&e.to_string())))
        })?;
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if file.targets.is_empty() {
            return invalid("no targets".into());
        }
        let mut names = BTreeSet::new();
        let mut targets = Vec::new();
        for t in &file.targets {
            let name = &t.name;
            if name.is_empty()
                || name.len() > 63
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return invalid(format!(
                    "target name {name:?} must be 1-63 letters, digits, '-' or '_'"
                ));
            }
            if !names.insert(name.clone()) {
                return invalid(format!("target {name} is defined twice"));
            }
            let given = [
                t.alertmanager.is_some(),
                t.slack.is_some(),
                t.pagerduty.is_some(),
                t.webhook.is_some(),
            ]
            .iter()
            .filter(|x| **x)
            .count();
            if given != 1 {
                return invalid(format!(
                    "target {name} must have exactly one of alertmanager, slack, pagerduty, webhook"
                ));
            }
            let sink = if let Some(a) = &t.alertmanager {
                check_url(name, "alertmanager.url", &a.url)?;
                let repost = crate::duration::parse(&a.repost_interval)
                    .ok()
                    .filter(|d| (REPOST_BOUNDS.0..=REPOST_BOUNDS.1).contains(d));
                let Some(repost) = repost else {
                    return invalid(format!(
                        "target {name}: alertmanager.repostInterval must be a duration between 1s and 1h"
                    ));
                };
                Sink::Alertmanager {
                    url: format!("{}/api/v2/alerts", a.url.trim_end_matches('/')),
                    repost,
                }
            } else if let Some(s) = &t.slack {
                check_url(name, "slack.webhookUrl", &s.webhook_url)?;
                Sink::Slack {
                    webhook_url: s.webhook_url.clone(),
                }
            } else if let Some(p) = &t.pagerduty {
                check_url(name, "pagerduty.url", &p.url)?;
                if p.routing_key.trim().is_empty() {
                    return invalid(format!("target {name}: pagerduty.routingKey is empty"));
                }
                Sink::PagerDuty {
                    url: p.url.clone(),
                    routing_key: p.routing_key.clone(),
                }
            } else if let Some(w) = &t.webhook {
                check_url(name, "webhook.url", &w.url)?;
                if w.signing_key.len() < MIN_SIGNING_KEY {
                    return invalid(format!(
                        "target {name}: webhook.signingKey must be at least {MIN_SIGNING_KEY} bytes"
                    ));
                }
                Sink::Webhook {
                    url: w.url.clone(),
                    signing_key: w.signing_key.clone(),
                }
            } else {
                unreachable!("exactly one sink was checked above")
            };
            targets.push(Target {
                name: name.clone(),
                sink,
            });
        }
        let mut routes = Vec::new();
        for (i, r) in file.routes.iter().enumerate() {
            if r.targets.is_empty() {
                return invalid(format!("routes[{i}] names no targets"));
            }
            if let Some(unknown) = r.targets.iter().find(|t| !names.contains(*t)) {
                return invalid(format!("routes[{i}] names unknown target {unknown}"));
            }
            // Runbook objects come and go, so any well-formed id may be routed on.
            if let Some(bad) = r.runbooks.iter().find(|id| !is_runbook_id(id)) {
                return invalid(format!(
                    "routes[{i}] names runbook {bad:?}, which is not a runbook id (a DNS label)"
                ));
            }
            routes.push(Route {
                targets: r.targets.clone(),
                runbooks: r.runbooks.clone(),
                categories: r.categories.clone(),
                actions: r.actions.clone(),
                namespaces: r.namespaces.clone(),
                kinds: r.kinds.clone(),
            });
        }
        for (id, notify) in runbooks {
            if let Some(unknown) = notify.iter().find(|t| !names.contains(*t)) {
                return invalid(format!("runbook {id} names unknown target {unknown}"));
            }
        }
        let duration = |field: &str, s: &str| {
            crate::duration::parse(s)
                .map_err(|e| ConfigError::Invalid(format!("retry.{field}: {e}")))
        };
        let retry = Retry {
            initial_backoff: duration("initialBackoff", &file.retry.initial_backoff)?,
            max_backoff: duration("maxBackoff", &file.retry.max_backoff)?,
            max_attempts: file.retry.max_attempts,
        };
        if retry.initial_backoff.is_zero() || retry.initial_backoff > retry.max_backoff {
            return invalid(
                "retry.initialBackoff must be above 0 and at most retry.maxBackoff".into(),
            );
        }
        if !(1..=100).contains(&retry.max_attempts) {
            return invalid("retry.maxAttempts must be between 1 and 100".into());
        }
        Ok(Config {
            targets,
            routes,
            retry,
        })
    }

    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// The targets a notification of `kind` about `triage` goes to: the runbook's own
    /// (`runbook_notify`) and those of every route whose filters all match (an empty filter
    /// matches anything), each once, in configuration order.
    pub fn targets_for(
        &self,
        triage: &AlertTriage,
        kind: NotificationKind,
        runbook_notify: &[String],
    ) -> Vec<&Target> {
        let status = triage.status.as_ref();
        let runbook = status
            .and_then(|s| s.runbook.as_deref())
            .unwrap_or_default();
        let category = status
            .and_then(|s| s.classification.as_ref())
            .map(|c| c.category.as_str())
            .unwrap_or_default();
        let action = status
            .and_then(|s| s.recommendation.as_ref())
            .map(|r| r.action.as_str())
            .unwrap_or_default();
        let namespace = triage.metadata.namespace.as_deref().unwrap_or_default();
        let fits =
            |filter: &[String], value: &str| filter.is_empty() || filter.iter().any(|f| f == value);
        let mut wanted: BTreeSet<&str> = runbook_notify.iter().map(String::as_str).collect();
        for r in &self.routes {
            if fits(&r.runbooks, runbook)
                && fits(&r.categories, category)
                && fits(&r.actions, action)
                && fits(&r.namespaces, namespace)
                && (r.kinds.is_empty() || r.kinds.contains(&kind))
            {
                wanted.extend(r.targets.iter().map(String::as_str));
            }
        }
        self.targets
            .iter()
            .filter(|t| wanted.contains(t.name.as_str()))
            .collect()
    }
}

fn check_url(target: &str, field: &str, url: &str) -> Result<(), ConfigError> {
    let ok = (url.starts_with("https://") || url.starts_with("http://"))
        && url.parse::<http::Uri>().is_ok_and(|u| u.host().is_some());
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "target {target}: {field} must be an http:// or https:// URL with a host"
        )))
    }
}

/// Drops quoted values from a YAML error message (serde quotes values in double quotes and
/// field names in backticks).
fn scrub(message: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    for c in message.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                if quoted {
                    out.push_str("<value>");
                }
            }
            _ if quoted => {}
            _ => out.push(c),
        }
    }
    // serde_yaml appends the location itself; it is added back in a fixed form.
    match out.find(" at line ") {
        Some(i) => out[..i].to_string(),
        None => out,
    }
}

#[cfg(test)]
mod tests;

//! Prometheus metrics (OpenMetrics text on `/metrics`).
//!
//! Label values are `&'static str` from closed sets compiled into the binary (actions, results,
//! error categories), except runbook ids and their categories, which runbook objects name: their
//! number grows with the runbooks, never with pods or triages, so no pod or triage name can
//! become a label and blow up the series count.

use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::runbook::Catalog;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriageLabels {
    runbook: String,
    category: String,
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CategoryLabel {
    category: &'static str,
}

/// `alert_triage_actions_total` results of the approved pod deletion (`controller::remediate`),
/// each shown at zero from the start so that alerts on `increase()` see the first one.
const DELETE_POD_RESULTS: [&str; 9] = [
    "DryRun",
    "Evicted",
    "Blocked",
    "Gone",
    "Refused",
    "Withdrawn",
    "Succeeded",
    "Failed",
    "Unverified",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    target: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// Results of an Alertmanager notification at the intake, each shown at zero from the start.
pub const INTAKE_RESULTS: [&str; 5] = [
    "accepted",
    "unauthorized",
    "malformed",
    "too_large",
    "error",
];

/// What became of each alert at the intake, each shown at zero from the start.
pub const INTAKE_OUTCOMES: [&str; 7] = [
    "created",
    "duplicate",
    "resolved",
    "unrouted",
    "refused",
    "rate_limited",
    "error",
];

/// Results of a notification attempt (`notify`), each shown at zero from the start.
pub const NOTIFY_RESULTS: [&str; 5] = [
    "delivered",
    "failed",
    "undelivered",
    "reposted",
    "repost_failed",
];

/// `controller::Error::category()`, each shown at zero from the start.
pub const ERROR_CATEGORIES: [&str; 5] =
    ["kube", "conflict", "evidence", "ledger", "info_configmap"];

/// The operator's metrics; one per process, shared through `controller::Context`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabel, Counter>,
    reconcile_duration: Histogram,
    triages: Family<TriageLabels, Counter>,
    actions: Family<ActionLabels, Counter>,
    log_bytes: Counter,
    errors: Family<CategoryLabel, Counter>,
    leader: Gauge,
    intake_notifications: Family<ResultLabel, Counter>,
    intake_alerts: Family<OutcomeLabel, Counter>,
    notifications: Family<DeliveryLabels, Counter>,
}

impl Metrics {
    /// `state` reports gauges read from the watch cache at scrape time (proposals awaiting
    /// approval), so they are right after a restart or a change of leader without bookkeeping.
    pub fn new(state: impl Collector) -> Metrics {
        let mut registry = Registry::with_prefix("alert_triage");
        let reconciles = Family::<ResultLabel, Counter>::default();
        // Both results exist from the start, so an error rate reads 0 rather than nothing.
        for result in ["success", "error"] {
            let _ = reconciles.get_or_create(&ResultLabel { result });
        }
        registry.register(
            "reconciles",
            "Reconciles of AlertTriages, by result (success or error)",
            reconciles.clone(),
        );
        // 5ms .. ~80s: a settled object returns in milliseconds; a triage reading many logs
        // takes seconds.
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.5, 12));
        registry.register(
            "reconcile_duration_seconds",
            "How long one reconcile took",
            reconcile_duration.clone(),
        );
        let triages = Family::<TriageLabels, Counter>::default();
        for runbook in Catalog::builtin().runbooks() {
            for (category, action) in runbook.verdicts() {
                let _ = triages.get_or_create(&TriageLabels {
                    runbook: runbook.id().to_string(),
                    category: category.as_str().to_string(),
                    action: action.as_str(),
                });
            }
        }
        registry.register(
            "triages",
            "Verdicts recorded, by runbook, category and recommended action",
            triages.clone(),
        );
        let actions = Family::<ActionLabels, Counter>::default();
        for result in DELETE_POD_RESULTS {
            let _ = actions.get_or_create(&ActionLabels {
                action: "DeletePod",
                result,
            });
        }
        registry.register(
            "actions",
            "Actions taken or refused on approved proposals, by action and result",
            actions.clone(),
        );
        let log_bytes = Counter::default();
        registry.register(
            "log_bytes_scanned",
            "Pod log bytes read and scanned",
            log_bytes.clone(),
        );
        let errors = Family::<CategoryLabel, Counter>::default();
        for category in ERROR_CATEGORIES {
            let _ = errors.get_or_create(&CategoryLabel { category });
        }
        registry.register(
            "errors",
            "Failed reconciles, by error category",
            errors.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader lease (or runs without leader election)",
            leader.clone(),
        );
        let intake_notifications = Family::<ResultLabel, Counter>::default();
        for result in INTAKE_RESULTS {
            let _ = intake_notifications.get_or_create(&ResultLabel { result });
        }
        registry.register(
            "intake_notifications",
            "Alertmanager notifications received by the intake, by result",
            intake_notifications.clone(),
        );
        let intake_alerts = Family::<OutcomeLabel, Counter>::default();
        for outcome in INTAKE_OUTCOMES {
            let _ = intake_alerts.get_or_create(&OutcomeLabel { outcome });
        }
        registry.register(
            "intake_alerts",
            "Alerts received by the intake, by what became of them",
            intake_alerts.clone(),
        );
        // Target names come from the operator's own configuration, read once at start: a fixed
        // set, like the closed sets above.
        let notifications = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "notifications",
            "Notification attempts by configured target and result",
            notifications.clone(),
        );
        registry.register_collector(Box::new(state));
        Metrics {
            registry,
            reconciles,
            reconcile_duration,
            triages,
            actions,
            log_bytes,
            errors,
            leader,
            intake_notifications,
            intake_alerts,
            notifications,
        }
    }

    /// One reconcile finished; `error` is the failed reconcile's `Error::category()`.
    pub fn reconciled(&self, took: Duration, error: Option<&'static str>) {
        self.reconcile_duration.observe(took.as_secs_f64());
        let result = match error {
            None => "success",
            Some(category) => {
                self.errors.get_or_create(&CategoryLabel { category }).inc();
                "error"
            }
        };
        self.reconciles.get_or_create(&ResultLabel { result }).inc();
    }

    /// A verdict was recorded: runbook id, `Category::as_str()`, `Action::as_str()`. Runbook
    /// ids and categories come from runbooks, so their number is bounded by the runbooks'.
    pub fn triaged(&self, runbook: &str, category: &str, action: &'static str) {
        self.triages
            .get_or_create(&TriageLabels {
                runbook: runbook.to_string(),
                category: category.to_string(),
                action,
            })
            .inc();
    }

    /// Log bytes read while gathering evidence.
    pub fn log_bytes(&self, bytes: u64) {
        self.log_bytes.inc_by(bytes);
    }

    /// An approved action ended: e.g. `("EvictPod", "Evicted" | "Blocked" | "Refused" | ...)`.
    pub fn action(&self, action: &'static str, result: &'static str) {
        self.actions
            .get_or_create(&ActionLabels { action, result })
            .inc();
    }

    /// A notification reached the intake: one of [`INTAKE_RESULTS`].
    pub fn intake_notification(&self, result: &'static str) {
        self.intake_notifications
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// `count` alerts of a notification ended as `outcome`, one of [`INTAKE_OUTCOMES`].
    pub fn intake_alerts(&self, outcome: &'static str, count: u64) {
        self.intake_alerts
            .get_or_create(&OutcomeLabel { outcome })
            .inc_by(count);
    }

    /// Shows every result of each configured notification target at zero.
    pub fn notify_targets(&self, targets: impl IntoIterator<Item = &'static str>) {
        for target in targets {
            for result in NOTIFY_RESULTS {
                let _ = self
                    .notifications
                    .get_or_create(&DeliveryLabels { target, result });
            }
        }
    }

    /// One notification attempt to `target` ended as `result`, one of [`NOTIFY_RESULTS`].
    pub fn notification(&self, target: &'static str, result: &'static str) {
        self.notifications
            .get_or_create(&DeliveryLabels { target, result })
            .inc();
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Everything in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
    use prometheus_client::metrics::gauge::ConstGauge;

    use super::*;

    #[derive(Debug)]
    struct Fixed;

    impl Collector for Fixed {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let g = ConstGauge::new(2i64);
            g.encode(encoder.encode_descriptor("fixed", "a test gauge", None, g.metric_type())?)
        }
    }

    #[test]
    fn every_metric_is_exposed_with_its_labels() {
        let m = Metrics::new(Fixed);
        m.reconciled(Duration::from_millis(20), None);
        m.reconciled(Duration::from_millis(20), Some("kube"));
        m.triaged("metering-token-exchange", "RateLimited", "Escalate");
        m.log_bytes(1000);
        m.log_bytes(24);
        m.action("EvictPod", "Evicted");
        m.set_leader(true);
        let text = m.encode();
        for line in [
            r#"alert_triage_reconciles_total{result="success"} 1"#,
            r#"alert_triage_reconciles_total{result="error"} 1"#,
            "alert_triage_reconcile_duration_seconds_count 2",
            r#"alert_triage_triages_total{runbook="metering-token-exchange",category="RateLimited",action="Escalate"} 1"#,
            "alert_triage_log_bytes_scanned_total 1024",
            r#"alert_triage_actions_total{action="EvictPod",result="Evicted"} 1"#,
            r#"alert_triage_errors_total{category="kube"} 1"#,
            "alert_triage_leader 1",
            "alert_triage_fixed 2",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn every_known_label_value_is_at_zero_before_anything_happens() {
        let text = Metrics::new(Fixed).encode();
        for line in [
            r#"alert_triage_reconciles_total{result="error"} 0"#,
            r#"alert_triage_errors_total{category="kube"} 0"#,
            r#"alert_triage_errors_total{category="info_configmap"} 0"#,
            r#"alert_triage_actions_total{action="DeletePod",result="Failed"} 0"#,
            r#"alert_triage_actions_total{action="DeletePod",result="Unverified"} 0"#,
            r#"alert_triage_triages_total{runbook="metering-token-exchange",category="NetworkFailure",action="DeletePod"} 0"#,
            r#"alert_triage_triages_total{runbook="metering-token-exchange",category="NetworkFailure",action="Escalate"} 0"#,
            r#"alert_triage_triages_total{runbook="orchestrator-callback-errors",category="ClientIdNotAuthorized",action="RecordApiKeyRotation"} 0"#,
            r#"alert_triage_triages_total{runbook="orchestrator-callback-errors",category="NoEvidence",action="None"} 0"#,
            "alert_triage_reconcile_duration_seconds_count 0",
            "alert_triage_log_bytes_scanned_total 0",
            "alert_triage_leader 0",
            r#"alert_triage_intake_notifications_total{result="unauthorized"} 0"#,
            r#"alert_triage_intake_alerts_total{outcome="rate_limited"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        // Only verdicts a runbook can reach: the orchestrator runbook never deletes a pod.
        assert!(
            !text.contains(r#"runbook="orchestrator-callback-errors",category="NetworkFailure""#),
            "{text}"
        );
    }
}

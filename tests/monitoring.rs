//! The chart's monitoring assets: the PrometheusRule's expressions pass `promtool check rules`
//! and its alerts behave as `tests/fixtures/promtool/rules-test.yaml` says (`promtool test
//! rules`), the Grafana dashboard is a ConfigMap the sidecar finds, and every metric (and label
//! value) the rules and the dashboard use is on /metrics of an operator that has done nothing.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::helm::{apply, documents, render};
use common::operator::Operator;
use common::{TestNs, cluster, show};
use regex::Regex;
use serde_json::Value;

/// The release and namespace the promtool fixture's series are labelled for.
const RELEASE: &str = "ato";
const NAMESPACE: &str = "alert-triage";

fn monitored() -> Vec<Value> {
    documents(&render(
        RELEASE,
        NAMESPACE,
        &[
            "metrics.prometheusRule.enabled=true".into(),
            "metrics.dashboard.enabled=true".into(),
        ],
    ))
}

fn rule(docs: &[Value]) -> &Value {
    docs.iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("a PrometheusRule")
}

fn dashboard(docs: &[Value]) -> (&Value, Value) {
    let cm = docs
        .iter()
        .find(|d| {
            d["kind"] == "ConfigMap"
                && d["metadata"]["name"] == format!("{RELEASE}-alert-triage-operator-dashboard")
        })
        .expect("the dashboard ConfigMap");
    let json = cm["data"]["alert-triage-operator.json"]
        .as_str()
        .expect("the dashboard JSON");
    (
        cm,
        serde_json::from_str(json).expect("the dashboard is JSON"),
    )
}

/// promtool from scripts/tools.sh (beside kubectl), or `ATO_TEST_PROMTOOL`.
fn promtool() -> PathBuf {
    std::env::var_os("ATO_TEST_PROMTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| cluster().kubectl.with_file_name("promtool"))
}

fn run_promtool(args: &[&str], dir: &std::path::Path) {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running {} (scripts/tools.sh promtool builds it): {e}",
                promtool().display()
            )
        });
    assert!(
        out.status.success(),
        "promtool {} failed:\n{}",
        args.join(" "),
        show(&out)
    );
}

#[test]
fn the_alerting_rules_pass_promtool() {
    let docs = monitored();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_yaml::to_string(&rule(&docs)["spec"]).unwrap(),
    )
    .unwrap();
    let tests = cluster()
        .repo
        .join("tests/fixtures/promtool/rules-test.yaml");
    std::fs::copy(&tests, dir.path().join("rules-test.yaml")).unwrap();
    run_promtool(&["check", "rules", "rules.yaml"], dir.path());
    run_promtool(&["test", "rules", "rules-test.yaml"], dir.path());
    // Every alert has a unit test.
    let fixture = std::fs::read_to_string(&tests).unwrap();
    for r in rule(&docs)["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
    {
        let alert = r["alert"].as_str().unwrap();
        assert!(
            fixture.contains(&format!("alertname: {alert}\n")),
            "no test for {alert}"
        );
    }
}

#[test]
fn each_monitoring_asset_has_its_toggle() {
    let plain = documents(&render(RELEASE, NAMESPACE, &[]));
    let kinds: BTreeSet<&str> = plain.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert!(!kinds.contains("PrometheusRule"), "{kinds:?}");
    assert!(
        !plain.iter().any(|d| d["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.ends_with("-dashboard"))),
        "a dashboard without metrics.dashboard.enabled"
    );
    let docs = monitored();
    let (cm, json) = dashboard(&docs);
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(json["uid"], "alert-triage-operator");
    let relabelled = documents(&render(
        RELEASE,
        NAMESPACE,
        &[
            "metrics.dashboard.enabled=true".into(),
            "metrics.dashboard.labels.team=sre".into(),
            "metrics.prometheusRule.enabled=true".into(),
            "metrics.prometheusRule.labels.release=kube-prometheus".into(),
        ],
    ));
    assert_eq!(
        dashboard(&relabelled).0["metadata"]["labels"]["team"],
        "sre"
    );
    assert_eq!(
        rule(&relabelled)["metadata"]["labels"]["release"],
        "kube-prometheus"
    );
}

/// Every PromQL expression of the rules and the dashboard.
fn expressions(docs: &[Value]) -> Vec<String> {
    let mut exprs: Vec<String> = rule(docs)["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .map(|r| r["expr"].as_str().unwrap().to_string())
        .collect();
    let (_, json) = dashboard(docs);
    for panel in json["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    for var in json["templating"]["list"].as_array().unwrap() {
        if let Some(q) = var["query"]["query"].as_str() {
            exprs.push(q.to_string());
        }
    }
    exprs
}

#[tokio::test]
async fn every_metric_the_rules_and_the_dashboard_use_is_there_from_the_start() {
    let docs = monitored();
    let ns = TestNs::new("metrics-at-start").await;
    // The dashboard's ConfigMap is a valid object for the API server.
    let mut cm = dashboard(&docs).0.clone();
    cm["metadata"]["namespace"] = ns.name.clone().into();
    let out = apply(&[&cm], &["--dry-run=server"]);
    assert!(out.status.success(), "{}", show(&out));

    let op = Operator::start(&ns, &[]);
    op.wait_ready(Duration::from_secs(60)).await;
    let (status, metrics) = op.get("/metrics").await;
    assert_eq!(status, 200);
    let samples: Vec<&str> = metrics.lines().filter(|l| !l.starts_with('#')).collect();

    let selector = Regex::new(r"\b(alert_triage_[a-z_]+)(\{([^}]*)\})?").unwrap();
    let matcher = Regex::new(r#"([a-z_]+)\s*=\s*"([^"]*)""#).unwrap();
    let mut checked = BTreeSet::new();
    for expr in expressions(&docs) {
        for found in selector.captures_iter(&expr) {
            let name = &found[1];
            // Literal label values the expression relies on (the scrape adds job and namespace).
            let wanted: Vec<String> = found
                .get(3)
                .map(|m| {
                    matcher
                        .captures_iter(m.as_str())
                        .filter(|c| &c[1] != "job" && &c[1] != "namespace")
                        .map(|c| format!("{}=\"{}\"", &c[1], &c[2]))
                        .collect()
                })
                .unwrap_or_default();
            assert!(
                samples.iter().any(|l| {
                    let (series, _) = l.split_once(' ').unwrap_or((l, ""));
                    (series == name || series.starts_with(&format!("{name}{{")))
                        && wanted.iter().all(|w| series.contains(w.as_str()))
                }),
                "{name} with {wanted:?} (used by {expr:?}) is not on /metrics at start:\n{metrics}"
            );
            checked.insert(name.to_string());
        }
    }
    // The expressions reach every kind of metric the operator has.
    for name in [
        "alert_triage_leader",
        "alert_triage_proposals_awaiting_approval",
        "alert_triage_actions_total",
        "alert_triage_errors_total",
        "alert_triage_reconciles_total",
        "alert_triage_reconcile_duration_seconds_bucket",
        "alert_triage_triages_total",
        "alert_triage_log_bytes_scanned_total",
    ] {
        assert!(checked.contains(name), "nothing uses {name}: {checked:?}");
    }
}

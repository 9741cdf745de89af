use super::*;
use crate::crd::{Action, Category};

const SECRET: &str = "hunter2-0123456789abcdef0123456789abcdef";

fn runbooks() -> Vec<(&'static str, Vec<String>)> {
    vec![
        ("metering-token-exchange", vec![]),
        ("orchestrator-callback-errors", vec!["am".into()]),
    ]
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    let rb = runbooks();
    let rb: Vec<(&str, &[String])> = rb.iter().map(|(id, n)| (*id, &n[..])).collect();
    Config::parse(text, &rb)
}

fn full() -> String {
    format!(
        r#"
targets:
  - name: am
    alertmanager: {{url: "http://am.example:9093/"}}
  - name: pd
    pagerduty: {{routingKey: "{SECRET}"}}
  - name: chat
    slack: {{webhookUrl: "https://hooks.slack.example/services/{SECRET}"}}
  - name: audit
    webhook: {{url: "https://audit.example/hook", signingKey: "{SECRET}"}}
routes:
  - targets: [pd]
    runbooks: [metering-token-exchange]
    categories: [RateLimited]
  - targets: [chat]
    namespaces: [prod]
    kinds: [ApprovalRequest]
retry: {{initialBackoff: 1s, maxBackoff: 10s, maxAttempts: 4}}
"#
    )
}

#[test]
fn a_full_config_reads() {
    let c = parse(&full()).unwrap();
    assert_eq!(c.targets.len(), 4);
    assert_eq!(
        c.target("am").unwrap().sink,
        Sink::Alertmanager {
            url: "http://am.example:9093/api/v2/alerts".into(),
            repost: Duration::from_secs(60),
        }
    );
    assert_eq!(
        c.target("pd").unwrap().sink,
        Sink::PagerDuty {
            url: "https://events.pagerduty.com/v2/enqueue".into(),
            routing_key: SECRET.into()
        }
    );
    assert_eq!(c.retry.max_attempts, 4);
    assert_eq!(c.retry.backoff(1), Duration::from_secs(1));
    assert_eq!(c.retry.backoff(3), Duration::from_secs(4));
    assert_eq!(c.retry.backoff(9), Duration::from_secs(10), "capped");
    assert_eq!(c.retry.backoff(u32::MAX), Duration::from_secs(10));
}

#[test]
fn invalid_configs_are_refused_with_the_exact_error_and_no_secret() {
    let base = full();
    let cases: Vec<(String, &str)> = vec![
        ("targets: []".into(), "notification config: no targets"),
        (
            base.replace("name: pd", "name: am"),
            "notification config: target am is defined twice",
        ),
        (
            base.replace("name: chat", "name: \"bad name\""),
            "notification config: target name \"bad name\" must be 1-63 letters, digits, '-' or '_'",
        ),
        (
            base.replace("http://am.example:9093/", "ftp://am.example"),
            "notification config: target am: alertmanager.url must be an http:// or https:// URL with a host",
        ),
        (
            base.replace(&format!("signingKey: \"{SECRET}\""), "signingKey: short"),
            "notification config: target audit: webhook.signingKey must be at least 32 bytes",
        ),
        (
            base.replace(&format!("routingKey: \"{SECRET}\""), "routingKey: \" \""),
            "notification config: target pd: pagerduty.routingKey is empty",
        ),
        (
            base.replace("targets: [pd]", "targets: [nope]"),
            "notification config: routes[0] names unknown target nope",
        ),
        (
            base.replace("targets: [pd]", "targets: []"),
            "notification config: routes[0] names no targets",
        ),
        (
            base.replace("runbooks: [metering-token-exchange]", "runbooks: [Not_An_Id]"),
            "notification config: routes[0] names runbook \"Not_An_Id\", which is not a runbook id (a DNS label)",
        ),
        (
            base.replace("name: am", "name: amx"),
            "notification config: runbook orchestrator-callback-errors names unknown target am",
        ),
        (
            base.replace("9093/\"}", "9093/\", repostInterval: 0s}"),
            "notification config: target am: alertmanager.repostInterval must be a duration between 1s and 1h",
        ),
        (
            base.replace("9093/\"}", "9093/\", repostInterval: soon}"),
            "notification config: target am: alertmanager.repostInterval must be a duration between 1s and 1h",
        ),
        (
            base.replace("maxAttempts: 4", "maxAttempts: 0"),
            "notification config: retry.maxAttempts must be between 1 and 100",
        ),
        (
            base.replace("initialBackoff: 1s", "initialBackoff: 1m"),
            "notification config: retry.initialBackoff must be above 0 and at most retry.maxBackoff",
        ),
        (
            base.replace(
                "alertmanager: {url: \"http://am.example:9093/\"}",
                &format!("alertmanager: {{url: \"http://am.example\"}}\n    webhook: {{url: \"https://x.example\", signingKey: \"{SECRET}\"}}"),
            ),
            "notification config: target am must have exactly one of alertmanager, slack, pagerduty, webhook",
        ),
    ];
    for (text, want) in cases {
        let got = parse(&text).expect_err(want).to_string();
        assert_eq!(got, want);
        assert!(!got.contains("hunter2"), "{got}");
    }
}

#[test]
fn yaml_errors_name_the_place_not_the_value() {
    let text = full().replace("maxAttempts: 4", &format!("maxAttempts: \"{SECRET}\""));
    let got = parse(&text).unwrap_err().to_string();
    assert!(!got.contains("hunter2"), "{got}");
    assert!(
        got.contains("retry.maxAttempts") && got.contains("line 18"),
        "{got}"
    );
    let typo = full().replace("routingKey:", "routingkey:");
    let got = parse(&typo).unwrap_err().to_string();
    assert!(got.contains("unknown field `routingkey`"), "{got}");
    assert!(!got.contains("hunter2"), "{got}");
}

#[test]
fn debug_output_never_shows_a_secret() {
    let c = parse(&full()).unwrap();
    let shown = format!("{c:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(!shown.contains("example"), "{shown}");
}

fn triage(namespace: &str, runbook: &str, category: Category, action: Action) -> AlertTriage {
    let mut t = AlertTriage::new("t", crate::crd::AlertTriageSpec::default());
    t.metadata.namespace = Some(namespace.into());
    t.status = Some(crate::crd::AlertTriageStatus {
        runbook: Some(runbook.into()),
        classification: Some(crate::crd::Classification {
            category,
            http_status: None,
            scope: crate::crd::Scope::AllPods,
            reason: String::new(),
        }),
        recommendation: Some(crate::crd::Recommendation {
            action,
            team: None,
            reason: String::new(),
            next_steps: vec![],
        }),
        ..Default::default()
    });
    t
}

#[test]
fn routes_pick_targets_by_every_filter_and_runbooks_add_their_own() {
    let c = parse(&full()).unwrap();
    let names = |t: &AlertTriage, kind: NotificationKind, own: &[String]| -> Vec<String> {
        c.targets_for(t, kind, own)
            .into_iter()
            .map(|t| t.name.clone())
            .collect()
    };
    use NotificationKind::{ApprovalRequest, Escalation};
    let metering = "metering-token-exchange";
    let table: Vec<(AlertTriage, NotificationKind, Vec<String>, Vec<&str>)> = vec![
        (
            triage(
                "dev",
                metering,
                Category::new("RateLimited").unwrap(),
                Action::Escalate,
            ),
            Escalation,
            vec![],
            vec!["pd"],
        ),
        (
            triage(
                "dev",
                metering,
                Category::new("AuthFailure").unwrap(),
                Action::Escalate,
            ),
            Escalation,
            vec![],
            vec![],
        ),
        (
            triage(
                "dev",
                "orchestrator-callback-errors",
                Category::new("RateLimited").unwrap(),
                Action::Escalate,
            ),
            Escalation,
            vec![],
            vec![],
        ),
        (
            triage(
                "prod",
                metering,
                Category::new("NetworkFailure").unwrap(),
                Action::DeletePod,
            ),
            ApprovalRequest,
            vec![],
            vec!["chat"],
        ),
        (
            triage(
                "prod",
                metering,
                Category::new("NetworkFailure").unwrap(),
                Action::DeletePod,
            ),
            Escalation,
            vec![],
            vec![],
        ),
        (
            triage(
                "prod",
                metering,
                Category::new("RateLimited").unwrap(),
                Action::DeletePod,
            ),
            ApprovalRequest,
            vec![],
            vec!["pd", "chat"],
        ),
        (
            triage(
                "dev",
                metering,
                Category::new("AuthFailure").unwrap(),
                Action::Escalate,
            ),
            Escalation,
            vec!["am".into()],
            vec!["am"],
        ),
        (
            triage(
                "dev",
                metering,
                Category::new("RateLimited").unwrap(),
                Action::Escalate,
            ),
            Escalation,
            vec!["am".into(), "pd".into()],
            vec!["am", "pd"],
        ),
    ];
    for (i, (t, kind, own, want)) in table.iter().enumerate() {
        assert_eq!(names(t, *kind, own), *want, "row {i}");
    }
}

#[test]
fn the_documented_example_is_a_valid_config() {
    let doc = include_str!("../../../docs/notifications.md");
    let example = doc
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/notifications.md opens with a yaml example");
    let rb = [("metering-token-exchange", &[][..])];
    let c = Config::parse(example, &rb).unwrap();
    assert_eq!(c.targets.len(), 4);
    assert_eq!(c.routes.len(), 2);
    assert_eq!(
        c.retry,
        Retry {
            initial_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(300),
            max_attempts: 12
        },
        "the documented defaults"
    );
    let minimal = "targets: [{name: a, webhook: {url: \"https://x.example\", signingKey: \"0123456789abcdef0123456789abcdef\"}}]";
    assert_eq!(Config::parse(minimal, &rb).unwrap().retry, c.retry);
}

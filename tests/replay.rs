//! Table-driven runbook tests: every folder under `tests/fixtures/replay/` is replayed through
//! `replay::run` (the same scanner and engine as the controller) with `--expect expect.yaml`,
//! as a runbook author's CI would, and the report is checked further against `checks.yaml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use alert_triage_operator::replay::{self, OutputFormat, ReplayArgs};
use serde::Deserialize;
use serde_json::Value;

/// What a scenario expects. `phase`..`deleteCandidate` are always checked (absent means the
/// verdict must not have it); the rest only when given.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Expect {
    phase: String,
    category: String,
    scope: String,
    action: String,
    #[serde(default)]
    http_status: Option<u16>,
    #[serde(default)]
    team: Option<String>,
    #[serde(default)]
    delete_candidate: Option<String>,
    #[serde(default)]
    controller_ids: Option<Vec<String>>,
    #[serde(default)]
    related_services: Option<Vec<String>>,
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    resource_group: Option<String>,
    #[serde(default)]
    source_contains: Option<String>,
    #[serde(default)]
    intermittent: Option<bool>,
    #[serde(default)]
    first_failure: Option<String>,
    #[serde(default)]
    notification: Option<bool>,
    #[serde(default)]
    classification_contains: Option<String>,
    #[serde(default)]
    pod_matches: Option<BTreeMap<String, BTreeMap<String, u64>>>,
    #[serde(default)]
    pod_lines: BTreeMap<String, u64>,
    #[serde(default)]
    steps_contain: Vec<String>,
    #[serde(default)]
    rotation_steps_contain: Vec<String>,
    #[serde(default)]
    follow_up_contain: Vec<String>,
    #[serde(default)]
    samples_contain: Vec<String>,
    #[serde(default)]
    max_sample_chars: Option<usize>,
    /// Strings (planted secrets) that must appear nowhere in the JSON or table output.
    #[serde(default)]
    absent: Vec<String>,
    /// Replayed with `--container`.
    #[serde(default)]
    container: Option<String>,
    #[serde(default)]
    recommendation_contains: Option<String>,
    /// Failure records per category across all pods.
    #[serde(default)]
    matches: Option<BTreeMap<String, u64>>,
    #[serde(default)]
    successes_between_failures: Option<u64>,
    #[serde(default)]
    last_success_before: Option<String>,
    #[serde(default)]
    first_success_after: Option<String>,
    #[serde(default)]
    succeeding_pods: Option<Vec<String>>,
    /// `since` and `until` of the window read.
    #[serde(default)]
    window: Option<BTreeMap<String, String>>,
    #[serde(default)]
    containers_read: Option<Vec<String>>,
    #[serde(default)]
    containers_skipped: Option<Vec<String>>,
    #[serde(default)]
    previous_container_failures: BTreeMap<String, u64>,
}

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/replay");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("fixtures folder")
        .map(|e| e.expect("fixture entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn replay(dir: &Path, container: Option<&str>, output: OutputFormat) -> String {
    let args = ReplayArgs {
        logs: dir.to_path_buf(),
        alert: dir.join("alert.yaml"),
        runbook: None,
        runbook_file: None,
        container: container.map(str::to_string),
        output,
        expect: Some(dir.join("expect.yaml")),
    };
    let mut out = Vec::new();
    replay::run(&args, &mut out)
        .unwrap_or_else(|e| panic!("{}: replay failed: {e:#}", dir.display()));
    String::from_utf8(out).expect("replay writes UTF-8")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// A JSON object of counts, e.g. matches per category.
fn counts(v: &Value) -> BTreeMap<String, u64> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

fn contains_all(scenario: &str, what: &str, haystack: &[String], needles: &[String]) {
    for needle in needles {
        assert!(
            haystack.iter().any(|h| h.contains(needle.as_str())),
            "{scenario}: no {what} contains {needle:?}; got {haystack:#?}"
        );
    }
}

fn check(dir: &Path) {
    let scenario = dir.file_name().unwrap().to_string_lossy().into_owned();
    // `replay --expect` reads expect.yaml; this test reads both files as one.
    let mut merged = serde_yaml::Mapping::new();
    for file in ["expect.yaml", "checks.yaml"] {
        let Ok(text) = std::fs::read_to_string(dir.join(file)) else {
            continue;
        };
        let part: serde_yaml::Mapping =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{scenario}: {file}: {e}"));
        for (k, v) in part {
            assert!(
                merged.insert(k.clone(), v).is_none(),
                "{scenario}: {k:?} twice"
            );
        }
    }
    let expect: Expect = serde_yaml::from_value(serde_yaml::Value::Mapping(merged))
        .unwrap_or_else(|e| panic!("{scenario}: expect.yaml + checks.yaml: {e}"));
    let container = expect.container.as_deref();
    let json = replay(dir, container, OutputFormat::Json);
    let table = replay(dir, container, OutputFormat::Table);
    let report: Value = serde_json::from_str(&json).expect("replay prints JSON");
    let v = &report["verdict"];
    let c = &v["classification"];
    let r = &v["recommendation"];
    let s = scenario.as_str();

    assert_eq!(v["phase"], expect.phase.as_str(), "{s}: phase\n{json}");
    assert_eq!(
        c["category"],
        expect.category.as_str(),
        "{s}: category\n{json}"
    );
    assert_eq!(c["scope"], expect.scope.as_str(), "{s}: scope\n{json}");
    assert_eq!(r["action"], expect.action.as_str(), "{s}: action\n{json}");
    assert_eq!(
        c["httpStatus"].as_u64(),
        expect.http_status.map(u64::from),
        "{s}: httpStatus"
    );
    assert_eq!(r["team"].as_str(), expect.team.as_deref(), "{s}: team");
    assert_eq!(
        v["deleteCandidate"].as_str(),
        expect.delete_candidate.as_deref(),
        "{s}: deleteCandidate"
    );
    assert!(
        !c["reason"].as_str().unwrap_or_default().is_empty(),
        "{s}: classification reason"
    );
    assert!(
        !r["reason"].as_str().unwrap_or_default().is_empty(),
        "{s}: recommendation reason"
    );
    // Every verdict's steps are filled: no placeholder of the template syntax survives.
    for step in strings(&r["nextSteps"]) {
        assert!(
            !step.contains("{labels.") && !step.contains("{count}"),
            "{s}: unfilled step {step}"
        );
    }

    let rotation = &v["apiKeyRotation"];
    assert_eq!(
        rotation.is_object(),
        expect.action == "RecordApiKeyRotation",
        "{s}: apiKeyRotation present exactly for RecordApiKeyRotation"
    );
    if let Some(ids) = &expect.controller_ids {
        let mut seen: Vec<String> = report["pods"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|p| strings(&p["controllerIds"]))
            .collect();
        seen.sort();
        seen.dedup();
        assert_eq!(&seen, ids, "{s}: controller IDs in the pods' findings");
        if rotation.is_object() {
            assert_eq!(
                &strings(&rotation["controllerIds"]),
                ids,
                "{s}: apiKeyRotation.controllerIds"
            );
        }
    }
    if expect.account.is_some() || expect.source_contains.is_some() {
        assert_eq!(
            rotation["account"].as_str(),
            expect.account.as_deref(),
            "{s}: account"
        );
        assert_eq!(
            rotation["resourceGroup"].as_str(),
            expect.resource_group.as_deref(),
            "{s}: resourceGroup"
        );
    }
    if let Some(want) = &expect.source_contains {
        let source = rotation["source"].as_str().unwrap_or_default();
        assert!(
            source.contains(want.as_str()),
            "{s}: source {source:?} lacks {want:?}"
        );
    }
    if let Some(names) = &expect.related_services {
        let got: Vec<String> = v["relatedServices"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| r["service"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(&got, names, "{s}: relatedServices");
    }
    if let Some(want) = expect.intermittent {
        assert_eq!(
            v["intermittency"]["intermittent"].as_bool(),
            Some(want),
            "{s}: intermittent"
        );
    }
    if let Some(want) = &expect.first_failure {
        assert_eq!(
            v["intermittency"]["firstFailure"].as_str(),
            Some(want.as_str()),
            "{s}: firstFailure"
        );
    }
    if let Some(want) = expect.notification {
        assert_eq!(v["notification"].is_object(), want, "{s}: notification");
        if want {
            let body = v["notification"]["body"].as_str().unwrap_or_default();
            assert!(
                body.contains("INVESTIGATING") && body.contains(" UTC - "),
                "{s}: notice status line"
            );
        }
    }
    if let Some(want) = &expect.classification_contains {
        let reason = c["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains(want.as_str()),
            "{s}: classification reason {reason:?}"
        );
    }

    if let Some(want) = &expect.recommendation_contains {
        let reason = r["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains(want.as_str()),
            "{s}: recommendation reason {reason:?}"
        );
    }
    let i = &v["intermittency"];
    if let Some(want) = expect.successes_between_failures {
        assert_eq!(
            i["successesBetweenFailures"].as_u64().unwrap_or(0),
            want,
            "{s}: successesBetweenFailures\n{i:#}"
        );
    }
    for (key, want) in [
        ("lastSuccessBefore", &expect.last_success_before),
        ("firstSuccessAfter", &expect.first_success_after),
    ] {
        if let Some(want) = want {
            let got = i[key].as_str().unwrap_or("none");
            assert_eq!(got, want, "{s}: {key}");
        }
    }
    let names = |v: &Value| -> Vec<String> { strings(v) };
    if let Some(want) = &expect.succeeding_pods {
        assert_eq!(&names(&i["succeedingPods"]), want, "{s}: succeedingPods");
    }
    if let Some(want) = &expect.containers_read {
        assert_eq!(
            &names(&report["containersRead"]),
            want,
            "{s}: containersRead"
        );
    }
    if let Some(want) = &expect.containers_skipped {
        assert_eq!(
            &names(&report["containersSkipped"]),
            want,
            "{s}: containersSkipped"
        );
    }
    if let Some(want) = &expect.window {
        let got: BTreeMap<String, String> = report["window"]
            .as_object()
            .map(|w| {
                w.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(&got, want, "{s}: window");
    }
    if let Some(want) = &expect.matches {
        assert_eq!(
            &counts(&report["matches"]),
            want,
            "{s}: matches across pods"
        );
    }

    let pods: BTreeMap<String, &Value> = report["pods"]
        .as_array()
        .expect("pods")
        .iter()
        .map(|p| (p["name"].as_str().unwrap_or_default().to_string(), p))
        .collect();
    if let Some(want) = &expect.pod_matches {
        let got: BTreeMap<String, BTreeMap<String, u64>> = pods
            .iter()
            .map(|(name, p)| (name.clone(), counts(&p["matches"])))
            .collect();
        assert_eq!(&got, want, "{s}: per-pod matches");
    }
    for (pod, n) in &expect.previous_container_failures {
        assert_eq!(
            pods[pod]["previousContainerFailures"].as_u64(),
            Some(*n),
            "{s}: previous container failures of {pod}"
        );
    }
    for (pod, lines) in &expect.pod_lines {
        assert_eq!(
            pods[pod]["lines"].as_u64(),
            Some(*lines),
            "{s}: lines of {pod}"
        );
    }

    contains_all(
        s,
        "next step",
        &strings(&r["nextSteps"]),
        &expect.steps_contain,
    );
    contains_all(
        s,
        "rotation step",
        &strings(&rotation["steps"]),
        &expect.rotation_steps_contain,
    );
    contains_all(
        s,
        "follow-up",
        &strings(&rotation["followUp"]),
        &expect.follow_up_contain,
    );
    let samples: Vec<String> = pods.values().flat_map(|p| strings(&p["samples"])).collect();
    contains_all(s, "sample", &samples, &expect.samples_contain);
    for sample in &samples {
        assert!(
            sample.chars().count() <= expect.max_sample_chars.unwrap_or(241),
            "{s}: sample too long ({} chars)",
            sample.chars().count()
        );
    }
    for secret in &expect.absent {
        assert!(
            !json.contains(secret.as_str()),
            "{s}: {secret:?} leaked into the JSON output"
        );
        assert!(
            !table.contains(secret.as_str()),
            "{s}: {secret:?} leaked into the table output"
        );
    }
    assert!(
        table.contains(&format!("Phase:            {}", expect.phase)),
        "{s}: table\n{table}"
    );
}

#[test]
fn fixtures_replay_to_their_expected_verdicts() {
    let dirs = fixtures();
    assert!(
        dirs.len() >= 20,
        "expected the full scenario set, found {}",
        dirs.len()
    );
    for dir in dirs {
        check(&dir);
    }
}

#[test]
fn runbook_file_and_explicit_id_are_honoured() {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/replay/metering-429-all-pods");
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let builtin = include_str!("../src/runbook/builtin/metering-token-exchange.yaml");
    // A copy under another id, with rate limiting moved to the catch-all's outcome.
    let edited = builtin
        .replace("id: metering-token-exchange", "id: metering-draft")
        .replace(
            "patterns: ['(?i)rate[ -]?limit']",
            "patterns: ['(?i)no-such-thing']",
        )
        .replace("httpStatus: [429]", "httpStatus: [418]");
    std::fs::write(file.path(), edited).expect("write runbook");
    let args = ReplayArgs {
        logs: dir.clone(),
        alert: dir.join("alert.yaml"),
        runbook: Some("metering-draft".into()),
        runbook_file: Some(file.path().to_path_buf()),
        container: None,
        output: OutputFormat::Json,
        expect: None,
    };
    let mut out = Vec::new();
    replay::run(&args, &mut out).expect("replay with a runbook file");
    let report: Value = serde_json::from_slice(&out).expect("JSON");
    assert_eq!(report["runbook"], "metering-draft");
    assert_eq!(
        report["verdict"]["classification"]["category"],
        "Unclassified"
    );

    let unknown = ReplayArgs {
        runbook: Some("nope".into()),
        runbook_file: None,
        ..args
    };
    let err = replay::run(&unknown, &mut Vec::new()).expect_err("unknown runbook");
    let message = format!("{err:#}");
    assert!(
        message.contains("metering-token-exchange")
            && message.contains("orchestrator-callback-errors"),
        "{message}"
    );
}

#[test]
fn container_needs_logs_that_name_their_container() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/replay/metering-network-one-pod");
    let args = ReplayArgs {
        logs: dir.clone(),
        alert: dir.join("alert.yaml"),
        runbook: None,
        runbook_file: None,
        container: Some("app".into()),
        output: OutputFormat::Json,
        expect: None,
    };
    let err = replay::run(&args, &mut Vec::new()).expect_err("a <pod>.log names no container");
    let message = format!("{err:#}");
    assert!(
        message.contains("--container app")
            && message.contains("armada-cluster-6d8f9c7b5-bad01.log holds no container name"),
        "{message}"
    );
}

#[test]
fn a_verdict_that_differs_from_expect_fails_with_every_difference() {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/replay/metering-429-all-pods");
    let expect = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(
        expect.path(),
        "phase: Escalated\ncategory: AuthFailure\nscope: AllPods\nhttpStatus: 401\nmatches: {RateLimited: 59}\n",
    )
    .unwrap();
    let args = ReplayArgs {
        logs: dir.clone(),
        alert: dir.join("alert.yaml"),
        runbook: None,
        runbook_file: None,
        container: None,
        output: OutputFormat::Table,
        expect: Some(expect.path().to_path_buf()),
    };
    let message = format!(
        "{:#}",
        replay::run(&args, &mut Vec::new()).expect_err("the verdict differs")
    );
    for line in [
        "category: expected AuthFailure, got RateLimited",
        "httpStatus: expected 401, got 429",
        "matches: expected RateLimited=59, got RateLimited=60",
    ] {
        assert!(message.contains(line), "{message}");
    }
    assert!(
        !message.contains("phase:") && !message.contains("scope:"),
        "{message}"
    );

    // A misspelt key is refused, not silently unchecked.
    std::fs::write(expect.path(), "categroy: RateLimited\n").unwrap();
    let message = format!(
        "{:#}",
        replay::run(&args, &mut Vec::new()).expect_err("unknown key")
    );
    assert!(message.contains("unknown field `categroy`"), "{message}");
}

#[test]
fn a_runbook_manifest_replays_like_a_data_file() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/replay/metering-401");
    let builtin = include_str!("../src/runbook/builtin/metering-token-exchange.yaml");
    let manifest = format!(
        "apiVersion: triage.dev/v1alpha1\nkind: Runbook\nmetadata:\n  name: m\nspec:\n{}",
        builtin
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect::<String>()
    );
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), manifest).unwrap();
    let args = ReplayArgs {
        logs: dir.clone(),
        alert: dir.join("alert.yaml"),
        runbook: None,
        runbook_file: Some(file.path().to_path_buf()),
        container: None,
        output: OutputFormat::Json,
        expect: Some(dir.join("expect.yaml")),
    };
    let mut out = Vec::new();
    replay::run(&args, &mut out).expect("the manifest's verdict is the built-in's");
}

#[test]
fn runbook_check_names_each_file_and_what_is_wrong() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = root.join("examples/runbooks/crash-loop.yaml");
    let text = std::fs::read_to_string(&example).unwrap();
    let broken = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(
        broken.path(),
        text.replace("'(?i)out of memory", "'(?i)(out of memory"),
    )
    .unwrap();
    let files = [
        example.clone(),
        root.join("src/runbook/builtin/metering-token-exchange.yaml"),
        broken.path().to_path_buf(),
    ];
    let mut out = Vec::new();
    let err = replay::check_runbooks(&files, &mut out).expect_err("one file is broken");
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains(&format!("{}: ok (crash-loop)", example.display())),
        "{out}"
    );
    assert!(
        out.contains("metering-token-exchange.yaml: ok (metering-token-exchange)"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{}: runbook crash-loop: categories[0].patterns",
            broken.path().display()
        )),
        "{out}"
    );
    assert_eq!(err.to_string(), "1 of 3 runbook files are invalid");
    replay::check_runbooks(&files[..2], &mut Vec::new()).expect("valid files pass");
}

/// The example runbook repository of docs/runbooks.md: every scenario passes `--expect`.
#[test]
fn the_example_runbook_passes_its_own_scenarios() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/runbooks");
    let mut scenarios: Vec<PathBuf> = std::fs::read_dir(root.join("tests"))
        .expect("examples/runbooks/tests")
        .map(|e| e.unwrap().path())
        .collect();
    scenarios.sort();
    assert!(scenarios.len() >= 2, "{scenarios:?}");
    for dir in scenarios {
        let args = ReplayArgs {
            logs: dir.clone(),
            alert: dir.join("alert.yaml"),
            runbook: None,
            runbook_file: Some(root.join("crash-loop.yaml")),
            container: None,
            output: OutputFormat::Table,
            expect: Some(dir.join("expect.yaml")),
        };
        replay::run(&args, &mut Vec::new()).unwrap_or_else(|e| panic!("{}: {e:#}", dir.display()));
    }
}

/// `pods.yaml` says what status records; a last termination that is not `Reason (exit N)` is
/// refused with where and why, not read as something else.
#[test]
fn pods_yaml_with_a_bad_last_termination_is_refused() {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/runbooks/tests/oom-killed");
    let dir = tempfile::tempdir().expect("temp dir");
    for (pods, error) in [
        (
            "p: {lastTermination: 'OOMKilled (exit nine)'}",
            "pods.yaml: p: lastTermination \"OOMKilled (exit nine)\": the exit code is not a number",
        ),
        ("p: {lastTermination: ' (exit 1)'}", "names no reason"),
        (
            "p: {lastTerminated: OOMKilled}",
            "unknown field `lastTerminated`",
        ),
    ] {
        std::fs::write(dir.path().join("pods.yaml"), pods).unwrap();
        let args = ReplayArgs {
            logs: dir.path().to_path_buf(),
            alert: scenario.join("alert.yaml"),
            runbook: None,
            runbook_file: Some(scenario.join("../../crash-loop.yaml")),
            container: None,
            output: OutputFormat::Table,
            expect: None,
        };
        let err = replay::run(&args, &mut Vec::new()).expect_err(pods);
        assert!(format!("{err:#}").contains(error), "{pods}: {err:#}");
    }
}

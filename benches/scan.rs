//! Log scanning throughput: `cargo bench --bench scan`.
//!
//! Prints MB/s for the runbook scanner next to a baseline measured in the same run on the same
//! bytes: splitting into lines with memchr and nothing else, the floor any line-based scanner
//! pays. The ratio is the cost of the matching itself.

use std::hint::black_box;
use std::time::Instant;

use alert_triage_operator::crd::Alert;
use alert_triage_operator::runbook::Catalog;

const CHUNK: usize = 64 * 1024;

fn metering_log(target_bytes: usize) -> Vec<u8> {
    let lines = [
        "2026-11-21T04:00:00.000000000Z Worker metering started for cluster c0ffee0123456789abcd",
        "2026-11-21T04:00:01.000000000Z GET /healthz 200 1.2ms",
        "2026-11-21T04:00:02.000000000Z ErrorMeteringTokenExchangeFailure: Failed to prepare OpenShift license metering  IAM token exchange failure",
        r#"2026-11-21T04:00:02.000000000Z Wrapped Errors: ["The IAM token exchange request failed. (429)","Failed to decode response (429): \"ApiKey based rate limit for calls to /token\""]"#,
        r#"2026-11-21T04:00:03.000000000Z {"level":"info","msg":"OpenShift licences usage submitted","clusterID":"c0ffee0123456789abcd"}"#,
        "2026-11-21T04:00:04.000000000Z Worker metering stopped",
    ];
    repeat_lines(&lines, target_bytes)
}

fn orchestrator_log(target_bytes: usize) -> Vec<u8> {
    let lines = [
        r#"2026-11-21T04:00:00.000000000Z {"level":"error","callbackName":"DeleteClientID","reasonCode":"ErrorUnclassified","controllerID":"c0ffee01","msg":"403 BXNIM0515E: You are not authorized to manage this Client ID."}"#,
        r#"2026-11-21T04:00:01.000000000Z {"level":"info","callbackName":"CreateClientID","msg":"callback finished","controllerID":"beef"}"#,
        "2026-11-21T04:00:02.000000000Z callbackName:DeleteClientID reasonCode:ErrorUnclassified controllerID:d00d01 500 upstream error",
    ];
    repeat_lines(&lines, target_bytes)
}

fn repeat_lines(lines: &[&str], target_bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(target_bytes + 512);
    while out.len() < target_bytes {
        for l in lines {
            out.extend_from_slice(l.as_bytes());
            out.push(b'\n');
        }
    }
    out
}

/// Best of `rounds` runs, in MB/s.
fn throughput(bytes: &[u8], rounds: usize, mut run: impl FnMut(&[u8]) -> u64) -> (f64, u64) {
    let mut best = f64::MAX;
    let mut result = 0;
    for _ in 0..rounds {
        let start = Instant::now();
        result = black_box(run(black_box(bytes)));
        best = best.min(start.elapsed().as_secs_f64());
    }
    (bytes.len() as f64 / best / 1e6, result)
}

fn lines_only(bytes: &[u8]) -> u64 {
    bytes
        .chunks(CHUNK)
        .map(|c| memchr::memchr_iter(b'\n', c).count() as u64)
        .sum()
}

fn main() {
    // `cargo bench` passes --bench; under `cargo test --all-targets` this runs once on a small
    // log as a check that the benchmark still works, without the cost of measuring.
    let measuring = std::env::args().any(|a| a == "--bench");
    let size = if measuring {
        64 * 1024 * 1024
    } else {
        256 * 1024
    };
    let catalog = Catalog::builtin();
    let cases = [
        (
            "metering-token-exchange",
            Alert {
                name: "armada-cluster_error_metering_token_exchange".into(),
                ..Alert::default()
            },
            metering_log(size),
        ),
        (
            "orchestrator-callback-errors",
            Alert {
                name: "ClusterSquadOrchestratorCallbackActionTimeErrors".into(),
                labels: [
                    ("operation", "DeleteClientID"),
                    ("reason_code", "ErrorUnclassified"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
                ..Alert::default()
            },
            orchestrator_log(size),
        ),
    ];
    if measuring {
        println!(
            "{:<30} {:>10} {:>14} {:>14} {:>8}",
            "runbook", "MiB", "baseline MB/s", "scanner MB/s", "ratio"
        );
    }
    for (id, alert, log) in cases {
        let runbook = catalog.select(Some(id), &alert).expect("built-in runbook");
        let compiled = runbook.compile(&alert).expect("compiles");
        let rounds = if measuring { 5 } else { 1 };
        let (base, lines) = throughput(&log, rounds, lines_only);
        let (scan, failures) = throughput(&log, rounds, |bytes| {
            let mut scanner = compiled.scanner();
            for chunk in bytes.chunks(CHUNK) {
                scanner.push(chunk);
            }
            let findings = scanner.finish();
            assert_eq!(findings.lines, lines, "the scanner saw every line");
            findings.failures()
        });
        assert!(failures > 0, "{id}: the benchmark log has failures to find");
        if measuring {
            println!(
                "{:<30} {:>10} {:>14.0} {:>14.0} {:>7.1}x",
                id,
                log.len() / (1024 * 1024),
                base,
                scan,
                base / scan
            );
        }
    }
}

//! Log scanning throughput: `cargo bench --bench scan`.
//!
//! Prints MB/s for the runbook scanner on realistic logs (mostly benign lines of mixed formats,
//! rare failure records) next to baselines measured in the same run on the same bytes: counting
//! lines with memchr, and searching for the signature literal with memchr's memmem (what
//! `grep -c LITERAL` does). `scripts/bench.sh` compares against grep and ripgrep themselves.
//!
//! `cargo bench --bench scan -- --write-log FILE BYTES RUNBOOK` writes one such log instead,
//! for `scripts/bench.sh` (RUNBOOK: `metering` or `orchestrator`).

use std::hint::black_box;
use std::io::Write;
use std::time::Instant;

use alert_triage_operator::crd::Alert;
use alert_triage_operator::runbook::Catalog;

const CHUNK: usize = 64 * 1024;

#[derive(Clone, Copy)]
enum Kind {
    Metering,
    Orchestrator,
}

/// A deterministic stand-in for a busy service's log: one failure record in about 5,000 lines.
fn realistic_log(kind: Kind, target_bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(target_bytes + 4096);
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move |bound: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % bound
    };
    let mut nanos: u64 = 0;
    while out.len() < target_bytes {
        nanos += 1 + next(2_000_000);
        let secs = nanos / 1_000_000_000;
        let stamp = format!(
            "2026-11-21T{:02}:{:02}:{:02}.{:09}Z ",
            3 + secs / 3600 % 20,
            secs / 60 % 60,
            secs % 60,
            nanos % 1_000_000_000
        );
        out.extend_from_slice(stamp.as_bytes());
        let id = next(1_000_000);
        let line = match (kind, next(5_000)) {
            (Kind::Metering, 0) => format!(
                "ErrorMeteringTokenExchangeFailure: Failed to prepare OpenShift license metering  IAM token exchange failure\n{stamp}Wrapped Errors: [\"The IAM token exchange request failed. ({})\"]",
                [429, 401, 500][next(3) as usize]
            ),
            (Kind::Orchestrator, 0) => format!(
                r#"{{"level":"error","ts":{}.{id},"callbackName":"DeleteClientID","reasonCode":"ErrorUnclassified","controllerID":"c0ffee{id}","msg":"403 BXNIM0515E: You are not authorized to manage this Client ID."}}"#,
                1_795_233_600 + secs
            ),
            (Kind::Metering, 1..=3) => "Worker metering started".to_string(),
            (_, n) => match n % 8 {
                0 => format!(
                    r#"{{"level":"info","ts":{}.{id},"caller":"metering/loop.go:88","msg":"metering cycle complete","clusters":{}}}"#,
                    1_795_233_600 + secs,
                    id % 300
                ),
                1 => format!(
                    "I1121 04:00:00.{id:06} 1 controller.go:123] reconciling worker w-{id} in cluster c{id:07}"
                ),
                2 => format!(
                    "GET /v1/clusters/c{id:07}/workers 200 {}.{}ms",
                    id % 90,
                    id % 10
                ),
                3 => format!(
                    r#"{{"level":"debug","ts":{}.{id},"caller":"iam/token.go:211","msg":"token refreshed","expiresIn":3600,"requestID":"r-{id}"}}"#,
                    1_795_233_600 + secs
                ),
                4 => format!(
                    "W1121 04:00:00.{id:06} 1 reflector.go:561] watch of *v1.Pod ended with: an error on the server (\"unable to decode an event from the watch stream\") has prevented the request from succeeding"
                ),
                5 => format!(
                    r#"{{"level":"info","callbackName":"CreateClientID","reasonCode":"Success","controllerID":"beef{id}","msg":"callback finished"}}"#
                ),
                6 => format!(
                    "worker w-{id} metering tick: 12 usage records queued, rate 3.1/s, ErrorCount=0"
                ),
                _ => format!(
                    "POST /v2/billing/usage 202 {}ms user-agent=armada-billing/1.{} request-id={id}",
                    id % 400,
                    id % 9
                ),
            },
        };
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out
}

/// Best and median of `rounds` runs, in MB/s.
fn throughput(bytes: &[u8], rounds: usize, mut run: impl FnMut(&[u8]) -> u64) -> (f64, f64, u64) {
    let mut times = Vec::new();
    let mut result = 0;
    for _ in 0..rounds {
        let start = Instant::now();
        result = black_box(run(black_box(bytes)));
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let mbps = |t: f64| bytes.len() as f64 / t / 1e6;
    (mbps(times[0]), mbps(times[times.len() / 2]), result)
}

fn lines_only(bytes: &[u8]) -> u64 {
    bytes
        .chunks(CHUNK)
        .map(|c| memchr::memchr_iter(b'\n', c).count() as u64)
        .sum()
}

fn write_log(args: &[String]) -> Result<(), String> {
    let usage = || "usage: --write-log FILE BYTES metering|orchestrator".to_string();
    let [path, bytes, kind] = args else {
        return Err(usage());
    };
    let bytes: usize = bytes.parse().map_err(|_| usage())?;
    let kind = match kind.as_str() {
        "metering" => Kind::Metering,
        "orchestrator" => Kind::Orchestrator,
        _ => return Err(usage()),
    };
    let failed = |e: std::io::Error| format!("writing {path}: {e}");
    // Written in pieces so a 1 GiB log does not need 1 GiB of memory.
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).map_err(failed)?);
    let piece = 64 * 1024 * 1024;
    let mut written = 0;
    while written < bytes {
        let log = realistic_log(kind, piece.min(bytes - written));
        file.write_all(&log).map_err(failed)?;
        written += log.len();
    }
    file.flush().map_err(failed)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--write-log") {
        let end = (i + 4).min(args.len());
        if let Err(e) = write_log(&args[i + 1..end]) {
            eprintln!("{e}");
            std::process::exit(2);
        }
        return;
    }
    // `cargo bench` passes --bench; under `cargo test --all-targets` this runs once on a small
    // log as a check that the benchmark still works, without the cost of measuring.
    let measuring = args.iter().any(|a| a == "--bench");
    let size = if measuring {
        256 * 1024 * 1024
    } else {
        4 * 1024 * 1024
    };
    let catalog = Catalog::builtin();
    let labels = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let cases = [
        (
            "metering-token-exchange",
            Alert {
                name: "armada-cluster_error_metering_token_exchange".into(),
                ..Alert::default()
            },
            "ErrorMeteringTokenExchangeFailure",
            realistic_log(Kind::Metering, size),
        ),
        (
            "orchestrator-callback-errors",
            Alert {
                name: "ClusterSquadOrchestratorCallbackActionTimeErrors".into(),
                labels: labels(&[
                    ("operation", "DeleteClientID"),
                    ("reason_code", "ErrorUnclassified"),
                ]),
                ..Alert::default()
            },
            "ErrorUnclassified",
            realistic_log(Kind::Orchestrator, size),
        ),
    ];
    if measuring {
        println!(
            "{:<30} {:>5} {:>13} {:>13} {:>13} {:>9}",
            "runbook (MB/s: best/median)", "MiB", "lines", "literal", "scanner", "vs literal"
        );
    }
    for (id, alert, literal, log) in cases {
        let runbook = catalog.select(Some(id), &alert).expect("built-in runbook");
        let compiled = runbook.compile(&alert).expect("compiles");
        let rounds = if measuring { 7 } else { 1 };
        let (lines_best, lines_median, lines) = throughput(&log, rounds, lines_only);
        let finder = memchr::memmem::Finder::new(literal);
        let (lit_best, lit_median, hits) = throughput(&log, rounds, |bytes| {
            bytes
                .chunks(CHUNK)
                .map(|c| finder.find_iter(c).count() as u64)
                .sum()
        });
        let (scan_best, scan_median, failures) = throughput(&log, rounds, |bytes| {
            let mut scanner = compiled.scanner();
            for chunk in bytes.chunks(CHUNK) {
                scanner.push(chunk);
            }
            let findings = scanner.finish();
            assert_eq!(findings.lines, lines, "the scanner saw every line");
            findings.failures()
        });
        assert!(failures > 0, "{id}: the benchmark log has failures to find");
        assert!(hits >= failures, "{id}: every failure holds the literal");
        if measuring {
            println!(
                "{:<30} {:>5} {:>6.0}/{:<6.0} {:>6.0}/{:<6.0} {:>6.0}/{:<6.0} {:>8.2}x",
                id,
                log.len() / (1024 * 1024),
                lines_best,
                lines_median,
                lit_best,
                lit_median,
                scan_best,
                scan_median,
                scan_median / lit_median
            );
        }
    }
}

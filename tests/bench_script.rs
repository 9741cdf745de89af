//! `scripts/bench.sh --quick` runs end to end, so the benchmark cannot rot: small logs, two pods,
//! ten triages, in a namespace of its own on the test cluster. Its figures mean nothing here
//! (a debug build, one repeat); that every figure is printed does.

mod common;

use std::process::Command;

#[test]
fn bench_script_quick_mode_prints_every_figure() {
    let cluster = common::cluster();
    let scratch = tempfile::tempdir().expect("scratch folder");
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench.sh"))
        .arg("--quick")
        .env("ATO_BENCH_BIN", env!("CARGO_BIN_EXE_alert-triage-operator"))
        .env("ATO_BENCH_KUBECONFIG", &cluster.kubeconfig)
        .env("ATO_BENCH_DIR", scratch.path())
        .output()
        .expect("running scripts/bench.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench.sh failed\n{stdout}\n{stderr}");
    for figure in [
        "scanner metering 4 MiB",
        "scanner orchestrator 4 MiB",
        "LC_ALL=C grep -c ErrorMeteringTokenExchangeFailure",
        "rg -c ErrorUnclassified",
        "apply -> Ready, 2 pods",
        "floor: the same logs read in parallel",
        "scripted kubectl logs | grep -c loop",
        "idle RSS",
        "idle CPU",
        "peak RSS, 10 triages applied + 20 pods",
        "peak RSS after a backlog of 10",
    ] {
        assert!(
            stdout.contains(figure),
            "no {figure:?} in\n{stdout}\n{stderr}"
        );
    }
    assert!(
        !stdout.contains("nan") && !stdout.contains("inf"),
        "a figure did not compute:\n{stdout}"
    );
    assert!(stdout.contains(" 0 stalled"), "{stdout}");
}

//! Log lines and AlertTriages the integration tests share.

use serde_json::{Value, json};

/// Five metering failure records caused by the network (connection refused to IAM).
pub fn network_failure() -> Vec<String> {
    let mut lines = Vec::new();
    for _ in 0..5 {
        lines.push("ErrorMeteringTokenExchangeFailure: Failed to prepare OpenShift license metering  IAM token exchange failure".to_string());
        lines.push(r#"Wrapped Errors: ["The IAM token exchange request failed.","Post \"https://iam.cloud.ibm.com/identity/token\": dial tcp 10.1.2.3:443: connect: connection refused"]"#.to_string());
    }
    lines
}

/// Five metering failures rate limited by IAM (429): the runbook escalates to troutbridge.
pub fn rate_limited() -> Vec<String> {
    let mut lines = Vec::new();
    for _ in 0..5 {
        lines.push("ErrorMeteringTokenExchangeFailure: Failed to prepare OpenShift license metering  IAM token exchange failure".to_string());
        lines.push(r#"Wrapped Errors: ["The IAM token exchange request failed. (429)","Failed to decode response (429): \"ApiKey based rate limit\""]"#.to_string());
    }
    lines
}

/// A metering-token-exchange AlertTriage over the pods labelled `app=<app>`, one hour back.
pub fn metering_triage(name: &str, app: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "alert": {"name": "armada-cluster_error_metering_token_exchange", "labels": {"region": "us-south"}},
            "target": {"selector": {"matchLabels": {"app": app}}},
            "window": "1h"
        }
    })
}

//! Integration-test harness: the local simulated cluster (see docs/cluster.md), clients for its
//! identities, a fresh namespace per test, simulated workloads and pod logs.
//!
//! Use it from a test binary with `mod common;`. Tests in one binary run in parallel: every test
//! gets its own namespace (`TestNs`), pod-log files live under that namespace's own folder, and
//! the cluster is started once per process (and `scripts/cluster.sh up` takes a lock, so several
//! test binaries can race safely).
//!
//! The cluster: `ATO_TEST_KUBECONFIG` if set (an already running cluster of this layout: admin
//! kubeconfig, with `users/` and `podlogs/` beside it unless `ATO_TEST_USERS_DIR` /
//! `ATO_TEST_PODLOGS_DIR` say otherwise; pod logs need kwok on this machine), otherwise
//! `scripts/cluster.sh up` (a no-op when it already runs). A cluster that cannot start fails the
//! test loudly; nothing is ever skipped.
#![allow(dead_code)]

pub mod alertmanager;
pub mod charted;
mod cluster;
pub mod helm;
mod namespace;
pub mod operator;
mod pod_log;
pub mod scenario;

pub use cluster::*;
pub use namespace::*;
pub use pod_log::*;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
    future::Future,
    hash::{BuildHasher, Hasher},
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail, ensure};
use jiff::{SignedDuration, Timestamp, tz::TimeZone};
use k8s_openapi::api::{
    apps::v1::Deployment,
    authentication::v1::{TokenRequest, TokenRequestSpec},
    core::v1::{Namespace, Pod, ServiceAccount},
    rbac::v1::{Role, RoleBinding},
};
use kube::{
    Api, Client, Config,
    api::{
        ApiResource, DynamicObject, ListParams, LogParams, ObjectMeta, Patch, PatchParams,
        PostParams,
    },
    config::{AuthInfo, KubeConfigOptions, Kubeconfig},
};
use serde_json::json;

/// Label on every namespace the harness creates.
pub const TEST_NS_LABEL: &str = "ato-test";
/// Node label the simulated (kwok) nodes carry; the harness's pods select it.
pub const KWOK_NODE_SELECTOR: (&str, &str) = ("type", "kwok");

// ------------------------------------------------------------------------------------------------
// Waiting

/// Retries `f` every 200ms until it returns `Ok`, and returns that value; panics with the last
/// error once `timeout` has passed. An attempt still running at the deadline is abandoned.
pub async fn eventually<T, E, F, Fut>(timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, E>>,
    E: fmt::Debug,
{
    let deadline = Instant::now() + timeout;
    let mut last: Option<String> = None;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining.max(Duration::from_millis(1)), f()).await {
            Ok(Ok(v)) => return v,
            Ok(Err(e)) => last = Some(format!("{e:?}")),
            Err(_) => {
                last = Some(format!(
                    "attempt still running at the deadline (last error: {last:?})"
                ))
            }
        }
        if Instant::now() >= deadline {
            panic!(
                "condition not met within {timeout:?}; last error: {}",
                last.unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// alertmanager from scripts/tools.sh (beside kubectl), or `ATO_TEST_ALERTMANAGER`.
pub fn alertmanager_bin() -> PathBuf {
    let bin = std::env::var_os("ATO_TEST_ALERTMANAGER")
        .map(PathBuf::from)
        .unwrap_or_else(|| cluster().kubectl.with_file_name("alertmanager"));
    assert!(
        bin.is_file(),
        "{} is missing: build it with scripts/tools.sh alertmanager",
        bin.display()
    );
    bin
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request to `address` on a fresh connection (`Connection: close`): status code
/// and body. The body is written apart from the read, so an early answer (413) is seen.
pub async fn http_request(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(address).await?;
    let (mut read, mut write) = stream.into_split();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let body = body.to_vec();
    // Written apart from the read: a server may answer (413) before it has read the body.
    let writer = tokio::spawn(async move {
        let _ = write.write_all(head.as_bytes()).await;
        let _ = write.write_all(&body).await;
        let _ = write.flush().await;
        write
    });
    let mut response = Vec::new();
    read.read_to_end(&mut response).await?;
    let _ = writer.await;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, body.to_string()))
}

//! alert-triage-operator: turns SRE runbooks into a Kubernetes controller.
//!
//! The pure core (runbooks, scanning, verdicts, redaction, the phase machine) has no I/O;
//! `evidence` and `controller` hold the `kube::Client`; `runtime` wires the process together.
#![forbid(unsafe_code)]

pub mod action;
pub mod cli;
pub mod controller;
mod crash;
pub mod crd;
pub mod duration;
pub mod evidence;
pub mod http;
pub mod intake;
pub mod leader;
pub mod metrics;
pub mod notify;
pub mod plugin;
pub mod redact;
pub mod replay;
pub mod runbook;
pub mod runtime;
pub mod telemetry;

use std::path::Path;

use kube::CustomResourceExt;

/// Lower-case hex of `bytes` (digests in names, keys and signatures).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every CRD the operator serves, as YAML, by the file name it is committed under in `crds/`.
/// Here rather than in `crd` because the runbook kinds live with the runbook model.
pub fn crd_files() -> [(&'static str, String); 3] {
    [
        (
            "alerttriages.triage.dev.yaml",
            crd::render(crd::AlertTriage::crd()),
        ),
        (
            "runbooks.triage.dev.yaml",
            crd::render(runbook::RunbookResource::crd()),
        ),
        (
            "clusterrunbooks.triage.dev.yaml",
            crd::render(runbook::ClusterRunbook::crd()),
        ),
    ]
}

use anyhow::Context as _;

/// The configuration for the cluster in `kubeconfig`, else KUBECONFIG / in-cluster.
pub async fn kube_config(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Config> {
    Ok(match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig and not in a cluster")?,
    })
}

/// A client for the cluster in `kubeconfig`, else KUBECONFIG / in-cluster configuration.
pub async fn kube_client(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Client> {
    Ok(kube::Client::try_from(kube_config(kubeconfig).await?)?)
}

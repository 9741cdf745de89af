//! `kubectl triage` (the `kubectl-triage` binary): list what needs a person, explain a verdict,
//! approve a proposal as yourself.
//!
//! Its flags are kubectl's own (`--kubeconfig`, `--context`, `-n`, `-A`) and it reads
//! `KUBECONFIG` as kubectl does. Unlike the operator's flags they have no `ATO_*` variables on
//! purpose: in an interactive tool a forgotten variable that changes the namespace or answers
//! the approval question would act without the person noticing.

pub mod approve;
pub mod view;

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::crd::AlertTriage;
use approve::{Approvable, approvable};
use view::Item;

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-triage",
    bin_name = "kubectl triage",
    version,
    about = "See what AlertTriages need from you, why, and approve their proposals"
)]
pub struct Cli {
    /// Path to the kubeconfig file (default: KUBECONFIG, else ~/.kube/config, else in-cluster).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,

    /// The namespace (default: the context's namespace, else `default`).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,

    /// List AlertTriages in all namespaces (`list` only).
    #[arg(short = 'A', long, global = true)]
    pub all_namespaces: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// AlertTriages, those that need a person first: awaiting approval, API key rotation,
    /// escalated, stalled; then the rest.
    List,
    /// The verdict, the evidence, the filled-in next steps and the customer notice.
    Why { name: String },
    /// Approve the current proposal as yourself (asks first unless --yes).
    Approve {
        name: String,
        /// Do not ask; approve the proposal shown.
        #[arg(short = 'y', long)]
        yes: bool,
    },
}

fn resource() -> ApiResource {
    ApiResource::erase::<AlertTriage>(&())
}

async fn connect(cli: &Cli) -> anyhow::Result<(Client, String)> {
    let options = KubeConfigOptions {
        context: cli.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match (&cli.kubeconfig, &cli.context) {
        (Some(path), _) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &options).await?
        }
        (None, Some(context)) => Config::from_kubeconfig(&options)
            .await
            .with_context(|| format!("loading context {context:?} from the kubeconfig"))?,
        (None, None) => Config::infer()
            .await
            .context("no kubeconfig (KUBECONFIG, ~/.kube/config) and not in a cluster")?,
    };
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    Ok((Client::try_from(config)?, namespace))
}

/// Runs one command, writing what it has to say to `out`; `answer` is where the approval
/// question's reply comes from (a terminal).
pub async fn run(
    cli: &Cli,
    out: &mut dyn Write,
    answer: &mut dyn BufRead,
    answer_is_terminal: bool,
) -> anyhow::Result<()> {
    if cli.all_namespaces && !matches!(cli.command, Command::List) {
        bail!("-A/--all-namespaces only applies to `list`; name the namespace with -n");
    }
    let (client, namespace) = connect(cli).await?;
    let now = Timestamp::now();
    match &cli.command {
        Command::List => {
            let api: Api<DynamicObject> = if cli.all_namespaces {
                Api::all_with(client, &resource())
            } else {
                Api::namespaced_with(client, &namespace, &resource())
            };
            let objects = api
                .list(&ListParams::default())
                .await
                .map_err(|e| api_error(e, "listing AlertTriages"))?;
            if objects.items.is_empty() {
                match cli.all_namespaces {
                    true => writeln!(out, "No AlertTriages found.")?,
                    false => writeln!(out, "No AlertTriages found in namespace {namespace}.")?,
                }
                return Ok(());
            }
            let items = objects.items.into_iter().map(item).collect();
            write!(out, "{}", view::list(items, cli.all_namespaces, now))?;
        }
        Command::Why { name } => {
            let api = Api::<DynamicObject>::namespaced_with(client, &namespace, &resource());
            let triage = get(&api, &namespace, name).await?;
            write!(out, "{}", view::why(&triage, now))?;
        }
        Command::Approve { name, yes } => {
            let api =
                Api::<DynamicObject>::namespaced_with(client.clone(), &namespace, &resource());
            let triage = get(&api, &namespace, name).await?;
            let proposal = match approvable(&triage, now)? {
                Approvable::AlreadyApproved { id, by } => {
                    writeln!(
                        out,
                        "Proposal {id} of {namespace}/{name} is already approved by {by}."
                    )?;
                    return Ok(());
                }
                Approvable::Proposal(p) => p,
            };
            let user = whoami(client).await?;
            write!(out, "{}", view::why(&triage, now))?;
            writeln!(out)?;
            if !yes {
                if !answer_is_terminal {
                    bail!(
                        "not approving: there is no terminal to ask on; pass --yes to approve proposal {} without asking",
                        proposal.id
                    );
                }
                write!(
                    out,
                    "Approve proposal {} ({} pod {}) as {user}? [y/N] ",
                    proposal.id,
                    proposal.action.as_str(),
                    proposal.pod
                )?;
                out.flush()?;
                let mut line = String::new();
                answer.read_line(&mut line)?;
                if !approve::is_yes(&line) {
                    writeln!(out, "Not approved; nothing changed.")?;
                    return Ok(());
                }
            }
            let resource_version = triage
                .metadata
                .resource_version
                .clone()
                .context("the AlertTriage has no resourceVersion")?;
            let patch = approve::patch(&resource_version, &proposal.id, &user);
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| match e {
                    kube::Error::Api(s) if s.code == 409 => anyhow::anyhow!(
                        "{namespace}/{name} changed after it was read (its proposal may have been withdrawn); nothing was approved, run the command again"
                    ),
                    kube::Error::Api(s) if s.code == 403 => anyhow::anyhow!(
                        "{user} may not approve {namespace}/{name}: {}",
                        s.message
                    ),
                    e => api_error(e, &format!("approving {namespace}/{name}")),
                })?;
            writeln!(
                out,
                "Approved proposal {} as {user}. The operator checks the evidence again before it acts; follow it with: kubectl triage why {name} -n {namespace}",
                proposal.id
            )?;
        }
    }
    Ok(())
}

/// A listed object as this plugin's types, or why it cannot be read as them.
fn item(object: DynamicObject) -> Item {
    let namespace = object.metadata.namespace.clone().unwrap_or_default();
    let name = object.metadata.name.clone().unwrap_or_default();
    match serde_json::to_value(object).and_then(serde_json::from_value::<AlertTriage>) {
        Ok(t) => Item::Triage(Box::new(t)),
        Err(e) => Item::Unreadable {
            namespace,
            name,
            error: e.to_string(),
        },
    }
}

async fn get(api: &Api<DynamicObject>, namespace: &str, name: &str) -> anyhow::Result<AlertTriage> {
    let object = api.get(name).await.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 404 => {
            anyhow::anyhow!("no AlertTriage {name:?} in namespace {namespace}")
        }
        e => api_error(e, &format!("reading AlertTriage {namespace}/{name}")),
    })?;
    serde_json::from_value(serde_json::to_value(object)?).with_context(|| {
        format!("AlertTriage {namespace}/{name} is not in a shape this kubectl-triage understands; is it older than the operator?")
    })
}

/// The caller's user name as the API server sees it, which is what the admission policy
/// compares `approvedBy` with.
async fn whoami(client: Client) -> anyhow::Result<String> {
    let review = Api::<SelfSubjectReview>::all(client)
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .map_err(|e| api_error(e, "asking the API server who you are (SelfSubjectReview)"))?;
    review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .filter(|u| !u.is_empty())
        .context("the API server did not say who you are (SelfSubjectReview without a username)")
}

fn api_error(e: kube::Error, doing: &str) -> anyhow::Error {
    match e {
        kube::Error::Api(s) => anyhow::anyhow!("{doing}: {} ({})", s.message, s.code),
        e => anyhow::anyhow!("{doing}: {e}"),
    }
}

/// The binary's entry point: stdin is where the approval question is answered.
pub async fn main(cli: Cli) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    let mut out = std::io::stdout().lock();
    run(&cli, &mut out, &mut stdin.lock(), terminal).await
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_flags_are_kubectls() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "kubectl-triage",
            "approve",
            "net",
            "-n",
            "pay",
            "--context",
            "prod",
            "--kubeconfig",
            "/k",
            "--yes",
        ])
        .unwrap();
        assert_eq!(cli.namespace.as_deref(), Some("pay"));
        assert_eq!(cli.context.as_deref(), Some("prod"));
        assert!(matches!(cli.command, Command::Approve { yes: true, .. }));
        let cli = Cli::try_parse_from(["kubectl-triage", "-A", "list"]).unwrap();
        assert!(cli.all_namespaces);
    }
}

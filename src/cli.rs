//! Command line: every flag can also be set from an `ATO_*` environment variable.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::duration::parse as parse_duration;
use crate::replay::ReplayArgs;

#[derive(Parser, Debug)]
#[command(
    name = "alert-triage-operator",
    version,
    about = "Triage alerts with runbooks, in Kubernetes"
)]
pub struct Cli {
    /// Log output format.
    #[arg(
        long,
        value_enum,
        default_value = "plain",
        env = "ATO_LOG_FORMAT",
        global = true
    )]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controller against the cluster in KUBECONFIG (or in-cluster config).
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions (AlertTriage, Runbook, ClusterRunbook) as YAML.
    Crd(CrdArgs),
    /// Replay a folder of log files against a runbook and print the verdict.
    Replay(ReplayArgs),
    /// Work with runbook files offline.
    #[command(subcommand)]
    Runbook(RunbookCommand),
}

#[derive(Subcommand, Debug)]
pub enum RunbookCommand {
    /// Check runbook files (bare runbooks or Runbook/ClusterRunbook manifests) as the operator
    /// would, without logs; fails when any is invalid.
    Check {
        /// The files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct CrdArgs {
    /// Write each CRD to its own file in this directory, as `crds/` holds them, instead of
    /// printing them all.
    #[arg(long, env = "ATO_CRD_DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Plain,
    Json,
}

/// How the controller behaves; the defaults are the safe ones.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Only watch AlertTriages (and read pods) in these namespaces; all namespaces when empty.
    #[arg(long, env = "ATO_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,

    /// Use ClusterRunbooks (which needs cluster-wide `list`/`watch` on them). Off, only
    /// Runbooks in the watched namespaces and the built-in runbooks are used: for an
    /// installation with no cluster-wide rights (the chart's namespaced mode).
    #[arg(long, env = "ATO_CLUSTER_RUNBOOKS", default_value_t = true, action = clap::ArgAction::Set)]
    pub cluster_runbooks: bool,

    /// Namespaces whose AlertTriages may target pods in another namespace
    /// (`spec.target.namespace`). A triage anywhere else reads and acts only in its own
    /// namespace; one that names another is refused (Stalled) and reads nothing.
    #[arg(long, env = "ATO_ADMIN_NAMESPACES", value_delimiter = ',')]
    pub admin_namespaces: Vec<String>,

    /// Before acting, ask the API server (SubjectAccessReview) whether `approvedBy` may itself
    /// evict (or delete) the pod, and refuse if not: the operator never acts with a power the
    /// approver lacks. The review sees the user's own bindings, not their groups.
    #[arg(long, env = "ATO_REVIEW_APPROVER", default_value_t = true, action = clap::ArgAction::Set)]
    pub review_approver: bool,

    /// Most log bytes read per container (and per previous container) in one triage.
    #[arg(long, env = "ATO_LOG_BYTE_LIMIT", default_value_t = 8 * 1024 * 1024)]
    pub log_byte_limit: u64,

    /// How many pods are read at the same time.
    #[arg(long, env = "ATO_POD_CONCURRENCY", default_value_t = 4)]
    pub pod_concurrency: usize,

    /// Most triages running at once (across all watched namespaces); the rest wait their turn,
    /// so a backlog after an outage is worked through within a fixed memory bound.
    #[arg(long, env = "ATO_MAX_CONCURRENT_TRIAGES", default_value_t = 16)]
    pub max_concurrent_triages: usize,

    /// Most log bytes being read at once across all triages; each log read counts its byte
    /// limit while it runs.
    #[arg(long, env = "ATO_LOG_BYTES_IN_FLIGHT", default_value_t = 64 * 1024 * 1024)]
    pub log_bytes_in_flight: u64,

    /// The environment's info ConfigMap, as NAME or NAMESPACE/NAME, instead of the one the
    /// runbook names (`armada-info`). Without a namespace it is read from the target namespace.
    #[arg(long, env = "ATO_INFO_CONFIGMAP")]
    pub info_configmap: Option<String>,

    /// How long a proposal waits for approval before it expires.
    #[arg(long, env = "ATO_PROPOSAL_TTL", default_value = "30m", value_parser = parse_duration)]
    pub proposal_ttl: Duration,

    /// Largest status the controller writes, in bytes; evidence is trimmed to fit.
    #[arg(long, env = "ATO_STATUS_BYTE_LIMIT", default_value_t = 32 * 1024)]
    pub status_byte_limit: usize,

    /// A regular expression whose matches are redacted, after the built-in rules, from evidence,
    /// Events and the operator's own log; repeatable. ATO_REDACT_PATTERNS holds one pattern per
    /// line: a newline separates them because log lines, and so patterns for them, never
    /// contain one. A pattern that does not compile fails the start.
    #[arg(
        long = "redact-pattern",
        env = "ATO_REDACT_PATTERNS",
        value_name = "REGEX",
        value_delimiter = '\n',
        value_parser = crate::redact::parse_pattern
    )]
    pub redact_patterns: Vec<regex::Regex>,

    /// Most pods the operator deletes across the cluster in any hour.
    #[arg(long, env = "ATO_DELETION_BUDGET_PER_HOUR", default_value_t = 3)]
    pub deletion_budget_per_hour: usize,

    /// Least time between two deletions in one workload (Deployment, StatefulSet, ...).
    #[arg(long, env = "ATO_WORKLOAD_COOLDOWN", default_value = "30m", value_parser = parse_duration)]
    pub workload_cooldown: Duration,

    /// How long a replacement pod may take to become Ready before the remediation has failed.
    #[arg(long, env = "ATO_VERIFY_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub verify_timeout: Duration,

    /// How long a Ready replacement is watched before its logs are checked for the signature,
    /// so a replacement that fails the same way a minute later is not called a success.
    #[arg(long, env = "ATO_VERIFY_SETTLE", default_value = "2m", value_parser = parse_duration)]
    pub verify_settle: Duration,

    /// Delete pods directly instead of through the Eviction API. Deletion ignores
    /// PodDisruptionBudgets: only for pods no budget protects.
    #[arg(long, env = "ATO_ALLOW_POD_DELETE")]
    pub allow_pod_delete: bool,

    /// Never act: every approved proposal is recorded as what would have been done, as if
    /// each AlertTriage set `spec.dryRun: true`.
    #[arg(long, env = "ATO_DRY_RUN")]
    pub dry_run: bool,

    /// The ConfigMap that keeps the deletion budget and cooldowns across restarts, as
    /// NAMESPACE/NAME (default: alert-triage-operator-ledger in $POD_NAMESPACE, else `default`).
    #[arg(long, env = "ATO_LEDGER")]
    pub ledger: Option<String>,

    #[command(flatten)]
    pub leader: crate::leader::LeaderArgs,

    #[command(flatten)]
    pub http: crate::http::HttpArgs,

    #[command(flatten)]
    pub intake: crate::intake::IntakeArgs,

    #[command(flatten)]
    pub notify: crate::notify::NotifyArgs,

    /// Where the cluster's kubeconfig is, when not in-cluster (KUBECONFIG works too).
    #[arg(long, env = "ATO_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_has_an_env_var() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        let run = cmd.find_subcommand("run").expect("run subcommand");
        for arg in run.get_arguments() {
            if arg.get_id() == "help" || arg.get_id() == "version" {
                continue;
            }
            assert!(
                arg.get_env().is_some(),
                "flag --{} has no env var",
                arg.get_id()
            );
        }
    }
}

//! Offline replay: a folder of log files through a runbook, the way `promtool test rules`
//! tests alert rules. It runs the same scanner and engine as the controller.
//!
//! Folder layout (files other than these are ignored):
//! - `<pod>.log` or `<pod>/<container>.log`: a target pod's logs (containers are merged);
//! - `<pod>/<container>.previous.log` (optional): the log of the container that ran before a
//!   restart, as `kubectl logs --previous` shows it;
//! - `pods.yaml` (optional): per pod, what `status.evidence.pods[]` records of it, in the same
//!   words: `<pod>: {ready: false, restarts: 4, waitingReason: CrashLoopBackOff,
//!   lastTermination: OOMKilled (exit 137), events: ["BackOff: Back-off restarting (x3)"],
//!   restartedAt: <time>}`, every key optional. Pods are Ready unless it says otherwise, a
//!   restarted container started at its log's first line unless it says when, and a pod listed
//!   here without logs is a pod whose logs were empty;
//! - `env-info.yaml` (optional): the environment's info ConfigMap data (`KEY: value`);
//! - `related/<service>/<pod>.log` (optional): pods of other services the runbook names.
//!
//! The window is the one a triage reads once the alert's window has ended: with
//! `startsAt` in the alert, lines before `startsAt` minus 5 minutes and after `startsAt` plus
//! the window (the manifest's `spec.window` or the runbook's) are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use jiff::{SignedDuration, Timestamp};

use crate::controller::phase;
use crate::crd::{Action, Alert, AlertTriageSpec, Phase, Scope};
use crate::runbook::{
    AssessInput, Catalog, CompiledRunbook, Containers, EnvInfo, LogScanner, PodEvent, PodInput,
    PodState, RelatedInput, Restart, StreamFindings, Verdict, WindowCut,
};

/// Bytes read at a time: fewer reads than 64 KiB (6 % faster on a 1 GiB log), still small
/// enough that the chunk and the scanner's lowercased copy of it stay in the core's cache
/// (1 MiB was slower).
const CHUNK: usize = 256 * 1024;
const RELATED_DIR: &str = "related";
const PREVIOUS: &str = ".previous.log";
/// How far before `startsAt` the window reaches, as in the controller.
const BEFORE_ALERT: SignedDuration = SignedDuration::from_mins(5);

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    #[default]
    Table,
    Json,
}

/// Replay a folder of log files against a runbook and print the verdict.
#[derive(clap::Args, Debug, Clone)]
pub struct ReplayArgs {
    /// Folder of log files: `<pod>.log` or `<pod>/<container>.log`, optional `pods.yaml`,
    /// `env-info.yaml` and `related/<service>/<pod>.log`.
    #[arg(long, env = "REPLAY_LOGS")]
    pub logs: PathBuf,
    /// YAML file with the alert (`name`, `labels`, `startsAt`) or a whole AlertTriage manifest.
    #[arg(long, env = "REPLAY_ALERT")]
    pub alert: PathBuf,
    /// Runbook id; otherwise the manifest's `spec.runbook`, otherwise chosen by the alert.
    #[arg(long, env = "REPLAY_RUNBOOK")]
    pub runbook: Option<String>,
    /// Use the runbooks in this YAML file (one or more documents) instead of the built-in ones.
    #[arg(long, env = "REPLAY_RUNBOOK_FILE")]
    pub runbook_file: Option<PathBuf>,
    /// Read only this container's logs (`<pod>/<NAME>.log` and its `.previous.log`), as
    /// `spec.target.container` does in the cluster.
    #[arg(long, env = "REPLAY_CONTAINER")]
    pub container: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t, env = "REPLAY_OUTPUT")]
    pub output: OutputFormat,
    /// YAML file of what the verdict must be (`phase`, `category`, `scope`, `action`,
    /// `httpStatus`, `team`, `deleteCandidate`, `matches`, `failingPods`; only the keys given
    /// are compared). Any difference is listed and the command fails.
    #[arg(long, env = "REPLAY_EXPECT")]
    pub expect: Option<PathBuf>,
}

/// What `--expect` compares: the verdict a runbook author cares about. Unknown keys are
/// refused, so a misspelt expectation fails instead of passing unchecked.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Expectation {
    phase: Option<Phase>,
    category: Option<String>,
    scope: Option<Scope>,
    action: Option<Action>,
    http_status: Option<u16>,
    team: Option<String>,
    delete_candidate: Option<String>,
    /// Failure records per category across all pods, every category listed.
    matches: Option<BTreeMap<String, u64>>,
    /// Pods with at least one failure record.
    failing_pods: Option<u64>,
}

impl Expectation {
    fn read(path: &Path) -> anyhow::Result<Expectation> {
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// One line per difference: `field: expected X, got Y`.
    fn differences(&self, report: &Report) -> Vec<String> {
        let v = report.verdict.verdict;
        let mut out = Vec::new();
        let mut compare = |field: &str, want: Option<String>, got: Option<String>| {
            if let Some(want) = want
                && Some(&want) != got.as_ref()
            {
                out.push(format!(
                    "{field}: expected {want}, got {}",
                    got.as_deref().unwrap_or("nothing")
                ));
            }
        };
        compare(
            "phase",
            self.phase.map(|p| p.as_str().into()),
            Some(report.verdict.phase.as_str().into()),
        );
        compare(
            "category",
            self.category.clone(),
            Some(v.classification.category.as_str().into()),
        );
        compare(
            "scope",
            self.scope.map(|s| format!("{s:?}")),
            Some(format!("{:?}", v.classification.scope)),
        );
        compare(
            "action",
            self.action.map(|a| a.as_str().into()),
            Some(v.recommendation.action.as_str().into()),
        );
        compare(
            "httpStatus",
            self.http_status.map(|s| s.to_string()),
            v.classification.http_status.map(|s| s.to_string()),
        );
        compare("team", self.team.clone(), v.recommendation.team.clone());
        compare(
            "deleteCandidate",
            self.delete_candidate.clone(),
            v.delete_candidate.clone(),
        );
        compare(
            "failingPods",
            self.failing_pods.map(|n| n.to_string()),
            Some(
                report
                    .pods
                    .iter()
                    .filter(|p| p.failures > 0)
                    .count()
                    .to_string(),
            ),
        );
        let show = |m: &BTreeMap<&str, u64>| {
            m.iter()
                .map(|(c, n)| format!("{c}={n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let got: BTreeMap<&str, u64> = report
            .matches
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(c, n)| (*c, *n))
            .collect();
        compare(
            "matches",
            self.matches.as_ref().map(|m| {
                show(
                    &m.iter()
                        .filter(|(_, n)| **n > 0)
                        .map(|(c, n)| (c.as_str(), *n))
                        .collect(),
                )
            }),
            Some(show(&got)),
        );
        out
    }
}

/// What replay prints as JSON: the verdict and the per-pod findings behind it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report<'a> {
    runbook: &'a str,
    alert: &'a str,
    window: Window,
    /// Failure records per category across all pods.
    matches: BTreeMap<&'a str, u64>,
    containers_read: &'a BTreeSet<String>,
    containers_skipped: &'a BTreeSet<String>,
    pods: Vec<PodReport<'a>>,
    related: Vec<RelatedReport<'a>>,
    verdict: VerdictReport<'a>,
}

/// The verdict with the phase a triage would settle in (before any guardrail is consulted).
#[derive(Serialize)]
struct VerdictReport<'a> {
    phase: Phase,
    #[serde(flatten)]
    verdict: &'a Verdict,
}

/// The lines read: all of them without `startsAt`.
#[derive(Serialize, Clone, Copy)]
struct Window {
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    until: Option<Timestamp>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodReport<'a> {
    name: &'a str,
    ready: bool,
    failures: u64,
    previous_container_failures: u64,
    #[serde(flatten)]
    findings: &'a StreamFindings,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RelatedReport<'a> {
    service: &'a str,
    pods: u32,
    matches: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PodMeta {
    #[serde(default = "ready_by_default")]
    ready: bool,
    #[serde(default)]
    restarted_at: Option<Timestamp>,
    #[serde(default)]
    restarts: i32,
    #[serde(default)]
    waiting_reason: Option<String>,
    /// `Reason (exit N)`, as status shows it.
    #[serde(default)]
    last_termination: Option<String>,
    /// `Reason: message`, as status shows them, newest first.
    #[serde(default)]
    events: Vec<String>,
}

fn ready_by_default() -> bool {
    true
}

impl PodMeta {
    fn state(&self, pod: &str) -> anyhow::Result<PodState> {
        let (reason, exit) = match self.last_termination.as_deref().map(str::trim) {
            None => (None, None),
            Some(text) => {
                let (reason, exit) = match text
                    .strip_suffix(')')
                    .and_then(|t| t.rsplit_once("(exit "))
                {
                    Some((reason, code)) => {
                        let code = code.trim().parse::<i32>().with_context(|| {
                            format!("pods.yaml: {pod}: lastTermination {text:?}: the exit code is not a number")
                        })?;
                        (reason.trim(), Some(code))
                    }
                    None => (text, None),
                };
                if reason.is_empty() {
                    bail!(
                        "pods.yaml: {pod}: lastTermination {text:?} names no reason, e.g. OOMKilled (exit 137)"
                    );
                }
                (Some(reason.to_string()), exit)
            }
        };
        Ok(PodState {
            ready: self.ready,
            restarts: self.restarts,
            waiting_reason: self.waiting_reason.clone(),
            last_termination_reason: reason,
            last_exit_code: exit,
            events: self.events.iter().map(|e| PodEvent::parse(e)).collect(),
        })
    }
}

/// `runbook check`: loads each file (bare runbooks or Runbook/ClusterRunbook manifests) as the
/// operator would, and says per file what it holds or what is wrong. Fails when any file does.
pub fn check_runbooks(files: &[PathBuf], out: &mut dyn Write) -> anyhow::Result<()> {
    let mut failed = 0;
    for path in files {
        let loaded = fs::read_to_string(path)
            .map_err(anyhow::Error::from)
            .and_then(|text| Ok(Catalog::from_yaml(&[&text])?));
        match loaded {
            Ok(catalog) => writeln!(out, "{}: ok ({})", path.display(), catalog.ids().join(", "))?,
            Err(e) => {
                failed += 1;
                writeln!(out, "{}: {e}", path.display())?;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} runbook files are invalid", files.len());
    }
    Ok(())
}

pub fn run(args: &ReplayArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let (alert, manifest_runbook, manifest_window) = read_alert(&args.alert)?;
    // Read first, so a broken expectation fails before any log is read.
    let expected = args.expect.as_deref().map(Expectation::read).transpose()?;
    let file_catalog = match &args.runbook_file {
        Some(path) => {
            let text =
                fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            Some(
                Catalog::from_yaml(&[&text])
                    .with_context(|| format!("loading {}", path.display()))?,
            )
        }
        None => None,
    };
    let catalog = file_catalog.as_ref().unwrap_or_else(|| Catalog::builtin());
    let requested = args.runbook.as_deref().or(manifest_runbook.as_deref());
    let runbook = catalog.select(requested, &alert)?;
    let compiled = runbook.compile(&alert)?;
    let length = match &manifest_window {
        Some(w) => crate::duration::parse(w)
            .map_err(|e| anyhow::anyhow!("{}: spec.window: {e}", args.alert.display()))?,
        None => runbook.default_window(),
    };
    let length = SignedDuration::try_from(length)?;
    let start = alert.starts_at.as_ref().map(|t| t.0);
    let window = Window {
        since: start.and_then(|s| s.checked_sub(BEFORE_ALERT).ok()),
        until: start.and_then(|s| s.checked_add(length).ok()),
    };

    let (pods, containers) = read_pods(&args.logs, &compiled, window, args.container.as_deref())?;
    let related = read_related(&args.logs.join(RELATED_DIR), &compiled, window)?;
    let env_info = read_env_info(&args.logs, &compiled)?;
    let input = AssessInput {
        alert,
        pods,
        related,
        env_info,
        containers,
    };
    let mut matches = BTreeMap::new();
    for p in &input.pods {
        for (c, n) in &p.findings.matches {
            *matches.entry(c.as_str()).or_default() += n;
        }
    }
    let verdict = compiled.assess(&input);
    let report = Report {
        runbook: runbook.id(),
        alert: &input.alert.name,
        window,
        matches,
        containers_read: &input.containers.read,
        containers_skipped: &input.containers.skipped,
        pods: input
            .pods
            .iter()
            .map(|p| PodReport {
                name: &p.name,
                ready: p.ready,
                failures: p.findings.failures(),
                previous_container_failures: p.restart.as_ref().map_or(0, |r| r.previous_failures),
                findings: &p.findings,
            })
            .collect(),
        related: input
            .related
            .iter()
            .map(|r| RelatedReport {
                service: &r.service,
                pods: r.pods,
                matches: r.findings.failures(),
            })
            .collect(),
        verdict: VerdictReport {
            phase: phase::verdict_phase(verdict.recommendation.action),
            verdict: &verdict,
        },
    };
    match args.output {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &report)?;
            writeln!(out)?;
        }
        OutputFormat::Table => write_table(out, runbook.title(), &report)?,
    }
    if let Some(expect) = &expected {
        let differences = expect.differences(&report);
        if !differences.is_empty() {
            bail!(
                "the verdict differs from {}:\n  {}",
                args.expect.as_deref().unwrap_or(Path::new("")).display(),
                differences.join("\n  ")
            );
        }
    }
    Ok(())
}

/// The alert, and the runbook and window a manifest names, from either an Alert or an
/// AlertTriage.
fn read_alert(path: &Path) -> anyhow::Result<(Alert, Option<String>, Option<String>)> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    match doc.get("spec") {
        Some(spec) => {
            let spec: AlertTriageSpec = serde_yaml::from_value(spec.clone())
                .with_context(|| format!("{}: spec is not an AlertTriage spec", path.display()))?;
            Ok((spec.alert, spec.runbook, spec.window))
        }
        None => {
            let alert = serde_yaml::from_value(doc).with_context(|| {
                format!(
                    "{}: expected an alert (name, labels) or an AlertTriage",
                    path.display()
                )
            })?;
            Ok((alert, None, None))
        }
    }
}

fn read_pods(
    folder: &Path,
    compiled: &CompiledRunbook,
    window: Window,
    container: Option<&str>,
) -> anyhow::Result<(Vec<PodInput>, Containers)> {
    let meta_path = folder.join("pods.yaml");
    let meta: BTreeMap<String, PodMeta> = if meta_path.exists() {
        let text = fs::read_to_string(&meta_path)
            .with_context(|| format!("reading {}", meta_path.display()))?;
        serde_yaml::from_str(&text).with_context(|| format!("parsing {}", meta_path.display()))?
    } else {
        BTreeMap::new()
    };
    let states = meta
        .iter()
        .map(|(name, m)| Ok((name.clone(), m.state(name)?)))
        .collect::<anyhow::Result<BTreeMap<String, PodState>>>()?;
    let unlisted = PodState {
        ready: true,
        ..PodState::default()
    };
    let state = |pod: &str| states.get(pod).unwrap_or(&unlisted);
    let mut containers = Containers {
        wanted: container.map(str::to_string),
        ..Containers::default()
    };

    #[derive(Default)]
    struct Read {
        current: StreamFindings,
        previous: Option<StreamFindings>,
    }
    let mut read: BTreeMap<String, Read> = meta
        .keys()
        .map(|name| (name.clone(), Read::default()))
        .collect();
    for entry in sorted_entries(folder)? {
        let name = file_name(&entry);
        if entry.is_dir() {
            if name == RELATED_DIR {
                continue;
            }
            let scanner = || compiled.scanner_for(state(&name));
            let pod = read.entry(name.clone()).or_default();
            for file in sorted_entries(&entry)?.into_iter().filter(|p| is_log(p)) {
                let file_name = file_name(&file);
                let (c, previous) = match file_name.strip_suffix(PREVIOUS) {
                    Some(c) => (c.to_string(), true),
                    None => (log_stem(&file).unwrap_or_default(), false),
                };
                if container.is_some_and(|wanted| wanted != c) {
                    containers.skipped.insert(c);
                    continue;
                }
                containers.read.insert(c);
                let scanned = scan_file(&file, scanner(), window)?;
                if previous {
                    pod.previous.get_or_insert_default().merge(scanned);
                } else {
                    pod.current.merge(scanned);
                }
            }
        } else if let Some(pod) = log_stem(&entry) {
            if let Some(wanted) = container {
                bail!(
                    "--container {wanted}: {} holds no container name; use {}/<container>.log",
                    entry.display(),
                    pod
                );
            }
            let scanned = scan_file(&entry, compiled.scanner_for(state(&pod)), window)?;
            read.entry(pod).or_default().current.merge(scanned);
        }
    }
    let pods = read
        .into_iter()
        .map(|(name, Read { current, previous })| {
            let meta = meta.get(&name);
            let restart = previous.as_ref().map(|p| Restart {
                at: meta.and_then(|m| m.restarted_at).or(current.first_line),
                previous_failures: p.failures(),
                current_until: current.last_line,
            });
            let mut findings = current;
            if let Some(p) = previous {
                findings.merge(p);
            }
            findings.merge(compiled.state_findings(state(&name)));
            PodInput {
                ready: meta.is_none_or(|m| m.ready),
                name,
                findings,
                restart,
            }
        })
        .collect();
    Ok((pods, containers))
}

fn read_related(
    folder: &Path,
    compiled: &CompiledRunbook,
    window: Window,
) -> anyhow::Result<Vec<RelatedInput>> {
    if !folder.is_dir() {
        return Ok(Vec::new());
    }
    let mut related = Vec::new();
    for service_dir in sorted_entries(folder)?.into_iter().filter(|p| p.is_dir()) {
        let mut input = RelatedInput {
            service: file_name(&service_dir),
            pods: 0,
            findings: StreamFindings::default(),
        };
        for file in sorted_entries(&service_dir)?
            .into_iter()
            .filter(|p| is_log(p))
        {
            input.pods += 1;
            input
                .findings
                .merge(scan_file(&file, compiled.related_scanner(), window)?);
        }
        related.push(input);
    }
    Ok(related)
}

fn read_env_info(folder: &Path, compiled: &CompiledRunbook) -> anyhow::Result<EnvInfo> {
    let Some(spec) = compiled.runbook().env_info_spec() else {
        return Ok(EnvInfo::NotNeeded);
    };
    let path = folder.join("env-info.yaml");
    if !path.exists() {
        return Ok(EnvInfo::Missing {
            reason: format!(
                "no env-info.yaml in {} (stands for ConfigMap {})",
                folder.display(),
                spec.config_map
            ),
        });
    }
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let data: BTreeMap<String, String> = serde_yaml::from_str(&text)
        .with_context(|| format!("parsing {} as KEY: value pairs", path.display()))?;
    Ok(spec.read(&data, path.display().to_string()))
}

/// Streams the file's lines in the window through the scanner in fixed chunks, as the
/// controller streams logs.
fn scan_file(
    path: &Path,
    mut scanner: LogScanner<'_>,
    window: Window,
) -> anyhow::Result<StreamFindings> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut cut = WindowCut::new(window.since, window.until);
    let mut buf = vec![0; CHUNK];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 || cut.ended() {
            cut.finish(&mut scanner);
            return Ok(scanner.finish());
        }
        cut.push(&mut scanner, &buf[..n]);
    }
}

fn sorted_entries(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        bail!("{} is not a folder", dir.display());
    }
    let mut entries = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("listing {}", dir.display()))?;
    entries.sort();
    Ok(entries)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn is_log(path: &Path) -> bool {
    path.is_file() && path.extension().is_some_and(|e| e == "log")
}

fn log_stem(path: &Path) -> Option<String> {
    is_log(path).then(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()))?
}

fn write_table(out: &mut dyn Write, title: &str, report: &Report) -> std::io::Result<()> {
    let v = report.verdict.verdict;
    let c = &v.classification;
    let r = &v.recommendation;
    let dash = || "-".to_string();
    let rows = [
        ("Runbook", format!("{} ({title})", report.runbook)),
        ("Alert", report.alert.to_string()),
        ("Phase", report.verdict.phase.as_str().to_string()),
        ("Category", c.category.as_str().to_string()),
        (
            "HTTP status",
            c.http_status.map_or_else(dash, |s| s.to_string()),
        ),
        ("Scope", format!("{:?}", c.scope)),
        ("Action", r.action.as_str().to_string()),
        ("Team", r.team.clone().unwrap_or_else(dash)),
        (
            "Delete candidate",
            v.delete_candidate.clone().unwrap_or_else(dash),
        ),
        ("Classification", c.reason.clone()),
        ("Reason", r.reason.clone()),
    ];
    for (key, value) in rows {
        writeln!(out, "{:<17} {value}", format!("{key}:"))?;
    }
    let time = |t: Option<Timestamp>| t.map_or_else(|| "-".to_string(), |t| t.to_string());
    writeln!(
        out,
        "{:<17} {} to {}",
        "Window:",
        time(report.window.since),
        time(report.window.until)
    )?;
    if !report.containers_skipped.is_empty() || !report.containers_read.is_empty() {
        let list = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
        writeln!(
            out,
            "{:<17} read {}; skipped {}",
            "Containers:",
            list(report.containers_read),
            if report.containers_skipped.is_empty() {
                "none".to_string()
            } else {
                list(report.containers_skipped)
            }
        )?;
    }

    let width = report
        .pods
        .iter()
        .map(|p| p.name.len())
        .max()
        .unwrap_or(0)
        .max(3);
    writeln!(
        out,
        "\n{:<width$}  {:<5}  {:>8}  {:>8}  MATCHES",
        "POD", "READY", "LINES", "FAILURES"
    )?;
    for pod in &report.pods {
        let matches = pod
            .findings
            .matches
            .iter()
            .map(|(c, n)| format!("{}={n}", c.as_str()))
            .collect::<Vec<_>>()
            .join(" ");
        writeln!(
            out,
            "{:<width$}  {:<5}  {:>8}  {:>8}  {}",
            pod.name,
            pod.ready,
            pod.findings.lines,
            pod.failures,
            if matches.is_empty() {
                "-".into()
            } else {
                matches
            }
        )?;
    }
    for rel in &report.related {
        writeln!(
            out,
            "related {}: {} matching lines in {} pods",
            rel.service, rel.matches, rel.pods
        )?;
    }
    if let Some(i) = &v.intermittency {
        let markers: Vec<String> = i
            .success_markers
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        writeln!(
            out,
            "\nIntermittency: {} failures, intermittent={} ({}); {} successes between the first and last failure{}; last success before {}, first after {}",
            i.failures,
            i.intermittent,
            markers.join(", "),
            i.successes_between_failures,
            if i.succeeding_pods.is_empty() {
                String::new()
            } else {
                format!(" in {}", i.succeeding_pods.join(", "))
            },
            i.last_success_before
                .as_ref()
                .map_or_else(|| "-".to_string(), |t| t.0.to_string()),
            i.first_success_after
                .as_ref()
                .map_or_else(|| "-".to_string(), |t| t.0.to_string()),
        )?;
    }
    if let Some(k) = &v.api_key_rotation {
        writeln!(
            out,
            "\nAPI key rotation: controller IDs [{}]",
            k.controller_ids.join(", ")
        )?;
        writeln!(out, "  account: {}", k.account.as_deref().unwrap_or("-"))?;
        writeln!(
            out,
            "  resource group: {}",
            k.resource_group.as_deref().unwrap_or("-")
        )?;
        writeln!(out, "  source: {}", k.source.as_deref().unwrap_or("-"))?;
    }
    if !r.next_steps.is_empty() {
        writeln!(out, "\nNext steps:")?;
        for (i, step) in r.next_steps.iter().enumerate() {
            writeln!(out, "  {}. {step}", i + 1)?;
        }
    }
    if let Some(n) = &v.notification {
        writeln!(out, "\nNotification: {}\n{}", n.title, n.body.trim_end())?;
    }
    Ok(())
}

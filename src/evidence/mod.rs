//! Gathers what a human would look at: the target pods' state, their recent warning Events and
//! their logs in the window. Logs are streamed straight into the runbook's scanner, so memory
//! stays bounded however large a log is; when a log holds more than the byte limit, its newest
//! part is read, and status says which span that was. A budget shared by all triages
//! ([`LogBudget`]) bounds how many log bytes are being read at once.

mod budget;
mod events;
mod pods;

use std::collections::{BTreeMap, BTreeSet};

use futures::{AsyncBufRead, AsyncBufReadExt};
use futures::{StreamExt, stream};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::api::{Api, ListParams, LogParams};
use tracing::{debug, instrument};

use crate::crd::{PodEvidence, TargetSelector};
use crate::redact::redact;
use crate::runbook::{
    CompiledRunbook, Containers, LogScanner, PodEvent, PodState, Restart, StreamFindings,
    WindowCut, leading_time,
};

pub use budget::LogBudget;
pub use events::{Freshness, WarningEvents};
pub use pods::{PodFacts, is_ready};

/// Warning Events kept per pod; the newest ones.
const EVENTS_PER_POD: usize = 5;
/// Pods read per related service; enough to say whether it shows the signature.
const RELATED_PODS_PER_SERVICE: usize = 3;
/// The newest lines read to learn a log's line length and whether its lines carry times. A
/// window that fits in them is scanned from the probe itself, in one request.
const PROBE_LINES: u64 = 1000;
const PROBE_BYTES: u64 = 256 * 1024;
/// What `timestamps=true` adds to a line at most: RFC 3339 with nanoseconds and a space.
const KUBELET_TIMESTAMP_BYTES: u64 = 31;
/// Reads of one log before settling for what the last one got.
const MAX_READ_ATTEMPTS: u32 = 3;
/// A log stream that delivers nothing for this long is given up (and recorded as unreadable):
/// a stalled kubelet must not hold a triage slot and its byte budget for ever. A slow stream
/// that keeps delivering is read to the end.
const LOG_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The stream's next bytes, or an error once it has been silent for `idle`.
async fn next_bytes<R: AsyncBufRead + Unpin>(
    stream: &mut R,
    idle: std::time::Duration,
) -> Result<&[u8], kube::Error> {
    match tokio::time::timeout(idle, stream.fill_buf()).await {
        Ok(read) => read.map_err(kube::Error::ReadEvents),
        Err(_) => Err(kube::Error::ReadEvents(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("the log stream sent nothing for {}s", idle.as_secs()),
        ))),
    }
}
/// A window that ended longer ago than this is read from its start (see [`Plan::until`]).
const ENDED: jiff::SignedDuration = jiff::SignedDuration::from_mins(1);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listing pods in {namespace} with {selector}: {source}")]
    ListPods {
        namespace: String,
        selector: String,
        source: kube::Error,
    },
    #[error("listing Events in {namespace}: {source}")]
    ListEvents {
        namespace: String,
        source: kube::Error,
    },
}

/// What to read.
#[derive(Debug, Clone)]
pub struct Plan {
    pub namespace: String,
    pub selector: TargetSelector,
    pub container: Option<String>,
    pub since: Timestamp,
    /// End of the window: lines after it are not read. A window that ended a while ago is
    /// read from its start, since the log's newest lines lie beyond it.
    pub until: Option<Timestamp>,
    /// Most bytes read of one container's log in the window: its newest part.
    pub log_byte_limit: u64,
    pub concurrency: usize,
    /// Shared by every triage: bounds the log bytes being read at once.
    pub bytes_in_flight: LogBudget,
    /// Shared by every triage: one Events list per namespace at a time.
    pub events: WarningEvents,
    /// How recent that list must be: a triage may share one made just before it asked, a
    /// remediation's last look before it acts may not.
    pub events_fresh: Freshness,
    /// The pods may come from the API server's watch cache, which can lag etcd by moments: a
    /// triage's evidence. A remediation's last look before it acts reads them from etcd.
    pub pods_from_cache: bool,
}

/// One pod's facts and scan results.
#[derive(Debug, Clone)]
pub struct GatheredPod {
    pub facts: PodFacts,
    pub findings: StreamFindings,
    pub events: Vec<PodEvent>,
    pub log_errors: Vec<String>,
    /// The byte limit left older lines of the window unread.
    pub older_logs_unread: bool,
    /// Set when previous containers' logs were read.
    pub restart: Option<Restart>,
    /// Containers read, and those left out by `spec.target.container`.
    pub containers_read: Vec<String>,
    pub containers_skipped: Vec<String>,
}

impl GatheredPod {
    pub fn to_evidence(&self) -> PodEvidence {
        let f = &self.facts;
        PodEvidence {
            name: f.name.clone(),
            uid: f.uid.clone(),
            phase: f.phase.clone(),
            ready: f.ready,
            restarts: f.restarts,
            owner: f.owner.clone(),
            waiting_reason: f.waiting_reason.clone(),
            last_termination: f.last_termination.clone(),
            matches: self
                .findings
                .matches
                .iter()
                .map(|(c, n)| (c.as_str().to_string(), *n))
                .collect(),
            samples: self.findings.samples.clone(),
            events: self.events.iter().map(PodEvent::to_string).collect(),
            lines_scanned: self.findings.lines,
            bytes_scanned: self.findings.bytes,
            logs_from: self.findings.first_line.map(Time),
            logs_to: self.findings.last_line.map(Time),
            older_logs_unread: self.older_logs_unread,
            log_error: (!self.log_errors.is_empty()).then(|| self.log_errors.join("; ")),
            previous_container_matches: self.restart.as_ref().map_or(0, |r| r.previous_failures),
            restarted_at: self.restart.as_ref().and_then(|r| r.at).map(Time),
        }
    }
}

/// The containers read and skipped across pods, by name.
pub fn containers(pods: &[GatheredPod], wanted: Option<&str>) -> Containers {
    let mut c = Containers {
        wanted: wanted.map(str::to_string),
        ..Containers::default()
    };
    for p in pods {
        c.read.extend(p.containers_read.iter().cloned());
        c.skipped.extend(p.containers_skipped.iter().cloned());
    }
    c
}

#[derive(Debug, Default)]
pub struct Gathered {
    pub pods: Vec<GatheredPod>,
    /// Anything that limited the evidence, in words for status.
    pub notes: Vec<String>,
}

/// Reads the target pods, their Events and logs.
#[instrument(skip_all, fields(namespace = %plan.namespace, selector = %plan.selector.to_query()))]
pub async fn gather(
    client: &Client,
    plan: &Plan,
    runbook: &CompiledRunbook,
) -> Result<Gathered, Error> {
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &plan.namespace);
    let pods = list_pods(
        &pods_api,
        &plan.namespace,
        &plan.selector.to_query(),
        plan.pods_from_cache,
    )
    .await?;
    debug!(pods = pods.len(), "found target pods");

    let events = warning_events(client, plan).await?;

    let results: Vec<(GatheredPod, Option<String>)> = stream::iter(pods)
        .map(|pod| gather_pod(&pods_api, pod, plan, runbook, &events))
        .buffer_unordered(plan.concurrency.max(1))
        .collect()
        .await;

    let mut gathered = Gathered::default();
    for (pod, note) in results {
        if let Some(note) = note {
            gathered.notes.push(note);
        }
        gathered.pods.push(pod);
    }
    // Stable order for status: failing pods first, then by name.
    gathered.pods.sort_by(|a, b| {
        b.findings
            .failures()
            .cmp(&a.findings.failures())
            .then_with(|| a.facts.name.cmp(&b.facts.name))
    });
    Ok(gathered)
}

/// Scans one pod's logs in the plan's window, e.g. a replacement pod after a remediation.
pub async fn scan_one(
    client: &Client,
    plan: &Plan,
    pod: Pod,
    runbook: &CompiledRunbook,
) -> GatheredPod {
    let api: Api<Pod> = Api::namespaced(client.clone(), &plan.namespace);
    gather_pod(&api, pod, plan, runbook, &BTreeMap::new())
        .await
        .0
}

async fn gather_pod(
    api: &Api<Pod>,
    pod: Pod,
    plan: &Plan,
    runbook: &CompiledRunbook,
    events: &BTreeMap<String, Vec<PodEvent>>,
) -> (GatheredPod, Option<String>) {
    let facts = PodFacts::from_pod(&pod);
    let pod_events = events.get(&facts.uid).cloned().unwrap_or_default();
    let state = facts.state(&pod_events);
    let mut outcome = read_pod_logs(api, &pod, plan, runbook, Scan::Pod(&state)).await;
    outcome.findings.merge(runbook.state_findings(&state));
    let restart = outcome.previous_read.then_some(Restart {
        at: facts.restarted_at,
        previous_failures: outcome.previous_failures,
        current_until: outcome.current_until,
    });
    let gathered = GatheredPod {
        findings: outcome.findings,
        facts,
        events: pod_events,
        log_errors: outcome.errors,
        older_logs_unread: outcome.older_unread,
        restart,
        containers_read: outcome.read,
        containers_skipped: outcome.skipped,
    };
    (gathered, outcome.note)
}

/// Pods of the runbook's related services in the namespace (other than the target pods), scanned
/// for the related signature. Returns (service, pods read, findings) per service that has pods.
#[instrument(skip_all, fields(namespace = %plan.namespace))]
pub async fn gather_related(
    client: &Client,
    plan: &Plan,
    runbook: &CompiledRunbook,
    label_key: &str,
    services: &[String],
    exclude_uids: &BTreeSet<String>,
) -> Result<Vec<(String, u32, StreamFindings)>, Error> {
    if services.is_empty() {
        return Ok(Vec::new());
    }
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &plan.namespace);
    let selector = format!("{label_key} in ({})", services.join(","));
    let mut by_service: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
    for pod in list_pods(&pods_api, &plan.namespace, &selector, plan.pods_from_cache).await? {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if exclude_uids.contains(&uid) {
            continue;
        }
        let service = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(label_key))
            .cloned()
            .unwrap_or_default();
        let group = by_service.entry(service).or_default();
        if group.len() < RELATED_PODS_PER_SERVICE {
            group.push(pod);
        }
    }
    let mut out = Vec::new();
    for (service, pods) in by_service {
        let mut findings = StreamFindings::default();
        for pod in &pods {
            findings.merge(
                read_pod_logs(&pods_api, pod, plan, runbook, Scan::Related)
                    .await
                    .findings,
            );
        }
        out.push((service, pods.len() as u32, findings));
    }
    Ok(out)
}

async fn list_pods(
    api: &Api<Pod>,
    namespace: &str,
    selector: &str,
    from_cache: bool,
) -> Result<Vec<Pod>, Error> {
    let params = ListParams::default().labels(selector);
    // A consistent list waits until the cache has caught up with etcd; under load that wait
    // is most of the request.
    let params = if from_cache {
        params.match_any()
    } else {
        params
    };
    Ok(api
        .list(&params)
        .await
        .map_err(|source| Error::ListPods {
            namespace: namespace.to_string(),
            selector: selector.to_string(),
            source,
        })?
        .items)
}

#[derive(Default)]
struct LogOutcome {
    findings: StreamFindings,
    errors: Vec<String>,
    note: Option<String>,
    older_unread: bool,
    previous_read: bool,
    previous_failures: u64,
    current_until: Option<Timestamp>,
    read: Vec<String>,
    skipped: Vec<String>,
}

/// What a log is scanned for.
#[derive(Clone, Copy)]
enum Scan<'a> {
    /// Failure records of a target pod in this state.
    Pod(&'a PodState),
    /// The related-services signature.
    Related,
}

/// Reads each selected container's log (and the previous container's, after a restart)
/// through a scanner. Problems are recorded, never fatal: one unreadable pod must not hide the
/// others.
async fn read_pod_logs(
    api: &Api<Pod>,
    pod: &Pod,
    plan: &Plan,
    runbook: &CompiledRunbook,
    scan: Scan<'_>,
) -> LogOutcome {
    let mut outcome = LogOutcome::default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let containers = pods::containers(pod);
    let selected: Vec<&pods::ContainerInfo> = match &plan.container {
        Some(wanted) => {
            let found: Vec<_> = containers.iter().filter(|c| &c.name == wanted).collect();
            if found.is_empty() {
                outcome
                    .errors
                    .push(format!("pod has no container named {wanted:?}"));
            }
            found
        }
        None => containers.iter().collect(),
    };
    outcome.read = selected.iter().map(|c| c.name.clone()).collect();
    outcome.skipped = containers
        .iter()
        .filter(|c| !outcome.read.contains(&c.name))
        .map(|c| c.name.clone())
        .collect();
    for container in selected {
        let mut passes = vec![false];
        if container.restarts > 0 {
            passes.push(true);
        }
        for previous in passes {
            let which = format!(
                "{}{}",
                container.name,
                if previous { " (previous)" } else { "" }
            );
            let stream = Stream {
                pod: &name,
                container: &container.name,
                previous,
            };
            match read_newest(api, &stream, plan, runbook, scan).await {
                Ok(read) => {
                    if previous {
                        outcome.previous_read = true;
                        outcome.previous_failures += read.findings.failures();
                    } else {
                        outcome.current_until = outcome.current_until.max(read.findings.last_line);
                    }
                    if let Some(until) = read.newer_unread {
                        outcome.errors.push(format!(
                            "{which}: the window holds more than the {} byte limit; read its oldest {} bytes, up to {until} (the window ended at {})",
                            plan.log_byte_limit,
                            read.findings.bytes,
                            plan.until.map(|t| t.to_string()).unwrap_or_default()
                        ));
                    }
                    if read.older_unread {
                        outcome.older_unread = true;
                        outcome.errors.push(format!(
                            "{which}: the window holds more than the {} byte limit; read its newest {} bytes{}",
                            plan.log_byte_limit,
                            read.findings.bytes,
                            read.findings
                                .first_line
                                .map(|t| format!(", from {t}"))
                                .unwrap_or_default()
                        ));
                    }
                    outcome.findings.merge(read.findings);
                }
                Err(kube::Error::Api(status)) if status.code == 404 && !previous => {
                    outcome.note = Some(format!(
                        "pod {name} disappeared while its logs were being read"
                    ));
                    return outcome;
                }
                Err(e) => outcome
                    .errors
                    .push(format!("{which}: {}", redact(&short_error(&e)))),
            }
        }
    }
    outcome
}

/// One container log of a pod.
struct Stream<'a> {
    pod: &'a str,
    container: &'a str,
    previous: bool,
}

struct StreamRead {
    findings: StreamFindings,
    /// The window held lines older than those read.
    older_unread: bool,
    /// A window read from its start held more than the byte limit: the time read up to.
    newer_unread: Option<Timestamp>,
}

/// Reads the newest part of the window that fits the byte limit.
///
/// The API server's `limitBytes` keeps the start of what it sends, so asked for the whole
/// window it would return the oldest lines and never the minutes before the alert. Instead a
/// probe of the newest lines measures how long lines are, and the read asks for as many of the
/// newest lines (`tailLines`) as should fit; if they do not, it asks again for fewer. A window
/// the probe read whole is scanned from the probe, without a second request. The probe also
/// tells whether the lines carry their own timestamps: only when they do not is the kubelet
/// asked to prefix its own to the full read, which adds about 31 bytes to every line.
async fn read_newest(
    api: &Api<Pod>,
    stream: &Stream<'_>,
    plan: &Plan,
    runbook: &CompiledRunbook,
    scan: Scan<'_>,
) -> Result<StreamRead, kube::Error> {
    let limit = plan.log_byte_limit.max(1);
    let base = LogParams {
        container: Some(stream.container.to_string()),
        previous: stream.previous,
        since_time: Some(plan.since),
        ..LogParams::default()
    };
    let new_scanner = || match scan {
        Scan::Pod(state) => runbook.scanner_for(state),
        Scan::Related => runbook.related_scanner(),
    };
    let probe = {
        let _reserved = plan.bytes_in_flight.reserve(PROBE_BYTES.min(limit)).await;
        let probe = probe(api, stream.pod, &base, limit).await?;
        if probe.lines == 0 {
            return Ok(StreamRead {
                findings: StreamFindings::default(),
                older_unread: false,
                newer_unread: None,
            });
        }
        if probe.whole_window {
            // Lines with times of their own are scanned as they are, without the kubelet's.
            let text = if probe.own_times {
                without_kubelet_times(&probe.text)
            } else {
                probe.text
            };
            let mut scanner = new_scanner();
            let mut window = WindowCut::new(None, plan.until);
            window.push(&mut scanner, &text);
            window.finish(&mut scanner);
            return Ok(StreamRead {
                findings: scanner.finish(),
                older_unread: false,
                newer_unread: None,
            });
        }
        probe
    };
    let _reserved = plan.bytes_in_flight.reserve(limit).await;
    let timestamps = !probe.own_times;
    let per_line = probe.bytes.div_ceil(probe.lines)
        + if timestamps {
            KUBELET_TIMESTAMP_BYTES
        } else {
            0
        };
    if plan.until.is_some_and(|u| u + ENDED < Timestamp::now()) {
        // The newest lines lie beyond the window's end: read it from its start instead.
        let params = LogParams {
            limit_bytes: Some(limit.min(i64::MAX as u64) as i64),
            timestamps,
            ..base.clone()
        };
        let (findings, read, reached_end) =
            read_once(api, stream.pod, &params, limit, plan.until, new_scanner()).await?;
        let newer_unread = (read >= limit && !reached_end)
            .then_some(findings.last_line)
            .flatten();
        return Ok(StreamRead {
            findings,
            older_unread: false,
            newer_unread,
        });
    }
    let fits = |lines: u64| (lines * 9 / 10).max(1);
    let mut tail = fits(limit / per_line.max(1));
    let mut attempts = 0;
    loop {
        attempts += 1;
        let params = LogParams {
            tail_lines: Some(tail.min(i64::MAX as u64) as i64),
            limit_bytes: Some(limit.min(i64::MAX as u64) as i64),
            timestamps,
            ..base.clone()
        };
        let (findings, read, _) =
            read_once(api, stream.pod, &params, limit, plan.until, new_scanner()).await?;
        let cut = read >= limit;
        if cut && attempts < MAX_READ_ATTEMPTS && findings.lines > 1 {
            // The cut fell before the newest lines: ask for fewer than were read.
            tail = fits(findings.lines - 1);
            continue;
        }
        let older_unread = cut || findings.lines >= tail;
        return Ok(StreamRead {
            findings,
            older_unread,
            newer_unread: None,
        });
    }
}

/// What the newest lines of a log's window look like.
struct Probe {
    /// The lines read, each with the kubelet's timestamp in front.
    text: Vec<u8>,
    lines: u64,
    /// Their bytes without the kubelet's timestamps.
    bytes: u64,
    /// Every line starts with its own timestamp.
    own_times: bool,
    /// The probe read every line of the window.
    whole_window: bool,
}

/// Reads the newest lines of the window with the kubelet's timestamps, so that a window they
/// hold whole can be scanned as it is; at most `limit` bytes.
async fn probe(
    api: &Api<Pod>,
    pod: &str,
    base: &LogParams,
    limit: u64,
) -> Result<Probe, kube::Error> {
    let most = PROBE_BYTES.min(limit);
    let params = LogParams {
        tail_lines: Some(PROBE_LINES as i64),
        limit_bytes: Some(most as i64),
        timestamps: true,
        ..base.clone()
    };
    let mut text = Vec::new();
    read_stream(api, pod, &params, most, |bytes| {
        text.extend_from_slice(bytes);
        true
    })
    .await?;
    let (mut lines, mut bytes, mut own_times) = (0, 0, true);
    if !text.is_empty() {
        for line in text
            .strip_suffix(b"\n")
            .unwrap_or(&text)
            .split(|&b| b == b'\n')
        {
            let own = after_kubelet_time(line);
            lines += 1;
            bytes += own.len() as u64 + 1;
            own_times &= own.is_empty() || leading_time(own).is_some();
        }
    }
    let whole_window = lines < PROBE_LINES && (text.len() as u64) < most;
    Ok(Probe {
        text,
        lines,
        bytes,
        own_times,
        whole_window,
    })
}

/// A line read with `timestamps=true`, without the kubelet's timestamp and its space.
fn after_kubelet_time(line: &[u8]) -> &[u8] {
    line.iter()
        .position(|&b| b == b' ')
        .map_or(&line[..0], |space| &line[space + 1..])
}

/// Lines read with `timestamps=true`, as the container wrote them.
fn without_kubelet_times(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for line in text.split_inclusive(|&b| b == b'\n') {
        let (line, newline) = match line.strip_suffix(b"\n") {
            Some(l) => (l, true),
            None => (line, false),
        };
        out.extend_from_slice(after_kubelet_time(line));
        if newline {
            out.push(b'\n');
        }
    }
    out
}

/// One read of a log through `scanner`, up to the window's end: the findings, the bytes read
/// and whether a line past the end was reached.
async fn read_once(
    api: &Api<Pod>,
    pod: &str,
    params: &LogParams,
    limit: u64,
    until: Option<Timestamp>,
    mut scanner: LogScanner<'_>,
) -> Result<(StreamFindings, u64, bool), kube::Error> {
    let mut window = WindowCut::new(None, until);
    let read = stream_into(api, pod, params, limit, &mut scanner, &mut window).await?;
    let ended = window.ended();
    window.finish(&mut scanner);
    Ok((scanner.finish(), read, ended))
}

/// Reads at most `limit` bytes of one log stream into the scanner, chunk by chunk, through
/// the window's end; the read stops early at a line past it.
async fn stream_into(
    api: &Api<Pod>,
    pod: &str,
    params: &LogParams,
    limit: u64,
    scanner: &mut LogScanner<'_>,
    window: &mut WindowCut,
) -> Result<u64, kube::Error> {
    read_stream(api, pod, params, limit, |bytes| {
        window.push(scanner, bytes);
        !window.ended()
    })
    .await
}

/// Streams at most `limit` bytes of one log to `take`, chunk by chunk, until the log ends or
/// `take` answers `false`; a stream silent for [`LOG_IDLE_TIMEOUT`] is an error. The bytes read.
async fn read_stream(
    api: &Api<Pod>,
    pod: &str,
    params: &LogParams,
    limit: u64,
    mut take: impl FnMut(&[u8]) -> bool,
) -> Result<u64, kube::Error> {
    let stream = api.log_stream(pod, params).await?;
    let mut stream = std::pin::pin!(stream);
    let mut read: u64 = 0;
    while read < limit {
        let buf = next_bytes(&mut stream, LOG_IDLE_TIMEOUT).await?;
        if buf.is_empty() {
            break;
        }
        let n = buf.len().min((limit - read) as usize);
        let more = take(&buf[..n]);
        stream.as_mut().consume_unpin(n);
        read += n as u64;
        if !more {
            break;
        }
    }
    Ok(read)
}

fn short_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}

/// Warning Events of pods in the namespace since the window started, newest first, by pod UID.
async fn warning_events(
    client: &Client,
    plan: &Plan,
) -> Result<BTreeMap<String, Vec<PodEvent>>, Error> {
    let listed = plan
        .events
        .list(client, &plan.namespace, plan.events_fresh)
        .await?;
    let mut events: Vec<&events::WarningEvent> = listed
        .iter()
        .filter(|e| e.time.is_none_or(|t| t >= plan.since))
        .collect();
    events.sort_by_key(|e| std::cmp::Reverse(e.time));
    let mut by_uid: BTreeMap<String, Vec<PodEvent>> = BTreeMap::new();
    for e in events {
        let list = by_uid.entry(e.pod_uid.clone()).or_default();
        if list.len() < EVENTS_PER_POD {
            let reason = e.reason.as_deref().unwrap_or("Unknown");
            // Already shortened when listed.
            let message = e.message.as_deref().unwrap_or("");
            list.push(PodEvent {
                reason: redact(reason).into_owned(),
                message: redact(message).into_owned(),
                count: e.count,
            });
        }
    }
    Ok(by_uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_times_come_off_and_the_lines_stay_as_written() {
        let read = b"2026-11-21T10:00:00.000000001Z 2026-11-21T09:59:59Z first\n\
                     2026-11-21T10:00:01.5Z \n2026-11-21T10:00:02Z last, no newline";
        assert_eq!(
            without_kubelet_times(read),
            b"2026-11-21T09:59:59Z first\n\nlast, no newline".to_vec()
        );
        assert_eq!(without_kubelet_times(b""), Vec::<u8>::new());
    }

    #[tokio::test]
    async fn a_silent_log_stream_is_given_up_and_a_flowing_one_is_read() {
        let mut silent = futures::io::BufReader::new(futures::io::AsyncReadExt::chain(
            &b"first line\n"[..],
            SilentReader,
        ));
        let idle = std::time::Duration::from_millis(50);
        assert_eq!(
            next_bytes(&mut silent, idle).await.unwrap(),
            b"first line\n"
        );
        silent.consume_unpin(11);
        let err = next_bytes(&mut silent, idle).await.unwrap_err();
        assert!(err.to_string().contains("sent nothing"), "{err}");
        let mut done = &b""[..];
        assert!(next_bytes(&mut done, idle).await.unwrap().is_empty());
    }

    /// A kubelet that keeps the connection open and sends nothing.
    struct SilentReader;

    impl futures::io::AsyncRead for SilentReader {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &mut [u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::task::Poll::Pending
        }
    }
}

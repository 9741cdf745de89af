//! Pod logs served by the simulated kubelet (kwok), written as CRI log files.

use super::*;

// ------------------------------------------------------------------------------------------------
// Pod logs

/// Which stream a log's lines were written to; `kubectl logs` returns both, interleaved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Clone, Debug)]
enum Timing {
    /// Evenly spread over `span` ending at `end` (None: "now" when attached; for a previous
    /// log: just before the current log's span).
    Spread {
        end: Option<Timestamp>,
        span: SignedDuration,
    },
    /// First line at `start`, then `interval` apart.
    Start {
        start: Timestamp,
        interval: SignedDuration,
    },
    /// One timestamp per line.
    Explicit(Vec<Timestamp>),
}

/// A container's log: lines of arbitrary bytes (no `\n` inside a line) with timestamps.
/// Default timing: spread evenly over the 10 minutes before it is attached, the last line "now".
#[derive(Clone, Debug)]
pub struct PodLog {
    lines: Vec<Vec<u8>>,
    timing: Timing,
    stream: Stream,
}

pub const DEFAULT_LOG_SPAN: SignedDuration = SignedDuration::from_mins(10);

impl PodLog {
    /// From lines (text or bytes; may be non-UTF-8). Panics if a line contains `\n`.
    pub fn lines<I, L>(lines: I) -> PodLog
    where
        I: IntoIterator<Item = L>,
        L: AsRef<[u8]>,
    {
        let lines: Vec<Vec<u8>> = lines.into_iter().map(|l| l.as_ref().to_vec()).collect();
        for l in &lines {
            assert!(
                !l.contains(&b'\n'),
                "a log line cannot contain '\\n': {:?}",
                String::from_utf8_lossy(l)
            );
        }
        PodLog {
            lines,
            timing: Timing::Spread {
                end: None,
                span: DEFAULT_LOG_SPAN,
            },
            stream: Stream::Stdout,
        }
    }

    /// From the bytes of a plain-text log: one line per `\n` (a final `\n` does not start an
    /// empty line).
    pub fn from_bytes(bytes: &[u8]) -> PodLog {
        let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
        if lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        PodLog::lines(lines)
    }

    /// Lines with explicit timestamps (kept in the given order).
    pub fn timed<I, L>(lines: I) -> PodLog
    where
        I: IntoIterator<Item = (Timestamp, L)>,
        L: AsRef<[u8]>,
    {
        let (ts, ls): (Vec<Timestamp>, Vec<L>) = lines.into_iter().unzip();
        let mut log = PodLog::lines(ls);
        log.timing = Timing::Explicit(ts);
        log
    }

    /// Spread the lines evenly over `span`, the last line at the end of it.
    pub fn spread_over(mut self, span: Duration) -> PodLog {
        let span = SignedDuration::try_from(span).expect("span too large");
        self.timing = match self.timing {
            Timing::Spread { end, .. } => Timing::Spread { end, span },
            _ => Timing::Spread { end: None, span },
        };
        self
    }

    /// The last line's time (with the current or default span).
    pub fn ending_at(mut self, end: Timestamp) -> PodLog {
        let span = match self.timing {
            Timing::Spread { span, .. } => span,
            _ => DEFAULT_LOG_SPAN,
        };
        self.timing = Timing::Spread {
            end: Some(end),
            span,
        };
        self
    }

    /// First line at `start`, the next ones `interval` apart.
    pub fn starting_at(mut self, start: Timestamp, interval: Duration) -> PodLog {
        let interval = SignedDuration::try_from(interval).expect("interval too large");
        self.timing = Timing::Start { start, interval };
        self
    }

    /// Mark every line as written to stderr.
    pub fn stderr(mut self) -> PodLog {
        self.stream = Stream::Stderr;
        self
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The lines, as given.
    pub fn raw_lines(&self) -> &[Vec<u8>] {
        &self.lines
    }

    /// What `kubectl logs` returns for this log: every line followed by `\n`.
    pub fn expected_output(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for l in &self.lines {
            out.extend_from_slice(l);
            out.push(b'\n');
        }
        out
    }

    /// The timestamp of each line; `end` stands in for the attach time when the log is spread
    /// without an explicit end (for a previous log: the attach time minus the current log's span).
    pub fn timestamps_at(&self, end: Timestamp) -> Vec<Timestamp> {
        self.resolve(end)
    }

    fn resolve(&self, end_default: Timestamp) -> Vec<Timestamp> {
        let n = self.lines.len() as i64;
        match &self.timing {
            Timing::Spread { end, span } => {
                let end = end.unwrap_or(end_default);
                let span_ns = span.as_nanos();
                (0..n)
                    .map(|i| {
                        let offset = span_ns - span_ns * i128::from(i + 1) / i128::from(n);
                        end - SignedDuration::from_nanos(offset as i64)
                    })
                    .collect()
            }
            Timing::Start { start, interval } => (0..n)
                .map(|i| *start + SignedDuration::from_nanos(interval.as_nanos() as i64 * i))
                .collect(),
            Timing::Explicit(ts) => {
                assert_eq!(ts.len(), self.lines.len(), "one timestamp per line");
                ts.clone()
            }
        }
    }

    /// The file kwok serves: CRI log format, `<RFC 3339, 9 fraction digits> <stream> F <line>`.
    fn to_cri(&self, end_default: Timestamp) -> Vec<u8> {
        let stream = match self.stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        };
        let mut out = Vec::new();
        for (t, line) in self.resolve(end_default).iter().zip(&self.lines) {
            out.extend_from_slice(format!("{} {stream} F ", cri_timestamp(*t)).as_bytes());
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out
    }

    fn span(&self) -> SignedDuration {
        match self.timing {
            Timing::Spread { span, .. } => span,
            _ => SignedDuration::ZERO,
        }
    }
}

/// `2024-01-02T03:04:05.000000006Z`: the timestamp format of the CRI log files (and of
/// `kubectl logs --timestamps`).
pub fn cri_timestamp(t: Timestamp) -> String {
    let z = t.to_zoned(TimeZone::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        z.year(),
        z.month(),
        z.day(),
        z.hour(),
        z.minute(),
        z.second(),
        z.subsec_nanosecond()
    )
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("log path without a parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        unique_suffix()
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// The kwok `Logs` resource (kwok.x-k8s.io/v1alpha1, namespaced, named after its pod).
pub fn kwok_logs_resource() -> ApiResource {
    ApiResource {
        group: "kwok.x-k8s.io".into(),
        version: "v1alpha1".into(),
        api_version: "kwok.x-k8s.io/v1alpha1".into(),
        kind: "Logs".into(),
        plural: "logs".into(),
    }
}

/// Writes the log files under `podlogs_dir/<ns>/<pod>/` and applies the pod's kwok `Logs`
/// object (one entry per container with a file there), then waits until the API server serves
/// the container's log (and previous log). Same layout as scripts/pod-logs.sh.
pub async fn attach_logs(
    client: &Client,
    podlogs_dir: &Path,
    namespace: &str,
    pod: &str,
    container: &str,
    current: &PodLog,
    previous: Option<&PodLog>,
) -> Result<()> {
    let dir = podlogs_dir.join(namespace).join(pod);
    let now = Timestamp::now();
    write_atomically(&dir.join(format!("{container}.log")), &current.to_cri(now))?;
    let previous_path = dir.join(format!("{container}.previous.log"));
    match previous {
        Some(p) => {
            // A previous instance spread "until now" ends where the current log's span begins.
            let before = now - current.span();
            write_atomically(&previous_path, &p.to_cri(before))?
        }
        None => match std::fs::remove_file(&previous_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        },
    }

    let mut entries = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".log") && !n.ends_with(".previous.log") && !n.starts_with('.'))
        .collect();
    names.sort();
    for n in names {
        let c = n.trim_end_matches(".log");
        let mut entry = json!({"containers": [c], "logsFile": dir.join(&n)});
        let prev = dir.join(format!("{c}.previous.log"));
        if prev.exists() {
            entry["previousLogsFile"] = json!(prev);
        }
        entries.push(entry);
    }
    let obj = json!({
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Logs",
        "metadata": {"name": pod, "namespace": namespace, "labels": {"ato.triage.dev/pod-logs": "true"}},
        "spec": {"logs": entries},
    });
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &kwok_logs_resource());
    api.patch(
        pod,
        &PatchParams::apply("ato-test-harness").force(),
        &Patch::Apply(&obj),
    )
    .await
    .context("applying the kwok Logs object")?;

    // kwok learns about the object through a watch; wait until the log is served.
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + Duration::from_secs(30);
    for prev in [false, true] {
        if prev && previous.is_none() {
            continue;
        }
        let lp = LogParams {
            container: Some(container.to_string()),
            tail_lines: Some(1),
            previous: prev,
            ..Default::default()
        };
        loop {
            match pods.log_stream(pod, &lp).await {
                Ok(_) => break,
                Err(e) if Instant::now() > deadline => {
                    bail!("log (previous={prev}) still not served after 30s: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
    Ok(())
}

/// Reads a container's log through the API as raw bytes (kube's `Api::logs` wants UTF-8).
pub async fn read_log_bytes(pods: &Api<Pod>, pod: &str, lp: &LogParams) -> Result<Vec<u8>> {
    use futures::AsyncReadExt;
    let mut stream = pods
        .log_stream(pod, lp)
        .await
        .map_err(|e| anyhow!("logs of {pod}: {e}"))?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await?;
    Ok(buf)
}

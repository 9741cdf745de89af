//! The streaming log scanner: bytes in, bounded findings out.
//!
//! Memory stays bounded whatever the input: a line is kept up to [`MAX_LINE_BYTES`] (the rest
//! is counted but not matched), at most one record waits for its continuation line, and
//! samples and controller IDs are capped. Chunk boundaries never change the result.
//!
//! A line may start with the RFC 3339 timestamp the kubelet adds (`timestamps=true`); it is
//! stripped and becomes the record's time. Otherwise a JSON line's time fields are used.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Map, Value};

use super::compile::{Matchers, Prefilter, raw_haystack};
use super::success::SuccessTimes;
use crate::crd::Category;
use crate::redact::redact;

/// Longest line matched; longer lines are cut here for matching (their bytes still count).
pub const MAX_LINE_BYTES: usize = 16 * 1024;
const MAX_SAMPLES: usize = 3;
const MAX_SAMPLE_CHARS: usize = 240;
const MAX_CONTROLLER_IDS: usize = 20;
const MAX_ID_LEN: usize = 64;
/// The longest RFC 3339 timestamp with nanoseconds and an offset, plus slack.
const MAX_TIMESTAMP_LEN: usize = 40;

/// What one or more log streams showed.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamFindings {
    pub lines: u64,
    pub bytes: u64,
    /// Failure records per category (a record is a line, plus its continuation line if any).
    pub matches: BTreeMap<Category, u64>,
    /// Failure records per HTTP status read from them (a record counts once per status).
    pub http_statuses: BTreeMap<u16, u64>,
    /// At most three failure records, redacted and shortened, preferring distinct categories.
    pub samples: Vec<String>,
    /// IDs read from failure records (at most 20).
    pub controller_ids: BTreeSet<String>,
    /// Lines per success marker name.
    pub success_markers: BTreeMap<String, u64>,
    pub first_failure: Option<Timestamp>,
    pub last_failure: Option<Timestamp>,
    /// The first and the last failure per category, of the records that carry a time.
    #[serde(skip)]
    pub failure_times: BTreeMap<Category, (Timestamp, Timestamp)>,
    /// The first and the last line read that start with a timestamp (the kubelet's or the
    /// application's own): the span of log that was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_line: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_line: Option<Timestamp>,
    /// When the success markers were seen relative to the failures, one summary per stream
    /// read (streams are summarised apart: their lines interleave in time).
    #[serde(skip)]
    pub successes: Vec<SuccessTimes>,
}

impl StreamFindings {
    /// Adds another stream's findings (another container of the pod, another pod).
    pub fn merge(&mut self, other: StreamFindings) {
        self.lines += other.lines;
        self.bytes += other.bytes;
        for (category, n) in other.matches {
            *self.matches.entry(category).or_default() += n;
        }
        for (status, n) in other.http_statuses {
            *self.http_statuses.entry(status).or_default() += n;
        }
        for sample in other.samples {
            if self.samples.len() < MAX_SAMPLES && !self.samples.contains(&sample) {
                self.samples.push(sample);
            }
        }
        for id in other.controller_ids {
            if self.controller_ids.len() >= MAX_CONTROLLER_IDS {
                break;
            }
            self.controller_ids.insert(id);
        }
        for (name, n) in other.success_markers {
            *self.success_markers.entry(name).or_default() += n;
        }
        self.first_failure = min_some(self.first_failure, other.first_failure);
        self.last_failure = self.last_failure.max(other.last_failure);
        for (category, (first, last)) in other.failure_times {
            self.note_times(category, first, last);
        }
        self.first_line = min_some(self.first_line, other.first_line);
        self.last_line = self.last_line.max(other.last_line);
        self.successes.extend(other.successes);
    }

    /// Failure records of every category.
    pub fn failures(&self) -> u64 {
        self.matches.values().sum()
    }

    fn note_times(&mut self, category: Category, first: Timestamp, last: Timestamp) {
        let times = self.failure_times.entry(category).or_insert((first, last));
        times.0 = times.0.min(first);
        times.1 = times.1.max(last);
    }
}

fn min_some(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A failure record being assembled: its first line and, possibly, a continuation line.
struct Record {
    time: Option<Timestamp>,
    /// The first line as read and the continuation's body, for samples.
    raw: String,
    /// The lines without their timestamps, joined by `\n`.
    body: String,
    /// Length of the first line in `body`: the part that may be a JSON object.
    first_len: usize,
}

impl Record {
    fn new(time: Option<Timestamp>, raw: &str, body: &str) -> Self {
        Record {
            time,
            raw: raw.to_string(),
            body: body.to_string(),
            first_len: body.len(),
        }
    }

    /// Adds the continuation line; its timestamp is left out of the sample, which has the
    /// first line's already.
    fn extend(&mut self, body: &str) {
        self.raw.push(' ');
        self.raw.push_str(body);
        self.body.push('\n');
        self.body.push_str(body);
    }
}

/// A stream goes back to searching the lowercased copy after more than one window without its
/// literal per this many bytes of a block.
const SPELLING_MISS_BYTES: usize = 4096;

/// Scans one log stream. Create one per container log with
/// [`super::CompiledRunbook::scanner`] (or `related_scanner`).
pub struct LogScanner<'a> {
    matchers: &'a Matchers,
    /// Counts lines matching the related-services patterns instead of failure records.
    related: bool,
    line: Vec<u8>,
    /// The lowercased copy of a block a case-ignoring search runs over, reused.
    folded: Vec<u8>,
    /// The raw-block search by spellings found its windows without their literals too often
    /// in this stream: the lowercased copy is searched instead from the next block on.
    spellings_missed: bool,
    pending: Option<Record>,
    /// Per category rule, whether the pod's state lets it take a record.
    eligible: Vec<bool>,
    samples: Vec<(Category, String)>,
    success: SuccessTimes,
    findings: StreamFindings,
}

impl<'a> LogScanner<'a> {
    pub(super) fn new(matchers: &'a Matchers, related: bool, eligible: Vec<bool>) -> Self {
        LogScanner {
            matchers,
            related,
            line: Vec::new(),
            folded: Vec::new(),
            spellings_missed: false,
            pending: None,
            eligible,
            samples: Vec::new(),
            success: SuccessTimes::default(),
            findings: StreamFindings::default(),
        }
    }

    /// Feeds the next bytes of the stream; a line may span any number of chunks.
    ///
    /// The complete lines of a chunk are searched as one block for the places a line could
    /// matter (see [`super::compile::Prefilter`]); only the lines there, and a line that may continue a record,
    /// are split off, decoded and matched. The line cut by the chunk's end is kept for the next.
    pub fn push(&mut self, chunk: &[u8]) {
        self.findings.bytes += chunk.len() as u64;
        let Some(first) = memchr::memchr(b'\n', chunk) else {
            self.append(chunk);
            return;
        };
        self.append(&chunk[..first]);
        self.end_line();
        let rest = &chunk[first + 1..];
        let whole = memchr::memrchr(b'\n', rest).map_or(0, |last| last + 1);
        self.scan_block(&rest[..whole]);
        self.append(&rest[whole..]);
    }

    /// Ends the stream: the last line without a newline and any waiting record count too.
    pub fn finish(mut self) -> StreamFindings {
        if !self.line.is_empty() {
            self.end_line();
        }
        if let Some(record) = self.pending.take() {
            self.finalize(record);
        }
        self.findings.samples = self.samples.into_iter().map(|(_, s)| s).collect();
        if !self.related && self.matchers.markers.is_some() {
            self.findings.successes.push(self.success);
        }
        self.findings
    }

    fn append(&mut self, bytes: &[u8]) {
        let room = MAX_LINE_BYTES.saturating_sub(self.line.len());
        self.line.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn end_line(&mut self) {
        // Reuse the buffer's allocation for the next line.
        let line = std::mem::take(&mut self.line);
        self.scan_line(&line);
        self.line = line;
        self.line.clear();
    }

    /// Complete lines, each ending with a newline.
    fn scan_block(&mut self, block: &[u8]) {
        if block.is_empty() {
            return;
        }
        let m = self.matchers;
        let prefilter = if self.related {
            m.related_prefilter.as_ref()
        } else {
            m.prefilter.as_ref()
        };
        let usable = |p: &&Prefilter| !p.needs_utf8 || std::str::from_utf8(block).is_ok();
        let Some(prefilter) = prefilter.filter(usable) else {
            let mut at = 0;
            while at < block.len() {
                let (line, next) = line_at(block, at);
                self.scan_line(line);
                at = next;
            }
            return;
        };
        self.note_block_times(block);
        // Taken for the loop, which needs `self` too; given back for the next block.
        let mut scratch = std::mem::take(&mut self.folded);
        let spelled = prefilter.spelled().filter(|_| !self.spellings_missed);
        let (haystack, newlines) = match spelled {
            Some(_) => raw_haystack(block),
            None => prefilter.haystack(block, &mut scratch),
        };
        self.findings.lines += newlines as u64;
        let mut misses = 0;
        // Start of the first line not yet looked at.
        let mut at = 0;
        while at < block.len() {
            if self.pending.is_none() {
                let hit = match spelled {
                    Some(s) => s.find_at(block, at, &mut misses),
                    None => prefilter.find_at(haystack, at),
                };
                let Some(hit) = hit else {
                    break;
                };
                let start =
                    memchr::memrchr(b'\n', &block[at..hit.start]).map_or(at, |i| at + i + 1);
                // A hit may run over several lines; each of them is looked at.
                let stop = hit.end.max(hit.start + 1);
                at = start;
                while at < stop && at < block.len() {
                    let (line, next) = line_at(block, at);
                    self.examine(line);
                    at = next;
                }
            } else {
                // The line after a record may be its continuation, hit or not.
                let (line, next) = line_at(block, at);
                self.examine(line);
                at = next;
            }
        }
        // Lowercasing costs about a fifth of a pass over the block; stopping at a window
        // without its literal every few KiB costs more.
        if misses > block.len() / SPELLING_MISS_BYTES {
            self.spellings_missed = true;
        }
        self.folded = scratch;
    }

    /// The same first and last timed lines as reading every line would note, found by
    /// looking from the block's start (only until the stream's first) and back from its end.
    fn note_block_times(&mut self, block: &[u8]) {
        let lines = || block[..block.len() - 1].split(|&b| b == b'\n');
        if self.findings.first_line.is_none() {
            self.findings.first_line = lines().find_map(leading_time);
        }
        if let Some(t) = block[..block.len() - 1]
            .rsplit(|&b| b == b'\n')
            .find_map(leading_time)
        {
            self.findings.last_line = Some(t);
        }
    }

    fn scan_line(&mut self, bytes: &[u8]) {
        self.findings.lines += 1;
        if let Some(t) = leading_time(bytes) {
            self.findings.first_line.get_or_insert(t);
            self.findings.last_line = Some(t);
        }
        self.examine(bytes);
    }

    /// Matches one line (already cut to [`MAX_LINE_BYTES`]) without counting it.
    fn examine(&mut self, bytes: &[u8]) {
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let raw = String::from_utf8_lossy(bytes);
        let (time, body) = split_timestamp(&raw);
        let m = self.matchers;

        if self.related {
            if let Some((patterns, category)) = &m.related
                && patterns.is_match(body)
            {
                self.count(&Record::new(time, &raw, body), category, &[]);
            }
            return;
        }

        if let Some(mut record) = self.pending.take() {
            if m.continuation.as_ref().is_some_and(|c| c.is_match(body)) {
                record.extend(body);
                self.finalize(record);
                return;
            }
            self.finalize(record);
        }
        if let Some((set, names)) = &m.markers {
            let matched = set.matches(body);
            for &i in &matched {
                *self
                    .findings
                    .success_markers
                    .entry(names[i].clone())
                    .or_default() += 1;
            }
            if !matched.is_empty() {
                // Success lines are few: reading a JSON line's own time is affordable here.
                let time = time
                    .or_else(|| parse_object(body).and_then(|obj| json_time(&obj, &m.time_fields)));
                self.success.success(time);
            }
        }
        if m.signature
            .iter()
            .any(|f| f.find(body.as_bytes()).is_some())
        {
            let record = Record::new(time, &raw, body);
            if m.continuation.is_some() {
                self.pending = Some(record);
            } else {
                self.finalize(record);
            }
        }
    }

    fn finalize(&mut self, mut record: Record) {
        let m = self.matchers;
        let (first, rest) = record.body.split_at(record.first_len);
        let json = parse_object(first);
        let json = json.as_ref();
        for (field, expected) in &m.filters {
            if field.first(json, &record.body).as_deref() != Some(expected.as_str()) {
                return;
            }
        }
        let detail = match json {
            Some(obj) => detail_text(obj, &m.detail_fields, rest)
                .map_or(Cow::Borrowed(record.body.as_str()), Cow::Owned),
            None => Cow::Borrowed(record.body.as_str()),
        };
        let statuses = m.statuses(&detail);
        let category = m.classify(&detail, &statuses, &self.eligible);
        if let Some(extractor) = &m.controller_ids {
            for id in extractor.all(json, &record.body) {
                if self.findings.controller_ids.len() >= MAX_CONTROLLER_IDS {
                    break;
                }
                if is_id(&id) {
                    self.findings.controller_ids.insert(id.into_owned());
                }
            }
        }
        if record.time.is_none() {
            record.time = json.and_then(|obj| json_time(obj, &m.time_fields));
        }
        self.success.failure();
        self.count(&record, &category, &statuses);
    }

    fn count(&mut self, record: &Record, category: &Category, statuses: &[u16]) {
        match self.findings.matches.get_mut(category) {
            Some(n) => *n += 1,
            None => {
                self.findings.matches.insert(category.clone(), 1);
            }
        }
        for s in statuses {
            *self.findings.http_statuses.entry(*s).or_default() += 1;
        }
        if let Some(t) = record.time {
            self.findings.first_failure = min_some(self.findings.first_failure, Some(t));
            self.findings.last_failure = self.findings.last_failure.max(Some(t));
            self.findings.note_times(category.clone(), t, t);
        }
        self.sample(category, &record.raw);
    }

    /// Keeps the first record of each category before a second of any, so the samples show
    /// the variety of failures rather than three copies of the commonest.
    fn sample(&mut self, category: &Category, raw: &str) {
        let seen = self.samples.iter().any(|(c, _)| c == category);
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push((category.clone(), shorten(raw)));
        } else if !seen {
            let repeated = |c: &Category| self.samples.iter().filter(|(d, _)| d == c).count() > 1;
            if let Some(i) = self.samples.iter().rposition(|(c, _)| repeated(c)) {
                self.samples[i] = (category.clone(), shorten(raw));
            }
        }
    }
}

/// Redacted first, then cut, so a secret is never half kept.
fn shorten(raw: &str) -> String {
    let redacted = redact(raw);
    match redacted.char_indices().nth(MAX_SAMPLE_CHARS) {
        Some((cut, _)) => format!("{}…", &redacted[..cut]),
        None => redacted.into_owned(),
    }
}

fn is_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// The line starting at `at` in a block of complete lines, cut to [`MAX_LINE_BYTES`], and
/// where the next one starts.
fn line_at(block: &[u8], at: usize) -> (&[u8], usize) {
    let end = memchr::memchr(b'\n', &block[at..]).map_or(block.len(), |i| at + i);
    let line = &block[at..end];
    (&line[..line.len().min(MAX_LINE_BYTES)], end + 1)
}

/// The timestamp [`split_timestamp`] would take from the line, read from its raw bytes.
pub fn leading_time(line: &[u8]) -> Option<Timestamp> {
    let looks_like_date =
        line.len() > 11 && line[..4].iter().all(u8::is_ascii_digit) && line[4] == b'-';
    if !looks_like_date {
        return None;
    }
    let space = line
        .iter()
        .take(MAX_TIMESTAMP_LEN)
        .position(|&c| c == b' ')?;
    std::str::from_utf8(&line[..space]).ok()?.parse().ok()
}

/// Splits off a leading RFC 3339 timestamp and its space, when there is one.
fn split_timestamp(line: &str) -> (Option<Timestamp>, &str) {
    let b = line.as_bytes();
    let looks_like_date = b.len() > 11 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-';
    if !looks_like_date {
        return (None, line);
    }
    let Some(space) = b.iter().take(MAX_TIMESTAMP_LEN).position(|&c| c == b' ') else {
        return (None, line);
    };
    match line[..space].parse::<Timestamp>() {
        Ok(t) => (Some(t), &line[space + 1..]),
        Err(_) => (None, line),
    }
}

fn parse_object(text: &str) -> Option<Map<String, Value>> {
    if !text.trim_start().starts_with('{') {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// The JSON fields that describe the error, plus any continuation lines; `None` when the
/// object has none of them, so the whole record is searched instead.
fn detail_text(obj: &Map<String, Value>, fields: &[String], rest: &str) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for value in fields.iter().filter_map(|f| obj.get(f)) {
        match value {
            Value::Array(items) => parts.extend(items.iter().map(value_text)),
            v => parts.push(value_text(v)),
        }
    }
    if parts.is_empty() {
        return None;
    }
    let mut text = parts.join("\n");
    text.push_str(rest);
    Some(text)
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

fn json_time(obj: &Map<String, Value>, fields: &[String]) -> Option<Timestamp> {
    fields
        .iter()
        .filter_map(|f| obj.get(f))
        .find_map(|v| match v {
            Value::String(s) => s.parse().ok(),
            Value::Number(n) => epoch(n.as_f64()?),
            _ => None,
        })
}

/// Epoch numbers come in seconds (zap's `ts`), milliseconds, microseconds or nanoseconds;
/// the magnitude tells which for any date after 1973.
fn epoch(n: f64) -> Option<Timestamp> {
    let nanos_per_unit = match n.abs() {
        x if x >= 1e17 => 1.0,
        x if x >= 1e14 => 1e3,
        x if x >= 1e11 => 1e6,
        _ => 1e9,
    };
    let nanos = n * nanos_per_unit;
    if !nanos.is_finite() {
        return None;
    }
    // Out-of-range values saturate in the cast and are then refused by jiff.
    Timestamp::from_nanosecond(nanos as i128).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook::CompiledRunbook;
    use crate::runbook::compile::tests::compiled;

    fn metering() -> CompiledRunbook {
        compiled("metering-token-exchange", &[("service", "armada-cluster")])
    }

    fn orchestrator() -> CompiledRunbook {
        compiled(
            "orchestrator-callback-errors",
            &[
                ("operation", "DeleteClientID"),
                ("reason_code", "ErrorUnclassified"),
            ],
        )
    }

    fn scan_chunks(scanner: LogScanner<'_>, input: &[u8], chunk: usize) -> StreamFindings {
        let mut scanner = scanner;
        for part in input.chunks(chunk.max(1)) {
            scanner.push(part);
        }
        scanner.finish()
    }

    fn scan(c: &CompiledRunbook, input: &str) -> StreamFindings {
        scan_chunks(c.scanner(), input.as_bytes(), input.len())
    }

    /// Every feature of the scanner in one stream: prefixed and bare lines, records with and
    /// without continuation, JSON, CRLF, bad UTF-8, a line over the cap and no final newline.
    fn busy_stream() -> Vec<u8> {
        let mut s = Vec::new();
        s.extend_from_slice(b"2026-11-21T04:00:00.5Z Worker metering started\r\n");
        s.extend_from_slice(
            b"2026-11-21T04:01:00Z ErrorMeteringTokenExchangeFailure: IAM token exchange failure\n",
        );
        s.extend_from_slice(b"2026-11-21T04:01:00Z Wrapped Errors: [\"request failed. (429)\"]\n");
        s.extend_from_slice(
            b"ErrorMeteringTokenExchangeFailure: no time \xff\xfe (401) apikey=s3cr3t\n",
        );
        s.extend_from_slice(br#"{"ts":"2026-11-21T03:59:00Z","reasonCode":"ErrorMeteringTokenExchangeFailure","wrappedErrors":["dial tcp: i/o timeout"]}"#);
        s.push(b'\n');
        s.extend_from_slice(b"ErrorMeteringTokenExchangeFailure ");
        s.extend(std::iter::repeat_n(b'x', 3 * MAX_LINE_BYTES));
        s.extend_from_slice(b" (403)\n\n");
        s.extend_from_slice(b"2026-11-21T04:09:00Z ErrorMeteringTokenExchangeFailure: status 500");
        s
    }

    #[test]
    fn chunk_boundaries_do_not_change_findings() {
        let c = metering();
        let input = busy_stream();
        let whole = scan_chunks(c.scanner(), &input, input.len());
        for chunk in [1, 2, 7, 4096, MAX_LINE_BYTES + 1] {
            assert_eq!(
                scan_chunks(c.scanner(), &input, chunk),
                whole,
                "chunk size {chunk}"
            );
        }
        assert_eq!(whole.lines, 8);
        assert_eq!(whole.bytes, input.len() as u64);
        let expected = BTreeMap::from([
            (Category::new("AuthFailure").unwrap(), 1),
            (Category::new("RateLimited").unwrap(), 1),
            (Category::new("NetworkFailure").unwrap(), 1),
            (Category::new("Unclassified").unwrap(), 2),
        ]);
        assert_eq!(whole.matches, expected);
        assert_eq!(
            whole.http_statuses,
            BTreeMap::from([(401, 1), (429, 1), (500, 1)])
        );
        assert_eq!(
            whole.success_markers,
            BTreeMap::from([("Worker metering started".to_string(), 1)])
        );
        assert_eq!(
            whole.first_failure,
            Some("2026-11-21T03:59:00Z".parse().unwrap())
        );
        assert_eq!(
            whole.last_failure,
            Some("2026-11-21T04:09:00Z".parse().unwrap())
        );
        assert_eq!(whole.samples.len(), MAX_SAMPLES);
        assert!(
            whole.samples.iter().all(|s| !s.contains("s3cr3t")),
            "{:?}",
            whole.samples
        );
    }

    /// Random streams built from the tokens the scanner reacts to, cut at random places.
    #[test]
    fn odd_input_never_panics_and_chunking_never_matters() {
        const TOKENS: &[&[u8]] = &[
            b"\n",
            b"\r\n",
            b"{",
            b"}",
            b"\"",
            b":",
            b" ",
            b"\xff",
            b"\xe2\x82",
            b"(401)",
            b"(429)",
            b"status 403",
            b"2026-11-21T04:00:00Z ",
            b"2026-",
            b"ErrorMeteringTokenExchangeFailure",
            b"Wrapped Errors:",
            b"i/o timeout",
            b"rate limit",
            b"Worker metering started",
            b"callbackName:DeleteClientID",
            b"reasonCode:ErrorUnclassified",
            b"\"reasonCode\":\"ErrorUnclassified\"",
            b"BXNIM0515E",
            b"controllerID:",
            b"\"ts\":1e400",
            b"\"ts\":-5",
            b"apikey=",
            b"eyJabcdefghijklmnop",
            b"[",
            b"]",
            b"WORKER Metering STARTED",
            // "worKer", with the Kelvin sign that case-insensitive matching folds to k.
            b"wor\xe2\x84\xaaer metering started",
            b"OpenShift licences usage submitted",
            b"IAM",
            b"Rate-Limit",
            b"api key based rate limit",
            b"\xef\xbf\xbd",
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound as u64) as usize
        };
        for c in [metering(), orchestrator()] {
            for _ in 0..200 {
                let mut input = Vec::new();
                for _ in 0..next(200) {
                    input.extend_from_slice(TOKENS[next(TOKENS.len())]);
                }
                let whole = scan_chunks(c.scanner(), &input, input.len());
                let mut scanner = c.scanner();
                let mut rest = input.as_slice();
                while !rest.is_empty() {
                    let (head, tail) = rest.split_at(next(rest.len()) + 1);
                    scanner.push(head);
                    rest = tail;
                }
                assert_eq!(
                    scanner.finish(),
                    whole,
                    "{:?}",
                    String::from_utf8_lossy(&input)
                );
                // One byte at a time, no chunk holds a whole line: every line is matched on its
                // own, without the block search, which must not change what is found.
                assert_eq!(
                    scan_chunks(c.scanner(), &input, 1),
                    whole,
                    "{:?}",
                    String::from_utf8_lossy(&input)
                );
                let related = scan_chunks(c.related_scanner(), &input, input.len());
                assert_eq!(related.bytes, input.len() as u64);
                assert_eq!(
                    scan_chunks(c.related_scanner(), &input, 1),
                    related,
                    "{:?}",
                    String::from_utf8_lossy(&input)
                );
                let text = String::from_utf8_lossy(&input);
                let once = redact(&text).into_owned();
                assert_eq!(redact(&once), once);
            }
        }
    }

    /// Benign lines around the records, so the block search has ground to skip.
    fn padded(records: &[&str]) -> Vec<u8> {
        let mut s = Vec::new();
        for record in records {
            for i in 0..300 {
                s.extend_from_slice(
                    format!("GET /v1/clusters/c{i:07}/workers 200 error=none\n").as_bytes(),
                );
            }
            s.extend_from_slice(record.as_bytes());
            s.push(b'\n');
        }
        s
    }

    #[test]
    fn markers_in_any_case_and_records_next_to_them_are_found_in_blocks() {
        let c = metering();
        let input = padded(&[
            "2026-11-21T04:00:00Z wOrKeR METERING started",
            "2026-11-21T04:01:00Z ErrorMeteringTokenExchangeFailure: x\n2026-11-21T04:01:00Z Wrapped Errors: [\"(429)\"]\n2026-11-21T04:02:00Z Worker Metering Stopped",
            "2026-11-21T04:03:00Z OPENSHIFT LICENCES USAGE SUBMITTED\nErrorMeteringTokenExchangeFailure (401)",
            "errormeteringtokenexchangefailure (403) is not the signature",
        ]);
        let whole = scan_chunks(c.scanner(), &input, input.len());
        assert_eq!(
            whole.success_markers,
            BTreeMap::from([
                ("OpenShift licences usage submitted".to_string(), 1),
                ("Worker metering started".to_string(), 1),
                ("Worker metering stopped".to_string(), 1),
            ])
        );
        assert_eq!(
            whole.matches,
            BTreeMap::from([
                (Category::new("AuthFailure").unwrap(), 1),
                (Category::new("RateLimited").unwrap(), 1),
            ])
        );
        assert_eq!(whole.lines, 4 * 300 + 7);
        // Every cut, including ones inside the literals and the markers, finds the same.
        for chunk in [1, 5, 17, 4096, 10_000] {
            assert_eq!(scan_chunks(c.scanner(), &input, chunk), whole, "{chunk}");
        }
    }

    /// Where the windows of the spelled search fill the log ("user mode" holds "er m"), the
    /// stream goes back to the lowercased copy after one block, and finds the same.
    #[test]
    fn a_stream_full_of_windows_goes_back_to_the_lowercased_copy() {
        let c = metering();
        let mut input = Vec::new();
        for i in 0..2000 {
            input.extend_from_slice(format!("2026-11-21T04:00:00Z user mode {i}\n").as_bytes());
        }
        input.extend_from_slice(b"2026-11-21T04:01:00Z ErrorMeteringTokenExchangeFailure (401)\n");
        input.extend_from_slice(b"2026-11-21T04:02:00Z WORKER METERING STARTED\n");
        let mut scanner = c.scanner();
        let mut blocks = input.chunks(16 * 1024);
        scanner.push(blocks.next().unwrap());
        assert!(scanner.spellings_missed, "a window every line");
        for block in blocks {
            scanner.push(block);
        }
        let findings = scanner.finish();
        assert_eq!(findings, scan_chunks(c.scanner(), &input, 1));
        assert_eq!(findings.failures(), 1);
        assert_eq!(findings.success_markers.len(), 1);

        // Windows now and then do not make it give up.
        let mut scanner = c.scanner();
        scanner.push(&padded(&["user mode"; 4]));
        assert!(!scanner.spellings_missed);
    }

    #[test]
    fn a_literal_cut_by_the_chunk_boundary_is_found() {
        let c = metering();
        let input = padded(&["ErrorMeteringTokenExchangeFailure (401)"]);
        let at = input.len() - 30;
        for cut in [at - 10, at, at + 10] {
            let mut scanner = c.scanner();
            scanner.push(&input[..cut]);
            scanner.push(&input[cut..]);
            let findings = scanner.finish();
            assert_eq!(findings.failures(), 1, "cut at {cut}");
            assert_eq!(findings.http_statuses, BTreeMap::from([(401, 1)]));
        }
    }

    #[test]
    fn a_line_over_the_cap_is_never_buffered_whole() {
        let c = metering();
        let mut scanner = c.scanner();
        for _ in 0..64 {
            scanner.push(&[b'y'; 64 * 1024]);
        }
        assert!(
            scanner.line.capacity() <= 2 * MAX_LINE_BYTES,
            "{}",
            scanner.line.capacity()
        );
        scanner.push(b" ErrorMeteringTokenExchangeFailure (401)\n");
        let findings = scanner.finish();
        assert_eq!(
            (findings.lines, findings.failures()),
            (1, 0),
            "the signature lay beyond the cap"
        );
    }

    #[test]
    fn wrapped_errors_on_the_next_line_are_one_record() {
        let c = metering();
        let findings = scan(
            &c,
            "ErrorMeteringTokenExchangeFailure: x\nWrapped Errors: [\"(403)\"]\nWrapped Errors: [\"(429)\"]\n",
        );
        // The second Wrapped Errors line follows a finished record, so it belongs to nothing.
        assert_eq!(
            findings.matches,
            BTreeMap::from([(Category::new("AuthFailure").unwrap(), 1)])
        );
        assert_eq!(findings.lines, 3);
        assert_eq!(
            findings.samples,
            ["ErrorMeteringTokenExchangeFailure: x Wrapped Errors: [\"(403)\"]"]
        );
    }

    #[test]
    fn statuses_are_read_from_wrapped_errors_in_their_usual_forms() {
        let c = metering();
        let cases = [
            (
                "The IAM token exchange request failed. (429)",
                Some(429),
                Category::new("RateLimited").unwrap(),
            ),
            (
                "status 401 returned",
                Some(401),
                Category::new("AuthFailure").unwrap(),
            ),
            (
                r#"{\"statusCode\":403}"#,
                Some(403),
                Category::new("AuthFailure").unwrap(),
            ),
            (
                "403 Forbidden",
                Some(403),
                Category::new("AuthFailure").unwrap(),
            ),
            (
                "ApiKey based rate limit for calls to /token",
                None,
                Category::new("RateLimited").unwrap(),
            ),
            (
                "Post \"https://iam/token\": context deadline exceeded",
                None,
                Category::new("NetworkFailure").unwrap(),
            ),
            (
                "dial tcp: lookup iam.cloud.ibm.com: no such host",
                None,
                Category::new("NetworkFailure").unwrap(),
            ),
            (
                "read: connection reset by peer",
                None,
                Category::new("NetworkFailure").unwrap(),
            ),
            (
                "net/http: TLS handshake timeout",
                None,
                Category::new("NetworkFailure").unwrap(),
            ),
            (
                "unexpected EOF",
                None,
                Category::new("NetworkFailure").unwrap(),
            ),
            (
                "the request timed out",
                None,
                Category::new("NetworkFailure").unwrap(),
            ),
            (
                "invalid character 'A' looking for beginning of value",
                None,
                Category::new("Unclassified").unwrap(),
            ),
            (
                "failed (500)",
                Some(500),
                Category::new("Unclassified").unwrap(),
            ),
            ("code (999)", None, Category::new("Unclassified").unwrap()),
        ];
        for (wrapped, status, category) in cases {
            let f = scan(
                &c,
                &format!("ErrorMeteringTokenExchangeFailure\nWrapped Errors: [\"{wrapped}\"]\n"),
            );
            assert_eq!(f.matches, BTreeMap::from([(category, 1)]), "{wrapped}");
            assert_eq!(f.http_statuses.keys().next().copied(), status, "{wrapped}");
        }
    }

    #[test]
    fn json_lines_use_their_fields() {
        let c = metering();
        let line = r#"{"ts":1795233600.5,"caller":"x.go:403","reasonCode":"ErrorMeteringTokenExchangeFailure","wrappedErrors":["The IAM token exchange request failed. (429)"]}"#;
        let f = scan(&c, line);
        assert_eq!(
            f.matches,
            BTreeMap::from([(Category::new("RateLimited").unwrap(), 1)])
        );
        assert_eq!(
            f.http_statuses,
            BTreeMap::from([(429, 1)]),
            "the caller's line number is not a status"
        );
        assert_eq!(
            f.first_failure,
            Some("2026-11-21T04:00:00.5Z".parse().unwrap())
        );
        // A broken JSON line is still a line: the signature and statuses are read from its text.
        let f = scan(
            &c,
            r#"{"reasonCode":"ErrorMeteringTokenExchangeFailure","err":"(401)""#,
        );
        assert_eq!(
            f.matches,
            BTreeMap::from([(Category::new("AuthFailure").unwrap(), 1)])
        );
    }

    #[test]
    fn only_the_alerts_callback_and_reason_code_count() {
        let c = orchestrator();
        let input = [
            r#"{"callbackName":"DeleteClientID","reasonCode":"ErrorUnclassified","controllerID":"c7kd91rd0f6h1m2n3o4p","error":"403 BXNIM0515E: You are not authorized"}"#,
            r#"{"callbackName":"CreateClientID","reasonCode":"ErrorUnclassified","controllerID":"other1","error":"403 BXNIM0515E"}"#,
            "callbackName:DeleteClientID reasonCode:ErrorUnclassified for cluster bsd1234f0sop9a2b4cdg: 403 BXNIM0515E",
            "callbackName:DeleteClientID reasonCode:ErrorTimeout controllerID:nope 403 BXNIM0515E",
            "callbackName: DeleteClientIDs reasonCode: ErrorUnclassified 403 BXNIM0515E",
            "callbackName=DeleteClientID reasonCode=ErrorUnclassified controller_id=abc-123 (500)",
            "reasonCode:ErrorUnclassified with no callback name",
            "callbackName:DeleteClientID reasonCode:ErrorUnclassified in cluster the-words-are-not-ids",
        ]
        .join("\n");
        let f = scan(&c, &input);
        assert_eq!(
            f.matches,
            BTreeMap::from([
                (Category::new("ClientIdNotAuthorized").unwrap(), 2),
                (Category::new("Unclassified").unwrap(), 2)
            ])
        );
        assert_eq!(f.http_statuses, BTreeMap::from([(403, 2), (500, 1)]));
        let ids: Vec<&str> = f.controller_ids.iter().map(String::as_str).collect();
        assert_eq!(
            ids,
            ["abc-123", "bsd1234f0sop9a2b4cdg", "c7kd91rd0f6h1m2n3o4p"]
        );
    }

    #[test]
    fn controller_ids_and_samples_are_bounded() {
        let c = orchestrator();
        let input: String = (0..100)
            .map(|i| format!("callbackName:DeleteClientID reasonCode:ErrorUnclassified controllerID:id{i:03} 403 BXNIM0515E {}\n", "z".repeat(400)))
            .collect();
        let f = scan(&c, &input);
        assert_eq!(f.controller_ids.len(), MAX_CONTROLLER_IDS);
        assert_eq!(f.samples.len(), MAX_SAMPLES);
        assert!(
            f.samples
                .iter()
                .all(|s| s.chars().count() == MAX_SAMPLE_CHARS + 1 && s.ends_with('…'))
        );
    }

    #[test]
    fn samples_show_each_category_before_repeating_one() {
        let c = metering();
        let record = |wrapped: &str| format!("ErrorMeteringTokenExchangeFailure {wrapped}\n");
        let input = [
            record("(429) a"),
            record("(429) b"),
            record("(429) c"),
            record("(401) d"),
            record("i/o timeout e"),
        ]
        .concat();
        let f = scan(&c, &input);
        assert_eq!(f.samples.len(), 3);
        for want in ["(429) a", "(401) d", "i/o timeout e"] {
            assert!(
                f.samples.iter().any(|s| s.contains(want)),
                "{want}: {:?}",
                f.samples
            );
        }
    }

    #[test]
    fn related_scanner_counts_only_the_rate_limit_signature() {
        let c = metering();
        let input = "ApiKey based rate limit for calls to /token\nIAM: rate limited\nErrorMeteringTokenExchangeFailure (401)\nrate limit on cache\n";
        let f = scan_chunks(c.related_scanner(), input.as_bytes(), 3);
        assert_eq!(
            f.matches,
            BTreeMap::from([(Category::new("RateLimited").unwrap(), 2)])
        );
        assert_eq!(f.lines, 4);
        assert_eq!(
            scan_chunks(orchestrator().related_scanner(), input.as_bytes(), 3).failures(),
            0
        );
    }

    #[test]
    fn merge_adds_and_stays_bounded() {
        let c = metering();
        let a = scan(
            &c,
            "2026-11-21T04:05:00Z ErrorMeteringTokenExchangeFailure (429)\nWorker metering stopped\n",
        );
        let b = scan(
            &c,
            "2026-11-21T04:01:00Z ErrorMeteringTokenExchangeFailure (401)\n2026-11-21T04:02:00Z ErrorMeteringTokenExchangeFailure (401)\n2026-11-21T04:03:00Z ErrorMeteringTokenExchangeFailure (401)\n",
        );
        let mut total = a.clone();
        total.merge(b.clone());
        assert_eq!(total.lines, a.lines + b.lines);
        assert_eq!(total.bytes, a.bytes + b.bytes);
        assert_eq!(total.failures(), 4);
        assert_eq!(total.samples.len(), MAX_SAMPLES);
        assert_eq!(
            total.first_failure,
            Some("2026-11-21T04:01:00Z".parse().unwrap())
        );
        assert_eq!(
            total.last_failure,
            Some("2026-11-21T04:05:00Z".parse().unwrap())
        );
        let mut empty = StreamFindings::default();
        empty.merge(a.clone());
        assert_eq!(empty, a);
    }

    #[test]
    fn leading_timestamps() {
        let cases = [
            (
                "2026-11-21T04:00:00.123456789Z msg",
                Some("2026-11-21T04:00:00.123456789Z"),
                "msg",
            ),
            (
                "2026-11-21T05:00:00+01:00 msg",
                Some("2026-11-21T04:00:00Z"),
                "msg",
            ),
            ("2026-11-21 04:00:00 msg", None, "2026-11-21 04:00:00 msg"),
            ("2026-13-45T99:00:00Z msg", None, "2026-13-45T99:00:00Z msg"),
            ("12345-not a date", None, "12345-not a date"),
            ("msg", None, "msg"),
            ("", None, ""),
            ("2026-ü", None, "2026-ü"),
        ];
        for (line, time, body) in cases {
            let want = time.map(|t| t.parse::<Timestamp>().unwrap());
            assert_eq!(split_timestamp(line), (want, body), "{line}");
        }
    }

    #[test]
    fn epoch_units_are_inferred() {
        let want: Timestamp = "2026-11-21T04:00:00Z".parse().unwrap();
        for n in [1795233600.0, 1795233600e3, 1795233600e6, 1795233600e9] {
            assert_eq!(epoch(n), Some(want), "{n}");
        }
        assert_eq!(epoch(f64::NAN), None);
        assert_eq!(epoch(f64::INFINITY), None);
        assert_eq!(epoch(1e300), None);
    }
}

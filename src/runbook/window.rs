//! The evidence window applied to a log stream before it reaches the scanner: lines that
//! start before `since` are dropped (replay; the API server applies `sinceTime` itself) and
//! the stream ends at the first line that starts after `until`.
//!
//! A log's lines are in time order, so only the first lines need a look for `since`, and for
//! `until` only the last line of each chunk unless that one is past it: the common chunk is
//! passed on whole, keeping the scanner's block search. A line whose start has not fully
//! arrived (at most [`HEAD`] bytes, the longest timestamp and its space) is held back until
//! its time is known. Lines without a time go with the lines around them.

use jiff::Timestamp;

use super::scan::{LogScanner, leading_time};

/// Bytes of a line's start that hold its timestamp, if it has one.
const HEAD: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// At the start of a line, nothing of it seen.
    Start,
    /// Part of the line's start is held in `head`.
    Head,
    Pass,
    Drop,
}

/// Cuts one log stream to `[since, until]` on its way to a [`LogScanner`].
pub struct WindowCut {
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    line: Line,
    head: Vec<u8>,
    /// No line at or after `since` yet.
    before_since: bool,
    /// Whether the last line with a time was passed on: a line without one goes with it.
    last_passed: bool,
    ended: bool,
}

impl WindowCut {
    pub fn new(since: Option<Timestamp>, until: Option<Timestamp>) -> Self {
        WindowCut {
            since,
            until,
            line: Line::Start,
            head: Vec::with_capacity(HEAD),
            before_since: since.is_some(),
            last_passed: true,
            ended: false,
        }
    }

    /// True once a line past `until` was seen: nothing more is wanted.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Passes the chunk's lines that lie in the window on to the scanner.
    pub fn push(&mut self, scanner: &mut LogScanner<'_>, chunk: &[u8]) {
        let mut pos = 0;
        while pos < chunk.len() && !self.ended {
            let rest = &chunk[pos..];
            match self.line {
                Line::Pass | Line::Drop => {
                    let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
                    if self.line == Line::Pass {
                        scanner.push(&rest[..end]);
                    }
                    if end <= rest.len() && rest[end - 1] == b'\n' {
                        self.line = Line::Start;
                    }
                    pos += end;
                }
                Line::Start if !self.before_since && memchr::memchr(b'\n', rest).is_some() => {
                    pos += self.whole_lines(scanner, rest);
                }
                Line::Start | Line::Head => {
                    let newline = memchr::memchr(b'\n', rest);
                    let room = HEAD - self.head.len();
                    let take = newline.map_or(rest.len(), |i| i + 1).min(room);
                    self.head.extend_from_slice(&rest[..take]);
                    pos += take;
                    let complete = self.head.last() == Some(&b'\n');
                    if complete || self.head.len() == HEAD || self.head.contains(&b' ') {
                        self.decide(scanner, complete);
                    } else {
                        self.line = Line::Head;
                    }
                }
            }
        }
    }

    /// Ends the stream: a last line held back is decided on what arrived of it.
    pub fn finish(mut self, scanner: &mut LogScanner<'_>) {
        if !self.head.is_empty() && !self.ended {
            self.decide(scanner, true);
        }
    }

    /// The complete lines at the start of `rest` (a line start); returns the bytes used.
    fn whole_lines(&mut self, scanner: &mut LogScanner<'_>, rest: &[u8]) -> usize {
        let end = memchr::memrchr(b'\n', rest).map_or(0, |i| i + 1);
        let block = &rest[..end];
        let Some(until) = self.until else {
            scanner.push(block);
            return end;
        };
        let last = memchr::memrchr(b'\n', &block[..end - 1]).map_or(0, |i| i + 1);
        if leading_time(&block[last..]).is_some_and(|t| t <= until) {
            scanner.push(block);
            return end;
        }
        // The cut lies in this block (or its last line has no time): look line by line.
        let mut at = 0;
        while at < end {
            let next = memchr::memchr(b'\n', &block[at..]).map_or(end, |i| at + i + 1);
            if leading_time(&block[at..next]).is_some_and(|t| t > until) {
                scanner.push(&block[..at]);
                self.ended = true;
                return end;
            }
            at = next;
        }
        scanner.push(block);
        end
    }

    fn decide(&mut self, scanner: &mut LogScanner<'_>, complete: bool) {
        let time = leading_time(&self.head);
        if let (Some(t), Some(until)) = (time, self.until)
            && t > until
        {
            self.ended = true;
            self.head.clear();
            return;
        }
        let pass = match (self.before_since, time, self.since) {
            (true, Some(t), Some(since)) => {
                self.before_since = t < since;
                self.last_passed = !self.before_since;
                self.last_passed
            }
            (true, _, _) => self.last_passed,
            (false, _, _) => true,
        };
        if pass {
            scanner.push(&self.head);
        }
        self.head.clear();
        self.line = match (complete, pass) {
            (true, _) => Line::Start,
            (false, true) => Line::Pass,
            (false, false) => Line::Drop,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Alert;
    use crate::runbook::{Catalog, CompiledRunbook, StreamFindings};

    fn metering() -> CompiledRunbook {
        let alert = Alert {
            name: "x_error_metering_token_exchange".into(),
            labels: [("service".to_string(), "armada-cluster".to_string())].into(),
            starts_at: None,
        };
        Catalog::builtin()
            .select(None, &alert)
            .unwrap()
            .compile(&alert)
            .unwrap()
    }

    fn cut(
        c: &CompiledRunbook,
        input: &[u8],
        chunk: usize,
        since: Option<&str>,
        until: Option<&str>,
    ) -> (StreamFindings, bool) {
        let mut scanner = c.scanner();
        let mut w = WindowCut::new(
            since.map(|s| s.parse().unwrap()),
            until.map(|s| s.parse().unwrap()),
        );
        for part in input.chunks(chunk.max(1)) {
            w.push(&mut scanner, part);
        }
        let ended = w.ended();
        w.finish(&mut scanner);
        (scanner.finish(), ended)
    }

    const LOG: &str = "\
2026-11-21T03:50:00Z ErrorMeteringTokenExchangeFailure (429)
Wrapped Errors: [\"(429)\"]
2026-11-21T04:00:00Z Worker metering started
2026-11-21T04:10:00Z ErrorMeteringTokenExchangeFailure (401)
untimed line between
2026-11-21T04:20:00Z ErrorMeteringTokenExchangeFailure i/o timeout
2026-11-21T05:30:00Z ErrorMeteringTokenExchangeFailure (500)
2026-11-21T05:40:00Z Worker metering started";

    #[test]
    fn only_the_window_reaches_the_scanner_however_the_stream_is_cut() {
        let c = metering();
        let cases = [
            // (since, until, matches, lines, ended)
            (None, None, 4, 8, false),
            (Some("2026-11-21T04:00:00Z"), None, 3, 6, false),
            (None, Some("2026-11-21T04:30:00Z"), 3, 6, true),
            (
                Some("2026-11-21T04:05:00Z"),
                Some("2026-11-21T04:30:00Z"),
                2,
                3,
                true,
            ),
            (Some("2026-11-21T06:00:00Z"), None, 0, 0, false),
            (None, Some("2026-11-21T03:00:00Z"), 0, 0, true),
        ];
        for (since, until, matches, lines, ended) in cases {
            let whole = cut(&c, LOG.as_bytes(), LOG.len(), since, until);
            assert_eq!(
                (whole.0.failures(), whole.0.lines, whole.1),
                (matches, lines, ended),
                "{since:?} {until:?}"
            );
            for chunk in [1, 2, 3, 7, 20, 41, 64] {
                assert_eq!(
                    cut(&c, LOG.as_bytes(), chunk, since, until).0,
                    whole.0,
                    "{since:?} {until:?} chunk {chunk}"
                );
            }
        }
    }

    #[test]
    fn a_window_without_bounds_changes_nothing() {
        let c = metering();
        let mut plain = c.scanner();
        plain.push(LOG.as_bytes());
        assert_eq!(cut(&c, LOG.as_bytes(), 5, None, None).0, plain.finish());
    }
}

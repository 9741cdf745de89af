//! When the work succeeded, relative to the failures: the runbook's "are the failures
//! intermittent?" asks whether successes come between failures, not merely beside them.
//!
//! Each log stream is summarised while it is scanned, in a few fields whatever its length
//! (no list of times is kept): the successes are split into those before the stream's first
//! failure, between its first and last failure (known from the log's own order, so lines
//! without times count too) and after its last one, each group with its first and last time,
//! plus the longest quiet spell between two consecutive successes. A pod or a whole triage
//! keeps one summary per stream; the questions about a failure period that spans several
//! streams ([`SuccessTimes::within`], [`SuccessTimes::latest_before`],
//! [`SuccessTimes::earliest_after`]) are answered per stream from these fields, counting only
//! successes whose place the summary proves.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Serialize;

use super::engine::{PodInput, show_time};
use super::scan::StreamFindings;
use crate::crd::{Intermittency, PodIntermittency};

/// The successes of one log stream, placed around its failures.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SuccessTimes {
    /// Success lines before the stream's first failure (all of them when it has none).
    pub before: Group,
    /// Success lines between the stream's first and last failure.
    pub between: u64,
    /// Success lines after the stream's last failure.
    pub after: Group,
    /// The longest time between two consecutive timed successes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub longest_quiet: Option<(Timestamp, Timestamp)>,
    #[serde(skip)]
    failed: bool,
    #[serde(skip)]
    last_timed: Option<Timestamp>,
}

/// Successes on one side of the failures: how many, and the first and last time among them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<Timestamp>,
}

impl Group {
    fn add(&mut self, time: Option<Timestamp>) {
        self.count += 1;
        if let Some(t) = time {
            self.first = Some(self.first.map_or(t, |f| f.min(t)));
            self.last = Some(self.last.map_or(t, |l| l.max(t)));
        }
    }

    /// Successes of this group that provably lie in `[from, to]`, and whether that is all of
    /// them there; `quiet` is the stream's longest spell between consecutive successes.
    fn within(
        &self,
        from: Timestamp,
        to: Timestamp,
        quiet: Option<(Timestamp, Timestamp)>,
    ) -> Count {
        let (Some(first), Some(last)) = (self.first, self.last) else {
            // Untimed successes cannot be placed against other logs' failures.
            return Count::at_least(0, self.count == 0);
        };
        if first >= from && last <= to {
            return Count::at_least(self.count, true);
        }
        if last < from || first > to {
            return Count::at_least(0, true);
        }
        if (from..=to).contains(&first) || (from..=to).contains(&last) {
            return Count::at_least(1, false);
        }
        // The group straddles the period: a success lies inside unless a quiet spell covers
        // it, and none can when the longest spell is shorter than the period.
        match quiet {
            Some((a, b)) if b.duration_since(a) <= to.duration_since(from) => {
                Count::at_least(1, false)
            }
            Some((a, b)) if a < from && b > to => Count::at_least(0, true),
            _ => Count::at_least(0, false),
        }
    }
}

impl SuccessTimes {
    /// A success line, in log order.
    pub fn success(&mut self, time: Option<Timestamp>) {
        if self.failed {
            self.after.add(time);
        } else {
            self.before.add(time);
        }
        if let Some(t) = time {
            if let Some(prev) = self.last_timed
                && t > prev
                && self
                    .longest_quiet
                    .is_none_or(|(a, b)| t.duration_since(prev) > b.duration_since(a))
            {
                self.longest_quiet = Some((prev, t));
            }
            self.last_timed = Some(self.last_timed.map_or(t, |p| p.max(t)));
        }
    }

    /// A failure record, in log order: the successes since the previous failure were between.
    pub fn failure(&mut self) {
        if self.failed {
            self.between += self.after.count;
        }
        self.after = Group::default();
        self.failed = true;
    }

    /// Successes between the stream's own first and last failure, by the log's order.
    fn between_own(&self) -> u64 {
        if self.failed { self.between } else { 0 }
    }

    /// Successes that provably lie in `[from, to]`, a period that contains this stream's own
    /// failures (if it has any).
    pub fn within(&self, from: Timestamp, to: Timestamp) -> Count {
        Count::at_least(self.between_own(), true)
            .add(self.before.within(from, to, self.longest_quiet))
            .add(self.after.within(from, to, self.longest_quiet))
    }

    /// The last success before `at`, when the summary tells it; `at` is no later than this
    /// stream's first failure, so only the successes before that failure can be earlier.
    pub fn latest_before(&self, at: Timestamp) -> Option<Timestamp> {
        match self.before.last {
            Some(last) if last < at => Some(last),
            _ => self
                .longest_quiet
                .filter(|(a, b)| *a < at && at <= *b)
                .map(|(a, _)| a),
        }
    }

    /// The first success after `at`, when the summary tells it; `at` is no earlier than this
    /// stream's last failure, so only the successes after that failure can be later.
    pub fn earliest_after(&self, at: Timestamp) -> Option<Timestamp> {
        let first = if self.failed {
            self.after.first
        } else {
            self.before.first
        };
        match first {
            Some(first) if first > at => Some(first),
            _ => self
                .longest_quiet
                .filter(|(a, b)| *a <= at && at < *b)
                .map(|(_, b)| b),
        }
    }
}

/// Pods listed by name in status (succeeding pods, per-pod answers); the rest are counted.
const MAX_LISTED: usize = 20;
/// Pods named in the phrase before the rest are counted.
const MAX_NAMED: usize = 5;

/// Successes counted in a period: at least `n`, and exactly `n` when `exact`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    pub n: u64,
    pub exact: bool,
}

impl Count {
    fn at_least(n: u64, exact: bool) -> Self {
        Count { n, exact }
    }

    fn add(self, other: Count) -> Count {
        Count {
            n: self.n + other.n,
            exact: self.exact && other.exact,
        }
    }
}

/// The runbook's intermittency question answered for a triage's pods, and the phrase the
/// steps use (`{intermittency}`), about `work` (e.g. `metering`).
pub(super) fn assess(
    pods: &[PodInput],
    total: &StreamFindings,
    success_markers: BTreeMap<String, u64>,
    work: &str,
) -> (Intermittency, String) {
    fn streams(p: &PodInput) -> std::slice::Iter<'_, SuccessTimes> {
        p.findings.successes.iter()
    }
    // Successes in `[from, to]`; without times, those the logs' own order puts between.
    let within = |p: &PodInput, period: Option<(Timestamp, Timestamp)>| -> Count {
        streams(p).fold(Count::at_least(0, true), |sum, s| {
            sum.add(match period {
                Some((from, to)) => s.within(from, to),
                None => Count::at_least(s.between_own(), true),
            })
        })
    };
    let before = |p: &PodInput, at: Option<Timestamp>| {
        at.and_then(|at| streams(p).filter_map(|s| s.latest_before(at)).max())
    };
    let after = |p: &PodInput, at: Option<Timestamp>| {
        at.and_then(|at| streams(p).filter_map(|s| s.earliest_after(at)).min())
    };
    let period = total.first_failure.zip(total.last_failure);

    let mut between = Count::at_least(0, true);
    let mut succeeding = Vec::new();
    let mut per_pod = Vec::new();
    for p in pods {
        let n = within(p, period);
        between = between.add(n);
        if n.n > 0 {
            succeeding.push(p.name.clone());
        }
        let failures = p.findings.failures();
        if failures > 0 && per_pod.len() < MAX_LISTED {
            let own = p.findings.first_failure.zip(p.findings.last_failure);
            let n = within(p, own).n;
            per_pod.push(PodIntermittency {
                name: p.name.clone(),
                failures,
                successes_between_failures: n,
                last_success_before: before(p, p.findings.first_failure).map(Time),
                first_success_after: after(p, p.findings.last_failure).map(Time),
                intermittent: n > 0,
            });
        }
    }
    let last_before = pods
        .iter()
        .filter_map(|p| before(p, total.first_failure))
        .max();
    let first_after = pods
        .iter()
        .filter_map(|p| after(p, total.last_failure))
        .min();
    let intermittent = total.failures() > 0 && between.n > 0;

    let show = |t: Option<Timestamp>, none: &str| t.map_or_else(|| none.to_string(), show_time);
    let first = show(total.first_failure, "the first failure");
    let last = show(total.last_failure, "the last failure");
    let failing = format!("failures from {first} to {last}");
    let phrase = if total.failures() == 0 {
        format!("no failures, so nothing to say about {work} between them")
    } else if intermittent {
        format!(
            "{work} keeps succeeding between failures: {}{} successes between the first failure at {first} and the last at {last}, in {}",
            if between.exact { "" } else { "at least " },
            between.n,
            named(&succeeding)
        )
    } else {
        match (last_before, first_after) {
            (Some(b), None) => format!(
                "{work} stopped at {} and has not succeeded since ({failing})",
                show_time(b)
            ),
            (Some(b), Some(a)) => format!(
                "{work} stopped at {}, did not succeed during the {failing}, and succeeded again at {}",
                show_time(b),
                show_time(a)
            ),
            (None, Some(a)) => format!(
                "no {work} success before or during the {failing}; it succeeded again at {}",
                show_time(a)
            ),
            (None, None) => {
                format!("no {work} success in the logs read, before, during or after the {failing}")
            }
        }
    };
    succeeding.truncate(MAX_LISTED);
    let intermittency = Intermittency {
        failures: total.failures(),
        first_failure: total.first_failure.map(Time),
        last_failure: total.last_failure.map(Time),
        success_markers,
        successes_between_failures: between.n,
        last_success_before: last_before.map(Time),
        first_success_after: first_after.map(Time),
        succeeding_pods: succeeding,
        pods: per_pod,
        intermittent,
    };
    (intermittency, phrase)
}

fn named(pods: &[String]) -> String {
    let mut text = pods[..pods.len().min(MAX_NAMED)].join(", ");
    if pods.len() > MAX_NAMED {
        text.push_str(&format!(" and {} more pods", pods.len() - MAX_NAMED));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        format!("2026-11-21T{s}Z").parse().unwrap()
    }

    /// A stream from events in log order: `S` a success, `F` a failure, with their times.
    fn stream(events: &[(char, &str)]) -> SuccessTimes {
        let mut s = SuccessTimes::default();
        for (kind, time) in events {
            match kind {
                'S' => s.success(Some(t(time))),
                _ => s.failure(),
            }
        }
        s
    }

    #[test]
    fn a_stream_places_its_successes_around_its_own_failures() {
        let s = stream(&[
            ('S', "04:00:00"),
            ('S', "04:01:00"),
            ('F', "04:02:00"),
            ('S', "04:03:00"),
            ('F', "04:04:00"),
            ('S', "04:10:00"),
        ]);
        assert_eq!((s.before.count, s.between, s.after.count), (2, 1, 1));
        assert_eq!(s.longest_quiet, Some((t("04:03:00"), t("04:10:00"))));
        assert_eq!(s.latest_before(t("04:02:00")), Some(t("04:01:00")));
        assert_eq!(s.earliest_after(t("04:04:00")), Some(t("04:10:00")));
        assert_eq!(
            s.within(t("04:02:00"), t("04:04:00")),
            Count::at_least(1, true)
        );
        // A wider period (another pod's failures) takes in the successes on either side.
        assert_eq!(
            s.within(t("03:00:00"), t("05:00:00")),
            Count::at_least(4, true)
        );
    }

    #[test]
    fn another_logs_successes_count_only_where_their_times_place_them() {
        let every_minute: Vec<(char, String)> =
            (0..30).map(|m| ('S', format!("04:{m:02}:30"))).collect();
        let refs: Vec<(char, &str)> = every_minute.iter().map(|(c, s)| (*c, s.as_str())).collect();
        let clean = stream(&refs);
        // Straddles 04:10..04:15 with no quiet spell that long: at least one inside.
        let c = clean.within(t("04:10:00"), t("04:15:00"));
        assert!(c.n >= 1 && !c.exact, "{c:?}");
        assert_eq!(
            clean.latest_before(t("04:10:00")),
            None,
            "not told by the summary"
        );
        assert_eq!(
            clean.within(t("05:00:00"), t("05:10:00")),
            Count::at_least(0, true)
        );
        assert_eq!(clean.earliest_after(t("04:40:00")), None);
        assert_eq!(clean.latest_before(t("04:40:00")), Some(t("04:29:30")));

        // Quiet from 04:05 to 04:20: a period inside that spell has no success, and the spell
        // tells the last success before it and the first after.
        let gap = stream(&[
            ('S', "04:00:00"),
            ('S', "04:05:00"),
            ('S', "04:20:00"),
            ('S', "04:21:00"),
        ]);
        assert_eq!(
            gap.within(t("04:08:00"), t("04:12:00")),
            Count::at_least(0, true)
        );
        assert_eq!(gap.latest_before(t("04:08:00")), Some(t("04:05:00")));
        assert_eq!(gap.earliest_after(t("04:12:00")), Some(t("04:20:00")));
    }

    #[test]
    fn untimed_successes_count_by_order_only() {
        let mut s = SuccessTimes::default();
        s.failure();
        s.success(None);
        s.failure();
        s.success(None);
        assert_eq!(s.between_own(), 1);
        assert_eq!(s.within(t("04:00:00"), t("05:00:00")).n, 1);
        assert_eq!(s.latest_before(t("04:00:00")), None);
        assert_eq!(s.earliest_after(t("05:00:00")), None);
    }
}

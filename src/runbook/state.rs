//! Category rules over what a pod's status and Events say, besides its logs: a kernel OOM kill
//! or a container that never starts leaves no log line to match.
//!
//! A rule's `pod` and `events` conditions all hold or the rule does not apply to the pod. With
//! `patterns` or `httpStatus` as well, a log record of the pod fits the rule only when the pod
//! meets them (AND): the scanner of each pod is told which rules its state allows
//! ([`super::CompiledRunbook::scanner_for`]). A rule with only `pod`/`events` conditions makes
//! each pod that meets them one failure record of its category
//! ([`super::CompiledRunbook::state_findings`]), so the pods it fits feed the same precedence
//! and scope rules as pods with matching log lines.

use std::fmt;

use super::RunbookError;
use super::model::{EventMatch, PodMatch};
use super::pattern::LineRegex;

/// What a pod's status and recent Warning Events say, as `status.evidence.pods[]` records it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodState {
    pub ready: bool,
    /// Restarts of all its containers.
    pub restarts: i32,
    /// Why a container waits, e.g. `CrashLoopBackOff`, `CreateContainerConfigError`.
    pub waiting_reason: Option<String>,
    /// Why a container's previous instance ended, e.g. `OOMKilled`, `Error`.
    pub last_termination_reason: Option<String>,
    pub last_exit_code: Option<i32>,
    /// Recent Warning Events, newest first.
    pub events: Vec<PodEvent>,
}

/// A Warning Event of the pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodEvent {
    pub reason: String,
    pub message: String,
    /// How many times it happened (`count`), 1 when not known.
    pub count: i32,
}

/// As status shows it: `Reason: message`, with ` (xN)` when it happened more than once.
impl fmt::Display for PodEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)?;
        if self.count > 1 {
            write!(f, " (x{})", self.count)?;
        }
        Ok(())
    }
}

impl PodEvent {
    /// Reads back an Event as status shows it (`Reason: message (xN)`).
    pub fn parse(text: &str) -> PodEvent {
        let (reason, rest) = text.split_once(':').unwrap_or((text, ""));
        let rest = rest.trim();
        let counted = rest.strip_suffix(')').and_then(|r| {
            let (message, n) = r.rsplit_once(" (x")?;
            Some((message, n.parse::<i32>().ok()?))
        });
        let (message, count) = counted.unwrap_or((rest, 1));
        PodEvent {
            reason: reason.trim().to_string(),
            message: message.to_string(),
            count,
        }
    }
}

/// A rule's `pod` and `events` conditions, compiled.
pub(super) struct StateMatcher {
    pod: Option<PodMatch>,
    events: Option<(Vec<String>, Option<LineRegex>)>,
}

impl StateMatcher {
    pub(super) fn new(
        pod: Option<&PodMatch>,
        events: Option<&EventMatch>,
        compile: impl Fn(&str) -> Result<LineRegex, RunbookError>,
    ) -> Result<Option<Self>, RunbookError> {
        if pod.is_none() && events.is_none() {
            return Ok(None);
        }
        let events = events
            .map(|e| {
                let message = e.message.as_deref().map(&compile).transpose()?;
                Ok::<_, RunbookError>((e.reasons.clone(), message))
            })
            .transpose()?;
        Ok(Some(StateMatcher {
            pod: pod.cloned(),
            events,
        }))
    }

    pub(super) fn holds(&self, state: &PodState) -> bool {
        self.pod.as_ref().is_none_or(|p| pod_holds(p, state))
            && self
                .events
                .as_ref()
                .is_none_or(|wanted| state.events.iter().any(|e| event_fits(wanted, e)))
    }

    /// What the pod showed that fits, for samples: `pod state: lastTermination OOMKilled (exit 137)`.
    pub(super) fn describe(&self, state: &PodState) -> String {
        let mut parts = Vec::new();
        if let Some(p) = &self.pod {
            if !p.waiting_reason.is_empty() {
                parts.push(format!(
                    "waiting {}",
                    state.waiting_reason.as_deref().unwrap_or_default()
                ));
            }
            if !p.last_termination_reason.is_empty() || !p.exit_code.is_empty() {
                parts.push(format!(
                    "lastTermination {} (exit {})",
                    state.last_termination_reason.as_deref().unwrap_or_default(),
                    state
                        .last_exit_code
                        .map_or_else(|| "?".to_string(), |c| c.to_string())
                ));
            }
            if p.min_restarts.is_some() {
                parts.push(format!("restarts {}", state.restarts));
            }
            if p.ready.is_some() {
                parts.push(format!("ready {}", state.ready));
            }
        }
        if let Some(wanted) = &self.events
            && let Some(e) = state.events.iter().find(|e| event_fits(wanted, e))
        {
            parts.push(format!("event {e}"));
        }
        format!("pod state: {}", parts.join(", "))
    }
}

fn event_fits((reasons, message): &(Vec<String>, Option<LineRegex>), e: &PodEvent) -> bool {
    (reasons.is_empty() || reasons.contains(&e.reason))
        && message.as_ref().is_none_or(|m| m.is_match(&e.message))
}

fn pod_holds(p: &PodMatch, s: &PodState) -> bool {
    let one_of = |wanted: &[String], got: &Option<String>| {
        wanted.is_empty() || got.as_ref().is_some_and(|g| wanted.contains(g))
    };
    one_of(&p.waiting_reason, &s.waiting_reason)
        && one_of(&p.last_termination_reason, &s.last_termination_reason)
        && (p.exit_code.is_empty() || s.last_exit_code.is_some_and(|c| p.exit_code.contains(&c)))
        && p.min_restarts.is_none_or(|n| s.restarts >= n)
        && p.ready.is_none_or(|r| s.ready == r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{Action, Alert, Category, Scope};
    use crate::runbook::{AssessInput, Catalog, CompiledRunbook, Containers, EnvInfo, PodInput};

    const RUNBOOK: &str = r#"
id: crash
title: Crash
window: 30m
alerts: {names: [KubePodCrashLooping]}
team: platform
json: {timeFields: [ts], detailFields: [msg]}
signature: {contains: [FATAL]}
categories:
  - category: OutOfMemory
    pod: {lastTerminationReason: [OOMKilled]}
    recommend: {action: Escalate, reason: 'oom {count}'}
  - category: MountFailed
    events: {reasons: [FailedMount], message: 'secret .* not found'}
    recommend: {action: Escalate, reason: 'mount'}
  - category: BadConfig
    patterns: ['config']
    pod: {minRestarts: 3, ready: false}
    recommend: {action: Escalate, reason: 'config'}
  - category: Crash
    recommendIfSinglePod: {action: DeletePod, reason: 'one'}
    recommend: {action: Escalate, reason: 'crash'}
"#;

    fn compiled() -> CompiledRunbook {
        let alert = alert();
        let catalog = Catalog::from_yaml(&[RUNBOOK]).expect("valid runbook");
        catalog
            .select(None, &alert)
            .unwrap()
            .compile(&alert)
            .unwrap()
    }

    fn alert() -> Alert {
        Alert {
            name: "KubePodCrashLooping".into(),
            ..Alert::default()
        }
    }

    fn pod(c: &CompiledRunbook, name: &str, state: PodState, lines: &[&str]) -> PodInput {
        let mut scanner = c.scanner_for(&state);
        for line in lines {
            scanner.push(line.as_bytes());
            scanner.push(b"\n");
        }
        let mut findings = scanner.finish();
        findings.merge(c.state_findings(&state));
        PodInput {
            name: name.into(),
            ready: state.ready,
            findings,
            restart: None,
        }
    }

    fn assess(c: &CompiledRunbook, pods: Vec<PodInput>) -> crate::runbook::Verdict {
        c.assess(&AssessInput {
            alert: alert(),
            pods,
            related: Vec::new(),
            env_info: EnvInfo::NotNeeded,
            containers: Containers::default(),
        })
    }

    fn oom() -> PodState {
        PodState {
            restarts: 1,
            last_termination_reason: Some("OOMKilled".into()),
            last_exit_code: Some(137),
            ..PodState::default()
        }
    }

    fn healthy() -> PodState {
        PodState {
            ready: true,
            ..PodState::default()
        }
    }

    #[test]
    fn a_pod_state_alone_classifies_without_a_log_line() {
        let c = compiled();
        let v = assess(
            &c,
            vec![pod(&c, "a", oom(), &[]), pod(&c, "b", healthy(), &[])],
        );
        assert_eq!(
            v.classification.category,
            Category::new("OutOfMemory").unwrap()
        );
        assert_eq!(v.classification.scope, Scope::SinglePod);
        assert_eq!(v.recommendation.reason, "oom 1");
        let all = assess(&c, vec![pod(&c, "a", oom(), &[]), pod(&c, "b", oom(), &[])]);
        assert_eq!(all.classification.scope, Scope::AllPods);
        // The state outranks the catch-all the pod's log lines fall into.
        let both = assess(&c, vec![pod(&c, "a", oom(), &["FATAL boom"])]);
        assert_eq!(
            both.classification.category,
            Category::new("OutOfMemory").unwrap()
        );
        assert!(
            both.classification.reason.contains("also 1 Crash"),
            "{}",
            both.classification.reason
        );
        let clean = assess(&c, vec![pod(&c, "a", healthy(), &[])]);
        assert_eq!(clean.classification.category, Category::NO_EVIDENCE);
    }

    #[test]
    fn patterns_and_pod_conditions_must_both_hold() {
        let c = compiled();
        let restarting = PodState {
            restarts: 3,
            ..PodState::default()
        };
        let v = assess(
            &c,
            vec![pod(&c, "a", restarting.clone(), &["FATAL bad config"])],
        );
        assert_eq!(
            v.classification.category,
            Category::new("BadConfig").unwrap()
        );
        // Too few restarts: the same line falls through to the next rule that fits.
        let once = PodState {
            restarts: 2,
            ..restarting.clone()
        };
        let v = assess(&c, vec![pod(&c, "a", once, &["FATAL bad config"])]);
        assert_eq!(v.classification.category, Category::new("Crash").unwrap());
        // Ready: the readiness condition fails.
        let ready = PodState {
            ready: true,
            ..restarting
        };
        let v = assess(
            &c,
            vec![
                pod(&c, "a", ready, &["FATAL bad config"]),
                pod(&c, "b", healthy(), &[]),
            ],
        );
        assert_eq!(v.classification.category, Category::new("Crash").unwrap());
        // A scanner that knows no state never applies a conditional rule.
        let mut plain = c.scanner();
        plain.push(b"FATAL bad config\n");
        assert_eq!(
            plain.finish().matches,
            [(Category::new("Crash").unwrap(), 1)].into()
        );
    }

    #[test]
    fn events_match_on_reason_and_message() {
        let c = compiled();
        let with = |reason: &str, message: &str| PodState {
            events: vec![PodEvent {
                reason: reason.into(),
                message: message.into(),
                count: 2,
            }],
            ..PodState::default()
        };
        let v = assess(
            &c,
            vec![
                pod(&c, "a", with("FailedMount", "secret \"db\" not found"), &[]),
                pod(&c, "b", healthy(), &[]),
            ],
        );
        assert_eq!(
            v.classification.category,
            Category::new("MountFailed").unwrap()
        );
        assert_eq!(v.recommendation.action, Action::Escalate);
        for state in [
            with("FailedMount", "volume busy"),
            with("BackOff", "secret x not found"),
        ] {
            let v = assess(&c, vec![pod(&c, "a", state, &[])]);
            assert_eq!(v.classification.category, Category::NO_EVIDENCE);
        }
        let shown = c.state_findings(&with("FailedMount", "secret y not found"));
        assert_eq!(
            shown.samples,
            ["pod state: event FailedMount: secret y not found (x2)"]
        );
    }

    #[test]
    fn bad_state_rules_are_refused() {
        for (change, error) in [
            ("pod: {}", "pod needs at least one condition"),
            ("events: {}", "events needs reasons or a message pattern"),
            ("events: {message: '(unclosed'}", "events.message"),
            ("pod: {waitingReason: ['']}", "a reason must not be empty"),
            ("pod: {minRestarts: 0}", "minRestarts must be at least 1"),
        ] {
            let text = RUNBOOK.replace("pod: {lastTerminationReason: [OOMKilled]}", change);
            let Err(err) = Catalog::from_yaml(&[&text]) else {
                panic!("{change} was accepted");
            };
            let err = err.to_string();
            assert!(err.contains(error), "{change}: {err}");
        }
        let last_with_state = RUNBOOK.replace(
            "recommendIfSinglePod: {action: DeletePod, reason: 'one'}",
            "pod: {ready: false}",
        );
        let Err(err) = Catalog::from_yaml(&[&last_with_state]) else {
            panic!("a last rule with pod conditions was accepted");
        };
        let err = err.to_string();
        assert!(
            err.contains("the last category must have no httpStatus, patterns, pod or events"),
            "{err}"
        );
    }

    #[test]
    fn events_read_back_as_status_shows_them() {
        for (text, reason, message, count) in [
            (
                "BackOff: Back-off restarting (x12)",
                "BackOff",
                "Back-off restarting",
                12,
            ),
            (
                "FailedMount: secret \"x\" not found",
                "FailedMount",
                "secret \"x\" not found",
                1,
            ),
            ("Odd", "Odd", "", 1),
            ("A: b (xq)", "A", "b (xq)", 1),
        ] {
            let e = PodEvent::parse(text);
            assert_eq!(
                (e.reason.as_str(), e.message.as_str(), e.count),
                (reason, message, count),
                "{text}"
            );
            assert_eq!(PodEvent::parse(&e.to_string()), e);
        }
    }
}

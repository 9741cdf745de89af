//! What `kubectl triage` prints: plain functions from AlertTriages to text, so the wording and
//! the ordering are unit-tested without a cluster.

use std::fmt::Write as _;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::crd::{AlertTriage, AlertTriageStatus, Phase, Proposal, RemediationOutcome};

/// How urgently a triage needs a person, most urgent first: the order of `kubectl triage list`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Attention {
    /// A proposal waits for someone to approve it (and expires unattended).
    Approve,
    /// An API key must be rotated by a person.
    RotateApiKey,
    /// A team must be paged.
    Escalated,
    /// The triage cannot go on until its spec changes (kstatus `Stalled=True`).
    Stalled,
    /// Finished, but a person should look: a failed or unverified remediation, no evidence, or
    /// an object this plugin cannot read.
    Look,
    /// The operator is still working on it.
    InProgress,
    /// Nothing left to do.
    Done,
}

/// One AlertTriage as listed: either readable, or the reason it is not (a plugin older than
/// the operator that wrote it, say).
pub enum Item {
    Triage(Box<AlertTriage>),
    Unreadable {
        namespace: String,
        name: String,
        error: String,
    },
}

impl Item {
    fn namespace(&self) -> &str {
        match self {
            Item::Triage(t) => t.metadata.namespace.as_deref().unwrap_or_default(),
            Item::Unreadable { namespace, .. } => namespace,
        }
    }

    fn name(&self) -> &str {
        match self {
            Item::Triage(t) => t.metadata.name.as_deref().unwrap_or_default(),
            Item::Unreadable { name, .. } => name,
        }
    }

    fn created(&self) -> Option<Timestamp> {
        match self {
            Item::Triage(t) => t.metadata.creation_timestamp.as_ref().map(|c| c.0),
            Item::Unreadable { .. } => None,
        }
    }

    fn attention(&self) -> Attention {
        match self {
            Item::Triage(t) => attention(t),
            Item::Unreadable { .. } => Attention::Look,
        }
    }
}

/// The status, when it describes the object's current generation; an older one says nothing
/// about what the spec asks now.
fn current_status(t: &AlertTriage) -> Option<&AlertTriageStatus> {
    let status = t.status.as_ref()?;
    match (status.observed_generation, t.metadata.generation) {
        (Some(observed), Some(generation)) if observed < generation => None,
        _ => Some(status),
    }
}

/// A condition of the current generation (kstatus: one observed for an older generation is
/// stale and does not count).
pub fn condition<'a>(t: &'a AlertTriage, type_: &str) -> Option<&'a Condition> {
    let status = current_status(t)?;
    status.conditions.iter().find(|c| {
        c.type_ == type_
            && match (c.observed_generation, t.metadata.generation) {
                (Some(observed), Some(generation)) => observed >= generation,
                _ => true,
            }
    })
}

fn is_true(t: &AlertTriage, type_: &str) -> bool {
    condition(t, type_).is_some_and(|c| c.status == "True")
}

fn unverified(status: &AlertTriageStatus) -> bool {
    status
        .remediation
        .as_ref()
        .is_some_and(|r| r.outcome == RemediationOutcome::Unverified)
}

pub fn attention(t: &AlertTriage) -> Attention {
    let Some(status) = current_status(t) else {
        return Attention::InProgress;
    };
    match status.phase {
        Some(Phase::AwaitingApproval) => return Attention::Approve,
        Some(Phase::ApiKeyRotationRequired) => return Attention::RotateApiKey,
        Some(Phase::Escalated) => return Attention::Escalated,
        _ => {}
    }
    if is_true(t, "Stalled") {
        return Attention::Stalled;
    }
    if status.phase == Some(Phase::RemediationFailed)
        || unverified(status)
        || is_true(t, "ActionRequired")
    {
        return Attention::Look;
    }
    match status.phase {
        Some(Phase::Remediated | Phase::NoAction) => Attention::Done,
        _ => Attention::InProgress,
    }
}

/// A short age like kubectl's: `45s`, `12m`, `5h`, `3d`.
pub fn age(d: SignedDuration) -> String {
    let secs = d.as_secs().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// When `at` is, from `now`: `in 12m` or `3m ago`.
fn relative(at: Timestamp, now: Timestamp) -> String {
    let d = at.duration_since(now);
    if d.is_negative() {
        format!("{} ago", age(-d))
    } else {
        format!("in {}", age(d))
    }
}

/// The phase of the current generation; a phase recorded for an older spec would mislead, and
/// until the operator has looked again the triage is as good as pending.
fn phase_of(t: &AlertTriage) -> &'static str {
    current_status(t)
        .and_then(|s| s.phase)
        .map_or("Pending", Phase::as_str)
}

fn proposal_summary(p: &Proposal, now: Timestamp) -> String {
    let what = match p.action {
        crate::crd::Action::DeletePod => format!("delete pod {}", p.pod),
        other => format!("{} {}", other.as_str(), p.pod),
    };
    let expires = p.expires_at.0;
    if expires <= now {
        format!("{what} (expired {})", relative(expires, now))
    } else {
        format!("{what} (expires {})", relative(expires, now))
    }
}

/// What a person has to do about the triage, in a few words (the NEEDS column).
pub fn needs(t: &AlertTriage, now: Timestamp) -> String {
    let Some(status) = current_status(t) else {
        return match t.status {
            Some(_) => "wait: the spec changed, not triaged again yet".into(),
            None => "wait: not triaged yet".into(),
        };
    };
    let condition_message = |type_: &str| {
        condition(t, type_)
            .map(|c| format!("{}: {}", c.reason, c.message))
            .unwrap_or_default()
    };
    match attention(t) {
        Attention::Approve => match &status.proposal {
            Some(p) => format!("approve: {}", proposal_summary(p, now)),
            None => "approve: no proposal recorded".into(),
        },
        Attention::RotateApiKey => {
            let mut s = String::from("rotate the API key");
            if let Some(account) = status
                .api_key_rotation
                .as_ref()
                .and_then(|r| r.account.as_deref())
            {
                let _ = write!(s, " (account {account})");
            }
            s
        }
        Attention::Escalated => match status
            .recommendation
            .as_ref()
            .and_then(|r| r.team.as_deref())
        {
            Some(team) => format!("page {team}"),
            None => "escalate".into(),
        },
        Attention::Stalled => format!("fix the spec: {}", condition_message("Stalled")),
        Attention::Look => {
            if let Some(r) = status.remediation.as_ref().filter(|r| {
                matches!(
                    r.outcome,
                    RemediationOutcome::Failed | RemediationOutcome::Unverified
                )
            }) {
                format!("look: remediation {}: {}", r.outcome.as_str(), r.message)
            } else if is_true(t, "ActionRequired") {
                format!("look: {}", condition_message("ActionRequired"))
            } else {
                "look".into()
            }
        }
        Attention::InProgress => "wait".into(),
        Attention::Done => "-".into(),
    }
}

/// `kubectl triage list`: what needs a person first (oldest first within each kind), then the
/// rest.
pub fn list(mut items: Vec<Item>, all_namespaces: bool, now: Timestamp) -> String {
    let key = |i: &Item| {
        let created = i.created();
        (i.attention(), created.is_none(), created)
    };
    items.sort_by(|a, b| {
        key(a)
            .cmp(&key(b))
            .then_with(|| (a.namespace(), a.name()).cmp(&(b.namespace(), b.name())))
    });
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header = vec!["NAME", "PHASE", "CATEGORY", "SCOPE", "AGE", "NEEDS"];
    if all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    rows.push(header.into_iter().map(String::from).collect());
    for item in &items {
        let mut row = match item {
            Item::Triage(t) => {
                let classification = current_status(t).and_then(|s| s.classification.as_ref());
                vec![
                    item.name().to_string(),
                    phase_of(t).to_string(),
                    classification.map_or("-".into(), |c| c.category.as_str().to_string()),
                    classification.map_or("-".into(), |c| format!("{:?}", c.scope)),
                    item.created()
                        .map_or("-".into(), |c| age(now.duration_since(c))),
                    needs(t, now),
                ]
            }
            Item::Unreadable { error, .. } => vec![
                item.name().to_string(),
                "?".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                format!("look: cannot read it: {error}"),
            ],
        };
        if all_namespaces {
            row.insert(0, item.namespace().to_string());
        }
        rows.push(row);
    }
    table(&rows)
}

/// Left-aligned columns three spaces apart, like kubectl's; the last column is not padded.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == columns {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}   ", width = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn bytes(n: u64) -> String {
    match n {
        n if n < 10 * 1024 => format!("{n} B"),
        n if n < 10 * 1024 * 1024 => format!("{} KiB", n / 1024),
        n => format!("{} MiB", n / (1024 * 1024)),
    }
}

fn indent(text: &str, by: &str) -> String {
    text.lines()
        .map(|l| {
            if l.trim().is_empty() {
                "\n".to_string()
            } else {
                format!("{by}{l}\n")
            }
        })
        .collect::<String>()
}

/// `kubectl triage why NAME`: the verdict, the evidence in brief, what to do next with the
/// runbook's steps filled in, and the customer notice.
pub fn why(t: &AlertTriage, now: Timestamp) -> String {
    let mut out = String::new();
    let namespace = t.metadata.namespace.as_deref().unwrap_or_default();
    let name = t.metadata.name.as_deref().unwrap_or_default();
    let _ = writeln!(out, "AlertTriage {namespace}/{name}");
    let labels: Vec<String> = t
        .spec
        .alert
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let _ = write!(out, "Alert:     {}", t.spec.alert.name);
    if !labels.is_empty() {
        let _ = write!(out, " ({})", labels.join(", "));
    }
    out.push('\n');
    let Some(status) = current_status(t) else {
        let _ = writeln!(out, "Phase:     {}", phase_of(t));
        let _ = writeln!(
            out,
            "\nThe operator has not triaged generation {} yet; nothing below is decided.",
            t.metadata.generation.unwrap_or_default()
        );
        return out;
    };
    let _ = writeln!(out, "Phase:     {}", phase_of(t));
    if let Some(runbook) = &status.runbook {
        let _ = writeln!(out, "Runbook:   {runbook}");
    }
    if let Some(c) = &status.classification {
        let _ = write!(out, "Verdict:   {} ({:?}", c.category.as_str(), c.scope);
        if let Some(code) = c.http_status {
            let _ = write!(out, ", HTTP {code}");
        }
        out.push(')');
        if !c.reason.is_empty() {
            let _ = write!(out, ": {}", c.reason);
        }
        out.push('\n');
    }
    if let Some(r) = &status.recommendation {
        let _ = write!(out, "Action:    {}", r.action.as_str());
        if let Some(team) = &r.team {
            let _ = write!(out, " (team {team})");
        }
        let _ = writeln!(out, ": {}", r.reason);
    }
    let _ = writeln!(out, "Needs:     {}", needs(t, now));

    if let Some(e) = &status.evidence {
        let _ = write!(
            out,
            "\nEvidence: window {}, {} pod(s), {} lines, {} read",
            e.window,
            e.pods.len() as u64 + u64::from(e.pods_omitted),
            e.lines_scanned,
            bytes(e.bytes_scanned)
        );
        if let Some(since) = &e.since {
            let _ = write!(out, " since {}", since.0);
        }
        if let Some(until) = &e.until {
            let _ = write!(out, " until {}", until.0);
        }
        out.push('\n');
        if !e.containers_skipped.is_empty() {
            let _ = writeln!(
                out,
                "  containers read: {}; skipped: {}",
                e.containers_read.join(", "),
                e.containers_skipped.join(", ")
            );
        }
        for p in &e.pods {
            let mut facts = vec![
                if p.phase.is_empty() {
                    "?".to_string()
                } else {
                    p.phase.clone()
                },
                if p.ready { "ready" } else { "not ready" }.to_string(),
                format!("{} restart(s)", p.restarts),
            ];
            facts.extend(p.waiting_reason.clone());
            facts.extend(p.last_termination.clone().map(|l| format!("last {l}")));
            let matches: Vec<String> = p.matches.iter().map(|(k, v)| format!("{k}={v}")).collect();
            if !matches.is_empty() {
                facts.push(format!("matches {}", matches.join(" ")));
            }
            let _ = writeln!(out, "  {}: {}", p.name, facts.join(", "));
            for s in &p.samples {
                let _ = writeln!(out, "    | {s}");
            }
            for ev in &p.events {
                let _ = writeln!(out, "    event {ev}");
            }
            if let Some(err) = &p.log_error {
                let _ = writeln!(out, "    logs: {err}");
            }
        }
        if e.pods_omitted > 0 {
            let _ = writeln!(out, "  ... {} more pod(s) left out", e.pods_omitted);
        }
        if let Some(i) = &e.intermittency {
            let markers: Vec<String> = i
                .success_markers
                .iter()
                .map(|(k, v)| format!("{k} x{v}"))
                .collect();
            let _ = write!(
                out,
                "  {} failure line(s), {}",
                i.failures,
                if i.intermittent {
                    "intermittent"
                } else {
                    "not intermittent"
                }
            );
            if !markers.is_empty() {
                let _ = write!(out, "; successes: {}", markers.join(", "));
            }
            if !i.succeeding_pods.is_empty() {
                let _ = write!(
                    out,
                    "; between failures in {}",
                    i.succeeding_pods.join(", ")
                );
            }
            if let Some(t) = &i.last_success_before {
                let _ = write!(out, "; last success before {}", t.0);
            }
            if let Some(t) = &i.first_success_after {
                let _ = write!(out, "; first after {}", t.0);
            }
            out.push('\n');
        }
        for r in &e.related_services {
            let _ = writeln!(
                out,
                "  also seen in {}: {} match(es) in {} pod(s)",
                r.service, r.matches, r.pods
            );
        }
        for n in &e.notes {
            let _ = writeln!(out, "  note: {n}");
        }
    }

    if let Some(r) = status
        .recommendation
        .as_ref()
        .filter(|r| !r.next_steps.is_empty())
    {
        out.push_str("\nNext steps:\n");
        for (i, step) in r.next_steps.iter().enumerate() {
            let _ = writeln!(out, "  {}. {step}", i + 1);
        }
    }
    if let Some(k) = status.api_key_rotation.as_ref().filter(|k| k.required) {
        let _ = writeln!(out, "\nAPI key rotation: {}", k.reason);
        if let Some(a) = &k.account {
            let _ = writeln!(out, "  account:        {a}");
        }
        if let Some(g) = &k.resource_group {
            let _ = writeln!(out, "  resource group: {g}");
        }
        if !k.controller_ids.is_empty() {
            let _ = writeln!(out, "  controller IDs: {}", k.controller_ids.join(", "));
        }
        if let Some(s) = &k.source {
            let _ = writeln!(out, "  source:         {s}");
        }
        // The runbook's rotation steps are often its next steps, already printed above.
        let next_steps = status.recommendation.as_ref().map(|r| &r.next_steps);
        if next_steps != Some(&k.steps) {
            for (i, step) in k.steps.iter().enumerate() {
                let _ = writeln!(out, "  {}. {step}", i + 1);
            }
        }
        for f in &k.follow_up {
            let _ = writeln!(out, "  then: {f}");
        }
    }
    if let Some(p) = &status.proposal {
        let _ = writeln!(
            out,
            "\nProposal {}: {} (UID {})",
            p.id,
            proposal_summary(p, now),
            p.pod_uid
        );
        match &t.spec.approval {
            Some(a) if a.proposal == p.id => {
                let _ = writeln!(out, "  approved by {}", a.approved_by);
            }
            _ if status.phase == Some(Phase::AwaitingApproval) && p.expires_at.0 > now => {
                let _ = writeln!(
                    out,
                    "  approve it: kubectl triage approve {name} -n {namespace}"
                );
            }
            _ => {}
        }
    }
    if let Some(r) = &status.remediation {
        let _ = write!(
            out,
            "\nRemediation: {} of pod {} approved by {}: {}",
            r.action.as_str(),
            r.pod,
            r.approved_by,
            r.outcome.as_str()
        );
        if !r.message.is_empty() {
            let _ = write!(out, " ({})", r.message);
        }
        out.push('\n');
        if let Some(replacement) = &r.replacement {
            let _ = writeln!(out, "  replaced by {replacement}");
        }
    }
    if let Some(n) = status.notification.as_ref().filter(|n| !n.title.is_empty()) {
        let _ = writeln!(out, "\nNotice: {}", n.title);
        out.push_str(&indent(&n.body, "  "));
    }
    if let Some(n) = status
        .notification
        .as_ref()
        .filter(|n| !n.deliveries.is_empty())
    {
        out.push_str("\nNotifications:\n");
        for d in &n.deliveries {
            let _ = write!(
                out,
                "  {} {} {}: {:?} after {} attempt(s) at {}",
                d.target,
                d.kind.as_str(),
                d.event.as_str(),
                d.result,
                d.attempts,
                d.time.0
            );
            if let Some(error) = &d.error {
                let _ = write!(out, " ({error})");
            }
            out.push('\n');
        }
    }
    if !status.conditions.is_empty() {
        out.push_str("\nConditions:\n");
        for c in &status.conditions {
            let _ = write!(out, "  {}={} {}", c.type_, c.status, c.reason);
            if !c.message.is_empty() {
                let _ = write!(out, ": {}", c.message);
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    use super::*;

    fn now() -> Timestamp {
        "2026-01-02T03:00:00Z".parse().unwrap()
    }

    fn triage(name: &str, created: &str, status: serde_json::Value) -> AlertTriage {
        serde_json::from_value(json!({
            "apiVersion": "triage.dev/v1alpha1",
            "kind": "AlertTriage",
            "metadata": {"name": name, "namespace": "pay", "generation": 2,
                         "creationTimestamp": created},
            "spec": {"alert": {"name": "armada-cluster_error_metering_token_exchange",
                               "labels": {"region": "us-south"}}},
            "status": status,
        }))
        .unwrap()
    }

    fn condition(type_: &str, status: &str, reason: &str, generation: i64) -> serde_json::Value {
        json!({"type": type_, "status": status, "reason": reason, "message": format!("{reason} message"),
               "lastTransitionTime": "2026-01-02T02:00:00Z", "observedGeneration": generation})
    }

    fn waiting(name: &str, created: &str) -> AlertTriage {
        triage(
            name,
            created,
            json!({"phase": "AwaitingApproval", "observedGeneration": 2,
                   "classification": {"category": "NetworkFailure", "scope": "SinglePod"},
                   "proposal": {"id": "delete-pod-abc", "action": "DeletePod", "pod": "web-1",
                                "podUID": "u-1", "expiresAt": "2026-01-02T03:12:00Z"}}),
        )
    }

    #[test]
    fn list_puts_what_needs_a_person_first_and_the_oldest_first_within() {
        let items = vec![
            triage(
                "done",
                "2026-01-01T00:00:00Z",
                json!({"phase": "NoAction", "observedGeneration": 2}),
            ),
            triage(
                "stalled",
                "2026-01-02T02:00:00Z",
                json!({"observedGeneration": 2, "conditions": [condition("Stalled", "True", "UnknownRunbook", 2)]}),
            ),
            triage(
                "escalated",
                "2026-01-02T02:00:00Z",
                json!({"phase": "Escalated", "observedGeneration": 2,
                       "recommendation": {"action": "Escalate", "team": "troutbridge", "reason": "429"}}),
            ),
            waiting("newer", "2026-01-02T02:50:00Z"),
            triage(
                "rotate",
                "2026-01-02T02:00:00Z",
                json!({"phase": "ApiKeyRotationRequired", "observedGeneration": 2,
                       "apiKeyRotation": {"required": true, "reason": "401", "account": "acct-1"}}),
            ),
            waiting("older", "2026-01-02T02:30:00Z"),
            triage(
                "gathering",
                "2026-01-02T02:59:00Z",
                json!({"phase": "Gathering", "observedGeneration": 2}),
            ),
            triage(
                "no-evidence",
                "2026-01-02T02:00:00Z",
                json!({"phase": "NoAction", "observedGeneration": 2,
                       "conditions": [condition("ActionRequired", "True", "NoEvidence", 2)]}),
            ),
        ];
        let mut items: Vec<Item> = items
            .into_iter()
            .map(|t| Item::Triage(Box::new(t)))
            .collect();
        items.push(Item::Unreadable {
            namespace: "pay".into(),
            name: "from-the-future".into(),
            error: "unknown variant `Later`".into(),
        });
        let text = list(items, false, now());
        let names: Vec<&str> = text
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "older",
                "newer",
                "rotate",
                "escalated",
                "stalled",
                "no-evidence",
                "from-the-future",
                "gathering",
                "done"
            ],
            "{text}"
        );
        assert!(text.starts_with("NAME "), "{text}");
        let line = |name: &str| text.lines().find(|l| l.starts_with(name)).unwrap();
        assert!(
            line("older").ends_with("approve: delete pod web-1 (expires in 12m)"),
            "{text}"
        );
        assert!(line("older").contains("30m"), "{text}");
        assert!(line("rotate").ends_with("rotate the API key (account acct-1)"));
        assert!(line("escalated").ends_with("page troutbridge"));
        assert!(line("stalled").ends_with("fix the spec: UnknownRunbook: UnknownRunbook message"));
        assert!(line("no-evidence").ends_with("look: NoEvidence: NoEvidence message"));
        assert!(line("from-the-future").contains("unknown variant"));
        assert!(line("done").ends_with(" -"));
    }

    #[test]
    fn a_status_of_an_older_generation_and_stale_conditions_decide_nothing() {
        let mut t = waiting("w", "2026-01-02T02:00:00Z");
        t.metadata.generation = Some(3);
        assert_eq!(attention(&t), Attention::InProgress);
        assert_eq!(
            needs(&t, now()),
            "wait: the spec changed, not triaged again yet"
        );
        assert!(why(&t, now()).contains("has not triaged generation 3 yet"));

        let stale = triage(
            "s",
            "2026-01-02T02:00:00Z",
            json!({"phase": "NoAction", "observedGeneration": 2,
                   "conditions": [condition("Stalled", "True", "UnknownRunbook", 1)]}),
        );
        assert_eq!(attention(&stale), Attention::Done);
    }

    #[test]
    fn all_namespaces_adds_the_namespace_column() {
        let text = list(
            vec![Item::Triage(Box::new(waiting("w", "2026-01-02T02:00:00Z")))],
            true,
            now(),
        );
        assert!(text.starts_with("NAMESPACE   NAME "), "{text}");
        assert!(text.lines().nth(1).unwrap().starts_with("pay         w "));
    }

    #[test]
    fn why_lists_the_notification_deliveries_without_an_empty_notice() {
        let t = triage(
            "esc",
            "2026-01-02T02:00:00Z",
            json!({
                "phase": "Escalated",
                "notification": {"deliveries": [
                    {"target": "am", "kind": "Escalation", "key": "k1", "event": "Firing",
                     "result": "Delivered", "attempts": 1, "time": "2026-01-02T02:01:00Z"},
                    {"target": "pd", "kind": "Escalation", "key": "k1", "event": "Firing",
                     "result": "Failed", "attempts": 2, "time": "2026-01-02T02:02:00Z",
                     "error": "HTTP 503"}
                ]}
            }),
        );
        let out = why(&t, "2026-01-02T02:03:00Z".parse().unwrap());
        assert!(!out.contains("Notice:"), "{out}");
        assert!(
            out.contains(
                "Notifications:\n  am Escalation firing: Delivered after 1 attempt(s) at 2026-01-02T02:01:00Z\n  pd Escalation firing: Failed after 2 attempt(s) at 2026-01-02T02:02:00Z (HTTP 503)\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn why_tells_the_whole_story_in_plain_text() {
        let t = triage(
            "net",
            "2026-01-02T02:00:00Z",
            json!({
                "phase": "AwaitingApproval", "observedGeneration": 2, "runbook": "metering-token-exchange",
                "classification": {"category": "NetworkFailure", "scope": "SinglePod", "httpStatus": 503,
                                   "reason": "one pod cannot reach IAM"},
                "evidence": {"window": "1h", "linesScanned": 20, "bytesScanned": 2048,
                             "pods": [{"name": "web-1", "uid": "u-1", "phase": "Running", "ready": false,
                                       "restarts": 3, "waitingReason": "CrashLoopBackOff",
                                       "matches": {"NetworkFailure": 5}, "samples": ["dial tcp: connection refused"],
                                       "linesScanned": 10, "bytesScanned": 1024}],
                             "notes": ["pod web-2 was gone"]},
                "recommendation": {"action": "DeletePod", "reason": "only web-1 fails",
                                   "nextSteps": ["Delete pod web-1", "Watch the replacement"]},
                "proposal": {"id": "delete-pod-abc", "action": "DeletePod", "pod": "web-1",
                             "podUID": "u-1", "expiresAt": "2026-01-02T03:12:00Z"},
                "notification": {"title": "Metering delayed", "body": "Usage in us-south\n  \nis delayed."},
                "conditions": [condition("Triaged", "True", "Classified", 2)]
            }),
        );
        let text = why(&t, now());
        for part in [
            "AlertTriage pay/net\n",
            "Alert:     armada-cluster_error_metering_token_exchange (region=us-south)\n",
            "Phase:     AwaitingApproval\n",
            "Runbook:   metering-token-exchange\n",
            "Verdict:   NetworkFailure (SinglePod, HTTP 503): one pod cannot reach IAM\n",
            "Action:    DeletePod: only web-1 fails\n",
            "Evidence: window 1h, 1 pod(s), 20 lines, 2048 B read\n",
            "  web-1: Running, not ready, 3 restart(s), CrashLoopBackOff, matches NetworkFailure=5\n",
            "    | dial tcp: connection refused\n",
            "  note: pod web-2 was gone\n",
            "Next steps:\n  1. Delete pod web-1\n  2. Watch the replacement\n",
            "Proposal delete-pod-abc: delete pod web-1 (expires in 12m) (UID u-1)\n",
            "  approve it: kubectl triage approve net -n pay\n",
            "Notice: Metering delayed\n  Usage in us-south\n\n  is delayed.\n",
            "Conditions:\n  Triaged=True Classified: Classified message\n",
        ] {
            assert!(text.contains(part), "no {part:?} in\n{text}");
        }
    }

    #[test]
    fn ages_read_like_kubectls() {
        assert_eq!(age(SignedDuration::from_secs(45)), "45s");
        assert_eq!(age(SignedDuration::from_mins(12)), "12m");
        assert_eq!(age(SignedDuration::from_hours(5)), "5h");
        assert_eq!(age(SignedDuration::from_hours(72)), "3d");
        assert_eq!(age(SignedDuration::from_secs(-5)), "0s");
        let t = Time(now());
        assert_eq!(
            relative(t.0 - SignedDuration::from_mins(3), now()),
            "3m ago"
        );
    }
}

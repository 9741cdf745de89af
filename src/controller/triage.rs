//! One generation of an AlertTriage, from alert to recorded verdict.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use tracing::{info, instrument};

use super::conditions::{ACTION_REQUIRED, Conditions, REMEDIATED, TRIAGED};
use super::phase::{self, Outcome};
use super::propose::{Proposed, propose};
use super::record::{Note, Record};
use super::resolve::{Resolved, Unworkable, resolve};
use super::{Context, Error, facts, requeue_until};
use crate::crash;
use crate::crd::{self, AlertTriage, AlertTriageStatus, Evidence, Phase};
use crate::evidence;
use crate::runbook::{AssessInput, EnvInfo, PodInput, RelatedInput, Verdict};

#[instrument(skip_all, fields(triage = %obj.name_any(), namespace = obj.namespace().unwrap_or_default(), generation = obj.metadata.generation))]
pub async fn triage(obj: &AlertTriage, ctx: &Context, now: Timestamp) -> Result<Action, Error> {
    let record = Record::new(ctx, obj);
    let generation = obj.metadata.generation.unwrap_or_default();
    let previous = obj.status.clone().unwrap_or_default();
    let resolved = match resolve(obj, ctx) {
        Ok(r) => r,
        Err(u) => return stall(&record, obj, u, now).await,
    };
    let Resolved {
        runbook,
        source,
        compiled,
        namespace,
        selector,
        window,
    } = &resolved;

    let digest = phase::spec_digest(&obj.spec);
    // A proposal made for an older spec is withdrawn: an approval is bound to the spec it
    // approved and never carries over.
    let withdrawn = previous
        .proposal
        .as_ref()
        .filter(|_| previous.observed_generation != Some(generation));
    if let Some(p) = withdrawn {
        let note = Note::normal(
            "ProposalWithdrawn",
            format!(
                "proposal {} to delete pod {} was withdrawn: the spec changed (generation {generation}); triaging the new spec",
                p.id, p.pod
            ),
        );
        record.event(note).await;
    }
    if previous.phase != Some(Phase::Gathering) || previous.observed_generation != Some(generation)
    {
        let mut conditions = Conditions::new(&previous.conditions, generation, now);
        conditions.set(TRIAGED, false, "Gathering", "gathering evidence");
        let gathering = AlertTriageStatus {
            phase: Some(phase::after(Outcome::Gathering)),
            observed_generation: Some(generation),
            spec_digest: Some(digest.clone()),
            remediation: kept_remediation(&previous),
            runbook: Some(runbook.id().to_string()),
            runbook_ref: Some(source.clone()),
            conditions: conditions.into_vec(),
            ..AlertTriageStatus::default()
        };
        let note = Note::normal(
            "Gathering",
            format!(
                "Applying runbook {} to pods {} in {namespace}",
                runbook.id(),
                selector.to_query()
            ),
        );
        record.write(gathering, Some(note)).await?;
        crash::point("while-gathering").await;
    }

    // A triage records what it saw; the watch cache is recent enough for its pods, and an
    // Events list made a moment before it asked, after it was created, for their Events. A
    // remediation looks again, from etcd and a list of its own, before it acts.
    let events_fresh = obj.metadata.creation_timestamp.as_ref().map_or(
        evidence::Freshness::AfterRequest,
        |created| evidence::Freshness::Shared {
            created: created.0,
            now,
        },
    );
    let plan = evidence::Plan {
        pods_from_cache: true,
        events_fresh,
        ..resolved.plan(obj, ctx, now)
    };
    let gathered = evidence::gather(&ctx.client, &plan, compiled).await?;
    let env_info = match runbook.env_info_spec() {
        Some(spec) => facts::env_info(ctx, spec, namespace).await?,
        None => EnvInfo::NotNeeded,
    };
    let mut input = AssessInput {
        alert: obj.spec.alert.clone(),
        pods: gathered
            .pods
            .iter()
            .map(|p| PodInput {
                name: p.facts.name.clone(),
                ready: p.facts.ready,
                findings: p.findings.clone(),
                restart: p.restart.clone(),
            })
            .collect(),
        related: Vec::new(),
        env_info,
        containers: evidence::containers(&gathered.pods, plan.container.as_deref()),
    };
    let mut verdict = compiled.assess(&input);
    if Some(&verdict.classification.category) == runbook.related_category()
        && let Some((label_key, services)) = runbook.related_services()
    {
        let own: BTreeSet<String> = gathered.pods.iter().map(|p| p.facts.uid.clone()).collect();
        let related =
            evidence::gather_related(&ctx.client, &plan, compiled, label_key, services, &own)
                .await?;
        input.related = related
            .into_iter()
            .map(|(service, pods, findings)| RelatedInput {
                service,
                pods,
                findings,
            })
            .collect();
        verdict = compiled.assess(&input);
    }

    let lines = gathered.pods.iter().map(|p| p.findings.lines).sum();
    let bytes = gathered.pods.iter().map(|p| p.findings.bytes).sum();
    let mut matches: BTreeMap<String, u64> = BTreeMap::new();
    for p in &gathered.pods {
        for (c, n) in &p.findings.matches {
            *matches.entry(c.as_str().to_string()).or_default() += n;
        }
    }
    let evidence = Evidence {
        window: crate::duration::format(*window),
        since: Some(Time(plan.since)),
        // A window that ends now was read to the end of each log: it ended at the newest line
        // read, or now when that is later.
        until: Some(Time(plan.until.unwrap_or_else(|| {
            gathered
                .pods
                .iter()
                .filter_map(|p| p.findings.last_line)
                .fold(now, Timestamp::max)
        }))),
        matches,
        containers_read: input.containers.read.iter().cloned().collect(),
        containers_skipped: input.containers.skipped.iter().cloned().collect(),
        selector: format!("{namespace}: {}", selector.to_query()),
        lines_scanned: lines,
        bytes_scanned: bytes,
        pods: gathered.pods.iter().map(|p| p.to_evidence()).collect(),
        pods_omitted: 0,
        intermittency: verdict.intermittency.clone(),
        related_services: verdict.related_services.clone(),
        notes: gathered.notes.clone(),
    };
    let proposed = match (&verdict.delete_candidate, phase::resolution(obj)) {
        // Nobody is asked to approve a deletion for an alert that already resolved.
        (Some(pod), Some(_)) => Proposed::HeldBack {
            pod: pod.clone(),
            refusal: super::phase::resolved_refusal(obj, now),
        },
        (Some(pod), None) => propose(obj, ctx, &resolved, &gathered, pod, now).await?,
        (None, _) => Proposed::Nothing,
    };
    let mut status = verdict_status(
        &previous,
        &verdict,
        evidence,
        proposed,
        (runbook.id(), source),
        generation,
        now,
    );
    status.spec_digest = Some(digest);
    status.remediation = kept_remediation(&previous);
    if let Some(p) = withdrawn {
        let mut conditions = Conditions::new(&previous.conditions, generation, now);
        for c in &status.conditions {
            conditions.set(&c.type_, c.status == "True", &c.reason, &c.message);
        }
        conditions.set(
            REMEDIATED,
            false,
            "ProposalWithdrawn",
            &format!("proposal {} was withdrawn when the spec changed", p.id),
        );
        status.conditions = conditions.into_vec();
    }
    let action = status
        .recommendation
        .as_ref()
        .map_or(verdict.recommendation.action, |r| r.action);
    let phase = status.phase.unwrap_or(Phase::NoAction);
    ctx.metrics.triaged(
        runbook.id(),
        verdict.classification.category.as_str(),
        action.as_str(),
    );
    ctx.metrics.log_bytes(bytes);
    info!(
        runbook = runbook.id(),
        category = verdict.classification.category.as_str(),
        action = verdict.recommendation.action.as_str(),
        phase = phase::verdict_phase(verdict.recommendation.action).as_str(),
        lines,
        bytes,
        "triaged"
    );
    let note = Note::normal(phase.as_str(), phase_message(obj, &status));
    let status = record.write(status, Some(note)).await?;
    Ok(match &status.proposal {
        // Wake up when the proposal expires so the record says so.
        Some(p) => requeue_until(p.expires_at.0, now),
        None => Action::await_change(),
    })
}

fn verdict_status(
    previous: &AlertTriageStatus,
    verdict: &Verdict,
    evidence: Evidence,
    proposed: Proposed,
    (runbook, source): (&str, &crd::RunbookRef),
    generation: i64,
    now: Timestamp,
) -> AlertTriageStatus {
    let mut status = AlertTriageStatus {
        observed_generation: Some(generation),
        runbook: Some(runbook.to_string()),
        runbook_ref: Some(source.clone()),
        classification: Some(verdict.classification.clone()),
        evidence: Some(evidence),
        recommendation: Some(verdict.recommendation.clone()),
        api_key_rotation: verdict.api_key_rotation.clone(),
        notification: verdict.notification.clone(),
        ..AlertTriageStatus::default()
    };
    let mut conditions = Conditions::new(&previous.conditions, generation, now);
    conditions.set(
        TRIAGED,
        true,
        verdict.classification.category.as_str(),
        &verdict.classification.reason,
    );
    let action = verdict.recommendation.action;
    let (needs_human, reason, message) = match action {
        crd::Action::DeletePod => match proposed {
            Proposed::Proposal(p) => {
                // The approver reads why here, restart notes included.
                let message = format!(
                    "approve proposal {} to delete pod {}: {}",
                    p.id, p.pod, verdict.recommendation.reason
                );
                status.proposal = Some(p);
                (true, "AwaitingApproval", message)
            }
            Proposed::HeldBack { pod, refusal } => {
                let message = format!(
                    "the runbook would delete pod {pod}, but {}; escalate instead",
                    refusal.message()
                );
                if let Some(r) = status.recommendation.as_mut() {
                    r.action = crd::Action::Escalate;
                    r.reason = format!("{} Not proposed: {}.", r.reason, refusal.message());
                }
                (true, refusal.reason(), message)
            }
            Proposed::Nothing => (true, "Escalate", verdict.recommendation.reason.clone()),
        },
        crd::Action::RecordApiKeyRotation => (
            true,
            "ApiKeyRotationRequired",
            verdict.recommendation.reason.clone(),
        ),
        crd::Action::Escalate => (
            true,
            "Escalate",
            format!(
                "page {}: {}",
                verdict
                    .recommendation
                    .team
                    .as_deref()
                    .unwrap_or("the owning team"),
                verdict.recommendation.reason
            ),
        ),
        // No evidence is not "all clear": a person must look, with the runbook's steps.
        crd::Action::None if verdict.classification.category == crd::Category::NO_EVIDENCE => (
            true,
            "NoEvidence",
            format!(
                "{} Look by hand: {}",
                verdict.recommendation.reason,
                verdict.recommendation.next_steps.join(" ")
            ),
        ),
        crd::Action::None => (false, "NoAction", verdict.recommendation.reason.clone()),
    };
    status.phase = Some(phase::after(Outcome::Triaged {
        action,
        proposed: status.proposal.is_some(),
    }));
    conditions.set(ACTION_REQUIRED, needs_human, reason, &message);
    status.conditions = conditions.into_vec();
    status
}

/// The spec cannot be triaged as it is: say why and wait for it to change.
pub(super) async fn stall(
    record: &Record<'_>,
    obj: &AlertTriage,
    unworkable: Unworkable,
    now: Timestamp,
) -> Result<Action, Error> {
    let generation = obj.metadata.generation.unwrap_or_default();
    let previous = obj.status.clone().unwrap_or_default();
    let mut conditions = Conditions::new(&previous.conditions, generation, now);
    conditions.set(TRIAGED, false, unworkable.reason, &unworkable.message);
    let status = AlertTriageStatus {
        phase: Some(phase::after(Outcome::Unworkable)),
        observed_generation: Some(generation),
        spec_digest: Some(phase::spec_digest(&obj.spec)),
        remediation: kept_remediation(&previous),
        runbook: unworkable.runbook,
        runbook_ref: unworkable.runbook_ref.map(|r| *r),
        conditions: conditions.into_vec(),
        ..AlertTriageStatus::default()
    };
    let note = Note::warning(unworkable.reason, unworkable.message);
    record.write(status, Some(note)).await?;
    Ok(Action::await_change())
}

/// A remediation that evicted a pod stays on record whatever is triaged after it.
fn kept_remediation(previous: &AlertTriageStatus) -> Option<crd::Remediation> {
    previous
        .remediation
        .clone()
        .filter(|r| r.evicted_at.is_some())
}

fn phase_message(obj: &AlertTriage, status: &AlertTriageStatus) -> String {
    let mut parts = Vec::new();
    if let Some(c) = &status.classification {
        parts.push(format!("{} ({:?})", c.category.as_str(), c.scope));
        if let Some(code) = c.http_status {
            parts.push(format!("HTTP {code}"));
        }
    }
    if let Some(r) = &status.recommendation {
        parts.push(format!("action {}", r.action.as_str()));
        if let Some(team) = &r.team {
            parts.push(format!("team {team}"));
        }
    }
    if let Some(p) = &status.proposal {
        parts.push(format!(
            "proposal {} deletes pod {}; approve with: kubectl -n {} patch alerttriage {} --type merge -p '{{\"spec\":{{\"approval\":{{\"proposal\":\"{}\",\"approvedBy\":\"<your user name>\"}}}}}}'",
            p.id,
            p.pod,
            obj.namespace().unwrap_or_default(),
            obj.name_any(),
            p.id
        ));
    }
    parts.join("; ")
}

//! The reads besides logs: the facts the guardrails judge (one gatherer, used both when
//! proposing and right before acting) and the environment's info ConfigMap.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::authorization::v1::{
    LocalSubjectAccessReview, ResourceAttributes, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, ResourceExt};

use super::resolve::Resolved;
use super::{Context, Error};
use crate::action::{self, ApprovedPlan, Facts, Intent, Ledger, LedgerStore, PodNow};
use crate::crd::AlertTriage;
use crate::evidence::Gathered;
use crate::runbook::{EnvInfo, EnvInfoSpec};

/// What the guardrails need, read fresh for one pod.
pub struct GuardFacts {
    /// The pod as it is now; None when it is gone.
    pub pod: Option<Pod>,
    pub workload: String,
    pub failing: Vec<String>,
    pub ready_siblings: usize,
    pub ledger: Ledger,
}

impl GuardFacts {
    /// Reads `pod`, its workload and the ledger; `gathered` is the evidence just read.
    pub async fn read(
        ctx: &Context,
        resolved: &Resolved,
        pod: &str,
        gathered: &Gathered,
    ) -> Result<GuardFacts, Error> {
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &resolved.namespace);
        let live = pods.get_opt(pod).await?;
        let workload = match &live {
            Some(p) => workload_of(ctx, &resolved.namespace, p).await?,
            None => String::new(),
        };
        Ok(GuardFacts {
            pod: live,
            workload,
            failing: gathered
                .pods
                .iter()
                .filter(|p| p.findings.failures() > 0)
                .map(|p| p.facts.name.clone())
                .collect(),
            ready_siblings: gathered
                .pods
                .iter()
                .filter(|p| p.facts.name != pod && p.facts.ready && p.findings.failures() == 0)
                .count(),
            ledger: ledger_store(ctx).load().await?,
        })
    }

    /// The facts as the guardrails take them, as of `now`.
    pub fn facts<'a>(&'a self, resolved: &'a Resolved, now: Timestamp) -> Facts<'a> {
        Facts {
            namespace: &resolved.namespace,
            selector: &resolved.selector,
            pod: self.pod.as_ref().map(pod_now),
            workload: self.workload.clone(),
            failing: self.failing.clone(),
            ready_siblings: self.ready_siblings,
            ledger: &self.ledger,
            now,
        }
    }
}

fn pod_now(p: &Pod) -> PodNow {
    PodNow {
        uid: p.uid().unwrap_or_default(),
        labels: p.labels().clone(),
        terminating: p.metadata.deletion_timestamp.is_some(),
        owner: p
            .owner_references()
            .iter()
            .find(|r| r.controller == Some(true))
            .map(|r| (r.kind.clone(), r.name.clone())),
    }
}

/// The workload a pod belongs to, for the cooldown: a ReplicaSet's Deployment when it has one.
async fn workload_of(ctx: &Context, namespace: &str, pod: &Pod) -> Result<String, Error> {
    let Some(owner) = pod
        .owner_references()
        .iter()
        .find(|r| r.controller == Some(true))
    else {
        return Ok(format!("Pod/{}", pod.name_any()));
    };
    if owner.kind == "ReplicaSet" {
        let rs: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), namespace);
        if let Some(rs) = rs.get_opt(&owner.name).await?
            && let Some(parent) = rs
                .owner_references()
                .iter()
                .find(|r| r.controller == Some(true))
        {
            return Ok(format!("{namespace}/{}/{}", parent.kind, parent.name));
        }
    }
    Ok(format!("{namespace}/{}/{}", owner.kind, owner.name))
}

/// Asks the API server (a LocalSubjectAccessReview) whether `approver` may itself remove `pod` the way the operator is
/// about to (`create pods/eviction`, or `delete pods` with plain deletion). `Err` carries why
/// not, in the authorizer's words.
pub async fn approver_may_remove(
    ctx: &Context,
    namespace: &str,
    pod: &str,
    approver: &str,
) -> Result<Result<(), String>, Error> {
    let (verb, subresource) = if ctx.config.allow_pod_delete {
        ("delete", None)
    } else {
        ("create", Some("eviction".to_string()))
    };
    // A namespaced review: the operator may create it wherever it may act, in either mode.
    let review = LocalSubjectAccessReview {
        metadata: ObjectMeta {
            namespace: Some(namespace.to_string()),
            ..ObjectMeta::default()
        },
        spec: SubjectAccessReviewSpec {
            user: Some(approver.to_string()),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(namespace.to_string()),
                verb: Some(verb.to_string()),
                group: Some(String::new()),
                resource: Some("pods".to_string()),
                subresource,
                name: Some(pod.to_string()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        status: None,
    };
    let api: Api<LocalSubjectAccessReview> = Api::namespaced(ctx.client.clone(), namespace);
    let answer = api.create(&PostParams::default(), &review).await?;
    let status = answer.status.unwrap_or_default();
    if status.allowed && status.denied != Some(true) {
        return Ok(Ok(()));
    }
    let why = [status.reason, status.evaluation_error]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    Ok(Err(if why.is_empty() {
        "no RBAC rule allows it".to_string()
    } else {
        why
    }))
}

pub fn ledger_store(ctx: &Context) -> LedgerStore {
    let (namespace, name) = &ctx.config.ledger;
    LedgerStore::new(ctx.client.clone(), namespace, name)
}

/// Reads the environment's info ConfigMap the runbook names (or the one configured on the
/// command line). Its absence is a fact for the record, not an error: the verdict says so.
pub async fn env_info(
    ctx: &Context,
    spec: &EnvInfoSpec,
    target_namespace: &str,
) -> Result<EnvInfo, Error> {
    let configured = ctx.config.info_configmap.as_ref();
    let name = configured.map_or(spec.config_map.as_str(), |c| c.name.as_str());
    let namespace = configured
        .and_then(|c| c.namespace.as_deref())
        .unwrap_or(target_namespace);
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let source = format!("ConfigMap {namespace}/{name}");
    match api.get_opt(name).await {
        Ok(Some(found)) => Ok(spec.read(&found.data.unwrap_or_default(), source)),
        Ok(None) => Ok(EnvInfo::Missing {
            reason: format!("{source} does not exist"),
        }),
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(EnvInfo::Missing {
            reason: format!(
                "{source} cannot be read: the operator is not allowed to ({})",
                s.message
            ),
        }),
        Err(source_err) => Err(Error::InfoConfigMap {
            name: source,
            source: source_err,
        }),
    }
}

/// The ledger's intent for the remediation status names, or why there is none.
pub fn pinned_intent(obj: &AlertTriage, ledger: &Ledger) -> Result<(ApprovedPlan, Intent), String> {
    let remediation = obj
        .status
        .as_ref()
        .and_then(|s| s.remediation.as_ref())
        .ok_or("status names no remediation")?;
    let uid = obj.metadata.uid.as_deref().unwrap_or_default();
    let entry = ledger.intent_for(uid, &remediation.proposal).ok_or_else(|| {
        format!(
            "status says proposal {:?} (pod {}, UID {}) is being carried out, but the operator's ledger holds no such intent for this triage",
            remediation.proposal, remediation.pod, remediation.pod_uid
        )
    })?;
    let (plan, intent) = action::pinned(entry).ok_or("the ledger entry has no intent")?;
    if plan.pod_uid() != remediation.pod_uid || plan.pod() != remediation.pod {
        return Err(format!(
            "status names pod {} (UID {}) but the ledger's intent for proposal {} is pod {} (UID {})",
            remediation.pod,
            remediation.pod_uid,
            plan.proposal(),
            plan.pod(),
            plan.pod_uid()
        ));
    }
    Ok((plan, intent.clone()))
}

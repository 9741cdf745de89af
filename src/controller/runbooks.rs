//! The runbooks a triage may use: `Runbook` objects in its own namespace first, then
//! `ClusterRunbook`s, then the built-in runbooks.
//!
//! Every replica watches both kinds (like the AlertTriage cache, so a follower takes over warm)
//! and checks each generation of each object once; the result is cached by uid and generation,
//! and the compiled runbook by the same version in [`crate::runbook::CompiledCache`], so no
//! triage parses or compiles a runbook again. The check is also written to the object's status
//! (`Ready`, or `Ready=False` reason `Invalid` with the error), only when it differs from what
//! status already says, so replicas agree and do not take turns rewriting it.
//!
//! Lookup, by `spec.runbook` id or else by alert: an id belongs to the first object holding it
//! in the order Runbooks in the triage's namespace, ClusterRunbooks, built-ins; within a kind,
//! objects are taken in lexical order of their names. An invalid object still holds its id, so
//! a triage naming it is Stalled with the error rather than quietly given another runbook. By
//! alert, the first valid runbook in that order whose alert patterns match is chosen; a runbook
//! whose id is held by an object before it (an override) is never chosen.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::MANAGER;
use crate::crd::{Alert, RunbookRef};
use crate::runbook::{Catalog, ClusterRunbook, Runbook, RunbookResource, RunbookStatus};

pub const BUILT_IN: &str = "BuiltIn";

/// A runbook object checked: the runbook, or the error that keeps it from being used.
type Checked = Result<Arc<Runbook>, String>;

/// One runbook a triage could use, in lookup order.
pub struct Candidate {
    pub source: RunbookRef,
    /// Tells generations apart in the compiled cache.
    pub version: String,
    pub id: String,
    pub checked: Checked,
}

/// The runbook a triage uses.
pub struct Chosen {
    pub runbook: Arc<Runbook>,
    pub source: RunbookRef,
    pub version: String,
}

/// Why a triage cannot have a runbook.
#[derive(Debug)]
pub struct Refused {
    pub reason: &'static str,
    pub message: String,
    pub source: Option<Box<RunbookRef>>,
}

/// Picks the runbook for a triage from candidates in lookup order (see the module docs).
pub fn choose(
    candidates: Vec<Candidate>,
    requested: Option<&str>,
    alert: &Alert,
) -> Result<Chosen, Refused> {
    let mut holders: Vec<Candidate> = Vec::new();
    for c in candidates {
        if !holders.iter().any(|h| h.id == c.id) {
            holders.push(c);
        }
    }
    let known = || {
        holders
            .iter()
            .map(|h| match &h.checked {
                Ok(_) => h.id.clone(),
                Err(_) => format!("{} (invalid)", h.id),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let position = match requested {
        Some(id) => holders
            .iter()
            .position(|c| c.id == id)
            .ok_or_else(|| format!("unknown runbook {id:?}; known runbooks: {}", known())),
        None => holders
            .iter()
            .position(|c| {
                c.checked
                    .as_ref()
                    .is_ok_and(|runbook| runbook.matches_alert(alert))
            })
            .ok_or_else(|| {
                format!(
                    "no runbook matches alert {:?}; set spec.runbook to one of: {}",
                    alert.name,
                    known()
                )
            }),
    }
    .map_err(|message| Refused {
        reason: "UnknownRunbook",
        message,
        source: None,
    })?;
    let c = holders.swap_remove(position);
    match c.checked {
        Ok(runbook) => Ok(Chosen {
            runbook,
            source: c.source,
            version: c.version,
        }),
        Err(message) => Err(Refused {
            reason: "InvalidRunbook",
            message: format!("{} is invalid and not used: {message}", describe(&c.source)),
            source: Some(Box::new(c.source)),
        }),
    }
}

/// `Runbook team-a/crash-loop`, `ClusterRunbook crash-loop`, `built-in runbook x`.
pub fn describe(source: &RunbookRef) -> String {
    match &source.namespace {
        _ if source.kind == BUILT_IN => format!("built-in runbook {}", source.name),
        Some(ns) => format!("{} {ns}/{}", source.kind, source.name),
        None => format!("{} {}", source.kind, source.name),
    }
}

/// Objects with more checked generations than this start the cache again, costing only time.
const MAX_CHECKED: usize = 4096;

/// Each object's latest checked generation, by uid.
#[derive(Default)]
struct Checker {
    entries: Mutex<HashMap<String, (i64, Checked)>>,
}

impl Checker {
    fn check(&self, obj: &DynamicObject) -> Checked {
        let uid = obj.metadata.uid.clone().unwrap_or_default();
        let generation = obj.metadata.generation.unwrap_or_default();
        let entries = || self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((g, checked)) = entries().get(&uid)
            && *g == generation
        {
            return checked.clone();
        }
        let checked = load(obj);
        let mut entries = entries();
        if entries.len() >= MAX_CHECKED {
            entries.clear();
        }
        entries.insert(uid, (generation, checked.clone()));
        checked
    }
}

/// A runbook object's spec through the same loader as the built-in files: the API server has
/// checked the schema, this checks the rest (regexes, templates, category rules).
fn load(obj: &DynamicObject) -> Checked {
    let spec = obj
        .data
        .get("spec")
        .ok_or_else(|| "spec: required".to_string())?;
    // JSON is YAML, and the YAML loader names the field that is wrong.
    Runbook::load(&spec.to_string())
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

/// The Runbooks and ClusterRunbooks the operator sees, and the built-in runbooks.
pub struct Runbooks {
    builtin: &'static Catalog,
    namespaced: Vec<Store<DynamicObject>>,
    /// None when ClusterRunbooks are not used (`--cluster-runbooks=false`).
    cluster: Option<Store<DynamicObject>>,
    checker: Arc<Checker>,
    tasks: Vec<JoinHandle<()>>,
}

impl Runbooks {
    /// Watches Runbooks in `namespaces` (all namespaces when empty) and, with `cluster`, every
    /// ClusterRunbook; checks each generation and reports it in the object's status.
    pub fn start(client: &Client, namespaces: &[String], cluster: bool) -> Runbooks {
        let checker = Arc::new(Checker::default());
        let mut tasks = Vec::new();
        let namespaced_type = ApiResource::erase::<RunbookResource>(&());
        let namespaced_apis = if namespaces.is_empty() {
            vec![Api::all_with(client.clone(), &namespaced_type)]
        } else {
            namespaces
                .iter()
                .map(|ns| Api::namespaced_with(client.clone(), ns, &namespaced_type))
                .collect()
        };
        let mut namespaced = Vec::new();
        for api in namespaced_apis {
            let (store, task) = watch(client, api, &namespaced_type, &checker);
            namespaced.push(store);
            tasks.push(task);
        }
        let cluster_type = ApiResource::erase::<ClusterRunbook>(&());
        let cluster = cluster.then(|| {
            let (store, task) = watch(
                client,
                Api::all_with(client.clone(), &cluster_type),
                &cluster_type,
                &checker,
            );
            tasks.push(task);
            store
        });
        Runbooks {
            builtin: Catalog::builtin(),
            namespaced,
            cluster,
            checker,
            tasks,
        }
    }

    /// Only the built-in runbooks, watching nothing (offline use and unit tests).
    pub fn builtin_only() -> Runbooks {
        Runbooks {
            builtin: Catalog::builtin(),
            namespaced: Vec::new(),
            cluster: None,
            checker: Arc::default(),
            tasks: Vec::new(),
        }
    }

    /// Whether both kinds have been listed, waiting up to `wait`: until then a triage could be
    /// given a runbook that an object not yet seen overrides.
    pub async fn synced(&self, wait: std::time::Duration) -> bool {
        let stores = self.namespaced.iter().chain(&self.cluster);
        let all = futures::future::join_all(stores.map(Store::wait_until_ready));
        matches!(tokio::time::timeout(wait, all).await, Ok(r) if r.iter().all(Result::is_ok))
    }

    /// The runbook for a triage in `namespace` (see the module docs for the order).
    pub fn select(
        &self,
        namespace: &str,
        requested: Option<&str>,
        alert: &Alert,
    ) -> Result<Chosen, Refused> {
        choose(self.candidates(namespace), requested, alert)
    }

    fn candidates(&self, namespace: &str) -> Vec<Candidate> {
        let by_name = |mut objects: Vec<Arc<DynamicObject>>| {
            objects.sort_by_key(|o| o.name_any());
            objects
        };
        let namespaced = by_name(
            self.namespaced
                .iter()
                .flat_map(Store::state)
                .filter(|o| o.metadata.namespace.as_deref() == Some(namespace))
                .collect(),
        );
        let cluster = by_name(self.cluster.iter().flat_map(Store::state).collect());
        let objects = namespaced
            .iter()
            .map(|o| (RunbookResource::kind(&()), o))
            .chain(cluster.iter().map(|o| (ClusterRunbook::kind(&()), o)));
        let mut out: Vec<Candidate> = objects
            .map(|(kind, o)| Candidate {
                source: RunbookRef {
                    kind: kind.to_string(),
                    namespace: o.metadata.namespace.clone(),
                    name: o.name_any(),
                    generation: o.metadata.generation,
                },
                version: format!(
                    "{}:{}",
                    o.metadata.uid.as_deref().unwrap_or_default(),
                    o.metadata.generation.unwrap_or_default()
                ),
                id: o.data["spec"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                checked: self.checker.check(o),
            })
            .collect();
        out.extend(self.builtin.runbooks().iter().map(|r| Candidate {
            source: RunbookRef {
                kind: BUILT_IN.to_string(),
                namespace: None,
                name: r.id().to_string(),
                generation: None,
            },
            version: BUILT_IN.to_string(),
            id: r.id().to_string(),
            checked: Ok(r.clone()),
        }));
        out
    }
}

impl Drop for Runbooks {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn watch(
    client: &Client,
    api: Api<DynamicObject>,
    resource: &ApiResource,
    checker: &Arc<Checker>,
) -> (Store<DynamicObject>, JoinHandle<()>) {
    let writer = reflector::store::Writer::new(resource.clone());
    let store = writer.as_reader();
    let (client, resource, checker) = (client.clone(), resource.clone(), checker.clone());
    let task = tokio::spawn(async move {
        watcher(api, watcher::Config::default().any_semantic())
            .default_backoff()
            .modify(|o| o.metadata.managed_fields = None)
            .reflect(writer)
            .applied_objects()
            .for_each(|event| {
                let (client, resource, checker) = (&client, &resource, &checker);
                async move {
                    match event {
                        Ok(obj) => report(client, resource, &checker.check(&obj), &obj).await,
                        Err(e) => {
                            warn!(kind = resource.kind, error = %e, "watching runbooks failed; retrying");
                        }
                    }
                }
            })
            .await;
    });
    (store, task)
}

const READY: &str = "Ready";

/// Writes the check of `obj`'s generation to its status, unless status already says it.
async fn report(client: &Client, resource: &ApiResource, checked: &Checked, obj: &DynamicObject) {
    let generation = obj.metadata.generation.unwrap_or_default();
    let (status, reason, message) = match checked {
        Ok(runbook) => (
            "True",
            "Valid",
            format!("runbook {} is valid and used by new triages", runbook.id()),
        ),
        Err(e) => ("False", "Invalid", e.clone()),
    };
    let current: RunbookStatus = obj
        .data
        .get("status")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .unwrap_or_default();
    let ready = current.conditions.iter().find(|c| c.type_ == READY);
    let same = |c: &&Condition| c.status == status && c.reason == reason && c.message == message;
    let categories: Vec<String> = checked
        .as_ref()
        .map(|r| r.categories().map(|c| c.as_str().to_string()).collect())
        .unwrap_or_default();
    if current.observed_generation == Some(generation)
        && current.categories == categories
        && ready.filter(same).is_some()
    {
        return;
    }
    let since = ready.filter(|c| c.status == status).map_or_else(
        || Time(Timestamp::now()),
        |c| c.last_transition_time.clone(),
    );
    let new = RunbookStatus {
        observed_generation: Some(generation),
        categories,
        conditions: vec![Condition {
            type_: READY.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message,
            observed_generation: Some(generation),
            last_transition_time: since,
        }],
    };
    let api: Api<DynamicObject> = match &obj.metadata.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    };
    let patch = serde_json::json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "status": new,
    });
    let name = obj.name_any();
    // The watch delivers a generation once, so a failed write is tried again here (briefly:
    // the watch waits meanwhile), or the status would stay stale until the object changes.
    for wait in STATUS_RETRIES {
        let written = api
            .patch_status(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await;
        match written {
            Ok(_) => {
                info!(kind = resource.kind, name, reason, "runbook checked");
                return;
            }
            Err(e) => {
                warn!(kind = resource.kind, name, error = %e, "writing runbook status failed");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

const STATUS_RETRIES: [std::time::Duration; 3] = [
    std::time::Duration::from_secs(1),
    std::time::Duration::from_secs(2),
    std::time::Duration::from_secs(4),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn runbook(id: &str, alerts: &str) -> Arc<Runbook> {
        let doc = format!(
            r#"
id: {id}
title: T
window: 30m
alerts: {{names: ["{alerts}"]}}
team: t
json: {{timeFields: [ts], detailFields: [msg]}}
signature: {{contains: [BOOM]}}
categories:
  - category: Mine
    recommend: {{action: Escalate, reason: r}}
"#
        );
        Arc::new(Runbook::load(&doc).unwrap())
    }

    fn candidate(kind: &str, name: &str, checked: Checked) -> Candidate {
        let id = checked
            .as_ref()
            .map_or(name.to_string(), |r| r.id().to_string());
        Candidate {
            source: RunbookRef {
                kind: kind.to_string(),
                namespace: (kind == "Runbook").then(|| "team".to_string()),
                name: name.to_string(),
                generation: Some(1),
            },
            version: format!("{kind}/{name}"),
            id,
            checked,
        }
    }

    fn alert(name: &str) -> Alert {
        Alert {
            name: name.to_string(),
            ..Alert::default()
        }
    }

    /// In lookup order: a Runbook, two ClusterRunbooks (one overriding a built-in, one
    /// invalid), the built-ins.
    fn candidates() -> Vec<Candidate> {
        let mut out = vec![
            candidate("Runbook", "crash", Ok(runbook("crash", "Crash*"))),
            candidate("ClusterRunbook", "crash", Ok(runbook("crash", "*"))),
            candidate("ClusterRunbook", "broken", Err("categories[0]: bad".into())),
            candidate(
                "ClusterRunbook",
                "metering",
                Ok(runbook("metering-token-exchange", "NeverFires")),
            ),
        ];
        out.extend(Catalog::builtin().runbooks().iter().map(|r| {
            let mut c = candidate(BUILT_IN, r.id(), Ok(r.clone()));
            c.version = BUILT_IN.into();
            c
        }));
        out
    }

    #[test]
    fn lookup_follows_namespace_then_cluster_then_built_in() {
        let chosen = |requested: Option<&str>, name: &str| {
            choose(candidates(), requested, &alert(name)).map(|c| describe(&c.source))
        };
        assert_eq!(
            chosen(Some("crash"), "x").unwrap(),
            "Runbook team/crash",
            "a Runbook overrides a ClusterRunbook of its id"
        );
        assert_eq!(chosen(None, "CrashLooping").unwrap(), "Runbook team/crash");
        // The Runbook holds the id, so the ClusterRunbook matching everything is never chosen.
        assert!(chosen(None, "Other").is_err());
        assert_eq!(
            chosen(Some("metering-token-exchange"), "x").unwrap(),
            "ClusterRunbook metering",
            "a ClusterRunbook overrides a built-in of its id"
        );
        // ... for lookups by alert too: the built-in is not used behind its override's back.
        let overridden = chosen(None, "armada-cluster_error_metering_token_exchange");
        assert!(overridden.is_err(), "{overridden:?}");
        assert_eq!(
            chosen(None, "ClusterSquadOrchestratorCallbackActionTimeErrors").unwrap(),
            "built-in runbook orchestrator-callback-errors"
        );
    }

    #[test]
    fn an_invalid_runbook_is_never_used_and_says_why() {
        let refused = choose(candidates(), Some("broken"), &alert("x"))
            .err()
            .unwrap();
        assert_eq!(refused.reason, "InvalidRunbook");
        assert!(
            refused.message.contains("ClusterRunbook broken")
                && refused.message.contains("categories[0]: bad"),
            "{}",
            refused.message
        );
        assert_eq!(refused.source.unwrap().name, "broken");
        let unknown = choose(candidates(), Some("nope"), &alert("x"))
            .err()
            .unwrap();
        assert_eq!(unknown.reason, "UnknownRunbook");
        assert!(
            unknown.message.contains("broken (invalid)") && unknown.message.contains("crash"),
            "{}",
            unknown.message
        );
    }
}

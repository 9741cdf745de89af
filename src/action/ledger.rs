//! The durable record of deletions behind the hourly budget and the per-workload cooldown. It
//! lives in a ConfigMap so it survives restarts and is shared by every replica; writes use the
//! ConfigMap's resourceVersion, so two writers cannot both spend the last unit of budget.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};

use crate::crd::TargetSelector;

const KEY: &str = "deletions.json";
/// Entries older than this are dropped: they count for neither budget nor cooldown.
const KEEP: SignedDuration = SignedDuration::from_hours(24);

/// One deletion the operator committed to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub at: Timestamp,
    pub workload: String,
    pub proposal: String,
    #[serde(rename = "podUID")]
    pub pod_uid: String,
    /// `namespace/name` of the AlertTriage.
    pub triage: String,
    /// What the deletion is pinned to, written before acting; absent in entries written before
    /// intents were kept here (they still count for budgets and cooldowns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<Intent>,
}

/// The record of an approved deletion the operator committed to, in its own words: a
/// remediation is carried out (or resumed after a restart) only from this, never from what an
/// AlertTriage's status claims.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Intent {
    #[serde(rename = "triageUID")]
    pub triage_uid: String,
    pub generation: i64,
    pub namespace: String,
    pub pod: String,
    pub approved_by: String,
    /// The runbook whose signature the replacement is checked for.
    pub runbook: String,
    /// The pods a replacement is looked for among.
    pub selector: TargetSelector,
    /// The evicted pod's controller, `Kind/name`; a replacement has the same one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// UIDs of that controller's other pods before the eviction: none of them is a replacement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods_before: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ledger {
    entries: Vec<Entry>,
    /// The ConfigMap's resourceVersion this was read at; None when it does not exist yet.
    version: Option<String>,
}

impl Ledger {
    pub fn from_entries(entries: Vec<Entry>) -> Self {
        Ledger {
            entries,
            version: None,
        }
    }

    pub fn since(&self, t: Timestamp) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(move |e| e.at > t)
    }

    pub fn last_for(&self, workload: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .filter(|e| e.workload == workload)
            .max_by_key(|e| e.at)
    }

    /// The entry the operator wrote for `proposal` of the triage with `triage_uid`.
    pub fn intent_for(&self, triage_uid: &str, proposal: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| {
            e.proposal == proposal
                && e.intent
                    .as_ref()
                    .is_some_and(|i| i.triage_uid == triage_uid)
        })
    }

    /// Adds an entry and forgets the ones too old to matter.
    pub fn record(&mut self, entry: Entry) {
        let horizon = entry.at - KEEP;
        self.entries.retain(|e| e.at > horizon);
        self.entries.push(entry);
    }

    fn parse(cm: &ConfigMap) -> Result<Self, serde_json::Error> {
        let entries = match cm.data.as_ref().and_then(|d| d.get(KEY)) {
            Some(json) => serde_json::from_str(json)?,
            None => Vec::new(),
        };
        Ok(Ledger {
            entries,
            version: cm.metadata.resource_version.clone(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("reading ledger ConfigMap {0}: {1}")]
    Read(String, #[source] kube::Error),
    #[error("ledger ConfigMap {0} is not valid: {1}")]
    Corrupt(String, #[source] serde_json::Error),
    #[error("writing ledger ConfigMap {0}: {1}")]
    Write(String, #[source] kube::Error),
    #[error("ledger ConfigMap {0} changed while it was being written; retrying")]
    Conflict(String),
}

/// Where the ledger is kept.
#[derive(Clone)]
pub struct LedgerStore {
    api: Api<ConfigMap>,
    namespace: String,
    name: String,
}

impl LedgerStore {
    pub fn new(client: Client, namespace: &str, name: &str) -> Self {
        LedgerStore {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub async fn load(&self) -> Result<Ledger, LedgerError> {
        match self.api.get_opt(&self.name).await {
            Ok(Some(cm)) => Ledger::parse(&cm).map_err(|e| LedgerError::Corrupt(self.id(), e)),
            Ok(None) => Ok(Ledger::default()),
            Err(e) => Err(LedgerError::Read(self.id(), e)),
        }
    }

    /// Writes the ledger back, failing with `Conflict` if someone else wrote it since `load`.
    pub async fn save(&self, ledger: &Ledger) -> Result<(), LedgerError> {
        let json = serde_json::to_string(&ledger.entries).expect("ledger entries serialise");
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                resource_version: ledger.version.clone(),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_string(),
                    "alert-triage-operator".to_string(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(KEY.to_string(), json)])),
            ..ConfigMap::default()
        };
        let result = match &ledger.version {
            Some(_) => {
                self.api
                    .replace(&self.name, &PostParams::default(), &cm)
                    .await
            }
            None => self.api.create(&PostParams::default(), &cm).await,
        };
        match result {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Err(LedgerError::Conflict(self.id())),
            Err(e) => Err(LedgerError::Write(self.id(), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at: &str, workload: &str) -> Entry {
        Entry {
            at: at.parse().unwrap(),
            workload: workload.into(),
            proposal: format!("p-{at}"),
            pod_uid: "u".into(),
            triage: "ns/t".into(),
            intent: None,
        }
    }

    #[test]
    fn old_entries_are_forgotten_when_recording() {
        let mut ledger = Ledger::from_entries(vec![
            entry("2026-01-01T00:00:00Z", "a"),
            entry("2026-01-02T11:00:00Z", "b"),
        ]);
        ledger.record(entry("2026-01-02T12:00:00Z", "a"));
        assert_eq!(ledger.entries.len(), 2);
        assert_eq!(
            ledger.last_for("a").unwrap().at,
            "2026-01-02T12:00:00Z".parse::<Timestamp>().unwrap()
        );
        assert!(
            ledger
                .entries
                .iter()
                .any(|e| e.proposal == "p-2026-01-02T11:00:00Z")
        );
        assert_eq!(
            ledger
                .since("2026-01-02T11:30:00Z".parse().unwrap())
                .count(),
            1
        );
    }

    #[test]
    fn a_configmap_round_trips() {
        let ledger = Ledger::from_entries(vec![entry("2026-01-01T00:00:00Z", "Deployment/a")]);
        let cm = ConfigMap {
            metadata: ObjectMeta {
                resource_version: Some("7".into()),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                KEY.to_string(),
                serde_json::to_string(&ledger.entries).unwrap(),
            )])),
            ..ConfigMap::default()
        };
        let back = Ledger::parse(&cm).unwrap();
        assert_eq!(back.entries, ledger.entries);
        assert_eq!(back.version.as_deref(), Some("7"));
        let corrupt = ConfigMap {
            data: Some(BTreeMap::from([(KEY.to_string(), "not json".to_string())])),
            ..ConfigMap::default()
        };
        assert!(Ledger::parse(&corrupt).is_err());
    }
}

//! The Warning Events of pods in a namespace, listed once for all the triages that wait on them.
//!
//! The API server keeps no watch cache for Events and cannot index them by type or involved
//! object, so every list reads all of the namespace's Events from etcd and filters them there:
//! with 5,000 pods (about 10,000 Events) one list costs the API server the better part of a
//! second. A backlog of triages in one namespace would ask for the same list a thousand times.
//! Instead the triages of a namespace take turns: a triage reuses a list that started after it
//! asked (so what it sees is never older than its own request), and otherwise lists itself while
//! the others wait. However many triages ask at once, a namespace has one list running.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Event as CoreEvent;
use kube::Client;
use kube::api::{Api, ListParams};

use super::Error;

/// The most of an Event's message a triage keeps.
const MESSAGE_CHARS: usize = 200;

/// One Warning Event of a pod, as much of it as a triage uses.
#[derive(Debug, Clone, PartialEq)]
pub struct WarningEvent {
    pub pod_uid: String,
    pub time: Option<Timestamp>,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub count: i32,
}

/// Shared by every triage (clones share the lists).
#[derive(Clone, Debug, Default)]
pub struct WarningEvents {
    namespaces: Arc<Mutex<HashMap<String, Arc<Turns>>>>,
}

/// One namespace's list, and the order in which its triages asked.
#[derive(Debug, Default)]
struct Turns {
    /// Numbers the requests; a list started when this read `n` serves requests below `n`.
    asked: AtomicU64,
    /// The newest list and the request number it serves up to. Held while listing, so the
    /// others wait for it instead of listing too.
    latest: tokio::sync::Mutex<Option<(u64, Arc<Vec<WarningEvent>>)>>,
}

impl WarningEvents {
    /// The pod Warning Events of `namespace`, from a list that started after this call.
    pub async fn list(
        &self,
        client: &Client,
        namespace: &str,
    ) -> Result<Arc<Vec<WarningEvent>>, Error> {
        let waiting = Waiting::new(self, namespace);
        take_turn(&waiting.turns, || list_now(client, namespace)).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Turns>>> {
        // A panic while holding this lock leaves the map whole; keep using it.
        self.namespaces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[cfg(test)]
    fn namespaces_held(&self) -> usize {
        self.lock().len()
    }
}

/// A triage's interest in a namespace's list. Dropped when the triage has its list, or when
/// its reconcile is cancelled mid-wait; the last one out drops the namespace's list, so memory
/// holds only lists in use.
struct Waiting<'a> {
    events: &'a WarningEvents,
    namespace: &'a str,
    turns: Arc<Turns>,
}

impl<'a> Waiting<'a> {
    fn new(events: &'a WarningEvents, namespace: &'a str) -> Self {
        let turns = events
            .lock()
            .entry(namespace.to_string())
            .or_default()
            .clone();
        Waiting {
            events,
            namespace,
            turns,
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut namespaces = self.events.lock();
        // One reference is the map's, one is ours; others are taken only under this lock.
        if Arc::strong_count(&self.turns) == 2 {
            namespaces.remove(self.namespace);
        }
    }
}

/// Waits for the namespace's turn: reuses a list that started after the call, or lists.
async fn take_turn<F, Fut>(turns: &Turns, list: F) -> Result<Arc<Vec<WarningEvent>>, Error>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Vec<WarningEvent>, Error>>,
{
    let ticket = turns.asked.fetch_add(1, Ordering::SeqCst);
    let mut latest = turns.latest.lock().await;
    if let Some((serves, events)) = latest.as_ref()
        && ticket < *serves
    {
        return Ok(events.clone());
    }
    // Every request numbered below this was made before the list below starts.
    let serves = turns.asked.load(Ordering::SeqCst);
    let events = Arc::new(list().await?);
    *latest = Some((serves, events.clone()));
    Ok(events)
}

async fn list_now(client: &Client, namespace: &str) -> Result<Vec<WarningEvent>, Error> {
    let api: Api<CoreEvent> = Api::namespaced(client.clone(), namespace);
    let list = api
        .list(&ListParams::default().fields("involvedObject.kind=Pod,type=Warning"))
        .await
        .map_err(|source| Error::ListEvents {
            namespace: namespace.to_string(),
            source,
        })?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|e| {
            Some(WarningEvent {
                time: event_time(&e),
                pod_uid: e.involved_object.uid?,
                reason: e.reason,
                // A triage keeps no more of a message than this.
                message: e.message.map(|m| m.chars().take(MESSAGE_CHARS).collect()),
                count: e.count.unwrap_or(1),
            })
        })
        .collect())
}

fn event_time(e: &CoreEvent) -> Option<Timestamp> {
    e.last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    fn event(n: usize) -> WarningEvent {
        WarningEvent {
            pod_uid: format!("uid-{n}"),
            time: None,
            reason: Some("BackOff".into()),
            message: None,
            count: 1,
        }
    }

    /// A list that takes a while and says which call it was.
    async fn slow_list(calls: &AtomicUsize) -> Result<Vec<WarningEvent>, Error> {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(30)).await;
        Ok(vec![event(n)])
    }

    #[tokio::test]
    async fn triages_that_ask_during_a_list_share_the_next_one() {
        let turns = Turns::default();
        let calls = AtomicUsize::new(0);
        let first = take_turn(&turns, || slow_list(&calls));
        // These ask while the first list runs: it may have missed what made them ask, so they
        // wait for one that starts after them, and share it.
        let later = async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            futures::future::join_all((0..10).map(|_| take_turn(&turns, || slow_list(&calls))))
                .await
        };
        let (first, later) = tokio::join!(first, later);
        assert_eq!(first.unwrap()[0], event(0));
        for got in later {
            assert_eq!(got.unwrap()[0], event(1), "one list serves all who waited");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        // Asked after every list ended: a list of its own, never an old one.
        let fresh = take_turn(&turns, || slow_list(&calls)).await.unwrap();
        assert_eq!(fresh[0], event(2));
    }

    #[tokio::test]
    async fn a_failed_list_is_not_shared_and_the_next_triage_lists_again() {
        let turns = Turns::default();
        let calls = AtomicUsize::new(0);
        let failing = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Error::ListEvents {
                namespace: "n".into(),
                source: kube::Error::LinesCodecMaxLineLengthExceeded,
            })
        };
        assert!(take_turn(&turns, failing).await.is_err());
        let got = take_turn(&turns, || slow_list(&calls)).await.unwrap();
        assert_eq!(got[0], event(1));
    }

    #[tokio::test]
    async fn a_namespace_is_forgotten_once_nobody_waits_even_if_a_wait_is_cancelled() {
        let events = WarningEvents::default();
        let first = Waiting::new(&events, "n");
        let second = Waiting::new(&events, "n");
        drop(first);
        assert_eq!(events.namespaces_held(), 1, "still waited on");
        drop(second);
        assert_eq!(events.namespaces_held(), 0);

        // A reconcile cancelled while it waits for its turn (shutdown, lost leadership).
        let calls = AtomicUsize::new(0);
        let waiting = Waiting::new(&events, "n");
        let held = waiting.turns.latest.lock().await;
        let cancelled = async {
            let waiting = Waiting::new(&events, "n");
            take_turn(&waiting.turns, || slow_list(&calls)).await
        };
        let timed_out = tokio::time::timeout(Duration::from_millis(20), cancelled).await;
        assert!(timed_out.is_err(), "it waited for the list being made");
        drop(held);
        drop(waiting);
        assert_eq!(events.namespaces_held(), 0);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
}

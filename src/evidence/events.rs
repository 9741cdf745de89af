//! The Warning Events of pods in a namespace, listed once for all the triages that wait on them.
//!
//! The API server keeps no watch cache for Events and cannot index them by type or involved
//! object, so every list reads all of the namespace's Events from etcd and filters them there:
//! with 5,000 pods (about 10,000 Events) one list costs the API server the better part of a
//! second. A backlog of triages in one namespace would ask for the same list a thousand times.
//! Instead the triages of a namespace take turns: a request reuses the newest list if it is
//! fresh enough ([`Freshness`]), and otherwise lists itself while the others wait. However many
//! triages ask at once, a namespace has one list running.
//!
//! Taking only lists that started after the request still made a list per handful of triages
//! (201 for a backlog of 1,000 beside 5,000 pods, most of its 74 s). A triage also takes a list
//! from the last few seconds that started after it was created, which made 11.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Event as CoreEvent;
use kube::Client;
use kube::api::{Api, ListParams};
use tokio::time::Instant;

use super::Error;

/// The most of an Event's message a triage keeps.
const MESSAGE_CHARS: usize = 200;

/// How long before its request a list may have started and still serve a triage's evidence
/// ([`Freshness::Shared`]). It is also how long a namespace's list is kept after its last use.
pub const SHARED_AGE: Duration = Duration::from_secs(5);

/// A `creationTimestamp` is cut to the second and the API server's time is known to about a
/// second, so a list counts as started after a triage's creation only this much later.
const CREATED_MARGIN: SignedDuration = SignedDuration::from_secs(2);

/// How recent a list of a namespace's Events must be to serve a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Only a list that starts after the request: what a remediation looks at before it acts.
    AfterRequest,
    /// Also a list that started at most [`SHARED_AGE`] before the request and after the triage
    /// was created (`created`, its `creationTimestamp`; `now`, the API server's time when the
    /// triage began, at or before the request). Whatever made the alert fire happened before
    /// the triage was created, so such a list holds it; a backlog or an alert storm in one
    /// namespace then makes one list every few seconds, not one per handful of triages.
    Shared { created: Timestamp, now: Timestamp },
}

impl Freshness {
    /// Whether a list that started `age` before the request serves it.
    fn accepts(self, age: Duration) -> bool {
        let Freshness::Shared { created, now } = self else {
            return false;
        };
        let started = SignedDuration::try_from(age)
            .ok()
            .and_then(|age| now.checked_sub(age).ok());
        let after_creation = created.checked_add(CREATED_MARGIN).ok();
        age <= SHARED_AGE && matches!((started, after_creation), (Some(s), Some(c)) if s >= c)
    }
}

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
    /// The newest list. Held while listing, so the others wait for it instead of listing too.
    latest: tokio::sync::Mutex<Option<Listed>>,
}

#[derive(Debug)]
struct Listed {
    /// The requests numbered below this were made before the list started.
    serves: u64,
    started: Instant,
    events: Arc<Vec<WarningEvent>>,
}

impl Turns {
    /// Nothing listed, or a list too old to serve anyone. `None` while a list is being made.
    fn stale(&self) -> Option<bool> {
        let latest = self.latest.try_lock().ok()?;
        Some(
            latest
                .as_ref()
                .is_none_or(|l| l.started.elapsed() > SHARED_AGE),
        )
    }
}

impl WarningEvents {
    /// The pod Warning Events of `namespace`, from a list as fresh as `fresh` asks.
    pub async fn list(
        &self,
        client: &Client,
        namespace: &str,
        fresh: Freshness,
    ) -> Result<Arc<Vec<WarningEvent>>, Error> {
        let waiting = Waiting::new(self, namespace);
        take_turn(&waiting.turns, fresh, || list_now(client, namespace)).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Turns>>> {
        // A panic while holding this lock leaves the map whole; keep using it.
        self.namespaces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Drops `namespace`'s list if nobody waits on it and it can serve nobody any more.
    fn forget_if_unused(&self, namespace: &str) {
        let mut namespaces = self.lock();
        // The map's reference is the only one; others are taken only under this lock.
        if let Some(turns) = namespaces.get(namespace)
            && Arc::strong_count(turns) == 1
            && turns.stale() == Some(true)
        {
            namespaces.remove(namespace);
        }
    }

    #[cfg(test)]
    fn namespaces_held(&self) -> usize {
        self.lock().len()
    }
}

/// A triage's interest in a namespace's list. Dropped when the triage has its list, or when
/// its reconcile is cancelled mid-wait. When the last one is dropped the namespace's list is
/// kept for as long as it can serve a triage ([`SHARED_AGE`]), then dropped, so memory holds
/// only lists in use or about to be.
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
        if Arc::strong_count(&self.turns) != 2 {
            return;
        }
        let runtime = tokio::runtime::Handle::try_current();
        match (self.turns.stale(), runtime) {
            (Some(false) | None, Ok(runtime)) => {
                // Look again once the list is too old to serve anyone.
                let events = self.events.clone();
                let namespace = self.namespace.to_string();
                runtime.spawn(async move {
                    tokio::time::sleep(SHARED_AGE + Duration::from_millis(1)).await;
                    events.forget_if_unused(&namespace);
                });
            }
            _ => {
                namespaces.remove(self.namespace);
            }
        }
    }
}

/// Waits for the namespace's turn: reuses a list that serves the request, or lists.
async fn take_turn<F, Fut>(
    turns: &Turns,
    fresh: Freshness,
    list: F,
) -> Result<Arc<Vec<WarningEvent>>, Error>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Vec<WarningEvent>, Error>>,
{
    let asked = Instant::now();
    let ticket = turns.asked.fetch_add(1, Ordering::SeqCst);
    let mut latest = turns.latest.lock().await;
    if let Some(l) = latest.as_ref()
        && (ticket < l.serves || fresh.accepts(asked.saturating_duration_since(l.started)))
    {
        return Ok(l.events.clone());
    }
    // Every request numbered below this was made before the list below starts.
    let serves = turns.asked.load(Ordering::SeqCst);
    let started = Instant::now();
    let events = Arc::new(list().await?);
    *latest = Some(Listed {
        serves,
        started,
        events: events.clone(),
    });
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
        let first = take_turn(&turns, Freshness::AfterRequest, || slow_list(&calls));
        // These ask while the first list runs: it may have missed what made them ask, so they
        // wait for one that starts after them, and share it.
        let later = async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            futures::future::join_all(
                (0..10).map(|_| take_turn(&turns, Freshness::AfterRequest, || slow_list(&calls))),
            )
            .await
        };
        let (first, later) = tokio::join!(first, later);
        assert_eq!(first.unwrap()[0], event(0));
        for got in later {
            assert_eq!(got.unwrap()[0], event(1), "one list serves all who waited");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        // Asked after every list ended: a list of its own, never an old one.
        let fresh = take_turn(&turns, Freshness::AfterRequest, || slow_list(&calls))
            .await
            .unwrap();
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
        assert!(
            take_turn(&turns, Freshness::AfterRequest, failing)
                .await
                .is_err()
        );
        let got = take_turn(&turns, Freshness::AfterRequest, || slow_list(&calls))
            .await
            .unwrap();
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
            take_turn(&waiting.turns, Freshness::AfterRequest, || {
                slow_list(&calls)
            })
            .await
        };
        let timed_out = tokio::time::timeout(Duration::from_millis(20), cancelled).await;
        assert!(timed_out.is_err(), "it waited for the list being made");
        drop(held);
        drop(waiting);
        assert_eq!(events.namespaces_held(), 0);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn a_shared_list_is_one_made_after_the_triage_was_created_and_just_before_it_asked() {
        let ms = Duration::from_millis;
        assert!(!Freshness::AfterRequest.accepts(Duration::ZERO));

        // Created at 0, began at 10: a list from 5 s before the request at most.
        let late = Freshness::Shared {
            created: at(0),
            now: at(10),
        };
        assert!(late.accepts(Duration::ZERO));
        assert!(late.accepts(SHARED_AGE));
        assert!(!late.accepts(SHARED_AGE + ms(1)), "too old");

        // Created at 0, began at 3: the list must have started 2 s after the creation.
        let early = Freshness::Shared {
            created: at(0),
            now: at(3),
        };
        assert!(early.accepts(ms(1000)));
        assert!(
            !early.accepts(ms(1001)),
            "may have started before the triage existed"
        );

        // Times at the ends of the range are refused, not a panic.
        let odd = Freshness::Shared {
            created: Timestamp::MAX,
            now: Timestamp::MIN,
        };
        assert!(!odd.accepts(Duration::ZERO));
        assert!(!odd.accepts(Duration::MAX));
    }

    #[tokio::test(start_paused = true)]
    async fn a_triage_shares_a_recent_list_and_a_remediation_never_does() {
        let turns = Turns::default();
        let calls = AtomicUsize::new(0);
        let created = at(0);
        let list = || slow_list(&calls);
        let shared = |now| Freshness::Shared { created, now };

        let first = take_turn(&turns, shared(at(10)), list).await.unwrap();
        assert_eq!(first[0], event(0));

        // 3 s later, a triage of the same backlog takes that list.
        tokio::time::advance(Duration::from_secs(3)).await;
        let second = take_turn(&turns, shared(at(13)), || slow_list(&calls)).await;
        assert_eq!(second.unwrap()[0], event(0));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // A remediation at the same moment lists for itself.
        let acting = take_turn(&turns, Freshness::AfterRequest, || slow_list(&calls)).await;
        assert_eq!(acting.unwrap()[0], event(1));

        // Once the newest list is older than SHARED_AGE, a triage lists again.
        tokio::time::advance(SHARED_AGE + Duration::from_secs(1)).await;
        let third = take_turn(&turns, shared(at(19)), || slow_list(&calls)).await;
        assert_eq!(third.unwrap()[0], event(2));

        // A triage created after the newest list started does not take it.
        let newer = Freshness::Shared {
            created: at(19),
            now: at(20),
        };
        let fourth = take_turn(&turns, newer, || slow_list(&calls)).await;
        assert_eq!(fourth.unwrap()[0], event(3));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unused_list_is_kept_while_it_can_serve_a_triage_then_dropped() {
        let events = WarningEvents::default();
        let calls = AtomicUsize::new(0);
        {
            let waiting = Waiting::new(&events, "n");
            take_turn(&waiting.turns, Freshness::AfterRequest, || {
                slow_list(&calls)
            })
            .await
            .unwrap();
        }
        assert_eq!(events.namespaces_held(), 1, "kept for the next triage");
        tokio::time::sleep(SHARED_AGE / 2).await;
        assert_eq!(events.namespaces_held(), 1);
        tokio::time::sleep(SHARED_AGE).await;
        assert_eq!(events.namespaces_held(), 0, "dropped once too old to serve");
    }
}

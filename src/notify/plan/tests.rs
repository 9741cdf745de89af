use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::*;
use crate::crd::{
    Action, AlertTriageSpec, AlertTriageStatus, Category, Classification, Proposal, Recommendation,
    Scope,
};

const UID: &str = "0f0e0d0c-0000-4000-8000-000000000001";

fn triage(phase: Phase) -> AlertTriage {
    let mut t = AlertTriage::new("t", AlertTriageSpec::default());
    t.metadata.uid = Some(UID.into());
    t.metadata.namespace = Some("ns".into());
    t.status = Some(AlertTriageStatus {
        phase: Some(phase),
        classification: Some(Classification {
            category: Category::new("RateLimited").unwrap(),
            http_status: Some(429),
            scope: Scope::AllPods,
            reason: "r".into(),
        }),
        recommendation: Some(Recommendation {
            action: Action::Escalate,
            team: Some("troutbridge".into()),
            reason: "r".into(),
            next_steps: vec![],
        }),
        proposal: (phase == Phase::AwaitingApproval).then(|| Proposal {
            id: "p-1".into(),
            action: Action::DeletePod,
            pod: "pod".into(),
            pod_uid: "u".into(),
            expires_at: Time(Timestamp::UNIX_EPOCH),
        }),
        ..AlertTriageStatus::default()
    });
    t
}

#[test]
fn wanted_follows_the_phase() {
    let table = [
        (Phase::Escalated, Some(NotificationKind::Escalation)),
        (
            Phase::ApiKeyRotationRequired,
            Some(NotificationKind::ApiKeyRotation),
        ),
        (
            Phase::AwaitingApproval,
            Some(NotificationKind::ApprovalRequest),
        ),
        (Phase::Pending, None),
        (Phase::Gathering, None),
        (Phase::Remediating, None),
        (Phase::Remediated, None),
        (Phase::RemediationFailed, None),
        (Phase::NoAction, None),
    ];
    for (phase, kind) in table {
        let got: Vec<_> = wanted(&triage(phase), false)
            .into_iter()
            .map(|w| w.kind)
            .collect();
        assert_eq!(got, kind.into_iter().collect::<Vec<_>>(), "{phase:?}");
        assert!(wanted(&triage(phase), true).is_empty(), "deleted {phase:?}");
    }
}

#[test]
fn a_verdict_being_made_holds_what_was_sent() {
    for phase in [Phase::Pending, Phase::Gathering] {
        assert!(held(&triage(phase), false), "{phase:?}");
        assert!(!held(&triage(phase), true), "deleted {phase:?}");
    }
    let mut fresh = triage(Phase::Pending);
    fresh.status = None;
    assert!(held(&fresh, false));
    for phase in [
        Phase::Escalated,
        Phase::Remediating,
        Phase::Remediated,
        Phase::NoAction,
    ] {
        assert!(!held(&triage(phase), false), "{phase:?}");
    }
    let mut resolved = triage(Phase::Gathering);
    resolved
        .status
        .as_mut()
        .unwrap()
        .conditions
        .push(Condition {
            type_: "Resolved".into(),
            status: "True".into(),
            reason: "AlertResolved".into(),
            message: String::new(),
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
            observed_generation: None,
        });
    assert!(!held(&resolved, false), "a resolved alert ends everything");
}

#[test]
fn a_resolved_alert_wants_nothing() {
    let mut t = triage(Phase::Escalated);
    t.status.as_mut().unwrap().conditions.push(Condition {
        type_: "Resolved".into(),
        status: "True".into(),
        reason: "AlertResolved".into(),
        message: String::new(),
        last_transition_time: Time(Timestamp::UNIX_EPOCH),
        observed_generation: None,
    });
    assert!(wanted(&t, false).is_empty());
}

#[test]
fn keys_are_stable_and_tell_notifications_apart() {
    let a = wanted(&triage(Phase::Escalated), false);
    assert_eq!(a, wanted(&triage(Phase::Escalated), false));
    assert_eq!(a[0].key.len(), 32);
    let approval = wanted(&triage(Phase::AwaitingApproval), false);
    assert_ne!(a[0].key, approval[0].key);
    let mut other = triage(Phase::AwaitingApproval);
    other.status.as_mut().unwrap().proposal.as_mut().unwrap().id = "p-2".into();
    assert_ne!(
        wanted(&other, false)[0].key,
        approval[0].key,
        "a new proposal, a new key"
    );
    let mut other_uid = triage(Phase::Escalated);
    other_uid.metadata.uid = Some("another".into());
    assert_ne!(wanted(&other_uid, false)[0].key, a[0].key);
}

const RETRY: Retry = Retry {
    initial_backoff: Duration::from_secs(10),
    max_backoff: Duration::from_secs(60),
    max_attempts: 3,
};

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn delivery(
    target: &str,
    key: &str,
    event: DeliveryEvent,
    result: DeliveryResult,
    attempts: u32,
    time: i64,
) -> Delivery {
    Delivery {
        target: target.into(),
        kind: NotificationKind::Escalation,
        key: key.into(),
        event,
        result,
        attempts,
        time: Time(at(time)),
        error: None,
    }
}

fn send(target: &str, key: &str, event: DeliveryEvent, attempts: u32) -> Step {
    Step::Send {
        target: target.into(),
        kind: NotificationKind::Escalation,
        key: key.into(),
        event,
        attempts,
    }
}

/// Name, what is routed, what was recorded, seconds after the epoch of the test, steps wanted.
type Case<'a> = (
    &'a str,
    &'a Vec<(Wanted, Vec<TargetRef<'a>>)>,
    Vec<Delivery>,
    i64,
    Vec<Step>,
);

#[test]
fn due_table() {
    use DeliveryEvent::{Firing, Resolved};
    use DeliveryResult::*;
    let am = TargetRef {
        name: "am",
        one_incident_per_triage: false,
    };
    let pd = TargetRef {
        name: "pd",
        one_incident_per_triage: true,
    };
    let known = [am, pd];
    let k1 = Wanted {
        kind: NotificationKind::Escalation,
        key: "k1".into(),
    };
    let firing_both = vec![(k1.clone(), vec![am, pd])];
    let firing_am = vec![(k1.clone(), vec![am])];
    let none: Vec<(Wanted, Vec<TargetRef>)> = vec![];
    let firing_k2_pd = vec![(
        Wanted {
            kind: NotificationKind::Escalation,
            key: "k2".into(),
        },
        vec![pd],
    )];
    let table: Vec<Case> = vec![
        (
            "new: sent to each target",
            &firing_both,
            vec![],
            0,
            vec![send("am", "k1", Firing, 0), send("pd", "k1", Firing, 0)],
        ),
        (
            "delivered: nothing more",
            &firing_am,
            vec![delivery("am", "k1", Firing, Delivered, 1, 0)],
            100,
            vec![],
        ),
        (
            "cut short while sending: again, same key",
            &firing_am,
            vec![delivery("am", "k1", Firing, Sending, 1, 0)],
            0,
            vec![send("am", "k1", Firing, 1)],
        ),
        (
            "failed: waits out the backoff",
            &firing_am,
            vec![delivery("am", "k1", Firing, Failed, 2, 0)],
            19,
            vec![],
        ),
        (
            "failed: then tries again",
            &firing_am,
            vec![delivery("am", "k1", Firing, Failed, 2, 0)],
            20,
            vec![send("am", "k1", Firing, 2)],
        ),
        (
            "given up: stays so",
            &firing_am,
            vec![delivery("am", "k1", Firing, Undelivered, 3, 0)],
            1000,
            vec![],
        ),
        (
            "ended: resolved",
            &none,
            vec![delivery("am", "k1", Firing, Delivered, 1, 0)],
            5,
            vec![send("am", "k1", Resolved, 0)],
        ),
        (
            "ended after giving up: still resolved, a try may have landed",
            &none,
            vec![delivery("am", "k1", Firing, Undelivered, 3, 0)],
            5,
            vec![send("am", "k1", Resolved, 0)],
        ),
        (
            "resolve failed: retried with backoff",
            &none,
            vec![delivery("am", "k1", Resolved, Failed, 1, 0)],
            10,
            vec![send("am", "k1", Resolved, 1)],
        ),
        (
            "resolve delivered: done",
            &none,
            vec![delivery("am", "k1", Resolved, Delivered, 1, 0)],
            10,
            vec![],
        ),
        (
            "one incident per triage: a newer notification keeps it open",
            &firing_k2_pd,
            vec![
                delivery("pd", "k1", Firing, Delivered, 1, 0),
                delivery("pd", "k2", Firing, Delivered, 1, 0),
            ],
            5,
            vec![Step::Supersede {
                target: "pd".into(),
                key: "k1".into(),
            }],
        ),
        (
            "a target no longer configured is left alone",
            &none,
            vec![delivery("gone", "k1", Firing, Delivered, 1, 0)],
            5,
            vec![],
        ),
        (
            "fires again after a resolve",
            &firing_am,
            vec![delivery("am", "k1", Resolved, Delivered, 1, 0)],
            5,
            vec![send("am", "k1", Firing, 0)],
        ),
    ];
    for (name, routed, deliveries, now, want) in table {
        assert_eq!(
            due(routed, &deliveries, &known, &RETRY, at(now)),
            want,
            "{name}"
        );
    }
}

#[test]
fn prune_drops_the_oldest_finished_entries_only() {
    use DeliveryEvent::{Firing, Resolved};
    use DeliveryResult::*;
    let mut ds = vec![
        delivery("a", "k1", Resolved, Delivered, 1, 30),
        delivery("a", "k2", Firing, Delivered, 1, 0),
        delivery("a", "k3", Resolved, Delivered, 1, 10),
        delivery("a", "k4", Resolved, Failed, 2, 5),
        delivery("a", "k5", Resolved, Superseded, 0, 20),
    ];
    prune(&mut ds, 3);
    let keys: Vec<&str> = ds.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(keys, ["k1", "k2", "k4"]);
    prune(&mut ds, 1);
    let keys: Vec<&str> = ds.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(keys, ["k2", "k4"], "firing and retrying entries stay");
}

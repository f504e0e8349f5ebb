//! The store's contract, run against every backend: SQLite always, PostgreSQL when
//! `CALLBRIDGE_TEST_DATABASE_URL` names a server (each test gets a fresh database there).

use std::sync::Arc;
use std::time::Duration;

use callbridge_store::{
    Activity, ActivityRecord, Booked, Booking, BookingChange, BookingStatus, Failure, IdempotencyKey, NewDelivery,
    PortalId, Settlement, Store, now_ms,
};

/// Every backend to test, by name.
async fn backends() -> Vec<(&'static str, Arc<dyn Store>)> {
    let mut out: Vec<(&'static str, Arc<dyn Store>)> =
        vec![("sqlite", callbridge_store::open("sqlite::memory:").await.unwrap())];
    if let Some(url) = postgres_database().await {
        out.push(("postgres", callbridge_store::open(&url).await.unwrap()));
    }
    out
}

/// A fresh database on the PostgreSQL server `CALLBRIDGE_TEST_DATABASE_URL` names (its URL),
/// or `None`, said on stderr, when none is named.
async fn postgres_database() -> Option<String> {
    callbridge_store::test_support::postgres_or_skip().await.map(|(_, url)| url)
}

fn portal(name: &str) -> PortalId {
    PortalId::parse(name).unwrap()
}

fn delivery(key: &str, caller: &str) -> NewDelivery {
    delivery_in(&PortalId::default(), key, caller)
}

fn delivery_in(portal: &PortalId, key: &str, caller: &str) -> NewDelivery {
    NewDelivery {
        portal: portal.clone(),
        source: "vapi".into(),
        idempotency_key: IdempotencyKey::from_stored(key.into()),
        raw_body: b"{}".to_vec(),
        event_json: "{}".into(),
        job_kind: Some("sync_call"),
        caller_key: caller.into(),
        received_at_ms: now_ms(),
        coalesce: None,
    }
}

/// Marks jobs done, as the worker does.
async fn done(s: &Arc<dyn Store>, ids: &[i64]) {
    s.settle(&Settlement { done: ids.to_vec(), ..Settlement::default() }).await.unwrap();
}

#[tokio::test]
async fn a_duplicate_delivery_stores_and_enqueues_nothing() {
    for (name, s) in backends().await {
        let first = s.ingest(delivery("k1", "c1")).await.unwrap();
        let again = s.ingest(delivery("k1", "c1")).await.unwrap();
        assert!(!first.duplicate && again.duplicate, "{name}");
        assert_eq!(first.inbox_id, again.inbox_id, "{name}");
        assert_eq!(s.counts().await.unwrap().queued, 1, "{name}");
    }
}

#[tokio::test]
async fn concurrent_deliveries_of_one_key_store_one_row_and_one_job() {
    for (name, s) in backends().await {
        let mut tasks = Vec::new();
        for i in 0..40 {
            let s = s.clone();
            let key = if i % 2 == 0 { "same".to_string() } else { format!("k{i}") };
            tasks.push(tokio::spawn(async move { s.ingest(delivery(&key, "c")).await.unwrap() }));
        }
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        let same: Vec<_> = results.iter().step_by(2).collect();
        assert_eq!(same.iter().filter(|r| !r.duplicate).count(), 1, "{name}");
        assert!(same.iter().all(|r| r.inbox_id == same[0].inbox_id), "{name}");
        assert_eq!(s.counts().await.unwrap().queued, 21, "{name}");
        assert_eq!(s.events(None, 100).await.unwrap().len(), 21, "{name}");
    }
}

#[tokio::test]
async fn a_callers_jobs_run_one_at_a_time_in_order() {
    for (name, s) in backends().await {
        s.ingest(delivery("a1", "alice")).await.unwrap();
        s.ingest(delivery("a2", "alice")).await.unwrap();
        s.ingest(delivery("b1", "bob")).await.unwrap();
        let lease = Duration::from_secs(60);
        let j1 = s.claim("w", lease).await.unwrap().unwrap();
        let j2 = s.claim("w", lease).await.unwrap().unwrap();
        assert_eq!((j1.idempotency_key.as_str(), j2.idempotency_key.as_str()), ("a1", "b1"), "{name}");
        assert!(s.claim("w", lease).await.unwrap().is_none(), "{name}: alice's second job waits for her first");
        done(&s, &[j1.id]).await;
        assert_eq!(s.claim("w", lease).await.unwrap().unwrap().idempotency_key, "a2", "{name}");
    }
}

#[tokio::test]
async fn failed_jobs_retry_later_then_die_and_can_be_replayed() {
    for (name, s) in backends().await {
        let ingested = s.ingest(delivery("k", "c")).await.unwrap();
        let lease = Duration::from_secs(60);
        let job = s.claim("w", lease).await.unwrap().unwrap();
        s.fail(job.id, "transient", "HubSpot answered 503", Failure::RetryAt(now_ms() + 60_000)).await.unwrap();
        assert!(s.claim("w", lease).await.unwrap().is_none(), "{name}: not before its time");
        assert!(s.next_run_at().await.unwrap().unwrap() > now_ms(), "{name}");
        s.fail(job.id, "permanent", "gave up", Failure::Dead).await.unwrap();
        let dead = s.events(Some("dead"), 10).await.unwrap();
        assert_eq!(dead.len(), 1, "{name}");
        assert_eq!(dead[0].last_error.as_deref(), Some("gave up"), "{name}");
        assert_eq!(dead[0].attempts, 2, "{name}");
        assert!(s.replay(ingested.inbox_id, None).await.unwrap(), "{name}");
        let again = s.claim("w", lease).await.unwrap().unwrap();
        assert_eq!(again.attempts, 0, "{name}");
    }
}

#[tokio::test]
async fn an_expired_lease_makes_the_job_claimable_again() {
    for (name, s) in backends().await {
        s.ingest(delivery("k", "c")).await.unwrap();
        let job = s.claim("dead-worker", Duration::from_millis(0)).await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let again = s.claim("w2", Duration::from_secs(60)).await.unwrap().unwrap();
        assert_eq!(job.id, again.id, "{name}");
        assert_eq!((job.claims, again.claims), (1, 2), "{name}: the second run knows it is not the first");
    }
}

#[tokio::test]
async fn released_jobs_are_claimable_at_once_and_know_they_ran_before() {
    for (name, s) in backends().await {
        s.ingest(delivery("k1", "c1")).await.unwrap();
        s.ingest(delivery("k2", "c2")).await.unwrap();
        let lease = Duration::from_secs(600);
        let mine = s.claim_many("w-1", lease, 10).await.unwrap();
        assert_eq!(mine.len(), 2, "{name}");
        assert_eq!(s.release(&["w-0".into()]).await.unwrap(), 0, "{name}: only the named workers' jobs");
        assert_eq!(s.release(&["w-1".into()]).await.unwrap(), 2, "{name}");
        let again = s.claim_many("w-2", lease, 10).await.unwrap();
        assert_eq!(again.len(), 2, "{name}: claimable without waiting out the lease");
        assert!(
            again.iter().all(|j| j.claims == 2 && j.attempts == 0),
            "{name}: not an attempt, but not the first run"
        );
    }
}

#[tokio::test]
async fn a_renewed_lease_keeps_the_job_from_other_workers() {
    for (name, s) in backends().await {
        s.ingest(delivery("k", "c")).await.unwrap();
        let job = s.claim("w1", Duration::from_millis(50)).await.unwrap().unwrap();
        assert!(s.renew(job.id, "w1", Duration::from_secs(60)).await.unwrap(), "{name}");
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(s.claim("w2", Duration::from_secs(60)).await.unwrap().is_none(), "{name}: still w1's");
        assert!(!s.renew(job.id, "w2", Duration::from_secs(60)).await.unwrap(), "{name}: only the holder renews");
    }
}

#[tokio::test]
async fn exclusive_work_runs_once_at_a_time() {
    for (name, s) in backends().await {
        let first = s.try_exclusive("dedup-sweep").await.unwrap();
        assert!(first.is_some(), "{name}");
        assert!(s.try_exclusive("dedup-sweep").await.unwrap().is_none(), "{name}: a second taker is refused");
        assert!(s.try_exclusive("poll:goodcall").await.unwrap().is_some(), "{name}: other work is not blocked");
        first.unwrap().release().await;
        let again = s.try_exclusive("dedup-sweep").await.unwrap();
        assert!(again.is_some(), "{name}: once release returns, the next taker has it");
        drop(again);
        let started = std::time::Instant::now();
        loop {
            if s.try_exclusive("dedup-sweep").await.unwrap().is_some() {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(5), "{name}: released on drop");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test]
async fn a_batch_claim_takes_callers_oldest_jobs_then_what_queues_behind_them() {
    for (name, s) in backends().await {
        for (key, caller) in [("a1", "alice"), ("a2", "alice"), ("b1", "bob"), ("c1", "carol"), ("b2", "bob")] {
            s.ingest(delivery(key, caller)).await.unwrap();
        }
        let lease = Duration::from_secs(60);
        let keys = |jobs: &[callbridge_store::Job]| jobs.iter().map(|j| j.idempotency_key.clone()).collect::<Vec<_>>();
        // One caller's oldest job alone, then two callers' with what queues behind them.
        let first = s.claim_many("w", lease, 1).await.unwrap();
        assert_eq!(keys(&first), ["a1"], "{name}");
        let rest = s.claim_many("w", lease, 2).await.unwrap();
        assert_eq!(keys(&rest), ["b1", "c1", "b2"], "{name}");
        let heads: Vec<_> = first.into_iter().chain(rest).collect();
        assert!(s.claim_many("w", lease, 10).await.unwrap().is_empty(), "{name}: the rest wait for their callers");
        // Settling records what the batch did and releases each caller's next job.
        let activity = |id, contact| Activity { hubspot_id: id, contact_id: Some(contact), via: "v3".into(), stage: 2 };
        let record = |key: &str, a| ActivityRecord {
            source: "vapi".into(),
            key: key.into(),
            kind: "call",
            activity: a,
            occurred_at_ms: 5,
        };
        let settlement = Settlement {
            portal: PortalId::default(),
            activities: vec![record("a1", activity(1, 10)), record("b1", activity(2, 20))],
            last_calls: vec![(10, 5), (20, 6), (10, 3)],
            done: heads.iter().map(|j| j.id).collect(),
        };
        s.settle(&settlement).await.unwrap();
        assert_eq!(
            s.activity(&PortalId::default(), "vapi", "b1", "call").await.unwrap(),
            Some(activity(2, 20)),
            "{name}"
        );
        assert_eq!(
            s.last_call_at(&PortalId::default(), 10).await.unwrap(),
            Some(5),
            "{name}: the later call time is kept"
        );
        assert_eq!(s.counts().await.unwrap().done, 4, "{name}");

        let batch = s.claim_many("w", lease, 100).await.unwrap();
        assert_eq!(keys(&batch), ["a2"], "{name}: alice's next, once her first is done");
        done(&s, &batch.iter().map(|j| j.id).collect::<Vec<_>>()).await;

        // With room, a caller's queued jobs come along behind their head, in order, but
        // never past one that waits for a retry.
        for (key, caller) in
            [("d1", "dave"), ("d2", "dave"), ("d3", "dave"), ("e1", "erin"), ("e2", "erin"), ("e3", "erin")]
        {
            s.ingest(delivery(key, caller)).await.unwrap();
        }
        let heads = s.claim_many("w", lease, 1).await.unwrap();
        let more = s.claim_many("w", lease, 1).await.unwrap();
        let heads: Vec<_> = heads.into_iter().chain(more).collect();
        assert_eq!(keys(&heads), ["d1", "e1"], "{name}");
        done(&s, &[heads[0].id]).await;
        s.fail(heads[1].id, "transient", "boom", Failure::RetryAt(now_ms() + 60_000)).await.unwrap();
        let batch = s.claim_many("w", lease, 100).await.unwrap();
        assert_eq!(keys(&batch), ["d2", "d3"], "{name}: erin's next jobs wait behind her retry");
        done(&s, &batch.iter().map(|j| j.id).collect::<Vec<_>>()).await;
        for (key, caller) in [("f1", "fay"), ("f2", "fay"), ("f3", "fay")] {
            s.ingest(delivery(key, caller)).await.unwrap();
        }
        assert_eq!(
            keys(&s.claim_many("w", lease, 100).await.unwrap()),
            ["f1", "f2", "f3"],
            "{name}: all of a caller's"
        );
    }
}

#[tokio::test]
async fn a_running_round_takes_the_jobs_that_arrive_for_its_callers_and_no_one_elses() {
    for (name, s) in backends().await {
        let p = PortalId::default();
        let lease = Duration::from_secs(60);
        let keys = |jobs: &[callbridge_store::Job]| jobs.iter().map(|j| j.idempotency_key.clone()).collect::<Vec<_>>();
        let callers = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        for (key, caller) in [("a1", "alice"), ("b1", "bob"), ("c1", "carol")] {
            s.ingest(delivery(key, caller)).await.unwrap();
        }
        let mine = s.claim_many("w-1", lease, 2).await.unwrap();
        assert_eq!(keys(&mine), ["a1", "b1"], "{name}");
        let theirs = s.claim_many("w-2", lease, 1).await.unwrap();
        assert_eq!(keys(&theirs), ["c1"], "{name}");
        assert!(
            s.claim_followers("w-1", lease, &p, &callers(&["alice"]), 10).await.unwrap().is_empty(),
            "{name}: nothing has arrived yet"
        );
        // Calls arrive while the rounds run: alice's twice, bob's once, carol's once, dan's.
        for (key, caller) in [("a2", "alice"), ("b2", "bob"), ("c2", "carol"), ("a3", "alice"), ("d1", "dan")] {
            s.ingest(delivery(key, caller)).await.unwrap();
        }
        // Carol's round is another worker's, and dan has no round: asking for them takes nothing.
        let everyone = callers(&["alice", "bob", "carol", "dan"]);
        let joined = s.claim_followers("w-1", lease, &p, &everyone, 10).await.unwrap();
        assert_eq!(keys(&joined), ["a2", "b2", "a3"], "{name}: in order, each behind its caller's running job");
        assert!(joined.iter().all(|j| j.claims == 1), "{name}");
        assert!(s.claim_followers("w-1", lease, &p, &everyone, 10).await.unwrap().is_empty(), "{name}: taken once");
        // Behind a job that waits for a retry nothing is taken, and `max` bounds the take.
        s.fail(joined[1].id, "transient", "boom", Failure::RetryAt(now_ms() + 60_000)).await.unwrap();
        s.ingest(delivery("b3", "bob")).await.unwrap();
        for (key, caller) in [("a4", "alice"), ("a5", "alice")] {
            s.ingest(delivery(key, caller)).await.unwrap();
        }
        let more = s.claim_followers("w-1", lease, &p, &callers(&["alice", "bob"]), 1).await.unwrap();
        assert_eq!(keys(&more), ["a4"], "{name}: bob's waits behind his retry; one at most");
        // Dan's job is still the next claim's, with carol's once hers is done.
        done(&s, &[theirs[0].id]).await;
        assert_eq!(keys(&s.claim_many("w-3", lease, 10).await.unwrap()), ["c2", "d1"], "{name}");
    }
}

#[tokio::test]
async fn many_callers_are_remembered_at_once() {
    for (name, s) in backends().await {
        let entries: Vec<(Vec<String>, u64)> =
            (0..300).map(|i| (vec![format!("email:c{i}@example.com"), format!("phone:+1415555{i:04}")], i)).collect();
        let p = PortalId::default();
        s.remember_contacts(&p, &entries).await.unwrap();
        // A key named again later points at the later contact.
        s.remember_contacts(
            &p,
            &[(vec!["phone:+14155550007".into()], 1_000), (vec!["phone:+14155550007".into()], 1_001)],
        )
        .await
        .unwrap();
        assert_eq!(s.known_contact(&p, &["email:c299@example.com".into()]).await.unwrap(), Some(299), "{name}");
        assert_eq!(s.known_contact(&p, &["phone:+14155550007".into()]).await.unwrap(), Some(1_001), "{name}");
    }
}

#[tokio::test]
async fn a_rounds_callers_activities_and_last_calls_are_looked_up_at_once_in_their_order() {
    for (name, s) in backends().await {
        let p = PortalId::default();
        let entries: Vec<(Vec<String>, u64)> =
            (0..300).map(|i| (vec![format!("email:c{i}@example.com"), format!("phone:+1415555{i:04}")], i)).collect();
        s.remember_contacts(&p, &entries).await.unwrap();
        // Each caller gets the contact of their first key the index holds; unknown callers none.
        let callers = vec![
            vec!["email:nobody@example.com".to_string(), "phone:+14155550042".to_string()],
            vec!["email:c7@example.com".to_string(), "phone:+14155550042".to_string()],
            vec!["phone:+19995550000".to_string()],
            vec![],
            vec!["email:c299@example.com".to_string()],
        ];
        let known = s.known_contacts(&p, &callers).await.unwrap();
        assert_eq!(known, [Some(42), Some(7), None, None, Some(299)], "{name}");
        assert_eq!(s.known_contacts(&p, &[]).await.unwrap(), Vec::<Option<u64>>::new(), "{name}");
        // Another portal's index answers nothing here.
        assert_eq!(s.known_contacts(&portal("other"), &callers).await.unwrap(), [None; 5], "{name}");

        let record = |key: &str, kind: &'static str, hubspot_id: u64| ActivityRecord {
            source: "vapi".into(),
            key: key.into(),
            kind,
            activity: Activity { hubspot_id, contact_id: Some(7), via: "v1".into(), stage: 1 },
            occurred_at_ms: 5,
        };
        let settlement = Settlement {
            portal: p.clone(),
            activities: vec![record("call-1", "call", 11), record("call-1", "task", 12), record("call-2", "call", 21)],
            last_calls: vec![(7, 700), (8, 800)],
            done: vec![],
        };
        s.settle(&settlement).await.unwrap();
        let found = s
            .activities_by_key(
                &p,
                &[
                    ("vapi", "call-1", "call"),
                    ("vapi", "call-1", "task"),
                    ("vapi", "call-3", "call"),
                    ("retell", "call-2", "call"),
                ],
            )
            .await
            .unwrap();
        let mut ids: Vec<(&str, &str, u64)> =
            found.iter().map(|((_, key, kind), a)| (key.as_str(), kind.as_str(), a.hubspot_id)).collect();
        ids.sort();
        assert_eq!(ids, [("call-1", "call", 11), ("call-1", "task", 12)], "{name}");
        assert_eq!(found[&("vapi".into(), "call-1".into(), "call".into())].via, "v1", "{name}");
        let last = s.last_calls_at(&p, &[7, 8, 9]).await.unwrap();
        assert_eq!((last.get(&7), last.get(&8), last.get(&9)), (Some(&700), Some(&800), None), "{name}");
        assert!(s.activities_by_key(&portal("other"), &[("vapi", "call-1", "call")]).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn a_settlement_records_every_row_of_a_round_and_marks_its_jobs_done() {
    for (name, s) in backends().await {
        let p = PortalId::default();
        let mut ids = Vec::new();
        for i in 0..150 {
            ids.push(s.ingest(delivery(&format!("k{i}"), &format!("caller{i}"))).await.unwrap().inbox_id);
        }
        let jobs = s.claim_many("w", Duration::from_secs(60), 200).await.unwrap();
        assert_eq!(jobs.len(), 150, "{name}");
        let activities = (0..150u64)
            .map(|i| ActivityRecord {
                source: "vapi".into(),
                key: format!("call-{i}"),
                kind: "call",
                // A call landed before its contact was known has none.
                activity: Activity {
                    hubspot_id: 1_000 + i,
                    contact_id: (i % 3 != 0).then_some(i),
                    via: "v3".into(),
                    stage: 2,
                },
                occurred_at_ms: i as i64,
            })
            .collect();
        let settlement = Settlement {
            portal: p.clone(),
            activities,
            last_calls: (1..150u64).map(|i| (i, 10 * i as i64)).collect(),
            done: jobs.iter().map(|j| j.id).collect(),
        };
        s.settle(&settlement).await.unwrap();
        let got = s.activity(&p, "vapi", "call-149", "call").await.unwrap().unwrap();
        assert_eq!((got.hubspot_id, got.contact_id, got.stage), (1_149, Some(149), 2), "{name}");
        assert_eq!(s.activity(&p, "vapi", "call-3", "call").await.unwrap().unwrap().contact_id, None, "{name}");
        assert_eq!(s.last_call_at(&p, 77).await.unwrap(), Some(770), "{name}");
        for id in ids {
            assert_eq!(s.job_status(id).await.unwrap().as_deref(), Some("done"), "{name}");
        }
    }
}

#[tokio::test]
async fn a_settlement_recording_one_activity_twice_keeps_the_later_record_and_the_higher_stage() {
    for (name, s) in backends().await {
        let p = PortalId::default();
        let record = |hubspot_id: u64, contact_id: Option<u64>, stage: i64| ActivityRecord {
            source: "vapi".into(),
            key: "call-1".into(),
            kind: "call",
            activity: Activity { hubspot_id, contact_id, via: "v3".into(), stage },
            occurred_at_ms: 1,
        };
        let settlement = Settlement {
            portal: p.clone(),
            activities: vec![record(7, Some(1), 1), record(8, Some(2), 3), record(9, Some(3), 2)],
            ..Settlement::default()
        };
        s.settle(&settlement).await.unwrap();
        let got = s.activity(&p, "vapi", "call-1", "call").await.unwrap().unwrap();
        assert_eq!((got.hubspot_id, got.contact_id, got.stage), (9, Some(3), 3), "{name}");
        assert_eq!(s.activities().await.unwrap().len(), 1, "{name}");
    }
}

#[tokio::test]
async fn caller_index_sync_state_activities_and_tokens_round_trip() {
    for (name, s) in backends().await {
        let p = PortalId::default();
        let keys = vec!["email:a@example.com".to_string(), "phone:+14155550100".to_string()];
        s.remember_contact(&p, &keys, 42).await.unwrap();
        assert_eq!(s.known_contact(&p, &keys[1..]).await.unwrap(), Some(42), "{name}");
        s.forget_contact(&p, 42).await.unwrap();
        assert_eq!(s.known_contact(&p, &keys).await.unwrap(), None, "{name}");
        let at = |ms| Settlement { portal: p.clone(), last_calls: vec![(42, ms)], ..Settlement::default() };
        s.settle(&at(2_000)).await.unwrap();
        s.settle(&at(1_000)).await.unwrap();
        assert_eq!(s.last_call_at(&p, 42).await.unwrap(), Some(2_000), "{name}");
        let a = Activity { hubspot_id: 7, contact_id: Some(42), via: "v3".into(), stage: 3 };
        let record = |a: &Activity| Settlement {
            portal: p.clone(),
            activities: vec![ActivityRecord {
                source: "vapi".into(),
                key: "call-1".into(),
                kind: "call",
                activity: a.clone(),
                occurred_at_ms: 1,
            }],
            ..Settlement::default()
        };
        s.settle(&record(&a)).await.unwrap();
        // A lower stage never lowers what is recorded.
        s.settle(&record(&Activity { stage: 2, ..a.clone() })).await.unwrap();
        assert_eq!(s.activity(&p, "vapi", "call-1", "call").await.unwrap(), Some(a), "{name}");
        let t = callbridge_store::StoredTokens {
            access_token: "at".into(),
            refresh_token: "rt".into(),
            expires_at_ms: 5,
            hub_id: Some(9),
            scopes: vec!["oauth".into(), "crm.objects.contacts.read".into()],
        };
        s.save_tokens(&p, &t).await.unwrap();
        let loaded = s.load_tokens(&p).await.unwrap().unwrap();
        assert_eq!((loaded.refresh_token.as_str(), loaded.scopes.len(), loaded.hub_id), ("rt", 2, Some(9)), "{name}");
        assert!(s.load_tokens(&portal("other")).await.unwrap().is_none(), "{name}: tokens are the portal's own");

        let session = callbridge_store::SourceSession {
            token: "jwt-1".into(),
            expires_at_ms: Some(7_000),
            logged_in_at_ms: 1_000,
        };
        assert_eq!(s.load_session(&p, "goodcall").await.unwrap(), None, "{name}");
        s.save_session(&p, "goodcall", &session).await.unwrap();
        let renewed =
            callbridge_store::SourceSession { token: "jwt-2".into(), expires_at_ms: None, logged_in_at_ms: 2_000 };
        s.save_session(&p, "goodcall", &renewed).await.unwrap();
        assert_eq!(s.load_session(&p, "goodcall").await.unwrap(), Some(renewed), "{name}: the newest session wins");
        assert_eq!(s.load_session(&p, "other-source").await.unwrap(), None, "{name}: sessions are per source");
        assert_eq!(s.load_session(&portal("other"), "goodcall").await.unwrap(), None, "{name}: and per portal");

        assert_eq!(s.load_mark(&p, "goodcall").await.unwrap(), None, "{name}");
        s.advance_mark(&p, "goodcall", 5_000).await.unwrap();
        s.advance_mark(&p, "goodcall", 3_000).await.unwrap();
        assert_eq!(s.load_mark(&p, "goodcall").await.unwrap(), Some(5_000), "{name}: a mark never moves back");
        s.advance_mark(&p, "goodcall", 9_000).await.unwrap();
        assert_eq!(s.load_mark(&p, "goodcall").await.unwrap(), Some(9_000), "{name}");
        assert_eq!(s.load_mark(&portal("other"), "goodcall").await.unwrap(), None, "{name}: marks are per portal");
    }
}

#[tokio::test]
async fn portals_keep_their_deliveries_callers_and_records_apart() {
    for (name, s) in backends().await {
        let (a, b) = (portal("acme"), portal("bolt"));
        // The same delivery to two portals is two deliveries; again to one is a duplicate.
        let first = s.ingest(delivery_in(&a, "vapi:c1:end", "phone:+14155550100")).await.unwrap();
        let other = s.ingest(delivery_in(&b, "vapi:c1:end", "phone:+14155550100")).await.unwrap();
        let again = s.ingest(delivery_in(&a, "vapi:c1:end", "phone:+14155550100")).await.unwrap();
        assert!(!first.duplicate && !other.duplicate && again.duplicate, "{name}");
        // One number calling both portals is two callers: their jobs run side by side.
        let jobs = s.claim_many("w", Duration::from_secs(60), 10).await.unwrap();
        let mut portals: Vec<&str> = jobs.iter().map(|j| j.portal.as_str()).collect();
        portals.sort();
        assert_eq!(portals, ["acme", "bolt"], "{name}");
        let rows = s.events(None, 10).await.unwrap();
        assert!(rows.iter().any(|r| r.portal == "acme") && rows.iter().any(|r| r.portal == "bolt"), "{name}");
        // What one portal knows of a caller, the other does not.
        s.remember_contact(&a, &["phone:+14155550100".into()], 11).await.unwrap();
        assert_eq!(s.known_contact(&b, &["phone:+14155550100".into()]).await.unwrap(), None, "{name}");
        s.remember_contact(&b, &["phone:+14155550100".into()], 22).await.unwrap();
        s.forget_contact(&b, 22).await.unwrap();
        assert_eq!(s.known_contact(&a, &["phone:+14155550100".into()]).await.unwrap(), Some(11), "{name}");
        let record = |p: &PortalId, id| Settlement {
            portal: p.clone(),
            activities: vec![ActivityRecord {
                source: "vapi".into(),
                key: "c1".into(),
                kind: "call",
                activity: Activity { hubspot_id: id, contact_id: None, via: "v3".into(), stage: 2 },
                occurred_at_ms: 1,
            }],
            done: jobs.iter().filter(|j| &j.portal == p).map(|j| j.id).collect(),
            ..Settlement::default()
        };
        s.settle(&record(&a, 100)).await.unwrap();
        s.settle(&record(&b, 200)).await.unwrap();
        assert_eq!(s.activity(&a, "vapi", "c1", "call").await.unwrap().map(|x| x.hubspot_id), Some(100), "{name}");
        assert_eq!(s.activity(&b, "vapi", "c1", "call").await.unwrap().map(|x| x.hubspot_id), Some(200), "{name}");
        assert_eq!(s.counts().await.unwrap().done, 2, "{name}");
    }
}

#[tokio::test]
async fn a_claim_of_more_callers_than_one_write_holds_takes_them_all_with_what_queues_behind() {
    for (name, s) in backends().await {
        // 600 callers (more than a claim writes at once), 300 of them with a second call.
        for i in 0..600 {
            s.ingest(delivery(&format!("first-{i}"), &format!("caller-{i}"))).await.unwrap();
        }
        for i in 0..300 {
            s.ingest(delivery(&format!("second-{i}"), &format!("caller-{i}"))).await.unwrap();
        }
        let lease = Duration::from_secs(60);
        let claimed = s.claim_many("w", lease, 2000).await.unwrap();
        assert_eq!(claimed.len(), 900, "{name}: every caller's first call and every second behind it");
        for i in 0..300 {
            let caller = format!("caller-{i}");
            let theirs: Vec<_> = claimed.iter().filter(|j| j.caller_key == caller).collect();
            assert_eq!(theirs.len(), 2, "{name}");
            assert!(theirs[0].id < theirs[1].id, "{name}: a caller's calls come in order");
        }
        assert!(s.claim_many("x", lease, 2000).await.unwrap().is_empty(), "{name}: nothing is claimed twice");
        // Calls that arrive for the round's callers join it, and only the round holding them.
        for i in 0..400 {
            s.ingest(delivery(&format!("third-{i}"), &format!("caller-{i}"))).await.unwrap();
        }
        let callers: Vec<String> = (0..600).map(|i| format!("caller-{i}")).collect();
        let portal = PortalId::default();
        assert!(s.claim_followers("x", lease, &portal, &callers, 2000).await.unwrap().is_empty(), "{name}");
        let followers = s.claim_followers("w", lease, &portal, &callers, 2000).await.unwrap();
        assert_eq!(followers.len(), 400, "{name}");
        assert_eq!(s.counts().await.unwrap().queued, 0, "{name}");
    }
}

#[tokio::test]
async fn jobs_are_claimed_once_by_concurrent_workers() {
    for (name, s) in backends().await {
        for i in 0..60 {
            s.ingest(delivery(&format!("k{i}"), &format!("caller{}", i % 20))).await.unwrap();
        }
        let mut tasks = Vec::new();
        for w in 0..6 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    match s.claim(&format!("w{w}"), Duration::from_secs(60)).await.unwrap() {
                        Some(job) => {
                            mine.push(job.idempotency_key.clone());
                            done(&s, &[job.id]).await;
                        }
                        None if s.counts().await.unwrap().queued == 0 => return mine,
                        None => tokio::task::yield_now().await,
                    }
                }
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all.sort();
        let n = all.len();
        all.dedup();
        assert_eq!((n, all.len()), (60, 60), "{name}: every job once");
    }
}

#[tokio::test]
async fn a_shared_window_frees_a_slot_one_interval_after_its_release() {
    for (name, s) in backends().await {
        if !s.shares_budget() {
            continue;
        }
        let p = PortalId::default();
        let a = s.budget_take(&p, "w", 2, 100).await.unwrap().expect("room");
        let b = s.budget_take(&p, "w", 2, 100).await.unwrap().expect("room");
        assert!(s.budget_take(&p, "w", 2, 100).await.unwrap().is_err(), "{name}: full");
        assert!(s.budget_take(&portal("other"), "w", 2, 100).await.unwrap().is_ok(), "{name}: each portal its own");
        s.budget_release(&p, "w", a).await.unwrap();
        s.budget_release(&p, "w", b).await.unwrap();
        assert!(s.budget_take(&p, "w", 2, 100).await.unwrap().is_err(), "{name}: cooling down");
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(s.budget_take(&p, "w", 2, 100).await.unwrap().is_ok(), "{name}: free again");
        s.budget_block(&p, "w", now_ms() + 60_000).await.unwrap();
        let wait = s.budget_take(&p, "w", 2, 100).await.unwrap().unwrap_err();
        assert!(wait > 50_000, "{name}: blocked for the minute asked");
    }
}

#[tokio::test]
async fn a_database_of_the_first_schema_is_carried_forward_into_the_default_portal() {
    let admin = std::env::var("CALLBRIDGE_TEST_DATABASE_URL").ok().filter(|u| !u.is_empty());
    let path = std::env::temp_dir().join(format!("callbridge-first-schema-{:x}.db", fastrand::u64(..)));
    for admin in [None, admin.as_deref()].into_iter().collect::<std::collections::BTreeSet<_>>() {
        let url = callbridge_store::test_support::first_schema_database(admin, &path).await.unwrap();
        let s = callbridge_store::open(&url).await.unwrap();
        let p = PortalId::default();
        let name = if admin.is_some() { "postgres" } else { "sqlite" };
        // What the first release knew is the default portal's now.
        assert_eq!(s.known_contact(&p, &["phone:+14155550101".into()]).await.unwrap(), Some(100_000_001), "{name}");
        let logged = s.activity(&p, "vapi", "fx-done-1", "call").await.unwrap().expect("the landed call's activity");
        assert_eq!((logged.via.as_str(), logged.stage), ("v3", 3), "{name}");
        assert!(s.last_call_at(&p, 100_000_001).await.unwrap().is_some(), "{name}");
        let c = s.counts().await.unwrap();
        assert_eq!((c.queued, c.done), (4, 1), "{name}");
        // Its deliveries are still known: a repeat changes nothing.
        let repeat = NewDelivery {
            idempotency_key: IdempotencyKey::from_stored("vapi:fx-q-1:end-of-call-report".into()),
            ..delivery("unused", "phone:+14155550102")
        };
        assert!(s.ingest(repeat).await.unwrap().duplicate, "{name}");
        // Its bodies read back as they were received.
        let body = s.event(1).await.unwrap().expect("the first delivery").raw_body;
        assert!(body.starts_with(br#"{"message":{"analysis""#) && body.ends_with(b"}}"), "{name}");
        // Its queued jobs are claimed in their callers' order, in the default portal.
        let jobs = s.claim_many("w", Duration::from_secs(60), 10).await.unwrap();
        let keys: Vec<&str> = jobs.iter().map(|j| j.idempotency_key.as_str()).collect();
        let at = |k: &str| keys.iter().position(|x| x.contains(k)).unwrap_or_else(|| panic!("{name}: {k} in {keys:?}"));
        assert!(at("fx-q-1") < at("fx-q-3"), "{name}: one caller's calls in order: {keys:?}");
        assert!(keys.iter().any(|k| k.starts_with("generic:")), "{name}: the booking: {keys:?}");
        assert!(jobs.iter().all(|j| j.portal == p && j.kind.starts_with("sync_")), "{name}");
        assert_eq!(jobs.len(), 4, "{name}: the caller's two calls come together, in order");
        let _ = std::fs::remove_file(&path);
    }
}

fn booking(key: &str, phone: &str, start_ms: i64, minutes: i64) -> Booking {
    Booking {
        portal: PortalId::default(),
        key: key.into(),
        source: "vapi".into(),
        phone: Some(phone.into()),
        email: None,
        name: Some("Dana Reyes".into()),
        meeting_type: Some("Consultation".into()),
        notes: None,
        start_ms,
        end_ms: start_ms + minutes * 60_000,
        status: BookingStatus::Scheduled,
        history: Vec::new(),
        caller_key: phone.into(),
        created_at_ms: now_ms(),
    }
}

#[tokio::test]
async fn a_slot_is_booked_once_with_its_job_and_a_taken_slot_writes_nothing() {
    for (name, s) in backends().await {
        let at = 1_900_000_000_000;
        let first = booking("vapi:c1:1", "+14155550100", at, 30);
        assert!(
            matches!(s.book(&first, delivery("vapi:c1:1", "+14155550100")).await.unwrap(), Booked::New(_)),
            "{name}"
        );
        // The same key again (a retried tool call): the same booking, nothing new.
        let again = s.book(&first, delivery("vapi:c1:1", "+14155550100")).await.unwrap();
        assert_eq!(
            again,
            Booked::Existing(Box::new(s.booking(&PortalId::default(), "vapi:c1:1").await.unwrap().unwrap())),
            "{name}"
        );
        // Another caller a quarter of an hour in: taken, and nothing stored for it.
        let clash = booking("vapi:c2:1", "+14155550111", at + 15 * 60_000, 30);
        match s.book(&clash, delivery("vapi:c2:1", "+14155550111")).await.unwrap() {
            Booked::Taken(by) => {
                assert_eq!(by.iter().map(|b| b.key.as_str()).collect::<Vec<_>>(), ["vapi:c1:1"], "{name}")
            }
            other => panic!("{name}: {other:?}"),
        }
        assert!(s.booking(&PortalId::default(), "vapi:c2:1").await.unwrap().is_none(), "{name}");
        assert_eq!(s.counts().await.unwrap().queued, 1, "{name}: one job, for the first booking");
        // Right after it: free.
        let next = booking("vapi:c2:2", "+14155550111", at + 30 * 60_000, 30);
        assert!(
            matches!(s.book(&next, delivery("vapi:c2:2", "+14155550111")).await.unwrap(), Booked::New(_)),
            "{name}"
        );
        let between = s.bookings_between(&PortalId::default(), at, at + 3_600_000).await.unwrap();
        assert_eq!(between.len(), 2, "{name}");
    }
}

#[tokio::test]
async fn a_change_applies_once_with_its_job_and_a_cancelled_booking_frees_its_slot() {
    for (name, s) in backends().await {
        let at = 1_900_000_000_000;
        let portal = PortalId::default();
        s.book(&booking("k", "+14155550100", at, 30), delivery("k", "+14155550100")).await.unwrap();
        let moved = BookingChange {
            start_ms: at + 3_600_000,
            end_ms: at + 5_400_000,
            status: BookingStatus::Rescheduled,
            line: "moved".into(),
        };
        for _ in 0..2 {
            let b = s.change_booking(&portal, "k", &moved, delivery("k:move", "+14155550100")).await.unwrap().unwrap();
            assert_eq!(
                (b.start_ms, b.status, b.history.len()),
                (at + 3_600_000, BookingStatus::Rescheduled, 1),
                "{name}"
            );
        }
        assert_eq!(s.counts().await.unwrap().queued, 2, "{name}: the booking's job and the change's, once");
        let mine = s.caller_bookings(&portal, Some("+14155550100"), None, at).await.unwrap();
        assert_eq!(mine.len(), 1, "{name}");
        let cancel = BookingChange { status: BookingStatus::Canceled, line: "cancelled".into(), ..moved };
        s.change_booking(&portal, "k", &cancel, delivery("k:cancel", "+14155550100")).await.unwrap().unwrap();
        assert!(s.caller_bookings(&portal, Some("+14155550100"), None, at).await.unwrap().is_empty(), "{name}");
        assert!(s.bookings_between(&portal, at, at + 7_200_000).await.unwrap().is_empty(), "{name}: the slot is free");
        assert!(s.change_booking(&portal, "nope", &cancel, delivery("x", "y")).await.unwrap().is_none(), "{name}");
        let b = s.booking(&portal, "k").await.unwrap().unwrap();
        assert_eq!(b.history, ["moved", "cancelled"], "{name}");
    }
}

#[tokio::test]
async fn a_claim_never_takes_a_callers_job_past_one_it_could_not_lock() {
    let Some(url) = postgres_database().await else { return };
    let s = callbridge_store::open(&url).await.unwrap();
    let mut inbox = Vec::new();
    for key in ["a1", "a2", "a3"] {
        inbox.push(s.ingest(delivery(key, "alice")).await.unwrap().inbox_id);
    }
    // Another transaction holds the second job's row for a moment (as a lease expiry or a
    // renewal does): SKIP LOCKED passes it by, and the third must not be taken without it.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let mut other = pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM jobs WHERE inbox_id = $1 FOR UPDATE")
        .bind(inbox[1])
        .execute(&mut *other)
        .await
        .unwrap();
    let claimed = s.claim_many("w", Duration::from_secs(60), 10).await.unwrap();
    assert_eq!(claimed.iter().map(|j| j.inbox_id).collect::<Vec<_>>(), [inbox[0]], "only what comes before the gap");
    other.rollback().await.unwrap();
    done(&s, &[claimed[0].id]).await;
    let rest = s.claim_many("w", Duration::from_secs(60), 10).await.unwrap();
    assert_eq!(rest.iter().map(|j| j.inbox_id).collect::<Vec<_>>(), [inbox[1], inbox[2]], "then the rest, in order");
    assert_eq!(rest[1].claims, 1, "handing a job back is not a claim");
}

fn live(key: &str, call: &str, window_ms: i64) -> NewDelivery {
    NewDelivery {
        coalesce: Some(callbridge_store::Coalesce { key: format!("call:vapi:{call}"), window_ms }),
        ..delivery(key, "caller")
    }
}

#[tokio::test]
async fn live_updates_of_one_call_coalesce_into_one_queued_job_with_the_newest() {
    for (name, s) in backends().await {
        // A window already over, so the test claims at once.
        let ids: Vec<i64> = ingest_in_turn(&s, (0..5).map(|i| live(&format!("u{i}"), "c1", -1)).collect()).await;
        s.ingest(live("other", "c2", -1)).await.unwrap();
        assert_eq!(s.counts().await.unwrap().queued, 2, "{name}: one job per call");
        let lease = Duration::from_secs(60);
        let jobs = s.claim_many("w", lease, 10).await.unwrap();
        let first = jobs.iter().find(|j| j.idempotency_key.starts_with('u')).unwrap();
        assert_eq!(first.idempotency_key, "u4", "{name}: the job carries the newest update");
        let events = s.events(None, 10).await.unwrap();
        let status = |id: i64| events.iter().find(|e| e.id == id).unwrap().status.clone();
        assert_eq!(ids[..4].iter().map(|i| status(*i)).collect::<Vec<_>>(), ["coalesced"; 4], "{name}");
        // A repeat of an update is a duplicate; one after the claim gets a job of its own.
        assert!(s.ingest(live("u4", "c1", -1)).await.unwrap().duplicate, "{name}");
        s.ingest(live("u5", "c1", -1)).await.unwrap();
        assert_eq!(s.counts().await.unwrap().queued, 1, "{name}: the running job is not taken over");
        // A new job waits out its window before it can be claimed.
        s.ingest(live("w0", "c3", 60_000)).await.unwrap();
        let claimed = s.claim_many("w", lease, 10).await.unwrap();
        assert!(claimed.iter().all(|j| j.idempotency_key != "w0"), "{name}: due a window after it arrived");
    }
}

/// Ingests deliveries one after another, returning their inbox ids.
async fn ingest_in_turn(s: &Arc<dyn Store>, deliveries: Vec<NewDelivery>) -> Vec<i64> {
    let mut ids = Vec::new();
    for d in deliveries {
        ids.push(s.ingest(d).await.unwrap().inbox_id);
    }
    ids
}

#[tokio::test]
async fn concurrent_live_updates_of_one_call_leave_one_job() {
    for (name, s) in backends().await {
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move { s.ingest(live(&format!("u{i}"), "c1", 60_000)).await.unwrap() })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(s.counts().await.unwrap().queued, 1, "{name}");
        let events = s.events(None, 50).await.unwrap();
        assert_eq!(events.iter().filter(|e| e.status == "coalesced").count(), 19, "{name}");
    }
}

#[tokio::test]
async fn a_merge_points_the_merged_contacts_callers_activities_and_newest_call_at_the_survivor() {
    for (name, s) in backends().await {
        let p = PortalId::default();
        s.remember_contact(&p, &["phone:+15718308515".into()], 7).await.unwrap();
        s.remember_contact(&p, &["email:dana@example.com".into()], 3).await.unwrap();
        let record = ActivityRecord {
            source: "vapi".into(),
            key: "call-1".into(),
            kind: "call",
            activity: Activity { hubspot_id: 900, contact_id: Some(7), via: "v3".into(), stage: 3 },
            occurred_at_ms: 5_000,
        };
        s.settle(&Settlement {
            portal: p.clone(),
            activities: vec![record],
            last_calls: vec![(7, 5_000), (3, 1_000)],
            done: vec![],
        })
        .await
        .unwrap();
        s.merged_contact(&p, 7, 3).await.unwrap();
        assert_eq!(s.known_contact(&p, &["phone:+15718308515".into()]).await.unwrap(), Some(3), "{name}");
        assert_eq!(s.activity(&p, "vapi", "call-1", "call").await.unwrap().unwrap().contact_id, Some(3), "{name}");
        assert_eq!(s.last_call_at(&p, 3).await.unwrap(), Some(5_000), "{name}: the newer call wins");
        assert_eq!(s.last_call_at(&p, 7).await.unwrap(), None, "{name}");
    }
}

#[tokio::test]
async fn a_privacy_erase_takes_everything_of_one_contact_forgotten_keys_included_and_waits_for_its_running_jobs() {
    for (name, s) in backends().await {
        let p = PortalId::default();
        s.remember_contact(&p, &["phone:+15718308515".into(), "phone:+15718300000".into()], 7).await.unwrap();
        s.remember_contact(&p, &["phone:+15715550188".into()], 8).await.unwrap();
        let erased_call = s.ingest(delivery("vapi:erased:ended", "phone:+15718308515")).await.unwrap();
        for (key, caller) in [
            ("vapi:old:ended", "phone:+15718300000"),
            ("vapi:kept:ended", "phone:+15715550188"),
            ("hubspot:1:1:1:1:7", "hubspot-contact:7"),
        ] {
            s.ingest(delivery(key, caller)).await.unwrap();
        }
        let activity = |key: &str, contact| ActivityRecord {
            source: "vapi".into(),
            key: key.into(),
            kind: "call",
            activity: Activity { hubspot_id: 900, contact_id: Some(contact), via: "v3".into(), stage: 3 },
            occurred_at_ms: 5_000,
        };
        s.settle(&Settlement {
            portal: p.clone(),
            activities: vec![activity("erased", 7), activity("kept", 8)],
            last_calls: vec![(7, 5_000), (8, 5_000)],
            done: vec![],
        })
        .await
        .unwrap();
        // The old number leaves the index (a changed number) before the erase.
        s.reindex_contact(&p, 7, &["phone:+15718308515".into()]).await.unwrap();
        assert_eq!(s.known_contact(&p, &["phone:+15718300000".into()]).await.unwrap(), None, "{name}");

        // While a job of one of its callers runs, nothing is erased.
        let running = s.claim("w", Duration::from_secs(30)).await.unwrap().unwrap();
        assert_eq!(running.inbox_id, erased_call.inbox_id, "{name}");
        let waiting = s.erase_contact(&p, 7, &["hubspot-contact:7".into()], now_ms()).await.unwrap();
        assert_eq!(waiting.waiting, 1, "{name}");
        assert_eq!(s.known_contact(&p, &["phone:+15718308515".into()]).await.unwrap(), Some(7), "{name}");
        done(&s, &[running.id]).await;

        let erased = s.erase_contact(&p, 7, &["hubspot-contact:7".into()], now_ms()).await.unwrap();
        assert_eq!(
            (erased.deliveries, erased.activities, erased.index_entries, erased.waiting),
            (3, 1, 1, 0),
            "{name}"
        );
        let keys: Vec<String> = s.events(None, 100).await.unwrap().into_iter().map(|e| e.idempotency_key).collect();
        assert_eq!(keys, ["vapi:kept:ended"], "{name}: the contact's calls, old number and HubSpot change are gone");
        assert_eq!(s.known_contact(&p, &["phone:+15718308515".into()]).await.unwrap(), None, "{name}");
        assert_eq!(s.known_contact(&p, &["phone:+15715550188".into()]).await.unwrap(), Some(8), "{name}");
        assert!(s.activity(&p, "vapi", "erased", "call").await.unwrap().is_none(), "{name}");
        assert!(s.activity(&p, "vapi", "kept", "call").await.unwrap().is_some(), "{name}");
        assert_eq!(s.last_call_at(&p, 7).await.unwrap(), None, "{name}");
        let again = s.erase_contact(&p, 7, &["hubspot-contact:7".into()], now_ms()).await.unwrap();
        assert_eq!(again, callbridge_store::Erased::default(), "{name}: a second erase finds nothing");
    }
}

#[tokio::test]
async fn rejections_are_listed_newest_first_and_only_the_newest_are_kept() {
    for (name, s) in backends().await {
        for i in 0..250i64 {
            let r = callbridge_store::Rejection {
                id: 0,
                portal: (i % 2 == 0).then(|| "acme".to_string()),
                route: "/webhooks/retell".into(),
                reason: "unauthorized".into(),
                detail: format!("attempt {i}"),
                status: 401,
                size: Some(i),
                peer: Some("127.0.0.1".into()),
                at_ms: 1_000 + i,
            };
            s.record_rejection(&r, 120).await.unwrap();
        }
        let all = s.rejections(1_000).await.unwrap();
        // The 200th pruned everything but its newest 120; the 50 after it were added.
        assert_eq!(all.len(), 170, "{name}");
        assert_eq!((all[0].detail.as_str(), all[0].size, all[0].portal.as_deref()), ("attempt 249", Some(249), None));
        assert_eq!(all[1].portal.as_deref(), Some("acme"), "{name}");
        assert!(all.windows(2).all(|w| w[0].id > w[1].id), "{name}: newest first");
        assert_eq!(s.rejections(3).await.unwrap().len(), 3, "{name}");
    }
}

#[tokio::test]
async fn every_way_a_delivery_is_stored_packs_its_body_and_reads_it_back_as_received() {
    let path = std::env::temp_dir().join(format!("callbridge-packed-{:x}.db", fastrand::u64(..)));
    let urls = [Some(format!("sqlite://{}", path.display())), postgres_database().await];
    for url in urls.into_iter().flatten() {
        let name = url.split(':').next().unwrap_or_default().to_string();
        let s = callbridge_store::open(&url).await.unwrap();
        let portal = PortalId::default();
        let body = br#"{"role":"user","message":"I would like to book for Tuesday"},"#.repeat(200);
        let with = |key: &str, raw: &[u8]| NewDelivery { raw_body: raw.to_vec(), ..delivery(key, "+14155550100") };
        // A webhook, an agent's booking and its change: the three ways a body reaches the inbox.
        let ingested = s.ingest(with("k", &body)).await.unwrap().inbox_id;
        let at = 1_900_000_000_000;
        let Booked::New(booked) = s.book(&booking("b", "+14155550100", at, 30), with("b", b"{}")).await.unwrap() else {
            panic!("{name}: the slot is free")
        };
        let moved = BookingChange {
            start_ms: at + 3_600_000,
            end_ms: at + 5_400_000,
            status: BookingStatus::Rescheduled,
            line: "moved".into(),
        };
        s.change_booking(&portal, "b", &moved, with("b:move", &body)).await.unwrap().unwrap();
        let rows: Vec<(Option<String>, i64)> = if name == "sqlite" {
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            sqlx::query_as("SELECT raw_codec, length(raw_body) FROM inbox ORDER BY id").fetch_all(&pool).await.unwrap()
        } else {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            let rows: Vec<(Option<String>, i32)> =
                sqlx::query_as("SELECT raw_codec, octet_length(raw_body) FROM inbox ORDER BY id")
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            rows.into_iter().map(|(c, n)| (c, n as i64)).collect()
        };
        assert_eq!(rows.len(), 3, "{name}");
        assert!(rows.iter().all(|(codec, _)| codec.as_deref() == Some("lz4")), "{name}: {rows:?}");
        assert!(rows[0].1 < body.len() as i64 / 4 && rows[2].1 < body.len() as i64 / 4, "{name}: {rows:?}");
        assert_eq!(s.event(ingested).await.unwrap().unwrap().raw_body, body, "{name}");
        assert_eq!(s.event(booked).await.unwrap().unwrap().raw_body, b"{}", "{name}");
        assert_eq!(s.event(booked + 1).await.unwrap().unwrap().raw_body, body, "{name}");
    }
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// Two instances on one PostgreSQL database: a job one stores wakes the other's workers, for a
/// group of plain deliveries, a live update and a booking alike (each announced once its
/// transaction has committed, from outside it).
#[tokio::test]
async fn a_job_stored_by_one_instance_wakes_the_workers_of_another() {
    let Some(url) = postgres_database().await else { return };
    let (storing, waiting) = (callbridge_store::open(&url).await.unwrap(), callbridge_store::open(&url).await.unwrap());
    let wake = Arc::new(tokio::sync::Notify::new());
    waiting.subscribe(wake.clone());
    // The listener connects on its own task: store until one is heard, up to a bound.
    let heard = |kind: &'static str| {
        let (storing, wake) = (storing.clone(), wake.clone());
        async move {
            for attempt in 0..20 {
                let notified = wake.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let key = format!("{kind}-{attempt}");
                match kind {
                    "live" => {
                        storing.ingest(live(&key, &key, 60_000)).await.unwrap();
                    }
                    "booking" => {
                        let slot = booking(&key, "+14155550100", 1_900_000_000_000 + attempt as i64 * 3_600_000, 30);
                        assert!(matches!(storing.book(&slot, delivery(&key, &key)).await.unwrap(), Booked::New(_)));
                    }
                    _ => {
                        storing.ingest(delivery(&key, &key)).await.unwrap();
                    }
                }
                if tokio::time::timeout(Duration::from_millis(500), notified).await.is_ok() {
                    return true;
                }
            }
            false
        }
    };
    assert!(heard("plain").await, "a plain delivery's job is announced");
    assert!(heard("live").await, "a live update's job is announced");
    assert!(heard("booking").await, "a booking's job is announced");
}

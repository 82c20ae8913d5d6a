//! The conformance suite of the [`Bus`] port: one set of cases, run against
//! every adapter (`conformance_nats.rs`, `conformance_memory.rs`), so the
//! cluster and single-machine deployments cannot drift apart.
//!
//! A case gets a fresh bus (its own server, or its own in-process bus) in
//! namespace [`NS`] with the topology set up, unless it says otherwise.
//! Every wait is bounded. Redelivery timings only get lower bounds (a slow
//! machine makes them later, never earlier).

use bytes::Bytes;
use clawhive_bus::{
    Bus, BusError, BusMessage, Consumer, ConsumerSpec, Delivery, PublishOutcome, StreamKind, Subscription,
};
use futures::StreamExt;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::timeout;

pub const NS: &str = "testns";
/// Upper bound on any wait for something that should happen.
const WAIT: Duration = Duration::from_secs(10);
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// Generates one `#[tokio::test]` per case. `$setup()` returns `(guard, Arc<dyn Bus>)`
/// with the topology set up; `$fresh(n)` returns `(guard, n buses on one backend)`
/// without it. The guard (a server, or `()`) lives as long as the test.
macro_rules! conformance_suite {
    ($setup:path, $fresh:path) => {
        conformance_suite!(@cases $setup;
            duplicate_message_id_is_dropped,
            durable_publish_to_a_subject_no_stream_captures_is_an_error,
            a_consumer_group_delivers_each_message_to_one_member,
            an_unacked_message_comes_back_after_ack_wait,
            in_progress_holds_off_redelivery,
            nak_redelivers_after_the_delay,
            max_deliver_bounds_the_attempts,
            a_terminated_message_never_comes_back,
            max_ack_pending_bounds_what_a_group_holds,
            an_acked_request_is_gone_for_good,
            a_filtered_consumer_gets_only_its_subjects,
            a_work_queue_refuses_overlapping_groups,
            a_new_group_on_a_limits_stream_starts_at_the_first_message,
            a_live_subscriber_sees_durable_and_ephemeral_publishes,
            headers_round_trip_through_a_consumer,
            a_bad_consumer_spec_is_refused,
            a_stream_reads_by_start_time_and_filter_without_consuming,
        );

        #[tokio::test]
        async fn topology_is_idempotent() {
            let (_guard, buses) = $fresh(4).await;
            conformance::topology_is_idempotent(buses).await;
        }
    };
    (@cases $setup:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (_guard, bus) = $setup().await;
                conformance::$case(bus).await;
            }
        )*
    };
}

fn spec(durable: &str, ack_wait: Duration, max_deliver: i64) -> ConsumerSpec {
    ConsumerSpec {
        stream: StreamKind::Requests,
        durable: durable.into(),
        filter_subject: format!("{NS}.req.>"),
        ack_wait,
        max_deliver,
        max_ack_pending: 100,
    }
}

fn request_subject() -> String {
    format!("{NS}.req.acme.default")
}

async fn publish_to(bus: &Arc<dyn Bus>, subject: &str, id: &str) {
    let outcome = bus
        .publish_durable(subject, id, vec![("traceparent".into(), TRACEPARENT.into())], Bytes::from(id.to_string()))
        .await
        .expect("durable publish");
    assert_eq!(outcome, PublishOutcome::Stored);
}

async fn publish(bus: &Arc<dyn Bus>, id: &str) {
    publish_to(bus, &request_subject(), id).await;
}

async fn next(consumer: &mut Box<dyn Consumer>) -> Delivery {
    timeout(WAIT, consumer.next())
        .await
        .expect("a delivery within the wait")
        .expect("the consumer is open")
        .expect("the delivery is good")
}

/// Asserts that nothing is delivered for `quiet`.
async fn nothing_for(consumer: &mut Box<dyn Consumer>, quiet: Duration) {
    if let Ok(got) = timeout(quiet, consumer.next()).await {
        panic!("expected no delivery for {quiet:?}, got {got:?}");
    }
}

async fn receive(sub: &mut Subscription) -> BusMessage {
    timeout(WAIT, sub.next()).await.expect("a message within the wait").expect("subscription open")
}

fn text(d: &Delivery) -> String {
    String::from_utf8(d.message.payload.to_vec()).unwrap()
}

/// `ensure_topology` from several replicas at once, and again, is fine; then
/// every stream takes publishes.
pub async fn topology_is_idempotent(buses: Vec<Arc<dyn Bus>>) {
    let results = futures::future::join_all(buses.iter().map(|b| b.ensure_topology())).await;
    for r in results {
        r.expect("concurrent ensure_topology");
    }
    buses[0].ensure_topology().await.expect("second call");
    buses[0].ensure_topology().await.expect("third call");
    let bus = &buses[buses.len() - 1];
    for subject in [request_subject(), format!("{NS}.reply.gw.x"), format!("{NS}.audit.acme")] {
        publish_to(bus, &subject, &format!("id-{subject}")).await;
    }
    bus.health().await.expect("healthy");
}

pub async fn duplicate_message_id_is_dropped(bus: Arc<dyn Bus>) {
    let subject = request_subject();
    let first = bus.publish_durable(&subject, "req-1", vec![], Bytes::from_static(b"a")).await.unwrap();
    let again = bus.publish_durable(&subject, "req-1", vec![], Bytes::from_static(b"a")).await.unwrap();
    let other = bus.publish_durable(&subject, "req-2", vec![], Bytes::from_static(b"b")).await.unwrap();
    assert_eq!((first, again, other), (PublishOutcome::Stored, PublishOutcome::Duplicate, PublishOutcome::Stored));

    // Exactly two were stored.
    let mut c = bus.consume(spec("w", Duration::from_secs(30), -1)).await.unwrap();
    for want in ["a", "b"] {
        let d = next(&mut c).await;
        assert_eq!((text(&d).as_str(), d.attempt), (want, 1));
        d.acker.ack().await.unwrap();
    }
    nothing_for(&mut c, Duration::from_millis(1000)).await;

    // Still a duplicate after the first copy was acked and removed.
    let late = bus.publish_durable(&subject, "req-1", vec![], Bytes::from_static(b"a")).await.unwrap();
    assert_eq!(late, PublishOutcome::Duplicate);
    nothing_for(&mut c, Duration::from_millis(500)).await;

    let err = bus.publish_durable(&subject, "", vec![], Bytes::new()).await.unwrap_err();
    assert!(matches!(err, BusError::Publish(_)));
    let err =
        bus.publish_durable(&subject, "x", vec![("bad:name".into(), "v".into())], Bytes::new()).await.unwrap_err();
    assert!(matches!(err, BusError::Publish(_)));
    let err = bus
        .publish_durable(&subject, "y", vec![("name".into(), "line\r\nbreak".into())], Bytes::new())
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::Publish(_)));
}

/// No stream captures deltas: a durable publish there is an error, not a silent drop.
pub async fn durable_publish_to_a_subject_no_stream_captures_is_an_error(bus: Arc<dyn Bus>) {
    for subject in [format!("{NS}.delta.gw.x"), "elsewhere.req.acme.default".to_string()] {
        let err = bus.publish_durable(&subject, "d-1", vec![], Bytes::new()).await.unwrap_err();
        assert!(matches!(&err, BusError::Publish(m) if m.contains("no stream")), "{err}");
    }
    // Ephemeral publishes there are fine (nobody needs to listen).
    bus.publish_ephemeral(&format!("{NS}.delta.gw.x"), vec![], Bytes::new()).await.unwrap();
}

pub async fn a_consumer_group_delivers_each_message_to_one_member(bus: Arc<dyn Bus>) {
    let spec = spec("workers", Duration::from_secs(30), 4);
    let mut a = bus.consume(spec.clone()).await.unwrap();
    let mut b = bus.consume(spec).await.unwrap();
    let all: BTreeSet<String> = (0..20).map(|i| format!("m{i:02}")).collect();
    for id in &all {
        publish(&bus, id).await;
    }

    // A holds one without acking; B must get another one, not the same.
    let held = next(&mut a).await;
    let from_b = next(&mut b).await;
    assert_ne!(text(&held), text(&from_b), "both members got the same message");
    from_b.acker.ack().await.unwrap();

    // Both drain the rest concurrently.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for (name, mut member) in [("a", a), ("b", b)] {
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(d)) = member.next().await {
                d.acker.ack().await.unwrap();
                let _ = tx.send((name, text(&d)));
            }
        }));
    }
    let mut seen = vec![text(&held), text(&from_b)];
    while seen.len() < all.len() {
        let (_member, id) = timeout(WAIT, rx.recv()).await.expect("the rest arrive").unwrap();
        seen.push(id);
    }
    // Nothing more: no message went to both members.
    assert!(timeout(Duration::from_millis(1500), rx.recv()).await.is_err(), "an extra delivery");
    for t in tasks {
        t.abort();
    }
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "duplicates in {seen:?}");
    assert_eq!(unique, all);
    held.acker.ack().await.unwrap();
}

pub async fn an_unacked_message_comes_back_after_ack_wait(bus: Arc<dyn Bus>) {
    let mut c = bus.consume(spec("w", Duration::from_secs(1), -1)).await.unwrap();
    publish(&bus, "r1").await;
    let first = next(&mut c).await;
    assert_eq!(first.attempt, 1);
    let started = Instant::now();
    let again = next(&mut c).await;
    assert_eq!(text(&again), "r1");
    assert_eq!(again.attempt, 2);
    assert!(started.elapsed() >= Duration::from_millis(800), "redelivered before ack_wait: {:?}", started.elapsed());
    again.acker.ack().await.unwrap();
    nothing_for(&mut c, Duration::from_millis(2500)).await;
}

pub async fn in_progress_holds_off_redelivery(bus: Arc<dyn Bus>) {
    let mut c = bus.consume(spec("w", Duration::from_secs(1), -1)).await.unwrap();
    publish(&bus, "r1").await;
    let first = next(&mut c).await;

    // Heartbeats from another task, through a shared acker.
    let acker = Arc::clone(&first.acker);
    let beating = tokio::spawn(async move {
        loop {
            acker.in_progress().await.expect("in_progress");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    nothing_for(&mut c, Duration::from_secs(3)).await;
    beating.abort();

    // Without heartbeats it comes back: they were what held it.
    let again = next(&mut c).await;
    assert_eq!((text(&again).as_str(), again.attempt), ("r1", 2));
    again.acker.ack().await.unwrap();
}

pub async fn nak_redelivers_after_the_delay(bus: Arc<dyn Bus>) {
    let mut c = bus.consume(spec("w", Duration::from_secs(30), -1)).await.unwrap();
    publish(&bus, "r1").await;
    let first = next(&mut c).await;
    first.acker.nak(Some(Duration::from_millis(1500))).await.unwrap();
    let started = Instant::now();
    let second = next(&mut c).await;
    assert!(started.elapsed() >= Duration::from_millis(1200), "redelivered before the delay: {:?}", started.elapsed());
    assert_eq!((text(&second).as_str(), second.attempt), ("r1", 2));

    // Without a delay it comes back at once, long before the 30 s ack_wait.
    second.acker.nak(None).await.unwrap();
    let third = next(&mut c).await;
    assert_eq!(third.attempt, 3);
    third.acker.ack().await.unwrap();
}

pub async fn max_deliver_bounds_the_attempts(bus: Arc<dyn Bus>) {
    let mut c = bus.consume(spec("w", Duration::from_secs(1), 2)).await.unwrap();
    publish(&bus, "r1").await;
    assert_eq!(next(&mut c).await.attempt, 1);
    assert_eq!(next(&mut c).await.attempt, 2);
    nothing_for(&mut c, Duration::from_secs(3)).await;

    // The consumer still serves new messages.
    publish(&bus, "r2").await;
    let d = next(&mut c).await;
    assert_eq!((text(&d).as_str(), d.attempt), ("r2", 1));
    d.acker.ack().await.unwrap();
}

pub async fn a_terminated_message_never_comes_back(bus: Arc<dyn Bus>) {
    let mut c = bus.consume(spec("w", Duration::from_secs(1), -1)).await.unwrap();
    publish(&bus, "r1").await;
    next(&mut c).await.acker.term().await.unwrap();
    nothing_for(&mut c, Duration::from_millis(2500)).await;

    publish(&bus, "r2").await;
    let d = next(&mut c).await;
    assert_eq!((text(&d).as_str(), d.attempt), ("r2", 1));
    d.acker.ack().await.unwrap();
}

/// With `max_ack_pending` = 1 a group holds one unacked message at a time,
/// across its members.
pub async fn max_ack_pending_bounds_what_a_group_holds(bus: Arc<dyn Bus>) {
    let spec = ConsumerSpec { max_ack_pending: 1, ..spec("w", Duration::from_secs(30), -1) };
    let mut a = bus.consume(spec.clone()).await.unwrap();
    let mut b = bus.consume(spec).await.unwrap();
    publish(&bus, "r1").await;
    publish(&bus, "r2").await;
    let first = next(&mut a).await;
    assert_eq!(text(&first), "r1");
    nothing_for(&mut b, Duration::from_millis(1500)).await;
    first.acker.ack().await.unwrap();
    let second = next(&mut b).await;
    assert_eq!((text(&second).as_str(), second.attempt), ("r2", 1));
    second.acker.ack().await.unwrap();
}

/// The request stream is a work queue: an acked message is gone, also for a
/// member that joins the durable later.
pub async fn an_acked_request_is_gone_for_good(bus: Arc<dyn Bus>) {
    let mut c = bus.consume(spec("w", Duration::from_secs(1), -1)).await.unwrap();
    publish(&bus, "r1").await;
    next(&mut c).await.acker.ack().await.unwrap();
    drop(c);
    let mut again = bus.consume(spec("w", Duration::from_secs(1), -1)).await.unwrap();
    nothing_for(&mut again, Duration::from_millis(1500)).await;
}

pub async fn a_filtered_consumer_gets_only_its_subjects(bus: Arc<dyn Bus>) {
    let acme = ConsumerSpec { filter_subject: format!("{NS}.req.acme.*"), ..spec("acme", Duration::from_secs(30), -1) };
    let other =
        ConsumerSpec { filter_subject: format!("{NS}.req.other.>"), ..spec("other", Duration::from_secs(30), -1) };
    let mut acme = bus.consume(acme).await.unwrap();
    let mut other = bus.consume(other).await.unwrap();
    publish_to(&bus, &format!("{NS}.req.other.x"), "o1").await;
    publish_to(&bus, &format!("{NS}.req.acme.default"), "a1").await;
    publish_to(&bus, &format!("{NS}.req.other.y"), "o2").await;
    let d = next(&mut acme).await;
    assert_eq!((d.message.subject.clone(), text(&d)), (format!("{NS}.req.acme.default"), "a1".to_string()));
    d.acker.ack().await.unwrap();
    for want in ["o1", "o2"] {
        let d = next(&mut other).await;
        assert_eq!(text(&d), want);
        d.acker.ack().await.unwrap();
    }
    nothing_for(&mut acme, Duration::from_millis(1000)).await;
}

/// Two groups on the work queue whose filters overlap would race for the
/// same requests; JetStream refuses the second one.
pub async fn a_work_queue_refuses_overlapping_groups(bus: Arc<dyn Bus>) {
    bus.consume(spec("workers", Duration::from_secs(30), -1)).await.unwrap();
    let overlapping =
        ConsumerSpec { filter_subject: format!("{NS}.req.acme.*"), ..spec("others", Duration::from_secs(30), -1) };
    let err = bus.consume(overlapping).await.err().expect("refused");
    assert!(matches!(err, BusError::Consume(_)), "{err}");
    // Another member of the same group is fine.
    bus.consume(spec("workers", Duration::from_secs(30), -1)).await.unwrap();
}

/// Replies are kept (limits retention): each group reads all of them from the first.
pub async fn a_new_group_on_a_limits_stream_starts_at_the_first_message(bus: Arc<dyn Bus>) {
    let subject = format!("{NS}.reply.gw.x");
    for id in ["f1", "f2", "f3"] {
        publish_to(&bus, &subject, id).await;
    }
    for durable in ["g1", "g2"] {
        let spec = ConsumerSpec {
            stream: StreamKind::Replies,
            filter_subject: format!("{NS}.reply.gw.*"),
            ..spec(durable, Duration::from_secs(30), -1)
        };
        let mut c = bus.consume(spec).await.unwrap();
        for want in ["f1", "f2", "f3"] {
            let d = next(&mut c).await;
            assert_eq!((text(&d).as_str(), d.attempt), (want, 1), "group {durable}");
            d.acker.ack().await.unwrap();
        }
        nothing_for(&mut c, Duration::from_millis(500)).await;
    }
}

pub async fn a_live_subscriber_sees_durable_and_ephemeral_publishes(bus: Arc<dyn Bus>) {
    let reply = format!("{NS}.reply.gw.x");
    let delta = format!("{NS}.delta.gw.x");
    let mut replies = bus.subscribe(&reply).await.unwrap();
    let mut everything = bus.subscribe(&format!("{NS}.>")).await.unwrap();
    let mut gateway = bus.subscribe(&format!("{NS}.*.gw.*")).await.unwrap();
    let mut deltas = bus.subscribe(&delta).await.unwrap();
    let mut elsewhere = bus.subscribe(&format!("{NS}.reply.slack.*")).await.unwrap();
    let trace = vec![("traceparent".to_string(), TRACEPARENT.to_string())];

    bus.publish_ephemeral(&delta, trace.clone(), Bytes::from_static(b"partial")).await.unwrap();
    assert_eq!(
        bus.publish_durable(&reply, "reply:1", trace.clone(), Bytes::from_static(b"final")).await.unwrap(),
        PublishOutcome::Stored
    );

    let d = receive(&mut deltas).await;
    assert_eq!((d.subject.as_str(), &d.payload[..]), (delta.as_str(), &b"partial"[..]));
    assert_eq!(d.header("traceparent"), Some(TRACEPARENT));
    let r = receive(&mut replies).await;
    assert_eq!((r.subject.as_str(), &r.payload[..]), (reply.as_str(), &b"final"[..]));
    assert_eq!(r.header("traceparent"), Some(TRACEPARENT));
    for sub in [&mut everything, &mut gateway] {
        let mut subjects = BTreeSet::new();
        subjects.insert(receive(sub).await.subject);
        subjects.insert(receive(sub).await.subject);
        assert_eq!(subjects, BTreeSet::from([reply.clone(), delta.clone()]));
    }
    if let Ok(got) = timeout(Duration::from_millis(500), elsewhere.next()).await {
        panic!("a non-matching subscription got {got:?}");
    }
}

pub async fn headers_round_trip_through_a_consumer(bus: Arc<dyn Bus>) {
    let mut c = bus.consume(spec("w", Duration::from_secs(30), -1)).await.unwrap();
    let headers =
        vec![("traceparent".to_string(), TRACEPARENT.to_string()), ("x-tenant".to_string(), "acme".to_string())];
    bus.publish_durable(&request_subject(), "req-9", headers, Bytes::from_static(b"hi")).await.unwrap();
    let d = next(&mut c).await;
    assert_eq!(d.message.subject, request_subject());
    assert_eq!(d.message.header("traceparent"), Some(TRACEPARENT));
    assert_eq!(d.message.header("X-Tenant"), Some("acme"));
    assert_eq!(d.message.header("Nats-Msg-Id"), Some("req-9"));
    assert_eq!(&d.message.payload[..], b"hi");
    d.acker.ack().await.unwrap();
}

pub async fn a_bad_consumer_spec_is_refused(bus: Arc<dyn Bus>) {
    let err = bus.consume(spec("a.b", Duration::from_secs(1), -1)).await.err().expect("refused");
    assert!(matches!(err, BusError::Consume(_)));
    let err = bus.consume(spec("w", Duration::ZERO, -1)).await.err().expect("refused");
    assert!(matches!(err, BusError::Consume(_)));
    // A filter outside the stream would never deliver; it is refused.
    let outside = ConsumerSpec { filter_subject: format!("{NS}.reply.>"), ..spec("w", Duration::from_secs(1), -1) };
    let err = bus.consume(outside).await.err().expect("refused");
    assert!(matches!(err, BusError::Consume(_)), "{err}");
}

/// `read_stream` returns stored messages from a start time on, filtered, bounded,
/// oldest first, and leaves nothing behind: reading again gives the same.
pub async fn a_stream_reads_by_start_time_and_filter_without_consuming(bus: Arc<dyn Bus>) {
    let (acme, globex) = (format!("{NS}.audit.acme"), format!("{NS}.audit.globex"));
    for id in ["a1", "a2"] {
        publish_to(&bus, &acme, id).await;
    }
    publish_to(&bus, &globex, "g1").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let middle = clawhive_core::time::now_unix_ms();
    tokio::time::sleep(Duration::from_millis(50)).await;
    publish_to(&bus, &acme, "a3").await;

    let texts = |msgs: &[clawhive_bus::StoredMessage]| -> Vec<String> {
        msgs.iter().map(|m| String::from_utf8(m.message.payload.to_vec()).unwrap()).collect()
    };
    let all = bus.read_stream(StreamKind::Audit, &acme, 0, 100).await.unwrap();
    assert_eq!(texts(&all), ["a1", "a2", "a3"]);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq && w[0].stored_unix_ms <= w[1].stored_unix_ms));
    assert!(all.iter().all(|m| m.message.subject == acme));
    assert_eq!(all[0].message.header("traceparent"), Some(TRACEPARENT));
    assert_eq!(texts(&bus.read_stream(StreamKind::Audit, &acme, middle, 100).await.unwrap()), ["a3"]);
    assert_eq!(texts(&bus.read_stream(StreamKind::Audit, &acme, 0, 2).await.unwrap()), ["a1", "a2"]);
    assert_eq!(texts(&bus.read_stream(StreamKind::Audit, &format!("{NS}.audit.*"), 0, 100).await.unwrap()).len(), 4);
    assert!(bus.read_stream(StreamKind::Audit, &format!("{NS}.audit.nobody"), 0, 100).await.unwrap().is_empty());
    assert!(bus.read_stream(StreamKind::Audit, &acme, 0, 0).await.unwrap().is_empty());
    // Nothing was consumed.
    assert_eq!(texts(&bus.read_stream(StreamKind::Audit, &acme, 0, 100).await.unwrap()), ["a1", "a2", "a3"]);
}

//! The NATS adapter against a real `nats-server -js`, one server per test.
//!
//! Every wait is bounded. Redelivery timings only get lower bounds (a slow
//! machine makes them later, never earlier).

use bytes::Bytes;
use clawhive_bus::nats::NatsBus;
use clawhive_bus::{
    Bus, BusError, BusMessage, Consumer, ConsumerSpec, Delivery, PublishOutcome, StreamKind, Subscription,
};
use clawhive_core::config::BusConfig;
use clawhive_tests::nats_server::NatsServer;
use futures::StreamExt;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::timeout;

const NS: &str = "testns";
/// Upper bound on any wait for something that should happen.
const WAIT: Duration = Duration::from_secs(10);
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn config(server: &NatsServer) -> BusConfig {
    BusConfig { nats_url: server.url(), namespace: NS.into(), ..BusConfig::default() }
}

async fn setup() -> (NatsServer, NatsBus) {
    let server = NatsServer::start().expect("nats-server starts");
    let bus = NatsBus::connect(&config(&server)).await.expect("bus connects");
    bus.ensure_topology().await.expect("topology");
    (server, bus)
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

async fn publish(bus: &NatsBus, id: &str) {
    let outcome = bus
        .publish_durable(
            &request_subject(),
            id,
            vec![("traceparent".into(), TRACEPARENT.into())],
            Bytes::from(id.to_string()),
        )
        .await
        .expect("durable publish");
    assert_eq!(outcome, PublishOutcome::Stored);
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

async fn stream_info(server: &NatsServer, kind: StreamKind) -> async_nats::jetstream::stream::Info {
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let name = clawhive_bus::Subjects::new(NS).stream_name(kind);
    js.get_stream(&name).await.unwrap().info().await.unwrap().clone()
}

#[tokio::test]
async fn topology_is_idempotent_also_when_replicas_race() {
    use async_nats::jetstream::stream::{RetentionPolicy, StorageType};
    let server = NatsServer::start().unwrap();
    let mut buses = Vec::new();
    for _ in 0..4 {
        buses.push(NatsBus::connect(&config(&server)).await.unwrap());
    }
    let results = futures::future::join_all(buses.iter().map(|b| b.ensure_topology())).await;
    for r in results {
        r.expect("concurrent ensure_topology");
    }
    buses[0].ensure_topology().await.expect("second call");
    buses[0].ensure_topology().await.expect("third call");

    let req = stream_info(&server, StreamKind::Requests).await;
    assert_eq!(req.config.subjects, vec![format!("{NS}.req.>")]);
    assert_eq!(req.config.retention, RetentionPolicy::WorkQueue);
    assert_eq!(req.config.storage, StorageType::File);
    assert_eq!(req.config.duplicate_window, Duration::from_millis(BusConfig::default().duplicate_window_ms));
    let replies = stream_info(&server, StreamKind::Replies).await;
    assert_eq!(replies.config.name, "TESTNS_REPLIES");
    assert_eq!(replies.config.subjects, vec![format!("{NS}.reply.>")]);
    assert_eq!(replies.config.retention, RetentionPolicy::Limits);
    assert_eq!(replies.config.max_age, Duration::from_secs(24 * 3600));
    let audit = stream_info(&server, StreamKind::Audit).await;
    assert_eq!(audit.config.subjects, vec![format!("{NS}.audit.>")]);
    assert_eq!(audit.config.max_age, Duration::from_secs(30 * 24 * 3600));

    // A changed setting reaches the existing stream (create-or-update, not get-or-create).
    let changed = NatsBus::connect(&BusConfig { duplicate_window_ms: 30_000, ..config(&server) }).await.unwrap();
    changed.ensure_topology().await.unwrap();
    let req = stream_info(&server, StreamKind::Requests).await;
    assert_eq!(req.config.duplicate_window, Duration::from_secs(30));
}

#[tokio::test]
async fn durable_publish_drops_a_repeated_message_id() {
    let (server, bus) = setup().await;
    let subject = request_subject();
    let first = bus.publish_durable(&subject, "req-1", vec![], Bytes::from_static(b"a")).await.unwrap();
    let again = bus.publish_durable(&subject, "req-1", vec![], Bytes::from_static(b"a")).await.unwrap();
    let other = bus.publish_durable(&subject, "req-2", vec![], Bytes::from_static(b"b")).await.unwrap();
    assert_eq!((first, again, other), (PublishOutcome::Stored, PublishOutcome::Duplicate, PublishOutcome::Stored));
    assert_eq!(stream_info(&server, StreamKind::Requests).await.state.messages, 2);

    // No stream captures deltas: a durable publish there is an error, not a silent drop.
    let err = bus.publish_durable(&format!("{NS}.delta.gw.x"), "d-1", vec![], Bytes::new()).await.unwrap_err();
    assert!(matches!(&err, BusError::Publish(m) if m.contains("no stream")), "{err}");
    let err = bus.publish_durable(&subject, "", vec![], Bytes::new()).await.unwrap_err();
    assert!(matches!(err, BusError::Publish(_)));
    let err =
        bus.publish_durable(&subject, "x", vec![("bad:name".into(), "v".into())], Bytes::new()).await.unwrap_err();
    assert!(matches!(err, BusError::Publish(_)));
}

#[tokio::test]
async fn a_consumer_group_delivers_each_message_to_one_member() {
    let (_server, bus) = setup().await;
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

#[tokio::test]
async fn an_unacked_message_comes_back_after_ack_wait() {
    let (_server, bus) = setup().await;
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

#[tokio::test]
async fn in_progress_heartbeats_hold_off_redelivery() {
    let (_server, bus) = setup().await;
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

#[tokio::test]
async fn nak_redelivers_after_the_delay() {
    let (_server, bus) = setup().await;
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

#[tokio::test]
async fn max_deliver_bounds_the_attempts() {
    let (_server, bus) = setup().await;
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

#[tokio::test]
async fn a_terminated_message_never_comes_back() {
    let (_server, bus) = setup().await;
    let mut c = bus.consume(spec("w", Duration::from_secs(1), -1)).await.unwrap();
    publish(&bus, "r1").await;
    next(&mut c).await.acker.term().await.unwrap();
    nothing_for(&mut c, Duration::from_millis(2500)).await;

    publish(&bus, "r2").await;
    let d = next(&mut c).await;
    assert_eq!((text(&d).as_str(), d.attempt), ("r2", 1));
    d.acker.ack().await.unwrap();
}

#[tokio::test]
async fn a_core_subscriber_sees_durable_and_ephemeral_publishes() {
    let (_server, bus) = setup().await;
    let reply = format!("{NS}.reply.gw.x");
    let delta = format!("{NS}.delta.gw.x");
    let mut replies = bus.subscribe(&reply).await.unwrap();
    let mut everything = bus.subscribe(&format!("{NS}.>")).await.unwrap();
    let mut deltas = bus.subscribe(&delta).await.unwrap();
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
    let mut subjects = BTreeSet::new();
    subjects.insert(receive(&mut everything).await.subject);
    subjects.insert(receive(&mut everything).await.subject);
    assert_eq!(subjects, BTreeSet::from([reply, delta]));
}

#[tokio::test]
async fn headers_round_trip_through_a_consumer() {
    let (_server, bus) = setup().await;
    let mut c = bus.consume(spec("w", Duration::from_secs(30), -1)).await.unwrap();
    let headers =
        vec![("traceparent".to_string(), TRACEPARENT.to_string()), ("x-tenant".to_string(), "acme".to_string())];
    bus.publish_durable(&request_subject(), "req-9", headers, Bytes::from_static(b"hi")).await.unwrap();
    let d = next(&mut c).await;
    assert_eq!(d.message.subject, request_subject());
    assert_eq!(d.message.header("traceparent"), Some(TRACEPARENT));
    assert_eq!(d.message.header("X-Tenant"), Some("acme"));
    assert_eq!(d.message.header("Nats-Msg-Id"), Some("req-9"));
    d.acker.ack().await.unwrap();
}

#[tokio::test]
async fn a_consumer_survives_a_server_restart() {
    let (mut server, bus) = setup().await;
    let mut c = bus.consume(spec("w", Duration::from_secs(5), -1)).await.unwrap();
    bus.health().await.expect("healthy at first");

    server.stop();
    let deadline = Instant::now() + WAIT;
    while bus.health().await.is_ok() {
        assert!(Instant::now() < deadline, "health stayed ok with the server down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.restart().unwrap();

    // The client reconnects on its own; publish once it has.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match bus.publish_durable(&request_subject(), "after", vec![], Bytes::from_static(b"after")).await {
            Ok(_) => break,
            Err(e) => {
                assert!(Instant::now() < deadline, "no reconnect: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let d = timeout(Duration::from_secs(30), c.next()).await.expect("delivery after restart").unwrap().unwrap();
    assert_eq!(text(&d), "after");
    d.acker.ack().await.unwrap();
    bus.health().await.expect("healthy again");
}

#[tokio::test]
async fn a_consumer_rebinds_when_its_stream_is_deleted_behind_its_back() {
    let (server, bus) = setup().await;
    let mut c = bus.consume(spec("w", Duration::from_secs(5), -1)).await.unwrap();
    let waiting = tokio::spawn(async move {
        let d = c.next().await;
        (c, d.map(|r| r.map(|d| text(&d))))
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
    js.delete_stream(clawhive_bus::Subjects::new(NS).stream_name(StreamKind::Requests)).await.unwrap();

    // The member notices, re-creates the stream and its durable; then publishes land again.
    let deadline = Instant::now() + WAIT;
    while bus.publish_durable(&request_subject(), "again", vec![], Bytes::from_static(b"again")).await.is_err() {
        assert!(Instant::now() < deadline, "the stream was not re-created");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_c, got) = timeout(WAIT, waiting).await.expect("delivery after re-bind").unwrap();
    assert_eq!(got.expect("consumer open").expect("good delivery"), "again");
}

#[tokio::test]
async fn closing_the_bus_ends_its_consumers() {
    let (_server, bus) = setup().await;
    let mut c = bus.consume(spec("w", Duration::from_secs(5), -1)).await.unwrap();
    let waiting = tokio::spawn(async move { c.next().await.map(|r| r.map(|d| d.attempt)) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    bus.close().await.unwrap();
    let ended = timeout(WAIT, waiting).await.expect("next() returns after close").unwrap();
    assert!(ended.is_none(), "expected None, got {ended:?}");
}

#[tokio::test]
async fn connect_names_the_url_when_nobody_listens() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("nats://127.0.0.1:{port}");
    let err = NatsBus::connect(&BusConfig { nats_url: url.clone(), ..BusConfig::default() }).await.unwrap_err();
    assert!(matches!(&err, BusError::Connect(m) if m.contains(&url)), "{err}");
}

#[tokio::test]
async fn a_bad_consumer_spec_is_refused() {
    let (_server, bus) = setup().await;
    let err = bus.consume(spec("a.b", Duration::from_secs(1), -1)).await.err().expect("refused");
    assert!(matches!(err, BusError::Consume(_)));
    // The server would accept a filter outside the stream (and never deliver); we refuse it.
    let outside = ConsumerSpec { filter_subject: format!("{NS}.reply.>"), ..spec("w", Duration::from_secs(1), -1) };
    let err = bus.consume(outside).await.err().expect("refused");
    assert!(matches!(err, BusError::Consume(_)), "{err}");
}

//! NATS-specific behaviour of the JetStream adapter against a real
//! `nats-server -js`, one server per test: stream settings, reconnects, a
//! stream deleted behind its back, close, connect errors. The port semantics
//! both adapters share are in the conformance suite (`conformance/`).
//!
//! Every wait is bounded. Redelivery timings only get lower bounds (a slow
//! machine makes them later, never earlier).

use bytes::Bytes;
use clawhive_bus::nats::NatsBus;
use clawhive_bus::{Bus, BusError, ConsumerSpec, Delivery, StreamKind};
use clawhive_core::config::BusConfig;
use clawhive_tests::nats_server::NatsServer;
use std::time::{Duration, Instant};
use tokio::time::timeout;

const NS: &str = "testns";
/// Upper bound on any wait for something that should happen.
const WAIT: Duration = Duration::from_secs(10);

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
async fn topology_sets_up_the_streams_as_designed() {
    use async_nats::jetstream::stream::{RetentionPolicy, StorageType};
    let server = NatsServer::start().unwrap();
    // Idempotence, also when replicas race, is a conformance case; here the
    // settings JetStream got.
    let bus = NatsBus::connect(&config(&server)).await.unwrap();
    bus.ensure_topology().await.unwrap();

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

/// A member waiting for several deliveries keeps one pull open while idle; a
/// request arriving seconds later (past any idle-heartbeat period) is delivered
/// at once, and the rest of the pull keeps delivering.
#[tokio::test]
async fn a_pull_for_several_deliveries_stays_live_while_idle() {
    let (_server, bus) = setup().await;
    let mut c = bus.consume(spec("w", Duration::from_secs(30), -1)).await.unwrap();
    let waiting = tokio::spawn(async move {
        let first = c.next_up_to(4).await.unwrap().unwrap();
        let second = c.next_up_to(3).await.unwrap().unwrap();
        (text(&first), text(&second), Instant::now())
    });
    tokio::time::sleep(Duration::from_secs(4)).await;
    for (id, body) in [("a", "first"), ("b", "second")] {
        bus.publish_durable(&request_subject(), id, vec![], Bytes::from(body)).await.unwrap();
    }
    let published = Instant::now();
    let (first, second, at) = timeout(WAIT, waiting).await.expect("delivered while the pull was open").unwrap();
    assert_eq!((first.as_str(), second.as_str()), ("first", "second"));
    // Well under the 30 s ack wait a lost delivery would take to come back.
    assert!(at.duration_since(published) < Duration::from_secs(5), "took {:?}", at.duration_since(published));
}

/// Deliveries that reached a member stopping work but were not taken go back at
/// once (another member gets them), not after `ack_wait`.
#[tokio::test]
async fn a_stopping_member_hands_back_what_it_received_but_did_not_start() {
    let (_server, bus) = setup().await;
    let mut a = bus.consume(spec("w", Duration::from_secs(60), -1)).await.unwrap();
    bus.publish_durable(&request_subject(), "1", vec![], Bytes::from_static(b"one")).await.unwrap();
    // A pull for four: the first is taken, the next two arrive while it is busy.
    let first = timeout(WAIT, a.next_up_to(4)).await.expect("first").unwrap().unwrap();
    assert_eq!(text(&first), "one");
    for (id, body) in [("2", "two"), ("3", "three")] {
        bus.publish_durable(&request_subject(), id, vec![], Bytes::from(body)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.hand_back().await;
    drop(a);
    first.acker.ack().await.unwrap();

    let mut b = bus.consume(spec("w", Duration::from_secs(60), -1)).await.unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    for _ in 0..2 {
        let d = timeout(WAIT, b.next()).await.expect("handed back, not held for the 60 s ack wait").unwrap().unwrap();
        got.push(text(&d));
        d.acker.ack().await.unwrap();
    }
    got.sort();
    assert_eq!(got, ["three", "two"]);
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
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

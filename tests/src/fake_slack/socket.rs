//! The Socket Mode WebSocket: `hello` on connect, pings while not silent,
//! frames the test sends, acks recorded.

use super::Shared;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;

pub(crate) async fn upgrade(State(shared): State<Shared>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| serve(shared, socket))
}

async fn serve(shared: Shared, socket: WebSocket) {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let id = {
        let mut st = shared.lock();
        st.connections_opened += 1;
        let id = st.connections_opened;
        st.sockets.push(super::SocketEntry { id, tx, open: true, silent: false });
        st.max_open = st.max_open.max(st.sockets.iter().filter(|s| s.open).count());
        id
    };
    let silent = |shared: &Shared| shared.lock().sockets.iter().any(|s| s.id == id && s.silent);
    let (mut sink, mut stream) = socket.split();
    let hello = serde_json::json!({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A1"}});
    let _ = sink.send(Message::Text(hello.to_string().into())).await;
    let mut ping = tokio::time::interval(shared.ping_every);
    let mut down = shared.shutdown.clone();
    loop {
        tokio::select! {
            _ = down.changed() => break,
            _ = ping.tick() => {
                if !silent(&shared) && sink.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
            out = rx.recv() => match out {
                Some(text) if !silent(&shared) => {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Some(_) => {}
                None => break,
            },
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                    if let Some(env) = v.get("envelope_id").and_then(Value::as_str) {
                        let mut st = shared.lock();
                        st.acks.push((id, env.to_string()));
                        if let Some(text) = v.pointer("/payload/text").and_then(Value::as_str) {
                            st.acks.push((id, format!("answer:{text}")));
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    let mut st = shared.lock();
    if let Some(s) = st.sockets.iter_mut().find(|s| s.id == id) {
        s.open = false;
    }
}

//! Slack's Socket Mode, for the stand-in: `apps.connections.open` (in `slack`) hands out
//! `ws://127.0.0.1:<port>/link/?ticket=<n>`, and this server speaks Socket Mode on those
//! connections as Slack does: `hello` first; envelopes (`slash_commands`, `interactive`,
//! `events_api`), each with an `envelope_id`, spread over the open connections; the
//! acknowledgements read back; a `disconnect` message when told; and a connection dropped
//! without a close frame when told (a network failure). A connection told to drop leaves the
//! list of open ones at once, so nothing more is sent on it.
//!
//! Each ticket remembers the app-level token it was issued for, so the harness can `revoke` the
//! token of a process it has "killed": its connections drop and no new one opens, neither from a
//! fresh `apps.connections.open` nor from a URL it fetched before. In this test process the
//! killed bot's socket tasks (spawned by slack-morphism, not ours to abort) live on and would
//! reconnect; a dead process would not.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// Slack waits this long for an acknowledgement before it redelivers.
pub const ACK_WITHIN: Duration = Duration::from_secs(3);

#[derive(Default)]
struct Inner {
    /// The open connections, oldest first.
    links: Mutex<Vec<Link>>,
    /// Connections ever accepted.
    opened: AtomicUsize,
    /// Where to hand each envelope's acknowledgement, by envelope id.
    waiting: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    /// Every acknowledgement received, in order.
    acks: Mutex<Vec<Value>>,
    next_envelope: AtomicU64,
    next_link: AtomicUsize,
    /// The token each ticket was issued for, and the tokens revoked.
    tokens: Mutex<Tokens>,
}

#[derive(Default)]
struct Tokens {
    by_ticket: HashMap<u64, String>,
    revoked: std::collections::HashSet<String>,
    next_ticket: u64,
}

struct Link {
    id: usize,
    token: String,
    orders: mpsc::UnboundedSender<Order>,
}

enum Order {
    Send(String),
    /// Gone without a close frame, as when the network fails.
    Drop,
}

/// The WebSocket side of the stand-in.
#[derive(Clone)]
pub struct SocketSide {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
}

impl SocketSide {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner::default());
        let accepting = inner.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let inner = accepting.clone();
                tokio::spawn(async move {
                    let mut ticket = None;
                    // The error type is tungstenite's (`Callback`), not ours to shrink.
                    #[allow(clippy::result_large_err)]
                    let read_ticket = |request: &tokio_tungstenite::tungstenite::handshake::server::Request,
                                       response| {
                        ticket = request
                            .uri()
                            .query()
                            .and_then(|q| q.strip_prefix("ticket="))
                            .and_then(|t| t.parse::<u64>().ok());
                        Ok(response)
                    };
                    if let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, read_ticket).await {
                        let token = ticket.and_then(|t| inner.tokens.lock().unwrap().by_ticket.get(&t).cloned());
                        if let Some(token) = token {
                            serve(inner, ws, token).await;
                        }
                    }
                });
            }
        });
        Self { addr, inner }
    }

    /// The URL `apps.connections.open` answers for `token`, or `None` once it is revoked.
    pub fn issue(&self, token: &str) -> Option<String> {
        let mut tokens = self.inner.tokens.lock().unwrap();
        if tokens.revoked.contains(token) {
            return None;
        }
        tokens.next_ticket += 1;
        let ticket = tokens.next_ticket;
        tokens.by_ticket.insert(ticket, token.to_string());
        Some(format!("ws://{}/link/?ticket={ticket}", self.addr))
    }

    /// Drops `token`'s connections (without a close frame) and opens no more for it: the
    /// process holding it is dead.
    pub fn revoke(&self, token: &str) {
        // Under the links' lock, so a connection being accepted either sees the revocation or
        // is in the list and dropped here.
        let mut links = self.inner.links.lock().unwrap();
        self.inner.tokens.lock().unwrap().revoked.insert(token.to_string());
        links.retain(|link| {
            let keep = link.token != token;
            if !keep {
                let _ = link.orders.send(Order::Drop);
            }
            keep
        });
    }

    /// The ids of the open connections, oldest first.
    pub fn links(&self) -> Vec<usize> {
        self.inner.links.lock().unwrap().iter().map(|l| l.id).collect()
    }

    /// How many connections were ever opened.
    pub fn opened(&self) -> usize {
        self.inner.opened.load(Ordering::SeqCst)
    }

    /// Every acknowledgement received so far.
    pub fn acks(&self) -> Vec<Value> {
        self.inner.acks.lock().unwrap().clone()
    }

    /// Waits until `n` connections are open.
    pub async fn wait_for_links(&self, n: usize, timeout: Duration) {
        crate::wait_for(&format!("{n} Socket Mode connections"), timeout, || async {
            (self.links().len() >= n).then_some(())
        })
        .await
    }

    /// A new envelope of `kind` around `payload`, as Slack frames it.
    pub fn envelope(&self, kind: &str, payload: Value) -> Value {
        let n = self.inner.next_envelope.fetch_add(1, Ordering::SeqCst) + 1;
        // Slack wants a payload back for commands and form submissions only.
        let accepts = kind == "slash_commands"
            || (kind == "interactive"
                && matches!(payload["type"].as_str(), Some("view_submission" | "block_suggestion")));
        json!({
            "envelope_id": format!("e{n:04}-{}", rand::random::<u32>()),
            "type": kind,
            "payload": payload,
            "accepts_response_payload": accepts,
            "retry_attempt": 0,
            "retry_reason": "",
        })
    }

    /// Sends `envelope` on the next open connection (in turn, as Slack spreads them) and waits
    /// for its acknowledgement; `None` if none came within Slack's three seconds.
    pub async fn deliver(&self, envelope: &Value) -> Option<Value> {
        let id = envelope["envelope_id"].as_str().expect("an envelope id").to_string();
        let (tx, rx) = oneshot::channel();
        self.inner.waiting.lock().unwrap().insert(id.clone(), tx);
        self.send_on_next(envelope.to_string())
            .unwrap_or_else(|| panic!("no Socket Mode connection to deliver {id} on"));
        let ack = tokio::time::timeout(ACK_WITHIN, rx).await.ok().and_then(Result::ok);
        self.inner.waiting.lock().unwrap().remove(&id);
        ack
    }

    /// Wraps `payload` in a new envelope and delivers it; panics without an acknowledgement.
    pub async fn send(&self, kind: &str, payload: Value) -> Value {
        let envelope = self.envelope(kind, payload);
        self.deliver(&envelope)
            .await
            .unwrap_or_else(|| panic!("no acknowledgement within {ACK_WITHIN:?} for {envelope}"))
    }

    /// Sends `envelope` on one connection and drops that connection at once, before any
    /// acknowledgement can come back; returns the dropped connection's id.
    pub fn deliver_then_drop(&self, envelope: &Value) -> usize {
        let mut links = self.inner.links.lock().unwrap();
        assert!(!links.is_empty(), "an open connection");
        // Out of the list at once: nothing else is sent on it.
        let link = links.remove(0);
        link.orders.send(Order::Send(envelope.to_string())).unwrap();
        link.orders.send(Order::Drop).unwrap();
        link.id
    }

    /// The same envelope again, as Slack redelivers one it had no acknowledgement for.
    pub fn redelivery(envelope: &Value, attempt: u64) -> Value {
        let mut again = envelope.clone();
        again["retry_attempt"] = json!(attempt);
        again["retry_reason"] = json!("timeout");
        again
    }

    /// Drops every open connection without a close frame.
    pub fn drop_all(&self) {
        for link in self.inner.links.lock().unwrap().drain(..) {
            let _ = link.orders.send(Order::Drop);
        }
    }

    /// Tells connection `id` that Slack will close it soon (`disconnect`, `refresh_requested`).
    pub fn disconnect(&self, id: usize) {
        let message =
            json!({"type": "disconnect", "reason": "refresh_requested", "debug_info": {"host": "applink-standin"}});
        if let Some(link) = self.inner.links.lock().unwrap().iter().find(|l| l.id == id) {
            let _ = link.orders.send(Order::Send(message.to_string()));
        }
    }

    /// Closes connection `id` (without a close frame), as Slack does a while after `disconnect`.
    pub fn drop_link(&self, id: usize) {
        let mut links = self.inner.links.lock().unwrap();
        if let Some(at) = links.iter().position(|l| l.id == id) {
            let _ = links.remove(at).orders.send(Order::Drop);
        }
    }

    fn send_on_next(&self, text: String) -> Option<()> {
        let links = self.inner.links.lock().unwrap();
        if links.is_empty() {
            return None;
        }
        let n = self.inner.next_link.fetch_add(1, Ordering::SeqCst) % links.len();
        links[n].orders.send(Order::Send(text)).ok()
    }
}

async fn serve(inner: Arc<Inner>, mut ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>, token: String) {
    let (orders, mut rx) = mpsc::unbounded_channel();
    let (id, hello) = {
        let mut links = inner.links.lock().unwrap();
        if inner.tokens.lock().unwrap().revoked.contains(&token) {
            return;
        }
        let id = inner.opened.fetch_add(1, Ordering::SeqCst) + 1;
        links.push(Link { id, token, orders });
        let hello = json!({"type": "hello", "num_connections": links.len(), "debug_info": {"host": "applink-standin"},
               "connection_info": {"app_id": "A0001"}});
        (id, hello)
    };
    if ws.send(Message::Text(hello.to_string().into())).await.is_ok() {
        loop {
            tokio::select! {
                message = ws.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        let Ok(ack) = serde_json::from_str::<Value>(&text) else { continue };
                        if let Some(envelope) = ack["envelope_id"].as_str() {
                            inner.acks.lock().unwrap().push(ack.clone());
                            if let Some(waiter) = inner.waiting.lock().unwrap().remove(envelope) {
                                let _ = waiter.send(ack);
                            }
                        }
                    }
                    // tungstenite queues the pong; it goes out with the next flush.
                    Some(Ok(Message::Ping(_))) => {
                        let _ = ws.flush().await;
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
                order = rx.recv() => match order {
                    Some(Order::Send(text)) => {
                        if ws.send(Message::Text(text.into())).await.is_err() {
                            break;
                        }
                    }
                    Some(Order::Drop) | None => break,
                }
            }
        }
    }
    inner.links.lock().unwrap().retain(|l| l.id != id);
    // Dropping `ws` here closes the TCP connection without a close frame.
}

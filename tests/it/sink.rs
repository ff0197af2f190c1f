//! A local HTTP sink for outbox deliveries: records every request's `Idempotency-Key` and body,
//! and answers from a script (errors, `Retry-After`, slowness) before answering 200.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone)]
pub enum Reply {
    Ok,
    Status(u16),
    RetryAfter(u16, u64),
    /// Answer 200, but only after this long.
    Slow(Duration),
}

#[derive(Debug, Clone)]
pub struct Received {
    pub key: String,
    pub path: String,
    pub body: String,
    pub at: Instant,
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Reply>,
    received: Vec<Received>,
    /// How long every answer takes, so work is in flight when a test kills the daemon.
    delay: Duration,
}

#[derive(Clone)]
pub struct Sink {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl Sink {
    pub async fn start() -> Sink {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .fallback(record)
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Sink { addr, inner }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next answers, in order; after them, 200.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.lock().unwrap().script.extend(replies);
    }

    pub fn set_delay(&self, delay: Duration) {
        self.inner.lock().unwrap().delay = delay;
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }
}

async fn record(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (reply, delay) = {
        let mut inner = inner.lock().unwrap();
        inner.received.push(Received {
            key: headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
            path: uri.path().to_string(),
            body: String::from_utf8_lossy(&body).into_owned(),
            at: Instant::now(),
        });
        (inner.script.pop_front(), inner.delay)
    };
    tokio::time::sleep(delay).await;
    match reply {
        None | Some(Reply::Ok) => (StatusCode::OK, "{\"ok\":true}").into_response(),
        Some(Reply::Status(code)) => {
            (StatusCode::from_u16(code).unwrap(), "scripted").into_response()
        }
        Some(Reply::RetryAfter(code, secs)) => (
            StatusCode::from_u16(code).unwrap(),
            [("retry-after", secs.to_string())],
            "slow down",
        )
            .into_response(),
        Some(Reply::Slow(d)) => {
            tokio::time::sleep(d).await;
            (StatusCode::OK, "{\"ok\":true}").into_response()
        }
    }
}

//! The HTTP server's limits, through the real daemon: floods of slow and idle connections while
//! `/healthz` is polled, a huge declared body, a trickled body, a slow head and an idle
//! keep-alive connection, each closed by the server.

use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::helpers::{TestApp, listening, terminate};

/// The server's cap on open connections (src/http/server.rs).
const CAP: usize = satflow::http::server::MAX_CONNECTIONS;

struct Daemon {
    _app: TestApp,
    child: Child,
    addr: String,
}

impl Daemon {
    /// A daemon with webhooks on (its Pocket is a closed port: nothing here reaches it);
    /// `timeouts` is the debug-only `SATFLOW_TEST_HTTP_TIMEOUTS`; `max_files`, when given, is the
    /// daemon's soft and hard limit of open files (the common default is 1,024).
    async fn start(timeouts: Option<&str>, max_files: Option<u64>) -> Daemon {
        let app = TestApp::empty();
        app.write(
            "satflow.yaml",
            "database: sqlite://satflow.db\nlisten: 127.0.0.1:0\n\
             pocket: { base_url: \"http://127.0.0.1:9\", client_id: limits, webhook_secret: s3cret }\nalerts: []\n",
        );
        std::fs::create_dir_all(app.path().join("workflows")).unwrap();
        let log = std::fs::File::create(app.path().join("daemon.log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_satflow"));
        cmd.arg("run")
            .current_dir(app.path())
            .env_clear()
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for name in ["PATH", "HOME"] {
            if let Some(v) = std::env::var_os(name) {
                cmd.env(name, v);
            }
        }
        if let Some(t) = timeouts {
            cmd.env(satflow::http::server::TEST_TIMEOUTS_VAR, t);
        }
        if let Some(max) = max_files {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit {
                rlim_cur: max as libc::rlim_t,
                rlim_max: max as libc::rlim_t,
            };
            // SAFETY: between fork and exec only setrlimit runs, which is async-signal-safe;
            // it reads one `rlimit` copied into the closure.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = cmd.spawn().expect("start satflow");
        let addr = listening(&app.path().join("daemon.log")).await;
        let start = std::time::Instant::now();
        while get(&addr, "/healthz").await != Ok(200) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the daemon did not start: {}",
                std::fs::read_to_string(app.path().join("daemon.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Daemon {
            _app: app,
            child,
            addr,
        }
    }

    fn stop(mut self) {
        assert_eq!(terminate(&mut self.child), 0);
    }
}

/// `GET path` on a new connection: the status, or what went wrong. Bounded: a server that does
/// not answer within 3 s counts as not answering.
async fn get(addr: &str, path: &str) -> Result<u16, String> {
    get_with_body(addr, path).await.map(|(status, _)| status)
}

/// `GET path` on a new connection: the status and the whole answer as text.
async fn get_with_body(addr: &str, path: &str) -> Result<(u16, String), String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&answer).into_owned();
        status_of(&answer)
            .map(|status| (status, text.clone()))
            .ok_or_else(|| format!("not HTTP: {text:?}"))
    };
    tokio::time::timeout(Duration::from_secs(3), exchange)
        .await
        .unwrap_or_else(|_| Err("no answer within 3 s".into()))
}

fn status_of(answer: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(answer.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.parse().ok()
}

/// Reads one answer from a keep-alive connection: its status and head (lowercase), body
/// skipped by its `content-length`.
async fn read_answer(stream: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.unwrap();
        assert_eq!(n, 1, "closed in the middle of an answer: {buf:?}");
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.unwrap();
    (status_of(&buf).expect("a status line"), head)
}

/// Whether the server closes `stream` within `limit` (EOF or reset), whatever it sent before.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut sink = [0u8; 1024];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Polls `/healthz` `times` times, 100 ms apart; every poll must get the daemon's own answer
/// with the same status as before the load (not the server's "too many connections").
async fn healthz_keeps_answering(addr: &str, baseline: u16, times: usize, under: &str) {
    for i in 0..times {
        let answer = get_with_body(addr, "/healthz").await;
        let Ok((status, text)) = &answer else {
            panic!("poll {i} of /healthz under {under}: {answer:?}");
        };
        assert_eq!(
            *status, baseline,
            "poll {i} of /healthz under {under}: {text}"
        );
        assert!(
            !text.contains("too many connections"),
            "poll {i} under {under}: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_do_not_stop_healthz_and_the_excess_is_closed() {
    let d = Daemon::start(None, None).await;
    let baseline = get(&d.addr, "/healthz").await.unwrap();
    let closed = Arc::new(AtomicUsize::new(0));
    let opened = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..300 {
        let addr = d.addr.clone();
        let (closed, opened) = (Arc::clone(&closed), Arc::clone(&opened));
        tasks.push(tokio::spawn(async move {
            let Ok(mut stream) = TcpStream::connect(&addr).await else {
                closed.fetch_add(1, Ordering::SeqCst);
                return;
            };
            opened.fetch_add(1, Ordering::SeqCst);
            // A head that is never finished: one more header line every 300 ms.
            let mut line = 0;
            let mut sink = [0u8; 256];
            let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
            loop {
                tokio::select! {
                    read = stream.read(&mut sink) => {
                        if matches!(read, Ok(0) | Err(_)) { break; }
                    }
                    _ = tokio::time::sleep(Duration::from_millis(300)) => {
                        line += 1;
                        if stream.write_all(format!("X-Slow-{line}: 1\r\n").as_bytes()).await.is_err() {
                            break;
                        }
                    }
                }
            }
            closed.fetch_add(1, Ordering::SeqCst);
        }));
    }
    // All 300 connect (the server accepts them, closing the excess).
    let start = std::time::Instant::now();
    while opened.load(Ordering::SeqCst) + closed.load(Ordering::SeqCst) < 300 {
        assert!(start.elapsed() < Duration::from_secs(10), "connecting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    healthz_keeps_answering(&d.addr, baseline, 20, "300 slowloris connections").await;
    // Within the 10 s header timeout the server has closed at least the excess over its cap
    // (and one more per /healthz poll that needed a slot).
    let closed_now = closed.load(Ordering::SeqCst);
    assert!(
        closed_now >= 300 - CAP,
        "only {closed_now} of 300 slowloris connections were closed"
    );
    assert!(
        closed_now < 300,
        "all slowloris connections were closed already: the test shows nothing about /healthz under them"
    );
    for t in tasks {
        t.abort();
    }
    d.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eleven_hundred_idle_connections_do_not_stop_healthz() {
    // The test itself holds 1,100 sockets.
    satflow::http::server::raise_fd_limit();
    // The daemon gets the usual 1,024 files: without a cap, 1,100 connections exhaust them.
    let d = Daemon::start(None, Some(1024)).await;
    let baseline = get(&d.addr, "/healthz").await.unwrap();
    let mut idle = Vec::new();
    for _ in 0..1100 {
        idle.push(TcpStream::connect(&d.addr).await.expect("connect"));
    }
    healthz_keeps_answering(&d.addr, baseline, 10, "1,100 idle connections").await;
    // The server keeps at most its cap open: the rest were closed (well before the 10 s
    // header timeout would have closed them all).
    let mut checks = tokio::task::JoinSet::new();
    for mut stream in idle {
        checks.spawn(async move { closed_within(&mut stream, Duration::from_millis(500)).await });
    }
    let mut closed = 0;
    while let Some(was_closed) = checks.join_next().await {
        closed += usize::from(was_closed.unwrap());
    }
    assert!(
        closed >= 1100 - CAP,
        "{closed} of 1,100 idle connections were closed; at most {CAP} may stay open"
    );
    assert!(closed < 1100, "every idle connection was closed at once");
    d.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_declared_body_is_refused_at_once_and_the_connection_closed() {
    let d = Daemon::start(None, None).await;
    for (head, status) in [
        (
            "POST /webhooks/pocket HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Signature-256: sha256=00\r\nContent-Length: 1000000000000\r\n\r\n",
            413,
        ),
        // A missing signature is refused before anything else, and just as fast.
        (
            "POST /webhooks/pocket HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n",
            401,
        ),
        // Other routes take no body.
        (
            "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n",
            413,
        ),
    ] {
        let mut stream = TcpStream::connect(&d.addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        stream
            .write_all(b"{\"event\": \"exchange.exe")
            .await
            .unwrap();
        // Bounded well below the 30 s body timeout: a server that waited for the body would
        // not answer in time.
        let answer = tokio::time::timeout(Duration::from_secs(5), read_answer(&mut stream))
            .await
            .unwrap_or_else(|_| panic!("no answer to {head:?}"));
        assert_eq!(answer.0, status, "{head:?}: {}", answer.1);
        assert!(answer.1.contains("connection: close"), "{}", answer.1);
        assert!(
            closed_within(&mut stream, Duration::from_secs(5)).await,
            "the connection stays open after {head:?}"
        );
    }
    // A body within the limit still reaches the handler (which refuses the signature).
    let mut stream = TcpStream::connect(&d.addr).await.unwrap();
    stream
        .write_all(b"POST /webhooks/pocket HTTP/1.1\r\nHost: x\r\nX-Signature-256: sha256=00\r\nContent-Length: 2\r\n\r\n{}")
        .await
        .unwrap();
    assert_eq!(read_answer(&mut stream).await.0, 401);
    d.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_trickled_bodies_and_idle_keep_alives_are_closed_by_the_server() {
    let d = Daemon::start(Some("header=1000,idle=1500,body=1000"), None).await;

    // A head never finished: closed at the header timeout.
    let mut slow = TcpStream::connect(&d.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let trickle = async {
        for i in 0..50 {
            if slow
                .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                return true;
            }
            let mut probe = [0u8; 64];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(200), slow.read(&mut probe)).await
            {
                return true;
            }
        }
        false
    };
    assert!(trickle.await, "a head trickled for 10 s was not cut");

    // A body trickled one byte every 200 ms: 408 at the body timeout, then closed.
    let mut stream = TcpStream::connect(&d.addr).await.unwrap();
    stream
        .write_all(b"POST /webhooks/pocket HTTP/1.1\r\nHost: x\r\nX-Signature-256: sha256=00\r\nContent-Length: 100\r\n\r\n")
        .await
        .unwrap();
    let (read, write) = stream.split();
    let mut read = read;
    let mut write = write;
    let trickler = async {
        for _ in 0..100 {
            if write.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let answer = async {
        let mut buf = Vec::new();
        let _ = read.read_to_end(&mut buf).await;
        buf
    };
    let answer = tokio::select! {
        answer = answer => answer,
        _ = trickler => panic!("the trickled body was read to its end (20 s)"),
    };
    assert_eq!(
        status_of(&answer),
        Some(408),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );

    // Keep-alive works, and an idle keep-alive connection is closed at the idle timeout.
    let mut stream = TcpStream::connect(&d.addr).await.unwrap();
    for _ in 0..2 {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let (status, head) = read_answer(&mut stream).await;
        assert_eq!(status, 200, "{head}");
        assert!(!head.contains("connection: close"), "{head}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        closed_within(&mut stream, Duration::from_secs(5)).await,
        "an idle keep-alive connection was left open"
    );
    d.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_connection_busy_a_new_one_is_answered_503_at_once() {
    let d = Daemon::start(None, None).await;
    let baseline = get(&d.addr, "/healthz").await.unwrap();
    // As many webhooks as the cap, each trickling its body (busy until the 30 s body timeout).
    let mut tricklers = Vec::new();
    for _ in 0..CAP {
        let mut stream = TcpStream::connect(&d.addr).await.unwrap();
        stream
            .write_all(b"POST /webhooks/pocket HTTP/1.1\r\nHost: x\r\nX-Signature-256: sha256=00\r\nContent-Length: 1000\r\n\r\n")
            .await
            .unwrap();
        tricklers.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if stream.write_all(b" ").await.is_err() {
                    return;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = get_with_body(&d.addr, "/healthz").await;
    assert!(
        refused
            .as_ref()
            .is_ok_and(|(status, text)| *status == 503 && text.contains("too many connections")),
        "a new connection with {CAP} busy ones: {refused:?}"
    );
    for t in tricklers {
        t.abort();
    }
    let start = std::time::Instant::now();
    while get(&d.addr, "/healthz").await != Ok(baseline) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "/healthz did not recover once the tricklers left"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.stop();
}

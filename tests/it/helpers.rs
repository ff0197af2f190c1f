//! `TestApp`: a temporary folder holding a satflow setup, and the real binary run inside it.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct TestApp {
    pub dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    /// The log of the daemon (`satflow run`) spawned last: it says which port it bound.
    daemon_log: std::sync::Mutex<Option<PathBuf>>,
    /// The PostgreSQL database of an app on that backend: its satflow.yaml is pointed there,
    /// and the database is dropped with the app.
    pg: Option<PgDatabase>,
}

/// Which database a test's daemon runs on. The suites that must hold on both (engine,
/// outbox, crashes, webhooks, withdrawals) run each test once per backend, through
/// `on_both_backends!`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where the PostgreSQL tests find a server when `SATFLOW_TEST_POSTGRES_URL` is not set.
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The server the PostgreSQL tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("SATFLOW_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into())
}

/// Runs `work` to its end on a runtime and a thread of its own: apps are made and dropped in
/// sync code that runs inside the tests' runtimes.
fn block_on<T: Send + 'static>(work: impl Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(work)
    })
    .join()
    .unwrap()
}

async fn admin_connection(url: &str) -> Result<sqlx::PgConnection, String> {
    use sqlx::Connection;
    match tokio::time::timeout(
        std::time::Duration::from_secs(5),
        sqlx::PgConnection::connect(url),
    )
    .await
    {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 5 s".into()),
    }
}

/// Whether a PostgreSQL server answers for the tests. Asked once per test process; when none
/// does, ONE line says so on the terminal (not captured: it must be seen in a plain `cargo
/// test`), unless `SATFLOW_REQUIRE_POSTGRES=1`, which makes every PostgreSQL test fail.
pub fn postgres_available() -> bool {
    static ANSWER: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let answer = ANSWER.get_or_init(|| {
        let url = postgres_admin_url();
        let answer = block_on(async move { admin_connection(&url).await.map(|_| ()) });
        if answer.is_err() && !postgres_required() {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "note: PostgreSQL tests skipped: no PostgreSQL server answers at {} (start one, or set SATFLOW_TEST_POSTGRES_URL=postgres://USER@HOST:PORT/DB; SATFLOW_REQUIRE_POSTGRES=1 makes this a failure)",
                redacted(&postgres_admin_url())
            );
        }
        answer
    });
    match answer {
        Ok(()) => true,
        Err(e) if postgres_required() => panic!(
            "SATFLOW_REQUIRE_POSTGRES=1 but no PostgreSQL server answers at {}: {e}",
            redacted(&postgres_admin_url())
        ),
        Err(_) => false,
    }
}

fn postgres_required() -> bool {
    std::env::var("SATFLOW_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(not a URL)".into(),
    }
}

/// A database of its own for one test, created on the test server and dropped (with any
/// connection a killed daemon left) when the test ends.
pub struct PgDatabase {
    name: String,
    /// The database's URL, for satflow.yaml.
    pub url: String,
}

impl PgDatabase {
    /// A new empty database, or None (the test is skipped) when no server answers.
    pub fn create() -> Option<PgDatabase> {
        if !postgres_available() {
            return None;
        }
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "satflow_test_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let admin = postgres_admin_url();
        let mut url = url::Url::parse(&admin).expect("SATFLOW_TEST_POSTGRES_URL is a URL");
        url.set_path(&format!("/{name}"));
        let create = format!("CREATE DATABASE {name}");
        block_on(async move {
            let mut conn = admin_connection(&admin).await.unwrap();
            sqlx::query(&create).execute(&mut conn).await.unwrap();
        });
        Some(PgDatabase {
            name,
            url: url.to_string(),
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let admin = postgres_admin_url();
        block_on(async move {
            if let Ok(mut conn) = admin_connection(&admin).await {
                let _ = sqlx::query(&drop).execute(&mut conn).await;
            }
        });
    }
}

/// `contents` of a satflow.yaml with its `database:` line (added if there is none) naming `url`.
fn with_database(contents: &str, url: &str) -> String {
    let line = format!("database: \"{url}\"");
    let mut found = false;
    let mut out: Vec<String> = contents
        .lines()
        .map(|l| {
            if l.starts_with("database:") {
                found = true;
                line.clone()
            } else {
                l.to_string()
            }
        })
        .collect();
    if !found {
        out.insert(0, line);
    }
    out.join("\n") + "\n"
}

/// Runs each named `async fn NAME(backend: Backend)` as two tests, `NAME::sqlite` and
/// `NAME::postgres` (which passes without running when no PostgreSQL server answers, unless
/// `SATFLOW_REQUIRE_POSTGRES=1`).
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres).await
            }
        }
    )+};
}
pub(crate) use on_both_backends;

/// What a run of the binary printed and how it exited.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The `path:line:col: message` lines.
    pub fn problems(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| l.contains(".yaml:") || l.contains(".yml:"))
            .collect()
    }
}

pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

impl TestApp {
    /// An empty folder.
    pub fn empty() -> TestApp {
        TestApp {
            dir: tempfile::tempdir().expect("temp dir"),
            env: Vec::new(),
            daemon_log: std::sync::Mutex::new(None),
            pg: None,
        }
    }

    /// An empty folder whose satflow.yaml, when written, uses `backend`: on PostgreSQL, a
    /// database of its own replaces whatever `database:` the test writes. None when that
    /// backend cannot be had here (the test is skipped).
    pub fn empty_on(backend: Backend) -> Option<TestApp> {
        let mut app = TestApp::empty();
        if backend == Backend::Postgres {
            app.pg = Some(PgDatabase::create()?);
        }
        Some(app)
    }

    /// A copy of `tests/corpus/base`: a good satflow.yaml, the files it names, one good workflow.
    pub fn with_base() -> TestApp {
        let app = TestApp::empty();
        copy_dir(&corpus_dir().join("base"), app.path());
        app
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file of the setup; on PostgreSQL, satflow.yaml's `database:` names the app's
    /// own database whatever the test wrote.
    pub fn write(&self, relative: &str, contents: &str) {
        let path = self.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        match &self.pg {
            Some(pg) if relative == "satflow.yaml" => {
                std::fs::write(path, with_database(contents, &pg.url)).unwrap()
            }
            _ => std::fs::write(path, contents).unwrap(),
        }
    }

    /// A setup for the engine: an empty workflows folder, emails as files in `mail/`, short
    /// leases and retry delays so crashes and retries play out in seconds. The daemon binds
    /// port 0; `started` reads back the port it got.
    pub fn engine() -> TestApp {
        TestApp::engine_on(Backend::Sqlite).expect("SQLite is always there")
    }

    /// `engine()` on `backend`; None when that backend cannot be had here.
    pub fn engine_on(backend: Backend) -> Option<TestApp> {
        let app = TestApp::empty_on(backend)?;
        app.write(
            "satflow.yaml",
            "database: sqlite://satflow.db\nlisten: 127.0.0.1:0\n\
             email: { dir: mail, from: satflow@example.com, to: me@example.com }\n\
             engine: { lease: 1s, shutdown_grace: 5s }\n\
             outbox: { base_delay: 100ms, max_delay: 2s, max_attempts: 4 }\n",
        );
        std::fs::create_dir_all(app.path().join("workflows")).unwrap();
        Some(app)
    }

    /// The address the daemon spawned last listens on, as its log reported it. Call it once
    /// the daemon is up (after `started`).
    pub fn listen(&self) -> String {
        let log = self.last_daemon_log();
        address_in_log(&log).unwrap_or_else(|| {
            panic!(
                "the daemon has not reported its address yet: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })
    }

    /// Waits until the daemon spawned last reports the address it bound, and returns it.
    pub async fn started(&self) -> String {
        listening(&self.last_daemon_log()).await
    }

    /// The log of the daemon spawned last; `daemon.log` for one started another way.
    fn last_daemon_log(&self) -> PathBuf {
        self.daemon_log
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| self.path().join("daemon.log"))
    }

    /// Starts `satflow ARGS` in the background (a daemon), logging to `NAME.log`.
    pub fn spawn(&self, args: &[&str], log: &str) -> std::process::Child {
        let path = self.path().join(log);
        if args.first() == Some(&"run") {
            *self.daemon_log.lock().unwrap() = Some(path.clone());
        }
        let log = std::fs::File::create(path).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_satflow"));
        cmd.args(args)
            .current_dir(self.path())
            .env_clear()
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for name in ["PATH", "HOME"] {
            if let Some(v) = std::env::var_os(name) {
                cmd.env(name, v);
            }
        }
        cmd.spawn().expect("start satflow")
    }

    /// `order setup WORKFLOW` in two steps, the message signed with `key`.
    pub fn set_up_order(&self, workflow: &str, key: &bitcoin::secp256k1::SecretKey) -> Run {
        let first = self.satflow(&["order", "setup", workflow, "--message-only"]);
        let signature = satflow::wallet::proof::sign_message(key, first.stdout.trim_end());
        self.satflow(&["order", "setup", workflow, "--signature", &signature])
    }

    /// `runs --json`, parsed.
    pub fn runs(&self) -> Vec<serde_json::Value> {
        let run = self.satflow(&["runs", "--json", "--limit", "1000"]);
        assert_eq!(run.code, 0, "{run:?}");
        let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        doc["runs"].as_array().unwrap().clone()
    }

    /// `outbox --json`, parsed.
    pub fn outbox(&self) -> Vec<serde_json::Value> {
        let run = self.satflow(&["outbox", "--json", "--limit", "1000"]);
        assert_eq!(run.code, 0, "{run:?}");
        let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        doc["items"].as_array().unwrap().clone()
    }

    /// The emails written to `mail/`, as text (quoted-printable bodies decoded).
    pub fn emails(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.path().join("mail")) else {
            return Vec::new();
        };
        dir.map(|e| decode_body(&std::fs::read_to_string(e.unwrap().path()).unwrap()))
            .collect()
    }

    pub fn set_env(&mut self, name: &str, value: &str) {
        self.env.push((name.into(), value.into()));
    }

    /// Runs `satflow ARGS` in the app's folder with a clean environment (only PATH, HOME and
    /// what `set_env` added), so no variable of the developer's shell leaks into a test.
    pub fn satflow(&self, args: &[&str]) -> Run {
        self.satflow_with_input(args, "")
    }

    /// Runs `satflow ARGS` with `input` on its stdin (answers to prompts).
    pub fn satflow_with_input(&self, args: &[&str], input: &str) -> Run {
        use std::io::Write;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_satflow"));
        cmd.args(args).current_dir(self.path()).env_clear();
        for name in ["PATH", "HOME"] {
            if let Some(v) = std::env::var_os(name) {
                cmd.env(name, v);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("run satflow");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().expect("run satflow");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// A POST to the sandbox's control API at `pocket` (`sandbox/orders/ID/payments`, …), its
/// JSON answer.
pub async fn sandbox_post(
    pocket: &str,
    path: String,
    body: serde_json::Value,
) -> serde_json::Value {
    reqwest::Client::new()
        .post(format!("{pocket}/{path}"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A loopback port that refuses connections for as long as the test process lives: it is
/// bound (so nothing else can take it) but never listened on. For "the server is down".
pub fn closed_port() -> u16 {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    // Kept bound until the process ends, so the port is never handed to anyone else.
    std::mem::forget(socket);
    port
}

/// The `addr` of the daemon's "satflow is running" line in the log at `path`, if it is there.
pub fn address_in_log(path: &Path) -> Option<String> {
    let log = strip_ansi(&std::fs::read_to_string(path).ok()?);
    let line = log.lines().find(|l| l.contains("satflow is running"))?;
    let addr = line.split_once("addr=")?.1.split_whitespace().next()?;
    Some(addr.to_string())
}

/// Waits (up to 15 s) until the daemon logging to `path` reports the address it bound.
pub async fn listening(path: &Path) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        if let Some(addr) = address_in_log(path) {
            return addr;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon did not report its address: {}",
            std::fs::read_to_string(path).unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// `text` without terminal colour codes (`ESC [ … m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A loopback stand-in for a daemon whose port is not known yet: it binds port 0 at once (so
/// a sandbox can be given its URL) and holds each request until `point_to` names the daemon,
/// then forwards it as received (method, path, headers, body) and answers what the daemon did.
pub struct Relay {
    pub url: String,
    target: tokio::sync::watch::Sender<Option<String>>,
}

impl Relay {
    pub async fn start() -> Relay {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, Method, StatusCode, Uri};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (target, watch) = tokio::sync::watch::channel(None::<String>);
        let client = reqwest::Client::new();
        let forward = move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let mut watch = watch.clone();
            let client = client.clone();
            async move {
                let Ok(base) = watch.wait_for(Option::is_some).await.map(|t| t.clone()) else {
                    return (
                        StatusCode::SERVICE_UNAVAILABLE,
                        HeaderMap::new(),
                        Bytes::new(),
                    );
                };
                let mut headers = headers;
                for name in ["host", "content-length", "connection"] {
                    headers.remove(name);
                }
                let path = uri.path_and_query().map_or("/", |p| p.as_str());
                let sent = client
                    .request(method, format!("{}{path}", base.unwrap()))
                    .headers(headers)
                    .body(body)
                    .send()
                    .await;
                match sent {
                    Ok(r) => {
                        let status = r.status();
                        let mut headers = r.headers().clone();
                        for name in ["content-length", "transfer-encoding", "connection"] {
                            headers.remove(name);
                        }
                        (status, headers, r.bytes().await.unwrap_or_default())
                    }
                    Err(_) => (StatusCode::BAD_GATEWAY, HeaderMap::new(), Bytes::new()),
                }
            }
        };
        let app = axum::Router::new().fallback(forward);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Relay { url, target }
    }

    /// From now on requests go to `base` (`http://ADDR`), the held ones first.
    pub fn point_to(&self, base: &str) {
        self.target.send_replace(Some(base.to_string()));
    }
}

/// Polls `done` every 100 ms until it holds, failing after `limit` with `what`.
pub async fn eventually(limit: std::time::Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Waits (up to 20 s) until the daemon at `base` (`http://ADDR`) of `app` has nothing left that
/// could still send something: every webhook applied, no outbox item pending, every run
/// finished. The positive marker after which "nothing more arrived" can be asserted.
pub async fn nothing_in_flight(app: &TestApp, base: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let health: Option<serde_json::Value> = match reqwest::get(format!("{base}/healthz")).await
        {
            Ok(r) => r.json().await.ok(),
            Err(_) => None,
        };
        let idle = health
            .as_ref()
            .is_some_and(|h| h["webhooks"]["pending"] == 0 && h["outbox"]["pending"] == 0)
            && app
                .runs()
                .iter()
                .all(|r| r["status"] == "succeeded" || r["status"] == "failed");
        if idle {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon did not settle: {health:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Sends SIGTERM (a graceful stop) and returns the exit code.
pub fn terminate(child: &mut std::process::Child) -> i32 {
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    child.wait().unwrap().code().unwrap_or(-1)
}

/// The message with its body decoded when it is quoted-printable (soft line breaks joined,
/// `=XX` escapes turned back into bytes).
fn decode_body(message: &str) -> String {
    let message = message.replace("\r\n", "\n");
    // The parts of a multipart message carry their own encoding: every quoted-printable part
    // is decoded in place (the headers have no `=XX` of their own to confuse it).
    if !message.contains("Content-Transfer-Encoding: quoted-printable") {
        return message;
    }
    let joined = message.replace("=\n", "");
    let mut bytes = Vec::new();
    let mut rest = joined.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        match (b, tail.get(..2).and_then(|h| std::str::from_utf8(h).ok())) {
            (b'=', Some(hex)) if u8::from_str_radix(hex, 16).is_ok() => {
                bytes.push(u8::from_str_radix(hex, 16).unwrap());
                rest = &tail[2..];
            }
            _ => {
                bytes.push(b);
                rest = tail;
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

//! The dashboard's accounts (`satflow user …`) and, in a real Chromium driven over WebDriver,
//! its pages, roles, CSRF tokens and the redirect of every request without a session.

use crate::helpers::TestApp;

/// The database file and its write-ahead log, as text: what someone with a copy could read.
fn database_bytes(app: &TestApp) -> String {
    let mut bytes = std::fs::read(app.path().join("satflow.db")).unwrap();
    bytes.extend(std::fs::read(app.path().join("satflow.db-wal")).unwrap_or_default());
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn user_accounts_are_added_listed_changed_and_removed() {
    let app = TestApp::engine();
    let added = app.satflow_with_input(
        &["user", "add", "alice", "--role", "operator"],
        "a long password\n",
    );
    assert_eq!(added.code, 0, "{added:?}");
    assert!(!added.stdout.contains("a long password"), "{added:?}");
    let again = app.satflow_with_input(
        &["user", "add", "alice", "--role", "admin"],
        "another password\n",
    );
    assert_eq!(again.code, 1, "{again:?}");
    let short = app.satflow_with_input(&["user", "add", "bob", "--role", "viewer"], "short\n");
    assert_eq!(short.code, 1, "{short:?}");
    assert!(short.stderr.contains("too short"), "{short:?}");
    let bad_role = app.satflow_with_input(&["user", "add", "bob", "--role", "root"], "x\n");
    assert_ne!(bad_role.code, 0, "{bad_role:?}");
    assert!(
        bad_role.stderr.contains("viewer, operator, admin"),
        "{bad_role:?}"
    );

    let list = app.satflow(&["user", "list", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(doc["users"].as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(doc["users"][0]["name"], "alice");
    assert_eq!(doc["users"][0]["role"], "operator");
    assert!(
        !list.stdout.contains("argon2"),
        "no hash is shown: {list:?}"
    );

    let db = database_bytes(&app);
    assert!(db.contains("$argon2id$"), "the hash is argon2id");
    assert!(
        !db.contains("a long password"),
        "the password is not stored"
    );

    assert_eq!(
        app.satflow_with_input(&["user", "passwd", "alice"], "a new long password\n")
            .code,
        0
    );
    assert_eq!(app.satflow(&["user", "role", "alice", "admin"]).code, 0);
    assert_eq!(app.satflow(&["user", "remove", "alice"]).code, 0);
    assert_eq!(app.satflow(&["user", "remove", "alice"]).code, 1);
}

// ── In a real Chromium ───────────────────────────────────────────────────────────────────────

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bitcoin::base64::Engine as _;
use serde_json::{Value, json};

/// Where Debian's chromium-driver puts its binary (`SATFLOW_CHROMEDRIVER` overrides it).
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A child process killed when dropped (the test may fail halfway).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A WebDriver session in headless Chromium: the few W3C WebDriver commands the tests use,
/// spoken over HTTP with the reqwest client the project already has.
pub(super) struct Browser {
    http: reqwest::Client,
    base: String,
    _driver: Killed,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub(super) async fn start() -> Browser {
        let driver = std::env::var("SATFLOW_CHROMEDRIVER").unwrap_or_else(|_| CHROMEDRIVER.into());
        assert!(
            Path::new(&driver).exists() && Path::new(CHROMIUM).exists(),
            "the browser tests need Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver ({driver}, {CHROMIUM})"
        );
        let port = free_port();
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Killed(child);
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--no-first-run", "--disable-dev-shm-usage", "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("create a WebDriver session")
            .json()
            .await
            .unwrap();
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
            .to_string();
        Browser {
            http,
            base: format!("{base}/session/{id}"),
            _driver: driver,
            _profile: profile,
        }
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        if v["value"]["error"].is_string() {
            panic!("WebDriver {path}: {v}");
        }
        v["value"].clone()
    }

    pub(super) async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    pub(super) async fn url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    pub(super) async fn source(&self) -> String {
        self.cmd(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The page's visible text.
    pub(super) async fn text(&self) -> String {
        self.script("return document.body.innerText", json!([]))
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        v[ELEMENT].as_str().unwrap().to_string()
    }

    pub(super) async fn has(&self, css: &str) -> bool {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/elements",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        !v.as_array().unwrap().is_empty()
    }

    pub(super) async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{el}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    pub(super) async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{el}/click"),
            Some(json!({})),
        )
        .await;
    }

    pub(super) async fn script(&self, script: &str, args: Value) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    pub(super) async fn window(&self, width: u32, height: u32) {
        self.cmd(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await;
    }

    /// A full-page screenshot into `docs/screenshots/NAME.png`.
    pub(super) async fn screenshot(&self, name: &str) {
        // Make the window as tall as the page, so the screenshot holds all of it.
        let height = self
            .script("return document.documentElement.scrollHeight", json!([]))
            .await
            .as_u64()
            .unwrap_or(1000)
            .clamp(400, 4000);
        let width = self
            .script("return window.outerWidth", json!([]))
            .await
            .as_u64()
            .unwrap_or(1280) as u32;
        self.window(width, height as u32 + 120).await;
        let b64 = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let png = bitcoin::base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
        self.window(width, 1000).await;
    }

    pub(super) async fn log_in(&self, site: &str, name: &str, password: &str) {
        self.goto(&format!("{site}/login")).await;
        self.type_into("#name", name).await;
        self.type_into("#password", password).await;
        self.click("#login").await;
        // A login takes an argon2id verification: the click may return before the answer.
        self.wait_for_url(&format!("{site}/")).await;
    }

    pub(super) async fn log_out(&self) {
        self.click("header .who button").await;
        let url = self.url().await;
        let site = url.split("/").take(3).collect::<Vec<_>>().join("/");
        self.wait_for_url(&format!("{site}/login")).await;
    }

    /// Waits (up to 30 s) until the browser is at `url`.
    pub(super) async fn wait_for_url(&self, url: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.url().await != url {
            assert!(
                Instant::now() < deadline,
                "the browser is not at {url} but at {}: {}",
                self.url().await,
                self.text().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (up to 30 s) until the page's text holds `needle`.
    pub(super) async fn wait_for_text(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = self.text().await;
            if text.contains(needle) {
                return;
            }
            assert!(Instant::now() < deadline, "no {needle:?} in: {text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends Chromium (chromedriver itself is killed next): a plain blocking DELETE, since
        // a drop cannot await, and it must also run when the test failed halfway.
        use std::io::{Read, Write};
        let rest = self.base.trim_start_matches("http://");
        let (host, path) = rest.split_once('/').unwrap();
        if let Ok(mut conn) = std::net::TcpStream::connect(host) {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                conn,
                "DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = conn.read_to_end(&mut Vec::new());
        }
    }
}

/// Starts `satflow demo --serve` in `app` and returns the dashboard's address once it is up.
async fn demo_served(app: &TestApp) -> (Killed, String) {
    let child = Killed(app.spawn(&["demo", "--dir", "play", "--serve"], "demo.log"));
    let log = app.path().join("demo.log");
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(rest) = text.split("The dashboard: ").nth(1) {
            let url = rest
                .split_whitespace()
                .next()
                .unwrap()
                .trim_end_matches('/');
            assert!(
                text.contains("(log in as demo / satflow-demo)"),
                "the demo says its login: {text}"
            );
            return (child, url.to_string());
        }
        assert!(Instant::now() < deadline, "the demo did not serve: {text}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every page but the three public routes: without a session, a redirect to the login page
/// (GET) or 401 (anything else).
async fn refused_without_a_session(site: &str) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in [
        "/",
        "/runs",
        "/runs/1",
        "/exchanges",
        "/outbox",
        "/outbox/1",
        "/addresses",
        "/withdrawals",
        "/report",
        "/report.csv",
        "/users",
        "/approvals",
        "/approvals/1",
        "/approvals/run/1/sweep?token=abc",
        "/audit",
        "/no-such-page",
        "/events",
    ] {
        let r = http.get(format!("{site}{path}")).send().await.unwrap();
        if path == "/events" {
            assert_eq!(r.status(), 401, "{path}");
            continue;
        }
        assert_eq!(r.status(), 303, "{path}");
        // Back to the page asked for once logged in (an approver's emailed link, say).
        let back = if path == "/" {
            "/login".to_string()
        } else {
            format!(
                "/login?next={}",
                url::form_urlencoded::byte_serialize(path.as_bytes()).collect::<String>()
            )
        };
        assert_eq!(r.headers()["location"], back.as_str(), "{path}");
    }
    for path in [
        "/outbox/1/retry",
        "/outbox/1/discard",
        "/trigger/weekly-dca",
        "/users",
        "/users/demo/remove",
        "/users/demo/role",
        "/approvals/1/decide",
        "/logout",
    ] {
        let r = http
            .post(format!("{site}{path}"))
            .form(&[("csrf", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "POST {path}");
    }
    // A forged session cookie is no session.
    let r = http
        .get(format!("{site}/"))
        .header("cookie", "satflow_session=0000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    for (path, status) in [("/healthz", 200), ("/metrics", 200)] {
        let r = http.get(format!("{site}{path}")).send().await.unwrap();
        assert_eq!(r.status(), status, "{path} needs no session");
    }
    // The webhook answers for itself (its signature check), not with a login redirect.
    let r = http
        .post(format!("{site}/webhooks/pocket"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 303);
    assert!(!r.text().await.unwrap().contains("log in first"));
}

/// Nothing the configuration keeps secret shows on a page.
fn no_secret_in(page: &str, source: &str) {
    for secret in [
        "demo-client",
        "demo-webhook-secret",
        "demo-rune",
        "demo-password",
        "satflow-demo",
        "argon2",
        "CH9300762011623852957",
    ] {
        assert!(!source.contains(secret), "{page} shows {secret}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_chromium_shows_the_demo_and_enforces_roles_and_csrf() {
    let app = TestApp::empty();
    let (_demo, site) = demo_served(&app).await;
    refused_without_a_session(&site).await;

    for (name, role) in [("olivia", "operator"), ("victor", "viewer")] {
        let added = app.satflow_with_input(
            &[
                "-c",
                "play/satflow.yaml",
                "user",
                "add",
                name,
                "--role",
                role,
            ],
            &format!("{name}-password\n"),
        );
        assert_eq!(added.code, 0, "{added:?}");
    }
    // An email that ran out of attempts: a dead letter to retry.
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        app.path().join("play/satflow.db").display()
    ))
    .await
    .unwrap();
    let dead: i64 = sqlx::query_scalar(
        "UPDATE outbox SET status = 'dead', last_error = 'smtp: connection refused'
         WHERE id = (SELECT MAX(id) FROM outbox WHERE kind = 'email') RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let exchange: String =
        sqlx::query_scalar("SELECT id FROM exchanges WHERE state = 'settled' ORDER BY id LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    let run: i64 = sqlx::query_scalar("SELECT MAX(id) FROM runs WHERE workflow = 'weekly-dca'")
        .fetch_one(&pool)
        .await
        .unwrap();

    let b = Browser::start().await;
    // A wrong password is refused on the login page itself.
    b.goto(&format!("{site}/login")).await;
    b.type_into("#name", "demo").await;
    b.type_into("#password", "not the password").await;
    b.click("#login").await;
    // The click may return before the answer (an argon2id verification): wait for it.
    b.wait_for_text("Wrong name or password").await;
    assert!(b.url().await.ends_with("/login"));
    b.screenshot("login").await;

    b.log_in(&site, "demo", "satflow-demo").await;
    let pages: [(&str, String, &[&str]); 11] = [
        (
            "overview",
            "/".into(),
            &[
                "Bitcoin stacked",
                "CHF",
                "weekly-dca",
                "Next fire",
                "Dead letters",
                "smtp: connection refused",
                "Last runs",
                "no problems",
            ],
        ),
        (
            "runs",
            "/runs".into(),
            &["weekly-dca", "lightning-dca", "succeeded"],
        ),
        ("run", format!("/runs/{run}"), &["Steps", "weekly-dca"]),
        (
            "exchanges",
            "/exchanges".into(),
            &["settled", "refunded", &exchange],
        ),
        (
            "exchange",
            format!("/exchanges/{exchange}"),
            &["Payout", "Events", "Confirmations"],
        ),
        ("outbox", "/outbox".into(), &["email", "withdraw", "dead"]),
        (
            "outbox-item",
            format!("/outbox/{dead}"),
            &["Attempt history", "smtp: connection refused"],
        ),
        ("addresses", "/addresses".into(), &["cold", "vault", "bc1q"]),
        (
            "withdrawals",
            "/withdrawals".into(),
            &["hub", "vault", "sent", "skipped", "less than the minimum"],
        ),
        (
            "report",
            "/report".into(),
            &["Download CSV", "buy", "withdrawal", "CHF"],
        ),
        (
            "users",
            "/users".into(),
            &["demo", "olivia", "victor", "operator", "viewer"],
        ),
    ];
    for (name, path, expected) in &pages {
        b.goto(&format!("{site}{path}")).await;
        let text = b.text().await;
        for want in *expected {
            assert!(
                text.contains(want),
                "{name} ({path}) shows {want:?}:\n{text}"
            );
        }
        no_secret_in(name, &b.source().await);
        b.screenshot(name).await;
    }
    // The demo's admin reads the audit log (its screenshot comes from tests/it/treasury.rs).
    b.goto(&format!("{site}/audit")).await;
    let text = b.text().await;
    for want in ["chain intact", "daemon.started", "withdrawal.requested"] {
        assert!(text.contains(want), "the audit page shows {want:?}: {text}");
    }
    no_secret_in("audit", &b.source().await);
    b.goto(&format!("{site}/")).await;
    let source = b.source().await;
    assert!(
        source.contains("<svg") && source.contains("withdrawn to cold storage ("),
        "the chart"
    );
    // On a phone.
    b.window(390, 844).await;
    b.screenshot("overview-phone").await;
    b.window(1280, 1000).await;
    b.log_out().await;
    b.goto(&format!("{site}/outbox")).await;
    assert!(
        b.url().await.ends_with("/login?next=%2Foutbox"),
        "logged out"
    );

    // A viewer sees, but is refused a retry, even by a form built by hand.
    b.log_in(&site, "victor", "victor-password").await;
    b.goto(&format!("{site}/outbox/{dead}")).await;
    assert!(!b.has("#retry").await, "no retry button for a viewer");
    b.goto(&format!("{site}/users")).await;
    b.wait_for_text("your role may not manage users").await;
    b.goto(&format!("{site}/outbox/{dead}")).await;
    b.script(
        "const f = document.createElement('form'); f.method = 'post'; f.action = arguments[0];
         const c = document.createElement('input'); c.name = 'csrf'; c.value = document.querySelector('input[name=csrf]').value;
         f.appendChild(c); document.body.appendChild(f); f.submit();",
        json!([format!("/outbox/{dead}/retry")]),
    )
    .await;
    b.wait_for_text("your role may not retry outbox items")
        .await;
    let still: String = sqlx::query_scalar("SELECT status FROM outbox WHERE id = $1")
        .bind(dead)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(still, "dead");
    b.goto(&format!("{site}/")).await;
    b.log_out().await;

    // An operator: a form without its CSRF token is refused, the retry itself works.
    b.log_in(&site, "olivia", "olivia-password").await;
    b.goto(&format!("{site}/outbox/{dead}")).await;
    b.script(
        "document.querySelector('#retry').form.querySelector('input[name=csrf]').remove();",
        json!([]),
    )
    .await;
    b.click("#retry").await;
    b.wait_for_text("missing its CSRF token").await;
    b.goto(&format!("{site}/outbox/{dead}")).await;
    b.click("#retry").await;
    b.wait_for_text("is queued again").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status: String = sqlx::query_scalar("SELECT status FROM outbox WHERE id = $1")
            .bind(dead)
            .fetch_one(&pool)
            .await
            .unwrap();
        if status == "done" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the retried item was not sent: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    b.goto(&format!("{site}/outbox/{dead}")).await;
    assert!(b.text().await.contains("done"));
    b.screenshot("outbox-item-retried").await;
    // And a workflow run by hand.
    b.goto(&format!("{site}/")).await;
    b.click("#workflows button").await;
    b.wait_for_text("is queued").await;
    pool.close().await;
}

/// The CSRF token of the form in `html`.
fn csrf_in(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no csrf field in {html}"))
        .to_string()
}

fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// The cookie header a browser would send back for the `Set-Cookie`s of `r`.
fn cookie_header(cookies: &[String]) -> String {
    cookies
        .iter()
        .map(|c| c.split(';').next().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_need_their_csrf_token_are_rate_limited_and_set_strict_cookies() {
    let app = TestApp::engine();
    // The dashboard on a listener of its own.
    let dash_port = free_port();
    let config = std::fs::read_to_string(app.path().join("satflow.yaml")).unwrap();
    app.write(
        "satflow.yaml",
        &format!("{config}dashboard: {{ listen: 127.0.0.1:{dash_port} }}\n"),
    );
    let added = app.satflow_with_input(
        &["user", "add", "ann", "--role", "viewer"],
        "ann-password\n",
    );
    assert_eq!(added.code, 0, "{added:?}");
    let _daemon = Killed(app.spawn(&["run"], "daemon.log"));
    let main = format!("http://{}", app.started().await);
    let site = format!("http://127.0.0.1:{dash_port}");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let login_page = loop {
        if let Ok(r) = http.get(format!("{site}/login")).send().await {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "the dashboard's own listener is not up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The main listener no longer serves the dashboard.
    assert_eq!(
        http.get(format!("{main}/")).send().await.unwrap().status(),
        404
    );
    assert_eq!(
        http.get(format!("{site}/")).send().await.unwrap().status(),
        303
    );

    let login_cookies = set_cookies(&login_page);
    let html = login_page.text().await.unwrap();
    assert!(html.contains("name=\"viewport\""), "readable on a phone");
    let csrf = csrf_in(&html);
    let post = |cookie: String, form: Vec<(&'static str, String)>| {
        let http = http.clone();
        let site = site.clone();
        async move {
            http.post(format!("{site}/login"))
                .header("cookie", cookie)
                .form(&form)
                .send()
                .await
                .unwrap()
        }
    };
    let jar = cookie_header(&login_cookies);
    // Without the token, or without the cookie it must match: refused.
    let r = post(
        jar.clone(),
        vec![("name", "ann".into()), ("password", "ann-password".into())],
    )
    .await;
    assert_eq!(r.status(), 403);
    let r = post(
        String::new(),
        vec![
            ("csrf", csrf.clone()),
            ("name", "ann".into()),
            ("password", "ann-password".into()),
        ],
    )
    .await;
    assert_eq!(r.status(), 403);

    // The right password: a session in a strict cookie.
    let r = post(
        jar.clone(),
        vec![
            ("csrf", csrf.clone()),
            ("name", "ann".into()),
            ("password", "ann-password".into()),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    let cookies = set_cookies(&r);
    let session = cookies
        .iter()
        .find(|c| c.starts_with("satflow_session="))
        .expect("a session cookie");
    assert!(
        session.contains("HttpOnly")
            && session.contains("SameSite=Strict")
            && !session.contains("Secure"),
        "{session}"
    );
    let token = session.split(';').next().unwrap().to_string();
    let db = database_bytes(&app);
    let bare = token.trim_start_matches("satflow_session=");
    assert!(
        !db.contains(bare),
        "the database keeps only the token's hash"
    );
    let overview = http
        .get(format!("{site}/"))
        .header("cookie", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(overview.status(), 200);
    let page = overview.text().await.unwrap();
    assert!(page.contains("ann (viewer)"));
    let session_csrf = csrf_in(&page);
    // A POST with the session but not its token is refused; a viewer is refused a trigger.
    let r = http
        .post(format!("{site}/outbox/1/retry"))
        .header("cookie", &token)
        .form(&[("csrf", "0".repeat(64))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("CSRF token"));
    let r = http
        .post(format!("{site}/outbox/1/retry"))
        .header("cookie", &token)
        .form(&[("csrf", session_csrf.clone())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("your role may not"));
    // Logging out ends the session.
    let r = http
        .post(format!("{site}/logout"))
        .header("cookie", &token)
        .form(&[("csrf", session_csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let r = http
        .get(format!("{site}/"))
        .header("cookie", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "the session is over");

    // Over TLS (as a proxy in front says), the cookies are Secure.
    let r = http
        .get(format!("{site}/login"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert!(set_cookies(&r).iter().all(|c| c.contains("; Secure")));

    // Five wrong passwords, then even the right one waits.
    for _ in 0..5 {
        let r = post(
            jar.clone(),
            vec![
                ("csrf", csrf.clone()),
                ("name", "ann".into()),
                ("password", "wrong-password".into()),
            ],
        )
        .await;
        assert_eq!(r.status(), 401);
    }
    let r = post(
        jar.clone(),
        vec![
            ("csrf", csrf.clone()),
            ("name", "ann".into()),
            ("password", "ann-password".into()),
        ],
    )
    .await;
    assert_eq!(r.status(), 429);
    assert!(r.text().await.unwrap().contains("Too many failed logins"));
}

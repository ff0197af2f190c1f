//! The dashboard: server-rendered HTML pages of what the database holds (the stack, runs,
//! exchanges, the outbox, addresses, withdrawals, the report), for accounts with roles, served
//! by the daemon. Templates and the stylesheet are embedded in the binary; the pages work
//! without JavaScript and fetch nothing from elsewhere.
//!
//! Every route but `/login` needs a session (the guard answers others with a redirect to the
//! login page, or 401); every POST needs the session's CSRF token; retrying, discarding and
//! triggering need an operator, managing users an admin. A page must never show a secret: the
//! configuration's secrets are never handed to a template, and every page goes through
//! `mask_ibans` before it is sent.

pub mod auth;
pub mod chart;
mod mask;
mod treasury;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration as StdDuration, Instant};

use axum::Router;
use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::clock::{Clock, SystemClock};
use crate::ledger::{self, Entry, Totals};
use crate::store::users::{self, Role, UserName};
use crate::store::{LedgerStamp, Listing, OutboxStatus, Store};
use crate::workflow::zone::Zone;
use auth::{LOGIN_CSRF_COOKIE, Limiter, SESSION_COOKIE, SESSION_IDLE, Session};

pub use mask::mask_ibans;

/// Rows per page of every list.
pub const PAGE_SIZE: i64 = 50;

/// How long the `check` problems shown on the overview are reused before the files are read
/// again.
const PROBLEMS_FOR: StdDuration = StdDuration::from_secs(10);

/// A workflow as the overview shows it.
#[derive(Debug, Clone)]
pub struct WorkflowInfo {
    pub name: String,
    pub schedule: Option<crate::workflow::Schedule>,
    pub on_events: bool,
}

/// What the dashboard needs from the daemon.
pub struct Parts {
    pub store: Store,
    /// The engine's clock: the time pages show and next fires are computed from.
    pub clock: Arc<dyn Clock>,
    pub config_path: PathBuf,
    pub workflows: Vec<WorkflowInfo>,
    pub wallets: Vec<String>,
    pub secure_cookies: bool,
    /// Wakes the runner after a manual trigger.
    pub wake_runner: Arc<Notify>,
    /// Wakes the outbox dispatcher after a retry.
    pub wake_outbox: Arc<Notify>,
}

#[derive(Clone)]
pub struct Dashboard(Arc<Inner>);

struct Inner {
    parts: Parts,
    /// Sessions and login limits run on the machine's clock: the demo moves the engine's.
    auth_clock: SystemClock,
    limiter: Limiter,
    ledger: Mutex<Option<(LedgerStamp, Arc<LedgerView>)>>,
    problems: Mutex<Option<(Instant, Arc<Vec<String>>)>>,
}

/// The ledger read once per change of the database.
struct LedgerView {
    entries: Vec<Entry>,
    totals: Totals,
    skipped: Vec<String>,
}

impl Dashboard {
    pub fn new(parts: Parts) -> Dashboard {
        Dashboard(Arc::new(Inner {
            parts,
            auth_clock: SystemClock,
            limiter: Limiter::default(),
            ledger: Mutex::new(None),
            problems: Mutex::new(None),
        }))
    }

    fn store(&self) -> &Store {
        &self.0.parts.store
    }

    fn now(&self) -> DateTime<Utc> {
        self.0.parts.clock.now()
    }

    fn auth_now(&self) -> DateTime<Utc> {
        self.0.auth_clock.now()
    }

    /// The ledger, read again only when an exchange or a withdrawal changed.
    async fn ledger(&self) -> Result<Arc<LedgerView>, Failure> {
        let stamp = self.store().ledger_stamp().await?;
        if let Some((at, view)) = &*self.0.ledger.lock().expect("ledger lock")
            && *at == stamp
        {
            return Ok(Arc::clone(view));
        }
        let exchanges = self.store().exchanges(i64::MAX).await?;
        let withdrawals = self.store().withdrawals(i64::MAX).await?;
        let (entries, mut skipped) = ledger::checked_entries(&exchanges, &withdrawals);
        let totals = ledger::totals(&entries);
        skipped.extend(totals.skipped.iter().cloned());
        let view = Arc::new(LedgerView {
            entries,
            totals,
            skipped,
        });
        *self.0.ledger.lock().expect("ledger lock") = Some((stamp, Arc::clone(&view)));
        Ok(view)
    }

    /// What `satflow check` says of the files now, as `path:line:col: message` lines.
    async fn problems(&self) -> Arc<Vec<String>> {
        if let Some((at, p)) = &*self.0.problems.lock().expect("problems lock")
            && at.elapsed() < PROBLEMS_FOR
        {
            return Arc::clone(p);
        }
        let path = self.0.parts.config_path.clone();
        let found = tokio::task::spawn_blocking(move || match crate::cli::load_setup(&path) {
            Ok(_) => Vec::new(),
            Err(problems) => problems.iter().map(|p| p.to_string()).collect(),
        })
        .await
        .unwrap_or_else(|_| vec!["the check of the files failed".to_string()]);
        let found = Arc::new(found);
        *self.0.problems.lock().expect("problems lock") =
            Some((Instant::now(), Arc::clone(&found)));
        found
    }
}

/// The dashboard's routes, every one behind the guard.
pub fn router(dashboard: Dashboard) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/events", get(events))
        .route("/runs", get(runs))
        .route("/runs/{id}", get(run))
        .route("/exchanges", get(exchanges))
        .route("/exchanges/{id}", get(exchange))
        .route("/outbox", get(outbox))
        .route("/outbox/{id}", get(outbox_item))
        .route("/outbox/{id}/retry", post(retry))
        .route("/outbox/{id}/discard", post(discard))
        .route("/addresses", get(addresses))
        .route("/withdrawals", get(withdrawals))
        .route("/report", get(report))
        .route("/report.csv", get(report_csv))
        .route("/users", get(users_page).post(add_user))
        .route("/users/{name}/remove", post(remove_user))
        .route("/users/{name}/role", post(set_role))
        .route("/trigger/{workflow}", post(trigger))
        .route("/approvals", get(treasury::approvals_page))
        .route("/approvals/{id}", get(treasury::approval_page))
        .route("/approvals/run/{run}/{step}", get(treasury::approval_link))
        .route("/approvals/{id}/decide", post(treasury::decide))
        .route("/audit", get(treasury::audit_page))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(dashboard.clone(), guard))
        .with_state(dashboard)
}

/// Lets `/login` through; anything else needs a live session. Without one, a page asked for
/// with GET is redirected to the login page and anything else answered 401.
async fn guard(State(d): State<Dashboard>, mut request: Request, next: Next) -> Response {
    if request.uri().path() == "/login" {
        return next.run(request).await;
    }
    let token = auth::cookie(request.headers(), SESSION_COOKIE).map(str::to_string);
    let now = d.auth_now();
    let session = match token {
        Some(token) => match d.store().session(&token, now).await {
            Ok(Some(row)) => {
                // Used sessions stay alive; the write is skipped while the expiry is recent.
                if row.expires_at - now < SESSION_IDLE - chrono::Duration::minutes(5) {
                    let _ = d
                        .store()
                        .extend_session(&token, now, now + SESSION_IDLE)
                        .await;
                }
                Some(Session {
                    token,
                    user: row.user,
                    csrf: row.csrf,
                })
            }
            Ok(None) => None,
            Err(err) => return Failure::from(err).into_response(),
        },
        None => None,
    };
    match session {
        Some(session) => {
            request.extensions_mut().insert(session);
            next.run(request).await
        }
        None if matches!(*request.method(), Method::GET | Method::HEAD)
            && request.uri().path() != "/events" =>
        {
            Redirect::to(&login_for(request.uri())).into_response()
        }
        None => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Cookie realm=\"satflow\"")],
            "log in first: POST /login\n",
        )
            .into_response(),
    }
}

/// Why a page could not be made.
#[derive(Debug)]
enum Failure {
    Store(crate::store::StoreError),
    Template(minijinja::Error),
    /// A refusal with its status and the sentence shown.
    Refused(StatusCode, String),
}

impl From<crate::store::StoreError> for Failure {
    fn from(e: crate::store::StoreError) -> Failure {
        Failure::Store(e)
    }
}

impl From<minijinja::Error> for Failure {
    fn from(e: minijinja::Error) -> Failure {
        Failure::Template(e)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Failure::Store(e) => {
                tracing::warn!(error = %e, "a dashboard page could not read the database");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the database cannot be read right now; try again shortly\n",
                )
                    .into_response()
            }
            Failure::Template(e) => {
                tracing::error!(error = %e, "a dashboard template failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "this page could not be rendered\n",
                )
                    .into_response()
            }
            Failure::Refused(status, text) => (status, mask_ibans(&text)).into_response(),
        }
    }
}

type Page = Result<Response, Failure>;

fn templates() -> &'static minijinja::Environment<'static> {
    static ENV: OnceLock<minijinja::Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = minijinja::Environment::new();
        // A path segment: workflow and user names in form actions.
        env.add_filter("urlencode", |text: String| -> String {
            text.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect()
        });
        for (name, text) in [
            ("style.css", include_str!("templates/style.css")),
            ("base.html", include_str!("templates/base.html")),
            ("macros.html", include_str!("templates/macros.html")),
            ("login.html", include_str!("templates/login.html")),
            ("overview.html", include_str!("templates/overview.html")),
            ("runs.html", include_str!("templates/runs.html")),
            ("run.html", include_str!("templates/run.html")),
            ("exchanges.html", include_str!("templates/exchanges.html")),
            ("exchange.html", include_str!("templates/exchange.html")),
            ("outbox.html", include_str!("templates/outbox.html")),
            (
                "outbox_item.html",
                include_str!("templates/outbox_item.html"),
            ),
            ("addresses.html", include_str!("templates/addresses.html")),
            (
                "withdrawals.html",
                include_str!("templates/withdrawals.html"),
            ),
            ("report.html", include_str!("templates/report.html")),
            ("users.html", include_str!("templates/users.html")),
            ("message.html", include_str!("templates/message.html")),
            ("approvals.html", include_str!("templates/approvals.html")),
            ("approval.html", include_str!("templates/approval.html")),
            ("audit.html", include_str!("templates/audit.html")),
        ] {
            env.add_template(name, text)
                .expect("the embedded templates are valid");
        }
        env
    })
}

/// Renders `name` with `ctx`, IBANs masked, as an HTML answer.
fn html(status: StatusCode, name: &str, ctx: Value) -> Page {
    let text = templates()
        .get_template(name)?
        .render(crate::expr::context(&ctx))?;
    Ok((
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "same-origin"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        ],
        mask_ibans(&text),
    )
        .into_response())
}

/// A page of the logged-in dashboard: `extra` plus who is looking and the CSRF token.
fn page(s: &Session, name: &str, active: &str, title: &str, extra: Value) -> Page {
    let mut ctx = json!({
        "user": {
            "name": s.user.name,
            "role": s.user.role,
            "can_operate": s.user.role.can_operate(),
            "can_admin": s.user.role.can_admin(),
        },
        "csrf": s.csrf,
        "active": active,
        "title": title,
    });
    if let (Value::Object(ctx), Value::Object(extra)) = (&mut ctx, extra) {
        ctx.extend(extra);
    }
    html(StatusCode::OK, name, ctx)
}

fn message(s: &Session, status: StatusCode, title: &str, text: &str, back: &str) -> Page {
    let mut r = page(
        s,
        "message.html",
        "",
        title,
        json!({ "message": text, "back": back }),
    )?;
    *r.status_mut() = status;
    Ok(r)
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn when_opt(t: Option<DateTime<Utc>>) -> Value {
    t.map_or(Value::Null, |t| Value::String(when(t)))
}

fn dec(d: Option<Decimal>) -> Value {
    d.map_or(Value::Null, |d| Value::String(d.normalize().to_string()))
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// The page number asked for (`?page=N`, from 1).
fn page_number(q: &HashMap<String, String>) -> Result<i64, Failure> {
    match q.get("page") {
        None => Ok(1),
        Some(text) => text.parse::<i64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
            Failure::Refused(
                StatusCode::BAD_REQUEST,
                format!(
                    "page: `{}` is not a page number (accepted: 1, 2, 3, …)",
                    text.chars().take(40).collect::<String>()
                ),
            )
        }),
    }
}

/// The pager's numbers for page `n` of `total` rows.
fn pager(n: i64, total: i64) -> Value {
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    json!({
        "page": n, "pages": pages, "total": total,
        "prev": (n > 1).then(|| (n - 1).min(pages)),
        "next": (n < pages).then_some(n + 1),
    })
}

fn refuse_unless(allowed: bool, what: &str) -> Result<(), Failure> {
    if allowed {
        Ok(())
    } else {
        Err(Failure::Refused(
            StatusCode::FORBIDDEN,
            format!("your role may not {what}; ask an admin (`satflow user role NAME operator`)\n"),
        ))
    }
}

fn refuse_bad_csrf(s: &Session, given: Option<&str>) -> Result<(), Failure> {
    if s.csrf_matches(given) {
        Ok(())
    } else {
        Err(Failure::Refused(
            StatusCode::FORBIDDEN,
            "this form is missing its CSRF token, or it is from an older session; reload the page and try again\n".into(),
        ))
    }
}

async fn not_found(axum::Extension(s): axum::Extension<Session>) -> Page {
    message(
        &s,
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such page.",
        "/",
    )
}

// ── Login and logout ────────────────────────────────────────────────────────────────────────

fn secure(d: &Dashboard, headers: &HeaderMap) -> bool {
    d.0.parts.secure_cookies || auth::over_tls(headers)
}

fn login_form(
    d: &Dashboard,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<&str>,
    name: Option<&str>,
    next: Option<&str>,
) -> Page {
    // The token already set is kept: a second GET of the login page (a redirected favicon
    // request, another tab) must not invalidate the form shown first.
    let csrf = auth::cookie(headers, LOGIN_CSRF_COOKIE)
        .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map_or_else(users::random_token, str::to_string);
    let mut r = html(
        status,
        "login.html",
        json!({ "csrf": csrf, "error": error, "name": name, "next": next.map(|n| back_to(Some(n))) }),
    )?;
    r.headers_mut().append(
        header::SET_COOKIE,
        auth::set_cookie(
            LOGIN_CSRF_COOKIE,
            &csrf,
            chrono::Duration::hours(1),
            secure(d, headers),
        ),
    );
    Ok(r)
}

async fn login_page(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Page {
    let next = q.get("next").map(String::as_str);
    if let Some(token) = auth::cookie(&headers, SESSION_COOKIE)
        && d.store().session(token, d.auth_now()).await?.is_some()
    {
        return Ok(Redirect::to(back_to(next)).into_response());
    }
    login_form(&d, &headers, StatusCode::OK, None, None, next)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    /// The page asked for before the login (see `back_to`).
    #[serde(default)]
    next: Option<String>,
}

/// Where a login goes on to: the page asked for (an approver's emailed link, say) when it is a
/// path of this site, else the overview. Never another site: `//host` and `/\host` are refused.
fn back_to(next: Option<&str>) -> &str {
    match next {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && p.len() <= 2048
                && !p.chars().any(char::is_control) =>
        {
            p
        }
        _ => "/",
    }
}

/// The login page's address for a request of `uri` without a session.
fn login_for(uri: &axum::http::Uri) -> String {
    match uri.path_and_query().map(|p| p.as_str()) {
        None | Some("/") => "/login".into(),
        Some(p) => format!(
            "/login?next={}",
            url::form_urlencoded::byte_serialize(p.as_bytes()).collect::<String>()
        ),
    }
}

async fn login(State(d): State<Dashboard>, headers: HeaderMap, Form(f): Form<LoginForm>) -> Page {
    let expected = auth::cookie(&headers, LOGIN_CSRF_COOKIE);
    let csrf_ok = match (expected, f.csrf.as_deref()) {
        (Some(e), Some(g)) => auth::same(e, g),
        _ => false,
    };
    if !csrf_ok {
        return login_form(
            &d,
            &headers,
            StatusCode::FORBIDDEN,
            Some("The login form expired (its CSRF token is missing or old); try again."),
            None,
            f.next.as_deref(),
        );
    }
    let now = d.auth_now();
    if let Some(wait) = d.0.limiter.refused(&f.name, now) {
        let text = format!(
            "Too many failed logins; try again in {} minutes.",
            wait.num_minutes() + 1
        );
        return login_form(
            &d,
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            Some(&text),
            None,
            f.next.as_deref(),
        );
    }
    let found = d.store().user_for_login(&f.name).await?;
    // An unknown name is checked against a dummy hash: it takes as long as a wrong password.
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), hash),
        None => (None, users::dummy_hash().to_string()),
    };
    let password = f.password;
    let verified = tokio::task::spawn_blocking(move || users::verify_password(&hash, &password))
        .await
        .unwrap_or(false);
    let Some(user) = user.filter(|_| verified) else {
        d.0.limiter.failed(&f.name, now);
        // The name is not logged: people type passwords into the name field.
        tracing::info!("a dashboard login failed");
        return login_form(
            &d,
            &headers,
            StatusCode::UNAUTHORIZED,
            Some("Wrong name or password."),
            Some(&f.name),
            f.next.as_deref(),
        );
    };
    d.0.limiter.succeeded(&f.name);
    let token = users::random_token();
    let csrf = users::random_token();
    d.store()
        .create_session(&token, &user.name, &csrf, now, now + SESSION_IDLE)
        .await?;
    let _ = d.store().delete_expired_sessions(now).await;
    tracing::info!(user = %user.name, "logged in to the dashboard");
    let entry = crate::store::audit::NewAudit {
        actor: user.name.as_str().to_string(),
        kind: "user.logged_in".into(),
        subject: format!("user/{}", user.name),
        detail: json!({ "via": "dashboard" }),
    };
    d.store().audit(&entry, d.now()).await?;
    let mut r = Redirect::to(back_to(f.next.as_deref())).into_response();
    let secure = secure(&d, &headers);
    r.headers_mut().append(
        header::SET_COOKIE,
        auth::set_cookie(SESSION_COOKIE, &token, SESSION_IDLE, secure),
    );
    r.headers_mut().append(
        header::SET_COOKIE,
        auth::set_cookie(LOGIN_CSRF_COOKIE, "", chrono::Duration::zero(), secure),
    );
    Ok(r)
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: Option<String>,
}

async fn logout(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    axum::Extension(s): axum::Extension<Session>,
    Form(f): Form<CsrfForm>,
) -> Page {
    refuse_bad_csrf(&s, f.csrf.as_deref())?;
    d.store().delete_session(&s.token).await?;
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        auth::set_cookie(
            SESSION_COOKIE,
            "",
            chrono::Duration::zero(),
            secure(&d, &headers),
        ),
    );
    Ok(r)
}

// ── Overview ────────────────────────────────────────────────────────────────────────────────

fn totals_json(t: &Totals) -> Value {
    let fees = t
        .payout_fees_btc
        .checked_add(t.withdrawal_fees_btc)
        .unwrap_or(t.payout_fees_btc);
    json!({
        "btc_bought": t.btc_bought.normalize().to_string(),
        "withdrawn_btc": t.withdrawn_btc.normalize().to_string(),
        "fees_btc": fees.normalize().to_string(),
        "currencies": t.by_currency.iter().map(|(code, c)| json!({
            "code": code.to_uppercase(),
            "buys": c.buys,
            "spent": c.spent.normalize().to_string(),
            "fees": c.fees.normalize().to_string(),
            "btc": c.btc.normalize().to_string(),
            "average": c.average_price().map(|p| p.to_string()),
            "refunds": c.refunds,
            "refunded": c.refunded.normalize().to_string(),
        })).collect::<Vec<_>>(),
    })
}

fn run_json(r: &crate::store::RunRow) -> Value {
    json!({
        "id": r.id,
        "workflow": r.workflow,
        "trigger": r.trigger.name(),
        "trigger_key": r.trigger_key,
        "status": r.status.name(),
        "created_at": when(r.created_at),
        "started_at": when_opt(r.started_at),
        "finished_at": when_opt(r.finished_at),
        "error": r.error,
        "event": r.event.as_ref().map(pretty),
    })
}

fn exchange_json(e: &crate::store::ExchangeRow) -> Value {
    let x = &e.exchange;
    json!({
        "id": e.id,
        "order_id": e.order_id,
        "state": e.state.name(),
        "pair": x.pair,
        "fiat": x.pair.as_deref().and_then(|p| p.split('/').nth(1)).map(str::to_uppercase),
        "cost": dec(x.cost),
        "fee": dec(x.fee),
        "amount": dec(x.amount),
        "rate": dec(x.rate),
        "executed_on": when_opt(x.executed_on),
        "first_seen_at": when(e.first_seen_at),
        "updated_at": when(e.updated_at),
        "next_check_at": when_opt(e.next_check_at),
        "check_count": e.check_count,
        "confirmations": e.confirmations,
    })
}

fn item_json(i: &crate::store::ItemRow) -> Value {
    use crate::actions::http_post as http;
    let shown_url = (i.kind == http::KIND)
        .then(|| http::shown_url(&i.payload))
        .flatten();
    // The URL an http.post is sent to may hold a token: errors show the redacted one.
    let clean = |e: &str| match (&shown_url, i.payload["url"].as_str()) {
        (Some(shown), Some(real)) => crate::source::redact::in_text(e, real, shown),
        _ => e.to_string(),
    };
    json!({
        "id": i.id,
        "kind": i.kind,
        "key": i.key,
        "url": shown_url,
        "status": i.status.name(),
        "attempts": i.attempts,
        "next_attempt_at": (i.status == OutboxStatus::Pending).then(|| when(i.next_attempt_at)),
        "last_error": i.last_error.as_deref().map(clean),
        "run_id": i.run_id,
        "step_id": i.step_id,
        "created_at": when(i.created_at),
        "updated_at": when(i.updated_at),
    })
}

async fn exchanges_by_id(d: &Dashboard, ids: &[String]) -> Result<Vec<Value>, Failure> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(e) = d.store().exchange(id).await? {
            out.push(exchange_json(&e));
        }
    }
    Ok(out)
}

async fn items_by_id(d: &Dashboard, ids: &[String]) -> Result<Vec<Value>, Failure> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids.iter().filter_map(|id| id.parse::<i64>().ok()) {
        if let Some(i) = d.store().outbox_item(id).await? {
            out.push(item_json(&i));
        }
    }
    Ok(out)
}

/// The next fire of each scheduled workflow in its own zone (and in UTC); event workflows
/// say what starts them.
fn workflows_json(d: &Dashboard, now: DateTime<Utc>) -> Vec<Value> {
    let mut list: Vec<(Option<DateTime<Zone>>, Value)> = d
        .0
        .parts
        .workflows
        .iter()
        .map(|w| {
            let next = w.schedule.as_ref().and_then(|s| s.next_after(now));
            let doc = json!({
                "name": w.name,
                "next_local": next.as_ref().map(|t| t.format("%a %Y-%m-%d %H:%M %Z").to_string()),
                "next_utc": next.as_ref().map(|t| when(t.to_utc())),
                "on": if w.on_events { "on exchange events" } else { "manual only" },
            // A run of an event workflow without its event would only fail.
            "event_only": w.on_events && w.schedule.is_none(),
            });
            (next, doc)
        })
        .collect();
    crate::sorting::sort_by_key(&mut list, |(t, _)| {
        t.as_ref()
            .map(|t| t.to_utc())
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    });
    list.into_iter().map(|(_, v)| v).collect()
}

async fn overview(
    State(d): State<Dashboard>,
    axum::Extension(s): axum::Extension<Session>,
    Query(q): Query<HashMap<String, String>>,
) -> Page {
    let now = d.now();
    let view = d.ledger().await?;
    let (pending, dead) = d.store().outbox_backlog().await?;
    let unsettled_total = d
        .store()
        .dashboard_count(Listing::UnsettledExchanges)
        .await?;
    let unsettled_ids = d
        .store()
        .dashboard_page(Listing::UnsettledExchanges, 0, 20)
        .await?;
    let dead_ids = d.store().dashboard_page(Listing::DeadOutbox, 0, 20).await?;
    let runs = d.store().recent_runs(10).await?;
    let problems = d.problems().await;
    page(
        &s,
        "overview.html",
        "overview",
        "Overview",
        json!({
            "notice": notice(&q),
            "totals": totals_json(&view.totals),
            "chart": chart::stack_svg(&view.entries, now),
            "outbox": { "pending": pending, "dead": dead },
            "unsettled_total": unsettled_total,
            "unsettled": exchanges_by_id(&d, &unsettled_ids).await?,
            "dead": items_by_id(&d, &dead_ids).await?,
            "runs": runs.iter().map(run_json).collect::<Vec<_>>(),
            "workflows": workflows_json(&d, now),
            "problems": *problems,
        }),
    )
}

/// The sentence shown after an action redirected here (`?done=…`); only known ones, so a link
/// cannot make the page say anything.
fn notice(q: &HashMap<String, String>) -> Option<String> {
    let id = q.get("id").and_then(|id| id.parse::<i64>().ok());
    match (q.get("done").map(String::as_str), id) {
        (Some("retried"), Some(id)) => Some(format!(
            "Item #{id} is queued again with a fresh attempt budget."
        )),
        (Some("discarded"), Some(id)) => Some(format!("Item #{id} is discarded.")),
        (Some("triggered"), Some(id)) => Some(format!("Run #{id} is queued.")),
        _ => None,
    }
}

/// Live counts for the overview, as server-sent events every few seconds (the page is complete
/// without them; the browser reconnects when the server's request deadline ends a stream).
async fn events(State(d): State<Dashboard>) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let stream = futures_util::stream::unfold((d, true), |(d, first)| async move {
        if !first {
            tokio::time::sleep(StdDuration::from_secs(5)).await;
        }
        let counts = async {
            let (pending, dead) = d.store().outbox_backlog().await?;
            let unsettled = d
                .store()
                .dashboard_count(Listing::UnsettledExchanges)
                .await?;
            Ok::<_, crate::store::StoreError>(
                json!({ "pending": pending, "dead": dead, "unsettled": unsettled }),
            )
        }
        .await;
        let event = match counts {
            Ok(doc) => Event::default().data(doc.to_string()),
            Err(_) => Event::default().comment("the database cannot be read right now"),
        };
        Some((Ok::<_, std::convert::Infallible>(event), (d, false)))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

// ── Lists and details ───────────────────────────────────────────────────────────────────────

async fn runs(
    State(d): State<Dashboard>,
    axum::Extension(s): axum::Extension<Session>,
    Query(q): Query<HashMap<String, String>>,
) -> Page {
    let n = page_number(&q)?;
    let total = d.store().dashboard_count(Listing::Runs).await?;
    let ids = d
        .store()
        .dashboard_page(Listing::Runs, (n - 1) * PAGE_SIZE, PAGE_SIZE)
        .await?;
    let mut rows = Vec::new();
    for id in ids.iter().filter_map(|id| id.parse::<i64>().ok()) {
        if let Some(r) = d.store().run(id).await? {
            rows.push(run_json(&r));
        }
    }
    page(
        &s,
        "runs.html",
        "runs",
        "Runs",
        json!({ "runs": rows, "pager": pager(n, total) }),
    )
}

async fn run(
    State(d): State<Dashboard>,
    axum::Extension(s): axum::Extension<Session>,
    Path(id): Path<String>,
) -> Page {
    let found = match id.parse::<i64>() {
        Ok(id) => d.store().run(id).await?,
        Err(_) => None,
    };
    let Some(r) = found else {
        return message(
            &s,
            StatusCode::NOT_FOUND,
            "No such run",
            "There is no run with that number.",
            "/runs",
        );
    };
    let steps = d.store().steps(r.id).await?;
    page(
        &s,
        "run.html",
        "runs",
        &format!("Run #{}", r.id),
        json!({
            "run": run_json(&r),
            "steps": steps.iter().map(|st| json!({
                "step_id": st.step_id,
                "position": st.position + 1,
                "status": st.status.name(),
                "output": st.output.as_ref().map(pretty),
                "error": st.error,
                "started_at": when(st.started_at),
                "finished_at": when_opt(st.finished_at),
            })).collect::<Vec<_>>(),
        }),
    )
}

async fn exchanges(
    State(d): State<Dashboard>,
    axum::Extension(s): axum::Extension<Session>,
    Query(q): Query<HashMap<String, String>>,
) -> Page {
    let n = page_number(&q)?;
    let total = d.store().dashboard_count(Listing::Exchanges).await?;
    let ids = d
        .store()
        .dashboard_page(Listing::Exchanges, (n - 1) * PAGE_SIZE, PAGE_SIZE)
        .await?;
    page(
        &s,
        "exchanges.html",
        "exchanges",
        "Exchanges",
        json!({ "exchanges": exchanges_by_id(&d, &ids).await?, "pager": pager(n, total) }),
    )
}

async fn exchange(
    State(d): State<Dashboard>,
    axum::Extension(s): axum::Extension<Session>,
    Path(id): Path<String>,
) -> Page {
    let Some(e) = d.store().exchange(&id).await? else {
        return message(
            &s,
            StatusCode::NOT_FOUND,
            "No such exchange",
            "There is no exchange with that id.",
            "/exchanges",
        );
    };
    let events = d.store().exchange_events(&e.id).await?;
    let payout = e.exchange.payout.as_ref().map(|p| {
        json!({
            "kind": p.kind,
            "address": p.bitcoin_address,
            "invoice": p.invoice,
            "txid": p.txid,
            "amount": dec(p.amount),
            "fee": dec(p.fee),
        })
    });
    page(
        &s,
        "exchange.html",
        "exchanges",
        &format!("Exchange {}", e.id),
        json!({
            "e": exchange_json(&e),
            "payout": payout,
            "events": events.iter().map(|ev| json!({
                "event": ev.event,
                "source": ev.source,
                "recorded_at": when(ev.recorded_at),
                "payload": pretty(&ev.payload),
            })).collect::<Vec<_>>(),
        }),
    )
}

async fn outbox(
    State(d): State<Dashboard>,
    axum::Extension(s): axum::Extension<Session>,
    Query(q): Query<HashMap<String, String>>,
) -> Page {
    let n = page_number(&q)?;
    let total = d.store().dashboard_count(Listing::Outbox).await?;
    let ids = d
        .store()
        .dashboard_page(Listing::Outbox, (n - 1) * PAGE_SIZE, PAGE_SIZE)
        .await?;
    let (pending, dead) = d.store().outbox_backlog().await?;
    page(
        &s,
        "outbox.html",
        "outbox",
        "Outbox",
        json!({
            "notice": notice(&q),
            "items": items_by_id(&d, &ids).await?,
            "outbox": { "pending": pending, "dead": dead },
            "pager": pager(n, total),
        }),
    )
}

async fn outbox_item(
    State(d): State<Dashboard>,
    axum::Extension(s): axum::Extension<Session>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Page {
    let found = match id.parse::<i64>() {
        Ok(id) => d.store().outbox_item(id).await?,
        Err(_) => None,
    };
    let Some(i) = found else {
        return message(
            &s,
            StatusCode::NOT_FOUND,
            "No such item",
            "There is no outbox item with that number.",
            "/outbox",
        );
    };
    let attempts = d.store().outbox_attempts(i.id).await?;
    let doc = item_json(&i);
    let clean = |e: &str| match (doc["url"].as_str(), i.payload["url"].as_str()) {
        (Some(shown), Some(real)) => crate::source::redact::in_text(e, real, shown),
        _ => e.to_string(),
    };
    page(
        &s,
        "outbox_item.html",
        "outbox",
        &format!("Outbox item #{}", i.id),
        json!({
            "notice": notice(&q),
            "i": doc,
            "attempts": attempts.iter().map(|a| json!({
                "attempt": a.attempt,
                "started_at": when(a.started_at),
                "finished_at": when_opt(a.finished_at),
                "outcome": a.outcome.map(|o| o.name()),
                "http_status": a.http_status,
                "error": a.error.as_deref().map(clean),
            })).collect::<Vec<_>>(),
        }),
    )
}

async fn retry(
    State(d): State<Dashboard>,
    axum::Extension(s): axum::Extension<Session>,
    Path(id): Path<i64>,
    Form(f): Form<CsrfForm>,
) -> Page {
    refuse_bad_csrf(&s, f.csrf.as_deref())?;
    refuse_unless(s.user.role.can_operate(), "retry outbox items")?;
    if d.store()
        .retry_item(id, s.user.name.as_str(), d.now())
        .await?
    {
        tracing::info!(user = %s.user.name, item = id, "outbox item retried from the dashboard");
        d.0.parts.wake_outbox.notify_one();
        Ok(Redirect::to(&format!("/outbox/{id}?done=retried&id={id}")).into_response())
    } else {
        message(
            &s,
            StatusCode::CONFLICT,
            "Not retried",
            &format!("Item #{id} is not dead; only dead items can be retried."),
            &format!("/outbox/{id}"),
        )
    }
}

async fn discard(
    State(d): State<Dashboard>,
    axum::Extension(s): axum::Extension<Session>,
    Path(id): Path<i64>,
    Form(f): Form<CsrfForm>,
) -> Page {
    refuse_bad_csrf(&s, f.csrf.as_deref())?;
    refuse_unless(s.user.role.can_operate(), "discard outbox items")?;
    if d.store()
        .discard_item(id, s.user.name.as_str(), d.now())
        .await?
    {
        tracing::info!(user = %s.user.name, item = id, "outbox item discarded from the dashboard");
        d.0.parts.wake_runner.notify_one();
        Ok(Redirect::to(&format!("/outbox/{id}?done=discarded&id={id}")).into_response())
    } else {
        message(
            &s,
            StatusCode::CONFLICT,
            "Not discarded",
            &format!("Item #{id} is neither pending nor dead."),
            &format!("/outbox/{id}"),
        )
    }
}

async fn trigger(
    State(d): State<Dashboard>,
    axum::Extension(s): axum::Extension<Session>,
    Path(workflow): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Page {
    refuse_bad_csrf(&s, f.csrf.as_deref())?;
    refuse_unless(s.user.role.can_operate(), "trigger workflows")?;
    if !d.0.parts.workflows.iter().any(|w| w.name == workflow) {
        return message(
            &s,
            StatusCode::NOT_FOUND,
            "No such workflow",
            "There is no workflow of that name.",
            "/",
        );
    }
    let now = d.now();
    let key = format!("dashboard-{}-{}", s.user.name, users::random_token());
    let Some(id) = d
        .store()
        .queue_manual_run(
            &workflow,
            &key,
            Some(s.user.name.as_str()),
            "dashboard",
            now,
        )
        .await?
    else {
        return message(
            &s,
            StatusCode::CONFLICT,
            "Not queued",
            "That run was already queued.",
            "/",
        );
    };
    tracing::info!(user = %s.user.name, %workflow, run = id, "workflow triggered from the dashboard");
    d.0.parts.wake_runner.notify_one();
    Ok(Redirect::to(&format!("/?done=triggered&id={id}")).into_response())
}

async fn addresses(
    State(d): State<Dashboard>,
    axum::Extension(s): axum::Extension<Session>,
) -> Page {
    let mut names = d.0.parts.wallets.clone();
    for w in d.store().wallets_with_addresses().await? {
        if !names.contains(&w) {
            names.push(w);
        }
    }
    let mut wallets = Vec::new();
    for name in &names {
        let rows = d.store().wallet_addresses(name).await?;
        wallets.push(json!({
            "name": name,
            "addresses": rows.iter().map(|a| json!({
                "index": a.index, "address": a.address, "state": a.state,
                "used_by": a.used_by, "at": when(a.at),
            })).collect::<Vec<_>>(),
        }));
    }
    page(
        &s,
        "addresses.html",
        "addresses",
        "Addresses",
        json!({ "wallets": wallets }),
    )
}

async fn withdrawals(
    State(d): State<Dashboard>,
    axum::Extension(s): axum::Extension<Session>,
    Query(q): Query<HashMap<String, String>>,
) -> Page {
    let n = page_number(&q)?;
    // Withdrawals are few (one a week per workflow): read them whole and page here.
    let all = d.store().withdrawals(i64::MAX).await?;
    let rows: Vec<Value> = all
        .iter()
        .skip(((n - 1) * PAGE_SIZE) as usize)
        .take(PAGE_SIZE as usize)
        .map(|w| {
            json!({
                "key": w.key, "workflow": w.workflow, "provider": w.provider, "wallet": w.wallet,
                "address": w.address, "status": w.status.name(), "amount_sat": w.amount_sat,
                "fee_sat": w.fee_sat, "txid": w.txid, "confirmations": w.confirmations,
                "created_at": when(w.created_at), "reason": w.reason,
            })
        })
        .collect();
    page(
        &s,
        "withdrawals.html",
        "withdrawals",
        "Withdrawals",
        json!({ "withdrawals": rows, "pager": pager(n, all.len() as i64) }),
    )
}

async fn report(
    State(d): State<Dashboard>,
    axum::Extension(s): axum::Extension<Session>,
    Query(q): Query<HashMap<String, String>>,
) -> Page {
    let n = page_number(&q)?;
    let view = d.ledger().await?;
    // Newest first on the page; the CSV keeps the ledger's order.
    let entries: Vec<Value> = view
        .entries
        .iter()
        .rev()
        .skip(((n - 1) * PAGE_SIZE) as usize)
        .take(PAGE_SIZE as usize)
        .map(|e| {
            json!({
                "date": when(e.date), "kind": e.kind, "reference": e.reference,
                "currency": e.currency.as_deref().map(str::to_uppercase),
                "fiat": dec(e.fiat), "fiat_fee": dec(e.fiat_fee), "btc": dec(e.btc),
                "btc_fee": dec(e.btc_fee), "rate": dec(e.rate), "address": e.address, "txid": e.txid,
            })
        })
        .collect();
    page(
        &s,
        "report.html",
        "report",
        "Report",
        json!({
            "totals": totals_json(&view.totals),
            "skipped": view.skipped,
            "entries": entries,
            "pager": pager(n, view.entries.len() as i64),
        }),
    )
}

async fn report_csv(State(d): State<Dashboard>) -> Page {
    let view = d.ledger().await?;
    let text = ledger::csv(&view.entries).map_err(|e| {
        Failure::Refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the CSV could not be written: {e}\n"),
        )
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"satflow-report.csv\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        mask_ibans(&text),
    )
        .into_response())
}

// ── Users (admins) ──────────────────────────────────────────────────────────────────────────

async fn users_page(
    State(d): State<Dashboard>,
    axum::Extension(s): axum::Extension<Session>,
    Query(q): Query<HashMap<String, String>>,
) -> Page {
    refuse_unless(s.user.role.can_admin(), "manage users")?;
    let all = d.store().list_users().await?;
    let notice = match q.get("done").map(String::as_str) {
        Some("added") => Some("The user is added."),
        Some("removed") => Some("The user is removed and their sessions are ended."),
        Some("role") => Some("The role is changed."),
        _ => None,
    };
    page(
        &s,
        "users.html",
        "users",
        "Users",
        json!({
            "notice": notice,
            "users": all.iter().map(|u| json!({ "name": u.name, "role": u.role, "created_at": when(u.created_at) })).collect::<Vec<_>>(),
            "roles": Role::ALL.iter().map(|r| r.name()).collect::<Vec<_>>(),
        }),
    )
}

#[derive(Deserialize)]
struct AddUserForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    password: String,
}

/// A decision taken on the dashboard, on the audit log with the session's user as its actor.
async fn audit(
    d: &Dashboard,
    s: &Session,
    kind: &str,
    subject: &str,
    detail: Value,
) -> Result<(), Failure> {
    let entry = crate::store::audit::NewAudit {
        actor: s.user.name.as_str().to_string(),
        kind: kind.into(),
        subject: subject.into(),
        detail: json!({ "via": "dashboard", "detail": detail }),
    };
    d.store().audit(&entry, d.now()).await?;
    Ok(())
}

async fn add_user(
    State(d): State<Dashboard>,
    axum::Extension(s): axum::Extension<Session>,
    Form(f): Form<AddUserForm>,
) -> Page {
    refuse_bad_csrf(&s, f.csrf.as_deref())?;
    refuse_unless(s.user.role.can_admin(), "manage users")?;
    let bad = |text: String| message(&s, StatusCode::BAD_REQUEST, "Not added", &text, "/users");
    let name = match UserName::parse(&f.name) {
        Ok(n) => n,
        Err(e) => return bad(e.to_string()),
    };
    let role: Role = match f.role.parse() {
        Ok(r) => r,
        Err(e) => return bad(format!("role: {e}")),
    };
    if let Err(e) = users::check_new_password(&f.password) {
        return bad(e.to_string());
    }
    let password = f.password;
    let hash = tokio::task::spawn_blocking(move || users::hash_password(&password))
        .await
        .map_err(|_| {
            Failure::Refused(StatusCode::INTERNAL_SERVER_ERROR, "hashing failed\n".into())
        })?;
    if !d.store().add_user(&name, role, &hash, d.auth_now()).await? {
        return bad(format!("there is already a user `{name}`"));
    }
    tracing::info!(by = %s.user.name, user = %name, %role, "user added from the dashboard");
    audit(
        &d,
        &s,
        "user.added",
        &format!("user/{name}"),
        json!({ "role": role.name() }),
    )
    .await?;
    Ok(Redirect::to("/users?done=added").into_response())
}

async fn remove_user(
    State(d): State<Dashboard>,
    axum::Extension(s): axum::Extension<Session>,
    Path(name): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Page {
    refuse_bad_csrf(&s, f.csrf.as_deref())?;
    refuse_unless(s.user.role.can_admin(), "manage users")?;
    if name == s.user.name.as_str() {
        return message(
            &s,
            StatusCode::CONFLICT,
            "Not removed",
            "You cannot remove yourself; another admin can.",
            "/users",
        );
    }
    if !d.store().remove_user(&name).await? {
        return message(
            &s,
            StatusCode::NOT_FOUND,
            "Not removed",
            "There is no such user.",
            "/users",
        );
    }
    tracing::info!(by = %s.user.name, user = %name, "user removed from the dashboard");
    audit(&d, &s, "user.removed", &format!("user/{name}"), json!({})).await?;
    Ok(Redirect::to("/users?done=removed").into_response())
}

#[derive(Deserialize)]
struct RoleForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    role: String,
}

async fn set_role(
    State(d): State<Dashboard>,
    axum::Extension(s): axum::Extension<Session>,
    Path(name): Path<String>,
    Form(f): Form<RoleForm>,
) -> Page {
    refuse_bad_csrf(&s, f.csrf.as_deref())?;
    refuse_unless(s.user.role.can_admin(), "manage users")?;
    let role: Role = match f.role.parse() {
        Ok(r) => r,
        Err(e) => {
            return message(
                &s,
                StatusCode::BAD_REQUEST,
                "Not changed",
                &format!("role: {e}"),
                "/users",
            );
        }
    };
    if name == s.user.name.as_str() && !role.can_admin() {
        return message(
            &s,
            StatusCode::CONFLICT,
            "Not changed",
            "You cannot take away your own admin role; another admin can.",
            "/users",
        );
    }
    if !d.store().set_role(&name, role, d.auth_now()).await? {
        return message(
            &s,
            StatusCode::NOT_FOUND,
            "Not changed",
            "There is no such user.",
            "/users",
        );
    }
    tracing::info!(by = %s.user.name, user = %name, %role, "role changed from the dashboard");
    audit(
        &d,
        &s,
        "user.role_changed",
        &format!("user/{name}"),
        json!({ "role": role.name() }),
    )
    .await?;
    Ok(Redirect::to("/users?done=role").into_response())
}

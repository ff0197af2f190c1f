//! Treasury controls over the real daemon: a withdrawal that needs two of three approvers waits,
//! runs after two CLI approvals, fails after a rejection and after its deadline, and its
//! proposer cannot approve it; the audit log holds every decision and effect, `audit verify`
//! passes, and fails naming the row once a row is altered in the database by hand.

use std::time::Duration;

use satflow::sandbox::{self, SandboxOptions};
use serde_json::{Value, json};

use super::dashboard::Browser;
use super::helpers::{Backend, TestApp, eventually, on_both_backends, terminate};
use super::withdrawals::{hub_withdrawals, hub_yaml, with_providers, with_providers_on};

fn approvals(app: &TestApp, all: bool) -> Vec<Value> {
    let mut args = vec!["approvals", "--json"];
    if all {
        args.push("--all");
    }
    let run = app.satflow(&args);
    assert_eq!(run.code, 0, "{run:?}");
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    doc["approvals"].as_array().unwrap().clone()
}

fn audit(app: &TestApp) -> Vec<Value> {
    let run = app.satflow(&["audit", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    doc["entries"].as_array().unwrap().clone()
}

fn run_of(app: &TestApp, id: i64) -> Value {
    app.runs()
        .into_iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no run {id}"))
}

/// The number in `queued run N of workflow …`.
fn queued_id(stdout: &str) -> i64 {
    stdout
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no run id in {stdout}"))
}

const RULE: &str = "approval: { required: 2, approvers: [alice, bob, carol], within: 48h }";

async fn a_withdrawal_waits_for_two_of_three_approvals_and_every_decision_is_on_record(
    backend: Backend,
) {
    let (addr, sandbox) = sandbox::spawn(SandboxOptions::default()).await;
    let Some(app) = with_providers_on(
        backend,
        "1s",
        None,
        "hub",
        "min_amount_sat: 100000",
        |dir| hub_yaml(dir, addr),
    ) else {
        return;
    };
    app.write(
        "workflows/sweep.yaml",
        &format!(
            "steps:\n  - id: sweep\n    uses: withdraw\n    with: {{ from: hub, to: {{ wallet: vault }}, min_amount_sat: 100000 }}\n    {RULE}\n"
        ),
    );
    app.write(
        "workflows/quick.yaml",
        "steps:\n  - id: sweep\n    uses: withdraw\n    with: { from: hub, to: { wallet: vault }, min_amount_sat: 100000 }\n    \
         approval: { required: 1, approvers: [bob], within: 2s }\n",
    );
    // The approvers must be users: `check` says which are not.
    let add = |name: &str| {
        let add = app.satflow_with_input(
            &["user", "add", name, "--role", "operator"],
            "a long enough password\n",
        );
        assert_eq!(add.code, 0, "{add:?}");
    };
    add("mallory");
    let check = app.satflow(&["check"]);
    assert_eq!(check.code, 1, "{check:?}");
    assert!(
        check.stdout.contains("there is no user `alice`"),
        "{check:?}"
    );
    for name in ["alice", "bob", "carol"] {
        add(name);
    }
    let check = app.satflow(&["check"]);
    assert_eq!(check.code, 0, "{check:?}");
    sandbox.hub.lock().unwrap().balance_sat = 250_000;
    let mut daemon = app.spawn(&["run"], "daemon.log");
    app.started().await;

    // Proposed by alice: it waits, nothing is withdrawn, each other approver is emailed.
    let queued = app.satflow(&["trigger", "sweep", "--as", "alice"]);
    assert_eq!(queued.code, 0, "{queued:?}");
    let first = queued_id(&queued.stdout);
    eventually(Duration::from_secs(20), "the approval request", || {
        approvals(&app, false).len() == 1
    })
    .await;
    let pending = approvals(&app, false).remove(0);
    assert_eq!(pending["status"], "waiting_approval");
    assert_eq!(pending["run_id"], first);
    assert_eq!(pending["proposer"], "alice");
    let id = pending["id"].as_i64().unwrap().to_string();
    assert_eq!(run_of(&app, first)["status"], "waiting");
    assert!(hub_withdrawals(&sandbox).is_empty());
    eventually(Duration::from_secs(10), "the approvers' emails", || {
        app.emails()
            .iter()
            .filter(|e| e.contains("needs your approval"))
            .count()
            == 2
    })
    .await;
    let emails = app.emails().join("\n");
    assert!(emails.contains("Hello bob"), "{emails}");
    assert!(emails.contains("Hello carol"), "{emails}");
    assert!(
        !emails.contains("Hello alice"),
        "the proposer is not asked: {emails}"
    );
    assert!(emails.contains("?token="), "{emails}");
    assert!(
        emails.contains(&super::withdrawals::vault_address(0)),
        "the address: {emails}"
    );

    // The proposer cannot approve their own run; a stranger is not an approver.
    let own = app.satflow(&["approve", &id, "--as", "alice"]);
    assert_eq!(own.code, 1, "{own:?}");
    assert!(own.stderr.contains("proposed this run"), "{own:?}");
    let stranger = app.satflow(&["approve", &id, "--as", "mallory"]);
    assert_eq!(stranger.code, 1, "{stranger:?}");

    // One approval is not enough; the second lets the withdrawal go.
    let one = app.satflow(&[
        "approve",
        &id,
        "--as",
        "bob",
        "--comment",
        "checked the address",
    ]);
    assert_eq!(one.code, 0, "{one:?}");
    assert!(one.stdout.contains("1 of 2"), "{one:?}");
    let again = app.satflow(&["approve", &id, "--as", "bob"]);
    assert_eq!(again.code, 1, "{again:?}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        hub_withdrawals(&sandbox).is_empty(),
        "one approval moved money"
    );
    let two = app.satflow(&["approve", &format!("run/{first}/sweep"), "--as", "carol"]);
    assert_eq!(two.code, 0, "{two:?}");
    eventually(Duration::from_secs(20), "the approved run", || {
        run_of(&app, first)["status"] == "succeeded"
    })
    .await;
    let made = hub_withdrawals(&sandbox);
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0].1, 250_000);

    // A rejection fails the step with who and why; nothing is withdrawn.
    sandbox.hub.lock().unwrap().balance_sat = 300_000;
    let queued = app.satflow(&["trigger", "sweep"]);
    let second = queued_id(&queued.stdout);
    eventually(Duration::from_secs(20), "the second request", || {
        approvals(&app, false).len() == 1
    })
    .await;
    let id = approvals(&app, false)[0]["id"]
        .as_i64()
        .unwrap()
        .to_string();
    assert_eq!(app.satflow(&["approve", &id, "--as", "bob"]).code, 0);
    let no = app.satflow(&["reject", &id, "--as", "carol", "--reason", "not this week"]);
    assert_eq!(no.code, 0, "{no:?}");
    eventually(Duration::from_secs(20), "the rejected run", || {
        run_of(&app, second)["status"] == "failed"
    })
    .await;
    let failed = run_of(&app, second);
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("rejected by carol: not this week"),
        "{failed}"
    );
    assert_eq!(hub_withdrawals(&sandbox).len(), 1);

    // The deadline passes: the step fails and says so.
    let queued = app.satflow(&["trigger", "quick"]);
    let third = queued_id(&queued.stdout);
    eventually(Duration::from_secs(20), "the expired run", || {
        run_of(&app, third)["status"] == "failed"
    })
    .await;
    let expired = run_of(&app, third);
    assert!(
        expired["error"]
            .as_str()
            .unwrap()
            .contains("not given in time"),
        "{expired}"
    );
    assert_eq!(hub_withdrawals(&sandbox).len(), 1);
    let late = app.satflow(&["approve", &format!("run/{third}/sweep"), "--as", "bob"]);
    assert_eq!(late.code, 1, "{late:?}");
    assert_eq!(terminate(&mut daemon), 0);

    // Every decision and effect is on record, in a chain that verifies.
    let entries = audit(&app);
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "daemon.started",
        "run.triggered",
        "approval.requested",
        "approval.refused_self",
        "approval.approved_one",
        "approval.approved",
        "withdrawal.requested",
        "approval.rejected",
        "approval.expired",
        "user.added",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let rejected = entries
        .iter()
        .find(|e| e["kind"] == "approval.rejected")
        .unwrap();
    assert_eq!(rejected["actor"], "carol");
    let verify = app.satflow(&["audit", "verify"]);
    assert_eq!(verify.code, 0, "{verify:?}");
    assert!(verify.stdout.contains("intact"), "{verify:?}");

    // A row altered by hand is found and named.
    let target = entries
        .iter()
        .find(|e| e["kind"] == "withdrawal.requested")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    app.execute_sql(&format!(
        "UPDATE audit_log SET actor = 'nobody' WHERE id = {target}"
    ))
    .await;
    let broken = app.satflow(&["audit", "verify"]);
    assert_eq!(broken.code, 2, "{broken:?}");
    assert!(
        broken.stderr.contains(&format!("row {target}:")),
        "{broken:?}"
    );
}

/// The step output of the last run of `workflow` for step `id`.
fn step_output(app: &TestApp, run: &super::helpers::Run, id: &str) -> Value {
    let _ = app;
    let start = run
        .stdout
        .find('{')
        .unwrap_or_else(|| panic!("no output in {run:?}"));
    let line = run.stdout[start..].lines().next().unwrap();
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line} ({id})"));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_reached_pauses_the_order_at_pocket_and_the_next_period_activates_it() {
    use super::helpers::{Relay, sandbox_post};
    use super::pocket::TestWallet;
    use super::webhooks::{Daemon, SECRET};

    let relay = Relay::start().await;
    let (addr, _sandbox) = sandbox::spawn(SandboxOptions {
        webhook_url: Some(format!("{}/webhooks/pocket", relay.url)),
        webhook_secret: Some(SECRET.into()),
        retry_base: Duration::from_millis(200),
        ..SandboxOptions::default()
    })
    .await;
    let wallet = TestWallet::new();
    let pocket = format!("http://{addr}");
    let d = Daemon::start(
        &pocket,
        0,
        &format!("wallets:\n  cold: {{ xpub: {} }}\n", wallet.zpub),
        &[(
            "dca",
            "steps:\n  - id: order\n    uses: pocket.order\n    with: { currency: eur, fee_rate: 0.015, debitor_iban: DE89370400440532013000, payout: { wallet: cold }, \
             limits: { per_month: 300 EUR, per_exchange: 250 EUR } }\n",
        )],
    )
    .await;
    relay.point_to(&d.url);
    let app = &d.app;
    let setup = app.set_up_order("dca", &wallet.key(0));
    assert_eq!(setup.code, 0, "{setup:?}");
    let order_id = setup.stdout.split_whitespace().nth(2).unwrap().to_string();
    let pay = |amount: &str| {
        let path = format!("sandbox/orders/{order_id}/payments");
        let body = json!({ "amount": amount });
        let pocket = pocket.clone();
        async move { sandbox_post(&pocket, path, body).await }
    };
    let executed = |id: &str| d.exchange(id).is_some_and(|e| e["state"] == "executed");

    // Within budget: the order stays active and the step says what was spent.
    let first = pay("200.00").await;
    let first_id = first["id"].as_str().unwrap().to_string();
    eventually(Duration::from_secs(15), "the first exchange", || {
        executed(&first_id)
    })
    .await;
    let run = app.satflow(&["trigger", "dca", "--wait"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("\"paused\":false"), "{run:?}");

    // A second exchange above per_exchange brings the month to its cap: paused at Pocket.
    let second = pay("280.00").await;
    let second_id = second["id"].as_str().unwrap().to_string();
    eventually(Duration::from_secs(15), "the second exchange", || {
        executed(&second_id)
    })
    .await;
    let run = app.satflow(&["trigger", "dca", "--wait"]);
    assert_eq!(run.code, 0, "{run:?}");
    let out = step_output(app, &run, "order");
    assert_eq!(out["active"], false, "{run:?}");
    assert_eq!(out["patched"], true, "{run:?}");
    assert_eq!(out["limits"]["paused"], true, "{run:?}");
    assert!(
        out["limits"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("per month"),
        "{out}"
    );
    assert_eq!(
        out["limits"]["above_per_exchange"][0]["exchange_id"],
        second_id.as_str()
    );
    let refused = pay("50.00").await;
    assert_eq!(refused["reason"]["code"], "order_inactive", "{refused}");
    eventually(Duration::from_secs(10), "the budget emails", || {
        let all = d.smtp.messages().join("\n");
        all.contains("budget reached") && all.contains("above the per-exchange limit")
    })
    .await;

    // The next period: the month's exchanges now lie in an earlier month (the clock moved on
    // by as much), and the next run activates the order again.
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        app.path().join("satflow.db").display()
    ))
    .await
    .unwrap();
    sqlx::query("UPDATE exchanges SET first_seen_at = first_seen_at - $1")
        .bind(40_i64 * 86_400_000)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let run = app.satflow(&["trigger", "dca", "--wait"]);
    assert_eq!(run.code, 0, "{run:?}");
    let out = step_output(app, &run, "order");
    assert_eq!(out["active"], true, "{run:?}");
    assert_eq!(out["limits"]["paused"], false, "{run:?}");
    let bought = pay("50.00").await;
    assert!(bought["reason"].is_null(), "{bought}");

    let entries = audit(app);
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "order.created",
        "limits.paused",
        "limits.above_per_exchange",
        "order.patched",
        "limits.within",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let verify = app.satflow(&["audit", "verify"]);
    assert_eq!(verify.code, 0, "{verify:?}");
    d.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_over_max_per_day_sat_is_skipped_with_the_reason() {
    let (addr, sandbox) = sandbox::spawn(SandboxOptions::default()).await;
    let app = with_providers(
        "1s",
        None,
        "hub",
        "min_amount_sat: 100000, max_per_day_sat: 300000",
        |dir| hub_yaml(dir, addr),
    );
    sandbox.hub.lock().unwrap().balance_sat = 250_000;
    let run = app.satflow(&["trigger", "sweep", "--wait"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("\"withdrawn\":true"), "{run:?}");
    sandbox.hub.lock().unwrap().balance_sat = 100_000;
    let run = app.satflow(&["trigger", "sweep", "--wait"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("\"skipped\":true"), "{run:?}");
    assert!(
        run.stdout
            .contains("100000 sat would bring today's withdrawals to more than max_per_day_sat 300000 sat (250000 sat withdrawn today)"),
        "{run:?}"
    );
    assert_eq!(hub_withdrawals(&sandbox).len(), 1);
    let entries = audit(&app);
    let skipped = entries
        .iter()
        .rfind(|e| e["kind"] == "withdrawal.requested")
        .unwrap();
    assert_eq!(skipped["detail"]["result"]["skipped"], true, "{skipped}");
}

#[test]
fn check_refuses_bad_limits_and_approvals_naming_the_field() {
    let app = TestApp::engine();
    let mut config = std::fs::read_to_string(app.path().join("satflow.yaml")).unwrap();
    config.push_str(
        "pocket: { base_url: \"http://127.0.0.1:9\", client_id: c, webhook_secret: s }\n\
         wallets:\n  cold: { xpub: zpub6rFR7y4Q2AijF6Gk1bofHLs1d66hKFamhXWdWBup1Em25wfabZqkDqvaieV63fDQFaYmaatCG7jVNUpUiM2hAMo6SAVHcrUpSnHDpNzucB7 }\n",
    );
    app.write("satflow.yaml", &config);
    app.write(
        "workflows/dca.yaml",
        "steps:\n  - id: order\n    uses: pocket.order\n    with: { currency: chf, fee_rate: 0.015, debitor_iban: CH9300762011623852957, payout: { wallet: cold }, \
         limits: { per_month: 5000 EUR, per_week: lots, per_exchange: -3 CHF } }\n    \
         approval: { required: 4, approvers: [alice, alice], within: 90d }\n",
    );
    let check = app.satflow(&["check"]);
    assert_eq!(check.code, 1, "{check:?}");
    for expected in [
        "limits.per_month: 5000 EUR is not in the order's currency; write it in CHF",
        "limits.per_week: \"lots\" is not an amount",
        "limits.per_exchange: \"-3 CHF\" is not an amount",
        "approval.approvers[1]: `alice` is listed twice",
        "approval.within: \"90d\" is out of range",
    ] {
        assert!(check.stdout.contains(expected), "{expected}: {check:?}");
    }
}

async fn an_approver_decides_through_the_emailed_link_in_chromium(backend: Backend) {
    let (addr, sandbox) = sandbox::spawn(SandboxOptions::default()).await;
    let Some(app) = with_providers_on(
        backend,
        "1s",
        None,
        "hub",
        "min_amount_sat: 100000",
        |dir| hub_yaml(dir, addr),
    ) else {
        return;
    };
    app.write(
        "workflows/sweep.yaml",
        "steps:\n  - id: sweep\n    uses: withdraw\n    with: { from: hub, to: { wallet: vault }, min_amount_sat: 100000 }\n    \
         approval: { required: 2, approvers: [bob, carol], within: 1h }\n",
    );
    for (name, role) in [("bob", "operator"), ("carol", "operator"), ("ada", "admin")] {
        let add = app.satflow_with_input(
            &["user", "add", name, "--role", role],
            &format!("{name}'s long password\n"),
        );
        assert_eq!(add.code, 0, "{add:?}");
    }
    sandbox.hub.lock().unwrap().balance_sat = 250_000;
    let mut daemon = app.spawn(&["run"], "daemon.log");
    let site = format!("http://{}", app.started().await);
    let queued = app.satflow(&["trigger", "sweep"]);
    let run = queued_id(&queued.stdout);
    eventually(Duration::from_secs(20), "bob's email", || {
        app.emails().iter().any(|e| e.contains("Hello bob"))
    })
    .await;
    let email = app
        .emails()
        .into_iter()
        .find(|e| e.contains("Hello bob"))
        .unwrap();
    let link = email
        .split_whitespace()
        .find(|w| w.contains("/approvals/run/"))
        .unwrap_or_else(|| panic!("no link in {email}"))
        .to_string();
    let path = &link[link.find("/approvals/run/").unwrap()..];
    assert!(
        path.starts_with(&format!("/approvals/run/{run}/sweep?token=")),
        "{path}"
    );
    let id = approvals(&app, false)[0]["id"].as_i64().unwrap();
    // Screenshots once, from the SQLite run.
    let screenshot = backend == Backend::Sqlite;

    // The link needs a login, and the login goes on to the link.
    let b = Browser::start().await;
    b.goto(&format!("{site}{path}")).await;
    assert!(b.url().await.starts_with(&format!("{site}/login?next=")));
    b.type_into("#name", "bob").await;
    b.type_into("#password", "bob's long password").await;
    b.click("#login").await;
    b.wait_for_url(&format!("{site}{path}")).await;
    let text = b.text().await;
    for want in [
        "waiting_approval",
        "0 of 2",
        "bob, carol",
        &super::withdrawals::vault_address(0),
        "\"min_amount_sat\": 100000",
    ] {
        assert!(
            text.contains(want),
            "the approval page shows {want:?}: {text}"
        );
    }
    if screenshot {
        b.screenshot("approval").await;
    }
    let csrf = b
        .script(
            "return document.querySelector('#decide input[name=csrf]').value",
            json!([]),
        )
        .await;
    let token = path.split("token=").nth(1).unwrap().to_string();
    b.type_into("#comment", "checked the address").await;
    b.click("#approve").await;
    b.wait_for_url(&format!("{site}/approvals/{id}?done=1"))
        .await;
    b.wait_for_text("1 of 2").await;
    assert!(b.text().await.contains("checked the address"));
    assert!(!b.has("#decide").await, "bob has decided");
    assert_eq!(approvals(&app, false)[0]["approved_by"], json!(["bob"]));
    // The link is spent: its token, posted again, decides nothing.
    b.script(
        "const f = document.createElement('form'); f.method = 'post'; f.action = arguments[0];
         for (const [k, v] of [['csrf', arguments[1]], ['token', arguments[2]], ['decision', 'reject'], ['comment', 'again']]) {
           const i = document.createElement('input'); i.name = k; i.value = v; f.appendChild(i);
         }
         document.body.appendChild(f); f.submit();",
        json!([format!("/approvals/{id}/decide"), csrf, token]),
    )
    .await;
    b.wait_for_text("used already").await;
    // An operator does not see the audit log.
    b.goto(&format!("{site}/audit")).await;
    b.wait_for_text("your role may not read the audit log")
        .await;
    b.goto(&format!("{site}/approvals")).await;
    b.log_out().await;

    // carol approves through the CLI: the withdrawal goes.
    let two = app.satflow(&["approve", &id.to_string(), "--as", "carol"]);
    assert_eq!(two.code, 0, "{two:?}");
    eventually(Duration::from_secs(20), "the approved run", || {
        run_of(&app, run)["status"] == "succeeded"
    })
    .await;
    assert_eq!(hub_withdrawals(&sandbox).len(), 1);

    // An admin reads the audit log, with its verification, on the dashboard.
    b.log_in(&site, "ada", "ada's long password").await;
    b.goto(&format!("{site}/approvals")).await;
    b.wait_for_text("approved").await;
    if screenshot {
        b.screenshot("approvals").await;
    }
    b.goto(&format!("{site}/audit")).await;
    let text = b.text().await;
    for want in [
        "chain intact",
        "approval.approved_one",
        "approval.approved",
        "withdrawal.requested",
        "user.logged_in",
        "daemon.started",
    ] {
        assert!(text.contains(want), "the audit page shows {want:?}: {text}");
    }
    if screenshot {
        b.screenshot("audit").await;
    }
    assert_eq!(terminate(&mut daemon), 0);
    let entries = audit(&app);
    let bobs = entries
        .iter()
        .find(|e| e["kind"] == "approval.approved_one")
        .unwrap();
    assert_eq!(bobs["actor"], "bob");
    assert_eq!(bobs["detail"]["via"], "dashboard");
    assert!(
        entries
            .iter()
            .any(|e| e["kind"] == "user.logged_in" && e["actor"] == "ada")
    );
    let verify = app.satflow(&["audit", "verify"]);
    assert_eq!(verify.code, 0, "{verify:?}");
}

on_both_backends!(
    a_withdrawal_waits_for_two_of_three_approvals_and_every_decision_is_on_record,
    an_approver_decides_through_the_emailed_link_in_chromium,
);

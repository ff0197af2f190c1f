//! Clients that do not surprise: an ordered list of price sources that falls back past a
//! geo-blocked or failing one, and `pocket.refresh` reading an exchange back on demand.

use serde_json::json;

use super::helpers::TestApp;

/// A Peach that answers every request 451, as it does in the countries it blocks.
async fn geo_blocked_peach() -> std::net::SocketAddr {
    let app = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
            "{\"error\":\"UNAVAILABLE_FOR_LEGAL_REASONS\"}",
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_geo_blocked_peach_falls_back_to_bitpay_and_all_failing_lists_each_failure() {
    let peach = geo_blocked_peach().await;
    let (market, _sb) = satflow::sandbox::spawn(Default::default()).await;
    let r = reqwest::Client::new()
        .put(format!("http://{market}/sandbox/price"))
        .json(&json!({ "currency": "eur", "price": "61234.5" }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let app = TestApp::empty();
    let config = |bitpay: &str| {
        format!(
            "database: sqlite://satflow.db\nalerts: []\n\
             prices: {{ sources: [peach, bitpay], peach_url: \"http://{peach}\", bitpay_url: \"{bitpay}\", max_age: 1s }}\n"
        )
    };
    app.write("satflow.yaml", &config(&format!("http://{market}")));
    app.write(
        "workflows/quote.yaml",
        "steps:\n  - id: q\n    uses: price.quote\n    with: { currency: eur }\n",
    );
    let check = app.satflow(&["check"]);
    assert_eq!(check.code, 0, "{check:?}");

    let run = app.satflow(&["trigger", "quote", "--wait"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("\"price\":61234.5") && run.stdout.contains("\"source\":\"bitpay\""),
        "Peach's 451 falls back to BitPay, and the output says BitPay answered: {run:?}"
    );

    // The step's `source:` overrides the list: Peach alone, blocked, fails the step.
    app.write(
        "workflows/peach.yaml",
        "steps:\n  - id: q\n    uses: price.quote\n    with: { currency: eur, source: peach }\n",
    );
    let run = app.satflow(&["trigger", "peach", "--wait"]);
    assert_ne!(run.code, 0, "{run:?}");
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("451"), "{run:?}");

    // Both failing: the error names each source and its failure.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let closed = format!("http://127.0.0.1:{}", super::helpers::closed_port());
    app.write("satflow.yaml", &config(&closed));
    let run = app.satflow(&["trigger", "quote", "--wait"]);
    assert_ne!(run.code, 0, "{run:?}");
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains("every price source failed")
            && all.contains(&format!(
                "peach: http://{peach}/v1/market/price/BTCEUR answered 451"
            ))
            && all.contains(&format!("bitpay: cannot reach {closed}/rates/BTC/EUR")),
        "{run:?}"
    );
}

#[test]
fn price_sources_are_checked_as_a_list() {
    let app = TestApp::empty();
    for (prices, expected) in [
        (
            "{ sources: [peach, kraken] }",
            "prices.sources: \"kraken\" is not a price source; accepted: peach, bitpay",
        ),
        (
            "{ sources: [bitpay, bitpay] }",
            "prices.sources: \"bitpay\" is listed twice",
        ),
        ("{ sources: [] }", "prices.sources: the list is empty"),
        ("{ source: peach, sources: [bitpay] }", "not both"),
    ] {
        app.write(
            "satflow.yaml",
            &format!("database: sqlite://satflow.db\nalerts: []\nprices: {prices}\n"),
        );
        let check = app.satflow(&["check"]);
        assert_ne!(check.code, 0, "{prices}: {check:?}");
        assert!(check.stdout.contains(expected), "{prices}: {check:?}");
    }
    for prices in [
        "{ source: bitpay }",
        "{ sources: [bitpay, peach] }",
        "{ sources: peach }",
    ] {
        app.write(
            "satflow.yaml",
            &format!("database: sqlite://satflow.db\nalerts: []\nprices: {prices}\n"),
        );
        let check = app.satflow(&["check"]);
        assert_eq!(check.code, 0, "{prices}: {check:?}");
    }
}

/// `pocket.refresh` reads an exchange back now and applies it like a webhook: an exchange that
/// executed and settled while satflow heard nothing of it (no webhook reached it) is settled
/// after one manual run, and a second run finds nothing new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pocket_refresh_applies_an_exchange_no_webhook_brought() {
    // No webhook URL: the sandbox's exchanges never reach satflow by themselves.
    let (addr, _sb) = satflow::sandbox::spawn(Default::default()).await;
    let pocket = format!("http://{addr}");
    let wallet = super::pocket::TestWallet::new();
    let app = TestApp::empty();
    app.write(
        "satflow.yaml",
        &format!(
            "database: sqlite://satflow.db\nalerts: []\n\
             pocket: {{ base_url: \"{pocket}\", client_id: sandbox-client }}\n\
             wallets:\n  cold: {{ xpub: {} }}\n",
            wallet.zpub
        ),
    );
    app.write(
        "workflows/dca.yaml",
        "steps:\n  - uses: pocket.order\n    with: { currency: eur, fee_rate: 0.015, debitor_iban: DE89370400440532013000, payout: { wallet: cold } }\n",
    );
    let setup = app.set_up_order("dca", &wallet.key(0));
    assert_eq!(setup.code, 0, "{setup:?}");
    let order_id = setup.stdout.split_whitespace().nth(2).unwrap().to_string();

    let control = |path: String| {
        let url = format!("{pocket}/{path}");
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .json(&json!({ "amount": 250 }))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let paid = control(format!("sandbox/orders/{order_id}/payments")).await;
    let id = paid["id"].as_str().unwrap().to_string();
    let settled = control(format!("sandbox/exchanges/{id}/settle")).await;
    assert!(settled["payout"].is_object(), "{settled}");
    let show = app.satflow(&["exchanges", "show", &id, "--json"]);
    assert_ne!(show.code, 0, "satflow has not heard of it yet: {show:?}");

    app.write(
        "workflows/refresh.yaml",
        &format!(
            "steps:\n  - id: r\n    uses: pocket.refresh\n    with: {{ exchange: \"{id}\" }}\n"
        ),
    );
    let run = app.satflow(&["trigger", "refresh", "--wait"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("\"state\":\"settled\"") && run.stdout.contains("\"changed\":true"),
        "{run:?}"
    );
    let show = app.satflow(&["exchanges", "show", &id, "--json"]);
    assert_eq!(show.code, 0, "{show:?}");
    let shown: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(shown["exchanges"][0]["state"], "settled", "{shown:#}");
    // The payout went to the order's own address, which is now used.
    let addresses = app.satflow(&["addresses", "cold", "--json", "--count", "2"]);
    let doc: serde_json::Value = serde_json::from_str(&addresses.stdout).unwrap();
    assert_eq!(doc["addresses"][0]["state"], "used", "{doc:#}");

    let again = app.satflow(&["trigger", "refresh", "--wait"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("\"changed\":false"), "{again:?}");

    // An id that is not Pocket's fails the step, naming what is expected.
    app.write(
        "workflows/bad.yaml",
        "steps:\n  - uses: pocket.refresh\n    with: { exchange: \"../etc/passwd\" }\n",
    );
    let bad = app.satflow(&["trigger", "bad", "--wait"]);
    assert_ne!(bad.code, 0, "{bad:?}");
    assert!(
        format!("{}{}", bad.stdout, bad.stderr).contains("not a Pocket exchange id"),
        "{bad:?}"
    );
}

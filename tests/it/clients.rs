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
    let (market, _sb) = satflow::pocket::sandbox::spawn(Default::default()).await;
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
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let closed = format!("http://127.0.0.1:{}", super::helpers::free_port());
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

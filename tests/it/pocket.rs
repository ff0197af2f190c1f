//! The Pocket client against the sandbox over real HTTP: every endpoint, every refusal Pocket
//! documents, and webhooks signed and retried as Pocket sends them.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use bitcoin::bip32::{DerivationPath, Xpriv, Xpub};
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use bitcoin::{Address, CompressedPublicKey, Network};
use lightning_invoice::{Currency as LnCurrency, InvoiceBuilder, PaymentSecret};
use satflow::domain::Currency;
use satflow::lightning::signmessage::sign_node_message;
use satflow::pocket::types::{
    ApiCode, ExchangePayout, ExchangeState, NewBuyOrder, NewPayout, OrderPatch,
};
use satflow::pocket::{PocketClient, PocketError, webhook};
use satflow::sandbox::{self, SandboxOptions};
use satflow::wallet::proof::sign_message;
use satflow::wallet::{ScriptType, encode_extended};
use secrecy::SecretString;
use serde_json::{Value, json};

/// A wallet made from a fixed test seed: its zpub and the keys of its receive addresses.
pub struct TestWallet {
    account: Xpriv,
    pub zpub: String,
}

impl TestWallet {
    pub fn new() -> TestWallet {
        let secp = Secp256k1::new();
        let master = Xpriv::new_master(Network::Bitcoin, &[7u8; 32]).unwrap();
        let account = master
            .derive_priv(&secp, &DerivationPath::from_str("m/84'/0'/0'").unwrap())
            .unwrap();
        let zpub = encode_extended(&Xpub::from_priv(&secp, &account), ScriptType::P2wpkh);
        TestWallet { account, zpub }
    }

    pub fn key(&self, index: u32) -> SecretKey {
        let path = DerivationPath::from_str(&format!("m/0/{index}")).unwrap();
        self.account
            .derive_priv(&Secp256k1::new(), &path)
            .unwrap()
            .private_key
    }

    pub fn address(&self, index: u32) -> String {
        let pk = PublicKey::from_secret_key(&Secp256k1::new(), &self.key(index));
        Address::p2wpkh(&CompressedPublicKey(pk), Network::Bitcoin).to_string()
    }
}

pub fn node_key() -> SecretKey {
    SecretKey::from_slice(&[9u8; 32]).unwrap()
}

pub fn node_pubkey() -> PublicKey {
    PublicKey::from_secret_key(&Secp256k1::new(), &node_key())
}

/// A BOLT11 invoice signed by `key`.
pub fn invoice(
    key: &SecretKey,
    currency: LnCurrency,
    msat: u64,
    created: SystemTime,
    expiry: Duration,
) -> String {
    let secp = Secp256k1::new();
    InvoiceBuilder::new(currency)
        .description("satflow payout".into())
        .payment_hash(bitcoin::hashes::sha256::Hash::hash(&[1u8; 32]))
        .payment_secret(PaymentSecret([2u8; 32]))
        .timestamp(created)
        .expiry_time(expiry)
        .min_final_cltv_expiry_delta(144)
        .amount_milli_satoshis(msat)
        .build_signed(|hash| secp.sign_ecdsa_recoverable(hash, key))
        .unwrap()
        .to_string()
}

async fn start(options: SandboxOptions) -> (PocketClient, Arc<sandbox::Sandbox>, String) {
    let client_id = options.client_id.clone();
    let (addr, sb) = sandbox::spawn(options).await;
    let base = format!("http://{addr}/");
    let client = PocketClient::with_base(base.parse().unwrap(), SecretString::from(client_id));
    (client, sb, base)
}

fn address_order(wallet: &TestWallet, message: &str, fee_rate: &str) -> NewBuyOrder {
    NewBuyOrder {
        active: true,
        fee_rate: fee_rate.parse().unwrap(),
        currency: Currency::Eur,
        debitor_iban: "DE89370400440532013000".parse().unwrap(),
        payout: NewPayout::Address {
            bitcoin_address: wallet.address(0),
            message: message.into(),
            signature: sign_message(&wallet.key(0), message),
        },
        affiliate_id: None,
    }
}

async fn control(base: &str, path: &str, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

fn code(err: PocketError) -> String {
    match err {
        PocketError::Api {
            code: Some(code), ..
        } => code.as_str().to_string(),
        other => panic!("expected a refusal with a code, got {other:?}"),
    }
}

#[tokio::test]
async fn every_endpoint_works_against_the_sandbox() {
    let (client, _sb, base) = start(SandboxOptions::default()).await;
    let wallet = TestWallet::new();

    let challenge = client.create_challenge().await.unwrap();
    assert_eq!(challenge.token.len(), 8);
    assert!(challenge.completed_on.is_none());
    assert_eq!(
        client.get_challenge(&challenge.id).await.unwrap(),
        challenge
    );

    // An xpub order: Pocket rotates payouts through the zpub from m/84'/0'/0'/0/0.
    let message = challenge.message();
    let order = client
        .create_buy_order(&NewBuyOrder {
            payout: NewPayout::Xpub {
                bitcoin_address: wallet.address(0),
                message: message.clone(),
                signature: sign_message(&wallet.key(0), &message),
                extended_public_key: wallet.zpub.clone(),
                derivation_path: "m/84'/0'/0'/0/0".into(),
            },
            ..address_order(&wallet, &message, "0.015")
        })
        .await
        .unwrap();
    assert!(order.active);
    assert_eq!(order.fee_rate.unwrap().to_string(), "0.015");
    assert_eq!(order.payment_method["creditor_name"], "Pocket App");
    assert!(
        order.payment_method["creditor_reference"]
            .as_str()
            .unwrap()
            .starts_with("RF")
    );
    assert!(
        client
            .get_challenge(&challenge.id)
            .await
            .unwrap()
            .completed_on
            .is_some()
    );
    assert_eq!(client.get_order(&order.id).await.unwrap().id, order.id);

    let patched = client
        .patch_order(
            &order.id,
            &OrderPatch {
                active: Some(false),
                fee_rate: Some("0.02".parse().unwrap()),
            },
        )
        .await
        .unwrap();
    assert!(!patched.active);
    assert_eq!(patched.fee_rate.unwrap().to_string(), "0.02");
    client
        .patch_order(
            &order.id,
            &OrderPatch {
                active: Some(true),
                fee_rate: None,
            },
        )
        .await
        .unwrap();

    // The bank pays twice: the first payout goes to the order's address (the start of the
    // rotation), the next to the following address of the zpub.
    for (i, expected) in [0u32, 1].into_iter().enumerate() {
        let executed = control(
            &base,
            &format!("sandbox/orders/{}/payments", order.id),
            json!({ "amount": "100.00" }),
        )
        .await;
        let id = executed["id"].as_str().unwrap();
        let exchange = client.get_exchange(id).await.unwrap();
        assert_eq!(exchange.state(), ExchangeState::Executed, "payment {i}");
        assert_eq!(exchange.cost.unwrap().to_string(), "100.00");
        assert_eq!(
            exchange.fee.unwrap().to_string(),
            "2.00",
            "at the patched fee rate"
        );
        control(&base, &format!("sandbox/exchanges/{id}/settle"), json!({})).await;
        let settled = client.get_exchange(id).await.unwrap();
        assert_eq!(settled.state(), ExchangeState::Settled);
        assert_eq!(
            settled.payout.unwrap().as_json()["bitcoin_address"],
            wallet.address(expected)
        );
    }

    // Interrupted (both documented shapes) and refunded exchanges.
    let e = control(
        &base,
        &format!("sandbox/orders/{}/payments", order.id),
        json!({ "amount": 50 }),
    )
    .await;
    let id = e["id"].as_str().unwrap();
    control(
        &base,
        &format!("sandbox/exchanges/{id}/interrupt"),
        json!({ "variant": "identify" }),
    )
    .await;
    let interrupted = client.get_exchange(id).await.unwrap();
    assert_eq!(
        interrupted.state(),
        ExchangeState::Interrupted,
        "action wins over reason"
    );
    assert_eq!(
        interrupted.action.unwrap().as_json()["url"],
        "https://app.pocketbitcoin.com/onboarding"
    );
    control(
        &base,
        &format!("sandbox/exchanges/{id}/refund"),
        json!({ "reason": "customer_requested" }),
    )
    .await;
    let refunded = client.get_exchange(id).await.unwrap();
    assert_eq!(refunded.state(), ExchangeState::Refunded);
    assert_eq!(
        refunded.reason.unwrap().as_json()["code"],
        "customer_requested"
    );
}

#[tokio::test]
async fn the_sandbox_refuses_what_pocket_refuses() {
    let (client, _sb, base) = start(SandboxOptions::default()).await;
    let wallet = TestWallet::new();

    let stranger = PocketClient::with_base(
        base.parse().unwrap(),
        SecretString::from("someone-else".to_string()),
    );
    match stranger.create_challenge().await {
        Err(PocketError::Api { status: 401, .. }) => {}
        other => panic!("expected 401, got {other:?}"),
    }

    let challenge = client.create_challenge().await.unwrap();
    let message = challenge.message();
    let mut bad_iban = address_order(&wallet, &message, "0.015");
    bad_iban.debitor_iban = "CH9300762011623852957".parse().unwrap();
    let mut body = bad_iban.to_json();
    body["payment_method"]["debitor_iban"] = json!("CH9300762011623852958");
    let r = reqwest::Client::new()
        .post(format!("{base}v1/orders"))
        .header("Authorization", "client_id sandbox-client")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "debitor_iban");
    body["payment_method"]["debitor_iban"] = json!("CH9300762011623852957");
    body["payment_method"]["currency"] = json!("usd");
    let r = reqwest::Client::new()
        .post(format!("{base}v1/orders"))
        .header("Authorization", "client_id sandbox-client")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "currency");
    body["payment_method"]["currency"] = json!("eur");
    body["fee_rate"] = json!(0.5);
    let r = reqwest::Client::new()
        .post(format!("{base}v1/orders"))
        .header("Authorization", "client_id sandbox-client")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "fee_rate");

    // A signature by another key, then an address that is not where the path says.
    let mut forged = address_order(&wallet, &message, "0.015");
    forged.payout = NewPayout::Address {
        bitcoin_address: wallet.address(0),
        message: message.clone(),
        signature: sign_message(&wallet.key(1), &message),
    };
    assert_eq!(
        code(client.create_buy_order(&forged).await.unwrap_err()),
        "invalid_signature"
    );
    let misplaced = NewBuyOrder {
        payout: NewPayout::Xpub {
            bitcoin_address: wallet.address(1),
            message: message.clone(),
            signature: sign_message(&wallet.key(1), &message),
            extended_public_key: wallet.zpub.clone(),
            derivation_path: "m/84'/0'/0'/0/0".into(),
        },
        ..address_order(&wallet, &message, "0.015")
    };
    assert_eq!(
        code(client.create_buy_order(&misplaced).await.unwrap_err()),
        "derivation_path"
    );

    // The challenge works once, and not after it expired.
    client
        .create_buy_order(&address_order(&wallet, &message, "0.015"))
        .await
        .unwrap();
    assert_eq!(
        code(
            client
                .create_buy_order(&address_order(&wallet, &message, "0.015"))
                .await
                .unwrap_err()
        ),
        "challenge_used"
    );
    let old = client.create_challenge().await.unwrap();
    control(
        &base,
        &format!("sandbox/challenges/{}/expire", old.id),
        json!({}),
    )
    .await;
    assert_eq!(
        code(
            client
                .create_buy_order(&address_order(&wallet, &old.message(), "0.015"))
                .await
                .unwrap_err()
        ),
        "challenge_expired"
    );
    assert_eq!(
        code(
            client
                .create_buy_order(&address_order(
                    &wallet,
                    "I confirm my bitcoin wallet. [nope1234]",
                    "0.015"
                ))
                .await
                .unwrap_err()
        ),
        "challenge_not_found"
    );

    // Only active and fee_rate can change.
    let fresh = client.create_challenge().await.unwrap();
    let order = client
        .create_buy_order(&address_order(&wallet, &fresh.message(), "0.015"))
        .await
        .unwrap();
    let r = reqwest::Client::new()
        .patch(format!("{base}v1/orders/{}", order.id))
        .header("Authorization", "client_id sandbox-client")
        .json(&json!({ "payment_method": { "currency": "chf" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "not_patchable");
    match client.get_order("no-such-order").await {
        Err(PocketError::Api { status: 404, .. }) => {}
        other => panic!("expected 404, got {other:?}"),
    }
}

#[tokio::test]
async fn lightning_patches_get_the_documented_answers() {
    let (client, _sb, base) = start(SandboxOptions::default()).await;
    let challenge = client.create_challenge().await.unwrap();
    let message = challenge.message();
    let order = client
        .create_buy_order(&NewBuyOrder {
            active: true,
            fee_rate: "0.012".parse().unwrap(),
            currency: Currency::Chf,
            debitor_iban: "CH9300762011623852957".parse().unwrap(),
            payout: NewPayout::Lightning {
                node_pubkey: node_pubkey().to_string(),
                message: message.clone(),
                signature: sign_node_message(&node_key(), &message),
                lightning_address: None,
            },
            affiliate_id: None,
        })
        .await
        .unwrap();
    assert!(
        order.payment_method["swiss_qr_bill_payload"]
            .as_str()
            .unwrap()
            .starts_with("SPC\n0200\n1\n")
    );
    let executed = control(
        &base,
        &format!("sandbox/orders/{}/payments", order.id),
        json!({ "amount": "100.00" }),
    )
    .await;
    let id = executed["id"].as_str().unwrap();
    let exchange = client.get_exchange(id).await.unwrap();
    // The whole amount, in millisatoshis.
    let msat = (exchange.amount.unwrap() * rust_decimal::Decimal::new(100_000_000_000, 0))
        .trunc()
        .to_string()
        .parse::<u64>()
        .unwrap();
    let now = SystemTime::now();
    let hour = Duration::from_secs(3600);
    let other_node = SecretKey::from_slice(&[3u8; 32]).unwrap();
    let cases = [
        (
            invoice(&node_key(), LnCurrency::Bitcoin, msat - 1000, now, hour),
            ApiCode::InvoiceAmount,
        ),
        (
            invoice(&node_key(), LnCurrency::BitcoinTestnet, msat, now, hour),
            ApiCode::InvoiceNetwork,
        ),
        (
            invoice(&node_key(), LnCurrency::Bitcoin, msat, now - 2 * hour, hour),
            ApiCode::InvoiceExpired,
        ),
        (
            invoice(&other_node, LnCurrency::Bitcoin, msat, now, hour),
            ApiCode::UnexpectedNodePubkey,
        ),
        ("lnbc1notaninvoice".to_string(), ApiCode::InvalidInvoice),
    ];
    for (bad, expected) in cases {
        let err = client
            .patch_exchange(id, &ExchangePayout::Invoice(bad))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(&expected), "{err}");
        assert_eq!(err.status(), Some(400));
    }
    for (address, expected) in [
        ("nohost".to_string(), ApiCode::NodeAddressRequired),
        (
            format!(
                "{}@node.example:9735",
                PublicKey::from_secret_key(&Secp256k1::new(), &other_node)
            ),
            ApiCode::UnexpectedNodePubkey,
        ),
        (
            format!("{}@node.example:0", node_pubkey()),
            ApiCode::Connect,
        ),
    ] {
        let err = client
            .patch_exchange(id, &ExchangePayout::Channel(address))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(&expected), "{err}");
    }
    // While Pocket is still paying, another patch is told the payout is in progress.
    control(&base, "sandbox/payouts/hold", json!({ "hold": true })).await;
    let good = invoice(&node_key(), LnCurrency::Bitcoin, msat, now, hour);
    let accepted = client
        .patch_exchange(id, &ExchangePayout::Invoice(good.clone()))
        .await
        .unwrap();
    assert_eq!(accepted.state(), ExchangeState::Executed);
    let busy = client
        .patch_exchange(id, &ExchangePayout::Invoice(good.clone()))
        .await
        .unwrap_err();
    assert_eq!(busy.code(), Some(&ApiCode::InProgress));
    control(&base, &format!("sandbox/exchanges/{id}/settle"), json!({})).await;
    let settled = client.get_exchange(id).await.unwrap();
    assert_eq!(settled.state(), ExchangeState::Settled);
    assert_eq!(settled.payout.unwrap().as_json()["invoice"], good.as_str());
    let again = client
        .patch_exchange(id, &ExchangePayout::Invoice(good))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Some(&ApiCode::AlreadyCompleted));

    // Without the hold, a valid patch settles at once.
    control(&base, "sandbox/payouts/hold", json!({ "hold": false })).await;
    let next = control(
        &base,
        &format!("sandbox/orders/{}/payments", order.id),
        json!({ "amount": "100.00" }),
    )
    .await;
    let next_id = next["id"].as_str().unwrap();
    let fresh = invoice(&node_key(), LnCurrency::Bitcoin, msat, now, hour);
    let settled = client
        .patch_exchange(next_id, &ExchangePayout::Invoice(fresh))
        .await
        .unwrap();
    assert_eq!(settled.state(), ExchangeState::Settled);

    // Sell orders exist in the API but need Pocket's approval first.
    let sell = client
        .create_sell_order(&satflow::pocket::types::NewSellOrder {
            fee_rate: "0.015".parse().unwrap(),
            currency: Currency::Eur,
            creditor_iban: "DE89370400440532013000".parse().unwrap(),
            affiliate_id: None,
        })
        .await
        .unwrap_err();
    assert_eq!(
        sell.code(),
        Some(&ApiCode::Other("sell_not_enabled".into()))
    );
}

#[tokio::test]
async fn webhooks_are_signed_and_retried_until_acknowledged() {
    let received: Arc<Mutex<Vec<(HeaderMap, Bytes)>>> = Arc::default();
    let log = Arc::clone(&received);
    let app = Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let log = Arc::clone(&log);
        async move {
            let mut log = log.lock().unwrap();
            log.push((headers, body));
            // The endpoint is down for the first delivery.
            if log.len() == 1 {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/webhooks/pocket", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let secret = "whsec-test";
    let (client, sb, base) = start(SandboxOptions {
        webhook_url: Some(hook),
        webhook_secret: Some(secret.into()),
        retry_base: Duration::from_millis(100),
        ..SandboxOptions::default()
    })
    .await;
    let wallet = TestWallet::new();
    let challenge = client.create_challenge().await.unwrap();
    let order = client
        .create_buy_order(&address_order(&wallet, &challenge.message(), "0.015"))
        .await
        .unwrap();
    let executed = control(
        &base,
        &format!("sandbox/orders/{}/payments", order.id),
        json!({ "amount": 20 }),
    )
    .await;

    let start = std::time::Instant::now();
    while !sb.deliveries().first().is_some_and(|d| d.delivered) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            sb.deliveries()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let received = received.lock().unwrap();
    assert_eq!(received.len(), 2);
    for (i, (headers, body)) in received.iter().enumerate() {
        let signature = headers["x-signature-256"].to_str().unwrap();
        assert!(
            webhook::verify(secret.as_bytes(), body, signature),
            "delivery {i}"
        );
        assert_eq!(headers["x-retry-count"], i.to_string().as_str());
        assert_eq!(headers["user-agent"], "Pocket-Webhook/1.0");
        let event: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(event["event"], "exchange.executed");
        assert_eq!(event["payload"]["exchange_id"], executed["id"]);
    }
    assert_eq!(
        received[0].0["x-correlation-id"],
        received[1].0["x-correlation-id"]
    );
}

//! Core Lightning's `clnrest` as it ships: HTTPS with the certificates it generates itself (a CA
//! `ca.pem` signing `server.pem`). satflow pins the CA (or the server certificate) given as
//! `tls_cert_file`; another CA is refused for good, and `check` says what to set.

use std::time::Duration;

use satflow::config::{InvoiceSource, LightningNode};
use satflow::lightning::node::{Node, NodeError};
use satflow::lightning::signmessage::recover_node_key;
use satflow::outcome::Class;

use super::helpers::TestApp;
use super::lnnode::{self, clnrest_certs};

const RUNE: &str = "cln-rune-for-tls-tests";

fn node_with(url: &str, cert: Option<std::path::PathBuf>) -> Node {
    Node::from_config(&LightningNode {
        source: InvoiceSource::Cln {
            url: url.parse().unwrap(),
            rune: RUNE.to_string().into(),
            tls_cert_file: cert,
        },
        node_pubkey: None,
        node_address: None,
    })
    .unwrap()
}

#[tokio::test]
async fn clnrest_behind_its_own_ca_gives_invoices_and_signatures_when_the_ca_is_pinned() {
    let certs = clnrest_certs();
    let cln = lnnode::cln_tls(RUNE, &certs).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &certs.ca_pem).unwrap();
    std::fs::write(dir.path().join("server.pem"), &certs.server_pem).unwrap();

    let node = node_with(&cln.url, Some(dir.path().join("ca.pem")));
    let invoice = node
        .invoice(21_000, "tls test", Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(cln.state.lock().unwrap().invoices, vec![invoice.bolt11]);
    let zbase = node
        .sign_message("satflow over clnrest's TLS")
        .await
        .unwrap();
    assert_eq!(
        recover_node_key("satflow over clnrest's TLS", &zbase).unwrap(),
        cln.pubkey()
    );
    assert_eq!(node.pubkey().await.unwrap(), cln.pubkey());

    // The server certificate itself, pinned, is trusted too.
    let node = node_with(&cln.url, Some(dir.path().join("server.pem")));
    assert_eq!(node.pubkey().await.unwrap(), cln.pubkey());
}

#[tokio::test]
async fn clnrest_signed_by_another_ca_is_refused_for_good() {
    let certs = clnrest_certs();
    let cln = lnnode::cln_tls(RUNE, &certs).await;
    let other = clnrest_certs();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &other.ca_pem).unwrap();
    let node = node_with(&cln.url, Some(dir.path().join("ca.pem")));

    let pinned = dir.path().join("ca.pem");
    let refused = |e: NodeError| {
        assert_eq!(e.class(), Class::Permanent, "{e}");
        let NodeError::Certificate { reason, .. } = &e else {
            panic!("not a certificate refusal: {e:?}")
        };
        assert!(
            reason.contains(&format!(
                "the node's certificate is not the one in tls_cert_file {} nor signed by it",
                pinned.display()
            )),
            "{reason}"
        );
        assert!(reason.contains("ca.pem or server.pem"), "{reason}");
    };
    refused(
        node.invoice(21_000, "tls test", Duration::from_secs(600))
            .await
            .unwrap_err(),
    );
    refused(node.sign_message("hello").await.unwrap_err());
    assert!(cln.state.lock().unwrap().invoices.is_empty());

    // Without a pinned certificate only public roots are trusted: clnrest's own CA is none.
    let e = node_with(&cln.url, None).pubkey().await.unwrap_err();
    assert_eq!(e.class(), Class::Permanent, "{e}");
    let NodeError::Certificate { reason, .. } = &e else {
        panic!("not a certificate refusal: {e:?}")
    };
    assert!(
        reason.contains("not signed by a public authority") && reason.contains("tls_cert_file"),
        "{reason}"
    );
    assert!(cln.state.lock().unwrap().invoices.is_empty());
}

fn config_with(app: &TestApp, cln: &str) -> String {
    app.write(
        "satflow.yaml",
        &format!(
            "database: sqlite://satflow.db\nlisten: 127.0.0.1:0\n\
             email: {{ dir: mail, from: satflow@example.com, to: me@example.com }}\n\
             lightning:\n  mynode:\n    cln: {cln}\n"
        ),
    );
    let run = app.satflow(&["check"]);
    assert_eq!(run.code, 1, "{run:?}");
    let problems = run.problems();
    assert_eq!(problems.len(), 1, "{run:?}");
    problems[0].to_string()
}

#[test]
fn check_refuses_an_https_cln_url_without_a_readable_certificate() {
    let app = TestApp::empty();
    let p = config_with(&app, "{ url: \"https://127.0.0.1:3010\", rune: r }");
    assert!(p.starts_with("satflow.yaml:6:"), "{p}");
    assert!(p.contains("set tls_cert_file"), "{p}");
    assert!(p.contains("ca.pem"), "{p}");

    let p = config_with(
        &app,
        "{ url: \"https://127.0.0.1:3010\", rune: r, tls_cert_file: nowhere/ca.pem }",
    );
    assert!(p.starts_with("satflow.yaml:6:"), "{p}");
    assert!(p.contains("tls_cert_file: there is no file"), "{p}");

    app.write("ca.pem", "not a certificate\n");
    let p = config_with(
        &app,
        "{ url: \"https://127.0.0.1:3010\", rune: r, tls_cert_file: ca.pem }",
    );
    assert!(p.contains("holds no PEM certificate"), "{p}");

    // The same node over http on loopback needs no certificate, and a real CA file passes.
    app.write("ca.pem", &clnrest_certs().ca_pem);
    for cln in [
        "{ url: \"http://127.0.0.1:3010\", rune: r }",
        "{ url: \"https://127.0.0.1:3010\", rune: r, tls_cert_file: ca.pem }",
    ] {
        app.write(
            "satflow.yaml",
            &format!(
                "database: sqlite://satflow.db\nlisten: 127.0.0.1:0\n\
                 email: {{ dir: mail, from: satflow@example.com, to: me@example.com }}\n\
                 lightning:\n  mynode:\n    cln: {cln}\n"
            ),
        );
        let run = app.satflow(&["check"]);
        assert_eq!(run.code, 0, "{cln}: {run:?}");
    }
}

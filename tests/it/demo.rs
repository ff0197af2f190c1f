//! `satflow demo` as a newcomer runs it: every part of the mission happens, nothing fails, and
//! what it leaves behind (database, emails) can be looked at with the other commands.

use super::helpers::TestApp;

#[test]
fn the_demo_plays_the_whole_lifecycle_and_leaves_a_database_and_emails() {
    let app = TestApp::empty();
    let run = app.satflow(&["demo", "--dir", "play"]);
    assert_eq!(run.code, 0, "{run:?}");
    for step in [
        "weekly-dca succeeded",
        "lightning-dca succeeded",
        "executed (webhook): 100.00 CHF",
        "a fresh address of wallet `cold`",
        "Pocket paid it: settled",
        "the hub's 250000 sat go to",
        "the hub sent it: transaction",
        "interrupted: satflow emails what to do",
        "identified, then executed (webhook): 2000.00 CHF",
        "the once interrupted exchange settled: paid out to",
        "nothing moved: the balance is 0 sat",
        "refunded (threshold exceeded)",
        "CHF: 5 buys, spent 2350 CHF",
        "weekly-digest succeeded",
        "0.0025 BTC withdrawn to cold storage",
    ] {
        assert!(
            run.stdout.contains(step),
            "missing {step:?} in:\n{}",
            run.stdout
        );
    }
    let mail: Vec<String> = std::fs::read_dir(app.path().join("play/mail"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    for subject in [
        "your standing order for weekly-dca is ready",
        "Pocket needs you for exchange",
        "Pocket refunded exchange",
        "satflow: withdrawal sunday-withdrawal",
        "your week of stacking",
    ] {
        assert!(
            mail.iter().any(|m| m.contains(subject)),
            "no email about {subject:?}"
        );
    }
    assert!(
        mail.iter()
            .all(|m| m.contains("\r\n\r\n") || m.contains("\n\n")),
        "every email has headers and a body"
    );

    // What it leaves is a normal setup: the other commands read it.
    let config = app.path().join("play/satflow.yaml");
    let config = config.to_str().unwrap();
    let report = app.satflow(&["-c", config, "report", "--json"]);
    assert_eq!(report.code, 0, "{report:?}");
    let doc: serde_json::Value = serde_json::from_str(&report.stdout).unwrap();
    // Four buys of the weekly order (one of them interrupted first, then identified) and the
    // Lightning one; the refund bought nothing.
    assert_eq!(doc["totals"]["currencies"]["chf"]["buys"], 5);
    let digest = mail
        .iter()
        .find(|m| m.contains("your week of stacking"))
        .unwrap();
    assert!(
        digest.contains("Content-Type: image/png") && digest.contains("filename=\"stacking.png\""),
        "the digest carries its chart"
    );
    // Four payouts of the on-chain order, to the first four addresses of the wallet: the
    // identified exchange's address is marked used like the others.
    let addresses = app.satflow(&["-c", config, "addresses", "cold", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&addresses.stdout).unwrap();
    let used = listed["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "used")
        .count();
    assert_eq!(used, 4, "{listed}");
    assert_eq!(doc["totals"]["withdrawn_btc"], "0.0025");

    // A second run starts afresh in the same folder.
    let again = app.satflow(&["demo", "--dir", "play"]);
    assert_eq!(again.code, 0, "{again:?}");
}

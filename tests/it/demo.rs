//! `satflow demo` as a newcomer runs it: every part of the mission happens, nothing fails, and
//! what it leaves behind (database, emails) can be looked at with the other commands; the
//! narration is in order (each email under the step that caused it), has no escape codes when
//! piped, and the emails are MIME a mail client shows well.

use super::helpers::TestApp;
use super::smtp::Mime;

/// Where `needle` is in `haystack`, or a failure that shows the output.
fn at(haystack: &str, needle: &str) -> usize {
    haystack
        .find(needle)
        .unwrap_or_else(|| panic!("missing {needle:?} in:\n{haystack}"))
}

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
        "nothing moved: the balance of 0 sat is less than the minimum",
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
    let out = &run.stdout;
    assert!(
        !out.contains('\x1b') && !run.stderr.contains('\x1b'),
        "no escape codes when piped:\n{out}\n{}",
        run.stderr
    );
    assert!(
        !out.contains('█') && out.contains("or open ") && out.contains("weekly-dca-payment.png"),
        "the QR codes are files, not blocks: {out}"
    );
    // Each email under the step that caused it, before the next step is told.
    let week1 = at(out, "week 1: the Monday schedule fired");
    let order_mail = at(
        out,
        "— satflow: your standing order for weekly-dca is ready",
    );
    let first_buy = at(out, "the market is at 57000 CHF/BTC");
    assert!(week1 < order_mail && order_mail < first_buy, "{out}");
    let interrupted = at(out, "interrupted: satflow emails what to do");
    let interrupted_mail = at(out, "— satflow: Pocket needs you for exchange");
    let identifies = at(out, "the buyer identifies with Pocket");
    assert!(
        interrupted < interrupted_mail && interrupted_mail < identifies,
        "{out}"
    );
    let refunded = at(out, "refunded (threshold exceeded)");
    let refund_mail = at(out, "— satflow: Pocket refunded exchange");
    let week3_sunday = out[refunded..]
        .find("Sunday: sunday-withdrawal fired")
        .unwrap()
        + refunded;
    assert!(
        refunded < refund_mail && refund_mail < week3_sunday,
        "{out}"
    );
    let sent = at(out, "the hub sent it: transaction");
    let sent_mail = at(
        out,
        "— satflow: withdrawal of 250000 sat sent to wallet vault",
    );
    let first_digest = at(out, "Sunday: weekly-digest fired");
    assert!(sent < sent_mail && sent_mail < first_digest, "{out}");
    // The commands to look around with name the binary that ran.
    let binary = env!("CARGO_BIN_EXE_satflow");
    assert!(
        out.contains(&format!("  {binary} -c ")) && out.trim_end().ends_with("report --csv"),
        "{out}"
    );

    let mail: Vec<String> = std::fs::read_dir(app.path().join("play/mail"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    for subject in [
        "your standing order for weekly-dca is ready",
        "Pocket needs you for exchange",
        "Pocket refunded exchange",
        "satflow: withdrawal of 250000 sat requested (sunday-withdrawal)",
        "satflow: withdrawal of 250000 sat sent to wallet vault",
        "satflow: nothing withdrawn this time (sunday-withdrawal)",
        "your week of stacking",
    ] {
        assert!(
            mail.iter().any(|m| m.contains(subject)),
            "no email about {subject:?}"
        );
    }
    for m in &mail {
        let mime = Mime::parse(m);
        mime.assert_readable();
        let text = mime.text("text/plain").unwrap();
        assert!(!text.contains("None") && !text.contains(" none"), "{text}");
    }
    // The order-created email: the details as the terminal shows them, the QR code inline.
    let order = Mime::parse(
        mail.iter()
            .find(|m| m.contains("your standing order for weekly-dca is ready"))
            .unwrap(),
    );
    let text = order.text("text/plain").unwrap();
    assert!(
        text.contains("IBAN:        CH94 0077 8214 7683 0200 2"),
        "{text}"
    );
    assert!(text.contains("Currency:    CHF"), "{text}");
    assert!(
        order
            .structure()
            .contains("multipart/related[text/html,image/png]"),
        "{}",
        order.structure()
    );
    // Dated by the demo's clock: each digest at 19:00 on a Sunday, Zurich time.
    use chrono::{Datelike, Timelike};
    for m in mail.iter().filter(|m| m.contains("your week of stacking")) {
        let mime = Mime::parse(m);
        let date = chrono::DateTime::parse_from_rfc2822(mime.header("Date").unwrap()).unwrap();
        let local = date.with_timezone(&chrono_tz::Europe::Zurich);
        assert_eq!(local.weekday(), chrono::Weekday::Sun, "{date}");
        assert!(
            (local.hour(), local.minute()) == (19, 0) || (local.hour(), local.minute()) == (18, 59),
            "{date}"
        );
        assert!(
            mime.structure()
                .contains("multipart/related[text/html,image/png]"),
            "the chart is shown in the email: {}",
            mime.structure()
        );
    }

    // Every email follows the demo's clock, those of the withdrawal follower too: the demo
    // plays weeks from next Monday on, so each is dated after the demo (in real time) ended.
    let ended = chrono::Utc::now();
    for m in &mail {
        let mime = Mime::parse(m);
        let date = chrono::DateTime::parse_from_rfc2822(mime.header("Date").unwrap()).unwrap();
        assert!(
            date > ended,
            "{date} is real time: {}",
            mime.header("Subject").unwrap_or_default()
        );
    }

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

    // lightning-payout runs for the one Lightning exchange only, not for the on-chain ones.
    let runs = app.satflow(&["-c", config, "runs", "--json", "--limit", "1000"]);
    let runs: serde_json::Value = serde_json::from_str(&runs.stdout).unwrap();
    let payouts: Vec<&serde_json::Value> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["workflow"] == "lightning-payout")
        .collect();
    assert_eq!(payouts.len(), 1, "{payouts:?}");
    assert_eq!(payouts[0]["status"], "succeeded");

    // A second run starts afresh in the same folder.
    let again = app.satflow(&["demo", "--dir", "play"]);
    assert_eq!(again.code, 0, "{again:?}");
}

//! `satflow init` as a newcomer runs it: flags or answers on stdin, a setup that passes
//! `check`, every answer judged with `check`'s own words, and never an existing setup replaced.

use super::helpers::TestApp;

const ZPUB: &str = "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs";

#[test]
fn a_sandbox_setup_from_flags_passes_check_and_plans() {
    let app = TestApp::empty();
    let init = app.satflow(&["init", "--sandbox", "setup"]);
    assert_eq!(init.code, 0, "{init:?}");
    assert!(
        init.stdout
            .contains("order setup stacking --sign-with-test-key"),
        "{init:?}"
    );
    let check = app.satflow(&["-c", "setup/satflow.yaml", "check"]);
    assert_eq!(check.code, 0, "{check:?}");
    assert!(check.stdout.starts_with("ok: "), "{check:?}");
    let plan = app.satflow(&["-c", "setup/satflow.yaml", "plan", "--count", "1"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(plan.stdout.contains("stacking"), "{plan:?}");
}

#[test]
fn a_real_setup_from_flags_passes_check_once_its_secrets_are_exported() {
    let mut app = TestApp::empty();
    let init = app.satflow(&[
        "init",
        "--wallet",
        ZPUB,
        "--iban",
        "CH9300762011623852957",
        "--currency",
        "chf",
        "--amount",
        "250",
        "--cadence",
        "monthly",
        "--email",
        "me@example.com",
        "--lightning",
        "me@getalby.com",
    ]);
    assert_eq!(init.code, 0, "{init:?}");
    assert!(init.stdout.contains("export POCKET_CLIENT_ID"), "{init:?}");
    let yaml = std::fs::read_to_string(app.path().join("satflow.yaml")).unwrap();
    assert!(
        yaml.contains("${POCKET_CLIENT_ID}"),
        "a secret is named, never written: {yaml}"
    );
    let workflow = std::fs::read_to_string(app.path().join("workflows/stacking.yaml")).unwrap();
    assert!(workflow.contains("0 9 1 * *"), "monthly: {workflow}");
    app.set_env("POCKET_CLIENT_ID", "client");
    app.set_env("POCKET_WEBHOOK_SECRET", "secret");
    let check = app.satflow(&["check"]);
    assert_eq!(check.code, 0, "{check:?}");
}

#[test]
fn answers_come_from_a_pipe_and_a_wrong_one_is_asked_again_in_checks_words() {
    let app = TestApp::empty();
    // A mistyped zpub, then the right one; chf; a mistyped IBAN, then the right one; then the
    // defaults (empty lines) for the rest.
    let mistyped_zpub = format!("{}x", &ZPUB[..ZPUB.len() - 1]);
    let input = format!(
        "{mistyped_zpub}\n{ZPUB}\nchf\nCH9300762011623852958\nCH9300762011623852957\n120\n\n\n\n\n"
    );
    let init = app.satflow_with_input(&["init", "mine"], &input);
    assert_eq!(init.code, 0, "{init:?}");
    assert!(
        init.stderr
            .contains("wallets.cold.xpub: not an extended public key"),
        "{init:?}"
    );
    assert!(
        init.stderr.contains("fails the IBAN checksum (mod 97)"),
        "{init:?}"
    );
    let mut app = app;
    app.set_env("POCKET_CLIENT_ID", "client");
    app.set_env("POCKET_WEBHOOK_SECRET", "secret");
    let check = app.satflow(&["-c", "mine/satflow.yaml", "check"]);
    assert_eq!(check.code, 0, "{check:?}");
}

/// The message `check` gives for `iban` in a workflow, without its position.
fn checks_message_for_iban(iban: &str) -> String {
    let app = TestApp::empty();
    app.write(
        "satflow.yaml",
        &format!("pocket: {{ client_id: c }}\nalerts: []\nwallets:\n  cold: {{ xpub: {ZPUB} }}\n"),
    );
    app.write(
        "workflows/dca.yaml",
        &format!("steps:\n  - uses: pocket.order\n    with: {{ currency: eur, fee_rate: 0.015, debitor_iban: {iban}, payout: {{ wallet: cold }} }}\n"),
    );
    let check = app.satflow(&["check"]);
    assert_eq!(check.code, 1, "{check:?}");
    let line = check.stdout.lines().next().unwrap();
    let message = line.split_once(": ").unwrap().1;
    message.split_once(": ").unwrap().1.to_string()
}

#[test]
fn a_bad_iban_or_xpub_flag_is_refused_with_checks_message_and_nothing_is_written() {
    let app = TestApp::empty();
    let bad_iban = "DE89370400440532013001";
    let refused = app.satflow(&["init", "--sandbox", "--iban", bad_iban]);
    assert_eq!(refused.code, 1, "{refused:?}");
    let expected = checks_message_for_iban(bad_iban);
    assert!(
        refused.stderr.contains(&expected),
        "check says {expected:?}: {refused:?}"
    );
    assert!(!app.path().join("satflow.yaml").exists());

    let refused = app.satflow(&[
        "init",
        "--wallet",
        "xpub-of-nobody",
        "--iban",
        "DE89370400440532013000",
        "--amount",
        "100",
    ]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("--wallet \"xpub-of-nobody\" is refused: wallets.cold.xpub:"),
        "{refused:?}"
    );
    assert!(!app.path().join("satflow.yaml").exists());
}

#[test]
fn init_refuses_to_replace_an_existing_setup_and_names_the_file() {
    let app = TestApp::empty();
    assert_eq!(app.satflow(&["init", "--sandbox"]).code, 0);
    let before = std::fs::read_to_string(app.path().join("satflow.yaml")).unwrap();
    let again = app.satflow(&["init", "--sandbox"]);
    assert_eq!(again.code, 1, "{again:?}");
    assert!(
        again.stderr.contains("satflow.yaml already exists"),
        "{again:?}"
    );
    assert_eq!(
        std::fs::read_to_string(app.path().join("satflow.yaml")).unwrap(),
        before
    );
    // A workflows folder of one's own counts as a setup too.
    let other = TestApp::empty();
    other.write("workflows/mine.yaml", "steps: []\n");
    let refused = other.satflow(&["init", "--sandbox"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("workflows already exists"),
        "{refused:?}"
    );
}

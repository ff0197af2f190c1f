//! The dashboard's accounts (`satflow user …`) and, in a real Chromium driven over WebDriver,
//! its pages, roles, CSRF tokens and the redirect of every request without a session.

use crate::helpers::TestApp;

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

    let db = std::fs::read(app.path().join("satflow.db")).unwrap();
    let db = String::from_utf8_lossy(&db);
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

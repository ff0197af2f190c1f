//! `satflow db backup` of a running daemon's database and `satflow db copy` into an empty
//! database, through the real binary: the copy holds what the source holds (row counts and
//! money sums printed and verified), a non-empty target is refused by the name of the table that
//! holds rows, and an existing backup file is never overwritten.
//!
//! PostgreSQL targets are refused by this build (the PostgreSQL backend has not landed on this
//! branch): the copy runs SQLite to SQLite.

use serde_json::Value;

use super::helpers::closed_port;
use super::webhooks::{Daemon, payload};

const EXCHANGES: usize = 12;

/// A daemon whose database holds `EXCHANGES` settled exchanges (money in TEXT columns), their
/// events and the webhooks that brought them.
async fn daemon_with_exchanges() -> Daemon {
    let pocket = format!("http://127.0.0.1:{}", closed_port());
    let d = Daemon::start(&pocket, 0, "alerts: []\n", &[]).await;
    for i in 0..EXCHANGES {
        let mut p = payload(&format!("copy-{i}"), "settled");
        // Amounts that a float would not add up exactly.
        p["cost"] = serde_json::json!(format!("{}.10", 10 + i));
        let (status, _) = d.send("exchange.settled", p).await;
        assert_eq!(status, 200);
    }
    super::helpers::nothing_in_flight(&d.app, &d.url).await;
    d
}

fn exchanges(d: &Daemon, config: &str) -> Vec<Value> {
    let run = d.app.satflow(&["exchanges", "--json", "-c", config]);
    assert_eq!(run.code, 0, "{run:?}");
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    doc["exchanges"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_database_is_backed_up_and_copied_into_an_empty_one_with_its_sums_verified() {
    let d = daemon_with_exchanges().await;

    // A snapshot while the daemon runs; the file is a database satflow opens.
    let backup = d.app.satflow(&["db", "backup", "snapshot.db"]);
    assert_eq!(backup.code, 0, "{backup:?}");
    assert!(
        backup.stdout.contains("backup written to snapshot.db"),
        "{backup:?}"
    );
    let again = d.app.satflow(&["db", "backup", "snapshot.db"]);
    assert_eq!(again.code, 1, "{again:?}");
    assert!(
        again.stderr.contains("snapshot.db exists already"),
        "{again:?}"
    );
    let config = std::fs::read_to_string(d.app.path().join("satflow.yaml")).unwrap();
    d.app.write(
        "snapshot.yaml",
        &config.replace("sqlite://satflow.db", "sqlite://snapshot.db"),
    );
    assert_eq!(exchanges(&d, "snapshot.yaml").len(), EXCHANGES);

    // The copy, from the snapshot (a daemon's live file may be copied too).
    let copy = d.app.satflow(&[
        "db",
        "copy",
        "--from",
        "sqlite://snapshot.db",
        "--to",
        "sqlite://copy.db",
    ]);
    assert_eq!(copy.code, 0, "{copy:?}");
    // 10.10 + 11.10 + … + 21.10: exact.
    let cost: rust_decimal::Decimal = (0..EXCHANGES)
        .map(|i| {
            format!("{}.10", 10 + i)
                .parse::<rust_decimal::Decimal>()
                .unwrap()
        })
        .sum();
    let line = copy
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("exchanges "))
        .unwrap_or_else(|| panic!("no exchanges line: {copy:?}"));
    assert!(
        line.contains(&format!("{EXCHANGES} rows"))
            && line.contains(&format!("cost Σ {}", cost.normalize())),
        "{line}"
    );
    assert!(copy.stdout.contains("verified"), "{copy:?}");
    d.app.write(
        "copy.yaml",
        &config.replace("sqlite://satflow.db", "sqlite://copy.db"),
    );
    assert_eq!(
        exchanges(&d, "copy.yaml"),
        exchanges(&d, "snapshot.yaml"),
        "the copy shows what the source shows"
    );
    let report = |c: &str| d.app.satflow(&["report", "--json", "-c", c]).stdout;
    assert_eq!(report("copy.yaml"), report("snapshot.yaml"));

    // A second copy into the now full target is refused, naming a table that holds rows.
    let refused = d.app.satflow(&[
        "db",
        "copy",
        "--from",
        "sqlite://snapshot.db",
        "--to",
        "sqlite://copy.db",
    ]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("is not empty: table ") && refused.stderr.contains("row(s)"),
        "{refused:?}"
    );
    assert_eq!(exchanges(&d, "copy.yaml").len(), EXCHANGES, "nothing added");

    // A missing source, and URLs this build cannot open, are refused without showing secrets.
    let missing = d.app.satflow(&[
        "db",
        "copy",
        "--from",
        "sqlite://nope.db",
        "--to",
        "sqlite://x.db",
    ]);
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(
        !d.app.path().join("nope.db").exists(),
        "no source is created"
    );
    let pg = d.app.satflow(&[
        "db",
        "copy",
        "--from",
        "sqlite://snapshot.db",
        "--to",
        "mysql://satflow:hunter2@127.0.0.1/satflow",
    ]);
    assert_eq!(pg.code, 1, "{pg:?}");
    assert!(!pg.stderr.contains("hunter2"), "{pg:?}");
    d.stop();
}

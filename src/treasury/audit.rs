//! What goes into the audit log, and checking it: the entries satflow appends for effects and
//! decisions, the hash of the configuration and workflows at each daemon start, and the walk
//! over the chain that names the first row that does not fit.
//!
//! It must never put a secret in an entry (an http.post's URL is shown redacted, headers and
//! bodies are left out) and never rewrite a row: a row that does not fit is reported, not fixed.

use std::path::Path;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::store::audit::{AuditRow, GENESIS, NewAudit, hex, row_hash};

/// The actor of the engine's own decisions.
pub const ENGINE: &str = "satflow";

/// The actor of a command typed at this machine without `--as`: `cli:<os user>`.
pub fn cli_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

/// The first row that does not fit the chain, and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    #[error("row {id}: its content does not match its hash (the row was altered)")]
    Altered { id: i64 },
    #[error(
        "row {id}: its prev_hash is not the hash of row {previous} (a row before it was removed or replaced)"
    )]
    Unlinked { id: i64, previous: i64 },
    #[error(
        "row {id}: it is the first row but does not start the chain (rows before it were removed)"
    )]
    BadStart { id: i64 },
}

impl Broken {
    /// The row that does not fit.
    pub fn row(&self) -> i64 {
        match self {
            Broken::Altered { id } | Broken::Unlinked { id, .. } | Broken::BadStart { id } => *id,
        }
    }
}

/// Walks the rows (oldest first) and returns how many fit, or the first that does not.
pub fn verify(rows: &[AuditRow]) -> Result<usize, Broken> {
    let mut previous: Option<&AuditRow> = None;
    for row in rows {
        match previous {
            None if row.prev_hash != GENESIS || row.id != 1 => {
                return Err(Broken::BadStart { id: row.id });
            }
            Some(p) if row.prev_hash != p.hash || Some(row.id) != p.id.checked_add(1) => {
                return Err(Broken::Unlinked {
                    id: row.id,
                    previous: p.id,
                });
            }
            _ => {}
        }
        let hash = row_hash(
            row.id,
            row.at_ms,
            &row.actor,
            &row.kind,
            &row.subject,
            &row.detail,
            &row.prev_hash,
        );
        if hash != row.hash {
            return Err(Broken::Altered { id: row.id });
        }
        previous = Some(row);
    }
    Ok(rows.len())
}

/// Hex SHA-256 of a file's bytes; `None` when it cannot be read.
fn file_hash(path: &Path) -> Option<String> {
    std::fs::read(path).ok().map(|b| hex(&Sha256::digest(&b)))
}

/// The `daemon.started` (or `daemon.reloaded`) entry: the hash of satflow.yaml and of each
/// workflow file, and one hash over them all. Hashes only: the files may hold secrets.
pub fn configuration_entry(kind: &str, config_path: &Path, workflow_files: &[&Path]) -> NewAudit {
    let mut files: Vec<(String, Option<String>)> = workflow_files
        .iter()
        .map(|p| (p.display().to_string(), file_hash(p)))
        .collect();
    crate::sorting::sort(&mut files);
    let config = file_hash(config_path);
    let mut all = Sha256::new();
    all.update(config.as_deref().unwrap_or("-").as_bytes());
    for (path, hash) in &files {
        all.update(b"\n");
        all.update(path.as_bytes());
        all.update(b"=");
        all.update(hash.as_deref().unwrap_or("-").as_bytes());
    }
    NewAudit {
        actor: ENGINE.into(),
        kind: kind.into(),
        subject: "configuration".into(),
        detail: json!({
            "sha256": hex(&all.finalize()),
            "config": { "path": config_path.display().to_string(), "sha256": config },
            "workflows": files.iter().map(|(p, h)| json!({ "path": p, "sha256": h })).collect::<Vec<_>>(),
        }),
    }
}

/// The kinds of outbox item whose completion moves money or changes an order, and what the
/// audit entry calls it.
pub fn effect_kind(outbox_kind: &str) -> Option<&'static str> {
    match outbox_kind {
        crate::actions::pocket_order::PATCH_KIND => Some("order.patched"),
        crate::actions::pocket_payout::KIND => Some("payout.patched"),
        crate::withdraw::KIND => Some("withdrawal.requested"),
        crate::actions::http_post::KIND => Some("http.posted"),
        _ => None,
    }
}

/// The facts of an effect for the log: its payload without anything that may be a secret.
pub fn effect_detail(outbox_kind: &str, payload: &Value) -> Value {
    if outbox_kind == crate::actions::http_post::KIND {
        // The URL may carry a token and headers or body credentials: the redacted URL only.
        return json!({ "url": crate::actions::http_post::shown_url(payload) });
    }
    payload.clone()
}

/// What a withdrawal's effect ended with (amount, address, or why it was skipped), for the
/// log; other effects' answers stay out (an http.post's response is the receiver's, not ours).
pub fn effect_result(outbox_kind: &str, result: Option<&str>) -> Value {
    match (outbox_kind, result) {
        (crate::withdraw::KIND, Some(text)) => serde_json::from_str(text).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::audit::row_hash;

    fn chain(n: i64) -> Vec<AuditRow> {
        let mut rows = Vec::new();
        let mut prev = GENESIS.to_string();
        for id in 1..=n {
            let hash = row_hash(id, id, "a", "k", "s", "{}", &prev);
            rows.push(AuditRow {
                id,
                at: crate::store::from_millis(id),
                at_ms: id,
                actor: "a".into(),
                kind: "k".into(),
                subject: "s".into(),
                detail: "{}".into(),
                prev_hash: prev.clone(),
                hash: hash.clone(),
            });
            prev = hash;
        }
        rows
    }

    #[test]
    fn a_whole_chain_verifies() {
        assert_eq!(verify(&chain(5)), Ok(5));
        assert_eq!(verify(&[]), Ok(0));
    }

    #[test]
    fn an_altered_row_is_named() {
        let mut rows = chain(5);
        rows[2].detail = r#"{"amount":1}"#.into();
        assert_eq!(verify(&rows), Err(Broken::Altered { id: 3 }));
    }

    #[test]
    fn a_removed_row_is_seen_at_the_next() {
        let mut rows = chain(5);
        rows.remove(1);
        assert_eq!(verify(&rows), Err(Broken::Unlinked { id: 3, previous: 1 }));
        let mut rows = chain(3);
        rows.remove(0);
        assert_eq!(verify(&rows), Err(Broken::BadStart { id: 2 }));
    }

    #[test]
    fn a_rehashed_row_breaks_the_link_after_it() {
        let mut rows = chain(4);
        rows[1].detail = r#"{"x":1}"#.into();
        rows[1].hash = row_hash(2, 2, "a", "k", "s", &rows[1].detail, &rows[1].prev_hash);
        assert_eq!(verify(&rows), Err(Broken::Unlinked { id: 3, previous: 2 }));
    }
}

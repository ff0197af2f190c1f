//! The audit log table: rows appended inside the caller's write transaction, each carrying the
//! hash of the row before it and the hash of its own canonical content, read back in order for
//! `satflow audit` and its verification.
//!
//! Nothing here may ever UPDATE or DELETE an `audit_log` row: the log is evidence. The row's
//! canonical content (what its hash covers) must never change form either, or every row
//! written before would stop verifying.

use super::db::{self, DbRow, Tx};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Store, StoreError, from_millis};

/// The `prev_hash` of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An entry to append: who did what to which thing, with the facts of it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAudit {
    /// A user's name, `satflow` for the engine's own decisions, or `cli:<os user>`.
    pub actor: String,
    /// What happened (`order.patched`, `approval.approved`, `daemon.started`, …).
    pub kind: String,
    /// What it happened to (`order/<id>`, `run/<id>/step/<id>`, `outbox/<id>`, …).
    pub subject: String,
    /// The facts (amounts, addresses, reasons). Never a secret.
    pub detail: Value,
}

/// A row as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub at_ms: i64,
    pub actor: String,
    pub kind: String,
    pub subject: String,
    /// The detail exactly as stored (the hash covers these bytes).
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash of a row's canonical content: every field, length-prefixed so no two different
/// rows can share a text, then the previous row's hash. Hex SHA-256.
pub fn row_hash(
    id: i64,
    at_ms: i64,
    actor: &str,
    kind: &str,
    subject: &str,
    detail: &str,
    prev_hash: &str,
) -> String {
    let mut h = Sha256::new();
    h.update(b"satflow-audit-v1\n");
    for field in [
        id.to_string().as_str(),
        at_ms.to_string().as_str(),
        actor,
        kind,
        subject,
        detail,
        prev_hash,
    ] {
        h.update(field.len().to_string().as_bytes());
        h.update(b":");
        h.update(field.as_bytes());
        h.update(b"\n");
    }
    hex(&h.finalize())
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Appends `entry` inside `tx`, after the last row. Under SQLite the write transaction holds
/// the database's write lock, so the last row cannot change before commit; under a database
/// with concurrent writers the explicit id and `UNIQUE (prev_hash)` make a second writer that
/// read the same last row fail instead of forking the chain.
pub async fn append(
    tx: &mut Tx,
    entry: &NewAudit,
    now: DateTime<Utc>,
) -> Result<AuditRow, StoreError> {
    let last: Option<(i64, String)> =
        db::query_as("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
    let (id, prev_hash) = match last {
        Some((id, hash)) => (
            id.checked_add(1)
                .ok_or_else(|| StoreError::Corrupt("the audit log's ids ran out".into()))?,
            hash,
        ),
        None => (1, GENESIS.to_string()),
    };
    let at_ms = now.timestamp_millis();
    let detail = entry.detail.to_string();
    let hash = row_hash(
        id,
        at_ms,
        &entry.actor,
        &entry.kind,
        &entry.subject,
        &detail,
        &prev_hash,
    );
    db::query(
        "INSERT INTO audit_log (id, at, actor, kind, subject, detail, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(at_ms)
    .bind(&entry.actor)
    .bind(&entry.kind)
    .bind(&entry.subject)
    .bind(&detail)
    .bind(&prev_hash)
    .bind(&hash)
    .execute(&mut *tx)
    .await?;
    Ok(AuditRow {
        id,
        at: from_millis(at_ms),
        at_ms,
        actor: entry.actor.clone(),
        kind: entry.kind.clone(),
        subject: entry.subject.clone(),
        detail,
        prev_hash,
        hash,
    })
}

fn audit_row(row: &DbRow) -> Result<AuditRow, sqlx::Error> {
    let at_ms: i64 = row.try_get("at")?;
    Ok(AuditRow {
        id: row.try_get("id")?,
        at: from_millis(at_ms),
        at_ms,
        actor: row.try_get("actor")?,
        kind: row.try_get("kind")?,
        subject: row.try_get("subject")?,
        detail: row.try_get("detail")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

impl Store {
    /// Appends one entry in a transaction of its own (a decision that has no transaction of
    /// its own to join).
    pub async fn audit(&self, entry: &NewAudit, now: DateTime<Utc>) -> Result<i64, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = append(&mut tx, entry, now).await?;
        tx.commit().await?;
        Ok(row.id)
    }

    /// The rows at or after `since` (all of them without), oldest first.
    pub async fn audit_rows(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let rows = db::query(
            "SELECT id, at, actor, kind, subject, detail, prev_hash, hash FROM audit_log
             WHERE at >= $1 ORDER BY id",
        )
        .bind(since.map(|t| t.timestamp_millis()).unwrap_or(i64::MIN))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(audit_row)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(kind: &str) -> NewAudit {
        NewAudit {
            actor: "alice".into(),
            kind: kind.into(),
            subject: "order/o1".into(),
            detail: json!({ "active": false }),
        }
    }

    #[tokio::test]
    async fn rows_chain_and_concurrent_writers_never_fork() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("db")).await.unwrap();
        let now = crate::clock::system_now();
        let mut tasks = Vec::new();
        for i in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.audit(&entry(&format!("k{i}")), now).await.unwrap()
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let rows = store.audit_rows(None).await.unwrap();
        assert_eq!(rows.len(), 8);
        let mut prev = GENESIS.to_string();
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(r.id, i as i64 + 1);
            assert_eq!(r.prev_hash, prev);
            assert_eq!(
                r.hash,
                row_hash(
                    r.id,
                    r.at_ms,
                    &r.actor,
                    &r.kind,
                    &r.subject,
                    &r.detail,
                    &r.prev_hash
                )
            );
            prev = r.hash.clone();
        }
    }

    /// The same entries at the same times chain to the same hashes on both backends: the hash
    /// is satflow's, over the texts as stored, never the database's.
    #[tokio::test]
    async fn the_chain_is_the_same_on_sqlite_and_postgres() {
        let Some(pg) = super::super::test_postgres::TestDatabase::create().await else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Store::open_sqlite(&dir.path().join("db")).await.unwrap();
        let postgres = pg.store().await;
        let now = crate::clock::system_now();
        for store in [&sqlite, &postgres] {
            for (i, kind) in ["order.patched", "approval.approved", "user.logged_in"]
                .iter()
                .enumerate()
            {
                let mut e = entry(kind);
                e.detail =
                    json!({ "amount": "5000.10", "sat": 250_000, "note": "Grüße \"quoted\"" });
                store
                    .audit(&e, now + chrono::Duration::milliseconds(i as i64))
                    .await
                    .unwrap();
            }
        }
        let a = sqlite.audit_rows(None).await.unwrap();
        let b = postgres.audit_rows(None).await.unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(a, b);
        assert_eq!(crate::treasury::audit::verify(&b).unwrap(), 3);
        postgres.close().await;
    }

    #[test]
    fn fields_cannot_slide_into_each_other() {
        let a = row_hash(1, 2, "ab", "c", "s", "{}", GENESIS);
        let b = row_hash(1, 2, "a", "bc", "s", "{}", GENESIS);
        assert_ne!(a, b);
    }
}

//! What `/healthz` asks the database: can a write reach the file right now, when did a write
//! last fail, and how old is the oldest webhook still waiting. These queries run on the probe
//! connection (short busy timeout), so a locked database is reported, never waited on.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

use super::db;
use super::{Store, StoreError, from_millis};

/// The last write that failed in this process.
#[derive(Debug, Default)]
pub struct WriteHealth {
    /// When, in ms since the epoch (0: never).
    at: AtomicI64,
    reason: Mutex<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFailure {
    pub at: DateTime<Utc>,
    pub reason: String,
}

impl WriteHealth {
    /// Remembers that a write (or another question to the database) failed just now.
    pub fn failed(&self, reason: &str) {
        if let Ok(mut r) = self.reason.lock() {
            *r = reason.to_string();
        }
        self.at.store(
            crate::clock::system_now().timestamp_millis(),
            Ordering::Relaxed,
        );
    }

    /// The last failure, if any.
    pub fn last_failure(&self) -> Option<WriteFailure> {
        let at = self.at.load(Ordering::Relaxed);
        if at == 0 {
            return None;
        }
        let reason = self.reason.lock().map(|r| r.clone()).unwrap_or_default();
        Some(WriteFailure {
            at: from_millis(at),
            reason,
        })
    }
}

impl Store {
    /// Commits one small write, waiting at most the probe's busy timeout for the lock: proof
    /// that writes reach the database file now.
    pub async fn probe_write(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let result = async {
            let mut tx = self.probe.begin_write().await?;
            db::query(
                "INSERT INTO health_probe (id, at) VALUES (1, $1)
                 ON CONFLICT (id) DO UPDATE SET at = excluded.at",
            )
            .bind(now.timestamp_millis())
            .execute(&mut tx)
            .await?;
            tx.commit().await
        }
        .await;
        result.map_err(|err| {
            self.health.failed(&format!("a probe write failed: {err}"));
            StoreError::from(err)
        })
    }

    /// When the oldest webhook still waiting to be processed arrived (the first pending one:
    /// ids follow arrival, and the `(status, id)` index makes this one row's read).
    pub async fn oldest_pending_webhook(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<i64> = db::query_scalar(
            "SELECT received_at FROM webhook_inbox WHERE status = 'pending' ORDER BY id LIMIT 1",
        )
        .fetch_optional(&self.probe)
        .await?;
        Ok(at.map(from_millis))
    }
}

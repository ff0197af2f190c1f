//! The alert window's admission: whether an alert of a kind may go out now or is only counted
//! into the open window. Below the inbox, outbox and runs, which admit alerts inside their own
//! transactions; the summaries of closed windows are `alerts`' business. It never sends.

use super::db::{self, Tx};
use chrono::{DateTime, Duration, Utc};

use super::StoreError;

/// The window in which alerts of one kind are coalesced into one email.
pub const ALERT_WINDOW: chrono::Duration = chrono::Duration::hours(1);

/// Whether an alert of `kind` may be sent now (true: it opened a window) or is counted into
/// the open one (false), inside the caller's transaction.
pub(super) async fn admit(
    tx: &mut Tx,
    kind: &str,
    now: DateTime<Utc>,
    window: Duration,
) -> Result<bool, StoreError> {
    let now_ms = now.timestamp_millis();
    let open: Option<(i64, i64)> =
        db::query_as("SELECT window_start, suppressed_count FROM alert_windows WHERE kind = $1")
            .bind(kind)
            .fetch_optional(&mut *tx)
            .await?;
    let closed = |start: i64| start.saturating_add(window.num_milliseconds()) <= now_ms;
    match open {
        // A closed window with nothing held back: this alert opens the next one.
        Some((start, 0)) if closed(start) => {}
        None => {}
        Some(_) => {
            db::query(
                "UPDATE alert_windows SET suppressed_count = suppressed_count + 1,
                     first_suppressed = COALESCE(first_suppressed, $2), last_suppressed = $2
                 WHERE kind = $1",
            )
            .bind(kind)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            return Ok(false);
        }
    }
    db::query(
        "INSERT INTO alert_windows (kind, window_start, suppressed_count) VALUES ($1, $2, 0)
         ON CONFLICT (kind) DO UPDATE SET window_start = excluded.window_start, suppressed_count = 0,
             first_suppressed = NULL, last_suppressed = NULL",
    )
    .bind(kind)
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    Ok(true)
}

//! The price cache: the last quote per source and currency.

use super::db::{self};
use chrono::{DateTime, Utc};

use super::{Store, StoreError, from_millis};

impl Store {
    /// The cached price (exact decimal text) and when it was fetched.
    pub async fn cached_price(
        &self,
        source: &str,
        currency: &str,
    ) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
        let r = db::query(
            "SELECT price, fetched_at FROM price_quotes WHERE source = $1 AND currency = $2",
        )
        .bind(source)
        .bind(currency)
        .fetch_optional(self.pool())
        .await?;
        Ok(r.map(|r| -> Result<_, sqlx::Error> {
            Ok((r.try_get("price")?, from_millis(r.try_get("fetched_at")?)))
        })
        .transpose()?)
    }

    pub async fn save_price(
        &self,
        source: &str,
        currency: &str,
        price: &str,
        fetched_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        db::query(
            "INSERT INTO price_quotes (source, currency, price, fetched_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (source, currency) DO UPDATE SET price = excluded.price, fetched_at = excluded.fetched_at",
        )
        .bind(source)
        .bind(currency)
        .bind(price)
        .bind(fetched_at.timestamp_millis())
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

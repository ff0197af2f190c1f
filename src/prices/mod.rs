//! The BTC price in a fiat currency, from Peach (`/v1/market/price/BTC<CUR>`) or BitPay
//! (`/rates/BTC/<CUR>`), cached in the database for `max_age`.
//!
//! A price is money: it is read as exact decimal text and never passes through a float. A quote
//! that cannot be had fresh enough is an error — callers fail closed, they never act on no price.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::config::{Config, PriceSource};
use crate::domain::Currency;
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url} answered without a usable price: {body}")]
    Decode { url: String, body: String },
    #[error("{url} gave a price dated {date}, older than the {max_age:?} allowed")]
    Stale {
        url: String,
        date: String,
        max_age: Duration,
    },
    #[error("the database: {0}")]
    Store(#[from] crate::store::StoreError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub price: Decimal,
    pub currency: Currency,
    pub source: PriceSource,
    pub fetched_at: DateTime<Utc>,
}

pub fn source_name(source: PriceSource) -> &'static str {
    match source {
        PriceSource::Peach => "peach",
        PriceSource::Bitpay => "bitpay",
    }
}

/// A positive decimal from a JSON number or string, exactly as written.
fn price_of(v: &Value) -> Option<Decimal> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return None,
    };
    crate::pocket::types::parse_decimal(&text)
        .ok()
        .filter(|d| *d > Decimal::ZERO)
}

/// Asks the source now.
pub async fn fetch(
    config: &Config,
    source: PriceSource,
    currency: Currency,
    max_age: Duration,
) -> Result<Decimal, PriceError> {
    let code = currency.code().to_uppercase();
    let url = match source {
        PriceSource::Peach => format!(
            "{}/v1/market/price/BTC{code}",
            config.prices.peach_url.as_str().trim_end_matches('/')
        ),
        PriceSource::Bitpay => format!(
            "{}/rates/BTC/{code}",
            config.prices.bitpay_url.as_str().trim_end_matches('/')
        ),
    };
    let http = reqwest::Client::builder()
        .user_agent(concat!("satflow/", env!("CARGO_PKG_VERSION")))
        .timeout(Duration::from_secs(15))
        .build()
        .expect("the HTTP client's settings are valid");
    let response = http
        .get(&url)
        .header("X-Accept-Version", "2.0.0")
        .send()
        .await
        .map_err(|e| PriceError::Unreachable {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    if !(200..300).contains(&status) {
        return Err(PriceError::Status { url, status, body });
    }
    let v: Value = serde_json::from_str(&body).map_err(|_| PriceError::Decode {
        url: url.clone(),
        body: body.clone(),
    })?;
    let price = match source {
        PriceSource::Peach => price_of(&v["price"]),
        PriceSource::Bitpay => price_of(&v["data"]["rate"]),
    };
    let price = price.ok_or_else(|| PriceError::Decode {
        url: url.clone(),
        body: body.clone(),
    })?;
    // Peach dates its price: one older than allowed is as good as none.
    if let Some(date) = v["date"].as_str()
        && let Ok(at) = DateTime::parse_from_rfc3339(date)
        && (Utc::now() - at.with_timezone(&Utc))
            .to_std()
            .is_ok_and(|age| age > max_age)
    {
        return Err(PriceError::Stale {
            url,
            date: date.to_string(),
            max_age,
        });
    }
    Ok(price)
}

/// The price, from the cache while younger than `max_age`, else fetched (and cached).
pub async fn quote(
    store: &Store,
    config: &Config,
    source: PriceSource,
    currency: Currency,
    max_age: Duration,
    now: DateTime<Utc>,
) -> Result<Quote, PriceError> {
    let name = source_name(source);
    if let Some((text, at)) = store.cached_price(name, currency.code()).await?
        && (now - at).to_std().map_or(true, |age| age <= max_age)
        && let Ok(price) = crate::pocket::types::parse_decimal(&text)
    {
        return Ok(Quote {
            price,
            currency,
            source,
            fetched_at: at,
        });
    }
    let price = fetch(config, source, currency, max_age).await?;
    store
        .save_price(name, currency.code(), &price.to_string(), now)
        .await?;
    Ok(Quote {
        price,
        currency,
        source,
        fetched_at: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prices_are_read_exactly_and_nonsense_is_refused() {
        let exact: Value = serde_json::from_str(r#"{"price": 27455.04}"#).unwrap();
        assert_eq!(price_of(&exact["price"]), Some(Decimal::new(2_745_504, 2)));
        assert_eq!(price_of(&json!("61000.1")), Some(Decimal::new(610_001, 1)));
        assert_eq!(price_of(&json!(0)), None);
        assert_eq!(price_of(&json!(-5)), None);
        assert_eq!(price_of(&json!(null)), None);
        assert_eq!(price_of(&json!("cheap")), None);
    }
}

//! The BTC price in a fiat currency, from Peach (`/v1/market/price/BTC<CUR>`) or BitPay
//! (`/rates/BTC/<CUR>`), cached in the database for `max_age`.
//!
//! A price is money: it is read as exact decimal text and never passes through a float. A quote
//! that cannot be had fresh enough is an error — callers fail closed, they never act on no price.
//! Peach's public fee estimate (`/v1/estimateFees`) is read here too.
//!
//! Every call is a read; its outcomes are written once, in [`PriceError::class`]:
//!
//! | failure                                            | class                          |
//! |----------------------------------------------------|--------------------------------|
//! | connection refused, DNS, connect timeout           | transient                      |
//! | timeout or cut after the request was sent          | transient (a read)             |
//! | 408, 425, 429 (Retry-After kept), any 5xx, JSON or HTML | transient                 |
//! | Peach 400 `BAD_REQUEST`, 404 `NOT_FOUND`, 451 (geo-block); BitPay 404 (no such currency); other 4xx | permanent |
//! | 2xx that cannot be read, or a price that is not positive | permanent                |
//! | a dated price older than allowed                   | transient (a fresh one may come) |
//! | the database                                       | transient                      |
//! | every source of `prices.sources` failed            | transient if one of them was, else unknown if one was, else permanent |
//!
//! `prices.sources` is an ordered list: a source that fails in any way falls back to the next.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::config::{Config, PriceSource};
use crate::domain::Currency;
use crate::lightning::node::{describe, with_segments};
use crate::outcome::{self, Call, Class};
use crate::store::Store;

/// How long a connection may take to open, and a whole call.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    #[error("cannot ask for the price: {0}")]
    Config(String),
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        url: String,
        reason: String,
        class: Class,
    },
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
        retry_after: Option<Duration>,
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
    /// Every source of `prices.sources` failed, each for its own reason.
    #[error("every price source failed: {}", Failures(.0))]
    AllFailed(Vec<(PriceSource, PriceError)>),
}

impl PriceError {
    /// The outcome of the failed call: the table in this module's header, in code.
    pub fn class(&self) -> Class {
        match self {
            PriceError::Config(_) | PriceError::Decode { .. } => Class::Permanent,
            PriceError::Unreachable { class, .. } => *class,
            PriceError::Status {
                status,
                retry_after,
                ..
            } => outcome::of_status(*status, *retry_after).unwrap_or(Class::Permanent),
            PriceError::Stale { .. } | PriceError::Store(_) => Class::TRANSIENT,
            // Worth asking again when any source may answer later.
            PriceError::AllFailed(failures) => {
                let classes = failures.iter().map(|(_, e)| e.class());
                let transient = classes
                    .clone()
                    .find(|c| matches!(c, Class::Transient { .. }));
                transient
                    .or_else(|| classes.clone().find(|c| matches!(c, Class::Unknown)))
                    .unwrap_or(Class::Permanent)
            }
        }
    }

    pub fn http_status(&self) -> Option<u16> {
        match self {
            PriceError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// One GET, its 2xx body parsed as JSON; any other answer is an error with its status.
async fn get_json(url: &url::Url, timeouts: (Duration, Duration)) -> Result<Value, PriceError> {
    let http = reqwest::Client::builder()
        .user_agent(concat!("satflow/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(timeouts.0)
        .timeout(timeouts.1)
        .build()
        .expect("the HTTP client's settings are valid");
    let unreachable = |e: reqwest::Error| PriceError::Unreachable {
        url: url.to_string(),
        reason: describe(&e),
        class: outcome::of_transport(&e, Call::Read),
    };
    let response = http
        .get(url.clone())
        .header("X-Accept-Version", "2.0.0")
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        let retry_after = outcome::retry_after(response.headers(), crate::clock::system_now());
        let body = response.text().await.unwrap_or_default();
        return Err(PriceError::Status {
            url: url.to_string(),
            status,
            body: body.chars().take(300).collect(),
            retry_after,
        });
    }
    let body = response.text().await.map_err(unreachable)?;
    serde_json::from_str(&body).map_err(|_| PriceError::Decode {
        url: url.to_string(),
        body: body.chars().take(300).collect(),
    })
}

/// Peach's fee estimate for confirmation within about half an hour, in whole sat/vB.
pub async fn peach_fee_rate(config: &Config) -> Result<u64, PriceError> {
    peach_fee_rate_with(&config.prices.peach_url, (CONNECT_TIMEOUT, TIMEOUT)).await
}

/// The same from Peach at `peach_url`, with other timeouts: `(connect, whole call)`.
pub async fn peach_fee_rate_with(
    peach_url: &url::Url,
    timeouts: (Duration, Duration),
) -> Result<u64, PriceError> {
    let url = with_segments(peach_url, &["v1", "estimateFees"]).map_err(PriceError::Config)?;
    let v = get_json(&url, timeouts).await?;
    crate::wallet::esplora::positive_rate(&v["halfHourFee"]).ok_or_else(|| PriceError::Decode {
        url: url.to_string(),
        body: v.to_string().chars().take(300).collect(),
    })
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
    let base = match source {
        PriceSource::Peach => &config.prices.peach_url,
        PriceSource::Bitpay => &config.prices.bitpay_url,
    };
    fetch_with(base, source, currency, max_age, (CONNECT_TIMEOUT, TIMEOUT)).await
}

/// The same from `source` at `base`, with other timeouts: `(connect, whole call)`.
pub async fn fetch_with(
    base: &url::Url,
    source: PriceSource,
    currency: Currency,
    max_age: Duration,
    timeouts: (Duration, Duration),
) -> Result<Decimal, PriceError> {
    let code = currency.code().to_uppercase();
    let url = match source {
        PriceSource::Peach => {
            with_segments(base, &["v1", "market", "price", &format!("BTC{code}")])
        }
        PriceSource::Bitpay => with_segments(base, &["rates", "BTC", &code]),
    }
    .map_err(PriceError::Config)?;
    let v = get_json(&url, timeouts).await?;
    let url = url.to_string();
    let price = match source {
        PriceSource::Peach => price_of(&v["price"]),
        PriceSource::Bitpay => price_of(&v["data"]["rate"]),
    };
    let price = price.ok_or_else(|| PriceError::Decode {
        url: url.clone(),
        body: v.to_string().chars().take(300).collect(),
    })?;
    // Peach dates its price: one older than allowed is as good as none.
    if let Some(date) = v["date"].as_str()
        && let Ok(at) = DateTime::parse_from_rfc3339(date)
        && (crate::clock::system_now() - at.with_timezone(&Utc))
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

/// The price from the first of `sources` that has one: a fresh enough cached price of any of
/// them (in their order) is used as it is; else each is asked in turn, and one that fails —
/// Peach's 451 geo-block, or any other failure — falls back to the next. The quote names the
/// source that answered; when every source failed, the error lists each one's failure.
pub async fn quote(
    store: &Store,
    config: &Config,
    sources: &[PriceSource],
    currency: Currency,
    max_age: Duration,
    now: DateTime<Utc>,
) -> Result<Quote, PriceError> {
    for &source in sources {
        if let Some((text, at)) = store
            .cached_price(source_name(source), currency.code())
            .await?
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
    }
    let mut failures = Vec::new();
    for &source in sources {
        match fetch(config, source, currency, max_age).await {
            Ok(price) => {
                store
                    .save_price(
                        source_name(source),
                        currency.code(),
                        &price.to_string(),
                        now,
                    )
                    .await?;
                if !failures.is_empty() {
                    tracing::warn!(source = source_name(source), failed = %Failures(&failures), "a price source failed; the next one answered");
                }
                return Ok(Quote {
                    price,
                    currency,
                    source,
                    fetched_at: now,
                });
            }
            Err(e) => failures.push((source, e)),
        }
    }
    match failures.len() {
        0 => Err(PriceError::Config(
            "no price source is configured; name one in prices.sources".into(),
        )),
        // One source: its failure as it is, with its own class.
        1 => Err(failures.pop().map(|(_, e)| e).expect("one failure")),
        _ => Err(PriceError::AllFailed(failures)),
    }
}

/// Each source's failure, in the order they were asked.
struct Failures<'a>(&'a [(PriceSource, PriceError)]);

impl std::fmt::Display for Failures<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (source, e)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {e}", source_name(*source))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Esplora (`wallet/esplora.rs`), the hub (`withdraw/hub.rs`) and the price sources all
    /// build their URLs with `with_segments`: a base behind a path prefix keeps its prefix,
    /// with or without the trailing slash.
    #[test]
    fn esplora_hub_and_price_urls_keep_a_base_path() {
        for base in [
            "https://proxy.example/esplora/api",
            "https://proxy.example/esplora/api/",
        ] {
            let url = with_segments(&url::Url::parse(base).unwrap(), &["address", "bc1q", "txs"]);
            assert_eq!(
                url.unwrap().as_str(),
                "https://proxy.example/esplora/api/address/bc1q/txs"
            );
        }
        for base in [
            "https://staging.example/hub",
            "https://staging.example/hub/",
        ] {
            let url = with_segments(&url::Url::parse(base).unwrap(), &["api", "v2", "user"]);
            assert_eq!(
                url.unwrap().as_str(),
                "https://staging.example/hub/api/v2/user"
            );
        }
        let url = with_segments(
            &url::Url::parse("https://proxy.example/bitpay/").unwrap(),
            &["rates", "BTC", "EUR"],
        );
        assert_eq!(
            url.unwrap().as_str(),
            "https://proxy.example/bitpay/rates/BTC/EUR"
        );
    }

    #[test]
    fn every_failure_is_listed_and_the_class_is_the_most_hopeful() {
        let blocked = PriceError::Status {
            url: "https://peach/v1/market/price/BTCEUR".into(),
            status: 451,
            body: "blocked".into(),
            retry_after: None,
        };
        let busy = PriceError::Status {
            url: "https://bitpay/rates/BTC/EUR".into(),
            status: 503,
            body: "busy".into(),
            retry_after: None,
        };
        assert_eq!(blocked.class(), Class::Permanent);
        let all = PriceError::AllFailed(vec![
            (PriceSource::Peach, blocked),
            (PriceSource::Bitpay, busy),
        ]);
        let text = all.to_string();
        assert!(
            text.contains("peach: https://peach/v1/market/price/BTCEUR answered 451")
                && text.contains("; bitpay: https://bitpay/rates/BTC/EUR answered 503"),
            "{text}"
        );
        assert!(matches!(all.class(), Class::Transient { .. }));
        let PriceError::AllFailed(mut v) = all else {
            unreachable!()
        };
        v.pop();
        assert_eq!(PriceError::AllFailed(v).class(), Class::Permanent);
    }

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

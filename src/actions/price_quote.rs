//! `price.quote`: the BTC price in a fiat currency, from the configured sources (or the step's
//! `source:`), no older than `max_age`. No price fails the step: nothing after it acts on none.

use std::str::FromStr;
use std::time::Duration;

use serde_json::json;

use super::read::ActionReader;
use super::{ActionStep, Param, StepCx, StepOutcome};
use crate::config::PriceSource;
use crate::domain::{Currency, HumanDuration};
use crate::source::MapReader;
use crate::source::reader::{describe, string};

/// The BTC price in a fiat currency.
#[derive(Debug, Clone)]
pub struct PriceQuote {
    pub currency: Param<Currency>,
    pub source: Option<PriceSource>,
    pub max_age: Option<Duration>,
}

impl ActionStep for PriceQuote {
    const NAME: &'static str = "price.quote";
    const OUTPUTS: &'static [&'static str] = &["price", "currency", "source", "fetched_at"];

    fn read(r: &mut ActionReader<'_, '_>, m: &mut MapReader<'_>) -> Option<Self> {
        let currency = m
            .required(
                "currency",
                "write the fiat currency to quote: eur, chf or gbp",
                r.ctx,
            )
            .and_then(|n| r.param(n, "currency", Currency::from_str));
        let source = match m.get("source") {
            None => Some(None),
            Some(n) => match string(n, &r.field("source"), r.ctx).as_deref() {
                Some("peach") => Some(Some(PriceSource::Peach)),
                Some("bitpay") => Some(Some(PriceSource::Bitpay)),
                Some(other) => {
                    r.ctx.error(
                        n.pos,
                        format!(
                            "{}: {} is not a price source; accepted: peach, bitpay",
                            r.field("source"),
                            describe(other)
                        ),
                    );
                    None
                }
                None => None,
            },
        };
        let max_age = match m.get("max_age") {
            None => Some(None),
            Some(n) => {
                let field = r.field("max_age");
                string(n, &field, r.ctx).and_then(|t| match t.parse::<HumanDuration>() {
                    // A quote older than a day says nothing about today's price.
                    Ok(d) if d.0 >= Duration::from_secs(1) && d.0 <= Duration::from_secs(86_400) => {
                        Some(Some(d.0))
                    }
                    Ok(_) => {
                        r.ctx.error(
                            n.pos,
                            format!("{field}: {} is out of range; accepted: 1s to 24h (a quote older than a day says nothing about today's price)", describe(&t)),
                        );
                        None
                    }
                    Err(e) => {
                        r.ctx.error(n.pos, format!("{field}: {e}"));
                        None
                    }
                })
            }
        };
        Some(PriceQuote {
            currency: currency?,
            source: source?,
            max_age: max_age?,
        })
    }

    async fn perform(&self, cx: &StepCx<'_>) -> StepOutcome {
        let currency = match cx.param(&self.currency, |s| {
            s.parse::<Currency>().map_err(|e| e.to_string())
        }) {
            Ok(c) => c,
            Err(e) => return StepOutcome::failed(format!("currency: {e}")),
        };
        // The step's `source:` overrides the configured list.
        let sources = self
            .source
            .map_or_else(|| cx.config.prices.sources.clone(), |s| vec![s]);
        let max_age = self.max_age.unwrap_or(cx.config.prices.max_age);
        match crate::prices::quote(
            cx.store,
            cx.config,
            &sources,
            currency,
            max_age,
            cx.clock.now(),
        )
        .await
        {
            Ok(quote) => StepOutcome::succeeded(
                json!({
                    "price": crate::pocket::types::number(quote.price),
                    "currency": currency.code(),
                    "source": crate::prices::source_name(quote.source),
                    "fetched_at": quote.fetched_at.to_rfc3339(),
                }),
                Vec::new(),
            ),
            // Fail closed: no step after this one acts on no price.
            Err(e) => StepOutcome::failed(format!("no price to act on: {e}")),
        }
    }
}

//! `prices:` — the price sources, in the order they are asked, and the sanity bounds. Reads and
//! reports; never asks a source.

use super::*;

impl Reader<'_> {
    pub fn prices(
        &self,
        node: Option<&Node>,
        ctx: &mut Ctx<'_>,
        names: &mut Names,
    ) -> Option<PricesConfig> {
        let mut prices = PricesConfig {
            sources: vec![PriceSource::Peach],
            peach_url: Url::parse(DEFAULT_PEACH_URL).ok()?,
            bitpay_url: Url::parse(DEFAULT_BITPAY_URL).ok()?,
            max_age: std::time::Duration::from_secs(300),
            sanity_percent: None,
        };
        names.price_source = Some(PriceSource::Peach);
        let Some(node) = node else {
            return Some(prices);
        };
        let mut m = MapReader::new(node, "prices", ctx)?;
        let mut ok = true;
        // `source: peach` is a list of one; `sources: [peach, bitpay]` is asked in order.
        let one = m.get("source").map(|n| ("prices.source", vec![n]));
        let many = m.get("sources").map(|n| ("prices.sources", list_or_one(n)));
        if let (Some(_), Some((_, items))) = (&one, &many) {
            ctx.error(
                items.first().map_or(node.pos, |n| n.pos),
                "prices: write either `source: peach` or `sources: [peach, bitpay]`, not both"
                    .to_string(),
            );
            ok = false;
        }
        if let Some((field, items)) = many.or(one) {
            let mut sources = Vec::new();
            for n in &items {
                let text = string(n, field, ctx);
                let source = match text.as_deref() {
                    Some("peach") => PriceSource::Peach,
                    Some("bitpay") => PriceSource::Bitpay,
                    Some(other) => {
                        ctx.error(
                            n.pos,
                            format!(
                                "{field}: {} is not a price source; accepted: peach, bitpay",
                                describe(other)
                            ),
                        );
                        ok = false;
                        continue;
                    }
                    None => {
                        ok = false;
                        continue;
                    }
                };
                if sources.contains(&source) {
                    ctx.error(
                        n.pos,
                        format!(
                            "{field}: {} is listed twice; name each source once, in the order to ask them",
                            describe(text.as_deref().unwrap_or_default())
                        ),
                    );
                    ok = false;
                }
                sources.push(source);
            }
            if items.is_empty() {
                ctx.error(
                    node.pos,
                    format!("{field}: the list is empty; name at least one of peach, bitpay"),
                );
                ok = false;
            }
            if ok {
                prices.sources = sources;
            }
            names.price_source = ok.then(|| prices.sources[0]);
        }
        for (key, slot) in [
            ("peach_url", &mut prices.peach_url),
            ("bitpay_url", &mut prices.bitpay_url),
        ] {
            if let Some(n) = m.get(key) {
                match http_url(n, &format!("prices.{key}"), ctx) {
                    Some(url) => *slot = url,
                    None => ok = false,
                }
            }
        }
        if let Some(n) = m.get("max_age") {
            match duration(n, "prices.max_age", bounds::PRICES_MAX_AGE, ctx) {
                Some(d) => prices.max_age = d,
                None => ok = false,
            }
        }
        if let Some(n) = m.get("sanity_percent") {
            let text = crate::source::reader::scalar(n, "prices.sanity_percent", ctx)
                .map(|s| s.value.clone());
            match text
                .as_deref()
                .map(|t| (t, rust_decimal::Decimal::from_str_exact(t)))
            {
                Some((_, Ok(d)))
                    if d > rust_decimal::Decimal::ZERO
                        && d <= rust_decimal::Decimal::ONE_HUNDRED =>
                {
                    prices.sanity_percent = Some(d)
                }
                Some((t, _)) => {
                    ctx.error(
                        n.pos,
                        format!("prices.sanity_percent: {} is not a percentage; write a number above 0 and at most 100, e.g. 5", describe(t)),
                    );
                    ok = false;
                }
                None => ok = false,
            }
        }
        m.finish(ctx);
        ok.then_some(prices)
    }
}

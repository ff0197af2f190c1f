//! The overview's stack chart as inline SVG: bitcoin bought and withdrawn over time, with both
//! axes labelled (dates, BTC) and a legend. Pure integer geometry on satoshis, so no amount is
//! ever rounded through floating point; the page needs no script to show it.
//!
//! It must never draw from anything but the ledger's entries, and never emit text that did not
//! go through `escape`.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::ledger::Entry;

const W: i64 = 720;
const H: i64 = 300;
const LEFT: i64 = 78;
const RIGHT: i64 = 16;
const TOP: i64 = 34;
const BOTTOM: i64 = 40;

/// The most points a series keeps: more than pixels across would only weigh the page.
const MAX_POINTS: usize = 400;

fn sats(btc: Decimal) -> i64 {
    (btc * Decimal::from(100_000_000u64))
        .trunc()
        .try_into()
        .unwrap_or(0)
}

fn btc_label(sats: i64) -> String {
    let d = Decimal::from(sats) / Decimal::from(100_000_000u64);
    d.normalize().to_string()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A step between ticks of 1, 2 or 5 times a power of ten, so that `max` takes about 4 ticks.
fn nice_step(max: i64) -> i64 {
    let rough = (max / 4).max(1);
    let mut power = 1i64;
    while power.saturating_mul(10) <= rough {
        power = power.saturating_mul(10);
    }
    [1, 2, 5, 10]
        .into_iter()
        .map(|m| power.saturating_mul(m))
        .find(|s| *s >= rough)
        .unwrap_or(power)
}

/// Cumulative `(time, sats)` of the entries of `kind`, thinned to at most `MAX_POINTS`.
fn series(entries: &[Entry], kind: &str) -> Vec<(DateTime<Utc>, i64)> {
    let mut total = 0i64;
    let all: Vec<(DateTime<Utc>, i64)> = entries
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| {
            total = total.saturating_add(sats(e.btc.unwrap_or_default()));
            (e.date, total)
        })
        .collect();
    if all.len() <= MAX_POINTS {
        return all;
    }
    let every = all.len().div_ceil(MAX_POINTS);
    let last = all.len() - 1;
    all.into_iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0 || *i == last)
        .map(|(_, p)| p)
        .collect()
}

/// The chart up to `now`; a sentence instead when there is nothing to draw.
pub fn stack_svg(entries: &[Entry], now: DateTime<Utc>) -> String {
    let bought = series(entries, "buy");
    let withdrawn = series(entries, "withdrawal");
    let Some(start) = bought.iter().chain(&withdrawn).map(|p| p.0).min() else {
        return "<p class=\"muted\">The chart appears with the first purchase.</p>".into();
    };
    let end = now.max(start + chrono::Duration::days(1));
    let span = (end - start).num_seconds().max(1);
    let top_sats = bought
        .iter()
        .chain(&withdrawn)
        .map(|p| p.1)
        .max()
        .unwrap_or(0)
        .max(1);
    let step = nice_step(top_sats);
    let y_max = ((top_sats + step - 1) / step)
        .saturating_mul(step)
        .max(step);
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let x = |t: DateTime<Utc>| LEFT + ((t - start).num_seconds().clamp(0, span) * pw / span);
    let y = |s: i64| TOP + ph - (i128::from(s) * i128::from(ph) / i128::from(y_max)) as i64;

    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-labelledby=\"chart-title\" font-family=\"system-ui,sans-serif\" font-size=\"11\">\
<title id=\"chart-title\">Bitcoin stacked and withdrawn over time</title>"
    );
    // Horizontal grid and BTC labels.
    let mut v = 0;
    while v <= y_max {
        let yy = y(v);
        svg.push_str(&format!(
            "<line x1=\"{LEFT}\" y1=\"{yy}\" x2=\"{}\" y2=\"{yy}\" stroke=\"#dde1e6\"/>\
<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#5b6670\">{}</text>",
            W - RIGHT,
            LEFT - 6,
            yy + 4,
            escape(&btc_label(v))
        ));
        v = v.saturating_add(step);
    }
    svg.push_str(&format!(
        "<text x=\"12\" y=\"{}\" fill=\"#5b6670\" transform=\"rotate(-90 12 {})\" text-anchor=\"middle\">BTC</text>",
        TOP + ph / 2,
        TOP + ph / 2
    ));
    // Date ticks: five, evenly spaced.
    for i in 0..=4 {
        let t = start + chrono::Duration::seconds(span * i / 4);
        let xx = x(t);
        let anchor = match i {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        svg.push_str(&format!(
            "<line x1=\"{xx}\" y1=\"{}\" x2=\"{xx}\" y2=\"{}\" stroke=\"#5b6670\"/>\
<text x=\"{xx}\" y=\"{}\" text-anchor=\"{anchor}\" fill=\"#5b6670\">{}</text>",
            TOP + ph,
            TOP + ph + 5,
            TOP + ph + 18,
            escape(&t.format("%Y-%m-%d").to_string())
        ));
    }
    svg.push_str(&format!(
        "<line x1=\"{LEFT}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#5b6670\"/>\
<line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{}\" stroke=\"#5b6670\"/>",
        TOP + ph,
        W - RIGHT,
        TOP + ph,
        TOP + ph
    ));
    for (points, colour, dash) in [
        (&bought, "#d9730d", ""),
        (&withdrawn, "#1f6fb3", " stroke-dasharray=\"6 4\""),
    ] {
        if points.is_empty() {
            continue;
        }
        // A step line: the total holds until the next entry, and up to now.
        let mut path = format!("M{} {}", x(points[0].0), y(0));
        let mut last = 0;
        for (t, s) in points.iter() {
            path.push_str(&format!(" H{} V{}", x(*t), y(*s)));
            last = *s;
        }
        path.push_str(&format!(" H{}", x(end)));
        let _ = last;
        svg.push_str(&format!(
            "<path d=\"{path}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2.5\"{dash}/>"
        ));
    }
    // Legend.
    let bought_total = bought.last().map_or(0, |p| p.1);
    let withdrawn_total = withdrawn.last().map_or(0, |p| p.1);
    svg.push_str(&format!(
        "<g><line x1=\"{LEFT}\" y1=\"14\" x2=\"{}\" y2=\"14\" stroke=\"#d9730d\" stroke-width=\"2.5\"/>\
<text x=\"{}\" y=\"18\">bought, in all ({} BTC)</text>\
<line x1=\"{}\" y1=\"14\" x2=\"{}\" y2=\"14\" stroke=\"#1f6fb3\" stroke-width=\"2.5\" stroke-dasharray=\"6 4\"/>\
<text x=\"{}\" y=\"18\">withdrawn to cold storage ({} BTC)</text></g>",
        LEFT + 24,
        LEFT + 30,
        escape(&btc_label(bought_total)),
        LEFT + 250,
        LEFT + 274,
        LEFT + 280,
        escape(&btc_label(withdrawn_total)),
    ));
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: &'static str, day: i64, btc: &str) -> Entry {
        Entry {
            date: DateTime::from_timestamp(1_700_000_000 + day * 86_400, 0).unwrap(),
            kind,
            reference: format!("{kind}-{day}"),
            order_id: None,
            currency: Some("chf".into()),
            fiat: None,
            fiat_fee: None,
            btc: Some(btc.parse().unwrap()),
            btc_fee: None,
            rate: None,
            address: None,
            txid: None,
        }
    }

    #[test]
    fn the_chart_has_axes_dates_and_a_legend() {
        let entries = [
            entry("buy", 0, "0.001"),
            entry("buy", 7, "0.0012"),
            entry("withdrawal", 8, "0.002"),
        ];
        let now = DateTime::from_timestamp(1_700_000_000 + 14 * 86_400, 0).unwrap();
        let svg = stack_svg(&entries, now);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("2023-11-14"), "the first date: {svg}");
        assert!(svg.contains("bought, in all (0.0022 BTC)"), "{svg}");
        assert!(
            svg.contains("withdrawn to cold storage (0.002 BTC)"),
            "{svg}"
        );
        assert!(svg.contains(">BTC</text>"));
        assert_eq!(svg.matches("<path").count(), 2);
    }

    #[test]
    fn steps_are_round_and_nothing_is_a_sentence() {
        assert_eq!(nice_step(220_000), 100_000);
        assert_eq!(nice_step(1), 1);
        assert!(stack_svg(&[], crate::clock::system_now()).starts_with("<p"));
    }
}

//! The stacking chart of the weekly digest, drawn straight into a PNG: on top, the bitcoin
//! stacked over time; below, the price of each buy (blue) against the running average cost
//! (orange). No text is drawn (no font is shipped): the email states the scales.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::Entry;

pub const WIDTH: u32 = 640;
pub const HEIGHT: u32 = 360;
const MARGIN: i64 = 12;
const ORANGE: [u8; 3] = [0xf7, 0x93, 0x1a];
const BLUE: [u8; 3] = [0x2b, 0x6c, 0xb0];
const GRID: [u8; 3] = [0xdd, 0xdd, 0xdd];

/// The scales the chart was drawn with, for the email to state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scales {
    pub currency: String,
    pub btc_max: Decimal,
    pub price_min: Decimal,
    pub price_max: Decimal,
}

struct Canvas {
    pixels: Vec<u8>,
}

impl Canvas {
    fn new() -> Canvas {
        Canvas {
            pixels: vec![255; (WIDTH * HEIGHT * 3) as usize],
        }
    }

    fn dot(&mut self, x: i64, y: i64, color: [u8; 3]) {
        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            let (x, y) = (x + dx, y + dy);
            if (0..i64::from(WIDTH)).contains(&x) && (0..i64::from(HEIGHT)).contains(&y) {
                let i = ((y * i64::from(WIDTH) + x) * 3) as usize;
                self.pixels[i..i + 3].copy_from_slice(&color);
            }
        }
    }

    /// Bresenham, two pixels thick.
    fn line(&mut self, (mut x0, mut y0): (i64, i64), (x1, y1): (i64, i64), color: [u8; 3]) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let mut err = dx + dy;
        loop {
            self.dot(x0, y0, color);
            if x0 == x1 && y0 == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x0 += sx;
            }
            if e2 <= dx {
                err += dx;
                y0 += sy;
            }
        }
    }

    fn polyline(&mut self, points: &[(i64, i64)], color: [u8; 3]) {
        for pair in points.windows(2) {
            self.line(pair[0], pair[1], color);
        }
        if let [only] = points {
            self.dot(only.0, only.1, color);
        }
    }
}

/// Where a value lands between `top` and `bottom` (pixels) for the range `min..=max`. Only the
/// drawing goes through floating point; every amount shown as text stays exact.
fn y_of(value: Decimal, min: Decimal, max: Decimal, top: i64, bottom: i64) -> i64 {
    let span = max
        .checked_sub(min)
        .unwrap_or(Decimal::MAX)
        .max(Decimal::new(1, 8));
    let share = value
        .checked_sub(min)
        .and_then(|d| d.checked_div(span))
        .and_then(|d| d.to_f64())
        .unwrap_or(0.0)
        .clamp(0.0, 1.0);
    bottom - ((bottom - top) as f64 * share).round() as i64
}

/// The chart for the buys in `currency` among `entries`, from the first buy to `until`; `None`
/// without a buy in it.
pub fn draw(entries: &[Entry], currency: &str, until: DateTime<Utc>) -> Option<(Vec<u8>, Scales)> {
    let buys: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.kind == "buy" && e.currency.as_deref() == Some(currency) && e.btc.is_some())
        .collect();
    let first = buys.first()?.date;
    let span = (until - first).num_seconds().max(1);
    let x_of = |t: DateTime<Utc>| {
        MARGIN + (t - first).num_seconds() * (i64::from(WIDTH) - 2 * MARGIN) / span
    };

    let mut stacked = Decimal::ZERO;
    let mut spent = Decimal::ZERO;
    let (mut btc_line, mut price_line, mut average_line) = (Vec::new(), Vec::new(), Vec::new());
    let (mut price_min, mut price_max) = (Decimal::MAX, Decimal::ZERO);
    for b in &buys {
        // The ledger bounds each amount, so these sums fit; a buy that would not is not drawn.
        let (Some(s), Some(f)) = (
            stacked.checked_add(b.btc.unwrap_or_default()),
            spent.checked_add(b.fiat.unwrap_or_default()),
        ) else {
            continue;
        };
        (stacked, spent) = (s, f);
        let Some(average) = spent.checked_div(stacked) else {
            continue;
        };
        let rate = b.rate.unwrap_or(average);
        for p in [rate, average] {
            price_min = price_min.min(p);
            price_max = price_max.max(p);
        }
        btc_line.push((b.date, stacked));
        price_line.push((b.date, rate));
        average_line.push((b.date, average));
    }
    let (top_a, bottom_a) = (MARGIN, i64::from(HEIGHT) / 2 - MARGIN);
    let (top_b, bottom_b) = (i64::from(HEIGHT) / 2 + MARGIN, i64::from(HEIGHT) - MARGIN);
    let mut canvas = Canvas::new();
    for y in [bottom_a, bottom_b] {
        canvas.line((MARGIN, y), (i64::from(WIDTH) - MARGIN, y), GRID);
    }
    // The stack grows in steps: flat until the next buy.
    let mut steps = vec![(x_of(first), bottom_a)];
    for (t, v) in &btc_line {
        let y = y_of(*v, Decimal::ZERO, stacked, top_a, bottom_a);
        steps.push((x_of(*t), steps.last().map_or(bottom_a, |p| p.1)));
        steps.push((x_of(*t), y));
    }
    steps.push((x_of(until), steps.last().map_or(bottom_a, |p| p.1)));
    canvas.polyline(&steps, ORANGE);
    let scale = |line: &[(DateTime<Utc>, Decimal)]| -> Vec<(i64, i64)> {
        line.iter()
            .map(|(t, v)| (x_of(*t), y_of(*v, price_min, price_max, top_b, bottom_b)))
            .collect()
    };
    // Each line holds its last value until now.
    for (line, color) in [(&mut price_line, BLUE), (&mut average_line, ORANGE)] {
        if let Some(&(_, last)) = line.last() {
            line.push((until, last));
        }
        canvas.polyline(&scale(line), color);
    }

    let mut png = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png, WIDTH, HEIGHT);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().ok()?;
        writer.write_image_data(&canvas.pixels).ok()?;
    }
    Some((
        png,
        Scales {
            currency: currency.to_string(),
            btc_max: stacked,
            price_min: price_min.round_dp(2),
            price_max: price_max.round_dp(2),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buy(days_ago: i64, fiat: i64, btc: &str, rate: i64) -> Entry {
        Entry {
            date: crate::clock::system_now() - chrono::Duration::days(days_ago),
            kind: "buy",
            reference: format!("x{days_ago}"),
            order_id: None,
            currency: Some("eur".into()),
            fiat: Some(Decimal::from(fiat)),
            fiat_fee: None,
            btc: Some(btc.parse().unwrap()),
            btc_fee: None,
            rate: Some(Decimal::from(rate)),
            address: None,
            txid: None,
        }
    }

    #[test]
    fn the_chart_is_a_png_with_both_series_and_states_its_scales() {
        let entries = vec![
            buy(21, 100, "0.002", 50_000),
            buy(14, 100, "0.0016", 62_500),
            buy(7, 100, "0.0025", 40_000),
        ];
        let (png, scales) = draw(&entries, "eur", crate::clock::system_now()).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(&png));
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut pixels).unwrap();
        assert_eq!((reader.info().width, reader.info().height), (WIDTH, HEIGHT));
        let count = |c: [u8; 3]| pixels.chunks(3).filter(|p| *p == c).count();
        assert!(count(ORANGE) > 200, "the stack and the average are drawn");
        assert!(count(BLUE) > 50, "the prices are drawn");
        assert_eq!(scales.btc_max.to_string(), "0.0061");
        assert_eq!(scales.price_min.to_string(), "40000");
        assert_eq!(scales.price_max.to_string(), "62500");
        assert!(
            draw(&entries, "chf", crate::clock::system_now()).is_none(),
            "no buys in chf"
        );
    }
}

//! The stacking chart of the weekly digest, drawn straight into a PNG: a title; on top, the
//! bitcoin stacked over time (green); below, the price of each buy (blue) against the running
//! average cost (orange). Both panels have labelled axes with units from round bounds (the
//! stack from 0, the prices with room around them, so that a small move looks small), dated
//! ticks, and a legend; the lines end at the last buy. The labels use a small bitmap font
//! embedded here (no font file, under a kilobyte).
//!
//! Only the placement of pixels goes through floating point; every number drawn as text is
//! computed exactly with `Decimal`.

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::Entry;

pub const WIDTH: u32 = 720;
pub const HEIGHT: u32 = 440;
const LEFT: i64 = 84;
const RIGHT: i64 = 704;
/// The top and bottom rows of the two panels.
const PANEL_A: (i64, i64) = (58, 188);
const PANEL_B: (i64, i64) = (240, 392);
const GREEN: [u8; 3] = [0x2e, 0x8b, 0x57];
const ORANGE: [u8; 3] = [0xf7, 0x93, 0x1a];
const BLUE: [u8; 3] = [0x2b, 0x6c, 0xb0];
const GRID: [u8; 3] = [0xe4, 0xe4, 0xe4];
const AXIS: [u8; 3] = [0x88, 0x88, 0x88];
const TEXT: [u8; 3] = [0x22, 0x22, 0x22];
const MUTED: [u8; 3] = [0x55, 0x55, 0x55];

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

    fn set(&mut self, x: i64, y: i64, color: [u8; 3]) {
        if (0..i64::from(WIDTH)).contains(&x) && (0..i64::from(HEIGHT)).contains(&y) {
            let i = ((y * i64::from(WIDTH) + x) * 3) as usize;
            self.pixels[i..i + 3].copy_from_slice(&color);
        }
    }

    fn fill(&mut self, (x0, y0): (i64, i64), (w, h): (i64, i64), color: [u8; 3]) {
        for y in y0..y0 + h {
            for x in x0..x0 + w {
                self.set(x, y, color);
            }
        }
    }

    /// Bresenham; `thick` draws 2×2 dots (the data), otherwise 1 pixel (grid and axes).
    fn line(
        &mut self,
        (mut x0, mut y0): (i64, i64),
        (x1, y1): (i64, i64),
        c: [u8; 3],
        thick: bool,
    ) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let mut err = dx + dy;
        loop {
            if thick {
                self.fill((x0, y0), (2, 2), c);
            } else {
                self.set(x0, y0, c);
            }
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
            self.line(pair[0], pair[1], color, true);
        }
        if let [only] = points {
            self.fill(*only, (2, 2), color);
        }
    }

    /// `text` with its top left corner at `(x, y)`, each font pixel `scale` pixels wide.
    fn text(&mut self, (x, y): (i64, i64), text: &str, scale: i64, color: [u8; 3]) {
        for (i, c) in text.chars().enumerate() {
            let left = x + i as i64 * font::advance(scale);
            for (row, bits) in font::glyph(c).iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        self.fill(
                            (left + col * scale, y + row as i64 * scale),
                            (scale, scale),
                            color,
                        );
                    }
                }
            }
        }
    }

    /// `text` ending at `right`, centred on the row `middle`.
    fn text_right(&mut self, right: i64, middle: i64, text: &str, color: [u8; 3]) {
        let x = right - font::width(text, 1);
        self.text((x, middle - font::height(1) / 2), text, 1, color);
    }

    /// A swatch of the series' colour and its name; returns where the next entry starts.
    fn legend(&mut self, (x, y): (i64, i64), label: &str, color: [u8; 3]) -> i64 {
        self.fill((x, y), (14, 7), color);
        self.text((x + 19, y), label, 1, TEXT);
        x + 19 + font::width(label, 1) + 18
    }
}

/// A value axis: from `lo` to `hi`, a labelled tick every `step`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Axis {
    lo: Decimal,
    hi: Decimal,
    step: Decimal,
}

impl Axis {
    fn ticks(&self) -> Vec<Decimal> {
        let mut out = Vec::new();
        let mut t = self.lo;
        while t <= self.hi && out.len() < 12 {
            out.push(t);
            match t.checked_add(self.step) {
                Some(next) => t = next,
                None => break,
            }
        }
        out
    }

    /// Where `value` lands between the panel's `top` and `bottom` rows.
    fn y(&self, value: Decimal, (top, bottom): (i64, i64)) -> i64 {
        // Exact to the pixel: the share stays a decimal (never f64), clamped to the panel.
        let share = value
            .checked_sub(self.lo)
            .zip(self.hi.checked_sub(self.lo).filter(|s| !s.is_zero()))
            .and_then(|(d, span)| d.checked_div(span))
            .unwrap_or(Decimal::ZERO)
            .clamp(Decimal::ZERO, Decimal::ONE);
        let rows = Decimal::from(bottom - top)
            .checked_mul(share)
            .and_then(|r| r.round().to_i64())
            .unwrap_or(0);
        bottom - rows
    }
}

/// The round step (1, 2, 2.5 or 5 times a power of ten) at least `raw`; `None` for a `raw`
/// that is not positive or beyond what an axis shows.
fn nice_step(raw: Decimal) -> Option<Decimal> {
    if raw <= Decimal::ZERO {
        return None;
    }
    let ten = Decimal::TEN;
    let mut power = Decimal::ONE;
    for _ in 0..28 {
        if power <= raw {
            break;
        }
        power = power.checked_div(ten)?;
    }
    for _ in 0..28 {
        match power.checked_mul(ten) {
            Some(next) if next <= raw => power = next,
            _ => break,
        }
    }
    [
        Decimal::ONE,
        Decimal::TWO,
        Decimal::new(25, 1),
        Decimal::new(5, 0),
        Decimal::TEN,
    ]
    .into_iter()
    .filter_map(|m| m.checked_mul(power))
    .find(|s| *s >= raw)
}

/// The stack's axis: from 0 to the first round value above `max`.
fn stack_axis(max: Decimal) -> Option<Axis> {
    let max = max.max(Decimal::new(1, 8));
    let step = nice_step(max.checked_div(Decimal::from(4))?)?;
    let hi = max
        .checked_div(step)?
        .floor()
        .checked_add(Decimal::ONE)?
        .checked_mul(step)?;
    Some(Axis {
        lo: Decimal::ZERO,
        hi,
        step,
    })
}

/// The price axis: round bounds around `min..=max` that span at least a fifth of `max`, with
/// room above and below, so that 57,000 against 57,868 shows as the small difference it is.
fn price_axis(min: Decimal, max: Decimal) -> Option<Axis> {
    let spread = max.checked_sub(min)?;
    let span = spread
        .max(max.checked_div(Decimal::from(5))?)
        .max(Decimal::ONE);
    let pad = span
        .checked_sub(spread)?
        .checked_div(Decimal::TWO)?
        .checked_add(span.checked_div(Decimal::TEN)?)?;
    let step = nice_step(span.checked_div(Decimal::from(4))?)?;
    let lo = min
        .checked_sub(pad)?
        .checked_div(step)?
        .floor()
        .checked_mul(step)?
        .max(Decimal::ZERO);
    let hi = max
        .checked_add(pad)?
        .checked_div(step)?
        .ceil()
        .checked_mul(step)?;
    Some(Axis { lo, hi, step })
}

/// `57000` as `57 000` (a space: a comma and a point look alike in a 5×7 font); fractions as
/// they are (`0.0025`).
fn number(value: Decimal) -> String {
    let value = value.normalize();
    if !value.fract().is_zero() {
        return value.to_string();
    }
    let digits = value.abs().trunc().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    if value.is_sign_negative() {
        out.insert(0, '-');
    }
    out
}

/// The time axis: from `first` to `until`, mapped onto the panels' columns.
struct TimeAxis {
    first: DateTime<Utc>,
    span: i64,
}

impl TimeAxis {
    fn new(first: DateTime<Utc>, until: DateTime<Utc>) -> TimeAxis {
        // From the midnight (UTC) before the first buy, so that the first tick is its day; at
        // least a day, so that one buy still has a readable axis.
        let first =
            Utc.from_utc_datetime(&first.date_naive().and_hms_opt(0, 0, 0).unwrap_or_default());
        let span = (until - first).num_seconds().max(86_400);
        TimeAxis { first, span }
    }

    fn x(&self, t: DateTime<Utc>) -> i64 {
        let s = (t - self.first).num_seconds().clamp(0, self.span);
        LEFT + s * (RIGHT - LEFT) / self.span
    }

    /// Midnights (UTC) at a round number of days apart, at most seven, Mondays for weeks.
    fn ticks(&self) -> Vec<(DateTime<Utc>, String)> {
        let days = self.span / 86_400 + 1;
        let step = [1, 2, 7, 14, 28, 56, 91, 182, 364, 728]
            .into_iter()
            .find(|s| days / s <= 6)
            .unwrap_or(1456);
        let mut day = Utc.from_utc_datetime(
            &self
                .first
                .date_naive()
                .and_hms_opt(0, 0, 0)
                .unwrap_or_default(),
        );
        if day < self.first {
            day += Duration::days(1);
        }
        if step % 7 == 0 {
            while day.weekday() != chrono::Weekday::Mon {
                day += Duration::days(1);
            }
        }
        let end = self.first + Duration::seconds(self.span);
        let format = if step >= 28 { "%-d %b %Y" } else { "%-d %b" };
        let mut out = Vec::new();
        while day <= end && out.len() < 8 {
            out.push((day, day.format(format).to_string()));
            day += Duration::days(step);
        }
        out
    }
}

/// The chart for the buys in `currency` among `entries`, from the first buy to `until`; `None`
/// without a buy in it.
pub fn draw(entries: &[Entry], currency: &str, until: DateTime<Utc>) -> Option<(Vec<u8>, Scales)> {
    let buys: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.kind == "buy" && e.currency.as_deref() == Some(currency) && e.btc.is_some())
        .collect();
    let first = buys.first()?.date;
    let last = buys.last()?.date;
    let time = TimeAxis::new(first, until.max(last));

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
    let stack = stack_axis(stacked)?;
    let prices = price_axis(price_min.min(price_max), price_max)?;
    let code = currency.to_uppercase();
    let mut canvas = Canvas::new();

    // The title, the panels' names with their units, and the legend.
    let title = format!(
        "Your stack, {} to {}",
        first.format("%-d %b %Y"),
        until.max(last).format("%-d %b %Y")
    );
    canvas.text((LEFT - 60, 10), &title, 2, TEXT);
    let x = canvas.legend(
        (LEFT, PANEL_A.0 - 18),
        &format!("bitcoin stacked, in BTC (now {} BTC)", number(stacked)),
        GREEN,
    );
    let _ = x;
    let x = canvas.legend(
        (LEFT, PANEL_B.0 - 18),
        &format!("price of each buy, in {code}/BTC"),
        BLUE,
    );
    canvas.legend(
        (x, PANEL_B.0 - 18),
        &format!("your average cost, in {code}/BTC"),
        ORANGE,
    );

    // Grids, axes and their labels.
    for (axis, panel) in [(stack, PANEL_A), (prices, PANEL_B)] {
        for t in axis.ticks() {
            let y = axis.y(t, panel);
            canvas.line((LEFT, y), (RIGHT, y), GRID, false);
            canvas.line((LEFT - 4, y), (LEFT, y), AXIS, false);
            canvas.text_right(LEFT - 7, y, &number(t), MUTED);
        }
        for (t, _) in time.ticks() {
            let x = time.x(t);
            canvas.line((x, panel.0), (x, panel.1), GRID, false);
            canvas.line((x, panel.1), (x, panel.1 + 4), AXIS, false);
        }
        canvas.line((LEFT, panel.0), (LEFT, panel.1), AXIS, false);
        canvas.line((LEFT, panel.1), (RIGHT, panel.1), AXIS, false);
    }
    for (t, label) in time.ticks() {
        let x = time.x(t) - font::width(&label, 1) / 2;
        canvas.text((x, PANEL_A.1 + 8), &label, 1, MUTED);
        canvas.text((x, PANEL_B.1 + 8), &label, 1, MUTED);
    }

    // The stack grows in steps: flat until the next buy, and it ends at the last one.
    let mut steps = vec![(time.x(first), stack.y(Decimal::ZERO, PANEL_A))];
    for (t, v) in &btc_line {
        let previous = steps.last().map_or(PANEL_A.1, |p| p.1);
        steps.push((time.x(*t), previous));
        steps.push((time.x(*t), stack.y(*v, PANEL_A)));
    }
    canvas.polyline(&steps, GREEN);
    for (line, color) in [(&price_line, BLUE), (&average_line, ORANGE)] {
        let points: Vec<(i64, i64)> = line
            .iter()
            .map(|(t, v)| (time.x(*t), prices.y(*v, PANEL_B)))
            .collect();
        canvas.polyline(&points, color);
        for (x, y) in &points {
            canvas.fill((x - 2, y - 2), (5, 5), color);
        }
    }

    let mut png = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png, WIDTH, HEIGHT);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::High);
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

    fn buy(at: DateTime<Utc>, fiat: i64, btc: &str, rate: i64) -> Entry {
        Entry {
            date: at,
            kind: "buy",
            reference: format!("x{}", at.timestamp()),
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

    fn decode(png: &[u8]) -> Vec<u8> {
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut pixels).unwrap();
        assert_eq!((reader.info().width, reader.info().height), (WIDTH, HEIGHT));
        pixels
    }

    fn pixel(pixels: &[u8], x: i64, y: i64) -> [u8; 3] {
        let i = ((y * i64::from(WIDTH) + x) * 3) as usize;
        [pixels[i], pixels[i + 1], pixels[i + 2]]
    }

    #[test]
    fn the_chart_has_a_title_both_series_in_their_colours_and_lines_that_end_at_the_last_buy() {
        let start = Utc.with_ymd_and_hms(2026, 12, 7, 8, 0, 0).unwrap();
        let entries = vec![
            buy(start, 100, "0.002", 50_000),
            buy(start + Duration::days(7), 100, "0.0016", 62_500),
            buy(start + Duration::days(14), 100, "0.0025", 40_000),
        ];
        let until = start + Duration::days(20);
        let (png, scales) = draw(&entries, "eur", until).unwrap();
        let pixels = decode(&png);
        let count = |c: [u8; 3], rows: std::ops::Range<i64>, cols: std::ops::Range<i64>| {
            rows.flat_map(|y| cols.clone().map(move |x| (x, y)))
                .filter(|(x, y)| pixel(&pixels, *x, *y) == c)
                .count()
        };
        let all = 0..i64::from(WIDTH);
        assert!(count(TEXT, 6..30, all.clone()) > 300, "the title is drawn");
        assert!(
            count(MUTED, PANEL_B.1 + 6..PANEL_B.1 + 18, all.clone()) > 40,
            "dated ticks"
        );
        assert!(
            count(MUTED, PANEL_B.0..PANEL_B.1, 0..LEFT) > 60,
            "price labels"
        );
        for (color, panel) in [(GREEN, PANEL_A), (BLUE, PANEL_B), (ORANGE, PANEL_B)] {
            assert!(
                count(color, panel.0..panel.1 + 1, all.clone()) > 50,
                "{color:?} drawn"
            );
            assert!(
                count(color, panel.0 - 20..panel.0 - 8, all.clone()) > 50,
                "{color:?} in the legend"
            );
        }
        // Nothing is drawn in the series' colours after the last buy.
        let time = TimeAxis::new(start, until);
        let last_x = time.x(start + Duration::days(14));
        assert!(last_x < RIGHT - 100);
        for (color, panel) in [(GREEN, PANEL_A), (BLUE, PANEL_B), (ORANGE, PANEL_B)] {
            assert!(
                count(color, panel.0..panel.1 + 1, last_x - 3..last_x + 4) > 0,
                "{color:?} reaches the last buy"
            );
            assert_eq!(
                count(color, panel.0..panel.1 + 1, last_x + 4..i64::from(WIDTH)),
                0,
                "{color:?} stops at the last buy"
            );
        }
        assert_eq!(scales.btc_max.to_string(), "0.0061");
        assert_eq!(scales.price_min.to_string(), "40000");
        assert_eq!(scales.price_max.to_string(), "62500");
        assert!(draw(&entries, "chf", until).is_none(), "no buys in chf");
    }

    #[test]
    fn axes_have_round_bounds_and_small_moves_stay_small() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        let a = price_axis(d("57000"), d("57868")).unwrap();
        assert_eq!((a.lo, a.hi, a.step), (d("50000"), d("65000"), d("5000")));
        let share = |v: &str| (a.y(d(v), (0, 1000)) - a.y(d("57000"), (0, 1000))).abs();
        assert!(
            share("57868") < 100,
            "868 of 57,000 is under a tenth of the panel"
        );
        let s = stack_axis(d("0.0061")).unwrap();
        assert_eq!((s.lo, s.hi, s.step), (d("0"), d("0.008"), d("0.002")));
        assert_eq!(s.ticks().len(), 5);
        assert_eq!(nice_step(d("2893")), Some(d("5000")));
        assert_eq!(nice_step(d("0.0011")), Some(d("0.002")));
        assert_eq!(nice_step(d("2.4")), Some(d("2.5")));
        assert_eq!(number(d("57000.00")), "57 000");
        assert_eq!(number(d("1234567")), "1 234 567");
        assert_eq!(number(d("0.0025")), "0.0025");
        assert_eq!(number(d("0")), "0");
    }
}

mod font {
    //! A 5×7 bitmap font for the chart's labels: digits, letters and a few signs, drawn from a
    //! table of rows (bit 4 is the leftmost pixel). Under a kilobyte in the binary; anything it
    //! has no glyph for is drawn as `?`.

    const CHARS: &str =
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz .,:-/()%+'_=?";

    #[rustfmt::skip]
    const GLYPHS: [[u8; 7]; 76] = [
        [0x0E,0x11,0x13,0x15,0x19,0x11,0x0E], // 0
        [0x04,0x0C,0x04,0x04,0x04,0x04,0x0E], // 1
        [0x0E,0x11,0x01,0x02,0x04,0x08,0x1F], // 2
        [0x1F,0x02,0x04,0x02,0x01,0x11,0x0E], // 3
        [0x02,0x06,0x0A,0x12,0x1F,0x02,0x02], // 4
        [0x1F,0x10,0x1E,0x01,0x01,0x11,0x0E], // 5
        [0x06,0x08,0x10,0x1E,0x11,0x11,0x0E], // 6
        [0x1F,0x01,0x02,0x04,0x08,0x08,0x08], // 7
        [0x0E,0x11,0x11,0x0E,0x11,0x11,0x0E], // 8
        [0x0E,0x11,0x11,0x0F,0x01,0x02,0x0C], // 9
        [0x0E,0x11,0x11,0x11,0x1F,0x11,0x11], // A
        [0x1E,0x11,0x11,0x1E,0x11,0x11,0x1E], // B
        [0x0E,0x11,0x10,0x10,0x10,0x11,0x0E], // C
        [0x1C,0x12,0x11,0x11,0x11,0x12,0x1C], // D
        [0x1F,0x10,0x10,0x1E,0x10,0x10,0x1F], // E
        [0x1F,0x10,0x10,0x1E,0x10,0x10,0x10], // F
        [0x0E,0x11,0x10,0x17,0x11,0x11,0x0F], // G
        [0x11,0x11,0x11,0x1F,0x11,0x11,0x11], // H
        [0x0E,0x04,0x04,0x04,0x04,0x04,0x0E], // I
        [0x07,0x02,0x02,0x02,0x02,0x12,0x0C], // J
        [0x11,0x12,0x14,0x18,0x14,0x12,0x11], // K
        [0x10,0x10,0x10,0x10,0x10,0x10,0x1F], // L
        [0x11,0x1B,0x15,0x15,0x11,0x11,0x11], // M
        [0x11,0x11,0x19,0x15,0x13,0x11,0x11], // N
        [0x0E,0x11,0x11,0x11,0x11,0x11,0x0E], // O
        [0x1E,0x11,0x11,0x1E,0x10,0x10,0x10], // P
        [0x0E,0x11,0x11,0x11,0x15,0x12,0x0D], // Q
        [0x1E,0x11,0x11,0x1E,0x14,0x12,0x11], // R
        [0x0F,0x10,0x10,0x0E,0x01,0x01,0x1E], // S
        [0x1F,0x04,0x04,0x04,0x04,0x04,0x04], // T
        [0x11,0x11,0x11,0x11,0x11,0x11,0x0E], // U
        [0x11,0x11,0x11,0x11,0x11,0x0A,0x04], // V
        [0x11,0x11,0x11,0x15,0x15,0x15,0x0A], // W
        [0x11,0x11,0x0A,0x04,0x0A,0x11,0x11], // X
        [0x11,0x11,0x11,0x0A,0x04,0x04,0x04], // Y
        [0x1F,0x01,0x02,0x04,0x08,0x10,0x1F], // Z
        [0x00,0x00,0x0E,0x01,0x0F,0x11,0x0F], // a
        [0x10,0x10,0x16,0x19,0x11,0x11,0x1E], // b
        [0x00,0x00,0x0E,0x10,0x10,0x11,0x0E], // c
        [0x01,0x01,0x0D,0x13,0x11,0x11,0x0F], // d
        [0x00,0x00,0x0E,0x11,0x1F,0x10,0x0E], // e
        [0x06,0x09,0x08,0x1C,0x08,0x08,0x08], // f
        [0x00,0x00,0x0F,0x11,0x0F,0x01,0x0E], // g
        [0x10,0x10,0x16,0x19,0x11,0x11,0x11], // h
        [0x04,0x00,0x0C,0x04,0x04,0x04,0x0E], // i
        [0x02,0x00,0x06,0x02,0x02,0x12,0x0C], // j
        [0x10,0x10,0x12,0x14,0x18,0x14,0x12], // k
        [0x0C,0x04,0x04,0x04,0x04,0x04,0x0E], // l
        [0x00,0x00,0x1A,0x15,0x15,0x11,0x11], // m
        [0x00,0x00,0x16,0x19,0x11,0x11,0x11], // n
        [0x00,0x00,0x0E,0x11,0x11,0x11,0x0E], // o
        [0x00,0x00,0x1E,0x11,0x1E,0x10,0x10], // p
        [0x00,0x00,0x0D,0x13,0x0F,0x01,0x01], // q
        [0x00,0x00,0x16,0x19,0x10,0x10,0x10], // r
        [0x00,0x00,0x0E,0x10,0x0E,0x01,0x1E], // s
        [0x08,0x08,0x1C,0x08,0x08,0x09,0x06], // t
        [0x00,0x00,0x11,0x11,0x11,0x13,0x0D], // u
        [0x00,0x00,0x11,0x11,0x11,0x0A,0x04], // v
        [0x00,0x00,0x11,0x11,0x15,0x15,0x0A], // w
        [0x00,0x00,0x11,0x0A,0x04,0x0A,0x11], // x
        [0x00,0x00,0x11,0x11,0x0F,0x01,0x0E], // y
        [0x00,0x00,0x1F,0x02,0x04,0x08,0x1F], // z
        [0x00,0x00,0x00,0x00,0x00,0x00,0x00], // space
        [0x00,0x00,0x00,0x00,0x00,0x0C,0x0C], // .
        [0x00,0x00,0x00,0x00,0x0C,0x04,0x08], // ,
        [0x00,0x0C,0x0C,0x00,0x0C,0x0C,0x00], // :
        [0x00,0x00,0x00,0x1F,0x00,0x00,0x00], // -
        [0x00,0x01,0x02,0x04,0x08,0x10,0x00], // /
        [0x02,0x04,0x08,0x08,0x08,0x04,0x02], // (
        [0x08,0x04,0x02,0x02,0x02,0x04,0x08], // )
        [0x18,0x19,0x02,0x04,0x08,0x13,0x03], // %
        [0x00,0x04,0x04,0x1F,0x04,0x04,0x00], // +
        [0x0C,0x04,0x08,0x00,0x00,0x00,0x00], // '
        [0x00,0x00,0x00,0x00,0x00,0x00,0x1F], // _
        [0x00,0x00,0x1F,0x00,0x1F,0x00,0x00], // =
        [0x0E,0x11,0x01,0x02,0x04,0x00,0x04], // ?
    ];

    /// The rows of `c`'s glyph.
    pub fn glyph(c: char) -> &'static [u8; 7] {
        let index = CHARS
            .chars()
            .position(|g| g == c)
            .unwrap_or(GLYPHS.len() - 1);
        &GLYPHS[index]
    }

    /// How far one character advances at `scale`: 5 pixels and a gap.
    pub const fn advance(scale: i64) -> i64 {
        6 * scale
    }

    /// The width of `text` at `scale`, without the trailing gap.
    pub fn width(text: &str, scale: i64) -> i64 {
        let n = text.chars().count() as i64;
        if n == 0 {
            0
        } else {
            n * advance(scale) - scale
        }
    }

    /// The height of a line at `scale`.
    pub const fn height(scale: i64) -> i64 {
        7 * scale
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn every_listed_character_has_its_glyph_and_the_rest_draw_as_a_question_mark() {
            assert_eq!(CHARS.chars().count(), GLYPHS.len());
            assert_eq!(glyph('0'), &GLYPHS[0]);
            assert_eq!(glyph('z'), &GLYPHS[61]);
            assert_eq!(glyph('€'), glyph('?'));
            assert!(GLYPHS.iter().all(|g| g.iter().all(|row| *row < 0x20)));
            assert_eq!(width("ab", 1), 11);
        }
    }
}

//! The missed purchase: a `pocket.order` step may declare what the user's bank sends
//! (`expect: { every: 1w, amount: 100 CHF, grace: 3d, tolerance: 1% }`, or `cron:` + `zone:`
//! instead of `every:`). The checker, run at each scheduler pass, raises one `missed_purchase`
//! alert per window in which no exchange of that order executed (by the window's end plus the
//! grace), and one `cost_mismatch` alert per exchange whose cost is further from the expected
//! amount than the tolerance.
//!
//! Each alert is recorded (table `expect_alerts`) in the transaction that queues it, so it is
//! raised exactly once across passes, restarts and instances. The checker only reads exchanges
//! and queues alerts: it must never change an exchange, an order or a run, and a failure of it
//! must never stop the scheduler (it is logged and tried at the next pass).

use std::str::FromStr;

use crate::workflow::zone::Zone;
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::actions::read::ActionReader;
use crate::config::Alert;
use crate::domain::Currency;
use crate::domain::HumanDuration;
use crate::notify::email::Alerts;
use crate::pocket::types::ExchangeState;
use crate::source::reader::{describe, string};
use crate::source::{MapReader, Node};
use crate::store::{ExchangeRow, Store, StoreError};
use crate::workflow::{Action, CatchUp, Schedule, Workflow};

/// The tolerance when `expect:` names none: 1 %.
pub const DEFAULT_TOLERANCE: Decimal = Decimal::ONE;
/// The grace when `expect:` names none.
pub const DEFAULT_GRACE_DAYS: i64 = 3;
/// Windows looked at, at most, from the order's creation: ten years of weeks.
const MAX_WINDOWS: usize = 520;

/// When payments are expected.
#[derive(Debug, Clone)]
pub enum Cadence {
    /// One per period, counted from the order's creation.
    Every { period: Duration, text: String },
    /// One per fire of a cron expression in a zone (the day the bank sends).
    Cron(Schedule),
}

/// What the bank is expected to send for an order.
#[derive(Debug, Clone)]
pub struct Expect {
    pub cadence: Cadence,
    pub amount: Decimal,
    pub currency: Currency,
    pub grace: Duration,
    /// Percent the cost may differ from `amount` by.
    pub tolerance: Decimal,
}

/// One expected payment: it should arrive in `[start, end)`; it is missed when nothing arrived
/// by `deadline` (`end` + grace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub deadline: DateTime<Utc>,
}

/// `1w`, `2w`, or any satflow duration (`7d`, `36h`); at least an hour.
pub fn parse_every(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let accepted = "write a period such as 1w, 2w, 7d or 1d (at least 1h)";
    let period = match t.strip_suffix('w') {
        Some(n) => n
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=5_200).contains(n))
            .map(Duration::weeks)
            .ok_or_else(|| format!("{} is not a period; {accepted}", describe(text)))?,
        None => {
            let d = HumanDuration::from_str(t).map_err(|e| format!("{e}; {accepted}"))?;
            Duration::from_std(d.0).map_err(|_| format!("{} is too long", describe(text)))?
        }
    };
    if period < Duration::hours(1) {
        return Err(format!(
            "{} is shorter than an hour; {accepted}",
            describe(text)
        ));
    }
    Ok(period)
}

/// `100 CHF` (or `CHF 100`, `100chf`): a positive amount and its currency.
pub fn parse_amount(text: &str) -> Result<(Decimal, Currency), String> {
    let accepted = "write the amount your bank sends and its currency, e.g. amount: 100 CHF";
    let t = text.trim();
    let split = t
        .find(|c: char| c.is_ascii_alphabetic())
        .ok_or_else(|| format!("{} has no currency; {accepted}", describe(text)))?;
    let (number, code) = if split == 0 {
        let end = t
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(t.len());
        (&t[end..], &t[..end])
    } else {
        (&t[..split], &t[split..])
    };
    let currency = Currency::from_str(code.trim()).map_err(|_| {
        format!(
            "{}: {} is not eur, chf or gbp; {accepted}",
            describe(text),
            describe(code.trim())
        )
    })?;
    let amount = Decimal::from_str_exact(number.trim())
        .ok()
        .filter(|a| *a > Decimal::ZERO && *a <= crate::ledger::MAX_FIAT)
        .ok_or_else(|| format!("{} is not a positive amount; {accepted}", describe(text)))?;
    Ok((amount, currency))
}

/// `1%`, `0.5 %` or `2`: a percentage from 0 to 100.
pub fn parse_tolerance(text: &str) -> Result<Decimal, String> {
    let t = text.trim();
    let number = t.strip_suffix('%').unwrap_or(t).trim();
    Decimal::from_str_exact(number)
        .ok()
        .filter(|p| *p >= Decimal::ZERO && *p <= Decimal::ONE_HUNDRED)
        .ok_or_else(|| {
            format!(
                "{} is not a percentage; write one from 0 % to 100 %, e.g. tolerance: 1%",
                describe(text)
            )
        })
}

impl Expect {
    /// Reads `expect:` of a `pocket.order` step; every problem is reported, naming its field.
    pub fn read(r: &mut ActionReader<'_, '_>, node: &Node) -> Option<Expect> {
        let field = r.field("expect");
        let mut m = MapReader::new(node, field.clone(), r.ctx)?;
        let text = |r: &mut ActionReader<'_, '_>, n: &Node, key: &str| {
            string(n, &format!("{field}.{key}"), r.ctx)
        };
        let mut ok = true;
        let refuse = |r: &mut ActionReader<'_, '_>, n: &Node, key: &str, msg: String| {
            r.ctx.error(n.pos, format!("{field}.{key}: {msg}"));
        };
        let every = m.get("every");
        let cron = m.get("cron");
        let zone = m.get("zone");
        let cadence = match (every, cron) {
            (Some(n), None) => {
                if let Some(z) = zone {
                    refuse(
                        r,
                        z,
                        "zone",
                        "a zone goes with cron:, not with every:; remove it or write cron: instead"
                            .into(),
                    );
                    ok = false;
                }
                // Not `?`: the reader must reach `finish` to report unknown keys too.
                match text(r, n, "every").map(|t| (parse_every(&t), t)) {
                    Some((Ok(period), t)) => Some(Cadence::Every {
                        period,
                        text: t.trim().to_string(),
                    }),
                    Some((Err(e), _)) => {
                        refuse(r, n, "every", e);
                        None
                    }
                    None => None,
                }
            }
            (None, Some(n)) => {
                let tz = match zone {
                    Some(z) => match text(r, z, "zone")
                        .map(|t| crate::workflow::schedule::parse_timezone(&t))
                    {
                        Some(Ok(tz)) => Some(tz),
                        Some(Err(e)) => {
                            refuse(r, z, "zone", e);
                            None
                        }
                        None => None,
                    },
                    None => Some(Zone::utc()),
                };
                match text(r, n, "cron")
                    .map(|t| Schedule::new(&t, tz.clone().unwrap_or_else(Zone::utc), CatchUp::Skip))
                {
                    Some(Ok(s)) => tz.map(|_| Cadence::Cron(s)),
                    Some(Err(e)) => {
                        refuse(r, n, "cron", e);
                        None
                    }
                    None => None,
                }
            }
            (Some(_), Some(n)) => {
                refuse(
                    r,
                    n,
                    "cron",
                    "write either every: or cron:, not both".into(),
                );
                None
            }
            (None, None) => {
                r.ctx.error(
                    node.pos,
                    format!("{field}: say when your bank sends: every: 1w, or cron: \"0 9 * * MON\" with zone: Europe/Zurich"),
                );
                None
            }
        };
        let amount = match m.get("amount") {
            Some(n) => text(r, n, "amount").and_then(|t| match parse_amount(&t) {
                Ok(a) => Some(a),
                Err(e) => {
                    refuse(r, n, "amount", e);
                    None
                }
            }),
            None => {
                r.ctx.error(
                    node.pos,
                    format!("{field}: amount is missing; write what your bank sends, e.g. amount: 100 CHF"),
                );
                None
            }
        };
        let grace = match m.get("grace") {
            Some(n) => text(r, n, "grace").and_then(|t| {
                match HumanDuration::from_str(&t)
                    .map_err(|e| e.to_string())
                    .and_then(|d| {
                        Duration::from_std(d.0).map_err(|_| format!("{} is too long", describe(&t)))
                    }) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        refuse(r, n, "grace", format!("{e}; e.g. grace: 3d"));
                        None
                    }
                }
            }),
            None => Some(Duration::days(DEFAULT_GRACE_DAYS)),
        };
        let tolerance = match m.get("tolerance") {
            Some(n) => text(r, n, "tolerance").and_then(|t| match parse_tolerance(&t) {
                Ok(p) => Some(p),
                Err(e) => {
                    refuse(r, n, "tolerance", e);
                    None
                }
            }),
            None => Some(DEFAULT_TOLERANCE),
        };
        m.finish(r.ctx);
        let (amount, currency) = amount?;
        let expect = Expect {
            cadence: cadence?,
            amount,
            currency,
            grace: grace?,
            tolerance: tolerance?,
        };
        ok.then_some(expect)
    }

    /// The zone dates are shown in: the cron's, or UTC.
    pub fn zone(&self) -> Zone {
        match &self.cadence {
            Cadence::Every { .. } => Zone::utc(),
            Cadence::Cron(s) => s.timezone.clone(),
        }
    }

    /// `100 CHF every 1w (grace 3d, tolerance 1 %)`, as `plan` and `status` show it.
    pub fn describe(&self) -> String {
        let when = match &self.cadence {
            Cadence::Every { text, .. } => format!("every {text}"),
            Cadence::Cron(s) => format!("at cron \"{}\" in {}", s.cron_text, s.timezone),
        };
        format!(
            "{} {} {when} (grace {}, tolerance {} %)",
            self.amount.normalize(),
            self.currency.code().to_uppercase(),
            human(self.grace),
            self.tolerance.normalize()
        )
    }

    /// The windows from `anchor` (the order's creation) whose start is at most `until`, oldest
    /// first, each with its end (the next window's start) and deadline.
    pub fn windows(&self, anchor: DateTime<Utc>, until: DateTime<Utc>) -> Vec<Window> {
        let mut starts = Vec::new();
        match &self.cadence {
            Cadence::Every { period, .. } => {
                // Start at the most recent windows when there are more than we look at.
                let elapsed = (until - anchor).num_milliseconds().max(0);
                let skip = (elapsed / period.num_milliseconds().max(1))
                    .saturating_sub(MAX_WINDOWS as i64)
                    .max(0);
                let Some(mut s) = period
                    .checked_mul(i32::try_from(skip).unwrap_or(i32::MAX))
                    .and_then(|d| anchor.checked_add_signed(d))
                else {
                    return Vec::new();
                };
                while s <= until && starts.len() <= MAX_WINDOWS {
                    starts.push(s);
                    match s.checked_add_signed(*period) {
                        Some(next) => s = next,
                        None => return Vec::new(),
                    }
                }
                // The end of the last window.
                starts.push(s);
            }
            Cadence::Cron(schedule) => {
                let from = anchor - Duration::milliseconds(1);
                starts = schedule.fires_until(from, until, MAX_WINDOWS + 1);
                let last = starts.last().copied().unwrap_or(from);
                starts.extend(schedule.next_after(last).map(|t| t.to_utc()));
            }
        }
        // The most recent windows, when there are more than we look at.
        if starts.len() > MAX_WINDOWS + 1 {
            starts.drain(..starts.len() - MAX_WINDOWS - 1);
        }
        starts
            .windows(2)
            .filter_map(|pair| {
                Some(Window {
                    start: pair[0],
                    end: pair[1],
                    deadline: pair[1].checked_add_signed(self.grace)?,
                })
            })
            .collect()
    }

    /// The windows missed by `now`: each window takes the earliest purchase not taken by an
    /// earlier window that executed from its start to its deadline; a window whose deadline has
    /// passed with none is missed. `executed` holds the times of the order's executed exchanges.
    pub fn missed(
        &self,
        anchor: DateTime<Utc>,
        executed: &[DateTime<Utc>],
        now: DateTime<Utc>,
    ) -> Vec<Window> {
        let mut times = executed.to_vec();
        crate::sorting::sort(&mut times);
        let mut next = 0;
        let mut out = Vec::new();
        for w in self.windows(anchor, now) {
            while next < times.len() && times[next] < w.start {
                next += 1;
            }
            if next < times.len() && times[next] < w.deadline {
                next += 1;
            } else if w.deadline <= now {
                out.push(w);
            }
        }
        out
    }

    /// How far `cost` (in `currency`) is from the expected amount, in percent, when it is
    /// further than the tolerance; `None` when it is within it.
    pub fn cost_off(&self, cost: Decimal, currency: Currency) -> Option<Decimal> {
        if currency != self.currency {
            return Some(Decimal::ONE_HUNDRED);
        }
        let off = (cost - self.amount)
            .abs()
            .checked_mul(Decimal::ONE_HUNDRED)?
            .checked_div(self.amount)?;
        (off > self.tolerance).then(|| off.round_dp(2))
    }
}

/// `3d`, `1d12h`, `90m`: a duration as written in satflow.yaml.
pub fn human(d: Duration) -> String {
    let mut secs = d.num_seconds();
    if secs <= 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

/// Every `pocket.order` step of `workflows` that declares `expect:`, by workflow.
pub fn declared<W: std::borrow::Borrow<Workflow>>(workflows: &[W]) -> Vec<(String, Expect)> {
    workflows
        .iter()
        .map(|w| w.borrow())
        .flat_map(|w| {
            w.steps.iter().filter_map(|s| match &s.action {
                Action::PocketOrder(o) => o.expect.clone().map(|e| (w.name.clone(), e)),
                _ => None,
            })
        })
        .collect()
}

/// The alert kinds the checker raises, as stored in `expect_alerts.kind`.
pub const MISSED: &str = "missed_purchase";
pub const COST: &str = "cost_mismatch";

/// "Monday 1 Dec".
fn day(t: DateTime<Utc>, zone: &Zone) -> String {
    t.with_timezone(zone).format("%A %-d %b").to_string()
}

/// The alert's sentence for a missed window.
pub fn missed_message(workflow: &str, expect: &Expect, w: &Window) -> String {
    format!(
        "no purchase arrived for {workflow} since {}: check the standing order at your bank \
         (expected {})",
        day(w.start, &expect.zone()),
        expect.describe()
    )
}

/// What the checker found in one pass.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    /// Alerts raised now (recorded for the first time).
    pub raised: usize,
}

/// The checker: the declared expectations and what it needs to raise alerts.
pub struct Checker {
    pub store: Store,
    pub expectations: Vec<(String, Expect)>,
    pub alerts: Alerts,
    pub env: minijinja::Environment<'static>,
    /// Woken when an alert is queued, so it leaves now rather than at the outbox's next poll.
    pub wake_outbox: std::sync::Arc<tokio::sync::Notify>,
}

impl Checker {
    /// One pass at `now`: records and queues every alert not raised before.
    pub async fn pass(&self, now: DateTime<Utc>) -> Result<Pass, StoreError> {
        let mut pass = Pass::default();
        if self.expectations.is_empty() {
            return Ok(pass);
        }
        let exchanges = self.store.exchanges(i64::MAX).await?;
        for (workflow, expect) in &self.expectations {
            let Some(order) = self.store.order_for_workflow(workflow).await? else {
                continue;
            };
            let mine: Vec<&ExchangeRow> = exchanges
                .iter()
                .filter(|e| e.order_id.as_deref() == Some(order.id.as_str()))
                .filter(|e| matches!(e.state, ExchangeState::Executed | ExchangeState::Settled))
                .collect();
            let times: Vec<DateTime<Utc>> = mine
                .iter()
                .map(|e| e.exchange.executed_on.unwrap_or(e.first_seen_at))
                .collect();
            for w in expect.missed(order.created_at, &times, now) {
                let message = missed_message(workflow, expect, &w);
                let reference = w.start.timestamp_millis().to_string();
                let ctx = json!({ "event": {
                    "workflow": workflow, "order_id": order.id, "message": message,
                    "since": w.start.to_rfc3339(), "deadline": w.deadline.to_rfc3339(),
                    "expected": expect.describe(),
                }});
                if self
                    .raise(
                        workflow,
                        MISSED,
                        &reference,
                        &message,
                        Alert::MissedPurchase,
                        &ctx,
                        now,
                    )
                    .await?
                {
                    tracing::warn!(%workflow, since = %w.start, "{message}");
                    pass.raised += 1;
                }
            }
            for e in mine {
                let Some(cost) = e.exchange.cost else {
                    continue;
                };
                let Some(currency) = e
                    .exchange
                    .pair
                    .as_deref()
                    .and_then(|p| p.split('/').nth(1))
                    .and_then(|c| Currency::from_str(c).ok())
                else {
                    continue;
                };
                let Some(off) = expect.cost_off(cost, currency) else {
                    continue;
                };
                let message = format!(
                    "exchange {} of {workflow} cost {} {}, expected {} {} ({off} % off, more than the {} % tolerance): check the standing order's amount at your bank",
                    e.id,
                    cost.normalize(),
                    currency.code().to_uppercase(),
                    expect.amount.normalize(),
                    expect.currency.code().to_uppercase(),
                    expect.tolerance.normalize()
                );
                let ctx = json!({ "event": {
                    "workflow": workflow, "order_id": order.id, "exchange_id": e.id,
                    "message": message, "cost": cost.normalize().to_string(),
                    "expected": expect.describe(), "off_percent": off.to_string(),
                }});
                if self
                    .raise(
                        workflow,
                        COST,
                        &e.id,
                        &message,
                        Alert::CostMismatch,
                        &ctx,
                        now,
                    )
                    .await?
                {
                    tracing::warn!(%workflow, exchange = %e.id, "{message}");
                    pass.raised += 1;
                }
            }
        }
        Ok(pass)
    }

    #[allow(clippy::too_many_arguments)]
    async fn raise(
        &self,
        workflow: &str,
        kind: &str,
        reference: &str,
        message: &str,
        alert: Alert,
        ctx: &Value,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let key = format!("{workflow}/{reference}");
        let item = self.alerts.item(&self.env, alert, &key, ctx);
        let new = self
            .store
            .record_expect_alert(workflow, kind, reference, message, item.as_ref(), now)
            .await?;
        if new {
            self.wake_outbox.notify_one();
        }
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weekly() -> Expect {
        Expect {
            cadence: Cadence::Every {
                period: Duration::weeks(1),
                text: "1w".into(),
            },
            amount: Decimal::ONE_HUNDRED,
            currency: Currency::Chf,
            grace: Duration::days(3),
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn parses_what_people_write_and_refuses_the_rest_by_name() {
        assert_eq!(parse_every("1w").unwrap(), Duration::weeks(1));
        assert_eq!(parse_every("36h").unwrap(), Duration::hours(36));
        assert!(
            parse_every("10m")
                .unwrap_err()
                .contains("shorter than an hour")
        );
        assert!(parse_every("0w").is_err() && parse_every("weekly").is_err());
        assert_eq!(
            parse_amount("100 CHF").unwrap(),
            (Decimal::ONE_HUNDRED, Currency::Chf)
        );
        assert_eq!(parse_amount("eur 50.5").unwrap().1, Currency::Eur);
        assert!(parse_amount("100 USD").unwrap_err().contains("\"USD\""));
        assert!(parse_amount("-5 CHF").is_err() && parse_amount("100").is_err());
        assert_eq!(parse_tolerance("1%").unwrap(), Decimal::ONE);
        assert_eq!(parse_tolerance("0.5 %").unwrap().to_string(), "0.5");
        assert!(parse_tolerance("101%").is_err());
    }

    #[test]
    fn a_missed_week_is_missed_once_its_grace_has_passed_and_a_paid_week_never() {
        let e = weekly();
        let anchor = t("2026-11-30T00:00:00Z");
        // Week 1 paid on Tuesday, week 2 nothing, then a payment on 23 Dec.
        let paid = [t("2026-12-01T10:00:00Z"), t("2026-12-23T10:00:00Z")];
        // Before week 2's deadline (14 Dec + 3 d) nothing is missed.
        assert!(
            e.missed(anchor, &paid, t("2026-12-16T23:00:00Z"))
                .is_empty()
        );
        let missed = e.missed(anchor, &paid, t("2026-12-17T00:00:00Z"));
        assert_eq!(missed.len(), 1, "{missed:?}");
        assert_eq!(missed[0].start, t("2026-12-07T00:00:00Z"));
        // Four windows are due by 31 Dec and two payments came: two are missed. The payment of
        // 23 Dec is week 3's late one (within its grace), so week 4 is the other missed one.
        let later = e.missed(anchor, &paid, t("2026-12-31T00:00:00Z"));
        assert_eq!(later.len(), 2, "{later:?}");
        assert_eq!(later[1].start, t("2026-12-21T00:00:00Z"));
        // One payment never covers two weeks.
        let one = [t("2026-12-08T10:00:00Z")];
        let m = e.missed(anchor, &one, t("2026-12-18T00:00:00Z"));
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].start, t("2026-12-07T00:00:00Z"));
    }

    #[test]
    fn cron_windows_start_at_each_fire_in_the_zone() {
        let e = Expect {
            cadence: Cadence::Cron(
                Schedule::new(
                    "0 9 * * MON",
                    "Europe/Zurich".parse().unwrap(),
                    CatchUp::Skip,
                )
                .unwrap(),
            ),
            ..weekly()
        };
        let w = e.windows(t("2026-11-29T12:00:00Z"), t("2026-12-10T00:00:00Z"));
        assert_eq!(w[0].start, t("2026-11-30T08:00:00Z"));
        assert_eq!(w[0].end, t("2026-12-07T08:00:00Z"));
        assert_eq!(w[0].deadline, t("2026-12-10T08:00:00Z"));
        let msg = missed_message("weekly-dca", &e, &w[0]);
        assert!(
            msg.starts_with("no purchase arrived for weekly-dca since Monday 30 Nov: check the standing order at your bank"),
            "{msg}"
        );
    }

    #[test]
    fn cost_off_by_more_than_the_tolerance() {
        let e = weekly();
        assert_eq!(e.cost_off("100.99".parse().unwrap(), Currency::Chf), None);
        assert_eq!(e.cost_off("99".parse().unwrap(), Currency::Chf), None);
        assert_eq!(
            e.cost_off("95".parse().unwrap(), Currency::Chf),
            Some(Decimal::from(5))
        );
        assert!(e.cost_off("100".parse().unwrap(), Currency::Eur).is_some());
    }
}

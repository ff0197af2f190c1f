//! Budgets on a standing order: `limits: { per_month: 5000 CHF, per_week: 1500 CHF,
//! per_exchange: 2000 CHF }`. How they are read and checked, the calendar periods they count
//! over (UTC months and ISO weeks), and the decision for one run of the order's step: paused
//! because a cap is reached, or free to be active, and the exchanges above `per_exchange`.
//!
//! It decides only: the pause is the order's ordinary `pocket.order.patch` through the outbox,
//! the email and the audit entries commit with the step. It never counts money in floating
//! point, and an amount it cannot read counts as a problem to report, never as zero.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::domain::Currency;
use crate::source::reader::{describe, string};
use crate::source::{Ctx, MapReader, Node};

/// An amount in a currency, as written: `5000 CHF`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money {
    pub amount: Decimal,
    pub currency: Currency,
}

impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.amount, self.currency.code().to_uppercase())
    }
}

impl std::str::FromStr for Money {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{} is not an amount; write a positive number and the order's currency, e.g. 5000 CHF",
                describe(s)
            )
        };
        let mut parts = s.split_whitespace();
        let (Some(amount), Some(currency), None) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let amount = Decimal::from_str_exact(amount).map_err(|_| bad())?;
        if amount <= Decimal::ZERO {
            return Err(bad());
        }
        let currency = currency.parse::<Currency>().map_err(|e| e.to_string())?;
        Ok(Money { amount, currency })
    }
}

/// The caps of one order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Limits {
    pub per_month: Option<Money>,
    pub per_week: Option<Money>,
    pub per_exchange: Option<Money>,
}

/// Reads `limits:`; `currency` is the order's literal currency, when it is not a template.
pub fn read(
    node: &Node,
    field: &str,
    currency: Option<Currency>,
    ctx: &mut Ctx<'_>,
) -> Option<Limits> {
    let mut m = MapReader::new(node, field, ctx)?;
    let one = |key: &'static str,
               m: &mut MapReader<'_>,
               ctx: &mut Ctx<'_>|
     -> Result<Option<Money>, ()> {
        let Some(n) = m.get(key) else {
            return Ok(None);
        };
        let text = string(n, &format!("{field}.{key}"), ctx).ok_or(())?;
        match text.parse::<Money>() {
            Ok(money) if currency.is_some_and(|c| c != money.currency) => {
                ctx.error(
                    n.pos,
                    format!(
                        "{field}.{key}: {money} is not in the order's currency; write it in {}",
                        currency
                            .map(|c| c.code().to_uppercase())
                            .unwrap_or_default()
                    ),
                );
                Err(())
            }
            Ok(money) => Ok(Some(money)),
            Err(e) => {
                ctx.error(n.pos, format!("{field}.{key}: {e}"));
                Err(())
            }
        }
    };
    let per_month = one("per_month", &mut m, ctx);
    let per_week = one("per_week", &mut m, ctx);
    let per_exchange = one("per_exchange", &mut m, ctx);
    let pos = m.pos;
    m.finish(ctx);
    let limits = Limits {
        per_month: per_month.ok()?,
        per_week: per_week.ok()?,
        per_exchange: per_exchange.ok()?,
    };
    if limits == Limits::default() {
        ctx.error(
            pos,
            format!("{field}: no limit is set; accepted: per_month, per_week, per_exchange (e.g. per_month: 5000 CHF)"),
        );
        return None;
    }
    Some(limits)
}

/// The calendar month (UTC) holding `now`: its label and bounds.
pub fn month(now: DateTime<Utc>) -> (String, DateTime<Utc>, DateTime<Utc>) {
    let start = NaiveDate::from_ymd_opt(now.year(), now.month(), 1).unwrap_or_default();
    let next = if now.month() == 12 {
        NaiveDate::from_ymd_opt(now.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(now.year(), now.month() + 1, 1)
    }
    .unwrap_or_default();
    (
        format!("{:04}-{:02}", now.year(), now.month()),
        start.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc(),
        next.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc(),
    )
}

/// The ISO week (Monday 00:00 UTC) holding `now`: its label and bounds.
pub fn week(now: DateTime<Utc>) -> (String, DateTime<Utc>, DateTime<Utc>) {
    let day = now.date_naive();
    let monday = day - Duration::days(i64::from(day.weekday().num_days_from_monday()));
    let start = monday.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let iso = day.iso_week();
    (
        format!("{:04}-W{:02}", iso.year(), iso.week()),
        start,
        start + Duration::days(7),
    )
}

/// An executed exchange of the order: its id, what it cost, when it was first seen.
#[derive(Debug, Clone, PartialEq)]
pub struct Spent {
    pub exchange_id: String,
    pub cost: Decimal,
    pub at: DateTime<Utc>,
}

/// A cap that is reached.
#[derive(Debug, Clone, PartialEq)]
pub struct Reached {
    /// `per_month` or `per_week`.
    pub cap: &'static str,
    pub period: String,
    pub spent: Decimal,
    pub limit: Money,
    /// When the period ends and the order may be active again.
    pub until: DateTime<Utc>,
}

/// What the limits decide for one run of the order's step.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The first cap reached (the month before the week), if any: the order is paused.
    pub reached: Option<Reached>,
    pub spent_month: Decimal,
    pub spent_week: Decimal,
    /// Exchanges above `per_exchange` first seen since the order was last checked.
    pub above_per_exchange: Vec<Spent>,
}

impl Verdict {
    /// The decision as the step's output shows it.
    pub fn output(&self, limits: &Limits) -> Value {
        json!({
            "paused": self.reached.is_some(),
            "reason": self.reached.as_ref().map(reason),
            "spent_this_month": self.spent_month.to_string(),
            "spent_this_week": self.spent_week.to_string(),
            "per_month": limits.per_month.map(|m| m.to_string()),
            "per_week": limits.per_week.map(|m| m.to_string()),
            "per_exchange": limits.per_exchange.map(|m| m.to_string()),
            "above_per_exchange": self.above_per_exchange.iter().map(|s| json!({ "exchange_id": s.exchange_id, "cost": s.cost.to_string() })).collect::<Vec<_>>(),
        })
    }
}

/// Why the order is paused, for the output, the email and the log.
pub fn reason(r: &Reached) -> String {
    format!(
        "{} {} of {} reached: {} spent; the order is paused until {}",
        r.cap.replace('_', " "),
        r.period,
        r.limit,
        r.spent,
        r.until.format("%Y-%m-%d %H:%M UTC")
    )
}

/// Decides from the exchanges of the order (at least those of the current month and week).
/// `checked_at`: when the order's step last ran, so an exchange above `per_exchange` is
/// raised once. Sums are checked: an overflow is an error, never a wrapped total.
pub fn decide(
    limits: &Limits,
    spent: &[Spent],
    now: DateTime<Utc>,
    checked_at: Option<DateTime<Utc>>,
) -> Result<Verdict, String> {
    let (month_label, month_start, month_end) = month(now);
    let (week_label, week_start, week_end) = week(now);
    let sum = |from: DateTime<Utc>, to: DateTime<Utc>| -> Result<Decimal, String> {
        spent
            .iter()
            .filter(|s| s.at >= from && s.at < to)
            .try_fold(Decimal::ZERO, |acc, s| {
                acc.checked_add(s.cost)
                    .ok_or_else(|| "the costs of the period do not add up (overflow)".to_string())
            })
    };
    let spent_month = sum(month_start, month_end)?;
    let spent_week = sum(week_start, week_end)?;
    let mut reached = None;
    if let Some(cap) = limits.per_month
        && spent_month >= cap.amount
    {
        reached = Some(Reached {
            cap: "per_month",
            period: month_label,
            spent: spent_month,
            limit: cap,
            until: month_end,
        });
    } else if let Some(cap) = limits.per_week
        && spent_week >= cap.amount
    {
        reached = Some(Reached {
            cap: "per_week",
            period: week_label,
            spent: spent_week,
            limit: cap,
            until: week_end,
        });
    }
    let above_per_exchange = match limits.per_exchange {
        Some(cap) => spent
            .iter()
            .filter(|s| s.cost > cap.amount && checked_at.is_none_or(|c| s.at >= c))
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    Ok(Verdict {
        reached,
        spent_month,
        spent_week,
        above_per_exchange,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn spent(id: &str, cost: &str, when: &str) -> Spent {
        Spent {
            exchange_id: id.into(),
            cost: Decimal::from_str_exact(cost).unwrap(),
            at: at(when),
        }
    }

    fn chf(n: i64) -> Option<Money> {
        Some(Money {
            amount: Decimal::from(n),
            currency: Currency::Chf,
        })
    }

    #[test]
    fn money_is_an_amount_and_a_currency() {
        let m: Money = "5000 CHF".parse().unwrap();
        assert_eq!(m, chf(5000).unwrap());
        assert!("5000".parse::<Money>().is_err());
        assert!("-5 CHF".parse::<Money>().is_err());
        assert!("5000 USD".parse::<Money>().is_err());
        assert!("1e3 CHF".parse::<Money>().is_err());
    }

    #[test]
    fn the_month_cap_pauses_and_the_next_month_frees() {
        let limits = Limits {
            per_month: chf(300),
            ..Limits::default()
        };
        let rows = [
            spent("a", "200.00", "2026-12-01T08:00:00Z"),
            spent("b", "100.00", "2026-12-08T08:00:00Z"),
            spent("old", "900", "2026-11-30T23:59:59Z"),
        ];
        let v = decide(&limits, &rows, at("2026-12-09T00:00:00Z"), None).unwrap();
        let r = v.reached.unwrap();
        assert_eq!((r.cap, r.period.as_str()), ("per_month", "2026-12"));
        assert_eq!(r.spent, Decimal::from(300));
        assert_eq!(r.until, at("2027-01-01T00:00:00Z"));
        let v = decide(&limits, &rows, at("2027-01-01T00:00:00Z"), None).unwrap();
        assert_eq!(v.reached, None);
        assert_eq!(v.spent_month, Decimal::ZERO);
    }

    #[test]
    fn weeks_are_iso_weeks_in_utc() {
        let (label, start, end) = week(at("2026-12-02T05:00:00Z"));
        assert_eq!(label, "2026-W49");
        assert_eq!(start, at("2026-11-30T00:00:00Z"));
        assert_eq!(end, at("2026-12-07T00:00:00Z"));
        let (label, start, _) = week(at("2027-01-01T12:00:00Z"));
        assert_eq!(label, "2026-W53");
        assert_eq!(start, at("2026-12-28T00:00:00Z"));
    }

    #[test]
    fn a_big_exchange_is_raised_once() {
        let limits = Limits {
            per_exchange: chf(2000),
            ..Limits::default()
        };
        let rows = [
            spent("big", "2500", "2026-12-01T08:00:00Z"),
            spent("ok", "2000", "2026-12-02T08:00:00Z"),
        ];
        let v = decide(&limits, &rows, at("2026-12-02T09:00:00Z"), None).unwrap();
        assert_eq!(v.above_per_exchange.len(), 1);
        let later = decide(
            &limits,
            &rows,
            at("2026-12-03T09:00:00Z"),
            Some(at("2026-12-02T09:00:00Z")),
        )
        .unwrap();
        assert!(later.above_per_exchange.is_empty());
    }
}

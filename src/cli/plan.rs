//! `satflow plan`: the next fire times of every scheduled workflow, in its own zone and in UTC,
//! so a user can see before it happens when money will move.

use std::path::Path;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::workflow::Workflow;

use super::{Outcome, Setup, load_setup, print_problems};

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// How many fire times to show per workflow (1 to 1000)
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub count: u16,

    /// Start after this time: RFC 3339 (2027-03-28T00:00:00+01:00), or YYYY-MM-DD[THH:MM[:SS]] in UTC [default: now]
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub from: Option<DateTime<Utc>>,

    /// Print one JSON document instead of text
    #[arg(long)]
    pub json: bool,
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.to_utc());
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    Err(format!(
        "\"{text}\" is not a time; write RFC 3339 such as 2027-03-28T00:00:00+01:00, or YYYY-MM-DD[THH:MM[:SS]] (read as UTC)"
    ))
}

pub fn run(config_path: &Path, args: &PlanArgs) -> anyhow::Result<Outcome> {
    let Setup { config, workflows } = match load_setup(config_path) {
        Ok(setup) => setup,
        Err(problems) => {
            print_problems(&problems);
            return Ok(Outcome::UserError);
        }
    };
    let orders = super::runtime()?.block_on(declared_orders(&config, &workflows));
    let expectations: std::collections::HashMap<String, String> =
        crate::expect::declared(&workflows)
            .into_iter()
            .map(|(w, e)| (w, e.describe()))
            .collect();
    let from = args.from.unwrap_or_else(crate::clock::system_now);
    let utc = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut scheduled = Vec::new();
    let mut unscheduled = Vec::new();
    for w in &workflows {
        match &w.schedule {
            Some(s) => {
                let fires: Vec<_> = s
                    .fires_after(from, usize::from(args.count))
                    .into_iter()
                    .map(|t| {
                        (
                            t.to_rfc3339_opts(SecondsFormat::Secs, false),
                            utc(t.to_utc()),
                        )
                    })
                    .collect();
                scheduled.push((w, s, fires));
            }
            None => unscheduled.push(w),
        }
    }
    let starts = |w: &crate::workflow::Workflow| -> String {
        if w.events.is_empty() {
            "manual only (satflow trigger)".into()
        } else {
            let names: Vec<&str> = w.events.iter().map(|e| e.name()).collect();
            format!("on {}", names.join(", "))
        }
    };

    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if args.json {
        let doc = json!({
            "from": utc(from),
            "schedules": scheduled.iter().map(|(w, s, fires)| json!({
                "workflow": w.name,
                "path": w.path.display().to_string(),
                "cron": s.cron_text,
                "timezone": s.timezone.name(),
                "catch_up": s.catch_up.name(),
                "fires": fires.iter().map(|(local, utc)| json!({"local": local, "utc": utc})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "orders": orders.iter().map(|o| json!({
                "workflow": o.workflow,
                "declared": o.declared,
                "order_id": o.order_id,
                "remote": match &o.remote {
                    Some(Ok(order)) => serde_json::to_value(order).unwrap_or_default(),
                    Some(Err(problem)) => json!({ "error": problem }),
                    None => Value::Null,
                },
                "drift": o.drift,
                "expect": expectations.get(&o.workflow),
            })).collect::<Vec<_>>(),
            "unscheduled": unscheduled.iter().map(|w| json!({
                "workflow": w.name,
                "events": w.events.iter().map(|e| e.name()).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        out.flush()?;
        return Ok(Outcome::Success);
    }

    writeln!(out, "Fire times after {}:", utc(from))?;
    for (w, s, fires) in &scheduled {
        writeln!(out)?;
        writeln!(out, "{} ({}): {s}", w.name, w.path.display())?;
        for (local, utc) in fires {
            writeln!(out, "  {local:<27} {utc}")?;
        }
    }
    if !unscheduled.is_empty() {
        writeln!(out)?;
        for w in &unscheduled {
            writeln!(out, "{} ({}): {}", w.name, w.path.display(), starts(w))?;
        }
    }
    if workflows.is_empty() {
        writeln!(out, "(no workflows)")?;
    }
    if !orders.is_empty() {
        writeln!(out)?;
        writeln!(out, "Declared orders:")?;
        for o in &orders {
            writeln!(out, "  {}: {}", o.workflow, o.declared)?;
            if let Some(expect) = expectations.get(&o.workflow) {
                writeln!(
                    out,
                    "    expects {expect}: one alert per missed payment (missed_purchase), one per cost off (cost_mismatch)"
                )?;
            }
            match (&o.order_id, &o.remote) {
                (None, _) => writeln!(
                    out,
                    "    no order yet: run `satflow order setup {}`",
                    o.workflow
                )?,
                (Some(id), Some(Err(problem))) => {
                    writeln!(out, "    order {id}; Pocket could not be asked: {problem}")?
                }
                (Some(id), Some(Ok(remote))) => {
                    let fee = remote
                        .fee_rate
                        .map(|f| f.to_string())
                        .unwrap_or_else(|| "?".into());
                    writeln!(
                        out,
                        "    order {id} at Pocket: active {}, fee_rate {fee}",
                        remote.active
                    )?;
                    for d in &o.drift {
                        writeln!(out, "    will change: {d}")?;
                    }
                }
                (Some(id), None) => writeln!(out, "    order {id}")?,
            }
        }
    }
    // Written through a returned error, not `println!`: a reader that stops early (`| head`)
    // ends the command quietly (see cli::main).
    out.flush()?;
    Ok(Outcome::Success)
}

/// A workflow's declared order next to what Pocket has.
struct DeclaredOrder {
    workflow: String,
    declared: String,
    order_id: Option<String>,
    /// The order at Pocket, or why it could not be read.
    remote: Option<Result<crate::pocket::types::Order, String>>,
    drift: Vec<String>,
}

/// Every `pocket.order` declaration, with the stored order and, when Pocket answers, its state.
/// Read only: a database that does not exist yet is not created.
async fn declared_orders(
    config: &crate::config::Config,
    workflows: &[Workflow],
) -> Vec<DeclaredOrder> {
    use crate::workflow::{Action, Condition, Param};
    let exists = match &config.database {
        crate::config::Database::Sqlite(path) => path.exists(),
        // A server's database is there to be read (the schema is brought up to date).
        crate::config::Database::Postgres(_) => true,
    };
    let store = if exists {
        crate::store::Store::open(&config.database).await.ok()
    } else {
        None
    };
    let client = config.pocket.as_ref().map(crate::pocket::PocketClient::new);
    let mut out = Vec::new();
    for w in workflows {
        for step in &w.steps {
            let Action::PocketOrder(o) = &step.action else {
                continue;
            };
            let show = |p: &dyn std::fmt::Display| p.to_string();
            let fee = match &o.fee_rate {
                Param::Value(f) => show(f),
                Param::Template(t) => t.clone(),
            };
            let currency = match &o.currency {
                Param::Value(c) => show(c),
                Param::Template(t) => t.clone(),
            };
            let payout = match &o.payout {
                crate::workflow::actions::Payout::Wallet { wallet, .. } => {
                    format!("wallet {wallet}")
                }
                crate::workflow::actions::Payout::Lightning { node, .. } => {
                    format!("Lightning node {node}")
                }
            };
            let active = match &o.active {
                Condition::Fixed(a) => a.to_string(),
                Condition::Expression(e) => format!("decided each run by {e}"),
            };
            let mut entry = DeclaredOrder {
                workflow: w.name.clone(),
                declared: format!(
                    "{currency} at fee_rate {fee}, payout to {payout}, active {active}"
                ),
                order_id: None,
                remote: None,
                drift: Vec::new(),
            };
            if let Some(store) = &store
                && let Ok(Some(stored)) = store.order_for_workflow(&w.name).await
            {
                entry.order_id = Some(stored.id.clone());
                if let Some(client) = &client {
                    match tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        client.get_order(&stored.id),
                    )
                    .await
                    {
                        Ok(Ok(remote)) => {
                            if let Param::Value(f) = &o.fee_rate
                                && remote.fee_rate != Some(f.value())
                            {
                                entry.drift.push(format!(
                                    "fee_rate {} -> {f}",
                                    remote.fee_rate.map(|d| d.to_string()).unwrap_or_default()
                                ));
                            }
                            if let Condition::Fixed(a) = o.active
                                && remote.active != a
                            {
                                entry.drift.push(format!("active {} -> {a}", remote.active));
                            }
                            entry.remote = Some(Ok(remote));
                        }
                        Ok(Err(e)) => entry.remote = Some(Err(e.to_string())),
                        Err(_) => entry.remote = Some(Err("no answer within 10 s".into())),
                    }
                }
            }
            out.push(entry);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_accepts_rfc3339_naive_and_dates() {
        assert_eq!(
            parse_time("2027-03-28T00:00:00+01:00")
                .unwrap()
                .to_rfc3339(),
            "2027-03-27T23:00:00+00:00"
        );
        assert_eq!(
            parse_time("2027-03-28T05:30").unwrap().to_rfc3339(),
            "2027-03-28T05:30:00+00:00"
        );
        assert_eq!(
            parse_time("2027-03-28").unwrap().to_rfc3339(),
            "2027-03-28T00:00:00+00:00"
        );
        assert!(parse_time("next monday").unwrap_err().contains("RFC 3339"));
    }
}

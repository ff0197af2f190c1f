//! `satflow plan`: the next fire times of every scheduled workflow, in its own zone and in UTC,
//! so a user can see before it happens when money will move.

use std::path::Path;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde_json::json;

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
    let Setup { workflows, .. } = match load_setup(config_path) {
        Ok(setup) => setup,
        Err(problems) => {
            print_problems(&problems);
            return Ok(Outcome::UserError);
        }
    };
    let from = args.from.unwrap_or_else(Utc::now);
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
            "unscheduled": unscheduled.iter().map(|w| json!({
                "workflow": w.name,
                "events": w.events.iter().map(|e| e.name()).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(Outcome::Success);
    }

    println!("Fire times after {}:", utc(from));
    for (w, s, fires) in &scheduled {
        println!();
        println!("{} ({}): {s}", w.name, w.path.display());
        for (local, utc) in fires {
            println!("  {local:<27} {utc}");
        }
    }
    if !unscheduled.is_empty() {
        println!();
        for w in &unscheduled {
            println!("{} ({}): {}", w.name, w.path.display(), starts(w));
        }
    }
    if workflows.is_empty() {
        println!("(no workflows)");
    }
    Ok(Outcome::Success)
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

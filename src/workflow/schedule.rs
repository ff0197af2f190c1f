//! `on.schedule`: a cron expression evaluated in an IANA time zone, and what to do about fires
//! missed while satflow was down.
//!
//! Fire times are computed here with croner in the workflow's own zone, never with a fixed UTC
//! offset: a Monday-09:00 plan stays at 09:00 local time on both sides of a DST change. Over a
//! DST gap a fixed-time fire moves to the first minute after the gap; over a repeated hour it
//! fires once, the first time (croner's OCPS rules).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};

use super::zone::Zone;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// Missed fires are dropped; the next regular fire runs.
    Skip,
    /// One run for the latest missed fire (the default).
    Once,
    /// Every missed fire runs, oldest first, up to a cap.
    All,
}

impl CatchUp {
    pub fn name(self) -> &'static str {
        match self {
            CatchUp::Skip => "skip",
            CatchUp::Once => "once",
            CatchUp::All => "all",
        }
    }
}

impl FromStr for CatchUp {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "skip" => Ok(CatchUp::Skip),
            "once" => Ok(CatchUp::Once),
            "all" => Ok(CatchUp::All),
            _ => Err(format!(
                "\"{s}\" is not a catch-up policy; accepted: skip, once, all"
            )),
        }
    }
}

/// A validated schedule. It keeps the cron's text, not croner's parsed form: croner allocates a
/// 5,000-entry table of years for every pattern, which for thousands of workflows is most of
/// the daemon's memory, and parsing again when a fire time is needed takes microseconds.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub cron_text: String,
    pub timezone: Zone,
    pub catch_up: CatchUp,
}

impl Schedule {
    /// Parses a 5-field (minute precision) or 6-field (with seconds) cron expression, or a
    /// nickname such as `@daily`. Refuses expressions that never fire.
    pub fn new(cron_text: &str, timezone: Zone, catch_up: CatchUp) -> Result<Self, String> {
        let cron = parse_cron(cron_text)?;
        let schedule = Schedule {
            cron_text: cron_text.trim().to_string(),
            timezone,
            catch_up,
        };
        // Parsed once here: with thousands of workflows, parsing is most of `check`'s time.
        let now = crate::clock::system_now().with_timezone(&schedule.timezone);
        if cron.find_next_occurrence(&now, false).is_err() {
            return Err(format!(
                "\"{}\" never fires (no date matches it); check the day-of-month and month fields",
                schedule.cron_text
            ));
        }
        Ok(schedule)
    }

    /// The first fire strictly after `after`, in the workflow's zone.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Zone>> {
        let local = after.with_timezone(&self.timezone);
        self.cron().find_next_occurrence(&local, false).ok()
    }

    fn cron(&self) -> Cron {
        parse_cron(&self.cron_text).expect("the cron text was validated when the schedule was made")
    }

    /// Every fire strictly after `after` up to `until` inclusive, at most `limit` of them.
    pub fn fires_until(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        let cron = self.cron();
        let mut out = Vec::new();
        let mut cursor = after.with_timezone(&self.timezone);
        while out.len() < limit {
            match cron.find_next_occurrence(&cursor, false) {
                Ok(next) if next.to_utc() <= until => {
                    out.push(next.to_utc());
                    cursor = next;
                }
                _ => break,
            }
        }
        out
    }

    /// The next `count` fires strictly after `after`.
    pub fn fires_after(&self, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Zone>> {
        let mut out = Vec::with_capacity(count);
        let mut cursor = after.with_timezone(&self.timezone);
        let cron = self.cron();
        while out.len() < count {
            // Croner walks real time: feeding back the exact previous fire keeps it on the right
            // pass through a repeated hour.
            match cron.find_next_occurrence(&cursor, false) {
                Ok(next) => {
                    out.push(next.clone());
                    cursor = next;
                }
                Err(_) => break,
            }
        }
        out
    }
}

fn parse_cron(text: &str) -> Result<Cron, String> {
    let text = text.trim();
    let fields = text.split_whitespace().count();
    if !text.starts_with('@') && !(5..=6).contains(&fields) {
        return Err(format!(
            "\"{text}\" has {fields} field{}; write 5 (minute hour day-of-month month day-of-week), e.g. \"0 9 * * MON\", or 6 with seconds first",
            if fields == 1 { "" } else { "s" }
        ));
    }
    let parser = CronParser::builder().seconds(Seconds::Optional).build();
    parser.parse(text).map_err(|e| match culprit(&parser, text) {
        Some((field, value, accepted)) => format!(
            "\"{text}\": the {field} field \"{value}\" is not valid; {field} accepts {accepted}, with * , - / (e.g. */15, 1-5, 0,30)"
        ),
        None => format!(
            "\"{text}\" is not a valid cron expression ({e}); write 5 fields (minute hour day-of-month month day-of-week), e.g. \"0 9 * * MON\""
        ),
    })
}

/// The field that makes `text` fail on its own, found by parsing it with every other field `*`:
/// croner's own errors do not say which field is wrong.
fn culprit(parser: &CronParser, text: &str) -> Option<(&'static str, String, &'static str)> {
    const FIELDS: [(&str, &str); 6] = [
        ("second", "0 to 59"),
        ("minute", "0 to 59"),
        ("hour", "0 to 23"),
        ("day-of-month", "1 to 31, L and W"),
        ("month", "1 to 12 or JAN to DEC"),
        ("day-of-week", "0 to 7 or SUN to SAT, L and #"),
    ];
    let parts: Vec<&str> = text.split_whitespace().collect();
    let names = &FIELDS[FIELDS.len() - parts.len()..];
    (0..parts.len()).find_map(|i| {
        let alone: Vec<&str> = (0..parts.len())
            .map(|j| if i == j { parts[j] } else { "*" })
            .collect();
        parser
            .parse(&alone.join(" "))
            .is_err()
            .then(|| (names[i].0, parts[i].to_string(), names[i].1))
    })
}

/// An IANA zone name such as `Europe/Zurich`, read from the system's time-zone database.
pub fn parse_timezone(text: &str) -> Result<Zone, String> {
    Zone::named(text).map_err(|e| e.to_string())
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cron \"{}\" in {}, catch_up {}",
            self.cron_text,
            self.timezone,
            self.catch_up.name()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn zurich() -> Zone {
        parse_timezone("Europe/Zurich").unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn keeps_local_time_across_the_spring_change() {
        let s = Schedule::new("0 9 * * *", zurich(), CatchUp::Once).unwrap();
        let fires = s.fires_after(utc("2027-03-27T00:00:00Z"), 2);
        assert_eq!(fires[0].to_rfc3339(), "2027-03-27T09:00:00+01:00");
        assert_eq!(fires[1].to_rfc3339(), "2027-03-28T09:00:00+02:00");
        assert_eq!(
            fires[1].with_timezone(&Utc),
            Utc.with_ymd_and_hms(2027, 3, 28, 7, 0, 0).unwrap()
        );
    }

    #[test]
    fn refuses_wrong_field_counts_bad_fields_and_dates_that_never_come() {
        assert!(
            Schedule::new("0 9 * *", zurich(), CatchUp::Once)
                .unwrap_err()
                .contains("4 fields")
        );
        let err = Schedule::new("0 25 * * *", zurich(), CatchUp::Once).unwrap_err();
        assert!(
            err.contains("the hour field \"25\" is not valid; hour accepts 0 to 23"),
            "{err}"
        );
        let err = Schedule::new("0 0 9 * * FUNDAY", zurich(), CatchUp::Once).unwrap_err();
        assert!(err.contains("the day-of-week field \"FUNDAY\""), "{err}");
        assert!(
            Schedule::new("0 0 30 2 *", zurich(), CatchUp::Once)
                .unwrap_err()
                .contains("never fires")
        );
        assert!(Schedule::new("*/10 * * * * *", zurich(), CatchUp::Once).is_ok());
        assert!(Schedule::new("@weekly", zurich(), CatchUp::Once).is_ok());
    }

    #[test]
    fn timezones_and_policies_are_checked() {
        assert!(parse_timezone("Europe/Zurich").is_ok());
        assert!(
            parse_timezone("Europe/Zürich")
                .unwrap_err()
                .contains("IANA")
        );
        assert_eq!("all".parse::<CatchUp>().unwrap(), CatchUp::All);
        assert!(
            "sometimes"
                .parse::<CatchUp>()
                .unwrap_err()
                .contains("skip, once, all")
        );
    }
}

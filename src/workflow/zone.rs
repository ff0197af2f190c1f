//! IANA time zones read from the system's time-zone database (the TZif files of the tzdata
//! package under /usr/share/zoneinfo, or `$TZDIR`), as chrono time zones for schedules.
//!
//! Why not a compiled-in database: chrono-tz put the whole of it in the binary, about 1 MB of
//! pointer-bearing tables that the loader relocates at every start (1 MB of private memory, on
//! a Raspberry Pi), and it went stale with the binary while the system's tzdata is updated by
//! the distribution. The format is RFC 8536: transitions up to the last one recorded, then the
//! POSIX TZ string of its footer for every later time.
//!
//! It must never guess: a name it cannot find, or a file it cannot read completely, is refused
//! with the name and the path; only `UTC` needs no file.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{Datelike, FixedOffset, MappedLocalTime, NaiveDate, NaiveDateTime, Offset, TimeZone};

/// A time zone: its name and its rules, shared by every schedule that names it.
#[derive(Clone)]
pub struct Zone(Arc<Rules>);

/// The offset in effect at an instant of a zone (what a `DateTime<Zone>` carries): its kind of
/// local time, by index into the zone's `kinds`.
#[derive(Clone)]
pub struct ZoneOffset {
    zone: Zone,
    kind: u16,
}

#[derive(Debug, PartialEq)]
struct Rules {
    name: Box<str>,
    /// Every kind of local time the zone has had (the tail's two come last).
    kinds: Vec<Kind>,
    /// Transitions (UTC seconds, ascending) and the kind in effect from each.
    transitions: Vec<(i64, u16)>,
    /// The kind before the first transition.
    initial: u16,
    /// The rule after the last transition: the footer's TZ string.
    tail: Option<Tail>,
}

#[derive(Debug, Clone, PartialEq)]
struct Kind {
    /// Seconds east of UTC.
    offset: i32,
    abbreviation: Box<str>,
}

/// A POSIX TZ string, resolved to kinds: standard time, and summer time with its two changes.
#[derive(Debug, Clone, PartialEq)]
struct Tail {
    std: u16,
    dst: Option<(u16, Change, Change)>,
}

/// When a change happens in a year: a day and a local time of day (seconds, -167 h to 167 h).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Change {
    day: Day,
    time: i32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Day {
    /// `Jn`: day 1 to 365, February 29 never counted.
    Julian(u16),
    /// `n`: day 0 to 365, February 29 counted.
    Ordinal(u16),
    /// `Mm.w.d`: weekday `d` (0 Sunday) of week `w` (5: the last) of month `m`.
    Month { month: u8, week: u8, weekday: u8 },
}

/// Why a zone cannot be had; shown to the user after the field's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    #[error(
        "\"{0}\" is not an IANA time zone; write a name such as Europe/Zurich, America/New_York or UTC"
    )]
    NotAName(String),
    #[error(
        "\"{name}\" is not an IANA time zone ({path} does not exist); write a name such as Europe/Zurich, America/New_York or UTC"
    )]
    Unknown { name: String, path: String },
    #[error(
        "time zone \"{name}\" needs the system's time-zone database, and there is none at {dir} (install the tzdata package, or set TZDIR to its directory)"
    )]
    NoDatabase { name: String, dir: String },
    #[error("time zone \"{name}\": {path} cannot be read: {problem}")]
    Unreadable {
        name: String,
        path: String,
        problem: String,
    },
}

/// Why a TZif file or a TZ string is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FormatError(String);

fn bad<T>(what: impl Into<String>) -> Result<T, FormatError> {
    Err(FormatError(what.into()))
}

/// The largest TZif file read (the largest in tzdata is under 4 KB; a "fat" one under 10 KB).
const MAX_FILE: u64 = 256 * 1024;

/// The UT offsets a zone may have: RFC 8536 allows up to 26 hours, chrono's offsets less than
/// one day (no zone has ever been more than 15 hours away).
const OFFSETS: std::ops::RangeInclusive<i32> = -86_399..=86_399;

/// Where the database is looked for when `TZDIR` is not set, first found first.
const DATABASES: [&str; 3] = [
    "/usr/share/zoneinfo",
    "/usr/lib/zoneinfo",
    "/usr/share/lib/zoneinfo",
];

impl Zone {
    /// UTC, which needs no database.
    pub fn utc() -> Zone {
        static UTC: OnceLock<Zone> = OnceLock::new();
        UTC.get_or_init(|| {
            Zone(Arc::new(Rules {
                name: "UTC".into(),
                kinds: vec![Kind {
                    offset: 0,
                    abbreviation: "UTC".into(),
                }],
                transitions: Vec::new(),
                initial: 0,
                tail: None,
            }))
        })
        .clone()
    }

    /// The zone named `name` (`Europe/Zurich`), read once per process from the system's
    /// database and shared from then on.
    pub fn named(name: &str) -> Result<Zone, ZoneError> {
        let name = name.trim();
        if name == "UTC" || name == "Etc/UTC" {
            return Ok(Zone::utc());
        }
        if !is_zone_name(name) {
            return Err(ZoneError::NotAName(name.to_string()));
        }
        if let Some(z) = loaded().get(name) {
            return Ok(z.clone());
        }
        let zone = load(name, &database())?;
        loaded().insert(name.to_string(), zone.clone());
        Ok(zone)
    }

    /// Makes the next `named` of each zone read the database again (a reload after a tzdata
    /// update); zones already handed out keep their rules.
    pub fn forget_loaded() {
        loaded().clear();
    }

    /// Makes `named` answer with this zone for its name from now on, as if read from the
    /// database: for the demo on a machine without tzdata, never for a user's workflows.
    pub fn provide(zone: Zone) {
        loaded().insert(zone.name().to_string(), zone);
    }

    /// A zone from TZif bytes (RFC 8536, versions 1 to 4).
    pub fn from_tzif(name: &str, bytes: &[u8]) -> Result<Zone, FormatError> {
        let rules = parse_tzif(name, bytes)?;
        Ok(Zone(Arc::new(rules)))
    }

    /// A zone from a POSIX TZ string alone (`CET-1CEST,M3.5.0,M10.5.0/3`), which describes
    /// today's rules but none of the zone's history.
    pub fn from_posix(name: &str, tz: &str) -> Result<Zone, FormatError> {
        let mut kinds = Vec::new();
        let tail = parse_posix(tz, &mut kinds)?;
        Ok(Zone(Arc::new(Rules {
            name: name.into(),
            initial: tail.std,
            kinds,
            transitions: Vec::new(),
            tail: Some(tail),
        })))
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    fn offset(&self, kind: u16) -> ZoneOffset {
        ZoneOffset {
            zone: self.clone(),
            kind,
        }
    }

    fn seconds(&self, kind: u16) -> i32 {
        self.0.kinds[usize::from(kind)].offset
    }
}

/// The zones read so far, by name.
fn loaded() -> std::sync::MutexGuard<'static, HashMap<String, Zone>> {
    static LOADED: OnceLock<Mutex<HashMap<String, Zone>>> = OnceLock::new();
    LOADED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Letters, digits, `_`, `-` and `+`, in `/`-separated parts, none of them `.` or `..`: a name
/// that stays inside the database directory.
fn is_zone_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '.'))
        })
}

fn database() -> PathBuf {
    if let Some(dir) = std::env::var_os("TZDIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    DATABASES
        .iter()
        .map(PathBuf::from)
        .find(|d| d.is_dir())
        .unwrap_or_else(|| PathBuf::from(DATABASES[0]))
}

fn load(name: &str, dir: &Path) -> Result<Zone, ZoneError> {
    let path = dir.join(name);
    let shown = path.display().to_string();
    if !dir.is_dir() {
        return Err(ZoneError::NoDatabase {
            name: name.to_string(),
            dir: dir.display().to_string(),
        });
    }
    let unreadable = |problem: String| ZoneError::Unreadable {
        name: name.to_string(),
        path: shown.clone(),
        problem,
    };
    let bytes = match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ZoneError::Unknown {
                name: name.to_string(),
                path: shown,
            });
        }
        Err(e) => return Err(unreadable(e.to_string())),
        Ok(m) if !m.is_file() => {
            return Err(ZoneError::Unknown {
                name: name.to_string(),
                path: shown,
            });
        }
        Ok(m) if m.len() > MAX_FILE => {
            return Err(unreadable(format!(
                "{} bytes, more than a TZif file has",
                m.len()
            )));
        }
        Ok(_) => std::fs::read(&path).map_err(|e| unreadable(e.to_string()))?,
    };
    Zone::from_tzif(name, &bytes).map_err(|e| unreadable(e.0))
}

/// Reads big-endian fields off the front of a byte slice, refusing a short one.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], FormatError> {
        if self.0.len() < n {
            return bad(format!("the file ends inside its {what}"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self, what: &str) -> Result<u32, FormatError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

struct Header {
    version: u8,
    isutcnt: usize,
    isstdcnt: usize,
    leapcnt: usize,
    timecnt: usize,
    typecnt: usize,
    charcnt: usize,
}

impl Header {
    fn read(r: &mut Reader<'_>) -> Result<Header, FormatError> {
        let head = r.take(20, "header")?;
        if &head[..4] != b"TZif" {
            return bad("not a TZif file (it does not start with \"TZif\")");
        }
        let version = match head[4] {
            0 => 1,
            v @ b'2'..=b'4' => v - b'0',
            v => {
                return bad(format!(
                    "TZif version byte {v:#04x} is not 0, '2', '3' or '4'"
                ));
            }
        };
        let mut count = |what| r.u32(what).map(|n| n as usize);
        let header = Header {
            version,
            isutcnt: count("header")?,
            isstdcnt: count("header")?,
            leapcnt: count("header")?,
            timecnt: count("header")?,
            typecnt: count("header")?,
            charcnt: count("header")?,
        };
        if header.typecnt == 0 || header.typecnt > 256 {
            return bad(format!(
                "{} local time types (a TZif file has 1 to 256)",
                header.typecnt
            ));
        }
        if header.charcnt == 0 {
            return bad("no time zone abbreviations");
        }
        Ok(header)
    }

    /// The length of the data block that follows, with `time` bytes per timestamp.
    fn data_len(&self, time: usize) -> Option<usize> {
        let transitions = self.timecnt.checked_mul(time + 1)?;
        let types = self.typecnt.checked_mul(6)?;
        let leaps = self.leapcnt.checked_mul(time + 4)?;
        transitions
            .checked_add(types)?
            .checked_add(self.charcnt)?
            .checked_add(leaps)?
            .checked_add(self.isstdcnt)?
            .checked_add(self.isutcnt)
    }
}

fn parse_tzif(name: &str, bytes: &[u8]) -> Result<Rules, FormatError> {
    let mut r = Reader(bytes);
    let mut header = Header::read(&mut r)?;
    let mut time = 4;
    if header.version >= 2 {
        // The version 1 block (32-bit times) is there for old readers; the 64-bit one follows.
        let skip = header
            .data_len(4)
            .ok_or_else(|| FormatError("its counts overflow".into()))?;
        r.take(skip, "version 1 data")?;
        header = Header::read(&mut r)?;
        time = 8;
    }
    // The counts are checked against the bytes there before anything is sized by them.
    if header.data_len(time).is_none_or(|len| len > r.0.len()) {
        return bad("the file is shorter than its header says");
    }
    let mut transitions = Vec::with_capacity(header.timecnt);
    let times = r.take(header.timecnt * time, "transition times")?;
    let indices = r.take(header.timecnt, "transition types")?;
    let mut previous = i64::MIN;
    for (chunk, &index) in times.chunks_exact(time).zip(indices) {
        let at = match chunk {
            [a, b, c, d] => i64::from(i32::from_be_bytes([*a, *b, *c, *d])),
            _ => i64::from_be_bytes(
                <[u8; 8]>::try_from(chunk).map_err(|_| FormatError("a short time".into()))?,
            ),
        };
        if at <= previous {
            return bad("its transition times are not in ascending order");
        }
        previous = at;
        if usize::from(index) >= header.typecnt {
            return bad(format!(
                "a transition names local time type {index} of {}",
                header.typecnt
            ));
        }
        transitions.push((at, u16::from(index)));
    }
    let records = r.take(header.typecnt * 6, "local time types")?;
    let chars = r.take(header.charcnt, "abbreviations")?;
    let mut kinds = Vec::with_capacity(header.typecnt + 2);
    for rec in records.chunks_exact(6) {
        let offset = i32::from_be_bytes([rec[0], rec[1], rec[2], rec[3]]);
        if !OFFSETS.contains(&offset) {
            return bad(format!(
                "a UT offset of {offset} s (accepted: less than a day either way)"
            ));
        }
        let at = usize::from(rec[5]);
        let Some(tail) = chars.get(at..) else {
            return bad(format!(
                "an abbreviation index {at} past the {} bytes",
                chars.len()
            ));
        };
        let end = tail.iter().position(|&c| c == 0).unwrap_or(tail.len());
        let abbreviation = std::str::from_utf8(&tail[..end])
            .map_err(|_| FormatError("an abbreviation that is not ASCII".into()))?;
        kinds.push(Kind {
            offset,
            abbreviation: abbreviation.into(),
        });
    }
    // Leap seconds (the "right/" zones) and the standard/wall and UT/local indicators do not
    // change local time: skipped.
    r.take(header.leapcnt * (time + 4), "leap seconds")?;
    r.take(header.isstdcnt + header.isutcnt, "indicators")?;
    let tail = if header.version >= 2 {
        let footer = r.0;
        let text = footer
            .strip_prefix(b"\n")
            .and_then(|f| f.iter().position(|&c| c == b'\n').map(|end| &f[..end]))
            .ok_or_else(|| FormatError("its footer is not a TZ string between newlines".into()))?;
        let text =
            std::str::from_utf8(text).map_err(|_| FormatError("its footer is not ASCII".into()))?;
        if text.is_empty() {
            None
        } else {
            Some(parse_posix(text, &mut kinds)?)
        }
    } else {
        None
    };
    Ok(Rules {
        name: name.into(),
        kinds,
        transitions,
        initial: 0,
        tail,
    })
}

/// Parses a POSIX TZ string (with RFC 8536's extensions), adding its kinds to `kinds`.
fn parse_posix(text: &str, kinds: &mut Vec<Kind>) -> Result<Tail, FormatError> {
    let whole = text;
    let mut s = text.as_bytes();
    let refuse = |why: &str| FormatError(format!("TZ string \"{whole}\": {why}"));
    let std_name = posix_name(&mut s).ok_or_else(|| refuse("no standard time name"))?;
    let std_offset = posix_time(&mut s, 24).ok_or_else(|| refuse("no standard time offset"))?;
    // POSIX counts offsets west of Greenwich as positive.
    let std = push_kind(kinds, -std_offset, std_name)
        .ok_or_else(|| refuse("a standard time offset of a day or more"))?;
    if s.is_empty() {
        return Ok(Tail { std, dst: None });
    }
    let dst_name = posix_name(&mut s).ok_or_else(|| refuse("no summer time name"))?;
    let dst_offset = if s.first().is_some_and(|&c| c != b',') {
        -posix_time(&mut s, 24).ok_or_else(|| refuse("a bad summer time offset"))?
    } else {
        3600 - std_offset
    };
    let dst = push_kind(kinds, dst_offset, dst_name)
        .ok_or_else(|| refuse("a summer time offset of a day or more"))?;
    let change = |s: &mut &[u8]| -> Option<Change> {
        *s = s.strip_prefix(b",")?;
        let day = posix_day(s)?;
        let time = if let Some(rest) = s.strip_prefix(b"/") {
            *s = rest;
            posix_time(s, 167)?
        } else {
            7200
        };
        Some(Change { day, time })
    };
    let start = change(&mut s).ok_or_else(|| refuse("no rule for when summer time starts"))?;
    let end = change(&mut s).ok_or_else(|| refuse("no rule for when summer time ends"))?;
    if !s.is_empty() {
        return Err(refuse("text after the rule"));
    }
    Ok(Tail {
        std,
        dst: Some((dst, start, end)),
    })
}

fn push_kind(kinds: &mut Vec<Kind>, offset: i32, name: &str) -> Option<u16> {
    if !OFFSETS.contains(&offset) {
        return None;
    }
    let index = u16::try_from(kinds.len()).ok()?;
    kinds.push(Kind {
        offset,
        abbreviation: name.into(),
    });
    Some(index)
}

/// `CET` (three or more letters) or `<+03>` (quoted: letters, digits, `+`, `-`).
fn posix_name<'a>(s: &mut &'a [u8]) -> Option<&'a str> {
    let (name, rest) = if let Some(quoted) = s.strip_prefix(b"<") {
        let end = quoted.iter().position(|&c| c == b'>')?;
        let name = &quoted[..end];
        if !name
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-'))
        {
            return None;
        }
        (name, &quoted[end + 1..])
    } else {
        let end = s
            .iter()
            .position(|c| !c.is_ascii_alphabetic())
            .unwrap_or(s.len());
        s.split_at(end)
    };
    if name.len() < 3 {
        return None;
    }
    *s = rest;
    std::str::from_utf8(name).ok()
}

/// `[+-]hh[:mm[:ss]]` as seconds, hours up to `max_hours`.
fn posix_time(s: &mut &[u8], max_hours: i32) -> Option<i32> {
    let sign = match s.first() {
        Some(b'-') => {
            *s = &s[1..];
            -1
        }
        Some(b'+') => {
            *s = &s[1..];
            1
        }
        _ => 1,
    };
    let hours = posix_number(s, 3)?;
    if hours > max_hours {
        return None;
    }
    let mut seconds = hours * 3600;
    for unit in [60, 1] {
        let Some(rest) = s.strip_prefix(b":") else {
            break;
        };
        *s = rest;
        let n = posix_number(s, 2)?;
        if n > 59 {
            return None;
        }
        seconds += n * unit;
    }
    Some(sign * seconds)
}

/// One to `digits` decimal digits.
fn posix_number(s: &mut &[u8], digits: usize) -> Option<i32> {
    let end = s
        .iter()
        .take(digits)
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(s.len().min(digits));
    if end == 0 {
        return None;
    }
    let n = std::str::from_utf8(&s[..end]).ok()?.parse().ok()?;
    *s = &s[end..];
    Some(n)
}

fn posix_day(s: &mut &[u8]) -> Option<Day> {
    if let Some(rest) = s.strip_prefix(b"J") {
        *s = rest;
        let n = posix_number(s, 3)?;
        return (1..=365).contains(&n).then_some(Day::Julian(n as u16));
    }
    if let Some(rest) = s.strip_prefix(b"M") {
        *s = rest;
        let month = posix_number(s, 2)?;
        *s = s.strip_prefix(b".")?;
        let week = posix_number(s, 1)?;
        *s = s.strip_prefix(b".")?;
        let weekday = posix_number(s, 1)?;
        let ok = (1..=12).contains(&month) && (1..=5).contains(&week) && weekday <= 6;
        return ok.then_some(Day::Month {
            month: month as u8,
            week: week as u8,
            weekday: weekday as u8,
        });
    }
    let n = posix_number(s, 3)?;
    (n <= 365).then_some(Day::Ordinal(n as u16))
}

const DAY: i64 = 86_400;

impl Change {
    /// The local date of this change in `year`, as days since 1970-01-01.
    fn date(self, year: i32) -> Option<i64> {
        let jan1 = NaiveDate::from_ymd_opt(year, 1, 1)?;
        let date = match self.day {
            Day::Julian(n) => {
                let mut ordinal = u32::from(n);
                if jan1.leap_year() && ordinal >= 60 {
                    ordinal += 1;
                }
                NaiveDate::from_yo_opt(year, ordinal)?
            }
            Day::Ordinal(n) => NaiveDate::from_yo_opt(year, u32::from(n) + 1)?,
            Day::Month {
                month,
                week,
                weekday,
            } => {
                let first = NaiveDate::from_ymd_opt(year, u32::from(month), 1)?;
                let shift = (u32::from(weekday) + 7 - first.weekday().num_days_from_sunday()) % 7;
                let mut date = first.checked_add_days(chrono::Days::new(
                    u64::from(shift) + 7 * u64::from(week - 1),
                ))?;
                // Week 5 is the last such weekday: a month may have only four.
                while date.month() != u32::from(month) {
                    date = date.checked_sub_days(chrono::Days::new(7))?;
                }
                date
            }
        };
        Some(i64::from(date.num_days_from_ce()) - 719_163)
    }
}

impl Tail {
    /// The changes of `year`, as (UTC second, kind from then on), in time order.
    fn changes(&self, rules: &Rules, year: i32) -> Option<[(i64, u16); 2]> {
        let (dst, start, end) = self.dst?;
        let std_offset = i64::from(rules.kinds[usize::from(self.std)].offset);
        let dst_offset = i64::from(rules.kinds[usize::from(dst)].offset);
        // A change's time is the local time in effect before it.
        let on = start.date(year)? * DAY + i64::from(start.time) - std_offset;
        let off = end.date(year)? * DAY + i64::from(end.time) - dst_offset;
        // In time order (the southern hemisphere's summer starts late in the year).
        if off < on {
            Some([(off, self.std), (on, dst)])
        } else {
            Some([(on, dst), (off, self.std)])
        }
    }
}

impl Rules {
    /// The kind in effect at UTC second `t`.
    fn kind_at(&self, t: i64) -> u16 {
        let after = self.transitions.partition_point(|&(at, _)| at <= t);
        if after == 0 {
            return if self.transitions.is_empty() {
                self.tail
                    .as_ref()
                    .map_or(self.initial, |tail| self.tail_at(tail, t))
            } else {
                self.initial
            };
        }
        if after == self.transitions.len()
            && let Some(tail) = &self.tail
        {
            return self.tail_at(tail, t);
        }
        self.transitions[after - 1].1
    }

    fn tail_at(&self, tail: &Tail, t: i64) -> u16 {
        let year = year_of(t);
        let mut current = None;
        // The last change at or before `t`, looking back a year (a change of one year can fall
        // on either side of its new year in UTC).
        for y in [year - 1, year, year + 1] {
            for (at, kind) in tail.changes(self, y).into_iter().flatten() {
                if at <= t {
                    current = Some(kind);
                }
            }
        }
        current.unwrap_or(tail.std)
    }

    /// Every change strictly after `from` and at or before `to` (UTC seconds), in time order.
    fn changes_between(&self, from: i64, to: i64) -> Vec<(i64, u16)> {
        let first = self.transitions.partition_point(|&(at, _)| at <= from);
        let mut out: Vec<(i64, u16)> = self.transitions[first..]
            .iter()
            .take_while(|&&(at, _)| at <= to)
            .copied()
            .collect();
        if let Some(tail) = &self.tail {
            let last = self.transitions.last().map_or(i64::MIN, |&(at, _)| at);
            for y in year_of(from) - 1..=year_of(to) + 1 {
                for (at, kind) in tail.changes(self, y).into_iter().flatten() {
                    if at > from.max(last) && at <= to {
                        out.push((at, kind));
                    }
                }
            }
            crate::sorting::sort_by_key(&mut out, |c| c.0);
        }
        out
    }
}

/// The UTC calendar year of second `t`, clamped to chrono's range.
fn year_of(t: i64) -> i32 {
    chrono::DateTime::from_timestamp(t, 0)
        .map_or(if t < 0 { -262_000 } else { 262_000 }, |d| d.year())
}

impl TimeZone for Zone {
    type Offset = ZoneOffset;

    fn from_offset(offset: &ZoneOffset) -> Zone {
        offset.zone.clone()
    }

    fn offset_from_local_date(&self, local: &NaiveDate) -> MappedLocalTime<ZoneOffset> {
        self.offset_from_local_datetime(&local.and_time(chrono::NaiveTime::MIN))
    }

    fn offset_from_local_datetime(&self, local: &NaiveDateTime) -> MappedLocalTime<ZoneOffset> {
        let wall = local.and_utc().timestamp();
        let rules = &self.0;
        // Offsets are within ±26 h: every kind that can give this wall time is in effect at
        // some instant of wall ± 2 days.
        let window = 2 * DAY;
        let mut candidates = vec![rules.kind_at(wall.saturating_sub(window))];
        candidates.extend(
            rules
                .changes_between(wall.saturating_sub(window), wall.saturating_add(window))
                .into_iter()
                .map(|c| c.1),
        );
        let mut found: Vec<(i64, u16)> = Vec::with_capacity(2);
        for kind in candidates {
            let instant = wall - i64::from(self.seconds(kind));
            let actual = rules.kind_at(instant);
            if self.seconds(actual) == self.seconds(kind) && !found.iter().any(|f| f.0 == instant) {
                found.push((instant, actual));
            }
        }
        crate::sorting::sort_by_key(&mut found, |f| f.0);
        match found.as_slice() {
            [] => MappedLocalTime::None,
            [one] => MappedLocalTime::Single(self.offset(one.1)),
            [first, .., last] => {
                MappedLocalTime::Ambiguous(self.offset(first.1), self.offset(last.1))
            }
        }
    }

    fn offset_from_utc_date(&self, utc: &NaiveDate) -> ZoneOffset {
        self.offset_from_utc_datetime(&utc.and_time(chrono::NaiveTime::MIN))
    }

    fn offset_from_utc_datetime(&self, utc: &NaiveDateTime) -> ZoneOffset {
        self.offset(self.0.kind_at(utc.and_utc().timestamp()))
    }
}

impl Offset for ZoneOffset {
    fn fix(&self) -> FixedOffset {
        // Every kind's offset was checked to be within a day when the zone was read.
        FixedOffset::east_opt(self.zone.seconds(self.kind)).unwrap_or_else(|| chrono::Utc.fix())
    }
}

impl fmt::Display for ZoneOffset {
    /// The abbreviation (`CET`, `CEST`), as `%Z` shows it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.zone.0.kinds[usize::from(self.kind)].abbreviation)
    }
}

impl fmt::Debug for ZoneOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self, self.fix())
    }
}

impl std::str::FromStr for Zone {
    type Err = ZoneError;

    fn from_str(name: &str) -> Result<Zone, ZoneError> {
        Zone::named(name)
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Zone({})", self.name())
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Zone) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn system(name: &str) -> Option<Zone> {
        match Zone::named(name) {
            Ok(z) => Some(z),
            Err(ZoneError::NoDatabase { .. }) => {
                eprintln!("no tzdata on this machine: {name} not checked against it");
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn offset_at(z: &Zone, text: &str) -> i32 {
        at(text).with_timezone(z).offset().fix().local_minus_utc()
    }

    #[test]
    fn zurich_from_its_tz_string_changes_on_the_last_sundays_of_march_and_october() {
        let z = Zone::from_posix("Europe/Zurich", "CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        // 2026: summer time from 29 March 01:00 UTC to 25 October 01:00 UTC.
        assert_eq!(offset_at(&z, "2026-03-29T00:59:59Z"), 3600);
        assert_eq!(offset_at(&z, "2026-03-29T01:00:00Z"), 7200);
        assert_eq!(offset_at(&z, "2026-10-25T00:59:59Z"), 7200);
        assert_eq!(offset_at(&z, "2026-10-25T01:00:00Z"), 3600);
        let local = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        // 02:30 on 29 March does not exist; 02:30 on 25 October happens twice.
        assert!(matches!(
            z.offset_from_local_datetime(&local("2026-03-29 02:30")),
            MappedLocalTime::None
        ));
        match z.offset_from_local_datetime(&local("2026-10-25 02:30")) {
            MappedLocalTime::Ambiguous(a, b) => {
                assert_eq!(
                    (a.to_string(), b.to_string()),
                    ("CEST".into(), "CET".into())
                );
            }
            other => panic!("{other:?}"),
        }
        let noon = z.from_local_datetime(&local("2026-07-01 12:00")).unwrap();
        assert_eq!(noon.to_utc(), at("2026-07-01T10:00:00Z"));
        assert_eq!(noon.format("%H:%M %Z").to_string(), "12:00 CEST");
    }

    #[test]
    fn a_southern_zone_has_summer_time_across_the_new_year() {
        // Australia/Sydney's rule: summer time from the first Sunday of October to the first
        // Sunday of April, both at 02:00 standard time (03:00 summer time for the end).
        let z = Zone::from_posix("Australia/Sydney", "AEST-10AEDT,M10.1.0,M4.1.0/3").unwrap();
        assert_eq!(offset_at(&z, "2027-01-01T00:00:00Z"), 11 * 3600);
        assert_eq!(offset_at(&z, "2026-12-31T23:59:59Z"), 11 * 3600);
        assert_eq!(offset_at(&z, "2026-07-01T00:00:00Z"), 10 * 3600);
        // 5 April 2026, 03:00 AEDT = 4 April 16:00 UTC.
        assert_eq!(offset_at(&z, "2026-04-04T15:59:59Z"), 11 * 3600);
        assert_eq!(offset_at(&z, "2026-04-04T16:00:00Z"), 10 * 3600);
    }

    #[test]
    fn tz_strings_are_read_as_posix_and_rfc_8536_write_them() {
        let mut kinds = Vec::new();
        // RFC 8536 section 3.3's examples: quoted names, hours beyond 24, all-year summer time.
        for good in [
            "UTC0",
            "<+03>-3",
            "<-03>3<-02>,M3.5.0/-2,M10.5.0/-1",
            "EST5EDT,0/0,J365/25",
            "IST-2IDT,M3.4.4/26,M10.5.0",
            "NZST-12NZDT,M9.5.0,M4.1.0/3",
            "<+1245>-12:45<+1345>,M9.5.0/2:45,M4.1.0/3:45",
        ] {
            parse_posix(good, &mut kinds).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "",
            "C0",
            "CET",
            "CET-1CEST",
            "CET-1CEST,M3.5.0",
            "CET-1CEST,M13.5.0,M10.5.0",
            "CET-1CEST,M3.6.0,M10.5.0",
            "CET-1CEST,J366,J10",
            "CET-25",
            "<+03-3",
            "CET-1 ",
            "CET-1CEST,M3.5.0,M10.5.0/168",
        ] {
            assert!(
                parse_posix(bad, &mut kinds).is_err(),
                "{bad:?} was accepted"
            );
        }
        // All-year summer time: EDT on any day.
        let z = Zone::from_posix("x", "EST5EDT,0/0,J365/25").unwrap();
        assert_eq!(offset_at(&z, "2026-06-01T00:00:00Z"), -4 * 3600);
        assert_eq!(offset_at(&z, "2026-01-01T12:00:00Z"), -4 * 3600);
    }

    #[test]
    fn names_outside_the_database_and_unknown_zones_are_refused() {
        for name in [
            "",
            "../etc/passwd",
            "/etc/localtime",
            "Europe//Zurich",
            "Europe/./Zurich",
        ] {
            assert_eq!(
                Zone::named(name),
                Err(ZoneError::NotAName(name.trim().to_string())),
                "{name:?}"
            );
        }
        assert_eq!(Zone::named("UTC").unwrap().name(), "UTC");
        let dir = std::env::temp_dir().join("satflow-no-zoneinfo");
        let err = load("Europe/Zurich", &dir).unwrap_err();
        assert!(matches!(err, ZoneError::NoDatabase { .. }), "{err}");
        assert!(
            err.to_string().contains("install the tzdata package"),
            "{err}"
        );
        if system("Europe/Zurich").is_some() {
            let err = Zone::named("Europe/Zurch").unwrap_err();
            assert!(matches!(err, ZoneError::Unknown { .. }), "{err}");
            let err = Zone::named("Europe").unwrap_err();
            assert!(matches!(err, ZoneError::Unknown { .. }), "{err}");
        }
    }

    #[test]
    fn a_damaged_tzif_file_is_refused_and_never_panics() {
        let Some(z) = system("Europe/Zurich") else {
            return;
        };
        let bytes = std::fs::read(database().join(z.name())).unwrap();
        for cut in 0..bytes.len() {
            // Every truncation before the footer's last newline is refused; none panics.
            if cut < bytes.len() - 1 {
                assert!(Zone::from_tzif("x", &bytes[..cut]).is_err(), "cut at {cut}");
            }
        }
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut damaged = bytes.clone();
                damaged[i] ^= flip;
                if let Ok(z) = Zone::from_tzif("x", &damaged) {
                    // Whatever it accepted, it answers without panicking.
                    let _ = at("2026-06-01T00:00:00Z").with_timezone(&z);
                    let _ = z.offset_from_local_datetime(&at("2026-03-29T02:30:00Z").naive_utc());
                }
            }
        }
    }

    #[test]
    fn the_system_database_agrees_with_the_iana_data_chrono_tz_compiled() {
        // chrono-tz (a dev-dependency only) compiles IANA's tzdata; the system's files come
        // from the same source. Compared over zones with every kind of rule: both
        // hemispheres, half- and quarter-hour offsets, negative summer time (Dublin), a
        // two-hour change (Troll), summer time abolished (Sao Paulo), a 30-minute one (Lord
        // Howe), and dates after 2037, which only the footer's TZ string covers.
        let zones = [
            "Europe/Zurich",
            "America/New_York",
            "Australia/Sydney",
            "Asia/Kolkata",
            "America/Sao_Paulo",
            "Pacific/Chatham",
            "Europe/Dublin",
            "Antarctica/Troll",
            "Australia/Lord_Howe",
            "America/St_Johns",
            "Asia/Kathmandu",
            "Europe/London",
            "America/Los_Angeles",
            "Pacific/Auckland",
            "Asia/Tokyo",
            "Africa/Johannesburg",
            "America/Santiago",
            "Asia/Jerusalem",
            "Europe/Moscow",
            "Pacific/Apia",
        ];
        let Some(_) = system("Europe/Zurich") else {
            return;
        };
        for name in zones {
            let ours = Zone::named(name).unwrap();
            let theirs: chrono_tz::Tz = name.parse().unwrap();
            // Every 6 hours from 1990 to 2060, and each hour around every change.
            let mut t = at("1990-01-01T00:00:00Z").timestamp();
            let end = at("2060-01-01T00:00:00Z").timestamp();
            while t < end {
                let utc = DateTime::from_timestamp(t, 0).unwrap();
                let a = utc.with_timezone(&ours);
                let b = utc.with_timezone(&theirs);
                assert_eq!(
                    a.offset().fix(),
                    b.offset().fix(),
                    "{name} at {utc}: ours {a}, chrono-tz {b}"
                );
                assert_eq!(a.naive_local(), b.naive_local());
                let wall = a.naive_local();
                let mine = ours.from_local_datetime(&wall).map(|d| d.to_utc());
                let other = theirs.from_local_datetime(&wall).map(|d| d.to_utc());
                assert_eq!(mine, other, "{name}: local {wall}");
                t += 6 * 3600;
            }
            for (at, _) in ours.0.changes_between(
                at("1990-01-01T00:00:00Z").timestamp(),
                at("2060-01-01T00:00:00Z").timestamp(),
            ) {
                for around in (-3..=3).map(|h| at + h * 1800) {
                    let utc = DateTime::from_timestamp(around, 0).unwrap();
                    let wall = utc.with_timezone(&theirs).naive_local();
                    assert_eq!(
                        utc.with_timezone(&ours).offset().fix(),
                        utc.with_timezone(&theirs).offset().fix(),
                        "{name} at {utc}"
                    );
                    assert_eq!(
                        ours.from_local_datetime(&wall).map(|d| d.to_utc()),
                        theirs.from_local_datetime(&wall).map(|d| d.to_utc()),
                        "{name}: local {wall}"
                    );
                }
            }
        }
    }
}

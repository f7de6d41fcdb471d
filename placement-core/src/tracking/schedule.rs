//! Scheduled minimum weights: "between 22:00 and 06:00 in Asia/Tokyo, at least 4". Windows are wall-clock
//! times in an IANA time zone (DST handled by `jiff` with its bundled database: no I/O), may cross
//! midnight (`end <= start` ends the next day; `start == end` is a whole day), and may be limited to
//! days of the week — the day the window *starts*.

use super::TrackingError;
use jiff::Timestamp;
use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

/// A schedule as written in a resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Schedule {
    /// IANA name, e.g. `Asia/Tokyo`; `UTC` by default.
    #[serde(default = "utc")]
    pub time_zone: String,
    /// `HH:MM` (24 h).
    pub start: String,
    /// `HH:MM`; at or before `start` means the next day.
    pub end: String,
    /// Days the window starts on (`Mon`, `tuesday`, ...); every day when empty.
    #[serde(default)]
    pub days: Vec<String>,
    /// The minimum weight while the window is active.
    pub value: u32,
}

fn utc() -> String {
    "UTC".to_string()
}

/// A validated schedule, ready to evaluate.
#[derive(Clone, Debug)]
pub struct CompiledSchedule {
    pub time_zone: TimeZone,
    pub start: Time,
    pub end: Time,
    pub days: Vec<Weekday>,
    pub value: u32,
}

fn parse_time(s: &str) -> Option<Time> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
    Time::new(h, m, 0, 0).ok()
}

/// `mon`, `Tue`, `wednesday`, ...: any prefix of an English day name of at least three letters.
fn parse_day(s: &str) -> Option<Weekday> {
    let s = s.trim().to_ascii_lowercase();
    let days = [
        ("monday", Weekday::Monday),
        ("tuesday", Weekday::Tuesday),
        ("wednesday", Weekday::Wednesday),
        ("thursday", Weekday::Thursday),
        ("friday", Weekday::Friday),
        ("saturday", Weekday::Saturday),
        ("sunday", Weekday::Sunday),
    ];
    days.iter().find(|(name, _)| s.len() >= 3 && name.starts_with(&s)).map(|(_, d)| *d)
}

impl Schedule {
    /// Validate; `index` is the schedule's position, for errors.
    pub fn compile(&self, index: usize) -> Result<CompiledSchedule, TrackingError> {
        let err = |field, message: String| TrackingError::Schedule { index, field, message };
        let time_zone = TimeZone::get(&self.time_zone)
            .map_err(|_| err("timeZone", format!("unknown time zone {:?}", self.time_zone)))?;
        let start = parse_time(&self.start).ok_or_else(|| err("start", format!("{:?} is not HH:MM", self.start)))?;
        let end = parse_time(&self.end).ok_or_else(|| err("end", format!("{:?} is not HH:MM", self.end)))?;
        let days = self
            .days
            .iter()
            .map(|d| parse_day(d).ok_or_else(|| err("days", format!("{d:?} is not a day of the week"))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CompiledSchedule { time_zone, start, end, days, value: self.value })
    }
}

impl CompiledSchedule {
    fn day_allowed(&self, day: Weekday) -> bool {
        self.days.is_empty() || self.days.contains(&day)
    }

    /// Is the window active at `now`?
    pub fn active_at(&self, now: Timestamp) -> bool {
        let local = now.to_zoned(self.time_zone.clone());
        let (t, day) = (local.time(), local.date().weekday());
        if self.start < self.end {
            return self.start <= t && t < self.end && self.day_allowed(day);
        }
        // Crosses midnight (or lasts a whole day when start == end).
        (t >= self.start && self.day_allowed(day)) || (t < self.end && self.day_allowed(day.wrapping_sub(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(tz: &str, start: &str, end: &str, days: &[&str]) -> CompiledSchedule {
        Schedule {
            time_zone: tz.into(),
            start: start.into(),
            end: end.into(),
            days: days.iter().map(|d| d.to_string()).collect(),
            value: 4,
        }
        .compile(0)
        .unwrap()
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn midnight_crossing_in_tokyo() {
        // 22:00-06:00 Asia/Tokyo (UTC+9) = 13:00-21:00 UTC.
        let s = sched("Asia/Tokyo", "22:00", "06:00", &[]);
        assert!(!s.active_at(at("2026-11-24T12:59:00Z")));
        assert!(s.active_at(at("2026-11-24T13:00:00Z")));
        assert!(s.active_at(at("2026-11-24T20:59:00Z")));
        assert!(!s.active_at(at("2026-11-24T21:00:00Z")));
    }

    #[test]
    fn weekday_filter_applies_to_the_start_day() {
        // Friday night 22:00 to Saturday 06:00 UTC; 2026-11-27 is a Friday.
        let s = sched("UTC", "22:00", "06:00", &["Fri"]);
        assert!(s.active_at(at("2026-11-27T23:00:00Z")));
        assert!(s.active_at(at("2026-11-28T05:00:00Z")), "Saturday morning belongs to Friday's window");
        assert!(!s.active_at(at("2026-11-28T23:00:00Z")), "Saturday night does not start a window");
        assert!(!s.active_at(at("2026-11-27T05:00:00Z")), "Friday morning belongs to Thursday");
    }

    #[test]
    fn dst_transition_day_keeps_wall_clock() {
        // Europe/Berlin leaves DST on 2026-10-25 (03:00 CEST -> 02:00 CET). 08:00-09:00 local is
        // 06:00 UTC before and 07:00 UTC after.
        let s = sched("Europe/Berlin", "08:00", "09:00", &[]);
        assert!(s.active_at(at("2026-10-24T06:30:00Z")));
        assert!(!s.active_at(at("2026-10-25T06:30:00Z")));
        assert!(s.active_at(at("2026-10-25T07:30:00Z")));
    }

    #[test]
    fn whole_day_when_start_equals_end() {
        let s = sched("UTC", "00:00", "00:00", &["sun"]);
        assert!(s.active_at(at("2026-11-29T12:00:00Z")), "a Sunday");
        assert!(!s.active_at(at("2026-11-30T12:00:00Z")));
    }

    #[test]
    fn errors_name_the_field() {
        let bad = |tz: &str, start: &str, end: &str, day: &str| {
            Schedule { time_zone: tz.into(), start: start.into(), end: end.into(), days: vec![day.into()], value: 1 }
                .compile(2)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            bad("Mars/Olympus", "1:00", "2:00", "mon"),
            "schedules[2].timeZone: unknown time zone \"Mars/Olympus\""
        );
        assert_eq!(bad("UTC", "25:00", "2:00", "mon"), "schedules[2].start: \"25:00\" is not HH:MM");
        assert_eq!(bad("UTC", "1:00", "x", "mon"), "schedules[2].end: \"x\" is not HH:MM");
        assert_eq!(bad("UTC", "1:00", "2:00", "someday"), "schedules[2].days: \"someday\" is not a day of the week");
    }
}

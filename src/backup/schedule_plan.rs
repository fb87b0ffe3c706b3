//! Pure: when a schedule fires, what its next backup is named, and which old backups go.
//!
//! Like a CronJob: missed runs (the operator was down) make one backup, for the latest missed
//! time, not one per missed time; a backup still running skips the next run (a backup racing
//! its predecessor on the same followers helps nobody). Names come from the scheduled time, so
//! a restart between creating a backup and recording it cannot make a second one.

use std::str::FromStr;

use jiff::{SignedDuration, Timestamp};

use crate::crd::backup::BackupPhase;

/// A parsed schedule (five fields, UTC; `@hourly`, `@daily`… too).
#[derive(Debug)]
pub struct Schedule(croner::Cron);

impl Schedule {
    /// Parses `expr`.
    ///
    /// # Errors
    /// Why it is not a cron expression, for a condition.
    pub fn parse(expr: &str) -> Result<Self, String> {
        croner::Cron::from_str(expr.trim())
            .map(Self)
            .map_err(|e| format!("schedule {expr:?} is not a cron expression: {e}"))
    }

    /// The first time strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let at = chrono::DateTime::from_timestamp(t.as_second(), 0)?;
        let next = self.0.find_next_occurrence(&at, false).ok()?;
        Timestamp::from_second(next.timestamp()).ok()
    }

    /// The latest scheduled time in `(after, now]`, if any: the run that is due.
    pub fn due(&self, after: Timestamp, now: Timestamp) -> Option<Timestamp> {
        let mut due = None;
        let mut t = after;
        // Bounded: a schedule every minute missed for a week is 10,080 steps; beyond that
        // only the latest missed time matters, so start a day before now.
        if now.as_second() - after.as_second() > 7 * 86_400 {
            t = now
                .checked_sub(SignedDuration::from_hours(24))
                .unwrap_or(after);
        }
        for _ in 0..20_000 {
            match self.next_after(t) {
                Some(next) if next <= now => {
                    due = Some(next);
                    t = next;
                }
                _ => break,
            }
        }
        due
    }
}

/// The backup a schedule makes for the run at `at`: `<schedule>-<yyyymmddhhmm>`.
pub fn backup_name(schedule: &str, at: Timestamp) -> String {
    let stamp = at.strftime("%Y%m%d%H%M").to_string();
    let keep = 253usize.saturating_sub(stamp.len() + 1);
    let prefix: String = schedule.chars().take(keep).collect();
    format!("{prefix}-{stamp}")
}

/// A backup of the schedule, as retention sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Existing {
    /// Its name.
    pub name: String,
    /// When it was created.
    pub created: Timestamp,
    /// Its phase.
    pub phase: Option<BackupPhase>,
}

/// What retention keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keep {
    /// Completed backups, newest first.
    pub last: usize,
    /// Completed backups younger than this (the newest completed one always stays).
    pub within: Option<SignedDuration>,
    /// Failed backups, newest first.
    pub failed: usize,
}

/// The backups to delete. Never one still Pending or Running, never the newest Completed.
pub fn to_delete(existing: &[Existing], keep: Keep, now: Timestamp) -> Vec<String> {
    let mut newest_first: Vec<&Existing> = existing.iter().collect();
    newest_first.sort_by(|a, b| b.created.cmp(&a.created).then(b.name.cmp(&a.name)));
    let mut out = Vec::new();
    let completed = newest_first
        .iter()
        .filter(|b| b.phase == Some(BackupPhase::Completed));
    for (i, b) in completed.enumerate() {
        let too_old = keep
            .within
            .is_some_and(|w| now.duration_since(b.created) > w);
        if i > 0 && (i >= keep.last.max(1) || too_old) {
            out.push(b.name.clone());
        }
    }
    let failed = newest_first
        .iter()
        .filter(|b| b.phase == Some(BackupPhase::Failed));
    out.extend(failed.skip(keep.failed).map(|b| b.name.clone()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn schedules_fire_at_their_times() {
        let daily = Schedule::parse("0 3 * * *").unwrap();
        assert_eq!(
            daily.next_after(t("2026-12-05T02:59:59Z")),
            Some(t("2026-12-05T03:00:00Z"))
        );
        assert_eq!(
            daily.next_after(t("2026-12-05T03:00:00Z")),
            Some(t("2026-12-06T03:00:00Z"))
        );
        let every = Schedule::parse("*/5 * * * *").unwrap();
        assert_eq!(
            every.next_after(t("2026-12-05T10:07:00Z")),
            Some(t("2026-12-05T10:10:00Z"))
        );
        assert!(Schedule::parse("@hourly").is_ok());
        assert!(
            Schedule::parse("0 3 * *")
                .unwrap_err()
                .contains("not a cron expression")
        );
        assert!(Schedule::parse("61 * * * *").is_err());
    }

    #[test]
    fn missed_runs_make_one_backup_for_the_latest() {
        let every = Schedule::parse("*/5 * * * *").unwrap();
        let created = t("2026-12-05T10:00:30Z");
        assert_eq!(every.due(created, t("2026-12-05T10:04:59Z")), None);
        assert_eq!(
            every.due(created, t("2026-12-05T10:05:00Z")),
            Some(t("2026-12-05T10:05:00Z"))
        );
        // Down for an hour: one run, the latest.
        assert_eq!(
            every.due(created, t("2026-12-05T11:02:00Z")),
            Some(t("2026-12-05T11:00:00Z"))
        );
        // Down for a month: still the latest, found in bounded time.
        assert_eq!(
            every.due(created, t("2027-01-05T11:02:00Z")),
            Some(t("2027-01-05T11:00:00Z"))
        );
    }

    #[test]
    fn names_come_from_the_scheduled_time() {
        assert_eq!(
            backup_name("nightly", t("2026-12-05T03:00:00Z")),
            "nightly-202612050300"
        );
        assert!(backup_name(&"x".repeat(300), t("2026-12-05T03:00:00Z")).len() <= 253);
    }

    fn b(name: &str, created: &str, phase: BackupPhase) -> Existing {
        Existing {
            name: name.into(),
            created: t(created),
            phase: Some(phase),
        }
    }

    #[test]
    fn retention_keeps_the_newest_and_never_touches_running_ones() {
        use BackupPhase::*;
        let all = vec![
            b("d1", "2026-12-01T03:00:00Z", Completed),
            b("d2", "2026-12-02T03:00:00Z", Completed),
            b("d3", "2026-12-03T03:00:00Z", Failed),
            b("d4", "2026-12-04T03:00:00Z", Completed),
            b("f0", "2026-11-30T03:00:00Z", Failed),
            b("d5", "2026-12-05T03:00:00Z", Running),
        ];
        let now = t("2026-12-05T03:01:00Z");
        let keep = Keep {
            last: 2,
            within: None,
            failed: 1,
        };
        assert_eq!(to_delete(&all, keep, now), ["d1", "f0"]);
        // By age: older than 2 days goes, whatever the count.
        let keep = Keep {
            last: 10,
            within: Some(SignedDuration::from_hours(48)),
            failed: 0,
        };
        assert_eq!(to_delete(&all, keep, now), ["d2", "d1", "d3", "f0"]);
        // The newest completed one stays even when too old.
        let old = vec![b("o1", "2026-01-01T00:00:00Z", Completed)];
        assert!(to_delete(&old, keep, now).is_empty());
    }
}

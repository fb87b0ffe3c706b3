//! The soak's record: a timeline of every step (printed as it happens and again around a round
//! that fails), one line per round, and the final report (the README's table row).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::schedule::{Kind, Round};
use crate::support::ack_writer::Report;
use crate::support::app_client::AppReport;

/// Timestamped steps since the soak's start.
pub struct Timeline {
    begun: Instant,
    entries: Mutex<Vec<(Duration, String)>>,
}

impl Timeline {
    pub fn new() -> Self {
        Self {
            begun: Instant::now(),
            entries: Mutex::new(Vec::new()),
        }
    }

    pub fn now(&self) -> Duration {
        self.begun.elapsed()
    }

    pub fn log(&self, what: impl Into<String>) {
        let at = self.begun.elapsed();
        let what = what.into();
        println!("[soak {:>8.1}s] {what}", at.as_secs_f64());
        if let Ok(mut e) = self.entries.lock() {
            e.push((at, what));
        }
    }

    /// The entries from `from` on, one per line.
    pub fn since(&self, from: Duration) -> String {
        let mut out = String::new();
        if let Ok(e) = self.entries.lock() {
            for (at, what) in e.iter().filter(|(at, _)| *at >= from) {
                let _ = writeln!(out, "  {:>8.1}s {what}", at.as_secs_f64());
            }
        }
        out
    }
}

/// One round as it went.
#[derive(Clone, Debug)]
pub struct RoundRecord {
    pub round: Round,
    /// On the timeline.
    pub from: Duration,
    pub to: Duration,
    /// From the last heal to recovered.
    pub recovered_after: Duration,
    /// Replicas promoted during the round (every cluster).
    pub failovers: u64,
    /// Per cluster: the writer's offsets at the round's start and end (each writer has its
    /// own clock).
    pub writer_windows: Vec<(Duration, Duration)>,
    /// Break-glass annotations the soak gave as an SRE would (QuorumLost after the heal).
    pub break_glass: Vec<String>,
}

impl RoundRecord {
    /// The longest acknowledged-write gap of any tag of any cluster within the round.
    pub fn outage(&self, reports: &[Report]) -> Duration {
        let mut longest = Duration::ZERO;
        for (report, (from, to)) in reports.iter().zip(&self.writer_windows) {
            for tag in &report.tags {
                for g in &tag.long_gaps {
                    if g.to > *from && g.from < *to {
                        longest = longest.max(g.len());
                    }
                }
            }
        }
        longest
    }
}

/// The README table's header (the row is the report's last line).
pub const TABLE_HEADER: &str = "| rounds | faults by kind | recovered | acked-write outage per round p50 / p99 / max | acked writes | acked lost | redis-py errors | redis-py longest stall | seed |";

/// The whole soak.
pub struct SoakReport {
    pub seed: u64,
    pub planned: usize,
    pub rounds: Vec<RoundRecord>,
    pub writers: Vec<(String, Report)>,
    pub app: Option<AppReport>,
    pub duration: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl SoakReport {
    /// Faults by kind over every round (first and second faults).
    pub fn kinds(&self) -> BTreeMap<Kind, usize> {
        let mut by = BTreeMap::new();
        for r in &self.rounds {
            *by.entry(r.round.first.kind).or_default() += 1;
            if let Some((_, s)) = &r.round.second {
                *by.entry(s.kind).or_default() += 1;
            }
        }
        by
    }

    pub fn outages(&self) -> Vec<Duration> {
        let reports: Vec<Report> = self.writers.iter().map(|(_, r)| r.clone()).collect();
        let mut o: Vec<Duration> = self.rounds.iter().map(|r| r.outage(&reports)).collect();
        o.sort();
        o
    }

    /// The report as printed at the end, with the README table's row last.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let outages = self.outages();
        let _ = writeln!(
            out,
            "soak: seed {} — {} of {} rounds recovered in {:.0} s",
            self.seed,
            self.rounds.len(),
            self.planned,
            self.duration.as_secs_f64()
        );
        let kinds: Vec<String> = self
            .kinds()
            .iter()
            .map(|(k, n)| format!("{} {n}", k.name()))
            .collect();
        let _ = writeln!(out, "faults: {}", kinds.join(", "));
        let reports: Vec<Report> = self.writers.iter().map(|(_, r)| r.clone()).collect();
        for r in &self.rounds {
            let _ = writeln!(
                out,
                "  {} | took {:.0} s, recovered {:.1} s after the last heal | write outage {:.2} s | failovers {}",
                r.round,
                (r.to - r.from).as_secs_f64(),
                r.recovered_after.as_secs_f64(),
                r.outage(&reports).as_secs_f64(),
                r.failovers
            );
            for given in &r.break_glass {
                let _ = writeln!(out, "    break-glass given: {given}");
            }
        }
        let (mut acked, mut lost) = (0, 0);
        for (name, report) in &self.writers {
            acked += report.acknowledged();
            lost += report.lost().unwrap_or(0);
            let _ = writeln!(out, "writer {name}:\n{report}");
        }
        if let Some(app) = &self.app {
            let _ = writeln!(out, "redis-py: {}", app.summary());
        }
        let s = |d: Duration| format!("{:.2} s", d.as_secs_f64());
        let (app_errors, app_stall) = match &self.app {
            Some(a) => {
                let classes: Vec<String> =
                    a.errors.iter().map(|(c, n)| format!("{c} {n}")).collect();
                (
                    format!(
                        "{} of {} ops ({})",
                        a.error_count(),
                        a.ops,
                        classes.join(", ")
                    ),
                    format!("{:.1} s", a.longest_stall_s),
                )
            }
            None => ("-".into(), "-".into()),
        };
        let _ = writeln!(out, "{}", TABLE_HEADER);
        let _ = writeln!(
            out,
            "| {} | {} | {} of {} | {} / {} / {} | {acked} | {lost} | {app_errors} | {app_stall} | {} |",
            self.rounds.len(),
            kinds.join(", "),
            self.rounds.len(),
            self.planned,
            s(percentile(&outages, 50.0)),
            s(percentile(&outages, 99.0)),
            s(outages.last().copied().unwrap_or_default()),
            self.seed
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_round_outages() {
        let ms = |v: u64| Duration::from_millis(v);
        let v: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&v, 50.0), ms(50));
        assert_eq!(percentile(&v, 99.0), ms(99));
        assert_eq!(percentile(&v, 100.0), ms(100));
        assert_eq!(percentile(&[ms(7)], 99.0), ms(7));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }
}

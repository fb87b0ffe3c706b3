//! The soak's plan, pure: from a seed, every round's moment and its one or two faults. The same
//! seed and round count always give the same sequence (the PRNG is SplitMix64, written out here
//! so that no library upgrade can change a published seed's meaning).
//!
//! What a fault hits is fixed here as far as it can be without seeing the cluster: its kind,
//! durations, zones and a `pick` number; at run time `pick` chooses among the members that
//! match the fault's role, sorted by pod name, so a seed replays the same faults on the same
//! layout.

use std::fmt;

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough to draw faults.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with `pct` percent.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.next_u64() % 100 < pct
    }

    /// One of `items`, each as likely as its weight.
    pub fn weighted<T: Copy>(&mut self, items: &[(T, u64)]) -> T {
        let total: u64 = items.iter().map(|(_, w)| w).sum();
        let mut at = self.next_u64() % total.max(1);
        for (item, w) in items {
            if at < *w {
                return *item;
            }
            at -= w;
        }
        items[items.len() - 1].0
    }
}

/// Which member a member fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Leader,
    Follower,
}

/// The kinds of fault, for weights, filters (`SOAK_FAULTS`) and the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    DeletePod,
    ForceDeletePod,
    KillRedis,
    PauseRedis,
    NodeCrash,
    NodePartition,
    ZoneCrash,
    ZonePartition,
    LinkDegrade,
    OperatorKill,
    OperatorPause,
    ApiServerDown,
    DiskFull,
    Drain,
    UpgradeWave,
}

impl Kind {
    pub const ALL: [Kind; 15] = [
        Kind::DeletePod,
        Kind::ForceDeletePod,
        Kind::KillRedis,
        Kind::PauseRedis,
        Kind::NodeCrash,
        Kind::NodePartition,
        Kind::ZoneCrash,
        Kind::ZonePartition,
        Kind::LinkDegrade,
        Kind::OperatorKill,
        Kind::OperatorPause,
        Kind::ApiServerDown,
        Kind::DiskFull,
        Kind::Drain,
        Kind::UpgradeWave,
    ];

    /// How often it is drawn as a round's first fault, relative to the others.
    fn weight(self) -> u64 {
        match self {
            Kind::DeletePod | Kind::KillRedis | Kind::PauseRedis => 8,
            Kind::ForceDeletePod | Kind::NodeCrash | Kind::NodePartition => 6,
            Kind::LinkDegrade | Kind::OperatorKill | Kind::Drain => 6,
            Kind::ZoneCrash | Kind::ZonePartition => 5,
            Kind::OperatorPause | Kind::ApiServerDown | Kind::DiskFull => 4,
            Kind::UpgradeWave => 1,
        }
    }

    /// A fault that can come second: one that hits no other zone than the first fault's
    /// (member faults are confined to it at run time) or hits no member at all. Two crashes in
    /// two zones can take both members of an F=1 shard, a loss Redis cannot avoid beyond what
    /// its disk holds; the soak keeps those apart (the zone tests cover DataLoss on purpose).
    fn can_come_second(self) -> bool {
        matches!(
            self,
            Kind::DeletePod
                | Kind::ForceDeletePod
                | Kind::KillRedis
                | Kind::PauseRedis
                | Kind::LinkDegrade
                | Kind::OperatorKill
                | Kind::OperatorPause
                | Kind::ApiServerDown
        )
    }

    /// Needs the API server to be injected (a Pod delete, a drain, the PVC of a member).
    fn needs_api(self) -> bool {
        matches!(
            self,
            Kind::DeletePod
                | Kind::ForceDeletePod
                | Kind::Drain
                | Kind::UpgradeWave
                | Kind::DiskFull
        )
    }

    /// Its name in `SOAK_FAULTS` and the report.
    pub fn name(self) -> &'static str {
        match self {
            Kind::DeletePod => "pod-delete",
            Kind::ForceDeletePod => "pod-force-delete",
            Kind::KillRedis => "redis-sigkill",
            Kind::PauseRedis => "redis-sigstop",
            Kind::NodeCrash => "node-crash",
            Kind::NodePartition => "node-partition",
            Kind::ZoneCrash => "zone-crash",
            Kind::ZonePartition => "zone-partition",
            Kind::LinkDegrade => "zone-link-degrade",
            Kind::OperatorKill => "operator-sigkill",
            Kind::OperatorPause => "operator-sigstop",
            Kind::ApiServerDown => "apiserver-down",
            Kind::DiskFull => "disk-full",
            Kind::Drain => "drain",
            Kind::UpgradeWave => "upgrade-wave",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// One fault, with everything the seed decides about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub kind: Kind,
    /// Member faults: leader or follower.
    pub role: Role,
    /// Which of the matching members (modulo their count, sorted by pod name), or which zone
    /// (modulo the zones).
    pub pick: u64,
    /// The second zone of a link degradation (modulo the zones, never the first).
    pub pick2: u64,
    /// How long the fault holds before it is healed (0: instantaneous).
    pub hold_secs: u64,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind.name())?;
        if is_member_fault(self.kind) {
            write!(f, " {:?}#{}", self.role, self.pick)?;
        }
        if self.hold_secs > 0 {
            write!(f, " for {} s", self.hold_secs)?;
        }
        Ok(())
    }
}

/// Faults aimed at one member (or its node, its volume).
pub fn is_member_fault(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::DeletePod
            | Kind::ForceDeletePod
            | Kind::KillRedis
            | Kind::PauseRedis
            | Kind::NodeCrash
            | Kind::NodePartition
            | Kind::DiskFull
            | Kind::Drain
    )
}

/// When in the cluster's life the round's first fault lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Moment {
    /// From a healthy, settled cluster.
    Healthy,
    /// The second fault lands while the first one's recovery runs.
    MidRecovery,
    /// A rolling update (a restart-only config key changed) has been started `lead_secs` before.
    MidRollout,
    /// A leader-count change (online reshard) has been started `lead_secs` before.
    MidReshard,
}

/// One round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Round {
    pub index: usize,
    pub moment: Moment,
    /// Seconds between the spec change (rollout, reshard) and the first fault.
    pub lead_secs: u64,
    /// Which cluster member faults, rollouts and reshards aim at (modulo the clusters).
    pub cluster: u64,
    pub first: Fault,
    /// A second fault and the seconds after the first one's injection (MidRecovery: after the
    /// first one is healed) at which it lands.
    pub second: Option<(u64, Fault)>,
}

impl fmt::Display for Round {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "round {} {:?}", self.index, self.moment)?;
        if matches!(self.moment, Moment::MidRollout | Moment::MidReshard) {
            write!(f, " (+{} s)", self.lead_secs)?;
        }
        write!(f, " cluster#{}: {}", self.cluster, self.first)?;
        if let Some((after, second)) = &self.second {
            let when = if self.moment == Moment::MidRecovery {
                "after its heal"
            } else {
                "after it"
            };
            write!(f, ", then {after} s {when}: {second}")?;
        }
        Ok(())
    }
}

/// The soak's plan for `rounds` rounds from `seed`, drawing only `kinds` (none: every kind).
pub fn plan(seed: u64, rounds: usize, kinds: &[Kind]) -> Vec<Round> {
    let allowed: Vec<Kind> = if kinds.is_empty() {
        Kind::ALL.to_vec()
    } else {
        kinds.to_vec()
    };
    let mut rng = Rng::new(seed);
    (0..rounds)
        .map(|index| round(&mut rng, index, &allowed))
        .collect()
}

fn round(rng: &mut Rng, index: usize, allowed: &[Kind]) -> Round {
    let firsts: Vec<(Kind, u64)> = allowed.iter().map(|k| (*k, k.weight())).collect();
    let kind = rng.weighted(&firsts);
    let first = fault(rng, kind);
    let seconds: Vec<(Kind, u64)> = allowed
        .iter()
        .filter(|k| k.can_come_second() && !(first.kind == Kind::ApiServerDown && k.needs_api()))
        .map(|k| (*k, k.weight()))
        .collect();
    let moment = rng.weighted(&[
        (Moment::Healthy, 4),
        (Moment::MidRecovery, 2),
        (Moment::MidRollout, 2),
        (Moment::MidReshard, 2),
    ]);
    // An upgrade wave drains every node in turn: it is the whole round by itself.
    let moment = if first.kind == Kind::UpgradeWave || seconds.is_empty() {
        if moment == Moment::MidRecovery {
            Moment::Healthy
        } else {
            moment
        }
    } else {
        moment
    };
    let wants_second = first.kind != Kind::UpgradeWave
        && !seconds.is_empty()
        && (moment == Moment::MidRecovery || rng.chance(30));
    let second = wants_second.then(|| {
        let kind = rng.weighted(&seconds);
        (rng.range(1, 12), fault(rng, kind))
    });
    Round {
        index,
        moment,
        lead_secs: rng.range(2, 20),
        cluster: rng.next_u64(),
        first,
        second,
    }
}

fn fault(rng: &mut Rng, kind: Kind) -> Fault {
    let hold_secs = match kind {
        Kind::DeletePod | Kind::ForceDeletePod | Kind::KillRedis | Kind::Drain => 0,
        Kind::UpgradeWave => 0,
        // Longer than the 5 s node timeout, so Redis fails the paused member over.
        Kind::PauseRedis => rng.range(8, 30),
        Kind::NodeCrash | Kind::NodePartition => rng.range(15, 60),
        Kind::ZoneCrash | Kind::ZonePartition => rng.range(20, 90),
        Kind::LinkDegrade => 60,
        Kind::OperatorKill => rng.range(0, 20),
        Kind::OperatorPause => rng.range(10, 40),
        Kind::ApiServerDown => 30,
        Kind::DiskFull => rng.range(15, 45),
    };
    Fault {
        kind,
        role: if rng.chance(50) {
            Role::Leader
        } else {
            Role::Follower
        },
        pick: rng.next_u64(),
        pick2: rng.next_u64(),
        hold_secs,
    }
}

/// The default seed: today's date as a number (20261205), so each day's `make test` soaks a
/// different sequence and prints it.
pub fn seed_from_date(days_since_epoch: u64) -> u64 {
    let (y, m, d) = civil_from_days(days_since_epoch as i64);
    (y as u64) * 10_000 + (m as u64) * 100 + d as u64
}

/// Howard Hinnant's days → (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = (z - era * 146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe as i64 + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_same_seed_gives_the_same_plan() {
        assert_eq!(plan(42, 200, &[]), plan(42, 200, &[]));
        assert_ne!(plan(42, 50, &[]), plan(43, 50, &[]));
        // A longer run starts with the shorter run's rounds.
        assert_eq!(plan(7, 200, &[])[..100], plan(7, 100, &[])[..]);
    }

    #[test]
    fn splitmix_matches_its_reference_values() {
        // The first outputs for seed 1234567 from the reference implementation.
        let mut r = Rng::new(1_234_567);
        assert_eq!(r.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(r.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn a_hundred_rounds_cover_every_kind_and_moment() {
        let rounds = plan(20_261_205, 100, &[]);
        let firsts: BTreeSet<Kind> = rounds.iter().map(|r| r.first.kind).collect();
        let seconds: BTreeSet<Kind> = rounds
            .iter()
            .filter_map(|r| r.second.as_ref().map(|(_, f)| f.kind))
            .collect();
        let all: BTreeSet<Kind> = firsts.union(&seconds).copied().collect();
        // The upgrade wave is rare by weight; every other kind shows up in 100 rounds.
        let missing: Vec<Kind> = Kind::ALL
            .into_iter()
            .filter(|k| *k != Kind::UpgradeWave && !all.contains(k))
            .collect();
        assert!(missing.is_empty(), "never drawn: {missing:?}");
        let moments: BTreeSet<Moment> = rounds.iter().map(|r| r.moment).collect();
        assert_eq!(moments.len(), 4, "{moments:?}");
        assert!(rounds.iter().filter(|r| r.second.is_some()).count() >= 20);
    }

    #[test]
    fn second_faults_never_hit_another_zone_nor_need_a_stopped_api() {
        for seed in 0..50 {
            for r in plan(seed, 100, &[]) {
                let Some((_, second)) = &r.second else {
                    continue;
                };
                assert!(second.kind.can_come_second(), "{r}");
                assert!(r.first.kind != Kind::UpgradeWave, "{r}");
                if r.first.kind == Kind::ApiServerDown {
                    assert!(!second.kind.needs_api(), "{r}");
                }
                assert!(r.moment != Moment::MidRecovery || r.second.is_some(), "{r}");
            }
        }
    }

    /// make test's short soak on 2026-12-06 drew a pause of the operator landing while a kill
    /// held it down, and stopped with "no operator running". The faults now treat an absent
    /// operator as nothing to pause (replay: SOAK_SEED=20261206 SOAK_ROUNDS=6 with make test's
    /// SOAK_FAULTS); this pins that the seed still draws the overlap the replay exercises.
    #[test]
    fn seed_20261206_pauses_the_operator_while_a_kill_holds_it_down() {
        let short: Vec<Kind> = "pod-delete,pod-force-delete,redis-sigkill,redis-sigstop,operator-sigkill,operator-sigstop,disk-full"
            .split(',')
            .map(|k| Kind::parse(k).unwrap())
            .collect();
        let round = &plan(20261206, 8, &short)[5];
        let (after, second) = round.second.as_ref().expect("two faults");
        assert_eq!(round.first.kind, Kind::OperatorKill, "{round}");
        assert_eq!(second.kind, Kind::OperatorPause, "{round}");
        assert!(*after < round.first.hold_secs, "{round}");
    }

    #[test]
    fn a_filter_draws_only_its_kinds() {
        let only = [Kind::KillRedis, Kind::ZoneCrash];
        for r in plan(9, 100, &only) {
            assert!(only.contains(&r.first.kind), "{r}");
            if let Some((_, s)) = &r.second {
                assert_eq!(s.kind, Kind::KillRedis, "{r}");
            }
        }
        // A filter with nothing that can come second gives single-fault rounds.
        for r in plan(9, 50, &[Kind::ZoneCrash]) {
            assert!(r.second.is_none() && r.moment != Moment::MidRecovery, "{r}");
        }
    }

    #[test]
    fn paused_members_stay_paused_past_the_node_timeout() {
        for r in plan(3, 300, &[Kind::PauseRedis]) {
            assert!(r.first.hold_secs > 5, "{r}");
        }
    }

    #[test]
    fn kinds_round_trip_through_their_names() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.name()), Some(k));
        }
        assert_eq!(Kind::parse("nope"), None);
    }

    #[test]
    fn date_seeds() {
        assert_eq!(seed_from_date(0), 19_700_101);
        // 2026-12-05 is day 20_792 since the epoch.
        assert_eq!(seed_from_date(20_792), 20_261_205);
        assert_eq!(seed_from_date(11_016), 20_000_229);
    }
}

//! Pure: per-shard status (who leads, who follows, in sync, slots) from Pods and Redis views.

use super::conditions::short_zone;
use crate::controller::observe::Observed;
use crate::controller::observe::pods::Member;
use crate::controller::plan::facts::{in_sync, serving_leader};
use crate::crd::{MemberStatus, ShardStatus};

/// Shard statuses for shards `0..leaders`, leader first as Redis reports it.
pub fn shards(
    obs: &Observed,
    live: &[&Member],
    zone_of: &dyn Fn(&str) -> String,
    leaders: i32,
) -> Vec<ShardStatus> {
    let count = usize::try_from(leaders).unwrap_or(0);
    (0..count)
        .filter_map(|index| {
            let in_shard: Vec<&&Member> = live.iter().filter(|m| m.shard == index).collect();
            if in_shard.is_empty() {
                return None;
            }
            let view_of = |m: &Member| obs.view_of(m);
            // Who leads, by the one definition, among the shard's live members.
            let leader_view = serving_leader(in_shard.iter().filter_map(|m| view_of(m)));
            let leader = in_shard
                .iter()
                .find(|m| leader_view.is_some_and(|l| view_of(m).is_some_and(|v| v.id() == l.id())))
                .copied();
            let status_of = |m: &Member| {
                let view = view_of(m);
                let node = m.node().unwrap_or_default().to_string();
                MemberStatus {
                    pod: m.name().to_string(),
                    zone: zone_of(&node),
                    node,
                    node_id: view.map(|v| v.id().to_string()).unwrap_or_default(),
                    in_sync: match (view, leader_view) {
                        (Some(v), Some(l)) if v.id() != l.id() => {
                            v.master_id() == Some(l.id()) && in_sync(v, l)
                        }
                        _ => false,
                    },
                }
            };
            let slots = leader_view
                .map(|v| {
                    v.slots()
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            Some(ShardStatus {
                index: i32::try_from(index).unwrap_or(i32::MAX),
                slots,
                leader: leader.map(|m| status_of(m)),
                followers: in_shard
                    .iter()
                    .filter(|m| leader.is_none_or(|l| l.name() != m.name()))
                    .map(|m| status_of(m))
                    .collect(),
            })
        })
        .collect()
}

/// Whether losing any one zone would still leave a majority of leaders, and every shard a
/// follower in another zone to promote, computed from where Redis says the leaders are now
/// (not from the plan): false while a shard has no leader.
pub fn zone_loss_safe(shards: &[ShardStatus], leaders: i32) -> bool {
    let want = usize::try_from(leaders).unwrap_or(0);
    let led: Vec<&ShardStatus> = shards.iter().filter(|s| s.leader.is_some()).collect();
    if led.len() < want || want == 0 {
        return false;
    }
    let majority = want / 2 + 1;
    let mut per_zone: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for s in &led {
        if let Some(l) = &s.leader {
            if l.zone.is_empty() {
                return false;
            }
            *per_zone.entry(l.zone.as_str()).or_default() += 1;
        }
    }
    let leaders_survive = per_zone.values().all(|n| want - n >= majority);
    let shards_survive = led.iter().all(|s| {
        s.leader.as_ref().is_some_and(|l| {
            s.followers
                .iter()
                .any(|f| f.in_sync && !f.zone.is_empty() && f.zone != l.zone)
        })
    });
    leaders_survive && shards_survive
}

/// `s0:a/b s1:b/c`: per shard the leader's zone, then the followers' zones (`?` for unknown,
/// `-` when the shard has no leader yet).
pub fn compact_placement(shards: &[ShardStatus]) -> String {
    shards
        .iter()
        .map(|s| {
            let zone = |m: &MemberStatus| {
                if m.zone.is_empty() {
                    "?".to_string()
                } else {
                    short_zone(&m.zone).to_string()
                }
            };
            let mut parts = vec![
                s.leader
                    .as_ref()
                    .map(zone)
                    .unwrap_or_else(|| "-".to_string()),
            ];
            parts.extend(s.followers.iter().map(zone));
            format!("s{}:{}", s.index, parts.join("/"))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(zone: &str) -> MemberStatus {
        MemberStatus {
            zone: zone.into(),
            ..MemberStatus::default()
        }
    }

    #[test]
    fn compact_placement_lists_leader_then_followers() {
        let shards = vec![
            ShardStatus {
                index: 0,
                leader: Some(member("zone-a")),
                followers: vec![member("zone-b")],
                ..ShardStatus::default()
            },
            ShardStatus {
                index: 1,
                leader: None,
                followers: vec![member("zone-c"), member("")],
                ..ShardStatus::default()
            },
        ];
        assert_eq!(compact_placement(&shards), "s0:a/b s1:-/c/?");
    }
}

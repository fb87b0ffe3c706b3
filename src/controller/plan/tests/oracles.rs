//! The cheaper lookups of the reconcile-cost work against the definitions they replaced (kept
//! here as oracles), on generated clusters perturbed at random: members silent, Pods deleted
//! or finished, addresses shared, identities forgotten.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::fixture::*;
use crate::controller::observe::Observed;
use crate::controller::observe::pods::Member;
use crate::controller::plan::facts::health::distinct_owners;
use crate::controller::plan::facts::shard_of;
use crate::redis::ids::NodeId;

/// The old `Observed::member_with_id`, verbatim.
fn oracle_member_with_id<'a>(obs: &'a Observed, id: &NodeId) -> Option<&'a Member> {
    obs.members
        .iter()
        .find(|m| obs.view_of(m).is_some_and(|v| v.id() == id))
}

/// What can happen to one member of the generated cluster.
#[derive(Debug, Clone, Copy)]
enum Fate {
    Fine,
    Silent,
    PodGone,
    Deleting,
    /// It takes the address of the member before it (IP reuse).
    SharesAddress,
    Forgotten,
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        4 => Just(Fate::Fine),
        1 => Just(Fate::Silent),
        1 => Just(Fate::PodGone),
        1 => Just(Fate::Deleting),
        1 => Just(Fate::SharesAddress),
        1 => Just(Fate::Forgotten),
    ]
}

fn perturbed(leaders: usize, followers: usize, fates: &[Fate]) -> Observed {
    let mut fx = sized(leaders, followers);
    for (i, f) in fates.iter().enumerate().take(fx.members.len()) {
        let before = i.checked_sub(1).map(|j| fx.members[j].ip.clone());
        let m = &mut fx.members[i];
        match f {
            Fate::Fine => {}
            Fate::Silent => m.answers = false,
            Fate::PodGone => m.pod = None,
            Fate::Deleting => m.pod = Some(PodState::Deleting(5)),
            Fate::SharesAddress => {
                if let Some(ip) = before {
                    m.ip = ip;
                }
            }
            Fate::Forgotten => {
                m.answers = false;
                m.offset = u64::MAX;
            }
        }
    }
    fx.observed()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn member_with_id_and_owner_shards_are_the_old_ones(
        leaders in 1usize..6,
        followers in 0usize..3,
        fates in proptest::collection::vec(fate(), 18),
    ) {
        let obs = perturbed(leaders, followers, &fates);
        let mut ids: Vec<NodeId> = obs.view.known_ids().into_iter().collect();
        ids.push("f".repeat(40).parse().unwrap());
        for id in &ids {
            let old = oracle_member_with_id(&obs, id).map(Member::name);
            prop_assert_eq!(obs.member_with_id(id).map(Member::name), old, "{}", id);
        }
        let owners = obs.view.slot_owners();
        let old: BTreeSet<Option<usize>> =
            owners.iter().flatten().map(|id| shard_of(&obs, id)).collect();
        let new: BTreeSet<Option<usize>> =
            distinct_owners(&owners).into_iter().map(|id| shard_of(&obs, id)).collect();
        prop_assert_eq!(new, old);
        let all: BTreeSet<&NodeId> = owners.iter().flatten().collect();
        prop_assert_eq!(distinct_owners(&owners), all);
    }
}

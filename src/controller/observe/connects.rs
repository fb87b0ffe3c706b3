//! How long to wait for a member's connection this pass. A member on a dead node black-holes
//! the SYN, so without this every pass waited the full connect timeout ([`FULL`]) for it, and
//! since members are observed side by side that wait was the whole pass's wall time. A member
//! whose connect timed out on the last pass (or found no route to its host) gets [`SHORT`]
//! instead, and the full timeout again every [`RETRY_FULL`], so one that is slow to connect
//! but alive is not lost for good.
//!
//! This only bounds how long the operator waits; it decides nothing. A member that does not
//! answer is "not answering" this pass either way (as it was after the full timeout), and
//! whether it is dead is judged from Kubernetes and the voting masters' own views
//! ([`crate::controller::plan::facts::gone`]), never from the operator's reachability. The
//! memory lives in the process only: an operator restart forgets it, and the first pass waits
//! the full timeout again.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::redis::RedisError;
use crate::redis::model::Unreachable;

/// The admin connection's connect timeout: a connection inside a cluster network takes
/// milliseconds, so a member that does not connect within it is treated as down for the pass.
pub const FULL: Duration = Duration::from_secs(1);
/// The limit for a member whose connect timed out on the last pass (its node is likely dead).
/// Still generous: a live member's TCP handshake is done by its kernel in about a millisecond.
pub const SHORT: Duration = Duration::from_millis(200);
/// How often such a member is given the full timeout again.
pub const RETRY_FULL: Duration = Duration::from_secs(10);

/// The limits for the operations of this pass's step ([`crate::redis::ClusterAdmin`]): the
/// members whose connect timed out or found no host in this pass's observation get
/// [`SHORT`]. The step's own observations come within a second of it, so a member silent
/// then is very likely still.
pub fn for_step(unreachable: &[Unreachable]) -> BTreeMap<SocketAddr, Duration> {
    unreachable
        .iter()
        .filter(|u| no_host(&u.error))
        .map(|u| (u.addr, SHORT))
        .collect()
}

/// Whether a connect failed because nothing is there to answer: it timed out, or the
/// network said the host is unreachable. The next connect to a dead node's address may wait
/// the whole timeout again, for an ARP reply that never comes (`No route to host` came after
/// 1 s in a zone crash, in a step right after a pass that had it at once). A refused connect
/// is a live host answering, and is not counted.
fn no_host(error: &RedisError) -> bool {
    match error {
        RedisError::ConnectTimeout { .. } => true,
        RedisError::Connect { source, .. } => matches!(
            source.kind(),
            std::io::ErrorKind::HostUnreachable | std::io::ErrorKind::NetworkUnreachable
        ),
        _ => false,
    }
}

/// One cluster's members whose connect timed out on the last pass, with when each was last
/// given the full timeout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Silent {
    since_full: BTreeMap<SocketAddr, Instant>,
}

impl Silent {
    /// The connect limit of each address this pass that does not get the full timeout.
    pub fn limits(&self, now: Instant) -> BTreeMap<SocketAddr, Duration> {
        self.since_full
            .iter()
            .filter(|(_, full)| now.saturating_duration_since(**full) < RETRY_FULL)
            .map(|(addr, _)| (*addr, SHORT))
            .collect()
    }

    /// What to remember after a pass that used `limits` ([`Silent::limits`]) at `now`: the
    /// addresses whose connect timed out, and when each last had the full timeout. Anything
    /// else (an answer, a refusal, a command timeout) forgets the address; so does an address
    /// no longer observed.
    pub fn after(
        &self,
        limits: &BTreeMap<SocketAddr, Duration>,
        unreachable: &[Unreachable],
        now: Instant,
    ) -> Self {
        let since_full = unreachable
            .iter()
            .filter(|u| no_host(&u.error))
            .map(|u| {
                let full = match (limits.contains_key(&u.addr), self.since_full.get(&u.addr)) {
                    (true, Some(at)) => *at,
                    _ => now,
                };
                (u.addr, full)
            })
            .collect();
        Self { since_full }
    }
}

/// [`Silent`] of every cluster this process reconciles, by `namespace/name`. Shared by the
/// reconciles (one per cluster at a time, so no two passes of a cluster race on it).
#[derive(Debug, Clone, Default)]
pub struct ConnectMemory(Arc<Mutex<BTreeMap<String, Silent>>>);

impl ConnectMemory {
    /// What the last pass of cluster `key` left.
    pub fn get(&self, key: &str) -> Silent {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(key).cloned().unwrap_or_default()
    }

    /// Remembers this pass of cluster `key` (an empty memory is dropped).
    pub fn put(&self, key: &str, silent: Silent) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if silent == Silent::default() {
            map.remove(key);
        } else {
            map.insert(key.to_string(), silent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, n], 6379))
    }

    fn timed_out(n: u8, after: Duration) -> Unreachable {
        Unreachable {
            addr: addr(n),
            error: RedisError::ConnectTimeout {
                addr: addr(n),
                after,
            },
        }
    }

    fn connect_failed(n: u8, kind: std::io::ErrorKind) -> Unreachable {
        Unreachable {
            addr: addr(n),
            error: RedisError::Connect {
                addr: addr(n),
                source: std::io::Error::from(kind),
            },
        }
    }

    #[test]
    fn a_step_waits_briefly_only_for_members_whose_connect_just_timed_out() {
        let closed = Unreachable {
            addr: addr(2),
            error: RedisError::Closed { addr: addr(2) },
        };
        let limits = for_step(&[
            timed_out(1, FULL),
            closed,
            connect_failed(3, std::io::ErrorKind::HostUnreachable),
            connect_failed(4, std::io::ErrorKind::ConnectionRefused),
            connect_failed(5, std::io::ErrorKind::NetworkUnreachable),
        ]);
        // No host behind 3 and 5 either: their next connect may wait for ARP. 4 refused: a
        // live host answered.
        assert_eq!(
            limits,
            BTreeMap::from([(addr(1), SHORT), (addr(3), SHORT), (addr(5), SHORT)])
        );
        let silent = Silent::default().after(
            &BTreeMap::new(),
            &[connect_failed(3, std::io::ErrorKind::HostUnreachable)],
            Instant::now(),
        );
        assert_eq!(
            silent.limits(Instant::now()),
            BTreeMap::from([(addr(3), SHORT)])
        );
    }

    #[test]
    fn a_dead_member_waits_the_full_timeout_once_then_briefly_then_fully_every_ten_seconds() {
        let t0 = Instant::now();
        let mut silent = Silent::default();
        // First pass: nothing known, everyone gets the full timeout; member 1 times out.
        let limits = silent.limits(t0);
        assert!(limits.is_empty());
        silent = silent.after(&limits, &[timed_out(1, FULL)], t0);
        // Next passes within 10 s: the short limit for it, the full one for the others.
        let mut t = t0;
        for _ in 0..9 {
            t += Duration::from_secs(1);
            let limits = silent.limits(t);
            assert_eq!(limits, BTreeMap::from([(addr(1), SHORT)]), "{t:?}");
            silent = silent.after(&limits, &[timed_out(1, SHORT)], t);
        }
        // Ten seconds after its last full try: the full timeout again.
        t = t0 + RETRY_FULL;
        let limits = silent.limits(t);
        assert!(limits.is_empty());
        silent = silent.after(&limits, &[timed_out(1, FULL)], t);
        assert_eq!(
            silent.limits(t + Duration::from_secs(1)),
            BTreeMap::from([(addr(1), SHORT)])
        );
    }

    #[test]
    fn an_answer_or_any_other_failure_forgets_the_member() {
        let t0 = Instant::now();
        let silent = Silent::default().after(&BTreeMap::new(), &[timed_out(1, FULL)], t0);
        let t1 = t0 + Duration::from_secs(1);
        let limits = silent.limits(t1);
        // It answered (it is in no unreachable list): the full timeout from now on.
        assert_eq!(silent.after(&limits, &[], t1), Silent::default());
        // Refused (its node is up, nothing listens): not a black hole, forgotten too.
        let refused = Unreachable {
            addr: addr(1),
            error: RedisError::Closed { addr: addr(1) },
        };
        assert_eq!(silent.after(&limits, &[refused], t1), Silent::default());
        // A command timeout (connected, then silent: paused, overloaded) is no connect
        // timeout: the full limit stays.
        let slow = Unreachable {
            addr: addr(1),
            error: RedisError::Timeout {
                addr: addr(1),
                command: "PING".into(),
                after: FULL,
            },
        };
        assert!(silent.after(&limits, &[slow], t1).limits(t1).is_empty());
    }

    #[test]
    fn the_memory_is_per_cluster_and_a_lost_one_means_the_full_timeout() {
        let memory = ConnectMemory::default();
        let t0 = Instant::now();
        let silent = Silent::default().after(&BTreeMap::new(), &[timed_out(1, FULL)], t0);
        memory.put("ns/a", silent.clone());
        assert_eq!(memory.get("ns/a"), silent);
        assert_eq!(memory.get("ns/b"), Silent::default());
        memory.put("ns/a", Silent::default());
        assert_eq!(memory.get("ns/a"), Silent::default());
        // A restarted operator knows nothing: the full timeout for everyone.
        assert!(ConnectMemory::default().get("ns/a").limits(t0).is_empty());
    }

    /// The observation's wall time per pass with one member's node dead, with and without
    /// this memory: `hack/bench-reconcile.sh` (run by `make bench-reconcile`) starts
    /// redis-servers in a network namespace of its own, where an nftables rule drops every
    /// packet to `COST_DEAD` (a black-holed SYN, as from a dead node), and runs this there. Real TCP, real Redis (`COST_LIVE`), the operator's timeouts.
    #[tokio::test]
    #[ignore = "a benchmark: make bench-reconcile (needs hack/bench-reconcile.sh's namespace)"]
    async fn connect_wall() {
        use crate::redis::client::{self, AdminOptions, Timeouts};
        use crate::redis::model;
        let addrs = |var: &str| -> Vec<SocketAddr> {
            std::env::var(var)
                .unwrap_or_default()
                .split(',')
                .filter_map(|a| a.parse().ok())
                .collect()
        };
        let (live, dead) = (addrs("COST_LIVE"), addrs("COST_DEAD"));
        assert!(
            !live.is_empty() && dead.len() == 1,
            "run hack/bench-reconcile.sh"
        );
        let all: Vec<SocketAddr> = live.iter().chain(&dead).copied().collect();
        let options = AdminOptions {
            auth: Some(client::Auth {
                username: None,
                password: std::env::var("COST_PASSWORD").unwrap_or_default(),
            }),
            timeouts: Timeouts {
                connect: FULL,
                command: Duration::from_secs(5),
                ..Timeouts::default()
            },
            tls: None,
        };
        println!("\n| connect limits | passes | wall per pass: median | max | answering |");
        println!("|---|---|---|---|---|");
        for remember in [false, true] {
            let mut silent = Silent::default();
            let mut walls = Vec::new();
            let mut answering = 0;
            for _ in 0..25 {
                let started = Instant::now();
                let limits = if remember {
                    silent.limits(started)
                } else {
                    BTreeMap::new()
                };
                let view = model::observe_limited(&all, &options, &limits).await;
                walls.push(started.elapsed());
                answering = view.nodes.len();
                assert!(view.unreachable.iter().all(|u| dead.contains(&u.addr)));
                silent = silent.after(&limits, &view.unreachable, started);
                // The degraded requeue: the next pass a second later.
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            walls.sort();
            println!(
                "| {} | {} | {} ms | {} ms | {answering} of {} |",
                if remember {
                    "shortened after a timeout (this work)"
                } else {
                    "always 1 s (before)"
                },
                walls.len(),
                walls[walls.len() / 2].as_millis(),
                walls[walls.len() - 1].as_millis(),
                all.len()
            );
        }
    }
}

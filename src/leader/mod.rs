//! Leader election on a `coordination.k8s.io/v1` Lease: of all replicas, only the holder acts.
//!
//! # Why our own elector and not kube-lease-manager
//! kube-lease-manager 0.13 builds on kube 5, but it judges expiry by comparing the Lease's
//! `renewTime` (another machine's wall clock) with our `SystemTime`, renews with patches that are
//! not guarded by `resourceVersion`, and reports leadership as a `watch::Receiver<bool>` that
//! stays `true` until its task runs again. A leader paused (SIGSTOP) past its lease would read
//! `true` on resume until that task noticed. The guarantee this operator needs is stronger and
//! simple to state, so it is implemented here in a few hundred lines on the plain Lease API,
//! the way client-go's leaderelection does it:
//!
//! * every write is a `replace` carrying the `resourceVersion` that was read, so two
//!   candidates can never both win a round (the API server answers 409 Conflict to the
//!   loser: optimistic concurrency);
//! * a standby takes over only after it has seen the *same* record for the holder's whole
//!   lease duration on its own monotonic clock (no clock agreement between machines needed);
//! * the leader may act until `start of its last successful renewal + renew deadline`
//!   (10 s < 15 s), checked against [`Instant`] (`CLOCK_MONOTONIC`, which keeps running while a
//!   process is stopped). So a leader that cannot renew stops before any standby may start,
//!   and a leader resumed after a long pause sees [`Leadership::may_act`] false at once, before
//!   any renewal attempt or API call.
//!
//! # Losing the lease ends the process
//! A replica that led and lost the Lease (deadline passed, or another holder seen) returns
//! [`Lost`] from [`Elector::run`]; `redis-operator run` then exits non-zero and the kubelet
//! restarts it as a clean standby (as client-go based controllers do). No reconcile of the
//! old term can continue: its in-memory state is gone with the process. Before the exit,
//! `may_act()` is already false, so nothing acts in between.
//!
//! On SIGTERM the leader finishes its running reconciles, then releases the Lease (empty
//! holder), so a standby takes over within one retry period during a rolling update instead
//! of waiting a lease duration.

pub mod state;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::Stream;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use state::{LeaseState, Step, Timing};

/// Whether this replica may act now. Cheap to clone and to check (one atomic load and a clock
/// read); every clone sees the elector's latest renewal.
#[derive(Clone, Debug)]
pub struct Leadership {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    identity: String,
    mode: Mode,
}

#[derive(Debug)]
enum Mode {
    /// `--leader-election=false`: a single replica (or one per namespace, as the e2e tests run
    /// it) that always may act.
    Always,
    /// Elected: may act while `now < base + valid_until` (nanoseconds; 0 = not the leader).
    Elected {
        base: Instant,
        valid_until: AtomicU64,
    },
}

impl Leadership {
    /// A leadership that always may act: leader election off.
    pub fn always(identity: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                identity: identity.into(),
                mode: Mode::Always,
            }),
        }
    }

    fn elected(identity: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                identity: identity.into(),
                mode: Mode::Elected {
                    base: Instant::now(),
                    valid_until: AtomicU64::new(0),
                },
            }),
        }
    }

    /// True while this replica holds the Lease and its renew deadline has not passed (always
    /// true with leader election off). Check it right before acting and before every write.
    pub fn may_act(&self) -> bool {
        match &self.inner.mode {
            Mode::Always => true,
            Mode::Elected { base, valid_until } => {
                let until = valid_until.load(Ordering::Acquire);
                until != 0 && nanos_since(*base, Instant::now()) < until
            }
        }
    }

    /// This replica's identity: the Lease holder name, the Events' reporting instance.
    pub fn identity(&self) -> &str {
        &self.inner.identity
    }

    /// Whether leader election is on.
    pub fn is_elected(&self) -> bool {
        matches!(self.inner.mode, Mode::Elected { .. })
    }

    fn set_valid_until(&self, until: Option<Instant>) {
        if let Mode::Elected { base, valid_until } = &self.inner.mode {
            let nanos = until.map_or(0, |u| nanos_since(*base, u).max(1));
            valid_until.store(nanos, Ordering::Release);
        }
    }
}

fn nanos_since(base: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX)
}

/// This process's identity: `POD_NAME` (downward API) and a random suffix in a cluster
/// (`redis-operator-7c9f8d-x2kqp_4f1a9c`), else `hostname-pid`.
///
/// Unique per process, as client-go and controller-runtime make it (hostname + UUID): a
/// container of the leading Pod restarted after a crash is a new candidate and waits for the
/// Lease like any standby, so the warm standby takes over (the benchmark's and the e2e's
/// expectation). With the bare Pod name the restarted container would find itself the holder
/// and renew at once; that is safe too (its predecessor is dead), but it would make "who acts
/// after a crash" depend on how fast the kubelet restarts. The Pod name stays the prefix, so
/// Events and logs still name the replica.
pub fn default_identity() -> String {
    if let Ok(pod) = std::env::var("POD_NAME")
        && !pod.is_empty()
    {
        use rand::Rng;
        let suffix: u32 = rand::rng().random_range(0..0x100_0000);
        return format!("{pod}_{suffix:06x}");
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into());
    format!("{host}-{}", std::process::id())
}

/// The elector lost the Lease it held; the process must stop acting (it already has:
/// `may_act()` is false) and exit.
#[derive(Debug, thiserror::Error)]
#[error("lost the leader Lease {namespace}/{name}: {why}")]
pub struct Lost {
    /// Lease namespace.
    pub namespace: String,
    /// Lease name.
    pub name: String,
    /// What happened.
    pub why: String,
}

/// Acquires and renews one Lease and publishes the result to its [`Leadership`].
pub struct Elector {
    api: Api<Lease>,
    namespace: String,
    name: String,
    state: LeaseState,
    leadership: Leadership,
    terms: watch::Sender<u64>,
    led: bool,
    last_holder: Option<String>,
}

impl Elector {
    /// An elector for Lease `namespace/name` under `identity`; returns the leadership handle
    /// the controller checks.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: Timing,
    ) -> (Self, Leadership) {
        let leadership = Leadership::elected(identity);
        let (terms, _) = watch::channel(0);
        let elector = Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.into(),
            name: name.into(),
            state: LeaseState::new(identity, timing),
            leadership: leadership.clone(),
            terms,
            led: false,
            last_holder: None,
        };
        (elector, leadership)
    }

    /// Yields once every time this replica becomes the leader (feed it to
    /// `Controller::reconcile_all_on` so a new leader looks at every cluster at once).
    pub fn acquisitions(&self) -> impl Stream<Item = ()> + Send + 'static {
        let rx = self.terms.subscribe();
        futures::stream::unfold(rx, |mut rx| async move {
            rx.changed().await.ok()?;
            Some(((), rx))
        })
    }

    /// Tries to acquire, then renews, every retry period, until `shutdown` (then releases the
    /// Lease if held) or until the Lease is lost.
    ///
    /// # Errors
    /// [`Lost`] when this replica led and can no longer act; the caller should exit.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), Lost> {
        let timing = self.state.timing();
        // Long enough for a GET and a PUT on a busy API server; short enough that a hung
        // request cannot keep the loop from noticing an expired deadline for long.
        let attempt_timeout = timing.retry_period.max(timing.renew_deadline / 2);
        tracing::info!(lease = %self.lease(), identity = %self.state.identity(), "leader election: trying to acquire the lease");
        loop {
            let started = Instant::now();
            let attempt = tokio::select! {
                r = tokio::time::timeout(attempt_timeout, self.attempt(started)) => r,
                () = shutdown.cancelled() => break,
            };
            match attempt {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(lease = %self.lease(), error = %e, "leader election: lease request failed")
                }
                Err(_) => {
                    tracing::warn!(lease = %self.lease(), "leader election: lease request timed out")
                }
            }
            self.publish()?;
            let pause = match self.state.valid_until() {
                // As leader, wake at the deadline at the latest, to notice a loss at once.
                Some(until) => timing
                    .retry_period
                    .min(until.saturating_duration_since(Instant::now())),
                // As standby, try again right when the holder's record goes stale rather than
                // up to a retry period later: a takeover then takes the lease duration after the
                // last renewal was seen, not that plus a retry period.
                None => match self.state.other_holder_expires_at() {
                    Some(at) => timing.retry_period.min(
                        at.saturating_duration_since(Instant::now()) + Duration::from_millis(20),
                    ),
                    None => timing.retry_period,
                },
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = shutdown.cancelled() => break,
            }
            self.publish()?;
        }
        self.release().await;
        Ok(())
    }

    fn lease(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Publishes our validity to the handle; notices a gained or lost leadership.
    fn publish(&mut self) -> Result<(), Lost> {
        let now = Instant::now();
        let may_act = self.state.may_act(now);
        self.leadership.set_valid_until(if may_act {
            self.state.valid_until()
        } else {
            None
        });
        if may_act && !self.led {
            self.led = true;
            tracing::info!(lease = %self.lease(), identity = %self.state.identity(), "leader election: acquired the lease; this replica acts");
            self.terms.send_modify(|t| *t += 1);
        } else if !may_act && self.led {
            let why = match self.state.observed().and_then(|o| o.holder.clone()) {
                Some(h) if h != self.state.identity() && !h.is_empty() => {
                    format!("{h} holds it now")
                }
                _ => "not renewed within the renew deadline".into(),
            };
            tracing::error!(lease = %self.lease(), identity = %self.state.identity(), %why, "leader election: lost the lease; stopped acting, exiting");
            return Err(Lost {
                namespace: self.namespace.clone(),
                name: self.name.clone(),
                why,
            });
        }
        Ok(())
    }

    /// One round: read the Lease, then create it, claim or renew it, or stay a standby.
    async fn attempt(&mut self, started: Instant) -> Result<(), kube::Error> {
        let current = self.api.get_opt(&self.name).await?;
        let step = self.state.observe(current.as_ref(), Instant::now());
        if let Some(holder) = self.state.observed().and_then(|o| o.holder.clone())
            && self.last_holder.as_deref() != Some(holder.as_str())
        {
            tracing::info!(lease = %self.lease(), %holder, "leader election: lease holder");
            self.last_holder = Some(holder);
        }
        let wall = jiff::Timestamp::now();
        let result = match step {
            Step::Standby { .. } => return Ok(()),
            Step::Create => {
                let mut lease = self.state.desired(None, true, wall);
                lease.metadata = ObjectMeta {
                    name: Some(self.name.clone()),
                    namespace: Some(self.namespace.clone()),
                    ..Default::default()
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Step::Claim { takeover } => {
                let lease = self.state.desired(current.as_ref(), takeover, wall);
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(written) => {
                self.state.written(&written, started);
                Ok(())
            }
            // Someone else wrote (or created) first: we lost this round, read again next time.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                tracing::debug!(lease = %self.lease(), "leader election: lost a write race");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Stops acting, then gives the Lease up if we hold it, so a standby need not wait a lease
    /// duration. Best effort: if it fails, the standby takes over after the lease expires.
    async fn release(&mut self) {
        let held = self.state.may_act(Instant::now());
        self.state.resign();
        self.leadership.set_valid_until(None);
        if !held {
            return;
        }
        let release = async {
            let Some(mut lease) = self.api.get_opt(&self.name).await? else {
                return Ok(());
            };
            let Some(spec) = lease.spec.as_mut() else {
                return Ok(());
            };
            if spec.holder_identity.as_deref() != Some(self.state.identity()) {
                return Ok(());
            }
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                jiff::Timestamp::now(),
            ));
            self.api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
                .map(|_| ())
        };
        match tokio::time::timeout(Duration::from_secs(5), release).await {
            Ok(Ok(())) => {
                tracing::info!(lease = %self.lease(), "leader election: released the lease")
            }
            Ok(Err(e)) => {
                tracing::warn!(lease = %self.lease(), error = %e, "leader election: could not release the lease")
            }
            Err(_) => {
                tracing::warn!(lease = %self.lease(), "leader election: releasing the lease timed out")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn always_may_act() {
        let l = Leadership::always("x");
        assert!(l.may_act());
        assert!(!l.is_elected());
        assert_eq!(l.identity(), "x");
    }

    #[test]
    fn elected_handle_follows_valid_until_on_the_monotonic_clock() {
        let l = Leadership::elected("a");
        assert!(!l.may_act());
        l.set_valid_until(Some(Instant::now() + Duration::from_secs(60)));
        assert!(l.may_act());
        let clone = l.clone();
        l.set_valid_until(Some(Instant::now()));
        assert!(!clone.may_act());
        l.set_valid_until(None);
        assert!(!clone.may_act());
    }

    #[test]
    fn identity_prefers_pod_name() {
        // Only read here, not set: tests run in parallel and share the environment.
        let id = default_identity();
        match std::env::var("POD_NAME") {
            Ok(p) if !p.is_empty() => assert!(id.starts_with(&format!("{p}_")), "{id}"),
            _ => assert!(id.ends_with(&format!("-{}", std::process::id()))),
        }
    }
}

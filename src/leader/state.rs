//! The pure part of leader election: what we know of the Lease and what to do next. No I/O and
//! no clock reads: every function takes `now`, so the state machine is tested with made-up
//! instants.
//!
//! Expiry is judged the way client-go's leaderelection judges it, on the *observer's* monotonic
//! clock and never on the timestamps written in the Lease: a candidate takes a Lease over only
//! after it has seen the same record (same `resourceVersion`) for the holder's whole
//! `leaseDurationSeconds`. Clocks of different machines therefore never need to agree; only
//! their rates must be close.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};

/// Lease duration, renew deadline and retry period (client-go's names and meanings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a standby waits, after the Lease record last changed, before taking it over.
    pub lease_duration: Duration,
    /// How long a leader may act after the *start* of its last successful renewal. Shorter than
    /// `lease_duration`: the difference is the margin for clock-rate drift and for an action
    /// that began just before the deadline.
    pub renew_deadline: Duration,
    /// Pause between two attempts to acquire or renew.
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl Timing {
    /// Checks `retry_period < renew_deadline < lease_duration`, with whole seconds of lease
    /// (the Lease stores seconds).
    ///
    /// # Errors
    /// A sentence naming the rule that is broken.
    pub fn validate(&self) -> Result<(), String> {
        if self.lease_duration.as_secs() == 0 || self.lease_duration.subsec_nanos() != 0 {
            return Err("the lease duration must be a whole number of seconds, at least 1".into());
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err("the retry period must be above 0 and below the renew deadline".into());
        }
        if self.renew_deadline >= self.lease_duration {
            return Err("the renew deadline must be below the lease duration: a leader must stop acting before a standby may take over".into());
        }
        Ok(())
    }

    /// `leaseDurationSeconds` as written in the Lease.
    pub fn lease_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// The Lease record as last read or written, and when it was first seen in that version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// `spec.holderIdentity`; `None` or empty when released.
    pub holder: Option<String>,
    /// `metadata.resourceVersion`: any write changes it.
    pub resource_version: String,
    /// `spec.leaseDurationSeconds` as the holder declared it.
    pub lease_duration: Duration,
    /// `spec.leaseTransitions`.
    pub transitions: i32,
    /// Our monotonic time when we first saw this `resource_version`.
    pub seen_at: Instant,
}

/// What to do after reading the Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// There is no Lease: create it with ourselves as the holder.
    Create,
    /// Write ourselves as the holder, guarded by `resource_version`. `takeover` when the holder
    /// changes (a new acquire time and one more transition), otherwise a renewal.
    Claim {
        /// The record's holder was not us.
        takeover: bool,
    },
    /// Someone else holds a live Lease: stay a standby.
    Standby {
        /// The holder's identity.
        holder: String,
        /// How long until we may take it over if the record does not change.
        expires_in: Duration,
    },
}

/// Our view of one Lease, as one elector sees it.
#[derive(Debug, Clone)]
pub struct LeaseState {
    identity: String,
    timing: Timing,
    observed: Option<Observed>,
    /// Until when we may act: the start of our last successful write plus the renew deadline.
    valid_until: Option<Instant>,
}

impl LeaseState {
    /// A fresh elector that knows nothing of the Lease and does not lead.
    pub fn new(identity: impl Into<String>, timing: Timing) -> Self {
        Self {
            identity: identity.into(),
            timing,
            observed: None,
            valid_until: None,
        }
    }

    /// Our identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The timing in force.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// Until when we may act, if we lead.
    pub fn valid_until(&self) -> Option<Instant> {
        self.valid_until
    }

    /// Whether we may act at `now`: we hold the Lease as far as we know, and our renew
    /// deadline has not passed.
    pub fn may_act(&self, now: Instant) -> bool {
        self.valid_until.is_some_and(|until| now < until)
    }

    /// When another holder's record, unchanged since we first saw it, goes stale on our clock.
    pub fn other_holder_expires_at(&self) -> Option<Instant> {
        let o = self.observed.as_ref()?;
        match o.holder.as_deref() {
            Some(h) if !h.is_empty() && h != self.identity => Some(o.seen_at + o.lease_duration),
            _ => None,
        }
    }

    /// The record we last saw.
    pub fn observed(&self) -> Option<&Observed> {
        self.observed.as_ref()
    }

    /// Records a read (`None`: the Lease does not exist) made at `now`, and decides. Seeing
    /// another holder ends our leadership at once.
    pub fn observe(&mut self, lease: Option<&Lease>, now: Instant) -> Step {
        let Some(lease) = lease else {
            self.observed = None;
            self.valid_until = None;
            return Step::Create;
        };
        self.record(lease, now);
        let Some(observed) = &self.observed else {
            return Step::Create;
        };
        match observed.holder.as_deref() {
            Some(holder) if holder == self.identity => Step::Claim { takeover: false },
            Some(holder) if !holder.is_empty() => {
                self.valid_until = None;
                let expires_at = observed.seen_at + observed.lease_duration;
                if now >= expires_at {
                    Step::Claim { takeover: true }
                } else {
                    Step::Standby {
                        holder: holder.to_string(),
                        expires_in: expires_at - now,
                    }
                }
            }
            // Released (or never held): free to take.
            _ => {
                self.valid_until = None;
                Step::Claim { takeover: true }
            }
        }
    }

    /// The Lease to write for `step` (Create or Claim) at wall-clock `wall_now`; `base` is the
    /// Lease as read (None for Create). The `resourceVersion` of `base` is kept, so the API
    /// server refuses the write with 409 Conflict if anyone wrote in between.
    pub fn desired(
        &self,
        base: Option<&Lease>,
        takeover: bool,
        wall_now: jiff::Timestamp,
    ) -> Lease {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
        let mut lease = base.cloned().unwrap_or_default();
        let old = lease.spec.take().unwrap_or_default();
        let transitions = old.lease_transitions.unwrap_or(0);
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.timing.lease_seconds()),
            renew_time: Some(MicroTime(wall_now)),
            acquire_time: if takeover || base.is_none() {
                Some(MicroTime(wall_now))
            } else {
                old.acquire_time.clone()
            },
            lease_transitions: Some(if base.is_none() {
                0
            } else if takeover {
                transitions.saturating_add(1)
            } else {
                transitions
            }),
            ..old
        });
        lease
    }

    /// Our write, begun at `started`, succeeded and returned `written`: we may act until
    /// `started + renew_deadline`.
    pub fn written(&mut self, written: &Lease, started: Instant) {
        self.record(written, started);
        self.valid_until = Some(started + self.timing.renew_deadline);
    }

    /// We gave the Lease up (or are about to): stop acting now.
    pub fn resign(&mut self) {
        self.valid_until = None;
    }

    fn record(&mut self, lease: &Lease, now: Instant) {
        let rv = lease.metadata.resource_version.clone().unwrap_or_default();
        let spec = lease.spec.clone().unwrap_or_default();
        let seen_at = match &self.observed {
            // The same version seen again: the clock keeps running from its first sighting.
            Some(o) if o.resource_version == rv && !rv.is_empty() => o.seen_at,
            Some(_) => now,
            // Our first look since we started: a standby that has been watching saw this
            // version up to a retry period after it was written, we may have seen it at once.
            // One retry period of precedence for the replica that watched the holder renew, so
            // that after a leader's crash its warm standby, not its restarted container, takes
            // over. Later is always safe: expiry only ever waits longer.
            None => now + self.timing.retry_period,
        };
        let seconds = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(self.timing.lease_duration.as_secs());
        self.observed = Some(Observed {
            holder: spec.holder_identity,
            resource_version: rv,
            lease_duration: Duration::from_secs(seconds),
            transitions: spec.lease_transitions.unwrap_or(0),
            seen_at,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn lease(holder: Option<&str>, rv: &str, seconds: i32) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("redis-operator".into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(String::from),
                lease_duration_seconds: Some(seconds),
                lease_transitions: Some(3),
                ..Default::default()
            }),
        }
    }

    fn timing() -> Timing {
        Timing::default()
    }

    #[test]
    fn default_timing_is_valid_and_bad_ones_are_refused() {
        assert_eq!(timing().validate(), Ok(()));
        let mut t = timing();
        t.renew_deadline = Duration::from_secs(15);
        assert!(t.validate().is_err());
        let mut t = timing();
        t.retry_period = Duration::from_secs(10);
        assert!(t.validate().is_err());
        let mut t = timing();
        t.lease_duration = Duration::from_millis(15_500);
        assert!(t.validate().is_err());
    }

    #[test]
    fn absent_lease_is_created_with_us_as_holder() {
        let mut s = LeaseState::new("a", timing());
        let now = Instant::now();
        assert_eq!(s.observe(None, now), Step::Create);
        let wall = jiff::Timestamp::UNIX_EPOCH;
        let l = s.desired(None, true, wall);
        let spec = l.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.lease_transitions, Some(0));
        assert!(spec.acquire_time.is_some() && spec.renew_time.is_some());
        assert!(!s.may_act(now));
    }

    #[test]
    fn write_success_grants_renew_deadline_from_the_start_of_the_attempt() {
        let mut s = LeaseState::new("a", timing());
        let t0 = Instant::now();
        s.observe(None, t0);
        s.written(&lease(Some("a"), "1", 15), t0);
        assert!(s.may_act(t0));
        assert!(s.may_act(t0 + Duration::from_millis(9_999)));
        // Monotonic: a process paused (SIGSTOP) past the deadline sees false on resume, before
        // any renewal attempt.
        assert!(!s.may_act(t0 + Duration::from_secs(10)));
        assert!(!s.may_act(t0 + Duration::from_secs(60)));
    }

    #[test]
    fn our_own_record_is_renewed_keeping_acquire_time_and_transitions() {
        let mut s = LeaseState::new("a", timing());
        let t0 = Instant::now();
        let mut ours = lease(Some("a"), "7", 15);
        if let Some(spec) = ours.spec.as_mut() {
            spec.acquire_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                jiff::Timestamp::UNIX_EPOCH,
            ));
        }
        assert_eq!(s.observe(Some(&ours), t0), Step::Claim { takeover: false });
        let wall = jiff::Timestamp::from_second(1000).unwrap();
        let next = s.desired(Some(&ours), false, wall);
        assert_eq!(next.metadata.resource_version.as_deref(), Some("7"));
        let spec = next.spec.unwrap();
        assert_eq!(spec.lease_transitions, Some(3));
        assert_eq!(
            spec.acquire_time.map(|t| t.0),
            Some(jiff::Timestamp::UNIX_EPOCH)
        );
        assert_eq!(spec.renew_time.map(|t| t.0), Some(wall));
    }

    #[test]
    fn another_holder_is_respected_until_its_record_is_stale_on_our_clock() {
        let mut s = LeaseState::new("b", timing());
        let t0 = Instant::now();
        let theirs = lease(Some("a"), "5", 15);
        // A first look after start waits one retry period longer.
        assert_eq!(
            s.observe(Some(&theirs), t0),
            Step::Standby {
                holder: "a".into(),
                expires_in: Duration::from_secs(17)
            }
        );
        // The same version seen again: the wait counts from the first sighting.
        let t1 = t0 + Duration::from_secs(16);
        assert_eq!(
            s.observe(Some(&theirs), t1),
            Step::Standby {
                holder: "a".into(),
                expires_in: Duration::from_secs(1)
            }
        );
        // A renewal (new resourceVersion) restarts the wait.
        let renewed = lease(Some("a"), "6", 15);
        let t2 = t0 + Duration::from_secs(16);
        assert!(matches!(
            s.observe(Some(&renewed), t2),
            Step::Standby { .. }
        ));
        assert_eq!(
            s.other_holder_expires_at(),
            Some(t2 + Duration::from_secs(15))
        );
        // Unchanged for a full lease duration: take it over, one more transition.
        let t3 = t2 + Duration::from_secs(15);
        assert_eq!(
            s.observe(Some(&renewed), t3),
            Step::Claim { takeover: true }
        );
        let next = s.desired(Some(&renewed), true, jiff::Timestamp::UNIX_EPOCH);
        assert_eq!(next.metadata.resource_version.as_deref(), Some("6"));
        let spec = next.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("b"));
        assert_eq!(spec.lease_transitions, Some(4));
        assert!(!s.may_act(t3), "may act only once the write succeeded");
    }

    #[test]
    fn holder_duration_is_the_one_written_in_the_lease() {
        let mut s = LeaseState::new("b", timing());
        let t0 = Instant::now();
        s.observe(Some(&lease(Some("a"), "4", 40)), t0);
        let theirs = lease(Some("a"), "5", 40);
        s.observe(Some(&theirs), t0);
        assert!(matches!(
            s.observe(Some(&theirs), t0 + Duration::from_secs(39)),
            Step::Standby { .. }
        ));
        assert_eq!(
            s.observe(Some(&theirs), t0 + Duration::from_secs(40)),
            Step::Claim { takeover: true }
        );
    }

    #[test]
    fn seeing_another_holder_ends_our_leadership_at_once() {
        let mut s = LeaseState::new("a", timing());
        let t0 = Instant::now();
        s.observe(None, t0);
        s.written(&lease(Some("a"), "1", 15), t0);
        assert!(s.may_act(t0 + Duration::from_secs(1)));
        let stolen = lease(Some("b"), "2", 15);
        assert!(matches!(
            s.observe(Some(&stolen), t0 + Duration::from_secs(2)),
            Step::Standby { .. }
        ));
        assert!(!s.may_act(t0 + Duration::from_secs(2)));
    }

    #[test]
    fn released_lease_is_free_at_once() {
        let mut s = LeaseState::new("b", timing());
        let t0 = Instant::now();
        assert_eq!(
            s.observe(Some(&lease(None, "9", 1)), t0),
            Step::Claim { takeover: true }
        );
        assert_eq!(
            s.observe(Some(&lease(Some(""), "10", 1)), t0),
            Step::Claim { takeover: true }
        );
    }

    #[test]
    fn resign_stops_acting() {
        let mut s = LeaseState::new("a", timing());
        let t0 = Instant::now();
        s.written(&lease(Some("a"), "1", 15), t0);
        s.resign();
        assert!(!s.may_act(t0));
    }
}

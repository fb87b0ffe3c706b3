//! The scale-in grace period as the spec asks for it: read by the observation into
//! [`super::Shape`], so the planner (`plan::drain`) sees a value, not the spec.

use jiff::SignedDuration;

use super::passwords::parse_go_duration;
use crate::crd::RedisCluster;

/// The grace period when the spec sets none: Lettuce backs off 30 s between two adaptive
/// topology refreshes, so a Lettuce client that refreshed on an early `MOVED` of the reshard
/// learns the final slot map up to 30 s after the last slot moved (redis-py and Jedis refresh
/// on every `MOVED`, go-redis reloads lazily on it).
pub const DEFAULT_GRACE: SignedDuration = SignedDuration::from_secs(30);

/// The longest grace period (admission refuses more; a spec that bypassed it is clamped).
pub const MAX_GRACE: SignedDuration = SignedDuration::from_hours(1);

/// `spec.scaleInGracePeriod` (admission checks its form), or [`DEFAULT_GRACE`].
pub fn grace(cluster: &RedisCluster) -> SignedDuration {
    cluster
        .spec
        .scale_in_grace_period
        .as_deref()
        .and_then(parse_go_duration)
        .map_or(DEFAULT_GRACE, |d| d.clamp(SignedDuration::ZERO, MAX_GRACE))
}

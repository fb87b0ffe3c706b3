//! Identifiers and timestamps shared by node and pod code.

use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use sha2::{Digest, Sha256};

pub fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Formats 16 bytes of a digest as a UUID-shaped string (version 4 bits set) so that
/// fields like systemUUID and bootID look like what a real node reports.
pub fn uuid_from(seed: &[u8]) -> String {
    let h = sha256_hex(seed);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Unique-enough bytes without a RNG crate: wall clock nanos, pid and a process counter.
pub fn fresh_seed(tag: &str) -> Vec<u8> {
    let nanos = jiff::Timestamp::now().as_nanosecond();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{tag}/{nanos}/{}/{n}", std::process::id()).into_bytes()
}

pub fn random_uuid(tag: &str) -> String {
    uuid_from(&fresh_seed(tag))
}

/// `len` lowercase hex characters, fresh each call.
pub fn random_hex(tag: &str, len: usize) -> String {
    let mut h = sha256_hex(&fresh_seed(tag));
    h.truncate(len);
    h
}

/// metav1.Time only carries seconds on the wire; truncating here keeps locally built
/// statuses equal to what the apiserver echoes back, so unchanged statuses are not rewritten.
pub fn now_time() -> Time {
    Time(truncate_secs(jiff::Timestamp::now()))
}

pub fn truncate_secs(ts: jiff::Timestamp) -> jiff::Timestamp {
    jiff::Timestamp::from_second(ts.as_second()).unwrap_or(ts)
}

pub fn now_micro() -> MicroTime {
    let now = jiff::Timestamp::now();
    let micros = now.as_microsecond();
    MicroTime(jiff::Timestamp::from_microsecond(micros).unwrap_or(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_shape() {
        let u = uuid_from(b"x");
        assert_eq!(u.len(), 36);
        assert_eq!(
            u.split('-').map(str::len).collect::<Vec<_>>(),
            vec![8, 4, 4, 4, 12]
        );
        assert_eq!(uuid_from(b"x"), u);
        assert_ne!(random_uuid("a"), random_uuid("a"));
    }

    #[test]
    fn times_have_whole_seconds() {
        assert_eq!(now_time().0.subsec_nanosecond(), 0);
    }
}

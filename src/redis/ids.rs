//! Node identities and hash-slot ranges.

use std::fmt;
use std::str::FromStr;

/// The number of hash slots in a Redis Cluster.
pub const SLOT_COUNT: u16 = 16384;

/// A cluster node id: 40 lowercase hex characters, created when the node first starts in
/// cluster mode and kept in its nodes.conf. Held inline (no heap): every pass parses, compares
/// and copies thousands of them (each member's CLUSTER NODES lists every other), and a `String`
/// per copy was a large part of a pass's CPU at 50×2. The bytes are always ASCII hex (checked
/// on parse), so they order like the text.
#[derive(Clone, Eq, PartialOrd, Ord)]
pub struct NodeId([u8; 40]);

/// Exact equality, the last 8 bytes first: most comparisons are of different ids (a member's
/// line looked up among its peers', for every pair of members), and those usually differ
/// there, so the common case is one 8-byte compare instead of a 40-byte `memcmp` call.
impl PartialEq for NodeId {
    fn eq(&self, other: &Self) -> bool {
        self.0[32..] == other.0[32..] && self.0 == other.0
    }
}

/// As the bytes (consistent with the equality above, which is exact).
impl std::hash::Hash for NodeId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

/// A node id that is not 40 hex characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid node id {0:?}: expected 40 hex characters")]
pub struct InvalidNodeId(pub String);

impl NodeId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only lowercase hex gets in (`from_str`), so this never falls back.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The first 8 characters, the way redis-cli prints ids in logs.
    pub fn short(&self) -> &str {
        let s = self.as_str();
        s.get(..8).unwrap_or(s)
    }
}

impl FromStr for NodeId {
    type Err = InvalidNodeId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Redis only ever generates lowercase hex; accepting anything else would let a garbled
        // reply alias a real node.
        match <[u8; 40]>::try_from(s.as_bytes()) {
            Ok(bytes) if bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) => {
                Ok(Self(bytes))
            }
            _ => Err(InvalidNodeId(s.chars().take(64).collect())),
        }
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// As the text (`NodeId("07c3…")`), not 40 byte values.
impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("NodeId").field(&self.as_str()).finish()
    }
}

/// An inclusive range of hash slots, `start..=end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlotRange {
    /// First slot of the range.
    pub start: u16,
    /// Last slot of the range (inclusive).
    pub end: u16,
}

/// A slot range outside 0..16384 or with start after end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid slot range {start}-{end}")]
pub struct InvalidSlotRange {
    /// The rejected start.
    pub start: u32,
    /// The rejected end.
    pub end: u32,
}

impl SlotRange {
    /// A checked range; both ends must be valid slots and `start <= end`.
    pub fn new(start: u16, end: u16) -> Result<Self, InvalidSlotRange> {
        if start <= end && end < SLOT_COUNT {
            Ok(Self { start, end })
        } else {
            Err(InvalidSlotRange {
                start: start.into(),
                end: end.into(),
            })
        }
    }

    /// A range holding a single slot. Slots above 16383 are clamped, which only matters for
    /// callers that did not validate; parsers do.
    pub fn single(slot: u16) -> Self {
        let slot = slot.min(SLOT_COUNT - 1);
        Self {
            start: slot,
            end: slot,
        }
    }

    /// The whole slot space.
    pub fn all() -> Self {
        Self {
            start: 0,
            end: SLOT_COUNT - 1,
        }
    }

    /// Number of slots in the range.
    pub fn len(&self) -> usize {
        usize::from(self.end.saturating_sub(self.start)) + 1
    }

    /// Always false: a range holds at least one slot.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `slot` lies in the range.
    pub fn contains(&self, slot: u16) -> bool {
        self.start <= slot && slot <= self.end
    }

    /// The slots of the range, in order.
    pub fn slots(&self) -> impl Iterator<Item = u16> + use<> {
        self.start..=self.end
    }
}

impl fmt::Display for SlotRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// Compresses slots into sorted, non-overlapping ranges (duplicates and slots above 16383 are
/// dropped).
pub fn ranges_from_slots(slots: impl IntoIterator<Item = u16>) -> Vec<SlotRange> {
    let mut sorted: Vec<u16> = slots.into_iter().filter(|s| *s < SLOT_COUNT).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut ranges: Vec<SlotRange> = Vec::new();
    for slot in sorted {
        match ranges.last_mut() {
            Some(last) if last.end + 1 == slot => last.end = slot,
            _ => ranges.push(SlotRange::single(slot)),
        }
    }
    ranges
}

/// Splits the whole slot space into `parts` contiguous ranges whose sizes differ by at most
/// one, the layout `redis-cli --cluster create` produces. Returns nothing for zero parts.
pub fn even_ranges(parts: usize) -> Vec<SlotRange> {
    let total = usize::from(SLOT_COUNT);
    if parts == 0 || parts > total {
        return Vec::new();
    }
    let base = total / parts;
    let extra = total % parts;
    let mut start = 0usize;
    let mut out = Vec::with_capacity(parts);
    for i in 0..parts {
        let len = base + usize::from(i < extra);
        let end = start + len - 1;
        // Both ends are below 16384 by construction, so the conversions cannot fail.
        if let (Ok(s), Ok(e)) = (u16::try_from(start), u16::try_from(end)) {
            out.push(SlotRange { start: s, end: e });
        }
        start = end + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_validation() {
        assert!(
            "07c37dfeb235213a872192d90877d0cd55635b91"
                .parse::<NodeId>()
                .is_ok()
        );
        assert!(
            "07C37DFEB235213A872192D90877D0CD55635B91"
                .parse::<NodeId>()
                .is_err()
        );
        assert!("abc".parse::<NodeId>().is_err());
        assert!(
            "07c37dfeb235213a872192d90877d0cd55635b91x"
                .parse::<NodeId>()
                .is_err()
        );
    }

    #[test]
    fn node_id_text_order_and_debug_are_the_text() {
        let text = ["07c37dfeb235213a872192d90877d0cd55635b91", "a0", "ff", "0f"];
        let ids: Vec<NodeId> = text[1..]
            .iter()
            .map(|t| t.repeat(20).parse().unwrap())
            .chain(std::iter::once(text[0].parse().unwrap()))
            .collect();
        let id = &ids[3];
        assert_eq!(id.as_str(), text[0]);
        assert_eq!(id.to_string(), text[0]);
        assert_eq!(id.short(), "07c37dfe");
        assert_eq!(format!("{id:?}"), format!("NodeId({:?})", text[0]));
        // Ordered as the text is (the old String-backed id's order, which maps and ties rely on).
        let mut by_id = ids.clone();
        by_id.sort();
        let mut by_text = ids.clone();
        by_text.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        assert_eq!(by_id, by_text);
    }

    #[test]
    fn ranges_compress() {
        let r = ranges_from_slots([5, 1, 2, 3, 9, 16384, 3]);
        assert_eq!(
            r,
            vec![
                SlotRange { start: 1, end: 3 },
                SlotRange { start: 5, end: 5 },
                SlotRange { start: 9, end: 9 }
            ]
        );
    }

    #[test]
    fn even_ranges_cover_everything() {
        for parts in 1..=10 {
            let r = even_ranges(parts);
            assert_eq!(r.len(), parts);
            assert_eq!(r.iter().map(SlotRange::len).sum::<usize>(), 16384);
            assert_eq!(r[0].start, 0);
            assert_eq!(r[parts - 1].end, 16383);
        }
        assert_eq!(
            even_ranges(3)[0],
            SlotRange {
                start: 0,
                end: 5461
            }
        );
    }
}

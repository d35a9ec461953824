//! FNV-1a, 64-bit: the stable hash behind pq's advisory lock keys (limit slots, unique keys)
//! and its shared-memory listener slots. Stable across processes and releases, which a
//! `std` hasher (randomly seeded) is not.

/// FNV-1a over `parts`, as over their concatenation.
///
/// ```ignore
/// let key = hash::fnv1a64(&[b"pq-key", &oid.to_le_bytes(), queue.as_bytes()]) as i64;
/// ```
pub fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in parts.iter().flat_map(|p| p.iter()) {
        h = (h ^ *b as u64).wrapping_mul(0x100000001b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::fnv1a64;

    #[test]
    fn is_fnv1a_over_the_concatenation() {
        assert_eq!(fnv1a64(&[]), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(&[b"a"]), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(&[b"pq-", b"key"]), fnv1a64(&[b"pq-key"]));
    }
}

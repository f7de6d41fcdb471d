//! AdmissionReview uids for tests. The API server gives every review a UUID, and the webhook reserves
//! only for uids of that shape, so tests that expect reservations use these: readable (`tag` and `n`
//! are in the text), distinct for distinct `(tag, n)`, and always UUID-shaped.

/// A UUID-shaped uid for review `n` of a test's `tag`: the tag's first 8 bytes as hex digits (padded
/// with zeros), then `n`. Distinct tags must differ within their first 8 bytes.
pub fn review_uid(tag: &str, n: u64) -> String {
    let mut prefix = [0u8; 4];
    for (i, b) in tag.bytes().take(4).enumerate() {
        prefix[i] = b;
    }
    let more = tag.bytes().skip(4).take(4).fold(0u16, |h, b| h.wrapping_mul(31).wrapping_add(u16::from(b)));
    format!("{:08x}-{more:04x}-4000-8000-{n:012x}", u32::from_be_bytes(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_uuid_shaped_and_distinct() {
        let uids =
            [review_uid("a", 0), review_uid("a", 1), review_uid("b", 0), review_uid("burst", 0), review_uid("", 7)];
        for uid in &uids {
            assert!(placement_core::ledger::is_reservation_id(uid), "{uid}");
        }
        let distinct: std::collections::BTreeSet<_> = uids.iter().collect();
        assert_eq!(distinct.len(), uids.len(), "{uids:?}");
    }
}

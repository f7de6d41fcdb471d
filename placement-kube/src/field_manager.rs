//! The field-manager names placement's writes carry, defined once: server-side apply attributes every
//! field to a manager, so the operator's controllers must all apply as the same one (or they would fight
//! over their own fields), and the names must stay stable across releases (a renamed manager leaves its
//! old fields owned by a name nobody applies as any more).

/// The manager of the operator's writes: status applies, workload and HTTPRoute patches.
pub const OPERATOR: &str = "placement-operator";

/// The manager of the webhook's writes (strict mode's shared ledger, the `certs` command's caBundle patch
/// and Secret).
pub const WEBHOOK: &str = "placement-webhook";

/// The API server refuses a field manager longer than this (in bytes).
pub const MAX_LEN: usize = 128;

/// A manager unique to one instance, `<component>/<identity>`, cut to [`MAX_LEN`] bytes on a character
/// boundary. For the Lease: the API server refuses (409) an apply that takes a field from **another**
/// manager, and that refusal is what keeps two instances from taking a free Lease at the same moment.
pub fn per_instance(component: &str, identity: &str) -> String {
    let mut name = format!("{component}/{identity}");
    let mut cut = name.len().min(MAX_LEN);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    name.truncate(cut);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_instance_names_differ_per_identity_and_fit_the_api_limit() {
        assert_eq!(per_instance(OPERATOR, "op-0"), "placement-operator/op-0");
        assert_ne!(per_instance(OPERATOR, "op-0"), per_instance(OPERATOR, "op-1"));
        assert_eq!(per_instance(OPERATOR, &"x".repeat(300)).len(), MAX_LEN);
        // Exactly at the limit nothing is cut; one byte more is.
        let at_limit = "x".repeat(MAX_LEN - OPERATOR.len() - 1);
        assert_eq!(per_instance(OPERATOR, &at_limit).len(), MAX_LEN);
        assert!(per_instance(OPERATOR, &at_limit).ends_with('x'));
        assert_eq!(per_instance(OPERATOR, &format!("{at_limit}y")).len(), MAX_LEN);
        assert!(!per_instance(OPERATOR, &format!("{at_limit}y")).ends_with('y'));
        // Never cut inside a character.
        let wide = per_instance(OPERATOR, &"é".repeat(100));
        assert!(wide.len() <= MAX_LEN && wide.len() >= MAX_LEN - 1, "{}", wide.len());
        assert!(wide.ends_with('é'));
    }
}

//! The syntax of Kubernetes names and labels, checked where placement reads them (the strategy
//! annotation in the core, custom resources in `placement-kube`), so that both accept exactly what the
//! API server would.

/// A label key: an optional DNS-subdomain prefix (at most 253 characters) and `/`, then a
/// [label name](is_label_name).
pub fn is_label_key(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_name(name),
        None => is_label_name(key),
    }
}

/// A label value: empty, or a [label name](is_label_name).
pub fn is_label_value(value: &str) -> bool {
    value.is_empty() || is_label_name(value)
}

/// 1 to 63 letters, digits, `-`, `_` or `.`, beginning and ending with a letter or digit.
pub fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            b.len() <= 63
                && first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
        }
        _ => false,
    }
}

/// Lowercase DNS labels (letters, digits, `-`, not at either end, at most 63 each) joined by dots, at
/// most 253 in all.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys_values_and_subdomains_at_their_limits() {
        let name63 = "a".repeat(63);
        assert!(is_label_name(&name63) && !is_label_name(&format!("{name63}a")));
        assert!(is_label_key("node-type") && is_label_key("topology.kubernetes.io/zone"));
        let prefix253 = format!("{}.{}.{}.{}", "a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61));
        assert_eq!(prefix253.len(), 253);
        assert!(is_label_key(&format!("{prefix253}/k")));
        assert!(!is_label_key(&format!("{prefix253}d/k")), "a prefix of 254 characters");
        assert!(!is_label_key("Upper.Case/k") && !is_label_key("/k") && !is_label_key("a/") && !is_label_key("-a"));
        assert!(is_label_value("") && is_label_value("on-demand") && !is_label_value("a b") && !is_label_value("a:"));
        assert!(
            !is_dns_subdomain("") && !is_dns_subdomain("a..b") && !is_dns_subdomain("-a") && is_dns_subdomain("a-1.b")
        );
    }
}

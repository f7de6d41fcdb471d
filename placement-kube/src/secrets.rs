//! Reading one key of a Kubernetes Secret, for every component: the operator's Prometheus credentials
//! and CA bundle, its Route53 credentials, and the webhook's serving certificate. One home, so that every
//! caller reads `data` and `stringData` the same way, bounds what it reads the same way, and reports a
//! problem with the same words: each [`SecretError`] names the Secret (`namespace/name`) and the key and
//! says what is wrong, and nothing here panics on what a Secret holds.
//!
//! Fetching the Secret stays with the caller (who knows which permission to suggest on a 403); a Secret
//! the caller did not find becomes [`SecretError::NotFound`] through [`found`].

use k8s_openapi::api::core::v1::Secret;

/// The most bytes one value may have. Kubernetes allows a whole Secret 1 MiB; what placement reads is a
/// token, a password, an access key or a PEM bundle, and even a full public root-CA bundle (about 220 KB
/// of PEM) is well under half a MiB. A larger value is a mistake (the wrong key, a binary) and is refused
/// rather than held in memory and parsed.
pub const MAX_VALUE_BYTES: usize = 512 * 1024;

/// At most this many key names are listed when a key is missing.
const LISTED_KEYS: usize = 16;

/// Why a key of a Secret could not be read. Every message names the Secret and (but for
/// [`SecretError::NotFound`]) the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The Secret does not exist.
    #[error("Secret {secret} not found")]
    NotFound { secret: String },
    /// The key is neither in the Secret's `data` nor in its `stringData`.
    #[error("Secret {secret} has no key {key:?} (keys: {available})")]
    MissingKey { secret: String, key: String, available: String },
    /// The value is empty (or, where surrounding whitespace is dropped, only whitespace).
    #[error("Secret {secret} key {key:?} is empty")]
    Empty { secret: String, key: String },
    /// The value is not UTF-8, and text is required.
    #[error("Secret {secret} key {key:?} is not UTF-8 text")]
    NotText { secret: String, key: String },
    /// The value is larger than [`MAX_VALUE_BYTES`].
    #[error("Secret {secret} key {key:?} holds {size} bytes, more than the {limit} a value may have")]
    TooLarge { secret: String, key: String, size: usize, limit: usize },
    /// The value is read but unusable for its purpose (the caller's check; the message says why).
    #[error("Secret {secret} key {key:?}: {message}")]
    Invalid { secret: String, key: String, message: String },
}

impl SecretError {
    /// The Secret `namespace/name` does not exist (a 404 when the caller fetched it).
    pub fn not_found(namespace: &str, name: &str) -> Self {
        SecretError::NotFound { secret: format!("{namespace}/{name}") }
    }

    /// A caller's own check failed on the value of `key`.
    pub fn invalid(secret: &Secret, key: &str, message: impl Into<String>) -> Self {
        SecretError::Invalid { secret: id(secret), key: key.to_string(), message: message.into() }
    }

    /// The value of `key` is empty (for callers that trim it first).
    pub fn empty(secret: &Secret, key: &str) -> Self {
        SecretError::Empty { secret: id(secret), key: key.to_string() }
    }

    /// The Secret named, as `namespace/name`.
    pub fn secret(&self) -> &str {
        match self {
            SecretError::NotFound { secret }
            | SecretError::MissingKey { secret, .. }
            | SecretError::Empty { secret, .. }
            | SecretError::NotText { secret, .. }
            | SecretError::TooLarge { secret, .. }
            | SecretError::Invalid { secret, .. } => secret,
        }
    }

    /// A short, fixed label for metrics (bounded cardinality: never a name or a key).
    pub fn metric_label(&self) -> &'static str {
        match self {
            SecretError::NotFound { .. } => "not_found",
            SecretError::MissingKey { .. } => "missing_key",
            SecretError::Empty { .. } => "empty",
            SecretError::NotText { .. } => "not_text",
            SecretError::TooLarge { .. } => "too_large",
            SecretError::Invalid { .. } => "invalid",
        }
    }
}

/// How a Secret is named in messages: `namespace/name` (`name` alone without a namespace, `<unnamed>`
/// without a name).
pub fn id(secret: &Secret) -> String {
    let name = secret.metadata.name.as_deref().filter(|n| !n.is_empty()).unwrap_or("<unnamed>");
    match secret.metadata.namespace.as_deref().filter(|ns| !ns.is_empty()) {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// The Secret the caller looked up, or [`SecretError::NotFound`] naming `namespace/name`.
pub fn found<'a>(secret: Option<&'a Secret>, namespace: &str, name: &str) -> Result<&'a Secret, SecretError> {
    secret.ok_or_else(|| SecretError::not_found(namespace, name))
}

/// The raw bytes under `key`: from `data`, or from `stringData` (an object not stored yet, as in a test or
/// a manifest); present, not empty and at most [`MAX_VALUE_BYTES`].
pub fn bytes<'a>(secret: &'a Secret, key: &str) -> Result<&'a [u8], SecretError> {
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.as_slice())
        .or_else(|| secret.string_data.as_ref().and_then(|d| d.get(key)).map(|s| s.as_bytes()));
    let Some(value) = value else {
        return Err(SecretError::MissingKey { secret: id(secret), key: key.to_string(), available: keys(secret) });
    };
    if value.is_empty() {
        return Err(SecretError::empty(secret, key));
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(SecretError::TooLarge {
            secret: id(secret),
            key: key.to_string(),
            size: value.len(),
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(value)
}

/// The value under `key` as text: [`bytes`], and UTF-8.
pub fn text<'a>(secret: &'a Secret, key: &str) -> Result<&'a str, SecretError> {
    std::str::from_utf8(bytes(secret, key)?)
        .map_err(|_| SecretError::NotText { secret: id(secret), key: key.to_string() })
}

/// [`text`] without surrounding whitespace (a file's final newline, from `echo` or an editor, is never
/// part of a token or key); only whitespace is [`SecretError::Empty`].
pub fn trimmed_text<'a>(secret: &'a Secret, key: &str) -> Result<&'a str, SecretError> {
    let value = text(secret, key)?.trim();
    if value.is_empty() {
        return Err(SecretError::empty(secret, key));
    }
    Ok(value)
}

/// For a key that may be absent: `Ok(None)` instead of [`SecretError::MissingKey`]; every other error
/// stays an error (a key that is there but empty or too large is still a mistake).
pub fn optional<T>(read: Result<T, SecretError>) -> Result<Option<T>, SecretError> {
    match read {
        Ok(value) => Ok(Some(value)),
        Err(SecretError::MissingKey { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The keys a Secret has, quoted and sorted, for a message (`none` when it has none).
fn keys(secret: &Secret) -> String {
    let mut keys: Vec<&str> = secret.data.iter().flatten().map(|(k, _)| k.as_str()).collect();
    keys.extend(secret.string_data.iter().flatten().map(|(k, _)| k.as_str()));
    keys.sort_unstable();
    keys.dedup();
    if keys.is_empty() {
        return "none".to_string();
    }
    let mut shown: Vec<String> = keys.iter().take(LISTED_KEYS).map(|k| format!("{k:?}")).collect();
    if keys.len() > LISTED_KEYS {
        shown.push("…".into());
    }
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(data: &[(&str, &[u8])]) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some("creds".into());
        s.metadata.namespace = Some("shop".into());
        s.data = Some(data.iter().map(|(k, v)| (k.to_string(), ByteString(v.to_vec()))).collect());
        s
    }

    #[test]
    fn values_come_from_data_then_string_data() {
        let mut s = secret(&[("token", b"abc\n"), ("both", b"from data")]);
        s.string_data = Some([("plain", "zz"), ("both", "from stringData")].map(|(k, v)| (k.into(), v.into())).into());
        assert_eq!(bytes(&s, "token").unwrap(), b"abc\n");
        assert_eq!(text(&s, "token").unwrap(), "abc\n");
        assert_eq!(trimmed_text(&s, "token").unwrap(), "abc");
        assert_eq!(text(&s, "plain").unwrap(), "zz");
        assert_eq!(text(&s, "both").unwrap(), "from data", "data wins over stringData");
    }

    #[test]
    fn errors_name_the_secret_the_key_and_the_problem() {
        let s = secret(&[("token", b"abc"), ("bin", &[0xff, 0xfe]), ("blank", b" \n"), ("none", b"")]);
        let e = text(&s, "tokn").unwrap_err();
        assert_eq!(e.to_string(), r#"Secret shop/creds has no key "tokn" (keys: "bin", "blank", "none", "token")"#);
        assert_eq!((e.secret(), e.metric_label()), ("shop/creds", "missing_key"));
        assert_eq!(text(&s, "bin").unwrap_err().to_string(), r#"Secret shop/creds key "bin" is not UTF-8 text"#);
        assert_eq!(bytes(&s, "bin").unwrap(), &[0xff, 0xfe], "bytes need not be text");
        assert_eq!(bytes(&s, "none").unwrap_err().to_string(), r#"Secret shop/creds key "none" is empty"#);
        assert_eq!(text(&s, "blank").unwrap(), " \n");
        assert_eq!(trimmed_text(&s, "blank").unwrap_err(), SecretError::empty(&s, "blank"));
        let e = SecretError::invalid(&s, "token", "a bearer token must be printable ASCII");
        assert_eq!(e.to_string(), r#"Secret shop/creds key "token": a bearer token must be printable ASCII"#);
    }

    #[test]
    fn a_secret_without_keys_or_names_is_described_not_a_panic() {
        let e = bytes(&Secret::default(), "ca.crt").unwrap_err();
        assert_eq!(e.to_string(), r#"Secret <unnamed> has no key "ca.crt" (keys: none)"#);
        let mut s = Secret::default();
        s.metadata.name = Some("cluster-wide".into());
        assert_eq!(id(&s), "cluster-wide");
        let many: Vec<(String, &[u8])> = (0..20).map(|i| (format!("k{i:02}"), b"v".as_slice())).collect();
        let refs: Vec<(&str, &[u8])> = many.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let e = bytes(&secret(&refs), "x").unwrap_err().to_string();
        assert!(e.contains(r#""k15", …)"#) && !e.contains("k16"), "{e}");
    }

    #[test]
    fn values_up_to_the_limit_are_read_and_one_byte_more_is_refused() {
        let at_limit = vec![b'a'; MAX_VALUE_BYTES];
        let over = vec![b'a'; MAX_VALUE_BYTES + 1];
        let s = secret(&[("ca.crt", &at_limit), ("big", &over)]);
        assert_eq!(bytes(&s, "ca.crt").unwrap().len(), MAX_VALUE_BYTES);
        assert_eq!(text(&s, "ca.crt").unwrap().len(), MAX_VALUE_BYTES);
        let e = bytes(&s, "big").unwrap_err();
        assert_eq!(
            e,
            SecretError::TooLarge {
                secret: "shop/creds".into(),
                key: "big".into(),
                size: MAX_VALUE_BYTES + 1,
                limit: MAX_VALUE_BYTES
            }
        );
        assert_eq!(
            e.to_string(),
            format!(
                r#"Secret shop/creds key "big" holds {} bytes, more than the {MAX_VALUE_BYTES} a value may have"#,
                MAX_VALUE_BYTES + 1
            )
        );
        assert_eq!(text(&s, "big").unwrap_err().metric_label(), "too_large", "checked before UTF-8");
    }

    #[test]
    fn optional_keys_and_missing_secrets() {
        let s = secret(&[("id", b"A"), ("token", b" \n")]);
        assert_eq!(optional(trimmed_text(&s, "session")).unwrap(), None);
        assert_eq!(optional(trimmed_text(&s, "id")).unwrap(), Some("A"));
        assert!(optional(trimmed_text(&s, "token")).is_err(), "present but blank is still a mistake");

        assert_eq!(found(Some(&s), "shop", "creds").unwrap(), &s);
        let e = found(None, "shop", "gone").unwrap_err();
        assert_eq!(e.to_string(), "Secret shop/gone not found");
        assert_eq!(e.metric_label(), "not_found");
    }
}

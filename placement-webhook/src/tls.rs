//! The serving certificate, and when to swap it.
//!
//! The certificate and key come from a Kubernetes Secret volume. The kubelet updates such a volume by
//! writing a new timestamped directory and atomically renaming a `..data` symlink over the old one;
//! `tls.crt` and `tls.key` are symlinks through `..data`, so the files themselves never change and
//! file-level inotify never fires. We therefore **poll**: every interval the two files are read again and
//! compared (by a fingerprint of their bytes) with what was last loaded.
//!
//! A new pair is only installed once it is known to work: PEM parsed, key usable by ring, key matching
//! the leaf certificate. Anything else keeps the old certificate serving, logs a warning and counts a
//! failure, once per distinct bad content rather than once per poll.
//!
//! Handshakes ask [`CertReloader`] (a [`ResolvesServerCert`]) for the current key every time, so a
//! reload affects new connections only; established ones keep the certificate they were set up with.
//!
//! The leaf's `notAfter` is exported as a metric, read with `x509-parser` (as the `certs` command reads
//! certificates). The certificate metrics ([`CertMetrics`]: `notAfter` and the reload failures, whose
//! `reason` takes only the fixed values of [`TlsError::metric_label`]) live here with the errors they
//! count; the probe listener only serves the registry they are in.

use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::task::JoinHandle;

/// How often [`CertReloader::spawn_watcher`] looks at the files unless told otherwise.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// Why a certificate/key pair could not be (re)loaded. Each names the file(s) involved.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{} is not valid PEM: {source}", path.display())]
    Pem { path: PathBuf, source: pem::Error },
    #[error("{} holds no certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} holds no private key", path.display())]
    NoKey { path: PathBuf },
    #[error("{} holds a private key ring cannot use: {source}", path.display())]
    UnsupportedKey { path: PathBuf, source: rustls::Error },
    #[error("the key in {} does not belong to the certificate in {}: {source}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf, source: rustls::Error },
}

impl TlsError {
    /// Every value [`TlsError::metric_label`] can return (so counters can start at zero).
    pub const METRIC_LABELS: [&'static str; 6] =
        ["read", "pem", "no_certificate", "no_key", "unsupported_key", "key_mismatch"];

    /// A short, fixed label for the `reason` of a failure metric (never a path or a message).
    pub fn metric_label(&self) -> &'static str {
        match self {
            TlsError::Read { .. } => "read",
            TlsError::Pem { .. } => "pem",
            TlsError::NoCertificate { .. } => "no_certificate",
            TlsError::NoKey { .. } => "no_key",
            TlsError::UnsupportedKey { .. } => "unsupported_key",
            TlsError::KeyMismatch { .. } => "key_mismatch",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The certificate metrics, updated by [`CertReloader`]. Clones share values.
#[derive(Clone, Debug, Default)]
pub struct CertMetrics {
    not_after: Gauge,
    reload_failures: Family<ReasonLabel, Counter>,
}

impl CertMetrics {
    /// Creates the metrics and registers them in `registry`; every failure reason starts at zero.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        for reason in TlsError::METRIC_LABELS {
            let _ = metrics.reload_failures.get_or_create(&ReasonLabel { reason });
        }
        registry.register_with_unit(
            "placement_webhook_certificate_not_after",
            "Expiry (notAfter) of the serving certificate in use, Unix time",
            Unit::Seconds,
            metrics.not_after.clone(),
        );
        registry.register(
            "placement_webhook_certificate_reload_failures",
            "Certificate reloads rejected (the previous certificate kept serving), by reason",
            metrics.reload_failures.clone(),
        );
        metrics
    }

    pub fn set_not_after(&self, unix_seconds: i64) {
        self.not_after.set(unix_seconds);
    }

    /// `reason` must be one of [`TlsError::METRIC_LABELS`].
    pub fn count_reload_failure(&self, reason: &'static str) {
        self.reload_failures.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Sum over reasons (for tests and logs).
    pub fn reload_failures_total(&self) -> u64 {
        TlsError::METRIC_LABELS
            .iter()
            .map(|&reason| self.reload_failures.get_or_create(&ReasonLabel { reason }).get())
            .sum()
    }
}

/// The pair in use.
struct Current {
    key: Arc<CertifiedKey>,
    not_after: Option<i64>,
    fingerprint: u64,
}

/// Serves the current certificate to rustls and swaps it when the files change (see the module docs).
pub struct CertReloader {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Current>,
    /// Fingerprint of the last failed attempt, so the same bad content is reported only once.
    last_failure: Mutex<Option<u64>>,
    metrics: Option<CertMetrics>,
}

impl CertReloader {
    /// Loads the pair once; fails if it is not usable (there is no old certificate to fall back on).
    pub fn load(cert_path: impl Into<PathBuf>, key_path: impl Into<PathBuf>) -> Result<Self, TlsError> {
        let (cert_path, key_path) = (cert_path.into(), key_path.into());
        let (cert_pem, key_pem) = read_pair(&cert_path, &key_path)?;
        let current = build(&cert_path, &key_path, &cert_pem, &key_pem)?;
        Ok(CertReloader {
            cert_path,
            key_path,
            current: RwLock::new(current),
            last_failure: Mutex::new(None),
            metrics: None,
        })
    }

    /// Reports `notAfter` and reload failures to `metrics` from now on.
    pub fn with_metrics(mut self, metrics: CertMetrics) -> Self {
        if let Some(not_after) = self.not_after() {
            metrics.set_not_after(not_after);
        }
        self.metrics = Some(metrics);
        self
    }

    /// Reads the files again and installs them if they changed and work. `Ok(true)` when a new pair is in
    /// use, `Ok(false)` when the files are unchanged; on `Err` the previous pair keeps serving.
    pub fn reload_now(&self) -> Result<bool, TlsError> {
        let attempt = read_pair(&self.cert_path, &self.key_path);
        let fingerprint = match &attempt {
            Ok((cert_pem, key_pem)) => fingerprint(&[cert_pem, key_pem]),
            Err(err) => fingerprint(&[err.to_string().as_bytes()]),
        };
        if attempt.is_ok() && fingerprint == self.read_current().fingerprint {
            *lock(&self.last_failure) = None;
            return Ok(false);
        }
        let built = attempt.and_then(|(cert_pem, key_pem)| build(&self.cert_path, &self.key_path, &cert_pem, &key_pem));
        match built {
            Ok(new) => {
                tracing::info!(cert = %self.cert_path.display(), not_after = ?new.not_after, "serving certificate reloaded");
                if let (Some(metrics), Some(not_after)) = (&self.metrics, new.not_after) {
                    metrics.set_not_after(not_after);
                }
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = new;
                *lock(&self.last_failure) = None;
                Ok(true)
            }
            Err(err) => {
                let seen_before = lock(&self.last_failure).replace(fingerprint) == Some(fingerprint);
                if !seen_before {
                    tracing::warn!(error = %err, "certificate reload failed; keeping the previous certificate");
                    if let Some(metrics) = &self.metrics {
                        metrics.count_reload_failure(err.metric_label());
                    }
                }
                Err(err)
            }
        }
    }

    /// Polls the files every `interval` (errors are logged by [`CertReloader::reload_now`]). Abort the
    /// handle to stop.
    pub fn spawn_watcher(self: Arc<Self>, interval: Duration) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await; // the first tick is immediate, and the files were just loaded
            loop {
                ticker.tick().await;
                let reloader = Arc::clone(&self);
                if let Err(panic) = tokio::task::spawn_blocking(move || reloader.reload_now()).await {
                    tracing::error!(error = %panic, "certificate reload task failed");
                }
            }
        })
    }

    /// `notAfter` of the leaf certificate in use, in Unix seconds (`None` if it could not be read).
    pub fn not_after(&self) -> Option<i64> {
        self.read_current().not_after
    }

    /// The leaf certificate in use (DER).
    pub fn leaf_der(&self) -> CertificateDer<'static> {
        self.read_current().key.cert[0].clone()
    }

    /// A server configuration resolving its certificate through `self`: ring only, TLS 1.2 and 1.3,
    /// ALPN `h2` then `http/1.1`, no client authentication.
    pub fn server_config(self: &Arc<Self>) -> ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("the ring provider supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }

    fn read_current(&self) -> std::sync::RwLockReadGuard<'_, Current> {
        self.current.read().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ResolvesServerCert for CertReloader {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.read_current().key))
    }
}

impl fmt::Debug for CertReloader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertReloader")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("not_after", &self.not_after())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn fingerprint(parts: &[&[u8]]) -> u64 {
    let mut hasher = DefaultHasher::new();
    parts.hash(&mut hasher);
    hasher.finish()
}

/// Reads both files, following symlinks (`tls.crt -> ..data/tls.crt`).
fn read_pair(cert_path: &Path, key_path: &Path) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let read = |path: &Path| std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source });
    Ok((read(cert_path)?, read(key_path)?))
}

/// Parses and checks a pair: PEM chain (leaf first), a PKCS#8, PKCS#1 or SEC1 key ring can sign with,
/// and the key matching the leaf.
fn build(cert_path: &Path, key_path: &Path, cert_pem: &[u8], key_pem: &[u8]) -> Result<Current, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem { path: cert_path.to_owned(), source })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert_path.to_owned() });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|source| match source {
        pem::Error::NoItemsFound => TlsError::NoKey { path: key_path.to_owned() },
        source => TlsError::Pem { path: key_path.to_owned(), source },
    })?;
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|source| TlsError::UnsupportedKey { path: key_path.to_owned(), source })?;
    let not_after = not_after_from_der(&chain[0]);
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|source| TlsError::KeyMismatch {
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
        source,
    })?;
    Ok(Current { key: Arc::new(certified), not_after, fingerprint: fingerprint(&[cert_pem, key_pem]) })
}

/// `notAfter` of a DER certificate, in Unix seconds; `None` if it is not a readable certificate.
pub fn not_after_from_der(cert: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert).ok()?;
    Some(cert.validity().not_after.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with_not_after(year: i32, month: u8, day: u8) -> rcgen::CertifiedKey<rcgen::KeyPair> {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(year, month, day);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        rcgen::CertifiedKey { cert, signing_key: key }
    }

    fn unix(year: i16, month: i8, day: i8) -> i64 {
        jiff::civil::date(year, month, day).to_zoned(jiff::tz::TimeZone::UTC).unwrap().timestamp().as_second()
    }

    #[test]
    fn reads_utc_time_not_after() {
        let cert = cert_with_not_after(2049, 12, 31);
        assert_eq!(not_after_from_der(cert.cert.der()), Some(unix(2049, 12, 31)));
    }

    #[test]
    fn reads_generalized_time_not_after() {
        let cert = cert_with_not_after(2050, 1, 1);
        assert_eq!(not_after_from_der(cert.cert.der()), Some(unix(2050, 1, 1)));
    }

    #[test]
    fn reads_both_time_forms_at_their_edges() {
        let at = |unix: i64| {
            let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
            params.not_before = rcgen::date_time_ymd(1960, 1, 1);
            params.not_after = time::OffsetDateTime::from_unix_timestamp(unix).unwrap();
            params.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap()
        };
        // UTCTime covers 1950 to 2049 (RFC 5280); GeneralizedTime from 2050 on.
        assert_eq!(not_after_from_der(at(0).der()), Some(0));
        assert_eq!(not_after_from_der(at(unix(2049, 1, 1)).der()), Some(unix(2049, 1, 1)));
        assert_eq!(not_after_from_der(at(unix(2050, 1, 1) - 1).der()), Some(unix(2050, 1, 1) - 1));
        assert_eq!(not_after_from_der(at(4_294_967_295).der()), Some(4_294_967_295));
    }

    #[test]
    fn an_invalid_not_after_gives_none() {
        let der = cert_with_not_after(2030, 6, 1).cert.der().to_vec();
        let time = b"300601000000Z";
        let Some(offset) = der.windows(time.len()).position(|w| w == time) else { panic!("no UTCTime in {der:?}") };
        for bad in [b"301301000000Z", b"30060100000+Z", b"300601000000+"] {
            let mut edited = der.clone();
            edited[offset..offset + time.len()].copy_from_slice(bad);
            assert_eq!(not_after_from_der(&edited), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn malformed_der_gives_none_not_a_panic() {
        let cert = cert_with_not_after(2030, 6, 1);
        let der = cert.cert.der().to_vec();
        for cut in 0..der.len() {
            assert_eq!(not_after_from_der(&der[..cut]), None, "truncated at {cut}");
        }
        assert_eq!(not_after_from_der(&[]), None);
        assert_eq!(not_after_from_der(&[0x30, 0x80, 0, 0]), None, "indefinite length");
        assert_eq!(not_after_from_der(&[0x30, 0x85, 1, 1, 1, 1, 1]), None);
    }

    #[test]
    fn load_rejects_mismatched_key_and_names_files() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (cert_with_not_after(2030, 1, 1), cert_with_not_after(2030, 1, 1));
        let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert_path, a.cert.pem()).unwrap();
        std::fs::write(&key_path, b.signing_key.serialize_pem()).unwrap();
        let err = CertReloader::load(&cert_path, &key_path).unwrap_err();
        assert_eq!(err.metric_label(), "key_mismatch");
        assert!(err.to_string().contains("tls.key") && err.to_string().contains("tls.crt"), "{err}");

        std::fs::write(&key_path, "not a key").unwrap();
        assert_eq!(CertReloader::load(&cert_path, &key_path).unwrap_err().metric_label(), "no_key");
        let missing = dir.path().join("missing.crt");
        let err = CertReloader::load(&missing, &key_path).unwrap_err();
        assert_eq!(err.metric_label(), "read");
        assert!(err.to_string().contains("missing.crt"), "{err}");
    }

    #[test]
    fn accepts_a_sec1_ec_key() {
        // rcgen writes PKCS#8; the SEC1 ECPrivateKey is the OCTET STRING inside it.
        let pair = cert_with_not_after(2030, 1, 1);
        let pkcs8 = pair.signing_key.serialize_der();
        // PrivateKeyInfo ::= SEQUENCE { version, algorithm, privateKey OCTET STRING }
        let (_, info) = x509_parser::der_parser::parse_der(&pkcs8).unwrap();
        let fields = info.as_sequence().unwrap();
        assert_eq!(fields.len(), 3, "{info:?}");
        let sec1 = fields[2].as_slice().unwrap();
        let sec1_pem = pem_encode("EC PRIVATE KEY", sec1);
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert_path, pair.cert.pem()).unwrap();
        std::fs::write(&key_path, sec1_pem).unwrap();
        let reloader = CertReloader::load(&cert_path, &key_path).unwrap();
        assert_eq!(reloader.not_after(), Some(unix(2030, 1, 1)));
    }

    #[test]
    fn failure_counter_starts_at_zero_for_every_reason() {
        let mut registry = Registry::default();
        let metrics = CertMetrics::register(&mut registry);
        metrics.count_reload_failure("pem");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("placement_webhook_certificate_reload_failures_total{reason=\"pem\"} 1"), "{text}");
        assert!(text.contains("placement_webhook_certificate_reload_failures_total{reason=\"read\"} 0"), "{text}");
        assert!(text.contains("# UNIT placement_webhook_certificate_not_after_seconds seconds"), "{text}");
        assert_eq!(metrics.reload_failures_total(), 1);
    }

    fn pem_encode(label: &str, der: &[u8]) -> String {
        use base64::Engine as _;
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = body.as_bytes().chunks(64).map(|line| std::str::from_utf8(line).unwrap()).collect();
        format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
    }
}

//! A real Prometheus (Debian's `prometheus` 2.42) started once per test binary, scraping every second
//! a tiny exposition endpoint whose text the tests set ([`Prometheus::set_exposition`]). A scraped sample
//! is queryable ~5 s after start; later changes show within a scrape or two. A watchdog kills Prometheus
//! and removes its data when the test process is gone.

use placement_core::tracking::access::Permit;
use placement_operator::traffic::egress::Egress;
use placement_operator::traffic::prometheus::{PrometheusClient, PrometheusConfig};
use rust_decimal::Decimal;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// Longest wait for Prometheus to start and have the first scrape queryable (~5 s is usual).
const START_DEADLINE: Duration = Duration::from_secs(20);

/// The shared Prometheus.
pub struct Prometheus {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    exposition: Arc<Mutex<String>>,
    // Held so it is not reaped; the watchdog kills it when this test binary exits (a static is never
    // dropped, so `kill_on_drop` could not do it).
    _prometheus: Mutex<Child>,
}

static PROMETHEUS: OnceCell<Result<Prometheus, String>> = OnceCell::const_new();

/// The shared Prometheus, started by the first caller with `initial` as the exposition text; panics
/// with the reason when it cannot be started.
pub async fn shared(initial: &str) -> &'static Prometheus {
    match PROMETHEUS.get_or_init(|| start(initial.to_string())).await {
        Ok(f) => f,
        Err(e) => panic!("{e}"),
    }
}

impl Prometheus {
    /// Replace what the scraped endpoint serves.
    pub fn set_exposition(&self, text: &str) {
        *self.exposition.lock().unwrap() = text.to_string();
    }
}

async fn start(initial: String) -> Result<Prometheus, String> {
    let version = Command::new("prometheus").arg("--version").output();
    if !version.is_ok_and(|o| o.status.success()) {
        return Err("the `prometheus` binary is not installed or does not run: these tests need a real \
                    Prometheus (`scripts/test` installs it: `apt-get install -y --no-install-recommends prometheus`)"
            .into());
    }
    let text = Arc::new(Mutex::new(initial));
    let exposition = serve_exposition(text.clone()).map_err(|e| format!("exposition endpoint: {e}"))?;
    let port = free_port().map_err(|e| format!("no free port: {e}"))?;
    let dir = tempfile::Builder::new()
        .prefix("tw-prometheus-")
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?
        .keep();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: tw\n    \
             static_configs:\n      - targets: ['{exposition}']\n"
        ),
    )
    .map_err(|e| format!("writing {}: {e}", config.display()))?;
    let log_path = dir.join("prometheus.log");
    let log = std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    let mut child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| format!("starting prometheus: {e}"))?;
    // Kill Prometheus and remove its directory once this test process is gone.
    Command::new("sh")
        .arg("-c")
        .arg(r#"while kill -0 "$0" 2>/dev/null; do sleep 0.5; done; kill "$1"; sleep 2; kill -9 "$1"; rm -rf "$2""#)
        .arg(std::process::id().to_string())
        .arg(child.id().to_string())
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            let _ = child.kill();
            format!("starting the watchdog: {e}")
        })?;

    let address = format!("http://127.0.0.1:{port}");
    let mut config = PrometheusConfig::new(&address, "up{job=\"tw\"}").map_err(|e| e.to_string())?;
    config.egress = Egress::new(Permit::any_loopback("the test's Prometheus"));
    config.timeout = Duration::from_secs(1);
    let client = PrometheusClient::new(config).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut last = String::from("no query yet");
    while started.elapsed() < START_DEADLINE {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("prometheus exited with {status}: {}", log_tail(&log_path)));
        }
        match client.query().await {
            Ok(s) if s.value == Decimal::ONE => {
                eprintln!("prometheus ready after {:?} at {address}", started.elapsed());
                return Ok(Prometheus { address, exposition: text, _prometheus: Mutex::new(child) });
            }
            Ok(s) => last = format!("unexpected value {s:?}"),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let _ = child.kill();
    Err(format!(
        "prometheus did not return the scraped sample within {START_DEADLINE:?} (last: {last}); log: {}",
        log_tail(&log_path)
    ))
}

fn log_tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A plain-thread HTTP endpoint answering every request with the current `text` (independent of any
/// test's tokio runtime, since the fixture outlives the test that started it).
fn serve_exposition(text: Arc<Mutex<String>>) -> std::io::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?.to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let body = text.lock().map(|t| t.clone()).unwrap_or_default();
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(answer.as_bytes());
        }
    });
    Ok(address)
}

//! The AWS API emulator `moto_server` on 127.0.0.1, started once per test binary (install it with
//! `pip install 'moto[server]'`; `.ci/run` does). It goes away with the test process.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The shared moto server.
pub struct Moto {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// A `sh` that owns moto and kills it when its stdin (held here) closes: when this test process exits,
    /// however it exits, the pipe closes and moto goes with it.
    _guard: Mutex<Child>,
}

static MOTO: OnceLock<Result<Moto, String>> = OnceLock::new();

/// The shared moto server's URL, started by the first caller; panics with the reason if it cannot start.
pub fn moto_url() -> String {
    match MOTO.get_or_init(start_moto) {
        Ok(m) => m.url.clone(),
        Err(e) => panic!("{e}"),
    }
}

fn start_moto() -> Result<Moto, String> {
    let found = Command::new("sh").args(["-c", "command -v moto_server"]).output().map_err(|e| e.to_string())?;
    if !found.status.success() {
        return Err("moto_server is not on PATH: `scripts/test` installs it (`pip install 'moto[server]'`)".into());
    }
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let log = std::env::temp_dir().join(format!("placement-moto-{}-{port}.log", std::process::id()));
    let child = Command::new("sh")
        .args([
            "-c",
            r#"moto_server -H 127.0.0.1 -p "$1" >"$2" 2>&1 & pid=$!; read -r _ignored; kill "$pid""#,
            "moto-guard",
            &port.to_string(),
            &log.to_string_lossy(),
        ])
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start moto_server: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if answers_http(port) {
            return Ok(Moto { url: format!("http://127.0.0.1:{port}"), _guard: Mutex::new(child) });
        }
        if Instant::now() > deadline {
            let out = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!("moto_server did not answer on 127.0.0.1:{port} within 20 s; its output:\n{out}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn answers_http(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: localhost\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).is_ok() && &buf == b"HTTP/"
}

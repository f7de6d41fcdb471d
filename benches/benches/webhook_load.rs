//! The webhook end to end over HTTPS on loopback, under load: a server process holding a 150,000-pod
//! index (`Admission` + `server::mutate_route` + `serve::serve_tls`, the same stack `placement-webhook
//! serve` runs, minus the watchers), and a load generator with keep-alive connections sending pod CREATE
//! AdmissionReviews (dry runs unless `--reserve`) for a fixed time after a warm-up.
//!
//! The server is this binary re-executed with `PLACEMENT_BENCH_WEBHOOK_SERVE=1`: the generator's CPU and
//! memory are not the server's, and `/proc/<server>/` says what the server used. The parent generates the
//! cluster and streams its objects to the server's stdin (one `Kind<TAB>JSON` line each), the way a
//! watch would; the server only ever holds the live index.
//!
//! Closed loop by default (each connection sends its next request when the answer arrives: the most the
//! pair of processes sustains). `--rate R` is an open loop at R admissions/s in all, a request's latency
//! counted from when it was due (or sent, if earlier), so a slow answer is not hidden by the requests it
//! delayed.
//!
//! ```text
//! cargo bench -p placement-benches --bench webhook_load                                # 16 connections, 10 s
//! cargo bench -p placement-benches --bench webhook_load -- --rate 10000
//! cargo bench -p placement-benches --bench webhook_load -- --http2 --connections 2 --streams 8
//! cargo bench -p placement-benches --bench webhook_load -- --nodes 500 --seconds 3     # quick look
//! ```
//!
//! Options: `--seconds` (10), `--warmup` (2), `--connections` (16), `--streams` (per HTTP/2 connection,
//! 1), `--http2`, `--rate` (closed loop if absent), `--nodes` (5000), `--server-threads` (2),
//! `--client-threads` (1), `--reserve` (real admissions: reservations, expired every 500 ms as the
//! server does; no pod ever confirms them), `--ttl-seconds` (of a reservation, 30 as in the server),
//! `--expiry-ms` (how often expiry runs, 50 as in the server),
//! `--log` (the server logs at info, as JSON, to /dev/null).

#[allow(dead_code)] // shared with the webhook bench, which uses other parts
mod webhook_setup;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use placement_kube::live::{LiveIndex, SharedIndex};
use placement_webhook::admission::Admission;
use placement_webhook::decide::{Decider, StaticRules};
use placement_webhook::metrics::AdmissionMetrics;
use placement_webhook::serve::{ServeLimits, serve_tls};
use placement_webhook::server::mutate_route;
use placement_webhook::tls::CertReloader;
use prometheus_client::registry::Registry;
use rustls_pki_types::{CertificateDer, ServerName};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use webhook_setup::{Cluster, ReviewBody};

const SERVE_ENV: &str = "PLACEMENT_BENCH_WEBHOOK_SERVE";

/// Largest AdmissionReview the server accepts (the production default).
const MAX_BODY: u64 = 3 << 20;

/// The granularity of tokio's timer.
const TIMER_SLACK: Duration = Duration::from_millis(1);

struct Args {
    seconds: f64,
    warmup: f64,
    connections: usize,
    streams: usize,
    http2: bool,
    rate: Option<f64>,
    nodes: usize,
    server_threads: usize,
    client_threads: usize,
    reserve: bool,
    ttl: Duration,
    expiry_every: Duration,
    log: bool,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

impl Args {
    /// Reads the options it knows and ignores the rest (`cargo bench` adds `--bench`).
    fn parse() -> Args {
        let args: Vec<String> = std::env::args().collect();
        let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
        let number = |name: &str, default: f64| value(name).and_then(|v| v.parse::<f64>().ok()).unwrap_or(default);
        let flag = |name: &str| args.iter().any(|a| a == name);
        let http2 = flag("--http2");
        Args {
            seconds: number("--seconds", 10.0),
            warmup: number("--warmup", 2.0),
            connections: number("--connections", 16.0).max(1.0) as usize,
            streams: if http2 { number("--streams", 1.0).max(1.0) as usize } else { 1 },
            http2,
            rate: value("--rate").and_then(|v| v.parse::<f64>().ok()).filter(|r| *r > 0.0),
            nodes: number("--nodes", 5_000.0) as usize,
            server_threads: number("--server-threads", 2.0).max(1.0) as usize,
            client_threads: number("--client-threads", 1.0).max(1.0) as usize,
            reserve: flag("--reserve"),
            ttl: Duration::from_secs_f64(number("--ttl-seconds", 30.0).max(0.0)),
            expiry_every: Duration::from_secs_f64(number("--expiry-ms", 50.0).max(1.0) / 1e3),
            log: flag("--log"),
            cert: value("--cert").map(PathBuf::from),
            key: value("--key").map(PathBuf::from),
        }
    }
}

fn main() {
    let args = Args::parse();
    if std::env::var_os(SERVE_ENV).is_some() {
        serve(&args);
    } else {
        load(&args);
    }
}

// ---- the server process ---------------------------------------------------------------------------------

/// Child: read the cluster from stdin into a live index, serve HTTPS until stdin says `STOP` or closes.
fn serve(args: &Args) {
    if args.log {
        let devnull = std::fs::File::create("/dev/null").expect("/dev/null");
        tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
            .with_writer(std::sync::Mutex::new(devnull))
            .init();
    }
    let mut index = LiveIndex::new();
    let mut line = String::new();
    let mut input = std::io::stdin().lock();
    loop {
        line.clear();
        if input.read_line(&mut line).expect("read the cluster") == 0 {
            return;
        }
        let text = line.trim_end();
        if text == "END" {
            break;
        }
        if let Some((kind, json)) = text.split_once('\t') {
            webhook_setup::apply_json(&mut index, kind, json);
        }
    }
    drop(input);
    let (nodes, pods) = (index.node_count(), index.pod_count());
    let rss = status_kib("self", "VmRSS:");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.server_threads)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let cert = args.cert.clone().expect("--cert");
        let key = args.key.clone().expect("--key");
        let certs = Arc::new(CertReloader::load(cert, key).expect("certificate"));
        let tls = Arc::new(certs.server_config());
        let decider =
            Arc::new(Decider::new(SharedIndex::from_index(index), Arc::new(StaticRules::default()), args.ttl));
        let metrics = AdmissionMetrics::register(&mut Registry::default());
        let admission = Arc::new(Admission::new(decider.clone(), metrics, Duration::from_millis(1_500)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_tls(
            listener,
            tls,
            mutate_route(admission, MAX_BODY),
            async move {
                let _ = stopped.await;
            },
            ServeLimits::default(),
        ));
        // Reservations whose pods never come expire, as in the server. Ticks, total and longest time.
        let expiry = Arc::new(Mutex::new((0u32, Duration::ZERO, Duration::ZERO)));
        let upkeep = {
            let (decider, expiry, expiry_every) = (decider.clone(), expiry.clone(), args.expiry_every);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(expiry_every);
                loop {
                    tick.tick().await;
                    let t = Instant::now();
                    decider.expire_reservations();
                    let took = t.elapsed();
                    let mut e = expiry.lock().unwrap_or_else(PoisonError::into_inner);
                    *e = (e.0 + 1, e.1 + took, e.2.max(took));
                }
            })
        };
        println!("READY {port} {nodes} {pods} {rss}");
        tokio::task::spawn_blocking(|| {
            for line in std::io::stdin().lines() {
                match line {
                    Ok(l) if l.trim() == "STOP" => break,
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        })
        .await
        .expect("stdin reader");
        let reservations = decider.index().read().ledger().len();
        upkeep.abort();
        let _ = stop.send(());
        let _ = server.await;
        let (ticks, total, longest) = *expiry.lock().unwrap_or_else(PoisonError::into_inner);
        println!("STOPPED {reservations} {ticks} {} {}", total.as_micros(), longest.as_micros());
    });
}

fn status_kib(pid: &str, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

// ---- CPU accounting -------------------------------------------------------------------------------------

/// CPU seconds (user + system) a process has used so far.
fn process_cpu(pid: &str, ticks_per_second: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces): state is the 3rd
    // field, utime the 14th and stime the 15th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / ticks_per_second
}

/// Busy CPU seconds of the whole machine so far (everything but idle and iowait).
fn machine_busy(ticks_per_second: f64) -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    if cpu.len() < 5 {
        return 0.0;
    }
    (cpu.iter().sum::<f64>() - cpu[3] - cpu[4]) / ticks_per_second
}

fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

#[derive(Clone, Copy, Default)]
struct Cpu {
    server: f64,
    client: f64,
    machine: f64,
}

impl Cpu {
    fn now(server_pid: &str, tps: f64) -> Cpu {
        Cpu { server: process_cpu(server_pid, tps), client: process_cpu("self", tps), machine: machine_busy(tps) }
    }
}

// ---- the load generator ---------------------------------------------------------------------------------

/// When each phase starts and ends, and the pace of one client (`None`: closed loop).
#[derive(Clone, Copy)]
struct Plan {
    measure_from: Instant,
    end: Instant,
    interval: Option<Duration>,
}

/// What one client saw in the measured window.
#[derive(Default)]
struct Tally {
    /// Latency of each answer completed in the window, in nanoseconds.
    latencies: Vec<u64>,
    errors: u64,
    unpatched: u64,
    first_error: Option<String>,
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

async fn connect(addr: SocketAddr, tls: Arc<rustls::ClientConfig>, http2: bool) -> Result<Sender, String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").expect("server name");
    let stream = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await.map_err(|e| e.to_string())?;
    let io = TokioIo::new(stream);
    if http2 {
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.map_err(|e| e.to_string())?;
        tokio::spawn(async move { drop(conn.await) });
        Ok(Sender::H2(sender))
    } else {
        let (sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
        tokio::spawn(async move { drop(conn.await) });
        Ok(Sender::H1(sender))
    }
}

impl Sender {
    fn share(&self) -> Option<Sender> {
        match self {
            Sender::H1(_) => None,
            Sender::H2(s) => Some(Sender::H2(s.clone())),
        }
    }

    /// One admission: the answer's body, or why there is none.
    async fn admit(&mut self, body: Bytes) -> Result<Bytes, String> {
        let len = body.len();
        let request = http::Request::post("https://localhost/mutate")
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::CONTENT_LENGTH, len)
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let response = match self {
            Sender::H1(s) => {
                s.ready().await.map_err(|e| e.to_string())?;
                s.send_request(request).await
            }
            Sender::H2(s) => {
                s.ready().await.map_err(|e| e.to_string())?;
                s.send_request(request).await
            }
        }
        .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        if status != http::StatusCode::OK {
            return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)));
        }
        Ok(body)
    }
}

/// One client: sends reviews (rotating over `bodies`, each with a fresh uid) until the plan ends.
async fn client(
    id: usize,
    mut sender: Sender,
    reconnect: impl Fn() -> std::pin::Pin<Box<dyn Future<Output = Result<Sender, String>> + Send>>,
    mut bodies: Vec<ReviewBody>,
    plan: Plan,
    start: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut uid = (id as u64) << 32;
    let mut due = start;
    let mut k = id;
    loop {
        let sent = match plan.interval {
            Some(interval) => {
                // tokio's timer fires on whole milliseconds, late: wake up to one early instead. A request
                // sent early counts from when it was sent; one sent late (its connection was busy) from
                // when it was due.
                if due > Instant::now() + TIMER_SLACK {
                    tokio::time::sleep_until((due - TIMER_SLACK).into()).await;
                }
                let at = due.min(Instant::now());
                due += interval;
                at
            }
            None => Instant::now(),
        };
        if sent >= plan.end {
            break;
        }
        k = (k + 1) % bodies.len();
        uid += 1;
        let body = &mut bodies[k];
        body.set_uid(uid);
        let answer = sender.admit(Bytes::copy_from_slice(&body.bytes)).await;
        let done = Instant::now();
        let counted = done >= plan.measure_from && done <= plan.end;
        match answer {
            Ok(answer) => {
                if counted {
                    tally.latencies.push((done - sent).as_nanos() as u64);
                    if !contains(&answer, b"\"patch\"") {
                        tally.unpatched += 1;
                    }
                }
            }
            Err(e) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(e);
                match reconnect().await {
                    Ok(s) => sender = s,
                    Err(e) => {
                        tally.first_error.get_or_insert(format!("reconnect: {e}"));
                        break;
                    }
                }
            }
        }
    }
    tally
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn client_tls(cert: CertificateDer<'static>, http2: bool) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("trust the server certificate");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![if http2 { b"h2".to_vec() } else { b"http/1.1".to_vec() }];
    Arc::new(config)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1e6
}

/// Parent: generate the cluster, start the server child, feed it, load it, report.
fn load(args: &Args) {
    let started = Instant::now();
    let cluster = Cluster::generate(args.nodes);
    let bodies: Vec<ReviewBody> = cluster.strategy_pods.iter().map(|p| ReviewBody::new(p, !args.reserve)).collect();
    assert!(!bodies.is_empty(), "no annotated Deployment");

    let certs = tempfile::tempdir().expect("temp dir");
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    let (cert_path, key_path) = (certs.path().join("tls.crt"), certs.path().join("tls.key"));
    std::fs::write(&cert_path, generated.cert.pem()).expect("write certificate");
    std::fs::write(&key_path, generated.signing_key.serialize_pem()).expect("write key");
    let mut command = Command::new(std::env::current_exe().expect("current exe"));
    command.env(SERVE_ENV, "1").args(["--server-threads", &args.server_threads.to_string()]);
    command.args(["--ttl-seconds", &args.ttl.as_secs_f64().to_string()]);
    command.args(["--expiry-ms", &(args.expiry_every.as_secs_f64() * 1e3).to_string()]);
    command.arg("--cert").arg(&cert_path).arg("--key").arg(&key_path);
    if args.log {
        command.arg("--log");
    }
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("spawn the server process");
    let server_pid = child.id().to_string();
    let mut to_server = BufWriter::with_capacity(1 << 20, child.stdin.take().expect("child stdin"));
    let mut bytes = 0usize;
    for o in cluster.objects() {
        let kind = o["kind"].as_str().unwrap_or_default().to_string();
        let json = serde_json::to_string(&o).expect("object JSON");
        bytes += json.len();
        writeln!(to_server, "{kind}\t{json}").expect("feed the server");
    }
    writeln!(to_server, "END").expect("feed the server");
    to_server.flush().expect("feed the server");
    let workloads: Vec<String> = cluster.strategy_pods.iter().map(|p| p.label.clone()).collect();
    drop(cluster);
    let mut from_server = BufReader::new(child.stdout.take().expect("child stdout")).lines();
    let ready = from_server.by_ref().map_while(Result::ok).find(|l| l.starts_with("READY ")).expect("server ready");
    let ready: Vec<u64> = ready.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let (port, nodes, pods, rss_loaded) = (ready[0] as u16, ready[1], ready[2], ready[3]);
    eprintln!(
        "server ready on 127.0.0.1:{port}: {nodes} nodes, {pods} pods, {:.0} MB of JSON streamed, {:.1} s after start",
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    eprintln!("reviews of: {}", workloads.join(", "));

    let tps = ticks_per_second();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let tls = client_tls(generated.cert.der().clone(), args.http2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads)
        .enable_all()
        .build()
        .expect("runtime");
    let clients = args.connections * args.streams;
    let (tallies, window, cpu) = rt.block_on(async {
        let mut senders = Vec::with_capacity(clients);
        for _ in 0..args.connections {
            let first = connect(addr, tls.clone(), args.http2).await.expect("connect");
            for _ in 1..args.streams {
                senders.push(first.share().expect("HTTP/2 connection"));
            }
            senders.push(first);
        }
        let start = Instant::now() + Duration::from_millis(50);
        let measure_from = start + Duration::from_secs_f64(args.warmup);
        let end = measure_from + Duration::from_secs_f64(args.seconds);
        let interval = args.rate.map(|r| Duration::from_secs_f64(clients as f64 / r));
        let plan = Plan { measure_from, end, interval };
        let mut tasks = Vec::with_capacity(clients);
        for (id, sender) in senders.into_iter().enumerate() {
            let tls = tls.clone();
            let http2 = args.http2;
            let reconnect = move || {
                let tls = tls.clone();
                Box::pin(connect(addr, tls, http2))
                    as std::pin::Pin<Box<dyn Future<Output = Result<Sender, String>> + Send>>
            };
            // Open loop: clients start evenly spread over one interval.
            let offset = interval.map(|i| i.mul_f64(id as f64 / clients as f64)).unwrap_or_default();
            tasks.push(tokio::spawn(client(id, sender, reconnect, bodies.clone(), plan, start + offset)));
        }
        tokio::time::sleep_until(measure_from.into()).await;
        let before = Cpu::now(&server_pid, tps);
        tokio::time::sleep_until(end.into()).await;
        let after = Cpu::now(&server_pid, tps);
        let mut tallies = Vec::with_capacity(tasks.len());
        for t in tasks {
            tallies.push(t.await.expect("client task"));
        }
        let cpu = Cpu {
            server: after.server - before.server,
            client: after.client - before.client,
            machine: after.machine - before.machine,
        };
        (tallies, end - measure_from, cpu)
    });
    let rss_after = status_kib(&server_pid, "VmRSS:");
    let hwm = status_kib(&server_pid, "VmHWM:");
    let _ = writeln!(to_server, "STOP").and_then(|()| to_server.flush());
    let stopped = from_server.map_while(Result::ok).find(|l| l.starts_with("STOPPED "));
    drop(to_server);
    let _ = child.wait();

    let mut latencies: Vec<u64> = tallies.iter().flat_map(|t| t.latencies.iter().copied()).collect();
    latencies.sort_unstable();
    let errors: u64 = tallies.iter().map(|t| t.errors).sum();
    let unpatched: u64 = tallies.iter().map(|t| t.unpatched).sum();
    let secs = window.as_secs_f64();
    let done = latencies.len();
    let protocol = if args.http2 {
        format!("HTTP/2, {} connections x {} streams", args.connections, args.streams)
    } else {
        format!("HTTP/1.1 keep-alive, {} connections", args.connections)
    };
    let mode = match args.rate {
        Some(r) => format!("open loop at {r:.0}/s"),
        None => "closed loop".to_string(),
    };
    let kind = if args.reserve { "real admissions (reserving)" } else { "dry runs" };
    println!(
        "webhook over HTTPS ({protocol}, {mode}, {kind}); {nodes} nodes / {pods} pods; server {} threads, load generator {}{}",
        args.server_threads,
        args.client_threads,
        if args.log { "; server logging at info" } else { "" }
    );
    println!(
        "  admissions/s:   {:.0}  ({done} in {secs:.1} s; {errors} errors, {unpatched} without a patch)",
        done as f64 / secs
    );
    println!(
        "  latency (ms):   p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        percentile(&latencies, 50.0),
        percentile(&latencies, 90.0),
        percentile(&latencies, 99.0),
        percentile(&latencies, 99.9),
        latencies.last().copied().unwrap_or(0) as f64 / 1e6
    );
    let others = (cpu.machine - cpu.server - cpu.client).max(0.0);
    println!(
        "  CPU (cores):    server {:.2}, load generator {:.2}, everything else {:.2}",
        cpu.server / secs,
        cpu.client / secs,
        others / secs
    );
    if done > 0 {
        println!(
            "  CPU per admission: server {:.0} µs, load generator {:.0} µs",
            cpu.server / done as f64 * 1e6,
            cpu.client / done as f64 * 1e6
        );
    }
    println!(
        "  server RSS:     {} MB with the index loaded, {} MB after the run (peak {} MB)",
        rss_loaded / 1024,
        rss_after / 1024,
        hwm / 1024
    );
    let stopped: Vec<u64> =
        stopped.unwrap_or_default().split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    if let [reservations, ticks, total_us, longest_us] = stopped[..]
        && args.reserve
    {
        println!(
            "  ledger:         {reservations} reservations at the end; expiry ran {ticks} times (every {} ms, under \
             the index write lock): {:.1} ms in all, longest {:.2} ms",
            args.expiry_every.as_millis(),
            total_us as f64 / 1e3,
            longest_us as f64 / 1e3
        );
    }
    if let Some(e) = tallies.iter().find_map(|t| t.first_error.clone()) {
        println!("  first error: {e}");
    }
}

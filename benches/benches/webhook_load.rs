//! The webhook end to end over HTTPS on loopback, under load, measured against a baseline in the same
//! run: absolute rates do not carry from one machine to the next, a ratio to the same stack doing nothing
//! mostly does.
//!
//! **Processes.** The server is this binary re-executed (`PLACEMENT_BENCH_WEBHOOK_ROLE`), so that the
//! load generator's CPU and memory are not the server's and `/proc/<server>/` says what the server used.
//! - `webhook`: a 150,000-pod live index behind `Admission` + `server::mutate_route` +
//!   `serve::serve_tls_metered` with the default `ServeLimits`, the stack `placement-webhook serve` runs
//!   minus the watchers, plus the probe routes (`/healthz`, ...) on a plain-HTTP listener as the real
//!   server mounts them. The parent generates the cluster and streams its objects to the child's stdin
//!   (one `Kind<TAB>JSON` line each), the way a watch would; the child only ever holds the live index.
//! - `echo` (the baseline, [`webhook_echo`]): the same stack minus the webhook's work: tokio with the
//!   same number of workers, the webhook's rustls `ServerConfig` (ring, the same rcgen certificate and
//!   ALPN), hyper HTTP/1.1 or HTTP/2 by ALPN through hyper-util, and a handler that reads the whole body,
//!   takes `request.uid` from it (a serde pass that builds nothing else) and answers a fixed small
//!   AdmissionReview, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":
//!   <uid>,"allowed":true}}`. Echoing the 2.9 KB body back would charge the baseline TLS and write work
//!   the webhook's smaller answer does not have; no uid would be no AdmissionReview at all.
//! - `hostile` (hostile mode only, [`webhook_attack`]): the attacker, in its own process so that its CPU
//!   is reported apart.
//!
//! **Default run.** The same load against the echo, then against the webhook (`--no-echo`: the webhook
//! alone); it reports each, then the webhook's admissions/s as a fraction of the echo's (closed loop) and
//! server CPU per admission beside the echo's. Closed loop by default (each connection sends its next
//! review when the answer arrives: the most the pair of processes sustains). `--rate R` is an open loop at
//! R admissions/s in all, a request's latency counted from when it was due (or sent, if earlier), so a
//! slow answer is not hidden by the requests it delayed.
//!
//! **Hostile mode** (`--hostile`), against the webhook: (a) the closed-loop maximum; (b) an open loop at
//! `--load-fraction` (0.7) of it, with `/healthz` probed every 100 ms over a fresh connection (as the
//! kubelet does) and the server's VmRSS sampled; (c) the same open loop while the attacker holds idle TLS
//! connections and trickling requests and sends reviews the webhook cannot use (see [`webhook_attack`]).
//! The honest connections of (c) are connected before the attacker starts, and the measured window begins
//! [`ATTACK_RAMP`] after the usual warm-up, once the attacker has opened what it can. It reports honest
//! p99 with the attack against without, the server's VmRSS (peak sampled) and VmHWM, `/healthz`
//! latency, honest answers rejected (not `200` or not `allowed: true`, warm-up included), and what the
//! server shed (its `placement_webhook_shed_total` counters over (c)) and the attacker saw.
//!
//! Benches report, never assert.
//!
//! ```text
//! cargo bench -p placement-benches --bench webhook_load                                # echo, then webhook: 16 connections, 10 s
//! cargo bench -p placement-benches --bench webhook_load -- --rate 10000
//! cargo bench -p placement-benches --bench webhook_load -- --http2 --connections 2 --streams 8
//! cargo bench -p placement-benches --bench webhook_load -- --nodes 500 --seconds 3     # quick look
//! cargo bench -p placement-benches --bench webhook_load -- --hostile
//! cargo bench -p placement-benches --bench webhook_load -- --hostile --trickle-length 2097152
//! ```
//!
//! Options: `--seconds` (10), `--warmup` (2), `--connections` (16), `--streams` (per HTTP/2 connection,
//! 1), `--http2`, `--rate` (closed loop if absent; in hostile mode, the rate of (b) and (c) instead of a
//! fraction of (a)), `--nodes` (5000), `--server-threads` (2), `--client-threads` (1), `--no-echo`,
//! `--reserve` (real admissions: reservations, expired as the server does; no pod ever confirms them),
//! `--ttl-seconds` (of a reservation, 30 as in the server), `--expiry-ms` (how often expiry runs, 50 as
//! in the server), `--log` (the server logs at info, as JSON, to /dev/null), `--server-cpus LIST` and
//! `--client-cpus LIST` (`taskset` CPU lists: the server processes on the one, this process, the load
//! generator and the attacker on the other, as if they ran on other machines; unpinned if absent).
//! Hostile mode: `--hostile`, `--load-fraction` (0.7), `--rounds` (1: (b) and (c) alternate this many
//! times; the summary compares the rounds pooled, and gives each round's ratio: one window's p99 at 70 %
//! of a core moves by an order of magnitude between runs on a shared machine, with no attack at all), and
//! the attack's own options (see [`webhook_attack::AttackArgs`]; `--attacker-idle` runs the attacker
//! under `SCHED_IDLE`, as if its CPU were another machine's).

#[allow(dead_code)] // shared with the webhook bench, which uses other parts
mod webhook_setup;

mod webhook_attack;
mod webhook_echo;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use placement_kube::live::{LiveIndex, SharedIndex};
use placement_webhook::admission::Admission;
use placement_webhook::decide::{Decider, StaticRules};
use placement_webhook::metrics::AdmissionMetrics;
use placement_webhook::probes::{self, Readiness};
use placement_webhook::serve::{ServeLimits, serve_plain, serve_tls_metered};
use placement_webhook::server::mutate_route;
use placement_webhook::shed::{Shed, ShedMetrics};
use placement_webhook::tls::CertReloader;
use prometheus_client::registry::Registry;
use rustls_pki_types::{CertificateDer, ServerName};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use webhook_attack::AttackArgs;
use webhook_setup::{Cluster, ReviewBody};

/// Which process this is: unset for the load generator, else one of the roles below.
const ROLE_ENV: &str = "PLACEMENT_BENCH_WEBHOOK_ROLE";
const WEBHOOK: &str = "webhook";
const ECHO: &str = "echo";
const HOSTILE: &str = "hostile";

/// Largest AdmissionReview the server accepts (the production default).
const MAX_BODY: u64 = 3 << 20;

/// An admission's time budget (the production default).
const ADMISSION_DEADLINE: Duration = Duration::from_millis(1_500);

/// The granularity of tokio's timer.
const TIMER_SLACK: Duration = Duration::from_millis(1);

/// Hostile mode: extra warm-up of run (c), for the attacker to open its connections.
const ATTACK_RAMP: Duration = Duration::from_secs(5);

/// How often `/healthz` is probed and the server's RSS read.
const PROBE_EVERY: Duration = Duration::from_millis(100);

/// The kubelet's default probe timeout: a `/healthz` slower than this fails the probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Open files a server child wants: the connection cap (1,024), the sockets it accepts past the cap
/// for a moment before closing them, and its own.
const SERVER_OPEN_FILES: u64 = 4_096;

/// The command line, read by option name; what is not asked for is ignored (`cargo bench` adds `--bench`).
struct Argv(Vec<String>);

impl Argv {
    fn from_env() -> Argv {
        Argv(std::env::args().collect())
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.0.iter().position(|a| a == name).and_then(|i| self.0.get(i + 1)).map(String::as_str)
    }

    fn number(&self, name: &str, default: f64) -> f64 {
        self.value(name).and_then(|v| v.parse::<f64>().ok()).unwrap_or(default)
    }

    fn flag(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }

    fn path(&self, name: &str) -> Option<PathBuf> {
        self.value(name).map(PathBuf::from)
    }
}

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
    /// Load the echo baseline first (`--no-echo`: the webhook alone).
    echo: bool,
    hostile: bool,
    /// Hostile mode: the open loop's rate as a fraction of the closed loop's.
    load_fraction: f64,
    attack: AttackArgs,
    /// Hostile mode: how many times the quiet and the attacked windows alternate.
    rounds: usize,
    /// CPUs the server processes are pinned to (`taskset` list), if any.
    server_cpus: Option<String>,
    /// CPUs this process (the load generator) and the attacker are pinned to, if any.
    client_cpus: Option<String>,
}

impl Args {
    fn parse(argv: &Argv) -> Args {
        let http2 = argv.flag("--http2");
        Args {
            seconds: argv.number("--seconds", 10.0),
            warmup: argv.number("--warmup", 2.0),
            connections: argv.number("--connections", 16.0).max(1.0) as usize,
            streams: if http2 { argv.number("--streams", 1.0).max(1.0) as usize } else { 1 },
            http2,
            rate: argv.value("--rate").and_then(|v| v.parse::<f64>().ok()).filter(|r| *r > 0.0),
            nodes: argv.number("--nodes", 5_000.0) as usize,
            server_threads: argv.number("--server-threads", 2.0).max(1.0) as usize,
            client_threads: argv.number("--client-threads", 1.0).max(1.0) as usize,
            reserve: argv.flag("--reserve"),
            ttl: Duration::from_secs_f64(argv.number("--ttl-seconds", 30.0).max(0.0)),
            expiry_every: Duration::from_secs_f64(argv.number("--expiry-ms", 50.0).max(1.0) / 1e3),
            log: argv.flag("--log"),
            cert: argv.path("--cert"),
            key: argv.path("--key"),
            echo: !argv.flag("--no-echo"),
            hostile: argv.flag("--hostile"),
            load_fraction: argv.number("--load-fraction", 0.7).clamp(0.01, 1.0),
            attack: AttackArgs::parse(argv),
            rounds: argv.number("--rounds", 1.0).max(1.0) as usize,
            server_cpus: argv.value("--server-cpus").map(str::to_string),
            client_cpus: argv.value("--client-cpus").map(str::to_string),
        }
    }

    /// The certificate and key a server child was given.
    fn cert_pair(&self) -> (PathBuf, PathBuf) {
        (self.cert.clone().expect("--cert"), self.key.clone().expect("--key"))
    }
}

fn main() {
    let argv = Argv::from_env();
    let args = Args::parse(&argv);
    match std::env::var(ROLE_ENV).as_deref() {
        Ok(WEBHOOK) => serve_webhook(&args),
        Ok(ECHO) => webhook_echo::serve(args.cert_pair(), args.server_threads),
        Ok(HOSTILE) => webhook_attack::run(&argv),
        _ if args.hostile => {
            pin(std::process::id(), args.client_cpus.as_deref());
            hostile_run(&args)
        }
        _ => {
            pin(std::process::id(), args.client_cpus.as_deref());
            compare_run(&args)
        }
    }
}

/// Pins every thread of process `pid` (and the threads and children it makes later) to `cpus`, a
/// `taskset` CPU list, with util-linux's `taskset` (the code forbids `unsafe`); nothing if `None`.
/// Panics if it cannot: a run that asked for pinning and did not get it would report the wrong thing.
fn pin(pid: u32, cpus: Option<&str>) {
    let Some(cpus) = cpus else { return };
    let status = Command::new("taskset")
        .args(["--all-tasks", "--cpu-list", "--pid", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .status();
    assert!(status.as_ref().is_ok_and(|s| s.success()), "taskset -a -c -p {cpus} {pid}: {status:?}");
}

// ---- what every child process shares --------------------------------------------------------------------

/// A multi-threaded runtime with `threads` workers.
fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().expect("runtime")
}

/// Follows the parent's commands on stdin until `STOP` or until the parent is gone; `STATS` is answered
/// with one line, `STATS ` and then what `stats` says.
async fn follow_commands(stats: impl Fn() -> String + Send + 'static) {
    tokio::task::spawn_blocking(move || {
        for line in std::io::stdin().lines() {
            match line.as_deref().map(str::trim) {
                Ok("STATS") => println!("STATS {}", stats()),
                Ok("STOP") | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("stdin reader");
}

/// Makes sure this process may hold `needed` open files, raising its soft `RLIMIT_NOFILE` up to the hard
/// limit with `prlimit(1)` when it is lower (the code forbids `unsafe`, and `prlimit` is util-linux's).
/// Warns when it cannot.
fn ensure_open_files(needed: u64) {
    let (soft, hard) = open_file_limits();
    if soft >= needed {
        return;
    }
    let hard_text = if hard == u64::MAX { "unlimited".to_string() } else { hard.to_string() };
    let raised = Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={}:{hard_text}", needed.min(hard)))
        .status();
    let (soft, _) = open_file_limits();
    if soft < needed {
        eprintln!("warning: {soft} open files allowed (hard limit {hard_text}), {needed} wanted (prlimit: {raised:?})");
    }
}

/// The soft and hard limits on open files, from `/proc/self/limits` (`unlimited` is `u64::MAX`).
fn open_file_limits() -> (u64, u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let values = limits.lines().find_map(|l| l.strip_prefix("Max open files")).unwrap_or("");
    let mut values = values.split_whitespace().map(|v| v.parse().unwrap_or(u64::MAX));
    (values.next().unwrap_or(0), values.next().unwrap_or(0))
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

/// `name=value` pairs, as the children report counters.
type Counters = BTreeMap<String, u64>;

fn parse_counters(text: &str) -> Counters {
    text.split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .filter_map(|(name, value)| Some((name.to_string(), value.parse().ok()?)))
        .collect()
}

// ---- the webhook server process -------------------------------------------------------------------------

/// Child: read the cluster from stdin into a live index, serve the webhook over HTTPS and its probes
/// over plain HTTP until stdin says `STOP` or closes; `STATS` is answered with the shed counters.
fn serve_webhook(args: &Args) {
    if args.log {
        let devnull = std::fs::File::create("/dev/null").expect("/dev/null");
        tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
            .with_writer(std::sync::Mutex::new(devnull))
            .init();
    }
    ensure_open_files(SERVER_OPEN_FILES);
    let Some(index) = read_cluster() else { return };
    let (nodes, pods) = (index.node_count(), index.pod_count());
    let rss = status_kib("self", "VmRSS:");
    runtime(args.server_threads).block_on(async {
        let server = WebhookServer::start(args, index).await;
        println!("READY {} {nodes} {pods} {rss} {}", server.port, server.probe_port);
        let shed = server.shed.clone();
        follow_commands(move || shed_counters(&shed)).await;
        let reservations = server.decider.index().read().ledger().len();
        let (ticks, total, longest) = server.stop().await;
        println!("STOPPED {reservations} {ticks} {} {}", total.as_micros(), longest.as_micros());
    });
}

/// The cluster streamed on stdin, up to its `END` line (`None` if stdin closes first).
fn read_cluster() -> Option<LiveIndex> {
    let mut index = LiveIndex::new();
    let mut line = String::new();
    let mut input = std::io::stdin().lock();
    loop {
        line.clear();
        if input.read_line(&mut line).expect("read the cluster") == 0 {
            return None;
        }
        let text = line.trim_end();
        if text == "END" {
            return Some(index);
        }
        if let Some((kind, json)) = text.split_once('\t') {
            webhook_setup::apply_json(&mut index, kind, json);
        }
    }
}

/// `placement_webhook_shed_total` by reason, and the open connections, as `name=value` pairs.
fn shed_counters(shed: &ShedMetrics) -> String {
    let mut pairs: Vec<String> =
        Shed::ALL.iter().map(|&why| format!("{}={}", why.as_str(), shed.shed_total(why))).collect();
    pairs.push(format!("open={}", shed.open_connections()));
    pairs.join(" ")
}

/// Expiry ticks so far: how many, their total time, the longest.
type ExpiryTicks = Arc<Mutex<(u32, Duration, Duration)>>;

/// The webhook's listeners and reservation upkeep, inside the server process.
struct WebhookServer {
    port: u16,
    probe_port: u16,
    decider: Arc<Decider>,
    shed: ShedMetrics,
    expiry: ExpiryTicks,
    stop: tokio::sync::watch::Sender<bool>,
    listeners: Vec<tokio::task::JoinHandle<()>>,
    upkeep: tokio::task::JoinHandle<()>,
}

impl WebhookServer {
    async fn start(args: &Args, index: LiveIndex) -> WebhookServer {
        let (cert, key) = args.cert_pair();
        let tls = Arc::new(Arc::new(CertReloader::load(cert, key).expect("certificate")).server_config());
        let decider =
            Arc::new(Decider::new(SharedIndex::from_index(index), Arc::new(StaticRules::default()), args.ttl));
        let mut registry = Registry::default();
        let metrics = AdmissionMetrics::register(&mut registry);
        let shed = metrics.shed().clone();
        let admission = Arc::new(Admission::new(decider.clone(), metrics, ADMISSION_DEADLINE));
        let (listener, port) = bind_loopback().await;
        let (probe_listener, probe_port) = bind_loopback().await;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        let mutate = mutate_route(admission, MAX_BODY);
        let limits = ServeLimits::default();
        let probe_routes = probes::routes(ready(), Arc::new(registry));
        let listeners = vec![
            tokio::spawn(serve_tls_metered(listener, tls, mutate, until_stopped(), limits, shed.clone())),
            tokio::spawn(serve_plain(probe_listener, probe_routes, until_stopped())),
        ];
        let expiry = ExpiryTicks::default();
        let upkeep = tokio::spawn(expire_reservations(decider.clone(), expiry.clone(), args.expiry_every));
        WebhookServer { port, probe_port, decider, shed, expiry, stop, listeners, upkeep }
    }

    /// Stops the upkeep, closes the listeners and drains them; the expiry ticks.
    async fn stop(self) -> (u32, Duration, Duration) {
        self.upkeep.abort();
        let _ = self.stop.send(true);
        for listener in self.listeners {
            let _ = listener.await;
        }
        *self.expiry.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn bind_loopback() -> (tokio::net::TcpListener, u16) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    (listener, port)
}

/// Readiness as the real server has it once its certificate is loaded and its indexes synced.
fn ready() -> Readiness {
    let readiness = Readiness::new();
    readiness.set_certificates_loaded(true);
    readiness.set_indexes_synced(true);
    readiness
}

/// Reservations whose pods never come expire every `every`, as in the server.
async fn expire_reservations(decider: Arc<Decider>, expiry: ExpiryTicks, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let t = Instant::now();
        decider.expire_reservations();
        let took = t.elapsed();
        let mut e = expiry.lock().unwrap_or_else(PoisonError::into_inner);
        *e = (e.0 + 1, e.1 + took, e.2.max(took));
    }
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

/// The processes whose CPU a run reports.
struct Pids {
    server: String,
    hostile: Option<String>,
}

#[derive(Clone, Copy, Default)]
struct Cpu {
    server: f64,
    client: f64,
    hostile: f64,
    machine: f64,
}

impl Cpu {
    fn now(pids: &Pids) -> Cpu {
        let tps = ticks_per_second();
        Cpu {
            server: process_cpu(&pids.server, tps),
            client: process_cpu("self", tps),
            hostile: pids.hostile.as_deref().map_or(0.0, |pid| process_cpu(pid, tps)),
            machine: machine_busy(tps),
        }
    }

    fn since(&self, before: &Cpu) -> Cpu {
        Cpu {
            server: self.server - before.server,
            client: self.client - before.client,
            hostile: self.hostile - before.hostile,
            machine: self.machine - before.machine,
        }
    }

    /// What neither the server, the load generator nor the attacker used: other work on the machine.
    fn others(&self) -> f64 {
        (self.machine - self.server - self.client - self.hostile).max(0.0)
    }
}

// ---- child processes, from the parent -------------------------------------------------------------------

/// A child process of the bench (this binary re-executed in another role), spoken to by lines.
struct ChildProcess {
    process: std::process::Child,
    pid: String,
    input: BufWriter<ChildStdin>,
    output: std::io::Lines<BufReader<ChildStdout>>,
}

impl ChildProcess {
    fn spawn(role: &str, args: &[String]) -> ChildProcess {
        ChildProcess::spawn_under(&[], role, args)
    }

    /// [`Self::spawn`], run by `wrapper` (a command and its arguments, such as `chrt --idle 0`) if any.
    fn spawn_under(wrapper: &[&str], role: &str, args: &[String]) -> ChildProcess {
        let exe = std::env::current_exe().expect("current exe");
        let mut command = match wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut c = Command::new(program);
                c.args(wrapper_args).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let mut process = command
            .env(ROLE_ENV, role)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn the {role} process: {e}"));
        let pid = process.id().to_string();
        let input = BufWriter::with_capacity(1 << 20, process.stdin.take().expect("child stdin"));
        let output = BufReader::new(process.stdout.take().expect("child stdout")).lines();
        ChildProcess { process, pid, input, output }
    }

    fn send(&mut self, line: &str) {
        let _ = writeln!(self.input, "{line}").and_then(|()| self.input.flush());
    }

    /// The rest of the next line that starts with `word` (lines before it are skipped).
    fn expect(&mut self, word: &str) -> Option<String> {
        self.output.by_ref().map_while(Result::ok).find_map(|l| l.strip_prefix(word).map(|r| r.trim().to_string()))
    }

    /// Asks for `STATS` and reads the answer.
    fn stats(&mut self) -> Counters {
        self.send("STATS");
        parse_counters(&self.expect("STATS").unwrap_or_default())
    }

    /// Asks the child to stop, waits for it to exit, and returns the lines it printed meanwhile.
    fn stop(mut self) -> Vec<String> {
        self.send("STOP");
        let lines = self.output.by_ref().map_while(Result::ok).collect();
        drop(self.input);
        let _ = self.process.wait();
        lines
    }
}

/// The serving certificate, written where the server children read it.
struct Certs {
    dir: tempfile::TempDir,
    cert: CertificateDer<'static>,
    cert_path: PathBuf,
    key_path: PathBuf,
}

impl Certs {
    fn generate() -> Certs {
        let dir = tempfile::tempdir().expect("temp dir");
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
        let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert_path, generated.cert.pem()).expect("write certificate");
        std::fs::write(&key_path, generated.signing_key.serialize_pem()).expect("write key");
        Certs { dir, cert: generated.cert.der().clone(), cert_path, key_path }
    }
}

/// What a server child says when it is ready.
struct Ready {
    port: u16,
    nodes: u64,
    pods: u64,
    rss_kib: u64,
    probe_port: u16,
}

/// Starts a server child in `role` and waits until it serves; the webhook is streamed `cluster` first.
fn start_server(role: &str, args: &Args, certs: &Certs, cluster: Option<&Cluster>) -> (ChildProcess, Ready) {
    let started = Instant::now();
    let mut child_args: Vec<String> = ["--server-threads", &args.server_threads.to_string()].map(String::from).into();
    child_args.extend(["--ttl-seconds".into(), args.ttl.as_secs_f64().to_string()]);
    child_args.extend(["--expiry-ms".into(), (args.expiry_every.as_secs_f64() * 1e3).to_string()]);
    child_args.extend(["--cert".into(), certs.cert_path.display().to_string()]);
    child_args.extend(["--key".into(), certs.key_path.display().to_string()]);
    if args.log {
        child_args.push("--log".into());
    }
    let mut child = ChildProcess::spawn(role, &child_args);
    pin(child.process.id(), args.server_cpus.as_deref());
    let streamed = cluster.map(|c| feed(&mut child, c));
    let ready = child.expect("READY").unwrap_or_else(|| panic!("the {role} server did not start"));
    let ready: Vec<u64> = ready.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    let ready = Ready {
        port: ready[0] as u16,
        nodes: ready[1],
        pods: ready[2],
        rss_kib: ready[3],
        probe_port: ready[4] as u16,
    };
    if let Some(bytes) = streamed {
        eprintln!(
            "{role} server ready on 127.0.0.1:{}: {} nodes, {} pods, {:.0} MB of JSON streamed, {:.1} s after start",
            ready.port,
            ready.nodes,
            ready.pods,
            bytes as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
    }
    (child, ready)
}

/// Streams the cluster's objects to the webhook child; the bytes of JSON sent.
fn feed(child: &mut ChildProcess, cluster: &Cluster) -> usize {
    let mut bytes = 0;
    for o in cluster.objects() {
        let kind = o["kind"].as_str().unwrap_or_default().to_string();
        let json = serde_json::to_string(&o).expect("object JSON");
        bytes += json.len();
        writeln!(child.input, "{kind}\t{json}").expect("feed the server");
    }
    child.send("END");
    bytes
}

// ---- the load generator ---------------------------------------------------------------------------------

/// Where the clients connect, and how.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    http2: bool,
}

impl Target {
    fn new(port: u16, cert: &CertificateDer<'static>, http2: bool) -> Target {
        Target { addr: SocketAddr::from(([127, 0, 0, 1], port)), tls: client_tls(cert.clone(), http2), http2 }
    }
}

/// When each phase starts and ends, and the pace of one client (`None`: closed loop).
#[derive(Clone, Copy)]
struct Plan {
    start: Instant,
    measure_from: Instant,
    end: Instant,
    interval: Option<Duration>,
}

impl Plan {
    /// Starts 50 ms from now: `warmup`, then `args.seconds` measured; `rate` admissions/s over all
    /// `clients` (`None`: closed loop).
    fn new(args: &Args, warmup: Duration, rate: Option<f64>, clients: usize) -> Plan {
        let start = Instant::now() + Duration::from_millis(50);
        let measure_from = start + warmup;
        let end = measure_from + Duration::from_secs_f64(args.seconds);
        Plan { start, measure_from, end, interval: rate.map(|r| Duration::from_secs_f64(clients as f64 / r)) }
    }
}

/// What one client saw.
#[derive(Default)]
struct Tally {
    /// Each accepted answer completed in the measured window: when (milliseconds into the window) and
    /// its latency (nanoseconds).
    samples: Vec<(u32, u64)>,
    /// Requests that got no answer (the connection failed), over the whole run.
    errors: u64,
    /// Answers that were not `200` with `allowed: true`, over the whole run (warm-up included).
    rejected: u64,
    /// Accepted answers in the window without a patch.
    unpatched: u64,
    first_error: Option<String>,
    first_rejection: Option<String>,
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

async fn connect(target: &Target) -> Result<Sender, String> {
    let tcp = tokio::net::TcpStream::connect(target.addr).await.map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").expect("server name");
    let connector = tokio_rustls::TlsConnector::from(target.tls.clone());
    let io = TokioIo::new(connector.connect(name, tcp).await.map_err(|e| e.to_string())?);
    if target.http2 {
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

    /// One review: the answer's status and body, or why there is none.
    async fn admit(&mut self, body: Bytes) -> Result<(http::StatusCode, Bytes), String> {
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
        Ok((status, body))
    }
}

/// When a client sends its next review: now (closed loop), or when it is due (open loop). tokio's timer
/// fires on whole milliseconds, late: wake up to one early instead. A review sent early counts from when
/// it was sent; one sent late (its connection was busy) from when it was due.
async fn next_send(plan: &Plan, due: &mut Instant) -> Instant {
    let Some(interval) = plan.interval else { return Instant::now() };
    if *due > Instant::now() + TIMER_SLACK {
        tokio::time::sleep_until((*due - TIMER_SLACK).into()).await;
    }
    let at = (*due).min(Instant::now());
    *due += interval;
    at
}

/// One client: sends reviews (rotating over `bodies`, each with a fresh uid) until the plan ends.
async fn client(
    id: usize,
    mut sender: Sender,
    target: Target,
    mut bodies: Vec<ReviewBody>,
    plan: Plan,
    start: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let (mut uid, mut due, mut k) = ((id as u64) << 32, start, id);
    loop {
        let sent = next_send(&plan, &mut due).await;
        if sent >= plan.end {
            break;
        }
        k = (k + 1) % bodies.len();
        uid += 1;
        bodies[k].set_uid(uid);
        let answer = sender.admit(Bytes::copy_from_slice(&bodies[k].bytes)).await;
        let done = Instant::now();
        match answer {
            Ok((status, body)) => {
                let counted = done >= plan.measure_from && done <= plan.end;
                let sample = counted.then(|| ((done - plan.measure_from).as_millis() as u32, done - sent));
                tally.answer(status, &body, sample);
            }
            Err(e) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(e);
                match connect(&target).await {
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

impl Tally {
    /// Counts an answer; `sample` (milliseconds into the window, latency) is given when it completed in the
    /// measured window.
    fn answer(&mut self, status: http::StatusCode, body: &[u8], sample: Option<(u32, Duration)>) {
        if status != http::StatusCode::OK || !contains(body, b"\"allowed\":true") {
            self.rejected += 1;
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            self.first_rejection.get_or_insert(format!("HTTP {status}: {text}"));
            return;
        }
        if let Some((at, latency)) = sample {
            self.samples.push((at, latency.as_nanos() as u64));
            if !contains(body, b"\"patch\"") {
                self.unpatched += 1;
            }
        }
    }
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

/// Opens every client's connection (HTTP/2: `--streams` clients share one).
async fn connect_clients(target: &Target, args: &Args) -> Vec<Sender> {
    let mut senders = Vec::with_capacity(args.connections * args.streams);
    for _ in 0..args.connections {
        let first = connect(target).await.expect("connect");
        for _ in 1..args.streams {
            senders.push(first.share().expect("HTTP/2 connection"));
        }
        senders.push(first);
    }
    senders
}

/// What one run measured.
struct Measured {
    /// Accepted answers in the window, in nanoseconds, sorted.
    latencies: Vec<u64>,
    /// The p99 of the answers completed in each second of the window, in milliseconds.
    p99_by_second: Vec<f64>,
    errors: u64,
    rejected: u64,
    unpatched: u64,
    first_error: Option<String>,
    first_rejection: Option<String>,
    window: Duration,
    /// Over the window.
    cpu: Cpu,
}

impl Measured {
    fn new(tallies: Vec<Tally>, window: Duration, cpu: Cpu) -> Measured {
        let samples = || tallies.iter().flat_map(|t| t.samples.iter().copied());
        let mut latencies: Vec<u64> = samples().map(|(_, latency)| latency).collect();
        latencies.sort_unstable();
        let mut by_second = vec![Vec::new(); window.as_secs_f64().ceil().max(1.0) as usize];
        let last = by_second.len() - 1;
        for (at, latency) in samples() {
            by_second[(at as usize / 1000).min(last)].push(latency);
        }
        Measured {
            latencies,
            p99_by_second: by_second.iter_mut().map(|second| second_p99(second)).collect(),
            errors: tallies.iter().map(|t| t.errors).sum(),
            rejected: tallies.iter().map(|t| t.rejected).sum(),
            unpatched: tallies.iter().map(|t| t.unpatched).sum(),
            first_error: tallies.iter().find_map(|t| t.first_error.clone()),
            first_rejection: tallies.iter().find_map(|t| t.first_rejection.clone()),
            window,
            cpu,
        }
    }

    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.window.as_secs_f64()
    }

    /// The `p`th percentile latency, in milliseconds.
    fn ms(&self, p: f64) -> f64 {
        percentile(&self.latencies, p)
    }

    fn max_ms(&self) -> f64 {
        self.latencies.last().copied().unwrap_or(0) as f64 / 1e6
    }

    /// Server CPU per accepted admission, in microseconds.
    fn server_us(&self) -> f64 {
        self.cpu.server / self.latencies.len().max(1) as f64 * 1e6
    }
}

fn second_p99(latencies: &mut [u64]) -> f64 {
    latencies.sort_unstable();
    percentile(latencies, 99.0)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1e6
}

/// Loads the server at `target` with `senders` (already connected) as `plan` says; CPU is read over the
/// measured window.
async fn drive(senders: Vec<Sender>, target: &Target, bodies: &[ReviewBody], plan: Plan, pids: &Pids) -> Measured {
    let clients = senders.len();
    let mut tasks = Vec::with_capacity(clients);
    for (id, sender) in senders.into_iter().enumerate() {
        // Open loop: clients start evenly spread over one interval.
        let offset = plan.interval.map(|i| i.mul_f64(id as f64 / clients as f64)).unwrap_or_default();
        let run = client(id, sender, target.clone(), bodies.to_vec(), plan, plan.start + offset);
        tasks.push(tokio::spawn(run));
    }
    tokio::time::sleep_until(plan.measure_from.into()).await;
    let before = Cpu::now(pids);
    tokio::time::sleep_until(plan.end.into()).await;
    let cpu = Cpu::now(pids).since(&before);
    let mut tallies = Vec::with_capacity(tasks.len());
    for t in tasks {
        tallies.push(t.await.expect("client task"));
    }
    Measured::new(tallies, plan.end - plan.measure_from, cpu)
}

/// One run: connect every client, warm up, measure.
async fn run_load(target: &Target, args: &Args, bodies: &[ReviewBody], rate: Option<f64>, pids: &Pids) -> Measured {
    let senders = connect_clients(target, args).await;
    let plan = Plan::new(args, Duration::from_secs_f64(args.warmup), rate, senders.len());
    drive(senders, target, bodies, plan, pids).await
}

fn review_bodies(cluster: &Cluster, args: &Args) -> Vec<ReviewBody> {
    let bodies: Vec<ReviewBody> = cluster.strategy_pods.iter().map(|p| ReviewBody::new(p, !args.reserve)).collect();
    assert!(!bodies.is_empty(), "no annotated Deployment");
    eprintln!("reviews of: {}", cluster.strategy_pods.iter().map(|p| p.label.as_str()).collect::<Vec<_>>().join(", "));
    bodies
}

// ---- watching the server: /healthz and RSS --------------------------------------------------------------

/// What the generator saw of the server over a measured window.
#[derive(Default)]
struct Observed {
    /// `/healthz` latencies, in milliseconds, sorted.
    healthz_ms: Vec<f64>,
    healthz_failed: u64,
    first_failure: Option<String>,
    peak_rss_kib: u64,
}

/// Probes `/healthz` on a fresh connection and reads the server's VmRSS every [`PROBE_EVERY`] from
/// `from` to `until`, on a thread of its own (not the load generator's runtime).
fn observe(probe: SocketAddr, server_pid: String, from: Instant, until: Instant) -> std::thread::JoinHandle<Observed> {
    std::thread::spawn(move || {
        std::thread::sleep(from.saturating_duration_since(Instant::now()));
        let mut seen = Observed::default();
        while Instant::now() < until {
            let t = Instant::now();
            match probe_healthz(probe) {
                Ok(()) => seen.healthz_ms.push(t.elapsed().as_secs_f64() * 1e3),
                Err(e) => {
                    seen.healthz_failed += 1;
                    seen.first_failure.get_or_insert(e);
                }
            }
            seen.peak_rss_kib = seen.peak_rss_kib.max(status_kib(&server_pid, "VmRSS:"));
            std::thread::sleep(PROBE_EVERY.saturating_sub(t.elapsed()));
        }
        seen.healthz_ms.sort_by(f64::total_cmp);
        seen
    })
}

/// One `GET /healthz` over a new connection, as the kubelet sends it; fails past [`PROBE_TIMEOUT`].
fn probe_healthz(addr: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let mut tcp = std::net::TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))))
        .map_err(|e| e.to_string())?;
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: kube-probe\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).map_err(|e| e.to_string())?;
    if Instant::now() > deadline {
        return Err(format!("slower than {PROBE_TIMEOUT:?}"));
    }
    match answer.starts_with(b"HTTP/1.1 200") {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&answer[..answer.len().min(80)]).into_owned()),
    }
}

// ---- the default run: echo, then webhook ----------------------------------------------------------------

/// The same load against the echo baseline, then against the webhook.
fn compare_run(args: &Args) {
    let cluster = Cluster::generate(args.nodes);
    let bodies = review_bodies(&cluster, args);
    let certs = Certs::generate();
    let rt = runtime(args.client_threads);
    let echo = args.echo.then(|| {
        let (server, ready) = start_server(ECHO, args, &certs, None);
        let target = Target::new(ready.port, &certs.cert, args.http2);
        let pids = Pids { server: server.pid.clone(), hostile: None };
        let measured = rt.block_on(run_load(&target, args, &bodies, args.rate, &pids));
        server.stop();
        measured
    });
    let (server, ready) = start_server(WEBHOOK, args, &certs, Some(&cluster));
    drop(cluster);
    let target = Target::new(ready.port, &certs.cert, args.http2);
    let pids = Pids { server: server.pid.clone(), hostile: None };
    let webhook = rt.block_on(run_load(&target, args, &bodies, args.rate, &pids));
    let (rss_after, hwm) = (status_kib(&server.pid, "VmRSS:"), status_kib(&server.pid, "VmHWM:"));
    let stopped = server.stop().into_iter().find_map(|l| l.strip_prefix("STOPPED ").map(parse_numbers));
    print_header(args, &ready, args.rate.map(|r| format!("open loop at {r:.0}/s")));
    if let Some(echo) = &echo {
        print_run("echo baseline (hyper + rustls, fixed answer)", echo, false);
    }
    print_run("webhook", &webhook, true);
    println!(
        "  server RSS:     {} MB with the index loaded, {} MB after the run (peak {} MB)",
        ready.rss_kib / 1024,
        rss_after / 1024,
        hwm / 1024
    );
    print_ledger(args, stopped.as_deref());
    if let Some(echo) = &echo {
        print_comparison(args, echo, &webhook);
    }
}

fn parse_numbers(text: &str) -> Vec<u64> {
    text.split_whitespace().filter_map(|v| v.parse().ok()).collect()
}

fn print_header(args: &Args, ready: &Ready, mode: Option<String>) {
    let protocol = if args.http2 {
        format!("HTTP/2, {} connections x {} streams", args.connections, args.streams)
    } else {
        format!("HTTP/1.1 keep-alive, {} connections", args.connections)
    };
    let mode = mode.unwrap_or_else(|| "closed loop".to_string());
    let kind = if args.reserve { "real admissions (reserving)" } else { "dry runs" };
    let pinned = match (&args.server_cpus, &args.client_cpus) {
        (None, None) => String::new(),
        (server, client) => format!(
            "; pinned: server to CPUs {}, load generator and attacker to {}",
            server.as_deref().unwrap_or("any"),
            client.as_deref().unwrap_or("any")
        ),
    };
    println!(
        "webhook over HTTPS ({protocol}, {mode}, {kind}); {} nodes / {} pods; server {} threads, load generator {}{}{pinned}",
        ready.nodes,
        ready.pods,
        args.server_threads,
        args.client_threads,
        if args.log { "; server logging at info" } else { "" }
    );
}

/// One run's lines; `patched` when every answer should carry a patch (the webhook's dry runs).
fn print_run(name: &str, m: &Measured, patched: bool) {
    let secs = m.window.as_secs_f64();
    let done = m.latencies.len();
    let unpatched = if patched { format!(", {} without a patch", m.unpatched) } else { String::new() };
    println!("{name}:");
    println!(
        "  admissions/s:   {:.0}  ({done} in {secs:.1} s; {} errors, {} rejected{unpatched})",
        m.rate(),
        m.errors,
        m.rejected
    );
    println!(
        "  latency (ms):   p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        m.ms(50.0),
        m.ms(90.0),
        m.ms(99.0),
        m.ms(99.9),
        m.max_ms()
    );
    let hostile = if m.cpu.hostile > 0.0 { format!(", attacker {:.2}", m.cpu.hostile / secs) } else { String::new() };
    println!(
        "  CPU (cores):    server {:.2}, load generator {:.2}{hostile}, everything else {:.2}",
        m.cpu.server / secs,
        m.cpu.client / secs,
        m.cpu.others() / secs
    );
    if done > 0 {
        println!(
            "  CPU per admission: server {:.0} µs, load generator {:.0} µs",
            m.server_us(),
            m.cpu.client / done as f64 * 1e6
        );
    }
    for (what, first) in [("first error", &m.first_error), ("first rejection", &m.first_rejection)] {
        if let Some(text) = first {
            println!("  {what}: {text}");
        }
    }
}

/// The reservation ledger and its expiry, from the server's `STOPPED` line (real admissions only).
fn print_ledger(args: &Args, stopped: Option<&[u64]>) {
    if let Some(&[reservations, ticks, total_us, longest_us]) = stopped
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
}

fn print_comparison(args: &Args, echo: &Measured, webhook: &Measured) {
    println!("webhook against the echo baseline (same load, same machine, same run):");
    if args.rate.is_none() {
        println!(
            "  admissions/s:   {:.0} / {:.0} = {:.2} of the echo's (goal ≥ 0.5)",
            webhook.rate(),
            echo.rate(),
            webhook.rate() / echo.rate().max(f64::MIN_POSITIVE)
        );
    }
    println!(
        "  server CPU per admission: webhook {:.0} µs, echo {:.0} µs ({:.1}×)",
        webhook.server_us(),
        echo.server_us(),
        webhook.server_us() / echo.server_us().max(f64::MIN_POSITIVE)
    );
}

// ---- hostile mode ---------------------------------------------------------------------------------------

/// Hostile mode: the closed-loop maximum, an open loop at a fraction of it, then the same open loop
/// under attack (see the module docs).
fn hostile_run(args: &Args) {
    let mut cluster = Cluster::generate(args.nodes);
    let bodies = review_bodies(&cluster, args);
    let certs = Certs::generate();
    let reviews = webhook_attack::Reviews::prepare(&mut cluster, !args.reserve, &bodies[0], certs.dir.path());
    let (mut server, ready) = start_server(WEBHOOK, args, &certs, Some(&cluster));
    drop(cluster);
    let rt = runtime(args.client_threads);
    let target = Target::new(ready.port, &certs.cert, args.http2);
    let pids = Pids { server: server.pid.clone(), hostile: None };
    let max = rt.block_on(run_load(&target, args, &bodies, None, &pids));
    let rate = args.rate.unwrap_or(max.rate() * args.load_fraction);
    let honest = Honest { args, bodies: &bodies, target: &target, rate };
    let attack =
        webhook_attack::Launch { args: &args.attack, reviews: &reviews, port: ready.port, cert: &certs.cert_path };
    let (mut quiet, mut attacked, mut shed) = (Vec::new(), Vec::new(), Counters::new());
    for _ in 0..args.rounds {
        quiet.push(honest.observed(&rt, &server, &ready, None));
        let shed_before = server.stats();
        attacked.push(honest.observed(&rt, &server, &ready, Some(&attack)));
        for (reason, n) in counters_since(&server.stats(), &shed_before) {
            *shed.entry(reason).or_insert(0) += n;
        }
    }
    let hwm = status_kib(&server.pid, "VmHWM:");
    server.stop();
    print_header(args, &ready, Some("hostile mode".to_string()));
    print_run("(a) closed loop", &max, true);
    for (round, (q, a)) in quiet.iter().zip(&attacked).enumerate() {
        let of = if args.rounds > 1 { format!(", round {} of {}", round + 1, args.rounds) } else { String::new() };
        print_observed_run(&format!("(b) open loop at {rate:.0}/s, no attack{of}"), q);
        print_observed_run(&format!("(c) open loop at {rate:.0}/s under attack{of}"), a);
    }
    let last = attacked.last().expect("at least one round");
    let outcome = last.attack.as_ref().expect("attack outcome");
    let window_after = Duration::from_secs_f64(args.warmup) + ATTACK_RAMP;
    webhook_attack::print_outcome(&args.attack, &reviews, outcome, &shed, window_after);
    if args.rounds > 1 {
        print_rounds(&quiet, &attacked);
    }
    print_hostile_summary(&pooled(&quiet), &pooled(&attacked), hwm, &shed, outcome);
}

/// Each round's honest p99 with and without the attack, and the median of their ratios.
fn print_rounds(quiet: &[ObservedRun], attacked: &[ObservedRun]) {
    let mut ratios: Vec<f64> = quiet
        .iter()
        .zip(attacked)
        .map(|(q, a)| a.measured.ms(99.0) / q.measured.ms(99.0).max(f64::MIN_POSITIVE))
        .collect();
    let each: Vec<String> = quiet
        .iter()
        .zip(attacked)
        .zip(&ratios)
        .map(|((q, a), r)| format!("{:.1} / {:.1} ms ({r:.2}×)", q.measured.ms(99.0), a.measured.ms(99.0)))
        .collect();
    ratios.sort_by(f64::total_cmp);
    println!("rounds, honest p99 without / with the attack: {}", each.join(", "));
    println!("  median of the rounds' ratios: {:.2}×", percentile_f64(&ratios, 50.0));
}

/// The rounds' windows as one: latencies and probes pooled, counts summed, the highest RSS.
fn pooled(runs: &[ObservedRun]) -> ObservedRun {
    let mut latencies: Vec<u64> = runs.iter().flat_map(|r| r.measured.latencies.iter().copied()).collect();
    latencies.sort_unstable();
    let mut healthz_ms: Vec<f64> = runs.iter().flat_map(|r| r.observed.healthz_ms.iter().copied()).collect();
    healthz_ms.sort_by(f64::total_cmp);
    let first = &runs[0];
    ObservedRun {
        measured: Measured {
            latencies,
            p99_by_second: runs.iter().flat_map(|r| r.measured.p99_by_second.iter().copied()).collect(),
            errors: runs.iter().map(|r| r.measured.errors).sum(),
            rejected: runs.iter().map(|r| r.measured.rejected).sum(),
            unpatched: runs.iter().map(|r| r.measured.unpatched).sum(),
            first_error: runs.iter().find_map(|r| r.measured.first_error.clone()),
            first_rejection: runs.iter().find_map(|r| r.measured.first_rejection.clone()),
            window: runs.iter().map(|r| r.measured.window).sum(),
            cpu: first.measured.cpu,
        },
        observed: Observed {
            healthz_ms,
            healthz_failed: runs.iter().map(|r| r.observed.healthz_failed).sum(),
            first_failure: runs.iter().find_map(|r| r.observed.first_failure.clone()),
            peak_rss_kib: runs.iter().map(|r| r.observed.peak_rss_kib).max().unwrap_or(0),
        },
        attack: None,
    }
}

fn counters_since(now: &Counters, before: &Counters) -> Counters {
    now.iter().map(|(k, v)| (k.clone(), v.saturating_sub(before.get(k).copied().unwrap_or(0)))).collect()
}

/// The honest open loop of hostile mode.
struct Honest<'a> {
    args: &'a Args,
    bodies: &'a [ReviewBody],
    target: &'a Target,
    rate: f64,
}

/// An open-loop run with the server watched, and what the attacker reported if there was one.
struct ObservedRun {
    measured: Measured,
    observed: Observed,
    attack: Option<webhook_attack::Outcome>,
}

impl Honest<'_> {
    /// Connects the honest clients, then (with `attack`) starts the attacker, then loads the server
    /// with `/healthz` and RSS watched over the measured window.
    fn observed(
        &self,
        rt: &tokio::runtime::Runtime,
        server: &ChildProcess,
        ready: &Ready,
        attack: Option<&webhook_attack::Launch<'_>>,
    ) -> ObservedRun {
        let (measured, observed, attacker) = rt.block_on(async {
            let senders = connect_clients(self.target, self.args).await;
            let ramp = if attack.is_some() { ATTACK_RAMP } else { Duration::ZERO };
            let warmup = Duration::from_secs_f64(self.args.warmup) + ramp;
            let plan = Plan::new(self.args, warmup, Some(self.rate), senders.len());
            let attacker = attack.map(|a| a.spawn());
            let pids = Pids { server: server.pid.clone(), hostile: attacker.as_ref().map(|a| a.pid.clone()) };
            let probe = SocketAddr::from(([127, 0, 0, 1], ready.probe_port));
            let watcher = observe(probe, server.pid.clone(), plan.measure_from, plan.end);
            let measured = drive(senders, self.target, self.bodies, plan, &pids).await;
            (measured, watcher.join().expect("observer thread"), attacker)
        });
        let attack = attacker.map(|a| webhook_attack::Outcome::from_lines(&a.stop()));
        ObservedRun { measured, observed, attack }
    }
}

fn print_observed_run(name: &str, run: &ObservedRun) {
    print_run(name, &run.measured, true);
    let by_second: Vec<String> = run.measured.p99_by_second.iter().map(|ms| format!("{ms:.1}")).collect();
    println!("  p99 by second of the window (ms): {}", by_second.join(" "));
    let o = &run.observed;
    println!(
        "  /healthz (ms):  p50 {:.2}  p99 {:.2}  max {:.2}  ({} probes, {} failed or slower than {PROBE_TIMEOUT:?}{})",
        percentile_f64(&o.healthz_ms, 50.0),
        percentile_f64(&o.healthz_ms, 99.0),
        o.healthz_ms.last().copied().unwrap_or(0.0),
        o.healthz_ms.len() as u64 + o.healthz_failed,
        o.healthz_failed,
        o.first_failure.as_ref().map(|e| format!(": first: {e}")).unwrap_or_default()
    );
    println!("  server VmRSS:   at most {} MB (sampled every {PROBE_EVERY:?})", o.peak_rss_kib / 1024);
}

fn percentile_f64(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(((p / 100.0) * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1)]
}

fn print_hostile_summary(
    quiet: &ObservedRun,
    attacked: &ObservedRun,
    hwm_kib: u64,
    shed: &Counters,
    outcome: &webhook_attack::Outcome,
) {
    let (without, with) = (quiet.measured.ms(99.0), attacked.measured.ms(99.0));
    println!("hostile mode against its goals:");
    println!(
        "  honest p99:     {without:.3} ms without the attack, {with:.3} ms with it: {:.2}× (goal ≤ 2×)",
        with / without.max(f64::MIN_POSITIVE)
    );
    println!(
        "  server memory:  VmRSS at most {} MB during the attack, VmHWM {} MB over the whole process (goal ≤ 256 MB)",
        attacked.observed.peak_rss_kib / 1024,
        hwm_kib / 1024
    );
    println!(
        "  /healthz:       p99 {:.2} ms, max {:.2} ms under attack ({:.2} / {:.2} ms without); {} failed",
        percentile_f64(&attacked.observed.healthz_ms, 99.0),
        attacked.observed.healthz_ms.last().copied().unwrap_or(0.0),
        percentile_f64(&quiet.observed.healthz_ms, 99.0),
        quiet.observed.healthz_ms.last().copied().unwrap_or(0.0),
        attacked.observed.healthz_failed
    );
    println!(
        "  honest answers rejected (not 200, or not allowed): {} under attack, {} without; connection errors {} / {} \
         (goal: none)",
        attacked.measured.rejected, quiet.measured.rejected, attacked.measured.errors, quiet.measured.errors
    );
    let count = |k: &str| shed.get(k).copied().unwrap_or(0);
    println!(
        "  hostile connections the server shed: {} connection attempts closed at accept (connection cap), {} idle \
         connections closed by its timeouts, {} trickled bodies too slow (408, connection closed); requests \
         refused at once (503): {} over the body-bytes budget, {} over the in-flight cap",
        count("connections"),
        outcome.count("idle.closed_by_server"),
        count("body_deadline"),
        count("body_bytes"),
        count("in_flight")
    );
}

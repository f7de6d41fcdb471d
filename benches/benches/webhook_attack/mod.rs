//! The attacker of `webhook_load --hostile`: a process of its own (this binary re-executed), so that the
//! CPU it burns is reported apart from the server's and the honest load generator's.
//!
//! Against the webhook's HTTPS listener on 127.0.0.1 it opens, in this order (so that the connection cap
//! does not keep the later kinds out entirely):
//! - `--hostile-senders` (2) connections sending AdmissionReviews the webhook cannot use, each at
//!   `--hostile-rate` (20/s; 0: as fast as they are answered), one kind per connection (both in turn if
//!   there is one): pods of a Deployment whose `placement.dev/strategy` has 400 rules (the webhook reads
//!   a Deployment's annotation, from its index; the pod carries a copy too), which is past the 16 rules
//!   and the 4 KiB a strategy may have, so the pod should be admitted unmutated with a warning; and
//!   pods whose `request.uid` is 1 MiB, which the answer must echo;
//! - `--trickle` (200) connections that send a request head announcing `--trickle-length` (3 MiB, the
//!   largest review the webhook accepts) body bytes, then one byte every `--trickle-every-ms` (1,000);
//! - `--idle` (2,000) TLS connections that send nothing.
//!
//! All from `--attacker-address` (127.0.0.2): another client address than the honest load (127.0.0.1),
//! as a hostile pod is another address than the API server.
//!
//! Whatever ends (refused at the cap, closed by a server timeout, answered) is opened again after
//! `--hostile-retry-ms` (1,000), until the parent says `STOP`: the attack lasts as long as the run. It
//! counts what it saw and prints it when it stops.

use crate::webhook_setup::{Cluster, ReviewBody};
use crate::{Argv, ChildProcess, Counters, Target};
use bytes::Bytes;
use placement_core::strategy::STRATEGY_ANNOTATION;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

/// Rules in the hostile strategy annotation.
const STRATEGY_RULES: usize = 400;

/// Characters in the hostile `request.uid`.
const HUGE_UID: usize = 1 << 20;

/// A connection not open (TCP and TLS) by then counts as refused.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);

/// How the attack is shaped (options of `webhook_load --hostile`, passed on to the attacker process).
pub struct AttackArgs {
    idle: usize,
    trickle: usize,
    senders: usize,
    /// Reviews per second on each sender connection; 0: as fast as they are answered.
    rate: f64,
    retry: Duration,
    trickle_length: u64,
    trickle_every: Duration,
    /// The address the attacker connects from: another pod than the API server (the honest load,
    /// from 127.0.0.1), as the webhook's per-address shares see it.
    source: std::net::IpAddr,
    /// Run the attacker under `SCHED_IDLE` (`--attacker-idle`): it takes only CPU nothing else wants, as
    /// an attacker on another node takes none of this one's. What reaches the server is what its counts
    /// say (connections opened, reviews sent).
    idle_priority: bool,
}

impl AttackArgs {
    pub fn parse(argv: &Argv) -> AttackArgs {
        AttackArgs {
            idle: argv.number("--idle", 2_000.0).max(0.0) as usize,
            trickle: argv.number("--trickle", 200.0).max(0.0) as usize,
            senders: argv.number("--hostile-senders", 2.0).max(0.0) as usize,
            rate: argv.number("--hostile-rate", 20.0).max(0.0),
            retry: Duration::from_secs_f64(argv.number("--hostile-retry-ms", 1_000.0).max(1.0) / 1e3),
            trickle_length: argv.number("--trickle-length", (3u64 << 20) as f64).max(1.0) as u64,
            trickle_every: Duration::from_secs_f64(argv.number("--trickle-every-ms", 1_000.0).max(1.0) / 1e3),
            source: argv
                .value("--attacker-address")
                .map(|a| a.parse().expect("--attacker-address is an IP address"))
                .unwrap_or(std::net::IpAddr::from([127, 0, 0, 2])),
            idle_priority: argv.flag("--attacker-idle"),
        }
    }

    fn forward(&self) -> Vec<String> {
        let pairs = [
            ("--idle", self.idle.to_string()),
            ("--trickle", self.trickle.to_string()),
            ("--hostile-senders", self.senders.to_string()),
            ("--hostile-rate", self.rate.to_string()),
            ("--hostile-retry-ms", (self.retry.as_secs_f64() * 1e3).to_string()),
            ("--trickle-length", self.trickle_length.to_string()),
            ("--trickle-every-ms", (self.trickle_every.as_secs_f64() * 1e3).to_string()),
            ("--attacker-address", self.source.to_string()),
        ];
        pairs.into_iter().flat_map(|(name, value)| [name.to_string(), value]).collect()
    }

    fn connections(&self) -> usize {
        self.idle + self.trickle + self.senders
    }
}

// ---- the parent's side ----------------------------------------------------------------------------------

/// The two hostile reviews, written where the attacker process reads them.
pub struct Reviews {
    many_rules: PathBuf,
    huge_uid: PathBuf,
    /// The Deployment with the hostile strategy.
    workload: String,
    strategy_bytes: usize,
    many_rules_bytes: usize,
    huge_uid_bytes: usize,
}

impl Reviews {
    /// Annotates another Deployment of `cluster` (before it is streamed to the server) with the hostile
    /// strategy and writes a review of its next pod, and `honest` with a 1 MiB uid, to `dir`.
    pub fn prepare(cluster: &mut Cluster, dry_run: bool, honest: &ReviewBody, dir: &Path) -> Reviews {
        let strategy = many_rules(STRATEGY_RULES);
        let mut pod = cluster.annotate_another(&strategy).expect("a Deployment to annotate");
        let mut annotations = serde_json::Map::new();
        annotations.insert(STRATEGY_ANNOTATION.to_string(), strategy.clone().into());
        pod.object["metadata"]["annotations"] = annotations.into();
        let many_rules = ReviewBody::new(&pod, dry_run).bytes;
        let huge_uid = honest.with_uid(&"f".repeat(HUGE_UID));
        let (many_rules_path, huge_uid_path) = (dir.join("many-rules-review.json"), dir.join("huge-uid-review.json"));
        std::fs::write(&many_rules_path, &many_rules).expect("write a review");
        std::fs::write(&huge_uid_path, &huge_uid).expect("write a review");
        Reviews {
            many_rules: many_rules_path,
            huge_uid: huge_uid_path,
            workload: pod.label,
            strategy_bytes: strategy.len(),
            many_rules_bytes: many_rules.len(),
            huge_uid_bytes: huge_uid.len(),
        }
    }
}

/// `rules` rules of `weight=N,nodeSelector=node-type:pool-I`.
fn many_rules(rules: usize) -> String {
    let rules: Vec<String> =
        (0..rules).map(|i| format!("weight={},nodeSelector=node-type:pool-{i}", 1 + i % 9)).collect();
    rules.join(";")
}

/// What starting the attacker needs.
pub struct Launch<'a> {
    pub args: &'a AttackArgs,
    pub reviews: &'a Reviews,
    pub port: u16,
    pub cert: &'a Path,
}

impl Launch<'_> {
    /// Starts the attacker process; it attacks at once.
    pub fn spawn(&self) -> ChildProcess {
        let mut args = self.args.forward();
        args.extend(["--attack-port".to_string(), self.port.to_string()]);
        args.extend(["--cert".to_string(), self.cert.display().to_string()]);
        args.extend(["--many-rules-review".to_string(), self.reviews.many_rules.display().to_string()]);
        args.extend(["--huge-uid-review".to_string(), self.reviews.huge_uid.display().to_string()]);
        let wrapper: &[&str] = if self.args.idle_priority { &["chrt", "--idle", "0"] } else { &[] };
        ChildProcess::spawn_under(wrapper, crate::HOSTILE, &args)
    }
}

/// What the attacker reported when it stopped.
pub struct Outcome {
    /// Seconds from its start until every connection had been tried once.
    opened_in: Option<f64>,
    counts: Counters,
    /// The first warning a many-rules review was answered with.
    warning: Option<String>,
}

impl Outcome {
    pub fn from_lines(lines: &[String]) -> Outcome {
        let rest = |word: &str| lines.iter().find_map(|l| l.strip_prefix(word));
        Outcome {
            opened_in: rest("ATTACKING ").and_then(|v| v.trim().parse().ok()),
            counts: crate::parse_counters(rest("ATTACK ").unwrap_or("")),
            warning: rest("WARNING ").map(str::to_string),
        }
    }

    pub fn count(&self, name: &str) -> u64 {
        self.counts.get(name).copied().unwrap_or(0)
    }

    /// `answered.STATUS` counts under `prefix`, as `STATUS ×N` items.
    fn answers(&self, prefix: &str) -> String {
        let prefix = format!("{prefix}.answered.");
        let items: Vec<String> = self
            .counts
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|status| format!("{status} ×{v}")))
            .collect();
        if items.is_empty() { "none".to_string() } else { items.join(", ") }
    }
}

/// The attack's lines of the report: its shape, then what it saw over its whole life (ramp, warm-up and
/// window), then what the server says it shed over the same run. `window_after`: how long after the
/// attacker started the measured window began.
pub fn print_outcome(args: &AttackArgs, reviews: &Reviews, outcome: &Outcome, shed: &Counters, window_after: Duration) {
    let rate = if args.rate > 0.0 { format!("{}/s each", args.rate) } else { "as fast as answered".to_string() };
    println!(
        "attack (its own process, CPU as \"attacker\" above): {} idle TLS connections, {} trickling (Content-Length \
         {}, 1 byte every {:?}), {} review senders at {rate}; each retried {:?} after it ends; from {}{}",
        args.idle,
        args.trickle,
        args.trickle_length,
        args.trickle_every,
        args.senders,
        args.retry,
        args.source,
        if args.idle_priority { "; under SCHED_IDLE" } else { "" }
    );
    let opened = outcome.opened_in.map_or("never".to_string(), |s| format!("{s:.1} s after it started"));
    println!("  every connection tried once: {opened} (the measured window began {window_after:?} after)");
    print_connections(outcome);
    print_reviews(reviews, outcome);
    let pairs: Vec<String> = shed.iter().filter(|(k, _)| *k != "open").map(|(k, v)| format!("{k} {v}")).collect();
    println!(
        "  the server's placement_webhook_shed_total over the attacked runs, ramps included: {}",
        pairs.join(", ")
    );
}

fn print_connections(outcome: &Outcome) {
    let c = |name: &str| outcome.count(name);
    println!(
        "  idle:           {} opened, {} refused, {} closed by the server",
        c("idle.opened"),
        c("idle.refused"),
        c("idle.closed_by_server")
    );
    println!(
        "  trickling:      {} opened, {} refused; answered {}; {} closed unanswered",
        c("trickle.opened"),
        c("trickle.refused"),
        outcome.answers("trickle"),
        c("trickle.closed_unanswered")
    );
    println!(
        "  review connections: {} opened, {} refused; at most {} hostile connections held at once",
        c("reviews.connected"),
        c("reviews.refused"),
        c("peak_held")
    );
}

fn print_reviews(reviews: &Reviews, outcome: &Outcome) {
    let c = |name: &str| outcome.count(name);
    println!(
        "  {STRATEGY_RULES}-rule reviews of {} ({} B strategy, {} B review): {} sent, answered {}, {} unmutated with a \
         warning, {} without an answer",
        reviews.workload,
        reviews.strategy_bytes,
        reviews.many_rules_bytes,
        c("many_rules.sent"),
        outcome.answers("many_rules"),
        c("many_rules.unmutated_with_warning"),
        c("many_rules.failed")
    );
    if let Some(warning) = &outcome.warning {
        println!("    warning: {warning}");
    }
    println!(
        "  1 MiB-uid reviews ({} B): {} sent, answered {}, uid echoed {}, {} without an answer",
        reviews.huge_uid_bytes,
        c("huge_uid.sent"),
        outcome.answers("huge_uid"),
        c("huge_uid.uid_echoed"),
        c("huge_uid.failed")
    );
}

// ---- the attacker process -------------------------------------------------------------------------------

/// Child: attack the webhook on `--attack-port` until stdin says `STOP`, then report.
pub fn run(argv: &Argv) {
    let args = AttackArgs::parse(argv);
    crate::ensure_open_files(args.connections() as u64 + 256);
    let port = argv.number("--attack-port", 0.0) as u16;
    let cert = CertificateDer::from_pem_file(argv.path("--cert").expect("--cert")).expect("certificate");
    let read = |name: &str| Bytes::from(std::fs::read(argv.path(name).expect(name)).expect("a review file"));
    let bodies = Arc::new([read("--many-rules-review"), read("--huge-uid-review")]);
    let target = Target::new(port, &cert, false);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(attack(args, target, bodies));
}

async fn attack(args: AttackArgs, target: Target, bodies: Arc<[Bytes; 2]>) {
    let started = std::time::Instant::now();
    let (stop, stopped) = watch::channel(false);
    let attacker = Attacker { target, args: Arc::new(args), counts: Arc::default(), stopped };
    let (senders, trickle, idle) = (attacker.args.senders, attacker.args.trickle, attacker.args.idle);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..senders {
        tasks.spawn(attacker.clone().send_reviews(kinds_of(i, senders), bodies.clone()));
    }
    attacker.first_tries(senders).await;
    for _ in 0..trickle {
        tasks.spawn(attacker.clone().trickle());
    }
    attacker.first_tries(senders + trickle).await;
    for _ in 0..idle {
        tasks.spawn(attacker.clone().hold_idle());
    }
    attacker.first_tries(senders + trickle + idle).await;
    println!("ATTACKING {:.2}", started.elapsed().as_secs_f64());
    crate::follow_commands(String::new).await;
    let _ = stop.send(true);
    let drained = tokio::time::timeout(Duration::from_secs(5), async { while tasks.join_next().await.is_some() {} });
    if drained.await.is_err() {
        tasks.abort_all();
    }
    attacker.counts.report();
}

#[derive(Clone, Copy)]
enum Kind {
    ManyRules = 0,
    HugeUid = 1,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::ManyRules => "many_rules",
            Kind::HugeUid => "huge_uid",
        }
    }
}

/// One kind per sender connection, alternately; both in turn when there is one.
fn kinds_of(sender: usize, senders: usize) -> Vec<Kind> {
    match (senders, sender % 2) {
        (1, _) => vec![Kind::ManyRules, Kind::HugeUid],
        (_, 0) => vec![Kind::ManyRules],
        _ => vec![Kind::HugeUid],
    }
}

/// What the attack saw, by name (`idle.opened`, `trickle.answered.408`, ...), and the connections it
/// holds.
#[derive(Default)]
struct Counts {
    by_name: Mutex<Counters>,
    held: AtomicI64,
    peak_held: AtomicI64,
    /// Attack tasks that have tried to connect at least once.
    first_tries: AtomicUsize,
    warning: Mutex<Option<String>>,
}

impl Counts {
    fn add(&self, name: impl Into<String>) {
        *self.by_name.lock().unwrap_or_else(PoisonError::into_inner).entry(name.into()).or_insert(0) += 1;
    }

    /// Counts a task's first try (once per task).
    fn tried(&self, first: &mut bool) {
        if std::mem::take(first) {
            self.first_tries.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts an open connection until the guard is dropped.
    fn hold(self: &Arc<Self>) -> Held {
        let now = self.held.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_held.fetch_max(now, Ordering::Relaxed);
        Held(Arc::clone(self))
    }

    /// Keeps the first warning of an answer.
    fn keep_warning(&self, answer: &[u8]) {
        let mut kept = self.warning.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.is_none() {
            let review: serde_json::Value = serde_json::from_slice(answer).unwrap_or_default();
            let text = review["response"]["warnings"][0].as_str().unwrap_or("").replace('\n', " ");
            *kept = Some(text.chars().take(300).collect());
        }
    }

    fn report(&self) {
        if let Some(warning) = &*self.warning.lock().unwrap_or_else(PoisonError::into_inner) {
            println!("WARNING {warning}");
        }
        let counts = self.by_name.lock().unwrap_or_else(PoisonError::into_inner);
        let pairs: Vec<String> = counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("ATTACK peak_held={} {}", self.peak_held.load(Ordering::Relaxed), pairs.join(" "));
    }
}

struct Held(Arc<Counts>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How a trickled request ended.
enum Trickled {
    Answered(u16),
    Closed,
    Stopped,
}

/// What every attack task shares.
#[derive(Clone)]
struct Attacker {
    target: Target,
    args: Arc<AttackArgs>,
    counts: Arc<Counts>,
    stopped: watch::Receiver<bool>,
}

impl Attacker {
    fn stopping(&self) -> bool {
        *self.stopped.borrow()
    }

    async fn until_stopped(&self) {
        let mut stopped = self.stopped.clone();
        let _ = stopped.wait_for(|s| *s).await;
    }

    /// Waits before the next try; false when the attack stops meanwhile.
    async fn pause(&self) -> bool {
        tokio::select! {
            () = tokio::time::sleep(self.args.retry) => !self.stopping(),
            () = self.until_stopped() => false,
        }
    }

    /// Waits until `n` tasks have tried to connect once (at most a minute).
    async fn first_tries(&self, n: usize) {
        let until = Instant::now() + Duration::from_secs(60);
        while self.counts.first_tries.load(Ordering::Relaxed) < n && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A TLS connection (ALPN `http/1.1`), or `None` if it was refused, took too long, or the attack stopped.
    async fn open(&self) -> Option<TlsStream<TcpStream>> {
        let open = async {
            let socket = tokio::net::TcpSocket::new_v4().ok()?;
            socket.bind(std::net::SocketAddr::new(self.args.source, 0)).ok()?;
            let tcp = socket.connect(self.target.addr).await.ok()?;
            let name = ServerName::try_from("localhost").ok()?;
            tokio_rustls::TlsConnector::from(self.target.tls.clone()).connect(name, tcp).await.ok()
        };
        tokio::select! {
            opened = tokio::time::timeout(OPEN_TIMEOUT, open) => opened.ok().flatten(),
            () = self.until_stopped() => None,
        }
    }

    /// An idle connection, held until the server closes it, again and again.
    async fn hold_idle(self) {
        let mut first = true;
        loop {
            let opened = self.open().await;
            if self.stopping() {
                return;
            }
            self.counts.tried(&mut first);
            match opened {
                None => self.counts.add("idle.refused"),
                Some(tls) => {
                    self.counts.add("idle.opened");
                    let _held = self.counts.hold();
                    if self.until_closed(tls).await {
                        self.counts.add("idle.closed_by_server");
                    }
                }
            }
            if !self.pause().await {
                return;
            }
        }
    }

    /// Sends nothing on `tls` until the server closes it (true) or the attack stops (false).
    async fn until_closed(&self, mut tls: TlsStream<TcpStream>) -> bool {
        let mut buf = [0u8; 1024];
        let closed = async { while matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {} };
        tokio::select! {
            () = closed => true,
            () = self.until_stopped() => false,
        }
    }

    /// A trickling request, again and again.
    async fn trickle(self) {
        let mut first = true;
        loop {
            let opened = self.open().await;
            if self.stopping() {
                return;
            }
            self.counts.tried(&mut first);
            match opened {
                None => self.counts.add("trickle.refused"),
                Some(tls) => {
                    self.counts.add("trickle.opened");
                    let _held = self.counts.hold();
                    match self.trickle_request(tls).await {
                        Trickled::Answered(status) => self.counts.add(format!("trickle.answered.{status}")),
                        Trickled::Closed => self.counts.add("trickle.closed_unanswered"),
                        Trickled::Stopped => return,
                    }
                }
            }
            if !self.pause().await {
                return;
            }
        }
    }

    /// A request head announcing a large body, then a byte at a time until the server answers or closes.
    async fn trickle_request(&self, tls: TlsStream<TcpStream>) -> Trickled {
        let (mut reader, mut writer) = tokio::io::split(tls);
        let head = format!(
            "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            self.args.trickle_length
        );
        if writer.write_all(head.as_bytes()).await.is_err() || writer.flush().await.is_err() {
            return Trickled::Closed;
        }
        let every = self.args.trickle_every;
        let mut tick = tokio::time::interval_at(Instant::now() + every, every);
        let mut buf = [0u8; 512];
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if writer.write_all(b" ").await.is_err() || writer.flush().await.is_err() {
                        return Trickled::Closed;
                    }
                }
                read = reader.read(&mut buf) => return match read {
                    Ok(n) if n >= 12 => Trickled::Answered(status_code(&buf[..n])),
                    _ => Trickled::Closed,
                },
                () = self.until_stopped() => return Trickled::Stopped,
            }
        }
    }

    /// Reviews of `kinds` in turn at the attack's rate, reconnecting when the connection fails.
    async fn send_reviews(self, kinds: Vec<Kind>, bodies: Arc<[Bytes; 2]>) {
        let (mut first, mut sender, mut next, mut n) = (true, None, Instant::now(), 0usize);
        while !self.stopping() {
            let Some(s) = sender.as_mut() else {
                sender = self.reconnect(&mut first).await;
                if sender.is_none() && !self.pause().await {
                    return;
                }
                continue;
            };
            if !self.pace(&mut next).await {
                return;
            }
            let kind = kinds[n % kinds.len()];
            n += 1;
            self.counts.add(format!("{}.sent", kind.name()));
            let answer = tokio::select! {
                answer = s.admit(bodies[kind as usize].clone()) => answer,
                () = self.until_stopped() => return,
            };
            match answer {
                Ok((status, body)) => self.note_answer(kind, status, &body),
                Err(_) => {
                    self.counts.add(format!("{}.failed", kind.name()));
                    sender = None;
                }
            }
        }
    }

    async fn reconnect(&self, first: &mut bool) -> Option<crate::Sender> {
        let connected = tokio::select! {
            connected = tokio::time::timeout(OPEN_TIMEOUT, crate::connect(&self.target)) => connected.ok().and_then(Result::ok),
            () = self.until_stopped() => return None,
        };
        self.counts.tried(first);
        self.counts.add(if connected.is_some() { "reviews.connected" } else { "reviews.refused" });
        connected
    }

    /// Waits until the next review is due (none of it is made up later); false when the attack stops.
    async fn pace(&self, next: &mut Instant) -> bool {
        if self.args.rate <= 0.0 {
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep_until(*next) => {}
            () = self.until_stopped() => return false,
        }
        *next = (*next + Duration::from_secs_f64(1.0 / self.args.rate)).max(Instant::now());
        true
    }

    fn note_answer(&self, kind: Kind, status: http::StatusCode, body: &[u8]) {
        self.counts.add(format!("{}.answered.{}", kind.name(), status.as_u16()));
        if status != http::StatusCode::OK {
            return;
        }
        match kind {
            Kind::ManyRules if !crate::contains(body, b"\"patch\"") && crate::contains(body, b"\"warnings\"") => {
                self.counts.add("many_rules.unmutated_with_warning");
                self.counts.keep_warning(body);
            }
            Kind::HugeUid if body.len() > HUGE_UID => self.counts.add("huge_uid.uid_echoed"),
            _ => {}
        }
    }
}

/// The status code of an HTTP/1.1 answer's first bytes (0 if unreadable).
fn status_code(answer: &[u8]) -> u16 {
    std::str::from_utf8(&answer[9..12]).ok().and_then(|s| s.parse().ok()).unwrap_or(0)
}

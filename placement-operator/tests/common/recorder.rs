//! A local HTTP/1.1 listener on 127.0.0.1 that records the method, path and headers of every request it
//! receives and answers what its handler says: a Prometheus stand-in, a Route53 stand-in, or a server
//! that must never be reached. It can hold its answers until released (to change something while the
//! operator waits on it).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// One request as received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// What to answer: status, content type, body.
pub type Answer = (u16, &'static str, String);
type Handler = Arc<dyn Fn(&Seen) -> Answer + Send + Sync>;

pub struct Recorder {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    hold: tokio::sync::watch::Sender<bool>,
}

impl Recorder {
    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Answers wait (after being recorded) while `hold` is true.
    pub fn hold(&self, hold: bool) {
        self.hold.send_replace(hold);
    }
}

/// A Prometheus answer: the scalar `value`.
pub fn scalar(value: &str) -> Answer {
    (
        200,
        "application/json",
        format!(r#"{{"status":"success","data":{{"resultType":"scalar","result":[1700000000,"{value}"]}}}}"#),
    )
}

/// Starts a recorder answering with `handler`.
pub async fn start(handler: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Recorder {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let (hold, held) = tokio::sync::watch::channel(false);
    let handler: Handler = Arc::new(handler);
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let (log, handler, held) = (Arc::clone(&log), Arc::clone(&handler), held.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (log, handler, mut held) = (Arc::clone(&log), Arc::clone(&handler), held.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let _ = body.collect().await;
                        let seen = Seen {
                            method: parts.method.to_string(),
                            path: parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
                            headers: parts
                                .headers
                                .iter()
                                .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                                .collect(),
                        };
                        log.lock().unwrap().push(seen.clone());
                        let _ = held.wait_for(|h| !*h).await;
                        let (status, content_type, body) = handler(&seen);
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .status(status)
                                .header("content-type", content_type)
                                .body(Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    Recorder { addr, url: format!("http://{addr}"), seen, hold }
}

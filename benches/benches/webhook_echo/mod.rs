//! The baseline of `webhook_load`: the webhook's stack minus the webhook's work.
//!
//! Same as the webhook server child: a tokio runtime with the same number of workers, a listener on
//! 127.0.0.1, the webhook's own rustls `ServerConfig` (`CertReloader::server_config`: ring, TLS 1.3 and
//! 1.2, ALPN `h2` and `http/1.1`) over the same rcgen certificate, and hyper through hyper-util's
//! connection builder, HTTP/2 when ALPN says `h2`, HTTP/1.1 keep-alive otherwise. Not there: warp and
//! its routing, the serving layer's caps and timers (`serve.rs`), the blocking pool the webhook hands
//! each review to, and the admission itself (parsing the pod, deciding, patching, metrics).
//!
//! Each POST is read whole and answered with a fixed small AdmissionReview echoing `request.uid`, which
//! is taken by a serde pass that checks the JSON and builds nothing but the uid: the least an answer the
//! API server would accept needs.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use k8s_openapi::serde; // serde itself, as k8s-openapi re-exports it
use placement_webhook::tls::CertReloader;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// Child: serve the echo on 127.0.0.1 until stdin says `STOP` or closes.
pub fn serve((cert, key): (PathBuf, PathBuf), threads: usize) {
    crate::runtime(threads).block_on(async {
        let certs = Arc::new(CertReloader::load(cert, key).expect("certificate"));
        let acceptor = TlsAcceptor::from(Arc::new(certs.server_config()));
        let (listener, port) = crate::bind_loopback().await;
        let accepting = tokio::spawn(accept_loop(listener, acceptor));
        println!("READY {port} 0 0 {} 0", crate::status_kib("self", "VmRSS:"));
        crate::follow_commands(String::new).await;
        accepting.abort();
        println!("STOPPED");
    });
}

async fn accept_loop(listener: tokio::net::TcpListener, acceptor: TlsAcceptor) {
    let http1 = Arc::new(builder().http1_only());
    let http2 = Arc::new(builder().http2_only());
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, http1, http2) = (acceptor.clone(), http1.clone(), http2.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else { return };
            let builder = if tls.get_ref().1.alpn_protocol() == Some(b"h2") { http2 } else { http1 };
            let _ = builder.serve_connection(TokioIo::new(tls), service_fn(answer)).await;
        });
    }
}

/// hyper's defaults, with the timer its timeouts need and keep-alive (as the webhook has them).
fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    builder
}

async fn answer(request: hyper::Request<Incoming>) -> Result<hyper::Response<Full<Bytes>>, hyper::Error> {
    let body = request.into_body().collect().await?.to_bytes();
    let uid = review_uid(&body).unwrap_or_default();
    let text = format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{{"uid":{},"allowed":true}}}}"#,
        serde_json::Value::String(uid)
    );
    let mut response = hyper::Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    Ok(response)
}

/// `request.uid` of an AdmissionReview; every other value is checked and skipped, never built.
fn review_uid(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    #[serde(crate = "k8s_openapi::serde")]
    struct Review {
        request: Request,
    }
    #[derive(serde::Deserialize)]
    #[serde(crate = "k8s_openapi::serde")]
    struct Request {
        uid: String,
    }
    serde_json::from_slice::<Review>(body).ok().map(|r| r.request.uid)
}

//! The HTTP listener: our accept loop over hyper's HTTP/1 connections, so that silent or slow
//! clients cannot hold the server (300 silent TCP connections used to exhaust a 256-descriptor
//! limit and stop `/healthz`):
//!
//! - a connection must send each request's head within `header_timeout` from when the server
//!   waits for it (hyper's header-read timer: the first request, and the next one on a
//!   kept-alive connection, so it is also the idle keep-alive timeout), else it is closed;
//! - a request head is at most [`MAX_HEAD_BYTES`] (`431` beyond);
//! - a request body must keep coming: `body_timeout` at most between two pieces
//!   (`408 body_timeout`);
//! - at most `max_connections` connections are served at once; one more is answered
//!   `503 server_busy` and closed at once, so the accept queue keeps moving and descriptors
//!   stay bounded. A connection upgraded to a WebSocket leaves the count (the monitor limits
//!   bound those).
//!
//! HTTP/1.1 only (browsers speak it to a plain-HTTP origin; h2c was never needed), over TCP or
//! over TLS (`tls`, see [`super::tls`]): the TLS handshake must finish within `header_timeout`
//! too, and counts against the connection cap like any connection.

use super::limits::HttpLimits;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;
use tower_http::timeout::TimeoutBody;

/// Largest request head (request line and headers) buffered; a longer one is answered `431`
/// and the connection closed. hyper's default (~400 KiB) times the connection cap would let a
/// flood of endless heads take hundreds of MiB. The longest legitimate head is an invite
/// link with its query parameters (32 of at most 256 characters are kept).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How long shutdown waits for requests in flight before it stops anyway.
const DRAIN: Duration = Duration::from_secs(10);
/// Connections refused as busy that may still be draining at once (each for at most
/// [`BUSY_LINGER`]); beyond that a refused connection is just closed.
const MAX_BUSY_REFUSALS: usize = 64;
/// How long a refused connection may take to read the 503 before it is closed.
const BUSY_LINGER: Duration = Duration::from_secs(1);

const BUSY_BODY: &str = r#"{"error":{"code":"server_busy","message":"the server has all the connections it may have; try again later"}}"#;

/// Serves `router` on `listener` until `shutdown` completes, within `limits`; over TLS when
/// `tls` is given.
pub(super) async fn run(
    listener: TcpListener,
    router: Router,
    limits: &HttpLimits,
    tls: Option<super::tls::TlsHandle>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(max));
    let busy_refusals = Arc::new(Semaphore::new(MAX_BUSY_REFUSALS));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let http = Arc::new(http);
    let warned = Throttle::default();
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors (EMFILE) or memory: log now and then, pause a moment
                    // (retrying at once would spin), keep serving the connections we have.
                    if warned.due() {
                        tracing::warn!(error = %e, "accepting a connection failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            if warned.due() {
                tracing::warn!(max, "connection limit reached: refusing new connections");
            }
            refuse_busy(stream, &busy_refusals);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = connection_service(
            router.clone(),
            remote,
            limits.body_timeout,
            limits.trusted_proxies.clone(),
        );
        let http = http.clone();
        let stop = stop_rx.clone();
        let acceptor = tls.as_ref().map(|t| t.acceptor());
        let handshake_timeout = limits.header_timeout;
        tokio::spawn(async move {
            match acceptor {
                None => serve_connection(&http, stream, service, stop).await,
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => {
                            serve_connection(&http, tls_stream, service, stop).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Requests in flight finish (each connection gives its permit back), within a bound.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN:?}: stopping anyway");
    }
    Ok(())
}

/// Serves HTTP/1.1 (with upgrades) on one connection until it ends, or gracefully when `stop`
/// changes.
async fn serve_connection<I, S>(
    http: &hyper::server::conn::http1::Builder,
    io: I,
    service: S,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = Body> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut conn = pin!(
        http.serve_connection(TokioIo::new(io), service)
            .with_upgrades()
    );
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// The router for one connection: every request carries the client's address (as axum's
/// `ConnectInfo`: the peer's, or behind a trusted proxy the one it forwards) and a body that
/// times out when it stops arriving.
fn connection_service(
    router: Router,
    remote: SocketAddr,
    body_timeout: Duration,
    proxies: super::forwarded::TrustedProxies,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = axum::response::Response,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let client = proxies.client_addr(remote, req.headers());
        let mut req = req.map(|body| Body::new(TimeoutBody::new(body_timeout, body)));
        req.extensions_mut().insert(ConnectInfo(client));
        router.clone().oneshot(req)
    })
}

/// Answers `503 server_busy` on a connection over the limit and closes it. The answer is
/// written without waiting (an empty send buffer takes it); the close waits up to
/// [`BUSY_LINGER`] for the client's request to arrive and be discarded, since closing with
/// unread data would reset the connection and lose the answer.
fn refuse_busy(stream: TcpStream, refusals: &Arc<Semaphore>) {
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\ncache-control: no-store\r\nx-content-type-options: nosniff\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{BUSY_BODY}",
        BUSY_BODY.len()
    );
    let _ = stream.try_write(response.as_bytes());
    let Ok(permit) = refusals.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let _ = tokio::time::timeout(BUSY_LINGER, drain(stream)).await;
        drop(permit);
    });
}

async fn drain(stream: TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut stream = stream;
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// At most one warning a second, however fast the cause repeats.
#[derive(Default)]
struct Throttle {
    last_ms: AtomicU64,
}

impl Throttle {
    fn due(&self) -> bool {
        let now = u64::try_from(crate::now_ms()).unwrap_or(0);
        let last = self.last_ms.load(Ordering::Relaxed);
        now.saturating_sub(last) >= 1000
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

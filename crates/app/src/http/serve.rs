//! Serving connections within bounds, before any request is authenticated:
//!
//! - **Headers in time.** A client has [`ConnectionLimits::header_timeout`] to send a request's
//!   headers, and an idle keep-alive connection as long to start its next request; then the
//!   connection is closed. Headers are capped at [`HEADER_BUFFER`] bytes (431 beyond).
//! - **A cap on connections.** At most [`ConnectionLimits::max_connections`] are served at
//!   once. Beyond it, up to [`OVERFLOW_MAX`] more are taken on a short leash (one request, a
//!   short header timeout) and answered `503` with `Retry-After` — except `/health`, which is
//!   answered on them too, so a probe sees the truth under overload; past those, connections
//!   are closed unanswered. Going over the cap and coming back are logged once each, with
//!   counts.
//! - **Graceful shutdown.** When `shutdown` is cancelled no connection is accepted; requests
//!   in flight finish and each connection then closes. The caller bounds how long that takes.
//!
//! Bodies have their own bounds ([`super::intake`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Bytes a connection may buffer while reading headers (and each read of a body).
pub const HEADER_BUFFER: usize = 16 * 1024;
/// Connections over the cap that are still answered (503, or `/health`).
pub const OVERFLOW_MAX: usize = 256;
/// The header timeout of a connection over the cap.
const OVERFLOW_HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long accepting pauses after the system refuses a connection (out of descriptors).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

/// The two services a connection can get: the whole router, or (over the cap) the overflow
/// router, which answers `/health` and refuses the rest with 503.
pub struct Routers {
    pub full: Router,
    pub overflow: Router,
}

/// Counts connections refused at the cap, so that going over it and coming back are logged
/// once each instead of once per connection.
#[derive(Default)]
struct Overload {
    refused: AtomicU64,
}

impl Overload {
    fn refused(&self, answered: bool) {
        if self.refused.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!(
                answered,
                "the connection limit is reached: new connections are refused with 503 until some close"
            );
        }
    }

    fn accepted(&self) {
        let refused = self.refused.swap(0, Ordering::Relaxed);
        if refused > 0 {
            tracing::info!(refused, "connections are accepted again after the limit was reached");
        }
    }
}

/// The process's soft limit on open files, where the system tells it (`/proc/self/limits`).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Accepts and serves connections on `listener` until `shutdown` is cancelled, then waits for
/// the open ones to finish their requests.
pub async fn serve(listener: TcpListener, routers: Routers, limits: ConnectionLimits, shutdown: CancellationToken) {
    // Each connection is a descriptor, and the store and HubSpot need some of their own.
    let wanted = (limits.max_connections + OVERFLOW_MAX + 256) as u64;
    if let Some(files) = open_files_limit().filter(|&f| f < wanted) {
        tracing::warn!(
            open_files = files,
            max_connections = limits.max_connections,
            "the open-files limit is below what max_connections needs ({wanted}); raise it (LimitNOFILE, ulimit -n) or lower max_connections"
        );
    }
    let graceful = GracefulShutdown::new();
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let overflow = Arc::new(Semaphore::new(OVERFLOW_MAX));
    let overload = Overload::default();
    let timer = TokioTimer::new();
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most often: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed; pausing accepts");
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                    continue;
                }
            },
        };
        let (stream, peer) = stream;
        let _ = stream.set_nodelay(true);
        let mut builder = http1::Builder::new();
        builder.timer(timer.clone()).max_buf_size(HEADER_BUFFER);
        let (permit, router) = match open.clone().try_acquire_owned() {
            Ok(permit) => {
                overload.accepted();
                builder.header_read_timeout(limits.header_timeout).keep_alive(true);
                (permit, routers.full.clone())
            }
            Err(_) => match overflow.clone().try_acquire_owned() {
                Ok(permit) => {
                    overload.refused(true);
                    builder.header_read_timeout(OVERFLOW_HEADER_TIMEOUT).keep_alive(false);
                    (permit, routers.overflow.clone())
                }
                Err(_) => {
                    overload.refused(false);
                    continue;
                }
            },
        };
        // The sender's address, for the record of a delivery refused (crate::rejections).
        let router = tower_layer::Layer::layer(&axum::Extension(ConnectInfo(peer)), router);
        let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client going away or timing out is its own business, not an error of ours.
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "a connection ended with an error");
            }
            drop(permit);
        });
    }
    graceful.shutdown().await;
}

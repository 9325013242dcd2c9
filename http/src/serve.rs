//! The accept loop: HTTP/1.1 with upgrades on plain TCP sockets.
//!
//! Serving each connection with hyper's HTTP/1 builder directly (rather than through a
//! protocol-sniffing wrapper) keeps an upgraded connection's IO a `TokioIo<TcpStream>`, so the
//! WebSocket gateway can take the raw socket back and write pre-framed bytes to it.

use std::future::Future;
use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long in-flight HTTP requests get to finish once shutdown starts.
const HTTP_GRACE: Duration = Duration::from_secs(10);

/// Accepts and serves connections until `shutdown` resolves; then stops accepting and waits for
/// in-flight HTTP requests (upgraded WebSockets are drained by their own connections).
pub async fn serve(listener: TcpListener, router: Router, shutdown: impl Future<Output = ()>) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let open = Arc::new(AtomicUsize::new(0));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(err) => {
                        // Out of file descriptors and similar: back off instead of spinning.
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(router.clone());
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades();
                let mut stop = stop_rx.clone();
                let open = open.clone();
                open.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    tokio::pin!(connection);
                    let result = tokio::select! {
                        result = connection.as_mut() => result,
                        _ = async { let _ = stop.wait_for(|stop| *stop).await; } => {
                            // Finish the request in flight, accept no new one on this connection.
                            connection.as_mut().graceful_shutdown();
                            connection.await
                        }
                    };
                    if let Err(err) = result {
                        tracing::debug!(error = %err, "HTTP connection ended with an error");
                    }
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let deadline = tokio::time::Instant::now() + HTTP_GRACE;
    while open.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if open.load(Ordering::SeqCst) > 0 {
        tracing::warn!("HTTP connections still open after the grace period");
    }
}

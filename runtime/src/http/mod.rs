//! The HTTP API (HTTP.md): hyper 1 on glommio sockets, one listener per
//! port per shard (SO_REUSEPORT spreads connections across shards).
//! Errors become status codes in one place: [`reply::text`] and the handlers'
//! match arms. With tokens in the config, `auth.rs` decides who a request
//! may act for before its body is read.

mod auth;
pub mod body;
#[doc(hidden)]
pub mod invoke; // public for the fuzz target only
pub mod io;
pub mod reply;
mod upload;

use std::cell::Cell;
use std::convert::Infallible;
use std::rc::Rc;

use glommio::net::TcpListener;
use hyper::StatusCode;

use crate::limits;
use crate::shard::LocalShard;
use io::{GlommioIo, GlommioTimer};
use reply::text;

/// Which API a listener serves.
#[derive(Debug, Clone, Copy)]
pub enum Api {
    /// Port 8080: invocations, `/healthz`, `/metrics`.
    Invoke,
    /// Port 8002: uploads, state and objects.
    Upload,
}

/// Accepts connections until the listener fails; each connection is a task
/// on this shard.
pub async fn serve(listener: TcpListener, shard: Rc<LocalShard>, api: Api) {
    // Once per shard (the second listener's call returns at once).
    glommio::spawn_local(io::heartbeat()).detach();
    let open = Rc::new(Cell::new(0usize));
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) => {
                // Out of descriptors or a reset before accept: back off a little.
                tracing::warn!(shard = shard.id, ?api, %error, "accept failed");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        if open.get() >= limits::CONNECTIONS_PER_SHARD_MAX {
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        // A client that stops reading its answer cannot hold the
        // connection (and the answer's bytes) for ever.
        let _ = stream.set_write_timeout(Some(std::time::Duration::from_millis(
            shard.node.config.limits.response_write_ms_max,
        )));
        open.set(open.get() + 1);
        let open = open.clone();
        let shard = shard.clone();
        // 0 turns the header-read timeout off.
        let header_read = Some(shard.node.config.limits.header_read_ms_max)
            .filter(|ms| *ms > 0)
            .map(std::time::Duration::from_millis);
        glommio::spawn_local(async move {
            let service = hyper::service::service_fn(move |request| {
                let shard = shard.clone();
                async move {
                    // Until the handler's answer is ready; a streamed body
                    // holds its own.
                    let _working = io::Working::begin();
                    let metrics = shard.clone();
                    let handled = std::panic::AssertUnwindSafe(async move {
                        match api {
                            Api::Invoke => invoke::handle(shard, request).await,
                            Api::Upload => upload::handle(shard, request).await,
                        }
                    });
                    // A fault while serving one request fails that request;
                    // the shard and its other connections serve on.
                    Ok::<_, Infallible>(match futures::FutureExt::catch_unwind(handled).await {
                        Ok(reply) => reply,
                        Err(panic) => {
                            let reason = panic
                                .downcast_ref::<&str>()
                                .map(|s| (*s).to_owned())
                                .or_else(|| panic.downcast_ref::<String>().cloned())
                                .unwrap_or_else(|| "a panic".into());
                            metrics.node.metrics.panics.inc();
                            tracing::error!(%reason, "a request panicked; answered 500");
                            text(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                format!("Internal error: {reason}"),
                            )
                        }
                    })
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .timer(GlommioTimer)
                .header_read_timeout(header_read)
                .serve_connection(GlommioIo::new(stream), service)
                .without_shutdown();
            match connection.await {
                Ok(parts) => linger(parts.io.into_inner()).await,
                Err(error) => tracing::debug!(%error, "connection ended with an error"),
            }
            open.set(open.get() - 1);
        })
        .detach();
    }
}

/// Ends a connection hyper is done with the way a client can read: its
/// side is shut for writing, then what the client still sends is read and
/// dropped, until it closes, [`limits::LINGER_BYTES_MAX`] bytes or
/// [`limits::LINGER_MS_MAX`]. Closing with unread bytes makes the kernel
/// send a reset, and a reset can discard an answer the client had not yet
/// read: a client still sending a body the node refused early (411, 413)
/// saw "broken pipe" instead of the refusal.
async fn linger(stream: glommio::net::TcpStream) {
    use futures_lite::AsyncReadExt;
    if stream.shutdown(std::net::Shutdown::Write).await.is_err() {
        return;
    }
    let deadline =
        std::time::Instant::now() + std::time::Duration::from_millis(limits::LINGER_MS_MAX);
    let mut stream = stream;
    let mut buf = vec![0u8; 64 << 10];
    let mut drained = 0usize;
    while drained < limits::LINGER_BYTES_MAX {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        let read = glommio::timer::timeout(left, async { Ok(stream.read(&mut buf).await) }).await;
        match read {
            Ok(Ok(n)) if n > 0 => drained += n,
            // Closed, failed or out of time.
            _ => return,
        }
    }
}

//! The HTTP API (HTTP.md): hyper 1 on glommio sockets, one listener per
//! port per shard (SO_REUSEPORT spreads connections across shards).
//! Errors become status codes in one place: [`text`] and the handlers'
//! match arms. With tokens in the config, `auth.rs` decides who a request
//! may act for before its body is read.

mod auth;
#[doc(hidden)]
pub mod invoke; // public for the fuzz target only
mod upload;

use std::cell::Cell;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::{TcpListener, TcpStream};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::limits;
use crate::shard::LocalShard;

pub type Reply = Response<Full<Bytes>>;

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
            limits::RESPONSE_WRITE_MS_MAX,
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
                .serve_connection(GlommioIo(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
            open.set(open.get() - 1);
        })
        .detach();
    }
}

/// A plain-text reply.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    response
}

pub fn busy() -> Reply {
    let mut response = text(StatusCode::SERVICE_UNAVAILABLE, "Busy");
    response.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from_static("1"),
    );
    response
}

/// Reads a request body of at most `max` bytes; `Err` is the reply to send.
pub async fn read_body(request: Request<Incoming>, max: usize) -> Result<Bytes, Reply> {
    // A client that stops sending mid-body is cut off: no part of the body
    // may take longer than this to arrive (a stalled body held its
    // connection, and what it had sent, for ever).
    let stall = std::time::Duration::from_millis(limits::BODY_STALL_MS_MAX);
    let mut body = Limited::new(request.into_body(), max);
    let mut collected = bytes::BytesMut::new();
    loop {
        let frame = match glommio::timer::timeout(stall, async { Ok(body.frame().await) }).await {
            Ok(frame) => frame,
            Err(_) => {
                return Err(text(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "The request body stalled: nothing arrived for {} ms",
                        limits::BODY_STALL_MS_MAX
                    ),
                ))
            }
        };
        match frame {
            None => return Ok(collected.freeze()),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    collected.extend_from_slice(&data);
                }
            }
            Some(Err(error)) => return Err(body_error(error, max)),
        }
    }
}

fn body_error(error: Box<dyn std::error::Error + Send + Sync>, max: usize) -> Reply {
    if error.is::<http_body_util::LengthLimitError>() {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body exceeds the cap of {max} bytes"),
        )
    } else {
        text(
            StatusCode::BAD_REQUEST,
            format!("Reading the request body: {error}"),
        )
    }
}

/// hyper's timer on glommio's: hyper asks for `Send + Sync` sleeps, and
/// only ever polls them from the connection's task on this shard, which
/// `SendWrapper` checks.
struct GlommioTimer;

struct GlommioSleep(send_wrapper::SendWrapper<glommio::timer::Timer>);

impl std::future::Future for GlommioSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut *self.0).poll(cx).map(|_| ())
    }
}

impl hyper::rt::Sleep for GlommioSleep {}

impl hyper::rt::Timer for GlommioTimer {
    fn sleep(&self, duration: std::time::Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(GlommioSleep(send_wrapper::SendWrapper::new(
            glommio::timer::Timer::new(duration),
        )))
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep(deadline.saturating_duration_since(std::time::Instant::now()))
    }
}

/// Bytes one read of a connection may fill.
const READ_WINDOW_BYTES: usize = 64 << 10;

/// hyper's I/O traits over a glommio TCP stream (server and client side).
pub struct GlommioIo(pub TcpStream);

impl hyper::rt::Read for GlommioIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        // SAFETY: only initialised bytes are reported through `advance`.
        let spare = unsafe { buf.as_mut() };
        // The stream wants `&mut [u8]`, so the window handed out is zeroed
        // first, on every read: keep it to 64 KiB (~3 us of memset), not
        // the whole of hyper's buffer, which grows to hundreds of KiB on
        // large bodies.
        let window = spare.len().min(READ_WINDOW_BYTES);
        let uninit = &mut spare[..window];
        for byte in uninit.iter_mut() {
            byte.write(0);
        }
        // SAFETY: every byte of `uninit` was initialised just above.
        let slice = unsafe { &mut *(uninit as *mut [std::mem::MaybeUninit<u8>] as *mut [u8]) };
        match Pin::new(&mut self.0).poll_read(cx, slice) {
            Poll::Ready(Ok(n)) => {
                // SAFETY: the stream wrote `n` bytes into the cursor's buffer.
                unsafe { buf.advance(n) };
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl hyper::rt::Write for GlommioIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}

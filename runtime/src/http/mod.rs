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

use crate::budget::{Refused, Share};
use crate::limits;
use crate::shard::LocalShard;

/// An answer's body: whole ([`text`]) or streamed in parts (object GETs).
/// Not `Send`: a streamed part is read by this shard's files and stores.
pub type Body = Pin<Box<dyn hyper::body::Body<Data = Bytes, Error = BodyError>>>;
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;
pub type Reply = Response<Body>;

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
    let body: Body = Box::pin(Full::new(body.into()).map_err(|never| match never {}));
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    response
}

pub fn busy() -> Reply {
    busy_because("Busy")
}

/// 503 with `Retry-After` and the reason.
pub fn busy_because(reason: impl Into<Bytes>) -> Reply {
    let mut response = text(StatusCode::SERVICE_UNAVAILABLE, reason);
    response.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from_static("1"),
    );
    response
}

/// The node's HTTP buffers are spent: nothing of this request was read.
pub fn buffers_busy(refused: Refused) -> Reply {
    busy_because(format!(
        "Busy: requests in flight hold {} of the node's {} bytes of HTTP buffers (limits.http_buffer_bytes_max)",
        refused.held_bytes, refused.max_bytes
    ))
}

/// The body's length as its `Content-Length` gives it; None for a
/// chunked body.
pub fn declared_len(request: &Request<Incoming>) -> Option<u64> {
    hyper::body::Body::size_hint(request.body()).exact()
}

/// Reads a request body of at most `max` bytes, after taking what it may
/// hold from the node's HTTP buffers (refused: 503, before a byte is
/// read); `Err` is the reply to send. The share is the caller's to hold
/// while the bytes live.
pub async fn read_body(
    shard: &LocalShard,
    request: Request<Incoming>,
    max: usize,
) -> Result<(Bytes, Share), Reply> {
    let declared = declared_len(&request);
    if let Some(len) = declared.filter(|len| *len > max as u64) {
        return Err(too_large(len, max));
    }
    let share = shard
        .node
        .http_buffers
        .take(declared.unwrap_or(max as u64))
        .map_err(buffers_busy)?;
    let mut body = BodyReader::new(request, max);
    let mut collected = bytes::BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(data) = body.next().await? {
        if collected.is_empty() && declared == Some(data.len() as u64) {
            return Ok((data, share)); // one frame: no copy
        }
        collected.extend_from_slice(&data);
    }
    Ok((collected.freeze(), share))
}

fn too_large(len: u64, max: usize) -> Reply {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("Request body of {len} bytes exceeds the cap of {max} bytes"),
    )
}

/// A request body read frame by frame, at most `max` bytes, with a stall
/// timeout: a client that stops sending mid-body is cut off (a stalled
/// body held its connection, and what it had sent, for ever).
pub struct BodyReader {
    body: Limited<Incoming>,
    max: usize,
}

impl BodyReader {
    pub fn new(request: Request<Incoming>, max: usize) -> BodyReader {
        BodyReader {
            body: Limited::new(request.into_body(), max),
            max,
        }
    }

    /// The next bytes of the body; None at its end.
    pub async fn next(&mut self) -> Result<Option<Bytes>, Reply> {
        let stall = std::time::Duration::from_millis(limits::BODY_STALL_MS_MAX);
        loop {
            let frame = glommio::timer::timeout(stall, async { Ok(self.body.frame().await) })
                .await
                .map_err(|_| {
                    text(
                        StatusCode::REQUEST_TIMEOUT,
                        format!(
                            "The request body stalled: nothing arrived for {} ms",
                            limits::BODY_STALL_MS_MAX
                        ),
                    )
                })?;
            match frame {
                None => return Ok(None),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            return Ok(Some(data));
                        }
                    }
                }
                Some(Err(error)) => return Err(body_error(error, self.max)),
            }
        }
    }
}

fn body_error(error: BodyError, max: usize) -> Reply {
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

//! hyper's runtime traits over glommio: its timer (for the header-read
//! timeout) and its I/O traits over a glommio TCP stream.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

/// hyper's timer on glommio's: hyper asks for `Send + Sync` sleeps, and
/// only ever polls them from the connection's task on this shard, which
/// `SendWrapper` checks.
pub struct GlommioTimer;

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

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
///
/// A read or write that has to wait is also polled again by the shard's
/// heartbeat ([`heartbeat`]), whether or not its readiness was signalled:
/// glommio 0.9 can leave a shard asleep with a readiness poll not yet seen
/// (the transport met it first, `ferry_transport` frame.rs; here it showed
/// as a request answered only when hyper's 30 s header-read timer woke the
/// connection, about 1 in 100,000 calls under overload). A waiting read
/// costs a waker kept in a list, not a timer of its own: a timer per read
/// cost 3-5 us per call.
pub struct GlommioIo<S = TcpStream>(pub S);

impl<S> GlommioIo<S> {
    pub fn new(stream: S) -> GlommioIo<S> {
        GlommioIo(stream)
    }
}

/// How often the heartbeat polls the shard's waiting connections again:
/// what a lost wake-up costs at most.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_millis(50);

thread_local! {
    /// Tasks of this shard whose connection I/O waits (since the last beat).
    static WAITING: std::cell::RefCell<Vec<std::task::Waker>> = const { std::cell::RefCell::new(Vec::new()) };
    static BEATING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn waits(cx: &Context<'_>) {
    WAITING.with(|waiting| waiting.borrow_mut().push(cx.waker().clone()));
}

/// Every [`HEARTBEAT`], wakes the tasks whose connection I/O waited since
/// the last beat, so each polls its stream again. Runs once per shard (a
/// second call returns at once); spawn it on the shard's executor.
pub async fn heartbeat() {
    if BEATING.with(|beating| beating.replace(true)) {
        return;
    }
    loop {
        glommio::timer::sleep(HEARTBEAT).await;
        let woken = WAITING.with(|waiting| std::mem::take(&mut *waiting.borrow_mut()));
        for waker in woken {
            waker.wake();
        }
    }
}

impl<S: AsyncRead + Unpin> hyper::rt::Read for GlommioIo<S> {
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
            Poll::Pending => {
                waits(cx);
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> hyper::rt::Write for GlommioIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.0).poll_write(cx, buf);
        if written.is_pending() {
            waits(cx);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::{Duration, Instant};

    /// A stream whose bytes become readable at `ready_at` without ever
    /// waking its reader: a readiness signal that got lost.
    struct Silent {
        ready_at: Instant,
        polls: Rc<Cell<u32>>,
    }

    impl AsyncRead for Silent {
        fn poll_read(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            self.polls.set(self.polls.get() + 1);
            if Instant::now() < self.ready_at {
                return Poll::Pending;
            }
            buf[0] = b'x';
            Poll::Ready(Ok(1))
        }
    }

    #[test]
    fn a_read_whose_wake_up_is_lost_is_polled_again_by_the_heartbeat() -> anyhow::Result<()> {
        let outcome = glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                glommio::spawn_local(heartbeat()).detach();
                let polls = Rc::new(Cell::new(0));
                let started = Instant::now();
                let mut io = GlommioIo::new(Silent {
                    ready_at: started + Duration::from_millis(50),
                    polls: polls.clone(),
                });
                let mut storage = [std::mem::MaybeUninit::<u8>::uninit(); 16];
                let mut buf = hyper::rt::ReadBuf::uninit(&mut storage);
                let read = std::future::poll_fn(|cx| {
                    hyper::rt::Read::poll_read(Pin::new(&mut io), cx, buf.unfilled())
                });
                // Without the heartbeat, nothing would ever wake this read.
                glommio::timer::timeout(Duration::from_secs(5), async { Ok(read.await) })
                    .await
                    .map_err(|e| anyhow::anyhow!("the read was never woken: {e}"))??;
                let took = started.elapsed();
                anyhow::ensure!(buf.filled() == b"x", "read {:?}", buf.filled());
                // A few beats at most (slack for a loaded machine), far
                // below the 5 s a read nothing wakes would take.
                anyhow::ensure!(
                    took < Duration::from_millis(50) + HEARTBEAT * 8,
                    "the read took {took:?}"
                );
                // One poll per beat, not a spin.
                anyhow::ensure!(polls.get() <= 4, "{} polls", polls.get());
                anyhow::Ok(())
            })
            .map_err(|e| anyhow::anyhow!("starting an executor: {e}"))?
            .join()
            .map_err(|e| anyhow::anyhow!("executor: {e:?}"))?;
        outcome
    }
}

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
///
/// An I/O that has waited [`LONG_WAIT_BEATS`] beats (an idle keep-alive
/// connection between requests, a client that stopped reading) is polled
/// again only every [`LONG_WAIT_BEATS`] beats: each poll costs ~3 us, and
/// 4,096 idle connections polled every beat took 22% of a core.
pub struct GlommioIo<S = TcpStream> {
    stream: S,
    /// The beat at which the current wait began; `None` while not waiting.
    waiting_since: Option<u64>,
}

impl<S> GlommioIo<S> {
    pub fn new(stream: S) -> GlommioIo<S> {
        GlommioIo {
            stream,
            waiting_since: None,
        }
    }

    /// The I/O has to wait: its task is woken again by a coming beat.
    fn waits(&mut self, cx: &Context<'_>) {
        let now = BEAT.with(|beat| beat.get());
        let since = *self.waiting_since.get_or_insert(now);
        let list = if now - since < LONG_WAIT_BEATS {
            &WAITING
        } else {
            &LONG_WAITING
        };
        list.with(|waiting| waiting.borrow_mut().push(cx.waker().clone()));
        unpark();
    }

    fn moved(&mut self) {
        self.waiting_since = None;
    }

    pub fn into_inner(self) -> S {
        self.stream
    }
}

/// How often the heartbeat polls the shard's waiting connections again:
/// what a lost wake-up costs at most, for an I/O that has waited less than
/// [`LONG_WAIT_BEATS`] beats.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_millis(50);

/// After this many beats of waiting (1 s), an I/O is polled again once per
/// this many beats: a lost wake-up on a long-idle connection costs at most
/// ~1 s instead of 50 ms.
pub const LONG_WAIT_BEATS: u64 = 20;

thread_local! {
    /// Tasks of this shard whose connection I/O waits (since the last beat).
    static WAITING: std::cell::RefCell<Vec<std::task::Waker>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Those whose I/O has waited [`LONG_WAIT_BEATS`] beats or more.
    static LONG_WAITING: std::cell::RefCell<Vec<std::task::Waker>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Beats so far on this shard.
    static BEAT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    static BEATING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// [`Working`] guards alive on this shard.
    static WORKING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// The heartbeat's task while it is parked (the shard is idle).
    static PARKED: std::cell::Cell<Option<std::task::Waker>> = const { std::cell::Cell::new(None) };
}

/// Whether the shard is idle: no connection I/O waits and no work is
/// under way ([`Working`]).
fn idle() -> bool {
    WORKING.with(|working| working.get()) == 0
        && WAITING.with(|waiting| waiting.borrow().is_empty())
        && LONG_WAITING.with(|waiting| waiting.borrow().is_empty())
}

/// Starts a parked heartbeat beating again.
fn unpark() {
    if let Some(heartbeat) = PARKED.with(|parked| parked.take()) {
        heartbeat.wake();
    }
}

/// Held while the shard works on something: a request (until its answer
/// is ready; writing it is connection I/O, and a streamed body holds one
/// until its last part), a peer's message, an asynchronous call,
/// start-up. While any is held the heartbeat beats, whether or not
/// connection I/O waits. It counts on the thread it began on: hold it
/// only in a shard's tasks, which never leave their thread.
///
/// A beat wakes the shard, and a shard that wakes takes in the wake-ups
/// other threads sent it. glommio 0.9 fails now and then to signal one
/// to a sleeping shard: a blocking-pool job's completion
/// (`spawn_blocking`), a waker called from another thread (a RADOS
/// worker, WASI's tokio threads). A shard with nothing else to wake it
/// then sleeps for ever with the task still waiting; a node's start-up
/// hung that way, compiling its functions on the blocking pool.
/// `runtime/examples/lost_wakeups.rs` reproduces it: with the 2 ms
/// preemption timer shards use ([`crate::limits::SHARD_PREEMPT_MS`]) and
/// the cores contended, one wait in a few thousand never ends; a beat
/// bounds what a lost wake-up costs to [`HEARTBEAT`]. (With a 100 ms
/// timer none was lost in 1,200,000 waits, with 20 ms none in 800,000;
/// but a shard needs the short one.)
pub struct Working {
    _private: (),
}

impl Working {
    pub fn begin() -> Working {
        WORKING.with(|working| working.set(working.get() + 1));
        unpark();
        Working { _private: () }
    }
}

impl Drop for Working {
    fn drop(&mut self) {
        WORKING.with(|working| working.set(working.get() - 1));
    }
}

/// Every [`HEARTBEAT`], wakes the tasks whose connection I/O waited since
/// the last beat, so each polls its stream again; those that have waited
/// long, every [`LONG_WAIT_BEATS`] beats. While the shard is idle (no I/O
/// waits, no [`Working`] is held) it parks, so an idle shard takes no
/// timer wake-ups; the next I/O that waits or work that begins wakes it.
/// Runs once per shard (a second call returns at once); spawn it on
/// the shard's executor.
pub async fn heartbeat() {
    if BEATING.with(|beating| beating.replace(true)) {
        return;
    }
    loop {
        std::future::poll_fn(|cx| {
            if idle() {
                PARKED.with(|parked| parked.set(Some(cx.waker().clone())));
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        glommio::timer::sleep(HEARTBEAT).await;
        let beat = BEAT.with(|beat| {
            beat.set(beat.get() + 1);
            beat.get()
        });
        let mut woken = WAITING.with(|waiting| std::mem::take(&mut *waiting.borrow_mut()));
        if beat % LONG_WAIT_BEATS == 0 {
            LONG_WAITING.with(|waiting| woken.append(&mut waiting.borrow_mut()));
        }
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
        match Pin::new(&mut self.stream).poll_read(cx, slice) {
            Poll::Ready(Ok(n)) => {
                self.moved();
                // SAFETY: the stream wrote `n` bytes into the cursor's buffer.
                unsafe { buf.advance(n) };
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => {
                self.moved();
                Poll::Ready(Err(e))
            }
            Poll::Pending => {
                self.waits(cx);
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
        let written = Pin::new(&mut self.stream).poll_write(cx, buf);
        if written.is_pending() {
            self.waits(cx);
        } else {
            self.moved();
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_close(cx)
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

    /// Runs `test` on a new executor with the heartbeat spawned, as a
    /// shard runs.
    fn on_a_shard<T, F>(test: impl FnOnce() -> F + Send + 'static) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: std::future::Future<Output = anyhow::Result<T>> + 'static,
    {
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                glommio::spawn_local(heartbeat()).detach();
                test().await
            })
            .map_err(|e| anyhow::anyhow!("starting an executor: {e}"))?
            .join()
            .map_err(|e| anyhow::anyhow!("executor: {e:?}"))?
    }

    /// Reads from a [`Silent`] stream that becomes readable after `ready`:
    /// how long the read took and how often the stream was polled.
    async fn read_silently(ready: Duration) -> anyhow::Result<(Duration, u32)> {
        let polls = Rc::new(Cell::new(0));
        let started = Instant::now();
        let mut io = GlommioIo::new(Silent {
            ready_at: started + ready,
            polls: polls.clone(),
        });
        let mut storage = [std::mem::MaybeUninit::<u8>::uninit(); 16];
        let mut buf = hyper::rt::ReadBuf::uninit(&mut storage);
        let read = std::future::poll_fn(|cx| {
            hyper::rt::Read::poll_read(Pin::new(&mut io), cx, buf.unfilled())
        });
        // Without the heartbeat, nothing would ever wake this read.
        glommio::timer::timeout(ready + Duration::from_secs(5), async { Ok(read.await) })
            .await
            .map_err(|e| anyhow::anyhow!("the read was never woken: {e}"))??;
        let took = started.elapsed();
        anyhow::ensure!(buf.filled() == b"x", "read {:?}", buf.filled());
        Ok((took, polls.get()))
    }

    /// Whether this shard's heartbeat is parked.
    fn parked() -> bool {
        PARKED.with(|parked| {
            let waker = parked.take();
            let is = waker.is_some();
            parked.set(waker);
            is
        })
    }

    /// Waits a few beats for the heartbeat to park, then checks that no
    /// beat follows.
    async fn parks_again() -> anyhow::Result<()> {
        glommio::timer::sleep(HEARTBEAT * 4).await;
        let after = BEAT.with(|beat| beat.get());
        glommio::timer::sleep(HEARTBEAT * 6).await;
        let later = BEAT.with(|beat| beat.get());
        anyhow::ensure!(later == after, "beats went on: {after} then {later}");
        anyhow::ensure!(parked(), "not parked");
        Ok(())
    }

    #[test]
    fn a_read_whose_wake_up_is_lost_is_polled_again_by_the_heartbeat() -> anyhow::Result<()> {
        let (took, polls) = on_a_shard(|| read_silently(Duration::from_millis(50)))?;
        // A few beats at most (slack for a loaded machine), far below the
        // 5 s a read nothing wakes would take.
        anyhow::ensure!(
            took < Duration::from_millis(50) + HEARTBEAT * 8,
            "the read took {took:?}"
        );
        // One poll per beat, not a spin.
        anyhow::ensure!(polls <= 4, "{polls} polls");
        Ok(())
    }

    #[test]
    fn the_heartbeat_parks_while_nothing_waits_and_a_read_wakes_it() -> anyhow::Result<()> {
        on_a_shard(|| async {
            // Nothing waits: no beat at all.
            glommio::timer::sleep(HEARTBEAT * 6).await;
            let idle = BEAT.with(|beat| beat.get());
            anyhow::ensure!(idle == 0, "{idle} beats with nothing waiting");
            anyhow::ensure!(parked(), "the heartbeat is not parked");
            // A read that waits, and whose wake-up is lost, wakes it and is
            // polled again within a few beats.
            let (took, _) = read_silently(Duration::from_millis(50)).await?;
            anyhow::ensure!(
                took < Duration::from_millis(50) + HEARTBEAT * 8,
                "the read took {took:?}"
            );
            // Done waiting: it parks again.
            parks_again().await
        })
    }

    #[test]
    fn work_under_way_keeps_the_heartbeat_beating_and_it_parks_after() -> anyhow::Result<()> {
        on_a_shard(|| async {
            glommio::timer::sleep(HEARTBEAT * 4).await;
            anyhow::ensure!(parked(), "the heartbeat is not parked on an idle shard");
            // Work begins with no connection I/O waiting: each beat wakes
            // the shard, where wake-ups glommio failed to signal wait to be
            // taken in.
            let working = Working::begin();
            let before = BEAT.with(|beat| beat.get());
            glommio::timer::sleep(HEARTBEAT * 10).await;
            let beats = BEAT.with(|beat| beat.get()) - before;
            anyhow::ensure!(beats >= 5, "{beats} beats in 10 periods of work");
            anyhow::ensure!(!parked(), "parked while work is under way");
            // Work done: it parks again.
            drop(working);
            parks_again().await
        })
    }

    #[test]
    fn a_read_that_waited_long_is_polled_again_less_often() -> anyhow::Result<()> {
        // Readable after 32 beats: polled at each of the first 20, then at
        // the 40th. Polled every beat, it would take 33 polls.
        let ready = HEARTBEAT * 32;
        let (took, polls) = on_a_shard(move || read_silently(ready))?;
        let long = u32::try_from(LONG_WAIT_BEATS)?;
        anyhow::ensure!(polls <= long + 4, "{polls} polls in {took:?}");
        // Still found within one long period (and slack for a loaded machine).
        anyhow::ensure!(
            took < ready + HEARTBEAT * (long + 8),
            "the read took {took:?}"
        );
        Ok(())
    }
}

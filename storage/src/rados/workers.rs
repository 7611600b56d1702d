//! [`Workers`]: the store's few threads that make blocking librados calls,
//! fed through a bounded queue, so that a shard only ever awaits.
//!
//! A call owns everything it touches: the closure handed to
//! [`Workers::run`] is `'static`, so the buffers librados reads from or
//! writes into move to the worker with it and come back in its value (a
//! `put`'s data goes in as `Bytes`, a read's destination comes back as a
//! `Vec`). Nothing a worker touches is borrowed from the awaiting task.
//!
//! **Architecture invariant:** a [`Workers::run`] future may be dropped or
//! leaked at any point without harm and without waiting: a call still
//! queued is marked abandoned and never starts; a call already running
//! finishes on its worker and its value is dropped there. Nothing on the
//! awaiting side ever blocks.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// Why a call produced no value.
#[derive(Debug)]
pub(crate) enum Lost {
    /// The workers stopped before the call ran.
    Stopped,
    /// The call panicked; the message.
    Panicked(String),
}

type Job = Box<dyn Runnable + Send + 'static>;

trait Runnable {
    fn run(self: Box<Self>);
}

/// Worker threads with a bounded queue in front of them. Dropping it
/// closes the queue: each thread finishes the calls already queued and
/// exits on its own; nothing waits for them.
pub(crate) struct Workers {
    sender: flume::Sender<Job>,
    threads: usize,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl Workers {
    /// Starts `threads` threads named `name-N`, queueing up to `queue_max`
    /// calls that wait for a thread.
    pub(crate) fn start(name: &str, threads: usize, queue_max: usize) -> std::io::Result<Workers> {
        assert!(threads > 0 && queue_max > 0);
        let (sender, receiver) = flume::bounded::<Job>(queue_max);
        for i in 0..threads {
            let receiver = receiver.clone();
            // Detached: a thread ends when every sender is gone and the
            // queue is empty.
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    while let Ok(job) = receiver.recv() {
                        job.run();
                    }
                })?;
        }
        Ok(Workers { sender, threads })
    }

    /// Runs `f` on a worker thread and returns its value. Waits (without
    /// blocking the thread) while the queue is full. Dropping the returned
    /// future abandons the call (see the module docs); it never blocks.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, Lost>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let call = Arc::new(Call::new());
        let job: Job = Box::new(Task {
            f: Some(f),
            call: call.clone(),
        });
        let waiting = Waiting { call };
        if self.sender.send_async(job).await.is_err() {
            // The job came back with the error and was dropped unrun.
            return Err(Lost::Stopped);
        }
        waiting.await
    }
}

enum State<T> {
    Queued,
    Running,
    Done(Result<T, Lost>),
    /// The awaiting future went away: a queued call never starts, a
    /// running one's value is dropped on its worker.
    Abandoned,
    /// The value was handed to the awaiting future.
    Taken,
}

/// One call's state and the waker of the task awaiting it, under one lock.
struct Slot<T> {
    state: State<T>,
    waker: Option<Waker>,
}

struct Call<T> {
    slot: Mutex<Slot<T>>,
}

impl<T> Call<T> {
    fn new() -> Self {
        Call {
            slot: Mutex::new(Slot {
                state: State::Queued,
                waker: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slot<T>> {
        // Nothing panics while holding the lock; recover the slot anyway.
        self.slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sets the outcome and wakes the task, unless the call was abandoned;
    /// then the outcome is dropped here, outside the lock.
    fn finish(&self, outcome: Result<T, Lost>) {
        let waker = {
            let mut slot = self.lock();
            if !matches!(slot.state, State::Queued | State::Running) {
                drop(slot);
                drop(outcome);
                return;
            }
            slot.state = State::Done(outcome);
            slot.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The job a worker runs: the caller's closure and where its value goes.
struct Task<F, T> {
    f: Option<F>,
    call: Arc<Call<T>>,
}

impl<F, T> Runnable for Task<F, T>
where
    F: FnOnce() -> T,
{
    fn run(mut self: Box<Self>) {
        let Some(f) = self.f.take() else { return };
        {
            let mut slot = self.call.lock();
            if !matches!(slot.state, State::Queued) {
                return; // abandoned: `f` is dropped unrun
            }
            slot.state = State::Running;
        }
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(f))
            .map_err(|panic| Lost::Panicked(panic_message(panic.as_ref())));
        self.call.finish(outcome);
    }
}

impl<F, T> Drop for Task<F, T> {
    fn drop(&mut self) {
        if self.f.is_some() {
            // Dropped unrun because the queue closed: fail the call (a no-op
            // if the awaiting future already went away).
            self.call.finish(Err(Lost::Stopped));
        }
    }
}

/// The awaiting side of a call.
struct Waiting<T> {
    call: Arc<Call<T>>,
}

impl<T> Future for Waiting<T> {
    type Output = Result<T, Lost>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = self.call.lock();
        match std::mem::replace(&mut slot.state, State::Taken) {
            State::Done(outcome) => Poll::Ready(outcome),
            State::Taken | State::Abandoned => Poll::Ready(Err(Lost::Stopped)),
            pending @ (State::Queued | State::Running) => {
                slot.state = pending;
                match &mut slot.waker {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    waker => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

impl<T> Drop for Waiting<T> {
    fn drop(&mut self) {
        let done = {
            let mut slot = self.call.lock();
            match slot.state {
                State::Queued | State::Running => {
                    slot.state = State::Abandoned;
                    slot.waker = None;
                    None
                }
                // A value nobody took: dropped below, outside the lock.
                State::Done(_) => Some(std::mem::replace(&mut slot.state, State::Taken)),
                State::Abandoned | State::Taken => None,
            }
        };
        drop(done);
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use super::*;

    /// Far longer than any step here takes on a loaded machine: a bound
    /// that turns a hang into a failure, never a measure of speed.
    const PATIENCE: Duration = Duration::from_secs(30);

    fn on_executor<T>(body: impl std::future::Future<Output = T>) -> T {
        let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .make()
            .unwrap_or_else(|e| panic!("starting executor: {e}"));
        executor.run(body)
    }

    /// Polls `future` once, checks it is not done, and hands it back,
    /// pinned. Only for calls that cannot finish yet.
    fn poll_once<F: Future>(future: F) -> Pin<Box<F>> {
        let mut future = Box::pin(future);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(future.as_mut().poll(&mut cx).is_pending());
        future
    }

    /// Waits until `flag` is set, for at most [`PATIENCE`].
    fn wait_for(flag: &AtomicBool, what: &str) -> Result<(), String> {
        let deadline = Instant::now() + PATIENCE;
        while !flag.load(Ordering::Acquire) {
            if Instant::now() > deadline {
                return Err(format!("waited {PATIENCE:?} for {what}"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Sets its flag when dropped.
    struct DropFlag(Arc<AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }

    #[test]
    fn an_owned_buffer_goes_to_the_worker_and_comes_back() -> Result<(), String> {
        let workers = Workers::start("test", 2, 4).map_err(|e| e.to_string())?;
        let buf = vec![0u8; 1 << 20];
        let buf = on_executor(workers.run(move || {
            let mut buf = buf;
            buf.fill(7);
            buf
        }))
        .map_err(|e| format!("{e:?}"))?;
        assert_eq!(buf.len(), 1 << 20);
        assert!(buf.iter().all(|&b| b == 7));
        Ok(())
    }

    #[test]
    fn many_calls_through_a_small_queue() -> Result<(), String> {
        let workers = std::rc::Rc::new(Workers::start("test", 2, 1).map_err(|e| e.to_string())?);
        let sum = on_executor(async move {
            // 64 tasks at once through a queue of 1: most wait for room.
            let tasks: Vec<_> = (0..64u64)
                .map(|i| {
                    let workers = workers.clone();
                    glommio::spawn_local(async move { workers.run(move || i).await })
                })
                .collect();
            let mut sum = 0;
            for task in tasks {
                sum += task.await.map_err(|e| format!("{e:?}"))?;
            }
            Ok::<_, String>(sum)
        })?;
        assert_eq!(sum, (0..64).sum::<u64>());
        Ok(())
    }

    #[test]
    fn a_panic_is_an_error_not_a_lost_thread() -> Result<(), String> {
        let workers = Workers::start("test", 1, 4).map_err(|e| e.to_string())?;
        let lost = on_executor(workers.run(|| -> u32 { panic!("boom") }));
        assert!(
            matches!(lost, Err(Lost::Panicked(ref m)) if m == "boom"),
            "{lost:?}"
        );
        let after = on_executor(workers.run(|| 5)).map_err(|e| format!("{e:?}"))?;
        assert_eq!(after, 5);
        Ok(())
    }

    #[test]
    fn dropping_a_queued_call_means_it_never_runs() -> Result<(), String> {
        let workers = Workers::start("test", 1, 4).map_err(|e| e.to_string())?;
        let release = Arc::new(AtomicBool::new(false));
        let ran = Arc::new(AtomicBool::new(false));
        // Occupy the only thread.
        let blocker = {
            let release = release.clone();
            move || wait_for(&release, "the release of the blocker")
        };
        on_executor(async {
            let busy = poll_once(workers.run(blocker));
            let ran_too = ran.clone();
            drop(poll_once(
                workers.run(move || ran_too.store(true, Ordering::Release)),
            ));
            release.store(true, Ordering::Release);
            busy.await.map_err(|e| format!("{e:?}"))?
        })?;
        // The one thread takes calls in order: this one runs after the
        // abandoned one would have.
        on_executor(workers.run(|| ())).map_err(|e| format!("{e:?}"))?;
        assert!(!ran.load(Ordering::Acquire), "an abandoned call ran");
        Ok(())
    }

    #[test]
    fn dropping_a_running_call_does_not_wait_for_it() -> Result<(), String> {
        let workers = Workers::start("test", 1, 4).map_err(|e| e.to_string())?;
        let started = Arc::new(AtomicBool::new(false));
        let release = Arc::new(AtomicBool::new(false));
        let released = Arc::new(AtomicBool::new(false));
        let value_dropped = Arc::new(AtomicBool::new(false));
        let call = {
            let (started, release, released) = (started.clone(), release.clone(), released.clone());
            let value = DropFlag(value_dropped.clone());
            workers.run(move || {
                started.store(true, Ordering::Release);
                // Holds the thread until the awaiting side has let go. A
                // drop that waited for the call would return only after
                // this gave up, with `released` false.
                if wait_for(&release, "the release of the call").is_ok() {
                    released.store(true, Ordering::Release);
                }
                value
            })
        };
        let call = poll_once(call);
        wait_for(&started, "the call to start")?;
        drop(call);
        release.store(true, Ordering::Release);
        // The value nobody awaits is dropped on the worker.
        wait_for(&value_dropped, "the abandoned value to be dropped")?;
        assert!(
            released.load(Ordering::Acquire),
            "dropping the call waited for it to end"
        );
        let after = on_executor(workers.run(|| 5)).map_err(|e| format!("{e:?}"))?;
        assert_eq!(after, 5);
        Ok(())
    }

    #[test]
    fn a_leaked_call_leaves_the_workers_serving() -> Result<(), String> {
        let workers = Workers::start("test", 1, 4).map_err(|e| e.to_string())?;
        let release = Arc::new(AtomicBool::new(false));
        let ran = Arc::new(AtomicBool::new(false));
        let call = {
            let (release, ran) = (release.clone(), ran.clone());
            workers.run(move || {
                // Still to run when the future is leaked.
                wait_for(&release, "the release of the leaked call")?;
                let mut buf = vec![0u8; 4096];
                buf.fill(1);
                ran.store(true, Ordering::Release);
                Ok::<_, String>(buf)
            })
        };
        std::mem::forget(poll_once(call));
        release.store(true, Ordering::Release);
        wait_for(&ran, "the leaked call to run")?;
        let after = on_executor(workers.run(|| 5)).map_err(|e| format!("{e:?}"))?;
        assert_eq!(after, 5);
        Ok(())
    }
}

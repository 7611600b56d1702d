//! [`Workers`]: the store's few threads that make blocking librados calls,
//! fed through a bounded queue, so that a shard only ever awaits.
//!
//! A call borrows from the awaiting task (a `put`'s data, a `read_into`'s
//! destination) instead of copying: librados reads from and writes to the
//! caller's memory directly. That is sound because the awaiting future does
//! not let go of the borrow while a worker may still touch it:
//!
//! **Architecture invariant:** a [`Workers::run`] future, once dropped, has
//! made sure its job will never start (it was still queued) or has waited
//! for it to finish (it was running). Dropping it mid-call therefore blocks
//! the shard for the rest of that one librados call, at most the client's
//! op timeout; cancellation is rare (a caller's own timeout), so that is the
//! price of zero-copy I/O here. Leaking such a future (`mem::forget`) while
//! its job runs would break the borrow; nothing in ferry does.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;

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

/// Worker threads with a bounded queue in front of them.
pub(crate) struct Workers {
    sender: Option<flume::Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("threads", &self.threads.len())
            .finish_non_exhaustive()
    }
}

impl Workers {
    /// Starts `threads` threads named `name-N`, queueing up to `queue_max`
    /// calls that wait for a thread.
    pub(crate) fn start(name: &str, threads: usize, queue_max: usize) -> std::io::Result<Workers> {
        assert!(threads > 0 && queue_max > 0);
        let (sender, receiver) = flume::bounded::<Job>(queue_max);
        let mut workers = Workers {
            sender: Some(sender),
            threads: Vec::with_capacity(threads),
        };
        for i in 0..threads {
            let receiver = receiver.clone();
            let thread = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    // Ends when every sender is gone and the queue is empty.
                    while let Ok(job) = receiver.recv() {
                        job.run();
                    }
                })?;
            workers.threads.push(thread);
        }
        Ok(workers)
    }

    /// Runs `f` on a worker thread and returns its value. Waits (without
    /// blocking the thread) while the queue is full. See the module docs for
    /// what dropping the returned future does.
    pub(crate) async fn run<'a, T, F>(&self, f: F) -> Result<T, Lost>
    where
        F: FnOnce() -> T + Send + 'a,
        T: Send + 'static,
    {
        let Some(sender) = &self.sender else {
            return Err(Lost::Stopped);
        };
        let call = Arc::new(Call::new());
        let task: Box<dyn Runnable + Send + 'a> = Box::new(Task {
            f: Some(f),
            call: call.clone(),
        });
        // SAFETY: only the lifetime changes. The task may outlive `'a` only
        // as a job that will never run `f`: `Waiting`'s drop marks a queued
        // call cancelled, and waits for a running one to finish, before the
        // borrow can end. Dropping an unrun `f` touches nothing borrowed:
        // the closures passed here capture references, raw parts of slices
        // and owned values, none with a `Drop` that reads through a borrow.
        let job: Job = unsafe { std::mem::transmute::<Box<dyn Runnable + Send + 'a>, Job>(task) };
        let waiting = Waiting { call };
        if sender.send_async(job).await.is_err() {
            // The job came back with the error and was dropped unrun.
            return Err(Lost::Stopped);
        }
        waiting.await
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Closing the queue lets each thread finish what is queued and exit.
        self.sender = None;
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("a librados worker thread panicked outside a call");
            }
        }
    }
}

enum State<T> {
    Queued,
    Running,
    Done(Result<T, Lost>),
    /// The awaiting future went away before the call started.
    Cancelled,
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
    /// Signalled when the state becomes `Done`; a dropped `Waiting` waits
    /// on it for a running call.
    finished: Condvar,
}

impl<T> Call<T> {
    fn new() -> Self {
        Call {
            slot: Mutex::new(Slot {
                state: State::Queued,
                waker: None,
            }),
            finished: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slot<T>> {
        // Nothing panics while holding the lock; recover the slot anyway.
        self.slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sets the outcome unless the call was cancelled, and wakes the task.
    fn finish(&self, outcome: Result<T, Lost>) {
        let waker = {
            let mut slot = self.lock();
            if !matches!(slot.state, State::Queued | State::Running) {
                return;
            }
            slot.state = State::Done(outcome);
            self.finished.notify_all();
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
                return; // cancelled: `f` is dropped unrun
            }
            slot.state = State::Running;
        }
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(f))
            .map_err(|panic| Lost::Panicked(panic_message(panic.as_ref())));
        // `f` is consumed: nothing borrowed is touched after this point.
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
            State::Taken | State::Cancelled => Poll::Ready(Err(Lost::Stopped)),
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
        let mut slot = self.call.lock();
        loop {
            match slot.state {
                State::Queued => {
                    slot.state = State::Cancelled;
                    return;
                }
                // The worker is inside the caller's closure, possibly
                // writing into the caller's buffer: wait it out.
                State::Running => {
                    slot = self
                        .call
                        .finished
                        .wait(slot)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
                State::Done(_) | State::Cancelled | State::Taken => return,
            }
        }
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
    use std::time::Duration;

    use super::*;

    fn on_executor<T>(body: impl std::future::Future<Output = T>) -> T {
        let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .make()
            .unwrap_or_else(|e| panic!("starting executor: {e}"));
        executor.run(body)
    }

    /// Polls `future` once, then drops it.
    fn poll_once_then_drop<F: Future>(future: F) {
        let mut future = std::pin::pin!(future);
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(future.as_mut().poll(&mut cx).is_pending());
    }

    #[test]
    fn call_writes_into_the_callers_buffer() -> Result<(), String> {
        let workers = Workers::start("test", 2, 4).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 1 << 20];
        let n = on_executor(workers.run(|| {
            buf.fill(7);
            buf.len()
        }))
        .map_err(|e| format!("{e:?}"))?;
        assert_eq!(n, 1 << 20);
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
            move || {
                while !release.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        };
        on_executor(async {
            let busy = std::pin::pin!(workers.run(blocker));
            let waker = Waker::noop();
            let mut cx = Context::from_waker(waker);
            let mut busy = busy;
            assert!(busy.as_mut().poll(&mut cx).is_pending());
            let ran_too = ran.clone();
            poll_once_then_drop(workers.run(move || ran_too.store(true, Ordering::Release)));
            release.store(true, Ordering::Release);
            busy.await.map_err(|e| format!("{e:?}"))
        })?;
        // A later call runs after the cancelled one would have.
        on_executor(workers.run(|| ())).map_err(|e| format!("{e:?}"))?;
        assert!(!ran.load(Ordering::Acquire), "a cancelled call ran");
        Ok(())
    }

    #[test]
    fn dropping_a_running_call_waits_for_it() -> Result<(), String> {
        let workers = Workers::start("test", 1, 4).map_err(|e| e.to_string())?;
        let started = Arc::new(AtomicBool::new(false));
        let mut buf = vec![0u8; 4096];
        {
            let started = started.clone();
            let call = workers.run(|| {
                started.store(true, Ordering::Release);
                std::thread::sleep(Duration::from_millis(50));
                buf.fill(1);
            });
            let mut call = std::pin::pin!(call);
            let waker = Waker::noop();
            let mut cx = Context::from_waker(waker);
            // Polling once queues the call (the queue has room).
            assert!(call.as_mut().poll(&mut cx).is_pending());
            while !started.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
            // `call` drops here, mid-sleep: the drop must wait.
        }
        assert!(
            buf.iter().all(|&b| b == 1),
            "the buffer was released before the call ended"
        );
        Ok(())
    }
}

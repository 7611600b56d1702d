//! Reproduces the glommio 0.9 lost wake-up that [`Working`] guards
//! against, on an executor set up as a shard is (preemption timer, one
//! unbound blocking thread).
//!
//! A task waits, WAITS times in a row, for a job on another thread: a
//! `spawn_blocking` job (`--blocking`) or a plain thread that calls the
//! task's waker (the default, as a RADOS worker does). BURNERS threads
//! spin meanwhile, so that the shard, the other thread and the burners
//! contend for the cores. Without a beat, a lost wake-up leaves the task
//! waiting with its wake-up sent: the run reports it once a wait passes
//! 10 s and stops. With `--beat`, ferry's heartbeat runs and the task
//! holds a [`Working`]: the slowest wait shows what a lost wake-up costs.
//!
//! ```text
//! cargo run --release -p ferry-runtime --example lost_wakeups -- [--beat] [--blocking] [WAITS] [BURNERS]
//! ```
//!
//! [`Working`]: ferry_runtime::http::io::Working

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use ferry_runtime::http::io::{heartbeat, Working};

/// A wait this long counts as a lost wake-up.
const LOST_AFTER: Duration = Duration::from_secs(10);

/// A job's completion: set by the other thread, which then wakes the task.
#[derive(Default)]
struct Done {
    done: bool,
    waker: Option<Waker>,
}

struct Wait(Arc<Mutex<Done>>);

impl Future for Wait {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut done = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if done.done {
            return Poll::Ready(());
        }
        done.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// A little work for the other thread, so that it and the shard overlap.
fn work(seed: u64) -> u64 {
    (0..2_000u64).fold(seed, |x, _| x.wrapping_mul(31).wrapping_add(7))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let beat = args.iter().any(|a| a == "--beat");
    let blocking = args.iter().any(|a| a == "--blocking");
    let numbers: Vec<u64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let waits = numbers.first().copied().unwrap_or(200_000);
    let burners = numbers.get(1).copied().unwrap_or(2);

    let stop = Arc::new(AtomicBool::new(false));
    for _ in 0..burners {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut x = 0u64;
            while !stop.load(Ordering::Relaxed) {
                x = std::hint::black_box(work(x));
            }
        });
    }

    // Counts finished waits; a watchdog reports a wait that never ends.
    let finished = Arc::new(AtomicU64::new(0));
    let watched = finished.clone();
    std::thread::spawn(move || {
        let (mut last, mut since) = (0, Instant::now());
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = watched.load(Ordering::Relaxed);
            if now != last {
                (last, since) = (now, Instant::now());
            } else if since.elapsed() >= LOST_AFTER {
                println!(
                    "lost: wait {} has not ended after {} s, its wake-up sent",
                    now + 1,
                    LOST_AFTER.as_secs()
                );
                std::process::exit(1);
            }
        }
    });

    let (jobs, queue) = std::sync::mpsc::channel::<(u64, Arc<Mutex<Done>>)>();
    std::thread::spawn(move || {
        for (i, done) in queue {
            std::hint::black_box(work(i));
            let waker = {
                let mut done = done.lock().unwrap_or_else(|e| e.into_inner());
                done.done = true;
                done.waker.take()
            };
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    });

    let shard = glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(0))
        .preempt_timer(Duration::from_millis(2))
        .blocking_thread_pool_placement(glommio::PoolPlacement::Unbound(1))
        .spawn(move || async move {
            let _working = beat.then(|| {
                glommio::spawn_local(heartbeat()).detach();
                Working::begin()
            });
            let started = Instant::now();
            let mut slowest = Duration::ZERO;
            for i in 0..waits {
                let began = Instant::now();
                if blocking {
                    std::hint::black_box(glommio::executor().spawn_blocking(move || work(i)).await);
                } else {
                    let done = Arc::new(Mutex::new(Done::default()));
                    if jobs.send((i, done.clone())).is_err() {
                        return Err(anyhow!("the other thread stopped"));
                    }
                    Wait(done).await;
                }
                slowest = slowest.max(began.elapsed());
                finished.fetch_add(1, Ordering::Relaxed);
            }
            Ok((started.elapsed(), slowest))
        })
        .map_err(|e| anyhow!("starting the executor: {e}"))?;
    let (took, slowest) = shard.join().map_err(|e| anyhow!("executor: {e:?}"))??;
    stop.store(true, Ordering::Relaxed);
    println!(
        "{waits} waits ({}, beat {}) in {:.2} s; slowest {:.1} ms",
        if blocking {
            "spawn_blocking"
        } else {
            "waker from another thread"
        },
        if beat { "on" } else { "off" },
        took.as_secs_f64(),
        slowest.as_secs_f64() * 1e3
    );
    Ok(())
}

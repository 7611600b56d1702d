//! Times object reads through a ferry store, the way a storage shard reads
//! them: `read_into` a buffer the caller owns, inside one glommio executor,
//! with a fixed number of reads in flight. `bench/storage/run.sh` runs it
//! beside `rados bench` and `dd` on the same cluster and disk.
//!
//! ```text
//! read_bench --backend rados --conf DIR/ceph.conf --pool ferry \
//!            --objects 256 --size 4194304 --in-flight 16 [--threads 16]
//! read_bench --backend embedded --dir DATA --objects 16 --size 67108864 --in-flight 1
//! ```
//!
//! It first writes `--objects` objects of `--size` bytes (not timed), then
//! reads every object `--passes` times, or round and round for `--seconds`
//! (timed), and prints throughput and
//! per-object latency percentiles, plus an HdrHistogram interval log with
//! `--hist-log FILE`. The last line is `MiB/s=<number>` for scripts.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, ensure, Context};
use ferry_storage::{limits, EmbeddedStore, ObjectStore, RadosConfig, RadosStore, StoreConfig};
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2Serializer;
use hdrhistogram::Histogram;

const USER: &str = "bench";

struct Args {
    backend: String,
    dir: Option<PathBuf>,
    conf: Option<PathBuf>,
    pool: String,
    objects: usize,
    size: usize,
    in_flight: usize,
    threads: usize,
    passes: usize,
    seconds: u64,
    hist_log: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        backend: String::new(),
        dir: None,
        conf: None,
        pool: "ferry".to_string(),
        objects: 64,
        size: 4 << 20,
        in_flight: 16,
        threads: limits::RADOS_THREADS,
        passes: 1,
        seconds: 0,
        hist_log: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| anyhow!("{flag} needs a value"));
        let number = |text: String| -> anyhow::Result<usize> {
            text.parse()
                .with_context(|| format!("{flag} takes a number, got {text}"))
        };
        match flag.as_str() {
            "--backend" => args.backend = value()?,
            "--dir" => args.dir = Some(value()?.into()),
            "--conf" => args.conf = Some(value()?.into()),
            "--pool" => args.pool = value()?,
            "--objects" => args.objects = number(value()?)?,
            "--size" => args.size = number(value()?)?,
            "--in-flight" => args.in_flight = number(value()?)?,
            "--threads" => args.threads = number(value()?)?,
            "--passes" => args.passes = number(value()?)?,
            "--seconds" => args.seconds = number(value()?)? as u64,
            "--hist-log" => args.hist_log = Some(value()?.into()),
            other => bail!("unknown argument {other}; see the comment at the top of read_bench.rs"),
        }
    }
    ensure!(args.objects > 0 && args.size > 0 && args.in_flight > 0 && args.passes > 0);
    Ok(args)
}

fn open_store(args: &Args) -> anyhow::Result<ObjectStore> {
    let object_bytes_max = args.size as u64;
    Ok(match args.backend.as_str() {
        "embedded" => {
            let dir = args
                .dir
                .clone()
                .ok_or_else(|| anyhow!("--backend embedded needs --dir"))?;
            ObjectStore::from(EmbeddedStore::open(StoreConfig {
                object_bytes_max: object_bytes_max.max(limits::OBJECT_BYTES_MAX),
                ..StoreConfig::new(dir)
            })?)
        }
        "rados" => {
            let conf = args
                .conf
                .clone()
                .ok_or_else(|| anyhow!("--backend rados needs --conf"))?;
            let store = RadosStore::connect(RadosConfig {
                threads: args.threads,
                ..RadosConfig::new(conf, &args.pool)
            })?;
            ensure!(
                object_bytes_max <= store.object_bytes_max(),
                "--size {} is larger than the store's limit of {} bytes",
                args.size,
                store.object_bytes_max()
            );
            ObjectStore::from(store)
        }
        other => bail!("--backend takes embedded or rados, not {other:?}"),
    })
}

fn key(i: usize) -> Vec<u8> {
    format!("object-{i:06}").into_bytes()
}

/// Runs `in_flight` tasks that take object indexes from a shared counter
/// until `total` are done or the `deadline` passes; `each(task's buffer,
/// index)` does one object and hands the buffer back. Returns how many
/// were done.
async fn in_parallel<F, Fut>(
    total: usize,
    deadline: Option<Instant>,
    in_flight: usize,
    size: usize,
    each: F,
) -> anyhow::Result<usize>
where
    F: Fn(Vec<u8>, usize) -> Fut + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<Vec<u8>>> + 'static,
{
    let next = Rc::new(Cell::new(0usize));
    let tasks: Vec<_> = (0..in_flight.min(total))
        .map(|_| {
            let next = next.clone();
            let each = each.clone();
            glommio::spawn_local(async move {
                let mut buf = vec![0u8; size];
                loop {
                    let i = next.get();
                    if i >= total || deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok::<_, anyhow::Error>(());
                    }
                    next.set(i + 1);
                    buf = each(buf, i).await?;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    Ok(next.get())
}

async fn bench(args: Args, store: ObjectStore) -> anyhow::Result<()> {
    let Args {
        objects,
        size,
        in_flight,
        passes,
        seconds,
        ..
    } = args;

    // Setup, not timed: one object's worth of data, written under every key.
    let data = Rc::new((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let started = Instant::now();
    {
        let store = store.clone();
        let data = data.clone();
        in_parallel(objects, None, in_flight.min(8), 0, move |buf, i| {
            let store = store.clone();
            let data = data.clone();
            async move {
                store
                    .put(USER, &key(i), &data)
                    .await
                    .with_context(|| format!("putting object {i}"))?;
                Ok(buf)
            }
        })
        .await?;
    }
    eprintln!(
        "read_bench: wrote {objects} objects of {size} bytes in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    // Per-object latency in microseconds, up to a minute.
    let histogram = Rc::new(RefCell::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let start_time = SystemTime::now();
    let started = Instant::now();
    let (total, deadline) = match seconds {
        0 => (objects * passes, None),
        s => (usize::MAX, Some(started + Duration::from_secs(s))),
    };
    let total = {
        let store = store.clone();
        let histogram = histogram.clone();
        in_parallel(total, deadline, in_flight, size, move |mut buf, i| {
            let store = store.clone();
            let histogram = histogram.clone();
            async move {
                let object = i % objects;
                let t0 = Instant::now();
                let n = store.read_into(USER, &key(object), 0, &mut buf).await?;
                let us = t0.elapsed().as_micros() as u64;
                ensure!(
                    n == Some(size),
                    "object {object}: read {n:?} of {size} bytes"
                );
                histogram.borrow_mut().saturating_record(us.max(1));
                Ok(buf)
            }
        })
        .await?
    };
    let elapsed = started.elapsed();
    let histogram = histogram.borrow().clone();
    let mib_s = (total * size) as f64 / (1 << 20) as f64 / elapsed.as_secs_f64();
    println!(
        "read_bench {}: {total} reads of {size} bytes, {in_flight} in flight{}: {mib_s:.1} MiB/s, \
         per object p50 {} us, p99 {} us, max {} us ({:.2} s)",
        args.backend,
        if args.backend == "rados" {
            format!(", {} threads", args.threads)
        } else {
            String::new()
        },
        histogram.value_at_quantile(0.50),
        histogram.value_at_quantile(0.99),
        histogram.max(),
        elapsed.as_secs_f64()
    );
    if let Some(path) = &args.hist_log {
        write_hist_log(path, &histogram, start_time, elapsed, &args.backend)?;
    }
    println!("MiB/s={mib_s:.1}");

    // Leave the store as it was.
    for i in 0..objects {
        store.delete(USER, &key(i)).await?;
    }
    Ok(())
}

fn write_hist_log(
    path: &PathBuf,
    histogram: &Histogram<u64>,
    start: SystemTime,
    elapsed: Duration,
    backend: &str,
) -> anyhow::Result<()> {
    let mut file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut serializer = V2Serializer::new();
    let mut log = IntervalLogWriterBuilder::new()
        .add_comment(&format!(
            "ferry read_bench, {backend} store, per-object read latency in us"
        ))
        .with_start_time(start)
        .begin_log_with(&mut file, &mut serializer)?;
    log.write_histogram(histogram, Duration::ZERO, elapsed, None)
        .map_err(|e| anyhow!("writing {}: {e:?}", path.display()))?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let store = open_store(&args)?;
    // One shard, pinned like a node's: the store's own threads (RADOS) are
    // the only other threads at work.
    let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(0))
        .name("read-bench")
        .make()
        .map_err(|e| anyhow!("starting executor: {e}"))?;
    executor.run(bench(args, store))
}

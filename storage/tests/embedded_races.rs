//! Puts and deletes racing reads of one key in the embedded store, on one
//! executor with many tasks in flight. Guards two things: no read path
//! panics when the object file is unlinked under it (glommio 0.9's
//! `dma_open` panics, killing the node, when the path vanishes between its
//! open and its `statfs`; the store must not hand it such a path), and
//! every read returns either nothing or one whole version that a put
//! wrote, never a mix: `get` and `read_into` in one call, a reader from
//! `open_read` across several reads with puts and deletes in between.

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context};
use ferry_storage::{EmbeddedStore, StoreConfig};

use common::{on_executor, pattern};

const USER: &str = "racer";
const KEY: &[u8] = b"contended";

/// Rounds of the race: each of the two putting tasks puts this many times
/// and the deleting task deletes this many times, while the reading tasks
/// read until they are done. A few seconds here (each put fdatasyncs).
const ROUNDS: usize = 2_000;
/// Stop early (the rounds done still count) so a slow disk cannot hang CI.
const RACE_TIME_MAX: Duration = Duration::from_secs(120);

/// Sizes of the versions written: tiny, one block, past the 60 KiB that a
/// read's first I/O covers (so reads take a second I/O on the same file),
/// and several chunks.
const VERSION_BYTES: [usize; 4] = [24, 4096, 70_000, 300_000];
const LARGEST_BYTES: usize = 300_000;

/// Version `v`: its number and length in the first 16 bytes, then a pattern
/// seeded by `v`, so a mix of two versions cannot pass for either.
fn version(v: usize) -> Vec<u8> {
    let len = VERSION_BYTES[v];
    let mut data = pattern(v as u64 + 1, len);
    data[..8].copy_from_slice(&(v as u64).to_le_bytes());
    data[8..16].copy_from_slice(&(len as u64).to_le_bytes());
    data
}

/// Which version `got` is, or why it is none of them.
fn which_version(got: &[u8], versions: &[Vec<u8>]) -> anyhow::Result<usize> {
    ensure!(
        got.len() >= 16,
        "read {} bytes, shorter than any version",
        got.len()
    );
    let mut v = [0u8; 8];
    v.copy_from_slice(&got[..8]);
    let v = u64::from_le_bytes(v) as usize;
    let want = versions
        .get(v)
        .ok_or_else(|| anyhow!("read bytes tagged as version {v}, which was never written"))?;
    ensure!(
        got.len() == want.len(),
        "read {} bytes tagged as version {v}, which has {}: a torn read",
        got.len(),
        want.len()
    );
    if let Some(at) = got.iter().zip(want).position(|(g, w)| g != w) {
        bail!("read version {v} with a wrong byte at {at}: a torn read");
    }
    Ok(v)
}

/// What the readers saw, to show the race was really run.
#[derive(Default)]
struct Seen {
    missing: Cell<u64>,
    found: Cell<u64>,
}

impl Seen {
    fn count(&self, found: bool) {
        let cell = if found { &self.found } else { &self.missing };
        cell.set(cell.get() + 1);
    }
}

/// What every task shares.
#[derive(Clone)]
struct Ctx {
    store: EmbeddedStore,
    versions: Rc<[Vec<u8>]>,
    seen: Rc<Seen>,
    /// Writing tasks still running; the reading tasks stop at 0.
    writers_left: Rc<Cell<usize>>,
    started: Instant,
}

impl Ctx {
    fn timed_out(&self) -> bool {
        self.started.elapsed() > RACE_TIME_MAX
    }

    /// Checks a read's outcome: nothing, or one whole version.
    fn check(&self, what: &str, got: Option<&[u8]>) -> anyhow::Result<()> {
        self.seen.count(got.is_some());
        if let Some(got) = got {
            which_version(got, &self.versions).context(what.to_string())?;
        }
        Ok(())
    }

    fn check_size(&self, what: &str, size: Option<u64>) -> anyhow::Result<()> {
        self.seen.count(size.is_some());
        if let Some(size) = size {
            ensure!(
                VERSION_BYTES.contains(&(size as usize)),
                "{what} gave {size} bytes, the size of no version"
            );
        }
        Ok(())
    }
}

async fn put(ctx: &Ctx, round: usize, first: usize) -> anyhow::Result<()> {
    let v = (round + first) % VERSION_BYTES.len();
    ctx.store
        .put(USER, KEY, &ctx.versions[v])
        .await
        .with_context(|| format!("putting version {v}"))
}

async fn delete(ctx: &Ctx) -> anyhow::Result<()> {
    ctx.store.delete(USER, KEY).await.context("deleting")?;
    Ok(())
}

async fn get(ctx: &Ctx) -> anyhow::Result<()> {
    let got = ctx.store.get(USER, KEY, 0, u64::MAX).await.context("get")?;
    ctx.check("get", got.as_deref())
}

async fn read_into(ctx: &Ctx) -> anyhow::Result<()> {
    let mut dst = vec![0u8; LARGEST_BYTES + 100];
    let n = ctx
        .store
        .read_into(USER, KEY, 0, &mut dst)
        .await
        .context("read_into")?;
    ctx.check("read_into", n.map(|n| &dst[..n]))
}

async fn stat(ctx: &Ctx) -> anyhow::Result<()> {
    let size = ctx.store.stat(USER, KEY).await.context("stat")?;
    ctx.check_size("stat", size)
}

/// Opens a reader, then reads the back half (past the open's first read,
/// so from the disk) and the front half in separate calls: puts and
/// deletes land in between, and the reader must not notice.
async fn open_read(ctx: &Ctx) -> anyhow::Result<()> {
    let Some(reader) = ctx.store.open_read(USER, KEY).await.context("open_read")? else {
        return ctx.check("open_read", None);
    };
    let len = reader.len_bytes() as usize;
    ensure!(
        VERSION_BYTES.contains(&len),
        "open_read gave {len} bytes, the size of no version"
    );
    let mut dst = vec![0u8; len];
    let half = len / 2;
    let read = async {
        let n = reader.read_into(half as u64, &mut dst[half..]).await?;
        ensure!(n == len - half, "back half: {n} bytes of {}", len - half);
        let n = reader.read_into(0, &mut dst[..half]).await?;
        ensure!(n == half, "front half: {n} bytes of {half}");
        let n = reader.read_into(len as u64, &mut [0u8; 8]).await?;
        ensure!(n == 0, "{n} bytes past the end");
        Ok(())
    }
    .await;
    let closed = reader.close().await;
    read.context("reading through open_read")?;
    closed.context("closing a reader")?;
    ctx.check("open_read", Some(&dst))
}

async fn list(ctx: &Ctx) -> anyhow::Result<()> {
    // A listing of an empty directory does no I/O through the ring either.
    glommio::timer::sleep(Duration::from_micros(200)).await;
    let listed = ctx.store.list(USER).await.context("list")?;
    ensure!(listed.len() <= 1, "list shows {} objects", listed.len());
    for object in listed {
        ensure!(object.key == KEY, "list shows key {:?}", object.key);
        ctx.check_size("list", Some(object.size_bytes))?;
    }
    Ok(())
}

#[derive(Clone, Copy, Debug)]
enum Job {
    Put { first: usize },
    Delete,
    Get,
    ReadInto,
    Stat,
    OpenRead,
    List,
}

/// Runs `job` in a loop: ROUNDS times for a writing job, until the writers
/// are done for a reading one.
async fn run_job(ctx: Ctx, job: Job) -> anyhow::Result<()> {
    let writes = matches!(job, Job::Put { .. } | Job::Delete);
    let mut round = 0;
    let mut missing = ctx.seen.missing.get();
    while !ctx.timed_out()
        && if writes {
            round < ROUNDS
        } else {
            ctx.writers_left.get() > 0
        }
    {
        let done = match job {
            Job::Put { first } => put(&ctx, round, first).await,
            Job::Delete => delete(&ctx).await,
            Job::Get => get(&ctx).await,
            Job::ReadInto => read_into(&ctx).await,
            Job::Stat => stat(&ctx).await,
            Job::OpenRead => open_read(&ctx).await,
            Job::List => list(&ctx).await,
        };
        done.with_context(|| format!("{job:?}, round {round}"))?;
        round += 1;
        // A read that finds no object does no I/O through the ring, so
        // never yields: without a pause the readers would starve the
        // writers.
        if ctx.seen.missing.get() > missing {
            missing = ctx.seen.missing.get();
            glommio::timer::sleep(Duration::from_micros(100)).await;
        }
    }
    if writes {
        ctx.writers_left.set(ctx.writers_left.get() - 1);
    }
    Ok(())
}

#[test]
fn deletes_and_puts_race_reads_of_one_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating store directory")?;
    let jobs = [
        Job::Put { first: 0 },
        Job::Put { first: 1 },
        Job::Delete,
        Job::List,
        Job::Get,
        Job::Get,
        Job::ReadInto,
        Job::ReadInto,
        Job::Stat,
        Job::Stat,
        Job::OpenRead,
        Job::OpenRead,
    ];
    let ctx = Ctx {
        store: EmbeddedStore::open(StoreConfig::new(dir.path()))?,
        versions: (0..VERSION_BYTES.len()).map(version).collect(),
        seen: Rc::new(Seen::default()),
        writers_left: Rc::new(Cell::new(3)),
        started: Instant::now(),
    };
    // All jobs in flight at once on one executor: every read lands
    // somewhere among the puts' renames and the deletes' unlinks.
    on_executor({
        let ctx = ctx.clone();
        async move {
            let tasks: Vec<_> = jobs
                .into_iter()
                .map(|job| glommio::spawn_local(run_job(ctx.clone(), job)))
                .collect();
            for task in tasks {
                task.await?;
            }
            Ok(())
        }
    })?;

    let (missing, found) = (ctx.seen.missing.get(), ctx.seen.found.get());
    eprintln!(
        "{:.1} s: reads found the object {found} times, missed it {missing} times",
        ctx.started.elapsed().as_secs_f64()
    );
    // Both outcomes, or the race was not run.
    ensure!(found > 0 && missing > 0, "found {found}, missing {missing}");
    Ok(())
}

//! Unit tests of the embedded store: sizes around block and chunk edges,
//! offsets, overwrites, odd keys, user isolation, listing, limits.

use std::future::Future;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, ensure, Context};
use glommio::{LocalExecutorBuilder, Placement};

use super::*;
use crate::ObjectStore;

const MIB: usize = 1 << 20;

/// Opens a store in a fresh directory and runs `body` on a new glommio
/// executor on this thread. Each test's first I/O on its thread is thus a
/// put into an empty temp file, the case that breaks glommio's polled-I/O
/// probe unless the store probes first (see `dma::ensure_probed`).
fn run<F, Fut>(body: F) -> anyhow::Result<()>
where
    F: FnOnce(EmbeddedStore, PathBuf) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let dir = tempfile::tempdir().context("creating test directory")?;
    let store = EmbeddedStore::open(StoreConfig::new(dir.path())).context("opening store")?;
    run_with(store, dir.path().to_path_buf(), body)
}

fn run_with<F, Fut>(store: EmbeddedStore, root: PathBuf, body: F) -> anyhow::Result<()>
where
    F: FnOnce(EmbeddedStore, PathBuf) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .make()
        .map_err(|e| anyhow!("starting executor: {e}"))?;
    executor.run(body(store, root))
}

/// Bytes that differ from block to block and chunk to chunk, so a chunk
/// copied to the wrong place does not go unnoticed.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| ((i ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8)
        .collect()
}

fn check_same(got: &[u8], want: &[u8], what: &str) -> anyhow::Result<()> {
    ensure!(
        got.len() == want.len(),
        "{what}: got {} bytes, want {}",
        got.len(),
        want.len()
    );
    if let Some(at) = got.iter().zip(want).position(|(g, w)| g != w) {
        return Err(anyhow!(
            "{what}: first difference at byte {at}: got {}, want {}",
            got[at],
            want[at]
        ));
    }
    Ok(())
}

/// Puts `data` and reads it back whole with both `get` and `read_into`.
async fn round_trip(
    store: &EmbeddedStore,
    user: &str,
    key: &[u8],
    data: &[u8],
) -> anyhow::Result<()> {
    let what = format!(
        "{} bytes at key {:?}",
        data.len(),
        String::from_utf8_lossy(key)
    );
    store
        .put(user, key, data)
        .await
        .with_context(|| format!("putting {what}"))?;
    ensure!(
        store.stat(user, key).await? == Some(data.len() as u64),
        "stat of {what}"
    );
    let got = store
        .get(user, key, 0, u64::MAX)
        .await?
        .ok_or_else(|| anyhow!("{what}: missing after put"))?;
    check_same(&got, data, &format!("get of {what}"))?;
    let mut dst = vec![0xa5u8; data.len()];
    let n = store.read_into(user, key, 0, &mut dst).await?;
    ensure!(n == Some(data.len()), "read_into of {what} returned {n:?}");
    check_same(&dst, data, &format!("read_into of {what}"))
}

fn object_path(store: &EmbeddedStore, user: &str, key: &[u8]) -> PathBuf {
    store.user_dir(user).join(object_file_name(user, key))
}

#[test]
fn empty_object() -> anyhow::Result<()> {
    run(|store, _| async move {
        round_trip(&store, "alice", b"empty", b"").await?;
        let mut dst = [0u8; 16];
        ensure!(store.read_into("alice", b"empty", 0, &mut dst).await? == Some(0));
        ensure!(store.get("alice", b"empty", 0, 10).await? == Some(Vec::new()));
        Ok(())
    })
}

#[test]
fn one_byte() -> anyhow::Result<()> {
    run(|store, _| async move { round_trip(&store, "alice", b"one", b"x").await })
}

#[test]
fn exactly_one_block() -> anyhow::Result<()> {
    run(|store, _| async move { round_trip(&store, "alice", b"block", &pattern(1, 4096)).await })
}

#[test]
fn sizes_around_block_head_and_chunk_edges() -> anyhow::Result<()> {
    run(|store, _| async move {
        let head = HEAD_DATA_BYTES_MAX;
        let sizes = [
            4095,
            4097,
            head - 1,
            head,
            head + 1,
            MIB - HEADER_BYTES,
            MIB - HEADER_BYTES + 1,
            MIB,
            MIB + 1,
            3 * MIB + 123,
        ];
        for (i, len) in sizes.into_iter().enumerate() {
            round_trip(
                &store,
                "alice",
                format!("k{i}").as_bytes(),
                &pattern(i as u64, len),
            )
            .await?;
        }
        Ok(())
    })
}

#[test]
fn large_object_streams() -> anyhow::Result<()> {
    run(|store, _| async move {
        let len = 64 * MIB;
        let data = pattern(64, len);
        let started = Instant::now();
        store.put("alice", b"big", &data).await?;
        let put_time = started.elapsed();

        let mut dst = vec![0u8; len];
        let started = Instant::now();
        let n = store.read_into("alice", b"big", 0, &mut dst).await?;
        let read_time = started.elapsed();
        ensure!(n == Some(len), "read_into returned {n:?}");
        check_same(&dst, &data, "64 MiB read_into")?;
        // Information only; timing depends on the machine.
        println!(
            "64 MiB put: {:.1} ms, read_into: {:.1} ms ({:.0} MiB/s)",
            put_time.as_secs_f64() * 1e3,
            read_time.as_secs_f64() * 1e3,
            64.0 / read_time.as_secs_f64()
        );

        // A ranged read that starts and ends mid-chunk.
        let (from, to) = (3 * MIB + 17, 9 * MIB - 5);
        let got = store
            .get("alice", b"big", from as u64, (to - from) as u64)
            .await?
            .ok_or_else(|| anyhow!("missing"))?;
        check_same(&got, &data[from..to], "ranged get")
    })
}

/// Counts the page faults this thread takes from the moment it is made:
/// the kernel's `page-faults` software event, which counts faults of code
/// touching memory and not the pages a system call backs on purpose
/// (`MADV_POPULATE_WRITE`), while `getrusage`'s minor faults count both.
struct PageFaults(std::os::fd::OwnedFd);

impl PageFaults {
    /// `None` where the kernel lets no one count (perf events off, or not
    /// allowed to this user).
    fn start() -> anyhow::Result<Option<PageFaults>> {
        // perf_event_attr as of its first version (64 bytes): type,
        // size, config, then fields left zero (counting from now, user
        // and kernel, this thread only).
        let mut attr = [0u64; 8];
        attr[0] = 1 | (64 << 32); // PERF_TYPE_SOFTWARE, size 64
        attr[1] = 2; // PERF_COUNT_SW_PAGE_FAULTS
                     // SAFETY: perf_event_open reads the 64-byte attr it is given.
        let fd = unsafe { libc::syscall(libc::SYS_perf_event_open, attr.as_ptr(), 0, -1, -1, 0) };
        if fd < 0 {
            let error = std::io::Error::last_os_error();
            return match error.raw_os_error() {
                Some(libc::EACCES | libc::EPERM | libc::ENOENT | libc::ENOSYS) => {
                    eprintln!("page faults not counted here: perf_event_open: {error}");
                    Ok(None)
                }
                _ => Err(anyhow!("perf_event_open: {error}")),
            };
        }
        // SAFETY: a descriptor the kernel just gave us, owned from here.
        Ok(Some(PageFaults(unsafe {
            std::os::fd::FromRawFd::from_raw_fd(fd as i32)
        })))
    }

    fn count(&self) -> anyhow::Result<u64> {
        let mut value = 0u64;
        // SAFETY: reads 8 bytes into `value`.
        let n = unsafe {
            libc::read(
                std::os::fd::AsRawFd::as_raw_fd(&self.0),
                (&mut value as *mut u64).cast(),
                8,
            )
        };
        ensure!(
            n == 8,
            "reading the fault count: {}",
            std::io::Error::last_os_error()
        );
        Ok(value)
    }
}

/// A read into fresh memory (a getMmap buffer in newly grown linear
/// memory) backs the destination a part at a time in one call each,
/// instead of taking a page fault for each 4 KiB as the copy first touches
/// it: 16 MiB is 4096 pages; the storage's count of populated bytes grows
/// by about 16 MiB, and where the kernel lets the test count page faults
/// (perf events), the faults during the read stay far below 4096.
#[test]
fn a_read_into_fresh_memory_does_not_fault_once_per_page() -> anyhow::Result<()> {
    run(|store, _| async move {
        let len = 16 * MIB;
        let data = pattern(16, len);
        store.put("alice", b"big", &data).await?;
        // SAFETY: a private anonymous mapping of `len` bytes, unmapped below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        ensure!(
            base != libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: the mapping above, fresh and ours until munmap.
        let dst = unsafe { std::slice::from_raw_parts_mut(base.cast::<u8>(), len) };
        let populated = crate::dma::populated_bytes();
        let counter = PageFaults::start()?;
        let read = store.read_into("alice", b"big", 0, dst).await;
        let faults = counter.map(|c| c.count()).transpose()?;
        let populated = crate::dma::populated_bytes() - populated;
        let same = read.map(|n| n == Some(len)).unwrap_or(false) && dst[..] == data[..];
        // SAFETY: `dst` is not used past this point.
        unsafe { libc::munmap(base, len) };
        ensure!(same, "the read did not bring the object's bytes");
        // Every whole page past the open's head read was backed before its
        // copy (other tests may add to the count meanwhile, never take) ...
        ensure!(
            populated >= (len - MIB) as u64,
            "{populated} bytes populated reading {len} into fresh memory"
        );
        // ... so the copy took no fault for each page.
        if let Some(faults) = faults {
            ensure!(
                faults < (len / 4096 / 8) as u64,
                "{faults} page faults reading {} pages into fresh memory",
                len / 4096
            );
        }
        Ok(())
    })
}

#[test]
fn read_into_offsets() -> anyhow::Result<()> {
    run(|store, _| async move {
        // A small object served from the head read and one large enough to
        // need chunked reads after it.
        for (key, len) in [(&b"small"[..], 10_000usize), (&b"large"[..], 2 * MIB + 300)] {
            let data = pattern(len as u64, len);
            store.put("alice", key, &data).await?;
            // (offset, dst length); every read returns
            // min(dst length, len - offset), or 0 at and past the end.
            let cases = [
                (0, len),
                (0, len + 100),
                (1, 100),
                (4095, 2),
                (4096, 4096),
                (5000, len),
                (len - 1, 10),
                (len - 100, 50),
                (len, 10),
                (len + 1, 10),
                (len * 3, 10),
                (7, 0),
                (61_439, 4),
                (61_440, 8192),
                (MIB - 1, 3),
            ];
            for (offset, dst_len) in cases {
                let want = dst_len.min(len.saturating_sub(offset));
                let what = format!("{len}-byte object, offset {offset}, dst {dst_len}");
                let mut dst = vec![0xeeu8; dst_len];
                let n = store
                    .read_into("alice", key, offset as u64, &mut dst)
                    .await
                    .with_context(|| what.clone())?;
                ensure!(n == Some(want), "{what}: read {n:?}, want {want}");
                let expected = if want == 0 {
                    &[][..]
                } else {
                    &data[offset..offset + want]
                };
                check_same(&dst[..want], expected, &what)?;
                ensure!(
                    dst[want..].iter().all(|&b| b == 0xee),
                    "{what}: wrote past the count"
                );

                let got = store
                    .get("alice", key, offset as u64, dst_len as u64)
                    .await?
                    .ok_or_else(|| anyhow!("{what}: get found nothing"))?;
                check_same(&got, expected, &format!("get, {what}"))?;
            }
        }
        Ok(())
    })
}

#[test]
fn overwrite_shorter_after_longer() -> anyhow::Result<()> {
    run(|store, _| async move {
        round_trip(&store, "alice", b"k", &pattern(1, 300_000)).await?;
        round_trip(&store, "alice", b"k", b"short").await?;
        round_trip(&store, "alice", b"k", &pattern(2, 70_000)).await?;
        round_trip(&store, "alice", b"k", b"").await?;
        let listed = store.list("alice").await?;
        ensure!(
            listed
                == vec![ObjectInfo {
                    key: b"k".to_vec(),
                    size_bytes: 0
                }],
            "list after overwrites: {listed:?}"
        );
        Ok(())
    })
}

#[test]
fn missing_key() -> anyhow::Result<()> {
    run(|store, _| async move {
        // No directory for the user at all, then a user with other objects.
        for user in ["nobody", "alice"] {
            ensure!(store.stat(user, b"nope").await?.is_none());
            ensure!(store.get(user, b"nope", 0, 10).await?.is_none());
            ensure!(store
                .read_into(user, b"nope", 0, &mut [0u8; 4])
                .await?
                .is_none());
            ensure!(!store.delete(user, b"nope").await?);
            store.put("alice", b"other", b"x").await?;
        }
        ensure!(store.list("nobody").await?.is_empty());
        Ok(())
    })
}

#[test]
fn keys_with_slash_unicode_and_nul() -> anyhow::Result<()> {
    run(|store, _| async move {
        let keys: [&[u8]; 9] = [
            b"",
            b"/",
            b"a/b/../c",
            b"../../etc/passwd",
            "ключ/✓/日本".as_bytes(),
            b"a\0b",
            b"\0",
            b"\xff\xfe not utf-8",
            b".tmp-looks-like-a-temp-file",
        ];
        for (i, key) in keys.iter().enumerate() {
            round_trip(&store, "alice", key, &pattern(i as u64, 100 + i)).await?;
        }
        for (i, key) in keys.iter().enumerate() {
            let got = store.get("alice", key, 0, u64::MAX).await?;
            ensure!(got == Some(pattern(i as u64, 100 + i)), "key {i} changed");
        }
        let mut want: Vec<ObjectInfo> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| ObjectInfo {
                key: key.to_vec(),
                size_bytes: (100 + i) as u64,
            })
            .collect();
        want.sort_by(|a, b| a.key.cmp(&b.key));
        ensure!(store.list("alice").await? == want, "list of awkward keys");
        Ok(())
    })
}

#[test]
fn users_are_isolated() -> anyhow::Result<()> {
    run(|store, _| async move {
        store.put("alice", b"shared-name", b"alice's").await?;
        store.put("alice", b"only-alice", b"secret").await?;
        store.put("bob", b"shared-name", b"bob's").await?;
        // Users whose names could run together with the key.
        store.put("bo", b"bshared-name", b"bo's").await?;

        ensure!(store.get("alice", b"shared-name", 0, 100).await? == Some(b"alice's".to_vec()));
        ensure!(store.get("bob", b"shared-name", 0, 100).await? == Some(b"bob's".to_vec()));
        ensure!(store.get("bo", b"bshared-name", 0, 100).await? == Some(b"bo's".to_vec()));
        ensure!(store.get("bob", b"only-alice", 0, 100).await?.is_none());
        ensure!(store.stat("bob", b"only-alice").await?.is_none());
        ensure!(!store.delete("bob", b"only-alice").await?);
        ensure!(store.stat("alice", b"only-alice").await? == Some(6));

        let bob: Vec<Vec<u8>> = store
            .list("bob")
            .await?
            .into_iter()
            .map(|o| o.key)
            .collect();
        ensure!(bob == vec![b"shared-name".to_vec()], "bob lists {bob:?}");
        ensure!(store.delete("bob", b"shared-name").await?);
        ensure!(store.get("alice", b"shared-name", 0, 100).await? == Some(b"alice's".to_vec()));
        Ok(())
    })
}

#[test]
fn delete_then_stat() -> anyhow::Result<()> {
    run(|store, _| async move {
        store.put("alice", b"k", &pattern(3, 5000)).await?;
        ensure!(store.delete("alice", b"k").await?);
        ensure!(store.stat("alice", b"k").await?.is_none());
        ensure!(store.get("alice", b"k", 0, 10).await?.is_none());
        ensure!(!store.delete("alice", b"k").await?);
        ensure!(store.list("alice").await?.is_empty());
        // The key can be used again.
        round_trip(&store, "alice", b"k", b"again").await
    })
}

#[test]
fn list_sorted_by_key_and_skips_temp_files() -> anyhow::Result<()> {
    run(|store, _| async move {
        let keys: [&[u8]; 6] = [b"m", b"a", b"zz", b"a/b", b"b", b"A"];
        for (i, key) in keys.iter().enumerate() {
            store.put("alice", key, &vec![b'x'; i * 1000]).await?;
        }
        // A put in progress, as another shard would leave it mid-way.
        let temp = store
            .user_dir("alice")
            .join(format!("{TEMP_PREFIX}in-progress"));
        std::fs::write(&temp, b"partial").context("writing temp file")?;

        let listed = store.list("alice").await?;
        let got: Vec<(&[u8], u64)> = listed.iter().map(|o| (&o.key[..], o.size_bytes)).collect();
        let want: Vec<(&[u8], u64)> = vec![
            (b"A", 5000),
            (b"a", 1000),
            (b"a/b", 3000),
            (b"b", 4000),
            (b"m", 0),
            (b"zz", 2000),
        ];
        ensure!(got == want, "list: {got:?}");
        Ok(())
    })
}

#[test]
fn oversize_object_key_and_user_rejected() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = StoreConfig {
        object_bytes_max: 1000,
        key_bytes_max: 8,
        user_bytes_max: 5,
        ..StoreConfig::new(dir.path())
    };
    let store = EmbeddedStore::open(config)?;
    run_with(store, dir.path().to_path_buf(), |store, _| async move {
        let too_big = store.put("alice", b"k", &[0u8; 1001]).await;
        ensure!(
            matches!(
                too_big,
                Err(StorageError::ObjectTooLarge {
                    len_bytes: 1001,
                    max_bytes: 1000
                })
            ),
            "{too_big:?}"
        );
        round_trip(&store, "alice", b"k", &[7u8; 1000]).await?;

        let long_key = store.put("alice", b"123456789", b"x").await;
        ensure!(
            matches!(
                long_key,
                Err(StorageError::KeyTooLong {
                    len_bytes: 9,
                    max_bytes: 8
                })
            ),
            "{long_key:?}"
        );
        let long_key = store.get("alice", b"123456789", 0, 1).await;
        ensure!(
            matches!(long_key, Err(StorageError::KeyTooLong { .. })),
            "{long_key:?}"
        );
        round_trip(&store, "alice", b"12345678", b"x").await?;

        for user in ["", "alice2"] {
            let bad = store.put(user, b"k", b"x").await;
            ensure!(
                matches!(bad, Err(StorageError::BadUser { max_bytes: 5, .. })),
                "user {user:?}: {bad:?}"
            );
            let bad = store.list(user).await;
            ensure!(matches!(bad, Err(StorageError::BadUser { .. })), "{bad:?}");
        }
        // Nothing was written by the rejected puts.
        ensure!(store.list("alice").await?.len() == 2);
        Ok(())
    })
}

#[test]
fn limits_must_fit_the_header() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = StoreConfig {
        key_bytes_max: 4000,
        ..StoreConfig::new(dir.path())
    };
    let opened = EmbeddedStore::open(config);
    ensure!(
        matches!(
            opened,
            Err(StorageError::LimitTooLarge {
                name: "key_bytes_max",
                value: 4000,
                ..
            })
        ),
        "{opened:?}"
    );
    Ok(())
}

#[test]
fn stale_temp_file_removed_at_open() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().to_path_buf();
    let store = EmbeddedStore::open(StoreConfig::new(&root))?;
    let user_dir = store.user_dir("alice");
    let stale = user_dir.join(format!("{TEMP_PREFIX}1234-5678-0"));
    run_with(store, root.clone(), |store, _| async move {
        store.put("alice", b"kept", b"survives reopen").await?;
        Ok(())
    })?;
    std::fs::write(&stale, vec![1u8; 10_000]).context("writing stale temp file")?;

    let store = EmbeddedStore::open(StoreConfig::new(&root))?;
    ensure!(!stale.exists(), "stale temp file still there");
    run_with(store, root, |store, _| async move {
        ensure!(store.get("alice", b"kept", 0, 100).await? == Some(b"survives reopen".to_vec()));
        let left: Vec<_> = std::fs::read_dir(store.user_dir("alice"))?.collect::<Result<_, _>>()?;
        ensure!(left.len() == 1, "files left: {left:?}");
        Ok(())
    })
}

/// Overwrites `bytes` at `at` in a file, as a damaged disk or a stray writer
/// would.
fn damage(path: &Path, at: u64, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.write_all_at(bytes, at)?;
    file.sync_all()?;
    Ok(())
}

fn is_corrupt<T: std::fmt::Debug>(result: &Result<T, StorageError>) -> bool {
    matches!(result, Err(StorageError::Corrupt { .. }))
}

#[test]
fn corrupted_header_detected() -> anyhow::Result<()> {
    run(|store, _| async move {
        store.put("alice", b"key", &pattern(5, 10_000)).await?;
        let path = object_path(&store, "alice", b"key");
        // One byte of the stored key.
        let key_at = (HEADER_FIXED_BYTES + "alice".len()) as u64;
        damage(&path, key_at, b"K")?;

        let got = store.get("alice", b"key", 0, 100).await;
        ensure!(is_corrupt(&got), "get: {got:?}");
        let stat = store.stat("alice", b"key").await;
        ensure!(is_corrupt(&stat), "stat: {stat:?}");
        let read = store.read_into("alice", b"key", 0, &mut [0u8; 10]).await;
        ensure!(is_corrupt(&read), "read_into: {read:?}");
        let listed = store.list("alice").await;
        ensure!(is_corrupt(&listed), "list: {listed:?}");

        // The length field, which would otherwise change what a read returns.
        store.put("alice", b"key", &pattern(5, 10_000)).await?;
        damage(&path, 24, &[0xff])?;
        let got = store.get("alice", b"key", 0, u64::MAX).await;
        ensure!(is_corrupt(&got), "get after length damage: {got:?}");

        // A put over a corrupt object replaces it.
        round_trip(&store, "alice", b"key", b"fresh").await
    })
}

#[test]
fn misplaced_file_never_returns_other_data() -> anyhow::Result<()> {
    run(|store, _| async move {
        store.put("alice", b"a", b"data of a").await?;
        store.put("alice", b"b", b"data of b").await?;
        store.put("bob", b"a", b"bob's a").await?;
        // As if two names hashed alike: b's file now holds a's object, and
        // bob's file holds alice's.
        std::fs::copy(
            object_path(&store, "alice", b"a"),
            object_path(&store, "alice", b"b"),
        )?;
        std::fs::copy(
            object_path(&store, "alice", b"a"),
            object_path(&store, "bob", b"a"),
        )?;

        let got = store.get("alice", b"b", 0, 100).await;
        ensure!(is_corrupt(&got), "alice/b: {got:?}");
        let got = store.get("bob", b"a", 0, 100).await;
        ensure!(is_corrupt(&got), "bob/a: {got:?}");
        let listed = store.list("bob").await;
        ensure!(is_corrupt(&listed), "list bob: {listed:?}");
        ensure!(store.get("alice", b"a", 0, 100).await? == Some(b"data of a".to_vec()));
        Ok(())
    })
}

#[test]
fn truncated_file_detected() -> anyhow::Result<()> {
    run(|store, _| async move {
        for (key, len, keep) in [
            (&b"small"[..], 10_000usize, 8192u64),
            (&b"large"[..], 3 * MIB, 2 * MIB as u64),
            (&b"empty-file"[..], 100, 0),
        ] {
            store.put("alice", key, &pattern(9, len)).await?;
            let path = object_path(&store, "alice", key);
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)?
                .set_len(keep)?;
            let got = store.get("alice", key, 0, u64::MAX).await;
            ensure!(is_corrupt(&got), "{len} bytes cut to {keep}: {got:?}");
            let mut dst = vec![0u8; len];
            let read = store.read_into("alice", key, 0, &mut dst).await;
            ensure!(
                is_corrupt(&read),
                "read_into, {len} bytes cut to {keep}: {read:?}"
            );
        }
        Ok(())
    })
}

#[test]
fn concurrent_puts_and_reads() -> anyhow::Result<()> {
    run(|store, _| async move {
        let tasks: Vec<_> = (0..8u64)
            .map(|i| {
                let store = store.clone();
                glommio::spawn_local(async move {
                    let key = format!("task-{i}");
                    let data = pattern(i, 200_000 + i as usize * 4099);
                    // Two writers of one key race; either version may win.
                    store.put("alice", b"contended", &data[..1000]).await?;
                    round_trip(&store, "alice", key.as_bytes(), &data).await
                })
            })
            .collect();
        for task in tasks {
            task.await?;
        }
        let listed = store.list("alice").await?;
        ensure!(listed.len() == 9, "{} objects", listed.len());
        ensure!(store.stat("alice", b"contended").await? == Some(1000));
        Ok(())
    })
}

#[test]
fn object_store_delegates() -> anyhow::Result<()> {
    run(|store, _| async move {
        let store = ObjectStore::from(store);
        store.put("alice", b"k", b"hello").await?;
        ensure!(store.stat("alice", b"k").await? == Some(5));
        ensure!(store.get("alice", b"k", 1, 3).await? == Some(b"ell".to_vec()));
        let mut dst = [0u8; 8];
        ensure!(store.read_into("alice", b"k", 2, &mut dst).await? == Some(3));
        ensure!(&dst[..3] == b"llo");
        ensure!(store.list("alice").await?.len() == 1);
        ensure!(store.delete("alice", b"k").await?);
        ensure!(store.stat("alice", b"k").await?.is_none());
        Ok(())
    })
}

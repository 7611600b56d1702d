//! One suite, two backends: every case runs against the embedded store and
//! against a RADOS store on a real Ceph cluster, through [`ObjectStore`], and
//! must pass on both. The cluster is started once for the binary (by
//! `deploy/ceph/start.sh`) and stopped at the end, failures included; if it
//! cannot start, the run fails.

mod common;

use std::future::Future;
use std::pin::Pin;

use anyhow::{anyhow, ensure, Context};
use ferry_storage::{
    EmbeddedStore, ObjectInfo, ObjectReader, ObjectStore, RadosConfig, RadosStore, StorageError,
    StoreConfig,
};

use common::{check_same, on_executor, pattern, run_cases, Case, Ceph, Tally, MIB};

/// Both backends get this object limit: above the 64 MiB case, below what
/// one RADOS write may carry (90 MiB by default).
const OBJECT_BYTES_MAX: u64 = 80 << 20;

type CaseFn =
    for<'a> fn(&'a ObjectStore, &'a str) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'a>>;

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        const SUITE: &[(&str, CaseFn)] = &[$((stringify!($case), |store, user| Box::pin($case(store, user)))),*];
    };
}

suite!(
    empty_object,
    one_byte,
    sixty_four_mib,
    ranges_past_the_end,
    overwrite_shorter_after_longer,
    missing_key,
    keys_with_slash_unicode_and_binary,
    users_are_isolated,
    delete_then_stat,
    list_sorted_with_sizes,
    limits_rejected,
    concurrent_calls,
    reader_keeps_its_version,
    reader_reads_a_large_object_in_parts,
    streamed_writes_appear_whole_when_finished,
    owned_puts_and_abandoned_calls,
);

fn main() {
    let mut tally = Tally::default();
    let names: Vec<&str> = SUITE.iter().map(|(name, _)| *name).collect();

    let embedded: Vec<Case<'_>> = SUITE
        .iter()
        .map(|&(name, case)| {
            let run = move || {
                let dir = tempfile::tempdir().context("creating store directory")?;
                let store = EmbeddedStore::open(StoreConfig {
                    object_bytes_max: OBJECT_BYTES_MAX,
                    ..StoreConfig::new(dir.path())
                })?;
                let store = ObjectStore::from(store);
                on_executor(case(&store, "alice"))
            };
            (
                format!("embedded::{name}"),
                Box::new(run) as Box<dyn Fn() -> _>,
            )
        })
        .collect();
    run_cases(embedded, &mut tally);

    if common::any_selected("rados::", &names) {
        match Ceph::start() {
            Ok(ceph) => {
                run_rados(&ceph, &mut tally);
                drop(ceph);
            }
            Err(e) => {
                println!("test rados::cluster ... FAILED\n    {e:#}");
                tally.failed.push("rados::cluster".to_string());
            }
        }
    }
    common::finish(tally)
}

fn run_rados(ceph: &Ceph, tally: &mut Tally) {
    let store = match RadosStore::connect(RadosConfig {
        object_bytes_max: OBJECT_BYTES_MAX,
        ..RadosConfig::new(&ceph.conf, &ceph.pool)
    }) {
        Ok(store) => ObjectStore::from(store),
        Err(e) => {
            println!("test rados::connect ... FAILED\n    {e:#}");
            tally.failed.push("rados::connect".to_string());
            return;
        }
    };
    // One pool for all cases: each case is its own user.
    let cases: Vec<Case<'_>> = SUITE
        .iter()
        .map(|&(name, case)| {
            let store = &store;
            let run = move || on_executor(case(store, &format!("alice-{name}")));
            (
                format!("rados::{name}"),
                Box::new(run) as Box<dyn Fn() -> _>,
            )
        })
        .collect();
    run_cases(cases, tally);
}

fn shown(key: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(key))
}

/// Puts `data`, then reads it back whole with `stat`, `get` and `read_into`.
async fn round_trip(
    store: &ObjectStore,
    user: &str,
    key: &[u8],
    data: &[u8],
) -> anyhow::Result<()> {
    let what = format!("{} bytes at {}", data.len(), shown(key));
    store
        .put(user, key, data)
        .await
        .with_context(|| format!("putting {what}"))?;
    let size = store.stat(user, key).await?;
    ensure!(size == Some(data.len() as u64), "stat of {what}: {size:?}");
    let got = store
        .get(user, key, 0, u64::MAX)
        .await?
        .ok_or_else(|| anyhow!("{what}: missing after put"))?;
    check_same(&got, data, &format!("get of {what}"))?;
    let mut dst = vec![0xa5u8; data.len()];
    let n = store.read_into(user, key, 0, &mut dst).await?;
    ensure!(n == Some(data.len()), "read_into of {what}: {n:?}");
    check_same(&dst, data, &format!("read_into of {what}"))
}

async fn empty_object(store: &ObjectStore, user: &str) -> anyhow::Result<()> {
    round_trip(store, user, b"empty", b"").await?;
    let mut dst = [7u8; 16];
    ensure!(store.read_into(user, b"empty", 0, &mut dst).await? == Some(0));
    ensure!(dst == [7u8; 16], "an empty read wrote into the buffer");
    ensure!(store.get(user, b"empty", 0, 10).await? == Some(Vec::new()));
    ensure!(store.get(user, b"empty", 5, 10).await? == Some(Vec::new()));
    let listed = store.list(user).await?;
    ensure!(
        listed
            == [ObjectInfo {
                key: b"empty".to_vec(),
                size_bytes: 0
            }],
        "{listed:?}"
    );
    Ok(())
}

async fn one_byte(store: &ObjectStore, user: &str) -> anyhow::Result<()> {
    round_trip(store, user, b"one", b"x").await?;
    let mut dst = [0u8; 4];
    ensure!(store.read_into(user, b"one", 1, &mut dst).await? == Some(0));
    ensure!(store.get(user, b"one", 0, 1).await? == Some(b"x".to_vec()));
    ensure!(store.get(user, b"one", 0, 0).await? == Some(Vec::new()));
    Ok(())
}

async fn sixty_four_mib(store: &ObjectStore, user: &str) -> anyhow::Result<()> {
    let data = pattern(64, 64 * MIB);
    round_trip(store, user, b"big", &data).await?;
    // The last bytes, through a buffer longer than what is left.
    let mut dst = vec![0u8; 4096];
    let from = data.len() - 10;
    let n = store.read_into(user, b"big", from as u64, &mut dst).await?;
    ensure!(n == Some(10), "tail read_into: {n:?}");
    check_same(&dst[..10], &data[from..], "tail read_into")?;
    // A range in the middle, across MiB boundaries.
    let (offset, len) = (MIB + 3, 5 * MIB);
    let got = store
        .get(user, b"big", offset as u64, len as u64)
        .await?
        .ok_or_else(|| anyhow!("big object missing"))?;
    check_same(&got, &data[offset..offset + len], "middle get")?;
    // Into the middle of a larger buffer: the bytes around stay as they were.
    let mut frame = vec![0xeeu8; 3 * MIB];
    let n = store
        .read_into(user, b"big", 7, &mut frame[MIB..2 * MIB])
        .await?;
    ensure!(n == Some(MIB), "framed read_into: {n:?}");
    check_same(&frame[MIB..2 * MIB], &data[7..7 + MIB], "framed read_into")?;
    ensure!(
        frame[..MIB]
            .iter()
            .chain(&frame[2 * MIB..])
            .all(|&b| b == 0xee),
        "read_into wrote outside its buffer"
    );
    Ok(())
}

async fn ranges_past_the_end(store: &ObjectStore, user: &str) -> anyhow::Result<()> {
    let data = pattern(3, 100);
    store.put(user, b"k", &data).await?;
    for offset in [100, 101, 4096, 1 << 40, u64::MAX - 1, u64::MAX] {
        let mut dst = [9u8; 10];
        let n = store.read_into(user, b"k", offset, &mut dst).await?;
        ensure!(n == Some(0), "read_into at {offset}: {n:?}");
        ensure!(dst == [9u8; 10], "read_into at {offset} wrote bytes");
        let got = store.get(user, b"k", offset, u64::MAX).await?;
        ensure!(got == Some(Vec::new()), "get at {offset}: {got:?}");
    }
    // A range that starts inside and runs past the end is cut at the end.
    let mut dst = [9u8; 50];
    ensure!(store.read_into(user, b"k", 90, &mut dst).await? == Some(10));
    check_same(&dst[..10], &data[90..], "read_into across the end")?;
    ensure!(
        dst[10..].iter().all(|&b| b == 9),
        "read_into wrote past the object's end"
    );
    let got = store.get(user, b"k", 90, 1000).await?;
    ensure!(got.as_deref() == Some(&data[90..]), "get across the end");
    ensure!(store.read_into(user, b"k", 0, &mut []).await? == Some(0));
    Ok(())
}

async fn overwrite_shorter_after_longer(store: &ObjectStore, user: &str) -> anyhow::Result<()> {
    let long = pattern(1, MIB + 5);
    let short = pattern(2, 10);
    round_trip(store, user, b"k", &long).await?;
    round_trip(store, user, b"k", &short).await?;
    let mut dst = vec![0u8; MIB];
    ensure!(store.read_into(user, b"k", 0, &mut dst).await? == Some(10));
    let got = store.get(user, b"k", 5, u64::MAX).await?;
    ensure!(got.as_deref() == Some(&short[5..]), "get after shrinking");
    round_trip(store, user, b"k", &long).await?;
    round_trip(store, user, b"k", b"").await
}

async fn missing_key(store: &ObjectStore, user: &str) -> anyhow::Result<()> {
    ensure!(store.stat(user, b"nothing").await?.is_none());
    ensure!(store.get(user, b"nothing", 0, u64::MAX).await?.is_none());
    let mut dst = [0u8; 8];
    ensure!(store
        .read_into(user, b"nothing", 0, &mut dst)
        .await?
        .is_none());
    ensure!(store
        .read_into(user, b"nothing", 0, &mut [])
        .await?
        .is_none());
    ensure!(store
        .read_into(user, b"nothing", u64::MAX, &mut dst)
        .await?
        .is_none());
    ensure!(!store.delete(user, b"nothing").await?);
    ensure!(store.list(user).await?.is_empty());
    Ok(())
}

const ODD_KEYS: &[&[u8]] = &[
    b"a/b/c",
    b"/leading",
    b"trailing/",
    b"/",
    b"//",
    b"../up",
    "κλειδί/ключ/鍵 ✓".as_bytes(),
    b"",
    b"\xff\xfe not utf-8",
    b"nul\0inside",
    b"~b64:looks-escaped",
    b"~b64:_w",
    b"spaces and\ttabs\nnewline",
];

async fn keys_with_slash_unicode_and_binary(store: &ObjectStore, user: &str) -> anyhow::Result<()> {
    for (i, key) in ODD_KEYS.iter().enumerate() {
        round_trip(store, user, key, &pattern(i as u64, 100 + i)).await?;
    }
    // Every key still holds its own data: no two shared an object.
    for (i, key) in ODD_KEYS.iter().enumerate() {
        let got = store.get(user, key, 0, u64::MAX).await?;
        ensure!(
            got.as_deref() == Some(&pattern(i as u64, 100 + i)[..]),
            "key {} lost its data",
            shown(key)
        );
    }
    let mut want: Vec<ObjectInfo> = ODD_KEYS
        .iter()
        .enumerate()
        .map(|(i, key)| ObjectInfo {
            key: key.to_vec(),
            size_bytes: (100 + i) as u64,
        })
        .collect();
    want.sort_by(|a, b| a.key.cmp(&b.key));
    let listed = store.list(user).await?;
    ensure!(listed == want, "list: {listed:?}");
    Ok(())
}

async fn users_are_isolated(store: &ObjectStore, user: &str) -> anyhow::Result<()> {
    let bob = format!("{user}.bob");
    let slashed = format!("{user}/x"); // a user with a slash
    let prefix = &user[..user.len() - 1]; // a user whose name is a prefix
    store.put(user, b"k", b"alice's").await?;
    store.put(&bob, b"k", b"bob's").await?;
    store.put(user, b"x/k", b"alice's x/k").await?;
    store.put(&slashed, b"k", b"slashed k").await?;
    store.put(prefix, b"k", b"prefix's").await?;
    let expect: [(&str, &[u8], &[u8]); 5] = [
        (user, b"k", b"alice's"),
        (&bob, b"k", b"bob's"),
        (user, b"x/k", b"alice's x/k"),
        (&slashed, b"k", b"slashed k"),
        (prefix, b"k", b"prefix's"),
    ];
    for (who, key, data) in expect {
        let got = store.get(who, key, 0, u64::MAX).await?;
        ensure!(
            got.as_deref() == Some(data),
            "{who:?} {}: {got:?}",
            shown(key)
        );
    }
    ensure!(
        store.get(&bob, b"x/k", 0, 10).await?.is_none(),
        "bob sees alice's x/k"
    );
    let keys = |list: Vec<ObjectInfo>| list.into_iter().map(|o| o.key).collect::<Vec<_>>();
    ensure!(keys(store.list(user).await?) == [b"k".to_vec(), b"x/k".to_vec()]);
    ensure!(keys(store.list(&bob).await?) == [b"k".to_vec()]);
    ensure!(keys(store.list(&slashed).await?) == [b"k".to_vec()]);
    ensure!(keys(store.list(prefix).await?) == [b"k".to_vec()]);
    ensure!(store.delete(&bob, b"k").await?);
    ensure!(store.get(user, b"k", 0, 10).await? == Some(b"alice's".to_vec()));
    ensure!(store.list(&bob).await?.is_empty());
    Ok(())
}

async fn delete_then_stat(store: &ObjectStore, user: &str) -> anyhow::Result<()> {
    store.put(user, b"gone", b"data").await?;
    ensure!(store.delete(user, b"gone").await?);
    ensure!(store.stat(user, b"gone").await?.is_none());
    ensure!(store.get(user, b"gone", 0, 10).await?.is_none());
    ensure!(!store.delete(user, b"gone").await?);
    round_trip(store, user, b"gone", b"back").await
}

async fn list_sorted_with_sizes(store: &ObjectStore, user: &str) -> anyhow::Result<()> {
    let keys: [&[u8]; 5] = [b"m", b"a", b"zz", b"a/b", b"B"];
    for (i, key) in keys.iter().enumerate() {
        store.put(user, key, &pattern(i as u64, i * 1000)).await?;
    }
    let mut want: Vec<ObjectInfo> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| ObjectInfo {
            key: key.to_vec(),
            size_bytes: (i * 1000) as u64,
        })
        .collect();
    want.sort_by(|a, b| a.key.cmp(&b.key));
    ensure!(store.list(user).await? == want);
    ensure!(store.delete(user, b"zz").await?);
    want.retain(|o| o.key != b"zz");
    ensure!(store.list(user).await? == want);
    ensure!(store.list(&format!("{user}-nobody")).await?.is_empty());
    Ok(())
}

async fn limits_rejected(store: &ObjectStore, user: &str) -> anyhow::Result<()> {
    let long_key = vec![b'k'; 1025];
    let long_user = "u".repeat(257);
    let too_big = vec![0u8; OBJECT_BYTES_MAX as usize + 1];
    let outcomes = [
        ("long key put", store.put(user, &long_key, b"x").await.err()),
        ("long key get", store.get(user, &long_key, 0, 1).await.err()),
        ("empty user", store.put("", b"k", b"x").await.err()),
        ("long user", store.stat(&long_user, b"k").await.err()),
        ("big object", store.put(user, b"big", &too_big).await.err()),
    ];
    for (what, error) in outcomes {
        let fits = match (what, &error) {
            (
                "long key put" | "long key get",
                Some(StorageError::KeyTooLong {
                    len_bytes: 1025,
                    max_bytes: 1024,
                }),
            ) => true,
            ("empty user" | "long user", Some(StorageError::BadUser { .. })) => true,
            ("big object", Some(StorageError::ObjectTooLarge { max_bytes, .. })) => {
                *max_bytes == OBJECT_BYTES_MAX
            }
            _ => false,
        };
        ensure!(fits, "{what}: {error:?}");
    }
    // The maximum itself is fine.
    store.put(user, &vec![b'k'; 1024], b"x").await?;
    ensure!(
        store.stat(user, b"big").await?.is_none(),
        "a refused put left an object"
    );
    Ok(())
}

async fn concurrent_calls(store: &ObjectStore, user: &str) -> anyhow::Result<()> {
    // More calls at once than a RADOS store has threads and queue slots.
    let tasks: Vec<_> = (0..96u64)
        .map(|i| {
            let store = store.clone();
            let user = user.to_string();
            glommio::spawn_local(async move {
                let key = format!("k{i}");
                let data = pattern(i, 1000 + i as usize * 37);
                store.put(&user, key.as_bytes(), &data).await?;
                let got = store.get(&user, key.as_bytes(), 0, u64::MAX).await?;
                ensure!(got.as_deref() == Some(&data[..]), "{key} read back wrong");
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    ensure!(store.list(user).await?.len() == 96);
    Ok(())
}

/// Reads all of `reader` into a buffer longer than the object, back half
/// first and front half second (two reads, so anything that changed in
/// between would show), and checks it is `want`, with nothing written past
/// its end.
async fn read_all(reader: &ObjectReader, want: &[u8], what: &str) -> anyhow::Result<()> {
    ensure!(
        reader.len_bytes() == want.len() as u64,
        "{what}: reader says {} bytes, want {}",
        reader.len_bytes(),
        want.len()
    );
    let mut dst = vec![0xa5u8; want.len() + 4096];
    let half = want.len() / 2;
    let n = reader.read_into(half as u64, &mut dst[half..]).await?;
    ensure!(n == want.len() - half, "{what}: back half gave {n} bytes");
    let n = reader.read_into(0, &mut dst[..half]).await?;
    ensure!(n == half, "{what}: front half gave {n} bytes");
    check_same(&dst[..want.len()], want, what)?;
    ensure!(
        dst[want.len()..].iter().all(|&b| b == 0xa5),
        "{what}: read past the object's end"
    );
    let n = reader.read_into(want.len() as u64, &mut dst).await?;
    ensure!(n == 0, "{what}: {n} bytes at the end");
    Ok(())
}

/// A reader opened before the key is replaced (by a longer or a shorter
/// object) or deleted still gives the old version's length and bytes, all
/// of them; the store meanwhile has the new state. These objects fit the
/// first read of a RADOS reader, so both backends must pass.
async fn reader_keeps_its_version(store: &ObjectStore, user: &str) -> anyhow::Result<()> {
    ensure!(store.open_read(user, b"nothing").await?.is_none());
    let changes: [(&str, usize, Option<usize>); 4] = [
        ("replaced by a longer one", 1000, Some(70_000)),
        ("replaced by a shorter one", 50_000, Some(10)),
        ("replaced by an empty one", 4097, Some(0)),
        ("deleted", 3000, None),
    ];
    for (change, old_len, new_len) in changes {
        let key = format!("k {change}");
        let key = key.as_bytes();
        let old = pattern(old_len as u64, old_len);
        store.put(user, key, &old).await?;
        let reader = store
            .open_read(user, key)
            .await?
            .ok_or_else(|| anyhow!("{change}: missing after put"))?;
        match new_len {
            Some(len) => store.put(user, key, &pattern(len as u64 + 1, len)).await?,
            None => ensure!(store.delete(user, key).await?, "{change}: nothing deleted"),
        }
        let now = store.stat(user, key).await?;
        ensure!(
            now == new_len.map(|len| len as u64),
            "{change}: stat {now:?}"
        );
        read_all(&reader, &old, &format!("reader of an object {change}")).await?;
        reader.close().await?;
    }
    Ok(())
}

/// A reader of a multi-MiB object reads it in parts. When the object is
/// replaced or deleted meanwhile, the embedded store still reads the old
/// version; the RADOS store (which keeps no old versions) may instead fail
/// with `ObjectChanged` for the bytes past its first read, never returning
/// bytes of the new version.
async fn reader_reads_a_large_object_in_parts(
    store: &ObjectStore,
    user: &str,
) -> anyhow::Result<()> {
    let old = pattern(7, 3 * MIB + 5);
    store.put(user, b"big", &old).await?;
    // Unchanged: every part is read, across the first read's end.
    let reader = store
        .open_read(user, b"big")
        .await?
        .ok_or_else(|| anyhow!("missing after put"))?;
    read_all(&reader, &old, "unchanged object").await?;
    let mut dst = vec![0u8; MIB];
    for offset in [0, 60 * 1024, 64 * 1024 - 3, 2 * MIB as u64 + 1] {
        let n = reader.read_into(offset, &mut dst).await?;
        let from = offset as usize;
        check_same(
            &dst[..n],
            &old[from..from + MIB],
            &format!("part at {offset}"),
        )?;
    }
    reader.close().await?;

    // Replaced by a shorter object, or deleted, while open.
    let rados = matches!(store, ObjectStore::Rados(_));
    for deleted in [false, true] {
        let what = if deleted { "deleted" } else { "replaced" };
        store.put(user, b"big", &old).await?;
        let reader = store
            .open_read(user, b"big")
            .await?
            .ok_or_else(|| anyhow!("missing after put"))?;
        if deleted {
            ensure!(store.delete(user, b"big").await?);
        } else {
            store.put(user, b"big", b"short").await?;
        }
        let mut dst = vec![0u8; old.len()];
        match reader.read_into(0, &mut dst).await {
            Ok(n) => {
                ensure!(n == old.len(), "{what}: read {n} bytes of {}", old.len());
                check_same(&dst, &old, &format!("reader of a {what} object"))?;
            }
            Err(StorageError::ObjectChanged { .. }) if rados => {
                // What came with its first operation is still the old object.
                let mut head = vec![0u8; 1000];
                ensure!(reader.read_into(0, &mut head).await? == 1000);
                check_same(&head, &old[..1000], &format!("head of a {what} object"))?;
            }
            Err(e) => return Err(e).with_context(|| format!("reading a {what} object")),
        }
        reader.close().await?;
    }
    Ok(())
}

/// A streamed write: parts of any size, in order; the old object stays
/// readable until `finish`, an aborted or short stream leaves it, and a
/// part past the announced size is refused.
async fn streamed_writes_appear_whole_when_finished(
    store: &ObjectStore,
    user: &str,
) -> anyhow::Result<()> {
    let old = pattern(3, 5000);
    store.put(user, b"s", &old).await?;
    let new = pattern(4, 2 * MIB + 4097);
    let mut stream = store.put_stream(user, b"s", new.len() as u64).await?;
    // Unaligned parts, then block-aligned ones, then the rest.
    let cuts = [0, 1, 4096 + 3, MIB, MIB + 4096 * 3, new.len()];
    for pair in cuts.windows(2) {
        stream.write(&new[pair[0]..pair[1]]).await?;
        let seen = store.get(user, b"s", 0, u64::MAX).await?;
        ensure!(
            seen.as_deref() == Some(&old[..]),
            "the new object showed before finish"
        );
    }
    stream.finish().await?;
    let got = store
        .get(user, b"s", 0, u64::MAX)
        .await?
        .ok_or_else(|| anyhow!("missing after finish"))?;
    check_same(&got, &new, "streamed object")?;

    let mut aborted = store.put_stream(user, b"s", 10).await?;
    aborted.write(b"12345").await?;
    aborted.abort().await;
    let mut short = store.put_stream(user, b"s", 10).await?;
    short.write(b"12345").await?;
    ensure!(short.finish().await.is_err(), "a short stream finished");
    let mut long = store.put_stream(user, b"s", 4).await?;
    ensure!(
        long.write(b"12345").await.is_err(),
        "a part past the size was taken"
    );
    long.abort().await;
    let got = store.get(user, b"s", 0, u64::MAX).await?;
    ensure!(
        got.as_deref() == Some(&new[..]),
        "a dropped stream changed the object"
    );
    Ok(())
}

/// A put of owned bytes is a put; calls dropped after their first poll
/// (queued, or running on a RADOS worker) leave the store serving and
/// every object whole or absent, and nothing waits for them.
async fn owned_puts_and_abandoned_calls(store: &ObjectStore, user: &str) -> anyhow::Result<()> {
    let data = pattern(8, 3 * MIB + 5);
    store
        .put_bytes(user, b"owned", data.clone().into())
        .await
        .context("putting owned bytes")?;
    let got = store
        .get(user, b"owned", 0, u64::MAX)
        .await?
        .ok_or_else(|| anyhow!("missing after put_bytes"))?;
    check_same(&got, &data, "object put from owned bytes")?;

    let other = pattern(9, MIB);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    for _ in 0..16 {
        let mut dst = vec![0u8; data.len()];
        let mut read = Box::pin(store.read_into(user, b"owned", 0, &mut dst));
        let _ = read.as_mut().poll(&mut cx);
        drop(read);
        let mut put = Box::pin(store.put(user, b"abandoned", &other));
        let _ = put.as_mut().poll(&mut cx);
        drop(put);
    }
    let got = store
        .get(user, b"owned", 0, u64::MAX)
        .await?
        .ok_or_else(|| anyhow!("missing after abandoned reads"))?;
    check_same(&got, &data, "object after abandoned reads")?;
    if let Some(got) = store.get(user, b"abandoned", 0, u64::MAX).await? {
        check_same(&got, &other, "object of abandoned puts")?;
    }
    let mut dst = vec![0u8; data.len()];
    ensure!(store.read_into(user, b"owned", 0, &mut dst).await? == Some(data.len()));
    check_same(&dst, &data, "read_into after abandoned calls")
}

//! The Ceph RADOS object store: objects in one pool of a Ceph cluster, named
//! `user/key` (see [`names`] for keys that are not plain text), reached
//! through librados.
//!
//! librados' calls block, so none runs on a shard: each goes to one of the
//! store's few worker threads (see [`workers`]) through a bounded queue, and
//! the shard's task awaits the answer. A call owns the buffers librados
//! touches, so that a task may drop or leak its future at any point: a put
//! hands its data over as [`Bytes`] (without a copy from
//! [`RadosStore::put_bytes`], with one from [`RadosStore::put`]), and a
//! read lands in a buffer of the worker's that is handed back and copied
//! into the caller's (memcpy at ~10 GB/s: 16 MiB in ~2 ms, small beside the
//! network round trip and the OSD's read).
//!
//! Consistency comes from RADOS itself: a `put` is one write operation that
//! creates or replaces the whole object, acknowledged once every replica has
//! it, so readers see the old object or the new one, never a mix; a read
//! stats and reads in one operation, so the size it goes by and the bytes it
//! returns are from the same version. A [`RadosReader`], which reads one
//! object in several operations, asserts the version it opened on every
//! one of them: RADOS keeps no old versions to read, so a reader whose
//! object changed fails rather than mix versions (see [`reader`]).

mod cluster;
mod ffi;
pub(crate) mod names;
mod reader;
mod workers;

use std::ffi::CString;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

pub(crate) use self::cluster::Cluster;
use self::cluster::{c_string, Errno};
pub use self::reader::RadosReader;
use self::workers::{Lost, Workers};
use crate::embedded::ObjectInfo;
use crate::error::StorageError;
use crate::limits::{
    KEY_BYTES_MAX, LIST_OBJECTS_MAX, OBJECT_BYTES_MAX, RADOS_GET_FIRST_BYTES,
    RADOS_OBJECT_NAME_BYTES_MAX, RADOS_OP_MS_MAX, RADOS_QUEUE_CALLS_MAX, RADOS_READ_OP_BYTES_MAX,
    RADOS_THREADS, USER_BYTES_MAX,
};

/// A `get` re-reads an object that changed size between its first and
/// second operation; an object rewritten this often in a row is an error.
const GET_TRIES: usize = 4;

/// Settings of a [`RadosStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RadosConfig {
    /// The cluster's config file (monitor addresses, auth); the same file
    /// the node's OSDs read, since the object size limits come from it.
    pub conf_path: PathBuf,
    /// The pool that holds the deployment's objects. It must exist.
    pub pool: String,
    /// The RADOS namespace inside the pool; empty: the default one. A
    /// store sees, lists and writes only its namespace's objects.
    pub namespace: String,
    /// The client name without `client.`: `admin` connects as
    /// `client.admin`.
    pub client_id: String,
    /// Largest object `put` accepts; lowered at connect to what one RADOS
    /// write may carry (see [`RadosStore::connect`]).
    pub object_bytes_max: u64,
    /// Longest key accepted.
    pub key_bytes_max: usize,
    /// Longest user name accepted.
    pub user_bytes_max: usize,
    /// Worker threads for librados calls (at least 1).
    pub threads: usize,
    /// Calls that may wait for a worker thread (at least 1).
    pub queue_calls_max: usize,
    /// Longest one librados call may take, connecting included; librados
    /// counts in whole seconds, so this is rounded up to one.
    pub op_ms_max: u64,
}

impl RadosConfig {
    /// A config for `pool` of the cluster described by `conf_path`, as
    /// `client.admin`, with the defaults of [`crate::limits`].
    pub fn new(conf_path: impl Into<PathBuf>, pool: impl Into<String>) -> Self {
        RadosConfig {
            conf_path: conf_path.into(),
            pool: pool.into(),
            namespace: String::new(),
            client_id: "admin".to_string(),
            object_bytes_max: OBJECT_BYTES_MAX,
            key_bytes_max: KEY_BYTES_MAX,
            user_bytes_max: USER_BYTES_MAX,
            threads: RADOS_THREADS,
            queue_calls_max: RADOS_QUEUE_CALLS_MAX,
            op_ms_max: RADOS_OP_MS_MAX,
        }
    }
}

/// The object store in a Ceph pool. Cheap to clone; connect once per node
/// and hand a clone to each shard. Its async methods may run on any
/// executor and never block the thread they are polled on; dropping one
/// mid-call abandons the call (a librados call already running finishes
/// on its worker, and its result is dropped there).
#[derive(Clone)]
pub struct RadosStore {
    inner: Arc<Inner>,
}

struct Inner {
    workers: Workers,
    /// Each call holds a clone, so the handle outlives every call that
    /// uses it, queued or running, whenever the store goes.
    cluster: Arc<Cluster>,
    conf_path: PathBuf,
    pool: String,
    object_bytes_max: u64,
    /// The OSDs' `osd_max_object_size`: no object, whoever wrote it, has
    /// bytes at or past this offset.
    osd_object_bytes_max: u64,
    key_bytes_max: usize,
    user_bytes_max: usize,
    threads: usize,
}

impl std::fmt::Debug for RadosStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RadosStore")
            .field("conf_path", &self.inner.conf_path)
            .field("pool", &self.inner.pool)
            .field("object_bytes_max", &self.inner.object_bytes_max)
            .finish_non_exhaustive()
    }
}

impl RadosStore {
    /// Connects to the cluster and opens the pool; starts the worker
    /// threads. Synchronous: it runs once at node start, and blocks up to
    /// `op_ms_max` when no monitor answers.
    ///
    /// `object_bytes_max` is lowered to the most one RADOS write operation
    /// may carry: the OSDs' `osd_max_object_size` (128 MiB by default) and
    /// `osd_max_write_size` (90 MiB by default), as the config file sets
    /// them. A put is a single operation so that it replaces the object
    /// atomically; larger objects are refused with
    /// [`StorageError::ObjectTooLarge`].
    pub fn connect(config: RadosConfig) -> Result<Self, StorageError> {
        let RadosConfig {
            conf_path,
            pool,
            namespace,
            client_id,
            object_bytes_max,
            key_bytes_max,
            user_bytes_max,
            threads,
            queue_calls_max,
            op_ms_max,
        } = config;
        let name_bytes = names::object_name_bytes_max(user_bytes_max, key_bytes_max);
        if name_bytes > RADOS_OBJECT_NAME_BYTES_MAX {
            return Err(StorageError::LimitTooLarge {
                name: "user_bytes_max + key_bytes_max (as a RADOS object name)",
                value: name_bytes as u64,
                max: RADOS_OBJECT_NAME_BYTES_MAX as u64,
            });
        }
        let threads = threads.max(1);
        // librados takes whole seconds here.
        let timeout_s = op_ms_max.div_ceil(1000).max(1).to_string();
        let options = [
            ("rados_osd_op_timeout", timeout_s.clone()),
            ("rados_mon_op_timeout", timeout_s.clone()),
            ("client_mount_timeout", timeout_s),
        ];
        let cluster = Cluster::connect(&conf_path, &client_id, &pool, &namespace, &options)?;

        let conf_shown = conf_path.display().to_string();
        let conf_u64 = |option: &'static str| {
            cluster
                .conf_get(option)
                .and_then(|value| value.trim().parse::<u64>().map_err(|_| -libc::EINVAL))
                .map_err(|code| {
                    StorageError::rados("reading option", format!("{option} of {conf_shown}"), code)
                })
        };
        let osd_object_bytes_max = conf_u64("osd_max_object_size")?;
        let osd_write_bytes_max = conf_u64("osd_max_write_size")?.saturating_mul(1 << 20);
        let object_bytes_max = object_bytes_max
            .min(osd_object_bytes_max)
            .min(osd_write_bytes_max)
            .min(RADOS_READ_OP_BYTES_MAX as u64);

        let workers = Workers::start("ferry-rados", threads, queue_calls_max.max(1))
            .map_err(|e| StorageError::io("starting librados worker threads for", &conf_path, e))?;
        tracing::info!(
            conf = %conf_path.display(),
            pool = %pool,
            namespace = %namespace,
            object_bytes_max,
            osd_object_bytes_max,
            osd_write_bytes_max,
            threads,
            "connected to ceph"
        );
        Ok(RadosStore {
            inner: Arc::new(Inner {
                workers,
                cluster: Arc::new(cluster),
                conf_path,
                pool,
                object_bytes_max,
                osd_object_bytes_max,
                key_bytes_max,
                user_bytes_max,
                threads,
            }),
        })
    }

    /// The RADOS object name of `key` of `user`: `user/key` for text keys
    /// (see the crate's `rados::names` for the escape of other keys and
    /// users). What `rados -p POOL get NAME` needs to reach the object.
    pub fn object_name(user: &str, key: &[u8]) -> String {
        names::object_name(user, key)
    }

    /// The pool this store uses.
    pub fn pool(&self) -> &str {
        &self.inner.pool
    }

    /// Largest object `put` accepts, after [`RadosStore::connect`] lowered
    /// it to the OSDs' limits.
    pub fn object_bytes_max(&self) -> u64 {
        self.inner.object_bytes_max
    }

    /// Stores `data` as `key` of `user`, replacing any object there. When
    /// this returns `Ok`, every replica has the new object. Copies `data`
    /// once, into a buffer the worker owns; [`RadosStore::put_bytes`] takes
    /// an owned buffer without the copy.
    pub async fn put(&self, user: &str, key: &[u8], data: &[u8]) -> Result<(), StorageError> {
        // Checked before the copy, so a refused put copies nothing.
        self.check_user(user)?;
        self.check_key(key)?;
        crate::error::check_object_len(data.len() as u64, self.inner.object_bytes_max)?;
        self.put_bytes(user, key, Bytes::copy_from_slice(data))
            .await
    }

    /// [`RadosStore::put`] of data the caller hands over: librados reads
    /// it where it is.
    pub async fn put_bytes(&self, user: &str, key: &[u8], data: Bytes) -> Result<(), StorageError> {
        self.check_user(user)?;
        self.check_key(key)?;
        crate::error::check_object_len(data.len() as u64, self.inner.object_bytes_max)?;
        let (name, c_name) = object_names(user, key)?;
        self.call("writing object", &name, move |cluster| {
            cluster.write_full(&c_name, &data)
        })
        .await
    }

    /// Opens the object for reading in parts: its size and first bytes in
    /// one operation, and later reads from that same version or failing
    /// with [`StorageError::ObjectChanged`] (see [`RadosReader`]). `None`
    /// when the object does not exist.
    pub async fn open_read(
        &self,
        user: &str,
        key: &[u8],
    ) -> Result<Option<RadosReader>, StorageError> {
        self.check_user(user)?;
        self.check_key(key)?;
        let (name, c_name) = object_names(user, key)?;
        RadosReader::open(self.clone(), name, c_name).await
    }

    /// Size of the object in bytes, or `None` when it does not exist.
    pub async fn stat(&self, user: &str, key: &[u8]) -> Result<Option<u64>, StorageError> {
        self.check_user(user)?;
        self.check_key(key)?;
        let (name, c_name) = object_names(user, key)?;
        self.call("statting object", &name, move |cluster| {
            cluster.stat(&c_name)
        })
        .await
    }

    /// Reads `min(dst.len(), size - offset)` bytes from `offset` into `dst`.
    /// `None` when the object does not exist; `Some(0)` at or past its end.
    /// librados reads into a buffer of the worker's, copied into `dst`.
    pub async fn read_into(
        &self,
        user: &str,
        key: &[u8],
        offset: u64,
        dst: &mut [u8],
    ) -> Result<Option<usize>, StorageError> {
        self.check_user(user)?;
        self.check_key(key)?;
        let (name, c_name) = object_names(user, key)?;
        let offset_max = self.inner.osd_object_bytes_max;
        let len_max = dst.len();
        let read = self
            .call("reading object", &name, move |cluster| {
                read_blocking(cluster, &c_name, offset, offset_max, len_max)
            })
            .await?;
        Ok(read.map(|bytes| {
            dst[..bytes.len()].copy_from_slice(&bytes);
            bytes.len()
        }))
    }

    /// Reads up to `len_max` bytes from `offset`. `None` when the object does
    /// not exist; an empty vector at or past its end.
    pub async fn get(
        &self,
        user: &str,
        key: &[u8],
        offset: u64,
        len_max: u64,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        self.check_user(user)?;
        self.check_key(key)?;
        let (name, c_name) = object_names(user, key)?;
        let offset_max = self.inner.osd_object_bytes_max;
        // Never size an allocation past what the store would accept.
        let alloc_max = self.inner.object_bytes_max;
        let got = self
            .call("reading object", &name, move |cluster| {
                get_blocking(cluster, &c_name, offset, len_max, offset_max, alloc_max)
            })
            .await?;
        got.map_err(|len_bytes| StorageError::ObjectTooLarge {
            len_bytes,
            max_bytes: alloc_max,
        })
    }

    /// Removes the object. `false` when it did not exist.
    pub async fn delete(&self, user: &str, key: &[u8]) -> Result<bool, StorageError> {
        self.check_user(user)?;
        self.check_key(key)?;
        let (name, c_name) = object_names(user, key)?;
        self.call("removing object", &name, move |cluster| {
            cluster.remove(&c_name)
        })
        .await
    }

    /// The user's objects, sorted by key, with their sizes.
    ///
    /// RADOS lists a pool only as a whole, in hash order, so this scans
    /// every object name in the pool's default namespace and keeps those
    /// under the user's prefix (O(objects in the pool), a round trip per
    /// listing batch), then stats the user's objects, a few at a time. An
    /// object under the prefix whose name is not the name of any key (made
    /// by another tool, e.g. a malformed escape) cannot be read through the
    /// store and is not listed. An object removed between the scan and its
    /// stat is left out; one added during the listing may or may not be in.
    pub async fn list(&self, user: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        self.check_user(user)?;
        let prefix = names::user_prefix(user);
        let scanned = self
            .call(
                "listing objects in pool",
                &self.inner.pool,
                move |cluster| {
                    let mut keys = Vec::new();
                    cluster
                        .list_prefixed(prefix.as_bytes(), |rest| {
                            let Some(key) = names::decode_key(rest) else {
                                return Ok(());
                            };
                            if keys.len() == LIST_OBJECTS_MAX {
                                return Err(());
                            }
                            keys.push(key);
                            Ok(())
                        })
                        .map(|listed| listed.map(|()| keys))
                },
            )
            .await?;
        let keys = scanned.map_err(|()| StorageError::TooManyObjects {
            max_objects: LIST_OBJECTS_MAX,
        })?;

        let mut objects = Vec::with_capacity(keys.len());
        let stats = keys.into_iter().map(|key| async move {
            let size = self.stat(user, &key).await?;
            Ok(size.map(|size_bytes| ObjectInfo { key, size_bytes }))
        });
        crate::dma::for_each_bounded(stats, self.inner.threads, |object| {
            objects.extend(object);
            Ok(())
        })
        .await?;
        objects.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// Runs `f` with the cluster on a worker thread; names `op` and `object`
    /// in its error. `f` owns what it touches (see [`workers`]).
    pub(crate) async fn call<T, F>(
        &self,
        op: &'static str,
        object: &str,
        f: F,
    ) -> Result<T, StorageError>
    where
        F: FnOnce(&Cluster) -> Result<T, Errno> + Send + 'static,
        T: Send + 'static,
    {
        let cluster = self.inner.cluster.clone();
        match self.inner.workers.run(move || f(&cluster)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(code)) => Err(StorageError::rados(op, object, code)),
            Err(Lost::Stopped) => Err(StorageError::Rados {
                op,
                object: object.to_string(),
                code: -libc::ECANCELED,
                message: "the store's librados threads have stopped".to_string(),
            }),
            Err(Lost::Panicked(panic)) => Err(StorageError::Rados {
                op,
                object: object.to_string(),
                code: -libc::ECANCELED,
                message: format!("the librados call panicked: {panic}"),
            }),
        }
    }

    pub(crate) fn cluster(&self) -> &Arc<Cluster> {
        &self.inner.cluster
    }

    fn check_user(&self, user: &str) -> Result<(), StorageError> {
        crate::error::check_user(user, self.inner.user_bytes_max)
    }

    fn check_key(&self, key: &[u8]) -> Result<(), StorageError> {
        crate::error::check_key(key, self.inner.key_bytes_max)
    }
}

// Shards on different threads share one store.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<RadosStore>();
};

/// The object's name, as text for errors and as the C string librados
/// takes.
fn object_names(user: &str, key: &[u8]) -> Result<(String, CString), StorageError> {
    let name = names::object_name(user, key);
    // Names never hold a NUL (see `names`); this only keeps that promise
    // checked.
    let c_name =
        c_string(&name).map_err(|code| StorageError::rados("naming object", &name, code))?;
    Ok((name, c_name))
}

/// `read_into` on a worker thread: stat-and-read operations of at most
/// [`RADOS_READ_OP_BYTES_MAX`] bytes into a new buffer until it holds
/// `len_max` bytes or the object ends. The buffer grows to what the object
/// has in range, never to a `len_max` past it.
fn read_blocking(
    cluster: &Cluster,
    name: &std::ffi::CStr,
    offset: u64,
    offset_max: u64,
    len_max: usize,
) -> Result<Option<Vec<u8>>, Errno> {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let done = buf.len();
        let pos = offset.saturating_add(done as u64);
        // No object has bytes at or past `offset_max`: only stat there (the
        // OSD would refuse a read so far out).
        let want = if pos >= offset_max {
            0
        } else {
            (len_max - done)
                .min(RADOS_READ_OP_BYTES_MAX)
                .min((offset_max - pos).try_into().unwrap_or(usize::MAX))
        };
        buf.reserve_exact(want);
        // SAFETY: `reserve_exact` left room for `want` bytes past `done`,
        // and `want` is at most RADOS_READ_OP_BYTES_MAX.
        let Some(read) =
            (unsafe { cluster.stat_and_read(name, pos, buf.as_mut_ptr().add(done), want, None)? })
        else {
            return Ok(None);
        };
        // SAFETY: librados wrote `read.read` (at most `want`) bytes there.
        unsafe { buf.set_len(done + read.read) };
        if want == 0 || read.read < want || buf.len() == len_max {
            return Ok(Some(buf));
        }
    }
}

/// `get` on a worker thread. The first operation stats and reads up to
/// [`RADOS_GET_FIRST_BYTES`]; if the object has more in range, a second
/// reads exactly that much. `Ok(Err(len))` when the range is larger than
/// `alloc_max`.
fn get_blocking(
    cluster: &Cluster,
    name: &std::ffi::CStr,
    offset: u64,
    len_max: u64,
    offset_max: u64,
    alloc_max: u64,
) -> Result<Result<Option<Vec<u8>>, u64>, Errno> {
    let mut ask = if offset >= offset_max {
        0
    } else {
        len_max.min(RADOS_GET_FIRST_BYTES as u64) as usize
    };
    for _ in 0..GET_TRIES {
        let mut buf: Vec<u8> = Vec::with_capacity(ask);
        // SAFETY: `buf` has room for `ask` bytes, at most
        // RADOS_READ_OP_BYTES_MAX (alloc_max is capped there at connect).
        let Some(read) =
            (unsafe { cluster.stat_and_read(name, offset, buf.as_mut_ptr(), ask, None)? })
        else {
            return Ok(Ok(None));
        };
        // SAFETY: librados wrote `read.read` (at most `ask`) bytes.
        unsafe { buf.set_len(read.read) };
        let want = len_max.min(read.size.saturating_sub(offset));
        if read.read as u64 == want {
            return Ok(Ok(Some(buf)));
        }
        if want > alloc_max {
            return Ok(Err(want));
        }
        ask = want as usize;
    }
    // The object changed size between every pair of operations.
    Err(-libc::EAGAIN)
}

//! The node: checks its prerequisites, reads the machine's topology, builds
//! the executor and registry, and starts one pinned shard per core.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use glommio::{LocalExecutorBuilder, PoolPlacement};

use crate::config::Config;
use crate::config::{Backend, Role};
use crate::exec::{start_epoch_ticker, Executor};
use crate::http::{self, Api};
use crate::invocation::{AsyncCalls, CallIds};
use crate::limits;
use crate::metrics::Metrics;
use crate::objects::{Objects, RemoteObjects};
use crate::registry::Registry;
use crate::remote::PeerClient;
use crate::shard::LocalShard;
use ferry_storage::{EmbeddedStore, ObjectStore, Placement, RadosConfig, RadosStore, StoreConfig};

/// What every shard shares: immutable or internally synchronised.
pub struct NodeShared {
    pub config: Config,
    pub executor: Arc<Executor>,
    pub registry: Registry,
    pub metrics: Metrics,
    pub async_calls: AsyncCalls,
    pub call_ids: CallIds,
    /// Set once the start-up uploads are done; `/healthz` answers 200 after.
    pub ready: AtomicBool,
    /// wasmtime-wasi drives some WASI calls (clocks, sleeps) on tokio; each
    /// shard enters this one small runtime so those calls find it.
    tokio: tokio::runtime::Runtime,
}

/// One core a shard runs on.
#[derive(Debug, Clone, Copy)]
struct Core {
    cpu: usize,
    numa: Option<usize>,
}

/// Runs a node until the process is stopped.
pub fn run(config: Config) -> Result<()> {
    let cores = topology(config.cores)?;
    check_prerequisites(cores.len())?;
    let executor = Arc::new(Executor::new(config.limits.clone(), cores.len())?);
    let (registry, stale) = Registry::open(config.data_dir.join("functions"), &executor)?;
    let store_config = |dir: &str| StoreConfig {
        root: config.data_dir.join(dir),
        object_bytes_max: ferry_storage::limits::OBJECT_BYTES_MAX,
        key_bytes_max: ferry_storage::limits::KEY_BYTES_MAX,
        user_bytes_max: ferry_storage::limits::USER_BYTES_MAX,
    };
    let objects = objects_plan(&config, || {
        EmbeddedStore::open(store_config("objects")).context("opening the object store")
    })?;
    let state = EmbeddedStore::open(store_config("state")).context("opening the state store")?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("ferry-wasi")
        .enable_all()
        .build()
        .context("starting the WASI helper runtime")?;
    let node = Arc::new(NodeShared {
        executor: executor.clone(),
        registry,
        metrics: Metrics::new()?,
        async_calls: AsyncCalls::new(Duration::from_secs(config.limits.async_result_retention_s)),
        call_ids: CallIds::new(),
        ready: AtomicBool::new(false),
        tokio,
        config,
    });
    start_epoch_ticker(executor.engine.clone())?;

    let startup = Startup {
        functions_dir: node.config.functions_dir.clone(),
        stale,
    };
    let (bound_tx, bound_rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut handles = Vec::new();
    let (mut http_addr, mut upload_addr) = (node.config.http_addr, node.config.upload_addr);
    for (id, core) in cores.iter().enumerate() {
        let startup = (id == 0).then(|| (startup.clone(), ready_tx.clone()));
        let stores = (objects.clone(), ObjectStore::Embedded(state.clone()));
        handles.push(spawn_shard(
            id,
            *core,
            node.clone(),
            (http_addr, upload_addr),
            stores,
            bound_tx.clone(),
            startup,
        )?);
        // Shard 0 resolves port 0; the others bind the same ports.
        let (http, upload) = bound_rx
            .recv()
            .map_err(|_| anyhow!("shard {id} stopped while starting"))?
            .with_context(|| format!("starting shard {id}"))?;
        (http_addr, upload_addr) = (http, upload);
        tracing::info!(shard = id, cpu = core.cpu, numa = ?core.numa, "shard started");
    }
    ready_rx
        .recv()
        .map_err(|_| anyhow!("shard 0 stopped during start-up"))?;
    node.ready.store(true, Ordering::Release);
    tracing::info!(
        name = %node.config.name,
        http = %http_addr,
        upload = %upload_addr,
        shards = cores.len(),
        functions = node.registry.len(),
        "node ready"
    );
    println!("ferry: ready, invocations on {http_addr}, uploads on {upload_addr}");
    if let Some(path) = &node.config.ready_file {
        write_ready_file(path, http_addr, upload_addr)?;
    }
    for handle in handles {
        handle.join().map_err(|e| anyhow!("a shard failed: {e}"))?;
    }
    Ok(())
}

/// Where this node's objects are; each shard makes its own handle from it.
#[derive(Clone)]
enum ObjectsPlan {
    Local(ObjectStore),
    Remote {
        nodes: Vec<(String, SocketAddr)>,
        placement: Placement,
    },
}

impl ObjectsPlan {
    fn for_shard(&self) -> Objects {
        match self {
            ObjectsPlan::Local(store) => Objects::Local(store.clone()),
            ObjectsPlan::Remote { nodes, placement } => Objects::Remote(RemoteObjects {
                nodes: nodes.clone(),
                placement: placement.local(),
                client: PeerClient::new(),
            }),
        }
    }
}

/// Ceph everywhere; otherwise the local embedded store on nodes that hold
/// objects, and the storage nodes' stores (placed by rendezvous hashing)
/// on compute nodes.
fn objects_plan(
    config: &Config,
    embedded: impl FnOnce() -> Result<EmbeddedStore>,
) -> Result<ObjectsPlan> {
    match (&config.backend, config.role) {
        (Backend::Ceph { conf, pool }, _) => {
            let store = RadosStore::connect(RadosConfig::new(conf.clone(), pool.clone()))
                .with_context(|| {
                    format!("connecting to Ceph pool {pool} with {}", conf.display())
                })?;
            tracing::info!(pool = %pool, conf = %conf.display(), "objects in Ceph RADOS");
            Ok(ObjectsPlan::Local(ObjectStore::Rados(store)))
        }
        (Backend::Embedded, role) if role.holds_objects() => {
            Ok(ObjectsPlan::Local(ObjectStore::Embedded(embedded()?)))
        }
        (Backend::Embedded, Role::Compute | Role::Storage | Role::All) => {
            let nodes: Vec<(String, SocketAddr)> = config
                .cluster
                .iter()
                .filter(|peer| peer.role.holds_objects())
                .map(|peer| (peer.name.clone(), peer.upload))
                .collect();
            let placement =
                Placement::rendezvous(nodes.iter().map(|(name, _)| name.clone()).collect())
                    .context("building the placement")?;
            tracing::info!(storage_nodes = nodes.len(), "objects on the storage nodes");
            Ok(ObjectsPlan::Remote { nodes, placement })
        }
    }
}

/// Work shard 0 does once its listeners are up.
#[derive(Clone)]
struct Startup {
    functions_dir: Option<PathBuf>,
    stale: Vec<(String, String)>,
}

fn spawn_shard(
    id: usize,
    core: Core,
    node: Arc<NodeShared>,
    (http_addr, upload_addr): (SocketAddr, SocketAddr),
    (objects, state): (ObjectsPlan, ObjectStore),
    bound: mpsc::Sender<Result<(SocketAddr, SocketAddr)>>,
    startup: Option<(Startup, mpsc::Sender<()>)>,
) -> Result<glommio::ExecutorJoinHandle<()>> {
    LocalExecutorBuilder::new(glommio::Placement::Fixed(core.cpu))
        .name(&format!("shard-{id}"))
        .io_memory(limits::SHARD_IO_MEMORY_BYTES)
        .blocking_thread_pool_placement(PoolPlacement::Unbound(1))
        .spawn(move || async move {
            let _tokio = node.tokio.enter();
            let shard =
                LocalShard::install(id, node.clone(), objects.for_shard(), Objects::Local(state));
            let listeners = glommio::net::TcpListener::bind(http_addr)
                .map_err(|e| anyhow!("binding the invocation port {http_addr}: {e}"))
                .and_then(|http| {
                    let upload = glommio::net::TcpListener::bind(upload_addr)
                        .map_err(|e| anyhow!("binding the upload port {upload_addr}: {e}"))?;
                    Ok((http, upload))
                })
                .and_then(|(http, upload)| {
                    let local = |l: &glommio::net::TcpListener| l.local_addr().map_err(|e| anyhow!("reading the bound address: {e}"));
                    let addrs = (local(&http)?, local(&upload)?);
                    Ok((http, upload, addrs))
                });
            let (http, upload) = match listeners {
                Ok((http, upload, addrs)) => {
                    let _ = bound.send(Ok(addrs));
                    (http, upload)
                }
                Err(error) => {
                    let _ = bound.send(Err(error));
                    return;
                }
            };
            let serving_http = glommio::spawn_local(http::serve(http, shard.clone(), Api::Invoke));
            let serving_upload = glommio::spawn_local(http::serve(upload, shard.clone(), Api::Upload));
            if let Some((startup, ready)) = startup {
                run_startup(&shard, startup).await;
                let _ = ready.send(());
            }
            serving_http.await;
            serving_upload.await;
        })
        .map_err(|e| anyhow!("starting shard {id} on cpu {}: {e} (is io_uring available? see `sysctl kernel.io_uring_disabled`)", core.cpu))
}

/// Uploads the functions of `--functions DIR` (`<user>/<name>.wasm`) that
/// are new or changed, and recompiles stored functions whose artifact did
/// not load.
async fn run_startup(shard: &LocalShard, startup: Startup) {
    let node = &shard.node;
    let mut work: Vec<(String, String, Vec<u8>)> = Vec::new();
    for (user, name) in startup.stale {
        match node.registry.wasm(&user, &name) {
            Ok(Some(wasm)) => work.push((user, name, wasm)),
            Ok(None) => {
                tracing::warn!(%user, function = %name, "stored function has no wasm; skipped")
            }
            Err(error) => {
                tracing::warn!(%user, function = %name, error = format!("{error:#}"), "reading stored wasm")
            }
        }
    }
    if let Some(dir) = &startup.functions_dir {
        match functions_in(dir) {
            Ok(found) => {
                for (user, name, wasm) in found {
                    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&wasm));
                    let current = node
                        .registry
                        .get(&user, &name)
                        .map(|f| f.wasm_sha256.clone());
                    if current.as_deref() != Some(sha.as_str()) {
                        work.push((user, name, wasm));
                    }
                }
            }
            Err(error) => {
                tracing::warn!(dir = %dir.display(), error = format!("{error:#}"), "reading the functions directory")
            }
        }
    }
    for (user, name, wasm) in work {
        match node
            .registry
            .upload(&node.executor, &user, &name, wasm)
            .await
        {
            Ok(_) => tracing::info!(%user, function = %name, "function loaded"),
            Err(error) => tracing::warn!(%user, function = %name, %error, "function not loaded"),
        }
    }
}

fn functions_in(dir: &Path) -> Result<Vec<(String, String, Vec<u8>)>> {
    let mut found = Vec::new();
    for user in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let user = user?.path();
        let Some(user_name) = user.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if !user.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&user)? {
            let file = file?.path();
            if file.extension().and_then(|e| e.to_str()) != Some("wasm") {
                continue;
            }
            let Some(name) = file.file_stem().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            let wasm =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            found.push((user_name.clone(), name, wasm));
        }
    }
    found.sort();
    Ok(found)
}

fn write_ready_file(path: &Path, http: SocketAddr, upload: SocketAddr) -> Result<()> {
    let body = serde_json::json!({ "http": http.to_string(), "upload": upload.to_string(), "pid": std::process::id() });
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body.to_string()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The cores this process may run on, with their NUMA node, from hwloc.
fn topology(wanted: Option<usize>) -> Result<Vec<Core>> {
    use hwlocality::object::types::ObjectType;
    let topology = hwlocality::Topology::new()
        .map_err(|e| anyhow!("reading the machine topology with hwloc: {e}"))?;
    let allowed = allowed_cpus()?;
    let numa_nodes: Vec<(usize, Vec<usize>)> = topology
        .objects_with_type(ObjectType::NUMANode)
        .filter_map(|node| {
            let cpus = node.cpuset()?.iter_set().map(usize::from).collect();
            Some((node.os_index()?, cpus))
        })
        .collect();
    let mut cores: Vec<Core> = topology
        .objects_with_type(ObjectType::PU)
        .filter_map(|pu| pu.os_index())
        .filter(|cpu| allowed.contains(cpu))
        .map(|cpu| Core {
            cpu,
            numa: numa_nodes
                .iter()
                .find(|(_, cpus)| cpus.contains(&cpu))
                .map(|(n, _)| *n),
        })
        .collect();
    if cores.is_empty() {
        bail!("hwloc reports no core this process may run on");
    }
    tracing::info!(
        cores = cores.len(),
        numa_nodes = numa_nodes.len(),
        "machine topology"
    );
    if let Some(wanted) = wanted {
        if wanted > cores.len() {
            bail!(
                "--cores {wanted} asks for more cores than the {} this process may use",
                cores.len()
            );
        }
        cores.truncate(wanted);
    }
    Ok(cores)
}

fn allowed_cpus() -> Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is this thread; the size is the set's own.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("reading the CPU affinity mask");
    }
    // SAFETY: `set` was initialised by sched_getaffinity.
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|cpu| unsafe { libc::CPU_ISSET(*cpu, &set) })
        .collect())
}

/// Whether this process may lock memory regardless of RLIMIT_MEMLOCK.
fn has_ipc_lock() -> Result<bool> {
    const CAP_IPC_LOCK: u32 = 14;
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    Ok(effective & (1 << CAP_IPC_LOCK) != 0)
}

/// glommio locks its I/O memory and its rings: check RLIMIT_MEMLOCK now,
/// raise it when allowed, and refuse to start with a clear message
/// otherwise, rather than failing inside the first read.
fn check_prerequisites(shards: usize) -> Result<()> {
    // Registered buffers plus two rings of a few hundred KiB per shard.
    let needed = (shards * (limits::SHARD_IO_MEMORY_BYTES + (1 << 20))) as u64;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `limit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error()).context("reading RLIMIT_MEMLOCK");
    }
    if limit.rlim_cur != libc::RLIM_INFINITY && limit.rlim_cur < needed && !has_ipc_lock()? {
        let raised = libc::rlimit {
            rlim_cur: needed.max(limit.rlim_cur),
            rlim_max: limit.rlim_max.max(needed),
        };
        // SAFETY: setrlimit reads `raised`.
        if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) } != 0 {
            bail!(
                "locked-memory limit is {} KiB; {shards} shard(s) need {} KiB. Raise it (`ulimit -l {}`, or LimitMEMLOCK= in a systemd unit, or --ulimit memlock= in docker)",
                limit.rlim_cur / 1024,
                needed / 1024,
                needed / 1024
            );
        }
        tracing::info!(kib = needed / 1024, "raised RLIMIT_MEMLOCK");
    }
    Ok(())
}

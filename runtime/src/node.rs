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

use crate::budget::{ByteBudget, Quotas};
use crate::config::Config;
use crate::config::{Backend, PeerNode, Role};
use crate::exec::{start_epoch_ticker, Executor};
use crate::http::{self, Api};
use crate::invocation::{AsyncCalls, CallIds};
use crate::limits;
use crate::metrics::Metrics;
use crate::objects::{Objects, RemoteNode, RemoteObjects};
use crate::registry::Registry;
use crate::shard::LocalShard;
use ferry_storage::{
    CephNode, CephPlacementConfig, EmbeddedStore, ObjectStore, Placement, RadosConfig, RadosStore,
    StoreConfig,
};
use ferry_transport::{PeerPool, TransportConfig};

/// What every shard shares: immutable or internally synchronised.
pub struct NodeShared {
    pub config: Config,
    pub executor: Arc<Executor>,
    pub registry: Registry,
    pub metrics: Metrics,
    pub async_calls: AsyncCalls,
    pub call_ids: CallIds,
    /// HTTP body bytes all shards' requests hold at once.
    pub http_buffers: Arc<ByteBudget>,
    /// Per-user quotas and what each user holds against them.
    pub quotas: Arc<Quotas>,
    /// Set once the start-up uploads are done; `/healthz` answers 200 after.
    pub ready: AtomicBool,
    /// Which storage node holds an object (None: this node alone).
    pub placement: Option<Placement>,
    /// This node's name hashed to 32 bits: the high half of the call ids
    /// its offers carry, so offers from two compute nodes never share one.
    pub name_tag: u32,
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
    let (objects, placement) = objects_plan(&config, || {
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
        http_buffers: ByteBudget::new(config.limits.http_buffer_bytes_max),
        quotas: Quotas::new(config.quotas.clone()),
        ready: AtomicBool::new(false),
        placement,
        tokio,
        name_tag: {
            let digest = <sha2::Sha256 as sha2::Digest>::digest(config.name.as_bytes());
            u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
        },
        config,
    });
    start_epoch_ticker(executor.engine.clone())?;

    let startup = Startup {
        functions_dirs: node.config.functions_dirs.clone(),
        stale,
    };
    let (bound_tx, bound_rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut handles = Vec::new();
    let mut addrs = Addrs {
        http: node.config.http_addr,
        upload: node.config.upload_addr,
        transport: node.config.transport_addr,
    };
    for (id, core) in cores.iter().enumerate() {
        let startup = (id == 0).then(|| (startup.clone(), ready_tx.clone()));
        let stores = (objects.clone(), ObjectStore::Embedded(state.clone()));
        handles.push(spawn_shard(
            id,
            *core,
            node.clone(),
            addrs,
            stores,
            bound_tx.clone(),
            startup,
        )?);
        // Shard 0 resolves port 0; the others bind the same ports.
        addrs = bound_rx
            .recv()
            .map_err(|_| anyhow!("shard {id} stopped while starting"))?
            .with_context(|| format!("starting shard {id}"))?;
        tracing::info!(shard = id, cpu = core.cpu, numa = ?core.numa, "shard started");
    }
    ready_rx
        .recv()
        .map_err(|_| anyhow!("shard 0 stopped during start-up"))?;
    node.ready.store(true, Ordering::Release);
    tracing::info!(
        name = %node.config.name,
        role = ?node.config.role,
        http = %addrs.http,
        upload = %addrs.upload,
        transport = ?addrs.transport,
        shards = cores.len(),
        functions = node.registry.len(),
        "node ready"
    );
    log_authentication(&node.config, addrs);
    println!(
        "ferry: ready, invocations on {}, uploads on {}",
        addrs.http, addrs.upload
    );
    if let Some(path) = &node.config.ready_file {
        write_ready_file(path, addrs)?;
    }
    // Shards serve until the process ends. One that stops (a panic that
    // escaped its request) leaves the node on fewer cores with calls it
    // can no longer finish: say so, stop answering /healthz, and exit
    // non-zero so the supervisor restarts the node.
    let (ended_tx, ended_rx) = mpsc::channel();
    for (id, handle) in handles.into_iter().enumerate() {
        let ended = ended_tx.clone();
        std::thread::Builder::new()
            .name(format!("ferry-watch-{id}"))
            .spawn(move || {
                let outcome = handle.join().map_err(|e| e.to_string());
                let _ = ended.send((id, outcome));
            })
            .context("starting a shard watcher")?;
    }
    let (id, outcome) = ended_rx
        .recv()
        .map_err(|_| anyhow!("every shard watcher is gone"))?;
    node.ready.store(false, Ordering::Release);
    node.metrics.shards_stopped.inc();
    let reason = outcome.err().unwrap_or_else(|| "it returned".into());
    tracing::error!(shard = id, %reason, "a shard stopped; the node exits");
    Err(anyhow!("shard {id} stopped: {reason}"))
}

/// Says once what authenticates this node's clients and peers: a node
/// without tokens or without a cluster secret warns that anyone who
/// reaches it may act as any user, or as a node.
fn log_authentication(config: &Config, addrs: Addrs) {
    match &config.auth {
        None => tracing::warn!(
            http = %addrs.http,
            upload = %addrs.upload,
            "no [auth] tokens: no authentication (as in Faasm); any client that reaches these addresses may upload, invoke and read or delete objects as any user"
        ),
        Some(auth) => tracing::info!(
            users = auth.users(),
            guard_operations = auth.guard_operations,
            "API tokens required (Authorization: Bearer)"
        ),
    }
    let has_transport = addrs.transport.is_some() || !config.cluster.is_empty();
    match &config.cluster_secret {
        None if has_transport => tracing::warn!(
            transport = ?addrs.transport,
            "no [cluster] secret: the transport is unauthenticated; any process that reaches a node's transport port may read and write every object"
        ),
        None => {}
        Some(_) => tracing::info!("transport peers prove the cluster secret in Hello"),
    }
}

/// Where this node's objects are; each shard makes its own handle from it.
#[derive(Clone)]
enum ObjectsPlan {
    Local(ObjectStore),
    Remote {
        nodes: Vec<RemoteNode>,
        placement: Placement,
        transport: TransportConfig,
    },
}

impl ObjectsPlan {
    fn for_shard(&self, node: &NodeShared, shard: usize) -> Result<Objects> {
        Ok(match self {
            ObjectsPlan::Local(store) => Objects::Local(store.clone()),
            ObjectsPlan::Remote {
                nodes,
                placement,
                transport,
            } => Objects::Remote(RemoteObjects {
                nodes: nodes.clone(),
                placement: placement.local(),
                // Node tag high, shard next: unique across the cluster.
                next_write_id: std::cell::Cell::new(
                    (u64::from(node.name_tag) << 32) | ((shard as u64) << 24),
                ),
                pool: PeerPool::new(transport.clone())
                    .map_err(|e| anyhow!("starting the transport pool: {e}"))?,
            }),
        })
    }
}

/// Ceph everywhere; otherwise the local embedded store on nodes that hold
/// objects, and the storage nodes' stores (placed by rendezvous hashing)
/// on compute nodes. Also returns the cluster's placement (None for a node
/// started alone): rendezvous over the storage nodes, or Ceph's primary
/// OSD mapped to the storage node on that OSD's host.
fn objects_plan(
    config: &Config,
    embedded: impl FnOnce() -> Result<EmbeddedStore>,
) -> Result<(ObjectsPlan, Option<Placement>)> {
    let storage_nodes: Vec<&PeerNode> = config
        .cluster
        .iter()
        .filter(|peer| peer.role.holds_objects())
        .collect();
    let rendezvous = || {
        Placement::rendezvous(storage_nodes.iter().map(|n| n.name.clone()).collect())
            .context("building the placement")
    };
    match (&config.backend, config.role) {
        (Backend::Ceph { conf, pool }, _) => {
            let store = RadosStore::connect(RadosConfig::new(conf.clone(), pool.clone()))
                .with_context(|| {
                    format!("connecting to Ceph pool {pool} with {}", conf.display())
                })?;
            tracing::info!(pool = %pool, conf = %conf.display(), "objects in Ceph RADOS");
            let placement = if storage_nodes.is_empty() {
                None
            } else {
                let nodes = storage_nodes
                    .iter()
                    .map(|n| CephNode {
                        name: n.name.clone(),
                        host: n.ceph_host.clone(),
                    })
                    .collect();
                Some(
                    Placement::ceph(&store, CephPlacementConfig::new(nodes))
                        .context("reading Ceph's OSD map for placement")?,
                )
            };
            Ok((ObjectsPlan::Local(ObjectStore::Rados(store)), placement))
        }
        (Backend::Embedded, role) if role.holds_objects() => {
            let placement = if storage_nodes.is_empty() {
                None
            } else {
                Some(rendezvous()?)
            };
            Ok((
                ObjectsPlan::Local(ObjectStore::Embedded(embedded()?)),
                placement,
            ))
        }
        (Backend::Embedded, Role::Compute | Role::Storage | Role::All) => {
            let nodes: Vec<RemoteNode> = storage_nodes
                .iter()
                .map(|peer| RemoteNode {
                    name: peer.name.clone(),
                    transport: peer.transport,
                })
                .collect();
            let placement = rendezvous()?;
            let transport = config.transport();
            transport
                .validate()
                .map_err(|e| anyhow!("transport config: {e}"))?;
            tracing::info!(storage_nodes = nodes.len(), "objects on the storage nodes");
            Ok((
                ObjectsPlan::Remote {
                    nodes,
                    placement: placement.clone(),
                    transport,
                },
                Some(placement),
            ))
        }
    }
}

/// Work shard 0 does once its listeners are up.
#[derive(Clone)]
struct Startup {
    functions_dirs: Vec<PathBuf>,
    stale: Vec<(String, String)>,
}

/// The addresses a node listens on.
#[derive(Debug, Clone, Copy)]
struct Addrs {
    http: SocketAddr,
    upload: SocketAddr,
    transport: Option<SocketAddr>,
}

fn bind(addr: SocketAddr, what: &str) -> Result<(glommio::net::TcpListener, SocketAddr)> {
    let listener = glommio::net::TcpListener::bind(addr)
        .map_err(|e| anyhow!("binding the {what} port {addr}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| anyhow!("reading the {what} address: {e}"))?;
    Ok((listener, bound))
}

fn spawn_shard(
    id: usize,
    core: Core,
    node: Arc<NodeShared>,
    addrs: Addrs,
    (objects, state): (ObjectsPlan, ObjectStore),
    bound: mpsc::Sender<Result<Addrs>>,
    startup: Option<(Startup, mpsc::Sender<()>)>,
) -> Result<glommio::ExecutorJoinHandle<()>> {
    LocalExecutorBuilder::new(glommio::Placement::Fixed(core.cpu))
        .name(&format!("shard-{id}"))
        .io_memory(limits::SHARD_IO_MEMORY_BYTES)
        .spin_before_park(Duration::from_micros(node.config.spin_us))
        // glommio polls for I/O completions when this timer fires while
        // tasks are runnable; its 100 ms default let one looping guest hold
        // every other call's I/O on the shard for that long.
        .preempt_timer(Duration::from_millis(limits::SHARD_PREEMPT_MS))
        .blocking_thread_pool_placement(PoolPlacement::Unbound(1))
        .spawn(move || async move {
            let _tokio = node.tokio.enter();
            let objects = match objects.for_shard(&node, id) {
                Ok(objects) => objects,
                Err(error) => {
                    let _ = bound.send(Err(error));
                    return;
                }
            };
            let shard = match LocalShard::install(id, node.clone(), objects, Objects::Local(state)) {
                Ok(shard) => shard,
                Err(error) => {
                    let _ = bound.send(Err(error));
                    return;
                }
            };
            let listeners = (|| -> Result<_> {
                let (http, http_addr) = bind(addrs.http, "invocation")?;
                let (upload, upload_addr) = bind(addrs.upload, "upload")?;
                let transport = addrs.transport.map(|addr| bind(addr, "transport")).transpose()?;
                let bound = Addrs { http: http_addr, upload: upload_addr, transport: transport.as_ref().map(|t| t.1) };
                Ok((http, upload, transport.map(|t| t.0), bound))
            })();
            let (http, upload, transport) = match listeners {
                Ok((http, upload, transport, addrs)) => {
                    let _ = bound.send(Ok(addrs));
                    (http, upload, transport)
                }
                Err(error) => {
                    let _ = bound.send(Err(error));
                    return;
                }
            };
            let serving_http = glommio::spawn_local(http::serve(http, shard.clone(), Api::Invoke));
            let serving_upload = glommio::spawn_local(http::serve(upload, shard.clone(), Api::Upload));
            let serving_transport = transport.map(|listener| {
                glommio::spawn_local(crate::peer_server::serve_peers(listener, shard.clone()))
            });
            if let Some((startup, ready)) = startup {
                run_startup(&shard, startup).await;
                let _ = ready.send(());
            }
            serving_http.await;
            serving_upload.await;
            if let Some(serving) = serving_transport {
                serving.await;
            }
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
    for dir in &startup.functions_dirs {
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

fn write_ready_file(path: &Path, addrs: Addrs) -> Result<()> {
    let body = serde_json::json!({
        "http": addrs.http.to_string(),
        "upload": addrs.upload.to_string(),
        "transport": addrs.transport.map(|a| a.to_string()),
        "pid": std::process::id(),
    });
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

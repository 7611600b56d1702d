//! Starting a node: the executor, registry and stores built once, one
//! pinned shard per core (`machine` says which), the listeners bound, the
//! start-up functions loaded, and the ready file written.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use glommio::{LocalExecutorBuilder, PoolPlacement};

use crate::budget::{ByteBudget, Quotas};
use crate::config::Config;
use crate::exec::Executor;
use crate::http::{self, Api};
use crate::invocation::{AsyncCalls, CallIds};
use crate::limits;
use crate::machine::{check_prerequisites, topology, Core};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::shard::{LocalShard, NodeShared};
use crate::stores::{plans, Plans};
use ferry_storage::{EmbeddedStore, StoreConfig};

/// Runs a node until the process is stopped.
pub fn run(config: Config) -> Result<()> {
    let cores = topology(config.cores)?;
    check_prerequisites(cores.len())?;
    let executor = Arc::new(
        Executor::new(
            config.limits.clone(),
            cores.len(),
            crate::host::add_to_linker,
        )?
        .with_sandbox(&config.data_dir.join("faasm"))?
        .with_after_call(crate::host::write_back),
    );
    let (registry, stale) = Registry::open(config.data_dir.join("functions"), &executor)?;
    let store_config = |dir: &str| StoreConfig {
        root: config.data_dir.join(dir),
        object_bytes_max: ferry_storage::limits::OBJECT_BYTES_MAX,
        key_bytes_max: ferry_storage::limits::KEY_BYTES_MAX,
        user_bytes_max: ferry_storage::limits::USER_BYTES_MAX,
    };
    let plans = plans(
        &config,
        || EmbeddedStore::open(store_config("objects")).context("opening the object store"),
        || EmbeddedStore::open(store_config("state")).context("opening the state store"),
    )?;
    let placement = plans.placement.clone();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("ferry-wasi")
        .enable_all()
        .build()
        .context("starting the WASI helper runtime")?;
    let node = Arc::new(NodeShared {
        executor: executor.clone(),
        registry,
        metrics: Metrics::new(executor.ticker.ticks())?,
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
    executor.ticker.start()?;

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
        let stores = plans.clone();
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
    plans: Plans,
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
            let stores = match plans.for_shard(&node, id) {
                Ok(stores) => stores,
                Err(error) => {
                    let _ = bound.send(Err(error));
                    return;
                }
            };
            let shard = match LocalShard::install(id, node.clone(), stores) {
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
    let _working = http::io::Working::begin();
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

//! [`Placement`]: which storage node holds an object, so that a compute node
//! can send a funclet to it.
//!
//! Two kinds, matching the two stores:
//!
//! - **Rendezvous** (embedded store): highest-random-weight hashing of
//!   (user, key) over the storage nodes named in the cluster config. Every
//!   node computes the same answer from the same list, with no state and no
//!   round trip; adding an n-th node moves only the ~1/n of the keys that the
//!   new node now wins, and removing one moves only that node's keys.
//! - **Ceph**: the storage node on the host of the object's primary OSD, as
//!   the monitors' OSD map says (`osd map POOL OBJECT`; the host is the
//!   CRUSH host bucket the OSD sits under, `osd tree`). Answers are cached
//!   per object and tagged with the OSD map epoch they were computed at; a
//!   thread of the placement's own checks the epoch every `epoch_check_ms`
//!   and any change invalidates every cached answer. A cached lookup costs a
//!   hash-map probe and an atomic load, no round trip.
//!
//! [`Placement`] is shared by the node's shards; each shard asks through its
//! own [`LocalPlacement`], which holds that shard's cache, so no lookup takes
//! a lock.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::StorageError;
use crate::limits::{PLACEMENT_CACHE_ENTRIES_MAX, PLACEMENT_EPOCH_CHECK_MS};
use crate::rados::{names, RadosStore};

/// Where an object lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location<'a> {
    /// The storage node that holds it (a name from the placement's nodes).
    pub node: &'a str,
    /// For Ceph placement: the object's placement group (`1.4`) and acting
    /// primary OSD, as `ceph osd map` prints them.
    pub ceph: Option<CephLocation>,
}

/// The Ceph part of a [`Location`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CephLocation {
    pub pg: Rc<str>,
    pub primary_osd: i32,
    /// The OSD map epoch the answer was computed at.
    pub epoch: u64,
}

/// Settings of a Ceph [`Placement`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CephPlacementConfig {
    /// The storage nodes, each with the CRUSH host its OSDs sit under.
    pub nodes: Vec<CephNode>,
    /// OSDs placed on a node by the config instead of by host name.
    pub osd_nodes: BTreeMap<i32, String>,
    /// How often the placement's thread reads the OSD map epoch.
    pub epoch_check_ms: u64,
    /// Most objects one shard's cache remembers.
    pub cache_entries_max: usize,
}

impl CephPlacementConfig {
    /// A config for `nodes` with the defaults of [`crate::limits`].
    pub fn new(nodes: Vec<CephNode>) -> Self {
        CephPlacementConfig {
            nodes,
            osd_nodes: BTreeMap::new(),
            epoch_check_ms: PLACEMENT_EPOCH_CHECK_MS,
            cache_entries_max: PLACEMENT_CACHE_ENTRIES_MAX,
        }
    }
}

/// A storage node of a Ceph deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CephNode {
    /// The node's name in the cluster config.
    pub name: String,
    /// The host its Ceph OSDs run on.
    pub host: String,
}

/// Which storage node holds an object. Cheap to clone and shared by the
/// shards; each shard looks up through [`Placement::local`].
#[derive(Clone)]
pub struct Placement {
    kind: Arc<Kind>,
}

enum Kind {
    Rendezvous(Rendezvous),
    Ceph(CephMap),
}

impl std::fmt::Debug for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &*self.kind {
            Kind::Rendezvous(_) => "rendezvous",
            Kind::Ceph(_) => "ceph",
        };
        f.debug_struct("Placement")
            .field("kind", &kind)
            .field("nodes", &self.nodes())
            .finish()
    }
}

impl Placement {
    /// Rendezvous hashing over `nodes`, the storage nodes' names in the
    /// cluster config (order does not matter).
    pub fn rendezvous(nodes: Vec<String>) -> Result<Self, StorageError> {
        check_node_names(nodes.iter())?;
        Ok(Placement {
            kind: Arc::new(Kind::Rendezvous(Rendezvous::new(nodes))),
        })
    }

    /// Placement by primary OSD, in `store`'s pool. Synchronous and
    /// blocking (two monitor commands): it runs once at node start. Starts
    /// the thread that watches the OSD map epoch; it stops when the last
    /// clone of the placement is dropped.
    pub fn ceph(store: &RadosStore, config: CephPlacementConfig) -> Result<Self, StorageError> {
        let CephPlacementConfig {
            nodes,
            osd_nodes,
            epoch_check_ms,
            cache_entries_max,
        } = config;
        check_node_names(nodes.iter().map(|node| &node.name))?;
        let names: Vec<String> = nodes.iter().map(|node| node.name.clone()).collect();
        let index_of = |name: &str| names.iter().position(|n| n == name);
        let mut host_nodes = HashMap::new();
        for node in &nodes {
            if let Some(other) = host_nodes.insert(node.host.clone(), node.name.clone()) {
                return Err(StorageError::PlacementConfig {
                    reason: format!(
                        "storage nodes {other} and {} both run on host {}",
                        node.name, node.host
                    ),
                });
            }
        }
        let mut osd_overrides = HashMap::new();
        for (osd, name) in osd_nodes {
            let index = index_of(&name).ok_or_else(|| StorageError::PlacementConfig {
                reason: format!("osd.{osd} is placed on {name}, which is not a storage node"),
            })?;
            osd_overrides.insert(osd, index);
        }
        let host_nodes = host_nodes
            .into_iter()
            .filter_map(|(host, name)| index_of(&name).map(|i| (host, i)))
            .collect();

        let shared = Arc::new(CephShared {
            pool: store.pool().to_string(),
            nodes: names,
            host_nodes,
            osd_overrides,
            osd_hosts: RwLock::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            cache_entries_max: cache_entries_max.max(1),
        });
        let cluster = store.cluster().clone();
        let epoch = osd_epoch(&cluster)?;
        shared.refresh_osd_hosts(&cluster)?;
        shared.epoch.store(epoch, Ordering::Release);

        let (stop, stopped) = mpsc::channel::<()>();
        let watched = shared.clone();
        let interval = Duration::from_millis(epoch_check_ms.max(1));
        let watcher = std::thread::Builder::new()
            .name("ferry-osdmap".to_string())
            .spawn(move || {
                // Ends when the placement drops `stop`.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    watched.check_epoch(&cluster);
                }
            })
            .map_err(|e| StorageError::io("starting the OSD map thread for", store.pool(), e))?;
        tracing::info!(
            pool = %store.pool(),
            epoch,
            nodes = ?shared.nodes,
            "ceph placement ready"
        );
        Ok(Placement {
            kind: Arc::new(Kind::Ceph(CephMap {
                store: store.clone(),
                shared,
                watcher: Some((stop, watcher)),
            })),
        })
    }

    /// The storage nodes, in config order.
    pub fn nodes(&self) -> &[String] {
        match &*self.kind {
            Kind::Rendezvous(rendezvous) => &rendezvous.nodes,
            Kind::Ceph(map) => &map.shared.nodes,
        }
    }

    /// The OSD map epoch the placement currently goes by (Ceph only).
    pub fn epoch(&self) -> Option<u64> {
        match &*self.kind {
            Kind::Rendezvous(_) => None,
            Kind::Ceph(map) => Some(map.shared.epoch.load(Ordering::Acquire)),
        }
    }

    /// A lookup handle for one shard, with its own cache.
    pub fn local(&self) -> LocalPlacement {
        LocalPlacement {
            placement: self.clone(),
            cache: RefCell::new(HashMap::new()),
        }
    }
}

// Shards on different threads share one placement.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Placement>();
};

/// One shard's view of a [`Placement`]. Never crosses threads.
pub struct LocalPlacement {
    placement: Placement,
    /// Object name -> answer, for Ceph placement.
    cache: RefCell<HashMap<String, Cached>>,
}

struct Cached {
    node: usize,
    pg: Rc<str>,
    primary_osd: i32,
    epoch: u64,
}

impl LocalPlacement {
    /// The storage node that holds `key` of `user`. Rendezvous placement
    /// answers at once; Ceph placement from the shard's cache while the OSD
    /// map epoch has not moved, and otherwise asks the monitors (one round
    /// trip, on the store's worker threads).
    pub async fn locate(&self, user: &str, key: &[u8]) -> Result<Location<'_>, StorageError> {
        let map = match &*self.placement.kind {
            Kind::Rendezvous(rendezvous) => {
                return Ok(Location {
                    node: &rendezvous.nodes[rendezvous.node(user, key)],
                    ceph: None,
                })
            }
            Kind::Ceph(map) => map,
        };
        let name = names::object_name(user, key);
        let epoch = map.shared.epoch.load(Ordering::Acquire);
        if let Some(hit) = self.cache.borrow().get(&name) {
            if hit.epoch >= epoch {
                return Ok(map.location(hit));
            }
        }
        let found = map.lookup(name.clone()).await?;
        let mut cache = self.cache.borrow_mut();
        if cache.len() >= map.shared.cache_entries_max {
            // Simple and bounded: start over rather than track recency.
            cache.clear();
        }
        let location = map.location(&found);
        cache.insert(name, found);
        Ok(location)
    }
}

/// Rendezvous hashing: each key goes to the node with the highest weight
/// `mix(hash(user, key) ^ seed(node))`.
struct Rendezvous {
    nodes: Vec<String>,
    seeds: Vec<u64>,
}

impl Rendezvous {
    fn new(nodes: Vec<String>) -> Self {
        let seeds = nodes
            .iter()
            .map(|node| {
                let digest = Sha256::new()
                    .chain_update(b"ferry-node\0")
                    .chain_update(node.as_bytes())
                    .finalize();
                first_u64(&digest)
            })
            .collect();
        Rendezvous { nodes, seeds }
    }

    /// Index of the node that holds `key` of `user`.
    fn node(&self, user: &str, key: &[u8]) -> usize {
        let digest = Sha256::new()
            .chain_update((user.len() as u64).to_le_bytes())
            .chain_update(user.as_bytes())
            .chain_update(key)
            .finalize();
        let hash = first_u64(&digest);
        let mut best = (0usize, 0u64);
        for (i, seed) in self.seeds.iter().enumerate() {
            let weight = mix64(hash ^ seed);
            // Ties (2^-64 per pair) go to the lower index.
            if i == 0 || weight > best.1 {
                best = (i, weight);
            }
        }
        best.0
    }
}

fn first_u64(digest: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

/// A 64-bit finalizer (splitmix64's): every input bit flips each output bit
/// with probability ~1/2, so weights of different nodes are independent.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn check_node_names<'a>(names: impl Iterator<Item = &'a String>) -> Result<(), StorageError> {
    let mut seen = std::collections::HashSet::new();
    for name in names {
        if name.is_empty() {
            return Err(StorageError::PlacementConfig {
                reason: "a storage node has an empty name".to_string(),
            });
        }
        if !seen.insert(name) {
            return Err(StorageError::PlacementConfig {
                reason: format!("storage node {name} is listed twice"),
            });
        }
    }
    if seen.is_empty() {
        return Err(StorageError::PlacementConfig {
            reason: "no storage nodes".to_string(),
        });
    }
    Ok(())
}

/// Ceph placement: the shared state and the epoch watcher.
struct CephMap {
    store: RadosStore,
    shared: Arc<CephShared>,
    /// Dropping the sender stops the thread.
    watcher: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

impl Drop for CephMap {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.watcher.take() {
            drop(stop);
            if thread.join().is_err() {
                tracing::error!("the OSD map thread panicked");
            }
        }
    }
}

struct CephShared {
    pool: String,
    nodes: Vec<String>,
    /// Host name -> node index.
    host_nodes: HashMap<String, usize>,
    /// OSD -> node index, from the config.
    osd_overrides: HashMap<i32, usize>,
    /// OSD -> the CRUSH host it sits under, from `osd tree`; refreshed
    /// when the epoch moves. Read only on a cache miss.
    osd_hosts: RwLock<HashMap<i32, String>>,
    /// The newest OSD map epoch seen.
    epoch: AtomicU64,
    cache_entries_max: usize,
}

impl CephMap {
    fn location<'a>(&'a self, cached: &Cached) -> Location<'a> {
        Location {
            node: &self.shared.nodes[cached.node],
            ceph: Some(CephLocation {
                pg: cached.pg.clone(),
                primary_osd: cached.primary_osd,
                epoch: cached.epoch,
            }),
        }
    }

    /// Asks the monitors where object `name` lives.
    async fn lookup(&self, name: String) -> Result<Cached, StorageError> {
        let shared = self.shared.clone();
        let (pg, primary_osd, epoch) = self
            .store
            .call("locating object", &name, {
                let name = name.clone();
                move |cluster| Ok(shared.osd_map(cluster, &name))
            })
            .await??;
        self.shared.epoch.fetch_max(epoch, Ordering::AcqRel);
        let node = match self.shared.node_of(primary_osd) {
            Some(Ok(node)) => node,
            // An OSD the placement has not seen yet (added since the last
            // refresh): read the OSD list once more.
            None => {
                let shared = self.shared.clone();
                self.store
                    .call("reading the CRUSH hosts for", &name, move |cluster| {
                        Ok(shared.refresh_osd_hosts(cluster))
                    })
                    .await??;
                match self.shared.node_of(primary_osd) {
                    Some(Ok(node)) => node,
                    Some(Err(host)) => return Err(no_node(name, primary_osd, host)),
                    None => return Err(no_node(name, primary_osd, String::new())),
                }
            }
            Some(Err(host)) => return Err(no_node(name, primary_osd, host)),
        };
        Ok(Cached {
            node,
            pg: pg.into(),
            primary_osd,
            epoch,
        })
    }
}

fn no_node(object: String, osd: i32, host: String) -> StorageError {
    StorageError::NoNodeForOsd { object, osd, host }
}

impl CephShared {
    /// The node of an OSD: `Some(Ok(index))`, `Some(Err(host))` when no
    /// node runs on its host, `None` when the OSD is unknown.
    fn node_of(&self, osd: i32) -> Option<Result<usize, String>> {
        if let Some(&node) = self.osd_overrides.get(&osd) {
            return Some(Ok(node));
        }
        let hosts = self
            .osd_hosts
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let host = hosts.get(&osd)?;
        Some(
            self.host_nodes
                .get(host)
                .copied()
                .ok_or_else(|| host.clone()),
        )
    }

    /// `osd map POOL NAME`: (pg, acting primary, epoch). Blocking.
    fn osd_map(
        &self,
        cluster: &crate::rados::Cluster,
        name: &str,
    ) -> Result<(String, i32, u64), StorageError> {
        let command = serde_json::json!({
            "prefix": "osd map",
            "pool": self.pool,
            "object": name,
            "format": "json",
        });
        let answer = mon_json(cluster, "mapping object", name, &command)?;
        let bad = |what: &str| StorageError::Rados {
            op: "mapping object",
            object: name.to_string(),
            code: -libc::EBADMSG,
            message: format!("the monitor's osd map answer has no {what}"),
        };
        let epoch = answer["epoch"].as_u64().ok_or_else(|| bad("epoch"))?;
        let pg = answer["pgid"]
            .as_str()
            .ok_or_else(|| bad("pgid"))?
            .to_string();
        let primary = answer["acting_primary"]
            .as_i64()
            .ok_or_else(|| bad("acting_primary"))?;
        if primary < 0 {
            return Err(StorageError::Rados {
                op: "mapping object",
                object: name.to_string(),
                code: -libc::EAGAIN,
                message: format!("placement group {pg} has no OSD up to serve it"),
            });
        }
        let primary = i32::try_from(primary).map_err(|_| bad("valid acting_primary"))?;
        Ok((pg, primary, epoch))
    }

    /// Reads the CRUSH host bucket every OSD sits under (`osd tree`): the
    /// host CRUSH spreads replicas over, which is the machine's short host
    /// name unless the OSD's `crush location` says otherwise (as in
    /// deploy/ceph/start.sh, where each OSD has a host of its own). Blocking.
    fn refresh_osd_hosts(&self, cluster: &crate::rados::Cluster) -> Result<(), StorageError> {
        let command = serde_json::json!({ "prefix": "osd tree", "format": "json" });
        let answer = mon_json(
            cluster,
            "reading the CRUSH hosts of pool",
            &self.pool,
            &command,
        )?;
        let mut hosts = HashMap::new();
        let buckets = answer["nodes"].as_array().into_iter().flatten();
        for bucket in buckets.filter(|node| node["type"] == "host") {
            let Some(host) = bucket["name"].as_str() else {
                continue;
            };
            // A host's children are OSDs (ids >= 0).
            let children = bucket["children"].as_array().into_iter().flatten();
            for id in children.filter_map(|child| i32::try_from(child.as_i64()?).ok()) {
                if id >= 0 {
                    hosts.insert(id, host.to_string());
                }
            }
        }
        *self
            .osd_hosts
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = hosts;
        Ok(())
    }

    /// One tick of the watcher thread.
    fn check_epoch(&self, cluster: &crate::rados::Cluster) {
        let epoch = match osd_epoch(cluster) {
            Ok(epoch) => epoch,
            Err(error) => {
                // Cached answers stay in use; the monitors will be back.
                tracing::warn!(%error, "could not read the OSD map epoch");
                return;
            }
        };
        if epoch <= self.epoch.load(Ordering::Acquire) {
            return;
        }
        // OSDs may have been added or moved: refresh hosts before the new
        // epoch makes the shards ask again.
        if let Err(error) = self.refresh_osd_hosts(cluster) {
            tracing::warn!(%error, "could not refresh OSD hosts");
        }
        self.epoch.fetch_max(epoch, Ordering::AcqRel);
    }
}

/// The OSD map's current epoch (`osd stat`). Blocking.
fn osd_epoch(cluster: &crate::rados::Cluster) -> Result<u64, StorageError> {
    let command = serde_json::json!({ "prefix": "osd stat", "format": "json" });
    let answer = mon_json(cluster, "reading the osd map epoch", "", &command)?;
    answer["epoch"].as_u64().ok_or_else(|| StorageError::Rados {
        op: "reading the osd map epoch",
        object: String::new(),
        code: -libc::EBADMSG,
        message: "the monitor's osd stat answer has no epoch".to_string(),
    })
}

fn mon_json(
    cluster: &crate::rados::Cluster,
    op: &'static str,
    object: &str,
    command: &serde_json::Value,
) -> Result<serde_json::Value, StorageError> {
    let out = cluster
        .mon_command(&command.to_string())
        .map_err(|(code, status)| StorageError::Rados {
            op,
            object: object.to_string(),
            code,
            message: if status.is_empty() {
                std::io::Error::from_raw_os_error(code.saturating_neg()).to_string()
            } else {
                status
            },
        })?;
    serde_json::from_slice(&out).map_err(|e| StorageError::Rados {
        op,
        object: object.to_string(),
        code: -libc::EBADMSG,
        message: format!("the monitor's answer is not JSON: {e}"),
    })
}

#[cfg(test)]
mod tests;

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
use std::time::Duration;

mod ceph;
mod rendezvous;

use ceph::{osd_epoch, CephMap, CephShared};
use rendezvous::{check_node_names, Rendezvous};

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

#[cfg(test)]
mod tests;

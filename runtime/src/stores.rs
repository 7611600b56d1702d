//! Which stores a node's shards reach objects through: the embedded store
//! or Ceph on this node, or, on a compute node of an embedded-store
//! cluster, the storage nodes' stores over the transport; and the
//! cluster's placement of objects.
//!
//! Faasm's state: every node keeps a state store of its own (a second
//! embedded store, or on Ceph the pool's `ferry-state` namespace), which
//! serves the transport's state requests. Where a node's calls reach state
//! follows the objects on an embedded-store cluster: this node's own store
//! where objects are local, the storage node placement names for (user,
//! key) where they are remote. On Ceph every node sees the one RADOS
//! namespace, but writes to one value must be applied by one node (so
//! that updates never interleave, `state_store.rs`): on a Ceph cluster
//! with storage nodes, calls reach each value through the storage node
//! rendezvous hashing names for it, which reads and writes RADOS.

use anyhow::{anyhow, Context, Result};

use crate::config::{Backend, Config, PeerNode, Role};
use crate::objects::{Objects, RemoteObjects};
use crate::shard::{NodeShared, ShardStores};
use ferry_storage::{
    CephNode, CephPlacementConfig, EmbeddedStore, ObjectStore, Placement, RadosConfig, RadosStore,
};
use ferry_transport::{PeerPool, Store, TransportConfig};
use std::cell::{Cell, OnceCell};
use std::rc::Rc;

/// The RADOS namespace of Faasm's state values, beside the objects in the
/// default namespace of the same pool.
pub const CEPH_STATE_NAMESPACE: &str = "ferry-state";

/// Where one kind of store is for this node's calls; each shard makes its
/// own handle from it.
#[derive(Clone)]
pub enum ObjectsPlan {
    Local(ObjectStore),
    Remote {
        nodes: Vec<PeerNode>,
        placement: Placement,
        transport: TransportConfig,
    },
}

/// A node's stores: where its calls reach objects and state, and the
/// state store it keeps itself.
#[derive(Clone)]
pub struct Plans {
    pub objects: ObjectsPlan,
    pub state: ObjectsPlan,
    pub state_here: ObjectStore,
    /// The cluster's placement of objects (None for a node started alone).
    pub placement: Option<Placement>,
}

impl Plans {
    /// A shard's handles. Remote handles share the shard's transport pool
    /// and write ids, and each request names the store it addresses.
    pub fn for_shard(&self, node: &NodeShared, shard: usize) -> Result<ShardStores> {
        let pool: OnceCell<Rc<PeerPool>> = OnceCell::new();
        // Node tag high, shard next: unique across the cluster.
        let next_write_id = Rc::new(Cell::new(
            (u64::from(node.name_tag) << 32) | ((shard as u64) << 24),
        ));
        let handle = |plan: &ObjectsPlan, store: Store| -> Result<Objects> {
            Ok(match plan {
                ObjectsPlan::Local(local) => Objects::Local(local.clone()),
                ObjectsPlan::Remote {
                    nodes,
                    placement,
                    transport,
                } => {
                    let pool = match pool.get() {
                        Some(pool) => pool.clone(),
                        None => {
                            let made = Rc::new(
                                PeerPool::new(transport.clone())
                                    .map_err(|e| anyhow!("starting the transport pool: {e}"))?,
                            );
                            pool.get_or_init(|| made).clone()
                        }
                    };
                    Objects::Remote(RemoteObjects {
                        nodes: nodes.clone(),
                        placement: placement.local(),
                        pool,
                        next_write_id: next_write_id.clone(),
                        store,
                    })
                }
            })
        };
        Ok(ShardStores {
            objects: handle(&self.objects, Store::Objects)?,
            state: handle(&self.state, Store::State)?,
            state_here: Objects::Local(self.state_here.clone()),
        })
    }
}

/// Ceph everywhere; otherwise the local embedded store on nodes that hold
/// objects, and the storage nodes' stores (placed by rendezvous hashing)
/// on compute nodes. Placement: rendezvous over the storage nodes, or
/// Ceph's primary OSD mapped to the storage node on that OSD's host.
/// Faasm's state as the module says.
pub fn plans(
    config: &Config,
    embedded: impl FnOnce() -> Result<EmbeddedStore>,
    embedded_state: impl FnOnce() -> Result<EmbeddedStore>,
) -> Result<Plans> {
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
            let state_here = ObjectStore::Rados(
                RadosStore::connect(RadosConfig {
                    namespace: CEPH_STATE_NAMESPACE.to_owned(),
                    ..RadosConfig::new(conf.clone(), pool.clone())
                })
                .with_context(|| format!("connecting to Ceph pool {pool}'s state namespace"))?,
            );
            let state = if storage_nodes.is_empty() {
                ObjectsPlan::Local(state_here.clone())
            } else {
                ObjectsPlan::Remote {
                    nodes: storage_nodes.iter().map(|peer| (*peer).clone()).collect(),
                    placement: rendezvous()?,
                    transport: checked_transport(config)?,
                }
            };
            Ok(Plans {
                objects: ObjectsPlan::Local(ObjectStore::Rados(store)),
                state,
                state_here,
                placement,
            })
        }
        (Backend::Embedded, role) if role.holds_objects() => {
            let placement = if storage_nodes.is_empty() {
                None
            } else {
                Some(rendezvous()?)
            };
            let state_here = ObjectStore::Embedded(embedded_state()?);
            Ok(Plans {
                objects: ObjectsPlan::Local(ObjectStore::Embedded(embedded()?)),
                state: ObjectsPlan::Local(state_here.clone()),
                state_here,
                placement,
            })
        }
        (Backend::Embedded, Role::Compute | Role::Storage | Role::All) => {
            let nodes: Vec<PeerNode> = storage_nodes.iter().map(|peer| (*peer).clone()).collect();
            let placement = rendezvous()?;
            let transport = checked_transport(config)?;
            tracing::info!(storage_nodes = nodes.len(), "objects on the storage nodes");
            let remote = ObjectsPlan::Remote {
                nodes,
                placement: placement.clone(),
                transport,
            };
            Ok(Plans {
                objects: remote.clone(),
                state: remote,
                // Kept for the transport's state requests; a compute node
                // gets none, so it stays empty.
                state_here: ObjectStore::Embedded(embedded_state()?),
                placement: Some(placement),
            })
        }
    }
}

fn checked_transport(config: &Config) -> Result<TransportConfig> {
    let transport = config.transport();
    transport
        .validate()
        .map_err(|e| anyhow!("transport config: {e}"))?;
    Ok(transport)
}

//! Which stores a node's shards reach objects through: the embedded store
//! or Ceph on this node, or, on a compute node of an embedded-store
//! cluster, the storage nodes' stores over the transport; and the
//! cluster's placement of objects. Faasm's state follows the same plan:
//! this node's state store where objects are local, the state store of the
//! storage node placement names for (user, key) where they are remote.

use anyhow::{anyhow, Context, Result};

use crate::config::{Backend, Config, PeerNode, Role};
use crate::objects::{Objects, RemoteObjects};
use crate::shard::NodeShared;
use ferry_storage::{
    CephNode, CephPlacementConfig, EmbeddedStore, ObjectStore, Placement, RadosConfig, RadosStore,
};
use ferry_transport::{PeerPool, Store, TransportConfig};
use std::cell::Cell;
use std::rc::Rc;

/// Where this node's objects are; each shard makes its own handle from it.
#[derive(Clone)]
pub enum ObjectsPlan {
    Local(ObjectStore),
    Remote {
        nodes: Vec<PeerNode>,
        placement: Placement,
        transport: TransportConfig,
    },
}

impl ObjectsPlan {
    /// A shard's handles on its objects and on Faasm's state: `state` is
    /// this node's state store, used where objects are local too. Remote
    /// handles share the shard's transport pool and write ids, and place
    /// (user, key) alike.
    pub fn for_shard(
        &self,
        node: &NodeShared,
        shard: usize,
        state: ObjectStore,
    ) -> Result<(Objects, Objects)> {
        Ok(match self {
            ObjectsPlan::Local(store) => (Objects::Local(store.clone()), Objects::Local(state)),
            ObjectsPlan::Remote {
                nodes,
                placement,
                transport,
            } => {
                let pool = Rc::new(
                    PeerPool::new(transport.clone())
                        .map_err(|e| anyhow!("starting the transport pool: {e}"))?,
                );
                // Node tag high, shard next: unique across the cluster.
                let next_write_id = Rc::new(Cell::new(
                    (u64::from(node.name_tag) << 32) | ((shard as u64) << 24),
                ));
                let remote = |store| {
                    Objects::Remote(RemoteObjects {
                        nodes: nodes.clone(),
                        placement: placement.local(),
                        pool: pool.clone(),
                        next_write_id: next_write_id.clone(),
                        store,
                    })
                };
                (remote(Store::Objects), remote(Store::State))
            }
        })
    }
}

/// Ceph everywhere; otherwise the local embedded store on nodes that hold
/// objects, and the storage nodes' stores (placed by rendezvous hashing)
/// on compute nodes. Also returns the cluster's placement (None for a node
/// started alone): rendezvous over the storage nodes, or Ceph's primary
/// OSD mapped to the storage node on that OSD's host.
pub fn objects_plan(
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
            let nodes: Vec<PeerNode> = storage_nodes.iter().map(|peer| (*peer).clone()).collect();
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

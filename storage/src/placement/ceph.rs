//! Ceph placement: the storage node on the CRUSH host of an object's
//! primary OSD, from the monitors' OSD map, and the thread that watches the
//! map's epoch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use super::{Cached, CephLocation, Location};
use crate::error::StorageError;
use crate::rados::RadosStore;

/// Ceph placement: the shared state and the epoch watcher.
pub(super) struct CephMap {
    pub(super) store: RadosStore,
    pub(super) shared: Arc<CephShared>,
    /// Dropping the sender stops the thread.
    pub(super) watcher: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
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

pub(super) struct CephShared {
    pub(super) pool: String,
    pub(super) nodes: Vec<String>,
    /// Host name -> node index.
    pub(super) host_nodes: HashMap<String, usize>,
    /// OSD -> node index, from the config.
    pub(super) osd_overrides: HashMap<i32, usize>,
    /// OSD -> the CRUSH host it sits under, from `osd tree`; refreshed
    /// when the epoch moves. Read only on a cache miss.
    pub(super) osd_hosts: RwLock<HashMap<i32, String>>,
    /// The newest OSD map epoch seen.
    pub(super) epoch: AtomicU64,
    pub(super) cache_entries_max: usize,
}

impl CephMap {
    pub(super) fn location<'a>(&'a self, cached: &Cached) -> Location<'a> {
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
    pub(super) async fn lookup(&self, name: String) -> Result<Cached, StorageError> {
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

pub(super) fn no_node(object: String, osd: i32, host: String) -> StorageError {
    StorageError::NoNodeForOsd { object, osd, host }
}

impl CephShared {
    /// The node of an OSD: `Some(Ok(index))`, `Some(Err(host))` when no
    /// node runs on its host, `None` when the OSD is unknown.
    pub(super) fn node_of(&self, osd: i32) -> Option<Result<usize, String>> {
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
    pub(super) fn osd_map(
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
    pub(super) fn refresh_osd_hosts(
        &self,
        cluster: &crate::rados::Cluster,
    ) -> Result<(), StorageError> {
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
    pub(super) fn check_epoch(&self, cluster: &crate::rados::Cluster) {
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
pub(super) fn osd_epoch(cluster: &crate::rados::Cluster) -> Result<u64, StorageError> {
    let command = serde_json::json!({ "prefix": "osd stat", "format": "json" });
    let answer = mon_json(cluster, "reading the osd map epoch", "", &command)?;
    answer["epoch"].as_u64().ok_or_else(|| StorageError::Rados {
        op: "reading the osd map epoch",
        object: String::new(),
        code: -libc::EBADMSG,
        message: "the monitor's osd stat answer has no epoch".to_string(),
    })
}

pub(super) fn mon_json(
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

//! The other nodes of the cluster as one shard reaches them: their
//! entries in the cluster config, by name, and this shard's pooled
//! transport connections to them.

use anyhow::{anyhow, Result};

use crate::config::{Config, PeerNode};
use ferry_transport::PeerPool;

pub struct Peers {
    /// Every node of the cluster but this one.
    pub nodes: Vec<PeerNode>,
    pub pool: PeerPool,
}

impl Peers {
    /// None for a node started alone.
    pub fn new(config: &Config) -> Result<Option<Peers>> {
        let nodes: Vec<PeerNode> = config
            .cluster
            .iter()
            .filter(|peer| peer.name != config.name)
            .cloned()
            .collect();
        if nodes.is_empty() {
            return Ok(None);
        }
        let pool = PeerPool::new(config.transport())
            .map_err(|e| anyhow!("starting the transport pool: {e}"))?;
        Ok(Some(Peers { nodes, pool }))
    }

    pub fn by_name(&self, name: &str) -> Option<&PeerNode> {
        self.nodes.iter().find(|node| node.name == name)
    }
}

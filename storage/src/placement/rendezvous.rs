//! Rendezvous (highest-random-weight) hashing of (user, key) over the
//! storage nodes the cluster config names: the placement of the embedded
//! store.

use sha2::{Digest, Sha256};

use crate::error::StorageError;

/// Rendezvous hashing: each key goes to the node with the highest weight
/// `mix(hash(user, key) ^ seed(node))`.
pub(super) struct Rendezvous {
    pub(super) nodes: Vec<String>,
    pub(super) seeds: Vec<u64>,
}

impl Rendezvous {
    pub(super) fn new(nodes: Vec<String>) -> Self {
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
    pub(super) fn node(&self, user: &str, key: &[u8]) -> usize {
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

pub(super) fn first_u64(digest: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

/// A 64-bit finalizer (splitmix64's): every input bit flips each output bit
/// with probability ~1/2, so weights of different nodes are independent.
pub(super) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub(super) fn check_node_names<'a>(
    names: impl Iterator<Item = &'a String>,
) -> Result<(), StorageError> {
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

//! Peers prove the cluster secret to each other in Hello; the secret itself
//! never crosses the wire.
//!
//! The exchange (both ends hold the secret `K`):
//! 1. connecting node -> Hello{nonce: Nc}
//! 2. accepting node  -> Hello{nonce: Ns, proof: HMAC(K, "server" | Nc | Ns | names)}
//! 3. connecting node checks that proof, then -> Hello{proof: HMAC(K, "client" | Nc | Ns | names)}
//! 4. accepting node checks it and answers Hello (its RDMA endpoint, if any);
//!    only then does it read requests.
//!
//! Fresh 32-byte nonces on both sides make every proof single-use, so a
//! recorded handshake cannot be replayed, and the role label keeps a
//! node's answer from serving as a proof in the other direction. Either
//! end that sees a missing or wrong proof closes the connection: a node
//! with the secret neither serves nor sends requests to a peer without it.
//! This authenticates the handshake, not each frame: what follows is plain
//! TCP (or RDMA), so the cluster network itself must be trusted against
//! on-path tampering.

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::TransportError;
use crate::limits;

/// A Hello nonce: 32 random bytes.
pub type Nonce = [u8; 32];
/// HMAC-SHA256 of a handshake under the cluster secret.
pub type Proof = [u8; 32];

/// The secret every node of a cluster shares. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct ClusterSecret(Arc<[u8]>);

impl ClusterSecret {
    /// Checks the length: at least `CLUSTER_SECRET_BYTES_MIN` (guessing it
    /// must be out of reach), at most `CLUSTER_SECRET_BYTES_MAX`.
    pub fn new(bytes: &[u8]) -> Result<ClusterSecret, TransportError> {
        if !(limits::CLUSTER_SECRET_BYTES_MIN..=limits::CLUSTER_SECRET_BYTES_MAX)
            .contains(&bytes.len())
        {
            return Err(TransportError::Config {
                reason: format!(
                    "the cluster secret must be {}..={} bytes, is {} (e.g. `openssl rand -hex 32`)",
                    limits::CLUSTER_SECRET_BYTES_MIN,
                    limits::CLUSTER_SECRET_BYTES_MAX,
                    bytes.len()
                ),
            });
        }
        Ok(ClusterSecret(bytes.into()))
    }

    /// The proof `role` sends for this handshake.
    pub(crate) fn prove(&self, role: Role, handshake: &Handshake<'_>) -> Proof {
        self.mac(role, handshake).finalize().into_bytes().into()
    }

    /// Whether `proof` is `role`'s proof of this handshake, compared in
    /// constant time.
    pub(crate) fn verify(&self, role: Role, handshake: &Handshake<'_>, proof: &Proof) -> bool {
        self.mac(role, handshake).verify_slice(proof).is_ok()
    }

    fn mac(&self, role: Role, handshake: &Handshake<'_>) -> Hmac<Sha256> {
        // HMAC takes a key of any length.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            unreachable!("HMAC accepts keys of every length")
        };
        let label: &[u8] = match role {
            Role::Client => b"ferry transport hello v1: client",
            Role::Server => b"ferry transport hello v1: server",
        };
        mac.update(label);
        mac.update(handshake.client_nonce);
        mac.update(handshake.server_nonce);
        // Length-prefixed, so no two name pairs encode alike.
        for name in [handshake.client_name, handshake.server_name] {
            mac.update(&(name.len() as u64).to_le_bytes());
            mac.update(name.as_bytes());
        }
        mac
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

/// Which end of a connection a proof comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// The connecting node.
    Client,
    /// The accepting node.
    Server,
}

/// What both proofs of one handshake cover.
pub(crate) struct Handshake<'a> {
    pub client_nonce: &'a Nonce,
    pub server_nonce: &'a Nonce,
    pub client_name: &'a str,
    pub server_name: &'a str,
}

/// A fresh nonce from the kernel's CSPRNG.
pub(crate) fn nonce() -> Result<Nonce, TransportError> {
    let mut nonce = [0u8; 32];
    getrandom::getrandom(&mut nonce).map_err(|error| {
        TransportError::io(
            "drawing a Hello nonce",
            std::io::Error::other(error.to_string()),
        )
    })?;
    Ok(nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake<'a>(client: &'a Nonce, server: &'a Nonce) -> Handshake<'a> {
        Handshake {
            client_nonce: client,
            server_nonce: server,
            client_name: "compute-0",
            server_name: "storage-0",
        }
    }

    #[test]
    fn proofs_bind_the_secret_the_role_and_both_nonces() -> Result<(), TransportError> {
        let secret = ClusterSecret::new(b"0123456789abcdef0123")?;
        let other = ClusterSecret::new(b"0123456789abcdef0124")?;
        let (a, b) = (nonce()?, nonce()?);
        assert_ne!(a, b, "nonces repeat");
        let proof = secret.prove(Role::Server, &handshake(&a, &b));
        assert!(secret.verify(Role::Server, &handshake(&a, &b), &proof));
        assert!(!secret.verify(Role::Client, &handshake(&a, &b), &proof));
        assert!(!secret.verify(Role::Server, &handshake(&b, &a), &proof));
        assert!(!other.verify(Role::Server, &handshake(&a, &b), &proof));
        let renamed = Handshake {
            client_name: "compute-1",
            ..handshake(&a, &b)
        };
        assert!(!secret.verify(Role::Server, &renamed, &proof));
        assert!(ClusterSecret::new(b"short").is_err());
        assert_eq!(format!("{secret:?}"), "ClusterSecret(..)");
        Ok(())
    }
}

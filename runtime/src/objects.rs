//! Where a shard's objects are: a store on this node (embedded or Ceph),
//! or the storage nodes of the cluster, reached over their object API.
//! Host functions and the HTTP object API go through [`Objects`] alone.

use std::net::SocketAddr;
use std::rc::Rc;

use bytes::Bytes;
use hyper::{Method, StatusCode};

use crate::remote::{PeerClient, PeerReply, RemoteError};
use ferry_storage::{LocalPlacement, ObjectInfo, ObjectStore, StorageError};

/// What an object operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("storage node {peer} answered {status}: {body}")]
    Peer {
        peer: String,
        status: u16,
        body: String,
    },
}

pub enum Objects {
    Local(ObjectStore),
    Remote(RemoteObjects),
}

/// Objects on the cluster's storage nodes, placed by rendezvous hashing
/// (every node computes the same answer; adding a node moves ~1/n keys).
pub struct RemoteObjects {
    /// (name, upload address) of every storage node, in config order.
    pub nodes: Vec<(String, SocketAddr)>,
    pub placement: LocalPlacement,
    pub client: Rc<PeerClient>,
}

/// Largest object body a remote read brings back (the store's own cap).
const REMOTE_BODY_BYTES_MAX: usize = ferry_storage::limits::OBJECT_BYTES_MAX as usize;

impl Objects {
    pub async fn put(&self, user: &str, key: &[u8], data: &[u8]) -> Result<(), ObjectError> {
        match self {
            Objects::Local(store) => Ok(store.put(user, key, data).await?),
            Objects::Remote(remote) => {
                let reply = remote
                    .send(user, key, Method::PUT, None, Bytes::copy_from_slice(data))
                    .await?;
                remote.expect(reply, &[StatusCode::OK]).map(|_| ())
            }
        }
    }

    pub async fn stat(&self, user: &str, key: &[u8]) -> Result<Option<u64>, ObjectError> {
        match self {
            Objects::Local(store) => Ok(store.stat(user, key).await?),
            Objects::Remote(remote) => {
                let reply = remote
                    .send(user, key, Method::GET, Some((0, 0)), Bytes::new())
                    .await?;
                if reply.1.status == StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                let total = reply.1.total_bytes;
                remote.expect(
                    reply,
                    &[
                        StatusCode::PARTIAL_CONTENT,
                        StatusCode::RANGE_NOT_SATISFIABLE,
                    ],
                )?;
                Ok(Some(total.unwrap_or(0)))
            }
        }
    }

    /// Reads from `offset` into `dst`; None when the object does not exist.
    pub async fn read_into(
        &self,
        user: &str,
        key: &[u8],
        offset: u64,
        dst: &mut [u8],
    ) -> Result<Option<usize>, ObjectError> {
        match self {
            Objects::Local(store) => Ok(store.read_into(user, key, offset, dst).await?),
            Objects::Remote(remote) => {
                if dst.is_empty() {
                    return Ok(self.stat(user, key).await?.map(|_| 0));
                }
                let last = offset + dst.len() as u64 - 1;
                let reply = remote
                    .send(user, key, Method::GET, Some((offset, last)), Bytes::new())
                    .await?;
                match reply.1.status {
                    StatusCode::NOT_FOUND => Ok(None),
                    StatusCode::RANGE_NOT_SATISFIABLE => Ok(Some(0)),
                    _ => {
                        let body =
                            remote.expect(reply, &[StatusCode::PARTIAL_CONTENT, StatusCode::OK])?;
                        let n = body.len().min(dst.len());
                        dst[..n].copy_from_slice(&body[..n]);
                        Ok(Some(n))
                    }
                }
            }
        }
    }

    pub async fn get(
        &self,
        user: &str,
        key: &[u8],
        offset: u64,
        len_max: u64,
    ) -> Result<Option<Vec<u8>>, ObjectError> {
        match self {
            Objects::Local(store) => Ok(store.get(user, key, offset, len_max).await?),
            Objects::Remote(_) => {
                let Some(size) = self.stat(user, key).await? else {
                    return Ok(None);
                };
                let len = size.saturating_sub(offset).min(len_max) as usize;
                let mut bytes = vec![0; len];
                let n = self
                    .read_into(user, key, offset, &mut bytes)
                    .await?
                    .unwrap_or(0);
                bytes.truncate(n);
                Ok(Some(bytes))
            }
        }
    }

    pub async fn delete(&self, user: &str, key: &[u8]) -> Result<bool, ObjectError> {
        match self {
            Objects::Local(store) => Ok(store.delete(user, key).await?),
            Objects::Remote(remote) => {
                let reply = remote
                    .send(user, key, Method::DELETE, None, Bytes::new())
                    .await?;
                if reply.1.status == StatusCode::NOT_FOUND {
                    return Ok(false);
                }
                remote.expect(reply, &[StatusCode::OK]).map(|_| true)
            }
        }
    }

    pub async fn list(&self, user: &str) -> Result<Vec<ObjectInfo>, ObjectError> {
        match self {
            Objects::Local(store) => Ok(store.list(user).await?),
            Objects::Remote(remote) => {
                let mut all = Vec::new();
                for (name, addr) in &remote.nodes {
                    let path = format!("/o/{user}/");
                    let reply = remote
                        .client
                        .request(
                            *addr,
                            Method::GET,
                            &path,
                            None,
                            Bytes::new(),
                            REMOTE_BODY_BYTES_MAX,
                        )
                        .await?;
                    if reply.status != StatusCode::OK {
                        return Err(ObjectError::Peer {
                            peer: name.clone(),
                            status: reply.status.as_u16(),
                            body: String::from_utf8_lossy(&reply.body).into_owned(),
                        });
                    }
                    let listed: Vec<serde_json::Value> = serde_json::from_slice(&reply.body)
                        .map_err(|e| ObjectError::Peer {
                            peer: name.clone(),
                            status: 200,
                            body: format!("unparsable listing: {e}"),
                        })?;
                    for entry in listed {
                        if let (Some(key), Some(size)) =
                            (entry["key"].as_str(), entry["size"].as_u64())
                        {
                            all.push(ObjectInfo {
                                key: key.as_bytes().to_vec(),
                                size_bytes: size,
                            });
                        }
                    }
                }
                all.sort_by(|a, b| a.key.cmp(&b.key));
                Ok(all)
            }
        }
    }
}

impl RemoteObjects {
    /// The storage node that holds (user, key).
    async fn node_for(&self, user: &str, key: &[u8]) -> Result<&(String, SocketAddr), ObjectError> {
        let location = self.placement.locate(user, key).await?;
        self.nodes
            .iter()
            .find(|(name, _)| name == location.node)
            .ok_or_else(|| ObjectError::Peer {
                peer: location.node.to_owned(),
                status: 0,
                body: "placement named a node the cluster config does not list".into(),
            })
    }

    async fn send(
        &self,
        user: &str,
        key: &[u8],
        method: Method,
        range: Option<(u64, u64)>,
        body: Bytes,
    ) -> Result<(String, PeerReply), ObjectError> {
        let (name, addr) = self.node_for(user, key).await?;
        let path = format!("/o/{user}/{}", encode_key(key));
        let reply = self
            .client
            .request(*addr, method, &path, range, body, REMOTE_BODY_BYTES_MAX)
            .await?;
        Ok((name.clone(), reply))
    }

    fn expect(
        &self,
        (peer, reply): (String, PeerReply),
        ok: &[StatusCode],
    ) -> Result<Bytes, ObjectError> {
        if ok.contains(&reply.status) {
            return Ok(reply.body);
        }
        Err(ObjectError::Peer {
            peer,
            status: reply.status.as_u16(),
            body: String::from_utf8_lossy(&reply.body).into_owned(),
        })
    }
}

/// Percent-encodes a key for a URL path, keeping `/` and unreserved bytes.
pub fn encode_key(key: &[u8]) -> String {
    let mut out = String::with_capacity(key.len());
    for byte in key {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(byte) {
            out.push(*byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

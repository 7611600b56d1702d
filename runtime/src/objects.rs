//! Where a shard's objects are: a store on this node (embedded or Ceph),
//! or the storage nodes of the cluster. Host functions and the HTTP object
//! API go through [`Objects`] alone.
//!
//! On a compute node of an embedded-store cluster, reads and writes go to
//! the storage node `Placement` names, over the transport
//! (`ObjectRead`/`ObjectWrite`, in frames of at most 16 MiB); listing and
//! deleting, which the transport's messages do not cover, go over that
//! node's object API.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};

use crate::remote::{PeerClient, PeerReply, RemoteError};
use crate::shard::LocalShard;
use ferry_storage::{LocalPlacement, ObjectInfo, ObjectStore, StorageError};
use ferry_transport::{ErrorCode, Message, PeerPool, TransportConfig, TransportError};

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
    #[error("storage node {peer}: {source}")]
    Transport {
        peer: String,
        source: TransportError,
    },
}

pub enum Objects {
    Local(ObjectStore),
    Remote(RemoteObjects),
}

/// One storage node as a compute node reaches it.
#[derive(Debug, Clone)]
pub struct RemoteNode {
    pub name: String,
    /// Its object API (listing, deleting, and objects too large for a frame).
    pub upload: SocketAddr,
    /// Its transport listener (object reads and writes).
    pub transport: SocketAddr,
}

/// Objects on the cluster's storage nodes, placed by rendezvous hashing
/// (every node computes the same answer; adding a node moves ~1/n keys).
pub struct RemoteObjects {
    pub nodes: Vec<RemoteNode>,
    pub placement: LocalPlacement,
    pub client: Rc<PeerClient>,
    /// This shard's transport connections.
    pub pool: PeerPool,
}

/// Object bytes one transport frame carries; larger reads take several
/// requests and larger writes go over HTTP. Well under the transport's
/// frame cap (128 MiB), so no frame is ever refused for its size.
const PEER_CHUNK_BYTES_MAX: usize = 16 << 20;
/// A transport request to a storage node that takes longer fails.
const PEER_REQUEST_MS_MAX: u64 = 30_000;
/// Largest reply body an HTTP object request brings back (the store's cap).
const REMOTE_BODY_BYTES_MAX: usize = ferry_storage::limits::OBJECT_BYTES_MAX as usize;

impl Objects {
    pub async fn put(&self, user: &str, key: &[u8], data: &[u8]) -> Result<(), ObjectError> {
        match self {
            Objects::Local(store) => Ok(store.put(user, key, data).await?),
            Objects::Remote(remote) if data.len() <= PEER_CHUNK_BYTES_MAX => {
                let message = Message::ObjectWrite {
                    user: user.to_owned(),
                    key: key.to_vec(),
                    data: Bytes::copy_from_slice(data),
                };
                match remote.request(user, key, &message).await? {
                    Message::ObjectWritten { .. } => Ok(()),
                    other => Err(remote.unexpected(user, key, other).await),
                }
            }
            Objects::Remote(remote) => {
                let reply = remote
                    .send(user, key, Method::PUT, Bytes::copy_from_slice(data))
                    .await?;
                remote.expect(reply, &[StatusCode::OK]).map(|_| ())
            }
        }
    }

    /// Opens `key` for reading: the reader knows the object's size and
    /// reads that one version (see [`ObjectReader`]). For an object on a
    /// storage node, this one request also brings the bytes of
    /// `[offset, offset + len_max)` that fit one request, so an object of
    /// up to 16 MiB is read in one round trip. `None`: no such object.
    pub async fn open_read(
        &self,
        user: &str,
        key: &[u8],
        offset: u64,
        len_max: u64,
    ) -> Result<Option<ObjectReader<'_>>, ObjectError> {
        match self {
            Objects::Local(store) => Ok(store.open_read(user, key).await?.map(ObjectReader::Local)),
            Objects::Remote(remote) => {
                let want = len_max.min(PEER_CHUNK_BYTES_MAX as u64);
                Ok(remote
                    .read_chunk(user, key, offset, want)
                    .await?
                    .map(|(size, first)| {
                        ObjectReader::Remote(RemoteReader {
                            remote,
                            user: user.to_owned(),
                            key: key.to_vec(),
                            size,
                            first_offset: offset,
                            first,
                        })
                    }))
            }
        }
    }

    /// Size of the object in bytes, or `None` when it does not exist.
    pub async fn stat(&self, user: &str, key: &[u8]) -> Result<Option<u64>, ObjectError> {
        let Some(reader) = self.open_read(user, key, 0, 0).await? else {
            return Ok(None);
        };
        let size = reader.len_bytes();
        reader.close().await?;
        Ok(Some(size))
    }

    /// Up to `len_max` bytes from `offset`, read from one version of the
    /// object. `None` when it does not exist; empty at or past its end.
    pub async fn get(
        &self,
        user: &str,
        key: &[u8],
        offset: u64,
        len_max: u64,
    ) -> Result<Option<Vec<u8>>, ObjectError> {
        let Some(reader) = self.open_read(user, key, offset, len_max).await? else {
            return Ok(None);
        };
        let len = reader.len_bytes().saturating_sub(offset).min(len_max);
        if len > ferry_storage::limits::OBJECT_BYTES_MAX {
            reader.close().await?;
            return Err(StorageError::ObjectTooLarge {
                len_bytes: len,
                max_bytes: ferry_storage::limits::OBJECT_BYTES_MAX,
            }
            .into());
        }
        let mut bytes = vec![0; len as usize];
        let read = reader.read_into(offset, &mut bytes).await;
        let closed = reader.close().await;
        let n = read?;
        closed?;
        bytes.truncate(n);
        Ok(Some(bytes))
    }

    pub async fn delete(&self, user: &str, key: &[u8]) -> Result<bool, ObjectError> {
        match self {
            Objects::Local(store) => Ok(store.delete(user, key).await?),
            Objects::Remote(remote) => {
                let message = Message::ObjectDelete {
                    user: user.to_owned(),
                    key: key.to_vec(),
                };
                match remote.request(user, key, &message).await? {
                    Message::ObjectDeleted { found } => Ok(found),
                    other => Err(remote.unexpected(user, key, other).await),
                }
            }
        }
    }

    pub async fn list(&self, user: &str) -> Result<Vec<ObjectInfo>, ObjectError> {
        match self {
            Objects::Local(store) => Ok(store.list(user).await?),
            Objects::Remote(remote) => {
                let mut all = Vec::new();
                let message = Message::ObjectList {
                    user: user.to_owned(),
                };
                for node in &remote.nodes {
                    let reply = remote
                        .pool
                        .request(
                            node.transport,
                            &message,
                            Duration::from_millis(PEER_REQUEST_MS_MAX),
                        )
                        .await
                        .map_err(|source| ObjectError::Transport {
                            peer: node.name.clone(),
                            source,
                        })?;
                    match reply {
                        Message::ObjectListing { entries } => {
                            all.extend(entries.into_iter().map(|e| ObjectInfo {
                                key: e.key,
                                size_bytes: e.size_bytes,
                            }))
                        }
                        Message::Error { code, message } => {
                            return Err(ObjectError::Peer {
                                peer: node.name.clone(),
                                status: 0,
                                body: format!("{code:?}: {message}"),
                            })
                        }
                        other => {
                            return Err(ObjectError::Peer {
                                peer: node.name.clone(),
                                status: 0,
                                body: format!("unexpected reply {:?}", other.kind()),
                            })
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
    pub(crate) async fn node_for(
        &self,
        user: &str,
        key: &[u8],
    ) -> Result<&RemoteNode, ObjectError> {
        let location = self.placement.locate(user, key).await?;
        self.nodes
            .iter()
            .find(|node| node.name == location.node)
            .ok_or_else(|| ObjectError::Peer {
                peer: location.node.to_owned(),
                status: 0,
                body: "placement named a node the cluster config does not list".into(),
            })
    }

    /// One transport request to the node that holds (user, key).
    async fn request(
        &self,
        user: &str,
        key: &[u8],
        message: &Message,
    ) -> Result<Message, ObjectError> {
        let node = self.node_for(user, key).await?;
        self.pool
            .request(
                node.transport,
                message,
                Duration::from_millis(PEER_REQUEST_MS_MAX),
            )
            .await
            .map_err(|source| ObjectError::Transport {
                peer: node.name.clone(),
                source,
            })
    }

    async fn unexpected(&self, user: &str, key: &[u8], reply: Message) -> ObjectError {
        let peer = match self.node_for(user, key).await {
            Ok(node) => node.name.clone(),
            Err(error) => return error,
        };
        let body = match reply {
            Message::Error { code, message } => format!("{code:?}: {message}"),
            other => format!("unexpected reply {:?}", other.kind()),
        };
        ObjectError::Peer {
            peer,
            status: 0,
            body,
        }
    }

    /// One transport read of at most [`PEER_CHUNK_BYTES_MAX`] bytes from
    /// `offset`: (object size, bytes), or None when it does not exist.
    async fn read_chunk(
        &self,
        user: &str,
        key: &[u8],
        offset: u64,
        len_max: u64,
    ) -> Result<Option<(u64, Bytes)>, ObjectError> {
        let want = len_max.min(PEER_CHUNK_BYTES_MAX as u64);
        let message = Message::ObjectRead {
            user: user.to_owned(),
            key: key.to_vec(),
            offset,
            len_max: want,
        };
        match self.request(user, key, &message).await? {
            Message::ObjectData { found: false, .. } => Ok(None),
            Message::ObjectData {
                found: true,
                object_bytes,
                data,
                ..
            } if data.len() as u64 <= want => Ok(Some((object_bytes, data))),
            other => Err(self.unexpected(user, key, other).await),
        }
    }

    async fn send(
        &self,
        user: &str,
        key: &[u8],
        method: Method,
        body: Bytes,
    ) -> Result<(String, PeerReply), ObjectError> {
        let node = self.node_for(user, key).await?;
        let path = format!("/o/{user}/{}", encode_key(key));
        let reply = self
            .client
            .request(
                node.upload,
                method,
                &path,
                None,
                body,
                REMOTE_BODY_BYTES_MAX,
            )
            .await?;
        Ok((node.name.clone(), reply))
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

/// An object opened for reading, from this node's store or a storage
/// node's. A local reader holds the object open and reads the version it
/// opened however many reads it takes. A remote reader holds the size and
/// the first bytes its open brought; a further read (an object past
/// 16 MiB) asks the storage node again, so an object replaced meanwhile
/// can mix versions there: the transport keeps no object open across
/// requests.
pub enum ObjectReader<'a> {
    Local(ferry_storage::ObjectReader),
    Remote(RemoteReader<'a>),
}

pub struct RemoteReader<'a> {
    remote: &'a RemoteObjects,
    user: String,
    key: Vec<u8>,
    size: u64,
    first_offset: u64,
    first: Bytes,
}

impl ObjectReader<'_> {
    pub fn len_bytes(&self) -> u64 {
        match self {
            ObjectReader::Local(reader) => reader.len_bytes(),
            ObjectReader::Remote(reader) => reader.size,
        }
    }

    /// Reads `min(dst.len(), size - offset)` bytes from `offset` into the
    /// start of `dst`; how many.
    pub async fn read_into(&self, offset: u64, dst: &mut [u8]) -> Result<usize, ObjectError> {
        match self {
            ObjectReader::Local(reader) => Ok(reader.read_into(offset, dst).await?),
            ObjectReader::Remote(reader) => reader.read_into(offset, dst).await,
        }
    }

    pub async fn close(self) -> Result<(), ObjectError> {
        match self {
            ObjectReader::Local(reader) => Ok(reader.close().await?),
            ObjectReader::Remote(_) => Ok(()),
        }
    }
}

impl RemoteReader<'_> {
    async fn read_into(&self, offset: u64, dst: &mut [u8]) -> Result<usize, ObjectError> {
        let len = self.size.saturating_sub(offset).min(dst.len() as u64) as usize;
        let mut done = 0usize;
        if offset == self.first_offset {
            done = self.first.len().min(len);
            dst[..done].copy_from_slice(&self.first[..done]);
        }
        while done < len {
            let at = offset + done as u64;
            match self
                .remote
                .read_chunk(&self.user, &self.key, at, (len - done) as u64)
                .await?
            {
                Some((_, data)) if !data.is_empty() => {
                    let n = data.len().min(len - done);
                    dst[done..done + n].copy_from_slice(&data[..n]);
                    done += n;
                }
                // Deleted or shortened meanwhile: what was read stands.
                _ => break,
            }
        }
        Ok(done)
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

/// Serves compute nodes' object reads and writes on a transport listener,
/// from this shard's objects.
pub async fn serve_peers(listener: glommio::net::TcpListener, shard: Rc<LocalShard>) {
    use ferry_transport::Capabilities;
    let mut config = TransportConfig::new(shard.node.config.name.clone());
    config.capabilities = if shard.node.config.role.holds_objects() {
        Capabilities::OBJECTS.with(Capabilities::OFFLOAD)
    } else {
        Capabilities::NONE
    };
    let served = ferry_transport::serve(listener, config, move |message| {
        let shard = shard.clone();
        async move { answer_peer(&shard, message).await }
    })
    .await;
    if let Err(error) = served {
        tracing::error!(%error, "the transport listener stopped");
    }
}

async fn answer_peer(shard: &Rc<LocalShard>, message: Message) -> Message {
    let objects = shard.objects();
    shard
        .node
        .metrics
        .peer_requests
        .with_label_values(&[message.kind().name()])
        .inc();
    let missing = |offset| Message::ObjectData {
        found: false,
        object_bytes: 0,
        offset,
        data: Bytes::new(),
    };
    match message {
        Message::ObjectRead {
            user,
            key,
            offset,
            len_max,
        } => {
            // One open: the size and the bytes are of the same version.
            let reader = match objects.open_read(&user, &key, offset, len_max).await {
                Ok(Some(reader)) => reader,
                Ok(None) => return missing(offset),
                Err(error) => return Message::error(ErrorCode::Internal, error.to_string()),
            };
            let size = reader.len_bytes();
            let len = size
                .saturating_sub(offset)
                .min(len_max)
                .min(PEER_CHUNK_BYTES_MAX as u64);
            let mut data = vec![0; len as usize];
            let read = reader.read_into(offset, &mut data).await;
            let closed = reader.close().await;
            match read.and_then(|n| closed.map(|()| n)) {
                Ok(n) => {
                    data.truncate(n);
                    Message::ObjectData {
                        found: true,
                        object_bytes: size,
                        offset,
                        data: data.into(),
                    }
                }
                Err(error) => Message::error(ErrorCode::Internal, error.to_string()),
            }
        }
        Message::ObjectList { user } => match objects.list(&user).await {
            Ok(listed) => Message::ObjectListing {
                entries: listed
                    .into_iter()
                    .map(|info| ferry_transport::ObjectEntry {
                        key: info.key,
                        size_bytes: info.size_bytes,
                    })
                    .collect(),
            },
            Err(error) => Message::error(ErrorCode::Internal, error.to_string()),
        },
        Message::ObjectDelete { user, key } => match objects.delete(&user, &key).await {
            Ok(found) => Message::ObjectDeleted { found },
            Err(ObjectError::Storage(
                error @ (StorageError::KeyTooLong { .. } | StorageError::BadUser { .. }),
            )) => Message::error(ErrorCode::BadRequest, error.to_string()),
            Err(error) => Message::error(ErrorCode::Internal, error.to_string()),
        },
        Message::ObjectWrite { user, key, data } => match objects.put(&user, &key, &data).await {
            Ok(()) => Message::ObjectWritten {
                object_bytes: data.len() as u64,
            },
            Err(ObjectError::Storage(
                error @ (StorageError::ObjectTooLarge { .. }
                | StorageError::KeyTooLong { .. }
                | StorageError::BadUser { .. }),
            )) => Message::error(ErrorCode::BadRequest, error.to_string()),
            Err(error) => Message::error(ErrorCode::Internal, error.to_string()),
        },
        Message::Offer(offer) => crate::funclet::serve::answer_offer(shard, offer).await,
        Message::Pages(pages) => crate::funclet::serve::answer_pages(shard, pages).await,
        Message::Module(upload) => crate::peers::answer_module(shard, upload).await,
        other => Message::error(
            ErrorCode::BadRequest,
            format!("a node does not answer {:?}", other.kind()),
        ),
    }
}

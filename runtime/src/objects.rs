//! Where a shard's objects are: a store on this node (embedded or Ceph),
//! or the storage nodes of the cluster. Host functions and the HTTP object
//! API go through [`Objects`] alone.
//!
//! On a compute node of an embedded-store cluster, every operation goes to
//! the storage node `Placement` names, over the transport: reads of up to
//! 16 MiB a request (the first brings the object's size), writes in one
//! message or streamed in 16 MiB chunks, listings and deletes. A shard
//! has two such doors, one to the objects and one to Faasm's state; on a
//! compute node both go to the same storage node for (user, key), and each
//! request names which of that node's stores it addresses.

use std::time::Duration;

use bytes::Bytes;

use crate::config::PeerNode;
use ferry_storage::{LocalPlacement, ObjectInfo, ObjectStore, StorageError};
use ferry_transport::{Message, PeerPool, StateChange, StateUpdate, Store, TransportError};

/// What an object operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error(transparent)]
    Storage(#[from] StorageError),
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

/// Objects on the cluster's storage nodes, placed by rendezvous hashing
/// (every node computes the same answer; adding a node moves ~1/n keys).
pub struct RemoteObjects {
    pub nodes: Vec<PeerNode>,
    pub placement: LocalPlacement,
    /// This shard's transport connections (its object and state handles
    /// share them).
    pub pool: std::rc::Rc<PeerPool>,
    /// Names this shard's streamed writes, to objects and state alike;
    /// seeded per node and shard so two senders never share one at a
    /// storage node.
    pub next_write_id: std::rc::Rc<std::cell::Cell<u64>>,
    /// Which store of the storage node every request addresses.
    pub store: Store,
}

use crate::limits::{PEER_CHUNK_BYTES_MAX, PEER_REQUEST_MS_MAX};

impl Objects {
    pub async fn put(&self, user: &str, key: &[u8], data: &[u8]) -> Result<(), ObjectError> {
        match self {
            Objects::Local(store) => Ok(store.put(user, key, data).await?),
            Objects::Remote(remote) => remote.write(user, key, data).await,
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
                        ObjectReader::Remote(
                            remote,
                            RemoteReader {
                                user: user.to_owned(),
                                key: key.to_vec(),
                                size,
                                first_offset: offset,
                                first,
                            },
                        )
                    }))
            }
        }
    }

    /// Starts writing a whole object of `total_bytes` in parts, on this
    /// node's store (what a storage node does for a streamed write).
    pub async fn put_stream(
        &self,
        user: &str,
        key: &[u8],
        total_bytes: u64,
    ) -> Result<ferry_storage::PutStream, ObjectError> {
        match self {
            Objects::Local(store) => Ok(store.put_stream(user, key, total_bytes).await?),
            Objects::Remote(_) => Err(ObjectError::Peer {
                peer: "this node".into(),
                status: 0,
                body: "a compute node does not store streamed writes".into(),
            }),
        }
    }

    /// Whether a streamed write gathers the whole object in this node's
    /// memory before it lands (RADOS has no rename to publish parts).
    pub fn gathers_writes(&self) -> bool {
        matches!(self, Objects::Local(ObjectStore::Rados(_)))
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
                    store: remote.store,
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
                    store: remote.store,
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
    /// Has the storage node that holds state value (user, key) apply
    /// `change` to it (`state_store::apply` there); the value's size after.
    pub async fn update_state(
        &self,
        user: &str,
        key: &[u8],
        change: StateChange,
    ) -> Result<u64, ObjectError> {
        let message = Message::StateUpdate(StateUpdate {
            user: user.to_owned(),
            key: key.to_vec(),
            change,
        });
        match self.request(user, key, &message).await? {
            Message::ObjectWritten { object_bytes } => Ok(object_bytes),
            other => Err(self.unexpected(user, key, other).await),
        }
    }

    /// The storage node that holds (user, key).
    pub(crate) async fn node_for(&self, user: &str, key: &[u8]) -> Result<&PeerNode, ObjectError> {
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
            store: self.store,
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

    /// Writes the whole object on the node that holds it: one message,
    /// or a stream of chunks in order on one connection (a chunk is copied
    /// once, into its frame).
    async fn write(&self, user: &str, key: &[u8], data: &[u8]) -> Result<(), ObjectError> {
        let mut writer = self.writer(user, key, data.len() as u64).await?;
        for chunk in data.chunks(PEER_CHUNK_BYTES_MAX) {
            writer.write(chunk).await?;
        }
        writer.finish().await
    }

    /// Starts a write of `total_bytes` to the node that holds (user, key).
    async fn writer(
        &self,
        user: &str,
        key: &[u8],
        total_bytes: u64,
    ) -> Result<RemoteWriter, ObjectError> {
        let node = self.node_for(user, key).await?;
        let timeout = Duration::from_millis(PEER_REQUEST_MS_MAX);
        let connection = self
            .pool
            .peer(node.transport)
            .map_err(|source| ObjectError::Transport {
                peer: node.name.clone(),
                source,
            })?
            .connection(std::time::Instant::now() + timeout)
            .await
            .map_err(|source| ObjectError::Transport {
                peer: node.name.clone(),
                source,
            })?;
        let write_id = self.next_write_id.get();
        self.next_write_id.set(write_id.wrapping_add(1));
        Ok(RemoteWriter {
            connection,
            peer: node.name.clone(),
            user: user.to_owned(),
            key: key.to_vec(),
            write_id,
            written: 0,
            total_bytes,
            store: self.store,
        })
    }
}

/// An object being written in parts: every part in order, then
/// [`ObjectWriter::finish`] makes it appear whole. Until then the old
/// object stays; a writer dropped unfinished leaves it (a local temp file
/// is removed, a storage node drops the stream once its next chunk does
/// not come).
pub enum ObjectWriter {
    Local(LocalWriter),
    Remote(RemoteWriter),
}

/// A write into this node's store; aborted in the background if dropped
/// before `finish` (a client that went away mid-body).
pub struct LocalWriter(Option<ferry_storage::PutStream>);

/// A write streamed to a storage node on one connection, a transport
/// request per part.
pub struct RemoteWriter {
    connection: std::rc::Rc<ferry_transport::Connection>,
    peer: String,
    user: String,
    key: Vec<u8>,
    write_id: u64,
    written: u64,
    total_bytes: u64,
    store: Store,
}

impl Objects {
    /// Starts writing `key` of `user` as `total_bytes` bytes given in parts.
    pub async fn writer(
        &self,
        user: &str,
        key: &[u8],
        total_bytes: u64,
    ) -> Result<ObjectWriter, ObjectError> {
        match self {
            Objects::Local(store) => Ok(ObjectWriter::Local(LocalWriter(Some(
                store.put_stream(user, key, total_bytes).await?,
            )))),
            Objects::Remote(remote) => Ok(ObjectWriter::Remote(
                remote.writer(user, key, total_bytes).await?,
            )),
        }
    }
}

impl ObjectWriter {
    /// Writes the next part (at most [`PEER_CHUNK_BYTES_MAX`] bytes).
    pub async fn write(&mut self, part: &[u8]) -> Result<(), ObjectError> {
        match self {
            ObjectWriter::Local(LocalWriter(stream)) => match stream.as_mut() {
                Some(stream) => Ok(stream.write(part).await?),
                None => Err(ObjectError::Storage(StorageError::Io {
                    op: "writing a part of",
                    path: "an object".into(),
                    source: std::io::Error::other("the write was already finished"),
                })),
            },
            ObjectWriter::Remote(writer) => writer.write(part).await,
        }
    }

    pub async fn finish(self) -> Result<(), ObjectError> {
        match self {
            ObjectWriter::Local(mut local) => match local.0.take() {
                Some(stream) => Ok(stream.finish().await?),
                None => Ok(()),
            },
            ObjectWriter::Remote(writer) => writer.finish().await,
        }
    }
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        if let Some(stream) = self.0.take() {
            glommio::spawn_local(async move {
                let _working = crate::http::io::Working::begin();
                stream.abort().await
            })
            .detach();
        }
    }
}

impl RemoteWriter {
    async fn finish(mut self) -> Result<(), ObjectError> {
        if self.written != self.total_bytes || self.total_bytes == 0 {
            if self.total_bytes == 0 && self.written == 0 {
                // An empty object is one message with no data.
                return self.send(Bytes::new()).await;
            }
            return Err(ObjectError::Peer {
                peer: self.peer,
                status: 0,
                body: format!(
                    "the write ended at {} of {} bytes",
                    self.written, self.total_bytes
                ),
            });
        }
        // The last part's answer said the object landed.
        Ok(())
    }

    async fn write(&mut self, part: &[u8]) -> Result<(), ObjectError> {
        if part.is_empty() {
            return Ok(());
        }
        self.send(Bytes::copy_from_slice(part)).await
    }

    async fn send(&mut self, data: Bytes) -> Result<(), ObjectError> {
        let len = data.len() as u64;
        let message = Message::ObjectWrite {
            user: self.user.clone(),
            key: self.key.clone(),
            data,
            offset: self.written,
            total_bytes: self.total_bytes,
            write_id: self.write_id,
            store: self.store,
        };
        let reply = self
            .connection
            .request(&message, Duration::from_millis(PEER_REQUEST_MS_MAX))
            .await
            .map_err(|source| ObjectError::Transport {
                peer: self.peer.clone(),
                source,
            })?;
        match reply {
            Message::ObjectWritten { .. } => {
                self.written += len;
                Ok(())
            }
            Message::Error { code, message } => Err(ObjectError::Peer {
                peer: self.peer.clone(),
                status: 0,
                body: format!("{code:?}: {message}"),
            }),
            other => Err(ObjectError::Peer {
                peer: self.peer.clone(),
                status: 0,
                body: format!("unexpected reply {:?}", other.kind()),
            }),
        }
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
    Remote(&'a RemoteObjects, RemoteReader),
}

/// A reader that holds no borrow of its store, for reads that outlive the
/// borrow (a streamed HTTP answer): each read is given the store again.
pub enum OwnedReader {
    Local(ferry_storage::ObjectReader),
    Remote(RemoteReader),
}

/// What a remote reader knows: the object's size and the bytes its open
/// brought.
pub struct RemoteReader {
    user: String,
    key: Vec<u8>,
    size: u64,
    first_offset: u64,
    first: Bytes,
}

impl<'a> ObjectReader<'a> {
    pub fn len_bytes(&self) -> u64 {
        match self {
            ObjectReader::Local(reader) => reader.len_bytes(),
            ObjectReader::Remote(_, reader) => reader.size,
        }
    }

    /// Reads `min(dst.len(), size - offset)` bytes from `offset` into the
    /// start of `dst`; how many.
    pub async fn read_into(&self, offset: u64, dst: &mut [u8]) -> Result<usize, ObjectError> {
        match self {
            ObjectReader::Local(reader) => Ok(reader.read_into(offset, dst).await?),
            ObjectReader::Remote(remote, reader) => reader.read_into(remote, offset, dst).await,
        }
    }

    pub async fn close(self) -> Result<(), ObjectError> {
        match self {
            ObjectReader::Local(reader) => Ok(reader.close().await?),
            ObjectReader::Remote(..) => Ok(()),
        }
    }

    pub fn into_owned(self) -> OwnedReader {
        match self {
            ObjectReader::Local(reader) => OwnedReader::Local(reader),
            ObjectReader::Remote(_, reader) => OwnedReader::Remote(reader),
        }
    }
}

impl OwnedReader {
    pub fn len_bytes(&self) -> u64 {
        match self {
            OwnedReader::Local(reader) => reader.len_bytes(),
            OwnedReader::Remote(reader) => reader.size,
        }
    }

    /// As [`ObjectReader::read_into`]; `objects` is the store it was opened from.
    pub async fn read_into(
        &self,
        objects: &Objects,
        offset: u64,
        dst: &mut [u8],
    ) -> Result<usize, ObjectError> {
        match (self, objects) {
            (OwnedReader::Local(reader), _) => Ok(reader.read_into(offset, dst).await?),
            (OwnedReader::Remote(reader), Objects::Remote(remote)) => {
                reader.read_into(remote, offset, dst).await
            }
            (OwnedReader::Remote(_), Objects::Local(_)) => Err(ObjectError::Peer {
                peer: "this node".into(),
                status: 0,
                body: "a remote reader was given a local store".into(),
            }),
        }
    }

    pub async fn close(self) -> Result<(), ObjectError> {
        match self {
            OwnedReader::Local(reader) => Ok(reader.close().await?),
            OwnedReader::Remote(_) => Ok(()),
        }
    }
}

impl RemoteReader {
    async fn read_into(
        &self,
        remote: &RemoteObjects,
        offset: u64,
        dst: &mut [u8],
    ) -> Result<usize, ObjectError> {
        let len = self.size.saturating_sub(offset).min(dst.len() as u64) as usize;
        let mut done = 0usize;
        if offset == self.first_offset {
            done = self.first.len().min(len);
            dst[..done].copy_from_slice(&self.first[..done]);
        }
        while done < len {
            let at = offset + done as u64;
            match remote
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

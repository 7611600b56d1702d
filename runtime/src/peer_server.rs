//! The transport requests a node serves to the other nodes of its
//! cluster: object reads, writes (whole, or streamed in chunks), listings
//! and deletes from this shard's object store or its state store, as the
//! request's `store` names; offers and pages of funclets
//! (`funclet::serve`); modules (`peers`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use crate::exec::call_state::StateLocks;
use crate::limits::{
    PEER_CHUNK_BYTES_MAX, PEER_STREAMS_MAX as STREAMS_MAX,
    PEER_STREAM_IDLE_MS_MAX as STREAM_IDLE_MS_MAX,
};
use crate::objects::{ObjectError, Objects};
use crate::shard::LocalShard;
use crate::state_store::{self, StateWriteError};
use ferry_storage::{PutStream, StorageError};
use ferry_transport::{ErrorCode, Message, StateUpdate, Store};

/// Serves compute nodes' object and state reads and writes on a transport
/// listener, from this shard's stores.
pub async fn serve_peers(listener: glommio::net::TcpListener, shard: Rc<LocalShard>) {
    use ferry_transport::Capabilities;
    // With the cluster secret: only nodes that prove it are served.
    let mut config = shard.node.config.transport();
    config.capabilities = if shard.node.config.role.holds_objects() {
        Capabilities::OBJECTS.with(Capabilities::OFFLOAD)
    } else {
        Capabilities::NONE
    };
    let writes = Rc::new(Writes::default());
    let served = ferry_transport::serve(listener, config, move |message| {
        let (shard, writes) = (shard.clone(), writes.clone());
        async move { answer_peer(&shard, &writes, message).await }
    })
    .await;
    if let Err(error) = served {
        tracing::error!(%error, "the transport listener stopped");
    }
}

/// The shard's store an object request addresses.
fn store_of(shard: &LocalShard, store: Store) -> &Objects {
    match store {
        Store::Objects => shard.objects(),
        Store::State => shard.state_here(),
    }
}

async fn answer_peer(shard: &Rc<LocalShard>, writes: &Rc<Writes>, message: Message) -> Message {
    let _working = crate::http::io::Working::begin();
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
            store,
        } => {
            // One open: the size and the bytes are of the same version.
            let reader = match store_of(shard, store)
                .open_read(&user, &key, offset, len_max)
                .await
            {
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
        Message::ObjectList { user, store } => match store_of(shard, store).list(&user).await {
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
        Message::ObjectDelete {
            user,
            key,
            store: Store::State,
        } => {
            let locks = shard.node.executor.state_locks();
            match state_store::delete(shard.state_here(), locks, &user, &key).await {
                Ok(found) => Message::ObjectDeleted { found },
                Err(error) => state_error(error),
            }
        }
        Message::ObjectDelete { user, key, store } => {
            match store_of(shard, store).delete(&user, &key).await {
                Ok(found) => Message::ObjectDeleted { found },
                Err(error) => object_error(error),
            }
        }
        Message::StateUpdate(StateUpdate { user, key, change }) => {
            let locks = shard.node.executor.state_locks();
            match state_store::apply(shard.state_here(), locks, &user, &key, change).await {
                Ok(object_bytes) => Message::ObjectWritten { object_bytes },
                Err(error) => state_error(error),
            }
        }
        Message::ObjectWrite {
            user,
            key,
            data,
            offset,
            total_bytes,
            write_id,
            store,
        } => {
            let objects = store_of(shard, store);
            if offset == 0 && total_bytes == data.len() as u64 {
                let written = match store {
                    Store::State => {
                        let locks = shard.node.executor.state_locks();
                        state_store::put(objects, locks, &user, &key, &data).await
                    }
                    Store::Objects => objects.put(&user, &key, &data).await.map_err(Into::into),
                };
                match written {
                    Ok(()) => Message::ObjectWritten {
                        object_bytes: data.len() as u64,
                    },
                    Err(error) => state_error(error),
                }
            } else {
                let chunk = Chunk {
                    user,
                    key,
                    data,
                    offset,
                    total_bytes,
                    write_id,
                    store,
                };
                writes
                    .chunk(objects, shard.node.executor.state_locks(), chunk)
                    .await
            }
        }
        Message::Offer(offer) => crate::funclet::serve::answer_offer(shard, offer).await,
        Message::Pages(pages) => crate::funclet::serve::answer_pages(shard, pages).await,
        Message::FetchPages { call_id } => crate::funclet::serve::answer_fetch(shard, call_id),
        Message::Module(upload) => crate::peers::answer_module(shard, upload).await,
        other => Message::error(
            ErrorCode::BadRequest,
            format!("a node does not answer {:?}", other.kind()),
        ),
    }
}

/// The one place a store's refusal becomes a transport error code.
fn object_error(error: ObjectError) -> Message {
    match error {
        ObjectError::Storage(
            error @ (StorageError::ObjectTooLarge { .. }
            | StorageError::KeyTooLong { .. }
            | StorageError::BadUser { .. }),
        ) => Message::error(ErrorCode::BadRequest, error.to_string()),
        error => Message::error(ErrorCode::Internal, error.to_string()),
    }
}

/// A state write's refusal (or a store's) as a transport error.
fn state_error(error: StateWriteError) -> Message {
    match error {
        StateWriteError::Store(error) => object_error(error),
        error @ StateWriteError::TooLarge { .. } => {
            Message::error(ErrorCode::BadRequest, error.to_string())
        }
        error => Message::error(ErrorCode::Internal, error.to_string()),
    }
}

/// One chunk of a streamed write.
struct Chunk {
    user: String,
    key: Vec<u8>,
    data: Bytes,
    offset: u64,
    total_bytes: u64,
    write_id: u64,
    store: Store,
}

/// This listener's streamed writes, by the sender's write id.
#[derive(Default)]
struct Writes {
    open: RefCell<HashMap<u64, OpenWrite>>,
    serial: Cell<u64>,
}

struct OpenWrite {
    stream: PutStream,
    store: Store,
    user: String,
    key: Vec<u8>,
    written: u64,
    total_bytes: u64,
    serial: u64,
}

impl Writes {
    async fn chunk(
        self: &Rc<Self>,
        objects: &Objects,
        shard_locks: &StateLocks,
        chunk: Chunk,
    ) -> Message {
        let Chunk {
            user,
            key,
            data,
            offset,
            total_bytes,
            write_id,
            store,
        } = chunk;
        let earlier = self.open.borrow_mut().remove(&write_id);
        let mut open = match (offset, earlier) {
            (0, earlier) => {
                if let Some(earlier) = earlier {
                    earlier.stream.abort().await;
                }
                if self.open.borrow().len() >= STREAMS_MAX {
                    return Message::error(
                        ErrorCode::Unavailable,
                        format!("{STREAMS_MAX} streamed writes are open here; try again"),
                    );
                }
                match objects.put_stream(&user, &key, total_bytes).await {
                    Ok(stream) => OpenWrite {
                        stream,
                        store,
                        user,
                        key,
                        written: 0,
                        total_bytes,
                        serial: 0,
                    },
                    Err(error) => return object_error(error),
                }
            }
            (_, Some(open))
                if open.written == offset
                    && open.total_bytes == total_bytes
                    && open.store == store
                    && open.user == user
                    && open.key == key =>
            {
                open
            }
            (_, Some(open)) => {
                open.stream.abort().await;
                return Message::error(
                    ErrorCode::BadRequest,
                    format!("write {write_id}: a chunk out of order at {offset}"),
                );
            }
            (_, None) => {
                return Message::error(
                    ErrorCode::NotFound,
                    format!("write {write_id}: no such stream (idle too long?)"),
                )
            }
        };
        if open.written + data.len() as u64 > open.total_bytes || data.is_empty() {
            open.stream.abort().await;
            return Message::error(
                ErrorCode::BadRequest,
                format!("write {write_id}: a chunk past the object's {total_bytes} bytes"),
            );
        }
        if let Err(error) = open.stream.write(&data).await {
            open.stream.abort().await;
            return object_error(error.into());
        }
        open.written += data.len() as u64;
        if open.written == open.total_bytes {
            // A state value is published under its apply lock, as every
            // other write to it.
            let _apply = match open.store {
                Store::State => {
                    match state_store::publish_lock(objects, shard_locks, &open.user, &open.key)
                        .await
                    {
                        Ok(guard) => guard,
                        Err(error) => {
                            open.stream.abort().await;
                            return state_error(error);
                        }
                    }
                }
                Store::Objects => None,
            };
            return match open.stream.finish().await {
                Ok(()) => Message::ObjectWritten {
                    object_bytes: total_bytes,
                },
                Err(error) => object_error(error.into()),
            };
        }
        let serial = self.serial.get() + 1;
        self.serial.set(serial);
        open.serial = serial;
        let written = open.written;
        self.open.borrow_mut().insert(write_id, open);
        // Drop the stream if its next chunk does not come.
        let writes = self.clone();
        glommio::spawn_local(async move {
            glommio::timer::sleep(Duration::from_millis(STREAM_IDLE_MS_MAX)).await;
            let idle = {
                let mut open = writes.open.borrow_mut();
                match open.get(&write_id) {
                    Some(o) if o.serial == serial => open.remove(&write_id),
                    _ => None,
                }
            };
            if let Some(idle) = idle {
                let _working = crate::http::io::Working::begin();
                idle.stream.abort().await;
            }
        })
        .detach();
        Message::ObjectWritten {
            object_bytes: written,
        }
    }
}

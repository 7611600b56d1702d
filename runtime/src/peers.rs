//! Functions moving between nodes: an upload to any node reaches every
//! node, and a node offered a funclet of a module it lacks is sent the
//! module.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::exec::Function;
use crate::limits;
use crate::shard::LocalShard;
use ferry_transport::{ErrorCode, Message, ModuleHash, ModuleUpload};

/// The module hash the transport carries: SHA-256 of the uploaded wasm.
pub fn module_hash(function: &Function) -> Result<ModuleHash> {
    let bytes = hex::decode(&function.wasm_sha256).context("decoding a module hash")?;
    bytes
        .try_into()
        .map_err(|_| anyhow!("a module hash is not 32 bytes"))
}

/// Sends `function`'s uploaded wasm to `addr`, which stores and compiles
/// it before it answers.
pub async fn push_module(shard: &LocalShard, addr: SocketAddr, function: &Function) -> Result<()> {
    let peers = shard
        .peers
        .as_ref()
        .ok_or_else(|| anyhow!("this node has no peers"))?;
    let (user, name) = (function.user.clone(), function.name.clone());
    let node = shard.node.clone();
    let wasm = glommio::executor()
        .spawn_blocking(move || node.registry.wasm(&user, &name))
        .await?
        .ok_or_else(|| {
            anyhow!(
                "the stored wasm of {}/{} is gone",
                function.user,
                function.name
            )
        })?;
    let message = Message::Module(ModuleUpload {
        user: function.user.clone(),
        function: function.name.clone(),
        hash: module_hash(function)?,
        wasm: Bytes::from(wasm),
    });
    let timeout = Duration::from_millis(limits::MODULE_PUSH_MS_MAX);
    match peers.pool.request(addr, &message, timeout).await {
        Ok(Message::ModuleStored { .. }) => {
            shard
                .node
                .metrics
                .module_pushes
                .with_label_values(&["ok"])
                .inc();
            Ok(())
        }
        Ok(Message::Error { code, message }) => {
            shard
                .node
                .metrics
                .module_pushes
                .with_label_values(&["refused"])
                .inc();
            bail!(
                "{addr} refused module {}/{}: {code:?}: {message}",
                function.user,
                function.name
            )
        }
        Ok(other) => bail!("{addr} answered a module with {:?}", other.kind()),
        Err(error) => {
            shard
                .node
                .metrics
                .module_pushes
                .with_label_values(&["failed"])
                .inc();
            Err(anyhow!(
                "sending module {}/{} to {addr}: {error}",
                function.user,
                function.name
            ))
        }
    }
}

/// Sends a freshly uploaded function to every other node, all at once, and
/// waits for them. A node that cannot be reached now is logged; it is sent
/// the module when a funclet of it is first offered to it.
pub async fn propagate(shard: &LocalShard, function: &Arc<Function>) {
    let Some(peers) = shard.peers.as_ref() else {
        return;
    };
    let pushes = peers.nodes.iter().map(|node| async move {
        if let Err(error) = push_module(shard, node.transport, function).await {
            tracing::warn!(peer = %node.name, error = format!("{error:#}"), "function not sent to a peer");
        }
    });
    futures::future::join_all(pushes).await;
}

/// Answers a pushed module: stores and compiles it unless this node has
/// that very module already.
pub async fn answer_module(shard: &LocalShard, upload: ModuleUpload) -> Message {
    let node = &shard.node;
    let hash = hex::encode(upload.hash);
    if node
        .registry
        .get(&upload.user, &upload.function)
        .is_some_and(|f| f.wasm_sha256 == hash)
    {
        return Message::ModuleStored { hash: upload.hash };
    }
    if Sha256::digest(&upload.wasm).as_slice() != upload.hash {
        return Message::error(
            ErrorCode::BadRequest,
            format!(
                "module {}/{}: the wasm does not match its hash",
                upload.user, upload.function
            ),
        );
    }
    match node
        .registry
        .upload(
            &node.executor,
            &upload.user,
            &upload.function,
            upload.wasm.to_vec(),
        )
        .await
    {
        Ok(_) => {
            tracing::info!(user = %upload.user, function = %upload.function, "function received from a peer");
            Message::ModuleStored { hash: upload.hash }
        }
        Err(error) => Message::error(ErrorCode::BadRequest, error.to_string()),
    }
}

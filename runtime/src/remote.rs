//! Objects held by other nodes, reached over their HTTP object API
//! (`/o/`): what a compute node uses when the objects live on storage
//! nodes' embedded stores. Connections are kept per shard and per peer.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};

use crate::http::GlommioIo;

/// Bound on idle connections kept per peer on one shard.
const IDLE_CONNECTIONS_PER_PEER_MAX: usize = 16;
/// A remote object request that takes longer than this fails.
const REQUEST_MS_MAX: u64 = 30_000;

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("object request to {peer} failed: {reason}")]
    Failed { peer: SocketAddr, reason: String },
    #[error("object request to {peer} timed out after {ms} ms")]
    Timeout { peer: SocketAddr, ms: u64 },
}

/// A shard's HTTP/1.1 connections to its peers' upload ports.
#[derive(Default)]
pub struct PeerClient {
    idle: RefCell<HashMap<SocketAddr, Vec<SendRequest<Full<Bytes>>>>>,
}

/// A reply: status, the `Content-Range` total where given, body.
pub struct PeerReply {
    pub status: StatusCode,
    pub total_bytes: Option<u64>,
    pub body: Bytes,
}

impl PeerClient {
    pub fn new() -> Rc<PeerClient> {
        Rc::new(PeerClient::default())
    }

    /// Sends one request and reads the whole reply (at most `body_max` bytes).
    pub async fn request(
        &self,
        peer: SocketAddr,
        method: Method,
        path: &str,
        range: Option<(u64, u64)>,
        body: Bytes,
        body_max: usize,
    ) -> Result<PeerReply, RemoteError> {
        let failed = |reason: String| RemoteError::Failed { peer, reason };
        let request = async {
            let mut sender = self.connection(peer).await.map_err(failed)?;
            let mut builder = Request::builder()
                .method(method)
                .uri(path)
                .header(hyper::header::HOST, peer.to_string());
            if let Some((first, last)) = range {
                builder = builder.header(hyper::header::RANGE, format!("bytes={first}-{last}"));
            }
            let request = builder
                .body(Full::new(body))
                .map_err(|e| failed(e.to_string()))?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| failed(e.to_string()))?;
            let status = response.status();
            let total_bytes = response
                .headers()
                .get(hyper::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit('/').next())
                .and_then(|v| v.parse().ok());
            let body = Limited::new(response.into_body(), body_max)
                .collect()
                .await
                .map_err(|e| failed(format!("reading the reply: {e}")))?
                .to_bytes();
            self.give_back(peer, sender);
            Ok(PeerReply {
                status,
                total_bytes,
                body,
            })
        };
        glommio::timer::timeout(Duration::from_millis(REQUEST_MS_MAX), async {
            Ok(request.await)
        })
        .await
        .unwrap_or(Err(RemoteError::Timeout {
            peer,
            ms: REQUEST_MS_MAX,
        }))
    }

    async fn connection(&self, peer: SocketAddr) -> Result<SendRequest<Full<Bytes>>, String> {
        loop {
            let idle = self.idle.borrow_mut().get_mut(&peer).and_then(Vec::pop);
            match idle {
                Some(sender) if sender.is_ready() => return Ok(sender),
                Some(_) => continue, // closed by the peer meanwhile
                None => break,
            }
        }
        let stream = glommio::net::TcpStream::connect(peer)
            .await
            .map_err(|e| format!("connecting: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(GlommioIo(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        glommio::spawn_local(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "peer connection ended");
            }
        })
        .detach();
        Ok(sender)
    }

    fn give_back(&self, peer: SocketAddr, sender: SendRequest<Full<Bytes>>) {
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(peer).or_default();
        if list.len() < IDLE_CONNECTIONS_PER_PEER_MAX {
            list.push(sender);
        }
    }
}

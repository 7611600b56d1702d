//! The serving side: accept connections and answer each request with a
//! handler's reply.
//!
//! Everything a listener does lives inside the one future that [`serve`]
//! returns: its connections, their readers and writers and the handlers
//! running for them. Dropping that future (or cancelling its task) closes
//! the listener and every connection it accepted.

use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use futures::future::{select, Either};
use futures::stream::{FuturesUnordered, StreamExt};
use futures_lite::io::ReadHalf;
use glommio::channels::local_channel::{self, LocalSender};
use glommio::net::{TcpListener, TcpStream};

use crate::auth::{self, Handshake, Role};
use crate::config::TransportConfig;
use crate::connection::{dup_socket, with_deadline, Stream};
use crate::error::TransportError;
use crate::frame::{read_frame, write_frames, FrameFlags, OutgoingFrame};
use crate::link::{Link, LinkOffer};
use crate::message::{Capabilities, ErrorCode, Hello, Message, PROTOCOL_VERSION};

/// Serves `listener` until the returned future is dropped or accepting
/// fails for good. Each request is answered with `handler(request)`; many
/// run at once (up to `requests_in_flight_max` per connection, each as its
/// own future on this shard). Hello is answered here: handlers never see it.
pub async fn serve<H, F>(
    listener: TcpListener,
    config: TransportConfig,
    handler: H,
) -> Result<(), TransportError>
where
    H: Fn(Message) -> F + 'static,
    F: Future<Output = Message> + 'static,
{
    config.validate()?;
    let config = Rc::new(config);
    let handler = Rc::new(handler);
    // Accepting runs in its own task: glommio keeps a waker for every poll
    // of a pending accept, so it must be polled only when woken, not each
    // time a connection of ours makes progress. The task handle lives in
    // this future; dropping the future cancels it and closes the listener.
    let (accepted_tx, mut accepted) = futures::channel::mpsc::channel::<TcpStream>(0);
    let acceptor = glommio::spawn_local(accept_loop(listener, accepted_tx));
    let mut connections = FuturesUnordered::new();
    loop {
        let next = std::future::poll_fn(|cx| {
            while let Poll::Ready(Some(())) = connections.poll_next_unpin(cx) {}
            if connections.len() >= config.connections_max {
                // Full: new connections wait in the backlog until one of
                // ours ends (which wakes this).
                return Poll::Pending;
            }
            accepted.poll_next_unpin(cx)
        })
        .await;
        match next {
            Some(stream) => {
                connections.push(serve_connection(stream, config.clone(), handler.clone()))
            }
            // The acceptor ended: the listener failed for good.
            None => return acceptor.await,
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    mut accepted: futures::channel::mpsc::Sender<TcpStream>,
) -> Result<(), TransportError> {
    use futures::SinkExt;
    loop {
        match listener.accept().await {
            Ok(stream) => {
                if accepted.send(stream).await.is_err() {
                    return Ok(()); // serve() is gone
                }
            }
            Err(error) => {
                let error: std::io::Error = error.into();
                match error.raw_os_error() {
                    Some(
                        libc::EMFILE
                        | libc::ENFILE
                        | libc::ENOBUFS
                        | libc::ENOMEM
                        | libc::ECONNABORTED,
                    ) => {
                        tracing::warn!(%error, "accepting a connection; retrying in 10 ms");
                        glommio::timer::sleep(Duration::from_millis(10)).await;
                    }
                    _ => return Err(TransportError::io("accepting a connection", error)),
                }
            }
        }
    }
}

async fn serve_connection<H, F>(stream: TcpStream, config: Rc<TransportConfig>, handler: Rc<H>)
where
    H: Fn(Message) -> F + 'static,
    F: Future<Output = Message> + 'static,
{
    let peer = stream.peer_addr().ok();
    // Best effort: a socket that refuses these still works, only slower.
    let _ = stream.set_nodelay(true);
    let socket = match dup_socket(&stream) {
        Ok(socket) => socket,
        Err(error) => {
            tracing::warn!(?peer, %error, "duplicating an accepted socket");
            return;
        }
    };
    let (input, output) = futures_lite::io::split(stream.buffered());
    let (outgoing, frames) = local_channel::new_bounded(config.requests_in_flight_max);
    let reader = pin!(read_requests(
        input,
        Rc::new(outgoing),
        config.clone(),
        handler
    ));
    let writer = pin!(write_frames(output, frames, config.frame_write_timeout()));
    let result = match select(reader, writer).await {
        Either::Left((result, writer)) => {
            // The reader is done and has dropped its senders: let the writer
            // flush what is queued (such as an Error answer) and end.
            let _ = writer.await;
            result
        }
        Either::Right((result, _reader)) => result,
    };
    match result {
        Ok(()) | Err(TransportError::PeerClosed) => tracing::debug!(?peer, "connection ended"),
        Err(error) => tracing::warn!(?peer, %error, "closed a connection after an error"),
    }
    // SAFETY: shutdown() on a descriptor we own.
    unsafe {
        libc::shutdown(std::os::fd::AsRawFd::as_raw_fd(&socket), libc::SHUT_RDWR);
    }
}

async fn answer(
    outgoing: &LocalSender<OutgoingFrame>,
    id: u64,
    message: &Message,
    frame_bytes_max: u32,
) {
    let frame =
        OutgoingFrame::new(id, FrameFlags::RESPONSE, message, frame_bytes_max).or_else(|error| {
            tracing::warn!(%error, kind = message.kind().name(), "an answer could not be framed");
            OutgoingFrame::new(
                id,
                FrameFlags::RESPONSE,
                &Message::error(
                    ErrorCode::Internal,
                    format!("the answer could not be framed: {error}"),
                ),
                frame_bytes_max,
            )
        });
    if let Ok(frame) = frame {
        // Fails only when the writer has gone, i.e. the connection is closing.
        let _ = outgoing.send(frame).await;
    }
}

async fn respond<H, F>(
    handler: Rc<H>,
    request: Message,
    id: u64,
    outgoing: Rc<LocalSender<OutgoingFrame>>,
    frame_bytes_max: u32,
) where
    H: Fn(Message) -> F + 'static,
    F: Future<Output = Message> + 'static,
{
    let reply = handler(request).await;
    answer(&outgoing, id, &reply, frame_bytes_max).await;
}

/// Our side of the Hello exchange, as the accepting node: returns the peer's
/// Hello and the settled link. With a cluster secret the peer must send a
/// nonce, check our proof, and prove the secret in a second Hello before
/// anything else is read (`auth.rs`); until then no queue pair is set up
/// for it.
async fn hello_exchange(
    input: &mut ReadHalf<Stream>,
    outgoing: &LocalSender<OutgoingFrame>,
    config: &TransportConfig,
) -> Result<(Hello, Link), TransportError> {
    let max = config.frame_bytes_max;
    let (id, peer) = read_hello(input, outgoing, config).await?;
    let Some(secret) = &config.secret else {
        let link = answer_hello(outgoing, id, config, &peer).await?;
        return Ok((peer, link));
    };
    let Some(client_nonce) = peer.nonce else {
        return Err(refuse(
            outgoing,
            id,
            max,
            format!(
                "{} sent no proof of the cluster secret, which this node requires",
                peer.node_name
            ),
        )
        .await);
    };
    let server_nonce = auth::nonce()?;
    let handshake = Handshake {
        client_nonce: &client_nonce,
        server_nonce: &server_nonce,
        client_name: &peer.node_name,
        server_name: &config.node_name,
    };
    let challenge = Message::Hello(Hello {
        version: PROTOCOL_VERSION,
        node_name: config.node_name.clone(),
        capabilities: config.capabilities.without(Capabilities::RDMA),
        rdma: None,
        nonce: Some(server_nonce),
        proof: Some(secret.prove(Role::Server, &handshake)),
    });
    answer(outgoing, id, &challenge, max).await;
    let (id, proof) = read_hello(input, outgoing, config).await?;
    let proven = proof
        .proof
        .is_some_and(|proof| secret.verify(Role::Client, &handshake, &proof));
    if !proven {
        return Err(refuse(
            outgoing,
            id,
            max,
            format!(
                "{}'s proof does not match this node's cluster secret",
                peer.node_name
            ),
        )
        .await);
    }
    // The queue pair follows the proof: its endpoint is in this Hello.
    let link = answer_hello(outgoing, id, config, &proof).await?;
    Ok((peer, link))
}

/// Reads one Hello of our protocol version; anything else is answered with
/// an error and ends the connection.
async fn read_hello(
    input: &mut ReadHalf<Stream>,
    outgoing: &LocalSender<OutgoingFrame>,
    config: &TransportConfig,
) -> Result<(u64, Hello), TransportError> {
    let max = config.frame_bytes_max;
    let frame = read_frame(input, max, config.frame_read_timeout()).await?;
    let id = frame.header.correlation_id;
    if frame.header.flags.contains(FrameFlags::RESPONSE) {
        return Err(TransportError::bad_frame(
            "an answer arrived on a serving connection",
        ));
    }
    let peer = match frame.message() {
        Ok(Message::Hello(hello)) => hello,
        Ok(other) => {
            answer(
                outgoing,
                id,
                &Message::error(
                    ErrorCode::BadRequest,
                    format!("expected Hello, got {}", other.kind().name()),
                ),
                max,
            )
            .await;
            return Err(TransportError::UnexpectedMessage {
                expected: "Hello",
                got: other.kind().name(),
            });
        }
        Err(error) => {
            answer(
                outgoing,
                id,
                &Message::error(ErrorCode::BadRequest, error.to_string()),
                max,
            )
            .await;
            return Err(error);
        }
    };
    if peer.version != PROTOCOL_VERSION {
        let refusal = Message::error(
            ErrorCode::VersionMismatch,
            format!(
                "this node speaks protocol version {PROTOCOL_VERSION}, not {}",
                peer.version
            ),
        );
        answer(outgoing, id, &refusal, max).await;
        return Err(TransportError::VersionMismatch {
            ours: PROTOCOL_VERSION,
            peer: peer.version,
        });
    }
    Ok((id, peer))
}

/// Settles the link from the peer's Hello and answers with ours.
async fn answer_hello(
    outgoing: &LocalSender<OutgoingFrame>,
    id: u64,
    config: &TransportConfig,
    peer: &Hello,
) -> Result<Link, TransportError> {
    let offer = if peer.rdma.is_some() {
        LinkOffer::prepare(config)
    } else {
        LinkOffer::tcp()
    };
    let endpoint = offer.endpoint();
    let link = Link::negotiate(offer, peer.rdma.as_ref())?;
    let mut capabilities = config.capabilities.without(Capabilities::RDMA);
    if endpoint.is_some() {
        capabilities = capabilities.with(Capabilities::RDMA);
    }
    let hello = Message::Hello(Hello {
        version: PROTOCOL_VERSION,
        node_name: config.node_name.clone(),
        capabilities,
        rdma: endpoint,
        nonce: None,
        proof: None,
    });
    answer(outgoing, id, &hello, config.frame_bytes_max).await;
    Ok(link)
}

/// Answers `id` with an Unauthenticated error; returns the error that ends
/// the connection.
async fn refuse(
    outgoing: &LocalSender<OutgoingFrame>,
    id: u64,
    frame_bytes_max: u32,
    reason: String,
) -> TransportError {
    answer(
        outgoing,
        id,
        &Message::error(ErrorCode::Unauthenticated, reason.clone()),
        frame_bytes_max,
    )
    .await;
    TransportError::Unauthenticated { reason }
}

/// Reads the Hello, then requests, starting a handler for each. Returns when
/// the peer closes or breaks the protocol; its in-flight handlers are dropped
/// with it.
async fn read_requests<H, F>(
    mut input: ReadHalf<Stream>,
    outgoing: Rc<LocalSender<OutgoingFrame>>,
    config: Rc<TransportConfig>,
    handler: Rc<H>,
) -> Result<(), TransportError>
where
    H: Fn(Message) -> F + 'static,
    F: Future<Output = Message> + 'static,
{
    let max = config.frame_bytes_max;
    // A peer gets `connect_ms_max` for the whole exchange, as a connecting
    // node gives itself: one that connects and says nothing holds a
    // connection slot no longer.
    let (peer, link) = with_deadline(
        config.connect_timeout(),
        hello_exchange(&mut input, &outgoing, &config),
    )
    .await?;
    tracing::debug!(peer = %peer.node_name, link = ?link.kind(), "serving a connection");

    let mut handling = FuturesUnordered::new();
    loop {
        let frame = {
            let mut read = pin!(read_frame(&mut input, max, config.frame_read_timeout()));
            std::future::poll_fn(|cx| {
                while let Poll::Ready(Some(())) = handling.poll_next_unpin(cx) {}
                if handling.len() >= config.requests_in_flight_max {
                    // Stop reading until a handler finishes: the peer's
                    // requests back up in TCP, not in our memory.
                    return Poll::Pending;
                }
                read.as_mut().poll(cx)
            })
            .await?
        };
        let id = frame.header.correlation_id;
        if frame.header.flags.contains(FrameFlags::RESPONSE) {
            return Err(TransportError::bad_frame(
                "an answer arrived on a serving connection",
            ));
        }
        match link.decode(&frame).await {
            Ok(Message::Hello(_)) => {
                answer(
                    &outgoing,
                    id,
                    &Message::error(ErrorCode::BadRequest, "Hello after the handshake"),
                    max,
                )
                .await
            }
            Ok(request) => {
                handling.push(respond(handler.clone(), request, id, outgoing.clone(), max))
            }
            Err(error) => {
                answer(
                    &outgoing,
                    id,
                    &Message::error(ErrorCode::BadRequest, error.to_string()),
                    max,
                )
                .await;
                return Err(error);
            }
        }
    }
}

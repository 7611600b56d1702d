//! The client side of one TCP connection to a peer: many requests in flight,
//! told apart by correlation id.
//!
//! Two tasks per connection, both on the shard that opened it: a writer that
//! owns the socket's write half and writes queued frames whole (a request
//! that times out never leaves half a frame behind), and a reader that owns
//! the read half and hands each response to the request waiting for its id.
//! Any read or write error closes the connection and fails every waiting
//! request with that error at once; the pool then opens a new connection.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;

use futures::channel::oneshot;
use futures_lite::io::{ReadHalf, WriteHalf};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::{Preallocated, TcpStream};
use glommio::sync::Semaphore;
use glommio::Task;

use crate::auth::{self, Handshake, Role};
use crate::config::TransportConfig;
use crate::error::TransportError;
use crate::frame::{read_frame, write_frames, Frame, FrameFlags, OutgoingFrame};
use crate::link::{Link, LinkKind, LinkOffer};
use crate::message::{Capabilities, ErrorCode, Hello, Message, PROTOCOL_VERSION};

pub(crate) type Stream = TcpStream<Preallocated>;

type Reply = Result<Message, TransportError>;

/// One multiplexed connection to a peer. Dropping it closes the socket.
pub struct Connection {
    shared: Rc<Shared>,
    peer: Hello,
    link: Link,
    _reader: Task<()>,
    _writer: Task<()>,
}

struct Shared {
    peer_addr: SocketAddr,
    config: Rc<TransportConfig>,
    /// A duplicate of the socket, only to shut it down: it stays valid
    /// while the tasks that own the stream are being cancelled.
    socket: OwnedFd,
    pending: RefCell<HashMap<u64, oneshot::Sender<Reply>>>,
    next_id: Cell<u64>,
    closed: Cell<bool>,
    in_flight: Semaphore,
    outgoing: LocalSender<OutgoingFrame>,
    /// The queue pair page payloads go by, once Hello settled on RDMA.
    #[cfg(feature = "rdma")]
    rdma: RefCell<Option<Rc<crate::rdma::QueuePair>>>,
}

impl Connection {
    /// Connects, exchanges Hellos and settles the link (RDMA or TCP), all
    /// within `config.connect_ms_max`.
    pub async fn connect(
        addr: SocketAddr,
        config: &TransportConfig,
    ) -> Result<Connection, TransportError> {
        Connection::connect_shared(addr, Rc::new(config.clone())).await
    }

    pub(crate) async fn connect_shared(
        addr: SocketAddr,
        config: Rc<TransportConfig>,
    ) -> Result<Connection, TransportError> {
        let connect_error = |source: std::io::Error| TransportError::Connect {
            addr,
            source: std::sync::Arc::new(source),
        };
        let stream = TcpStream::connect_timeout(addr, config.connect_timeout())
            .await
            .map_err(|error| connect_error(error.into()))?;
        stream
            .set_nodelay(true)
            .map_err(|error| connect_error(error.into()))?;
        let socket = dup_socket(&stream).map_err(connect_error)?;
        let (shared, reader, writer) = start(stream.buffered(), socket, addr, config.clone());

        let offer = LinkOffer::prepare(&config);
        // The whole exchange (one Hello each way, two with a cluster
        // secret) within the connect budget.
        let peer = with_deadline(
            config.connect_timeout(),
            hello_exchange(&shared, &config, offer.endpoint()),
        )
        .await;
        let peer = match peer {
            Ok(peer) => peer,
            Err(error) => {
                shared.close(&error);
                return Err(error);
            }
        };
        let link = match Link::negotiate(offer, peer.rdma.as_ref()) {
            Ok(link) => link,
            Err(error) => {
                shared.close(&error);
                return Err(error);
            }
        };
        #[cfg(feature = "rdma")]
        {
            *shared.rdma.borrow_mut() = link.queue_pair().cloned();
        }
        tracing::debug!(%addr, peer = %peer.node_name, link = ?link.kind(), "connected");
        Ok(Connection {
            shared,
            peer,
            link,
            _reader: reader,
            _writer: writer,
        })
    }

    /// Sends `message` and waits up to `timeout` for its answer. A timeout
    /// leaves the connection up (a late answer is dropped); any other
    /// error has closed it.
    pub async fn request(
        &self,
        message: &Message,
        timeout: Duration,
    ) -> Result<Message, TransportError> {
        with_deadline(timeout, self.shared.request(message)).await
    }

    /// The peer's Hello.
    pub fn peer(&self) -> &Hello {
        &self.peer
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.shared.peer_addr
    }

    pub fn link_kind(&self) -> LinkKind {
        self.link.kind()
    }

    /// False once the connection has failed or been closed.
    pub fn is_alive(&self) -> bool {
        !self.shared.closed.get()
    }

    /// Requests waiting for their answers.
    pub fn in_flight(&self) -> usize {
        self.shared.pending.borrow().len()
    }

    /// Closes the socket and fails waiting requests with `PeerClosed`.
    pub fn close(&self) {
        self.shared.close(&TransportError::PeerClosed);
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.close(&TransportError::PeerClosed);
    }
}

/// Runs `work` for at most `limit`.
pub(crate) async fn with_deadline<T>(
    limit: Duration,
    work: impl std::future::Future<Output = Result<T, TransportError>>,
) -> Result<T, TransportError> {
    let expired = async {
        glommio::timer::sleep(limit).await;
        Err(TransportError::Timeout {
            ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
        })
    };
    futures_lite::future::or(work, expired).await
}

/// Our side of the Hello exchange; returns the peer's Hello whose RDMA
/// endpoint settles the link. With a cluster secret: our nonce out, the
/// peer's nonce and proof back (checked), our proof out, its last Hello
/// back. A peer that cannot prove the secret gets no request of ours.
async fn hello_exchange(
    shared: &Shared,
    config: &TransportConfig,
    endpoint: Option<crate::message::RdmaEndpoint>,
) -> Result<Hello, TransportError> {
    let mut capabilities = config.capabilities.without(Capabilities::RDMA);
    if endpoint.is_some() {
        capabilities = capabilities.with(Capabilities::RDMA);
    }
    let client_nonce = config.secret.as_ref().map(|_| auth::nonce()).transpose()?;
    let hello = |nonce, proof| {
        Message::Hello(Hello {
            version: PROTOCOL_VERSION,
            node_name: config.node_name.clone(),
            capabilities,
            rdma: endpoint,
            nonce,
            proof,
        })
    };
    let peer = peer_hello(shared.request(&hello(client_nonce, None)).await)?;
    let (Some(secret), Some(client_nonce)) = (&config.secret, client_nonce) else {
        return Ok(peer);
    };
    let (Some(server_nonce), Some(server_proof)) = (peer.nonce, peer.proof) else {
        return Err(TransportError::Unauthenticated {
            reason: format!(
                "{} did not prove the cluster secret (it has none configured?)",
                peer.node_name
            ),
        });
    };
    let handshake = Handshake {
        client_nonce: &client_nonce,
        server_nonce: &server_nonce,
        client_name: &config.node_name,
        server_name: &peer.node_name,
    };
    if !secret.verify(Role::Server, &handshake, &server_proof) {
        return Err(TransportError::Unauthenticated {
            reason: format!(
                "{}'s proof does not match our cluster secret (another secret?)",
                peer.node_name
            ),
        });
    }
    let proof = secret.prove(Role::Client, &handshake);
    let last = peer_hello(shared.request(&hello(None, Some(proof))).await)?;
    Ok(Hello {
        rdma: last.rdma,
        capabilities: last.capabilities,
        ..peer
    })
}

/// The peer's answer to one of our Hellos, checked.
fn peer_hello(reply: Reply) -> Result<Hello, TransportError> {
    match reply? {
        Message::Hello(peer) if peer.version == PROTOCOL_VERSION => Ok(peer),
        Message::Hello(peer) => Err(TransportError::VersionMismatch {
            ours: PROTOCOL_VERSION,
            peer: peer.version,
        }),
        Message::Error {
            code: ErrorCode::VersionMismatch,
            message,
        } => {
            tracing::warn!(%message, "peer refused our protocol version");
            Err(TransportError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                peer: 0,
            })
        }
        Message::Error {
            code: ErrorCode::Unauthenticated,
            message,
        } => Err(TransportError::Unauthenticated { reason: message }),
        other => Err(TransportError::UnexpectedMessage {
            expected: "Hello",
            got: other.kind().name(),
        }),
    }
}

pub(crate) fn dup_socket(stream: &TcpStream) -> std::io::Result<OwnedFd> {
    // SAFETY: dup() on a descriptor we own; the result is checked before
    // it is wrapped, and the new descriptor is owned by nothing else.
    let fd = unsafe { libc::dup(stream.as_raw_fd()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh, valid descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn start(
    stream: Stream,
    socket: OwnedFd,
    peer_addr: SocketAddr,
    config: Rc<TransportConfig>,
) -> (Rc<Shared>, Task<()>, Task<()>) {
    let (input, output) = futures_lite::io::split(stream);
    let (outgoing, frames) = local_channel::new_bounded(config.requests_in_flight_max);
    let shared = Rc::new(Shared {
        peer_addr,
        in_flight: Semaphore::new(config.requests_in_flight_max as u64),
        config,
        socket,
        pending: RefCell::new(HashMap::new()),
        next_id: Cell::new(1),
        closed: Cell::new(false),
        outgoing,
        #[cfg(feature = "rdma")]
        rdma: RefCell::new(None),
    });
    let reader = glommio::spawn_local(read_responses(shared.clone(), input));
    let writer = glommio::spawn_local(write_for(shared.clone(), output, frames));
    (shared, reader, writer)
}

/// Removes a request's waiter when the request ends for any reason, so a
/// timed-out request leaves nothing behind.
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.pending.borrow_mut().remove(&self.id);
    }
}

impl Shared {
    async fn request(&self, message: &Message) -> Reply {
        if self.closed.get() {
            return Err(TransportError::PeerClosed);
        }
        let _slot = self
            .in_flight
            .acquire_permit(1)
            .await
            .map_err(|_| TransportError::PeerClosed)?;
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        #[cfg(feature = "rdma")]
        if let Some((frame, slot)) = self.send_pages_by_rdma(id, message).await? {
            // The bytes are in the peer's buffer; the frame says so.
            return self.exchange(id, frame, Some(slot)).await;
        }
        let frame = OutgoingFrame::new(id, FrameFlags::NONE, message, self.config.frame_bytes_max)?;
        self.exchange(id, frame, None).await
    }

    /// Registers the waiter for `id`, queues `frame` and waits for the
    /// answer. `_hold` (an RDMA transfer slot) is released with the answer.
    async fn exchange(
        &self,
        id: u64,
        frame: OutgoingFrame,
        _hold: Option<glommio::sync::StaticPermit>,
    ) -> Reply {
        let (answer, answered) = oneshot::channel();
        self.pending.borrow_mut().insert(id, answer);
        let _guard = PendingGuard { shared: self, id };
        if self.closed.get() {
            return Err(TransportError::PeerClosed);
        }
        self.outgoing
            .send(frame)
            .await
            .map_err(|_| TransportError::PeerClosed)?;
        answered.await.map_err(|_| TransportError::PeerClosed)?
    }

    /// For a Pages request on an RDMA link: writes the page bytes into the
    /// peer's buffer and returns the frame that announces them, with the
    /// transfer slot to hold until the answer. `None` means "send by TCP".
    #[cfg(feature = "rdma")]
    async fn send_pages_by_rdma(
        &self,
        id: u64,
        message: &Message,
    ) -> Result<Option<(OutgoingFrame, glommio::sync::StaticPermit)>, TransportError> {
        let Message::Pages(pages) = message else {
            return Ok(None);
        };
        let Some(queue_pair) = self.rdma.borrow().clone() else {
            return Ok(None);
        };
        let data = pages.pages.data();
        if data.is_empty() || data.len() > queue_pair.capacity_bytes() {
            return Ok(None);
        }
        let slot = queue_pair.transfer_slot().await?;
        if let Err(error) = queue_pair.write_with_immediate(data, id as u32).await {
            // A failed WRITE leaves the queue pair in its error state.
            self.close(&error);
            return Err(error);
        }
        let frame = OutgoingFrame::with_page_bytes(
            id,
            FrameFlags::RDMA_PAYLOAD,
            message,
            self.config.frame_bytes_max,
            crate::codec::PageBytes::Elsewhere,
        )?;
        Ok(Some((frame, slot)))
    }

    /// Marks the connection dead, shuts the socket down (the reader and
    /// writer wake and end) and fails every waiting request with `cause`.
    fn close(&self, cause: &TransportError) {
        if self.closed.replace(true) {
            return;
        }
        // SAFETY: shutdown() on a descriptor this struct owns.
        unsafe {
            libc::shutdown(self.socket.as_raw_fd(), libc::SHUT_RDWR);
        }
        self.in_flight.close();
        let waiting: Vec<_> = self.pending.borrow_mut().drain().collect();
        match cause {
            TransportError::PeerClosed => {
                tracing::debug!(peer = %self.peer_addr, waiting = waiting.len(), "connection closed")
            }
            error => {
                tracing::warn!(peer = %self.peer_addr, waiting = waiting.len(), %error, "connection closed after an error")
            }
        }
        for (_, waiter) in waiting {
            let _ = waiter.send(Err(cause.clone()));
        }
    }
}

async fn read_responses(shared: Rc<Shared>, mut input: ReadHalf<Stream>) {
    let config = shared.config.clone();
    let error = loop {
        let frame = match read_frame(
            &mut input,
            config.frame_bytes_max,
            config.frame_read_timeout(),
        )
        .await
        {
            Ok(frame) => frame,
            Err(error) => break error,
        };
        if !frame.header.flags.contains(FrameFlags::RESPONSE) {
            break TransportError::bad_frame("a request arrived on a client connection");
        }
        let waiter = shared
            .pending
            .borrow_mut()
            .remove(&frame.header.correlation_id);
        let Some(waiter) = waiter else {
            // The request timed out; its answer is dropped unread.
            tracing::trace!(
                id = frame.header.correlation_id,
                "answer after its request gave up"
            );
            continue;
        };
        match decode_response(&frame) {
            Ok(message) => {
                let _ = waiter.send(Ok(message));
            }
            Err(error) => {
                let _ = waiter.send(Err(error.clone()));
                break error;
            }
        }
    };
    shared.close(&error);
}

fn decode_response(frame: &Frame) -> Result<Message, TransportError> {
    if frame.header.flags.contains(FrameFlags::RDMA_PAYLOAD) {
        // Only sent over a link that negotiated RDMA, which this side never
        // agrees to for answers.
        return Err(TransportError::bad_frame("RDMA payload flag on an answer"));
    }
    frame.message()
}

async fn write_for(
    shared: Rc<Shared>,
    output: WriteHalf<Stream>,
    frames: LocalReceiver<OutgoingFrame>,
) {
    if let Err(error) = write_frames(output, frames, shared.config.frame_write_timeout()).await {
        shared.close(&error);
    }
}

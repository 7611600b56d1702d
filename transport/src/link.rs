//! Which wire carries a connection's page payloads: TCP always works; RDMA
//! (feature `rdma`) is used when both nodes have a device and agree in Hello.
//!
//! Negotiation rides on the Hello exchange of every new connection:
//! 1. Each side calls [`LinkOffer::prepare`]: with a device it creates a
//!    queue pair and a registered receive buffer and describes them as an
//!    [`RdmaEndpoint`]; without one it offers nothing.
//! 2. The endpoints travel in the two Hellos.
//! 3. [`Link::negotiate`] connects our queue pair to the peer's when both
//!    offered one, and otherwise settles on TCP.
//!
//! A node without a device says so once in its log, then uses TCP.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

use crate::config::TransportConfig;
use crate::error::TransportError;
use crate::message::RdmaEndpoint;

#[cfg(feature = "rdma")]
use crate::rdma;

/// The wire a connection's page payloads use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkKind {
    Tcp,
    Rdma,
}

/// What this side offers in its Hello.
pub struct LinkOffer {
    #[cfg(feature = "rdma")]
    queue_pair: Option<rdma::QueuePair>,
}

/// The settled link of one connection.
pub struct Link {
    kind: LinkKind,
    #[cfg(feature = "rdma")]
    queue_pair: Option<std::rc::Rc<rdma::QueuePair>>,
}

/// Times the "using TCP" notice was logged (once per process).
static TCP_NOTICES: AtomicUsize = AtomicUsize::new(0);
static TCP_NOTICE: Once = Once::new();

fn log_tcp_once(reason: &'static str) {
    TCP_NOTICE.call_once(|| {
        TCP_NOTICES.fetch_add(1, Ordering::Relaxed);
        tracing::info!("{reason}; using TCP");
    });
}

impl LinkOffer {
    /// A TCP-only offer.
    pub fn tcp() -> LinkOffer {
        LinkOffer {
            #[cfg(feature = "rdma")]
            queue_pair: None,
        }
    }

    /// Prepares this side of a connection: a queue pair when RDMA is
    /// enabled in `config` and a device exists. Never fails: any verbs
    /// error means TCP.
    pub fn prepare(config: &TransportConfig) -> LinkOffer {
        if !config.rdma {
            return LinkOffer::tcp();
        }
        #[cfg(feature = "rdma")]
        {
            match rdma::QueuePair::create() {
                Ok(Some(queue_pair)) => LinkOffer {
                    queue_pair: Some(queue_pair),
                },
                Ok(None) => {
                    log_tcp_once("no RDMA device found");
                    LinkOffer::tcp()
                }
                Err(error) => {
                    tracing::warn!(%error, "setting up an RDMA queue pair; this connection uses TCP");
                    LinkOffer::tcp()
                }
            }
        }
        #[cfg(not(feature = "rdma"))]
        {
            log_tcp_once("built without the rdma feature");
            LinkOffer::tcp()
        }
    }

    /// The endpoint to put in our Hello, if we offer RDMA.
    pub fn endpoint(&self) -> Option<RdmaEndpoint> {
        #[cfg(feature = "rdma")]
        {
            self.queue_pair
                .as_ref()
                .map(|queue_pair| queue_pair.endpoint())
        }
        #[cfg(not(feature = "rdma"))]
        {
            None
        }
    }
}

impl Link {
    pub fn tcp() -> Link {
        Link {
            kind: LinkKind::Tcp,
            #[cfg(feature = "rdma")]
            queue_pair: None,
        }
    }

    /// Settles the link from our offer and the peer's Hello endpoint: RDMA
    /// only when both sides offered it and our queue pair connects to the
    /// peer's.
    pub fn negotiate(
        offer: LinkOffer,
        peer: Option<&RdmaEndpoint>,
    ) -> Result<Link, TransportError> {
        #[cfg(feature = "rdma")]
        {
            if let (Some(mut queue_pair), Some(peer)) = (offer.queue_pair, peer) {
                queue_pair.connect(peer)?;
                return Ok(Link {
                    kind: LinkKind::Rdma,
                    queue_pair: Some(std::rc::Rc::new(queue_pair)),
                });
            }
        }
        #[cfg(not(feature = "rdma"))]
        let _ = (offer, peer);
        Ok(Link::tcp())
    }

    pub fn kind(&self) -> LinkKind {
        self.kind
    }

    /// Decodes a request frame that arrived on this link. A frame whose
    /// page bytes came by RDMA takes them from the queue pair's receive
    /// buffer; on a TCP link such a frame is refused.
    pub(crate) async fn decode(
        &self,
        frame: &crate::frame::Frame,
    ) -> Result<crate::message::Message, TransportError> {
        if !frame
            .header
            .flags
            .contains(crate::frame::FrameFlags::RDMA_PAYLOAD)
        {
            return frame.message();
        }
        #[cfg(feature = "rdma")]
        if let Some(queue_pair) = &self.queue_pair {
            let pages = queue_pair.receive(frame.header.correlation_id).await?;
            return crate::codec::decode_with_pages(frame.header.kind, &frame.payload, pages);
        }
        Err(TransportError::bad_frame("RDMA payload flag on a TCP link"))
    }

    #[cfg(feature = "rdma")]
    pub(crate) fn queue_pair(&self) -> Option<&std::rc::Rc<rdma::QueuePair>> {
        self.queue_pair.as_ref()
    }
}

/// How many times this process has logged that it uses TCP for want of
/// RDMA: at most once.
pub fn tcp_notices() -> usize {
    TCP_NOTICES.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> RdmaEndpoint {
        RdmaEndpoint {
            qp_number: 0x11,
            packet_sequence: 0x22,
            lid: 3,
            gid: [7; 16],
            mtu: 5,
            recv_address: 0x7f00_0000_1000,
            recv_key: 0x44,
            recv_bytes: 1 << 20,
        }
    }

    #[test]
    fn tcp_when_either_side_offers_nothing() -> Result<(), TransportError> {
        assert_eq!(
            Link::negotiate(LinkOffer::tcp(), None)?.kind(),
            LinkKind::Tcp
        );
        // The peer offers a queue pair, we have none: TCP.
        assert_eq!(
            Link::negotiate(LinkOffer::tcp(), Some(&endpoint()))?.kind(),
            LinkKind::Tcp
        );
        Ok(())
    }

    #[test]
    fn no_device_means_tcp_and_one_notice() {
        #[cfg(feature = "rdma")]
        if !crate::rdma::device_names().is_empty() {
            return; // a machine with a device offers RDMA; see rdma::tests
        }
        let config = TransportConfig::new("n1");
        for _ in 0..3 {
            let offer = LinkOffer::prepare(&config);
            // This machine has no RDMA device (or the feature is off).
            assert_eq!(offer.endpoint(), None);
        }
        assert_eq!(tcp_notices(), 1);
    }

    #[test]
    fn rdma_disabled_in_config_offers_nothing() {
        let mut config = TransportConfig::new("n1");
        config.rdma = false;
        assert_eq!(LinkOffer::prepare(&config).endpoint(), None);
    }
}

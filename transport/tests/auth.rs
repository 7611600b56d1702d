//! The cluster secret over real loopback TCP: peers that share it connect;
//! a peer with another secret, or none, is refused at Hello on either side
//! and its requests never reach a handler; the secret never crosses the
//! wire.

mod common;

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{bail, ensure};
use common::{
    bind, closed_within, config, connect, read_raw_frame, run, write_message, PATIENCE_MS,
};
use ferry_transport::{
    serve, ClusterSecret, Connection, ErrorCode, FrameFlags, Hello, Message, TransportConfig,
    TransportError, PROTOCOL_VERSION,
};
use glommio::Task;

const LONG: Duration = Duration::from_secs(10);
const SECRET: &[u8] = b"the cluster's shared secret, 42 bytes long";

fn with_secret(name: &str, secret: Option<&[u8]>) -> anyhow::Result<TransportConfig> {
    let mut config = config(name);
    config.secret = secret.map(ClusterSecret::new).transpose()?;
    Ok(config)
}

/// A server's task; dropping it stops the server.
type Server = Task<Result<(), TransportError>>;

/// An echo server that counts the requests its handler sees.
fn counting_server(secret: Option<&[u8]>) -> anyhow::Result<(SocketAddr, Rc<Cell<u32>>, Server)> {
    let (listener, addr) = bind()?;
    let served = Rc::new(Cell::new(0));
    let count = served.clone();
    let task = glommio::spawn_local(serve(
        listener,
        with_secret("storage", secret)?,
        move |request| {
            count.set(count.get() + 1);
            async move { request }
        },
    ));
    Ok((addr, served, task))
}

fn object_read() -> Message {
    Message::ObjectRead {
        user: "alice".into(),
        key: b"private".to_vec(),
        offset: 0,
        len_max: 1 << 20,
        store: ferry_transport::Store::Objects,
    }
}

fn raw_hello(nonce: Option<[u8; 32]>, proof: Option<[u8; 32]>) -> Message {
    Message::Hello(Hello {
        version: PROTOCOL_VERSION,
        node_name: "intruder".into(),
        capabilities: ferry_transport::Capabilities::NONE,
        rdma: None,
        nonce,
        proof,
    })
}

fn is_unauthenticated(message: &Message) -> bool {
    matches!(
        message,
        Message::Error {
            code: ErrorCode::Unauthenticated,
            ..
        }
    )
}

#[test]
fn peers_sharing_the_secret_connect_and_are_served() -> anyhow::Result<()> {
    run(|| async {
        let (addr, served, _server) = counting_server(Some(SECRET))?;
        let connection = Connection::connect(addr, &with_secret("compute", Some(SECRET))?).await?;
        ensure!(connection.peer().node_name == "storage");
        let message = object_read();
        ensure!(connection.request(&message, LONG).await? == message);
        ensure!(served.get() == 1);
        Ok(())
    })
}

#[test]
fn a_client_with_another_secret_or_none_is_refused_and_served_nothing() -> anyhow::Result<()> {
    run(|| async {
        let (addr, served, _server) = counting_server(Some(SECRET))?;
        let wrong = with_secret("compute", Some(b"not the cluster's secret at all"))?;
        match Connection::connect(addr, &wrong).await {
            Err(TransportError::Unauthenticated { .. }) => {}
            Err(other) => bail!("another secret failed with {other}, not Unauthenticated"),
            Ok(_) => bail!("a client with another secret connected"),
        }
        match Connection::connect(addr, &with_secret("compute", None)?).await {
            Err(TransportError::Unauthenticated { reason }) => {
                ensure!(reason.contains("no proof"), "{reason}")
            }
            Err(other) => bail!("no secret failed with {other}, not Unauthenticated"),
            Ok(_) => bail!("a client without the secret connected"),
        }
        ensure!(served.get() == 0, "{} requests were served", served.get());
        Ok(())
    })
}

#[test]
fn a_raw_peer_cannot_skip_or_forge_the_proof() -> anyhow::Result<()> {
    run(|| async {
        let (addr, served, _server) = counting_server(Some(SECRET))?;

        // Hello without a nonce: refused at once, then closed.
        let mut stream = connect(addr).await?;
        write_message(&mut stream, 1, FrameFlags::NONE, &raw_hello(None, None)).await?;
        let answer = read_raw_frame(&mut stream).await?.message()?;
        ensure!(is_unauthenticated(&answer), "{answer:?}");
        ensure!(closed_within(&mut stream, PATIENCE_MS).await);

        // A nonce, then a request instead of the proof: refused, not served.
        let mut stream = connect(addr).await?;
        write_message(
            &mut stream,
            1,
            FrameFlags::NONE,
            &raw_hello(Some([7; 32]), None),
        )
        .await?;
        let Message::Hello(challenge) = read_raw_frame(&mut stream).await?.message()? else {
            bail!("expected the server's Hello");
        };
        ensure!(challenge.nonce.is_some() && challenge.proof.is_some());
        ensure!(
            challenge.rdma.is_none(),
            "a queue pair offered before the peer proved the secret"
        );
        write_message(&mut stream, 2, FrameFlags::NONE, &object_read()).await?;
        let answer = read_raw_frame(&mut stream).await?.message()?;
        ensure!(
            matches!(
                answer,
                Message::Error {
                    code: ErrorCode::BadRequest,
                    ..
                }
            ),
            "{answer:?}"
        );
        ensure!(closed_within(&mut stream, PATIENCE_MS).await);

        // A nonce, then a made-up proof (replaying the server's own proof).
        let mut stream = connect(addr).await?;
        write_message(
            &mut stream,
            1,
            FrameFlags::NONE,
            &raw_hello(Some([7; 32]), None),
        )
        .await?;
        let Message::Hello(challenge) = read_raw_frame(&mut stream).await?.message()? else {
            bail!("expected the server's Hello");
        };
        write_message(
            &mut stream,
            2,
            FrameFlags::NONE,
            &raw_hello(None, challenge.proof),
        )
        .await?;
        let answer = read_raw_frame(&mut stream).await?.message()?;
        ensure!(is_unauthenticated(&answer), "{answer:?}");
        ensure!(closed_within(&mut stream, PATIENCE_MS).await);

        ensure!(served.get() == 0, "{} requests were served", served.get());
        Ok(())
    })
}

#[test]
fn a_client_with_the_secret_sends_nothing_to_a_server_without_it() -> anyhow::Result<()> {
    run(|| async {
        for server_secret in [None, Some(&b"a different secret of this cluster"[..])] {
            let (addr, served, _server) = counting_server(server_secret)?;
            let client = with_secret("compute", Some(SECRET))?;
            match Connection::connect(addr, &client).await {
                Err(TransportError::Unauthenticated { .. }) => {}
                Err(other) => bail!("failed with {other}, not Unauthenticated"),
                Ok(_) => bail!("connected to a server that cannot prove the secret"),
            }
            ensure!(served.get() == 0);
        }
        Ok(())
    })
}

#[test]
fn the_secret_never_crosses_the_wire() -> anyhow::Result<()> {
    run(|| async {
        let (addr, _served, _server) = counting_server(Some(SECRET))?;
        let mut stream = connect(addr).await?;
        write_message(
            &mut stream,
            1,
            FrameFlags::NONE,
            &raw_hello(Some([7; 32]), None),
        )
        .await?;
        let frame = read_raw_frame(&mut stream).await?;
        let Message::Hello(challenge) = frame.message()? else {
            bail!("expected the server's Hello");
        };
        ensure!(!frame
            .payload
            .windows(SECRET.len())
            .any(|window| window == SECRET));
        // A second handshake proves with fresh nonces: nothing to replay.
        let mut again = connect(addr).await?;
        write_message(
            &mut again,
            1,
            FrameFlags::NONE,
            &raw_hello(Some([7; 32]), None),
        )
        .await?;
        let Message::Hello(second) = read_raw_frame(&mut again).await?.message()? else {
            bail!("expected the server's Hello");
        };
        ensure!(challenge.nonce != second.nonce && challenge.proof != second.proof);
        Ok(())
    })
}

#[test]
fn a_peer_that_says_nothing_is_dropped_after_the_connect_budget() -> anyhow::Result<()> {
    run(|| async {
        let (addr, _served, _server) = counting_server(Some(SECRET))?;
        let mut stream = connect(addr).await?;
        // connect_ms_max is 1 s: the server gives up on the Hello by then.
        ensure!(closed_within(&mut stream, PATIENCE_MS).await);
        Ok(())
    })
}

#[test]
fn a_pooled_request_to_a_peer_that_refuses_the_proof_fails_at_once() -> anyhow::Result<()> {
    run(|| async {
        let (addr, served, _server) = counting_server(Some(SECRET))?;
        let pool = ferry_transport::PeerPool::new(with_secret(
            "compute",
            Some(b"another secret, same length!!"),
        )?)?;
        match pool.request(addr, &object_read(), LONG).await {
            Err(TransportError::Unauthenticated { .. }) => {}
            other => bail!("a refused peer answered {other:?}"),
        }
        // One attempt, not retries until the 10 s budget is spent: a
        // refusal is final.
        let peer = pool.peer(addr)?;
        ensure!(
            peer.connect_failures() == 1 && peer.connects() == 0,
            "{} failed connects, {} connects",
            peer.connect_failures(),
            peer.connects()
        );
        ensure!(served.get() == 0);
        Ok(())
    })
}

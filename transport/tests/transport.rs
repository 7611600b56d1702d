//! The transport over real loopback TCP: round trips, multiplexing, failures
//! and reconnects. Every test runs its own glommio executor and binds
//! 127.0.0.1 port 0.

mod common;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use bytes::Bytes;
use common::{
    accept, accept_hello, bind, closed_within, config, connect, read_raw_frame, run, send_hello,
    wait_until, write_message, PATIENCE, PATIENCE_MS,
};
use ferry_transport::{
    serve, testing, Connection, ErrorCode, FrameFlags, Hello, LinkKind, Message, PeerPool,
    TransportError, PROTOCOL_VERSION,
};
use futures_lite::AsyncWriteExt;
use glommio::net::TcpListener;
use glommio::Task;

const LONG: Duration = Duration::from_secs(10);

/// A server on 127.0.0.1 that echoes every request back.
fn echo_server() -> anyhow::Result<(SocketAddr, Task<Result<(), TransportError>>)> {
    let (listener, addr) = bind()?;
    let task = glommio::spawn_local(serve(
        listener,
        config("echo"),
        |request| async move { request },
    ));
    Ok((addr, task))
}

#[test]
fn every_kind_round_trips_over_tcp() -> anyhow::Result<()> {
    run(|| async {
        let (addr, _server) = echo_server()?;
        let connection = Connection::connect(addr, &config("client")).await?;
        ensure!(connection.peer().node_name == "echo");
        for message in testing::every_kind() {
            if matches!(message, Message::Hello(_)) {
                continue; // answered by the transport itself; see the next test
            }
            let answer = connection.request(&message, LONG).await?;
            ensure!(
                answer == message,
                "{:?} came back as {answer:?}",
                message.kind()
            );
        }
        Ok(())
    })
}

#[test]
fn hello_negotiates_tcp_when_there_is_no_rdma_device() -> anyhow::Result<()> {
    run(|| async {
        let (addr, _server) = echo_server()?;
        let connection = Connection::connect(addr, &config("client")).await?;
        let Hello {
            version,
            node_name,
            capabilities,
            rdma,
            nonce,
            proof,
        } = connection.peer().clone();
        ensure!(
            nonce.is_none() && proof.is_none(),
            "a node without a cluster secret sent a proof"
        );
        ensure!(version == PROTOCOL_VERSION && node_name == "echo");
        ensure!(
            rdma.is_none(),
            "a node without a device offered a queue pair"
        );
        ensure!(!capabilities.contains(ferry_transport::Capabilities::RDMA));
        ensure!(connection.link_kind() == LinkKind::Tcp);
        // Both ends of the connection are in this process: one notice.
        ensure!(ferry_transport::tcp_notices() == 1);
        // A Hello after the handshake is refused, and the connection stays.
        let answer = connection.request(&common::hello("again"), LONG).await?;
        ensure!(matches!(
            answer,
            Message::Error {
                code: ErrorCode::BadRequest,
                ..
            }
        ));
        ensure!(connection.is_alive());
        Ok(())
    })
}

#[test]
fn a_64_mib_payload_round_trips() -> anyhow::Result<()> {
    run(|| async {
        let (addr, _server) = echo_server()?;
        let connection = Connection::connect(addr, &config("client")).await?;
        let data: Vec<u8> = (0..64u32 << 20).map(|i| (i % 253) as u8).collect();
        let total_bytes = data.len() as u64;
        let message = Message::ObjectWrite {
            user: "demo".into(),
            key: b"big".to_vec(),
            data: Bytes::from(data),
            offset: 0,
            total_bytes,
            write_id: 0,
            store: ferry_transport::Store::Objects,
        };
        let answer = connection.request(&message, LONG).await?;
        ensure!(answer == message);
        Ok(())
    })
}

#[test]
fn concurrent_requests_on_one_connection_are_answered_out_of_order() -> anyhow::Result<()> {
    run(|| async {
        let (listener, addr) = bind()?;
        // Every handler waits until all 8 requests are in and every later
        // one has answered: the last sent is answered first, and only if
        // all 8 were in flight at once.
        let (arrived, answered) = (Rc::new(Cell::new(0u64)), Rc::new(Cell::new(0u64)));
        let (server_arrived, server_answered) = (arrived.clone(), answered.clone());
        let _server = glommio::spawn_local(serve(listener, config("slow"), move |request| {
            let (arrived, answered) = (server_arrived.clone(), server_answered.clone());
            async move {
                if let Message::Accept { call_id, .. } = &request {
                    arrived.set(arrived.get() + 1);
                    let turn = wait_until("the requests after this one", || {
                        arrived.get() == 8 && answered.get() == 7 - call_id
                    })
                    .await;
                    if turn.is_ok() {
                        answered.set(answered.get() + 1);
                    }
                }
                request
            }
        }));
        let connection = Connection::connect(addr, &config("client")).await?;
        let finished = RefCell::new(Vec::new());
        let requests = (0..8u64).map(|i| {
            let (connection, finished) = (&connection, &finished);
            async move {
                let request = Message::Accept {
                    call_id: i,
                    slot: i as u32,
                };
                let answer = connection.request(&request, LONG).await?;
                ensure!(answer == request, "request {i} got {answer:?}");
                finished.borrow_mut().push(i);
                anyhow::Ok(())
            }
        });
        for result in futures::future::join_all(requests).await {
            result?;
        }
        ensure!(
            (arrived.get(), answered.get()) == (8, 8),
            "{} requests in flight at once, {} answered in turn",
            arrived.get(),
            answered.get()
        );
        let order = finished.into_inner();
        ensure!(
            order == (0..8).rev().collect::<Vec<_>>(),
            "answered in order {order:?}"
        );
        Ok(())
    })
}

#[test]
fn a_server_handles_at_most_requests_in_flight_max_at_once() -> anyhow::Result<()> {
    run(|| async {
        let (listener, addr) = bind()?;
        let (now, peak, done) = (
            Rc::new(Cell::new(0)),
            Rc::new(Cell::new(0)),
            Rc::new(Cell::new(0)),
        );
        let (handler_now, handler_peak, handler_done) = (now.clone(), peak.clone(), done.clone());
        let mut server_config = config("bounded");
        server_config.requests_in_flight_max = 2;
        let _server = glommio::spawn_local(serve(listener, server_config, move |request| {
            let (now, peak, done) = (
                handler_now.clone(),
                handler_peak.clone(),
                handler_done.clone(),
            );
            async move {
                now.set(now.get() + 1);
                peak.set(peak.get().max(now.get()));
                // Holds on until another handler runs beside it (or it is
                // the last): a server that let more in would be seen doing
                // it, and one that let fewer in would never answer.
                let _ = wait_until("a second handler", || {
                    now.get() >= 2 || done.get() + now.get() == 6
                })
                .await;
                now.set(now.get() - 1);
                done.set(done.get() + 1);
                request
            }
        }));
        let connection = Connection::connect(addr, &config("client")).await?;
        let requests = (0..6u64).map(|i| {
            let connection = &connection;
            async move {
                connection
                    .request(&Message::ObjectWritten { object_bytes: i }, LONG)
                    .await
            }
        });
        for result in futures::future::join_all(requests).await {
            result?;
        }
        ensure!(peak.get() == 2, "peak concurrency {}", peak.get());
        Ok(())
    })
}

#[test]
fn a_request_times_out_and_the_connection_stays_usable() -> anyhow::Result<()> {
    run(|| async {
        let (listener, addr) = bind()?;
        // The slow request is answered only once the test releases it, and
        // says when it has.
        let (release, answered) = (Rc::new(Cell::new(false)), Rc::new(Cell::new(false)));
        let (server_release, server_answered) = (release.clone(), answered.clone());
        let _server = glommio::spawn_local(serve(listener, config("server"), move |request| {
            let (release, answered) = (server_release.clone(), server_answered.clone());
            async move {
                if let Message::ObjectRead { key, .. } = &request {
                    if key == b"slow" {
                        let _ =
                            wait_until("the release of the slow answer", || release.get()).await;
                        answered.set(true);
                    }
                }
                request
            }
        }));
        let connection = Connection::connect(addr, &config("client")).await?;
        let read = |key: &[u8]| Message::ObjectRead {
            user: "demo".into(),
            key: key.to_vec(),
            offset: 0,
            len_max: 1,
            store: ferry_transport::Store::Objects,
        };
        match connection
            .request(&read(b"slow"), Duration::from_millis(100))
            .await
        {
            Err(TransportError::Timeout { ms: 100 }) => {}
            other => bail!("expected a 100 ms timeout, got {other:?}"),
        }
        // Timed out while the server still held the answer.
        ensure!(!answered.get(), "the slow request was answered in time");
        ensure!(connection.is_alive() && connection.in_flight() == 0);
        // The next request works; the late answer to the first is dropped.
        ensure!(connection.request(&read(b"fast"), LONG).await? == read(b"fast"));
        release.set(true);
        wait_until("the late answer", || answered.get()).await?;
        // Written after the late answer on the same stream, so read after
        // it: the late one was read and dropped by then.
        ensure!(connection.request(&read(b"fast"), LONG).await? == read(b"fast"));
        ensure!(connection.is_alive() && connection.in_flight() == 0);
        Ok(())
    })
}

#[test]
fn a_peer_dying_mid_frame_fails_the_request_fast_and_the_next_one_reconnects() -> anyhow::Result<()>
{
    run(|| async {
        let (listener, addr) = bind()?;
        let server = glommio::spawn_local(async move {
            // First connection: half an answer, then the process "dies".
            let mut stream = accept(&listener).await?;
            accept_hello(&mut stream).await?;
            let request = read_raw_frame(&mut stream).await?;
            let answer = ferry_transport::Frame::encode_to_vec(
                request.header.correlation_id,
                FrameFlags::RESPONSE,
                &request.message()?,
                ferry_transport::limits::FRAME_BYTES_MAX,
            )?;
            stream.write_all(&answer[..answer.len() / 2]).await?;
            drop(stream);
            // Second connection: a healthy peer.
            let mut stream = accept(&listener).await?;
            accept_hello(&mut stream).await?;
            let request = read_raw_frame(&mut stream).await?;
            write_message(
                &mut stream,
                request.header.correlation_id,
                FrameFlags::RESPONSE,
                &request.message()?,
            )
            .await?;
            closed_within(&mut stream, 10_000).await;
            anyhow::Ok(())
        });
        let pool = PeerPool::new(config("client"))?;
        let message = Message::ObjectData {
            found: true,
            object_bytes: 200_000,
            offset: 0,
            data: Bytes::from(vec![7u8; 200_000]),
        };
        // Fast: at the close, not at the request's deadline, which is
        // longer than the test waits.
        let started = Instant::now();
        match pool.request(addr, &message, 4 * PATIENCE).await {
            Err(TransportError::PeerClosed) => {}
            other => bail!("expected PeerClosed, got {other:?}"),
        }
        ensure!(started.elapsed() < PATIENCE, "took {:?}", started.elapsed());
        let peer = pool.peer(addr)?;
        ensure!(
            peer.connections() == 0,
            "the dead connection is still counted"
        );
        ensure!(pool.request(addr, &message, LONG).await? == message);
        ensure!(peer.connects() == 2);
        drop((peer, pool));
        server.await
    })
}

#[test]
fn garbage_from_a_client_closes_only_that_connection() -> anyhow::Result<()> {
    run(|| async {
        let (addr, _server) = echo_server()?;
        let cases: [(&str, &[u8]); 3] = [
            ("text", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            ("zeros", &[0u8; 64]),
            ("bad kind", b"FRRY\x01\xee\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x10\x00\x00\x00\x00\x00\x00\x00"),
        ];
        for (name, garbage) in cases {
            let mut stream = connect(addr).await?;
            stream.write_all(garbage).await?;
            ensure!(
                closed_within(&mut stream, PATIENCE_MS).await,
                "{name}: connection left open"
            );
        }
        // The server still serves.
        let connection = Connection::connect(addr, &config("client")).await?;
        let message = Message::ObjectWritten { object_bytes: 1 };
        ensure!(connection.request(&message, LONG).await? == message);
        Ok(())
    })
}

#[test]
fn garbage_from_a_server_fails_the_request_with_bad_frame() -> anyhow::Result<()> {
    run(|| async {
        let (listener, addr) = bind()?;
        let _server = glommio::spawn_local(async move {
            let mut stream = accept(&listener).await?;
            accept_hello(&mut stream).await?;
            read_raw_frame(&mut stream).await?;
            stream.write_all(&[0xa5; 48]).await?;
            closed_within(&mut stream, 10_000).await;
            anyhow::Ok(())
        });
        let connection = Connection::connect(addr, &config("client")).await?;
        match connection
            .request(&Message::ObjectWritten { object_bytes: 1 }, LONG)
            .await
        {
            Err(TransportError::BadFrame { reason }) => {
                ensure!(reason.contains("magic"), "{reason}")
            }
            other => bail!("expected BadFrame, got {other:?}"),
        }
        ensure!(!connection.is_alive());
        // A dead connection fails at once.
        ensure!(matches!(
            connection
                .request(&Message::ObjectWritten { object_bytes: 1 }, LONG)
                .await,
            Err(TransportError::PeerClosed)
        ));
        Ok(())
    })
}

#[test]
fn the_first_message_must_be_a_hello_of_our_version() -> anyhow::Result<()> {
    run(|| async {
        let (addr, _server) = echo_server()?;
        // Another version: refused with VersionMismatch, then closed.
        let mut stream = connect(addr).await?;
        let mut hello = common::hello("future");
        if let Message::Hello(h) = &mut hello {
            h.version = PROTOCOL_VERSION + 1;
        }
        write_message(&mut stream, 1, FrameFlags::NONE, &hello).await?;
        let answer = read_raw_frame(&mut stream).await?.message()?;
        ensure!(
            matches!(
                answer,
                Message::Error {
                    code: ErrorCode::VersionMismatch,
                    ..
                }
            ),
            "{answer:?}"
        );
        ensure!(closed_within(&mut stream, PATIENCE_MS).await);
        // No Hello at all: refused, then closed.
        let mut stream = connect(addr).await?;
        write_message(
            &mut stream,
            1,
            FrameFlags::NONE,
            &Message::Accept {
                call_id: 1,
                slot: 1,
            },
        )
        .await?;
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
        // The proper exchange works on a raw stream too.
        let mut stream = connect(addr).await?;
        ensure!(send_hello(&mut stream).await?.node_name == "echo");
        Ok(())
    })
}

#[test]
fn the_pool_reconnects_with_backoff_after_the_server_restarts() -> anyhow::Result<()> {
    run(|| async {
        let (addr, server) = echo_server()?;
        let mut client_config = config("client");
        client_config.backoff_ms_min = 20;
        client_config.backoff_ms_max = 200;
        let pool = PeerPool::new(client_config)?;
        let message = Message::Accept {
            call_id: 1,
            slot: 2,
        };
        ensure!(pool.request(addr, &message, LONG).await? == message);
        let peer = pool.peer(addr)?;

        // The server goes away: its connections close with it.
        drop(server);
        wait_until("the pool to see its connection close", || {
            peer.connections() == 0
        })
        .await?;
        // Ends at its own 300 ms deadline, not the 10 s of LONG.
        let started = Instant::now();
        let failed = pool
            .request(addr, &message, Duration::from_millis(300))
            .await;
        ensure!(failed.is_err(), "a request to a stopped server succeeded");
        ensure!(started.elapsed() < LONG, "took {:?}", started.elapsed());
        let failures = peer.connect_failures();
        // 300 ms of 20, 40, 80, 160 ms waits (less jitter): a few attempts, not a spin.
        ensure!(
            (1..=8).contains(&failures),
            "{failures} connect attempts failed"
        );

        // Back on the same port: the pool finds it after its backoff.
        let listener = common::g(TcpListener::bind(addr)).context("rebinding the server's port")?;
        let _server =
            glommio::spawn_local(serve(
                listener,
                config("echo"),
                |request| async move { request },
            ));
        ensure!(pool.request(addr, &message, LONG).await? == message);
        ensure!(peer.connect_failures() == 0 && peer.connects() == 2);
        Ok(())
    })
}

#[test]
fn a_peer_offering_rdma_gets_tcp_from_a_node_without_a_device() -> anyhow::Result<()> {
    run(|| async {
        let (addr, _server) = echo_server()?;
        let mut stream = connect(addr).await?;
        let offer = Message::Hello(Hello {
            version: PROTOCOL_VERSION,
            node_name: "rdma-client".into(),
            capabilities: ferry_transport::Capabilities::RDMA,
            rdma: Some(testing::rdma_endpoint()),
            nonce: None,
            proof: None,
        });
        write_message(&mut stream, 1, FrameFlags::NONE, &offer).await?;
        let Message::Hello(reply) = read_raw_frame(&mut stream).await?.message()? else {
            bail!("expected Hello back");
        };
        // No device here (and so no queue pair): the answer settles on TCP.
        ensure!(
            reply.rdma.is_none(),
            "offered a queue pair without a device: {reply:?}"
        );
        ensure!(!reply
            .capabilities
            .contains(ferry_transport::Capabilities::RDMA));
        // A frame claiming its pages came by RDMA is refused on a TCP link.
        let pages = Message::Pages(ferry_transport::Pages {
            call_id: 1,
            pages: testing::pages(1),
            more: false,
        });
        write_message(&mut stream, 2, FrameFlags::RDMA_PAYLOAD, &pages).await?;
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
        Ok(())
    })
}

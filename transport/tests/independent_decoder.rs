//! The wire format is Cap'n Proto, not only ours: an Offer frame captured
//! off a real connection decodes with pycapnp (Python's binding of the
//! reference C++ implementation) against `schemas/ferry.capnp`.
//!
//! Needs `python3` with `pip install pycapnp`; without it the test fails and
//! says so.

mod common;

use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context};
use common::{accept, accept_hello, bind, config, run, write_message};
use ferry_transport::limits::FRAME_HEADER_BYTES;
use ferry_transport::{testing, Connection, FrameFlags, FrameHeader, Message};
use futures_lite::AsyncReadExt;

#[test]
fn pycapnp_decodes_a_captured_offer_frame() -> anyhow::Result<()> {
    let offer = testing::offer(Some(testing::pages(3)));
    let sent = offer.clone();
    // Capture the bytes of a real Offer frame as the peer receives them.
    let captured: Vec<u8> = {
        let (tx, rx) = std::sync::mpsc::channel();
        run(move || async move {
            let (listener, addr) = bind()?;
            let peer = glommio::spawn_local(async move {
                let mut stream = accept(&listener).await?;
                accept_hello(&mut stream).await?;
                let mut bytes = vec![0u8; FRAME_HEADER_BYTES];
                stream.read_exact(&mut bytes).await?;
                let head: [u8; FRAME_HEADER_BYTES] = bytes[..].try_into()?;
                let header = FrameHeader::parse(&head, u32::MAX - 7)?;
                bytes.resize(FRAME_HEADER_BYTES + header.payload_bytes as usize, 0);
                stream.read_exact(&mut bytes[FRAME_HEADER_BYTES..]).await?;
                let answer = Message::Accept {
                    call_id: 42,
                    slot: 1,
                };
                write_message(
                    &mut stream,
                    header.correlation_id,
                    FrameFlags::RESPONSE,
                    &answer,
                )
                .await?;
                anyhow::Ok(bytes)
            });
            let connection = Connection::connect(addr, &config("compute-1")).await?;
            connection
                .request(&Message::Offer(sent), Duration::from_secs(10))
                .await?;
            tx.send(peer.await?)?;
            Ok(())
        })?;
        rx.recv().context("receiving the captured frame")?
    };

    let dir = std::env::temp_dir().join(format!("ferry-offer-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let frame_path = dir.join("offer.frame");
    std::fs::write(&frame_path, &captured)?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/decode_offer.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(ferry_schemas::SCHEMA_PATH)
        .arg(&frame_path)
        .output()
        .context("running python3 (is it installed?)")?;
    std::fs::remove_dir_all(&dir)?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.success(),
        "the pycapnp decoder failed ({}): {stderr}",
        output.status
    );
    let stdout = String::from_utf8(output.stdout)?;

    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let pages = offer.inline_pages.clone().unwrap_or_default();
    let join = |items: Vec<String>| items.join(",");
    let expected = [
        // The first request after Hello (id 1) on a fresh connection.
        "correlationId=2".to_string(),
        "flags=0".to_string(),
        format!("callId={}", offer.call_id),
        format!("user={}", offer.user),
        format!("function={}", offer.function),
        format!("moduleHash={}", hex(&offer.module_hash)),
        format!("key={}", hex(&offer.key)),
        format!("funcletIndex={}", offer.funclet_index),
        format!(
            "args={}",
            join(offer.args.iter().map(i32::to_string).collect())
        ),
        format!("memoryPages={}", offer.memory_pages),
        format!(
            "globals={}",
            join(
                offer
                    .globals
                    .iter()
                    .map(|g| format!("{}:{}", g.index, g.bits))
                    .collect()
            )
        ),
        "inlinePages=pages".to_string(),
        format!(
            "pageIndices={}",
            join(pages.indices().iter().map(u32::to_string).collect())
        ),
        format!("pageDataBytes={}", pages.data().len()),
        format!(
            "pageFirstBytes={}",
            join(pages.iter().map(|(_, page)| page[0].to_string()).collect())
        ),
    ];
    let lines: Vec<&str> = stdout.lines().collect();
    ensure!(
        lines == expected,
        "pycapnp read:\n{stdout}\nexpected:\n{}",
        expected.join("\n")
    );
    Ok(())
}

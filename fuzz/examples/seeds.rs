//! Writes the seed corpus under fuzz/corpus/ (checked in). Run again when a
//! format changes:
//!
//! ```text
//! bash guests/build.sh guests/out   # for the rewrite seeds' modules
//! cargo +nightly run --manifest-path fuzz/Cargo.toml --example seeds
//! ```

use std::fs;
use std::path::Path;

use bytes::Bytes;
use ferry_transport::limits::FRAME_BYTES_MAX;
use ferry_transport::testing::{self, every_kind};
use ferry_transport::{Frame, FrameFlags, Message, Pages};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = root.join("corpus");
    for target in ["frame", "invoke", "rewrite", "host"] {
        let dir = corpus.join(target);
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(&dir)?;
    }

    // frame: one frame of every kind; pages and data cut to one page so
    // every seed stays small.
    for (i, message) in every_kind().into_iter().enumerate() {
        let message = small(message);
        let flags = if i % 2 == 0 {
            FrameFlags::NONE
        } else {
            FrameFlags::RESPONSE
        };
        let bytes = Frame::encode_to_vec(i as u64 + 1, flags, &message, FRAME_BYTES_MAX)?;
        let name = format!("{i:02}-{}", message.kind().name());
        fs::write(corpus.join("frame").join(name), bytes)?;
    }

    // invoke: bodies as clients send them.
    let bodies: [(&str, &str); 8] = [
        ("call", r#"{"user": "demo", "function": "hello"}"#),
        (
            "input",
            r#"{"user":"demo","function":"echo","input_data":"some text","timeout_ms":500}"#,
        ),
        (
            "base64",
            r#"{"user":"demo","function":"echo","input_base64":"aGVsbG8=","forbid_ndp":true}"#,
        ),
        (
            "async",
            r#"{"user":"demo","function":"hello","async":true}"#,
        ),
        ("status", r#"{"status":true,"id":17}"#),
        (
            "faasm",
            r#"{"user":"demo","function":"chain","cmdline":"a b","func_ptr":3,"mpi":false,"python":null}"#,
        ),
        ("empty", "  \n"),
        (
            "escapes",
            r#"{"user":"d\u00e9mo","function":"x\ny","input_data":"\ud83d\ude00"}"#,
        ),
    ];
    for (name, body) in bodies {
        fs::write(corpus.join("invoke").join(name), body)?;
    }

    // rewrite: the image header (mode, pages, writes, globals) then a module.
    let plain = [0u8, 0, 0, 0];
    let tests = root.join("../guests/out/tests/test");
    for name in ["noop", "exitcode", "oob_input"] {
        let path = tests.join(format!("{name}.wasm"));
        match fs::read(&path) {
            Ok(wasm) => fs::write(
                corpus.join("rewrite").join(name),
                [&plain[..], &wasm].concat(),
            )?,
            Err(error) => eprintln!("seeds: skipping {}: {error}", path.display()),
        }
    }
    let module = wat::parse_str(MODULE)?;
    fs::write(
        corpus.join("rewrite").join("table-globals-passive"),
        [&plain[..], &module].concat(),
    )?;
    // The same module with an image: one more page, two writes, a global.
    let mut header = vec![0u8, 1, 2];
    header.extend_from_slice(&16u32.to_le_bytes());
    header.push(b'H');
    header.extend_from_slice(&70_000u32.to_le_bytes());
    header.push(9);
    header.push(1);
    header.extend_from_slice(&0u32.to_le_bytes());
    header.push(0);
    header.extend_from_slice(&4096u64.to_le_bytes());
    fs::write(
        corpus.join("rewrite").join("image"),
        [&header[..], &module].concat(),
    )?;
    // Once a fault: a component holding a core module validates, and
    // expose made an invalid module of its sections.
    let component = b"\0asm\x0d\0\x01\0\x01\x08\0asm\x01\0\0\0";
    fs::write(
        corpus.join("rewrite").join("component"),
        [&plain[..], &component[..]].concat(),
    )?;
    // wasm-smith's entropy.
    let entropy: Vec<u8> = (0..256u32).map(|i| (i * 37 % 251) as u8).collect();
    fs::write(
        corpus.join("rewrite").join("smith"),
        [&[1u8, 0, 0, 0][..], &entropy].concat(),
    )?;

    // host: memory size, pointer, length, string max, then memory bytes.
    let host = |size: u64, ptr: i32, len: i64, max: u64, memory: &[u8]| {
        let mut out = Vec::new();
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&ptr.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&max.to_le_bytes());
        out.extend_from_slice(memory);
        out
    };
    let cases: [(&str, Vec<u8>); 7] = [
        (
            "inside",
            host(65536, 16, 32, 64, b"0123456789abcdefhello\0world"),
        ),
        ("end", host(65536, 65536, 0, 8, b"\0")),
        ("past-end", host(65536, 65535, 2, 8, b"abc")),
        ("high-pointer", host(1 << 32, -1, 1, 255, b"")),
        ("negative-length", host(65536, 0, -1, 0, b"\0")),
        ("not-utf8", host(131072, 2, 131070, 16, b"ok\xff\xfe\0")),
        // Once a crash: `max + 1` overflowed in host::cstr_at.
        ("max-usize", host(65536, 0, 3, u64::MAX, b"ab\0")),
    ];
    for (name, bytes) in cases {
        fs::write(corpus.join("host").join(name), bytes)?;
    }
    Ok(())
}

/// `message` with its pages and data cut to at most one page.
fn small(message: Message) -> Message {
    match message {
        Message::Pages(pages) => Message::Pages(Pages {
            call_id: pages.call_id,
            pages: testing::pages(1),
            more: false,
        }),
        Message::Offer(mut offer) => {
            if offer.inline_pages.is_some() {
                offer.inline_pages = Some(testing::pages(1));
            }
            Message::Offer(offer)
        }
        Message::Done(mut done) => {
            done.dirty_pages = testing::pages(1);
            Message::Done(done)
        }
        Message::ObjectWrite {
            user,
            key,
            data,
            offset,
            total_bytes,
            write_id,
            store,
        } => Message::ObjectWrite {
            user,
            key,
            data: data.slice(..data.len().min(64)),
            offset,
            total_bytes,
            write_id,
            store,
        },
        Message::Module(mut module) => {
            module.wasm = Bytes::copy_from_slice(&module.wasm[..module.wasm.len().min(64)]);
            Message::Module(module)
        }
        other => other,
    }
}

/// The rewrite's unit-test module: a table, a mutable and an immutable
/// global, an active and a passive segment.
const MODULE: &str = r#"(module
    (memory 1)
    (table 2 funcref)
    (global $sp (mut i32) (i32.const 1024))
    (global $k i32 (i32.const 7))
    (global $f (mut f64) (f64.const 1.5))
    (data (i32.const 16) "hello")
    (data $p "passive")
    (func $f (result i32) i32.const 1)
    (elem (i32.const 0) $f)
    (func (export "_start") (drop (call $f)))
    (func (export "__wasm_call_ctors")))"#;

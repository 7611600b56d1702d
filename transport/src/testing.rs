//! Sample messages of every kind, for tests and benchmarks here and in
//! crates that use the transport.

use bytes::Bytes;

use crate::message::{
    Capabilities, Done, ErrorCode, Global, Hello, Message, MessageKind, ModuleUpload, ObjectEntry,
    Offer, PageSet, Pages, RdmaEndpoint, StateChange, StateUpdate, Store, PAGE_BYTES,
    PROTOCOL_VERSION,
};

/// `count` pages at indices 3, 5, 7, ..., page `i` filled with byte `i + 1`
/// (so pages differ and a misplaced page shows).
pub fn pages(count: u32) -> PageSet {
    let indices: Vec<u32> = (0..count).map(|i| 3 + 2 * i).collect();
    let mut data = Vec::with_capacity(count as usize * PAGE_BYTES);
    for i in 0..count {
        data.resize(data.len() + PAGE_BYTES, (i % 251) as u8 + 1);
    }
    // The indices ascend and the data is count pages long.
    match PageSet::new(indices, Bytes::from(data)) {
        Ok(pages) => pages,
        Err(error) => unreachable!("sample pages are valid: {error}"),
    }
}

pub fn rdma_endpoint() -> RdmaEndpoint {
    RdmaEndpoint {
        qp_number: 0x00ab_cdef,
        packet_sequence: 0x0012_3456,
        lid: 7,
        gid: [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8],
        mtu: 5,
        recv_address: 0x7f12_3456_7000,
        recv_key: 0x1234,
        recv_bytes: 128 << 20,
    }
}

pub fn offer(inline_pages: Option<PageSet>) -> Offer {
    Offer {
        call_id: 42,
        user: "demo".into(),
        function: "wordcount".into(),
        module_hash: [0x5a; 32],
        key: b"corpus/part-0001".to_vec(),
        funclet_index: 17,
        args: vec![1, -2, i32::MAX, i32::MIN],
        memory_pages: 18,
        globals: vec![
            Global {
                index: 0,
                bits: 66_560,
            },
            Global {
                index: 3,
                bits: u64::MAX,
            },
        ],
        inline_pages,
        wait_ms: 29_500,
    }
}

/// The module [`offer`] names. The hash is a stand-in, not the bytes'
/// SHA-256: the transport carries it without checking.
pub fn module_upload() -> ModuleUpload {
    let mut wasm = b"\0asm\x01\0\0\0".to_vec();
    wasm.resize(1_000, 0x0b);
    ModuleUpload {
        user: "demo".into(),
        function: "wordcount".into(),
        hash: [0x5a; 32],
        wasm: Bytes::from(wasm),
    }
}

/// One message of every kind, with every field set to something other than
/// its default.
pub fn every_kind() -> Vec<Message> {
    let messages = vec![
        Message::Hello(Hello {
            version: PROTOCOL_VERSION,
            node_name: "storage-1".into(),
            capabilities: Capabilities::OFFLOAD.with(Capabilities::OBJECTS),
            rdma: None,
            nonce: Some([0x11; 32]),
            proof: Some([0x22; 32]),
        }),
        Message::Hello(Hello {
            version: PROTOCOL_VERSION,
            node_name: "storage-2".into(),
            capabilities: Capabilities::RDMA,
            rdma: Some(rdma_endpoint()),
            nonce: None,
            proof: None,
        }),
        Message::Offer(offer(None)),
        Message::Offer(offer(Some(pages(3)))),
        Message::Accept {
            call_id: 42,
            slot: 3,
        },
        Message::Decline {
            call_id: 42,
            reason: "offload slots full".into(),
        },
        Message::Pages(Pages {
            call_id: 42,
            pages: pages(5),
            more: false,
        }),
        Message::Done(Done {
            call_id: 42,
            return_value: -7,
            globals: vec![Global { index: 1, bits: 9 }],
            memory_pages: 20,
            dirty_pages: pages(2),
            pages_to_follow: 3,
        }),
        Message::ObjectRead {
            user: "demo".into(),
            key: vec![0, 159, 146, 150],
            offset: 1 << 33,
            len_max: 4096,
            store: Store::State,
        },
        Message::ObjectData {
            found: true,
            object_bytes: 10_000,
            offset: 100,
            data: Bytes::from_static(b"object bytes"),
        },
        Message::ObjectWrite {
            user: "demo".into(),
            key: b"out".to_vec(),
            data: Bytes::from(vec![9u8; 10_000]),
            offset: 16 << 20,
            total_bytes: (16 << 20) + 10_000,
            write_id: 7,
            store: Store::State,
        },
        Message::ObjectWritten {
            object_bytes: 10_000,
        },
        Message::Error {
            code: ErrorCode::Trap,
            message: "unreachable executed".into(),
        },
        Message::Module(module_upload()),
        Message::ModuleStored { hash: [0x5a; 32] },
        Message::ObjectList {
            user: "demo".into(),
            store: Store::Objects,
        },
        Message::ObjectListing {
            entries: vec![
                ObjectEntry {
                    key: b"corpus/part-0001".to_vec(),
                    size_bytes: 1 << 33,
                },
                ObjectEntry {
                    key: vec![0, 159, 146, 150],
                    size_bytes: 1,
                },
            ],
        },
        Message::ObjectDelete {
            user: "demo".into(),
            key: b"out".to_vec(),
            store: Store::State,
        },
        Message::ObjectDeleted { found: true },
        Message::FetchPages { call_id: 42 },
        Message::StateUpdate(StateUpdate {
            user: "demo".into(),
            key: b"weights".to_vec(),
            change: StateChange::Ranges {
                value_bytes: 4096,
                ranges: vec![(0, 3), (4000, 96)],
                data: Bytes::from(vec![3u8; 99]),
            },
        }),
        Message::StateUpdate(StateUpdate {
            user: "demo".into(),
            key: b"log\0appended".to_vec(),
            change: StateChange::Append(Bytes::from_static(b"one more line")),
        }),
    ];
    debug_assert!(MessageKind::ALL
        .iter()
        .all(|kind| messages.iter().any(|m| m.kind() == *kind)));
    messages
}

//! The module rewrite: `exec::rewrite::expose` on arbitrary bytes (or on a
//! valid module wasm-smith builds from them), then `bake` of what it
//! returns with an arbitrary zygote image, as upload does.
//!
//! Input: a mode byte (bit 0: the module comes from wasm-smith), the image
//! (a pages byte; up to 15 writes of a u32 offset and a byte; up to 7
//! globals of a u32 selector, a type byte and u64 bits), then the module
//! (or wasm-smith's entropy). A checked-in seed is `00 00 00 00` and a
//! module.
//!
//! Invariants: nothing panics; a module that `expose` returns validates,
//! keeps every other section byte for byte and every export of its own,
//! exports the table and exactly the mutable globals, and exposes to itself
//! again; a module that `bake` returns validates, its memory holds the
//! image, its active segments rebuild the image exactly, its globals start
//! at the image's values, and its passive segments and other sections are
//! kept.
#![no_main]

// The runtime's own source file, compiled here: it needs only anyhow,
// wasmparser and wasm-encoder, and ferry-runtime would bring wasmtime.
#[allow(dead_code)]
#[path = "../../runtime/src/exec/rewrite.rs"]
mod rewrite;
// The bounds and units it names (`crate::limits`): constants only.
#[allow(dead_code)]
#[path = "../../runtime/src/limits.rs"]
mod limits;

use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use rewrite::{bake, expose, GlobalValue, Image, ModuleFacts, GLOBAL_EXPORT_PREFIX, TABLE_EXPORT};
use wasmparser::{DataKind, ExternalKind, Operator, Parser, Payload, TypeRef, ValType, Validator};

use limits::WASM_PAGE_BYTES;
/// Images up to 20 pages (1.25 MiB): a Rust guest's 17, room for runs and
/// gaps of 4 KiB pages, and quick to scan (bake's scan of every byte,
/// instrumented, was most of the time at 64 pages).
const IMAGE_PAGES_MAX: u64 = 20;

/// Reads the input front to back; past the end, zeros.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = self.0.len().min(N);
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }
    fn u8(&mut self) -> u8 {
        self.bytes::<1>()[0]
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.bytes())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.bytes())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mode = input.u8();
    let pages_byte = input.u8();
    let writes: Vec<(u32, u8)> = (0..input.u8() & 15)
        .map(|_| (input.u32(), input.u8()))
        .collect();
    let globals: Vec<(u32, u8, u64)> = (0..input.u8() & 7)
        .map(|_| (input.u32(), input.u8(), input.u64()))
        .collect();
    let generated;
    let wasm: &[u8] = if mode & 1 == 1 {
        generated = match smith(input.0) {
            Some(wasm) => wasm,
            None => return,
        };
        &generated
    } else {
        input.0
    };

    let Ok((exposed, facts)) = expose(wasm) else {
        return;
    };
    check_exposed(wasm, &exposed, &facts);

    let min_pages = memories(&exposed).first().map_or(0, |m| m.initial);
    let pages = if pages_byte & 0x80 != 0 {
        u64::from(pages_byte & 7) // smaller than the module's minimum, maybe
    } else {
        min_pages.saturating_add(u64::from(pages_byte & 3))
    }
    .min(IMAGE_PAGES_MAX);
    let mut memory = vec![0u8; pages as usize * WASM_PAGE_BYTES];
    if !memory.is_empty() {
        let len = memory.len();
        for (offset, value) in writes {
            memory[offset as usize % len] = value;
        }
    }
    let globals: Vec<(u32, GlobalValue)> = globals
        .into_iter()
        .map(|(select, ty, bits)| {
            let index = facts
                .mutable_globals
                .get(select as usize % (facts.mutable_globals.len() + 1))
                .copied()
                .unwrap_or(select % 8);
            let value = match ty & 3 {
                0 => GlobalValue::I32(bits as i32),
                1 => GlobalValue::I64(bits as i64),
                2 => GlobalValue::F32(bits as u32),
                _ => GlobalValue::F64(bits),
            };
            (index, value)
        })
        .collect();
    let image = Image {
        memory: &memory,
        globals: &globals,
    };
    let Ok(baked) = bake(&exposed, &image) else {
        return;
    };
    check_baked(&exposed, &image, &baked);
});

/// A valid module from the input's bytes, in the shapes ferry accepts
/// (32-bit memories; sometimes two of them).
fn smith(entropy: &[u8]) -> Option<Vec<u8>> {
    let mut u = Unstructured::new(entropy);
    let config = wasm_smith::Config {
        max_memories: 2,
        memory64_enabled: false,
        max_memory32_bytes: IMAGE_PAGES_MAX * WASM_PAGE_BYTES as u64,
        max_funcs: 8,
        max_globals: 16,
        max_data_segments: 8,
        ..wasm_smith::Config::default()
    };
    wasm_smith::Module::new(config, &mut u)
        .ok()
        .map(|m| m.to_bytes())
}

fn validate(wasm: &[u8], what: &str) {
    if let Err(error) = Validator::new().validate_all(wasm) {
        panic!("{what} does not validate: {error}");
    }
}

/// Every section but those `skip` names, as (id, bytes), in order.
fn sections<'a>(wasm: &'a [u8], skip: &[u8]) -> Vec<(u8, &'a [u8])> {
    Parser::new(0)
        .parse_all(wasm)
        .filter_map(|payload| payload.ok()?.as_section())
        .filter(|(id, _)| !skip.contains(id))
        .map(|(id, range)| (id, &wasm[range]))
        .collect()
}

fn exports(wasm: &[u8]) -> Vec<(String, ExternalKind, u32)> {
    let mut out = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        if let Ok(Payload::ExportSection(reader)) = payload {
            for export in reader.into_iter().flatten() {
                out.push((export.name.to_owned(), export.kind, export.index));
            }
        }
    }
    out
}

fn memories(wasm: &[u8]) -> Vec<wasmparser::MemoryType> {
    let mut out = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        if let Ok(Payload::MemorySection(reader)) = payload {
            out.extend(reader.into_iter().flatten());
        }
    }
    out
}

/// (index, mutable, type, init operators as text) of every defined global.
fn globals(wasm: &[u8]) -> Vec<(u32, bool, ValType, Vec<String>)> {
    let mut imported = 0u32;
    let mut out = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        match payload {
            Ok(Payload::ImportSection(reader)) => {
                for import in reader.into_imports().flatten() {
                    if let TypeRef::Global(_) = import.ty {
                        imported += 1;
                    }
                }
            }
            Ok(Payload::GlobalSection(reader)) => {
                for (i, global) in reader.into_iter().flatten().enumerate() {
                    let ops = global
                        .init_expr
                        .get_operators_reader()
                        .into_iter()
                        .map(|op| format!("{op:?}"))
                        .collect();
                    out.push((
                        imported + i as u32,
                        global.ty.mutable,
                        global.ty.content_type,
                        ops,
                    ));
                }
            }
            _ => {}
        }
    }
    out
}

/// (memory index, constant offset or None, bytes) of every data segment;
/// passive ones have no memory.
type Segment = (Option<u32>, Option<u64>, Vec<u8>);

fn data_segments(wasm: &[u8]) -> Vec<Segment> {
    let mut out = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        if let Ok(Payload::DataSection(reader)) = payload {
            for data in reader.into_iter().flatten() {
                match data.kind {
                    DataKind::Passive => out.push((None, None, data.data.to_vec())),
                    DataKind::Active {
                        memory_index,
                        offset_expr,
                    } => {
                        let ops: Vec<_> = offset_expr
                            .get_operators_reader()
                            .into_iter()
                            .flatten()
                            .collect();
                        let offset = match ops.as_slice() {
                            [Operator::I32Const { value }, Operator::End] => {
                                Some(u64::from(*value as u32))
                            }
                            _ => None,
                        };
                        out.push((Some(memory_index), offset, data.data.to_vec()));
                    }
                }
            }
        }
    }
    out
}

fn check_exposed(wasm: &[u8], exposed: &[u8], facts: &ModuleFacts) {
    validate(exposed, "an exposed module");
    assert!(
        sections(wasm, &[7]) == sections(exposed, &[7]),
        "expose changed a section other than exports"
    );
    let ours = |name: &str| {
        name == TABLE_EXPORT
            || name == rewrite::exit::EXIT_EXPORT
            || name.starts_with(GLOBAL_EXPORT_PREFIX)
    };
    let before = exports(wasm);
    let after = exports(exposed);
    for export in before.iter().filter(|e| !ours(&e.0)) {
        assert!(after.contains(export), "lost export {export:?}");
    }
    let table = after.iter().find(|e| e.0 == TABLE_EXPORT);
    assert_eq!(
        table.is_some(),
        facts.has_table,
        "table export {table:?} vs has_table {}",
        facts.has_table
    );
    if let Some(table) = table {
        assert_eq!((table.1, table.2), (ExternalKind::Table, 0));
    }
    let mutable: Vec<u32> = globals(wasm).iter().filter(|g| g.1).map(|g| g.0).collect();
    assert_eq!(facts.mutable_globals, mutable);
    let exported: Vec<u32> = after
        .iter()
        .filter(|e| e.0.starts_with(GLOBAL_EXPORT_PREFIX))
        .map(|e| {
            assert_eq!(e.0, format!("{GLOBAL_EXPORT_PREFIX}{}", e.2));
            assert_eq!(e.1, ExternalKind::Global);
            e.2
        })
        .collect();
    assert_eq!(exported, mutable);
    let (twice, facts_twice) = match expose(exposed) {
        Ok(out) => out,
        Err(error) => panic!("an exposed module does not expose again: {error:#}"),
    };
    assert!(twice == exposed, "expose is not idempotent");
    assert_eq!(facts_twice.has_table, facts.has_table);
    assert_eq!(facts_twice.mutable_globals, facts.mutable_globals);
    assert_eq!(
        (
            facts_twice.exports_start,
            facts_twice.exports_ctors,
            facts_twice.exports_zygote
        ),
        (
            facts.exports_start,
            facts.exports_ctors,
            facts.exports_zygote
        )
    );
}

fn check_baked(exposed: &[u8], image: &Image<'_>, baked: &[u8]) {
    validate(baked, "a baked module");
    // Memory, globals, data count and data are rewritten; nothing else.
    assert!(
        sections(exposed, &[5, 6, 11, 12]) == sections(baked, &[5, 6, 11, 12]),
        "bake changed a section it should copy"
    );

    let memories = memories(baked);
    if let Some(memory) = memories.first() {
        let page_bytes = 1u64 << memory.page_size_log2.unwrap_or(16);
        assert!(
            memory.initial.saturating_mul(page_bytes) >= image.memory.len() as u64,
            "memory of {} pages cannot hold an image of {} bytes",
            memory.initial,
            image.memory.len()
        );
    }

    // The active segments of memory 0, applied in order to zeros, give the
    // image back.
    let mut rebuilt = vec![0u8; image.memory.len()];
    for (memory, offset, bytes) in data_segments(baked) {
        if memory != Some(0) {
            continue;
        }
        let Some(offset) = offset else {
            panic!("a baked active segment has a non-constant offset");
        };
        if bytes.is_empty() {
            continue;
        }
        let end = offset as usize + bytes.len();
        assert!(
            end <= rebuilt.len(),
            "segment [{offset:#x}, {end:#x}) is outside the image"
        );
        rebuilt[offset as usize..end].copy_from_slice(&bytes);
    }
    assert!(
        rebuilt == image.memory,
        "the baked segments are not the image"
    );

    let passive = |wasm: &[u8]| -> Vec<Vec<u8>> {
        data_segments(wasm)
            .into_iter()
            .filter(|s| s.0.is_none())
            .map(|s| s.2)
            .collect()
    };
    assert!(
        passive(exposed) == passive(baked),
        "passive segments changed"
    );

    let before = globals(exposed);
    let after = globals(baked);
    assert_eq!(before.len(), after.len());
    for (old, new) in before.iter().zip(&after) {
        assert_eq!((old.0, old.1, old.2), (new.0, new.1, new.2));
        let value = image.globals.iter().find(|(g, _)| *g == old.0).map(|g| g.1);
        let expected = match (value, old.2) {
            (Some(GlobalValue::I32(v)), ValType::I32) => format!("I32Const {{ value: {v} }}"),
            (Some(GlobalValue::I64(v)), ValType::I64) => format!("I64Const {{ value: {v} }}"),
            (Some(GlobalValue::F32(v)), ValType::F32) => {
                format!("F32Const {{ value: Ieee32({v}) }}")
            }
            (Some(GlobalValue::F64(v)), ValType::F64) => {
                format!("F64Const {{ value: Ieee64({v}) }}")
            }
            _ => {
                assert_eq!(
                    old.3, new.3,
                    "global {} changed without an image value",
                    old.0
                );
                continue;
            }
        };
        assert_eq!(
            new.3,
            vec![format!("Ok({expected})"), "Ok(End)".to_owned()],
            "global {}",
            old.0
        );
    }
}

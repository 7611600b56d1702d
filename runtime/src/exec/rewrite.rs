//! Module rewriting with `wasmparser` + `wasm-encoder`.
//!
//! Toolchains export neither the indirect function table nor mutable
//! globals such as `__stack_pointer`, yet funclets and `chain_ptr` need the
//! table, and snapshots need the globals. [`expose`] adds exports for both
//! under names no toolchain uses. [`bake`] turns a pre-initialised memory and
//! globals (the zygote) into the module's own data segments and global
//! initialisers, Wizer-style, so that every call instantiates the zygote as a
//! copy-on-write memory image.
//!
//! Sections the rewrite does not change are copied byte for byte.

use anyhow::{bail, Context, Result};
use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasm_encoder::{
    ConstExpr, DataCountSection, DataSection, ExportKind, ExportSection, GlobalSection,
    MemorySection, RawSection,
};
use wasmparser::{DataKind, ExternalKind, Parser, Payload, TypeRef, ValType, Validator};

// A child of this file's module, so the fuzz target that compiles this
// file alone (fuzz/fuzz_targets/rewrite.rs) gets it too.
#[path = "exit.rs"]
pub mod exit;

/// Export name of the module's table 0.
pub const TABLE_EXPORT: &str = "__ferry_table";
/// Export name prefix of mutable globals: `__ferry_global_<index>`.
pub const GLOBAL_EXPORT_PREFIX: &str = "__ferry_global_";

/// What upload learns about a module while exposing it.
#[derive(Debug, Clone, Default)]
pub struct ModuleFacts {
    pub has_table: bool,
    /// Indices (in the global index space) of mutable globals the module defines.
    pub mutable_globals: Vec<u32>,
    pub exports_start: bool,
    pub exports_ctors: bool,
    pub exports_zygote: bool,
}

/// The canonical position of each known section id, for inserting an
/// export section into a module that has none.
fn section_order(id: u8) -> u8 {
    match id {
        1 => 1,   // type
        2 => 2,   // import
        3 => 3,   // function
        4 => 4,   // table
        5 => 5,   // memory
        13 => 6,  // tag
        6 => 7,   // global
        7 => 8,   // export
        8 => 9,   // start
        9 => 10,  // element
        12 => 11, // data count
        10 => 12, // code
        11 => 13, // data
        _ => 0,   // custom sections may stand anywhere
    }
}
const EXPORT_ORDER: u8 = 8;

/// Validates `wasm` and returns it with the table and mutable globals
/// exported, plus what was found.
pub fn expose(wasm: &[u8]) -> Result<(Vec<u8>, ModuleFacts)> {
    if !wasm.starts_with(b"\0asm") {
        bail!("not a wasm module: it does not start with the bytes \\0asm");
    }
    // The validator below accepts components too; the rewrite copies core
    // sections only, and made an invalid module of one.
    if !Parser::is_core_wasm(wasm) {
        bail!(
            "not a core wasm module (version bytes {:02x?}); components are not supported",
            wasm.get(4..8).unwrap_or_default()
        );
    }
    if let Err(error) = Validator::new().validate_all(wasm) {
        bail!(
            "invalid wasm at offset {:#x}: {}",
            error.offset(),
            error.message()
        );
    }

    let mut facts = ModuleFacts::default();
    let mut imported_globals = 0u32;
    let mut defined_globals: Vec<bool> = Vec::new();
    let mut existing_exports: Vec<(String, ExportKind, u32)> = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.context("parsing the module")? {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import?;
                    match import.ty {
                        TypeRef::Memory(_) => bail!(
                            "the module imports its memory ({}::{}); ferry needs modules that define their own memory",
                            import.module,
                            import.name
                        ),
                        TypeRef::Global(_) => imported_globals += 1,
                        TypeRef::Table(_) => facts.has_table = true,
                        _ => {}
                    }
                }
            }
            Payload::TableSection(reader) => facts.has_table |= reader.count() > 0,
            Payload::MemorySection(reader) => {
                for memory in reader {
                    if memory?.memory64 {
                        bail!("64-bit memories are not supported");
                    }
                }
            }
            Payload::GlobalSection(reader) => {
                for global in reader {
                    defined_globals.push(global?.ty.mutable);
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export?;
                    match (export.kind, export.name) {
                        (ExternalKind::Func, "_start") => facts.exports_start = true,
                        (ExternalKind::Func, "__wasm_call_ctors") => facts.exports_ctors = true,
                        (ExternalKind::Func, "_faasm_zygote") => facts.exports_zygote = true,
                        _ => {}
                    }
                    existing_exports.push((
                        export.name.to_owned(),
                        export_kind(export.kind),
                        export.index,
                    ));
                }
            }
            _ => {}
        }
    }
    facts.mutable_globals = defined_globals
        .iter()
        .enumerate()
        .filter(|(_, mutable)| **mutable)
        .map(|(i, _)| imported_globals + i as u32)
        .collect();

    let mut exports = ExportSection::new();
    for (name, kind, index) in &existing_exports {
        if name == TABLE_EXPORT
            || name == exit::EXIT_EXPORT
            || name.starts_with(GLOBAL_EXPORT_PREFIX)
        {
            continue; // a module uploaded twice keeps one set of our exports
        }
        exports.export(name, *kind, *index);
    }
    if facts.has_table {
        exports.export(TABLE_EXPORT, ExportKind::Table, 0);
    }
    for index in &facts.mutable_globals {
        exports.export(
            &format!("{GLOBAL_EXPORT_PREFIX}{index}"),
            ExportKind::Global,
            *index,
        );
    }

    // The C library's `exit`, for the exit-time work of modules whose
    // `_start` skips it (exit.rs).
    if let Some(index) = exit::find_exit(wasm)? {
        exports.export(exit::EXIT_EXPORT, ExportKind::Func, index);
    }

    let mut out = wasm_encoder::Module::new();
    let mut exports = Some(exports);
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload?;
        let Some((id, range)) = payload.as_section() else {
            continue;
        };
        let order = section_order(id);
        if order != 0 && order >= EXPORT_ORDER {
            if let Some(exports) = exports.take() {
                out.section(&exports);
            }
        }
        if id == 7 {
            continue; // replaced above
        }
        out.section(&RawSection {
            id,
            data: &wasm[range],
        });
    }
    if let Some(exports) = exports.take() {
        out.section(&exports);
    }
    Ok((out.finish(), facts))
}

fn export_kind(kind: ExternalKind) -> ExportKind {
    match kind {
        ExternalKind::Func | ExternalKind::FuncExact => ExportKind::Func,
        ExternalKind::Table => ExportKind::Table,
        ExternalKind::Memory => ExportKind::Memory,
        ExternalKind::Global => ExportKind::Global,
        ExternalKind::Tag => ExportKind::Tag,
    }
}

/// A numeric global value captured from a running instance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GlobalValue {
    I32(i32),
    I64(i64),
    F32(u32),
    F64(u64),
}

/// The state a zygote leaves behind: its memory and its mutable globals.
pub struct Image<'a> {
    pub memory: &'a [u8],
    /// (global index, value) for every mutable global.
    pub globals: &'a [(u32, GlobalValue)],
}

/// Runs of non-zero 4 KiB pages become data segments; zero pages stay
/// implicit (fresh memory is zero). A gap shorter than this many zero
/// pages is folded into the segment rather than splitting it.
const SEGMENT_GAP_PAGES: usize = 4;
const PAGE_BYTES: usize = 4096;
use crate::limits::WASM_PAGE_BYTES;

/// Returns `wasm` (already exposed) with `image` as its initial state: the
/// memory's minimum is the image's size, active data segments are replaced
/// by the image's non-zero pages, mutable globals start at their image
/// values. Passive segments keep their indices.
pub fn bake(wasm: &[u8], image: &Image<'_>) -> Result<Vec<u8>> {
    if image.memory.len() % WASM_PAGE_BYTES != 0 {
        bail!(
            "memory image of {} bytes is not whole wasm pages",
            image.memory.len()
        );
    }
    let image_pages = (image.memory.len() / WASM_PAGE_BYTES) as u64;
    let mut imported_globals = 0u32;
    let mut out = wasm_encoder::Module::new();
    let mut reencoder = RoundtripReencoder;
    let mut data_count: Option<u32> = None;
    let segments = image_segments(image.memory);

    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload?;
        match &payload {
            Payload::ImportSection(reader) => {
                for import in reader.clone().into_imports() {
                    if let TypeRef::Global(_) = import?.ty {
                        imported_globals += 1;
                    }
                }
            }
            Payload::MemorySection(reader) => {
                let mut section = MemorySection::new();
                for (i, memory) in reader.clone().into_iter().enumerate() {
                    let mut memory = wasm_encoder::MemoryType::from(memory?);
                    if i == 0 {
                        if memory.maximum.is_some_and(|max| max < image_pages) {
                            bail!(
                                "memory image of {image_pages} pages exceeds the module's maximum"
                            );
                        }
                        memory.minimum = memory.minimum.max(image_pages);
                    }
                    section.memory(memory);
                }
                out.section(&section);
                continue;
            }
            Payload::GlobalSection(reader) => {
                let mut section = GlobalSection::new();
                for (i, global) in reader.clone().into_iter().enumerate() {
                    let global = global?;
                    let index = imported_globals + i as u32;
                    let ty = reencoder.global_type(global.ty)?;
                    let value = image
                        .globals
                        .iter()
                        .find(|(g, _)| *g == index)
                        .map(|(_, v)| *v);
                    let init = match (value, global.ty.content_type) {
                        (Some(GlobalValue::I32(v)), ValType::I32) => ConstExpr::i32_const(v),
                        (Some(GlobalValue::I64(v)), ValType::I64) => ConstExpr::i64_const(v),
                        (Some(GlobalValue::F32(v)), ValType::F32) => {
                            ConstExpr::f32_const(f32::from_bits(v).into())
                        }
                        (Some(GlobalValue::F64(v)), ValType::F64) => {
                            ConstExpr::f64_const(f64::from_bits(v).into())
                        }
                        _ => reencoder.const_expr(global.init_expr)?,
                    };
                    section.global(ty, &init);
                }
                out.section(&section);
                continue;
            }
            Payload::DataCountSection { count, .. } => {
                data_count = Some(*count);
                continue; // emitted after we know the new count, below
            }
            Payload::CodeSectionStart { .. } => {
                // The data count section precedes the code section.
                if let Some(count) = data_count.take() {
                    out.section(&DataCountSection {
                        count: count + segments.len() as u32,
                    });
                }
            }
            Payload::DataSection(reader) => {
                let mut section = DataSection::new();
                for data in reader.clone() {
                    let data = data?;
                    match data.kind {
                        DataKind::Passive => {
                            section.raw(&wasm[data.range.clone()]);
                        }
                        DataKind::Active { memory_index, .. } => {
                            // Keep the index so passive segments keep theirs;
                            // the image below already holds these bytes.
                            section.active(memory_index, &ConstExpr::i32_const(0), []);
                        }
                    }
                }
                for (offset, bytes) in &segments {
                    section.active(
                        0,
                        &ConstExpr::i32_const(*offset as i32),
                        bytes.iter().copied(),
                    );
                }
                out.section(&section);
                continue;
            }
            _ => {}
        }
        if let Some((id, range)) = payload.as_section() {
            out.section(&RawSection {
                id,
                data: &wasm[range],
            });
        }
    }
    let has_data_section = Parser::new(0)
        .parse_all(wasm)
        .any(|p| matches!(p, Ok(Payload::DataSection(_))));
    if !has_data_section && !segments.is_empty() {
        let mut section = DataSection::new();
        for (offset, bytes) in &segments {
            section.active(
                0,
                &ConstExpr::i32_const(*offset as i32),
                bytes.iter().copied(),
            );
        }
        out.section(&section);
    }
    let baked = out.finish();
    Validator::new()
        .validate_all(&baked)
        .context("validating the pre-initialised module")?;
    Ok(baked)
}

/// Splits memory into (offset, bytes) runs of non-zero pages.
fn image_segments(memory: &[u8]) -> Vec<(usize, &[u8])> {
    let mut segments = Vec::new();
    let mut run: Option<(usize, usize)> = None; // (first page, last non-zero page)
    for (page, bytes) in memory.chunks(PAGE_BYTES).enumerate() {
        if bytes.iter().all(|b| *b == 0) {
            continue;
        }
        run = match run {
            Some((first, last)) if page - last <= SEGMENT_GAP_PAGES => Some((first, page)),
            Some((first, last)) => {
                segments.push(run_bytes(memory, first, last));
                Some((page, page))
            }
            None => Some((page, page)),
        };
        let _ = run;
    }
    if let Some((first, last)) = run {
        segments.push(run_bytes(memory, first, last));
    }
    segments
}

fn run_bytes(memory: &[u8], first: usize, last: usize) -> (usize, &[u8]) {
    let start = first * PAGE_BYTES;
    let end = ((last + 1) * PAGE_BYTES).min(memory.len());
    (start, &memory[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &str = r#"(module
        (memory 1)
        (table 2 funcref)
        (global $sp (mut i32) (i32.const 1024))
        (global $k i32 (i32.const 7))
        (data (i32.const 16) "hello")
        (data $p "passive")
        (func $f (result i32) i32.const 1)
        (elem (i32.const 0) $f)
        (func (export "_start") (drop (call $f)))
        (func (export "__wasm_call_ctors")))"#;

    #[test]
    fn expose_adds_table_and_mutable_globals() -> Result<()> {
        let wasm = wat::parse_str(MODULE)?;
        let (out, facts) = expose(&wasm)?;
        assert!(facts.has_table && facts.exports_start && facts.exports_ctors);
        assert!(!facts.exports_zygote);
        assert_eq!(facts.mutable_globals, vec![0]);
        let names: Vec<String> = Parser::new(0)
            .parse_all(&out)
            .filter_map(|p| match p {
                Ok(Payload::ExportSection(r)) => Some(
                    r.into_iter()
                        .filter_map(|e| e.ok().map(|e| e.name.to_owned()))
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            })
            .flatten()
            .collect();
        assert!(names.contains(&TABLE_EXPORT.to_owned()));
        assert!(names.contains(&format!("{GLOBAL_EXPORT_PREFIX}0")));
        // Exposing twice does not duplicate our exports.
        let (twice, _) = expose(&out)?;
        assert_eq!(twice, out);
        Ok(())
    }

    #[test]
    fn not_wasm_is_refused() {
        assert!(expose(b"\0asm\x01\0\0\0garbage").is_err());
        assert!(expose(b"hello").is_err());
    }

    /// Found writing the `rewrite` fuzz target (its check that an exposed
    /// module validates fails on this): a component passes validation, and
    /// expose returned an invalid module made of its sections.
    #[test]
    fn components_are_refused() -> Result<()> {
        let component = wat::parse_str("(component (core module))")?;
        match expose(&component) {
            Err(error) => assert!(error.to_string().contains("components"), "{error}"),
            Ok(_) => bail!("a component was exposed"),
        }
        Ok(())
    }

    #[test]
    fn bake_keeps_passive_indices_and_sets_globals() -> Result<()> {
        let (wasm, _) = expose(&wat::parse_str(MODULE)?)?;
        let mut memory = vec![0u8; 2 * WASM_PAGE_BYTES];
        memory[16..21].copy_from_slice(b"HELLO");
        memory[WASM_PAGE_BYTES + 5] = 9;
        let baked = bake(
            &wasm,
            &Image {
                memory: &memory,
                globals: &[(0, GlobalValue::I32(4096))],
            },
        )?;
        let mut passive = 0;
        let mut active = Vec::new();
        let mut min_pages = 0;
        for payload in Parser::new(0).parse_all(&baked) {
            match payload? {
                Payload::DataSection(r) => {
                    for d in r {
                        let d = d?;
                        match d.kind {
                            DataKind::Passive => {
                                assert_eq!(d.data, b"passive");
                                passive += 1;
                            }
                            DataKind::Active { .. } => active.push(d.data.to_vec()),
                        }
                    }
                }
                Payload::MemorySection(r) => {
                    for m in r {
                        min_pages = m?.initial;
                    }
                }
                _ => {}
            }
        }
        assert_eq!(passive, 1);
        assert_eq!(min_pages, 2);
        // The original active segment is emptied; the image carries HELLO and the byte 9.
        assert!(active.iter().any(|d| d.is_empty()));
        assert!(active
            .iter()
            .any(|d| d.starts_with(&[0; 16]) || d.windows(5).any(|w| w == b"HELLO")));
        assert!(active.iter().any(|d| d.contains(&9)));
        Ok(())
    }

    #[test]
    fn segments_skip_zero_pages() {
        let mut memory = vec![0u8; 64 * PAGE_BYTES];
        memory[0] = 1;
        memory[2 * PAGE_BYTES] = 1; // gap of 1 page: folded
        memory[40 * PAGE_BYTES] = 1; // far: own segment
        let segments = image_segments(&memory);
        assert_eq!(segments.len(), 2);
        assert_eq!(segments[0].0, 0);
        assert_eq!(segments[0].1.len(), 3 * PAGE_BYTES);
        assert_eq!(segments[1].0, 40 * PAGE_BYTES);
    }
}

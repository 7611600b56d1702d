//! A funclet's state as it travels between nodes: the 4 KiB pages of linear
//! memory that differ from a base (the module's zygote image, plus on the
//! storage node the pages the compute node shipped), every mutable global,
//! and the memory's size.
//!
//! Dirty pages are found by comparing, page by page, with the base. The
//! kernel's write tracking (userfaultfd write-protect + `PAGEMAP_SCAN`)
//! would avoid reading clean pages, but it must be armed before the guest
//! writes, on memory wasmtime's pool owns; a compare reads memory at
//! ~10 GB/s (a 64 MiB heap in ~6 ms), which is cheap next to shipping it.

use std::ops::Range;
use std::sync::Arc;

use bytes::BytesMut;
use wasmtime::{format_err as anyhow, AsContextMut, Result, Val};

use crate::exec::rewrite::GLOBAL_EXPORT_PREFIX;
use crate::exec::{CallCtx, Executor, Function, ModuleFacts};
use ferry_transport::{Global, PageSet, PAGE_BYTES};

pub use crate::limits::WASM_PAGE_BYTES;
static ZERO_PAGE: [u8; PAGE_BYTES] = [0; PAGE_BYTES];

/// What memory holds where nothing has written it since the base was set:
/// the zygote image, then (on a storage node) the pages applied over it,
/// in parts whose indices ascend across parts too. Memory past the image
/// is zero.
pub struct Base<'a> {
    pub image: &'a [u8],
    pub applied: &'a [PageSet],
}

/// The pages of `memory` that differ from `base`, leaving out the byte
/// ranges in `skip` (getMmap buffers, which are the object's bytes).
pub fn dirty_pages(memory: &[u8], base: &Base<'_>, skip: &[Range<usize>]) -> Result<PageSet> {
    let mut indices = Vec::new();
    let mut data = BytesMut::new();
    let mut applied = base.applied.iter().flat_map(PageSet::iter).peekable();
    for (index, page) in memory.chunks_exact(PAGE_BYTES).enumerate() {
        let start = index * PAGE_BYTES;
        if skip
            .iter()
            .any(|r| r.start <= start && start + PAGE_BYTES <= r.end)
        {
            continue;
        }
        let mut expected: &[u8] = base
            .image
            .get(start..start + PAGE_BYTES)
            .unwrap_or(&ZERO_PAGE);
        while applied.next_if(|(i, _)| (*i as usize) < index).is_some() {}
        if let Some((_, bytes)) = applied.next_if(|(i, _)| *i as usize == index) {
            expected = bytes;
        }
        if page != expected {
            indices.push(index as u32);
            data.extend_from_slice(page);
        }
    }
    PageSet::new(indices, data.freeze()).map_err(|e| anyhow!("building a page set: {e}"))
}

/// `pages` cut into parts of at most `part_bytes` page bytes each (at
/// least one part, empty for an empty set); the parts share its bytes.
pub fn split(pages: &PageSet, part_bytes: usize) -> Result<Vec<PageSet>> {
    let per_part = (part_bytes / PAGE_BYTES).max(1);
    if pages.is_empty() {
        return Ok(vec![pages.clone()]);
    }
    pages
        .indices()
        .chunks(per_part)
        .enumerate()
        .map(|(n, indices)| {
            let start = n * per_part * PAGE_BYTES;
            let data = pages
                .data()
                .slice(start..start + indices.len() * PAGE_BYTES);
            PageSet::new(indices.to_vec(), data).map_err(|e| anyhow!("cutting a page set: {e}"))
        })
        .collect()
}

/// Writes `pages` into `memory`; a page outside it is the peer's error.
pub fn apply_pages(memory: &mut [u8], pages: &PageSet) -> Result<()> {
    let size = memory.len();
    for (index, bytes) in pages.iter() {
        let start = index as usize * PAGE_BYTES;
        let page = memory
            .get_mut(start..start + PAGE_BYTES)
            .ok_or_else(|| anyhow!("page {index} is outside linear memory of {size} bytes"))?;
        page.copy_from_slice(bytes);
    }
    Ok(())
}

/// The module's mutable globals, as the rewrite exported them.
pub fn globals_of(
    facts: &ModuleFacts,
    mut export: impl FnMut(&str) -> Option<wasmtime::Global>,
) -> Result<Vec<(u32, wasmtime::Global)>> {
    facts
        .mutable_globals
        .iter()
        .map(|index| {
            let name = format!("{GLOBAL_EXPORT_PREFIX}{index}");
            export(&name)
                .map(|g| (*index, g))
                .ok_or_else(|| anyhow!("the module does not export {name}"))
        })
        .collect()
}

/// Every numeric mutable global's raw bits (i32/f32 zero-extended).
pub fn read_globals(
    mut store: impl AsContextMut,
    globals: &[(u32, wasmtime::Global)],
) -> Vec<Global> {
    globals
        .iter()
        .filter_map(|(index, global)| {
            let bits = match global.get(&mut store) {
                Val::I32(v) => u64::from(v as u32),
                Val::I64(v) => v as u64,
                Val::F32(v) => u64::from(v),
                Val::F64(v) => v,
                _ => return None, // reference globals do not travel
            };
            Some(Global {
                index: *index,
                bits,
            })
        })
        .collect()
}

/// Sets globals from raw bits; an index the module has no mutable global
/// for is the peer's error.
pub fn write_globals(
    mut store: impl AsContextMut,
    globals: &[(u32, wasmtime::Global)],
    values: &[Global],
) -> Result<()> {
    for value in values {
        let (_, global) = globals
            .iter()
            .find(|(index, _)| *index == value.index)
            .ok_or_else(|| anyhow!("global {} is not a mutable global", value.index))?;
        let val = match global.ty(&store).content() {
            wasmtime::ValType::I32 => Val::I32(value.bits as u32 as i32),
            wasmtime::ValType::I64 => Val::I64(value.bits as i64),
            wasmtime::ValType::F32 => Val::F32(value.bits as u32),
            wasmtime::ValType::F64 => Val::F64(value.bits),
            other => return Err(anyhow!("global {} has type {other}", value.index)),
        };
        global.set(&mut store, val)?;
    }
    Ok(())
}

/// The linear memory of a fresh instance of `function` (its zygote image),
/// taken once and kept with the function.
///
/// Instantiating runs on its own task rather than inside the caller's
/// future: a host function runs on its call's fiber, and the new store's
/// instantiation must not nest inside it.
pub async fn image(executor: &Arc<Executor>, function: &Arc<Function>) -> Result<Arc<[u8]>> {
    if let Some(image) = function.image.get() {
        return Ok(image.clone());
    }
    let (executor, owned) = (executor.clone(), function.clone());
    let taken = glommio::spawn_local(async move {
        let spec = crate::exec::CallSpec {
            id: 0,
            user: owned.user.as_str().into(),
            function: owned.name.as_str().into(),
            input: Arc::from(Vec::new()),
            cmdline: String::new(),
            entry: crate::exec::Entry::Start,
            forbid_ndp: true,
            deadline: std::time::Instant::now()
                + std::time::Duration::from_millis(executor.limits.call_ms_max),
            depth: 0,
        };
        let mut store: wasmtime::Store<CallCtx> = executor.store(owned.clone(), spec);
        let instance = owned.pre.instantiate_async(&mut store).await?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| anyhow!("the module exports no memory"))?;
        Ok::<Arc<[u8]>, wasmtime::Error>(Arc::from(memory.data(&store)))
    })
    .await?;
    Ok(function.image.get_or_init(|| taken).clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn page(fill: u8) -> Vec<u8> {
        vec![fill; PAGE_BYTES]
    }

    #[test]
    fn only_pages_that_differ_from_the_base_are_dirty() -> Result<()> {
        let image = [page(1), page(0)].concat();
        // Page 0 as in the image, page 1 written, page 2 (past the image)
        // zero, page 3 (past the image) written.
        let memory = [page(1), page(7), page(0), page(9)].concat();
        let set = dirty_pages(
            &memory,
            &Base {
                image: &image,
                applied: &[],
            },
            &[],
        )?;
        assert_eq!(set.indices(), &[1, 3]);
        assert_eq!(&set.data()[..PAGE_BYTES], &page(7)[..]);
        Ok(())
    }

    #[test]
    fn a_page_that_became_zero_is_a_change() -> Result<()> {
        let image = page(5);
        let memory = page(0);
        let set = dirty_pages(
            &memory,
            &Base {
                image: &image,
                applied: &[],
            },
            &[],
        )?;
        assert_eq!(set.indices(), &[0]);
        Ok(())
    }

    #[test]
    fn applied_pages_are_the_base_and_skipped_ranges_are_left_out() -> Result<()> {
        let image = [page(1), page(1), page(1)].concat();
        let applied = PageSet::new(vec![0, 2], Bytes::from([page(4), page(6)].concat()))
            .map_err(|e| anyhow!("{e}"))?;
        // Page 0 as applied, page 1 as in the image, page 2 changed after
        // the apply, page 3 is a getMmap buffer.
        let memory = [page(4), page(1), page(8), page(3)].concat();
        let set = dirty_pages(
            &memory,
            &Base {
                image: &image,
                applied: std::slice::from_ref(&applied),
            },
            std::slice::from_ref(&(3 * PAGE_BYTES..4 * PAGE_BYTES)),
        )?;
        assert_eq!(set.indices(), &[2]);
        Ok(())
    }

    #[test]
    fn pages_outside_memory_are_refused() -> Result<()> {
        let mut memory = page(0);
        let set = PageSet::new(vec![1], Bytes::from(page(1))).map_err(|e| anyhow!("{e}"))?;
        assert!(apply_pages(&mut memory, &set).is_err());
        let set = PageSet::new(vec![0], Bytes::from(page(2))).map_err(|e| anyhow!("{e}"))?;
        apply_pages(&mut memory, &set)?;
        assert_eq!(memory, page(2));
        Ok(())
    }
}

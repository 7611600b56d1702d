//! Finding the C library's `exit` inside a module, so a call can run the
//! exit-time work (atexit handlers, stdio flush) that its `_start` skips.
//!
//! wasm-ld wraps a command's `_start` as `_start.command_export`, which
//! calls `__wasm_call_ctors`, then `_start`, then `__wasm_call_dtors`
//! (atexit handlers and `__stdio_exit`). When the module exports
//! `__wasm_call_ctors` itself, as Faasm's build does (the runtime runs the
//! constructors once, in the zygote), the linker drops that wrapper: `_start`
//! returns from `main` with buffered stdout unwritten and no atexit handler
//! run. wasi-libc's `exit(code)` does exactly that work, then `_Exit`, and
//! every command links it (`_start` calls it when `main` returns non-zero),
//! but it is not exported: the rewrite exports it as [`EXIT_EXPORT`].
//!
//! Found by name (the `name` section) when the module keeps one, else by
//! shape: `_Exit` is `(i32) -> ()` with body `local.get 0; call proc_exit;
//! unreachable`, and `exit` is the one `(i32) -> ()` function that makes
//! other calls and ends with `local.get 0; call _Exit; unreachable`.

use anyhow::Result;
use wasmparser::{FunctionBody, KnownCustom, Name, Operator, Parser, Payload, TypeRef};

/// Export name the rewrite gives the module's `exit`.
pub const EXIT_EXPORT: &str = "__ferry_exit";

/// A function body's operators, at most this many looked at: `exit` and
/// `_Exit` are a handful of instructions.
const SHAPE_OPERATORS_MAX: usize = 64;

/// The function index of the module's C `exit`, if it has one.
pub fn find_exit(wasm: &[u8]) -> Result<Option<u32>> {
    // Types of the form (i32) -> ().
    let mut i32_to_unit: Vec<bool> = Vec::new();
    // Type index of every function (imports first).
    let mut func_types: Vec<u32> = Vec::new();
    let mut imported_funcs = 0u32;
    let mut proc_exit: Option<u32> = None;
    let mut by_name: Option<u32> = None;
    let mut bodies: Vec<FunctionBody<'_>> = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        match payload? {
            Payload::TypeSection(reader) => {
                for group in reader {
                    for sub in group?.into_types() {
                        let is = match sub.composite_type.inner {
                            wasmparser::CompositeInnerType::Func(ref f) => {
                                f.params() == [wasmparser::ValType::I32] && f.results().is_empty()
                            }
                            _ => false,
                        };
                        i32_to_unit.push(is);
                    }
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import?;
                    if let TypeRef::Func(ty) = import.ty {
                        if import.module == "wasi_snapshot_preview1" && import.name == "proc_exit" {
                            proc_exit = Some(imported_funcs);
                        }
                        func_types.push(ty);
                        imported_funcs += 1;
                    }
                }
            }
            Payload::FunctionSection(reader) => {
                for ty in reader {
                    func_types.push(ty?);
                }
            }
            Payload::CodeSectionEntry(body) => bodies.push(body),
            Payload::CustomSection(section) => {
                if let KnownCustom::Name(reader) = section.as_known() {
                    for name in reader {
                        // A malformed name section is not ours to refuse.
                        let Ok(Name::Function(map)) = name else {
                            continue;
                        };
                        for naming in map.into_iter().flatten() {
                            if naming.name == "exit" {
                                by_name = Some(naming.index);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let takes_i32 = |func: u32| -> bool {
        func_types
            .get(func as usize)
            .and_then(|ty| i32_to_unit.get(*ty as usize))
            .copied()
            .unwrap_or(false)
    };
    if let Some(index) = by_name {
        return Ok((index >= imported_funcs && takes_i32(index)).then_some(index));
    }
    let Some(proc_exit) = proc_exit else {
        return Ok(None);
    };
    // `local.get 0; call target; unreachable; end` closes the body.
    let ends_calling = |ops: &[Operator<'_>], target: u32| -> bool {
        matches!(
            ops,
            [.., Operator::LocalGet { local_index: 0 }, Operator::Call { function_index }, Operator::Unreachable, Operator::End]
                if *function_index == target
        )
    };
    let shaped: Vec<(u32, Vec<Operator<'_>>)> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| (imported_funcs + i as u32, body))
        .filter(|(index, _)| takes_i32(*index))
        .filter_map(|(index, body)| Some((index, operators(body)?)))
        .collect();
    let exits: Vec<u32> = shaped
        .iter()
        .filter(|(_, ops)| ops.len() == 4 && ends_calling(ops, proc_exit))
        .map(|(index, _)| *index)
        .collect();
    let mut found = shaped.iter().filter(|(_, ops)| {
        let other_calls = ops
            .iter()
            .filter(|op| matches!(op, Operator::Call { .. }))
            .count()
            > 1;
        other_calls && exits.iter().any(|e| ends_calling(ops, *e))
    });
    match (found.next(), found.next()) {
        (Some((index, _)), None) => Ok(Some(*index)),
        _ => Ok(None), // none, or no way to tell which
    }
}

/// A short function's operators; None for a long or unreadable body.
fn operators<'a>(body: &FunctionBody<'a>) -> Option<Vec<Operator<'a>>> {
    let mut ops = Vec::new();
    let mut reader = body.get_operators_reader().ok()?;
    while !reader.eof() {
        ops.push(reader.read().ok()?);
        if ops.len() > SHAPE_OPERATORS_MAX {
            return None;
        }
    }
    Some(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPED: &str = r#"(module
        (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
        (func $on_exit)
        (func $stdio_exit)
        (func $_Exit (param i32) local.get 0 call $proc_exit unreachable)
        (func $exit (param i32) call $on_exit call $stdio_exit local.get 0 call $_Exit unreachable)
        (func $other (param i32) local.get 0 call $_Exit unreachable)
        (memory 1)
        (func (export "_start")))"#;

    #[test]
    fn exit_is_found_by_shape() -> Result<()> {
        // No `$names`, so no name section: found by shape alone.
        let unnamed = r#"(module
            (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
            (func)
            (func)
            (func (param i32) local.get 0 call 0 unreachable)
            (func (param i32) call 1 call 2 local.get 0 call 3 unreachable)
            (func (param i32) local.get 0 call 3 unreachable)
            (memory 1)
            (func (export "_start")))"#;
        let wasm = wat::parse_str(unnamed)?;
        assert_eq!(find_exit(&wasm)?, Some(4));
        Ok(())
    }

    #[test]
    fn exit_is_found_by_name() -> Result<()> {
        let wasm = wat::parse_str(SHAPED)?;
        assert_eq!(find_exit(&wasm)?, Some(4));
        Ok(())
    }

    #[test]
    fn no_exit_no_export() -> Result<()> {
        let wasm = wat::parse_str(r#"(module (func (export "_start")))"#)?;
        assert_eq!(find_exit(&wasm)?, None);
        Ok(())
    }
}

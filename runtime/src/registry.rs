//! The registry of uploaded functions: validate, rewrite, pre-initialise,
//! compile and store at upload; load compiled artifacts by mmap at start.
//!
//! On disk, under `<data>/functions/<user>/`: `<function>.wasm` (as
//! uploaded), `<function>.cwasm` (the compiled, pre-initialised module) and
//! `<function>.json` (what the runtime learnt about it). Each file is written
//! to a temporary name, synced and renamed, so a crash leaves the old
//! function or the new one.
//!
//! Lookups are lock-free (`ArcSwap`); uploads, which are rare, copy the map.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::exec::rewrite::{self, Image};
use crate::exec::{run_zygote, Executor, Function, ModuleFacts};
use crate::limits;

/// user -> function -> compiled function; nested so a lookup borrows the
/// caller's `&str`s instead of allocating a key.
type Functions = HashMap<String, HashMap<String, Arc<Function>>>;

pub struct Registry {
    dir: PathBuf,
    functions: ArcSwap<Functions>,
    writer: Mutex<()>,
}

/// Why an upload was refused: the client's fault (400) or the node's (500).
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{0}")]
    Invalid(String),
    #[error("storing the function: {0:#}")]
    Internal(anyhow::Error),
}

#[derive(Serialize, Deserialize)]
struct Meta {
    wasm_sha256: String,
    has_table: bool,
    mutable_globals: Vec<u32>,
    exports_start: bool,
    exports_ctors: bool,
    exports_zygote: bool,
}

/// A user or function name: the path-safe characters Faasm's names use.
pub fn check_name(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if !ok {
        bail!("invalid {kind} name {name:?}: use 1-128 of [A-Za-z0-9_.-], not starting with '.'");
    }
    Ok(())
}

impl Registry {
    /// Opens the registry under `dir`, loading every stored function. Returns
    /// the functions whose artifact could not be loaded (e.g. written by
    /// another engine version), to be uploaded again from their wasm.
    pub fn open(dir: PathBuf, executor: &Executor) -> Result<(Registry, Vec<(String, String)>)> {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut functions = Functions::new();
        let mut stale = Vec::new();
        for user_entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let user_dir = user_entry?.path();
            let Some(user) = user_dir
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_owned)
            else {
                continue;
            };
            if check_name("user", &user).is_err() || !user_dir.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(&user_dir)? {
                let path = entry?.path();
                if path.extension().and_then(|e| e.to_str()) != Some("json") {
                    continue;
                }
                let Some(name) = path.file_stem().and_then(|n| n.to_str()).map(str::to_owned)
                else {
                    continue;
                };
                match load(executor, &user_dir, &user, &name) {
                    Ok(function) => {
                        functions
                            .entry(user.clone())
                            .or_default()
                            .insert(name, Arc::new(function));
                    }
                    Err(error) => {
                        tracing::warn!(%user, function = %name, error = format!("{error:#}"), "stored artifact not loadable; recompiling from its wasm");
                        stale.push((user.clone(), name));
                    }
                }
            }
        }
        tracing::info!(functions = functions.values().map(HashMap::len).sum::<usize>(), dir = %dir.display(), "function registry loaded");
        Ok((
            Registry {
                dir,
                functions: ArcSwap::from_pointee(functions),
                writer: Mutex::new(()),
            },
            stale,
        ))
    }

    pub fn get(&self, user: &str, name: &str) -> Option<Arc<Function>> {
        self.functions.load().get(user)?.get(name).cloned()
    }

    pub fn len(&self) -> usize {
        self.functions.load().values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The wasm as uploaded.
    pub fn wasm(&self, user: &str, name: &str) -> Result<Option<Vec<u8>>> {
        check_name("user", user)?;
        check_name("function", name)?;
        let path = self.dir.join(user).join(format!("{name}.wasm"));
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Validates, rewrites, pre-initialises, compiles and stores a function.
    /// Runs on a shard: compiling goes to the shard's blocking thread, the
    /// zygote runs as a call on the shard.
    pub async fn upload(
        &self,
        executor: &Arc<Executor>,
        user: &str,
        name: &str,
        wasm: Vec<u8>,
    ) -> Result<Arc<Function>, UploadError> {
        let invalid = |e: anyhow::Error| UploadError::Invalid(format!("{e:#}"));
        check_name("user", user).map_err(invalid)?;
        check_name("function", name).map_err(invalid)?;
        if self.get(user, name).is_none() && self.len() >= limits::FUNCTIONS_MAX {
            return Err(UploadError::Invalid(format!(
                "the node holds its maximum of {} functions",
                limits::FUNCTIONS_MAX
            )));
        }
        if wasm.len() > limits::MODULE_BYTES_MAX {
            return Err(UploadError::Invalid(format!(
                "module of {} bytes exceeds the cap of {} bytes",
                wasm.len(),
                limits::MODULE_BYTES_MAX
            )));
        }
        let wasm = Arc::new(wasm);
        let exec = executor.clone();
        let source = wasm.clone();
        let (exposed, facts, module) = glommio::executor()
            .spawn_blocking(move || -> Result<_> {
                let (exposed, facts) = rewrite::expose(&source)?;
                let module = exec.compile(&exposed)?;
                Ok((exposed, facts, module))
            })
            .await
            .map_err(invalid)?;
        if !facts.exports_start {
            return Err(UploadError::Invalid(
                "the module does not export `_start`".into(),
            ));
        }
        let wasm_sha256 = hex::encode(Sha256::digest(wasm.as_slice()));
        let pre = executor.prepare(&module).map_err(|e| invalid(e.into()))?;
        let function = Arc::new(Function {
            user: user.to_owned(),
            name: name.to_owned(),
            wasm_sha256: wasm_sha256.clone(),
            module,
            pre,
            facts: facts.clone(),
            image: Default::default(),
        });
        let module = match run_zygote(executor, function.clone()).await.map_err(|e| {
            UploadError::Invalid(format!(
                "pre-initialising the module: {}",
                crate::exec::describe_failure(&e)
            ))
        })? {
            None => function.module.clone(),
            Some(state) => {
                let exec = executor.clone();
                glommio::executor()
                    .spawn_blocking(move || -> Result<_> {
                        let baked = rewrite::bake(
                            &exposed,
                            &Image {
                                memory: &state.memory,
                                globals: &state.globals,
                            },
                        )?;
                        Ok(exec.compile(&baked)?)
                    })
                    .await
                    .map_err(invalid)?
            }
        };
        let user_dir = self.dir.join(user);
        let meta = Meta {
            wasm_sha256,
            has_table: facts.has_table,
            mutable_globals: facts.mutable_globals.clone(),
            exports_start: facts.exports_start,
            exports_ctors: facts.exports_ctors,
            exports_zygote: facts.exports_zygote,
        };
        let exec = executor.clone();
        let (user_owned, name_owned) = (user.to_owned(), name.to_owned());
        let function = glommio::executor()
            .spawn_blocking(move || -> Result<Function> {
                store(&user_dir, &name_owned, &wasm, &module, &meta)?;
                load(&exec, &user_dir, &user_owned, &name_owned)
            })
            .await
            .map_err(UploadError::Internal)?;
        let function = Arc::new(function);
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut map = HashMap::clone(&self.functions.load());
        map.entry(user.to_owned())
            .or_default()
            .insert(name.to_owned(), function.clone());
        self.functions.store(Arc::new(map));
        Ok(function)
    }
}

fn store(
    user_dir: &Path,
    name: &str,
    wasm: &[u8],
    module: &wasmtime::Module,
    meta: &Meta,
) -> Result<()> {
    std::fs::create_dir_all(user_dir)
        .with_context(|| format!("creating {}", user_dir.display()))?;
    let artifact = module
        .serialize()
        .map_err(|e| anyhow!("serialising the compiled module: {e}"))?;
    write_atomic(&user_dir.join(format!("{name}.wasm")), wasm)?;
    write_atomic(&user_dir.join(format!("{name}.cwasm")), &artifact)?;
    // The meta file is written last: its presence means the others are whole.
    write_atomic(
        &user_dir.join(format!("{name}.json")),
        &serde_json::to_vec(meta)?,
    )?;
    let dir = std::fs::File::open(user_dir)?;
    dir.sync_all()
        .with_context(|| format!("syncing {}", user_dir.display()))?;
    Ok(())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    // Unique per write: two shards may store the same function at once.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp-{}-{n}", std::process::id()));
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.sync_data()
        .with_context(|| format!("syncing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

fn load(executor: &Executor, user_dir: &Path, user: &str, name: &str) -> Result<Function> {
    let meta: Meta = serde_json::from_slice(
        &std::fs::read(user_dir.join(format!("{name}.json")))
            .context("reading the function's meta file")?,
    )
    .context("parsing the function's meta file")?;
    let artifact = user_dir.join(format!("{name}.cwasm"));
    // SAFETY: the artifact was written by this node's `Module::serialize`
    // into a directory only the node writes; wasmtime checks its header
    // (engine version and settings) before mapping it.
    let module = unsafe { wasmtime::Module::deserialize_file(&executor.engine, &artifact) }
        .map_err(|e| anyhow!("{e:#}"))
        .with_context(|| format!("loading {}", artifact.display()))?;
    // Build the copy-on-write memory image now (a memfd filled with the
    // zygote's pages, ~2 ms for a C module), not in the first call.
    module
        .initialize_copy_on_write_image()
        .map_err(|e| anyhow!("preparing the memory image: {e}"))?;
    let pre = executor.prepare(&module)?;
    Ok(Function {
        user: user.to_owned(),
        name: name.to_owned(),
        wasm_sha256: meta.wasm_sha256,
        module,
        pre,
        facts: ModuleFacts {
            has_table: meta.has_table,
            mutable_globals: meta.mutable_globals,
            exports_start: meta.exports_start,
            exports_ctors: meta.exports_ctors,
            exports_zygote: meta.exports_zygote,
        },
        image: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn names_are_path_safe() {
        for good in ["ndp", "word_count", "a.b-c", "X1"] {
            assert!(check_name("function", good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "../x", "a/b", "a b", "é", &"x".repeat(129)] {
            assert!(check_name("function", bad).is_err(), "{bad}");
        }
    }
}

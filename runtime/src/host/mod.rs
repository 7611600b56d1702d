//! Host functions of module `env`: the Faasm guest ABI (ABI.md). One file
//! per group, one short function per import: check the guest's pointers
//! through [`guest::guest_range`] first, then do one thing.
//!
//! **Architecture invariant:** code a guest can reach never panics; a bad
//! pointer, a bad argument or a refused request is an error that traps the
//! call with a message naming the import.

mod chain;
mod env;
mod files;
#[doc(hidden)]
pub mod guest; // public for the fuzz target only
mod io;
mod libc;
mod ndp;
mod state;

use wasmtime::{Linker, Result};

use crate::exec::CallCtx;

pub fn add_to_linker(linker: &mut Linker<CallCtx>) -> Result<()> {
    io::add(linker)?;
    chain::add(linker)?;
    ndp::add(linker)?;
    libc::add(linker)?;
    env::add(linker)?;
    state::add(linker)?;
    files::add(linker)?;
    Ok(())
}

pub use files::write_back;

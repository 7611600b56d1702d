//! Compiles `ferry.capnp` into Rust with Debian's `capnp` compiler
//! (package `capnproto`) and `capnpc`'s Rust plugin, into `OUT_DIR`.

fn main() {
    println!("cargo:rerun-if-changed=ferry.capnp");
    if let Err(error) = capnpc::CompilerCommand::new()
        .src_prefix(".")
        .file("ferry.capnp")
        .run()
    {
        // A build script reports by panicking; say what to install.
        panic!(
            "compiling ferry.capnp failed: {error}\n\
             ferry-schemas needs the Cap'n Proto compiler `capnp` on PATH \
             (Debian: apt-get install capnproto)"
        );
    }
}

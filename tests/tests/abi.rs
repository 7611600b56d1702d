//! The guest ABI (ABI.md) as C functions built with plain clang + wasi-libc
//! use it: no table or globals exported by the linker.

use anyhow::Result;
use ferry_tests::Node;
use serde_json::json;

#[test]
fn guest_abi() -> Result<()> {
    let node = Node::with_functions()?;
    // (function, input, status, body)
    let cases = [
        ("echo", "hello", 200, "hello"),
        ("noop", "", 200, ""),
        ("hello", "", 200, "done"),
        ("retcode", "", 500, "three"),
        ("exitcode", "", 500, "Call failed (return value=7)"),
        ("funclet", "", 200, "ret=30 counter=15"),
        ("funclet2", "", 200, "ret=7 counter=12"),
        ("chain", "", 200, "parent got: child ran"),
        ("chainptr", "", 200, "parent got: child:abc"),
        ("zygote", "", 200, "initialised=42"),
        ("objects", "", 200, "hello missing=0"),
    ];
    for (function, input, status, body) in cases {
        let reply = node.call("test", function, input)?;
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (status, body),
            "test/{function}"
        );
    }
    // argv: the function name first, then cmdline split on spaces.
    let reply = node.invoke(json!({"user": "test", "function": "argv", "cmdline": "a b  c"}))?;
    assert_eq!(reply.text(), "a,b,c");
    // func_ptr: a table element as the entry; a bad one is a clear failure.
    let reply = node.invoke(json!({"user": "test", "function": "noop", "func_ptr": 99999}))?;
    assert_eq!(reply.status, 500);
    assert!(
        reply
            .text()
            .contains("function pointer 99999 is outside the table"),
        "{}",
        reply.text()
    );
    // Binary input through input_base64.
    let reply =
        node.invoke(json!({"user": "test", "function": "echo", "input_base64": "AAEC/w=="}))?;
    assert_eq!(reply.body, vec![0u8, 1, 2, 255]);
    Ok(())
}

#[test]
fn zygote_failure_fails_the_upload() -> Result<()> {
    let node = Node::with_functions()?;
    let wasm = std::fs::read(ferry_tests::guests()?.join("invalid/zygote_fail.wasm"))?;
    let reply = node.upload_wasm("test", "zygote_fail_again", &wasm)?;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(
        reply
            .text()
            .contains("_faasm_zygote failed with return value 9"),
        "{}",
        reply.text()
    );
    Ok(())
}

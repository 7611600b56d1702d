//! Faasm functions beyond NDP: what upstream Faasm's demo functions rely
//! on, each as a C function in `guests/c/test` built from source, called
//! over HTTP. Functions named `*_faasm` are the same source linked with
//! Faasm's own link flags (guests/build.sh).

use std::path::PathBuf;

use anyhow::Result;
use ferry_tests::{Node, NodeOptions};

/// A node with Faasm's `CAPTURE_STDOUT=on` (a call's stdout comes back
/// before its output) and test functions `names`, each built plainly and
/// with Faasm's link flags (`NAME_faasm`); only those, so that nodes
/// started side by side do not compile every test function each.
fn node_with(names: &[&str]) -> Result<(Node, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let path: PathBuf = dir.path().join("ferry.toml");
    std::fs::write(
        &path,
        "[limits]\ncapture_stdout = true\nfile_bytes_max = 8388608\n",
    )?;
    let node = Node::start(NodeOptions {
        extra: vec!["--config".into(), path.display().to_string()],
        ..Default::default()
    })?;
    let built = ferry_tests::guests()?.join("tests/test");
    for name in names {
        for function in [name.to_string(), format!("{name}_faasm")] {
            let wasm = std::fs::read(built.join(format!("{function}.wasm")))?;
            let reply = node.upload_wasm("test", &function, &wasm)?;
            assert_eq!(reply.status, 200, "uploading {function}: {}", reply.text());
        }
    }
    Ok((node, dir))
}

/// Calls test/`function` and checks status and body.
fn check(node: &Node, function: &str, input: &str, status: u16, body: &str) -> Result<()> {
    let reply = node.call("test", function, input)?;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (status, body),
        "test/{function}"
    );
    Ok(())
}

#[test]
fn exit_time_work_runs_with_and_without_exported_ctors() -> Result<()> {
    let (node, _dir) = node_with(&["atexit"])?;
    // The atexit handler sets the output; stdout's unterminated line is
    // flushed at exit. Linked with Faasm's flags the module exports
    // __wasm_call_ctors and _start skips both unless the runtime runs them.
    for function in ["atexit", "atexit_faasm"] {
        check(
            &node,
            function,
            "",
            200,
            "partial line, no newline\natexit ran",
        )?;
    }
    Ok(())
}

#[test]
fn faasm_environment_flags_terminals_and_working_dir() -> Result<()> {
    let (node, _dir) = node_with(&["faasm_env"])?;
    let expected = "MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONHASHSEED=0 PYTHONHOME=/ \
                    PYTHONNOUSERSITE=on PYTHONWASM=1 PYTHON_PATH=/\n\
                    ALWAYS_ON=1 ALWAYS_OFF=0 PYTHON_PRELOAD=0 NO_SUCH_FLAG=0\n\
                    isatty stdin=0 stdout=1 stderr=1\n\
                    env.getcwd=/bin returned_buf=1 too_small=0 libc getcwd=/";
    for function in ["faasm_env", "faasm_env_faasm"] {
        check(&node, function, "", 200, expected)?;
    }
    Ok(())
}

#[test]
fn memory_cap_is_faasms_by_default() -> Result<()> {
    // Faasm lets a module grow to 4 GiB less a page; ferry's old default
    // stopped it at 1 GiB.
    let (node, _dir) = node_with(&["bigmem"])?;
    for function in ["bigmem", "bigmem_faasm"] {
        check(&node, function, "", 200, "grew to 3072 MiB")?;
    }
    Ok(())
}

/// The sandboxed filesystem (exec/sandbox.rs): read-only root files, a fresh
/// writable /tmp and working directory per call, faasm:// shared files kept
/// across the user's calls, file-backed mmap, and no way out.
#[test]
fn sandboxed_filesystem() -> Result<()> {
    let (node, _dir) = node_with(&["files"])?;
    let report = |before: &str, after: &str| {
        format!(
            "shared before={before}\nshared write=ok\nshared after={after}\n\
             etc/hosts=127.0.0.1\tlocalhost\netc write=refused\n\
             tmp fresh=yes\ncwd fresh=yes\ntmp=tmp data\ncwd=work data\n\
             dotdot=blocked\ntmp dotdot=blocked\nabsolute=blocked\n\
             symlink absolute=blocked\nsymlink relative=blocked\n\
             mmap=mapped bytes"
        )
    };
    // Each call finds what the previous one wrote to faasm://, and a fresh
    // /tmp and working directory.
    check(&node, "files", "first", 200, &report("(none)", "first"))?;
    check(
        &node,
        "files_faasm",
        "second",
        200,
        &report("first", "second"),
    )?;
    check(&node, "files", "third", 200, &report("second", "third"))?;
    // Another user's faasm:// is their own.
    let wasm = std::fs::read(ferry_tests::guests()?.join("tests/test/files.wasm"))?;
    assert_eq!(node.upload_wasm("other", "files", &wasm)?.status, 200);
    let reply = node.invoke(serde_json::json!(
        {"user": "other", "function": "files", "input_data": "theirs"}
    ))?;
    assert_eq!(reply.text(), report("(none)", "theirs"));
    check(&node, "files", "fourth", 200, &report("third", "fourth"))?;
    // faasm:// files are the user's objects under `faasm/`: what a call
    // wrote is there once it returns, and an object put there is what the
    // next call opens.
    let object = "/o/test/faasm/some_dir/shared.txt";
    let stored = node.get(&node.upload, object)?;
    assert_eq!((stored.status, stored.text().as_str()), (200, "fourth"));
    let put = node.put(&node.upload, object, b"from the object store\n")?;
    assert_eq!(put.status, 200, "{}", put.text());
    check(
        &node,
        "files",
        "fifth",
        200,
        &report("from the object store", "fifth"),
    )?;
    assert_eq!(node.get(&node.upload, object)?.text(), "fifth");
    // An object removed is a file gone at the next open.
    assert_eq!(node.delete(&node.upload, object)?.status, 200);
    check(&node, "files", "sixth", 200, &report("(none)", "sixth"))?;
    // The node's own files never reached the guest: nothing outside the
    // data directory's sandbox was written.
    let host_passwd = std::fs::read_to_string("/etc/passwd")?;
    assert!(!host_passwd.contains("faasm:x:1000"));
    Ok(())
}

/// Faasm's state API over the node's state store (host/state.rs), from C
/// functions built plainly and with Faasm's flags, against the same values
/// `PUT/GET /s/<user>/<key>` reach.
#[test]
fn state_api() -> Result<()> {
    let (node, _dir) = node_with(&["state"])?;
    for function in ["state", "state_faasm"] {
        let call = |input: &str| node.call("test", function, input);
        let ok = |input: &str, body: &str| check(&node, function, input, 200, body);
        let k = format!("{function}_k");
        ok(&format!("write {k} abcdefg"), "ok")?;
        ok(&format!("read {k}"), "7:abcdefg")?;
        // Guest writes reach /s/, and /s/ writes reach guests.
        assert_eq!(
            node.get(&node.upload, &format!("/s/test/{k}"))?.text(),
            "abcdefg"
        );
        let http_key = format!("{function}_http");
        assert_eq!(
            node.put(&node.upload, &format!("/s/test/{http_key}"), b"fromhttp")?
                .status,
            200
        );
        ok(&format!("read {http_key}"), "8:fromhttp")?;
        // Two pointers to one key are one memory; a pushed write lasts.
        ok(&format!("ptr {k} XYZ"), "same=1 chunk=1 view=abXYZfg")?;
        ok(&format!("read {k}"), "7:abXYZfg")?;
        // Without the push, the next call does not see it.
        ok(&format!("nopush {k} QQQ"), "view=abQQQfg")?;
        ok(&format!("read {k}"), "7:abXYZfg")?;
        ok(&format!("pull {k} 1234567"), "1234567")?;
        ok(&format!("offset {k} LMN"), "LMN")?;
        ok(&format!("read {k}"), "7:1234LMN")?;
        // Partial pushes send only what was flagged dirty, or masked.
        ok(&format!("partial {k}"), "ok")?;
        ok(&format!("read {k}"), "7:Xbcdefg")?;
        ok(&format!("mask {k}"), "ok")?;
        ok(&format!("read {k}"), "7:1bcdef7")?;
        // Appends from concurrent calls all land (Faasm's state_append).
        let ap = format!("{function}_ap");
        let ids: Vec<String> = [100, 200]
            .iter()
            .map(|n| {
                node.invoke(serde_json::json!({"user": "test", "function": function,
                    "input_data": format!("append {ap} {n}"), "async": true}))
                    .map(|r| r.text())
            })
            .collect::<Result<_>>()?;
        for id in ids {
            let id: u64 = id.parse()?;
            node.wait_for(std::time::Duration::from_secs(30), |n| {
                let status = n.invoke(serde_json::json!(
                    {"user": "test", "function": function, "status": true, "id": id}
                ))?;
                Ok(status.text() != "RUNNING")
            })?;
        }
        ok(&format!("appended {ap} 300"), "sum=24850")?;
        ok(&format!("clear {ap}"), "ok")?;
        ok(&format!("appended {ap} 300"), "sum=0")?;
        // Locks: a second lock in one call is refused; a call's locks go
        // with it (else the next call would wait out its deadline).
        let lk = format!("{function}_lock");
        for _ in 0..2 {
            let reply = call(&format!("lock {lk}"))?;
            assert_eq!(reply.status, 500);
            assert!(
                reply.text().contains("already locked by this call"),
                "{}",
                reply.text()
            );
        }
        ok(&format!("read {lk}"), "6:locked")?;
        // A file of the call's sandbox becomes a value (its size back);
        // a path out of the sandbox is refused with -1.
        let ff = format!("{function}_file");
        ok(&format!("fromfile {ff} filebytes"), "9:filebytes escape=-1")?;
        assert_eq!(
            node.get(&node.upload, &format!("/s/test/{ff}"))?.text(),
            "filebytes"
        );
        // Sizes and pointers are checked like every other guest argument.
        for (input, reason) in [
            (
                "oob",
                "env::__faasm_read_state: guest range [0x7fffff00, +4096) is outside linear memory",
            ),
            (
                "huge",
                "env::__faasm_write_state: state size 134217728 is outside 0..=67108864 bytes",
            ),
            (
                "chunk",
                "env::__faasm_read_state_offset_ptr: chunk [5, +3) is outside the value's 7 bytes",
            ),
        ] {
            let reply = call(&format!("{input} {k}"))?;
            assert_eq!(reply.status, 500, "{input}");
            assert!(reply.text().contains(reason), "{input}: {}", reply.text());
        }
        // A value over the state cap is refused from its Content-Length,
        // before a byte of it is read or stored: guests could never read it.
        let over = format!("/s/test/{function}_over");
        let mut stream = std::net::TcpStream::connect(&node.upload)?;
        std::io::Write::write_all(
            &mut stream,
            format!(
                "PUT {over} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                (64u64 << 20) + 1
            )
            .as_bytes(),
        )?;
        let mut head = [0u8; 12];
        std::io::Read::read_exact(&mut stream, &mut head)?;
        assert_eq!(&head, b"HTTP/1.1 413");
        assert_eq!(node.get(&node.upload, &over)?.status, 404);
        // Users do not share state.
        assert_eq!(
            node.get(&node.upload, &format!("/s/other/{k}"))?.status,
            404
        );
    }
    Ok(())
}

/// A call's writes to files are capped (`limits.file_bytes_max`, 8 MiB
/// here): past it a write fails with ENOSPC and writes nothing, the call
/// goes on, and the next call has its own allowance.
#[test]
fn file_writes_are_capped_per_call() -> Result<()> {
    let (node, _dir) = node_with(&["diskhog"])?;
    for function in ["diskhog", "diskhog_faasm", "diskhog"] {
        check(
            &node,
            function,
            "",
            200,
            "wrote 8388608: No space left on device; small: No space left on device",
        )?;
    }
    Ok(())
}

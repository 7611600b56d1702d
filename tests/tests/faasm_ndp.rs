//! The curl lines of Faasm's NDP guide, verbatim (ports from the node),
//! against the C examples and their Rust twins, with and without
//! `forbid_ndp`.

use std::process::Command;

use anyhow::{bail, Result};
use ferry_tests::Node;

/// Runs curl exactly as the guide does and returns the body.
fn curl(node: &Node, body: &str) -> Result<String> {
    let url = format!("http://{}/f/", node.http);
    let out = Command::new("curl")
        .args([
            "-s",
            "-X",
            "POST",
            &url,
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
        ])
        .output()?;
    if !out.status.success() {
        bail!("curl failed: {}", out.status);
    }
    Ok(String::from_utf8(out.stdout)?)
}

#[test]
fn faasm_ndp_curl_lines() -> Result<()> {
    let node = Node::with_functions()?;
    for suffix in ["", "_rs"] {
        for forbid in [false, true] {
            let key = format!("key{suffix}{forbid}");
            let line = |function: &str, input: &str| {
                format!(
                    r#"{{"async": false, "user": "ndp", "function": "{function}{suffix}", "input_data": "{input}", "forbid_ndp": {forbid}}}"#
                )
            };
            // A node alone holds every object, so its funclets run in place;
            // with forbid_ndp they run here as the baseline. The metrics
            // say which, so the two runs are told apart.
            let reason = if forbid { "forbid_ndp" } else { "holds_object" };
            let sample = format!("ferry_funclets_here_total{{reason=\"{reason}\"}}");
            let check = |function: &str, input: &str, expected: &str| -> Result<()> {
                let before = node.metric(&sample)?;
                let got = curl(&node, &line(function, input))?;
                assert_eq!(got, expected, "{function}{suffix} forbid_ndp={forbid}");
                let ran = node.metric(&sample)? - before;
                // put and get do their I/O in main; the others in a funclet.
                let funclets = if matches!(function, "put" | "get") {
                    0.0
                } else {
                    1.0
                };
                assert_eq!(
                    ran, funclets,
                    "{function}{suffix}: funclets run for {reason}"
                );
                Ok(())
            };
            check("put", &format!("{key} v1 v2 v3"), "OK")?;
            check("get", &key, "v1 v2 v3")?;
            check("wordcount", &key, "v1\t1\nv2\t1\nv3\t1\n")?;
            check("grep", &format!("{key} v[23]"), "3 6")?;
        }
    }
    // The guide's lines as written (no forbid_ndp field at all).
    let body = |f: &str, input: &str| {
        format!(r#"{{"async": false, "user": "ndp", "function": "{f}", "input_data": "{input}"}}"#)
    };
    assert_eq!(curl(&node, &body("put", "key v1 v2 v3"))?, "OK");
    assert_eq!(curl(&node, &body("get", "key"))?, "v1 v2 v3");
    assert_eq!(
        curl(&node, &body("wordcount", "key"))?,
        "v1\t1\nv2\t1\nv3\t1\n"
    );
    Ok(())
}

#[test]
fn wordcount_sorts_and_counts_a_larger_object() -> Result<()> {
    let node = Node::with_functions()?;
    let text = "the quick brown fox jumps over the lazy dog the end\n".repeat(2000);
    assert_eq!(
        node.put(&node.upload, "/o/ndp/book", text.as_bytes())?
            .status,
        200
    );
    let expected = "brown\t2000\ndog\t2000\nend\t2000\nfox\t2000\njumps\t2000\nlazy\t2000\nover\t2000\nquick\t2000\nthe\t6000\n";
    for function in ["wordcount", "wordcount_rs"] {
        let reply = node.call("ndp", function, "book")?;
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (200, expected),
            "{function}"
        );
    }
    // A missing object is an error, not an empty count.
    let reply = node.call("ndp", "get", "no-such-key")?;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.text(), "No object no-such-key");
    Ok(())
}

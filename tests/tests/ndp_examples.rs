//! The compute-light NDP examples (wordcount, countstr, sumcol) on one
//! compute and one storage node on loopback, over HTTP: each answer is
//! checked against a reference computed here, each call's funclet must have
//! run on the storage node with NDP and on the compute node with
//! forbid_ndp (the nodes' own counters say where), and both ways must
//! answer the same.

use std::collections::BTreeMap;

use anyhow::{ensure, Context, Result};
use ferry_tests::words::Rng;
use ferry_tests::{Cluster, Node};
use serde_json::json;

const NODES: [(&str, &str, &str); 2] = [
    ("storage-0", "storage", "127.0.9.1"),
    ("compute-0", "compute", "127.0.9.2"),
];

/// Whitespace as C's isspace() takes it in the C locale.
fn is_space(b: u8) -> bool {
    b == b' ' || (b'\t'..=b'\r').contains(&b)
}

/// What `ndp/wordcount` answers: "word\tcount\n" per distinct word, in
/// byte order, words kept as raw bytes.
fn wordcount(data: &[u8]) -> Vec<u8> {
    let mut counts = BTreeMap::<&[u8], u64>::new();
    for word in data.split(|b| is_space(*b)).filter(|w| !w.is_empty()) {
        *counts.entry(word).or_default() += 1;
    }
    let mut out = Vec::new();
    for (word, n) in counts {
        out.extend_from_slice(word);
        out.extend_from_slice(format!("\t{n}\n").as_bytes());
    }
    out
}

/// Non-overlapping occurrences of `needle`, from the start.
fn countstr(data: &[u8], needle: &[u8]) -> String {
    let (mut n, mut pos) = (0u64, 0);
    while pos + needle.len() <= data.len() {
        if &data[pos..pos + needle.len()] == needle {
            n += 1;
            pos += needle.len();
        } else {
            pos += 1;
        }
    }
    n.to_string()
}

/// What `ndp/sumcol` answers for column `column` of a CSV object.
fn sumcol(data: &[u8], column: usize) -> String {
    let mut lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let (mut sum, mut bad) = (0i64, 0u64);
    for line in &lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let field = line.split(|b| *b == b',').nth(column);
        let strict = |f: &[u8]| {
            let digits = f
                .strip_prefix(b"-")
                .or_else(|| f.strip_prefix(b"+"))
                .unwrap_or(f);
            !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
        };
        match field
            .filter(|f| strict(f))
            .and_then(|f| std::str::from_utf8(f).ok()?.parse::<i64>().ok())
        {
            Some(v) => sum += v,
            None => bad += 1,
        }
    }
    format!("sum {sum} lines {} bad {bad}", lines.len())
}

/// Text with every whitespace kind, words of 1 to 40 bytes (past the
/// 8 bytes a word's head holds), some non-ASCII and NUL bytes.
fn mixed_text(rng: &mut Rng, len: usize) -> Vec<u8> {
    let vocabulary: Vec<Vec<u8>> = (0..300)
        .map(|i| {
            let n = [1, 2, 3, 7, 8, 9, 15, 16, 17, 40][i % 10];
            (0..n)
                .map(|_| b"abcxyz0\x00\xc3\xa9\xff"[(rng.next_u64() % 11) as usize])
                .collect()
        })
        .collect();
    let gaps: [&[u8]; 8] = [b" ", b"\t", b"\n", b"\x0b", b"\x0c", b"\r", b"  ", b" \r\n"];
    let mut out = Vec::with_capacity(len + 64);
    while out.len() < len {
        let r = rng.next_u64();
        out.extend_from_slice(&vocabulary[(r % 300) as usize]);
        out.extend_from_slice(gaps[((r >> 20) % 8) as usize]);
    }
    out.truncate(len);
    out
}

/// CSV lines "id,amount,label" with some bad and missing amounts, CRLF
/// endings on some lines and no newline at the end.
fn csv(rng: &mut Rng, lines: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..lines {
        let r = rng.next_u64();
        let amount = match r % 50 {
            0 => "n/a".to_owned(),
            1 => String::new(),
            2 => "+17".to_owned(),
            3 => "1 2".to_owned(),
            _ => ((r >> 8) as i64 % 2_000_001 - 1_000_000).to_string(),
        };
        let line = match r % 97 {
            0 => format!("{i}"),
            _ => format!("{i},{amount},x{}", r % 7),
        };
        out.extend_from_slice(line.as_bytes());
        if i + 1 < lines {
            out.extend_from_slice(if r % 5 == 0 { b"\r\n" } else { b"\n" });
        }
    }
    out
}

/// The counters that say where a funclet ran.
#[derive(Debug, Clone, Copy)]
struct Counters {
    /// Funclets run on this node for another node's call.
    funclets_local: f64,
    /// Funclets of this node's calls run here because of forbid_ndp.
    here_forbid: f64,
    /// Offloads of this node's calls another node accepted.
    accepted: f64,
}

fn counters(node: &Node) -> Result<Counters> {
    let metrics = node.scrape()?;
    Ok(Counters {
        funclets_local: metrics.value("ferry_funclets_local_total"),
        here_forbid: metrics.value("ferry_funclets_here_total{reason=\"forbid_ndp\"}"),
        accepted: metrics.value("ferry_offloads_total{result=\"accepted\"}"),
    })
}

#[test]
fn compute_light_examples_answer_right_near_the_data_and_without_it() -> Result<()> {
    let cluster = Cluster::configure(&NODES)?;
    let storage = cluster.start("storage-0", false, &[])?;
    let compute = cluster.start("compute-0", true, &[])?;

    let mut rng = Rng(0x6e64_705f_6578);
    let text = mixed_text(&mut rng, 3 << 20);
    let table = csv(&mut rng, 60_000);
    let objects: Vec<(&str, Vec<u8>)> = vec![
        ("text", text),
        ("spaces", b"   ".to_vec()),
        ("whitespace", b" \t\n\x0b\x0c\r".to_vec()),
        ("long", vec![b'q'; 100_000]),
        ("aaaa", vec![b'a'; 1001]),
        ("table", table),
        (
            "edges",
            b"9223372036854775807,1\n-9223372036854775808,2\n9223372036854775808,3\n,\n-,x\r\n+5"
                .to_vec(),
        ),
    ];
    for (key, data) in &objects {
        let reply = compute.put(&compute.upload, &format!("/o/ndp/{key}"), data)?;
        ensure!(
            reply.status == 200,
            "putting ndp/{key}: {} {}",
            reply.status,
            reply.text()
        );
    }
    let object = |key: &str| -> Result<&[u8]> {
        objects
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, d)| d.as_slice())
            .with_context(|| format!("no test object {key}"))
    };

    let mut cases: Vec<(&str, String, Vec<u8>)> = Vec::new();
    for key in ["text", "spaces", "whitespace", "long"] {
        cases.push(("wordcount", key.to_owned(), wordcount(object(key)?)));
    }
    for (key, needle) in [
        ("text", "ab"),
        ("text", "a\tz"),
        ("text", "xyz0"),
        ("text", "not there at all"),
        ("aaaa", "aa"),
        ("aaaa", "aaa"),
        ("long", "q"),
    ] {
        let expected = countstr(object(key)?, needle.as_bytes());
        cases.push(("countstr", format!("{key} {needle}"), expected.into_bytes()));
    }
    for (key, column) in [
        ("table", 0),
        ("table", 1),
        ("table", 2),
        ("table", 3),
        ("edges", 0),
        ("edges", 1),
    ] {
        let expected = sumcol(object(key)?, column);
        cases.push(("sumcol", format!("{key} {column}"), expected.into_bytes()));
    }
    // The reference answers are not trivial.
    ensure!(
        wordcount(object("text")?).len() > 1000,
        "the text has too few words"
    );
    ensure!(
        countstr(object("aaaa")?, b"aa") == "500",
        "the reference countstr counts overlaps"
    );
    ensure!(
        sumcol(object("table")?, 1).contains("bad ")
            && !sumcol(object("table")?, 1).ends_with("bad 0")
    );

    let nodes = [&storage, &compute];
    for (function, input, expected) in &cases {
        let mut answers = Vec::new();
        for forbid_ndp in [false, true] {
            let before: Vec<Counters> = nodes.iter().map(|n| counters(n)).collect::<Result<_>>()?;
            let reply = compute.invoke(json!({
                "user": "ndp", "function": function, "input_data": input, "forbid_ndp": forbid_ndp
            }))?;
            let after: Vec<Counters> = nodes.iter().map(|n| counters(n)).collect::<Result<_>>()?;
            let what = format!("{function} \"{input}\" forbid_ndp={forbid_ndp}");
            ensure!(
                reply.status == 200,
                "{what}: status {}: {}",
                reply.status,
                reply.text()
            );
            ensure!(
                reply.body == *expected,
                "{what}: answered {:?}, expected {:?}",
                String::from_utf8_lossy(&reply.body[..reply.body.len().min(200)]),
                String::from_utf8_lossy(&expected[..expected.len().min(200)])
            );
            let delta = |node: usize, f: fn(&Counters) -> f64| f(&after[node]) - f(&before[node]);
            let placed = (
                delta(1, |c| c.here_forbid),
                delta(1, |c| c.accepted),
                delta(0, |c| c.funclets_local),
            );
            let want = if forbid_ndp {
                (1.0, 0.0, 0.0)
            } else {
                (0.0, 1.0, 1.0)
            };
            ensure!(
                placed == want,
                "{what}: (compute forbid_ndp runs, compute offloads accepted, storage funclets) moved by {placed:?}, expected {want:?}"
            );
            answers.push(reply.body);
        }
        ensure!(
            answers[0] == answers[1],
            "{function} \"{input}\": NDP and forbid_ndp differ"
        );
    }
    Ok(())
}

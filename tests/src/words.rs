//! Test data and its reference answers: random text from a small
//! vocabulary, and what the `wordcount` example must answer for it.

use std::collections::BTreeMap;

/// splitmix64: test objects are random but the same every run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Text of whitespace-separated words from a vocabulary of 40, `len` bytes.
pub fn text(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        let word = rng.next_u64();
        out.extend_from_slice(format!("w{}", word % 40).as_bytes());
        out.push(if word % 11 == 0 { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

/// What `ndp/wordcount` outputs for `data`: a "word\tcount\n" line per
/// distinct word, sorted by word in byte order.
pub fn wordcount(data: &[u8]) -> String {
    let mut counts = BTreeMap::<&[u8], u64>::new();
    for word in data
        .split(|b| *b == b' ' || (b'\t'..=b'\r').contains(b))
        .filter(|w| !w.is_empty())
    {
        *counts.entry(word).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(w, n)| format!("{}\t{n}\n", String::from_utf8_lossy(w)))
        .collect()
}

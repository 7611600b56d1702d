//! The header block at the start of every object file.
//!
//! Layout (little-endian), [`HEADER_BYTES`] in all:
//!
//! ```text
//!  0  magic        8 bytes  "ferryobj"
//!  8  version      u32      FORMAT_VERSION
//! 12  user_len     u32
//! 16  key_len      u32
//! 20  reserved     u32      zero
//! 24  data_len     u64      object size in bytes
//! 32  checksum     32 bytes sha256 of bytes 0..32 and of user and key
//! 64  user         user_len bytes, then key, key_len bytes
//!     zero padding to HEADER_BYTES
//! ```
//!
//! The user and key are stored in full so a read can prove the file it
//! opened by hashed name holds the object asked for.

use sha2::{Digest, Sha256};

use crate::limits::{HEADER_BYTES, HEADER_FIXED_BYTES};

const MAGIC: [u8; 8] = *b"ferryobj";
const FORMAT_VERSION: u32 = 1;
const CHECKSUM_AT: usize = 32;
const CHECKSUM_BYTES: usize = 32;

const _: () = assert!(CHECKSUM_AT + CHECKSUM_BYTES == HEADER_FIXED_BYTES);

/// Writes the header for (`user`, `key`, `data_len`) into `block`, which must
/// be the first [`HEADER_BYTES`] of the file and zeroed past the header.
pub(crate) fn encode(block: &mut [u8], user: &[u8], key: &[u8], data_len: u64) {
    // The callers check user and key lengths against the config, and the
    // config is checked against the header room at open.
    assert!(HEADER_FIXED_BYTES + user.len() + key.len() <= HEADER_BYTES);
    assert!(block.len() >= HEADER_BYTES);
    let (user_len, key_len) = (user.len() as u32, key.len() as u32);
    block[0..8].copy_from_slice(&MAGIC);
    block[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    block[12..16].copy_from_slice(&user_len.to_le_bytes());
    block[16..20].copy_from_slice(&key_len.to_le_bytes());
    block[20..24].copy_from_slice(&0u32.to_le_bytes());
    block[24..32].copy_from_slice(&data_len.to_le_bytes());
    let user_at = HEADER_FIXED_BYTES;
    let key_at = user_at + user.len();
    block[user_at..key_at].copy_from_slice(user);
    block[key_at..key_at + key.len()].copy_from_slice(key);
    let checksum = checksum(block, user.len() + key.len());
    block[CHECKSUM_AT..CHECKSUM_AT + CHECKSUM_BYTES].copy_from_slice(&checksum);
}

/// A header read back from disk, borrowing the block it was read from.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Header<'a> {
    pub user: &'a [u8],
    pub key: &'a [u8],
    pub data_len: u64,
}

/// Parses and checks a header block. The error names what is wrong; the
/// caller adds the path.
pub(crate) fn decode(block: &[u8]) -> Result<Header<'_>, String> {
    if block.len() < HEADER_BYTES {
        return Err(format!(
            "header block holds {} bytes, expected {HEADER_BYTES}",
            block.len()
        ));
    }
    if block[0..8] != MAGIC {
        return Err("bad magic".to_string());
    }
    let version = u32_at(block, 8);
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version}, this build reads {FORMAT_VERSION}"
        ));
    }
    let user_len = u32_at(block, 12) as usize;
    let key_len = u32_at(block, 16) as usize;
    let names_room = HEADER_BYTES - HEADER_FIXED_BYTES;
    if user_len > names_room || key_len > names_room - user_len {
        return Err(format!(
            "user of {user_len} bytes and key of {key_len} bytes do not fit the header"
        ));
    }
    let expected = checksum(block, user_len + key_len);
    if block[CHECKSUM_AT..CHECKSUM_AT + CHECKSUM_BYTES] != expected {
        return Err("header checksum mismatch".to_string());
    }
    let mut data_len = [0u8; 8];
    data_len.copy_from_slice(&block[24..32]);
    let user_at = HEADER_FIXED_BYTES;
    let key_at = user_at + user_len;
    Ok(Header {
        user: &block[user_at..key_at],
        key: &block[key_at..key_at + key_len],
        data_len: u64::from_le_bytes(data_len),
    })
}

fn u32_at(block: &[u8], at: usize) -> u32 {
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&block[at..at + 4]);
    u32::from_le_bytes(bytes)
}

/// sha256 over the fixed fields before the checksum and over user and key.
/// `names_len` must already be known to fit the block.
fn checksum(block: &[u8], names_len: usize) -> [u8; CHECKSUM_BYTES] {
    let mut hasher = Sha256::new();
    hasher.update(&block[..CHECKSUM_AT]);
    hasher.update(&block[HEADER_FIXED_BYTES..HEADER_FIXED_BYTES + names_len]);
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(user: &[u8], key: &[u8], data_len: u64) -> Vec<u8> {
        let mut block = vec![0u8; HEADER_BYTES];
        encode(&mut block, user, key, data_len);
        block
    }

    #[test]
    fn round_trip() -> Result<(), String> {
        let key = b"dir/\xe2\x9c\x93\0end";
        let block = encoded(b"alice", key, 123_456_789_000);
        let header = decode(&block)?;
        assert_eq!(
            header,
            Header {
                user: b"alice",
                key,
                data_len: 123_456_789_000
            }
        );
        Ok(())
    }

    #[test]
    fn longest_names_fit() -> Result<(), String> {
        let user = vec![b'u'; crate::limits::USER_BYTES_MAX];
        let key = vec![0xff; crate::limits::KEY_BYTES_MAX];
        let block = encoded(&user, &key, 0);
        let header = decode(&block)?;
        assert_eq!((header.user, header.key), (&user[..], &key[..]));
        Ok(())
    }

    #[test]
    fn any_flipped_byte_is_caught() {
        let block = encoded(b"bob", b"k", 42);
        // Every byte the checksum or the parser looks at; past the names the
        // block is padding.
        for at in 0..HEADER_FIXED_BYTES + 4 {
            let mut damaged = block.clone();
            damaged[at] ^= 0x01;
            assert!(
                decode(&damaged).is_err(),
                "flip at byte {at} went unnoticed"
            );
        }
    }

    #[test]
    fn short_block_rejected() {
        let block = encoded(b"bob", b"k", 42);
        assert!(decode(&block[..HEADER_BYTES - 1]).is_err());
    }
}

//! RADOS object names for (user, key) pairs.
//!
//! A name is `<user part>/<key part>`, where each part is the user or key
//! itself when that is unambiguous, and an escape otherwise:
//!
//! - The key part is the key verbatim when the key is valid UTF-8, holds no
//!   NUL and does not start with [`ESCAPE`]; otherwise it is [`ESCAPE`]
//!   followed by the key in unpadded URL-safe base64 (RFC 4648 section 5).
//! - The user part follows the same rule and, in addition, escapes a user
//!   that contains `/`, so the first `/` of a name always ends the user part.
//!
//! So `alice/photos/cat.jpg` is user `alice`, key `photos/cat.jpg`, and a
//! binary key `ff 00` of user `alice` is `alice/~b64:_wA`. The mapping is
//! injective: a verbatim part never starts with the escape, an escaped part
//! always does and base64 is injective, and the user part holds no `/`.
//! librados' C API takes names as C strings, hence the NUL rule; valid UTF-8
//! keeps names printable by `rados ls`.

use std::borrow::Cow;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Starts an escaped user or key part.
pub(crate) const ESCAPE: &str = "~b64:";

/// The object name of `key` of `user`.
pub(crate) fn object_name(user: &str, key: &[u8]) -> String {
    let user = encode_part(user.as_bytes(), false);
    let key = encode_part(key, true);
    let mut name = String::with_capacity(user.len() + 1 + key.len());
    name.push_str(&user);
    name.push('/');
    name.push_str(&key);
    name
}

/// What every object name of `user` starts with, and nothing else's does.
pub(crate) fn user_prefix(user: &str) -> String {
    let mut prefix = encode_part(user.as_bytes(), false).into_owned();
    prefix.push('/');
    prefix
}

/// The key whose key part is `part`, or `None` when `part` is not the key
/// part of any key (an object named by another tool, e.g. `~b64:` followed
/// by something that is not canonical base64). Such objects cannot be
/// reached through the store and are not listed.
pub(crate) fn decode_key(part: &[u8]) -> Option<Vec<u8>> {
    let key = match part.strip_prefix(ESCAPE.as_bytes()) {
        Some(encoded) => URL_SAFE_NO_PAD.decode(encoded).ok()?,
        None => part.to_vec(),
    };
    // Canonical only: the name this key would be stored under must be
    // exactly `part`.
    (encode_part(&key, true).as_bytes() == part).then_some(key)
}

/// The longest object name of a user of up to `user_bytes_max` bytes and a
/// key of up to `key_bytes_max` bytes.
pub(crate) const fn object_name_bytes_max(user_bytes_max: usize, key_bytes_max: usize) -> usize {
    escaped_bytes_max(user_bytes_max) + 1 + escaped_bytes_max(key_bytes_max)
}

/// The longest part for input of up to `len` bytes: escaped is the longer.
const fn escaped_bytes_max(len: usize) -> usize {
    ESCAPE.len() + (len * 4).div_ceil(3)
}

fn encode_part(bytes: &[u8], slash_allowed: bool) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text)
            if !text.starts_with(ESCAPE)
                && !text.contains('\0')
                && (slash_allowed || !text.contains('/')) =>
        {
            Cow::Borrowed(text)
        }
        _ => {
            let mut escaped = String::from(ESCAPE);
            URL_SAFE_NO_PAD.encode_string(bytes, &mut escaped);
            Cow::Owned(escaped)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(user: &str, key: &[u8], expected: &str) {
        assert_eq!(
            object_name(user, key),
            expected,
            "user {user:?} key {key:?}"
        );
        let rest = expected
            .strip_prefix(&user_prefix(user))
            .unwrap_or_else(|| panic!("{expected} lacks the prefix of {user:?}"));
        assert_eq!(decode_key(rest.as_bytes()).as_deref(), Some(key));
    }

    #[test]
    fn names_are_readable_where_they_can_be() {
        check("alice", b"photos/cat.jpg", "alice/photos/cat.jpg");
        check("alice", b"", "alice/");
        check("alice", b"/", "alice//");
        check("alice", "κλειδί ✓".as_bytes(), "alice/κλειδί ✓");
        check("alice", b"\xff\x00", "alice/~b64:_wA");
        check("alice", b"a\0b", "alice/~b64:YQBi");
        check("alice", b"~b64:x", "alice/~b64:fmI2NDp4");
        check("a/b", b"c", "~b64:YS9i/c");
        check("~b64:", b"k", "~b64:fmI2NDo/k");
    }

    #[test]
    fn names_never_collide() {
        let users = ["a", "a/b", "a/", "b", "~b64:YQ", "~b64:", "a\0"];
        let keys: [&[u8]; 9] = [
            b"", b"b", b"/b", b"b/c", b"\xff", b"~b64:YQ", b"~b64:", b"\0", b"b\0",
        ];
        let mut seen = std::collections::HashMap::new();
        for user in users {
            for key in keys {
                let name = object_name(user, key);
                if let Some(other) = seen.insert(name.clone(), (user, key)) {
                    panic!("{name} names both {other:?} and {:?}", (user, key));
                }
                assert!(!name.contains('\0'));
                assert!(name.starts_with(&user_prefix(user)));
                for other in users.iter().filter(|&&u| u != user) {
                    assert!(
                        !name.starts_with(&user_prefix(other)),
                        "{name} of {user:?} starts with the prefix of {other:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn non_canonical_key_parts_are_not_keys() {
        // Verbatim text that should have been escaped, and escapes of text
        // that would have been verbatim, name no key.
        assert_eq!(decode_key(b"~b64:YQ"), None); // "a" is stored as "a"
        assert_eq!(decode_key(b"~b64:!!"), None);
        assert_eq!(decode_key(b"\xff"), None);
        assert_eq!(decode_key(b"~b64:_w"), Some(vec![0xff]));
    }

    #[test]
    fn longest_name_is_bounded() {
        let user = "/".repeat(256);
        let key = vec![0xffu8; 1024];
        assert_eq!(
            object_name(&user, &key).len(),
            object_name_bytes_max(256, 1024)
        );
    }
}

//! The CLI's HTTP client: upload, invoke, objects. Plain blocking HTTP; the
//! same requests curl makes, with `Authorization: Bearer` when given a token.

use anyhow::{bail, Context, Result};
use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};

pub struct Client {
    agent: ureq::Agent,
    invoke_url: String,
    upload_url: String,
    /// The `Authorization` header value, when the node wants a token.
    authorization: Option<String>,
}

/// What a URL path keeps as is in a key: RFC 3986's unreserved bytes and
/// `/`. Everything else is `%XX`.
const KEY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');
/// A user or function name: one path segment, so `/` is escaped too.
const SEGMENT: &AsciiSet = &KEY.add(b'/');

/// One object of a listing (`GET /o/USER/`): its key and size in bytes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
}

/// The objects in the body of a listing.
pub fn parse_listing(body: &[u8]) -> Result<Vec<ListedObject>> {
    serde_json::from_slice(body).context("reading the node's object listing")
}

/// A listing as a table for people: a header, then one line per object,
/// keys left-aligned and sizes in bytes right-aligned, two spaces apart.
/// Control characters in keys are shown escaped, so that every object
/// stays on one line.
pub fn listing_table(objects: &[ListedObject]) -> String {
    let keys: Vec<String> = objects.iter().map(|o| shown_key(&o.key)).collect();
    let sizes: Vec<String> = objects.iter().map(|o| o.size.to_string()).collect();
    let width = |header: &str, cells: &[String]| {
        cells
            .iter()
            .map(|cell| cell.chars().count())
            .chain([header.len()])
            .max()
            .unwrap_or(0)
    };
    let (key_width, size_width) = (width("KEY", &keys), width("SIZE", &sizes));
    let mut table = format!("{:<key_width$}  {:>size_width$}\n", "KEY", "SIZE");
    for (key, size) in keys.iter().zip(&sizes) {
        table.push_str(&format!("{key:<key_width$}  {size:>size_width$}\n"));
    }
    table
}

fn shown_key(key: &str) -> String {
    if key.chars().any(char::is_control) {
        key.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        key.to_owned()
    }
}

/// A reply: status and body, whatever the status.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Client {
    /// `host` is a host name or address; ports are the node's; `token` is
    /// the user's API token on a node that has tokens.
    pub fn new(host: &str, http_port: u16, upload_port: u16, token: Option<&str>) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        Client {
            agent,
            invoke_url: format!("http://{host}:{http_port}"),
            upload_url: format!("http://{host}:{upload_port}"),
            authorization: token.map(|token| format!("Bearer {token}")),
        }
    }

    fn request(&self, method: http::Method, url: &str) -> http::request::Builder {
        let builder = http::Request::builder().method(method).uri(url);
        match &self.authorization {
            Some(value) => builder.header(http::header::AUTHORIZATION, value),
            None => builder,
        }
    }

    fn send(
        &self,
        request: http::request::Builder,
        body: impl ureq::AsSendBody,
        what: &str,
    ) -> Result<Reply> {
        let request = request
            .body(body)
            .with_context(|| format!("{what}: building the request"))?;
        Self::finish(self.agent.run(request), what)
    }

    fn finish(
        response: Result<http::Response<ureq::Body>, ureq::Error>,
        what: &str,
    ) -> Result<Reply> {
        let mut response = response.with_context(|| format!("{what}: request failed"))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .with_context(|| format!("{what}: reading the reply"))?;
        Ok(Reply { status, body })
    }

    pub fn upload(&self, user: &str, function: &str, wasm: &[u8]) -> Result<Reply> {
        let url = format!(
            "{}/f/{}/{}",
            self.upload_url,
            encode_segment(user),
            encode_segment(function)
        );
        self.send(self.request(http::Method::PUT, &url), wasm, "uploading")
    }

    pub fn invoke(&self, message: &serde_json::Value) -> Result<Reply> {
        let url = format!("{}/f/", self.invoke_url);
        self.send(
            self.request(http::Method::POST, &url)
                .header(http::header::CONTENT_TYPE, "application/json"),
            message.to_string().as_bytes(),
            "invoking",
        )
    }

    pub fn object_put(&self, user: &str, key: &str, bytes: &[u8]) -> Result<Reply> {
        let url = self.object_url(user, key);
        self.send(
            self.request(http::Method::PUT, &url),
            bytes,
            "writing the object",
        )
    }

    pub fn object_get(&self, user: &str, key: &str) -> Result<Reply> {
        let url = self.object_url(user, key);
        self.send(
            self.request(http::Method::GET, &url),
            (),
            "reading the object",
        )
    }

    pub fn object_delete(&self, user: &str, key: &str) -> Result<Reply> {
        let url = self.object_url(user, key);
        self.send(
            self.request(http::Method::DELETE, &url),
            (),
            "deleting the object",
        )
    }

    pub fn object_list(&self, user: &str) -> Result<Reply> {
        let url = format!("{}/o/{}/", self.upload_url, encode_segment(user));
        self.send(self.request(http::Method::GET, &url), (), "listing objects")
    }

    fn object_url(&self, user: &str, key: &str) -> String {
        format!(
            "{}/o/{}/{}",
            self.upload_url,
            encode_segment(user),
            encode_key(key.as_bytes())
        )
    }
}

impl Reply {
    /// The body when the status is 2xx; otherwise an error with the body.
    pub fn ok(self) -> Result<Vec<u8>> {
        if (200..300).contains(&self.status) {
            Ok(self.body)
        } else {
            bail!(
                "HTTP {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        }
    }
}

/// Percent-encodes a key for a URL path, keeping `/` and unreserved bytes.
pub fn encode_key(key: &[u8]) -> String {
    percent_encode(key, KEY).to_string()
}

/// Percent-encodes one path segment (a user or function name).
fn encode_segment(name: &str) -> String {
    percent_encode(name.as_bytes(), SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_slashes_and_unreserved_bytes() {
        assert_eq!(encode_key(b"dir/a-b_c.d~e"), "dir/a-b_c.d~e");
        assert_eq!(encode_key(b"a b+c%\x01\xff"), "a%20b%2Bc%25%01%FF");
        assert_eq!(encode_segment("a/b"), "a%2Fb");
    }

    fn listed(key: &str, size: u64) -> ListedObject {
        ListedObject {
            key: key.to_owned(),
            size,
        }
    }

    #[test]
    fn a_listing_table_aligns_keys_left_and_sizes_right() -> Result<()> {
        let objects =
            parse_listing(br#"[{"key":"a","size":5},{"key":"dir/long-key","size":123456}]"#)?;
        assert_eq!(
            listing_table(&objects),
            "KEY             SIZE\n\
             a                  5\n\
             dir/long-key  123456\n"
        );
        assert_eq!(listing_table(&[]), "KEY  SIZE\n");
        // A newline in a key stays on the key's line.
        assert_eq!(
            listing_table(&[listed("x\ny", 1)]),
            "KEY   SIZE\nx\\ny     1\n"
        );
        Ok(())
    }
}

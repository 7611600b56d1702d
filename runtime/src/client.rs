//! The CLI's HTTP client: upload, invoke, objects. Plain blocking HTTP; the
//! same requests curl makes.

use anyhow::{bail, Context, Result};

pub struct Client {
    agent: ureq::Agent,
    invoke_url: String,
    upload_url: String,
}

/// A reply: status and body, whatever the status.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Client {
    /// `host` is a host name or address; ports are the node's.
    pub fn new(host: &str, http_port: u16, upload_port: u16) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        Client {
            agent,
            invoke_url: format!("http://{host}:{http_port}"),
            upload_url: format!("http://{host}:{upload_port}"),
        }
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
        let url = format!("{}/f/{user}/{function}", self.upload_url);
        Self::finish(self.agent.put(&url).send(wasm), "uploading")
    }

    pub fn invoke(&self, message: &serde_json::Value) -> Result<Reply> {
        let url = format!("{}/f/", self.invoke_url);
        Self::finish(
            self.agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(message.to_string().as_bytes()),
            "invoking",
        )
    }

    pub fn object_put(&self, user: &str, key: &str, bytes: &[u8]) -> Result<Reply> {
        Self::finish(
            self.agent.put(&self.object_url(user, key)).send(bytes),
            "writing the object",
        )
    }

    pub fn object_get(&self, user: &str, key: &str) -> Result<Reply> {
        Self::finish(
            self.agent.get(&self.object_url(user, key)).call(),
            "reading the object",
        )
    }

    pub fn object_delete(&self, user: &str, key: &str) -> Result<Reply> {
        Self::finish(
            self.agent.delete(&self.object_url(user, key)).call(),
            "deleting the object",
        )
    }

    pub fn object_list(&self, user: &str) -> Result<Reply> {
        Self::finish(
            self.agent
                .get(&format!("{}/o/{user}/", self.upload_url))
                .call(),
            "listing objects",
        )
    }

    fn object_url(&self, user: &str, key: &str) -> String {
        format!(
            "{}/o/{user}/{}",
            self.upload_url,
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
    let mut out = String::with_capacity(key.len());
    for byte in key {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(byte) {
            out.push(*byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

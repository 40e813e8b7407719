//! The HTTP side of witness submissions (`crate::witness`): `POST
//! <url>/add-checkpoint` with reqwest, the answer's status, content type and at
//! most `witness::MAX_ANSWER_BYTES` of its body. Keep-alive connections, as
//! tlog-witness recommends; no redirect is followed (a witness's answer is its
//! own, or it is a failure).

use futures_util::StreamExt as _;

use crate::witness::{Answer, MAX_ANSWER_BYTES, Transport};

/// A reqwest client for witnesses.
pub(crate) struct HttpTransport {
    client: reqwest::Client,
}

impl HttpTransport {
    /// A client; `None` if reqwest cannot build one (no TLS roots, say).
    pub(crate) fn new() -> Result<HttpTransport, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wasm-hypervisor/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| error.to_string())?;
        Ok(HttpTransport { client })
    }
}

#[async_trait::async_trait]
impl Transport for HttpTransport {
    async fn add_checkpoint(&self, url: &str, body: String) -> Result<Answer, String> {
        let response = self
            .client
            .post(url)
            .header("content-type", "text/plain; charset=utf-8")
            .body(body)
            .send()
            .await
            .map_err(|error| error.to_string())?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let mut stream = response.bytes_stream();
        let mut body = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| error.to_string())?;
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(format!("an answer over {MAX_ANSWER_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            content_type,
            body,
        })
    }
}

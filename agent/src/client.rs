//! The CLI's HTTP client for a running agent: resumable uploads and reads.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use crate::import::ImportOptions;

/// Size of each uploaded part.
const PART: u64 = 64 << 20;
/// Consecutive failed attempts before giving up.
const ATTEMPTS: u32 = 8;

/// How long an event stream may stay silent: several heartbeats (15 s each) missed.
const EVENT_SILENCE: Duration = Duration::from_secs(60);

pub struct Client {
    http: reqwest::Client,
    /// For event streams: no overall timeout, a read timeout instead.
    stream_http: reqwest::Client,
    server: String,
    token: String,
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEvent {
    /// `event:` (`message` when absent).
    pub event: String,
    /// `data:` lines joined by newlines.
    pub data: String,
}

/// An open `text/event-stream` answer, read event by event; comments (heartbeats) are
/// skipped.
pub struct EventStream {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl EventStream {
    /// The next event; `None` when the agent ended the stream.
    pub async fn next(&mut self) -> Result<Option<ServerEvent>> {
        loop {
            if let Some(event) = take_event(&mut self.buf) {
                return Ok(Some(event));
            }
            match self.resp.chunk().await.context("reading the agent's event stream")? {
                Some(bytes) => self.buf.extend_from_slice(&bytes),
                None => return Ok(None),
            }
        }
    }
}

/// Removes the first complete event (ended by a blank line) from `buf`; blocks holding only
/// comments (heartbeats) are dropped on the way.
fn take_event(buf: &mut Vec<u8>) -> Option<ServerEvent> {
    loop {
        let find = |sep: &[u8]| buf.windows(sep.len()).position(|w| w == sep).map(|at| (at, sep.len()));
        let (at, len) = [find(b"\n\n"), find(b"\r\n\r\n")]
            .into_iter()
            .flatten()
            .min_by_key(|(at, _)| *at)?;
        let block = String::from_utf8_lossy(&buf[..at]).into_owned();
        buf.drain(..at + len);
        let mut event = String::new();
        let mut data: Vec<&str> = Vec::new();
        for line in block.lines() {
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => event = value.to_owned(),
                "data" => data.push(value),
                _ => {}
            }
        }
        if event.is_empty() && data.is_empty() {
            continue;
        }
        return Some(ServerEvent {
            event: if event.is_empty() { "message".into() } else { event },
            data: data.join("\n"),
        });
    }
}

impl Client {
    pub fn new(server: &str, token: &str, ca: Option<&Path>) -> Result<Self> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(600));
        let mut stream_builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(EVENT_SILENCE);
        if let Some(ca) = ca {
            let pem = fs_err::read(ca)?;
            let cert = reqwest::Certificate::from_pem(&pem).context("--ca is not a PEM certificate")?;
            builder = builder.add_root_certificate(cert.clone());
            stream_builder = stream_builder.add_root_certificate(cert);
        }
        Ok(Self {
            http: builder.build()?,
            stream_http: stream_builder.build()?,
            server: server.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    async fn check(resp: reqwest::Response) -> Result<Value> {
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let code = body["code"].as_str().unwrap_or("error");
            let msg = body["message"].as_str().unwrap_or("");
            let hint = match code {
                "stored_bundle_corrupt" => {
                    "\nhint: import the same file again: the agent now takes all of it and replaces its corrupt copy"
                }
                _ => "",
            };
            bail!("the agent answered {status}: {msg} ({code}){hint}");
        }
        Ok(body)
    }

    /// Sends one JSON request (a body for POST and PUT) and reads the JSON answer.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let mut req = self.http.request(method, self.url(path)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.server))?;
        Self::check(resp).await
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<Value> {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value> {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    /// Streams `GET path` into `out` (written to a temporary file beside it, renamed at the
    /// end). Returns the bytes written.
    pub async fn download(&self, path: &str, out: &Path) -> Result<u64> {
        use futures_util::StreamExt as _;
        use std::io::Write as _;
        let resp = self
            .stream_http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.server))?;
        if !resp.status().is_success() {
            Self::check(resp).await?;
            bail!("unreachable: the answer was not a success");
        }
        let dir = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut file = tempfile::NamedTempFile::new_in(dir)?;
        let mut written = 0u64;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.with_context(|| format!("the download of {path} broke off"))?;
            file.write_all(&chunk)?;
            written += chunk.len() as u64;
        }
        file.as_file().sync_all()?;
        file.persist(out).map_err(|e| e.error)?;
        Ok(written)
    }

    /// `POST path` with a file as the body.
    pub async fn post_file(&self, path: &str, file: &Path, content_type: &str) -> Result<Value> {
        let f = tokio::fs::File::open(file)
            .await
            .with_context(|| format!("cannot open {}", file.display()))?;
        let len = f.metadata().await?.len();
        let body = reqwest::Body::wrap_stream(file_chunks(f));
        let resp = self
            .stream_http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(body)
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.server))?;
        Self::check(resp).await
    }

    /// As [`Client::post`] for a call that may take longer than the usual 10 minutes (a full
    /// re-hash of the store): waits up to `timeout`.
    pub async fn post_waiting(&self, path: &str, body: &Value, timeout: Duration) -> Result<Value> {
        let resp = self
            .http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .timeout(timeout)
            .json(body)
            .send()
            .await
            .with_context(|| format!("no answer from {} to POST {path} within {timeout:?}", self.server))?;
        Self::check(resp).await
    }

    /// Opens the release's event stream (`GET /api/v1/events`); the token goes in the header.
    pub async fn events(&self) -> Result<EventStream> {
        let resp = self
            .stream_http
            .get(self.url("/api/v1/events"))
            .bearer_auth(&self.token)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.server))?;
        if !resp.status().is_success() {
            Self::check(resp).await?;
            bail!("the agent's event stream ended at once");
        }
        Ok(EventStream { resp, buf: Vec::new() })
    }

    /// Uploads `file` part by part, resuming from the agent's offset after any break, then commits.
    ///
    /// The first part is the head entry alone. When the agent answers that it already holds
    /// that identity (its signatures verified, it is stored intact), the rest is not sent: the
    /// commit stages the images from the stored copy. Otherwise the upload goes on.
    pub async fn upload(&self, file: &Path, options: ImportOptions) -> Result<Value> {
        let size = fs_err::metadata(file)?.len();
        let head_end = head_entry_end(&mut fs_err::File::open(file)?, size)?;
        let mut body = serde_json::to_value(options)?;
        body["size"] = json!(size);
        let resp = self
            .http
            .post(self.url("/api/v1/uploads"))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.server))?;
        let created = Self::check(resp).await?;
        let id = created["id"]
            .as_str()
            .context("the agent gave no upload id")?
            .to_owned();
        let mut offset = 0u64;
        let mut failures = 0;
        while offset < size {
            let len = if offset < head_end {
                head_end - offset
            } else {
                PART.min(size - offset)
            };
            // Streamed from the file: the client holds a few chunks, not a part.
            let mut part = tokio::fs::File::open(file).await?;
            part.seek(SeekFrom::Start(offset)).await?;
            let sent = self
                .http
                .put(self.url(&format!("/api/v1/uploads/{id}?offset={offset}")))
                .bearer_auth(&self.token)
                .header(reqwest::header::CONTENT_LENGTH, len)
                .body(reqwest::Body::wrap_stream(file_chunks(part.take(len))))
                .send()
                .await;
            match sent {
                Ok(resp) if resp.status() == reqwest::StatusCode::CONFLICT => {
                    let v: Value = resp.json().await.unwrap_or(Value::Null);
                    offset = v["expectedOffset"].as_u64().context("409 without expectedOffset")?;
                }
                Ok(resp) if resp.status().is_success() => {
                    let v: Value = resp.json().await?;
                    offset = v["offset"].as_u64().context("no offset in the answer")?;
                    failures = 0;
                    eprintln!(
                        "uploaded {} of {} bytes ({}%)",
                        offset,
                        size,
                        offset * 100 / size.max(1)
                    );
                    if v["stored"] == true && offset < size {
                        eprintln!(
                            "the agent already holds this bundle ({}): not sending the other {} bytes",
                            v["identity"].as_str().unwrap_or("?"),
                            size - offset
                        );
                        break;
                    }
                }
                Ok(resp) if resp.status().is_server_error() => {
                    failures += 1;
                    self.resync(&id, &mut offset, failures, &format!("{}", resp.status()))
                        .await?;
                }
                Ok(resp) => {
                    Self::check(resp).await?;
                }
                Err(e) => {
                    failures += 1;
                    self.resync(&id, &mut offset, failures, &e.to_string()).await?;
                }
            }
        }
        let resp = self
            .http
            .post(self.url(&format!("/api/v1/uploads/{id}/commit")))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.server))?;
        Self::check(resp).await
    }

    async fn resync(&self, id: &str, offset: &mut u64, failures: u32, why: &str) -> Result<()> {
        if failures > ATTEMPTS {
            bail!(
                "upload {id} failed {ATTEMPTS} times in a row (last: {why})\nhint: run the same import again later; it resumes"
            );
        }
        eprintln!("upload interrupted ({why}); resuming");
        tokio::time::sleep(Duration::from_millis(250 * u64::from(failures))).await;
        if let Ok(v) = self.get(&format!("/api/v1/uploads/{id}")).await {
            *offset = v["offset"].as_u64().unwrap_or(*offset);
        }
        Ok(())
    }

    pub async fn import_path(&self, path: &Path, options: ImportOptions) -> Result<Value> {
        let mut body = serde_json::to_value(options)?;
        body["path"] = json!(path);
        let resp = self
            .http
            .post(self.url("/api/v1/imports"))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.server))?;
        Self::check(resp).await
    }
}

/// Where the head entry (header, content, padding) ends, from the file's first tar header;
/// a file too short or without a canonical size there is sent in ordinary parts (the agent
/// refuses it with the precise reason).
fn head_entry_end(f: &mut fs_err::File, size: u64) -> Result<u64> {
    use schemas::tar_header::{BLOCK, padding, parse};
    let mut header = [0u8; BLOCK];
    if size < BLOCK as u64 {
        return Ok(size);
    }
    f.seek(SeekFrom::Start(0))?;
    f.read_exact(&mut header)?;
    Ok(match parse(&header).size {
        Some(n) if n <= schemas::head::MAX_HEAD_BYTES => (BLOCK as u64 + n + padding(n)).min(size),
        _ => PART.min(size),
    })
}

/// A file (or a part of one) as a stream of chunks of up to 256 KiB.
fn file_chunks<R>(file: R) -> impl futures_util::Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    futures_util::stream::unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(buf), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_server_sent_events_and_skips_heartbeats() {
        let mut buf = b": heartbeat\n\nevent: progress\ndata: {\"step\":\"Apply\"}\n\nevent: status\r\ndata: a\r\ndata: b\r\n\r\nevent: par".to_vec();
        assert_eq!(
            take_event(&mut buf),
            Some(ServerEvent {
                event: "progress".into(),
                data: "{\"step\":\"Apply\"}".into()
            })
        );
        assert_eq!(
            take_event(&mut buf),
            Some(ServerEvent {
                event: "status".into(),
                data: "a\nb".into()
            })
        );
        assert_eq!(take_event(&mut buf), None, "an incomplete event waits for more bytes");
        assert_eq!(buf, b"event: par");
    }
}

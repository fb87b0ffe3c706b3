//! Where backups live: an S3 bucket (AWS or any S3-compatible server) or a local directory,
//! behind the `object_store` crate, under a prefix.
//!
//! Every call is bounded: connect and request timeouts plus a short retry budget
//! ([`StoreTimeouts`]), so an unreachable bucket fails a backup within about a minute instead of
//! hanging a reconcile. Uploads and downloads stream with bounded memory (a few parts of
//! [`PART_SIZE`]), whatever the object's size.

use std::path::Path as FsPath;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::io::StreamReader;

use super::error::{ErrorShape, classify, error_text, from_object_store};
pub use super::error::{StoreError, StoreErrorKind};

/// The size of one multipart part; at most [`MAX_CONCURRENT_PARTS`] are in flight and one more is
/// being filled, so an upload holds about 24 MiB whatever the object's size. S3 wants parts of
/// 5 MiB at least (but the last) and at most 10,000 of them: 8 MiB parts allow objects of 78 GiB.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploaded at once by a writer.
pub const MAX_CONCURRENT_PARTS: usize = 2;

/// An S3 bucket and the prefix backups go under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    /// `None` is AWS S3 (region-derived endpoint). An `http://` endpoint is allowed (a local or
    /// in-cluster server); requests are path-style (`endpoint/bucket/key`) so an endpoint given
    /// as an address works without DNS for `bucket.endpoint`.
    pub endpoint: Option<String>,
    pub bucket: String,
    /// May be empty; slashes at either end do not matter.
    pub prefix: String,
    pub region: String,
    /// PEM certificates trusted beside the system roots (a private CA that signed the
    /// endpoint's certificate).
    pub ca_pem: Option<Vec<u8>>,
}

/// Static S3 credentials. Debug hides the secret key.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// Bounds on every S3 call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreTimeouts {
    /// TCP (and TLS) connection setup.
    pub connect: Duration,
    /// One request, answer included. A streaming download is not bounded as a whole (a large
    /// object takes as long as it takes) but stalls: no byte for this long fails it.
    pub request: Duration,
}

impl Default for StoreTimeouts {
    fn default() -> Self {
        StoreTimeouts {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(60),
        }
    }
}

/// Retries of a failed request (connection errors, timeouts, 5xx): a few, and none started
/// after 30 s, so a call fails within about `request` + 30 s.
fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(30),
    }
}

/// reqwest is built without a bundled rustls provider (its default would compile aws-lc-rs
/// beside the ring that kube already uses): make ring the process default. Losing the race to
/// an earlier install is fine, whoever installed it.
fn install_crypto_provider() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
}

/// An object store under a prefix. Cheap to clone; [`Store::child`] narrows the prefix.
#[derive(Clone)]
pub struct Store {
    /// Every call but streaming downloads.
    store: Arc<dyn ObjectStore>,
    /// Streaming downloads: no whole-request timeout, a per-read one instead.
    streaming: Arc<dyn ObjectStore>,
    /// The prefix without slashes at either end; empty for the root.
    base: String,
    /// "s3://bucket" or "file:///dir", for messages.
    root: String,
    /// " via http://endpoint" for S3 with an explicit endpoint, for messages.
    via: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

fn trim_prefix(prefix: &str) -> String {
    prefix.trim_matches('/').to_string()
}

fn join(base: &str, name: &str) -> String {
    let name = name.trim_matches('/');
    match (base.is_empty(), name.is_empty()) {
        (true, _) => name.to_string(),
        (false, true) => base.to_string(),
        (false, false) => format!("{base}/{name}"),
    }
}

fn s3_client(
    loc: &S3Location,
    creds: &S3Credentials,
    options: ClientOptions,
) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&loc.bucket)
        .with_region(&loc.region)
        .with_access_key_id(&creds.access_key_id)
        .with_secret_access_key(&creds.secret_access_key)
        .with_virtual_hosted_style_request(false)
        .with_retry(retry_config());
    let mut options = options;
    if let Some(pem) = &loc.ca_pem {
        let certs = object_store::Certificate::from_pem_bundle(pem).map_err(|e| {
            StoreError::new(
                StoreErrorKind::Other,
                format!("the CA for {:?} is not PEM: {}", loc.bucket, error_text(&e)),
            )
        })?;
        if certs.is_empty() {
            return Err(StoreError::new(
                StoreErrorKind::Other,
                format!("the CA for {:?} holds no certificate", loc.bucket),
            ));
        }
        for cert in certs {
            options = options.with_root_certificate(cert);
        }
    }
    if let Some(endpoint) = &loc.endpoint {
        builder = builder.with_endpoint(endpoint);
        if endpoint.starts_with("http://") {
            options = options.with_allow_http(true);
        }
    }
    let store = builder.with_client_options(options).build().map_err(|e| {
        StoreError::new(
            StoreErrorKind::Other,
            format!(
                "invalid S3 settings (bucket {:?}, endpoint {:?}): {}",
                loc.bucket,
                loc.endpoint.as_deref().unwrap_or("AWS"),
                error_text(&e)
            ),
        )
    })?;
    Ok(Arc::new(store))
}

impl Store {
    /// A bucket on S3 or an S3-compatible server. Connects lazily: a wrong endpoint, bucket or
    /// key shows at the first call.
    pub fn s3(
        loc: &S3Location,
        creds: &S3Credentials,
        timeouts: StoreTimeouts,
    ) -> Result<Store, StoreError> {
        install_crypto_provider();
        let options = ClientOptions::new().with_connect_timeout(timeouts.connect);
        let store = s3_client(loc, creds, options.clone().with_timeout(timeouts.request))?;
        let streaming = s3_client(
            loc,
            creds,
            options
                .with_timeout_disabled()
                .with_read_timeout(timeouts.request),
        )?;
        Ok(Store {
            store,
            streaming,
            base: trim_prefix(&loc.prefix),
            root: format!("s3://{}", loc.bucket),
            via: loc
                .endpoint
                .as_ref()
                .map(|e| format!(" via {e}"))
                .unwrap_or_default(),
        })
    }

    /// A directory on this machine (created if missing), for tests and single-node setups.
    /// Writes are fsynced, as an S3 PUT is durable when it returns.
    pub fn local(root: &FsPath, prefix: &str) -> Result<Store, StoreError> {
        let fail = |e: &dyn std::error::Error| {
            StoreError::new(
                StoreErrorKind::Other,
                format!("local backup directory {}: {}", root.display(), e),
            )
        };
        std::fs::create_dir_all(root).map_err(|e| fail(&e))?;
        let fs = LocalFileSystem::new_with_prefix(root)
            .map_err(|e| fail(&e))?
            .with_automatic_cleanup(true)
            .with_fsync(true);
        let store: Arc<dyn ObjectStore> = Arc::new(fs);
        Ok(Store {
            streaming: store.clone(),
            store,
            base: trim_prefix(prefix),
            root: format!("file://{}", root.display()),
            via: String::new(),
        })
    }

    /// The same store under `{prefix}/{sub}` (e.g. [`backup_path`]'s).
    pub fn child(&self, sub: &str) -> Store {
        Store {
            base: join(&self.base, sub),
            ..self.clone()
        }
    }

    /// Where this store's objects are, e.g. "s3://backups/demo/nightly-1-abcd1234/". Never
    /// credentials; no endpoint (see the error messages for that).
    pub fn describe(&self) -> String {
        if self.base.is_empty() {
            format!("{}/", self.root)
        } else {
            format!("{}/{}/", self.root, self.base)
        }
    }

    fn path(&self, name: &str) -> Path {
        Path::from(join(&self.base, name))
    }

    /// "GET s3://bucket/prefix/name via http://endpoint", the start of an error message.
    fn op(&self, verb: &str, name: &str) -> String {
        format!(
            "{verb} {}{}{}",
            self.describe(),
            name.trim_matches('/'),
            self.via
        )
    }

    /// A streaming upload of `name`: write to it (tokio's AsyncWrite), then
    /// [`ObjectWriter::finish`]. The object appears only at `finish`; on any error call
    /// [`ObjectWriter::abort`] so the server drops the uploaded parts.
    pub fn writer(&self, name: &str) -> ObjectWriter {
        let inner = BufWriter::with_capacity(self.store.clone(), self.path(name), PART_SIZE)
            .with_max_concurrency(MAX_CONCURRENT_PARTS);
        ObjectWriter {
            inner,
            op: self.op("PUT", name),
            state: WriterState::Open,
        }
    }

    /// Writes a small object in one request.
    pub async fn put(&self, name: &str, bytes: Bytes) -> Result<(), StoreError> {
        self.store
            .put(&self.path(name), bytes.into())
            .await
            .map(|_| ())
            .map_err(|e| from_object_store(&self.op("PUT", name), &e))
    }

    /// Reads a small object (a manifest) whole into memory.
    pub async fn get(&self, name: &str) -> Result<Bytes, StoreError> {
        let op = self.op("GET", name);
        let result = self
            .store
            .get(&self.path(name))
            .await
            .map_err(|e| from_object_store(&op, &e))?;
        result.bytes().await.map_err(|e| from_object_store(&op, &e))
    }

    /// A streaming download of `name`, holding a chunk or so in memory at a time. A stall longer
    /// than the request timeout fails the read; object_store resumes a cut stream with a ranged
    /// GET while its retries last.
    pub async fn reader(
        &self,
        name: &str,
    ) -> Result<impl AsyncRead + Unpin + Send + 'static, StoreError> {
        let result = self
            .streaming
            .get(&self.path(name))
            .await
            .map_err(|e| from_object_store(&self.op("GET", name), &e))?;
        Ok(StreamReader::new(
            result.into_stream().map_err(std::io::Error::from),
        ))
    }

    /// The size of `name`, `None` if it does not exist.
    pub async fn size(&self, name: &str) -> Result<Option<u64>, StoreError> {
        match self.store.head(&self.path(name)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(e) => {
                let e = from_object_store(&self.op("HEAD", name), &e);
                if e.kind == StoreErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Every object under this store's prefix (recursively): names relative to it, and sizes.
    pub async fn list(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let prefix = (!self.base.is_empty()).then(|| Path::from(self.base.as_str()));
        let strip = if self.base.is_empty() {
            String::new()
        } else {
            format!("{}/", self.base)
        };
        let op = self.op("LIST", "");
        self.store
            .list(prefix.as_ref())
            .map_err(|e| from_object_store(&op, &e))
            .map_ok(|meta| {
                let full = meta.location.as_ref();
                let name = full.strip_prefix(&strip).unwrap_or(full).to_string();
                (name, meta.size)
            })
            .try_collect()
            .await
    }

    /// Deletes every object under this store's prefix; returns how many.
    pub async fn delete_all(&self) -> Result<usize, StoreError> {
        let names = self.list().await?;
        let paths: Vec<_> = names.iter().map(|(n, _)| Ok(self.path(n))).collect();
        let op = self.op("DELETE", "");
        self.store
            .delete_stream(futures::stream::iter(paths).boxed())
            .map_err(|e| from_object_store(&op, &e))
            .try_fold(0, |n, _| async move { Ok(n + 1) })
            .await
    }
}

/// A streaming upload from [`Store::writer`]. Write errors come back as `std::io::Error`;
/// [`ObjectWriter::io_error`] sorts one into a [`StoreError`].
pub struct ObjectWriter {
    inner: BufWriter,
    op: String,
    state: WriterState,
}

/// object_store's BufWriter panics when used after a shutdown or polled again after an error;
/// this keeps those calls errors (and `abort` after them a no-op).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WriterState {
    Open,
    /// A write failed: the upload can still be aborted, not continued.
    Failed,
    /// Shutdown (completion) started; the upload belongs to it from here on.
    Closing,
    Closed,
    /// Completion failed.
    CloseFailed,
}

fn writer_gone(state: WriterState) -> std::io::Error {
    std::io::Error::other(match state {
        WriterState::Failed => "the upload failed earlier",
        WriterState::CloseFailed => "completing the upload failed earlier",
        _ => "the upload was already completed",
    })
}

impl ObjectWriter {
    /// Uploads what is buffered and completes the upload: the object exists from here on.
    pub async fn finish(mut self) -> Result<(), StoreError> {
        match self.shutdown().await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.io_error(&e)),
        }
    }

    /// Drops the upload: the parts sent so far are deleted (S3 AbortMultipartUpload). After a
    /// completion was started (a failed `shutdown`) there is nothing left to abort here: an S3
    /// lifecycle rule for incomplete multipart uploads cleans up such parts.
    pub async fn abort(mut self) -> Result<(), StoreError> {
        match self.state {
            WriterState::Open | WriterState::Failed => self
                .inner
                .abort()
                .await
                .map_err(|e| from_object_store(&format!("abort {}", self.op), &e)),
            WriterState::Closing | WriterState::Closed | WriterState::CloseFailed => Ok(()),
        }
    }

    /// The [`StoreError`] for an error this writer returned.
    pub fn io_error(&self, e: &std::io::Error) -> StoreError {
        io_to_store_error(&self.op, e)
    }
}

/// Sorts an `std::io::Error` from a writer or a [`Store::reader`]: object_store's errors travel
/// inside them.
pub fn io_to_store_error(op: &str, e: &std::io::Error) -> StoreError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<object_store::Error>())
    {
        Some(inner) => from_object_store(op, inner),
        None => {
            let text = error_text(e);
            let shape = match e.kind() {
                std::io::ErrorKind::NotFound => ErrorShape::NotFound,
                std::io::ErrorKind::TimedOut
                | std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof => ErrorShape::Transport,
                _ => ErrorShape::Other,
            };
            let kind = classify(shape, &text);
            StoreError::new(kind, format!("{op}: {}: {text}", kind.as_str()))
        }
    }
}

impl AsyncWrite for ObjectWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.state != WriterState::Open {
            return Poll::Ready(Err(writer_gone(self.state)));
        }
        let result = ready!(Pin::new(&mut self.inner).poll_write(cx, buf));
        if result.is_err() {
            self.state = WriterState::Failed;
        }
        Poll::Ready(result)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.state {
            WriterState::Open => {}
            WriterState::Closed => return Poll::Ready(Ok(())),
            state => return Poll::Ready(Err(writer_gone(state))),
        }
        let result = ready!(Pin::new(&mut self.inner).poll_flush(cx));
        if result.is_err() {
            self.state = WriterState::Failed;
        }
        Poll::Ready(result)
    }

    /// Completes the upload, as [`ObjectWriter::finish`] does.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.state {
            WriterState::Open | WriterState::Closing => {}
            WriterState::Closed => return Poll::Ready(Ok(())),
            state @ (WriterState::Failed | WriterState::CloseFailed) => {
                return Poll::Ready(Err(writer_gone(state)));
            }
        }
        self.state = WriterState::Closing;
        let result = ready!(Pin::new(&mut self.inner).poll_shutdown(cx));
        // Failed or not, the completion consumed the upload: nothing to retry or abort.
        self.state = match result {
            Ok(()) => WriterState::Closed,
            Err(_) => WriterState::CloseFailed,
        };
        Poll::Ready(result)
    }
}

/// The prefix a backup's objects live under, relative to the bucket's configured prefix:
/// `{cluster}/{backup}-{first 8 characters of the backup object's uid}/`. The uid makes it
/// unique per backup object, so a backup deleted and re-created under the same name never
/// overwrites (or, when the old one's files are cleaned up, deletes) the other's files.
pub fn backup_path(cluster: &str, backup: &str, uid: &str) -> String {
    let short: String = uid.chars().take(8).collect();
    format!("{cluster}/{backup}-{short}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_path_is_cluster_then_name_and_short_uid() {
        assert_eq!(
            backup_path("demo", "nightly-1", "abcd1234-5678-90ab-cdef-1234567890ab"),
            "demo/nightly-1-abcd1234/"
        );
        // A uid shorter than 8 characters (never from the API server) is kept whole.
        assert_eq!(backup_path("c", "b", "abc"), "c/b-abc/");
    }

    #[test]
    fn join_ignores_slashes_at_either_end() {
        assert_eq!(join("", "a/b"), "a/b");
        assert_eq!(join("p", "/a/"), "p/a");
        assert_eq!(join("p", ""), "p");
        assert_eq!(join(&trim_prefix("/p/q/"), "x"), "p/q/x");
    }

    #[test]
    fn describe_and_child() {
        let loc = S3Location {
            endpoint: Some("http://127.0.0.1:9000".into()),
            bucket: "backups".into(),
            prefix: "/team/".into(),
            region: "us-east-1".into(),
            ca_pem: None,
        };
        let creds = S3Credentials {
            access_key_id: "AKID".into(),
            secret_access_key: "very-secret".into(),
        };
        let store = Store::s3(&loc, &creds, StoreTimeouts::default()).expect("store");
        assert_eq!(store.describe(), "s3://backups/team/");
        let child = store.child(&backup_path("demo", "nightly", "abcdef0123"));
        assert_eq!(child.describe(), "s3://backups/team/demo/nightly-abcdef01/");
        assert_eq!(
            child.op("GET", "manifest.json"),
            "GET s3://backups/team/demo/nightly-abcdef01/manifest.json via http://127.0.0.1:9000"
        );
        assert!(!format!("{creds:?} {child:?}").contains("very-secret"));
    }
}

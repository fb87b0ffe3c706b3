//! Errors of the backup object store, sorted into the few kinds the controller acts on.
//!
//! object_store reports S3 failures as a handful of variants whose detail is text: a 404 is
//! `NotFound` whether the object or the whole bucket is missing, and a refused connection is a
//! `Generic` error wrapping reqwest's. [`classify`] turns the variant and the error's text into a
//! [`StoreErrorKind`] as a pure function, so the rules are one table test.

use std::error::Error as StdError;

use object_store::client::{HttpError, HttpErrorKind};

/// What went wrong, as far as a caller has to decide what to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The object does not exist (the bucket does).
    NotFound,
    /// The credentials were refused: 401/403, an unknown access key, a wrong secret key
    /// (SignatureDoesNotMatch) or a key without the permission. Retrying will not help.
    Unauthorized,
    /// The bucket does not exist. Retrying will not help until someone creates it.
    BucketMissing,
    /// The server's TLS certificate did not verify (unknown issuer, expired, another name).
    /// Retrying will not help until the CA (`caSecret`) or the server's certificate changes.
    Untrusted,
    /// No answer: connection refused, DNS failure, a timeout, a connection cut mid-request.
    Unreachable,
    /// Anything else (a 5xx after the retries, a malformed answer, a local I/O error).
    Other,
}

impl StoreErrorKind {
    /// The store refused us (credentials, bucket, certificate): retrying cannot help until
    /// someone changes them, so a backup or restore fails with `StorageRefused`.
    pub fn refused(self) -> bool {
        matches!(
            self,
            StoreErrorKind::Unauthorized
                | StoreErrorKind::BucketMissing
                | StoreErrorKind::Untrusted
        )
    }

    /// A short word for messages and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreErrorKind::NotFound => "not found",
            StoreErrorKind::Unauthorized => "unauthorized",
            StoreErrorKind::BucketMissing => "bucket missing",
            StoreErrorKind::Untrusted => "certificate not trusted",
            StoreErrorKind::Unreachable => "unreachable",
            StoreErrorKind::Other => "error",
        }
    }
}

/// A failed store operation. `message` names the operation, the object and the endpoint, and
/// never the secret key (SigV4 never sends it; the URLs in object_store's errors carry none).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    pub kind: StoreErrorKind,
    pub message: String,
}

impl StoreError {
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        StoreError {
            kind,
            message: message.into(),
        }
    }

    /// Worth retrying later as is: the store may come back. NotFound, Unauthorized and
    /// BucketMissing need a change (of the spec, the Secret or the bucket) first.
    pub fn transient(&self) -> bool {
        matches!(
            self.kind,
            StoreErrorKind::Unreachable | StoreErrorKind::Other
        )
    }
}

/// The object_store variant an error came as, reduced to what [`classify`] needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorShape {
    NotFound,
    /// `Unauthenticated` (401) or `PermissionDenied` (403).
    Denied,
    /// Somewhere in its source chain, an HTTP transport error of kind Connect, Timeout or
    /// Interrupted: the request never got an answer.
    Transport,
    Other,
}

/// Sorts an error by its variant and its full text (the source chain, see [`error_text`]).
/// The text is looked at first for what the variant hides: S3 answers a missing bucket with a
/// 404 (`NoSuchBucket`), and some servers answer bad credentials with a 400.
pub fn classify(shape: ErrorShape, text: &str) -> StoreErrorKind {
    let text = text.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    if has(&["nosuchbucket", "bucket does not exist"]) {
        return StoreErrorKind::BucketMissing;
    }
    if shape == ErrorShape::Denied
        || has(&[
            "invalidaccesskeyid",
            // versitygw's answer (a 404) to an access key it does not know.
            "xadminusernotfound",
            "signaturedoesnotmatch",
            "accessdenied",
            "403 forbidden",
            "401 unauthorized",
        ])
    {
        return StoreErrorKind::Unauthorized;
    }
    if shape == ErrorShape::NotFound || has(&["nosuchkey", "404 not found"]) {
        return StoreErrorKind::NotFound;
    }
    // Before Unreachable: rustls refuses during the connect, so the transport shape says
    // Connect, but no retry will change what the certificate says.
    if has(&[
        "invalid peer certificate",
        "certificate verify failed",
        "invalidcertificate",
    ]) {
        return StoreErrorKind::Untrusted;
    }
    if shape == ErrorShape::Transport
        || has(&[
            "connection refused",
            "timed out",
            "deadline has elapsed",
            "dns error",
            "failed to lookup address",
            "connection reset",
            "broken pipe",
            "tcp connect error",
            "error sending request",
            "network is unreachable",
            "no route to host",
        ])
    {
        return StoreErrorKind::Unreachable;
    }
    StoreErrorKind::Other
}

/// The shape of an object_store error, looking through its sources for a transport failure.
pub fn shape_of(e: &object_store::Error) -> ErrorShape {
    match e {
        object_store::Error::NotFound { .. } => ErrorShape::NotFound,
        object_store::Error::Unauthenticated { .. }
        | object_store::Error::PermissionDenied { .. } => ErrorShape::Denied,
        _ => {
            let mut source = e.source();
            while let Some(s) = source {
                if let Some(http) = s.downcast_ref::<HttpError>()
                    && matches!(
                        http.kind(),
                        HttpErrorKind::Connect
                            | HttpErrorKind::Timeout
                            | HttpErrorKind::Interrupted
                    )
                {
                    return ErrorShape::Transport;
                }
                source = s.source();
            }
            ErrorShape::Other
        }
    }
}

/// An error and its sources on one line, skipping a source whose text its parent already shows
/// (object_store's variants print their source inline; reqwest's hide the root cause).
pub fn error_text(e: &(dyn StdError + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// A [`StoreError`] for `op` (e.g. "GET s3://backups/demo/x/manifest.json via http://…").
pub fn from_object_store(op: &str, e: &object_store::Error) -> StoreError {
    let text = error_text(e);
    let kind = classify(shape_of(e), &text);
    StoreError::new(
        kind,
        format!("{op}: {}: {}", kind.as_str(), condense(&text)),
    )
}

/// The text of an element `<tag>…</tag>` in an S3 XML error body.
fn xml_element<'a>(text: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&format!("</{tag}>"))? + start;
    Some(&text[start..end])
}

/// Replaces an S3 XML error body (which may run to kilobytes: a SignatureDoesNotMatch carries
/// the whole canonical request in hex) by its `Code: Message`, the part an SRE acts on.
pub fn condense(text: &str) -> String {
    let Some(body) = text.find("<?xml").or_else(|| text.find("<Error>")) else {
        return text.to_string();
    };
    let code = xml_element(&text[body..], "Code");
    let message = xml_element(&text[body..], "Message");
    let head = text[..body].trim_end();
    match (code, message) {
        (Some(c), Some(m)) => format!("{head} {c}: {m}"),
        (Some(c), None) => format!("{head} {c}"),
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_table() {
        use ErrorShape as S;
        use StoreErrorKind as K;
        let cases: &[(S, &str, K)] = &[
            (
                S::NotFound,
                "Object at location a/b not found: Server returned non-2xx status code: 404 Not Found: <Code>NoSuchKey</Code>",
                K::NotFound,
            ),
            (
                S::NotFound,
                "Server returned non-2xx status code: 404 Not Found: <Code>NoSuchBucket</Code>",
                K::BucketMissing,
            ),
            (
                S::Other,
                "Error performing PUT http://x/b/a in 2ms - <Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message>",
                K::BucketMissing,
            ),
            (
                S::Denied,
                "The operation lacked the necessary privileges to complete for path a: 403 Forbidden",
                K::Unauthorized,
            ),
            (
                S::Other,
                "Server returned non-2xx status code: 400 Bad Request: <Code>InvalidAccessKeyId</Code>",
                K::Unauthorized,
            ),
            (
                S::Other,
                "<Code>SignatureDoesNotMatch</Code>",
                K::Unauthorized,
            ),
            (S::Other, "<Code>AccessDenied</Code>", K::Unauthorized),
            (
                S::Transport,
                "Error performing GET https://127.0.0.1:41387/backups/p/x in 1.01s, after 3 retries - HTTP error: error sending request: client error (Connect): invalid peer certificate: UnknownIssuer",
                K::Untrusted,
            ),
            (
                S::Transport,
                "HTTP error: error sending request",
                K::Unreachable,
            ),
            (
                S::Other,
                "client error (Connect): tcp connect error: Connection refused (os error 111)",
                K::Unreachable,
            ),
            (S::Other, "HTTP error: operation timed out", K::Unreachable),
            (
                S::Other,
                "dns error: failed to lookup address information",
                K::Unreachable,
            ),
            (
                S::Other,
                "Server returned non-2xx status code: 500 Internal Server Error",
                K::Other,
            ),
            // RetryError names its retry_timeout: not a timeout of the request.
            (
                S::Other,
                "Error performing PUT http://x/b/a in 3s, after 3 retries, max_retries: 3, retry_timeout: 30s  - Server returned non-2xx status code: 503 Service Unavailable",
                K::Other,
            ),
            (S::Other, "Encountered object with invalid path", K::Other),
        ];
        for (shape, text, want) in cases {
            assert_eq!(classify(*shape, text), *want, "{shape:?} {text}");
        }
    }

    #[test]
    fn condense_keeps_code_and_message() {
        let text = "PUT http://x/b/k - Server returned non-2xx status code: 403 Forbidden: \
            <?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SignatureDoesNotMatch</Code>\
            <Message>The request signature we calculated does not match.</Message>\
            <StringToSign>AWS4-HMAC-SHA256 ...</StringToSign></Error>";
        assert_eq!(
            condense(text),
            "PUT http://x/b/k - Server returned non-2xx status code: 403 Forbidden: \
             SignatureDoesNotMatch: The request signature we calculated does not match."
        );
        let plain = "tcp connect error: Connection refused (os error 111)";
        assert_eq!(condense(plain), plain);
        let no_code = "500: <?xml version=\"1.0\"?><Oops/>";
        assert_eq!(condense(no_code), no_code);
    }

    #[test]
    fn transient_kinds() {
        let t = |k| StoreError::new(k, "x").transient();
        assert!(t(StoreErrorKind::Unreachable) && t(StoreErrorKind::Other));
        assert!(!t(StoreErrorKind::NotFound));
        assert!(!t(StoreErrorKind::Unauthorized) && !t(StoreErrorKind::BucketMissing));
    }

    #[test]
    fn refused_kinds() {
        use StoreErrorKind::*;
        for (kind, refused) in [
            (Unauthorized, true),
            (BucketMissing, true),
            (Untrusted, true),
            (NotFound, false),
            (Unreachable, false),
            (Other, false),
        ] {
            assert_eq!(kind.refused(), refused, "{kind:?}");
        }
    }

    #[test]
    fn error_text_keeps_the_root_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer: {0}")]
        struct Inline(#[source] std::io::Error);
        #[derive(Debug, thiserror::Error)]
        #[error("error sending request")]
        struct Hidden(#[source] std::io::Error);
        let refused = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(error_text(&Inline(refused())), "outer: refused");
        assert_eq!(
            error_text(&Hidden(refused())),
            "error sending request: refused"
        );
    }
}

//! The operator's HTTP endpoint (port 8080 by default): `/healthz` (liveness), `/readyz`
//! (readiness) and `/metrics` (Prometheus, [`crate::metrics`]).
//!
//! Plain hyper (already in the dependency tree through kube) rather than a web framework: a
//! handful of fixed GET routes need no router.
//!
//! * `/healthz`: 200 while the process serves requests. A replica that loses the leader Lease
//!   exits by itself, so liveness need not know about leadership.
//! * `/readyz`: 200 once the reflector caches (RedisClusters, member Pods and PVCs, Nodes) have
//!   listed everything; 503 before. The standby is ready as well: it runs the same warm caches
//!   and only refrains from acting, so a rolling update of the operator itself proceeds.
//! * `/metrics`: OpenMetrics text. `redis_operator_is_leader` is read from the Lease state at
//!   each scrape; every other series is written by the reconciles (a standby has none of the
//!   per-cluster ones: it does not reconcile).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Set once the caches are synced; read by `/readyz`.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the replica ready.
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether the replica is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// What the handlers read.
#[derive(Clone, Debug)]
pub struct State {
    /// Cache sync.
    pub readiness: Readiness,
    /// Which replica answers, and whether it leads (shown in the body, for people).
    pub leadership: crate::leader::Leadership,
    /// The registry `/metrics` encodes.
    pub metrics: crate::metrics::Metrics,
}

/// Binds `addr`.
///
/// # Errors
/// The address is in use or not ours.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves connections on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, state: State, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = shutdown.cancelled() => return,
        };
        let (stream, _) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "http: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&req, &state)) }
            });
            // Probes are tiny and one-shot: a slow or broken client only costs its own task.
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "http: connection error");
            }
        });
    }
}

fn route(req: &Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    let role = if !state.leadership.is_elected() {
        "leader election off"
    } else if state.leadership.may_act() {
        "leader"
    } else {
        "standby"
    };
    match req.uri().path() {
        "/healthz" | "/livez" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" if state.readiness.is_ready() => text(
            StatusCode::OK,
            format!("ok: {} ({role})\n", state.leadership.identity()),
        ),
        "/readyz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "caches not synced yet\n".into(),
        ),
        "/metrics" => {
            state.metrics.set_leader(state.leadership.may_act());
            let mut resp = text(StatusCode::OK, state.metrics.encode());
            resp.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            resp
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn healthz_always_readyz_after_sync() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let readiness = Readiness::default();
        let stop = CancellationToken::new();
        tokio::spawn(serve(
            listener,
            State {
                readiness: readiness.clone(),
                leadership: crate::leader::Leadership::always("me"),
                metrics: crate::metrics::Metrics::new(),
            },
            stop.clone(),
        ));
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        readiness.set_ready();
        let ready = get(addr, "/readyz").await;
        assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
        assert!(ready.contains("me"), "{ready}");
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
        let metrics = get(addr, "/metrics").await;
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert!(
            metrics.contains("application/openmetrics-text"),
            "{metrics}"
        );
        assert!(
            metrics.contains("\nredis_operator_is_leader 1\n"),
            "{metrics}"
        );
        assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");
        stop.cancel();
    }
}

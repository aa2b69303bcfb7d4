//! The HTTP(S) server: routes, body limits and error answers.
//!
//! `POST /filter`, `POST /bind`, `POST /webhook`, `GET /healthz`, `GET /readyz`, `GET /metrics`.
//! Bodies over [`BODY_LIMIT`] get 413, unreadable JSON gets 400 with the parser's message
//! (line and column); nothing a client sends can make a handler panic.

use super::Extender;
use super::wire::{ExtenderArgs, ExtenderBindingArgs};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::tls_rustls::RustlsConfig;
use serde::Serialize;
use std::sync::Arc;

/// Largest accepted request body: 1 MiB, as HAMi.
pub const BODY_LIMIT: usize = 1 << 20;

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg.into(),
    )
        .into_response()
}

fn json_ok<T: Serialize>(v: &T) -> Response {
    match serde_json::to_vec(v) {
        Ok(b) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            b,
        )
            .into_response(),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding the answer failed: {e}"),
        ),
    }
}

/// Read a body up to [`BODY_LIMIT`]; over it, a 413 answer naming the limit.
pub(crate) async fn read_body(body: Body) -> Result<Bytes, Response> {
    match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(b) => Ok(b),
        Err(e) => {
            let too_big = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                || e.to_string().contains("length limit");
            if too_big {
                Err(text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body larger than the limit of {BODY_LIMIT} bytes (1 MiB)"),
                ))
            } else {
                Err(text(
                    StatusCode::BAD_REQUEST,
                    format!("reading the request body failed: {e}"),
                ))
            }
        }
    }
}

/// Decode a JSON body; the error is the 400 response to send (boxed: a `Response` is large).
fn parse<T: serde::de::DeserializeOwned>(what: &str, b: &[u8]) -> Result<T, Box<Response>> {
    serde_json::from_slice(b).map_err(|e| {
        Box::new(text(
            StatusCode::BAD_REQUEST,
            format!("malformed {what} JSON: {e}"),
        ))
    })
}

async fn filter(State(ext): State<Arc<Extender>>, body: Body) -> Response {
    let b = match read_body(body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let args: ExtenderArgs = match parse("ExtenderArgs", &b) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    json_ok(&ext.filter(args).await)
}

async fn bind(State(ext): State<Arc<Extender>>, body: Body) -> Response {
    let b = match read_body(body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let args: ExtenderBindingArgs = match parse("ExtenderBindingArgs", &b) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    // The bind runs to its end on a task of its own. kube-scheduler gives up on a bind after its
    // extender `httpTimeout` and closes the connection, and the server then drops this handler;
    // a bind dropped between claiming the reservation and its Binding would leave the pod's
    // reservation claimed (every later filter of the pod: "a bind … is in progress") and its
    // in-flight entry blocking its node, until the pod is deleted. Seen on the scale benchmark
    // when the API server took over 30 s for the Bindings of a burst.
    match tokio::spawn(async move { ext.bind(args).await }).await {
        Ok(res) => json_ok(&res),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the bind task failed: {e}"),
        ),
    }
}

async fn webhook(State(ext): State<Arc<Extender>>, body: Body) -> Response {
    let b = match read_body(body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    // The namespace's device quota, from the ledger this process keeps (HAMi's webhook check).
    let quota = match crate::webhook::review_namespace(&b) {
        Some(ns) => ext
            .with_controller(|c| c.ledger().quota_left(&ns))
            .await
            .map(|left| (ns, left)),
        None => None,
    };
    let reply = crate::webhook::handle_with_quota(&b, ext.webhook(), quota);
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let ct = if reply.json {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    (status, [(header::CONTENT_TYPE, ct)], reply.body).into_response()
}

async fn healthz() -> Response {
    text(StatusCode::OK, "ok")
}

async fn readyz(State(ext): State<Arc<Extender>>) -> Response {
    if ext.is_ready() {
        text(StatusCode::OK, "ok")
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet")
    }
}

async fn metrics(State(ext): State<Arc<Extender>>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        ext.metrics_text().await,
    )
        .into_response()
}

/// Every route of the extender process.
pub fn router(ext: Arc<Extender>) -> Router {
    Router::new()
        .route("/filter", post(filter))
        .route("/bind", post(bind))
        .route("/webhook", post(webhook))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ext)
}

/// Only the metrics route (for `--metrics-bind-address`).
pub fn metrics_router(ext: Arc<Extender>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(ext)
}

/// Serve `router` on an already bound listener, with TLS when `tls` is given. Runs until the
/// listener fails.
pub async fn serve(
    listener: std::net::TcpListener,
    router: Router,
    tls: Option<RustlsConfig>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let svc = router.into_make_service();
    match tls {
        Some(cfg) => {
            axum_server::tls_rustls::from_tcp_rustls(listener, cfg)?
                .serve(svc)
                .await
        }
        None => axum_server::from_tcp(listener)?.serve(svc).await,
    }
}

//! The operator's HTTP endpoints: `/healthz` (the process answers), `/readyz` (the AlertTriage
//! watch cache has synced) and `/metrics` (OpenMetrics text, which Prometheus scrapes).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use clap::Args;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::metrics::Metrics;

#[derive(Args, Debug, Clone)]
pub struct HttpArgs {
    /// Where /metrics, /healthz and /readyz are served; port 0 picks a free port (logged).
    #[arg(long, env = "ATO_HTTP_ADDRESS", default_value = "0.0.0.0:8080")]
    pub http_address: SocketAddr,
}

/// What the endpoints report on.
#[derive(Clone)]
pub struct Endpoints {
    pub metrics: Arc<Metrics>,
    /// Becomes true once the AlertTriage watch cache has synced.
    pub ready: watch::Receiver<bool>,
}

/// Binds `address` and serves until `shutdown` is cancelled.
pub async fn serve(
    address: SocketAddr,
    endpoints: Endpoints,
    shutdown: CancellationToken,
) -> std::io::Result<JoinHandle<std::io::Result<()>>> {
    let listener = TcpListener::bind(address).await?;
    info!(address = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    let app = router(endpoints);
    Ok(tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    }))
}

fn router(endpoints: Endpoints) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(endpoints)
}

async fn readyz(State(e): State<Endpoints>) -> (StatusCode, &'static str) {
    if *e.ready.borrow() {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the AlertTriage watch cache has not synced yet\n",
        )
    }
}

async fn metrics(State(e): State<Endpoints>) -> impl IntoResponse {
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        e.metrics.encode(),
    )
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    #[derive(Debug)]
    struct Nothing;

    impl prometheus_client::collector::Collector for Nothing {
        fn encode(
            &self,
            _: prometheus_client::encoding::DescriptorEncoder,
        ) -> Result<(), std::fmt::Error> {
            Ok(())
        }
    }

    async fn get(app: &Router, path: &str) -> (StatusCode, String) {
        let response = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn ready_only_once_synced_and_metrics_in_text() {
        let (tx, rx) = watch::channel(false);
        let metrics = Arc::new(Metrics::new(Nothing));
        let app = router(Endpoints {
            metrics: metrics.clone(),
            ready: rx,
        });
        assert_eq!(get(&app, "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            get(&app, "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        tx.send(true).unwrap();
        assert_eq!(get(&app, "/readyz").await.0, StatusCode::OK);
        metrics.log_bytes(7);
        let (status, body) = get(&app, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.contains("alert_triage_log_bytes_scanned_total 7"),
            "{body}"
        );
        assert_eq!(get(&app, "/nope").await.0, StatusCode::NOT_FOUND);
    }
}

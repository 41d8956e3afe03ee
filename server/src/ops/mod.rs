//! Operations endpoints: liveness, readiness and Prometheus metrics. They are
//! not versioned (probes and scrapers expect fixed paths) and not rate limited.

use crate::db;
use crate::error::HttpError;
use crate::http::resource;
use crate::state::AppState;
use actix_web::web::{self, Data};
use actix_web::HttpResponse;
use basalt_core::errors::{ApiError, ErrorCode};
use serde_json::json;
use std::time::Duration;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(resource("/health/live").route(web::get().to(live)))
        .service(resource("/health/ready").route(web::get().to(ready)))
        .service(resource("/metrics").route(web::get().to(metrics)));
}

async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "live"}))
}

/// Ready when not shutting down, migrations have run, and the database answers
/// within two seconds.
async fn ready(state: Data<AppState>) -> Result<HttpResponse, HttpError> {
    if state.lifecycle.shutting_down() {
        return Err(HttpError::new(ErrorCode::ShuttingDown).retry_after(5));
    }
    if !state.lifecycle.migrated() {
        return Err(HttpError::from(
            ApiError::new(ErrorCode::NotReady).with_details("migrations have not been applied yet"),
        )
        .retry_after(1));
    }
    let ping = async {
        let client = state.pool.get().await.map_err(|e| e.to_string())?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(Duration::from_secs(2), ping).await {
        Ok(Ok(_)) => Ok(HttpResponse::Ok().json(json!({
            "status": "ready",
            "checks": {"database": "ok", "migrations": "ok"}
        }))),
        Ok(Err(error)) => Err(not_ready(format!("database: {error}"))),
        Err(_) => Err(not_ready("database: no answer within 2 s".into())),
    }
}

fn not_ready(details: String) -> HttpError {
    HttpError::from(ApiError::new(ErrorCode::NotReady).with_details(details)).retry_after(1)
}

async fn metrics(state: Data<AppState>) -> HttpResponse {
    db::pool::record_metrics(&state.pool);
    if let Some((resident, virtual_size)) = crate::telemetry::process_memory() {
        metrics::gauge!("basalt_process_resident_memory_bytes").set(resident as f64);
        metrics::gauge!("basalt_process_virtual_memory_bytes").set(virtual_size as f64);
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}

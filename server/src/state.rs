//! What every handler can reach: the configuration, the pool, the key verifier,
//! the rate limiter and the server's lifecycle flags.

use crate::auth::jwt::Jwt;
use crate::auth::passwords::Passwords;
use crate::db::pool::Tls;
use crate::http::rate_limit::RateLimiter;
use basalt_core::config::Config;
use deadpool_postgres::Pool;
use ipnet::IpNet;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    /// Basalt's own, privileged connections: migrations, auth, storage
    /// metadata, the feed, jobs. Never runs app functions or caller SQL.
    pub pool: Pool,
    /// The data API's connections, logged in as `database.api_role`, which
    /// can only become the API roles (see `db/roles.rs`).
    pub api_pool: Pool,
    /// The TLS connector, also needed to send cancel requests.
    pub tls: Tls,
    pub jwt: Arc<Jwt>,
    pub passwords: Passwords,
    /// Sessions revoked within an access token's lifetime (every replica).
    pub revoked: Arc<crate::auth::revoked::Revoked>,
    /// Keys the HMAC that derives each refresh token's successor.
    pub refresh_key: Arc<String>,
    pub rate_limiter: Arc<RateLimiter>,
    pub trusted_proxies: Arc<Vec<IpNet>>,
    pub metrics: PrometheusHandle,
    pub lifecycle: Arc<Lifecycle>,
    pub jobs: crate::jobs::Queue,
    /// The policy engine (reloaded when any replica changes policies).
    pub authz: Arc<crate::authz::Engine>,
    /// Realtime connections and subscriptions on this replica.
    pub realtime: Arc<crate::realtime::hub::Hub>,
    /// This process's id among replicas (to recognise its own broadcasts).
    pub realtime_replica: uuid::Uuid,
    /// How many data requests each caller has running (`rest/fairness.rs`).
    pub fairness: Arc<crate::rest::fairness::Fairness>,
    /// The exposed schema as the data API sees it (reloaded on DDL).
    pub schema: Arc<crate::rest::cache::SchemaCache>,
    /// Storage's backend and URL signing key.
    pub storage: Arc<crate::storage::Storage>,
    /// Whether an SMTP server is configured (emails can be sent).
    pub email_enabled: bool,
    pub embedded: bool,
}

/// Start-up and shutdown as the readiness probe sees them.
#[derive(Default)]
pub struct Lifecycle {
    migrated: AtomicBool,
    shutting_down: AtomicBool,
}

impl Lifecycle {
    pub fn set_migrated(&self) {
        self.migrated.store(true, Ordering::SeqCst);
    }
    pub fn migrated(&self) -> bool {
        self.migrated.load(Ordering::SeqCst)
    }
    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }
    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}

//! What every handler can reach: the configuration, the pools, the server's
//! lifecycle flags, and the features' services. This module names no
//! feature: each feature registers its service in [`Services`] at start-up
//! (the composition root does, in `serve.rs`) and adds its own accessor to
//! `AppState` in its own module (`impl AppState { pub fn authz(&self) … }`).

use crate::db::pool::Tls;
use basalt_core::config::Config;
use deadpool_postgres::Pool;
use ipnet::IpNet;
use metrics_exporter_prometheus::PrometheusHandle;
use std::any::{Any, TypeId};
use std::collections::HashMap;
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
    pub api_pool: Arc<crate::db::pool::PerThread>,
    /// The TLS connector, also needed to send cancel requests.
    pub tls: Tls,
    /// Keys the HMAC that derives each refresh token's successor.
    pub refresh_key: Arc<String>,
    pub trusted_proxies: Arc<Vec<IpNet>>,
    pub metrics: PrometheusHandle,
    pub lifecycle: Arc<Lifecycle>,
    pub jobs: crate::jobs::Queue,
    /// This process's id among replicas (to recognise its own broadcasts).
    pub realtime_replica: uuid::Uuid,
    /// Whether an SMTP server is configured (emails can be sent).
    pub email_enabled: bool,
    pub embedded: bool,
    pub services: Services,
}

/// The features' services by type, registered once at start-up.
#[derive(Clone, Default)]
pub struct Services(Arc<HashMap<TypeId, Box<dyn Any + Send + Sync>>>);

impl Services {
    /// Registers `service` (before the state is shared).
    pub fn with<T: Send + Sync + 'static>(mut self, service: Arc<T>) -> Self {
        Arc::get_mut(&mut self.0)
            .expect("services are registered before the state is shared")
            .insert(TypeId::of::<T>(), Box::new(service));
        self
    }

    /// The service of type `T`; every one is registered at start-up.
    pub fn get<T: Send + Sync + 'static>(&self) -> &Arc<T> {
        self.0
            .get(&TypeId::of::<T>())
            .and_then(|service| service.downcast_ref::<Arc<T>>())
            .unwrap_or_else(|| panic!("{} is registered at start-up", std::any::type_name::<T>()))
    }
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

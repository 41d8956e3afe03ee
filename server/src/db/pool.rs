//! The connection pool (deadpool-postgres) and TLS to external databases.

use anyhow::Context;
use basalt_core::config::DatabaseConfig;
use deadpool_postgres::{Connect, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_postgres_rustls::MakeRustlsConnect;

pub type Tls = MakeRustlsConnect;

/// TLS that always verifies the server's certificate (like libpq's verify-full):
/// against `database.ca_file` when set, else the bundled public roots.
pub fn tls(config: &DatabaseConfig) -> anyhow::Result<Tls> {
    let mut roots = rustls::RootCertStore::empty();
    if config.ca_file.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    } else {
        let pem = std::fs::read(&config.ca_file)
            .with_context(|| format!("database.ca_file: cannot read {}", config.ca_file))?;
        for certificate in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots
                .add(certificate.context("database.ca_file: not a PEM certificate")?)
                .context("database.ca_file: certificate refused")?;
        }
        anyhow::ensure!(
            !roots.is_empty(),
            "database.ca_file {} holds no certificate",
            config.ca_file
        );
    }
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(client))
}

/// Parses a connection URL. libpq's `sslmode=verify-ca` and `verify-full` are
/// accepted and mean `require`: Basalt verifies the certificate in every TLS mode.
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config, tokio_postgres::Error> {
    url.replace("sslmode=verify-full", "sslmode=require")
        .replace("sslmode=verify-ca", "sslmode=require")
        .parse()
}

/// Parses `database.url` (validated at start-up) and applies the connect timeout.
pub fn external_config(config: &DatabaseConfig) -> anyhow::Result<tokio_postgres::Config> {
    let mut pg = parse_url(config.url.expose())
        .map_err(|error| anyhow::anyhow!("invalid setting `database.url`: {error}"))?;
    pg.connect_timeout(Duration::from_millis(config.connect_timeout_ms));
    if pg.get_application_name().is_none() {
        pg.application_name("basalt");
    }
    Ok(pg)
}

/// The runtime that owns every pooled connection's socket and task.
///
/// Each HTTP worker has its own single-threaded runtime. Had a connection been
/// opened on a worker's runtime, it would die with that worker (at shutdown,
/// idle workers stop first), breaking requests that other workers were still
/// running on it. Connections live here instead, for the life of the process.
fn connection_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("basalt-db")
            .enable_all()
            .build()
            .expect("the database runtime starts")
    })
}

/// Connects on [`connection_runtime`] and keeps the connection's task there.
struct ConnectOnSharedRuntime {
    tls: Tls,
}

type Connected = Result<(tokio_postgres::Client, JoinHandle<()>), tokio_postgres::Error>;

impl Connect for ConnectOnSharedRuntime {
    fn connect(
        &self,
        pg_config: &tokio_postgres::Config,
    ) -> futures_util::future::BoxFuture<'_, Connected> {
        let tls = self.tls.clone();
        let pg_config = pg_config.clone();
        let runtime = connection_runtime().handle().clone();
        Box::pin(async move {
            let connecting = runtime.spawn(async move {
                let (client, connection) = pg_config.connect(tls).await?;
                let task = tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::warn!("database connection closed: {error}");
                    }
                });
                Ok((client, task))
            });
            connecting.await.expect("the connect task does not panic")
        })
    }
}

/// A pool whose connections live on [`connection_runtime`], shared by every
/// thread: Basalt's own connection.
pub fn build(
    pg: tokio_postgres::Config,
    tls: Tls,
    config: &DatabaseConfig,
    max_size: u32,
) -> anyhow::Result<Pool> {
    let manager = Manager::from_connect(pg, ConnectOnSharedRuntime { tls }, manager_config(config));
    sized(manager, config, max_size)
}

fn manager_config(config: &DatabaseConfig) -> ManagerConfig {
    let recycling_method = match config.recycling.as_str() {
        "verified" => RecyclingMethod::Verified,
        "clean" => RecyclingMethod::Clean,
        _ => RecyclingMethod::Fast,
    };
    ManagerConfig { recycling_method }
}

fn sized<M: deadpool::managed::Manager>(
    manager: M,
    config: &DatabaseConfig,
    max_size: u32,
) -> anyhow::Result<deadpool::managed::Pool<M>> {
    let connect = Duration::from_millis(config.connect_timeout_ms);
    deadpool::managed::Pool::builder(manager)
        .max_size(max_size as usize)
        .wait_timeout(Some(Duration::from_millis(config.pool_wait_timeout_ms)))
        .create_timeout(Some(connect))
        .recycle_timeout(Some(connect))
        .runtime(Runtime::Tokio1)
        .build()
        .context("cannot build the connection pool")
}

/// A connection of the data API, with what its last API-key request left
/// its session set to (`rest/tx.rs`): `None` when unknown.
pub struct ApiClient {
    pub client: deadpool_postgres::ClientWrapper,
    pub session: Option<Arc<Session>>,
    /// `search_path` as the connection began (requests set it back).
    pub search_path: String,
}

/// A session as an API key's requests run in it: set once on a connection
/// (`role`, claims, statement timeout, read-only by default), then checked
/// after every statement that relies on it. `expected` is what PostgreSQL
/// reports for those settings (and `search_path`) once they are set.
#[derive(Debug, PartialEq, Eq)]
pub struct Session {
    pub role: String,
    pub claims: String,
    pub statement_timeout: String,
    pub expected: Vec<String>,
}

impl Session {
    /// Whether this is the session of `role` with these claims and timeout.
    pub fn is_for(&self, role: &str, claims: &str, statement_timeout: &str) -> bool {
        self.role == role && self.claims == claims && self.statement_timeout == statement_timeout
    }
}

impl std::ops::Deref for ApiClient {
    type Target = deadpool_postgres::ClientWrapper;
    fn deref(&self) -> &Self::Target {
        &self.client
    }
}

impl std::ops::DerefMut for ApiClient {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.client
    }
}

/// deadpool-postgres's manager, with [`ApiClient`]'s session beside each
/// connection; a recycling method that runs SQL (`clean`, `verified`)
/// forgets it.
pub struct ApiManager {
    inner: Manager,
    forgets: bool,
}

impl deadpool::managed::Manager for ApiManager {
    type Type = ApiClient;
    type Error = tokio_postgres::Error;

    async fn create(&self) -> Result<ApiClient, tokio_postgres::Error> {
        let client = self.inner.create().await?;
        let search_path = client
            .query_one("SELECT current_setting('search_path')", &[])
            .await?
            .get(0);
        Ok(ApiClient {
            client,
            session: None,
            search_path,
        })
    }

    async fn recycle(
        &self,
        object: &mut ApiClient,
        metrics: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<tokio_postgres::Error> {
        self.inner.recycle(&mut object.client, metrics).await?;
        if self.forgets {
            object.session = None;
        }
        Ok(())
    }

    fn detach(&self, object: &mut ApiClient) {
        self.inner.detach(&mut object.client);
    }
}

pub type ApiPool = deadpool::managed::Pool<ApiManager>;
pub type ApiObject = deadpool::managed::Object<ApiManager>;

/// The data API's pools: one per thread that asks, so each HTTP worker (one
/// thread running one single-threaded runtime) has its own, whose
/// connections' tasks run on that worker's runtime. A request and its
/// connection then never change threads: the statements a request pipelines
/// leave in one write, and no message waits for another thread to wake up
/// (measured in docs/benchmarks.md). A connection never outlives the runtime
/// it was opened on, because only that runtime's requests use it (the
/// hazard [`connection_runtime`] exists for does not arise).
pub struct PerThread {
    id: usize,
    pg: tokio_postgres::Config,
    tls: Tls,
    config: DatabaseConfig,
    size: u32,
}

thread_local! {
    /// This thread's pool of each [`PerThread`] (by its id).
    static THREAD_POOLS: std::cell::RefCell<Vec<(usize, ApiPool)>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl PerThread {
    /// Pools of `size` connections each (`database.api_pool_size` divided
    /// among the HTTP workers).
    pub fn new(pg: tokio_postgres::Config, tls: Tls, config: &DatabaseConfig, size: u32) -> Self {
        static NEXT_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        PerThread {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            pg,
            tls,
            config: config.clone(),
            size: size.max(1),
        }
    }

    /// This thread's pool, made on first use.
    pub fn current(&self) -> ApiPool {
        THREAD_POOLS.with(|pools| {
            let mut pools = pools.borrow_mut();
            if let Some((_, pool)) = pools.iter().find(|(id, _)| *id == self.id) {
                return pool.clone();
            }
            let manager = ApiManager {
                inner: Manager::from_config(
                    self.pg.clone(),
                    self.tls.clone(),
                    manager_config(&self.config),
                ),
                forgets: self.config.recycling != "fast",
            };
            let pool =
                sized(manager, &self.config, self.size).expect("a pool with a runtime builds");
            pools.push((self.id, pool.clone()));
            pool
        })
    }

    /// Logs in once, on a connection of its own.
    pub async fn check(&self) -> Result<(), tokio_postgres::Error> {
        let (client, connection) = self.pg.connect(self.tls.clone()).await?;
        drop(client);
        connection.await
    }
}

/// Publishes the pool's figures as gauges (called when /metrics is scraped).
pub fn record_metrics(pool: &Pool) {
    let status = pool.status();
    metrics::gauge!("basalt_db_pool_max_connections").set(status.max_size as f64);
    metrics::gauge!("basalt_db_pool_connections", "state" => "idle").set(status.available as f64);
    metrics::gauge!("basalt_db_pool_connections", "state" => "in_use")
        .set(status.size.saturating_sub(status.available) as f64);
    metrics::gauge!("basalt_db_pool_waiting_requests").set(status.waiting as f64);
}

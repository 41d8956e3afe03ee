//! Configuration: the settings, their defaults, the layering of
//! defaults < config file < `BASALT_*` environment < command-line flags, and the
//! validation that names the setting, the problem and the fix.
//!
//! This module reads nothing itself: the caller passes the file's text, the
//! environment and the flags, so every rule here is tested with plain values.

use crate::rate::RateSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A value that must never be printed: `Debug` shows `<redacted>`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("<redacted>")
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listen address of the HTTP server.
    pub http: String,
    /// Where Basalt keeps its embedded PostgreSQL cluster, generated secrets and files.
    pub data_dir: String,
    /// Where the app lives: the default target of links in emails.
    pub site_url: String,
    /// How clients reach this server (links in emails point here); empty
    /// derives `http://<http>`.
    pub public_url: String,
    pub log: LogConfig,
    pub database: DatabaseConfig,
    pub embedded: EmbeddedConfig,
    pub jwt: JwtConfig,
    pub auth: AuthConfig,
    pub smtp: SmtpConfig,
    pub authz: AuthzConfig,
    pub rest: RestConfig,
    pub realtime: RealtimeConfig,
    pub storage: StorageConfig,
    pub s3: S3Config,
    pub templates: TemplatesConfig,
    pub jobs: JobsConfig,
    pub server: ServerConfig,
    pub cors: CorsConfig,
    pub security: SecurityConfig,
    pub rate_limit: RateLimitConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `auto` (readable on a terminal, JSON otherwise), `json` or `pretty`.
    pub format: String,
    /// A tracing filter: `info`, `debug`, `basalt_server=debug,info`, ...
    pub level: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// An external PostgreSQL URL; empty runs the embedded cluster.
    pub url: Secret,
    pub pool_size: u32,
    pub pool_wait_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// `fast` (no check), `verified` (a round trip before reuse) or `clean` (DISCARD ALL).
    pub recycling: String,
    /// A PEM file of CA certificates to verify the server's TLS certificate with.
    pub ca_file: String,
    /// How long start-up waits for the database before giving up.
    pub startup_timeout_ms: u64,
    /// The login role of the data API's pool: it can only become the API
    /// roles (`authz.db_role_*`), never Basalt's own database user.
    pub api_role: String,
    /// Its password. Empty: Basalt creates the role (or resets it) with a
    /// password derived from the JWT secret; set: the operator manages the role.
    pub api_password: Secret,
    /// Maximum connections of the data API's pool per replica.
    pub api_pool_size: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedConfig {
    /// Directory with `initdb`, `pg_ctl` and `postgres`; empty searches the machine.
    pub bin_dir: String,
    /// The system user that runs the cluster when Basalt runs as root.
    pub os_user: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// HS256 secret of at least 32 bytes; empty generates one in the data directory.
    pub secret: Secret,
    /// A PEM private key (RSA → RS256, P-256 in PKCS#8 → ES256) to sign users'
    /// access tokens with; its public half is served at the JWKS endpoint.
    /// Empty: access tokens are HS256 with `secret`. API keys are always HS256.
    pub signing_key_file: String,
    /// The `kid` of that key; empty derives one from the public key.
    pub key_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Lifetime of access tokens (JWTs).
    pub access_token_ttl_secs: u64,
    /// How long a just-rotated refresh token may be presented again (two
    /// concurrent refreshes from one client) and still get the same successor.
    pub refresh_reuse_grace_secs: u64,
    /// A session not refreshed for this long ends; 0 disables.
    pub session_inactivity_timeout_secs: u64,
    /// A session ends this long after sign-in whatever happens; 0 disables.
    pub session_max_lifetime_secs: u64,
    /// Allowance for clocks that disagree when checking `exp` and `nbf`.
    pub clock_skew_secs: u64,
    pub password_min_length: u64,
    pub password_max_length: u64,
    /// Character classes a password must contain: `lower`, `upper`, `digit`, `symbol`.
    pub password_required_classes: Vec<String>,
    /// The lowest zxcvbn score (0–4) a password may have; 0 turns the
    /// check off. 1 refuses the most common passwords.
    pub password_min_score: u64,
    pub argon2_memory_kib: u64,
    pub argon2_iterations: u64,
    pub argon2_parallelism: u64,
    /// `auto` (on when `smtp.host` is set), `on` or `off`.
    pub email_confirmation: String,
    /// Lifetime of the single-use tokens sent by email.
    pub email_token_ttl_secs: u64,
    /// Where links may send users besides `site_url`: exact URLs (paths under
    /// them allowed) or prefixes ending with `*`.
    pub redirect_allow_list: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// Empty: no email; sign-ups are confirmed automatically.
    pub host: String,
    pub port: u64,
    pub user: String,
    pub password: Secret,
    /// The From address, e.g. `Acme <no-reply@acme.test>`.
    pub sender: String,
    /// `starttls`, `tls` (implicit) or `none`.
    pub tls: String,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RestConfig {
    /// The schema whose tables `/rest/v1/<table>` serves.
    pub schema: String,
    /// More schemas served when a request names one in `Accept-Profile`
    /// (reads) or `Content-Profile` (writes).
    pub extra_schemas: Vec<String>,
    /// The most rows one read returns (`limit` is capped by it).
    pub max_rows: u64,
    /// The rows a read returns when it gives no `limit` (at most `max_rows`).
    pub default_limit: u64,
    /// Whether `PATCH` and `DELETE` without any filter are allowed.
    pub allow_unfiltered_writes: bool,
    /// How long a response stored under an `Idempotency-Key` is replayed.
    pub idempotency_ttl_secs: u64,
    /// The most operations one `POST /rest/v1/batch` may hold.
    pub batch_max_operations: u64,
    /// Whether the API roles get privileges on the exposed schemas' tables,
    /// sequences and functions (existing ones at start-up, new ones as they
    /// are created), so that Basalt's policies are the gate.
    pub grant_api_roles: bool,
    /// Whether CSV answers prefix `'` to fields a spreadsheet would run as
    /// a formula.
    pub csv_neutralize_formulas: bool,
    /// The most data API requests one caller (user or anonymous IP) may
    /// have running at once; 0: no limit.
    pub max_concurrent_per_caller: u64,
    /// The statement timeout of anonymous and signed-in callers' data
    /// transactions, in milliseconds; 0: none (the request timeout applies).
    pub statement_timeout_ms: u64,
}

impl Default for RestConfig {
    fn default() -> Self {
        RestConfig {
            schema: "public".into(),
            extra_schemas: Vec::new(),
            max_rows: 1000,
            default_limit: 1000,
            allow_unfiltered_writes: false,
            idempotency_ttl_secs: 86_400,
            batch_max_operations: 100,
            grant_api_roles: true,
            csv_neutralize_formulas: false,
            max_concurrent_per_caller: 8,
            statement_timeout_ms: 15_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthzConfig {
    /// A key of a user's `app_metadata` whose list of role names is added to
    /// the roles assigned through the admin API; empty disables it.
    pub roles_claim: String,
    /// The database role data queries of anonymous callers run as (RLS).
    pub db_role_anon: String,
    /// The database role data queries of signed-in users run as (RLS).
    pub db_role_authenticated: String,
    /// The database role data queries with the service_role key run as.
    pub db_role_service: String,
    /// Roles declared in the config file (`[[authz.roles]]`), reconciled at start-up.
    pub roles: Vec<RoleDecl>,
    /// Policies declared in the config file (`[[authz.policies]]`), reconciled at start-up.
    pub policies: Vec<PolicyDecl>,
}

impl Default for AuthzConfig {
    fn default() -> Self {
        AuthzConfig {
            roles_claim: "roles".into(),
            db_role_anon: "anon".into(),
            db_role_authenticated: "authenticated".into(),
            db_role_service: "service_role".into(),
            roles: Vec::new(),
            policies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleDecl {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub parents: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDecl {
    pub subject: String,
    pub object: String,
    pub action: String,
    #[serde(default)]
    pub condition: Option<String>,
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    #[serde(default)]
    pub description: String,
}

/// Settings that are lists of tables, set in the config file only (no
/// environment variable).
pub const DECLARATIONS: &[&str] = &["authz.roles", "authz.policies", "storage.buckets"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TemplatesConfig {
    pub confirmation: EmailTemplate,
    pub recovery: EmailTemplate,
    pub magic_link: EmailTemplate,
    pub email_change: EmailTemplate,
}

/// An email: subject, HTML and text bodies with `{{ link }}`, `{{ email }}`,
/// `{{ new_email }}` and `{{ site_url }}` placeholders.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailTemplate {
    pub subject: String,
    pub html: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RealtimeConfig {
    /// Tables whose changes are captured into the change feed (`schema.table`,
    /// or `table` in `rest.schema`), in addition to those enabled through
    /// the admin API.
    pub tables: Vec<String>,
    /// How long the change feed keeps a change.
    pub retention_secs: u64,
    /// Open WebSocket connections per replica.
    pub max_connections: u64,
    /// Channels (topics) one connection may join.
    pub max_channels_per_connection: u64,
    /// The largest message a client may send, in bytes.
    pub max_message_bytes: u64,
    /// Messages waiting to be sent to one connection; a connection that
    /// falls this far behind is cut off (`slow_consumer`).
    pub send_buffer: u64,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        RealtimeConfig {
            tables: Vec::new(),
            retention_secs: 86_400,
            max_connections: 10_000,
            max_channels_per_connection: 100,
            max_message_bytes: 65_536,
            send_buffer: 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    /// How often idle workers look for due jobs (they are also woken at once
    /// when this replica enqueues one).
    pub poll_interval_ms: u64,
    pub max_attempts: u64,
    /// Retry delay after the first failure; it doubles each time up to the max.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub body_limit_bytes: u64,
    pub request_timeout_ms: u64,
    pub header_read_timeout_ms: u64,
    pub keep_alive_secs: u64,
    pub max_connections_per_worker: u64,
    pub workers: u64,
    pub shutdown_timeout_ms: u64,
    pub shutdown_drain_ms: u64,
    /// Peers (IP or CIDR) whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed.
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins (`https://app.example.com`) allowed to call the APIs; `*` allows any.
    pub allowed_origins: Vec<String>,
    pub max_age_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// Sent as Strict-Transport-Security on requests that arrived over TLS; 0 disables.
    pub hsts_max_age_secs: u64,
    /// `DENY` or `SAMEORIGIN`, sent as X-Frame-Options and CSP frame-ancestors.
    pub frame_options: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Per email address and action: sign-up, sign-in, recovery, magic links,
    /// email changes (verification is limited per IP only).
    pub auth_per_email: String,
    pub auth: RateLimitGroup,
    pub rest: RateLimitGroup,
    pub storage: RateLimitGroup,
    pub realtime: RateLimitGroup,
    pub search: RateLimitGroup,
    pub admin: RateLimitGroup,
    /// Every other path except `/health/*` and `/metrics`.
    pub default: RateLimitGroup,
}

/// Limits of one route group: `<count>/<period>` or `off`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitGroup {
    pub per_ip: String,
    pub per_key: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http: "127.0.0.1:8000".into(),
            data_dir: "./basalt-data".into(),
            site_url: "http://localhost:3000".into(),
            public_url: String::new(),
            log: LogConfig {
                format: "auto".into(),
                level: "info".into(),
            },
            database: DatabaseConfig::default(),
            embedded: EmbeddedConfig {
                bin_dir: String::new(),
                os_user: "postgres".into(),
            },
            jwt: JwtConfig::default(),
            auth: AuthConfig::default(),
            smtp: SmtpConfig::default(),
            authz: AuthzConfig::default(),
            rest: RestConfig::default(),
            templates: TemplatesConfig::default(),
            jobs: JobsConfig::default(),
            realtime: RealtimeConfig::default(),
            storage: StorageConfig::default(),
            s3: S3Config::default(),
            server: ServerConfig::default(),
            cors: CorsConfig {
                allowed_origins: vec!["*".into()],
                max_age_secs: 3600,
            },
            security: SecurityConfig {
                hsts_max_age_secs: 31_536_000,
                frame_options: "DENY".into(),
            },
            rate_limit: RateLimitConfig::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Config::default().log
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: Secret::default(),
            pool_size: 16,
            pool_wait_timeout_ms: 5_000,
            connect_timeout_ms: 5_000,
            recycling: "fast".into(),
            ca_file: String::new(),
            startup_timeout_ms: 60_000,
            api_role: "authenticator".into(),
            api_password: Secret::default(),
            api_pool_size: 16,
        }
    }
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Config::default().embedded
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            access_token_ttl_secs: 3600,
            refresh_reuse_grace_secs: 10,
            session_inactivity_timeout_secs: 30 * 24 * 3600,
            session_max_lifetime_secs: 0,
            clock_skew_secs: 30,
            password_min_length: 8,
            password_max_length: 128,
            password_required_classes: Vec::new(),
            password_min_score: 1,
            // OWASP's recommended Argon2id parameters.
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            email_confirmation: "auto".into(),
            email_token_ttl_secs: 3600,
            redirect_allow_list: Vec::new(),
        }
    }
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            host: String::new(),
            port: 587,
            user: String::new(),
            password: Secret::default(),
            sender: "Basalt <no-reply@localhost>".into(),
            tls: "starttls".into(),
            timeout_secs: 10,
        }
    }
}

impl Default for TemplatesConfig {
    fn default() -> Self {
        let template = |subject: &str, action: &str| {
            EmailTemplate {
            subject: subject.into(),
            html: format!("<h2>{subject}</h2>\n<p><a href=\"{{{{ link }}}}\">{action}</a></p>\n<p>If you did not ask for this, ignore this email.</p>\n"),
            text: format!("{subject}\n\n{action}: {{{{ link }}}}\n\nIf you did not ask for this, ignore this email.\n"),
        }
        };
        TemplatesConfig {
            confirmation: template("Confirm your email address", "Confirm your address"),
            recovery: template("Reset your password", "Reset your password"),
            magic_link: template("Your sign-in link", "Sign in"),
            email_change: template("Confirm your new email address", "Confirm {{ new_email }}"),
        }
    }
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            poll_interval_ms: 1000,
            max_attempts: 10,
            retry_base_ms: 2000,
            retry_max_ms: 600_000,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            body_limit_bytes: 8 * 1024 * 1024,
            request_timeout_ms: 30_000,
            header_read_timeout_ms: 5_000,
            keep_alive_secs: 75,
            max_connections_per_worker: 25_000,
            workers: 0,
            shutdown_timeout_ms: 30_000,
            shutdown_drain_ms: 0,
            trusted_proxies: Vec::new(),
        }
    }
}

impl Default for CorsConfig {
    fn default() -> Self {
        Config::default().cors
    }
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Config::default().security
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        let group = |per_ip: &str| RateLimitGroup {
            per_ip: per_ip.into(),
            per_key: "off".into(),
        };
        RateLimitConfig {
            enabled: true,
            auth_per_email: "30/1h".into(),
            auth: group("300/5m"),
            rest: group("6000/1m"),
            storage: group("6000/1m"),
            realtime: group("600/1m"),
            search: group("6000/1m"),
            admin: group("6000/1m"),
            default: group("6000/1m"),
        }
    }
}

impl Default for RateLimitGroup {
    fn default() -> Self {
        RateLimitGroup {
            per_ip: "off".into(),
            per_key: "off".into(),
        }
    }
}

/// Settings whose values are secret: redacted by [`Config::redacted_toml`].
pub const SECRET_SETTINGS: &[&str] = &[
    "jwt.secret",
    "database.url",
    "smtp.password",
    "s3.secret_access_key",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `local` (files under `<data_dir>/storage`) or `s3` (the `[s3]` settings).
    pub backend: String,
    /// The largest object, in bytes; a bucket's `file_size_limit` may lower it.
    pub max_file_size_bytes: u64,
    /// The longest expiry a signed URL may ask for.
    pub signed_url_max_expiry_secs: u64,
    /// A resumable (TUS) upload not finished within this time is discarded.
    pub resumable_ttl_secs: u64,
    /// A stored blob no object refers to is removed once it is this old (an
    /// upload in flight has written its blob but not yet its metadata).
    pub orphan_grace_secs: u64,
    /// How often the cleanup task looks for orphaned blobs and expired uploads.
    pub cleanup_interval_secs: u64,
    /// Time limit of one upload or download (instead of `server.request_timeout_ms`).
    pub transfer_timeout_secs: u64,
    /// Buckets declared in the config file (`[[storage.buckets]]`), created or
    /// updated at start-up.
    pub buckets: Vec<BucketDecl>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: "local".into(),
            max_file_size_bytes: 5 * 1024 * 1024 * 1024,
            signed_url_max_expiry_secs: 7 * 86_400,
            resumable_ttl_secs: 86_400,
            orphan_grace_secs: 86_400,
            cleanup_interval_secs: 600,
            transfer_timeout_secs: 3600,
            buckets: Vec::new(),
        }
    }
}

/// A bucket declared in the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketDecl {
    pub name: String,
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub file_size_limit: Option<u64>,
    #[serde(default)]
    pub allowed_mime_types: Vec<String>,
}

/// The S3-compatible store used when `storage.backend = "s3"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// e.g. `https://s3.eu-west-1.amazonaws.com` or `http://127.0.0.1:9000`;
    /// empty means AWS's endpoint for the region.
    pub endpoint: String,
    pub region: String,
    /// The one bucket of the store that holds every Basalt bucket's blobs.
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// `http://endpoint/bucket/key` instead of `http://bucket.endpoint/key`
    /// (most self-hosted stores need it).
    pub force_path_style: bool,
    /// Objects larger than this are sent as a multipart upload in parts of this size.
    pub part_size_bytes: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: String::new(),
            region: "us-east-1".into(),
            bucket: String::new(),
            access_key_id: String::new(),
            secret_access_key: Secret::default(),
            force_path_style: false,
            part_size_bytes: 8 * 1024 * 1024,
        }
    }
}

/// A setting that could not be taken, said so that a person can fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path, e.g. `server.request_timeout_ms`, or `config file`.
    pub setting: String,
    /// Where the value came from: a file, an environment variable, a flag, the default.
    pub origin: String,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid setting `{}` (from {}): {}\n  fix: {}",
            self.setting, self.origin, self.problem, self.fix
        )
    }
}

impl std::error::Error for ConfigError {}

/// Everything the layering reads, gathered by the caller.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// The config file's display path and its text.
    pub file: Option<(String, String)>,
    /// The process environment (only `BASALT_*` and `DATABASE_URL` are read).
    pub env: BTreeMap<String, String>,
    /// Flags given on the command line: (setting path, flag name, value).
    pub flags: Vec<(String, String, String)>,
}

/// One setting as documented: its path, environment name and default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingDoc {
    pub path: String,
    pub env: String,
    pub default: String,
}

/// The environment variable name of a setting path.
pub fn env_name(path: &str) -> String {
    format!("BASALT_{}", path.replace('.', "_").to_ascii_uppercase())
}

/// Every setting with its environment name and default, in file order.
pub fn settings() -> Vec<SettingDoc> {
    leaves(&defaults_table())
        .into_iter()
        .filter(|(path, _)| !DECLARATIONS.contains(&path.as_str()))
        .map(|(path, value)| SettingDoc {
            env: env_name(&path),
            default: render_value(&value),
            path,
        })
        .collect()
}

/// What layering produced: the config and warnings worth logging.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// Where each setting that is not a default came from.
    pub origins: BTreeMap<String, String>,
    pub warnings: Vec<String>,
}

impl Config {
    /// Layers defaults < file < environment < flags, then validates.
    pub fn load(sources: &Sources) -> Result<Loaded, ConfigError> {
        let defaults = defaults_table();
        let known: BTreeMap<String, toml::Value> = leaves(&defaults).into_iter().collect();
        let mut merged = known.clone();
        let mut origins = BTreeMap::new();
        let mut warnings = Vec::new();

        if let Some((path, text)) = &sources.file {
            let origin = format!("config file {path}");
            let table: toml::Table =
                text.parse().map_err(|error: toml::de::Error| ConfigError {
                    setting: "config file".into(),
                    origin: origin.clone(),
                    problem: format!("it is not valid TOML: {}", error.message()),
                    fix: format!(
                        "correct the TOML syntax{}",
                        error
                            .span()
                            .map(|span| format!(" near line {}", line_of(text, span.start)))
                            .unwrap_or_default()
                    ),
                })?;
            for (key, value) in leaves(&table) {
                let Some(default) = known.get(&key) else {
                    return Err(unknown_setting(&key, &origin, &known));
                };
                let value = if DECLARATIONS.contains(&key.as_str()) {
                    declarations(&key, value, &origin)?
                } else {
                    coerce_file_value(&key, value, default, &origin)?
                };
                merged.insert(key.clone(), value);
                origins.insert(key, origin.clone());
            }
        }

        for key in known
            .keys()
            .filter(|key| !DECLARATIONS.contains(&key.as_str()))
        {
            let name = env_name(key);
            let (name, raw) = match sources.env.get(&name) {
                Some(raw) => (name, raw),
                None if key == "database.url" => match sources.env.get("DATABASE_URL") {
                    Some(raw) => ("DATABASE_URL".to_owned(), raw),
                    None => continue,
                },
                None => continue,
            };
            let origin = format!("environment variable {name}");
            merged.insert(key.clone(), parse_text(key, raw, &known[key], &origin)?);
            origins.insert(key.clone(), origin);
        }
        let recognised: Vec<String> = known.keys().map(|key| env_name(key)).collect();
        for name in sources.env.keys() {
            if name.starts_with("BASALT_") && name != "BASALT_CONFIG" && !recognised.contains(name)
            {
                warnings.push(format!(
                    "environment variable {name} is not a Basalt setting and was ignored{}",
                    suggestion(name, recognised.iter().map(String::as_str))
                        .map(|s| format!(" (did you mean {s}?)"))
                        .unwrap_or_default()
                ));
            }
        }

        for (key, flag, raw) in &sources.flags {
            let origin = format!("flag {flag}");
            let Some(default) = known.get(key) else {
                return Err(unknown_setting(key, &origin, &known));
            };
            merged.insert(key.clone(), parse_text(key, raw, default, &origin)?);
            origins.insert(key.clone(), origin);
        }

        let table = nest(merged);
        let config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|error: toml::de::Error| ConfigError {
                    setting: "configuration".into(),
                    origin: "the merged layers".into(),
                    problem: error.message().to_owned(),
                    fix: "check the types of the settings in docs/configuration.md".into(),
                })?;
        config.validate(&origins)?;
        Ok(Loaded {
            config,
            origins,
            warnings,
        })
    }

    /// Checks every rule that types cannot express.
    fn validate(&self, origins: &BTreeMap<String, String>) -> Result<(), ConfigError> {
        let fail =
            |setting: &str, problem: String, fix: &str| failure(origins, setting, problem, fix);
        if self.http.parse::<std::net::SocketAddr>().is_err() {
            return Err(fail(
                "http",
                format!("`{}` is not an IP address with a port", self.http),
                "use IP:PORT, for example 127.0.0.1:8000 or 0.0.0.0:8000",
            ));
        }
        if self.data_dir.trim().is_empty() {
            return Err(fail(
                "data_dir",
                "it is empty".into(),
                "name a directory Basalt may create and write, for example ./basalt-data",
            ));
        }
        if !["auto", "json", "pretty"].contains(&self.log.format.as_str()) {
            return Err(fail(
                "log.format",
                format!("`{}` is not a log format", self.log.format),
                "use auto, json or pretty",
            ));
        }
        if self.log.level.trim().is_empty() {
            return Err(fail(
                "log.level",
                "it is empty".into(),
                "use a level such as info or debug",
            ));
        }
        let url = self.database.url.expose();
        let url_shaped = url.is_empty()
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.contains('=');
        if !url_shaped {
            return Err(fail(
                "database.url",
                "it is neither a postgres:// URL nor a key=value connection string".into(),
                "use postgres://USER:PASSWORD@HOST:PORT/DATABASE, or leave it empty for the embedded PostgreSQL",
            ));
        }
        range(
            &fail,
            "database.pool_size",
            self.database.pool_size.into(),
            1,
            1000,
        )?;
        range(
            &fail,
            "database.api_pool_size",
            self.database.api_pool_size.into(),
            1,
            1000,
        )?;
        range(
            &fail,
            "database.pool_wait_timeout_ms",
            self.database.pool_wait_timeout_ms,
            1,
            600_000,
        )?;
        range(
            &fail,
            "database.connect_timeout_ms",
            self.database.connect_timeout_ms,
            100,
            600_000,
        )?;
        range(
            &fail,
            "database.startup_timeout_ms",
            self.database.startup_timeout_ms,
            0,
            3_600_000,
        )?;
        if !["fast", "verified", "clean"].contains(&self.database.recycling.as_str()) {
            return Err(fail(
                "database.recycling",
                format!("`{}` is not a recycling method", self.database.recycling),
                "use fast, verified or clean",
            ));
        }
        if self.embedded.os_user.trim().is_empty() {
            return Err(fail(
                "embedded.os_user",
                "it is empty".into(),
                "name an unprivileged system user, such as postgres",
            ));
        }
        let secret = self.jwt.secret.expose();
        if !secret.is_empty() && secret.len() < 32 {
            return Err(fail(
                "jwt.secret",
                format!("it is {} bytes long; HS256 needs at least 32", secret.len()),
                "generate one with `openssl rand -hex 32`, or leave it empty to have Basalt generate and keep one in the data directory",
            ));
        }
        let auth = &self.auth;
        range(
            &fail,
            "auth.access_token_ttl_secs",
            auth.access_token_ttl_secs,
            30,
            7 * 86_400,
        )?;
        range(
            &fail,
            "auth.refresh_reuse_grace_secs",
            auth.refresh_reuse_grace_secs,
            0,
            300,
        )?;
        range(
            &fail,
            "auth.session_inactivity_timeout_secs",
            auth.session_inactivity_timeout_secs,
            0,
            10 * 365 * 86_400,
        )?;
        range(
            &fail,
            "auth.session_max_lifetime_secs",
            auth.session_max_lifetime_secs,
            0,
            10 * 365 * 86_400,
        )?;
        range(&fail, "auth.clock_skew_secs", auth.clock_skew_secs, 0, 300)?;
        range(
            &fail,
            "auth.password_min_length",
            auth.password_min_length,
            6,
            1024,
        )?;
        range(
            &fail,
            "auth.password_max_length",
            auth.password_max_length,
            auth.password_min_length,
            4096,
        )?;
        for class in &auth.password_required_classes {
            if !["lower", "upper", "digit", "symbol"].contains(&class.as_str()) {
                return Err(fail(
                    "auth.password_required_classes",
                    format!("`{class}` is not a character class"),
                    "list any of lower, upper, digit, symbol",
                ));
            }
        }
        range(
            &fail,
            "auth.password_min_score",
            auth.password_min_score,
            0,
            4,
        )?;
        range(
            &fail,
            "auth.argon2_memory_kib",
            auth.argon2_memory_kib,
            8 * auth.argon2_parallelism.max(1),
            4 * 1024 * 1024,
        )?;
        range(
            &fail,
            "auth.argon2_iterations",
            auth.argon2_iterations,
            1,
            100,
        )?;
        range(
            &fail,
            "auth.argon2_parallelism",
            auth.argon2_parallelism,
            1,
            64,
        )?;
        if !["auto", "on", "off"].contains(&auth.email_confirmation.as_str()) {
            return Err(fail(
                "auth.email_confirmation",
                format!("`{}` is not auto, on or off", auth.email_confirmation),
                "use auto (on when smtp.host is set), on or off",
            ));
        }
        if auth.email_confirmation == "on" && self.smtp.host.is_empty() {
            return Err(fail(
                "auth.email_confirmation",
                "it is on but no SMTP server is configured".into(),
                "set smtp.host (BASALT_SMTP_HOST), or use auto",
            ));
        }
        range(
            &fail,
            "auth.email_token_ttl_secs",
            auth.email_token_ttl_secs,
            60,
            7 * 86_400,
        )?;
        for entry in &auth.redirect_allow_list {
            if !entry.contains("://") || entry.contains(char::is_whitespace) {
                return Err(fail(
                    "auth.redirect_allow_list",
                    format!("`{entry}` is not a URL"),
                    "list URLs such as https://app.example.com/welcome or myapp://callback/*",
                ));
            }
        }
        for (setting, url) in [
            ("site_url", &self.site_url),
            ("public_url", &self.public_url),
        ] {
            let ok = (url.is_empty() && setting == "public_url")
                || ((url.starts_with("http://") || url.starts_with("https://"))
                    && !url.contains(char::is_whitespace));
            if !ok {
                return Err(fail(
                    setting,
                    format!("`{url}` is not an http(s) URL"),
                    "use a URL such as https://app.example.com",
                ));
            }
        }
        self.validate_declarations(origins)?;
        let smtp = &self.smtp;
        if !["starttls", "tls", "none"].contains(&smtp.tls.as_str()) {
            return Err(fail(
                "smtp.tls",
                format!("`{}` is not starttls, tls or none", smtp.tls),
                "use starttls (port 587), tls (port 465) or none (local relays only)",
            ));
        }
        range(&fail, "smtp.port", smtp.port, 1, 65_535)?;
        range(&fail, "smtp.timeout_secs", smtp.timeout_secs, 1, 600)?;
        if !smtp.host.is_empty() && !smtp.sender.contains('@') {
            return Err(fail(
                "smtp.sender",
                format!("`{}` is not an email address", smtp.sender),
                "use an address such as `Acme <no-reply@acme.test>`",
            ));
        }
        range(&fail, "rest.max_rows", self.rest.max_rows, 1, 1_000_000)?;
        range(
            &fail,
            "rest.default_limit",
            self.rest.default_limit,
            1,
            1_000_000,
        )?;
        range(
            &fail,
            "rest.idempotency_ttl_secs",
            self.rest.idempotency_ttl_secs,
            60,
            30 * 86_400,
        )?;
        range(
            &fail,
            "rest.batch_max_operations",
            self.rest.batch_max_operations,
            1,
            10_000,
        )?;
        for (setting, schema) in std::iter::once(("rest.schema", &self.rest.schema)).chain(
            self.rest
                .extra_schemas
                .iter()
                .map(|schema| ("rest.extra_schemas", schema)),
        ) {
            if schema.is_empty() || schema.len() > 63 || schema.contains(['"', '\0', ',']) {
                return Err(fail(
                    setting,
                    format!("`{schema}` is not a schema name"),
                    "use a schema such as public",
                ));
            }
        }
        range(
            &fail,
            "realtime.retention_secs",
            self.realtime.retention_secs,
            60,
            90 * 86_400,
        )?;
        range(
            &fail,
            "realtime.max_connections",
            self.realtime.max_connections,
            1,
            1_000_000,
        )?;
        range(
            &fail,
            "realtime.max_channels_per_connection",
            self.realtime.max_channels_per_connection,
            1,
            10_000,
        )?;
        range(
            &fail,
            "realtime.max_message_bytes",
            self.realtime.max_message_bytes,
            256,
            16 * 1024 * 1024,
        )?;
        range(
            &fail,
            "realtime.send_buffer",
            self.realtime.send_buffer,
            1,
            1_000_000,
        )?;
        self.validate_storage(&fail)?;
        for table in &self.realtime.tables {
            let ok = !table.is_empty()
                && table.split('.').count() <= 2
                && !table.contains(['"', '\0', ',']);
            if !ok {
                return Err(fail(
                    "realtime.tables",
                    format!("`{table}` is not a table name"),
                    "write tables as posts or public.posts",
                ));
            }
        }
        range(
            &fail,
            "jobs.poll_interval_ms",
            self.jobs.poll_interval_ms,
            10,
            600_000,
        )?;
        range(&fail, "jobs.max_attempts", self.jobs.max_attempts, 1, 1000)?;
        range(
            &fail,
            "jobs.retry_base_ms",
            self.jobs.retry_base_ms,
            10,
            86_400_000,
        )?;
        range(
            &fail,
            "jobs.retry_max_ms",
            self.jobs.retry_max_ms,
            self.jobs.retry_base_ms,
            86_400_000,
        )?;
        if let Err(problem) = RateSpec::parse(&self.rate_limit.auth_per_email) {
            return Err(fail(
                "rate_limit.auth_per_email",
                problem,
                "write `<count>/<period>` such as 5/1h, or `off`",
            ));
        }
        let server = &self.server;
        range(
            &fail,
            "server.body_limit_bytes",
            server.body_limit_bytes,
            1024,
            1 << 40,
        )?;
        range(
            &fail,
            "server.request_timeout_ms",
            server.request_timeout_ms,
            100,
            86_400_000,
        )?;
        range(
            &fail,
            "server.header_read_timeout_ms",
            server.header_read_timeout_ms,
            100,
            600_000,
        )?;
        range(
            &fail,
            "server.keep_alive_secs",
            server.keep_alive_secs,
            0,
            3600,
        )?;
        range(
            &fail,
            "server.max_connections_per_worker",
            server.max_connections_per_worker,
            1,
            1_000_000,
        )?;
        range(&fail, "server.workers", server.workers, 0, 1024)?;
        range(
            &fail,
            "server.shutdown_timeout_ms",
            server.shutdown_timeout_ms,
            0,
            3_600_000,
        )?;
        range(
            &fail,
            "server.shutdown_drain_ms",
            server.shutdown_drain_ms,
            0,
            3_600_000,
        )?;
        if let Err(entry) = self.trusted_proxies() {
            return Err(fail(
                "server.trusted_proxies",
                format!("`{entry}` is neither an IP address nor a CIDR network"),
                "list addresses or networks such as 10.0.0.0/8, 127.0.0.1",
            ));
        }
        for origin in &self.cors.allowed_origins {
            if origin != "*" && !is_origin(origin) {
                return Err(fail(
                    "cors.allowed_origins",
                    format!("`{origin}` is not an origin"),
                    "list origins as scheme://host[:port] without a path, for example https://app.example.com, or * for any",
                ));
            }
        }
        if !["DENY", "SAMEORIGIN"].contains(&self.security.frame_options.as_str()) {
            return Err(fail(
                "security.frame_options",
                format!(
                    "`{}` is not DENY or SAMEORIGIN",
                    self.security.frame_options
                ),
                "use DENY (no framing) or SAMEORIGIN",
            ));
        }
        for (group, limits) in self.rate_limit.groups() {
            for (which, text) in [("per_ip", &limits.per_ip), ("per_key", &limits.per_key)] {
                if let Err(problem) = RateSpec::parse(text) {
                    return Err(fail(
                        &format!("rate_limit.{group}.{which}"),
                        problem,
                        "write `<count>/<period>` such as 100/1s, 600/1m or 5000/1h, or `off`",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The trusted proxy networks, or the first entry that is not one.
    pub fn trusted_proxies(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.server
            .trusted_proxies
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| entry.to_owned())
            })
            .collect()
    }

    /// The effective configuration as TOML with every secret replaced.
    pub fn redacted_toml(&self) -> String {
        let mut value = toml::Value::try_from(self).expect("config serializes");
        for path in SECRET_SETTINGS {
            let (section, key) = path.split_once('.').expect("secret paths are section.key");
            if let Some(toml::Value::String(text)) =
                value.get_mut(section).and_then(|table| table.get_mut(key))
            {
                if !text.is_empty() {
                    *text = if *path == "database.url" {
                        redact_url(text)
                    } else {
                        "<redacted>".into()
                    };
                }
            }
        }
        toml::to_string_pretty(&value).expect("config renders")
    }
}

impl Config {
    fn validate_storage<F>(&self, fail: &F) -> Result<(), ConfigError>
    where
        F: Fn(&str, String, &str) -> ConfigError,
    {
        let storage = &self.storage;
        match storage.backend.as_str() {
            "local" => {}
            "s3" => {
                for (setting, value) in [
                    ("s3.bucket", &self.s3.bucket),
                    ("s3.region", &self.s3.region),
                    ("s3.access_key_id", &self.s3.access_key_id),
                    ("s3.secret_access_key", &self.s3.secret_access_key.0),
                ] {
                    if value.is_empty() {
                        return Err(fail(
                            setting,
                            "it is empty while storage.backend is s3".into(),
                            &format!("set {setting} ({})", env_name(setting)),
                        ));
                    }
                }
                if !self.s3.endpoint.is_empty() && !is_origin(&self.s3.endpoint) {
                    return Err(fail(
                        "s3.endpoint",
                        format!("`{}` is not an http(s) origin", self.s3.endpoint),
                        "use a URL such as http://127.0.0.1:9000, without a path",
                    ));
                }
            }
            other => {
                return Err(fail(
                    "storage.backend",
                    format!("`{other}` is not a storage backend"),
                    "use local or s3",
                ))
            }
        }
        range(
            fail,
            "storage.max_file_size_bytes",
            storage.max_file_size_bytes,
            1,
            5 * 1024 * 1024 * 1024 * 1024,
        )?;
        range(
            fail,
            "storage.signed_url_max_expiry_secs",
            storage.signed_url_max_expiry_secs,
            1,
            365 * 86_400,
        )?;
        range(
            fail,
            "storage.resumable_ttl_secs",
            storage.resumable_ttl_secs,
            60,
            30 * 86_400,
        )?;
        range(
            fail,
            "storage.orphan_grace_secs",
            storage.orphan_grace_secs,
            1,
            30 * 86_400,
        )?;
        range(
            fail,
            "storage.cleanup_interval_secs",
            storage.cleanup_interval_secs,
            1,
            86_400,
        )?;
        range(
            fail,
            "storage.transfer_timeout_secs",
            storage.transfer_timeout_secs,
            1,
            7 * 86_400,
        )?;
        // S3 refuses multipart parts under 5 MiB (except the last) and over 5 GiB.
        range(
            fail,
            "s3.part_size_bytes",
            self.s3.part_size_bytes,
            5 * 1024 * 1024,
            5 * 1024 * 1024 * 1024,
        )?;
        for bucket in &storage.buckets {
            if let Err(problem) = crate::storage::check_bucket_id(&bucket.name) {
                return Err(fail(
                    "storage.buckets",
                    format!("bucket `{}`: {problem}", bucket.name),
                    "use 1-63 lowercase letters, digits, `.`, `_` or `-`",
                ));
            }
            for pattern in &bucket.allowed_mime_types {
                if !crate::storage::valid_mime_pattern(pattern) {
                    return Err(fail(
                        "storage.buckets",
                        format!("bucket `{}`: `{pattern}` is not a MIME type", bucket.name),
                        "write types as image/png, image/* or */*",
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_declarations(&self, origins: &BTreeMap<String, String>) -> Result<(), ConfigError> {
        use crate::policy::{policy_problem, valid_role_name, BUILTIN_ROLES};
        let fail =
            |setting: &str, problem: String, fix: &str| failure(origins, setting, problem, fix);
        for (setting, role) in [
            ("authz.db_role_anon", &self.authz.db_role_anon),
            (
                "authz.db_role_authenticated",
                &self.authz.db_role_authenticated,
            ),
            ("authz.db_role_service", &self.authz.db_role_service),
            ("database.api_role", &self.database.api_role),
        ] {
            let plain = !role.is_empty()
                && role.len() <= 63
                && role.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !plain {
                return Err(fail(
                    setting,
                    format!("`{role}` is not a database role name"),
                    "use a role such as anon or authenticated",
                ));
            }
        }
        let api_roles = [
            &self.authz.db_role_anon,
            &self.authz.db_role_authenticated,
            &self.authz.db_role_service,
        ];
        if api_roles.contains(&&self.database.api_role) {
            return Err(fail(
                "database.api_role",
                format!(
                    "`{}` is also one of the roles it switches to",
                    self.database.api_role
                ),
                "use a login role of its own, such as authenticator",
            ));
        }
        let declared: Vec<&str> = self.authz.roles.iter().map(|r| r.name.as_str()).collect();
        let known = |name: &str| BUILTIN_ROLES.contains(&name) || declared.contains(&name);
        for (index, role) in self.authz.roles.iter().enumerate() {
            if !valid_role_name(&role.name) || BUILTIN_ROLES.contains(&role.name.as_str()) {
                return Err(fail(
                    "authz.roles",
                    format!("entry {} has the name `{}`", index + 1, role.name),
                    "use a-z, 0-9 and _, starting with a letter, and not anon, authenticated or service_role",
                ));
            }
            if declared.iter().filter(|name| **name == role.name).count() > 1 {
                return Err(fail(
                    "authz.roles",
                    format!("`{}` is declared twice", role.name),
                    "declare each role once",
                ));
            }
            if let Some(parent) = role
                .parents
                .iter()
                .find(|p| !known(p) || *p == &role.name || *p == "service_role")
            {
                return Err(fail(
                    "authz.roles",
                    format!(
                        "`{}` inherits from `{parent}`, which is not a built-in or declared role",
                        role.name
                    ),
                    "declare the parent role too, or remove it",
                ));
            }
        }
        for (index, policy) in self.authz.policies.iter().enumerate() {
            if let Some((field, problem)) = policy_problem(
                &policy.subject,
                &policy.object,
                &policy.action,
                policy.condition.as_deref(),
                policy.columns.as_deref(),
            ) {
                return Err(fail(
                    "authz.policies",
                    format!("entry {}: {field}: {problem}", index + 1),
                    "fix that field of the [[authz.policies]] entry",
                ));
            }
            if !policy.subject.starts_with("user:") && !known(&policy.subject) {
                return Err(fail(
                    "authz.policies",
                    format!(
                        "entry {}: the subject `{}` is not a built-in or declared role",
                        index + 1,
                        policy.subject
                    ),
                    "declare it with [[authz.roles]]",
                ));
            }
        }
        Ok(())
    }

    /// Whether sign-ups must confirm their address by email.
    pub fn email_confirmation(&self) -> bool {
        match self.auth.email_confirmation.as_str() {
            "on" => true,
            "off" => false,
            _ => !self.smtp.host.is_empty(),
        }
    }

    /// The base URL of this server for links in emails.
    pub fn public_url(&self) -> String {
        if self.public_url.is_empty() {
            format!("http://{}", self.http)
        } else {
            self.public_url.trim_end_matches('/').to_owned()
        }
    }
}

impl RateLimitConfig {
    /// The groups by name, in a stable order.
    pub fn groups(&self) -> [(&'static str, &RateLimitGroup); 7] {
        [
            ("auth", &self.auth),
            ("rest", &self.rest),
            ("storage", &self.storage),
            ("realtime", &self.realtime),
            ("search", &self.search),
            ("admin", &self.admin),
            ("default", &self.default),
        ]
    }
}

/// Hides the password of a connection URL or key=value string, keeping the rest
/// readable for debugging.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, tail) = match rest.find(['/', '?']) {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let authority = match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:<redacted>@{host}"),
                None => format!("{userinfo}@{host}"),
            },
            None => authority.to_owned(),
        };
        let tail = redact_password_params(tail, '&');
        format!("{scheme}://{authority}{tail}")
    } else {
        redact_password_params(url, ' ')
    }
}

fn redact_password_params(text: &str, separator: char) -> String {
    text.split(separator)
        .map(|part| {
            let bare = part.trim_start_matches('?');
            if bare.to_ascii_lowercase().starts_with("password=") {
                format!("{}password=<redacted>", &part[..part.len() - bare.len()])
            } else {
                part.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(&separator.to_string())
}

fn failure(
    origins: &BTreeMap<String, String>,
    setting: &str,
    problem: String,
    fix: &str,
) -> ConfigError {
    ConfigError {
        setting: setting.into(),
        origin: origins
            .get(setting)
            .cloned()
            .unwrap_or_else(|| "the default".into()),
        problem,
        fix: fix.into(),
    }
}

fn range<F>(fail: &F, setting: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError>
where
    F: Fn(&str, String, &str) -> ConfigError,
{
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(fail(
            setting,
            format!("{value} is outside the allowed range {min}..={max}"),
            &format!("choose a value from {min} to {max}"),
        ))
    }
}

fn is_origin(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', ' ', '@'])
}

fn defaults_table() -> toml::Table {
    match toml::Value::try_from(Config::default()).expect("defaults serialize") {
        toml::Value::Table(table) => table,
        _ => unreachable!("a struct serializes to a table"),
    }
}

/// Flattens a table to (dotted path, leaf value) pairs in order.
fn leaves(table: &toml::Table) -> Vec<(String, toml::Value)> {
    let mut out = Vec::new();
    for (key, value) in table {
        match value {
            toml::Value::Table(inner) => {
                for (path, leaf) in leaves(inner) {
                    out.push((format!("{key}.{path}"), leaf));
                }
            }
            leaf => out.push((key.clone(), leaf.clone())),
        }
    }
    out
}

/// Rebuilds nested tables from dotted paths.
fn nest(flat: BTreeMap<String, toml::Value>) -> toml::Table {
    let mut root = toml::Table::new();
    for (path, value) in flat {
        let mut parts: Vec<&str> = path.split('.').collect();
        let last = parts.pop().expect("paths are not empty");
        let mut table = &mut root;
        for part in parts {
            table = table
                .entry(part.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .expect("sections are tables");
        }
        table.insert(last.to_owned(), value);
    }
    root
}

fn type_name(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "a whole number",
        toml::Value::Boolean(_) => "true or false",
        toml::Value::Array(_) => "a list of strings",
        toml::Value::Float(_) => "a number",
        _ => "a table",
    }
}

fn declarations(key: &str, value: toml::Value, origin: &str) -> Result<toml::Value, ConfigError> {
    match &value {
        toml::Value::Array(items) if items.iter().all(toml::Value::is_table) => Ok(value),
        _ => Err(ConfigError {
            setting: key.into(),
            origin: origin.into(),
            problem: "it must be a list of tables".into(),
            fix: format!("declare each entry as [[{key}]] with its fields"),
        }),
    }
}

fn coerce_file_value(
    key: &str,
    value: toml::Value,
    default: &toml::Value,
    origin: &str,
) -> Result<toml::Value, ConfigError> {
    let wrong = || ConfigError {
        setting: key.into(),
        origin: origin.into(),
        problem: format!(
            "it is {}, but must be {}",
            type_name(&value),
            type_name(default)
        ),
        fix: format!("write {} for `{key}`", type_name(default)),
    };
    match (default, &value) {
        (toml::Value::Integer(_), toml::Value::Integer(n)) if *n < 0 => Err(ConfigError {
            problem: format!("{n} is negative"),
            fix: "use zero or a positive whole number".into(),
            ..wrong()
        }),
        (toml::Value::Array(_), toml::Value::Array(items))
            if items.iter().all(toml::Value::is_str) =>
        {
            Ok(value)
        }
        (toml::Value::Array(_), _) => Err(wrong()),
        (expected, actual) if type_name(expected) == type_name(actual) => Ok(value),
        _ => Err(wrong()),
    }
}

/// Parses an environment variable or flag according to the setting's type.
fn parse_text(
    key: &str,
    raw: &str,
    default: &toml::Value,
    origin: &str,
) -> Result<toml::Value, ConfigError> {
    let fail = |problem: String, fix: &str| ConfigError {
        setting: key.into(),
        origin: origin.into(),
        problem,
        fix: fix.into(),
    };
    Ok(match default {
        toml::Value::Integer(_) => {
            let number: u64 = raw.trim().parse().map_err(|_| {
                fail(
                    format!("`{raw}` is not a whole number"),
                    "use digits only, for example 5000",
                )
            })?;
            let number = i64::try_from(number)
                .map_err(|_| fail(format!("{number} is too large"), "use a smaller number"))?;
            toml::Value::Integer(number)
        }
        toml::Value::Boolean(_) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => toml::Value::Boolean(true),
            "false" | "0" | "no" | "off" => toml::Value::Boolean(false),
            _ => {
                return Err(fail(
                    format!("`{raw}` is not true or false"),
                    "use true or false",
                ))
            }
        },
        toml::Value::Array(_) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| toml::Value::String(item.to_owned()))
                .collect(),
        ),
        _ => toml::Value::String(raw.to_owned()),
    })
}

fn render_value(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => format!("\"{text}\""),
        toml::Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(render_value)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

fn unknown_setting(key: &str, origin: &str, known: &BTreeMap<String, toml::Value>) -> ConfigError {
    ConfigError {
        setting: key.into(),
        origin: origin.into(),
        problem: "there is no such setting".into(),
        fix: match suggestion(key, known.keys().map(String::as_str)) {
            Some(close) => {
                format!("did you mean `{close}`? All settings are in docs/configuration.md")
            }
            None => "remove it; all settings are listed in docs/configuration.md".into(),
        },
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The known name closest to `name`, if it is close enough to be a typo.
pub fn suggestion<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    known
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 3).max(2))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (previous + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(current + 1);
            previous = current;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests;

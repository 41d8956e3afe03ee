//! The defaults of every setting: what Basalt does with no configuration
//! at all (the embedded PostgreSQL, local storage, safe limits).

use super::*;

impl Default for RestConfig {
    fn default() -> Self {
        RestConfig {
            schema: "public".into(),
            extra_schemas: Vec::new(),
            max_rows: 1000,
            default_limit: 1000,
            allow_unfiltered_writes: false,
            allow_tx_rollback: false,
            aggregates: false,
            plan: "off".into(),
            idempotency_ttl_secs: 86_400,
            batch_max_operations: 100,
            grant_api_roles: true,
            csv_neutralize_formulas: false,
            max_concurrent_per_caller: 8,
            statement_timeout_ms: 15_000,
        }
    }
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
            search: SearchConfig {
                meilisearch_url: String::new(),
                meilisearch_key: Secret::default(),
                batch_size: 500,
                task_timeout_secs: 30,
                indexes: Vec::new(),
            },
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
            anonymous_sign_ins: false,
            secure_password_change: false,
            reauthentication_window_secs: 24 * 3600,
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
            reauthentication: EmailTemplate {
                subject: "Confirm reauthentication".into(),
                html: "<h2>Confirm reauthentication</h2>\n<p>Enter the code: <strong>{{ token }}</strong></p>\n<p>If you did not ask for this, change your password.</p>\n".into(),
                text: "Confirm reauthentication\n\nEnter the code: {{ token }}\n\nIf you did not ask for this, change your password.\n".into(),
            },
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

impl Default for SearchConfig {
    fn default() -> Self {
        Config::default().search
    }
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

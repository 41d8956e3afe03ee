//! Layering and validation of the configuration, one case a line where possible.

use super::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load(
    file: Option<&str>,
    env_pairs: &[(&str, &str)],
    flags: &[(&str, &str, &str)],
) -> Result<Loaded, ConfigError> {
    Config::load(&Sources {
        file: file.map(|text| ("basalt.toml".to_owned(), text.to_owned())),
        env: env(env_pairs),
        flags: flags
            .iter()
            .map(|(p, f, v)| (p.to_string(), f.to_string(), v.to_string()))
            .collect(),
    })
}

#[test]
fn defaults_are_valid() {
    let loaded = load(None, &[], &[]).unwrap();
    assert_eq!(loaded.config, Config::default());
    assert!(loaded.origins.is_empty());
}

#[test]
fn layers_apply_in_order_defaults_file_env_flags() {
    let file = "http = \"127.0.0.1:9000\"\n[server]\nrequest_timeout_ms = 1000\nbody_limit_bytes = 4096\n[cors]\nallowed_origins = [\"https://a.example\"]\n";
    let loaded = load(
        Some(file),
        &[
            ("BASALT_HTTP", "127.0.0.1:9100"),
            ("BASALT_SERVER_REQUEST_TIMEOUT_MS", "2000"),
        ],
        &[("http", "--http", "127.0.0.1:9200")],
    )
    .unwrap();
    let config = loaded.config;
    assert_eq!(config.http, "127.0.0.1:9200", "flag beats env and file");
    assert_eq!(config.server.request_timeout_ms, 2000, "env beats file");
    assert_eq!(config.server.body_limit_bytes, 4096, "file beats default");
    assert_eq!(config.server.header_read_timeout_ms, 5000, "default stays");
    assert_eq!(config.cors.allowed_origins, vec!["https://a.example"]);
    assert_eq!(loaded.origins["http"], "flag --http");
    assert_eq!(
        loaded.origins["server.request_timeout_ms"],
        "environment variable BASALT_SERVER_REQUEST_TIMEOUT_MS"
    );
    assert_eq!(
        loaded.origins["server.body_limit_bytes"],
        "config file basalt.toml"
    );
}

#[test]
fn environment_parses_lists_booleans_and_nested_groups() {
    let config = load(
        None,
        &[
            (
                "BASALT_CORS_ALLOWED_ORIGINS",
                "https://a.example, http://localhost:3000",
            ),
            ("BASALT_RATE_LIMIT_ENABLED", "false"),
            ("BASALT_RATE_LIMIT_AUTH_PER_IP", "5/1m"),
            ("BASALT_SERVER_TRUSTED_PROXIES", "10.0.0.0/8,127.0.0.1"),
            ("BASALT_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ],
        &[],
    )
    .unwrap()
    .config;
    assert_eq!(
        config.cors.allowed_origins,
        vec!["https://a.example", "http://localhost:3000"]
    );
    assert!(!config.rate_limit.enabled);
    assert_eq!(config.rate_limit.auth.per_ip, "5/1m");
    assert_eq!(config.trusted_proxies().unwrap().len(), 2);
    assert_eq!(config.jwt.secret.expose().len(), 32);
}

#[test]
fn database_url_alias_and_precedence() {
    let plain = load(None, &[("DATABASE_URL", "postgres://a@h/db")], &[]).unwrap();
    assert_eq!(plain.config.database.url.expose(), "postgres://a@h/db");
    let both = load(
        None,
        &[
            ("DATABASE_URL", "postgres://a@h/db"),
            ("BASALT_DATABASE_URL", "postgres://b@h/db"),
        ],
        &[],
    )
    .unwrap();
    assert_eq!(both.config.database.url.expose(), "postgres://b@h/db");
}

/// Each bad input names the setting, where it came from, and a fix.
#[test]
fn validation_errors_name_setting_origin_and_fix() {
    type Case<'a> = (
        Option<&'a str>,
        &'a [(&'a str, &'a str)],
        &'a str,
        &'a str,
        &'a str,
    );
    let cases: &[Case] = &[
        (
            None,
            &[("BASALT_HTTP", "localhost")],
            "http",
            "environment variable BASALT_HTTP",
            "IP:PORT",
        ),
        (
            None,
            &[("BASALT_SERVER_REQUEST_TIMEOUT_MS", "soon")],
            "server.request_timeout_ms",
            "BASALT_SERVER_REQUEST_TIMEOUT_MS",
            "digits",
        ),
        (
            None,
            &[("BASALT_SERVER_REQUEST_TIMEOUT_MS", "5")],
            "server.request_timeout_ms",
            "BASALT_SERVER_REQUEST_TIMEOUT_MS",
            "from 100",
        ),
        (
            None,
            &[("BASALT_JWT_SECRET", "short")],
            "jwt.secret",
            "BASALT_JWT_SECRET",
            "openssl rand",
        ),
        (
            None,
            &[("BASALT_DATABASE_POOL_SIZE", "0")],
            "database.pool_size",
            "BASALT_DATABASE_POOL_SIZE",
            "from 1",
        ),
        (
            None,
            &[("BASALT_DATABASE_URL", "mysql://x")],
            "database.url",
            "BASALT_DATABASE_URL",
            "postgres://",
        ),
        (
            None,
            &[("BASALT_DATABASE_RECYCLING", "sometimes")],
            "database.recycling",
            "BASALT_DATABASE_RECYCLING",
            "verified",
        ),
        (
            None,
            &[("BASALT_RATE_LIMIT_ENABLED", "maybe")],
            "rate_limit.enabled",
            "BASALT_RATE_LIMIT_ENABLED",
            "true or false",
        ),
        (
            None,
            &[("BASALT_RATE_LIMIT_REST_PER_IP", "lots")],
            "rate_limit.rest.per_ip",
            "BASALT_RATE_LIMIT_REST_PER_IP",
            "<count>/<period>",
        ),
        (
            None,
            &[("BASALT_CORS_ALLOWED_ORIGINS", "https://a.example/path")],
            "cors.allowed_origins",
            "BASALT_CORS_ALLOWED_ORIGINS",
            "without a path",
        ),
        (
            None,
            &[("BASALT_SERVER_TRUSTED_PROXIES", "10.0.0.0/99")],
            "server.trusted_proxies",
            "BASALT_SERVER_TRUSTED_PROXIES",
            "CIDR",
        ),
        (
            None,
            &[("BASALT_LOG_FORMAT", "xml")],
            "log.format",
            "BASALT_LOG_FORMAT",
            "json",
        ),
        (
            None,
            &[("BASALT_SECURITY_FRAME_OPTIONS", "ALLOW")],
            "security.frame_options",
            "BASALT_SECURITY_FRAME_OPTIONS",
            "SAMEORIGIN",
        ),
        (
            Some("[server]\nrequest_timout_ms = 10\n"),
            &[],
            "server.request_timout_ms",
            "config file basalt.toml",
            "server.request_timeout_ms",
        ),
        (
            Some("[server]\nrequest_timeout_ms = \"ten\"\n"),
            &[],
            "server.request_timeout_ms",
            "config file basalt.toml",
            "a whole number",
        ),
        (
            Some("[server]\nrequest_timeout_ms = -1\n"),
            &[],
            "server.request_timeout_ms",
            "config file basalt.toml",
            "positive",
        ),
        (
            Some("[cors]\nallowed_origins = \"*\"\n"),
            &[],
            "cors.allowed_origins",
            "config file basalt.toml",
            "a list of strings",
        ),
        (
            Some("[server\nx=1"),
            &[],
            "config file",
            "config file basalt.toml",
            "line 1",
        ),
    ];
    for (file, env_pairs, setting, origin, fix) in cases {
        let error = load(*file, env_pairs, &[]).expect_err(setting);
        assert_eq!(error.setting, *setting, "{error}");
        assert!(error.origin.contains(origin), "origin of {error}");
        let text = error.to_string();
        assert!(text.contains(fix), "`{text}` should mention `{fix}`");
    }
}

#[test]
fn flag_errors_name_the_flag() {
    let error = load(None, &[], &[("http", "--http", "nowhere")]).unwrap_err();
    assert_eq!(error.origin, "flag --http");
}

#[test]
fn unknown_basalt_environment_variables_are_warned_about() {
    let loaded = load(
        None,
        &[
            ("BASALT_SERVER_REQUEST_TIMEOUT", "1"),
            ("BASALT_CONFIG", "x"),
            ("HOME", "/"),
        ],
        &[],
    )
    .unwrap();
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(loaded.warnings[0].contains("BASALT_SERVER_REQUEST_TIMEOUT_MS"));
}

#[test]
fn secrets_never_show() {
    let config = load(
        None,
        &[
            (
                "BASALT_JWT_SECRET",
                "super-secret-super-secret-super-secret",
            ),
            (
                "DATABASE_URL",
                "postgres://app:hunter2hunter2@db.internal:5432/app?sslmode=require&password=other",
            ),
        ],
        &[],
    )
    .unwrap()
    .config;
    let shown = config.redacted_toml();
    let debug = format!("{config:?}");
    for text in [&shown, &debug] {
        assert!(!text.contains("super-secret"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("other"), "{text}");
    }
    assert!(
        shown.contains(
            "postgres://app:<redacted>@db.internal:5432/app?sslmode=require&password=<redacted>"
        ),
        "{shown}"
    );
    assert_eq!(
        redact_url("host=db user=app password=x dbname=app"),
        "host=db user=app password=<redacted> dbname=app"
    );
    assert_eq!(redact_url("postgres://app@db/app"), "postgres://app@db/app");
    // The redacted output is itself a valid config file (secrets aside).
    let reparsed: toml::Table = shown.parse().unwrap();
    assert!(reparsed.contains_key("rate_limit"));
}

#[test]
fn every_setting_has_an_environment_name_listed_in_the_docs() {
    let docs = include_str!("../../../../docs/configuration.md");
    let all = settings();
    assert!(all.len() > 60);
    for setting in all {
        assert!(
            docs.contains(&format!("`{}`", setting.env)),
            "docs/configuration.md lacks {}",
            setting.env
        );
        assert!(
            docs.contains(&format!("`{}`", setting.path)),
            "docs/configuration.md lacks {}",
            setting.path
        );
    }
}

#[test]
fn suggestions_catch_typos_only() {
    let known = ["server.request_timeout_ms", "http"];
    assert_eq!(
        suggestion("server.request_timout_ms", known.into_iter()),
        Some("server.request_timeout_ms")
    );
    assert_eq!(suggestion("completely.different", known.into_iter()), None);
}

#[test]
fn roles_and_policies_can_be_declared_in_the_file() {
    let file = r#"
[[authz.roles]]
name = "editor"
parents = ["authenticated"]

[[authz.policies]]
subject = "editor"
object = "table:public.posts"
action = "update"
columns = ["title"]

[[authz.policies]]
subject = "authenticated"
object = "table:public.posts"
action = "select"
condition = "owner=eq.{auth.uid}"
"#;
    let config = load(Some(file), &[], &[]).unwrap().config;
    assert_eq!(config.authz.roles[0].parents, vec!["authenticated"]);
    assert_eq!(config.authz.policies.len(), 2);
    assert_eq!(
        config.authz.policies[1].condition.as_deref(),
        Some("owner=eq.{auth.uid}")
    );
    assert!(
        settings().iter().all(|s| s.path != "authz.policies"),
        "no environment variable for lists of tables"
    );

    let cases = [
        ("[[authz.roles]]\nname = \"Bad\"\n", "name"),
        ("[[authz.roles]]\nname = \"a\"\nparents = [\"ghost\"]\n", "ghost"),
        ("[[authz.policies]]\nsubject = \"ghost\"\nobject = \"table:x\"\naction = \"select\"\n", "ghost"),
        ("[[authz.policies]]\nsubject = \"anon\"\nobject = \"table:x\"\naction = \"select\"\ncondition = \"a=bad.1\"\n", "condition"),
        ("[[authz.policies]]\nsubject = \"anon\"\nobject = \"table:x\"\naction = \"fly\"\n", "action"),
        ("[authz]\npolicies = \"all\"\n", "list of tables"),
    ];
    for (file, mention) in cases {
        let error = load(Some(file), &[], &[]).unwrap_err();
        assert!(error.to_string().contains(mention), "{file}: {error}");
        assert!(
            error.origin.contains("config file") || error.setting.starts_with("authz"),
            "{error}"
        );
    }
}

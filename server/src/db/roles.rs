//! Least privilege in the database: the login role of the data API's pool
//! and the privileges of the API roles.
//!
//! Basalt's own connection (migrations, auth, storage metadata, the feed,
//! jobs) is privileged. Requests that run app SQL — a view, a trigger, an
//! RPC function, a caller's filter — run on a second pool logged in as
//! `database.api_role` (`authenticator`): NOINHERIT, no attribute, and a
//! member of the API roles only (`authz.db_role_anon`,
//! `authz.db_role_authenticated`, `authz.db_role_service`). SQL inside a
//! request that calls `set_config('role', …)`, `SET ROLE` or `RESET ROLE`
//! can reach those roles and the login role itself, nothing more.
//!
//! With `rest.grant_api_roles` (the default) the API roles also get
//! privileges on the exposed schemas, so that a table made with `psql` works
//! through the data API once a Basalt policy allows it.

use anyhow::{bail, Context};
use basalt_core::config::Config;
use basalt_core::rest::quote;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;
use tokio_postgres::Client;

/// Basalt's own schemas: never granted to the API roles automatically, even
/// when exposed through `rest.extra_schemas`.
const OWN_SCHEMAS: [&str; 3] = ["basalt", "auth", "storage"];

/// The roles data requests run as, with the settings that name them.
pub fn api_roles(config: &Config) -> [(&'static str, &str); 3] {
    [
        ("authz.db_role_anon", &config.authz.db_role_anon),
        (
            "authz.db_role_authenticated",
            &config.authz.db_role_authenticated,
        ),
        ("authz.db_role_service", &config.authz.db_role_service),
    ]
}

/// The API login role's password: configured, or derived from the JWT secret
/// (every replica shares that secret, so they agree without storing it).
pub fn api_password(config: &Config, jwt_secret: &str) -> String {
    if !config.database.api_password.is_empty() {
        return config.database.api_password.expose().to_owned();
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(jwt_secret.as_bytes()).expect("any key length");
    mac.update(b"basalt database.api_role password");
    hex::encode(mac.finalize().into_bytes())
}

/// How the data API's pool connects: as Basalt's own connection, but logged
/// in as the API role.
pub fn api_connection(
    privileged: &tokio_postgres::Config,
    config: &Config,
    password: &str,
) -> tokio_postgres::Config {
    let mut pg = privileged.clone();
    pg.user(&config.database.api_role).password(password);
    pg
}

/// Makes the API login role and the privileges right, on Basalt's own
/// (privileged) connection. Several replicas, or several databases of one
/// cluster, may do this at once: roles are cluster-wide, so a statement that
/// loses a race is retried.
pub async fn provision(
    client: &Client,
    config: &Config,
    api: &tokio_postgres::Config,
    tls: &super::pool::Tls,
    password: &str,
) -> anyhow::Result<()> {
    for (setting, role) in api_roles(config) {
        if !role_exists(client, role).await? {
            bail!(
                "{setting} = `{role}`: PostgreSQL has no such role; create it (CREATE ROLE {role} NOLOGIN) or fix the setting"
            );
        }
    }
    let managed = config.database.api_password.is_empty();
    let mut attempt = 0;
    loop {
        let done = async {
            provision_once(client, config, api, tls, password, managed).await?;
            check_api_role(client, config).await?;
            grant_api_roles(client, config).await
        };
        match done.await {
            Err(error) if attempt < 5 && is_race(&error) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            done => return done,
        }
    }
}

async fn role_exists(client: &Client, role: &str) -> anyhow::Result<bool> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
            &[&role],
        )
        .await?
        .get(0))
}

/// A concurrent change of the same catalog row by another session.
fn is_race(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(|e| e.code())
        .is_some_and(|code| matches!(code.code(), "XX000" | "23505" | "42710" | "40001" | "40P01"))
}

async fn provision_once(
    client: &Client,
    config: &Config,
    api: &tokio_postgres::Config,
    tls: &super::pool::Tls,
    password: &str,
    managed: bool,
) -> anyhow::Result<()> {
    let role = &config.database.api_role;
    if managed && api.connect(tls.clone()).await.is_err() {
        // Missing, or its password or LOGIN is not what Basalt set.
        let verb = if role_exists(client, role).await? {
            "ALTER"
        } else {
            "CREATE"
        };
        let sql: String = client
            .query_one(
                &format!("SELECT format('{verb} ROLE %I LOGIN NOINHERIT PASSWORD %L', $1::text, $2::text)"),
                &[role, &password],
            )
            .await?
            .get(0);
        client.batch_execute(&sql).await.with_context(|| {
            format!(
                "cannot {} the database role `{role}` (database.api_role); Basalt's database user needs CREATEROLE, or create it yourself and set database.api_password",
                verb.to_lowercase()
            )
        })?;
    }
    let login = quote(role);
    client
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA basalt, auth, basalt_search TO {login};
             GRANT EXECUTE ON FUNCTION basalt.idempotency_claim(text, text, double precision),
                 basalt.idempotency_store(text, integer, jsonb, text) TO {login}"
        ))
        .await?;
    for (_, member_of) in api_roles(config) {
        // Searches name the text search configurations kept there.
        client
            .batch_execute(&format!(
                "GRANT USAGE ON SCHEMA basalt_search TO {}",
                quote(member_of)
            ))
            .await?;
        let granted: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_auth_members m
                    JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
                    WHERE r.rolname = $1 AND u.rolname = $2)",
                &[&member_of, role],
            )
            .await?
            .get(0);
        if !granted && managed {
            client
                .batch_execute(&format!("GRANT {} TO {login}", quote(member_of)))
                .await?;
        } else if !granted {
            bail!(
                "database.api_role `{role}` is not a member of `{member_of}`: GRANT {member_of} TO {role}"
            );
        }
    }
    Ok(())
}

/// Refuses to start when the API login role could become more than the API
/// roles: a superuser or any role attribute, or membership (direct or
/// through other roles) of anything else.
async fn check_api_role(client: &Client, config: &Config) -> anyhow::Result<()> {
    let role = &config.database.api_role;
    let row = client
        .query_one(
            "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls,
                    rolinherit
             FROM pg_roles WHERE rolname = $1",
            &[role],
        )
        .await?;
    let (privileged, inherits): (bool, bool) = (row.get(0), row.get(1));
    if privileged || inherits {
        bail!(
            "database.api_role `{role}` must be a plain login role: NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS NOINHERIT"
        );
    }
    let allowed: Vec<&str> = api_roles(config).iter().map(|(_, r)| *r).collect();
    let reachable: Vec<String> = client
        .query(
            "WITH RECURSIVE reach(oid) AS (
                 SELECT m.roleid FROM pg_auth_members m JOIN pg_roles u ON u.oid = m.member
                 WHERE u.rolname = $1
                 UNION
                 SELECT m.roleid FROM pg_auth_members m JOIN reach ON m.member = reach.oid)
             SELECT r.rolname::text FROM reach JOIN pg_roles r ON r.oid = reach.oid",
            &[role],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if let Some(other) = reachable.iter().find(|r| !allowed.contains(&r.as_str())) {
        bail!(
            "database.api_role `{role}` can become `{other}` (a role membership): it may only become {}; revoke the membership",
            allowed.join(", ")
        );
    }
    for (setting, api_role) in api_roles(config) {
        let superuser: bool = client
            .query_one(
                "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication FROM pg_roles WHERE rolname = $1",
                &[&api_role],
            )
            .await?
            .get(0);
        if superuser {
            bail!("{setting} = `{api_role}` has superuser or role/database creation rights: data requests must not");
        }
    }
    Ok(())
}

/// Zero-setup privileges on the exposed schemas (see the module doc).
async fn grant_api_roles(client: &Client, config: &Config) -> anyhow::Result<()> {
    let mut grants: Vec<(&str, &str, bool)> = Vec::new();
    let mut existing = Vec::new();
    for schema in std::iter::once(&config.rest.schema).chain(&config.rest.extra_schemas) {
        let exists: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                &[schema],
            )
            .await?
            .get(0);
        // Statements are prepared as the login role, before the switch:
        // it needs USAGE to resolve names, and nothing else.
        grants.push((schema, &config.database.api_role, true));
        if config.rest.grant_api_roles && !OWN_SCHEMAS.contains(&schema.as_str()) {
            for (_, role) in api_roles(config) {
                grants.push((schema, role, false));
            }
        }
        if exists {
            existing.push(schema.as_str());
        }
    }
    // What the grant trigger reads (a schema created later is granted when
    // it is made), replaced in one statement.
    let names: Vec<&str> = grants.iter().map(|g| g.0).collect();
    let roles: Vec<&str> = grants.iter().map(|g| g.1).collect();
    let schema_only: Vec<bool> = grants.iter().map(|g| g.2).collect();
    client
        .execute(
            "WITH wanted AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bool[]) AS w(s, r, o)),
             gone AS (DELETE FROM basalt.api_grants g
                      WHERE NOT EXISTS (SELECT 1 FROM wanted
                                        WHERE s = g.schema_name AND r = g.role_name AND o = g.schema_only))
             INSERT INTO basalt.api_grants SELECT s, r, o FROM wanted ON CONFLICT DO NOTHING",
            &[&names, &roles, &schema_only],
        )
        .await?;
    for (schema, role, schema_only) in grants {
        if !existing.contains(&schema) {
            continue;
        }
        let (schema, role) = (quote(schema), quote(role));
        let mut statements = format!("GRANT USAGE ON SCHEMA {schema} TO {role};");
        if !schema_only {
            statements.push_str(&format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role};
                 GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role};
                 GRANT EXECUTE ON ALL ROUTINES IN SCHEMA {schema} TO {role};
                 ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role};
                 ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT USAGE, SELECT ON SEQUENCES TO {role};
                 ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT EXECUTE ON ROUTINES TO {role};"
            ));
        }
        client.batch_execute(&statements).await?;
    }
    Ok(())
}

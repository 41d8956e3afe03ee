//! Config as code: roles and policies declared in the config file are made
//! true in the database at start-up, idempotently. A declared policy keeps the
//! same id across restarts (derived from its content); declarations removed
//! from the file are removed from the database; the API cannot change them.

use anyhow::Context;
use basalt_core::config::AuthzConfig;
use deadpool_postgres::Pool;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Serializes reconciliation between replicas starting together.
const RECONCILE_LOCK: i64 = 0x6261_7361_6c74_0002;

/// The id of a declared policy: from what it grants, not its description.
fn policy_id(declaration: &basalt_core::config::PolicyDecl) -> Uuid {
    let canonical = serde_json::json!([
        declaration.subject,
        declaration.object,
        declaration.action,
        declaration.condition,
        declaration.columns
    ])
    .to_string();
    let digest = Sha256::digest(canonical.as_bytes());
    uuid::Builder::from_random_bytes(digest[..16].try_into().expect("16 bytes")).into_uuid()
}

pub async fn reconcile(pool: &Pool, config: &AuthzConfig) -> anyhow::Result<()> {
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&RECONCILE_LOCK])
        .await?;
    let names: Vec<&str> = config.roles.iter().map(|r| r.name.as_str()).collect();
    for role in &config.roles {
        transaction
            .execute(
                "INSERT INTO basalt.roles (name, description, source) VALUES ($1, $2, 'config')
                 ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description, source = 'config'",
                &[&role.name, &role.description],
            )
            .await
            .with_context(|| format!("declared role {}", role.name))?;
    }
    // A role gone from the file takes every policy naming it along.
    transaction
        .execute(
            "DELETE FROM basalt.policies WHERE subject IN
                (SELECT name FROM basalt.roles WHERE source = 'config' AND NOT (name = ANY($1)))",
            &[&names],
        )
        .await?;
    transaction
        .execute(
            "DELETE FROM basalt.roles WHERE source = 'config' AND NOT (name = ANY($1))",
            &[&names],
        )
        .await?;
    transaction
        .execute(
            "DELETE FROM basalt.role_parents WHERE source = 'config'",
            &[],
        )
        .await?;
    for role in &config.roles {
        for parent in &role.parents {
            transaction
                .execute(
                    "INSERT INTO basalt.role_parents (role, parent, source) VALUES ($1, $2, 'config')
                     ON CONFLICT (role, parent) DO UPDATE SET source = 'config'",
                    &[&role.name, parent],
                )
                .await?;
        }
    }
    let ids: Vec<Uuid> = config.policies.iter().map(policy_id).collect();
    for (policy, id) in config.policies.iter().zip(&ids) {
        transaction
            .execute(
                "INSERT INTO basalt.policies (id, subject, object, action, condition, columns, description, source)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'config')
                 ON CONFLICT (id) DO UPDATE SET description = EXCLUDED.description",
                &[id, &policy.subject, &policy.object, &policy.action, &policy.condition, &policy.columns, &policy.description],
            )
            .await?;
    }
    transaction
        .execute(
            "DELETE FROM basalt.policies WHERE source = 'config' AND NOT (id = ANY($1))",
            &[&ids],
        )
        .await?;
    transaction
        .execute("SELECT pg_notify('basalt_policies', '')", &[])
        .await?;
    transaction.commit().await?;
    if !config.roles.is_empty() || !config.policies.is_empty() {
        tracing::info!(
            roles = config.roles.len(),
            policies = config.policies.len(),
            "declared authorization reconciled"
        );
    }
    Ok(())
}

//! Every statement of the authorization admin API, over `basalt.roles`,
//! `basalt.role_parents`, `basalt.user_roles`, `basalt.policies` (and the
//! catalog and `auth.users` for checks). Handlers decide and shape answers;
//! they run no SQL text themselves. A change runs these inside one
//! transaction that [`super::commit_change`] audits, announces and commits.

use super::{taken_or_failed, PolicyBody};
use crate::error::HttpError;
use deadpool_postgres::GenericClient;
use serde_json::Value;
use uuid::Uuid;

/// A policy as JSON, built by PostgreSQL from `basalt.policies`.
const POLICY_JSON: &str =
    "jsonb_build_object('id', id, 'subject', subject, 'object', object, 'action', action,
    'condition', condition, 'columns', columns, 'description', description, 'source', source,
    'created_at', created_at)";

type Result<T> = std::result::Result<T, HttpError>;

fn column<T: for<'a> tokio_postgres::types::FromSql<'a>>(row: tokio_postgres::Row) -> T {
    row.get(0)
}

pub async fn roles(client: &impl GenericClient) -> Result<Vec<Value>> {
    Ok(client
        .query(
            "SELECT jsonb_build_object('name', r.name, 'description', r.description, 'source', r.source,
                    'parents', coalesce((SELECT jsonb_agg(p.parent ORDER BY p.parent) FROM basalt.role_parents p WHERE p.role = r.name), '[]'))
             FROM basalt.roles r ORDER BY r.name",
            &[],
        )
        .await?
        .into_iter()
        .map(column)
        .collect())
}

/// Where a role comes from (`builtin`, `config` or `api`), its row locked.
pub async fn role_source(client: &impl GenericClient, name: &str) -> Result<Option<String>> {
    Ok(client
        .query_opt(
            "SELECT source FROM basalt.roles WHERE name = $1 FOR UPDATE",
            &[&name],
        )
        .await?
        .map(column))
}

pub async fn role_exists(client: &impl GenericClient, name: &str) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM basalt.roles WHERE name = $1)",
            &[&name],
        )
        .await?
        .get(0))
}

pub async fn insert_role(client: &impl GenericClient, name: &str, description: &str) -> Result<()> {
    client
        .execute(
            "INSERT INTO basalt.roles (name, description) VALUES ($1, $2)",
            &[&name, &description],
        )
        .await
        .map_err(|e| taken_or_failed(e, &format!("role {name}")))?;
    Ok(())
}

pub async fn describe_role(
    client: &impl GenericClient,
    name: &str,
    description: &str,
) -> Result<()> {
    client
        .execute(
            "UPDATE basalt.roles SET description = $2 WHERE name = $1",
            &[&name, &description],
        )
        .await?;
    Ok(())
}

/// Deletes a role and the policies whose subject it is (its parents and
/// assignments go by cascade).
pub async fn delete_role(client: &impl GenericClient, name: &str) -> Result<()> {
    client
        .execute("DELETE FROM basalt.policies WHERE subject = $1", &[&name])
        .await?;
    client
        .execute("DELETE FROM basalt.roles WHERE name = $1", &[&name])
        .await?;
    Ok(())
}

/// Whether `parent` already inherits from `role` (so `role → parent` would
/// close a loop).
pub async fn inherits(client: &impl GenericClient, parent: &str, role: &str) -> Result<bool> {
    Ok(client
        .query_one(
            "WITH RECURSIVE up(name) AS (SELECT $1::text UNION SELECT p.parent FROM basalt.role_parents p JOIN up ON p.role = up.name)
             SELECT EXISTS (SELECT 1 FROM up WHERE name = $2)",
            &[&parent, &role],
        )
        .await?
        .get(0))
}

pub async fn insert_parent(client: &impl GenericClient, role: &str, parent: &str) -> Result<()> {
    client
        .execute(
            "INSERT INTO basalt.role_parents (role, parent) VALUES ($1, $2)",
            &[&role, &parent],
        )
        .await
        .map_err(|e| taken_or_failed(e, &format!("{role} → {parent}")))?;
    Ok(())
}

pub async fn parent_source(
    client: &impl GenericClient,
    role: &str,
    parent: &str,
) -> Result<Option<String>> {
    Ok(client
        .query_opt(
            "SELECT source FROM basalt.role_parents WHERE role = $1 AND parent = $2",
            &[&role, &parent],
        )
        .await?
        .map(column))
}

pub async fn delete_parent(client: &impl GenericClient, role: &str, parent: &str) -> Result<()> {
    client
        .execute(
            "DELETE FROM basalt.role_parents WHERE role = $1 AND parent = $2",
            &[&role, &parent],
        )
        .await?;
    Ok(())
}

pub async fn user_roles(client: &impl GenericClient, user: Uuid) -> Result<Vec<String>> {
    Ok(client
        .query(
            "SELECT role FROM basalt.user_roles WHERE user_id = $1 ORDER BY role",
            &[&user],
        )
        .await?
        .into_iter()
        .map(column)
        .collect())
}

pub async fn assign(client: &impl GenericClient, user: Uuid, role: &str) -> Result<()> {
    client
        .execute(
            "INSERT INTO basalt.user_roles (user_id, role) VALUES ($1, $2)",
            &[&user, &role],
        )
        .await
        .map_err(|e| taken_or_failed(e, &format!("role {role}")))?;
    Ok(())
}

/// Whether the user had the role.
pub async fn unassign(client: &impl GenericClient, user: Uuid, role: &str) -> Result<bool> {
    Ok(client
        .execute(
            "DELETE FROM basalt.user_roles WHERE user_id = $1 AND role = $2",
            &[&user, &role],
        )
        .await?
        > 0)
}

pub async fn policies(client: &impl GenericClient) -> Result<Vec<Value>> {
    Ok(client
        .query(
            &format!("SELECT {POLICY_JSON} FROM basalt.policies ORDER BY created_at, id"),
            &[],
        )
        .await?
        .into_iter()
        .map(column)
        .collect())
}

pub async fn policy(client: &impl GenericClient, id: Uuid) -> Result<Option<Value>> {
    Ok(client
        .query_opt(
            &format!("SELECT {POLICY_JSON} FROM basalt.policies WHERE id = $1"),
            &[&id],
        )
        .await?
        .map(column))
}

/// Where a policy comes from (`config` or `api`), its row locked.
pub async fn policy_source(client: &impl GenericClient, id: Uuid) -> Result<Option<String>> {
    Ok(client
        .query_opt(
            "SELECT source FROM basalt.policies WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?
        .map(column))
}

pub async fn insert_policy(client: &impl GenericClient, body: &PolicyBody) -> Result<Value> {
    Ok(client
        .query_one(
            &format!(
                "INSERT INTO basalt.policies (subject, object, action, condition, columns, description)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING {POLICY_JSON}"
            ),
            &[&body.subject, &body.object, &body.action, &body.condition, &body.columns, &body.description],
        )
        .await?
        .get(0))
}

pub async fn update_policy(
    client: &impl GenericClient,
    id: Uuid,
    body: &PolicyBody,
) -> Result<Value> {
    Ok(client
        .query_one(
            &format!(
                "UPDATE basalt.policies SET subject = $2, object = $3, action = $4, condition = $5, columns = $6,
                        description = $7
                 WHERE id = $1 RETURNING {POLICY_JSON}"
            ),
            &[&id, &body.subject, &body.object, &body.action, &body.condition, &body.columns, &body.description],
        )
        .await?
        .get(0))
}

pub async fn delete_policy(client: &impl GenericClient, id: Uuid) -> Result<()> {
    client
        .execute("DELETE FROM basalt.policies WHERE id = $1", &[&id])
        .await?;
    Ok(())
}

/// What the explainer and role assignments read of a user (their role,
/// address and metadata), from auth's table.
pub async fn user_record(client: &impl GenericClient, id: Uuid) -> Result<Option<Value>> {
    Ok(client
        .query_opt(
            "SELECT jsonb_build_object('role', role, 'email', email,
                    'app_metadata', raw_app_meta_data, 'user_metadata', raw_user_meta_data)
             FROM auth.users WHERE id = $1",
            &[&id],
        )
        .await?
        .map(column))
}

/// A table's columns and their types, from the catalog (empty when there is
/// no such table).
pub async fn table_columns(
    client: &impl GenericClient,
    schema: &str,
    table: &str,
) -> Result<Vec<(String, String)>> {
    Ok(client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&schema, &table],
        )
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}

/// Tells every replica's listener that the policies changed (delivered at commit).
pub async fn announce(client: &impl GenericClient) -> Result<()> {
    client
        .execute("SELECT pg_notify('basalt_policies', '')", &[])
        .await?;
    Ok(())
}

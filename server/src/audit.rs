//! The audit log (`auth.audit_log`): who did what to whom, written in the
//! transaction of the change itself. Auth, authz and schema changes use it.

use crate::error::HttpError;
use deadpool_postgres::GenericClient;
use serde_json::Value;
use std::net::IpAddr;
use uuid::Uuid;

/// Who did something, for the audit log.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub id: Option<Uuid>,
    pub role: &'a str,
    pub ip: IpAddr,
}

pub async fn audit(
    client: &impl GenericClient,
    event: &str,
    actor: Actor<'_>,
    target: Option<Uuid>,
    details: Value,
) -> Result<(), HttpError> {
    client
        .execute(
            "INSERT INTO auth.audit_log (event, actor_id, actor_role, target_user_id, ip, details) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&event, &actor.id, &actor.role, &target, &actor.ip, &details],
        )
        .await
        ?;
    Ok(())
}

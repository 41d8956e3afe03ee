//! Acting as the caller inside a data transaction, so PostgreSQL's row-level
//! security applies as a second layer behind the policy engine: the
//! transaction switches from the data API's login role (`db/roles.rs`) to the
//! caller's database role and exposes the JWT claims to `auth.uid()`,
//! `auth.role()` and `auth.jwt()`. All are set with `set_config(…, true)`, so
//! they end with the transaction, and the role name travels as a bound
//! parameter, never as SQL text.

use basalt_core::config::AuthzConfig;

/// The database role a request acts as: the configured role for anonymous or
/// signed-in callers (service_role requests act as `authz.db_role_service`).
pub fn database_role(config: &AuthzConfig, signed_in: bool) -> &str {
    if signed_in {
        &config.db_role_authenticated
    } else {
        &config.db_role_anon
    }
}

/// Makes the rest of the transaction run as `$2` (the role) with the claims
/// `$1` visible to RLS, and its statements limited to `$3` milliseconds
/// (`0`: no limit).
pub const ACT_AS: &str = "SELECT set_config('request.jwt.claims', $1, true), set_config('role', $2, true), set_config('statement_timeout', $3, true)";

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

/// [`ACT_AS`], and the `search_path` back to `$4`, the connection's own (a
/// committed write whose SQL ran `SET search_path` changed it for the session).
pub const ACT_AS_ON_API_CONNECTION: &str = "SELECT set_config('request.jwt.claims', $1, true), set_config('role', $2, true), set_config('statement_timeout', $3, true), set_config('search_path', $4, true)";

/// Sets an API key's session on a data API connection (`rest/tx.rs`): the
/// role `$2`, the claims `$1` and the statement timeout `$3` for the session
/// (not the transaction), transactions read-only unless begun `READ WRITE`,
/// and the connection's own `search_path` (`$4`) back. Answers the [`SESSION_SETTINGS`] settings as PostgreSQL
/// then reports them, in the order [`in_session`] reads them back.
pub const SESSION_SETUP: &str = "SELECT set_config('role', $2, false), set_config('request.jwt.claims', $1, false), set_config('statement_timeout', $3, false), set_config('default_transaction_read_only', 'on', false), set_config('search_path', $4, false)";

/// How many settings [`SESSION_SETUP`] answers and [`in_session`] appends.
pub const SESSION_SETTINGS: usize = 5;

/// A read's statement with the session's settings as they are once it has
/// run appended to its row: the outer select list is computed after the
/// inner statement produced its row, so any change made by SQL the
/// statement ran (a function, a view) shows.
pub fn in_session(sql: &str) -> String {
    format!(
        "SELECT s.*, current_setting('role'), current_setting('request.jwt.claims', true), \
         current_setting('statement_timeout'), current_setting('default_transaction_read_only'), \
         current_setting('search_path') FROM ({sql}) s"
    )
}

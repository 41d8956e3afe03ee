//! The error catalogue: every error any Basalt API returns, with its HTTP status,
//! its stable code and a default message and hint. Codes are never reused once
//! retired; `docs/errors.md` lists them all (a test keeps the two in step).

use serde::Serialize;

macro_rules! error_codes {
    ($( $variant:ident => ($status:expr, $code:expr, $upstream:expr, $message:expr, $hint:expr) ),+ $(,)?) => {
        /// One entry of the catalogue.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $( $variant ),+ }

        impl ErrorCode {
            /// Every code, in catalogue order.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant ),+ ];

            /// The HTTP status this error is sent with.
            pub fn status(self) -> u16 {
                match self { $( ErrorCode::$variant => $status ),+ }
            }

            /// The stable, machine-readable name sent as `code`.
            pub fn code(self) -> &'static str {
                match self { $( ErrorCode::$variant => $code ),+ }
            }

            /// The code a surface that follows Supabase sends instead (on
            /// `/rest/v1`: PostgREST's `PGRST…` or the SQLSTATE PostgreSQL
            /// would raise), when there is one.
            pub fn upstream(self) -> Option<&'static str> {
                match self { $( ErrorCode::$variant => $upstream ),+ }
            }

            /// The message used when the caller has nothing more specific to say.
            pub fn default_message(self) -> &'static str {
                match self { $( ErrorCode::$variant => $message ),+ }
            }

            /// What the client can do next.
            pub fn default_hint(self) -> &'static str {
                match self { $( ErrorCode::$variant => $hint ),+ }
            }
        }
    };
}

error_codes! {
    InvalidRequest => (400, "invalid_request", Some("PGRST100"), "The request is malformed.", "Check the request against the API documentation."),
    InvalidJson => (400, "invalid_json", Some("PGRST102"), "The request body is not valid JSON for this endpoint.", "Send a JSON body with the documented fields and Content-Type: application/json."),
    SqlError => (400, "sql_error", None, "The SQL statement failed.", "Read `details` for PostgreSQL's own message and fix the statement."),
    InvalidObjectName => (400, "invalid_object_name", None, "The object path is not allowed.", "Use a relative path of segments separated by `/`: no `.` or `..` segments, backslashes, drive letters, control characters or encoded forms of these, at most 1024 bytes."),
    InvalidBucketName => (400, "invalid_bucket_name", None, "The bucket id is not allowed.", "Use 1-63 lowercase letters, digits, `.`, `_` or `-`, starting with a letter or digit, and not a reserved word (list, sign, public, info, move, copy, upload, authenticated)."),
    InvalidSignature => (400, "invalid_signature", None, "The signed URL's token is invalid for this object.", "Use the URL exactly as it was signed; ask for a new one."),
    SignedUrlExpired => (400, "signed_url_expired", None, "The signed URL has expired.", "Ask for a new signed URL."),
    ValidationFailed => (400, "validation_failed", None, "A field of the request is missing or invalid.", "Read `details` for the field and fix it."),
    InvalidCredentials => (400, "invalid_credentials", None, "Invalid login credentials", "Check the email address and password."),
    EmailNotConfirmed => (400, "email_not_confirmed", None, "Email not confirmed", "Follow the link in the confirmation email first."),
    UnsupportedGrantType => (400, "unsupported_grant_type", None, "This grant_type is not supported.", "Use grant_type=password or grant_type=refresh_token."),
    RefreshTokenNotFound => (400, "refresh_token_not_found", None, "Invalid Refresh Token: Refresh Token Not Found", "Sign in again."),
    RefreshTokenAlreadyUsed => (400, "refresh_token_already_used", None, "Invalid Refresh Token: Already Used", "Sign in again. A reused refresh token may mean it was stolen."),
    EmailNotConfigured => (400, "email_not_configured", None, "This server sends no email.", "Set smtp.host (BASALT_SMTP_HOST) to enable recovery, magic links and email changes."),
    InvalidQuery => (400, "invalid_query", Some("PGRST100"), "The query string is not valid for this table.", "Check the query string against the data API documentation (docs/data-api.md)."),
    InvalidValue => (400, "invalid_value", Some("22P02"), "A value does not fit its column's type.", "Read `details` for the column and the value to fix."),
    NotNullViolation => (400, "not_null_violation", Some("23502"), "A required column was left empty.", "PostgreSQL names the column in `message` (or `details`): send a value for it."),
    CheckViolation => (400, "check_violation", Some("23514"), "A value breaks a check constraint of the table.", "PostgreSQL names the constraint in `message` (or `details`)."),
    MaxAffectedExceeded => (400, "max_affected_exceeded", Some("PGRST124"), "The write would change more rows than Prefer: max-affected allows; nothing was changed.", "Narrow the filter, or raise max-affected."),
    InvalidSearch => (400, "invalid_search", None, "The search request is not valid for this index.", "Check the parameters against docs/search.md; `details` names the one to fix."),
    InvalidSearchIndex => (400, "invalid_search_index", None, "The search index declaration is not valid.", "Check the declaration against docs/search.md; `details` names the field to fix."),
    SearchFilterUnsupported => (400, "search_filter_unsupported", None, "The index's backend cannot run this filter.", "Use operators the backend has (see `details`), or the postgres backend."),
    InvalidCursor => (400, "invalid_cursor", None, "The pagination cursor is not valid for this request.", "Pass back the cursor from the previous page unchanged, with the same order= and filters."),
    FilterRequired => (400, "filter_required", Some("21000"), "An update or delete without a filter would touch every row.", "Add a filter such as id=eq.1, or set rest.allow_unfiltered_writes."),
    ApiKeyMissing => (401, "api_key_missing", None, "No API key was sent.", "Send an API key printed by `basalt keys` in the `apikey` header or as `Authorization: Bearer <key>`."),
    ApiKeyInvalid => (401, "api_key_invalid", Some("PGRST301"), "The API key is not valid for this server.", "Use a key printed by `basalt keys` for this server's data directory and JWT secret."),
    BadJwt => (401, "bad_jwt", Some("PGRST301"), "The access token is not valid.", "Send a token issued by this server; read `details` for the reason."),
    JwtExpired => (401, "jwt_expired", Some("PGRST301"), "The access token has expired.", "Get a new one with grant_type=refresh_token."),
    NoAuthorization => (401, "no_authorization", None, "This endpoint needs a signed-in user's access token.", "Send `Authorization: Bearer <access_token>`."),
    SessionExpired => (401, "session_expired", Some("PGRST301"), "The session has ended (signed out, revoked, idle or too old).", "Sign in again."),
    LoginRequired => (401, "login_required", Some("42501"), "Anonymous callers may not do this.", "Sign in and send the user's access token."),
    Forbidden => (403, "forbidden", Some("42501"), "This API key's role may not do this.", "Use the service_role key for admin endpoints; never ship it to browsers."),
    CorsOriginNotAllowed => (403, "cors_origin_not_allowed", None, "This origin may not call the API from a browser.", "Add the origin to `cors.allowed_origins` (BASALT_CORS_ALLOWED_ORIGINS)."),
    OtpExpired => (403, "otp_expired", None, "Email link is invalid or has expired", "Ask for a new link; each link works once."),
    RowViolatesPolicy => (403, "row_violates_policy", Some("42501"), "A written row would not match the condition of your policy for this write.", "Write rows that match your policy's condition (POST /admin/v1/policies/explain shows it)."),
    UserBanned => (403, "user_banned", None, "User is banned", "Ask an administrator; the ban ends at `banned_until`."),
    BucketNotFound => (404, "bucket_not_found", None, "No bucket has this id (or you may not see it).", "List buckets with GET /storage/v1/bucket."),
    ObjectNotFound => (404, "object_not_found", None, "No object has this path (or you may not see it).", "List objects with POST /storage/v1/object/list/<bucket>."),
    UploadNotFound => (404, "upload_not_found", None, "No resumable upload has this id, or it expired.", "Create a new upload with POST /storage/v1/upload/resumable."),
    UserNotFound => (404, "user_not_found", None, "User not found", "List users with GET /auth/v1/admin/users."),
    RoleNotFound => (404, "role_not_found", None, "No role has this name.", "List roles with GET /admin/v1/roles."),
    PolicyNotFound => (404, "policy_not_found", None, "No policy has this id.", "List policies with GET /admin/v1/policies."),
    FunctionNotFound => (404, "function_not_found", Some("PGRST202"), "No function with this name and these arguments is exposed.", "Check the name and argument names; `hint` suggests the closest."),
    AmbiguousEmbed => (300, "ambiguous_embed", Some("PGRST201"), "The embedded resource is related to this one in several ways.", "Pick one with `!`, as `hint` lists."),
    AggregatesDisabled => (400, "aggregates_disabled", Some("PGRST123"), "Aggregate functions are not allowed in select= on this server.", "Ask the operator to set `rest.aggregates = true` (BASALT_REST_AGGREGATES)."),
    AmbiguousFunction => (300, "ambiguous_function", Some("PGRST203"), "Several overloads of this function take these arguments.", "Rename one overload's arguments, or drop one; `details` lists the candidates."),
    TableNotFound => (404, "table_not_found", Some("42P01"), "No table or view has this name in the exposed schema.", "Check the name; `details` suggests the closest one."),
    RowNotFound => (404, "row_not_found", Some("PGRST116"), "No row matches (or none you may see).", "Check the filter; another user's row is not found rather than forbidden."),
    SearchIndexNotFound => (404, "search_index_not_found", None, "No search index has this name.", "List indexes with GET /admin/v1/search/indexes."),
    RouteNotFound => (404, "route_not_found", None, "No API route matches this method and path.", "Check the path and its version prefix, for example /health/ready or /admin/v1/status."),
    MethodNotAllowed => (405, "method_not_allowed", Some("PGRST117"), "This route does not accept this HTTP method.", "Use one of the methods listed in the Allow header."),
    AlreadyExists => (409, "already_exists", None, "This already exists.", "Use the existing one, or delete it first."),
    BucketNotEmpty => (409, "bucket_not_empty", None, "The bucket still holds objects.", "Empty it first with POST /storage/v1/bucket/<id>/empty."),
    ObjectExists => (409, "object_exists", None, "An object with this path already exists.", "Send `x-upsert: true` to replace it, or use PUT."),
    SignedUploadUsed => (409, "signed_upload_used", None, "This signed upload URL was already used.", "Each signed upload URL works once; ask for a new one."),
    UploadOffsetMismatch => (409, "upload_offset_mismatch", None, "Upload-Offset does not match the upload's current offset.", "Send HEAD to learn the offset, then PATCH from there."),
    DeclaredInConfig => (409, "declared_in_config", None, "This is declared in the config file and cannot be changed through the API.", "Change it in the config file ([[authz.roles]] / [[authz.policies]]) and restart."),
    UnknownProfile => (406, "unknown_profile", Some("PGRST106"), "The schema asked for in Accept-Profile or Content-Profile is not exposed.", "Use one of the schemas listed in `details` (rest.schema, rest.extra_schemas)."),
    NotAcceptable => (406, "not_acceptable", Some("PGRST107"), "None of the media types in Accept can be produced.", "Accept application/json, text/csv, application/vnd.pgrst.object+json or (with PostGIS) application/geo+json."),
    IdempotencyKeyInProgress => (409, "idempotency_key_in_progress", None, "A request with this Idempotency-Key is still being processed.", "Retry after it finishes; the stored response will be returned."),
    FeedGap => (410, "feed_gap", None, "Changes after this position are no longer kept.", "Refetch the current state, then follow the feed from its head."),
    RangeNotSatisfiable => (416, "range_not_satisfiable", Some("PGRST103"), "The requested range starts past the last row.", "Ask for a range within the total in Content-Range."),
    IdempotencyKeyReused => (422, "idempotency_key_reused", None, "This Idempotency-Key was used with a different request.", "Use a new key for a new request; resend the same body to replay a stored response."),
    NotSingleRow => (406, "not_single_row", Some("PGRST116"), "JSON object requested, multiple (or no) rows returned.", "Filter on a unique column so one row matches, or drop Accept: application/vnd.pgrst.object+json; `details` says how many matched."),
    ConstraintViolation => (409, "constraint_violation", Some("23505"), "The write breaks a constraint of the table.", "PostgreSQL names the constraint in `message` (or `details`)."),
    PayloadTooLarge => (413, "payload_too_large", None, "The request body is larger than this server accepts.", "Send a smaller body, or raise `server.body_limit_bytes` (BASALT_SERVER_BODY_LIMIT_BYTES)."),
    UnsupportedMediaType => (415, "unsupported_media_type", Some("PGRST107"), "The request body's Content-Type is not accepted here.", "Send Content-Type: application/json."),
    MimeTypeNotAllowed => (415, "mime_type_not_allowed", None, "The bucket does not accept this content type.", "Send one of the bucket's allowed_mime_types (see `details`)."),
    TusVersionUnsupported => (412, "tus_version_unsupported", None, "The Tus-Resumable version is not supported.", "Send Tus-Resumable: 1.0.0."),
    AnonymousProviderDisabled => (422, "anonymous_provider_disabled", None, "Anonymous sign-ins are disabled", "Sign up with an email address, or set auth.anonymous_sign_ins (BASALT_AUTH_ANONYMOUS_SIGN_INS)."),
    FlowStateNotFound => (404, "flow_state_not_found", None, "invalid flow state, no valid flow state found", "Start the sign-in again; each code works once, for a limited time."),
    BadCodeVerifier => (400, "bad_code_verifier", None, "code challenge does not match previously saved code verifier", "Send the code verifier of the client that started this flow."),
    UserAlreadyExists => (422, "user_already_exists", None, "User already registered", "Sign in instead, or reset the password."),
    SingleIdentityNotDeletable => (422, "single_identity_not_deletable", None, "User must have at least 1 identity after unlinking", "Basalt users have one identity, their email address: it cannot be unlinked."),
    IdentityNotFound => (404, "identity_not_found", None, "Identity doesn't exist", "List the identities with GET /auth/v1/user (`identities`)."),
    MfaFactorNotFound => (404, "mfa_factor_not_found", None, "Factor not found", "List factors with GET /auth/v1/user (`factors`)."),
    MfaChallengeExpired => (422, "mfa_challenge_expired", None, "The MFA challenge has expired, was already answered, or belongs to another session.", "Open a new challenge with POST /auth/v1/factors/<id>/challenge."),
    MfaVerificationFailed => (422, "mfa_verification_failed", None, "Invalid TOTP code entered.", "Open a new challenge and send the current code of the authenticator app; each code works once."),
    MfaFactorNameConflict => (422, "mfa_factor_name_conflict", None, "The user already has a factor with this friendly name.", "Choose another friendly_name."),
    TooManyEnrolledMfaFactors => (422, "too_many_enrolled_mfa_factors", None, "The user has as many MFA factors as allowed (10).", "Remove an unused factor with DELETE /auth/v1/factors/<id> first."),
    InsufficientAal => (403, "insufficient_aal", None, "This needs a session that passed a second factor (aal2).", "Verify an MFA factor in this session first (POST /auth/v1/factors/<id>/verify)."),
    ReauthenticationNeeded => (400, "reauthentication_needed", None, "Password update requires reauthentication", "Call GET /auth/v1/reauthenticate, then send the emailed code as `nonce` with the new password."),
    ReauthenticationNotValid => (422, "reauthentication_not_valid", None, "Nonce has expired or is invalid", "Ask for a new code with GET /auth/v1/reauthenticate: a wrong guess spends the code."),
    WeakPassword => (422, "weak_password", None, "The password does not meet the password policy.", "Read `details` and choose a stronger password."),
    RateLimited => (429, "rate_limited", None, "Too many requests.", "Wait for the number of seconds in Retry-After before trying again."),
    TooManyConcurrentQueries => (429, "too_many_concurrent_queries", Some("PGRST003"), "You already have as many database requests running as one caller may.", "Wait for your running requests to finish (Retry-After), or send fewer at once."),
    RealtimeInvalidMessage => (400, "invalid_message", None, "The realtime message is not valid.", "Send JSON text frames in the documented protocol (docs/realtime.md)."),
    RealtimeNotJoined => (400, "not_joined", None, "This connection has not joined that topic.", "Join the topic first."),
    RealtimeAlreadyJoined => (409, "already_joined", None, "This connection has already joined that topic.", "Leave it first, or keep the subscription you have."),
    RealtimeInvalidTopic => (400, "invalid_topic", None, "The topic is not valid.", "Use 1 to 255 bytes without control characters."),
    RealtimeTooManyChannels => (429, "too_many_channels", None, "This connection has joined as many topics as it may.", "Leave a topic, or open another connection (realtime.max_channels_per_connection)."),
    RealtimeUnknownSchema => (404, "unknown_schema", None, "The schema is not exposed.", "Subscribe to tables of rest.schema or rest.extra_schemas."),
    RealtimeInvalidEvent => (400, "invalid_event", None, "The event is not one of INSERT, UPDATE, DELETE or *.", "Use one of INSERT, UPDATE, DELETE or *."),
    RealtimeInvalidFilter => (400, "invalid_filter", None, "The subscription's filter is not valid.", "Use the data API's filter grammar with operators that can be decided in memory."),
    RealtimeInvalidKey => (400, "invalid_key", None, "The presence key is not valid.", "Use a short key without control characters."),
    RealtimeWrongUser => (403, "wrong_user", None, "A refreshed token must belong to the same user.", "Open a new connection to act as another user."),
    RealtimeTokenExpired => (401, "token_expired", None, "The connection's access token has expired.", "Send a fresh access_token message; missed changes are replayed."),
    RealtimePresenceFailed => (503, "presence_failed", None, "Presence could not be recorded.", "Retry; the database may be unavailable."),
    RealtimeReplayFailed => (503, "replay_failed", None, "Missed changes could not be replayed.", "Reconnect and resume from the last position received."),
    RealtimeSlowConsumer => (429, "slow_consumer", None, "The client did not read its messages fast enough.", "Read faster, or subscribe to fewer changes; reconnect and resume."),
    RealtimeSessionRevoked => (401, "session_revoked", None, "The connection's session was revoked.", "Sign in again."),
    RealtimeMessageTooLarge => (413, "message_too_large", None, "The message is larger than this server takes.", "Send smaller messages (realtime.max_message_bytes)."),
    RealtimeIdle => (408, "idle", None, "The connection sent nothing for too long.", "Answer pings; send a heartbeat at least every 30 s."),
    RealtimeClosed => (503, "closed", None, "The server closed the connection.", "Reconnect and resume from the last position received."),
    InternalError => (500, "internal_error", Some("PGRSTX00"), "Basalt failed to handle this request.", "Retry later; if it persists, report it with the X-Request-Id of this response."),
    DatabaseUnavailable => (503, "database_unavailable", Some("PGRST001"), "The database cannot be reached right now.", "Retry after the number of seconds in Retry-After; the server reconnects by itself."),
    NotReady => (503, "not_ready", None, "The server is not ready to serve requests.", "Retry after the number of seconds in Retry-After."),
    StorageUnavailable => (503, "storage_unavailable", None, "The storage backend failed or cannot be reached.", "Retry later; the server log says why."),
    SearchUnavailable => (503, "search_unavailable", None, "The search engine failed or cannot be reached.", "Retry later; the index's status says why (GET /admin/v1/search/indexes/<name>)."),
    ShuttingDown => (503, "shutting_down", None, "The server is shutting down.", "Retry; another replica will answer."),
    RequestTimeout => (504, "request_timeout", Some("57014"), "The request took longer than this server allows.", "Narrow the request, or raise `server.request_timeout_ms` (the whole request) or, for a data API statement, `rest.statement_timeout_ms`."),
}

/// The one error body of every Basalt API: `{"code", "message", "details", "hint"}`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ApiError {
    #[serde(skip)]
    pub kind: ErrorCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<String>,
    pub hint: Option<String>,
    /// The upstream code of this very error when it is finer than its
    /// catalogue entry's (`PGRST200` for an unknown relationship, an
    /// `invalid_query` in Basalt's terms).
    #[serde(skip)]
    pub upstream: Option<&'static str>,
    /// PostgreSQL's own error, which a surface following PostgREST forwards.
    #[serde(skip)]
    pub postgres: Option<Box<PostgresError>>,
}

/// An error PostgreSQL raised: its SQLSTATE, message, detail and hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresError {
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

/// An error as PostgREST sends it: PostgreSQL's own fields for a database
/// error, else the upstream code with Basalt's message, details and hint.
#[derive(Debug, Serialize)]
pub struct UpstreamError<'a> {
    pub code: &'a str,
    pub message: &'a str,
    pub details: Option<&'a str>,
    pub hint: Option<&'a str>,
}

impl ApiError {
    /// The error with the catalogue's default message and hint.
    pub fn new(kind: ErrorCode) -> Self {
        ApiError {
            kind,
            code: kind.code(),
            message: kind.default_message().to_owned(),
            details: None,
            hint: Some(kind.default_hint().to_owned()),
            upstream: None,
            postgres: None,
        }
    }

    /// Forwards PostgreSQL's error as PostgREST would (on `/rest/v1`).
    pub fn with_postgres(mut self, postgres: PostgresError) -> Self {
        self.postgres = Some(Box::new(postgres));
        self
    }

    /// The body a surface that follows Supabase sends.
    pub fn upstream_body(&self) -> UpstreamError<'_> {
        match &self.postgres {
            Some(pg) => UpstreamError {
                code: &pg.code,
                message: &pg.message,
                details: pg.detail.as_deref(),
                hint: pg.hint.as_deref(),
            },
            None => UpstreamError {
                code: self.upstream.or(self.kind.upstream()).unwrap_or(self.code),
                message: &self.message,
                details: self.details.as_deref(),
                hint: self.hint.as_deref(),
            },
        }
    }

    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code,
            self.kind.status(),
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

/// An error of one of core's pure stages (parsing, planning, validating). It
/// knows its catalogue entry; its `Display` is the `details` and `hint` says
/// what to do. [`ApiError::from_problem`] renders every one of them.
pub trait Problem: std::fmt::Display {
    fn code(&self) -> ErrorCode;
    fn hint(&self) -> Option<String> {
        None
    }
    /// The upstream code, when finer than the catalogue entry's.
    fn upstream(&self) -> Option<&'static str> {
        None
    }
}

impl ApiError {
    /// The one rendering of a stage's error: its code, `details` from its
    /// text, and its hint when it has one.
    pub fn from_problem(problem: &dyn Problem) -> ApiError {
        let mut error = ApiError::new(problem.code()).with_details(problem.to_string());
        error.upstream = problem.upstream();
        match problem.hint() {
            Some(hint) => error.with_hint(hint),
            None => error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_snake_case_and_statuses_are_errors() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.code()), "duplicate code {}", code.code());
            assert!(code
                .code()
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_'));
            // 300 Multiple Choices is PostgREST's answer to an ambiguous
            // embed or overload: the errors that are not a 4xx or 5xx.
            assert!(
                (400..600).contains(&code.status())
                    || matches!(
                        code,
                        ErrorCode::AmbiguousEmbed | ErrorCode::AmbiguousFunction
                    ),
                "{}",
                code.code()
            );
            assert!(!code.default_hint().is_empty());
        }
    }

    #[test]
    fn body_has_the_four_fields() {
        let body =
            serde_json::to_value(ApiError::new(ErrorCode::RouteNotFound).with_details("GET /x"))
                .unwrap();
        assert_eq!(body["code"], "route_not_found");
        assert_eq!(body["details"], "GET /x");
        assert!(body["hint"].is_string());
        assert_eq!(body.as_object().unwrap().len(), 4);
    }

    #[test]
    fn docs_list_every_code() {
        let docs = include_str!("../../../docs/errors.md");
        for code in ErrorCode::ALL {
            let upstream = match code.upstream() {
                Some(upstream) => format!("`{upstream}`"),
                None => "—".to_owned(),
            };
            let row = format!("| `{}` | {} | {upstream} |", code.code(), code.status());
            assert!(docs.contains(&row), "docs/errors.md lacks the row `{row}`");
        }
    }
}

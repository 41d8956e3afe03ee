//! `HttpError`: the one error type handlers return. It renders the catalogue's
//! `{"code", "message", "details", "hint"}` body with the right status and headers.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use basalt_core::errors::{ApiError, ErrorCode};

#[derive(Debug)]
pub struct HttpError {
    /// Boxed: handlers return `Result<_, HttpError>` everywhere, and the
    /// error path is the rare one.
    pub error: Box<ApiError>,
    retry_after: Option<u64>,
}

impl HttpError {
    pub fn new(code: ErrorCode) -> Self {
        ApiError::new(code).into()
    }

    /// Adds `Retry-After: <seconds>` (sent with 429 and 503).
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl From<ApiError> for HttpError {
    fn from(error: ApiError) -> Self {
        HttpError {
            error: Box::new(error),
            retry_after: None,
        }
    }
}

impl From<ErrorCode> for HttpError {
    fn from(code: ErrorCode) -> Self {
        HttpError::new(code)
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl HttpError {
    /// The response a surface that follows Supabase sends: the same status
    /// and headers, the body in PostgREST's terms ([`ApiError::upstream_body`]).
    pub fn upstream_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        response.json(self.error.upstream_body())
    }
}

impl ResponseError for HttpError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        response.json(&self.error)
    }
}

/// The errors of core's pure stages, each rendered the one way
/// ([`ApiError::from_problem`]): its code, its text as `details`, its hint.
macro_rules! problems {
    ($($problem:ty),+) => {$(
        impl From<$problem> for HttpError {
            fn from(problem: $problem) -> Self {
                ApiError::from_problem(&problem).into()
            }
        }
    )+};
}

problems!(
    basalt_core::filter::FilterError,
    basalt_core::rest::QueryError,
    basalt_core::rest::CursorError,
    basalt_core::rest::WriteError,
    basalt_core::rest::DdlError,
    basalt_core::rest::RangeError,
    basalt_core::rest::ProfileError,
    basalt_core::storage::RuleError,
    basalt_core::search::SearchError
);

/// The database unreachable or saturated: 503, retry soon.
pub fn database_unavailable(error: impl std::fmt::Display) -> HttpError {
    HttpError::from(ApiError::new(ErrorCode::DatabaseUnavailable).with_details(error.to_string()))
        .retry_after(1)
}

/// No connection could be had from a pool (exhausted, or the database lost).
impl From<deadpool_postgres::PoolError> for HttpError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        database_unavailable(error)
    }
}

/// A failure of one of Basalt's own statements: a bug to log and answer with
/// 500, or, when the connection broke, the database being unavailable. (The
/// caller's own SQL and input are mapped by their features: the data API's
/// `query_failed`, admin SQL's `statement_error`.)
impl From<tokio_postgres::Error> for HttpError {
    fn from(error: tokio_postgres::Error) -> Self {
        let Some(db) = error.as_db_error() else {
            return database_unavailable(error);
        };
        // PostgreSQL's DETAIL can quote row values (emails): log the code and message only.
        tracing::error!(
            sqlstate = db.code().code(),
            "statement failed: {}",
            db.message()
        );
        HttpError::new(ErrorCode::InternalError)
    }
}
